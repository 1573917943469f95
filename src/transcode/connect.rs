//! Connect unary dispatch: `POST /package.Service/Method` with a JSON or
//! binary protobuf body becomes a gRPC call, and its reply the Connect
//! response.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use prost::Message as _;
use prost_reflect::{DynamicMessage, MethodDescriptor};
use tonic::Code;
use tonic::body::Body;
use tower::Service;

use super::transcoder::{
    Protocol, TranscodeError, Transcoder, bytes_response, content_type, copy_metadata, header_str,
    is_json, json_response, unsupported_media_type, with_code,
};
use super::{grpc, http_status, request};

impl Transcoder {
    /// Calls `method` with the Connect request's message and renders its
    /// reply.
    pub(super) async fn connect<S>(
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
            let body = self.reply_error_body(
                Protocol::Connect,
                reply.code,
                &reply.message,
                reply.details.as_deref(),
            );
            json_response(http_status(reply.code), &body)
        };
        copy_metadata(response.headers_mut(), &reply.headers, "");
        copy_metadata(response.headers_mut(), &reply.trailers, "trailer-");
        Ok(Ok(with_code(response, reply.code)))
    }
}
