//! Compiles `carecast/v1/carecast.proto` and the Open Inference Protocol's
//! `inference/grpc_predict_v2.proto` in pure Rust (protox, no system protoc) and writes the
//! encoded descriptor set beside the generated code for gRPC server reflection.
use protox::prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["carecast/v1/carecast.proto", "inference/grpc_predict_v2.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("carecast_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
