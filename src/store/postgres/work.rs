//! A unit of work on PostgreSQL: one short transaction in two round trips.
//!
//! 1. `BEGIN` and the first round of reads go out as one pipeline (every
//!    statement is sent before the first answer is awaited; the server still
//!    runs them one after the other, in the order of [`Needs`]):
//!    reservations `FOR UPDATE`, stock rows `FOR UPDATE` in product id order,
//!    due reservations `FOR UPDATE SKIP LOCKED` (rows another transaction
//!    holds are left to it, so this never waits and two sweepers never
//!    expire the same reservation), then request keys. A statement that
//!    waited for a row lock returns the row as the other transaction
//!    committed it, so the planner always decides on current rows. Further
//!    rounds, when the planner needs them, are pipelines of their own.
//! 2. The writes and `COMMIT` go out as a second pipeline. Each kind of write
//!    is one statement whatever the number of rows (`unnest` of arrays, so it
//!    is prepared once): the stock rows, written at the version they were
//!    read at; new reservations; changed reservations; history; request
//!    keys; last, the events (see `events.rs`), which take the outbox's lock
//!    until the commit. When a write fails, the server refuses the statements after it
//!    and turns the `COMMIT` into a rollback.
//!
//! The transaction is begun and ended here rather than by diesel's
//! transaction manager, which would spend a round trip on each of `BEGIN`
//! and `COMMIT`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::Failures;
use super::fixed::{Fixed, bind};
use super::rows::{KeyRow, ReservationRow, StockRow, StoredStatus};
use super::schema::{idempotency_keys, inventory, inventory_reservations};
use crate::domain::port::{Changes, KeptRequest, Needs, Rows, StoreError, StoreResult};
use crate::domain::{Reservation, ReservationStatus, StockLevel};
use crate::telemetry::db::rows_affected;

type Conn = AsyncPgConnection;

/// A connection in the middle of a unit of work.
pub(super) struct Session<'c> {
    /// The connection.
    pub conn: &'c mut Conn,
    /// The statement that begins the transaction, until it is sent with the
    /// first round of reads.
    pub begin: Option<&'static str>,
}

/// The reservations of several `(order, product)` pairs, locked in that
/// order (one statement, whatever the number of pairs).
const HOLDS: &str = "SELECT r.id, r.product_id, r.order_id, r.quantity, r.released_quantity, \
     r.committed_quantity, r.status, r.expires_at, r.created_at, r.updated_at \
     FROM inventory_reservations r \
     JOIN unnest($1::varchar[], $2::varchar[]) AS k(order_id, product_id) \
     ON r.order_id = k.order_id AND r.product_id = k.product_id \
     ORDER BY r.order_id, r.product_id FOR UPDATE OF r";

/// Tells the other replicas of stock rows as this transaction leaves them
/// (one notification per row: a payload stays far below PostgreSQL's 8,000
/// bytes).
const NOTIFY: &str = "SELECT pg_notify('inventory_stock', p) FROM unnest($1::text[]) AS p";

/// New products.
const INSERT_STOCK: &str = "INSERT INTO inventory \
     (product_id, total_quantity, reserved_quantity, version, created_at, updated_at, \
      low_stock_threshold) \
     SELECT * FROM unnest($1::varchar[], $2::int4[], $3::int4[], $4::int8[], \
     $5::timestamptz[], $6::timestamptz[], $7::int4[])";

/// Changed stock rows, each only at the version it was read at. A row that
/// moved under its lock (a bug) fails the statement, and so the transaction
/// (the `COMMIT` sent after it rolls back) rather than commit the others:
/// the cast of a sentence to a boolean is how plain SQL raises an error.
const UPDATE_STOCK: &str = "UPDATE inventory AS i SET total_quantity = v.total, \
     reserved_quantity = v.reserved, version = v.version, updated_at = v.updated_at, \
     low_stock_threshold = v.threshold \
     FROM unnest($1::varchar[], $2::int4[], $3::int4[], $4::int8[], $5::int8[], \
     $6::timestamptz[], $7::int4[]) \
      AS v(product_id, total, reserved, version, read_version, updated_at, threshold) \
     WHERE i.product_id = v.product_id AND CASE WHEN i.version = v.read_version THEN true \
      ELSE CAST('the stock of ' || i.product_id || ' moved from version ' || v.read_version \
       || ' to ' || i.version || ' under its lock' AS boolean) END";

