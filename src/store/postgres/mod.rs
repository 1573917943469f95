//! The PostgreSQL store: one database shared by several replicas.
//!
//! Connections are diesel-async [`AsyncPgConnection`]s (the pure-Rust
//! tokio-postgres driver; no libpq), pooled by deadpool. Migrations are
//! applied at [`PostgresStore::open`] under an advisory lock (see
//! [`MIGRATIONS`] and [`MIGRATION_LOCK_KEY`]).
//!
//! # Transactions
//! Every write is one short `READ COMMITTED` transaction that takes row locks
//! as late as it can and holds them across as few round trips as it can:
//! - **reserve**: a conditional `UPDATE inventory ... WHERE total_quantity -
//!   reserved_quantity >= q RETURNING ...` decides availability and takes the
//!   row lock in one statement; the reservation and history `INSERT`s follow,
//!   pipelined, then `COMMIT`. A concurrent duplicate (order, product) hits the
//!   unique index; the transaction is retried once and then finds the winner.
//! - **release** and **commit**: `SELECT ... FOR UPDATE` of the reservation
//!   row, then the writes.
//! - **update**: the seed's optimistic lock. The row is read without a lock,
//!   the update planned, and the `UPDATE ... WHERE version = $read` written
//!   with its history entry (pipelined); a row that moved meanwhile updates
//!   nothing and the transaction rolls back as a conflict, to be planned
//!   again by the domain.
//! - **order reservation** (several products, all or nothing): one `SELECT
//!   ... FOR UPDATE` of the products' rows in product order, the decision,
//!   then the writes.
//! - **release of an order**: `SELECT ... FOR UPDATE` of the order's
//!   reservations, then one update per product in product order, the order
//!   every multi-product writer locks inventory rows in (no deadlock).
//! - **expiry**: `SELECT ... FOR UPDATE SKIP LOCKED` of due reservations, so
//!   several replicas' sweepers never expire the same reservation twice, then
//!   one update per product, in product order (no lock-order deadlock).
//! - A write made with a client's request key reads the key first and writes
//!   it last, in the same transaction ([`super::keys`]).
//!
//! Each store call runs on its own task: a request cancelled mid-transaction
//! (a client gone) does not leave a transaction half-way; it completes, and the
//! connection goes back to the pool clean.
//!
//! Conflicts the database reports (unique violation, serialization failure,
//! deadlock) are [`Error::Conflict`]; the reservations retry once on them
//! here, updates and keyed writes are run again by the domain.

mod migrate;
mod rows;
mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::{ConnectionError, ConnectionResult};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{
    AsyncConnection as _, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _,
};

use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;

use self::rows::{HistoryRow, ReservationRow, StockRow, StoredStatus};
use self::schema::{idempotency_keys, inventory, inventory_history, inventory_reservations};
use super::{
    CheckRecord, CommitOutcome, CommitRequest, Error, InventoryStore, Keyed, KeyedOutcome,
    NewOrderReservation, NewReservation, OrderRelease, ReleaseOrderOutcome, ReleaseOutcome,
    ReleaseRequest, ReleasedHold, RequestKey, ReserveOrderOutcome, ReserveOutcome, ReservedItem,
    Result, StockUpdate, UpdateOutcome, history, keys, order,
};
use crate::domain::{
    self, HistoryCursor, HistoryEntry, OperationType, Reservation, ReservationStatus, StockLevel,
};
use crate::telemetry::db::{DbTrace, rows_affected};

pub use self::migrate::{MIGRATION_LOCK_KEY, MIGRATIONS};

/// How to open the PostgreSQL database.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database`; the database must exist.
    pub url: String,
    /// Most pooled connections.
    pub max_connections: usize,
    /// How long a request waits for a pooled connection, and how long opening
    /// a new connection may take.
    pub connection_timeout: Duration,
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("connection_timeout", &self.connection_timeout)
            .finish()
    }
}

/// `url` with the password, if any, replaced by `***`.
pub fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    let Some(at) = url[scheme_end..authority_end]
        .rfind('@')
        .map(|i| scheme_end + i)
    else {
        return url.to_owned();
    };
    match url[scheme_end..at].find(':').map(|i| scheme_end + i) {
        Some(colon) => format!("{}:***{}", &url[..colon], &url[at..]),
        None => url.to_owned(),
    }
}

type Conn = AsyncPgConnection;

/// Opens one connection to `url`, without TLS. Unlike
/// [`AsyncPgConnection::establish`], a failure keeps its cause
/// ("error connecting to server: Connection refused (os error 111)").
pub async fn connect(url: &str) -> ConnectionResult<AsyncPgConnection> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| ConnectionError::BadConnection(with_causes(&e)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// `error`'s message followed by those of its causes.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        cause = inner.source();
    }
    message
}

/// The PostgreSQL implementation of [`InventoryStore`].
pub struct PostgresStore {
    /// Pooled connections; a store call holds one for its transaction only.
    pool: Pool<Conn>,
}

