//! The `carecast.v1` gRPC API, generated from `carecast/v1/carecast.proto`, and its
//! conversions from and to the inference core's types ([`convert`]).

pub mod convert;

/// Messages and service stubs of `carecast.v1`.
pub mod v1 {
    tonic::include_proto!("carecast.v1");

    /// Encoded descriptor set of `carecast.v1`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/carecast_v1_descriptor.bin"));
}
