//! The integration-test fixture: the real server, started through the same
//! `server::serve` as the binary, on ephemeral loopback ports with its own
//! SQLite file in a temporary directory.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixture"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use inventory_service::config::Config;
use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::server::{self, Listeners, ServeError};
use inventory_service::store::sqlite::Synchronous;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// A running service.
pub struct TestServer {
    /// Where gRPC, gRPC-Web, reflection and health listen.
    pub grpc_addr: SocketAddr,
    /// Where `/health` listens.
    pub http_addr: SocketAddr,
    /// The directory holding the database; shared so a restart can reuse it.
    pub dir: Arc<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

/// A configuration for tests: the database in `dir`, fast durability, the
/// sweeper and health monitor at their defaults unless `tweak` changes them.
pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.database.dsn = dir.join("inventory.db").display().to_string();
    config.database.synchronous = Synchronous::Normal;
    config.server.shutdown_timeout = Duration::from_secs(5);
    config
}

impl TestServer {
    /// Starts a service with a fresh database.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a service with a fresh database and a tweaked configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Self::start_in(dir, tweak).await
    }

    /// Starts a service on the database in `dir`.
    pub async fn start_in(dir: Arc<TempDir>, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let grpc_addr = grpc.local_addr().expect("grpc addr");
        let http_addr = http.local_addr().expect("http addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(
            config,
            Listeners { grpc, http },
            async move {
                let _ = stopped.await;
            },
        ));
        let server = Self {
            grpc_addr,
            http_addr,
            dir,
            stop: Some(stop),
            task: Some(task),
        };
        server.wait_until_healthy().await;
        server
    }

    async fn wait_until_healthy(&self) {
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(response) = client.get(self.http_url("/health")).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the service did not become healthy within 5s");
    }

    /// A gRPC client of the inventory service.
    pub async fn client(&self) -> InventoryServiceClient<Channel> {
        InventoryServiceClient::new(self.channel().await)
    }

    /// A gRPC channel to the service.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// A URL on the HTTP port.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    /// A URL on the gRPC port.
    pub fn grpc_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.grpc_addr)
    }

    /// Shuts down gracefully and returns how `serve` ended.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("shutdown within 10s")
            .expect("serve task")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The ErrorInfo reason of a status, if it carries one.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}
