//! Compiles `proto/` with protox (pure Rust, no system `protoc`) into:
//! - prost messages and tonic client/server code (`inventory.v1.rs`, `google.api.rs`);
//! - pbjson serde impls in the proto3 JSON mapping (`inventory.v1.serde.rs`);
//! - the encoded descriptor set with every transitive import
//!   (`inventory_descriptor.bin`), read by server reflection and the REST layer.
//!
//! The descriptor bytes are written exactly as protox encodes them: decoding them
//! into `prost_types` and encoding again would drop the `google.api.http`
//! extension on every method.

use std::{env, error::Error, fs, path::PathBuf};

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &["inventory/v1/inventory.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTO_FILES)?;

    let descriptor_bytes = compiler.encode_file_descriptor_set();
    fs::write(out_dir.join("inventory_descriptor.bin"), &descriptor_bytes)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(compiler.file_descriptor_set())?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".inventory.v1"])?;

    Ok(())
}
