//! The SQLite store: the embedded default, one file, no setup.
//!
//! Writes (units of work, history entries, the purge of request keys) run on
//! one thread that owns the write connection (`Writer`), one closure per
//! operation, in the order they were sent. Reads run on pooled connections
//! (diesel `SqliteConnection`s behind diesel-async's
//! [`SyncConnectionWrapper`], pooled by deadpool), on the calling thread
//! ([`StoreThreads`]): in WAL mode they never wait for the writer.
//! A unit of work runs in `BEGIN IMMEDIATE`, so its transaction takes
//! SQLite's single write lock before it reads: concurrent writers queue on
//! `busy_timeout` instead of failing with a lock upgrade deadlock, and nothing
//! the planner read can change before the transaction writes. Reads and
//! writes of a unit of work are in `work.rs`.
//!
//! Every connection runs in WAL mode (readers never block the writer) with
//! foreign keys on.

mod rows;
mod schema;
mod work;

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

use self::rows::{EventRow, HistoryRow, ReservationRow, StockRow};
use self::schema::{
    idempotency_keys, inventory, inventory_event_log, inventory_events, inventory_history,
    inventory_reservations, product_alternatives,
};
use super::PoolStatus;
use super::costs;
use crate::domain::events::EventSignal;
use crate::domain::port::{EventPage, InventoryStore, StoreError as Error, StoreResult as Result};
use crate::domain::work::{Planned, Work, plan_with};
use crate::domain::{
    HistoryCursor, HistoryEntry, Money, PositionedEvent, Reservation, StockLevel, StockTotals,
};
use crate::telemetry::db::{DbTrace, rows_affected};

/// The SQLite migrations, compiled into the binary and applied at start.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

type Conn = SyncConnectionWrapper<SqliteConnection, StoreThreads>;

/// Where a pooled connection's work runs: at once, on the calling task's
/// thread. Pooled connections only read, and a read in WAL mode never waits
/// for a lock and takes microseconds, less than the two thread switches of a
/// hop to the blocking pool and back. (Writes, which may wait for the write
/// lock or an fsync, run on the writer thread instead.)
pub struct StoreThreads;

impl SpawnBlocking for StoreThreads {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<R, BoxError>> + Send + 'a>>
    where
        R: Send + 'static,
    {
        Box::pin(std::future::ready(Ok(task())))
    }

    fn get_runtime() -> Self {
        Self
    }
}

/// The error type of [`SpawnBlocking`].
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// SQLite's `synchronous` setting in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Most pooled connections kept open while idle.
    pub max_idle_connections: usize,
    /// How long a request waits for a pooled connection.
    pub connection_timeout: Duration,
    /// How long a writer waits for the write lock before failing as busy.
    pub busy_timeout: Duration,
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// Whether changes of stock are written to the events outbox
    /// (`inventory.events.enabled`).
    pub events: bool,
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
    /// Pooled connections for reads, which in WAL mode never wait for the
    /// writer.
    pool: Pool<Conn>,
    /// The one writer (see [`Writer`]).
    writer: Writer,
    /// Told the latest event's position after each commit that added events.
    signal: EventSignal,
    /// Whether events are written (see [`SqliteOptions::events`]).
    events: bool,
}

/// Settings of the write connection alone. Its page cache is 512 KiB, a
/// quarter of SQLite's default (the readers keep theirs): neither 16 MiB
/// nor 2 MiB wrote more reservations a second side by side, with 1,000
/// products or 100,000 (README, "Reservations on SQLite"), since what a
/// commit touches beyond the stock rows, the ends of the tables and the
/// indexes' upper pages is spread over the indexes and read back from the
/// OS's cache in microseconds; a full cache is memory held for nothing
/// (16 MiB held 14 MiB under a flood, 2 MiB 1.3 MiB more than 512 KiB).
/// The WAL is checkpointed into the database file every 10,000 pages (40
/// MiB) rather than 1,000: a hot page that many commits rewrote is copied
/// into the file once per checkpoint, so fewer, larger checkpoints copy
/// fewer pages. Temporary files are kept in memory: a multi-row statement
/// inside a transaction keeps a statement journal (the pages it changed, to
/// undo it alone if it fails), which past 64 KiB SQLite spills to a
/// temporary file otherwise, opened, written and unlinked in every batch
/// (27% more reservations a second with it in memory: README, "Reservations
/// on SQLite").
const WRITER_PRAGMAS: &str =
    "PRAGMA cache_size = -512; PRAGMA wal_autocheckpoint = 10000; PRAGMA temp_store = MEMORY;";

