//! The session state machine driven frame by frame with a manual clock: no sockets, no
//! sleeping. Server output is decoded back into frames to check it.

use std::sync::Arc;

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::{basic, channel, connection, queue, AMQPClass, BasicProperties};
use amq_protocol::types::FieldTable;
use bytes::{Bytes, BytesMut};
use ferromq_amqp::codec::{DecodeError, Decoder, Frame, PROTOCOL_HEADER};
use ferromq_amqp::out::Out;
use ferromq_amqp::session::{Flow, Session};
use ferromq_amqp::{AmqpConfig, AmqpError};
use ferromq_core::{Broker, BrokerConfig, Event, EventReceiver, ManualClock};

struct Harness {
    session: Session,
    events: Option<EventReceiver>,
    now: u64,
}

fn config(tweak: impl FnOnce(&mut AmqpConfig)) -> Arc<AmqpConfig> {
    let mut c = AmqpConfig::default();
    tweak(&mut c);
    Arc::new(c)
}

impl Harness {
    fn new(cfg: Arc<AmqpConfig>) -> Self {
        let broker = Broker::new(BrokerConfig::default(), Arc::new(ManualClock::new(0)));
        let session = Session::new(cfg, broker, Some("127.0.0.1".parse().unwrap()), 0);
        Self {
            session,
            events: None,
            now: 0,
        }
    }

    /// The next delivery event waiting, if any (the channel exists from the first
    /// consumer on).
    fn try_event(&mut self) -> Option<Event> {
        if self.events.is_none() {
            self.events = self.session.take_events();
        }
        self.events.as_mut()?.try_recv().ok()
    }

    /// Feeds a frame; returns the flow and the frames the server wrote.
    fn feed(&mut self, f: Frame) -> (Flow, Vec<Frame>) {
        let mut out = Out::copying();
        self.session.on_read(self.now);
        let flow = self.session.on_frame(f, self.now, &mut out);
        self.session.flush(&mut out);
        (flow, decode(&out))
    }

    fn method(&mut self, channel: u16, m: AMQPClass) -> (Flow, Vec<Frame>) {
        self.feed(Frame::Method(channel, m))
    }

    fn advance(&mut self, ms: u64) -> (Flow, Vec<Frame>) {
        self.now += ms;
        let mut out = Out::copying();
        let flow = self.session.on_timer(self.now, &mut out);
        (flow, decode(&out))
    }

    /// Header, start-ok, tune-ok with `heartbeat`, open `/`.
    fn open(heartbeat: u16) -> Self {
        let mut h = Harness::new(config(|_| {}));
        let (_, out) = h.feed(Frame::ProtocolHeader);
        assert!(matches!(
            out[0],
            Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(_)))
        ));
        let (_, out) = h.method(0, start_ok("PLAIN", b"\0guest\0guest"));
        let Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Tune(t))) = &out[0]
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            (t.channel_max, t.frame_max, t.heartbeat),
            (2047, 131_072, 60)
        );
        let (_, out) = h.method(
            0,
            conn(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: 16,
                frame_max: 8192,
                heartbeat,
            })),
        );
        assert!(out.is_empty());
        let (_, out) = h.method(
            0,
            conn(connection::AMQPMethod::Open(connection::Open {
                virtual_host: "/".into(),
            })),
        );
        assert!(matches!(
            out[0],
            Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))
        ));
        assert!(h.session.is_open());
        assert_eq!(h.session.frame_max(), 8192);
        h
    }

    fn open_channel(&mut self, id: u16) {
        let (_, out) = self.method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        );
        assert!(
            matches!(
                out[0],
                Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
            ),
            "{out:?}"
        );
    }
}

fn conn(m: connection::AMQPMethod) -> AMQPClass {
    AMQPClass::Connection(m)
}

fn start_ok(mechanism: &str, response: &[u8]) -> AMQPClass {
    conn(connection::AMQPMethod::StartOk(connection::StartOk {
        client_properties: FieldTable::default(),
        mechanism: mechanism.into(),
        response: response.to_vec().into(),
        locale: "en_US".into(),
    }))
}

