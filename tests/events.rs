//! WatchInventory over real connections, on both backends: every kind of
//! change is one event in commit order; two replicas on one database see
//! each other's changes; a watch cut and resumed on another replica loses
//! and repeats nothing, checked against the history; positions the outbox
//! cannot resume from are refused; REST streams Server-Sent Events and
//! newline-delimited JSON (with the real curl); gRPC-Web streams; a graceful
//! shutdown ends every watch with the position to resume from.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Backend, TestServer, backend_tests, reason, set_stock};
use inventory_service::config::Config;
use inventory_service::pb::{
    self, CommitReservationRequest, GetInventoryHistoryRequest, OrderItem, ReleaseInventoryRequest,
    ReleaseOrderRequest, ReserveInventoryRequest, ReserveOrderRequest, StockChangeKind,
    WatchInventoryRequest, WatchInventoryResponse,
};
use prost::Message as _;
use tonic::Code;
use tonic::Streaming;

backend_tests!(
    every_change_is_one_event_in_commit_order,
    replicas_see_each_others_changes_and_a_resumed_watch_loses_nothing,
    positions_the_outbox_cannot_resume_from_are_refused,
    rest_streams_server_sent_events_and_ndjson,
    shutdown_ends_a_watch_with_its_position,
    low_stock_thresholds_over_grpc_and_rest,
    events_switched_off_are_refused_and_writes_go_on,
    a_quiet_event_stream_outlives_the_idle_timeout,
);

type Client = pb::inventory_service_client::InventoryServiceClient<tonic::transport::Channel>;

/// Events read quickly on every backend: a short timer for replicas that
/// hear of each other's commits only through it (SQLite), a quick sweeper.
fn quick(config: &mut Config) {
    config.inventory.events.poll_interval = Duration::from_millis(100);
    config.inventory.cleanup_interval = Duration::from_millis(200);
}

async fn watch(client: &mut Client, after: Option<i64>) -> Streaming<WatchInventoryResponse> {
    client
        .watch_inventory(WatchInventoryRequest {
            product_ids: Vec::new(),
            after,
        })
        .await
        .expect("watch")
        .into_inner()
}

/// The next `n` events of `stream`, each within 10 s.
async fn take(
    stream: &mut Streaming<WatchInventoryResponse>,
    n: usize,
) -> Vec<WatchInventoryResponse> {
    let mut events = Vec::with_capacity(n);
    for got in 0..n {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap_or_else(|_| panic!("event {} of {n} within 10s", got + 1))
            .expect("the watch goes on")
            .expect("an event");
        events.push(event);
    }
    events
}

/// (kind, product, quantity change, on hand, reserved) of each event.
fn summary(events: &[WatchInventoryResponse]) -> Vec<(StockChangeKind, String, i32, i32, i32)> {
    events
        .iter()
        .map(|e| {
            let stock = e.stock.clone().unwrap_or_default();
            (
                e.kind(),
                stock.product_id,
                e.quantity_change,
                stock.current_quantity,
                stock.reserved_quantity,
            )
        })
        .collect()
}

