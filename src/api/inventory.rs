//! [`InventoryApi`]: the `inventory.v1.InventoryService` handlers.
//! Each decodes its request, calls [`Inventory`], and encodes the result; the
//! rules and validation live in the domain.
//!
//! Each handler runs in its business span (`inventory.check`,
//! `inventory.reserve`, ...), a child of the server span, with the seed's
//! attributes: `inventory.operation`, `inventory.product_id`,
//! `inventory.quantity`, `order.id`, and after the call `inventory.available`
//! and `inventory.reserved` (the stock after it), or on failure the error
//! status (`otel.status_description`) and `rpc.grpc.status_code`. The
//! business counters (reservations created and released, insufficient stock)
//! are counted here too.

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};
use tracing::Span;
use tracing::field::Empty;

use crate::domain::{
    self, CheckOutcome, CommitResult, HistoryEntry, Inventory, OrderReleaseItem, ReleaseResult,
    Reservation, ReservationResult, ReservationStatus, StockLevel, UpdateResult,
};
use crate::pb;

/// The gRPC face of the inventory.
#[derive(Clone)]
pub struct InventoryApi {
    /// The use cases every handler calls.
    inventory: Inventory,
}

impl InventoryApi {
    /// Handlers over `inventory`.
    pub fn new(inventory: Inventory) -> Self {
        Self { inventory }
    }

    /// The tonic service to add to a router.
    pub fn into_service(self) -> pb::inventory_service_server::InventoryServiceServer<Self> {
        pb::inventory_service_server::InventoryServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl pb::inventory_service_server::InventoryService for InventoryApi {
    #[tracing::instrument(
        name = "inventory.check",
        skip_all,
        fields(
            inventory.operation = "check",
            inventory.product_id = %request.get_ref().product_id,
            inventory.quantity = request.get_ref().required_quantity,
            inventory.available = Empty,
            inventory.reserved = Empty,
            rpc.grpc.status_code = Empty,
            otel.status_description = Empty,
        )
    )]
    async fn check_inventory(
        &self,
        request: Request<pb::CheckInventoryRequest>,
    ) -> Result<Response<pb::CheckInventoryResponse>, Status> {
        let request = request.into_inner();
        let outcome = self
            .inventory
            .check(&request.product_id, request.required_quantity)
            .await;
        let outcome = traced(outcome, |o| Some(stock_attributes(&o.stock)))?;
        Ok(Response::new(check_response(outcome)))
    }

