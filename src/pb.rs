//! The generated protobuf code, curated: messages, the tonic client and
//! server of `inventory.v1`, and the encoded descriptor set.

/// `inventory.v1`: messages (with pbjson serde impls in the proto3 JSON
/// mapping), the `InventoryService` server trait and client.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    reason = "generated code: prost and tonic output, docs come from the proto comments"
)]
pub mod inventory {
    /// Version 1 of the inventory API.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/inventory.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/inventory.v1.serde.rs"));
    }
}

pub use inventory::v1::*;

/// The encoded `FileDescriptorSet` of `inventory.proto` and every file it
/// imports (google/api/*, google/protobuf/*), exactly as protox encoded it:
/// the `google.api.http` options are intact. Served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/inventory_descriptor.bin"));

/// The full name of the inventory service, as in gRPC paths and health checks.
pub const INVENTORY_SERVICE_NAME: &str = "inventory.v1.InventoryService";
