//! Batch scoring on real rows: bad rows are reported with row number, field and reason, every
//! other row is scored, and the Parquet output equals the in-process scorer. Population
//! summaries of the whole SUPPORT table equal the groups counted here from the raw file, and
//! every published count passes disclosure control.

use crate::trained;
use carecast_audit::AuditLog;
use carecast_models::Workspace;
use carecast_tables::batch::{self, BatchOptions};
use carecast_tables::chunks::{Chunks, Source};
use carecast_tables::disclosure::Disclosure;
use carecast_tables::population::{Change, PopulationError, PopulationOptions, summarise};
use carecast_tables::{feature_columns, read_table, row_values};
use carecast_training::Algorithm;
use indicatif::ProgressBar;
use polars::prelude::DataType;
use std::path::PathBuf;

#[test]
fn bad_rows_are_reported_and_the_rest_scored() {
    let (shared, dir, pkg) = trained("batch", Algorithm::Gbm);

    // The first 60 rows of the real file, with three cells damaged in three different ways.
    let text = std::fs::read_to_string(&shared).unwrap();
    let mut lines: Vec<String> = text.lines().take(61).map(str::to_string).collect();
    let header_line = lines[0].clone();
    let header: Vec<&str> = header_line.split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (hrt, sex, sno, temp) = (col("hrt"), col("sex"), col("sno"), col("temp"));
    let damage = |lines: &mut Vec<String>, row: usize, c: usize, value: &str| {
        let mut cells: Vec<String> = lines[row].split(',').map(str::to_string).collect();
        cells[c] = value.to_string();
        lines[row] = cells.join(",");
    };
    for (row, c, value) in [(3, hrt, "fast"), (5, sex, "unknown"), (9, temp, "inf")] {
        damage(&mut lines, row, c, value);
    }
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.csv");
    std::fs::write(&input, lines.join("\n")).unwrap();

    let output = dir.join("scores.parquet");
    let errors = dir.join("scores.errors.csv");
    let audit = AuditLog::open(&dir.join("audit.jsonl")).unwrap();
    // Chunks of 4 rows: the damaged rows fall in three different chunks, and rows are numbered
    // in the whole file.
    let options = BatchOptions { key_column: Some("sno".into()), top: 3, rows_per_chunk: 4, ..Default::default() };
    let hidden = ProgressBar::hidden();
    let score = |input: &std::path::Path, output: &std::path::Path, options: &BatchOptions| {
        batch::score_table(&pkg, input, output, &errors, options, &audit, &hidden)
    };
    let result = score(&input, &output, &options).unwrap();
    assert_eq!((result.rows, result.scored, result.chunks, result.resumed), (60, 57, 15, 0));
    assert_eq!(hidden.position(), 60, "progress counts every row");
    let refused: Vec<(usize, &str)> = result.errors.iter().map(|e| (e.row, e.field.as_str())).collect();
    assert_eq!(refused, [(3, "hrt"), (5, "sex"), (9, "temp")]);
    assert_eq!(std::fs::read_to_string(&errors).unwrap().lines().count(), 4);
    // The run is audited once: what went in and came out, by SHA-256, and the counts.
    let entries = audit.entries().unwrap();
    assert_eq!(entries.len(), 1);
    let run = entries[0].batch.as_ref().unwrap();
    let sha = |p: &std::path::Path| carecast_models::package::sha256_hex(&std::fs::read(p).unwrap());
    assert_eq!((run.rows, run.scored, run.refused), (60, 57, 3));
    assert_eq!((run.input_sha256.as_str(), run.output_sha256.as_str()), (sha(&input).as_str(), sha(&output).as_str()));
    assert_eq!((entries[0].caller.as_str(), entries[0].patient_key.as_str()), ("batch", ""));
    assert!(batch::interrupted(&output).is_none(), "the parts go once the output is in place");
    // With a record per row as well, by flag.
    let per_row = dir.join("per_row.parquet");
    score(&input, &per_row, &BatchOptions { audit_rows: true, ..options.clone() }).unwrap();
    let entries = audit.entries().unwrap();
    assert_eq!(entries.len(), 1 + 57 + 1);
    let keys: Vec<&str> = entries[1..58].iter().map(|e| e.patient_key.as_str()).collect();
    assert!(keys.iter().all(|k| !k.is_empty()) && keys.contains(&"1") && !keys.contains(&"3"), "{keys:?}");
    assert!(entries[58].batch.is_some());
    assert_eq!(audit.verify().unwrap().batch_runs, 2);

    // The output equals scoring the same rows in process.
    let out = read_table(&output).unwrap();
    assert_eq!(out.height(), 57);
    let rows: Vec<u64> = out.column("row").unwrap().u64().unwrap().iter().map(Option::unwrap).collect();
    let probs: Vec<f64> = out.column("probability").unwrap().f64().unwrap().iter().map(Option::unwrap).collect();
    let df = read_table(&input).unwrap();
    let cols = feature_columns(&df, &pkg.manifest.features).unwrap();
    let mut ws = Workspace::default();
    for (row, p) in rows.iter().zip(&probs) {
        let want = pkg.scorer.score(&row_values(&cols, *row as usize - 1).unwrap(), &mut ws).unwrap();
        assert!((want.probability - p).abs() <= 1e-12);
    }
    let top: Vec<Option<&str>> = out.column("factor_1_explanation").unwrap().str().unwrap().iter().take(2).collect();
    assert!(top.iter().all(|t| t.is_some_and(|t| t.contains("risk"))));

    // Parquet input gives the same scores as the CSV it was written from.
    let parquet_in = dir.join("input.parquet");
    polars::prelude::ParquetWriter::new(std::fs::File::create(&parquet_in).unwrap())
        .finish(&mut read_table(&input).unwrap())
        .unwrap();
    let from_parquet = dir.join("from_parquet.parquet");
    let again = score(&parquet_in, &from_parquet, &options).unwrap();
    assert_eq!((again.scored, again.errors.len()), (57, 3));
    let probs_again: Vec<f64> = read_table(&from_parquet)
        .unwrap()
        .column("probability")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(probs_again, probs);

    // A key that looks like an NHS number is refused with the whole file, before anything is
    // scored: a file holding identifiers must be fixed at source.
    let mut identified = lines.clone();
    damage(&mut identified, 7, sno, "9434765919");
    let identified_path = dir.join("identified.csv");
    std::fs::write(&identified_path, identified.join("\n")).unwrap();
    let before = audit.verify().unwrap().records;
    let err = score(&identified_path, &output, &options).unwrap_err().to_string();
    assert!(
        err.contains("column `sno`")
            && err.contains("NHS numbers")
            && err.contains("row 7")
            && !err.contains("9434765919"),
        "{err}"
    );
    assert_eq!(audit.verify().unwrap().records, before, "nothing audited");
    assert!(batch::interrupted(&output).is_none(), "a refused table leaves nothing to resume");
    // The same number as a float (what a table tool writes when the column has a gap).
    let mut floated = lines.clone();
    damage(&mut floated, 7, sno, "9434765919.0");
    std::fs::write(&identified_path, floated.join("\n")).unwrap();
    let err = score(&identified_path, &output, &options).unwrap_err().to_string();
    assert!(err.contains("column `sno`") && err.contains("NHS numbers") && !err.contains("9434765919"), "{err}");

    // Outputs appear whole and only after the audit: a missing output folder fails before
    // anything is audited, and a clean run removes the error file an earlier run left.
    let before = audit.verify().unwrap().records;
    let nowhere = dir.join("no_such_folder").join("scores.parquet");
    assert!(score(&input, &nowhere, &options).is_err());
    assert_eq!(audit.verify().unwrap().records, before, "no audit records for scores nobody received");
    assert!(errors.exists());
    let clean = dir.join("clean.csv");
    std::fs::write(&clean, text.lines().take(61).collect::<Vec<_>>().join("\n")).unwrap();
    let ok = score(&clean, &output, &options).unwrap();
    assert!(ok.errors.is_empty() && ok.scored == 60 && !errors.exists());
    assert_eq!(audit.verify().unwrap().records, before + 1);
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".partial")));

    // A table without a column the model needs is refused whole, naming the column.
    let no_meanbp = dir.join("no_meanbp.csv");
    let keep: Vec<usize> = (0..header.len()).filter(|&i| header[i] != "meanbp").collect();
    let cut: Vec<String> = lines
        .iter()
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            keep.iter().map(|&i| c[i]).collect::<Vec<_>>().join(",")
        })
        .collect();
    std::fs::write(&no_meanbp, cut.join("\n")).unwrap();
    let err = score(&no_meanbp, &output, &options).unwrap_err().to_string();
    assert!(err.contains("meanbp"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every row of `path` read a chunk at a time, stacked.
fn read_chunked(path: &std::path::Path, rows: usize) -> polars::prelude::DataFrame {
    let chunks = Chunks::open(path, rows).unwrap();
    let mut frames = (0..chunks.len()).map(|i| chunks.read(i).unwrap().df);
    let mut all = frames.next().unwrap();
    for df in frames {
        all.vstack_mut(&df).unwrap();
    }
    assert_eq!(all.height(), chunks.rows());
    all
}

#[test]
fn tables_read_in_chunks_read_as_whole_tables_do() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let dir = std::env::temp_dir().join(format!("carecast-chunks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The shared tables, CSV and Parquet (written in row groups of 1,000), in chunks of 700:
    // the same columns, types and values as polars' whole-file read.
    for name in ["support2.csv", "pbc2.csv"] {
        let csv = shared.join(name);
        let whole = read_table(&csv).unwrap();
        assert!(read_chunked(&csv, 700).equals_missing(&whole), "{name}");
        let parquet = dir.join(name.replace(".csv", ".parquet"));
        polars::prelude::ParquetWriter::new(std::fs::File::create(&parquet).unwrap())
            .with_row_group_size(Some(1000))
            .finish(&mut whole.clone())
            .unwrap();
        assert!(read_chunked(&parquet, 700).equals_missing(&whole), "{name} as Parquet");
    }
    // Columns whose type only a later chunk reveals: a code that reads as a number until `x9`
    // (so `01` stays `01`, as training read it), an integer until `2.5`, a column empty in the
    // first chunks, a boolean until `maybe`, and a quoted field with a line break and quotes.
    let mut text = String::from("code,dose,late,flag,note\n");
    for i in 0..10 {
        text.push_str(&format!("{},{i},,true,\"line\nbreak \"\"{i}\"\"\"\n", ["01", "1", "2"][i % 3]));
    }
    text.push_str("x9,2.5,7,maybe,NA\n3,4,,false,\n");
    let odd = dir.join("odd.csv");
    std::fs::write(&odd, &text).unwrap();
    let whole = read_table(&odd).unwrap();
    assert_eq!(
        whole.dtypes(),
        [DataType::String, DataType::Float64, DataType::Int64, DataType::String, DataType::String],
        "the whole file's types, as polars infers them"
    );
    for rows in [1, 3, 10, 11, 100] {
        assert!(read_chunked(&odd, rows).equals_missing(&whole), "chunks of {rows}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_interrupted_run_resumes_from_its_last_complete_chunk() {
    let (shared, dir, pkg) = trained("resume", Algorithm::Logistic);
    std::fs::create_dir_all(&dir).unwrap();
    // The whole file with one row damaged, so that a refusal is carried across the interruption.
    let text = std::fs::read_to_string(&shared).unwrap();
    let input = dir.join("register.csv");
    std::fs::write(&input, text.replacen("\n1,train,62.84998,", "\n1,train,old,", 1)).unwrap();
    let audit = AuditLog::open(&dir.join("audit.jsonl")).unwrap();
    let hidden = ProgressBar::hidden();
    let options = BatchOptions { key_column: Some("sno".into()), top: 3, rows_per_chunk: 1000, ..Default::default() };
    let run = |output: &std::path::Path, errors: &std::path::Path, options: &BatchOptions| {
        batch::score_table(&pkg, &input, output, errors, options, &audit, &hidden)
    };
    let (reference, reference_errors) = (dir.join("reference.parquet"), dir.join("reference.errors.csv"));
    let uninterrupted = run(&reference, &reference_errors, &options).unwrap();
    assert_eq!((uninterrupted.chunks, uninterrupted.errors.len()), (10, 1));

    // A run that fails at its last step (its error file's folder is missing) keeps its chunks,
    // publishes nothing and audits nothing. Chunks 4 to 9 are then removed, leaving what a run
    // killed after its fourth chunk leaves.
    let (output, errors) = (dir.join("scores.parquet"), dir.join("scores.errors.csv"));
    let before = audit.verify().unwrap().records;
    assert!(run(&output, &dir.join("missing/errors.csv"), &options).is_err());
    assert_eq!(audit.verify().unwrap().records, before);
    assert!(!output.exists());
    let parts = batch::interrupted(&output).expect("the complete chunks are kept");
    for entry in std::fs::read_dir(&parts).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".parquet") && name[..6].parse::<usize>().unwrap() >= 4 {
            std::fs::remove_file(parts.join(name)).unwrap();
        }
    }

    // Not continued unless asked, nor for a different run; then continued from chunk 4.
    let err = run(&output, &errors, &options).unwrap_err().to_string();
    assert!(err.contains("left 4 complete chunk(s)") && err.contains("--resume"), "{err}");
    let resume = BatchOptions { resume: true, ..options.clone() };
    let err = run(&output, &errors, &BatchOptions { top: 2, ..resume.clone() }).unwrap_err().to_string();
    assert!(err.contains("differs in `top`"), "{err}");
    let resumed = run(&output, &errors, &resume).unwrap();
    assert_eq!((resumed.resumed, resumed.chunks, resumed.scored), (4, 10, 9104));
    assert!(read_table(&output).unwrap().equals_missing(&read_table(&reference).unwrap()));
    assert_eq!(std::fs::read(&errors).unwrap(), std::fs::read(&reference_errors).unwrap());
    assert!(batch::interrupted(&output).is_none());
    assert_eq!(audit.verify().unwrap().records, before + 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn population_summaries_count_what_the_file_holds_and_suppress_small_numbers() {
    let (shared, dir, pkg) = trained("population", Algorithm::Logistic);

    // The whole file, with one row's heart rate damaged: it is counted, not scored.
    let text = std::fs::read_to_string(&shared).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header: Vec<String> = lines[0].split(',').map(str::to_string).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut cells: Vec<String> = lines[40].split(',').map(str::to_string).collect();
    cells[col("hrt")] = "fast".into();
    lines[40] = cells.join(",");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("register.csv");
    std::fs::write(&input, lines.join("\n")).unwrap();

    // Counted here from the raw text: people, deaths and the sum of risks by disease group and
    // age band, the risks from scoring each row alone.
    let df = read_table(&input).unwrap();
    let features = feature_columns(&df, &pkg.manifest.features).unwrap();
    let mut ws = Workspace::default();
    let mut truth: std::collections::BTreeMap<(String, &str), (u64, u64, f64, u64)> = Default::default();
    let mut base = f64::NAN;
    let mut tenths = [0u64; 10];
    for (r, line) in lines[1..].iter().enumerate() {
        let c: Vec<&str> = line.split(',').collect();
        let age: f64 = c[col("age")].parse().unwrap();
        let band = if age < 65.0 {
            "under 65"
        } else if age < 80.0 {
            "65 to under 80"
        } else {
            "80 and over"
        };
        let t = truth.entry((c[col("dzgroup")].to_string(), band)).or_default();
        t.0 += 1;
        t.1 += u64::from(c[col("hospdead")] == "1");
        match row_values(&features, r).map(|v| pkg.scorer.score(&v, &mut ws)) {
            Ok(Ok(score)) => {
                t.2 += score.probability;
                base = score.base_value;
                tenths[((score.probability * 10.0).floor() as usize).min(9)] += 1;
            }
            _ => t.3 += 1,
        }
    }

    let audit = AuditLog::open(&dir.join("audit.jsonl")).unwrap();
    let by = vec!["dzgroup".parse().unwrap(), "age=65,80".parse().unwrap()];
    let options = |disclosure| PopulationOptions {
        by: by.clone(),
        outcome: Some("hospdead".into()),
        key_column: Some("sno".into()),
        disclosure,
        scenario: Vec::new(),
        audit_rows: false,
    };
    // Unprotected (a rule of no suppression and no rounding), the summary is the count.
    let open = Disclosure { suppress_up_to: 0, round_to: 1 };
    let summary = summarise(&pkg, &input, &options(open)).unwrap();
    assert_eq!(summary.not_scored, 1);
    assert_eq!(summary.groups.len(), truth.len() + 1);
    for g in &summary.groups[..truth.len()] {
        let t = truth[&(g.group[0].clone(), g.group[1].as_str())];
        assert_eq!(g.people, Some(t.0), "{:?}", g.group);
        assert_eq!(g.observed_cases, Some(t.1), "{:?}", g.group);
        assert_eq!(g.not_scored, Some(t.3), "{:?}", g.group);
        assert_eq!(g.expected_cases, Some(t.2.round()), "{:?}", g.group);
        let (lower, upper) = g.expected_interval.unwrap();
        assert!(lower as f64 <= t.2 && t.2 <= upper as f64);
        assert_eq!(g.bands.iter().map(|b| b.unwrap()).sum::<u64>() + t.3, t.0);
        // The factors' burdens add up to the mean risk less the baseline risk.
        let mean = t.2 / (t.0 - t.3) as f64;
        let baseline = carecast_models::scorer::sigmoid(base);
        // Each of the 32 burdens is published to 4 decimal places.
        assert!((g.burden.as_ref().unwrap().iter().sum::<f64>() - (mean - baseline)).abs() < 32.0 * 0.5e-4);
    }
    let all = summary.groups.last().unwrap();
    assert_eq!((all.group.clone(), all.people), (vec!["(all)".to_string(); 2], Some(9105)));
    assert_eq!(summary.distribution, tenths.map(Some).to_vec(), "people per tenth of risk");

    // Under the default rule: counts of 1-7 never published, every count a multiple of 5.
    let protected = summarise(&pkg, &input, &options(Disclosure::default())).unwrap();
    let mut suppressed = 0;
    for (g, open) in protected.groups.iter().zip(&summary.groups) {
        let pairs = [(g.people, open.people), (g.observed_cases, open.observed_cases)]
            .into_iter()
            .chain(g.bands.iter().copied().zip(open.bands.iter().copied()));
        for (published, count) in pairs {
            let count = count.unwrap();
            match published {
                Some(p) => assert!(p % 5 == 0 && p.abs_diff(count) <= 2 && !(1..=7).contains(&count)),
                None => suppressed += 1,
            }
        }
        if g.people.is_none() {
            assert!(g.expected_cases.is_none() && g.burden.is_none(), "a suppressed group shows nothing");
        }
    }
    assert!(suppressed > 0, "SUPPORT has small cells by disease group and age band");
    for (published, count) in protected.distribution.iter().zip(tenths) {
        assert!(published.is_none_or(|p| p % 5 == 0 && p.abs_diff(count) <= 2 && !(1..=7).contains(&count)));
    }
    // Published: the scores are audited, then the four files (the report too) appear.
    assert!(protected.publish(&dir.join("nowhere/summary"), &pkg, &audit).is_err());
    assert_eq!(audit.verify().unwrap().records, 0, "nothing audited for a summary nobody received");
    let protected =
        summarise(&pkg, &input, &PopulationOptions { audit_rows: true, ..options(Disclosure::default()) }).unwrap();
    protected.publish(&dir.join("summary"), &pkg, &audit).unwrap();
    let entries = audit.entries().unwrap();
    assert_eq!(entries.len(), 9104 + 1, "every score audited, and the run");
    let run = entries.last().unwrap().batch.clone().unwrap();
    assert_eq!((run.rows, run.scored, run.refused), (9105, 9104, 1));
    assert_eq!(
        run.output_sha256,
        carecast_models::package::sha256_hex(&std::fs::read(dir.join("summary.parquet")).unwrap())
    );
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert!(csv.starts_with("dzgroup,age,people,") && !csv.contains(",sno"), "no key column in a summary");
    let about = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    assert!(about.contains("not a causal effect"));
    assert!(
        std::fs::read_to_string(dir.join("summary.html")).unwrap().contains("Disclosure control: counts of 1 to 7")
    );

    // Refused before any row is scored, naming the column: an unknown grouping, the key, a
    // grouping as fine as a key, and outcomes that are not outcomes.
    let before = audit.verify().unwrap().records;
    let refuse = |by: &str, outcome: &str, key: Option<&str>| {
        let o = PopulationOptions {
            by: vec![by.parse().unwrap()],
            outcome: Some(outcome.into()),
            key_column: key.map(str::to_string),
            disclosure: Disclosure::default(),
            scenario: Vec::new(),
            audit_rows: false,
        };
        summarise(&pkg, &input, &o).map(drop).unwrap_err()
    };
    for (by, outcome, key, expected) in [
        ("locality", "hospdead", Some("sno"), "--by `locality`: absent from the input"),
        ("sno", "hospdead", Some("sno"), "--by `sno`: is the patient key"),
        ("sno", "hospdead", None, "--by `sno`: has more than 1000 distinct values"),
        ("dzgroup=1,2", "hospdead", None, "--by `dzgroup`: cut points need a numeric column"),
        ("dzgroup", "dzclass", None, "--outcome `dzclass`: row 1: expected 1 or 0"),
    ] {
        let err = refuse(by, outcome, key);
        assert!(matches!(err, PopulationError::Grouping { .. } | PopulationError::Outcome { .. }), "{err}");
        assert!(err.to_string().starts_with(expected), "{err}");
    }
    // A scenario (mean blood pressure at least 70, no one diabetic) re-scores everyone: each
    // group's expected cases equal the sum of risks of its rows scored here with the values
    // changed by hand.
    let scenario: Vec<Change> = vec!["meanbp>=70".parse().unwrap(), "diabetes=0".parse().unwrap()];
    let by_disease = PopulationOptions { by: vec!["dzgroup".parse().unwrap()], scenario, ..options(open) };
    let what_if = summarise(&pkg, &input, &by_disease).unwrap();
    let place = |name: &str| pkg.manifest.features.iter().position(|f| f.name == name).unwrap();
    let (meanbp, diabetes) = (place("meanbp"), place("diabetes"));
    let mut by_hand: std::collections::BTreeMap<&str, f64> = Default::default();
    for (r, line) in lines[1..].iter().enumerate() {
        let Ok(mut values) = row_values(&features, r) else { continue };
        if let carecast_models::Value::Number(x) = values[meanbp] {
            values[meanbp] = carecast_models::Value::Number(x.max(70.0));
        }
        values[diabetes] = carecast_models::Value::Number(0.0);
        let group = line.split(',').nth(col("dzgroup")).unwrap();
        *by_hand.entry(group).or_default() += pkg.scorer.score(&values, &mut ws).unwrap().probability;
    }
    assert_eq!(what_if.scenario, ["meanbp at least 70", "diabetes set to 0"]);
    for g in &what_if.groups[..by_hand.len()] {
        assert_eq!(g.scenario_cases, Some(by_hand[g.group[0].as_str()].round()), "{:?}", g.group);
    }
    let all = what_if.groups.last().unwrap();
    // Which way it moves is the model's association, whatever the clinical intuition (here more
    // deaths, not fewer): what is checked is that the change was made.
    assert_ne!(all.scenario_cases, all.expected_cases, "{all:?}");
    // A scenario the model cannot score is refused before anything is scored, naming the input.
    for (change, expected) in [
        ("smoking=no", "--scenario `smoking`: not an input of this model"),
        ("meanbp<=900", "--scenario `meanbp`: outside the possible range 0 to 250"),
        ("dzgroup=Flu", "--scenario `dzgroup`: not a category the model knows"),
        ("dzgroup<=3", "--scenario `dzgroup`: a cap needs a numeric input"),
        ("meanbp<=high", "--scenario `meanbp`: a cap needs a number"),
    ] {
        let err = change
            .parse::<Change>()
            .and_then(|c| summarise(&pkg, &input, &PopulationOptions { scenario: vec![c], ..options(open) }))
            .map(drop)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(expected), "{err}");
    }
    // Crossed, two columns may not split the register into groups of about one person each.
    let fine = PopulationOptions {
        by: vec!["meanbp".parse().unwrap(), "hrt".parse().unwrap()],
        ..options(Disclosure::default())
    };
    let err = summarise(&pkg, &input, &fine).map(drop).unwrap_err().to_string();
    assert!(err.starts_with("--by `meanbp` by `hrt`: make ") && err.contains("groups of 9105 rows"), "{err}");
    assert_eq!(audit.verify().unwrap().records, before, "nothing scored");
    // The summary's own outputs hold no exact count the table suppresses.
    let about: serde_json::Value = serde_json::from_str(&about).unwrap();
    assert!(about["not_scored"].is_null(), "one row not scored is a small count: {about}");
    std::fs::remove_dir_all(&dir).unwrap();
}
