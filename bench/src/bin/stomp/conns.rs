//! STOMP 1.2 for the connection cases: CONNECT with `heart-beat`, CONNECTED, EOL
//! heart-beats both ways, DISCONNECT with a receipt. Frames are read off the
//! connection's own small buffer (`storm::Conn`), not the flow cases' `client::Reader`,
//! whose 128 KiB read reserve would cost the load generator more than the broker.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ferromq_bench::storm::{Conn, Protocol};

use crate::frame::{self, Frame};

/// Largest body accepted from the broker (an ERROR's text; the rest have none).
const BODY_MAX_BYTES: usize = 64 * 1024;

/// Who logs in.
pub struct Stomp {
    pub login: String,
    pub passcode: String,
    /// The `host` header: the virtual host on RabbitMQ and ferromq.
    pub host: String,
}

/// The next frame, after any heart-beats; an ERROR frame is an error.
async fn read_frame(c: &mut Conn) -> io::Result<Frame> {
    loop {
        if c.buf.len() > frame::HEAD_MAX_BYTES + BODY_MAX_BYTES {
            return Err(io::Error::other("a frame larger than the bound"));
        }
        match frame::decode(&mut c.buf, BODY_MAX_BYTES).map_err(io::Error::other)? {
            Some(f) if f.command() == "ERROR" => return Err(io::Error::other(f.error_text())),
            Some(f) => return Ok(f),
            None => c.read_more().await?,
        }
    }
}

/// The period of the heart-beats one side sends, from its own `send` and the other's
/// `want` (STOMP 1.2: the larger of the two; none if either is 0), in milliseconds.
fn period(send_ms: u64, want_ms: u64) -> Option<Duration> {
    (send_ms > 0 && want_ms > 0).then(|| Duration::from_millis(send_ms.max(want_ms)))
}

impl Protocol for Stomp {
    /// CONNECT (1.2, `heart-beat` of `heartbeat` both ways), CONNECTED 1.2.
    async fn open(
        &self,
        c: &mut Conn,
        _id: &str,
        heartbeat: Duration,
    ) -> io::Result<Option<Duration>> {
        let ms = heartbeat.as_millis() as u64;
        let beats = format!("{ms},{ms}");
        let mut out = BytesMut::with_capacity(128);
        frame::encode(
            &mut out,
            "CONNECT",
            &[
                ("accept-version", "1.2"),
                ("host", &self.host),
                ("login", &self.login),
                ("passcode", &self.passcode),
                ("heart-beat", &beats),
            ],
            &[],
        );
        c.write(&out).await?;
        let f = read_frame(c).await?;
        if f.command() != "CONNECTED" || f.header("version").as_deref() != Some("1.2") {
            return Err(io::Error::other(format!(
                "expected CONNECTED 1.2, got {} {:?}",
                f.command(),
                f.header("version")
            )));
        }
        // The broker's `sx,sy`: it sends every max(sx, our want).
        let sent_ms = f
            .header("heart-beat")
            .and_then(|h| h.split(',').next().and_then(|x| x.trim().parse().ok()))
            .unwrap_or(0);
        Ok(period(sent_ms, ms))
    }

    fn beat(&self) -> &'static [u8] {
        b"\n"
    }

    fn heartbeats(&self, buf: &mut BytesMut) -> io::Result<u64> {
        let eols = buf
            .iter()
            .position(|&b| b != b'\n' && b != b'\r')
            .unwrap_or(buf.len());
        let n = buf[..eols].iter().filter(|&&b| b == b'\n').count() as u64;
        buf.advance(eols);
        if !buf.is_empty() {
            // A frame while idle: name it if it is whole (an ERROR says why).
            return Err(io::Error::other(match frame::decode(buf, BODY_MAX_BYTES) {
                Ok(Some(f)) if f.command() == "ERROR" => f.error_text(),
                Ok(Some(f)) => format!("a {} frame while idle", f.command()),
                _ => format!(
                    "{:?} while idle",
                    String::from_utf8_lossy(&buf[..buf.len().min(32)])
                ),
            }));
        }
        Ok(n)
    }

    /// DISCONNECT with a receipt, the RECEIPT, then the client closes the socket (STOMP
    /// 1.2: once the receipt is in, the client may close).
    async fn close(&self, c: &mut Conn, _unanswered: u64) -> io::Result<()> {
        let mut out = BytesMut::with_capacity(32);
        frame::encode(&mut out, "DISCONNECT", &[("receipt", "bye")], &[]);
        c.write(&out).await?;
        let f = read_frame(c).await?;
        if f.command() != "RECEIPT" || f.header("receipt-id").as_deref() != Some("bye") {
            return Err(io::Error::other(format!(
                "expected RECEIPT bye, got {} {:?}",
                f.command(),
                f.header("receipt-id")
            )));
        }
        c.finish().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stomp() -> Stomp {
        Stomp {
            login: "guest".into(),
            passcode: "guest".into(),
            host: "/".into(),
        }
    }

    #[test]
    fn heartbeat_period_is_the_larger_unless_either_is_off() {
        assert_eq!(period(10_000, 5_000), Some(Duration::from_secs(10)));
        assert_eq!(period(0, 5_000), None);
        assert_eq!(period(5_000, 0), None);
    }

    #[test]
    fn eols_are_heartbeats_and_frames_are_not() {
        let mut buf = BytesMut::from(&b"\n\r\n\n"[..]);
        assert_eq!(stomp().heartbeats(&mut buf).unwrap(), 3);
        assert!(buf.is_empty());
        let mut err = BytesMut::from(&b"\nERROR\nmessage:timeout\n\n\0"[..]);
        let e = stomp().heartbeats(&mut err).unwrap_err().to_string();
        assert!(e.contains("timeout"), "{e}");
    }
}
