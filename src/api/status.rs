//! The one mapping from [`domain::Error`] to [`tonic::Status`].
//!
//! Every status carries a `google.rpc.ErrorInfo` (reason, domain
//! [`ERROR_DOMAIN`], metadata with the values involved) so clients branch on
//! `reason`, never on the message. INVALID_ARGUMENT also carries a
//! `google.rpc.BadRequest` naming the field. Database failures are logged here
//! with their cause and reach the caller only as a generic message.
//!
//! | domain error           | gRPC code           | reason                    |
//! |------------------------|---------------------|---------------------------|
//! | InvalidArgument        | INVALID_ARGUMENT    | INVALID_ARGUMENT          |
//! | ProductNotFound        | NOT_FOUND           | PRODUCT_NOT_FOUND         |
//! | ReservationNotFound    | NOT_FOUND           | RESERVATION_NOT_FOUND     |
//! | InsufficientStock      | FAILED_PRECONDITION | INSUFFICIENT_STOCK        |
//! | ReservationConflict    | ALREADY_EXISTS      | RESERVATION_CONFLICT      |
//! | BelowReserved          | FAILED_PRECONDITION | STOCK_BELOW_RESERVED      |
//! | ReleaseExceedsHeld     | FAILED_PRECONDITION | RELEASE_EXCEEDS_HELD      |
//! | CommitExceedsHeld      | FAILED_PRECONDITION | COMMIT_EXCEEDS_HELD       |
//! | ReservationNotActive   | FAILED_PRECONDITION | RESERVATION_NOT_ACTIVE    |
//! | OrderNotFound          | NOT_FOUND           | ORDER_NOT_FOUND           |
//! | InsufficientStockForOrder | FAILED_PRECONDITION | INSUFFICIENT_STOCK (+ PreconditionFailure) |
//! | ProductsNotFound       | NOT_FOUND           | PRODUCT_NOT_FOUND         |
//! | OrderItemsConflict     | ALREADY_EXISTS      | RESERVATION_CONFLICT      |
//! | VersionMismatch        | ABORTED             | VERSION_MISMATCH          |
//! | RequestIdReused        | ALREADY_EXISTS      | REQUEST_ID_REUSED         |
//! | EventsPurged           | OUT_OF_RANGE        | EVENTS_PURGED             |
//! | PositionAhead          | OUT_OF_RANGE        | POSITION_AHEAD            |
//! | WatchTooSlow           | RESOURCE_EXHAUSTED  | WATCH_TOO_SLOW (metadata position) |
//! | EventsDisabled         | FAILED_PRECONDITION | EVENTS_DISABLED           |
//! | ShuttingDown           | UNAVAILABLE         | SHUTTING_DOWN (metadata position) |
//! | ReadOnly               | UNAVAILABLE         | DATABASE_UNAVAILABLE (+ metadata read_only, since) |
//! | Store(NotConnected)    | UNAVAILABLE         | DATABASE_UNAVAILABLE      |
//! | Store(Unavailable)     | UNAVAILABLE         | DATABASE_UNAVAILABLE      |
//! | Store(Conflict)        | ABORTED             | CONCURRENT_MODIFICATION   |
//! | Store(Internal)        | INTERNAL            | INTERNAL                  |

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt as _};

use crate::domain::{self, StoreError};
use crate::pb;

/// The `domain` of every ErrorInfo this service returns.
pub const ERROR_DOMAIN: &str = "inventory-service";

/// A BadRequest's entry: `field` broke `rule` (a protovalidate rule id, or
/// one of the domain's, named the same way), `description` says how. Its
/// `reason` is the rule in the form google.rpc asks of reasons (`int32.gte`
/// -> `INT32_GTE`, `page_token.issued` -> `PAGE_TOKEN_ISSUED`), so that a
/// client can tell each field's fault apart without reading the
/// description.
pub(crate) fn field_violation(
    field: impl Into<String>,
    rule: &str,
    description: impl Into<String>,
) -> FieldViolation {
    FieldViolation {
        field: field.into(),
        description: description.into(),
        reason: rule.replace('.', "_").to_ascii_uppercase(),
        localized_message: None,
    }
}

