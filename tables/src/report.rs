//! The planner's report: one self-contained HTML page drawn from a published summary (inline SVG
//! and CSS; no script, font or image is fetched, so it opens offline, attached to an email or
//! served by `carecast serve`). Every chart is followed by the table of what it draws, with the
//! same protected counts: the page shows nothing the summary's CSV does not.

use crate::disclosure::shown;
use crate::population::{DISTRIBUTION_BINS, GroupSummary, Summary};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use std::fmt::Write;

/// Width of every chart, and of the label column on its left.
const WIDTH: f64 = 760.0;
const LABEL: f64 = 210.0;
/// Height of one group's row in the horizontal charts.
const ROW: f64 = 24.0;
/// The factors drawn in the burden chart: those with the largest mean burden over everyone (all
/// of them are in the summary's CSV).
const TOP_FACTORS: usize = 8;
/// Low, moderate and high risk: a sequential palette that reads in grey and to colour-blind eyes.
const BAND_COLOURS: [&str; 3] = ["#9ecae1", "#fd8d3c", "#a63603"];
const BAND_NAMES: [&str; 3] = ["low", "moderate", "high"];

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Arial,sans-serif;margin:2rem auto;max-width:52rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ccc}
.meta{color:#444}.note{background:#f3f2f1;border-left:4px solid #005eb8;padding:.6rem 1rem}
figure{margin:1rem 0}svg{display:block;max-width:100%;height:auto}svg text{font-size:12px;fill:#1b1b1b}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}th,td{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}caption{text-align:left;font-weight:600;padding:.3rem 0}";

/// The report for `summary`, as an HTML document.
pub fn render(summary: &Summary) -> String {
    let total = summary.groups.last().expect("a summary has its total row");
    let groups = &summary.groups[..summary.groups.len() - 1];
    let by = summary.groupings.join(" × ");
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Population risk: {model} v{version}</title><style>{STYLE}</style></head><body>\
         <h1>Population risk of {outcome}</h1>\
         <p class=\"meta\">Model <strong>{model}</strong> version {version}; register read {date}; \
         grouped by {by}. People: {people}; not scored: {not_scored}.</p>\
         <p class=\"note\">Disclosure control: {rule}. Expected cases and factor burdens are what the \
         model predicts for these people: associations, not causes, and not a forecast of service demand.</p>",
        model = text(&summary.model),
        version = text(&summary.version),
        outcome = text(&summary.outcome),
        date = summary.started.format("%-d %B %Y"),
        by = text(&by),
        people = shown(total.people),
        not_scored = shown(total.not_scored),
        rule = text(&summary.rule),
    );
    distribution(&mut page, &summary.distribution);
    bands(&mut page, &by, groups);
    expected(&mut page, &by, groups, summary.has_outcome);
    burden(&mut page, &by, groups, total, &summary.factors);
    if !summary.scenario.is_empty() {
        scenario(&mut page, &by, groups, &summary.scenario);
    }
    page.push_str("</body></html>\n");
    page
}

fn label(group: &GroupSummary) -> String {
    group.group.join(" · ")
}

/// Opens a chart: its heading, and an SVG whose title names it for screen readers.
fn open_chart(page: &mut String, id: &str, heading: &str, height: f64) {
    let _ = write!(
        page,
        "<h2 id=\"{id}\">{heading}</h2><figure><svg class=\"chart\" role=\"img\" aria-labelledby=\"{id}\" \
         viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">",
        heading = text(heading)
    );
}

/// A group's name at the left of its row, cut short on the chart (whole in its title and table).
fn row_label(page: &mut String, y: f64, name: &str) {
    let short: String =
        if name.chars().count() > 30 { name.chars().take(29).chain(['…']).collect() } else { name.into() };
    let _ = write!(
        page,
        "<text x=\"{x}\" y=\"{ty}\" text-anchor=\"end\"><title>{full}</title>{short}</text>",
        x = LABEL - 6.0,
        ty = y + ROW * 0.65,
        full = text(name),
        short = text(&short)
    );
}

/// A mark for a group whose figures are suppressed, so that a gap is never read as zero.
fn suppressed(page: &mut String, y: f64) {
    let _ = write!(page, "<text x=\"{}\" y=\"{}\" fill=\"#666\">* suppressed</text>", LABEL + 4.0, y + ROW * 0.65);
}

/// A legend at height `y`: a swatch and its words per entry, `spacing` apart from the label column.
fn legend(page: &mut String, y: f64, spacing: f64, entries: impl IntoIterator<Item = (&'static str, String)>) {
    for (k, (colour, words)) in entries.into_iter().enumerate() {
        let x = LABEL + spacing * k as f64;
        let _ = write!(
            page,
            "<rect x=\"{x}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{tx}\" y=\"{ty}\">{words}</text>",
            tx = x + 16.0,
            ty = y + 10.0,
            words = text(&words)
        );
    }
}

/// The `i`th tenth of risk, as the distribution's chart and table label it.
fn tenth(i: usize) -> String {
    format!("{}–{}%", i * 10, (i + 1) * 10)
}

/// A table: a caption, a header row and rows of cells (all escaped).
fn table(page: &mut String, caption: &str, header: &[String], rows: impl IntoIterator<Item = Vec<String>>) {
    let _ = write!(page, "<table><caption>{}</caption><thead><tr>", text(caption));
    for h in header {
        let _ = write!(page, "<th scope=\"col\">{}</th>", text(h));
    }
    page.push_str("</tr></thead><tbody>");
    for row in rows {
        page.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let tag = if i == 0 { "th scope=\"row\"" } else { "td" };
            let _ = write!(page, "<{tag}>{}</{}>", text(cell), &tag[..2]);
        }
        page.push_str("</tr>");
    }
    page.push_str("</tbody></table>");
}

/// The largest value a chart's axis must reach, never zero (an all-zero chart still draws).
fn axis_max(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0f64, f64::max).max(1.0)
}

