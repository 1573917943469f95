//! A crash while batches are in flight loses no acknowledged call and leaves
//! nothing half-applied: the real binary, on either backend, is killed with
//! SIGKILL under load (group commit on, batches forming), then started again
//! on the same database.
//!
//! The load is keyed so that its effects can be checked exactly afterwards:
//! restocks, releases and commits carry a `request_id`, reservations an
//! order id. After the restart every client's requests are sent again, in
//! the order it sent them: an acknowledged one must be found (replayed, or
//! the reservation found again), an unacknowledged one is either found or
//! applied now. Then the stock on hand is the initial stock plus every
//! restock less every commit, the reserved stock every reservation less
//! what was released and committed, exactly once each, and the database's
//! own invariants hold.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::invariants::{
    AVAILABLE_VS_HISTORY, LEVELS, RESERVED_VS_HELD, VERSION_VS_HISTORY, query,
};
use common::{Backend, TestDatabase, backend_tests};
use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::pb::{
    CommitReservationRequest, ReleaseInventoryRequest, ReserveInventoryRequest,
    UpdateInventoryRequest,
};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

backend_tests!(a_sigkill_under_load_loses_no_acknowledged_call);

const PRODUCTS: [&str; 2] = ["crash-hot", "crash-cold"];
const INITIAL: i32 = 100_000;
const CLIENTS: usize = 32;

/// The service binary, started on `database` with ephemeral ports.
struct Service {
    child: Child,
    grpc: String,
    http: String,
    _config: tempfile::NamedTempFile,
}

impl Service {
    async fn start(database: &TestDatabase) -> Self {
        let config = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile()
            .expect("config file");
        let database_section = match (database.sqlite_path(), database.postgres_url()) {
            (Some(path), _) => format!(
                "database:\n  driver: sqlite\n  dsn: {:?}\n  synchronous: full\n",
                path.display().to_string()
            ),
            (None, Some(url)) => format!("database:\n  driver: postgres\n  dsn: {url:?}\n"),
            (None, None) => unreachable!("a test database is on one backend"),
        };
        std::fs::write(
            config.path(),
            format!(
                "server:\n  host: 127.0.0.1\n  http_port: 0\n  grpc_port: 0\n{database_section}\
                 inventory:\n  batch:\n    max_wait: 2ms\nlogging:\n  level: info\n  format: json\n"
            ),
        )
        .expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_inventory-service"))
            .arg("--config")
            .arg(config.path())
            .env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the service binary");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (grpc, http) = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read the log") {
                if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
                    && entry["message"] == "inventory-service listening"
                {
                    let address = |key: &str| entry[key].as_str().map(str::to_owned);
                    return address("grpc").zip(address("http"));
                }
            }
            None
        })
        .await
        .expect("the service started within 30 s")
        .expect("a listening line with the addresses");
        // Keep reading its log, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            grpc: format!("http://{grpc}"),
            http: format!("http://{http}"),
            _config: config,
        }
    }

    async fn client(&self) -> InventoryServiceClient<Channel> {
        InventoryServiceClient::connect(self.grpc.clone())
            .await
            .expect("connect")
    }

    /// How many batches of more than one call it applied (`/metrics`).
    async fn shared_batches(&self) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.http))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let value = |prefix: &str| -> f64 {
            text.lines()
                .find(|line| line.starts_with(prefix))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        value("inventory_batch_size_count") - value("inventory_batch_size_bucket{le=\"1\"}")
    }

    /// SIGKILL: no shutdown, no flush.
    async fn kill(mut self) {
        self.child.start_kill().expect("kill");
        self.child.wait().await.expect("reaped");
    }
}

