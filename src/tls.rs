//! TLS for every listener: one rustls server configuration (ring provider, TLS 1.2 and
//! 1.3) built from the configured PEM files, or from a self-signed certificate for
//! `localhost` generated once into `data_dir/tls/` and reused; optional client
//! certificates checked against a CA, whose subject can be the connection's user; and
//! the handshake, bounded in time and in how many run at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferromq_core::Peer;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientCertMode, ClientCertUser, TlsSection};

/// Names the generated certificate is valid for.
const GENERATED_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The certificate generator failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate, key or CA.
    #[error("{0}")]
    Rustls(String),
    /// The `[tls]` settings contradict each other.
    #[error("{0}")]
    Config(&'static str),
}

/// The TLS side of every TLS listener.
pub struct Tls {
    acceptor: TlsAcceptor,
    cert_path: PathBuf,
    user_from: ClientCertUser,
    handshake_timeout: Duration,
    handshakes: Arc<Semaphore>,
}

/// Why a handshake did not complete (logged at debug; the connection is dropped).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Not done within `handshake_timeout_ms` (waiting for a slot included).
    #[error("TLS handshake timed out")]
    Timeout,
    /// The client's hello, certificate or alert ended it.
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
}

impl Tls {
    /// Builds the server configuration; generates the certificate when none is configured.
    pub fn load(section: &TlsSection, data_dir: &Path) -> Result<Self, TlsError> {
        let (cert_path, key_path) = match (section.cert.is_empty(), section.key.is_empty()) {
            (true, true) => generated(data_dir)?,
            (false, false) => (PathBuf::from(&section.cert), PathBuf::from(&section.key)),
            _ => return Err(TlsError::Config("[tls] cert and key go together")),
        };
        let certs = read_certs(&cert_path)?;
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::Pem {
            path: key_path.clone(),
            message: format!("no usable private key: {e}"),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match (section.client_cert, section.client_ca.is_empty()) {
            (ClientCertMode::None, _) => builder.with_no_client_auth(),
            (_, true) => {
                return Err(TlsError::Config(
                    "[tls] client_cert needs client_ca (the CA that signs client certificates)",
                ))
            }
            (mode, false) => {
                let ca_path = PathBuf::from(&section.client_ca);
                let mut roots = RootCertStore::empty();
                for ca in read_certs(&ca_path)? {
                    roots
                        .add(ca)
                        .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca_path.display())))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if mode == ClientCertMode::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Rustls(format!("{}: {e}", cert_path.display())))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert_path,
            user_from: section.client_cert_user,
            handshake_timeout: Duration::from_millis(section.handshake_timeout_ms),
            handshakes: Arc::new(Semaphore::new(section.handshakes_max.max(1))),
        })
    }

    /// The certificate served (the one a client must trust).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Runs the server handshake on `tcp`; the returned peer carries the client
    /// certificate's user when so configured.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
    ) -> Result<(TlsStream<TcpStream>, Peer), HandshakeError> {
        let stream = tokio::time::timeout(self.handshake_timeout, async {
            // Bounds the CPU spent on handshakes, not the connections that follow.
            let _slot = self.handshakes.acquire().await;
            self.acceptor.accept(tcp).await
        })
        .await
        .map_err(|_| HandshakeError::Timeout)?
        .map_err(HandshakeError::Failed)?;
        let verified_user = match self.user_from {
            ClientCertUser::Off => None,
            from => stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| subject_user(cert, from)),
        };
        Ok((
            stream,
            Peer {
                addr: Some(addr),
                verified_user,
            },
        ))
    }
}

/// A client configuration (ring, TLS 1.2 and 1.3) that trusts the PEM certificates in
/// `ca` and optionally presents `(certificate chain PEM, private key PEM)`: for tests,
/// benches and tools that connect to the TLS listeners.
pub fn client_config(
    ca: &Path,
    identity: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca)? {
        roots
            .add(c)
            .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let pem = |message: String| TlsError::Pem {
                path: PathBuf::from("<client identity>"),
                message,
            };
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem(e.to_string()))?;
            let key =
                PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| pem(e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Rustls(e.to_string()))?
        }
    };
    Ok(Arc::new(config))
}

/// The user name a certificate's subject gives: its first common name, or the whole
/// distinguished name as x509-parser prints it (`C=.., O=.., CN=..`, in certificate
/// order).
fn subject_user(cert: &CertificateDer<'_>, from: ClientCertUser) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    match from {
        ClientCertUser::Off => None,
        ClientCertUser::CommonName => subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        ClientCertUser::DistinguishedName => Some(subject.to_string()),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: format!("cannot read certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            message: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The generated certificate and key under `data_dir/tls/`, made on first use.
fn generated(data_dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = data_dir.join("tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        tracing::info!(cert = %cert_path.display(), "TLS: using the self-signed certificate generated earlier; trust this file in clients");
        return Ok((cert_path, key_path));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let names: Vec<String> = GENERATED_NAMES.iter().map(|s| s.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names)?;
    // Written under temporary names and renamed, so a crash never leaves half a pair.
    write_private(&dir.join("key.pem.tmp"), &made.signing_key.serialize_pem())?;
    std::fs::write(dir.join("cert.pem.tmp"), made.cert.pem()).map_err(io(&cert_path))?;
    std::fs::rename(dir.join("key.pem.tmp"), &key_path).map_err(io(&key_path))?;
    std::fs::rename(dir.join("cert.pem.tmp"), &cert_path).map_err(io(&cert_path))?;
    tracing::info!(cert = %cert_path.display(), "TLS: generated a self-signed certificate for localhost; trust this file in clients");
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}
