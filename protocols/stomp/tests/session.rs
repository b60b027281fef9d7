//! The session state machine driven by frames and a controlled clock: no sockets, no sleeps.

use std::sync::Arc;

use bytes::BytesMut;
use ferromq_core::{Broker, BrokerConfig, ManualClock};
use ferromq_stomp::codec::{encode_parts, Command, Decoder, Frame, Headers, Item, Limits, Version};
use ferromq_stomp::session::{Flow, Session};
use ferromq_stomp::StompConfig;

fn setup(cfg: StompConfig) -> Session {
    let config = BrokerConfig {
        allow_anonymous: true,
        ..Default::default()
    };
    let broker = Broker::new(config, Arc::new(ManualClock::new(1_000)));
    Session::new(Arc::new(cfg), broker, Some("127.0.0.1".parse().unwrap()), 0)
}

fn frame(cmd: Command, headers: &[(&str, &str)]) -> Item {
    let mut buf = BytesMut::new();
    encode_parts(&mut buf, Version::V1_2, cmd, headers, &Headers::new(), b"");
    let mut d = Decoder::new(Limits::default());
    d.decode(&mut buf).unwrap().unwrap()
}

fn frames(out: &mut BytesMut) -> Vec<Frame> {
    let mut d = Decoder::new(Limits::default());
    let mut v = Vec::new();
    while let Some(item) = d.decode(out).unwrap() {
        if let Item::Frame(f) = item {
            v.push(f);
        }
    }
    v
}

fn connect(s: &mut Session, hb: &str, now: u64) -> Frame {
    let mut out = BytesMut::new();
    let item = frame(
        Command::Connect,
        &[("accept-version", "1.0,1.1,1.2"), ("heart-beat", hb)],
    );
    assert_eq!(s.on_item(item, now, &mut out), Flow::Continue);
    frames(&mut out).remove(0)
}

#[test]
fn connect_must_come_in_time() {
    let mut s = setup(StompConfig {
        connect_timeout_ms: 500,
        ..Default::default()
    });
    let mut out = BytesMut::new();
    assert_eq!(s.next_deadline_ms(), Some(500));
    assert_eq!(s.on_timer(499, &mut out), Flow::Continue);
    assert_eq!(s.on_timer(500, &mut out), Flow::Close);
    assert_eq!(frames(&mut out)[0].command, Command::Error);
}

#[test]
fn negotiates_version_and_heartbeats() {
    let mut s = setup(StompConfig {
        heartbeat_send_ms: 100,
        heartbeat_receive_ms: 300,
        ..Default::default()
    });
    let f = connect(&mut s, "1000,50", 0);
    assert_eq!(f.command, Command::Connected);
    assert_eq!(f.headers.get("version"), Some("1.2"));
    assert_eq!(f.headers.get("heart-beat"), Some("100,300"));
    // Server sends every max(100, 50) = 100 ms; expects the client within 2 * max(1000, 300).
    assert_eq!(s.next_deadline_ms(), Some(100));
    let mut out = BytesMut::new();
    assert_eq!(s.on_timer(100, &mut out), Flow::Continue);
    assert_eq!(&out[..], b"\n");
    s.on_write(100);
    s.on_read(1_500);
    assert_eq!(s.on_timer(1_999, &mut BytesMut::new()), Flow::Continue);
    assert_eq!(s.on_timer(3_500, &mut out), Flow::Close);
}

#[test]
fn no_heartbeats_when_either_side_declines() {
    let mut s = setup(StompConfig::default());
    connect(&mut s, "0,0", 0);
    assert_eq!(s.next_deadline_ms(), None);
}

#[test]
fn frames_before_connect_and_server_frames_are_errors() {
    let mut s = setup(StompConfig::default());
    let mut out = BytesMut::new();
    assert_eq!(
        s.on_item(
            frame(Command::Send, &[("destination", "/queue/a")]),
            0,
            &mut out
        ),
        Flow::Close
    );
    assert_eq!(
        frames(&mut out)[0].headers.get("message"),
        Some("Not connected")
    );
    let mut s = setup(StompConfig::default());
    connect(&mut s, "0,0", 0);
    assert_eq!(
        s.on_item(frame(Command::Message, &[]), 0, &mut out),
        Flow::Close
    );
    let err = frames(&mut out).remove(0);
    assert_eq!(err.command, Command::Error);
    // After an error the session accepts nothing more.
    assert_eq!(
        s.on_item(frame(Command::Disconnect, &[]), 0, &mut out),
        Flow::Close
    );
    assert!(out.is_empty());
}

#[test]
fn error_carries_receipt_id_of_the_offending_frame() {
    let mut s = setup(StompConfig::default());
    connect(&mut s, "0,0", 0);
    let mut out = BytesMut::new();
    let flow = s.on_item(
        frame(
            Command::Subscribe,
            &[("destination", "/bogus/x"), ("id", "1"), ("receipt", "r9")],
        ),
        0,
        &mut out,
    );
    assert_eq!(flow, Flow::Close);
    let err = frames(&mut out).remove(0);
    assert_eq!(err.headers.get("receipt-id"), Some("r9"));
    assert!(String::from_utf8_lossy(&err.body).contains("/bogus/x"));
}

#[test]
fn subscription_limit_is_enforced() {
    let mut s = setup(StompConfig {
        subscriptions_max: 2,
        ..Default::default()
    });
    connect(&mut s, "0,0", 0);
    let mut out = BytesMut::new();
    for id in ["1", "2"] {
        assert_eq!(
            s.on_item(
                frame(
                    Command::Subscribe,
                    &[("destination", "/topic/t"), ("id", id)]
                ),
                0,
                &mut out
            ),
            Flow::Continue
        );
    }
    assert_eq!(
        s.on_item(
            frame(
                Command::Subscribe,
                &[("destination", "/topic/t"), ("id", "3")]
            ),
            0,
            &mut out
        ),
        Flow::Close
    );
    assert_eq!(
        frames(&mut out)[0].headers.get("message"),
        Some("Too many subscriptions")
    );
}
