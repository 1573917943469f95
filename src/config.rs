//! The configuration: `config/config.yaml` with the specification's sections (server,
//! database, tracing, cache, inventory, logging), then environment variables
//! `INVENTORY_<SECTION>__<KEY>` (for example `INVENTORY_SERVER__HTTP_PORT=8080`
//! or `INVENTORY_DATABASE__DSN=/var/lib/inventory/inventory.db`).
//!
//! Every key has a default, so the service runs with no file at all. Unknown
//! keys, wrong types and values out of range fail at start with a message that
//! names the key. Durations are written as in the specification: `"10s"`, `"5m"`.
//!
//! # Databases
//! `database.driver` picks the backend:
//! - `sqlite` (the default): `database.dsn` is a file path, created with its
//!   directory; `busy_timeout` and `synchronous` apply.
//! - `postgres`: `database.dsn` is a `postgres://` or `postgresql://` URL
//!   (`postgres://user:password@host:5432/inventory`) of an existing database;
//!   the schema is migrated at start. `busy_timeout` and `synchronous` are
//!   ignored.
//!
//! With the `postgres` driver, the [`DATABASE_URL_ENV`] environment variable
//! (`DATABASE_URL`), when set and not empty, overrides `database.dsn` from the
//! file and from `INVENTORY_DATABASE__DSN`, as platforms that provision a
//! database announce it that way. The `sqlite` driver ignores it, so a
//! `DATABASE_URL` exported for other tools never moves the embedded database.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format as _, Yaml};
use serde::Deserialize;

/// Where `cargo run` looks for the configuration when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/config.yaml";
/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "INVENTORY_";
/// The environment variable that, with the `postgres` driver, overrides
/// `database.dsn`.
pub const DATABASE_URL_ENV: &str = "DATABASE_URL";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Identity and listening ports.
    pub server: ServerConfig,
    /// The database backend and its pool.
    pub database: DatabaseConfig,
    /// Distributed tracing export.
    pub tracing: TracingConfig,
    /// The stock cache.
    pub cache: CacheConfig,
    /// Alerts on read-only mode.
    pub alerting: AlertingConfig,
    /// Who may call what.
    pub auth: AuthConfig,
    /// Reservation rules and the expiry sweeper.
    pub inventory: InventoryConfig,
    /// Log level and format.
    pub logging: LoggingConfig,
    /// How REST/JSON requests are read and answered.
    pub rest: RestConfig,
}

/// The `server` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Service name reported by `/health` and in logs.
    pub name: String,
    /// Service version reported by `/health`.
    pub version: String,
    /// Address both ports listen on.
    pub host: IpAddr,
    /// HTTP port: `/health` (and REST).
    pub http_port: u16,
    /// gRPC port: gRPC, gRPC-Web, reflection, health.
    pub grpc_port: u16,
    /// How long shutdown waits for in-flight requests before giving up.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// The deadline of a call whose client sends none, and the longest a
    /// client's deadline may be: past it the call is abandoned (nothing it
    /// had not committed is applied) and answered DEADLINE_EXCEEDED / 504.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Calls served at once (over both ports; health and reflection are
    /// not counted). By Little's law the calls inside the service are its
    /// rate times their latency: the limit bounds the latency of a sustained
    /// flood (see the README's overload benchmark); bursts past it wait in
    /// the queue below instead of being refused.
    pub max_in_flight: usize,
    /// Calls that may wait for a turn when `max_in_flight` run; more are
    /// refused at once with RESOURCE_EXHAUSTED / 429 and `Retry-After`.
    pub max_queued: usize,
    /// Longest wait for a turn while the queue is absorbing a burst (it has
    /// emptied within `standing_queue_after`); past it a queued call is
    /// refused the same way.
    #[serde(with = "humantime_serde")]
    pub max_queue_wait: Duration,
    /// A queue that has not emptied for this long is standing (a sustained
    /// overload, not a burst): new calls then wait at most a quarter of it
    /// for a turn (see [`crate::guard::ShedLayer`]).
    #[serde(with = "humantime_serde")]
    pub standing_queue_after: Duration,
    /// Connections open at once over both ports; more are closed as soon as
    /// they are accepted (logged, and counted in
    /// `inventory_connections_refused_total`).
    pub max_connections: usize,
    /// A connection that moves no bytes for this long is closed (a client
    /// that connects and sends nothing, or stops halfway).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged; a peer that does not answer
    /// within `http2_keepalive_timeout` is gone, and its connection closed.
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_interval: Duration,
    /// How long an HTTP/2 ping may go unanswered.
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_timeout: Duration,
    /// The HPACK table, in bytes, HTTP/2 clients may fill with the header
    /// fields they send (SETTINGS_HEADER_TABLE_SIZE). 0, the default:
    /// clients send their header fields in full with each request (about
    /// 100 bytes more per call) and a connection keeps none between calls,
    /// which is 5 MiB less at 1,000 busy connections; 4096 is HTTP/2's own
    /// default.
    pub http2_header_table_size: u32,
    /// Origins whose pages may call the service from a browser (CORS):
    /// `https://shop.example.com`, or `*` for any origin (not honoured with
    /// `auth.enabled`). Empty: no cross-origin calls.
    pub cors_allowed_origins: Vec<String>,
    /// TLS on both ports: the certificate chain (PEM), with `tls_key_file`;
    /// both empty: plain TCP.
    pub tls_cert_file: String,
    /// The certificate's private key (PEM).
    pub tls_key_file: String,
    /// How often the two files are looked at; a change is loaded for new
    /// connections without a restart.
    #[serde(with = "humantime_serde")]
    pub tls_reload_interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            name: "inventory-service".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            http_port: 8083,
            grpc_port: 9083,
            shutdown_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            max_in_flight: 64,
            max_queued: 1024,
            max_queue_wait: Duration::from_secs(1),
            standing_queue_after: Duration::from_millis(20),
            max_connections: 4096,
            idle_timeout: Duration::from_secs(60),
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            http2_header_table_size: 0,
            cors_allowed_origins: Vec::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_reload_interval: Duration::from_secs(10),
        }
    }
}

