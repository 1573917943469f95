//! The service's instruments. They are OpenTelemetry instruments of a
//! per-server meter provider, read by a Prometheus registry for
//! `GET /metrics` and, when tracing is enabled, exported over OTLP.
//!
//! | Prometheus name | Labels | What |
//! |---|---|---|
//! | `inventory_requests_total` | `protocol`, `method`, `code` | Finished requests |
//! | `inventory_request_duration_seconds` | `protocol`, `method`, `code` | Request latency (histogram) |
//! | `inventory_db_pool_max`, `_size`, `_in_use`, `_waiting` | | The connection pool |
//! | `inventory_db_pool_wait_duration_seconds` | `db_system` | Wait for a pooled connection |
//! | `inventory_db_query_duration_seconds` | `db_system`, `db_operation` | Statement latency |
//! | `inventory_reservations_created_total` | | New reservations |
//! | `inventory_reservations_released_total` | | Releases that gave stock back |
//! | `inventory_reservations_committed_total` | | Commits that took stock (orders paid) |
//! | `inventory_reservations_expired_total` | | Reservations the sweeper expired |
//! | `inventory_insufficient_stock_total` | | Reservations refused for lack of stock |
//! | `inventory_expiry_sweeps_total` | | Sweeper runs |
//! | `inventory_cache_hits_total`, `_misses_total` | `cache` | Stock lookups the cache answered, or not |
//! | `inventory_cache_hit_ratio` | | Hits over lookups so far |
//! | `inventory_cache_evictions_total` | `cache` | Entries dropped for room or age |
//! | `inventory_cache_invalidations_received_total` | | Changes heard from other replicas (memory cache on PostgreSQL) |
//! | `inventory_cache_errors_total` | `cache` | Lookups or writes the cache could not make (Redis unreachable) |
//! | `inventory_read_only` | | 1 while the database cannot be reached (read-only mode), else 0 |
//! | `inventory_read_only_transitions_total` | `to` (`read_only`, `normal`) | Transitions into and out of read-only mode |
//! | `inventory_alert_deliveries_total` | `outcome` (`delivered`, `failed`) | Read-only alerts POSTed to `alerting.webhook_url` |
//! | `inventory_batch_size` | | Calls per group-commit transaction (histogram) |
//! | `inventory_batch_wait_duration_seconds` | | A call's wait for its batch to start (histogram) |
//! | `inventory_requests_shed_total` | `reason` (`queue_full`, `queue_timeout`) | Calls refused for load (RESOURCE_EXHAUSTED / 429) |
//! | `inventory_connections_open` | | Connections open over both ports |
//! | `inventory_connections_refused_total` | | Connections closed at once: `server.max_connections` were open |
//! | `inventory_connections_idle_closed_total` | | Connections closed after `server.idle_timeout` without traffic |
//! | `inventory_hot_product_reservations` | `product_id` | The [`HOT_PRODUCTS`] most reserved products in the current and the previous [`HOT_WINDOW`] (see [`super::hot`]) |
//! | `inventory_committed_units_total` | | Units committed (left the stock on hand): turnover's numerator |
//! | `inventory_stock_units` | | Units on hand over every product (read every `inventory.stock_value_interval`) |
//! | `inventory_stock_value_minor_units` | `currency` | Stock on hand at unit cost, in minor units (cents), per currency (same reading) |
//!
//! `protocol` is `grpc`, `grpc-web`, `rest` or `connect`; `method` the gRPC
//! method (`inventory.v1.InventoryService/ReserveInventory`, or `unknown`
//! for a path no service answers); `code` the gRPC status name (`OK`,
//! `FAILED_PRECONDITION`, ...). Every label has a bounded set of values.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry_sdk::metrics::SdkMeterProvider;

use super::hot::HotProducts;
use crate::domain::StockTotals;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How many products `inventory_hot_product_reservations` shows.
pub const HOT_PRODUCTS: usize = 10;

/// The window of `inventory_hot_product_reservations`.
pub const HOT_WINDOW: Duration = Duration::from_secs(300);

/// Products counted per window for `inventory_hot_product_reservations`.
const HOT_CAPACITY: usize = 1_000;

