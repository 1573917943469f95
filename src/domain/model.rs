//! The inventory's nouns: stock levels, reservations, history entries and the
//! operations that change them. Plain data; no SQL, no protobuf.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A new time-ordered id (UUIDv7), for reservations and history entries:
/// ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A product's stock as stored.
///
/// Serializable, like the other nouns a write returns, so that the first
/// result of a write made with a client's `request_id` can be kept and
/// replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// The product's id.
    pub product_id: String,
    /// Stock on hand (the specification's `total_quantity`, the API's `current_quantity`).
    pub total_quantity: i32,
    /// Stock held by active reservations.
    pub reserved_quantity: i32,
    /// When the stock last changed.
    pub updated_at: DateTime<Utc>,
    /// How many times the stock on hand has changed (updates and commits);
    /// 1 for a new product, 0 for one that does not exist. The specification's
    /// optimistic lock: `UpdateInventory` may name the version it expects.
    pub version: i64,
    /// At or below this available quantity the product is low on stock:
    /// a change that crosses it downward raises a
    /// [`ChangeKind::LowStock`] event. `None`: no threshold.
    #[serde(default)]
    pub low_stock_threshold: Option<i32>,
}

impl StockLevel {
    /// Stock that can still be reserved: total less reserved.
    pub fn available_quantity(&self) -> i32 {
        self.total_quantity - self.reserved_quantity
    }
}

/// Where a reservation stands. It leaves `Active` exactly once, for one of
/// the other three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Holding stock.
    Active,
    /// Fully released by a caller.
    Released,
    /// Released by the expiry sweeper once its timeout passed.
    Expired,
    /// Nothing left to hold and the last of it was committed (the order was
    /// paid): committed stock left the stock on hand.
    Committed,
}

impl ReservationStatus {
    /// The value stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Committed => "committed",
        }
    }

    /// Parses a stored `status` value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "released" => Some(Self::Released),
            "expired" => Some(Self::Expired),
            "committed" => Some(Self::Committed),
            _ => None,
        }
    }
}

/// Stock held for one order of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The reservation's id.
    pub id: String,
    /// The product held.
    pub product_id: String,
    /// The order the stock is held for; with `product_id` it is unique.
    pub order_id: String,
    /// The quantity first reserved; retries are compared against it.
    pub quantity: i32,
    /// How much of `quantity` callers have released so far.
    pub released_quantity: i32,
    /// How much of `quantity` has been committed (taken from stock on hand) so far.
    pub committed_quantity: i32,
    /// Where the reservation stands.
    pub status: ReservationStatus,
    /// When the sweeper releases it if nobody did before.
    pub expires_at: DateTime<Utc>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl Reservation {
    /// What the reservation still holds: the quantity less what was released
    /// and committed; nothing once it is no longer active.
    pub fn held_quantity(&self) -> i32 {
        match self.status {
            ReservationStatus::Active => {
                self.quantity - self.released_quantity - self.committed_quantity
            }
            ReservationStatus::Released
            | ReservationStatus::Expired
            | ReservationStatus::Committed => 0,
        }
    }
}

/// The kinds of recorded change, as the specification's `operation_type` ENUM names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationType {
    /// A stock check (recorded only when `inventory.record_checks` is on).
    Check,
    /// Stock held for an order.
    Reserve,
    /// Held stock given back, by a caller or by expiry.
    Release,
    /// Stock on hand changed.
    Update,
    /// Held stock committed: it leaves the stock on hand and its hold at once.
    Commit,
}

impl OperationType {
    /// The value stored in `operation_type` and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Reserve => "reserve",
            Self::Release => "release",
            Self::Update => "update",
            Self::Commit => "commit",
        }
    }

    /// Parses a stored `operation_type` value.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "check" => Some(Self::Check),
            "reserve" => Some(Self::Reserve),
            "release" => Some(Self::Release),
            "update" => Some(Self::Update),
            "commit" => Some(Self::Commit),
            _ => None,
        }
    }
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The entry's id (a UUIDv7, so ids sort by creation time).
    pub id: String,
    /// The product concerned.
    pub product_id: String,
    /// What happened.
    pub operation: OperationType,
    /// Signed change of the available quantity (see the proto for each kind).
    pub quantity_change: i32,
    /// The order concerned, if any.
    pub order_id: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// Details: reservation id, quantities before and after, reason.
    pub metadata: serde_json::Value,
}

/// How `UpdateInventory` changes the stock on hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockChange {
    /// Make the stock on hand exactly this.
    Set(i32),
    /// Add this much (at least 1).
    Add(i32),
    /// Take away this much (at least 1).
    Subtract(i32),
}

