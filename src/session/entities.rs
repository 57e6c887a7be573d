//! The exchange and queue classes: each method becomes one broker verb acting as the
//! connection's actor (its vhost and rights), with the queue name "" meaning the channel's last
//! declared queue, and its -ok unless no-wait.

use super::{Ctx, Session};
use crate::broker::{ExchangeFlags, QueueFlags, REPLY_QUEUE};
use crate::error::AmqpError;
use crate::protocol::method::*;
use crate::protocol::Outbox;

impl Session {
    pub(super) fn exchange_declare(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        d: ExchangeDeclare<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let flags = ExchangeFlags {
            passive: d.passive,
            durable: d.durable,
            auto_delete: d.auto_delete,
            internal: d.internal,
        };
        ctx.broker
            .declare_exchange(self.actor()?, d.exchange, d.kind, flags, d.arguments)?;
        if !d.no_wait {
            out.method(ch, &Method::ExchangeDeclareOk(ExchangeDeclareOk));
        }
        Ok(())
    }

    pub(super) fn exchange_delete(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        d: ExchangeDelete<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        ctx.broker
            .delete_exchange(self.actor()?, d.exchange, d.if_unused)?;
        if !d.no_wait {
            out.method(ch, &Method::ExchangeDeleteOk(ExchangeDeleteOk));
        }
        Ok(())
    }

    pub(super) fn exchange_bind(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        b: ExchangeBind<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        ctx.broker.bind_exchange(
            self.actor()?,
            b.destination,
            b.source,
            b.routing_key,
            b.arguments,
        )?;
        if !b.no_wait {
            out.method(ch, &Method::ExchangeBindOk(ExchangeBindOk));
        }
        Ok(())
    }

    pub(super) fn exchange_unbind(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        b: ExchangeUnbind<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        ctx.broker.unbind_exchange(
            self.actor()?,
            b.destination,
            b.source,
            b.routing_key,
            b.arguments,
        )?;
        if !b.no_wait {
            out.method(ch, &Method::ExchangeUnbindOk(ExchangeUnbindOk));
        }
        Ok(())
    }

    pub(super) fn queue_declare(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        d: QueueDeclare<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        if d.queue.starts_with(REPLY_QUEUE) {
            return self.declare_reply_queue(out, ch, d, ctx);
        }
        let flags = QueueFlags {
            passive: d.passive,
            durable: d.durable,
            exclusive: d.exclusive,
            auto_delete: d.auto_delete,
        };
        let ok = ctx
            .broker
            .declare_queue(self.actor()?, d.queue, flags, d.arguments)?;
        self.channel(ch)?.last_queue = Some(ok.name.clone());
        if !d.no_wait {
            let reply = QueueDeclareOk {
                queue: &ok.name,
                message_count: ok.message_count,
                consumer_count: ok.consumer_count,
            };
            out.method(ch, &Method::QueueDeclareOk(reply));
        }
        Ok(())
    }

    pub(super) fn queue_bind(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        b: QueueBind<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let queue = self.queue_name(ch, b.queue)?;
        ctx.broker.bind_queue(
            self.actor()?,
            &queue,
            b.exchange,
            b.routing_key,
            b.arguments,
        )?;
        if !b.no_wait {
            out.method(ch, &Method::QueueBindOk(QueueBindOk));
        }
        Ok(())
    }

    pub(super) fn queue_unbind(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        b: QueueUnbind<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let queue = self.queue_name(ch, b.queue)?;
        ctx.broker.unbind_queue(
            self.actor()?,
            &queue,
            b.exchange,
            b.routing_key,
            b.arguments,
        )?;
        out.method(ch, &Method::QueueUnbindOk(QueueUnbindOk));
        Ok(())
    }

    pub(super) fn queue_purge(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        p: QueuePurge<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let queue = self.queue_name(ch, p.queue)?;
        let message_count = ctx.broker.purge_queue(self.actor()?, &queue)?;
        if !p.no_wait {
            out.method(ch, &Method::QueuePurgeOk(QueuePurgeOk { message_count }));
        }
        Ok(())
    }

    pub(super) fn queue_delete(
        &mut self,
        out: &mut Outbox,
        ch: u16,
        d: QueueDelete<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        let queue = self.queue_name(ch, d.queue)?;
        let message_count =
            ctx.broker
                .delete_queue(self.actor()?, &queue, d.if_unused, d.if_empty)?;
        if !d.no_wait {
            out.method(ch, &Method::QueueDeleteOk(QueueDeleteOk { message_count }));
        }
        Ok(())
    }
}
