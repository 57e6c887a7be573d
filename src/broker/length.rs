//! Queue length limits (x-max-length, x-max-length-bytes) with x-overflow drop-head: a queue
//! over its limit drops its head, dead-lettering it (reason maxlen) if it has a dead-letter
//! exchange. Only ready messages count. A queue with consumers is trimmed after the turn's
//! deliveries, so a message a consumer can take at once is delivered, as RabbitMQ delivers
//! before it enqueues. (reject-publish refuses at publish time: `routing.rs`.)

use super::args::Overflow;
use super::dead_letter::Reason;
use super::queue::{Head, QueueId};
use super::Broker;

impl Broker {
    /// Holds queue `id` to its length limit: now, or once this turn's deliveries are made
    /// (`after_deliveries`).
    pub(super) fn limit_length(&mut self, id: QueueId, after_deliveries: bool) {
        let Some(q) = self.queues.get_mut(id) else {
            return;
        };
        if q.args.overflow != Overflow::DropHead || !q.over_limit() {
            return;
        }
        if !after_deliveries {
            self.trim(id);
        } else if !q.on_overfull_list {
            q.on_overfull_list = true;
            self.overfull.push(id);
        }
    }

    /// Trims the queues that went over their limit while consumers could still take messages.
    pub(super) fn trim_overfull(&mut self) {
        if self.overfull.is_empty() {
            return;
        }
        for id in std::mem::take(&mut self.overfull) {
            if let Some(q) = self.queues.get_mut(id) {
                q.on_overfull_list = false;
                self.trim(id);
            }
        }
    }

    /// Drops heads of queue `id` towards its limit while `budget` lasts, one unit each (a
    /// policy lowered it: the excess may be a whole backlog); true if it is still over.
    pub(super) fn trim_some(&mut self, id: QueueId, budget: &mut usize) -> bool {
        let over = |b: &Broker| {
            b.queues
                .get(id)
                .is_some_and(|q| q.args.overflow == Overflow::DropHead && q.over_limit())
        };
        while *budget > 0 && over(self) {
            *budget -= 1;
            if !self.drop_head(id) {
                break;
            }
        }
        if self.queues.get(id).is_some_and(|q| q.may_expire) {
            self.arm_expiry(id);
        }
        over(self)
    }

    /// Drops heads of queue `id` until it is within its limit.
    fn trim(&mut self, id: QueueId) {
        self.drop_heads(id);
        if self.queues.get(id).is_some_and(|q| q.may_expire) {
            // A new head: its deadline is the one to wake for.
            self.arm_expiry(id);
        }
    }

    fn drop_heads(&mut self, id: QueueId) {
        while self.queues.get(id).is_some_and(|q| q.over_limit()) {
            if !self.drop_head(id) {
                return;
            }
        }
    }

    /// Drops (or dead-letters, reason maxlen) the head of queue `id`; false if it had none.
    fn drop_head(&mut self, id: QueueId) -> bool {
        let Some(q) = self.queues.get_mut(id) else {
            return false;
        };
        if q.args.dead_letter_exchange.is_some() {
            match q.pop(&mut self.store) {
                Some(m) => self.dead_letter(id, m, Reason::Maxlen),
                None => return false,
            }
        } else {
            match q.take_head(&mut self.store) {
                Some(Head::Message(m)) => self.forget(m),
                Some(Head::OnDisk(r)) => self.store.ack(r),
                None => return false,
            }
        }
        true
    }
}
