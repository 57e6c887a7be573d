//! Direct reply-to on a channel: basic.consume and basic.cancel of amq.rabbitmq.reply-to
//! (no-ack only, one per channel), the rewrite of reply_to=amq.rabbitmq.reply-to in this
//! channel's publishes to the channel's reply name, queue.declare of the pseudo-queue and of
//! reply names, and replies written to the channel. The names and routing are the broker's
//! (`broker/reply_to.rs`).

use super::channel::ChannelReply;
use super::consume::write_content;
use super::{Ctx, Session, State};
use crate::broker::message::Message;
use crate::broker::{ReplyConsumerId, REPLY_QUEUE};
use crate::error::{AmqpError, Show};
use crate::limits::WRITE_BUFFER_HIGH_BYTES;
use crate::protocol::method::*;
use crate::protocol::properties::BasicProperties;
use crate::protocol::wire::Writer;
use crate::protocol::Outbox;

/// What a content header's properties become on this channel.
pub(super) enum ReplyTo {
    /// reply_to is not amq.rabbitmq.reply-to: the properties stay as published.
    Unchanged,
    /// reply_to rewritten to the channel's reply name: these are the new properties.
    Rewritten(Vec<u8>),
    /// reply_to is amq.rabbitmq.reply-to but the channel has no reply consumer.
    Missing,
}

impl Session {
    /// basic.consume of amq.rabbitmq.reply-to, with RabbitMQ's checks in its order: the tag
    /// must not be one of the channel's consumers', the consumer must be no-ack, and the
    /// channel must not have one already.
    pub(super) fn consume_replies(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        c: BasicConsume<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        if channel.has_consumer_tag(c.consumer_tag) {
            return Err(AmqpError::not_allowed(format_args!(
                "attempt to reuse consumer tag '{}'",
                Show(c.consumer_tag)
            )));
        }
        if !c.no_ack {
            return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
        }
        if channel.reply.is_some() {
            return Err(AmqpError::precondition("reply consumer already set"));
        }
        let tag: Box<[u8]> = if c.consumer_tag.is_empty() {
            ctx.broker.new_consumer_tag()
        } else {
            c.consumer_tag.into()
        };
        let (id, name) = ctx.broker.add_reply_consumer(self.id, ch);
        let channel = self.channel(ch)?;
        channel.reply = Some(ChannelReply {
            id,
            tag: tag.clone(),
            name,
        });
        if !c.no_wait {
            out.method(
                ch,
                &Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: &tag }),
            );
        }
        Ok(())
    }

    /// basic.cancel of the reply consumer (RabbitMQ looks at it before the other consumers);
    /// false if `tag` is not the channel's reply consumer.
    pub(super) fn cancel_replies(&mut self, ch: u16, tag: &[u8], ctx: &mut Ctx<'_>) -> bool {
        let Some(channel) = self.channel_mut(ch) else {
            return false;
        };
        if channel.reply.as_ref().is_none_or(|r| &*r.tag != tag) {
            return false;
        }
        if let Some(r) = channel.reply.take() {
            ctx.broker.cancel_reply_consumer(r.id);
        }
        true
    }

    /// The channel is going: its reply name routes nowhere from now on.
    pub(super) fn release_replies(&mut self, ch: u16, ctx: &mut Ctx<'_>) {
        if let Some(r) = self.channel_mut(ch).and_then(|c| c.reply.take()) {
            ctx.broker.cancel_reply_consumer(r.id);
        }
    }

    /// A content header's properties: reply_to=amq.rabbitmq.reply-to becomes the channel's
    /// reply name (RabbitMQ re-encodes the properties too).
    pub(super) fn rewrite_reply_to(&mut self, ch: u16, props: &BasicProperties<'_>) -> ReplyTo {
        if props.reply_to != Some(REPLY_QUEUE) {
            return ReplyTo::Unchanged;
        }
        let Some(reply) = self.channel_mut(ch).and_then(|c| c.reply.as_ref()) else {
            return ReplyTo::Missing;
        };
        let mut rewritten = *props;
        rewritten.reply_to = Some(&reply.name);
        let mut raw = Vec::new();
        rewritten.encode(&mut Writer::new(&mut raw));
        ReplyTo::Rewritten(raw)
    }

    /// queue.declare of a name starting with amq.rabbitmq.reply-to (passive or not), answered
    /// as RabbitMQ does: 0 messages and 1 consumer while the name leads somewhere, else 404.
    pub(super) fn declare_reply_queue(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        d: QueueDeclare<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        ctx.broker.declare_reply_queue(self.actor()?, d.queue)?;
        self.channel(ch)?.last_queue = Some(d.queue.into());
        if !d.no_wait {
            let reply = QueueDeclareOk {
                queue: d.queue,
                message_count: 0,
                consumer_count: 1,
            };
            out.method(ch, &Method::QueueDeclareOk(reply));
        }
        Ok(())
    }

    /// Writes a direct reply to the channel's reply consumer, if it is still the one the reply
    /// was addressed to. Replies bypass prefetch and flow, as in RabbitMQ; the connection's
    /// output limits still apply.
    pub(crate) fn deliver_reply(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        consumer: ReplyConsumerId,
        msg: &Message,
    ) {
        if self.state != State::Open {
            return;
        }
        let Some(channel) = self.channels.get(ch) else {
            return;
        };
        let Some(reply) = channel.reply.as_ref().filter(|r| r.id == consumer) else {
            return;
        };
        if channel.closing {
            return;
        }
        let d = BasicDeliver {
            consumer_tag: &reply.tag,
            delivery_tag: channel.next_delivery_tag(),
            redelivered: false,
            exchange: msg.exchange(),
            routing_key: msg.routing_key(),
        };
        out.method(ch, &Method::BasicDeliver(d));
        write_content(out, ch, msg, self.frame_max);
        if out.pending() >= WRITE_BUFFER_HIGH_BYTES {
            self.throttled = true;
        }
    }
}
