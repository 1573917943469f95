//! A database that drops out. A TCP proxy between the service and PostgreSQL
//! cuts every connection (and refuses new ones), then lets traffic through
//! again.
//!
//! - A long outage under load, without a cache: the service must answer
//!   UNAVAILABLE with a clear message once its retries are spent (and at
//!   once, read-only, after the health probe found the database gone),
//!   report NOT_SERVING on grpc.health and `/health`, recover by itself, and
//!   keep the invariants with no acknowledged write lost.
//! - The same with a cache (memory, then Redis): read-only mode. Reads come
//!   from the cache marked stale (response field, gRPC metadata, HTTP
//!   header), writes are refused without touching the database, health says
//!   DEGRADED while the replica stays in rotation, one alert is posted per
//!   transition, and the service comes back by itself.
//! - A short outage: requests caught in it succeed through the store's
//!   retries, and a retried reservation holds its stock once.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::chaos::ChaosProxy;
use common::invariants::{
    AVAILABLE_VS_HISTORY, LEVELS, RESERVATIONS, RESERVE_ENTRIES, RESERVED_VS_HELD, query,
};
use common::webhook::Webhook;
use common::{Backend, TestDatabase, TestServer, metric};
use inventory_service::config::CacheType;
use inventory_service::pb::ListInventoryRequest;
use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::pb::{
    CheckInventoryRequest, ReserveInventoryRequest, UpdateInventoryRequest,
};
use tokio::sync::{Mutex, watch};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

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

