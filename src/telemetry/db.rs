//! Spans and metrics for database work, from diesel's connection
//! instrumentation: one `db.transaction` span per transaction and one
//! `db.statement` span per statement under it (or under the caller's span
//! outside a transaction), and the statement latency histogram.
//!
//! A store creates a [`DbTrace`] for each checkout of a pooled connection
//! (capturing the caller's span and the server's dispatch), installs
//! [`DbTrace::instrumentation`] on the connection, and drops the trace when
//! the work is done: the connection keeps an inert instrumentation until its
//! next checkout, and no span outlives the work.
//!
//! Events may arrive on a blocking thread (SQLite) where the server's
//! dispatch is not the default; they are handled, and spans dropped, under
//! the server's dispatch all the same: a span closing elsewhere would never
//! release its parent, and the whole trace would stay open.
//!
//! `db.statement` is the SQL diesel generates, with its bind placeholders
//! (`?` or `$1`) and never the bound values: the text is cut where diesel's
//! debug output starts listing them, before they are formatted.
//!
//! `db.rows_affected`: diesel's events carry no row count, so the span of a
//! finished INSERT, UPDATE or DELETE stays open until the store reports the
//! count it got back ([`rows_affected`]), or until the next statement starts.
//! The store runs its work inside [`DbTrace::scope`] (async) or
//! [`DbTrace::enter_thread`] (on a blocking thread), which is how
//! [`rows_affected`] finds the checkout's trace. Counts are matched to spans
//! in the order the statements finished, which also holds for statements
//! PostgreSQL pipelines.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use tracing::field::Empty;
use tracing::{Dispatch, Span};

use super::ServerContext;

/// The database work of one pooled-connection checkout.
pub struct DbTrace {
    /// Shared with the connection's instrumentation; cleared on drop.
    state: Arc<Mutex<State>>,
}

/// Where new spans go, when spans are exported and there is a caller span.
struct SpanTarget {
    /// The server's dispatch (the connection may run on a blocking thread
    /// where it is not the default).
    dispatch: Dispatch,
    /// The caller's span: the parent of transactions and of statements
    /// outside one.
    parent: Span,
    /// How long the checkout waited for the connection, in milliseconds.
    pool_wait_ms: f64,
}

/// One statement sent and not yet answered.
struct Pending {
    /// Its SQL, without bind values; matches the finish event to it.
    sql: String,
    /// When it was sent.
    started: Instant,
    /// Its span, when spans are built.
    span: Option<Span>,
}

struct State {
    /// False once the work is done: later events are ignored.
    active: bool,
    /// `sqlite` or `postgresql`.
    system: &'static str,
    /// The server's instruments.
    context: Arc<ServerContext>,
    /// Where spans go, if they are built.
    spans: Option<SpanTarget>,
    /// The open transaction's span.
    transaction: Option<Span>,
    /// Set by a commit or rollback event: the transaction span ends when its
    /// COMMIT or ROLLBACK statement has answered.
    ending: bool,
    /// Statements in flight (PostgreSQL pipelines several).
    pending: Vec<Pending>,
    /// Finished writes whose spans wait for their row count, oldest first.
    awaiting_rows: VecDeque<Span>,
}

tokio::task_local! {
    /// The trace of the checkout whose async work is running.
    static TASK_TRACE: Arc<Mutex<State>>;
}

thread_local! {
    /// The trace of the checkout whose blocking work runs on this thread.
    static THREAD_TRACE: RefCell<Option<Arc<Mutex<State>>>> = const { RefCell::new(None) };
}

/// Reports the row count a write statement returned: recorded as
/// `db.rows_affected` on that statement's span. Returns `rows`, so a call
/// site reads `.execute(c).map(rows_affected)?`. Does nothing outside a
/// traced checkout.
pub fn rows_affected(rows: usize) -> usize {
    let record = |state: &Arc<Mutex<State>>| {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(span) = state.awaiting_rows.pop_front() {
            let dispatch = state.spans.as_ref().map(|t| t.dispatch.clone());
            drop(state);
            let finish = || {
                span.record("db.rows_affected", rows as u64);
                drop(span);
            };
            match dispatch {
                Some(dispatch) => tracing::dispatcher::with_default(&dispatch, finish),
                None => finish(),
            }
        }
    };
    if TASK_TRACE.try_with(record).is_err() {
        THREAD_TRACE.with(|current| {
            if let Some(state) = current.borrow().as_ref() {
                record(state);
            }
        });
    }
    rows
}

/// Clears the thread's current trace when the blocking work ends.
pub struct ThreadTraceGuard {
    previous: Option<Arc<Mutex<State>>>,
}

impl Drop for ThreadTraceGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        THREAD_TRACE.with(|current| *current.borrow_mut() = previous);
    }
}

