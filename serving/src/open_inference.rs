//! The Open Inference Protocol (KServe V2), so that Triton and KServe clients and tools can call
//! Carecast: `inference.GRPCInferenceService` over gRPC, and its REST form under `/v2`. A model
//! takes one tensor per input (numbers FP64, categories BYTES; a value not recorded is NaN, an
//! empty string, or JSON `null`) and `patient_key` (BYTES, audited), one element per patient; it
//! returns `probability`, `risk_band`, `margin`, `base_value` and `contributions` (each input's
//! exact contribution in log-odds, a row per patient in input order: the explanation as a
//! second output tensor). Each row is scored by the one path `carecast.v1` scores by
//! ([`Scoring::evaluate`]: input checks, drift counts, shadow), audited before the response is
//! sent, under the same authentication (clinician role) and limits; a row that cannot be scored
//! fails the call, naming the row and input (the protocol has no per-row errors).
//!
//! REST takes JSON tensors, and Triton's binary tensor extension for inputs
//! (`Inference-Header-Content-Length`); it answers in JSON.

use crate::auth::Role;
use crate::service::{AppState, MAX_BATCH, Scoring, store_status};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use carecast_models::{FeatureKind, ModelPackage};
use carecast_proto::inference::{self as oip, model_infer_request, model_infer_response, model_metadata_response};
use carecast_proto::v1 as pb;
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response as GrpcResponse, Status};

/// The input naming each row's pseudonymous patient key.
pub const PATIENT_KEY: &str = "patient_key";
const OUTPUTS: [&str; 5] = ["probability", "risk_band", "margin", "base_value", "contributions"];

