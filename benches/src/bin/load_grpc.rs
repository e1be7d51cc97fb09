//! Load on loopback: the gRPC server (in this process, on its own runtime) scoring and fully
//! explaining the synthetic deterioration GBM for 1, 16 and 64 concurrent clients, each on its own
//! connection, sending one request after another for a fixed time; then CDS Hooks `patient-view`
//! for the same model (FHIR prefetch in, card out) at 1 and 16 clients. Prints throughput, p50 /
//! p99 / p99.9 latency and the error count per level. Both sides share this machine's cores.
//! Everything runs twice: in plain text without authentication (the server alone), and as
//! production runs it, over TLS with every request carrying a bearer JWT (ES384) the server
//! verifies.
//!
//! `cargo run --release -p carecast-benches --bin load_grpc -- [seconds per level] [patients]`
//! (defaults 10 and 20,000; the model is trained first on a synthetic population of that size).

use carecast_audit::AuditLog;
use carecast_models::{Registry, Value};
use carecast_proto::v1::{self as pb, feature_value};
use carecast_serving::{AppState, ModelStore, server};
use carecast_tables::row_values;
use carecast_training::cohort::event_training_set;
use carecast_training::dataset::Rows;
use carecast_training::pipeline::train_set;
use carecast_training::{Algorithm, synth};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;

/// How clients reach the server: TLS (trusting the server's certificate) and a bearer token, or
/// neither.
#[derive(Clone, Default)]
struct Transport {
    tls: Option<tokio_rustls::TlsConnector>,
    bearer: Option<String>,
}

/// A byte stream to the server, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Transport {
    /// A connection to `host` (`ip:port`) offering `alpn` over TLS.
    async fn connect(&self, host: &str, alpn: &[u8]) -> anyhow::Result<Box<dyn Io>> {
        let stream = tokio::net::TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        Ok(match &self.tls {
            None => Box::new(stream),
            Some(connector) => {
                let mut config = rustls::ClientConfig::clone(connector.config());
                config.alpn_protocols = vec![alpn.to_vec()];
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                Box::new(connector.connect(rustls::pki_types::ServerName::try_from("localhost")?, stream).await?)
            }
        })
    }
}

/// TLS and JWT as production configures them: a server certificate for localhost, a P-384 key
/// whose public JWK the server trusts, and a clinician's token signed with it.
fn production() -> anyhow::Result<(carecast_serving::tls::Tls, carecast_serving::auth::Authenticator, Transport)> {
    use base64::Engine;
    use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
    let tls = carecast_serving::tls::Tls::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), None)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone())?;
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();

    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).map_err(|e| anyhow::anyhow!("{e}"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = serde_json::json!({ "keys": [{ "kty": "EC", "crv": "P-384", "kid": "load", "alg": "ES384", "use": "sig", "x": b64(&point[1..49]), "y": b64(&point[49..97]) }] });
    let (issuer, audience) = ("https://idp.trust.nhs.example", "carecast");
    let auth = carecast_serving::auth::Authenticator::from_jwks(&jwks.to_string(), issuer, audience)?;
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({ "sub": "load-generator", "roles": ["clinician"], "iss": issuer, "aud": audience, "iat": now, "exp": now + 3000 });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some("load".into());
    let token = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()))?;
    Ok((
        tls,
        auth,
        Transport {
            tls: Some(tokio_rustls::TlsConnector::from(Arc::new(client))),
            bearer: Some(format!("Bearer {token}")),
        },
    ))
}

