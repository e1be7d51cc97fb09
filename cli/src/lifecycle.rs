//! Releasing models: list the registry, promote a version, roll back.

use carecast_models::Registry;
use carecast_serving::ModelStore;
use clap::Args;

pub fn list(registry: &Registry) -> anyhow::Result<()> {
    for name in registry.models()? {
        let current = registry.current(&name).unwrap_or_else(|_| "-".into());
        println!("{name}: versions {} (current {current})", registry.versions(&name)?.join(", "));
    }
    Ok(())
}

/// Make a version the one served by default; running servers pick it up without a restart
/// (and keep serving the previous one if it fails to load).
#[derive(Args)]
#[command(after_help = "Example:
  carecast promote --model support2_hospdead-gbm --version 3")]
pub struct Promote {
    /// The model's name in the registry.
    #[arg(long)]
    model: String,
    /// The version to serve.
    #[arg(long)]
    version: String,
}

pub fn promote(registry: &Registry, args: Promote) -> anyhow::Result<()> {
    ModelStore::new(registry.clone()).promote(&args.model, &args.version, &cli_user())?;
    println!("{}: v{} promoted", args.model, args.version);
    Ok(())
}

/// Go back to the version promoted before the current one.
#[derive(Args)]
#[command(after_help = "Example:
  carecast rollback --model support2_hospdead-gbm")]
pub struct Rollback {
    /// The model's name in the registry.
    #[arg(long)]
    model: String,
}

pub fn rollback(registry: &Registry, args: Rollback) -> anyhow::Result<()> {
    let version = ModelStore::new(registry.clone()).rollback(&args.model, &cli_user())?;
    println!("{}: rolled back to v{version}", args.model);
    Ok(())
}

/// Who promoted or rolled back from the command line, for the registry's history.
fn cli_user() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}
