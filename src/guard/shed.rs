//! [`ShedLayer`]: a concurrency limit that answers at once when full.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tonic::body::Body;
use tonic_types::{ErrorDetails, StatusExt as _};
use tower::{Layer, Service};

use super::{Observer, ShedReason, Throttle, is_exempt, status_response};

/// The limits of a [`ShedLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShedSettings {
    /// Calls that run at once.
    pub max_in_flight: usize,
    /// Calls that may wait for a turn; more are refused at once.
    pub max_queued: usize,
    /// Longest wait for a turn while the queue is absorbing a burst (it
    /// emptied within `standing_after`). An outer [`super::DeadlineLayer`]
    /// bounds the wait by the call's own deadline too.
    pub max_queue_wait: Duration,
    /// A queue that has not emptied for this long is standing: more arrives
    /// than is served, and new calls wait at most
    /// [`ShedSettings::standing_queue_wait`] (CoDel's interval).
    pub standing_after: Duration,
    /// What `retry-after` tells a refused caller.
    pub retry_after: Duration,
}

impl ShedSettings {
    /// How long a call may wait for a turn while the queue is standing (has
    /// not emptied for `standing_after`): a quarter of `standing_after` (5 ms
    /// at the default 20 ms; CoDel's target), never more than
    /// `max_queue_wait`.
    pub fn standing_queue_wait(&self) -> Duration {
        (self.standing_after / 4).min(self.max_queue_wait)
    }
}

/// Runs at most `max_in_flight` calls at once; up to `max_queued` more wait
/// for a turn, in arrival order; the rest are answered RESOURCE_EXHAUSTED at
/// once, with `retry-after` (seconds) and a `google.rpc.RetryInfo`.
///
/// The wait is bounded the way CoDel bounds a packet queue: a queue that
/// empties now and then is absorbing a burst (a flash sale's calls on one
/// product, all at once), and a call may wait up to `max_queue_wait` in it;
/// a queue that has not emptied for `standing_after` is standing (more
/// arrives than is served), and a new call waits at most
/// [`ShedSettings::standing_queue_wait`]. So a burst is served in turn
/// instead of refused, while under a sustained overload the queue adds
/// milliseconds to every call served and the excess is refused at once.
/// Refusing early keeps the latency of the calls that are served bounded,
/// and memory with it. Health and reflection ([`is_exempt`]) are never
/// shed.
#[derive(Clone)]
pub struct ShedLayer {
    limiter: Arc<Limiter>,
}

struct Limiter {
    settings: ShedSettings,
    turns: Arc<Semaphore>,
    queued: AtomicUsize,
    /// When the queue was last empty, in nanoseconds since `epoch`.
    last_empty: AtomicU64,
    epoch: Instant,
    observer: Observer,
    domain: String,
    warnings: Throttle,
}

impl std::fmt::Debug for ShedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShedLayer")
            .field("settings", &self.limiter.settings)
            .finish_non_exhaustive()
    }
}

impl ShedLayer {
    /// A limit of `settings`, shared by every connection the layer serves;
    /// refusals carry an ErrorInfo of `domain` and are told to `observer`.
    pub fn new(settings: ShedSettings, domain: impl Into<String>, observer: Observer) -> Self {
        Self {
            limiter: Arc::new(Limiter {
                settings,
                turns: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                queued: AtomicUsize::new(0),
                last_empty: AtomicU64::new(0),
                epoch: Instant::now(),
                observer,
                domain: domain.into(),
                warnings: Throttle::default(),
            }),
        }
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.limiter.settings.max_in_flight.max(1) - self.limiter.turns.available_permits()
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service made by [`ShedLayer`].
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Shed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shed")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for Shed<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if is_exempt(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let limiter = self.limiter.clone();
        if let Ok(turn) = limiter.turns.clone().try_acquire_owned() {
            let call = self.inner.call(request);
            return Box::pin(async move {
                let outcome = call.await;
                drop(turn);
                outcome
            });
        }
        // The clone takes the place of the service that was made ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let settings = limiter.settings;
            // Held while waiting: given back however the wait ends, the
            // caller's deadline dropping this future included.
            let queued = Queued::join(&limiter);
            if queued.ahead >= settings.max_queued {
                drop(queued);
                return Ok(limiter.refuse(ShedReason::QueueFull));
            }
            let wait = if limiter.queue_standing() {
                settings.standing_queue_wait()
            } else {
                settings.max_queue_wait
            };
            let turn = tokio::time::timeout(wait, limiter.turns.clone().acquire_owned()).await;
            drop(queued);
            let Ok(Ok(turn)) = turn else {
                return Ok(limiter.refuse(ShedReason::QueueTimeout));
            };
            let outcome = inner.call(request).await;
            drop(turn);
            outcome
        })
    }
}

