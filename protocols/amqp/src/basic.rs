//! The `basic.*` methods of a channel: consumers, deliveries, publishing, `basic.get` and
//! settlement. (Content assembly and the other classes are in `channel.rs`.)

use amq_protocol::protocol::{basic, AMQPClass};
use bytestring::ByteString;
use smallvec::SmallVec;

use crate::adapter::{
    self, ConsumeRequest, Delivery, Link, Settle, Unacked, REPLY_TO, REPLY_TO_PREFIX,
};
use crate::channel::{Body, Channel, Consumer, Ctx, Incoming, Mode, Retired};
use crate::codec::short;
use crate::error::{code, AmqpError};

fn unknown_tag(tag: u64) -> AmqpError {
    AmqpError::precondition(format!("unknown delivery tag {tag}"))
}

impl Channel {
    pub(crate) fn on_basic(
        &mut self,
        m: basic::AMQPMethod,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let ch = self.id;
        match m {
            basic::AMQPMethod::Publish(p) => {
                if p.immediate {
                    return Err(AmqpError::new(code::NOT_IMPLEMENTED, "immediate=true"));
                }
                self.incoming = Some(Incoming {
                    // Moved, not copied: `ShortString` holds a `String`.
                    exchange: String::from(p.exchange).into(),
                    routing_key: String::from(p.routing_key).into(),
                    mandatory: p.mandatory,
                    header: None,
                    body: Body::Empty,
                });
                Ok(())
            }
            basic::AMQPMethod::Ack(a) => self.settle(a.delivery_tag, a.multiple, Settle::Ack, ctx),
            basic::AMQPMethod::Nack(n) => {
                let how = if n.requeue {
                    Settle::Requeue
                } else {
                    Settle::Reject
                };
                self.settle(n.delivery_tag, n.multiple, how, ctx)
            }
            basic::AMQPMethod::Reject(r) => {
                let how = if r.requeue {
                    Settle::Requeue
                } else {
                    Settle::Reject
                };
                self.settle(r.delivery_tag, false, how, ctx)
            }
            basic::AMQPMethod::Qos(q) => {
                if q.global {
                    self.global_gate = (q.prefetch_count > 0).then(|| {
                        adapter::gate(u32::from(q.prefetch_count).min(ctx.link.unacked_max()))
                    });
                } else {
                    self.prefetch = q.prefetch_count;
                }
                ctx.send(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::Consume(c) => self.consume(c, ctx),
            basic::AMQPMethod::Cancel(c) => {
                let tag: ByteString = c.consumer_tag.as_str().into();
                if let Some(id) = self.tags.get(&tag).copied() {
                    self.retire(id, ctx);
                }
                // Cancelling an unknown tag is not an error (the spec says to ignore it).
                if !c.nowait {
                    ctx.send(
                        ch,
                        AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                            consumer_tag: c.consumer_tag,
                        })),
                    );
                }
                Ok(())
            }
            basic::AMQPMethod::Get(g) => self.get(g, ctx),
            basic::AMQPMethod::Recover(r) => {
                self.recover(r.requeue, ctx)?;
                ctx.send(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                Ok(())
            }
            basic::AMQPMethod::RecoverAsync(r) => self.recover(r.requeue, ctx),
            _ => Err(AmqpError::command_invalid("unimplemented method")),
        }
    }

