//! The Open Inference Protocol with adversarial input (the well-formed path is tested with
//! NVIDIA's own client, python/tests/test_open_inference.py): raw contents of the wrong length,
//! cut-short strings, wrong shapes, unknown inputs and datatypes, text that is not UTF-8 and
//! impossible values are each refused naming the input (and row), never echoing a value, and
//! nothing refused reaches the audit trail.

use carecast_audit::AuditLog;
use carecast_models::{Registry, load_package};
use carecast_proto::inference::{
    self as oip, grpc_inference_service_client::GrpcInferenceServiceClient, model_infer_request::InferInputTensor,
};
use carecast_serving::{AppState, ModelStore, server};
use carecast_training::{Algorithm, TaskSpec, train};
use std::path::PathBuf;
use std::sync::Arc;
use tonic::Code;

fn fp64(name: &str, values: &[f64]) -> (InferInputTensor, Vec<u8>) {
    let t = InferInputTensor {
        name: name.into(),
        datatype: "FP64".into(),
        shape: vec![values.len() as i64, 1],
        ..Default::default()
    };
    (t, values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

fn bytes(name: &str, values: &[&[u8]]) -> (InferInputTensor, Vec<u8>) {
    let t = InferInputTensor {
        name: name.into(),
        datatype: "BYTES".into(),
        shape: vec![values.len() as i64, 1],
        ..Default::default()
    };
    let raw = values.iter().flat_map(|v| (v.len() as u32).to_le_bytes().into_iter().chain(v.iter().copied())).collect();
    (t, raw)
}

#[tokio::test]
async fn malformed_tensors_are_refused_by_input_and_row() {
    let dir = std::env::temp_dir().join(format!("carecast-oip-{}", std::process::id()));
    let registry = Registry::new(&dir);
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv");
    let report = train(&task, &toml, &data, &registry, Algorithm::Logistic, None).unwrap();
    let pkg = load_package(&registry.resolve(&report.name, None).unwrap().1).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(AppState::new(
        ModelStore::new(registry.clone()),
        AuditLog::open(&dir.join("audit.jsonl")).unwrap(),
        None,
        carecast_serving::ephemeral_pseudonym_key(),
    ));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state.clone(), None, async {
        stopped.await.ok();
    }));
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{addr}")).await.unwrap();

    // One valid patient: every input, missing values as NaN and empty strings.
    let valid = || -> Vec<(InferInputTensor, Vec<u8>)> {
        let mut tensors = vec![bytes("patient_key", &[b"oip-1"])];
        for f in &pkg.manifest.features {
            tensors.push(match (f.kind, f.name.as_str()) {
                (carecast_models::FeatureKind::Numeric, "age") => fp64(&f.name, &[71.0]),
                (carecast_models::FeatureKind::Numeric, _) => fp64(&f.name, &[f64::NAN]),
                (_, _) => bytes(&f.name, &[b""]),
            });
        }
        tensors
    };
    let request = |tensors: Vec<(InferInputTensor, Vec<u8>)>| {
        let (inputs, raw): (Vec<_>, Vec<_>) = tensors.into_iter().unzip();
        oip::ModelInferRequest {
            model_name: report.name.clone(),
            inputs,
            raw_input_contents: raw,
            ..Default::default()
        }
    };
    let scored = client.model_infer(request(valid())).await.unwrap().into_inner();
    assert_eq!(scored.raw_output_contents.len(), 5);
    assert_eq!(state.audit.entries().unwrap().len(), 1);

    let refused = async |client: &mut GrpcInferenceServiceClient<tonic::transport::Channel>,
                         r: oip::ModelInferRequest,
                         needle: &str| {
        let status = client.model_infer(r).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(needle), "`{}` lacks `{needle}`", status.message());
        assert!(!status.message().contains("712"), "no value echoed: {}", status.message());
    };
    let with = |name: &str, replace: (InferInputTensor, Vec<u8>)| {
        let mut t = valid();
        let i = t.iter().position(|(t, _)| t.name == name).unwrap();
        t[i] = replace;
        request(t)
    };
    let (mut age, mut raw) = fp64("age", &[71.0]);
    raw.pop();
    refused(
        &mut client,
        with("age", (age.clone(), raw)),
        "input `age`: 7 raw bytes are not a whole number of FP64 values",
    )
    .await;
    let (key, mut raw) = bytes("patient_key", &[b"oip-1"]);
    raw.truncate(6);
    refused(&mut client, with("patient_key", (key, raw)), "input `patient_key`: raw BYTES contents cut short").await;
    age.shape = vec![1, 2];
    refused(&mut client, with("age", (age, 71f64.to_le_bytes().to_vec())), "input `age`: shape [1, 2]").await;
    let (mut boolean, _) = fp64("age", &[1.0]);
    boolean.datatype = "BOOL".into();
    refused(&mut client, with("age", (boolean, vec![1])), "input `age`: datatype BOOL not accepted").await;
    let mut extra = valid();
    extra.push(fp64("shoe_size", &[9.0]));
    refused(&mut client, request(extra), "input `shoe_size`: not an input of model").await;
    refused(&mut client, with("sex", bytes("sex", &[&[0xff, 0xfe]])), "input `sex` row 0: not UTF-8 text").await;
    refused(&mut client, with("age", fp64("age", &[712.0])), "row 0: feature `age`").await;
    let mut short = request(valid());
    short.raw_input_contents.pop();
    refused(&mut client, short, "raw_input_contents:").await;
    let many: Vec<&[u8]> = vec![b"k"; 1001];
    refused(&mut client, with("patient_key", bytes("patient_key", &many)), "1001 rows; 1 to 1000 per call").await;
    assert_eq!(state.audit.entries().unwrap().len(), 1, "nothing refused was audited");
    std::fs::remove_dir_all(&dir).unwrap();
}
