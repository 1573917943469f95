//! The baseline of `benches/check_vs_tonic.sh`: a minimal tonic server
//! answering `inventory.v1.InventoryService/CheckInventory` with a response
//! of the same shape as the service's (every field set, the product id
//! echoed), from a constant, with nothing else: no layers, no domain, no
//! cache, no metrics. What the service does per check on top of this is what
//! the benchmark's ratio measures. Other methods are UNIMPLEMENTED.
//!
//! ```sh
//! cargo run --release --example check_baseline -- 127.0.0.1:19090
//! ```

use std::net::SocketAddr;

use inventory_service::pb;
use inventory_service::pb::inventory_service_server::{InventoryService, InventoryServiceServer};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

struct Baseline {
    updated_at: pbjson_types::Timestamp,
}

type Answer<T> = Result<Response<T>, Status>;

fn unimplemented<T>() -> Answer<T> {
    Err(Status::unimplemented(
        "the baseline answers CheckInventory only",
    ))
}

#[tonic::async_trait]
impl InventoryService for Baseline {
    async fn check_inventory(
        &self,
        request: Request<pb::CheckInventoryRequest>,
    ) -> Answer<pb::CheckInventoryResponse> {
        let request = request.into_inner();
        let (current, reserved) = (1_000, 0);
        Ok(Response::new(pb::CheckInventoryResponse {
            available: current - reserved >= request.required_quantity,
            current_quantity: current,
            reserved_quantity: reserved,
            message: "in stock".to_owned(),
            available_quantity: current - reserved,
            product_id: request.product_id,
            updated_at: Some(self.updated_at),
            version: 1,
            stale: false,
            low_stock_threshold: None,
        }))
    }

    async fn reserve_order(
        &self,
        _: Request<pb::ReserveOrderRequest>,
    ) -> Answer<pb::ReserveOrderResponse> {
        unimplemented()
    }

    async fn set_low_stock_threshold(
        &self,
        _: Request<pb::SetLowStockThresholdRequest>,
    ) -> Answer<pb::SetLowStockThresholdResponse> {
        unimplemented()
    }

    async fn set_product_alternatives(
        &self,
        _: Request<pb::SetProductAlternativesRequest>,
    ) -> Answer<pb::SetProductAlternativesResponse> {
        unimplemented()
    }

    async fn list_product_alternatives(
        &self,
        _: Request<pb::ListProductAlternativesRequest>,
    ) -> Answer<pb::ListProductAlternativesResponse> {
        unimplemented()
    }

    async fn set_unit_cost(
        &self,
        _: Request<pb::SetUnitCostRequest>,
    ) -> Answer<pb::SetUnitCostResponse> {
        unimplemented()
    }

    type WatchInventoryStream =
        futures_util::stream::Empty<Result<pb::WatchInventoryResponse, Status>>;

    async fn watch_inventory(
        &self,
        _: Request<pb::WatchInventoryRequest>,
    ) -> Answer<Self::WatchInventoryStream> {
        unimplemented()
    }

    async fn reserve_inventory(
        &self,
        _: Request<pb::ReserveInventoryRequest>,
    ) -> Answer<pb::ReserveInventoryResponse> {
        unimplemented()
    }

    async fn release_inventory(
        &self,
        _: Request<pb::ReleaseInventoryRequest>,
    ) -> Answer<pb::ReleaseInventoryResponse> {
        unimplemented()
    }

    async fn update_inventory(
        &self,
        _: Request<pb::UpdateInventoryRequest>,
    ) -> Answer<pb::UpdateInventoryResponse> {
        unimplemented()
    }

    async fn get_inventory_history(
        &self,
        _: Request<pb::GetInventoryHistoryRequest>,
    ) -> Answer<pb::GetInventoryHistoryResponse> {
        unimplemented()
    }

    async fn commit_reservation(
        &self,
        _: Request<pb::CommitReservationRequest>,
    ) -> Answer<pb::CommitReservationResponse> {
        unimplemented()
    }

    async fn release_order(
        &self,
        _: Request<pb::ReleaseOrderRequest>,
    ) -> Answer<pb::ReleaseOrderResponse> {
        unimplemented()
    }

    async fn list_reservations(
        &self,
        _: Request<pb::ListReservationsRequest>,
    ) -> Answer<pb::ListReservationsResponse> {
        unimplemented()
    }

    async fn list_inventory(
        &self,
        _: Request<pb::ListInventoryRequest>,
    ) -> Answer<pb::ListInventoryResponse> {
        unimplemented()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:19090".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("check_baseline listening on {}", listener.local_addr()?);
    let baseline = Baseline {
        updated_at: pbjson_types::Timestamp::from(chrono::Utc::now()),
    };
    // As the service: TCP_NODELAY on accepted connections.
    Server::builder()
        .add_service(InventoryServiceServer::new(baseline))
        .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
        .await?;
    Ok(())
}
