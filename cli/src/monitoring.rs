//! Watching deployed models: outcomes back in (`carecast outcomes`), and the monitoring report
//! (`carecast monitor`): calibration, discrimination and drift as outcomes come back.

use carecast_audit::outcomes::{Outcome, OutcomeField, OutcomeLedger};
use carecast_models::drift::{Reference, Tally};
use carecast_models::{Registry, load_package};
use carecast_training::monitor::{self, DayTally, MonitorReport, Period, Sources, Watch};
use chrono::{DateTime, Utc};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Record outcomes that came back (a diagnosis, a death, an escalation), to judge the scores
/// on the audit trail against: appended to `<registry>/outcomes.jsonl`, each kept once.
#[derive(Args)]
#[command(after_help = "Example:
  carecast outcomes --input outcomes.parquet --key-column patient_key --time-column time --code-column code")]
pub struct Outcomes {
    /// CSV or Parquet, one row per outcome: the patient's pseudonymous key (as scored), when,
    /// and the outcome's code (e.g. `ICD10//F03`).
    #[arg(long)]
    input: PathBuf,
    /// Column of pseudonymous patient keys.
    #[arg(long, default_value = "patient_key")]
    key_column: String,
    /// Column of outcome times: date-times, or text such as `2026-03-01T09:30:00Z`.
    #[arg(long, default_value = "time")]
    time_column: String,
    /// Column of outcome codes.
    #[arg(long, default_value = "code")]
    code_column: String,
    /// A model to match the outcomes against (repeat for several); default: every model in the
    /// registry whose task names its outcome codes.
    #[arg(long = "model")]
    models: Vec<String>,
    /// The audit trail whose scores are matched (default `<registry>/audit.jsonl`).
    #[arg(long, env = "CARECAST_AUDIT")]
    audit: Option<String>,
}

/// One refused row: which, which field and why (never the value).
struct Refusal {
    row: usize,
    field: String,
    reason: String,
}

/// The table's outcomes, and the rows refused.
fn read_outcomes(args: &Outcomes, now: DateTime<Utc>) -> anyhow::Result<(Vec<Outcome>, Vec<Refusal>)> {
    let df = carecast_tables::read_table(&args.input)?;
    let keys = carecast_tables::text_column(&df, &args.key_column)?;
    let times = carecast_tables::time_column(&df, &args.time_column)?;
    let codes = carecast_tables::text_column(&df, &args.code_column)?;
    let (mut outcomes, mut refused) = (Vec::new(), Vec::new());
    for (row, ((key, time), code)) in keys.into_iter().zip(times).zip(codes).enumerate() {
        match Outcome::checked(key.as_deref(), time, code.as_deref(), now.timestamp_micros()) {
            Ok(o) => outcomes.push(o),
            Err(r) => refused.push(Refusal {
                row: row + 1,
                field: match r.field {
                    OutcomeField::Key => args.key_column.clone(),
                    OutcomeField::Time => args.time_column.clone(),
                    OutcomeField::Code => args.code_column.clone(),
                },
                reason: r.reason,
            }),
        }
    }
    Ok((outcomes, refused))
}

pub fn outcomes(registry: &Registry, args: Outcomes) -> anyhow::Result<()> {
    let now = Utc::now();
    let (outcomes, refused) = read_outcomes(&args, now)?;
    let rows = outcomes.len() + refused.len();
    let ledger = OutcomeLedger::for_registry(registry.root());
    let appended = ledger.append(&outcomes)?;
    println!(
        "{rows} rows read: {} outcomes added to {}, {} already recorded (duplicates), {} refused",
        appended.added,
        ledger.path().display(),
        appended.duplicates,
        refused.len()
    );
    let mut reasons: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for r in &refused {
        reasons.entry((&r.field, &r.reason)).or_default().push(r.row);
    }
    for ((field, reason), rows) in &reasons {
        let shown: Vec<String> = rows.iter().take(10).map(ToString::to_string).collect();
        let more = if rows.len() > 10 { format!(" and {} more", rows.len() - 10) } else { String::new() };
        println!("  refused: `{field}`: {reason}: {} rows (row {}{more})", rows.len(), shown.join(", "));
    }
    let entries = carecast_audit::entries(crate::audit_location(registry, args.audit.clone()))?;
    let all = ledger.read()?.into_iter().map(|r| r.outcome).collect::<Vec<_>>();
    let models = if args.models.is_empty() { registry.models()? } else { args.models.clone() };
    for model in models {
        let pkg = load_package(&registry.resolve(&model, None)?.1)?;
        let watch = match Watch::for_package(&pkg, Vec::new(), None, Period::Week, now) {
            Ok(w) => w,
            Err(e) => {
                println!("{model}: not matched ({e}; `carecast monitor` takes them)");
                continue;
            }
        };
        let (judged, counts) = monitor::judge(&entries, &all, &watch);
        let pending = judged.iter().filter(|j| j.verdict == monitor::Verdict::Pending).count();
        println!(
            "{model}: {} outcomes with its codes: {} matched to a score, {} for keys it never scored, {} before every score of their patient, {} at the very time of a score (ambiguous), {} after every horizon; {} scores judged, {pending} pending",
            counts.outcomes,
            counts.matched,
            counts.unknown_key,
            counts.before_every_score,
            counts.at_score_time,
            counts.after_every_horizon,
            judged.len() - pending,
        );
    }
    if !refused.is_empty() && outcomes.is_empty() {
        anyhow::bail!("no row of {} could be read as an outcome", args.input.display());
    }
    Ok(())
}