/// Which database backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// The embedded default: one file, no setup.
    Sqlite,
    /// PostgreSQL: one database shared by several replicas.
    Postgres,
}

/// SQLite's durability of commits (`database.synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: an acknowledged write survives power loss.
    Full,
    /// fsync at checkpoints: several times the write throughput; survives a
    /// process crash, may lose the last commits on power loss.
    Normal,
}

/// The transaction isolation level of PostgreSQL (`database.isolation_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationLevel {
    /// PostgreSQL's default; rows are locked as they are read.
    ReadCommitted,
    /// One snapshot per transaction; a row changed by another transaction
    /// since is a serialization failure, which the service retries.
    RepeatableRead,
    /// As if transactions ran one after another; serialization failures are
    /// retried by the service.
    Serializable,
}

/// The `database` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite` or `postgres`.
    pub driver: Driver,
    /// SQLite: the database file path (created with its directory).
    /// PostgreSQL: a `postgres://` URL; `DATABASE_URL` overrides it.
    pub dsn: String,
    /// Most pooled connections.
    pub max_connections: u32,
    /// Connections kept open when idle (at most `max_connections`).
    pub max_idle_connections: u32,
    /// How long a request waits for a connection.
    #[serde(with = "humantime_serde")]
    pub connection_timeout: Duration,
    /// SQLite: how long a writer waits for the write lock (PostgreSQL
    /// ignores it).
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// PostgreSQL only: the longest a statement may run, or a transaction
    /// stay idle, on the server (a lock wait included); "0s": no limit.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// SQLite: `full` (survives power loss) or `normal` (faster) (PostgreSQL
    /// ignores it).
    pub synchronous: Synchronous,
    /// PostgreSQL: `read_committed` (the default), `repeatable_read` or
    /// `serializable` (SQLite ignores it: its transactions are serializable).
    pub isolation_level: IsolationLevel,
    /// How often the health checker pings the database.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// Most attempts of a store call that fails transiently, the first
    /// included (1: no retry). Retries never start later than
    /// `connection_timeout` after the first attempt.
    pub retry_attempts: u32,
    /// The longest wait between two attempts (waits start at up to 25ms and
    /// double, with full jitter).
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
}

impl DatabaseConfig {
    /// With the `postgres` driver, replaces `dsn` by `database_url` (the value
    /// of `DATABASE_URL`) when it is set and not empty.
    pub fn apply_database_url(
        &mut self,
        database_url: Option<std::ffi::OsString>,
    ) -> Result<(), ConfigError> {
        let Some(url) = database_url.filter(|url| !url.is_empty()) else {
            return Ok(());
        };
        if self.driver != Driver::Postgres {
            return Ok(());
        }
        self.dsn = url.into_string().map_err(|_| ConfigError::Invalid {
            key: DATABASE_URL_ENV,
            reason: "is not valid UTF-8".to_owned(),
        })?;
        Ok(())
    }
}

/// Whether `dsn` names a PostgreSQL database rather than a file.
fn is_postgres_url(dsn: &str) -> bool {
    let dsn = dsn.trim_start().to_ascii_lowercase();
    dsn.starts_with("postgres://") || dsn.starts_with("postgresql://")
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            driver: Driver::Sqlite,
            dsn: "./data/inventory.db".to_owned(),
            max_connections: 10,
            max_idle_connections: 5,
            connection_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Full,
            isolation_level: IsolationLevel::ReadCommitted,
            health_check_interval: Duration::from_secs(5),
            retry_attempts: 4,
            retry_max_backoff: Duration::from_millis(400),
        }
    }
}

/// How spans and metrics travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP over gRPC (Jaeger and the collector listen on 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318, `/v1/traces`).
    Http,
}

/// The `tracing` section: OpenTelemetry export of traces and metrics.
///
/// The standard `OTEL_*` environment variables override it (see
/// [`TracingConfig::apply_otel_env`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// Whether spans and metrics are exported over OTLP.
    pub enabled: bool,
    /// The collector endpoint, the specification's key. Jaeger accepts OTLP on 4317
    /// (gRPC) and 4318 (HTTP); [`Self::endpoint`] takes precedence.
    pub jaeger_endpoint: String,
    /// The collector endpoint under its protocol-neutral name; when set it
    /// wins over `jaeger_endpoint`.
    pub endpoint: Option<String>,
    /// `grpc` (the default) or `http` (HTTP/protobuf).
    pub protocol: OtlpProtocol,
    /// The service name spans carry.
    pub service_name: String,
    /// Fraction of new traces sampled, 0.0 to 1.0; a caller's sampling
    /// decision (the `traceparent` flag) is followed.
    pub sampling_rate: f64,
    /// How long finished spans wait to be sent in a batch; also the
    /// interval of OTLP metric export.
    #[serde(with = "humantime_serde")]
    pub export_interval: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            jaeger_endpoint: "http://localhost:4317".to_owned(),
            endpoint: None,
            protocol: OtlpProtocol::Grpc,
            service_name: "inventory-service".to_owned(),
            sampling_rate: 1.0,
            export_interval: Duration::from_secs(5),
        }
    }
}

