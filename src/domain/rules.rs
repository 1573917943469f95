//! The inventory rules as pure functions: input validation, defaults and
//! limits, and the arithmetic of stock updates. Everything here is decided from
//! its arguments alone, so it is tested without a database.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;

use super::error::{Error, Result};
use super::model::{Alternative, ChangeKind, HistoryCursor, StockChange, StockLevel};

/// History entries per page when the request leaves `page_size` at 0.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Most history entries per page; larger requests are served this many.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Longest id, in characters, once in NFC (the columns are `VARCHAR(255)`).
pub const MAX_ID_CHARS: usize = 255;

/// An id in Unicode normalization form C (NFC): two ids that look the same
/// are the same id, whichever form the client wrote (the enforcement step of
/// PRECIS identifiers, RFC 8264). The contract's rules on each id field
/// (characters, length) have been checked as the request was decoded; NFC
/// is the one no pattern can say, so instead of a refusal a schema cannot
/// predict, the domain normalizes. Normalizing can lengthen an id (U+0958
/// becomes two characters): past [`MAX_ID_CHARS`] it is refused.
pub fn canonical_id<'a>(field: &'static str, value: &'a str) -> Result<Cow<'a, str>> {
    use unicode_normalization::{IsNormalized, UnicodeNormalization as _, is_nfc_quick};
    if is_nfc_quick(value.chars()) == IsNormalized::Yes {
        return Ok(Cow::Borrowed(value));
    }
    let normalized: String = value.nfc().collect();
    let chars = normalized.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(Error::invalid(
            field,
            "id.nfc_max_len",
            format!("must be at most {MAX_ID_CHARS} characters in Unicode NFC, got {chars}"),
        ));
    }
    Ok(if normalized == value {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(normalized)
    })
}

/// The quantity a check asks about: 0 (omitted) means 1. (Never negative:
/// the contract's rule.)
pub fn required_quantity(raw: i32) -> i32 {
    if raw == 0 { 1 } else { raw }
}

/// An order's demand per product, by product id: every item valid, the
/// quantities of the same product added up (and still an `i32`).
pub fn order_demand(items: &[(String, i32)]) -> Result<Vec<(String, i32)>> {
    let mut demand = std::collections::BTreeMap::<String, i64>::new();
    for (index, (product_id, quantity)) in items.iter().enumerate() {
        let product_id = canonical_id("items", product_id).map_err(|error| match error {
            Error::InvalidArgument { rule, reason, .. } => {
                Error::invalid("items", rule, format!("items[{index}].product_id {reason}"))
            }
            other => other,
        })?;
        *demand.entry(product_id.into_owned()).or_default() += i64::from(*quantity);
    }
    demand
        .into_iter()
        .map(|(product_id, total)| {
            let total = i32::try_from(total).map_err(|_| {
                Error::invalid(
                    "items",
                    "items.quantity_sum_int32",
                    format!(
                        "the quantities of product {product_id:?} add up to {total}, \
                         more than {}",
                        i32::MAX
                    ),
                )
            })?;
            Ok((product_id, total))
        })
        .collect()
}

/// How a request differs from the first one made with its `request_id`: one
/// readable entry per field (`quantity: 2, now 3`) and the fields' names.
pub fn differences(
    first_method: &str,
    first: &serde_json::Value,
    method: &str,
    now: &serde_json::Value,
) -> (Vec<String>, Vec<String>) {
    if first_method != method {
        return (
            vec![format!("method: {first_method}, now {method}")],
            vec!["method".to_owned()],
        );
    }
    let empty = serde_json::Map::new();
    let first = first.as_object().unwrap_or(&empty);
    let now = now.as_object().unwrap_or(&empty);
    let names: std::collections::BTreeSet<&String> = first.keys().chain(now.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (was, is) = (first.get(name), now.get(name));
            (was != is).then(|| {
                let show = |v: Option<&serde_json::Value>| {
                    v.filter(|v| !v.is_null())
                        .map_or_else(|| "none".to_owned(), ToString::to_string)
                };
                (
                    format!("{name}: {}, now {}", show(was), show(is)),
                    name.clone(),
                )
            })
        })
        .unzip()
}

/// The quantity to release: 0 (omitted) means everything held. (Never
/// negative: the contract's rule.)
pub fn release_quantity(raw: i32) -> Option<i32> {
    (raw != 0).then_some(raw)
}

/// The quantity to commit: 0 (omitted) means everything held.
pub fn commit_quantity(raw: i32) -> Option<i32> {
    release_quantity(raw)
}