/// Write a model's monitoring report: calibration and discrimination of its scores as outcomes
/// came back, period by period and version by version, a label-free estimate where outcomes are
/// not yet due, calibration drift (a risk-adjusted CUSUM), input and score drift from the
/// servers' live counts, and the alerts.
#[derive(Args)]
#[command(after_help = "Example:
  carecast monitor --model synth_dementia_5y-logistic --period week --output monitor/dementia")]
pub struct Monitor {
    /// The model's name in the registry (every version it has is reported).
    #[arg(long)]
    model: String,
    /// Summarise scores by the week or the month they were made in.
    #[arg(long, value_enum, default_value = "week")]
    period: Period,
    /// The outcome's codes (repeat; `*` at the end matches a prefix); default: the task's.
    #[arg(long = "outcome-code")]
    outcome_codes: Vec<String>,
    /// How long after a score its outcome counts (e.g. 24h, 30d, 5y); default: the task's.
    #[arg(long)]
    horizon: Option<String>,
    /// Judge as of this time (RFC 3339); default: now.
    #[arg(long)]
    now: Option<DateTime<Utc>>,
    /// The directory for `monitor.html`, `monitor.json` and `monitor.prom` (Prometheus'
    /// textfile collector); default `<registry>/<model>/monitor`.
    #[arg(long)]
    output: Option<PathBuf>,
    /// The audit trail whose scores are judged (default `<registry>/audit.jsonl`).
    #[arg(long, env = "CARECAST_AUDIT")]
    audit: Option<String>,
}

/// Every version's training reference and every live tally of `model`.
fn live_counts(registry: &Registry, model: &str) -> anyhow::Result<(Vec<DayTally>, BTreeMap<String, Reference>)> {
    let mut references = BTreeMap::new();
    let mut tallies = Vec::new();
    for (version, day, path) in registry.live_files(model)? {
        if !references.contains_key(&version) {
            let pkg = load_package(&registry.resolve(model, Some(&version))?.1)?;
            let reference = pkg.reference.ok_or_else(|| {
                anyhow::anyhow!(
                    "{model} version {version}: live counts exist but its package has no training reference"
                )
            })?;
            references.insert(version.clone(), reference);
        }
        let tally: Tally = serde_json::from_slice(&std::fs::read(&path)?)
            .map_err(|e| anyhow::anyhow!("{}: not a tally of live counts ({e})", path.display()))?;
        tallies.push(DayTally { version, day, tally });
    }
    Ok((tallies, references))
}

pub fn monitor(registry: &Registry, args: Monitor) -> anyhow::Result<()> {
    let now = args.now.unwrap_or_else(Utc::now);
    let pkg = load_package(&registry.resolve(&args.model, None)?.1)?;
    let watch = Watch::for_package(&pkg, args.outcome_codes, args.horizon.as_deref(), args.period, now)?;
    let entries = carecast_audit::entries(crate::audit_location(registry, args.audit))?;
    let outcomes: Vec<Outcome> =
        OutcomeLedger::for_registry(registry.root()).read()?.into_iter().map(|r| r.outcome).collect();
    let (tallies, references) = live_counts(registry, &args.model)?;
    let report = monitor::run(
        &watch,
        &Sources { entries: &entries, outcomes: &outcomes, tallies: &tallies, references: &references },
    )?;
    let output = args.output.unwrap_or_else(|| registry.root().join(&args.model).join("monitor"));
    write_report(&output, &report)?;
    let v = &report.verdicts;
    println!(
        "{}: {} scores ({} with the outcome, {} without, {} pending, {} left out); {} alerts; report {}",
        report.model,
        v.scores,
        v.events,
        v.no_events,
        v.pending,
        v.prior_outcome + v.ambiguous,
        report.alerts.len(),
        output.join("monitor.html").display()
    );
    for a in &report.alerts {
        println!("  {} (version {}, period from {}): {}", a.kind, a.version, a.period, a.message);
    }
    Ok(())
}

/// Writes the report's three files, each beside its name first and then renamed into place.
fn write_report(dir: &Path, report: &MonitorReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let files = [
        ("monitor.json", serde_json::to_string_pretty(report)?),
        ("monitor.html", monitor::report::html(report)),
        ("monitor.prom", monitor::report::prometheus(report)),
    ];
    for (name, text) in files {
        let (path, partial) = (dir.join(name), dir.join(format!(".{name}.partial")));
        std::fs::write(&partial, text).map_err(|e| anyhow::anyhow!("{}: {e}", partial.display()))?;
        std::fs::rename(&partial, &path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(())
}
