//! Consuming: basic.qos, consume, cancel and get; ack, nack, reject and recover settling
//! deliveries back into the broker; and deliveries from the broker written to this connection
//! (`can_take`, `deliver`, called through `delivery.rs`).

use super::channel::{ConsumerRef, Publish, Settle, TxOp, Unacked};
use super::{Ctx, Session, State};
use crate::broker::consumer::ConsumerId;
use crate::broker::headers::visible_properties;
use crate::broker::message::Message;
use crate::broker::queue::{QueueId, QueuedMessage};
use crate::broker::{Broker, REPLY_QUEUE};
use crate::error::{AmqpError, Show};
use crate::limits::{WRITE_BUFFER_HIGH_BYTES, WRITE_BUFFER_LOW_BYTES};
use crate::protocol::constants::CLASS_BASIC;
use crate::protocol::method::*;
use crate::protocol::outbox::Body;
use crate::protocol::Outbox;
use log::debug;

impl Session {
    pub(super) fn basic_qos(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        q: BasicQos,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        if q.prefetch_size != 0 {
            return Err(AmqpError::not_implemented(format_args!(
                "prefetch_size!=0 ({})",
                q.prefetch_size
            )));
        }
        let channel = self.channel(ch)?;
        if q.global {
            channel.channel_prefetch = q.prefetch_count;
        } else {
            channel.consumer_prefetch = q.prefetch_count;
        }
        self.wake_consumers(ch, ctx);
        out.method(ch, &Method::BasicQosOk(BasicQosOk));
        Ok(())
    }

