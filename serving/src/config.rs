//! The trust's policy for running a server, in one checked place: a server answers only
//! authenticated callers, turns EHR patient ids into the trust's stable pseudonyms, and never
//! carries health data in plain text off this machine. The one exception is an explicit local
//! demo, which is held to loopback. Whoever starts a server (the CLI, a test, another program)
//! goes through [`ServeConfig::validate`].

use crate::auth::Authenticator;
use crate::tls::Tls;
use carecast_models::deid::PseudonymKey;
use std::net::SocketAddr;

/// How a server is asked to run: what the operator gave, not yet checked against the policy.
#[derive(Default)]
pub struct ServeConfig {
    /// Who may call: verifies bearer tokens.
    pub auth: Option<Authenticator>,
    /// The trust's key for the audit trail's pseudonyms of EHR patient ids.
    pub pseudonyms: Option<PseudonymKey>,
    pub tls: Option<Tls>,
    /// A local demo: no authentication, and pseudonyms from a random key that dies with the
    /// process; loopback only, never with real patients.
    pub insecure_demo: bool,
}

/// A configuration the policy accepts, for a server on the address it was checked for.
pub struct Validated {
    /// `None` only in the local demo.
    pub auth: Option<Authenticator>,
    pub pseudonyms: PseudonymKey,
    pub tls: Option<Tls>,
}

/// Why the policy refuses to serve, and what to give instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "refusing to serve without authentication: give --jwks FILE --issuer ISS --audience AUD, or --insecure-demo for a local demo"
    )]
    NoAuthentication,
    #[error(
        "refusing to serve without the trust's pseudonym key: give --pseudonym-key-file FILE (or CARECAST_PSEUDONYM_KEY_FILE)"
    )]
    NoPseudonymKey,
    #[error("refusing the local demo with an authenticator or the trust's pseudonym key: the demo uses neither")]
    DemoWithSecrets,
    #[error("refusing to serve without authentication on {0}: --insecure-demo binds to loopback only")]
    DemoOffLoopback(SocketAddr),
    #[error(
        "refusing to serve health data in plain text on {0}: give --tls-cert and --tls-key (and --client-ca for mutual TLS), or bind to loopback behind a TLS-terminating proxy"
    )]
    PlainTextOffLoopback(SocketAddr),
}

impl ServeConfig {
    /// Checks the configuration for a server bound to `local` and completes it: the demo's
    /// throwaway pseudonym key is drawn here.
    pub fn validate(self, local: SocketAddr) -> Result<Validated, PolicyError> {
        let ServeConfig { auth, pseudonyms, tls, insecure_demo } = self;
        let pseudonyms = if insecure_demo {
            if auth.is_some() || pseudonyms.is_some() {
                return Err(PolicyError::DemoWithSecrets);
            }
            if !local.ip().is_loopback() {
                return Err(PolicyError::DemoOffLoopback(local));
            }
            crate::ephemeral_pseudonym_key()
        } else {
            if auth.is_none() {
                return Err(PolicyError::NoAuthentication);
            }
            pseudonyms.ok_or(PolicyError::NoPseudonymKey)?
        };
        if tls.is_none() && !local.ip().is_loopback() {
            return Err(PolicyError::PlainTextOffLoopback(local));
        }
        Ok(Validated { auth, pseudonyms, tls })
    }
}
