//! The integration-test fixture: the real server, started through the same
//! `server::serve` as the binary, on ephemeral loopback ports, with a database
//! of its own on either backend.
//!
//! - [`Backend::Sqlite`]: a file in a temporary directory.
//! - [`Backend::Postgres`]: a throwaway database `inventory_test_<uuid>` on the
//!   local server ([`POSTGRES_URL_ENV`], default [`DEFAULT_POSTGRES_URL`]),
//!   created before the server starts and dropped `WITH (FORCE)` when the
//!   last handle to it goes. An unreachable server fails the test; it is
//!   never skipped.
//!
//! [`backend_tests!`] runs one test body as a test per backend.

#![allow(
    dead_code,
    unused_macros,
    unused_imports,
    reason = "each test binary uses a different part of the fixture"
)]

pub mod chaos;
pub mod invariants;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection as _};
use inventory_service::config::Synchronous;
use inventory_service::config::{CacheType, Config, Driver};
use inventory_service::pb::inventory_service_client::InventoryServiceClient;
use inventory_service::server::{self, Listeners, ServeError};
use inventory_service::store::postgres::{self, redact_password};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The environment variable naming the PostgreSQL server tests create their
/// databases on: a URL of a database the user may `CREATE DATABASE` from.
pub const POSTGRES_URL_ENV: &str = "INVENTORY_TEST_POSTGRES_URL";
/// The server tests use when [`POSTGRES_URL_ENV`] is not set: the local one,
/// user `postgres`, trust authentication (as `.ci/run` sets it up).
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The `database.driver` name, as `/health` reports it.
    pub fn driver(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// For each `name` listed, a module `name` with two tests, `sqlite` and
/// `postgres`, that call `async fn name(backend: Backend)` with their backend;
/// `cargo test postgres` runs one backend's half. The bodies stay ordinary
/// functions (rustfmt formats them), and one left out of the list is dead
/// code, which clippy refuses.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await;
            }
        }
    )*};
}
pub(crate) use backend_tests;

/// A database for one test, dropped with its last handle. A restarted server
/// is given the same one.
pub struct TestDatabase {
    /// Which backend it is on.
    pub backend: Backend,
    /// The Redis key prefix of its replicas (`cache.key_prefix`): tests
    /// share one Redis, replicas of one database share their entries.
    pub cache_prefix: String,
    /// Holds the SQLite file (and is empty for PostgreSQL).
    dir: TempDir,
    /// The PostgreSQL database, when the backend is PostgreSQL.
    postgres: Option<PostgresDatabase>,
}

impl TestDatabase {
    /// A fresh, empty database on `backend`.
    pub async fn create(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let postgres = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PostgresDatabase::create().await),
        };
        Self {
            backend,
            dir,
            postgres,
            cache_prefix: format!("inventory-test-{}", uuid::Uuid::now_v7().simple()),
        }
    }

    /// The SQLite file, on SQLite.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self.postgres
            .is_none()
            .then(|| self.dir.path().join("inventory.db"))
    }

    /// The connection URL, on PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        self.postgres.as_ref().map(|p| p.url.as_str())
    }

    /// Points `config.database` at this database.
    pub fn configure(&self, config: &mut Config) {
        match &self.postgres {
            None => {
                config.database.driver = Driver::Sqlite;
                config.database.dsn = self.dir.path().join("inventory.db").display().to_string();
                config.database.synchronous = Synchronous::Normal;
            }
            Some(postgres) => {
                config.database.driver = Driver::Postgres;
                config.database.dsn = postgres.url.clone();
            }
        }
    }
}

/// A throwaway PostgreSQL database, created empty and dropped `WITH (FORCE)`
/// (closing any connection still open to it) on `Drop`.
pub struct PostgresDatabase {
    /// Its name, `inventory_test_<uuid>`.
    pub name: String,
    /// A URL that connects to it.
    pub url: String,
    /// The server's administrative URL, used to create and drop it.
    admin_url: String,
}

