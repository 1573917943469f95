//! Tracing and metrics end to end: the real service exports OTLP/gRPC to a
//! real OTLP receiver started inside the test, and `/metrics` is scraped
//! and parsed.
//!
//! Each test server has telemetry of its own (its own dispatch, tracer
//! provider and meter provider), so these tests run in parallel with each
//! other and with the rest of the suite. Stopping the server flushes its
//! spans; waits are bounded.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Backend, TestServer, backend_tests, closed_port, set_stock};
use inventory_service::pb::{ReserveInventoryRequest, UpdateInventoryRequest};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;

backend_tests!(
    grpc_and_rest_calls_are_one_trace_each_from_the_caller_down_to_the_sql,
    calls_applied_together_link_to_their_batch,
    metrics_count_the_calls_made,
);

/// An OTLP/gRPC receiver keeping every span it is sent.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("lock");
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        _request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Receiver {
    /// Serves on an ephemeral loopback port until the test's runtime ends.
    async fn start() -> (Self, SocketAddr) {
        let receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let service = receiver.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(service.clone()))
                .add_service(MetricsServiceServer::new(service))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
        });
        (receiver, addr)
    }

    /// The spans of `trace_id` once its server span (the one whose parent
    /// is `caller`) arrived with at least `min` spans in all (at most 10 s).
    async fn trace(&self, trace_id: &str, caller: &str, min: usize) -> Vec<Span> {
        for _ in 0..100 {
            let spans: Vec<Span> = self
                .spans
                .lock()
                .expect("lock")
                .iter()
                .filter(|s| hex(&s.trace_id) == trace_id)
                .cloned()
                .collect();
            if spans.len() >= min && spans.iter().any(|s| hex(&s.parent_span_id) == caller) {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let names: Vec<String> = self
            .spans
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .map(|s| s.name.clone())
            .collect();
        panic!("trace {trace_id} incomplete after 10s: {names:?}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's attribute as text (ints and strings alike).
fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            Value::DoubleValue(d) => d.to_string(),
            Value::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
        panic!("no span {name:?} among {names:?}")
    })
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id)
        .collect()
}

/// A W3C traceparent of a sampled caller span, and its trace and span ids.
fn caller() -> (String, String, String) {
    let trace_id = uuid::Uuid::now_v7().simple().to_string();
    let span_id = trace_id[16..].to_owned();
    (format!("00-{trace_id}-{span_id}-01"), trace_id, span_id)
}

/// Checks the database spans under `business`: transactions and statements
/// with the backend's `db.system`, SQL with placeholders and no literal
/// values, `db.rows_affected` on every write. Returns how many statement
/// spans there are, and how many of them write.
fn check_db_spans(
    spans: &[Span],
    business: &Span,
    backend: Backend,
    secrets: &[&str],
) -> (usize, usize) {
    let system = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgresql",
    };
    let mut statements = Vec::new();
    let mut writes = 0;
    for child in children(spans, business) {
        match attr(child, "db.system").as_deref() {
            Some(s) => assert_eq!(s, system, "{child:?}"),
            None => continue,
        }
        if child.name == "db.transaction" {
            assert!(
                attr(child, "db.pool.wait_ms").is_some(),
                "pool wait on {child:?}"
            );
            let inner = children(spans, child);
            assert!(!inner.is_empty(), "a transaction with no statements");
            statements.extend(inner);
        } else {
            statements.push(child);
        }
    }
    for statement in &statements {
        assert_eq!(statement.kind, SpanKind::Client as i32);
        assert_eq!(attr(statement, "db.system").as_deref(), Some(system));
        let sql = attr(statement, "db.statement").expect("db.statement");
        for secret in secrets {
            assert!(!sql.contains(secret), "{secret:?} leaked into {sql:?}");
        }
        // Every write this service makes touches exactly one row.
        let write = ["INSERT", "UPDATE", "DELETE"]
            .iter()
            .any(|op| sql.trim_start().starts_with(op));
        if write {
            writes += 1;
            assert_eq!(
                attr(statement, "db.rows_affected").as_deref(),
                Some("1"),
                "db.rows_affected of {sql:?}"
            );
        }
    }
    assert!(
        statements.iter().any(|s| {
            let sql = attr(s, "db.statement").unwrap_or_default();
            sql.contains('?') || sql.contains("$1")
        }),
        "no parameterised statement under {:?}",
        business.name
    );
    (statements.len(), writes)
}

