//! A generic REST/JSON and Connect front for tonic services, driven by the
//! `google.api.http` rules in a descriptor set. It knows nothing about any
//! particular service: hand it the encoded `FileDescriptorSet` of any tonic
//! service whose methods carry HttpRules.
//!
//! [`TranscodeLayer`] wraps the tonic router. Per request, [`Transcode`]:
//! - passes gRPC (`application/grpc*`) through untouched, unboxed;
//! - serves `GET /openapi.json`, generated from the same descriptors;
//! - answers Connect unary calls (`POST /pkg.Service/Method` with
//!   `application/json` or `application/proto`);
//! - matches REST calls against the route table, builds the request message
//!   from path, query and body (proto3 JSON mapping), calls the router
//!   in-process with a gRPC request, and renders the reply as JSON (or as the
//!   JSON error `{"code","message","details"}` with the mapped HTTP status);
//! - answers anything else with a JSON 404, or 405 for a known path.
//!
//! Because the REST call becomes a gRPC call to the same router, it runs the
//! same handler, interceptors and tracing as any gRPC call.
//!
//! ```ignore
//! let transcoder = Transcoder::new(FILE_DESCRIPTOR_SET, TranscodeOptions::default())?;
//! Server::builder()
//!     .accept_http1(true)
//!     .layer(TranscodeLayer::new(transcoder))
//!     .add_routes(routes)
//!     .serve(addr)
//!     .await?;
//! ```
//!
//! Differences from grpc-gateway: no separate proxy process or network hop;
//! streaming methods are refused at start; response headers carry metadata
//! as `Grpc-Metadata-<k>` and trailers as `Grpc-Trailer-<k>` (HTTP/1.1 has no
//! trailers after a JSON body).

mod errors;
mod grpc;
mod openapi;
mod request;
mod routes;
pub mod template;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use pin_project_lite::pin_project;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, SerializeOptions};
use tonic::Code;
use tonic::body::Body;
use tower::{Layer, Service};

pub use errors::{connect_code, http_status};
pub use routes::{RouteError, RouteTable};

/// The `google.api` messages (HttpRule), generated from the vendored protos.
#[allow(
    missing_docs,
    dead_code,
    clippy::all,
    clippy::pedantic,
    reason = "generated code: prost output, of which only HttpRule is used"
)]
mod google_api {
    include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
}

/// `google/rpc/status.proto` and `error_details.proto`, merged into every
/// pool so error details render as JSON whatever the service's own protos
/// import.
const GOOGLE_RPC_DESCRIPTORS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));

/// How JSON is read and written.
#[derive(Debug, Clone)]
pub struct JsonOptions {
    /// Write proto field names (`product_id`) rather than lowerCamelCase
    /// (`productId`). Input accepts both either way.
    pub use_proto_names: bool,
    /// Write fields that hold their default value (`"available": false`).
    pub emit_defaults: bool,
    /// Refuse unknown JSON fields and query parameters (INVALID_ARGUMENT);
    /// when false they are ignored.
    pub deny_unknown_fields: bool,
}

impl Default for JsonOptions {
    fn default() -> Self {
        Self {
            use_proto_names: true,
            emit_defaults: true,
            deny_unknown_fields: true,
        }
    }
}

impl JsonOptions {
    fn serialize_options(&self) -> SerializeOptions {
        SerializeOptions::new()
            .use_proto_field_name(self.use_proto_names)
            .skip_default_fields(!self.emit_defaults)
    }

    /// A message as a JSON value under these options. Whole doubles print as
    /// integers (`3`, not `3.0`), as the other proto3 JSON encoders do.
    pub fn to_json(
        &self,
        message: &DynamicMessage,
    ) -> Result<serde_json::Value, serde_json::Error> {
        let mut json = message
            .serialize_with_options(serde_json::value::Serializer, &self.serialize_options())?;
        integral_doubles_as_integers(&mut json);
        Ok(json)
    }

    /// A message as JSON text, written directly when its type can hold no
    /// floating-point value (`may_hold_floats` false: nothing to tidy), else
    /// via [`Self::to_json`].
    pub fn to_json_bytes(
        &self,
        message: &DynamicMessage,
        may_hold_floats: bool,
    ) -> Result<Vec<u8>, serde_json::Error> {
        if may_hold_floats {
            return serde_json::to_vec(&self.to_json(message)?);
        }
        let mut bytes = Vec::with_capacity(256);
        message.serialize_with_options(
            &mut serde_json::Serializer::new(&mut bytes),
            &self.serialize_options(),
        )?;
        Ok(bytes)
    }
}

