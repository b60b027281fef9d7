//! The only module that talks to the core: STOMP headers <-> message properties, and
//! destinations -> exchanges, routing keys and queues. The mapping is tabled in README.md.

use bytes::{BufMut, BytesMut};
use bytestring::ByteString;
use ferromq_core::{
    Connection, Delivery, FieldTable, FieldValue, Message, Properties, QueueOptions,
};

use crate::codec::{encode_parts, Command, Headers, Version};
use crate::destination::{binding_key, destination_of, Destination};
use crate::error::StompError;

/// Headers that carry message properties or are frame-level; everything else a client
/// sends is kept in the message's header table and given back on delivery.
const RESERVED: [&str; 21] = [
    "destination",
    "receipt",
    "transaction",
    "content-length",
    "content-type",
    "content-encoding",
    "persistent",
    "priority",
    "expires",
    "expiration",
    "correlation-id",
    "reply-to",
    "type",
    "app-id",
    "user-id",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
    "timestamp",
    "amqp-message-id",
];

fn parse_u64(headers: &Headers, name: &str) -> Result<Option<u64>, StompError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            StompError::new(
                "Invalid header",
                format!("'{name}' must be a non-negative integer, got '{v}'"),
            )
        }),
    }
}

/// Builds the message for a SEND to `exchange`/`routing_key`.
pub(crate) fn message_from_send(
    headers: &Headers,
    body: bytes::Bytes,
    exchange: ByteString,
    routing_key: ByteString,
    user: &str,
    now_ms: u64,
) -> Result<Message, StompError> {
    let get = |n: &str| headers.get_bytestring(n).cloned();
    let persistent = matches!(headers.get("persistent"), Some("true"));
    let priority = match parse_u64(headers, "priority")? {
        None => None,
        Some(p) if p <= 255 => Some(p as u8),
        Some(p) => {
            return Err(StompError::new(
                "Invalid header",
                format!("priority {p} is above 255"),
            ))
        }
    };
    // RabbitMQ's `expiration` is a relative TTL in ms; ActiveMQ's `expires` an absolute
    // time in ms since the epoch (0 = never).
    let expiration_ms = match (
        parse_u64(headers, "expiration")?,
        parse_u64(headers, "expires")?,
    ) {
        (Some(ttl), _) => Some(ttl),
        (None, Some(0)) | (None, None) => None,
        (None, Some(at)) => Some(at.saturating_sub(now_ms)),
    };
    if let Some(claimed) = headers.get("user-id") {
        if claimed != user {
            return Err(StompError::new(
                "Invalid user-id",
                format!("user-id is '{claimed}' but the connection is authenticated as '{user}'"),
            ));
        }
    }
    let mut table = FieldTable::new();
    for (k, v) in headers.iter() {
        if !RESERVED.contains(&k) && table.get(k).is_none() {
            table.push(k, FieldValue::Str(v.into()));
        }
    }
    Ok(Message {
        body,
        properties: Properties {
            // A SEND without content-length is text (ActiveMQ makes it a JMS TextMessage):
            // say so when the client gave no content type.
            content_type: get("content-type").or_else(|| {
                headers
                    .get("content-length")
                    .is_none()
                    .then(|| ByteString::from_static("text/plain"))
            }),
            content_encoding: get("content-encoding"),
            headers: table,
            persistent,
            priority,
            correlation_id: get("correlation-id"),
            reply_to: get("reply-to"),
            expiration_ms,
            message_id: get("amqp-message-id"),
            timestamp_ms: Some(now_ms),
            message_type: get("type"),
            user_id: get("user-id"),
            app_id: get("app-id"),
        },
        exchange,
        routing_key,
        deaths: Vec::new(),
    })
}

