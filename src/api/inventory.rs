//! [`InventoryApi`]: the `inventory.v1.InventoryService` handlers. Each
//! decodes its request, calls [`Inventory`], and encodes the result; the
//! conversions live on the types ([`super::convert`]), and the span, the
//! status of an error and the business counters are recorded once, in
//! [`handle`]. The rules and validation live in the domain.

use futures_util::StreamExt as _;
use tonic::{Request, Response, Status};

use super::convert::{OrderReservations, ProductAlternatives, UnitCost};
use super::observe::{Operation, handle};
use crate::domain::Inventory;
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

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::inventory_service_server::InventoryService for InventoryApi {
    async fn check_inventory(
        &self,
        request: Request<pb::CheckInventoryRequest>,
    ) -> Answer<pb::CheckInventoryResponse> {
        let r = request.into_inner();
        let call = self.inventory.check(&r.product_id, r.required_quantity);
        handle(Operation::Check, &r, call).await
    }

    async fn reserve_inventory(
        &self,
        request: Request<pb::ReserveInventoryRequest>,
    ) -> Answer<pb::ReserveInventoryResponse> {
        let r = request.into_inner();
        let call = self.inventory.reserve(
            &r.product_id,
            &r.order_id,
            r.quantity,
            r.reservation_timeout,
        );
        handle(Operation::Reserve, &r, call).await
    }

    async fn reserve_order(
        &self,
        request: Request<pb::ReserveOrderRequest>,
    ) -> Answer<pb::ReserveOrderResponse> {
        let r = request.into_inner();
        let demand = r.demand();
        let call = self
            .inventory
            .reserve_order(&r.order_id, &demand, r.reservation_timeout);
        handle(Operation::ReserveOrder, &r, call).await
    }

    async fn release_inventory(
        &self,
        request: Request<pb::ReleaseInventoryRequest>,
    ) -> Answer<pb::ReleaseInventoryResponse> {
        let r = request.into_inner();
        let call = self
            .inventory
            .release(&r.product_id, &r.order_id, r.quantity, &r.request_id);
        handle(Operation::Release, &r, call).await
    }

    async fn update_inventory(
        &self,
        request: Request<pb::UpdateInventoryRequest>,
    ) -> Answer<pb::UpdateInventoryResponse> {
        let r = request.into_inner();
        let call = self.inventory.update(
            &r.product_id,
            &r.operation,
            r.quantity,
            r.expected_version,
            &r.request_id,
        );
        handle(Operation::Update, &r, call).await
    }

    async fn get_inventory_history(
        &self,
        request: Request<pb::GetInventoryHistoryRequest>,
    ) -> Answer<pb::GetInventoryHistoryResponse> {
        let r = request.into_inner();
        let call = self
            .inventory
            .history(&r.product_id, r.page_size, &r.page_token);
        handle(Operation::History, &r, call).await
    }

    async fn commit_reservation(
        &self,
        request: Request<pb::CommitReservationRequest>,
    ) -> Answer<pb::CommitReservationResponse> {
        let r = request.into_inner();
        let call = self
            .inventory
            .commit(&r.product_id, &r.order_id, r.quantity, &r.request_id);
        handle(Operation::Commit, &r, call).await
    }

    async fn release_order(
        &self,
        request: Request<pb::ReleaseOrderRequest>,
    ) -> Answer<pb::ReleaseOrderResponse> {
        let r = request.into_inner();
        let call = self.inventory.release_order(&r.order_id, &r.request_id);
        handle(Operation::ReleaseOrder, &r, call).await
    }

    async fn list_reservations(
        &self,
        request: Request<pb::ListReservationsRequest>,
    ) -> Answer<pb::ListReservationsResponse> {
        let r = request.into_inner();
        let call = async {
            let reservations = self.inventory.order_reservations(&r.order_id).await?;
            Ok(OrderReservations(reservations))
        };
        handle(Operation::ListReservations, &r, call).await
    }

    async fn list_inventory(
        &self,
        request: Request<pb::ListInventoryRequest>,
    ) -> Answer<pb::ListInventoryResponse> {
        let r = request.into_inner();
        let call = self.inventory.list_stock(r.page_size, &r.page_token);
        handle(Operation::List, &r, call).await
    }

    async fn set_low_stock_threshold(
        &self,
        request: Request<pb::SetLowStockThresholdRequest>,
    ) -> Answer<pb::SetLowStockThresholdResponse> {
        let r = request.into_inner();
        let call = self
            .inventory
            .set_low_stock_threshold(&r.product_id, r.low_stock_threshold);
        handle(Operation::SetThreshold, &r, call).await
    }

    async fn set_product_alternatives(
        &self,
        request: Request<pb::SetProductAlternativesRequest>,
    ) -> Answer<pb::SetProductAlternativesResponse> {
        let r = request.into_inner();
        let call = async {
            self.inventory
                .set_alternatives(&r.product_id, &r.alternative_ids)
                .await
                .map(ProductAlternatives)
        };
        handle(Operation::SetAlternatives, &r, call).await
    }

    async fn list_product_alternatives(
        &self,
        request: Request<pb::ListProductAlternativesRequest>,
    ) -> Answer<pb::ListProductAlternativesResponse> {
        let r = request.into_inner();
        let call = async {
            self.inventory
                .alternatives(&r.product_id)
                .await
                .map(ProductAlternatives)
        };
        handle(Operation::ListAlternatives, &r, call).await
    }

    async fn set_unit_cost(
        &self,
        request: Request<pb::SetUnitCostRequest>,
    ) -> Answer<pb::SetUnitCostResponse> {
        let r = request.into_inner();
        let call = async {
            let cost = r
                .unit_cost
                .as_ref()
                .map(|money| (money.currency_code.as_str(), money.minor_units));
            let set = self.inventory.set_unit_cost(&r.product_id, cost).await?;
            Ok(UnitCost {
                product_id: r.product_id.clone(),
                cost: set,
            })
        };
        handle(Operation::SetUnitCost, &r, call).await
    }

    type WatchInventoryStream = EventStream;

    async fn watch_inventory(
        &self,
        request: Request<pb::WatchInventoryRequest>,
    ) -> Answer<EventStream> {
        let r = request.into_inner();
        let events = self
            .inventory
            .watch(&r.product_ids, r.after)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(Box::pin(events.map(|event| {
            event
                .map(pb::WatchInventoryResponse::from)
                .map_err(Status::from)
        }))))
    }
}

/// The changes a `WatchInventory` call sends, until it fails.
pub type EventStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<pb::WatchInventoryResponse, Status>> + Send>,
>;
