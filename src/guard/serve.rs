//! Guarded connections served by hyper: HTTP/2 when a connection opens with
//! HTTP/2's preface, HTTP/1.1 otherwise, until shutdown.
//!
//! hyper-util's automatic builder would choose the protocol the same way,
//! but it cannot set HTTP/2's header table size, and that size is what a
//! connection keeps between requests: with the default 4 KiB, the header
//! fields a client indexes stay in the connection's table for its whole
//! life, and each holds on to the whole read or decoding buffer it was cut
//! from (8 KiB and 4 KiB a connection). 1,000 busy connections held 5 MiB
//! more that way (`benches/overload.sh`). With 0 the client sends its few
//! header fields in full, Huffman-coded, with each request: some 100 bytes
//! more per call, and nothing kept.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use http::{Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncReadExt as _;
use tower::ServiceExt as _;
use tower::util::Oneshot;
use tracing::instrument::WithSubscriber as _;

use super::connection::{GuardedConnectInfo, GuardedStream};

/// HTTP/2's connection preface: the first bytes an HTTP/2 client sends.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// How often an HTTP/2 connection is pinged.
    pub http2_keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub http2_keepalive_timeout: Duration,
    /// The HPACK table size the server lets clients use for the headers
    /// they send (SETTINGS_HEADER_TABLE_SIZE).
    pub http2_header_table_size: u32,
}

/// Serves every connection of `incoming` with `service` until `shutdown`
/// completes; then stops accepting (dropping `incoming` closes its
/// listener), lets each connection finish the requests it has begun, and
/// returns once all are closed.
pub async fn serve<I, S, B>(
    incoming: I,
    service: S,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()>,
) where
    I: Stream<Item = GuardedStream>,
    S: tower::Service<Request<tonic::body::Body>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut http1 = hyper::server::conn::http1::Builder::new();
    // With a timer, hyper bounds the wait for a request's headers (30 s).
    http1.timer(TokioTimer::new());
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.http2_keepalive_interval)
        .keep_alive_timeout(settings.http2_keepalive_timeout)
        .header_table_size(settings.http2_header_table_size);
    let builders = Arc::new((http1, http2));
    let service = Arc::new(service);
    let graceful = GracefulShutdown::new();

    let incoming = std::pin::pin!(incoming);
    let mut incoming = incoming.take_until(Box::pin(shutdown));
    while let Some(mut stream) = incoming.next().await {
        let service = ConnectionService {
            service: service.clone(),
            info: stream.connect_info(),
        };
        let (builders, watcher) = (builders.clone(), graceful.watcher());
        let connection = async move {
            let (http1, http2) = &*builders;
            let served = match speaks_http2(&mut stream).await {
                Ok(true) => {
                    let connection = http2.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(connection).await
                }
                Ok(false) => {
                    let connection = http1.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(connection).await
                }
                // Closed, or idle, before a request began.
                Err(error) => {
                    tracing::debug!(%error, "connection closed before its first request");
                    return;
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "connection ended with an error");
            }
        };
        tokio::spawn(connection.with_current_subscriber());
    }
    drop(incoming);
    graceful.shutdown().await;
}

/// A connection's service: each request gets the connection's info and a
/// clone of the shared stack for its own (as every tower server does). The
/// connection itself holds only a reference to the stack, not a clone that
/// would stay for its whole life.
struct ConnectionService<S> {
    service: Arc<S>,
    info: GuardedConnectInfo,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnectionService<S>
where
    S: tower::Service<Request<tonic::body::Body>, Response = Response<B>> + Clone,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Oneshot<S, Request<tonic::body::Body>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let mut request =
            request.map(|body| tonic::body::Body::new(body.map_err(undelivered as fn(_) -> _)));
        request.extensions_mut().insert(self.info.clone());
        S::clone(&self.service).oneshot(request)
    }
}

/// The error of a request body the connection could not deliver whole.
/// tonic gives a stream the client reset the code of its HTTP/2 reason
/// (CANCEL: CANCELLED); a connection that closed or failed mid-request
/// carries no reason, and tonic would answer UNKNOWN, which the request
/// metrics and alerts count as the server's failure. It is the client
/// leaving: CANCELLED, which the REST and Connect transcoder answers as
/// such (499). tonic reads it as the end of the body, and answers a unary
/// call whose message had not arrived INTERNAL; [`super::NormalizeStatusLayer`]
/// re-codes that CANCELLED, since the call's connection is lost.
fn undelivered(error: hyper::Error) -> tonic::Status {
    let status = tonic::Status::from_error(Box::new(error));
    if status.code() == tonic::Code::Unknown {
        tonic::Status::cancelled(format!(
            "the request did not arrive whole: {}",
            status.message()
        ))
    } else {
        status
    }
}

/// Reads a connection's first bytes, at most HTTP/2's preface, and puts
/// them back: whether they are the preface. The wait is bounded by the
/// connection's idle timeout.
async fn speaks_http2(stream: &mut GuardedStream) -> io::Result<bool> {
    let mut first = Vec::with_capacity(H2_PREFACE.len());
    while first.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&first) {
        let wanted = H2_PREFACE.len() - first.len();
        if (&mut *stream)
            .take(wanted as u64)
            .read_buf(&mut first)
            .await?
            == 0
        {
            break;
        }
    }
    let http2 = first == H2_PREFACE;
    stream.unread(first.into());
    Ok(http2)
}