async fn every_change_is_one_event_in_commit_order(backend: Backend) {
    let server = TestServer::start_with(backend, quick).await;
    let mut client = server.client().await;
    let mut live = watch(&mut client, None).await;
    set_stock(&mut client, "a", 10).await;
    set_stock(&mut client, "b", 5).await;
    let reserve =
        |product: &str, order: &str, quantity: i32, timeout: i32| ReserveInventoryRequest {
            product_id: product.into(),
            order_id: order.into(),
            quantity,
            reservation_timeout: timeout,
        };
    client
        .reserve_inventory(reserve("a", "o1", 3, 0))
        .await
        .expect("reserve");
    client
        .release_inventory(ReleaseInventoryRequest {
            product_id: "a".into(),
            order_id: "o1".into(),
            quantity: 1,
            ..Default::default()
        })
        .await
        .expect("release");
    client
        .commit_reservation(CommitReservationRequest {
            product_id: "a".into(),
            order_id: "o1".into(),
            ..Default::default()
        })
        .await
        .expect("commit");
    client
        .reserve_order(ReserveOrderRequest {
            order_id: "o2".into(),
            items: vec![
                OrderItem {
                    product_id: "b".into(),
                    quantity: 2,
                },
                OrderItem {
                    product_id: "a".into(),
                    quantity: 1,
                },
            ],
            ..Default::default()
        })
        .await
        .expect("reserve order");
    client
        .release_order(ReleaseOrderRequest {
            order_id: "o2".into(),
            ..Default::default()
        })
        .await
        .expect("release order");
    // Refused calls change nothing and say nothing.
    let short = client.reserve_inventory(reserve("a", "o3", 100, 0)).await;
    assert_eq!(short.expect_err("short").code(), Code::FailedPrecondition);
    // Expired by the sweeper.
    client
        .reserve_inventory(reserve("b", "o4", 1, 1))
        .await
        .expect("reserve");

    let events = take(&mut live, 12).await;
    use StockChangeKind as K;
    let expected = [
        (K::Update, "a", 10, 10, 0),
        // A product created with stock comes in stock.
        (K::BackInStock, "a", 10, 10, 0),
        (K::Update, "b", 5, 5, 0),
        (K::BackInStock, "b", 5, 5, 0),
        (K::Reserve, "a", -3, 10, 3),
        (K::Release, "a", 1, 10, 2),
        (K::Commit, "a", 0, 8, 0),
        (K::Reserve, "a", -1, 8, 1),
        (K::Reserve, "b", -2, 5, 2),
        (K::Release, "a", 1, 8, 0),
        (K::Release, "b", 2, 5, 0),
        (K::Reserve, "b", -1, 5, 1),
    ]
    .map(|(k, p, c, t, r)| (k, p.to_owned(), c, t, r));
    assert_eq!(summary(&events), expected);
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(events[4].order_id, "o1");
    assert_eq!(events[0].order_id, "");
    let expired = take(&mut live, 1).await;
    assert_eq!(
        summary(&expired),
        [(K::Expire, "b".to_owned(), 1, 5, 0)],
        "the sweeper's expiry"
    );
    assert_eq!(expired[0].order_id, "o4");
    // One change event per history entry (checks are not recorded by
    // default).
    let mut entries = 0;
    for product in ["a", "b"] {
        entries += history_len(&mut client, product).await;
    }
    let changes = events.iter().filter(|e| !is_stock_state(e)).count();
    assert_eq!(entries, changes + expired.len());
}

/// Whether an event tells of a product's state rather than a change.
fn is_stock_state(event: &WatchInventoryResponse) -> bool {
    matches!(
        event.kind(),
        StockChangeKind::LowStock | StockChangeKind::OutOfStock | StockChangeKind::BackInStock
    )
}

/// How many history entries a product has.
async fn history_len(client: &mut Client, product: &str) -> usize {
    let mut count = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .get_inventory_history(GetInventoryHistoryRequest {
                product_id: product.into(),
                page_size: 100,
                page_token,
            })
            .await
            .expect("history")
            .into_inner();
        count += page.entries.len();
        if page.next_page_token.is_empty() {
            return count;
        }
        page_token = page.next_page_token;
    }
}

