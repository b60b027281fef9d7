//! The packet-identifier state of persistent sessions ([`QosState`]), kept in a durable
//! core queue so that a broker restart behaves like a reconnect.
//!
//! # Design
//! The technique of `retained.rs`: each piece of state is a small persistent marker
//! message, published through the default exchange to the durable queue `mqtt-qos-state`,
//! taken off it at once with a manual-ack `get` and held unacknowledged for as long as the
//! state lasts. When the state goes away the marker is acknowledged, which settles it in
//! the journal. At start [`QosStore::open`] takes every marker again and rebuilds each
//! session's [`QosState`]. Nothing new goes into the journal format.
//!
//! A marker carries its kind in the header `x-mqtt-state` (U8) and its session in
//! `x-mqtt-client-id` (Str); the body is big-endian:
//! - **incoming** (2 bytes, the packet id): a QoS 2 PUBLISH was routed and its PUBREL has
//!   not come. Published right after the message is routed, so the journal has the
//!   message first; the PUBREC waits until both are synced.
//! - **released** (the packet id): PUBREL sent for an outgoing QoS 2 message, PUBCOMP
//!   awaited. Published after the delivery was acknowledged in the core, so a restart
//!   cannot find both the message still queued and its PUBREL pending.
//! - **unacked** (pairs of packet id and persistent id, 10 bytes each): the QoS 1/2
//!   PUBLISHes of the session left unacknowledged when a connection ended. One marker per
//!   connection end, replacing the previous one, rather than one per delivery: QoS 1
//!   delivery stays free of journal work. The price is a crash window, written down in
//!   README.md: a broker killed while the session is connected loses these ids (the
//!   messages are still redelivered, with DUP, under new ids).
//!
//! - **shared** (per subscription: u16 length and the UTF-8 filter, an options byte with
//!   the QoS in bits 0-1, No Local in bit 2, Retain As Published in bit 3 and bit 4 set
//!   when a u32 Subscription Identifier follows): the session's shared subscriptions
//!   (`$share/...`), which live in their groups' queues rather than as bindings of the
//!   session's queue. One marker, replaced whenever they change.
//!
//! # Bounds
//! Only persistent sessions record markers (at most `persistent_sessions_max` of them):
//! `incoming` markers are bounded by `inflight_in_max`, `released` ones by
//! `inflight_out_max` (past it the state is kept in memory only) and the one `unacked`
//! marker holds at most `inflight_out_max` pairs.
//!
//! # Locks
//! `inner` is taken after a `QosState` lock (never the other way round) and never held
//! across `.await`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use ferromq_core::{
    AckMode, CoreError, FieldTable, FieldValue, Message, Properties, QueueOptions, SyncTicket,
    Vhost,
};

use crate::adapter::H_CLIENT;
use crate::held::HeldQueue;
use crate::shared::{QosState, SharedSub, Unacked};
use crate::QoS;

/// The queue that keeps the markers (a reserved name).
pub(crate) const STATE_QUEUE: &str = "mqtt-qos-state";
/// The marker's kind (U8).
const H_KIND: &str = "x-mqtt-state";

/// What a marker records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Incoming QoS 2 packet id awaiting PUBREL.
    Incoming = 1,
    /// Outgoing QoS 2 packet id awaiting PUBCOMP.
    Released = 2,
    /// Packet ids and persistent ids of unacknowledged outgoing PUBLISHes.
    Unacked = 3,
    /// The session's shared subscriptions.
    Shared = 4,
}

