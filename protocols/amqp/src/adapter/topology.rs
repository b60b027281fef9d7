//! `exchange.*` and `queue.*` methods -> core topology operations, with RabbitMQ's checks
//! that the core does not make itself (the default exchange, `amq.*` deletion, idempotent
//! deletes, the direct reply-to pseudo-queue).

use amq_protocol::protocol::{exchange, queue};
use amq_protocol::types::FieldTable as AmqpTable;
use bytestring::ByteString;
use ferromq_core::{CoreError, ExchangeKind, ExchangeOptions, QueueOptions};

use super::properties::table;
use super::{Link, REPLY_TO};
use crate::error::{code, AmqpError};

fn default_exchange_refused() -> AmqpError {
    AmqpError::new(
        code::ACCESS_REFUSED,
        "operation not permitted on the default exchange",
    )
}

impl Link {
    /// `exchange.declare`.
    pub(crate) fn exchange_declare(&self, m: &exchange::Declare) -> Result<(), AmqpError> {
        let name = m.exchange.as_str();
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        let vhost = self.conn.vhost();
        if m.passive {
            vhost.declare_exchange(name, ExchangeKind::Direct, ExchangeOptions::default(), true)?;
            return Ok(());
        }
        let kind = ExchangeKind::parse(m.kind.as_str())?;
        let options = ExchangeOptions {
            durable: m.durable,
            auto_delete: m.auto_delete,
            internal: m.internal,
            arguments: table(&m.arguments),
        };
        vhost.declare_exchange(name, kind, options, false)?;
        Ok(())
    }

    /// `exchange.delete`; deleting an exchange that does not exist succeeds, as in RabbitMQ.
    pub(crate) fn exchange_delete(&self, m: &exchange::Delete) -> Result<(), AmqpError> {
        let name = m.exchange.as_str();
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if name.starts_with("amq.") {
            return Err(AmqpError::new(
                code::ACCESS_REFUSED,
                format!(
                    "deletion of system exchange '{name}' in vhost '{}' not allowed",
                    self.conn.vhost().name()
                ),
            ));
        }
        match self.conn.vhost().delete_exchange(name, m.if_unused) {
            Ok(()) | Err(CoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `exchange.bind` (`bind` true) or `exchange.unbind`.
    pub(crate) fn exchange_binding(
        &self,
        bind: bool,
        destination: &str,
        source: &str,
        key: &str,
        arguments: &AmqpTable,
    ) -> Result<(), AmqpError> {
        let args = table(arguments);
        let vhost = self.conn.vhost();
        if bind {
            vhost.bind_exchange(destination, source, key, args)?;
        } else {
            vhost.unbind_exchange(destination, source, key, &args)?;
        }
        Ok(())
    }

    /// `queue.declare` with the name already resolved; returns the queue's name (generated
    /// for an empty one), ready message count and consumer count.
    pub(crate) fn queue_declare(
        &self,
        m: &queue::Declare,
    ) -> Result<(ByteString, u32, u32), AmqpError> {
        let name = m.queue.as_str();
        if name == REPLY_TO {
            // RabbitMQ: declaring the pseudo-queue always succeeds, as if passive.
            return Ok((REPLY_TO.into(), 0, 1));
        }
        let options = QueueOptions {
            durable: m.durable,
            exclusive: m.exclusive,
            auto_delete: m.auto_delete,
            arguments: table(&m.arguments),
        };
        let (q, stats) = self.conn.declare_queue(name, options, m.passive)?;
        Ok((q.name().clone(), clamp_u32(stats.messages), stats.consumers))
    }

    /// `queue.bind` (`bind` true) or `queue.unbind`, names already resolved.
    pub(crate) fn queue_binding(
        &self,
        bind: bool,
        queue: &str,
        exchange: &str,
        key: &str,
        arguments: &AmqpTable,
    ) -> Result<(), AmqpError> {
        let args = table(arguments);
        let (vhost, owner) = (self.conn.vhost(), self.conn.id());
        if bind {
            vhost.bind_queue(queue, exchange, key, args, owner)?;
        } else {
            vhost.unbind_queue(queue, exchange, key, &args, owner)?;
        }
        Ok(())
    }

    /// `queue.purge`: the number of messages removed.
    pub(crate) fn queue_purge(&self, queue: &str) -> Result<u32, AmqpError> {
        Ok(clamp_u32(
            self.conn.vhost().purge_queue(queue, self.conn.id())?,
        ))
    }

    /// `queue.delete`: the number of ready messages it held. A queue that does not exist
    /// is deleted already, as RabbitMQ answers.
    pub(crate) fn queue_delete(
        &self,
        queue: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, AmqpError> {
        match self
            .conn
            .vhost()
            .delete_queue(queue, if_unused, if_empty, self.conn.id())
        {
            Ok(n) => Ok(clamp_u32(n)),
            Err(CoreError::NotFound(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

fn clamp_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
