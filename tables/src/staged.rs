//! Outputs that appear under their final name only when complete, and the parts of a long run's
//! output kept until then, so that an interrupted run resumes from its last complete chunk.

use anyhow::{Context, bail};
use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;
use polars_buffer::Buffer;
use polars_parquet::parquet::error::ParquetError;
use polars_parquet::parquet::page::CompressedPage;
use polars_parquet::parquet::read::{get_page_iterator, read_metadata};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

/// A file written in full and synced under a temporary name beside its final path; renamed into
/// place by [`Staged::commit`], removed if dropped uncommitted.
pub(crate) struct Staged {
    temp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Staged {
    pub(crate) fn write(
        path: &Path,
        write: impl FnOnce(&mut std::fs::File) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let name = path.file_name().ok_or_else(|| anyhow::anyhow!("{}: not a file path", path.display()))?;
        let temp = path.with_file_name(format!(".{}.{}.partial", name.to_string_lossy(), std::process::id()));
        let staged = Self { temp, path: path.to_path_buf(), committed: false };
        let mut file = std::fs::File::create(&staged.temp).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        write(&mut file)
            .and_then(|()| file.sync_all().map_err(anyhow::Error::from))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(staged)
    }

    /// The SHA-256 of what was written (for the run's audit record).
    pub(crate) fn sha256(&self) -> anyhow::Result<String> {
        carecast_models::package::sha256_file(&self.temp).with_context(|| self.path.display().to_string())
    }

    pub(crate) fn commit(mut self) -> anyhow::Result<()> {
        std::fs::rename(&self.temp, &self.path).map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// File in a parts folder naming the run its parts belong to.
const RUN: &str = "run.json";

/// The chunks of one output done so far, in `.<output name>.parts/` beside it: chunk `k`'s
/// scored rows in `k.parquet` and its refused rows in `k.refused.parquet`, each staged, the
/// refused first, so a chunk is done exactly when its `k.parquet` exists.
pub(crate) struct Parts {
    dir: PathBuf,
}

impl Parts {
    /// Where the parts of `output` are kept.
    pub(crate) fn dir(output: &Path) -> PathBuf {
        let name = output.file_name().map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
        output.with_file_name(format!(".{name}.parts"))
    }

    /// Opens the parts of a run of `output` described by `run` (input hash, model, options). An
    /// earlier run's parts are continued only with `resume` and only for the same run; without
    /// `resume` they are refused rather than thrown away.
    pub(crate) fn open(output: &Path, run: &serde_json::Value, resume: bool) -> anyhow::Result<Self> {
        let dir = Self::dir(output);
        let recorded = dir.join(RUN);
        if recorded.exists() {
            let before: serde_json::Value = serde_json::from_slice(&std::fs::read(&recorded)?)
                .with_context(|| format!("{}: unreadable", recorded.display()))?;
            let parts = Self { dir };
            if !resume {
                bail!(
                    "{}: an interrupted run of this output left {} complete chunk(s) in {}: run again with --resume to \
                     continue it, or remove that folder to start again",
                    output.display(),
                    parts.count_done(),
                    parts.dir.display()
                );
            }
            if let Some(field) = differs(&before, run) {
                bail!(
                    "{}: --resume: the interrupted run differs in `{field}`; its parts in {} cannot be continued \
                     (remove that folder to start again)",
                    output.display(),
                    parts.dir.display()
                );
            }
            return Ok(parts);
        }
        std::fs::create_dir(&dir).with_context(|| dir.display().to_string())?;
        let parts = Self { dir };
        Staged::write(&recorded, |f| Ok(serde_json::to_writer_pretty(f, run)?))?.commit()?;
        Ok(parts)
    }

    fn scored_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{index:06}.parquet"))
    }

    fn refused_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{index:06}.refused.parquet"))
    }

    pub(crate) fn is_done(&self, index: usize) -> bool {
        self.scored_path(index).exists()
    }

    fn count_done(&self) -> usize {
        std::fs::read_dir(&self.dir).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
                .filter(|e| !e.file_name().to_string_lossy().contains(".refused"))
                .count()
        })
    }

    /// Keeps chunk `index`'s scored and refused rows; the chunk counts as done once this returns.
    pub(crate) fn write(&self, index: usize, scored: &mut DataFrame, refused: &mut DataFrame) -> anyhow::Result<()> {
        for (path, df) in [(self.refused_path(index), refused), (self.scored_path(index), scored)] {
            Staged::write(&path, |f| ParquetWriter::new(f).finish(df).map(drop).map_err(anyhow::Error::from))?
                .commit()?;
        }
        Ok(())
    }

    /// Chunk `index`'s scored rows.
    pub(crate) fn scored(&self, index: usize) -> anyhow::Result<DataFrame> {
        read_parquet(&self.scored_path(index))
    }

    /// Appends chunk `index`'s scored rows to `output` as the part holds them, its encoded and
    /// compressed pages copied without being decoded: the output is encoded once, as the parts
    /// were written, not read back and encoded again. Returns the rows appended.
    pub(crate) fn append_scored<W: Write>(&self, index: usize, output: &mut BatchedWriter<W>) -> anyhow::Result<usize> {
        let path = self.scored_path(index);
        let at = |e: ParquetError| anyhow::anyhow!("{}: {e}", path.display());
        let bytes = Buffer::from(std::fs::read(&path).with_context(|| path.display().to_string())?);
        let part = read_metadata(&mut Cursor::new(bytes.clone())).map_err(at)?;
        if part.schema().fields() != output.parquet_schema().fields() {
            bail!("{}: its columns differ from the output's (written by another version?)", path.display());
        }
        // Pages are copied with a row per value ([`with_rows`]): true of flat columns only.
        if part.schema().columns().iter().any(|c| c.descriptor.max_rep_level > 0) {
            bail!("{}: a nested column: its pages cannot be copied row for value", path.display());
        }
        let mut rows = 0;
        for group in part.row_groups.iter().filter(|g| g.num_rows() > 0) {
            let pages = group
                .parquet_columns()
                .iter()
                .map(|column| {
                    get_page_iterator(column, Cursor::new(bytes.clone()), vec![], usize::MAX)?
                        .map(|page| page.map(with_rows))
                        .collect()
                })
                .collect::<Result<Vec<Vec<_>>, _>>()
                .map_err(at)?;
            output.write_row_group(group.num_rows() as u64, &pages)?;
            rows += group.num_rows();
        }
        Ok(rows)
    }

    /// Chunk `index`'s refused rows.
    pub(crate) fn refused(&self, index: usize) -> anyhow::Result<DataFrame> {
        read_parquet(&self.refused_path(index))
    }

    /// Removes the parts once the output they made is in place.
    pub(crate) fn remove(self) -> anyhow::Result<()> {
        std::fs::remove_dir_all(&self.dir).with_context(|| format!("{}: not removed", self.dir.display()))
    }
}

/// A data page read back, with its row count, which the writer needs and a reader leaves out:
/// the output's columns are flat, so each value is one row.
fn with_rows(mut page: CompressedPage) -> CompressedPage {
    if let CompressedPage::Data(data) = &mut page {
        data.num_rows = Some(data.num_values());
    }
    page
}

fn read_parquet(path: &Path) -> anyhow::Result<DataFrame> {
    let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    ParquetReader::new(file).finish().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The first field in which two runs' descriptions differ.
fn differs(before: &serde_json::Value, now: &serde_json::Value) -> Option<String> {
    let (Some(before), Some(now)) = (before.as_object(), now.as_object()) else { return Some("run".into()) };
    now.iter().chain(before.iter()).find(|(k, _)| before.get(*k) != now.get(*k)).map(|(k, _)| k.clone())
}