/// The durable home of the sessions' [`QosState`]; without a backing queue (not opened,
/// or the vhost is gone) it records nothing and the state is in memory only.
#[derive(Debug, Default)]
pub struct QosStore {
    inner: Mutex<Option<HeldQueue>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The body of an `incoming` or `released` marker.
pub(crate) fn id_body(id: u16) -> Bytes {
    Bytes::copy_from_slice(&id.to_be_bytes())
}

/// The body of an `unacked` marker: the entries that can be found again after a restart.
pub(crate) fn unacked_body(entries: &[Unacked]) -> Bytes {
    let mut b = BytesMut::with_capacity(entries.len() * 10);
    for u in entries.iter().filter(|u| u.persistent_id != 0) {
        b.put_u16(u.id);
        b.put_u64(u.persistent_id);
    }
    b.freeze()
}

/// The body of a `shared` marker.
pub(crate) fn shared_body(subs: &[SharedSub]) -> Bytes {
    let mut b = BytesMut::with_capacity(subs.iter().map(|s| s.filter.len() + 7).sum());
    for s in subs {
        b.put_u16(s.filter.len() as u16);
        b.put_slice(s.filter.as_bytes());
        let flags = s.qos as u8
            | u8::from(s.no_local) << 2
            | u8::from(s.retain_as_published) << 3
            | u8::from(s.id.is_some()) << 4;
        b.put_u8(flags);
        if let Some(id) = s.id {
            b.put_u32(id.get());
        }
    }
    b.freeze()
}

fn parse_shared(mut body: &[u8]) -> Option<Vec<SharedSub>> {
    let mut subs = Vec::new();
    while !body.is_empty() {
        let len = usize::from(u16::from_be_bytes(body.get(..2)?.try_into().ok()?));
        let filter = std::str::from_utf8(body.get(2..2 + len)?).ok()?;
        crate::topic::shared_subscription(filter)?;
        let flags = *body.get(2 + len)?;
        body = &body[3 + len..];
        let qos = match flags & 3 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            _ => return None,
        };
        let id = if flags & 16 != 0 {
            let id = u32::from_be_bytes(body.get(..4)?.try_into().ok()?);
            body = &body[4..];
            Some(NonZeroU32::new(id)?)
        } else {
            None
        };
        subs.push(SharedSub {
            filter: filter.into(),
            qos,
            no_local: flags & 4 != 0,
            retain_as_published: flags & 8 != 0,
            id,
        });
    }
    Some(subs)
}

fn parse_id(body: &[u8]) -> Option<u16> {
    let b: [u8; 2] = body.try_into().ok()?;
    Some(u16::from_be_bytes(b)).filter(|id| *id != 0)
}

fn parse_unacked(body: &[u8]) -> Option<Vec<Unacked>> {
    if !body.len().is_multiple_of(10) {
        return None;
    }
    body.chunks_exact(10)
        .map(|c| {
            let id = u16::from_be_bytes([c[0], c[1]]);
            let pid = u64::from_be_bytes(c[2..].try_into().expect("8 bytes"));
            (id != 0 && pid != 0).then_some(Unacked {
                id,
                message: None,
                persistent_id: pid,
            })
        })
        .collect()
}

/// A marker's kind and session, if it is one.
fn parse_marker(m: &Message) -> Option<(Kind, ByteString)> {
    let h = &m.properties.headers;
    let kind = match h.get(H_KIND) {
        Some(FieldValue::U8(1)) => Kind::Incoming,
        Some(FieldValue::U8(2)) => Kind::Released,
        Some(FieldValue::U8(3)) => Kind::Unacked,
        Some(FieldValue::U8(4)) => Kind::Shared,
        _ => return None,
    };
    match h.get(H_CLIENT) {
        Some(FieldValue::Str(c)) => Some((kind, c.clone())),
        _ => None,
    }
}

