//! Loaded model packages, keyed by name and version. A request without a version follows the
//! registry's `CURRENT` pointer, read on every request, so a promotion takes effect without a
//! restart; each version is loaded (and its checksums verified) once.

use carecast_models::registry::RegistryError;
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
}

impl ModelStore {
    pub fn new(registry: Registry) -> Self {
        Self { registry, loaded: RwLock::new(HashMap::new()) }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The package for `model` at `version` (the promoted one when `None`), loading it on first use.
    pub fn get(&self, model: &str, version: Option<&str>) -> Result<Arc<ModelPackage>, StoreError> {
        let (version, dir) = self.registry.resolve(model, version)?;
        let key = (model.to_string(), version);
        if let Some(p) = self.loaded.read().expect("store lock").get(&key) {
            return Ok(p.clone());
        }
        let package = load_package(&dir).map_err(|e| {
            tracing::error!(model, version = %key.1, error = %e, "model package refused");
            StoreError::Unloadable { model: key.0.clone(), version: key.1.clone(), reason: e.to_string() }
        })?;
        let package = Arc::new(package);
        self.loaded.write().expect("store lock").insert(key, package.clone());
        Ok(package)
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
