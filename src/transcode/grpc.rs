//! Calling the inner gRPC service in-process: one framed message in, the
//! collected reply (message, status, metadata) out. No network hop; the
//! request runs through the same router, interceptors and handlers as a
//! gRPC call from the wire.

use std::time::Duration;

use base64::Engine as _;
use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Version, header};
use http_body_util::{BodyExt as _, Full};
use tonic::Code;
use tonic::body::Body;
use tower::{Service, ServiceExt as _};

use super::template::percent_decode;

/// What a unary gRPC call answered.
#[derive(Debug)]
pub struct GrpcReply {
    /// The status code.
    pub code: Code,
    /// The status message (decoded).
    pub message: String,
    /// `grpc-status-details-bin`, decoded from base64: a `google.rpc.Status`.
    pub details: Option<Bytes>,
    /// The response message, on success.
    pub payload: Option<Bytes>,
    /// Response metadata (headers), without the protocol's own.
    pub headers: HeaderMap,
    /// Trailing metadata, without the status entries.
    pub trailers: HeaderMap,
}

impl GrpcReply {
    /// A reply made here rather than by the service.
    pub fn status(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            payload: None,
            headers: HeaderMap::new(),
            trailers: HeaderMap::new(),
        }
    }
}

/// Headers of an incoming HTTP request that become gRPC metadata as they are.
const FORWARDED: [&str; 6] = [
    "authorization",
    "traceparent",
    "tracestate",
    "baggage",
    "x-request-id",
    "grpc-timeout",
];

/// The gRPC metadata of an HTTP request: the forwarded headers, plus every
/// `Grpc-Metadata-<k>` header as `<k>`.
pub fn forwarded_metadata(headers: &HeaderMap) -> HeaderMap {
    let mut metadata = HeaderMap::new();
    for (name, value) in headers {
        let name_str = name.as_str();
        if FORWARDED.contains(&name_str) {
            metadata.append(name.clone(), value.clone());
        } else if let Some(key) = name_str.strip_prefix("grpc-metadata-")
            && let Ok(key) = HeaderName::from_bytes(key.as_bytes())
        {
            metadata.append(key, value.clone());
        }
    }
    metadata
}

/// Parses a `grpc-timeout` value (`<digits><unit>`, unit one of H M S m u n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Calls `inner` with one message and collects the reply. `timeout` bounds
/// the whole call (DEADLINE_EXCEEDED past it).
pub async fn call_unary<S>(
    inner: &mut S,
    grpc_path: &str,
    metadata: HeaderMap,
    message: Bytes,
    timeout: Option<Duration>,
) -> Result<GrpcReply, S::Error>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    let request = match grpc_request(grpc_path, metadata, message, timeout) {
        Ok(request) => request,
        Err(reason) => return Ok(GrpcReply::status(Code::Internal, reason)),
    };

    let call = async {
        let response = inner.ready().await?.call(request).await?;
        Ok(collect(response).await)
    };
    match timeout {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => Ok(GrpcReply::status(
                Code::DeadlineExceeded,
                "the deadline passed before the call finished",
            )),
        },
        None => call.await,
    }
}

/// Calls `inner` with one message for a server-streaming method: its
/// response, whose body the caller reads, or the reply made here when the
/// request could not be made.
pub async fn call_streaming<S>(
    inner: &mut S,
    grpc_path: &str,
    metadata: HeaderMap,
    message: Bytes,
) -> Result<Result<Response<Body>, Box<GrpcReply>>, S::Error>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    let request = match grpc_request(grpc_path, metadata, message, None) {
        Ok(request) => request,
        Err(reason) => return Ok(Err(Box::new(GrpcReply::status(Code::Internal, reason)))),
    };
    Ok(Ok(inner.ready().await?.call(request).await?))
}

/// The gRPC request of one message to `grpc_path`.
fn grpc_request(
    grpc_path: &str,
    metadata: HeaderMap,
    message: Bytes,
    timeout: Option<Duration>,
) -> Result<Request<Body>, &'static str> {
    let mut frame = BytesMut::with_capacity(message.len() + 5);
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    frame.put_slice(&message);

    let mut request = Request::new(Body::new(Full::new(frame.freeze())));
    *request.method_mut() = Method::POST;
    *request.version_mut() = Version::HTTP_2;
    *request.uri_mut() = grpc_path.parse().map_err(|_| "invalid gRPC path")?;
    let headers = request.headers_mut();
    *headers = metadata;
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    // The router sees the caller's deadline as any gRPC call carries it.
    if let Some(limit) = timeout
        && let Ok(value) = HeaderValue::from_str(&format!("{}m", limit.as_millis().max(1)))
    {
        headers.insert("grpc-timeout", value);
    }
    Ok(request)
}