impl DbTrace {
    /// Starts tracing a checkout that waited `pool_wait` for its connection.
    /// `None` outside a server's dispatch (unit tests, tools).
    pub fn begin(system: &'static str, pool_wait: Duration) -> Option<Self> {
        let context = super::current()?;
        context.metrics.record_pool_wait(system, pool_wait);
        let parent = Span::current();
        let spans = (context.exporting && !parent.is_none()).then(|| SpanTarget {
            dispatch: tracing::dispatcher::get_default(Dispatch::clone),
            parent,
            pool_wait_ms: pool_wait.as_secs_f64() * 1000.0,
        });
        Some(Self {
            state: Arc::new(Mutex::new(State {
                active: true,
                system,
                context,
                spans,
                transaction: None,
                ending: false,
                pending: Vec::new(),
                awaiting_rows: VecDeque::new(),
            })),
        })
    }

    /// Runs async store work with this checkout as [`rows_affected`]'s target.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        TASK_TRACE.scope(self.state.clone(), work).await
    }

    /// Makes this checkout [`rows_affected`]'s target on this thread until
    /// the guard drops (for work on a blocking thread).
    pub fn enter_thread(&self) -> ThreadTraceGuard {
        let previous =
            THREAD_TRACE.with(|current| current.borrow_mut().replace(self.state.clone()));
        ThreadTraceGuard { previous }
    }

    /// The instrumentation to install on the checked-out connection.
    pub fn instrumentation(&self) -> impl Instrumentation + use<> {
        ConnectionInstrumentation {
            state: self.state.clone(),
        }
    }
}

impl Drop for DbTrace {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.active = false;
        let pending = std::mem::take(&mut state.pending);
        let awaiting = std::mem::take(&mut state.awaiting_rows);
        let transaction = state.transaction.take();
        let spans = state.spans.take();
        drop(state);
        if let Some(target) = &spans {
            tracing::dispatcher::with_default(&target.dispatch, || {
                drop(awaiting);
                drop(pending);
                drop(transaction);
            });
        }
        if let Some(target) = spans {
            let SpanTarget {
                dispatch, parent, ..
            } = target;
            tracing::dispatcher::with_default(&dispatch, || drop(parent));
        }
    }
}

/// The diesel side of a [`DbTrace`].
struct ConnectionInstrumentation {
    state: Arc<Mutex<State>>,
}

impl Instrumentation for ConnectionInstrumentation {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.active {
            return;
        }
        match state.spans.as_ref().map(|target| target.dispatch.clone()) {
            Some(dispatch) => {
                tracing::dispatcher::with_default(&dispatch, || state.handle(event));
            }
            None => state.handle(event),
        }
    }
}

impl State {
    fn handle(&mut self, event: InstrumentationEvent<'_>) {
        let state = self;
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                // Counts not reported by now will not be: close those spans.
                state.awaiting_rows.clear();
                let sql = sql_text(query);
                // A transaction begun and ended by statements rather than
                // by diesel's transaction manager (the PostgreSQL store
                // pipelines them with its reads and writes).
                let (operation, _) = summary(&sql);
                if operation == "BEGIN" && state.transaction.is_none() {
                    state.transaction = state.transaction_span();
                }
                let span = state.statement_span(&sql);
                state.pending.push(Pending {
                    sql,
                    started: Instant::now(),
                    span,
                });
                match operation {
                    "COMMIT" => state.end_transaction("commit"),
                    "ROLLBACK" => state.end_transaction("rollback"),
                    _ => {}
                }
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                // One statement in flight (always so on SQLite) is the one
                // that finished; only a pipeline needs its text to tell.
                let index = if state.pending.len() == 1 {
                    Some(0)
                } else {
                    let sql = sql_text(query);
                    state.pending.iter().position(|p| p.sql == sql)
                };
                if let Some(pending) = index.map(|i| state.pending.remove(i)) {
                    let (operation, _) = summary(&pending.sql);
                    state.context.metrics.record_query(
                        state.system,
                        operation,
                        pending.started.elapsed(),
                    );
                    if let (Some(span), Some(error)) = (&pending.span, error) {
                        span.record("otel.status_description", error.to_string());
                    }
                    let write = matches!(operation, "INSERT" | "UPDATE" | "DELETE");
                    if let (Some(span), true, None) = (pending.span, write, error) {
                        state.awaiting_rows.push_back(span);
                    }
                }
                if state.ending && state.pending.is_empty() {
                    state.ending = false;
                    state.transaction = None;
                }
            }
            InstrumentationEvent::BeginTransaction { depth, .. } if depth.get() == 1 => {
                state.transaction = state.transaction_span();
            }
            InstrumentationEvent::CommitTransaction { depth, .. } if depth.get() == 1 => {
                state.end_transaction("commit");
            }
            InstrumentationEvent::RollbackTransaction { depth, .. } if depth.get() == 1 => {
                state.end_transaction("rollback");
            }
            _ => {}
        }
    }

    fn statement_span(&self, sql: &str) -> Option<Span> {
        let target = self.spans.as_ref()?;
        let parent = self.transaction.as_ref().unwrap_or(&target.parent);
        let (operation, table) = summary(sql);
        let name = match table {
            Some(table) => format!("{operation} {table}"),
            None => operation.to_owned(),
        };
        Some(tracing::dispatcher::with_default(&target.dispatch, || {
            tracing::info_span!(
                target: "inventory_service::db",
                parent: parent,
                "db.statement",
                otel.name = %name,
                otel.kind = "client",
                otel.status_description = Empty,
                db.system = self.system,
                db.operation = operation,
                db.statement = sql,
                db.rows_affected = Empty,
            )
        }))
    }

    fn transaction_span(&self) -> Option<Span> {
        let target = self.spans.as_ref()?;
        Some(tracing::dispatcher::with_default(&target.dispatch, || {
            tracing::info_span!(
                target: "inventory_service::db",
                parent: &target.parent,
                "db.transaction",
                otel.kind = "client",
                db.system = self.system,
                db.pool.wait_ms = target.pool_wait_ms,
                db.transaction.outcome = Empty,
            )
        }))
    }

    fn end_transaction(&mut self, outcome: &'static str) {
        if let Some(span) = &self.transaction {
            span.record("db.transaction.outcome", outcome);
            self.ending = true;
        }
    }
}

