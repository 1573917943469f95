//! Row types for the PostgreSQL tables, their conversion to domain types, and
//! the mapping of the domain enums onto the schema's ENUM types.
//! Timestamps are `TIMESTAMPTZ`, read and written as `DateTime<Utc>`.

use std::io::Write as _;

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};

use super::schema::{
    idempotency_keys, inventory, inventory_history, inventory_reservations, sql_types,
};
use crate::domain::port::KeptRequest;
use crate::domain::{HistoryEntry, OperationType, Reservation, ReservationStatus, StockLevel};

/// A [`ReservationStatus`] as the `reservation_status` ENUM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = sql_types::ReservationStatus)]
pub struct StoredStatus(pub ReservationStatus);

impl ToSql<sql_types::ReservationStatus, Pg> for StoredStatus {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        // ENUM values travel as their label's text in the binary protocol.
        out.write_all(self.0.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<sql_types::ReservationStatus, Pg> for StoredStatus {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let label = std::str::from_utf8(value.as_bytes())?;
        ReservationStatus::parse(label)
            .map(Self)
            .ok_or_else(|| format!("unknown reservation status {label:?}").into())
    }
}

/// An [`OperationType`] as the `inventory_operation` ENUM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = sql_types::InventoryOperation)]
pub struct StoredOperation(pub OperationType);

impl ToSql<sql_types::InventoryOperation, Pg> for StoredOperation {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.0.as_str().as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<sql_types::InventoryOperation, Pg> for StoredOperation {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let label = std::str::from_utf8(value.as_bytes())?;
        OperationType::parse(label)
            .map(Self)
            .ok_or_else(|| format!("unknown history operation {label:?}").into())
    }
}

/// A row of `inventory`.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = inventory, check_for_backend(Pg))]
pub struct StockRow {
    pub product_id: String,
    pub total_quantity: i32,
    pub reserved_quantity: i32,
    pub updated_at: DateTime<Utc>,
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
            updated_at: row.updated_at,
            low_stock_threshold: row.low_stock_threshold,
        }
    }
}

/// A row of `inventory_reservations`.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = inventory_reservations, check_for_backend(Pg))]
pub struct ReservationRow {
    pub id: String,
    pub product_id: String,
    pub order_id: String,
    pub quantity: i32,
    pub released_quantity: i32,
    pub committed_quantity: i32,
    pub status: StoredStatus,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ReservationRow {
    /// The row of `reservation`, last changed `now`.
    pub fn new(reservation: &Reservation, now: DateTime<Utc>) -> Self {
        Self {
            id: reservation.id.clone(),
            product_id: reservation.product_id.clone(),
            order_id: reservation.order_id.clone(),
            quantity: reservation.quantity,
            released_quantity: reservation.released_quantity,
            committed_quantity: reservation.committed_quantity,
            status: StoredStatus(reservation.status),
            expires_at: reservation.expires_at,
            created_at: reservation.created_at,
            updated_at: now,
        }
    }
}

impl From<ReservationRow> for Reservation {
    fn from(row: ReservationRow) -> Self {
        Self {
            id: row.id,
            product_id: row.product_id,
            order_id: row.order_id,
            quantity: row.quantity,
            released_quantity: row.released_quantity,
            committed_quantity: row.committed_quantity,
            status: row.status.0,
            expires_at: row.expires_at,
            created_at: row.created_at,
        }
    }
}

/// A row of `inventory_history`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = inventory_history, check_for_backend(Pg))]
pub struct HistoryRow {
    pub id: String,
    pub product_id: String,
    pub operation_type: StoredOperation,
    pub quantity_change: i32,
    pub order_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub metadata: Option<serde_json::Value>,
}

impl From<&HistoryEntry> for HistoryRow {
    fn from(entry: &HistoryEntry) -> Self {
        Self {
            id: entry.id.clone(),
            product_id: entry.product_id.clone(),
            operation_type: StoredOperation(entry.operation),
            quantity_change: entry.quantity_change,
            order_id: entry.order_id.clone(),
            created_at: entry.created_at,
            metadata: Some(entry.metadata.clone()),
        }
    }
}

impl From<HistoryRow> for HistoryEntry {
    fn from(row: HistoryRow) -> Self {
        Self {
            id: row.id,
            product_id: row.product_id,
            operation: row.operation_type.0,
            quantity_change: row.quantity_change,
            order_id: row.order_id,
            created_at: row.created_at,
            metadata: row.metadata.unwrap_or(serde_json::Value::Null),
        }
    }
}

/// A row of `idempotency_keys`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency_keys, check_for_backend(Pg))]
pub struct KeyRow {
    pub request_id: String,
    pub method: String,
    pub request: serde_json::Value,
    pub response: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl From<&KeptRequest> for KeyRow {
    fn from(kept: &KeptRequest) -> Self {
        Self {
            request_id: kept.request_id.clone(),
            method: kept.method.clone(),
            request: kept.fields.clone(),
            response: kept.response.clone(),
            created_at: kept.created_at,
        }
    }
}

impl From<KeyRow> for KeptRequest {
    fn from(row: KeyRow) -> Self {
        Self {
            request_id: row.request_id,
            method: row.method,
            fields: row.request,
            response: row.response,
            created_at: row.created_at,
        }
    }
}