/// Where a SEND goes: (exchange, routing key). Declares `/queue/` queues on first use.
pub(crate) fn resolve_send(
    conn: &Connection,
    dest: &Destination<'_>,
    temp_queue: impl FnOnce(&str) -> Result<ByteString, StompError>,
) -> Result<(ByteString, ByteString), StompError> {
    Ok(match *dest {
        Destination::Queue(q) => {
            ensure_queue(conn, q)?;
            ("".into(), q.into())
        }
        Destination::Topic(key) => ("amq.topic".into(), key.into()),
        Destination::Exchange(x, key) => (x.into(), key.into()),
        Destination::AmqQueue(q) | Destination::ReplyQueue(q) => ("".into(), q.into()),
        Destination::TempQueue(name) => ("".into(), temp_queue(name)?),
    })
}

/// Declares a shared durable queue unless it exists (with whatever properties it has).
pub(crate) fn ensure_queue(conn: &Connection, name: &str) -> Result<(), StompError> {
    if conn.vhost().queue(name).is_some() {
        return Ok(());
    }
    match conn.declare_queue(name, QueueOptions::default(), false) {
        Ok(_) => Ok(()),
        // Declared concurrently with other properties: it exists, which is all we need.
        Err(_) if conn.vhost().queue(name).is_some() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The queue a SUBSCRIBE consumes from, and whether UNSUBSCRIBE should delete it.
pub(crate) struct SubscriptionQueue {
    pub(crate) name: ByteString,
    pub(crate) durable_name: Option<ByteString>,
    /// The queue is the subscription's own and its `x-selector` applies the selector.
    pub(crate) filtered: bool,
}

/// What a SUBSCRIBE asked for, beyond the destination.
pub(crate) struct SubscribeOptions<'a> {
    /// A durable topic subscription's name (`durable:true` + id, or ActiveMQ's
    /// `activemq.subscriptionName`), qualified by the connection's client id.
    pub(crate) durable: Option<String>,
    /// Bound on a non-durable topic subscription's backlog (drop-head).
    pub(crate) backlog_max: u64,
    /// The `selector` header, already checked: a topic subscription's queue filters with
    /// it, so that what it does not select never piles up there.
    pub(crate) selector: Option<&'a str>,
}

/// Finds or creates the queue behind a subscription.
pub(crate) fn resolve_subscribe(
    conn: &Connection,
    dest: &Destination<'_>,
    opts: &SubscribeOptions<'_>,
) -> Result<SubscriptionQueue, StompError> {
    let (exchange, key) = match *dest {
        Destination::Queue(q) => {
            ensure_queue(conn, q)?;
            return Ok(SubscriptionQueue { name: q.into(), durable_name: None, filtered: false });
        }
        Destination::AmqQueue(q) | Destination::ReplyQueue(q) => {
            conn.vhost().queue_for(q, conn.id())?;
            return Ok(SubscriptionQueue { name: q.into(), durable_name: None, filtered: false });
        }
        Destination::TempQueue(_) => {
            return Err(StompError::new(
                "Invalid destination",
                "a /temp-queue/ is subscribed automatically when it is used in reply-to; SUBSCRIBE to it is not allowed",
            ))
        }
        Destination::Topic(pattern) => ("amq.topic", binding_key(pattern)),
        Destination::Exchange(x, key) => {
            if conn.vhost().exchange(x).is_none() {
                return Err(StompError::new("not_found", format!("no exchange '{x}' in vhost '{}'", conn.vhost().name())));
            }
            (x, key.to_string())
        }
    };
    let mut arguments = FieldTable::new();
    if let Some(sel) = opts.selector {
        arguments.insert("x-selector", FieldValue::Str(sel.into()));
    }
    let (name, options) = match &opts.durable {
        Some(sub) => (
            format!("stomp-durable.{sub}"),
            QueueOptions {
                durable: true,
                exclusive: false,
                auto_delete: false,
                arguments,
            },
        ),
        None => {
            arguments.insert("x-max-length", FieldValue::U64(opts.backlog_max));
            (
                ferromq_core::generated_queue_name("stomp-subscription-"),
                QueueOptions {
                    durable: false,
                    exclusive: true,
                    auto_delete: true,
                    arguments,
                },
            )
        }
    };
    let (q, _) = conn.declare_queue(&name, options, false)?;
    conn.vhost()
        .bind_queue(&name, exchange, &key, FieldTable::new(), conn.id())?;
    let durable_name = opts.durable.is_some().then(|| q.name().clone());
    Ok(SubscriptionQueue {
        name: q.name().clone(),
        durable_name,
        filtered: true,
    })
}

/// Fields of one MESSAGE frame that are not in the message itself.
pub(crate) struct MessageFrame<'a> {
    pub(crate) version: Version,
    pub(crate) subscription: &'a str,
    pub(crate) message_id: u64,
    pub(crate) with_ack_header: bool,
    /// Overrides the destination derived from exchange and key (temp queues).
    pub(crate) destination: Option<&'a str>,
}