/// A query's SQL as diesel prints it, cut before the bind values.
fn sql_text(query: &dyn fmt::Display) -> String {
    const BINDS: &str = " -- binds: ";
    /// Stops formatting (with an error) once the binds start, so they are
    /// never formatted.
    struct UntilBinds(String);
    impl fmt::Write for UntilBinds {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            // Only the new text, and the end of the old one it may complete
            // the marker with, can hold the marker's start.
            let from = self.0.len().saturating_sub(BINDS.len() - 1);
            self.0.push_str(s);
            let found = self.0.as_bytes()[from..]
                .windows(BINDS.len())
                .position(|window| window == BINDS.as_bytes());
            match found {
                Some(at) => {
                    self.0.truncate(from + at);
                    Err(fmt::Error)
                }
                None => Ok(()),
            }
        }
    }
    let mut out = UntilBinds(String::new());
    // An error here means the binds were reached: the SQL is complete.
    let _ = write!(out, "{query}");
    out.0
}

/// The statement's operation (its first keyword, upper-cased) and the table
/// it works on, when one can be read off simply.
fn summary(sql: &str) -> (&'static str, Option<String>) {
    // A data-modifying common table expression (`WITH u AS (UPDATE t ...)
    // SELECT ...`) is named after the statement it wraps.
    if let Some(inner) = sql
        .trim_start()
        .get(..5)
        .filter(|w| w.eq_ignore_ascii_case("WITH "))
        .and_then(|_| sql.find("AS ("))
        .map(|at| &sql[at + 4..])
    {
        let (operation, table) = summary(inner);
        if matches!(operation, "INSERT" | "UPDATE" | "DELETE") {
            return (operation, table);
        }
    }
    let mut words = sql.split_whitespace();
    let first = words.next().unwrap_or_default();
    let operation = [
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "PRAGMA",
        "WITH",
        "SET",
    ]
    .into_iter()
    .find(|op| first.eq_ignore_ascii_case(op))
    .unwrap_or("OTHER");
    let after = |keyword: &str| {
        let mut words = sql.split_whitespace();
        words.find(|w| w.eq_ignore_ascii_case(keyword))?;
        words.next().map(|table| {
            table
                .trim_matches(|c: char| c == '"' || c == '`' || c == '(' || c == ';')
                .to_owned()
        })
    };
    let table = match operation {
        "SELECT" | "DELETE" => after("FROM"),
        "INSERT" => after("INTO"),
        "UPDATE" => words.next().map(|t| t.trim_matches(['"', '`']).to_owned()),
        _ => None,
    };
    (operation, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_lose_their_binds_and_get_a_summary() {
        struct Debugish;
        impl fmt::Display for Debugish {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let sql = r#"SELECT "inventory"."product_id" FROM "inventory" WHERE "inventory"."product_id" = $1"#;
                write!(f, "{sql} -- binds: {:?}", ["secret-product"])
            }
        }
        let sql = sql_text(&Debugish);
        assert!(!sql.contains("secret-product"), "{sql}");
        assert!(sql.ends_with("= $1"), "{sql}");
        assert_eq!(summary(&sql), ("SELECT", Some("inventory".to_owned())));
        assert_eq!(
            summary(r#"INSERT INTO "inventory_history" ("id") VALUES (?)"#),
            ("INSERT", Some("inventory_history".to_owned()))
        );
        assert_eq!(
            summary(r#"UPDATE "inventory" SET x = ?"#),
            ("UPDATE", Some("inventory".to_owned()))
        );
        assert_eq!(summary("BEGIN IMMEDIATE"), ("BEGIN", None));
    }
}
