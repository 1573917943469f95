//! Conversions between the protobuf messages and the domain's types, in one
//! place: what each request is about ([`Described`]), what each result did
//! ([`Observed`]), and each result as its response message (`From`).

use chrono::{DateTime, Utc};

use super::observe::{Described, Observed, Subject};
use crate::domain::{
    self, ChangeKind, CheckOutcome, CommitResult, HistoryEntry, HistoryPage, OrderReleaseItem,
    OrderReleaseResult, OrderReservationResult, PositionedEvent, ReleaseResult, Reservation,
    ReservationResult, ReservationStatus, StockLevel, StockPage, UpdateResult,
};
use crate::pb;
use crate::telemetry::Metrics;

/// The summary of a result kept for a retried `request_id`.
const REPLAYED: &str = "; replayed the first result of this request_id";

fn timestamp(at: DateTime<Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp::from(at)
}

/// The (available, reserved) quantities of a stock level.
fn levels(stock: &StockLevel) -> Option<(i32, i32)> {
    Some((stock.available_quantity(), stock.reserved_quantity))
}

impl Described for pb::CheckInventoryRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            product_id: Some(&self.product_id),
            quantity: Some(self.required_quantity),
            ..Subject::default()
        }
    }
}

impl Described for pb::ReserveInventoryRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            product_id: Some(&self.product_id),
            quantity: Some(self.quantity),
            order_id: Some(&self.order_id),
            ..Subject::default()
        }
    }
}

impl Described for pb::ReserveOrderRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            order_id: Some(&self.order_id),
            items: Some(self.items.len()),
            ..Subject::default()
        }
    }
}

impl Described for pb::ReleaseInventoryRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            product_id: Some(&self.product_id),
            quantity: Some(self.quantity),
            order_id: Some(&self.order_id),
            ..Subject::default()
        }
    }
}

impl Described for pb::CommitReservationRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            product_id: Some(&self.product_id),
            quantity: Some(self.quantity),
            order_id: Some(&self.order_id),
            ..Subject::default()
        }
    }
}

impl Described for pb::UpdateInventoryRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            product_id: Some(&self.product_id),
            quantity: Some(self.quantity),
            ..Subject::default()
        }
    }
}

impl Described for pb::SetLowStockThresholdRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            product_id: Some(&self.product_id),
            quantity: self.low_stock_threshold,
            ..Subject::default()
        }
    }
}

impl Observed for StockLevel {
    fn stock_after(&self) -> Option<(i32, i32)> {
        levels(self)
    }
}

impl From<StockLevel> for pb::SetLowStockThresholdResponse {
    fn from(stock: StockLevel) -> Self {
        Self {
            stock: Some(stock.into()),
        }
    }
}

impl Described for pb::GetInventoryHistoryRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            product_id: Some(&self.product_id),
            ..Subject::default()
        }
    }
}

impl Described for pb::ReleaseOrderRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            order_id: Some(&self.order_id),
            ..Subject::default()
        }
    }
}

impl Described for pb::ListReservationsRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            order_id: Some(&self.order_id),
            ..Subject::default()
        }
    }
}

impl Described for pb::ListInventoryRequest {
    fn subject(&self) -> Subject<'_> {
        Subject::default()
    }
}

impl Observed for CheckOutcome {
    fn stock_after(&self) -> Option<(i32, i32)> {
        levels(&self.stock)
    }

    fn stale(&self) -> Option<std::time::Duration> {
        self.stale
    }
}

impl From<CheckOutcome> for pb::CheckInventoryResponse {
    fn from(outcome: CheckOutcome) -> Self {
        let message = domain::rules::check_message(&outcome.stock, outcome.required_quantity);
        let StockLevel {
            product_id,
            total_quantity,
            reserved_quantity,
            updated_at,
            version,
            low_stock_threshold,
        } = outcome.stock;
        Self {
            available: outcome.available,
            stale: outcome.stale.is_some(),
            current_quantity: total_quantity,
            reserved_quantity,
            message,
            available_quantity: total_quantity - reserved_quantity,
            product_id,
            updated_at: Some(timestamp(updated_at)),
            version,
            low_stock_threshold,
        }
    }
}

impl Observed for ReservationResult {
    fn stock_after(&self) -> Option<(i32, i32)> {
        levels(&self.stock)
    }

