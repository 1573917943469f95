//! The cache in the process: moka, bounded to `cache.max_size` products,
//! each entry living `cache.ttl`. On PostgreSQL with several replicas it
//! follows the other replicas' changes ([`ChangeFollower`]). While that feed
//! is lost, what it holds is not current: the domain answers it only in
//! read-only mode, marked stale (when the database is down, the feed is
//! too, and the cache is all there is); when the feed is back, the cache
//! starts empty, since it cannot know what it missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;

use super::Entry;
use crate::domain::StockLevel;
use crate::domain::cache::{CachedStock, ChangeFeed, ChangeFollower, StockCache};
use crate::telemetry::Metrics;

const NAME: &str = "memory";

/// Products' stock in the process.
pub struct MemoryCache {
    entries: Cache<String, Arc<Entry>>,
    /// False while the change feed is lost: entries are not current.
    current: AtomicBool,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entries.entry_count())
            .field("current", &self.current.load(Ordering::Relaxed))
            .finish()
    }
}

impl MemoryCache {
    /// Up to `max_size` products, each kept `ttl` after it was stored;
    /// current at once when `current`, else from the first
    /// [`ChangeFeed::Up`].
    pub fn new(max_size: u64, ttl: Duration, current: bool, metrics: Option<Arc<Metrics>>) -> Self {
        let evictions = metrics.clone();
        let entries = Cache::builder()
            .max_capacity(max_size)
            .time_to_live(ttl)
            .eviction_listener(move |_, _, cause: RemovalCause| {
                if cause.was_evicted()
                    && let Some(metrics) = &evictions
                {
                    metrics.cache_evicted(NAME);
                }
            })
            .build();
        Self {
            entries,
            current: AtomicBool::new(current),
            metrics,
        }
    }

    fn current(&self) -> bool {
        self.current.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ChangeFollower for MemoryCache {
    async fn follow(&self, change: ChangeFeed) {
        match change {
            ChangeFeed::Up => {
                self.entries.invalidate_all();
                self.current.store(true, Ordering::SeqCst);
                tracing::info!("stock cache: change feed connected");
            }
            ChangeFeed::Down => {
                if self.current.swap(false, Ordering::SeqCst) {
                    tracing::warn!(
                        "stock cache: change feed lost; the cache is not current until it is back"
                    );
                }
            }
            ChangeFeed::Changed(stocks) => {
                if let Some(metrics) = &self.metrics {
                    metrics.cache_invalidations_received(stocks.len());
                }
                self.put(&stocks, Utc::now()).await;
            }
        }
    }
}

#[async_trait]
impl StockCache for MemoryCache {
    async fn get(&self, product_id: &str) -> Option<CachedStock> {
        let current = self.current();
        let found = self.entries.get(product_id).await;
        if let Some(metrics) = &self.metrics {
            metrics.cache_lookup(NAME, current && found.is_some());
        }
        found.map(|entry| Entry::clone(&entry).into_cached(current))
    }

    async fn put(&self, stocks: &[StockLevel], now: DateTime<Utc>) {
        for stock in stocks {
            let entry = Arc::new(Entry::new(stock, now));
            self.entries
                .entry(stock.product_id.clone())
                .and_compute_with(|current| {
                    // An equal `updated_at` is the same figure, seen again
                    // later: its age starts over.
                    let op = match current {
                        Some(current) if current.value().u > entry.u => Op::Nop,
                        _ => Op::Put(entry),
                    };
                    std::future::ready(op)
                })
                .await;
        }
    }

    async fn list(&self, after: Option<&str>, limit: u32) -> Vec<CachedStock> {
        let current = self.current();
        let mut found: Vec<CachedStock> = self
            .entries
            .iter()
            .filter(|(id, _)| after.is_none_or(|after| id.as_str() > after))
            .map(|(_, entry)| Entry::clone(&entry).into_cached(current))
            .collect();
        found.sort_by(|a, b| a.stock.product_id.cmp(&b.stock.product_id));
        found.truncate(limit as usize);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StockLevel;

    fn stock(id: &str, total: i32, at: DateTime<Utc>) -> StockLevel {
        StockLevel {
            product_id: id.into(),
            total_quantity: total,
            reserved_quantity: 0,
            version: 1,
            low_stock_threshold: None,
            updated_at: at,
        }
    }

    #[tokio::test]
    async fn keeps_the_newer_figure_and_is_not_current_without_its_feed() {
        let cache = MemoryCache::new(100, Duration::from_secs(60), false, None);
        let t0 = Utc::now();
        let t1 = t0 + chrono::Duration::microseconds(1);
        cache.put(&[stock("p", 1, t0)], t0).await;
        let early = cache.get("p").await.expect("kept");
        assert!(!early.current, "not current before the feed is up");

        cache.follow(ChangeFeed::Up).await;
        cache.put(&[stock("p", 2, t1)], t1).await;
        cache.put(&[stock("p", 1, t0)], t1).await;
        let hit = cache.get("p").await.expect("cached");
        assert!(hit.current);
        assert_eq!(
            hit.stock.total_quantity, 2,
            "an older figure never replaces a newer one"
        );

        cache
            .follow(ChangeFeed::Changed(vec![stock("q", 5, t1)]))
            .await;
        let listed = cache.list(Some("p"), 10).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].stock.product_id, "q");

        cache.follow(ChangeFeed::Down).await;
        let kept = cache.get("p").await.expect("kept for read-only mode");
        assert!(!kept.current);
        cache.follow(ChangeFeed::Up).await;
        assert!(
            cache.get("p").await.is_none(),
            "what was missed is unknown: start empty"
        );
    }
}
