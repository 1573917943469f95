//! The SQLite store: the embedded default, one file, no setup.
//!
//! Connections are diesel `SqliteConnection`s behind diesel-async's
//! [`SyncConnectionWrapper`], pooled by deadpool. Each store operation runs as
//! one closure: a write on the blocking thread pool (one hop per operation,
//! not per statement), a read on the calling thread ([`StoreThreads`]).
//! Writes use `BEGIN IMMEDIATE`, so a transaction takes SQLite's
//! single write lock before it reads: concurrent writers queue on
//! `busy_timeout` instead of failing with a lock upgrade deadlock, and what a
//! transaction read cannot change before it writes.
//!
//! Every connection runs in WAL mode (readers never block the writer) with
//! foreign keys on.

mod rows;
mod schema;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection as _;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_async::AsyncConnection as _;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::{SpawnBlocking, SyncConnectionWrapper};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness as _, embed_migrations};
use serde::Deserialize;

use self::rows::{HistoryRow, ReservationRow, StockRow};
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

/// The SQLite migrations, compiled into the binary and applied at start.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

type Conn = SyncConnectionWrapper<SqliteConnection, StoreThreads>;

thread_local! {
    /// Set while [`SqliteStore::read`] hands work to its connection: the work
    /// then runs at once on the calling thread.
    static RUN_INLINE: Cell<bool> = const { Cell::new(false) };
}

/// Where a connection's work runs: on Tokio's blocking pool, except reads
/// ([`SqliteStore::read`]), which run on the calling task's thread. A read in
/// WAL mode never waits for a lock and takes microseconds, less than the two
/// thread switches of a hop to the pool and back; a write may wait for the
/// write lock (`busy_timeout`) or an fsync and must not hold up a worker.
pub struct StoreThreads;

impl SpawnBlocking for StoreThreads {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send + 'a>>
    where
        R: Send + 'static,
    {
        if RUN_INLINE.get() {
            let result = task();
            return Box::pin(std::future::ready(Ok(result)));
        }
        let handle = tokio::task::spawn_blocking(task);
        Box::pin(async move { handle.await.map_err(BoxError::from) })
    }

    fn get_runtime() -> Self {
        Self
    }
}

/// The error type of [`SpawnBlocking`].
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// SQLite's `synchronous` setting in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync on every commit: an acknowledged write survives power loss.
    Full,
    /// fsync at checkpoints: about four times the write throughput; survives a
    /// process crash, may lose the last commits on power loss.
    Normal,
}

impl Synchronous {
    fn pragma_value(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// How to open the SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file; its directory is created if missing.
    pub path: PathBuf,
    /// Most pooled connections.
    pub max_connections: usize,
    /// How long a request waits for a pooled connection.
    pub connection_timeout: Duration,
    /// How long a writer waits for the write lock before failing as busy.
    pub busy_timeout: Duration,
    /// Durability of commits.
    pub synchronous: Synchronous,
}

impl SqliteOptions {
    fn pragmas(&self) -> String {
        // busy_timeout first: switching to WAL needs a lock, and a connection
        // opened while another writes must wait for it rather than fail.
        format!(
            "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
            self.busy_timeout.as_millis(),
            self.synchronous.pragma_value()
        )
    }
}

/// The SQLite implementation of [`InventoryStore`].
pub struct SqliteStore {
    /// Pooled connections; SQLite allows one writer at a time, the rest read.
    pool: Pool<Conn>,
}

impl SqliteStore {
    /// Creates the file and its directory if needed, applies pending
    /// migrations and opens the pool.
    pub async fn open(options: SqliteOptions) -> Result<Self> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Unavailable(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let url = path_to_url(&options.path)?;
        let pragmas = options.pragmas();

        let migrate_url = url.clone();
        let migrate_pragmas = pragmas.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut conn = SqliteConnection::establish(&migrate_url)?;
            conn.batch_execute(&migrate_pragmas)?;
            conn.run_pending_migrations(MIGRATIONS)
                .map_err(|e| Error::Internal(format!("applying migrations: {e}")))?;
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("migration task failed: {e}")))??;

