//! REST dispatch: a request matched to an HttpRule becomes a gRPC call, and
//! its reply JSON.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use prost::Message as _;
use prost_reflect::DynamicMessage;
use tonic::Code;
use tonic::body::Body;
use tower::Service;

use super::transcoder::{
    Protocol, TranscodeError, Transcoder, bytes_response, content_type, copy_metadata, header_str,
    is_json, json_response, unsupported_media_type, with_code,
};
use super::{grpc, request, routes, stream};

impl Transcoder {
    /// Calls the route's method with the message built from the path,
    /// query and body, and renders its reply.
    pub(super) async fn rest<S>(
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
        let streaming = route.grpc.is_server_streaming();
        let query = if streaming {
            stream::resumed_query(
                parts.uri.query(),
                &parts.headers,
                self.options.resume_field.as_deref(),
            )
        } else {
            parts.uri.query().map(str::to_owned)
        };
        let message =
            match request::build_message(route, values, query.as_deref(), json, &self.options.json)
            {
                Ok(message) => message,
                Err(e) => return Ok(Err(e)),
            };
        if streaming {
            let message = Bytes::from(message.encode_to_vec());
            return Ok(Ok(self.rest_stream(inner, route, parts, message).await?));
        }
        // A server around this layer may also enforce `grpc-timeout` (tonic's
        // does) and would answer a gRPC status in an HTTP 200. Ending 1 ms earlier lets
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

    pub(super) fn rest_reply(
        &self,
        route: &routes::Route,
        reply: grpc::GrpcReply,
    ) -> Response<Body> {
        let mut response = if reply.code == Code::Ok {
            let payload = reply.payload.clone().unwrap_or_default();
            match self.render_output(route, &payload) {
                Ok(json) => bytes_response(StatusCode::OK, "application/json", json),
                Err(e) => self.error_response(Protocol::Rest, &e),
            }
        } else {
            let body = self.reply_error_body(
                Protocol::Rest,
                reply.code,
                &reply.message,
                reply.details.as_deref(),
            );
            let mut response = json_response(self.options.rest_status(reply.code), &body);
            if reply.code == Code::Unauthenticated
                && !reply.headers.contains_key(header::WWW_AUTHENTICATE)
            {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        };
        copy_metadata(response.headers_mut(), &reply.headers, "grpc-metadata-");
        copy_metadata(response.headers_mut(), &reply.trailers, "grpc-trailer-");
        for name in &self.options.plain_headers {
            for value in reply.headers.get_all(name) {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        with_code(response, reply.code)
    }

    fn render_output(
        &self,
        route: &routes::Route,
        payload: &[u8],
    ) -> Result<Bytes, TranscodeError> {
        if route.response_body.is_none()
            && let Some(json) = self
                .reply_json
                .get(&route.grpc_path)
                .and_then(|plan| plan.write(payload))
        {
            return Ok(Bytes::from(json));
        }
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
}
