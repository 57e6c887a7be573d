//! basic.publish inside the broker: routing a complete message through its exchange (and
//! exchange-to-exchange bindings, and the alternate exchange of any exchange that routes it
//! nowhere) into queues, writing it to the store once if it is persistent and reaches durable
//! queues. The hot path: no allocation once the scratch
//! vectors have grown, one hash lookup per exchange visited.

use super::entities::internal_exchange_refused;
use super::exchange::{Destination, Exchange, ExchangeId, MessageHeaders};
use super::handle::Id;
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
    /// `visited[slot] == walk` when the exchange in that registry slot was routed through in
    /// the current walk: a lookup per exchange, not a search, however wide or deep the
    /// exchange-to-exchange graph (a list's `contains` made a 1,000-exchange chain cost half a
    /// million comparisons per publish).
    visited: Vec<u32>,
    walk: u32,
    durable: Vec<u32>,
    /// The last default-exchange lookup: publishers usually repeat their routing key, and a
    /// byte compare is cheaper than hashing it. Ids are generation-checked, so a deleted queue
    /// cannot be hit through it.
    last_default: Option<(Box<[u8]>, QueueId)>,
}

impl RouteScratch {
    /// Starts a new walk: every exchange counts as not yet visited.
    fn next_walk(&mut self) -> u32 {
        self.walk = self.walk.wrapping_add(1);
        if self.walk == 0 {
            self.visited.fill(0);
            self.walk = 1;
        }
        self.walk
    }
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
        let walk = self.route.next_walk();
        let mut headers = MessageHeaders::new(headers);
        let mut pending = std::mem::take(&mut self.route.pending);
        let mut visited = std::mem::take(&mut self.route.visited);
        dests.clear();
        pending.clear();
        pending.push(root);
        while let Some(x) = pending.pop() {
            let slot = x.handle().slot();
            if slot >= visited.len() {
                visited.resize(slot + 1, 0);
            }
            if visited[slot] == walk {
                continue;
            }
            visited[slot] = walk;
            let start = dests.len();
            if let Some(xe) = self.exchanges.get(x) {
                xe.routes.route(routing_key, &mut headers, dests);
                if xe.alternate.is_some() {
                    if let Some(ae) = self.alternate_of(xe, &dests[start..]) {
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

    /// The alternate exchange of `x`, if it names one that exists and `found` (what `x`'s own
    /// bindings matched) holds nothing alive: bindings to a deleted queue or exchange linger
    /// while the cleanup removes them, and RabbitMQ would not see them. Out of line: only
    /// exchanges with an alternate get here, and others should not pay for its code.
    #[cold]
    #[inline(never)]
    fn alternate_of(&self, x: &Exchange, found: &[Destination]) -> Option<ExchangeId> {
        let alive = |d: &Destination| match *d {
            Destination::Queue(q) => self.queues.get(q).is_some(),
            Destination::Exchange(e) => self.exchanges.get(e).is_some(),
        };
        if found.iter().any(alive) {
            return None;
        }
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

#[cfg(test)]
mod tests {
    use super::super::{ExchangeFlags, QueueFlags};
    use super::*;
    use crate::broker::ConnId;

    /// A cyclic chain of exchanges is walked once per publish, and the walk counter wrapping
    /// around does not leave stale marks behind.
    #[test]
    fn exchange_cycles_are_walked_once_across_the_walk_counter_wrapping() {
        let mut b = Broker::new();
        let names: Vec<String> = (0..50).map(|i| format!("e{i}")).collect();
        for n in &names {
            b.declare_exchange(
                n.as_bytes(),
                b"fanout",
                ExchangeFlags::default(),
                FieldTable::EMPTY,
            )
            .expect("x");
        }
        for w in names.windows(2) {
            b.bind_exchange(w[1].as_bytes(), w[0].as_bytes(), b"", FieldTable::EMPTY)
                .expect("e2e");
        }
        b.bind_exchange(b"e0", b"e49", b"", FieldTable::EMPTY)
            .expect("cycle");
        let c = ConnId(1);
        b.declare_queue(c, b"q", QueueFlags::default(), FieldTable::EMPTY)
            .expect("q");
        b.bind_queue(c, b"q", b"e49", b"", FieldTable::EMPTY)
            .expect("bind");
        let m = Message::new(b"e0", b"", &[0, 0], b"", false);
        assert_eq!(b.publish(&m, None), Ok(1));
        b.route.walk = u32::MAX - 1;
        for _ in 0..3 {
            assert_eq!(b.publish(&m, None), Ok(1));
        }
        assert_eq!(b.route.walk, 2, "the counter wrapped past 0");
    }
}
