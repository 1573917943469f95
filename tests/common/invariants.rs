//! Invariant queries run against a test database itself, after a load:
//! each returns rows of a key and two numbers to compare.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};

use super::TestDatabase;

/// One row of an invariant query: a key and two numbers to compare.
#[derive(Debug, QueryableByName)]
pub struct Row {
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = BigInt)]
    pub a: i64,
    #[diesel(sql_type = BigInt)]
    pub b: i64,
}

/// reserved_quantity, and what active reservations hold (less what was
/// released and committed).
pub const RESERVED_VS_HELD: &str = "SELECT i.product_id AS key, CAST(i.reserved_quantity AS BIGINT) AS a, \
     CAST(COALESCE((SELECT SUM(r.quantity - r.released_quantity - r.committed_quantity) FROM inventory_reservations r \
     WHERE r.product_id = i.product_id AND r.status = 'active'), 0) AS BIGINT) AS b FROM inventory i";
/// total and reserved.
pub const LEVELS: &str = "SELECT product_id AS key, CAST(total_quantity AS BIGINT) AS a, \
     CAST(reserved_quantity AS BIGINT) AS b FROM inventory";
/// Available, and the sum of the history's signed changes.
pub const AVAILABLE_VS_HISTORY: &str = "SELECT i.product_id AS key, \
     CAST(i.total_quantity - i.reserved_quantity AS BIGINT) AS a, \
     CAST(COALESCE((SELECT SUM(h.quantity_change) FROM inventory_history h \
     WHERE h.product_id = i.product_id), 0) AS BIGINT) AS b FROM inventory i";
/// Each reservation's quantity, and how many rows it has.
pub const RESERVATIONS: &str = "SELECT order_id || '/' || product_id AS key, CAST(MAX(quantity) AS BIGINT) AS a, \
     CAST(COUNT(*) AS BIGINT) AS b FROM inventory_reservations GROUP BY order_id, product_id";
/// Reserve entries in the history per reservation id, and reservations.
pub const RESERVE_ENTRIES: &str = "SELECT 'all' AS key, \
     CAST((SELECT COUNT(*) FROM inventory_history WHERE operation_type = 'reserve') AS BIGINT) AS a, \
     CAST((SELECT COUNT(*) FROM inventory_reservations) AS BIGINT) AS b";

/// Each product's version, and its updates and commits in the history (the
/// update that created it made version 1).
pub const VERSION_VS_HISTORY: &str = "SELECT i.product_id AS key, CAST(i.version AS BIGINT) AS a, \
     CAST((SELECT COUNT(*) FROM inventory_history h WHERE h.product_id = i.product_id \
     AND h.operation_type IN ('update', 'commit')) AS BIGINT) AS b FROM inventory i";

pub async fn query(database: &TestDatabase, sql: &'static str) -> Vec<Row> {
    if let Some(url) = database.postgres_url() {
        let mut conn = inventory_service::store::postgres::connect(url)
            .await
            .expect("connect to the test database");
        diesel_async::RunQueryDsl::load(diesel::sql_query(sql), &mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    } else {
        let path = database.sqlite_path().expect("a SQLite file");
        tokio::task::spawn_blocking(move || {
            use diesel::Connection as _;
            let mut conn = diesel::SqliteConnection::establish(&path.display().to_string())
                .expect("open the test database");
            diesel::RunQueryDsl::load(diesel::sql_query(sql), &mut conn)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
        .await
        .expect("query task")
    }
}