/// mimalloc: a scored request makes and frees many small allocations on whichever worker thread
/// runs it, which glibc's allocator serves markedly slower under concurrency.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The unary scoring call, as both generators address it.
const SCORE: &str = "/carecast.v1.ScoringService/Score";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let patients: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("carecast-load-{}", std::process::id()));
    synth::write_population(patients, 3, 250_000, &dir.join("meds"), &indicatif::ProgressBar::hidden())?;
    let task = include_str!("../../../training/tasks/synth_deterioration_24h.toml");
    let features = include_str!("../../../training/tasks/synth_deterioration_features.toml");
    let set = event_training_set(&dir.join("meds"), task, features, Rows::TaskSplit)?;
    let registry = Registry::new(dir.join("registry"));
    let report = train_set(&set, &registry, Algorithm::Gbm, None)?;
    // Held-out observation sets as requests: every feature by name, every contribution asked for.
    let names: Vec<String> = set.features.iter().map(|f| f.name.clone()).collect();
    let requests: Arc<Vec<pb::ScoreRequest>> = Arc::new(
        set.data
            .test_rows
            .iter()
            .take(2000)
            .enumerate()
            .map(|(i, &r)| {
                let features = names
                    .iter()
                    .zip(row_values(&set.data.columns, r).expect("rows were read"))
                    .map(|(n, v)| {
                        let value = match v {
                            Value::Number(x) => feature_value::Value::Number(x),
                            Value::Text(t) => feature_value::Value::Category(t.into()),
                            Value::Missing => feature_value::Value::Missing(true),
                        };
                        (n.clone(), pb::FeatureValue { value: Some(value) })
                    })
                    .collect();
                pb::ScoreRequest {
                    model: report.name.clone(),
                    patient_key: format!("load-{i}"),
                    features,
                    ..Default::default()
                }
            })
            .collect(),
    );

    let clients_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let trees = tree_count(&dir, &report.name);
    let (tls, auth, secure) = production()?;
    for (label, transport, server_tls, server_auth) in [
        ("plain text, no authentication", Transport::default(), None, None),
        ("TLS, bearer JWT verified on every request", secure, Some(tls), Some(auth)),
    ] {
        let server_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let listener = server_runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let host = listener.local_addr()?.to_string();
        let audit = AuditLog::open(&dir.join(format!("audit-{}.jsonl", server_tls.is_some())))?;
        let state = Arc::new(AppState::new(
            ModelStore::new(registry.clone()),
            audit,
            server_auth,
            carecast_serving::ephemeral_pseudonym_key(),
        ));
        server_runtime.spawn(server::serve(listener, state.clone(), server_tls, std::future::pending()));

        println!("== {label} ==");
        println!("synthetic deterioration GBM ({trees} trees), Score with full explanation, {seconds} s per level");
        println!(
            "{:>8} {:>12} {:>9} {:>9} {:>9} {:>7}",
            "clients", "requests/s", "p50 µs", "p99 µs", "p99.9 µs", "errors"
        );
        for clients in [1usize, 16, 64] {
            let measured = clients_runtime.block_on(level(
                &host,
                &transport,
                clients,
                Duration::from_secs(seconds),
                requests.clone(),
            ))?;
            print_level(clients, seconds, measured, None);
        }
        if transport.tls.is_none() && h2load_installed() {
            println!("the same with nghttp2's h2load as the generator (its own process, one thread; one request body)");
            println!(
                "{:>8} {:>12} {:>9} {:>9} {:>9} {:>7} {:>14}",
                "clients", "requests/s", "p50 µs", "p99 µs", "p99.9 µs", "errors", "server CPU µs"
            );
            let body = dir.join("request.grpc");
            std::fs::write(&body, grpc_frame(&requests[0]))?;
            let url = format!("http://{host}{SCORE}");
            for clients in [1usize, 16, 64] {
                let (measured, cpu) = h2load_level(&url, clients, seconds, &body, &state.audit)?;
                let per_request = cpu * 1e6 / measured.0.len().max(1) as f64;
                print_level(clients, seconds, measured, Some(per_request));
            }
        }
        println!("CDS Hooks patient-view (six sets of vital signs as FHIR Observations), {seconds} s per level");
        for clients in [1usize, 16] {
            let measured = clients_runtime.block_on(cds_level(
                &host,
                &transport,
                &report.name,
                clients,
                Duration::from_secs(seconds),
            ))?;
            print_level(clients, seconds, measured, None);
        }
        drop(server_runtime);
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// One line of the table: throughput, latency quantiles (µs), errors, and the server's CPU time
/// per request where only the server runs in this process.
fn print_level(clients: usize, seconds: u64, (mut latencies, errors): (Vec<u64>, usize), cpu_per_request: Option<f64>) {
    latencies.sort_unstable();
    let at = |q: f64| latencies.get(((latencies.len().max(1) - 1) as f64 * q) as usize).copied().unwrap_or(0);
    let rate = latencies.len() as f64 / seconds as f64;
    let cpu = cpu_per_request.map(|c| format!(" {c:>14.0}")).unwrap_or_default();
    println!("{clients:>8} {rate:>12.0} {:>9} {:>9} {:>9} {errors:>7}{cpu}", at(0.5), at(0.99), at(0.999));
}

/// CPU seconds this process has used, user and system (Linux `/proc/self/stat`, in its clock
/// ticks of 1/100 s). On a machine whose speed varies run to run, CPU per request compares two
/// builds of the server where throughput cannot.
fn process_cpu() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| anyhow::anyhow!("/proc/self/stat: no field {i}"))
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