fn field_to_string(v: &FieldValue) -> String {
    match v {
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::Str(s) => s.to_string(),
        FieldValue::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        FieldValue::F32(f) => f.to_string(),
        FieldValue::F64(f) => f.to_string(),
        FieldValue::Timestamp(t) => t.to_string(),
        FieldValue::Decimal { scale, value } => {
            format!("{}", *value as f64 / 10f64.powi(*scale as i32))
        }
        FieldValue::Void => String::new(),
        FieldValue::Table(_) | FieldValue::Array(_) => format!("{v:?}"),
        other => other.as_i64().map(|n| n.to_string()).unwrap_or_default(),
    }
}

/// Encodes a delivery as a MESSAGE frame into `out`. `scratch` is a reusable buffer for the
/// derived destination, so the common case allocates nothing but `out`'s growth.
pub(crate) fn encode_message(
    out: &mut BytesMut,
    f: &MessageFrame<'_>,
    d: &Delivery,
    scratch: &mut String,
) {
    let m = &d.message;
    let p = &m.properties;
    let mut id_buf = itoa::Buffer::new();
    let id = id_buf.format(f.message_id);
    let dest = match f.destination {
        Some(d) => d,
        None => {
            destination_of(&m.exchange, &m.routing_key, scratch);
            scratch.as_str()
        }
    };
    // Non-string header values are rendered as text; strings are borrowed.
    let rendered: Vec<(&str, String)> = p
        .headers
        .iter()
        .filter(|(_, v)| v.as_str().is_none())
        .map(|(k, v)| (&**k, field_to_string(v)))
        .collect();
    let mut prio_buf = itoa::Buffer::new();
    let mut hs: smallvec::SmallVec<[(&str, &str); 16]> = smallvec::SmallVec::new();
    hs.push(("subscription", f.subscription));
    hs.push(("destination", dest));
    hs.push(("message-id", id));
    if f.with_ack_header {
        hs.push(("ack", id));
    }
    hs.push(("redelivered", if d.redelivered { "true" } else { "false" }));
    if p.persistent {
        hs.push(("persistent", "true"));
    }
    if let Some(prio) = p.priority {
        hs.push(("priority", prio_buf.format(prio)));
    }
    let opt = [
        ("content-type", &p.content_type),
        ("content-encoding", &p.content_encoding),
        ("correlation-id", &p.correlation_id),
        ("reply-to", &p.reply_to),
        ("type", &p.message_type),
        ("app-id", &p.app_id),
        ("user-id", &p.user_id),
        ("amqp-message-id", &p.message_id),
    ];
    for (k, v) in opt.iter() {
        if let Some(v) = v {
            hs.push((k, v));
        }
    }
    for (k, v) in p.headers.iter() {
        if let Some(s) = v.as_str() {
            hs.push((k, s));
        }
    }
    for (k, v) in &rendered {
        hs.push((k, v.as_str()));
    }
    encode_parts(
        out,
        f.version,
        Command::Message,
        &hs,
        &Headers::new(),
        &m.body,
    );
}

/// Writes a bare heart-beat.
pub(crate) fn encode_heartbeat(out: &mut BytesMut) {
    out.put_u8(b'\n');
}