async fn replicas_see_each_others_changes_and_a_resumed_watch_loses_nothing(backend: Backend) {
    // Two processes on one SQLite file do not tell each other's caches of
    // their writes (the memory cache there assumes one process), so the
    // check of the stock at the end reads the database itself.
    let config = |config: &mut Config| {
        quick(config);
        if backend == Backend::Sqlite {
            config.cache.enabled = false;
        }
    };
    let a = TestServer::start_with(backend, config).await;
    let b = TestServer::start_in(a.database.clone(), config).await;
    let products = ["p0", "p1", "p2"];
    for product in products {
        set_stock(&mut a.client().await, product, 1_000).await;
    }
    let mut on_b = watch(&mut b.client().await, Some(0)).await;

    // Writers on both replicas at once.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let target = if w % 2 == 0 { &a } else { &b };
            let channel = target.channel();
            async move {
                let mut client = Client::new(channel.await);
                for n in 0..20 {
                    let product = products[(w + n) % products.len()];
                    let order = format!("w{w}-o{n}");
                    client
                        .reserve_inventory(ReserveInventoryRequest {
                            product_id: product.into(),
                            order_id: order.clone(),
                            quantity: 1 + (n as i32 % 3),
                            reservation_timeout: 0,
                        })
                        .await
                        .expect("reserve");
                    if n % 2 == 0 {
                        client
                            .release_inventory(ReleaseInventoryRequest {
                                product_id: product.into(),
                                order_id: order,
                                ..Default::default()
                            })
                            .await
                            .expect("release");
                    }
                }
            }
        })
        .collect();
    let writing = futures_util::future::join_all(writers);
    // Cut the watch on B part way, resume on A from the last position seen.
    let (_, mut seen) = tokio::join!(writing, async {
        let first = take(&mut on_b, 60).await;
        drop(on_b);
        first
    });
    let total_changes = 3 + 8 * 20 + 8 * 10;
    // Each product's creation brought it in stock; nothing else crosses zero.
    let total_events = total_changes + products.len();
    let last = seen.last().expect("events").position;
    let mut on_a = watch(&mut a.client().await, Some(last)).await;
    seen.extend(take(&mut on_a, total_events - seen.len()).await);

    // Strictly increasing: nothing repeated across the cut.
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
    // The same as one uninterrupted watch of everything, on either replica.
    let whole = take(
        &mut watch(&mut a.client().await, Some(0)).await,
        total_events,
    )
    .await;
    assert_eq!(seen, whole);
    // And nothing more: the history has one entry per event.
    let mut client = b.client().await;
    let mut entries = 0;
    for product in products {
        entries += history_len(&mut client, product).await;
    }
    assert_eq!(entries, total_changes);
    // Each product's last event is its stock now.
    let mut last_of: BTreeMap<String, pb::StockLevel> = BTreeMap::new();
    for event in &seen {
        let stock = event.stock.clone().expect("stock");
        last_of.insert(stock.product_id.clone(), stock);
    }
    for product in products {
        let now = client
            .check_inventory(pb::CheckInventoryRequest {
                product_id: product.into(),
                required_quantity: 1,
            })
            .await
            .expect("check")
            .into_inner();
        let last = &last_of[product];
        assert_eq!(
            (last.current_quantity, last.reserved_quantity),
            (now.current_quantity, now.reserved_quantity),
            "{product}"
        );
    }
}

async fn positions_the_outbox_cannot_resume_from_are_refused(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        quick(config);
        config.inventory.events.retention = Duration::from_millis(1);
    })
    .await;
    let mut client = server.client().await;
    set_stock(&mut client, "p", 1).await;
    set_stock(&mut client, "p", 2).await;
    let ahead = client
        .watch_inventory(WatchInventoryRequest {
            product_ids: Vec::new(),
            after: Some(1_000),
        })
        .await
        .expect_err("ahead");
    assert_eq!(ahead.code(), Code::OutOfRange, "{ahead:?}");
    assert_eq!(reason(&ahead), "POSITION_AHEAD");
    let bad = client
        .watch_inventory(WatchInventoryRequest {
            product_ids: vec!["bad\u{200b}id".into()],
            after: None,
        })
        .await
        .expect_err("bad id");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    let negative = client
        .watch_inventory(WatchInventoryRequest {
            product_ids: Vec::new(),
            after: Some(-1),
        })
        .await
        .expect_err("negative");
    assert_eq!(negative.code(), Code::InvalidArgument, "{negative:?}");
    // The sweeper forgets events past the retention: resuming before them
    // would miss some.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let purged = loop {
        match client
            .watch_inventory(WatchInventoryRequest {
                product_ids: Vec::new(),
                after: Some(1),
            })
            .await
        {
            Err(status) => break status,
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(_) => panic!("events were not purged within 10s"),
        }
    };
    assert_eq!(purged.code(), Code::OutOfRange, "{purged:?}");
    assert_eq!(reason(&purged), "EVENTS_PURGED");
    assert!(purged.message().contains("no longer kept"), "{purged:?}");
    use tonic_types::StatusExt as _;
    let purged_through: i64 =
        purged.get_details_error_info().expect("ErrorInfo").metadata["purged_through"]
            .parse()
            .expect("a position");
    // From the oldest kept (0), a watch starts after what was forgotten
    // (the sweeper may forget more meanwhile), up to the latest change.
    let mut from_oldest = watch(&mut client, Some(0)).await;
    set_stock(&mut client, "p", 3).await;
    loop {
        let next = take(&mut from_oldest, 1).await.remove(0);
        assert!(next.position > purged_through, "{next:?}");
        if next.stock.as_ref().map(|s| s.current_quantity) == Some(3) {
            break;
        }
    }
}

