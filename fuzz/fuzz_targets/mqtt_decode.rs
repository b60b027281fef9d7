//! MQTT: any bytes decode, on the server side, to a CONNECT and then packets of the
//! version it named, or an error.
#![no_main]

use bytes::BytesMut;
use ferromq_mqtt::{Decoder, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dec = Decoder::server(Limits::default());
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = dec.decode(&mut buf) {}
});
