//! Channel methods in: the one `match` over them (`dispatch`), the checks every channel method
//! passes first (channel open, not closing, no publish in progress), and the channel, confirm
//! and tx classes. The other classes are handled in `entities.rs` (exchange, queue),
//! `publish.rs` (basic.publish and content) and `consume.rs` (consume, get, ack, delivery).

use super::channel::{Channel, Publish, Settle, TxOp};
use super::consume::settle_all;
use super::{Ctx, Session, State};
use crate::broker::Actor;
use crate::error::AmqpError;
use crate::protocol::constants::CLASS_BASIC;
use crate::protocol::method::*;
use crate::protocol::Outbox;

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
            let Some(actor) = self.actor.as_ref() else {
                return Err(AmqpError::command_invalid(
                    "channel.open before connection.open",
                ));
            };
            if let Err(refused) = ctx.broker.channel_opened(actor) {
                // The user's max-channels: a connection error naming no method, as RabbitMQ.
                self.fail_method(out, ch, refused.into(), (0, 0), ctx);
                return Ok(());
            }
            self.channels.insert(ch, Channel::default());
            out.method(
                ch,
                &Method::ChannelOpenOk(ChannelOpenOk { channel_id: b"" }),
            );
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
                Method::ChannelCloseOk(_) => self.remove_channel(ch, ctx),
                Method::ChannelClose(_) => out.method(ch, &Method::ChannelCloseOk(ChannelCloseOk)),
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
        if let Some(actor) = self.actor.as_mut() {
            ctx.broker.refresh_actor(actor);
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
                self.remove_channel(ch, ctx);
                out.method(ch, &Method::ChannelCloseOk(ChannelCloseOk));
            }
            Method::ChannelCloseOk(_) | Method::ChannelFlowOk(_) => {}
            Method::ChannelFlow(f) => self.channel_flow(out, ch, f.active, ctx)?,
            Method::AccessRequest(_) => {
                out.method(ch, &Method::AccessRequestOk(AccessRequestOk { ticket: 1 }))
            }
            Method::ExchangeDeclare(d) => self.exchange_declare(out, ch, d, ctx)?,
            Method::ExchangeDelete(d) => self.exchange_delete(out, ch, d, ctx)?,
            Method::ExchangeBind(b) => self.exchange_bind(out, ch, b, ctx)?,
            Method::ExchangeUnbind(b) => self.exchange_unbind(out, ch, b, ctx)?,
            Method::QueueDeclare(d) => self.queue_declare(out, ch, d, ctx)?,
            Method::QueueBind(b) => self.queue_bind(out, ch, b, ctx)?,
            Method::QueueUnbind(b) => self.queue_unbind(out, ch, b, ctx)?,
            Method::QueuePurge(p) => self.queue_purge(out, ch, p, ctx)?,
            Method::QueueDelete(d) => self.queue_delete(out, ch, d, ctx)?,
            Method::BasicQos(q) => self.basic_qos(out, ch, q, ctx)?,
            Method::BasicConsume(c) => self.basic_consume(out, ch, c, ctx)?,
            Method::BasicCancel(c) => self.basic_cancel(out, ch, c, ctx)?,
            Method::BasicPublish(p) => self.basic_publish(ch, p)?,
            Method::BasicGet(g) => self.basic_get(out, ch, g, ctx)?,
            Method::BasicAck(a) => self.settle(ch, a.delivery_tag, a.multiple, Settle::Ack, ctx)?,
            Method::BasicReject(r) => {
                self.settle(ch, r.delivery_tag, false, Settle::rejected(r.requeue), ctx)?
            }
            Method::BasicNack(n) => {
                let how = Settle::rejected(n.requeue);
                self.settle(ch, n.delivery_tag, n.multiple, how, ctx)?
            }
            Method::BasicRecoverAsync(r) => self.recover(ch, r.requeue, ctx)?,
            Method::BasicRecover(r) => {
                self.recover(ch, r.requeue, ctx)?;
                out.method(ch, &Method::BasicRecoverOk(BasicRecoverOk));
            }
            Method::ConfirmSelect(c) => self.confirm_select(out, ch, c)?,
            Method::TxSelect(_) => self.tx_select(out, ch)?,
            Method::TxCommit(_) => {
                self.tx_commit(out, ch, ctx)?;
                out.method(ch, &Method::TxCommitOk(TxCommitOk));
            }
            Method::TxRollback(_) => {
                let channel = self.channel(ch)?;
                let Some(ops) = channel.tx.as_mut() else {
                    return Err(AmqpError::precondition("channel is not transactional"));
                };
                ops.clear();
                out.method(ch, &Method::TxRollbackOk(TxRollbackOk));
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

    /// A channel is gone (closed by either side): it no longer counts towards the user's
    /// max-channels.
    fn remove_channel(&mut self, ch: u16, ctx: &mut Ctx<'_>) {
        if self.channels.remove(ch).is_some() {
            ctx.broker.channel_closed(self.id);
        }
    }

    /// Who the channel methods act as: the connection, its vhost and its rights there.
    pub(super) fn actor(&self) -> Result<&Actor, AmqpError> {
        self.actor
            .as_ref()
            .ok_or_else(|| AmqpError::command_invalid("no vhost before connection.open"))
    }

    pub(super) fn channel(&mut self, ch: u16) -> Result<&mut Channel, AmqpError> {
        self.channel_mut(ch)
            .ok_or_else(|| AmqpError::channel_error("expected 'channel.open'"))
    }

    /// A method's queue name, where "" means the channel's last declared queue (spec).
    pub(super) fn queue_name(&mut self, ch: u16, name: &[u8]) -> Result<Box<[u8]>, AmqpError> {
        if !name.is_empty() {
            return Ok(name.into());
        }
        self.channel(ch)?
            .last_queue
            .clone()
            .ok_or_else(|| AmqpError::not_found("no previously declared queue"))
    }

    /// channel.flow: stops or resumes deliveries on the channel.
    fn channel_flow(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        active: bool,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        self.channel(ch)?.flow_active = active;
        if active {
            self.wake_consumers(ch, ctx);
        }
        out.method(ch, &Method::ChannelFlowOk(ChannelFlowOk { active }));
        Ok(())
    }

    fn confirm_select(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        c: ConfirmSelect,
    ) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        if channel.tx.is_some() {
            return Err(AmqpError::precondition(
                "cannot switch from tx to confirm mode",
            ));
        }
        channel.confirm = true;
        if !c.no_wait {
            out.method(ch, &Method::ConfirmSelectOk(ConfirmSelectOk));
        }
        Ok(())
    }

    fn tx_select(&mut self, out: &mut Outbox, ch: u16) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        if channel.confirm {
            return Err(AmqpError::precondition(
                "cannot switch from confirm to tx mode",
            ));
        }
        channel.tx.get_or_insert_with(Vec::new);
        out.method(ch, &Method::TxSelectOk(TxSelectOk));
        Ok(())
    }

    pub(super) fn tx_commit(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let channel = self.channel(ch)?;
        let Some(ops) = channel.tx.as_mut() else {
            return Err(AmqpError::precondition("channel is not transactional"));
        };
        let ops = std::mem::take(ops);
        for op in ops {
            match op {
                TxOp::Publish { msg, mandatory } => {
                    // Checked at publish time; the exchange is looked up again at commit.
                    let target = ctx.broker.publish_target(self.actor()?, msg.exchange())?;
                    self.route(out, ch, msg, mandatory, target, ctx)?
                }
                TxOp::Settle { tag, multiple, how } => {
                    let mut settled = Vec::new();
                    let epoch = ctx.broker.rate_epoch();
                    let channel = self.channel(ch)?;
                    if !channel.take_settled(tag, multiple, &mut settled) {
                        return Err(AmqpError::precondition(format_args!(
                            "unknown delivery tag {tag}"
                        )));
                    }
                    if how == Settle::Ack {
                        channel.stats.at(epoch).ack += settled.len() as u64;
                    }
                    settle_all(settled.into_iter(), how, ctx.broker);
                    self.wake_consumers(ch, ctx);
                }
            }
        }
        Ok(())
    }
}
