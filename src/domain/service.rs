//! [`Inventory`]: the use cases the API exposes, one method each.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, Utc};

use super::error::{Error, Result};
use super::model::{HistoryCursor, HistoryEntry, Reservation, StockLevel};
use super::rules;
use crate::store::{
    self, CheckRecord, InventoryStore, NewReservation, ReleaseOutcome, ReleaseRequest,
    ReserveOutcome, StockUpdate, UpdateOutcome,
};

/// The inventory settings the rules depend on (the `inventory` config section).
#[derive(Debug, Clone)]
pub struct InventorySettings {
    /// Timeout of a reservation whose request gives none.
    pub default_reservation_timeout: Duration,
    /// Longest timeout a request may ask for.
    pub max_reservation_timeout: Duration,
    /// Whether checks are written to the history (off: a read costs no write).
    pub record_checks: bool,
}

/// The inventory use cases over a store.
#[derive(Clone)]
pub struct Inventory {
    /// Where stock, reservations and history live.
    store: Arc<dyn InventoryStore>,
    /// Limits and switches from the configuration.
    settings: InventorySettings,
}

/// The answer to a check.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// The product's stock.
    pub stock: StockLevel,
    /// The quantity asked about (1 when the request gave none).
    pub required_quantity: i32,
    /// Whether that much is available.
    pub available: bool,
}

/// The answer to a reservation request.
#[derive(Debug, Clone)]
pub struct ReservationResult {
    /// The reservation made, or found again for a retry.
    pub reservation: Reservation,
    /// The product's stock afterwards.
    pub stock: StockLevel,
    /// False when the request was a retry answered with the first reservation.
    pub created: bool,
}

/// The answer to a release.
#[derive(Debug, Clone)]
pub struct ReleaseResult {
    /// The reservation afterwards.
    pub reservation: Reservation,
    /// How much this call gave back (0 if the reservation was not active).
    pub released: i32,
    /// The product's stock afterwards.
    pub stock: StockLevel,
}

/// The answer to a stock update.
#[derive(Debug, Clone)]
pub struct UpdateResult {
    /// The product's stock afterwards.
    pub stock: StockLevel,
    /// What the update did.
    pub plan: rules::UpdatePlan,
}

/// One page of history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The entries, newest first.
    pub entries: Vec<HistoryEntry>,
    /// Token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// The current time at the precision both databases keep (microseconds), so a
/// value written and read back compares equal.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

impl Inventory {
    /// The use cases over `store` with `settings`.
    pub fn new(store: Arc<dyn InventoryStore>, settings: InventorySettings) -> Self {
        Self { store, settings }
    }

    /// The store behind the use cases (for health checks and shutdown).
    pub fn store(&self) -> &Arc<dyn InventoryStore> {
        &self.store
    }

    /// A product's stock and whether `required_quantity` (0 meaning 1) of it
    /// is available.
    pub async fn check(&self, product_id: &str, required_quantity: i32) -> Result<CheckOutcome> {
        rules::validate_id("product_id", product_id)?;
        let required_quantity = rules::required_quantity(required_quantity)?;
        let stock = self
            .store
            .stock(product_id)
            .await?
            .ok_or_else(|| Error::ProductNotFound {
                product_id: product_id.to_owned(),
            })?;
        let available = stock.available_quantity() >= required_quantity;
        if self.settings.record_checks {
            self.store
                .record_check(CheckRecord {
                    product_id: product_id.to_owned(),
                    required_quantity,
                    available_quantity: stock.available_quantity(),
                    now: now(),
                })
                .await?;
        }
        Ok(CheckOutcome {
            stock,
            required_quantity,
            available,
        })
    }

    /// Holds `quantity` of a product for an order for `timeout_seconds` (0:
    /// the default). A retry with the same quantity returns the first
    /// reservation; another quantity is a conflict.
    pub async fn reserve(
        &self,
        product_id: &str,
        order_id: &str,
        quantity: i32,
        timeout_seconds: i32,
    ) -> Result<ReservationResult> {
        rules::validate_id("product_id", product_id)?;
        rules::validate_id("order_id", order_id)?;
        let quantity = rules::reserve_quantity(quantity)?;
        let timeout = rules::reservation_timeout(
            timeout_seconds,
            self.settings.default_reservation_timeout,
            self.settings.max_reservation_timeout,
        )?;
        let now = now();
        let expires_at = now
            + chrono::Duration::from_std(timeout)
                .map_err(|_| Error::invalid("reservation_timeout", "is too large"))?;
        let outcome = self
            .store
            .reserve(NewReservation {
                id: store::new_id(),
                product_id: product_id.to_owned(),
                order_id: order_id.to_owned(),
                quantity,
                expires_at,
                now,
            })
            .await?;
        match outcome {
            ReserveOutcome::Created { reservation, stock } => Ok(ReservationResult {
                reservation,
                stock,
                created: true,
            }),
            ReserveOutcome::Existing { reservation, stock } => {
                if reservation.quantity != quantity {
                    return Err(Error::ReservationConflict {
                        product_id: product_id.to_owned(),
                        order_id: order_id.to_owned(),
                        existing_quantity: reservation.quantity,
                        requested: quantity,
                    });
                }
                Ok(ReservationResult {
                    reservation,
                    stock,
                    created: false,
                })
            }
            ReserveOutcome::ProductNotFound => Err(Error::ProductNotFound {
                product_id: product_id.to_owned(),
            }),
            ReserveOutcome::InsufficientStock { stock } => Err(Error::InsufficientStock {
                product_id: product_id.to_owned(),
                requested: quantity,
                available: stock.available_quantity(),
            }),
        }
    }

