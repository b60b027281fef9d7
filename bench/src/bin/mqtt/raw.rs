//! The few MQTT 3.1.1 packets the connection cases need, written and read directly on a
//! tokio socket (a full client per connection would cost more than the broker's side):
//! CONNECT/CONNACK, PINGREQ/PINGRESP as the heart-beat, DISCONNECT.

use std::io;
use std::net::SocketAddr;
use std::os::fd::FromRawFd;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use ferromq_bench::storm::{Conn, Protocol};

pub const PINGREQ: [u8; 2] = [0xc0, 0x00];
pub const PINGRESP: [u8; 2] = [0xd0, 0x00];
pub const DISCONNECT: [u8; 2] = [0xe0, 0x00];

/// CONNECT, MQTT 3.1.1, clean session, no will, no user name.
pub fn connect_packet(client_id: &str, keep_alive_s: u16) -> Vec<u8> {
    let id = client_id.as_bytes();
    // Protocol name (2 + 4), level, flags, keep alive (2), client id (2 + len).
    let remaining = 10 + 2 + id.len();
    assert!(remaining < 128 * 128, "client id too long");
    let mut p = Vec::with_capacity(3 + remaining);
    p.push(0x10);
    if remaining < 128 {
        p.push(remaining as u8);
    } else {
        p.extend_from_slice(&[(remaining % 128) as u8 | 0x80, (remaining / 128) as u8]);
    }
    p.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02]);
    p.extend_from_slice(&keep_alive_s.to_be_bytes());
    p.extend_from_slice(&(id.len() as u16).to_be_bytes());
    p.extend_from_slice(id);
    p
}

/// Sets TCP_NODELAY on every TCP socket of this process connected to `peer`; returns
/// how many. rumqttc 0.24 has no option for it, and its sockets are not reachable
/// through its API, so they are found among the process's file descriptors.
pub fn nodelay_towards(peer: SocketAddr) -> io::Result<usize> {
    let mut set = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // SAFETY: `fd` was open when listed. `ManuallyDrop` keeps the borrowed descriptor
        // from being closed by this wrapper. If another thread closed it since (and the
        // number was reused), the calls below fail on a non-socket or touch another
        // socket of ours, which is harmless: they only read the peer address and set an
        // option.
        let s = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
        if s.peer_addr().is_ok_and(|p| p == peer) {
            s.set_nodelay(true)?;
            set += 1;
        }
    }
    Ok(set)
}

/// MQTT 3.1.1 for the connection cases. The heart-beat is the Keep Alive: a PINGREQ per
/// period, which the broker answers with PINGRESP (it sends nothing on its own, and
/// closes a connection silent for 1.5 periods).
pub struct Mqtt;

impl Protocol for Mqtt {
    /// CONNECT (clean session, client id `id`, Keep Alive `heartbeat`), CONNACK 0.
    async fn open(
        &self,
        c: &mut Conn,
        id: &str,
        heartbeat: Duration,
    ) -> io::Result<Option<Duration>> {
        let keep_alive_s = u16::try_from(heartbeat.as_secs()).unwrap_or(u16::MAX);
        c.write(&connect_packet(id, keep_alive_s)).await?;
        c.fill(4).await?;
        let connack = c.buf.split_to(4);
        if connack[..2] != [0x20, 0x02] || connack[3] != 0 {
            return Err(io::Error::other(format!("CONNACK {:02x?}", &connack[..])));
        }
        Ok(Some(heartbeat))
    }

    fn beat(&self) -> &'static [u8] {
        &PINGREQ
    }

    fn heartbeats(&self, buf: &mut BytesMut) -> io::Result<u64> {
        let mut n = 0;
        while buf.len() >= 2 {
            if buf[..2] != PINGRESP {
                return Err(io::Error::other(format!(
                    "expected PINGRESP, got {:02x?}",
                    &buf[..2]
                )));
            }
            buf.advance(2);
            n += 1;
        }
        if buf.first().is_some_and(|&b| b != PINGRESP[0]) {
            return Err(io::Error::other(format!(
                "expected PINGRESP, got {:02x?}",
                &buf[..]
            )));
        }
        Ok(n)
    }

    /// DISCONNECT, then the broker closes: MQTT acknowledges nothing, so the check is
    /// that every PINGREQ got its PINGRESP and that nothing else came.
    async fn close(&self, c: &mut Conn, unanswered: u64) -> io::Result<()> {
        c.write(&DISCONNECT).await?;
        c.until_closed().await?;
        let answered = self.heartbeats(&mut c.buf)?;
        if answered != unanswered || !c.buf.is_empty() {
            return Err(io::Error::other(format!(
                "{answered} PINGRESPs after DISCONNECT for {unanswered} unanswered PINGREQs, \
                 and {} bytes more",
                c.buf.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_packet_is_mqtt_3_1_1_with_clean_session() {
        assert_eq!(
            connect_packet("ab", 10),
            [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 10, 0, 2, b'a', b'b']
        );
        let long = "x".repeat(200);
        let p = connect_packet(&long, 1);
        assert_eq!(&p[..3], &[0x10, (212 % 128) as u8 | 0x80, 1]);
        assert_eq!(p.len(), 3 + 212);
    }

    #[test]
    fn only_pingresps_count_as_heartbeats() {
        let mut buf = BytesMut::from(&[0xd0, 0x00, 0xd0, 0x00, 0xd0][..]);
        assert_eq!(Mqtt.heartbeats(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..], &[0xd0]);
        let mut bad = BytesMut::from(&[0x30, 0x00][..]);
        assert!(Mqtt.heartbeats(&mut bad).is_err());
    }
}