        let mut config = ManagerConfig::<Conn>::default();
        config.custom_setup = Box::new(move |url| {
            let pragmas = pragmas.clone();
            Box::pin(async move {
                let mut conn = Conn::establish(url).await?;
                conn.spawn_blocking(move |c| c.batch_execute(&pragmas))
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            })
        });
        let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .wait_timeout(Some(options.connection_timeout))
            .create_timeout(Some(options.connection_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Internal(format!("building the connection pool: {e}")))?;
        Ok(Self { pool })
    }

    /// Runs `work` on a pooled connection on the blocking thread pool,
    /// traced (transaction and statement spans, statement latency) when a
    /// server's telemetry is current.
    async fn run<R, F>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R> + Send + 'static,
    {
        self.run_on(false, work).await
    }

    /// Like [`Self::run`] for a read, which runs on the caller's thread (see
    /// [`StoreThreads`]). Never for work that writes or takes a lock.
    async fn read<R, F>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R> + Send + 'static,
    {
        self.run_on(true, work).await
    }

    async fn run_on<R, F>(&self, inline: bool, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R> + Send + 'static,
    {
        let waiting = Instant::now();
        let mut conn = self.pool.get().await?;
        let trace = DbTrace::begin("sqlite", waiting.elapsed());
        let previous = RUN_INLINE.replace(inline);
        let done = conn.spawn_blocking(move |c| {
            if let Some(trace) = &trace {
                c.set_instrumentation(trace.instrumentation());
            }
            let rows_target = trace.as_ref().map(DbTrace::enter_thread);
            let result = work(c);
            drop(rows_target);
            drop(trace);
            Ok(result)
        });
        RUN_INLINE.set(previous);
        done.await?
    }

    /// The connection pool's state.
    fn status(&self) -> super::PoolStatus {
        self.pool.status().into()
    }
}

fn path_to_url(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Internal(format!("database path {} is not UTF-8", path.display())))
}

