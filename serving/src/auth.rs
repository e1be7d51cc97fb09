//! Who may call: bearer JWTs (RS384 or ES384) signed by a key in the trust's JWKS file, with the
//! configured issuer and audience, unexpired, carrying roles in a `roles` claim. Each call needs
//! one role (scoring: clinician; batches: planner; model metadata: researcher; promotion and
//! roll-back: admin); admin may do everything. A missing or invalid token is UNAUTHENTICATED, a valid one without the role
//! PERMISSION_DENIED, each with the reason. Without an authenticator the server runs in an
//! explicit local demo mode.
//!
//! An EHR sends the same token with every call until it expires, and verifying an ES384 or
//! RS384 signature costs more CPU than scoring (about 1 ms against 0.1 ms on this machine).
//! So a token's verified claims are kept, keyed by the SHA-256 of its exact bytes, and reused
//! while it is unexpired: any other bytes, a forgery included, are verified afresh. Only what
//! can change with time is checked again (`exp`; `nbf` and the lifetime only get easier to meet
//! as time passes), and the role on every call.

use crate::setting::SettingError;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Clinician,
    Researcher,
    Planner,
    /// Outcome feeds: may record outcomes (`RecordOutcomes`), nothing else.
    Monitor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Researcher => "researcher",
            Role::Planner => "planner",
            Role::Monitor => "monitor",
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

/// The HTTP status and message of a refused request (CDS Hooks, population reports).
impl From<Refused> for (axum::http::StatusCode, String) {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Unauthenticated(m) => (axum::http::StatusCode::UNAUTHORIZED, m),
            Refused::Forbidden(m) => (axum::http::StatusCode::FORBIDDEN, m),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
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
/// Verified tokens kept at most (an EHR integration holds a few; a trust's clinicians a few
/// thousand an hour). When full, expired ones are dropped, and if none had, all.
const VERIFIED_TOKENS: usize = 8192;

pub struct Authenticator {
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
    max_lifetime: i64,
    /// Claims of tokens whose signature and claims were verified, by SHA-256 of the token.
    verified: Mutex<HashMap<[u8; 32], Claims>>,
}

impl Authenticator {
    /// From a JWKS document (RSA keys for RS384, P-384 keys for ES384) and the issuer and
    /// audience tokens must name.
    pub fn from_jwks(jwks: &str, issuer: &str, audience: &str) -> Result<Self, SettingError> {
        let set: JwkSet = serde_json::from_str(jwks).map_err(SettingError::at("JWKS"))?;
        let keys = set
            .keys
            .iter()
            .enumerate()
            .map(|(i, jwk)| {
                let algorithm = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS384,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES384,
                    _ => {
                        return Err(SettingError::new(
                            format_args!("JWKS key {i}"),
                            "only RSA (RS384) and EC P-384 (ES384) keys are accepted",
                        ));
                    }
                };
                let key = DecodingKey::from_jwk(jwk).map_err(SettingError::at(format_args!("JWKS key {i}")))?;
                Ok((jwk.common.key_id.clone(), algorithm, key))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SettingError::new("JWKS", "no keys"));
        }
        let verified = Mutex::new(HashMap::new());
        Ok(Self {
            keys,
            issuer: issuer.into(),
            audience: audience.into(),
            max_lifetime: DEFAULT_MAX_LIFETIME_SECONDS,
            verified,
        })
    }

    /// Refuses tokens that live longer than `seconds` (a stolen long-lived token is a standing
    /// key to patients' scores).
    pub fn with_max_lifetime(mut self, seconds: i64) -> Self {
        self.max_lifetime = seconds;
        self
    }

    /// Checks the `Authorization` value and the role; returns the caller (the token's subject).
    pub fn check(&self, authorization: Option<&str>, needed: Role) -> Result<String, Refused> {
        self.check_at(authorization, needed, chrono::Utc::now().timestamp())
    }