    fn count(&self, metrics: &Metrics) {
        if self.created {
            metrics.reservation_created(&self.reservation.product_id);
        }
    }
}

impl From<ReservationResult> for pb::ReserveInventoryResponse {
    fn from(result: ReservationResult) -> Self {
        let message = if result.created {
            format!(
                "reserved {} of {} for order {}",
                result.reservation.quantity,
                result.reservation.product_id,
                result.reservation.order_id
            )
        } else {
            format!(
                "order {} already made this reservation; returned as it stands ({})",
                result.reservation.order_id,
                result.reservation.status.as_str()
            )
        };
        Self {
            reservation_id: result.reservation.id.clone(),
            expires_at: Some(timestamp(result.reservation.expires_at)),
            available_quantity: result.stock.available_quantity(),
            reserved_quantity: result.stock.reserved_quantity,
            current_quantity: result.stock.total_quantity,
            message,
            reservation: Some(result.reservation.into()),
        }
    }
}

impl Observed for OrderReservationResult {
    fn count(&self, metrics: &Metrics) {
        for item in &self.items {
            item.count(metrics);
        }
    }
}

impl From<OrderReservationResult> for pb::ReserveOrderResponse {
    fn from(result: OrderReservationResult) -> Self {
        let created = result.items.iter().filter(|item| item.created).count();
        let message = if created == result.items.len() {
            format!(
                "reserved {} product(s) for order {}",
                created, result.order_id
            )
        } else {
            format!(
                "reserved {} product(s) for order {}; {} reserved by an earlier request, \
                 returned as they stand",
                created,
                result.order_id,
                result.items.len() - created
            )
        };
        Self {
            items: result
                .items
                .into_iter()
                .map(pb::ReservedItem::from)
                .collect(),
            message,
        }
    }
}

impl From<ReservationResult> for pb::ReservedItem {
    fn from(result: ReservationResult) -> Self {
        Self {
            product_id: result.reservation.product_id.clone(),
            available_quantity: result.stock.available_quantity(),
            reserved_quantity: result.stock.reserved_quantity,
            current_quantity: result.stock.total_quantity,
            created: result.created,
            reservation: Some(result.reservation.into()),
        }
    }
}

impl Observed for ReleaseResult {
    fn stock_after(&self) -> Option<(i32, i32)> {
        levels(&self.stock)
    }

    fn count(&self, metrics: &Metrics) {
        if self.released > 0 && !self.replayed {
            metrics.reservation_released();
        }
    }
}

impl From<ReleaseResult> for pb::ReleaseInventoryResponse {
    fn from(result: ReleaseResult) -> Self {
        let mut message = if result.released > 0 {
            format!(
                "released {} of {}; the reservation holds {}",
                result.released,
                result.reservation.product_id,
                result.reservation.held_quantity()
            )
        } else {
            format!(
                "the reservation is already {}; nothing to release",
                result.reservation.status.as_str()
            )
        };
        if result.replayed {
            message.push_str(REPLAYED);
        }
        Self {
            released_quantity: result.released,
            available_quantity: result.stock.available_quantity(),
            reserved_quantity: result.stock.reserved_quantity,
            current_quantity: result.stock.total_quantity,
            message,
            reservation: Some(result.reservation.into()),
        }
    }
}

impl Observed for CommitResult {
    fn stock_after(&self) -> Option<(i32, i32)> {
        levels(&self.stock)
    }

    fn count(&self, metrics: &Metrics) {
        if self.committed > 0 && !self.replayed {
            metrics.reservation_committed(self.committed);
        }
    }
}

impl From<CommitResult> for pb::CommitReservationResponse {
    fn from(result: CommitResult) -> Self {
        let mut message = if result.committed > 0 {
            format!(
                "committed {} of {}; the reservation holds {}",
                result.committed,
                result.reservation.product_id,
                result.reservation.held_quantity()
            )
        } else {
            "the reservation is already committed; nothing to commit".to_owned()
        };
        if result.replayed {
            message.push_str(REPLAYED);
        }
        Self {
            committed_quantity: result.committed,
            available_quantity: result.stock.available_quantity(),
            reserved_quantity: result.stock.reserved_quantity,
            current_quantity: result.stock.total_quantity,
            message,
            reservation: Some(result.reservation.into()),
        }
    }
}