    pub(super) fn basic_consume(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        c: BasicConsume<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        if c.queue == REPLY_QUEUE {
            return self.consume_replies(out, ch, c, ctx);
        }
        let queue = self.queue_name(ch, c.queue)?;
        let tag: Box<[u8]> = if c.consumer_tag.is_empty() {
            ctx.broker.new_consumer_tag()
        } else {
            c.consumer_tag.into()
        };
        if self.channel(ch)?.has_consumer_tag(&tag) {
            return Err(AmqpError::not_allowed(format_args!(
                "attempt to reuse consumer tag '{}'",
                Show(&tag)
            )));
        }
        let slot = self.channel(ch)?.next_consumer_slot();
        // Consume-ok goes out before any delivery: deliveries are made after input processing.
        let id = ctx.broker.add_consumer(
            self.actor()?,
            ch,
            slot,
            &queue,
            c.no_ack,
            c.exclusive,
            c.arguments,
        )?;
        self.consumers_changed();
        self.channel(ch)?
            .add_consumer(ConsumerRef { id, slot }, tag.clone());
        if !c.no_wait {
            out.method(
                ch,
                &Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: &tag }),
            );
        }
        Ok(())
    }

    pub(super) fn basic_cancel(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        c: BasicCancel<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        if self.cancel_replies(ch, c.consumer_tag, ctx) {
            // It was the reply consumer (RabbitMQ looks at that one first).
        } else if let Some(id) = self.channel(ch)?.remove_consumer_tag(c.consumer_tag) {
            ctx.broker.cancel_consumer(id);
            self.consumers_changed();
        }
        if !c.no_wait {
            let ok = BasicCancelOk {
                consumer_tag: c.consumer_tag,
            };
            out.method(ch, &Method::BasicCancelOk(ok));
        }
        Ok(())
    }

    pub(super) fn basic_get(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        g: BasicGet<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let queue = self.queue_name(ch, g.queue)?;
        let frame_max = self.frame_max;
        let epoch = ctx.broker.rate_epoch();
        let Some(got) = ctx.broker.get(self.actor()?, &queue, g.no_ack)? else {
            self.channel(ch)?.stats.at(epoch).get_empty += 1;
            out.method(
                ch,
                &Method::BasicGetEmpty(BasicGetEmpty { cluster_id: b"" }),
            );
            return Ok(());
        };
        let msg = got.message.message().clone();
        let redelivered = got.message.redelivered();
        let channel = self.channel(ch)?;
        let counts = channel.stats.at(epoch);
        if g.no_ack {
            counts.get_no_ack += 1;
        } else {
            counts.get += 1;
        }
        counts.redeliver += u64::from(redelivered);
        let tag = channel.record_delivery(got.queue, got.message, g.no_ack);
        let ok = BasicGetOk {
            delivery_tag: tag,
            redelivered,
            exchange: msg.exchange(),
            routing_key: msg.routing_key(),
            message_count: got.message_count,
        };
        out.method(ch, &Method::BasicGetOk(ok));
        write_content(out, ch, &msg, frame_max);
        Ok(())
    }

    /// ack / nack / reject: settles deliveries, returning or dropping them.
    pub(super) fn settle(
        &mut self,
        ch: u16,
        tag: u64,
        multiple: bool,
        how: Settle,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        if let Some(ops) = channel.tx.as_mut() {
            // Validate now, apply at commit (RabbitMQ checks tags at commit; early is kinder).
            ops.push(TxOp::Settle { tag, multiple, how });
            return Ok(());
        }
        let mut settled = std::mem::take(&mut self.settle_scratch);
        let channel = self.channel(ch)?;
        let known = channel.take_settled(tag, multiple, &mut settled);
        let global = channel.channel_prefetch != 0;
        if !known {
            self.settle_scratch = settled;
            return Err(AmqpError::precondition(format_args!(
                "unknown delivery tag {tag}"
            )));
        }
        if how == Settle::Ack {
            channel.stats.at(ctx.broker.rate_epoch()).ack += settled.len() as u64;
        }
        settle_all(settled.drain(..), how, ctx.broker);
        self.settle_scratch = settled;
        if global {
            self.wake_consumers(ch, ctx);
        }
        Ok(())
    }

    pub(super) fn recover(
        &mut self,
        ch: u16,
        requeue: bool,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        requeue_unacked(self.channel(ch)?, ctx.broker);
        self.wake_consumers(ch, ctx);
        Ok(())
    }

    /// Returns a channel's unacked messages to their queues and removes its consumers.
    pub(super) fn release_channel(&mut self, ch: u16, ctx: &mut Ctx<'_>) {
        let Some(channel) = self.channel_mut(ch) else {
            return;
        };
        channel.publish = Publish::Idle;
        let consumers: Vec<ConsumerId> = channel.take_consumers().collect();
        // Requeue before removing consumers: an auto-delete queue may go with its last one.
        // The consumers are going, so none of them is woken.
        requeue_unacked(channel, ctx.broker);
        for id in consumers {
            ctx.broker.cancel_consumer(id);
        }
        self.consumers_changed();
        self.release_replies(ch, ctx);
    }

    /// The channel's consumers may take deliveries again (credit returned, flow resumed).
    pub(super) fn wake_consumers(&mut self, ch: u16, ctx: &mut Ctx<'_>) {
        let Some(channel) = self.channels.get(ch) else {
            return;
        };
        for id in channel.consumer_ids() {
            ctx.broker.wake_consumer(id);
        }
    }

    /// Whether `consumer` on channel `ch` may take a delivery now: the connection is open and
    /// its output below the high-water mark, and the channel gives it credit.
    pub(crate) fn can_take(&self, ch: u16, consumer: ConsumerRef) -> bool {
        self.state == State::Open
            && !self.throttled
            && self.channels.get(ch).is_some_and(|c| c.can_take(consumer))
    }

    /// Writes basic.deliver with the message and records it as unacked unless no_ack. `Err`
    /// gives the message back if the channel or consumer is gone.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn deliver(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        consumer: ConsumerRef,
        no_ack: bool,
        queue: QueueId,
        m: QueuedMessage,
        epoch: u64,
    ) -> Result<(), QueuedMessage> {
        let Some(channel) = self.channels.get_mut(ch) else {
            return Err(m);
        };
        let msg = m.message().clone();
        let redelivered = m.redelivered();
        let counts = channel.stats.at(epoch);
        if no_ack {
            counts.deliver_no_ack += 1;
        } else {
            counts.deliver += 1;
        }
        counts.redeliver += u64::from(redelivered);
        let (tag, consumer_tag) = channel.record_consumer_delivery(consumer, queue, m, no_ack)?;
        let d = BasicDeliver {
            consumer_tag,
            delivery_tag: tag,
            redelivered,
            exchange: msg.exchange(),
            routing_key: msg.routing_key(),
        };
        out.method(ch, &Method::BasicDeliver(d));
        write_content(out, ch, &msg, self.frame_max);
        if out.pending() >= WRITE_BUFFER_HIGH_BYTES {
            self.throttled = true;
        }
        Ok(())
    }

    /// After a write: once output drained below the low-water mark, this connection's
    /// consumers may take deliveries again.
    pub fn after_write(&mut self, out: &Outbox, broker: &mut Broker) {
        if !self.throttled || out.pending() >= WRITE_BUFFER_LOW_BYTES {
            return;
        }
        self.throttled = false;
        for (_, c) in self.channels.iter() {
            for id in c.consumer_ids() {
                broker.wake_consumer(id);
            }
        }
    }

    /// The consumer's queue was deleted elsewhere: forget it and tell the client if it can hear.
    pub fn consumer_cancelled(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        consumer: ConsumerId,
        slot: u32,
    ) {
        let notify = self.caps.consumer_cancel_notify;
        self.consumers_changed();
        let Some(channel) = self.channel_mut(ch) else {
            return;
        };
        let Some(tag) = channel.remove_consumer(ConsumerRef { id: consumer, slot }) else {
            return;
        };
        if channel.closing {
            return;
        }
        debug!(
            "[conn {} ch {}] consumer {} cancelled by queue deletion",
            self.id.0,
            ch,
            Show(&tag)
        );
        if notify {
            out.method(
                ch,
                &Method::BasicCancel(BasicCancel {
                    consumer_tag: &tag,
                    no_wait: true,
                }),
            );
        }
    }
}

