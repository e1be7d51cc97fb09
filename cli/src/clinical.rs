//! The clinical verb: serve carecast.v1 gRPC and CDS Hooks, under the trust's serve policy
//! ([`carecast_serving::config::ServeConfig::validate`]).

use crate::audit_location;
use anyhow::Context;
use carecast_audit::{AuditLog, Signer, Signing};
use carecast_models::Registry;
use carecast_models::deid::PseudonymKey;
use carecast_serving::auth::{Authenticator, DEFAULT_MAX_LIFETIME_SECONDS};
use carecast_serving::config::ServeConfig;
use carecast_serving::fhir_server::FhirServers;
use carecast_serving::tls::Tls;
use carecast_serving::{AppState, ModelStore, server};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

/// Serve carecast.v1 gRPC (with health and reflection) and CDS Hooks on one port.
#[derive(Args)]
#[command(after_help = "Examples:
  carecast serve --addr 0.0.0.0:50051 --jwks jwks.json --issuer https://idp.trust.nhs.uk --audience carecast \\
      --pseudonym-key-file pseudonym.key --tls-cert server.pem --tls-key server.key --audit-signing-key audit.key
  carecast serve --insecure-demo")]
pub struct Serve {
    /// Address to listen on; off loopback, only with TLS.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// Audit trail: an append-only journal file, or a PostgreSQL connection string
    /// (`postgresql://user:password@host/db`: set CARECAST_AUDIT to keep the password off the
    /// command line); default `<registry>/audit.jsonl`.
    #[arg(long, env = "CARECAST_AUDIT")]
    audit: Option<String>,
    /// JWKS file with the keys that sign callers' bearer tokens (RS384 or ES384).
    #[arg(long, requires_all = ["issuer", "audience"], conflicts_with = "insecure_demo")]
    jwks: Option<PathBuf>,
    /// The `iss` tokens must carry.
    #[arg(long, requires = "jwks")]
    issuer: Option<String>,
    /// The `aud` tokens must carry.
    #[arg(long, requires = "jwks")]
    audience: Option<String>,
    /// The key that signs the audit trail's checkpoints (PKCS#8, from `carecast audit
    /// keygen`): without it records could be rewritten, hashes and all, by whoever can write
    /// the trail.
    #[arg(long, env = "CARECAST_AUDIT_SIGNING_KEY")]
    audit_signing_key: Option<PathBuf>,
    /// A second location (another volume, a shipped log) for copies of the signed checkpoints,
    /// against which `audit verify --checkpoints` finds records cut off the end.
    #[arg(long, requires = "audit_signing_key")]
    audit_checkpoints: Option<PathBuf>,
    /// The longest lifetime a bearer token may have, in seconds (from `iat`, and from now to `exp`).
    #[arg(long, requires = "jwks", default_value_t = DEFAULT_MAX_LIFETIME_SECONDS)]
    max_token_lifetime: i64,
    /// The trust's secret key (a file of at least 32 bytes) that turns EHR patient ids from
    /// CDS Hooks into the audit trail's pseudonyms; the same key always gives the same pseudonym.
    #[arg(long, env = "CARECAST_PSEUDONYM_KEY_FILE", conflicts_with = "insecure_demo")]
    pseudonym_key_file: Option<PathBuf>,
    /// An EHR FHIR server (base URL, https) that CDS Hooks calls without prefetch may be
    /// completed from, with the access token the call carries; repeat for several. Calls
    /// naming any other `fhirServer` are answered 412.
    #[arg(long = "fhir-server", value_name = "URL")]
    fhir_servers: Vec<String>,
    /// A directory of published population runs (`carecast population --output DIR/<run>`),
    /// listed to planners at `/population` with each run's report at `/population/<run>`.
    #[arg(long, value_name = "DIR")]
    population: Option<PathBuf>,
    /// Serve without authenticating callers, on loopback only: a local demo, never with real
    /// patients (pseudonyms from a random key that dies with the process).
    #[arg(long)]
    insecure_demo: bool,
    /// TLS: the server's certificate chain (PEM, leaf first). Without TLS the server binds
    /// to loopback only (behind a TLS-terminating proxy).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS: the server's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: the CA bundle (PEM) that clinical systems' client certificates must chain
    /// to; clients without one are refused in the handshake.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
}

impl Serve {
    /// The files named on the command line, read into the server's configuration.
    fn config(&self) -> anyhow::Result<ServeConfig> {
        let auth = match (&self.jwks, &self.issuer, &self.audience) {
            (Some(jwks), Some(issuer), Some(audience)) => {
                let text = std::fs::read_to_string(jwks).with_context(|| format!("{}", jwks.display()))?;
                let auth = Authenticator::from_jwks(&text, issuer, audience)?;
                Some(auth.with_max_lifetime(self.max_token_lifetime))
            }
            _ => None,
        };
        let pseudonyms = self.pseudonym_key_file.as_deref().map(PseudonymKey::from_file).transpose()?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Tls::from_files(cert, key, self.client_ca.as_deref())?),
            _ => None,
        };
        Ok(ServeConfig { auth, pseudonyms, tls, insecure_demo: self.insecure_demo })
    }
}

pub async fn serve(registry: &Registry, args: Serve) -> anyhow::Result<()> {
    // The policy is checked against the address before anything listens on it.
    let addr = tokio::net::lookup_host(&args.addr)
        .await
        .with_context(|| format!("--addr {}", args.addr))?
        .next()
        .with_context(|| format!("--addr {}: resolves to no address", args.addr))?;
    let config = args.config()?.validate(addr)?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    if config.auth.is_none() {
        tracing::warn!("serving WITHOUT authentication (--insecure-demo): a local demo only");
    }
    let store = ModelStore::new(registry.clone());
    let loaded = store.preload()?;
    let signer = args.audit_signing_key.as_deref().map(Signer::from_file).transpose()?;
    if signer.is_none() {
        tracing::warn!(
            "the audit trail's checkpoints are not signed (no --audit-signing-key): its records could be rewritten undetected by whoever can write it"
        );
    }
    let signing = Signing { signer, copies: args.audit_checkpoints };
    let audit = AuditLog::open_signed(&audit_location(registry, args.audit), signing)?;
    let transport = match &config.tls {
        Some(t) if t.mutual() => "mutual TLS",
        Some(_) => "TLS",
        None => "plain text",
    };
    tracing::info!(addr = %local, transport, models = loaded, audit = %audit.location(), "carecast serving");
    let shutdown = async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: no new connections; draining in-flight requests");
    };
    let fhir_servers = FhirServers::new(&args.fhir_servers)?;
    let mut state = AppState::new(store, audit, config.auth, config.pseudonyms).with_fhir_servers(fhir_servers);
    if let Some(dir) = args.population {
        anyhow::ensure!(dir.is_dir(), "--population {}: not a directory", dir.display());
        state = state.with_population(dir);
    }
    server::serve(listener, Arc::new(state), config.tls, shutdown).await?;
    tracing::info!("drained; stopped");
    Ok(())
}