impl PostgresStore {
    /// Applies pending migrations (under the migration lock) and opens the
    /// pool. The database itself must exist.
    pub async fn open(options: PostgresOptions) -> Result<Self> {
        let applied =
            migrate::run_pending_migrations(&options.url, options.connection_timeout).await?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        let mut config = ManagerConfig::<Conn>::default();
        // No `SELECT 1` before every checkout: a connection the server closed
        // is seen as closed and dropped when it comes back, and the request
        // that met it fails as unavailable.
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(|url| Box::pin(connect(url)));
        let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(options.url, config);
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .wait_timeout(Some(options.connection_timeout))
            .create_timeout(Some(options.connection_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Internal(format!("building the connection pool: {e}")))?;
        Ok(Self { pool })
    }

    /// Runs `work` on a pooled connection, on a task of its own so that it
    /// completes even if the caller stops waiting.
    async fn run<R, F, Fut>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Object<Conn>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let task = async move {
            let waiting = Instant::now();
            let mut conn = pool.get().await?;
            let trace = DbTrace::begin("postgresql", waiting.elapsed());
            if let Some(trace) = &trace {
                conn.set_instrumentation(trace.instrumentation());
            }
            let result = match &trace {
                Some(trace) => trace.scope(work(conn)).await,
                None => work(conn).await,
            };
            drop(trace);
            result
        };
        tokio::spawn(task.in_current_span().with_current_subscriber())
            .await
            .map_err(|e| Error::Internal(format!("store task failed: {e}")))?
    }
}

#[async_trait]
impl InventoryStore for PostgresStore {
    async fn ping(&self) -> Result<()> {
        self.run(|mut c| async move { Ok(c.batch_execute("SELECT 1").await?) })
            .await
    }

    async fn stock(&self, product_id: &str) -> Result<Option<StockLevel>> {
        let product_id = product_id.to_owned();
        self.run(move |mut c| async move { load_stock(&mut c, &product_id).await })
            .await
    }

    async fn reserve(&self, request: NewReservation) -> Result<ReserveOutcome> {
        self.run(move |mut c| async move { reserve(&mut c, &request).await })
            .await
    }

    async fn reserve_order(&self, request: NewOrderReservation) -> Result<ReserveOrderOutcome> {
        self.run(move |mut c| async move { reserve_order(&mut c, &request).await })
            .await
    }

    async fn release(&self, request: ReleaseRequest) -> Result<Keyed<ReleaseOutcome>> {
        self.run(move |mut c| async move {
            c.transaction(async |c| {
                keyed(c, request.key.as_ref(), async |c| {
                    release(c, &request).await
                })
                .await
            })
            .await
        })
        .await
    }

    async fn update_stock(&self, request: StockUpdate) -> Result<Keyed<UpdateOutcome>> {
        self.run(move |mut c| async move {
            c.transaction(async |c| {
                keyed(c, request.key.as_ref(), async |c| {
                    update_stock(c, &request).await
                })
                .await
            })
            .await
        })
        .await
    }

    async fn commit(&self, request: CommitRequest) -> Result<Keyed<CommitOutcome>> {
        self.run(move |mut c| async move {
            c.transaction(async |c| {
                keyed(c, request.key.as_ref(), async |c| commit(c, &request).await).await
            })
            .await
        })
        .await
    }

    async fn release_order(&self, request: OrderRelease) -> Result<Keyed<ReleaseOrderOutcome>> {
        self.run(move |mut c| async move {
            c.transaction(async |c| {
                keyed(c, request.key.as_ref(), async |c| {
                    release_order(c, &request.order_id, request.now).await
                })
                .await
            })
            .await
        })
        .await
    }

    async fn purge_request_keys(&self, before: DateTime<Utc>, limit: u32) -> Result<usize> {
        self.run(move |mut c| async move {
            use idempotency_keys::dsl::{created_at, request_id};
            let due: Vec<String> = idempotency_keys::table
                .filter(created_at.lt(before))
                .order(created_at.asc())
                .limit(i64::from(limit))
                .select(request_id)
                .load(&mut c)
                .await?;
            if due.is_empty() {
                return Ok(0);
            }
            Ok(
                diesel::delete(idempotency_keys::table.filter(request_id.eq_any(&due)))
                    .execute(&mut c)
                    .await
                    .map(rows_affected)?,
            )
        })
        .await
    }

    async fn order_reservations(&self, order_id: &str) -> Result<Vec<Reservation>> {
        let order_id = order_id.to_owned();
        self.run(move |mut c| async move { order_reservations(&mut c, &order_id, false).await })
            .await
    }

    async fn list_stock(&self, after: Option<String>, limit: u32) -> Result<Vec<StockLevel>> {
        self.run(move |mut c| async move {
            use inventory::dsl::product_id;
            let mut query = inventory::table.select(StockRow::as_select()).into_boxed();
            if let Some(after) = after {
                query = query.filter(product_id.gt(after));
            }
            let rows = query
                .order(product_id.asc())
                .limit(i64::from(limit))
                .load(&mut c)
                .await?;
            Ok(rows.into_iter().map(StockLevel::from).collect())
        })
        .await
    }

