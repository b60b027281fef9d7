//! WebSocket for ferromq: the HTTP upgrade, the choice of subprotocol, and a byte stream
//! over the WebSocket messages so that the MQTT and STOMP crates run on it unchanged.
//!
//! [`accept`] reads one HTTP request from a fresh connection (plain or TLS), answers it,
//! and on a successful upgrade returns a [`ByteStream`] and the negotiated
//! [`Subprotocol`]. Everything that is not an acceptable upgrade gets an HTTP answer and a
//! closed connection: a plain `GET` learns what the port is for, an upgrade without a
//! subprotocol we speak gets `400`, an unknown path `404`, a refused origin `403`.
//!
//! # Layout
//! - `http.rs`: the request head (bounded) and the decision what to answer, without I/O.
//! - `stream.rs`: [`ByteStream`], WebSocket messages <-> `AsyncRead + AsyncWrite`.
//! - `client.rs`: [`client::connect`], the client side, for tests, benches and tools.
//! - this file: configuration, [`accept`] (the only function that does handshake I/O).
//!
//! # Framing
//! Incoming binary and text messages are both accepted and concatenated into one byte
//! stream, so a protocol frame may span messages and a message may hold many frames.
//! Outgoing bytes go out one message per write: always binary for MQTT (its spec asks for
//! binary), text for STOMP when the bytes are valid UTF-8 (what STOMP-over-WebSocket
//! clients expect; stomp.js also takes binary), binary otherwise. Pings are answered by
//! the WebSocket layer; a close from the client ends the byte stream (EOF) after the
//! close handshake; shutting the byte stream down sends a close.
#![warn(missing_docs)]

pub mod client;
mod http;
mod stream;

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

pub use http::{Decision, Subprotocol, PATHS, SUBPROTOCOLS};
pub use stream::ByteStream;

/// The WebSocket layer gathers up to 128 KiB before writing (tungstenite's default), so
/// its hard cap must lie above that.
const WRITE_BUFFER_MIN_BYTES: usize = 256 * 1024;

/// Limits and policy of a WebSocket listener.
#[derive(Clone, Debug)]
pub struct WsConfig {
    /// Largest WebSocket message accepted (after reassembly of fragments).
    pub message_size_max_bytes: usize,
    /// Largest single WebSocket frame accepted.
    pub frame_size_max_bytes: usize,
    /// Largest HTTP request head (request line and headers).
    pub request_head_max_bytes: usize,
    /// Time for the client to send its whole upgrade request.
    pub handshake_timeout_ms: u64,
    /// `Origin` values allowed to connect (browsers send one); empty allows any. A
    /// request without `Origin` (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
    /// Outgoing bytes buffered in the WebSocket layer before writes wait.
    pub write_buffer_max_bytes: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            message_size_max_bytes: 16 * 1024 * 1024,
            frame_size_max_bytes: 16 * 1024 * 1024,
            request_head_max_bytes: 8 * 1024,
            handshake_timeout_ms: 10_000,
            allowed_origins: Vec::new(),
            write_buffer_max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Why a connection did not become a WebSocket. Every variant has already been answered
/// (when an answer was possible); the caller only logs it and drops the connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed.
    #[error("i/o error during the WebSocket handshake: {0}")]
    Io(#[from] std::io::Error),
    /// The request head did not arrive in time.
    #[error("no complete HTTP request within the handshake timeout")]
    Timeout,
    /// The client closed before sending a whole request.
    #[error("connection closed before a complete HTTP request")]
    Eof,
    /// The request was answered with an HTTP status instead of an upgrade (including the
    /// informational answer to a plain `GET`).
    #[error("answered HTTP {status}: {reason}")]
    Answered {
        /// The status sent.
        status: u16,
        /// Why.
        reason: &'static str,
    },
}

/// Reads the upgrade request from `stream`, answers it, and on success returns the
/// WebSocket as a byte stream and the subprotocol it speaks.
pub async fn accept<S>(
    mut stream: S,
    config: &WsConfig,
) -> Result<(ByteStream<S>, Subprotocol), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let timeout = Duration::from_millis(config.handshake_timeout_ms);
    let mut buf = BytesMut::with_capacity(1024);
    let (decision, head_len) = tokio::time::timeout(timeout, async {
        loop {
            if let Some(done) = http::decide(&buf, config) {
                return Ok(done);
            }
            if buf.len() >= config.request_head_max_bytes {
                return Ok((Decision::too_large(), buf.len()));
            }
            let room = config.request_head_max_bytes - buf.len();
            buf.reserve(room.min(4096));
            let n = (&mut stream).take(room as u64).read_buf(&mut buf).await?;
            if n == 0 {
                return Err(HandshakeError::Eof);
            }
        }
    })
    .await
    .map_err(|_| HandshakeError::Timeout)??;

    let mut response = Vec::with_capacity(256);
    decision.write_response(&mut response);
    let write = async {
        stream.write_all(&response).await?;
        stream.flush().await
    };
    tokio::time::timeout(timeout, write)
        .await
        .map_err(|_| HandshakeError::Timeout)??;
    match decision {
        Decision::Upgrade { subprotocol, .. } => {
            // Bytes the client sent after the request head are its first frames.
            let rest = buf.split_off(head_len).to_vec();
            let ws_config = WebSocketConfig::default()
                .max_message_size(Some(config.message_size_max_bytes))
                .max_frame_size(Some(config.frame_size_max_bytes))
                .max_write_buffer_size(config.write_buffer_max_bytes.max(WRITE_BUFFER_MIN_BYTES));
            let ws =
                WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(ws_config))
                    .await;
            Ok((ByteStream::new(ws, subprotocol), subprotocol))
        }
        Decision::Answer { status, reason, .. } => {
            let _ = stream.shutdown().await;
            Err(HandshakeError::Answered { status, reason })
        }
    }
}
