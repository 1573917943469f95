//! The reads and writes of a unit of work on PostgreSQL, inside one `READ
//! COMMITTED` transaction.
//!
//! Each round of reads the planner asks for is sent as one pipeline (every
//! statement is sent before the first answer is awaited; the server still
//! runs them one after the other, in the order of [`Needs`]): reservations
//! `FOR UPDATE`, stock rows `FOR UPDATE` in product id order, due
//! reservations `FOR UPDATE SKIP LOCKED` (rows another transaction holds are
//! left to it, so this never waits and two sweepers never expire the same
//! reservation), then request keys. A statement that waited for a row lock
//! returns the row as the other transaction committed it, so the planner
//! always decides on current rows. The writes go out as a second pipeline:
//! each stock row once, multi-row inserts for reservations, history and keys.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Failures;
use super::rows::{HistoryRow, KeyRow, ReservationRow, StockRow, StoredStatus};
use super::schema::{idempotency_keys, inventory, inventory_history, inventory_reservations};
use crate::domain::port::{Changes, KeptRequest, Needs, Rows, StoreError, StoreResult};
use crate::domain::{Reservation, ReservationStatus, StockLevel};
use crate::telemetry::db::rows_affected;

type Conn = AsyncPgConnection;

/// The reservations of several `(order, product)` pairs, locked in that
/// order (one statement, whatever the number of pairs).
const HOLDS: &str = "SELECT r.id, r.product_id, r.order_id, r.quantity, r.released_quantity, \
     r.committed_quantity, r.status, r.expires_at, r.created_at, r.updated_at \
     FROM inventory_reservations r \
     JOIN unnest($1::varchar[], $2::varchar[]) AS k(order_id, product_id) \
     ON r.order_id = k.order_id AND r.product_id = k.product_id \
     ORDER BY r.order_id, r.product_id FOR UPDATE OF r";

/// Reads and locks the rows of `needs`, with `now` the work's time.
pub(super) async fn load(c: &mut Conn, needs: &Needs, now: DateTime<Utc>) -> StoreResult<Rows> {
    use inventory_reservations::dsl as r;
    let shared: &Conn = c;
    let orders: Vec<&str> = needs.orders.iter().map(String::as_str).collect();
    let (hold_orders, hold_products): (Vec<&str>, Vec<&str>) = needs
        .holds
        .iter()
        .map(|(o, p)| (o.as_str(), p.as_str()))
        .unzip();
    let active_due = || {
        inventory_reservations::table
            .filter(r::status.eq(StoredStatus(ReservationStatus::Active)))
            .filter(r::expires_at.le(now))
            .order(r::expires_at.asc())
            .select(ReservationRow::as_select())
            .for_update()
            .skip_locked()
    };
    let of_orders = async {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        inventory_reservations::table
            .filter(r::order_id.eq_any(&orders))
            .order((r::order_id.asc(), r::product_id.asc()))
            .select(ReservationRow::as_select())
            .for_update()
            .load::<ReservationRow>(&mut { shared })
            .await
    };
    let holds = async {
        if hold_orders.is_empty() {
            return Ok(Vec::new());
        }
        diesel::sql_query(HOLDS)
            .bind::<Array<Text>, _>(&hold_orders)
            .bind::<Array<Text>, _>(&hold_products)
            .load::<ReservationRow>(&mut { shared })
            .await
    };
    let stocks = async {
        if needs.stocks.is_empty() {
            return Ok(Vec::new());
        }
        inventory::table
            .filter(inventory::product_id.eq_any(&needs.stocks))
            .order(inventory::product_id.asc())
            .select(StockRow::as_select())
            .for_update()
            .load::<StockRow>(&mut { shared })
            .await
    };
    let due_of = async {
        if needs.due_of.is_empty() {
            return Ok(Vec::new());
        }
        active_due()
            .filter(r::product_id.eq_any(&needs.due_of))
            .load::<ReservationRow>(&mut { shared })
            .await
    };
    let due_any = async {
        let Some(limit) = needs.due_any else {
            return Ok(Vec::new());
        };
        active_due()
            .limit(i64::from(limit))
            .load::<ReservationRow>(&mut { shared })
            .await
    };
    let keys = async {
        if needs.keys.is_empty() {
            return Ok(Vec::new());
        }
        idempotency_keys::table
            .filter(idempotency_keys::request_id.eq_any(&needs.keys))
            .select(KeyRow::as_select())
            .load::<KeyRow>(&mut { shared })
            .await
    };
    let (of_orders, holds, stocks, due_of, due_any, keys) =
        tokio::join!(of_orders, holds, stocks, due_of, due_any, keys);
    let mut failures = Failures::default();
    let reservations: Vec<Reservation> = [of_orders, holds, due_of, due_any]
        .into_iter()
        .flat_map(|rows| failures.take(rows))
        .map(Reservation::from)
        .collect();
    let stocks = failures.take(stocks);
    let keys = failures.take(keys);
    failures.into_result()?;
    Ok(Rows {
        reservations,
        stocks: stocks.into_iter().map(StockLevel::from).collect(),
        keys: keys.into_iter().map(KeptRequest::from).collect(),
    })
}

