//! Publisher confirms of one channel (`confirm.select`).
//!
//! Every publish gets the next sequence number when it arrives and an entry in `pending`;
//! the entry is resolved (ack or nack) when the publish has taken effect, and confirms are
//! sent strictly in sequence order from the head of `pending`, runs of one outcome
//! coalesced into a single `multiple` frame. A publish is resolved when `Vhost::publish`
//! returns; a persistent one that was journaled also carries its journal ticket and is
//! confirmed only once the ticket is synced (nacked if the journal failed).
//!
//! # Invariants
//! - `pending` is ordered by sequence number, without gaps, starting at `first`.
//! - Every sequence number below `first` has been confirmed to the client.

use std::collections::VecDeque;

use amq_protocol::protocol::{basic, AMQPClass};
use bytes::BytesMut;

use crate::adapter::SyncTicket;
use crate::codec::encode_method;

/// A resolved publish: ack or nack, and the journal ticket it still waits for.
type Outcome = (bool, Option<SyncTicket>);

/// The confirm state of a channel in confirm mode.
#[derive(Debug)]
pub(crate) struct Confirms {
    /// Sequence number of `pending[0]`.
    first: u64,
    /// `None` while unresolved.
    pending: VecDeque<Option<Outcome>>,
}

impl Confirms {
    pub(crate) fn new() -> Self {
        Self {
            first: 1,
            pending: VecDeque::new(),
        }
    }

    /// Registers a publish; returns its sequence number.
    pub(crate) fn publish(&mut self) -> u64 {
        self.pending.push_back(None);
        self.first + self.pending.len() as u64 - 1
    }

    /// Records the outcome of publish `seq`, and the journal ticket an ack must wait for.
    pub(crate) fn resolve(&mut self, seq: u64, ack: bool, ticket: Option<SyncTicket>) {
        if let Some(slot) = seq
            .checked_sub(self.first)
            .and_then(|i| self.pending.get_mut(i as usize))
        {
            *slot = Some((ack, ticket.filter(|_| ack)));
        }
    }

    /// Publishes not yet confirmed to the client.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether a confirm is ready to be sent (`synced` says whether a journal ticket is
    /// synced: `Some(ok)` once known).
    pub(crate) fn ready(&self, synced: &dyn Fn(SyncTicket) -> Option<bool>) -> bool {
        matches!(self.pending.front(), Some(Some(o)) if outcome(*o, synced).is_some())
    }

    /// Whether the head waits for the journal.
    pub(crate) fn waiting_for_sync(&self) -> bool {
        matches!(self.pending.front(), Some(Some((_, Some(_)))))
    }

    /// Sends every confirm that is ready, in order.
    pub(crate) fn flush(
        &mut self,
        out: &mut BytesMut,
        scratch: &mut Vec<u8>,
        channel: u16,
        synced: &dyn Fn(SyncTicket) -> Option<bool>,
    ) {
        // Settle the tickets that are known, front first, so that runs can be measured.
        for slot in self.pending.iter_mut() {
            let Some(o) = *slot else { break };
            let Some(ack) = outcome(o, synced) else { break };
            *slot = Some((ack, None));
        }
        while let Some(Some((ack, None))) = self.pending.front().copied() {
            let run = self
                .pending
                .iter()
                .take_while(|o| **o == Some((ack, None)))
                .count();
            let last = self.first + run as u64 - 1;
            let multiple = run > 1;
            let m = if ack {
                basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: last,
                    multiple,
                })
            } else {
                basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: last,
                    multiple,
                    requeue: false,
                })
            };
            encode_method(out, scratch, channel, &AMQPClass::Basic(m));
            self.pending.drain(..run);
            self.first = last + 1;
        }
    }
}

/// The confirm a resolved publish gets now, or `None` while its ticket is pending.
fn outcome((ack, ticket): Outcome, synced: &dyn Fn(SyncTicket) -> Option<bool>) -> Option<bool> {
    match ticket {
        None => Some(ack),
        Some(t) => synced(t).map(|ok| ack && ok),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Decoder, Frame, PROTOCOL_HEADER};

    fn sent(out: &BytesMut) -> Vec<(bool, u64, bool)> {
        let mut d = Decoder::new(4096, 8);
        let mut buf = BytesMut::from(&PROTOCOL_HEADER[..]);
        buf.extend_from_slice(out);
        let mut v = Vec::new();
        while let Some(f) = d.decode(&mut buf).unwrap() {
            match f {
                Frame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Ack(a))) => {
                    v.push((true, a.delivery_tag, a.multiple))
                }
                Frame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Nack(n))) => {
                    v.push((false, n.delivery_tag, n.multiple))
                }
                _ => {}
            }
        }
        v
    }

    #[test]
    fn in_order_with_runs_coalesced() {
        let mut c = Confirms::new();
        let seqs: Vec<u64> = (0..6).map(|_| c.publish()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
        // 2 and 3 resolve first: nothing may be sent before 1.
        c.resolve(2, true, None);
        c.resolve(3, true, None);
        let mut out = BytesMut::new();
        c.flush(&mut out, &mut Vec::new(), 1, &|_| None);
        assert!(out.is_empty());
        c.resolve(1, true, None);
        c.resolve(4, false, None);
        c.resolve(6, true, None);
        c.flush(&mut out, &mut Vec::new(), 1, &|_| None);
        assert_eq!(sent(&out), [(true, 3, true), (false, 4, false)]);
        assert_eq!(c.len(), 2);
        c.resolve(5, true, None);
        let mut out = BytesMut::new();
        c.flush(&mut out, &mut Vec::new(), 1, &|_| None);
        assert_eq!(sent(&out), [(true, 6, true)]);
        assert_eq!(c.len(), 0);
        assert_eq!(c.publish(), 7);
    }

    #[test]
    fn journaled_publishes_wait_for_their_ticket() {
        let mut c = Confirms::new();
        for _ in 0..4 {
            c.publish();
        }
        let t = |n| Some(SyncTicket::from_seq(n));
        c.resolve(1, true, t(10));
        c.resolve(2, true, None);
        c.resolve(3, true, t(11));
        c.resolve(4, true, t(12));
        let mut out = BytesMut::new();
        c.flush(&mut out, &mut Vec::new(), 1, &|_| None);
        assert!(out.is_empty(), "nothing before 1 is synced");
        assert!(c.waiting_for_sync());
        // Synced up to op 11; op 12 failed.
        let synced = |t: SyncTicket| Some(t != SyncTicket::from_seq(12));
        assert!(c.ready(&synced));
        c.flush(&mut out, &mut Vec::new(), 1, &synced);
        assert_eq!(sent(&out), [(true, 3, true), (false, 4, false)]);
        assert_eq!(c.len(), 0);
    }
}
