//! Abuse and overload over real sockets: malformed gRPC messages get their
//! proper codes, a client that leaves mid-request is counted CANCELLED,
//! idle and silent connections are closed, HTTP/2 clients
//! keep no header table and HTTP/1.1 is told apart from HTTP/2 however its
//! bytes arrive, connections beyond
//! the cap are refused and counted, a stalled database never holds a
//! request past its deadline nor applies a change its caller was told had
//! failed, and load beyond the limit is shed at once with `Retry-After`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::chaos::ChaosProxy;
use common::{Backend, TestDatabase, TestServer, metric, metric_labelled};
use inventory_service::pb::{CheckInventoryRequest, ReserveInventoryRequest};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::Code;

/// A raw gRPC call over HTTP/2: the `grpc-status` the server answers.
async fn raw_grpc(server: &TestServer, method: &str, frame: Vec<u8>) -> (Option<String>, String) {
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let response = client
        .post(server.grpc_url(&format!("/inventory.v1.InventoryService/{method}")))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(frame)
        .send()
        .await
        .expect("grpc");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    (
        header("grpc-status"),
        header("grpc-message").unwrap_or_default(),
    )
}

#[tokio::test]
async fn malformed_grpc_messages_get_resource_exhausted_and_invalid_argument() {
    let server = TestServer::start(Backend::Sqlite).await;
    // Announces 5 MiB, over tonic's 4 MiB limit; the body need not follow.
    let mut oversized = vec![0u8];
    oversized.extend_from_slice(&(5u32 * 1024 * 1024).to_be_bytes());
    oversized.extend_from_slice(&[0u8; 64]);
    let (code, message) = raw_grpc(&server, "CheckInventory", oversized).await;
    assert_eq!(code.as_deref(), Some("8"), "RESOURCE_EXHAUSTED: {message}");

    // Field 1 as a length-delimited string of 100 bytes, with 2 present.
    let garbage = vec![0u8, 0, 0, 0, 4, 0x0a, 100, b'a', b'b'];
    let (code, message) = raw_grpc(&server, "CheckInventory", garbage).await;
    assert_eq!(code.as_deref(), Some("3"), "INVALID_ARGUMENT: {message}");

    // Counted as what they are, so an alert on INTERNAL stays quiet.
    assert!(counted(&server, "RESOURCE_EXHAUSTED").await >= 1.0);
    assert!(counted(&server, "INVALID_ARGUMENT").await >= 1.0);
    assert!(
        counted(&server, "INTERNAL").await.abs() < f64::EPSILON,
        "no INTERNAL counted"
    );
}

/// Requests the server has counted with the gRPC code `code`.
async fn counted(server: &TestServer, code: &str) -> f64 {
    metric_labelled(
        server,
        "inventory_requests_total",
        &format!("code=\"{code}\""),
    )
    .await
}

/// One HTTP/2 frame: its type, flags, stream and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a small frame");
    let mut frame = len.to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A header block of `headers` as HPACK literals without indexing, each
/// with its name spelt out: the least a client may send.
fn hpack_literals(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(0);
        block.push(u8::try_from(name.len()).expect("a short name"));
        block.extend_from_slice(name.as_bytes());
        block.push(u8::try_from(value.len()).expect("a short value"));
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// Opens an HTTP/2 connection to `addr`, begins a POST of `path` with
/// `headers` and the first bytes of `body`, and closes the connection
/// before the rest.
async fn leave_mid_request(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut all = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
    ];
    all.extend_from_slice(headers);
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(h2_frame(4, 0, 0, &[])); // SETTINGS
    bytes.extend(h2_frame(1, 4, 1, &hpack_literals(&all))); // HEADERS, END_HEADERS
    bytes.extend(h2_frame(0, 0, 1, body)); // DATA, more to come
    stream.write_all(&bytes).await.expect("send");
    // Let the call begin and wait for the rest of its body.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
}

#[tokio::test]
async fn a_call_whose_client_leaves_mid_request_counts_as_cancelled_not_as_a_server_error() {
    let server = TestServer::start(Backend::Sqlite).await;
    // gRPC: a message announced as 20 bytes, 3 of them sent.
    leave_mid_request(
        server.grpc_addr,
        "/inventory.v1.InventoryService/CheckInventory",
        &[("content-type", "application/grpc"), ("te", "trailers")],
        &[0, 0, 0, 0, 20, 0x0a, 18, b'p'],
    )
    .await;
    // REST: a JSON body cut short.
    leave_mid_request(
        server.http_addr,
        "/api/v1/inventory/reserve",
        &[
            ("content-type", "application/json"),
            ("content-length", "200"),
        ],
        br#"{"product_id": "product-1"#,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while counted(&server, "CANCELLED").await < 2.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        counted(&server, "CANCELLED").await,
        2.0,
        "{}",
        common::metrics_text(&server).await
    );
    for code in ["UNKNOWN", "INVALID_ARGUMENT", "INTERNAL"] {
        assert!(
            counted(&server, code).await.abs() < f64::EPSILON,
            "{code} counted"
        );
    }
}

