//! Taking messages out of queues: pull-based delivery to consumers (round robin among those
//! the sink says can take one), basic.get, and settling what was taken (ack, reject, or
//! requeue). The broker decides which consumer, drops an expired head before it is taken,
//! and acks the store when a delivery needs no ack; what "can take" means (prefetch, flow,
//! output space) is the sink's answer.

use super::cleanup::Task;
use super::consumer::{Consumer, ConsumerId};
use super::dead_letter::Reason;
use super::headers::with_delivery_count;
use super::queue::{QueueId, QueuedMessage, Requeues};
use super::{not_found_queue, Actor, Broker};
use crate::error::{AmqpError, Show};
use crate::limits::{
    DELIVERIES_PER_CLOCK_READ, DELIVERIES_PER_QUEUE_PER_TURN_MAX, DELIVERY_TIME_PER_TURN_MAX_MICROS,
};
use std::time::{Duration, Instant};

/// Where deliveries go: the consumers' connections (the session layer, over the reactor's
/// connection table). Called once per delivery, so implementations are generic, not boxed.
pub trait DeliverySink {
    /// Whether `consumer` may take one more delivery now.
    fn can_take(&mut self, consumer: ConsumerId, c: &Consumer) -> bool;
    /// Hands over a message for `consumer`, which `can_take` just accepted. `Err` gives the
    /// message back if it could not be taken after all; it returns to the queue unchanged.
    fn deliver(
        &mut self,
        consumer: ConsumerId,
        c: &Consumer,
        queue: QueueId,
        m: QueuedMessage,
    ) -> Result<(), QueuedMessage>;
}

/// What basic.get takes from a queue.
pub(crate) struct Got {
    pub(crate) queue: QueueId,
    pub(crate) message: QueuedMessage,
    /// Messages left in the queue.
    pub(crate) message_count: u32,
}

impl Broker {
    /// Delivers from every queue that became ready since the last call, at most
    /// `DELIVERIES_PER_QUEUE_PER_TURN_MAX` from each and for at most
    /// `DELIVERY_TIME_PER_TURN_MAX_MICROS` in all; a queue with more stays ready, and the
    /// queues the time did not reach go first next turn.
    pub fn deliver_ready(&mut self, sink: &mut impl DeliverySink) {
        let deadline = Instant::now() + Duration::from_micros(DELIVERY_TIME_PER_TURN_MAX_MICROS);
        let mut list = std::mem::take(&mut self.ready_scratch);
        list.clear();
        std::mem::swap(&mut list, &mut self.ready);
        for &id in &list {
            if let Some(q) = self.queues.get_mut(id) {
                q.on_ready_list = false;
            }
        }
        for (i, &id) in list.iter().enumerate() {
            if i > 0 && Instant::now() >= deadline {
                self.keep_ready_first(&list[i..]);
                break;
            }
            self.deliver_from(id, sink, deadline);
        }
        self.ready_scratch = list;
        // Consumers had their chance at what arrived this turn; the rest is held to the limit.
        self.trim_overfull();
    }

    /// Puts `queues` on the ready list ahead of those made ready meanwhile.
    fn keep_ready_first(&mut self, queues: &[QueueId]) {
        let later = std::mem::take(&mut self.ready);
        for &id in queues {
            self.mark_ready(id);
        }
        // A queue made ready meanwhile is flagged already and keeps its place in `later`.
        self.ready.extend(later);
    }

