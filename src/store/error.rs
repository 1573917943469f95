//! Store errors: what went wrong talking to the database, in the three kinds
//! the layers above act on differently.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// A database failure. Business outcomes (not found, not enough stock) are
/// not errors here; they are the `Ok` outcomes of each store operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database cannot be reached or is too busy to answer in time;
    /// retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),

    /// A concurrent write won a race (unique key, serialization failure);
    /// the operation can be retried as a whole.
    #[error("conflicting concurrent write: {0}")]
    Conflict(String),

    /// Anything else: a bug, a constraint the code should have honoured, or
    /// stored data the code does not understand.
    #[error("database error: {0}")]
    Internal(String),
}

impl From<DieselError> for Error {
    fn from(error: DieselError) -> Self {
        match &error {
            DieselError::DatabaseError(kind, info) => match kind {
                DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure => {
                    Self::Conflict(info.message().to_owned())
                }
                DatabaseErrorKind::ClosedConnection => Self::Unavailable(info.message().to_owned()),
                _ if is_busy(info.message()) => Self::Unavailable(info.message().to_owned()),
                _ => Self::Internal(error.to_string()),
            },
            DieselError::BrokenTransactionManager => {
                Self::Unavailable("the connection was lost inside a transaction".to_owned())
            }
            _ => Self::Internal(error.to_string()),
        }
    }
}

impl From<diesel::ConnectionError> for Error {
    fn from(error: diesel::ConnectionError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for Error {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::Unavailable(format!("no database connection: {error}"))
    }
}

/// SQLite reports a writer that waited past `busy_timeout` as "database is
/// locked" (SQLITE_BUSY); it is load, not a bug.
fn is_busy(message: &str) -> bool {
    message.contains("database is locked") || message.contains("database is busy")
}
