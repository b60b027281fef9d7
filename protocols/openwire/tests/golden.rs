//! Golden frames captured from the real ActiveMQ 5.17 JMS client (Debian's
//! libactivemq-java, `wireFormat.tightEncodingEnabled=false&wireFormat.cacheEnabled=false`)
//! through a recording proxy: the client side of `JmsScenarios queue_send_receive`
//! (WireFormatInfo, ConnectionInfo, ConsumerInfo for the advisory topics, SessionInfo,
//! ProducerInfo, ten TextMessages, ConsumerInfo, acks, RemoveInfos, ShutdownInfo).
//!
//! Every frame must decode, re-encode to the very same bytes, and decode at every split
//! point of the pipelined stream.

use bytes::BytesMut;
use ferromq_openwire::codec::{encode, Decoder};
use ferromq_openwire::command::{ack, types, Body, Command, Destination};
use ferromq_openwire::marshal::Format;

const CLIENT: &[u8] = include_bytes!("testdata/jms-queue-session.client.bin");

fn frames(stream: &[u8]) -> Vec<(Vec<u8>, Command)> {
    let mut dec = Decoder::new(1 << 20, Format::default());
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    loop {
        let before = buf.clone();
        match dec.decode(&mut buf).expect("golden frame decodes") {
            Some(c) => {
                let used = before.len() - buf.len();
                out.push((before[..used].to_vec(), c));
            }
            None => break,
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

#[test]
fn client_frames_decode_and_reencode_exactly() {
    let fs = frames(CLIENT);
    assert!(fs.len() > 20, "captured {} frames", fs.len());
    for (raw, c) in &fs {
        let mut again = BytesMut::new();
        encode(&mut again, &Format::default(), c);
        assert_eq!(&again[..], &raw[..], "re-encoding {}", c.body.name());
    }
    match &fs[0].1.body {
        Body::WireFormatInfo(w) => {
            assert_eq!(w.version, 12);
            assert!(w.properties.get("TightEncodingEnabled").is_some());
        }
        other => panic!("first frame is {}", other.name()),
    }
    match &fs[1].1.body {
        Body::ConnectionInfo(ci) => {
            assert_eq!(ci.user_name.as_deref(), Some("guest"));
            assert_eq!(ci.password.as_deref(), Some("guest"));
            assert!(fs[1].1.response_required);
        }
        other => panic!("second frame is {}", other.name()),
    }
    let advisory = fs.iter().any(|(_, c)| {
        matches!(&c.body, Body::ConsumerInfo(ci) if matches!(&ci.destination, Some(Destination::Topic(t)) if t.starts_with("ActiveMQ.Advisory.")))
    });
    assert!(advisory, "the client subscribes to advisories by default");
    let texts: Vec<_> = fs
        .iter()
        .filter_map(|(_, c)| match &c.body {
            Body::Message(m) if m.kind == types::TEXT_MESSAGE => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts.len(), 10);
    let t0 = ferromq_openwire::body::text_of(texts[0].content.as_ref().unwrap()).unwrap();
    assert_eq!(t0.as_deref(), Some("hello 0"));
    assert!(texts[0].persistent && !texts[1].persistent);
    assert_eq!(texts[3].correlation_id.as_deref(), Some("corr-3"));
    assert!(fs
        .iter()
        .any(|(_, c)| matches!(&c.body, Body::MessageAck(a) if a.ack_type == ack::STANDARD)));
    assert!(matches!(fs.last().unwrap().1.body, Body::ShutdownInfo));
}

#[test]
fn every_split_point_of_the_stream() {
    let whole = frames(CLIENT);
    for cut in 0..CLIENT.len() {
        let mut dec = Decoder::new(1 << 20, Format::default());
        let mut buf = BytesMut::from(&CLIENT[..cut]);
        let mut got = Vec::new();
        while let Some(c) = dec.decode(&mut buf).unwrap() {
            got.push(c);
        }
        buf.extend_from_slice(&CLIENT[cut..]);
        while let Some(c) = dec.decode(&mut buf).unwrap() {
            got.push(c);
        }
        assert_eq!(got.len(), whole.len(), "split at {cut}");
    }
}

#[test]
fn truncations_and_corruptions_are_errors_not_panics() {
    let fs = frames(CLIENT);
    for (raw, _) in &fs {
        let body = &raw[4..];
        for len in 1..body.len() {
            // The same command cut short, with a size prefix that says so.
            let mut b = BytesMut::new();
            b.extend_from_slice(&(len as i32).to_be_bytes());
            b.extend_from_slice(&body[..len]);
            let mut dec = Decoder::new(1 << 20, Format::default());
            assert!(
                dec.decode(&mut b).is_err(),
                "truncated at {len} must be an error"
            );
        }
        for i in 0..body.len() {
            let mut corrupt = raw.clone();
            corrupt[4 + i] ^= 0xFF;
            let mut dec = Decoder::new(1 << 20, Format::default());
            let _ = dec.decode(&mut BytesMut::from(&corrupt[..]));
        }
    }
}

#[test]
fn frame_size_is_checked_before_buffering() {
    let mut dec = Decoder::new(1024, Format::default());
    let mut b = BytesMut::from(&[0x00u8, 0x10, 0x00, 0x00, 1][..]);
    assert!(dec.decode(&mut b).is_err());
    let mut b = BytesMut::from(&[0xFFu8, 0xFF, 0xFF, 0xFF][..]);
    assert!(dec.decode(&mut b).is_err());
}