/// A statement of the write pipeline, with the number of rows it must
/// change (`None`: any).
type Write<'a> = (
    Pin<Box<dyn Future<Output = QueryResult<usize>> + Send + 'a>>,
    Option<usize>,
);

/// Writes what the planner decided, in one pipeline: new products first (the
/// reservations that follow may name them), then changed stock rows in
/// product id order, reservations, history and keys.
pub(super) async fn write(c: &mut Conn, changes: &Changes) -> StoreResult<()> {
    use inventory::dsl as i;
    use inventory_reservations::dsl as r;
    let shared: &Conn = c;
    let now = changes.now;
    let mut writes: Vec<Write<'_>> = Vec::new();
    let created: Vec<_> = changes
        .stocks
        .iter()
        .filter(|w| w.read_version.is_none())
        .map(|w| {
            (
                i::product_id.eq(&w.stock.product_id),
                i::total_quantity.eq(w.stock.total_quantity),
                i::reserved_quantity.eq(w.stock.reserved_quantity),
                i::created_at.eq(now),
                i::updated_at.eq(w.stock.updated_at),
                i::version.eq(w.stock.version),
            )
        })
        .collect();
    if !created.is_empty() {
        let count = created.len();
        writes.push((
            Box::pin(
                diesel::insert_into(inventory::table)
                    .values(created)
                    .execute(&mut { shared }),
            ),
            Some(count),
        ));
    }
    for write in &changes.stocks {
        let Some(read) = write.read_version else {
            continue;
        };
        let stock = &write.stock;
        writes.push((
            Box::pin(
                diesel::update(inventory::table)
                    .filter(i::product_id.eq(&stock.product_id))
                    .filter(i::version.eq(read))
                    .set((
                        i::total_quantity.eq(stock.total_quantity),
                        i::reserved_quantity.eq(stock.reserved_quantity),
                        i::updated_at.eq(stock.updated_at),
                        i::version.eq(stock.version),
                    ))
                    .execute(&mut { shared }),
            ),
            Some(1),
        ));
    }
    if !changes.new_reservations.is_empty() {
        let rows: Vec<ReservationRow> = changes
            .new_reservations
            .iter()
            .map(|reservation| ReservationRow::new(reservation, now))
            .collect();
        writes.push((
            Box::pin(
                diesel::insert_into(inventory_reservations::table)
                    .values(rows)
                    .execute(&mut { shared }),
            ),
            None,
        ));
    }
    for reservation in &changes.reservations {
        writes.push((
            Box::pin(
                diesel::update(inventory_reservations::table.find(&reservation.id))
                    .set((
                        r::released_quantity.eq(reservation.released_quantity),
                        r::committed_quantity.eq(reservation.committed_quantity),
                        r::status.eq(StoredStatus(reservation.status)),
                        r::updated_at.eq(now),
                    ))
                    .execute(&mut { shared }),
            ),
            Some(1),
        ));
    }
    if !changes.history.is_empty() {
        let rows: Vec<HistoryRow> = changes.history.iter().map(HistoryRow::from).collect();
        writes.push((
            Box::pin(
                diesel::insert_into(inventory_history::table)
                    .values(rows)
                    .execute(&mut { shared }),
            ),
            None,
        ));
    }
    if !changes.keys.is_empty() {
        let rows: Vec<KeyRow> = changes.keys.iter().map(KeyRow::from).collect();
        writes.push((
            Box::pin(
                diesel::insert_into(idempotency_keys::table)
                    .values(rows)
                    .execute(&mut { shared }),
            ),
            None,
        ));
    }
    let (statements, expected): (Vec<_>, Vec<_>) = writes.into_iter().unzip();
    let results = futures_util::future::join_all(statements).await;
    let mut failures = Failures::default();
    let mut unexpected = None;
    for (result, expected) in results.into_iter().zip(expected) {
        let written = failures.take(result);
        rows_affected(written);
        if expected.is_some_and(|n| n != written) {
            unexpected.get_or_insert(StoreError::Internal(
                "a row the work locked changed under its lock".to_owned(),
            ));
        }
    }
    failures.into_result()?;
    unexpected.map_or(Ok(()), Err)
}
