//! The PostgreSQL store: one database shared by several replicas.
//!
//! Connections are diesel-async [`AsyncPgConnection`]s (the pure-Rust
//! tokio-postgres driver; no libpq), pooled by deadpool. Migrations are
//! applied at [`PostgresStore::open`] under an advisory lock (see
//! [`MIGRATIONS`] and [`MIGRATION_LOCK_KEY`]).
//!
//! # Transactions
//! A change of stock is one short `READ COMMITTED` transaction (see `work.rs`):
//! the rows the domain's planner needs are read in one pipeline with row
//! locks (`SELECT ... FOR UPDATE`: reservations first, then stock rows in
//! product id order, the order every transaction takes them in, so none
//! waits on another in a circle), the planner decides, and its writes go out
//! in a second pipeline, then `COMMIT`. Concurrent changes of one product
//! therefore wait for its row lock in turn and are decided on the row as the
//! previous one committed it: none is refused because others ran at the
//! same time. Expired reservations are read `FOR UPDATE SKIP LOCKED`, so
//! several replicas' sweepers never expire the same reservation twice.
//!
//! Each store call runs on its own task: a request cancelled mid-transaction
//! (a client gone) does not leave a transaction half-way; it completes, and the
//! connection goes back to the pool clean.
//!
//! Races the database settles (a unique violation when two first uses of a
//! request key or two creations of a product meet, a deadlock) are
//! [`StoreError::Conflict`]: nothing was written, and the domain runs the
//! work again.

pub mod events;
mod fixed;
pub mod listen;
mod migrate;
mod rows;
mod schema;
mod work;

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

use self::rows::{HistoryRow, ReservationRow, StockRow};
use self::schema::{
    idempotency_keys, inventory, inventory_history, inventory_reservations, product_alternatives,
};
use super::PoolStatus;
use super::costs;
use crate::domain::events::EventSignal;
use crate::domain::port::{EventPage, InventoryStore, StoreError, StoreResult as Result};
use crate::domain::work::{Planned, Work, plan_with_async};
use crate::domain::{HistoryCursor, HistoryEntry, Money, Reservation, StockLevel, StockTotals};
use crate::telemetry::db::{DbTrace, rows_affected};

pub use self::migrate::{MIGRATION_LOCK_KEY, MIGRATIONS};

/// How to open the PostgreSQL database.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database`; the database must exist.
    pub url: String,
    /// Most pooled connections.
    pub max_connections: usize,
    /// Most pooled connections kept open while idle.
    pub max_idle_connections: usize,
    /// How long a request waits for a pooled connection, and how long opening
    /// a new connection may take.
    pub connection_timeout: Duration,
    /// The isolation level of the transactions of a unit of work.
    pub isolation: Isolation,
    /// Whether every transaction that changes stock tells the other
    /// replicas (`NOTIFY` on [`listen::CHANNEL`], sent at its commit), for
    /// their memory caches.
    pub notify: bool,
    /// Whether changes of stock are written to the events outbox
    /// (`inventory.events.enabled`).
    pub events: bool,
    /// The longest a statement may run, and a transaction stay idle, on the
    /// server (`statement_timeout`, `idle_in_transaction_session_timeout`);
    /// zero: PostgreSQL's default (none).
    pub statement_timeout: Duration,
}

/// A transaction isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// `READ COMMITTED`, PostgreSQL's default: each statement sees what was
    /// committed before it began, and a row lock waited for returns the row
    /// as the other transaction committed it.
    ReadCommitted,
    /// `REPEATABLE READ`: one snapshot for the transaction; locking a row
    /// changed since is a serialization failure.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("max_idle_connections", &self.max_idle_connections)
            .field("connection_timeout", &self.connection_timeout)
            .field("isolation", &self.isolation)
            .field("notify", &self.notify)
            .field("events", &self.events)
            .field("statement_timeout", &self.statement_timeout)
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

