//! Wiring: opens the store (wrapped in [`RetryingStore`]), builds the domain
//! and the tonic services, and serves them on the two listeners until
//! shutdown.
//!
//! Both ports serve one stack: `inventory.v1.InventoryService`, server
//! reflection v1 and v1alpha and `grpc.health.v1.Health` over gRPC, gRPC-Web
//! (HTTP/1.1, CORS), REST/JSON and Connect through the transcoding layer, and
//! `GET /health`. The specification's split (HTTP 8083, gRPC 9083) is kept as two
//! listeners; clients may use either.
//!
//! Background tasks: the expiry sweeper and the health monitor. Shutdown stops
//! accepting, lets in-flight requests finish (up to
//! `server.shutdown_timeout`), stops the background tasks, closes the pool
//! and flushes the telemetry.
//!
//! Telemetry is the server's own ([`Telemetry`]): everything the server runs
//! (requests, background tasks, store calls) runs under its dispatch, so
//! several servers in one process keep their spans and metrics apart.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use http::header::HeaderName;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::Routes;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;

use crate::api::auth::{AuthLayer, Authenticator};
use crate::api::cors::CrossOriginLayer;
use crate::api::health::{self, HealthProbe, run_health_monitor};
use crate::api::http_edge::HttpEdgeLayer;
use crate::api::status::ERROR_DOMAIN;
use crate::api::{InventoryApi, STALE_HEADER};
use crate::cache::memory::MemoryCache;
use crate::cache::redis::RedisCache;
use crate::config::{self, Config, Driver};
use crate::domain::batch::{BatchObserver, BatchSettings};
use crate::domain::cache::{ChangeFollower, StockCache};
use crate::domain::events::{EventSettings, EventSignal};
use crate::domain::{Inventory, InventorySettings, InventoryStore, Parts, StoreError, SystemClock};
use crate::guard::connection::{ActivityLayer, ConnectionGuard};
use crate::guard::{
    self, DeadlineLayer, HttpSettings, NormalizeStatusLayer, ShedLayer, ShedSettings,
};
use crate::pb;
use crate::store::PoolStatus;
use crate::store::postgres::listen::Listener;
use crate::store::retry::{RetryPolicy, RetryingStore};
use crate::store::sqlite::{SqliteOptions, SqliteStore, Synchronous};
use crate::telemetry::alerts::{ReadOnlyAlerts, Webhook};
use crate::telemetry::layer::{RequestTelemetryLayer, TRACE_ID_HEADER};
use crate::telemetry::metrics::PoolGauges;
use crate::telemetry::{LogOutput, Telemetry, TelemetryError};
use crate::tls::{ReloadingTls, TlsFiles};
use crate::transcode::{self, JsonOptions, TranscodeLayer, TranscodeOptions, Transcoder};

/// The two bound listeners. Tests bind `127.0.0.1:0`.
pub struct Listeners {
    /// Serves gRPC, gRPC-Web, reflection and health.
    pub grpc: TcpListener,
    /// Serves `/health` (and the gRPC routes).
    pub http: TcpListener,
}