/// How long a reservation lives: 0 (omitted) means `default`; it may not
/// exceed `max` (a configured bound, so the domain's rule; the contract says
/// it is never negative).
pub fn reservation_timeout(raw_seconds: i32, default: Duration, max: Duration) -> Result<Duration> {
    if raw_seconds == 0 {
        return Ok(default);
    }
    let requested = Duration::from_secs(u64::from(raw_seconds.unsigned_abs()));
    if requested > max {
        return Err(Error::invalid(
            "reservation_timeout",
            "reservation_timeout.max_configured",
            format!(
                "must be at most {} seconds, got {raw_seconds}",
                max.as_secs()
            ),
        ));
    }
    Ok(requested)
}

/// Reads the specification's `operation` ("set", "add" or "subtract", in any
/// case, as the contract's pattern allows) with its `quantity` (0 or more:
/// the contract's rule; adding or subtracting 0 changes nothing).
pub fn stock_change(operation: &str, quantity: i32) -> Result<StockChange> {
    match operation.to_ascii_lowercase().as_str() {
        "set" => Ok(StockChange::Set(quantity)),
        "add" => Ok(StockChange::Add(quantity)),
        "subtract" => Ok(StockChange::Subtract(quantity)),
        other => Err(Error::invalid(
            "operation",
            "operation.known",
            format!("is not an operation: {other:?}"),
        )),
    }
}

/// What an accepted stock update does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpdatePlan {
    /// Stock on hand before (0 for a new product).
    pub previous_total: i32,
    /// Stock on hand after.
    pub new_total: i32,
    /// Whether the product is created by this update.
    pub creates_product: bool,
}

impl UpdatePlan {
    /// The signed change of stock on hand. Cannot overflow: both totals are
    /// within `0..=i32::MAX`.
    pub fn delta(&self) -> i32 {
        self.new_total - self.previous_total
    }
}

/// Decides a stock update against the current stock (`None`: the product does
/// not exist). `set` and `add` create a missing product; the result must stay
/// within `reserved..=i32::MAX`.
pub fn plan_update(
    product_id: &str,
    current: Option<&StockLevel>,
    change: StockChange,
) -> Result<UpdatePlan> {
    let Some(stock) = current else {
        return match change {
            StockChange::Set(n) | StockChange::Add(n) => Ok(UpdatePlan {
                previous_total: 0,
                new_total: n,
                creates_product: true,
            }),
            StockChange::Subtract(_) => Err(Error::ProductNotFound {
                product_id: product_id.to_owned(),
            }),
        };
    };
    let total = i64::from(stock.total_quantity);
    let resulting = match change {
        StockChange::Set(n) => i64::from(n),
        StockChange::Add(n) => total + i64::from(n),
        StockChange::Subtract(n) => total - i64::from(n),
    };
    let new_total = i32::try_from(resulting).map_err(|_| {
        Error::invalid(
            "quantity",
            "quantity.stock_int32",
            format!(
                "adding {} to {} would exceed the largest stock of {}",
                change.amount(),
                stock.total_quantity,
                i32::MAX
            ),
        )
    })?;
    if new_total < stock.reserved_quantity {
        return Err(Error::BelowReserved {
            product_id: product_id.to_owned(),
            operation: change.name(),
            amount: change.amount(),
            resulting,
            reserved: stock.reserved_quantity,
        });
    }
    Ok(UpdatePlan {
        previous_total: stock.total_quantity,
        new_total,
        creates_product: false,
    })
}

/// A history page size: 0 means the default, larger than the maximum is
/// served as the maximum (AIP-158). (Never negative: the contract's rule.)
pub fn page_size(raw: i32) -> u32 {
    match u32::try_from(raw) {
        Ok(0) | Err(_) => DEFAULT_PAGE_SIZE,
        Ok(n) => n.min(MAX_PAGE_SIZE),
    }
}

const PAGE_TOKEN_VERSION: &str = "h1";

/// Encodes a cursor as an opaque page token.
pub fn encode_page_token(cursor: &HistoryCursor) -> String {
    let raw = format!(
        "{PAGE_TOKEN_VERSION}|{}|{}",
        cursor.created_at.timestamp_micros(),
        cursor.id
    );
    URL_SAFE_NO_PAD.encode(raw)
}

/// The refusal of a page token this service did not issue (or that was
/// altered), whichever list it was meant for.
fn forged_page_token() -> Error {
    Error::invalid(
        "page_token",
        "page_token.issued",
        "is not a token this service issued",
    )
}

