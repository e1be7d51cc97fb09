//! A table read a chunk of rows at a time, so that scoring a register of any size holds one
//! chunk in memory: Parquet by its row groups, CSV by runs of whole records.
//!
//! A CSV chunk must read as the whole file would: a column's type decides how a categorical
//! level reads (`01` stays `01` in a text column, becomes `1` in a number column), and
//! training read the whole file at once. So [`Chunks::open`] first passes over the file a chunk
//! at a time, inferring each chunk's types as polars infers a whole file's and merging them by
//! polars' own rule, and notes where each chunk starts; each chunk is then parsed with the
//! merged schema. Tested against the whole-file read on the shared data and on columns whose
//! type only a later chunk reveals.

use crate::identifiers::Scanner;
use crate::table::{TableError, not_utf8, null_values, refuse_identifiers};
use chrono::{DateTime, Utc};
use polars::io::csv::read::schema_inference::finish_infer_field_schema;
use polars::io::parquet::metadata::FileMetadataRef;
use polars::prelude::*;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Rows per chunk unless the caller says otherwise: about 40 MB of a wide clinical table.
pub const DEFAULT_ROWS: usize = 65_536;

/// Bytes read from a CSV file at a time while looking for record boundaries.
const BLOCK: usize = 8 << 20;

/// Where a chunk lies: its first data row (0-based), its rows, and for CSV its bytes.
#[derive(Debug, Clone, Copy)]
struct Span {
    first_row: usize,
    rows: usize,
    bytes: Option<(u64, usize)>,
}

enum Format {
    /// The header line, and the schema merged over every chunk.
    Csv {
        header: Vec<u8>,
        schema: SchemaRef,
    },
    Parquet {
        metadata: FileMetadataRef,
    },
}

/// A table split into chunks of whole rows, each read on demand.
pub struct Chunks {
    path: PathBuf,
    format: Format,
    spans: Vec<Span>,
    sha256: String,
    opened: DateTime<Utc>,
}

/// Where batch scoring reads its rows, a chunk at a time: a table file ([`Chunks`]), or an
/// event model's features extracted from a MEDS dataset shard by shard (in `carecast-training`).
/// A chunk holds the model's input columns by name, and the key column when there is one.
pub trait Source: Sync {
    /// The SHA-256 that names the input in a run's audit record, and keeps a resumed run to the
    /// same input.
    fn sha256(&self) -> &str;
    /// When the input was opened: reading it began.
    fn opened(&self) -> DateTime<Utc>;
    /// How many chunks.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Rows (people) in chunk `index`.
    fn rows_in(&self, index: usize) -> usize;
    /// Reads chunk `index`.
    fn read(&self, index: usize) -> Result<Chunk, TableError>;
    /// Rows in the whole source.
    fn rows(&self) -> usize {
        (0..self.len()).map(|i| self.rows_in(i)).sum()
    }
}

/// Rows `first_row ..` of a table.
pub struct Chunk {
    /// The chunk's first data row, 0-based (the header is not a row).
    pub first_row: usize,
    pub df: DataFrame,
}

impl Chunks {
    /// Opens `path` (`.csv` or `.parquet`) in chunks of about `rows` rows, takes its SHA-256, and
    /// reads it once through the de-identification guard ([`Scanner`]), which refuses the table
    /// before anything is scored when a column holds direct identifiers. A CSV file's chunks and
    /// its columns' types are found in the same pass (see the module's note).
    pub fn open(path: &Path, rows: usize) -> Result<Self, TableError> {
        let opened = Utc::now();
        let rows = rows.max(1);
        let fail = |reason: String| TableError::Read { path: path.display().to_string(), reason };
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let sha256 = || carecast_models::package::sha256_file(path).map_err(|e| fail(e.to_string()));
        let mut guard = Scanner::default();
        let chunks = match ext.as_str() {
            "csv" => {
                let (format, spans) = csv_plan(path, rows, &mut guard)?;
                Self { path: path.to_path_buf(), format, spans, sha256: sha256()?, opened }
            }
            "parquet" | "pq" => {
                let file = File::open(path).map_err(|e| fail(e.to_string()))?;
                let mut reader = ParquetReader::new(file);
                let metadata = reader.get_metadata().map_err(|e| fail(e.to_string()))?.clone();
                let groups: Vec<usize> = metadata.row_groups.iter().map(|g| g.num_rows()).collect();
                let chunks = Self {
                    path: path.to_path_buf(),
                    format: Format::Parquet { metadata },
                    spans: parquet_spans(&groups, rows),
                    sha256: sha256()?,
                    opened,
                };
                for index in 0..chunks.len() {
                    let chunk = chunks.read(index)?;
                    guard.add(&chunk.df, chunk.first_row);
                }
                chunks
            }
            _ => return Err(fail("expected a .csv or .parquet file".into())),
        };
        refuse_identifiers(path, &guard.findings())?;
        Ok(chunks)
    }
}

