//! The client side of the upgrade, for tests, benches and tools that talk to a
//! WebSocket listener (the broker itself only accepts).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::{ByteStream, SUBPROTOCOLS};

/// The longest response head read.
const RESPONSE_HEAD_MAX_BYTES: usize = 8 * 1024;

/// Sends an upgrade request for `path` offering `protocols` (comma-separated), checks
/// the `101`, and returns the WebSocket as a byte stream for the subprotocol the server
/// chose. Any other answer is an error carrying the response head.
pub async fn connect<S>(mut io: S, path: &str, protocols: &str) -> io::Result<ByteStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {protocols}\r\n\r\n"
    );
    io.write_all(request.as_bytes()).await?;
    io.flush().await?;
    // Byte by byte, so nothing after the head (the server's first frame) is consumed.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= RESPONSE_HEAD_MAX_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too long",
            ));
        }
        head.push(io.read_u8().await?);
    }
    let head = String::from_utf8_lossy(&head);
    let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, head.to_string());
    if !head.starts_with("HTTP/1.1 101 ") {
        return Err(refused());
    }
    let chosen = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-protocol"))
        .map(|(_, v)| v.trim());
    let Some(&(_, subprotocol)) = SUBPROTOCOLS.iter().find(|(t, _)| Some(*t) == chosen) else {
        return Err(refused());
    };
    let ws = WebSocketStream::from_raw_socket(io, Role::Client, None).await;
    Ok(ByteStream::new(ws, subprotocol))
}
