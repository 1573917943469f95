//! What the HTTP port answers itself, in front of everything else:
//! `GET /health` (JSON, 200 when serving, 503 when not), `GET /metrics`
//! (the Prometheus text format) and the web console (`GET /`, see
//! [`super::console`]). Every other request passes through untouched.
//!
//! Shaped like the tower-http middlewares: [`HttpEdgeLayer`] holds the
//! configuration, [`HttpEdge`] is the service, [`ResponseFuture`] avoids
//! boxing on the pass-through path.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use pin_project_lite::pin_project;
use tonic::body::Body;
use tower::{Layer, Service};

use super::console;
use super::health::HealthProbe;
use crate::telemetry::Metrics;

/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Adds `/health` and `/metrics` in front of a service.
#[derive(Clone)]
pub struct HttpEdgeLayer {
    /// Answers `/health`.
    probe: Arc<HealthProbe>,
    /// Answers `/metrics`, when set.
    metrics: Option<Arc<Metrics>>,
}

impl HttpEdgeLayer {
    /// The layer, answering `/health` with `probe` and `/metrics` with
    /// `metrics`.
    pub fn new(probe: HealthProbe, metrics: Arc<Metrics>) -> Self {
        Self {
            probe: Arc::new(probe),
            metrics: Some(metrics),
        }
    }

    /// The layer answering `/health` only.
    pub fn health_only(probe: HealthProbe) -> Self {
        Self {
            probe: Arc::new(probe),
            metrics: None,
        }
    }
}

impl<S> Layer<S> for HttpEdgeLayer {
    type Service = HttpEdge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpEdge {
            inner,
            probe: self.probe.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The service made by [`HttpEdgeLayer`].
#[derive(Clone)]
pub struct HttpEdge<S> {
    /// Everything else.
    inner: S,
    /// Answers `/health`.
    probe: Arc<HealthProbe>,
    /// Answers `/metrics`, when set.
    metrics: Option<Arc<Metrics>>,
}

type Answer = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

impl<S, B> Service<Request<B>> for HttpEdge<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let is_get = request.method() == Method::GET || request.method() == Method::HEAD;
        if request.uri().path() == "/health" && is_get {
            let probe = self.probe.clone();
            let head = request.method() == Method::HEAD;
            return ResponseFuture::answer(Box::pin(async move {
                let report = probe.report().await;
                let status = if report.is_serving() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let body = if head {
                    Vec::new()
                } else {
                    serde_json::to_vec(&report).unwrap_or_default()
                };
                json_response(status, body)
            }));
        }
        if request.uri().path() == "/metrics"
            && is_get
            && let Some(metrics) = &self.metrics
        {
            let text = metrics.render();
            let mut response = Response::new(Body::new(Full::new(Bytes::from(text))));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(PROMETHEUS_TEXT),
            );
            return ResponseFuture::answer(Box::pin(std::future::ready(response)));
        }
        if is_get && let Some(asset) = console::asset(request.uri().path()) {
            let head = request.method() == Method::HEAD;
            return ResponseFuture::answer(Box::pin(std::future::ready(console_response(
                asset, head,
            ))));
        }
        ResponseFuture::inner(self.inner.call(request))
    }
}

/// A file of the web console, revalidated on every load (`no-cache`): the
/// files are small, and a new binary may bring new ones.
fn console_response(asset: console::Asset, head: bool) -> Response<Body> {
    let body = if head { &[][..] } else { asset.body };
    let mut response = Response::new(Body::new(Full::new(Bytes::from_static(body))));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(console::CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

pin_project! {
    /// The response future of [`HttpEdge`]: the routes' own future, unboxed,
    /// or an answer made here.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Answer { future: Answer },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    fn answer(future: Answer) -> Self {
        Self {
            kind: Kind::Answer { future },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Answer { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::domain::memory::MemoryStore;
    use crate::domain::{Inventory, InventorySettings};

    #[tokio::test]
    async fn health_is_503_with_the_reason_when_the_database_is_down() {
        let store = Arc::new(MemoryStore::new());
        store.set_down(true);
        let settings = InventorySettings {
            default_reservation_timeout: Duration::from_secs(300),
            max_reservation_timeout: Duration::from_secs(3600),
            record_checks: false,
            request_id_ttl: Duration::from_secs(3600),
            events: crate::domain::events::EventSettings::default(),
            batch: None,
        };
        let probe = HealthProbe::new(
            Inventory::new(store, settings),
            Duration::from_secs(1),
            "inventory-service".into(),
            "test".into(),
            "sqlite",
        );
        let routes = tower::service_fn(|_: Request<Body>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
        });
        let edge = HttpEdgeLayer::health_only(probe).layer(routes);
        let request = Request::get("/health")
            .body(Body::empty())
            .expect("request");
        let response = edge.oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["status"], "NOT_SERVING");
        assert_eq!(json["database"]["status"], "down");
        assert_eq!(
            json["database"]["error"],
            "database unavailable: connection refused"
        );
    }
}
