//! The translation between OpenWire messages and core messages. The mapping is tabled in
//! README.md; in short: the core body is the neutral form of the JMS body (UTF-8 text for
//! a TextMessage, the bytes for a BytesMessage, the marshalled content for Map, Stream and
//! Object messages) and the content type says which kind it was.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use ferromq_core::{FieldTable, FieldValue, Message, Properties};

use crate::body;
use crate::command::{types, Destination, Message as OwMessage, MessageId, ProducerId};
use crate::destination::{from_reply_to, to_url};
use crate::error::CommandError;
use crate::primitive;
use crate::wire::Reader;

/// Content type of a TextMessage's body in the core.
pub const TEXT_TYPE: &str = "text/plain; charset=utf-8";
/// Content types that mark the other JMS body kinds.
pub const MAP_TYPE: &str = "application/x-jms-map";
/// StreamMessage.
pub const STREAM_TYPE: &str = "application/x-jms-stream";
/// ObjectMessage (Java serialization).
pub const OBJECT_TYPE: &str = "application/x-java-serialized-object";
/// A bodiless JMS Message.
pub const MESSAGE_TYPE: &str = "application/x-jms-message";
/// BytesMessage, written only when a JMS BytesMessage is published.
pub const BYTES_TYPE: &str = "application/octet-stream";

/// JMS group headers, kept as core headers (the core's message groups read them); the
/// core marks the delivery that binds a group with `GROUP_FIRST`, which OpenWire carries
/// in `Message.jmsXGroupFirstForConsumer` (what the client's `JMSXGroupFirstForConsumer`
/// property reads).
pub use ferromq_core::groups::{GROUP_FIRST, GROUP_ID, GROUP_SEQ};

/// The JMSMessageID text of an OpenWire MessageId (`<producer id>:<sequence>`).
pub fn message_id_text(id: &MessageId) -> String {
    if let Some(t) = &id.text_view {
        return t.to_string();
    }
    match &id.producer {
        Some(p) => format!(
            "{}:{}:{}:{}",
            p.connection, p.session, p.value, id.producer_seq
        ),
        None => format!("ID:ferromq:{}", id.producer_seq),
    }
}

/// Parses a JMSMessageID text back into a producer id and sequence, as ActiveMQ does.
fn parse_message_id(text: &str) -> Option<(ProducerId, i64)> {
    let (rest, seq) = text.rsplit_once(':')?;
    let (rest, value) = rest.rsplit_once(':')?;
    let (conn, session) = rest.rsplit_once(':')?;
    Some((
        ProducerId {
            connection: conn.into(),
            value: value.parse().ok()?,
            session: session.parse().ok()?,
        },
        seq.parse().ok()?,
    ))
}

/// What the adapter needs to build a core message.
pub struct Inbound<'a> {
    /// Bound on inflated compressed bodies.
    pub inflated_max_bytes: u64,
    /// Nesting bound for properties.
    pub depth_max: usize,
    /// Now, for TTLs.
    pub now_ms: u64,
    /// Exchange and routing key it is published with.
    pub exchange: &'a str,
    /// Routing key.
    pub routing_key: &'a str,
}

/// Builds the core message for a message a JMS producer sent.
pub fn to_core(m: &OwMessage, how: &Inbound<'_>) -> Result<Message, CommandError> {
    let content = match &m.content {
        Some(c) => body::plain_content(m.kind, c.clone(), m.compressed, how.inflated_max_bytes)?,
        None => Bytes::new(),
    };
    let (body, content_type) = match m.kind {
        types::TEXT_MESSAGE => {
            let text = body::text_of(&content)?;
            let b = match text {
                Some(t) => t.into_bytes(),
                None => Bytes::new(),
            };
            (b, TEXT_TYPE)
        }
        types::BYTES_MESSAGE | types::BLOB_MESSAGE => (content, BYTES_TYPE),
        types::MAP_MESSAGE => (content, MAP_TYPE),
        types::STREAM_MESSAGE => (content, STREAM_TYPE),
        types::OBJECT_MESSAGE => (content, OBJECT_TYPE),
        _ => (content, MESSAGE_TYPE),
    };
    let mut headers = match &m.properties {
        Some(p) if !p.is_empty() => {
            let mut r = Reader::new(p.clone());
            let t = primitive::read_map(&mut r, how.depth_max)
                .map_err(|e| CommandError::jms(format!("malformed message properties: {e}")))?;
            if r.remaining() > 0 {
                return Err(CommandError::jms(
                    "malformed message properties: trailing bytes",
                ));
            }
            t
        }
        _ => FieldTable::new(),
    };
    if let Some(g) = &m.group_id {
        headers.insert(GROUP_ID, FieldValue::Str(g.clone()));
        headers.insert(GROUP_SEQ, FieldValue::I32(m.group_seq));
    }
    let expiration_ms =
        (m.expiration > 0).then(|| (m.expiration as u64).saturating_sub(how.now_ms).max(1));
    let priority = match m.priority {
        p @ 0..=9 => Some(p as u8),
        p => {
            return Err(CommandError::jms(format!(
                "JMSPriority {p} is outside 0..9"
            )))
        }
    };
    Ok(Message {
        body,
        properties: Properties {
            content_type: Some(ByteString::from_static(content_type)),
            content_encoding: None,
            headers,
            persistent: m.persistent,
            priority,
            correlation_id: m.correlation_id.clone(),
            reply_to: m.reply_to.as_ref().map(|d| to_url(d).into()),
            expiration_ms,
            message_id: m.message_id.as_ref().map(|id| message_id_text(id).into()),
            timestamp_ms: (m.timestamp > 0).then_some(m.timestamp as u64),
            message_type: m.jms_type.clone(),
            user_id: m.user_id.clone(),
            app_id: None,
        },
        exchange: how.exchange.into(),
        routing_key: how.routing_key.into(),
        deaths: Vec::new(),
    })
}

