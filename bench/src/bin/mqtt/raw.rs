//! The few MQTT 3.1.1 packets the connection cases need, written and read directly on a
//! tokio socket: a full client per connection would cost more than the broker's side.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub const PINGREQ: [u8; 2] = [0xc0, 0x00];
pub const PINGRESP: [u8; 2] = [0xd0, 0x00];
pub const DISCONNECT: [u8; 2] = [0xe0, 0x00];

/// Source ports per loopback address that a run may use: the default ephemeral range
/// (32768–60999) holds about 28,000, and finding a free one gets slow as it fills.
pub const PORTS_PER_SOURCE_ADDR: usize = 10_000;

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

/// The `i`-th of `n` loopback source addresses: 127.0.0.1, 127.0.0.2, ... (all of
/// 127.0.0.0/8 is loopback on Linux).
pub fn source_addr(i: usize, n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (i % usize::from(n.max(1))) as u8,
    ))
}

/// Opens a TCP connection from `source` (any port) to `broker`.
pub async fn dial(source: IpAddr, broker: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    // Pick the port at connect(), not bind(): bind() must find a port unused towards
    // every destination and scans a crowded range slowly (seconds per thousand
    // connections past about 14,000), blocking the runtime's threads meanwhile.
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(broker).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
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

/// Sends CONNECT and reads a successful CONNACK.
pub async fn handshake(s: &mut TcpStream, client_id: &str, keep_alive_s: u16) -> io::Result<()> {
    s.write_all(&connect_packet(client_id, keep_alive_s))
        .await?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).await?;
    if connack[..2] != [0x20, 0x02] || connack[3] != 0 {
        return Err(io::Error::other(format!("CONNACK {connack:02x?}")));
    }
    Ok(())
}

/// Sends PINGREQ and reads PINGRESP.
pub async fn ping(s: &mut TcpStream) -> io::Result<()> {
    s.write_all(&PINGREQ).await?;
    let mut resp = [0u8; 2];
    s.read_exact(&mut resp).await?;
    if resp != PINGRESP {
        return Err(io::Error::other(format!(
            "expected PINGRESP, got {resp:02x?}"
        )));
    }
    Ok(())
}

/// Sends DISCONNECT and waits until the broker closes the connection.
pub async fn disconnect(s: &mut TcpStream) -> io::Result<()> {
    s.write_all(&DISCONNECT).await?;
    let mut rest = [0u8; 16];
    match s.read(&mut rest).await? {
        0 => Ok(()),
        n => Err(io::Error::other(format!(
            "data after DISCONNECT: {:02x?}",
            &rest[..n]
        ))),
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
    fn source_addresses_cycle_over_loopback() {
        assert_eq!(source_addr(0, 3).to_string(), "127.0.0.1");
        assert_eq!(source_addr(4, 3).to_string(), "127.0.0.2");
        assert_eq!(source_addr(5, 0).to_string(), "127.0.0.1");
    }
}