    /// Gives back `quantity` (0: all) of what an order's reservation of a
    /// product holds. A reservation no longer active is answered with
    /// nothing released.
    pub async fn release(
        &self,
        product_id: &str,
        order_id: &str,
        quantity: i32,
    ) -> Result<ReleaseResult> {
        rules::validate_id("product_id", product_id)?;
        rules::validate_id("order_id", order_id)?;
        let quantity = rules::release_quantity(quantity)?;
        let outcome = self
            .store
            .release(ReleaseRequest {
                product_id: product_id.to_owned(),
                order_id: order_id.to_owned(),
                quantity,
                now: now(),
            })
            .await?;
        match outcome {
            ReleaseOutcome::Released {
                reservation,
                released,
                stock,
            } => Ok(ReleaseResult {
                reservation,
                released,
                stock,
            }),
            ReleaseOutcome::NotActive { reservation, stock } => Ok(ReleaseResult {
                reservation,
                released: 0,
                stock,
            }),
            ReleaseOutcome::ExceedsHeld { reservation } => Err(Error::ReleaseExceedsHeld {
                product_id: product_id.to_owned(),
                order_id: order_id.to_owned(),
                requested: quantity.unwrap_or_default(),
                held: reservation.held_quantity(),
            }),
            ReleaseOutcome::NotFound => Err(Error::ReservationNotFound {
                product_id: product_id.to_owned(),
                order_id: order_id.to_owned(),
            }),
        }
    }

    /// Sets, adds to or subtracts from a product's stock on hand.
    pub async fn update(
        &self,
        product_id: &str,
        operation: &str,
        quantity: i32,
    ) -> Result<UpdateResult> {
        rules::validate_id("product_id", product_id)?;
        let change = rules::stock_change(operation, quantity)?;
        let outcome = self
            .store
            .update_stock(StockUpdate {
                product_id: product_id.to_owned(),
                change,
                now: now(),
            })
            .await?;
        match outcome {
            UpdateOutcome::Applied { plan, stock } => Ok(UpdateResult { stock, plan }),
            UpdateOutcome::Rejected(error) => Err(error),
        }
    }

    /// One page of a product's history, newest first.
    pub async fn history(
        &self,
        product_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<HistoryPage> {
        rules::validate_id("product_id", product_id)?;
        let page_size = rules::page_size(page_size)?;
        let after = rules::decode_page_token(page_token)?;
        // One extra entry tells whether another page follows.
        let mut entries = self
            .store
            .history(product_id, after, page_size + 1)
            .await?
            .ok_or_else(|| Error::ProductNotFound {
                product_id: product_id.to_owned(),
            })?;
        let next_page_token = if entries.len() > page_size as usize {
            entries.truncate(page_size as usize);
            entries.last().map(|last| {
                rules::encode_page_token(&HistoryCursor {
                    created_at: last.created_at,
                    id: last.id.clone(),
                })
            })
        } else {
            None
        };
        Ok(HistoryPage {
            entries,
            next_page_token,
        })
    }

    /// Expires every reservation whose timeout has passed, in batches of
    /// `batch_size`. Returns how many were expired.
    pub async fn expire_due_reservations(&self, batch_size: u32) -> Result<usize> {
        let now = now();
        let mut total = 0;
        loop {
            let expired = self.store.expire_due(now, batch_size).await?;
            total += expired.len();
            for reservation in &expired {
                tracing::info!(
                    reservation.id = %reservation.id,
                    inventory.product_id = %reservation.product_id,
                    order.id = %reservation.order_id,
                    inventory.quantity = reservation.quantity - reservation.released_quantity,
                    "reservation expired; its stock is available again"
                );
            }
            if expired.len() < batch_size as usize {
                return Ok(total);
            }
        }
    }
}
