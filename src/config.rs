//! The configuration: `config/config.yaml` with the seed's sections (server,
//! database, tracing, cache, inventory, logging), then environment variables
//! `INVENTORY_<SECTION>__<KEY>` (for example `INVENTORY_SERVER__HTTP_PORT=8080`
//! or `INVENTORY_DATABASE__DSN=/var/lib/inventory/inventory.db`).
//!
//! Every key has a default, so the service runs with no file at all. Unknown
//! keys, wrong types and values out of range fail at start with a message that
//! names the key. Durations are written as in the seed: `"10s"`, `"5m"`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format as _, Yaml};
use serde::Deserialize;

use crate::store::sqlite::Synchronous;

/// Where `cargo run` looks for the configuration when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/config.yaml";
/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "INVENTORY_";

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
    /// Reservation rules and the expiry sweeper.
    pub inventory: InventoryConfig,
    /// Log level and format.
    pub logging: LoggingConfig,
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
        }
    }
}

/// Which database backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// The embedded default: one file, no setup.
    Sqlite,
    /// PostgreSQL, for several replicas (not built yet).
    Postgres,
}

/// The `database` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite` or `postgres`.
    pub driver: Driver,
    /// For SQLite, the database file path (created with its directory).
    pub dsn: String,
    /// Most pooled connections.
    pub max_connections: u32,
    /// Connections kept open when idle (at most `max_connections`).
    pub max_idle_connections: u32,
    /// How long a request waits for a connection.
    #[serde(with = "humantime_serde")]
    pub connection_timeout: Duration,
    /// SQLite: how long a writer waits for the write lock.
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// SQLite: `full` (survives power loss) or `normal` (faster).
    pub synchronous: Synchronous,
    /// How often the health checker pings the database.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
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
            synchronous: Synchronous::Full,
            health_check_interval: Duration::from_secs(5),
        }
    }
}

/// The `tracing` section (the exporter arrives with the tracing work; the
/// keys are accepted and validated now).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// Whether spans are exported.
    pub enabled: bool,
    /// The collector endpoint (Jaeger accepts OTLP on 4317 and 4318).
    pub jaeger_endpoint: String,
    /// The service name spans carry.
    pub service_name: String,
    /// Fraction of new traces sampled, 0.0 to 1.0.
    pub sampling_rate: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            jaeger_endpoint: "http://localhost:4317".to_owned(),
            service_name: "inventory-service".to_owned(),
            sampling_rate: 1.0,
        }
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

/// The `cache` section (accepted and validated; no cache is built yet).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Whether stock reads are cached.
    pub enabled: bool,
    /// `memory` or `redis`.
    #[serde(rename = "type")]
    pub cache_type: CacheType,
    /// How long an entry lives.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Most entries.
    pub max_size: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            cache_type: CacheType::Memory,
            ttl: Duration::from_secs(300),
            max_size: 1000,
        }
    }
}

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
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            default_reservation_timeout: Duration::from_secs(300),
            max_reservation_timeout: Duration::from_secs(24 * 3600),
            cleanup_interval: Duration::from_secs(60),
            cleanup_batch_size: 500,
            record_checks: false,
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
        Self::from_figment(figment.merge(Env::prefixed(ENV_PREFIX).split("__")))
    }

    /// Extracts and validates a configuration from any figment.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Self = figment
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        config.validate()?;
        Ok(config)
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
        let d = &self.database;
        if d.driver == Driver::Postgres {
            return invalid(
                "database.driver",
                "the postgres backend is not available in this version; use \"sqlite\"",
            );
        }
        if d.dsn.trim().is_empty() {
            return invalid("database.dsn", "must not be empty");
        }
        if d.driver == Driver::Sqlite && (d.dsn.contains(":memory:") || d.dsn.starts_with("file:"))
        {
            return invalid(
                "database.dsn",
                "must be a file path: an in-memory database would be one per pooled connection",
            );
        }
        if d.max_connections == 0 {
            return invalid("database.max_connections", "must be at least 1");
        }
        if d.max_idle_connections > d.max_connections {
            return invalid(
                "database.max_idle_connections",
                "must not exceed database.max_connections",
            );
        }
        for (key, value) in [
            ("database.connection_timeout", d.connection_timeout),
            ("database.health_check_interval", d.health_check_interval),
            (
                "inventory.cleanup_interval",
                self.inventory.cleanup_interval,
            ),
            (
                "inventory.default_reservation_timeout",
                self.inventory.default_reservation_timeout,
            ),
        ] {
            if value.is_zero() {
                return invalid(key, "must be longer than zero");
            }
        }
        let rate = self.tracing.sampling_rate;
        if !(0.0..=1.0).contains(&rate) {
            return invalid(
                "tracing.sampling_rate",
                format!("must be between 0.0 and 1.0, got {rate}"),
            );
        }
        if self.cache.enabled && self.cache.max_size == 0 {
            return invalid(
                "cache.max_size",
                "must be at least 1 when the cache is enabled",
            );
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
    fn defaults_match_the_seed() {
        let config = from_yaml("").expect("defaults are valid");
        assert_eq!(config.server.http_port, 8083);
        assert_eq!(config.server.grpc_port, 9083);
        assert_eq!(config.database.driver, Driver::Sqlite);
        assert_eq!(config.database.dsn, "./data/inventory.db");
        assert_eq!(config.database.max_connections, 10);
        assert_eq!(config.database.connection_timeout, Duration::from_secs(10));
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
            ("tracing:\n  sampling_rate: 1.5\n", "tracing.sampling_rate"),
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
    fn a_missing_config_file_is_an_error() {
        let error =
            Config::load(Some(Path::new("/nonexistent/inventory.yaml"))).expect_err("missing file");
        assert!(error.to_string().contains("/nonexistent/inventory.yaml"));
    }
}
