//! Client idempotency keys (`request_id`): the part both stores share.
//!
//! A keyed write looks its key up in `idempotency_keys` inside its own
//! transaction. A key seen before with the same method and fields answers
//! with the result remembered then ([`Keyed::Replayed`]); with anything else
//! it answers [`Keyed::Reused`] and writes nothing. A new key runs the write
//! and, when the write succeeded, remembers its result in the same
//! transaction: the result is kept exactly when the write is. A refusal
//! (not found, more than held, version mismatch) changed nothing and is not
//! kept: its retry is run again, and the key stays free. Two
//! concurrent first uses of one key both run; the second to commit fails on
//! the key's primary key and is rolled back ([`super::Error::Conflict`]), and
//! its retry finds the first one's result.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CommitOutcome, Error, ReleaseOrderOutcome, ReleaseOutcome, Result, UpdateOutcome};

/// A client's idempotency key and the request it comes with.
#[derive(Debug, Clone)]
pub struct RequestKey {
    /// The client's key.
    pub request_id: String,
    /// The RPC, such as `ReleaseInventory`: one key serves one method.
    pub method: &'static str,
    /// The request's fields (without the key), compared with a retry's.
    pub fields: serde_json::Value,
    /// The time of the request.
    pub now: DateTime<Utc>,
}

/// What a write made with an optional [`RequestKey`] answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Keyed<T> {
    /// The write ran now.
    Fresh(T),
    /// The key was used before for the same request; this is that request's
    /// result and nothing ran now.
    Replayed(T),
    /// The key was used before for another request; nothing ran now.
    Reused {
        /// The method it was used with.
        method: String,
        /// The fields it was used with.
        fields: serde_json::Value,
    },
}

/// A write's outcome that can be remembered under a request key.
pub trait KeyedOutcome: Serialize + DeserializeOwned + Send + 'static {
    /// Whether the caller is answered with success (even one that changed
    /// nothing, such as releasing an expired reservation); only then is the
    /// outcome remembered. A refusal changed nothing and is simply run again
    /// by a retry.
    fn succeeded(&self) -> bool;
}

impl KeyedOutcome for ReleaseOutcome {
    fn succeeded(&self) -> bool {
        matches!(self, Self::Released { .. } | Self::NotActive { .. })
    }
}

impl KeyedOutcome for CommitOutcome {
    fn succeeded(&self) -> bool {
        matches!(self, Self::Committed { .. } | Self::AlreadyCommitted { .. })
    }
}

impl KeyedOutcome for ReleaseOrderOutcome {
    fn succeeded(&self) -> bool {
        matches!(self, Self::Released(_))
    }
}

impl KeyedOutcome for UpdateOutcome {
    fn succeeded(&self) -> bool {
        matches!(self, Self::Applied { .. })
    }
}

/// The answer to a key found in `idempotency_keys` with `method`, `request`
/// and `response`.
pub(super) fn found<T: KeyedOutcome>(
    key: &RequestKey,
    method: &str,
    request: serde_json::Value,
    response: serde_json::Value,
) -> Result<Keyed<T>> {
    if method != key.method || request != key.fields {
        return Ok(Keyed::Reused {
            method: method.to_owned(),
            fields: request,
        });
    }
    serde_json::from_value(response)
        .map(Keyed::Replayed)
        .map_err(|e| {
            Error::Internal(format!(
                "the result kept for request_id {:?} is unreadable: {e}",
                key.request_id
            ))
        })
}

/// The JSON kept for `outcome`.
pub(super) fn remembered<T: KeyedOutcome>(outcome: &T) -> Result<serde_json::Value> {
    serde_json::to_value(outcome)
        .map_err(|e| Error::Internal(format!("cannot keep the result of a keyed write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StockLevel;
    use crate::domain::UpdatePlan;
    use serde_json::json;

    fn key(fields: serde_json::Value) -> RequestKey {
        RequestKey {
            request_id: "r-1".into(),
            method: "UpdateInventory",
            fields,
            now: Utc::now(),
        }
    }

    fn applied() -> UpdateOutcome {
        UpdateOutcome::Applied {
            plan: UpdatePlan {
                previous_total: 1,
                new_total: 3,
                creates_product: false,
            },
            stock: StockLevel {
                product_id: "p".into(),
                total_quantity: 3,
                reserved_quantity: 0,
                updated_at: Utc::now(),
                version: 2,
            },
        }
    }

    #[test]
    fn the_same_request_replays_the_kept_result() {
        let fields = json!({"product_id": "p", "quantity": 2});
        let kept = remembered(&applied()).unwrap();
        let answer: Keyed<UpdateOutcome> =
            found(&key(fields.clone()), "UpdateInventory", fields, kept).unwrap();
        let Keyed::Replayed(UpdateOutcome::Applied { plan, stock }) = answer else {
            panic!("expected a replay, got {answer:?}");
        };
        assert_eq!((plan.new_total, stock.version), (3, 2));
    }

    #[test]
    fn other_fields_or_another_method_are_a_reuse() {
        let first = json!({"product_id": "p", "quantity": 2});
        let kept = remembered(&applied()).unwrap();
        let other: Keyed<UpdateOutcome> = found(
            &key(json!({"product_id": "p", "quantity": 3})),
            "UpdateInventory",
            first.clone(),
            kept.clone(),
        )
        .unwrap();
        assert!(matches!(other, Keyed::Reused { ref fields, .. } if *fields == first));
        let method: Keyed<UpdateOutcome> =
            found(&key(first.clone()), "CommitReservation", first, kept).unwrap();
        assert!(
            matches!(method, Keyed::Reused { ref method, .. } if method == "CommitReservation")
        );
    }

    #[test]
    fn only_successes_are_kept() {
        assert!(applied().succeeded());
        assert!(ReleaseOrderOutcome::Released(Vec::new()).succeeded());
        assert!(!UpdateOutcome::VersionMismatch { current: 4 }.succeeded());
        assert!(!ReleaseOrderOutcome::NotFound.succeeded());
        assert!(!ReleaseOutcome::NotFound.succeeded());
        assert!(!CommitOutcome::NotFound.succeeded());
    }
}
