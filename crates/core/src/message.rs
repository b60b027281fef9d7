//! The protocol-neutral message.
//!
//! A [`Message`] is immutable once published and shared as `Arc<Message>` by every queue it
//! is routed to; its body is a [`Bytes`] that no queue or consumer copies. Per-queue state
//! (redelivery count, expiry deadline) lives in the queue's entry, not here.

use bytes::Bytes;
use bytestring::ByteString;

/// A typed value in a header table (the union of AMQP field values and JMS property types).
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum FieldValue {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    Decimal {
        scale: u8,
        value: u32,
    },
    Str(ByteString),
    Bytes(Bytes),
    /// Milliseconds since the Unix epoch.
    Timestamp(u64),
    Table(FieldTable),
    Array(Vec<FieldValue>),
    Void,
}

impl FieldValue {
    /// The value as text, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is any integer type.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            FieldValue::I8(v) => v.into(),
            FieldValue::U8(v) => v.into(),
            FieldValue::I16(v) => v.into(),
            FieldValue::U16(v) => v.into(),
            FieldValue::I32(v) => v.into(),
            FieldValue::U32(v) => v.into(),
            FieldValue::I64(v) => v,
            FieldValue::U64(v) => i64::try_from(v).ok()?,
            _ => return None,
        })
    }
}

/// An ordered table of named values. Lookups return the first entry of a name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldTable(Vec<(ByteString, FieldValue)>);

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// The first value named `name`.
    pub fn get(&self, name: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Sets `name` to `value`, replacing an existing entry of that name.
    pub fn insert(&mut self, name: impl Into<ByteString>, value: FieldValue) {
        let name = name.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Appends without checking for an existing entry (the caller knows names are unique).
    pub fn push(&mut self, name: impl Into<ByteString>, value: FieldValue) {
        self.0.push((name.into(), value));
    }

    /// Removes every entry named `name`, returning the first.
    pub fn remove(&mut self, name: &str) -> Option<FieldValue> {
        let pos = self.0.iter().position(|(k, _)| k == name)?;
        let first = self.0.remove(pos).1;
        self.0.retain(|(k, _)| k != name);
        Some(first)
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&ByteString, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Standard message properties, named after their AMQP 0-9-1 / JMS counterparts.
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct Properties {
    pub content_type: Option<ByteString>,
    pub content_encoding: Option<ByteString>,
    pub headers: FieldTable,
    /// Delivery mode 2 / PERSISTENT / QoS >= 1.
    pub persistent: bool,
    pub priority: Option<u8>,
    pub correlation_id: Option<ByteString>,
    pub reply_to: Option<ByteString>,
    /// Time to live in milliseconds from the moment the message is enqueued.
    pub expiration_ms: Option<u64>,
    pub message_id: Option<ByteString>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: Option<u64>,
    pub message_type: Option<ByteString>,
    pub user_id: Option<ByteString>,
    pub app_id: Option<ByteString>,
}

/// Why a message was dead-lettered (RabbitMQ's `x-death` reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeathReason {
    /// Rejected or nacked without requeue.
    Rejected,
    /// Its TTL ran out.
    Expired,
    /// Dropped from the head of a full queue, or refused by a full `reject-publish-dlx` queue.
    MaxLen,
    /// Returned more times than the queue's delivery limit.
    DeliveryLimit,
}

impl DeathReason {
    /// The reason as RabbitMQ spells it in `x-death`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }

    /// True for deaths that happen without a client deciding (used for cycle detection).
    pub fn is_automatic(self) -> bool {
        self != DeathReason::Rejected
    }
}

/// One entry of a message's death history; repeated deaths in one queue for one reason
/// increment `count` instead of adding entries.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub struct Death {
    pub queue: ByteString,
    pub reason: DeathReason,
    pub exchange: ByteString,
    pub routing_key: ByteString,
    pub count: u64,
    /// When it last died, milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub original_expiration_ms: Option<u64>,
}

/// A published message: body, properties and broker annotations.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The payload, shared by every queue and consumer.
    pub body: Bytes,
    /// Standard properties and the header table.
    pub properties: Properties,
    /// The exchange it was published to (`""` for the default exchange).
    pub exchange: ByteString,
    /// The routing key it was published with.
    pub routing_key: ByteString,
    /// Death history, newest first.
    pub deaths: Vec<Death>,
}

impl Message {
    /// A message with default properties.
    pub fn new(
        exchange: impl Into<ByteString>,
        routing_key: impl Into<ByteString>,
        body: Bytes,
    ) -> Self {
        Self {
            body,
            properties: Properties::default(),
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            deaths: Vec::new(),
        }
    }

    /// Bytes counted against `max-length-bytes` limits: the body only, as RabbitMQ counts.
    pub fn size_bytes(&self) -> u64 {
        self.body.len() as u64
    }
}