impl Listeners {
    /// Binds `server.host` on `server.grpc_port` and `server.http_port`.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let host = config.server.host;
        Ok(Self {
            grpc: TcpListener::bind((host, config.server.grpc_port)).await?,
            http: TcpListener::bind((host, config.server.http_port)).await?,
        })
    }
}

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened or migrated.
    #[error("opening the database: {0}")]
    Store(#[from] StoreError),
    /// The reflection service could not read the descriptor set.
    #[error("building server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// `inventory.initial_stock` could not be applied.
    #[error("creating the initial stock: {0}")]
    InitialStock(String),
    /// The REST routes in the descriptors are invalid.
    #[error("building the REST layer: {0}")]
    Transcode(#[from] transcode::BuildError),
    /// Tracing or metrics could not start.
    #[error("starting telemetry: {0}")]
    Telemetry(#[from] TelemetryError),
    /// The cache could not be set up.
    #[error("setting up the cache: {0}")]
    Cache(String),
    /// The TLS certificate or key could not be read.
    #[error("setting up TLS: {0}")]
    Tls(String),
    /// A token key could not be read.
    #[error("setting up authentication: {0}")]
    Auth(String),
    /// A field rule of the contract cannot be enforced.
    #[error("reading the contract's field rules: {0}")]
    Contract(String),
}

/// The configured longest reservation, published on the fields that ask for
/// one (the contract says only "never negative"; the domain refuses more
/// than this).
fn reservation_limits(
    max: Duration,
) -> std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>> {
    let maximum = i32::try_from(max.as_secs()).unwrap_or(i32::MAX);
    ["ReserveInventoryRequest", "ReserveOrderRequest"]
        .into_iter()
        .map(|message| {
            let mut limit = serde_json::Map::new();
            limit.insert("maximum".to_owned(), maximum.into());
            (format!("inventory.v1.{message}.reservation_timeout"), limit)
        })
        .collect()
}

/// Batch sizes and waits, into the server's metrics.
struct BatchMetrics(Arc<crate::telemetry::Metrics>);

impl BatchObserver for BatchMetrics {
    fn batch_applied(&self, size: usize, waits: &[Duration]) {
        self.0.record_batch(size, waits);
    }
}

/// An open database: the store, and a reading of its connection pool for
/// the metrics.
pub struct OpenedStore {
    /// The store the domain calls.
    pub store: Arc<dyn InventoryStore>,
    /// Told of the events the store commits.
    pub events: EventSignal,
    /// Reads the store's connection pool.
    pub pool: Arc<dyn Fn() -> PoolGauges + Send + Sync>,
}

impl From<PoolStatus> for PoolGauges {
    fn from(status: PoolStatus) -> Self {
        Self {
            max: status.max_size as u64,
            size: status.size as u64,
            in_use: status.size.saturating_sub(status.available) as u64,
            waiting: status.waiting as u64,
        }
    }
}

/// Opens the database `config.database` names.
pub async fn open_store(config: &Config) -> Result<OpenedStore, StoreError> {
    let db = &config.database;
    match db.driver {
        Driver::Sqlite => {
            let store = Arc::new(
                SqliteStore::open(SqliteOptions {
                    path: db.dsn.clone().into(),
                    max_connections: db.max_connections as usize,
                    max_idle_connections: db.max_idle_connections as usize,
                    connection_timeout: db.connection_timeout,
                    busy_timeout: db.busy_timeout,
                    synchronous: match db.synchronous {
                        config::Synchronous::Full => Synchronous::Full,
                        config::Synchronous::Normal => Synchronous::Normal,
                    },
                    events: config.inventory.events.enabled,
                })
                .await?,
            );
            let pool = store.clone();
            Ok(OpenedStore {
                events: store.event_signal(),
                store,
                pool: Arc::new(move || pool.pool_status().into()),
            })
        }
        Driver::Postgres => {
            use crate::store::postgres::{Isolation, PostgresOptions, PostgresStore};
            let store = Arc::new(
                PostgresStore::open(PostgresOptions {
                    url: db.dsn.clone(),
                    max_connections: db.max_connections as usize,
                    max_idle_connections: db.max_idle_connections as usize,
                    connection_timeout: db.connection_timeout,
                    isolation: match db.isolation_level {
                        config::IsolationLevel::ReadCommitted => Isolation::ReadCommitted,
                        config::IsolationLevel::RepeatableRead => Isolation::RepeatableRead,
                        config::IsolationLevel::Serializable => Isolation::Serializable,
                    },
                    notify: follows_changes(config),
                    events: config.inventory.events.enabled,
                    statement_timeout: db.statement_timeout,
                })
                .await?,
            );
            let pool = store.clone();
            Ok(OpenedStore {
                events: store.event_signal(),
                store,
                pool: Arc::new(move || pool.pool_status().into()),
            })
        }
    }
}

/// Whether this replica keeps a memory cache that must hear of the other
/// replicas' writes: PostgreSQL with `cache.type: memory`. Every replica
/// then announces its own (replicas share their configuration).
fn follows_changes(config: &Config) -> bool {
    config.database.driver == Driver::Postgres
        && config.cache.enabled
        && config.cache.cache_type == config::CacheType::Memory
}

/// The stock cache, and what keeps it in step with the other replicas.
#[derive(Default)]
struct OpenedCache {
    /// The cache, when enabled.
    cache: Option<Arc<dyn StockCache>>,
    /// On PostgreSQL with the memory cache: the cache, which must hear the
    /// other replicas' writes (it serves once it listens).
    follower: Option<Arc<dyn ChangeFollower>>,
}

/// The stock cache `config.cache` describes.
fn open_cache(
    config: &Config,
    metrics: &Arc<crate::telemetry::Metrics>,
) -> Result<OpenedCache, ServeError> {
    let cache = &config.cache;
    if !cache.enabled {
        return Ok(OpenedCache::default());
    }
    match cache.cache_type {
        config::CacheType::Memory => {
            let follows = follows_changes(config);
            let memory = Arc::new(MemoryCache::new(
                cache.max_size,
                cache.ttl,
                !follows,
                Some(metrics.clone()),
            ));
            Ok(OpenedCache {
                cache: Some(memory.clone()),
                follower: follows.then_some(memory as Arc<dyn ChangeFollower>),
            })
        }
        config::CacheType::Redis => {
            let redis = RedisCache::new(
                &cache.redis_url,
                &cache.key_prefix,
                cache.ttl,
                Some(metrics.clone()),
            )
            .map_err(|e| ServeError::Cache(format!("cache.redis_url: {e}")))?;
            Ok(OpenedCache {
                cache: Some(Arc::new(redis)),
                follower: None,
            })
        }
    }
}

/// How the store retries transient failures, from `config.database`.
fn retry_policy(config: &Config) -> RetryPolicy {
    RetryPolicy {
        max_attempts: config.database.retry_attempts,
        max_delay: config.database.retry_max_backoff,
        budget: config.database.connection_timeout,
        ..RetryPolicy::default()
    }
}

/// Runs the service on `listeners` until `shutdown` completes, with the
/// telemetry `config.tracing` describes and no log output (what tests use;
/// the binary passes its own telemetry to [`serve_with_telemetry`]).
pub async fn serve(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let telemetry = Telemetry::new(&config, LogOutput::Off)?;
    serve_with_telemetry(config, listeners, shutdown, telemetry).await
}

/// Runs the service on `listeners` until `shutdown` completes, with
/// `telemetry`: its dispatch for everything the server runs, its metrics
/// on `/metrics`. Flushes and stops it before returning.
pub async fn serve_with_telemetry(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    telemetry: Telemetry,
) -> Result<(), ServeError> {
    let dispatch = telemetry.dispatch().clone();
    let result = run(config, listeners, shutdown, &telemetry)
        .with_subscriber(dispatch)
        .await;
    telemetry.shutdown().await;
    result
}

async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    telemetry: &Telemetry,
) -> Result<(), ServeError> {
    let opened = open_store(&config).await?;
    telemetry.metrics().observe_pool(opened.pool);
    let store: Arc<dyn InventoryStore> =
        Arc::new(RetryingStore::new(opened.store, retry_policy(&config)));
    let opened_cache = open_cache(&config, telemetry.metrics())?;
    // On PostgreSQL: hears the other replicas' writes, for the memory cache
    // and the event hub; stops when dropped.
    let _listener = (config.database.driver == Driver::Postgres).then(|| {
        Listener::start(
            config.database.dsn.clone(),
            opened_cache.follower.clone(),
            opened.events.clone(),
        )
    });
    let alerts = ReadOnlyAlerts::new(
        config.server.name.clone(),
        telemetry.metrics().clone(),
        (!config.alerting.webhook_url.is_empty()).then(|| Webhook {
            url: config.alerting.webhook_url.clone(),
            timeout: config.alerting.webhook_timeout,
            attempts: config.alerting.webhook_attempts,
        }),
    );
    let batch = &config.inventory.batch;
    let inventory = Inventory::with_parts(
        store.clone(),
        InventorySettings {
            default_reservation_timeout: config.inventory.default_reservation_timeout,
            max_reservation_timeout: config.inventory.max_reservation_timeout,
            record_checks: config.inventory.record_checks,
            request_id_ttl: config.inventory.request_id_ttl,
            events: EventSettings {
                enabled: config.inventory.events.enabled,
                poll_interval: config.inventory.events.poll_interval,
                buffer: config.inventory.events.buffer,
                retention: config.inventory.events.retention,
            },
            batch: batch.enabled.then_some(BatchSettings {
                max_size: batch.max_size,
                max_wait: batch.max_wait,
                // SQLite has one writer: a second lane would only queue on
                // its lock.
                lanes: match config.database.driver {
                    Driver::Sqlite => 1,
                    Driver::Postgres => batch.lanes,
                },
            }),
        },
        Parts {
            clock: Some(Arc::new(SystemClock)),
            batch_observer: Some(Arc::new(BatchMetrics(telemetry.metrics().clone()))),
            cache: opened_cache.cache.clone(),
            availability_observer: Some(Arc::new(alerts)),
            event_signal: Some(opened.events.clone()),
        },
    );

    stock_initial_products(&inventory, &config).await?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let mut routes = Routes::builder();
    routes
        .add_service(InventoryApi::new(inventory.clone()).into_service())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let routes = routes.routes();

    let driver = match config.database.driver {
        Driver::Sqlite => "sqlite",
        Driver::Postgres => "postgres",
    };
    let probe = HealthProbe::new(
        inventory.clone(),
        config.database.connection_timeout,
        config.server.name.clone(),
        config.server.version.clone(),
        driver,
    );

    // Health is decided before the first request can ask for it.
    health::set_status(&health_reporter, &probe.report().await).await;

    // What can fail at start fails before any background task is running.
    crate::api::contract::check().map_err(ServeError::Contract)?;
    let auth = AuthLayer::new(if config.auth.enabled {
        Some(Authenticator::from_config(&config.auth).map_err(ServeError::Auth)?)
    } else {
        None
    });
    let tls = if config.server.tls_cert_file.is_empty() {
        None
    } else {
        Some(
            ReloadingTls::load(TlsFiles {
                cert: config.server.tls_cert_file.clone().into(),
                key: config.server.tls_key_file.clone().into(),
            })
            .map_err(ServeError::Tls)?,
        )
    };

    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    if let Some(tls) = &tls {
        tasks.spawn(
            tls.clone()
                .watch(config.server.tls_reload_interval, stop.clone())
                .with_current_subscriber(),
        );
    }
    {
        let stop = stop.clone();
        let inventory = inventory.clone();
        tasks.spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested; finishing in-flight requests");
            // Watches would never finish by themselves: end them, each with
            // the position to resume from.
            inventory.close_watches();
            stop.cancel();
        });
    }
    tasks.spawn(
        run_health_monitor(
            probe.clone(),
            health_reporter,
            config.database.health_check_interval,
            stop.clone(),
        )
        .with_current_subscriber(),
    );
    tasks.spawn(
        run_expiry_sweeper(
            inventory.clone(),
            config.inventory.cleanup_interval,
            config.inventory.cleanup_batch_size,
            stop.clone(),
        )
        .with_current_subscriber(),
    );
    tasks.spawn(
        read_stock_totals(
            inventory.clone(),
            telemetry.metrics().clone(),
            config.inventory.stock_value_interval,
            stop.clone(),
        )
        .with_current_subscriber(),
    );
    tasks.close();

    tracing::info!(
        grpc = %listeners.grpc.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        http = %listeners.http.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        database = driver,
        "inventory-service listening"
    );

    // The pool the contract's rules read (checked above): one decoded copy.
    let descriptors = pb::descriptor_pool().map_err(|e| ServeError::Contract(e.to_owned()))?;
    let transcoder = Transcoder::from_pool(
        descriptors.clone(),
        TranscodeOptions {
            json: JsonOptions {
                use_proto_names: config.rest.use_proto_field_names,
                emit_defaults: config.rest.emit_unpopulated,
                deny_unknown_fields: config.rest.reject_unknown_fields,
            },
            max_body_bytes: config.rest.max_body_size,
            openapi_path: Some("/openapi.json".to_owned()),
            title: config.server.name.clone(),
            version: config.server.version.clone(),
            plain_headers: vec![
                HeaderName::from_static(STALE_HEADER),
                http::header::RETRY_AFTER,
                http::header::WWW_AUTHENTICATE,
            ],
            error_domain: ERROR_DOMAIN.to_owned(),
            schema_limits: reservation_limits(config.inventory.max_reservation_timeout),
            // A well-formed request the stock says no to (not enough
            // available, below reserved, more than held) is a conflict with
            // the resource's state, not a malformed request: 409, so clients
            // keep 400 for their own bugs.
            rest_status_overrides: vec![(
                tonic::Code::FailedPrecondition,
                http::StatusCode::CONFLICT,
            )],
            // WatchInventory over SSE: each event's id is its position, and
            // a browser's EventSource resumes after it by itself.
            event_id_field: Some("position".to_owned()),
            resume_field: Some("after".to_owned()),
            // Well within the idle timeout, which would otherwise close a
            // watch that has seen no change for that long.
            sse_keepalive: Some((config.server.idle_timeout / 2).min(Duration::from_secs(15))),
        },
    )?;
    let transcode = TranscodeLayer::new(transcoder);
    let edge = HttpEdgeLayer::new(probe, telemetry.metrics().clone());
    let traced = RequestTelemetryLayer::new(telemetry);
    // Both ports serve the same stack, outermost first: CORS, the
    // connection's activity (a response being sent keeps its connection
    // from the idle timeout), /health and /metrics, the server span and request metrics, REST and Connect to
    // gRPC, gRPC-Web to gRPC, then the guards (auth, deadline, shedding,
    // status codes) and the gRPC routes. The span layer sits
    // outside the transcoder to see REST requests as they came (method,
    // headers); gRPC-Web sits inside the REST layer because it refuses other
    // HTTP/1.1 requests.
    let observer: guard::Observer = telemetry.metrics().clone();
    let server = &config.server;
    let connections = ConnectionGuard::new(
        connection_cap(server.max_connections),
        server.idle_timeout,
        observer.clone(),
    );
    let deadline = DeadlineLayer::new(Some(server.request_timeout), ERROR_DOMAIN, observer.clone());
    let shed = ShedLayer::new(
        ShedSettings {
            max_in_flight: server.max_in_flight,
            max_queued: server.max_queued,
            max_queue_wait: server.max_queue_wait,
            standing_after: server.standing_queue_after,
            retry_after: RETRY_AFTER,
        },
        ERROR_DOMAIN,
        observer,
    );
    let cors = cors(&config);
    // Inside gRPC-Web, every call is a gRPC call whatever protocol it came
    // in: the guards see them all alike, and each protocol renders their
    // statuses its own way. Auth refuses before a call takes a turn; the
    // deadline bounds the wait for a turn too.
    let stack = tower::ServiceBuilder::new()
        .layer(CrossOriginLayer::new(cors))
        .layer(ActivityLayer)
        .layer(edge)
        .layer(traced)
        .layer(transcode)
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(auth)
        .layer(deadline)
        .layer(shed)
        .layer(NormalizeStatusLayer)
        .service(routes.prepare());
    let settings = HttpSettings {
        http2_keepalive_interval: server.http2_keepalive_interval,
        http2_keepalive_timeout: server.http2_keepalive_timeout,
        http2_header_table_size: server.http2_header_table_size,
    };
    let serve_on = |listener: TcpListener| {
        guard::serve(
            connections.clone().incoming(listener, tls.clone()),
            stack.clone(),
            settings,
            stop.clone().cancelled_owned(),
        )
    };
    let grpc = serve_on(listeners.grpc);
    let http = serve_on(listeners.http);

    let servers = async {
        tokio::join!(grpc, http);
    };
    let deadline = {
        let stop = stop.clone();
        let grace = config.server.shutdown_timeout;
        async move {
            stop.cancelled().await;
            tokio::time::sleep(grace).await;
        }
    };
    let result = tokio::select! {
        () = servers => Ok(()),
        () = deadline => {
            tracing::warn!("in-flight requests did not finish within server.shutdown_timeout");
            Ok(())
        }
    };

    stop.cancel();
    tasks.wait().await;
    store.close();
    tracing::info!("inventory-service stopped");
    result
}

