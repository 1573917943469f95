//! The PostgreSQL store below the API: the schema's own guards under raw SQL,
//! migrations racing between replicas, and the races the store must settle
//! (duplicate reservations, several sweepers). Each test has a throwaway
//! database; an unreachable server fails the test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};
use common::{PostgresDatabase, with_database};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Integer, Text, Timestamptz};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use inventory_service::domain::port::{InventoryStore, StoreResult};
use inventory_service::domain::work::{
    Command, CommitOutcome, CommitRequest, Keyed, NewReservation, Outcome, ReserveOutcome,
    StockUpdate, UpdateOutcome, Work,
};
use inventory_service::domain::{Inventory, InventorySettings, Reservation, StockChange, new_id};
use inventory_service::store::postgres::{Isolation, MIGRATIONS, PostgresOptions, PostgresStore};

/// The store's changes of stock, one command per unit of work.
trait OneCommand: InventoryStore {
    /// Runs `command` alone, at `now`.
    fn one(
        &self,
        command: Command,
        now: DateTime<Utc>,
    ) -> impl std::future::Future<Output = StoreResult<Outcome>> + Send {
        let work = Work::single(command, now);
        async move {
            let planned = self.apply(&work).await?;
            Ok(planned.outcomes.into_iter().next().expect("one outcome"))
        }
    }

