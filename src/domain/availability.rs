//! Read-only degradation: when the database cannot be reached, the service
//! goes read-only. `CheckInventory` and `ListInventory` answer from the
//! cache, marked stale with the age of what they show; writes are refused
//! at once instead of each waiting out the database's timeouts; health says
//! `degraded`. The first database call that succeeds (the health probe's
//! ping, or any other) brings the service back. [`Availability`] holds that
//! state and tells its observer of every transition, once.
//!
//! What decides "cannot be reached" is a failed ping, never a failed
//! request alone: a request also fails transiently when the database is
//! merely saturated (no pooled connection free in time, a lock timeout),
//! and a busy service must not refuse writes. A request's transient failure
//! (after the store's retries) makes the health probe ping at once
//! ([`Availability::suspected`]); the ping, on a connection of its own,
//! tells reach from load.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::port::StoreError;

/// Whether the service writes, and since when it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The database answers.
    Normal,
    /// The database cannot be reached.
    ReadOnly {
        /// Since when.
        since: DateTime<Utc>,
        /// The failure that started it.
        reason: String,
    },
}

/// Told of every transition between [`Mode`]s, for logs, metrics and alerts.
pub trait AvailabilityObserver: Send + Sync + 'static {
    /// The service left `from` for `to`.
    fn changed(&self, from: &Mode, to: &Mode);
}

/// The service's [`Mode`].
#[derive(Default)]
pub struct Availability {
    /// The mode now.
    mode: Mutex<Option<(DateTime<Utc>, String)>>,
    /// Told of transitions.
    observer: Option<Arc<dyn AvailabilityObserver>>,
    /// Woken by a request's transient failure.
    suspect: tokio::sync::Notify,
}

impl std::fmt::Debug for Availability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Availability")
            .field("mode", &self.mode())
            .finish()
    }
}

impl Availability {
    /// Normal, telling `observer` of transitions.
    pub fn new(observer: Option<Arc<dyn AvailabilityObserver>>) -> Self {
        Self {
            mode: Mutex::new(None),
            observer,
            suspect: tokio::sync::Notify::new(),
        }
    }

    /// The mode now.
    pub fn mode(&self) -> Mode {
        match &*self.lock() {
            None => Mode::Normal,
            Some((since, reason)) => Mode::ReadOnly {
                since: *since,
                reason: reason.clone(),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(DateTime<Utc>, String)>> {
        self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes the outcome of a request's database call: a success makes the
    /// service normal again; a transient failure (after the store's
    /// retries) wakes [`Availability::suspected`]; other failures say
    /// nothing about the database's reach.
    pub fn observe<T>(&self, outcome: &Result<T, StoreError>) {
        match outcome {
            Ok(_) => self.recovered(),
            Err(error) if error.is_transient() => self.suspect.notify_one(),
            Err(_) => {}
        }
    }

    /// Notes the outcome of a ping: a transient failure makes the service
    /// read-only, a success normal again.
    pub fn observe_ping(&self, outcome: &Result<(), StoreError>, now: DateTime<Utc>) {
        match outcome {
            Ok(()) => self.recovered(),
            Err(error) if error.is_transient() => self.lost(error, now),
            Err(_) => {}
        }
    }

    /// Completes when a request failed transiently since the last call:
    /// time to ping.
    pub async fn suspected(&self) {
        self.suspect.notified().await;
    }

    /// The database answered.
    pub fn recovered(&self) {
        let was = self.lock().take();
        if let (Some((since, reason)), Some(observer)) = (was, &self.observer) {
            observer.changed(&Mode::ReadOnly { since, reason }, &Mode::Normal);
        }
    }

    /// The database could not be reached.
    fn lost(&self, error: &StoreError, now: DateTime<Utc>) {
        let reason = error.to_string();
        let entered = {
            let mut mode = self.lock();
            if mode.is_some() {
                return;
            }
            *mode = Some((now, reason.clone()));
            Mode::ReadOnly { since: now, reason }
        };
        if let Some(observer) = &self.observer {
            observer.changed(&Mode::Normal, &entered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Transitions(Mutex<Vec<(Mode, Mode)>>);

    impl AvailabilityObserver for Transitions {
        fn changed(&self, from: &Mode, to: &Mode) {
            self.0
                .lock()
                .expect("transitions")
                .push((from.clone(), to.clone()));
        }
    }

    #[tokio::test]
    async fn failed_pings_enter_once_and_a_success_leaves_once() {
        let transitions = Arc::new(Transitions::default());
        let availability = Availability::new(Some(transitions.clone()));
        let now = Utc::now();
        let down: Result<(), StoreError> = Err(StoreError::NotConnected("refused".into()));
        availability.observe(&down);
        assert_eq!(
            availability.mode(),
            Mode::Normal,
            "a request's failure only raises suspicion"
        );
        tokio::time::timeout(std::time::Duration::from_secs(1), availability.suspected())
            .await
            .expect("the probe is woken");
        availability.observe_ping(&down, now);
        availability.observe_ping(&down, now);
        assert!(
            matches!(availability.mode(), Mode::ReadOnly { ref reason, .. } if reason.contains("refused"))
        );
        availability.observe_ping(&Err(StoreError::Conflict("race".into())), now);
        availability.observe(&Ok(()));
        availability.observe_ping(&Ok(()), now);
        assert_eq!(availability.mode(), Mode::Normal);
        let seen = transitions.0.lock().expect("transitions");
        assert_eq!(seen.len(), 2, "one alert per transition: {seen:?}");
        assert!(matches!(seen[1], (Mode::ReadOnly { .. }, Mode::Normal)));
    }
}
