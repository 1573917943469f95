//! The gRPC edge: handlers that turn protobuf requests into domain calls and
//! domain results into protobuf responses ([`InventoryApi`]), the one mapping
//! from domain errors to `tonic::Status` ([`status`]), and health reporting
//! for gRPC and HTTP ([`health`]).

pub mod health;
pub mod http_edge;
mod inventory;
pub mod status;

pub use inventory::InventoryApi;
