//! The per-message frames, written straight from the core's [`Message`] into the output
//! buffer: `basic.deliver` / `basic.get-ok` / `basic.return`, the content header with the
//! message's properties, and the body split at `frame_max`.
//!
//! These are on the hot path, so they do not go through `amq-protocol`'s owned types
//! (which would allocate a string per field and a tree per header table for every
//! delivery); the tests check that `amq-protocol` parses what is written here back to the
//! same values.

use bytes::{BufMut, BytesMut};
use ferromq_core::{Death, FieldTable, FieldValue, Message};

use crate::codec::{
    begin_frame, end_frame, FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_METHOD, FRAME_OVERHEAD,
};
use crate::out::Out;

const CLASS_BASIC: u16 = 60;

/// Writes a short string, cut to 255 bytes at a character boundary. `prefix` is written
/// first (the direct reply-to address is `amq.rabbitmq.reply-to.` + queue name).
fn put_short(out: &mut BytesMut, prefix: &str, s: &str) {
    let room = 255usize.saturating_sub(prefix.len());
    let mut end = s.len().min(room);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u8((prefix.len() + end) as u8);
    out.put_slice(prefix.as_bytes());
    out.put_slice(&s.as_bytes()[..end]);
}

fn put_long(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

/// `basic.deliver` and the message's content. Public (re-exported as
/// [`crate::codec::encode_deliver`]) only so that the micro-benchmarks can time it.
#[allow(clippy::too_many_arguments)]
pub fn deliver(
    out: &mut Out,
    channel: u16,
    frame_max: u32,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    key_prefix: &str,
    msg: &Message,
) {
    let start = begin_frame(out, FRAME_METHOD, channel);
    out.put_u16(CLASS_BASIC);
    out.put_u16(60);
    put_short(out, "", consumer_tag);
    out.put_u64(delivery_tag);
    out.put_u8(redelivered as u8);
    put_short(out, "", &msg.exchange);
    put_short(out, key_prefix, &msg.routing_key);
    end_frame(out, start);
    content(out, channel, frame_max, msg);
}

/// `basic.get-ok` and the message's content.
pub(crate) fn get_ok(
    out: &mut Out,
    channel: u16,
    frame_max: u32,
    delivery_tag: u64,
    redelivered: bool,
    message_count: u32,
    msg: &Message,
) {
    let start = begin_frame(out, FRAME_METHOD, channel);
    out.put_u16(CLASS_BASIC);
    out.put_u16(71);
    out.put_u64(delivery_tag);
    out.put_u8(redelivered as u8);
    put_short(out, "", &msg.exchange);
    put_short(out, "", &msg.routing_key);
    out.put_u32(message_count);
    end_frame(out, start);
    content(out, channel, frame_max, msg);
}

/// `basic.return` (312 NO_ROUTE) and the message's content. `routing_key` is the key the
/// client published with.
pub(crate) fn returned(
    out: &mut Out,
    channel: u16,
    frame_max: u32,
    routing_key: &str,
    msg: &Message,
) {
    let start = begin_frame(out, FRAME_METHOD, channel);
    out.put_u16(CLASS_BASIC);
    out.put_u16(50);
    out.put_u16(crate::error::code::NO_ROUTE);
    put_short(out, "", "NO_ROUTE");
    put_short(out, "", &msg.exchange);
    put_short(out, "", routing_key);
    end_frame(out, start);
    content(out, channel, frame_max, msg);
}

/// The content header and body frames of `msg`.
pub(crate) fn content(out: &mut Out, channel: u16, frame_max: u32, msg: &Message) {
    let p = &msg.properties;
    let start = begin_frame(out, FRAME_HEADER, channel);
    out.put_u16(CLASS_BASIC);
    out.put_u16(0);
    out.put_u64(msg.body.len() as u64);
    let has_headers = !p.headers.is_empty() || !msg.deaths.is_empty();
    let mut expiration = itoa::Buffer::new();
    let expiration = p.expiration_ms.map(|e| expiration.format(e));
    let flags = [
        p.content_type.is_some(),
        p.content_encoding.is_some(),
        has_headers,
        p.persistent,
        p.priority.is_some(),
        p.correlation_id.is_some(),
        p.reply_to.is_some(),
        expiration.is_some(),
        p.message_id.is_some(),
        p.timestamp_ms.is_some(),
        p.message_type.is_some(),
        p.user_id.is_some(),
        p.app_id.is_some(),
    ]
    .iter()
    .enumerate()
    .fold(0u16, |f, (i, set)| if *set { f | 1 << (15 - i) } else { f });
    out.put_u16(flags);
    let short_opt = |out: &mut BytesMut, v: &Option<bytestring::ByteString>| {
        if let Some(v) = v {
            put_short(out, "", v);
        }
    };
    short_opt(out, &p.content_type);
    short_opt(out, &p.content_encoding);
    if has_headers {
        headers(out, &p.headers, &msg.deaths);
    }
    if p.persistent {
        out.put_u8(2);
    }
    if let Some(prio) = p.priority {
        out.put_u8(prio);
    }
    short_opt(out, &p.correlation_id);
    short_opt(out, &p.reply_to);
    if let Some(e) = expiration {
        put_short(out, "", e);
    }
    short_opt(out, &p.message_id);
    if let Some(ts) = p.timestamp_ms {
        out.put_u64(ts / 1000);
    }
    short_opt(out, &p.message_type);
    short_opt(out, &p.user_id);
    short_opt(out, &p.app_id);
    end_frame(out, start);

    // Body frames: the framing goes into the buffer, the pieces through `put_body`, which
    // keeps large ones by reference (see `out.rs`).
    let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
    let len = msg.body.len();
    let mut at = 0;
    while at < len {
        let end = len.min(at + chunk);
        out.put_u8(FRAME_BODY);
        out.put_u16(channel);
        out.put_u32((end - at) as u32);
        out.put_body(msg.body.slice(at..end));
        out.put_u8(FRAME_END);
        at = end;
    }
}

/// A table with its length prefix; returns nothing, patches the length after writing.
fn table_with<F: FnOnce(&mut BytesMut)>(out: &mut BytesMut, body: F) {
    let at = out.len();
    out.put_u32(0);
    body(out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn entries(out: &mut BytesMut, t: &FieldTable, skip: Option<&str>) {
    for (k, v) in t.iter() {
        if Some(&**k) == skip {
            continue;
        }
        put_short(out, "", k);
        value(out, v);
    }
}

fn str_entry(out: &mut BytesMut, k: &str, v: &str) {
    put_short(out, "", k);
    out.put_u8(b'S');
    put_long(out, v.as_bytes());
}

/// The message's headers, plus RabbitMQ's `x-death`, `x-first-death-*` and
/// `x-last-death-*` entries when the core recorded deaths.
fn headers(out: &mut BytesMut, t: &FieldTable, deaths: &[Death]) {
    table_with(out, |out| {
        if deaths.is_empty() {
            entries(out, t, None);
            return;
        }
        const DERIVED: [&str; 7] = [
            "x-death",
            "x-first-death-exchange",
            "x-first-death-queue",
            "x-first-death-reason",
            "x-last-death-exchange",
            "x-last-death-queue",
            "x-last-death-reason",
        ];
        for (k, v) in t.iter() {
            if !DERIVED.contains(&&**k) {
                put_short(out, "", k);
                value(out, v);
            }
        }
        put_short(out, "", "x-death");
        out.put_u8(b'A');
        table_with(out, |out| {
            for d in deaths {
                out.put_u8(b'F');
                table_with(out, |out| death(out, d));
            }
        });
        // `deaths` is newest first.
        let (first, last) = (&deaths[deaths.len() - 1], &deaths[0]);
        for (prefix, d) in [("x-first-death-", first), ("x-last-death-", last)] {
            let mut name = String::with_capacity(24);
            for (field, v) in [
                ("exchange", &*d.exchange),
                ("queue", &*d.queue),
                ("reason", d.reason.as_str()),
            ] {
                name.clear();
                name.push_str(prefix);
                name.push_str(field);
                str_entry(out, &name, v);
            }
        }
    });
}

fn death(out: &mut BytesMut, d: &Death) {
    put_short(out, "", "count");
    out.put_u8(b'l');
    out.put_i64(i64::try_from(d.count).unwrap_or(i64::MAX));
    str_entry(out, "reason", d.reason.as_str());
    str_entry(out, "queue", &d.queue);
    put_short(out, "", "time");
    out.put_u8(b'T');
    out.put_u64(d.time_ms / 1000);
    str_entry(out, "exchange", &d.exchange);
    put_short(out, "", "routing-keys");
    out.put_u8(b'A');
    table_with(out, |out| {
        out.put_u8(b'S');
        put_long(out, d.routing_key.as_bytes());
    });
    if let Some(e) = d.original_expiration_ms {
        str_entry(out, "original-expiration", itoa::Buffer::new().format(e));
    }
}

/// One typed value, RabbitMQ's type letters.
fn value(out: &mut BytesMut, v: &FieldValue) {
    match v {
        FieldValue::Bool(b) => {
            out.put_u8(b't');
            out.put_u8(*b as u8);
        }
        FieldValue::I8(n) => {
            out.put_u8(b'b');
            out.put_i8(*n);
        }
        FieldValue::U8(n) => {
            out.put_u8(b'B');
            out.put_u8(*n);
        }
        FieldValue::I16(n) => {
            out.put_u8(b's');
            out.put_i16(*n);
        }
        FieldValue::U16(n) => {
            out.put_u8(b'u');
            out.put_u16(*n);
        }
        FieldValue::I32(n) => {
            out.put_u8(b'I');
            out.put_i32(*n);
        }
        FieldValue::U32(n) => {
            out.put_u8(b'i');
            out.put_u32(*n);
        }
        FieldValue::I64(n) => {
            out.put_u8(b'l');
            out.put_i64(*n);
        }
        // AMQP (as RabbitMQ speaks it) has no unsigned 64-bit type.
        FieldValue::U64(n) => {
            out.put_u8(b'l');
            out.put_i64(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        FieldValue::F32(f) => {
            out.put_u8(b'f');
            out.put_f32(*f);
        }
        FieldValue::F64(f) => {
            out.put_u8(b'd');
            out.put_f64(*f);
        }
        FieldValue::Decimal { scale, value } => {
            out.put_u8(b'D');
            out.put_u8(*scale);
            out.put_u32(*value);
        }
        FieldValue::Str(s) => {
            out.put_u8(b'S');
            put_long(out, s.as_bytes());
        }
        FieldValue::Bytes(b) => {
            out.put_u8(b'x');
            put_long(out, b);
        }
        FieldValue::Timestamp(ms) => {
            out.put_u8(b'T');
            out.put_u64(ms / 1000);
        }
        FieldValue::Table(t) => {
            out.put_u8(b'F');
            table_with(out, |out| entries(out, t, None));
        }
        FieldValue::Array(items) => {
            out.put_u8(b'A');
            table_with(out, |out| items.iter().for_each(|v| value(out, v)));
        }
        FieldValue::Void => out.put_u8(b'V'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decoder, Frame, PROTOCOL_HEADER};
    use amq_protocol::protocol::{basic, AMQPClass};
    use amq_protocol::types::AMQPValue;
    use bytes::Bytes;
    use ferromq_core::{DeathReason, Properties};

    fn decode_all(bytes: &[u8]) -> Vec<Frame> {
        let mut d = Decoder::new(1 << 20, 32);
        let mut buf = BytesMut::from(&PROTOCOL_HEADER[..]);
        buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(f) = d.decode(&mut buf).unwrap() {
            out.push(f);
        }
        assert!(buf.is_empty());
        out.remove(0);
        out
    }

    fn sample() -> Message {
        let mut headers = FieldTable::new();
        headers.push("str", FieldValue::Str("v".into()));
        headers.push("i", FieldValue::I32(-5));
        headers.push("big", FieldValue::U64(u64::MAX));
        headers.push("ts", FieldValue::Timestamp(9_000));
        let mut nested = FieldTable::new();
        nested.push("b", FieldValue::Bool(true));
        headers.push(
            "arr",
            FieldValue::Array(vec![FieldValue::Table(nested), FieldValue::Void]),
        );
        let mut m = Message::new("ex", "rk", Bytes::from(vec![7u8; 10_000]));
        m.properties = Properties {
            content_type: Some("text/plain".into()),
            content_encoding: Some("gzip".into()),
            headers,
            persistent: true,
            priority: Some(3),
            correlation_id: Some("c".into()),
            reply_to: Some("r".into()),
            expiration_ms: Some(60_000),
            message_id: Some("m".into()),
            timestamp_ms: Some(1_700_000_000_000),
            message_type: Some("t".into()),
            user_id: Some("guest".into()),
            app_id: Some("a".into()),
        };
        m
    }

    #[test]
    fn deliver_parses_back_with_amq_protocol() {
        let m = sample();
        let mut out = Out::copying();
        deliver(&mut out, 3, 4096, "ctag", 42, true, "", &m);
        let frames = decode_all(&out);
        let Frame::Method(3, AMQPClass::Basic(basic::AMQPMethod::Deliver(d))) = &frames[0] else {
            panic!("{:?}", frames[0]);
        };
        assert_eq!(d.consumer_tag.as_str(), "ctag");
        assert_eq!((d.delivery_tag, d.redelivered), (42, true));
        assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), ("ex", "rk"));
        let Frame::Header(3, h) = &frames[1] else {
            panic!()
        };
        assert_eq!(h.body_size, 10_000);
        let p = &h.properties;
        assert_eq!(p.content_type().as_ref().unwrap().as_str(), "text/plain");
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(*p.priority(), Some(3));
        assert_eq!(p.expiration().as_ref().unwrap().as_str(), "60000");
        assert_eq!(*p.timestamp(), Some(1_700_000_000));
        assert_eq!(p.app_id().as_ref().unwrap().as_str(), "a");
        let hs = p.headers().as_ref().unwrap();
        assert_eq!(hs.inner()["i"], AMQPValue::LongInt(-5));
        assert_eq!(hs.inner()["big"], AMQPValue::LongLongInt(i64::MAX));
        assert_eq!(hs.inner()["ts"], AMQPValue::Timestamp(9));
        // Back into the core model: the same table (u64 aside).
        let back = super::super::properties::table(hs);
        assert_eq!(back.get("arr"), m.properties.headers.get("arr"));
        assert_eq!(back.get("str"), m.properties.headers.get("str"));
        // 10,000 bytes in frames of at most 4096 - 8.
        let bodies: Vec<&Bytes> = frames[2..]
            .iter()
            .map(|f| match f {
                Frame::Body(3, b) => b,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(bodies.len(), 3);
        assert_eq!(bodies.iter().map(|b| b.len()).sum::<usize>(), 10_000);
    }

    #[test]
    fn large_bodies_are_spliced_into_the_same_frames() {
        let body: Bytes = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let m = Message::new("ex", "rk", body.clone());
        for frame_max in [4096, 131_072] {
            let mut copied = Out::copying();
            deliver(&mut copied, 1, frame_max, "c", 7, false, "", &m);
            let mut spliced = Out::splicing();
            deliver(&mut spliced, 1, frame_max, "c", 7, false, "", &m);
            let stream = spliced.to_contiguous();
            assert_eq!(stream, copied.to_contiguous(), "frame_max {frame_max}");
            let frames = decode_all(&stream);
            let mut got = BytesMut::new();
            for f in &frames[2..] {
                let Frame::Body(1, b) = f else {
                    panic!("{f:?}")
                };
                assert!(b.len() + 8 <= frame_max as usize);
                got.extend_from_slice(b);
            }
            assert_eq!(got, body);
            if frame_max as usize - 8 >= crate::out::SPLICE_MIN_BYTES {
                assert!(spliced.buf_mut().len() < 1024, "bodies by reference");
            } else {
                assert_eq!(spliced.buf_mut().len(), stream.len(), "small pieces copied");
            }
        }
    }

    #[test]
    fn deaths_become_x_death() {
        let mut m = Message::new("dlx", "k", Bytes::new());
        m.deaths.push(Death {
            queue: "q".into(),
            reason: DeathReason::Rejected,
            exchange: "ex".into(),
            routing_key: "orig".into(),
            count: 2,
            time_ms: 5_000,
            original_expiration_ms: None,
        });
        let mut out = Out::copying();
        get_ok(&mut out, 1, 4096, 1, false, 0, &m);
        let frames = decode_all(&out);
        let Frame::Header(_, h) = &frames[1] else {
            panic!()
        };
        let hs = h.properties.headers().as_ref().unwrap().inner();
        let AMQPValue::FieldArray(a) = &hs["x-death"] else {
            panic!()
        };
        let AMQPValue::FieldTable(d) = &a.as_slice()[0] else {
            panic!()
        };
        assert_eq!(d.inner()["count"], AMQPValue::LongLongInt(2));
        assert_eq!(
            d.inner()["reason"],
            AMQPValue::LongString("rejected".into())
        );
        assert_eq!(hs["x-first-death-queue"], AMQPValue::LongString("q".into()));
        assert_eq!(frames.len(), 2, "an empty body has no body frame");
    }

    #[test]
    fn long_names_are_cut_not_fatal() {
        let m = Message::new("", "k".repeat(300), Bytes::new());
        let mut out = Out::copying();
        returned(&mut out, 1, 4096, &"k".repeat(300), &m);
        deliver(
            &mut out,
            1,
            4096,
            "t",
            1,
            false,
            "amq.rabbitmq.reply-to.",
            &m,
        );
        assert_eq!(decode_all(&out).len(), 4);
    }
}
