//! [`Transcoder`]: everything decided at start (descriptors, routes, the
//! OpenAPI document), the dispatch of a request that is not gRPC to the
//! OpenAPI document, a Connect call or a REST route, and the JSON errors the
//! layer answers itself.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use prost::Message as _;
use prost_reflect::{DescriptorPool, MethodDescriptor};
use tonic::Code;
use tonic::body::Body;
use tower::Service;

use super::json::JsonOptions;
use super::routes::{self, RouteError, RouteTable};
use super::{errors, openapi};

/// `google/rpc/status.proto` and `error_details.proto`, merged into every
/// pool so error details render as JSON whatever the service's own protos
/// import.
const GOOGLE_RPC_DESCRIPTORS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));

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
    /// Response metadata a REST answer carries under its own name, as well
    /// as `Grpc-Metadata-<name>` (for headers meant for any HTTP client).
    pub plain_headers: Vec<http::HeaderName>,
    /// The `domain` of the `google.rpc.ErrorInfo` added to errors that carry
    /// none: the layer's own refusals and statuses decided by the server
    /// framework rather than by a handler.
    pub error_domain: String,
    /// JSON Schema keywords the OpenAPI document adds to a field's schema,
    /// by the field's full name (`pkg.Message.field`): limits a deployment
    /// configures, such as a maximum the contract leaves open.
    pub schema_limits: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// REST statuses that differ from the usual table (grpc-gateway's),
    /// such as FAILED_PRECONDITION as 409 Conflict. Connect keeps its own
    /// table, as its specification says.
    pub rest_status_overrides: Vec<(Code, StatusCode)>,
    /// The field of a streamed message sent as its Server-Sent Event `id`
    /// (when the message has a field of that name).
    pub event_id_field: Option<String>,
    /// The request field a streaming call's `Last-Event-ID` header sets
    /// (when the request has a field of that name and the query does not
    /// set it).
    pub resume_field: Option<String>,
    /// How long a Server-Sent Events stream may stay quiet before a comment
    /// line (`: keep-alive`) is sent, so that proxies and idle timeouts do
    /// not take a quiet stream for a dead one; `None`: never.
    pub sse_keepalive: Option<std::time::Duration>,
}

impl TranscodeOptions {
    /// The REST status for a gRPC code: the override, else the usual table.
    pub fn rest_status(&self, code: Code) -> StatusCode {
        self.rest_status_overrides
            .iter()
            .find(|(c, _)| *c == code)
            .map_or_else(|| errors::http_status(code), |(_, status)| *status)
    }
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        Self {
            json: JsonOptions::default(),
            max_body_bytes: 1024 * 1024,
            openapi_path: Some("/openapi.json".to_owned()),
            title: "API".to_owned(),
            version: "1.0.0".to_owned(),
            plain_headers: Vec::new(),
            error_domain: "transcode".to_owned(),
            schema_limits: BTreeMap::new(),
            rest_status_overrides: Vec::new(),
            event_id_field: None,
            resume_field: None,
            sse_keepalive: Some(std::time::Duration::from_secs(15)),
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
    /// A `buf.validate` rule cannot be enforced (and so is not published).
    #[error("invalid buf.validate rule: {0}")]
    Rules(#[from] crate::validate::RuleError),
}

/// Everything decided at start: descriptors, routes, the OpenAPI document.
#[derive(Debug)]
pub struct Transcoder {
    /// The descriptors, with google.rpc for error details.
    pub(super) pool: DescriptorPool,
    /// REST routes from the HttpRules.
    routes: RouteTable,
    /// Unary methods by gRPC path, for Connect.
    methods: HashMap<String, MethodDescriptor>,
    /// By gRPC path, the unary methods whose reply a REST call writes
    /// straight from its protobuf bytes (see [`super::wire_json`]).
    pub(super) reply_json: HashMap<String, super::wire_json::WireJson>,
    /// The OpenAPI document, rendered once.
    openapi: Bytes,
    /// The settings.
    pub(super) options: TranscodeOptions,
}

impl Transcoder {
    /// Reads the routes of every service in `file_descriptor_set` (encoded,
    /// with imports). Conflicting or malformed rules are an error naming the
    /// methods.
    pub fn new(file_descriptor_set: &[u8], options: TranscodeOptions) -> Result<Self, BuildError> {
        Self::from_pool(DescriptorPool::decode(file_descriptor_set)?, options)
    }

    /// [`Transcoder::new`] over descriptors already decoded, so that a
    /// process that decodes them for other uses keeps one copy (a pool
    /// without google.rpc gets its own copy with it added).
    pub fn from_pool(
        mut pool: DescriptorPool,
        options: TranscodeOptions,
    ) -> Result<Self, BuildError> {
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
        let methods: HashMap<String, MethodDescriptor> = pool
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
        let reply_json = methods
            .iter()
            .filter(|(_, method)| !super::has_floats(&method.output(), &mut Vec::new()))
            .filter_map(|(path, method)| {
                super::wire_json::WireJson::new(&method.output(), &options.json)
                    .map(|plan| (path.clone(), plan))
            })
            .collect();
        let rules = crate::validate::Validator::new(&pool)?;
        let openapi = Bytes::from(openapi::document(&routes, &rules, &options).to_string());
        Ok(Self {
            pool,
            routes,
            methods,
            reply_json,
            openapi,
            options,
        })
    }

    /// The route table, for inspection.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
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
pub(super) fn with_code(mut response: Response<Body>, code: Code) -> Response<Body> {
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
    /// The HTTP status.
    status: StatusCode,
    /// The gRPC code it stands for.
    code: Code,
    /// What went wrong.
    message: String,
    /// The `Allow` header of a 405.
    allow: Option<String>,
    /// The request field refused, as a path (`items[0].quantity`), and why
    /// (an upper-snake reason), when one is: answered as a
    /// `google.rpc.BadRequest` field violation too.
    field: Option<(String, &'static str)>,
}

impl TranscodeError {
    pub(super) fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            allow: None,
            field: None,
        }
    }

    /// The 400 of `field` (a path in the request), refused for `reason`:
    /// `INVALID_VALUE` (its type cannot hold what was sent),
    /// `UNKNOWN_FIELD`, `FIELD_IN_BODY` (a query parameter for a field the
    /// body carries) or `CONTRADICTS_PATH`.
    pub(super) fn invalid_field(
        field: impl Into<String>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            field: Some((field.into(), reason)),
            ..Self::invalid(message)
        }
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, message)
    }