fn decode(out: &BytesMut) -> Vec<Frame> {
    let mut d = Decoder::new(1 << 24, 64);
    let mut buf = BytesMut::from(&PROTOCOL_HEADER[..]);
    buf.extend_from_slice(out);
    let mut v = Vec::new();
    while let Some(f) = d.decode(&mut buf).unwrap() {
        v.push(f);
    }
    v.remove(0);
    v
}

fn connection_close(frames: &[Frame]) -> Option<&connection::Close> {
    frames.iter().find_map(|f| match f {
        Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => Some(c),
        _ => None,
    })
}

fn channel_close(frames: &[Frame]) -> Option<&channel::Close> {
    frames.iter().find_map(|f| match f {
        Frame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(c))) => Some(c),
        _ => None,
    })
}

#[test]
fn handshake_with_amqplain_and_client_close() {
    let mut h = Harness::new(config(|_| {}));
    h.feed(Frame::ProtocolHeader);
    let (_, out) = h.method(
        0,
        start_ok(
            "AMQPLAIN",
            b"\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x05guest",
        ),
    );
    assert!(matches!(
        out[0],
        Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Tune(_)))
    ));
    let mut h = Harness::open(0);
    let (flow, out) = h.method(
        0,
        conn(connection::AMQPMethod::Close(connection::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    );
    assert_eq!(flow, Flow::Close);
    assert!(matches!(
        out[0],
        Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))
    ));
}

#[test]
fn bad_login_closes_with_403_only_for_clients_that_ask() {
    let mut h = Harness::new(config(|_| {}));
    h.feed(Frame::ProtocolHeader);
    let (flow, out) = h.method(0, start_ok("PLAIN", b"\0guest\0wrong"));
    assert_eq!(flow, Flow::Close);
    assert!(
        out.is_empty(),
        "no close frame without authentication_failure_close"
    );

    let mut h = Harness::new(config(|_| {}));
    h.feed(Frame::ProtocolHeader);
    let mut caps = FieldTable::default();
    caps.insert(
        "authentication_failure_close".into(),
        amq_protocol::types::AMQPValue::Boolean(true),
    );
    let mut props = FieldTable::default();
    props.insert(
        "capabilities".into(),
        amq_protocol::types::AMQPValue::FieldTable(caps),
    );
    let (flow, out) = h.method(
        0,
        conn(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: props,
            mechanism: "PLAIN".into(),
            response: b"\0guest\0wrong".to_vec().into(),
            locale: "en_US".into(),
        })),
    );
    assert_eq!(flow, Flow::Close);
    let close = connection_close(&out).expect("connection.close");
    assert_eq!(close.reply_code, 403);
    assert!(close
        .reply_text
        .as_str()
        .starts_with("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN"));
}

#[test]
fn unknown_vhost_is_530() {
    let mut h = Harness::new(config(|_| {}));
    h.feed(Frame::ProtocolHeader);
    h.method(0, start_ok("PLAIN", b"\0guest\0guest"));
    h.method(
        0,
        conn(connection::AMQPMethod::TuneOk(connection::TuneOk {
            channel_max: 0,
            frame_max: 0,
            heartbeat: 0,
        })),
    );
    let (flow, out) = h.method(
        0,
        conn(connection::AMQPMethod::Open(connection::Open {
            virtual_host: "nope".into(),
        })),
    );
    assert_eq!(flow, Flow::Close);
    let close = connection_close(&out).unwrap();
    assert_eq!(
        (close.reply_code, close.reply_text.as_str()),
        (530, "NOT_ALLOWED - vhost nope not found")
    );
    assert_eq!((close.class_id, close.method_id), (10, 40));
}

#[test]
fn bad_protocol_header_gets_ours_back() {
    let mut h = Harness::new(config(|_| {}));
    let mut out = Out::copying();
    let flow = h
        .session
        .on_decode_error(DecodeError::ProtocolHeader, &mut out);
    assert_eq!(flow, Flow::Close);
    assert_eq!(&out[..], &PROTOCOL_HEADER);
}

