//! Errors on the HTTP side: the gRPC-code-to-HTTP-status table shared by
//! grpc-gateway, Envoy and vanguard, the REST error body
//! `{"code", "message", "details"}`, and the Connect error body.

use base64::Engine as _;
use http::StatusCode;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage as _, Value as ReflectValue};
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::pb;

use super::JsonOptions;

/// The HTTP status for a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The Connect protocol's name of a gRPC code.
pub fn connect_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The `google.rpc.ErrorInfo` type URL.
const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";
/// The `google.rpc.BadRequest` type URL.
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

/// Why an error happened, for the `google.rpc.ErrorInfo` every error body
/// carries: the `reason` when the error itself names none, and the
/// `domain` that issues it.
#[derive(Debug, Clone, Copy)]
pub struct Reason<'a> {
    /// UPPER_SNAKE_CASE.
    pub reason: &'a str,
    /// The service or component that decided the error.
    pub domain: &'a str,
}

/// The canonical name of a gRPC code (`DEADLINE_EXCEEDED`): the reason of
/// an error the layer or tonic decided, which names none.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `status_bytes` (an encoded `google.rpc.Status`, possibly absent) with an
/// ErrorInfo of `reason` added unless it holds one: every error a client
/// receives carries one, whoever decided it.
pub fn with_error_info(
    code: Code,
    message: &str,
    status_bytes: Option<&[u8]>,
    reason: Reason<'_>,
    metadata: &[(&str, String)],
) -> Vec<u8> {
    let mut status = status_bytes
        .and_then(|bytes| pb::Status::decode(bytes).ok())
        .unwrap_or_else(|| pb::Status {
            code: code as i32,
            message: message.to_owned(),
            details: Vec::new(),
        });
    // The ErrorInfo comes first, wherever the status put it, so that a
    // client finds the reason at `details[0]`.
    if let Some(at) = status
        .details
        .iter()
        .position(|any| any.type_url == ERROR_INFO_TYPE)
    {
        status.details[..=at].rotate_right(1);
    } else {
        let info = pb::ErrorInfo {
            reason: reason.reason.to_owned(),
            domain: reason.domain.to_owned(),
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        };
        status.details.insert(
            0,
            prost_types::Any {
                type_url: ERROR_INFO_TYPE.to_owned(),
                value: info.encode_to_vec(),
            },
        );
    }
    status.encode_to_vec()
}

/// `status_bytes` (an encoded `google.rpc.Status`) with a
/// `google.rpc.BadRequest` naming `field` and the `reason` it was refused
/// added after its other details: what a client shows beside the input it
/// refused.
pub fn with_field_violation(
    status_bytes: &[u8],
    field: &str,
    reason: &str,
    description: &str,
) -> Vec<u8> {
    let Ok(mut status) = pb::Status::decode(status_bytes) else {
        return status_bytes.to_vec();
    };
    let bad_request = pb::BadRequest {
        field_violations: vec![pb::bad_request::FieldViolation {
            field: field.to_owned(),
            description: description.to_owned(),
            reason: reason.to_owned(),
            localized_message: None,
        }],
    };
    status.details.push(prost_types::Any {
        type_url: BAD_REQUEST_TYPE.to_owned(),
        value: bad_request.encode_to_vec(),
    });
    status.encode_to_vec()
}

/// The `details` of a `google.rpc.Status` (from `grpc-status-details-bin`).
fn status_details(pool: &DescriptorPool, status_bytes: &[u8]) -> Vec<DynamicMessage> {
    let Some(descriptor) = pool.get_message_by_name("google.rpc.Status") else {
        return Vec::new();
    };
    let Ok(status) = DynamicMessage::decode(descriptor, status_bytes) else {
        return Vec::new();
    };
    match status.get_field_by_name("details").as_deref() {
        Some(ReflectValue::List(items)) => items
            .iter()
            .filter_map(|item| item.as_message().cloned())
            .collect(),
        _ => Vec::new(),
    }
}

/// The REST error body: `{"code": <int>, "message": "...", "details": [...]}`,
/// each detail an `Any` in JSON (`{"@type": "type.googleapis.com/...", ...}`).
pub fn rest_error_body(
    pool: &DescriptorPool,
    code: Code,
    message: &str,
    details: Option<&[u8]>,
    options: &JsonOptions,
) -> Value {
    let details: Vec<Value> = details
        .map(|bytes| status_details(pool, bytes))
        .unwrap_or_default()
        .into_iter()
        .map(|any| {
            options
                .to_json(&any)
                .unwrap_or_else(|_| json!({ "@type": any_type_url(&any) }))
        })
        .collect();
    json!({ "code": code as i32, "message": message, "details": details })
}

/// The Connect error body: `{"code": "not_found", "message": "...",
/// "details": [{"type", "value", "debug"}]}`.
pub fn connect_error_body(
    pool: &DescriptorPool,
    code: Code,
    message: &str,
    details: Option<&[u8]>,
    options: &JsonOptions,
) -> Value {
    let details: Vec<Value> = details
        .map(|bytes| status_details(pool, bytes))
        .unwrap_or_default()
        .into_iter()
        .map(|any| {
            let type_url = any_type_url(&any);
            let value = match any.get_field_by_name("value").as_deref() {
                Some(ReflectValue::Bytes(bytes)) => bytes.clone(),
                _ => Default::default(),
            };
            let type_name = type_url.rsplit('/').next().unwrap_or_default().to_owned();
            let debug = pool
                .get_message_by_name(&type_name)
                .and_then(|d| DynamicMessage::decode(d, value.as_ref()).ok())
                .and_then(|m| options.to_json(&m).ok());
            let mut detail = json!({
                "type": type_name,
                "value": base64::engine::general_purpose::STANDARD_NO_PAD.encode(&value),
            });
            if let Some(debug) = debug {
                detail["debug"] = debug;
            }
            detail
        })
        .collect();
    let mut body = json!({ "code": connect_code(code), "details": details });
    if !message.is_empty() {
        body["message"] = Value::String(message.to_owned());
    }
    body
}

fn any_type_url(any: &DynamicMessage) -> String {
    debug_assert_eq!(any.descriptor().full_name(), "google.protobuf.Any");
    match any.get_field_by_name("type_url").as_deref() {
        Some(ReflectValue::String(url)) => url.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_matches_grpc_gateway() {
        let table = [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
        ];
        for (code, status) in table {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }
}
