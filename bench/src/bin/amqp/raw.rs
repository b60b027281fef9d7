//! The AMQP 0-9-1 frames the connection cases need, written and read directly on a tokio
//! socket (lapin per connection would cost more than the broker's side): the protocol
//! header, Start/StartOk (PLAIN), Tune/TuneOk, Open/OpenOk, `--channels` Channel.Open,
//! heartbeat frames, and Close/CloseOk.

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use ferromq_bench::storm::{Conn, Protocol};

const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
const FRAME_METHOD: u8 = 1;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xce;
/// A heartbeat frame: type 8, channel 0, no payload.
const HEARTBEAT: [u8; 8] = [FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END];
/// Type, channel and size before a frame's payload.
const FRAME_HEADER_BYTES: usize = 7;
/// Largest frame accepted from the broker during the handshake (the protocol's minimum
/// frame-max is 4096; Connection.Start with its server properties fits well below this).
const FRAME_MAX_BYTES: usize = 64 * 1024;

const CONNECTION: u16 = 10;
const CHANNEL: u16 = 20;
const START: (u16, u16) = (CONNECTION, 10);
const START_OK: (u16, u16) = (CONNECTION, 11);
const TUNE: (u16, u16) = (CONNECTION, 30);
const TUNE_OK: (u16, u16) = (CONNECTION, 31);
const OPEN: (u16, u16) = (CONNECTION, 40);
const OPEN_OK: (u16, u16) = (CONNECTION, 41);
const CLOSE: (u16, u16) = (CONNECTION, 50);
const CLOSE_OK: (u16, u16) = (CONNECTION, 51);
const CHANNEL_OPEN: (u16, u16) = (CHANNEL, 10);
const CHANNEL_OPEN_OK: (u16, u16) = (CHANNEL, 11);

/// Who logs in, and how many channels each connection opens.
pub struct Amqp {
    pub user: String,
    pub password: String,
    pub vhost: String,
    pub channels: u16,
}

/// Appends a method frame: `args` are the method's arguments, already encoded.
fn method(out: &mut BytesMut, channel: u16, (class, method): (u16, u16), args: &[u8]) {
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32(4 + args.len() as u32);
    out.put_u16(class);
    out.put_u16(method);
    out.put_slice(args);
    out.put_u8(FRAME_END);
}

fn short_str(out: &mut BytesMut, s: &str) {
    out.put_u8(s.len() as u8);
    out.put_slice(s.as_bytes());
}

/// A method frame from the broker.
struct Method {
    channel: u16,
    id: (u16, u16),
    args: BytesMut,
}

/// Reads the next method frame, skipping heartbeats. A Connection.Close from the broker
/// is an error that carries its reply code and text.
async fn read_method(c: &mut Conn) -> io::Result<Method> {
    loop {
        c.fill(FRAME_HEADER_BYTES).await?;
        let kind = c.buf[0];
        let channel = u16::from_be_bytes([c.buf[1], c.buf[2]]);
        let size = u32::from_be_bytes([c.buf[3], c.buf[4], c.buf[5], c.buf[6]]) as usize;
        if size > FRAME_MAX_BYTES {
            return Err(io::Error::other(format!(
                "frame of {size} bytes (type {kind}), more than {FRAME_MAX_BYTES}"
            )));
        }
        c.fill(FRAME_HEADER_BYTES + size + 1).await?;
        let mut frame = c.buf.split_to(FRAME_HEADER_BYTES + size + 1);
        if frame[FRAME_HEADER_BYTES + size] != FRAME_END {
            return Err(io::Error::other("frame without its frame-end octet"));
        }
        match kind {
            FRAME_HEARTBEAT => continue,
            FRAME_METHOD if size >= 4 => {}
            _ => return Err(io::Error::other(format!("unexpected frame type {kind}"))),
        }
        frame.advance(FRAME_HEADER_BYTES);
        frame.truncate(size);
        let id = (frame.get_u16(), frame.get_u16());
        if id == CLOSE {
            let code = frame.get_u16();
            let len = usize::from(frame.first().copied().unwrap_or(0));
            let text = frame.get(1..1 + len).unwrap_or_default();
            return Err(io::Error::other(format!(
                "Connection.Close from the broker: {code} {}",
                String::from_utf8_lossy(text)
            )));
        }
        return Ok(Method {
            channel,
            id,
            args: frame,
        });
    }
}

async fn expect(c: &mut Conn, id: (u16, u16), channel: u16) -> io::Result<BytesMut> {
    let m = read_method(c).await?;
    if m.id != id || m.channel != channel {
        return Err(io::Error::other(format!(
            "expected method {id:?} on channel {channel}, got {:?} on {}",
            m.id, m.channel
        )));
    }
    Ok(m.args)
}

