//! [`MemoryStore`]: the port implemented over maps in memory, so that every
//! rule can be tested in milliseconds without a database.
//!
//! It is a real store, not a script: one mutex serializes its transactions
//! (as SQLite's write lock does), a unit of work is planned by the same
//! planner and written all or nothing, and the writes are checked against the
//! same invariants the databases' constraints enforce (`0 <= reserved <=
//! total`, a reservation's released and committed parts within its
//! quantity, one reservation per order and product, one result per request
//! key). A write that breaks one fails the whole work, as a `CHECK` would.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::events::EventSignal;
use super::model::{
    HistoryCursor, HistoryEntry, Money, PositionedEvent, Reservation, ReservationStatus,
    StockLevel, StockTotals,
};
use super::port::{
    Changes, EventPage, InventoryStore, KeptRequest, Needs, Rows, StoreError, StoreResult,
};
use super::work::{Planned, Work, plan_with};

/// The tables, as maps.
#[derive(Debug, Clone, Default)]
struct Tables {
    /// `inventory`, by product id.
    stocks: BTreeMap<String, StockLevel>,
    /// `inventory_reservations`, by id.
    reservations: BTreeMap<String, Reservation>,
    /// `inventory_history`, in insertion order.
    history: Vec<HistoryEntry>,
    /// `idempotency_keys`, by request id.
    keys: BTreeMap<String, KeptRequest>,
    /// `product_alternatives`: each product's alternatives, in order.
    alternatives: BTreeMap<String, Vec<String>>,
    /// `product_costs`, by product id.
    costs: BTreeMap<String, Money>,
    /// `inventory_events`, by position.
    events: VecDeque<PositionedEvent>,
    /// The position of the latest event.
    last_position: i64,
    /// Every event at or before this position is forgotten.
    purged_through: i64,
}

/// An in-memory [`InventoryStore`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// The data; held for the whole of a unit of work.
    tables: Mutex<Tables>,
    /// Set by [`InventoryStore::close`].
    closed: AtomicBool,
    /// Set by [`MemoryStore::set_down`]: every call fails as not connected.
    down: AtomicBool,
    /// Failures the next units of work answer with, for tests of how the
    /// domain reacts to a database's failures.
    failures: Mutex<VecDeque<StoreError>>,
    /// Products whose stock row the store refuses to write, as a `CHECK`
    /// constraint would: the whole unit of work fails.
    refused: Mutex<Vec<String>>,
    /// Told the latest position after each unit of work that kept events.
    signal: EventSignal,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next unit of work fail with `error` before it reads
    /// anything (several calls queue several failures).
    pub fn fail_next(&self, error: StoreError) {
        lock(&self.failures).push_back(error);
    }

    /// Makes every later write of `product`'s stock fail the unit of work it
    /// is in, as a constraint the database enforces would (for tests of how
    /// a batch isolates the call at fault).
    pub fn refuse_writes_of(&self, product: &str) {
        lock(&self.refused).push(product.to_owned());
    }

    /// What the store tells of the events it keeps, for the use cases'
    /// [`super::events::EventHub`].
    pub fn signal(&self) -> EventSignal {
        self.signal.clone()
    }

    /// Makes the database unreachable (`true`) or reachable again, as a
    /// network partition would: calls fail as not connected meanwhile.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn open(&self) -> StoreResult<std::sync::MutexGuard<'_, Tables>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::NotConnected("the store is closed".into()));
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::NotConnected("connection refused".into()));
        }
        Ok(lock(&self.tables))
    }
}