impl TracingConfig {
    /// The endpoint spans go to: `endpoint` if set, else `jaeger_endpoint`.
    pub fn collector_endpoint(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(&self.jaeger_endpoint)
    }

    /// Applies the standard OpenTelemetry environment variables, which win
    /// over the file: `OTEL_SDK_DISABLED=true` turns export off,
    /// `OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`), `OTEL_EXPORTER_OTLP_PROTOCOL`
    /// (`grpc` or `http/protobuf`), `OTEL_TRACES_SAMPLER_ARG` (the ratio) and
    /// `OTEL_BSP_SCHEDULE_DELAY` (milliseconds). `env` looks a variable up.
    pub fn apply_otel_env(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            self.enabled = false;
        }
        if let Some(name) = get("OTEL_SERVICE_NAME") {
            self.service_name = name;
        }
        if let Some(endpoint) =
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        {
            self.endpoint = Some(endpoint);
        }
        if let Some(protocol) =
            get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        {
            self.protocol = match protocol.trim() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::Http,
                other => {
                    return Err(ConfigError::Invalid {
                        key: "OTEL_EXPORTER_OTLP_PROTOCOL",
                        reason: format!("must be grpc or http/protobuf, got {other:?}"),
                    });
                }
            };
        }
        if let Some(ratio) = get("OTEL_TRACES_SAMPLER_ARG") {
            self.sampling_rate = ratio.trim().parse().map_err(|_| ConfigError::Invalid {
                key: "OTEL_TRACES_SAMPLER_ARG",
                reason: format!("must be a number between 0.0 and 1.0, got {ratio:?}"),
            })?;
        }
        if let Some(delay) = get("OTEL_BSP_SCHEDULE_DELAY") {
            let ms: u64 = delay.trim().parse().map_err(|_| ConfigError::Invalid {
                key: "OTEL_BSP_SCHEDULE_DELAY",
                reason: format!("must be milliseconds, got {delay:?}"),
            })?;
            self.export_interval = Duration::from_millis(ms);
        }
        Ok(())
    }
}

/// Where the cache lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheType {
    /// In-process.
    Memory,
    /// A Redis server.
    Redis,
}

/// The `cache` section: a cache of products' stock that answers
/// `CheckInventory`, and `ListInventory` while the database is down.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Whether stock reads are cached.
    pub enabled: bool,
    /// `memory` (in the process; other replicas' writes heard through
    /// PostgreSQL `LISTEN/NOTIFY`) or `redis` (shared by the replicas).
    #[serde(rename = "type")]
    pub cache_type: CacheType,
    /// How long an entry lives.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Most products the memory cache holds (Redis is bounded by its own
    /// `maxmemory`).
    pub max_size: u64,
    /// The Redis server (`type: redis`).
    pub redis_url: String,
    /// Prefix of the Redis keys (`{prefix}:stock:<product id>`): replicas
    /// that share stock share it; services sharing a Redis differ.
    pub key_prefix: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cache_type: CacheType::Memory,
            ttl: Duration::from_secs(300),
            max_size: 1000,
            redis_url: "redis://127.0.0.1:6379".into(),
            key_prefix: "inventory".into(),
        }
    }
}

/// The `alerting` section: who is told when the service goes read-only and
/// when it is back.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertingConfig {
    /// Where each transition is POSTed as JSON (none when empty).
    pub webhook_url: String,
    /// How long one POST may take.
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Tries of one alert in all (1: no retry), with a growing pause.
    pub webhook_attempts: u32,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            webhook_url: String::new(),
            webhook_timeout: Duration::from_secs(5),
            webhook_attempts: 5,
        }
    }
}

/// The `auth` section: bearer tokens and the scopes they grant. Off by
/// default; with `enabled`, every inventory call needs a token with its
/// scope (`inventory.read`, `inventory.reserve` or `inventory.admin`);
/// health, reflection, `/metrics` and `/openapi.json` stay open.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether calls need a token.
    pub enabled: bool,
    /// Static tokens, each known by the SHA-256 of its text.
    pub tokens: Vec<TokenConfig>,
    /// Signed JSON Web Tokens.
    pub jwt: JwtConfig,
}

/// A static bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it: recorded as the actor of every change it makes.
    pub name: String,
    /// The SHA-256 of the token, in hex (`printf %s "$TOKEN" | sha256sum`):
    /// the token itself is never written down.
    pub sha256: String,
    /// What it may do.
    pub scopes: Vec<String>,
}

/// JSON Web Tokens: HS256 with a shared secret, RS256 or ES256 with a public
/// key (PEM) or a JWKS file. `exp` is required; `nbf`, `iss` and `aud` are
/// checked. Scopes come from the `scope` claim (space-separated) or `scp`
/// (a list); the actor is `sub`.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud` (one of the token's).
    pub audience: String,
    /// The HS256 secret (better from the environment:
    /// `INVENTORY_AUTH__JWT__HS256_SECRET`).
    pub hs256_secret: String,
    /// A PEM file with an RSA (RS256) or EC P-256 (ES256) public key.
    pub public_key_file: String,
    /// A JWKS file (RS256 and ES256 keys, chosen by `kid`).
    pub jwks_file: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: String::new(),
            hs256_secret: String::new(),
            public_key_file: String::new(),
            jwks_file: String::new(),
            leeway: Duration::from_secs(30),
        }
    }
}