/// Buckets of the latency histograms, in seconds (100 µs to 10 s).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A connection pool's state at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolGauges {
    /// Most connections the pool opens.
    pub max: u64,
    /// Connections open now.
    pub size: u64,
    /// Connections lent out.
    pub in_use: u64,
    /// Callers waiting for a connection.
    pub waiting: u64,
}

/// The instruments of one server.
pub struct Metrics {
    /// Keeps the observable gauges' meter alive.
    meter: Meter,
    /// Renders `/metrics`.
    registry: prometheus::Registry,
    /// `inventory.requests`.
    requests: Counter<u64>,
    /// `inventory.request.duration`.
    request_duration: Histogram<f64>,
    /// `inventory.db.pool.wait.duration`.
    pool_wait: Histogram<f64>,
    /// `inventory.db.query.duration`.
    query_duration: Histogram<f64>,
    /// `inventory.reservations.created`.
    reservations_created: Counter<u64>,
    /// `inventory.reservations.released`.
    reservations_released: Counter<u64>,
    /// `inventory.reservations.committed`.
    reservations_committed: Counter<u64>,
    /// `inventory.reservations.expired`.
    reservations_expired: Counter<u64>,
    /// `inventory.insufficient_stock`.
    insufficient_stock: Counter<u64>,
    /// `inventory.expiry.sweeps`.
    expiry_sweeps: Counter<u64>,
    /// `inventory.product.reservations`.
    committed_units: Counter<u64>,
    /// `inventory.cache.hits`.
    cache_hits: Counter<u64>,
    /// `inventory.cache.misses`.
    cache_misses: Counter<u64>,
    /// Lookups and hits so far, for `inventory.cache.hit_ratio`.
    cache_lookups: Arc<(AtomicU64, AtomicU64)>,
    /// `inventory.cache.evictions`.
    cache_evictions: Counter<u64>,
    /// `inventory.cache.invalidations_received`.
    cache_invalidations: Counter<u64>,
    /// `inventory.cache.errors`.
    cache_errors: Counter<u64>,
    /// 1 in read-only mode, for `inventory.read_only`.
    read_only: Arc<AtomicU64>,
    /// `inventory.read_only.transitions`.
    read_only_transitions: Counter<u64>,
    /// `inventory.alert.deliveries`.
    alert_deliveries: Counter<u64>,
    /// `inventory.batch.size`.
    batch_size: Histogram<u64>,
    /// `inventory.batch.wait.duration`.
    batch_wait: Histogram<f64>,
    /// The products with a label of their own.
    /// The most reserved products, for their gauge.
    hot_products: Arc<HotProducts>,
    /// The latest stock totals, for their gauges.
    stock_totals: Arc<Mutex<Option<StockTotals>>>,
    /// `inventory.requests.shed`.
    requests_shed: Counter<u64>,
    /// `inventory.connections.open`.
    connections_open: UpDownCounter<i64>,
    /// `inventory.connections.refused`.
    connections_refused: Counter<u64>,
    /// `inventory.connections.idle_closed`.
    connections_idle_closed: Counter<u64>,
}

