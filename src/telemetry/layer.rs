//! The server span and the request metrics: a tower layer in front of the
//! REST/Connect transcoder and gRPC-Web, so it sees every request as it
//! arrived, whatever its protocol.
//!
//! Per request, [`RequestTelemetry`]:
//! - creates the server span under the server's dispatch, the child of the
//!   caller's span when the request carries W3C `traceparent` (with
//!   `tracestate` and `baggage`): gRPC metadata, gRPC-Web and REST headers
//!   are all HTTP headers here, so this is the one extraction point;
//! - runs the rest of the stack inside that span and dispatch, so the
//!   handler's business span and the database spans become its children;
//! - answers with the trace id in `x-trace-id`;
//! - when the response body ends (gRPC status trailers arrive after the
//!   body), records `rpc.grpc.status_code`, for REST and Connect also
//!   `http.route` (the HttpRule template, read from the transcoder's
//!   [`TranscodedCall`]) and `http.response.status_code`, marks a non-OK
//!   call as an error with its message, ends the span, and counts the
//!   request in the metrics by protocol, method and code.
//!
//! Shaped like tower-http's `TraceLayer`: [`RequestTelemetryLayer`],
//! [`RequestTelemetry`], an unboxed [`ResponseFuture`] and a body wrapper.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use opentelemetry::propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use pin_project_lite::pin_project;
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::instrument::{Instrumented, WithDispatch};
use tracing::{Dispatch, Instrument as _, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::Telemetry;
use super::metrics::Metrics;
use crate::transcode::TranscodedCall;

/// The response header carrying the request's trace id.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// What every request of one server shares.
struct Shared {
    /// The server's dispatch: spans are created and run under it.
    dispatch: Dispatch,
    /// Request counts and latencies.
    metrics: Arc<Metrics>,
    /// Whether spans are exported (else no trace id is answered).
    exporting: bool,
    /// W3C trace context and baggage.
    propagator: TextMapCompositePropagator,
}

/// Wraps a service with the server span and the request metrics.
#[derive(Clone)]
pub struct RequestTelemetryLayer {
    /// The server's telemetry.
    shared: Arc<Shared>,
}

impl RequestTelemetryLayer {
    /// The layer for the server owning `telemetry`.
    pub fn new(telemetry: &Telemetry) -> Self {
        Self {
            shared: Arc::new(Shared {
                dispatch: telemetry.dispatch().clone(),
                metrics: telemetry.metrics().clone(),
                exporting: telemetry.is_exporting(),
                propagator: TextMapCompositePropagator::new(vec![
                    Box::new(TraceContextPropagator::new()),
                    Box::new(BaggagePropagator::new()),
                ]),
            }),
        }
    }
}

impl<S> Layer<S> for RequestTelemetryLayer {
    type Service = RequestTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTelemetry {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`RequestTelemetryLayer`].
#[derive(Clone)]
pub struct RequestTelemetry<S> {
    /// The rest of the stack.
    inner: S,
    /// The server's telemetry.
    shared: Arc<Shared>,
}

/// How a request reached the service; the `protocol` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Grpc,
    GrpcWeb,
    Rest,
    Connect,
}

impl Protocol {
    fn of(headers: &HeaderMap) -> Self {
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if content_type.starts_with("application/grpc-web") {
            Self::GrpcWeb
        } else if content_type.starts_with("application/grpc") {
            Self::Grpc
        } else {
            // Connect or REST: the transcoder's answer tells them apart.
            Self::Rest
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::GrpcWeb => "grpc-web",
            Self::Rest => "rest",
            Self::Connect => "connect",
        }
    }

    fn is_grpc(self) -> bool {
        matches!(self, Self::Grpc | Self::GrpcWeb)
    }
}

/// Reads propagation headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

impl<S> Service<Request<Body>> for RequestTelemetry<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let protocol = Protocol::of(request.headers());
        let grpc_path = protocol.is_grpc().then(|| request.uri().path().to_owned());
        let http_method = request.method().clone();
        let span = self.shared.server_span(&request, grpc_path.as_deref());
        let trace_id = self.shared.exporting.then(|| {
            let context = span.context();
            let otel_span = context.span();
            let span_context = otel_span.span_context();
            span_context
                .is_valid()
                .then(|| span_context.trace_id().to_string())
        });
        let future = {
            let _dispatch = tracing::dispatcher::set_default(&self.shared.dispatch);
            let _entered = span.enter();
            self.inner.call(request)
        };
        let dispatch = self.shared.dispatch.clone();
        ResponseFuture {
            inner: tracing::instrument::WithSubscriber::with_subscriber(
                future.instrument(span.clone()),
                dispatch,
            ),
            state: Some(RequestState {
                shared: self.shared.clone(),
                span,
                started,
                protocol,
                http_method,
                grpc_path,
                trace_id: trace_id.flatten(),
                code: None,
                message: String::new(),
                http_status: 0,
            }),
        }
    }
}