/// Requeues every unacked delivery of a channel (channel close, basic.recover): the channel's
/// list goes to the broker whole, newest first (`Broker::requeue_all` bounds the work per
/// turn). Its consumers are not woken: the caller does that if they stay.
fn requeue_unacked(channel: &mut super::channel::Channel, broker: &mut Broker) {
    let unacked = channel.take_unacked_list();
    broker.requeue_all(Box::new(
        unacked
            .into_iter()
            .rev()
            .filter_map(|u| Some((u.queue, u.msg?))),
    ));
}

/// Settles deliveries taken in tag order; requeues go to the broker together
/// (`Broker::requeue_all`), which bounds the work of a large batch per turn.
pub(super) fn settle_all(list: impl Iterator<Item = Unacked>, how: Settle, broker: &mut Broker) {
    if how != Settle::Requeue {
        list.for_each(|u| settle_one(u, how, broker));
        return;
    }
    let mut back = Vec::new();
    for u in list {
        if let Some(c) = u.consumer {
            broker.wake_consumer(c.id);
        }
        if let Some(m) = u.msg {
            back.push((u.queue, m));
        }
    }
    broker.requeue_all(Box::new(back.into_iter().rev()));
}

/// Applies one settlement to the broker: ack drops the message, requeue returns it; either
/// way its consumer (if still subscribed) may take another.
fn settle_one(u: Unacked, how: Settle, broker: &mut Broker) {
    if let Some(c) = u.consumer {
        broker.wake_consumer(c.id);
    }
    let Some(m) = u.msg else { return };
    match how {
        Settle::Requeue => broker.requeue(u.queue, m),
        Settle::Ack => broker.ack(u.queue, m),
        Settle::Discard => broker.reject(u.queue, m),
    }
}

/// Content header and body frames of a message, properties byte for byte as published (but
/// for a BCC header, which no consumer sees).
#[inline(always)]
pub(super) fn write_content(out: &mut Outbox, ch: u16, msg: &Message, frame_max: u32) {
    let (shared, start) = msg.body_in_shared();
    let body = Body { shared, start };
    let properties = visible_properties(msg);
    out.content(ch, CLASS_BASIC, &properties, body, frame_max);
}
