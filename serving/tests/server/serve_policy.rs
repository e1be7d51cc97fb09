//! The serve policy as a library user meets it (`ServeConfig::validate`): no server without
//! authentication and the trust's pseudonym key, none in plain text off loopback, and the
//! unauthenticated demo on loopback only.

use carecast_models::deid::PseudonymKey;
use carecast_serving::auth::Authenticator;
use carecast_serving::config::{PolicyError, ServeConfig};
use carecast_serving::tls::Tls;
use std::net::SocketAddr;

fn authenticator() -> Authenticator {
    let (_, jwk) = super::auth::key("policy");
    Authenticator::from_jwks(&serde_json::json!({ "keys": [jwk] }).to_string(), "iss", "aud").unwrap()
}

fn trust_key() -> PseudonymKey {
    PseudonymKey::new(vec![7; PseudonymKey::MIN_BYTES]).unwrap()
}

fn tls() -> Tls {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    Tls::from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes(), None).unwrap()
}

fn at(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}

fn refusal(config: ServeConfig, addr: &str) -> PolicyError {
    config.validate(at(addr)).err().expect("refused")
}

#[test]
fn a_server_needs_authentication_and_the_trusts_pseudonym_key() {
    assert_eq!(refusal(ServeConfig::default(), "127.0.0.1:50051"), PolicyError::NoAuthentication);
    let no_key = ServeConfig { auth: Some(authenticator()), ..Default::default() };
    assert_eq!(refusal(no_key, "127.0.0.1:50051"), PolicyError::NoPseudonymKey);
    let no_auth = ServeConfig { pseudonyms: Some(trust_key()), ..Default::default() };
    assert_eq!(refusal(no_auth, "127.0.0.1:50051"), PolicyError::NoAuthentication);
    let complete = ServeConfig { auth: Some(authenticator()), pseudonyms: Some(trust_key()), ..Default::default() };
    let validated = complete.validate(at("127.0.0.1:50051")).unwrap();
    assert!(validated.auth.is_some() && validated.tls.is_none());
    assert_eq!(validated.pseudonyms.pseudonym("fhir", "p1"), trust_key().pseudonym("fhir", "p1"));
}

#[test]
fn plain_text_is_served_on_loopback_only() {
    let plain = || ServeConfig { auth: Some(authenticator()), pseudonyms: Some(trust_key()), ..Default::default() };
    for exposed in ["0.0.0.0:50051", "10.1.2.3:443", "[::]:50051"] {
        assert_eq!(refusal(plain(), exposed), PolicyError::PlainTextOffLoopback(at(exposed)), "{exposed}");
    }
    assert!(plain().validate(at("[::1]:50051")).is_ok());
    let encrypted = ServeConfig { tls: Some(tls()), ..plain() };
    assert!(encrypted.validate(at("0.0.0.0:50051")).unwrap().tls.is_some());
}

#[test]
fn the_demo_runs_on_loopback_without_secrets_and_nowhere_else() {
    let demo = || ServeConfig { insecure_demo: true, ..Default::default() };
    let validated = demo().validate(at("127.0.0.1:0")).unwrap();
    assert!(validated.auth.is_none());
    // Its pseudonyms come from a key drawn for this process, never the trust's.
    assert_ne!(validated.pseudonyms.pseudonym("fhir", "p1"), trust_key().pseudonym("fhir", "p1"));
    assert_eq!(refusal(demo(), "0.0.0.0:50051"), PolicyError::DemoOffLoopback(at("0.0.0.0:50051")));
    // TLS does not make an unauthenticated server safe to expose.
    let exposed = ServeConfig { tls: Some(tls()), ..demo() };
    assert_eq!(refusal(exposed, "0.0.0.0:50051"), PolicyError::DemoOffLoopback(at("0.0.0.0:50051")));
    let with_auth = ServeConfig { auth: Some(authenticator()), ..demo() };
    assert_eq!(refusal(with_auth, "127.0.0.1:0"), PolicyError::DemoWithSecrets);
}