#[async_trait]
impl InventoryStore for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.read(|c| Ok(c.batch_execute("SELECT 1")?)).await
    }

    async fn stock(&self, product_id: &str) -> Result<Option<StockLevel>> {
        let product_id = product_id.to_owned();
        self.read(move |c| load_stock(c, &product_id)).await
    }

    async fn reserve(&self, request: NewReservation) -> Result<ReserveOutcome> {
        self.run(move |c| c.immediate_transaction(|c| reserve(c, request)))
            .await
    }

    async fn reserve_order(&self, request: NewOrderReservation) -> Result<ReserveOrderOutcome> {
        self.run(move |c| c.immediate_transaction(|c| reserve_order(c, &request)))
            .await
    }

    async fn release(&self, request: ReleaseRequest) -> Result<Keyed<ReleaseOutcome>> {
        self.run(move |c| {
            c.immediate_transaction(|c| keyed(c, request.key.as_ref(), |c| release(c, &request)))
        })
        .await
    }

    async fn update_stock(&self, request: StockUpdate) -> Result<Keyed<UpdateOutcome>> {
        self.run(move |c| {
            c.immediate_transaction(|c| {
                keyed(c, request.key.as_ref(), |c| update_stock(c, &request))
            })
        })
        .await
    }

    async fn commit(&self, request: CommitRequest) -> Result<Keyed<CommitOutcome>> {
        self.run(move |c| {
            c.immediate_transaction(|c| keyed(c, request.key.as_ref(), |c| commit(c, &request)))
        })
        .await
    }

    async fn release_order(&self, request: OrderRelease) -> Result<Keyed<ReleaseOrderOutcome>> {
        self.run(move |c| {
            c.immediate_transaction(|c| {
                keyed(c, request.key.as_ref(), |c| {
                    release_order(c, &request.order_id, request.now)
                })
            })
        })
        .await
    }

    async fn purge_request_keys(&self, before: DateTime<Utc>, limit: u32) -> Result<usize> {
        self.run(move |c| {
            use idempotency_keys::dsl::{created_at, request_id};
            let due: Vec<String> = idempotency_keys::table
                .filter(created_at.lt(before.naive_utc()))
                .order(created_at.asc())
                .limit(i64::from(limit))
                .select(request_id)
                .load(c)?;
            if due.is_empty() {
                return Ok(0);
            }
            Ok(
                diesel::delete(idempotency_keys::table.filter(request_id.eq_any(&due)))
                    .execute(c)
                    .map(rows_affected)?,
            )
        })
        .await
    }

    async fn order_reservations(&self, order_id: &str) -> Result<Vec<Reservation>> {
        let order_id = order_id.to_owned();
        self.read(move |c| order_reservations(c, &order_id)).await
    }

    async fn list_stock(&self, after: Option<String>, limit: u32) -> Result<Vec<StockLevel>> {
        self.read(move |c| {
            use inventory::dsl::product_id;
            let mut query = inventory::table.select(StockRow::as_select()).into_boxed();
            if let Some(after) = after {
                query = query.filter(product_id.gt(after));
            }
            let rows = query
                .order(product_id.asc())
                .limit(i64::from(limit))
                .load(c)?;
            Ok(rows.into_iter().map(StockLevel::from).collect())
        })
        .await
    }

    async fn record_check(&self, record: CheckRecord) -> Result<()> {
        self.run(move |c| {
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
                .execute(c)
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
        self.read(move |c| history(c, &product_id, after, limit))
            .await
    }

    async fn expire_due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Reservation>> {
        self.run(move |c| c.immediate_transaction(|c| expire_due(c, now, None, limit)))
            .await
    }

    fn close(&self) {
        self.pool.close();
    }

    fn pool_status(&self) -> Option<super::PoolStatus> {
        Some(self.status())
    }
}

fn load_stock(c: &mut SqliteConnection, product_id: &str) -> Result<Option<StockLevel>> {
    let row = inventory::table
        .find(product_id)
        .select(StockRow::as_select())
        .first(c)
        .optional()?;
    Ok(row.map(StockLevel::from))
}

fn existing_stock(c: &mut SqliteConnection, product_id: &str) -> Result<StockLevel> {
    load_stock(c, product_id)?.ok_or_else(|| {
        Error::Internal(format!(
            "product {product_id:?} has reservations but no stock row"
        ))
    })
}

fn find_reservation(
    c: &mut SqliteConnection,
    order_id: &str,
    product_id: &str,
) -> Result<Option<Reservation>> {
    inventory_reservations::table
        .filter(inventory_reservations::order_id.eq(order_id))
        .filter(inventory_reservations::product_id.eq(product_id))
        .select(ReservationRow::as_select())
        .first(c)
        .optional()?
        .map(Reservation::try_from)
        .transpose()
}

/// Moves `delta` units into (positive) or out of (negative) the reserved
/// quantity. The `WHERE` keeps `0 <= reserved <= total` however many requests
/// race; `None` means no row qualified.
fn shift_reserved(
    c: &mut SqliteConnection,
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
            updated_at.eq(now.naive_utc()),
        ))
        .returning(StockRow::as_returning())
        .get_result(c)
        .optional()?;
    rows_affected(usize::from(row.is_some()));
    Ok(row.map(StockLevel::from))
}

fn reserve(c: &mut SqliteConnection, request: NewReservation) -> Result<ReserveOutcome> {
    if let Some(reservation) = find_reservation(c, &request.order_id, &request.product_id)? {
        let stock = existing_stock(c, &request.product_id)?;
        return Ok(ReserveOutcome::Existing { reservation, stock });
    }
    let mut held = shift_reserved(c, &request.product_id, request.quantity, request.now)?;
    // A stale hold must not block a buyer: before refusing, give back the
    // product's reservations that have already expired, in this transaction.
    if held.is_none()
        && !expire_due(c, request.now, Some(&request.product_id), u32::MAX)?.is_empty()
    {
        held = shift_reserved(c, &request.product_id, request.quantity, request.now)?;
    }
    let Some(stock) = held else {
        return Ok(match load_stock(c, &request.product_id)? {
            None => ReserveOutcome::ProductNotFound,
            Some(stock) => ReserveOutcome::InsufficientStock { stock },
        });
    };
    let reservation = insert_reservation(
        c,
        ReservationRow {
            id: request.id,
            product_id: request.product_id,
            order_id: request.order_id,
            quantity: request.quantity,
            released_quantity: 0,
            committed_quantity: 0,
            status: ReservationStatus::Active.as_str().to_owned(),
            expires_at: request.expires_at.naive_utc(),
            created_at: request.now.naive_utc(),
        },
        &stock,
        request.now,
    )?;
    Ok(ReserveOutcome::Created { reservation, stock })
}

