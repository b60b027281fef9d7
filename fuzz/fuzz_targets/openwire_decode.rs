//! OpenWire: any bytes, in any negotiated version, decode to commands or an error, and
//! what a Message command carries (properties, compressed or text bodies) parses or fails
//! cleanly, as the adapter would parse it.
#![no_main]

use bytes::BytesMut;
use ferromq_openwire::codec::Decoder;
use ferromq_openwire::command::Body;
use ferromq_openwire::marshal::Format;
use ferromq_openwire::{body, primitive, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&v, rest)) = data.split_first() else {
        return;
    };
    let format = Format {
        version: 9 + i32::from(v % 4),
        stack_trace: v & 0x10 != 0,
        depth_max: 16,
    };
    let mut dec = Decoder::new(1 << 20, format);
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(c)) = dec.decode(&mut buf) {
        if let Body::Message(m) = c.body {
            if let Some(p) = &m.properties {
                let _ = primitive::read_map(&mut wire::Reader::new(p.clone()), 16);
            }
            if let Some(content) = &m.content {
                if let Ok(plain) =
                    body::plain_content(m.kind, content.clone(), m.compressed, 1 << 20)
                {
                    let _ = body::text_of(&plain);
                }
            }
        }
    }
});
