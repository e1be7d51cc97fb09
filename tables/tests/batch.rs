//! Batch scoring on real rows: bad rows are reported with row number, field and reason, every
//! other row is scored, and the Parquet output equals the in-process scorer.

use carecast_audit::AuditLog;
use carecast_models::{Registry, Workspace, load_package};
use carecast_tables::batch;
use carecast_tables::{feature_columns, read_table, row_values};
use carecast_training::{Algorithm, TaskSpec, train};
use std::path::PathBuf;

#[test]
fn bad_rows_are_reported_and_the_rest_scored() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv");
    let dir = std::env::temp_dir().join(format!("carecast-batch-{}", std::process::id()));
    let registry = Registry::new(dir.join("registry"));
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    let report = train(&task, &toml, &shared, &registry, Algorithm::Gbm, None).unwrap();
    let pkg = load_package(&registry.resolve(&report.name, None).unwrap().1).unwrap();

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
    let result = batch::score_table(&pkg, &input, &output, &errors, Some("sno"), 3, &audit).unwrap();
    assert_eq!((result.rows, result.scored), (60, 57));
    let refused: Vec<(usize, &str)> = result.errors.iter().map(|e| (e.row, e.field.as_str())).collect();
    assert_eq!(refused, [(3, "hrt"), (5, "sex"), (9, "temp")]);
    assert_eq!(std::fs::read_to_string(&errors).unwrap().lines().count(), 4);
    assert_eq!(audit.entries().unwrap().len(), 57);

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
    let again = batch::score_table(&pkg, &parquet_in, &from_parquet, &errors, Some("sno"), 3, &audit).unwrap();
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
    let err =
        batch::score_table(&pkg, &identified_path, &output, &errors, Some("sno"), 3, &audit).unwrap_err().to_string();
    assert!(
        err.contains("column `sno`")
            && err.contains("NHS numbers")
            && err.contains("row 7")
            && !err.contains("9434765919"),
        "{err}"
    );
    assert_eq!(audit.verify().unwrap().records, 57 * 2, "nothing scored or audited");
    // The same number as a float (what a table tool writes when the column has a gap).
    let mut floated = lines.clone();
    damage(&mut floated, 7, sno, "9434765919.0");
    std::fs::write(&identified_path, floated.join("\n")).unwrap();
    let err =
        batch::score_table(&pkg, &identified_path, &output, &errors, Some("sno"), 3, &audit).unwrap_err().to_string();
    assert!(err.contains("column `sno`") && err.contains("NHS numbers") && !err.contains("9434765919"), "{err}");

    // Outputs appear whole and only after the audit: a missing output folder fails before
    // anything is audited, and a clean run removes the error file an earlier run left.
    let before = audit.verify().unwrap().records;
    let nowhere = dir.join("no_such_folder").join("scores.parquet");
    assert!(batch::score_table(&pkg, &input, &nowhere, &errors, Some("sno"), 3, &audit).is_err());
    assert_eq!(audit.verify().unwrap().records, before, "no audit records for scores nobody received");
    assert!(errors.exists());
    let clean = dir.join("clean.csv");
    std::fs::write(&clean, text.lines().take(61).collect::<Vec<_>>().join("\n")).unwrap();
    let ok = batch::score_table(&pkg, &clean, &output, &errors, Some("sno"), 3, &audit).unwrap();
    assert!(ok.errors.is_empty() && ok.scored == 60 && !errors.exists());
    assert_eq!(audit.verify().unwrap().records, before + 60);
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
    let err = batch::score_table(&pkg, &no_meanbp, &output, &errors, Some("sno"), 3, &audit).unwrap_err().to_string();
    assert!(err.contains("meanbp"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