    async fn record_check(&self, record: CheckRecord) -> Result<()> {
        self.run(move |mut c| async move {
            let row = HistoryRow::new(
                &record.product_id,
                OperationType::Check,
                0,
                None,
                record.now,
                history::check_metadata(&record),
            );
            diesel::insert_into(inventory_history::table)
                .values(&row)
                .execute(&mut c)
                .await
                .map(rows_affected)?;
            Ok(())
        })
        .await
    }

    async fn history(
        &self,
        product_id: &str,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Option<Vec<HistoryEntry>>> {
        let product_id = product_id.to_owned();
        self.run(move |c| async move { history(&c, &product_id, after, limit).await })
            .await
    }

    async fn expire_due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Reservation>> {
        self.run(move |mut c| async move {
            c.transaction(async |c| expire_due(c, now, None, limit).await)
                .await
        })
        .await
    }

    fn close(&self) {
        self.pool.close();
    }

    fn pool_status(&self) -> Option<super::PoolStatus> {
        Some(self.pool.status().into())
    }
}

/// Runs two statements of one connection pipelined (both are sent before
/// either answer is awaited; the server still runs them one after the other)
/// and waits for both answers. When one fails, the other may fail only because
/// the transaction is aborted: the error returned is the cause, so that a
/// unique violation is recognised as one whichever statement ran first.
async fn pipelined<A, B>(
    first: impl Future<Output = QueryResult<A>>,
    second: impl Future<Output = QueryResult<B>>,
) -> QueryResult<(A, B)> {
    match tokio::join!(first, second) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => Err(error),
        (Err(first), Err(second)) => Err(if is_aborted_transaction(&first) {
            second
        } else {
            first
        }),
    }
}

/// PostgreSQL's answer to a statement sent after an earlier one failed in
/// the same transaction (SQLSTATE 25P02).
fn is_aborted_transaction(error: &diesel::result::Error) -> bool {
    matches!(error, diesel::result::Error::DatabaseError(_, info)
        if info.message().starts_with("current transaction is aborted"))
}

async fn load_stock(c: &mut Conn, product_id: &str) -> Result<Option<StockLevel>> {
    let row = inventory::table
        .find(product_id)
        .select(StockRow::as_select())
        .first(c)
        .await
        .optional()?;
    Ok(row.map(StockLevel::from))
}

async fn existing_stock(c: &mut Conn, product_id: &str) -> Result<StockLevel> {
    load_stock(c, product_id).await?.ok_or_else(|| {
        Error::Internal(format!(
            "product {product_id:?} has reservations but no stock row"
        ))
    })
}

/// The order's reservation of the product; with `lock`, locked until the
/// transaction ends.
async fn find_reservation(
    c: &mut Conn,
    order_id: &str,
    product_id: &str,
    lock: bool,
) -> Result<Option<Reservation>> {
    let query = inventory_reservations::table
        .filter(inventory_reservations::order_id.eq(order_id))
        .filter(inventory_reservations::product_id.eq(product_id))
        .select(ReservationRow::as_select());
    let row = if lock {
        query.for_update().first(c).await.optional()?
    } else {
        query.first(c).await.optional()?
    };
    Ok(row.map(Reservation::from))
}

/// Moves `delta` units into (positive) or out of (negative) the reserved
/// quantity. The `WHERE` keeps `0 <= reserved <= total` however many requests
/// race: a statement that waited for another transaction's row lock
/// re-evaluates it against the row that transaction committed. `None` means
/// no row qualified.
async fn shift_reserved(
    c: &mut Conn,
    product_id: &str,
    delta: i32,
    now: DateTime<Utc>,
) -> Result<Option<StockLevel>> {
    use inventory::dsl::{product_id as pid, reserved_quantity, total_quantity, updated_at};
    let row = diesel::update(inventory::table)
        .filter(pid.eq(product_id))
        .filter((total_quantity - reserved_quantity).ge(delta))
        .filter(reserved_quantity.ge(-delta))
        .set((
            reserved_quantity.eq(reserved_quantity + delta),
            updated_at.eq(now),
        ))
        .returning(StockRow::as_returning())
        .get_result(c)
        .await
        .optional()?;
    rows_affected(usize::from(row.is_some()));
    Ok(row.map(StockLevel::from))
}

/// [`try_reserve`] in a transaction, run a second time if it lost a race: a
/// concurrent reserve of the same order and product that committed first
/// (unique violation), or a transient conflict. The second run sees the
/// winner's reservation and answers [`ReserveOutcome::Existing`].
async fn reserve(c: &mut Conn, request: &NewReservation) -> Result<ReserveOutcome> {
    match c.transaction(async |c| try_reserve(c, request).await).await {
        Err(Error::Conflict(reason)) => {
            tracing::debug!(%reason, "reserve lost a race; retrying once");
            c.transaction(async |c| try_reserve(c, request).await).await
        }
        outcome => outcome,
    }
}