/// Inserts a new reservation whose stock is already held (`stock` is the
/// product's stock afterwards) and its history entry.
fn insert_reservation(
    c: &mut SqliteConnection,
    row: ReservationRow,
    stock: &StockLevel,
    now: DateTime<Utc>,
) -> Result<Reservation> {
    diesel::insert_into(inventory_reservations::table)
        .values(&row)
        .execute(c)
        .map(rows_affected)?;
    let reservation = Reservation::try_from(row)?;
    let history = HistoryRow::new(
        &reservation.product_id,
        OperationType::Reserve,
        -reservation.quantity,
        Some(&reservation.order_id),
        now,
        history::reserve_metadata(
            &reservation.id,
            reservation.quantity,
            reservation.expires_at,
            stock.reserved_quantity,
            stock.available_quantity(),
        ),
    );
    diesel::insert_into(inventory_history::table)
        .values(&history)
        .execute(c)
        .map(rows_affected)?;
    Ok(reservation)
}

/// All or nothing, under SQLite's write lock (taken by `BEGIN IMMEDIATE`
/// before the first read): every product is read, and written only if all of
/// them qualify.
fn reserve_order(
    c: &mut SqliteConnection,
    request: &NewOrderReservation,
) -> Result<ReserveOrderOutcome> {
    let existing = order_reservations(c, &request.order_id)?;
    let split = match order::split(&request.items, existing) {
        Ok(split) => split,
        Err(conflicts) => return Ok(ReserveOrderOutcome::Conflicting(conflicts)),
    };
    let mut stocks = BTreeMap::new();
    for item in &request.items {
        if let Some(stock) = load_stock(c, &item.product_id)? {
            stocks.insert(item.product_id.clone(), stock);
        }
    }
    // A stale hold must not block a buyer: before refusing, give back the
    // short products' reservations that have already expired.
    if matches!(
        order::refusal(&split.needed, &stocks),
        Some(ReserveOrderOutcome::Insufficient(_))
    ) {
        for short in order::shortages(&split.needed, &stocks) {
            if !expire_due(c, request.now, Some(&short.product_id), u32::MAX)?.is_empty() {
                let stock = existing_stock(c, &short.product_id)?;
                stocks.insert(short.product_id, stock);
            }
        }
    }
    if let Some(refusal) = order::refusal(&split.needed, &stocks) {
        return Ok(refusal);
    }
    let mut reserved: Vec<ReservedItem> = split
        .kept
        .into_iter()
        .map(|reservation| {
            let stock = existing_stock(c, &reservation.product_id)?;
            Ok(ReservedItem {
                reservation,
                stock,
                created: false,
            })
        })
        .collect::<Result<_>>()?;
    for item in split.needed {
        let stock =
            shift_reserved(c, &item.product_id, item.quantity, request.now)?.ok_or_else(|| {
                Error::Internal(format!(
                    "the stock of {:?} changed under the write lock",
                    item.product_id
                ))
            })?;
        let reservation = insert_reservation(
            c,
            ReservationRow {
                id: item.id.clone(),
                product_id: item.product_id.clone(),
                order_id: request.order_id.clone(),
                quantity: item.quantity,
                released_quantity: 0,
                committed_quantity: 0,
                status: ReservationStatus::Active.as_str().to_owned(),
                expires_at: request.expires_at.naive_utc(),
                created_at: request.now.naive_utc(),
            },
            &stock,
            request.now,
        )?;
        reserved.push(ReservedItem {
            reservation,
            stock,
            created: true,
        });
    }
    reserved.sort_by(|a, b| a.reservation.product_id.cmp(&b.reservation.product_id));
    Ok(ReserveOrderOutcome::Reserved(reserved))
}

