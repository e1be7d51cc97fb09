//! The model card: what a reader of a clinical prediction paper expects to find, in the order of
//! TRIPOD+AI (intended use, data, outcome, predictors, sample size, missing data, model,
//! performance, fairness, limitations), as Markdown and as one self-contained HTML page whose
//! plots are inline SVG. Everything in it comes from the package's manifest and `metrics.json`.

use crate::dataset::{MetricsFile, TrainingSummary};
use crate::evaluate::{Point, Report};
use crate::fit::selection::{Choice, Recorded};
use crate::fit::stack::StackChoice;
use carecast_models::FeatureKind;
use carecast_models::package::Manifest;
use std::fmt::Write;

pub const MARKDOWN: &str = "model_card.md";
pub const HTML: &str = "model_card.html";

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// An AUROC with its 95% interval, or why there is none.
fn auroc_with_interval(auroc: Option<f64>, interval: Option<[f64; 2]>, otherwise: &str) -> String {
    match (auroc, interval) {
        (Some(a), Some([lo, hi])) => format!("{a:.3} ({lo:.3}–{hi:.3})"),
        _ => otherwise.into(),
    }
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |x| format!("{x:.3}"))
}

/// A stack's members: each one's weight on its margin and its cross-validated AUROC (of its
/// out-of-fold predictions, the rows the weights were fitted on).
fn stack_members(w: &mut String, stack: &StackChoice) {
    let _ = writeln!(
        w,
        "\nThe stack's log-odds are {:+.3} plus each member's margin (its log-odds; a plain hazard model's linear predictor) times its weight; weights were fitted on {} out-of-fold predictions (a member of weight 0 is left out):\n",
        stack.intercept, stack.out_of_fold_rows
    );
    let _ = writeln!(w, "| member | weight | cross-validated AUROC | member's selection |\n| --- | --- | --- | --- |");
    for m in &stack.members {
        let _ = writeln!(w, "| {} | {:.3} | {:.3} | {} |", m.algorithm.short_name(), m.weight, m.cv_auroc, m.method);
    }
}