async fn try_reserve(c: &mut Conn, request: &NewReservation) -> Result<ReserveOutcome> {
    if let Some(reservation) =
        find_reservation(c, &request.order_id, &request.product_id, false).await?
    {
        let stock = existing_stock(c, &request.product_id).await?;
        return Ok(ReserveOutcome::Existing { reservation, stock });
    }
    // No `SELECT ... FOR UPDATE` first: that would hold the row lock across a
    // read, a decision in this process and a write. The conditional UPDATE
    // decides availability and takes the lock in one statement, so the lock is
    // held only for the two INSERTs (sent together) and the COMMIT; on a hot
    // product that is what bounds throughput.
    let mut held = shift_reserved(c, &request.product_id, request.quantity, request.now).await?;
    // A stale hold must not block a buyer: before refusing, give back the
    // product's reservations that have already expired, in this transaction.
    if held.is_none()
        && !expire_due(c, request.now, Some(&request.product_id), u32::MAX)
            .await?
            .is_empty()
    {
        held = shift_reserved(c, &request.product_id, request.quantity, request.now).await?;
    }
    let Some(stock) = held else {
        return Ok(match load_stock(c, &request.product_id).await? {
            None => ReserveOutcome::ProductNotFound,
            Some(stock) => ReserveOutcome::InsufficientStock { stock },
        });
    };
    let (row, history) = new_hold(
        &request.id,
        &request.product_id,
        &request.order_id,
        request.quantity,
        request.expires_at,
        request.now,
        &stock,
    );
    let shared: &Conn = c;
    let (reservations, entries) = pipelined(
        diesel::insert_into(inventory_reservations::table)
            .values(&row)
            .execute(&mut { shared }),
        diesel::insert_into(inventory_history::table)
            .values(&history)
            .execute(&mut { shared }),
    )
    .await?;
    // In the order the statements finished.
    rows_affected(reservations);
    rows_affected(entries);
    Ok(ReserveOutcome::Created {
        reservation: Reservation::from(row),
        stock,
    })
}

/// The rows of a new reservation whose stock is already held (`stock` is the
/// product's stock afterwards): the reservation and its history entry.
fn new_hold(
    id: &str,
    product_id: &str,
    order_id: &str,
    quantity: i32,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
    stock: &StockLevel,
) -> (ReservationRow, HistoryRow) {
    let history = HistoryRow::new(
        product_id,
        OperationType::Reserve,
        -quantity,
        Some(order_id),
        now,
        history::reserve_metadata(
            id,
            quantity,
            expires_at,
            stock.reserved_quantity,
            stock.available_quantity(),
        ),
    );
    let row = ReservationRow {
        id: id.to_owned(),
        product_id: product_id.to_owned(),
        order_id: order_id.to_owned(),
        quantity,
        released_quantity: 0,
        committed_quantity: 0,
        status: StoredStatus(ReservationStatus::Active),
        expires_at,
        created_at: now,
        updated_at: now,
    };
    (row, history)
}

async fn release(c: &mut Conn, request: &ReleaseRequest) -> Result<ReleaseOutcome> {
    let Some(mut reservation) =
        find_reservation(c, &request.order_id, &request.product_id, true).await?
    else {
        return Ok(ReleaseOutcome::NotFound);
    };
    if reservation.status != ReservationStatus::Active {
        let stock = existing_stock(c, &request.product_id).await?;
        return Ok(ReleaseOutcome::NotActive { reservation, stock });
    }
    let held = reservation.held_quantity();
    let amount = request.quantity.unwrap_or(held);
    if amount > held {
        return Ok(ReleaseOutcome::ExceedsHeld { reservation });
    }
    reservation.released_quantity += amount;
    // Nothing left to hold: a remainder released after a partial commit
    // resolves the reservation as released.
    if reservation.held_quantity() == 0 {
        reservation.status = ReservationStatus::Released;
    }
    let shared: &Conn = c;
    let (updated, stock) = pipelined(
        diesel::update(inventory_reservations::table.find(&reservation.id))
            .set((
                inventory_reservations::released_quantity.eq(reservation.released_quantity),
                inventory_reservations::status.eq(StoredStatus(reservation.status)),
                inventory_reservations::updated_at.eq(request.now),
            ))
            .execute(&mut { shared }),
        diesel::update(inventory::table)
            .filter(inventory::product_id.eq(&request.product_id))
            .filter(inventory::reserved_quantity.ge(amount))
            .set((
                inventory::reserved_quantity.eq(inventory::reserved_quantity - amount),
                inventory::updated_at.eq(request.now),
            ))
            .returning(StockRow::as_returning())
            .get_result(&mut { shared }),
    )
    .await
    .map_err(|e| match e {
        diesel::result::Error::NotFound => Error::Internal(format!(
            "reserved quantity of {:?} is below its active reservation {}",
            request.product_id, reservation.id
        )),
        other => Error::from(other),
    })?;
    rows_affected(updated);
    rows_affected(1);
    let stock = StockLevel::from(stock);
    let history = HistoryRow::new(
        &reservation.product_id,
        OperationType::Release,
        amount,
        Some(&reservation.order_id),
        request.now,
        history::release_metadata(
            &reservation.id,
            amount,
            reservation.held_quantity(),
            stock.reserved_quantity,
            stock.available_quantity(),
        ),
    );
    diesel::insert_into(inventory_history::table)
        .values(&history)
        .execute(c)
        .await
        .map(rows_affected)?;
    Ok(ReleaseOutcome::Released {
        reservation,
        released: amount,
        stock,
    })
}

