//! The cost of TLS and of WebSocket framing: the same MQTT and STOMP workload over plain
//! TCP, TLS, WebSocket and WebSocket over TLS, against one in-process broker.
//!
//! ```text
//! cargo run --release -p ferromq-bench --bin transports -- [--seconds 5] [--warmup 1]
//!     [--size 256] [--backlog 2000] [--runs 3] [--protocols mqtt,stomp]
//!     [--transports tcp,tls,ws,wss]
//! ```
//!
//! Workload: one publisher and one subscriber on their own connections; the publisher
//! sends `--size`-byte messages to one topic (MQTT QoS 0 to `bench/<case>`, STOMP SEND to
//! `/topic/bench.<case>`) in batches, keeping at most `--backlog` messages sent but not yet
//! received, so the figure is the steady state and nothing is dropped for lack of room.
//! After `--warmup` seconds the received count is sampled, again `--seconds` later. The
//! clients are minimal raw-protocol clients (no client library in the measurement), so
//! the differences are the broker's transport costs plus the clients' TLS/WebSocket work
//! on the same two cores. Each case runs `--runs` times, alternating transports; the
//! median is printed with its ratio to plain TCP.
//!
//! The broker runs in this process on its own two-worker runtime, the clients on another,
//! with the generated self-signed certificate (in a temporary data directory) trusted.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use ferromq::Config;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Messages per write of the publisher.
const BATCH: u64 = 64;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Mqtt,
    Stomp,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

struct Args {
    seconds: f64,
    warmup: f64,
    size: usize,
    backlog: u64,
    runs: usize,
    protocols: Vec<Protocol>,
    transports: Vec<Transport>,
}

