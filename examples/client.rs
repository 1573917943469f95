//! A Rust client of a running service, through the tonic client generated
//! from `proto/inventory/v1/inventory.proto` (`inventory_service::pb`): stock
//! a product, check it, reserve for an order, read the error of an
//! over-large reservation the way a program should (its ErrorInfo reason and
//! metadata, not its message), then release.
//!
//! ```text
//! cargo run                                  # the service, in another terminal
//! cargo run --example client -- http://localhost:9083 product-123
//! ```

use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::pb::{
    CheckInventoryRequest, ReleaseInventoryRequest, ReserveInventoryRequest, UpdateInventoryRequest,
};
use tonic::Code;
use tonic_types::StatusExt as _;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let target = args
        .next()
        .unwrap_or_else(|| "http://localhost:9083".to_owned());
    let product = args.next().unwrap_or_else(|| "product-123".to_owned());
    let order = format!("example-{}", std::process::id());

    let mut client = InventoryServiceClient::connect(target.clone()).await?;

    let restock = client
        .update_inventory(UpdateInventoryRequest {
            product_id: product.clone(),
            quantity: 10,
            operation: "add".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!(
        "restocked {product}: {} on hand, version {}",
        restock.current_quantity, restock.version
    );

    let stock = client
        .check_inventory(CheckInventoryRequest {
            product_id: product.clone(),
            required_quantity: 2,
        })
        .await?
        .into_inner();
    println!("{}", stock.message);

    let reserved = client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: product.clone(),
            quantity: 2,
            order_id: order.clone(),
            reservation_timeout: 300,
        })
        .await?
        .into_inner();
    println!(
        "reserved 2 for {order}: reservation {}, {} available now",
        reserved.reservation_id, reserved.available_quantity
    );

    // A refusal carries a google.rpc.ErrorInfo: branch on its reason.
    let too_many = client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: product.clone(),
            quantity: i32::MAX,
            order_id: format!("{order}-big"),
            reservation_timeout: 0,
        })
        .await;
    match too_many {
        Err(status) if status.code() == Code::FailedPrecondition => {
            let details = status.get_error_details();
            match details.error_info() {
                Some(info) if info.reason == "INSUFFICIENT_STOCK" => println!(
                    "refused as expected: {} available",
                    info.metadata.get("available").map_or("?", String::as_str)
                ),
                _ => println!("refused: {}", status.message()),
            }
        }
        Err(status) => return Err(status.into()),
        Ok(_) => println!("unexpectedly reserved {} units", i32::MAX),
    }

    let released = client
        .release_inventory(ReleaseInventoryRequest {
            product_id: product,
            quantity: 0,
            order_id: order,
            ..Default::default()
        })
        .await?
        .into_inner();
    println!("{}", released.message);
    Ok(())
}