/// A piece of write work for the writer thread.
type WriteJob = Box<dyn FnOnce(&mut SqliteConnection) + Send>;

/// The thread that owns the write connection. SQLite has one writer at a
/// time anyway; a thread of its own keeps that connection's page cache and
/// prepared statements warm, and a write waits for no pooled connection and
/// no blocking-pool thread. Work runs in the order it was sent.
struct Writer {
    /// Where write work goes; dropped on close, which ends the thread once
    /// the work sent before is done.
    jobs: std::sync::Mutex<Option<std::sync::mpsc::Sender<WriteJob>>>,
    /// The thread, joined on close.
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    /// Opens the write connection on a thread of its own.
    fn start(url: &str, pragmas: &str) -> Result<Self> {
        let mut conn = SqliteConnection::establish(url)?;
        conn.batch_execute(pragmas)?;
        conn.batch_execute(WRITER_PRAGMAS)?;
        let (jobs, queue) = std::sync::mpsc::channel::<WriteJob>();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| Error::Internal(format!("starting the SQLite writer: {e}")))?;
        Ok(Self {
            jobs: std::sync::Mutex::new(Some(jobs)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Hands `job` to the writer thread.
    fn send(&self, job: WriteJob) -> Result<()> {
        let jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        jobs.as_ref()
            .ok_or_else(|| Error::NotConnected("the store is closed".into()))?
            .send(job)
            .map_err(|_| Error::NotConnected("the SQLite writer has stopped".into()))
    }

    /// Lets the thread finish what it was sent, and waits for it to close
    /// the write connection.
    fn close(&self) {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the SQLite writer thread panicked");
        }
    }
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

        let writer = tokio::task::spawn_blocking({
            let (url, pragmas) = (url.clone(), pragmas.clone());
            move || Writer::start(&url, &pragmas)
        })
        .await
        .map_err(|e| Error::Internal(format!("opening the write connection: {e}")))??;
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
        super::trim_idle_connections(
            pool.clone(),
            options.max_idle_connections,
            super::IDLE_SWEEP,
        );
        Ok(Self {
            pool,
            writer,
            signal: EventSignal::new(),
            events: options.events,
        })
    }

    /// What the store tells of the events it commits (there is no other
    /// writer: one process owns the file).
    pub fn event_signal(&self) -> EventSignal {
        self.signal.clone()
    }

    /// Runs write `work` on the writer thread (see [`Writer`]), traced
    /// (transaction and statement spans, statement latency) when a server's
    /// telemetry is current.
    async fn run<R, F>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R> + Send + 'static,
    {
        let trace = DbTrace::begin("sqlite", Duration::ZERO);
        let (done, answer) = tokio::sync::oneshot::channel();
        self.writer.send(Box::new(move |c| {
            // A caller that gave up while this waited in the queue (its
            // deadline passed) was told it failed: its work is dropped, never
            // applied after the fact. (Once started, a SQLite transaction
            // runs to its end within busy_timeout.)
            if done.is_closed() {
                return;
            }
            let result = traced(c, trace, work);
            // A caller that stopped waiting no longer needs the answer.
            let _ = done.send(result);
        }))?;
        answer
            .await
            .map_err(|_| Error::Internal("the SQLite writer stopped mid-work".into()))?
    }

    /// Runs read `work` on a pooled connection on the caller's thread (see
    /// [`StoreThreads`]). Never for work that writes or takes a lock.
    async fn read<R, F>(&self, work: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R> + Send + 'static,
    {
        let waiting = Instant::now();
        let mut conn = self.pool.get().await?;
        let trace = DbTrace::begin("sqlite", waiting.elapsed());
        conn.spawn_blocking(move |c| Ok(traced(c, trace, work)))
            .await?
    }

    /// The connection pool's state, for the metrics.
    pub fn pool_status(&self) -> PoolStatus {
        self.pool.status().into()
    }
}

/// Runs `work` on `c` with `trace` (when there is one) recording its
/// statements.
fn traced<R>(
    c: &mut SqliteConnection,
    trace: Option<DbTrace>,
    work: impl FnOnce(&mut SqliteConnection) -> Result<R>,
) -> Result<R> {
    if let Some(trace) = &trace {
        c.set_instrumentation(trace.instrumentation());
    }
    let rows_target = trace.as_ref().map(DbTrace::enter_thread);
    let result = work(c);
    drop(rows_target);
    drop(trace);
    result
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
        self.read(move |c| {
            Ok(inventory::table
                .find(product_id)
                .select(StockRow::as_select())
                .first(c)
                .optional()?
                .map(StockLevel::from))
        })
        .await
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

    async fn order_reservations(&self, order_id: &str) -> Result<Vec<Reservation>> {
        let order_id = order_id.to_owned();
        self.read(move |c| {
            inventory_reservations::table
                .filter(inventory_reservations::order_id.eq(order_id))
                .order(inventory_reservations::product_id.asc())
                .select(ReservationRow::as_select())
                .load(c)?
                .into_iter()
                .map(Reservation::try_from)
                .collect()
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

    async fn alternatives(&self, product_id: &str) -> Result<Option<Vec<StockLevel>>> {
        let product_id = product_id.to_owned();
        self.read(move |c| {
            use product_alternatives::dsl as a;
            let exists: bool =
                diesel::select(diesel::dsl::exists(inventory::table.find(&product_id)))
                    .get_result(c)?;
            if !exists {
                return Ok(None);
            }
            let rows: Vec<StockRow> = a::product_alternatives
                .inner_join(inventory::table.on(inventory::product_id.eq(a::alternative_id)))
                .filter(a::product_id.eq(&product_id))
                .order(a::rank.asc())
                .select(StockRow::as_select())
                .load(c)?;
            Ok(Some(rows.into_iter().map(StockLevel::from).collect()))
        })
        .await
    }

    async fn set_unit_cost(&self, product_id: &str, cost: Option<Money>) -> Result<bool> {
        use diesel::sql_types::{BigInt, Text};
        let product_id = product_id.to_owned();
        self.run(move |c| {
            let Some(cost) = cost else {
                diesel::sql_query(costs::CLEAR)
                    .bind::<Text, _>(&product_id)
                    .execute(c)
                    .map(rows_affected)?;
                let found: costs::Found = diesel::sql_query(costs::EXISTS)
                    .bind::<Text, _>(&product_id)
                    .get_result(c)?;
                return Ok(found.found);
            };
            let written = diesel::sql_query(costs::SET)
                .bind::<Text, _>(&product_id)
                .bind::<Text, _>(&cost.currency)
                .bind::<BigInt, _>(cost.minor_units)
                .execute(c)
                .map(rows_affected)?;
            Ok(written == 1)
        })
        .await
    }

    async fn stock_totals(&self) -> Result<StockTotals> {
        self.read(|c| {
            let units: costs::Units = diesel::sql_query(costs::UNITS).get_result(c)?;
            let value: Vec<costs::Value> = diesel::sql_query(costs::VALUE).load(c)?;
            Ok(costs::totals(units, value))
        })
        .await
    }

    async fn record_history(&self, entry: HistoryEntry) -> Result<()> {
        self.run(move |c| {
            diesel::insert_into(inventory_history::table)
                .values(HistoryRow::from(&entry))
                .execute(c)
                .map(rows_affected)?;
            Ok(())
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

    async fn events(&self, after: i64, limit: u32) -> Result<EventPage> {
        self.read(move |c| events(c, after, limit)).await
    }

    async fn purge_events(&self, before: DateTime<Utc>, limit: u32) -> Result<usize> {
        self.run(move |c| c.immediate_transaction(|c| purge_events(c, before, limit)))
            .await
    }

    async fn apply(&self, work: &Work) -> Result<Planned> {
        let work = work.clone();
        let signal = self.signal.clone();
        let events = self.events;
        self.run(move |c| {
            let (planned, last_event) = c.immediate_transaction(|c| {
                let planned = plan_with(&work, |needs| work::load(c, needs, work.now))?;
                if work.is_abandoned() {
                    return Err(Error::Abandoned);
                }
                let last_event = work::write(c, &planned.changes, events)?;
                Ok((planned, last_event))
            })?;
            if let Some(position) = last_event {
                signal.committed(position);
            }
            Ok(planned)
        })
        .await
    }

    fn close(&self) {
        self.writer.close();
        self.pool.close();
    }
}

/// Up to `limit` events after `after`, then the outbox's bounds.
fn events(c: &mut SqliteConnection, after: i64, limit: u32) -> Result<EventPage> {
    use inventory_events::dsl as e;
    let rows: Vec<EventRow> = inventory_events::table
        .filter(e::position.gt(after))
        .order(e::position.asc())
        .limit(i64::from(limit))
        .select(EventRow::as_select())
        .load(c)?;
    let events = rows
        .into_iter()
        .map(PositionedEvent::try_from)
        .collect::<Result<Vec<_>>>()?;
    let purged_through: i64 = inventory_event_log::table
        .find(1)
        .select(inventory_event_log::purged_through)
        .first(c)?;
    let work::Position {
        position: last_position,
    } = diesel::sql_query(work::LATEST_POSITION).get_result(c)?;
    Ok(EventPage {
        events,
        purged_through,
        last_position,
    })
}

/// Forgets the oldest events made before `before`, up to `limit`, and
/// moves the purge mark past them.
fn purge_events(c: &mut SqliteConnection, before: DateTime<Utc>, limit: u32) -> Result<usize> {
    use inventory_events::dsl as e;
    let oldest: Vec<(i64, chrono::NaiveDateTime)> = inventory_events::table
        .order(e::position.asc())
        .limit(i64::from(limit))
        .select((e::position, e::created_at))
        .load(c)?;
    let due = oldest
        .iter()
        .take_while(|(_, created_at)| *created_at < before.naive_utc())
        .count();
    let Some(&(through, _)) = due.checked_sub(1).and_then(|last| oldest.get(last)) else {
        return Ok(0);
    };
    let purged = diesel::delete(inventory_events::table.filter(e::position.le(through)))
        .execute(c)
        .map(rows_affected)?;
    diesel::update(inventory_event_log::table.find(1))
        .set(inventory_event_log::purged_through.eq(through))
        .execute(c)?;
    Ok(purged)
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

#[cfg(test)]
mod tests {
    use diesel::sql_types::{Integer, Text};

    use super::*;
    use crate::domain::work::{
        Command, CommitOutcome, CommitRequest, Keyed, Outcome, StockUpdate, UpdateOutcome,
    };
    use crate::domain::{ReservationStatus, StockChange};

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
            max_idle_connections: 2,
            connection_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Normal,
            events: true,
        })
        .await
        .expect("open applies the commit migration");
        let planned = store
            .apply(&Work::single(
                Command::Commit(CommitRequest {
                    product_id: "p".into(),
                    order_id: "o1".into(),
                    quantity: None,
                    key: None,
                }),
                Utc::now(),
            ))
            .await
            .expect("commit an old reservation");
        let Some(Outcome::Commit(Keyed::Fresh(CommitOutcome::Committed {
            reservation,
            committed,
            stock,
        }))) = planned.outcomes.into_iter().next()
        else {
            panic!("expected Committed");
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
            max_idle_connections: 2,
            connection_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Normal,
            events: true,
        })
        .await
        .expect("open creates the directory and migrates");
        let planned = store
            .apply(&Work::single(
                Command::Update(StockUpdate {
                    product_id: "p".into(),
                    change: StockChange::Set(10),
                    expected_version: None,
                    key: None,
                }),
                Utc::now(),
            ))
            .await
            .expect("set");
        assert!(matches!(
            planned.outcomes[..],
            [Outcome::Update(Keyed::Fresh(UpdateOutcome::Applied { .. }))]
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

    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        value: i64,
    }

    /// The writer runs with its own settings (a misspelt pragma is silently
    /// ignored by SQLite, so they are read back), the readers with SQLite's
    /// defaults and the durability asked for.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_writer_keeps_a_small_cache_and_its_temporary_files_in_memory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(SqliteOptions {
            path: dir.path().join("inventory.db"),
            max_connections: 2,
            max_idle_connections: 2,
            connection_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Full,
            events: true,
        })
        .await
        .expect("open");
        let pragmas = |c: &mut SqliteConnection| -> Result<Vec<i64>> {
            ["cache_size", "temp_store", "synchronous"]
                .iter()
                .map(|name| {
                    diesel::sql_query(format!("SELECT {name} AS value FROM pragma_{name}"))
                        .get_result::<Setting>(c)
                        .map(|s| s.value)
                        .map_err(Error::from)
                })
                .collect()
        };
        let writer = store.run(pragmas).await.expect("writer's settings");
        // 512 KiB; temp_store 2 = MEMORY; synchronous 2 = FULL.
        assert_eq!(writer, vec![-512, 2, 2]);
        let reader = store.read(pragmas).await.expect("a reader's settings");
        assert_eq!(reader, vec![-2000, 0, 2]);
        store.close();
    }
}