fn release(c: &mut SqliteConnection, request: &ReleaseRequest) -> Result<ReleaseOutcome> {
    let Some(mut reservation) = find_reservation(c, &request.order_id, &request.product_id)? else {
        return Ok(ReleaseOutcome::NotFound);
    };
    if reservation.status != ReservationStatus::Active {
        let stock = existing_stock(c, &request.product_id)?;
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
    diesel::update(inventory_reservations::table.find(&reservation.id))
        .set((
            inventory_reservations::released_quantity.eq(reservation.released_quantity),
            inventory_reservations::status.eq(reservation.status.as_str()),
            inventory_reservations::updated_at.eq(request.now.naive_utc()),
        ))
        .execute(c)
        .map(rows_affected)?;
    let stock = shift_reserved(c, &request.product_id, -amount, request.now)?.ok_or_else(|| {
        Error::Internal(format!(
            "reserved quantity of {:?} is below its active reservation {}",
            request.product_id, reservation.id
        ))
    })?;
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
        .map(rows_affected)?;
    Ok(ReleaseOutcome::Released {
        reservation,
        released: amount,
        stock,
    })
}

/// Moves `amount` units out of both the stock on hand and the reserved
/// quantity: committed stock leaves with its hold, so available is unchanged.
fn take_committed(
    c: &mut SqliteConnection,
    product_id: &str,
    amount: i32,
    now: DateTime<Utc>,
) -> Result<StockLevel> {
    use inventory::dsl::{
        product_id as pid, reserved_quantity, total_quantity, updated_at, version,
    };
    let row = diesel::update(inventory::table)
        .filter(pid.eq(product_id))
        .filter(reserved_quantity.ge(amount))
        .set((
            total_quantity.eq(total_quantity - amount),
            reserved_quantity.eq(reserved_quantity - amount),
            updated_at.eq(now.naive_utc()),
            version.eq(version + 1),
        ))
        .returning(StockRow::as_returning())
        .get_result(c)
        .optional()?;
    rows_affected(usize::from(row.is_some()));
    row.map(StockLevel::from).ok_or_else(|| {
        Error::Internal(format!(
            "reserved quantity of {product_id:?} is below an active reservation"
        ))
    })
}

fn commit(c: &mut SqliteConnection, request: &CommitRequest) -> Result<CommitOutcome> {
    let Some(mut reservation) = find_reservation(c, &request.order_id, &request.product_id)? else {
        return Ok(CommitOutcome::NotFound);
    };
    match reservation.status {
        ReservationStatus::Active => {}
        ReservationStatus::Committed => {
            let stock = existing_stock(c, &request.product_id)?;
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
    diesel::update(inventory_reservations::table.find(&reservation.id))
        .set((
            inventory_reservations::committed_quantity.eq(reservation.committed_quantity),
            inventory_reservations::status.eq(reservation.status.as_str()),
            inventory_reservations::updated_at.eq(request.now.naive_utc()),
        ))
        .execute(c)
        .map(rows_affected)?;
    let stock = take_committed(c, &request.product_id, amount, request.now)?;
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
        .map(rows_affected)?;
    Ok(CommitOutcome::Committed {
        reservation,
        committed: amount,
        stock,
    })
}

fn order_reservations(c: &mut SqliteConnection, order_id: &str) -> Result<Vec<Reservation>> {
    inventory_reservations::table
        .filter(inventory_reservations::order_id.eq(order_id))
        .order(inventory_reservations::product_id.asc())
        .select(ReservationRow::as_select())
        .load(c)?
        .into_iter()
        .map(Reservation::try_from)
        .collect()
}

fn release_order(
    c: &mut SqliteConnection,
    order_id: &str,
    now: DateTime<Utc>,
) -> Result<ReleaseOrderOutcome> {
    let reservations = order_reservations(c, order_id)?;
    if reservations.is_empty() {
        return Ok(ReleaseOrderOutcome::NotFound);
    }
    let mut released = Vec::new();
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
                inventory_reservations::status.eq(reservation.status.as_str()),
                inventory_reservations::updated_at.eq(now.naive_utc()),
            ))
            .execute(c)
            .map(rows_affected)?;
        let stock = shift_reserved(c, &reservation.product_id, -amount, now)?.ok_or_else(|| {
            Error::Internal(format!(
                "reserved quantity of {:?} is below its active reservation {}",
                reservation.product_id, reservation.id
            ))
        })?;
        let history = HistoryRow::new(
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
        );
        diesel::insert_into(inventory_history::table)
            .values(&history)
            .execute(c)
            .map(rows_affected)?;
        released.push(ReleasedHold {
            reservation,
            released: amount,
            stock,
        });
    }
    Ok(ReleaseOrderOutcome::Released(released))
}

