//! The metadata every store writes with a history entry, in one place so the
//! backends record exactly the same JSON for the same change.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::CheckRecord;
use crate::domain::{StockChange, UpdatePlan};

/// A check: what was asked and what was available.
pub fn check_metadata(record: &CheckRecord) -> Value {
    json!({
        "required_quantity": record.required_quantity,
        "available_quantity": record.available_quantity,
        "available": record.available_quantity >= record.required_quantity,
    })
}

/// A reservation made: its id, quantity and expiry, and the stock afterwards.
pub fn reserve_metadata(
    reservation_id: &str,
    quantity: i32,
    expires_at: DateTime<Utc>,
    reserved_after: i32,
    available_after: i32,
) -> Value {
    json!({
        "reservation_id": reservation_id,
        "quantity": quantity,
        "expires_at": expires_at.to_rfc3339(),
        "reserved_quantity": reserved_after,
        "available_quantity": available_after,
    })
}

/// A release by a caller: how much, what the reservation still holds, and the
/// stock afterwards.
pub fn release_metadata(
    reservation_id: &str,
    quantity: i32,
    held_after: i32,
    reserved_after: i32,
    available_after: i32,
) -> Value {
    json!({
        "reservation_id": reservation_id,
        "quantity": quantity,
        "reason": "released",
        "held_quantity": held_after,
        "reserved_quantity": reserved_after,
        "available_quantity": available_after,
    })
}

/// A commit: how much left the stock on hand with its hold, what the
/// reservation still holds, and the stock afterwards.
pub fn commit_metadata(
    reservation_id: &str,
    quantity: i32,
    held_after: i32,
    total_after: i32,
    reserved_after: i32,
    available_after: i32,
) -> Value {
    json!({
        "reservation_id": reservation_id,
        "quantity": quantity,
        "reason": "committed",
        "held_quantity": held_after,
        "current_quantity": total_after,
        "reserved_quantity": reserved_after,
        "available_quantity": available_after,
    })
}

/// A release by the expiry sweeper: how much, when it expired, and the stock
/// afterwards.
pub fn expire_metadata(
    reservation_id: &str,
    quantity: i32,
    expires_at: DateTime<Utc>,
    reserved_after: i32,
    available_after: i32,
) -> Value {
    json!({
        "reservation_id": reservation_id,
        "quantity": quantity,
        "reason": "expired",
        "expires_at": expires_at.to_rfc3339(),
        "reserved_quantity": reserved_after,
        "available_quantity": available_after,
    })
}

/// A change of stock on hand: the operation and the totals before and after.
pub fn update_metadata(change: StockChange, plan: &UpdatePlan, version: i64) -> Value {
    json!({
        "operation": change.name(),
        "quantity": change.amount(),
        "previous_quantity": plan.previous_total,
        "current_quantity": plan.new_total,
        "created": plan.creates_product,
        "version": version,
    })
}
