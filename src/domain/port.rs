//! The port: what the inventory needs from a database, in the domain's own
//! terms. [`InventoryStore`] is implemented by each backend (`store::sqlite`,
//! `store::postgres`) and by [`super::memory::MemoryStore`]; the domain calls
//! nothing else.
//!
//! Every change of stock goes through one method, [`InventoryStore::apply`]:
//! the store opens a transaction and runs the domain's planner
//! ([`super::work::plan_with`] or [`super::work::plan_with_async`]), which
//! asks for the rows it needs ([`Needs`]); the store reads and locks them and
//! hands them back ([`Rows`]); once the planner has all it asked for, it
//! returns its decisions and the rows to write ([`Changes`]), which the store
//! writes in the same transaction. A backend therefore only knows how to read,
//! lock and write rows in its dialect; it never decides anything.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::model::{
    HistoryCursor, HistoryEntry, Money, PositionedEvent, Reservation, StockEvent, StockLevel,
    StockTotals,
};
use super::work::{Planned, Work};

/// What went wrong talking to the database, in the kinds the domain and the
/// API act on differently. Each backend classifies its driver's errors into
/// these.
///
/// Two kinds are transient ([`StoreError::is_transient`]) and reach clients
/// alike as UNAVAILABLE; they differ in what a retry risks.
/// [`StoreError::NotConnected`] failed before any statement was sent, so
/// nothing can have been applied; after [`StoreError::Unavailable`] a write
/// may have been applied (a connection lost while waiting for the COMMIT's
/// answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had (none free in time, or opening one
    /// failed): no statement was sent. Retrying may succeed.
    #[error("database unavailable: {0}")]
    NotConnected(String),

    /// The connection was lost, or the database was too busy or shutting
    /// down, after a statement may have been sent; a write may or may not
    /// have been applied. Retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),

    /// A concurrent write won a race (a unique key, a serialization failure,
    /// a deadlock); nothing was written and the work can be run again as a
    /// whole.
    #[error("conflicting concurrent write: {0}")]
    Conflict(String),

    /// Anything else: a bug, a constraint the code should have honoured, or
    /// stored data the code does not understand.
    #[error("database error: {0}")]
    Internal(String),

    /// A caller of the work gave up before it committed: it was rolled
    /// back, nothing was written.
    #[error("the caller gave up before the change was committed; nothing was written")]
    Abandoned,
}

impl StoreError {
    /// The database may answer if asked again: [`StoreError::NotConnected`]
    /// or [`StoreError::Unavailable`].
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::NotConnected(_) | Self::Unavailable(_))
    }

    /// The failure happened before any statement reached the database, so
    /// the call had no effect: [`StoreError::NotConnected`].
    pub fn before_any_statement(&self) -> bool {
        matches!(self, Self::NotConnected(_))
    }
}

/// A store result.
pub type StoreResult<T> = Result<T, StoreError>;

/// The rows a unit of work needs before it can be decided. Everything but
/// `keys` is read with a row lock held until the transaction ends (on SQLite,
/// the transaction's write lock covers them all).
///
/// A store reads them in this order, which every unit of work shares so that
/// two transactions never wait on each other in a circle: reservations first
/// (`orders`, then `holds`), then stock rows in product id order, then due
/// reservations (skipping rows another transaction has locked, so that
/// step never waits), then keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Every reservation of these orders.
    pub orders: BTreeSet<String>,
    /// The reservation of each `(order_id, product_id)`, if there is one.
    pub holds: BTreeSet<(String, String)>,
    /// The stock rows of these products, where they exist.
    pub stocks: BTreeSet<String>,
    /// Every active reservation of these products whose `expires_at` is at
    /// or before the work's time.
    pub due_of: BTreeSet<String>,
    /// Up to this many active reservations of any product whose
    /// `expires_at` is at or before the work's time, earliest first.
    pub due_any: Option<u32>,
    /// The request keys (`request_id`) to look up.
    pub keys: BTreeSet<String>,
}

impl Needs {
    /// Whether nothing is needed.
    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
            && self.holds.is_empty()
            && self.stocks.is_empty()
            && self.due_of.is_empty()
            && self.due_any.is_none()
            && self.keys.is_empty()
    }

    /// Adds everything `other` needs.
    pub fn merge(&mut self, other: Needs) {
        self.orders.extend(other.orders);
        self.holds.extend(other.holds);
        self.stocks.extend(other.stocks);
        self.due_of.extend(other.due_of);
        self.due_any = self.due_any.max(other.due_any);
        self.keys.extend(other.keys);
    }
}

/// The rows a store found for [`Needs`]. What was asked for and is not here
/// does not exist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// The reservations found for `orders`, `holds`, `due_of` and `due_any`
    /// (a reservation found twice may be listed twice).
    pub reservations: Vec<Reservation>,
    /// The stock rows found.
    pub stocks: Vec<StockLevel>,
    /// The request keys found.
    pub keys: Vec<KeptRequest>,
}

