//! Publishing: basic.publish starts a message, its content header and body frames complete
//! it (`channel::Publish` tracks where it is; reply_to=amq.rabbitmq.reply-to is rewritten at
//! the header), then RabbitMQ's checks run in its order (write permission, the exchange exists
//! and is not internal, topic permission, direct reply-to, user_id, expiration and CC/BCC
//! headers), then it is routed through
//! the broker (or held by a transaction), returned if mandatory and unroutable, and confirmed
//! once per loop turn after the store synced (`flush_confirms`).
//!
//! Permission checks on the hot path cost a compare: each channel remembers the last exchange
//! it was allowed to publish to and the grant generation that allowed it.

use super::channel::{Channel, Publish, TxOp};
use super::consume::write_content;
use super::reply_to::ReplyTo;
use super::{Ctx, Session};
use crate::broker::message::{parse_expiration, Message, MessageFlags};
use crate::broker::{Actor, Broker, PublishProps, PublishTarget};
use crate::error::{AmqpError, Show};
use crate::protocol::constants::CLASS_BASIC;
use crate::protocol::frame::FrameKind;
use crate::protocol::method::*;
use crate::protocol::properties::{BasicProperties, ContentHeader};
use crate::protocol::FieldValue;
use crate::protocol::{Frame, Outbox, ReplyCode};

/// RabbitMQ's checks of a complete publish on `channel`, in its order (`rabbit_channel`,
/// basic.publish): immediate, write permission on the exchange, the exchange exists and is not
/// internal, topic write permission on a topic exchange, a direct reply-to without a reply
/// consumer, the user_id property. In a
/// transaction they run at publish time too; routing waits for the commit.
fn check_publish(
    actor: Option<&Actor>,
    channel: &mut Channel,
    broker: &Broker,
    msg: &Message,
    (immediate, reply_to_missing): (bool, bool),
) -> Result<PublishTarget, AmqpError> {
    let claimed_user_id = channel.claimed_user_id.take();
    if immediate {
        return Err(AmqpError::not_implemented("immediate=true"));
    }
    let actor =
        actor.ok_or_else(|| AmqpError::command_invalid("basic.publish before connection.open"))?;
    let grant = actor.grant();
    let exchange = msg.exchange();
    // The empty name (the default exchange, the usual case) is not handed to memcmp: an empty
    // Box's dangling pointer makes glibc's AVX-512 memcmp take a slow masked load.
    let cached = matches!(&channel.publish_allowed,
        Some((generation, x)) if *generation == grant.generation()
            && x.len() == exchange.len()
            && (exchange.is_empty() || **x == *exchange));
    if !cached {
        grant.check_basic_publish(exchange)?;
        channel.publish_allowed = Some((grant.generation(), exchange.into()));
    }
    let target = broker.publish_target(actor, exchange)?;
    if target.is_topic() {
        grant.check_topic_write(exchange, msg.routing_key())?;
    }
    if reply_to_missing {
        return Err(AmqpError::precondition(
            "fast reply consumer does not exist",
        ));
    }
    if let Some(claimed) = claimed_user_id {
        grant.check_user_id(&claimed)?;
    }
    Ok(target)
}

impl Session {
    /// basic.publish: the content header comes next.
    pub(super) fn basic_publish(&mut self, ch: u16, p: BasicPublish<'_>) -> Result<(), AmqpError> {
        if p.exchange.len() > u8::MAX as usize || p.routing_key.len() > u8::MAX as usize {
            return Err(AmqpError::frame_error("name too long"));
        }
        self.publisher = true;
        let channel = self.channel(ch)?;
        channel.builder.start(p.exchange, p.routing_key);
        channel.publish = Publish::AwaitingHeader {
            mandatory: p.mandatory,
            immediate: p.immediate,
        };
        Ok(())
    }

