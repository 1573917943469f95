//! The inventory rules, and the interface they need from a database.
//!
//! This module imports nothing else from the crate and knows neither SQL
//! nor protobuf:
//! - [`model`]: the nouns (stock levels, reservations, history entries).
//! - [`rules`]: validation, defaults and limits, and the arithmetic of a
//!   stock update, as pure functions of their arguments.
//! - [`decide`]: every decision that changes stock (reserve, reserve an
//!   order, release, commit, release an order, update, expire, the replay of
//!   a request key), each one function over the rows it reads.
//! - [`work`]: a unit of work of one or more commands, and the planner that
//!   runs their decisions against the rows a store reads, then says what to
//!   write.
//! - [`port`]: [`InventoryStore`], the interface every backend implements,
//!   and the rows and failures that cross it.
//! - [`memory`]: the port over maps in memory, so every rule is tested
//!   without a database.
//! - [`cache`]: the stock cache the use cases read through, as a port;
//!   [`availability`]: read-only mode while the database cannot be reached.
//! - [`batch`]: group commit; changes of stock that arrive together are
//!   applied in one transaction, each with its own outcome.
//! - [`events`]: live stock events, followed from the store's outbox.
//! - [`Inventory`] (in `service`): the use cases the API calls.
//! - [`error`]: the one error type.

pub mod actor;
pub mod availability;
pub mod batch;
pub mod cache;
pub mod decide;
pub mod error;
pub mod events;
pub mod memory;
pub mod model;
pub mod port;
pub mod rules;
mod service;
pub mod work;

pub use error::{Error, Result};
pub use model::{
    Alternative, ChangeKind, HistoryCursor, HistoryEntry, ItemConflict, Money, OperationType,
    PositionedEvent, Reservation, ReservationStatus, Shortage, StockChange, StockEvent, StockLevel,
    StockTotals, new_id,
};
pub use port::{InventoryStore, StoreError, StoreResult};
pub use rules::{UpdatePlan, plan_update};
pub use service::{
    CheckOutcome, Clock, CommitResult, HistoryPage, Inventory, InventorySettings, OrderReleaseItem,
    OrderReleaseResult, OrderReservationResult, Parts, ReleaseResult, ReservationResult, StockPage,
    SystemClock, UpdateResult,
};
