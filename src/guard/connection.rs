//! Accepted connections, guarded: at most `max_connections` open at once
//! (more are closed as soon as they are accepted, and counted), and each
//! closed once it has moved no bytes either way for `idle_timeout`.
//!
//! The idle timeout is what closes a socket that never sends a request
//! (hyper waits for the first bytes without a bound) or that stopped
//! halfway; HTTP/2 keepalive pings, configured on the server, close a
//! connection whose peer is gone, since a live HTTP/2 client answers them.
//! A connection is not idle while it is sending a response that has begun
//! ([`ActivityLayer`]): a server stream with nothing to say for a while (a
//! quiet watch over HTTP/1.1, where there are no pings) is the server's
//! silence, not the client's. A write the peer does not take still counts
//! toward the timeout.
//!
//! With TLS, each handshake runs on a task of its own, within the idle
//! timeout, so that a slow or silent client holds up no other connection.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use tonic::transport::server::TcpConnectInfo;
use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;

use super::{Observer, Throttle};
use crate::tls::ReloadingTls;

/// The limits on connections, shared by every listener they guard.
#[derive(Clone)]
pub struct ConnectionGuard {
    open: Arc<Semaphore>,
    max: usize,
    idle_timeout: Duration,
    observer: Observer,
    /// Keeps the refusal warnings to one per 10 s.
    warnings: Arc<Throttle>,
}

impl std::fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionGuard")
            .field("max", &self.max)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl ConnectionGuard {
    /// At most `max` connections (over every listener this guard serves),
    /// each closed after `idle_timeout` without traffic.
    pub fn new(max: usize, idle_timeout: Duration, observer: Observer) -> Self {
        Self {
            open: Arc::new(Semaphore::new(max.max(1))),
            max: max.max(1),
            idle_timeout,
            observer,
            warnings: Arc::new(Throttle::default()),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.open.available_permits()
    }

    /// The guarded connections of `listener`, for [`super::serve`], over TLS
    /// when `tls` is given. The listener closes once the stream is dropped.
    pub fn incoming(
        self,
        listener: TcpListener,
        tls: Option<ReloadingTls>,
    ) -> impl Stream<Item = GuardedStream> + Send + 'static {
        let (ready, connections) = mpsc::channel(64);
        tokio::spawn(
            async move {
                loop {
                    let stream = tokio::select! {
                        () = ready.closed() => return,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            // Out of file descriptors, or a connection reset
                            // before it was accepted: keep serving the others.
                            Err(error) => {
                                tracing::warn!(%error, "accepting a connection failed");
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                    };
                    let Ok(permit) = self.open.clone().try_acquire_owned() else {
                        self.refused();
                        drop(stream);
                        continue;
                    };
                    // Small responses go out at once: without TCP_NODELAY, a
                    // response written in two parts waits for the client's
                    // delayed ACK (up to 40 ms) before its second part.
                    let _ = stream.set_nodelay(true);
                    self.observer.connections_changed(1);
                    let slot = Slot {
                        observer: self.observer.clone(),
                        _permit: permit,
                    };
                    match &tls {
                        None => {
                            let guarded = self.guarded(Io::Plain(stream), slot);
                            if ready.send(guarded).await.is_err() {
                                return;
                            }
                        }
                        // The handshake runs on its own, so a slow client
                        // holds up no other; it gets the idle timeout to
                        // finish.
                        Some(tls) => {
                            let acceptor = tls.acceptor();
                            let ready = ready.clone();
                            let guard = self.clone();
                            let handshake_task = async move {
                                let handshake = tokio::time::timeout(
                                    guard.idle_timeout,
                                    acceptor.accept(stream),
                                )
                                .await;
                                match handshake {
                                    Ok(Ok(tls)) => {
                                        let guarded = guard.guarded(Io::Tls(Box::new(tls)), slot);
                                        let _ = ready.send(guarded).await;
                                    }
                                    Ok(Err(error)) => {
                                        tracing::debug!(%error, "TLS handshake failed");
                                    }
                                    Err(_) => guard.observer.connection_idle_closed(),
                                }
                            };
                            tokio::spawn(handshake_task.with_current_subscriber());
                        }
                    }
                }
            }
            .in_current_span()
            .with_current_subscriber(),
        );
        tokio_stream::wrappers::ReceiverStream::new(connections)
    }

    fn guarded(&self, io: Io, slot: Slot) -> GuardedStream {
        GuardedStream {
            io,
            idle_timeout: self.idle_timeout,
            last_active: Instant::now(),
            idle: Box::pin(tokio::time::sleep(self.idle_timeout)),
            unread: Bytes::new(),
            activity: Activity::default(),
            observer: self.observer.clone(),
            _slot: slot,
        }
    }

    fn refused(&self) {
        self.observer.connection_refused();
        if self.warnings.allow() {
            tracing::warn!(
                max_connections = self.max,
                "connection refused: server.max_connections are open \
                 (logged at most every 10 s; inventory_connections_refused_total counts them)"
            );
        }
    }
}

/// A connection's place under the cap, given back when it closes.
struct Slot {
    observer: Observer,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.observer.connections_changed(-1);
    }
}