impl Shared {
    fn server_span(&self, request: &Request<Body>, grpc_path: Option<&str>) -> Span {
        let span = tracing::dispatcher::with_default(&self.dispatch, || {
            tracing::info_span!(
                target: "inventory_service::server",
                "rpc.server",
                otel.name = Empty,
                otel.kind = "server",
                otel.status_description = Empty,
                rpc.system = "grpc",
                rpc.service = Empty,
                rpc.method = Empty,
                rpc.grpc.status_code = Empty,
                http.request.method = Empty,
                http.route = Empty,
                http.response.status_code = Empty,
                enduser.id = Empty,
            )
        });
        match grpc_path {
            Some(path) => record_method(&span, path),
            None => {
                span.record("otel.name", request.method().as_str());
                span.record("http.request.method", request.method().as_str());
            }
        }
        if self.exporting {
            let parent = self.propagator.extract(&HeaderExtractor(request.headers()));
            // Fails only for a span already started, which this one is not.
            let _ = span.set_parent(parent);
        }
        span
    }
}

/// Names `span` after the gRPC method at `path` (`/package.Service/Method`).
fn record_method(span: &Span, path: &str) {
    let name = path.trim_start_matches('/');
    span.record("otel.name", name);
    if let Some((service, method)) = name.split_once('/') {
        span.record("rpc.service", service);
        span.record("rpc.method", method);
    }
}

/// One request's span and measurements, until its response body ends.
struct RequestState {
    /// The server's telemetry.
    shared: Arc<Shared>,
    /// The server span; ends when this state is finished.
    span: Span,
    /// When the request arrived.
    started: Instant,
    /// How it arrived.
    protocol: Protocol,
    /// The HTTP method of the request.
    http_method: http::Method,
    /// The gRPC method called, once known.
    grpc_path: Option<String>,
    /// The trace id answered in `x-trace-id`.
    trace_id: Option<String>,
    /// The gRPC status code, once seen.
    code: Option<i32>,
    /// The gRPC status message, once seen.
    message: String,
    /// The HTTP status of the response.
    http_status: u16,
}