fn metadata<const N: usize>(pairs: [(&str, String); N]) -> HashMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

impl From<domain::Error> for Status {
    fn from(error: domain::Error) -> Self {
        use domain::Error as E;
        let message = error.to_string();
        let (code, reason, meta) = match error {
            E::InvalidArgument {
                field,
                rule,
                reason,
            } => {
                let mut details = ErrorDetails::with_error_info(
                    "INVALID_ARGUMENT",
                    ERROR_DOMAIN,
                    metadata([("field", field.to_owned()), ("rule", rule.to_owned())]),
                );
                details.set_bad_request(vec![field_violation(field, rule, reason)]);
                return Status::with_error_details(Code::InvalidArgument, message, details);
            }
            E::ProductNotFound { product_id } => (
                Code::NotFound,
                "PRODUCT_NOT_FOUND",
                metadata([("product_id", product_id)]),
            ),
            E::ReservationNotFound {
                product_id,
                order_id,
            } => (
                Code::NotFound,
                "RESERVATION_NOT_FOUND",
                metadata([("product_id", product_id), ("order_id", order_id)]),
            ),
            E::InsufficientStock {
                product_id,
                requested,
                available,
                alternatives,
            } => {
                let details = ErrorDetails::with_error_info(
                    "INSUFFICIENT_STOCK",
                    ERROR_DOMAIN,
                    metadata([
                        ("product_id", product_id),
                        ("requested", requested.to_string()),
                        ("available", available.to_string()),
                    ]),
                );
                let status = Status::with_error_details(Code::FailedPrecondition, message, details);
                return with_alternatives(status, alternatives);
            }
            E::ReservationConflict {
                product_id,
                order_id,
                existing_quantity,
                requested,
            } => (
                Code::AlreadyExists,
                "RESERVATION_CONFLICT",
                metadata([
                    ("product_id", product_id),
                    ("order_id", order_id),
                    ("existing_quantity", existing_quantity.to_string()),
                    ("requested", requested.to_string()),
                ]),
            ),
            E::BelowReserved {
                product_id,
                operation,
                amount,
                resulting,
                reserved,
            } => (
                Code::FailedPrecondition,
                "STOCK_BELOW_RESERVED",
                metadata([
                    ("product_id", product_id),
                    ("operation", operation.to_owned()),
                    ("quantity", amount.to_string()),
                    ("resulting_quantity", resulting.to_string()),
                    ("reserved", reserved.to_string()),
                ]),
            ),
            E::ReleaseExceedsHeld {
                product_id,
                order_id,
                requested,
                held,
            } => (
                Code::FailedPrecondition,
                "RELEASE_EXCEEDS_HELD",
                metadata([
                    ("product_id", product_id),
                    ("order_id", order_id),
                    ("requested", requested.to_string()),
                    ("held", held.to_string()),
                ]),
            ),
            E::CommitExceedsHeld {
                product_id,
                order_id,
                requested,
                held,
            } => (
                Code::FailedPrecondition,
                "COMMIT_EXCEEDS_HELD",
                metadata([
                    ("product_id", product_id),
                    ("order_id", order_id),
                    ("requested", requested.to_string()),
                    ("held", held.to_string()),
                ]),
            ),
            E::ReservationNotActive {
                product_id,
                order_id,
                status,
            } => (
                Code::FailedPrecondition,
                "RESERVATION_NOT_ACTIVE",
                metadata([
                    ("product_id", product_id),
                    ("order_id", order_id),
                    ("status", status.to_owned()),
                ]),
            ),
            E::OrderNotFound { order_id } => (
                Code::NotFound,
                "ORDER_NOT_FOUND",
                metadata([("order_id", order_id)]),
            ),
            E::InsufficientStockForOrder {
                order_id,
                shortages,
            } => {
                let products = shortages
                    .iter()
                    .map(|s| s.product_id.as_str())
                    .collect::<Vec<_>>()
                    .join(",");
                let mut details = ErrorDetails::with_error_info(
                    "INSUFFICIENT_STOCK",
                    ERROR_DOMAIN,
                    metadata([("order_id", order_id), ("product_ids", products)]),
                );
                for shortage in shortages {
                    details.add_precondition_failure_violation(
                        "INSUFFICIENT_STOCK",
                        shortage.product_id,
                        format!(
                            "requested {}, available {}",
                            shortage.requested, shortage.available
                        ),
                    );
                }
                return Status::with_error_details(Code::FailedPrecondition, message, details);
            }
            E::ProductsNotFound { product_ids } => (
                Code::NotFound,
                "PRODUCT_NOT_FOUND",
                metadata([("product_ids", product_ids.join(","))]),
            ),
            E::OrderItemsConflict {
                order_id,
                conflicts,
            } => (
                Code::AlreadyExists,
                "RESERVATION_CONFLICT",
                metadata([
                    ("order_id", order_id),
                    (
                        "product_ids",
                        conflicts
                            .iter()
                            .map(|c| c.product_id.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                ]),
            ),
            E::VersionMismatch {
                product_id,
                expected,
                current,
            } => (
                Code::Aborted,
                "VERSION_MISMATCH",
                metadata([
                    ("product_id", product_id),
                    ("expected_version", expected.to_string()),
                    ("current_version", current.to_string()),
                ]),
            ),
            E::RequestIdReused {
                request_id, fields, ..
            } => (
                Code::AlreadyExists,
                "REQUEST_ID_REUSED",
                metadata([("request_id", request_id), ("fields", fields.join(","))]),
            ),
            E::ReadOnly { since, .. } => (
                Code::Unavailable,
                "DATABASE_UNAVAILABLE",
                metadata([
                    ("read_only", "true".to_owned()),
                    ("since", since.to_rfc3339()),
                ]),
            ),
            E::EventsPurged {
                after,
                purged_through,
            } => (
                Code::OutOfRange,
                "EVENTS_PURGED",
                metadata([
                    ("after", after.to_string()),
                    ("purged_through", purged_through.to_string()),
                ]),
            ),
            E::PositionAhead {
                after,
                last_position,
            } => (
                Code::OutOfRange,
                "POSITION_AHEAD",
                metadata([
                    ("after", after.to_string()),
                    ("last_position", last_position.to_string()),
                ]),
            ),
            E::WatchTooSlow { position, behind } => (
                Code::ResourceExhausted,
                "WATCH_TOO_SLOW",
                metadata([
                    ("position", position.to_string()),
                    ("behind", behind.to_string()),
                ]),
            ),
            E::EventsDisabled => (
                Code::FailedPrecondition,
                "EVENTS_DISABLED",
                metadata([("setting", "inventory.events.enabled".to_owned())]),
            ),
            E::ShuttingDown { position } => (
                Code::Unavailable,
                "SHUTTING_DOWN",
                metadata([("position", position.to_string())]),
            ),
            E::Store(store_error) => return store_status(store_error),
        };
        let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, meta);
        Status::with_error_details(code, message, details)
    }
}

/// `status` with an [`pb::Alternatives`] added to its details (when there
/// are alternatives): the products that could fill the refused request.
fn with_alternatives(status: Status, alternatives: Vec<domain::Alternative>) -> Status {
    use prost::{Message as _, Name as _};
    if alternatives.is_empty() {
        return status;
    }
    let Ok(mut rpc_status) = tonic_types::Status::decode(status.details()) else {
        return status;
    };
    let alternatives = pb::Alternatives {
        alternatives: alternatives
            .into_iter()
            .map(|a| pb::Alternative {
                product_id: a.product_id,
                available_quantity: a.available,
            })
            .collect(),
    };
    rpc_status.details.push(prost_types::Any {
        type_url: format!("type.googleapis.com/{}", pb::Alternatives::full_name()),
        value: alternatives.encode_to_vec(),
    });
    Status::with_details(
        status.code(),
        status.message(),
        rpc_status.encode_to_vec().into(),
    )
}

fn store_status(error: StoreError) -> Status {
    let (code, reason, message) = match &error {
        StoreError::NotConnected(cause) | StoreError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "database unavailable");
            (
                Code::Unavailable,
                "DATABASE_UNAVAILABLE",
                "the database is unavailable; retry later",
            )
        }
        StoreError::Conflict(cause) => {
            tracing::info!(error = %cause, "concurrent write conflict");
            (
                Code::Aborted,
                "CONCURRENT_MODIFICATION",
                "a concurrent request changed the same data; retry",
            )
        }
        StoreError::Internal(cause) => {
            tracing::error!(error = %cause, "internal database error");
            (Code::Internal, "INTERNAL", "internal error")
        }
        // Seen only by a caller that gave up already; its deadline answered.
        StoreError::Abandoned => (
            Code::DeadlineExceeded,
            "DEADLINE_EXCEEDED",
            "the deadline passed before the change was committed; nothing was written",
        ),
    };
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: &str) -> domain::Error {
        use domain::Error as E;
        let p = || "p-1".to_owned();
        let o = || "o-1".to_owned();
        match kind {
            "invalid" => E::invalid(
                "page_token",
                "page_token.issued",
                "is not a token this service issued",
            ),
            "product" => E::ProductNotFound { product_id: p() },
            "reservation" => E::ReservationNotFound {
                product_id: p(),
                order_id: o(),
            },
            "insufficient" => E::InsufficientStock {
                product_id: p(),
                requested: 5,
                available: 2,
                alternatives: Vec::new(),
            },
            "conflict" => E::ReservationConflict {
                product_id: p(),
                order_id: o(),
                existing_quantity: 2,
                requested: 3,
            },
            "below" => E::BelowReserved {
                product_id: p(),
                operation: "set",
                amount: 1,
                resulting: 1,
                reserved: 4,
            },
            "exceeds" => E::ReleaseExceedsHeld {
                product_id: p(),
                order_id: o(),
                requested: 9,
                held: 2,
            },
            "commit_exceeds" => E::CommitExceedsHeld {
                product_id: p(),
                order_id: o(),
                requested: 9,
                held: 2,
            },
            "not_active" => E::ReservationNotActive {
                product_id: p(),
                order_id: o(),
                status: "released",
            },
            "order" => E::OrderNotFound { order_id: o() },
            "order_short" => E::InsufficientStockForOrder {
                order_id: o(),
                shortages: vec![
                    domain::Shortage {
                        product_id: "p-1".into(),
                        requested: 5,
                        available: 2,
                    },
                    domain::Shortage {
                        product_id: "p-2".into(),
                        requested: 1,
                        available: 0,
                    },
                ],
            },
            "products" => E::ProductsNotFound {
                product_ids: vec!["p-1".into(), "p-2".into()],
            },
            "order_conflict" => E::OrderItemsConflict {
                order_id: o(),
                conflicts: vec![domain::ItemConflict {
                    product_id: p(),
                    existing_quantity: 2,
                    requested: 3,
                }],
            },
            "version" => E::VersionMismatch {
                product_id: p(),
                expected: 3,
                current: 4,
            },
            "read_only" => E::ReadOnly {
                since: chrono::Utc::now(),
                reason: "database unavailable: connection refused".into(),
            },
            "reused" => E::RequestIdReused {
                request_id: "r-1".into(),
                differences: vec!["quantity: 2, now 3".into()],
                fields: vec!["quantity".into()],
            },
            "not_connected" => E::Store(StoreError::NotConnected("connection refused".into())),
            "unavailable" => E::Store(StoreError::Unavailable("connection closed".into())),
            "race" => E::Store(StoreError::Conflict("UNIQUE constraint failed".into())),
            "internal" => E::Store(StoreError::Internal("no such column: secret".into())),
            other => unreachable!("unknown sample {other}"),
        }
    }

    #[test]
    fn every_domain_error_maps_to_one_code_and_reason() {
        let table = [
            ("invalid", Code::InvalidArgument, "INVALID_ARGUMENT"),
            ("product", Code::NotFound, "PRODUCT_NOT_FOUND"),
            ("reservation", Code::NotFound, "RESERVATION_NOT_FOUND"),
            (
                "insufficient",
                Code::FailedPrecondition,
                "INSUFFICIENT_STOCK",
            ),
            ("conflict", Code::AlreadyExists, "RESERVATION_CONFLICT"),
            ("below", Code::FailedPrecondition, "STOCK_BELOW_RESERVED"),
            ("exceeds", Code::FailedPrecondition, "RELEASE_EXCEEDS_HELD"),
            (
                "commit_exceeds",
                Code::FailedPrecondition,
                "COMMIT_EXCEEDS_HELD",
            ),
            (
                "not_active",
                Code::FailedPrecondition,
                "RESERVATION_NOT_ACTIVE",
            ),
            ("order", Code::NotFound, "ORDER_NOT_FOUND"),
            (
                "order_short",
                Code::FailedPrecondition,
                "INSUFFICIENT_STOCK",
            ),
            ("products", Code::NotFound, "PRODUCT_NOT_FOUND"),
            (
                "order_conflict",
                Code::AlreadyExists,
                "RESERVATION_CONFLICT",
            ),
            ("version", Code::Aborted, "VERSION_MISMATCH"),
            ("reused", Code::AlreadyExists, "REQUEST_ID_REUSED"),
            ("read_only", Code::Unavailable, "DATABASE_UNAVAILABLE"),
            ("not_connected", Code::Unavailable, "DATABASE_UNAVAILABLE"),
            ("unavailable", Code::Unavailable, "DATABASE_UNAVAILABLE"),
            ("race", Code::Aborted, "CONCURRENT_MODIFICATION"),
            ("internal", Code::Internal, "INTERNAL"),
        ];
        for (kind, code, reason) in table {
            let status = Status::from(sample(kind));
            assert_eq!(status.code(), code, "{kind}");
            let info = status
                .get_details_error_info()
                .unwrap_or_else(|| panic!("{kind}: no ErrorInfo"));
            assert_eq!(info.reason, reason, "{kind}");
            assert_eq!(info.domain, ERROR_DOMAIN, "{kind}");
            assert!(!status.message().is_empty(), "{kind}");
        }
    }

    #[test]
    fn a_domain_refusal_names_its_field_and_rule_as_the_contract_does() {
        let status = Status::from(sample("invalid"));
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.metadata["field"], "page_token");
        assert_eq!(info.metadata["rule"], "page_token.issued");
        let violations = status.get_details_bad_request().expect("BadRequest");
        let found: Vec<_> = violations
            .field_violations
            .iter()
            .map(|v| (v.field.as_str(), v.reason.as_str(), v.description.as_str()))
            .collect();
        assert_eq!(
            found,
            [(
                "page_token",
                "PAGE_TOKEN_ISSUED",
                "is not a token this service issued"
            )]
        );
        assert_eq!(
            status.message(),
            "page_token: is not a token this service issued"
        );
    }

    #[test]
    fn insufficient_stock_carries_requested_and_available() {
        let status = Status::from(sample("insufficient"));
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.metadata["requested"], "5");
        assert_eq!(info.metadata["available"], "2");
        assert!(status.message().contains("requested 5, available 2"));
    }

    #[test]
    fn an_order_short_of_stock_lists_every_short_product() {
        let status = Status::from(sample("order_short"));
        assert!(
            status
                .message()
                .contains(r#"product "p-1" requested 5, available 2; product "p-2" requested 1"#),
            "{}",
            status.message()
        );
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.metadata["product_ids"], "p-1,p-2");
        let failure = status
            .get_details_precondition_failure()
            .expect("PreconditionFailure");
        let subjects: Vec<&str> = failure
            .violations
            .iter()
            .map(|v| v.subject.as_str())
            .collect();
        assert_eq!(subjects, ["p-1", "p-2"]);
    }

    #[test]
    fn a_reused_request_id_names_what_differs() {
        let status = Status::from(sample("reused"));
        assert!(
            status.message().contains("quantity: 2, now 3"),
            "{}",
            status.message()
        );
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.metadata["fields"], "quantity");
    }

    #[test]
    fn a_reservation_not_active_names_its_status() {
        let status = Status::from(sample("not_active"));
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.metadata["status"], "released");
        assert_eq!(info.metadata["order_id"], "o-1");
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status = Status::from(sample("internal"));
        assert_eq!(status.message(), "internal error");
        assert!(!status.message().contains("secret"));
    }
}
