//! Shared helpers for black-box tests: an in-process broker on ephemeral ports and a
//! minimal STOMP client built on the codec.
#![allow(dead_code)]

pub mod amqp;
pub mod net;
pub mod tmpfs;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use ferromq::{Config, Server};
use ferromq_stomp::codec::{encode_parts, Command, Decoder, Frame, Headers, Item, Limits, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(5);

/// A broker on 127.0.0.1:0 with `tweak` applied to the default config.
pub async fn broker(tweak: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::default();
    config.listeners.stomp = "127.0.0.1:0".into();
    config.listeners.amqp = "127.0.0.1:0".into();
    config.listeners.mqtt = "127.0.0.1:0".into();
    config.listeners.openwire = "127.0.0.1:0".into();
    // TLS and WebSocket listeners are opt-in here (tests/tls.rs, tests/websocket.rs).
    for l in [
        &mut config.listeners.amqp_tls,
        &mut config.listeners.mqtt_tls,
        &mut config.listeners.stomp_tls,
        &mut config.listeners.openwire_tls,
        &mut config.listeners.ws,
        &mut config.listeners.wss,
    ] {
        l.clear();
    }
    config.data_dir = std::env::temp_dir().join(format!(
        "ferromq-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    tweak(&mut config);
    ferromq::start(config).await.expect("broker starts")
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Any client byte stream (TCP, TLS, WebSocket).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A raw STOMP client.
pub struct Client {
    stream: Box<dyn Io>,
    rbuf: BytesMut,
    decoder: Decoder,
    pub version: Version,
}

impl Client {
    pub async fn open(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Client::over(stream)
    }

    /// A client on an already connected stream.
    pub fn over(stream: impl Io + 'static) -> Client {
        Client {
            stream: Box::new(stream),
            rbuf: BytesMut::new(),
            decoder: Decoder::new(Limits::default()),
            version: Version::V1_2,
        }
    }

    /// Opens and sends CONNECT (1.2, guest); asserts CONNECTED.
    pub async fn connect(addr: SocketAddr) -> Client {
        Self::connect_with(addr, &[]).await
    }

    pub async fn connect_with(addr: SocketAddr, extra: &[(&str, &str)]) -> Client {
        Client::open(addr).await.login(extra).await
    }

    /// Sends CONNECT (1.2, guest, plus `extra`); asserts CONNECTED.
    pub async fn login(self, extra: &[(&str, &str)]) -> Client {
        let mut c = self;
        let mut hs = vec![
            ("accept-version", "1.2"),
            ("host", "/"),
            ("login", "guest"),
            ("passcode", "guest"),
        ];
        hs.extend_from_slice(extra);
        c.send_frame(Command::Connect, &hs, b"").await;
        let f = c.frame().await;
        assert_eq!(f.command, Command::Connected, "{f:?}");
        c.decoder.set_version(Version::V1_2);
        c
    }

    pub async fn send_frame(&mut self, cmd: Command, headers: &[(&str, &str)], body: &[u8]) {
        let mut out = BytesMut::new();
        encode_parts(&mut out, self.version, cmd, headers, &Headers::new(), body);
        self.send_raw(&out).await;
    }

    /// Like `send_frame`, but reports a dead connection instead of panicking.
    pub async fn try_send_frame(
        &mut self,
        cmd: Command,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> bool {
        let mut out = BytesMut::new();
        encode_parts(&mut out, self.version, cmd, headers, &Headers::new(), body);
        self.stream.write_all(&out).await.is_ok() && self.stream.flush().await.is_ok()
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        // TLS and WebSocket streams buffer.
        self.stream.flush().await.expect("flush");
    }

    /// The next frame (heart-beats skipped); panics after `WAIT`.
    pub async fn frame(&mut self) -> Frame {
        tokio::time::timeout(WAIT, self.next_item(true))
            .await
            .expect("a frame arrives in time")
            .expect("connection open")
    }

    /// The next item including heart-beats, or None at EOF.
    pub async fn next_item(&mut self, skip_heartbeats: bool) -> Option<Frame> {
        loop {
            match self
                .decoder
                .decode(&mut self.rbuf)
                .expect("server frames decode")
            {
                Some(Item::Frame(f)) => return Some(f),
                Some(Item::Heartbeat) if skip_heartbeats => continue,
                Some(Item::Heartbeat) => return Some(Frame::new(Command::Receipt)),
                None => {}
            }
            let n = self.stream.read_buf(&mut self.rbuf).await.ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Waits for a heart-beat EOL; returns false at EOF.
    pub async fn heartbeat(&mut self) -> bool {
        loop {
            match self.decoder.decode(&mut self.rbuf).expect("decode") {
                Some(Item::Heartbeat) => return true,
                Some(Item::Frame(f)) => panic!("expected a heart-beat, got {f:?}"),
                None => {}
            }
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
    }

    /// Asserts nothing arrives for `ms`.
    pub async fn expect_silence(&mut self, ms: u64) {
        if let Ok(Some(f)) =
            tokio::time::timeout(Duration::from_millis(ms), self.next_item(true)).await
        {
            panic!("expected silence, got {f:?}");
        }
    }

    /// Reads until EOF; panics if the connection stays open past `WAIT`.
    pub async fn expect_closed(&mut self) {
        tokio::time::timeout(WAIT, async {
            let mut buf = [0u8; 4096];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("connection closes");
    }

    pub async fn subscribe(&mut self, id: &str, dest: &str, ack: &str) {
        let receipt = format!("sub-{id}");
        self.send_frame(
            Command::Subscribe,
            &[
                ("id", id),
                ("destination", dest),
                ("ack", ack),
                ("receipt", &receipt),
            ],
            b"",
        )
        .await;
        let f = self.frame().await;
        assert_eq!(f.command, Command::Receipt, "{f:?}");
    }

    /// SEND with a receipt, waiting for it.
    pub async fn send(&mut self, dest: &str, body: &[u8], extra: &[(&str, &str)]) {
        let mut hs = vec![("destination", dest), ("receipt", "send")];
        hs.extend_from_slice(extra);
        self.send_frame(Command::Send, &hs, body).await;
        let f = self.frame().await;
        assert_eq!(f.command, Command::Receipt, "{f:?}");
    }

    /// The next MESSAGE if one arrives within `ms`.
    pub async fn next_message_within(&mut self, ms: u64) -> Option<Frame> {
        let f = tokio::time::timeout(Duration::from_millis(ms), self.next_item(true))
            .await
            .ok()?
            .expect("connection open");
        assert_eq!(f.command, Command::Message, "{f:?}");
        Some(f)
    }

    pub async fn message(&mut self) -> Frame {
        let f = self.frame().await;
        assert_eq!(f.command, Command::Message, "{f:?}");
        f
    }

    pub async fn ack(&mut self, msg: &Frame) {
        let id = msg.headers.get("ack").expect("ack header").to_string();
        self.send_frame(Command::Ack, &[("id", &id), ("receipt", "ack")], b"")
            .await;
        assert_eq!(self.frame().await.command, Command::Receipt);
    }
}