impl PostgresDatabase {
    /// Creates an empty database on the test server. Panics, naming the
    /// server, when it cannot be reached.
    pub async fn create() -> Self {
        let admin_url =
            std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let name = format!("inventory_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = connect_admin(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = with_database(&admin_url, &name);
        Self {
            name,
            url,
            admin_url,
        }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on a future:
        // the DROP gets a thread and a runtime of its own.
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = postgres::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                admin
                    .batch_execute(&statement)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!(
                "warning: could not drop test database {}: {error}",
                self.name
            ),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

/// A connection to the test server's administrative database, or a panic that
/// says how to start the server.
async fn connect_admin(admin_url: &str) -> AsyncPgConnection {
    let connect = postgres::connect(admin_url);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => postgres_unreachable(admin_url, &error.to_string()),
        Err(_) => postgres_unreachable(admin_url, "no answer within 10s"),
    }
}

fn postgres_unreachable(admin_url: &str, error: &str) -> ! {
    panic!(
        "PostgreSQL not reachable at {}: {error}\n\
         The PostgreSQL half of the suite needs a server where that user may CREATE DATABASE: \
         start the local one with `pg_ctlcluster --skip-systemctl-redirect 15 main start` \
         (`bash .ci/run` does), or point {POSTGRES_URL_ENV} at another one.",
        redact_password(admin_url)
    )
}

/// `url` with its database (the path) replaced by `name`; the query stays.
pub fn with_database(url: &str, name: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let (base, query) = match url.find('?') {
        Some(q) => url.split_at(q),
        None => (url, ""),
    };
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

/// A running service.
pub struct TestServer {
    /// Where gRPC, gRPC-Web, reflection and health listen.
    pub grpc_addr: SocketAddr,
    /// Where `/health` listens.
    pub http_addr: SocketAddr,
    /// The service's database; shared so a restart can reuse it.
    pub database: Arc<TestDatabase>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

/// Which cache the suite runs with: `memory` (the default configuration's),
/// `redis` (the Redis on [`REDIS_URL`]) or `off`.
pub const TEST_CACHE_ENV: &str = "INVENTORY_TEST_CACHE";

/// The Redis the tests use.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A configuration for tests on `database`: fast durability, the cache that
/// [`TEST_CACHE_ENV`] names, the sweeper and health monitor at their
/// defaults unless `tweak` changes them.
pub fn test_config(database: &TestDatabase) -> Config {
    let mut config = Config::default();
    database.configure(&mut config);
    config.server.shutdown_timeout = Duration::from_secs(5);
    config.cache.key_prefix = database.cache_prefix.clone();
    config.cache.redis_url = REDIS_URL.to_owned();
    match std::env::var(TEST_CACHE_ENV).as_deref() {
        Err(_) | Ok("" | "memory") => {}
        Ok("redis") => config.cache.cache_type = CacheType::Redis,
        Ok("off") => config.cache.enabled = false,
        Ok(other) => panic!("{TEST_CACHE_ENV} must be memory, redis or off, not {other:?}"),
    }
    config
}

/// Panics, saying how to start it, unless Redis answers at `url`: a test
/// of the Redis cache must not pass on misses alone.
pub async fn require_redis(url: &str) {
    let answer = async {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(5), answer).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => redis_unreachable(url, &error.to_string()),
        Err(_) => redis_unreachable(url, "no answer within 5s"),
    }
}

fn redis_unreachable(url: &str, error: &str) -> ! {
    panic!(
        "Redis not reachable at {url}: {error}\n\
         The Redis cache tests need it: start it with `redis-server --daemonize yes --bind 127.0.0.1 \
         --port 6379 --save \"\" --appendonly no` (`bash .ci/run` does)."
    )
}

impl TestServer {
    /// Starts a service with a fresh database on `backend`.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a service with a fresh database on `backend` and a tweaked
    /// configuration.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let database = Arc::new(TestDatabase::create(backend).await);
        Self::start_in(database, tweak).await
    }

    /// Starts a service on `database` (as a restart does).
    pub async fn start_in(database: Arc<TestDatabase>, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(&database);
        tweak(&mut config);
        if config.cache.enabled && config.cache.cache_type == CacheType::Redis {
            require_redis(&config.cache.redis_url).await;
        }
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let grpc_addr = grpc.local_addr().expect("grpc addr");
        let http_addr = http.local_addr().expect("http addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let mut task = tokio::spawn(server::serve(
            config,
            Listeners { grpc, http },
            async move {
                let _ = stopped.await;
            },
        ));
        // Fail with serve's own error if it stops before answering.
        tokio::select! {
            () = wait_until_healthy(http_addr) => {}
            ended = &mut task => panic!("the service stopped while starting: {ended:?}"),
        }
        Self {
            grpc_addr,
            http_addr,
            database,
            stop: Some(stop),
            task: Some(task),
        }
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

/// A loopback address nothing listens on: bound, then released (a
/// collector or webhook that is down).
pub fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
}

/// Sets a product's stock on hand over gRPC (creating it if needed).
pub async fn set_stock(client: &mut InventoryServiceClient<Channel>, product: &str, quantity: i32) {
    client
        .update_inventory(inventory_service::pb::UpdateInventoryRequest {
            product_id: product.into(),
            quantity,
            operation: "set".into(),
            ..Default::default()
        })
        .await
        .expect("set stock");
}

/// Polls `/health` until it answers 200 (at most 10s).
async fn wait_until_healthy(http_addr: SocketAddr) {
    let client = reqwest::Client::new();
    let url = format!("http://{http_addr}/health");
    for _ in 0..200 {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service did not become healthy within 10s");
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The sum of a metric's samples on the service's `/metrics` (every label
/// set), 0 when it has none.
pub async fn metric(server: &TestServer, name: &str) -> f64 {
    metrics_text(server)
        .await
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum of the samples of `name` whose labels include `label`, such as
/// `code="CANCELLED"`.
pub async fn metric_labelled(server: &TestServer, name: &str, label: &str) -> f64 {
    metrics_text(server)
        .await
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter(|rest| {
            rest.split('}')
                .next()
                .is_some_and(|labels| labels.split(',').any(|l| l == label))
        })
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The service's `/metrics` page.
pub async fn metrics_text(server: &TestServer) -> String {
    reqwest::get(server.http_url("/metrics"))
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("/metrics body")
}

/// The ErrorInfo reason of a status, if it carries one.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}
