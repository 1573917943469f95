//! Telemetry: logs, traces and metrics, owned per server.
//!
//! A [`Telemetry`] is built from the configuration and holds one
//! [`tracing::Dispatch`]: a registry with
//! - the log layer (JSON lines carrying `trace_id` and `span_id`, or text),
//!   when the binary asks for logs;
//! - the OpenTelemetry layer, when `tracing.enabled`: spans of this crate go
//!   to a batched OTLP exporter (gRPC or HTTP/protobuf) through a
//!   parent-based ratio sampler;
//! - a [`ServerContext`] layer that carries this server's [`Metrics`], so code
//!   running under the dispatch finds them ([`current`]) without globals.
//!
//! The server enters that dispatch for every request future
//! ([`layer::RequestTelemetryLayer`]) and for its background tasks, so
//! several servers in one process (the integration tests) each export to
//! their own collector. The binary also installs it as the global default.
//!
//! Metrics are OpenTelemetry instruments read by a Prometheus registry
//! (`GET /metrics`) and, with `tracing.enabled`, exported over OTLP too.
//!
//! Export never blocks a request: finished spans are queued for a batch
//! thread; a collector that is down costs a warning from the exporter.

pub mod alerts;
pub mod db;
pub mod hot;
pub mod layer;
mod logs;
pub mod metrics;
pub mod spans;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::Dispatch;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{Layer, Registry};

use crate::config::{Config, LogFormat, LoggingConfig, OtlpProtocol, TracingConfig};

pub use self::metrics::Metrics;

/// The tracing target (and crate) whose spans are exported.
const EXPORTED_TARGET: &str = "inventory_service";

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `logging.level` or `RUST_LOG` is not a valid filter.
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter could not be built (a malformed endpoint).
    #[error("building the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The Prometheus registry refused the exporter.
    #[error("building the Prometheus exporter: {0}")]
    Prometheus(String),
    /// The global subscriber was installed already.
    #[error("installing the global subscriber: {0}")]
    Global(#[from] tracing::dispatcher::SetGlobalDefaultError),
}

/// Whether a [`Telemetry`] writes log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// Write `logging.format` lines to stdout (the binary).
    Stdout,
    /// No log lines (tests; spans and metrics still work).
    Off,
}

/// What a server's dispatch carries for the code running under it: found
/// with [`current`].
pub struct ServerContext {
    /// This server's instruments.
    pub metrics: Arc<Metrics>,
    /// Whether spans are exported (database statement spans are only worth
    /// building then).
    pub exporting: bool,
}

impl<S: tracing::Subscriber> Layer<S> for ContextLayer {}

/// The layer that makes a [`ServerContext`] reachable from its dispatch.
struct ContextLayer(Arc<ServerContext>);

/// The [`ServerContext`] of the dispatch the caller runs under, if it is a
/// server's.
pub fn current() -> Option<Arc<ServerContext>> {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .downcast_ref::<ContextLayer>()
            .map(|layer| layer.0.clone())
    })
}

/// One server's logs, traces and metrics.
pub struct Telemetry {
    /// Every span and event of the server goes here.
    dispatch: Dispatch,
    /// The exporting tracer provider, when `tracing.enabled`.
    tracer_provider: Option<SdkTracerProvider>,
    /// Feeds `/metrics` and, when enabled, OTLP.
    meter_provider: SdkMeterProvider,
    /// The instruments and the Prometheus registry.
    metrics: Arc<Metrics>,
}

impl Telemetry {
    /// Builds the telemetry `config` describes. Needs a Tokio runtime when
    /// OTLP over gRPC is enabled (the exporter's channel lives on it).
    pub fn new(config: &Config, logs: LogOutput) -> Result<Self, TelemetryError> {
        let tracing_config = &config.tracing;
        let resource = Resource::builder()
            .with_service_name(tracing_config.service_name.clone())
            .build();

        let registry = prometheus::Registry::new();
        let prometheus_reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .map_err(|e| TelemetryError::Prometheus(e.to_string()))?;
        let mut meters = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_reader(prometheus_reader);
        let tracer_provider = if tracing_config.enabled {
            meters = meters.with_reader(
                PeriodicReader::builder(metric_exporter(tracing_config)?)
                    .with_interval(tracing_config.export_interval)
                    .build(),
            );
            Some(tracer_provider(tracing_config, resource)?)
        } else {
            None
        };
        let meter_provider = meters.build();
        let metrics = Arc::new(Metrics::new(&meter_provider, registry));
        if let Some((_, counts)) = &tracer_provider {
            metrics.observe_spans(counts.clone());
        }
        let tracer_provider = tracer_provider.map(|(provider, _)| provider);

        let context = ContextLayer(Arc::new(ServerContext {
            metrics: metrics.clone(),
            exporting: tracer_provider.is_some(),
        }));
        let log_layer = match logs {
            LogOutput::Stdout => Some(log_layer(&config.logging)?),
            LogOutput::Off => None,
        };
        let otel_layer = tracer_provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(EXPORTED_TARGET))
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(Targets::new().with_target(EXPORTED_TARGET, tracing::Level::INFO))
        });
        // The context layer wants no span or event of its own (a filter that
        // enables nothing), and absent layers are left out rather than
        // passed as `None` (which counts as wanting everything): a span is
        // only built when the exporter or the logs want it, so a service
        // that neither exports nor logs at the spans' level pays nothing for
        // them.
        let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![
            context
                .with_filter(tracing_subscriber::filter::filter_fn(|_| false))
                .boxed(),
        ];
        layers.extend(otel_layer.map(Layer::boxed));
        layers.extend(log_layer);
        let subscriber = Registry::default().with(layers);
        Ok(Self {
            dispatch: Dispatch::new(subscriber),
            tracer_provider,
            meter_provider,
            metrics,
        })
    }

    /// The dispatch to run the server's work under.
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// The server's instruments and `/metrics` registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether spans are exported.
    pub fn is_exporting(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Makes this dispatch the process-wide default (the binary does, so
    /// that events outside any request are logged too).
    pub fn install_global(&self) -> Result<(), TelemetryError> {
        tracing::dispatcher::set_global_default(self.dispatch.clone())?;
        Ok(())
    }

    /// Sends what is still queued and stops the exporters. Runs on the
    /// blocking pool: the SDK's shutdown waits for its export thread, which
    /// needs this runtime to drive the gRPC channel.
    pub async fn shutdown(self) {
        let Self {
            tracer_provider,
            meter_provider,
            ..
        } = self;
        let stopped = tokio::task::spawn_blocking(move || {
            if let Some(provider) = tracer_provider
                && let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(5))
            {
                tracing::warn!(%error, "flushing spans at shutdown failed");
            }
            if let Err(error) = meter_provider.shutdown() {
                tracing::debug!(%error, "stopping the metric readers failed");
            }
        });
        if stopped.await.is_err() {
            tracing::warn!("the telemetry shutdown task failed");
        }
    }
}

