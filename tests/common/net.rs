//! Client-side transports for the TLS and WebSocket tests: a rustls client (ring), a
//! WebSocket client handshake, and a local bridge so that clients that only speak plain
//! TCP (lapin, rumqttc as built here) run their whole protocol over TLS or WebSocket.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use ferromq_websocket::{ByteStream, Subprotocol};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::Io;

/// A client configuration trusting the PEM certificates in `ca`, optionally presenting
/// a client certificate (`(cert PEM, key PEM)`).
pub fn client_config(ca: &Path, identity: Option<(&str, &str)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}

/// A TLS connection to `addr` checked against `config` for the name `localhost`.
pub async fn tls(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Runs the client side of the upgrade on `io` and returns the WebSocket as bytes.
pub async fn websocket<S: Io + 'static>(mut io: S, path: &str, protocols: &str) -> ByteStream<S> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {protocols}\r\n\r\n"
    );
    io.write_all(request.as_bytes()).await.unwrap();
    let head = http_head(&mut io).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let sub = if protocols.contains("stomp") {
        Subprotocol::Stomp
    } else {
        Subprotocol::Mqtt
    };
    ByteStream::new(
        WebSocketStream::from_raw_socket(io, Role::Client, None).await,
        sub,
    )
}

/// Reads an HTTP response head (byte by byte: nothing after it is consumed).
pub async fn http_head(io: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if io.read(&mut b).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A local plain-TCP port whose every connection is carried to the broker over the
/// transport `open` makes (TLS, WebSocket, ...), byte for byte.
pub async fn bridge<F, Fut, S>(open: F) -> SocketAddr
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = S> + Send,
    S: Io + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(open);
    tokio::spawn(async move {
        while let Ok((mut local, _)) = listener.accept().await {
            let open = open.clone();
            tokio::spawn(async move {
                let mut remote = open().await;
                let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
            });
        }
    });
    addr
}
