//! Test doubles: a database whose reachability a health test switches
//! ([`SwitchableStore`], only `ping`), and one that fails as a test scripts
//! ([`ScriptedStore`], for retry policies). The inventory rules themselves
//! are tested against real databases.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::*;

/// Answers `ping` while up, fails it as not connected while down.
#[derive(Default)]
pub(crate) struct SwitchableStore {
    down: AtomicBool,
}

impl SwitchableStore {
    /// Makes the database reachable (`false`) or not (`true`).
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

#[async_trait]
impl InventoryStore for SwitchableStore {
    async fn ping(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(Error::NotConnected("connection refused".into()))
        } else {
            Ok(())
        }
    }
    async fn stock(&self, _: &str) -> Result<Option<StockLevel>> {
        unimplemented!("only ping is faked")
    }
    async fn reserve(&self, _: NewReservation) -> Result<ReserveOutcome> {
        unimplemented!("only ping is faked")
    }
    async fn reserve_order(&self, _: NewOrderReservation) -> Result<ReserveOrderOutcome> {
        unimplemented!("only ping is faked")
    }
    async fn release(&self, _: ReleaseRequest) -> Result<Keyed<ReleaseOutcome>> {
        unimplemented!("only ping is faked")
    }
    async fn commit(&self, _: CommitRequest) -> Result<Keyed<CommitOutcome>> {
        unimplemented!("only ping is faked")
    }
    async fn release_order(&self, _: OrderRelease) -> Result<Keyed<ReleaseOrderOutcome>> {
        unimplemented!("only ping is faked")
    }
    async fn order_reservations(&self, _: &str) -> Result<Vec<Reservation>> {
        unimplemented!("only ping is faked")
    }
    async fn list_stock(&self, _: Option<String>, _: u32) -> Result<Vec<StockLevel>> {
        unimplemented!("only ping is faked")
    }
    async fn update_stock(&self, _: StockUpdate) -> Result<Keyed<UpdateOutcome>> {
        unimplemented!("only ping is faked")
    }
    async fn record_check(&self, _: CheckRecord) -> Result<()> {
        unimplemented!("only ping is faked")
    }
    async fn history(
        &self,
        _: &str,
        _: Option<HistoryCursor>,
        _: u32,
    ) -> Result<Option<Vec<HistoryEntry>>> {
        unimplemented!("only ping is faked")
    }
    async fn expire_due(&self, _: DateTime<Utc>, _: u32) -> Result<Vec<Reservation>> {
        unimplemented!("only ping is faked")
    }
    async fn purge_request_keys(&self, _: DateTime<Utc>, _: u32) -> Result<usize> {
        unimplemented!("only ping is faked")
    }
    fn close(&self) {}
}

/// Fails its calls with the errors it was given, in order, then succeeds
/// with an empty outcome; counts the calls.
#[derive(Default)]
pub(crate) struct ScriptedStore {
    /// The failures still to come, in order.
    failures: Mutex<VecDeque<Error>>,
    /// Calls so far.
    calls: AtomicU32,
    /// How long each call takes.
    latency: Duration,
}

impl ScriptedStore {
    /// Fails the first calls with `failures`, in order.
    pub(crate) fn failing(failures: impl IntoIterator<Item = Error>) -> Arc<Self> {
        Arc::new(Self {
            failures: Mutex::new(failures.into_iter().collect()),
            ..Self::default()
        })
    }

    /// Like [`Self::failing`], each call taking `latency`.
    pub(crate) fn slow(failures: impl IntoIterator<Item = Error>, latency: Duration) -> Arc<Self> {
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

    async fn answer<T>(&self, success: T) -> Result<T> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        let failure = self.failures.lock().expect("not poisoned").pop_front();
        failure.map_or(Ok(success), Err)
    }
}

#[async_trait]
impl InventoryStore for ScriptedStore {
    async fn ping(&self) -> Result<()> {
        self.answer(()).await
    }
    async fn stock(&self, _: &str) -> Result<Option<StockLevel>> {
        self.answer(None).await
    }
    async fn reserve(&self, _: NewReservation) -> Result<ReserveOutcome> {
        self.answer(ReserveOutcome::ProductNotFound).await
    }
    async fn reserve_order(&self, _: NewOrderReservation) -> Result<ReserveOrderOutcome> {
        self.answer(ReserveOrderOutcome::ProductsNotFound(Vec::new()))
            .await
    }
    async fn release(&self, _: ReleaseRequest) -> Result<Keyed<ReleaseOutcome>> {
        self.answer(Keyed::Fresh(ReleaseOutcome::NotFound)).await
    }
    async fn commit(&self, _: CommitRequest) -> Result<Keyed<CommitOutcome>> {
        self.answer(Keyed::Fresh(CommitOutcome::NotFound)).await
    }
    async fn release_order(&self, _: OrderRelease) -> Result<Keyed<ReleaseOrderOutcome>> {
        self.answer(Keyed::Fresh(ReleaseOrderOutcome::NotFound))
            .await
    }
    async fn order_reservations(&self, _: &str) -> Result<Vec<Reservation>> {
        self.answer(Vec::new()).await
    }
    async fn list_stock(&self, _: Option<String>, _: u32) -> Result<Vec<StockLevel>> {
        self.answer(Vec::new()).await
    }
    async fn update_stock(&self, request: StockUpdate) -> Result<Keyed<UpdateOutcome>> {
        let rejected = domain::Error::ProductNotFound {
            product_id: request.product_id,
        };
        self.answer(Keyed::Fresh(UpdateOutcome::Rejected(rejected)))
            .await
    }
    async fn record_check(&self, _: CheckRecord) -> Result<()> {
        self.answer(()).await
    }
    async fn history(
        &self,
        _: &str,
        _: Option<HistoryCursor>,
        _: u32,
    ) -> Result<Option<Vec<HistoryEntry>>> {
        self.answer(None).await
    }
    async fn expire_due(&self, _: DateTime<Utc>, _: u32) -> Result<Vec<Reservation>> {
        self.answer(Vec::new()).await
    }
    async fn purge_request_keys(&self, _: DateTime<Utc>, _: u32) -> Result<usize> {
        self.answer(0).await
    }
    fn close(&self) {}
}