    /// Whether some queue may be able to deliver (the reactor then polls without sleeping).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    fn deliver_from(&mut self, id: QueueId, sink: &mut impl DeliverySink, deadline: Instant) {
        let Some(q) = self.queues.get(id) else { return };
        let (may_expire, quorum) = (q.may_expire, q.is_quorum());
        self.deliver_some(id, sink, may_expire, quorum, deadline);
        if may_expire {
            // The head changed: its deadline is the one to wake for.
            self.arm_expiry(id);
        }
    }

    /// Delivers from queue `id` while consumers can take, until `deadline` (read every
    /// DELIVERIES_PER_CLOCK_READ deliveries); `may_expire` and `quorum` are the queue's (read
    /// once: a plain queue pays one branch each per delivery).
    fn deliver_some(
        &mut self,
        id: QueueId,
        sink: &mut impl DeliverySink,
        may_expire: bool,
        quorum: bool,
        deadline: Instant,
    ) {
        for n in 1..=DELIVERIES_PER_QUEUE_PER_TURN_MAX {
            if may_expire && !self.expire_head(id) {
                self.expiry_due_now(id);
                return;
            }
            let Some(q) = self.queues.get_mut(id) else {
                return;
            };
            if q.message_count() == 0 {
                return;
            }
            let consumers = &self.consumers;
            let chosen =
                q.pick_consumer(|cid| consumers.get(cid).is_some_and(|c| sink.can_take(cid, c)));
            // No consumer has credit: the queue is made ready again when one gets some.
            let Some(cid) = chosen else { return };
            let Some(mut m) = q.pop(&mut self.store) else {
                return;
            };
            if quorum && m.delivery_count() > 0 {
                m.set_message(with_delivery_count(m.message(), m.delivery_count()));
            }
            let Some(c) = self.consumers.get(cid) else {
                q.unpop(m);
                return;
            };
            let store = m.store();
            let redelivered = m.redelivered();
            match sink.deliver(cid, c, id, m) {
                Ok(()) => {
                    let counters = &mut self.counters;
                    counters.redeliver += u64::from(redelivered);
                    q.stats.now.redeliver += u64::from(redelivered);
                    if c.no_ack() {
                        counters.deliver_no_ack += 1;
                        q.stats.now.deliver_no_ack += 1;
                    } else {
                        counters.deliver += 1;
                        q.stats.now.deliver += 1;
                        q.unacked += 1;
                    }
                    if let (true, Some(r)) = (c.no_ack(), store) {
                        // Settled on delivery: the store forgets it now.
                        self.store.ack(r);
                    }
                }
                Err(m) => {
                    q.unpop(m);
                    return;
                }
            }
            if n % DELIVERIES_PER_CLOCK_READ == 0 && Instant::now() >= deadline {
                break;
            }
        }
        // Budget spent with messages left: continue next turn, after other queues had theirs.
        self.mark_ready(id);
    }

    /// basic.get: read permission, then takes the oldest message of `queue`, settled at once
    /// with `no_ack`. An expired head is dropped first; if the turn's budget for that runs
    /// out, the answer is get-empty and the rest expires in the next turns.
    pub(crate) fn get(
        &mut self,
        who: &Actor,
        queue: &[u8],
        no_ack: bool,
    ) -> Result<Option<Got>, AmqpError> {
        who.grant().check_basic_get(queue)?;
        let vhost = who.vhost_name();
        let id = self.queue_for(who, queue)?;
        let q = self
            .queues
            .get(id)
            .ok_or_else(|| not_found_queue(vhost, queue))?;
        let may_expire = q.may_expire;
        if q.is_quorum() && q.args.single_active_consumer {
            return Err(AmqpError::resource_locked(format_args!(
                "cannot obtain access to locked queue '{}' in vhost '{vhost}'. basic.get operations are not supported by quorum queues with single active consumer",
                Show(queue)
            )));
        }
        self.renew_lease(id);
        if may_expire && !self.expire_head(id) {
            self.expiry_due_now(id);
            return Ok(None);
        }
        let q = self
            .queues
            .get_mut(id)
            .ok_or_else(|| not_found_queue(vhost, queue))?;
        let Some(mut message) = q.pop(&mut self.store) else {
            self.counters.get_empty += 1;
            q.stats.now.get_empty += 1;
            return Ok(None);
        };
        self.counters.redeliver += u64::from(message.redelivered());
        q.stats.now.redeliver += u64::from(message.redelivered());
        if no_ack {
            self.counters.get_no_ack += 1;
            q.stats.now.get_no_ack += 1;
        } else {
            self.counters.get += 1;
            q.stats.now.get += 1;
            q.unacked += 1;
        }
        if q.is_quorum() {
            // RabbitMQ 3.10 adds the header to every basic.get, 0 on a first delivery.
            let count = message.delivery_count();
            message.set_message(with_delivery_count(message.message(), count));
        }
        let message_count = q.message_count() as u32;
        if let (true, Some(r)) = (no_ack, message.store()) {
            self.store.ack(r);
        }
        if may_expire {
            self.arm_expiry(id);
        }
        Ok(Some(Got {
            queue: id,
            message_count,
            message,
        }))
    }

    /// Settles a delivered message of `queue` for good with basic.ack: its store record is
    /// acked.
    pub(crate) fn ack(&mut self, queue: QueueId, m: QueuedMessage) {
        self.counters.ack += 1;
        if let Some(q) = self.queues.get_mut(queue) {
            q.unacked = q.unacked.saturating_sub(1);
            q.stats.now.ack += 1;
        }
        self.forget(m);
    }

    /// A delivery of `queue` is no longer owed an ack (messages_unacknowledged).
    fn settled(&mut self, queue: QueueId) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.unacked = q.unacked.saturating_sub(1);
        }
    }

    /// The store forgets a message that is gone (settled, or its queue deleted).
    pub(super) fn forget(&mut self, m: QueuedMessage) {
        if let Some(r) = m.store() {
            self.store.ack(r);
        }
    }

    /// Returns delivered messages to their queues in the order `messages` gives them (the
    /// newest first, so each lands in front of what its queue holds, which are usually all
    /// newer: an insert at the front). A few thousand are requeued at once; more (a channel
    /// closed with 60,000 unacked) over the next turns, through the cleanup, as RabbitMQ's
    /// queues take them back after the channel is gone.
    pub(crate) fn requeue_all(&mut self, messages: Requeues) {
        let mut messages = messages.peekable();
        if messages.peek().is_some() {
            self.cleanup.push(Task::Requeue(messages));
            self.clean_up_inline();
        }
    }

    /// basic.reject or basic.nack without requeue: the message is dead-lettered if its queue
    /// has a dead-letter exchange, else dropped.
    pub(crate) fn reject(&mut self, queue: QueueId, m: QueuedMessage) {
        self.settled(queue);
        self.dead_letter(queue, m, Reason::Rejected);
    }

    /// Returns a delivered message to its queue, marked redelivered; if the queue is gone the
    /// message is gone too. A quorum queue dead-letters a message returned past its delivery
    /// limit; a queue over its length limit drops its head.
    pub(crate) fn requeue(&mut self, queue: QueueId, mut m: QueuedMessage) {
        self.settled(queue);
        let Some(q) = self.queues.get_mut(queue) else {
            self.forget(m);
            return;
        };
        if q.count_return(&mut m) {
            self.dead_letter(queue, m, Reason::DeliveryLimit);
            return;
        }
        let may_expire = q.may_expire;
        q.requeue(m);
        if may_expire {
            self.arm_expiry(queue);
        }
        self.limit_length(queue, false);
        self.mark_ready(queue);
    }

    /// Records that `id` may be able to deliver now (new messages, consumers or credit).
    pub(super) fn mark_ready(&mut self, id: QueueId) {
        if let Some(q) = self.queues.get_mut(id) {
            if !q.on_ready_list {
                q.on_ready_list = true;
                self.ready.push(id);
            }
        }
    }
}
