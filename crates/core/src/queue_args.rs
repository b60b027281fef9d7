//! Queue arguments (`x-message-ttl` and friends), parsed once at declaration.

use bytestring::ByteString;

use std::sync::Arc;

use crate::error::CoreError;
use crate::message::{FieldTable, FieldValue};
use crate::selector::{Selector, SelectorLimits};

/// A queue's `x-selector`: only messages it selects are routed to the queue. Compared by
/// text for redeclaration equivalence.
#[derive(Clone, Debug)]
pub struct QueueSelector(pub Arc<Selector>);

impl PartialEq for QueueSelector {
    fn eq(&self, other: &Self) -> bool {
        self.0.text() == other.0.text()
    }
}

impl Eq for QueueSelector {}

/// What a full queue does with one more message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Drop (dead-letter) the oldest ready messages.
    #[default]
    DropHead,
    /// Refuse the new message (publisher confirm nack).
    RejectPublish,
    /// Refuse the new message and dead-letter it.
    RejectPublishDlx,
}

/// Parsed queue arguments; equality decides whether a redeclaration is equivalent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct QueueArgs {
    pub message_ttl_ms: Option<u64>,
    pub expires_ms: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<ByteString>,
    pub dead_letter_routing_key: Option<ByteString>,
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    pub delivery_limit: Option<u32>,
    /// `x-selector` (ferromq's own argument, used for JMS topic subscriptions with a
    /// selector): messages it does not select are not routed to this queue.
    pub selector: Option<QueueSelector>,
}

fn non_negative(table: &FieldTable, name: &str) -> Result<Option<u64>, CoreError> {
    match table.get(name) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Ok(Some(n as u64)),
            _ => Err(CoreError::PreconditionFailed(format!(
                "invalid arg '{name}' for queue: {v:?}"
            ))),
        },
    }
}

fn string(table: &FieldTable, name: &str) -> Result<Option<ByteString>, CoreError> {
    match table.get(name) {
        None => Ok(None),
        Some(FieldValue::Str(s)) => Ok(Some(s.clone())),
        Some(v) => Err(CoreError::PreconditionFailed(format!(
            "invalid arg '{name}' for queue: {v:?}"
        ))),
    }
}

impl QueueArgs {
    /// Parses the arguments RabbitMQ defines; unknown `x-` arguments are ignored as RabbitMQ
    /// ignores them.
    pub fn parse(table: &FieldTable) -> Result<Self, CoreError> {
        Self::parse_with(table, &SelectorLimits::default())
    }

    /// [`QueueArgs::parse`] with the bounds for an `x-selector`.
    pub fn parse_with(table: &FieldTable, limits: &SelectorLimits) -> Result<Self, CoreError> {
        let selector = match string(table, "x-selector")? {
            None => None,
            Some(text) => Selector::parse_optional(Some(&text), limits)
                .map_err(|e| {
                    CoreError::PreconditionFailed(format!("invalid arg 'x-selector': {e}"))
                })?
                .map(|s| QueueSelector(Arc::new(s))),
        };
        let overflow = match string(table, "x-overflow")?.as_deref() {
            None | Some("drop-head") => Overflow::DropHead,
            Some("reject-publish") => Overflow::RejectPublish,
            Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
            Some(other) => {
                return Err(CoreError::PreconditionFailed(format!(
                    "invalid arg 'x-overflow' for queue: {other}"
                )))
            }
        };
        let expires_ms = non_negative(table, "x-expires")?;
        if expires_ms == Some(0) {
            return Err(CoreError::PreconditionFailed(
                "invalid arg 'x-expires': must be positive".into(),
            ));
        }
        let max_priority = match non_negative(table, "x-max-priority")? {
            None => None,
            Some(p) if p <= 255 => Some(p as u8),
            Some(p) => {
                return Err(CoreError::PreconditionFailed(format!(
                    "invalid arg 'x-max-priority': {p} > 255"
                )))
            }
        };
        let single_active_consumer = match table.get("x-single-active-consumer") {
            None => false,
            Some(FieldValue::Bool(b)) => *b,
            Some(v) => {
                return Err(CoreError::PreconditionFailed(format!(
                    "invalid arg 'x-single-active-consumer' for queue: {v:?}"
                )))
            }
        };
        let delivery_limit =
            non_negative(table, "x-delivery-limit")?.map(|n| n.min(u32::MAX as u64) as u32);
        Ok(Self {
            message_ttl_ms: non_negative(table, "x-message-ttl")?,
            expires_ms,
            max_length: non_negative(table, "x-max-length")?,
            max_length_bytes: non_negative(table, "x-max-length-bytes")?,
            overflow,
            dead_letter_exchange: string(table, "x-dead-letter-exchange")?,
            dead_letter_routing_key: string(table, "x-dead-letter-routing-key")?,
            max_priority,
            single_active_consumer,
            delivery_limit,
            selector,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let mut t = FieldTable::new();
        t.insert("x-message-ttl", FieldValue::I32(500));
        t.insert("x-max-length", FieldValue::I64(3));
        t.insert("x-overflow", FieldValue::Str("reject-publish".into()));
        t.insert("x-dead-letter-exchange", FieldValue::Str("dlx".into()));
        t.insert("x-max-priority", FieldValue::U8(9));
        let a = QueueArgs::parse(&t).unwrap();
        assert_eq!(a.message_ttl_ms, Some(500));
        assert_eq!(a.max_length, Some(3));
        assert_eq!(a.overflow, Overflow::RejectPublish);
        assert_eq!(a.max_priority, Some(9));
        t.insert("x-message-ttl", FieldValue::I32(-1));
        assert!(QueueArgs::parse(&t).is_err());
        let mut t = FieldTable::new();
        t.insert("x-overflow", FieldValue::Str("explode".into()));
        assert!(QueueArgs::parse(&t).is_err());
    }
}
