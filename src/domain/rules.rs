//! The inventory rules as pure functions: input validation, defaults and
//! limits, and the arithmetic of stock updates. Everything here is decided from
//! its arguments alone, so it is tested without a database.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

use super::error::{Error, Result};
use super::model::{HistoryCursor, StockChange, StockLevel};

/// Longest accepted id, in characters (the columns are `VARCHAR(255)`).
pub const MAX_ID_CHARS: usize = 255;
/// History entries per page when the request leaves `page_size` at 0.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Most history entries per page; larger requests are served this many.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Most items in one order reservation.
pub const MAX_ORDER_ITEMS: usize = 100;

/// Accepts an id of 1 to 255 characters with no leading or trailing
/// whitespace, no control characters, no invisible or direction-changing
/// characters (Unicode format characters: zero-width spaces and joiners,
/// bidi overrides and isolates, the byte order mark, soft hyphens) and no
/// line or paragraph separators, written in Unicode NFC: two ids that look
/// the same are the same id, and an id shows what it is.
pub fn validate_id(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    let chars = value.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_ID_CHARS} characters, got {chars}"),
        ));
    }
    if value.trim() != value {
        return Err(Error::invalid(
            field,
            "must not start or end with whitespace",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    if let Some(hidden) = value.chars().find(|c| {
        matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
    }) {
        return Err(Error::invalid(
            field,
            format!(
                "must not contain invisible or direction-changing characters, found U+{:04X}",
                u32::from(hidden)
            ),
        ));
    }
    if !unicode_normalization::is_nfc(value) {
        return Err(Error::invalid(
            field,
            "must be in Unicode normalization form C (NFC)",
        ));
    }
    Ok(())
}

/// The quantity a check asks about: 0 (omitted) means 1; negative is invalid.
pub fn required_quantity(raw: i32) -> Result<i32> {
    match raw {
        0 => Ok(1),
        n if n < 0 => Err(Error::invalid(
            "required_quantity",
            format!("must not be negative, got {n}"),
        )),
        n => Ok(n),
    }
}

/// The quantity to reserve: at least 1.
pub fn reserve_quantity(raw: i32) -> Result<i32> {
    if raw < 1 {
        return Err(Error::invalid(
            "quantity",
            format!("must be at least 1, got {raw}"),
        ));
    }
    Ok(raw)
}

/// An order's demand per product, by product id: every item valid, the
/// quantities of the same product added up (and still an `i32`).
pub fn order_demand(items: &[(String, i32)]) -> Result<Vec<(String, i32)>> {
    if items.is_empty() || items.len() > MAX_ORDER_ITEMS {
        return Err(Error::invalid(
            "items",
            format!(
                "must list 1 to {MAX_ORDER_ITEMS} items, got {}",
                items.len()
            ),
        ));
    }
    let mut demand = std::collections::BTreeMap::<&str, i64>::new();
    for (index, (product_id, quantity)) in items.iter().enumerate() {
        let at = |error: Error| match error {
            Error::InvalidArgument { field, reason } => {
                Error::invalid("items", format!("items[{index}].{field} {reason}"))
            }
            other => other,
        };
        validate_id("product_id", product_id).map_err(at)?;
        reserve_quantity(*quantity).map_err(at)?;
        *demand.entry(product_id.as_str()).or_default() += i64::from(*quantity);
    }
    demand
        .into_iter()
        .map(|(product_id, total)| {
            let total = i32::try_from(total).map_err(|_| {
                Error::invalid(
                    "items",
                    format!(
                        "the quantities of product {product_id:?} add up to {total}, \
                         more than {}",
                        i32::MAX
                    ),
                )
            })?;
            Ok((product_id.to_owned(), total))
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

/// The quantity to release: 0 (omitted) means everything held, negative is
/// invalid.
pub fn release_quantity(raw: i32) -> Result<Option<i32>> {
    match raw {
        0 => Ok(None),
        n if n < 0 => Err(Error::invalid(
            "quantity",
            format!("must not be negative, got {n}"),
        )),
        n => Ok(Some(n)),
    }
}

/// The quantity to commit: 0 (omitted) means everything held, negative is
/// invalid.
pub fn commit_quantity(raw: i32) -> Result<Option<i32>> {
    release_quantity(raw)
}

/// How long a reservation lives: 0 (omitted) means `default`; it may not be
/// negative nor exceed `max`.
pub fn reservation_timeout(raw_seconds: i32, default: Duration, max: Duration) -> Result<Duration> {
    if raw_seconds < 0 {
        return Err(Error::invalid(
            "reservation_timeout",
            format!("must not be negative, got {raw_seconds}"),
        ));
    }
    if raw_seconds == 0 {
        return Ok(default);
    }
    let requested = Duration::from_secs(u64::from(raw_seconds.unsigned_abs()));
    if requested > max {
        return Err(Error::invalid(
            "reservation_timeout",
            format!(
                "must be at most {} seconds, got {raw_seconds}",
                max.as_secs()
            ),
        ));
    }
    Ok(requested)
}

/// Parses the specification's `operation` ("set", "add" or "subtract", any case) with
/// its `quantity`: `set` takes 0 or more, `add` and `subtract` 1 or more.
pub fn stock_change(operation: &str, quantity: i32) -> Result<StockChange> {
    let change = match operation.trim().to_ascii_lowercase().as_str() {
        "set" => StockChange::Set(quantity),
        "add" => StockChange::Add(quantity),
        "subtract" => StockChange::Subtract(quantity),
        "" => {
            return Err(Error::invalid(
                "operation",
                "is required: one of \"set\", \"add\", \"subtract\"",
            ));
        }
        other => {
            return Err(Error::invalid(
                "operation",
                format!("must be one of \"set\", \"add\", \"subtract\", got {other:?}"),
            ));
        }
    };
    match change {
        StockChange::Set(n) if n < 0 => Err(Error::invalid(
            "quantity",
            format!("set needs a quantity of 0 or more, got {n}"),
        )),
        StockChange::Add(n) | StockChange::Subtract(n) if n < 1 => Err(Error::invalid(
            "quantity",
            format!("{} needs a quantity of at least 1, got {n}", change.name()),
        )),
        _ => Ok(change),
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
/// served as the maximum (AIP-158), negative is invalid.
pub fn page_size(raw: i32) -> Result<u32> {
    match raw {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(Error::invalid(
            "page_size",
            format!("must not be negative, got {n}"),
        )),
        n => Ok(n.unsigned_abs().min(MAX_PAGE_SIZE)),
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

/// Decodes a page token made by [`encode_page_token`]; empty means the first page.
pub fn decode_page_token(token: &str) -> Result<Option<HistoryCursor>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token", "is not a token this service issued");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let raw = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = raw.splitn(3, '|');
    let (Some(PAGE_TOKEN_VERSION), Some(micros), Some(id)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let micros: i64 = micros.parse().map_err(|_| invalid())?;
    let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
    if id.is_empty() {
        return Err(invalid());
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
    let invalid = || Error::invalid("page_token", "is not a token this service issued");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let raw = String::from_utf8(bytes).map_err(|_| invalid())?;
    match raw.split_once('|') {
        Some((INVENTORY_PAGE_TOKEN_VERSION, product_id)) if !product_id.is_empty() => {
            Ok(Some(product_id.to_owned()))
        }
        _ => Err(invalid()),
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

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn stock(total: i32, reserved: i32) -> StockLevel {
        StockLevel {
            product_id: "p".to_owned(),
            total_quantity: total,
            reserved_quantity: reserved,
            updated_at: Utc::now(),
            version: 1,
        }
    }

    fn field_of(error: Error) -> &'static str {
        match error {
            Error::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn ids_are_one_to_255_characters_without_control_characters() {
        assert!(validate_id("product_id", "product-456").is_ok());
        assert!(validate_id("product_id", &"é".repeat(255)).is_ok());
        // Composed "é" is NFC; "e" followed by a combining acute is not.
        assert!(validate_id("product_id", "caf\u{e9}").is_ok());
        assert!(validate_id("product_id", "\u{5546}\u{54c1}-1").is_ok());
        for bad in [
            "",
            " p",
            "p ",
            "a\nb",
            &"x".repeat(256),
            "cafe\u{301}",
            "a\u{200b}b",
            "a\u{202e}b",
            "\u{feff}a",
            "a\u{2066}b",
            "a\u{ad}b",
            "a\u{2028}b",
        ] {
            let error = validate_id("order_id", bad).expect_err(bad);
            assert_eq!(field_of(error), "order_id");
        }
    }

    #[test]
    fn required_quantity_defaults_to_one_and_is_never_negative() {
        assert_eq!(required_quantity(0).ok(), Some(1));
        assert_eq!(required_quantity(7).ok(), Some(7));
        assert_eq!(required_quantity(i32::MAX).ok(), Some(i32::MAX));
        assert_eq!(
            field_of(required_quantity(-1).expect_err("negative")),
            "required_quantity"
        );
    }

    #[test]
    fn reservations_need_a_positive_quantity() {
        assert_eq!(reserve_quantity(1).ok(), Some(1));
        assert_eq!(field_of(reserve_quantity(0).expect_err("zero")), "quantity");
        assert_eq!(
            field_of(reserve_quantity(i32::MIN).expect_err("min")),
            "quantity"
        );
    }

    #[test]
    fn commit_quantity_zero_means_everything_held() {
        assert_eq!(commit_quantity(0).ok(), Some(None));
        assert_eq!(commit_quantity(4).ok(), Some(Some(4)));
        assert_eq!(
            field_of(commit_quantity(-1).expect_err("negative")),
            "quantity"
        );
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
        assert_eq!(release_quantity(0).ok(), Some(None));
        assert_eq!(release_quantity(3).ok(), Some(Some(3)));
        assert_eq!(
            field_of(release_quantity(-3).expect_err("negative")),
            "quantity"
        );
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
        for bad in [-1, 3601, i32::MAX] {
            let error = reservation_timeout(bad, default, max).expect_err("out of range");
            assert_eq!(field_of(error), "reservation_timeout");
        }
    }

    #[test]
    fn the_seed_operations_parse_in_any_case() {
        assert_eq!(stock_change("set", 100).ok(), Some(StockChange::Set(100)));
        assert_eq!(stock_change("SET", 0).ok(), Some(StockChange::Set(0)));
        assert_eq!(stock_change("Add", 5).ok(), Some(StockChange::Add(5)));
        assert_eq!(
            stock_change("subtract", 5).ok(),
            Some(StockChange::Subtract(5))
        );
        assert_eq!(
            field_of(stock_change("", 5).expect_err("empty")),
            "operation"
        );
        assert_eq!(
            field_of(stock_change("multiply", 5).expect_err("unknown")),
            "operation"
        );
        assert_eq!(
            field_of(stock_change("set", -1).expect_err("negative set")),
            "quantity"
        );
        assert_eq!(
            field_of(stock_change("add", 0).expect_err("zero add")),
            "quantity"
        );
        assert_eq!(
            field_of(stock_change("subtract", -2).expect_err("neg")),
            "quantity"
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
    fn page_size_defaults_caps_and_rejects_negative() {
        assert_eq!(page_size(0).ok(), Some(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(5).ok(), Some(5));
        assert_eq!(page_size(1000).ok(), Some(MAX_PAGE_SIZE));
        assert_eq!(field_of(page_size(-1).expect_err("negative")), "page_size");
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
