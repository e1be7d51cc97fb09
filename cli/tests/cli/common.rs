//! What the command-line tests share: running `carecast`, starting a server, reading patients.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `carecast` in `dir`; panics with its output if it fails.
pub fn carecast(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_carecast")).args(args).current_dir(dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "carecast {args:?} failed:\n{text}");
    text
}

/// `carecast serve` on a free local port over the registry in `dir`, once it accepts
/// connections; returns the process and its address (`127.0.0.1:port`).
pub fn serve(dir: &Path) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_carecast"))
        .args(["serve", "--addr", &address, "--insecure-demo"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, address)
}

/// One value as a client would send it.
#[derive(Debug, Clone)]
pub enum Cell {
    Number(f64),
    Category(String),
    Missing,
}

/// The first `n` rows of the shared SUPPORT data, each as the values of `features` (the table is
/// read once: polars is unoptimised in test builds).
pub fn support2_rows(features: &[carecast_models::FeatureSpec], n: usize) -> Vec<Vec<(String, Cell)>> {
    use carecast_models::Value;
    use carecast_tables::{feature_columns, read_table, row_values};
    let df = read_table(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv")).unwrap();
    let columns = feature_columns(&df, features).unwrap();
    let cell = |v: Value<'_>| match v {
        Value::Number(x) => Cell::Number(x),
        Value::Text(t) => Cell::Category(t.to_string()),
        Value::Missing => Cell::Missing,
    };
    (0..n)
        .map(|row| {
            let values = row_values(&columns, row).unwrap();
            features.iter().zip(values).map(|(f, v)| (f.name.clone(), cell(v))).collect()
        })
        .collect()
}

/// A `Score` request for one patient, every feature of `row` named.
pub fn score_request(model: &str, patient_key: &str, row: Vec<(String, Cell)>) -> carecast_proto::v1::ScoreRequest {
    use carecast_proto::v1::{self as pb, feature_value};
    let features = row
        .into_iter()
        .map(|(name, cell)| {
            let value = match cell {
                Cell::Number(x) => feature_value::Value::Number(x),
                Cell::Category(t) => feature_value::Value::Category(t),
                Cell::Missing => feature_value::Value::Missing(true),
            };
            (name, pb::FeatureValue { value: Some(value) })
        })
        .collect();
    pb::ScoreRequest { model: model.into(), patient_key: patient_key.into(), features, ..Default::default() }
}