/// Plans the update against the row as read and writes it only if the row's
/// version is still the one read: the seed's optimistic lock. The
/// transaction holds SQLite's write lock since its first read, so the version
/// cannot have moved; the guard is the same as PostgreSQL's all the same.
fn update_stock(c: &mut SqliteConnection, request: &StockUpdate) -> Result<UpdateOutcome> {
    use inventory::dsl::{
        created_at, product_id as pid, reserved_quantity, total_quantity, updated_at, version,
    };
    let current = load_stock(c, &request.product_id)?;
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
    let now = request.now.naive_utc();
    let row: StockRow = if plan.creates_product {
        diesel::insert_into(inventory::table)
            .values((
                pid.eq(&request.product_id),
                total_quantity.eq(plan.new_total),
                reserved_quantity.eq(0),
                created_at.eq(now),
                updated_at.eq(now),
                version.eq(1),
            ))
            .returning(StockRow::as_returning())
            .get_result(c)?
    } else {
        diesel::update(inventory::table)
            .filter(pid.eq(&request.product_id))
            .filter(version.eq(current_version))
            .filter(reserved_quantity.le(plan.new_total))
            .set((
                total_quantity.eq(plan.new_total),
                updated_at.eq(now),
                version.eq(current_version + 1),
            ))
            .returning(StockRow::as_returning())
            .get_result(c)
            .optional()?
            .ok_or_else(|| {
                Error::Conflict(format!(
                    "the stock of {:?} changed after version {current_version} was read",
                    request.product_id
                ))
            })?
    };
    rows_affected(1);
    let stock = StockLevel::from(row);
    let history = HistoryRow::new(
        &request.product_id,
        OperationType::Update,
        plan.delta(),
        None,
        request.now,
        history::update_metadata(request.change, &plan, stock.version),
    );
    diesel::insert_into(inventory_history::table)
        .values(&history)
        .execute(c)
        .map(rows_affected)?;
    Ok(UpdateOutcome::Applied { plan, stock })
}

/// Runs `write` under the client's request key, if any (see [`keys`]).
fn keyed<T: KeyedOutcome>(
    c: &mut SqliteConnection,
    key: Option<&RequestKey>,
    write: impl FnOnce(&mut SqliteConnection) -> Result<T>,
) -> Result<Keyed<T>> {
    use idempotency_keys::dsl::{created_at, method, request, request_id, response};
    let Some(key) = key else {
        return write(c).map(Keyed::Fresh);
    };
    let kept: Option<(String, String, String)> = idempotency_keys::table
        .find(&key.request_id)
        .select((method, request, response))
        .first(c)
        .optional()?;
    if let Some((first_method, first_request, first_response)) = kept {
        let parse = |text: &str| {
            serde_json::from_str(text).map_err(|e| {
                Error::Internal(format!(
                    "request key {:?} is unreadable: {e}",
                    key.request_id
                ))
            })
        };
        return keys::found(
            key,
            &first_method,
            parse(&first_request)?,
            parse(&first_response)?,
        );
    }
    let outcome = write(c)?;
    if outcome.succeeded() {
        diesel::insert_into(idempotency_keys::table)
            .values((
                request_id.eq(&key.request_id),
                method.eq(key.method),
                request.eq(key.fields.to_string()),
                response.eq(keys::remembered(&outcome)?.to_string()),
                created_at.eq(key.now.naive_utc()),
            ))
            .execute(c)
            .map(rows_affected)?;
    }
    Ok(Keyed::Fresh(outcome))
}