/// The card's text sections as Markdown; the HTML page renders the same text and adds plots.
pub fn markdown(manifest: &Manifest, metrics: &MetricsFile) -> String {
    let training = &metrics.training;
    let r = &metrics.report;
    let m = &r.metrics;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# Model card: {} version {}\n", manifest.name, manifest.version);
    let _ = writeln!(
        w,
        "{}. Algorithm: {}. Package format `{}`.\n",
        manifest.task.description, manifest.algorithm, manifest.format
    );

    let _ = writeln!(w, "## Intended use\n");
    let _ = writeln!(
        w,
        "Predicts the probability of {} for decision support by clinicians and service planners: \
        it flags patients for review and explains each flag. It does not diagnose, and it is not to be used \
        alone to withhold or start treatment. Task: `{}`.\n",
        manifest.task.outcome, manifest.task.name
    );

    let _ = writeln!(w, "## Data\n");
    let d = &manifest.training_data;
    let _ = writeln!(w, "- Source: `{}` (SHA-256 `{}`)", d.source, d.sha256);
    let _ = writeln!(
        w,
        "- Development (training) rows: {} with {} outcomes; evaluation (`{}`): {} rows from {} patients",
        d.train_rows, d.train_positives, metrics.split, m.n, metrics.evaluated_patients
    );
    for (reason, n) in &metrics.excluded_rows {
        let _ = writeln!(w, "- Left out: {n} rows: {reason}");
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## Outcome\n");
    let _ = writeln!(
        w,
        "{}. Prevalence: {} in training, {} in evaluation.\n",
        manifest.task.outcome,
        pct(d.train_positives as f64 / d.train_rows.max(1) as f64),
        pct(m.prevalence)
    );
    if let Some(c) = &training.competing_events {
        let codes: Vec<String> = c.codes.iter().map(|code| format!("`{code}`")).collect();
        let _ = writeln!(
            w,
            "Competing events ({}): {} training rows ended in one before the outcome. They are non-cases, not censored: the probability is the cumulative incidence of the outcome by the horizon with the competing event accounted for (a patient who dies first is never diagnosed), and discrimination and calibration below count those patients as non-cases (the cumulative/dynamic definition with competing events among the controls, Blanche et al. 2013).\n",
            codes.join(", "),
            c.train_rows_ended
        );
    }

    let _ = writeln!(w, "## Predictors\n");
    let _ = writeln!(w, "| predictor | type | unit | missing in training |\n| --- | --- | --- | --- |");
    for (i, f) in manifest.features.iter().enumerate() {
        let kind = match f.kind {
            FeatureKind::Numeric => "numeric",
            FeatureKind::Categorical => "categorical",
        };
        let miss = training.missing_share.get(i).map_or_else(String::new, |&x| pct(x));
        let _ = writeln!(
            w,
            "| {} (`{}`) | {kind} | {} | {miss} |",
            f.display_name(),
            f.name,
            f.unit.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## Sample size\n");
    let epp = training.train_events as f64 / training.encoded_columns.max(1) as f64;
    let _ = writeln!(
        w,
        "{} training rows, {} outcomes, {} encoded columns: {:.1} outcomes per column.\n",
        training.train_rows, training.train_events, training.encoded_columns, epp
    );

    let _ = writeln!(w, "## Missing data\n");
    let _ = writeln!(
        w,
        "{} Callers must send every feature, marking a value not recorded as missing, so a forgotten field is never silently imputed.\n",
        training.missing_handling
    );

    let _ = writeln!(w, "## Model\n");
    let _ = writeln!(w, "{}. Model selection: {}.", manifest.algorithm, metrics.model_selection.method());
    if let Recorded::Typed(selection) = &metrics.model_selection
        && let Choice::Stack(stack) = &selection.choice
    {
        stack_members(w, stack);
    }
    if !training.monotone.is_empty() {
        let _ = writeln!(w, "Monotone constraints: {}.", training.monotone.join(", "));
    }
    let _ = writeln!(
        w,
        "Every score is returned with each feature's contribution on the log-odds scale: exact Shapley values for linear and tree models, integrated gradients for networks and for a cumulative incidence under competing risks (a stack's are the weighted sums of its members'). Largest additivity error on the evaluation rows: {:.1e}.\n",
        metrics.max_additivity_error
    );

    let _ = writeln!(w, "## Performance (`{}` split)\n", metrics.split);
    let _ = writeln!(w, "| measure | value |\n| --- | --- |");
    let _ = writeln!(w, "| AUROC (95% CI) | {:.3} ({:.3}–{:.3}) |", m.auroc, m.auroc_ci_lower, m.auroc_ci_upper);
    let _ = writeln!(w, "| AUPRC | {:.3} (prevalence {:.3}) |", m.auprc, m.prevalence);
    let _ = writeln!(w, "| Brier / scaled Brier | {:.4} / {:.3} |", m.brier, r.scaled_brier);
    let _ =
        writeln!(w, "| Calibration slope / intercept | {:.2} / {:+.2} |", m.calibration_slope, m.calibration_intercept);
    let _ = writeln!(w, "| ICI / E50 / E90 | {:.4} / {:.4} / {:.4} |\n", r.ici, r.e50, r.e90);
    if !r.time_dependent_auroc.is_empty() {
        let _ = writeln!(
            w,
            "Discrimination over the horizon (time-dependent AUROC: who had the outcome by each time against everyone who had not, a competing event counting among the latter):\n\n| by | cases | non-cases | AUROC (95% CI) |\n| --- | --- | --- | --- |"
        );
        for t in &r.time_dependent_auroc {
            let auroc = auroc_with_interval(t.auroc, t.auroc_ci, "no cases yet");
            let _ = writeln!(w, "| {} of the horizon | {} | {} | {auroc} |", pct(t.at), t.cases, t.controls);
        }
        let _ = writeln!(w);
    }
    if let Some(b) = &r.baseline {
        let _ = writeln!(
            w,
            "Against **{}** on the same rows: AUROC {:.3} ({:.3}–{:.3}); difference {:+.3} (95% CI {:+.3} to {:+.3}, DeLong p = {:.2e}).\n",
            b.baseline,
            b.baseline_auroc,
            b.baseline_auroc_ci[0],
            b.baseline_auroc_ci[1],
            b.difference,
            b.difference_ci[0],
            b.difference_ci[1],
            b.p_value
        );
    }
    let _ = writeln!(
        w,
        "At the risk-band thresholds:\n\n| flag at risk ≥ | flagged | sensitivity | specificity | PPV | NPV | net benefit | treat all |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for t in &r.risk_band_thresholds {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {:.4} | {:.4} |",
            pct(t.threshold),
            pct(t.flagged),
            num(t.sensitivity),
            num(t.specificity),
            num(t.ppv),
            num(t.npv),
            t.net_benefit,
            t.net_benefit_treat_all
        );
    }
    let _ = writeln!(
        w,
        "\nCalibration by tenth of predicted risk:\n\n| rows | mean predicted | observed |\n| --- | --- | --- |"
    );
    for g in &r.calibration_groups {
        let _ = writeln!(w, "| {} | {:.3} | {:.3} |", g.n, g.mean_predicted, g.observed);
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## Fairness\n");
    if r.subgroups.is_empty() {
        let _ = writeln!(w, "No subgroup variables were available for this task.\n");
    } else {
        let _ = writeln!(
            w,
            "| subgroup | group | rows | outcomes | observed | mean predicted | AUROC (95% CI) | slope | intercept |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for g in &r.subgroups {
            let auc = auroc_with_interval(g.auroc, g.auroc_ci, "too few outcomes");
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {:.3} | {:.3} | {auc} | {} | {} |",
                g.variable,
                g.level,
                g.n,
                g.events,
                g.observed,
                g.mean_predicted,
                num(g.calibration_slope),
                num(g.calibration_intercept)
            );
        }
        let _ = writeln!(w, "\nAUROC and calibration are reported where a group has at least 10 of each outcome.\n");
    }

    let _ = writeln!(w, "## Limitations\n");
    for l in limitations(metrics, training) {
        let _ = writeln!(w, "- {l}");
    }
    s
}

/// Cautions that follow from the numbers themselves, then those that hold for every model.
fn limitations(metrics: &MetricsFile, training: &TrainingSummary) -> Vec<String> {
    let m = &metrics.report.metrics;
    let mut out = Vec::new();
    if training.train_events < 200 {
        out.push(format!(
            "Only {} outcomes in training: estimates are imprecise and the model may not transfer.",
            training.train_events
        ));
    }
    if !(0.9..=1.1).contains(&m.calibration_slope) {
        out.push(format!(
            "Calibration slope {:.2} is outside 0.9–1.1: predictions are {} on these rows.",
            m.calibration_slope,
            if m.calibration_slope < 1.0 { "too extreme" } else { "too modest" }
        ));
    }
    if m.calibration_intercept.abs() > 0.1 {
        out.push(format!(
            "Calibration intercept {:+.2}: risks are {} on average; recalibrate in the large for a new site.",
            m.calibration_intercept,
            if m.calibration_intercept > 0.0 { "underestimated" } else { "overestimated" }
        ));
    }
    let thin: Vec<String> = metrics
        .report
        .subgroups
        .iter()
        .filter(|g| g.auroc.is_none())
        .map(|g| format!("{} {}", g.variable, g.level))
        .collect();
    if !thin.is_empty() {
        out.push(format!("Too few outcomes to assess discrimination in: {}.", thin.join(", ")));
    }
    if m.n as f64 > 1.2 * metrics.evaluated_patients as f64 {
        out.push(format!(
            "{} rows come from {} patients: confidence intervals treat rows as independent and are too narrow.",
            m.n, metrics.evaluated_patients
        ));
    }
    out.push("Validated on a held-out split of the development data only; performance at a new site or period must be checked there (`carecast evaluate`).".into());
    out.push("Contributions explain the model, not the patient's biology: they show what drove the score, not what would change the outcome.".into());
    out
}

/// Series of at most this many points are drawn with a marker at each.
const MARKED: usize = 60;
/// The colour of reference lines (chance, ideal, thresholds): never marked.
pub(crate) const REFERENCE: &str = "#aaa";

/// A plot's axis labels and ranges.
pub(crate) struct Axes<'a> {
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    /// Legend in the top right corner (else the bottom right), away from the curves.
    pub legend_top: bool,
}

/// Tick label with enough decimals for the axis' range.
fn tick(v: f64, range: (f64, f64)) -> String {
    match range.1 - range.0 {
        r if r < 0.1 => format!("{v:.3}"),
        r if r >= 10.0 => format!("{v:.0}"),
        _ => format!("{v:.2}"),
    }
}

/// One plot as inline SVG, series as polylines clipped to the axes' ranges.
pub(crate) fn svg_plot(title: &str, axes: Axes<'_>, series: &[(&str, &str, &[Point])]) -> String {
    let Axes { x_label, y_label, x_range: (x0, x1), y_range, legend_top } = axes;
    // Titles, labels and series names may carry a model's own names: text, never markup.
    let (title, x_label, y_label) = (escape(title), escape(x_label), escape(y_label));
    let (w, h, left, bottom, top, right) = (360.0, 300.0, 50.0, 40.0, 28.0, 12.0);
    let sx = |x: f64| left + (x.clamp(x0, x1) - x0) / (x1 - x0) * (w - left - right);
    let sy = |y: f64| {
        top + (1.0 - (y.clamp(y_range.0, y_range.1) - y_range.0) / (y_range.1 - y_range.0)) * (h - top - bottom)
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img"><title>{title}</title>"#
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="16" font-size="13" text-anchor="middle" font-weight="bold">{title}</text>"#,
        w / 2.0
    );
    let _ = write!(
        s,
        r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        w - left - right,
        h - top - bottom
    );
    for k in 0..=4 {
        let fx = x0 + (x1 - x0) * k as f64 / 4.0;
        let fy = y_range.0 + (y_range.1 - y_range.0) * k as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
            sx(fx),
            h - bottom + 14.0,
            tick(fx, (x0, x1))
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"#,
            left - 4.0,
            sy(fy) + 3.0,
            tick(fy, y_range)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{x_label}</text>"#,
        left + (w - left - right) / 2.0,
        h - 6.0
    );
    let _ = write!(
        s,
        r#"<text x="12" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {:.1})">{y_label}</text>"#,
        top + (h - top - bottom) / 2.0,
        top + (h - top - bottom) / 2.0
    );
    for (i, (name, colour, points)) in series.iter().enumerate() {
        let path: Vec<String> = points.iter().map(|p| format!("{:.1},{:.1}", sx(p.x), sy(p.y))).collect();
        let _ =
            write!(s, r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{}"/>"#, path.join(" "));
        // A few points (a period each, grouped calibration) are marked, so that one alone shows.
        if points.len() <= MARKED && *colour != REFERENCE {
            for p in points.iter() {
                let _ = write!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"/>"#, sx(p.x), sy(p.y));
            }
        }
        let y = if legend_top {
            top + 14.0 + 12.0 * i as f64
        } else {
            h - bottom - 8.0 - 12.0 * (series.len() - 1 - i) as f64
        };
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{y:.1}" font-size="10" text-anchor="end" fill="{colour}">{}</text>"#,
            w - right - 8.0,
            escape(name)
        );
    }
    s.push_str("</svg>");
    s
}

fn plots(r: &Report) -> Vec<String> {
    let diagonal = [Point { x: 0.0, y: 0.0 }, Point { x: 1.0, y: 1.0 }];
    let max_p = r.calibration_curve.iter().map(|p| p.x).fold(0.0_f64, f64::max).clamp(0.05, 1.0);
    let cal_diag = [Point { x: 0.0, y: 0.0 }, Point { x: max_p, y: max_p }];
    let groups: Vec<Point> =
        r.calibration_groups.iter().map(|g| Point { x: g.mean_predicted, y: g.observed }).collect();
    let model: Vec<Point> = r.decision_curve.iter().map(|d| Point { x: d.threshold, y: d.model }).collect();
    let all: Vec<Point> = r.decision_curve.iter().map(|d| Point { x: d.threshold, y: d.treat_all }).collect();
    let none: Vec<Point> = r.decision_curve.iter().map(|d| Point { x: d.threshold, y: 0.0 }).collect();
    let nb_max = r.metrics.prevalence.max(1e-3);
    let t_max = r.decision_curve.last().map_or(1.0, |d| d.threshold);
    let unit =
        |x_label, y_label, legend_top| Axes { x_label, y_label, x_range: (0.0, 1.0), y_range: (0.0, 1.0), legend_top };
    vec![
        svg_plot(
            "ROC curve",
            unit("1 - specificity", "sensitivity", false),
            &[("model", "#1f5fa8", &r.roc_curve), ("chance", REFERENCE, &diagonal)],
        ),
        svg_plot(
            "Precision-recall curve",
            unit("recall (sensitivity)", "precision (PPV)", true),
            &[("model", "#1f5fa8", &r.pr_curve)],
        ),
        svg_plot(
            "Calibration",
            Axes {
                x_label: "predicted risk",
                y_label: "observed risk",
                x_range: (0.0, max_p),
                y_range: (0.0, max_p),
                legend_top: false,
            },
            &[
                ("smoothed", "#1f5fa8", &r.calibration_curve),
                ("tenths", "#d2691e", &groups),
                ("ideal", REFERENCE, &cal_diag),
            ],
        ),
        svg_plot(
            "Decision curve",
            Axes {
                x_label: "threshold probability",
                y_label: "net benefit",
                x_range: (0.0, t_max),
                y_range: (-0.05 * nb_max, nb_max),
                legend_top: true,
            },
            &[("model", "#1f5fa8", &model), ("treat all", "#d2691e", &all), ("treat none", REFERENCE, &none)],
        ),
    ]
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Minimal Markdown to HTML for the card's own output: headings, tables, lists, paragraphs,
/// `code` and **bold**.
pub(crate) fn markdown_to_html(md: &str) -> String {
    let inline = |t: &str| {
        let mut out = String::new();
        let (mut code, mut bold) = (false, false);
        let escaped = escape(t);
        let mut chars = escaped.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '`' => {
                    out.push_str(if code { "</code>" } else { "<code>" });
                    code = !code;
                }
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    out.push_str(if bold { "</strong>" } else { "<strong>" });
                    bold = !bold;
                }
                c => out.push(c),
            }
        }
        out
    };
    let mut html = String::new();
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("## ") {
            let _ = writeln!(html, "<h2>{}</h2>", inline(h));
        } else if let Some(h) = line.strip_prefix("# ") {
            let _ = writeln!(html, "<h1>{}</h1>", inline(h));
        } else if line.starts_with('|') {
            html.push_str("<table>");
            let cells = |l: &str| l.trim_matches('|').split('|').map(|c| inline(c.trim())).collect::<Vec<_>>();
            let _ =
                write!(html, "<tr>{}</tr>", cells(line).iter().map(|c| format!("<th>{c}</th>")).collect::<String>());
            while let Some(next) = lines.peek().filter(|l| l.starts_with('|')) {
                if !next.contains("---") {
                    let _ = write!(
                        html,
                        "<tr>{}</tr>",
                        cells(next).iter().map(|c| format!("<td>{c}</td>")).collect::<String>()
                    );
                }
                lines.next();
            }
            html.push_str("</table>\n");
        } else if let Some(item) = line.strip_prefix("- ") {
            let _ = write!(html, "<ul><li>{}</li>", inline(item));
            while let Some(next) = lines.peek().and_then(|l| l.strip_prefix("- ")) {
                let _ = write!(html, "<li>{}</li>", inline(next));
                lines.next();
            }
            html.push_str("</ul>\n");
        } else if !line.trim().is_empty() {
            let _ = writeln!(html, "<p>{}</p>", inline(line));
        }
    }
    html
}

/// The card as one self-contained HTML page (no scripts, no external resources), with the plots
/// placed under the performance section.
pub fn html(manifest: &Manifest, metrics: &MetricsFile) -> String {
    let body = markdown_to_html(&markdown(manifest, metrics));
    let figures = format!("<div class=\"plots\">{}</div>\n", plots(&metrics.report).join("\n"));
    let body = body.replacen("<h2>Fairness</h2>", &format!("{figures}<h2>Fairness</h2>"), 1);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Model card: {} {}</title>\n<style>\
body{{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}}\
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:14px}}\
th{{background:#f2f2f2}}code{{background:#f5f5f5;padding:0 3px}}.plots svg{{margin:6px}}</style></head>\n<body>\n{body}</body></html>\n",
        escape(&manifest.name),
        escape(&manifest.version),
    )
}
