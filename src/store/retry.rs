//! Retries of transient database failures, so that a brief outage (a lost
//! connection, a refused connect) is not at once an UNAVAILABLE answer.
//!
//! [`RetryingStore`] wraps any [`InventoryStore`]. A call that fails with a
//! transient error ([`Error::is_transient`]) runs again after a backoff when
//! running it again cannot apply a write twice ([`Replay`]), up to
//! [`RetryPolicy::max_attempts`] attempts and while within
//! [`RetryPolicy::budget`]. Then the last error is returned unchanged.
//! Conflicts and internal errors are never retried here: the domain runs a
//! unit of work that lost a race again itself.
//!
//! | method | replay |
//! |---|---|
//! | stock, order_reservations, list_stock, history, alternatives, stock_totals | Safe: reads |
//! | set_unit_cost | Safe: setting the same cost twice is setting it once |
//! | apply, when the work may run twice ([`Work::may_run_twice`]: reservations, expiry, writes with a request key) | Safe: a second run finds the first one's effect |
//! | apply, otherwise (release, commit, update, order release without a request key) | OnlyIfUnsent |
//! | purge_request_keys, purge_events | Safe: a second run handles only what is still due |
//! | events | Safe: a read |
//! | record_history | Safe: at worst a check is recorded twice |
//! | ping | never retried: health wants the database's own answer |
//!
//! Backoff is exponential with full jitter: retry `n` waits a random time
//! between zero and `min(max_delay, base_delay × 2^(n-1))`, so replicas that
//! lost the database together do not come back in step. Each retry is logged
//! at WARN, which also makes it an event of the caller's span.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::domain::batch::full_jitter;
use crate::domain::port::{EventPage, InventoryStore, StoreError as Error, StoreResult as Result};
use crate::domain::work::{Planned, Work};
use crate::domain::{HistoryCursor, HistoryEntry, Money, Reservation, StockLevel, StockTotals};

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts of one call, the first included; 1 never retries.
    pub max_attempts: u32,
    /// The ceiling of the first retry's wait; it doubles for each retry.
    pub base_delay: Duration,
    /// The highest ceiling of a wait.
    pub max_delay: Duration,
    /// No retry starts later than this after the first attempt began, so a
    /// database that answers slowly is not waited for several times over.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_millis(400),
            budget: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt, after `failed` attempts that took
    /// `elapsed` in all, or `None` when attempts or budget are spent.
    fn delay_before_retry(&self, failed: u32, elapsed: Duration) -> Option<Duration> {
        if failed >= self.max_attempts {
            return None;
        }
        let delay = full_jitter(self.backoff_ceiling(failed));
        (elapsed + delay <= self.budget).then_some(delay)
    }

    /// `min(max_delay, base_delay × 2^(retry-1))`.
    fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Whether a failed call may run again: what a second run risks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Running the call twice has the effect of running it once (reads, and
    /// writes that find their own earlier effect): retried after any
    /// transient failure.
    Safe,
    /// A second run could apply the write twice: retried only when the
    /// failure came before any statement was sent.
    OnlyIfUnsent,
}

impl Replay {
    /// The replay of a unit of work: safe when every command of it finds
    /// its own earlier effect.
    fn of_work(work: &Work) -> Self {
        if work.may_run_twice() {
            Self::Safe
        } else {
            Self::OnlyIfUnsent
        }
    }

    /// Whether the call may run again after `error`.
    fn allows_retry_after(self, error: &Error) -> bool {
        match self {
            Self::Safe => error.is_transient(),
            Self::OnlyIfUnsent => error.before_any_statement(),
        }
    }
}

/// An [`InventoryStore`] that retries the calls of another (see the module
/// docs for the policy of each method).
pub struct RetryingStore {
    /// The store that talks to the database.
    inner: Arc<dyn InventoryStore>,
    /// Attempts, backoff and budget.
    policy: RetryPolicy,
}

