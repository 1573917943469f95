//! The one error type of the inventory rules.
//!
//! Error policy:
//! - Every variant but [`Error::Store`] is the caller's to act on and carries
//!   what a readable message and a machine-readable reason need; the API layer
//!   maps each to exactly one gRPC code (see `api::status`).
//! - [`Error::Store`] wraps [`StoreError`]: an unreachable database
//!   becomes UNAVAILABLE (retryable), anything unexpected becomes INTERNAL with
//!   a generic message while the cause goes to the log.
//! - A returned error means nothing the caller asked for changed: rules are
//!   checked before, or inside the same transaction as, any write. The one
//!   write a refusal keeps is the expiry of reservations already past their
//!   time (made before refusing a reservation for lack of stock), which the
//!   sweeper would have made anyway.

use super::model::{Alternative, ItemConflict, Shortage};
use super::port::StoreError;

/// Why an inventory operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A request field breaks a rule only the domain can check (the
    /// contract's own rules were checked as the request was decoded).
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The request field at fault, named as on the wire.
        field: &'static str,
        /// The rule it breaks, named as protovalidate names rules
        /// (`page_token.issued`), for a client to tell refusals apart.
        rule: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The product does not exist.
    #[error("product {product_id:?} not found")]
    ProductNotFound {
        /// The product asked for.
        product_id: String,
    },

    /// No reservation exists for this order and product.
    #[error("no reservation of product {product_id:?} for order {order_id:?}")]
    ReservationNotFound {
        /// The product asked for.
        product_id: String,
        /// The order asked for.
        order_id: String,
    },

    /// Fewer units are available than requested.
    #[error(
        "insufficient stock for product {product_id:?}: requested {requested}, available {available}"
    )]
    InsufficientStock {
        /// The product asked for.
        product_id: String,
        /// The quantity asked for.
        requested: i32,
        /// What was available when the request was decided.
        available: i32,
        /// The product's alternatives that could fill the request now, in
        /// their stated order.
        alternatives: Vec<Alternative>,
    },

    /// The order already holds a reservation of this product for another quantity.
    #[error(
        "order {order_id:?} already reserved {existing_quantity} of product {product_id:?}; \
         a retry must ask for the same quantity, not {requested}"
    )]
    ReservationConflict {
        /// The product asked for.
        product_id: String,
        /// The order asked for.
        order_id: String,
        /// The quantity of the existing reservation.
        existing_quantity: i32,
        /// The quantity of this request.
        requested: i32,
    },

    /// The stock on hand would fall below what active reservations hold.
    #[error(
        "{operation} {amount} would leave product {product_id:?} with {resulting} on hand, \
         below the {reserved} reserved"
    )]
    BelowReserved {
        /// The product asked for.
        product_id: String,
        /// `set`, `add` or `subtract`.
        operation: &'static str,
        /// The amount of the update.
        amount: i32,
        /// The stock on hand the update would leave (may be negative).
        resulting: i64,
        /// What active reservations hold.
        reserved: i32,
    },

    /// A release asks for more than the reservation holds.
    #[error(
        "cannot release {requested} of product {product_id:?} for order {order_id:?}: \
         the reservation holds {held}"
    )]
    ReleaseExceedsHeld {
        /// The product asked for.
        product_id: String,
        /// The order asked for.
        order_id: String,
        /// The quantity asked to release.
        requested: i32,
        /// What the reservation holds.
        held: i32,
    },

    /// A commit asks for more than the reservation holds.
    #[error(
        "cannot commit {requested} of product {product_id:?} for order {order_id:?}: \
         the reservation holds {held}"
    )]
    CommitExceedsHeld {
        /// The product asked for.
        product_id: String,
        /// The order asked for.
        order_id: String,
        /// The quantity asked to commit.
        requested: i32,
        /// What the reservation holds.
        held: i32,
    },

    /// The reservation was already resolved another way (released or
    /// expired), so it can no longer be committed.
    #[error(
        "the reservation of product {product_id:?} for order {order_id:?} is {status}, \
         not active; it cannot be committed"
    )]
    ReservationNotActive {
        /// The product asked for.
        product_id: String,
        /// The order asked for.
        order_id: String,
        /// Where the reservation stands (`released` or `expired`).
        status: &'static str,
    },

    /// The order has never reserved anything.
    #[error("order {order_id:?} has no reservations")]
    OrderNotFound {
        /// The order asked for.
        order_id: String,
    },

    /// Some products of an all-or-nothing order reservation have not enough
    /// available stock; every one of them is listed.
    #[error("insufficient stock for order {order_id:?}: {}", list_shortages(.shortages))]
    InsufficientStockForOrder {
        /// The order asked for.
        order_id: String,
        /// Each short product, in product id order.
        shortages: Vec<Shortage>,
    },

    /// Some products of an order reservation do not exist; every one is listed.
    #[error("{} not found", list_products(.product_ids))]
    ProductsNotFound {
        /// The missing products, in product id order.
        product_ids: Vec<String>,
    },

    /// The order already holds some of the products in other quantities;
    /// every one is listed.
    #[error(
        "order {order_id:?} already reserved {}; a retry must ask for the same quantities",
        list_conflicts(.conflicts)
    )]
    OrderItemsConflict {
        /// The order asked for.
        order_id: String,
        /// Each product held in another quantity.
        conflicts: Vec<ItemConflict>,
    },

    /// The product's version is not the one the update expected: its stock
    /// changed since the caller read it.
    #[error(
        "product {product_id:?} is at version {current}, not the expected {expected}; read it again and retry"
    )]
    VersionMismatch {
        /// The product asked for.
        product_id: String,
        /// The version the request expected.
        expected: i64,
        /// The product's version (0: it does not exist).
        current: i64,
    },

    /// The client's `request_id` was already used for a different request.
    #[error(
        "request_id {request_id:?} was already used for a different request ({}); \
         a new request needs a new request_id",
        .differences.join(", ")
    )]
    RequestIdReused {
        /// The key.
        request_id: String,
        /// What differs, one entry per field: `quantity: 2, now 3`.
        differences: Vec<String>,
        /// The fields that differ, by name.
        fields: Vec<String>,
    },

    /// The service is read-only: the database could not be reached, and
    /// until it answers again writes (and reads the cache cannot serve) are
    /// refused at once.
    #[error(
        "read-only mode: the database cannot be reached (since {since}); \
         writes, and reads the cache cannot answer, are refused until it answers again"
    )]
    ReadOnly {
        /// Since when.
        since: chrono::DateTime<chrono::Utc>,
        /// The failure that started it.
        reason: String,
    },

    /// A watch asked to resume after a position whose following events are
    /// no longer kept: it would miss some.
    #[error(
        "events after position {after} are no longer kept (every event up to position \
         {purged_through} was forgotten); read the stock again and watch from now on"
    )]
    EventsPurged {
        /// The position asked for.
        after: i64,
        /// Every event at or before it is forgotten.
        purged_through: i64,
    },

    /// A watch asked to resume after a position no event has reached yet
    /// (from another database, or made up).
    #[error("position {after} is past the latest event, at position {last_position}")]
    PositionAhead {
        /// The position asked for.
        after: i64,
        /// The latest event's position.
        last_position: i64,
    },

    /// A watcher did not take its events as fast as they came: it fell
    /// more than the service buffers behind, and its watch is ended; it can
    /// resume from the last position it received.
    #[error(
        "the watch fell {behind} events behind and was ended; resume after position {position}"
    )]
    WatchTooSlow {
        /// The position of the last event sent.
        position: i64,
        /// How many events it missed at once.
        behind: u64,
    },

    /// The service keeps no events (`inventory.events.enabled` is off).
    #[error(
        "stock events are not kept by this service (inventory.events.enabled is false); \
         nothing can be watched"
    )]
    EventsDisabled,

    /// The service is shutting down: a watch ends, and resumes on another
    /// replica (or after the restart) from the last position it received.
    #[error("the service is shutting down; resume the watch after position {position}")]
    ShuttingDown {
        /// The position of the last event sent.
        position: i64,
    },

    /// The database failed or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// An [`Error::InvalidArgument`]: `field` breaks `rule`.
    pub fn invalid(field: &'static str, rule: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            rule,
            reason: reason.into(),
        }
    }
}

fn list_shortages(shortages: &[Shortage]) -> String {
    shortages
        .iter()
        .map(|s| {
            format!(
                "product {:?} requested {}, available {}",
                s.product_id, s.requested, s.available
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn list_products(product_ids: &[String]) -> String {
    let quoted: Vec<String> = product_ids.iter().map(|p| format!("{p:?}")).collect();
    match quoted.as_slice() {
        [one] => format!("product {one}"),
        many => format!("products {}", many.join(", ")),
    }
}

fn list_conflicts(conflicts: &[ItemConflict]) -> String {
    conflicts
        .iter()
        .map(|c| {
            format!(
                "{} of product {:?} (not {})",
                c.existing_quantity, c.product_id, c.requested
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The result of an inventory operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
