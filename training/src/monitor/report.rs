//! A monitoring report as the clinical safety officer reads it: one self-contained HTML page
//! (inline SVG, no script, nothing fetched), each chart followed by the table of what it draws;
//! and as Prometheus reads it: a text file for node_exporter's textfile collector, on which the
//! shipped alert rules fire.

use super::{MonitorReport, PeriodSummary};
use crate::card::{Axes, REFERENCE, escape, markdown_to_html, svg_plot};
use crate::evaluate::Point;
use chrono::NaiveDate;
use std::fmt::Write;

/// Series colours, one per model version (then repeated).
const COLOURS: [&str; 4] = ["#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad"];
/// Inputs drawn in the drift chart: those of highest PSI.
const DRIFT_LINES: usize = 6;

fn opt(x: Option<f64>, decimals: usize) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.decimals$}"))
}

fn versions(report: &MonitorReport) -> Vec<String> {
    let mut v: Vec<String> = report.periods.iter().map(|p| p.version.clone()).collect();
    v.extend(report.drift.iter().map(|d| d.version.clone()));
    v.sort_by_key(|v| v.parse::<u64>().unwrap_or(u64::MAX));
    v.dedup();
    v
}

/// Periods on the x axis: weeks (or months) since the first period in the report.
struct TimeAxis {
    first: NaiveDate,
    weekly: bool,
}

impl TimeAxis {
    fn of(report: &MonitorReport) -> Option<Self> {
        let first = report.periods.iter().map(|p| p.period).chain(report.drift.iter().map(|d| d.period)).min()?;
        Some(TimeAxis { first, weekly: report.period == super::Period::Week })
    }

    fn x(&self, day: NaiveDate) -> f64 {
        let days = (day - self.first).num_days() as f64;
        if self.weekly { days / 7.0 } else { (days / 30.44).round() }
    }

    fn label(&self) -> String {
        format!("{} since {}", if self.weekly { "weeks" } else { "months" }, self.first)
    }

    fn range(&self, report: &MonitorReport) -> (f64, f64) {
        let last = report.periods.iter().map(|p| p.period).chain(report.drift.iter().map(|d| d.period)).max();
        (0.0, last.map_or(1.0, |d| self.x(d)).max(1.0))
    }
}

fn chart(
    title: &str,
    time: &TimeAxis,
    report: &MonitorReport,
    y_label: &str,
    y_range: (f64, f64),
    series: &[(String, &str, Vec<Point>)],
) -> String {
    let borrowed: Vec<(&str, &str, &[Point])> = series.iter().map(|(n, c, p)| (n.as_str(), *c, p.as_slice())).collect();
    let x_label = time.label();
    svg_plot(
        title,
        Axes { x_label: &x_label, y_label, x_range: time.range(report), y_range, legend_top: true },
        &borrowed,
    )
}

/// One line per version of `value` over the periods (periods without a value are skipped).
fn per_version(
    report: &MonitorReport,
    time: &TimeAxis,
    name: &str,
    value: impl Fn(&PeriodSummary) -> Option<f64>,
) -> Vec<(String, &'static str, Vec<Point>)> {
    versions(report)
        .iter()
        .zip(COLOURS.iter().cycle())
        .map(|(v, colour)| {
            let points = report
                .periods
                .iter()
                .filter(|p| &p.version == v)
                .filter_map(|p| value(p).map(|y| Point { x: time.x(p.period), y }))
                .collect();
            (format!("{name} v{v}"), *colour, points)
        })
        .collect()
}

fn flat(y: f64, range: (f64, f64), name: &str) -> (String, &'static str, Vec<Point>) {
    (name.into(), REFERENCE, vec![Point { x: range.0, y }, Point { x: range.1, y }])
}

