//! The stock cache, the implementations of the domain's
//! [`crate::domain::cache::StockCache`]: in the process ([`memory`], moka:
//! bounded, with a time to live, concurrent) or shared by every replica
//! ([`redis`], Redis through a deadpool connection pool). Both keep the
//! newer of two figures of a product (by its `updated_at`), count hits,
//! misses and evictions, and never fail a request: a cache that cannot
//! answer is a miss.

pub mod memory;
pub mod redis;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::StockLevel;
use crate::domain::cache::CachedStock;

/// A cached figure as stored: the stock, its `updated_at` in microseconds
/// (what "newer" compares), and when it was cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    stock: StockLevel,
    /// `stock.updated_at` in microseconds since the epoch.
    u: i64,
    cached_at: DateTime<Utc>,
}

impl Entry {
    fn new(stock: &StockLevel, now: DateTime<Utc>) -> Self {
        Self {
            u: stock.updated_at.timestamp_micros(),
            stock: stock.clone(),
            cached_at: now,
        }
    }
}

impl Entry {
    /// As the domain sees it; `current` when the cache missed no change.
    fn into_cached(self, current: bool) -> CachedStock {
        CachedStock {
            stock: self.stock,
            cached_at: self.cached_at,
            current,
        }
    }
}