/// A tensor's values, whichever way they came.
#[derive(Debug, Clone, PartialEq)]
enum Data {
    Numbers(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

#[derive(Debug, Clone)]
struct Tensor {
    name: String,
    datatype: &'static str,
    shape: Vec<i64>,
    data: Data,
}

impl Data {
    fn len(&self) -> usize {
        match self {
            Data::Numbers(v) => v.len(),
            Data::Bytes(v) => v.len(),
        }
    }

    /// Little-endian raw contents: FP64 as 8 bytes each, BYTES each after its 4-byte length.
    fn raw(&self) -> Vec<u8> {
        match self {
            Data::Numbers(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Bytes(v) => {
                v.iter().flat_map(|b| (b.len() as u32).to_le_bytes().into_iter().chain(b.iter().copied())).collect()
            }
        }
    }
}

/// Which datatypes an input may come in, read as numbers or bytes.
fn numeric_width(datatype: &str) -> Option<usize> {
    match datatype {
        "FP64" | "INT64" => Some(8),
        "FP32" | "INT32" => Some(4),
        _ => None,
    }
}

/// Decodes raw little-endian contents of `datatype`.
fn from_raw(name: &str, datatype: &str, raw: &[u8]) -> Result<Data, String> {
    let bad = |reason: String| format!("input `{name}`: {reason}");
    if datatype == "BYTES" {
        let (mut out, mut rest) = (Vec::new(), raw);
        while !rest.is_empty() {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return Err(bad("raw BYTES contents cut short in an element's length".into()));
            };
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                return Err(bad("raw BYTES contents cut short in an element".into()));
            }
            out.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        return Ok(Data::Bytes(out));
    }
    let width = numeric_width(datatype)
        .ok_or_else(|| bad(format!("datatype {datatype} not accepted (FP64, FP32, INT64, INT32 or BYTES)")))?;
    if !raw.len().is_multiple_of(width) {
        return Err(bad(format!("{} raw bytes are not a whole number of {datatype} values", raw.len())));
    }
    Ok(Data::Numbers(
        raw.chunks_exact(width)
            .map(|c| match datatype {
                "FP64" => f64::from_le_bytes(c.try_into().expect("8 bytes")),
                "INT64" => i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64,
                "FP32" => f64::from(f32::from_le_bytes(c.try_into().expect("4 bytes"))),
                _ => f64::from(i32::from_le_bytes(c.try_into().expect("4 bytes"))),
            })
            .collect(),
    ))
}

/// A model's inputs as the protocol describes them.
fn inputs_of(pkg: &ModelPackage) -> Vec<(String, &'static str, Vec<i64>)> {
    std::iter::once((PATIENT_KEY.to_string(), "BYTES", vec![-1, 1]))
        .chain(pkg.manifest.features.iter().map(|f| {
            let datatype = if f.kind == FeatureKind::Numeric { "FP64" } else { "BYTES" };
            (f.name.clone(), datatype, vec![-1, 1])
        }))
        .collect()
}

fn outputs_of(pkg: &ModelPackage) -> Vec<(String, &'static str, Vec<i64>)> {
    let width = pkg.manifest.features.len() as i64;
    vec![
        ("probability".into(), "FP64", vec![-1]),
        ("risk_band".into(), "BYTES", vec![-1]),
        ("margin".into(), "FP64", vec![-1]),
        ("base_value".into(), "FP64", vec![-1]),
        ("contributions".into(), "FP64", vec![-1, width]),
    ]
}

/// Scores the rows the input tensors hold with `model` (`version`, or the one served), audits
/// them, and returns the version and the requested outputs (all when none are named).
async fn infer(
    state: &Arc<AppState>,
    caller: &str,
    model: &str,
    version: &str,
    inputs: Vec<Tensor>,
    requested: Vec<String>,
) -> Result<(String, Vec<Tensor>), Status> {
    if model.is_empty() {
        return Err(Status::invalid_argument("model_name: required"));
    }
    if let Some(unknown) = requested.iter().find(|r| !OUTPUTS.contains(&r.as_str())) {
        return Err(Status::invalid_argument(format!(
            "output `{unknown}`: not an output (one of {})",
            OUTPUTS.join(", ")
        )));
    }
    let pkg = state.store.get(model, (!version.is_empty()).then_some(version)).map_err(store_status)?;
    let mut by_name: HashMap<String, Tensor> = HashMap::new();
    for t in inputs {
        if by_name.contains_key(&t.name) {
            return Err(Status::invalid_argument(format!("input `{}`: given more than once", t.name)));
        }
        by_name.insert(t.name.clone(), t);
    }
    let expected = inputs_of(&pkg);
    if let Some(unknown) = by_name.keys().find(|n| !expected.iter().any(|(e, _, _)| e == *n)) {
        return Err(Status::invalid_argument(format!("input `{unknown}`: not an input of model `{model}`")));
    }
    let keys = match by_name.get(PATIENT_KEY).map(|t| &t.data) {
        Some(Data::Bytes(keys)) => keys,
        Some(Data::Numbers(_)) => return Err(Status::invalid_argument("input `patient_key`: BYTES (text) required")),
        None => {
            return Err(Status::invalid_argument(
                "input `patient_key`: required (each row's pseudonymous key, audited)",
            ));
        }
    };
    let rows = keys.len();
    if rows == 0 || rows > MAX_BATCH {
        return Err(Status::invalid_argument(format!("input `patient_key`: {rows} rows; 1 to {MAX_BATCH} per call")));
    }
    for (name, _, _) in &expected {
        let t = by_name.get(name).ok_or_else(|| {
            Status::invalid_argument(format!(
                "input `{name}`: required (send NaN, an empty string or null for a value not recorded)"
            ))
        })?;
        let elements = t.shape.iter().try_fold(1i64, |n, &d| n.checked_mul(d));
        if t.data.len() != rows || elements != Some(rows as i64) || t.shape.iter().skip(1).any(|&d| d != 1) {
            return Err(Status::invalid_argument(format!(
                "input `{name}`: shape {:?} with {} values; expected [{rows}] or [{rows}, 1], one per patient",
                t.shape,
                t.data.len()
            )));
        }
    }
    let text = |name: &str, row: usize, b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map_err(|_| Status::invalid_argument(format!("input `{name}` row {row}: not UTF-8 text")))
    };
    let mut requests = Vec::with_capacity(rows);
    for row in 0..rows {
        let mut features = HashMap::new();
        for f in &pkg.manifest.features {
            let value = match &by_name[&f.name].data {
                Data::Numbers(v) if v[row].is_nan() => pb::feature_value::Value::Missing(true),
                Data::Numbers(v) => pb::feature_value::Value::Number(v[row]),
                Data::Bytes(v) if v[row].is_empty() => pb::feature_value::Value::Missing(true),
                Data::Bytes(v) => pb::feature_value::Value::Category(text(&f.name, row, &v[row])?),
            };
            features.insert(f.name.clone(), pb::FeatureValue { value: Some(value) });
        }
        requests.push(pb::ScoreRequest {
            model: model.into(),
            version: version.into(),
            patient_key: text(PATIENT_KEY, row, &keys[row])?,
            features,
            max_contributions: 0,
            ..Default::default()
        });
    }
    let scoring = Scoring { state: state.clone() };
    let announced = state.audit.announce();
    let this = scoring.clone();
    let outcomes = tokio::task::spawn_blocking(move || {
        let mut ws = carecast_models::Workspace::default();
        requests.iter().map(|r| this.evaluate(r, &mut ws)).collect::<Vec<_>>()
    })
    .await
    .map_err(|_| Status::internal("scoring failed"))?;
    let mut scored = Vec::with_capacity(rows);
    for (row, outcome) in outcomes.into_iter().enumerate() {
        scored.push(outcome.map_err(|s| Status::new(s.code(), format!("row {row}: {}", s.message())))?);
    }
    scoring.audit(caller, &scored.iter().collect::<Vec<_>>(), announced).await?;
    let responses: Vec<&pb::ScoreResponse> = scored.iter().map(|s| &s.response).collect();
    let served = pkg.manifest.version.clone();
    // A promotion landing mid-call would have scored later rows with another version: refused
    // (their scores are audited as what they were), never reported as one version's.
    if responses.iter().any(|r| r.model_version != served) {
        return Err(Status::aborted("the served version changed during the call; send it again"));
    }
    let names: Vec<&str> = pkg.manifest.features.iter().map(|f| f.name.as_str()).collect();
    let contributions: Vec<f64> = responses
        .iter()
        .flat_map(|r| {
            let by_feature: HashMap<&str, f64> =
                r.contributions.iter().map(|c| (c.feature.as_str(), c.contribution)).collect();
            names.iter().map(move |n| by_feature.get(n).copied().unwrap_or(0.0)).collect::<Vec<_>>()
        })
        .collect();
    let n = rows as i64;
    let all = [
        Tensor {
            name: "probability".into(),
            datatype: "FP64",
            shape: vec![n],
            data: Data::Numbers(responses.iter().map(|r| r.probability).collect()),
        },
        Tensor {
            name: "risk_band".into(),
            datatype: "BYTES",
            shape: vec![n],
            data: Data::Bytes(scored.iter().map(|s| s.band.as_bytes().to_vec()).collect()),
        },
        Tensor {
            name: "margin".into(),
            datatype: "FP64",
            shape: vec![n],
            data: Data::Numbers(responses.iter().map(|r| r.margin).collect()),
        },
        Tensor {
            name: "base_value".into(),
            datatype: "FP64",
            shape: vec![n],
            data: Data::Numbers(responses.iter().map(|r| r.base_value).collect()),
        },
        Tensor {
            name: "contributions".into(),
            datatype: "FP64",
            shape: vec![n, names.len() as i64],
            data: Data::Numbers(contributions),
        },
    ];
    let outputs = all.into_iter().filter(|t| requested.is_empty() || requested.contains(&t.name)).collect();
    Ok((served, outputs))
}

/// `inference.GRPCInferenceService`.
pub struct OpenInference {
    pub state: Arc<AppState>,
}

impl OpenInference {
    fn package(&self, name: &str, version: &str) -> Result<Arc<ModelPackage>, Status> {
        self.state.store.get(name, (!version.is_empty()).then_some(version)).map_err(store_status)
    }
}

fn tensor_metadata(t: (String, &'static str, Vec<i64>)) -> model_metadata_response::TensorMetadata {
    model_metadata_response::TensorMetadata { name: t.0, datatype: t.1.into(), shape: t.2 }
}

/// An input tensor of a gRPC request, its values from `raw` when sent raw.
fn grpc_tensor(t: model_infer_request::InferInputTensor, raw: Option<&[u8]>) -> Result<Tensor, String> {
    let datatype: &'static str = match t.datatype.as_str() {
        "BYTES" => "BYTES",
        other => match numeric_width(other) {
            Some(_) => "FP64",
            None => {
                return Err(format!(
                    "input `{}`: datatype {other} not accepted (FP64, FP32, INT64, INT32 or BYTES)",
                    t.name
                ));
            }
        },
    };
    let data = match raw {
        Some(raw) => from_raw(&t.name, &t.datatype, raw)?,
        None => {
            let c = t.contents.unwrap_or_default();
            match t.datatype.as_str() {
                "BYTES" => Data::Bytes(c.bytes_contents),
                "FP64" => Data::Numbers(c.fp64_contents),
                "FP32" => Data::Numbers(c.fp32_contents.into_iter().map(f64::from).collect()),
                "INT64" => Data::Numbers(c.int64_contents.into_iter().map(|x| x as f64).collect()),
                _ => Data::Numbers(c.int_contents.into_iter().map(f64::from).collect()),
            }
        }
    };
    Ok(Tensor { name: t.name, datatype, shape: t.shape, data })
}

#[tonic::async_trait]
impl oip::grpc_inference_service_server::GrpcInferenceService for OpenInference {
    async fn server_live(
        &self,
        _: Request<oip::ServerLiveRequest>,
    ) -> Result<GrpcResponse<oip::ServerLiveResponse>, Status> {
        Ok(GrpcResponse::new(oip::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<oip::ServerReadyRequest>,
    ) -> Result<GrpcResponse<oip::ServerReadyResponse>, Status> {
        Ok(GrpcResponse::new(oip::ServerReadyResponse { ready: !*self.state.stopping.borrow() }))
    }

    async fn model_ready(
        &self,
        request: Request<oip::ModelReadyRequest>,
    ) -> Result<GrpcResponse<oip::ModelReadyResponse>, Status> {
        self.state.caller(&request, "ModelReady", Role::Clinician)?;
        let req = request.into_inner();
        Ok(GrpcResponse::new(oip::ModelReadyResponse { ready: self.package(&req.name, &req.version).is_ok() }))
    }

    async fn server_metadata(
        &self,
        _: Request<oip::ServerMetadataRequest>,
    ) -> Result<GrpcResponse<oip::ServerMetadataResponse>, Status> {
        Ok(GrpcResponse::new(oip::ServerMetadataResponse {
            name: "carecast".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<oip::ModelMetadataRequest>,
    ) -> Result<GrpcResponse<oip::ModelMetadataResponse>, Status> {
        self.state.caller(&request, "ModelMetadata", Role::Clinician)?;
        let req = request.into_inner();
        let pkg = self.package(&req.name, &req.version)?;
        Ok(GrpcResponse::new(oip::ModelMetadataResponse {
            name: pkg.manifest.name.clone(),
            versions: self.state.store.registry().versions(&req.name).unwrap_or_default(),
            platform: format!("carecast_{}", pkg.manifest.algorithm),
            inputs: inputs_of(&pkg).into_iter().map(tensor_metadata).collect(),
            outputs: outputs_of(&pkg).into_iter().map(tensor_metadata).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<oip::ModelInferRequest>,
    ) -> Result<GrpcResponse<oip::ModelInferResponse>, Status> {
        let started = std::time::Instant::now();
        let caller = self.state.caller(&request, "ModelInfer", Role::Clinician)?;
        let req = request.into_inner();
        let result = async {
            if !req.raw_input_contents.is_empty() && req.raw_input_contents.len() != req.inputs.len() {
                return Err(Status::invalid_argument(format!(
                    "raw_input_contents: {} entries for {} inputs",
                    req.raw_input_contents.len(),
                    req.inputs.len()
                )));
            }
            let raw = &req.raw_input_contents;
            let inputs = req
                .inputs
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, t)| grpc_tensor(t, raw.get(i).map(Vec::as_slice)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Status::invalid_argument)?;
            let requested = req.outputs.iter().map(|o| o.name.clone()).collect();
            infer(&self.state, &caller, &req.model_name, &req.model_version, inputs, requested).await
        }
        .await;
        crate::metrics::answered("ModelInfer", started.elapsed().as_secs_f64());
        let (version, outputs) = result.inspect_err(|s| crate::metrics::refused("ModelInfer", s.code()))?;
        let raw_output_contents = outputs.iter().map(|t| t.data.raw()).collect();
        let outputs = outputs
            .into_iter()
            .map(|t| model_infer_response::InferOutputTensor {
                name: t.name,
                datatype: t.datatype.into(),
                shape: t.shape,
                ..Default::default()
            })
            .collect();
        Ok(GrpcResponse::new(oip::ModelInferResponse {
            model_name: req.model_name,
            model_version: version,
            id: req.id,
            parameters: HashMap::new(),
            outputs,
            raw_output_contents,
        }))
    }
}

/// The REST routes: `/v2`, `/v2/health/{live,ready}`, `/v2/models/{name}[/versions/{v}]`,
/// `.../ready` and `.../infer`.
pub fn routes(state: Arc<AppState>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { json_response(StatusCode::OK, &json!({ "live": true })) }))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{version}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(model_infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(model_infer))
        .with_state(state)
}

fn json_response(status: StatusCode, body: &Json) -> Response {
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A refusal as the protocol's REST form gives it: `{"error": ...}` with the status.
fn refusal(status: &Status) -> Response {
    let http = match status.code() {
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    crate::metrics::refused_http("OpenInference", http.as_u16());
    json_response(http, &json!({ "error": status.message() }))
}

fn authorized(state: &AppState, headers: &HeaderMap) -> Result<String, Status> {
    match &state.auth {
        None => Ok("open-inference (unauthenticated demo)".into()),
        Some(auth) => auth.check_headers(headers, Role::Clinician).map_err(Status::from),
    }
}

async fn server_metadata() -> Response {
    json_response(
        StatusCode::OK,
        &json!({ "name": "carecast", "version": env!("CARGO_PKG_VERSION"), "extensions": [] }),
    )
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = !*state.stopping.borrow();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(status, &json!({ "ready": ready }))
}

/// The name and (optional) version of a model route.
fn named(path: &HashMap<String, String>) -> (String, String) {
    (path.get("name").cloned().unwrap_or_default(), path.get("version").cloned().unwrap_or_default())
}

async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(path): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (name, version) = named(&path);
    let found =
        authorized(&state, &headers).and_then(|_| OpenInference { state: state.clone() }.package(&name, &version));
    match found {
        Err(s) => refusal(&s),
        Ok(pkg) => {
            let tensors = |ts: Vec<(String, &'static str, Vec<i64>)>| -> Vec<Json> {
                ts.into_iter().map(|(n, d, s)| json!({ "name": n, "datatype": d, "shape": s })).collect()
            };
            json_response(
                StatusCode::OK,
                &json!({
                    "name": pkg.manifest.name,
                    "versions": state.store.registry().versions(&name).unwrap_or_default(),
                    "platform": format!("carecast_{}", pkg.manifest.algorithm),
                    "inputs": tensors(inputs_of(&pkg)),
                    "outputs": tensors(outputs_of(&pkg)),
                }),
            )
        }
    }
}

async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(path): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (name, version) = named(&path);
    if let Err(s) = authorized(&state, &headers) {
        return refusal(&s);
    }
    let ready = OpenInference { state }.package(&name, &version).is_ok();
    json_response(
        if ready { StatusCode::OK } else { StatusCode::BAD_REQUEST },
        &json!({ "name": name, "ready": ready }),
    )
}

/// A JSON input tensor's values (nested arrays flattened), as its datatype reads them.
fn json_tensor(t: &Json, binary: &mut &[u8]) -> Result<Tensor, String> {
    let name = t.get("name").and_then(Json::as_str).ok_or("inputs[]: `name` required")?.to_string();
    let declared =
        t.get("datatype").and_then(Json::as_str).ok_or_else(|| format!("input `{name}`: `datatype` required"))?;
    let shape: Vec<i64> = t
        .get("shape")
        .and_then(Json::as_array)
        .ok_or_else(|| format!("input `{name}`: `shape` required"))?
        .iter()
        .map(|d| d.as_i64().ok_or_else(|| format!("input `{name}`: shape holds a non-integer")))
        .collect::<Result<_, _>>()?;
    let datatype: &'static str = if declared == "BYTES" {
        "BYTES"
    } else if numeric_width(declared).is_some() {
        "FP64"
    } else {
        return Err(format!("input `{name}`: datatype {declared} not accepted (FP64, FP32, INT64, INT32 or BYTES)"));
    };
    // Triton's binary extension: the values follow the JSON header, in input order.
    if let Some(size) = t.pointer("/parameters/binary_data_size").and_then(Json::as_u64) {
        let size = size as usize;
        if binary.len() < size {
            return Err(format!("input `{name}`: binary_data_size {size} beyond the request body"));
        }
        let (raw, rest) = binary.split_at(size);
        *binary = rest;
        return Ok(Tensor { name: name.clone(), datatype, shape, data: from_raw(&name, declared, raw)? });
    }
    let mut flat = Vec::new();
    fn flatten<'a>(v: &'a Json, out: &mut Vec<&'a Json>) {
        match v {
            Json::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            other => out.push(other),
        }
    }
    flatten(t.get("data").ok_or_else(|| format!("input `{name}`: `data` required"))?, &mut flat);
    let data = if datatype == "BYTES" {
        Data::Bytes(
            flat.iter()
                .map(|v| match v {
                    Json::String(s) => Ok(s.as_bytes().to_vec()),
                    Json::Null => Ok(Vec::new()),
                    _ => Err(format!("input `{name}`: BYTES values are strings")),
                })
                .collect::<Result<_, _>>()?,
        )
    } else {
        Data::Numbers(
            flat.iter()
                .map(|v| match v {
                    Json::Null => Ok(f64::NAN),
                    v => v
                        .as_f64()
                        .ok_or_else(|| format!("input `{name}`: {declared} values are numbers (null: not recorded)")),
                })
                .collect::<Result<_, _>>()?,
        )
    };
    Ok(Tensor { name, datatype, shape, data })
}

async fn model_infer(
    State(state): State<Arc<AppState>>,
    Path(path): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let (name, version) = named(&path);
    let result = async {
        let caller = authorized(&state, &headers)?;
        let header_length = match headers.get("inference-header-content-length") {
            None => body.len(),
            Some(v) => {
                v.to_str().ok().and_then(|v| v.parse::<usize>().ok()).filter(|&n| n <= body.len()).ok_or_else(|| {
                    Status::invalid_argument("Inference-Header-Content-Length: not a length within the body")
                })?
            }
        };
        let (header, mut binary) = body.split_at(header_length);
        let request: Json = serde_json::from_slice(header)
            .map_err(|e| Status::invalid_argument(format!("request body: not JSON ({e})")))?;
        let inputs = request
            .get("inputs")
            .and_then(Json::as_array)
            .ok_or_else(|| Status::invalid_argument("inputs: required"))?
            .iter()
            .map(|t| json_tensor(t, &mut binary))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Status::invalid_argument)?;
        let requested = request
            .get("outputs")
            .and_then(Json::as_array)
            .map(|o| o.iter().filter_map(|o| o.get("name").and_then(Json::as_str).map(str::to_string)).collect())
            .unwrap_or_default();
        let id = request.get("id").cloned();
        infer(&state, &caller, &name, &version, inputs, requested).await.map(|r| (r, id))
    }
    .await;
    crate::metrics::answered("ModelInferRest", started.elapsed().as_secs_f64());
    match result {
        Err(s) => refusal(&s),
        Ok(((served, outputs), id)) => {
            let outputs: Vec<Json> = outputs
                .into_iter()
                .map(|t| {
                    let data = match t.data {
                        Data::Numbers(v) => json!(v),
                        Data::Bytes(v) => {
                            json!(v.into_iter().map(|b| String::from_utf8_lossy(&b).into_owned()).collect::<Vec<_>>())
                        }
                    };
                    json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape, "data": data })
                })
                .collect();
            let mut body = json!({ "model_name": name, "model_version": served, "outputs": outputs });
            if let Some(id) = id {
                body["id"] = id;
            }
            json_response(StatusCode::OK, &body)
        }
    }
}