/// New reservations.
const INSERT_RESERVATIONS: &str = "INSERT INTO inventory_reservations \
     (id, product_id, order_id, quantity, released_quantity, committed_quantity, status, \
      expires_at, created_at, updated_at) \
     SELECT v.id, v.product_id, v.order_id, v.quantity, v.released, v.committed, \
      v.status::reservation_status, v.expires_at, v.created_at, $10 \
     FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::int4[], $5::int4[], \
      $6::int4[], $7::text[], $8::timestamptz[], $9::timestamptz[]) \
      AS v(id, product_id, order_id, quantity, released, committed, status, expires_at, \
      created_at)";

/// Changed reservations (never deleted, so each is found).
const UPDATE_RESERVATIONS: &str = "UPDATE inventory_reservations AS r SET \
     released_quantity = v.released, committed_quantity = v.committed, \
     status = v.status::reservation_status, updated_at = $5 \
     FROM unnest($1::varchar[], $2::int4[], $3::int4[], $4::text[]) \
      AS v(id, released, committed, status) \
     WHERE r.id = v.id";

/// History entries.
const INSERT_HISTORY: &str = "INSERT INTO inventory_history \
     (id, product_id, operation_type, quantity_change, order_id, created_at, metadata) \
     SELECT v.id, v.product_id, v.operation::inventory_operation, v.change, v.order_id, \
      v.created_at, v.metadata::jsonb \
     FROM unnest($1::varchar[], $2::varchar[], $3::text[], $4::int4[], $5::varchar[], \
      $6::timestamptz[], $7::text[]) \
      AS v(id, product_id, operation, change, order_id, created_at, metadata)";

/// The alternatives of products that are replaced.
const DELETE_ALTERNATIVES: &str =
    "DELETE FROM product_alternatives WHERE product_id = ANY($1::varchar[])";

/// Products' new alternatives, each with its rank.
const INSERT_ALTERNATIVES: &str = "INSERT INTO product_alternatives \
     (product_id, rank, alternative_id) \
     SELECT * FROM unnest($1::varchar[], $2::int4[], $3::varchar[])";

/// Kept request keys.
const INSERT_KEYS: &str = "INSERT INTO idempotency_keys \
     (request_id, method, request, response, created_at) \
     SELECT v.request_id, v.method, v.request::jsonb, v.response::jsonb, v.created_at \
     FROM unnest($1::varchar[], $2::varchar[], $3::text[], $4::text[], $5::timestamptz[]) \
      AS v(request_id, method, request, response, created_at)";

