//! [`NormalizeStatusLayer`]: the codes of framework-decided statuses.

use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tonic::Code;
use tower::{Layer, Service};

/// What tonic says when a request message exceeds the size limit
/// (OUT_OF_RANGE).
const TOO_LARGE: &str = "Error, decoded message length too large";
/// What prost says when a request is not valid protobuf (INTERNAL).
const UNDECODABLE: &str = "failed to decode Protobuf message";
/// What tonic says of a frame with an invalid compression flag (INTERNAL).
const BAD_FRAME: &str = "protocol error: received message with invalid compression flag";

/// Rewrites the code of statuses the server framework decides for a
/// malformed request: RESOURCE_EXHAUSTED for a message over the size limit,
/// INVALID_ARGUMENT for one that does not decode. The message is kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct NormalizeStatusLayer;

impl<S> Layer<S> for NormalizeStatusLayer {
    type Service = NormalizeStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NormalizeStatus { inner }
    }
}

/// The service made by [`NormalizeStatusLayer`].
#[derive(Debug, Clone)]
pub struct NormalizeStatus<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for NormalizeStatus<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = futures_util::future::MapOk<S::Future, fn(Response<R>) -> Response<R>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        use futures_util::TryFutureExt as _;
        self.inner.call(request).map_ok(normalize)
    }
}

/// The response with its trailers-only status re-coded, if it is one of
/// the framework's statuses for a malformed request. (These are decided
/// before the handler runs, so they always come trailers-only.)
fn normalize<R>(mut response: Response<R>) -> Response<R> {
    let Some(status) = tonic::Status::from_header_map(response.headers()) else {
        return response;
    };
    let message = status.message();
    let new = match status.code() {
        Code::OutOfRange if message.starts_with(TOO_LARGE) => Code::ResourceExhausted,
        Code::Internal if message.starts_with(UNDECODABLE) => Code::InvalidArgument,
        Code::Internal if message.starts_with(BAD_FRAME) => Code::InvalidArgument,
        _ => return response,
    };
    response
        .headers_mut()
        .insert("grpc-status", HeaderValue::from(new as i32));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailers_only(code: Code, message: &str) -> Response<()> {
        let mut response = Response::new(());
        response
            .headers_mut()
            .insert("grpc-status", HeaderValue::from(code as i32));
        response.headers_mut().insert(
            "grpc-message",
            HeaderValue::from_str(&message.replace(' ', "%20")).expect("ascii"),
        );
        response
    }

    fn code(response: &Response<()>) -> &str {
        response.headers()["grpc-status"].to_str().expect("ascii")
    }

    #[test]
    fn framework_statuses_for_bad_requests_get_their_proper_codes() {
        let large = trailers_only(
            Code::OutOfRange,
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        );
        assert_eq!(code(&normalize(large)), "8");
        let garbage = trailers_only(
            Code::Internal,
            "failed to decode Protobuf message: invalid wire type",
        );
        assert_eq!(code(&normalize(garbage)), "3");
    }

    #[test]
    fn a_handlers_own_statuses_are_untouched() {
        let range = trailers_only(Code::OutOfRange, "page token past the end");
        assert_eq!(code(&normalize(range)), "11");
        let internal = trailers_only(Code::Internal, "the database refused");
        assert_eq!(code(&normalize(internal)), "13");
    }
}
