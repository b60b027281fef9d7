//! STOMP: any bytes decode to frames and heart-beats or an error.
#![no_main]

use bytes::BytesMut;
use ferromq_stomp::codec::Decoder;
use ferromq_stomp::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dec = Decoder::new(Limits::default());
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = dec.decode(&mut buf) {}
});
