//! The gRPC edge: handlers that turn protobuf requests into domain calls and
//! domain results into protobuf responses ([`InventoryApi`]), with the
//! conversions on the types (`convert`) and the span, status and counters of
//! every call recorded in one place (`observe`); the one mapping from domain
//! errors to `tonic::Status` ([`status`]); health reporting for gRPC and HTTP
//! ([`health`], [`http_edge`]); CORS for the browsers' calls only ([`cors`]).

pub mod auth;
pub mod console;
pub mod contract;
mod convert;
pub mod cors;
pub mod health;
pub mod http_edge;
mod inventory;
mod observe;
pub mod status;

pub use inventory::InventoryApi;
pub use observe::STALE_HEADER;