    /// Reserves as of `at` (see [`reservation`]).
    async fn reserve(
        &self,
        (request, at): (NewReservation, DateTime<Utc>),
    ) -> StoreResult<ReserveOutcome> {
        match self.one(Command::Reserve(request), at).await? {
            Outcome::Reserve(outcome) => Ok(outcome),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn expire_due(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Reservation>> {
        match self.one(Command::Expire { limit }, now).await? {
            Outcome::Expire(expired) => Ok(expired),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn update_stock(&self, request: StockUpdate) -> StoreResult<Keyed<UpdateOutcome>> {
        match self.one(Command::Update(request), now()).await? {
            Outcome::Update(outcome) => Ok(outcome),
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn commit(&self, request: CommitRequest) -> StoreResult<Keyed<CommitOutcome>> {
        match self.one(Command::Commit(request), now()).await? {
            Outcome::Commit(outcome) => Ok(outcome),
            other => panic!("unexpected {other:?}"),
        }
    }
}

impl OneCommand for PostgresStore {}

fn options(database: &PostgresDatabase) -> PostgresOptions {
    PostgresOptions {
        url: database.url.clone(),
        max_connections: 4,
        max_idle_connections: 4,
        connection_timeout: Duration::from_secs(10),
        isolation: Isolation::ReadCommitted,
        events: true,
        notify: true,
        statement_timeout: Duration::from_secs(5),
    }
}

/// Now at the precision the domain uses (microseconds).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

async fn set_stock(store: &PostgresStore, product: &str, quantity: i32) {
    let outcome = store
        .update_stock(StockUpdate {
            product_id: product.into(),
            change: StockChange::Set(quantity),
            expected_version: None,
            key: None,
        })
        .await
        .expect("set stock");
    assert!(
        matches!(outcome, Keyed::Fresh(UpdateOutcome::Applied { .. })),
        "{outcome:?}"
    );
}

/// A reservation expiring at exactly `expires_at`, made now: the request
/// and the time of the work it is made in.
fn reservation(
    product: &str,
    order: &str,
    quantity: i32,
    expires_at: DateTime<Utc>,
) -> (NewReservation, DateTime<Utc>) {
    let at = now();
    let request = NewReservation {
        id: new_id(),
        product_id: product.into(),
        order_id: order.into(),
        quantity,
        timeout: expires_at - at,
    };
    (request, at)
}

#[derive(QueryableByName)]
struct StockRow {
    #[diesel(sql_type = Integer)]
    available_quantity: i32,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    touched: bool,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// The schema itself refuses to oversell, whatever SQL reaches it.
#[tokio::test]
async fn the_database_enforces_the_stock_invariants() {
    let database = PostgresDatabase::create().await;
    let store = PostgresStore::open(options(&database))
        .await
        .expect("open migrates");
    set_stock(&store, "p", 10).await;

    let mut c = AsyncPgConnection::establish(&database.url)
        .await
        .expect("connect");
    for (oversell, refusal) in [
        (
            "UPDATE inventory SET reserved_quantity = total_quantity + 1",
            "inventory_reserved_within_total",
        ),
        // Breaks two constraints; PostgreSQL names the first it checks.
        (
            "UPDATE inventory SET total_quantity = -1",
            "violates check constraint",
        ),
        (
            "UPDATE inventory SET reserved_quantity = -1",
            "inventory_reserved_non_negative",
        ),
        (
            "INSERT INTO inventory (product_id, total_quantity, reserved_quantity) VALUES ('q', 1, 2)",
            "inventory_reserved_within_total",
        ),
        (
            "INSERT INTO inventory (product_id, total_quantity) VALUES ('', 1)",
            "inventory_product_id_length",
        ),
        (
            "UPDATE inventory SET available_quantity = 100",
            "can only be updated to DEFAULT",
        ),
        (
            "INSERT INTO inventory_history (id, product_id, operation_type, quantity_change) \
             VALUES ('h', 'p', 'teleport', 0)",
            "invalid input value for enum inventory_operation",
        ),
        (
            "INSERT INTO inventory_reservations (id, product_id, order_id, quantity, status, expires_at) \
             VALUES ('r', 'p', 'o', 1, 'pending', now())",
            "invalid input value for enum reservation_status",
        ),
        (
            "INSERT INTO inventory_reservations \
             (id, product_id, order_id, quantity, released_quantity, committed_quantity, expires_at) \
             VALUES ('r', 'p', 'o', 2, 1, 2, now())",
            "reservations_committed_within_quantity",
        ),
        (
            "INSERT INTO inventory_reservations (id, product_id, order_id, quantity, expires_at) \
             VALUES ('r', 'ghost', 'o', 1, now())",
            "inventory_reservations_product_id_fkey",
        ),
    ] {
        let error = diesel::sql_query(oversell)
            .execute(&mut c)
            .await
            .expect_err(oversell)
            .to_string();
        assert!(error.contains(refusal), "{oversell}: {error}");
    }

    // An update that sets updated_at keeps it; one that does not is stamped
    // (ON UPDATE CURRENT_TIMESTAMP); available_quantity is derived.
    diesel::sql_query(
        "UPDATE inventory SET reserved_quantity = 4, updated_at = '2000-01-01T00:00:00Z'",
    )
    .execute(&mut c)
    .await
    .expect("a valid update");
    let row: StockRow =
        diesel::sql_query("SELECT available_quantity, updated_at, false AS touched FROM inventory")
            .get_result(&mut c)
            .await
            .expect("row");
    assert_eq!(row.available_quantity, 6);
    assert_eq!(row.updated_at.to_rfc3339(), "2000-01-01T00:00:00+00:00");
    diesel::sql_query("UPDATE inventory SET reserved_quantity = 3")
        .execute(&mut c)
        .await
        .expect("update");
    let row: StockRow = diesel::sql_query(
        "SELECT available_quantity, updated_at, updated_at > '2000-01-01' AS touched FROM inventory",
    )
    .get_result(&mut c)
    .await
    .expect("row");
    assert_eq!(row.available_quantity, 7, "generated column");
    assert!(row.touched, "BEFORE UPDATE trigger: {}", row.updated_at);
}

/// Replicas starting together: the advisory lock lets one migrate and the
/// others find nothing pending, instead of racing on CREATE TYPE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opened_together_on_a_fresh_database_all_migrate() {
    let database = PostgresDatabase::create().await;
    let opened = tokio::join!(
        PostgresStore::open(options(&database)),
        PostgresStore::open(options(&database)),
        PostgresStore::open(options(&database)),
    );
    let stores = [opened.0, opened.1, opened.2].map(|store| store.expect("open"));
    for store in &stores {
        store.ping().await.expect("ping");
    }
    let mut c = AsyncPgConnection::establish(&database.url)
        .await
        .expect("connect");
    let applied: Count =
        diesel::sql_query("SELECT count(*) AS count FROM __diesel_schema_migrations")
            .get_result(&mut c)
            .await
            .expect("migrations table");
    let embedded = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .expect("embedded migrations")
        .len();
    assert_eq!(
        applied.count, embedded as i64,
        "each migration applied once"
    );
    // And a later start finds nothing to do.
    PostgresStore::open(options(&database))
        .await
        .expect("reopen");
}

/// Many attempts at one reservation at once: one creates it, the others find
/// it (the unique index decides, and the losers of the race run again and
/// see the winner's reservation), and the stock is held once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_reservations_create_one() {
    let database = PostgresDatabase::create().await;
    let store = Arc::new(PostgresStore::open(options(&database)).await.expect("open"));
    set_stock(&store, "p", 10).await;
    let inventory = Inventory::new(
        store.clone(),
        InventorySettings {
            default_reservation_timeout: Duration::from_secs(300),
            max_reservation_timeout: Duration::from_secs(3600),
            record_checks: false,
            request_id_ttl: Duration::from_secs(3600),
            events: inventory_service::domain::events::EventSettings::default(),
            batch: None,
        },
    );

    let mut tasks = Vec::new();
    for _ in 0..16 {
        let inventory = inventory.clone();
        tasks.push(tokio::spawn(async move {
            inventory.reserve("p", "o", 2, 300).await
        }));
    }
    let (mut created, mut existing) = (Vec::new(), Vec::new());
    for task in tasks {
        let result = task.await.expect("task").expect("reserve");
        if result.created {
            created.push(result.reservation.id);
        } else {
            existing.push(result.reservation.id);
        }
    }
    assert_eq!(created.len(), 1);
    assert!(existing.iter().all(|id| *id == created[0]), "{existing:?}");
    let stock = store.stock("p").await.expect("stock").expect("exists");
    assert_eq!(stock.reserved_quantity, 2);
}

/// Two replicas' sweepers at once: every due reservation is expired exactly
/// once (SKIP LOCKED), and all the stock comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sweepers_expire_each_reservation_once() {
    let database = PostgresDatabase::create().await;
    let first = Arc::new(PostgresStore::open(options(&database)).await.expect("open"));
    let second = Arc::new(PostgresStore::open(options(&database)).await.expect("open"));
    for product in ["a", "b", "c"] {
        set_stock(&first, product, 100).await;
    }
    let past = now() - TimeDelta::seconds(1);
    let mut due = 0;
    for i in 0..60 {
        let product = ["a", "b", "c"][i % 3];
        let outcome = first
            .reserve(reservation(product, &format!("o{i}"), 1, past))
            .await
            .expect("reserve");
        assert!(matches!(outcome, ReserveOutcome::Created { .. }));
        due += 1;
    }
    first
        .reserve(reservation("a", "later", 5, now() + TimeDelta::minutes(5)))
        .await
        .expect("reserve");

    let sweep = |store: Arc<PostgresStore>| {
        tokio::spawn(async move {
            let mut expired: Vec<Reservation> = Vec::new();
            loop {
                let batch = store.expire_due(now(), 7).await.expect("sweep");
                if batch.is_empty() {
                    return expired;
                }
                expired.extend(batch);
            }
        })
    };
    let (one, two) = tokio::join!(sweep(first.clone()), sweep(second.clone()));
    let mut ids: Vec<String> = one
        .expect("first sweeper")
        .into_iter()
        .chain(two.expect("second sweeper"))
        .map(|r| r.id)
        .collect();
    ids.sort();
    let swept = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), swept, "a reservation was expired twice");
    assert_eq!(swept, due);

    for (product, reserved) in [("a", 5), ("b", 0), ("c", 0)] {
        let stock = first.stock(product).await.expect("stock").expect("exists");
        assert_eq!(stock.reserved_quantity, reserved, "{product}");
    }
    let mut c = AsyncPgConnection::establish(&database.url)
        .await
        .expect("connect");
    let releases: Count = diesel::sql_query(
        "SELECT count(*) AS count FROM inventory_history \
         WHERE operation_type = 'release' AND metadata->>'reason' = 'expired'",
    )
    .get_result(&mut c)
    .await
    .expect("history");
    assert_eq!(releases.count, i64::try_from(due).expect("small"));
}

/// The history of an expiry batch reads as if each reservation had been
/// released in turn, as on SQLite.
#[tokio::test]
async fn an_expiry_batch_records_each_release_in_turn() {
    let database = PostgresDatabase::create().await;
    let store = PostgresStore::open(options(&database)).await.expect("open");
    set_stock(&store, "p", 10).await;
    let past = now() - TimeDelta::seconds(1);
    for (order, quantity) in [("o1", 2), ("o2", 3)] {
        store
            .reserve(reservation("p", order, quantity, past))
            .await
            .expect("reserve");
    }
    let expired = store.expire_due(now(), 10).await.expect("sweep");
    assert_eq!(expired.len(), 2);
    let history = store
        .history("p", None, 10)
        .await
        .expect("history")
        .expect("product exists");
    let releases: Vec<(i64, i64)> = history
        .iter()
        .filter(|entry| entry.metadata["reason"] == "expired")
        .map(|entry| {
            (
                entry.metadata["reserved_quantity"]
                    .as_i64()
                    .expect("number"),
                entry.metadata["available_quantity"]
                    .as_i64()
                    .expect("number"),
            )
        })
        .collect();
    // Newest first; both share a timestamp, so ids (UUIDv7) order them.
    let mut releases = releases;
    releases.sort();
    assert_eq!(releases, vec![(0, 10), (3, 7)]);
}

#[test]
fn test_database_urls_keep_the_server_and_the_query() {
    for (admin, url) in [
        (
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://postgres@127.0.0.1:5432/t",
        ),
        (
            "postgres://u:p@db/postgres?sslmode=disable",
            "postgres://u:p@db/t?sslmode=disable",
        ),
        ("postgresql://db:5433", "postgresql://db:5433/t"),
    ] {
        assert_eq!(with_database(admin, "t"), url);
    }
}

/// The query behind the history page order: equal timestamps fall back to
/// the id, compared byte-wise.
#[tokio::test]
async fn ids_compare_byte_wise() {
    #[derive(QueryableByName)]
    struct Ordered {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let database = PostgresDatabase::create().await;
    let _store = PostgresStore::open(options(&database)).await.expect("open");
    let mut c = AsyncPgConnection::establish(&database.url)
        .await
        .expect("connect");
    diesel::sql_query(
        "INSERT INTO inventory_history (id, product_id, operation_type, quantity_change) \
         VALUES ('a-b', 'p', 'check', 0), ('a_a', 'p', 'check', 0), ('aB', 'p', 'check', 0)",
    )
    .execute(&mut c)
    .await
    .expect("insert");
    let ids: Vec<Ordered> = diesel::sql_query("SELECT id FROM inventory_history ORDER BY id")
        .load(&mut c)
        .await
        .expect("select");
    let ids: Vec<String> = ids.into_iter().map(|row| row.id).collect();
    assert_eq!(ids, ["a-b", "aB", "a_a"]);
}

/// A database made before commits existed upgrades in place (old rows get
/// `committed_quantity` 0 and can be committed), and the upgrade reverts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_migration_upgrades_existing_data_and_reverts() {
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
    use diesel_migrations::MigrationHarness as _;

    type Harness = AsyncConnectionWrapper<AsyncPgConnection>;
    let database = PostgresDatabase::create().await;
    let url = database.url.clone();
    tokio::task::spawn_blocking(move || {
        use diesel::connection::SimpleConnection as _;
        let mut c = <Harness as diesel::Connection>::establish(&url).expect("connect");
        c.run_next_migration(MIGRATIONS).expect("first migration");
        c.batch_execute(
            "INSERT INTO inventory (product_id, total_quantity, reserved_quantity) VALUES ('p', 10, 4); \
             INSERT INTO inventory_reservations (id, product_id, order_id, quantity, released_quantity, expires_at) \
             VALUES ('r1', 'p', 'o1', 5, 1, now() + interval '1 day');",
        )
        .expect("old rows");
    })
    .await
    .expect("setup");

    let store = PostgresStore::open(options(&database))
        .await
        .expect("open applies the commit migration");
    let outcome = store
        .commit(CommitRequest {
            product_id: "p".into(),
            order_id: "o1".into(),
            quantity: Some(1),
            key: None,
        })
        .await
        .expect("commit part of an old reservation");
    let Keyed::Fresh(CommitOutcome::Committed {
        reservation, stock, ..
    }) = outcome
    else {
        panic!("expected Committed, got {outcome:?}");
    };
    assert_eq!(reservation.held_quantity(), 3);
    assert_eq!((stock.total_quantity, stock.reserved_quantity), (9, 3));
    assert_eq!(stock.version, 2, "an existing row starts at version 1");
    store.close();

    let url = database.url.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = <Harness as diesel::Connection>::establish(&url).expect("connect");
        // Every later migration, then this one.
        while c.applied_migrations().expect("applied").len() > 1 {
            c.revert_last_migration(MIGRATIONS).expect("revert");
        }
        c.run_pending_migrations(MIGRATIONS).expect("upgrade again");
    })
    .await
    .expect("revert and upgrade");
}
