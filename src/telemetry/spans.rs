//! Spans the exporter could not take, counted for `/metrics`.
//!
//! The OpenTelemetry SDK's batch processor queues finished spans for its
//! export thread and, when the queue is full, drops them rather than hold a
//! request; it logs a warning at the first drop and the total at shutdown,
//! and counts nothing an alert could read. [`CountingProcessor`] sits in
//! front of it and [`CountingExporter`] behind it: a span is let in only
//! while fewer than the queue's capacity are between the two, so the SDK's
//! own queue never overflows and every span dropped is dropped, and
//! counted, here; the exporter side counts what was sent and what a failed
//! export lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// What became of the spans that ended, shared by a [`CountingProcessor`]
/// and its [`CountingExporter`].
#[derive(Debug)]
pub struct SpanCounts {
    /// Spans let in and not yet handed to the exporter.
    queued: AtomicUsize,
    /// The batch processor's queue size: never more are let in.
    capacity: usize,
    /// Dropped because the queue was full.
    dropped: AtomicU64,
    /// Handed to an export that failed (or timed out).
    failed: AtomicU64,
    /// Sent.
    exported: AtomicU64,
}

impl SpanCounts {
    /// Counts for a batch processor whose queue holds `capacity` spans.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            queued: AtomicUsize::new(0),
            capacity,
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            exported: AtomicU64::new(0),
        })
    }

    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Spans lost with an export that failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Spans sent.
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// Takes a place in the queue for one span, or counts it dropped.
    fn admit(&self) -> bool {
        let admitted = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < self.capacity).then_some(queued + 1)
            })
            .is_ok();
        if !admitted {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// `spans` left the queue for the exporter.
    fn leave(&self, spans: usize) {
        // Never below zero, should the exporter ever be handed spans that
        // did not come through the processor.
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                Some(queued.saturating_sub(spans))
            });
    }
}

/// A span processor (the SDK's batch processor) that is only given a span
/// while its queue has room; see the module's text.
#[derive(Debug)]
pub struct CountingProcessor<P> {
    inner: P,
    counts: Arc<SpanCounts>,
}

impl<P> CountingProcessor<P> {
    /// `inner`, fed through `counts`, whose capacity must be `inner`'s
    /// queue size, and whose exporter must be a [`CountingExporter`] on the
    /// same `counts`.
    pub fn new(inner: P, counts: Arc<SpanCounts>) -> Self {
        Self { inner, counts }
    }
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.counts.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// An exporter that tells its [`SpanCounts`] which spans left the queue
/// and what became of them.
#[derive(Debug)]
pub struct CountingExporter<E> {
    inner: E,
    counts: Arc<SpanCounts>,
}

impl<E> CountingExporter<E> {
    /// `inner`, counted in `counts`.
    pub fn new(inner: E, counts: Arc<SpanCounts>) -> Self {
        Self { inner, counts }
    }
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let spans = batch.len();
        self.counts.leave(spans);
        let export = self.inner.export(batch);
        let counts = self.counts.clone();
        async move {
            let result = export.await;
            let outcome = if result.is_ok() {
                &counts.exported
            } else {
                &counts.failed
            };
            outcome.fetch_add(u64::try_from(spans).unwrap_or(u64::MAX), Ordering::Relaxed);
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkError;
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};

    use super::*;

    /// Takes 20 ms per batch, and fails every batch while `failing`.
    #[derive(Debug, Clone, Default)]
    struct SlowExporter {
        failing: Arc<AtomicBool>,
    }

    impl SpanExporter for SlowExporter {
        fn export(
            &self,
            _batch: Vec<SpanData>,
        ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
            let failing = self.failing.load(Ordering::Relaxed);
            async move {
                // The SDK runs exports on its own thread.
                std::thread::sleep(Duration::from_millis(20));
                if failing {
                    Err(OTelSdkError::InternalFailure("down".into()))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// A tracer provider with a batch queue of `capacity` spans in front of
    /// `exporter`, counted in the returned counts.
    fn provider(capacity: usize, exporter: SlowExporter) -> (SdkTracerProvider, Arc<SpanCounts>) {
        let counts = SpanCounts::new(capacity);
        let batch = BatchSpanProcessor::builder(CountingExporter::new(exporter, counts.clone()))
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(capacity)
                    .with_max_export_batch_size(4)
                    .with_scheduled_delay(Duration::from_millis(5))
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(CountingProcessor::new(batch, counts.clone()))
            .build();
        (provider, counts)
    }

    #[test]
    fn every_span_is_exported_or_counted_dropped() {
        let (provider, counts) = provider(8, SlowExporter::default());
        let tracer = provider.tracer("test");
        for _ in 0..200 {
            tracer.in_span("work", |_| {});
        }
        provider.shutdown().expect("shutdown");
        assert!(
            counts.dropped() > 0,
            "a queue of 8 behind a slow exporter drops"
        );
        assert!(counts.exported() > 0);
        assert_eq!(counts.failed(), 0);
        assert_eq!(
            counts.exported() + counts.dropped(),
            200,
            "the SDK dropped spans that were not counted"
        );
    }

    #[test]
    fn spans_lost_with_a_failed_export_are_counted() {
        let exporter = SlowExporter::default();
        exporter.failing.store(true, Ordering::Relaxed);
        let (provider, counts) = provider(64, exporter);
        let tracer = provider.tracer("test");
        for _ in 0..10 {
            tracer.in_span("work", |_| {});
        }
        // The flush reports the failed export; the counts are what matter.
        let _ = provider.force_flush();
        assert_eq!(
            (counts.failed(), counts.dropped(), counts.exported()),
            (10, 0, 0)
        );
        let _ = provider.shutdown();
    }

    #[test]
    fn the_queue_is_never_overfilled_and_frees_its_places() {
        let counts = SpanCounts::new(2);
        assert!(counts.admit());
        assert!(counts.admit());
        assert!(!counts.admit());
        assert_eq!(counts.dropped(), 1);
        counts.leave(2);
        assert!(counts.admit());
        counts.leave(5);
        assert_eq!(counts.queued.load(Ordering::Relaxed), 0);
    }
}
