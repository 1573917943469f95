//! Group commit over real sockets: calls that arrive together share one
//! transaction, and a call its batch's rules refuse is refused alone, with
//! its own error, while every other call of the batch succeeds.

mod common;

use std::time::Duration;

use common::{Backend, TestServer, backend_tests, reason};
use inventory_service::pb::{
    CheckInventoryRequest, ReleaseInventoryRequest, ReserveInventoryRequest, UpdateInventoryRequest,
};
use tonic::Code;

backend_tests!(a_call_refused_in_a_batch_is_refused_alone);

async fn a_call_refused_in_a_batch_is_refused_alone(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        // One lane, and time for every call to arrive before it is applied.
        config.inventory.batch.lanes = 1;
        config.inventory.batch.max_wait = Duration::from_millis(300);
    })
    .await;
    let mut client = server.client().await;
    for product in ["held", "other"] {
        client
            .update_inventory(UpdateInventoryRequest {
                product_id: product.into(),
                quantity: 10,
                operation: "set".into(),
                ..Default::default()
            })
            .await
            .expect("stock");
    }
    client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "held".into(),
            quantity: 8,
            order_id: "big-order".into(),
            reservation_timeout: 0,
        })
        .await
        .expect("8 of 10 held");

    // Together: a subtraction that would leave less on hand than is
    // reserved, among reservations, a release and a restock.
    let subtract = {
        let mut client = client.clone();
        async move {
            client
                .update_inventory(UpdateInventoryRequest {
                    product_id: "held".into(),
                    quantity: 5,
                    operation: "subtract".into(),
                    ..Default::default()
                })
                .await
        }
    };
    let mut others = tokio::task::JoinSet::new();
    for n in 0..4 {
        let mut client = client.clone();
        others.spawn(async move {
            client
                .reserve_inventory(ReserveInventoryRequest {
                    product_id: "other".into(),
                    quantity: 1,
                    order_id: format!("small-{n}"),
                    reservation_timeout: 0,
                })
                .await
                .map(drop)
        });
    }
    {
        let mut client = client.clone();
        others.spawn(async move {
            client
                .release_inventory(ReleaseInventoryRequest {
                    product_id: "held".into(),
                    quantity: 1,
                    order_id: "big-order".into(),
                    ..Default::default()
                })
                .await
                .map(drop)
        });
    }
    {
        let mut client = client.clone();
        others.spawn(async move {
            client
                .update_inventory(UpdateInventoryRequest {
                    product_id: "other".into(),
                    quantity: 3,
                    operation: "add".into(),
                    ..Default::default()
                })
                .await
                .map(drop)
        });
    }
    let refused = subtract.await.expect_err("below what is reserved");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "STOCK_BELOW_RESERVED");
    while let Some(done) = others.join_next().await {
        done.expect("task").expect("every other call of the batch");
    }

    let stock = |product: &'static str| {
        let mut client = client.clone();
        async move {
            client
                .check_inventory(CheckInventoryRequest {
                    product_id: product.into(),
                    required_quantity: 0,
                })
                .await
                .expect("check")
                .into_inner()
        }
    };
    let held = stock("held").await;
    assert_eq!((held.current_quantity, held.reserved_quantity), (10, 7));
    let other = stock("other").await;
    assert_eq!((other.current_quantity, other.reserved_quantity), (13, 4));

    let text = reqwest::get(server.http_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("inventory_batch_size_count") > value("inventory_batch_size_bucket{le=\"1\"}"),
        "the calls were applied together"
    );
}
