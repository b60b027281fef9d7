//! Transactions: publishes and settlements buffered until commit.

use std::sync::Arc;

use crate::error::CoreError;
use crate::limits::CoreLimits;
use crate::message::Message;
use crate::queue::Queue;
use crate::vhost::{PublishOutcome, Vhost};

#[derive(Debug)]
enum Op {
    Publish(Arc<Message>),
    Ack(Arc<Queue>, u64),
    Nack(Arc<Queue>, u64, bool),
}

/// A local transaction (AMQP `tx`, STOMP `BEGIN`, JMS transacted session). Nothing takes
/// effect until [`Transaction::commit`]; [`Transaction::rollback`] discards everything.
#[derive(Debug, Default)]
pub struct Transaction {
    ops: Vec<Op>,
    ops_max: usize,
}

impl Transaction {
    /// An empty transaction bounded by `limits.transaction_ops_max`.
    pub fn new(limits: &CoreLimits) -> Self {
        Self {
            ops: Vec::new(),
            ops_max: limits.transaction_ops_max,
        }
    }

    fn push(&mut self, op: Op) -> Result<(), CoreError> {
        if self.ops.len() >= self.ops_max {
            return Err(CoreError::ResourceLimit(format!(
                "transaction holds more than {} operations",
                self.ops_max
            )));
        }
        self.ops.push(op);
        Ok(())
    }

    /// Buffers a publish.
    pub fn publish(&mut self, msg: Arc<Message>) -> Result<(), CoreError> {
        self.push(Op::Publish(msg))
    }

    /// Buffers an acknowledgement.
    pub fn ack(&mut self, queue: Arc<Queue>, tag: u64) -> Result<(), CoreError> {
        self.push(Op::Ack(queue, tag))
    }

    /// Buffers a negative acknowledgement.
    pub fn nack(&mut self, queue: Arc<Queue>, tag: u64, requeue: bool) -> Result<(), CoreError> {
        self.push(Op::Nack(queue, tag, requeue))
    }

    /// Number of buffered operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Applies every buffered operation in order. All are attempted; the first error is
    /// returned. The outcomes of the publishes are returned in order.
    pub fn commit(&mut self, vhost: &Vhost) -> Result<Vec<PublishOutcome>, CoreError> {
        let mut first_err = None;
        let mut outcomes = Vec::new();
        for op in self.ops.drain(..) {
            let r = match op {
                Op::Publish(m) => vhost.publish(m).map(|o| outcomes.push(o)),
                Op::Ack(q, tag) => q.ack(&[tag]),
                Op::Nack(q, tag, requeue) => q.nack(&[tag], requeue),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            None => Ok(outcomes),
            Some(e) => Err(e),
        }
    }

    /// Discards every buffered operation.
    pub fn rollback(&mut self) {
        self.ops.clear();
    }
}