/// Locks `mutex`; a panic while it was held cannot leave the tables half
/// written (writes are checked first, then made), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tables {
    /// The rows of `needs` as of `now`.
    fn load(&self, needs: &Needs, now: DateTime<Utc>) -> Rows {
        let is_due =
            |r: &&Reservation| r.status == ReservationStatus::Active && r.expires_at <= now;
        let mut reservations: Vec<Reservation> = self
            .reservations
            .values()
            .filter(|r| {
                needs.orders.contains(&r.order_id)
                    || needs
                        .holds
                        .contains(&(r.order_id.clone(), r.product_id.clone()))
                    || (needs.due_of.contains(&r.product_id) && is_due(r))
            })
            .cloned()
            .collect();
        if let Some(limit) = needs.due_any {
            let mut due: Vec<&Reservation> = self.reservations.values().filter(is_due).collect();
            due.sort_by_key(|r| r.expires_at);
            reservations.extend(due.into_iter().take(limit as usize).cloned());
        }
        Rows {
            reservations,
            stocks: needs
                .stocks
                .iter()
                .filter_map(|p| self.stocks.get(p).cloned())
                .collect(),
            keys: needs
                .keys
                .iter()
                .filter_map(|k| self.keys.get(k).cloned())
                .collect(),
        }
    }

    /// Checks `changes` against the invariants, then makes them.
    fn write(&mut self, changes: &Changes) -> StoreResult<()> {
        let broken = |what: String| Err(StoreError::Internal(what));
        let mut stocks = BTreeMap::new();
        for write in &changes.stocks {
            let stock = &write.stock;
            let current = self.stocks.get(&stock.product_id).map(|s| s.version);
            if current != write.read_version {
                return match (current, write.read_version) {
                    (Some(_), None) => Err(StoreError::Conflict(format!(
                        "product {:?} already exists",
                        stock.product_id
                    ))),
                    _ => broken(format!(
                        "the stock of {:?} changed under its lock",
                        stock.product_id
                    )),
                };
            }
            if stock.product_id.is_empty()
                || stock.product_id.chars().count() > 255
                || stock.total_quantity < 0
                || stock.reserved_quantity < 0
                || stock.reserved_quantity > stock.total_quantity
                || stock.version < 1
            {
                return broken(format!("stock row violates a check constraint: {stock:?}"));
            }
            stocks.insert(stock.product_id.clone(), stock.clone());
        }
        let exists =
            |product: &str| stocks.contains_key(product) || self.stocks.contains_key(product);
        for (product, alternatives) in &changes.alternatives {
            if let Some(missing) = std::iter::once(product)
                .chain(alternatives)
                .find(|p| !exists(p))
            {
                return broken(format!("alternatives name a missing product {missing:?}"));
            }
            if alternatives.contains(product) {
                return broken(format!("{product:?} is its own alternative"));
            }
        }
        for reservation in changes.new_reservations.iter().chain(&changes.reservations) {
            if reservation.quantity <= 0
                || reservation.released_quantity < 0
                || reservation.committed_quantity < 0
                || reservation.released_quantity + reservation.committed_quantity
                    > reservation.quantity
            {
                return broken(format!(
                    "reservation violates a check constraint: {reservation:?}"
                ));
            }
            if !exists(&reservation.product_id) {
                return broken(format!(
                    "reservation {} names a missing product",
                    reservation.id
                ));
            }
        }
        for reservation in &changes.reservations {
            if !self.reservations.contains_key(&reservation.id) {
                return broken(format!("reservation {} does not exist", reservation.id));
            }
        }
        for (n, new) in changes.new_reservations.iter().enumerate() {
            let taken = self
                .reservations
                .values()
                .chain(&changes.new_reservations[..n])
                .any(|r| {
                    r.id == new.id || (r.order_id == new.order_id && r.product_id == new.product_id)
                });
            if taken {
                return Err(StoreError::Conflict(format!(
                    "order {:?} already holds product {:?}",
                    new.order_id, new.product_id
                )));
            }
        }
        for (n, kept) in changes.keys.iter().enumerate() {
            if self.keys.contains_key(&kept.request_id)
                || changes.keys[..n]
                    .iter()
                    .any(|k| k.request_id == kept.request_id)
            {
                return Err(StoreError::Conflict(format!(
                    "request key {:?} is already kept",
                    kept.request_id
                )));
            }
        }
        self.stocks.extend(stocks);
        for reservation in changes.new_reservations.iter().chain(&changes.reservations) {
            self.reservations
                .insert(reservation.id.clone(), reservation.clone());
        }
        self.history.extend(changes.history.iter().cloned());
        for (product, alternatives) in &changes.alternatives {
            if alternatives.is_empty() {
                self.alternatives.remove(product);
            } else {
                self.alternatives
                    .insert(product.clone(), alternatives.clone());
            }
        }
        for event in &changes.events {
            self.last_position += 1;
            self.events.push_back(PositionedEvent {
                position: self.last_position,
                event: event.clone(),
            });
        }
        for kept in &changes.keys {
            self.keys.insert(kept.request_id.clone(), kept.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl InventoryStore for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        self.open().map(drop)
    }

    async fn stock(&self, product_id: &str) -> StoreResult<Option<StockLevel>> {
        Ok(self.open()?.stocks.get(product_id).cloned())
    }

    async fn list_stock(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<StockLevel>> {
        let tables = self.open()?;
        Ok(tables
            .stocks
            .values()
            .filter(|s| after.as_ref().is_none_or(|after| s.product_id > *after))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn order_reservations(&self, order_id: &str) -> StoreResult<Vec<Reservation>> {
        let tables = self.open()?;
        let mut found: Vec<Reservation> = tables
            .reservations
            .values()
            .filter(|r| r.order_id == order_id)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.product_id.cmp(&b.product_id));
        Ok(found)
    }

    async fn history(
        &self,
        product_id: &str,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> StoreResult<Option<Vec<HistoryEntry>>> {
        let tables = self.open()?;
        if !tables.stocks.contains_key(product_id) {
            return Ok(None);
        }
        let mut entries: Vec<HistoryEntry> = tables
            .history
            .iter()
            .filter(|e| e.product_id == product_id)
            .filter(|e| {
                after.as_ref().is_none_or(|cursor| {
                    (e.created_at, e.id.as_str()) < (cursor.created_at, cursor.id.as_str())
                })
            })
            .cloned()
            .collect();
        entries.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        entries.truncate(limit as usize);
        Ok(Some(entries))
    }

    async fn alternatives(&self, product_id: &str) -> StoreResult<Option<Vec<StockLevel>>> {
        let tables = self.open()?;
        if !tables.stocks.contains_key(product_id) {
            return Ok(None);
        }
        Ok(Some(
            tables
                .alternatives
                .get(product_id)
                .into_iter()
                .flatten()
                .filter_map(|id| tables.stocks.get(id).cloned())
                .collect(),
        ))
    }

    async fn set_unit_cost(&self, product_id: &str, cost: Option<Money>) -> StoreResult<bool> {
        let mut tables = self.open()?;
        if !tables.stocks.contains_key(product_id) {
            return Ok(false);
        }
        match cost {
            Some(cost) => tables.costs.insert(product_id.to_owned(), cost),
            None => tables.costs.remove(product_id),
        };
        Ok(true)
    }

    async fn stock_totals(&self) -> StoreResult<StockTotals> {
        let tables = self.open()?;
        let mut totals = StockTotals::default();
        for stock in tables.stocks.values() {
            totals.units += i64::from(stock.total_quantity);
            if let Some(cost) = tables.costs.get(&stock.product_id) {
                *totals.value.entry(cost.currency.clone()).or_default() +=
                    f64::from(stock.total_quantity) * cost.minor_units as f64;
            }
        }
        Ok(totals)
    }

    async fn record_history(&self, entry: HistoryEntry) -> StoreResult<()> {
        self.open()?.history.push(entry);
        Ok(())
    }

    async fn purge_request_keys(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<usize> {
        let mut tables = self.open()?;
        let mut due: Vec<(DateTime<Utc>, String)> = tables
            .keys
            .values()
            .filter(|k| k.created_at < before)
            .map(|k| (k.created_at, k.request_id.clone()))
            .collect();
        due.sort();
        due.truncate(limit as usize);
        for (_, request_id) in &due {
            tables.keys.remove(request_id);
        }
        Ok(due.len())
    }

    async fn events(&self, after: i64, limit: u32) -> StoreResult<EventPage> {
        let tables = self.open()?;
        Ok(EventPage {
            events: tables
                .events
                .iter()
                .filter(|e| e.position > after)
                .take(limit as usize)
                .cloned()
                .collect(),
            purged_through: tables.purged_through,
            last_position: tables.last_position,
        })
    }

    async fn purge_events(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<usize> {
        let mut tables = self.open()?;
        let mut purged = 0;
        while purged < limit as usize
            && let Some(oldest) = tables.events.front()
            && oldest.event.created_at < before
        {
            tables.purged_through = oldest.position;
            tables.events.pop_front();
            purged += 1;
        }
        Ok(purged)
    }

    async fn apply(&self, work: &Work) -> StoreResult<Planned> {
        if let Some(failure) = lock(&self.failures).pop_front() {
            return Err(failure);
        }
        let mut tables = self.open()?;
        let planned = plan_with(work, |needs| Ok(tables.load(needs, work.now)))?;
        // As a database would roll back instead of committing.
        if work.is_abandoned() {
            return Err(StoreError::Abandoned);
        }
        let refused = lock(&self.refused);
        if let Some(write) = planned
            .changes
            .stocks
            .iter()
            .find(|w| refused.contains(&w.stock.product_id))
        {
            return Err(StoreError::Internal(format!(
                "CHECK constraint failed: the write of {:?} is refused",
                write.stock.product_id
            )));
        }
        drop(refused);
        tables.write(&planned.changes)?;
        let last_position = tables.last_position;
        drop(tables);
        if !planned.changes.events.is_empty() {
            self.signal.committed(last_position);
        }
        Ok(planned)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}
