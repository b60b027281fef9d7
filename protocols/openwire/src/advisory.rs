//! Temporary-destination advisories (`ActiveMQ.Advisory.TempQueue`, `.TempTopic`).
//!
//! A 5.x client watches them by default (`watchTopicAdvisories`): it keeps the set of live
//! temporary destinations they announce and refuses to send to a temporary destination
//! outside that set ("Cannot publish to a deleted Destination"). Without them a responder
//! on another connection could not answer a `JMSReplyTo` temporary queue.
//!
//! [`Advisories`] is shared by the OpenWire connections of a server. It holds the live
//! temporary destinations (each with the DestinationInfo that created it) and the
//! consumers watching the advisory topics. A change goes into the [`Mailbox`] of every
//! watching connection, whose task writes it out as a dispatch. A new watcher is given
//! the current set first (targeted at it, as ActiveMQ replays it), taken under the lock
//! that registers it, so that it neither misses nor repeats a change.
//!
//! # Bounds
//! Temporary destinations: `temp_destinations_max` per connection. Watchers:
//! `consumers_max` per connection. A mailbox holds at most `advisory_backlog_max`
//! advisories; a connection that falls that far behind is closed rather than sent an
//! incomplete view (its failover transport reconnects and is given the set afresh).
//!
//! # Locks
//! The registry's lock, then a mailbox's lock; never the other way round, and neither
//! across `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use bytestring::ByteString;
use ferromq_core::FieldValue;
use tokio::sync::Notify;

use crate::command::{
    types, ConsumerId, DataStructure, Destination, DestinationInfo, Message, MessageId, ProducerId,
};
use crate::destination::elements;
use crate::primitive::write_map;

/// The advisory topic of temporary queues.
pub const TEMP_QUEUE_TOPIC: &str = "ActiveMQ.Advisory.TempQueue";
/// The advisory topic of temporary topics.
pub const TEMP_TOPIC_TOPIC: &str = "ActiveMQ.Advisory.TempTopic";

/// DestinationInfo operation: the destination was created.
pub const ADD: u8 = 0;
/// DestinationInfo operation: the destination was removed.
pub const REMOVE: u8 = 1;

/// Which temporary-destination advisories a consumer's destination covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watch {
    /// `ActiveMQ.Advisory.TempQueue`.
    pub queues: bool,
    /// `ActiveMQ.Advisory.TempTopic`.
    pub topics: bool,
}

impl Watch {
    /// What `d` (a topic, a wildcard or a composite) subscribes to.
    pub fn of(d: &Destination) -> Watch {
        let mut w = Watch::default();
        for e in elements(d) {
            if let Destination::Topic(pattern) = &e {
                w.queues |= matches(pattern, TEMP_QUEUE_TOPIC);
                w.topics |= matches(pattern, TEMP_TOPIC_TOPIC);
            }
        }
        w
    }

    /// True if it covers nothing.
    pub fn is_empty(&self) -> bool {
        !self.queues && !self.topics
    }

    fn covers(&self, d: &Destination) -> bool {
        match d {
            Destination::TempQueue(_) => self.queues,
            Destination::TempTopic(_) => self.topics,
            _ => false,
        }
    }
}

/// ActiveMQ's topic wildcards: `*` is one word, `>` the rest.
fn matches(pattern: &str, name: &str) -> bool {
    let mut words = name.split('.');
    for p in pattern.split('.') {
        if p == ">" {
            return true;
        }
        match words.next() {
            Some(w) if p == "*" || p == w => {}
            _ => return false,
        }
    }
    words.next().is_none()
}

/// The advisory topic announcing changes to `d`.
pub fn topic_of(d: &Destination) -> Destination {
    let name = if matches!(d, Destination::TempTopic(_)) {
        TEMP_TOPIC_TOPIC
    } else {
        TEMP_QUEUE_TOPIC
    };
    Destination::Topic(ByteString::from_static(name))
}