fn parse_args() -> Args {
    let mut a = Args {
        seconds: 5.0,
        warmup: 1.0,
        size: 256,
        backlog: 2000,
        runs: 3,
        protocols: vec![Protocol::Mqtt, Protocol::Stomp],
        transports: vec![
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let num = |v: &str| {
            v.parse::<f64>()
                .unwrap_or_else(|_| usage(&format!("bad {flag}")))
        };
        match flag.as_str() {
            "--seconds" => a.seconds = num(&value),
            "--warmup" => a.warmup = num(&value),
            "--size" => a.size = num(&value) as usize,
            "--backlog" => a.backlog = num(&value).max(BATCH as f64) as u64,
            "--runs" => a.runs = num(&value).max(1.0) as usize,
            "--protocols" => {
                a.protocols = value
                    .split(',')
                    .map(|p| match p {
                        "mqtt" => Protocol::Mqtt,
                        "stomp" => Protocol::Stomp,
                        _ => usage(&format!("unknown protocol {p}")),
                    })
                    .collect()
            }
            "--transports" => {
                a.transports = value
                    .split(',')
                    .map(|t| match t {
                        "tcp" => Transport::Tcp,
                        "tls" => Transport::Tls,
                        "ws" => Transport::Ws,
                        "wss" => Transport::Wss,
                        _ => usage(&format!("unknown transport {t}")),
                    })
                    .collect()
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!("{why}\nusage: transports [--seconds 5] [--warmup 1] [--size 256] [--backlog 2000] [--runs 3] [--protocols mqtt,stomp] [--transports tcp,tls,ws,wss]");
    std::process::exit(2)
}

/// Where the broker listens.
struct Ports {
    mqtt: SocketAddr,
    stomp: SocketAddr,
    mqtt_tls: SocketAddr,
    stomp_tls: SocketAddr,
    ws: SocketAddr,
    wss: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

async fn open(p: &Ports, protocol: Protocol, transport: Transport) -> Stream {
    let addr = match (protocol, transport) {
        (Protocol::Mqtt, Transport::Tcp) => p.mqtt,
        (Protocol::Stomp, Transport::Tcp) => p.stomp,
        (Protocol::Mqtt, Transport::Tls) => p.mqtt_tls,
        (Protocol::Stomp, Transport::Tls) => p.stomp_tls,
        (_, Transport::Ws) => p.ws,
        (_, Transport::Wss) => p.wss,
    };
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    let sub = match protocol {
        Protocol::Mqtt => "mqtt",
        Protocol::Stomp => "v12.stomp",
    };
    let ws = |io| async move {
        ferromq_websocket::client::connect(io, "/", sub)
            .await
            .expect("upgrade")
    };
    match transport {
        Transport::Tcp => Box::new(tcp),
        Transport::Ws => Box::new(ws(tcp).await),
        Transport::Tls | Transport::Wss => {
            let tls = tokio_rustls::TlsConnector::from(p.tls.clone())
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .expect("TLS handshake");
            if transport == Transport::Tls {
                Box::new(tls)
            } else {
                Box::new(
                    ferromq_websocket::client::connect(tls, "/", sub)
                        .await
                        .expect("upgrade"),
                )
            }
        }
    }
}

async fn send(io: &mut Stream, bytes: &[u8]) {
    io.write_all(bytes).await.expect("write");
    io.flush().await.expect("flush");
}

/// Reads until `done(buffer)` says how many bytes make the awaited reply.
async fn await_reply(io: &mut Stream, buf: &mut BytesMut, done: impl Fn(&[u8]) -> Option<usize>) {
    loop {
        if let Some(n) = done(buf) {
            buf.advance(n);
            return;
        }
        if io.read_buf(buf).await.expect("read") == 0 {
            panic!("connection closed during setup");
        }
    }
}

fn mqtt_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn mqtt_packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// The length of the whole MQTT packet at the start of `b`, if buffered.
fn mqtt_len(b: &[u8]) -> Option<usize> {
    let mut len = 0usize;
    for i in 1..5 {
        let byte = *b.get(i)?;
        len |= ((byte & 0x7f) as usize) << (7 * (i - 1));
        if byte & 0x80 == 0 {
            let total = 1 + i + len;
            return (b.len() >= total).then_some(total);
        }
    }
    None
}

/// The length through the first NUL (one STOMP frame without NULs in its body).
fn stomp_len(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == 0).map(|i| i + 1)
}

async fn login(io: &mut Stream, protocol: Protocol, id: &str, buf: &mut BytesMut) {
    match protocol {
        Protocol::Mqtt => {
            let mut body = Vec::new();
            mqtt_str(&mut body, "MQTT");
            body.extend_from_slice(&[4, 0xC2, 0, 60]);
            mqtt_str(&mut body, id);
            mqtt_str(&mut body, "guest");
            mqtt_str(&mut body, "guest");
            send(io, &mqtt_packet(0x10, &body)).await;
            await_reply(io, buf, mqtt_len).await;
        }
        Protocol::Stomp => {
            send(
                io,
                b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0",
            )
            .await;
            await_reply(io, buf, stomp_len).await;
        }
    }
}

async fn subscribe(io: &mut Stream, protocol: Protocol, topic: &str, buf: &mut BytesMut) {
    match protocol {
        Protocol::Mqtt => {
            let mut body = vec![0, 1];
            mqtt_str(&mut body, &format!("bench/{topic}"));
            body.push(0);
            send(io, &mqtt_packet(0x82, &body)).await;
            await_reply(io, buf, mqtt_len).await;
        }
        Protocol::Stomp => {
            let frame =
                format!("SUBSCRIBE\nid:1\ndestination:/topic/bench.{topic}\nreceipt:r\n\n\0");
            send(io, frame.as_bytes()).await;
            await_reply(io, buf, stomp_len).await;
        }
    }
}

/// One batch of publishes, encoded once and sent over and over.
fn batch(protocol: Protocol, topic: &str, size: usize) -> Vec<u8> {
    let payload = vec![b'x'; size];
    let one = match protocol {
        Protocol::Mqtt => {
            let mut body = Vec::new();
            mqtt_str(&mut body, &format!("bench/{topic}"));
            body.extend_from_slice(&payload);
            mqtt_packet(0x30, &body)
        }
        Protocol::Stomp => {
            let mut f =
                format!("SEND\ndestination:/topic/bench.{topic}\ncontent-length:{size}\n\n")
                    .into_bytes();
            f.extend_from_slice(&payload);
            f.push(0);
            f
        }
    };
    one.repeat(BATCH as usize)
}

/// Messages per second received over the measurement window.
async fn run_case(
    p: &Ports,
    a: &Args,
    protocol: Protocol,
    transport: Transport,
    run: usize,
) -> f64 {
    let received = Arc::new(AtomicU64::new(0));
    let mut sub = open(p, protocol, transport).await;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    login(&mut sub, protocol, &format!("sub-{run}"), &mut buf).await;
    // A topic per case, so nothing of an earlier case can arrive here.
    let topic = format!("{transport:?}{run}");
    subscribe(&mut sub, protocol, &topic, &mut buf).await;
    let counter = received.clone();
    let reader = tokio::spawn(async move {
        loop {
            loop {
                let len = match protocol {
                    Protocol::Mqtt => mqtt_len(&buf),
                    Protocol::Stomp => stomp_len(&buf),
                };
                let Some(len) = len else { break };
                let is_message = match protocol {
                    Protocol::Mqtt => buf[0] >> 4 == 3,
                    Protocol::Stomp => buf.starts_with(b"MESSAGE") || buf.starts_with(b"\nMESSAGE"),
                };
                if is_message {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                buf.advance(len);
            }
            match sub.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let mut publisher = open(p, protocol, transport).await;
    let mut pbuf = BytesMut::new();
    login(&mut publisher, protocol, &format!("pub-{run}"), &mut pbuf).await;
    let frames = batch(protocol, &topic, a.size);
    let start = Instant::now();
    let warm = start + Duration::from_secs_f64(a.warmup);
    let end = warm + Duration::from_secs_f64(a.seconds);
    let mut sent = 0u64;
    let mut base: Option<(Instant, u64)> = None;
    let rate = loop {
        let now = Instant::now();
        if base.is_none() && now >= warm {
            base = Some((now, received.load(Ordering::Relaxed)));
        }
        if now >= end {
            let (t0, n0) = base.expect("the window starts before it ends");
            let n = received.load(Ordering::Relaxed) - n0;
            break n as f64 / now.duration_since(t0).as_secs_f64();
        }
        if sent.saturating_sub(received.load(Ordering::Relaxed)) + BATCH > a.backlog {
            tokio::task::yield_now().await;
            continue;
        }
        send(&mut publisher, &frames).await;
        sent += BATCH;
    };
    drop(publisher);
    reader.abort();
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let a = parse_args();
    let data =
        std::env::temp_dir().join(format!("ferromq-bench-transports-{}", std::process::id()));
    let broker_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = broker_rt.block_on(async {
        let mut c = Config::default();
        for l in [
            &mut c.listeners.stomp,
            &mut c.listeners.mqtt,
            &mut c.listeners.stomp_tls,
            &mut c.listeners.mqtt_tls,
            &mut c.listeners.ws,
            &mut c.listeners.wss,
        ] {
            *l = "127.0.0.1:0".into();
        }
        c.listeners.amqp.clear();
        c.listeners.amqp_tls.clear();
        c.store.enabled = false;
        c.data_dir = data.clone();
        c.log = "warn".into();
        ferromq::start(c).await.expect("broker starts")
    });
    let t = server.transports();
    let ports = Ports {
        mqtt: server.mqtt_addr().unwrap(),
        stomp: server.stomp_addr().unwrap(),
        mqtt_tls: t.mqtt_tls.unwrap(),
        stomp_tls: t.stomp_tls.unwrap(),
        ws: t.ws.unwrap(),
        wss: t.wss.unwrap(),
        tls: ferromq::tls::client_config(Path::new(t.tls_cert.as_ref().unwrap()), None)
            .expect("trust the generated certificate"),
    };
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "# {} s per run after {} s warm-up, {} runs, {}-byte messages, backlog {}",
        a.seconds, a.warmup, a.runs, a.size, a.backlog
    );
    println!("protocol transport msgs_per_s_median vs_tcp runs");
    for &protocol in &a.protocols {
        let mut results: Vec<(Transport, Vec<f64>)> =
            a.transports.iter().map(|&t| (t, Vec::new())).collect();
        for run in 0..a.runs {
            for (transport, rates) in results.iter_mut() {
                let r = client_rt.block_on(run_case(&ports, &a, protocol, *transport, run));
                eprintln!("{protocol:?} {transport:?} run {run}: {r:.0} msg/s");
                rates.push(r);
            }
        }
        let tcp = results
            .iter()
            .find(|(t, _)| *t == Transport::Tcp)
            .map(|(_, r)| median(r.clone()));
        for (transport, rates) in results {
            let m = median(rates.clone());
            let ratio = tcp.map_or("-".to_string(), |t| format!("{:.2}", m / t));
            let all: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "{:?} {:?} {m:.0} {ratio} {}",
                protocol,
                transport,
                all.join("/")
            );
        }
    }
    drop(client_rt);
    broker_rt.block_on(server.shutdown());
    let _ = std::fs::remove_dir_all(&data);
}