impl Metrics {
    /// The instruments, on `provider`, rendered from `registry`.
    pub fn new(provider: &SdkMeterProvider, registry: prometheus::Registry) -> Self {
        let meter = provider.meter("inventory-service");
        let seconds = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        Self {
            requests: counter("inventory.requests", "Finished requests"),
            request_duration: seconds("inventory.request.duration", "Request latency"),
            pool_wait: seconds(
                "inventory.db.pool.wait.duration",
                "Wait for a pooled database connection",
            ),
            query_duration: seconds("inventory.db.query.duration", "Database statement latency"),
            reservations_created: counter("inventory.reservations.created", "New reservations"),
            reservations_released: counter(
                "inventory.reservations.released",
                "Releases that gave stock back",
            ),
            reservations_committed: counter(
                "inventory.reservations.committed",
                "Commits that took stock (orders paid)",
            ),
            reservations_expired: counter(
                "inventory.reservations.expired",
                "Reservations expired by the sweeper",
            ),
            insufficient_stock: counter(
                "inventory.insufficient_stock",
                "Reservations refused for lack of available stock",
            ),
            expiry_sweeps: counter("inventory.expiry.sweeps", "Expiry sweeper runs"),
            committed_units: counter(
                "inventory.committed.units",
                "Units committed: they left the stock on hand",
            ),
            hot_products: {
                let hot = Arc::new(HotProducts::new(HOT_WINDOW, HOT_CAPACITY, HOT_PRODUCTS));
                let read = hot.clone();
                let _gauge = meter
                    .u64_observable_gauge("inventory.hot_product.reservations")
                    .with_description(
                        "Reservations of the most reserved products in the current and the previous window",
                    )
                    .with_callback(move |observer| {
                        for (product, count) in read.top(std::time::Instant::now()) {
                            observer.observe(count, &[KeyValue::new("product_id", product)]);
                        }
                    })
                    .build();
                hot
            },
            stock_totals: {
                let totals: Arc<Mutex<Option<StockTotals>>> = Arc::new(Mutex::new(None));
                let units = totals.clone();
                let _units = meter
                    .i64_observable_gauge("inventory.stock.units")
                    .with_description("Units on hand over every product")
                    .with_callback(move |observer| {
                        if let Some(totals) = lock(&units).as_ref() {
                            observer.observe(totals.units, &[]);
                        }
                    })
                    .build();
                let value = totals.clone();
                let _value = meter
                    .f64_observable_gauge("inventory.stock.value_minor_units")
                    .with_description(
                        "Stock on hand at unit cost, in minor units (cents), per currency",
                    )
                    .with_callback(move |observer| {
                        if let Some(totals) = lock(&value).as_ref() {
                            for (currency, minor_units) in &totals.value {
                                observer.observe(
                                    *minor_units,
                                    &[KeyValue::new("currency", currency.clone())],
                                );
                            }
                        }
                    })
                    .build();
                totals
            },
            cache_hits: counter("inventory.cache.hits", "Stock lookups the cache answered"),
            cache_misses: counter(
                "inventory.cache.misses",
                "Stock lookups the cache could not answer",
            ),
            cache_lookups: {
                let lookups = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
                let read = lookups.clone();
                let _gauge = meter
                    .f64_observable_gauge("inventory.cache.hit_ratio")
                    .with_description("Cache hits over stock lookups so far")
                    .with_callback(move |observer| {
                        let total = read.0.load(Ordering::Relaxed);
                        let hits = read.1.load(Ordering::Relaxed);
                        if total > 0 {
                            observer.observe(hits as f64 / total as f64, &[]);
                        }
                    })
                    .build();
                lookups
            },
            cache_evictions: counter(
                "inventory.cache.evictions",
                "Cache entries dropped for room or age",
            ),
            cache_invalidations: counter(
                "inventory.cache.invalidations_received",
                "Stock changes heard from other replicas",
            ),
            cache_errors: counter(
                "inventory.cache.errors",
                "Cache lookups or writes that failed",
            ),
            read_only: {
                let flag = Arc::new(AtomicU64::new(0));
                let read = flag.clone();
                let _gauge = meter
                    .u64_observable_gauge("inventory.read_only")
                    .with_description("1 while the database cannot be reached (read-only mode)")
                    .with_callback(move |observer| {
                        observer.observe(read.load(Ordering::Relaxed), &[]);
                    })
                    .build();
                flag
            },
            read_only_transitions: counter(
                "inventory.read_only.transitions",
                "Transitions into and out of read-only mode",
            ),
            alert_deliveries: counter(
                "inventory.alert.deliveries",
                "Read-only alerts posted to the webhook",
            ),
            batch_size: meter
                .u64_histogram("inventory.batch.size")
                .with_description("Calls per group-commit transaction")
                .with_boundaries(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0])
                .build(),
            batch_wait: seconds(
                "inventory.batch.wait.duration",
                "A call's wait for its batch to start",
            ),
            requests_shed: counter(
                "inventory.requests.shed",
                "Calls refused for load (RESOURCE_EXHAUSTED)",
            ),
            connections_open: meter
                .i64_up_down_counter("inventory.connections.open")
                .with_description("Connections open over both ports")
                .build(),
            connections_refused: counter(
                "inventory.connections.refused",
                "Connections closed at once because server.max_connections were open",
            ),
            connections_idle_closed: counter(
                "inventory.connections.idle_closed",
                "Connections closed after server.idle_timeout without traffic",
            ),
            meter,
            registry,
        }
    }

    /// Reports a connection pool as gauges, reading it with `pool` at each
    /// collection.
    pub fn observe_pool(&self, pool: Arc<dyn Fn() -> PoolGauges + Send + Sync>) {
        type Read = fn(&PoolGauges) -> u64;
        let gauges: [(&'static str, &'static str, Read); 4] = [
            (
                "inventory.db.pool.max",
                "Most connections the pool opens",
                |s| s.max,
            ),
            ("inventory.db.pool.size", "Open connections", |s| s.size),
            ("inventory.db.pool.in_use", "Connections lent out", |s| {
                s.in_use
            }),
            (
                "inventory.db.pool.waiting",
                "Requests waiting for a connection",
                |s| s.waiting,
            ),
        ];
        for (name, description, read) in gauges {
            let pool = pool.clone();
            // The gauge lives as long as the meter provider.
            let _gauge = self
                .meter
                .u64_observable_gauge(name)
                .with_description(description)
                .with_callback(move |observer| observer.observe(read(&pool()), &[]))
                .build();
        }
    }

    /// Reports what became of the exported spans, from `counts`:
    /// `inventory_trace_spans_dropped_total` (`reason`: `queue_full`, the
    /// export queue had no room; `export_failed`, lost with a failed export)
    /// and `inventory_trace_spans_exported_total`.
    pub fn observe_spans(&self, counts: Arc<crate::telemetry::spans::SpanCounts>) {
        let dropped = counts.clone();
        // The counters live as long as the meter provider.
        let _dropped = self
            .meter
            .u64_observable_counter("inventory.trace.spans.dropped")
            .with_description("Finished spans that were never exported")
            .with_callback(move |observer| {
                observer.observe(dropped.dropped(), &[KeyValue::new("reason", "queue_full")]);
                observer.observe(
                    dropped.failed(),
                    &[KeyValue::new("reason", "export_failed")],
                );
            })
            .build();
        let _exported = self
            .meter
            .u64_observable_counter("inventory.trace.spans.exported")
            .with_description("Finished spans sent to the collector")
            .with_callback(move |observer| observer.observe(counts.exported(), &[]))
            .build();
    }

    /// Counts a finished request.
    pub fn record_request(
        &self,
        protocol: &'static str,
        method: &str,
        code: i32,
        elapsed: Duration,
    ) {
        let labels = [
            KeyValue::new("protocol", protocol),
            KeyValue::new("method", method.to_owned()),
            KeyValue::new("code", code_name(code)),
        ];
        self.requests.add(1, &labels);
        self.request_duration.record(elapsed.as_secs_f64(), &labels);
    }

    /// Counts a stock lookup in the `cache` (`memory` or `redis`).
    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        let labels = [KeyValue::new("cache", cache)];
        self.cache_lookups.0.fetch_add(1, Ordering::Relaxed);
        if hit {
            self.cache_lookups.1.fetch_add(1, Ordering::Relaxed);
            self.cache_hits.add(1, &labels);
        } else {
            self.cache_misses.add(1, &labels);
        }
    }

    /// Counts entries the `cache` dropped for room or age.
    pub fn cache_evicted(&self, cache: &'static str) {
        self.cache_evictions
            .add(1, &[KeyValue::new("cache", cache)]);
    }

    /// Counts changes heard from other replicas.
    pub fn cache_invalidations_received(&self, count: usize) {
        self.cache_invalidations.add(count as u64, &[]);
    }

    /// Counts a failed cache lookup or write.
    pub fn cache_error(&self, cache: &'static str) {
        self.cache_errors.add(1, &[KeyValue::new("cache", cache)]);
    }

    /// Records a transition into (`read_only`) or out of read-only mode.
    pub fn read_only_changed(&self, read_only: bool) {
        self.read_only
            .store(u64::from(read_only), Ordering::Relaxed);
        let to = if read_only { "read_only" } else { "normal" };
        self.read_only_transitions
            .add(1, &[KeyValue::new("to", to)]);
    }

    /// Counts an alert POSTed to the webhook, or given up on.
    pub fn alert_delivery(&self, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.alert_deliveries
            .add(1, &[KeyValue::new("outcome", outcome)]);
    }

    /// Records a group-commit batch of `size` calls, and each call's wait
    /// for it.
    pub fn record_batch(&self, size: usize, waits: &[Duration]) {
        self.batch_size.record(size as u64, &[]);
        for wait in waits {
            self.batch_wait.record(wait.as_secs_f64(), &[]);
        }
    }

    /// Records the wait for a pooled connection.
    pub fn record_pool_wait(&self, system: &'static str, waited: Duration) {
        self.pool_wait
            .record(waited.as_secs_f64(), &[KeyValue::new("db_system", system)]);
    }

    /// Records one statement's latency; `operation` is its first keyword.
    pub fn record_query(&self, system: &'static str, operation: &str, elapsed: Duration) {
        self.query_duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("db_system", system),
                KeyValue::new("db_operation", operation.to_owned()),
            ],
        );
    }

    /// Counts a new reservation of `product_id`.
    pub fn reservation_created(&self, product_id: &str) {
        self.reservations_created.add(1, &[]);
        self.hot_products
            .record(product_id, std::time::Instant::now());
    }

    /// Counts a release that gave stock back.
    pub fn reservation_released(&self) {
        self.reservations_released.add(1, &[]);
    }

    /// Counts a commit that took `units` of stock.
    pub fn reservation_committed(&self, units: i32) {
        self.reservations_committed.add(1, &[]);
        self.committed_units
            .add(u64::try_from(units).unwrap_or_default(), &[]);
    }

    /// The stock totals the gauges show from now on.
    pub fn stock_totals(&self, totals: StockTotals) {
        *lock(&self.stock_totals) = Some(totals);
    }

    /// Counts a reservation refused for lack of stock.
    pub fn insufficient_stock(&self) {
        self.insufficient_stock.add(1, &[]);
    }

    /// Counts a sweeper run and the reservations it expired.
    pub fn expiry_sweep(&self, expired: usize) {
        self.expiry_sweeps.add(1, &[]);
        if expired > 0 {
            self.reservations_expired.add(expired as u64, &[]);
        }
    }

    /// The Prometheus text exposition of every instrument.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|error| format!("# encoding the metrics failed: {error}\n"))
    }
}

