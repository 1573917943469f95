//! Unit costs and stock totals: SQL both backends run as written (SQLite
//! reads `$1` as a named parameter, numbered by first appearance, which
//! binds in the same order as PostgreSQL's).

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Double, Text};

use crate::domain::StockTotals;

/// Sets a product's cost, if the product exists (no row otherwise).
pub(crate) const SET: &str = "INSERT INTO product_costs (product_id, currency, unit_cost_minor) \
     SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM inventory WHERE product_id = $1) \
     ON CONFLICT (product_id) DO UPDATE \
     SET currency = excluded.currency, unit_cost_minor = excluded.unit_cost_minor";

/// Clears a product's cost.
pub(crate) const CLEAR: &str = "DELETE FROM product_costs WHERE product_id = $1";

/// Whether a product exists.
pub(crate) const EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM inventory WHERE product_id = $1) AS found";

/// Units on hand over every product.
pub(crate) const UNITS: &str =
    "SELECT CAST(COALESCE(SUM(total_quantity), 0) AS BIGINT) AS units FROM inventory";

/// Stock on hand at unit cost, by currency, summed as floats (see
/// [`StockTotals::value`]): in BIGINT a product of 9.3 million units at the
/// largest cost would overflow it (PostgreSQL fails the query).
pub(crate) const VALUE: &str = "SELECT c.currency AS currency, \
     CAST(SUM(CAST(i.total_quantity AS DOUBLE PRECISION) * c.unit_cost_minor) \
     AS DOUBLE PRECISION) AS minor_units \
     FROM product_costs c JOIN inventory i ON i.product_id = c.product_id \
     GROUP BY c.currency ORDER BY c.currency";

/// [`EXISTS`] read back.
#[derive(QueryableByName)]
pub(crate) struct Found {
    #[diesel(sql_type = Bool)]
    pub(crate) found: bool,
}

/// [`UNITS`] read back.
#[derive(QueryableByName)]
pub(crate) struct Units {
    #[diesel(sql_type = BigInt)]
    pub(crate) units: i64,
}

/// A row of [`VALUE`].
#[derive(QueryableByName)]
pub(crate) struct Value {
    #[diesel(sql_type = Text)]
    pub(crate) currency: String,
    #[diesel(sql_type = Double)]
    pub(crate) minor_units: f64,
}

/// The totals of [`UNITS`] and the rows of [`VALUE`].
pub(crate) fn totals(units: Units, value: Vec<Value>) -> StockTotals {
    StockTotals {
        units: units.units,
        value: value
            .into_iter()
            .map(|v| (v.currency, v.minor_units))
            .collect(),
    }
}
