//! Many idle MQTT connections at once, a scaled-down `CASES=idle bench/mqtt.sh` (which
//! holds 50,000 and measures memory): every connection stays open past its Keep Alive
//! period as long as it pings and gets every PINGRESP, while one that stops pinging is
//! closed by the broker (so staying open means something).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::{broker, WAIT};
use ferromq_mqtt::packet::Connect;
use ferromq_mqtt::{Decoder, Encoder, Limits, Packet, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};

/// Concurrent connections (both ends of each live in this process).
const CONNECTIONS: usize = 2_000;
const KEEP_ALIVE_SECS: u16 = 2;
/// Each connection pings this often (as clients do, well inside the 1.5 periods the
/// broker allows, so that a slow debug build on a loaded machine keeps them all)...
const PING_EVERY: Duration = Duration::from_secs(1);
/// ... this many times while all are open: longer than one Keep Alive period.
const PINGS: u32 = 3;
/// Handshakes in progress at once (the listener's accept backlog is finite).
const CONNECTING_MAX: usize = 64;
/// Bound on opening all connections, or on all of them finishing their pings (a guard
/// against a hang, not a measurement: a debug build on a loaded machine is slow).
const ALL_DONE_MAX: Duration = Duration::from_secs(120);

/// A raw MQTT 3.1.1 client on the broker's own codec (client end).
struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
}

impl Conn {
    /// Connects with Keep Alive [`KEEP_ALIVE_SECS`]; asserts CONNACK Success.
    async fn open(addr: std::net::SocketAddr, client_id: &str) -> Conn {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("TCP connect in time")
            .expect("TCP connect");
        let mut c = Conn {
            stream,
            rbuf: BytesMut::new(),
            decoder: Decoder::client(ProtocolVersion::V3_1_1, Limits::default()),
            encoder: Encoder::new(ProtocolVersion::V3_1_1),
        };
        c.send(&Packet::Connect(Box::new(Connect {
            version: ProtocolVersion::V3_1_1,
            clean_start: true,
            keep_alive_secs: KEEP_ALIVE_SECS,
            properties: Default::default(),
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
        })))
        .await;
        match c.next().await {
            Some(Packet::ConnAck(a)) if a.reason_code == ReasonCode::Success => c,
            other => panic!("{client_id}: expected CONNACK Success, got {other:?}"),
        }
    }

    async fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        self.encoder.encode(p, &mut out).expect("encodes");
        self.stream.write_all(&out).await.expect("write");
    }

    /// The next packet from the broker, or `None` once it has closed the connection.
    async fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.rbuf).expect("well-formed") {
                return Some(p);
            }
            let read = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.rbuf))
                .await
                .expect("the broker answers or closes in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn ping(&mut self, who: usize) {
        self.send(&Packet::PingReq).await;
        let answer = self.next().await;
        assert!(
            matches!(answer, Some(Packet::PingResp)),
            "connection {who}: expected PINGRESP, got {answer:?}"
        );
    }
}

/// Raises the soft open-file limit to the hard one; returns it.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of both calls.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_stay_open_past_keep_alive_while_they_ping() {
    let limit = raise_nofile();
    assert!(
        limit >= 2 * CONNECTIONS as u64 + 256,
        "the open-file hard limit ({limit}) is too low for {CONNECTIONS} connections"
    );
    let server = broker(|_| {}).await;
    let addr = server.mqtt_addr().expect("MQTT listener");

    let gate = Arc::new(Semaphore::new(CONNECTING_MAX));
    let all_open = Arc::new(Barrier::new(CONNECTIONS + 1));
    let all_pinged = Arc::new(Barrier::new(CONNECTIONS + 1));
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let (gate, all_open, all_pinged) = (gate.clone(), all_open.clone(), all_pinged.clone());
            tokio::spawn(async move {
                let permit = gate.acquire().await.expect("never closed");
                let mut c = Conn::open(addr, &format!("idle-{i}")).await;
                drop(permit);
                all_open.wait().await;
                for _ in 0..PINGS {
                    tokio::time::sleep(PING_EVERY).await;
                    c.ping(i).await;
                }
                all_pinged.wait().await;
                c
            })
        })
        .collect();

    let mut silent = Conn::open(addr, "silent").await;
    tokio::time::timeout(ALL_DONE_MAX, all_open.wait())
        .await
        .expect("every connection opens");
    // The control: a connection that sends nothing is closed after 1.5 periods.
    assert!(
        silent.next().await.is_none(),
        "the broker must close a connection that stops pinging"
    );
    tokio::time::timeout(ALL_DONE_MAX, all_pinged.wait())
        .await
        .expect("every connection gets its PINGRESPs");
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for t in tasks {
        conns.push(t.await.expect("connection task"));
    }
    // Still open after all of that: one more round trip each.
    for (i, c) in conns.iter_mut().enumerate() {
        c.ping(i).await;
    }
    server.shutdown().await;
}
