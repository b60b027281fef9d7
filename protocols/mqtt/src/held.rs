//! A durable core queue whose messages the listener takes and holds unacknowledged for as
//! long as the state they record lasts: the storage of `retained.rs` and `qos_store.rs`.
//! Acknowledging a held message settles it in the journal; at start the journal gives
//! the unsettled ones back as ready messages, to be taken again.

use std::sync::Arc;

use ferromq_core::{AckMode, CoreError, Message, Queue, SyncTicket, Vhost};

/// The queue, and who holds its messages.
#[derive(Debug)]
pub(crate) struct HeldQueue {
    pub(crate) vhost: Vhost,
    pub(crate) queue: Arc<Queue>,
    /// The id the manual-ack gets are recorded under (no consumer uses it).
    pub(crate) holder: u64,
}

impl HeldQueue {
    /// Publishes `msg` (routed to this queue), then takes it off the queue: its tag (none
    /// if it did not arrive) and the journal ticket to wait for. Anything else found there
    /// was not published by the listener (another protocol's publish): it is discarded.
    /// Callers serialize their calls, so that what they publish is what they take.
    pub(crate) fn publish_and_hold(
        &self,
        msg: &Arc<Message>,
    ) -> Result<(Option<u64>, Option<SyncTicket>), CoreError> {
        let ticket = self.vhost.publish(msg.clone())?.ticket;
        while let Some((d, _)) = self.queue.get(AckMode::Manual, self.holder) {
            if Arc::ptr_eq(&d.message, msg) {
                return Ok((Some(d.tag), ticket));
            }
            let _ = self.queue.discard(&[d.tag]);
        }
        Ok((None, ticket))
    }

    /// Settles held messages.
    pub(crate) fn settle(&self, tags: &[u64]) {
        if !tags.is_empty() {
            let _ = self.queue.discard(tags);
        }
    }
}
