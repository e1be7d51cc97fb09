//! The local model registry: `<root>/<model>/<version>/` package directories plus a `CURRENT`
//! pointer per model. Versions are published by renaming a fully written staging directory into
//! place, and promoted by renaming a new pointer file over the old one, so readers never see a
//! half-written package or pointer. When each version was published or promoted is kept in an
//! append-only `HISTORY.jsonl` beside them, not in the package, so that a package is a pure
//! function of its code, data and settings (the same training command gives the same bytes).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const CURRENT: &str = "CURRENT";
const SHADOW: &str = "SHADOW";
const HISTORY: &str = "HISTORY.jsonl";
const LIVE: &str = "live";
const GATES: &str = "gates";

/// One line of a model's registry history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    /// `published`, `promoted`, `rolled back`, `shadow started` or `shadow ended`.
    pub action: String,
    pub version: String,
    /// Who promoted or rolled back: a server caller's token subject, or `cli:<user>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// A promotion forced past its gates: the reason given, and the gates it had not passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<Forced>,
}

/// Why a promotion went ahead without passing its gates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forced {
    pub reason: String,
    /// The gates not passed (none checked: empty, and said so).
    pub failed_gates: Vec<String>,
}

/// One promotion gate's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// `inputs`, `discrimination`, `calibration slope` or `calibration intercept`.
    pub name: String,
    pub passed: bool,
    /// What was compared, in words.
    pub detail: String,
}

/// A version's promotion gates checked against the version served when they were checked
/// (`carecast promote`, and training after it publishes), kept in
/// `<model>/gates/<version>-against-<current>.json`: promotion needs a report that passed,
/// against the version served now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub version: String,
    pub against: String,
    pub at: DateTime<Utc>,
    /// Where they were checked: the data's name and SHA-256, and the rows used.
    pub data: String,
    pub data_sha256: String,
    pub rows: u64,
    pub gates: Vec<Gate>,
}

impl GateReport {
    pub fn passed(&self) -> bool {
        self.gates.iter().all(|g| g.passed)
    }

    /// The failed gates, each with its detail.
    pub fn failed(&self) -> Vec<String> {
        self.gates.iter().filter(|g| !g.passed).map(|g| format!("{}: {}", g.name, g.detail)).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("model name `{0}` is not valid: use lower-case letters, digits, `_`, `-` and `.`")]
    BadName(String),
    #[error("no model `{0}` in the registry")]
    UnknownModel(String),
    #[error("model `{model}` has no version `{version}`")]
    UnknownVersion { model: String, version: String },
    #[error("model `{0}` has no promoted version")]
    NoCurrent(String),
    #[error("model `{0}` has no earlier promoted version to roll back to")]
    NothingToRollBack(String),
    #[error("registry {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "model `{model}` version `{version}` has not passed its promotion gates against version `{against}`: {}; check them again on validation data (carecast promote --data or --meds), or force the promotion with a reason",
        if failed.is_empty() { "not checked".to_string() } else { failed.join("; ") }
    )]
    GatesNotPassed { model: String, version: String, against: String, failed: Vec<String> },
}

/// The history action of a roll-back (it names the version gone back to).
const ROLLED_BACK: &str = "rolled back";

/// The identity of a `CURRENT` pointer file (see [`Registry::current_stamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointerStamp {
    device: u64,
    inode: u64,
    modified: (i64, i64),
    size: u64,
}

#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

/// Writes `bytes` beside `path` and renames it over `path`, so a reader sees the old file or the
/// new one, never half of one. Each write has a temporary file of its own (process and count),
/// so two at once (a server's periodic flush and its flush at shutdown) never write into one.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.{n}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(Registry::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Registry::io(path))
}

/// Names and versions become paths, so only a safe alphabet is allowed.
fn check_name(name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c));
    if ok { Ok(()) } else { Err(RegistryError::BadName(name.to_string())) }
}

