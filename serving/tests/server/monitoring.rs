//! Monitoring a served model: the server counts every score's inputs into its package's
//! training bins and exports drift at `/metrics`, where a shifted input is flagged (PSI checked
//! against the definition worked from the training rows themselves); outcomes come back over
//! `RecordOutcomes`; the day's counts are written to the registry when the server stops; and
//! the shipped Prometheus alert rules fire on the server's own metrics and on `carecast
//! monitor`'s calibration alarm, as Prometheus itself evaluates them (`promtool test rules`,
//! Debian's `prometheus` package).

use carecast_audit::AuditLog;
use carecast_audit::outcomes::{Outcome, OutcomeLedger};
use carecast_models::drift::{Bins, PSI_ALERT, Tally};
use carecast_models::{Registry, Value, load_package};
use carecast_proto::v1::{
    self as pb, monitoring_service_client::MonitoringServiceClient, scoring_service_client::ScoringServiceClient,
};
use carecast_serving::{AppState, ModelStore, server};
use carecast_tables::{feature_columns, read_table, row_values, text_column};
use carecast_training::monitor::{self, Period, Sources, Watch};
use carecast_training::{Algorithm, TaskSpec, train};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

const MODEL: &str = "support2-monitored";
const SHIFTED: &str = "meanbp";
/// Scores sent: enough for an alert (at least `drift::MIN_ROWS`).
const SENT: usize = 300;

fn shared_data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(file)
}

/// `promtool` (Debian's `prometheus` package, which `.ci/run` installs), or `None` outside CI.
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "promtool is required under CI (apt-get install prometheus)");
        eprintln!("SKIPPED: promtool not installed; the alert rules are not evaluated");
    }
    found.then_some("promtool")
}

/// Runs `promtool test rules` on the shipped rules with `series` (a metric line each, held
/// for 20 minutes) and the alerts expected firing at 20 minutes, by alert name: each a list of
/// label sets (annotations are checked for syntax only).
/// An alert's labels, as promtool expects them.
type Labels = Vec<(&'static str, String)>;

fn rules_fire(dir: &Path, series: &[(String, f64)], expected: &[(&str, Vec<Labels>)]) {
    let Some(promtool) = promtool() else { return };
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("prometheus/alerts.yml");
    let check = Command::new(promtool).args(["check", "rules"]).arg(&shipped).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    // The rules as shipped, less their annotations (checked above; the test compares labels).
    let mut kept = Vec::new();
    let mut skipping: Option<usize> = None;
    let text = std::fs::read_to_string(&shipped).unwrap();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if skipping.is_some_and(|at| indent > at || line.trim().is_empty()) {
            continue;
        }
        skipping = (line.trim() == "annotations:").then_some(indent);
        if skipping.is_none() {
            kept.push(line);
        }
    }
    let rules = dir.join("alerts.yml");
    std::fs::write(&rules, kept.join("\n")).unwrap();
    let mut test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
        rules.display()
    );
    for (name, value) in series {
        test.push_str(&format!("      - series: '{name}'\n        values: '{value}x20'\n"));
    }
    test.push_str("    alert_rule_test:\n");
    for (alert, firing) in expected {
        test.push_str(&format!("      - eval_time: 20m\n        alertname: {alert}\n        exp_alerts:\n"));
        for labels in firing {
            test.push_str("          - exp_labels:\n");
            for (k, v) in labels {
                test.push_str(&format!("              {k}: \"{v}\"\n"));
            }
        }
        if firing.is_empty() {
            test.truncate(test.len() - "        exp_alerts:\n".len());
            test.push_str("        exp_alerts: []\n");
        }
    }
    let file = dir.join("alerts_test.yml");
    std::fs::write(&file, &test).unwrap();
    let run = Command::new(promtool).args(["test", "rules"]).arg(&file).output().unwrap();
    assert!(
        run.status.success(),
        "promtool test rules:\n{}{}\n{test}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The metric lines of `text` (Prometheus exposition) whose name is one of `names`.
fn series(text: &str, names: &[&str]) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| names.iter().any(|n| l.starts_with(&format!("{n}{{"))))
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut http = tokio::net::TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: carecast\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    http.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