/// A place in the waiting room, left when dropped.
struct Queued<'a> {
    limiter: &'a Limiter,
    /// How many were waiting before this one.
    ahead: usize,
}

impl<'a> Queued<'a> {
    fn join(limiter: &'a Limiter) -> Self {
        let ahead = limiter.queued.fetch_add(1, Ordering::AcqRel);
        if ahead == 0 {
            limiter.mark_empty();
        }
        Self { limiter, ahead }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.limiter.queued.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.limiter.mark_empty();
        }
    }
}

impl Limiter {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Notes that the queue is empty now (or was, just before a call
    /// joined it).
    fn mark_empty(&self) {
        self.last_empty.store(self.now(), Ordering::Relaxed);
    }

    /// Whether the queue has not emptied for `standing_after`.
    fn queue_standing(&self) -> bool {
        let since = self
            .now()
            .saturating_sub(self.last_empty.load(Ordering::Relaxed));
        since > u64::try_from(self.settings.standing_after.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The refusal of a call, told to the observer.
    fn refuse(&self, reason: ShedReason) -> Response<Body> {
        self.observer.shed(reason);
        if self.warnings.allow() {
            tracing::warn!(
                max_in_flight = self.settings.max_in_flight,
                max_queued = self.settings.max_queued,
                reason = reason.as_str(),
                "calls refused for load (logged at most every 10 s; \
                 inventory_requests_shed_total counts them)"
            );
        }
        let seconds = self.settings.retry_after.as_secs().max(1);
        let mut details = ErrorDetails::with_error_info(
            "OVERLOADED",
            self.domain.clone(),
            [
                (
                    "in_flight".to_owned(),
                    self.settings.max_in_flight.to_string(),
                ),
                ("reason".to_owned(), reason.as_str().to_owned()),
            ],
        );
        details.set_retry_info(Some(Duration::from_secs(seconds)));
        let status = tonic::Status::with_error_details(
            tonic::Code::ResourceExhausted,
            format!(
                "the service is at its limit of {} calls at once; try again in {seconds} s",
                self.settings.max_in_flight
            ),
            details,
        );
        let mut response = status_response(status);
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        response
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use tokio::sync::Notify;
    use tower::ServiceExt as _;

    use super::*;
    use crate::guard::GuardObserver;

    #[derive(Default)]
    struct Count(AtomicU64);

    impl GuardObserver for Count {
        fn shed(&self, _: ShedReason) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn connection_refused(&self) {}
        fn connection_idle_closed(&self) {}
        fn connections_changed(&self, _: i64) {}
    }

    /// A service whose calls wait until `gate` is notified.
    fn gated(
        gate: Arc<Notify>,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = std::convert::Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(move |_: Request<Body>| {
            let gate = gate.clone();
            async move {
                gate.notified().await;
                Ok(Response::new(Body::empty()))
            }
        })
    }

    fn call(path: &str) -> Request<Body> {
        Request::post(path).body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn beyond_the_limit_and_the_queue_calls_are_refused_at_once_with_retry_after() {
        let count = Arc::new(Count::default());
        let layer = ShedLayer::new(
            ShedSettings {
                max_in_flight: 2,
                max_queued: 1,
                max_queue_wait: Duration::from_secs(30),
                standing_after: Duration::from_secs(30),
                retry_after: Duration::from_secs(2),
            },
            "test",
            count.clone(),
        );
        let gate = Arc::new(Notify::new());
        let service = layer.layer(gated(gate.clone()));
        let running: Vec<_> = (0..3)
            .map(|_| tokio::spawn(service.clone().oneshot(call("/pkg.S/M"))))
            .collect();
        while layer.limiter.queued.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(layer.in_flight(), 2);

        let refused = service
            .clone()
            .oneshot(call("/pkg.S/M"))
            .await
            .expect("infallible");
        assert_eq!(refused.headers()["grpc-status"], "8", "RESOURCE_EXHAUSTED");
        assert_eq!(refused.headers()["retry-after"], "2");
        let status = tonic::Status::from_header_map(refused.headers()).expect("a status");
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().map(|i| i.reason.as_str()),
            Some("OVERLOADED")
        );
        assert!(details.retry_info().is_some());
        assert_eq!(count.0.load(Ordering::Relaxed), 1);

        // Health is never shed.
        let health = tokio::spawn(
            service
                .clone()
                .oneshot(call("/grpc.health.v1.Health/Check")),
        );
        // Everyone waiting gets through once turns free up.
        for _ in 0..20 {
            gate.notify_waiters();
            tokio::task::yield_now().await;
            if running.iter().all(tokio::task::JoinHandle::is_finished) && health.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for task in running {
            let response = task.await.expect("task").expect("infallible");
            assert!(response.headers().get("grpc-status").is_none());
        }
        assert!(health.await.expect("task").is_ok());
        assert_eq!(layer.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_call_that_gets_no_turn_in_time_is_refused() {
        let count = Arc::new(Count::default());
        let layer = ShedLayer::new(
            ShedSettings {
                max_in_flight: 1,
                max_queued: 10,
                max_queue_wait: Duration::from_millis(50),
                standing_after: Duration::from_millis(50),
                retry_after: Duration::from_secs(1),
            },
            "test",
            count.clone(),
        );
        let gate = Arc::new(Notify::new());
        let service = layer.layer(gated(gate.clone()));
        let _busy = tokio::spawn(service.clone().oneshot(call("/pkg.S/M")));
        while layer.in_flight() < 1 {
            tokio::task::yield_now().await;
        }
        let refused = service
            .clone()
            .oneshot(call("/pkg.S/M"))
            .await
            .expect("infallible");
        assert_eq!(refused.headers()["grpc-status"], "8");
        assert_eq!(count.0.load(Ordering::Relaxed), 1);

        // A waiting call dropped by its caller (its deadline) leaves the
        // waiting room.
        let given_up =
            tokio::time::timeout(Duration::from_millis(10), service.oneshot(call("/pkg.S/M")))
                .await;
        assert!(given_up.is_err());
        assert_eq!(layer.limiter.queued.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_that_does_not_empty_cuts_the_wait_of_new_calls() {
        let count = Arc::new(Count::default());
        let layer = ShedLayer::new(
            ShedSettings {
                max_in_flight: 1,
                max_queued: 10,
                max_queue_wait: Duration::from_millis(300),
                standing_after: Duration::from_millis(100),
                retry_after: Duration::from_secs(1),
            },
            "test",
            count.clone(),
        );
        let service = layer.layer(gated(Arc::new(Notify::new())));
        let _busy = tokio::spawn(service.clone().oneshot(call("/pkg.S/M")));
        while layer.in_flight() < 1 {
            tokio::task::yield_now().await;
        }
        let timed = |service: Shed<_>| async move {
            let started = tokio::time::Instant::now();
            let response = service.oneshot(call("/pkg.S/M")).await.expect("infallible");
            assert_eq!(response.headers()["grpc-status"], "8");
            started.elapsed()
        };

        // A burst: the queue was empty when these came, they get the whole wait.
        let first = tokio::spawn(timed(service.clone()));
        tokio::time::sleep(Duration::from_millis(60)).await;
        let second = tokio::spawn(timed(service.clone()));
        tokio::time::sleep(Duration::from_millis(60)).await;
        // The queue has not emptied for 120 ms: it is standing.
        assert_eq!(
            timed(service.clone()).await,
            Duration::from_millis(25),
            "a quarter of standing_after"
        );
        assert_eq!(first.await.expect("task"), Duration::from_millis(300));
        assert_eq!(second.await.expect("task"), Duration::from_millis(300));
        // Once it has emptied, a call gets the whole wait again.
        assert_eq!(timed(service.clone()).await, Duration::from_millis(300));
        assert_eq!(count.0.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_past_the_limit_is_served_in_turn_not_refused() {
        let count = Arc::new(Count::default());
        let layer = ShedLayer::new(
            ShedSettings {
                max_in_flight: 2,
                max_queued: 100,
                max_queue_wait: Duration::from_secs(1),
                standing_after: Duration::from_millis(20),
                retry_after: Duration::from_secs(1),
            },
            "test",
            count.clone(),
        );
        // Each call takes 40 ms: ten at once drain in 200 ms, ten times the
        // standing interval, yet all of them came while the queue was
        // absorbing a burst.
        let service = layer.layer(tower::service_fn(|_: Request<Body>| async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            Ok::<_, std::convert::Infallible>(Response::new(Body::empty()))
        }));
        let started = tokio::time::Instant::now();
        let calls: Vec<_> = (0..10)
            .map(|_| tokio::spawn(service.clone().oneshot(call("/pkg.S/M"))))
            .collect();
        for task in calls {
            let response = task.await.expect("task").expect("infallible");
            assert!(response.headers().get("grpc-status").is_none());
        }
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        assert_eq!(count.0.load(Ordering::Relaxed), 0);
    }
}