impl JwtConfig {
    /// Whether any key is configured.
    pub fn is_configured(&self) -> bool {
        !(self.hs256_secret.is_empty()
            && self.public_key_file.is_empty()
            && self.jwks_file.is_empty())
    }
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field(
                "hs256_secret",
                &if self.hs256_secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("public_key_file", &self.public_key_file)
            .field("jwks_file", &self.jwks_file)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// The scopes a token may grant.
pub const SCOPES: [&str; 3] = ["inventory.read", "inventory.reserve", "inventory.admin"];

/// The `inventory` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryConfig {
    /// Timeout of a reservation whose request gives none.
    #[serde(with = "humantime_serde")]
    pub default_reservation_timeout: Duration,
    /// Longest timeout a request may ask for.
    #[serde(with = "humantime_serde")]
    pub max_reservation_timeout: Duration,
    /// How often the sweeper releases expired reservations.
    #[serde(with = "humantime_serde")]
    pub cleanup_interval: Duration,
    /// Reservations expired per sweeper transaction.
    pub cleanup_batch_size: u32,
    /// Whether checks are written to the history (off: a read costs no write).
    pub record_checks: bool,
    /// How long the first result of a write made with a `request_id` is kept
    /// for its retries; the sweeper forgets older ones.
    #[serde(with = "humantime_serde")]
    pub request_id_ttl: Duration,
    /// Group commit: changes of stock that arrive together are applied in
    /// one transaction.
    pub batch: BatchConfig,
    /// Live stock events (WatchInventory).
    pub events: EventsConfig,
    /// How often the whole stock is read for the stock value and units
    /// gauges (`inventory_stock_value_minor_units`, `inventory_stock_units`).
    #[serde(with = "humantime_serde")]
    pub stock_value_interval: Duration,
    /// Stock set at start for products that do not exist yet (product id to
    /// quantity). The shipped config file stocks the specification's example products
    /// so its curl examples work on a fresh database; the default is none.
    pub initial_stock: std::collections::BTreeMap<String, i32>,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            default_reservation_timeout: Duration::from_secs(300),
            max_reservation_timeout: Duration::from_secs(24 * 3600),
            cleanup_interval: Duration::from_secs(60),
            cleanup_batch_size: 500,
            record_checks: false,
            request_id_ttl: Duration::from_secs(24 * 3600),
            batch: BatchConfig::default(),
            events: EventsConfig::default(),
            stock_value_interval: Duration::from_secs(30),
            initial_stock: std::collections::BTreeMap::new(),
        }
    }
}

/// The `inventory.batch` section: group commit.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Reservations, order reservations, releases, commits and updates that
    /// arrive together are applied in one transaction; false: one
    /// transaction per call.
    pub enabled: bool,
    /// Most calls in one transaction.
    pub max_size: usize,
    /// How long a batch that is not full may wait for more calls when the
    /// writer is idle; 0 (the default) never waits, so a lone call is
    /// applied at once.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// PostgreSQL: how many batches are applied at once, each in its own
    /// transaction, by product. More lanes overlap more commits; fewer make
    /// larger batches, which cost the database less per call. Two suit a
    /// two-core machine (measured: see the README's benchmarks). SQLite has
    /// one writer and uses one.
    pub lanes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_size: 128,
            max_wait: Duration::ZERO,
            lanes: 2,
        }
    }
}

/// The `inventory.events` section: live stock events (WatchInventory).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Whether changes of stock are written to the events outbox, in their
    /// transactions. Off: WatchInventory is refused (FAILED_PRECONDITION),
    /// and on PostgreSQL commits no longer take the outbox's lock, which
    /// matters with group commit off (see the README's benchmarks).
    pub enabled: bool,
    /// How long events are kept in the outbox, so that a watch can resume
    /// from a position that old; the sweeper forgets older ones.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How many events the service keeps in memory for watches that are
    /// behind; a watch further behind is ended (RESOURCE_EXHAUSTED) and
    /// resumes from its position.
    pub buffer: usize,
    /// How often the outbox is read when no notification came (a safety
    /// net: commits wake the watches at once, on PostgreSQL through
    /// `LISTEN/NOTIFY` across replicas).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention: Duration::from_secs(24 * 3600),
            buffer: 4096,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Most events kept in memory for watches that are behind.
pub const MAX_EVENT_BUFFER: usize = 1 << 20;

/// The `rest` section: the JSON mapping of the REST and Connect layer.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestConfig {
    /// Answer with proto field names (`product_id`, as the specification writes
    /// them); false for lowerCamelCase (`productId`). Requests may use either.
    pub use_proto_field_names: bool,
    /// Answer with fields at their default value (`"available": false`,
    /// `"reserved_quantity": 0`); false to omit them.
    pub emit_unpopulated: bool,
    /// Refuse unknown JSON fields and query parameters with 400; false to
    /// ignore them.
    pub reject_unknown_fields: bool,
    /// Largest request body in bytes (413 above).
    pub max_body_size: usize,
}

