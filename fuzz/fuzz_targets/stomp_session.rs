//! STOMP, one layer up: any bytes decoded and handed to a fresh session of a fresh
//! in-memory broker, as a connection's task hands them (the decoder follows the
//! negotiated version), with its subscriptions' deliveries handed back. Seeded with a
//! CONNECT followed by subscribes, sends, acks and a transaction, the mutations reach
//! destinations, selectors, receipts, acknowledgement modes and transactions.
#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use ferromq_fuzz::{broker, deliveries};
use ferromq_stomp::codec::Decoder;
use ferromq_stomp::session::{Flow, Session};
use ferromq_stomp::StompConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let broker = broker();
    let cfg = StompConfig::default();
    let mut dec = Decoder::new(cfg.limits.clone());
    let mut s = Session::new(Arc::new(cfg), broker, Some("127.0.0.1".parse().unwrap()), 0);
    let mut buf = BytesMut::from(data);
    let mut out = BytesMut::new();
    let mut events = None;
    let mut now = 0;
    loop {
        let flow = match dec.decode(&mut buf) {
            Ok(Some(item)) => s.on_item(item, now, &mut out),
            Ok(None) => break,
            Err(e) => {
                s.on_decode_error(e, &mut out);
                break;
            }
        };
        if flow == Flow::Close {
            break;
        }
        dec.set_version(s.version());
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
