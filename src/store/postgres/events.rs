//! The event outbox on PostgreSQL: its writes in a unit of work, its reads
//! and its purge. Why positions come from a sequence under an advisory lock
//! is in the migration that creates the outbox.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::fixed::{Binds, Fixed, bind};
use crate::domain::port::{EventPage, StoreError, StoreResult};
use crate::domain::{PositionedEvent, StockEvent, StockLevel};

type Conn = AsyncPgConnection;

/// The advisory lock every writer of events holds from taking its positions
/// to its commit (transaction-level; the key is "inv_evts" in ASCII). Taken
/// last, after every row lock of the work, and held only for the time of the
/// commit, so it never waits in a circle with a row lock.
pub(super) const LOCK_KEY: i64 = 0x696e_765f_6576_7473;

/// The channel a transaction that added events notifies at its commit (no
/// payload: a listener reads the outbox itself).
pub const CHANNEL: &str = "inventory_events";

/// Adds a work's events to the outbox: under the lock, takes the next
/// position and moves the sequence past the last one the work needs (nobody
/// else takes positions meanwhile), then inserts the events in their order.
const INSERT: &str = "WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock($11)), \
     first AS MATERIALIZED (SELECT nextval('inventory_events_position') AS position \
      FROM locked), \
     reserved AS MATERIALIZED (SELECT setval('inventory_events_position', \
      first.position + cardinality($1::varchar[]) - 1) FROM first) \
     INSERT INTO inventory_events (position, product_id, kind, order_id, quantity_change, \
      total_quantity, reserved_quantity, version, updated_at, created_at, \
      low_stock_threshold) \
     SELECT first.position + v.n - 1, v.product_id, v.kind::inventory_event_kind, v.order_id, \
      v.change, v.total, v.reserved, v.version, v.updated_at, v.created_at, v.threshold \
     FROM first, reserved, unnest($1::varchar[], $2::text[], $3::varchar[], $4::int4[], \
      $5::int4[], $6::int4[], $7::int8[], $8::timestamptz[], $9::timestamptz[], \
      $10::int4[]) \
      WITH ORDINALITY AS v(product_id, kind, order_id, change, total, reserved, version, \
      updated_at, created_at, threshold, n)";

/// Wakes the other replicas' watchers, at commit.
pub(super) const NOTIFY: &str = "SELECT pg_notify('inventory_events', '')";

/// The insert of `events`, to send in a unit of work's pipeline.
pub(super) fn insert(events: &[StockEvent]) -> Fixed<impl Binds + Send + use<>> {
    Fixed::new(
        INSERT,
        (
            bind::<Array<Text>, _>(
                events
                    .iter()
                    .map(|e| e.stock.product_id.clone())
                    .collect::<Vec<_>>(),
            ),
            bind::<Array<Text>, _>(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>()),
            bind::<Array<Nullable<Text>>, _>(
                events
                    .iter()
                    .map(|e| e.order_id.clone())
                    .collect::<Vec<_>>(),
            ),
            bind::<Array<Integer>, _>(events.iter().map(|e| e.quantity_change).collect::<Vec<_>>()),
            bind::<Array<Integer>, _>(
                events
                    .iter()
                    .map(|e| e.stock.total_quantity)
                    .collect::<Vec<_>>(),
            ),
            bind::<Array<Integer>, _>(
                events
                    .iter()
                    .map(|e| e.stock.reserved_quantity)
                    .collect::<Vec<_>>(),
            ),
            bind::<Array<BigInt>, _>(events.iter().map(|e| e.stock.version).collect::<Vec<_>>()),
            bind::<Array<Timestamptz>, _>(
                events
                    .iter()
                    .map(|e| e.stock.updated_at)
                    .collect::<Vec<_>>(),
            ),
            bind::<Array<Timestamptz>, _>(events.iter().map(|e| e.created_at).collect::<Vec<_>>()),
            bind::<Array<Nullable<Integer>>, _>(
                events
                    .iter()
                    .map(|e| e.stock.low_stock_threshold)
                    .collect::<Vec<_>>(),
            ),
            bind::<BigInt, _>(LOCK_KEY),
        ),
    )
}

