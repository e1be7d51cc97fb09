//! A server killed with SIGKILL while scoring and auditing under load: afterwards the audit
//! trail's hash chain still verifies, and every score a client received is in it.

use crate::common::{carecast, score_request, serve, support2_rows};
use carecast_proto::v1::{self as pb, scoring_service_client::ScoringServiceClient};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Requests for the first rows of the shared SUPPORT data, every feature named.
fn requests(model: &str, features: &[carecast_models::FeatureSpec], n: usize) -> Vec<pb::ScoreRequest> {
    support2_rows(features, n)
        .into_iter()
        .map(|row| pb::ScoreRequest { max_contributions: 3, ..score_request(model, "", row) })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_auditing_loses_no_acknowledged_score() {
    let dir = std::env::temp_dir().join(format!("carecast-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    carecast(&dir, &["train", "--task", "support2_hospdead", "--model", "logistic"]);
    let model = "support2_hospdead-logistic";
    let pkg = carecast_models::load_package(
        &carecast_models::Registry::new(dir.join("registry")).resolve(model, None).unwrap().1,
    )
    .unwrap();
    let requests = Arc::new(requests(model, &pkg.manifest.features, 200));

    let (mut server, address) = serve(&dir);
    let client = ScoringServiceClient::connect(format!("http://{address}")).await.unwrap();

    // 16 clients score continuously; each records the patient keys it got a score back for.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..16 {
        let (mut client, requests, acknowledged) = (client.clone(), requests.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let mut request = requests[(c * 13 + i) % requests.len()].clone();
                request.patient_key = format!("c{c}-{i}");
                match client.score(request).await {
                    Ok(response) => acknowledged.lock().unwrap().push(response.into_inner().patient_key),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < 500 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }

    let verified = carecast(&dir, &["audit", "verify"]);
    assert!(verified.contains("chain intact"), "{verified}");
    let trail = carecast_audit::AuditLog::open(&dir.join("registry/audit.jsonl")).unwrap();
    let recorded: std::collections::HashSet<String> =
        trail.entries().unwrap().into_iter().map(|e| e.patient_key).collect();
    let acknowledged = acknowledged.lock().unwrap();
    let lost: Vec<&String> = acknowledged.iter().filter(|k| !recorded.contains(*k)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged scores missing from the audit: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
    eprintln!("{} scores acknowledged before the kill, {} audited", acknowledged.len(), recorded.len());
    drop(trail);
    std::fs::remove_dir_all(&dir).unwrap();
}