async fn grpc_and_rest_calls_are_one_trace_each_from_the_caller_down_to_the_sql(backend: Backend) {
    let (receiver, collector) = Receiver::start().await;
    let server = TestServer::start_with(backend, |config| {
        config.tracing.enabled = true;
        config.tracing.endpoint = Some(format!("http://{collector}"));
        config.tracing.export_interval = Duration::from_millis(100);
    })
    .await;
    let mut client = server.client().await;
    let product = format!("traced-{}", uuid::Uuid::now_v7().simple());
    let order = format!("order-{}", uuid::Uuid::now_v7().simple());
    client
        .update_inventory(UpdateInventoryRequest {
            product_id: product.clone(),
            quantity: 10,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("stock");

    // gRPC, with the caller's trace context in the metadata.
    let (grpc_parent, grpc_trace, grpc_caller_span) = caller();
    let mut request = tonic::Request::new(ReserveInventoryRequest {
        product_id: product.clone(),
        quantity: 3,
        order_id: order.clone(),
        reservation_timeout: 300,
    });
    request
        .metadata_mut()
        .insert("traceparent", grpc_parent.parse().expect("ascii"));
    let response = client.reserve_inventory(request).await.expect("reserve");
    assert_eq!(
        response
            .metadata()
            .get("x-trace-id")
            .and_then(|v| v.to_str().ok()),
        Some(grpc_trace.as_str()),
        "the trace id comes back"
    );

    // REST, with the caller's trace context in the headers.
    let (rest_parent, rest_trace, rest_caller_span) = caller();
    let http = reqwest::Client::new();
    let rest = http
        .get(server.http_url(&format!("/api/v1/inventory/{product}")))
        .header("traceparent", &rest_parent)
        .send()
        .await
        .expect("REST check");
    assert_eq!(rest.status(), 200);
    assert_eq!(
        rest.headers()
            .get("x-trace-id")
            .and_then(|v| v.to_str().ok()),
        Some(rest_trace.as_str())
    );

    // An insufficient-stock reservation.
    let (refused_parent, refused_trace, refused_caller_span) = caller();
    let mut request = tonic::Request::new(ReserveInventoryRequest {
        product_id: product.clone(),
        quantity: 1000,
        order_id: format!("{order}-big"),
        reservation_timeout: 300,
    });
    request
        .metadata_mut()
        .insert("traceparent", refused_parent.parse().expect("ascii"));
    let refused = client
        .reserve_inventory(request)
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // Stopping flushes the batch.
    server.stop().await.expect("clean stop");

    // gRPC: caller -> server span -> inventory.reserve -> transaction -> statements.
    let spans = receiver.trace(&grpc_trace, &grpc_caller_span, 4).await;
    let server_span = named(&spans, "inventory.v1.InventoryService/ReserveInventory");
    assert_eq!(
        hex(&server_span.parent_span_id),
        grpc_caller_span,
        "the caller's child"
    );
    assert_eq!(server_span.kind, SpanKind::Server as i32);
    assert_eq!(attr(server_span, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attr(server_span, "rpc.service").as_deref(),
        Some("inventory.v1.InventoryService")
    );
    assert_eq!(
        attr(server_span, "rpc.method").as_deref(),
        Some("ReserveInventory")
    );
    assert_eq!(
        attr(server_span, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    let business = named(&spans, "inventory.reserve");
    assert_eq!(business.parent_span_id, server_span.span_id);
    assert_eq!(
        attr(business, "inventory.operation").as_deref(),
        Some("reserve")
    );
    assert_eq!(
        attr(business, "inventory.product_id"),
        Some(product.clone())
    );
    assert_eq!(attr(business, "inventory.quantity").as_deref(), Some("3"));
    assert_eq!(attr(business, "order.id"), Some(order.clone()));
    assert_eq!(attr(business, "inventory.available").as_deref(), Some("7"));
    assert_eq!(attr(business, "inventory.reserved").as_deref(), Some("3"));
    assert!(
        children(&spans, business)
            .iter()
            .any(|s| s.name == "db.transaction"),
        "a reservation is a transaction"
    );
    let (statements, writes) = check_db_spans(&spans, business, backend, &[&product, &order]);
    assert!(statements >= 3, "select/update/inserts: {statements}");
    assert!(
        writes >= 3,
        "the update and the two inserts carry rows: {writes}"
    );

    // REST: the same tree, with the HTTP attributes on the server span.
    let spans = receiver.trace(&rest_trace, &rest_caller_span, 3).await;
    let server_span = named(&spans, "GET /api/v1/inventory/{product_id}");
    assert_eq!(hex(&server_span.parent_span_id), rest_caller_span);
    assert_eq!(server_span.kind, SpanKind::Server as i32);
    assert_eq!(
        attr(server_span, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attr(server_span, "http.route").as_deref(),
        Some("/api/v1/inventory/{product_id}")
    );
    assert_eq!(
        attr(server_span, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(server_span, "rpc.method").as_deref(),
        Some("CheckInventory")
    );
    assert_eq!(
        attr(server_span, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    let business = named(&spans, "inventory.check");
    assert_eq!(business.parent_span_id, server_span.span_id);
    assert_eq!(
        attr(business, "inventory.product_id"),
        Some(product.clone())
    );
    assert_eq!(attr(business, "inventory.available").as_deref(), Some("7"));
    assert_eq!(attr(business, "inventory.reserved").as_deref(), Some("3"));
    // The cache (when on) is asked first; the database only on a miss.
    let lookup = children(&spans, business)
        .into_iter()
        .find(|s| s.name == "cache.get")
        .map(|lookup| attr(lookup, "cache.hit"));
    match lookup {
        Some(Some(hit)) if hit == "true" => assert!(
            children(&spans, business)
                .iter()
                .all(|s| attr(s, "db.system").is_none()),
            "a cache hit reads no database"
        ),
        Some(Some(hit)) if hit == "false" => {
            check_db_spans(&spans, business, backend, &[&product]);
        }
        None => {
            check_db_spans(&spans, business, backend, &[&product]);
        }
        other => panic!("cache.get span with cache.hit {other:?}"),
    }

    // The refusal: an error on the server span and on the business span.
    let spans = receiver
        .trace(&refused_trace, &refused_caller_span, 2)
        .await;
    let server_span = named(&spans, "inventory.v1.InventoryService/ReserveInventory");
    assert_eq!(
        attr(server_span, "rpc.grpc.status_code").as_deref(),
        Some("9")
    );
    let status = server_span.status.as_ref().expect("status");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert!(status.message.contains("insufficient stock"), "{status:?}");
    let business = named(&spans, "inventory.reserve");
    let status = business.status.as_ref().expect("status");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert!(status.message.contains("insufficient stock"), "{status:?}");
    assert_eq!(attr(business, "rpc.grpc.status_code").as_deref(), Some("9"));
    assert_eq!(attr(business, "inventory.available").as_deref(), Some("7"));
}

/// A parsed Prometheus text page: `name{sorted labels}` to value.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let key = match series.split_once('{') {
            None => series.to_owned(),
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("closing brace");
                let mut pairs: Vec<&str> = split_labels(labels);
                pairs.sort_unstable();
                format!("{name}{{{}}}", pairs.join(","))
            }
        };
        samples.insert(key, value);
    }
    samples
}

/// Splits `a="1",b="x,y"` at the commas between pairs.
fn split_labels(labels: &str) -> Vec<&str> {
    let mut pairs = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in labels.char_indices() {
        match c {
            '\\' if quoted => escaped = !escaped,
            '"' if !escaped => quoted = !quoted,
            ',' if !quoted => {
                pairs.push(&labels[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    if start < labels.len() {
        pairs.push(&labels[start..]);
    }
    pairs
}

async fn scrape(server: &TestServer) -> HashMap<String, f64> {
    let response = reqwest::get(server.http_url("/metrics"))
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    parse_metrics(&response.text().await.expect("text"))
}

fn sample(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

/// Calls that share a group-commit batch keep their own traces; each has a
/// `db.batch` span with the batch's size, linked to the batch's own trace,
/// which holds the one transaction and links back to every call.
async fn calls_applied_together_link_to_their_batch(backend: Backend) {
    const CALLS: usize = 4;
    let (receiver, collector) = Receiver::start().await;
    let server = TestServer::start_with(backend, |config| {
        config.tracing.enabled = true;
        config.tracing.endpoint = Some(format!("http://{collector}"));
        config.tracing.export_interval = Duration::from_millis(100);
        // One lane, and time for every call to arrive before it is applied.
        config.inventory.batch.lanes = 1;
        config.inventory.batch.max_wait = Duration::from_millis(300);
    })
    .await;
    let mut client = server.client().await;
    let product = format!("batched-{}", uuid::Uuid::now_v7().simple());
    client
        .update_inventory(UpdateInventoryRequest {
            product_id: product.clone(),
            quantity: 100,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("stock");

    let mut callers = Vec::new();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..CALLS {
        let (parent, trace, span) = caller();
        callers.push((trace, span));
        let mut client = client.clone();
        let product = product.clone();
        calls.spawn(async move {
            let mut request = tonic::Request::new(ReserveInventoryRequest {
                product_id: product,
                quantity: 1,
                order_id: format!("batched-order-{n}"),
                reservation_timeout: 0,
            });
            request
                .metadata_mut()
                .insert("traceparent", parent.parse().expect("ascii"));
            client.reserve_inventory(request).await
        });
    }
    while let Some(done) = calls.join_next().await {
        done.expect("task").expect("reserve");
    }
    server.stop().await.expect("clean stop");

    let mut batch_traces = Vec::new();
    for (trace, caller_span) in &callers {
        let spans = receiver.trace(trace, caller_span, 3).await;
        let business = named(&spans, "inventory.reserve");
        let member = children(&spans, business)
            .into_iter()
            .find(|s| s.name == "db.batch")
            .unwrap_or_else(|| panic!("no db.batch span under the call: {spans:?}"));
        let size: usize = attr(member, "inventory.batch.size")
            .and_then(|v| v.parse().ok())
            .expect("inventory.batch.size");
        assert!(size >= 2, "the calls were not applied together ({size})");
        assert!(attr(member, "inventory.batch.wait_ms").is_some());
        let link = member.links.first().expect("a link to the batch");
        assert_ne!(
            hex(&link.trace_id),
            *trace,
            "the batch is a trace of its own"
        );
        batch_traces.push((hex(&link.trace_id), hex(&link.span_id)));
    }
    batch_traces.sort();
    batch_traces.dedup();
    let (batch_trace, batch_span_id) = &batch_traces[0];
    let spans: Vec<Span> = receiver
        .spans
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| hex(&s.trace_id) == *batch_trace)
        .cloned()
        .collect();
    let batch = spans
        .iter()
        .find(|s| hex(&s.span_id) == *batch_span_id)
        .expect("the batch span was exported");
    assert_eq!(batch.name, "inventory.batch");
    assert!(batch.parent_span_id.is_empty(), "a root span");
    let size: usize = attr(batch, "inventory.batch.size")
        .and_then(|v| v.parse().ok())
        .expect("size");
    assert!(batch.links.len() == size, "links back to each call");
    assert!(
        children(&spans, batch)
            .iter()
            .any(|s| s.name == "db.transaction"),
        "the batch's transaction"
    );
}

async fn metrics_count_the_calls_made(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut client = server.client().await;
    let product = format!("metered-{}", uuid::Uuid::now_v7().simple());
    client
        .update_inventory(UpdateInventoryRequest {
            product_id: product.clone(),
            quantity: 5,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("stock");
    let before = scrape(&server).await;

    for i in 0..2 {
        client
            .reserve_inventory(ReserveInventoryRequest {
                product_id: product.clone(),
                quantity: 1,
                order_id: format!("metered-order-{i}"),
                reservation_timeout: 300,
            })
            .await
            .expect("reserve");
    }
    let refused = client
        .reserve_inventory(ReserveInventoryRequest {
            product_id: product.clone(),
            quantity: 100,
            order_id: "metered-too-much".into(),
            reservation_timeout: 300,
        })
        .await
        .expect_err("insufficient");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let rest = reqwest::get(server.http_url(&format!("/api/v1/inventory/{product}")))
        .await
        .expect("REST");
    assert_eq!(rest.status(), 200);
    let released = reqwest::Client::new()
        .post(server.http_url("/api/v1/inventory/release"))
        .json(&serde_json::json!({"product_id": product, "order_id": "metered-order-0"}))
        .send()
        .await
        .expect("REST release");
    assert_eq!(released.status(), 200);
    let committed = reqwest::Client::new()
        .post(server.http_url("/api/v1/inventory/commit"))
        .json(&serde_json::json!({"product_id": product, "order_id": "metered-order-1"}))
        .send()
        .await
        .expect("REST commit");
    assert_eq!(committed.status(), 200);

    let after = scrape(&server).await;
    let delta = |key: &str| sample(&after, key) - sample(&before, key);
    let reserve = "inventory.v1.InventoryService/ReserveInventory";
    assert_eq!(
        delta(&format!(
            r#"inventory_requests_total{{code="OK",method="{reserve}",protocol="grpc"}}"#
        )),
        2.0
    );
    assert_eq!(
        delta(&format!(
            r#"inventory_requests_total{{code="FAILED_PRECONDITION",method="{reserve}",protocol="grpc"}}"#
        )),
        1.0
    );
    assert_eq!(
        delta(
            r#"inventory_requests_total{code="OK",method="inventory.v1.InventoryService/CheckInventory",protocol="rest"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(&format!(
            r#"inventory_request_duration_seconds_count{{code="OK",method="{reserve}",protocol="grpc"}}"#
        )),
        2.0
    );
    assert_eq!(delta("inventory_reservations_created_total"), 2.0);
    assert_eq!(delta("inventory_reservations_released_total"), 1.0);
    assert_eq!(delta("inventory_reservations_committed_total"), 1.0);
    assert_eq!(delta("inventory_insufficient_stock_total"), 1.0);
    assert_eq!(
        delta(&format!(
            r#"inventory_hot_product_reservations{{product_id="{product}"}}"#
        )),
        2.0
    );
    let system = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgresql",
    };
    assert!(
        delta(&format!(
            r#"inventory_db_query_duration_seconds_count{{db_operation="UPDATE",db_system="{system}"}}"#
        )) >= 2.0,
        "statement latencies are recorded"
    );
    assert_eq!(sample(&after, "inventory_db_pool_max"), 10.0);
    assert!(sample(&after, "inventory_db_pool_size") >= 1.0);
    assert!(after.contains_key("inventory_db_pool_in_use"));
    assert!(after.contains_key("inventory_db_pool_waiting"));
    assert!(
        after.contains_key("inventory_expiry_sweeps_total"),
        "the sweeper ran at start"
    );
    server.stop().await.expect("clean stop");
}

/// `/metrics` says what became of the spans: sent to a collector that
/// takes them, or lost with the exports to one that is down; none dropped
/// for room at this rate.
#[tokio::test]
async fn metrics_count_the_spans_exported_and_lost() {
    let (_receiver, collector) = Receiver::start().await;
    let down = closed_port();
    for (endpoint, counted) in [
        (collector, "inventory_trace_spans_exported_total"),
        (
            down,
            r#"inventory_trace_spans_dropped_total{reason="export_failed"}"#,
        ),
    ] {
        let server = TestServer::start_with(Backend::Sqlite, |config| {
            config.tracing.enabled = true;
            config.tracing.endpoint = Some(format!("http://{endpoint}"));
            config.tracing.export_interval = Duration::from_millis(100);
        })
        .await;
        let mut client = server.client().await;
        set_stock(&mut client, "spans", 1).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let samples = loop {
            let samples = scrape(&server).await;
            if sample(&samples, counted) > 0.0 || std::time::Instant::now() > deadline {
                break samples;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            sample(&samples, counted) > 0.0,
            "{counted} with the collector at {endpoint}: {samples:?}"
        );
        assert_eq!(
            sample(
                &samples,
                r#"inventory_trace_spans_dropped_total{reason="queue_full"}"#
            ),
            0.0
        );
        server.stop().await.expect("clean stop");
    }
}

#[test]
fn the_metrics_parser_reads_labels_with_commas() {
    let samples =
        parse_metrics("# HELP x y\n# TYPE x counter\nx_total{b=\"2\",a=\"1,3\"} 4\nplain 1.5\n");
    assert_eq!(samples[r#"x_total{a="1,3",b="2"}"#], 4.0);
    assert_eq!(samples["plain"], 1.5);
}