impl StockChange {
    /// The specification's name of the operation: `set`, `add` or `subtract`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Set(_) => "set",
            Self::Add(_) => "add",
            Self::Subtract(_) => "subtract",
        }
    }

    /// The amount given with the operation.
    pub fn amount(self) -> i32 {
        match self {
            Self::Set(n) | Self::Add(n) | Self::Subtract(n) => n,
        }
    }
}

/// Where a history page starts: just after the entry with this creation time
/// and id (entries are ordered newest first by `(created_at, id)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCursor {
    /// `created_at` of the last entry already seen.
    pub created_at: DateTime<Utc>,
    /// `id` of the last entry already seen.
    pub id: String,
}

/// A product the order already holds in another quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemConflict {
    /// The product.
    pub product_id: String,
    /// The quantity of the existing reservation.
    pub existing_quantity: i32,
    /// The quantity asked for now.
    pub requested: i32,
}

/// An amount of money: an integer number of the currency's minor units
/// (cents for EUR or USD, yen for JPY), never a float.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    /// ISO 4217 code, three capital letters (`EUR`).
    pub currency: String,
    /// The amount in minor units, 0 or more.
    pub minor_units: i64,
}

/// The whole stock at one moment: units on hand, and their value at unit
/// cost per currency (products without a cost count in `units` only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StockTotals {
    /// Units on hand over every product.
    pub units: i64,
    /// Units on hand times their unit cost, in minor units, by currency. A
    /// float: one product's value can pass what a 64-bit integer holds
    /// (2^31 units at the contract's largest cost, 10^12, is 2 x 10^21),
    /// and the gauge that shows it is a float anyway; sums are exact up to
    /// 2^53 minor units.
    pub value: std::collections::BTreeMap<String, f64>,
}

/// A product named as an alternative to another, with what it has
/// available now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// The alternative product.
    pub product_id: String,
    /// Its available stock when the refusal was answered.
    pub available: i32,
}

/// A product without enough available stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    /// The product.
    pub product_id: String,
    /// The quantity asked for.
    pub requested: i32,
    /// What is available.
    pub available: i32,
}

/// What caused a change of stock, as the events of [`StockEvent`] name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Stock held for an order.
    Reserve,
    /// Held stock given back by a caller.
    Release,
    /// Held stock committed: it left the stock on hand.
    Commit,
    /// Stock on hand set, added to or subtracted from.
    Update,
    /// Held stock given back by the service when its reservation expired.
    Expire,
    /// Available stock fell to or below the product's low-stock threshold
    /// (it was above): follows the change that did it.
    LowStock,
    /// Available stock fell to zero: follows the change that did it.
    OutOfStock,
    /// Available stock rose from zero: follows the change that did it.
    BackInStock,
}

impl ChangeKind {
    /// Every kind, in the order of their stored names.
    pub const ALL: [Self; 8] = [
        Self::Reserve,
        Self::Release,
        Self::Commit,
        Self::Update,
        Self::Expire,
        Self::LowStock,
        Self::OutOfStock,
        Self::BackInStock,
    ];

    /// The value stored in the `kind` column of `inventory_events`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserve => "reserve",
            Self::Release => "release",
            Self::Commit => "commit",
            Self::Update => "update",
            Self::Expire => "expire",
            Self::LowStock => "low_stock",
            Self::OutOfStock => "out_of_stock",
            Self::BackInStock => "back_in_stock",
        }
    }

    /// Whether the event says what a change did to the product's state
    /// (low, out of, back in stock) rather than being the change itself.
    pub fn is_stock_state(self) -> bool {
        matches!(self, Self::LowStock | Self::OutOfStock | Self::BackInStock)
    }

    /// Parses a stored `kind` value.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// One change of a product's stock as a unit of work decided it: what
/// happened and the product's stock right after it. A store keeps it in the
/// ordered outbox (`inventory_events`) in the same transaction as the
/// change, where it gets its [`PositionedEvent::position`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockEvent {
    /// What happened.
    pub kind: ChangeKind,
    /// The order concerned, if any.
    pub order_id: Option<String>,
    /// The signed change of the available quantity, as in the history
    /// ([`HistoryEntry::quantity_change`]); for a stock-state event, that of
    /// the change it follows.
    pub quantity_change: i32,
    /// The product's stock right after the change.
    pub stock: StockLevel,
    /// When the change was made.
    pub created_at: DateTime<Utc>,
}

/// A kept [`StockEvent`] and its place in the outbox: positions grow by one
/// per event in the order the changes were committed, across every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionedEvent {
    /// The event's position, from 1.
    pub position: i64,
    /// The event.
    pub event: StockEvent,
}