impl Observed for OrderReleaseResult {
    fn count(&self, metrics: &Metrics) {
        if !self.replayed {
            for _ in self.items.iter().filter(|item| item.released > 0) {
                metrics.reservation_released();
            }
        }
    }
}

impl From<OrderReleaseResult> for pb::ReleaseOrderResponse {
    fn from(result: OrderReleaseResult) -> Self {
        let mut message = if result.items.is_empty() {
            format!(
                "order {} holds nothing; nothing to release",
                result.order_id
            )
        } else {
            format!(
                "released {} reservation(s) of order {}",
                result.items.len(),
                result.order_id
            )
        };
        if result.replayed {
            message.push_str(REPLAYED);
        }
        Self {
            released: result
                .items
                .into_iter()
                .map(pb::ReleasedReservation::from)
                .collect(),
            message,
        }
    }
}

impl From<OrderReleaseItem> for pb::ReleasedReservation {
    fn from(item: OrderReleaseItem) -> Self {
        Self {
            product_id: item.reservation.product_id.clone(),
            released_quantity: item.released,
            available_quantity: item.stock.available_quantity(),
            reserved_quantity: item.stock.reserved_quantity,
            current_quantity: item.stock.total_quantity,
            reservation: Some(item.reservation.into()),
        }
    }
}

impl Observed for UpdateResult {
    fn stock_after(&self) -> Option<(i32, i32)> {
        levels(&self.stock)
    }
}

impl From<UpdateResult> for pb::UpdateInventoryResponse {
    fn from(result: UpdateResult) -> Self {
        let plan = result.plan;
        let mut message = if plan.creates_product {
            format!("created with {} on hand", plan.new_total)
        } else {
            format!(
                "stock on hand {} -> {}",
                plan.previous_total, plan.new_total
            )
        };
        if result.replayed {
            message.push_str(REPLAYED);
        }
        Self {
            available_quantity: result.stock.available_quantity(),
            product_id: result.stock.product_id,
            previous_quantity: plan.previous_total,
            current_quantity: result.stock.total_quantity,
            reserved_quantity: result.stock.reserved_quantity,
            quantity_change: plan.delta(),
            created: plan.creates_product,
            message,
            version: result.stock.version,
        }
    }
}

impl Observed for HistoryPage {}

impl From<HistoryPage> for pb::GetInventoryHistoryResponse {
    fn from(page: HistoryPage) -> Self {
        Self {
            entries: page
                .entries
                .into_iter()
                .map(pb::InventoryHistoryEntry::from)
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }
    }
}

impl From<HistoryEntry> for pb::InventoryHistoryEntry {
    fn from(entry: HistoryEntry) -> Self {
        // Metadata is always a JSON object written by the store; anything
        // else (NULL from a row written by hand) is shown as no metadata.
        let metadata = serde_json::from_value::<pbjson_types::Struct>(entry.metadata).ok();
        Self {
            id: entry.id,
            product_id: entry.product_id,
            operation_type: entry.operation.as_str().to_owned(),
            quantity_change: entry.quantity_change,
            order_id: entry.order_id.unwrap_or_default(),
            created_at: Some(timestamp(entry.created_at)),
            metadata,
        }
    }
}

/// An order's reservations, as `ListReservations` answers them.
#[derive(Debug)]
pub struct OrderReservations(pub Vec<Reservation>);

impl Observed for OrderReservations {}

impl From<OrderReservations> for pb::ListReservationsResponse {
    fn from(reservations: OrderReservations) -> Self {
        Self {
            reservations: reservations
                .0
                .into_iter()
                .map(pb::Reservation::from)
                .collect(),
        }
    }
}

/// A product's unit cost as set.
#[derive(Debug)]
pub struct UnitCost {
    /// The product.
    pub product_id: String,
    /// Its cost, if it has one.
    pub cost: Option<domain::Money>,
}

impl Observed for UnitCost {}

impl From<UnitCost> for pb::SetUnitCostResponse {
    fn from(cost: UnitCost) -> Self {
        Self {
            product_id: cost.product_id,
            unit_cost: cost.cost.map(|money| pb::Money {
                currency_code: money.currency,
                minor_units: money.minor_units,
            }),
        }
    }
}