/// Decodes a page token made by [`encode_page_token`]; empty means the first page.
pub fn decode_page_token(token: &str) -> Result<Option<HistoryCursor>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| forged_page_token())?;
    let raw = String::from_utf8(bytes).map_err(|_| forged_page_token())?;
    let mut parts = raw.splitn(3, '|');
    let (Some(PAGE_TOKEN_VERSION), Some(micros), Some(id)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(forged_page_token());
    };
    let micros: i64 = micros.parse().map_err(|_| forged_page_token())?;
    let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(forged_page_token)?;
    if id.is_empty() {
        return Err(forged_page_token());
    }
    Ok(Some(HistoryCursor {
        created_at,
        id: id.to_owned(),
    }))
}

const INVENTORY_PAGE_TOKEN_VERSION: &str = "i1";

/// Encodes the last product id of an inventory page as an opaque page token.
pub fn encode_inventory_page_token(last_product_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{INVENTORY_PAGE_TOKEN_VERSION}|{last_product_id}"))
}

/// Decodes a page token made by [`encode_inventory_page_token`]: the product
/// id the next page starts after; empty means the first page.
pub fn decode_inventory_page_token(token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| forged_page_token())?;
    let raw = String::from_utf8(bytes).map_err(|_| forged_page_token())?;
    match raw.split_once('|') {
        Some((INVENTORY_PAGE_TOKEN_VERSION, product_id)) if !product_id.is_empty() => {
            Ok(Some(product_id.to_owned()))
        }
        _ => Err(forged_page_token()),
    }
}

/// The readable summary of a check.
pub fn check_message(stock: &StockLevel, required: i32) -> String {
    let available = stock.available_quantity();
    if available >= required {
        format!("in stock: {available} available")
    } else {
        format!("insufficient stock: {available} available, {required} required")
    }
}

/// The stock-state events of a change of available stock from `before` to
/// `after`, in this order: [`ChangeKind::LowStock`] when it fell to or
/// below `threshold` from above it, [`ChangeKind::OutOfStock`] when it fell
/// to zero, [`ChangeKind::BackInStock`] when it rose from zero. A change
/// that crosses nothing raises none.
pub fn stock_state_changes(before: i32, after: i32, threshold: Option<i32>) -> Vec<ChangeKind> {
    let mut changes = Vec::new();
    if let Some(threshold) = threshold
        && before > threshold
        && after <= threshold
    {
        changes.push(ChangeKind::LowStock);
    }
    if before > 0 && after <= 0 {
        changes.push(ChangeKind::OutOfStock);
    }
    if before <= 0 && after > 0 {
        changes.push(ChangeKind::BackInStock);
    }
    changes
}

/// A product's alternatives as asked for, in their order: each named once
/// in NFC (two spellings of one id are one id), never the product itself.
/// (How many, and each written once, are the contract's rules; whether they
/// exist is decided against the database, in the transaction.)
pub fn alternatives(product_id: &str, alternatives: &[String]) -> Result<Vec<String>> {
    let mut kept: Vec<String> = Vec::with_capacity(alternatives.len());
    for raw in alternatives {
        let id = canonical_id("alternative_ids", raw)?.into_owned();
        if id == product_id {
            return Err(Error::invalid(
                "alternative_ids",
                "alternative_ids.not_self",
                format!("a product cannot be its own alternative ({id:?})"),
            ));
        }
        if kept.contains(&id) {
            return Err(Error::invalid(
                "alternative_ids",
                "alternative_ids.unique_nfc",
                format!("names {id:?} twice"),
            ));
        }
        kept.push(id);
    }
    Ok(kept)
}

