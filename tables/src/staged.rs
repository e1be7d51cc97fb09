//! Outputs that appear under their final name only when complete.

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
