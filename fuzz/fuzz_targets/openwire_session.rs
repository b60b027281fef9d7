//! OpenWire, one layer up: any bytes decoded and handed to a fresh session of a fresh
//! in-memory broker, as a connection's task hands them (format and frame bound follow
//! negotiation), with the deliveries the session's consumers get handed back to it. Seeded
//! with the golden client capture, the mutations reach ConnectionInfo, sessions,
//! producers, consumers (selectors, destinations, prefetch), messages, acks and
//! transactions.
#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use ferromq_fuzz::{broker, deliveries};
use ferromq_openwire::codec::Decoder;
use ferromq_openwire::session::{Flow, Session};
use ferromq_openwire::{OpenWireConfig, Shared};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let broker = broker();
    let cfg = Arc::new(OpenWireConfig::default());
    let (mut s, mut events) = Session::new(cfg, broker, None, Shared::new(), 0);
    let mut out = BytesMut::new();
    s.start(&mut out);
    let mut dec = Decoder::new(s.frame_max_bytes(), s.format());
    let mut buf = BytesMut::from(data);
    let mut now = 0;
    loop {
        let flow = match dec.decode(&mut buf) {
            Ok(Some(c)) => s.on_command(c, now, &mut out),
            Ok(None) => break,
            Err(e) => {
                s.on_decode_error(e, &mut out);
                break;
            }
        };
        if flow == Flow::Close {
            break;
        }
        dec.format = s.format();
        dec.frame_max_bytes = s.frame_max_bytes();
        if deliveries(Some(&mut events), |ev| {
            s.on_event(ev, &mut out) == Flow::Close
        }) {
            break;
        }
        out.clear();
        now += 1;
    }
    s.close();
});
