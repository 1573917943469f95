//! [`Fixed`]: a statement of fixed SQL text with typed binds, which diesel
//! prepares once per connection and reuses.
//!
//! diesel's `sql_query` marks itself unsafe to cache (its text may be
//! anything), so every run of it is parsed and planned again, after a round
//! trip of its own to prepare it. The statements of a unit of work are few
//! and fixed (`work.rs`), so they are written as constants with `$1`, `$2`
//! ... placeholders and bound through this type, which diesel caches by
//! its text like any query it builds itself.

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// A statement of fixed text whose placeholders `$1`, `$2`, ... take the
/// binds in `B`, in order.
#[derive(Debug)]
pub(super) struct Fixed<B> {
    /// The SQL, with PostgreSQL placeholders.
    sql: &'static str,
    /// The values of the placeholders.
    binds: B,
}

impl<B> Fixed<B> {
    /// `sql` with `binds`.
    pub(super) fn new(sql: &'static str, binds: B) -> Self {
        Self { sql, binds }
    }
}

/// One bound value of SQL type `ST`.
#[derive(Debug)]
pub(super) struct Bound<ST, T> {
    value: T,
    sql_type: PhantomData<ST>,
}

/// `value` bound as SQL type `ST`.
pub(super) fn bind<ST, T>(value: T) -> Bound<ST, T> {
    Bound {
        value,
        sql_type: PhantomData,
    }
}

/// The binds of a [`Fixed`] statement.
pub(super) trait Binds {
    /// Pushes bind number `index` (0-based).
    fn push<'b>(&'b self, index: usize, out: AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

impl Binds for () {
    fn push<'b>(&'b self, index: usize, _out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Err(missing(index))
    }
}

fn missing(index: usize) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(
        format!("no value for placeholder ${}", index + 1).into(),
    )
}

macro_rules! binds_for_tuples {
    ($( ($($n:tt $st:ident $t:ident),+) )+) => {$(
        impl<$($st, $t),+> Binds for ($(Bound<$st, $t>,)+)
        where
            $(Pg: HasSqlType<$st>, $t: ToSql<$st, Pg>,)+
        {
            fn push<'b>(&'b self, index: usize, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                match index {
                    $($n => out.push_bind_param::<$st, $t>(&self.$n.value),)+
                    other => Err(missing(other)),
                }
            }
        }
    )+};
}

binds_for_tuples! {
    (0 S0 T0)
    (0 S0 T0, 1 S1 T1)
    (0 S0 T0, 1 S1 T1, 2 S2 T2)
    (0 S0 T0, 1 S1 T1, 2 S2 T2, 3 S3 T3)
    (0 S0 T0, 1 S1 T1, 2 S2 T2, 3 S3 T3, 4 S4 T4)
    (0 S0 T0, 1 S1 T1, 2 S2 T2, 3 S3 T3, 4 S4 T4, 5 S5 T5)
    (0 S0 T0, 1 S1 T1, 2 S2 T2, 3 S3 T3, 4 S4 T4, 5 S5 T5, 6 S6 T6)
    (0 S0 T0, 1 S1 T1, 2 S2 T2, 3 S3 T3, 4 S4 T4, 5 S5 T5, 6 S6 T6, 7 S7 T7)
    (0 S0 T0, 1 S1 T1, 2 S2 T2, 3 S3 T3, 4 S4 T4, 5 S5 T5, 6 S6 T6, 7 S7 T7, 8 S8 T8)
    (0 S0 T0, 1 S1 T1, 2 S2 T2, 3 S3 T3, 4 S4 T4, 5 S5 T5, 6 S6 T6, 7 S7 T7, 8 S8 T8, 9 S9 T9)
    (0 S0 T0, 1 S1 T1, 2 S2 T2, 3 S3 T3, 4 S4 T4, 5 S5 T5, 6 S6 T6, 7 S7 T7, 8 S8 T8, 9 S9 T9,
     10 S10 T10)
}

impl<B: Binds> QueryFragment<Pg> for Fixed<B> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // The text between placeholders as it is; each `$n` becomes bind n,
        // numbered again by diesel as it pushes them.
        let mut rest = self.sql;
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(rest.len() - at - 1, |end| end);
            let number: usize = rest[at + 1..at + 1 + digits].parse().map_err(|_| {
                diesel::result::Error::QueryBuilderError(
                    format!("a `$` without a placeholder number in {:?}", self.sql).into(),
                )
            })?;
            self.binds.push(number - 1, out.reborrow())?;
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl<B> QueryId for Fixed<B> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B> Query for Fixed<B> {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use diesel::debug_query;
    use diesel::sql_types::{Array, Integer, Text};

    use super::*;

    #[test]
    fn placeholders_take_their_binds_in_order() {
        let query = Fixed::new(
            "SELECT * FROM unnest($1::varchar[], $2::int4[]) WHERE x = $2",
            (
                bind::<Array<Text>, _>(vec!["a".to_owned()]),
                bind::<Array<Integer>, _>(vec![1]),
            ),
        );
        let shown = debug_query::<Pg, _>(&query).to_string();
        assert!(
            shown.starts_with("SELECT * FROM unnest($1::varchar[], $2::int4[]) WHERE x = $3"),
            "{shown}"
        );
        assert!(
            shown.contains(r#"["a"]"#) && shown.contains("[1]"),
            "{shown}"
        );
        let plain = debug_query::<Pg, _>(&Fixed::new("COMMIT", ())).to_string();
        assert!(plain.starts_with("COMMIT"), "{plain}");
    }
}