impl RetryingStore {
    /// Wraps `inner`, retrying as `policy` says.
    pub fn new(inner: Arc<dyn InventoryStore>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// Runs `attempt` until it succeeds, fails in a way `replay` does not
    /// retry, or the policy's attempts or budget are spent; returns the last
    /// outcome.
    async fn retry<T, F, Fut>(
        &self,
        operation: &'static str,
        replay: Replay,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut failed = 0;
        loop {
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            failed += 1;
            if !replay.allows_retry_after(&error) {
                return Err(error);
            }
            let Some(delay) = self.policy.delay_before_retry(failed, started.elapsed()) else {
                return Err(error);
            };
            tracing::warn!(
                db.operation.name = operation,
                attempt = failed,
                max_attempts = self.policy.max_attempts,
                retry_in = ?delay,
                %error,
                "transient database failure; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

#[async_trait]
impl InventoryStore for RetryingStore {
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn stock(&self, product_id: &str) -> Result<Option<StockLevel>> {
        self.retry("stock", Replay::Safe, || self.inner.stock(product_id))
            .await
    }

    async fn list_stock(&self, after: Option<String>, limit: u32) -> Result<Vec<StockLevel>> {
        self.retry("list_stock", Replay::Safe, || {
            self.inner.list_stock(after.clone(), limit)
        })
        .await
    }

    async fn order_reservations(&self, order_id: &str) -> Result<Vec<Reservation>> {
        self.retry("order_reservations", Replay::Safe, || {
            self.inner.order_reservations(order_id)
        })
        .await
    }

    async fn history(
        &self,
        product_id: &str,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Option<Vec<HistoryEntry>>> {
        self.retry("history", Replay::Safe, || {
            self.inner.history(product_id, after.clone(), limit)
        })
        .await
    }

    async fn alternatives(&self, product_id: &str) -> Result<Option<Vec<StockLevel>>> {
        self.retry("alternatives", Replay::Safe, || {
            self.inner.alternatives(product_id)
        })
        .await
    }

    async fn set_unit_cost(&self, product_id: &str, cost: Option<Money>) -> Result<bool> {
        self.retry("set_unit_cost", Replay::Safe, || {
            self.inner.set_unit_cost(product_id, cost.clone())
        })
        .await
    }

    async fn stock_totals(&self) -> Result<StockTotals> {
        self.retry("stock_totals", Replay::Safe, || self.inner.stock_totals())
            .await
    }

    async fn record_history(&self, entry: HistoryEntry) -> Result<()> {
        self.retry("record_history", Replay::Safe, || {
            self.inner.record_history(entry.clone())
        })
        .await
    }

    async fn purge_request_keys(&self, before: DateTime<Utc>, limit: u32) -> Result<usize> {
        self.retry("purge_request_keys", Replay::Safe, || {
            self.inner.purge_request_keys(before, limit)
        })
        .await
    }

    async fn events(&self, after: i64, limit: u32) -> Result<EventPage> {
        self.retry("events", Replay::Safe, || self.inner.events(after, limit))
            .await
    }

    async fn purge_events(&self, before: DateTime<Utc>, limit: u32) -> Result<usize> {
        self.retry("purge_events", Replay::Safe, || {
            self.inner.purge_events(before, limit)
        })
        .await
    }

    async fn apply(&self, work: &Work) -> Result<Planned> {
        let operation = match work.commands.as_slice() {
            [one] => one.name(),
            _ => "batch",
        };
        self.retry(operation, Replay::of_work(work), || self.inner.apply(work))
            .await
    }

    fn close(&self) {
        self.inner.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StockChange;
    use crate::domain::work::{
        Command, CommitRequest, NewOrderReservation, NewReservation, OrderRelease, ReleaseRequest,
        RequestKey, StockUpdate,
    };
    use crate::store::fake::ScriptedStore;

    const METHODS: [&str; 23] = [
        "ping",
        "stock",
        "reserve",
        "reserve_order",
        "release",
        "commit",
        "release_order",
        "keyed_release",
        "keyed_commit",
        "keyed_release_order",
        "keyed_update",
        "order_reservations",
        "list_stock",
        "update",
        "record_history",
        "history",
        "expire",
        "purge_request_keys",
        "events",
        "purge_events",
        "alternatives",
        "set_unit_cost",
        "stock_totals",
    ];

    fn key(method: &str) -> Option<RequestKey> {
        method.starts_with("keyed_").then(|| RequestKey {
            request_id: "req-1".into(),
            method: "Test",
            fields: serde_json::Value::Null,
        })
    }

    /// Calls `method` of `store` with arbitrary arguments.
    async fn call(store: &RetryingStore, method: &str) -> Result<()> {
        let now = Utc::now();
        let (p, o) = ("p-1".to_owned(), "o-1".to_owned());
        let key = key(method);
        let command = match method.trim_start_matches("keyed_") {
            "ping" => return store.ping().await,
            "stock" => return store.stock(&p).await.map(drop),
            "order_reservations" => return store.order_reservations(&o).await.map(drop),
            "list_stock" => return store.list_stock(None, 10).await.map(drop),
            "history" => return store.history(&p, None, 10).await.map(drop),
            "record_history" => {
                return store
                    .record_history(crate::domain::decide::check_entry(&p, 1, 1, now))
                    .await;
            }
            "purge_request_keys" => return store.purge_request_keys(now, 10).await.map(drop),
            "events" => return store.events(0, 10).await.map(drop),
            "alternatives" => return store.alternatives(&p).await.map(drop),
            "set_unit_cost" => return store.set_unit_cost(&p, None).await.map(drop),
            "stock_totals" => return store.stock_totals().await.map(drop),
            "purge_events" => return store.purge_events(now, 10).await.map(drop),
            "reserve" => Command::Reserve(NewReservation {
                id: "r-1".into(),
                product_id: p,
                order_id: o,
                quantity: 1,
                timeout: chrono::Duration::seconds(60),
            }),
            "reserve_order" => Command::ReserveOrder(NewOrderReservation {
                order_id: o,
                items: Vec::new(),
                timeout: chrono::Duration::seconds(60),
            }),
            "release" => Command::Release(ReleaseRequest {
                product_id: p,
                order_id: o,
                quantity: None,
                key,
            }),
            "commit" => Command::Commit(CommitRequest {
                product_id: p,
                order_id: o,
                quantity: None,
                key,
            }),
            "release_order" => Command::ReleaseOrder(OrderRelease { order_id: o, key }),
            "update" => Command::Update(StockUpdate {
                product_id: p,
                change: StockChange::Add(1),
                expected_version: None,
                key,
            }),
            "expire" => Command::Expire { limit: 10 },
            other => unreachable!("unknown method {other}"),
        };
        store.apply(&Work::single(command, now)).await.map(drop)
    }

    /// How many calls `method` makes when the database fails once with
    /// `error`, and whether it then succeeds.
    async fn calls_after_one(error: fn() -> Error, method: &str) -> (u32, bool) {
        let inner = ScriptedStore::failing([error()]);
        let store = RetryingStore::new(inner.clone(), RetryPolicy::default());
        let succeeded = call(&store, method).await.is_ok();
        (inner.calls(), succeeded)
    }

    fn not_connected() -> Error {
        Error::NotConnected("connection refused".into())
    }

    fn unavailable() -> Error {
        Error::Unavailable("connection closed".into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_before_any_statement_is_retried_by_every_call_but_ping() {
        for method in METHODS {
            let expected = if method == "ping" {
                (1, false)
            } else {
                (2, true)
            };
            assert_eq!(
                calls_after_one(not_connected, method).await,
                expected,
                "{method}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_connection_is_retried_only_by_calls_safe_to_run_twice() {
        let once = ["ping", "release", "commit", "release_order", "update"];
        for method in METHODS {
            let expected = if once.contains(&method) {
                (1, false)
            } else {
                (2, true)
            };
            assert_eq!(
                calls_after_one(unavailable, method).await,
                expected,
                "{method}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn conflicts_and_internal_errors_are_never_retried() {
        let conflict = || Error::Conflict("duplicate key value".into());
        let internal = || Error::Internal("syntax error".into());
        for error in [conflict, internal] {
            for method in METHODS {
                assert_eq!(calls_after_one(error, method).await, (1, false), "{method}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded_and_the_last_error_is_returned() {
        let inner =
            ScriptedStore::failing((1..=10).map(|n| Error::NotConnected(format!("failure {n}"))));
        let store = RetryingStore::new(inner.clone(), RetryPolicy::default());
        let error = store.stock("p-1").await.expect_err("still failing");
        assert_eq!(inner.calls(), 4);
        assert!(
            matches!(&error, Error::NotConnected(m) if m == "failure 4"),
            "{error:?}"
        );

        let once = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        let inner = ScriptedStore::failing([not_connected()]);
        let store = RetryingStore::new(inner.clone(), once);
        store.stock("p-1").await.expect_err("no retry");
        assert_eq!(inner.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_that_may_have_been_applied_is_not_run_again() {
        let inner = ScriptedStore::failing([not_connected(), unavailable()]);
        let store = RetryingStore::new(inner.clone(), RetryPolicy::default());
        let error = call(&store, "release").await.expect_err("ambiguous");
        assert_eq!(inner.calls(), 2, "retried after the refused connect only");
        assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_after_the_budget() {
        let inner =
            ScriptedStore::slow((0..10).map(|_| not_connected()), Duration::from_millis(600));
        let policy = RetryPolicy {
            max_attempts: 10,
            budget: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let store = RetryingStore::new(inner.clone(), policy);
        let started = Instant::now();
        store.stock("p-1").await.expect_err("still failing");
        assert_eq!(inner.calls(), 2);
        assert!(started.elapsed() < Duration::from_millis(1300));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<_> = (1..=6).map(|n| policy.backoff_ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [25, 50, 100, 200, 400, 400].map(Duration::from_millis)
        );
        assert_eq!(policy.backoff_ceiling(u32::MAX), policy.max_delay);
        for failed in 1..policy.max_attempts {
            let delay = policy
                .delay_before_retry(failed, Duration::ZERO)
                .expect("attempts left");
            assert!(delay <= policy.backoff_ceiling(failed), "{delay:?}");
        }
        assert_eq!(
            policy.delay_before_retry(policy.max_attempts, Duration::ZERO),
            None
        );
        let delays: std::collections::HashSet<_> = (0..20)
            .map(|_| full_jitter(Duration::from_secs(1)))
            .collect();
        assert!(delays.len() > 1, "jitter is random");
    }
}
