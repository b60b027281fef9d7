//! MQTT, one layer up: any bytes decoded and handed to a fresh session of a fresh
//! in-memory broker, as a connection's task hands them, with its subscriptions'
//! deliveries handed back. Seeded with CONNECTs of 3.1.1 and 5 followed by subscribes
//! and publishes of every QoS, the mutations reach sessions, wills, topic aliases,
//! subscriptions (shared ones too), the QoS 1 and 2 flows and retained messages.
#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use ferromq_fuzz::{broker, deliveries};
use ferromq_mqtt::session::{Flow, Session};
use ferromq_mqtt::shared::Shared;
use ferromq_mqtt::{Decoder, Limits, MqttConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let broker = broker();
    let cfg = Arc::new(MqttConfig::default());
    let mut s = Session::new(cfg, broker, Shared::new(), None, 0);
    let mut dec = Decoder::server(Limits::default());
    let mut buf = BytesMut::from(data);
    let mut out = BytesMut::new();
    let mut events = None;
    let mut now = 0;
    s.on_read(now);
    loop {
        let flow = match dec.decode(&mut buf) {
            Ok(Some(p)) => s.on_packet(p, now, &mut out),
            Ok(None) => break,
            Err(e) => {
                s.on_decode_error(&e, dec.version(), &mut out);
                break;
            }
        };
        if flow == Flow::Close {
            break;
        }
        if events.is_none() {
            events = s.take_events();
        }
        if deliveries(events.as_mut(), |ev| {
            s.on_event(ev, &mut out) == Flow::Close
        }) {
            break;
        }
        out.clear();
        now += 1;
    }
    s.close();
});
