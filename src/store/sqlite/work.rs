//! The reads and writes of a unit of work on SQLite, inside the `BEGIN
//! IMMEDIATE` transaction that holds the database's write lock: nothing read
//! here can change before the transaction writes, so no row needs a lock of
//! its own.
//!
//! One statement per kind of row, whatever the number of rows (a batch of
//! many calls costs as many statements as one): reservations by `(order,
//! product)` through a row-value `IN (VALUES ...)`, stock rows through
//! `UPDATE ... FROM (VALUES ...)`, and multi-row inserts. Their text varies
//! with the number of rows, so SQLite prepares each once per unit of work,
//! which costs less than running a prepared statement once per row.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};
use diesel::sqlite::{Sqlite, SqliteConnection};

use super::rows::{KeyRow, ReservationRow, StockRow};
use super::schema::{idempotency_keys, inventory, inventory_reservations};
use crate::domain::port::{Changes, KeptRequest, Needs, Rows, StoreError, StoreResult};
use crate::domain::{Reservation, ReservationStatus, StockEvent, StockLevel};
use crate::telemetry::db::rows_affected;

/// A statement whose binds are added one at a time.
type Built<'a> = BoxedSqlQuery<'a, Sqlite, diesel::query_builder::SqlQuery>;

/// `rows` groups of `width` placeholders: `(?, ?), (?, ?)`.
fn placeholders(rows: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row; rows].join(", ")
}

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
    if !needs.holds.is_empty() {
        let sql = format!(
            "SELECT id, product_id, order_id, quantity, released_quantity, committed_quantity, \
             status, expires_at, created_at FROM inventory_reservations \
             WHERE (order_id, product_id) IN (VALUES {})",
            placeholders(needs.holds.len(), 2)
        );
        let mut query: Built<'_> = diesel::sql_query(sql).into_boxed();
        for (order, product) in &needs.holds {
            query = query.bind::<Text, _>(order).bind::<Text, _>(product);
        }
        reservations.extend(query.load::<ReservationRow>(c)?);
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

/// Runs `query`, which must change `expected` rows; the transaction is
/// rolled back otherwise.
fn execute(
    c: &mut SqliteConnection,
    query: Built<'_>,
    expected: usize,
    what: &str,
) -> StoreResult<()> {
    let written = query.execute(c).map(rows_affected)?;
    if written != expected {
        return Err(StoreError::Internal(format!(
            "{what}: {written} rows changed instead of {expected}"
        )));
    }
    Ok(())
}

/// The latest event's position (`inventory_events.sql` shares it).
pub(super) const LATEST_POSITION: &str = "SELECT COALESCE((SELECT MAX(position) FROM inventory_events), \
     (SELECT purged_through FROM inventory_event_log WHERE id = 1)) AS position";

/// Events inserted by one statement: 11 binds each, well under SQLite's
/// limit of 32,766 binds a statement.
const EVENTS_PER_INSERT: usize = 1000;

/// A position read back.
#[derive(QueryableByName)]
pub(super) struct Position {
    #[diesel(sql_type = BigInt)]
    pub(super) position: i64,
}

/// Writes what the planner decided. Returns the position of the last event
/// it added, if it added any.
/// Events are left out when `events` is false (`inventory.events.enabled`).
pub(super) fn write(
    c: &mut SqliteConnection,
    changes: &Changes,
    events: bool,
) -> StoreResult<Option<i64>> {
    let now = changes.now.naive_utc();
    let (created, changed): (Vec<_>, Vec<_>) = changes
        .stocks
        .iter()
        .partition(|w| w.read_version.is_none());
    if !created.is_empty() {
        let sql = format!(
            "INSERT INTO inventory (product_id, total_quantity, reserved_quantity, version, \
             created_at, updated_at, low_stock_threshold) VALUES {}",
            placeholders(created.len(), 7)
        );
        let mut query: Built<'_> = diesel::sql_query(sql).into_boxed();
        for write in &created {
            let stock = &write.stock;
            query = query
                .bind::<Text, _>(&stock.product_id)
                .bind::<Integer, _>(stock.total_quantity)
                .bind::<Integer, _>(stock.reserved_quantity)
                .bind::<BigInt, _>(stock.version)
                .bind::<Timestamp, _>(now)
                .bind::<Timestamp, _>(stock.updated_at.naive_utc())
                .bind::<Nullable<Integer>, _>(stock.low_stock_threshold);
        }
        execute(c, query, created.len(), "new products")?;
    }
    if !changed.is_empty() {
        // Each row only at the version it was read at: under the write lock
        // it cannot have moved, and if it had, the transaction rolls back.
        let sql = format!(
            "UPDATE inventory SET total_quantity = v.column2, reserved_quantity = v.column3, \
             version = v.column4, updated_at = v.column6, low_stock_threshold = v.column7 \
             FROM (VALUES {}) AS v \
             WHERE inventory.product_id = v.column1 AND inventory.version = v.column5",
            placeholders(changed.len(), 7)
        );
        let mut query: Built<'_> = diesel::sql_query(sql).into_boxed();
        for write in &changed {
            let stock = &write.stock;
            query = query
                .bind::<Text, _>(&stock.product_id)
                .bind::<Integer, _>(stock.total_quantity)
                .bind::<Integer, _>(stock.reserved_quantity)
                .bind::<BigInt, _>(stock.version)
                .bind::<BigInt, _>(write.read_version.unwrap_or_default())
                .bind::<Timestamp, _>(stock.updated_at.naive_utc())
                .bind::<Nullable<Integer>, _>(stock.low_stock_threshold);
        }
        execute(c, query, changed.len(), "stock rows at the version read")?;
    }
    let new = &changes.new_reservations;
    if !new.is_empty() {
        let sql = format!(
            "INSERT INTO inventory_reservations (id, product_id, order_id, quantity, \
             released_quantity, committed_quantity, status, expires_at, created_at, updated_at) \
             VALUES {}",
            placeholders(new.len(), 10)
        );
        let mut query: Built<'_> = diesel::sql_query(sql).into_boxed();
        for reservation in new {
            query = query
                .bind::<Text, _>(&reservation.id)
                .bind::<Text, _>(&reservation.product_id)
                .bind::<Text, _>(&reservation.order_id)
                .bind::<Integer, _>(reservation.quantity)
                .bind::<Integer, _>(reservation.released_quantity)
                .bind::<Integer, _>(reservation.committed_quantity)
                .bind::<Text, _>(reservation.status.as_str())
                .bind::<Timestamp, _>(reservation.expires_at.naive_utc())
                .bind::<Timestamp, _>(reservation.created_at.naive_utc())
                .bind::<Timestamp, _>(now);
        }
        execute(c, query, new.len(), "new reservations")?;
    }
    let updated = &changes.reservations;
    if !updated.is_empty() {
        let sql = format!(
            "UPDATE inventory_reservations SET released_quantity = v.column2, \
             committed_quantity = v.column3, status = v.column4, updated_at = v.column5 \
             FROM (VALUES {}) AS v WHERE inventory_reservations.id = v.column1",
            placeholders(updated.len(), 5)
        );
        let mut query: Built<'_> = diesel::sql_query(sql).into_boxed();
        for reservation in updated {
            query = query
                .bind::<Text, _>(&reservation.id)
                .bind::<Integer, _>(reservation.released_quantity)
                .bind::<Integer, _>(reservation.committed_quantity)
                .bind::<Text, _>(reservation.status.as_str())
                .bind::<Timestamp, _>(now);
        }
        execute(c, query, updated.len(), "changed reservations")?;
    }
    let history = &changes.history;
    if !history.is_empty() {
        let sql = format!(
            "INSERT INTO inventory_history (id, product_id, operation_type, quantity_change, \
             order_id, created_at, metadata) VALUES {}",
            placeholders(history.len(), 7)
        );
        let mut query: Built<'_> = diesel::sql_query(sql).into_boxed();
        for entry in history {
            query = query
                .bind::<Text, _>(&entry.id)
                .bind::<Text, _>(&entry.product_id)
                .bind::<Text, _>(entry.operation.as_str())
                .bind::<Integer, _>(entry.quantity_change)
                .bind::<Nullable<Text>, _>(entry.order_id.as_deref())
                .bind::<Timestamp, _>(entry.created_at.naive_utc())
                .bind::<Text, _>(entry.metadata.to_string());
        }
        execute(c, query, history.len(), "history entries")?;
    }
    let keys = &changes.keys;
    if !keys.is_empty() {
        let sql = format!(
            "INSERT INTO idempotency_keys (request_id, method, request, response, created_at) \
             VALUES {}",
            placeholders(keys.len(), 5)
        );
        let mut query: Built<'_> = diesel::sql_query(sql).into_boxed();
        for kept in keys {
            query = query
                .bind::<Text, _>(&kept.request_id)
                .bind::<Text, _>(&kept.method)
                .bind::<Text, _>(kept.fields.to_string())
                .bind::<Text, _>(kept.response.to_string())
                .bind::<Timestamp, _>(kept.created_at.naive_utc());
        }
        execute(c, query, keys.len(), "request keys")?;
    }
    for (product, alternatives) in &changes.alternatives {
        diesel::sql_query("DELETE FROM product_alternatives WHERE product_id = ?")
            .bind::<Text, _>(product)
            .execute(c)
            .map(rows_affected)?;
        if alternatives.is_empty() {
            continue;
        }
        let sql = format!(
            "INSERT INTO product_alternatives (product_id, rank, alternative_id) VALUES {}",
            placeholders(alternatives.len(), 3)
        );
        let mut query: Built<'_> = diesel::sql_query(sql).into_boxed();
        for (rank, alternative) in alternatives.iter().enumerate() {
            query = query
                .bind::<Text, _>(product)
                .bind::<Integer, _>(i32::try_from(rank).unwrap_or(i32::MAX))
                .bind::<Text, _>(alternative);
        }
        execute(c, query, alternatives.len(), "alternatives")?;
    }
    if !events {
        return Ok(None);
    }
    write_events(c, &changes.events)
}

/// Adds `events` to the outbox after the latest one: under the write lock
/// nobody else can number events meanwhile.
fn write_events(c: &mut SqliteConnection, events: &[StockEvent]) -> StoreResult<Option<i64>> {
    if events.is_empty() {
        return Ok(None);
    }
    let Position { position: latest } = diesel::sql_query(LATEST_POSITION).get_result(c)?;
    let mut position = latest;
    for chunk in events.chunks(EVENTS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO inventory_events (position, product_id, kind, order_id, \
             quantity_change, total_quantity, reserved_quantity, version, updated_at, \
             created_at, low_stock_threshold) VALUES {}",
            placeholders(chunk.len(), 11)
        );
        let mut query: Built<'_> = diesel::sql_query(sql).into_boxed();
        for event in chunk {
            position += 1;
            let stock = &event.stock;
            query = query
                .bind::<BigInt, _>(position)
                .bind::<Text, _>(&stock.product_id)
                .bind::<Text, _>(event.kind.as_str())
                .bind::<Nullable<Text>, _>(event.order_id.as_deref())
                .bind::<Integer, _>(event.quantity_change)
                .bind::<Integer, _>(stock.total_quantity)
                .bind::<Integer, _>(stock.reserved_quantity)
                .bind::<BigInt, _>(stock.version)
                .bind::<Timestamp, _>(stock.updated_at.naive_utc())
                .bind::<Timestamp, _>(event.created_at.naive_utc())
                .bind::<Nullable<Integer>, _>(stock.low_stock_threshold);
        }
        execute(c, query, chunk.len(), "events")?;
    }
    Ok(Some(position))
}