impl Source for Chunks {
    fn sha256(&self) -> &str {
        &self.sha256
    }

    fn opened(&self) -> DateTime<Utc> {
        self.opened
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn rows_in(&self, index: usize) -> usize {
        self.spans[index].rows
    }

    fn rows(&self) -> usize {
        self.spans.last().map_or(0, |s| s.first_row + s.rows)
    }

    fn read(&self, index: usize) -> Result<Chunk, TableError> {
        let span = self.spans[index];
        let fail = |reason: String| TableError::Read { path: self.path.display().to_string(), reason };
        let df = match (&self.format, span.bytes) {
            (Format::Csv { header, schema }, Some((start, len))) => {
                let mut bytes = header.clone();
                let mut file = File::open(&self.path).map_err(|e| fail(e.to_string()))?;
                file.seek(SeekFrom::Start(start)).map_err(|e| fail(e.to_string()))?;
                bytes.resize(header.len() + len, 0);
                file.read_exact(&mut bytes[header.len()..]).map_err(|e| fail(e.to_string()))?;
                parse_csv(bytes, Some(schema.clone()), span.first_row).map_err(fail)?
            }
            (Format::Parquet { metadata }, _) => {
                let file = File::open(&self.path).map_err(|e| fail(e.to_string()))?;
                let mut reader = ParquetReader::new(file);
                reader.set_metadata(metadata.clone());
                reader.with_slice(Some((span.first_row, span.rows))).finish().map_err(|e| fail(e.to_string()))?
            }
            (Format::Csv { .. }, None) => unreachable!("CSV spans know their bytes"),
        };
        if df.height() != span.rows {
            return Err(fail(format!(
                "rows {}-{} changed while being read ({} rows found where {} were)",
                span.first_row + 1,
                span.first_row + span.rows,
                df.height(),
                span.rows
            )));
        }
        Ok(Chunk { first_row: span.first_row, df })
    }
}

/// Chunks along the row groups: consecutive groups joined until they hold `rows`, a group of
/// more than twice that cut into slices of `rows`.
fn parquet_spans(groups: &[usize], rows: usize) -> Vec<Span> {
    let mut spans = Vec::new();
    let (mut start, mut pending) = (0, 0);
    let flush = |start: usize, n: usize, spans: &mut Vec<Span>| {
        if n > 0 {
            spans.push(Span { first_row: start, rows: n, bytes: None });
        }
    };
    for &g in groups {
        if g > 2 * rows {
            flush(start, pending, &mut spans);
            start += pending;
            pending = 0;
            for offset in (0..g).step_by(rows) {
                flush(start + offset, rows.min(g - offset), &mut spans);
            }
            start += g;
        } else {
            pending += g;
            if pending >= rows {
                flush(start, pending, &mut spans);
                start += pending;
                pending = 0;
            }
        }
    }
    flush(start, pending, &mut spans);
    spans
}

/// Reads a CSV file once: its header, where each run of `rows` records starts and ends, and
/// each column's type over the whole file; each chunk is shown to the `guard`.
fn csv_plan(path: &Path, rows: usize, guard: &mut Scanner) -> Result<(Format, Vec<Span>), TableError> {
    let fail = |reason: String| TableError::Read { path: path.display().to_string(), reason };
    let mut records = Records::open(path).map_err(|e| fail(e.to_string()))?;
    let header = match records.next_run(1).map_err(|e| fail(e.to_string()))? {
        Some(h) => h,
        None => return Err(fail("empty file: no header row".into())),
    };
    let mut offset = header.len() as u64;
    let mut types: Vec<PlIndexSet<DataType>> = Vec::new();
    let mut names: Vec<PlSmallStr> = Vec::new();
    let mut spans = Vec::new();
    let mut first_row = 0;
    while let Some(block) = records.next_run(rows).map_err(|e| fail(e.to_string()))? {
        let len = block.len();
        let mut bytes = header.clone();
        bytes.extend_from_slice(&block);
        let df = parse_csv(bytes, None, first_row).map_err(fail)?;
        guard.add(&df, first_row);
        if names.is_empty() {
            names = df.get_column_names_owned();
            types = vec![PlIndexSet::default(); names.len()];
        }
        for (set, column) in types.iter_mut().zip(df.columns()) {
            // A chunk where a column is all missing says nothing of its type.
            if column.null_count() < column.len() {
                set.insert(column.dtype().clone());
            }
        }
        if df.height() > 0 {
            spans.push(Span { first_row, rows: df.height(), bytes: Some((offset, len)) });
        }
        first_row += df.height();
        offset += len as u64;
    }
    if names.is_empty() {
        let df = parse_csv(header.clone(), None, 0).map_err(fail)?;
        names = df.get_column_names_owned();
        types = vec![PlIndexSet::default(); names.len()];
    }
    let schema: Schema =
        names.into_iter().zip(&types).map(|(n, t)| Field::new(n, finish_infer_field_schema(t))).collect();
    Ok((Format::Csv { header, schema: Arc::new(schema) }, spans))
}

/// Parses CSV bytes (header first) as the whole-table reader does; with no schema, each
/// column's type is inferred from every value. Rows in errors count from `first_row`.
fn parse_csv(bytes: Vec<u8>, schema: Option<SchemaRef>, first_row: usize) -> Result<DataFrame, String> {
    let utf8_error = std::str::from_utf8(&bytes).err().map(|e| e.valid_up_to());
    if let Some(bad) = utf8_error {
        return Err(not_utf8(&bytes, bad, first_row));
    }
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(None)
        .with_schema(schema)
        .map_parse_options(|o| o.with_null_values(Some(null_values())))
        .into_reader_with_file_handle(std::io::Cursor::new(bytes))
        .finish()
        .map_err(|e| e.to_string())
}

/// A CSV file's bytes cut at record boundaries: a newline outside quotes (a doubled quote
/// inside a quoted field leaves the count even, as RFC 4180 escapes quotes).
struct Records {
    file: File,
    buffer: Vec<u8>,
    eof: bool,
}

impl Records {
    fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self { file: File::open(path)?, buffer: Vec::new(), eof: false })
    }

    /// The next `n` records' bytes (fewer at the end of the file); `None` when none are left.
    fn next_run(&mut self, n: usize) -> std::io::Result<Option<Vec<u8>>> {
        let (mut scanned, mut quoted, mut found) = (0, false, 0);
        let cut = loop {
            if let Some(i) = self.buffer[scanned..].iter().position(|&b| {
                if b == b'"' {
                    quoted = !quoted;
                } else if b == b'\n' && !quoted {
                    found += 1;
                    return found == n;
                }
                false
            }) {
                break scanned + i + 1;
            }
            scanned = self.buffer.len();
            if self.eof {
                break scanned;
            }
            let start = self.buffer.len();
            self.buffer.resize(start + BLOCK, 0);
            let read = self.file.read(&mut self.buffer[start..])?;
            self.buffer.truncate(start + read);
            self.eof = read == 0;
        };
        let rest = self.buffer.split_off(cut);
        let run = std::mem::replace(&mut self.buffer, rest);
        Ok((!run.iter().all(u8::is_ascii_whitespace)).then_some(run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_chunks_follow_row_groups_and_cover_every_row_once() {
        for (groups, rows) in [(vec![10, 10, 10], 15), (vec![100], 30), (vec![5, 70, 5, 5], 10), (vec![], 4)] {
            let spans = parquet_spans(&groups, rows);
            let mut next = 0;
            for s in &spans {
                assert_eq!(s.first_row, next, "{groups:?}");
                assert!(s.rows > 0 && s.rows <= 2 * rows + groups.iter().max().unwrap_or(&0), "{groups:?}");
                next += s.rows;
            }
            assert_eq!(next, groups.iter().sum::<usize>());
        }
        // A group of 100 cut into slices of 30: 30, 30, 30, 10.
        assert_eq!(parquet_spans(&[100], 30).iter().map(|s| s.rows).collect::<Vec<_>>(), [30, 30, 30, 10]);
    }

    #[test]
    fn records_are_cut_outside_quotes_only() {
        let path = std::env::temp_dir().join(format!("carecast-records-{}.csv", std::process::id()));
        std::fs::write(&path, "a,b\n1,\"x\ny\"\n2,\"say \"\"hi\"\"\n\"\n3,z").unwrap();
        let mut r = Records::open(&path).unwrap();
        let runs: Vec<String> =
            std::iter::from_fn(|| r.next_run(1).unwrap()).map(|b| String::from_utf8(b).unwrap()).collect();
        assert_eq!(runs, ["a,b\n", "1,\"x\ny\"\n", "2,\"say \"\"hi\"\"\n\"\n", "3,z"]);
        std::fs::remove_file(&path).unwrap();
    }
}