/// A pooled connection: [`connect`], then planning every statement for its
/// own run. The store's statements are prepared once per connection and run
/// for its lifetime; with PostgreSQL's default, after five runs a statement
/// keeps one generic plan, made from the table statistics of that moment.
/// On a fresh database, whose statistics say the reservation and history
/// tables are empty, that plan scans them whole, and keeps scanning them as
/// they grow (measured: half the throughput). Planning these short
/// statements costs little; a plan that fits the tables as they are now
/// does not go stale.
///
/// With `statement_timeout`, the server also ends a statement that runs
/// longer (a lock waited on too long included) and a transaction left idle
/// that long (its client gone): no request holds rows locked without bound.
async fn connect_for_pool(
    url: &str,
    statement_timeout: Duration,
) -> ConnectionResult<AsyncPgConnection> {
    let mut conn = connect(url).await?;
    let mut setup = "SET plan_cache_mode = force_custom_plan".to_owned();
    if !statement_timeout.is_zero() {
        let ms = statement_timeout.as_millis().max(1);
        setup.push_str(&format!(
            "; SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {ms}"
        ));
    }
    conn.batch_execute(&setup)
        .await
        .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
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
    /// The isolation level of a unit of work's transaction.
    isolation: Isolation,
    /// Whether stock changes are announced on [`listen::CHANNEL`].
    notify: bool,
    /// Whether events are written (see [`PostgresOptions::events`]).
    events: bool,
    /// Told after each commit that added events (other replicas' commits
    /// reach it through [`listen::Listener`]).
    signal: EventSignal,
    /// Where pings go.
    url: String,
    /// How long opening the ping connection may take.
    connection_timeout: Duration,
    /// The connection pings go through: its own, so that a pool saturated
    /// by requests is never taken for an unreachable database.
    ping_connection: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
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
        let statement_timeout = options.statement_timeout;
        config.custom_setup =
            Box::new(move |url| Box::pin(connect_for_pool(url, statement_timeout)));
        let manager =
            AsyncDieselConnectionManager::<Conn>::new_with_config(options.url.clone(), config);
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .wait_timeout(Some(options.connection_timeout))
            .create_timeout(Some(options.connection_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Internal(format!("building the connection pool: {e}")))?;
        super::trim_idle_connections(
            pool.clone(),
            options.max_idle_connections,
            super::IDLE_SWEEP,
        );
        Ok(Self {
            pool,
            isolation: options.isolation,
            notify: options.notify,
            events: options.events,
            signal: EventSignal::new(),
            url: options.url,
            connection_timeout: options.connection_timeout,
            ping_connection: tokio::sync::Mutex::new(None),
        })
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
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }

    /// The connection pool's state, for the metrics.
    pub fn pool_status(&self) -> PoolStatus {
        self.pool.status().into()
    }

    /// What the store tells of the events this replica commits; give it to
    /// [`listen::Listener`] to hear of the other replicas' too.
    pub fn event_signal(&self) -> EventSignal {
        self.signal.clone()
    }
}

