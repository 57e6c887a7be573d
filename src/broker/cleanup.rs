//! What deletions leave behind, cleaned up a bounded amount at a time: the bindings of a
//! deleted queue or exchange, the messages of a deleted or purged queue, the exclusive queues
//! of a closed connection, and the unacked messages of a closed channel going back to their
//! queues. A deletion takes effect at once (the name is free, routing
//! skips the dead entity, a purged queue is empty); the cleanup behind it is done up to
//! `CLEANUP_WORK_INLINE_MAX` units by the command itself, so an ordinary deletion is complete
//! when it is answered, and the rest up to `CLEANUP_WORK_PER_TURN_MAX` units and
//! `CLEANUP_TIME_PER_TURN_MAX_MICROS` per loop turn (`Broker::clean_up`, from `commit_turn`). Deleting a queue with 30,000 bindings or closing a
//! connection that owns 10,000 exclusive queues cost 25 to 50 ms in one command before.
//!
//! While bindings to a dead destination remain, their source still counts as in use
//! (exchange.delete if-unused, auto-delete), exactly as long as the cleanup takes; and the
//! messages of a purged durable queue are acked in the store as the cleanup drops them, so
//! after a crash in between some of a large purge may be back (a clean stop finishes it).

use super::exchange::{Destination, ExchangeId};
use super::queue::{Purged, QueueId, Requeues};
use super::{Broker, ConnId};
use crate::limits::{
    CLEANUP_MESSAGES_PER_UNIT, CLEANUP_REQUEUES_PER_UNIT, CLEANUP_TIME_PER_TURN_MAX_MICROS,
    CLEANUP_UNITS_PER_CLOCK_READ, CLEANUP_WORK_INLINE_MAX, CLEANUP_WORK_PER_TURN_MAX,
};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One piece of cleanup.
pub(super) enum Task {
    /// Bindings whose destination (queue or exchange) was deleted.
    BindingsTo(Destination),
    /// Bindings whose source exchange was deleted.
    BindingsFrom(ExchangeId),
    /// Messages of a queue that was deleted or purged.
    Messages(Purged),
    /// Exclusive queues whose connection closed, still to be deleted.
    Orphans(Vec<QueueId>),
    /// Delivered messages going back to their queues, in the order they go back.
    Requeue(std::iter::Peekable<Requeues>),
}

/// The cleanup still to do, newest first: a command's own cleanup runs before older leftovers.
#[derive(Default)]
pub(super) struct Cleanup {
    tasks: VecDeque<Task>,
}

impl Cleanup {
    pub(super) fn push(&mut self, task: Task) {
        self.tasks.push_front(task);
    }
}

/// The owner of exclusive queues whose connection has closed, until they are deleted: no
/// connection is ever given this id (the reactor's ids are connection-table keys), so the
/// queues are locked to everyone, including a new connection that reuses the old one's id.
pub(super) const CLOSED_OWNER: ConnId = ConnId(u32::MAX);

impl Broker {
    /// Does deferred cleanup, at most `CLEANUP_WORK_PER_TURN_MAX` units and
    /// `CLEANUP_TIME_PER_TURN_MAX_MICROS` (a unit's cost varies with the machine's load).
    pub(super) fn clean_up(&mut self) {
        let deadline = Instant::now() + Duration::from_micros(CLEANUP_TIME_PER_TURN_MAX_MICROS);
        self.run_cleanup(CLEANUP_WORK_PER_TURN_MAX, Some(deadline));
    }

    /// The cleanup a deleting command does before it is answered.
    pub(super) fn clean_up_inline(&mut self) {
        self.run_cleanup(CLEANUP_WORK_INLINE_MAX, None);
    }

    /// Finishes all cleanup (a clean stop: purged messages must not come back).
    pub(super) fn clean_up_all(&mut self) {
        self.run_cleanup(usize::MAX, None);
    }

    /// Whether cleanup is left for the next turns (`has_background_work`: the loop does not
    /// sleep).
    pub(super) fn cleaning_up(&self) -> bool {
        !self.cleanup.tasks.is_empty()
    }

    /// Works through the tasks, newest first, until `budget` units are spent or `deadline`
    /// has passed (read every `CLEANUP_UNITS_PER_CLOCK_READ` units).
    fn run_cleanup(&mut self, mut budget: usize, deadline: Option<Instant>) {
        while budget > 0 {
            let Some(task) = self.cleanup.tasks.pop_front() else {
                return;
            };
            let before = self.cleanup.tasks.len();
            let slice = budget.min(CLEANUP_UNITS_PER_CLOCK_READ);
            let (spent, rest) = self.work_on(task, slice);
            budget = budget.saturating_sub(spent.max(1));
            if let Some(rest) = rest {
                // Tasks the work pushed (a deleted orphan's bindings) go before what is left.
                let pushed = self.cleanup.tasks.len() - before;
                self.cleanup.tasks.insert(pushed, rest);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
        }
    }

    /// Does up to `budget` units of `task`; returns the units spent and what is left of it.
    fn work_on(&mut self, task: Task, budget: usize) -> (usize, Option<Task>) {
        match task {
            Task::BindingsTo(dest) => {
                let mut sources = Vec::new();
                let n = self
                    .bindings
                    .remove_to(&mut self.exchanges, dest, budget, &mut sources);
                self.auto_delete_exchanges(&sources);
                let rest = self
                    .bindings
                    .has_dest(dest)
                    .then_some(Task::BindingsTo(dest));
                (n, rest)
            }
            Task::BindingsFrom(source) => {
                let n = self.bindings.remove_from(source, budget);
                let rest = self
                    .bindings
                    .has_source(source)
                    .then_some(Task::BindingsFrom(source));
                (n, rest)
            }
            Task::Messages(mut purged) => {
                let max = budget.saturating_mul(CLEANUP_MESSAGES_PER_UNIT);
                let n = purged.drop_some(&mut self.store, max);
                let rest = (purged.len() > 0).then_some(Task::Messages(purged));
                (n.div_ceil(CLEANUP_MESSAGES_PER_UNIT), rest)
            }
            Task::Requeue(mut messages) => {
                let max = budget.saturating_mul(CLEANUP_REQUEUES_PER_UNIT);
                let mut n = 0;
                while n < max {
                    let Some((queue, m)) = messages.next() else {
                        break;
                    };
                    self.requeue(queue, m);
                    n += 1;
                }
                let rest = messages.peek().is_some().then_some(Task::Requeue(messages));
                (n.div_ceil(CLEANUP_REQUEUES_PER_UNIT), rest)
            }
            Task::Orphans(mut ids) => {
                let Some(id) = ids.pop() else {
                    return (0, None);
                };
                self.remove_queue(id);
                (1, (!ids.is_empty()).then_some(Task::Orphans(ids)))
            }
        }
    }
}
