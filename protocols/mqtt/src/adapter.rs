//! The core side of MQTT: PUBLISH <-> [`Message`], and the session queue's topology
//! (declare, bind, unbind, delete). The mapping is tabled in README.md.

use std::num::NonZeroU32;
use std::sync::Arc;

use bytestring::ByteString;
use ferromq_core::{
    Connection, CoreError, FieldTable, FieldValue, Message, Properties, Queue, QueueOptions, Vhost,
};

use crate::config::MqttConfig;
use crate::mapping;
use crate::packet::{Publish, QosPid, Will};
use crate::properties::{PayloadFormat, PublishProperties};
use crate::shared::Shared;
use crate::QoS;

/// The exchange every MQTT topic lives on.
pub(crate) const TOPIC_EXCHANGE: &str = "amq.topic";
/// QoS the message was published with (U8).
pub(crate) const H_QOS: &str = "x-mqtt-publish-qos";
/// The PUBLISH had its RETAIN flag set (Bool).
pub(crate) const H_RETAIN: &str = "x-mqtt-retain";
/// Client id of the MQTT publisher (Str), for No Local.
pub(crate) const H_CLIENT: &str = "x-mqtt-client-id";
/// MQTT 5 Payload Format Indicator (U8).
pub(crate) const H_FORMAT: &str = "x-mqtt-payload-format";
/// MQTT 5 Correlation Data that is not UTF-8 (Bytes).
pub(crate) const H_CORRELATION: &str = "x-mqtt-correlation-data";
/// Marks the copy of a retained message queued for a new subscription (Bool).
pub(crate) const H_RETAINED_COPY: &str = "x-mqtt-retained";

/// The prefix of session queue names: `mqtt-session-{client id}`.
pub(crate) const SESSION_QUEUE_PREFIX: &str = "mqtt-session-";

/// The queue of a session.
pub(crate) fn session_queue_name(client_id: &str) -> String {
    format!("{SESSION_QUEUE_PREFIX}{client_id}")
}

/// What every shared subscription group's queue name starts with.
pub(crate) const SHARED_QUEUE_PREFIX: &str = "mqtt-shared/";

/// The queue of a shared subscription group: `mqtt-shared/{group}/{filter}` (a group
/// name holds no `/`, so the name is unambiguous).
pub(crate) fn shared_queue_name(group: &str, filter: &str) -> String {
    format!("{SHARED_QUEUE_PREFIX}{group}/{filter}")
}

/// Deletes a shared subscription group's queue once it has no member: no consumer, and
/// no persistent session away that belongs to it (whose messages it keeps meanwhile).
pub(crate) fn release_group(shared: &Shared, vhost: &Vhost, name: &str) {
    let Some(q) = vhost.queue(name) else { return };
    if q.stats().consumers == 0 && !shared.group_in_use(name) {
        // `if_unused`: a member that joined meanwhile keeps it.
        if vhost.delete_queue(name, true, false, 0).is_ok() {
            tracing::debug!(queue = name, "MQTT shared subscription group ended");
        }
    }
}

/// Deletes the queues of shared subscription groups left without members (their
/// persistent members expired, or were started clean, or the broker restarted).
pub(crate) fn release_unused_groups(shared: &Shared, vhost: &Vhost) {
    for q in vhost.queues() {
        if q.name().starts_with(SHARED_QUEUE_PREFIX) {
            release_group(shared, vhost, q.name());
        }
    }
}

/// The core message for a client's PUBLISH (or Will) to `topic`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn message_from_publish(
    topic: &str,
    payload: bytes::Bytes,
    qos: QoS,
    retain: bool,
    props: &PublishProperties,
    client_id: &ByteString,
    user: &str,
    now_ms: u64,
) -> Message {
    let mut headers = FieldTable::new();
    headers.push(H_QOS, FieldValue::U8(qos as u8));
    headers.push(H_CLIENT, FieldValue::Str(client_id.clone()));
    if retain {
        headers.push(H_RETAIN, FieldValue::Bool(true));
    }
    if let Some(f) = props.payload_format_indicator {
        headers.push(H_FORMAT, FieldValue::U8(f as u8));
    }
    let correlation_id = match &props.correlation_data {
        Some(d) => match ByteString::try_from(d.clone()) {
            Ok(s) => Some(s),
            Err(_) => {
                headers.push(H_CORRELATION, FieldValue::Bytes(d.clone()));
                None
            }
        },
        None => None,
    };
    for (k, v) in &props.user_properties {
        headers.push(k.clone(), FieldValue::Str(v.clone()));
    }
    Message {
        body: payload,
        properties: Properties {
            content_type: props.content_type.clone(),
            headers,
            persistent: qos != QoS::AtMostOnce,
            correlation_id,
            reply_to: props.response_topic.clone(),
            expiration_ms: props
                .message_expiry_interval_secs
                .map(|s| u64::from(s) * 1000),
            timestamp_ms: Some(now_ms),
            user_id: Some(user.into()),
            ..Properties::default()
        },
        exchange: TOPIC_EXCHANGE.into(),
        routing_key: mapping::routing_key(topic).into(),
        deaths: Vec::new(),
    }
}

