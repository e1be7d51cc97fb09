//! Training on events: a synthetic MEDS dataset, an event task spec and a feature spec give a
//! published package that holds both specs, checksummed; the dementia model's risks agree with the
//! synthetic population's true risks, and the deterioration models (GBM, and a GRU over the
//! observation sequence) beat NEWS2 on the same rows.

use carecast_models::{ModelPackage, Registry, Value, Workspace, load_package};
use carecast_tables::batch::{self, BatchOptions};
use carecast_tables::chunks::Source;
use carecast_tables::disclosure::Disclosure;
use carecast_tables::population::{PopulationOptions, summarise_source};
use carecast_tables::row_values;
use carecast_training::cohort::{EventTaskSpec, event_training_set, label};
use carecast_training::dataset::{MetricsFile, Rows};
use carecast_training::fit::Ending;
use carecast_training::ingest::meds::{SUBJECT, Shards, read_meds};
use carecast_training::pipeline::train_set;
use carecast_training::{Algorithm, synth};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The evaluation a published package carries.
fn metrics(pkg: &ModelPackage) -> MetricsFile {
    serde_json::from_slice(&std::fs::read(pkg.dir.join("metrics.json")).unwrap()).unwrap()
}

/// The synthetic population the tests below share: its size and seed.
const PATIENTS: usize = 20_000;
const SEED: u64 = 17;
/// The tests that read it (these and `monitoring`'s); the last to finish removes it.
const TESTS: usize = 5;

/// The shared population's directory, written by whichever test needs it first.
pub(crate) fn population() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("carecast-events-training-{}", std::process::id()));
        synth::write_population(PATIENTS, SEED, 8_000, &dir.join("meds"), &indicatif::ProgressBar::hidden()).unwrap();
        dir
    })
}

/// Each test publishes into a registry of its own beside the population.
pub(crate) fn registry(name: &str) -> Registry {
    Registry::new(population().join(name))
}

/// The last of the tests to finish removes the population and the registries.
pub(crate) fn finished() {
    static DONE: AtomicUsize = AtomicUsize::new(0);
    if DONE.fetch_add(1, Ordering::SeqCst) + 1 == TESTS {
        std::fs::remove_dir_all(population()).unwrap();
    }
}

