//! A database that drops out. A TCP proxy between the service and PostgreSQL
//! cuts every connection (and refuses new ones), then lets traffic through
//! again.
//!
//! - A long outage under load: the service must answer UNAVAILABLE with a
//!   clear message once its retries are spent, report NOT_SERVING on
//!   grpc.health and `/health`, recover by itself, and keep the invariants
//!   with no acknowledged write lost.
//! - A short outage: requests caught in it succeed through the store's
//!   retries, and a retried reservation holds its stock once.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::invariants::{
    AVAILABLE_VS_HISTORY, LEVELS, RESERVATIONS, RESERVE_ENTRIES, RESERVED_VS_HELD, query,
};
use common::{Backend, TestDatabase, TestServer};
use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::pb::{
    CheckInventoryRequest, ReserveInventoryRequest, UpdateInventoryRequest,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A loopback TCP proxy that can sever every connection on demand.
struct ChaosProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Bumped on each cut; every piped connection ends when it changes.
    generation: watch::Sender<u64>,
    /// Connections refused while down.
    refused: Arc<AtomicUsize>,
}

impl ChaosProxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let refused = Arc::new(AtomicUsize::new(0));
        let proxy = Self {
            addr,
            up: up.clone(),
            generation: generation.clone(),
            refused: refused.clone(),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    drop(client); // Refused while down.
                    refused.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let mut cut = generation.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {} // Both sockets drop here: the cut.
                    }
                });
            }
        });
        proxy
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// Waits until a connection has been refused since `before` were.
    async fn wait_for_refusal(&self, before: usize) {
        for _ in 0..500 {
            if self.refused.load(Ordering::SeqCst) > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no connection was refused within 5s");
    }
}

/// A service on a fresh PostgreSQL database reached through a chaos proxy.
async fn start_behind_proxy(
    tweak: impl FnOnce(&mut inventory_service::config::Config),
) -> (Arc<TestDatabase>, ChaosProxy, TestServer) {
    let database = Arc::new(TestDatabase::create(Backend::Postgres).await);
    let url = database.postgres_url().expect("postgres").to_owned();
    let target: SocketAddr = "127.0.0.1:5432".parse().expect("addr");
    let proxy = ChaosProxy::start(target).await;
    let proxied_url = url.replacen("127.0.0.1:5432", &proxy.addr.to_string(), 1);
    assert_ne!(
        proxied_url, url,
        "the test database must be on 127.0.0.1:5432"
    );
    let server = TestServer::start_in(database.clone(), |config| {
        config.database.dsn = proxied_url;
        tweak(config);
    })
    .await;
    (database, proxy, server)
}