/// Vertical ticks at 0, a quarter, ..., the maximum, labelled with `format`.
fn ticks(page: &mut String, top: f64, height: f64, max: f64, format: impl Fn(f64) -> String) {
    for k in 0..=4 {
        let x = LABEL + (WIDTH - LABEL - 20.0) * k as f64 / 4.0;
        let _ = write!(
            page,
            "<line x1=\"{x}\" x2=\"{x}\" y1=\"{top}\" y2=\"{bottom}\" stroke=\"#ddd\"/>\
             <text x=\"{x}\" y=\"{ty}\" text-anchor=\"middle\">{label}</text>",
            bottom = top + height,
            ty = top + height + 14.0,
            label = text(&format(max * k as f64 / 4.0))
        );
    }
}

fn distribution(page: &mut String, bins: &[Option<u64>]) {
    let (height, top, bottom) = (260.0, 10.0, 40.0);
    open_chart(page, "distribution", "Risk distribution: people by predicted risk", height);
    let max = axis_max(bins.iter().flatten().map(|&n| n as f64));
    let (plot_h, left) = (height - top - bottom, 60.0);
    let width = (WIDTH - left - 10.0) / DISTRIBUTION_BINS as f64;
    let _ = write!(
        page,
        "<text x=\"4\" y=\"{top}\" dominant-baseline=\"hanging\">{}</text>\
         <line x1=\"{left}\" x2=\"{right}\" y1=\"{base}\" y2=\"{base}\" stroke=\"#666\"/>",
        max as u64,
        right = WIDTH - 10.0,
        base = top + plot_h
    );
    for (i, n) in bins.iter().enumerate() {
        let x = left + width * i as f64;
        let _ = write!(
            page,
            "<text x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\">{}</text>",
            tenth(i),
            cx = x + width / 2.0,
            ty = top + plot_h + 16.0,
        );
        match n {
            Some(n) => {
                let h = plot_h * *n as f64 / max;
                let _ = write!(
                    page,
                    "<rect class=\"bar\" x=\"{x1}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"#005eb8\"><title>{n} people</title></rect>",
                    x1 = x + 2.0,
                    y = top + plot_h - h,
                    w = width - 4.0
                );
            }
            None => {
                let _ = write!(
                    page,
                    "<text x=\"{cx}\" y=\"{y}\" text-anchor=\"middle\" fill=\"#666\">*</text>",
                    cx = x + width / 2.0,
                    y = top + plot_h - 4.0
                );
            }
        }
    }
    page.push_str("</svg></figure>");
    let rows = bins.iter().enumerate().map(|(i, n)| vec![tenth(i), shown(*n)]);
    table(page, "People by predicted risk", &["Predicted risk".into(), "People".into()], rows);
}

