//! Watching a served model from the command line: a server scores patients (audited, inputs
//! counted), `carecast outcomes` takes a file of outcomes with bad rows among them, refusing
//! each bad row by field and counting what cannot be matched, and `carecast monitor` writes the
//! report from the trail, the ledger and the server's live counts.

use crate::common::{carecast, score_request, serve, support2_rows};
use carecast_proto::v1::scoring_service_client::ScoringServiceClient;
use std::process::Command;

const MODEL: &str = "support2_hospdead-logistic";
const SCORED: usize = 60;
const DIED: usize = 20;

#[tokio::test]
async fn outcomes_come_back_and_the_monitor_reports_them() {
    let dir = std::env::temp_dir().join(format!("carecast-monitor-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    carecast(&dir, &["train", "--task", "support2_hospdead", "--model", "logistic"]);
    let pkg = carecast_models::load_package(
        &carecast_models::Registry::new(dir.join("registry")).resolve(MODEL, None).unwrap().1,
    )
    .unwrap();

    let (mut server, address) = serve(&dir);
    let mut client = ScoringServiceClient::connect(format!("http://{address}")).await.unwrap();
    for (i, row) in support2_rows(&pkg.manifest.features, SCORED).into_iter().enumerate() {
        client.score(score_request(MODEL, &format!("m-{i}"), row)).await.unwrap();
    }
    // Stopped as a service manager stops it: the day's live counts are written on the way out.
    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap().success());
    assert!(server.wait().unwrap().success());

    // Outcomes: 20 deaths among the patients scored, one of them sent twice; a death of a
    // patient never scored; and four rows that cannot be outcomes.
    let now = chrono::Utc::now();
    let mut csv = String::from("patient_key,time,code\n");
    for i in 0..DIED {
        csv += &format!("m-{i},{},DEATH\n", now.to_rfc3339());
    }
    csv += &format!("m-0,{},DEATH\n", now.to_rfc3339());
    csv += &format!("never-scored,{},DEATH\n", now.to_rfc3339());
    csv += "m-30,,DEATH\n";
    csv += "m-31,3000-01-01T00:00:00Z,DEATH\n";
    csv += &format!("m-32,{},\n", now.to_rfc3339());
    csv += &format!("m-33,{},DEATH\n", "yesterday");
    std::fs::write(dir.join("outcomes.csv"), csv).unwrap();
    let out = carecast(&dir, &["outcomes", "--input", "outcomes.csv", "--model", MODEL]);
    assert!(out.contains("26 rows read: 21 outcomes added"), "{out}");
    assert!(out.contains("1 already recorded (duplicates), 4 refused"), "{out}");
    assert!(
        out.contains("refused: `time`: missing or not a date-time (e.g. 2026-03-01T09:30:00Z): 2 rows (row 23, 26)"),
        "{out}"
    );
    assert!(
        out.contains("refused: `time`: ") && out.contains("after the server's clock") && out.contains("(row 24)"),
        "{out}"
    );
    assert!(out.contains("refused: `code`: missing: 1 rows (row 25)"), "{out}");
    assert!(!out.contains("3000-01-01"), "no value is echoed: {out}");
    // A flat-table task names no outcome codes: said so for the model, not guessed.
    assert!(out.contains(&format!("{MODEL}: not matched (outcome codes:")), "{out}");
    // Sent again: nothing new.
    let again = carecast(&dir, &["outcomes", "--input", "outcomes.csv", "--model", MODEL]);
    assert!(again.contains("0 outcomes added") && again.contains("22 already recorded"), "{again}");

    // The monitor, 31 days on, with the outcome's code and horizon given for this flat task.
    let later = (now + chrono::Duration::days(31)).to_rfc3339();
    let args = ["monitor", "--model", MODEL, "--outcome-code", "DEATH", "--horizon", "30d", "--now", &later];
    let report = carecast(&dir, &args);
    assert!(
        report.contains(&format!(
            "{MODEL}: {SCORED} scores ({DIED} with the outcome, {} without, 0 pending",
            SCORED - DIED
        )),
        "{report}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("registry").join(MODEL).join("monitor/monitor.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["outcomes"]["unknown_key"], 1);
    assert_eq!(json["outcomes"]["matched"], DIED as u64);
    assert_eq!(json["drift"][0]["drift"]["rows"], SCORED as u64, "the server's live counts");
    let html = std::fs::read_to_string(dir.join("registry").join(MODEL).join("monitor/monitor.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("<script"));
    assert!(
        std::fs::read_to_string(dir.join("registry").join(MODEL).join("monitor/monitor.prom"))
            .unwrap()
            .contains("carecast_calibration_alarm{")
    );

    // Without the outcome's codes, a flat task cannot be judged, and the command says what to give.
    let refused = Command::new(env!("CARGO_BIN_EXE_carecast"))
        .args(["monitor", "--model", MODEL])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--outcome-code"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
