//! One port serving `carecast.v1`, the Open Inference Protocol (`inference.GRPCInferenceService`),
//! `grpc.health.v1.Health`, server reflection and, over HTTP/1.1 or HTTP/2, CDS Hooks at
//! `/cds-services`, planners' published population runs at `/population`, the Open Inference
//! Protocol's REST form at `/v2` and Prometheus metrics at `/metrics`, with
//! limits: message sizes, concurrent requests per connection, and a deadline for every request
//! (the client's `grpc-timeout` when shorter). TLS (and mutual TLS) when configured.

use crate::open_inference::OpenInference;
use crate::service::{AppState, Models, Monitoring, Scoring};
use crate::tls::Tls;
use carecast_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use carecast_proto::v1::{
    self as pb, model_service_server::ModelServiceServer, monitoring_service_server::MonitoringServiceServer,
    scoring_service_server::ScoringServiceServer,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// A batch of 1,000 patients with every feature fits; nothing larger is read.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Requests served at once on one connection; more wait (HTTP/2 flow control pushes back).
const PER_CONNECTION: usize = 256;
/// The longest any request may take.
const DEADLINE: Duration = Duration::from_secs(30);
/// The longest the server drains after being told to stop: streams end at once (their clients
/// reconnect elsewhere), and calls still running after this are cut off.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Accepted connections with Nagle's algorithm off: a response is sent the moment it is ready,
/// not held back up to 40 ms for the client's acknowledgement.
fn incoming(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|conn| conn.and_then(|c| c.set_nodelay(true).map(|()| c)))
}

/// A request that is not valid protobuf is the caller's error: `INVALID_ARGUMENT`, where tonic
/// answers `INTERNAL` (which tells a caller the server failed). Unary calls answer it in the
/// headers; a stream's broken request is mapped where the stream reads it.
fn request_errors<B>(mut response: tonic::codegen::http::Response<B>) -> tonic::codegen::http::Response<B> {
    let headers = response.headers_mut();
    let undecodable = headers.get("grpc-status").is_some_and(|s| s == "13")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.starts_with("failed%20to%20decode") || m.starts_with("failed to decode"));
    if undecodable {
        headers.insert("grpc-status", tonic::codegen::http::HeaderValue::from_static("3"));
    }
    response
}

/// Serves on `listener` (over TLS when `tls` is given) until `shutdown` resolves; then stops
/// accepting connections, ends open streams, and drains the requests in flight (at most
/// [`DRAIN`]) before returning.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let stopping = state.stopping.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.send_replace(true);
    };
    let mut stopped = state.stopping.subscribe();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ScoringServiceServer<Scoring>>().await;
    health.set_serving::<ModelServiceServer<Models>>().await;
    health.set_serving::<MonitoringServiceServer<Monitoring>>().await;
    health.set_serving::<GrpcInferenceServiceServer<OpenInference>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    crate::metrics::handle();
    let upkeep = tokio::spawn(crate::metrics::upkeep());
    let drift = state.drift.clone();
    let writing = tokio::spawn(drift.clone().keep_writing());
    let exporting = drift.clone();
    let http = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || async move {
                exporting.export();
                crate::metrics::handle().render()
            }),
        )
        .merge(crate::cds::routes(state.clone()))
        .merge(crate::population::routes(state.clone()))
        .merge(crate::open_inference::routes(state.clone()));
    let routes = tonic::service::Routes::from(http)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(ScoringServiceServer::new(Scoring { state: state.clone() }).max_decoding_message_size(MAX_MESSAGE))
        .add_service(ModelServiceServer::new(Models { state: state.clone() }))
        .add_service(
            GrpcInferenceServiceServer::new(OpenInference { state: state.clone() })
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(MonitoringServiceServer::new(Monitoring { state }).max_decoding_message_size(MAX_MESSAGE));
    let server = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(request_errors))
        .accept_http1(true)
        .timeout(DEADLINE)
        .concurrency_limit_per_connection(PER_CONNECTION)
        .add_routes(routes);
    let serving = async {
        match tls {
            None => server.serve_with_incoming_shutdown(incoming(listener), shutdown).await,
            Some(tls) => server.serve_with_incoming_shutdown(tls.accept(incoming(listener)), shutdown).await,
        }
    };
    let served = tokio::select! {
        served = serving => served,
        () = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(DRAIN).await;
        } => {
            tracing::warn!(seconds = DRAIN.as_secs(), "drain time exceeded: calls still in flight were cut off");
            Ok(())
        }
    };
    upkeep.abort();
    writing.abort();
    tokio::task::spawn_blocking(move || drift.flush()).await.ok();
    Ok(served?)
}
