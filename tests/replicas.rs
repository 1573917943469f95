//! No oversell under concurrency: several service instances on one database
//! (three on PostgreSQL, one on SQLite), 64 concurrent clients, thousands of
//! mixed reserve, all-or-nothing multi-item reserve, release, commit, update
//! (with and without a `request_id`) and compare-and-set update calls on a
//! few products, two of them hot, many of them retried (on another instance,
//! with the same order id or `request_id`). Only a compare-and-set may be
//! refused as ABORTED; a plain update waits its turn. Afterwards the database itself is checked:
//! - reserved = the sum of what active reservations hold, for every product;
//! - total = initial stock + acknowledged adds - acknowledged subtracts -
//!   acknowledged commits;
//! - nothing negative, reserved <= total;
//! - every acknowledged reservation exists exactly once, with its quantity;
//! - the history reconciles: its signed changes add up to what is available,
//!   and each product's version counts its updates and commits;
//! - a retried call was answered with the first call's result.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::invariants::{
    AVAILABLE_VS_HISTORY, LEVELS, RESERVATIONS, RESERVE_ENTRIES, RESERVED_VS_HELD,
    VERSION_VS_HISTORY, query,
};
use common::{Backend, TestDatabase, TestServer, backend_tests};
use inventory_service::config::IsolationLevel;
use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::pb::{
    CheckInventoryRequest, CommitReservationRequest, OrderItem, ReleaseInventoryRequest,
    ReserveInventoryRequest, ReserveOrderRequest, UpdateInventoryRequest, UpdateInventoryResponse,
};
use tokio::sync::Mutex;
use tonic::Code;
use tonic::transport::Channel;

backend_tests!(
    mixed_load_on_replicas_never_oversells,
    mixed_load_without_group_commit_never_oversells
);

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
    /// Multi-item reservations acknowledged.
    orders: usize,
    /// Retries answered with the first call's result.
    replayed: usize,
    /// Updates refused because the product was no longer at the version read.
    version_mismatches: usize,
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

/// With group commit on (the default), batches of several calls form.
async fn mixed_load_on_replicas_never_oversells(backend: Backend) {
    let servers = mixed_load(backend, true).await;
    let mut batched = 0;
    for server in &servers {
        batched += calls_in_shared_batches(server).await;
    }
    assert!(batched > 0, "no batch of more than one call formed");
    println!("{batched} batches of more than one call were applied");
}

/// PostgreSQL at `REPEATABLE READ`.
#[tokio::test]
async fn mixed_load_at_repeatable_read_never_oversells() {
    mixed_load_at(Backend::Postgres, true, IsolationLevel::RepeatableRead).await;
}

/// PostgreSQL at `SERIALIZABLE`.
#[tokio::test]
async fn mixed_load_at_serializable_never_oversells() {
    mixed_load_at(Backend::Postgres, true, IsolationLevel::Serializable).await;
}

/// With group commit off, one transaction per call.
async fn mixed_load_without_group_commit_never_oversells(backend: Backend) {
    let servers = mixed_load(backend, false).await;
    for server in &servers {
        assert_eq!(calls_in_shared_batches(server).await, 0);
    }
}