    /// [`Self::check`] on an HTTP request's `Authorization` header.
    pub fn check_headers(&self, headers: &axum::http::HeaderMap, needed: Role) -> Result<String, Refused> {
        self.check(headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()), needed)
    }

    /// [`Self::check`] with the clock at `now` (seconds since the epoch) for a token verified
    /// before; a token not seen before is verified against the system clock.
    fn check_at(&self, authorization: Option<&str>, needed: Role, now: i64) -> Result<String, Refused> {
        let token = authorization
            .ok_or_else(|| Refused::Unauthenticated("missing bearer token (authorization: Bearer <JWT>)".into()))?
            .strip_prefix("Bearer ")
            .ok_or_else(|| Refused::Unauthenticated("authorization: expected `Bearer <JWT>`".into()))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let unexpired = |c: &Claims| c.exp.saturating_add(LEEWAY_SECONDS as i64) >= now;
        // A map of plain data is whole even if a holder panicked: recover it rather than refuse all.
        let verified = || self.verified.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let known = verified().get(&digest).cloned();
        let claims = match known {
            Some(claims) if unexpired(&claims) => claims,
            Some(_) => return Err(Refused::Unauthenticated("token: ExpiredSignature".into())),
            None => {
                let claims = self.verify(token)?;
                let mut verified = verified();
                if verified.len() >= VERIFIED_TOKENS {
                    verified.retain(|_, c| unexpired(c));
                    if verified.len() >= VERIFIED_TOKENS {
                        verified.clear();
                    }
                }
                verified.insert(digest, claims.clone());
                claims
            }
        };
        if claims.roles.iter().any(|r| r == needed.as_str() || r == Role::Admin.as_str()) {
            Ok(claims.sub)
        } else {
            Err(Refused::Forbidden(format!(
                "this call needs the `{}` role; the token has {:?}",
                needed.as_str(),
                claims.roles
            )))
        }
    }

    /// A token's signature, issuer, audience, times, lifetime and subject, checked.
    fn verify(&self, token: &str) -> Result<Claims, Refused> {
        let unauthenticated = |m: String| Refused::Unauthenticated(m);
        let header = decode_header(token).map_err(|e| unauthenticated(format!("token: {e}")))?;
        let (_, algorithm, key) = self
            .keys
            .iter()
            .find(|(kid, alg, _)| *alg == header.alg && (header.kid.is_none() || *kid == header.kid))
            .ok_or_else(|| {
                let kid: Option<String> =
                    header.kid.as_deref().map(|k| k.chars().filter(char::is_ascii_graphic).take(32).collect());
                unauthenticated(format!("token: no trusted key for algorithm {:?} and key id {kid:?}", header.alg))
            })?;
        let mut validation = Validation::new(*algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        let claims =
            decode::<Claims>(token, key, &validation).map_err(|e| unauthenticated(format!("token: {e}")))?.claims;
        let now = chrono::Utc::now().timestamp();
        let lifetime = claims.exp.saturating_sub(claims.iat.unwrap_or(now).min(now));
        if lifetime > self.max_lifetime {
            return Err(unauthenticated(format!(
                "token: lives {lifetime} s, longer than the {} s allowed",
                self.max_lifetime
            )));
        }
        if claims.sub.is_empty() || claims.sub.chars().count() > MAX_SUBJECT || claims.sub.chars().any(char::is_control)
        {
            return Err(unauthenticated(format!("token: `sub` must be 1 to {MAX_SUBJECT} printable characters")));
        }
        // Shadow scores are audited under this mark: no caller may carry it.
        if claims.sub.starts_with(carecast_audit::SHADOW_CALLER) {
            return Err(unauthenticated(format!(
                "token: `sub` must not start with `{}`",
                carecast_audit::SHADOW_CALLER
            )));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    /// An authenticator trusting a fresh P-384 key, and a clinician's token signed with it.
    fn authenticator_and_token(expires_in: i64) -> (Authenticator, String) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = serde_json::json!({ "keys": [{ "kty": "EC", "crv": "P-384", "kid": "k", "alg": "ES384", "x": b64(&point[1..49]), "y": b64(&point[49..97]) }] });
        let auth = Authenticator::from_jwks(&jwks.to_string(), "iss", "aud").unwrap();
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({ "sub": "dr-a", "roles": ["clinician"], "iss": "iss", "aud": "aud", "iat": now, "exp": now + expires_in });
        let mut header = jsonwebtoken::Header::new(Algorithm::ES384);
        header.kid = Some("k".into());
        (auth, jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref())).unwrap())
    }

    #[test]
    fn a_verified_token_is_reused_only_while_unexpired_and_only_for_its_exact_bytes() {
        let (auth, token) = authenticator_and_token(60);
        let bearer = format!("Bearer {token}");
        let now = chrono::Utc::now().timestamp();
        assert_eq!(auth.check(Some(&bearer), Role::Clinician).unwrap(), "dr-a");
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
        // Reused: the role is still checked on each call, and expiry against the clock.
        assert_eq!(auth.check_at(Some(&bearer), Role::Clinician, now + 60).unwrap(), "dr-a");
        assert!(matches!(auth.check(Some(&bearer), Role::Planner), Err(Refused::Forbidden(_))));
        let expired = auth.check_at(Some(&bearer), Role::Clinician, now + 60 + LEEWAY_SECONDS as i64 + 1);
        assert!(matches!(expired, Err(Refused::Unauthenticated(m)) if m.contains("Expired")));
        // The same claims under a changed signature are verified afresh, and refused.
        let (body, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let forged = format!("Bearer {body}.{flipped}{}", &signature[1..]);
        assert!(matches!(auth.check(Some(&forged), Role::Clinician), Err(Refused::Unauthenticated(_))));
        assert_eq!(auth.verified.lock().unwrap().len(), 1, "a refused token is not kept");
    }
}