#[test]
fn handshake_times_out() {
    let mut h = Harness::new(config(|c| c.limits.handshake_timeout_ms = 1000));
    h.feed(Frame::ProtocolHeader);
    assert_eq!(h.session.next_deadline_ms(), Some(1000));
    assert_eq!(h.advance(999).0, Flow::Continue);
    assert_eq!(h.advance(1).0, Flow::Close);
}

#[test]
fn heartbeats_are_sent_and_silence_is_fatal() {
    let mut h = Harness::open(10);
    assert_eq!(h.session.heartbeat_s(), 10);
    // Nothing written for half the interval: a heartbeat goes out.
    let (flow, out) = h.advance(5_000);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(out, vec![Frame::Heartbeat]);
    // The client's heartbeats keep it alive.
    h.advance(10_000);
    h.feed(Frame::Heartbeat);
    assert_eq!(h.advance(19_000).0, Flow::Continue);
    // Two intervals of silence: closed, without a close frame (the peer is gone).
    let (flow, out) = h.advance(1_000);
    assert_eq!(flow, Flow::Close);
    assert!(out.iter().all(|f| *f == Frame::Heartbeat), "{out:?}");
}

#[test]
fn heartbeat_zero_disables_both_directions() {
    let mut h = Harness::open(0);
    assert_eq!(h.session.next_deadline_ms(), None);
    assert_eq!(h.advance(10_000_000).0, Flow::Continue);
}

#[test]
fn tune_ok_above_the_offer_is_refused() {
    let mut h = Harness::new(config(|_| {}));
    h.feed(Frame::ProtocolHeader);
    h.method(0, start_ok("PLAIN", b"\0guest\0guest"));
    let (flow, out) = h.method(
        0,
        conn(connection::AMQPMethod::TuneOk(connection::TuneOk {
            channel_max: 0,
            frame_max: 1 << 20,
            heartbeat: 0,
        })),
    );
    assert_eq!(flow, Flow::Close);
    assert_eq!(connection_close(&out).unwrap().reply_code, 530);
}

#[test]
fn channel_errors_close_the_channel_and_keep_the_connection() {
    let mut h = Harness::open(0);
    h.open_channel(1);
    h.open_channel(2);
    let (flow, out) = h.method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "missing".into(),
            passive: true,
            ..Default::default()
        })),
    );
    assert_eq!(flow, Flow::Continue);
    let close = channel_close(&out).expect("channel.close");
    assert_eq!(
        (close.reply_code, close.class_id, close.method_id),
        (404, 50, 10)
    );
    assert_eq!(
        close.reply_text.as_str(),
        "NOT_FOUND - no queue 'missing' in vhost '/'"
    );
    // Until close-ok, the channel ignores everything.
    let (_, out) = h.method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    );
    assert!(out.is_empty());
    h.method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
    );
    // The id is free again; channel 2 never noticed.
    h.open_channel(1);
    let (_, out) = h.method(
        2,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    );
    assert!(matches!(
        out[0],
        Frame::Method(2, AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))
    ));
}

#[test]
fn connection_errors_close_the_connection() {
    let mut h = Harness::open(0);
    h.open_channel(1);
    // A second channel.open is a hard error (504).
    let (flow, out) = h.method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    );
    assert_eq!(flow, Flow::Continue, "waits for close-ok");
    assert_eq!(connection_close(&out).unwrap().reply_code, 504);
    // Nothing but close-ok is processed now.
    let (_, out) = h.method(
        2,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    );
    assert!(out.is_empty());
    let (flow, _) = h.method(
        0,
        conn(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
    );
    assert_eq!(flow, Flow::Close);

    // Without close-ok, the close timeout ends it.
    let mut h = Harness::open(0);
    let (_, out) = h.method(
        3,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    );
    let close = connection_close(&out).unwrap();
    assert_eq!(
        (close.reply_code, close.reply_text.as_str()),
        (504, "CHANNEL_ERROR - expected 'channel.open'")
    );
    assert_eq!(h.advance(2_999).0, Flow::Continue);
    assert_eq!(h.advance(1).0, Flow::Close);
}