/// Spans the batch processor holds for its export thread: the SDK's
/// default, set here so that [`spans::CountingProcessor`] knows it.
const SPAN_QUEUE: usize = 2048;

/// The exporting tracer provider, and the counts of what became of its
/// spans.
fn tracer_provider(
    config: &TracingConfig,
    resource: Resource,
) -> Result<(SdkTracerProvider, Arc<spans::SpanCounts>), TelemetryError> {
    let endpoint = config.collector_endpoint();
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?,
        OtlpProtocol::Http => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(signal_url(endpoint, "/v1/traces"))
            .build()?,
    };
    let counts = spans::SpanCounts::new(SPAN_QUEUE);
    let processor =
        BatchSpanProcessor::builder(spans::CountingExporter::new(exporter, counts.clone()))
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(SPAN_QUEUE)
                    .with_scheduled_delay(config.export_interval)
                    .build(),
            )
            .build();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sampling_rate,
        ))))
        .with_span_processor(spans::CountingProcessor::new(processor, counts.clone()))
        .build();
    Ok((provider, counts))
}

fn metric_exporter(
    config: &TracingConfig,
) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
    let endpoint = config.collector_endpoint();
    Ok(match config.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?,
        OtlpProtocol::Http => opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(signal_url(endpoint, "/v1/metrics"))
            .build()?,
    })
}

/// The OTLP/HTTP URL of a signal: `path` appended to a base endpoint
/// (`http://localhost:4318` becomes `http://localhost:4318/v1/traces`), a
/// full signal URL kept as it is.
fn signal_url(endpoint: &str, path: &str) -> String {
    if endpoint.ends_with(path) {
        endpoint.to_owned()
    } else {
        format!("{}{path}", endpoint.trim_end_matches('/'))
    }
}

/// The log layer: `logging.format`, filtered by `RUST_LOG` or
/// `logging.level`.
fn log_layer<S>(config: &LoggingConfig) -> Result<Box<dyn Layer<S> + Send + Sync>, TelemetryError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(&config.level)?,
    };
    Ok(match config.format {
        LogFormat::Json => {
            let (format, capture) = logs::json_logs();
            // The capture only needs the dispatch: it wants no span or event,
            // so it enables none (an unfiltered layer would enable every
            // span of every crate at every level).
            capture
                .with_filter(tracing_subscriber::filter::filter_fn(|_| false))
                .and_then(
                    tracing_subscriber::fmt::layer()
                        .event_format(format)
                        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                        .with_filter(filter),
                )
                .boxed()
        }
        LogFormat::Text => tracing_subscriber::fmt::layer().with_filter(filter).boxed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans no layer wants are never built: they cost a request nothing.
    #[test]
    fn spans_below_the_log_level_are_disabled_when_nothing_is_exported() {
        for format in [LogFormat::Json, LogFormat::Text] {
            let mut config = Config::default();
            config.logging.level = "warn".into();
            config.logging.format = format;
            let telemetry = Telemetry::new(&config, LogOutput::Stdout).expect("telemetry");
            tracing::dispatcher::with_default(telemetry.dispatch(), || {
                assert!(tracing::info_span!("request").is_disabled(), "{format:?}");
                assert!(tracing::trace_span!("h2").is_disabled(), "{format:?}");
                assert!(!tracing::warn_span!("warned").is_disabled(), "{format:?}");
                assert!(current().is_some(), "the server context is reachable");
            });
        }
        let telemetry = Telemetry::new(&Config::default(), LogOutput::Off).expect("telemetry");
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            assert!(tracing::error_span!("request").is_disabled());
            assert!(current().is_some());
        });
    }

    #[test]
    fn http_signal_urls_append_the_path_once() {
        assert_eq!(
            signal_url("http://localhost:4318", "/v1/traces"),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            signal_url("http://localhost:4318/", "/v1/traces"),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            signal_url("http://c:4318/v1/traces", "/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
