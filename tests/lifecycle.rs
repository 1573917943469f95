//! The service over time: data survives a restart, the expiry sweeper gives
//! stock back on its own, shutdown is graceful; on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use common::{Backend, TestServer, backend_tests};
use inventory_service::pb::{
    CheckInventoryRequest, GetInventoryHistoryRequest, ReserveInventoryRequest,
    UpdateInventoryRequest,
};

backend_tests!(
    data_survives_a_restart,
    the_expiry_task_releases_a_timed_out_reservation,
    shutdown_stops_accepting_and_returns_cleanly,
);

async fn data_survives_a_restart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let database = server.database.clone();
    let mut client = server.client().await;
    client
        .update_inventory(UpdateInventoryRequest {
            product_id: "p".into(),
            quantity: 12,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("set");
    let reserved = client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "p".into(),
            quantity: 5,
            order_id: "o".into(),
            reservation_timeout: 0,
        })
        .await
        .expect("reserve")
        .into_inner();
    drop(client);
    server.stop().await.expect("clean shutdown");

    let restarted = TestServer::start_in(database, |_| {}).await;
    let mut client = restarted.client().await;
    let stock = client
        .check_inventory(CheckInventoryRequest {
            product_id: "p".into(),
            required_quantity: 0,
        })
        .await
        .expect("check after restart")
        .into_inner();
    assert_eq!((stock.current_quantity, stock.reserved_quantity), (12, 5));
    let retry = client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "p".into(),
            quantity: 5,
            order_id: "o".into(),
            reservation_timeout: 0,
        })
        .await
        .expect("retry after restart")
        .into_inner();
    assert_eq!(retry.reservation_id, reserved.reservation_id);
}

async fn the_expiry_task_releases_a_timed_out_reservation(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.inventory.cleanup_interval = Duration::from_millis(100);
    })
    .await;
    let mut client = server.client().await;
    client
        .update_inventory(UpdateInventoryRequest {
            product_id: "p".into(),
            quantity: 3,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("set");
    client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "p".into(),
            quantity: 3,
            order_id: "o".into(),
            reservation_timeout: 1,
        })
        .await
        .expect("reserve");

    let mut reserved = 3;
    for _ in 0..50 {
        reserved = client
            .check_inventory(CheckInventoryRequest {
                product_id: "p".into(),
                required_quantity: 3,
            })
            .await
            .expect("check")
            .into_inner()
            .reserved_quantity;
        if reserved == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        reserved, 0,
        "the sweeper released the reservation within 5s"
    );

    let history = client
        .get_inventory_history(GetInventoryHistoryRequest {
            product_id: "p".into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .expect("history")
        .into_inner();
    let entry = &history.entries[0];
    assert_eq!(entry.operation_type, "release");
    assert_eq!(entry.quantity_change, 3);
    let metadata = entry.metadata.as_ref().expect("metadata");
    let reason = metadata.fields.get("reason").and_then(|v| v.kind.clone());
    assert_eq!(
        reason,
        Some(pbjson_types::value::Kind::StringValue("expired".into()))
    );
}

async fn shutdown_stops_accepting_and_returns_cleanly(backend: Backend) {
    let server = TestServer::start(backend).await;
    let grpc_addr = server.grpc_addr;
    let http_addr = server.http_addr;
    server.stop().await.expect("clean shutdown");
    assert!(tokio::net::TcpStream::connect(grpc_addr).await.is_err());
    assert!(tokio::net::TcpStream::connect(http_addr).await.is_err());
}
