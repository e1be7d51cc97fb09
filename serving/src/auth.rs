//! Who may call: bearer JWTs (RS384 or ES384) signed by a key in the trust's JWKS file, with the
//! configured issuer and audience, unexpired, carrying roles in a `roles` claim. Each call needs
//! one role (scoring: clinician; batches: planner; model metadata: researcher; promotion and
//! roll-back: admin); admin may do everything. A missing or invalid token is UNAUTHENTICATED, a valid one without the role
//! PERMISSION_DENIED, each with the reason. Without an authenticator the server runs in an
//! explicit local demo mode.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Clinician,
    Researcher,
    Planner,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Researcher => "researcher",
            Role::Planner => "planner",
            Role::Admin => "admin",
        }
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No valid token: UNAUTHENTICATED / HTTP 401.
    Unauthenticated(String),
    /// A valid token without the role: PERMISSION_DENIED / HTTP 403.
    Forbidden(String),
}

impl From<Refused> for tonic::Status {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Unauthenticated(m) => tonic::Status::unauthenticated(m),
            Refused::Forbidden(m) => tonic::Status::permission_denied(m),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    roles: Vec<String>,
}

/// Clock difference tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 5;
/// The longest a token may live (from `iat`, and from now to `exp`) unless configured otherwise.
pub const DEFAULT_MAX_LIFETIME_SECONDS: i64 = 3600;
/// The longest subject accepted: it is written to every audit record as the caller.
pub const MAX_SUBJECT: usize = 128;

pub struct Authenticator {
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
    max_lifetime: i64,
}

impl Authenticator {
    /// From a JWKS document (RSA keys for RS384, P-384 keys for ES384) and the issuer and
    /// audience tokens must name.
    pub fn from_jwks(jwks: &str, issuer: &str, audience: &str) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_str(jwks).map_err(|e| format!("JWKS: {e}"))?;
        let keys = set
            .keys
            .iter()
            .enumerate()
            .map(|(i, jwk)| {
                let algorithm = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS384,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES384,
                    _ => return Err(format!("JWKS key {i}: only RSA (RS384) and EC P-384 (ES384) keys are accepted")),
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("JWKS key {i}: {e}"))?;
                Ok((jwk.common.key_id.clone(), algorithm, key))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("JWKS: no keys".into());
        }
        Ok(Self { keys, issuer: issuer.into(), audience: audience.into(), max_lifetime: DEFAULT_MAX_LIFETIME_SECONDS })
    }

    /// Refuses tokens that live longer than `seconds` (a stolen long-lived token is a standing
    /// key to patients' scores).
    pub fn with_max_lifetime(mut self, seconds: i64) -> Self {
        self.max_lifetime = seconds;
        self
    }

    /// Checks the `Authorization` value and the role; returns the caller (the token's subject).
    pub fn check(&self, authorization: Option<&str>, needed: Role) -> Result<String, Refused> {
        let unauthenticated = |m: String| Refused::Unauthenticated(m);
        let token = authorization
            .ok_or_else(|| unauthenticated("missing bearer token (authorization: Bearer <JWT>)".into()))?
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthenticated("authorization: expected `Bearer <JWT>`".into()))?;
        let header = decode_header(token).map_err(|e| unauthenticated(format!("token: {e}")))?;
        let (_, algorithm, key) = self
            .keys
            .iter()
            .find(|(kid, alg, _)| *alg == header.alg && (header.kid.is_none() || *kid == header.kid))
            .ok_or_else(|| {
                let kid: Option<String> = header.kid.as_deref().map(|k| k.chars().filter(char::is_ascii_graphic).take(32).collect());
                unauthenticated(format!("token: no trusted key for algorithm {:?} and key id {kid:?}", header.alg))
            })?;
        let mut validation = Validation::new(*algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        let claims = decode::<Claims>(token, key, &validation).map_err(|e| unauthenticated(format!("token: {e}")))?.claims;
        let now = chrono::Utc::now().timestamp();
        let lifetime = claims.exp - claims.iat.unwrap_or(now).min(now);
        if lifetime > self.max_lifetime {
            return Err(unauthenticated(format!("token: lives {lifetime} s, longer than the {} s allowed", self.max_lifetime)));
        }
        if claims.sub.is_empty() || claims.sub.chars().count() > MAX_SUBJECT || claims.sub.chars().any(char::is_control) {
            return Err(unauthenticated(format!("token: `sub` must be 1 to {MAX_SUBJECT} printable characters")));
        }
        if claims.roles.iter().any(|r| r == needed.as_str() || r == Role::Admin.as_str()) {
            Ok(claims.sub)
        } else {
            Err(Refused::Forbidden(format!("this call needs the `{}` role; the token has {:?}", needed.as_str(), claims.roles)))
        }
    }
}
