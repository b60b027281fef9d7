//! A raw MQTT client on the crate's own codec (client end): full control over packet ids,
//! acknowledgements and bytes, which library clients hide.

use std::net::SocketAddr;
use std::num::NonZeroU16;

use bytes::BytesMut;
use ferromq_mqtt::packet::{
    ConnAck, Connect, Publish, PublishAck, QosPid, Subscribe, Subscription, SubscriptionOptions,
};
use ferromq_mqtt::properties::ConnectProperties;
use ferromq_mqtt::{Decoder, Encoder, Limits, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::WAIT;

pub struct Raw {
    stream: TcpStream,
    rbuf: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
}

pub fn pid(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).expect("non-zero")
}

pub fn connect_packet(
    version: ProtocolVersion,
    id: &str,
    clean: bool,
    properties: ConnectProperties,
) -> Connect {
    Connect {
        version,
        clean_start: clean,
        keep_alive_secs: 30,
        properties,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
    }
}

pub fn publish(topic: &str, body: &'static [u8], qos: QoS, id: u16) -> Packet {
    let mut p = Publish::new(topic, body);
    p.qos = match qos {
        QoS::AtMostOnce => QosPid::AtMostOnce,
        QoS::AtLeastOnce => QosPid::AtLeastOnce(pid(id)),
        QoS::ExactlyOnce => QosPid::ExactlyOnce(pid(id)),
    };
    Packet::Publish(p)
}

pub fn subscribe(filter: &str, options: SubscriptionOptions) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        filters: vec![Subscription {
            filter: filter.into(),
            options,
        }],
    })
}

impl Raw {
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            rbuf: BytesMut::new(),
            decoder: Decoder::client(version, Limits::default()),
            encoder: Encoder::new(version),
        }
    }

    /// Opens, sends `connect` and returns the CONNACK (asserting it is one).
    pub async fn connect(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let mut c = Raw::open(addr, connect.version).await;
        c.send(Packet::Connect(Box::new(connect))).await;
        match c.recv().await {
            Some(Packet::ConnAck(a)) => (c, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        self.encoder.encode(&p, &mut out).expect("encodes");
        self.send_bytes(&out).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next packet, or `None` once the broker closed the connection.
    async fn next_packet(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = self
                .decoder
                .decode(&mut self.rbuf)
                .expect("server packets decode")
            {
                return Some(p);
            }
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next packet, or `None` once the broker closed the connection; panics after WAIT.
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(WAIT, self.next_packet())
            .await
            .expect("a packet or EOF in time")
    }

    /// The next packet, which must be a PUBLISH.
    pub async fn publish_received(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Sends SUBSCRIBE and waits for its SUBACK.
    pub async fn subscribe(&mut self, filter: &str, options: SubscriptionOptions) {
        self.send(subscribe(filter, options)).await;
        match self.recv().await {
            Some(Packet::SubAck(a)) => assert!(!a.reason_codes[0].is_error(), "{a:?}"),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish_acked(&mut self, topic: &str, body: &'static [u8], id: u16) {
        self.send(publish(topic, body, QoS::AtLeastOnce, id)).await;
        match self.recv().await {
            Some(Packet::PubAck(a)) => assert_eq!(a.packet_id, pid(id)),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// Publishes at QoS 2 and completes the exchange (PUBREC, PUBREL, PUBCOMP).
    pub async fn publish_completed(&mut self, topic: &str, body: &'static [u8], id: u16) {
        self.send(publish(topic, body, QoS::ExactlyOnce, id)).await;
        match self.recv().await {
            Some(Packet::PubRec(a)) => assert_eq!(a.packet_id, pid(id)),
            other => panic!("expected PUBREC, got {other:?}"),
        }
        self.send(Packet::PubRel(PublishAck::new(pid(id)))).await;
        match self.recv().await {
            Some(Packet::PubComp(a)) => assert_eq!(a.packet_id, pid(id)),
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
    }

    /// Resends a QoS 2 PUBLISH with DUP (its PUBREC was not seen), then completes the
    /// exchange; the broker must know the id (PUBCOMP 0x00).
    pub async fn resend_qos2_and_release(&mut self, topic: &str, body: &'static [u8], id: u16) {
        let Packet::Publish(mut again) = publish(topic, body, QoS::ExactlyOnce, id) else {
            unreachable!()
        };
        again.dup = true;
        self.send(Packet::Publish(again)).await;
        match self.recv().await {
            Some(Packet::PubRec(a)) => assert_eq!(a.packet_id, pid(id)),
            other => panic!("expected PUBREC, got {other:?}"),
        }
        self.send(Packet::PubRel(PublishAck::new(pid(id)))).await;
        match self.recv().await {
            Some(Packet::PubComp(a)) => assert_eq!(a.reason_code, ReasonCode::Success),
            other => panic!("expected PUBCOMP, got {other:?}"),
        }
    }

    /// PINGREQ, then waits for the PINGRESP: everything sent before was handled.
    pub async fn ping(&mut self) {
        self.send(Packet::PingReq).await;
        match self.recv().await {
            Some(Packet::PingResp) => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    pub async fn puback(&mut self, id: NonZeroU16) {
        self.send(Packet::PubAck(PublishAck::new(id))).await;
    }

    /// Asserts nothing arrives for `ms` (only for checking that something does *not*
    /// happen; a slow machine can only make this pass, never fail).
    pub async fn expect_silence(&mut self, ms: u64) {
        let got =
            tokio::time::timeout(std::time::Duration::from_millis(ms), self.next_packet()).await;
        if let Ok(p) = got {
            panic!("expected silence, got {p:?}");
        }
    }
}
