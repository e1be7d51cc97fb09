//! TLS for the server's one port, and mutual TLS for clinical systems: with a client CA, only
//! clients presenting a certificate it signed complete the handshake.
//!
//! Why not tonic's own TLS settings: they offer ALPN `h2` alone, and rustls then refuses every
//! client that offers only `http/1.1` (Python's `requests`, many EHR integration engines), which
//! would shut CDS Hooks callers out. Here both are offered; gRPC clients pick `h2`.

use crate::setting::SettingError;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto::ring};
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;

/// A handshake not finished in this time is dropped: a stalled client holds nothing for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Handshakes in progress at once; a connection beyond them is closed at once (never queued, so
/// idle sockets cannot stall the accept loop for everyone else).
const HANDSHAKES: usize = 1024;
/// Handshakes in progress from one address: one host holding idle sockets open fills its own
/// share, not the server's.
pub const HANDSHAKES_PER_PEER: usize = 16;

/// Handshakes in progress by peer address; a [`PeerSlot`] gives its place back when dropped.
#[derive(Default)]
struct Peers(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

struct PeerSlot {
    peers: Arc<Peers>,
    ip: std::net::IpAddr,
}

impl Peers {
    fn enter(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut map = self.0.lock().expect("peer table");
        let n = map.entry(ip).or_default();
        if *n >= HANDSHAKES_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot { peers: self.clone(), ip })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.peers.0.lock().expect("peer table");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// The server's certificate chain and key, and, for mutual TLS, the CA its clients' certificates
/// must chain to.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
    mutual: bool,
}

impl Tls {
    /// From PEM: the certificate chain (leaf first), its private key, and optionally the client CA
    /// bundle (which makes client certificates mandatory).
    pub fn from_pem(chain: &[u8], key: &[u8], client_ca: Option<&[u8]>) -> Result<Self, SettingError> {
        let chain = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(SettingError::at("TLS certificate"))?;
        if chain.is_empty() {
            return Err(SettingError::new("TLS certificate", "no PEM certificate found"));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(SettingError::at("TLS key"))?;
        let provider = Arc::new(ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(SettingError::at("TLS"))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    roots.add(cert.map_err(SettingError::at("client CA"))?).map_err(SettingError::at("client CA"))?;
                }
                if roots.is_empty() {
                    return Err(SettingError::new("client CA", "no PEM certificate found"));
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(SettingError::at("client CA"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(SettingError::at("TLS certificate and key"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self { config: Arc::new(config), mutual: client_ca.is_some() })
    }

    /// Reads the PEM files named on the command line.
    pub fn from_files(
        chain: &std::path::Path,
        key: &std::path::Path,
        client_ca: Option<&std::path::Path>,
    ) -> Result<Self, SettingError> {
        let read = |p: &std::path::Path| std::fs::read(p).map_err(SettingError::at(p.display()));
        let ca = client_ca.map(read).transpose()?;
        Self::from_pem(&read(chain)?, &read(key)?, ca.as_deref())
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.mutual
    }

    /// Accepted connections, each through its handshake (many at once, each bounded in time, at
    /// most [`HANDSHAKES_PER_PEER`] from one address, so slow or idle clients delay no other).
    /// Failed and refused handshakes are counted and dropped.
    pub fn accept(
        self,
        connections: impl Stream<Item = std::io::Result<TcpStream>> + Send + 'static,
    ) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
        use tokio_stream::StreamExt;
        let (ready, receiver) = tokio::sync::mpsc::channel(HANDSHAKES);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config);
        tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES));
            let peers = Arc::new(Peers::default());
            let mut connections = std::pin::pin!(connections);
            loop {
                // Stop accepting (and free the port) once the server has stopped taking connections.
                let conn = tokio::select! {
                    () = ready.closed() => break,
                    conn = connections.next() => match conn {
                        Some(conn) => conn,
                        None => break,
                    },
                };
                let Ok(tcp) = conn else { continue };
                let Some(slot) = tcp.peer_addr().ok().and_then(|a| peers.enter(a.ip())) else {
                    crate::metrics::tls_refused("too many handshakes from one address");
                    continue;
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    crate::metrics::tls_refused("too many handshakes in progress");
                    continue;
                };
                let (acceptor, ready) = (acceptor.clone(), ready.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            drop((permit, slot));
                            let _ = ready.send(Ok(stream)).await;
                        }
                        Ok(Err(e)) => crate::metrics::tls_refused(&e.to_string()),
                        Err(_) => crate::metrics::tls_refused("handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(receiver)
    }
}