#[test]
fn dementia_gbm_risks_agree_with_the_true_risks() {
    let dir = population();
    let registry = registry("dementia");

    // Dementia within five years, GBM with risk constrained never to fall with age.
    let task = include_str!("../../tasks/synth_dementia_5y.toml");
    let features = include_str!("../../tasks/synth_dementia_features.toml");
    let set = event_training_set(&dir.join("meds"), task, features, Rows::TaskSplit).unwrap();
    assert!(set.data.test_rows.len() > 2000 && set.data.train_rows.len() > 15_000);
    let report = train_set(&set, &registry, Algorithm::Gbm, None).unwrap();
    assert!(report.test.auroc > 0.8, "AUROC {}", report.test.auroc);
    assert!(report.max_additivity_error < 1e-9);
    let pkg = load_package(&registry.resolve("synth_dementia_5y-gbm", None).unwrap().1).unwrap();
    assert!(pkg.manifest.files.contains_key("features.toml") && pkg.manifest.files.contains_key("task.toml"));
    assert_eq!(std::fs::read_to_string(pkg.dir.join("features.toml")).unwrap(), features);
    assert_eq!(pkg.manifest.task.outcome, "a dementia diagnosis within five years");
    let full = metrics(&pkg);
    assert!(full.report.ici <= 0.02, "ICI {}", full.report.ici);
    assert_eq!(full.training.monotone, ["Age (risk never falls as it rises)"]);
    let deciles = full.report.subgroups.iter().filter(|g| g.variable.starts_with("Deprivation")).count();
    assert_eq!(deciles, 10, "IMD deciles from coded attributes");
    let bands: Vec<&str> = full
        .report
        .subgroups
        .iter()
        .filter(|g| g.variable.starts_with("Age band as dementia models report"))
        .map(|g| g.level.as_str())
        .collect();
    assert_eq!(bands, ["<60", "60 to <80", "≥80"], "the age bands published dementia models report");

    // Predicted risks against each held-out patient's true five-year risk.
    let truth: HashMap<i64, f64> =
        synth::population(PATIENTS, SEED).truth.iter().map(|t| (t.subject, t.dementia_risk_5y)).collect();
    let (store, _, _) = read_meds(&dir.join("meds")).unwrap();
    let spec: EventTaskSpec = toml::from_str(task).unwrap();
    let (labels, _) = label(&store, &spec).unwrap();
    let mut ws = Workspace::default();
    let gaps: Vec<f64> = set
        .data
        .test_rows
        .iter()
        .map(|&r| {
            let values: Vec<Value<'_>> = row_values(&set.data.columns, r).unwrap();
            let p = pkg.scorer.score(&values, &mut ws).unwrap().probability;
            (p - truth[&labels[r].subject]).abs()
        })
        .collect();
    let mean_gap = gaps.iter().sum::<f64>() / gaps.len() as f64;
    eprintln!(
        "synth_dementia_5y GBM: AUROC {:.3}, ICI {:.4}, mean |predicted - true risk| {mean_gap:.5}",
        report.test.auroc, full.report.ici
    );
    assert!(mean_gap <= 0.02, "mean |predicted - true| {mean_gap}");

    // The whole dataset scored at the index date as `carecast score --meds --at` does, a data
    // file at a time: everyone once, each cohort member's risk as scored from the training
    // set's own features for them, and the risks near the true ones.
    let at = chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
    let shards = Shards::open(&dir.join("meds"), &pkg, at, &[]).unwrap();
    assert_eq!((shards.len(), shards.rows()), (3, PATIENTS), "8,000 patients a file");
    let out = dir.join("dementia-scores.parquet");
    let audit = carecast_audit::AuditLog::open(&dir.join("dementia-audit.jsonl")).unwrap();
    let options = BatchOptions { key_column: Some(SUBJECT.into()), ..Default::default() };
    let hidden = indicatif::ProgressBar::hidden();
    let report =
        batch::score_source(&pkg, &shards, &out, &dir.join("dementia-errors.csv"), &options, &audit, &hidden).unwrap();
    assert_eq!((report.rows, report.scored + report.errors.len()), (PATIENTS, PATIENTS));
    assert_eq!(audit.entries().unwrap()[0].batch.as_ref().unwrap().input_sha256, shards.sha256());
    let scores = carecast_tables::read_table(&out).unwrap();
    let keys = carecast_tables::text_column(&scores, SUBJECT).unwrap();
    let probability = scores.column("probability").unwrap().f64().unwrap().clone();
    let scored: HashMap<i64, f64> =
        keys.iter().zip(probability.iter()).map(|(k, p)| (k.as_ref().unwrap().parse().unwrap(), p.unwrap())).collect();
    assert_eq!(scored.len(), report.scored, "each person once");
    let mut compared = 0;
    for (r, l) in labels.iter().enumerate() {
        let values: Vec<Value<'_>> = row_values(&set.data.columns, r).unwrap();
        let p = pkg.scorer.score(&values, &mut ws).unwrap().probability;
        assert!((scored[&l.subject] - p).abs() < 1e-12, "subject {}: {} against {p}", l.subject, scored[&l.subject]);
        compared += 1;
    }
    assert!(compared > 15_000);
    // Summarised by age band from the same files: everyone counted, and the expected cases the
    // sum of the risks just scored.
    let by_age = PopulationOptions {
        by: vec!["age=65,80".parse().unwrap()],
        outcome: None,
        key_column: Some(SUBJECT.into()),
        disclosure: Disclosure { suppress_up_to: 0, round_to: 1 },
        scenario: Vec::new(),
        audit_rows: false,
    };
    let summary = summarise_source(&pkg, &shards, &by_age).unwrap();
    let all = summary.groups.last().unwrap();
    assert_eq!(all.people, Some(PATIENTS as u64));
    assert_eq!(all.expected_cases, Some(scored.values().sum::<f64>().round()));
    assert_eq!(summary.groups.len(), 4, "three age bands and everyone");
    // By deprivation, a coded attribute rather than an input of the model: each decile's people
    // and expected cases as counted straight from the dataset's files and the scores above.
    let prefix = "IMD//DECILE_".to_string();
    let coded = Shards::open(&dir.join("meds"), &pkg, at, std::slice::from_ref(&prefix)).unwrap();
    let by_imd = PopulationOptions { by: vec![prefix.parse().unwrap()], ..by_age.clone() };
    let summary = summarise_source(&pkg, &coded, &by_imd).unwrap();
    let mut decile: HashMap<i64, String> = HashMap::new();
    for file in ["0.parquet", "1.parquet", "2.parquet"] {
        let events = carecast_tables::read_table(&dir.join("meds/data").join(file)).unwrap();
        let subjects = events.column("subject_id").unwrap().i64().unwrap().clone();
        let codes = events.column("code").unwrap().str().unwrap().clone();
        let times = events.column("time").unwrap().as_materialized_series().is_null();
        for ((s, c), untimed) in subjects.iter().zip(codes.iter()).zip(times.iter()) {
            if let (Some(s), Some(d), Some(true)) = (s, c.and_then(|c| c.strip_prefix(&prefix)), untimed) {
                decile.insert(s, d.to_string());
            }
        }
    }
    assert_eq!(summary.groups.len(), 11, "ten deciles and everyone");
    for group in &summary.groups[..10] {
        let members: Vec<&i64> = decile.iter().filter(|(_, d)| **d == group.group[0]).map(|(s, _)| s).collect();
        assert_eq!(group.people, Some(members.len() as u64), "decile {}", group.group[0]);
        let expected: f64 = members.iter().map(|s| scored[s]).sum();
        assert_eq!(group.expected_cases, Some(expected.round()), "decile {}", group.group[0]);
    }
    let err = Shards::open(&dir.join("meds"), &pkg, at, &["ETHNICITY//".into()]).err().unwrap().to_string();
    assert!(err.contains("`ETHNICITY//`: neither an input of model"), "{err}");
    // A subject in two data files would be scored from half their events: refused first.
    let split = dir.join("split-meds");
    std::fs::create_dir_all(split.join("data")).unwrap();
    for copy in ["0.parquet", "1.parquet"] {
        std::fs::copy(dir.join("meds/data/0.parquet"), split.join("data").join(copy)).unwrap();
    }
    let err = Shards::open(&split, &pkg, at, &[]).err().unwrap().to_string();
    assert!(err.contains("1.parquet holds a subject also in an earlier data file"), "{err}");

    // A task spec without risk bands cannot train a model, and says so.
    let no_bands = task.split("[risk_bands]").next().unwrap();
    let err = event_training_set(&dir.join("meds"), no_bands, features, Rows::TaskSplit).err().unwrap().to_string();
    assert!(err.contains("risk_bands"), "{err}");
    finished();
}