impl Protocol for Amqp {
    /// The protocol header, Start → StartOk (PLAIN, no client properties), Tune →
    /// TuneOk (the broker's channel-max and frame-max, heartbeat `heartbeat`), Open →
    /// OpenOk, then `channels` Channel.Open → OpenOk.
    async fn open(
        &self,
        c: &mut Conn,
        _id: &str,
        heartbeat: Duration,
    ) -> io::Result<Option<Duration>> {
        c.write(PROTOCOL_HEADER).await?;
        expect(c, START, 0).await?;
        let mut out = BytesMut::with_capacity(256);
        let mut args = BytesMut::with_capacity(128);
        args.put_u32(0); // client-properties: an empty table
        short_str(&mut args, "PLAIN");
        let response = format!("\0{}\0{}", self.user, self.password);
        args.put_u32(response.len() as u32);
        args.put_slice(response.as_bytes());
        short_str(&mut args, "en_US");
        method(&mut out, 0, START_OK, &args);
        c.write(&out).await?;

        let mut tune = expect(c, TUNE, 0).await?;
        if tune.len() < 8 {
            return Err(io::Error::other("short Connection.Tune"));
        }
        let (channel_max, frame_max) = (tune.get_u16(), tune.get_u32());
        if channel_max != 0 && self.channels > channel_max {
            return Err(io::Error::other(format!(
                "{} channels asked, the broker allows {channel_max}",
                self.channels
            )));
        }
        let heartbeat_s = u16::try_from(heartbeat.as_secs()).unwrap_or(u16::MAX);
        out.clear();
        args.clear();
        args.put_u16(channel_max);
        args.put_u32(frame_max);
        args.put_u16(heartbeat_s);
        method(&mut out, 0, TUNE_OK, &args);
        args.clear();
        short_str(&mut args, &self.vhost);
        short_str(&mut args, ""); // reserved (capabilities)
        args.put_u8(0); // reserved (insist)
        method(&mut out, 0, OPEN, &args);
        c.write(&out).await?;
        expect(c, OPEN_OK, 0).await?;

        if self.channels > 0 {
            out.clear();
            for ch in 1..=self.channels {
                method(&mut out, ch, CHANNEL_OPEN, b"\x00"); // reserved short string
            }
            c.write(&out).await?;
            for ch in 1..=self.channels {
                expect(c, CHANNEL_OPEN_OK, ch).await?;
            }
        }
        Ok((heartbeat_s > 0).then_some(heartbeat))
    }

    fn beat(&self) -> &'static [u8] {
        &HEARTBEAT
    }

    fn heartbeats(&self, buf: &mut BytesMut) -> io::Result<u64> {
        let mut n = 0;
        while buf.len() >= HEARTBEAT.len() && buf[..HEARTBEAT.len()] == HEARTBEAT {
            buf.advance(HEARTBEAT.len());
            n += 1;
        }
        if !HEARTBEAT.starts_with(&buf[..buf.len().min(HEARTBEAT.len())]) {
            return Err(io::Error::other(format!(
                "a frame other than a heartbeat while idle: {:02x?}",
                &buf[..buf.len().min(32)]
            )));
        }
        Ok(n)
    }

    /// Connection.Close (200, no channel closed first: the close ends them), CloseOk,
    /// then the client closes the socket, as the protocol has the peer that asked.
    async fn close(&self, c: &mut Conn, _unanswered: u64) -> io::Result<()> {
        let mut out = BytesMut::with_capacity(32);
        let mut args = BytesMut::with_capacity(16);
        args.put_u16(200);
        short_str(&mut args, "");
        args.put_u16(0);
        args.put_u16(0);
        method(&mut out, 0, CLOSE, &args);
        c.write(&out).await?;
        expect(c, CLOSE_OK, 0).await?;
        c.finish().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_frames_are_framed() {
        let mut out = BytesMut::new();
        method(&mut out, 1, CHANNEL_OPEN, b"\x00");
        assert_eq!(&out[..], &[1, 0, 1, 0, 0, 0, 5, 0, 20, 0, 10, 0, 0xce]);
    }

    #[test]
    fn only_heartbeat_frames_count_while_idle() {
        let p = Amqp {
            user: "guest".into(),
            password: "guest".into(),
            vhost: "/".into(),
            channels: 1,
        };
        let mut buf = BytesMut::from(&[8, 0, 0, 0, 0, 0, 0, 0xce, 8, 0, 0][..]);
        assert_eq!(p.heartbeats(&mut buf).unwrap(), 1);
        assert_eq!(buf.len(), 3);
        let mut close = BytesMut::new();
        method(&mut close, 0, CLOSE, &[0, 200, 0, 0, 0, 0, 0]);
        assert!(p.heartbeats(&mut close).is_err());
    }
}
