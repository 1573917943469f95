//! The stock cache, memory and Redis, on both backends.
//!
//! - Every kind of write (reserve, order reservation, release, commit,
//!   update, order release, expiry) is seen at once by the next check on
//!   the same replica, and that check is answered by the cache.
//! - A write on one replica is seen by a check on another within a bound
//!   (PostgreSQL: the memory cache through `LISTEN/NOTIFY`, Redis shared).
//! - A replica whose change feed is lost stops answering from its cache
//!   until the feed is back, then starts empty.
//! - Redis dropping out: checks and writes go on through the database, and
//!   an entry a write could not correct meanwhile is never answered once
//!   Redis is back.

mod common;

use std::time::{Duration, Instant};

use common::chaos::ChaosProxy;
use common::{Backend, REDIS_URL, TestDatabase, TestServer, backend_tests, metric};
use diesel_async::SimpleAsyncConnection as _;
use inventory_service::config::CacheType;
use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::pb::{
    CheckInventoryRequest, CommitReservationRequest, OrderItem, ReleaseInventoryRequest,
    ReleaseOrderRequest, ReserveInventoryRequest, ReserveOrderRequest, UpdateInventoryRequest,
};
use inventory_service::store::postgres;
use tonic::transport::Channel;

type Client = InventoryServiceClient<Channel>;

/// (current, reserved) of a product, as a check answers it.
async fn figures(client: &mut Client, product: &str) -> (i32, i32) {
    let check = client
        .check_inventory(CheckInventoryRequest {
            product_id: product.into(),
            required_quantity: 1,
        })
        .await
        .expect("check")
        .into_inner();
    assert!(!check.stale);
    (check.current_quantity, check.reserved_quantity)
}

/// Checks `product` and asserts the cache answered it with `expected`.
async fn seen_from_cache(
    server: &TestServer,
    client: &mut Client,
    product: &str,
    expected: (i32, i32),
    after: &str,
) {
    let hits = metric(server, "inventory_cache_hits_total").await;
    assert_eq!(figures(client, product).await, expected, "after {after}");
    assert_eq!(
        metric(server, "inventory_cache_hits_total").await,
        hits + 1.0,
        "after {after}: the check was not answered by the cache"
    );
}

async fn set(client: &mut Client, product: &str, quantity: i32) {
    client
        .update_inventory(UpdateInventoryRequest {
            product_id: product.into(),
            quantity,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("update");
}

async fn reserve(client: &mut Client, product: &str, quantity: i32, order: &str, timeout: i32) {
    client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: product.into(),
            quantity,
            order_id: order.into(),
            reservation_timeout: timeout,
        })
        .await
        .expect("reserve");
}