fn bands(page: &mut String, by: &str, groups: &[GroupSummary]) {
    let height = ROW * groups.len() as f64 + 50.0;
    open_chart(page, "bands", &format!("People per risk band by {by}"), height);
    let max = axis_max(groups.iter().filter_map(|g| g.people).map(|n| n as f64));
    let span = WIDTH - LABEL - 20.0;
    for (i, g) in groups.iter().enumerate() {
        let y = ROW * i as f64;
        row_label(page, y, &label(g));
        // A group is drawn only when all its band counts are published: a stacked bar missing a
        // band would understate the group.
        match g.bands.iter().copied().collect::<Option<Vec<u64>>>() {
            Some(counts) => {
                let mut x = LABEL;
                for (b, n) in counts.iter().enumerate() {
                    let w = span * *n as f64 / max;
                    let _ = write!(
                        page,
                        "<rect class=\"bar\" x=\"{x}\" y=\"{y1}\" width=\"{w}\" height=\"{h}\" fill=\"{c}\"><title>{band}: {n}</title></rect>",
                        y1 = y + 3.0,
                        h = ROW - 6.0,
                        c = BAND_COLOURS[b],
                        band = BAND_NAMES[b]
                    );
                    x += w;
                }
            }
            None => suppressed(page, y),
        }
    }
    ticks(page, 0.0, ROW * groups.len() as f64, max, |v| format!("{v:.0}"));
    let entries = BAND_COLOURS.iter().zip(BAND_NAMES).map(|(&colour, name)| (colour, format!("{name} risk")));
    legend(page, ROW * groups.len() as f64 + 32.0, 110.0, entries);
    page.push_str("</svg></figure>");
    let header = [by.to_string(), "People".into(), "Low".into(), "Moderate".into(), "High".into(), "Not scored".into()];
    let rows = groups.iter().map(|g| {
        let mut row = vec![label(g), shown(g.people)];
        row.extend(g.bands.iter().map(|n| shown(*n)));
        row.push(shown(g.not_scored));
        row
    });
    table(page, &format!("People per risk band by {by}"), &header, rows);
}

fn expected(page: &mut String, by: &str, groups: &[GroupSummary], has_outcome: bool) {
    let height = ROW * groups.len() as f64 + 30.0;
    open_chart(page, "expected", &format!("Expected cases by {by}, with 95% intervals"), height);
    let max = axis_max(groups.iter().filter_map(|g| g.expected_interval).map(|(_, hi)| hi as f64));
    let span = WIDTH - LABEL - 20.0;
    let x = |v: f64| LABEL + span * v / max;
    for (i, g) in groups.iter().enumerate() {
        let (y, mid) = (ROW * i as f64, ROW * i as f64 + ROW / 2.0);
        row_label(page, y, &label(g));
        match (g.expected_cases, g.expected_interval) {
            (Some(e), Some((lo, hi))) => {
                let _ = write!(
                    page,
                    "<line class=\"interval\" x1=\"{x1}\" x2=\"{x2}\" y1=\"{mid}\" y2=\"{mid}\" stroke=\"#333\" stroke-width=\"2\"/>\
                     <circle class=\"point\" cx=\"{cx}\" cy=\"{mid}\" r=\"5\" fill=\"#005eb8\"><title>{e} expected ({lo} to {hi})</title></circle>",
                    x1 = x(lo as f64),
                    x2 = x(hi as f64),
                    cx = x(e)
                );
                if let Some(o) = g.observed_cases.filter(|_| has_outcome) {
                    let _ = write!(
                        page,
                        "<rect x=\"{rx}\" y=\"{ry}\" width=\"8\" height=\"8\" fill=\"#a63603\"><title>{o} observed</title></rect>",
                        rx = x(o as f64) - 4.0,
                        ry = mid - 4.0
                    );
                }
            }
            _ => suppressed(page, y),
        }
    }
    ticks(page, 0.0, ROW * groups.len() as f64, max, |v| format!("{v:.0}"));
    page.push_str("</svg></figure>");
    let mut header = vec![by.to_string(), "Expected cases".into(), "Lower 95%".into(), "Upper 95%".into()];
    if has_outcome {
        header.push("Observed cases".into());
    }
    let rows = groups.iter().map(|g| {
        let (lo, hi) = g.expected_interval.unzip();
        let mut row = vec![label(g), shown(g.expected_cases.map(|e| e as u64)), shown(lo), shown(hi)];
        if has_outcome {
            row.push(shown(g.observed_cases));
        }
        row
    });
    let caption =
        if has_outcome { "circle: expected; square: observed" } else { "circle: expected; line: 95% interval" };
    table(page, &format!("Expected cases by {by} ({caption})"), &header, rows);
}

/// Burden as published (probability scale) in percentage points.
fn points(b: f64) -> String {
    format!("{:+.2}", b * 100.0)
}

