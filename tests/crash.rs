//! A crash while batches are in flight loses no acknowledged call and leaves
//! nothing half-applied: the real binary, on either backend, is killed with
//! SIGKILL under load (group commit on, batches forming), then started again
//! on the same database.
//!
//! The load is keyed so that its effects can be checked exactly afterwards:
//! restocks carry a `request_id` and reservations an order id. After the
//! restart every request is sent again: an acknowledged one must be found
//! (replayed, or the reservation found again), an unacknowledged one is
//! either found or applied now, and then the stock on hand is the initial
//! stock plus every restock, exactly once each, and the database's own
//! invariants hold.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::invariants::{
    AVAILABLE_VS_HISTORY, LEVELS, RESERVED_VS_HELD, VERSION_VS_HISTORY, query,
};
use common::{Backend, TestDatabase, backend_tests};
use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::pb::{ReserveInventoryRequest, UpdateInventoryRequest};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
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

/// Every request the clients sent, and which were acknowledged.
#[derive(Default)]
struct Sent {
    /// (request_id, product, quantity, acknowledged) of each restock.
    restocks: Vec<(String, String, i32, bool)>,
    /// (order, product, quantity, acknowledged) of each reservation.
    reservations: Vec<(String, String, i32, bool)>,
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

    let sent = Arc::new(Mutex::new(Sent::default()));
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        let mut client = service.client().await;
        let sent = sent.clone();
        clients.push(tokio::spawn(async move {
            for call in 0.. {
                let product = PRODUCTS[(index + call) % 4 / 3].to_owned();
                let quantity = 1 + ((index + call) % 3) as i32;
                if call % 2 == 0 {
                    let request_id = format!("restock-{index}-{call}");
                    let answer = client
                        .update_inventory(UpdateInventoryRequest {
                            product_id: product.clone(),
                            quantity,
                            operation: "add".into(),
                            request_id: request_id.clone(),
                            ..Default::default()
                        })
                        .await;
                    let done = answer.is_ok();
                    sent.lock()
                        .await
                        .restocks
                        .push((request_id, product, quantity, done));
                    if !done {
                        return;
                    }
                } else {
                    let order = format!("order-{index}-{call}");
                    let answer = client
                        .reserve_inventory(ReserveInventoryRequest {
                            product_id: product.clone(),
                            quantity,
                            order_id: order.clone(),
                            reservation_timeout: 3600,
                        })
                        .await;
                    let done = answer.is_ok();
                    sent.lock()
                        .await
                        .reservations
                        .push((order, product, quantity, done));
                    if !done {
                        return;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        service.shared_batches().await > 0.0,
        "no batch of several calls was in flight"
    );
    service.kill().await;
    for client in clients {
        client.await.expect("client task");
    }
    let sent = Arc::try_unwrap(sent)
        .map_err(|_| "clients hold the record")
        .expect("clients done")
        .into_inner();
    let acknowledged = sent.restocks.iter().filter(|r| r.3).count()
        + sent.reservations.iter().filter(|r| r.3).count();
    assert!(
        acknowledged > 100,
        "only {acknowledged} calls before the kill"
    );

    // Nothing half-applied, straight after the crash.
    check_invariants(&database).await;

    // Every request again, from 16 clients at once.
    let service = Service::start(&database).await;
    let sent = Arc::new(sent);
    let mut resends = Vec::new();
    for part in 0..16 {
        let mut client = service.client().await;
        let sent = sent.clone();
        resends.push(tokio::spawn(async move {
            let mine = |n: usize| n % 16 == part;
            for (_, (request_id, product, quantity, acknowledged)) in
                sent.restocks.iter().enumerate().filter(|(n, _)| mine(*n))
            {
                let answer = client
                    .update_inventory(UpdateInventoryRequest {
                        product_id: product.clone(),
                        quantity: *quantity,
                        operation: "add".into(),
                        request_id: request_id.clone(),
                        ..Default::default()
                    })
                    .await
                    .expect("a restock sent again")
                    .into_inner();
                assert!(
                    !acknowledged || answer.message.contains("replayed"),
                    "{request_id} was acknowledged but is not there: {}",
                    answer.message
                );
            }
            for (_, (order, product, quantity, acknowledged)) in sent
                .reservations
                .iter()
                .enumerate()
                .filter(|(n, _)| mine(*n))
            {
                let answer = client
                    .reserve_inventory(ReserveInventoryRequest {
                        product_id: product.clone(),
                        quantity: *quantity,
                        order_id: order.clone(),
                        reservation_timeout: 3600,
                    })
                    .await
                    .expect("a reservation sent again")
                    .into_inner();
                assert!(
                    !acknowledged || answer.message.contains("already made"),
                    "{order} was acknowledged but is not there: {}",
                    answer.message
                );
            }
        }));
    }
    for resend in resends {
        resend.await.expect("every request found or applied");
    }
    let mut added = std::collections::HashMap::<String, i64>::new();
    for (_, product, quantity, _) in &sent.restocks {
        *added.entry(product.clone()).or_default() += i64::from(*quantity);
    }
    for row in query(&database, LEVELS).await {
        let expected = i64::from(INITIAL) + added.get(&row.key).copied().unwrap_or(0);
        assert_eq!(row.a, expected, "{}: every restock exactly once", row.key);
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