/// The alternatives (in their order, with their stock) that could fill a
/// request for `requested` now.
pub fn fillable_alternatives(alternatives: &[StockLevel], requested: i32) -> Vec<Alternative> {
    alternatives
        .iter()
        .filter(|stock| stock.available_quantity() >= requested)
        .map(|stock| Alternative {
            product_id: stock.product_id.clone(),
            available: stock.available_quantity(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    #[test]
    fn stock_state_changes_are_raised_only_by_crossings() {
        use ChangeKind::{BackInStock, LowStock, OutOfStock};
        let cases: [(i32, i32, Option<i32>, &[ChangeKind]); 12] = [
            (10, 5, Some(5), &[LowStock]),
            (10, 6, Some(5), &[]),
            (5, 4, Some(5), &[]),
            (4, 6, Some(5), &[]),
            (10, 0, Some(5), &[LowStock, OutOfStock]),
            (3, 0, Some(5), &[OutOfStock]),
            (1, 0, None, &[OutOfStock]),
            (0, 0, None, &[]),
            (0, 3, None, &[BackInStock]),
            (0, 9, Some(5), &[BackInStock]),
            (10, 0, Some(0), &[LowStock, OutOfStock]),
            (7, 8, None, &[]),
        ];
        for (before, after, threshold, expected) in cases {
            assert_eq!(
                stock_state_changes(before, after, threshold),
                expected,
                "{before} -> {after} with {threshold:?}"
            );
        }
    }

    #[test]
    fn alternatives_are_distinct_other_products_and_few() {
        let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            alternatives("p", &ids(&["b", "a"])).expect("two"),
            ids(&["b", "a"])
        );
        assert_eq!(alternatives("p", &[]).expect("none"), Vec::<String>::new());
        assert!(alternatives("p", &ids(&["a", "p"])).is_err(), "itself");
        assert!(alternatives("p", &ids(&["a", "a"])).is_err(), "twice");
        // NFC and NFD of one id are the same id.
        assert!(alternatives("p", &ids(&["\u{e9}", "e\u{301}"])).is_err());
    }

    #[test]
    fn fillable_alternatives_keep_their_order() {
        let level = |id: &str, total: i32, reserved: i32| StockLevel {
            product_id: id.to_owned(),
            ..stock(total, reserved)
        };
        let found =
            fillable_alternatives(&[level("c", 10, 9), level("b", 5, 0), level("a", 3, 0)], 3);
        assert_eq!(
            found,
            [
                Alternative {
                    product_id: "b".into(),
                    available: 5
                },
                Alternative {
                    product_id: "a".into(),
                    available: 3
                }
            ]
        );
    }

    fn stock(total: i32, reserved: i32) -> StockLevel {
        StockLevel {
            product_id: "p".to_owned(),
            total_quantity: total,
            reserved_quantity: reserved,
            updated_at: Utc::now(),
            version: 1,
            low_stock_threshold: None,
        }
    }

    fn field_of(error: Error) -> &'static str {
        match error {
            Error::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn ids_are_normalized_to_nfc() {
        // Composed "é" is NFC; "e" followed by a combining acute is not.
        for good in ["product-456", "caf\u{e9}", "\u{5546}\u{54c1}-1"] {
            assert_eq!(
                canonical_id("product_id", good).ok(),
                Some(Cow::Borrowed(good))
            );
        }
        for (other_form, nfc) in [
            ("cafe\u{301}", "caf\u{e9}"),
            ("\u{212b}", "\u{c5}"),
            ("\u{fa4e}", "\u{7948}"),
        ] {
            assert_eq!(
                canonical_id("order_id", other_form).ok(),
                Some(Cow::Owned(nfc.to_owned()))
            );
        }
        // U+0958 is two characters in NFC: 255 of them are too long.
        let error = canonical_id("order_id", &"\u{958}".repeat(255)).expect_err("too long");
        assert_eq!(field_of(error), "order_id");
    }

    #[test]
    fn required_quantity_defaults_to_one() {
        assert_eq!(required_quantity(0), 1);
        assert_eq!(required_quantity(7), 7);
        assert_eq!(required_quantity(i32::MAX), i32::MAX);
    }

    #[test]
    fn commit_quantity_zero_means_everything_held() {
        assert_eq!(commit_quantity(0), None);
        assert_eq!(commit_quantity(4), Some(4));
    }

    #[test]
    fn inventory_page_tokens_round_trip_and_reject_forgeries() {
        let token = encode_inventory_page_token("product-é|1");
        assert_eq!(
            decode_inventory_page_token(&token).ok(),
            Some(Some("product-é|1".to_owned()))
        );
        assert_eq!(decode_inventory_page_token("").ok(), Some(None));
        let history_token = encode_page_token(&HistoryCursor {
            created_at: Utc::now(),
            id: "x".to_owned(),
        });
        for forged in [
            "garbage!",
            history_token.as_str(),
            &URL_SAFE_NO_PAD.encode("i1|"),
        ] {
            assert_eq!(
                field_of(decode_inventory_page_token(forged).expect_err(forged)),
                "page_token"
            );
        }
    }

    #[test]
    fn release_quantity_zero_means_everything() {
        assert_eq!(release_quantity(0), None);
        assert_eq!(release_quantity(3), Some(3));
    }

    #[test]
    fn reservation_timeout_defaults_and_is_bounded() {
        let default = Duration::from_secs(300);
        let max = Duration::from_secs(3600);
        assert_eq!(reservation_timeout(0, default, max).ok(), Some(default));
        assert_eq!(
            reservation_timeout(60, default, max).ok(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            reservation_timeout(3600, default, max).ok(),
            Some(Duration::from_secs(3600))
        );
        for bad in [3601, i32::MAX] {
            let error = reservation_timeout(bad, default, max).expect_err("out of range");
            assert_eq!(field_of(error), "reservation_timeout");
        }
    }

    #[test]
    fn the_seed_operations_parse_in_any_case() {
        assert_eq!(stock_change("set", 100).ok(), Some(StockChange::Set(100)));
        assert_eq!(stock_change("SET", 0).ok(), Some(StockChange::Set(0)));
        assert_eq!(stock_change("Add", 5).ok(), Some(StockChange::Add(5)));
        assert_eq!(stock_change("add", 0).ok(), Some(StockChange::Add(0)));
        assert_eq!(
            stock_change("subtract", 5).ok(),
            Some(StockChange::Subtract(5))
        );
        assert_eq!(
            field_of(stock_change("multiply", 5).expect_err("unknown")),
            "operation"
        );
    }

    #[test]
    fn set_and_add_create_a_missing_product_subtract_does_not() {
        let created = plan_update("p", None, StockChange::Set(10)).expect("set creates");
        assert_eq!(
            created,
            UpdatePlan {
                previous_total: 0,
                new_total: 10,
                creates_product: true
            }
        );
        assert!(
            plan_update("p", None, StockChange::Add(3))
                .expect("add creates")
                .creates_product
        );
        assert!(matches!(
            plan_update("p", None, StockChange::Subtract(1)),
            Err(Error::ProductNotFound { .. })
        ));
    }

    #[test]
    fn updates_never_go_below_reserved_or_zero() {
        let current = stock(10, 4);
        let plan = plan_update("p", Some(&current), StockChange::Subtract(6)).expect("to 4");
        assert_eq!((plan.new_total, plan.delta()), (4, -6));
        assert!(matches!(
            plan_update("p", Some(&current), StockChange::Subtract(7)),
            Err(Error::BelowReserved {
                resulting: 3,
                reserved: 4,
                ..
            })
        ));
        assert!(matches!(
            plan_update("p", Some(&current), StockChange::Set(3)),
            Err(Error::BelowReserved { .. })
        ));
        assert!(matches!(
            plan_update("p", Some(&stock(2, 0)), StockChange::Subtract(5)),
            Err(Error::BelowReserved { resulting: -3, .. })
        ));
        let set = plan_update("p", Some(&current), StockChange::Set(4)).expect("to reserved");
        assert_eq!(
            (set.previous_total, set.new_total, set.delta()),
            (10, 4, -6)
        );
    }

    #[test]
    fn add_never_overflows() {
        let full = stock(i32::MAX - 1, 0);
        assert_eq!(
            plan_update("p", Some(&full), StockChange::Add(1))
                .map(|p| p.new_total)
                .ok(),
            Some(i32::MAX)
        );
        let error = plan_update("p", Some(&full), StockChange::Add(2)).expect_err("overflow");
        assert_eq!(field_of(error), "quantity");
    }

    #[test]
    fn page_size_defaults_and_caps() {
        assert_eq!(page_size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5), 5);
        assert_eq!(page_size(1000), MAX_PAGE_SIZE);
    }

    #[test]
    fn page_tokens_round_trip_and_reject_forgeries() {
        let cursor = HistoryCursor {
            created_at: DateTime::from_timestamp_micros(1_790_000_000_123_456).expect("valid"),
            id: "0193-abc|def".to_owned(),
        };
        let token = encode_page_token(&cursor);
        assert_eq!(decode_page_token(&token).ok(), Some(Some(cursor)));
        assert_eq!(decode_page_token("").ok(), Some(None));
        for bad in [
            "not base64!",
            "aDF8eHx5",
            &URL_SAFE_NO_PAD.encode("h1|12|"),
            &URL_SAFE_NO_PAD.encode("h0|12|id"),
        ] {
            assert_eq!(
                field_of(decode_page_token(bad).expect_err(bad)),
                "page_token"
            );
        }
    }

    #[test]
    fn availability_is_total_minus_reserved() {
        let s = stock(10, 7);
        assert_eq!(s.available_quantity(), 3);
        assert_eq!(check_message(&s, 3), "in stock: 3 available");
        assert_eq!(
            check_message(&s, 4),
            "insufficient stock: 3 available, 4 required"
        );
    }
}
