//! A loopback TCP proxy that can sever every connection on demand: a
//! database or a Redis that drops out, as the service sees it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A loopback TCP proxy that can sever every connection on demand.
pub struct ChaosProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
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
        let proxy = Self {
            addr,
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
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
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

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
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
