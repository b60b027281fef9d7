//! Client sockets for the connection cases: many connections from one machine to one
//! broker port, spread over loopback source addresses.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use tokio::net::{TcpSocket, TcpStream};

/// Source ports per loopback address that a run may use: the default ephemeral range
/// (32768–60999) holds about 28,000, and finding a free one gets slow as it fills.
pub const PORTS_PER_SOURCE_ADDR: usize = 10_000;

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

/// Opens a TCP connection from `source` (any port) to `broker`, with TCP_NODELAY.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_cycle_over_loopback() {
        assert_eq!(source_addr(0, 3).to_string(), "127.0.0.1");
        assert_eq!(source_addr(4, 3).to_string(), "127.0.0.2");
        assert_eq!(source_addr(5, 0).to_string(), "127.0.0.1");
    }
}
