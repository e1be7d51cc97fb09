//! The audit trail's verbs: verify it, and make the key that signs its checkpoints.

use crate::audit_location;
use anyhow::Context;
use carecast_audit::Signer;
use carecast_models::Registry;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Action {
    /// Check the hash chain (a running server may go on writing to it): every record present,
    /// linked to the one before and unaltered. Prints the count and the head hash; keep the head
    /// elsewhere to detect records cut off the end later.
    #[command(after_help = "Examples:
  carecast audit verify
  carecast audit verify --public-key 3b6a27bc... --checkpoints /mnt/other-volume/checkpoints.jsonl")]
    Verify {
        /// A journal file, or a PostgreSQL connection string; default `<registry>/audit.jsonl`.
        #[arg(long, env = "CARECAST_AUDIT")]
        audit: Option<String>,
        /// The server's public signing key (hex, as `audit keygen` prints): every checkpoint must
        /// be signed by it, and at least one must exist.
        #[arg(long)]
        public_key: Option<String>,
        /// The second location's copies of the checkpoints (`serve --audit-checkpoints`): each
        /// must still be in the trail, unchanged.
        #[arg(long, requires = "public_key")]
        checkpoints: Option<PathBuf>,
    },
    /// Make an Ed25519 key for signing the trail's checkpoints: writes the private key (PKCS#8,
    /// readable by its owner only) and prints the public key to verify with.
    #[command(after_help = "Example:
  carecast audit keygen --out /etc/carecast/audit-signing.key")]
    Keygen {
        /// Where to write the private key; it must not exist yet.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(registry: &Registry, action: Action) -> anyhow::Result<()> {
    match action {
        Action::Verify { audit, public_key, checkpoints } => {
            let trail = audit_location(registry, audit);
            let verified = match &public_key {
                Some(key) => carecast_audit::verify_trusted(trail.clone(), key.trim(), checkpoints.as_deref())?,
                None => carecast_audit::verify(trail.clone())?,
            };
            println!(
                "{trail}: {} records, chain intact; head {}\n{} batch run(s) recorded once each (input and output SHA-256, row counts)",
                verified.records, verified.head, verified.batch_runs
            );
            match (verified.last_checkpoint, &public_key) {
                (Some((seq, at)), Some(_)) => println!(
                    "{} signed checkpoints, by the trusted key; the last at record {seq} ({at}) covers every record before it",
                    verified.checkpoints
                ),
                (Some((seq, at)), None) => println!(
                    "{} checkpoints, each signed by the key it names; the last at record {seq} ({at}); give --public-key to check the key",
                    verified.checkpoints
                ),
                (None, _) => println!("no signed checkpoints: start the server with --audit-signing-key"),
            }
        }
        Action::Keygen { out } => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let (document, public) = Signer::generate()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| format!("{}", out.display()))?;
            file.write_all(&document)?;
            file.sync_all()?;
            println!("signing key written to {} (keep it secret); public key:\n{public}", out.display());
        }
    }
    Ok(())
}
