//! The contract's field rules, enforced as requests are decoded: the
//! `buf.validate` annotations of `inventory.proto` read by
//! [`crate::validate`], and the status a request that breaks them gets
//! (INVALID_ARGUMENT with an ErrorInfo and a BadRequest, as every invalid
//! argument).

use std::collections::HashMap;
use std::sync::LazyLock;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use super::status::{ERROR_DOMAIN, field_violation};
use crate::validate::codec::{Contract, ValidatingCodec};
use crate::validate::{Validator, Violation};

/// The codec of the generated inventory services and clients.
pub type Codec<T, U> = ValidatingCodec<T, U, InventoryContract>;

/// `inventory.proto`'s rules.
#[derive(Debug, Clone, Copy)]
pub struct InventoryContract;

static VALIDATOR: LazyLock<Result<Validator, String>> = LazyLock::new(|| {
    let pool = crate::pb::descriptor_pool()?;
    Validator::new(pool).map_err(|e| format!("a rule of the contract: {e}"))
});

/// Reads the contract's rules, so that a rule the validator cannot enforce
/// stops the start instead of failing every call.
///
/// # Errors
/// What is wrong with the rules.
pub fn check() -> Result<&'static Validator, String> {
    VALIDATOR.as_ref().map_err(Clone::clone)
}

impl Contract for InventoryContract {
    fn validator() -> Result<&'static Validator, &'static str> {
        VALIDATOR.as_ref().map_err(String::as_str)
    }

    fn invalid(violations: Vec<Violation>) -> Status {
        let message = violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let first = violations
            .first()
            .map(|v| v.field.clone())
            .unwrap_or_default();
        let mut details = ErrorDetails::with_error_info(
            "INVALID_ARGUMENT",
            ERROR_DOMAIN,
            HashMap::from([
                ("field".to_owned(), first),
                (
                    "rule".to_owned(),
                    violations
                        .first()
                        .map(|v| v.rule)
                        .unwrap_or_default()
                        .to_owned(),
                ),
            ]),
        );
        details.set_bad_request(
            violations
                .into_iter()
                .map(|violation| field_violation(violation.field, violation.rule, violation.reason))
                .collect::<Vec<_>>(),
        );
        Status::with_error_details(Code::InvalidArgument, message, details)
    }
}

#[cfg(test)]
mod tests {
    use prost::{Message as _, Name as _};
    use prost_reflect::DynamicMessage;
    use tonic_types::StatusExt as _;

    use super::*;
    use crate::pb;

    /// The violations of `message` by the contract, as `field rule`.
    fn violations<M: prost::Message + prost::Name>(message: &M) -> Vec<String> {
        let validator = check().expect("the contract's rules read");
        let rules = validator
            .rules(&M::full_name())
            .expect("the message has rules");
        let dynamic = DynamicMessage::decode(
            rules.descriptor().clone(),
            message.encode_to_vec().as_slice(),
        )
        .expect("decodes");
        match validator.check(&dynamic) {
            Ok(()) => Vec::new(),
            Err(found) => found
                .iter()
                .map(|v| format!("{} {}", v.field, v.rule))
                .collect(),
        }
    }

    fn reserve(product_id: &str, quantity: i32) -> pb::ReserveInventoryRequest {
        pb::ReserveInventoryRequest {
            product_id: product_id.into(),
            quantity,
            order_id: "o-1".into(),
            reservation_timeout: 0,
        }
    }

