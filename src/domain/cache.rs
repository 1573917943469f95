//! The stock cache, as the domain needs it ([`StockCache`]): it may answer
//! `CheckInventory` and, while the database cannot be reached, the stock in
//! `ListInventory` pages. Every decision that changes stock is made in the
//! database; after commit the writer puts the new figures in the cache.
//!
//! Every cached value carries its row's `updated_at`, which the rules keep
//! moving forward for every change of a row (see `decide.rs`). A cache keeps
//! the newer of two values of a product, so writers and readers that race
//! each other (a read of the database that started before a write and fills
//! the cache after it) can never put an older figure in place of a newer
//! one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::model::StockLevel;

/// A product's stock as a cache holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedStock {
    /// The stock.
    pub stock: StockLevel,
    /// When it was known to be the database's figure (put in the cache).
    pub cached_at: DateTime<Utc>,
    /// False when the cache may have missed a change of it (its feed of
    /// other replicas' changes is lost): then it may only be answered as
    /// stale, in read-only mode.
    pub current: bool,
}

/// A cache of products' stock. Its failures are its own: an implementation
/// that cannot reach its backing store answers "not cached" and logs, and
/// never fails a request.
#[async_trait]
pub trait StockCache: Send + Sync + 'static {
    /// The cached stock of a product, if any.
    async fn get(&self, product_id: &str) -> Option<CachedStock>;

    /// Stores each stock, known current `now`, unless the cache holds a
    /// newer figure of its product (a later `updated_at`).
    async fn put(&self, stocks: &[StockLevel], now: DateTime<Utc>);

    /// Up to `limit` cached products by product id, strictly after `after`:
    /// what the cache can show of the stock list while the database cannot
    /// be reached (entries it no longer holds are missing).
    async fn list(&self, after: Option<&str>, limit: u32) -> Vec<CachedStock>;
}

/// What a cache hears of changes made through other replicas (PostgreSQL's
/// `LISTEN/NOTIFY`, sent in each writing transaction, so a write that rolled
/// back says nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeFeed {
    /// The feed is (again) connected: what was missed while it was down is
    /// unknown, so the cache starts empty.
    Up,
    /// The feed is lost: the cache cannot know of changes anymore, so what
    /// it holds is no longer current (answered only as stale, in read-only
    /// mode) until the feed is back.
    Down,
    /// Stock rows as a committed transaction left them.
    Changed(Vec<StockLevel>),
}

/// What follows the [`ChangeFeed`]: the memory cache.
#[async_trait]
pub trait ChangeFollower: Send + Sync + 'static {
    /// Follows one change of the feed.
    async fn follow(&self, change: ChangeFeed);
}