/// The JMS body kind a core message is delivered as.
fn kind_of(m: &Message) -> u8 {
    match m.properties.content_type.as_deref() {
        Some(MAP_TYPE) => types::MAP_MESSAGE,
        Some(STREAM_TYPE) => types::STREAM_MESSAGE,
        Some(OBJECT_TYPE) => types::OBJECT_MESSAGE,
        Some(MESSAGE_TYPE) => types::MESSAGE,
        Some(t) if t.starts_with("text/") && std::str::from_utf8(&m.body).is_ok() => {
            types::TEXT_MESSAGE
        }
        _ => types::BYTES_MESSAGE,
    }
}

/// Fields of one dispatch that are not in the message.
pub struct Outbound<'a> {
    /// The destination the client subscribed to (used when the message's own cannot be
    /// told, such as a message routed through another exchange).
    pub subscribed: &'a Destination,
    /// Unique per connection: carried as the MessageId's broker sequence, it is how acks
    /// name the delivery.
    pub dispatch_seq: u64,
    /// Times delivered before.
    pub redelivery_counter: i32,
}

/// The destination a core message was sent to, as a JMS client sees it.
pub fn delivered_destination(m: &Message, subscribed: &Destination) -> Destination {
    match &*m.exchange {
        "" if !subscribed.is_topic() && subscribed.name() == &m.routing_key => subscribed.clone(),
        "" => Destination::Queue(m.routing_key.clone()),
        "amq.topic" if subscribed.is_temporary() => subscribed.clone(),
        "amq.topic" => Destination::Topic(m.routing_key.clone()),
        _ => subscribed.clone(),
    }
}

/// Builds the OpenWire message for a delivery.
pub fn to_openwire(m: &Arc<Message>, out: &Outbound<'_>) -> OwMessage {
    let p = &m.properties;
    let kind = kind_of(m);
    let mut w = OwMessage::new(kind);
    let (producer, seq, text_view) = match p.message_id.as_deref() {
        Some(t) => match parse_message_id(t) {
            Some((pid, seq)) => (pid, seq, None),
            None => (
                synthetic_producer(),
                out.dispatch_seq as i64,
                Some(ByteString::from(t)),
            ),
        },
        None => (synthetic_producer(), out.dispatch_seq as i64, None),
    };
    w.message_id = Some(MessageId {
        text_view,
        producer: Some(producer.clone()),
        producer_seq: seq,
        broker_seq: out.dispatch_seq as i64,
    });
    w.producer_id = Some(producer);
    w.destination = Some(delivered_destination(m, out.subscribed));
    w.correlation_id = p.correlation_id.clone();
    w.persistent = p.persistent;
    w.priority = p.priority.map_or(4, |v| v.min(9) as i8);
    w.timestamp = p.timestamp_ms.unwrap_or(0) as i64;
    w.expiration = match (p.expiration_ms, p.timestamp_ms) {
        (Some(ttl), Some(ts)) => (ts + ttl) as i64,
        _ => 0,
    };
    w.reply_to = p.reply_to.as_deref().map(from_reply_to);
    w.jms_type = p.message_type.clone();
    w.user_id = p.user_id.clone();
    w.redelivery_counter = out.redelivery_counter;
    w.target_consumer_id = None;
    let mut props = BytesMut::new();
    let mut n = 0;
    for (k, v) in p.headers.iter() {
        match &**k {
            GROUP_ID => {
                if let Some(g) = v.as_str() {
                    w.group_id = Some(g.into());
                }
            }
            GROUP_SEQ => w.group_seq = v.as_i64().unwrap_or(0) as i32,
            GROUP_FIRST => w.jmsx_group_first_for_consumer = *v == FieldValue::Bool(true),
            _ => n += 1,
        }
    }
    if n > 0 {
        let entries: Vec<(&str, &FieldValue)> = p
            .headers
            .iter()
            .filter(|(k, _)| !matches!(&***k, GROUP_ID | GROUP_SEQ | GROUP_FIRST))
            .map(|(k, v)| (&**k, v))
            .collect();
        primitive::write_map(&mut props, entries.into_iter());
        w.properties = Some(props.freeze());
    }
    w.content = if kind == types::TEXT_MESSAGE {
        // The body is valid UTF-8 (checked by `kind_of`); re-encoded as modified UTF-8
        // with its length, straight into one buffer.
        let text = std::str::from_utf8(&m.body).unwrap_or_default();
        let mut c = BytesMut::with_capacity(m.body.len() + 4);
        body::put_text(&mut c, text);
        Some(c.freeze())
    } else if m.body.is_empty() && kind == types::MESSAGE {
        None
    } else {
        Some(m.body.clone())
    };
    w
}

fn synthetic_producer() -> ProducerId {
    ProducerId {
        connection: ByteString::from_static("ID:ferromq-broker"),
        value: 0,
        session: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_parse_back() {
        let id = MessageId {
            text_view: None,
            producer: Some(ProducerId {
                connection: "ID:host-1234-1700000000000-1:1".into(),
                value: 3,
                session: 2,
            }),
            producer_seq: 9,
            broker_seq: 0,
        };
        let t = message_id_text(&id);
        assert_eq!(t, "ID:host-1234-1700000000000-1:1:2:3:9");
        let (p, seq) = parse_message_id(&t).unwrap();
        assert_eq!((p, seq), (id.producer.unwrap(), 9));
    }
}