#[async_trait]
impl InventoryStore for PostgresStore {
    async fn ping(&self) -> Result<()> {
        let mut held = self.ping_connection.lock().await;
        let client = match held.take() {
            Some(client) if !client.is_closed() => client,
            _ => {
                let (client, connection) = tokio::time::timeout(
                    self.connection_timeout,
                    tokio_postgres::connect(&self.url, tokio_postgres::NoTls),
                )
                .await
                .map_err(|_| {
                    StoreError::NotConnected(format!(
                        "opening a connection took longer than {} ms",
                        self.connection_timeout.as_millis()
                    ))
                })?
                .map_err(|e| StoreError::NotConnected(with_causes(&e)))?;
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "the ping connection ended");
                    }
                });
                client
            }
        };
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| StoreError::Unavailable(with_causes(&e)))?;
        *held = Some(client);
        Ok(())
    }

    async fn stock(&self, product_id: &str) -> Result<Option<StockLevel>> {
        let product_id = product_id.to_owned();
        self.run(move |mut c| async move {
            Ok(inventory::table
                .find(product_id)
                .select(StockRow::as_select())
                .first(&mut c)
                .await
                .optional()?
                .map(StockLevel::from))
        })
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

    async fn order_reservations(&self, order_id: &str) -> Result<Vec<Reservation>> {
        let order_id = order_id.to_owned();
        self.run(move |mut c| async move {
            let rows: Vec<ReservationRow> = inventory_reservations::table
                .filter(inventory_reservations::order_id.eq(order_id))
                .order(inventory_reservations::product_id.asc())
                .select(ReservationRow::as_select())
                .load(&mut c)
                .await?;
            Ok(rows.into_iter().map(Reservation::from).collect())
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

    async fn alternatives(&self, product_id: &str) -> Result<Option<Vec<StockLevel>>> {
        let product_id = product_id.to_owned();
        self.run(move |mut c| async move {
            use product_alternatives::dsl as a;
            let exists: bool =
                diesel::select(diesel::dsl::exists(inventory::table.find(&product_id)))
                    .get_result(&mut c)
                    .await?;
            if !exists {
                return Ok(None);
            }
            let rows: Vec<StockRow> = a::product_alternatives
                .inner_join(inventory::table.on(inventory::product_id.eq(a::alternative_id)))
                .filter(a::product_id.eq(&product_id))
                .order(a::rank.asc())
                .select(StockRow::as_select())
                .load(&mut c)
                .await?;
            Ok(Some(rows.into_iter().map(StockLevel::from).collect()))
        })
        .await
    }

    async fn set_unit_cost(&self, product_id: &str, cost: Option<Money>) -> Result<bool> {
        use diesel::sql_types::{BigInt, Text};
        let product_id = product_id.to_owned();
        self.run(move |mut c| async move {
            let Some(cost) = cost else {
                diesel::sql_query(costs::CLEAR)
                    .bind::<Text, _>(&product_id)
                    .execute(&mut c)
                    .await
                    .map(rows_affected)?;
                let found: costs::Found = diesel::sql_query(costs::EXISTS)
                    .bind::<Text, _>(&product_id)
                    .get_result(&mut c)
                    .await?;
                return Ok(found.found);
            };
            let written = diesel::sql_query(costs::SET)
                .bind::<Text, _>(&product_id)
                .bind::<Text, _>(&cost.currency)
                .bind::<BigInt, _>(cost.minor_units)
                .execute(&mut c)
                .await
                .map(rows_affected)?;
            Ok(written == 1)
        })
        .await
    }

    async fn stock_totals(&self) -> Result<StockTotals> {
        self.run(|mut c| async move {
            let units: costs::Units = diesel::sql_query(costs::UNITS).get_result(&mut c).await?;
            let value: Vec<costs::Value> = diesel::sql_query(costs::VALUE).load(&mut c).await?;
            Ok(costs::totals(units, value))
        })
        .await
    }

    async fn record_history(&self, entry: HistoryEntry) -> Result<()> {
        self.run(move |mut c| async move {
            diesel::insert_into(inventory_history::table)
                .values(HistoryRow::from(&entry))
                .execute(&mut c)
                .await
                .map(rows_affected)?;
            Ok(())
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

    async fn events(&self, after: i64, limit: u32) -> Result<EventPage> {
        self.run(move |mut c| async move { events::page(&mut c, after, limit).await })
            .await
    }

    async fn purge_events(&self, before: DateTime<Utc>, limit: u32) -> Result<usize> {
        self.run(move |mut c| async move { events::purge(&mut c, before, limit).await })
            .await
    }

    async fn apply(&self, work: &Work) -> Result<Planned> {
        let planned = self.apply_work(work).await?;
        if self.events && !planned.changes.events.is_empty() {
            self.signal.poke();
        }
        Ok(planned)
    }

    fn close(&self) {
        self.pool.close();
        if let Ok(mut held) = self.ping_connection.try_lock() {
            held.take();
        }
    }
}

impl PostgresStore {
    /// [`InventoryStore::apply`] without telling the event signal.
    async fn apply_work(&self, work: &Work) -> Result<Planned> {
        let work = work.clone();
        let isolation = self.isolation;
        let notify = self.notify;
        let events = self.events;
        self.run(move |mut c| async move {
            // Above READ COMMITTED, a transaction whose snapshot was taken
            // before it waited for a row lock fails once it gets the lock,
            // if the holder changed the row. Queue on the products first,
            // outside the transaction (advisory locks of the session, in
            // product order, so two works never wait on each other in a
            // circle): the snapshot is then taken once no other writer of
            // this service holds them.
            let queued = isolation != Isolation::ReadCommitted;
            if queued {
                for product in work.products() {
                    fixed::Fixed::new(
                        "SELECT pg_advisory_lock(hashtextextended($1, 0))",
                        (fixed::bind::<diesel::sql_types::Text, _>(product),),
                    )
                    .execute(&mut c)
                    .await?;
                }
            }
            let (planned, clean) = unit_of_work(&mut c, &work, isolation, notify, events).await;
            if !clean {
                // Never lend out a connection that may still be inside a
                // transaction: close it instead.
                drop(Object::take(c));
                return planned;
            }
            if queued {
                // A connection that cannot run this is broken, and its locks
                // go with its session.
                if let Err(error) = c.batch_execute("SELECT pg_advisory_unlock_all()").await {
                    tracing::warn!(%error, "releasing the advisory locks failed");
                }
            }
            planned
        })
        .await
    }
}

/// Runs a unit of work in one transaction, begun with its first reads and
/// committed with its writes (see `work.rs`); rolls it back when it fails
/// before the writes. The second value is false when the connection may be
/// left inside a transaction (its rollback failed): it must not be reused.
async fn unit_of_work(
    c: &mut Conn,
    work: &Work,
    isolation: Isolation,
    notify: bool,
    events: bool,
) -> (Result<Planned>, bool) {
    let begin = match isolation {
        Isolation::ReadCommitted => "BEGIN",
        Isolation::RepeatableRead => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        Isolation::Serializable => "BEGIN ISOLATION LEVEL SERIALIZABLE",
    };
    let mut session = work::Session {
        conn: c,
        begin: Some(begin),
    };
    let planned = plan_with_async(work, &mut session, |session, needs, now| {
        Box::pin(work::load(session, needs, now))
    })
    .await;
    let unbegun = session.begin;
    match planned {
        Ok(_) if work.is_abandoned() => {
            // The caller gave up while the reads ran (a slow or stalled
            // database): roll back rather than commit what it was told failed.
            let clean = unbegun.is_some() || c.batch_execute("ROLLBACK").await.is_ok();
            (Err(StoreError::Abandoned), clean)
        }
        Ok(planned) => {
            if let Some(begin) = unbegun
                && let Err(error) = c.batch_execute(begin).await
            {
                return (Err(error.into()), true);
            }
            // However the pipeline ends, the transaction has: committed, or
            // rolled back by the server at the COMMIT after a failed write.
            let written = work::write_and_commit(c, &planned.changes, notify, events).await;
            (written.map(|()| planned), true)
        }
        Err(error) => {
            let clean = match unbegun {
                Some(_) => true,
                None => match c.batch_execute("ROLLBACK").await {
                    Ok(()) => true,
                    Err(rollback) => {
                        tracing::debug!(%rollback, "rolling back a failed unit of work failed");
                        false
                    }
                },
            };
            (Err(error), clean)
        }
    }
}

/// The failures of a pipeline's statements. When one statement fails, the
/// ones after it fail only because the transaction is aborted (SQLSTATE
/// 25P02): the error reported is the cause, so that a unique violation is
/// recognised as one whichever statement ran first.
#[derive(Default)]
struct Failures(Vec<diesel::result::Error>);

impl Failures {
    /// The value of `result`, or its default after noting the failure.
    fn take<T: Default>(&mut self, result: QueryResult<T>) -> T {
        result.unwrap_or_else(|error| {
            self.0.push(error);
            T::default()
        })
    }

    /// The cause of the failures, if any.
    fn into_result(self) -> Result<()> {
        let mut errors = self.0.into_iter();
        let Some(first) = errors.next() else {
            return Ok(());
        };
        if !is_aborted_transaction(&first) {
            return Err(first.into());
        }
        Err(errors
            .find(|e| !is_aborted_transaction(e))
            .unwrap_or(first)
            .into())
    }
}

/// PostgreSQL's answer to a statement sent after an earlier one failed in
/// the same transaction (SQLSTATE 25P02).
fn is_aborted_transaction(error: &diesel::result::Error) -> bool {
    matches!(error, diesel::result::Error::DatabaseError(_, info)
        if info.message().starts_with("current transaction is aborted"))
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
    let (exists, rows) = tokio::join!(
        diesel::select(diesel::dsl::exists(inventory::table.find(product_id)))
            .get_result::<bool>(&mut { c }),
        query
            .order((created_at.desc(), id.desc()))
            .limit(i64::from(limit))
            .load::<HistoryRow>(&mut { c }),
    );
    let mut failures = Failures::default();
    let (exists, rows) = (failures.take(exists), failures.take(rows));
    failures.into_result()?;
    Ok(exists.then(|| rows.into_iter().map(HistoryEntry::from).collect()))
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
