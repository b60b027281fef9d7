//! Codec micro-benchmarks: decode of what a producer sends and encode of what a consumer
//! receives, per protocol, at 256 B and 4 KiB bodies.
//!
//! Decode benchmarks hand the decoder one read buffer holding [`BATCH`] messages back to
//! back, as a busy connection's read does, and decode until it asks for more bytes. Filling
//! the buffer (the socket read) is setup, outside the timing. Encode benchmarks append one
//! message to an output buffer that is cleared and reused, as the connections do.
//!
//! ```text
//! cargo bench -p ferromq-bench --bench codecs -- --quick
//! ```

use std::hint::black_box;
use std::num::NonZeroU16;

use amq_protocol::protocol::{basic, AMQPClass};
use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ferromq_core::{FieldValue, Message};

/// Body sizes measured.
const SIZES: [usize; 2] = [256, 4096];
/// Messages per read buffer in the decode benchmarks.
const BATCH: usize = 64;

fn body(size: usize) -> Bytes {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `n` copies of one message's bytes, as one read buffer.
fn repeated(one: &[u8], n: usize) -> Vec<u8> {
    one.repeat(n)
}

/// Decodes everything in each buffer; `decode_all` returns how many items it got.
fn bench_decode(
    c: &mut Criterion,
    group: &str,
    size: usize,
    stream: &[u8],
    mut decode_all: impl FnMut(&mut BytesMut) -> usize,
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::ElementsAndBytes {
        elements: BATCH as u64,
        bytes: stream.len() as u64,
    });
    g.bench_function(BenchmarkId::from_parameter(size), |b| {
        b.iter_batched(
            || BytesMut::from(stream),
            |mut buf| {
                let n = decode_all(&mut buf);
                debug_assert_eq!(n, BATCH);
                buf
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Encodes one message per iteration into a reused buffer; `encode` returns bytes written.
fn bench_encode(
    c: &mut Criterion,
    group: &str,
    size: usize,
    mut encode: impl FnMut(&mut BytesMut),
) {
    let mut out = BytesMut::with_capacity(2 * size + 1024);
    encode(&mut out);
    let len = out.len() as u64;
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::ElementsAndBytes {
        elements: 1,
        bytes: len,
    });
    g.bench_function(BenchmarkId::from_parameter(size), |b| {
        b.iter(|| {
            out.clear();
            encode(&mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

/// A core message as a typical producer leaves it: content type, persistent, message id,
/// one application header.
fn core_message(size: usize) -> Message {
    let mut m = Message::new("amq.topic", "orders.eu.created", body(size));
    let p = &mut m.properties;
    p.content_type = Some("application/octet-stream".into());
    p.persistent = true;
    p.message_id = Some("msg-000000000042".into());
    p.headers
        .insert("trace-id", FieldValue::Str("4bf92f3577b34da6".into()));
    m
}

// ---- AMQP 0-9-1 ------------------------------------------------------------------------

mod amqp {
    use super::*;
    use ferromq_amqp::codec::{
        begin_frame, encode_deliver, encode_method, end_frame, Decoder, FRAME_BODY, FRAME_HEADER,
        PROTOCOL_HEADER,
    };

    pub const FRAME_MAX: u32 = 131_072;

    /// `basic.publish`, its content header (content-type, headers with one entry,
    /// delivery-mode 2, message-id) and one body frame.
    pub fn publish(size: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        let method = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "amq.topic".into(),
            routing_key: "orders.eu.created".into(),
            mandatory: false,
            immediate: false,
        }));
        encode_method(&mut out, &mut Vec::new(), 1, &method);

        let start = begin_frame(&mut out, FRAME_HEADER, 1);
        out.put_u16(60);
        out.put_u16(0);
        out.put_u64(size as u64);
        // content-type, headers, delivery-mode, message-id
        out.put_u16(1 << 15 | 1 << 13 | 1 << 12 | 1 << 7);
        put_short(&mut out, "application/octet-stream");
        let mut table = BytesMut::new();
        put_short(&mut table, "trace-id");
        table.put_u8(b'S');
        table.put_u32(16);
        table.put_slice(b"4bf92f3577b34da6");
        out.put_u32(table.len() as u32);
        out.put_slice(&table);
        out.put_u8(2);
        put_short(&mut out, "msg-000000000042");
        end_frame(&mut out, start);

        let start = begin_frame(&mut out, FRAME_BODY, 1);
        out.put_slice(&body(size));
        end_frame(&mut out, start);
        out.to_vec()
    }

    fn put_short(out: &mut BytesMut, s: &str) {
        out.put_u8(s.len() as u8);
        out.put_slice(s.as_bytes());
    }

    /// A decoder past the protocol header.
    pub fn decoder() -> Decoder {
        let mut d = Decoder::new(FRAME_MAX, 16);
        let mut header = BytesMut::from(&PROTOCOL_HEADER[..]);
        d.decode(&mut header)
            .expect("protocol header")
            .expect("a frame");
        d
    }

    pub fn bench(c: &mut Criterion) {
        for size in SIZES {
            let stream = repeated(&publish(size), BATCH);
            let mut d = decoder();
            bench_decode(c, "amqp/decode basic.publish", size, &stream, |buf| {
                let mut frames = 0;
                while let Some(f) = d.decode(buf).expect("valid frames") {
                    black_box(f);
                    frames += 1;
                }
                frames / 3
            });

            let msg = core_message(size);
            let mut tag = 0u64;
            // The copying output, so that the figure keeps counting the body's copy: the
            // encoder writes into an `Out`, lent the benchmark's buffer for the call.
            let mut amqp_out = ferromq_amqp::out::Out::copying();
            bench_encode(c, "amqp/encode basic.deliver", size, |out| {
                tag += 1;
                std::mem::swap(out, amqp_out.buf_mut());
                encode_deliver(
                    &mut amqp_out,
                    1,
                    FRAME_MAX,
                    "amq.ctag-1",
                    tag,
                    false,
                    "",
                    &msg,
                );
                std::mem::swap(out, amqp_out.buf_mut());
            });
        }
    }
}

// ---- MQTT --------------------------------------------------------------------------------

mod mqtt {
    use super::*;
    use ferromq_mqtt::packet::{Publish, QosPid};
    use ferromq_mqtt::{Decoder, Encoder, Limits, Packet, ProtocolVersion};

    /// CONNECT, clean start, keep alive 60 s, empty client id: level 4 (3.1.1) or 5.
    fn connect(v5: bool) -> Vec<u8> {
        let mut p = vec![0x10, if v5 { 13 } else { 12 }, 0, 4];
        p.extend_from_slice(b"MQTT");
        p.extend_from_slice(&[if v5 { 5 } else { 4 }, 0x02, 0, 60]);
        if v5 {
            p.push(0); // no properties
        }
        p.extend_from_slice(&[0, 0]);
        p
    }

    fn publish(size: usize) -> Publish {
        let mut p = Publish::new("sensors/eu/berlin/temperature", body(size));
        p.qos = QosPid::AtLeastOnce(NonZeroU16::new(42).expect("non-zero"));
        p
    }

    fn server_decoder(v5: bool) -> Decoder {
        let mut d = Decoder::server(Limits::default());
        let mut buf = BytesMut::from(&connect(v5)[..]);
        match d.decode(&mut buf).expect("CONNECT") {
            Some(Packet::Connect(_)) => d,
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    pub fn bench(c: &mut Criterion) {
        for (v5, version, name) in [
            (false, ProtocolVersion::V3_1_1, "3.1.1"),
            (true, ProtocolVersion::V5, "5"),
        ] {
            for size in SIZES {
                let packet = Packet::Publish(publish(size));
                let encoder = Encoder::new(version);
                let mut one = BytesMut::new();
                encoder.encode(&packet, &mut one).expect("encode");
                let stream = repeated(&one, BATCH);
                let mut d = server_decoder(v5);
                bench_decode(
                    c,
                    &format!("mqtt {name}/decode PUBLISH qos1"),
                    size,
                    &stream,
                    |buf| {
                        let mut n = 0;
                        while let Some(p) = d.decode(buf).expect("valid packets") {
                            black_box(p);
                            n += 1;
                        }
                        n
                    },
                );
                bench_encode(
                    c,
                    &format!("mqtt {name}/encode PUBLISH qos1"),
                    size,
                    |out| {
                        encoder.encode(&packet, out).expect("encode");
                    },
                );
            }
        }
    }
}

// ---- STOMP -------------------------------------------------------------------------------

mod stomp {
    use super::*;
    use ferromq_stomp::codec::{encode_parts, Command, Decoder, Headers, Limits, Version};

    /// SEND as a 1.2 client writes it: destination, content-type, content-length, receipt.
    fn send(size: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_parts(
            &mut out,
            Version::V1_2,
            Command::Send,
            &[
                ("destination", "/queue/orders"),
                ("content-type", "application/octet-stream"),
                ("receipt", "r-42"),
                ("trace-id", "4bf92f3577b34da6"),
            ],
            &Headers::new(),
            &body(size),
        );
        out.to_vec()
    }

    pub fn bench(c: &mut Criterion) {
        for size in SIZES {
            let stream = repeated(&send(size), BATCH);
            let mut d = Decoder::new(Limits::default());
            d.set_version(Version::V1_2);
            bench_decode(c, "stomp/decode SEND", size, &stream, |buf| {
                let mut n = 0;
                while let Some(item) = d.decode(buf).expect("valid frames") {
                    black_box(item);
                    n += 1;
                }
                n
            });

            // The headers the adapter writes on a MESSAGE for a client-ack subscription.
            let body = body(size);
            let id = "ID:ferromq-1-42";
            bench_encode(c, "stomp/encode MESSAGE", size, |out| {
                encode_parts(
                    out,
                    Version::V1_2,
                    Command::Message,
                    &[
                        ("subscription", "sub-0"),
                        ("destination", "/queue/orders"),
                        ("message-id", id),
                        ("ack", id),
                        ("redelivered", "false"),
                        ("persistent", "true"),
                        ("content-type", "application/octet-stream"),
                        ("trace-id", "4bf92f3577b34da6"),
                    ],
                    &Headers::new(),
                    &body,
                );
            });
        }
    }
}

// ---- OpenWire ------------------------------------------------------------------------------

mod openwire {
    use super::*;
    use ferromq_openwire::body::put_text;
    use ferromq_openwire::codec::{encode, Decoder};
    use ferromq_openwire::command::{
        types, Body, Command, ConsumerId, Destination, Message as OwMessage, MessageDispatch,
        MessageId, ProducerId,
    };
    use ferromq_openwire::marshal::Format;
    use ferromq_openwire::primitive::write_map;

    fn producer() -> ProducerId {
        ProducerId {
            connection: "ID:client-host-40193-1732200000000-1:1".into(),
            value: 1,
            session: 1,
        }
    }

    /// A JMS message as an ActiveMQ client sends it: persistent, one string property.
    fn message(kind: u8, size: usize) -> OwMessage {
        let mut m = OwMessage::new(kind);
        m.producer_id = Some(producer());
        m.destination = Some(Destination::Queue("orders".into()));
        m.message_id = Some(MessageId {
            text_view: None,
            producer: Some(producer()),
            producer_seq: 42,
            broker_seq: 0,
        });
        m.persistent = true;
        m.timestamp = 1_732_200_000_000;
        let mut props = BytesMut::new();
        let trace = FieldValue::Str("4bf92f3577b34da6".into());
        write_map(&mut props, [("trace-id", &trace)].into_iter());
        m.properties = Some(props.freeze());
        m.content = Some(if kind == types::TEXT_MESSAGE {
            let text = String::from_utf8(body(size).to_vec()).expect("ASCII");
            let mut c = BytesMut::new();
            put_text(&mut c, &text);
            c.freeze()
        } else {
            body(size)
        });
        m
    }

    pub fn bench(c: &mut Criterion) {
        let format = Format::default();
        for size in SIZES {
            // A synchronous persistent send: the producer waits for a Response.
            let mut send = Command::new(
                7,
                Body::Message(Box::new(message(types::BYTES_MESSAGE, size))),
            );
            send.response_required = true;
            let mut one = BytesMut::new();
            encode(&mut one, &format, &send);
            let stream = repeated(&one, BATCH);
            let mut d = Decoder::new(104_857_600, format);
            bench_decode(c, "openwire/decode BytesMessage", size, &stream, |buf| {
                let mut n = 0;
                while let Some(cmd) = d.decode(buf).expect("valid commands") {
                    black_box(cmd);
                    n += 1;
                }
                n
            });

            for (kind, name) in [
                (types::TEXT_MESSAGE, "openwire/encode dispatch TextMessage"),
                (
                    types::BYTES_MESSAGE,
                    "openwire/encode dispatch BytesMessage",
                ),
            ] {
                let dispatch = Command::new(
                    0,
                    Body::MessageDispatch(MessageDispatch {
                        consumer_id: Some(ConsumerId {
                            connection: "ID:client-host-40193-1732200000000-1:2".into(),
                            session: 1,
                            value: 1,
                        }),
                        destination: Some(Destination::Queue("orders".into())),
                        message: Some(Box::new(message(kind, size))),
                        redelivery_counter: 0,
                    }),
                );
                bench_encode(c, name, size, |out| encode(out, &format, &dispatch));
            }
        }
    }
}

fn codecs(c: &mut Criterion) {
    amqp::bench(c);
    mqtt::bench(c);
    stomp::bench(c);
    openwire::bench(c);
}

criterion_group!(benches, codecs);
criterion_main!(benches);
