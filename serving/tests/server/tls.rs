//! TLS and mutual TLS on the server's one port, with certificates from a throwaway CA: a clinical
//! system presenting a certificate the trust's CA signed is served (gRPC over h2, CDS Hooks over
//! HTTP/1.1); no certificate, a certificate from another CA, or plain text is refused in the
//! handshake, and the server goes on serving.

use carecast_audit::AuditLog;
use carecast_models::Registry;
use carecast_proto::v1::{self as pb, model_service_client::ModelServiceClient};
use carecast_serving::setting::SettingError;
use carecast_serving::tls::Tls;
use carecast_serving::{AppState, ModelStore, server};
use carecast_training::{Algorithm, TaskSpec, train};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A certificate (PEM) and its key (PEM).
struct Pem {
    cert: String,
    key: String,
}

/// A certificate authority that signs servers' and clients' certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let pem = params.self_signed(&key).unwrap().pem();
        Self { pem, issuer: Issuer::new(params, key) }
    }

    fn sign(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Pem {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        Pem { cert: params.signed_by(&key, &self.issuer).unwrap().pem(), key: key.serialize_pem() }
    }
}

/// Whether a ListModels call over `endpoint` succeeds (a refused handshake may surface at
/// connect or at the first call, depending on the TLS version).
async fn served(endpoint: Endpoint) -> Result<usize, String> {
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    let models = ModelServiceClient::new(channel)
        .list_models(pb::ListModelsRequest {})
        .await
        .map_err(|s| format!("call: {s}"))?;
    Ok(models.into_inner().models.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_trusted_clients_and_refuses_the_rest_in_the_handshake() {
    let dir = std::env::temp_dir().join(format!("carecast-tls-{}", std::process::id()));
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/support2.csv");
    let (task, toml) = TaskSpec::load("support2_hospdead").unwrap();
    train(&task, &toml, &data, &Registry::new(dir.join("registry")), Algorithm::Gbm, None).unwrap();

    let trust = Ca::new("Trust clinical systems CA");
    let server_pem = trust.sign("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let ehr = trust.sign("ehr.trust.nhs.example", ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = Ca::new("Somebody else's CA").sign("ehr.elsewhere.example", ExtendedKeyUsagePurpose::ClientAuth);
    let tls = Tls::from_pem(server_pem.cert.as_bytes(), server_pem.key.as_bytes(), Some(trust.pem.as_bytes())).unwrap();
    assert!(tls.mutual());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let state = Arc::new(AppState::new(
        ModelStore::new(Registry::new(dir.join("registry"))),
        AuditLog::open(&dir.join("audit.jsonl")).unwrap(),
        None,
        carecast_serving::ephemeral_pseudonym_key(),
    ));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, state, Some(tls), async {
        stopped.await.ok();
    }));

    let https = Endpoint::from_shared(format!("https://{address}")).unwrap();
    let client_tls =
        || ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&trust.pem)).domain_name("localhost");

    // The trust's EHR, with its certificate: served over h2.
    let trusted = https.clone().tls_config(client_tls().identity(Identity::from_pem(&ehr.cert, &ehr.key))).unwrap();
    assert_eq!(served(trusted.clone()).await, Ok(1));

    // No client certificate, one from another CA, plain text: each refused.
    let anonymous = https.clone().tls_config(client_tls()).unwrap();
    let unknown =
        https.clone().tls_config(client_tls().identity(Identity::from_pem(&stranger.cert, &stranger.key))).unwrap();
    let plain = Endpoint::from_shared(format!("http://{address}")).unwrap();
    for (who, endpoint) in [("no certificate", anonymous), ("another CA", unknown), ("plain text", plain)] {
        let outcome = served(endpoint).await;
        assert!(outcome.is_err(), "{who}: {outcome:?}");
    }

    // A client that checks the server against another CA refuses the server.
    let wrong_root = https.clone().tls_config(
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(Ca::new("not the trust").pem))
            .domain_name("localhost")
            .identity(Identity::from_pem(&ehr.cert, &ehr.key)),
    );
    assert!(served(wrong_root.unwrap()).await.is_err());

    // CDS Hooks callers that speak only HTTP/1.1 (ALPN `http/1.1`) are served too.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(trust.pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain =
        rustls::pki_types::pem::PemObject::pem_slice_iter(ehr.cert.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = rustls::pki_types::pem::PemObject::from_pem_slice(ehr.key.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    stream.write_all(b"GET /cds-services HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok(); // a TLS close without close_notify is fine here
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"services\""), "{response}");

    // 64 idle sockets held open from one address (127.0.0.2) without a handshake once stalled
    // every client for the whole handshake timeout. Now that address fills its own share of
    // handshakes, the rest are closed at once, and a client from another address is served
    // while they stay open (well inside the 3 s a stalled handshake may hold a slot).
    let mut idle = Vec::new();
    for _ in 0..64 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        idle.push(socket.connect(address).await.unwrap());
    }
    let during = tokio::time::timeout(std::time::Duration::from_secs(2), served(trusted.clone())).await;
    assert_eq!(during.expect("served while idle sockets are held"), Ok(1));
    drop(idle);

    // After all the refusals, the trusted client is still served, and the refusals were counted.
    assert_eq!(served(trusted).await, Ok(1));
    let metrics = carecast_serving::metrics::handle().render();
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("carecast_tls_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 3.0, "refused handshakes counted: {refused}\n{metrics}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_certificate_files_are_refused_with_the_reason() {
    let trust = Ca::new("Trust CA");
    let server = trust.sign("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let refused = |r: Result<Tls, SettingError>| r.err().expect("refused");
    assert_eq!(
        refused(Tls::from_pem(b"", server.key.as_bytes(), None)),
        SettingError::new("TLS certificate", "no PEM certificate found")
    );
    assert_eq!(refused(Tls::from_pem(server.cert.as_bytes(), b"not a key", None)).setting, "TLS key");
    let other = trust.sign("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    assert_eq!(
        refused(Tls::from_pem(server.cert.as_bytes(), other.key.as_bytes(), None)).setting,
        "TLS certificate and key"
    );
    let junk = refused(Tls::from_pem(server.cert.as_bytes(), server.key.as_bytes(), Some(b"junk")));
    assert_eq!(junk, SettingError::new("client CA", "no PEM certificate found"));
    assert!(!Tls::from_pem(server.cert.as_bytes(), server.key.as_bytes(), None).unwrap().mutual());
}