/// Whether a message type can carry a float or double anywhere inside it
/// (including google.protobuf.Value, whose numbers are doubles).
pub(crate) fn has_floats(
    message: &prost_reflect::MessageDescriptor,
    seen: &mut Vec<String>,
) -> bool {
    use prost_reflect::Kind;
    if seen.iter().any(|s| s == message.full_name()) {
        return false;
    }
    seen.push(message.full_name().to_owned());
    message.fields().any(|field| match field.kind() {
        Kind::Double | Kind::Float => true,
        Kind::Message(nested) => has_floats(&nested, seen),
        _ => false,
    })
}

fn integral_doubles_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < EXACT
            {
                // Exact: whole and below 2^53.
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_doubles_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_doubles_as_integers),
        _ => {}
    }
}

/// The transcoder's settings.
#[derive(Debug, Clone)]
pub struct TranscodeOptions {
    /// JSON reading and writing.
    pub json: JsonOptions,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Where the OpenAPI document is served; `None` to not serve it.
    pub openapi_path: Option<String>,
    /// `info.title` of the OpenAPI document.
    pub title: String,
    /// `info.version` of the OpenAPI document.
    pub version: String,
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        Self {
            json: JsonOptions::default(),
            max_body_bytes: 1024 * 1024,
            openapi_path: Some("/openapi.json".to_owned()),
            title: "API".to_owned(),
            version: "1.0.0".to_owned(),
        }
    }
}

/// Why a transcoder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The descriptor set does not decode.
    #[error("invalid descriptor set: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// The embedded google.rpc descriptors do not decode (a build defect).
    #[error("invalid embedded google.rpc descriptors: {0}")]
    Embedded(prost::DecodeError),
    /// A rule is malformed or conflicts with another.
    #[error("invalid google.api.http rule: {0}")]
    Route(#[from] RouteError),
}

/// Everything decided at start: descriptors, routes, the OpenAPI document.
#[derive(Debug)]
pub struct Transcoder {
    pool: DescriptorPool,
    routes: RouteTable,
    /// Unary methods by gRPC path, for Connect.
    methods: HashMap<String, MethodDescriptor>,
    openapi: Bytes,
    options: TranscodeOptions,
}

impl Transcoder {
    /// Reads the routes of every service in `file_descriptor_set` (encoded,
    /// with imports). Conflicting or malformed rules are an error naming the
    /// methods.
    pub fn new(file_descriptor_set: &[u8], options: TranscodeOptions) -> Result<Self, BuildError> {
        let mut pool = DescriptorPool::decode(file_descriptor_set)?;
        if pool.get_message_by_name("google.rpc.Status").is_none() {
            let rpc = prost_types::FileDescriptorSet::decode(GOOGLE_RPC_DESCRIPTORS)
                .map_err(BuildError::Embedded)?;
            let missing = rpc
                .file
                .into_iter()
                .filter(|f| pool.get_file_by_name(f.name()).is_none())
                .collect::<Vec<_>>();
            pool.add_file_descriptor_protos(missing)?;
        }
        let routes = RouteTable::from_pool(&pool)?;
        let methods = pool
            .services()
            .flat_map(|s| s.methods().collect::<Vec<_>>())
            .filter(|m| !m.is_client_streaming() && !m.is_server_streaming())
            .map(|m| {
                (
                    format!("/{}/{}", m.parent_service().full_name(), m.name()),
                    m,
                )
            })
            .collect();
        let openapi = Bytes::from(openapi::document(&routes, &options).to_string());
        Ok(Self {
            pool,
            routes,
            methods,
            openapi,
            options,
        })
    }

    /// The route table, for inspection.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }
}

/// Puts a [`Transcoder`] in front of a tonic router.
#[derive(Clone)]
pub struct TranscodeLayer {
    transcoder: Arc<Transcoder>,
}

impl TranscodeLayer {
    /// The layer.
    pub fn new(transcoder: Transcoder) -> Self {
        Self {
            transcoder: Arc::new(transcoder),
        }
    }
}

impl<S> Layer<S> for TranscodeLayer {
    type Service = Transcode<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Transcode {
            inner,
            transcoder: self.transcoder.clone(),
        }
    }
}

/// The service made by [`TranscodeLayer`].
#[derive(Clone)]
pub struct Transcode<S> {
    inner: S,
    transcoder: Arc<Transcoder>,
}

