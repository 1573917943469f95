//! Persistence: the implementations of the domain's port,
//! [`crate::domain::InventoryStore`], one per database: [`sqlite`] (the
//! embedded default) and [`postgres`] (one database shared by several
//! replicas). The same integration suite runs against both. The server wraps
//! either in [`retry::RetryingStore`], which retries transient failures
//! where a second run cannot apply a write twice.
//!
//! A backend decides nothing. For a change of stock it opens a transaction,
//! reads and locks the rows the domain's planner asks for, and writes the
//! rows the planner decided ([`crate::domain::port::Changes`]); the rules
//! themselves run once, in the domain, for every backend. What differs
//! between backends is SQL and locking only. The databases enforce the
//! invariants as well (`CHECK` constraints on `0 <= reserved_quantity <=
//! total_quantity`, one reservation per order and product), so a bug in a
//! rule cannot oversell.

mod error;
#[cfg(test)]
pub(crate) mod fake;
pub mod postgres;
pub mod retry;
pub mod sqlite;

/// The state of a store's connection pool, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Open connections not lent out.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

impl From<deadpool::Status> for PoolStatus {
    fn from(status: deadpool::Status) -> Self {
        Self {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }
}
