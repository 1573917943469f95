//! [`NormalizeStatusLayer`]: the codes of framework-decided statuses.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tonic::Code;
use tower::{Layer, Service};

use super::connection::{Activity, GuardedConnectInfo};

/// What tonic says when a request message exceeds the size limit
/// (OUT_OF_RANGE).
const TOO_LARGE: &str = "Error, decoded message length too large";
/// What prost says when a request is not valid protobuf (INTERNAL).
const UNDECODABLE: &str = "failed to decode Protobuf message";
/// What tonic says of a frame with an invalid compression flag (INTERNAL).
const BAD_FRAME: &str = "protocol error: received message with invalid compression flag";
/// What tonic says when a request's body ends inside a message (INTERNAL):
/// the client sent a message cut short.
const CUT_SHORT: &str = "Unexpected EOF decoding stream";
/// What tonic says when a unary call's body ends before its message
/// (INTERNAL): the client sent none, or reset the call or lost its
/// connection before sending it all (tonic reads a body that did not
/// arrive, CANCELLED, as its end: [`super::serve`]).
const MISSING: &str = "Missing request message";

/// Rewrites the code of statuses the server framework decides for a
/// malformed request: RESOURCE_EXHAUSTED for a message over the size limit,
/// INVALID_ARGUMENT for one that does not decode, is cut short or missing,
/// CANCELLED for one cut short because its client's connection closed.
/// The message is kept.
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
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let connection = request
            .extensions()
            .get::<GuardedConnectInfo>()
            .map(|info| info.activity.clone());
        ResponseFuture {
            inner: self.inner.call(request),
            connection,
        }
    }
}

pin_project! {
    /// The response future of [`NormalizeStatus`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        connection: Option<Activity>,
    }
}

impl<F, R, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let lost = this.connection.as_ref().is_some_and(Activity::lost);
        Poll::Ready(Ok(normalize(response, lost)))
    }
}

/// The response with its trailers-only status re-coded, if it is one of
/// the framework's statuses for a malformed request; `lost`: the request's
/// connection has closed. (These are decided before the handler runs, so
/// they always come trailers-only.)
fn normalize<R>(mut response: Response<R>, lost: bool) -> Response<R> {
    let Some(status) = tonic::Status::from_header_map(response.headers()) else {
        return response;
    };
    let message = status.message();
    let new = match status.code() {
        Code::OutOfRange if message.starts_with(TOO_LARGE) => Code::ResourceExhausted,
        Code::Internal if message.starts_with(UNDECODABLE) => Code::InvalidArgument,
        Code::Internal if message.starts_with(BAD_FRAME) => Code::InvalidArgument,
        Code::Internal if message.starts_with(CUT_SHORT) || message.starts_with(MISSING) => {
            if lost {
                Code::Cancelled
            } else {
                Code::InvalidArgument
            }
        }
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
        assert_eq!(code(&normalize(large, false)), "8");
        let garbage = trailers_only(
            Code::Internal,
            "failed to decode Protobuf message: invalid wire type",
        );
        assert_eq!(code(&normalize(garbage, false)), "3");
        for cut in [
            "Unexpected EOF decoding stream.",
            "Missing request message.",
        ] {
            let cut = || trailers_only(Code::Internal, cut);
            assert_eq!(
                code(&normalize(cut(), false)),
                "3",
                "a message cut short or none"
            );
            assert_eq!(code(&normalize(cut(), true)), "1", "its client left");
        }
    }

    #[test]
    fn a_handlers_own_statuses_are_untouched() {
        let range = trailers_only(Code::OutOfRange, "page token past the end");
        assert_eq!(code(&normalize(range, true)), "11");
        let internal = trailers_only(Code::Internal, "the database refused");
        assert_eq!(code(&normalize(internal, true)), "13");
    }
}