/// How many batches of more than one call `server` applied, from its
/// `/metrics` (the `inventory_batch_size` histogram).
async fn calls_in_shared_batches(server: &TestServer) -> u64 {
    let text = reqwest::get(server.http_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let value = |prefix: &str| -> u64 {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    value("inventory_batch_size_count") - value("inventory_batch_size_bucket{le=\"1\"}")
}

/// Runs the mixed load on several instances (group commit on or off),
/// checks the invariants, and returns the instances.
async fn mixed_load(backend: Backend, group_commit: bool) -> Vec<TestServer> {
    mixed_load_at(backend, group_commit, IsolationLevel::ReadCommitted).await
}

/// [`mixed_load`] at an isolation level (PostgreSQL).
async fn mixed_load_at(
    backend: Backend,
    group_commit: bool,
    isolation: IsolationLevel,
) -> Vec<TestServer> {
    let database = Arc::new(TestDatabase::create(backend).await);
    let instances = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 3,
    };
    let mut servers = Vec::new();
    for _ in 0..instances {
        servers.push(
            TestServer::start_in(database.clone(), |config| {
                config.inventory.batch.enabled = group_commit;
                config.database.isolation_level = isolation;
            })
            .await,
        );
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
                ..Default::default()
            })
            .await
            .expect("initial stock");
    }

    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let mut clients = Vec::new();
    for client_index in 0..CLIENTS {
        // Retries go to the next instance, as behind a load balancer.
        let channel = channels[client_index % channels.len()].clone();
        let retry_channel = channels[(client_index + 1) % channels.len()].clone();
        let acknowledged = acknowledged.clone();
        clients.push(tokio::spawn(run_client(
            client_index,
            channel,
            retry_channel,
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
    assert!(
        acknowledged.orders > 0,
        "no multi-item reservation succeeded"
    );
    assert!(acknowledged.replayed > 0, "no retry was replayed");
    println!(
        "reservations {}, orders {}, commits {}, insufficient {}, replayed {}, version mismatches {}",
        acknowledged.reservations.len(),
        acknowledged.orders,
        acknowledged.commits,
        acknowledged.insufficient,
        acknowledged.replayed,
        acknowledged.version_mismatches
    );

    check_invariants(&database, &acknowledged).await;
    servers
}

/// Sends `request` with `call` on the client's instance, then (when the dice
/// say so) the very same request again on the next instance; returns every
/// answer.
macro_rules! maybe_twice {
    ($rng:expr, $client:expr, $retry:expr, $method:ident, $request:expr) => {{
        let mut answers = vec![$client.$method($request.clone()).await];
        if $rng.next(3) == 0 {
            answers.push($retry.$method($request.clone()).await);
        }
        answers
    }};
}

async fn run_client(
    index: usize,
    channel: Channel,
    retry_channel: Channel,
    acknowledged: Arc<Mutex<Acknowledged>>,
) {
    let mut client = InventoryServiceClient::new(channel);
    let mut retry = InventoryServiceClient::new(retry_channel);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1));
    let mut mine: Vec<(String, String)> = Vec::new();
    for op in 0..OPERATIONS_PER_CLIENT {
        let product = PRODUCTS[rng.next(PRODUCTS.len() as u64) as usize]
            .0
            .to_owned();
        let request_id = format!("request-{index}-{op}");
        match rng.next(12) {
            // Reserve, and sometimes retry the very same request.
            0..=3 => {
                let order = format!("order-{index}-{op}");
                let quantity = 1 + rng.next(3) as i32;
                let request = ReserveInventoryRequest {
                    product_id: product.clone(),
                    quantity,
                    order_id: order.clone(),
                    reservation_timeout: 0,
                };
                for answer in maybe_twice!(rng, client, retry, reserve_inventory, request) {
                    match answer {
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
            // Several products for one order, all or nothing; the same
            // product may be listed twice (its demand is summed).
            4 => {
                let order = format!("order-{index}-{op}");
                let mut items = Vec::new();
                for _ in 0..2 + rng.next(3) {
                    items.push(OrderItem {
                        product_id: PRODUCTS[rng.next(PRODUCTS.len() as u64) as usize]
                            .0
                            .to_owned(),
                        quantity: 1 + rng.next(3) as i32,
                    });
                }
                let mut demand: HashMap<String, i32> = HashMap::new();
                for item in &items {
                    *demand.entry(item.product_id.clone()).or_default() += item.quantity;
                }
                let request = ReserveOrderRequest {
                    order_id: order.clone(),
                    items,
                    reservation_timeout: 0,
                };
                for answer in maybe_twice!(rng, client, retry, reserve_order, request) {
                    match answer {
                        Ok(answer) => {
                            let answer = answer.into_inner();
                            let held: HashMap<String, i32> = answer
                                .items
                                .iter()
                                .map(|item| {
                                    let reservation =
                                        item.reservation.as_ref().expect("a reservation");
                                    (item.product_id.clone(), reservation.quantity)
                                })
                                .collect();
                            assert_eq!(held, demand, "{order}: one reservation per product");
                            let mut record = acknowledged.lock().await;
                            let mut new = false;
                            for (product, quantity) in &demand {
                                let key = (order.clone(), product.clone());
                                let previous = record.reservations.insert(key.clone(), *quantity);
                                assert!(previous.is_none_or(|q| q == *quantity));
                                if previous.is_none() {
                                    new = true;
                                    mine.push(key);
                                }
                            }
                            if new {
                                record.orders += 1;
                            }
                        }
                        Err(status) if status.code() == Code::FailedPrecondition => {
                            acknowledged.lock().await.insufficient += 1;
                        }
                        Err(status) => panic!("reserve order {order}: {status:?}"),
                    }
                }
            }
            // Commit all or part of one of this client's reservations with a
            // request_id, and sometimes retry it.
            5 | 6 => {
                let Some((order, product)) =
                    (!mine.is_empty()).then(|| mine[rng.next(mine.len() as u64) as usize].clone())
                else {
                    continue;
                };
                let request = CommitReservationRequest {
                    product_id: product.clone(),
                    quantity: rng.next(2) as i32, // 0 = everything held
                    order_id: order.clone(),
                    request_id,
                };
                let mut first = None;
                for answer in maybe_twice!(rng, client, retry, commit_reservation, request) {
                    match answer {
                        Ok(answer) => {
                            let committed = answer.into_inner().committed_quantity;
                            let mut record = acknowledged.lock().await;
                            if let Some(first) = first {
                                assert_eq!(committed, first, "{order}: a retry replays the first");
                                record.replayed += 1;
                                continue;
                            }
                            first = Some(committed);
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
            // Release all or part of one of this client's reservations with a
            // request_id, and sometimes retry it.
            7 => {
                let Some((order, product)) =
                    (!mine.is_empty()).then(|| mine[rng.next(mine.len() as u64) as usize].clone())
                else {
                    continue;
                };
                let request = ReleaseInventoryRequest {
                    product_id: product,
                    quantity: rng.next(2) as i32, // 0 = everything held
                    order_id: order.clone(),
                    request_id,
                };
                let mut first = None;
                for answer in maybe_twice!(rng, client, retry, release_inventory, request) {
                    match answer {
                        Ok(answer) => {
                            let released = answer.into_inner().released_quantity;
                            match first {
                                Some(first) => {
                                    assert_eq!(released, first, "{order}: a retry replays");
                                    acknowledged.lock().await.replayed += 1;
                                }
                                None => first = Some(released),
                            }
                        }
                        Err(status) if status.code() == Code::FailedPrecondition => {}
                        Err(status) => panic!("release {order}: {status:?}"),
                    }
                }
            }
            // Set the stock read a moment ago plus a little, only if nobody
            // changed it since (compare-and-set).
            8 => {
                let stock = client
                    .check_inventory(CheckInventoryRequest {
                        product_id: product.clone(),
                        required_quantity: 0,
                    })
                    .await
                    .expect("check")
                    .into_inner();
                let request = UpdateInventoryRequest {
                    product_id: product.clone(),
                    quantity: stock.current_quantity + 1 + rng.next(3) as i32,
                    operation: "set".into(),
                    expected_version: Some(stock.version),
                    request_id,
                };
                update(&mut rng, &mut client, &mut retry, request, &acknowledged).await;
            }
            // Add stock, or take some away, with no request_id: sent once
            // (a retry could apply it twice), and never refused for
            // contention.
            9 => {
                let (operation, quantity) = if rng.next(2) == 0 {
                    ("add", 1 + rng.next(5) as i32)
                } else {
                    ("subtract", 1 + rng.next(3) as i32)
                };
                let request = UpdateInventoryRequest {
                    product_id: product,
                    quantity,
                    operation: operation.into(),
                    expected_version: None,
                    request_id: String::new(),
                };
                record_update(
                    client.update_inventory(request.clone()).await,
                    &request,
                    None,
                    &acknowledged,
                )
                .await;
            }
            // Add stock, or take some away, with a request_id.
            _ => {
                let (operation, quantity) = if rng.next(2) == 0 {
                    ("add", 1 + rng.next(5) as i32)
                } else {
                    ("subtract", 1 + rng.next(3) as i32)
                };
                let request = UpdateInventoryRequest {
                    product_id: product,
                    quantity,
                    operation: operation.into(),
                    expected_version: None,
                    request_id,
                };
                update(&mut rng, &mut client, &mut retry, request, &acknowledged).await;
            }
        }
    }
}

/// Sends an update (maybe twice) and records its acknowledged change once.
async fn update(
    rng: &mut XorShift,
    client: &mut InventoryServiceClient<Channel>,
    retry: &mut InventoryServiceClient<Channel>,
    request: UpdateInventoryRequest,
    acknowledged: &Mutex<Acknowledged>,
) {
    let mut first = None;
    for answer in maybe_twice!(rng, client, retry, update_inventory, request) {
        first = record_update(answer, &request, first, acknowledged).await;
    }
}

/// Records the answer to an update: its change of stock on hand, once
/// (`first`, the change and version of an earlier answer to the same
/// request, says a retry must replay it). Returns the change and version of
/// the first acknowledged answer.
async fn record_update(
    answer: Result<tonic::Response<UpdateInventoryResponse>, tonic::Status>,
    request: &UpdateInventoryRequest,
    first: Option<(i64, i64)>,
    acknowledged: &Mutex<Acknowledged>,
) -> Option<(i64, i64)> {
    match answer {
        Ok(answer) => {
            let answer = answer.into_inner();
            let change = i64::from(answer.quantity_change);
            let mut record = acknowledged.lock().await;
            if let Some(first) = first {
                assert_eq!(
                    (change, answer.version),
                    first,
                    "{}: a retry replays the first",
                    request.request_id
                );
                record.replayed += 1;
                return Some(first);
            }
            *record
                .stock_changes
                .entry(request.product_id.clone())
                .or_default() += change;
            Some((change, answer.version))
        }
        // Would go below what is reserved, or below zero.
        Err(status) if status.code() == Code::FailedPrecondition => first,
        // The version read is gone (compare-and-set); nothing was applied.
        // Only a compare-and-set may answer this: a plain update waits its
        // turn and is never refused for contention.
        Err(status) if status.code() == Code::Aborted && request.expected_version.is_some() => {
            acknowledged.lock().await.version_mismatches += 1;
            first
        }
        Err(status) => panic!("{} {}: {status:?}", request.operation, request.product_id),
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
    for row in query(database, VERSION_VS_HISTORY).await {
        assert_eq!(
            row.a, row.b,
            "{}: version != updates and commits in the history",
            row.key
        );
    }
}