impl RequestState {
    /// Reads what the response head says: the transcoder's record of the
    /// call, or a trailers-only gRPC status.
    fn on_response(&mut self, response: &mut Response<Body>) {
        self.http_status = response.status().as_u16();
        if let Some(trace_id) = self
            .trace_id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            response.headers_mut().insert(TRACE_ID_HEADER, trace_id);
        }
        if let Some(call) = response.extensions().get::<TranscodedCall>() {
            if call.route.is_none() && call.grpc_path.is_some() {
                self.protocol = Protocol::Connect;
            }
            self.code = Some(call.code as i32);
            if let Some(path) = &call.grpc_path {
                record_method(&self.span, path);
                self.rename(path.trim_start_matches('/').to_owned());
                self.grpc_path = Some(path.clone());
            }
            if let Some(route) = &call.route {
                // Named as HTTP servers name theirs: `GET /api/v1/inventory/{product_id}`.
                self.span.record("http.route", route.as_str());
                self.rename(format!("{} {route}", self.http_method));
            }
        }
        self.read_status(response.headers());
    }

    /// Renames the span, started already when spans are exported (its trace
    /// id was read), once the route is known.
    fn rename(&self, name: String) {
        if self.shared.exporting {
            self.span.context().span().update_name(name);
        } else {
            self.span.record("otel.name", name);
        }
    }

    /// Takes `grpc-status` and `grpc-message` from a header map, if there.
    fn read_status(&mut self, headers: &HeaderMap) {
        if let Some(code) = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            self.code = Some(code);
            self.message = headers
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .map(percent_decode)
                .unwrap_or_default();
        }
    }

    /// Reads a gRPC-Web trailers frame (flag 0x80, then HTTP/1-style header
    /// lines) from a data chunk of the response body.
    fn read_grpc_web_trailers(&mut self, data: &Bytes) {
        if data.len() < 5 || data[0] != 0x80 {
            return;
        }
        let text = String::from_utf8_lossy(&data[5..]);
        let mut headers = HeaderMap::new();
        for line in text.split("\r\n") {
            if let Some((name, value)) = line.split_once(':')
                && let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()),
                    HeaderValue::from_str(value.trim()),
                )
            {
                headers.insert(name, value);
            }
        }
        self.read_status(&headers);
    }

    /// Ends the span and counts the request. `ended` is false when the body
    /// was dropped before its end (the client went away).
    fn finish(self, ended: bool) {
        let code = self.code.unwrap_or(match (ended, self.protocol) {
            (false, _) => tonic::Code::Cancelled as i32,
            (true, Protocol::Grpc) => tonic::Code::Unknown as i32,
            (true, _) => 0,
        });
        let span = &self.span;
        span.record("rpc.grpc.status_code", code);
        if !self.protocol.is_grpc() {
            span.record("http.response.status_code", self.http_status);
        }
        if code != 0 {
            let message = if self.message.is_empty() {
                super::metrics::code_name(code).to_owned()
            } else {
                self.message.clone()
            };
            span.record("otel.status_description", message);
        }
        let method = match &self.grpc_path {
            Some(path) if code != tonic::Code::Unimplemented as i32 => path.trim_start_matches('/'),
            _ => "unknown",
        };
        self.shared.metrics.record_request(
            self.protocol.name(),
            method,
            code,
            self.started.elapsed(),
        );
    }
}

/// `grpc-message` is percent-encoded.
fn percent_decode(value: &str) -> String {
    crate::transcode::template::percent_decode(value, true).unwrap_or_else(|| value.to_owned())
}

pin_project! {
    /// The response future of [`RequestTelemetry`]: the inner future, run
    /// inside the server span and dispatch; its response's body is wrapped
    /// so the span ends with the body.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: WithDispatch<Instrumented<F>>,
        state: Option<RequestState>,
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let Some(mut state) = this.state.take() else {
            return Poll::Ready(result);
        };
        Poll::Ready(match result {
            Ok(mut response) => {
                state.on_response(&mut response);
                Ok(response.map(|body| {
                    Body::new(TracedBody {
                        inner: body,
                        state: Some(state),
                    })
                }))
            }
            Err(error) => {
                state.code = Some(tonic::Code::Unknown as i32);
                state.finish(true);
                Err(error)
            }
        })
    }
}

pin_project! {
    /// A response body that finishes its request's telemetry when it ends
    /// or is dropped.
    pub struct TracedBody {
        #[pin]
        inner: Body,
        state: Option<RequestState>,
    }

    impl PinnedDrop for TracedBody {
        fn drop(this: Pin<&mut Self>) {
            if let Some(state) = this.project().state.take() {
                state.finish(false);
            }
        }
    }
}

impl http_body::Body for TracedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(state) = this.state.as_mut() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        state.read_status(trailers);
                    } else if let Some(data) = frame.data_ref()
                        && state.protocol == Protocol::GrpcWeb
                    {
                        state.read_grpc_web_trailers(data);
                    }
                }
                Some(Err(status)) => {
                    state.code = Some(status.code() as i32);
                    state.message = status.message().to_owned();
                }
                None => {}
            }
            if frame.is_none()
                && let Some(state) = this.state.take()
            {
                state.finish(true);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
