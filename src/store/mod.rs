//! Persistence: one trait, [`InventoryStore`], that the domain calls, and one
//! implementation per database behind it: [`sqlite`] (the embedded default)
//! and [`postgres`] (one database shared by several replicas). The same
//! integration suite runs against both. The server wraps either in
//! [`retry::RetryingStore`], which retries transient failures where a second
//! run cannot apply a write twice.
//!
//! Each method is one atomic unit of work. Business outcomes that depend on
//! the stored state (not found, not enough stock, an existing reservation)
//! are decided inside the same transaction as the writes and returned as
//! `Ok` outcome enums; [`Error`] is reserved for database failures. The
//! database enforces the invariants as well (`CHECK` constraints on
//! `0 <= reserved_quantity <= total_quantity`), so a bug in a rule cannot
//! oversell.

mod error;
#[cfg(test)]
pub(crate) mod fake;
mod history;
mod keys;
mod order;
pub mod postgres;
pub mod retry;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    self, HistoryCursor, HistoryEntry, ItemConflict, Reservation, Shortage, StockChange, StockLevel,
};

pub use error::Error;
pub use keys::{Keyed, KeyedOutcome, RequestKey};

/// A store result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A reservation to create.
#[derive(Debug, Clone)]
pub struct NewReservation {
    /// Id for the reservation if it is created.
    pub id: String,
    /// The product to hold.
    pub product_id: String,
    /// The order to hold it for.
    pub order_id: String,
    /// How much to hold (at least 1).
    pub quantity: i32,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// The time of the request.
    pub now: DateTime<Utc>,
}

/// What [`InventoryStore::reserve`] did.
#[derive(Debug, Clone)]
pub enum ReserveOutcome {
    /// The reservation was created and the stock held.
    Created {
        /// The new reservation.
        reservation: Reservation,
        /// The product's stock afterwards.
        stock: StockLevel,
    },
    /// The order already has a reservation of this product; nothing changed.
    Existing {
        /// The reservation found.
        reservation: Reservation,
        /// The product's stock now.
        stock: StockLevel,
    },
    /// The product does not exist; nothing changed.
    ProductNotFound,
    /// Not enough available stock; nothing changed.
    InsufficientStock {
        /// The product's stock now.
        stock: StockLevel,
    },
}

/// A release to perform.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    /// The product held.
    pub product_id: String,
    /// The order it is held for.
    pub order_id: String,
    /// How much to release; `None` releases everything held.
    pub quantity: Option<i32>,
    /// The time of the request.
    pub now: DateTime<Utc>,
    /// The client's idempotency key, if it gave one.
    pub key: Option<RequestKey>,
}

/// What [`InventoryStore::release`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReleaseOutcome {
    /// Stock was given back.
    Released {
        /// The reservation afterwards.
        reservation: Reservation,
        /// How much was given back.
        released: i32,
        /// The product's stock afterwards.
        stock: StockLevel,
    },
    /// The reservation was no longer active; nothing changed.
    NotActive {
        /// The reservation as it stands.
        reservation: Reservation,
        /// The product's stock now.
        stock: StockLevel,
    },
    /// The release asked for more than the reservation holds; nothing changed.
    ExceedsHeld {
        /// The reservation as it stands.
        reservation: Reservation,
    },
    /// No reservation of this product for this order; nothing changed.
    NotFound,
}

/// A commit to perform: held stock leaves the stock on hand (the order was paid).
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// The product held.
    pub product_id: String,
    /// The order it is held for.
    pub order_id: String,
    /// How much to commit; `None` commits everything held.
    pub quantity: Option<i32>,
    /// The time of the request.
    pub now: DateTime<Utc>,
    /// The client's idempotency key, if it gave one.
    pub key: Option<RequestKey>,
}

