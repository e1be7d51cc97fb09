//! Published population runs for planners, over HTTP on the server's own port: `GET /population`
//! lists the runs in the directory `carecast serve --population DIR` names (each a
//! `carecast population --output DIR/<run>`), newest first, and `GET /population/<run>` is that
//! run's report. Only the `planner` role (or admin) may read them; the pages hold only protected
//! aggregates, and are sent with a content security policy that lets no script run.
//!
//! A run is listed once its summary and report are both published (they appear by rename, so a
//! run being written is never half-shown), and a name is looked up among the listed runs, never
//! joined to a path.

use crate::auth::Role;
use crate::service::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use std::fmt::Write;
use std::sync::Arc;

/// The reports are self-contained: inline styles and SVG, nothing else, and nothing runs.
const POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route("/population", axum::routing::get(index))
        .route("/population/{run}", axum::routing::get(report))
        .with_state(state)
}

/// One published run, as its summary's JSON describes it.
struct Run {
    name: String,
    model: String,
    version: String,
    grouped_by: String,
    people: String,
    read: String,
}

impl Run {
    /// The run published as `<name>.json` and `<name>.html`, when both are there and the JSON is
    /// a summary's.
    fn read(dir: &std::path::Path, name: &str) -> Option<Self> {
        let about: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).ok()?).ok()?;
        dir.join(format!("{name}.html")).is_file().then_some(())?;
        let field = |k: &str| about.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let grouped_by = about.get("grouped_by")?.as_array()?.iter().filter_map(|g| g.as_str()).collect::<Vec<_>>();
        Some(Self {
            name: name.to_string(),
            model: field("model")?,
            version: field("model_version")?,
            grouped_by: grouped_by.join(" × "),
            people: about.get("people").and_then(|p| p.as_u64()).map_or_else(|| "*".into(), |p| p.to_string()),
            read: field("register_read").unwrap_or_default(),
        })
    }
}

/// The runs published in `dir`, newest first.
fn runs(dir: &std::path::Path) -> Vec<Run> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut runs: Vec<Run> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".json").filter(|n| !n.starts_with('.')).map(str::to_string))
        .filter_map(|name| Run::read(dir, &name))
        .collect();
    runs.sort_by(|a, b| b.read.cmp(&a.read).then_with(|| a.name.cmp(&b.name)));
    runs
}

/// Refuses a caller who may not read population runs (401 / 403, saying why).
fn planner(state: &AppState, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    let Some(auth) = &state.auth else { return Ok(()) };
    auth.check_headers(headers, Role::Planner).map(drop).map_err(|refused| {
        let (status, message) = refused.into();
        crate::metrics::refused_http("population", status.as_u16());
        (status, message)
    })
}

fn page(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn index(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(refused) = planner(&state, &headers) {
        return refused.into_response();
    }
    let Some(dir) = &state.population else {
        return (StatusCode::NOT_FOUND, "no population runs are published here (carecast serve --population DIR)")
            .into_response();
    };
    let mut body = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Population runs</title>\
         <style>body{font-family:system-ui,Arial,sans-serif;margin:2rem auto;max-width:52rem}\
         table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}</style>\
         </head><body><h1>Published population runs</h1>",
    );
    let runs = runs(dir);
    if runs.is_empty() {
        body.push_str(
            "<p>None yet: <code>carecast population … --output DIR/&lt;run&gt;</code> publishes one here.</p>",
        );
    } else {
        body.push_str(
            "<table><thead><tr><th>Run</th><th>Register read</th><th>Model</th><th>Grouped by</th><th>People</th></tr></thead><tbody>",
        );
        for run in &runs {
            let _ = write!(
                body,
                "<tr><td><a href=\"/population/{href}\">{name}</a></td><td>{read}</td><td>{model} v{version}</td><td>{by}</td><td>{people}</td></tr>",
                href = attr(&run.name),
                name = text(&run.name),
                read = text(&run.read),
                model = text(&run.model),
                version = text(&run.version),
                by = text(&run.grouped_by),
                people = text(&run.people),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("</body></html>\n");
    page(body)
}

async fn report(State(state): State<Arc<AppState>>, Path(run): Path<String>, headers: HeaderMap) -> Response {
    if let Err(refused) = planner(&state, &headers) {
        return refused.into_response();
    }
    let not_found = || (StatusCode::NOT_FOUND, "no such population run: GET /population lists them").into_response();
    let Some(dir) = &state.population else { return not_found() };
    // Looked up among the published runs: a name is never a path.
    let Some(run) = runs(dir).into_iter().find(|r| r.name == run) else { return not_found() };
    match std::fs::read_to_string(dir.join(format!("{}.html", run.name))) {
        Ok(html) => page(html),
        Err(_) => not_found(),
    }
}