/// Locks an order's reservation, then moves what is committed out of both
/// the stock on hand and the reserved quantity (available is unchanged).
async fn commit(c: &mut Conn, request: &CommitRequest) -> Result<CommitOutcome> {
    let Some(mut reservation) =
        find_reservation(c, &request.order_id, &request.product_id, true).await?
    else {
        return Ok(CommitOutcome::NotFound);
    };
    match reservation.status {
        ReservationStatus::Active => {}
        ReservationStatus::Committed => {
            let stock = existing_stock(c, &request.product_id).await?;
            return Ok(CommitOutcome::AlreadyCommitted { reservation, stock });
        }
        ReservationStatus::Released | ReservationStatus::Expired => {
            return Ok(CommitOutcome::NotActive { reservation });
        }
    }
    let held = reservation.held_quantity();
    let amount = request.quantity.unwrap_or(held);
    if amount > held {
        return Ok(CommitOutcome::ExceedsHeld { reservation });
    }
    reservation.committed_quantity += amount;
    if reservation.held_quantity() == 0 {
        reservation.status = ReservationStatus::Committed;
    }
    let shared: &Conn = c;
    let (updated, stock) = pipelined(
        diesel::update(inventory_reservations::table.find(&reservation.id))
            .set((
                inventory_reservations::committed_quantity.eq(reservation.committed_quantity),
                inventory_reservations::status.eq(StoredStatus(reservation.status)),
                inventory_reservations::updated_at.eq(request.now),
            ))
            .execute(&mut { shared }),
        diesel::update(inventory::table)
            .filter(inventory::product_id.eq(&request.product_id))
            .filter(inventory::reserved_quantity.ge(amount))
            .set((
                inventory::total_quantity.eq(inventory::total_quantity - amount),
                inventory::reserved_quantity.eq(inventory::reserved_quantity - amount),
                inventory::updated_at.eq(request.now),
                inventory::version.eq(inventory::version + 1),
            ))
            .returning(StockRow::as_returning())
            .get_result(&mut { shared }),
    )
    .await
    .map_err(|e| match e {
        diesel::result::Error::NotFound => Error::Internal(format!(
            "reserved quantity of {:?} is below its active reservation {}",
            request.product_id, reservation.id
        )),
        other => Error::from(other),
    })?;
    rows_affected(updated);
    rows_affected(1);
    let stock = StockLevel::from(stock);
    let history = HistoryRow::new(
        &reservation.product_id,
        OperationType::Commit,
        0,
        Some(&reservation.order_id),
        request.now,
        history::commit_metadata(
            &reservation.id,
            amount,
            reservation.held_quantity(),
            stock.total_quantity,
            stock.reserved_quantity,
            stock.available_quantity(),
        ),
    );
    diesel::insert_into(inventory_history::table)
        .values(&history)
        .execute(c)
        .await
        .map(rows_affected)?;
    Ok(CommitOutcome::Committed {
        reservation,
        committed: amount,
        stock,
    })
}

/// Every reservation of an order by product id; with `lock`, locked until
/// the transaction ends.
async fn order_reservations(c: &mut Conn, order_id: &str, lock: bool) -> Result<Vec<Reservation>> {
    let query = inventory_reservations::table
        .filter(inventory_reservations::order_id.eq(order_id))
        .order(inventory_reservations::product_id.asc())
        .select(ReservationRow::as_select());
    let rows = if lock {
        query.for_update().load(c).await?
    } else {
        query.load(c).await?
    };
    Ok(rows.into_iter().map(Reservation::from).collect())
}