impl Default for RestConfig {
    fn default() -> Self {
        Self {
            use_proto_field_names: true,
            emit_unpopulated: true,
            reject_unknown_fields: true,
            max_body_size: 1024 * 1024,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// The `logging` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// A level (`info`) or filter directives (`info,inventory_service=debug`);
    /// `RUST_LOG` overrides it.
    pub level: String,
    /// `json` or `text`.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Json,
        }
    }
}

/// A configuration that could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config` does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// A key has the wrong type, or is unknown.
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    /// A key has a value out of range.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// The key, as `section.key`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// Loads `path` (or [`DEFAULT_CONFIG_PATH`] if it exists), applies the
    /// environment overrides and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        match path {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => figment = figment.merge(Yaml::file_exact(path)),
            None => {
                if Path::new(DEFAULT_CONFIG_PATH).exists() {
                    figment = figment.merge(Yaml::file_exact(DEFAULT_CONFIG_PATH));
                }
            }
        }
        // Every key is in a section (INVENTORY_<SECTION>__<KEY>); other
        // INVENTORY_* variables (the tests' INVENTORY_TEST_*) are not ours.
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        let mut config = Self::extract(figment.merge(env))?;
        config
            .database
            .apply_database_url(std::env::var_os(DATABASE_URL_ENV))?;
        config
            .tracing
            .apply_otel_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Extracts and validates a configuration from any figment.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config = Self::extract(figment)?;
        config.validate()?;
        Ok(config)
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        figment
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))
    }

    /// Checks the values that types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                key,
                reason: reason.into(),
            })
        }
        let s = &self.server;
        if s.http_port != 0 && s.http_port == s.grpc_port {
            return invalid("server.grpc_port", "must differ from server.http_port");
        }
        if s.tls_cert_file.is_empty() != s.tls_key_file.is_empty() {
            return invalid(
                "server.tls_cert_file",
                "TLS needs both server.tls_cert_file and server.tls_key_file (or neither)",
            );
        }
        if s.max_in_flight == 0 {
            return invalid("server.max_in_flight", "must be at least 1");
        }
        if s.max_connections == 0 {
            return invalid("server.max_connections", "must be at least 1");
        }
        for origin in &s.cors_allowed_origins {
            if origin != "*"
                && (!(origin.starts_with("http://") || origin.starts_with("https://"))
                    || origin.trim_end_matches('/').matches('/').count() != 2
                    || http::HeaderValue::from_str(origin).is_err())
            {
                return invalid(
                    "server.cors_allowed_origins",
                    format!("{origin:?} is not an origin: write scheme://host[:port], or \"*\""),
                );
            }
        }
        let a = &self.auth;
        for token in &a.tokens {
            if token.name.trim().is_empty() {
                return invalid("auth.tokens", "every token needs a name");
            }
            if token.sha256.len() != 64 || !token.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid(
                    "auth.tokens",
                    format!(
                        "{}: sha256 must be the 64 hex digits of the token's SHA-256",
                        token.name
                    ),
                );
            }
            if let Some(unknown) = token.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
                return invalid(
                    "auth.tokens",
                    format!(
                        "{}: unknown scope {unknown:?}; the scopes are {}",
                        token.name,
                        SCOPES.join(", ")
                    ),
                );
            }
        }
        if a.jwt.is_configured() && (a.jwt.issuer.is_empty() || a.jwt.audience.is_empty()) {
            return invalid(
                "auth.jwt",
                "issuer and audience must be set with a key: tokens are checked against both",
            );
        }
        if a.enabled && a.tokens.is_empty() && !a.jwt.is_configured() {
            return invalid(
                "auth.enabled",
                "no auth.tokens and no auth.jwt key: nobody could call the service",
            );
        }
        let d = &self.database;
        if d.dsn.trim().is_empty() {
            return invalid("database.dsn", "must not be empty");
        }
        match d.driver {
            Driver::Sqlite if d.dsn.contains(":memory:") || d.dsn.starts_with("file:") => {
                return invalid(
                    "database.dsn",
                    "must be a file path: an in-memory database would be one per pooled connection",
                );
            }
            Driver::Sqlite if is_postgres_url(&d.dsn) => {
                return invalid(
                    "database.dsn",
                    "is a PostgreSQL URL but database.driver is \"sqlite\"; set it to \"postgres\"",
                );
            }
            Driver::Postgres if !is_postgres_url(&d.dsn) => {
                return invalid(
                    "database.dsn",
                    "must be a postgres:// or postgresql:// URL with the postgres driver",
                );
            }
            Driver::Sqlite | Driver::Postgres => {}
        }
        if d.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if d.retry_attempts == 0 {
            return invalid(
                "database.retry_attempts",
                "must be at least 1 (1: no retry)",
            );
        }
        if d.max_idle_connections > d.max_connections {
            return invalid(
                "database.max_idle_connections",
                "must not exceed database.max_connections",
            );
        }
        for (key, value) in [
            ("server.request_timeout", s.request_timeout),
            ("server.idle_timeout", s.idle_timeout),
            ("server.tls_reload_interval", s.tls_reload_interval),
            (
                "server.http2_keepalive_interval",
                s.http2_keepalive_interval,
            ),
            ("server.http2_keepalive_timeout", s.http2_keepalive_timeout),
            ("database.connection_timeout", d.connection_timeout),
            ("database.health_check_interval", d.health_check_interval),
            ("database.retry_max_backoff", d.retry_max_backoff),
            (
                "inventory.cleanup_interval",
                self.inventory.cleanup_interval,
            ),
            (
                "inventory.default_reservation_timeout",
                self.inventory.default_reservation_timeout,
            ),
            ("inventory.request_id_ttl", self.inventory.request_id_ttl),
            (
                "inventory.events.retention",
                self.inventory.events.retention,
            ),
            (
                "inventory.stock_value_interval",
                self.inventory.stock_value_interval,
            ),
            (
                "inventory.events.poll_interval",
                self.inventory.events.poll_interval,
            ),
        ] {
            if value.is_zero() {
                return invalid(key, "must be longer than zero");
            }
        }
        let buffer = self.inventory.events.buffer;
        if !(1..=MAX_EVENT_BUFFER).contains(&buffer) {
            return invalid(
                "inventory.events.buffer",
                format!("must be between 1 and {MAX_EVENT_BUFFER}, got {buffer}"),
            );
        }
        let rate = self.tracing.sampling_rate;
        if !(0.0..=1.0).contains(&rate) {
            return invalid(
                "tracing.sampling_rate",
                format!("must be between 0.0 and 1.0, got {rate}"),
            );
        }
        if self.tracing.export_interval.is_zero() {
            return invalid("tracing.export_interval", "must be longer than zero");
        }
        let endpoint = self.tracing.collector_endpoint();
        if endpoint.trim().is_empty() {
            return invalid("tracing.endpoint", "must not be empty");
        }
        // The exporters are built without TLS: an https:// endpoint would
        // fail at start (gRPC) or on every export (HTTP).
        if self.tracing.enabled && !endpoint.starts_with("http://") {
            return invalid(
                "tracing.endpoint",
                format!(
                    "must be an http:// URL (spans go out as plain OTLP, as to a collector or agent \
                     beside the service, which may forward them over TLS), got {endpoint:?}"
                ),
            );
        }
        if self.cache.enabled && self.cache.max_size == 0 {
            return invalid(
                "cache.max_size",
                "must be at least 1 when the cache is enabled",
            );
        }
        if self.cache.enabled && self.cache.ttl.is_zero() {
            return invalid("cache.ttl", "must be longer than zero");
        }
        if self.cache.enabled
            && self.cache.cache_type == CacheType::Redis
            && !self.cache.redis_url.starts_with("redis://")
            && !self.cache.redis_url.starts_with("unix://")
        {
            return invalid(
                "cache.redis_url",
                format!(
                    "must be a redis:// or unix:// URL, got {:?}",
                    self.cache.redis_url
                ),
            );
        }
        if self.cache.key_prefix.is_empty() || self.cache.key_prefix.contains(['{', '}']) {
            return invalid("cache.key_prefix", "must be non-empty, without braces");
        }
        let alerting = &self.alerting;
        if !alerting.webhook_url.is_empty()
            && !alerting.webhook_url.starts_with("http://")
            && !alerting.webhook_url.starts_with("https://")
        {
            return invalid(
                "alerting.webhook_url",
                format!("must be an http(s) URL, got {:?}", alerting.webhook_url),
            );
        }
        if alerting.webhook_timeout.is_zero() {
            return invalid("alerting.webhook_timeout", "must be longer than zero");
        }
        if alerting.webhook_attempts == 0 {
            return invalid("alerting.webhook_attempts", "must be at least 1");
        }
        let inv = &self.inventory;
        if inv.default_reservation_timeout > inv.max_reservation_timeout {
            return invalid(
                "inventory.default_reservation_timeout",
                "must not exceed inventory.max_reservation_timeout",
            );
        }
        if inv.max_reservation_timeout > Duration::from_secs(i32::MAX as u64) {
            return invalid(
                "inventory.max_reservation_timeout",
                format!("must be at most {} seconds", i32::MAX),
            );
        }
        if inv.cleanup_batch_size == 0 {
            return invalid("inventory.cleanup_batch_size", "must be at least 1");
        }
        if !(1..=1000).contains(&inv.batch.max_size) {
            return invalid("inventory.batch.max_size", "must be between 1 and 1000");
        }
        if !(1..=64).contains(&inv.batch.lanes) {
            return invalid("inventory.batch.lanes", "must be between 1 and 64");
        }
        if inv.batch.max_wait > Duration::from_secs(1) {
            return invalid("inventory.batch.max_wait", "must be at most 1s");
        }
        for (product, quantity) in &inv.initial_stock {
            if product.is_empty() || product.chars().count() > 255 || *quantity < 0 {
                return invalid(
                    "inventory.initial_stock",
                    format!(
                        "{product:?}: needs an id of 1 to 255 characters and a quantity of 0 or more"
                    ),
                );
            }
        }
        if self.rest.max_body_size == 0 {
            return invalid("rest.max_body_size", "must be at least 1 byte");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.logging.level) {
            return invalid(
                "logging.level",
                format!("is not a valid level or filter: {e}"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_figment(Figment::new().merge(Yaml::string(yaml)))
    }

    #[test]
    fn otel_environment_variables_override_the_file() {
        let mut config = from_yaml(
            "tracing:\n  enabled: true\n  jaeger_endpoint: http://jaeger:4317\n  sampling_rate: 0.5\n",
        )
        .expect("valid");
        assert_eq!(config.tracing.collector_endpoint(), "http://jaeger:4317");
        let env = |name: &str| {
            match name {
                "OTEL_SERVICE_NAME" => Some("inv-a"),
                "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4318"),
                "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/protobuf"),
                "OTEL_TRACES_SAMPLER_ARG" => Some("0.25"),
                "OTEL_SDK_DISABLED" => Some("true"),
                _ => None,
            }
            .map(str::to_owned)
        };
        config.tracing.apply_otel_env(env).expect("valid variables");
        assert!(!config.tracing.enabled);
        assert_eq!(config.tracing.service_name, "inv-a");
        assert_eq!(config.tracing.collector_endpoint(), "http://collector:4318");
        assert_eq!(config.tracing.protocol, OtlpProtocol::Http);
        assert_eq!(config.tracing.sampling_rate, 0.25);
        let error = config
            .tracing
            .apply_otel_env(|name| {
                (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "carrier-pigeon".to_owned())
            })
            .expect_err("unknown protocol");
        assert!(
            error.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{error}"
        );
    }

    #[test]
    fn defaults_match_the_seed() {
        let config = from_yaml("").expect("defaults are valid");
        assert_eq!(config.server.http_port, 8083);
        assert_eq!(config.server.grpc_port, 9083);
        assert_eq!(config.database.driver, Driver::Sqlite);
        assert_eq!(config.database.dsn, "./data/inventory.db");
        assert_eq!(config.database.max_connections, 10);
        assert_eq!(config.database.connection_timeout, Duration::from_secs(10));
        assert_eq!(config.database.retry_attempts, 4);
        assert_eq!(
            config.database.retry_max_backoff,
            Duration::from_millis(400)
        );
        assert_eq!(
            config.inventory.default_reservation_timeout,
            Duration::from_secs(300)
        );
        assert_eq!(config.inventory.cleanup_interval, Duration::from_secs(60));
        assert!(!config.inventory.record_checks);
        assert_eq!(config.logging.format, LogFormat::Json);
    }

    #[test]
    fn the_shipped_config_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        let config = Config::from_figment(Figment::new().merge(Yaml::file_exact(path)))
            .expect("config/config.yaml is valid");
        assert_eq!(config.server.name, "inventory-service");
        assert_eq!(config.cache.cache_type, CacheType::Memory);
        assert_eq!(config.tracing.sampling_rate, 1.0);
    }

    #[test]
    fn retries_are_configured_in_the_database_section() {
        let config = from_yaml("database:\n  retry_attempts: 1\n  retry_max_backoff: \"1s\"\n")
            .expect("valid");
        assert_eq!(config.database.retry_attempts, 1);
        assert_eq!(config.database.retry_max_backoff, Duration::from_secs(1));
    }

    #[test]
    fn seed_durations_parse() {
        let config = from_yaml(
            "database:\n  connection_timeout: \"10s\"\ninventory:\n  default_reservation_timeout: \"5m\"\n  cleanup_interval: \"1m\"\n",
        )
        .expect("valid");
        assert_eq!(config.database.connection_timeout, Duration::from_secs(10));
        assert_eq!(
            config.inventory.default_reservation_timeout,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("server:\n  http_port: \"eighty\"\n", "http_port"),
            ("server:\n  grpc_port: 8083\n", "server.grpc_port"),
            ("database:\n  driver: mysql\n", "driver"),
            (
                "database:\n  max_connections: 0\n",
                "database.max_connections",
            ),
            ("database:\n  dsn: \":memory:\"\n", "database.dsn"),
            (
                "database:\n  retry_attempts: 0\n",
                "database.retry_attempts",
            ),
            (
                "database:\n  retry_max_backoff: \"0s\"\n",
                "database.retry_max_backoff",
            ),
            (
                "database:\n  driver: postgres\n  dsn: \"./data/inventory.db\"\n",
                "database.dsn",
            ),
            (
                "database:\n  driver: postgres\n  dsn: \"mysql://db/inventory\"\n",
                "database.dsn",
            ),
            (
                "database:\n  dsn: \"postgres://db/inventory\"\n",
                "database.dsn",
            ),
            ("tracing:\n  sampling_rate: 1.5\n", "tracing.sampling_rate"),
            (
                "tracing:\n  enabled: true\n  endpoint: \"https://collector.example.com:4317\"\n",
                "tracing.endpoint",
            ),
            (
                "tracing:\n  enabled: true\n  jaeger_endpoint: \"localhost:4317\"\n",
                "tracing.endpoint",
            ),
            (
                "inventory:\n  cleanup_interval: \"soon\"\n",
                "cleanup_interval",
            ),
            (
                "inventory:\n  cleanup_interval: \"0s\"\n",
                "inventory.cleanup_interval",
            ),
            (
                "inventory:\n  default_reservation_timeout: \"2d\"\n  max_reservation_timeout: \"1d\"\n",
                "inventory.default_reservation_timeout",
            ),
            ("logging:\n  level: \"loud=+\"\n", "logging.level"),
            ("logging:\n  colour: true\n", "colour"),
            ("cache:\n  type: memcached\n", "type"),
        ];
        for (yaml, key) in cases {
            let error = from_yaml(yaml).expect_err(yaml).to_string();
            assert!(error.contains(key), "{yaml:?}: {error:?} should name {key}");
        }
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail's closure signature returns figment::Error"
    )]
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("config.yaml", "server:\n  http_port: 8000\n")?;
            jail.set_env("INVENTORY_SERVER__HTTP_PORT", "8100");
            jail.set_env("INVENTORY_INVENTORY__RECORD_CHECKS", "true");
            let config = Config::load(Some(Path::new("config.yaml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.server.http_port, 8100);
            assert!(config.inventory.record_checks);
            Ok(())
        });
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail's closure signature returns figment::Error"
    )]
    fn origins_tokens_and_secrets_come_from_the_environment_too() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("config.yaml", "server:\n  http_port: 8000\n")?;
            jail.set_env(
                "INVENTORY_SERVER__CORS_ALLOWED_ORIGINS",
                r#"["https://shop.example.com", "http://localhost:5173"]"#,
            );
            jail.set_env("INVENTORY_AUTH__ENABLED", "true");
            jail.set_env(
                "INVENTORY_AUTH__TOKENS",
                format!(
                    r#"[{{name="ops", sha256="{}", scopes=["inventory.read", "inventory.admin"]}}]"#,
                    "ab".repeat(32)
                ),
            );
            jail.set_env("INVENTORY_AUTH__JWT__HS256_SECRET", "from-the-environment");
            jail.set_env("INVENTORY_AUTH__JWT__ISSUER", "https://login.example.com");
            jail.set_env("INVENTORY_AUTH__JWT__AUDIENCE", "inventory");
            let config = Config::load(Some(Path::new("config.yaml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                config.server.cors_allowed_origins,
                ["https://shop.example.com", "http://localhost:5173"]
            );
            assert!(config.auth.enabled);
            assert_eq!(config.auth.tokens.len(), 1);
            assert_eq!(config.auth.tokens[0].name, "ops");
            assert_eq!(
                config.auth.tokens[0].scopes,
                ["inventory.read", "inventory.admin"]
            );
            assert_eq!(config.auth.jwt.hs256_secret, "from-the-environment");
            assert!(
                !format!("{config:?}").contains("from-the-environment"),
                "the secret is never printed"
            );
            Ok(())
        });
    }

    #[test]
    fn auth_and_tls_settings_are_checked_at_start() {
        let cases = [
            ("auth:\n  enabled: true\n", "auth.enabled"),
            (
                "auth:\n  tokens:\n    - {name: a, sha256: \"abc\", scopes: [inventory.read]}\n",
                "auth.tokens",
            ),
            (
                "auth:\n  tokens:\n    - {name: a, sha256: \"0000000000000000000000000000000000000000000000000000000000000000\", scopes: [inventory.write]}\n",
                "auth.tokens",
            ),
            ("auth:\n  jwt:\n    hs256_secret: s\n", "auth.jwt"),
            (
                "server:\n  cors_allowed_origins: [\"shop.example.com\"]\n",
                "server.cors_allowed_origins",
            ),
            ("server:\n  tls_cert_file: a.crt\n", "server.tls_cert_file"),
            ("server:\n  max_in_flight: 0\n", "server.max_in_flight"),
            (
                "server:\n  request_timeout: \"0s\"\n",
                "server.request_timeout",
            ),
        ];
        for (yaml, key) in cases {
            let error = from_yaml(yaml).expect_err(yaml).to_string();
            assert!(error.contains(key), "{yaml:?}: {error:?} should name {key}");
        }
    }

    #[test]
    fn postgres_takes_a_postgres_url_and_ignores_the_sqlite_keys() {
        for url in [
            "postgres://inventory:secret@db:5432/inventory",
            "postgresql://db/inventory?sslmode=disable",
        ] {
            let config = from_yaml(&format!(
                "database:\n  driver: postgres\n  dsn: \"{url}\"\n  busy_timeout: \"1s\"\n  synchronous: normal\n"
            ))
            .expect("a valid postgres configuration");
            assert_eq!(config.database.driver, Driver::Postgres);
            assert_eq!(config.database.dsn, url);
        }
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail's closure signature returns figment::Error"
    )]
    fn database_url_overrides_the_postgres_dsn_only() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "postgres.yaml",
                "database:\n  driver: postgres\n  dsn: \"postgres://file/inventory\"\n",
            )?;
            jail.create_file("sqlite.yaml", "database:\n  dsn: \"./from-file.db\"\n")?;
            jail.set_env("INVENTORY_DATABASE__DSN", "postgres://env/inventory");
            jail.set_env(
                DATABASE_URL_ENV,
                "postgres://app:pw@platform:5432/inventory",
            );

            let config =
                Config::load(Some(Path::new("postgres.yaml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                config.database.dsn,
                "postgres://app:pw@platform:5432/inventory"
            );

            // SQLite keeps its file whatever DATABASE_URL says.
            jail.set_env("INVENTORY_DATABASE__DSN", "./from-env.db");
            let config = Config::load(Some(Path::new("sqlite.yaml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.database.driver, Driver::Sqlite);
            assert_eq!(config.database.dsn, "./from-env.db");

            // Set but empty is unset.
            jail.set_env(DATABASE_URL_ENV, "");
            jail.set_env("INVENTORY_DATABASE__DSN", "postgres://env/inventory");
            let config =
                Config::load(Some(Path::new("postgres.yaml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.database.dsn, "postgres://env/inventory");

            // The override is validated like the key it replaces.
            jail.set_env(DATABASE_URL_ENV, "/var/lib/inventory.db");
            let error = Config::load(Some(Path::new("postgres.yaml")))
                .expect_err("not a postgres URL")
                .to_string();
            assert!(error.contains("database.dsn"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let error =
            Config::load(Some(Path::new("/nonexistent/inventory.yaml"))).expect_err("missing file");
        assert!(error.to_string().contains("/nonexistent/inventory.yaml"));
    }
}