type Answer<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

impl<S> Service<Request<Body>> for Transcode<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let content_type = content_type(request.headers());
        if content_type.starts_with("application/grpc") {
            return ResponseFuture::inner(self.inner.call(request));
        }
        // The clone takes the place of the service that was made ready.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let transcoder = self.transcoder.clone();
        ResponseFuture::answer(Box::pin(
            async move { transcoder.handle(inner, request).await },
        ))
    }
}

pin_project! {
    /// The response future of [`Transcode`]: gRPC passes through unboxed.
    pub struct ResponseFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, E> {
        Inner { #[pin] future: F },
        Answer { future: Answer<E> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    fn answer(future: Answer<E>) -> Self {
        Self {
            kind: Kind::Answer { future },
        }
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Answer { future } => future.as_mut().poll(cx),
        }
    }
}

/// What a transcoded call was, attached to its response's extensions so
/// that an outer layer (telemetry) can name the request after its route
/// and gRPC method, and read its outcome, without parsing the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscodedCall {
    /// The matched HttpRule path template (`/api/v1/inventory/{product_id}`);
    /// `None` for Connect and for paths no rule matches.
    pub route: Option<String>,
    /// The gRPC method called (`/package.Service/Method`), if any was.
    pub grpc_path: Option<String>,
    /// The gRPC code of the outcome (the call's, or the layer's own refusal).
    pub code: Code,
}

/// Records `code` as the outcome of `response` unless one is recorded.
fn with_code(mut response: Response<Body>, code: Code) -> Response<Body> {
    if response.extensions().get::<TranscodedCall>().is_none() {
        response.extensions_mut().insert(TranscodedCall {
            route: None,
            grpc_path: None,
            code,
        });
    }
    response
}

/// Adds the route and method to the [`TranscodedCall`] of `response`.
fn annotate(
    mut response: Response<Body>,
    route: Option<String>,
    grpc_path: &str,
) -> Response<Body> {
    let code = response
        .extensions()
        .get::<TranscodedCall>()
        .map_or(Code::Unknown, |call| call.code);
    response.extensions_mut().insert(TranscodedCall {
        route,
        grpc_path: Some(grpc_path.to_owned()),
        code,
    });
    response
}

/// An error the transcoder answers itself, before or instead of a call.
#[derive(Debug, Clone)]
pub struct TranscodeError {
    status: StatusCode,
    code: Code,
    message: String,
    allow: Option<String>,
}

impl TranscodeError {
    fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, Code::Internal, message)
    }
}

/// Which protocol a request speaks, for rendering its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Rest,
    Connect,
}

impl Transcoder {
    async fn handle<S>(
        &self,
        mut inner: S,
        request: Request<Body>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<Body>>,
    {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path();

        if parts.method == Method::GET && self.options.openapi_path.as_deref() == Some(path) {
            return Ok(bytes_response(
                StatusCode::OK,
                "application/json",
                self.openapi.clone(),
            ));
        }

        if parts.method == Method::POST
            && let Some(method) = self.methods.get(path)
        {
            let outcome = self.connect(&mut inner, method, &parts, body).await?;
            let response = outcome.unwrap_or_else(|e| self.error_response(Protocol::Connect, &e));
            return Ok(annotate(response, None, path));
        }

        let outcome = match self.routes.lookup(&parts.method, path) {
            routes::Lookup::Found(route, values) => {
                let outcome = self.rest(&mut inner, route, values, &parts, body).await?;
                let response = outcome.unwrap_or_else(|e| self.error_response(Protocol::Rest, &e));
                return Ok(annotate(
                    response,
                    Some(route.template.to_string()),
                    &route.grpc_path,
                ));
            }
            routes::Lookup::WrongMethod(allowed) => {
                let mut error = TranscodeError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Code::Unimplemented,
                    format!(
                        "{} is not allowed on {path}; use {}",
                        parts.method,
                        allowed.join(", ")
                    ),
                );
                error.allow = Some(allowed.join(", "));
                Err(error)
            }
            routes::Lookup::NotFound => Err(TranscodeError::new(
                StatusCode::NOT_FOUND,
                Code::NotFound,
                format!("no route for {} {path}", parts.method),
            )),
        };
        Ok(outcome.unwrap_or_else(|e| self.error_response(Protocol::Rest, &e)))
    }

