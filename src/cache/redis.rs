//! The cache every replica shares: Redis, through the redis crate's
//! `ConnectionManager` (one multiplexed connection carrying every concurrent
//! call, reconnecting by itself). A product is a hash `{prefix}:stock:<id>`
//! with the figure's `updated_at` in microseconds (`u`) and the entry as
//! JSON (`v`), expiring after `cache.ttl`; a sorted set `{prefix}:stock:ids`
//! lists the products for `ListInventory` pages. A Lua script stores a
//! figure only if it is not older than the one held, so replicas writing at
//! once keep the newest.
//!
//! Redis failing never fails a request: a lookup is a miss, and a figure
//! that could not be stored leaves an older one behind, so its product is
//! remembered and deleted from Redis before the cache answers anything
//! again (a `pending` set; past [`MAX_PENDING`] products, every entry is
//! deleted).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands as _, RedisResult, Script};

use super::Entry;
use crate::domain::StockLevel;
use crate::domain::cache::{CachedStock, StockCache};
use crate::telemetry::Metrics;

const NAME: &str = "redis";

/// How long one Redis call may take before it counts as a failure (a miss):
/// a cache that answers slower than the database is no cache.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// Products whose entries could not be corrected that are remembered one by
/// one; past this many, the whole cache is cleared instead.
pub const MAX_PENDING: usize = 10_000;

/// Stores each figure unless a newer one is held. KEYS: the ids set, then
/// one key per product; ARGV: the TTL in milliseconds, then per product its
/// id, `u` and entry.
const PUT_SCRIPT: &str = r"
local ttl = ARGV[1]
for i = 2, #KEYS do
  local at = 2 + (i - 2) * 3
  local u = tonumber(ARGV[at + 1])
  local held = tonumber(redis.call('HGET', KEYS[i], 'u'))
  if (not held) or held <= u then
    redis.call('HSET', KEYS[i], 'u', ARGV[at + 1], 'v', ARGV[at + 2])
    redis.call('PEXPIRE', KEYS[i], ttl)
    redis.call('ZADD', KEYS[1], 0, ARGV[at])
  end
end
-- every entry listed expires no later than the list itself
redis.call('PEXPIRE', KEYS[1], ttl)
return 0
";

/// Products' stock in Redis.
pub struct RedisCache {
    connection: ConnectionManager,
    prefix: String,
    ttl: Duration,
    put_script: Script,
    /// Products whose entries in Redis may be older than the database
    /// (`None`: too many, clear everything).
    pending: Mutex<Option<HashSet<String>>>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl RedisCache {
    /// A cache at `url` (`redis://host:port/db`) under the keys
    /// `{prefix}:stock:*`, each entry kept `ttl`. Connects lazily: Redis
    /// being down at start only makes every lookup a miss until it is up.
    pub fn new(
        url: &str,
        prefix: &str,
        ttl: Duration,
        metrics: Option<Arc<Metrics>>,
    ) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, config)?,
            prefix: format!("{{{prefix}}}"),
            ttl,
            put_script: Script::new(PUT_SCRIPT),
            pending: Mutex::new(Some(HashSet::new())),
            metrics,
        })
    }

    fn key(&self, product_id: &str) -> String {
        format!("{}:stock:{product_id}", self.prefix)
    }

    fn ids_key(&self) -> String {
        format!("{}:stock:ids", self.prefix)
    }

    fn failed(&self, doing: &str, error: &dyn std::fmt::Display) {
        tracing::warn!(cache = NAME, "stock cache: {doing} failed: {error}");
        if let Some(metrics) = &self.metrics {
            metrics.cache_error(NAME);
        }
    }

    /// Runs a Redis call within [`CALL_TIMEOUT`].
    async fn call<T>(&self, doing: &str, call: impl Future<Output = RedisResult<T>>) -> Option<T> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.failed(doing, &error);
                None
            }
            Err(_) => {
                self.failed(doing, &format_args!("no answer in {CALL_TIMEOUT:?}"));
                None
            }
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Option<HashSet<String>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers that these products' entries may be older than the
    /// database.
    fn remember(&self, stocks: &[StockLevel]) {
        let mut pending = self.pending();
        if let Some(ids) = pending.as_mut() {
            ids.extend(stocks.iter().map(|s| s.product_id.clone()));
            if ids.len() > MAX_PENDING {
                *pending = None;
            }
        }
    }

    /// Deletes the entries that may be older than the database; true when
    /// none is left (the cache may answer).
    async fn correct(&self) -> bool {
        let todo = match &*self.pending() {
            Some(ids) if ids.is_empty() => return true,
            Some(ids) => Some(ids.iter().cloned().collect::<Vec<_>>()),
            None => None,
        };
        let mut connection = self.connection.clone();
        let done = match &todo {
            Some(ids) => {
                let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
                self.call("deleting entries", connection.del::<_, ()>(keys))
                    .await
                    .is_some()
            }
            None => self.clear(&mut connection).await,
        };
        if done {
            let mut pending = self.pending();
            match (pending.as_mut(), &todo) {
                (Some(ids), Some(done)) => done.iter().for_each(|id| {
                    ids.remove(id);
                }),
                // Cleared everything, or more failed meanwhile (then
                // another correction runs first next time).
                (None, None) => *pending = Some(HashSet::new()),
                _ => {}
            }
            pending.as_ref().is_some_and(HashSet::is_empty)
        } else {
            false
        }
    }

    /// Deletes every entry of this cache.
    async fn clear(&self, connection: &mut ConnectionManager) -> bool {
        let pattern = format!("{}:stock:*", self.prefix);
        let Some(keys) = self
            .call("listing entries", async {
                let mut keys = Vec::new();
                let mut iter = connection.scan_match::<_, String>(&pattern).await?;
                while let Some(key) = futures_util::StreamExt::next(&mut iter).await {
                    keys.push(key?);
                }
                Ok(keys)
            })
            .await
        else {
            return false;
        };
        let mut connection = self.connection.clone();
        for chunk in keys.chunks(500) {
            if self
                .call("deleting entries", connection.del::<_, ()>(chunk))
                .await
                .is_none()
            {
                return false;
            }
        }
        true
    }
}