/// Death competes with dementia in the synthetic population (its true cumulative incidence is
/// written beside the data): the cause-specific hazard model recovers that incidence, while the
/// same model censoring at death overstates the risk of the oldest, who die before a diagnosis.
#[test]
fn the_competing_risks_hazard_recovers_the_true_cumulative_incidence() {
    let dir = population();
    let registry = registry("competing");
    let task = include_str!("../../tasks/synth_dementia_5y.toml");
    let features = include_str!("../../tasks/synth_dementia_features.toml");
    let truth: HashMap<i64, synth::Truth> =
        synth::population(PATIENTS, SEED).truth.into_iter().map(|t| (t.subject, t)).collect();
    let died = truth.values().filter(|t| t.died_within_5y && !t.dementia_within_5y).count();
    assert!(died > 1000, "{died} deaths before any dementia: enough to matter");

    // Death as a competing event (the bundled spec).
    let set = event_training_set(&dir.join("meds"), task, features, Rows::TaskSplit).unwrap();
    assert!(set.data.censored_rows.is_empty(), "no one is censored: a death is a non-case");
    let report = train_set(&set, &registry, Algorithm::Hazard, None).unwrap();
    let pkg = load_package(&registry.resolve(&report.name, None).unwrap().1).unwrap();
    assert_eq!(pkg.manifest.algorithm, "competing_risks_hazard");
    assert!(report.max_additivity_error <= 1e-9, "integrated gradients add up: {}", report.max_additivity_error);
    let full = metrics(&pkg);

    // The same hazard model censoring at death, as a task without competing codes defines it.
    let censoring = task.replace("competing_codes = [\"MEDS_DEATH\"]", "");
    let naive_set = event_training_set(&dir.join("meds"), &censoring, features, Rows::TaskSplit).unwrap();
    assert!(naive_set.data.censored_rows.len() > 500, "deaths censor follow-up");
    let naive = train_set(&naive_set, &registry, Algorithm::Hazard, Some("dementia-censoring-at-death")).unwrap();
    let naive_pkg = load_package(&registry.resolve(&naive.name, None).unwrap().1).unwrap();

    // Predicted risks on the held-out patients against each one's true cumulative incidence,
    // overall and at 80 and over.
    let (store, _, _) = read_meds(&dir.join("meds")).unwrap();
    let spec: EventTaskSpec = toml::from_str(task).unwrap();
    let (labels, _) = label(&store, &spec).unwrap();
    let age = set.features.iter().position(|f| f.name == "age").unwrap();
    let mut ws = Workspace::default();
    // Each held-out row's predicted incidence and follow-up.
    type Scored = (f64, (f64, Ending));
    let (mut gap, mut old, mut scored) = (0.0, [0.0; 4], Vec::<Scored>::new());
    for &r in &set.data.test_rows {
        let values: Vec<Value<'_>> = row_values(&set.data.columns, r).unwrap();
        let p = pkg.scorer.score(&values, &mut ws).unwrap().probability;
        scored.push((p, set.data.follow_up[r]));
        let q = naive_pkg.scorer.score(&values, &mut ws).unwrap().probability;
        let t = truth[&labels[r].subject];
        gap += (p - t.dementia_risk_5y).abs();
        if matches!(values[age], Value::Number(a) if a >= 80.0) {
            old = [old[0] + 1.0, old[1] + p, old[2] + q, old[3] + t.dementia_risk_5y];
        }
    }
    let mean_gap = gap / set.data.test_rows.len() as f64;
    let [n_old, p_old, q_old, t_old] = old.map(|x| x / old[0].max(1.0));
    eprintln!(
        "synth dementia, competing-risks hazard: AUROC {:.3}, ICI {:.4}, mean |predicted - true incidence| {mean_gap:.4}; \
         80 and over ({} patients): true incidence {t_old:.4}, competing-risks model {p_old:.4}, censoring at death {q_old:.4}",
        report.test.auroc, full.report.ici, old[0]
    );
    assert!(n_old == 1.0 && old[0] > 300.0);
    assert!(mean_gap <= 0.02, "mean |predicted - true| {mean_gap}");
    assert!(full.report.ici <= 0.02, "ICI {}", full.report.ici);
    assert!((p_old - t_old).abs() < 0.1 * t_old, "80+: {p_old} against the true {t_old}");
    assert!(q_old > 1.15 * t_old, "censoring at death overstates the oldest's risk: {q_old} against {t_old}");
    // Discrimination at each fifth of the horizon, by counting every pair: a case by then
    // against everyone without the outcome by then (deaths among them); at the horizon itself,
    // the report's AUROC.
    let by_time = &full.report.time_dependent_auroc;
    assert_eq!(by_time.len(), 5);
    for t in by_time {
        let case = |&(_, (time, ending)): &Scored| ending == Ending::Outcome && time <= t.at;
        let (cases, controls): (Vec<&Scored>, Vec<&Scored>) = scored.iter().partition(|s| case(s));
        let wins: f64 = cases
            .iter()
            .flat_map(|c| {
                controls.iter().map(move |n| {
                    if c.0 > n.0 {
                        1.0
                    } else if c.0 == n.0 {
                        0.5
                    } else {
                        0.0
                    }
                })
            })
            .sum();
        let counted = wins / (cases.len() * controls.len()) as f64;
        assert_eq!((t.cases as usize, t.controls as usize), (cases.len(), controls.len()));
        assert!((t.auroc.unwrap() - counted).abs() < 1e-12, "at {}: {:?} against {counted}", t.at, t.auroc);
    }
    assert!((by_time[4].auroc.unwrap() - full.report.metrics.auroc).abs() < 1e-12);
    assert!(by_time[0].cases < by_time[4].cases);
    // The card says how the competing event was handled.
    let card = std::fs::read_to_string(pkg.dir.join("model_card.md")).unwrap();
    assert!(card.contains("cumulative incidence") && card.contains("MEDS_DEATH"), "{card}");
    assert!(card.contains("| 20.0% of the horizon |"), "time-dependent AUROC on the card");
    finished();
}