/// One advisory for one consumer of a connection.
#[derive(Clone, Debug)]
pub struct Advisory {
    /// The watching consumer.
    pub consumer: ConsumerId,
    /// The change: the DestinationInfo with operation [`ADD`] or [`REMOVE`].
    pub info: Arc<DestinationInfo>,
}

/// A connection's advisories waiting to be written.
#[derive(Debug)]
pub struct Mailbox {
    inner: Mutex<MailboxInner>,
    /// Set with every push, cleared by `take`: lets the connection look between
    /// deliveries without taking the lock.
    pending: AtomicBool,
    notify: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct MailboxInner {
    items: VecDeque<Advisory>,
    overflowed: bool,
}

/// The mailbox overflowed: its connection missed advisories.
#[derive(Debug)]
pub struct Overflowed;

impl Mailbox {
    /// A mailbox holding at most `capacity` advisories.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::default(),
            pending: AtomicBool::new(false),
            notify: Notify::new(),
            capacity,
        })
    }

    fn lock(&self) -> MutexGuard<'_, MailboxInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, a: Advisory) {
        {
            let mut inner = self.lock();
            if inner.overflowed {
                return;
            }
            if inner.items.len() >= self.capacity {
                inner.overflowed = true;
                inner.items.clear();
            } else {
                inner.items.push_back(a);
            }
        }
        self.pending.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// True if something was pushed since the last `take`.
    pub fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Resolves once something may have been pushed.
    pub async fn changed(&self) {
        self.notify.notified().await
    }

    /// Everything pushed so far, oldest first.
    pub fn take(&self) -> Result<VecDeque<Advisory>, Overflowed> {
        let mut inner = self.lock();
        self.pending.store(false, Ordering::Release);
        if inner.overflowed {
            return Err(Overflowed);
        }
        Ok(std::mem::take(&mut inner.items))
    }
}

/// The live temporary destinations of a server's OpenWire connections and the consumers
/// watching their advisory topics.
#[derive(Debug, Default)]
pub struct Advisories {
    inner: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    /// Live temporary destination -> (the core id of the connection that made it, its
    /// DestinationInfo).
    temps: HashMap<Destination, (u64, Arc<DestinationInfo>)>,
    /// (core connection id, consumer) -> what it watches and where its advisories go.
    watchers: HashMap<(u64, ConsumerId), (Watch, Arc<Mailbox>)>,
}

impl Registry {
    fn announce(&self, info: &Arc<DestinationInfo>, d: &Destination) {
        for ((_, consumer), (watch, mailbox)) in &self.watchers {
            if watch.covers(d) {
                mailbox.push(Advisory {
                    consumer: consumer.clone(),
                    info: info.clone(),
                });
            }
        }
    }
}

impl Advisories {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a watching consumer of connection `conn`; returns the live temporary
    /// destinations it covers, to be sent to it before any later change.
    pub fn watch(
        &self,
        conn: u64,
        consumer: &ConsumerId,
        watch: Watch,
        mailbox: &Arc<Mailbox>,
    ) -> Vec<Arc<DestinationInfo>> {
        let mut r = self.lock();
        r.watchers
            .insert((conn, consumer.clone()), (watch, mailbox.clone()));
        r.temps
            .iter()
            .filter(|(d, _)| watch.covers(d))
            .map(|(_, (_, info))| info.clone())
            .collect()
    }

    /// Forgets a watching consumer.
    pub fn unwatch(&self, conn: u64, consumer: &ConsumerId) {
        self.lock().watchers.remove(&(conn, consumer.clone()));
    }

    /// Connection `conn` created a temporary destination (announced once, like
    /// ActiveMQ: a repeated add of a live destination changes nothing).
    pub fn added(&self, conn: u64, info: DestinationInfo) {
        let Some(d) = info.destination.clone() else {
            return;
        };
        let mut r = self.lock();
        if r.temps.contains_key(&d) {
            return;
        }
        let info = Arc::new(DestinationInfo {
            operation: ADD,
            ..info
        });
        r.temps.insert(d.clone(), (conn, info.clone()));
        r.announce(&info, &d);
    }

