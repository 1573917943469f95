//! A test double for health tests: a database whose reachability the test
//! switches. Only `ping` is implemented; the inventory rules are tested
//! against real SQLite instead.

use std::sync::atomic::{AtomicBool, Ordering};

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
