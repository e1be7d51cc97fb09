//! The de-identification guard on real data: the shared data sets pass, and a copy with direct
//! identifiers added is refused, each column named with its first row, and no value repeated.

use carecast_tables::read_table;
use std::path::PathBuf;

fn shared(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(file)
}

/// A valid NHS number from nine digits (modulus 11; check digit 10 is never issued; none starts
/// with 0).
fn nhs_number(seed: u64) -> Option<String> {
    let d: Vec<u64> = (0..9).map(|i| (seed / 10u64.pow(i)) % 10).collect();
    if d[0] == 0 {
        return None;
    }
    let sum: u64 = d.iter().zip((2..=10).rev()).map(|(a, w)| a * w).sum();
    let check = (11 - sum % 11) % 11;
    (check != 10).then(|| format!("{}{check}", d.iter().map(u64::to_string).collect::<String>()))
}

#[test]
fn shared_data_passes_the_guard() {
    for f in ["support2.csv", "pbc2.csv"] {
        read_table(&shared(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

#[test]
fn identifiers_are_refused_with_column_and_row() {
    let text = std::fs::read_to_string(shared("support2.csv")).unwrap();
    let lines: Vec<&str> = text.lines().take(201).collect();
    let nhs: Vec<String> = (123_456_789u64..).step_by(7919).filter_map(nhs_number).take(200).collect();
    let mut out = vec![format!("{},ref,contact,home,birth_date,carer,tel,study_id,dob_month", lines[0])];
    let names = ["Margaret Jones", "John Smith", "Priya Patel", "Mary O'Brien"];
    for (i, l) in lines[1..].iter().enumerate() {
        // Identifiers appear from data row 3 on; rows 1-2 are clean, so the report's row is checkable.
        let (nhs, email, post, dob, name, tel) = if i >= 2 {
            (
                nhs[i].clone(),
                format!("p{i}@example.org"),
                "SW1A 1AA".to_string(),
                "1950-03-12".to_string(),
                names[i % 4].to_string(),
                "020 7946 0958".to_string(),
            )
        } else {
            Default::default()
        };
        let study_id = 1_000_000_000u64 + i as u64 * 7_777; // 10-digit ids that are not NHS numbers
        out.push(format!("{l},{nhs},{email},{post},{dob},{name},{tel},{study_id},1950-03"));
    }
    let dir = std::env::temp_dir().join(format!("carecast-deid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("identified.csv");
    std::fs::write(&path, out.join("\n")).unwrap();

    let err = read_table(&path).unwrap_err().to_string();
    for expected in [
        "column `ref`: 198 values look like NHS numbers (first at row 3)",
        "column `contact`: 198 values look like e-mail addresses (first at row 3)",
        "column `home`: 198 values look like full postcodes",
        "column `birth_date`: 198 values look like full dates of birth",
        "column `carer`: 198 values look like people's names",
        "column `tel`: 198 values look like telephone numbers",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    assert!(!err.contains("study_id") && !err.contains("dob_month"), "false positive:\n{err}");
    for value in ["example.org", "SW1A", "Margaret", "7946", &nhs[5]] {
        assert!(!err.contains(value), "the report repeats a value: {value}");
    }

    // A column whose name says it holds names is refused whatever it holds.
    let named = dir.join("named.csv");
    std::fs::write(&named, "patient_name,age\nx,50\n").unwrap();
    assert!(read_table(&named).unwrap_err().to_string().contains("column `patient_name`: its name says"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Identifiers in disguise, as a careless export writes them: NHS numbers as floats (a column
/// with one gap), with a prefix or dots; postcodes with a dash or dot; dates of birth as
/// DD/MM/YYYY or with a time; "Surname, Forename"; a name column by part of its name; and a
/// Parquet `Date` column of birth dates. Each is refused by column, and no value is repeated.
#[test]
fn identifiers_in_disguise_are_refused() {
    let nhs: Vec<String> = (123_456_789u64..).step_by(7919).filter_map(nhs_number).take(30).collect();
    let names = ["Jones, Margaret", "Smith, John", "Patel, Priya", "O'Brien, Mary"];
    let mut csv = vec!["age,nhs_float,nhs_tagged,nhs_dotted,pc,birth_uk,birth_time,who".to_string()];
    for (i, n) in nhs.iter().enumerate() {
        let float = if i == 4 { String::new() } else { format!("{n}.0") };
        let dotted = format!("{}.{}.{}", &n[..3], &n[3..6], &n[6..]);
        let pc = if i % 2 == 0 { "SW1A-1AA" } else { "sw1a.1aa" };
        csv.push(format!(
            "{},{float},NHS{n},{dotted},{pc},12/03/1950,1950-03-12T00:00:00,\"{}\"",
            60 + i,
            names[i % 4]
        ));
    }
    let dir = std::env::temp_dir().join(format!("carecast-deid-disguise-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("disguised.csv");
    std::fs::write(&path, csv.join("\n")).unwrap();
    let err = read_table(&path).unwrap_err().to_string();
    for column in ["nhs_float", "nhs_tagged", "nhs_dotted"] {
        assert!(err.contains(&format!("column `{column}`: ")) && err.contains("NHS numbers"), "{column} in:\n{err}");
    }
    for expected in [
        "column `pc`: 30 values look like full postcodes",
        "column `birth_uk`: 30 values look like full dates of birth",
        "column `birth_time`: 30 values look like full dates of birth",
        "column `who`: 30 values look like people's names",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    for value in [&nhs[3][..6], "SW1A", "Margaret", "12/03"] {
        assert!(!err.contains(value), "the report repeats a value: {value}");
    }

    let named = dir.join("named.csv");
    std::fs::write(&named, "patient_nhs_number,age\nx,50\n").unwrap();
    assert!(read_table(&named).unwrap_err().to_string().contains("column `patient_nhs_number`: its name says"));

    use polars::prelude::*;
    let days: Vec<i32> = (0..10).map(|i| -7_000 + i * 37).collect();
    let birth = Series::new("birth_day".into(), days).cast(&DataType::Date).unwrap();
    let mut df = DataFrame::new(10, vec![Column::new("age".into(), vec![70i64; 10]), birth.into()]).unwrap();
    let parquet = dir.join("dates.parquet");
    ParquetWriter::new(std::fs::File::create(&parquet).unwrap()).finish(&mut df).unwrap();
    let err = read_table(&parquet).unwrap_err().to_string();
    assert!(err.contains("column `birth_day`") && err.contains("full dates of birth"), "{err}");
    // Reduced to the first of the month, the same column is kept.
    let months: Vec<i32> = (0..10)
        .map(|i| {
            (chrono::NaiveDate::from_ymd_opt(1950, 1 + i, 1).unwrap()
                - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days() as i32
        })
        .collect();
    let birth = Series::new("birth_day".into(), months).cast(&DataType::Date).unwrap();
    let mut df = DataFrame::new(10, vec![Column::new("age".into(), vec![70i64; 10]), birth.into()]).unwrap();
    ParquetWriter::new(std::fs::File::create(&parquet).unwrap()).finish(&mut df).unwrap();
    read_table(&parquet).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A CSV saved in Latin-1 (an accented name in a category) is refused naming the row and column,
/// and the report repeats none of its text.
#[test]
fn a_file_that_is_not_utf8_is_refused_by_row_and_column() {
    let text = std::fs::read_to_string(shared("support2.csv")).unwrap();
    let lines: Vec<&str> = text.lines().take(6).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let column = header.iter().position(|h| *h == "dzgroup").unwrap();
    let mut bytes = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut cells: Vec<Vec<u8>> = line.split(',').map(|c| c.as_bytes().to_vec()).collect();
        if i == 3 {
            cells[column] = b"Caf\xe9 group".to_vec();
        }
        bytes.extend(cells.join(&b","[..]));
        bytes.push(b'\n');
    }
    let dir = std::env::temp_dir().join(format!("carecast-latin1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.csv");
    std::fs::write(&path, &bytes).unwrap();
    let err = read_table(&path).unwrap_err().to_string();
    assert!(err.contains("row 3, column `dzgroup`: not UTF-8") && !err.contains("Caf"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
