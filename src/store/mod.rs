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

mod costs;
mod error;
#[cfg(test)]
pub(crate) mod fake;
pub mod postgres;
pub mod retry;
pub mod sqlite;

/// An `inventory_events` row, its columns already read as domain types:
/// both backends store the kind by its name.
pub(crate) fn stored_event(
    position: i64,
    kind: &str,
    order_id: Option<String>,
    quantity_change: i32,
    stock: crate::domain::StockLevel,
    created_at: chrono::DateTime<chrono::Utc>,
) -> crate::domain::StoreResult<crate::domain::PositionedEvent> {
    let kind = crate::domain::ChangeKind::parse(kind).ok_or_else(|| {
        crate::domain::StoreError::Internal(format!("event {position} has unknown kind {kind:?}"))
    })?;
    Ok(crate::domain::PositionedEvent {
        position,
        event: crate::domain::StockEvent {
            kind,
            order_id,
            quantity_change,
            stock,
            created_at,
        },
    })
}

/// How often a pool closes the idle connections it keeps beyond
/// `database.max_idle_connections`, and how long such a connection must
/// have been idle to be closed.
pub const IDLE_SWEEP: std::time::Duration = std::time::Duration::from_secs(10);

/// Keeps at most `max_idle` connections of `pool` idle: every `every`
/// ([`IDLE_SWEEP`]) the idle connections beyond the first `max_idle` that
/// have not been used for as long are closed (a burst's connections go once
/// it is over, not between two of its requests). Stops when the pool is
/// closed.
pub(crate) fn trim_idle_connections<M>(
    pool: deadpool::managed::Pool<M>,
    max_idle: usize,
    every: std::time::Duration,
) where
    M: deadpool::managed::Manager + 'static,
    M::Type: Send,
    M::Error: Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            let mut kept = 0;
            let trimmed = pool.retain(|_, metrics| {
                let keep = kept < max_idle || metrics.last_used() < every;
                kept += usize::from(keep);
                keep
            });
            if !trimmed.removed.is_empty() {
                tracing::debug!(
                    closed = trimmed.removed.len(),
                    "closed connections idle beyond database.max_idle_connections"
                );
            }
        }
    });
}

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use deadpool::managed::{self, Metrics, RecycleResult};

    struct Counter;

    impl managed::Manager for Counter {
        type Type = ();
        type Error = std::convert::Infallible;

        async fn create(&self) -> Result<(), Self::Error> {
            Ok(())
        }

        async fn recycle(&self, _: &mut (), _: &Metrics) -> RecycleResult<Self::Error> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn idle_connections_beyond_the_limit_are_closed() {
        let pool = managed::Pool::builder(Counter)
            .max_size(6)
            .build()
            .expect("pool");
        let held: Vec<_> = futures_util::future::join_all((0..6).map(|_| pool.get()))
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("six connections");
        drop(held);
        assert_eq!(pool.status().available, 6);
        super::trim_idle_connections(pool.clone(), 2, Duration::from_millis(50));
        for _ in 0..100 {
            if pool.status().size == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(pool.status().size, 2, "two idle connections kept");
        pool.close();
    }
}