    #[tracing::instrument(
        name = "inventory.reserve",
        skip_all,
        fields(
            inventory.operation = "reserve",
            inventory.product_id = %request.get_ref().product_id,
            inventory.quantity = request.get_ref().quantity,
            order.id = %request.get_ref().order_id,
            inventory.available = Empty,
            inventory.reserved = Empty,
            rpc.grpc.status_code = Empty,
            otel.status_description = Empty,
        )
    )]
    async fn reserve_inventory(
        &self,
        request: Request<pb::ReserveInventoryRequest>,
    ) -> Result<Response<pb::ReserveInventoryResponse>, Status> {
        let request = request.into_inner();
        let result = self
            .inventory
            .reserve(
                &request.product_id,
                &request.order_id,
                request.quantity,
                request.reservation_timeout,
            )
            .await;
        let result = traced(result, |r| Some(stock_attributes(&r.stock)))?;
        if result.created
            && let Some(context) = crate::telemetry::current()
        {
            context
                .metrics
                .reservation_created(&result.reservation.product_id);
        }
        Ok(Response::new(reserve_response(result)))
    }

    #[tracing::instrument(
        name = "inventory.reserve_order",
        skip_all,
        fields(
            inventory.operation = "reserve_order",
            order.id = %request.get_ref().order_id,
            inventory.items = request.get_ref().items.len(),
            rpc.grpc.status_code = Empty,
            otel.status_description = Empty,
        )
    )]
    async fn reserve_order(
        &self,
        request: Request<pb::ReserveOrderRequest>,
    ) -> Result<Response<pb::ReserveOrderResponse>, Status> {
        let request = request.into_inner();
        let items: Vec<(String, i32)> = request
            .items
            .into_iter()
            .map(|item| (item.product_id, item.quantity))
            .collect();
        let result = self
            .inventory
            .reserve_order(&request.order_id, &items, request.reservation_timeout)
            .await;
        let result = traced(result, |_| None)?;
        if let Some(context) = crate::telemetry::current() {
            for item in result.items.iter().filter(|item| item.created) {
                context
                    .metrics
                    .reservation_created(&item.reservation.product_id);
            }
        }
        let created = result.items.iter().filter(|item| item.created).count();
        let message = if created == result.items.len() {
            format!(
                "reserved {} product(s) for order {}",
                created, request.order_id
            )
        } else {
            format!(
                "reserved {} product(s) for order {}; {} reserved by an earlier request, \
                 returned as they stand",
                created,
                request.order_id,
                result.items.len() - created
            )
        };
        Ok(Response::new(pb::ReserveOrderResponse {
            items: result.items.into_iter().map(reserved_item).collect(),
            message,
        }))
    }

    #[tracing::instrument(
        name = "inventory.release",
        skip_all,
        fields(
            inventory.operation = "release",
            inventory.product_id = %request.get_ref().product_id,
            inventory.quantity = request.get_ref().quantity,
            order.id = %request.get_ref().order_id,
            inventory.available = Empty,
            inventory.reserved = Empty,
            rpc.grpc.status_code = Empty,
            otel.status_description = Empty,
        )
    )]
    async fn release_inventory(
        &self,
        request: Request<pb::ReleaseInventoryRequest>,
    ) -> Result<Response<pb::ReleaseInventoryResponse>, Status> {
        let request = request.into_inner();
        let result = self
            .inventory
            .release(
                &request.product_id,
                &request.order_id,
                request.quantity,
                &request.request_id,
            )
            .await;
        let result = traced(result, |r| Some(stock_attributes(&r.stock)))?;
        if result.released > 0
            && !result.replayed
            && let Some(context) = crate::telemetry::current()
        {
            context.metrics.reservation_released();
        }
        Ok(Response::new(release_response(result)))
    }

    #[tracing::instrument(
        name = "inventory.update",
        skip_all,
        fields(
            inventory.operation = "update",
            inventory.product_id = %request.get_ref().product_id,
            inventory.quantity = request.get_ref().quantity,
            inventory.available = Empty,
            inventory.reserved = Empty,
            rpc.grpc.status_code = Empty,
            otel.status_description = Empty,
        )
    )]
    async fn update_inventory(
        &self,
        request: Request<pb::UpdateInventoryRequest>,
    ) -> Result<Response<pb::UpdateInventoryResponse>, Status> {
        let request = request.into_inner();
        let result = self
            .inventory
            .update(
                &request.product_id,
                &request.operation,
                request.quantity,
                request.expected_version,
                &request.request_id,
            )
            .await;
        let result = traced(result, |r| Some(stock_attributes(&r.stock)))?;
        Ok(Response::new(update_response(result)))
    }

    #[tracing::instrument(
        name = "inventory.history",
        skip_all,
        fields(
            inventory.operation = "history",
            inventory.product_id = %request.get_ref().product_id,
            rpc.grpc.status_code = Empty,
            otel.status_description = Empty,
        )
    )]
    async fn get_inventory_history(
        &self,
        request: Request<pb::GetInventoryHistoryRequest>,
    ) -> Result<Response<pb::GetInventoryHistoryResponse>, Status> {
        let request = request.into_inner();
        let page = self
            .inventory
            .history(&request.product_id, request.page_size, &request.page_token)
            .await;
        let page = traced(page, |_| None)?;
        Ok(Response::new(pb::GetInventoryHistoryResponse {
            entries: page.entries.into_iter().map(history_entry).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(
        name = "inventory.commit",
        skip_all,
        fields(
            inventory.operation = "commit",
            inventory.product_id = %request.get_ref().product_id,
            inventory.quantity = request.get_ref().quantity,
            order.id = %request.get_ref().order_id,
            inventory.available = Empty,
            inventory.reserved = Empty,
            rpc.grpc.status_code = Empty,
            otel.status_description = Empty,
        )
    )]
    async fn commit_reservation(
        &self,
        request: Request<pb::CommitReservationRequest>,
    ) -> Result<Response<pb::CommitReservationResponse>, Status> {
        let request = request.into_inner();
        let result = self
            .inventory
            .commit(
                &request.product_id,
                &request.order_id,
                request.quantity,
                &request.request_id,
            )
            .await;
        let result = traced(result, |r| Some(stock_attributes(&r.stock)))?;
        if result.committed > 0
            && !result.replayed
            && let Some(context) = crate::telemetry::current()
        {
            context.metrics.reservation_committed();
        }
        Ok(Response::new(commit_response(result)))
    }

    #[tracing::instrument(
        name = "inventory.release_order",
        skip_all,
        fields(
            inventory.operation = "release_order",
            order.id = %request.get_ref().order_id,
            rpc.grpc.status_code = Empty,
            otel.status_description = Empty,
        )
    )]
    async fn release_order(
        &self,
        request: Request<pb::ReleaseOrderRequest>,
    ) -> Result<Response<pb::ReleaseOrderResponse>, Status> {
        let request = request.into_inner();
        let result = self
            .inventory
            .release_order(&request.order_id, &request.request_id)
            .await;
        let result = traced(result, |_| None)?;
        let released = result.items;
        if !result.replayed
            && let Some(context) = crate::telemetry::current()
        {
            for _ in released.iter().filter(|r| r.released > 0) {
                context.metrics.reservation_released();
            }
        }
        let mut message = if released.is_empty() {
            format!(
                "order {} holds nothing; nothing to release",
                request.order_id
            )
        } else {
            format!(
                "released {} reservation(s) of order {}",
                released.len(),
                request.order_id
            )
        };
        if result.replayed {
            message.push_str(REPLAYED);
        }
        Ok(Response::new(pb::ReleaseOrderResponse {
            released: released.into_iter().map(released_reservation).collect(),
            message,
        }))
    }

    #[tracing::instrument(
        name = "inventory.list_reservations",
        skip_all,
        fields(
            inventory.operation = "list_reservations",
            order.id = %request.get_ref().order_id,
            rpc.grpc.status_code = Empty,
            otel.status_description = Empty,
        )
    )]
    async fn list_reservations(
        &self,
        request: Request<pb::ListReservationsRequest>,
    ) -> Result<Response<pb::ListReservationsResponse>, Status> {
        let request = request.into_inner();
        let reservations = self.inventory.order_reservations(&request.order_id).await;
        let reservations = traced(reservations, |_| None)?;
        Ok(Response::new(pb::ListReservationsResponse {
            reservations: reservations.into_iter().map(reservation).collect(),
        }))
    }

    #[tracing::instrument(
        name = "inventory.list",
        skip_all,
        fields(
            inventory.operation = "list",
            rpc.grpc.status_code = Empty,
            otel.status_description = Empty,
        )
    )]
    async fn list_inventory(
        &self,
        request: Request<pb::ListInventoryRequest>,
    ) -> Result<Response<pb::ListInventoryResponse>, Status> {
        let request = request.into_inner();
        let page = self
            .inventory
            .list_stock(request.page_size, &request.page_token)
            .await;
        let page = traced(page, |_| None)?;
        Ok(Response::new(pb::ListInventoryResponse {
            items: page.items.into_iter().map(stock_level).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }
}

/// Records a use case's outcome on the current (business) span and maps an
/// error to its status: `stock` picks the (available, reserved) quantities
/// to record from a success; a failure records its gRPC code and message
/// (marking the span as an error) and counts an insufficient-stock refusal.
fn traced<T>(
    result: Result<T, domain::Error>,
    stock: impl FnOnce(&T) -> Option<(i32, i32)>,
) -> Result<T, Status> {
    let span = Span::current();
    match result {
        Ok(value) => {
            if let Some((available, reserved)) = stock(&value) {
                span.record("inventory.available", available);
                span.record("inventory.reserved", reserved);
            }
            Ok(value)
        }
        Err(error) => {
            if let domain::Error::InsufficientStock { available, .. } = &error {
                span.record("inventory.available", *available);
            }
            if matches!(
                error,
                domain::Error::InsufficientStock { .. }
                    | domain::Error::InsufficientStockForOrder { .. }
            ) && let Some(context) = crate::telemetry::current()
            {
                context.metrics.insufficient_stock();
            }
            let status = Status::from(error);
            span.record("rpc.grpc.status_code", status.code() as i32);
            span.record("otel.status_description", status.message());
            Err(status)
        }
    }
}

/// The (available, reserved) quantities of a stock level.
fn stock_attributes(stock: &StockLevel) -> (i32, i32) {
    (stock.available_quantity(), stock.reserved_quantity)
}

fn timestamp(at: DateTime<Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp::from(at)
}

fn check_response(outcome: CheckOutcome) -> pb::CheckInventoryResponse {
    let message = domain::rules::check_message(&outcome.stock, outcome.required_quantity);
    let StockLevel {
        product_id,
        total_quantity,
        reserved_quantity,
        updated_at,
        version,
    } = outcome.stock;
    pb::CheckInventoryResponse {
        available: outcome.available,
        current_quantity: total_quantity,
        reserved_quantity,
        message,
        available_quantity: total_quantity - reserved_quantity,
        product_id,
        updated_at: Some(timestamp(updated_at)),
        version,
    }
}

fn reserve_response(result: ReservationResult) -> pb::ReserveInventoryResponse {
    let message = if result.created {
        format!(
            "reserved {} of {} for order {}",
            result.reservation.quantity, result.reservation.product_id, result.reservation.order_id
        )
    } else {
        format!(
            "order {} already made this reservation; returned as it stands ({})",
            result.reservation.order_id,
            result.reservation.status.as_str()
        )
    };
    pb::ReserveInventoryResponse {
        reservation_id: result.reservation.id.clone(),
        expires_at: Some(timestamp(result.reservation.expires_at)),
        available_quantity: result.stock.available_quantity(),
        reserved_quantity: result.stock.reserved_quantity,
        current_quantity: result.stock.total_quantity,
        message,
        reservation: Some(reservation(result.reservation)),
    }
}

/// The summary of a result kept for a retried `request_id`.
const REPLAYED: &str = "; replayed the first result of this request_id";

fn release_response(result: ReleaseResult) -> pb::ReleaseInventoryResponse {
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
    pb::ReleaseInventoryResponse {
        released_quantity: result.released,
        available_quantity: result.stock.available_quantity(),
        reserved_quantity: result.stock.reserved_quantity,
        current_quantity: result.stock.total_quantity,
        message,
        reservation: Some(reservation(result.reservation)),
    }
}

fn commit_response(result: CommitResult) -> pb::CommitReservationResponse {
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
    pb::CommitReservationResponse {
        committed_quantity: result.committed,
        available_quantity: result.stock.available_quantity(),
        reserved_quantity: result.stock.reserved_quantity,
        current_quantity: result.stock.total_quantity,
        message,
        reservation: Some(reservation(result.reservation)),
    }
}

fn reserved_item(result: ReservationResult) -> pb::ReservedItem {
    pb::ReservedItem {
        product_id: result.reservation.product_id.clone(),
        available_quantity: result.stock.available_quantity(),
        reserved_quantity: result.stock.reserved_quantity,
        current_quantity: result.stock.total_quantity,
        created: result.created,
        reservation: Some(reservation(result.reservation)),
    }
}

fn released_reservation(result: OrderReleaseItem) -> pb::ReleasedReservation {
    pb::ReleasedReservation {
        product_id: result.reservation.product_id.clone(),
        released_quantity: result.released,
        available_quantity: result.stock.available_quantity(),
        reserved_quantity: result.stock.reserved_quantity,
        current_quantity: result.stock.total_quantity,
        reservation: Some(reservation(result.reservation)),
    }
}

fn stock_level(stock: StockLevel) -> pb::StockLevel {
    pb::StockLevel {
        available_quantity: stock.available_quantity(),
        product_id: stock.product_id,
        current_quantity: stock.total_quantity,
        reserved_quantity: stock.reserved_quantity,
        updated_at: Some(timestamp(stock.updated_at)),
        version: stock.version,
    }
}

fn update_response(result: UpdateResult) -> pb::UpdateInventoryResponse {
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
    pb::UpdateInventoryResponse {
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

fn reservation(reservation: Reservation) -> pb::Reservation {
    let held_quantity = reservation.held_quantity();
    pb::Reservation {
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

fn history_entry(entry: HistoryEntry) -> pb::InventoryHistoryEntry {
    // Metadata is always a JSON object written by the store; anything else
    // (NULL from a row written by hand) is shown as no metadata.
    let metadata = serde_json::from_value::<pbjson_types::Struct>(entry.metadata).ok();
    pb::InventoryHistoryEntry {
        id: entry.id,
        product_id: entry.product_id,
        operation_type: entry.operation.as_str().to_owned(),
        quantity_change: entry.quantity_change,
        order_id: entry.order_id.unwrap_or_default(),
        created_at: Some(timestamp(entry.created_at)),
        metadata,
    }
}