    async fn rest<S>(
        &self,
        inner: &mut S,
        route: &routes::Route,
        values: Vec<String>,
        parts: &http::request::Parts,
        body: Body,
    ) -> Result<Result<Response<Body>, TranscodeError>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<Body>>,
    {
        let bytes = match self.read_body(&parts.headers, body).await {
            Ok(bytes) => bytes,
            Err(e) => return Ok(Err(e)),
        };
        let json = if bytes.is_empty() {
            None
        } else if matches!(route.body, routes::BodyBinding::None) {
            return Ok(Err(TranscodeError::invalid(format!(
                "{} {} takes no request body",
                parts.method, route.template
            ))));
        } else {
            let content_type = content_type(&parts.headers);
            if !(content_type.is_empty() || is_json(content_type)) {
                return Ok(Err(unsupported_media_type(content_type)));
            }
            match request::parse_json(&bytes) {
                Ok(value) => Some(value),
                Err(e) => return Ok(Err(e)),
            }
        };
        let message = match request::build_message(
            route,
            values,
            parts.uri.query(),
            json,
            &self.options.json,
        ) {
            Ok(message) => message,
            Err(e) => return Ok(Err(e)),
        };
        // tonic's server also enforces `grpc-timeout`, outside this layer, and
        // would answer a gRPC status in an HTTP 200. Ending 1 ms earlier lets
        // this layer's JSON 504 win: on the same timer tick the inner future
        // (this one) is polled first.
        let timeout = header_str(&parts.headers, "grpc-timeout")
            .and_then(grpc::parse_grpc_timeout)
            .map(|t| t.saturating_sub(Duration::from_millis(1)));
        let reply = grpc::call_unary(
            inner,
            &route.grpc_path,
            grpc::forwarded_metadata(&parts.headers),
            Bytes::from(message.encode_to_vec()),
            timeout,
        )
        .await?;
        Ok(Ok(self.rest_reply(route, reply)))
    }

