//! A local alert webhook: an HTTP server on an ephemeral loopback port that
//! keeps the JSON body of every POST it receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The receiver; stops with the test's runtime.
pub struct Webhook {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Webhook {
    /// Starts listening.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook");
        let addr = listener.local_addr().expect("webhook addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let keep = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let keep = keep.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let keep = keep.clone();
                        async move {
                            let body = request
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let json =
                                serde_json::from_slice(&body).unwrap_or(serde_json::Value::String(
                                    String::from_utf8_lossy(&body).into_owned(),
                                ));
                            keep.lock().expect("received").push(json);
                            Ok::<_, Infallible>(Response::new(String::new()))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, received }
    }

    /// The URL to configure as `alerting.webhook_url`.
    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }

    /// Every alert received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.received.lock().expect("received").clone()
    }

    /// Waits (up to 10s) until `count` alerts were received, and returns
    /// them.
    pub async fn wait_for(&self, count: usize) -> Vec<serde_json::Value> {
        for _ in 0..200 {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {count} alerts within 10s, received {:?}",
            self.received()
        );
    }
}
