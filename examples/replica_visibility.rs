//! How long a write acknowledged by replica A takes to show in a check on
//! replica B (`benches/replica_visibility.sh` starts the replicas).
//!
//! ```sh
//! cargo run --release --example replica_visibility -- \
//!     http://127.0.0.1:19083 http://127.0.0.1:19084 1000
//! ```
//!
//! Each round sets the product's stock on A to a new figure and, from A's
//! answer on, checks B without pause until it shows that figure; the time
//! between is the round's visibility delay. A round that has not seen the
//! figure after 5 s fails the run. Prints the delays' percentiles.

use std::time::{Duration, Instant};

use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::pb::{CheckInventoryRequest, UpdateInventoryRequest};

const PRODUCT: &str = "visibility-product";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (a, b) = match (args.get(1), args.get(2)) {
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        _ => {
            return Err(
                "usage: replica_visibility <grpc url of A> <grpc url of B> [writes]".into(),
            );
        }
    };
    let writes: i32 = args.get(3).map_or(Ok(1000), |n| n.parse())?;
    let mut on_a = InventoryServiceClient::connect(a).await?;
    let mut on_b = InventoryServiceClient::connect(b).await?;
    let set = |quantity: i32| UpdateInventoryRequest {
        product_id: PRODUCT.into(),
        quantity,
        operation: "set".into(),
        ..Default::default()
    };
    let check = || CheckInventoryRequest {
        product_id: PRODUCT.into(),
        required_quantity: 1,
    };
    on_a.update_inventory(set(1)).await?;
    // B caches the product before the measured writes.
    for _ in 0..100 {
        if on_b
            .check_inventory(check())
            .await?
            .into_inner()
            .current_quantity
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut delays = Vec::with_capacity(writes as usize);
    let mut checks = 0u64;
    for n in 2..writes + 2 {
        on_a.update_inventory(set(n)).await?;
        let acknowledged = Instant::now();
        loop {
            checks += 1;
            let seen = on_b.check_inventory(check()).await?.into_inner();
            if seen.current_quantity == n {
                delays.push(acknowledged.elapsed());
                break;
            }
            if acknowledged.elapsed() > Duration::from_secs(5) {
                return Err(format!("write {n} not seen on B after 5 s").into());
            }
        }
    }
    delays.sort();
    let at = |q: f64| delays[((delays.len() as f64 - 1.0) * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{} writes: visible on B after p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({checks} checks)",
        delays.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(at(1.0)),
    );
    Ok(())
}