    fn rest_reply(&self, route: &routes::Route, reply: grpc::GrpcReply) -> Response<Body> {
        let mut response = if reply.code == Code::Ok {
            let payload = reply.payload.clone().unwrap_or_default();
            match self.render_output(route, &payload) {
                Ok(json) => bytes_response(StatusCode::OK, "application/json", json),
                Err(e) => self.error_response(Protocol::Rest, &e),
            }
        } else {
            let body = errors::rest_error_body(
                &self.pool,
                reply.code,
                &reply.message,
                reply.details.as_deref(),
                &self.options.json,
            );
            let mut response = json_response(http_status(reply.code), &body);
            if reply.code == Code::Unauthenticated {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        };
        copy_metadata(response.headers_mut(), &reply.headers, "grpc-metadata-");
        copy_metadata(response.headers_mut(), &reply.trailers, "grpc-trailer-");
        with_code(response, reply.code)
    }

    fn render_output(
        &self,
        route: &routes::Route,
        payload: &[u8],
    ) -> Result<Bytes, TranscodeError> {
        let message = DynamicMessage::decode(route.grpc.output(), payload)
            .map_err(|e| TranscodeError::internal(format!("undecodable response: {e}")))?;
        let unencodable =
            |e: serde_json::Error| TranscodeError::internal(format!("unencodable response: {e}"));
        if route.response_body.is_none() {
            return self
                .options
                .json
                .to_json_bytes(&message, route.output_has_floats)
                .map(Bytes::from)
                .map_err(unencodable);
        }
        let mut json = self.options.json.to_json(&message).map_err(unencodable)?;
        if let Some(field) = &route.response_body {
            let key = if self.options.json.use_proto_names {
                field.name()
            } else {
                field.json_name()
            };
            json = json
                .get_mut(key)
                .map(serde_json::Value::take)
                .unwrap_or(serde_json::Value::Null);
        }
        serde_json::to_vec(&json)
            .map(Bytes::from)
            .map_err(|e| TranscodeError::internal(format!("unencodable response: {e}")))
    }

    async fn connect<S>(
        &self,
        inner: &mut S,
        method: &MethodDescriptor,
        parts: &http::request::Parts,
        body: Body,
    ) -> Result<Result<Response<Body>, TranscodeError>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<Body>>,
    {
        let content_type = content_type(&parts.headers).to_owned();
        let proto = content_type == "application/proto";
        if !proto && !is_json(&content_type) {
            return Ok(Err(unsupported_media_type(&content_type)));
        }
        if let Some(encoding) = header_str(&parts.headers, "content-encoding")
            && encoding != "identity"
        {
            return Ok(Err(TranscodeError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::Unimplemented,
                format!("content-encoding {encoding:?} is not supported; send identity"),
            )));
        }
        let bytes = match self.read_body(&parts.headers, body).await {
            Ok(bytes) => bytes,
            Err(e) => return Ok(Err(e)),
        };
        let message = if proto {
            match DynamicMessage::decode(method.input(), bytes.as_ref()) {
                Ok(_) => bytes,
                Err(e) => {
                    return Ok(Err(TranscodeError::invalid(format!(
                        "invalid request: {e}"
                    ))));
                }
            }
        } else {
            let body = if bytes.is_empty() {
                &b"{}"[..]
            } else {
                &bytes[..]
            };
            match request::decode_json(method.input(), body, &self.options.json) {
                Ok(message) => Bytes::from(message.encode_to_vec()),
                Err(e) => return Ok(Err(e)),
            }
        };
        let timeout = header_str(&parts.headers, "connect-timeout-ms")
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(Duration::from_millis);
        let mut metadata = grpc::forwarded_metadata(&parts.headers);
        for (name, value) in &parts.headers {
            let n = name.as_str();
            let protocol = n.starts_with("connect-")
                || n.starts_with("content-")
                || n.starts_with("accept")
                || matches!(
                    n,
                    "host" | "user-agent" | "connection" | "te" | "grpc-timeout"
                );
            if !protocol && !metadata.contains_key(name) {
                metadata.append(name.clone(), value.clone());
            }
        }
        let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
        let reply = grpc::call_unary(inner, &path, metadata, message, timeout).await?;

        let mut response = if reply.code == Code::Ok {
            let payload = reply.payload.clone().unwrap_or_default();
            if proto {
                bytes_response(StatusCode::OK, "application/proto", payload)
            } else {
                match DynamicMessage::decode(method.output(), payload.as_ref())
                    .map_err(|e| e.to_string())
                    .and_then(|m| self.options.json.to_json(&m).map_err(|e| e.to_string()))
                {
                    Ok(json) => json_response(StatusCode::OK, &json),
                    Err(e) => self.error_response(
                        Protocol::Connect,
                        &TranscodeError::internal(format!("unencodable response: {e}")),
                    ),
                }
            }
        } else {
            let body = errors::connect_error_body(
                &self.pool,
                reply.code,
                &reply.message,
                reply.details.as_deref(),
                &self.options.json,
            );
            json_response(http_status(reply.code), &body)
        };
        copy_metadata(response.headers_mut(), &reply.headers, "");
        copy_metadata(response.headers_mut(), &reply.trailers, "trailer-");
        Ok(Ok(with_code(response, reply.code)))
    }

    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, TranscodeError> {
        let limit = self.options.max_body_bytes;
        let too_large = || {
            TranscodeError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::ResourceExhausted,
                format!("the request body exceeds {limit} bytes"),
            )
        };
        if header_str(headers, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|len| len > limit)
        {
            return Err(too_large());
        }
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(e) => Err(TranscodeError::invalid(format!(
                "unreadable request body: {e}"
            ))),
        }
    }

    fn error_response(&self, protocol: Protocol, error: &TranscodeError) -> Response<Body> {
        let body = match protocol {
            Protocol::Rest => errors::rest_error_body(
                &self.pool,
                error.code,
                &error.message,
                None,
                &self.options.json,
            ),
            Protocol::Connect => errors::connect_error_body(
                &self.pool,
                error.code,
                &error.message,
                None,
                &self.options.json,
            ),
        };
        let mut response = json_response(error.status, &body);
        response.extensions_mut().insert(TranscodedCall {
            route: None,
            grpc_path: None,
            code: error.code,
        });
        if let Some(allow) = error
            .allow
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}

fn unsupported_media_type(content_type: &str) -> TranscodeError {
    TranscodeError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Code::InvalidArgument,
        format!("content type {content_type:?} is not supported; send application/json"),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_type(headers: &HeaderMap) -> &str {
    header_str(headers, "content-type").unwrap_or_default()
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

fn copy_metadata(target: &mut HeaderMap, source: &HeaderMap, prefix: &str) {
    for (name, value) in source {
        if let Ok(name) = http::HeaderName::from_bytes(format!("{prefix}{name}").as_bytes()) {
            target.append(name, value.clone());
        }
    }
}

fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes_response(status, "application/json", Bytes::from(bytes))
}