    /// Connection `conn` deleted a temporary destination, or ended. Only the connection
    /// that made it removes it.
    pub fn removed(&self, conn: u64, d: &Destination) {
        let mut r = self.lock();
        let added = match r.temps.get(d) {
            Some((owner, info)) if *owner == conn => info.clone(),
            _ => return,
        };
        r.temps.remove(d);
        let info = Arc::new(DestinationInfo {
            operation: REMOVE,
            ..(*added).clone()
        });
        r.announce(&info, d);
    }

    /// The number of live temporary destinations.
    pub fn temporaries(&self) -> usize {
        self.lock().temps.len()
    }
}

/// The advisory message announcing `info`, as ActiveMQ's broker makes it: a plain
/// non-persistent Message of JMSType `Advisory` on the advisory topic, the DestinationInfo
/// as its data structure, the origin broker in its properties, and the consumer it is
/// meant for when it replays the current set to a new one. `seq` is unique on the
/// connection (it is both the producer sequence and the broker sequence).
pub fn message(
    info: &DestinationInfo,
    target: Option<&ConsumerId>,
    broker_name: &str,
    seq: u64,
    now_ms: u64,
) -> Message {
    let producer = ProducerId {
        connection: format!("ID:{broker_name}:advisory").into(),
        value: 1,
        session: 0,
    };
    let topic = info
        .destination
        .as_ref()
        .map_or_else(|| topic_of(&Destination::TempQueue("".into())), topic_of);
    let mut m = Message::new(types::MESSAGE);
    m.message_id = Some(MessageId {
        text_view: None,
        producer: Some(producer.clone()),
        producer_seq: seq as i64,
        broker_seq: seq as i64,
    });
    m.producer_id = Some(producer);
    m.destination = Some(topic);
    m.persistent = false;
    m.timestamp = now_ms as i64;
    m.jms_type = Some(ByteString::from_static("Advisory"));
    let name = FieldValue::Str(broker_name.into());
    let id = FieldValue::Str(format!("ID:{broker_name}").into());
    let mut props = BytesMut::new();
    write_map(
        &mut props,
        [("originBrokerName", &name), ("originBrokerId", &id)].into_iter(),
    );
    m.properties = Some(props.freeze());
    m.data_structure = Some(Box::new(DataStructure::DestinationInfo(info.clone())));
    m.target_consumer_id = target.cloned();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(v: i64) -> ConsumerId {
        ConsumerId {
            connection: "ID:c".into(),
            session: 1,
            value: v,
        }
    }

    fn info(d: Destination) -> DestinationInfo {
        DestinationInfo {
            connection_id: Some("ID:owner".into()),
            destination: Some(d),
            operation: ADD,
            timeout: 0,
            broker_path: Vec::new(),
        }
    }

    #[test]
    fn what_a_destination_watches() {
        let composite = Destination::Topic(format!("{TEMP_QUEUE_TOPIC},{TEMP_TOPIC_TOPIC}").into());
        let both = Watch {
            queues: true,
            topics: true,
        };
        assert_eq!(Watch::of(&composite), both);
        assert_eq!(
            Watch::of(&Destination::Topic("ActiveMQ.Advisory.>".into())),
            both
        );
        assert_eq!(
            Watch::of(&Destination::Topic("ActiveMQ.*.TempTopic".into())),
            Watch {
                queues: false,
                topics: true
            }
        );
        for other in [
            Destination::Topic("ActiveMQ.Advisory.Connection".into()),
            Destination::Topic("ActiveMQ.Advisory.TempQueue.x".into()),
            Destination::Queue(TEMP_QUEUE_TOPIC.into()),
        ] {
            assert!(Watch::of(&other).is_empty(), "{other:?}");
        }
    }

    #[test]
    fn watchers_get_the_live_set_then_changes_once() {
        let adv = Advisories::default();
        let mb = Mailbox::new(16);
        let q1 = Destination::TempQueue("ID:owner:1:1".into());
        let t1 = Destination::TempTopic("ID:owner:1:2".into());
        adv.added(5, info(q1.clone()));
        adv.added(5, info(t1.clone()));
        adv.added(5, info(q1.clone()));
        let queues_only = Watch {
            queues: true,
            topics: false,
        };
        let replay = adv.watch(7, &cid(1), queues_only, &mb);
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].destination.as_ref(), Some(&q1));
        assert!(!mb.has_pending());

        let q2 = Destination::TempQueue("ID:owner:1:3".into());
        adv.added(5, info(q2.clone()));
        adv.removed(5, &t1);
        adv.removed(6, &q1);
        adv.removed(5, &q1);
        adv.removed(5, &q1);
        assert!(mb.has_pending());
        let got: Vec<(Option<Destination>, u8)> = mb
            .take()
            .expect("no overflow")
            .into_iter()
            .map(|a| (a.info.destination.clone(), a.info.operation))
            .collect();
        assert_eq!(got, vec![(Some(q2.clone()), ADD), (Some(q1), REMOVE)]);
        assert!(!mb.has_pending());
        assert_eq!(adv.temporaries(), 1);

        adv.unwatch(7, &cid(1));
        adv.removed(5, &q2);
        assert!(mb.take().expect("no overflow").is_empty());
    }

    #[test]
    fn a_full_mailbox_overflows_instead_of_dropping_silently() {
        let adv = Advisories::default();
        let mb = Mailbox::new(2);
        let all = Watch {
            queues: true,
            topics: true,
        };
        adv.watch(1, &cid(1), all, &mb);
        for i in 0..3 {
            adv.added(5, info(Destination::TempQueue(format!("q{i}").into())));
        }
        assert!(mb.take().is_err());
    }

    #[test]
    fn the_message_is_what_activemq_sends() {
        let d = Destination::TempTopic("ID:owner:1:2".into());
        let i = info(d);
        let m = message(&i, Some(&cid(3)), "b", 42, 1000);
        assert_eq!(
            m.destination,
            Some(Destination::Topic(TEMP_TOPIC_TOPIC.into()))
        );
        assert_eq!(m.jms_type.as_deref(), Some("Advisory"));
        assert!(!m.persistent);
        assert_eq!(m.target_consumer_id, Some(cid(3)));
        assert_eq!(
            m.data_structure.as_deref(),
            Some(&DataStructure::DestinationInfo(i))
        );
        assert_eq!(m.message_id.as_ref().map(|id| id.producer_seq), Some(42));
    }

    #[test]
    fn the_dispatch_round_trips_through_the_codec_in_every_version() {
        use crate::codec::{encode, Decoder};
        use crate::command::{Body, Command, MessageDispatch};
        use crate::marshal::Format;
        let d = Destination::TempQueue("ID:owner:1:1".into());
        for version in 9..=12 {
            let f = Format {
                version,
                ..Format::default()
            };
            let m = message(&info(d.clone()), Some(&cid(1)), "b", 7, 1000);
            let c = Command::new(
                0,
                Body::MessageDispatch(MessageDispatch {
                    consumer_id: Some(cid(1)),
                    destination: m.destination.clone(),
                    message: Some(Box::new(m)),
                    redelivery_counter: 0,
                }),
            );
            let mut buf = BytesMut::new();
            encode(&mut buf, &f, &c);
            let got = Decoder::new(1 << 20, f).decode(&mut buf);
            assert_eq!(got.expect("decodes"), Some(c), "version {version}");
            assert!(buf.is_empty());
        }
    }
}
