//! Time in the broker: the loop turn's clock, message deadlines (x-message-ttl and the
//! expiration property, RabbitMQ's rules: only the head expires, the lower TTL wins, a
//! message with TTL 0 reaches only a consumer that can take it in the turn it arrives), queue
//! leases (x-expires), and the timer heap the reactor sleeps on (`next_deadline`) and runs
//! (`expire_due`). Deadlines are absolute wall-clock milliseconds, so they hold across a
//! restart. The heap has one live entry per queue and timer kind; entries whose time no longer
//! matches the queue's are stale and skipped (lazy deletion). Work per turn is bounded by
//! `EXPIRY_WORK_PER_TURN_MAX`; what is left is done next turn.

use super::message::{parse_expiration, Message};
use super::queue::{Head, QueueId, NEVER};
use super::Broker;
use crate::limits::EXPIRY_WORK_PER_TURN_MAX;
use crate::protocol::BasicProperties;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the epoch (what deadlines are measured in).
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A message's expiration property in ms (it was validated when published).
pub(super) fn expiration_of(msg: &Message) -> Option<u64> {
    if !BasicProperties::has_expiration(msg.properties()) {
        return None;
    }
    let p = BasicProperties::decode(msg.properties()).ok()?;
    parse_expiration(p.expiration?).ok()
}

/// What a timer entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The queue's head message may have expired.
    Head,
    /// The queue's x-expires lease may have run out.
    Lease,
}

/// Due times of queue timers, earliest first.
#[derive(Default)]
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(u64, Timer, QueueId)>>,
}

impl Timers {
    fn push(&mut self, due: u64, kind: Timer, id: QueueId) {
        self.heap.push(Reverse((due, kind, id)));
    }

    fn len(&self) -> usize {
        self.heap.len()
    }

    fn earliest(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((due, _, _))| *due)
    }

    /// The earliest entry if it is due at `now`.
    fn pop_due(&mut self, now: u64) -> Option<(u64, Timer, QueueId)> {
        match self.heap.peek() {
            Some(Reverse((due, _, _))) if *due <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }
}

impl Broker {
    /// Adds a timer entry. Stale entries (a deleted queue's, or one a nearer deadline
    /// replaced) are dropped when they outnumber the live ones, at most two per queue: the
    /// heap stays proportional to the queues, at an amortised O(1) per entry.
    pub(super) fn push_timer(&mut self, due: u64, kind: Timer, id: QueueId) {
        self.timers.push(due, kind, id);
        if self.timers.len() > 4 * self.queues.len() + 1024 {
            let queues = &self.queues;
            self.timers.heap.retain(|Reverse((due, kind, id))| {
                queues.get(*id).is_some_and(|q| match kind {
                    Timer::Head => q.expiry_due == *due,
                    Timer::Lease => q.lease_due == *due,
                })
            });
        }
    }

    /// Starts a loop turn at `now_ms` (wall clock): deadlines of this turn's messages are
    /// measured from it, and the turn's budget for expiry work is renewed. The clock never
    /// goes back, so a stepped system clock cannot resurrect an expired message.
    pub fn begin_turn(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.budget = EXPIRY_WORK_PER_TURN_MAX;
    }

    /// When the broker next has timed work (a message or queue expiring, a delayed message
    /// falling due, or work left over from a turn whose budget ran out), in wall-clock ms.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.has_pending_work() {
            return Some(self.clock_ms);
        }
        [self.timers.earliest(), self.delayed_due()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Does the timed work due at the turn's clock, within the turn's budget: expires queue
    /// heads, deletes queues whose lease ran out, releases due delayed messages and
    /// dead-letters what they let go of.
    pub fn expire_due(&mut self) {
        self.run_dead_letters();
        while self.budget > 0 {
            let Some((due, kind, id)) = self.timers.pop_due(self.clock_ms) else {
                break;
            };
            match kind {
                Timer::Head => self.head_due(id, due),
                Timer::Lease => self.lease_due(id, due),
            }
            self.run_dead_letters();
        }
        self.release_delayed();
        self.run_dead_letters();
    }

    fn head_due(&mut self, id: QueueId, due: u64) {
        match self.queues.get_mut(id) {
            Some(q) if q.expiry_due == due => q.expiry_due = NEVER,
            _ => return,
        }
        if self.expire_head(id) {
            self.arm_expiry(id);
        } else {
            self.expiry_due_now(id);
        }
    }

    /// Expires the head of queue `id` while its deadline has passed (dead-lettering it with
    /// reason expired, or dropping it). Returns false if the turn's budget ran out with an
    /// expired head left.
    pub(super) fn expire_head(&mut self, id: QueueId) -> bool {
        loop {
            let Some(q) = self.queues.get_mut(id) else {
                return true;
            };
            match q.head_expires_at() {
                Some(at) if at < self.clock_ms => {}
                _ => return true,
            }
            if self.budget == 0 {
                return false;
            }
            self.budget -= 1;
            if q.args.dead_letter_exchange.is_some() {
                if let Some(m) = q.pop(&mut self.store) {
                    self.dead_letter(id, m, super::dead_letter::Reason::Expired);
                }
            } else {
                match q.take_head(&mut self.store) {
                    Some(Head::Message(m)) => self.forget(m),
                    Some(Head::OnDisk(r)) => self.store.ack(r),
                    None => return true,
                }
            }
        }
    }

    /// Makes sure the heap has an entry for the deadline of queue `id`'s head.
    pub(super) fn arm_expiry(&mut self, id: QueueId) {
        let Some(q) = self.queues.get_mut(id) else {
            return;
        };
        let Some(at) = q.head_expires_at().filter(|&at| at != NEVER) else {
            return;
        };
        // A message expires once the clock is past its deadline (TTL 0: not in its own turn).
        let due = at.saturating_add(1);
        if due < q.expiry_due {
            q.expiry_due = due;
            self.push_timer(due, Timer::Head, id);
        }
    }

    /// The turn's budget ran out with an expired head in queue `id`: continue next turn.
    pub(super) fn expiry_due_now(&mut self, id: QueueId) {
        let now = self.clock_ms;
        if let Some(q) = self.queues.get_mut(id) {
            if now < q.expiry_due {
                q.expiry_due = now;
                self.push_timer(now, Timer::Head, id);
            }
        }
    }

    /// x-expires: the queue was used (declared, got from, or left by its last consumer), so
    /// its lease starts again.
    pub(super) fn renew_lease(&mut self, id: QueueId) {
        let now = self.clock_ms;
        let Some(q) = self.queues.get_mut(id) else {
            return;
        };
        let Some(ms) = q.args.expires_ms else { return };
        q.lease_until = now.saturating_add(ms);
        if q.lease_due == NEVER {
            q.lease_due = q.lease_until;
            let until = q.lease_until;
            self.push_timer(until, Timer::Lease, id);
        }
    }

    fn lease_due(&mut self, id: QueueId, due: u64) {
        let now = self.clock_ms;
        let Some(q) = self.queues.get_mut(id) else {
            return;
        };
        if q.lease_due != due {
            return;
        }
        q.lease_due = NEVER;
        if q.has_consumers() {
            // In use; the lease starts again when the last consumer goes.
            return;
        }
        if now < q.lease_until {
            q.lease_due = q.lease_until;
            let until = q.lease_until;
            self.push_timer(until, Timer::Lease, id);
            return;
        }
        self.budget = self.budget.saturating_sub(1);
        self.remove_queue(id);
    }
}