#[async_trait]
impl StockCache for RedisCache {
    async fn get(&self, product_id: &str) -> Option<CachedStock> {
        let found = if self.correct().await {
            let mut connection = self.connection.clone();
            self.call(
                "lookup",
                connection.hget::<_, _, Option<String>>(self.key(product_id), "v"),
            )
            .await
            .flatten()
            .and_then(|json| serde_json::from_str::<Entry>(&json).ok())
        } else {
            None
        };
        if let Some(metrics) = &self.metrics {
            metrics.cache_lookup(NAME, found.is_some());
        }
        found.map(|entry| entry.into_cached(true))
    }

    async fn put(&self, stocks: &[StockLevel], now: DateTime<Utc>) {
        if stocks.is_empty() {
            return;
        }
        let mut invocation = self.put_script.prepare_invoke();
        invocation.key(self.ids_key());
        invocation.arg(self.ttl.as_millis().max(1) as u64);
        for stock in stocks {
            let entry = Entry::new(stock, now);
            let Ok(json) = serde_json::to_string(&entry) else {
                continue;
            };
            invocation
                .key(self.key(&stock.product_id))
                .arg(&stock.product_id)
                .arg(entry.u)
                .arg(json);
        }
        let mut connection = self.connection.clone();
        if self
            .call("storing", invocation.invoke_async::<i64>(&mut connection))
            .await
            .is_none()
        {
            self.remember(stocks);
        }
    }

    async fn list(&self, after: Option<&str>, limit: u32) -> Vec<CachedStock> {
        if !self.correct().await {
            return Vec::new();
        }
        let mut connection = self.connection.clone();
        let min = after.map_or_else(|| "-".to_owned(), |after| format!("({after}"));
        let mut found = Vec::new();
        let mut from = min;
        // Ids whose entries expired are skipped (and dropped from the set),
        // so read on until the page is full or the ids run out.
        while found.len() < limit as usize {
            let want = limit as usize - found.len();
            let Some(ids) = self
                .call(
                    "listing",
                    connection.zrangebylex_limit::<_, _, _, Vec<String>>(
                        self.ids_key(),
                        &from,
                        "+",
                        0,
                        want as isize,
                    ),
                )
                .await
            else {
                break;
            };
            let Some(last) = ids.last() else { break };
            from = format!("({last}");
            let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.hget(key, "v");
            }
            let Some(values) = self
                .call(
                    "listing",
                    pipe.query_async::<Vec<Option<String>>>(&mut connection),
                )
                .await
            else {
                break;
            };
            let mut gone = Vec::new();
            for (id, value) in ids.iter().zip(values) {
                match value.and_then(|json| serde_json::from_str::<Entry>(&json).ok()) {
                    Some(entry) => found.push(entry.into_cached(true)),
                    None => gone.push(id.clone()),
                }
            }
            if !gone.is_empty() {
                self.call(
                    "forgetting",
                    connection.zrem::<_, _, ()>(self.ids_key(), gone),
                )
                .await;
            }
            if ids.len() < want {
                break;
            }
        }
        found
    }
}