impl crate::guard::GuardObserver for Metrics {
    fn shed(&self, reason: crate::guard::ShedReason) {
        self.requests_shed
            .add(1, &[KeyValue::new("reason", reason.as_str())]);
    }

    fn connection_refused(&self) {
        self.connections_refused.add(1, &[]);
    }

    fn connection_idle_closed(&self) {
        self.connections_idle_closed.add(1, &[]);
    }

    fn connections_changed(&self, delta: i64) {
        self.connections_open.add(delta, &[]);
    }
}

/// The canonical name of a gRPC status code (`OK`, `NOT_FOUND`, ...).
pub fn code_name(code: i32) -> &'static str {
    crate::transcode::code_name(tonic::Code::from_i32(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stock_gauges_show_the_latest_totals() {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .expect("exporter");
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let metrics = Metrics::new(&provider, registry);
        metrics.stock_totals(StockTotals {
            units: 42,
            value: [("EUR".to_owned(), 1_250.0)].into(),
        });
        metrics.reservation_created("p1");
        let text = metrics.render();
        assert!(text.contains("inventory_stock_units 42"), "{text}");
        assert!(
            text.contains(r#"inventory_stock_value_minor_units{currency="EUR"} 1250"#),
            "{text}"
        );
        assert!(
            text.contains(r#"inventory_hot_product_reservations{product_id="p1"} 1"#),
            "{text}"
        );
    }
}