/// The bytes of a connection: in clear, or through TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A connection that holds its place under the cap and times out when idle.
pub struct GuardedStream {
    io: Io,
    idle_timeout: Duration,
    /// The last read or write that moved bytes.
    last_active: Instant,
    /// Fires `idle_timeout` after a past `last_active`; re-armed lazily.
    idle: Pin<Box<Sleep>>,
    /// Bytes read ahead and put back, read again before the socket's.
    unread: Bytes,
    /// The responses being sent on this connection.
    activity: Activity,
    observer: Observer,
    _slot: Slot,
}

impl GuardedStream {
    /// Puts `bytes` back, to be read again before the socket's (what was
    /// read to tell the protocol).
    pub(super) fn unread(&mut self, bytes: Bytes) {
        self.unread = bytes;
    }

    /// The peer's addresses and the connection's activity, for every
    /// request's extensions.
    pub fn connect_info(&self) -> GuardedConnectInfo {
        let stream = match &self.io {
            Io::Plain(stream) => stream,
            Io::Tls(stream) => stream.get_ref().0,
        };
        GuardedConnectInfo {
            tcp: TcpConnectInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: stream.peer_addr().ok(),
            },
            activity: self.activity.clone(),
        }
    }

    /// Whether the connection has been idle for its timeout; re-arms the
    /// timer when it fired early because bytes moved since it was set, or
    /// while a response is being sent and the connection is not `writing`
    /// (blocked on a peer that does not read).
    fn poll_idle(&mut self, cx: &mut Context<'_>, writing: bool) -> bool {
        loop {
            if self.idle.as_mut().poll(cx).is_pending() {
                return false;
            }
            if !writing && self.activity.busy() {
                self.last_active = Instant::now();
            }
            let due = self.last_active + self.idle_timeout;
            if Instant::now() >= due {
                self.observer.connection_idle_closed();
                return true;
            }
            self.idle
                .as_mut()
                .reset(tokio::time::Instant::from_std(due));
        }
    }

    /// Notes a write that moved bytes; a write that cannot proceed counts
    /// toward the idle timeout (a peer that stopped reading holds the
    /// connection open just as one that stopped writing).
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.last_active = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.poll_idle(cx, true) => Poll::Ready(Err(Self::idle_error())),
            other => other,
        }
    }

    fn idle_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "connection closed after server.idle_timeout without traffic",
        )
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread.split_to(n));
            if this.unread.is_empty() {
                this.unread = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = match &mut this.io {
            Io::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        };
        match read {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last_active = Instant::now();
                } else if buf.remaining() > 0 {
                    // The peer closed its side.
                    this.activity.lose();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => {
                this.activity.lose();
                Poll::Ready(Err(error))
            }
            Poll::Pending if this.poll_idle(cx, false) => Poll::Ready(Err(Self::idle_error())),
            other => other,
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = match &mut this.io {
            Io::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        };
        this.wrote(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = match &mut this.io {
            Io::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        };
        this.wrote(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(stream) => stream.is_write_vectored(),
            Io::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What every request of a guarded connection carries in its extensions:
/// the peer's addresses and the connection's [`Activity`].
#[derive(Debug, Clone)]
pub struct GuardedConnectInfo {
    /// The TCP addresses.
    pub tcp: TcpConnectInfo,
    /// The responses the connection is sending.
    pub activity: Activity,
}

/// How many responses a connection is sending (while one is, the
/// connection is not idle), and whether its peer has gone.
#[derive(Debug, Clone, Default)]
pub struct Activity(Arc<ActivityState>);

#[derive(Debug, Default)]
struct ActivityState {
    sending: AtomicUsize,
    lost: AtomicBool,
}

impl Activity {
    fn busy(&self) -> bool {
        self.0.sending.load(Ordering::Acquire) > 0
    }

    /// Counts a response until the returned guard drops.
    fn sending(&self) -> Sending {
        self.0.sending.fetch_add(1, Ordering::AcqRel);
        Sending(self.0.clone())
    }

    /// Whether the peer closed the connection or it failed: what a call
    /// whose request was cut short on it was cut by.
    pub fn lost(&self) -> bool {
        self.0.lost.load(Ordering::Acquire)
    }

    fn lose(&self) {
        self.0.lost.store(true, Ordering::Release);
    }
}

/// A response being sent; counted in its connection's [`Activity`] until
/// dropped.
#[derive(Debug)]
struct Sending(Arc<ActivityState>);

impl Drop for Sending {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks a guarded connection busy from the moment a response's head is
/// ready until its body has been sent or dropped, so that the idle timeout
/// does not cut a server stream that has nothing to say for a while. The
/// wait for a request's own bytes is not covered: a client that stops
/// halfway through its request is still closed. It also hands the inner
/// services the peer's [`TcpConnectInfo`], where tonic's
/// `Request::remote_addr` finds it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivityLayer;

impl<S> tower::Layer<S> for ActivityLayer {
    type Service = ActivityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ActivityService { inner }
    }
}

/// The service made by [`ActivityLayer`].
#[derive(Debug, Clone)]
pub struct ActivityService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for ActivityService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let info = request.extensions().get::<GuardedConnectInfo>().cloned();
        let activity = info.map(|info| {
            // tonic's `Request::remote_addr` looks for its own type.
            request.extensions_mut().insert(info.tcp);
            info.activity
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let Some(activity) = activity else {
                return Ok(response);
            };
            let sending = activity.sending();
            Ok(response.map(|body| {
                tonic::body::Body::new(SendingBody {
                    inner: body,
                    _sending: sending,
                })
            }))
        })
    }
}

/// A response body that keeps its connection busy while it lives.
struct SendingBody {
    inner: tonic::body::Body,
    _sending: Sending,
}

impl http_body::Body for SendingBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tower::{Layer as _, ServiceExt as _};

    use super::*;

    #[tokio::test]
    async fn a_response_keeps_its_connection_busy_until_its_body_is_gone_and_handlers_see_the_peer()
    {
        let peer: SocketAddr = "192.0.2.7:4242".parse().expect("address");
        let activity = Activity::default();
        let mut request = http::Request::new(tonic::body::Body::empty());
        request.extensions_mut().insert(GuardedConnectInfo {
            tcp: TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(peer),
            },
            activity: activity.clone(),
        });
        let seen = ActivityLayer
            .layer(tower::service_fn(
                |request: http::Request<tonic::body::Body>| async move {
                    let remote = tonic::Request::from_http(request).remote_addr();
                    Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::new(
                        http_body_util::Full::new(bytes::Bytes::from(format!("{remote:?}"))),
                    )))
                },
            ))
            .oneshot(request)
            .await
            .expect("infallible");
        assert!(activity.busy(), "the body is not sent yet");
        let body = http_body_util::BodyExt::collect(seen.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, format!("{:?}", Some(peer)));
        assert!(!activity.busy(), "the body is gone");
    }
}