async fn wait_for_health(server: &TestServer, wanted: ServingStatus, http_status: u16) {
    let mut health = HealthClient::new(server.channel().await);
    for _ in 0..150 {
        let grpc = health
            .check(HealthCheckRequest {
                service: "inventory.v1.InventoryService".into(),
            })
            .await
            .map(|r| r.into_inner().status());
        let http = reqwest::get(server.http_url("/health"))
            .await
            .map(|r| r.status().as_u16());
        if grpc.as_ref().ok() == Some(&wanted) && http.as_ref().ok() == Some(&http_status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health never became {wanted:?} / HTTP {http_status}");
}

#[derive(Default)]
struct Outcomes {
    /// Orders whose reservation the service acknowledged.
    acknowledged: HashSet<String>,
    /// Orders whose call failed in a way that leaves the outcome unknown
    /// (the connection may have died after the commit).
    ambiguous: HashSet<String>,
    /// Messages of the UNAVAILABLE answers.
    unavailable_messages: HashSet<String>,
}

#[tokio::test]
async fn the_service_survives_the_database_dropping_out() {
    // The outage lasts until health reports it and a request has failed:
    // longer than the retries, which stop 500ms after a request's first try.
    let (database, proxy, server) = start_behind_proxy(|config| {
        config.database.connection_timeout = Duration::from_millis(500);
        config.database.health_check_interval = Duration::from_millis(100);
    })
    .await;

    let mut setup = server.client().await;
    setup
        .update_inventory(UpdateInventoryRequest {
            product_id: "p".into(),
            quantity: 100_000,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("stock");

    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let (stop_load, load_stopped) = watch::channel(false);
    let mut clients = Vec::new();
    for index in 0..16 {
        let mut client: InventoryServiceClient<_> = server.client().await;
        let outcomes = outcomes.clone();
        let stopped = load_stopped.clone();
        clients.push(tokio::spawn(async move {
            for op in 0.. {
                if *stopped.borrow() {
                    break;
                }
                let order = format!("order-{index}-{op}");
                let request = ReserveInventoryRequest {
                    product_id: "p".into(),
                    quantity: 1,
                    order_id: order.clone(),
                    reservation_timeout: 0,
                };
                match client.reserve_inventory(request).await {
                    Ok(_) => {
                        outcomes.lock().await.acknowledged.insert(order);
                    }
                    Err(status) => {
                        let mut record = outcomes.lock().await;
                        assert!(
                            matches!(
                                status.code(),
                                Code::Unavailable | Code::Internal | Code::Aborted
                            ),
                            "{order}: unexpected {status:?}"
                        );
                        if status.code() == Code::Unavailable {
                            record
                                .unavailable_messages
                                .insert(status.message().to_owned());
                        }
                        record.ambiguous.insert(order);
                        drop(record);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut();
    wait_for_health(&server, ServingStatus::NotServing, 503).await;
    let during = server
        .client()
        .await
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "p".into(),
            quantity: 1,
            order_id: "during-outage".into(),
            reservation_timeout: 0,
        })
        .await
        .expect_err("no database, no reservation");
    assert_eq!(during.code(), Code::Unavailable, "{during:?}");
    assert_eq!(during.message(), "the database is unavailable; retry later");

    proxy.restore();
    wait_for_health(&server, ServingStatus::Serving, 200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_load.send(true).expect("stop the load");
    for client in clients {
        client.await.expect("client");
    }

    // The service works again on its own.
    setup = server.client().await;
    setup
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "p".into(),
            quantity: 1,
            order_id: "after-outage".into(),
            reservation_timeout: 0,
        })
        .await
        .expect("reservations work again");

    let outcomes = outcomes.lock().await;
    assert!(
        outcomes.acknowledged.len() > 20,
        "too little load before and after the cut"
    );
    assert!(!outcomes.ambiguous.is_empty(), "the cut was never felt");
    assert!(
        outcomes
            .unavailable_messages
            .iter()
            .all(|m| m == "the database is unavailable; retry later"),
        "{:?}",
        outcomes.unavailable_messages
    );

    // Invariants, from the database itself (not through the proxy).
    for sql in [RESERVED_VS_HELD, AVAILABLE_VS_HISTORY] {
        for row in query(&database, sql).await {
            assert_eq!(row.a, row.b, "{}: {sql}", row.key);
        }
    }
    let levels = query(&database, LEVELS).await;
    assert_eq!((levels[0].key.as_str(), levels[0].a), ("p", 100_000));
    let stored: HashSet<String> = query(&database, RESERVATIONS)
        .await
        .into_iter()
        .map(|row| {
            assert_eq!((row.a, row.b), (1, 1), "{} stored once", row.key);
            row.key.trim_end_matches("/p").to_owned()
        })
        .collect();
    for order in &outcomes.acknowledged {
        assert!(stored.contains(order), "acknowledged {order} was lost");
    }
    for order in &stored {
        assert!(
            outcomes.acknowledged.contains(order)
                || outcomes.ambiguous.contains(order)
                || order == "after-outage",
            "{order} exists but was never asked for"
        );
    }
    assert_eq!(
        levels[0].b,
        stored.len() as i64,
        "reserved = reservations held"
    );
}

#[tokio::test]
async fn requests_ride_out_a_short_outage() {
    // Enough attempts that the waits between them (jittered, up to 400ms
    // each) surely outlast the outage, and no health pings to open
    // connections meanwhile: only the requests under test meet the cut.
    let (database, proxy, server) = start_behind_proxy(|config| {
        config.database.connection_timeout = Duration::from_secs(5);
        config.database.health_check_interval = Duration::from_secs(3600);
        config.database.retry_attempts = 12;
        config.database.retry_max_backoff = Duration::from_millis(400);
    })
    .await;
    let mut client = server.client().await;
    client
        .update_inventory(UpdateInventoryRequest {
            product_id: "p".into(),
            quantity: 10,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("stock");

    // Every pooled connection is severed and new ones are refused.
    proxy.cut();
    let refused_before = proxy.refused.load(Ordering::SeqCst);
    let check = tokio::spawn({
        let mut client = client.clone();
        async move {
            client
                .check_inventory(CheckInventoryRequest {
                    product_id: "p".into(),
                    required_quantity: 1,
                })
                .await
        }
    });
    let reserve = tokio::spawn({
        let mut client = client.clone();
        async move {
            client
                .reserve_inventory(ReserveInventoryRequest {
                    product_id: "p".into(),
                    quantity: 2,
                    order_id: "during-blip".into(),
                    reservation_timeout: 0,
                })
                .await
        }
    });
    // The requests have met the outage; it ends soon after.
    proxy.wait_for_refusal(refused_before).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.restore();

    let check = check.await.expect("task").expect("the check is retried");
    assert_eq!(check.into_inner().current_quantity, 10);
    let reserve = reserve
        .await
        .expect("task")
        .expect("the reservation is retried");
    assert_eq!(reserve.into_inner().reserved_quantity, 2);

    // Held once, whatever the attempts did.
    let levels = query(&database, LEVELS).await;
    assert_eq!(
        (levels[0].key.as_str(), levels[0].a, levels[0].b),
        ("p", 10, 2)
    );
    let reservations = query(&database, RESERVATIONS).await;
    assert_eq!(reservations.len(), 1, "one reservation");
    assert_eq!((reservations[0].a, reservations[0].b), (2, 1));
    for sql in [RESERVED_VS_HELD, AVAILABLE_VS_HISTORY, RESERVE_ENTRIES] {
        for row in query(&database, sql).await {
            assert_eq!(row.a, row.b, "{}: {sql}", row.key);
        }
    }
}