/// Locks the order's reservations, then releases the active ones product by
/// product, in product order: inventory rows are locked in the same order as
/// the sweeper locks them, so the two cannot deadlock.
async fn release_order(
    c: &mut Conn,
    order_id: &str,
    now: DateTime<Utc>,
) -> Result<ReleaseOrderOutcome> {
    let reservations = order_reservations(c, order_id, true).await?;
    if reservations.is_empty() {
        return Ok(ReleaseOrderOutcome::NotFound);
    }
    let mut released = Vec::new();
    let mut history = Vec::new();
    for mut reservation in reservations {
        if reservation.status != ReservationStatus::Active {
            continue;
        }
        let amount = reservation.held_quantity();
        reservation.released_quantity += amount;
        reservation.status = ReservationStatus::Released;
        diesel::update(inventory_reservations::table.find(&reservation.id))
            .set((
                inventory_reservations::released_quantity.eq(reservation.released_quantity),
                inventory_reservations::status.eq(StoredStatus(reservation.status)),
                inventory_reservations::updated_at.eq(now),
            ))
            .execute(c)
            .await
            .map(rows_affected)?;
        let stock = shift_reserved(c, &reservation.product_id, -amount, now)
            .await?
            .ok_or_else(|| {
                Error::Internal(format!(
                    "reserved quantity of {:?} is below its active reservation {}",
                    reservation.product_id, reservation.id
                ))
            })?;
        history.push(HistoryRow::new(
            &reservation.product_id,
            OperationType::Release,
            amount,
            Some(&reservation.order_id),
            now,
            history::release_metadata(
                &reservation.id,
                amount,
                0,
                stock.reserved_quantity,
                stock.available_quantity(),
            ),
        ));
        released.push(ReleasedHold {
            reservation,
            released: amount,
            stock,
        });
    }
    if !history.is_empty() {
        diesel::insert_into(inventory_history::table)
            .values(&history)
            .execute(c)
            .await
            .map(rows_affected)?;
    }
    Ok(ReleaseOrderOutcome::Released(released))
}

/// The seed's optimistic lock: the plan is made against the row as read, with
/// no lock, and written only if the row's version is still the one read (and
/// the reserved quantity still fits under the new total). A row that changed
/// meanwhile, or a concurrent creation of the same product (unique
/// violation), is an [`Error::Conflict`]: the transaction rolls back and the
/// domain plans the update again, a bounded number of times.
async fn update_stock(c: &mut Conn, request: &StockUpdate) -> Result<UpdateOutcome> {
    use inventory::dsl::{
        created_at, product_id as pid, reserved_quantity, total_quantity, updated_at, version,
    };
    let current = load_stock(c, &request.product_id).await?;
    let current_version = current.as_ref().map_or(0, |stock| stock.version);
    if let Some(expected) = request.expected_version
        && expected != current_version
    {
        return Ok(UpdateOutcome::VersionMismatch {
            current: current_version,
        });
    }
    let plan = match domain::plan_update(&request.product_id, current.as_ref(), request.change) {
        Ok(plan) => plan,
        Err(rejection) => return Ok(UpdateOutcome::Rejected(rejection)),
    };
    let new_version = current_version + 1;
    let history = HistoryRow::new(
        &request.product_id,
        OperationType::Update,
        plan.delta(),
        None,
        request.now,
        history::update_metadata(request.change, &plan, new_version),
    );
    let shared: &Conn = c;
    let write_history = diesel::insert_into(inventory_history::table)
        .values(&history)
        .execute(&mut { shared });
    let written = if plan.creates_product {
        let insert = diesel::insert_into(inventory::table)
            .values((
                pid.eq(&request.product_id),
                total_quantity.eq(plan.new_total),
                reserved_quantity.eq(0),
                created_at.eq(request.now),
                updated_at.eq(request.now),
                version.eq(new_version),
            ))
            .returning(StockRow::as_returning())
            .get_result(&mut { shared });
        pipelined(insert, write_history).await
    } else {
        let update = diesel::update(inventory::table)
            .filter(pid.eq(&request.product_id))
            .filter(version.eq(current_version))
            .filter(reserved_quantity.le(plan.new_total))
            .set((
                total_quantity.eq(plan.new_total),
                updated_at.eq(request.now),
                version.eq(new_version),
            ))
            .returning(StockRow::as_returning())
            .get_result(&mut { shared });
        pipelined(update, write_history).await
    };
    let (row, entries) = written.map_err(|e| match e {
        // The history INSERT was sent with the UPDATE; the transaction's
        // rollback takes it back.
        diesel::result::Error::NotFound => Error::Conflict(format!(
            "the stock of {:?} changed after version {current_version} was read",
            request.product_id
        )),
        other => Error::from(other),
    })?;
    rows_affected(1);
    rows_affected(entries);
    Ok(UpdateOutcome::Applied {
        plan,
        stock: StockLevel::from(row),
    })
}