/// Reads and locks the rows of `needs`, with `now` the work's time; the
/// first round also begins the transaction.
pub(super) async fn load(
    session: &mut Session<'_>,
    needs: &Needs,
    now: DateTime<Utc>,
) -> StoreResult<Rows> {
    use inventory_reservations::dsl as r;
    let begin_with = session.begin.take();
    let shared: &Conn = session.conn;
    let begin = async {
        match begin_with {
            Some(statement) => Fixed::new(statement, ())
                .execute(&mut { shared })
                .await
                .map(drop),
            None => Ok(()),
        }
    };
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
        Fixed::new(
            HOLDS,
            (
                bind::<Array<Text>, _>(&hold_orders),
                bind::<Array<Text>, _>(&hold_products),
            ),
        )
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
    let (begun, of_orders, holds, stocks, due_of, due_any, keys) =
        tokio::join!(begin, of_orders, holds, stocks, due_of, due_any, keys);
    let mut failures = Failures::default();
    failures.take(begun);
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

/// Writes what the planner decided and commits, in one pipeline.
pub(super) async fn write_and_commit(
    c: &mut Conn,
    changes: &Changes,
    notify: bool,
    events: bool,
) -> StoreResult<()> {
    let shared: &Conn = c;
    let now = changes.now;
    let mut statements = Vec::new();
    let (created, changed): (Vec<_>, Vec<_>) = changes
        .stocks
        .iter()
        .partition(|w| w.read_version.is_none());
    if !created.is_empty() {
        let query = Fixed::new(
            INSERT_STOCK,
            (
                bind::<Array<Text>, _>(
                    created
                        .iter()
                        .map(|w| w.stock.product_id.clone())
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Integer>, _>(
                    created
                        .iter()
                        .map(|w| w.stock.total_quantity)
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Integer>, _>(
                    created
                        .iter()
                        .map(|w| w.stock.reserved_quantity)
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<BigInt>, _>(
                    created.iter().map(|w| w.stock.version).collect::<Vec<_>>(),
                ),
                bind::<Array<Timestamptz>, _>(created.iter().map(|_| now).collect::<Vec<_>>()),
                bind::<Array<Timestamptz>, _>(
                    created
                        .iter()
                        .map(|w| w.stock.updated_at)
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Nullable<Integer>>, _>(
                    created
                        .iter()
                        .map(|w| w.stock.low_stock_threshold)
                        .collect::<Vec<_>>(),
                ),
            ),
        );
        statements.push(Statement::new(
            query.execute(&mut { shared }),
            Some(created.len()),
        ));
    }
    if !changed.is_empty() {
        let query = Fixed::new(
            UPDATE_STOCK,
            (
                bind::<Array<Text>, _>(
                    changed
                        .iter()
                        .map(|w| w.stock.product_id.clone())
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Integer>, _>(
                    changed
                        .iter()
                        .map(|w| w.stock.total_quantity)
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Integer>, _>(
                    changed
                        .iter()
                        .map(|w| w.stock.reserved_quantity)
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<BigInt>, _>(
                    changed.iter().map(|w| w.stock.version).collect::<Vec<_>>(),
                ),
                bind::<Array<BigInt>, _>(
                    changed
                        .iter()
                        .map(|w| w.read_version.unwrap_or_default())
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Timestamptz>, _>(
                    changed
                        .iter()
                        .map(|w| w.stock.updated_at)
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Nullable<Integer>>, _>(
                    changed
                        .iter()
                        .map(|w| w.stock.low_stock_threshold)
                        .collect::<Vec<_>>(),
                ),
            ),
        );
        statements.push(Statement::new(
            query.execute(&mut { shared }),
            Some(changed.len()),
        ));
    }
    let new = &changes.new_reservations;
    if !new.is_empty() {
        let query = Fixed::new(
            INSERT_RESERVATIONS,
            (
                bind::<Array<Text>, _>(new.iter().map(|r| r.id.clone()).collect::<Vec<_>>()),
                bind::<Array<Text>, _>(
                    new.iter().map(|r| r.product_id.clone()).collect::<Vec<_>>(),
                ),
                bind::<Array<Text>, _>(new.iter().map(|r| r.order_id.clone()).collect::<Vec<_>>()),
                bind::<Array<Integer>, _>(new.iter().map(|r| r.quantity).collect::<Vec<_>>()),
                bind::<Array<Integer>, _>(
                    new.iter().map(|r| r.released_quantity).collect::<Vec<_>>(),
                ),
                bind::<Array<Integer>, _>(
                    new.iter().map(|r| r.committed_quantity).collect::<Vec<_>>(),
                ),
                bind::<Array<Text>, _>(new.iter().map(|r| r.status.as_str()).collect::<Vec<_>>()),
                bind::<Array<Timestamptz>, _>(new.iter().map(|r| r.expires_at).collect::<Vec<_>>()),
                bind::<Array<Timestamptz>, _>(new.iter().map(|r| r.created_at).collect::<Vec<_>>()),
                bind::<Timestamptz, _>(now),
            ),
        );
        statements.push(Statement::new(
            query.execute(&mut { shared }),
            Some(new.len()),
        ));
    }
    let changed = &changes.reservations;
    if !changed.is_empty() {
        let query = Fixed::new(
            UPDATE_RESERVATIONS,
            (
                bind::<Array<Text>, _>(changed.iter().map(|r| r.id.clone()).collect::<Vec<_>>()),
                bind::<Array<Integer>, _>(
                    changed
                        .iter()
                        .map(|r| r.released_quantity)
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Integer>, _>(
                    changed
                        .iter()
                        .map(|r| r.committed_quantity)
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Text>, _>(
                    changed
                        .iter()
                        .map(|r| r.status.as_str())
                        .collect::<Vec<_>>(),
                ),
                bind::<Timestamptz, _>(now),
            ),
        );
        statements.push(Statement::new(
            query.execute(&mut { shared }),
            Some(changed.len()),
        ));
    }
    let history = &changes.history;
    if !history.is_empty() {
        let query = Fixed::new(
            INSERT_HISTORY,
            (
                bind::<Array<Text>, _>(history.iter().map(|e| e.id.clone()).collect::<Vec<_>>()),
                bind::<Array<Text>, _>(
                    history
                        .iter()
                        .map(|e| e.product_id.clone())
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Text>, _>(
                    history
                        .iter()
                        .map(|e| e.operation.as_str())
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Integer>, _>(
                    history
                        .iter()
                        .map(|e| e.quantity_change)
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Nullable<Text>>, _>(
                    history
                        .iter()
                        .map(|e| e.order_id.clone())
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Timestamptz>, _>(
                    history.iter().map(|e| e.created_at).collect::<Vec<_>>(),
                ),
                bind::<Array<Text>, _>(
                    history
                        .iter()
                        .map(|e| e.metadata.to_string())
                        .collect::<Vec<_>>(),
                ),
            ),
        );
        statements.push(Statement::new(
            query.execute(&mut { shared }),
            Some(history.len()),
        ));
    }
    let keys = &changes.keys;
    if !keys.is_empty() {
        let query = Fixed::new(
            INSERT_KEYS,
            (
                bind::<Array<Text>, _>(
                    keys.iter()
                        .map(|k| k.request_id.clone())
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Text>, _>(keys.iter().map(|k| k.method.clone()).collect::<Vec<_>>()),
                bind::<Array<Text>, _>(
                    keys.iter()
                        .map(|k| k.fields.to_string())
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Text>, _>(
                    keys.iter()
                        .map(|k| k.response.to_string())
                        .collect::<Vec<_>>(),
                ),
                bind::<Array<Timestamptz>, _>(
                    keys.iter().map(|k| k.created_at).collect::<Vec<_>>(),
                ),
            ),
        );
        statements.push(Statement::new(
            query.execute(&mut { shared }),
            Some(keys.len()),
        ));
    }
    if notify && !changes.stocks.is_empty() {
        // Delivered at commit, and only if the transaction commits.
        let query = Fixed::new(
            NOTIFY,
            (bind::<Array<Text>, _>(
                changes
                    .stocks
                    .iter()
                    .map(|w| super::listen::payload(&w.stock))
                    .collect::<Vec<_>>(),
            ),),
        );
        statements.push(Statement::new(query.execute(&mut { shared }), None));
    }
    if !changes.alternatives.is_empty() {
        let products: Vec<String> = changes
            .alternatives
            .iter()
            .map(|(p, _)| p.clone())
            .collect();
        let rows: Vec<(String, i32, String)> = changes
            .alternatives
            .iter()
            .flat_map(|(product, alternatives)| {
                alternatives
                    .iter()
                    .enumerate()
                    .map(move |(rank, alternative)| {
                        (
                            product.clone(),
                            i32::try_from(rank).unwrap_or(i32::MAX),
                            alternative.clone(),
                        )
                    })
            })
            .collect();
        statements.push(Statement::new(
            Fixed::new(DELETE_ALTERNATIVES, (bind::<Array<Text>, _>(products),))
                .execute(&mut { shared }),
            None,
        ));
        if !rows.is_empty() {
            let count = rows.len();
            let query = Fixed::new(
                INSERT_ALTERNATIVES,
                (
                    bind::<Array<Text>, _>(rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()),
                    bind::<Array<Integer>, _>(rows.iter().map(|r| r.1).collect::<Vec<_>>()),
                    bind::<Array<Text>, _>(rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>()),
                ),
            );
            statements.push(Statement::new(query.execute(&mut { shared }), Some(count)));
        }
    }
    if events && !changes.events.is_empty() {
        // Last before the commit: the outbox's lock is held from here to the
        // commit only.
        statements.push(Statement::new(
            super::events::insert(&changes.events).execute(&mut { shared }),
            Some(changes.events.len()),
        ));
        statements.push(Statement::new(
            Fixed::new(super::events::NOTIFY, ()).execute(&mut { shared }),
            None,
        ));
    }
    let commit = Fixed::new("COMMIT", ()).execute(&mut { shared });
    let (results, committed) = tokio::join!(
        futures_util::future::join_all(statements.iter_mut().map(|s| &mut s.future)),
        commit
    );
    let mut failures = Failures::default();
    let mut unexpected = None;
    for (result, statement) in results.into_iter().zip(&statements) {
        let written = failures.take(result);
        rows_affected(written);
        if statement.rows.is_some_and(|n| n != written) {
            unexpected.get_or_insert(StoreError::Internal(format!(
                "a write changed {written} rows instead of {}",
                statement.rows.unwrap_or_default()
            )));
        }
    }
    // After a failed write the server rolled the transaction back at the
    // COMMIT; the error to report is the write's.
    failures.into_result()?;
    if let Some(unexpected) = unexpected {
        return Err(unexpected);
    }
    committed.map(drop).map_err(StoreError::from)
}

/// One write of the pipeline, with the number of rows it must change.
struct Statement<'a> {
    future: std::pin::Pin<Box<dyn std::future::Future<Output = QueryResult<usize>> + Send + 'a>>,
    rows: Option<usize>,
}

impl<'a> Statement<'a> {
    fn new(
        future: impl std::future::Future<Output = QueryResult<usize>> + Send + 'a,
        rows: Option<usize>,
    ) -> Self {
        Self {
            future: Box::pin(future),
            rows,
        }
    }
}
