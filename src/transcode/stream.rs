//! Server streaming over REST: the messages of a server-streaming method as
//! Server-Sent Events (`Accept: text/event-stream`) or as newline-delimited
//! JSON (anything else), written as the service sends them.
//!
//! - SSE: one event per message, `data:` the message's JSON; its `id:` the
//!   value of [`TranscodeOptions::event_id_field`] when the message has that
//!   field. A failure after the stream started is a last event named
//!   `error` whose data is the usual `{"code","message","details"}`. A
//!   stream quiet for [`TranscodeOptions::sse_keepalive`] gets a comment
//!   line, which clients ignore.
//! - NDJSON (grpc-gateway's shape): one line per message,
//!   `{"result": <message>}`, and a last line `{"error": {...}}` for a
//!   failure after the stream started. NDJSON has no comment line: a quiet
//!   NDJSON stream sends nothing, and an idle timeout may close it.
//!
//! A failure before the first message (a refused request) is answered as
//! any REST error: its HTTP status and the JSON error body. A client that
//! resumes with `Last-Event-ID` has it set as the request field
//! [`TranscodeOptions::resume_field`] (unless the query sets it).
//!
//! [`TranscodeOptions::event_id_field`]: super::TranscodeOptions::event_id_field
//! [`TranscodeOptions::resume_field`]: super::TranscodeOptions::resume_field
//! [`TranscodeOptions::sse_keepalive`]: super::TranscodeOptions::sse_keepalive

use bytes::{Buf as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt as _, StreamBody};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use tonic::Code;
use tonic::body::Body;
use tower::Service;

use super::grpc::{self, GrpcReply};
use super::json::JsonOptions;
use super::transcoder::{Transcoder, header_str, with_code};
use super::{errors, routes};

/// How a stream is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `text/event-stream`.
    Sse,
    /// `application/x-ndjson`.
    Ndjson,
}

impl Format {
    /// The format the request's `Accept` header asks for.
    pub(super) fn accepted(headers: &HeaderMap) -> Self {
        let accept = header_str(headers, "accept").unwrap_or_default();
        let sse = accept.split(',').any(|range| {
            range
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("text/event-stream")
        });
        if sse { Self::Sse } else { Self::Ndjson }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Sse => "text/event-stream",
            Self::Ndjson => "application/x-ndjson",
        }
    }
}

/// The query of a streaming REST call, with `Last-Event-ID` as the resume
/// field when the query does not set that field itself.
pub(super) fn resumed_query(
    query: Option<&str>,
    headers: &HeaderMap,
    resume_field: Option<&str>,
) -> Option<String> {
    let (Some(field), Some(last)) = (resume_field, header_str(headers, "last-event-id")) else {
        return query.map(str::to_owned);
    };
    let already = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some(field))
    });
    if already || last.is_empty() {
        return query.map(str::to_owned);
    }
    let encoded: String = last
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Some(match query {
        Some(q) if !q.is_empty() => format!("{q}&{field}={encoded}"),
        _ => format!("{field}={encoded}"),
    })
}

/// What the stream's writer needs, owned (the stream outlives the call).
struct Writer {
    format: Format,
    output: MessageDescriptor,
    json: JsonOptions,
    pool: DescriptorPool,
    /// The JSON key of the event id field, if the output message has it.
    id_key: Option<String>,
    domain: String,
}

impl Writer {
    /// One message, written.
    fn message(&self, payload: &[u8]) -> Result<Bytes, String> {
        let message = DynamicMessage::decode(self.output.clone(), payload)
            .map_err(|e| format!("undecodable message: {e}"))?;
        let json = self
            .json
            .to_json(&message)
            .map_err(|e| format!("unencodable message: {e}"))?;
        Ok(match self.format {
            Format::Sse => {
                let mut event = String::new();
                if let Some(id) = self.id_key.as_deref().and_then(|key| json.get(key)) {
                    let id = match id {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    // An id may not hold a line break (nor does a number).
                    if !id.contains(['\n', '\r']) {
                        event.push_str("id: ");
                        event.push_str(&id);
                        event.push('\n');
                    }
                }
                event.push_str("data: ");
                event.push_str(&json.to_string());
                event.push_str("\n\n");
                Bytes::from(event)
            }
            Format::Ndjson => {
                let mut line = serde_json::json!({ "result": json }).to_string();
                line.push('\n');
                Bytes::from(line)
            }
        })
    }

    /// The failure that ended the stream, written.
    fn error(&self, code: Code, message: &str, details: Option<&[u8]>) -> Bytes {
        let details = errors::with_error_info(
            code,
            message,
            details,
            errors::Reason {
                reason: errors::code_name(code),
                domain: &self.domain,
            },
            &[],
        );
        let body = errors::rest_error_body(&self.pool, code, message, Some(&details), &self.json);
        Bytes::from(match self.format {
            Format::Sse => format!("event: error\ndata: {body}\n\n"),
            Format::Ndjson => format!("{}\n", serde_json::json!({ "error": body })),
        })
    }
}

/// The gRPC messages of a response body, one at a time, then its status.
struct Messages {
    body: Body,
    buffer: BytesMut,
    headers: HeaderMap,
}

/// What the next read of a response body gave.
enum Next {
    /// A message.
    Message(Bytes),
    /// The end, with its status.
    End(Box<GrpcReply>),
}

impl Messages {
    async fn next(&mut self) -> Next {
        loop {
            if self.buffer.len() >= 5 {
                let compressed = self.buffer[0] != 0;
                let len = u32::from_be_bytes([
                    self.buffer[1],
                    self.buffer[2],
                    self.buffer[3],
                    self.buffer[4],
                ]) as usize;
                if compressed {
                    return Next::End(Box::new(GrpcReply::status(
                        Code::Internal,
                        "the service sent a compressed message",
                    )));
                }
                if self.buffer.len() >= 5 + len {
                    self.buffer.advance(5);
                    return Next::Message(self.buffer.split_to(len).freeze());
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        let trailers = frame.into_trailers().unwrap_or_default();
                        return Next::End(Box::new(grpc::reply_of(&self.headers, &trailers)));
                    }
                },
                Some(Err(status)) => {
                    return Next::End(Box::new(GrpcReply::status(status.code(), status.message())));
                }
                None => {
                    return Next::End(Box::new(grpc::reply_of(&self.headers, &HeaderMap::new())));
                }
            }
        }
    }
}

