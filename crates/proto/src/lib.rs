//! The vigil wire contract: generated prost/tonic code for `proto/`, with serde impls that follow
//! the canonical proto3 JSON mapping, and the conversions to and from domain types.
//!
//! Domain code never sees these structs: it converts at the edge with `TryFrom` (validating) and
//! `From` (infallible), both in [`convert`]. JSON signals from outside are read by
//! [`signal_json::decode`], which accepts the aliases and spellings people write.

pub mod convert;
/// Feedback conversions: submissions and stored verdicts.
pub mod feedback;
pub mod signal_json;

/// `vigil.v1`: messages and the `Predictor` service.
pub mod v1 {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/vigil.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/vigil.v1.serde.rs"));
}

/// `inference`: the Open Inference Protocol v2 gRPC API.
pub mod inference {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));
    include!(concat!(env!("OUT_DIR"), "/inference.serde.rs"));
}

/// Encoded `FileDescriptorSet` of every proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/vigil_descriptor.bin"));

pub use convert::ConversionError;
