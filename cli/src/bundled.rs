//! The bundled example data, embedded in the binary so that an installed `carecast` needs no
//! checkout: a file under `data/` in the working directory is used as it is, else the embedded
//! copy is written once to a cache directory and read from there.

use anyhow::Context;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// The bundled files, by name.
const FILES: &[(&str, &[u8])] = &[("support2.csv", include_bytes!("../../data/support2.csv"))];

/// A path to the bundled file `name`.
pub fn path(name: &str) -> anyhow::Result<PathBuf> {
    let local = PathBuf::from("data").join(name);
    if local.exists() {
        return Ok(local);
    }
    let (_, bytes) = FILES.iter().find(|(n, _)| *n == name).with_context(|| {
        let bundled: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
        format!("bundled data `{name}` not found (bundled: {}); pass --data", bundled.join(", "))
    })?;
    // Named by content, so a newer build never reads an older build's copy.
    let digest = hex::encode(&Sha256::digest(bytes)[..8]);
    let dir = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("carecast")
        .join(digest);
    let path = dir.join(name);
    if !path.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        // Written whole under a temporary name, then renamed: a reader never sees half a file.
        let partial = dir.join(format!(".{name}.{}.partial", std::process::id()));
        std::fs::write(&partial, bytes).with_context(|| format!("{}", partial.display()))?;
        std::fs::rename(&partial, &path).with_context(|| format!("{}", path.display()))?;
    }
    Ok(path)
}