/// A watch of `product` over gRPC-Web on HTTP/1.1, as a browser sends it;
/// its answer has begun (status 200).
async fn grpc_web_watch(
    server: &TestServer,
    product: &str,
    after: Option<i64>,
) -> reqwest::Response {
    let http1 = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client");
    let payload = WatchInventoryRequest {
        product_ids: vec![product.into()],
        after,
    }
    .encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&payload);
    let response = http1
        .post(server.grpc_url("/inventory.v1.InventoryService/WatchInventory"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(frame)
        .send()
        .await
        .expect("grpc-web call");
    assert_eq!(response.status(), 200);
    response
}

/// Runs curl with `args` (bounded in time) and returns its output.
async fn curl(args: &[&str]) -> String {
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--no-buffer", "--max-time", "3"])
        .args(args)
        .output()
        .await
        .expect("curl is installed");
    String::from_utf8(output.stdout).expect("utf-8")
}

async fn rest_streams_server_sent_events_and_ndjson(backend: Backend) {
    let server = TestServer::start_with(backend, quick).await;
    let mut client = server.client().await;
    for quantity in 1..=3 {
        set_stock(&mut client, "sku", quantity).await;
    }
    let url = server.http_url("/api/v1/events?after=0");
    // SSE: the position is each event's id.
    let sse = curl(&["-H", "Accept: text/event-stream", &url]).await;
    // Three updates, and the product came in stock when it was created.
    let ids: Vec<&str> = sse.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    assert_eq!(ids.len(), 4, "{sse}");
    let data: Vec<serde_json::Value> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("JSON data"))
        .collect();
    assert_eq!(data[3]["stock"]["current_quantity"], 3);
    assert_eq!(data[3]["kind"], "STOCK_CHANGE_KIND_UPDATE");
    assert_eq!(data[1]["kind"], "STOCK_CHANGE_KIND_BACK_IN_STOCK");
    assert_eq!(data[0]["position"], ids[0]);
    // Last-Event-ID resumes after that event, as a browser's EventSource does.
    let resumed = curl(&[
        "-H",
        "Accept: text/event-stream",
        "-H",
        &format!("Last-Event-ID: {}", ids[0]),
        &server.http_url("/api/v1/events"),
    ])
    .await;
    let resumed_ids: Vec<&str> = resumed
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(resumed_ids, ids[1..], "{resumed}");
    // NDJSON, grpc-gateway's shape, for one product.
    let ndjson = curl(&[&server.http_url("/api/v1/events?after=0&product_ids=sku")]).await;
    let lines: Vec<serde_json::Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4, "{ndjson}");
    assert_eq!(lines[0]["result"]["stock"]["current_quantity"], 1);
    // A live change reaches a REST watcher.
    let live_url = server.http_url("/api/v1/events");
    let live_args = [live_url.as_str()];
    let (live, ()) = tokio::join!(curl(&live_args), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        set_stock(&mut client, "sku", 9).await;
    });
    assert!(live.contains("\"current_quantity\":9"), "{live}");
    // A refusal before the stream starts is a plain REST error.
    let refused = reqwest::get(server.http_url("/api/v1/events?after=99999"))
        .await
        .expect("request");
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.expect("JSON error");
    assert_eq!(body["details"][0]["reason"], "POSITION_AHEAD", "{body}");
    assert_eq!(body["code"], 11);

    // gRPC-Web (HTTP/1.1, as a browser sends it): frames arrive as they come.
    let mut response = grpc_web_watch(&server, "sku", Some(0)).await;
    let mut buffer = Vec::new();
    let mut quantities = Vec::new();
    while quantities.len() < 5 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("a chunk within 10s")
            .expect("readable")
            .expect("the stream goes on");
        buffer.extend_from_slice(&chunk);
        while buffer.len() >= 5 {
            let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
            if buffer.len() < 5 + len {
                break;
            }
            assert_eq!(buffer[0], 0, "a message frame, not trailers");
            let event = WatchInventoryResponse::decode(&buffer[5..5 + len]).expect("decode");
            quantities.push(event.stock.expect("stock").current_quantity);
            buffer.drain(..5 + len);
        }
    }
    assert_eq!(quantities, [1, 1, 2, 3, 9]);
}

