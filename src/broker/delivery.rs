//! Taking messages out of queues: pull-based delivery to consumers (round robin among those
//! the sink says can take one), basic.get, and settling what was taken (ack or requeue). The
//! broker decides which consumer and acks the store when a delivery needs no ack; what
//! "can take" means (prefetch, flow, output space) is the sink's answer.

use super::consumer::{Consumer, ConsumerId};
use super::queue::{QueueId, QueuedMessage};
use super::{not_found_queue, Actor, Broker};
use crate::error::AmqpError;
use crate::limits::DELIVERIES_PER_QUEUE_PER_TURN_MAX;

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
    /// `DELIVERIES_PER_QUEUE_PER_TURN_MAX` from each; a queue with more stays ready.
    pub fn deliver_ready(&mut self, sink: &mut impl DeliverySink) {
        let mut list = std::mem::take(&mut self.ready_scratch);
        list.clear();
        std::mem::swap(&mut list, &mut self.ready);
        for &id in &list {
            if let Some(q) = self.queues.get_mut(id) {
                q.on_ready_list = false;
            }
        }
        for &id in &list {
            self.deliver_from(id, sink);
        }
        self.ready_scratch = list;
    }

    /// Whether some queue may be able to deliver (the reactor then polls without sleeping).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    fn deliver_from(&mut self, id: QueueId, sink: &mut impl DeliverySink) {
        for _ in 0..DELIVERIES_PER_QUEUE_PER_TURN_MAX {
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
            let Some(m) = q.pop(&mut self.store) else {
                return;
            };
            let Some(c) = self.consumers.get(cid) else {
                q.unpop(m);
                return;
            };
            let store = m.store;
            let redelivered = m.redelivered();
            match sink.deliver(cid, c, id, m) {
                Ok(()) => {
                    let counters = &mut self.counters;
                    counters.redeliver += u64::from(redelivered);
                    if c.no_ack() {
                        counters.deliver_no_ack += 1;
                    } else {
                        counters.deliver += 1;
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
        }
        // Budget spent with messages left: continue next turn, after other queues had theirs.
        self.mark_ready(id);
    }

    /// basic.get: read permission, then takes the oldest message of `queue`, settled at once
    /// with `no_ack`.
    pub(crate) fn get(
        &mut self,
        who: &Actor,
        queue: &[u8],
        no_ack: bool,
    ) -> Result<Option<Got>, AmqpError> {
        who.grant().check_basic_get(queue)?;
        let id = self.queue_for(who, queue)?;
        let q = self
            .queues
            .get_mut(id)
            .ok_or_else(|| not_found_queue(who.vhost_name(), queue))?;
        let Some(message) = q.pop(&mut self.store) else {
            return Ok(None);
        };
        self.counters.redeliver += u64::from(message.redelivered());
        if no_ack {
            self.counters.get_no_ack += 1;
        } else {
            self.counters.get += 1;
            q.unacked += 1;
        }
        if let (true, Some(r)) = (no_ack, message.store) {
            self.store.ack(r);
        }
        Ok(Some(Got {
            queue: id,
            message_count: q.message_count() as u32,
            message,
        }))
    }

    /// Settles a delivered message of `queue` for good: basic.ack (`acked`), or reject/nack
    /// without requeue. Its store record is acked.
    pub(crate) fn ack(&mut self, queue: QueueId, m: QueuedMessage, acked: bool) {
        self.counters.ack += u64::from(acked);
        if let Some(q) = self.queues.get_mut(queue) {
            q.unacked = q.unacked.saturating_sub(1);
        }
        self.forget(m);
    }

    /// The store forgets a message that is gone (settled, or its queue deleted).
    fn forget(&mut self, m: QueuedMessage) {
        if let Some(r) = m.store {
            self.store.ack(r);
        }
    }

    /// Returns a delivered message to its queue, marked redelivered; if the queue is gone the
    /// message is gone too.
    pub(crate) fn requeue(&mut self, queue: QueueId, m: QueuedMessage) {
        match self.queues.get_mut(queue) {
            Some(q) => {
                q.unacked = q.unacked.saturating_sub(1);
                q.requeue(m);
                self.mark_ready(queue);
            }
            None => self.forget(m),
        }
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