/// Reads until the server closes the connection; how long that took.
async fn closed_within(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // SETTINGS, PING: still open.
        }
    }
}

#[tokio::test]
async fn silent_and_half_open_connections_are_closed_after_the_idle_timeout() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.server.idle_timeout = Duration::from_millis(400);
        config.server.http2_keepalive_interval = Duration::from_millis(300);
        config.server.http2_keepalive_timeout = Duration::from_millis(300);
    })
    .await;
    for port in [server.grpc_addr, server.http_addr] {
        // Connects and says nothing.
        let silent = TcpStream::connect(port).await.expect("connect");
        // Says it speaks HTTP/2, then nothing more (no SETTINGS ack, no PING
        // answer).
        let mut preface_only = TcpStream::connect(port).await.expect("connect");
        preface_only
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("preface");
        // Half an HTTP/1.1 request.
        let mut half = TcpStream::connect(port).await.expect("connect");
        half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("half");
        for (name, stream) in [
            ("silent", silent),
            ("preface", preface_only),
            ("half", half),
        ] {
            let closed = closed_within(stream, Duration::from_secs(10)).await;
            assert!(
                closed.is_some(),
                "{name} connection to {port} still open after 10 s"
            );
        }
    }
    assert!(metric(&server, "inventory_connections_idle_closed_total").await >= 2.0);

    // A client that keeps talking keeps its connection.
    let client = reqwest::Client::new();
    for _ in 0..4 {
        let health = client
            .get(server.http_url("/health"))
            .send()
            .await
            .expect("health");
        assert_eq!(health.status(), 200);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The server's first SETTINGS frame on a new HTTP/2 connection to `addr`,
/// the preface sent in two parts: `(identifier, value)` pairs.
async fn server_settings(addr: SocketAddr) -> Vec<(u16, u32)> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("preface");
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The rest of the preface, then an empty SETTINGS frame.
    stream
        .write_all(b"\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    loop {
        let mut head = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
            .await
            .expect("a frame within 5 s")
            .expect("frame header");
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        stream
            .read_exact(&mut payload)
            .await
            .expect("frame payload");
        // SETTINGS (type 4), not an ACK.
        if head[3] == 4 && head[4] & 1 == 0 {
            return payload
                .chunks_exact(6)
                .map(|p| {
                    (
                        u16::from_be_bytes([p[0], p[1]]),
                        u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                    )
                })
                .collect();
        }
    }
}

/// Sends `parts` over a new connection to `addr`, 50 ms apart, and reads
/// the answer until the server closes.
async fn http1_in_parts(addr: SocketAddr, parts: &[&str]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    for part in parts {
        stream.write_all(part.as_bytes()).await.expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .expect("answered within 5 s")
        .expect("read");
    answer
}

#[tokio::test]
async fn http2_clients_keep_no_header_table_and_http1_is_told_apart_on_both_ports() {
    // SETTINGS_HEADER_TABLE_SIZE is identifier 1.
    let server = TestServer::start(Backend::Sqlite).await;
    for addr in [server.grpc_addr, server.http_addr] {
        let settings = server_settings(addr).await;
        assert!(settings.contains(&(1, 0)), "{addr}: {settings:?}");
    }
    // HTTP/2 clients work with it, calls after calls.
    let mut client = server.client().await;
    for _ in 0..3 {
        let refused = client
            .check_inventory(CheckInventoryRequest {
                product_id: "nothing-here".into(),
                required_quantity: 1,
            })
            .await
            .expect_err("no such product");
        assert_eq!(refused.code(), Code::NotFound);
    }
    // HTTP/1.1 whose first bytes could still be HTTP/2's preface ("P"),
    // and one cut anywhere: each byte read to tell them apart is read again.
    for addr in [server.grpc_addr, server.http_addr] {
        let body = r#"{"quantity": 7, "operation": "set"}"#;
        let put = http1_in_parts(
            addr,
            &[
                "P",
                &format!(
                    "UT /api/v1/inventory/split-{} HTTP/1.1\r\nHost: x\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    addr.port(),
                    body.len()
                ),
            ],
        )
        .await;
        assert!(put.starts_with("HTTP/1.1 200"), "{addr}: {put}");
        assert!(put.contains(r#""current_quantity":7"#), "{addr}: {put}");
        let health = http1_in_parts(
            addr,
            &[
                "GET /hea",
                "lth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ],
        )
        .await;
        assert!(health.starts_with("HTTP/1.1 200"), "{addr}: {health}");
    }

    // HTTP/2's own default, configured.
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.server.http2_header_table_size = 4096;
    })
    .await;
    let settings = server_settings(server.grpc_addr).await;
    assert!(settings.contains(&(1, 4096)), "{settings:?}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_counted_and_the_service_recovers() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.server.max_connections = 4;
        config.server.idle_timeout = Duration::from_secs(60);
    })
    .await;
    // Let the start-up health check's connection go.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    let mut refused = false;
    for _ in 0..10 {
        let mut stream = TcpStream::connect(server.http_addr).await.expect("connect");
        let mut buf = [0u8; 1];
        // A refused connection is closed at once; an accepted one waits.
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                refused = true;
                break;
            }
            _ => held.push(stream),
        }
    }
    assert!(refused, "no connection refused with {} open", held.len());
    assert!(held.len() <= 4, "{} held beyond a cap of 4", held.len());
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = reqwest::get(server.http_url("/health"))
        .await
        .expect("recovers");
    assert_eq!(health.status(), 200);
    assert!(metric(&server, "inventory_connections_refused_total").await >= 1.0);
}