fn history(
    c: &mut SqliteConnection,
    product_id: &str,
    after: Option<HistoryCursor>,
    limit: u32,
) -> Result<Option<Vec<HistoryEntry>>> {
    use inventory_history::dsl::{created_at, id, product_id as pid};
    let exists: bool =
        diesel::select(diesel::dsl::exists(inventory::table.find(product_id))).get_result(c)?;
    if !exists {
        return Ok(None);
    }
    let mut query = inventory_history::table
        .filter(pid.eq(product_id))
        .select(HistoryRow::as_select())
        .into_boxed();
    if let Some(cursor) = after {
        let at = cursor.created_at.naive_utc();
        query = query.filter(
            created_at
                .lt(at)
                .or(created_at.eq(at).and(id.lt(cursor.id))),
        );
    }
    let rows = query
        .order((created_at.desc(), id.desc()))
        .limit(i64::from(limit))
        .load(c)?;
    rows.into_iter()
        .map(HistoryEntry::try_from)
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Expires up to `limit` due reservations, of one product or of all.
fn expire_due(
    c: &mut SqliteConnection,
    now: DateTime<Utc>,
    product: Option<&str>,
    limit: u32,
) -> Result<Vec<Reservation>> {
    use inventory_reservations::dsl::{expires_at, product_id, status, updated_at};
    let mut query = inventory_reservations::table
        .filter(status.eq(ReservationStatus::Active.as_str()))
        .filter(expires_at.le(now.naive_utc()))
        .into_boxed();
    if let Some(product) = product {
        query = query.filter(product_id.eq(product));
    }
    let due: Vec<Reservation> = query
        .order(expires_at.asc())
        .limit(i64::from(limit))
        .select(ReservationRow::as_select())
        .load(c)?
        .into_iter()
        .map(Reservation::try_from)
        .collect::<Result<_>>()?;
    let mut expired = Vec::with_capacity(due.len());
    for mut reservation in due {
        let held = reservation.held_quantity();
        reservation.status = ReservationStatus::Expired;
        diesel::update(inventory_reservations::table.find(&reservation.id))
            .set((
                status.eq(reservation.status.as_str()),
                updated_at.eq(now.naive_utc()),
            ))
            .execute(c)
            .map(rows_affected)?;
        let stock = shift_reserved(c, &reservation.product_id, -held, now)?.ok_or_else(|| {
            Error::Internal(format!(
                "reserved quantity of {:?} is below its active reservation {}",
                reservation.product_id, reservation.id
            ))
        })?;
        let history = HistoryRow::new(
            &reservation.product_id,
            OperationType::Release,
            held,
            Some(&reservation.order_id),
            now,
            history::expire_metadata(
                &reservation.id,
                held,
                reservation.expires_at,
                stock.reserved_quantity,
                stock.available_quantity(),
            ),
        );
        diesel::insert_into(inventory_history::table)
            .values(&history)
            .execute(c)
            .map(rows_affected)?;
        expired.push(reservation);
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::{Integer, Text};

    use super::*;
    use crate::domain::StockChange;

    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Integer)]
        available_quantity: i32,
        #[diesel(sql_type = Text)]
        updated_at: String,
    }

    /// A database made before commits existed upgrades in place: its rows
    /// survive the table rebuilds with their foreign key, indexes and
    /// constraints, and the upgrade can be reverted.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_commit_migration_upgrades_existing_data_and_reverts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("inventory.db");
        let url = path.display().to_string();
        let setup_url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = SqliteConnection::establish(&setup_url).expect("connect");
            c.batch_execute("PRAGMA foreign_keys = ON").expect("pragma");
            c.run_next_migration(MIGRATIONS).expect("first migration");
            c.batch_execute(
                "INSERT INTO inventory (product_id, total_quantity, reserved_quantity) VALUES ('p', 10, 4); \
                 INSERT INTO inventory_reservations (id, product_id, order_id, quantity, released_quantity, expires_at) \
                 VALUES ('r1', 'p', 'o1', 5, 1, '2999-01-01 00:00:00'); \
                 INSERT INTO inventory_history (id, product_id, operation_type, quantity_change, order_id, metadata) \
                 VALUES ('h1', 'p', 'reserve', -5, 'o1', '{}');",
            )
            .expect("old rows");
        })
        .await
        .expect("setup");

        let store = SqliteStore::open(SqliteOptions {
            path: path.clone(),
            max_connections: 2,
            connection_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Normal,
        })
        .await
        .expect("open applies the commit migration");
        let outcome = store
            .commit(CommitRequest {
                product_id: "p".into(),
                order_id: "o1".into(),
                quantity: None,
                now: Utc::now(),
                key: None,
            })
            .await
            .expect("commit an old reservation");
        let Keyed::Fresh(CommitOutcome::Committed {
            reservation,
            committed,
            stock,
        }) = outcome
        else {
            panic!("expected Committed, got {outcome:?}");
        };
        assert_eq!(committed, 4);
        assert_eq!(reservation.status, ReservationStatus::Committed);
        assert_eq!((stock.total_quantity, stock.reserved_quantity), (6, 0));
        assert_eq!(stock.version, 2, "an existing row starts at version 1");
        let history = store.history("p", None, 10).await.expect("history");
        assert_eq!(history.map(|h| h.len()), Some(2), "the old entry survived");
        store.close();

        tokio::task::spawn_blocking(move || {
            let mut c = SqliteConnection::establish(&url).expect("connect");
            c.batch_execute("PRAGMA foreign_keys = ON").expect("pragma");
            for refused in [
                "INSERT INTO inventory_reservations (id, product_id, order_id, quantity, expires_at) \
                 VALUES ('r2', 'ghost', 'o2', 1, '2999-01-01 00:00:00')",
                "INSERT INTO inventory_reservations (id, product_id, order_id, quantity, expires_at) \
                 VALUES ('r3', 'p', 'o1', 1, '2999-01-01 00:00:00')",
            ] {
                c.batch_execute(refused).expect_err(refused);
            }
            // Every later migration, then this one.
            while c
                .applied_migrations()
                .expect("applied")
                .len()
                > 1
            {
                c.revert_last_migration(MIGRATIONS).expect("revert");
            }
            c.batch_execute(
                "INSERT INTO inventory_reservations (id, product_id, order_id, quantity, expires_at) \
                 VALUES ('r4', 'p', 'o4', 1, '2999-01-01 00:00:00')",
            )
            .expect("the first schema works again");
            c.run_pending_migrations(MIGRATIONS).expect("upgrade again");
        })
        .await
        .expect("checks");
    }

    /// The schema itself refuses to oversell, whatever SQL reaches it.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_database_enforces_the_stock_invariants() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/dir/inventory.db");
        let store = SqliteStore::open(SqliteOptions {
            path: path.clone(),
            max_connections: 2,
            connection_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Normal,
        })
        .await
        .expect("open creates the directory and migrates");
        let outcome = store
            .update_stock(StockUpdate {
                product_id: "p".into(),
                change: StockChange::Set(10),
                expected_version: None,
                now: Utc::now(),
                key: None,
            })
            .await
            .expect("set");
        assert!(matches!(
            outcome,
            Keyed::Fresh(UpdateOutcome::Applied { .. })
        ));

        let url = path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let mut c = SqliteConnection::establish(&url).expect("connect");
            for oversell in [
                "UPDATE inventory SET reserved_quantity = total_quantity + 1",
                "UPDATE inventory SET total_quantity = -1",
                "UPDATE inventory SET reserved_quantity = -1",
                "INSERT INTO inventory (product_id, total_quantity, reserved_quantity) VALUES ('q', 1, 2)",
                "INSERT INTO inventory_history (id, product_id, operation_type, quantity_change) \
                 VALUES ('h', 'p', 'teleport', 0)",
                "INSERT INTO inventory_reservations \
                 (id, product_id, order_id, quantity, released_quantity, committed_quantity, expires_at) \
                 VALUES ('r', 'p', 'o', 2, 1, 2, '2030-01-01 00:00:00')",
                "INSERT INTO inventory_reservations (id, product_id, order_id, quantity, status, expires_at) \
                 VALUES ('r', 'p', 'o', 2, 'paid', '2030-01-01 00:00:00')",
            ] {
                let error = c.batch_execute(oversell).expect_err(oversell);
                assert!(error.to_string().contains("CHECK constraint failed"), "{oversell}: {error}");
            }
            c.batch_execute("UPDATE inventory SET reserved_quantity = 4, updated_at = '2000-01-01 00:00:00'")
                .expect("a valid update");
            c.batch_execute("UPDATE inventory SET reserved_quantity = 3").expect("update");
            let row: Row = diesel::sql_query("SELECT available_quantity, updated_at FROM inventory")
                .get_result(&mut c)
                .expect("row");
            assert_eq!(row.available_quantity, 7, "generated column");
            assert!(row.updated_at.as_str() > "2000-01-01 00:00:00", "ON UPDATE trigger");
        })
        .await
        .expect("checks");
    }
}