    /// Content header and body frames of a publish.
    pub(super) fn handle_content(
        &mut self,
        out: &mut Outbox,
        f: Frame<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let ch = f.channel;
        let Some(channel) = self.channel_mut(ch) else {
            return Err(AmqpError::channel_error("expected 'channel.open'"));
        };
        if channel.closing {
            return Ok(());
        }
        match (channel.publish, f.kind) {
            (
                Publish::AwaitingHeader {
                    mandatory,
                    immediate,
                },
                FrameKind::Header,
            ) => self.content_header(out, ch, f.payload, (mandatory, immediate), ctx),
            (Publish::AwaitingBody { .. }, FrameKind::Body) => {
                if f.payload.len() as u64 > channel.builder.body_remaining() {
                    return Err(AmqpError::frame_error(
                        "content body exceeds the size in its header",
                    ));
                }
                channel.builder.push_body(f.payload);
                if channel.builder.body_remaining() == 0 {
                    return self.complete_publish(out, ch, ctx);
                }
                Ok(())
            }
            (Publish::Idle, _) => Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            )),
            (Publish::AwaitingHeader { .. }, _) => Err(AmqpError::unexpected_frame(
                "expected content header for class 60, got non content header frame instead",
            )),
            (Publish::AwaitingBody { .. }, _) => Err(AmqpError::unexpected_frame(
                "expected content body, got non content body frame instead",
            )),
        }
    }

    /// The content header of a publish: checked, its properties kept (with reply_to
    /// rewritten for direct reply-to), and the body expected. `flags` are basic.publish's
    /// mandatory and immediate.
    fn content_header(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        payload: &[u8],
        (mandatory, immediate): (bool, bool),
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let max_size = ctx.config.max_message_size;
        let h = ContentHeader::decode(payload)
            .map_err(|_| AmqpError::frame_error("cannot decode content header"))?;
        if h.class_id != CLASS_BASIC {
            return Err(AmqpError::frame_error(format_args!(
                "content header for class {}",
                h.class_id
            )));
        }
        let props = BasicProperties::decode(h.properties_raw)
            .map_err(|_| AmqpError::frame_error("cannot decode content header properties"))?;
        if h.body_size > max_size {
            self.channel(ch)?.publish = Publish::Idle;
            let e = AmqpError::precondition(format_args!(
                "message size {} is larger than configured max size {max_size}",
                h.body_size
            ));
            self.fail_method(out, ch, e, (CLASS_BASIC, 40), ctx);
            return Ok(());
        }
        let reply_to = self.rewrite_reply_to(ch, &props);
        let properties = match &reply_to {
            ReplyTo::Rewritten(raw) => &raw[..],
            ReplyTo::Unchanged | ReplyTo::Missing => h.properties_raw,
        };
        let claimed_user_id = match (props.user_id, self.actor.as_ref()) {
            (Some(claimed), Some(a)) if a.grant().check_user_id(claimed).is_err() => {
                Some(claimed.into())
            }
            _ => None,
        };
        let reserve_max = self.body_reserve_max(ch, h.body_size);
        let channel = self.channel(ch)?;
        channel.claimed_user_id = claimed_user_id;
        let flags = MessageFlags::of(&props);
        channel
            .builder
            .set_header_reserving(properties, h.body_size, flags, reserve_max);
        channel.publish = Publish::AwaitingBody {
            mandatory,
            immediate,
            reply_to_missing: matches!(reply_to, ReplyTo::Missing),
        };
        if h.body_size == 0 {
            return self.complete_publish(out, ch, ctx);
        }
        Ok(())
    }

    /// The last content frame arrived: the message is checked, then routed (or held by a
    /// transaction). Its errors name basic.publish (60/40), as RabbitMQ's do, though a content
    /// frame completed it.
    pub(super) fn complete_publish(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let Some(channel) = self.channels.get_mut(ch) else {
            return Err(AmqpError::channel_error("expected 'channel.open'"));
        };
        let Publish::AwaitingBody {
            mandatory,
            immediate,
            reply_to_missing,
        } = channel.publish
        else {
            return Ok(());
        };
        channel.publish = Publish::Idle;
        let msg = channel.builder.finish();
        self.body_reserve.completed(msg.body_len() as usize);
        let flags = (immediate, reply_to_missing);
        let checked = check_publish(self.actor.as_ref(), channel, ctx.broker, &msg, flags);
        let result = match checked {
            // Checked at publish time so a bad exchange or property fails the publish, not
            // the commit.
            Ok(_) if channel.tx.is_some() => match publish_props(&msg) {
                Ok(_) => {
                    if let Some(ops) = channel.tx.as_mut() {
                        ops.push(TxOp::Publish { msg, mandatory });
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Ok(target) => self.route(out, ch, msg, mandatory, target, ctx),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.fail_method(out, ch, e, (CLASS_BASIC, 40), ctx);
        }
        Ok(())
    }

    /// Routes a complete message that passed its checks; returns it to the publisher if
    /// mandatory and unroutable.
    pub(super) fn route(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        msg: Message,
        mandatory: bool,
        target: PublishTarget,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let raw = msg.properties();
        // Most messages have neither headers nor an expiration: nothing to decode then.
        let props = if BasicProperties::has_headers(raw) || BasicProperties::has_expiration(raw) {
            publish_props(&msg)?
        } else {
            PublishProps::default()
        };
        let routed = ctx.broker.publish(target, &msg, props);
        self.cheap_route = matches!(target, PublishTarget::Default(_));
        self.note_flow_pressure(ctx);
        if routed.queues == 0 && mandatory {
            let r = BasicReturn {
                reply_code: ReplyCode::NoRoute.code(),
                reply_text: b"NO_ROUTE",
                exchange: msg.exchange(),
                routing_key: msg.routing_key(),
            };
            out.method(ch, &Method::BasicReturn(r));
            write_content(out, ch, &msg, self.frame_max);
        }
        let epoch = self.rate_epoch;
        let channel = self.channel(ch)?;
        let counts = channel.stats.at(epoch);
        counts.publish += 1;
        if routed.queues == 0 {
            if mandatory {
                counts.return_unroutable += 1;
            } else {
                counts.drop_unroutable += 1;
            }
        }
        if channel.confirm {
            channel.publish_seq += 1;
            if routed.refused {
                // x-overflow reject-publish: this one is nacked.
                channel.refused.push(channel.publish_seq);
            }
            self.confirms_pending = true;
        }
        Ok(())
    }

    /// Sends publisher acks for everything published in confirm mode so far: one basic.ack
    /// (multiple when it covers more than one message) per channel per loop turn.
    /// If the store failed to sync this turn, the publishes are nacked instead: a confirm
    /// must mean the message is on disk.
    pub fn flush_confirms(&mut self, out: &mut Outbox, stored: bool) {
        if !self.confirms_pending {
            return;
        }
        self.confirms_pending = false;
        for (ch, tag, multiple, refused) in std::mem::take(&mut self.final_confirms) {
            out.method(ch, &confirm(tag, multiple, stored && !refused));
        }
        if self.close_ok_pending {
            self.close_ok_pending = false;
            out.method(0, &Method::ConnectionCloseOk(ConnectionCloseOk));
            return;
        }
        let epoch = self.rate_epoch;
        self.channels.for_each_mut(|id, c| {
            if c.confirm && c.publish_seq > c.confirmed_seq && !c.closing {
                if stored {
                    // Every refused sequence number is above confirmed_seq (take_confirms).
                    let acked = c.publish_seq - c.confirmed_seq - c.refused.len() as u64;
                    c.stats.at(epoch).confirm += acked;
                }
                for (tag, multiple, ack) in c.take_confirms() {
                    out.method(id, &confirm(tag, multiple, stored && ack));
                }
            }
        });
    }

    /// Moves the confirms still owed on every channel aside, for a connection closing now.
    pub(super) fn take_final_confirms(&mut self) {
        let owed = &mut self.final_confirms;
        self.channels.for_each_mut(|id, c| {
            if c.confirm && c.publish_seq > c.confirmed_seq {
                for (tag, multiple, ack) in c.take_confirms() {
                    owed.push((id, tag, multiple, !ack));
                }
            }
        });
    }
}

/// basic.ack, or basic.nack when the message was not taken (refused, or not stored).
fn confirm(delivery_tag: u64, multiple: bool, ack: bool) -> Method<'static> {
    if ack {
        Method::BasicAck(BasicAck {
            delivery_tag,
            multiple,
        })
    } else {
        Method::BasicNack(BasicNack {
            delivery_tag,
            multiple,
            requeue: false,
        })
    }
}

/// What routing needs from a message's properties, checked as RabbitMQ checks a publish
/// after its exchange and user_id checks: a bad expiration and CC or BCC headers that are not
/// arrays are 406. Only messages with headers or an expiration are decoded.
#[inline(never)]
pub(crate) fn publish_props(msg: &Message) -> Result<PublishProps<'_>, AmqpError> {
    let raw = msg.properties();
    if !BasicProperties::has_headers(raw) && !BasicProperties::has_expiration(raw) {
        return Ok(PublishProps::default());
    }
    // Validated when the content header arrived.
    let Ok(p) = BasicProperties::decode(raw) else {
        return Ok(PublishProps::default());
    };
    let mut props = PublishProps {
        headers: p.headers,
        expiration_ms: None,
    };
    if let Some(e) = p.expiration {
        match parse_expiration(e) {
            Ok(ms) => props.expiration_ms = Some(ms),
            Err(bad) => {
                return Err(AmqpError::precondition(format_args!(
                    "invalid expiration '{}': {bad}",
                    Show(e)
                )));
            }
        }
    }
    for key in ["CC", "BCC"] {
        match p.headers.and_then(|h| h.get(key.as_bytes())) {
            None | Some(FieldValue::Array(_)) => {}
            Some(v) => {
                return Err(AmqpError::precondition(format_args!(
                    "invalid message: {{unacceptable_type_in_header,\"{key}\",{}}}",
                    v.type_name()
                )))
            }
        }
    }
    Ok(props)
}
