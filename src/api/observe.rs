//! What every handler records, in one place: the business span of each RPC
//! (a child of the server span) with the attributes `inventory.operation`,
//! `inventory.product_id`, `inventory.quantity`, `order.id`, and after the
//! call `inventory.available` and `inventory.reserved` (the stock after it),
//! or on failure the error status (`otel.status_description`) and
//! `rpc.grpc.status_code`; and the business counters (reservations created,
//! released and committed, insufficient stock).
//!
//! [`handle`] runs a use case under its span and maps its result: the request
//! says what it is about ([`Described`]), the result what it did
//! ([`Observed`]), and the error maps to its status through the one
//! `From<domain::Error> for Status`.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::{Response, Status};
use tracing::field::Empty;
use tracing::{Instrument as _, Span};

use crate::domain;
use crate::telemetry::Metrics;

/// The inventory RPCs, each with its business span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `CheckInventory`.
    Check,
    /// `ReserveInventory`.
    Reserve,
    /// `ReserveOrder`.
    ReserveOrder,
    /// `ReleaseInventory`.
    Release,
    /// `UpdateInventory`.
    Update,
    /// `GetInventoryHistory`.
    History,
    /// `CommitReservation`.
    Commit,
    /// `ReleaseOrder`.
    ReleaseOrder,
    /// `ListReservations`.
    ListReservations,
    /// `ListInventory`.
    List,
    /// `SetLowStockThreshold`.
    SetThreshold,
    /// `SetProductAlternatives`.
    SetAlternatives,
    /// `ListProductAlternatives`.
    ListAlternatives,
    /// `SetUnitCost`.
    SetUnitCost,
}

/// A business span named `$name`, with every field an RPC may record.
macro_rules! business_span {
    ($name:literal, $operation:literal) => {
        tracing::info_span!(
            $name,
            inventory.operation = $operation,
            inventory.product_id = Empty,
            inventory.quantity = Empty,
            order.id = Empty,
            inventory.items = Empty,
            inventory.available = Empty,
            inventory.reserved = Empty,
            inventory.stale_seconds = Empty,
            rpc.grpc.status_code = Empty,
            otel.status_description = Empty,
        )
    };
}

impl Operation {
    /// A new business span for this RPC (span names must be static, hence
    /// one arm per RPC).
    fn span(self) -> Span {
        match self {
            Self::Check => business_span!("inventory.check", "check"),
            Self::Reserve => business_span!("inventory.reserve", "reserve"),
            Self::ReserveOrder => business_span!("inventory.reserve_order", "reserve_order"),
            Self::Release => business_span!("inventory.release", "release"),
            Self::Update => business_span!("inventory.update", "update"),
            Self::History => business_span!("inventory.history", "history"),
            Self::Commit => business_span!("inventory.commit", "commit"),
            Self::ReleaseOrder => business_span!("inventory.release_order", "release_order"),
            Self::ListReservations => {
                business_span!("inventory.list_reservations", "list_reservations")
            }
            Self::List => business_span!("inventory.list", "list"),
            Self::SetThreshold => {
                business_span!(
                    "inventory.set_low_stock_threshold",
                    "set_low_stock_threshold"
                )
            }
            Self::SetAlternatives => {
                business_span!("inventory.set_alternatives", "set_alternatives")
            }
            Self::ListAlternatives => {
                business_span!("inventory.list_alternatives", "list_alternatives")
            }
            Self::SetUnitCost => business_span!("inventory.set_unit_cost", "set_unit_cost"),
        }
    }
}

/// What a request is about, as span attributes.
#[derive(Debug, Default)]
pub struct Subject<'a> {
    /// `inventory.product_id`.
    pub product_id: Option<&'a str>,
    /// `inventory.quantity`.
    pub quantity: Option<i32>,
    /// `order.id`.
    pub order_id: Option<&'a str>,
    /// `inventory.items`: how many items an order lists.
    pub items: Option<usize>,
}

/// A request that names what it is about.
pub trait Described {
    /// Its subject.
    fn subject(&self) -> Subject<'_>;
}

/// A use case's result, as the span and the counters see it.
pub trait Observed {
    /// The stock afterwards as (available, reserved), when there is one.
    fn stock_after(&self) -> Option<(i32, i32)> {
        None
    }

    /// Counts what the call did in the business counters.
    fn count(&self, _metrics: &Metrics) {}

    /// How old the figures are, when they come from the cache in read-only
    /// mode.
    fn stale(&self) -> Option<Duration> {
        None
    }
}

/// The response metadata (HTTP header) that marks an answer from the cache
/// in read-only mode, with its age in whole seconds.
pub const STALE_HEADER: &str = "x-inventory-stale";

/// Runs `call` (a use case answering `request`) in the business span of
/// `operation`, records its outcome there and in the counters, and encodes
/// it as the response or maps its error to the status.
pub async fn handle<Req, T, Resp>(
    operation: Operation,
    request: &Req,
    call: impl Future<Output = domain::Result<T>>,
) -> Result<Response<Resp>, Status>
where
    Req: Described,
    T: Observed + Into<Resp>,
{
    let span = operation.span();
    let subject = request.subject();
    if let Some(product_id) = subject.product_id {
        span.record("inventory.product_id", product_id);
    }
    if let Some(quantity) = subject.quantity {
        span.record("inventory.quantity", quantity);
    }
    if let Some(order_id) = subject.order_id {
        span.record("order.id", order_id);
    }
    if let Some(items) = subject.items {
        span.record("inventory.items", items);
    }
    let result = call.instrument(span.clone()).await;
    // Logs of the mapping (a database failure's cause) belong to the call.
    let _entered = span.enter();
    let metrics = crate::telemetry::current().map(|context| context.metrics.clone());
    match result {
        Ok(value) => {
            if let Some((available, reserved)) = value.stock_after() {
                span.record("inventory.available", available);
                span.record("inventory.reserved", reserved);
            }
            if let Some(metrics) = &metrics {
                value.count(metrics);
            }
            let stale = value.stale();
            let mut response = Response::new(value.into());
            if let Some(age) = stale {
                span.record("inventory.stale_seconds", age.as_secs());
                response
                    .metadata_mut()
                    .insert(STALE_HEADER, MetadataValue::from(age.as_secs()));
            }
            Ok(response)
        }
        Err(error) => {
            if let domain::Error::InsufficientStock { available, .. } = &error {
                span.record("inventory.available", *available);
            }
            if matches!(
                error,
                domain::Error::InsufficientStock { .. }
                    | domain::Error::InsufficientStockForOrder { .. }
            ) && let Some(metrics) = &metrics
            {
                metrics.insufficient_stock();
            }
            let status = Status::from(error);
            span.record("rpc.grpc.status_code", status.code() as i32);
            span.record("otel.status_description", status.message());
            Err(status)
        }
    }
}