#[test]
fn deterioration_gbm_beats_news2_and_scores_blocks_as_it_scores_rows() {
    let dir = population();
    let registry = registry("deterioration-gbm");
    let mut ws = Workspace::default();
    // Deterioration within 24 hours of each observation set, against NEWS2 on the same rows.
    let task = include_str!("../../tasks/synth_deterioration_24h.toml");
    let features = include_str!("../../tasks/synth_deterioration_features.toml");
    let set = event_training_set(&dir.join("meds"), task, features, Rows::TaskSplit).unwrap();
    let report = train_set(&set, &registry, Algorithm::Gbm, None).unwrap();
    let pkg = load_package(&registry.resolve("synth_deterioration_24h-gbm", None).unwrap().1).unwrap();
    let full = metrics(&pkg);
    let b = full.report.baseline.expect("NEWS2 baseline");
    eprintln!(
        "synth_deterioration_24h GBM: AUROC {:.3} vs NEWS2 {:.3}, difference {:+.3} ({:+.3} to {:+.3})",
        b.model_auroc, b.baseline_auroc, b.difference, b.difference_ci[0], b.difference_ci[1]
    );
    assert_eq!(b.baseline, "news2");
    assert!((b.model_auroc - report.test.auroc).abs() < 1e-12, "same rows");
    assert!(b.difference_ci[0] > 0.0, "the model beats NEWS2: {b:?}");
    // Scored as a block (the trees' block paths) or one by one, the same scores.
    let rows: Vec<Vec<Value<'_>>> =
        set.data.test_rows.iter().take(300).map(|&r| row_values(&set.data.columns, r).unwrap()).collect();
    let refs: Vec<&[Value<'_>]> = rows.iter().map(Vec::as_slice).collect();
    for (block, row) in pkg.scorer.score_rows(&refs, &mut ws).into_iter().zip(&rows) {
        let (block, single) = (block.unwrap(), pkg.scorer.score(row, &mut Workspace::default()).unwrap());
        assert!((block.margin - single.margin).abs() < 1e-12);
        assert!(block.contributions.iter().zip(&single.contributions).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    finished();
}

#[test]
fn deterioration_gru_over_observation_sets_beats_news2_and_is_explained_by_factor() {
    let dir = population();
    let registry = registry("deterioration-gru");
    let mut ws = Workspace::default();
    let task = include_str!("../../tasks/synth_deterioration_24h.toml");
    // A GRU over the last six observation sets (with age, NEWS2 and time since admission beside
    // them), against NEWS2 on the same rows; its integrated gradients add up.
    let sequence = include_str!("../../tasks/synth_deterioration_sequence_features.toml");
    let set = event_training_set(&dir.join("meds"), task, sequence, Rows::TaskSplit).unwrap();
    let report = train_set(&set, &registry, Algorithm::Gru, None).unwrap();
    let pkg = load_package(&registry.resolve("synth_deterioration_24h-gru", None).unwrap().1).unwrap();
    let full = metrics(&pkg);
    let b = full.report.baseline.expect("NEWS2 baseline");
    eprintln!(
        "synth_deterioration_24h GRU: AUROC {:.3} vs NEWS2 {:.3}, difference {:+.3} ({:+.3} to {:+.3}); slope {:.2}; max completeness error {:.1e}",
        b.model_auroc,
        b.baseline_auroc,
        b.difference,
        b.difference_ci[0],
        b.difference_ci[1],
        report.test.calibration_slope,
        report.max_additivity_error
    );
    assert!(b.difference_ci[0] > 0.0, "the GRU beats NEWS2: {b:?}");
    assert!(
        report.max_additivity_error <= carecast_models::gru::COMPLETENESS,
        "completeness error {}",
        report.max_additivity_error
    );
    // Explained as clinical factors: each vital sign's six readings are one factor.
    let factors = pkg.scorer.factors();
    assert_eq!(factors.names.len(), 3 + 8);
    let sbp = factors.names.iter().position(|n| n == "Systolic BP").unwrap();
    assert_eq!(factors.members[sbp].len(), 6);
    let specs: Vec<_> = pkg.scorer.preprocessor().features.iter().map(|f| &f.spec).collect();
    let values = row_values(&set.data.columns, set.data.test_rows[0]).unwrap();
    let score = pkg.scorer.score(&values, &mut ws).unwrap();
    assert!((score.factors.iter().sum::<f64>() - score.contributions.iter().sum::<f64>()).abs() < 1e-12);
    let reason = factors.reason(sbp, &specs, &values, score.factors[sbp]);
    assert!(
        reason.starts_with("Systolic BP (latest set) ") && reason.contains("mmHg and 5 related inputs: "),
        "{reason}"
    );
    finished();
}

/// Seeded: the same training twice gives a byte-identical GRU. Checked on a population of its
/// own, a tenth the size of the shared one, so that the two fits take seconds rather than minutes
/// (reproducibility is a property of the seeding, not of the number of rows).
#[test]
fn the_gru_trained_twice_is_byte_identical() {
    let dir = std::env::temp_dir().join(format!("carecast-gru-twice-{}", std::process::id()));
    synth::write_population(PATIENTS / 10, SEED, 8_000, &dir.join("meds"), &indicatif::ProgressBar::hidden()).unwrap();
    let task = include_str!("../../tasks/synth_deterioration_24h.toml");
    let sequence = include_str!("../../tasks/synth_deterioration_sequence_features.toml");
    let set = event_training_set(&dir.join("meds"), task, sequence, Rows::TaskSplit).unwrap();
    let model = |name: &str| {
        let registry = Registry::new(dir.join(name));
        train_set(&set, &registry, Algorithm::Gru, None).unwrap();
        std::fs::read(registry.resolve("synth_deterioration_24h-gru", None).unwrap().1.join("model.json")).unwrap()
    };
    assert!(model("first") == model("again"), "the GRU trained twice differs");
    std::fs::remove_dir_all(&dir).unwrap();
}