fn tree_count(dir: &std::path::Path, name: &str) -> usize {
    let pkg =
        carecast_models::load_package(&Registry::new(dir.join("registry")).resolve(name, None).expect("published").1)
            .expect("loads");
    match pkg.scorer.definition().estimator {
        carecast_models::Estimator::GradientBoostedTrees(ref e) => e.trees.len(),
        _ => 0,
    }
}

/// `clients` connections each sending requests back to back for `length`: every latency in µs,
/// and the errors (a gRPC status other than OK, or a response that fails its check).
///
/// The requests are encoded once, before the clock starts, and sent over hyper's HTTP/2 client
/// directly (no per-call encoding or channel task), so that the little CPU this machine has goes
/// to the server. Every 64th response is decoded and checked: every contribution present, and
/// base value plus contributions equal to the margin.
async fn level(
    host: &str,
    transport: &Transport,
    clients: usize,
    length: Duration,
    requests: Arc<Vec<pb::ScoreRequest>>,
) -> anyhow::Result<(Vec<u64>, usize)> {
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(requests.iter().map(|r| bytes::Bytes::from(grpc_frame(r))).collect());
    let features = requests[0].features.len();
    let scheme = if transport.tls.is_some() { "https" } else { "http" };
    let uri: http::Uri = format!("{scheme}://{host}{SCORE}").parse()?;
    let mut tasks = Vec::new();
    let end = Instant::now() + length;
    for c in 0..clients {
        let mut sender = connect(transport.connect(host, b"h2").await?).await?;
        let (bodies, uri, bearer) = (bodies.clone(), uri.clone(), transport.bearer.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            let mut i = c * 31;
            while Instant::now() < end {
                let body = bodies[i % bodies.len()].clone();
                let check = i.is_multiple_of(64);
                i += 1;
                let started = Instant::now();
                match unary(&mut sender, &uri, bearer.as_deref(), body).await {
                    Ok(message) if !check || explained(&message, features) => {
                        latencies.push(started.elapsed().as_micros() as u64)
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    gather(tasks).await
}

/// A request as gRPC sends it: uncompressed, its length, the message.
fn grpc_frame(request: &pb::ScoreRequest) -> Vec<u8> {
    use prost::Message;
    let message = request.encode_to_vec();
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

fn h2load_installed() -> bool {
    std::process::Command::new("h2load").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// One level driven by `h2load` (`clients` connections, one request in flight on each, for
/// `seconds`): latencies from its per-request log. Errors: requests it did not see answered 200,
/// requests the server refused (its `carecast_errors_total`: a gRPC refusal is still HTTP 200),
/// and any answered request the audit trail did not gain a record for. Also the CPU seconds this
/// process (the server alone) used while h2load ran.
fn h2load_level(
    url: &str,
    clients: usize,
    seconds: u64,
    body: &std::path::Path,
    audit: &AuditLog,
) -> anyhow::Result<((Vec<u64>, usize), f64)> {
    let log = body.with_extension(format!("{clients}.tsv"));
    let (audited, refused) = (audit.verify()?.records, server_refusals());
    let cpu = process_cpu()?;
    let run = std::process::Command::new("h2load")
        .args(["-c", &clients.to_string(), "-m", "1", "-t", "1", "-D", &seconds.to_string()])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers", "-d"])
        .arg(body)
        .arg(format!("--log-file={}", log.display()))
        .arg(url)
        .output()?;
    let cpu = process_cpu()? - cpu;
    anyhow::ensure!(run.status.success(), "h2load: {}", String::from_utf8_lossy(&run.stderr));
    let (mut latencies, mut errors) = (Vec::new(), 0usize);
    for line in std::fs::read_to_string(&log)?.lines() {
        let columns: Vec<&str> = line.split('\t').collect();
        match (columns.get(1), columns.get(2).and_then(|m| m.parse().ok())) {
            (Some(&"200"), Some(micros)) => latencies.push(micros),
            _ => errors += 1,
        }
    }
    let gained = (audit.verify()?.records - audited) as usize;
    errors += (server_refusals() - refused) + latencies.len().saturating_sub(gained);
    Ok(((latencies, errors), cpu))
}

/// Requests the server has refused so far, from its own metrics.
fn server_refusals() -> usize {
    carecast_serving::metrics::handle()
        .render()
        .lines()
        .filter(|l| l.starts_with("carecast_errors_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

/// HTTP/2 over `stream`, with windows large enough that flow control never waits.
async fn connect(
    stream: Box<dyn Io>,
) -> anyhow::Result<hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>> {
    let (sender, connection) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake(hyper_util::rt::TokioIo::new(stream))
        .await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One gRPC unary call: the response message (without its 5-byte prefix) when the status is OK.
async fn unary(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    uri: &http::Uri,
    bearer: Option<&str>,
    body: bytes::Bytes,
) -> anyhow::Result<bytes::Bytes> {
    use http_body_util::BodyExt;
    sender.ready().await?;
    let mut request =
        http::Request::post(uri.clone()).header("content-type", "application/grpc").header("te", "trailers");
    if let Some(bearer) = bearer {
        request = request.header("authorization", bearer);
    }
    let request = request.body(http_body_util::Full::new(body))?;
    let response = sender.send_request(request).await?;
    let (head, body) = response.into_parts();
    let collected = body.collect().await?;
    // A refusal may come as headers alone ("trailers-only"), else grpc-status is a trailer.
    let status = collected.trailers().and_then(|t| t.get("grpc-status")).or(head.headers.get("grpc-status")).cloned();
    if status.as_ref().map(|s| s.as_bytes()) != Some(b"0") {
        anyhow::bail!("grpc-status {status:?}");
    }
    let mut message = collected.to_bytes();
    if message.len() < 5 {
        anyhow::bail!("no response message");
    }
    Ok(message.split_off(5))
}

/// A response that carries every feature's contribution, adding up to its margin.
fn explained(message: &[u8], features: usize) -> bool {
    use prost::Message;
    pb::ScoreResponse::decode(message).is_ok_and(|r| {
        let sum: f64 = r.contributions.iter().map(|c| c.contribution).sum();
        r.contributions.len() == features && (r.base_value + sum - r.margin).abs() < 1e-9
    })
}

/// A `patient-view` request for an inpatient of about 80 with six sets of vital signs over the last
/// day (pulse, respiration, SpO2, systolic BP, temperature, consciousness, oxygen), varied by `i`.
fn patient_view(i: usize) -> String {
    // LOINC code, UCUM unit, typical value, and the relative spread around it (SpO2 stays at or
    // under 100%). Consciousness is coded: Alert (LA9340-6).
    const VITALS: [(&str, &str, f64, f64); 6] = [
        ("8867-4", "/min", 92.0, 0.02),
        ("9279-1", "/min", 19.0, 0.02),
        ("59408-5", "%", 94.0, 0.01),
        ("8480-6", "mm[Hg]", 116.0, 0.02),
        ("8310-5", "Cel", 37.3, 0.002),
        ("3151-8", "L/min", 0.0, 0.0),
    ];
    let now = chrono::Utc::now();
    let mut observations = Vec::new();
    for set in 0..6i64 {
        let taken = (now - chrono::Duration::minutes(4 * 60 * set + 1)).to_rfc3339();
        let observation = |loinc: &str, value: serde_json::Value| {
            let mut o = serde_json::json!({ "resourceType": "Observation", "status": "final",
                "code": { "coding": [{ "system": "http://loinc.org", "code": loinc }] }, "effectiveDateTime": taken });
            o.as_object_mut().expect("an object").extend(value.as_object().expect("an object").clone());
            serde_json::json!({ "resource": o })
        };
        for (k, (loinc, unit, typical, spread)) in VITALS.iter().enumerate() {
            let wobble = ((i * 7 + set as usize * 3 + k) % 11) as f64 - 5.0;
            let quantity = serde_json::json!({ "value": typical * (1.0 + spread * wobble), "unit": unit, "system": "http://unitsofmeasure.org", "code": unit });
            observations.push(observation(loinc, serde_json::json!({ "valueQuantity": quantity })));
        }
        let alert = serde_json::json!({ "coding": [{ "system": "http://loinc.org", "code": "LA9340-6" }] });
        observations.push(observation("67775-7", serde_json::json!({ "valueCodeableConcept": alert })));
    }
    serde_json::json!({
        "hook": "patient-view", "hookInstance": format!("load-{i}"),
        "context": { "userId": "Practitioner/load", "patientId": format!("load-{i}") },
        "prefetch": {
            "patient": { "resourceType": "Patient", "id": format!("load-{i}"), "gender": if i.is_multiple_of(2) { "female" } else { "male" }, "birthDate": "1946-03-15" },
            "observations": { "resourceType": "Bundle", "type": "searchset", "entry": observations },
            "conditions": { "resourceType": "Bundle", "type": "searchset", "entry": [] },
        },
    })
    .to_string()
}

/// One HTTP/1.1 POST on a kept-alive connection; the status.
async fn post(
    connection: &mut tokio::io::BufReader<Box<dyn Io>>,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> std::io::Result<u16> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let authorization = bearer.map(|b| format!("Authorization: {b}\r\n")).unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: carecast\r\nContent-Type: application/json\r\n{authorization}Content-Length: {}\r\n\r\n",
        body.len()
    );
    connection.get_mut().write_all(format!("{head}{body}").as_bytes()).await?;
    connection.get_mut().flush().await?;
    let (mut line, mut status, mut length) = (String::new(), 0u16, 0usize);
    loop {
        line.clear();
        connection.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some(code) = header.strip_prefix("HTTP/1.1 ") {
            status = code.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        } else if let Some((_, value)) =
            header.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut card = vec![0; length];
    connection.read_exact(&mut card).await?;
    Ok(status)
}

/// `clients` keep-alive connections posting `patient-view` back to back for `length`.
async fn cds_level(
    host: &str,
    transport: &Transport,
    model: &str,
    clients: usize,
    length: Duration,
) -> anyhow::Result<(Vec<u64>, usize)> {
    let bodies: Arc<Vec<String>> = Arc::new((0..64).map(patient_view).collect());
    let path = format!("/cds-services/{model}");
    let end = Instant::now() + length;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut connection = tokio::io::BufReader::new(transport.connect(host, b"http/1.1").await?);
        let (bodies, path, bearer) = (bodies.clone(), path.clone(), transport.bearer.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            let mut i = c * 5;
            while Instant::now() < end {
                let started = Instant::now();
                match post(&mut connection, &path, bearer.as_deref(), &bodies[i % bodies.len()]).await {
                    Ok(200) => latencies.push(started.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
                i += 1;
            }
            (latencies, errors)
        }));
    }
    gather(tasks).await
}

/// Every client's latencies, and the errors.
async fn gather(tasks: Vec<tokio::task::JoinHandle<(Vec<u64>, usize)>>) -> anyhow::Result<(Vec<u64>, usize)> {
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    Ok((all, errors))
}
