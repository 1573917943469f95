//! A plain restock or sale waits its turn and is never refused for
//! contention: several instances on one database (three on PostgreSQL, one
//! on SQLite), 64 concurrent clients, every one of them sending unkeyed
//! `add` and `subtract` updates and reservations of the same product. Not
//! one call may answer ABORTED; afterwards the product's stock on hand is
//! the initial stock plus every acknowledged change, and what it holds is
//! every acknowledged reservation.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use common::invariants::{LEVELS, RESERVED_VS_HELD, VERSION_VS_HISTORY, query};
use common::{Backend, TestDatabase, TestServer, backend_tests};
use inventory_service::config::IsolationLevel;
use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::pb::{ReserveInventoryRequest, UpdateInventoryRequest};
use tonic::Code;

backend_tests!(restocks_and_sales_of_one_product_are_never_refused_for_contention);

/// PostgreSQL at `REPEATABLE READ`: locking a row another transaction changed
/// is a serialization failure, which the service runs again, never answers.
#[tokio::test]
async fn at_repeatable_read_no_call_is_refused_for_contention() {
    contend(Backend::Postgres, IsolationLevel::RepeatableRead, true).await;
}

/// PostgreSQL at `SERIALIZABLE`.
#[tokio::test]
async fn at_serializable_no_call_is_refused_for_contention() {
    contend(Backend::Postgres, IsolationLevel::Serializable, true).await;
}

/// PostgreSQL at `SERIALIZABLE` with one transaction per call: many more
/// transactions collide, and each is still run again until it gets through.
#[tokio::test]
async fn at_serializable_without_group_commit_no_call_is_refused_for_contention() {
    contend(Backend::Postgres, IsolationLevel::Serializable, false).await;
}

const CLIENTS: usize = 64;
const CALLS_PER_CLIENT: usize = 30;
const PRODUCT: &str = "flash-sale";
const INITIAL: i32 = 5_000;

async fn restocks_and_sales_of_one_product_are_never_refused_for_contention(backend: Backend) {
    contend(backend, IsolationLevel::ReadCommitted, true).await;
}

async fn contend(backend: Backend, isolation: IsolationLevel, group_commit: bool) {
    let database = Arc::new(TestDatabase::create(backend).await);
    let instances = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 3,
    };
    let mut servers = Vec::new();
    for _ in 0..instances {
        servers.push(
            TestServer::start_in(database.clone(), |config| {
                config.database.isolation_level = isolation;
                config.inventory.batch.enabled = group_commit;
            })
            .await,
        );
    }
    let mut channels = Vec::new();
    for server in &servers {
        channels.push(server.channel().await);
    }
    InventoryServiceClient::new(channels[0].clone())
        .update_inventory(UpdateInventoryRequest {
            product_id: PRODUCT.into(),
            quantity: INITIAL,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("initial stock");

    // The net change of stock on hand the clients were told of, reservations
    // acknowledged, and calls refused for lack of stock.
    let changed = Arc::new(AtomicI64::new(0));
    let updates = Arc::new(AtomicUsize::new(0));
    let reserved = Arc::new(AtomicI64::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let mut client = InventoryServiceClient::new(channels[index % channels.len()].clone());
        let (changed, updates, reserved, refused) = (
            changed.clone(),
            updates.clone(),
            reserved.clone(),
            refused.clone(),
        );
        clients.push(tokio::spawn(async move {
            for call in 0..CALLS_PER_CLIENT {
                let quantity = 1 + ((index + call) % 3) as i32;
                let outcome = match (index + call) % 3 {
                    0 | 1 => {
                        let operation = if (index + call) % 3 == 0 {
                            "add"
                        } else {
                            "subtract"
                        };
                        client
                            .update_inventory(UpdateInventoryRequest {
                                product_id: PRODUCT.into(),
                                quantity,
                                operation: operation.into(),
                                ..Default::default()
                            })
                            .await
                            .map(|answer| {
                                changed.fetch_add(
                                    i64::from(answer.into_inner().quantity_change),
                                    Ordering::SeqCst,
                                );
                                updates.fetch_add(1, Ordering::SeqCst);
                            })
                    }
                    _ => client
                        .reserve_inventory(ReserveInventoryRequest {
                            product_id: PRODUCT.into(),
                            quantity,
                            order_id: format!("order-{index}-{call}"),
                            reservation_timeout: 0,
                        })
                        .await
                        .map(|_| {
                            reserved.fetch_add(i64::from(quantity), Ordering::SeqCst);
                        }),
                };
                match outcome {
                    Ok(()) => {}
                    // Below what is reserved, or not enough available: the
                    // rules refused it, which is not contention.
                    Err(status) if status.code() == Code::FailedPrecondition => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(status) => panic!("client {index} call {call}: {status:?}"),
                }
            }
        }));
    }
    for client in clients {
        client.await.expect("no call was refused for contention");
    }

    let levels = query(&database, LEVELS).await;
    assert_eq!(levels.len(), 1);
    let (total, held) = (levels[0].a, levels[0].b);
    assert_eq!(
        total,
        i64::from(INITIAL) + changed.load(Ordering::SeqCst),
        "stock on hand = initial + every acknowledged change"
    );
    assert_eq!(
        held,
        reserved.load(Ordering::SeqCst),
        "every reservation held"
    );
    for row in query(&database, RESERVED_VS_HELD).await {
        assert_eq!(row.a, row.b, "reserved = what active reservations hold");
    }
    for row in query(&database, VERSION_VS_HISTORY).await {
        assert_eq!(row.a, row.b, "one version per acknowledged update");
    }
    let updates = updates.load(Ordering::SeqCst);
    assert!(
        updates > CLIENTS * CALLS_PER_CLIENT / 2,
        "only {updates} updates were acknowledged"
    );
    println!(
        "{backend:?} {isolation:?}, group commit {group_commit}: {updates} updates, \
         {} units reserved, {} refused by the rules",
        reserved.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst)
    );
}
