//! [`DeadlineLayer`]: every call ends by its deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tonic::body::Body;
use tonic_types::{ErrorDetails, StatusExt as _};
use tower::{Layer, Service};

use super::{Observer, status_response};
use crate::transcode::parse_grpc_timeout;

/// Ends every call by its deadline: the client's `grpc-timeout` when it
/// sends one, never later than `default` (`None`: no default). Past it, the
/// call's future is dropped, so work it had not committed is abandoned and
/// never applied after the caller was told it failed, and the caller gets
/// DEADLINE_EXCEEDED.
#[derive(Clone)]
pub struct DeadlineLayer {
    default: Option<Duration>,
    observer: Observer,
    /// The `domain` of the ErrorInfo the refusal carries.
    domain: Arc<str>,
}

impl std::fmt::Debug for DeadlineLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineLayer")
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl DeadlineLayer {
    /// Deadlines of at most `default`, reported to `observer`; the status
    /// carries an ErrorInfo (`DEADLINE_EXCEEDED`) of `domain`.
    pub fn new(default: Option<Duration>, domain: &str, observer: Observer) -> Self {
        Self {
            default,
            observer,
            domain: Arc::from(domain),
        }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    layer: DeadlineLayer,
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let asked = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let limit = match (asked, self.layer.default) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        };
        let call = self.inner.call(request);
        let Some(limit) = limit else {
            return Box::pin(call);
        };
        let observer = self.layer.observer.clone();
        let domain = self.layer.domain.clone();
        Box::pin(async move {
            match tokio::time::timeout(limit, call).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    observer.deadline_exceeded();
                    let details = ErrorDetails::with_error_info(
                        "DEADLINE_EXCEEDED",
                        domain.as_ref(),
                        [("deadline_ms".to_owned(), limit.as_millis().to_string())],
                    );
                    Ok(status_response(tonic::Status::with_error_details(
                        tonic::Code::DeadlineExceeded,
                        format!(
                            "the call did not finish within its deadline of {} ms; \
                             nothing it had not committed was applied",
                            limit.as_millis()
                        ),
                        details,
                    )))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tower::ServiceExt as _;

    use super::*;
    use crate::guard::Unobserved;

    fn slow(
        delay: Duration,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = std::convert::Infallible,
        Future = impl Send + 'static,
    > + Clone {
        tower::service_fn(move |_: Request<Body>| async move {
            tokio::time::sleep(delay).await;
            Ok(Response::new(Body::empty()))
        })
    }

    fn code(response: &Response<Body>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test(start_paused = true)]
    async fn the_default_bounds_a_call_without_a_deadline() {
        let layer = DeadlineLayer::new(Some(Duration::from_secs(2)), "test", Arc::new(Unobserved));
        let service = layer.layer(slow(Duration::from_secs(60)));
        let response = service
            .oneshot(Request::new(Body::empty()))
            .await
            .expect("infallible");
        assert_eq!(code(&response), Some("4"), "DEADLINE_EXCEEDED");
    }

    #[tokio::test(start_paused = true)]
    async fn the_clients_shorter_deadline_wins_and_a_fast_call_passes() {
        let layer = DeadlineLayer::new(Some(Duration::from_secs(60)), "test", Arc::new(Unobserved));
        let request = Request::builder()
            .header("grpc-timeout", "100m")
            .body(Body::empty())
            .expect("request");
        let started = tokio::time::Instant::now();
        let response = layer
            .layer(slow(Duration::from_secs(1)))
            .oneshot(request)
            .await
            .expect("infallible");
        assert_eq!(code(&response), Some("4"));
        assert!(started.elapsed() < Duration::from_millis(200));

        let fast = layer
            .layer(slow(Duration::from_millis(10)))
            .oneshot(Request::new(Body::empty()))
            .await
            .expect("infallible");
        assert_eq!(code(&fast), None, "answered by the service");
    }
}
