//! Client-side transports for the TLS and WebSocket tests: a rustls client (ring), a
//! WebSocket client handshake, and a local bridge so that clients that only speak plain
//! TCP (lapin, rumqttc as built here) run their whole protocol over TLS or WebSocket.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use ferromq_websocket::ByteStream;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use super::Io;

/// A client configuration trusting the PEM certificates in `ca`, optionally presenting
/// a client certificate (`(cert PEM, key PEM)`).
pub fn client_config(ca: &Path, identity: Option<(&str, &str)>) -> Arc<ClientConfig> {
    ferromq::tls::client_config(ca, identity).expect("client TLS configuration")
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
pub async fn websocket<S: Io + 'static>(io: S, path: &str, protocols: &str) -> ByteStream<S> {
    ferromq_websocket::client::connect(io, path, protocols)
        .await
        .expect("WebSocket upgrade")
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