#[test]
fn content_rules() {
    let mut h = Harness::open(0);
    h.open_channel(1);
    let publish = || {
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: "q".into(),
            mandatory: false,
            immediate: false,
        }))
    };
    let header = |size| AMQPContentHeader {
        class_id: 60,
        body_size: size,
        properties: BasicProperties::default(),
    };
    // A body larger than body_max: 406 on the channel, before any body arrives.
    h.method(1, publish());
    let (_, out) = h.feed(Frame::Header(1, header(1 << 40)));
    let close = channel_close(&out).unwrap();
    assert_eq!(close.reply_code, 406);
    assert!(close
        .reply_text
        .as_str()
        .contains("is larger than configured max size"));
    // Its body frames are ignored by the closing channel.
    let (flow, out) = h.feed(Frame::Body(1, Bytes::from_static(b"xx")));
    assert_eq!((flow, out.len()), (Flow::Continue, 0));
    h.method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
    );
    h.open_channel(1);
    // A method where content is expected: 505, a connection error.
    h.method(1, publish());
    let (_, out) = h.method(1, publish());
    assert_eq!(connection_close(&out).unwrap().reply_code, 505);

    // A body longer than declared: 501.
    let mut h = Harness::open(0);
    h.open_channel(1);
    h.method(1, publish());
    h.feed(Frame::Header(1, header(2)));
    let (_, out) = h.feed(Frame::Body(1, Bytes::from_static(b"xyz")));
    assert_eq!(connection_close(&out).unwrap().reply_code, 501);
}

#[test]
fn publishes_confirm_in_order_and_deliveries_arrive() {
    let mut h = Harness::open(0);
    h.open_channel(1);
    h.method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            ..Default::default()
        })),
    );
    h.method(
        1,
        AMQPClass::Confirm(amq_protocol::protocol::confirm::AMQPMethod::Select(
            amq_protocol::protocol::confirm::Select { nowait: false },
        )),
    );
    for seq in 1..=3 {
        h.method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "".into(),
                routing_key: "q".into(),
                mandatory: false,
                immediate: false,
            })),
        );
        let (_, out) = h.feed(Frame::Header(
            1,
            AMQPContentHeader {
                class_id: 60,
                body_size: 0,
                properties: BasicProperties::default(),
            },
        ));
        assert_eq!(
            out,
            vec![Frame::Method(
                1,
                AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: seq,
                    multiple: false
                }))
            )]
        );
    }
    // Each publish completed in its own batch: acked one by one, in order.
    let (_, out) = h.method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "q".into(),
            consumer_tag: "c".into(),
            no_ack: true,
            ..Default::default()
        })),
    );
    assert!(
        matches!(&out[0], Frame::Method(1, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(c))) if c.consumer_tag.as_str() == "c")
    );
    let mut delivered = 0;
    while let Some(ev) = h.try_event() {
        let mut out = Out::copying();
        h.session.on_event(ev, &mut out);
        let frames = decode(&out);
        assert!(
            matches!(&frames[0], Frame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Deliver(d))) if d.delivery_tag == delivered + 1)
        );
        delivered += 1;
    }
    assert_eq!(delivered, 3);
}

#[test]
fn errors_name_their_scope() {
    let e = AmqpError::new(404, "x");
    assert_eq!(e.scope(), ferromq_amqp::error::Scope::Channel);
}

