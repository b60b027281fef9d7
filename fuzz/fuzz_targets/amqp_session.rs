//! AMQP 0-9-1, one layer up: any bytes decoded and handed to a fresh session of a fresh
//! in-memory broker, as a connection's task hands them (the frame bound follows tune),
//! with the deliveries of its consumers handed back. Seeded with a handshake followed by
//! declarations, publishes and consumes, the mutations reach channels, queues, bindings,
//! consumers, acks, transactions and confirms.
#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use ferromq_amqp::codec::Decoder;
use ferromq_amqp::out::Out;
use ferromq_amqp::session::{Flow, Session};
use ferromq_amqp::AmqpConfig;
use ferromq_fuzz::{broker, deliveries};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let broker = broker();
    let cfg = Arc::new(AmqpConfig::default());
    let depth = cfg.limits.table_depth_max;
    let mut s = Session::new(cfg, broker, Some("127.0.0.1".parse().unwrap()), 0);
    let mut dec = Decoder::new(s.frame_max(), depth);
    let mut buf = BytesMut::from(data);
    let mut out = Out::copying();
    let mut events = None;
    let mut now = 0;
    s.on_read(now);
    loop {
        let flow = match dec.decode(&mut buf) {
            Ok(Some(f)) => s.on_frame(f, now, &mut out),
            Ok(None) => break,
            Err(e) => {
                s.on_decode_error(e, &mut out);
                break;
            }
        };
        s.flush(&mut out);
        if flow == Flow::Close {
            break;
        }
        dec.set_frame_max(s.frame_max());
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