impl Described for pb::SetUnitCostRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            product_id: Some(&self.product_id),
            ..Subject::default()
        }
    }
}

/// A product's alternatives with their stock, in order.
#[derive(Debug)]
pub struct ProductAlternatives(pub Vec<StockLevel>);

impl Observed for ProductAlternatives {}

impl ProductAlternatives {
    fn levels(self) -> Vec<pb::StockLevel> {
        self.0.into_iter().map(pb::StockLevel::from).collect()
    }
}

impl From<ProductAlternatives> for pb::SetProductAlternativesResponse {
    fn from(alternatives: ProductAlternatives) -> Self {
        Self {
            alternatives: alternatives.levels(),
        }
    }
}

impl From<ProductAlternatives> for pb::ListProductAlternativesResponse {
    fn from(alternatives: ProductAlternatives) -> Self {
        Self {
            alternatives: alternatives.levels(),
        }
    }
}

impl Described for pb::SetProductAlternativesRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            product_id: Some(&self.product_id),
            items: Some(self.alternative_ids.len()),
            ..Subject::default()
        }
    }
}

impl Described for pb::ListProductAlternativesRequest {
    fn subject(&self) -> Subject<'_> {
        Subject {
            product_id: Some(&self.product_id),
            ..Subject::default()
        }
    }
}

impl Observed for StockPage {
    fn stale(&self) -> Option<std::time::Duration> {
        self.stale
    }
}

impl From<StockPage> for pb::ListInventoryResponse {
    fn from(page: StockPage) -> Self {
        Self {
            stale: page.stale.is_some(),
            items: page.items.into_iter().map(pb::StockLevel::from).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }
    }
}

impl From<StockLevel> for pb::StockLevel {
    fn from(stock: StockLevel) -> Self {
        Self {
            available_quantity: stock.available_quantity(),
            product_id: stock.product_id,
            current_quantity: stock.total_quantity,
            reserved_quantity: stock.reserved_quantity,
            updated_at: Some(timestamp(stock.updated_at)),
            version: stock.version,
            low_stock_threshold: stock.low_stock_threshold,
        }
    }
}

impl From<Reservation> for pb::Reservation {
    fn from(reservation: Reservation) -> Self {
        let held_quantity = reservation.held_quantity();
        Self {
            reservation_id: reservation.id,
            product_id: reservation.product_id,
            order_id: reservation.order_id,
            quantity: reservation.quantity,
            held_quantity,
            status: pb::ReservationStatus::from(reservation.status).into(),
            expires_at: Some(timestamp(reservation.expires_at)),
            created_at: Some(timestamp(reservation.created_at)),
            committed_quantity: reservation.committed_quantity,
        }
    }
}

impl From<ReservationStatus> for pb::ReservationStatus {
    fn from(status: ReservationStatus) -> Self {
        match status {
            ReservationStatus::Active => Self::Active,
            ReservationStatus::Released => Self::Released,
            ReservationStatus::Expired => Self::Expired,
            ReservationStatus::Committed => Self::Committed,
        }
    }
}

impl From<ChangeKind> for pb::StockChangeKind {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::Reserve => Self::Reserve,
            ChangeKind::Release => Self::Release,
            ChangeKind::Commit => Self::Commit,
            ChangeKind::Update => Self::Update,
            ChangeKind::Expire => Self::Expire,
            ChangeKind::LowStock => Self::LowStock,
            ChangeKind::OutOfStock => Self::OutOfStock,
            ChangeKind::BackInStock => Self::BackInStock,
        }
    }
}

impl From<PositionedEvent> for pb::WatchInventoryResponse {
    fn from(positioned: PositionedEvent) -> Self {
        let event = positioned.event;
        Self {
            position: positioned.position,
            kind: pb::StockChangeKind::from(event.kind).into(),
            order_id: event.order_id.unwrap_or_default(),
            quantity_change: event.quantity_change,
            stock: Some(event.stock.into()),
            created_at: Some(timestamp(event.created_at)),
        }
    }
}

impl pb::ReserveOrderRequest {
    /// The order's items as (product id, quantity) pairs, as listed.
    pub fn demand(&self) -> Vec<(String, i32)> {
        self.items
            .iter()
            .map(|item| (item.product_id.clone(), item.quantity))
            .collect()
    }
}
