//! One port serving `carecast.v1`, `grpc.health.v1.Health` and server reflection.

use crate::service::{AppState, Models, Scoring};
use carecast_proto::v1::{self as pb, model_service_server::ModelServiceServer, scoring_service_server::ScoringServiceServer};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// Serves on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ScoringServiceServer<Scoring>>().await;
    health.set_serving::<ModelServiceServer<Models>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(ScoringServiceServer::new(Scoring { state: state.clone() }))
        .add_service(ModelServiceServer::new(Models { state }))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