    fn consume(&mut self, c: basic::Consume, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let max = ctx.limits.consumers_per_channel_max;
        if self.consumers.len() >= max {
            return Err(AmqpError::new(
                code::NOT_ALLOWED,
                format!("reached maximum ({max}) of consumers per channel"),
            ));
        }
        let tag: ByteString = match c.consumer_tag.as_str() {
            "" => Link::consumer_tag(),
            t => t.into(),
        };
        if self.tags.contains_key(&tag) {
            return Err(AmqpError::new(
                code::NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        let reply = c.queue.as_str() == REPLY_TO;
        let queue: ByteString = if reply {
            if !c.no_ack {
                return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
            }
            if self.reply.is_some() {
                return Err(AmqpError::precondition("reply consumer already set"));
            }
            ctx.link.reply_queue()?
        } else {
            self.queue_name(c.queue.as_str())?.into()
        };
        let gate = if c.no_ack {
            adapter::gate(ctx.link.unacked_max())
        } else if self.prefetch > 0 {
            adapter::gate(u32::from(self.prefetch).min(ctx.link.unacked_max()))
        } else if let Some(g) = &self.global_gate {
            g.clone()
        } else {
            adapter::gate(ctx.link.unacked_max())
        };
        let handle = ctx.link.consume(
            &queue,
            ConsumeRequest {
                tag: tag.clone(),
                no_ack: c.no_ack,
                exclusive: c.exclusive || reply,
                arguments: &c.arguments,
                gate,
            },
        )?;
        let id = handle.id();
        // consume-ok goes out before any delivery: deliveries arrive through the
        // connection's event channel, which is read only after this frame is handled.
        if !c.nowait {
            ctx.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: short(&tag),
                })),
            );
        }
        if reply {
            self.reply = Some((id, queue));
        }
        ctx.consumers.insert(id, self.id);
        self.tags.insert(tag.clone(), id);
        self.consumers.insert(
            id,
            Consumer {
                tag,
                handle,
                no_ack: c.no_ack,
                reply,
                outstanding: 0,
            },
        );
        Ok(())
    }

    /// Stops a consumer (client cancel or queue deletion). Its unsettled deliveries stay
    /// ackable: the handle is kept until they are settled.
    pub(crate) fn retire(&mut self, id: u64, ctx: &mut Ctx<'_>) -> Option<ByteString> {
        let c = self.consumers.remove(&id)?;
        self.tags.remove(&c.tag);
        if self.reply.as_ref().is_some_and(|(r, _)| *r == id) {
            self.reply = None;
        }
        if c.outstanding == 0 {
            ctx.consumers.remove(&id);
        } else {
            c.handle.cancel();
            self.retired.insert(
                id,
                Retired {
                    _handle: c.handle,
                    outstanding: c.outstanding,
                },
            );
        }
        Some(c.tag)
    }

    /// The broker cancelled a consumer (its queue was deleted).
    pub(crate) fn cancelled(&mut self, id: u64, ctx: &mut Ctx<'_>) {
        if let Some(tag) = self.retire(id, ctx) {
            if ctx.cancel_notify {
                ctx.send(
                    self.id,
                    AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                        consumer_tag: short(&tag),
                        nowait: true,
                    })),
                );
            }
        }
    }

    /// A delivery for one of this channel's consumers.
    pub(crate) fn deliver(&mut self, d: Delivery, ctx: &mut Ctx<'_>) {
        let Delivery {
            queue,
            consumer_id,
            tag,
            message,
            redelivered,
            ..
        } = d;
        let Some(c) = self.consumers.get_mut(&consumer_id) else {
            // Delivered to a consumer cancelled meanwhile: give it back to the queue.
            if self.retired.contains_key(&consumer_id) {
                let _ = queue.nack(&[tag], true);
            }
            return;
        };
        let dtag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        if c.no_ack {
            c.handle.written(1);
        } else {
            c.outstanding += 1;
            self.unacked.insert(
                dtag,
                Unacked {
                    queue,
                    tag,
                    consumer: consumer_id,
                },
            );
        }
        let prefix = if c.reply { REPLY_TO_PREFIX } else { "" };
        adapter::wire::deliver(
            ctx.out,
            self.id,
            ctx.frame_max,
            &c.tag,
            dtag,
            redelivered,
            prefix,
            &message,
        );
    }

    fn get(&mut self, g: basic::Get, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let queue = self.queue_name(g.queue.as_str())?;
        match ctx.link.get(queue, g.no_ack)? {
            None => ctx.send(
                self.id,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            ),
            Some((d, left)) => {
                let dtag = self.next_delivery_tag;
                self.next_delivery_tag += 1;
                adapter::wire::get_ok(
                    ctx.out,
                    self.id,
                    ctx.frame_max,
                    dtag,
                    d.redelivered,
                    left,
                    &d.message,
                );
                if !g.no_ack {
                    self.unacked.insert(
                        dtag,
                        Unacked {
                            queue: d.queue,
                            tag: d.tag,
                            consumer: 0,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// `basic.ack` / `nack` / `reject`: settles one delivery or, with `multiple`, every
    /// delivery up to `dtag` (all of them for 0).
    fn settle(
        &mut self,
        dtag: u64,
        multiple: bool,
        how: Settle,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let taken: SmallVec<[(u64, Unacked); 1]> = if multiple && dtag == 0 {
            std::mem::take(&mut self.unacked).into_iter().collect()
        } else if multiple {
            if !self.unacked.contains_key(&dtag) {
                return Err(unknown_tag(dtag));
            }
            let rest = match dtag.checked_add(1) {
                Some(next) => self.unacked.split_off(&next),
                None => Default::default(),
            };
            std::mem::replace(&mut self.unacked, rest)
                .into_iter()
                .collect()
        } else {
            let u = self
                .unacked
                .remove(&dtag)
                .ok_or_else(|| unknown_tag(dtag))?;
            smallvec::smallvec![(dtag, u)]
        };
        if let Mode::Tx(t) = &mut self.mode {
            for (dtag, u) in taken {
                Link::settle_in(&mut t.txn, &u, how)?;
                t.settled.push((dtag, u));
            }
            return Ok(());
        }
        adapter::settle(taken.iter().map(|(_, u)| u), how);
        for (_, u) in &taken {
            self.settled_one(u.consumer, ctx);
        }
        Ok(())
    }

    /// `basic.recover`: every unacked delivery goes back to its queue (RabbitMQ does not
    /// implement redelivery to the same consumer, `requeue=false`).
    fn recover(&mut self, requeue: bool, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        if !requeue {
            return Err(AmqpError::new(code::NOT_IMPLEMENTED, "requeue=false"));
        }
        let all = std::mem::take(&mut self.unacked);
        adapter::settle(all.values(), Settle::Requeue);
        for u in all.values() {
            self.settled_one(u.consumer, ctx);
        }
        Ok(())
    }

    /// A complete message: route it (or buffer it in the transaction), return it if it
    /// was mandatory and unroutable, and record its confirm.
    pub(crate) fn publish(&mut self, inc: Incoming, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let (_, props) = inc.header.expect("a complete message has its header");
        let key = inc.routing_key.clone();
        let mut msg = adapter::message_from_publish(
            inc.exchange,
            inc.routing_key,
            &props,
            inc.body.into_bytes(),
            ctx.link.user(),
        )?;
        if msg.properties.reply_to.as_deref() == Some(REPLY_TO) {
            let Some((_, queue)) = &self.reply else {
                return Err(AmqpError::precondition(
                    "fast reply consumer does not exist",
                ));
            };
            msg.properties.reply_to = Some(format!("{REPLY_TO_PREFIX}{queue}").into());
        }
        match &mut self.mode {
            Mode::Tx(t) => {
                let m = ctx.link.publish_in(&mut t.txn, msg)?;
                t.returns.push(inc.mandatory.then_some((key, m)));
            }
            Mode::Plain => {
                let (outcome, m) = ctx.link.publish(msg)?;
                if inc.mandatory && outcome.unroutable() {
                    adapter::wire::returned(ctx.out, self.id, ctx.frame_max, &key, &m);
                }
            }
            Mode::Confirm(c) => {
                let seq = c.publish();
                let (outcome, m) = ctx.link.publish(msg)?;
                if inc.mandatory && outcome.unroutable() {
                    adapter::wire::returned(ctx.out, self.id, ctx.frame_max, &key, &m);
                }
                // RabbitMQ nacks a publish that any queue refused (`x-overflow:
                // reject-publish`); an unroutable one is acked (after its return).
                c.resolve(seq, outcome.rejected == 0, outcome.ticket);
                if c.len() >= ctx.limits.unconfirmed_max {
                    let link = ctx.link;
                    c.flush(ctx.out, ctx.scratch, self.id, &|t| link.synced(t));
                }
            }
        }
        Ok(())
    }
}