#[test]
fn blocked_and_unblocked_go_to_clients_that_understand_them() {
    let mut h = Harness::new(config(|_| {}));
    h.feed(Frame::ProtocolHeader);
    let mut caps = FieldTable::default();
    caps.insert(
        "connection.blocked".into(),
        amq_protocol::types::AMQPValue::Boolean(true),
    );
    let mut props = FieldTable::default();
    props.insert(
        "capabilities".into(),
        amq_protocol::types::AMQPValue::FieldTable(caps),
    );
    h.method(
        0,
        conn(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: props,
            mechanism: "PLAIN".into(),
            response: b"\0guest\0guest".to_vec().into(),
            locale: "en_US".into(),
        })),
    );
    h.method(
        0,
        conn(connection::AMQPMethod::TuneOk(connection::TuneOk {
            channel_max: 0,
            frame_max: 0,
            heartbeat: 0,
        })),
    );
    h.method(
        0,
        conn(connection::AMQPMethod::Open(connection::Open {
            virtual_host: "/".into(),
        })),
    );
    let mut out = Out::copying();
    h.session.set_blocked(Some("low on memory"), &mut out);
    h.session.set_blocked(Some("still"), &mut out);
    h.session.set_blocked(None, &mut out);
    let frames = decode(&out);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(
        matches!(&frames[0], Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Blocked(b))) if b.reason.as_str() == "low on memory")
    );
    assert!(matches!(
        &frames[1],
        Frame::Method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Unblocked(_))
        )
    ));

    let mut plain = Harness::open(0);
    let mut out = Out::copying();
    plain.session.set_blocked(Some("x"), &mut out);
    assert!(out.is_empty(), "not announced, not sent");
}

/// A small deterministic generator, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random frames (valid framing, arbitrary payloads on the methods and channels a client
/// uses) never panic the session: each ends in a frame, a channel error or a connection
/// error.
#[test]
fn garbage_after_the_handshake_never_panics() {
    const METHODS: [(u16, u16); 24] = [
        (10, 50),
        (10, 51),
        (20, 10),
        (20, 20),
        (20, 40),
        (20, 41),
        (40, 10),
        (40, 20),
        (40, 30),
        (40, 40),
        (50, 10),
        (50, 20),
        (50, 30),
        (50, 40),
        (50, 50),
        (60, 10),
        (60, 20),
        (60, 30),
        (60, 40),
        (60, 70),
        (60, 80),
        (60, 90),
        (60, 120),
        (85, 10),
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut h = Harness::open(0);
    let mut decoder = Decoder::new(8192, 32);
    let mut buf = BytesMut::from(&PROTOCOL_HEADER[..]);
    decoder.decode(&mut buf).unwrap();
    let mut sessions = 1;
    for _ in 0..20_000 {
        let channel = rng.below(4) as u16;
        let kind = [1u8, 1, 1, 2, 3][rng.below(5) as usize];
        let mut payload = Vec::new();
        if kind == 1 {
            let (c, m) = METHODS[rng.below(METHODS.len() as u64) as usize];
            payload.extend_from_slice(&c.to_be_bytes());
            payload.extend_from_slice(&m.to_be_bytes());
        }
        for _ in 0..rng.below(40) {
            // Mostly small numbers and short strings, so some payloads parse.
            payload.push(if rng.below(3) == 0 {
                rng.next() as u8
            } else {
                rng.below(4) as u8
            });
        }
        buf.extend_from_slice(&[kind]);
        buf.extend_from_slice(&channel.to_be_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(&[0xCE]);
        let mut out = Out::copying();
        let flow = match decoder.decode(&mut buf) {
            Ok(Some(f)) => h.session.on_frame(f, h.now, &mut out),
            Ok(None) => unreachable!("a whole frame was buffered"),
            Err(e) => h.session.on_decode_error(e, &mut out),
        };
        h.session.flush(&mut out);
        decode(&out);
        while let Some(ev) = h.try_event() {
            h.session.on_event(ev, &mut out);
        }
        if flow == Flow::Close || !h.session.is_open() {
            h = Harness::open(0);
            decoder = Decoder::new(8192, 32);
            buf = BytesMut::from(&PROTOCOL_HEADER[..]);
            decoder.decode(&mut buf).unwrap();
            sessions += 1;
        }
    }
    assert!(
        sessions > 10,
        "the garbage did reach error paths ({sessions} sessions)"
    );
}
