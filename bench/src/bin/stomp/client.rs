//! A minimal STOMP 1.2 client on tokio TCP: CONNECT, SUBSCRIBE with a receipt, frames in
//! and out. Every broker answers the same frames, so the load generator measures the
//! broker and not a client library's choices.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::frame::{self, Frame};

/// Largest body accepted from a broker (the load generator's own messages are far smaller).
const BODY_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Read buffer reserve: a few hundred messages per read at the default size.
const READ_RESERVE_BYTES: usize = 128 * 1024;

/// Who connects, and where.
#[derive(Clone, Debug)]
pub struct Login {
    pub broker: SocketAddr,
    pub login: String,
    pub passcode: String,
    /// The `host` header: the virtual host on RabbitMQ and ferromq.
    pub host: String,
    pub timeout: Duration,
}

/// The receiving half of a connection: frames, one at a time.
pub struct Reader {
    half: OwnedReadHalf,
    buf: BytesMut,
}

impl Reader {
    /// The next frame. Cancel-safe: a frame is only taken off the buffer whole. An ERROR
    /// frame is returned like any other; the end of the stream is an error.
    pub async fn next(&mut self) -> Result<Frame, String> {
        loop {
            if let Some(f) = frame::decode(&mut self.buf, BODY_MAX_BYTES)? {
                return Ok(f);
            }
            self.buf.reserve(READ_RESERVE_BYTES);
            match self.half.read_buf(&mut self.buf).await {
                Ok(0) => return Err("the broker closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// The next frame that is not a MESSAGE (those are counted in `skipped`), within
    /// `timeout`; an ERROR frame is an error.
    pub async fn expect(
        &mut self,
        command: &str,
        timeout: Duration,
        mut skipped: impl FnMut(Frame),
    ) -> Result<Frame, String> {
        let wait = async {
            loop {
                let f = self.next().await?;
                match f.command() {
                    "ERROR" => return Err(f.error_text()),
                    c if c == command => return Ok(f),
                    "MESSAGE" => skipped(f),
                    other => return Err(format!("expected {command}, got {other}")),
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or_else(|_| Err(format!("no {command} within {timeout:?}")))
    }
}

/// Writes `buf` whole, as one write where the socket takes it.
pub async fn write(w: &mut OwnedWriteHalf, buf: &[u8]) -> Result<(), String> {
    w.write_all(buf).await.map_err(|e| format!("write: {e}"))
}

/// Connects and logs in (STOMP 1.2, no heart-beats); `name` goes into messages.
pub async fn connect(l: &Login, name: &str) -> Result<(Reader, OwnedWriteHalf), String> {
    let stream = tokio::time::timeout(l.timeout, TcpStream::connect(l.broker))
        .await
        .map_err(|_| format!("{name}: no TCP connection within {:?}", l.timeout))?
        .map_err(|e| format!("{name}: connect {}: {e}", l.broker))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("{name}: TCP_NODELAY: {e}"))?;
    let (r, mut w) = stream.into_split();
    let mut out = BytesMut::new();
    frame::encode(
        &mut out,
        "CONNECT",
        &[
            ("accept-version", "1.2"),
            ("host", &l.host),
            ("login", &l.login),
            ("passcode", &l.passcode),
            ("heart-beat", "0,0"),
        ],
        &[],
    );
    write(&mut w, &out).await?;
    let mut reader = Reader {
        half: r,
        buf: BytesMut::with_capacity(READ_RESERVE_BYTES),
    };
    let connected = reader
        .expect("CONNECTED", l.timeout, |_| {})
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    if connected.header("version").as_deref() != Some("1.2") {
        return Err(format!(
            "{name}: the broker chose STOMP {:?}, not 1.2",
            connected.header("version")
        ));
    }
    Ok((reader, w))
}

/// What a SUBSCRIBE asks for.
pub struct Subscription<'a> {
    pub id: &'a str,
    pub destination: &'a str,
    /// `client` (cumulative) or `client-individual`.
    pub ack: &'a str,
    pub prefetch: u32,
}

/// Subscribes and waits for the broker's RECEIPT, so that nothing sent afterwards to a
/// topic can miss the subscriber.
pub async fn subscribe(
    r: &mut Reader,
    w: &mut OwnedWriteHalf,
    s: &Subscription<'_>,
    timeout: Duration,
) -> Result<(), String> {
    let prefetch = s.prefetch.to_string();
    let receipt = format!("sub-{}", s.id);
    let mut out = BytesMut::new();
    frame::encode(
        &mut out,
        "SUBSCRIBE",
        &[
            ("id", s.id),
            ("destination", s.destination),
            ("ack", s.ack),
            // RabbitMQ's name and ActiveMQ's; each broker ignores the other's (ferromq
            // reads either).
            ("prefetch-count", &prefetch),
            ("activemq.prefetchSize", &prefetch),
            ("receipt", &receipt),
        ],
        &[],
    );
    write(w, &out).await?;
    let f = r
        .expect("RECEIPT", timeout, |_| {})
        .await
        .map_err(|e| format!("SUBSCRIBE {}: {e}", s.destination))?;
    match f.header("receipt-id") {
        Some(id) if id == receipt => Ok(()),
        other => Err(format!("SUBSCRIBE: receipt {other:?}, expected {receipt}")),
    }
}

/// Sends DISCONNECT with a receipt and waits for it (every frame sent before has then
/// been processed); MESSAGEs arriving meanwhile go to `skipped`.
pub async fn disconnect(
    r: &mut Reader,
    w: &mut OwnedWriteHalf,
    timeout: Duration,
    skipped: impl FnMut(Frame),
) -> Result<(), String> {
    let mut out = BytesMut::new();
    frame::encode(&mut out, "DISCONNECT", &[("receipt", "bye")], &[]);
    write(w, &out).await?;
    let f = r.expect("RECEIPT", timeout, skipped).await?;
    match f.header("receipt-id").as_deref() {
        Some("bye") => Ok(()),
        other => Err(format!("DISCONNECT: receipt {other:?}, expected bye")),
    }
}
