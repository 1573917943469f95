//! The reads and writes of a unit of work on SQLite, inside the `BEGIN
//! IMMEDIATE` transaction that holds the database's write lock: nothing read
//! here can change before the transaction writes, so no row needs a lock of
//! its own.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use super::rows::{HistoryRow, KeyRow, ReservationRow, StockRow};
use super::schema::{idempotency_keys, inventory, inventory_history, inventory_reservations};
use crate::domain::port::{Changes, KeptRequest, Needs, Rows, StoreError, StoreResult};
use crate::domain::{Reservation, ReservationStatus, StockLevel};
use crate::telemetry::db::rows_affected;

/// Reads the rows of `needs`, with `now` the work's time.
pub(super) fn load(
    c: &mut SqliteConnection,
    needs: &Needs,
    now: DateTime<Utc>,
) -> StoreResult<Rows> {
    use inventory_reservations::dsl as r;
    let mut reservations: Vec<ReservationRow> = Vec::new();
    if !needs.orders.is_empty() {
        reservations.extend(
            inventory_reservations::table
                .filter(r::order_id.eq_any(&needs.orders))
                .order((r::order_id.asc(), r::product_id.asc()))
                .select(ReservationRow::as_select())
                .load(c)?,
        );
    }
    for (order, product) in &needs.holds {
        reservations.extend(
            inventory_reservations::table
                .filter(r::order_id.eq(order))
                .filter(r::product_id.eq(product))
                .select(ReservationRow::as_select())
                .first(c)
                .optional()?,
        );
    }
    let active_due = || {
        inventory_reservations::table
            .filter(r::status.eq(ReservationStatus::Active.as_str()))
            .filter(r::expires_at.le(now.naive_utc()))
            .order(r::expires_at.asc())
            .select(ReservationRow::as_select())
    };
    if !needs.due_of.is_empty() {
        reservations.extend(
            active_due()
                .filter(r::product_id.eq_any(&needs.due_of))
                .load(c)?,
        );
    }
    if let Some(limit) = needs.due_any {
        reservations.extend(active_due().limit(i64::from(limit)).load(c)?);
    }
    let stocks = if needs.stocks.is_empty() {
        Vec::new()
    } else {
        inventory::table
            .filter(inventory::product_id.eq_any(&needs.stocks))
            .order(inventory::product_id.asc())
            .select(StockRow::as_select())
            .load(c)?
    };
    let keys = if needs.keys.is_empty() {
        Vec::new()
    } else {
        idempotency_keys::table
            .filter(idempotency_keys::request_id.eq_any(&needs.keys))
            .select(KeyRow::as_select())
            .load(c)?
    };
    Ok(Rows {
        reservations: reservations
            .into_iter()
            .map(Reservation::try_from)
            .collect::<StoreResult<_>>()?,
        stocks: stocks.into_iter().map(StockLevel::from).collect(),
        keys: keys
            .into_iter()
            .map(KeptRequest::try_from)
            .collect::<StoreResult<_>>()?,
    })
}

/// Writes what the planner decided.
pub(super) fn write(c: &mut SqliteConnection, changes: &Changes) -> StoreResult<()> {
    use inventory::dsl as i;
    use inventory_reservations::dsl as r;
    let now = changes.now.naive_utc();
    for write in &changes.stocks {
        let stock = &write.stock;
        let written = match write.read_version {
            None => diesel::insert_into(inventory::table)
                .values((
                    i::product_id.eq(&stock.product_id),
                    i::total_quantity.eq(stock.total_quantity),
                    i::reserved_quantity.eq(stock.reserved_quantity),
                    i::created_at.eq(now),
                    i::updated_at.eq(stock.updated_at.naive_utc()),
                    i::version.eq(stock.version),
                ))
                .execute(c)?,
            Some(read) => diesel::update(inventory::table)
                .filter(i::product_id.eq(&stock.product_id))
                .filter(i::version.eq(read))
                .set((
                    i::total_quantity.eq(stock.total_quantity),
                    i::reserved_quantity.eq(stock.reserved_quantity),
                    i::updated_at.eq(stock.updated_at.naive_utc()),
                    i::version.eq(stock.version),
                ))
                .execute(c)?,
        };
        rows_affected(written);
        if written != 1 {
            return Err(StoreError::Internal(format!(
                "the stock of {:?} changed under the write lock",
                stock.product_id
            )));
        }
    }
    // One INSERT per row: diesel runs a multi-row insert on SQLite as one
    // statement per row in a savepoint anyway, and per statement the row
    // count reaches its span. There is no round trip to save.
    for reservation in &changes.new_reservations {
        diesel::insert_into(inventory_reservations::table)
            .values(ReservationRow::from(reservation))
            .execute(c)
            .map(rows_affected)?;
    }
    for reservation in &changes.reservations {
        diesel::update(inventory_reservations::table.find(&reservation.id))
            .set((
                r::released_quantity.eq(reservation.released_quantity),
                r::committed_quantity.eq(reservation.committed_quantity),
                r::status.eq(reservation.status.as_str()),
                r::updated_at.eq(now),
            ))
            .execute(c)
            .map(rows_affected)?;
    }
    for entry in &changes.history {
        diesel::insert_into(inventory_history::table)
            .values(HistoryRow::from(entry))
            .execute(c)
            .map(rows_affected)?;
    }
    for kept in &changes.keys {
        diesel::insert_into(idempotency_keys::table)
            .values(KeyRow::from(kept))
            .execute(c)
            .map(rows_affected)?;
    }
    Ok(())
}
