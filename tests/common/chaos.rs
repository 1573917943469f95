//! A loopback TCP proxy that can sever every connection on demand: a
//! database or a Redis that drops out, as the service sees it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A loopback TCP proxy that can sever every connection on demand, or
/// stall them (stop forwarding bytes without closing anything).
pub struct ChaosProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// While true, bytes are held, not forwarded.
    stalled: watch::Sender<bool>,
    /// Bumped on each cut; every piped connection ends when it changes.
    generation: watch::Sender<u64>,
    /// Connections refused while down.
    pub refused: Arc<AtomicUsize>,
}

impl ChaosProxy {
    /// Proxies to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let refused = Arc::new(AtomicUsize::new(0));
        let (stalled, _) = watch::channel(false);
        let stall = stalled.clone();
        let proxy = Self {
            addr,
            stalled,
            up: up.clone(),
            generation: generation.clone(),
            refused: refused.clone(),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    drop(client); // Refused while down.
                    refused.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let mut cut = generation.subscribe();
                let (up_stall, down_stall) = (stall.subscribe(), stall.subscribe());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        () = async {
                            tokio::join!(
                                pipe(client_read, server_write, up_stall),
                                pipe(server_read, client_write, down_stall),
                            );
                        } => {}
                        _ = cut.changed() => {} // Both sockets drop here: the cut.
                    }
                });
            }
        });
        proxy
    }

    /// Severs every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Lets connections through again, and bytes flow again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
        self.stalled.send_replace(false);
    }

    /// Stops forwarding bytes, both ways, without closing a connection: a
    /// database that hangs.
    #[allow(dead_code, reason = "not every test binary stalls")]
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Waits until a connection has been refused since `before` were.
    pub async fn wait_for_refusal(&self, before: usize) {
        for _ in 0..500 {
            if self.refused.load(Ordering::SeqCst) > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no connection was refused within 5s");
    }
}

/// Copies `from` to `to`, holding the bytes while `stalled` is true.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while *stalled.borrow_and_update() {
            if stalled.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