/// The first result of a write made with a client's `request_id`, kept so
/// that a retry gets it back (a row of `idempotency_keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptRequest {
    /// The client's key.
    pub request_id: String,
    /// The RPC the key was first used with, such as `ReleaseInventory`.
    pub method: String,
    /// The fields of that first request, compared with a retry's.
    pub fields: serde_json::Value,
    /// Its result.
    pub response: serde_json::Value,
    /// When it was first used.
    pub created_at: DateTime<Utc>,
}

/// A stock row to write, with its values after the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockWrite {
    /// The row as it is to be stored.
    pub stock: StockLevel,
    /// The version the row was read at; `None` for a product the work
    /// creates. The store writes only if the row is still at that version
    /// (it is locked, so anything else is a bug and fails the work).
    pub read_version: Option<i64>,
}

/// Everything a unit of work writes, decided by the domain. Each row appears
/// once, with its final values, however many calls of the work changed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Stock rows created or changed, in product id order.
    pub stocks: Vec<StockWrite>,
    /// Reservations created.
    pub new_reservations: Vec<Reservation>,
    /// Reservations changed (released, committed or expired quantities and
    /// status), with their values afterwards.
    pub reservations: Vec<Reservation>,
    /// History entries to add, in the order the changes were made.
    pub history: Vec<HistoryEntry>,
    /// Events to add to the outbox, in the order the changes were made
    /// (one per history entry of a change of stock); the store gives them
    /// their positions.
    pub events: Vec<StockEvent>,
    /// Request keys to keep.
    pub keys: Vec<KeptRequest>,
    /// Products whose alternatives are replaced, each with its new list in
    /// order (empty: none).
    pub alternatives: Vec<(String, Vec<String>)>,
    /// The time of the work, stamped on every row it changes.
    pub now: DateTime<Utc>,
}

impl Changes {
    /// Whether the work writes nothing.
    pub fn is_empty(&self) -> bool {
        self.stocks.is_empty()
            && self.new_reservations.is_empty()
            && self.reservations.is_empty()
            && self.history.is_empty()
            && self.events.is_empty()
            && self.keys.is_empty()
            && self.alternatives.is_empty()
    }
}

/// A page of the event outbox, and how much of it is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPage {
    /// The events asked for, by position.
    pub events: Vec<PositionedEvent>,
    /// Every event at or before this position has been forgotten (0: none
    /// has).
    pub purged_through: i64,
    /// The position of the latest event committed (`purged_through` when
    /// none is kept).
    pub last_position: i64,
}

/// The inventory's persistence. Every method is atomic.
#[async_trait]
pub trait InventoryStore: Send + Sync + 'static {
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> StoreResult<()>;

    /// A product's stock, if the product exists.
    async fn stock(&self, product_id: &str) -> StoreResult<Option<StockLevel>>;

    /// Up to `limit` products' stock by product id, strictly after `after`.
    async fn list_stock(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<StockLevel>>;

    /// Every reservation of an order, whatever its status, by product id.
    async fn order_reservations(&self, order_id: &str) -> StoreResult<Vec<Reservation>>;

    /// Up to `limit` history entries of a product, newest first, strictly
    /// after `after`. `None` when the product does not exist.
    async fn history(
        &self,
        product_id: &str,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> StoreResult<Option<Vec<HistoryEntry>>>;

    /// The stock of a product's alternatives, in their order; `None` when
    /// the product does not exist.
    async fn alternatives(&self, product_id: &str) -> StoreResult<Option<Vec<StockLevel>>>;

    /// Sets (or, with `None`, clears) a product's unit cost. False when the
    /// product does not exist (nothing written).
    async fn set_unit_cost(&self, product_id: &str, cost: Option<Money>) -> StoreResult<bool>;

    /// The whole stock now: units on hand, and their value at unit cost by
    /// currency.
    async fn stock_totals(&self) -> StoreResult<StockTotals>;

    /// Adds one history entry that goes with no change of stock (a check).
    async fn record_history(&self, entry: HistoryEntry) -> StoreResult<()>;

    /// Forgets up to `limit` request keys created before `before`. Returns
    /// how many were forgotten.
    async fn purge_request_keys(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<usize>;

    /// Up to `limit` events of the outbox strictly after position `after`,
    /// by position, with how much of the outbox is kept (read after the
    /// events, so a purge that overtook the read shows). An event is there
    /// only once every event before it is: positions are handed out in
    /// commit order (they may skip a number, never go back).
    async fn events(&self, after: i64, limit: u32) -> StoreResult<EventPage>;

    /// Forgets the oldest events, up to `limit` of them, as long as they
    /// were made before `before` (the outbox is only ever cut from its
    /// start). Returns how many were forgotten.
    async fn purge_events(&self, before: DateTime<Utc>, limit: u32) -> StoreResult<usize>;

    /// Runs `work` in one transaction: reads and locks what its planner asks
    /// for, writes the [`Changes`] it decides, commits, and returns the plan.
    /// On any error nothing was written (except after
    /// [`StoreError::Unavailable`], when the commit's fate is unknown).
    async fn apply(&self, work: &Work) -> StoreResult<Planned>;

    /// Closes the connection pool; later calls fail as unavailable.
    fn close(&self);
}
