//! The inventory rules as pure functions: input validation, defaults and
//! limits, and the arithmetic of stock updates. Everything here is decided from
//! its arguments alone, so it is tested without a database.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::DateTime;

use super::error::{Error, Result};
use super::model::{HistoryCursor, StockChange, StockLevel};

/// Longest accepted id, in characters (the columns are `VARCHAR(255)`).
pub const MAX_ID_CHARS: usize = 255;
/// History entries per page when the request leaves `page_size` at 0.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Most history entries per page; larger requests are served this many.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Accepts an id of 1 to 255 characters with no control characters and no
/// leading or trailing whitespace.
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

/// Parses the seed's `operation` ("set", "add" or "subtract", any case) with
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The readable summary of a check.
pub fn check_message(stock: &StockLevel, required: i32) -> String {
    let available = stock.available_quantity();
    if available >= required {
        format!("in stock: {available} available")
    } else {
        format!("insufficient stock: {available} available, {required} required")
    }
}
