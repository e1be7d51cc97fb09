//! Prometheus metrics, served as text at `/metrics` on the server's own port: latency of each
//! scoring call, scores by model, version and band, refusals by gRPC code, and the version each
//! model serves by default. Labels name models and codes only, never a patient or a value.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Latency buckets, in seconds: a score takes about 100 µs, a batch up to a second.
const BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The process's recorder (metrics are process-wide), installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("buckets are valid")
            .install_recorder()
            .expect("no other metrics recorder is installed")
    })
}

/// Keeps the histograms bounded: drains them into their buckets every few seconds.
pub async fn upkeep() {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        handle().run_upkeep();
    }
}

/// One call answered (`rpc`: Score, ScoreStream, ScoreBatch) after `seconds`.
pub fn answered(rpc: &'static str, seconds: f64) {
    metrics::histogram!("carecast_request_seconds", "rpc" => rpc).record(seconds);
}

/// One score returned.
pub fn scored(model: &str, version: &str, band: &str) {
    metrics::counter!("carecast_scores_total", "model" => model.to_string(), "version" => version.to_string(), "band" => band.to_string()).increment(1);
}

/// One request refused, by its gRPC code.
pub fn refused(rpc: &'static str, code: tonic::Code) {
    metrics::counter!("carecast_errors_total", "rpc" => rpc, "code" => format!("{code:?}")).increment(1);
}

/// One HTTP request refused, by its status.
pub fn refused_http(route: &'static str, status: u16) {
    metrics::counter!("carecast_errors_total", "rpc" => route, "code" => status.to_string()).increment(1);
}

/// Which version a model serves by default: 1 for the one now served, 0 for the one before.
/// Installs the recorder first: models are loaded before the server starts, and the gauge must
/// be there from start-up.
pub fn serving(model: &str, version: &str, now: bool) {
    handle();
    metrics::gauge!("carecast_model_serving", "model" => model.to_string(), "version" => version.to_string())
        .set(if now { 1.0 } else { 0.0 });
}

/// A promoted version the server cannot serve (1; 0 once served): the registry's current version
/// and the one served differ.
pub fn promoted_refused(model: &str, version: &str, refused: bool) {
    handle();
    metrics::gauge!("carecast_model_promoted_refused", "model" => model.to_string(), "version" => version.to_string())
        .set(if refused { 1.0 } else { 0.0 });
}

/// One connection refused in its TLS handshake (no or untrusted client certificate, a plain-text
/// client, a stalled handshake). The reason is logged; the count is by outcome only.
pub fn tls_refused(reason: &str) {
    tracing::warn!(reason, "TLS handshake refused");
    metrics::counter!("carecast_tls_refused_total").increment(1);
}

/// A model version's drift over the live window: rows counted, and per input (and for the
/// score) PSI, Jensen–Shannon distance and the change in missing rate from training.
pub fn drift(model: &str, version: &str, drift: &carecast_models::drift::Drift) {
    let (m, v) = (model.to_string(), version.to_string());
    metrics::gauge!("carecast_drift_rows", "model" => m.clone(), "version" => v.clone()).set(drift.rows as f64);
    metrics::gauge!("carecast_score_psi", "model" => m.clone(), "version" => v.clone()).set(drift.score.psi);
    metrics::gauge!("carecast_score_js_distance", "model" => m.clone(), "version" => v.clone())
        .set(drift.score.js_distance);
    for f in &drift.features {
        let labels = [("model", m.clone()), ("version", v.clone()), ("feature", f.name.clone())];
        metrics::gauge!("carecast_feature_psi", &labels).set(f.psi);
        metrics::gauge!("carecast_feature_js_distance", &labels).set(f.js_distance);
        metrics::gauge!("carecast_feature_missing_change", &labels).set(f.missing_live - f.missing_train);
    }
}

/// A shadow version scored a request beside the served one: the pair counted, whether the band
/// changed (from the served version's to the shadow's), and the absolute difference in risk
/// (its `_sum` over `_count` is the mean |Δp|).
pub fn shadow(
    model: &str,
    served: &str,
    shadow: &str,
    served_score: &carecast_models::Score,
    shadow_score: &carecast_models::Score,
) {
    let labels = [("model", model.to_string()), ("version", served.to_string()), ("shadow", shadow.to_string())];
    metrics::counter!("carecast_shadow_scores_total", &labels).increment(1);
    metrics::histogram!("carecast_shadow_abs_difference", &labels)
        .record((served_score.probability - shadow_score.probability).abs());
    let (from, to) = (served_score.band.as_str(), shadow_score.band.as_str());
    if from != to {
        let mut changed = labels.to_vec();
        changed.extend([("from", from.to_string()), ("to", to.to_string())]);
        metrics::counter!("carecast_shadow_band_changes_total", &changed).increment(1);
    }
}

/// A shadow version could not score a request the served version scored.
pub fn shadow_refused(model: &str, served: &str, shadow: &str) {
    let labels = [("model", model.to_string()), ("version", served.to_string()), ("shadow", shadow.to_string())];
    metrics::counter!("carecast_shadow_errors_total", &labels).increment(1);
}