/// Creates the products of `inventory.initial_stock` that do not exist yet:
/// a compare-and-set against version 0 (absent), so replicas starting
/// together create each product once and never overwrite a stock.
async fn stock_initial_products(inventory: &Inventory, config: &Config) -> Result<(), ServeError> {
    for (product, quantity) in &config.inventory.initial_stock {
        match inventory
            .update(product, "set", *quantity, Some(0), "")
            .await
        {
            Ok(_) => {
                tracing::info!(inventory.product_id = %product, inventory.quantity = quantity, "initial stock created");
            }
            Err(crate::domain::Error::VersionMismatch { .. }) => {}
            Err(e) => return Err(ServeError::InitialStock(e.to_string())),
        }
    }
    Ok(())
}

/// What a call refused for load is told to wait before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// File descriptors kept for everything but client connections: the
/// database pool, the listeners, log files, Redis.
const RESERVED_FDS: u64 = 128;

/// `server.max_connections`, lowered to what the process's file limit
/// allows. The soft limit is first raised to the hard one, so a connection
/// flood meets the cap, which is logged and counted, and not the file
/// limit, which would also stop `/health` and the database pool.
fn connection_cap(configured: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not read the file descriptor limit");
            return configured;
        }
    };
    let allowed = usize::try_from(limit.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
    if allowed < configured {
        tracing::warn!(
            configured,
            allowed,
            file_limit = limit,
            "server.max_connections lowered to fit the file descriptor limit"
        );
    }
    configured.min(allowed)
}