/// One call a client made, in order, and whether it was acknowledged.
#[derive(Debug, Clone)]
enum Call {
    /// A restock of `quantity` under `request_id`.
    Restock {
        request_id: String,
        product: String,
        quantity: i32,
        done: bool,
    },
    /// A reservation of `quantity` for `order`.
    Reserve {
        order: String,
        product: String,
        quantity: i32,
        done: bool,
    },
    /// The release of `order`'s whole reservation under `request_id`.
    Release {
        request_id: String,
        order: String,
        product: String,
        done: bool,
    },
    /// The commit of `order`'s whole reservation under `request_id`.
    Commit {
        request_id: String,
        order: String,
        product: String,
        done: bool,
    },
}

async fn a_sigkill_under_load_loses_no_acknowledged_call(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let service = Service::start(&database).await;
    let mut setup = service.client().await;
    for product in PRODUCTS {
        setup
            .update_inventory(UpdateInventoryRequest {
                product_id: product.into(),
                quantity: INITIAL,
                operation: "set".into(),
                ..Default::default()
            })
            .await
            .expect("initial stock");
    }

    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let mut client = service.client().await;
        clients.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            // The last reservation made, and not yet released or committed.
            let mut held: Option<(String, String)> = None;
            for call in 0.. {
                let product = PRODUCTS[(index + call) % 4 / 3].to_owned();
                let quantity = 1 + ((index + call) % 3) as i32;
                let request_id = format!("call-{index}-{call}");
                let mut record = match (call % 3, held.take()) {
                    (0, held_before) => {
                        held = held_before;
                        Call::Restock {
                            request_id,
                            product,
                            quantity,
                            done: false,
                        }
                    }
                    (2, Some((order, product))) if call % 2 == 0 => Call::Release {
                        request_id,
                        order,
                        product,
                        done: false,
                    },
                    (2, Some((order, product))) => Call::Commit {
                        request_id,
                        order,
                        product,
                        done: false,
                    },
                    (_, held_before) => {
                        held = held_before;
                        Call::Reserve {
                            order: format!("order-{index}-{call}"),
                            product,
                            quantity,
                            done: false,
                        }
                    }
                };
                let acknowledged = record.send(&mut client).await.is_ok();
                record.acknowledge(acknowledged);
                if let Call::Reserve { order, product, .. } = &record
                    && acknowledged
                    && held.is_none()
                {
                    held = Some((order.clone(), product.clone()));
                }
                calls.push(record);
                if !acknowledged {
                    return calls;
                }
            }
            calls
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        service.shared_batches().await > 0.0,
        "no batch of several calls was in flight"
    );
    service.kill().await;
    let mut sent = Vec::new();
    for client in clients {
        sent.push(client.await.expect("client task"));
    }
    let acknowledged = sent.iter().flatten().filter(|c| c.done()).count();
    let kinds = |kind: fn(&Call) -> bool| {
        sent.iter()
            .flatten()
            .filter(|c| c.done() && kind(c))
            .count()
    };
    assert!(
        kinds(|c| matches!(c, Call::Release { .. })) > 0
            && kinds(|c| matches!(c, Call::Commit { .. })) > 0,
        "releases and commits were acknowledged before the kill"
    );
    assert!(
        acknowledged > 100,
        "only {acknowledged} calls before the kill"
    );

    // Nothing half-applied, straight after the crash.
    check_invariants(&database).await;

    // Every client's requests again, in its order, all clients at once.
    let service = Service::start(&database).await;
    let mut resends = Vec::new();
    for calls in sent.clone() {
        let mut client = service.client().await;
        resends.push(tokio::spawn(async move {
            for call in calls {
                let message = call
                    .send(&mut client)
                    .await
                    .unwrap_or_else(|status| panic!("{call:?} sent again: {status:?}"));
                let found = call.found(&message);
                assert!(
                    !call.done() || found,
                    "{call:?} was acknowledged but is not there: {message}"
                );
            }
        }));
    }
    for resend in resends {
        resend.await.expect("every request found or applied");
    }
    // Each call applied exactly once: on hand = initial + restocks - commits,
    // reserved = reservations - releases - commits.
    let mut expected = std::collections::HashMap::<String, (i64, i64)>::new();
    for calls in &sent {
        let mut reserved_by_order = std::collections::HashMap::<&str, i64>::new();
        for call in calls {
            match call {
                Call::Restock {
                    product, quantity, ..
                } => {
                    expected.entry(product.clone()).or_default().0 += i64::from(*quantity);
                }
                Call::Reserve {
                    order,
                    product,
                    quantity,
                    ..
                } => {
                    expected.entry(product.clone()).or_default().1 += i64::from(*quantity);
                    reserved_by_order.insert(order, i64::from(*quantity));
                }
                Call::Release { order, product, .. } => {
                    let held = reserved_by_order.remove(order.as_str()).unwrap_or(0);
                    expected.entry(product.clone()).or_default().1 -= held;
                }
                Call::Commit { order, product, .. } => {
                    let held = reserved_by_order.remove(order.as_str()).unwrap_or(0);
                    let entry = expected.entry(product.clone()).or_default();
                    entry.0 -= held;
                    entry.1 -= held;
                }
            }
        }
    }
    for row in query(&database, LEVELS).await {
        let (on_hand, reserved) = expected.get(&row.key).copied().unwrap_or((0, 0));
        assert_eq!(
            (row.a, row.b),
            (i64::from(INITIAL) + on_hand, reserved),
            "{}: every call exactly once",
            row.key
        );
    }
    check_invariants(&database).await;
    service.kill().await;
}

