//! Loaded model packages, keyed by name and version. A request without a version follows the
//! registry's `CURRENT` pointer, read on every request, so a promotion (or a roll-back) takes
//! effect without a restart (between promotions a request costs one `stat` of the pointer, not a
//! read); each version is loaded (and its checksums verified) once. When the promoted version
//! cannot be served (missing, damaged, failing its checksums), the version served before it keeps
//! serving, and the difference is logged and counted; a refused package is tried again once its
//! files change (repaired in place).

use carecast_models::registry::{PointerStamp, RegistryError};
use carecast_models::{ModelPackage, Registry, load_package};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("model `{model}` version `{version}` cannot be served: {reason}")]
    Unloadable { model: String, version: String, reason: String },
}

pub struct ModelStore {
    registry: Registry,
    loaded: RwLock<HashMap<(String, String), Arc<ModelPackage>>>,
    /// Versions that failed to load, with the reason and the state of their files then: tried
    /// again once the files change (a package repaired in place), not on every request.
    refused: RwLock<HashMap<(String, String), (String, FilesStamp)>>,
    /// Per model, the version last served by default: the fallback while a promoted version
    /// cannot be loaded.
    serving: RwLock<HashMap<String, Served>>,
    /// Per model, its `SHADOW` pointer as last seen and the package it names.
    shadows: RwLock<HashMap<String, Shadowed>>,
}

/// A `SHADOW` pointer's stamp and the package it named (none: no shadow, or one that cannot be
/// loaded, which is logged).
type Shadowed = (Option<PointerStamp>, Option<Arc<ModelPackage>>);

/// What identifies a package directory's files as they are: names, sizes, inodes and times.
type FilesStamp = u64;