/// The report as Markdown (headings, lists and tables), with a placeholder line for each chart.
fn markdown(report: &MonitorReport, charts: &[(String, String)]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Monitoring: {}\n", report.model);
    let _ = writeln!(
        md,
        "As of {}. A score is judged once its outcome (codes {}) came within {:.0} days of it, or those days passed without one; until then it is pending. Periods are {}s of scoring (UTC). Counts here are not disclosure-controlled: this report is for the trust's clinical safety officer, not for publication.\n",
        report.now.format("%Y-%m-%d %H:%M UTC"),
        report.outcome_codes.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
        report.horizon_days,
        if report.period == super::Period::Week { "week" } else { "month" }
    );
    let _ = writeln!(md, "## Alerts\n");
    if report.alerts.is_empty() {
        let _ = writeln!(md, "No alerts.\n");
    } else {
        for a in &report.alerts {
            let _ = writeln!(md, "- **{}**, version {}, period from {}: {}", a.kind, a.version, a.period, a.message);
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "Rules: calibration drift is a two-sided risk-adjusted CUSUM (Steiner et al. 2000) for odds of the outcome {r} times or 1/{r} of the model's, over each version's judged scores in the order they were scored; its threshold is set so that at most {fa}% of {n} histories simulated from the scores' own probabilities (a calibrated model) cross it over the same span. Input and score drift alert at a PSI of {psi} or more in a period with at least {rows} scores.\n",
        r = super::CUSUM_ODDS_RATIO,
        fa = super::FALSE_ALARM * 100.0,
        n = super::SIMULATIONS,
        psi = carecast_models::drift::PSI_ALERT,
        rows = carecast_models::drift::MIN_ROWS,
    );
    let v = &report.verdicts;
    let o = &report.outcomes;
    let _ = writeln!(md, "## Scores and outcomes\n");
    let _ = writeln!(
        md,
        "| scores | with the outcome | without | pending | outcome before the score (left out) | outcome at the score's time (left out) |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- |");
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} |\n",
        v.scores, v.events, v.no_events, v.pending, v.prior_outcome, v.ambiguous
    );
    let _ = writeln!(
        md,
        "| outcomes received | matched to a score | for a key never scored | before every score of the patient | at a score's time | after every score's horizon | other codes |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} | {} |\n",
        o.outcomes,
        o.matched,
        o.unknown_key,
        o.before_every_score,
        o.at_score_time,
        o.after_every_horizon,
        o.other_codes
    );
    let _ = writeln!(md, "## Calibration and discrimination\n");
    for (id, _) in charts.iter().filter(|(id, _)| !id.starts_with("drift")) {
        let _ = writeln!(md, "CHART:{id}\n");
    }
    let _ = writeln!(
        md,
        "| version | period from | scores | judged | pending | left out | observed | expected | O/E (95% CI) | calibration slope | intercept | AUROC (95% CI) | estimated AUROC (CBPE) | estimated cases |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for p in &report.periods {
        let oe =
            p.observed_expected.map_or("-".into(), |i| format!("{:.2} ({:.2} to {:.2})", i.estimate, i.lower, i.upper));
        let auc = p.auroc.map_or("-".into(), |i| format!("{:.3} ({:.3} to {:.3})", i.estimate, i.lower, i.upper));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} (estimate) | {:.1} |",
            p.version,
            p.period,
            p.scores,
            p.judged,
            p.pending,
            p.excluded,
            p.observed,
            p.expected,
            oe,
            opt(p.calibration_slope, 2),
            opt(p.calibration_intercept, 2),
            auc,
            opt(p.estimated_auroc, 3),
            p.estimated_cases
        );
    }
    md.push('\n');
    if !report.shadow.is_empty() {
        let _ = writeln!(md, "## Shadow versions\n");
        let _ = writeln!(
            md,
            "A version in shadow scored the same requests as the served one, its results never returned. Its own calibration and discrimination are above, as version `N (shadow)`.\n"
        );
        let _ = writeln!(
            md,
            "| served | shadow | period from | requests | band changed | to a higher band | mean absolute difference in risk |"
        );
        let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
        for a in &report.shadow {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {:.4} |",
                a.served, a.shadow, a.period, a.pairs, a.band_changes, a.shadow_band_higher, a.mean_abs_difference
            );
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Input and score drift\n");
    if report.drift.is_empty() {
        let _ = writeln!(
            md,
            "No live counts yet: a server counts the inputs of every score it computes (`carecast serve`).\n"
        );
    }
    for (id, _) in charts.iter().filter(|(id, _)| id.starts_with("drift")) {
        let _ = writeln!(md, "CHART:{id}\n");
    }
    for d in &report.drift {
        let _ = writeln!(md, "Version {}, period from {}: {} scores.\n", d.version, d.period, d.drift.rows);
        let _ = writeln!(md, "| input | PSI | Jensen-Shannon distance | missing in training | missing live |");
        let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
        for f in d.drift.features.iter().chain([&d.drift.score]) {
            let _ = writeln!(
                md,
                "| {} | {:.3} | {:.3} | {:.1}% | {:.1}% |",
                f.name,
                f.psi,
                f.js_distance,
                100.0 * f.missing_train,
                100.0 * f.missing_live
            );
        }
        md.push('\n');
    }
    md
}