/// A row of `inventory_events` as [`SELECT`] reads it.
#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(sql_type = Text)]
    product_id: String,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Nullable<Text>)]
    order_id: Option<String>,
    #[diesel(sql_type = Integer)]
    quantity_change: i32,
    #[diesel(sql_type = Integer)]
    total_quantity: i32,
    #[diesel(sql_type = Integer)]
    reserved_quantity: i32,
    #[diesel(sql_type = BigInt)]
    version: i64,
    #[diesel(sql_type = Nullable<Integer>)]
    low_stock_threshold: Option<i32>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
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
            updated_at: row.updated_at,
        };
        crate::store::stored_event(
            row.position,
            &row.kind,
            row.order_id,
            row.quantity_change,
            stock,
            row.created_at,
        )
    }
}

/// Events after a position.
const SELECT: &str = "SELECT position, product_id, kind::text AS kind, order_id, \
     quantity_change, total_quantity, reserved_quantity, version, low_stock_threshold, \
     updated_at, created_at FROM inventory_events WHERE position > $1 ORDER BY position LIMIT $2";

/// The outbox's bounds (read after its events).
const BOUNDS: &str = "SELECT l.purged_through, \
     COALESCE((SELECT max(position) FROM inventory_events), l.purged_through) AS last_position \
     FROM inventory_event_log l WHERE l.id = 1";

#[derive(QueryableByName)]
struct Bounds {
    #[diesel(sql_type = BigInt)]
    purged_through: i64,
    #[diesel(sql_type = BigInt)]
    last_position: i64,
}

/// Up to `limit` events after `after`, then the outbox's bounds.
pub(super) async fn page(c: &mut Conn, after: i64, limit: u32) -> StoreResult<EventPage> {
    let rows: Vec<EventRow> = if limit == 0 {
        Vec::new()
    } else {
        diesel::sql_query(SELECT)
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(i64::from(limit))
            .load(c)
            .await?
    };
    let events = rows
        .into_iter()
        .map(PositionedEvent::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
    let bounds: Bounds = diesel::sql_query(BOUNDS).get_result(c).await?;
    Ok(EventPage {
        events,
        purged_through: bounds.purged_through,
        last_position: bounds.last_position,
    })
}

/// The oldest events, to find how far the purge may go.
const OLDEST: &str = "SELECT position, created_at FROM inventory_events \
     ORDER BY position LIMIT $1";

#[derive(QueryableByName)]
struct Oldest {
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

/// Forgets the events up to a position and moves the purge mark, in one
/// statement (so a reader sees both or neither).
const PURGE: &str = "WITH gone AS (DELETE FROM inventory_events WHERE position <= $1 \
      RETURNING 1), \
     marked AS (UPDATE inventory_event_log SET purged_through = GREATEST(purged_through, $1) \
      WHERE id = 1) \
     SELECT count(*) AS purged FROM gone";

#[derive(QueryableByName)]
struct Purged {
    #[diesel(sql_type = BigInt)]
    purged: i64,
}

/// Forgets the oldest events made before `before`, up to `limit`.
pub(super) async fn purge(c: &mut Conn, before: DateTime<Utc>, limit: u32) -> StoreResult<usize> {
    let oldest: Vec<Oldest> = diesel::sql_query(OLDEST)
        .bind::<BigInt, _>(i64::from(limit))
        .load(c)
        .await?;
    let Some(through) = oldest
        .iter()
        .take_while(|o| o.created_at < before)
        .last()
        .map(|o| o.position)
    else {
        return Ok(0);
    };
    let purged: Purged = diesel::sql_query(PURGE)
        .bind::<BigInt, _>(through)
        .get_result(c)
        .await?;
    Ok(usize::try_from(purged.purged).unwrap_or_default())
}