impl QosStore {
    /// Declares the backing queue in `vhost` (durable) and rebuilds the state its markers
    /// hold, for the sessions that `exists` says still exist (the others' markers are
    /// settled). `holder` must be an id no consumer uses. A second call returns nothing.
    pub(crate) fn open(
        &self,
        vhost: &Vhost,
        holder: u64,
        exists: impl Fn(&str) -> bool,
    ) -> Result<HashMap<ByteString, QosState>, CoreError> {
        let mut inner = lock(&self.inner);
        let mut states: HashMap<ByteString, QosState> = HashMap::new();
        if inner.is_some() {
            return Ok(states);
        }
        let options = QueueOptions {
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
        };
        let (queue, _) = vhost.declare_queue(STATE_QUEUE, options, false, 0)?;
        let settle = |tag: u64| {
            let _ = queue.discard(&[tag]);
        };
        // Queue order is publish order: a later marker replaces an earlier one.
        while let Some((d, _)) = queue.get(AckMode::Manual, holder) {
            let Some((kind, client)) = parse_marker(&d.message).filter(|(_, c)| exists(c)) else {
                settle(d.tag);
                continue;
            };
            let body = &d.message.body[..];
            let s = states.entry(client).or_default();
            let replaced = match kind {
                Kind::Incoming => match parse_id(body) {
                    Some(id) => s.incoming.insert(id, Some(d.tag)).flatten(),
                    None => Some(d.tag),
                },
                Kind::Released => match parse_id(body) {
                    Some(id) => s.released.insert(id, Some(d.tag)).flatten(),
                    None => Some(d.tag),
                },
                Kind::Unacked => match parse_unacked(body) {
                    Some(entries) => {
                        s.unacked = entries;
                        s.unacked_marker.replace(d.tag)
                    }
                    None => Some(d.tag),
                },
                Kind::Shared => match parse_shared(body) {
                    Some(subs) => {
                        s.shared_subs = subs;
                        s.shared_marker.replace(d.tag)
                    }
                    None => Some(d.tag),
                },
            };
            if let Some(tag) = replaced {
                settle(tag);
            }
        }
        *inner = Some(HeldQueue {
            vhost: vhost.clone(),
            queue,
            holder,
        });
        Ok(states)
    }

    /// Records a marker for `client_id`: its tag (to settle it later) and the journal
    /// ticket to wait for. `None` when the store is not open or refused it (the journal is
    /// failing or behind): the state is then kept in memory only.
    pub(crate) fn record(
        &self,
        client_id: &ByteString,
        kind: Kind,
        body: Bytes,
    ) -> Option<(u64, Option<SyncTicket>)> {
        let inner = lock(&self.inner);
        let b = inner.as_ref()?;
        let mut headers = FieldTable::new();
        headers.push(H_KIND, FieldValue::U8(kind as u8));
        headers.push(H_CLIENT, FieldValue::Str(client_id.clone()));
        let marker = Arc::new(Message {
            body,
            properties: Properties {
                headers,
                persistent: true,
                ..Properties::default()
            },
            exchange: "".into(),
            routing_key: STATE_QUEUE.into(),
            deaths: Vec::new(),
        });
        match b.publish_and_hold(&marker) {
            Ok((Some(tag), ticket)) => Some((tag, ticket)),
            Ok((None, _)) => {
                tracing::warn!("MQTT packet id state lost its backing queue; kept in memory only");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "MQTT packet id state not stored");
                None
            }
        }
    }

    /// Settles markers: the state they recorded is gone.
    pub(crate) fn settle(&self, tags: &[u64]) {
        if let Some(b) = lock(&self.inner).as_ref() {
            b.settle(tags);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_markers_round_trip_and_damage_is_refused() {
        let subs = vec![
            SharedSub {
                filter: "$share/g/a/+/c".into(),
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: false,
                id: NonZeroU32::new(70_000),
            },
            SharedSub {
                filter: "$share/h/#".into(),
                qos: QoS::AtMostOnce,
                no_local: false,
                retain_as_published: true,
                id: None,
            },
        ];
        let body = shared_body(&subs);
        assert_eq!(parse_shared(&body), Some(subs));
        assert_eq!(parse_shared(&[]), Some(Vec::new()));
        // Cut anywhere but between the two entries (2 + 14 + 1 + 4 bytes in).
        for cut in (1..body.len()).filter(|&c| c != 21) {
            assert_eq!(parse_shared(&body[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parse_shared(&body[..21]).map(|s| s.len()), Some(1));
        // Not a shared filter; QoS 3.
        let plain = shared_body(&[SharedSub {
            filter: "a/b".into(),
            qos: QoS::AtMostOnce,
            no_local: false,
            retain_as_published: false,
            id: None,
        }]);
        assert_eq!(parse_shared(&plain), None);
        assert_eq!(parse_shared(&[0, 5, b'$', b's', b'h', b'a', b'r']), None);
        let mut q3 = body.to_vec();
        q3[2 + 14] |= 3;
        assert_eq!(parse_shared(&q3), None);
    }
}