#[tokio::test]
async fn a_shifted_input_is_flagged_live_and_the_shipped_alert_rules_fire() {
    let dir = std::env::temp_dir().join(format!("carecast-monitoring-{}", std::process::id()));
    let registry = Registry::new(&dir);
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    train(&task, &toml, &shared_data("support2.csv"), &registry, Algorithm::Logistic, Some(MODEL)).unwrap();
    let pkg = load_package(&registry.resolve(MODEL, None).unwrap().1).unwrap();
    let reference = pkg.reference.clone().unwrap();

    // The reference is the training rows, binned: counted again here from the data file.
    let df = read_table(&shared_data("support2.csv")).unwrap();
    let cols = feature_columns(&df, &pkg.manifest.features).unwrap();
    let split = text_column(&df, "split").unwrap();
    let train_rows: Vec<usize> = (0..df.height()).filter(|&r| split[r].as_deref() == Some("train")).collect();
    let i = pkg.scorer.feature_index(SHIFTED).unwrap();
    let Bins::Numeric { edges } = &reference.features[i].bins else { panic!("a numeric input") };
    let slot = |v: Value<'_>| match v {
        Value::Number(x) => edges.iter().filter(|&&e| e < x).count(),
        _ => edges.len() + 1,
    };
    let mut counts = vec![0u64; edges.len() + 2];
    let mut values: Vec<f64> = Vec::new();
    for &r in &train_rows {
        let v = row_values(&cols, r).unwrap()[i];
        counts[slot(v)] += 1;
        if let Value::Number(x) = v {
            values.push(x);
        }
    }
    assert_eq!(reference.features[i].counts, counts);
    values.sort_by(f64::total_cmp);
    assert_eq!(edges[0], values[values.len().div_ceil(10) - 1], "the first edge is the 10th percentile");

    // A server scores the test split's patients with mean blood pressure read 25 mmHg high.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let state = Arc::new(AppState::new(
        ModelStore::new(registry.clone()),
        AuditLog::open(&dir.join("audit.jsonl")).unwrap(),
        None,
        carecast_serving::ephemeral_pseudonym_key(),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(listener, state.clone(), None, async {
        stopped.await.ok();
    }));
    let mut client = ScoringServiceClient::connect(format!("http://{addr}")).await.unwrap();
    // Every ninth patient of the test split: the file is in order of enrolment, and its first
    // few hundred patients alone differ from the rest (more labs missing: PSI over 1 for glucose).
    let sent: Vec<usize> =
        (0..df.height()).filter(|&r| split[r].as_deref() == Some("test")).step_by(9).take(SENT).collect();
    assert_eq!(sent.len(), SENT);
    let mut live = vec![0u64; edges.len() + 2];
    for &r in &sent {
        let mut row = row_values(&cols, r).unwrap();
        if let Value::Number(x) = row[i] {
            row[i] = Value::Number(x + 25.0);
        }
        live[slot(row[i])] += 1;
        let features: HashMap<String, pb::FeatureValue> =
            pkg.manifest.features.iter().zip(row).map(|(f, v)| (f.name.clone(), pb::FeatureValue::from(v))).collect();
        let req =
            pb::ScoreRequest { model: MODEL.into(), patient_key: format!("m-{r}"), features, ..Default::default() };
        client.score(req).await.unwrap();
    }

    // PSI as defined: shares of each bin, an empty one read as 1e-4, Σ (live - train) ln(live / train).
    let share = |c: &[u64]| -> Vec<f64> {
        let n = c.iter().sum::<u64>() as f64;
        c.iter().map(|&x| x as f64 / n).collect()
    };
    let (e, a) = (share(&counts), share(&live));
    let psi: f64 = e
        .iter()
        .zip(&a)
        .filter(|(e, a)| **e > 0.0 || **a > 0.0)
        .map(|(&e, &a)| (a.max(1e-4) - e.max(1e-4)) * (a.max(1e-4) / e.max(1e-4)).ln())
        .sum();
    let text = scrape(&addr).await;
    let exported = series(&text, &["carecast_feature_psi"]);
    let of = |feature: &str| {
        exported
            .iter()
            .find(|(n, _)| n.contains(&format!("model=\"{MODEL}\"")) && n.contains(&format!("feature=\"{feature}\"")))
            .unwrap_or_else(|| panic!("no PSI of `{feature}` in\n{text}"))
            .1
    };
    assert!((of(SHIFTED) - psi).abs() < 1e-9, "exported {} against {psi}", of(SHIFTED));
    assert!(psi >= PSI_ALERT, "a 25 mmHg shift is a large one: PSI {psi}");
    let others: Vec<_> =
        pkg.manifest.features.iter().filter(|f| f.name != SHIFTED && of(&f.name) >= PSI_ALERT).collect();
    assert!(others.is_empty(), "only `{SHIFTED}` shifted: {others:?}");
    assert!(text.contains(&format!("carecast_drift_rows{{model=\"{MODEL}\",version=\"1\"}} {SENT}")), "{text}");

    // Outcomes come back over gRPC: every patient scored died within days (far more than
    // predicted), sent twice; and three that cannot be outcomes, refused by field.
    let mut feed = MonitoringServiceClient::connect(format!("http://{addr}")).await.unwrap();
    let died = chrono::Utc::now().timestamp_micros();
    let mut outcomes: Vec<pb::ObservedOutcome> = sent
        .iter()
        .map(|r| pb::ObservedOutcome { patient_key: format!("m-{r}"), time_micros: died, code: "DEATH".into() })
        .collect();
    let bad = [
        pb::ObservedOutcome { patient_key: "9434765919".into(), time_micros: died, code: "DEATH".into() },
        pb::ObservedOutcome { patient_key: "m-x".into(), time_micros: died + 3_600_000_000, code: "DEATH".into() },
        pb::ObservedOutcome { patient_key: "m-y".into(), time_micros: died, code: " ".into() },
    ];
    outcomes.extend(bad);
    let request = pb::RecordOutcomesRequest { outcomes: outcomes.clone() };
    let recorded = feed.record_outcomes(request).await.unwrap().into_inner();
    assert_eq!((recorded.added, recorded.duplicates), (SENT as u64, 0));
    let refused: Vec<String> = recorded.refused.iter().map(|r| format!("{} {}", r.index, r.field)).collect();
    let n = SENT;
    let expected = [
        format!("{n} outcomes[{n}].patient_key"),
        format!("{} outcomes[{}].time_micros", n + 1, n + 1),
        format!("{} outcomes[{}].code", n + 2, n + 2),
    ];
    assert_eq!(refused, expected);
    assert!(recorded.refused.iter().all(|r| !r.reason.contains("9434765919")), "no value echoed");
    let again = feed.record_outcomes(pb::RecordOutcomesRequest { outcomes }).await.unwrap().into_inner();
    assert_eq!((again.added, again.duplicates), (0, SENT as u64));

    // Stopping writes the day's counts to the registry: the inputs sent, bin by bin.
    drop(stop);
    serving.await.unwrap().unwrap();
    let files = registry.live_files(MODEL).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let tally: Tally = serde_json::from_slice(&std::fs::read(&files[0].2).unwrap()).unwrap();
    assert_eq!((tally.rows, &tally.features[i]), (SENT as u64, &live));

    // Prometheus' own evaluation of the shipped rules on these metrics: input drift on
    // `meanbp` alone, and no score drift or missing input.
    let names =
        ["carecast_feature_psi", "carecast_score_psi", "carecast_drift_rows", "carecast_feature_missing_change"];
    let scraped: Vec<(String, f64)> = series(&text, &names).into_iter().filter(|(n, _)| n.contains(MODEL)).collect();
    let labels = |extra: &[(&'static str, &str)]| {
        let mut l =
            vec![("model", MODEL.to_string()), ("version", "1".to_string()), ("severity", "warning".to_string())];
        l.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        l
    };
    let mut expected =
        vec![("CarecastInputDrift", vec![labels(&[("feature", SHIFTED)])]), ("CarecastInputMissing", vec![])];
    let score_psi = series(&text, &["carecast_score_psi"]).into_iter().find(|(n, _)| n.contains(MODEL)).unwrap().1;
    expected.push(("CarecastScoreDrift", if score_psi >= PSI_ALERT { vec![labels(&[])] } else { vec![] }));

    // Calibration: the scores just audited judged against the outcomes recorded, through
    // `carecast monitor`'s Prometheus file.
    let entries = state.audit.entries().unwrap();
    let outcomes: Vec<Outcome> =
        OutcomeLedger::for_registry(registry.root()).read().unwrap().into_iter().map(|r| r.outcome).collect();
    let now = chrono::Utc::now() + chrono::Duration::days(31);
    let watch = Watch::for_package(&pkg, vec!["DEATH".into()], Some("30d"), Period::Week, now).unwrap();
    let references = BTreeMap::from([("1".to_string(), reference)]);
    let report = monitor::run(
        &watch,
        &Sources { entries: &entries, outcomes: &outcomes, tallies: &[], references: &references },
    )
    .unwrap();
    assert_eq!(report.verdicts.events, SENT as u64);
    let prom = monitor::report::prometheus(&report);
    let mut all = scraped;
    all.extend(series(&prom, &["carecast_calibration_alarm"]));
    let critical =
        vec![("model", MODEL.to_string()), ("version", "1".to_string()), ("severity", "critical".to_string())];
    expected.push(("CarecastCalibrationDrift", vec![critical]));
    rules_fire(&dir, &all, &expected);
    std::fs::remove_dir_all(&dir).unwrap();
}
