//! Row types for the SQLite tables and their conversion to domain types.
//! SQLite keeps timestamps as naive UTC text; the domain speaks `DateTime<Utc>`.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::{inventory, inventory_history, inventory_reservations};
use crate::domain::{HistoryEntry, OperationType, Reservation, ReservationStatus, StockLevel};
use crate::store::Error;

/// A row of `inventory`.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = inventory, check_for_backend(diesel::sqlite::Sqlite))]
pub struct StockRow {
    pub product_id: String,
    pub total_quantity: i32,
    pub reserved_quantity: i32,
    pub updated_at: NaiveDateTime,
    pub version: i64,
}

impl From<StockRow> for StockLevel {
    fn from(row: StockRow) -> Self {
        Self {
            product_id: row.product_id,
            total_quantity: row.total_quantity,
            reserved_quantity: row.reserved_quantity,
            version: row.version,
            updated_at: row.updated_at.and_utc(),
        }
    }
}

/// A row of `inventory_reservations`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = inventory_reservations, check_for_backend(diesel::sqlite::Sqlite))]
pub struct ReservationRow {
    pub id: String,
    pub product_id: String,
    pub order_id: String,
    pub quantity: i32,
    pub released_quantity: i32,
    pub committed_quantity: i32,
    pub status: String,
    pub expires_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = Error;

    fn try_from(row: ReservationRow) -> Result<Self, Error> {
        let status = ReservationStatus::parse(&row.status).ok_or_else(|| {
            Error::Internal(format!(
                "reservation {} has unknown status {:?}",
                row.id, row.status
            ))
        })?;
        Ok(Self {
            id: row.id,
            product_id: row.product_id,
            order_id: row.order_id,
            quantity: row.quantity,
            released_quantity: row.released_quantity,
            committed_quantity: row.committed_quantity,
            status,
            expires_at: row.expires_at.and_utc(),
            created_at: row.created_at.and_utc(),
        })
    }
}

/// A row of `inventory_history`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = inventory_history, check_for_backend(diesel::sqlite::Sqlite))]
pub struct HistoryRow {
    pub id: String,
    pub product_id: String,
    pub operation_type: String,
    pub quantity_change: i32,
    pub order_id: Option<String>,
    pub created_at: NaiveDateTime,
    pub metadata: Option<String>,
}

impl HistoryRow {
    /// A new history row stamped `now`.
    pub fn new(
        product_id: &str,
        operation: OperationType,
        quantity_change: i32,
        order_id: Option<&str>,
        now: DateTime<Utc>,
        metadata: serde_json::Value,
    ) -> Self {
        Self {
            id: crate::store::new_id(),
            product_id: product_id.to_owned(),
            operation_type: operation.as_str().to_owned(),
            quantity_change,
            order_id: order_id.map(str::to_owned),
            created_at: now.naive_utc(),
            metadata: Some(metadata.to_string()),
        }
    }
}

impl TryFrom<HistoryRow> for HistoryEntry {
    type Error = Error;

    fn try_from(row: HistoryRow) -> Result<Self, Error> {
        let operation = OperationType::parse(&row.operation_type).ok_or_else(|| {
            Error::Internal(format!(
                "history entry {} has unknown operation {:?}",
                row.id, row.operation_type
            ))
        })?;
        let metadata = match row.metadata.as_deref() {
            None => serde_json::Value::Null,
            Some(text) => serde_json::from_str(text).map_err(|e| {
                Error::Internal(format!(
                    "history entry {} has invalid metadata: {e}",
                    row.id
                ))
            })?,
        };
        Ok(Self {
            id: row.id,
            product_id: row.product_id,
            operation,
            quantity_change: row.quantity_change,
            order_id: row.order_id,
            created_at: row.created_at.and_utc(),
            metadata,
        })
    }
}