fn burden(page: &mut String, by: &str, groups: &[GroupSummary], total: &GroupSummary, factors: &[String]) {
    // The factors that weigh most on everyone's risk, either way.
    let mut order: Vec<usize> = (0..factors.len()).collect();
    if let Some(all) = &total.burden {
        order.sort_by(|&a, &b| all[b].abs().total_cmp(&all[a].abs()));
    }
    order.truncate(TOP_FACTORS);
    let cell = (WIDTH - LABEL) / order.len().max(1) as f64;
    let head = 90.0;
    let height = head + ROW * groups.len() as f64 + 10.0;
    open_chart(page, "burden", &format!("Factor burden by {by}: mean contribution to risk"), height);
    let max = groups.iter().filter_map(|g| g.burden.as_ref()).flatten().fold(1e-9f64, |m, b| m.max(b.abs()));
    for (j, &f) in order.iter().enumerate() {
        let x = LABEL + cell * (j as f64 + 0.5);
        let name: String = factors[f].chars().take(22).collect();
        let _ = write!(
            page,
            "<text transform=\"translate({x},{y}) rotate(-35)\"><title>{full}</title>{name}</text>",
            y = head - 6.0,
            full = text(&factors[f]),
            name = text(&name)
        );
    }
    for (i, g) in groups.iter().enumerate() {
        let y = head + ROW * i as f64;
        row_label(page, y, &label(g));
        let Some(b) = &g.burden else {
            suppressed(page, y);
            continue;
        };
        for (j, &f) in order.iter().enumerate() {
            // Red raises risk, blue lowers it; the stronger, the deeper.
            let strength = (b[f].abs() / max).sqrt();
            let colour = if b[f] >= 0.0 { "165,15,21" } else { "8,81,156" };
            let _ = write!(
                page,
                "<rect class=\"cell\" x=\"{x}\" y=\"{y1}\" width=\"{w}\" height=\"{h}\" fill=\"rgba({colour},{a:.3})\" stroke=\"#fff\">\
                 <title>{factor}: {v} points</title></rect>",
                x = LABEL + cell * j as f64,
                y1 = y + 1.0,
                w = cell,
                h = ROW - 2.0,
                a = 0.08 + 0.92 * strength,
                factor = attr(&factors[f]),
                v = points(b[f])
            );
        }
    }
    page.push_str("</svg></figure>");
    let mut header = vec![by.to_string()];
    header.extend(order.iter().map(|&f| factors[f].clone()));
    let rows = groups.iter().chain([total]).map(|g| {
        let mut row = vec![label(g)];
        match &g.burden {
            Some(b) => row.extend(order.iter().map(|&f| points(b[f]))),
            None => row.extend(order.iter().map(|_| "*".to_string())),
        }
        row
    });
    let caption = format!(
        "Mean contribution to risk, percentage points (red raises, blue lowers); the {} largest of {} factors, all in the summary's CSV",
        order.len(),
        factors.len()
    );
    table(page, &caption, &header, rows);
}

fn scenario(page: &mut String, by: &str, groups: &[GroupSummary], changes: &[String]) {
    let heading = format!("Scenario by {by}: expected cases before and after");
    let height = 2.0 * ROW * groups.len() as f64 + 50.0;
    open_chart(page, "scenario", &heading, height);
    let max = axis_max(groups.iter().flat_map(|g| [g.expected_cases, g.scenario_cases]).flatten());
    let span = WIDTH - LABEL - 20.0;
    for (i, g) in groups.iter().enumerate() {
        let y = 2.0 * ROW * i as f64;
        row_label(page, y + ROW / 2.0, &label(g));
        match (g.expected_cases, g.scenario_cases) {
            (Some(before), Some(after)) => {
                for (k, (v, colour, what)) in
                    [(before, "#9e9e9e", "now"), (after, "#005eb8", "under the scenario")].iter().enumerate()
                {
                    let _ = write!(
                        page,
                        "<rect class=\"bar\" x=\"{LABEL}\" y=\"{y1}\" width=\"{w}\" height=\"{h}\" fill=\"{colour}\"><title>{v} expected {what}</title></rect>",
                        y1 = y + ROW * k as f64 + 2.0,
                        w = span * v / max,
                        h = ROW - 4.0
                    );
                }
            }
            _ => suppressed(page, y + ROW / 2.0),
        }
    }
    let rows_h = 2.0 * ROW * groups.len() as f64;
    ticks(page, 0.0, rows_h, max, |v| format!("{v:.0}"));
    let entries = [("#9e9e9e", "now".to_string()), ("#005eb8", "under the scenario".to_string())];
    legend(page, rows_h + 30.0, 160.0, entries);
    page.push_str("</svg></figure>");
    let header = [by.to_string(), "Expected now".into(), "Under the scenario".into(), "Change".into()];
    let rows = groups.iter().map(|g| {
        let change = g.expected_cases.zip(g.scenario_cases).map(|(b, a)| format!("{:+}", a - b));
        vec![
            label(g),
            shown(g.expected_cases.map(|e| e as u64)),
            shown(g.scenario_cases.map(|e| e as u64)),
            change.unwrap_or_else(|| "*".into()),
        ]
    });
    table(page, &heading, &header, rows);
    let _ = write!(
        page,
        "<p>The scenario: {}. What the model predicts had these inputs been so: a model-based association, not the effect of an intervention.</p>",
        text(&changes.join("; "))
    );
}
