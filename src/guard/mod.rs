//! Guards of a gRPC server against abuse and overload, as tower middleware
//! and a listener wrapper. Like [`crate::transcode`], this module knows
//! nothing about inventory: it sees gRPC requests (every protocol has become
//! one by the time it runs) and TCP connections.
//!
//! - [`DeadlineLayer`]: every call ends by its deadline, the client's
//!   (`grpc-timeout`) or a default; past it the call's future is dropped
//!   (nothing it had not committed is applied) and DEADLINE_EXCEEDED
//!   answered.
//! - [`ShedLayer`]: at most so many calls run at once; a bounded number wait
//!   a bounded time for a turn; the rest are answered RESOURCE_EXHAUSTED at
//!   once with `retry-after`, so the calls that are served stay fast.
//!   Health and reflection are never shed.
//! - [`NormalizeStatusLayer`]: the statuses the server framework decides
//!   for a malformed request (a message over the size limit, a body that is
//!   not protobuf) get the code the gRPC status guide names for them,
//!   RESOURCE_EXHAUSTED and INVALID_ARGUMENT, instead of OUT_OF_RANGE and
//!   INTERNAL (an alert on INTERNAL must not fire on bad clients).
//! - [`connection`]: accepted connections are capped, and a connection that
//!   moves no bytes for a set time is closed.
//! - [`serve`]: the guarded connections served by hyper, HTTP/1.1 or
//!   HTTP/2, with a bounded HTTP/2 header table.
//!
//! Each guard reports what it refused to a [`GuardObserver`] (the metrics).

pub mod connection;
mod deadline;
mod serve;
mod shed;
mod status;

use std::sync::Arc;

pub use deadline::{Deadline, DeadlineLayer};
pub use serve::{HttpSettings, serve};
pub use shed::{Shed, ShedLayer, ShedSettings};
pub use status::{NormalizeStatus, NormalizeStatusLayer};

/// Why a call was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// The waiting room was full.
    QueueFull,
    /// No turn came within the longest wait.
    QueueTimeout,
}

impl ShedReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::QueueTimeout => "queue_timeout",
        }
    }
}

/// Told of what the guards refuse or close.
pub trait GuardObserver: Send + Sync + 'static {
    /// A call was refused for load.
    fn shed(&self, reason: ShedReason);
    /// A call ran out of time.
    fn deadline_exceeded(&self) {}
    /// A connection was refused: `max_connections` are open.
    fn connection_refused(&self);
    /// A connection was closed after moving no bytes for the idle timeout.
    fn connection_idle_closed(&self);
    /// A connection opened (`+1`) or closed (`-1`).
    fn connections_changed(&self, delta: i64);
}

/// An observer that records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl GuardObserver for Unobserved {
    fn shed(&self, _: ShedReason) {}
    fn connection_refused(&self) {}
    fn connection_idle_closed(&self) {}
    fn connections_changed(&self, _: i64) {}
}

/// A shared observer.
pub type Observer = Arc<dyn GuardObserver>;

/// Whether `path` is a call no guard may refuse for load: health checks
/// and server reflection, which tell operators and clients what is going on
/// when everything else is busy.
pub fn is_exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// Lets a warning through at most once per `every`, so that a flood is
/// logged without the log becoming part of the flood.
#[derive(Debug, Default)]
struct Throttle {
    /// When the last warning went out, in seconds since the Unix epoch.
    last: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// How often at most a guard logs a refusal.
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// Whether a warning may go out now.
    fn allow(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last.load(Ordering::Relaxed);
        now.saturating_sub(last) >= Self::EVERY.as_secs()
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// A trailers-only gRPC response carrying `status`.
fn status_response(status: tonic::Status) -> http::Response<tonic::body::Body> {
    status.into_http()
}
