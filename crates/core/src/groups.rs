//! Message groups, as ActiveMQ has them: the messages of a queue that carry the same
//! `JMSXGroupID` header go to one consumer, in order, for as long as that consumer lives,
//! so that competing consumers still see each group's messages in sequence.
//!
//! - The first message of a group that a consumer gets binds the group to it; that
//!   delivery carries `JMSXGroupFirstForConsumer = true`, so the consumer can reset what it
//!   keeps per group.
//! - A message with `JMSXGroupSeq = -1` closes its group after it is delivered: the next
//!   message of that group binds it anew.
//! - A consumer that goes away releases its groups; their next messages bind again.
//! - At most `CoreLimits::message_groups_max` groups are bound per queue. Binding one more
//!   forgets the one used least recently (as ActiveMQ's default cached group map does),
//!   whose next message binds it anew, possibly to another consumer.
//!
//! Any protocol can set the header: OpenWire maps `JMSXGroupID` to it, STOMP and AMQP
//! headers of that name are the same header. The bindings live in memory only, as in
//! ActiveMQ.

use std::collections::HashMap;

use bytestring::ByteString;

use crate::message::{FieldValue, Message};

/// The header naming a message's group.
pub const GROUP_ID: &str = "JMSXGroupID";
/// The header numbering a message within its group; -1 closes the group.
pub const GROUP_SEQ: &str = "JMSXGroupSeq";
/// Set on the delivery that binds a group to its consumer.
pub const GROUP_FIRST: &str = "JMSXGroupFirstForConsumer";

/// A message's group, if it has one, and whether it closes it.
pub(crate) fn group_of(m: &Message) -> Option<(&str, bool)> {
    let headers = &m.properties.headers;
    let id = headers.get(GROUP_ID)?.as_str()?;
    // A number, or text from a protocol whose headers are text (STOMP).
    let seq = headers
        .get(GROUP_SEQ)
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok()));
    let closes = seq == Some(-1);
    Some((id, closes))
}

/// One queue's group bindings.
///
/// # Invariants
/// - Every bound consumer is one of the queue's consumers (the queue releases a consumer's
///   groups when it removes it).
/// - `owners.len() <= max`.
#[derive(Debug)]
pub(crate) struct Groups {
    owners: HashMap<ByteString, Owner>,
    max: usize,
    /// Advances at every binding and use: the least recently used group has the lowest.
    clock: u64,
}

#[derive(Debug)]
struct Owner {
    consumer: u64,
    used: u64,
}

impl Groups {
    pub(crate) fn new(max: usize) -> Self {
        Groups {
            owners: HashMap::new(),
            max: max.max(1),
            clock: 0,
        }
    }

    /// The consumer `group` is bound to.
    pub(crate) fn owner(&self, group: &str) -> Option<u64> {
        self.owners.get(group).map(|o| o.consumer)
    }

    /// Records that `consumer` gets a message of `group` (bound to it, or to nobody);
    /// true when this binds the group, i.e. the delivery is the first for the consumer.
    pub(crate) fn deliver(&mut self, group: &str, consumer: u64, closes: bool) -> bool {
        self.clock += 1;
        let first = match self.owners.get_mut(group) {
            Some(o) => {
                o.used = self.clock;
                false
            }
            None => {
                if self.owners.len() >= self.max {
                    self.forget_least_used();
                }
                self.owners.insert(
                    ByteString::from(group),
                    Owner {
                        consumer,
                        used: self.clock,
                    },
                );
                true
            }
        };
        if closes {
            self.owners.remove(group);
        }
        first
    }

    /// Unbinds every group of `consumer`.
    pub(crate) fn release(&mut self, consumer: u64) {
        self.owners.retain(|_, o| o.consumer != consumer);
    }

    fn forget_least_used(&mut self) {
        let oldest = self
            .owners
            .iter()
            .min_by_key(|(_, o)| o.used)
            .map(|(g, _)| g.clone());
        if let Some(g) = oldest {
            self.owners.remove(&g);
        }
    }
}

/// `m` with `JMSXGroupFirstForConsumer = true`.
pub(crate) fn marked_first(m: &Message) -> Message {
    let mut m = m.clone();
    m.properties
        .headers
        .insert(GROUP_FIRST, FieldValue::Bool(true));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_binds_to_its_first_consumer_until_closed_or_released() {
        let mut g = Groups::new(8);
        assert_eq!(g.owner("a"), None);
        assert!(g.deliver("a", 1, false), "first delivery binds");
        assert_eq!(g.owner("a"), Some(1));
        assert!(!g.deliver("a", 1, false));
        // Sequence -1 closes the group after its delivery.
        assert!(!g.deliver("a", 1, true));
        assert_eq!(g.owner("a"), None);
        assert!(g.deliver("a", 2, false));
        assert!(g.deliver("b", 2, false));
        g.release(2);
        assert_eq!((g.owner("a"), g.owner("b")), (None, None));
    }

    #[test]
    fn beyond_the_bound_the_least_recently_used_group_is_forgotten() {
        let mut g = Groups::new(2);
        g.deliver("a", 1, false);
        g.deliver("b", 1, false);
        g.deliver("a", 1, false); // "b" is now the least recently used
        g.deliver("c", 2, false);
        assert_eq!(g.owners.len(), 2);
        assert_eq!(g.owner("a"), Some(1));
        assert_eq!(g.owner("b"), None);
        assert_eq!(g.owner("c"), Some(2));
    }
}
