//! basic.publish inside the broker: routing a complete message through its exchange (and
//! exchange-to-exchange bindings, and the alternate exchange of any exchange that routes it
//! nowhere) into queues, writing it to the store once if it is persistent and reaches durable
//! queues. The hot path: no allocation once the scratch
//! vectors have grown, one hash lookup per exchange visited.

use super::entities::internal_exchange_refused;
use super::exchange::{Destination, Exchange, ExchangeId};
use super::message::Message;
use super::queue::QueueId;
use super::Broker;
use crate::error::AmqpError;
use crate::protocol::FieldTable;
use crate::store::{Location, StoreRef};

/// Routing scratch space reused between publishes, so a publish does not allocate to route.
#[derive(Default)]
pub(super) struct RouteScratch {
    dests: Vec<Destination>,
    pending: Vec<ExchangeId>,
    visited: Vec<ExchangeId>,
    durable: Vec<u32>,
    /// The last default-exchange lookup: publishers usually repeat their routing key, and a
    /// byte compare is cheaper than hashing it. Ids are generation-checked, so a deleted queue
    /// cannot be hit through it.
    last_default: Option<(Box<[u8]>, QueueId)>,
}

impl Broker {
    /// Routes `msg` through its exchange (and exchange-to-exchange bindings) into queues.
    /// Returns how many queues took it. Errors only if the exchange does not exist or is
    /// internal.
    pub fn publish(
        &mut self,
        msg: &Message,
        headers: Option<FieldTable<'_>>,
    ) -> Result<usize, AmqpError> {
        let exchange = msg.exchange();
        if exchange.is_empty() {
            let Some(id) = self.default_route(msg.routing_key()) else {
                if Self::is_reply_name(msg.routing_key()) {
                    self.route_reply(msg);
                }
                return Ok(0);
            };
            let loc = match self.queues.get(id).and_then(|q| q.store_id) {
                Some(sid) if msg.persistent => self.store.publish(msg, &[sid]),
                _ => None,
            };
            self.enqueue(id, msg, loc);
            return Ok(1);
        }
        let root = self.exchange_id(exchange)?;
        if self.exchanges.get(root).is_some_and(|x| x.internal) {
            return Err(internal_exchange_refused(exchange));
        }
        let mut dests = std::mem::take(&mut self.route.dests);
        self.collect_destinations(root, msg.routing_key(), headers, &mut dests);
        // A persistent message is written once, naming every durable queue it went to.
        let mut loc = None;
        if msg.persistent && self.store.enabled() {
            let mut durable = std::mem::take(&mut self.route.durable);
            durable.clear();
            durable.extend(dests.iter().filter_map(|d| match d {
                Destination::Queue(q) => self.queues.get(*q).and_then(|q| q.store_id),
                Destination::Exchange(_) => None,
            }));
            if !durable.is_empty() {
                loc = self.store.publish(msg, &durable);
            }
            self.route.durable = durable;
        }
        let mut routed = 0;
        for d in &dests {
            if let Destination::Queue(q) = *d {
                if self.queues.get(q).is_none() {
                    continue;
                }
                self.enqueue(q, msg, loc);
                routed += 1;
            }
        }
        self.route.dests = dests;
        Ok(routed)
    }

    /// The queues a message reaches from `root`, following exchange-to-exchange bindings
    /// (each exchange once), sorted and without duplicates. An exchange whose own bindings
    /// match nothing (neither queue nor exchange) hands the message to its alternate exchange,
    /// if that exists (RabbitMQ's `process_alternate`); visiting each exchange once ends AE
    /// cycles.
    fn collect_destinations(
        &mut self,
        root: ExchangeId,
        routing_key: &[u8],
        headers: Option<FieldTable<'_>>,
        dests: &mut Vec<Destination>,
    ) {
        let mut pending = std::mem::take(&mut self.route.pending);
        let mut visited = std::mem::take(&mut self.route.visited);
        dests.clear();
        pending.clear();
        visited.clear();
        pending.push(root);
        while let Some(x) = pending.pop() {
            if visited.contains(&x) {
                continue;
            }
            visited.push(x);
            let start = dests.len();
            if let Some(xe) = self.exchanges.get(x) {
                xe.routes.route(routing_key, headers, dests);
                if dests.len() == start {
                    if let Some(ae) = self.alternate_of(xe) {
                        pending.push(ae);
                    }
                }
            }
            // Exchanges found are routed through in turn; only queues stay in `dests`.
            let mut i = start;
            while i < dests.len() {
                if let Destination::Exchange(e) = dests[i] {
                    pending.push(e);
                    dests.swap_remove(i);
                } else {
                    i += 1;
                }
            }
        }
        dests.sort_unstable();
        dests.dedup();
        self.route.pending = pending;
        self.route.visited = visited;
    }

    /// The alternate exchange of `x`, if it names one that exists. Out of line: only
    /// unroutable messages get here, and routed ones should not pay for its code.
    #[cold]
    #[inline(never)]
    fn alternate_of(&self, x: &Exchange) -> Option<ExchangeId> {
        let name = x.alternate.as_deref()?;
        self.exchange_names.get(name).copied()
    }

    /// The queue the default exchange routes `key` to.
    fn default_route(&mut self, key: &[u8]) -> Option<QueueId> {
        if let Some((k, id)) = &self.route.last_default {
            if &**k == key && self.queues.get(*id).is_some() {
                return Some(*id);
            }
        }
        let id = *self.queue_names.get(key)?;
        self.route.last_default = Some((key.into(), id));
        Some(id)
    }

    /// Puts a routed message into a queue: in memory, or (a durable queue past its window)
    /// only on disk. `loc` is the message's store record if it is persistent.
    fn enqueue(&mut self, id: QueueId, msg: &Message, loc: Option<Location>) {
        let Some(q) = self.queues.get_mut(id) else {
            return;
        };
        match q.store_id {
            Some(sid) if q.wants_paging() => {
                let loc = match loc {
                    Some(l) => Some(l),
                    None => self.store.page_out(msg, sid),
                };
                match loc {
                    Some(l) => q.push_paged(l, false),
                    None => q.push(msg.clone(), None),
                }
            }
            Some(sid) => q.push(msg.clone(), loc.map(|l| StoreRef::at(l, sid))),
            None => q.push(msg.clone(), None),
        }
        if q.has_consumers() {
            self.mark_ready(id);
        }
    }
}