/// The core message for a Will.
pub(crate) fn message_from_will(
    will: &Will,
    client_id: &ByteString,
    user: &str,
    now_ms: u64,
) -> Message {
    let p = &will.properties;
    let props = PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval_secs: p.message_expiry_interval_secs,
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        content_type: p.content_type.clone(),
        ..PublishProperties::default()
    };
    message_from_publish(
        &will.topic,
        will.payload.clone(),
        will.qos,
        will.retain,
        &props,
        client_id,
        user,
        now_ms,
    )
}

/// The QoS a message was published with: MQTT's own header, else persistent -> 1.
pub(crate) fn published_qos(m: &Message) -> QoS {
    match m.properties.headers.get(H_QOS) {
        Some(FieldValue::U8(q)) => QoS::from_u8(*q).unwrap_or(QoS::AtLeastOnce),
        _ if m.properties.persistent => QoS::AtLeastOnce,
        _ => QoS::AtMostOnce,
    }
}

/// Whether the message was published by MQTT client `client_id` (No Local).
pub(crate) fn published_by(m: &Message, client_id: &str) -> bool {
    matches!(m.properties.headers.get(H_CLIENT), Some(FieldValue::Str(c)) if &**c == client_id)
}

/// Whether the PUBLISH had RETAIN set.
pub(crate) fn was_retained(m: &Message) -> bool {
    matches!(
        m.properties.headers.get(H_RETAIN),
        Some(FieldValue::Bool(true))
    )
}

/// Whether this is the copy of a retained message sent at subscribe.
pub(crate) fn is_retained_copy(m: &Message) -> bool {
    matches!(
        m.properties.headers.get(H_RETAINED_COPY),
        Some(FieldValue::Bool(true))
    )
}

/// A copy of a retained message marked for delivery with RETAIN set.
pub(crate) fn retained_copy(m: &Message) -> Message {
    let mut copy = m.clone();
    copy.properties
        .headers
        .push(H_RETAINED_COPY, FieldValue::Bool(true));
    copy
}

/// Remaining lifetime in seconds, `Some(None)` if the message never expires, `None` if it
/// has expired.
fn remaining_expiry_secs(m: &Message, now_ms: u64) -> Option<Option<u32>> {
    let Some(ttl) = m.properties.expiration_ms else {
        return Some(None);
    };
    let age = now_ms.saturating_sub(m.properties.timestamp_ms.unwrap_or(now_ms));
    if age >= ttl {
        return None;
    }
    let left_ms = ttl - age;
    Some(Some(left_ms.div_ceil(1000).min(u64::from(u32::MAX)) as u32))
}

/// The PUBLISH for a delivery; `None` if the message expired on the way.
#[allow(clippy::too_many_arguments)]
pub(crate) fn publish_for(
    m: &Message,
    topic: ByteString,
    qos: QosPid,
    dup: bool,
    retain: bool,
    subscription_ids: &[NonZeroU32],
    v5: bool,
    now_ms: u64,
) -> Option<Publish> {
    let expiry = remaining_expiry_secs(m, now_ms)?;
    let mut publish = Publish {
        dup,
        qos,
        retain,
        topic,
        properties: PublishProperties::default(),
        payload: m.body.clone(),
    };
    if !v5 {
        return Some(publish);
    }
    let p = &m.properties;
    let pp = &mut publish.properties;
    pp.message_expiry_interval_secs = expiry;
    pp.content_type = p.content_type.clone();
    pp.response_topic = p
        .reply_to
        .clone()
        .filter(|t| !t.is_empty() && crate::topic::check_topic_name(t).is_ok());
    pp.correlation_data = p.correlation_id.as_ref().map(|c| c.as_bytes().clone());
    pp.subscription_identifiers = subscription_ids.to_vec();
    for (k, v) in p.headers.iter() {
        match &**k {
            H_FORMAT => {
                pp.payload_format_indicator = match v {
                    FieldValue::U8(1) => Some(PayloadFormat::Utf8),
                    FieldValue::U8(0) => Some(PayloadFormat::Unspecified),
                    _ => None,
                }
            }
            H_CORRELATION => {
                if let FieldValue::Bytes(b) = v {
                    pp.correlation_data = Some(b.clone());
                }
            }
            k if k.starts_with("x-mqtt-") => {}
            _ => match v {
                FieldValue::Str(s) => pp.user_properties.push((k.clone(), s.clone())),
                other => {
                    if let Some(n) = other.as_i64() {
                        pp.user_properties.push((k.clone(), n.to_string().into()));
                    }
                }
            },
        }
    }
    Some(publish)
}