impl Transcoder {
    /// Calls a server-streaming route's method with `message` and answers
    /// its messages as they come, in `format`.
    pub(super) async fn rest_stream<S>(
        &self,
        inner: &mut S,
        route: &routes::Route,
        parts: &http::request::Parts,
        message: Bytes,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<Body>>,
    {
        let format = Format::accepted(&parts.headers);
        let response = match grpc::call_streaming(
            inner,
            &route.grpc_path,
            grpc::forwarded_metadata(&parts.headers),
            message,
        )
        .await?
        {
            Ok(response) => response,
            Err(reply) => return Ok(self.rest_reply(route, *reply)),
        };
        let (head, body) = response.into_parts();
        // A refusal before the first message is a trailers-only reply: the
        // status is in the headers. Answer it as any REST error.
        if head.headers.contains_key("grpc-status") {
            let reply = grpc::reply_of(&head.headers, &HeaderMap::new());
            if reply.code != Code::Ok {
                return Ok(self.rest_reply(route, reply));
            }
        }
        let output = route.grpc.output();
        let id_key = self
            .options
            .event_id_field
            .as_deref()
            .and_then(|name| output.get_field_by_name(name))
            .map(|field| {
                if self.options.json.use_proto_names {
                    field.name().to_owned()
                } else {
                    field.json_name().to_owned()
                }
            });
        let writer = Writer {
            format,
            output,
            json: self.options.json.clone(),
            pool: self.pool.clone(),
            id_key,
            domain: self.options.error_domain.clone(),
        };
        let messages = Messages {
            body,
            buffer: BytesMut::new(),
            headers: head.headers.clone(),
        };
        let keepalive = match format {
            Format::Sse => self.options.sse_keepalive,
            Format::Ndjson => None,
        };
        let chunks =
            futures_util::stream::unfold(Some((messages, writer)), move |state| async move {
                let (mut messages, writer) = state?;
                let next = match keepalive {
                    // Reading the next frame is cancel-safe: a frame is taken
                    // from the body only once it is complete.
                    Some(period) => match tokio::time::timeout(period, messages.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            let comment = Bytes::from_static(b": keep-alive\n\n");
                            return Some((comment, Some((messages, writer))));
                        }
                    },
                    None => messages.next().await,
                };
                let chunk = match next {
                    Next::Message(payload) => match writer.message(&payload) {
                        Ok(chunk) => return Some((chunk, Some((messages, writer)))),
                        Err(reason) => writer.error(Code::Internal, &reason, None),
                    },
                    Next::End(reply) if reply.code == Code::Ok => return None,
                    Next::End(reply) => {
                        writer.error(reply.code, &reply.message, reply.details.as_deref())
                    }
                };
                Some((chunk, None))
            });
        let body = StreamBody::new(futures_util::StreamExt::map(chunks, |chunk| {
            Ok::<_, tonic::Status>(Frame::data(chunk))
        }));
        let mut response = Response::new(Body::new(body));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Proxies that buffer responses (nginx) would hold the events back.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        super::transcoder::copy_metadata(
            response.headers_mut(),
            &grpc::strip_protocol(&head.headers),
            "grpc-metadata-",
        );
        Ok(with_code(response, Code::Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn event_stream_is_chosen_by_accept_and_ndjson_otherwise() {
        assert_eq!(
            Format::accepted(&headers(&[("accept", "text/event-stream")])),
            Format::Sse
        );
        assert_eq!(
            Format::accepted(&headers(&[(
                "accept",
                "application/json;q=0.5, Text/Event-Stream;q=1"
            )])),
            Format::Sse
        );
        assert_eq!(Format::accepted(&headers(&[])), Format::Ndjson);
        assert_eq!(
            Format::accepted(&headers(&[("accept", "application/x-ndjson")])),
            Format::Ndjson
        );
    }

    #[test]
    fn last_event_id_becomes_the_resume_field_unless_the_query_sets_it() {
        let resumed = headers(&[("last-event-id", "42")]);
        assert_eq!(
            resumed_query(None, &resumed, Some("after")).as_deref(),
            Some("after=42")
        );
        assert_eq!(
            resumed_query(Some("ids=a"), &resumed, Some("after")).as_deref(),
            Some("ids=a&after=42")
        );
        assert_eq!(
            resumed_query(Some("after=7"), &resumed, Some("after")).as_deref(),
            Some("after=7")
        );
        assert_eq!(
            resumed_query(Some("x=1"), &headers(&[]), Some("after")).as_deref(),
            Some("x=1")
        );
        assert_eq!(resumed_query(None, &resumed, None), None);
        let odd = headers(&[("last-event-id", "4 2&x")]);
        assert_eq!(
            resumed_query(None, &odd, Some("after")).as_deref(),
            Some("after=4%202%26x")
        );
    }
}
