//! The classification of diesel's errors into the kinds of store failure
//! the domain acts on ([`StoreError`]). The same mapping serves SQLite and
//! PostgreSQL: diesel classifies most failures, and the few it leaves
//! unclassified (SQLite busy, PostgreSQL deadlock, shutdown, timeouts) are
//! recognised by their message.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::domain::StoreError as Error;

impl From<DieselError> for Error {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::DatabaseError(kind, info) => {
                let message = info.message().to_owned();
                match kind {
                    DatabaseErrorKind::UniqueViolation
                    | DatabaseErrorKind::SerializationFailure => Self::Conflict(message),
                    // PostgreSQL (tokio-postgres) reports a lost or closed
                    // connection as an error without SQLSTATE: the command
                    // never reached the server or its answer never came back.
                    DatabaseErrorKind::ClosedConnection
                    | DatabaseErrorKind::UnableToSendCommand => Self::Unavailable(message),
                    _ if is_deadlock(&message) => Self::Conflict(message),
                    _ if is_busy(&message) => Self::Unavailable(message),
                    kind => Self::Internal(DieselError::DatabaseError(kind, info).to_string()),
                }
            }
            DieselError::BrokenTransactionManager => {
                Self::Unavailable("the connection was lost inside a transaction".to_owned())
            }
            // A failed COMMIT whose ROLLBACK failed too: the commit error says why.
            DieselError::RollbackErrorOnCommit { commit_error, .. } => Self::from(*commit_error),
            error => Self::Internal(error.to_string()),
        }
    }
}

/// Opening a connection failed: nothing was sent on it.
impl From<diesel::ConnectionError> for Error {
    fn from(error: diesel::ConnectionError) -> Self {
        Self::NotConnected(error.to_string())
    }
}

/// The pool lent no connection (none free in time, opening one failed, the
/// pool is closed): the work never started.
impl From<diesel_async::pooled_connection::deadpool::PoolError> for Error {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::NotConnected(format!("no database connection: {error}"))
    }
}

/// Load, not a bug: SQLite reports a writer that waited past `busy_timeout`
/// as "database is locked" (SQLITE_BUSY); PostgreSQL reports a server shutting
/// down or starting, too many connections, a terminated session and a
/// statement or lock timeout with these messages (SQLSTATE classes 53, 57 and
/// 55P03, which diesel does not classify; the server's messages are in
/// English unless `lc_messages` says otherwise).
fn is_busy(message: &str) -> bool {
    const BUSY: [&str; 7] = [
        "database is locked",
        "database is busy",
        "the database system is",
        "too many clients",
        "terminating connection",
        "canceling statement due to",
        "could not obtain lock",
    ];
    BUSY.iter().any(|busy| message.contains(busy))
}

/// PostgreSQL aborted this transaction to break a deadlock (SQLSTATE 40P01,
/// which diesel does not classify); retrying it may succeed.
fn is_deadlock(message: &str) -> bool {
    message.contains("deadlock detected")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn database_failures_map_to_the_kind_callers_act_on() {
        use DatabaseErrorKind as K;
        let cases = [
            (K::UniqueViolation, "duplicate key value", "conflict"),
            (
                K::SerializationFailure,
                "could not serialize access",
                "conflict",
            ),
            (K::Unknown, "deadlock detected", "conflict"),
            (K::ClosedConnection, "connection closed", "unavailable"),
            (K::UnableToSendCommand, "connection closed", "unavailable"),
            (K::Unknown, "database is locked", "unavailable"),
            (
                K::Unknown,
                "the database system is shutting down",
                "unavailable",
            ),
            (
                K::Unknown,
                "terminating connection due to administrator command",
                "unavailable",
            ),
            (K::Unknown, "sorry, too many clients already", "unavailable"),
            (
                K::Unknown,
                "canceling statement due to statement timeout",
                "unavailable",
            ),
            (K::CheckViolation, "violates check constraint", "internal"),
            (K::Unknown, "syntax error", "internal"),
        ];
        for (kind, message, expected) in cases {
            let mapped = match Error::from(database_error(kind, message)) {
                Error::Conflict(_) => "conflict",
                Error::NotConnected(_) => "not connected",
                Error::Unavailable(_) => "unavailable",
                Error::Internal(_) => "internal",
                Error::Abandoned => "abandoned",
            };
            assert_eq!(mapped, expected, "{message}");
        }
        let lost = Error::from(DieselError::RollbackErrorOnCommit {
            rollback_error: Box::new(database_error(K::ClosedConnection, "gone")),
            commit_error: Box::new(database_error(K::SerializationFailure, "serialize")),
        });
        assert!(matches!(lost, Error::Conflict(_)), "{lost:?}");
    }

    #[test]
    fn only_failures_to_connect_happen_before_any_statement() {
        use deadpool::managed::{PoolError, TimeoutType};
        let not_connected = [
            Error::from(diesel::ConnectionError::BadConnection(
                "Connection refused".into(),
            )),
            Error::from(PoolError::Timeout(TimeoutType::Wait)),
            Error::from(PoolError::Backend(
                diesel_async::pooled_connection::PoolError::ConnectionError(
                    diesel::ConnectionError::BadConnection("Connection refused".into()),
                ),
            )),
        ];
        for error in not_connected {
            assert!(error.is_transient(), "{error:?}");
            assert!(error.before_any_statement(), "{error:?}");
            assert!(error.to_string().starts_with("database unavailable: "));
        }
        let lost = Error::from(database_error(
            DatabaseErrorKind::ClosedConnection,
            "connection closed",
        ));
        assert!(lost.is_transient() && !lost.before_any_statement());
        for error in [
            Error::Conflict("duplicate key value".into()),
            Error::Internal("syntax error".into()),
        ] {
            assert!(!error.is_transient() && !error.before_any_statement());
        }
    }
}