/// Waits until the memory cache of a PostgreSQL replica listens (it answers
/// nothing before): a check of `product` is a hit.
async fn wait_until_cache_answers(server: &TestServer, client: &mut Client, product: &str) {
    for _ in 0..100 {
        let hits = metric(server, "inventory_cache_hits_total").await;
        figures(client, product).await;
        figures(client, product).await;
        if metric(server, "inventory_cache_hits_total").await > hits {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the cache never answered");
}

async fn every_write_is_seen_at_once(backend: Backend, cache: CacheType) {
    let server = TestServer::start_with(backend, |config| {
        config.cache.enabled = true;
        config.cache.cache_type = cache;
        config.inventory.cleanup_interval = Duration::from_millis(100);
    })
    .await;
    let mut client = server.client().await;
    set(&mut client, "p", 100).await;
    set(&mut client, "q", 50).await;
    wait_until_cache_answers(&server, &mut client, "p").await;

    reserve(&mut client, "p", 10, "o-1", 0).await;
    seen_from_cache(&server, &mut client, "p", (100, 10), "reserve").await;

    client
        .reserve_order(ReserveOrderRequest {
            order_id: "o-2".into(),
            items: vec![
                OrderItem {
                    product_id: "p".into(),
                    quantity: 5,
                },
                OrderItem {
                    product_id: "q".into(),
                    quantity: 7,
                },
            ],
            reservation_timeout: 0,
        })
        .await
        .expect("reserve order");
    seen_from_cache(&server, &mut client, "p", (100, 15), "order reservation").await;
    seen_from_cache(&server, &mut client, "q", (50, 7), "order reservation").await;

    client
        .release_inventory(ReleaseInventoryRequest {
            product_id: "p".into(),
            quantity: 4,
            order_id: "o-1".into(),
            ..Default::default()
        })
        .await
        .expect("release");
    seen_from_cache(&server, &mut client, "p", (100, 11), "release").await;

    client
        .commit_reservation(CommitReservationRequest {
            product_id: "p".into(),
            quantity: 6,
            order_id: "o-1".into(),
            ..Default::default()
        })
        .await
        .expect("commit");
    seen_from_cache(&server, &mut client, "p", (94, 5), "commit").await;

    client
        .update_inventory(UpdateInventoryRequest {
            product_id: "p".into(),
            quantity: 6,
            operation: "add".into(),
            ..Default::default()
        })
        .await
        .expect("update");
    seen_from_cache(&server, &mut client, "p", (100, 5), "update").await;

    client
        .release_order(ReleaseOrderRequest {
            order_id: "o-2".into(),
            ..Default::default()
        })
        .await
        .expect("release order");
    seen_from_cache(&server, &mut client, "p", (100, 0), "order release").await;
    seen_from_cache(&server, &mut client, "q", (50, 0), "order release").await;

    // Expiry, by the sweeper: seen as soon as it has run.
    reserve(&mut client, "q", 3, "o-3", 1).await;
    seen_from_cache(&server, &mut client, "q", (50, 3), "reserve").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while figures(&mut client, "q").await != (50, 0) {
        assert!(Instant::now() < deadline, "the expiry was never seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn memory_cache_sees_every_write(backend: Backend) {
    every_write_is_seen_at_once(backend, CacheType::Memory).await;
}

async fn redis_cache_sees_every_write(backend: Backend) {
    every_write_is_seen_at_once(backend, CacheType::Redis).await;
}

backend_tests!(memory_cache_sees_every_write, redis_cache_sees_every_write);

/// Replicas A and B on one PostgreSQL database: every write on A is seen by
/// B's checks within a second (the benchmark measures the real figure).
async fn other_replicas_see_writes(cache: CacheType) {
    let database = std::sync::Arc::new(TestDatabase::create(Backend::Postgres).await);
    let a = TestServer::start_in(database.clone(), |config| {
        config.cache.enabled = true;
        config.cache.cache_type = cache;
    })
    .await;
    let b = TestServer::start_in(database.clone(), |config| {
        config.cache.enabled = true;
        config.cache.cache_type = cache;
    })
    .await;
    let (mut on_a, mut on_b) = (a.client().await, b.client().await);
    set(&mut on_a, "p", 1_000).await;
    wait_until_cache_answers(&b, &mut on_b, "p").await;
    for n in 1..=20 {
        reserve(&mut on_a, "p", 1, &format!("o-{n}"), 0).await;
        let deadline = Instant::now() + Duration::from_secs(1);
        while figures(&mut on_b, "p").await != (1_000, n) {
            assert!(
                Instant::now() < deadline,
                "reservation {n} on A not seen on B within 1s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(metric(&b, "inventory_cache_hits_total").await > 20.0);
    if cache == CacheType::Memory {
        assert!(metric(&b, "inventory_cache_invalidations_received_total").await >= 20.0);
    }
}

#[tokio::test]
async fn other_replicas_see_writes_through_listen_notify() {
    other_replicas_see_writes(CacheType::Memory).await;
}

#[tokio::test]
async fn other_replicas_see_writes_through_redis() {
    other_replicas_see_writes(CacheType::Redis).await;
}

/// A memory cache whose change feed is cut answers nothing from its cache
/// until the feed is back, and then nothing it held before.
#[tokio::test]
async fn a_lost_change_feed_drops_the_memory_cache() {
    let server = TestServer::start_with(Backend::Postgres, |config| {
        config.cache.enabled = true;
        config.cache.cache_type = CacheType::Memory;
    })
    .await;
    let mut client = server.client().await;
    set(&mut client, "p", 10).await;
    wait_until_cache_answers(&server, &mut client, "p").await;

    // A change no notification tells of (written behind the service's back)
    // is not seen while the cache answers...
    let url = server.database.postgres_url().expect("postgres").to_owned();
    let mut sql = postgres::connect(&url).await.expect("connect");
    sql.batch_execute("UPDATE inventory SET total_quantity = 11 WHERE product_id = 'p'")
        .await
        .expect("update behind the service");
    assert_eq!(figures(&mut client, "p").await, (10, 0));

    // ...and is, once the feed was lost and came back.
    sql.batch_execute(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = '{}'",
        postgres::listen::APPLICATION_NAME
    ))
    .await
    .expect("cut the feed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while figures(&mut client, "p").await != (11, 0) {
        assert!(
            Instant::now() < deadline,
            "the cache kept answering without its feed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Redis behind a proxy that drops every connection: checks and writes
/// work through the database meanwhile, and the entry the write could not
/// correct is deleted before the cache answers again.
async fn redis_dropping_out(backend: Backend) {
    common::require_redis(REDIS_URL).await;
    let proxy = ChaosProxy::start("127.0.0.1:6379".parse().expect("addr")).await;
    let server = TestServer::start_with(backend, |config| {
        config.cache.enabled = true;
        config.cache.cache_type = CacheType::Redis;
        config.cache.redis_url = format!("redis://{}", proxy.addr);
    })
    .await;
    let mut client = server.client().await;
    set(&mut client, "p", 10).await;
    wait_until_cache_answers(&server, &mut client, "p").await;

    proxy.cut();
    let errors = metric(&server, "inventory_cache_errors_total").await;
    reserve(&mut client, "p", 4, "o-1", 0).await;
    assert_eq!(
        figures(&mut client, "p").await,
        (10, 4),
        "checked in the database"
    );
    assert!(metric(&server, "inventory_cache_errors_total").await > errors);

    proxy.restore();
    // Redis still holds (10, 0): never answered again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hits = metric(&server, "inventory_cache_hits_total").await;
        assert_eq!(figures(&mut client, "p").await, (10, 4));
        if metric(&server, "inventory_cache_hits_total").await > hits {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Redis cache never answered again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reserve(&mut client, "p", 1, "o-2", 0).await;
    assert_eq!(figures(&mut client, "p").await, (10, 5));
}

backend_tests!(redis_dropping_out);