async fn check_invariants(database: &TestDatabase) {
    for (sql, what) in [
        (RESERVED_VS_HELD, "reserved = what active reservations hold"),
        (AVAILABLE_VS_HISTORY, "available = the history's changes"),
        (VERSION_VS_HISTORY, "version = updates and commits"),
    ] {
        for row in query(database, sql).await {
            assert_eq!(row.a, row.b, "{}: {what}", row.key);
        }
    }
}

impl Call {
    /// Sends the call; the service's message when it succeeds.
    async fn send(
        &self,
        client: &mut InventoryServiceClient<Channel>,
    ) -> Result<String, tonic::Status> {
        Ok(match self {
            Self::Restock {
                request_id,
                product,
                quantity,
                ..
            } => {
                client
                    .update_inventory(UpdateInventoryRequest {
                        product_id: product.clone(),
                        quantity: *quantity,
                        operation: "add".into(),
                        request_id: request_id.clone(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .message
            }
            Self::Reserve {
                order,
                product,
                quantity,
                ..
            } => {
                client
                    .reserve_inventory(ReserveInventoryRequest {
                        product_id: product.clone(),
                        quantity: *quantity,
                        order_id: order.clone(),
                        reservation_timeout: 3600,
                    })
                    .await?
                    .into_inner()
                    .message
            }
            Self::Release {
                request_id,
                order,
                product,
                ..
            } => {
                client
                    .release_inventory(ReleaseInventoryRequest {
                        product_id: product.clone(),
                        order_id: order.clone(),
                        request_id: request_id.clone(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .message
            }
            Self::Commit {
                request_id,
                order,
                product,
                ..
            } => {
                client
                    .commit_reservation(CommitReservationRequest {
                        product_id: product.clone(),
                        order_id: order.clone(),
                        request_id: request_id.clone(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .message
            }
        })
    }

    /// Whether `message`, the answer to this call sent again, says the
    /// first one was applied: a replay, or the reservation found.
    fn found(&self, message: &str) -> bool {
        match self {
            Self::Reserve { .. } => message.contains("already made"),
            _ => message.contains("replayed"),
        }
    }

    fn acknowledge(&mut self, acknowledged: bool) {
        match self {
            Self::Restock { done, .. }
            | Self::Reserve { done, .. }
            | Self::Release { done, .. }
            | Self::Commit { done, .. } => *done = acknowledged,
        }
    }

    fn done(&self) -> bool {
        match self {
            Self::Restock { done, .. }
            | Self::Reserve { done, .. }
            | Self::Release { done, .. }
            | Self::Commit { done, .. } => *done,
        }
    }
}
