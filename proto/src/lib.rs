//! The `carecast.v1` gRPC API, generated from `carecast/v1/carecast.proto`, and its
//! conversions from and to the inference core's types ([`convert`]); and the Open Inference
//! Protocol (KServe V2, [`inference`]), which Triton and KServe clients speak.

pub mod convert;

/// Messages and service stubs of `carecast.v1`.
pub mod v1 {
    tonic::include_proto!("carecast.v1");

    /// Encoded descriptor set of `carecast.v1` and `inference`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/carecast_v1_descriptor.bin"));
}

/// Messages and service stubs of the Open Inference Protocol (`inference.GRPCInferenceService`).
pub mod inference {
    tonic::include_proto!("inference");
}
