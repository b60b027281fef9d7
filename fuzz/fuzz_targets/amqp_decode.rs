//! AMQP 0-9-1: any bytes decode to frames (methods with their field tables, content
//! headers, bodies) or an error.
#![no_main]

use bytes::BytesMut;
use ferromq_amqp::codec::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dec = Decoder::new(128 * 1024, 16);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = dec.decode(&mut buf) {}
});
