//! No oversell under concurrency: several service instances on one database
//! (three on PostgreSQL, one on SQLite), 64 concurrent clients, thousands of
//! mixed reserve, retried reserve, release, (retried) commit and update calls
//! on a few products, two of them hot. Afterwards the database itself is
//! checked:
//! - reserved = the sum of what active reservations hold, for every product;
//! - total = initial stock + acknowledged adds - acknowledged subtracts -
//!   acknowledged commits;
//! - nothing negative, reserved <= total;
//! - every acknowledged reservation exists exactly once, with its quantity;
//! - the history reconciles: its signed changes add up to what is available.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::invariants::{
    AVAILABLE_VS_HISTORY, LEVELS, RESERVATIONS, RESERVE_ENTRIES, RESERVED_VS_HELD, query,
};
use common::{Backend, TestDatabase, TestServer, backend_tests};
use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::pb::{
    CommitReservationRequest, ReleaseInventoryRequest, ReserveInventoryRequest,
    UpdateInventoryRequest,
};
use tokio::sync::Mutex;
use tonic::Code;
use tonic::transport::Channel;

backend_tests!(mixed_load_on_replicas_never_oversells);

const CLIENTS: usize = 64;
const OPERATIONS_PER_CLIENT: usize = 40;
const PRODUCTS: [(&str, i32); 4] = [
    ("hot-1", 40),
    ("hot-2", 40),
    ("cold-1", 400),
    ("cold-2", 400),
];

/// What the clients were told succeeded.
#[derive(Default)]
struct Acknowledged {
    /// (order, product) -> quantity of each reservation acknowledged.
    reservations: HashMap<(String, String), i32>,
    /// product -> net change of stock on hand from acknowledged updates and
    /// commits.
    stock_changes: HashMap<String, i64>,
    /// Commits acknowledged with a quantity committed.
    commits: usize,
    /// Calls refused for lack of stock (expected under contention).
    insufficient: usize,
}

/// A tiny deterministic generator, so a failing run can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

async fn mixed_load_on_replicas_never_oversells(backend: Backend) {
    let database = Arc::new(TestDatabase::create(backend).await);
    let instances = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 3,
    };
    let mut servers = Vec::new();
    for _ in 0..instances {
        servers.push(TestServer::start_in(database.clone(), |_| {}).await);
    }
    let mut channels = Vec::new();
    for server in &servers {
        channels.push(server.channel().await);
    }
    let mut setup = InventoryServiceClient::new(channels[0].clone());
    for (product, quantity) in PRODUCTS {
        setup
            .update_inventory(UpdateInventoryRequest {
                product_id: product.into(),
                quantity,
                operation: "set".into(),
            })
            .await
            .expect("initial stock");
    }

    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let mut clients = Vec::new();
    for client_index in 0..CLIENTS {
        let channel = channels[client_index % channels.len()].clone();
        let acknowledged = acknowledged.clone();
        clients.push(tokio::spawn(run_client(
            client_index,
            channel,
            acknowledged,
        )));
    }
    for client in clients {
        client.await.expect("client task");
    }
    let acknowledged = Arc::try_unwrap(acknowledged)
        .map_err(|_| "clients still hold the record")
        .expect("all clients done")
        .into_inner();
    assert!(
        acknowledged.reservations.len() > 100,
        "the load made {} reservations; too few to prove anything",
        acknowledged.reservations.len()
    );
    assert!(
        acknowledged.insufficient > 0,
        "the hot products never ran out"
    );
    assert!(acknowledged.commits > 0, "the load committed nothing");

    check_invariants(&database, &acknowledged).await;
}

