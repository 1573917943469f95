//! CORS for the calls that can use it: [`CrossOriginLayer`] puts a CORS
//! layer (tower-http's) in front of a service for the requests that carry
//! an `Origin` header, and for every `OPTIONS` (answered with the methods
//! and headers allowed, never a 405), and lets every other request pass
//! without it.
//!
//! A browser sends `Origin` with every cross-origin call and preflight, and
//! only a browser reads the `access-control-*` headers; gRPC clients, curl
//! and other services send none. Without this, every answer to them
//! carried some 230 bytes of CORS headers (`vary`, the allowed origin, the
//! exposed headers) that the server built and HPACK-encoded per call for
//! no reader. No response here is cacheable (no validator, no freshness),
//! so an answer without `vary: origin` cannot be reused for a browser's
//! cross-origin call.

use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Method, Request, header};
use tower::{Layer, Service};

/// Applies the CORS layer `L` to requests that carry an `Origin`, and to
/// `OPTIONS`.
#[derive(Debug, Clone)]
pub struct CrossOriginLayer<L> {
    cors: L,
}

impl<L> CrossOriginLayer<L> {
    /// `cors` for the requests with an `Origin` and for `OPTIONS`, nothing
    /// for the others.
    pub fn new(cors: L) -> Self {
        Self { cors }
    }
}

impl<L: Layer<S>, S: Clone> Layer<S> for CrossOriginLayer<L> {
    type Service = CrossOrigin<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        CrossOrigin {
            cors: self.cors.layer(inner.clone()),
            inner,
        }
    }
}

/// The service made by [`CrossOriginLayer`]: `cors` (the inner service
/// behind CORS) or `inner` itself, by the request.
#[derive(Debug, Clone)]
pub struct CrossOrigin<C, S> {
    cors: C,
    inner: S,
}

impl<C, S, B, R, E> Service<Request<B>> for CrossOrigin<C, S>
where
    C: Service<Request<B>, Response = R, Error = E>,
    S: Service<Request<B>, Response = R, Error = E>,
{
    type Response = R;
    type Error = E;
    type Future = Either<C::Future, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        // Either may take the call, so both must be ready.
        if self.cors.poll_ready(cx)?.is_pending() {
            return Poll::Pending;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.headers().contains_key(header::ORIGIN) || request.method() == Method::OPTIONS {
            Either::Left(self.cors.call(request))
        } else {
            Either::Right(self.inner.call(request))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::{HeaderValue, Response};
    use tower::ServiceExt as _;
    use tower_http::cors::{AllowOrigin, CorsLayer};

    use super::*;

    fn service() -> impl Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone {
        let cors = CorsLayer::new()
            .allow_origin(AllowOrigin::any())
            .allow_methods([Method::GET]);
        CrossOriginLayer::new(cors).layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }))
    }

    #[tokio::test]
    async fn a_request_with_an_origin_gets_cors_headers_and_one_without_gets_none() {
        let browser = Request::get("/api/v1/inventory/p")
            .header(header::ORIGIN, "http://shop.example")
            .body(())
            .unwrap();
        let answer = service().oneshot(browser).await.unwrap();
        assert_eq!(
            answer.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some(&HeaderValue::from_static("*"))
        );
        assert!(answer.headers().contains_key(header::VARY));

        let client = Request::get("/api/v1/inventory/p").body(()).unwrap();
        let answer = service().oneshot(client).await.unwrap();
        assert!(answer.headers().is_empty(), "{:?}", answer.headers());
    }

    #[tokio::test]
    async fn an_options_request_is_answered_by_cors_with_or_without_an_origin() {
        let plain = Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/inventory/p")
            .body(())
            .unwrap();
        let answer = service().oneshot(plain).await.unwrap();
        assert_eq!(
            answer.headers().get(header::ACCESS_CONTROL_ALLOW_METHODS),
            Some(&HeaderValue::from_static("GET"))
        );
    }

    #[tokio::test]
    async fn a_preflight_is_answered_by_cors() {
        let preflight = Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/inventory/p")
            .header(header::ORIGIN, "http://shop.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .body(())
            .unwrap();
        let answer = service().oneshot(preflight).await.unwrap();
        assert_eq!(
            answer.headers().get(header::ACCESS_CONTROL_ALLOW_METHODS),
            Some(&HeaderValue::from_static("GET"))
        );
    }
}
