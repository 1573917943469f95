//! The inventory rules. [`Inventory`] validates each request, applies the
//! rules and calls the [`crate::store::InventoryStore`]; it knows neither SQL
//! nor protobuf. [`rules`] holds the pure parts, [`model`] the nouns,
//! [`error`] the one error type.

pub mod error;
pub mod model;
pub mod rules;
mod service;

pub use error::{Error, Result};
pub use model::{
    HistoryCursor, HistoryEntry, ItemConflict, OperationType, Reservation, ReservationStatus,
    Shortage, StockChange, StockLevel,
};
pub use rules::{UpdatePlan, plan_update};
pub use service::{
    CheckOutcome, CommitResult, HistoryPage, Inventory, InventorySettings, OrderReleaseItem,
    ReleaseResult, ReservationResult, StockPage, UpdateResult,
};