impl Registry {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> RegistryError + '_ {
        move |source| RegistryError::Io { path: path.to_path_buf(), source }
    }

    /// Model names, sorted.
    pub fn models(&self) -> Result<Vec<String>, RegistryError> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.root).map_err(Self::io(&self.root))? {
            let entry = entry.map_err(Self::io(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && check_name(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Published versions of a model, oldest first.
    pub fn versions(&self, model: &str) -> Result<Vec<String>, RegistryError> {
        check_name(model)?;
        let dir = self.root.join(model);
        if !dir.is_dir() {
            return Err(RegistryError::UnknownModel(model.to_string()));
        }
        let mut versions: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(Self::io(&dir))? {
            let entry = entry.map_err(Self::io(&dir))?;
            if let Ok(v) = entry.file_name().to_string_lossy().parse::<u64>()
                && entry.path().is_dir()
            {
                versions.push(v);
            }
        }
        versions.sort_unstable();
        Ok(versions.into_iter().map(|v| v.to_string()).collect())
    }

    /// What identifies a model's `CURRENT` pointer file as it is now, `None` when there is none.
    /// A promotion renames a new file over the pointer, so an unchanged stamp is an unchanged
    /// pointer: a server can check it on every request with one `stat` instead of reading it.
    pub fn current_stamp(&self, model: &str) -> Result<Option<PointerStamp>, RegistryError> {
        self.pointer_stamp(model, CURRENT)
    }

    /// [`Self::current_stamp`] for the `SHADOW` pointer.
    pub fn shadow_stamp(&self, model: &str) -> Result<Option<PointerStamp>, RegistryError> {
        self.pointer_stamp(model, SHADOW)
    }

    /// The version scoring in shadow beside the served one (`carecast shadow`), if any.
    pub fn shadow(&self, model: &str) -> Result<Option<String>, RegistryError> {
        check_name(model)?;
        let path = self.root.join(model).join(SHADOW);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::Io { path, source: e }),
        }
    }

    /// Puts `version` in shadow: servers score every request for the model's served version
    /// with it too, never returning its result. The history records `by` whom.
    pub fn start_shadow(&self, model: &str, version: &str, by: &str) -> Result<(), RegistryError> {
        self.resolve(model, Some(version))?;
        replace_file(&self.root.join(model).join(SHADOW), format!("{version}\n").as_bytes())?;
        self.record(model, "shadow started", version, Some(by))
    }

    /// Ends the shadow, if there is one; returns the version that was in it.
    pub fn end_shadow(&self, model: &str, by: &str) -> Result<Option<String>, RegistryError> {
        let Some(version) = self.shadow(model)? else { return Ok(None) };
        let path = self.root.join(model).join(SHADOW);
        std::fs::remove_file(&path).map_err(Self::io(&path))?;
        self.record(model, "shadow ended", &version, Some(by))?;
        Ok(Some(version))
    }

    fn pointer_stamp(&self, model: &str, pointer: &str) -> Result<Option<PointerStamp>, RegistryError> {
        use std::os::unix::fs::MetadataExt;
        check_name(model)?;
        let path = self.root.join(model).join(pointer);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(PointerStamp {
                device: m.dev(),
                inode: m.ino(),
                modified: (m.mtime(), m.mtime_nsec()),
                size: m.size(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::Io { path, source: e }),
        }
    }

    /// The promoted version of a model.
    pub fn current(&self, model: &str) -> Result<String, RegistryError> {
        check_name(model)?;
        let path = self.root.join(model).join(CURRENT);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.root.join(model).is_dir() {
                    Err(RegistryError::NoCurrent(model.to_string()))
                } else {
                    Err(RegistryError::UnknownModel(model.to_string()))
                }
            }
            Err(e) => Err(RegistryError::Io { path, source: e }),
        }
    }

    /// The package directory for a model version (the promoted one when `version` is `None`).
    pub fn resolve(&self, model: &str, version: Option<&str>) -> Result<(String, PathBuf), RegistryError> {
        check_name(model)?;
        let version = match version {
            Some(v) => {
                check_name(v)?;
                v.to_string()
            }
            None => self.current(model)?,
        };
        let dir = self.root.join(model).join(&version);
        if !dir.is_dir() {
            if !self.root.join(model).is_dir() {
                return Err(RegistryError::UnknownModel(model.to_string()));
            }
            return Err(RegistryError::UnknownVersion { model: model.to_string(), version });
        }
        Ok((version, dir))
    }

    /// Publishes a new version: `write` fills a staging directory, which is then renamed into
    /// place as the next version number, and promoted if it is the model's first. Returns the
    /// version.
    pub fn publish<E: From<RegistryError>>(
        &self,
        model: &str,
        write: impl FnOnce(&Path, &str) -> Result<(), E>,
    ) -> Result<String, E> {
        check_name(model)?;
        let dir = self.root.join(model);
        std::fs::create_dir_all(&dir).map_err(Self::io(&dir))?;
        let next =
            self.versions(model)?.last().map_or(1, |v| v.parse::<u64>().expect("versions are numeric") + 1).to_string();
        let staging = dir.join(format!(".staging-{next}-{}", std::process::id()));
        std::fs::create_dir_all(&staging).map_err(Self::io(&staging))?;
        if let Err(e) = write(&staging, &next) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let target = dir.join(&next);
        std::fs::rename(&staging, &target).map_err(Self::io(&target))?;
        self.record(model, "published", &next, None)?;
        // The first version is served at once; later ones only once promoted past their gates.
        if self.current_stamp(model)?.is_none() {
            self.point_current(model, &next, "promoted", None)?;
        }
        Ok(next)
    }

    /// Makes `version` the one served by default, atomically, whatever its gates; the history
    /// records `by` whom. Releases go through [`Self::promote_gated`].
    pub fn promote(&self, model: &str, version: &str, by: &str) -> Result<(), RegistryError> {
        self.point_current(model, version, "promoted", Some(by))
    }

    /// Promotes `version` if it passed its gates against the version served now (a
    /// [`GateReport`] recorded by [`Self::record_gates`]), or the model has none served, or it
    /// is `forced` with a reason, which the history keeps with the gates not passed.
    pub fn promote_gated(
        &self,
        model: &str,
        version: &str,
        by: &str,
        forced: Option<&str>,
    ) -> Result<(), RegistryError> {
        // The version served is read, its gate report checked and the pointer switched under one
        // lock: a promotion landing in between would otherwise be replaced by a version never
        // checked against it.
        let _held = self.lock(model)?;
        let current = match self.current(model) {
            Ok(current) => current,
            Err(RegistryError::NoCurrent(_)) => return self.promote(model, version, by),
            Err(e) => return Err(e),
        };
        self.resolve(model, Some(version))?;
        let report = if current == version { None } else { self.gates(model, version, &current)? };
        let passed = current == version || report.as_ref().is_some_and(GateReport::passed);
        if passed {
            return self.promote(model, version, by);
        }
        let failed = report.map(|r| r.failed()).unwrap_or_default();
        let Some(reason) = forced.map(str::trim).filter(|r| !r.is_empty()) else {
            return Err(RegistryError::GatesNotPassed {
                model: model.into(),
                version: version.into(),
                against: current,
                failed,
            });
        };
        self.switch_current(model, version)?;
        let forced = Forced { reason: reason.into(), failed_gates: failed };
        self.append_history(
            model,
            &HistoryEntry {
                at: Utc::now(),
                action: "promoted".into(),
                version: version.into(),
                by: Some(by.into()),
                forced: Some(forced),
            },
        )
    }

    /// An exclusive lock on a model's promotions (`<model>/.promotion.lock`), held until the
    /// file is dropped.
    fn lock(&self, model: &str) -> Result<std::fs::File, RegistryError> {
        check_name(model)?;
        if !self.root.join(model).is_dir() {
            return Err(RegistryError::UnknownModel(model.to_string()));
        }
        let path = self.root.join(model).join(".promotion.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Self::io(&path))?;
        file.lock().map_err(Self::io(&path))?;
        Ok(file)
    }

    /// Keeps a gate report (replacing one of the same version against the same version).
    pub fn record_gates(&self, model: &str, report: &GateReport) -> Result<(), RegistryError> {
        check_name(model)?;
        let dir = self.root.join(model).join(GATES);
        std::fs::create_dir_all(&dir).map_err(Self::io(&dir))?;
        let path = dir.join(format!("{}-against-{}.json", report.version, report.against));
        replace_file(&path, &serde_json::to_vec_pretty(report).expect("gate reports serialise"))
    }

    /// The gate report of `version` against `against`, if one was recorded.
    pub fn gates(&self, model: &str, version: &str, against: &str) -> Result<Option<GateReport>, RegistryError> {
        check_name(model)?;
        check_name(version)?;
        check_name(against)?;
        let path = self.root.join(model).join(GATES).join(format!("{version}-against-{against}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RegistryError::Io { path, source: e }),
        }
    }

    /// The version a roll-back would go back to: the one promoted before the current one.
    /// Promotions stack and roll-backs pop them, so rolling back twice goes back two promotions.
    pub fn previous(&self, model: &str) -> Result<String, RegistryError> {
        let current = self.current(model)?;
        let mut stack = Vec::new();
        for e in self.history(model)? {
            match e.action.as_str() {
                "promoted" => stack.push(e.version),
                ROLLED_BACK => {
                    stack.pop();
                }
                _ => {}
            }
        }
        while stack.last() == Some(&current) {
            stack.pop();
        }
        stack.pop().ok_or_else(|| RegistryError::NothingToRollBack(model.into()))
    }

    /// Goes back to [`Self::previous`], atomically; returns it.
    pub fn rollback(&self, model: &str, by: &str) -> Result<String, RegistryError> {
        let _held = self.lock(model)?;
        let previous = self.previous(model)?;
        self.point_current(model, &previous, ROLLED_BACK, Some(by))?;
        Ok(previous)
    }

    /// Swaps `CURRENT` to `version` by renaming a new file over it, and records why.
    fn point_current(&self, model: &str, version: &str, action: &str, by: Option<&str>) -> Result<(), RegistryError> {
        self.switch_current(model, version)?;
        self.record(model, action, version, by)
    }

    fn switch_current(&self, model: &str, version: &str) -> Result<(), RegistryError> {
        self.resolve(model, Some(version))?;
        replace_file(&self.root.join(model).join(CURRENT), format!("{version}\n").as_bytes())
    }

    fn record(&self, model: &str, action: &str, version: &str, by: Option<&str>) -> Result<(), RegistryError> {
        let entry = HistoryEntry {
            at: Utc::now(),
            action: action.into(),
            version: version.into(),
            by: by.map(str::to_string),
            forced: None,
        };
        self.append_history(model, &entry)
    }

    fn append_history(&self, model: &str, entry: &HistoryEntry) -> Result<(), RegistryError> {
        let path = self.root.join(model).join(HISTORY);
        let mut line = serde_json::to_vec(entry).expect("history entries serialise");
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(Self::io(&path))?;
        file.write_all(&line).map_err(Self::io(&path))
    }

    /// What happened to a model's versions, oldest first; unreadable lines are skipped.
    pub fn history(&self, model: &str) -> Result<Vec<HistoryEntry>, RegistryError> {
        check_name(model)?;
        let path = self.root.join(model).join(HISTORY);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(RegistryError::Io { path, source: e }),
        }
    }

    /// Where a server keeps the live drift tallies of `model`'s `version`
    /// (`<root>/<model>/live/<version>/`): one file per day and server process,
    /// `<YYYY-MM-DD>.<server>.json`.
    pub fn live_dir(&self, model: &str, version: &str) -> PathBuf {
        self.root.join(model).join(LIVE).join(version)
    }

    /// Writes one server's live tally of `model`'s `version` for `day` (replacing the last one it
    /// wrote), in [`Self::live_dir`].
    pub fn write_live(
        &self,
        model: &str,
        version: &str,
        day: chrono::NaiveDate,
        server: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        check_name(model)?;
        check_name(version)?;
        let dir = self.live_dir(model, version);
        std::fs::create_dir_all(&dir).map_err(Self::io(&dir))?;
        replace_file(&dir.join(format!("{day}.{server}.json")), bytes)
    }

    /// Every live tally file of `model`, as (version, day, path); none before any was written.
    pub fn live_files(&self, model: &str) -> Result<Vec<(String, chrono::NaiveDate, PathBuf)>, RegistryError> {
        check_name(model)?;
        let root = self.root.join(model).join(LIVE);
        let mut files = Vec::new();
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(files),
            Err(e) => return Err(RegistryError::Io { path: root, source: e }),
        };
        for version in entries {
            let version = version.map_err(Self::io(&root))?;
            let name = version.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(version.path()).map_err(Self::io(&version.path()))? {
                let path = file.map_err(Self::io(&version.path()))?.path();
                let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let day = file_name.split('.').next().and_then(|d| d.parse().ok());
                if let Some(day) = day.filter(|_| file_name.ends_with(".json")) {
                    files.push((name.clone(), day, path));
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// When a version was published, if the history records it.
    pub fn published_at(&self, model: &str, version: &str) -> Option<DateTime<Utc>> {
        self.history(model).ok()?.into_iter().find(|e| e.action == "published" && e.version == version).map(|e| e.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_backs_pop_promotions() {
        let dir = std::env::temp_dir().join(format!("carecast-registry-{}", std::process::id()));
        let registry = Registry::new(&dir);
        for _ in 0..3 {
            let v = registry.publish("m", |_, _| Ok::<(), RegistryError>(())).unwrap();
            registry.promote("m", &v, "test").unwrap(); // only the first is promoted by publishing
        }
        assert_eq!(registry.current("m").unwrap(), "3");
        assert_eq!(registry.rollback("m", "test").unwrap(), "2");
        assert_eq!(registry.rollback("m", "test").unwrap(), "1");
        assert!(matches!(registry.rollback("m", "test"), Err(RegistryError::NothingToRollBack(_))));
        assert_eq!(registry.current("m").unwrap(), "1");
        registry.promote("m", "3", "test").unwrap();
        assert_eq!(registry.rollback("m", "test").unwrap(), "1", "back past the versions already rolled back");
        assert!(matches!(registry.promote("m", "9", "test"), Err(RegistryError::UnknownVersion { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