/// Runs `write` under the client's request key, if any (see [`keys`]). The
/// key is read first and written last, in the caller's transaction.
async fn keyed<T: KeyedOutcome>(
    c: &mut Conn,
    key: Option<&RequestKey>,
    write: impl AsyncFnOnce(&mut Conn) -> Result<T>,
) -> Result<Keyed<T>> {
    use idempotency_keys::dsl::{created_at, method, request, request_id, response};
    let Some(key) = key else {
        return write(c).await.map(Keyed::Fresh);
    };
    let kept: Option<(String, serde_json::Value, serde_json::Value)> = idempotency_keys::table
        .find(&key.request_id)
        .select((method, request, response))
        .first(c)
        .await
        .optional()?;
    if let Some((first_method, first_request, first_response)) = kept {
        return keys::found(key, &first_method, first_request, first_response);
    }
    let outcome = write(c).await?;
    if outcome.succeeded() {
        // A concurrent first use of the same key that committed first makes
        // this a unique violation: this transaction rolls back, and its
        // retry replays the winner's result.
        diesel::insert_into(idempotency_keys::table)
            .values((
                request_id.eq(&key.request_id),
                method.eq(key.method),
                request.eq(&key.fields),
                response.eq(keys::remembered(&outcome)?),
                created_at.eq(key.now),
            ))
            .execute(c)
            .await
            .map(rows_affected)?;
    }
    Ok(Keyed::Fresh(outcome))
}

/// [`try_reserve_order`] in a transaction, run a second time if it lost a
/// race (a concurrent reserve of the same order and product committed first).
async fn reserve_order(c: &mut Conn, request: &NewOrderReservation) -> Result<ReserveOrderOutcome> {
    match c
        .transaction(async |c| try_reserve_order(c, request).await)
        .await
    {
        Err(Error::Conflict(reason)) => {
            tracing::debug!(%reason, "order reservation lost a race; retrying once");
            c.transaction(async |c| try_reserve_order(c, request).await)
                .await
        }
        outcome => outcome,
    }
}

/// All or nothing over several rows, so unlike a single reservation it reads
/// before it writes: one `SELECT ... FOR UPDATE` locks every product's row in
/// product id order (the order every multi-product writer uses: no
/// deadlock), the decision is made on what it returned, and the writes follow
/// only if every product qualifies. The locks are held for that one extra
/// round trip.
async fn try_reserve_order(
    c: &mut Conn,
    request: &NewOrderReservation,
) -> Result<ReserveOrderOutcome> {
    let existing = order_reservations(c, &request.order_id, false).await?;
    let split = match order::split(&request.items, existing) {
        Ok(split) => split,
        Err(conflicts) => return Ok(ReserveOrderOutcome::Conflicting(conflicts)),
    };
    let products: Vec<&str> = request
        .items
        .iter()
        .map(|i| i.product_id.as_str())
        .collect();
    let mut stocks: BTreeMap<String, StockLevel> = inventory::table
        .filter(inventory::product_id.eq_any(&products))
        .order(inventory::product_id.asc())
        .select(StockRow::as_select())
        .for_update()
        .load(c)
        .await?
        .into_iter()
        .map(|row| (row.product_id.clone(), StockLevel::from(row)))
        .collect();
    // A stale hold must not block a buyer: before refusing, give back the
    // short products' reservations that have already expired.
    if matches!(
        order::refusal(&split.needed, &stocks),
        Some(ReserveOrderOutcome::Insufficient(_))
    ) {
        for short in order::shortages(&split.needed, &stocks) {
            if !expire_due(c, request.now, Some(&short.product_id), u32::MAX)
                .await?
                .is_empty()
            {
                let stock = existing_stock(c, &short.product_id).await?;
                stocks.insert(short.product_id, stock);
            }
        }
    }
    if let Some(refusal) = order::refusal(&split.needed, &stocks) {
        return Ok(refusal);
    }
    let mut reserved = Vec::with_capacity(request.items.len());
    for reservation in split.kept {
        let stock = stocks
            .get(&reservation.product_id)
            .cloned()
            .ok_or_else(|| {
                Error::Internal(format!(
                    "product {:?} has reservations but no stock row",
                    reservation.product_id
                ))
            })?;
        reserved.push(ReservedItem {
            reservation,
            stock,
            created: false,
        });
    }
    let mut rows = Vec::with_capacity(split.needed.len());
    let mut entries = Vec::with_capacity(split.needed.len());
    for item in split.needed {
        // The row is locked and was seen to qualify; the WHERE guards anyway.
        let stock = shift_reserved(c, &item.product_id, item.quantity, request.now)
            .await?
            .ok_or_else(|| {
                Error::Internal(format!(
                    "the stock of {:?} changed under its row lock",
                    item.product_id
                ))
            })?;
        let (row, entry) = new_hold(
            &item.id,
            &item.product_id,
            &request.order_id,
            item.quantity,
            request.expires_at,
            request.now,
            &stock,
        );
        entries.push(entry);
        reserved.push(ReservedItem {
            reservation: Reservation::from(row.clone()),
            stock,
            created: true,
        });
        rows.push(row);
    }
    if !rows.is_empty() {
        let shared: &Conn = c;
        let (inserted, written) = pipelined(
            diesel::insert_into(inventory_reservations::table)
                .values(&rows)
                .execute(&mut { shared }),
            diesel::insert_into(inventory_history::table)
                .values(&entries)
                .execute(&mut { shared }),
        )
        .await?;
        rows_affected(inserted);
        rows_affected(written);
    }
    reserved.sort_by(|a, b| a.reservation.product_id.cmp(&b.reservation.product_id));
    Ok(ReserveOrderOutcome::Reserved(reserved))
}

