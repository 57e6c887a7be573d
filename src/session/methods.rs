//! Channel-level methods: channel open/close/flow, exchange, queue, basic, confirm and tx,
//! and publish assembly from content frames. The one `match` over channel methods.

use super::channel::{Channel, Publish, Settle, TxOp, Unacked};
use super::{Ctx, Session, State};
use crate::broker::consumer::ConsumerId;
use crate::broker::message::Message;
use crate::broker::queue::{QueueId, QueuedMessage};
use crate::broker::{Broker, ExchangeFlags, QueueFlags};
use crate::error::{AmqpError, Show};
use crate::limits::{WRITE_BUFFER_HIGH_BYTES, WRITE_BUFFER_LOW_BYTES};
use crate::protocol::constants::CLASS_BASIC;
use crate::protocol::frame::FrameKind;
use crate::protocol::method::*;
use crate::protocol::outbox::Body;
use crate::protocol::properties::{BasicProperties, ContentHeader};
use crate::protocol::{Frame, Outbox, ReplyCode};
use log::debug;

impl Session {
    pub(super) fn handle_channel_method(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        m: Method<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        if self.state != State::Open {
            return Err(AmqpError::command_invalid(format_args!(
                "{} before connection.open",
                m.name()
            )));
        }
        let exists = self.channels.contains(ch);
        if let Method::ChannelOpen(_) = m {
            if exists {
                return Err(AmqpError::channel_error("second 'channel.open' seen"));
            }
            let open = self.channels.len();
            if open >= self.channel_max as usize {
                // RabbitMQ limits how many channels are open, not their numbers, and names
                // no method in this close.
                let e = AmqpError::not_allowed(format_args!(
                    "number of channels opened ({open}) has reached the negotiated channel_max ({})",
                    self.channel_max
                ));
                self.fail_method(out, ch, e, (0, 0), ctx);
                return Ok(());
            }
            self.channels.insert(ch, Channel::default());
            out.method(ch, Method::ChannelOpenOk(ChannelOpenOk { channel_id: b"" }));
            return Ok(());
        }
        if !exists {
            return Err(AmqpError::channel_error("expected 'channel.open'"));
        }
        let Some(channel) = self.channel_mut(ch) else {
            return Err(AmqpError::channel_error("expected 'channel.open'"));
        };
        if channel.closing {
            // After our channel.close only close-ok (or a crossing close) matters.
            match m {
                Method::ChannelCloseOk(_) => {
                    self.channels.remove(ch);
                }
                Method::ChannelClose(_) => out.method(ch, Method::ChannelCloseOk(ChannelCloseOk)),
                _ => {}
            }
            return Ok(());
        }
        if channel.publish != Publish::Idle {
            // The error names the publish whose content was interrupted, as RabbitMQ does.
            let e = AmqpError::unexpected_frame(
                "expected content header for class 60, got non content header frame instead",
            );
            self.fail_method(out, ch, e, (CLASS_BASIC, 40), ctx);
            return Ok(());
        }
        let ids = m.id();
        let result = self.dispatch(out, ch, m, ctx);
        if let Err(e) = result {
            self.fail_method(out, ch, e, ids, ctx);
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        m: Method<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        match m {
            Method::ChannelClose(_) => {
                self.release_channel(ch, ctx);
                self.channels.remove(ch);
                out.method(ch, Method::ChannelCloseOk(ChannelCloseOk));
            }
            Method::ChannelCloseOk(_) => {}
            Method::ChannelFlow(f) => {
                self.channel(ch)?.flow_active = f.active;
                if f.active {
                    self.wake_consumers(ch, ctx);
                }
                out.method(
                    ch,
                    Method::ChannelFlowOk(ChannelFlowOk { active: f.active }),
                );
            }
            Method::ChannelFlowOk(_) => {}
            Method::AccessRequest(_) => {
                out.method(ch, Method::AccessRequestOk(AccessRequestOk { ticket: 1 }))
            }
            Method::ExchangeDeclare(d) => {
                let flags = ExchangeFlags {
                    passive: d.passive,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                };
                ctx.broker
                    .declare_exchange(d.exchange, d.kind, flags, d.arguments)?;
                if !d.no_wait {
                    out.method(ch, Method::ExchangeDeclareOk(ExchangeDeclareOk));
                }
            }
            Method::ExchangeDelete(d) => {
                ctx.broker.delete_exchange(d.exchange, d.if_unused)?;
                if !d.no_wait {
                    out.method(ch, Method::ExchangeDeleteOk(ExchangeDeleteOk));
                }
            }
            Method::ExchangeBind(b) => {
                ctx.broker
                    .bind_exchange(b.destination, b.source, b.routing_key, b.arguments)?;
                if !b.no_wait {
                    out.method(ch, Method::ExchangeBindOk(ExchangeBindOk));
                }
            }
            Method::ExchangeUnbind(b) => {
                ctx.broker
                    .unbind_exchange(b.destination, b.source, b.routing_key, b.arguments)?;
                if !b.no_wait {
                    out.method(ch, Method::ExchangeUnbindOk(ExchangeUnbindOk));
                }
            }
            Method::QueueDeclare(d) => {
                let flags = QueueFlags {
                    passive: d.passive,
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                };
                let ok = ctx
                    .broker
                    .declare_queue(self.id, d.queue, flags, d.arguments)?;
                self.channel(ch)?.last_queue = Some(ok.name.clone());
                if !d.no_wait {
                    let reply = QueueDeclareOk {
                        queue: &ok.name,
                        message_count: ok.message_count,
                        consumer_count: ok.consumer_count,
                    };
                    out.method(ch, Method::QueueDeclareOk(reply));
                }
            }
            Method::QueueBind(b) => {
                let queue = self.queue_name(ch, b.queue)?;
                ctx.broker
                    .bind_queue(self.id, &queue, b.exchange, b.routing_key, b.arguments)?;
                if !b.no_wait {
                    out.method(ch, Method::QueueBindOk(QueueBindOk));
                }
            }
            Method::QueueUnbind(b) => {
                let queue = self.queue_name(ch, b.queue)?;
                ctx.broker
                    .unbind_queue(self.id, &queue, b.exchange, b.routing_key, b.arguments)?;
                out.method(ch, Method::QueueUnbindOk(QueueUnbindOk));
            }
            Method::QueuePurge(p) => {
                let queue = self.queue_name(ch, p.queue)?;
                let message_count = ctx.broker.purge_queue(self.id, &queue)?;
                if !p.no_wait {
                    out.method(ch, Method::QueuePurgeOk(QueuePurgeOk { message_count }));
                }
            }
            Method::QueueDelete(d) => {
                let queue = self.queue_name(ch, d.queue)?;
                let message_count =
                    ctx.broker
                        .delete_queue(self.id, &queue, d.if_unused, d.if_empty)?;
                if !d.no_wait {
                    out.method(ch, Method::QueueDeleteOk(QueueDeleteOk { message_count }));
                }
            }
            Method::BasicQos(q) => self.basic_qos(out, ch, q, ctx)?,
            Method::BasicConsume(c) => self.basic_consume(out, ch, c, ctx)?,
            Method::BasicCancel(c) => {
                if let Some(id) = self.channel(ch)?.remove_consumer_tag(c.consumer_tag) {
                    ctx.broker.cancel_consumer(id);
                }
                if !c.no_wait {
                    out.method(
                        ch,
                        Method::BasicCancelOk(BasicCancelOk {
                            consumer_tag: c.consumer_tag,
                        }),
                    );
                }
            }
            Method::BasicPublish(p) => {
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
            }
            Method::BasicGet(g) => self.basic_get(out, ch, g, ctx)?,
            Method::BasicAck(a) => self.settle(ch, a.delivery_tag, a.multiple, Settle::Ack, ctx)?,
            Method::BasicReject(r) => {
                let how = if r.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(ch, r.delivery_tag, false, how, ctx)?
            }
            Method::BasicNack(n) => {
                let how = if n.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(ch, n.delivery_tag, n.multiple, how, ctx)?
            }
            Method::BasicRecoverAsync(r) => self.recover(ch, r.requeue, ctx)?,
            Method::BasicRecover(r) => {
                self.recover(ch, r.requeue, ctx)?;
                out.method(ch, Method::BasicRecoverOk(BasicRecoverOk));
            }
            Method::ConfirmSelect(c) => {
                let channel = self.channel(ch)?;
                if channel.tx.is_some() {
                    return Err(AmqpError::precondition(
                        "cannot switch from tx to confirm mode",
                    ));
                }
                channel.confirm = true;
                if !c.no_wait {
                    out.method(ch, Method::ConfirmSelectOk(ConfirmSelectOk));
                }
            }
            Method::TxSelect(_) => {
                let channel = self.channel(ch)?;
                if channel.confirm {
                    return Err(AmqpError::precondition(
                        "cannot switch from confirm to tx mode",
                    ));
                }
                channel.tx.get_or_insert_with(Vec::new);
                out.method(ch, Method::TxSelectOk(TxSelectOk));
            }
            Method::TxCommit(_) => {
                self.tx_commit(out, ch, ctx)?;
                out.method(ch, Method::TxCommitOk(TxCommitOk));
            }
            Method::TxRollback(_) => {
                let channel = self.channel(ch)?;
                let Some(ops) = channel.tx.as_mut() else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                ops.clear();
                out.method(ch, Method::TxRollbackOk(TxRollbackOk));
            }
            other => {
                return Err(AmqpError::command_invalid(format_args!(
                    "unexpected method {} on a channel",
                    other.name()
                )))
            }
        }
        Ok(())
    }

    pub(super) fn channel(&mut self, ch: u16) -> Result<&mut Channel, AmqpError> {
        self.channel_mut(ch)
            .ok_or_else(|| AmqpError::channel_error("expected 'channel.open'"))
    }

    /// A method's queue name, where "" means the channel's last declared queue (spec).
    fn queue_name(&mut self, ch: u16, name: &[u8]) -> Result<Box<[u8]>, AmqpError> {
        if !name.is_empty() {
            return Ok(name.into());
        }
        self.channel(ch)?
            .last_queue
            .clone()
            .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }

    fn basic_qos(
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
        out.method(ch, Method::BasicQosOk(BasicQosOk));
        Ok(())
    }

    fn basic_consume(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        c: BasicConsume<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
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
        // Consume-ok goes out before any delivery: deliveries are made after input processing.
        let id = ctx
            .broker
            .add_consumer(self.id, ch, &queue, c.no_ack, c.exclusive)?;
        self.channel(ch)?.add_consumer(id, tag.clone());
        if !c.no_wait {
            out.method(
                ch,
                Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: &tag }),
            );
        }
        Ok(())
    }

    fn basic_get(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        g: BasicGet<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let queue = self.queue_name(ch, g.queue)?;
        let (frame_max, conn) = (self.frame_max, self.id);
        let channel = self.channel(ch)?;
        let Some(got) = ctx.broker.get(conn, &queue, g.no_ack)? else {
            out.method(ch, Method::BasicGetEmpty(BasicGetEmpty { cluster_id: b"" }));
            return Ok(());
        };
        let msg = got.message.message().clone();
        let redelivered = got.message.redelivered();
        let tag = channel.record_delivery(got.queue, got.message, g.no_ack);
        let ok = BasicGetOk {
            delivery_tag: tag,
            redelivered,
            exchange: msg.exchange(),
            routing_key: msg.routing_key(),
            message_count: got.message_count,
        };
        out.method(ch, Method::BasicGetOk(ok));
        write_content(out, ch, &msg, frame_max);
        Ok(())
    }

    /// ack / nack / reject: settles deliveries, returning or dropping them.
    fn settle(
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
        for u in settled.drain(..) {
            settle_one(u, how, ctx.broker);
        }
        self.settle_scratch = settled;
        if global {
            self.wake_consumers(ch, ctx);
        }
        Ok(())
    }

    fn recover(&mut self, ch: u16, requeue: bool, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let channel = self.channel(ch)?;
        let all: Vec<Unacked> = channel.take_all_unacked().collect();
        for u in all {
            settle_one(u, Settle::Requeue, ctx.broker);
        }
        Ok(())
    }

    fn tx_commit(&mut self, out: &mut Outbox, ch: u16, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        let Some(ops) = channel.tx.as_mut() else {
            return Err(AmqpError::precondition("channel is not transactional"));
        };
        let ops = std::mem::take(ops);
        for op in ops {
            match op {
                TxOp::Publish { msg, mandatory } => self.route(out, ch, msg, mandatory, ctx)?,
                TxOp::Settle { tag, multiple, how } => {
                    let mut settled = Vec::new();
                    if !self.channel(ch)?.take_settled(tag, multiple, &mut settled) {
                        return Err(AmqpError::precondition(format_args!(
                            "unknown delivery tag {tag}"
                        )));
                    }
                    for u in settled {
                        settle_one(u, how, ctx.broker);
                    }
                    self.wake_consumers(ch, ctx);
                }
            }
        }
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
        let max_size = ctx.config.max_message_size;
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
            ) => {
                let h = ContentHeader::decode(f.payload)
                    .map_err(|_| AmqpError::frame_error("cannot decode content header"))?;
                if h.class_id != CLASS_BASIC {
                    return Err(AmqpError::frame_error(format_args!(
                        "content header for class {}",
                        h.class_id
                    )));
                }
                let props = BasicProperties::decode(h.properties_raw).map_err(|_| {
                    AmqpError::frame_error("cannot decode content header properties")
                })?;
                if h.body_size > max_size {
                    channel.publish = Publish::Idle;
                    let e = AmqpError::precondition(format_args!(
                        "message size {} is larger than configured max size {max_size}",
                        h.body_size
                    ));
                    self.fail_method(out, ch, e, (CLASS_BASIC, 40), ctx);
                    return Ok(());
                }
                channel
                    .builder
                    .set_header(h.properties_raw, h.body_size, props.is_persistent());
                channel.publish = Publish::AwaitingBody {
                    mandatory,
                    immediate,
                };
                if h.body_size == 0 {
                    return self.complete_publish(out, ch, ctx);
                }
                Ok(())
            }
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

    fn complete_publish(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        let Publish::AwaitingBody {
            mandatory,
            immediate,
        } = channel.publish
        else {
            return Ok(());
        };
        channel.publish = Publish::Idle;
        let msg = channel.builder.finish();
        if immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        if let Some(ops) = channel.tx.as_mut() {
            // Checked at publish time so a bad exchange fails the publish, not the commit.
            ctx.broker.check_exchange(msg.exchange())?;
            ops.push(TxOp::Publish { msg, mandatory });
            return Ok(());
        }
        let result = self.route(out, ch, msg, mandatory, ctx);
        if let Err(e) = result {
            self.fail_method(out, ch, e, (CLASS_BASIC, 40), ctx);
        }
        Ok(())
    }

    /// Routes a complete message; returns it to the publisher if mandatory and unroutable.
    fn route(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        msg: Message,
        mandatory: bool,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        // Only headers exchanges read the headers; skip decoding when there are none.
        let headers = if BasicProperties::has_headers(msg.properties()) {
            BasicProperties::decode(msg.properties())
                .ok()
                .and_then(|p| p.headers)
        } else {
            None
        };
        let routed = ctx.broker.publish(&msg, headers)?;
        if routed == 0 && mandatory {
            let r = BasicReturn {
                reply_code: ReplyCode::NoRoute.code(),
                reply_text: b"NO_ROUTE",
                exchange: msg.exchange(),
                routing_key: msg.routing_key(),
            };
            out.method(ch, Method::BasicReturn(r));
            write_content(out, ch, &msg, self.frame_max);
        }
        let channel = self.channel(ch)?;
        if channel.confirm {
            channel.publish_seq += 1;
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
        for (ch, tag, multiple) in std::mem::take(&mut self.final_confirms) {
            let m = if stored {
                Method::BasicAck(BasicAck {
                    delivery_tag: tag,
                    multiple,
                })
            } else {
                Method::BasicNack(BasicNack {
                    delivery_tag: tag,
                    multiple,
                    requeue: false,
                })
            };
            out.method(ch, m);
        }
        if self.close_ok_pending {
            self.close_ok_pending = false;
            out.method(0, Method::ConnectionCloseOk(ConnectionCloseOk));
            return;
        }
        self.channels.for_each_mut(|id, c| {
            if c.confirm && c.publish_seq > c.confirmed_seq && !c.closing {
                let multiple = c.publish_seq - c.confirmed_seq > 1;
                let m = if stored {
                    Method::BasicAck(BasicAck {
                        delivery_tag: c.publish_seq,
                        multiple,
                    })
                } else {
                    Method::BasicNack(BasicNack {
                        delivery_tag: c.publish_seq,
                        multiple,
                        requeue: false,
                    })
                };
                out.method(id, m);
                c.confirmed_seq = c.publish_seq;
            }
        });
    }

    /// Moves the confirms still owed on every channel aside, for a connection closing now.
    pub(super) fn take_final_confirms(&mut self) {
        let owed = &mut self.final_confirms;
        self.channels.for_each_mut(|id, c| {
            if c.confirm && c.publish_seq > c.confirmed_seq {
                owed.push((id, c.publish_seq, c.publish_seq - c.confirmed_seq > 1));
                c.confirmed_seq = c.publish_seq;
            }
        });
    }

    /// Returns a channel's unacked messages to their queues and removes its consumers.
    pub(super) fn release_channel(&mut self, ch: u16, ctx: &mut Ctx<'_>) {
        let Some(channel) = self.channel_mut(ch) else {
            return;
        };
        channel.publish = Publish::Idle;
        let consumers: Vec<ConsumerId> = channel.take_consumers().collect();
        let unacked: Vec<Unacked> = channel.take_all_unacked().collect();
        // Requeue before removing consumers: an auto-delete queue may go with its last one.
        for u in unacked {
            settle_one(u, Settle::Requeue, ctx.broker);
        }
        for id in consumers {
            ctx.broker.cancel_consumer(id);
        }
    }

    /// The channel's consumers may take deliveries again (credit returned, flow resumed).
    fn wake_consumers(&mut self, ch: u16, ctx: &mut Ctx<'_>) {
        let Some(channel) = self.channels.get(ch) else {
            return;
        };
        for id in channel.consumer_ids() {
            ctx.broker.wake_consumer(id);
        }
    }

    /// Whether `consumer` on channel `ch` may take a delivery now: the connection is open and
    /// its output below the high-water mark, and the channel gives it credit.
    pub fn can_take(&self, ch: u16, consumer: ConsumerId) -> bool {
        self.state == State::Open
            && !self.throttled
            && self.channels.get(ch).is_some_and(|c| c.can_take(consumer))
    }

    /// Writes basic.deliver with the message and records it as unacked unless no_ack. `Err`
    /// gives the message back if the channel or consumer is gone.
    pub fn deliver(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        consumer: ConsumerId,
        no_ack: bool,
        queue: QueueId,
        m: QueuedMessage,
    ) -> Result<(), QueuedMessage> {
        let Some(channel) = self.channels.get_mut(ch) else {
            return Err(m);
        };
        let msg = m.message().clone();
        let redelivered = m.redelivered();
        let (tag, consumer_tag) = channel.record_consumer_delivery(consumer, queue, m, no_ack)?;
        let d = BasicDeliver {
            consumer_tag,
            delivery_tag: tag,
            redelivered,
            exchange: msg.exchange(),
            routing_key: msg.routing_key(),
        };
        out.method(ch, Method::BasicDeliver(d));
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
    pub fn consumer_cancelled(&mut self, out: &mut Outbox, ch: u16, consumer: ConsumerId) {
        let notify = self.caps.consumer_cancel_notify;
        let Some(channel) = self.channel_mut(ch) else {
            return;
        };
        let Some(tag) = channel.remove_consumer(consumer) else {
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
                Method::BasicCancel(BasicCancel {
                    consumer_tag: &tag,
                    no_wait: true,
                }),
            );
        }
    }
}

/// Applies one settlement to the broker: ack drops the message, requeue returns it; either
/// way its consumer (if still subscribed) may take another.
fn settle_one(u: Unacked, how: Settle, broker: &mut Broker) {
    if let Some(c) = u.consumer {
        broker.wake_consumer(c);
    }
    let Some(m) = u.msg else { return };
    match how {
        Settle::Requeue => broker.requeue(u.queue, m),
        Settle::Ack | Settle::Discard => broker.ack(m),
    }
}

/// Content header and body frames of a message, properties byte for byte as published.
fn write_content(out: &mut Outbox, ch: u16, msg: &Message, frame_max: u32) {
    let (shared, start) = msg.body_in_shared();
    let body = Body { shared, start };
    out.content(ch, CLASS_BASIC, msg.properties(), body, frame_max);
}
