//! The generated protobuf code, curated: messages, the tonic client and
//! server of `inventory.v1`, and the encoded descriptor set.

use std::sync::LazyLock;

use prost_reflect::DescriptorPool;

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
/// imports (google/api/*, google/protobuf/*, buf/validate/*), with
/// google/rpc/{status,error_details}.proto, exactly as protox encoded it:
/// the `google.api.http` options are intact. Served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/inventory_descriptor.bin"));

static DESCRIPTOR_POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .map_err(|e| format!("the descriptor set does not decode: {e}"))
});

/// [`FILE_DESCRIPTOR_SET`] decoded, once for the process: the REST layer
/// and the contract's rules share it (a clone is a handle; the decoded
/// descriptors with their comments take about 2 MiB).
///
/// # Errors
/// The descriptor set does not decode (a build defect).
pub fn descriptor_pool() -> Result<&'static DescriptorPool, &'static str> {
    DESCRIPTOR_POOL.as_ref().map_err(String::as_str)
}

/// The full name of the inventory service, as in gRPC paths and health checks.
pub const INVENTORY_SERVICE_NAME: &str = "inventory.v1.InventoryService";
