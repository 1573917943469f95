//! A test double for retry policies: a database that fails as a test
//! scripts ([`ScriptedStore`]). The inventory rules are tested against the
//! domain's in-memory store and against the real databases.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::port::{Changes, EventPage, InventoryStore, StoreError, StoreResult};
use crate::domain::work::{Planned, Work};
use crate::domain::{HistoryCursor, HistoryEntry, Money, Reservation, StockLevel, StockTotals};

/// Fails its calls with the errors it was given, in order, then succeeds
/// with an empty outcome; counts the calls.
#[derive(Default)]
pub(crate) struct ScriptedStore {
    /// The failures still to come, in order.
    failures: Mutex<VecDeque<StoreError>>,
    /// Calls so far.
    calls: AtomicU32,
    /// How long each call takes.
    latency: Duration,
}

impl ScriptedStore {
    /// Fails the first calls with `failures`, in order.
    pub(crate) fn failing(failures: impl IntoIterator<Item = StoreError>) -> Arc<Self> {
        Arc::new(Self {
            failures: Mutex::new(failures.into_iter().collect()),
            ..Self::default()
        })
    }

    /// Like [`Self::failing`], each call taking `latency`.
    pub(crate) fn slow(
        failures: impl IntoIterator<Item = StoreError>,
        latency: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            failures: Mutex::new(failures.into_iter().collect()),
            latency,
            ..Self::default()
        })
    }

    /// How many calls were made.
    pub(crate) fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    async fn answer<T>(&self, success: T) -> StoreResult<T> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        let failure = self.failures.lock().expect("not poisoned").pop_front();
        failure.map_or(Ok(success), Err)
    }
}

#[async_trait]
impl InventoryStore for ScriptedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.answer(()).await
    }
    async fn stock(&self, _: &str) -> StoreResult<Option<StockLevel>> {
        self.answer(None).await
    }
    async fn list_stock(&self, _: Option<String>, _: u32) -> StoreResult<Vec<StockLevel>> {
        self.answer(Vec::new()).await
    }
    async fn order_reservations(&self, _: &str) -> StoreResult<Vec<Reservation>> {
        self.answer(Vec::new()).await
    }
    async fn history(
        &self,
        _: &str,
        _: Option<HistoryCursor>,
        _: u32,
    ) -> StoreResult<Option<Vec<HistoryEntry>>> {
        self.answer(None).await
    }
    async fn alternatives(&self, _: &str) -> StoreResult<Option<Vec<StockLevel>>> {
        self.answer(None).await
    }
    async fn set_unit_cost(&self, _: &str, _: Option<Money>) -> StoreResult<bool> {
        self.answer(false).await
    }
    async fn stock_totals(&self) -> StoreResult<StockTotals> {
        self.answer(StockTotals::default()).await
    }
    async fn record_history(&self, _: HistoryEntry) -> StoreResult<()> {
        self.answer(()).await
    }
    async fn purge_request_keys(&self, _: DateTime<Utc>, _: u32) -> StoreResult<usize> {
        self.answer(0).await
    }
    async fn events(&self, _: i64, _: u32) -> StoreResult<EventPage> {
        self.answer(EventPage::default()).await
    }
    async fn purge_events(&self, _: DateTime<Utc>, _: u32) -> StoreResult<usize> {
        self.answer(0).await
    }
    async fn apply(&self, work: &Work) -> StoreResult<Planned> {
        self.answer(Planned {
            outcomes: Vec::new(),
            changes: Changes {
                now: work.now,
                ..Changes::default()
            },
        })
        .await
    }
    fn close(&self) {}
}