async fn run_client(index: usize, channel: Channel, acknowledged: Arc<Mutex<Acknowledged>>) {
    let mut client = InventoryServiceClient::new(channel);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1));
    let mut mine: Vec<(String, String)> = Vec::new();
    for op in 0..OPERATIONS_PER_CLIENT {
        let product = PRODUCTS[rng.next(PRODUCTS.len() as u64) as usize]
            .0
            .to_owned();
        match rng.next(10) {
            // Reserve, and sometimes retry the very same request.
            0..=4 => {
                let order = format!("order-{index}-{op}");
                let quantity = 1 + rng.next(3) as i32;
                let request = ReserveInventoryRequest {
                    product_id: product.clone(),
                    quantity,
                    order_id: order.clone(),
                    reservation_timeout: 0,
                };
                let attempts = if rng.next(3) == 0 { 2 } else { 1 };
                for _ in 0..attempts {
                    match client.reserve_inventory(request.clone()).await {
                        Ok(_) => {
                            let mut record = acknowledged.lock().await;
                            let previous = record
                                .reservations
                                .insert((order.clone(), product.clone()), quantity);
                            assert!(previous.is_none_or(|q| q == quantity));
                            if previous.is_none() {
                                mine.push((order.clone(), product.clone()));
                            }
                        }
                        Err(status) if status.code() == Code::FailedPrecondition => {
                            acknowledged.lock().await.insufficient += 1;
                        }
                        Err(status) => panic!("reserve {order}: {status:?}"),
                    }
                }
            }
            // Commit all or part of one of this client's reservations, and
            // sometimes retry the very same request.
            5 => {
                let Some((order, product)) =
                    (!mine.is_empty()).then(|| mine[rng.next(mine.len() as u64) as usize].clone())
                else {
                    continue;
                };
                let request = CommitReservationRequest {
                    product_id: product.clone(),
                    quantity: rng.next(2) as i32, // 0 = everything held
                    order_id: order.clone(),
                };
                let attempts = if rng.next(3) == 0 { 2 } else { 1 };
                for _ in 0..attempts {
                    match client.commit_reservation(request.clone()).await {
                        Ok(answer) => {
                            let committed = answer.into_inner().committed_quantity;
                            let mut record = acknowledged.lock().await;
                            if committed > 0 {
                                record.commits += 1;
                            }
                            *record.stock_changes.entry(product.clone()).or_default() -=
                                i64::from(committed);
                        }
                        // Released or expired, or asked for more than held.
                        Err(status) if status.code() == Code::FailedPrecondition => {}
                        Err(status) => panic!("commit {order}: {status:?}"),
                    }
                }
            }
            // Release all or part of one of this client's reservations.
            6 => {
                let Some((order, product)) =
                    (!mine.is_empty()).then(|| mine[rng.next(mine.len() as u64) as usize].clone())
                else {
                    continue;
                };
                let quantity = rng.next(2) as i32; // 0 = everything held
                match client
                    .release_inventory(ReleaseInventoryRequest {
                        product_id: product,
                        quantity,
                        order_id: order.clone(),
                    })
                    .await
                {
                    Ok(_) => {}
                    Err(status) if status.code() == Code::FailedPrecondition => {}
                    Err(status) => panic!("release {order}: {status:?}"),
                }
            }
            // Add stock, or take some away.
            _ => {
                let (operation, quantity) = if rng.next(2) == 0 {
                    ("add", 1 + rng.next(5) as i32)
                } else {
                    ("subtract", 1 + rng.next(3) as i32)
                };
                match client
                    .update_inventory(UpdateInventoryRequest {
                        product_id: product.clone(),
                        quantity,
                        operation: operation.into(),
                    })
                    .await
                {
                    Ok(answer) => {
                        let change = i64::from(answer.into_inner().quantity_change);
                        *acknowledged
                            .lock()
                            .await
                            .stock_changes
                            .entry(product)
                            .or_default() += change;
                    }
                    Err(status) if status.code() == Code::FailedPrecondition => {}
                    Err(status) => panic!("{operation} {product}: {status:?}"),
                }
            }
        }
    }
}

async fn check_invariants(database: &TestDatabase, acknowledged: &Acknowledged) {
    for row in query(database, RESERVED_VS_HELD).await {
        assert_eq!(
            row.a, row.b,
            "{}: reserved != held by active reservations",
            row.key
        );
    }
    let levels = query(database, LEVELS).await;
    assert_eq!(levels.len(), PRODUCTS.len());
    for row in &levels {
        let initial = PRODUCTS
            .iter()
            .find(|(p, _)| *p == row.key)
            .map(|(_, q)| i64::from(*q))
            .expect("a known product");
        let changes = acknowledged
            .stock_changes
            .get(&row.key)
            .copied()
            .unwrap_or(0);
        assert_eq!(
            row.a,
            initial + changes,
            "{}: total != initial + acknowledged updates - acknowledged commits",
            row.key
        );
        assert!(
            row.a >= 0 && row.b >= 0 && row.b <= row.a,
            "{}: total {} reserved {}",
            row.key,
            row.a,
            row.b
        );
    }
    for row in query(database, AVAILABLE_VS_HISTORY).await {
        assert_eq!(
            row.a, row.b,
            "{}: available != sum of history changes",
            row.key
        );
    }
    let stored: HashMap<String, (i64, i64)> = query(database, RESERVATIONS)
        .await
        .into_iter()
        .map(|r| (r.key, (r.a, r.b)))
        .collect();
    for ((order, product), quantity) in &acknowledged.reservations {
        let key = format!("{order}/{product}");
        assert_eq!(
            stored.get(&key),
            Some(&(i64::from(*quantity), 1)),
            "{key}: acknowledged once with {quantity}"
        );
    }
    assert_eq!(
        stored.len(),
        acknowledged.reservations.len(),
        "no unacknowledged reservation"
    );
    for row in query(database, RESERVE_ENTRIES).await {
        assert_eq!(row.a, row.b, "one reserve history entry per reservation");
    }
}