fn files_stamp(dir: &std::path::Path) -> FilesStamp {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        e.file_name().hash(&mut hasher);
        if let Ok(m) = e.metadata() {
            (m.len(), m.ino(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()).hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// The package a model serves by default.
struct Served {
    package: Arc<ModelPackage>,
    /// The stamp of the `CURRENT` pointer that named it; `None` for an earlier version served
    /// from a fresh start because the promoted one was refused. While the promoted version is
    /// refused the pointer's stamp differs from this one, so it is tried again.
    pointer: Option<PointerStamp>,
}

impl ModelStore {
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            loaded: RwLock::default(),
            refused: RwLock::default(),
            serving: RwLock::default(),
            shadows: RwLock::default(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The package for `model` at `version`; with `None`, the promoted version, or while that
    /// cannot be served (missing, damaged, failing its checksums), the one served before it (or
    /// else the newest earlier version that loads). The difference is logged and shown in the
    /// metrics (`carecast_model_promoted_refused`), never silent.
    pub fn get(&self, model: &str, version: Option<&str>) -> Result<Arc<ModelPackage>, StoreError> {
        if version.is_some() {
            let (version, dir) = self.registry.resolve(model, version)?;
            return self.load(model, &version, &dir);
        }
        let pointer = self.registry.current_stamp(model)?;
        if let Some(served) = self.serving.read().expect("store lock").get(model)
            && pointer.is_some()
            && served.pointer == pointer
        {
            return Ok(served.package.clone());
        }
        let promoted = self.registry.current(model)?;
        let outcome = self
            .registry
            .resolve(model, Some(&promoted))
            .map_err(StoreError::from)
            .and_then(|(current, dir)| self.load(model, &current, &dir));
        match outcome {
            Ok(package) => {
                let mut serving = self.serving.write().expect("store lock");
                let before = serving.insert(model.to_string(), Served { package: package.clone(), pointer });
                if before.as_ref().is_none_or(|b| !Arc::ptr_eq(&b.package, &package)) {
                    tracing::info!(model, version = %promoted, "serving by default");
                    if let Some(before) = before {
                        crate::metrics::serving(model, &before.package.manifest.version, false);
                    }
                    crate::metrics::serving(model, &promoted, true);
                    crate::metrics::promoted_refused(model, &promoted, false);
                }
                Ok(package)
            }
            Err(refused) => {
                if let Some(previous) = self.serving.read().expect("store lock").get(model) {
                    crate::metrics::promoted_refused(model, &promoted, true);
                    return Ok(previous.package.clone());
                }
                // Nothing served yet (a fresh start): the newest earlier version that loads.
                let earlier = self.registry.versions(model)?;
                for v in earlier.iter().rev().filter(|v| v.parse::<u64>().ok() < promoted.parse::<u64>().ok()) {
                    let (v, dir) = self.registry.resolve(model, Some(v))?;
                    if let Ok(package) = self.load(model, &v, &dir) {
                        tracing::error!(model, promoted = %promoted, serving = %v, error = %refused, "promoted version cannot be served; serving an earlier one");
                        self.serving
                            .write()
                            .expect("store lock")
                            .insert(model.to_string(), Served { package: package.clone(), pointer: None });
                        crate::metrics::serving(model, &v, true);
                        crate::metrics::promoted_refused(model, &promoted, true);
                        return Ok(package);
                    }
                }
                Err(refused)
            }
        }
    }

    /// The version of `model` in shadow, if any (followed like `CURRENT`: one `stat` a request
    /// while the pointer is unchanged). A shadow that cannot be loaded is logged and skipped:
    /// it never stands in the way of the served version.
    pub fn shadow(&self, model: &str) -> Option<Arc<ModelPackage>> {
        let stamp = self.registry.shadow_stamp(model).ok()?;
        if let Some((seen, package)) = self.shadows.read().expect("store lock").get(model)
            && *seen == stamp
        {
            return package.clone();
        }
        let package = match self.registry.shadow(model) {
            Ok(Some(version)) => match self
                .registry
                .resolve(model, Some(&version))
                .map_err(StoreError::from)
                .and_then(|(version, dir)| self.load(model, &version, &dir))
            {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!(model, version, error = %e, "shadow version cannot be loaded; not scoring in shadow");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::error!(model, error = %e, "shadow pointer unreadable");
                None
            }
        };
        self.shadows.write().expect("store lock").insert(model.to_string(), (stamp, package.clone()));
        package
    }

    /// A version's package, loaded and verified once; a refused one is tried again only once its
    /// files have changed.
    fn load(&self, model: &str, version: &str, dir: &std::path::Path) -> Result<Arc<ModelPackage>, StoreError> {
        let key = (model.to_string(), version.to_string());
        if let Some(p) = self.loaded.read().expect("store lock").get(&key) {
            return Ok(p.clone());
        }
        let unloadable =
            |reason: String| StoreError::Unloadable { model: model.to_string(), version: version.to_string(), reason };
        let stamp = files_stamp(dir);
        if let Some((reason, when)) = self.refused.read().expect("store lock").get(&key)
            && *when == stamp
        {
            return Err(unloadable(reason.clone()));
        }
        // A package copied into another version's place is refused too: callers are told the
        // version that scored them.
        let loaded = load_package(dir).map_err(|e| e.to_string()).and_then(|p| {
            if p.manifest.name == model && p.manifest.version == version {
                Ok(Arc::new(p))
            } else {
                Err(format!(
                    "the package is {} version {}, not {model} version {version}",
                    p.manifest.name, p.manifest.version
                ))
            }
        });
        let package = match loaded {
            Ok(p) => p,
            Err(reason) => {
                tracing::error!(model, version, error = %reason, "model package refused");
                self.refused.write().expect("store lock").insert(key, (reason.clone(), stamp));
                return Err(unloadable(reason));
            }
        };
        self.refused.write().expect("store lock").remove(&key);
        self.loaded.write().expect("store lock").insert(key, package.clone());
        Ok(package)
    }

    /// Makes `version` the one served by default, once its package has loaded and passed its
    /// checksums here (a version that would be refused is never promoted), and it has passed its
    /// promotion gates against the version served now, or is `forced` with a reason
    /// (`Registry::promote_gated`).
    pub fn promote(&self, model: &str, version: &str, by: &str, forced: Option<&str>) -> Result<(), StoreError> {
        let (version, dir) = self.registry.resolve(model, Some(version))?;
        self.load(model, &version, &dir)?;
        self.registry.promote_gated(model, &version, by, forced)?;
        match forced {
            None => tracing::info!(model, version, by, "promoted"),
            Some(reason) => tracing::warn!(model, version, by, reason, "promoted past its gates"),
        }
        Ok(())
    }

    /// Goes back to the version promoted before the current one (`Registry::previous`), once
    /// its package has loaded here; returns it.
    pub fn rollback(&self, model: &str, by: &str) -> Result<String, StoreError> {
        let (version, dir) = self.registry.resolve(model, Some(&self.registry.previous(model)?))?;
        self.load(model, &version, &dir)?;
        let version = self.registry.rollback(model, by)?;
        tracing::info!(model, version, by, "rolled back");
        Ok(version)
    }

    /// Loads every model's promoted version; returns how many loaded, logging the refusals.
    pub fn preload(&self) -> Result<usize, StoreError> {
        let mut ok = 0;
        for model in self.registry.models()? {
            match self.get(&model, None) {
                Ok(p) => {
                    tracing::info!(model, version = %p.manifest.version, "model loaded");
                    ok += 1;
                }
                Err(e) => tracing::warn!(model, error = %e, "model not loaded"),
            }
        }
        Ok(ok)
    }
}