/// The charts, by id.
fn charts(report: &MonitorReport) -> Vec<(String, String)> {
    let Some(time) = TimeAxis::of(report) else { return Vec::new() };
    let x = time.range(report);
    let mut out = Vec::new();
    if !report.periods.is_empty() {
        let mut oe = per_version(report, &time, "O/E", |p| p.observed_expected.map(|i| i.estimate));
        oe.extend(
            per_version(report, &time, "lower", |p| p.observed_expected.map(|i| i.lower))
                .into_iter()
                .map(|(n, _, p)| (n, "#9db7d6", p)),
        );
        oe.extend(
            per_version(report, &time, "upper", |p| p.observed_expected.map(|i| i.upper))
                .into_iter()
                .map(|(n, _, p)| (n, "#9db7d6", p)),
        );
        oe.push(flat(1.0, x, "ideal"));
        out.push(("oe".into(), chart("Observed / expected cases, 95% CI", &time, report, "O/E", (0.0, 2.5), &oe)));
        let mut auc = per_version(report, &time, "AUROC", |p| p.auroc.map(|i| i.estimate));
        auc.extend(
            per_version(report, &time, "estimated", |p| p.estimated_auroc)
                .into_iter()
                .map(|(n, _, p)| (n, "#e67e22", p)),
        );
        out.push(("auroc".into(), chart("AUROC, and CBPE's estimate", &time, report, "AUROC", (0.5, 1.0), &auc)));
        let mut slope = per_version(report, &time, "slope", |p| p.calibration_slope);
        slope.extend(
            per_version(report, &time, "intercept", |p| p.calibration_intercept)
                .into_iter()
                .map(|(n, _, p)| (n, "#2e8b57", p)),
        );
        slope.push(flat(1.0, x, "slope 1"));
        slope.push(flat(0.0, x, "intercept 0"));
        out.push(("slope".into(), chart("Calibration slope and intercept", &time, report, "", (-1.0, 2.0), &slope)));
    }
    for c in &report.cusum {
        let line = |f: fn(&super::CusumPeriod) -> f64| {
            c.periods.iter().map(|p| Point { x: time.x(p.period), y: f(p) }).collect()
        };
        let top = c.periods.iter().map(|p| p.upper.max(p.lower)).fold(c.threshold, f64::max) * 1.1;
        let series = vec![
            ("more than predicted".to_string(), COLOURS[1], line(|p| p.upper)),
            ("fewer than predicted".to_string(), COLOURS[0], line(|p| p.lower)),
            flat(c.threshold, x, "threshold"),
        ];
        out.push((
            format!("cusum-{}", c.version),
            chart(&format!("Risk-adjusted CUSUM, version {}", c.version), &time, report, "CUSUM", (0.0, top), &series),
        ));
    }
    for version in versions(report) {
        let periods: Vec<_> = report.drift.iter().filter(|d| d.version == version).collect();
        let Some(last) = periods.last() else { continue };
        let mut names: Vec<(&str, f64)> = last.drift.features.iter().map(|f| (f.name.as_str(), f.psi)).collect();
        for d in &periods {
            for (n, psi) in names.iter_mut() {
                let here = d.drift.features.iter().find(|f| f.name == *n).map_or(0.0, |f| f.psi);
                *psi = psi.max(here);
            }
        }
        names.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut series: Vec<(String, &str, Vec<Point>)> = names
            .iter()
            .take(DRIFT_LINES)
            .zip(COLOURS.iter().chain(["#e67e22", "#16a085"].iter()).cycle())
            .map(|((name, _), colour)| {
                let points = periods
                    .iter()
                    .filter_map(|d| {
                        d.drift
                            .features
                            .iter()
                            .find(|f| f.name == *name)
                            .map(|f| Point { x: time.x(d.period), y: f.psi })
                    })
                    .collect();
                (name.to_string(), *colour, points)
            })
            .collect();
        series.push((
            "score".into(),
            "#000000",
            periods.iter().map(|d| Point { x: time.x(d.period), y: d.drift.score.psi }).collect(),
        ));
        series.push(flat(carecast_models::drift::PSI_ALERT, x, "alert"));
        let top = periods
            .iter()
            .flat_map(|d| d.drift.features.iter().chain([&d.drift.score]).map(|f| f.psi))
            .fold(0.5, f64::max);
        out.push((
            format!("drift-{version}"),
            chart(&format!("PSI by period, version {version}"), &time, report, "PSI", (0.0, top), &series),
        ));
    }
    out
}