/// What [`InventoryStore::commit`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CommitOutcome {
    /// Stock was committed: total and reserved both dropped by `committed`.
    Committed {
        /// The reservation afterwards (still active if it holds a remainder).
        reservation: Reservation,
        /// How much was committed.
        committed: i32,
        /// The product's stock afterwards.
        stock: StockLevel,
    },
    /// The reservation was already committed; nothing changed.
    AlreadyCommitted {
        /// The reservation as it stands.
        reservation: Reservation,
        /// The product's stock now.
        stock: StockLevel,
    },
    /// The reservation was released or expired; nothing changed.
    NotActive {
        /// The reservation as it stands.
        reservation: Reservation,
    },
    /// The commit asked for more than the reservation holds; nothing changed.
    ExceedsHeld {
        /// The reservation as it stands.
        reservation: Reservation,
    },
    /// No reservation of this product for this order; nothing changed.
    NotFound,
}

/// One reservation given back by [`InventoryStore::release_order`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleasedHold {
    /// The reservation afterwards (released).
    pub reservation: Reservation,
    /// How much was given back.
    pub released: i32,
    /// The product's stock afterwards.
    pub stock: StockLevel,
}

/// A release of every active reservation of an order.
#[derive(Debug, Clone)]
pub struct OrderRelease {
    /// The order.
    pub order_id: String,
    /// The time of the request.
    pub now: DateTime<Utc>,
    /// The client's idempotency key, if it gave one.
    pub key: Option<RequestKey>,
}

/// What [`InventoryStore::release_order`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReleaseOrderOutcome {
    /// Every active reservation of the order was released (possibly none),
    /// in product order.
    Released(Vec<ReleasedHold>),
    /// The order has no reservation at all; nothing changed.
    NotFound,
}

/// A change of stock on hand to perform.
#[derive(Debug, Clone)]
pub struct StockUpdate {
    /// The product to change.
    pub product_id: String,
    /// The change.
    pub change: StockChange,
    /// Compare-and-set: apply only if the product's version is this (0: the
    /// product must not exist yet).
    pub expected_version: Option<i64>,
    /// The time of the request.
    pub now: DateTime<Utc>,
    /// The client's idempotency key, if it gave one.
    pub key: Option<RequestKey>,
}

/// What [`InventoryStore::update_stock`] did. A row that changed between the
/// read the plan was made from and the write is not an outcome but an
/// [`Error::Conflict`]: nothing was written and the update may be planned
/// again.
#[derive(Debug, Serialize, Deserialize)]
pub enum UpdateOutcome {
    /// The update was applied.
    Applied {
        /// What was decided.
        plan: domain::UpdatePlan,
        /// The product's stock afterwards.
        stock: StockLevel,
    },
    /// The product's version is not the expected one; nothing changed.
    VersionMismatch {
        /// The product's version (0: it does not exist).
        current: i64,
    },
    /// The rules refused the update against the current stock; nothing changed.
    /// Never remembered under a request key, so never serialized.
    #[serde(skip)]
    Rejected(domain::Error),
}

/// One product of an order's all-or-nothing reservation.
#[derive(Debug, Clone)]
pub struct OrderItem {
    /// Id for the reservation if it is created.
    pub id: String,
    /// The product to hold.
    pub product_id: String,
    /// How much to hold: the order's whole demand for the product.
    pub quantity: i32,
}

/// An all-or-nothing reservation of several products for one order.
#[derive(Debug, Clone)]
pub struct NewOrderReservation {
    /// The order.
    pub order_id: String,
    /// One item per product, in product id order, each product once.
    pub items: Vec<OrderItem>,
    /// When the reservations expire.
    pub expires_at: DateTime<Utc>,
    /// The time of the request.
    pub now: DateTime<Utc>,
}

/// One product of [`ReserveOrderOutcome::Reserved`].
#[derive(Debug, Clone)]
pub struct ReservedItem {
    /// The reservation, new or found again.
    pub reservation: Reservation,
    /// The product's stock afterwards.
    pub stock: StockLevel,
    /// False when the order already held the product (a retry).
    pub created: bool,
}

