//! Taking messages out of queues: pull-based delivery to consumers (round robin among those
//! the sink says can take one), basic.get, and settling what was taken (ack or requeue). The
//! broker decides which consumer and acks the store when a delivery needs no ack; what
//! "can take" means (prefetch, flow, output space) is the sink's answer.

use super::cleanup::Task;
use super::consumer::{Consumer, ConsumerId};
use super::queue::{QueueId, QueuedMessage, Requeues};
use super::{not_found_queue, Broker, ConnId};
use crate::error::AmqpError;
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
        for n in 1..=DELIVERIES_PER_QUEUE_PER_TURN_MAX {
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
            match sink.deliver(cid, c, id, m) {
                Ok(()) => {
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

    /// basic.get: takes the oldest message of `queue`, settled at once with `no_ack`.
    pub(crate) fn get(
        &mut self,
        conn: ConnId,
        queue: &[u8],
        no_ack: bool,
    ) -> Result<Option<Got>, AmqpError> {
        let id = self.queue_for(conn, queue)?;
        let q = self
            .queues
            .get_mut(id)
            .ok_or_else(|| not_found_queue(queue))?;
        let Some(message) = q.pop(&mut self.store) else {
            return Ok(None);
        };
        if let (true, Some(r)) = (no_ack, message.store) {
            self.store.ack(r);
        }
        Ok(Some(Got {
            queue: id,
            message_count: q.message_count() as u32,
            message,
        }))
    }

    /// Settles a delivered message for good (ack, or reject/nack without requeue): its store
    /// record is acked.
    pub(crate) fn ack(&mut self, m: QueuedMessage) {
        if let Some(r) = m.store {
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

    /// Returns a delivered message to its queue, marked redelivered; if the queue is gone the
    /// message is gone too.
    pub(crate) fn requeue(&mut self, queue: QueueId, m: QueuedMessage) {
        match self.queues.get_mut(queue) {
            Some(q) => {
                q.requeue(m);
                self.mark_ready(queue);
            }
            None => self.ack(m),
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
