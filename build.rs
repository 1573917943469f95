//! Compiles `proto/` with protox (pure Rust, no system `protoc`) into:
//! - prost messages and tonic client/server code (`inventory.v1.rs`, `google.api.rs`);
//! - pbjson serde impls in the proto3 JSON mapping (`inventory.v1.serde.rs`);
//! - the encoded descriptor set with every transitive import and
//!   google/rpc/{status,error_details}.proto (`inventory_descriptor.bin`),
//!   read by server reflection, the REST layer and the contract's rules.
//!
//! - `google_rpc_descriptor.bin`: google/rpc/{status,error_details}.proto, which
//!   the REST layer merges into any other pool to render error details as JSON;
//! - for the tests only, `echo_descriptor.bin` and `echo/echo.v1.rs` from
//!   `tests/proto`: a second service that shows the REST layer is generic, and
//!   `conflict_descriptor.bin`, rules the REST layer must refuse.
//!
//! The descriptor bytes are written exactly as protox encodes them: decoding them
//! into `prost_types` and encoding again would drop the `google.api.http`
//! extension on every method.

use std::{env, error::Error, fs, path::PathBuf};

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &["inventory/v1/inventory.proto"];
const RPC_FILES: &[&str] = &["google/rpc/status.proto", "google/rpc/error_details.proto"];
const TEST_PROTO_ROOT: &str = "tests/proto";
const TEST_PROTO_FILES: &[&str] = &["echo/v1/echo.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    println!("cargo:rerun-if-changed={TEST_PROTO_ROOT}");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTO_FILES)?;

    // The generated services decode through the validating codec, which
    // finds a message's rules by its full name (`prost::Name`). buf/validate
    // only annotates: no Rust types are generated for it.
    let mut codegen = compiler.file_descriptor_set();
    codegen
        .file
        .retain(|file| !file.name().starts_with("buf/validate/"));

    // The served descriptors also carry google.rpc (the types of every
    // error's details, which tonic-types already provides in Rust): the REST
    // layer then renders details from the one pool the process decodes,
    // and reflection clients can decode them too.
    compiler.open_files(RPC_FILES)?;
    let descriptor_bytes = compiler.encode_file_descriptor_set();
    fs::write(out_dir.join("inventory_descriptor.bin"), &descriptor_bytes)?;

    let mut prost_config = tonic_prost_build::Config::new();
    prost_config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .codec_path("crate::api::contract::Codec")
        .compile_fds_with_config(codegen, prost_config)?;

    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".inventory.v1"])?;

    let mut rpc = protox::Compiler::new([PROTO_ROOT])?;
    rpc.include_imports(true).include_source_info(false);
    rpc.open_files(RPC_FILES)?;
    fs::write(
        out_dir.join("google_rpc_descriptor.bin"),
        rpc.encode_file_descriptor_set(),
    )?;

    let mut echo = protox::Compiler::new([TEST_PROTO_ROOT, PROTO_ROOT])?;
    echo.include_imports(true).include_source_info(true);
    echo.open_files(TEST_PROTO_FILES)?;
    fs::write(
        out_dir.join("echo_descriptor.bin"),
        echo.encode_file_descriptor_set(),
    )?;
    let mut conflict = protox::Compiler::new([TEST_PROTO_ROOT, PROTO_ROOT])?;
    conflict.include_imports(true);
    conflict.open_files(["conflict/v1/conflict.proto"])?;
    fs::write(
        out_dir.join("conflict_descriptor.bin"),
        conflict.encode_file_descriptor_set(),
    )?;

    let echo_out = out_dir.join("echo");
    fs::create_dir_all(&echo_out)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&echo_out)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(echo.file_descriptor_set())?;

    Ok(())
}
