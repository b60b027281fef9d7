//! AMQP content properties and field tables -> the core's message model (the inbound
//! direction; `wire.rs` writes the outbound one). The mapping is tabled in README.md.

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable as AmqpTable, ShortString};
use bytes::Bytes;
use bytestring::ByteString;
use ferromq_core::{FieldTable, FieldValue, Message, Properties};

use crate::error::AmqpError;

fn text(s: &Option<ShortString>) -> Option<ByteString> {
    s.as_ref().map(|s| ByteString::from(s.as_str()))
}

/// A field table as the core stores it. Long strings that are valid UTF-8 become strings;
/// others stay bytes. Timestamps (seconds on the wire) become milliseconds.
pub(crate) fn table(t: &AmqpTable) -> FieldTable {
    let mut out = FieldTable::new();
    for (k, v) in t {
        out.push(k.as_str(), value(v));
    }
    out
}

fn value(v: &AMQPValue) -> FieldValue {
    match v {
        AMQPValue::Boolean(b) => FieldValue::Bool(*b),
        AMQPValue::ShortShortInt(n) => FieldValue::I8(*n),
        AMQPValue::ShortShortUInt(n) => FieldValue::U8(*n),
        AMQPValue::ShortInt(n) => FieldValue::I16(*n),
        AMQPValue::ShortUInt(n) => FieldValue::U16(*n),
        AMQPValue::LongInt(n) => FieldValue::I32(*n),
        AMQPValue::LongUInt(n) => FieldValue::U32(*n),
        AMQPValue::LongLongInt(n) => FieldValue::I64(*n),
        AMQPValue::Float(f) => FieldValue::F32(*f),
        AMQPValue::Double(f) => FieldValue::F64(*f),
        AMQPValue::DecimalValue(d) => FieldValue::Decimal {
            scale: d.scale,
            value: d.value,
        },
        AMQPValue::ShortString(s) => FieldValue::Str(s.as_str().into()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(s) => FieldValue::Str(s.into()),
            Err(_) => FieldValue::Bytes(Bytes::copy_from_slice(s.as_bytes())),
        },
        AMQPValue::FieldArray(a) => FieldValue::Array(a.as_slice().iter().map(value).collect()),
        AMQPValue::Timestamp(t) => FieldValue::Timestamp(t.saturating_mul(1000)),
        AMQPValue::FieldTable(t) => FieldValue::Table(table(t)),
        AMQPValue::ByteArray(b) => FieldValue::Bytes(Bytes::copy_from_slice(b.as_slice())),
        AMQPValue::Void => FieldValue::Void,
    }
}

/// Builds the message of a `basic.publish` from its content header and body. Checks what
/// RabbitMQ checks: `expiration` must be a non-negative integer, `user_id` must name the
/// authenticated user.
pub(crate) fn message_from_publish(
    exchange: ByteString,
    routing_key: ByteString,
    p: &BasicProperties,
    body: Bytes,
    user: &str,
) -> Result<Message, AmqpError> {
    let expiration_ms = match p.expiration() {
        None => None,
        Some(e) => Some(e.as_str().parse::<u64>().map_err(|_| {
            AmqpError::precondition(format!(
                "invalid expiration '{}': not a non-negative integer",
                e.as_str()
            ))
        })?),
    };
    if let Some(claimed) = p.user_id() {
        if claimed.as_str() != user {
            return Err(AmqpError::precondition(format!(
                "user_id property set to '{}' but authenticated user was '{user}'",
                claimed.as_str()
            )));
        }
    }
    Ok(Message {
        body,
        properties: Properties {
            content_type: text(p.content_type()),
            content_encoding: text(p.content_encoding()),
            headers: p.headers().as_ref().map(table).unwrap_or_default(),
            persistent: *p.delivery_mode() == Some(2),
            priority: *p.priority(),
            correlation_id: text(p.correlation_id()),
            reply_to: text(p.reply_to()),
            expiration_ms,
            message_id: text(p.message_id()),
            timestamp_ms: p.timestamp().map(|s| s.saturating_mul(1000)),
            message_type: text(p.kind()),
            user_id: text(p.user_id()),
            app_id: text(p.app_id()),
        },
        exchange,
        routing_key,
        deaths: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_and_checks() {
        let mut h = AmqpTable::default();
        h.insert("s".into(), AMQPValue::LongString("text".into()));
        h.insert("b".into(), AMQPValue::LongString(vec![0xff, 0xfe].into()));
        h.insert("t".into(), AMQPValue::Timestamp(5));
        let p = BasicProperties::default()
            .with_delivery_mode(2)
            .with_expiration("1500".into())
            .with_timestamp(7)
            .with_headers(h);
        let m = message_from_publish("x".into(), "k".into(), &p, Bytes::new(), "guest").unwrap();
        assert!(m.properties.persistent);
        assert_eq!(m.properties.expiration_ms, Some(1500));
        assert_eq!(m.properties.timestamp_ms, Some(7000));
        let hs = &m.properties.headers;
        assert_eq!(hs.get("s"), Some(&FieldValue::Str("text".into())));
        assert!(matches!(hs.get("b"), Some(FieldValue::Bytes(_))));
        assert_eq!(hs.get("t"), Some(&FieldValue::Timestamp(5000)));

        let bad = BasicProperties::default().with_expiration("soon".into());
        let e =
            message_from_publish("".into(), "".into(), &bad, Bytes::new(), "guest").unwrap_err();
        assert_eq!(e.code, 406);
        let spoof = BasicProperties::default().with_user_id("admin".into());
        let e =
            message_from_publish("".into(), "".into(), &spoof, Bytes::new(), "guest").unwrap_err();
        assert_eq!(
            e.text,
            "PRECONDITION_FAILED - user_id property set to 'admin' but authenticated user was 'guest'"
        );
    }
}