/// A service on PostgreSQL through a proxy that can stall, without a cache
/// (every read reaches the database).
async fn behind_stalling_proxy(
    tweak: impl FnOnce(&mut inventory_service::config::Config),
) -> (ChaosProxy, TestServer) {
    let database = Arc::new(TestDatabase::create(Backend::Postgres).await);
    let url = database.postgres_url().expect("postgres").to_owned();
    let target: SocketAddr = "127.0.0.1:5432".parse().expect("addr");
    let proxy = ChaosProxy::start(target).await;
    let proxied = url.replacen("127.0.0.1:5432", &proxy.addr.to_string(), 1);
    let server = TestServer::start_in(database, |config| {
        config.database.dsn = proxied;
        config.cache.enabled = false;
        config.inventory.initial_stock = [("product-1".to_owned(), 10)].into();
        tweak(config);
    })
    .await;
    (proxy, server)
}

async fn reserved(server: &TestServer) -> i32 {
    server
        .client()
        .await
        .check_inventory(CheckInventoryRequest {
            product_id: "product-1".into(),
            required_quantity: 1,
        })
        .await
        .expect("check")
        .into_inner()
        .reserved_quantity
}

#[tokio::test]
async fn a_stalled_database_never_holds_a_call_past_its_deadline_nor_applies_it_later() {
    let (proxy, server) = behind_stalling_proxy(|config| {
        config.server.request_timeout = Duration::from_secs(1);
    })
    .await;
    let mut client = server.client().await;
    proxy.stall();

    let started = Instant::now();
    let read = client
        .check_inventory(CheckInventoryRequest {
            product_id: "product-1".into(),
            required_quantity: 1,
        })
        .await
        .expect_err("stalled");
    assert_eq!(read.code(), Code::DeadlineExceeded, "{read:?}");
    assert_eq!(common::reason(&read), "DEADLINE_EXCEEDED");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let rest = reqwest::get(server.http_url("/api/v1/inventory/product-1"))
        .await
        .expect("rest");
    assert_eq!(rest.status(), 504);
    let body: serde_json::Value = rest.json().await.expect("json");
    assert_eq!(body["code"], 4, "{body}");
    assert_eq!(body["details"][0]["reason"], "DEADLINE_EXCEEDED", "{body}");
    assert_eq!(
        body["details"][0]["metadata"]["deadline_ms"], "1000",
        "{body}"
    );

    let write = client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "product-1".into(),
            quantity: 3,
            order_id: "given-up".into(),
            ..Default::default()
        })
        .await
        .expect_err("stalled");
    assert_eq!(write.code(), Code::DeadlineExceeded, "{write:?}");

    // The database comes back: what the caller was told had failed is not
    // applied now.
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        reserved(&server).await,
        0,
        "an abandoned reservation was applied"
    );
    let reserve = client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: "product-1".into(),
            quantity: 2,
            order_id: "after".into(),
            ..Default::default()
        })
        .await
        .expect("works again");
    assert_eq!(reserve.into_inner().available_quantity, 8);
}

#[tokio::test]
async fn beyond_the_limit_calls_are_shed_at_once_with_retry_after_and_health_answers() {
    let (proxy, server) = behind_stalling_proxy(|config| {
        config.server.max_in_flight = 1;
        config.server.max_queued = 0;
        config.server.request_timeout = Duration::from_secs(3);
    })
    .await;
    let mut client = server.client().await;
    proxy.stall();
    // Holds the one turn until its deadline.
    let holder = {
        let mut client = client.clone();
        tokio::spawn(async move {
            client
                .check_inventory(CheckInventoryRequest {
                    product_id: "product-1".into(),
                    required_quantity: 1,
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let shed = client
        .check_inventory(CheckInventoryRequest {
            product_id: "product-1".into(),
            required_quantity: 1,
        })
        .await
        .expect_err("shed");
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    assert_eq!(
        shed.metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );

    let rest = reqwest::get(server.http_url("/api/v1/inventory/product-1"))
        .await
        .expect("rest");
    assert_eq!(rest.status(), 429);
    assert_eq!(rest.headers()["retry-after"], "1");
    let body: serde_json::Value = rest.json().await.expect("json");
    assert_eq!(body["details"][0]["reason"], "OVERLOADED", "{body}");

    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health is never shed");
    assert!(metric(&server, "inventory_requests_shed_total").await >= 2.0);

    proxy.restore();
    let held = holder.await.expect("task");
    assert!(held.is_ok() || held.is_err_and(|s| s.code() == Code::DeadlineExceeded));
    // Load gone, calls are served again.
    assert_eq!(reserved(&server).await, 0);
}
