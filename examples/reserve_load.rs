//! A reservation load generator for `benches/reserve_vs_pgbench.sh`: N
//! concurrent gRPC clients, each reserving one unit at a time with a unique
//! order id (so every call is a real reservation, never an idempotent
//! retry), on one product or spread over many, for a fixed time.
//!
//! ```text
//! cargo run --release --example reserve_load -- http://127.0.0.1:19083 16 1000 10
//!                                             (target, clients, products, seconds)
//! ```
//! The products `bench-1` .. `bench-<products>` must exist with enough stock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use inventory_service::pb::ReserveInventoryRequest;
use inventory_service::pb::inventory_service_client::InventoryServiceClient;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = args
        .first()
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:19083".into());
    let clients: usize = args.get(1).map_or(Ok(16), |a| a.parse())?;
    let products: u64 = args.get(2).map_or(Ok(1000), |a| a.parse())?;
    let seconds: u64 = args.get(3).map_or(Ok(10), |a| a.parse())?;

    let channel = tonic::transport::Channel::from_shared(target)?
        .connect()
        .await?;
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::with_capacity(clients);
    for client_index in 0..clients {
        let mut client = InventoryServiceClient::new(channel.clone());
        let (done, failed) = (done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                n += 1;
                let product = 1 + (n * 7919 + client_index as u64 * 104_729) % products;
                let request = ReserveInventoryRequest {
                    product_id: format!("bench-{product}"),
                    quantity: 1,
                    order_id: format!("load-{client_index}-{n}"),
                    reservation_timeout: 0,
                };
                match client.reserve_inventory(request).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let started = Instant::now();
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let done = done.load(Ordering::Relaxed);
    println!(
        "reservations: {done} in {elapsed:.1}s = {:.0} tx/s ({} failed)",
        done as f64 / elapsed,
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}
