//! Dead-lettering as RabbitMQ 3.10 does it: a message a queue lets go of (rejected without
//! requeue, expired, dropped or refused by a length limit, returned past a quorum queue's
//! delivery limit) is republished through the queue's dead-letter exchange with the x-death
//! header rewritten (`headers.rs`), by the dead-letter routing key or else by its original
//! keys (routing key, CC and BCC), through the same routing and store path as a publish.
//! Cycles without a rejection are cut per target queue. Persistence is kept: the dead letter's
//! store record is written before the source's ack record, in the same group commit.
//!
//! Dead letters wait in a queue and are republished within the turn's work budget, so a
//! cascade (a dead letter overflowing another queue that dead-letters again) cannot stall the
//! loop; the queue of waiting dead letters is bounded (`DEAD_LETTERS_PENDING_MAX`).

use super::exchange::Destination;
use super::headers::{self, Death};
use super::queue::{QueueId, QueuedMessage};
use super::routing::RouteKeys;
use super::Broker;
use crate::limits::DEAD_LETTERS_PENDING_MAX;
use crate::protocol::{BasicProperties, FieldValue};
use log::error;
use std::collections::VecDeque;

/// Why a message is dead-lettered (x-death's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    Rejected,
    Expired,
    Maxlen,
    DeliveryLimit,
}

impl Reason {
    pub(super) fn name(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// A message waiting to be dead-lettered.
struct Pending {
    queue: QueueId,
    message: QueuedMessage,
    reason: Reason,
}

/// Dead letters waiting for the turn's budget.
#[derive(Default)]
pub(super) struct DeadLetters {
    pending: VecDeque<Pending>,
    /// Dead letters dropped because too many were waiting (reported once per burst).
    dropped: u64,
}

impl DeadLetters {
    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

impl Broker {
    /// Hands a message queue `queue` lets go of to its dead-letter exchange (later this turn,
    /// within the budget); without one the message is dropped now.
    pub(super) fn dead_letter(&mut self, queue: QueueId, message: QueuedMessage, reason: Reason) {
        let has_dlx = self
            .queues
            .get(queue)
            .is_some_and(|q| q.args.dead_letter_exchange.is_some());
        if !has_dlx {
            self.forget(message);
            return;
        }
        if self.dead_letters.pending.len() >= DEAD_LETTERS_PENDING_MAX {
            if self.dead_letters.dropped == 0 {
                error!(
                    "more than {DEAD_LETTERS_PENDING_MAX} dead letters waiting (a dead-lettering cascade?); dropping new ones"
                );
            }
            self.dead_letters.dropped += 1;
            self.forget(message);
            return;
        }
        self.dead_letters.pending.push_back(Pending {
            queue,
            message,
            reason,
        });
    }

    /// Republishes waiting dead letters while the turn's budget lasts.
    pub(super) fn run_dead_letters(&mut self) {
        while self.budget > 0 {
            let Some(p) = self.dead_letters.pending.pop_front() else {
                self.dead_letters.dropped = 0;
                return;
            };
            self.budget -= 1;
            self.republish(p);
        }
    }

    /// Routes one dead letter through its queue's dead-letter exchange, then lets the source
    /// forget it. A missing exchange or queue drops it (RabbitMQ says nothing either).
    fn republish(&mut self, p: Pending) {
        let Some(q) = self.queues.get(p.queue) else {
            self.forget(p.message);
            return;
        };
        let Some(dlx) = q.args.dead_letter_exchange.clone() else {
            self.forget(p.message);
            return;
        };
        let dlrk = q.args.dead_letter_routing_key.clone();
        let queue_name = q.name.clone();
        // The dead-letter exchange is looked up in the queue's own vhost.
        let dlx_id = self
            .vhosts
            .get(q.vhost)
            .and_then(|v| v.exchanges.get(&dlx[..]).copied());
        let Some(root) = dlx_id else {
            self.forget(p.message);
            return;
        };
        let old = p.message.message();
        let Ok(props) = BasicProperties::decode(old.properties()) else {
            self.forget(p.message);
            return;
        };
        let death = Death {
            queue: &queue_name,
            reason: p.reason.name(),
            exchange: old.exchange(),
            routing_key: old.routing_key(),
            time_secs: self.clock_ms / 1000,
        };
        let new_props = headers::dead_letter_properties(&props, &death, dlrk.is_some());
        let key: &[u8] = dlrk.as_deref().unwrap_or(old.routing_key());
        let msg = old.with_properties(&dlx, key, &new_props);
        let new_headers = BasicProperties::decode(msg.properties())
            .ok()
            .and_then(|p| p.headers);
        // By the dead-letter routing key, or by every key the message was published with.
        let keys = match dlrk {
            Some(_) => RouteKeys::single(msg.routing_key()),
            None => RouteKeys::of(msg.routing_key(), props.headers),
        };
        let mut dests = self.take_route_dests();
        self.collect_destinations(root, keys, new_headers, &mut dests);
        if p.reason != Reason::Rejected {
            if let Some(FieldValue::Array(deaths)) = new_headers.and_then(|h| h.get(b"x-death")) {
                let queues = &self.queues;
                dests.retain(|d| match d {
                    Destination::Queue(id) => queues
                        .get(*id)
                        .is_none_or(|q| !headers::is_cycle(&q.name, deaths)),
                    Destination::Exchange(_) => true,
                });
            }
        }
        self.enqueue_all(&mut dests, &msg, None);
        self.put_route_dests(dests);
        self.hold_reached(&msg, new_headers, None);
        // After the dead letter's own record, so a crash cannot lose both.
        self.forget(p.message);
    }
}