/// What [`InventoryStore::reserve_order`] did. Every outcome but `Reserved`
/// changed nothing and lists every item at fault.
#[derive(Debug, Clone)]
pub enum ReserveOrderOutcome {
    /// Every item is held, in product id order.
    Reserved(Vec<ReservedItem>),
    /// The order already holds some products in other quantities.
    Conflicting(Vec<ItemConflict>),
    /// Some products do not exist.
    ProductsNotFound(Vec<String>),
    /// Some products have not enough available stock.
    Insufficient(Vec<Shortage>),
}

/// A check to record in the history.
#[derive(Debug, Clone)]
pub struct CheckRecord {
    /// The product checked.
    pub product_id: String,
    /// The quantity asked about.
    pub required_quantity: i32,
    /// What was available.
    pub available_quantity: i32,
    /// The time of the check.
    pub now: DateTime<Utc>,
}

/// The state of a store's connection pool, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Open connections not lent out.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

impl From<deadpool::Status> for PoolStatus {
    fn from(status: deadpool::Status) -> Self {
        Self {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }
}

/// The inventory's persistence. Every method is atomic.
#[async_trait]
pub trait InventoryStore: Send + Sync + 'static {
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<()>;

    /// A product's stock, if the product exists.
    async fn stock(&self, product_id: &str) -> Result<Option<StockLevel>>;

    /// Holds stock for an order, unless the order already holds this product,
    /// the product is missing or not enough is available. Writes history.
    async fn reserve(&self, request: NewReservation) -> Result<ReserveOutcome>;

    /// Holds stock of several products for one order, all or nothing:
    /// products the order already holds in the same quantity are kept as
    /// they are, the others are reserved only if every one of them exists
    /// and has enough available stock. Locks the products' rows in product
    /// order. Writes history.
    async fn reserve_order(&self, request: NewOrderReservation) -> Result<ReserveOrderOutcome>;

    /// Gives back what an order's reservation of a product holds, or part of
    /// it. Writes history.
    async fn release(&self, request: ReleaseRequest) -> Result<Keyed<ReleaseOutcome>>;

    /// Commits what an order's reservation of a product holds, or part of
    /// it: total and reserved drop together. Writes history.
    async fn commit(&self, request: CommitRequest) -> Result<Keyed<CommitOutcome>>;

    /// Releases every active reservation of an order, locking the products'
    /// rows in product order. Writes history.
    async fn release_order(&self, request: OrderRelease) -> Result<Keyed<ReleaseOrderOutcome>>;

    /// Every reservation of an order, whatever its status, by product id.
    async fn order_reservations(&self, order_id: &str) -> Result<Vec<Reservation>>;

    /// Up to `limit` products' stock by product id, strictly after `after`.
    async fn list_stock(&self, after: Option<String>, limit: u32) -> Result<Vec<StockLevel>>;

    /// Changes stock on hand as [`domain::plan_update`] decides against the
    /// stock read in the same transaction, if its version is still the one
    /// read (optimistic lock; [`Error::Conflict`] otherwise) and, with
    /// `expected_version`, the one expected. Writes history.
    async fn update_stock(&self, request: StockUpdate) -> Result<Keyed<UpdateOutcome>>;

    /// Records a check in the history.
    async fn record_check(&self, record: CheckRecord) -> Result<()>;

    /// Up to `limit` history entries of a product, newest first, strictly
    /// after `after`. `None` when the product does not exist.
    async fn history(
        &self,
        product_id: &str,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Option<Vec<HistoryEntry>>>;

    /// Expires up to `limit` active reservations whose `expires_at` is at or
    /// before `now`: gives their stock back and writes history with the
    /// reason. Returns the reservations expired.
    async fn expire_due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Reservation>>;

    /// Forgets up to `limit` request keys created before `before`. Returns
    /// how many were forgotten.
    async fn purge_request_keys(&self, before: DateTime<Utc>, limit: u32) -> Result<usize>;

    /// Closes the connection pool; later calls fail as unavailable.
    fn close(&self);

    /// The connection pool's state, when the store has a pool.
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }
}

/// A new time-ordered id (UUIDv7), for reservations and history entries.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
