//! Row types for the SQLite tables and their conversion from and to domain
//! types. SQLite keeps timestamps as naive UTC text and JSON as text; the
//! domain speaks `DateTime<Utc>` and `serde_json::Value`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{
    idempotency_keys, inventory, inventory_events, inventory_history, inventory_reservations,
};
use crate::domain::port::KeptRequest;
use crate::domain::{
    HistoryEntry, OperationType, PositionedEvent, Reservation, ReservationStatus, StockLevel,
    StoreError,
};

/// A row of `inventory`.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = inventory, check_for_backend(diesel::sqlite::Sqlite))]
pub struct StockRow {
    pub product_id: String,
    pub total_quantity: i32,
    pub reserved_quantity: i32,
    pub updated_at: NaiveDateTime,
    pub version: i64,
    pub low_stock_threshold: Option<i32>,
}

impl From<StockRow> for StockLevel {
    fn from(row: StockRow) -> Self {
        Self {
            product_id: row.product_id,
            total_quantity: row.total_quantity,
            reserved_quantity: row.reserved_quantity,
            version: row.version,
            updated_at: row.updated_at.and_utc(),
            low_stock_threshold: row.low_stock_threshold,
        }
    }
}

/// A row of `inventory_reservations`.
#[derive(Debug, Queryable, QueryableByName, Selectable, Insertable)]
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

impl From<&Reservation> for ReservationRow {
    fn from(reservation: &Reservation) -> Self {
        Self {
            id: reservation.id.clone(),
            product_id: reservation.product_id.clone(),
            order_id: reservation.order_id.clone(),
            quantity: reservation.quantity,
            released_quantity: reservation.released_quantity,
            committed_quantity: reservation.committed_quantity,
            status: reservation.status.as_str().to_owned(),
            expires_at: reservation.expires_at.naive_utc(),
            created_at: reservation.created_at.naive_utc(),
        }
    }
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = StoreError;

    fn try_from(row: ReservationRow) -> Result<Self, StoreError> {
        let status = ReservationStatus::parse(&row.status).ok_or_else(|| {
            StoreError::Internal(format!(
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

impl From<&HistoryEntry> for HistoryRow {
    fn from(entry: &HistoryEntry) -> Self {
        Self {
            id: entry.id.clone(),
            product_id: entry.product_id.clone(),
            operation_type: entry.operation.as_str().to_owned(),
            quantity_change: entry.quantity_change,
            order_id: entry.order_id.clone(),
            created_at: entry.created_at.naive_utc(),
            metadata: Some(entry.metadata.to_string()),
        }
    }
}

impl TryFrom<HistoryRow> for HistoryEntry {
    type Error = StoreError;

    fn try_from(row: HistoryRow) -> Result<Self, StoreError> {
        let operation = OperationType::parse(&row.operation_type).ok_or_else(|| {
            StoreError::Internal(format!(
                "history entry {} has unknown operation {:?}",
                row.id, row.operation_type
            ))
        })?;
        let metadata = match row.metadata.as_deref() {
            None => serde_json::Value::Null,
            Some(text) => serde_json::from_str(text).map_err(|e| {
                StoreError::Internal(format!(
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

/// A row of `idempotency_keys`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency_keys, check_for_backend(diesel::sqlite::Sqlite))]
pub struct KeyRow {
    pub request_id: String,
    pub method: String,
    pub request: String,
    pub response: String,
    pub created_at: NaiveDateTime,
}

impl From<&KeptRequest> for KeyRow {
    fn from(kept: &KeptRequest) -> Self {
        Self {
            request_id: kept.request_id.clone(),
            method: kept.method.clone(),
            request: kept.fields.to_string(),
            response: kept.response.to_string(),
            created_at: kept.created_at.naive_utc(),
        }
    }
}

impl TryFrom<KeyRow> for KeptRequest {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        let parse = |text: &str| {
            serde_json::from_str(text).map_err(|e| {
                StoreError::Internal(format!(
                    "request key {:?} is unreadable: {e}",
                    row.request_id
                ))
            })
        };
        Ok(Self {
            fields: parse(&row.request)?,
            response: parse(&row.response)?,
            request_id: row.request_id,
            method: row.method,
            created_at: row.created_at.and_utc(),
        })
    }
}

/// A row of `inventory_events`.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = inventory_events, check_for_backend(diesel::sqlite::Sqlite))]
pub struct EventRow {
    pub position: i64,
    pub product_id: String,
    pub kind: String,
    pub order_id: Option<String>,
    pub quantity_change: i32,
    pub total_quantity: i32,
    pub reserved_quantity: i32,
    pub version: i64,
    pub low_stock_threshold: Option<i32>,
    pub updated_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
}

impl TryFrom<EventRow> for PositionedEvent {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        let stock = StockLevel {
            product_id: row.product_id,
            total_quantity: row.total_quantity,
            reserved_quantity: row.reserved_quantity,
            version: row.version,
            low_stock_threshold: row.low_stock_threshold,
            updated_at: row.updated_at.and_utc(),
        };
        crate::store::stored_event(
            row.position,
            &row.kind,
            row.order_id,
            row.quantity_change,
            stock,
            row.created_at.and_utc(),
        )
    }
}