    #[test]
    fn ids_are_1_to_255_visible_bmp_characters_without_whitespace_at_the_ends() {
        for good in [
            "product-456",
            "p",
            "caf\u{e9}",
            "\u{5546}\u{54c1} 1",
            "a b",
            &"é".repeat(255),
        ] {
            assert_eq!(
                violations(&reserve(good, 1)),
                Vec::<String>::new(),
                "{good:?}"
            );
        }
        for (bad, rule) in [
            ("", "string.min_len"),
            (&"x".repeat(256) as &str, "string.max_len"),
            (" p", "string.pattern"),
            ("p ", "string.pattern"),
            ("p\u{a0}", "string.pattern"),
            ("a\nb", "string.pattern"),
            ("a\u{200b}b", "string.pattern"),
            ("a\u{202e}b", "string.pattern"),
            ("\u{feff}a", "string.pattern"),
            ("a\u{2066}b", "string.pattern"),
            ("a\u{ad}b", "string.pattern"),
            ("a\u{2028}b", "string.pattern"),
            ("a\u{1f600}b", "string.pattern"),
        ] {
            assert_eq!(
                violations(&reserve(bad, 1)),
                [format!("product_id {rule}")],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn quantities_operations_items_and_optional_keys() {
        assert_eq!(violations(&reserve("p", 0)), ["quantity int32.gte"]);
        assert_eq!(
            violations(&pb::CheckInventoryRequest {
                product_id: "p".into(),
                required_quantity: -1
            }),
            ["required_quantity int32.gte"]
        );
        let update =
            |operation: &str, quantity: i32, expected_version: Option<i64>, request_id: &str| {
                pb::UpdateInventoryRequest {
                    product_id: "p".into(),
                    quantity,
                    operation: operation.into(),
                    expected_version,
                    request_id: request_id.into(),
                }
            };
        for operation in ["set", "ADD", "Subtract"] {
            assert_eq!(
                violations(&update(operation, 0, Some(0), "")),
                Vec::<String>::new()
            );
        }
        assert_eq!(
            violations(&update("", 1, None, "")),
            ["operation string.min_len"]
        );
        assert_eq!(
            violations(&update("multiply", 1, None, "")),
            ["operation string.pattern"]
        );
        assert_eq!(
            violations(&update(" set", 1, None, "")),
            ["operation string.pattern"]
        );
        assert_eq!(
            violations(&update("set", -1, None, "")),
            ["quantity int32.gte"]
        );
        assert_eq!(
            violations(&update("set", 1, Some(-1), "")),
            ["expected_version int64.gte"]
        );
        assert_eq!(
            violations(&update("set", 1, None, " k")),
            ["request_id string.pattern"]
        );
        let order = |items: Vec<pb::OrderItem>| pb::ReserveOrderRequest {
            order_id: "o".into(),
            items,
            reservation_timeout: -1,
        };
        let item = |product_id: &str, quantity: i32| pb::OrderItem {
            product_id: product_id.into(),
            quantity,
        };
        assert_eq!(
            violations(&order(vec![])),
            ["items repeated.min_items", "reservation_timeout int32.gte"]
        );
        assert_eq!(
            violations(&order(vec![item("a", 1); 101]))[0],
            "items repeated.max_items"
        );
        assert_eq!(
            violations(&order(vec![item("a", 1), item("", 0)])),
            [
                "reservation_timeout int32.gte",
                "items[1].product_id string.min_len",
                "items[1].quantity int32.gte",
            ]
        );
    }

    #[test]
    fn a_broken_rule_is_invalid_argument_naming_every_field() {
        let validator = check().expect("rules");
        let message = reserve("", 0);
        let rules = validator
            .rules(&pb::ReserveInventoryRequest::full_name())
            .expect("rules");
        let dynamic = DynamicMessage::decode(
            rules.descriptor().clone(),
            message.encode_to_vec().as_slice(),
        )
        .expect("decodes");
        let status = InventoryContract::invalid(validator.check(&dynamic).expect_err("invalid"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "product_id: must not be empty; quantity: must be at least 1, got 0"
        );
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "INVALID_ARGUMENT");
        assert_eq!(
            info.metadata.get("field").map(String::as_str),
            Some("product_id")
        );
        assert_eq!(
            info.metadata.get("rule").map(String::as_str),
            Some("string.min_len")
        );
        let violations: Vec<(&str, &str, &str)> = details
            .bad_request()
            .expect("BadRequest")
            .field_violations
            .iter()
            .map(|v| (v.field.as_str(), v.reason.as_str(), v.description.as_str()))
            .collect();
        assert_eq!(
            violations,
            [
                ("product_id", "STRING_MIN_LEN", "must not be empty"),
                ("quantity", "INT32_GTE", "must be at least 1, got 0")
            ]
        );
    }

    #[test]
    fn responses_and_messages_without_rules_are_not_checked() {
        let validator = check().expect("rules");
        assert!(
            validator
                .rules(&pb::CheckInventoryResponse::full_name())
                .is_none()
        );
        assert!(
            validator
                .rules(&pb::ReserveInventoryRequest::full_name())
                .is_some()
        );
    }
}