/// The status of a reply whose headers and trailers are these (the status
/// is in the trailers, or in the headers of a trailers-only reply), with
/// its metadata; no payload.
pub fn reply_of(headers: &HeaderMap, trailers: &HeaderMap) -> GrpcReply {
    let status_source = if trailers.contains_key("grpc-status") {
        trailers
    } else {
        headers
    };
    let code = status_source
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
        .unwrap_or(Code::Unknown);
    let message = status_source
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|v| percent_decode(v, false).unwrap_or_else(|| v.to_owned()))
        .unwrap_or_default();
    let details = status_source
        .get("grpc-status-details-bin")
        .and_then(|v| decode_bin(v.as_bytes()));
    GrpcReply {
        code,
        message,
        details,
        payload: None,
        headers: strip_protocol(headers),
        trailers: strip_protocol(trailers),
    }
}

async fn collect(response: Response<Body>) -> GrpcReply {
    let (parts, body) = response.into_parts();
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(status) => return GrpcReply::status(status.code(), status.message()),
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    let mut reply = reply_of(&parts.headers, &trailers);
    if reply.code == Code::Ok {
        match unframe(&data) {
            Some(payload) => reply.payload = Some(payload),
            None => {
                return GrpcReply::status(Code::Internal, "the service sent a malformed message");
            }
        }
    }
    reply
}

/// The one message of a unary response body (an empty body is an empty message).
fn unframe(data: &Bytes) -> Option<Bytes> {
    if data.is_empty() {
        return Some(Bytes::new());
    }
    let (&flag, rest) = data.split_first()?;
    if flag != 0 || rest.len() < 4 {
        return None; // Compressed or truncated: we never ask for compression.
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    (rest.len() >= 4 + len).then(|| data.slice(5..5 + len))
}

/// Decodes a `-bin` metadata value (base64, padded or not).
pub fn decode_bin(value: &[u8]) -> Option<Bytes> {
    let trimmed: Vec<u8> = value.iter().copied().filter(|b| *b != b'=').collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .ok()
        .map(Bytes::from)
}

pub fn strip_protocol(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        let protocol = n.starts_with("grpc-")
            || n.starts_with("access-control-")
            || matches!(
                n,
                "content-type" | "content-length" | "te" | "trailer" | "date" | "vary"
            );
        if !protocol {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_every_unit() {
        let cases = [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("3S", Some(Duration::from_secs(3))),
            ("250m", Some(Duration::from_millis(250))),
            ("7u", Some(Duration::from_micros(7))),
            ("9n", Some(Duration::from_nanos(9))),
            ("", None),
            ("S", None),
            ("10x", None),
            ("123456789S", None),
            ("+5S", None),
            ("5s", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_grpc_timeout(text), expected, "{text:?}");
        }
    }

    #[test]
    fn metadata_forwarding_keeps_known_headers_and_unprefixes_grpc_metadata() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer t"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("x-request-id", "r-1"),
            ("grpc-metadata-tenant", "acme"),
            ("cookie", "secret"),
            ("user-agent", "curl"),
        ] {
            headers.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let metadata = forwarded_metadata(&headers);
        assert_eq!(metadata["authorization"], "Bearer t");
        assert_eq!(metadata["x-request-id"], "r-1");
        assert_eq!(metadata["tenant"], "acme");
        assert!(metadata.contains_key("traceparent"));
        assert!(!metadata.contains_key("cookie"));
        assert!(!metadata.contains_key("user-agent"));
    }

    #[test]
    fn unframing_rejects_compressed_and_truncated_messages() {
        assert_eq!(
            unframe(&Bytes::from_static(&[0, 0, 0, 0, 2, 8, 1])),
            Some(Bytes::from_static(&[8, 1]))
        );
        assert_eq!(unframe(&Bytes::new()), Some(Bytes::new()));
        assert_eq!(unframe(&Bytes::from_static(&[1, 0, 0, 0, 1, 8])), None);
        assert_eq!(unframe(&Bytes::from_static(&[0, 0, 0, 0, 5, 8])), None);
    }
}
