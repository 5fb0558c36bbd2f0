//! Generates the prost/tonic code and serde (proto3 JSON mapping) impls for `proto/`.
//!
//! The `.proto` files are parsed by protox, a protobuf compiler written in Rust, so building
//! vigil needs no system `protoc`.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "vigil/v1/signal.proto",
    "vigil/v1/events.proto",
    "vigil/v1/soar.proto",
    "vigil/v1/workflow.proto",
    "vigil/v1/health.proto",
    "vigil/v1/model.proto",
    "vigil/v1/predictor.proto",
    "inference/grpc_predict_v2.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): a build script's binary is reused across checkouts that
    // share a target directory, and env!() would keep pointing at the checkout that compiled it.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&root])?;
    let encoded = descriptors.encode_to_vec();
    // Server reflection serves the same descriptors (`crate::FILE_DESCRIPTOR_SET`).
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("vigil_descriptor.bin"), &encoded)?;

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(descriptors)?;

    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .build(&[".vigil", ".inference"])?;
    Ok(())
}
