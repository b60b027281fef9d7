//! Publisher confirms of one channel (`confirm.select`).
//!
//! Every publish gets the next sequence number when it arrives and an entry in `pending`;
//! the entry is resolved (ack or nack) when the publish has taken effect, and confirms are
//! sent strictly in sequence order from the head of `pending`, runs of one outcome
//! coalesced into a single `multiple` frame. Today a publish is resolved as soon as
//! `Vhost::publish` returns; once the store exists, a persistent publish will resolve
//! when its record reaches the durability watermark, and nothing here changes.
//!
//! # Invariants
//! - `pending` is ordered by sequence number, without gaps, starting at `first`.
//! - Every sequence number below `first` has been confirmed to the client.

use std::collections::VecDeque;

use amq_protocol::protocol::{basic, AMQPClass};
use bytes::BytesMut;

use crate::codec::encode_method;

/// The confirm state of a channel in confirm mode.
#[derive(Debug)]
pub(crate) struct Confirms {
    /// Sequence number of `pending[0]`.
    first: u64,
    /// `None` while unresolved, else whether it is an ack.
    pending: VecDeque<Option<bool>>,
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

    /// Records the outcome of publish `seq`.
    pub(crate) fn resolve(&mut self, seq: u64, ack: bool) {
        if let Some(slot) = seq
            .checked_sub(self.first)
            .and_then(|i| self.pending.get_mut(i as usize))
        {
            *slot = Some(ack);
        }
    }

    /// Publishes not yet confirmed to the client.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether a confirm is ready to be sent.
    pub(crate) fn ready(&self) -> bool {
        matches!(self.pending.front(), Some(Some(_)))
    }

    /// Sends every confirm that is ready, in order.
    pub(crate) fn flush(&mut self, out: &mut BytesMut, scratch: &mut Vec<u8>, channel: u16) {
        while let Some(Some(ack)) = self.pending.front().copied() {
            let run = self.pending.iter().take_while(|o| **o == Some(ack)).count();
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
        c.resolve(2, true);
        c.resolve(3, true);
        let mut out = BytesMut::new();
        c.flush(&mut out, &mut Vec::new(), 1);
        assert!(out.is_empty());
        c.resolve(1, true);
        c.resolve(4, false);
        c.resolve(6, true);
        c.flush(&mut out, &mut Vec::new(), 1);
        assert_eq!(sent(&out), [(true, 3, true), (false, 4, false)]);
        assert_eq!(c.len(), 2);
        c.resolve(5, true);
        let mut out = BytesMut::new();
        c.flush(&mut out, &mut Vec::new(), 1);
        assert_eq!(sent(&out), [(true, 6, true)]);
        assert_eq!(c.len(), 0);
        assert_eq!(c.publish(), 7);
    }
}