/// One round trip: whether the product exists and its page of history are
/// asked together (pipelined).
async fn history(
    c: &Conn,
    product_id: &str,
    after: Option<HistoryCursor>,
    limit: u32,
) -> Result<Option<Vec<HistoryEntry>>> {
    use inventory_history::dsl::{created_at, id, product_id as pid};
    let mut query = inventory_history::table
        .filter(pid.eq(product_id))
        .select(HistoryRow::as_select())
        .into_boxed();
    if let Some(cursor) = after {
        query = query.filter(
            created_at
                .lt(cursor.created_at)
                .or(created_at.eq(cursor.created_at).and(id.lt(cursor.id))),
        );
    }
    let (exists, rows) = pipelined(
        diesel::select(diesel::dsl::exists(inventory::table.find(product_id)))
            .get_result::<bool>(&mut { c }),
        query
            .order((created_at.desc(), id.desc()))
            .limit(i64::from(limit))
            .load::<HistoryRow>(&mut { c }),
    )
    .await?;
    Ok(exists.then(|| rows.into_iter().map(HistoryEntry::from).collect()))
}

/// Expires up to `limit` due reservations, of one product or of all.
async fn expire_due(
    c: &mut Conn,
    now: DateTime<Utc>,
    product: Option<&str>,
    limit: u32,
) -> Result<Vec<Reservation>> {
    use inventory_reservations::dsl::{expires_at, id, product_id, status, updated_at};
    // One statement for both cases: `all OR product_id = $p`, both bound.
    let of_product = product_id
        .eq(product.unwrap_or_default().to_owned())
        .or(product.is_none().into_sql::<diesel::sql_types::Bool>());
    // SKIP LOCKED: reservations another sweeper (or a release) has locked are
    // left to it, so no two replicas expire the same one.
    let mut due: Vec<Reservation> = inventory_reservations::table
        .filter(status.eq(StoredStatus(ReservationStatus::Active)))
        .filter(expires_at.le(now))
        .filter(of_product)
        .order(expires_at.asc())
        .limit(i64::from(limit))
        .select(ReservationRow::as_select())
        .for_update()
        .skip_locked()
        .load(c)
        .await?
        .into_iter()
        .map(Reservation::from)
        .collect();
    if due.is_empty() {
        return Ok(due);
    }
    // Inventory rows are then locked in product order, whatever order the
    // reservations expire in: two sweepers cannot deadlock on them.
    due.sort_by(|a, b| {
        (a.product_id.as_str(), a.expires_at).cmp(&(b.product_id.as_str(), b.expires_at))
    });
    let ids: Vec<&str> = due.iter().map(|r| r.id.as_str()).collect();
    diesel::update(inventory_reservations::table.filter(id.eq_any(&ids)))
        .set((
            status.eq(StoredStatus(ReservationStatus::Expired)),
            updated_at.eq(now),
        ))
        .execute(c)
        .await
        .map(rows_affected)?;

    let mut history = Vec::with_capacity(due.len());
    for group in due.chunk_by(|a, b| a.product_id == b.product_id) {
        let product = &group[0].product_id;
        let held: i64 = group.iter().map(|r| i64::from(r.held_quantity())).sum();
        let held = i32::try_from(held).map_err(|_| {
            Error::Internal(format!("reservations of {product:?} hold more than i32"))
        })?;
        let stock = shift_reserved(c, product, -held, now)
            .await?
            .ok_or_else(|| {
                Error::Internal(format!(
                    "reserved quantity of {product:?} is below its active reservations"
                ))
            })?;
        // The history reads as if each reservation were released in turn,
        // as the SQLite store writes it.
        let mut reserved = stock.reserved_quantity + held;
        for reservation in group {
            let released = reservation.held_quantity();
            reserved -= released;
            history.push(HistoryRow::new(
                &reservation.product_id,
                OperationType::Release,
                released,
                Some(&reservation.order_id),
                now,
                history::expire_metadata(
                    &reservation.id,
                    released,
                    reservation.expires_at,
                    reserved,
                    stock.total_quantity - reserved,
                ),
            ));
        }
    }
    diesel::insert_into(inventory_history::table)
        .values(&history)
        .execute(c)
        .await
        .map(rows_affected)?;
    for reservation in &mut due {
        reservation.status = ReservationStatus::Expired;
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/inventory",
                "postgres://app:***@db:5432/inventory",
            ),
            (
                "postgresql://app@db/inventory",
                "postgresql://app@db/inventory",
            ),
            (
                "postgres://db/inventory?user=a",
                "postgres://db/inventory?user=a",
            ),
            ("postgres://a:b@c@db/x", "postgres://a:***@db/x"),
        ] {
            assert_eq!(redact_password(url), shown);
        }
    }
}