/// CORS from `server.cors_allowed_origins`: the listed origins (`*`: any,
/// unless `auth.enabled`), every method a route uses, the request headers
/// asked for, and the gRPC status headers exposed. No origin listed: no
/// cross-origin call (a browser refuses to send a JSON or gRPC-Web call
/// that its preflight was not allowed).
fn cors(config: &Config) -> CorsLayer {
    const EXPOSED: [&str; 8] = [
        "www-authenticate",
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-request-id",
        "retry-after",
        TRACE_ID_HEADER,
        STALE_HEADER,
    ];
    let origins = &config.server.cors_allowed_origins;
    let any = origins.iter().any(|o| o == "*");
    let allow_origin = if any && !config.auth.enabled {
        AllowOrigin::any()
    } else {
        if any {
            tracing::warn!(
                "server.cors_allowed_origins \"*\" is ignored with auth.enabled: list the origins"
            );
        }
        AllowOrigin::list(
            origins
                .iter()
                .filter(|o| *o != "*")
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            http::Method::GET,
            http::Method::POST,
            http::Method::PUT,
            http::Method::OPTIONS,
        ])
        .allow_headers(tower_http::cors::AllowHeaders::mirror_request())
        .expose_headers(EXPOSED.map(HeaderName::from_static))
        .max_age(Duration::from_secs(24 * 3600))
}