async fn shutdown_ends_a_watch_with_its_position(backend: Backend) {
    let server = TestServer::start_with(backend, quick).await;
    let mut client = server.client().await;
    let mut live = watch(&mut client, None).await;
    set_stock(&mut client, "p", 1).await;
    // The update, and the new product coming in stock.
    let seen = take(&mut live, 2).await;
    let stopping = tokio::time::Instant::now();
    server.stop().await.expect("clean shutdown");
    // The watch did not hold the shutdown up until its timeout.
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "{:?}",
        stopping.elapsed()
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), live.message())
        .await
        .expect("the watch ends")
        .expect_err("with a status");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert_eq!(reason(&ended), "SHUTTING_DOWN");
    use tonic_types::StatusExt as _;
    let info = ended.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.metadata["position"], seen[1].position.to_string());
}

async fn low_stock_thresholds_over_grpc_and_rest(backend: Backend) {
    let server = TestServer::start_with(backend, quick).await;
    let mut client = server.client().await;
    set_stock(&mut client, "sku", 10).await;
    let http = reqwest::Client::new();
    let url = server.http_url("/api/v1/inventory/sku/low-stock-threshold");
    let answer = http
        .put(&url)
        .json(&serde_json::json!({"low_stock_threshold": 4}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.expect("JSON");
    assert_eq!(body["stock"]["low_stock_threshold"], 4, "{body}");
    let checked: serde_json::Value = reqwest::get(server.http_url("/api/v1/inventory/sku"))
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(checked["low_stock_threshold"], 4, "{checked}");

    let mut live = watch(&mut client, None).await;
    let reserve = |order: &str, quantity: i32| ReserveInventoryRequest {
        product_id: "sku".into(),
        order_id: order.into(),
        quantity,
        reservation_timeout: 0,
    };
    client
        .reserve_inventory(reserve("o1", 5))
        .await
        .expect("to 5");
    client
        .reserve_inventory(reserve("o2", 1))
        .await
        .expect("to 4");
    client
        .reserve_inventory(reserve("o3", 4))
        .await
        .expect("to 0");
    client
        .release_inventory(ReleaseInventoryRequest {
            product_id: "sku".into(),
            order_id: "o3".into(),
            ..Default::default()
        })
        .await
        .expect("back to 4");
    use StockChangeKind as K;
    let kinds: Vec<K> = take(&mut live, 7).await.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        [
            K::Reserve,
            K::Reserve,
            K::LowStock,
            K::Reserve,
            K::OutOfStock,
            K::Release,
            K::BackInStock
        ]
    );

    // Errors: an unknown product, a negative threshold; nothing changes.
    let missing = client
        .set_low_stock_threshold(pb::SetLowStockThresholdRequest {
            product_id: "nope".into(),
            low_stock_threshold: Some(1),
        })
        .await
        .expect_err("unknown product");
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(reason(&missing), "PRODUCT_NOT_FOUND");
    let negative = http
        .put(&url)
        .json(&serde_json::json!({"low_stock_threshold": -1}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(negative.status(), 400);
    let body: serde_json::Value = negative.json().await.expect("JSON");
    assert_eq!(body["code"], 3, "{body}");
    let unknown = http
        .put(server.http_url("/api/v1/inventory/nope/low-stock-threshold"))
        .json(&serde_json::json!({"low_stock_threshold": 1}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(unknown.status(), 404);

    // Cleared with an empty body: only zero counts from now on.
    let cleared: serde_json::Value = http
        .put(&url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("PUT")
        .json()
        .await
        .expect("JSON");
    assert!(
        cleared["stock"]["low_stock_threshold"].is_null(),
        "{cleared}"
    );
    let stock = client
        .check_inventory(pb::CheckInventoryRequest {
            product_id: "sku".into(),
            required_quantity: 1,
        })
        .await
        .expect("check")
        .into_inner();
    assert_eq!(stock.low_stock_threshold, None);
    assert_eq!(stock.available_quantity, 4);
    client
        .reserve_inventory(reserve("o4", 1))
        .await
        .expect("to 3");
    client
        .reserve_inventory(reserve("o5", 3))
        .await
        .expect("to 0");
    let kinds: Vec<K> = take(&mut live, 3).await.iter().map(|e| e.kind()).collect();
    assert_eq!(kinds, [K::Reserve, K::Reserve, K::OutOfStock]);
}

async fn events_switched_off_are_refused_and_writes_go_on(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.inventory.events.enabled = false;
    })
    .await;
    let mut client = server.client().await;
    set_stock(&mut client, "p", 3).await;
    client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "p".into(),
            order_id: "o".into(),
            quantity: 1,
            reservation_timeout: 0,
        })
        .await
        .expect("reserve");
    let refused = client
        .watch_inventory(WatchInventoryRequest {
            product_ids: Vec::new(),
            after: Some(0),
        })
        .await
        .expect_err("no events");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(reason(&refused), "EVENTS_DISABLED");
    let rest = reqwest::get(server.http_url("/api/v1/events"))
        .await
        .expect("GET");
    assert_eq!(rest.status(), 409);
}

async fn a_quiet_event_stream_outlives_the_idle_timeout(backend: Backend) {
    // Connections are closed after 400 ms without traffic, but not while
    // they send a response; a watch over SSE with no change to send also
    // gets a comment line every 200 ms, for the proxies on the way.
    let server = TestServer::start_with(backend, |config| {
        config.server.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--no-buffer",
            "--max-time",
            "2",
            "-w",
            "%{exitcode}",
        ])
        .args(["-H", "Accept: text/event-stream"])
        .arg(server.http_url("/api/v1/events"))
        .output()
        .await
        .expect("curl is installed");
    let body = String::from_utf8(output.stdout).expect("utf-8");
    // curl gave up at its own limit (exit 28): the service kept the stream.
    assert!(body.ends_with("28"), "{body}");
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert!(body.matches(": keep-alive").count() >= 5, "{body}");

    // NDJSON has no keep-alive line: the quiet stream is kept all the same.
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new("curl")
        .args(["--silent", "--no-buffer", "--http1.1", "--max-time", "2"])
        .args(["-w", "%{exitcode}"])
        .arg(server.http_url("/api/v1/events"))
        .output()
        .await
        .expect("curl is installed");
    let body = String::from_utf8(output.stdout).expect("utf-8");
    assert_eq!(body, "28", "nothing sent, and the service kept the stream");
    assert!(started.elapsed() >= Duration::from_millis(1900));

    // gRPC-Web over HTTP/1.1, as a browser watches: quiet for three idle
    // timeouts, then a change arrives on the same stream.
    let mut response = grpc_web_watch(&server, "quiet", None).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    set_stock(&mut server.client().await, "quiet", 7).await;
    let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
        .await
        .expect("a chunk within 10s")
        .expect("the connection is still open")
        .expect("the stream goes on");
    assert_eq!(
        chunk[0], 0,
        "a message frame, not the trailers of a closed stream"
    );
}
