//! Generates the prost/tonic code and serde (proto3 JSON mapping) impls for `proto/`.

use std::path::PathBuf;

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
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("vigil_descriptor.bin");

    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_protos(&files, &[root])?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .build(&[".vigil", ".inference"])?;
    Ok(())
}