/// The report as one HTML page.
pub fn html(report: &MonitorReport) -> String {
    let charts = charts(report);
    let mut body = markdown_to_html(&markdown(report, &charts));
    for (id, svg) in &charts {
        body = body.replace(&format!("<p>CHART:{}</p>", escape(id)), &format!("<figure id=\"{id}\">{svg}</figure>"));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Monitoring: {}</title>\n<style>\
body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}\
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}\
th{{background:#f2f2f2}}code{{background:#f5f5f5;padding:0 3px}}figure{{display:inline-block;margin:6px}}</style></head>\n<body>\n{body}</body></html>\n",
        escape(&report.model)
    )
}

/// The report's latest state as Prometheus text exposition, for node_exporter's textfile
/// collector: per version, whether calibration has alarmed, the CUSUM charts' last values and
/// threshold, and the last judged period's observed / expected ratio.
pub fn prometheus(report: &MonitorReport) -> String {
    let mut out = String::new();
    let labels = |version: &str| format!("model=\"{}\",version=\"{}\"", report.model, version);
    let mut metric = |name: &str, help: &str, values: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in values {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    metric(
        "carecast_calibration_alarm",
        "1 once the risk-adjusted CUSUM of the version's judged scores has crossed its threshold (calibration drift).",
        report.cusum.iter().map(|c| (labels(&c.version), if c.alarm.is_some() { 1.0 } else { 0.0 })).collect(),
    );
    metric(
        "carecast_calibration_cusum",
        "The risk-adjusted CUSUM's last value, by direction.",
        report
            .cusum
            .iter()
            .flat_map(|c| {
                let last = c.periods.last();
                [
                    (format!("{},direction=\"more\"", labels(&c.version)), last.map_or(0.0, |p| p.upper)),
                    (format!("{},direction=\"fewer\"", labels(&c.version)), last.map_or(0.0, |p| p.lower)),
                ]
            })
            .collect(),
    );
    metric(
        "carecast_calibration_cusum_threshold",
        "The CUSUM level a calibrated model crosses with probability 1% over the span monitored.",
        report.cusum.iter().map(|c| (labels(&c.version), c.threshold)).collect(),
    );
    let mut last_judged: Vec<(String, f64)> = Vec::new();
    for v in versions(report) {
        if let Some(i) = report.periods.iter().rev().filter(|p| p.version == v).find_map(|p| p.observed_expected) {
            last_judged.push((labels(&v), i.estimate));
        }
    }
    metric(
        "carecast_observed_expected",
        "Observed / expected cases in the version's last period with judged scores.",
        last_judged,
    );
    out
}