    pub(super) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, Code::Internal, message)
    }

    /// The ErrorInfo `reason` of this refusal, from what was refused.
    fn reason(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "INVALID_REQUEST",
            StatusCode::NOT_FOUND => "NO_ROUTE",
            StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
            StatusCode::PAYLOAD_TOO_LARGE => "BODY_TOO_LARGE",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
            _ => errors::code_name(self.code),
        }
    }
}

/// Which protocol a request speaks, for rendering its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// REST/JSON through the HttpRules.
    Rest,
    /// Connect unary.
    Connect,
}

impl Transcoder {
    /// Answers a request that is not gRPC, calling `inner` for a Connect or
    /// REST call.
    pub(super) async fn handle<S>(
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

    pub(super) async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Bytes, TranscodeError> {
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
            // The server's account of a body that did not arrive whole (the
            // client left mid-request: CANCELLED) keeps its code.
            Err(e) => match e.downcast::<tonic::Status>() {
                Ok(status) => Err(TranscodeError::new(
                    errors::http_status(status.code()),
                    status.code(),
                    status.message().to_owned(),
                )),
                Err(e) => Err(TranscodeError::invalid(format!(
                    "unreadable request body: {e}"
                ))),
            },
        }
    }

    /// The ErrorInfo reason `reason` in this transcoder's domain.
    pub(super) fn reason<'a>(&'a self, reason: &'a str) -> errors::Reason<'a> {
        errors::Reason {
            reason,
            domain: &self.options.error_domain,
        }
    }

    /// The JSON error body of `protocol` for a status whose details (an
    /// encoded `google.rpc.Status`) are `details`.
    pub(super) fn error_body(
        &self,
        protocol: Protocol,
        code: Code,
        message: &str,
        details: &[u8],
    ) -> serde_json::Value {
        match protocol {
            Protocol::Rest => errors::rest_error_body(
                &self.pool,
                code,
                message,
                Some(details),
                &self.options.json,
            ),
            Protocol::Connect => errors::connect_error_body(
                &self.pool,
                code,
                message,
                Some(details),
                &self.options.json,
            ),
        }
    }

    /// The error body of a call's failed reply, with an ErrorInfo named
    /// after its code when the status carries none.
    pub(super) fn reply_error_body(
        &self,
        protocol: Protocol,
        code: Code,
        message: &str,
        details: Option<&[u8]>,
    ) -> serde_json::Value {
        let details = errors::with_error_info(
            code,
            message,
            details,
            self.reason(errors::code_name(code)),
            &[],
        );
        self.error_body(protocol, code, message, &details)
    }

    pub(super) fn error_response(
        &self,
        protocol: Protocol,
        error: &TranscodeError,
    ) -> Response<Body> {
        let mut metadata = Vec::new();
        if let Some(allow) = &error.allow {
            metadata.push(("allow", allow.clone()));
        }
        if error.status == StatusCode::PAYLOAD_TOO_LARGE {
            metadata.push(("limit", self.options.max_body_bytes.to_string()));
        }
        let mut details = errors::with_error_info(
            error.code,
            &error.message,
            None,
            self.reason(error.reason()),
            &metadata,
        );
        if let Some((field, reason)) = &error.field {
            details = errors::with_field_violation(&details, field, reason, &error.message);
        }
        let body = self.error_body(protocol, error.code, &error.message, &details);
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

pub(super) fn unsupported_media_type(content_type: &str) -> TranscodeError {
    TranscodeError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Code::InvalidArgument,
        format!("content type {content_type:?} is not supported; send application/json"),
    )
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn content_type(headers: &HeaderMap) -> &str {
    header_str(headers, "content-type").unwrap_or_default()
}

pub(super) fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

pub(super) fn copy_metadata(target: &mut HeaderMap, source: &HeaderMap, prefix: &str) {
    for (name, value) in source {
        if let Ok(name) = http::HeaderName::from_bytes(format!("{prefix}{name}").as_bytes()) {
            target.append(name, value.clone());
        }
    }
}

pub(super) fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(super) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes_response(status, "application/json", Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool that already has google.rpc is kept, not copied: the service
    /// shares its one decoded pool with the contract's rules this way.
    #[test]
    fn a_pool_with_google_rpc_is_shared_not_copied() {
        let pool = crate::pb::descriptor_pool().expect("descriptors");
        assert!(pool.get_message_by_name("google.rpc.Status").is_some());
        let transcoder =
            Transcoder::from_pool(pool.clone(), TranscodeOptions::default()).expect("transcoder");
        assert!(transcoder.pool == *pool, "the transcoder copied the pool");
    }
}