/// Waits until health says `state` (`SERVING`, `DEGRADED` or
/// `NOT_SERVING`) everywhere: grpc.health for the inventory service and for
/// writes, and `/health`'s status code and body. Returns the body.
async fn wait_for_health(server: &TestServer, state: &str) -> serde_json::Value {
    use ServingStatus::{NotServing, Serving};
    let (service, writes, http_status) = match state {
        "SERVING" => (Serving, Serving, 200),
        "DEGRADED" => (Serving, NotServing, 200),
        "NOT_SERVING" => (NotServing, NotServing, 503),
        other => panic!("no health state {other}"),
    };
    let mut health = HealthClient::new(server.channel().await);
    let mut last = None;
    for _ in 0..150 {
        let mut statuses = Vec::new();
        for name in [
            "inventory.v1.InventoryService",
            "inventory.v1.InventoryService.writes",
        ] {
            let status = health
                .check(HealthCheckRequest {
                    service: name.into(),
                })
                .await
                .map(|r| r.into_inner().status())
                .ok();
            statuses.push(status);
        }
        if let Ok(response) = reqwest::get(server.http_url("/health")).await {
            let code = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            if statuses == [Some(service), Some(writes)]
                && code == http_status
                && body["status"] == state
            {
                return body;
            }
            last = Some((statuses, code, body));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("health never became {state}; last seen {last:?}");
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
        config.cache.enabled = false;
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
    wait_for_health(&server, "NOT_SERVING").await;
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
    assert!(
        during.message().starts_with("read-only mode: "),
        "refused at once once the probe found the database gone: {during:?}"
    );
    // Long enough that the requests caught by the cut spend their retries.
    tokio::time::sleep(Duration::from_secs(1)).await;

    proxy.restore();
    wait_for_health(&server, "SERVING").await;
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
            .all(|m| m == "the database is unavailable; retry later"
                || m.starts_with("read-only mode: ")),
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

async fn read_only_mode(cache: CacheType) {
    let webhook = Webhook::start().await;
    let (database, proxy, server) = start_behind_proxy(|config| {
        config.database.connection_timeout = Duration::from_millis(500);
        config.database.health_check_interval = Duration::from_millis(100);
        config.cache.enabled = true;
        config.cache.cache_type = cache;
        config.alerting.webhook_url = webhook.url();
    })
    .await;
    let mut client = server.client().await;
    for (product, quantity) in [("a", 10), ("b", 20)] {
        client
            .update_inventory(UpdateInventoryRequest {
                product_id: product.into(),
                quantity,
                operation: "set".into(),
                ..Default::default()
            })
            .await
            .expect("stock");
    }
    client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "a".into(),
            quantity: 3,
            order_id: "before".into(),
            reservation_timeout: 0,
        })
        .await
        .expect("reserve");
    // The cache answers (the memory cache on PostgreSQL once it listens for
    // the other replicas' changes).
    for attempt in 0.. {
        client
            .list_inventory(ListInventoryRequest::default())
            .await
            .expect("list");
        client
            .check_inventory(CheckInventoryRequest {
                product_id: "a".into(),
                required_quantity: 1,
            })
            .await
            .expect("check");
        if metric(&server, "inventory_cache_hits_total").await > 0.0 {
            break;
        }
        assert!(attempt < 100, "the cache never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        webhook.received().is_empty(),
        "no alert while the database answers"
    );

    proxy.cut();
    let health = wait_for_health(&server, "DEGRADED").await;
    assert_eq!(health["degraded"]["mode"], "read_only", "{health}");
    assert_eq!(health["database"]["status"], "down", "{health}");
    let alerts = webhook.wait_for(1).await;
    assert_eq!(alerts[0]["state"], "read_only", "{alerts:?}");
    assert_eq!(alerts[0]["service"], "inventory-service");
    assert!(alerts[0]["replica"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(alerts[0]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(alerts[0]["since"].is_string());
    assert_eq!(metric(&server, "inventory_read_only").await, 1.0);

    // Reads: from the cache, always marked.
    let check = client
        .check_inventory(CheckInventoryRequest {
            product_id: "a".into(),
            required_quantity: 1,
        })
        .await
        .expect("a cached product is answered");
    let age: u64 = check
        .metadata()
        .get("x-inventory-stale")
        .expect("stale metadata")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(age < 60, "{age}");
    let check = check.into_inner();
    assert!(check.stale);
    assert_eq!((check.current_quantity, check.reserved_quantity), (10, 3));
    let rest = reqwest::get(server.http_url("/api/v1/inventory/a"))
        .await
        .expect("REST check");
    assert_eq!(rest.status(), 200);
    assert!(rest.headers().contains_key("x-inventory-stale"), "{rest:?}");
    let body: serde_json::Value = rest.json().await.expect("json");
    assert_eq!(body["stale"], true, "{body}");
    assert_eq!(body["available_quantity"], 7, "{body}");
    let list = client
        .list_inventory(ListInventoryRequest::default())
        .await
        .expect("the list is answered from the cache");
    assert!(list.metadata().contains_key("x-inventory-stale"));
    let list = list.into_inner();
    assert!(list.stale);
    let listed: Vec<_> = list.items.iter().map(|i| i.product_id.as_str()).collect();
    assert!(
        listed.contains(&"a") && listed.contains(&"b") && listed.is_sorted(),
        "{listed:?}"
    );
    let uncached = client
        .check_inventory(CheckInventoryRequest {
            product_id: "never-seen".into(),
            required_quantity: 1,
        })
        .await
        .expect_err("nothing to answer with");
    assert_eq!(uncached.code(), Code::Unavailable);

    // Writes: refused without a try at the database.
    let refused_before = proxy.refused.load(Ordering::SeqCst);
    let mut refused_orders = Vec::new();
    for n in 0..10 {
        let order = format!("during-{n}");
        let refused = client
            .reserve_inventory(ReserveInventoryRequest {
                product_id: "a".into(),
                quantity: 1,
                order_id: order.clone(),
                reservation_timeout: 0,
            })
            .await
            .expect_err("no write while read-only");
        assert_eq!(refused.code(), Code::Unavailable);
        assert_eq!(common::reason(&refused), "DATABASE_UNAVAILABLE");
        assert!(
            refused.message().starts_with("read-only mode: "),
            "{refused:?}"
        );
        refused_orders.push(order);
    }
    let rest_write = reqwest::Client::new()
        .put(server.http_url("/api/v1/inventory/b"))
        .json(&serde_json::json!({"quantity": 5, "operation": "add"}))
        .send()
        .await
        .expect("REST write");
    assert_eq!(rest_write.status(), 503);
    let error: serde_json::Value = rest_write.json().await.expect("error body");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("read-only mode: "))
    );
    // The probe keeps trying; the writes did not.
    let probes = proxy.refused.load(Ordering::SeqCst) - refused_before;
    assert!(
        probes <= 8,
        "{probes} connection attempts: writes reached for the database"
    );
    assert_eq!(webhook.received().len(), 1, "one alert per transition");

    proxy.restore();
    wait_for_health(&server, "SERVING").await;
    let alerts = webhook.wait_for(2).await;
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[1]["state"], "normal");
    assert_eq!(metric(&server, "inventory_read_only").await, 0.0);
    assert_eq!(
        metric(&server, "inventory_read_only_transitions_total").await,
        2.0
    );

    // Back to normal: current figures, writes accepted.
    let check = client
        .check_inventory(CheckInventoryRequest {
            product_id: "a".into(),
            required_quantity: 1,
        })
        .await
        .expect("check");
    assert!(!check.metadata().contains_key("x-inventory-stale"));
    assert!(!check.into_inner().stale);
    client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "a".into(),
            quantity: 1,
            order_id: "after".into(),
            reservation_timeout: 0,
        })
        .await
        .expect("writes work again");

    // Nothing refused was applied.
    let stored: HashSet<String> = query(&database, RESERVATIONS)
        .await
        .into_iter()
        .map(|row| row.key.trim_end_matches("/a").to_owned())
        .collect();
    assert_eq!(
        stored,
        HashSet::from(["before".to_owned(), "after".to_owned()])
    );
    let levels = query(&database, LEVELS).await;
    let level = |product: &str| {
        levels
            .iter()
            .find(|row| row.key == product)
            .map(|row| (row.a, row.b))
    };
    assert_eq!(level("a"), Some((10, 4)));
    assert_eq!(level("b"), Some((20, 0)));
    assert_eq!(webhook.received().len(), 2);
}

#[tokio::test]
async fn read_only_mode_with_the_memory_cache() {
    read_only_mode(CacheType::Memory).await;
}

#[tokio::test]
async fn read_only_mode_with_the_redis_cache() {
    read_only_mode(CacheType::Redis).await;
}