/// Ticks at once and then every `interval` (a late tick delays the next),
/// until `stop`.
struct Ticks {
    ticker: tokio::time::Interval,
    stop: CancellationToken,
}

impl Ticks {
    fn new(interval: Duration, stop: CancellationToken) -> Self {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { ticker, stop }
    }

    /// Waits for the next tick: false once stopped.
    async fn next(&mut self) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            _ = self.ticker.tick() => true,
        }
    }
}

/// Reads the whole stock (units, and value at unit cost) for its gauges at
/// start and every `interval`, until `stop`: two aggregate queries per
/// interval however often `/metrics` is scraped.
async fn read_stock_totals(
    inventory: Inventory,
    metrics: Arc<crate::telemetry::Metrics>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticks = Ticks::new(interval, stop);
    while ticks.next().await {
        match inventory.stock_totals().await {
            Ok(totals) => metrics.stock_totals(totals),
            Err(error) => {
                tracing::debug!(%error, "reading the stock totals failed; trying again next interval");
            }
        }
    }
}

/// Every `interval` (and once at start), releases the reservations whose
/// timeout has passed and forgets request keys older than
/// `inventory.request_id_ttl` and events older than
/// `inventory.events.retention`, until `stop`. Each run is a trace of its own (a root
/// span `inventory.expire`), counted in the metrics.
async fn run_expiry_sweeper(
    inventory: Inventory,
    interval: Duration,
    batch_size: u32,
    stop: CancellationToken,
) {
    let mut ticks = Ticks::new(interval, stop);
    while ticks.next().await {
        let span = tracing::info_span!(
            parent: None,
            "inventory.expire",
            inventory.operation = "expire",
            inventory.expired = tracing::field::Empty,
            inventory.request_keys_purged = tracing::field::Empty,
            inventory.events_purged = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        let outcome = async {
            let expired = inventory.expire_due_reservations(batch_size).await?;
            let purged = inventory.purge_request_keys(batch_size).await?;
            span.record("inventory.request_keys_purged", purged);
            let events_purged = inventory.purge_events(batch_size).await?;
            span.record("inventory.events_purged", events_purged);
            Ok::<_, crate::domain::Error>(expired)
        }
        .instrument(span.clone())
        .await;
        let metrics = crate::telemetry::current().map(|context| context.metrics.clone());
        match outcome {
            Ok(count) => {
                span.record("inventory.expired", count);
                if let Some(metrics) = metrics {
                    metrics.expiry_sweep(count);
                }
                if count > 0 {
                    tracing::info!(parent: &span, count, "expired reservations released");
                }
            }
            Err(error) => {
                span.record("otel.status_description", error.to_string());
                tracing::warn!(parent: &span, %error, "expiry sweep failed; retrying next interval");
            }
        }
    }
}