/// Options of a session queue: durable for a persistent session, bounded by the
/// configured length and size with drop-head, and expiring with the session.
pub(crate) fn session_queue_options(cfg: &MqttConfig, expiry_secs: u32) -> QueueOptions {
    let mut arguments = FieldTable::new();
    arguments.insert("x-max-length", FieldValue::U64(cfg.session_messages_max));
    arguments.insert("x-max-length-bytes", FieldValue::U64(cfg.session_bytes_max));
    if let Some(ms) = session_expires_ms(expiry_secs) {
        arguments.insert("x-expires", FieldValue::U64(ms));
    }
    QueueOptions {
        durable: expiry_secs > 0,
        exclusive: false,
        auto_delete: false,
        arguments,
    }
}

/// A session expiry interval as its queue's `x-expires` (`None`: it never expires).
pub(crate) fn session_expires_ms(expiry_secs: u32) -> Option<u64> {
    (expiry_secs > 0 && expiry_secs != u32::MAX).then(|| u64::from(expiry_secs) * 1000)
}

/// Finds or creates a session's queue; `true` if it existed (Session Present).
pub(crate) fn open_session_queue(
    conn: &Connection,
    name: &str,
    options: QueueOptions,
) -> Result<(Arc<Queue>, bool), CoreError> {
    if let Some(q) = conn.vhost().queue(name) {
        return Ok((q, true));
    }
    let (q, _) = conn.declare_queue(name, options, false)?;
    Ok((q, false))
}

/// Binding arguments that record a subscription's options in the (journaled) binding, so
/// that a persistent session's subscriptions can be rebuilt after a restart.
pub(crate) fn binding_args(
    qos: QoS,
    no_local: bool,
    rap: bool,
    id: Option<NonZeroU32>,
) -> FieldTable {
    let mut t = FieldTable::new();
    t.push("x-mqtt-qos", FieldValue::U8(qos as u8));
    if no_local {
        t.push("x-mqtt-no-local", FieldValue::Bool(true));
    }
    if rap {
        t.push("x-mqtt-retain-as-published", FieldValue::Bool(true));
    }
    if let Some(id) = id {
        t.push("x-mqtt-subscription-id", FieldValue::U32(id.get()));
    }
    t
}

/// A subscription rebuilt from a binding: (filter, qos, no local, retain as published, id).
pub(crate) type RestoredSub = (ByteString, QoS, bool, bool, Option<NonZeroU32>);

/// The subscriptions of a session queue, read back from its bindings to `amq.topic`.
pub(crate) fn bound_subscriptions(conn: &Connection, queue: &str) -> Vec<RestoredSub> {
    conn.vhost()
        .bindings()
        .into_iter()
        .filter(|b| {
            !b.destination_is_exchange && &*b.destination == queue && &*b.source == TOPIC_EXCHANGE
        })
        .map(|b| {
            let a = &b.arguments;
            let qos = match a.get("x-mqtt-qos") {
                Some(FieldValue::U8(q)) => QoS::from_u8(*q).unwrap_or(QoS::AtMostOnce),
                _ => QoS::AtMostOnce,
            };
            let flag = |n| matches!(a.get(n), Some(FieldValue::Bool(true)));
            let id = match a.get("x-mqtt-subscription-id") {
                Some(FieldValue::U32(i)) => NonZeroU32::new(*i),
                _ => None,
            };
            (
                mapping::topic_filter(&b.key).into(),
                qos,
                flag("x-mqtt-no-local"),
                flag("x-mqtt-retain-as-published"),
                id,
            )
        })
        .collect()
}
