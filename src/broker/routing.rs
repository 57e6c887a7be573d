//! basic.publish inside the broker: routing a complete message through its exchange (and
//! exchange-to-exchange bindings, and the alternate exchange of any exchange that routes it
//! nowhere) into queues by its routing key and the keys of its CC and BCC headers, writing it
//! to the store once if it is persistent and reaches durable queues.
//! Dead letters and due delayed messages take the same path. The hot path: no allocation once
//! the scratch vectors have grown, one hash lookup per exchange visited, and for a plain queue
//! no look at the clock.

use super::args::Overflow;
use super::dead_letter::Reason;
use super::delayed::delay_of;
use super::entities::internal_exchange_refused;
use super::exchange::{Destination, Exchange, ExchangeId};
use super::message::Message;
use super::queue::{PagedRef, QueueId, QueuedMessage, NEVER};
use super::Broker;
use crate::error::AmqpError;
use crate::protocol::table::FieldArray;
use crate::protocol::{FieldTable, FieldValue};
use crate::store::{Location, StoreRef};

/// Routing scratch space reused between publishes, so a publish does not allocate to route.
#[derive(Default)]
pub(super) struct RouteScratch {
    dests: Vec<Destination>,
    pending: Vec<ExchangeId>,
    visited: Vec<ExchangeId>,
    durable: Vec<u32>,
    /// Delayed exchanges the last route reached with a message that asks for a delay.
    held: Vec<ExchangeId>,
    /// The last default-exchange lookup: publishers usually repeat their routing key, and a
    /// byte compare is cheaper than hashing it. Ids are generation-checked, so a deleted queue
    /// cannot be hit through it.
    last_default: Option<(Box<[u8]>, QueueId)>,
    /// The first queue the last publish went to that is over its flow mark.
    pub(super) pressured: Option<QueueId>,
}

/// What the publisher's properties say about routing, decoded once by the caller (the
/// session decodes only messages that have headers or an expiration).
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishProps<'a> {
    /// The headers table (headers exchanges, CC and BCC).
    pub headers: Option<FieldTable<'a>>,
    /// The expiration property, validated, in ms.
    pub expiration_ms: Option<u64>,
}

/// What a publish did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Routed {
    /// Queues the message reached, including any that refused it (a refused message is not
    /// returned to a mandatory publisher: RabbitMQ counts it as routed).
    pub queues: usize,
    /// A full queue with x-overflow reject-publish(-dlx) refused it: a confirming publisher
    /// gets basic.nack.
    pub refused: bool,
}

/// The keys a message is routed by: its routing key, then the keys of its CC and BCC headers
/// (RabbitMQ's sender-selected distribution).
#[derive(Debug, Clone, Copy)]
pub(super) struct RouteKeys<'a> {
    pub(super) key: &'a [u8],
    pub(super) cc: Option<FieldArray<'a>>,
    pub(super) bcc: Option<FieldArray<'a>>,
}

impl<'a> RouteKeys<'a> {
    /// The routing key and the CC and BCC keys found in `headers`.
    pub(super) fn of(key: &'a [u8], headers: Option<FieldTable<'a>>) -> Self {
        let array = |name: &[u8]| match headers.and_then(|h| h.get(name)) {
            Some(FieldValue::Array(a)) => Some(a),
            _ => None,
        };
        RouteKeys {
            key,
            cc: array(b"CC"),
            bcc: array(b"BCC"),
        }
    }

    /// Only the routing key.
    pub(super) fn single(key: &'a [u8]) -> Self {
        RouteKeys {
            key,
            cc: None,
            bcc: None,
        }
    }

    /// Every key, the routing key first.
    pub(super) fn each(&self, mut f: impl FnMut(&'a [u8])) {
        f(self.key);
        for list in [self.cc, self.bcc].into_iter().flatten() {
            for v in list.iter() {
                if let FieldValue::LongStr(k) = v {
                    f(k);
                }
            }
        }
    }
}

impl Broker {
    /// Routes `msg` through its exchange (and exchange-to-exchange bindings) into queues.
    /// Errors only if the exchange does not exist or is internal.
    pub fn publish(&mut self, msg: &Message, props: PublishProps<'_>) -> Result<Routed, AmqpError> {
        self.route.pressured = None;
        let exchange = msg.exchange();
        let keys = RouteKeys::of(msg.routing_key(), props.headers);
        if exchange.is_empty() && keys.cc.is_none() && keys.bcc.is_none() {
            let Some(id) = self.default_route(msg.routing_key()) else {
                if Self::is_reply_name(msg.routing_key()) {
                    self.route_reply(msg);
                }
                return Ok(Routed::default());
            };
            return Ok(self.enqueue_one(id, msg, props.expiration_ms));
        }
        let root = self.exchange_id(exchange)?;
        if self.exchanges.get(root).is_some_and(|x| x.internal) {
            return Err(internal_exchange_refused(exchange));
        }
        let mut dests = std::mem::take(&mut self.route.dests);
        self.collect_destinations(root, keys, props.headers, &mut dests);
        let routed = self.enqueue_all(&mut dests, msg, props.expiration_ms);
        self.route.dests = dests;
        self.hold_reached(msg, props.headers, props.expiration_ms);
        Ok(routed)
    }

    /// The fast path of the default exchange: one queue.
    fn enqueue_one(&mut self, id: QueueId, msg: &Message, expiration_ms: Option<u64>) -> Routed {
        let Some(q) = self.queues.get(id) else {
            return Routed::default();
        };
        if self.refusing_queues > 0 && q.is_limited() && q.refuses(msg.body_len()) {
            self.refuse(id, msg);
            return Routed {
                queues: 1,
                refused: true,
            };
        }
        let loc = match q.store_id {
            Some(sid) if msg.persistent || q.is_quorum() => {
                self.store.publish(msg, &[sid], self.clock_ms)
            }
            _ => None,
        };
        self.enqueue(id, msg, loc, expiration_ms);
        Routed {
            queues: 1,
            refused: false,
        }
    }

    /// Stores a message routed to `dests` once (if persistent, naming every durable queue that
    /// takes it) and enqueues it in each; queues that refuse it are taken out first.
    pub(super) fn enqueue_all(
        &mut self,
        dests: &mut Vec<Destination>,
        msg: &Message,
        expiration_ms: Option<u64>,
    ) -> Routed {
        let mut routed = Routed::default();
        if self.refusing_queues > 0 {
            routed = self.take_out_refusals(dests, msg);
        }
        // A persistent message is written once, naming every durable queue it went to; a
        // quorum queue keeps transient messages on disk too.
        let mut loc = None;
        if (msg.persistent || self.quorum_queues > 0) && self.store.enabled() {
            let mut durable = std::mem::take(&mut self.route.durable);
            durable.clear();
            durable.extend(dests.iter().filter_map(|d| {
                match d {
                    Destination::Queue(q) => self
                        .queues
                        .get(*q)
                        .filter(|q| msg.persistent || q.is_quorum())
                        .and_then(|q| q.store_id),
                    Destination::Exchange(_) => None,
                }
            }));
            if !durable.is_empty() {
                loc = self.store.publish(msg, &durable, self.clock_ms);
            }
            self.route.durable = durable;
        }
        for d in dests.iter() {
            if let Destination::Queue(q) = *d {
                routed.queues += self.enqueue(q, msg, loc, expiration_ms) as usize;
            }
        }
        routed
    }

    /// Takes out of `dests` the queues that refuse `msg` (x-overflow reject-publish, full);
    /// they count as routed (a refused message is not returned) and refused.
    fn take_out_refusals(&mut self, dests: &mut Vec<Destination>, msg: &Message) -> Routed {
        let mut routed = Routed::default();
        let mut i = 0;
        while i < dests.len() {
            let refused = match dests[i] {
                Destination::Queue(id) => self
                    .queues
                    .get(id)
                    .is_some_and(|q| q.is_limited() && q.refuses(msg.body_len())),
                Destination::Exchange(_) => false,
            };
            if let (true, Destination::Queue(id)) = (refused, dests[i]) {
                routed.queues += 1;
                routed.refused = true;
                self.refuse(id, msg);
                dests.swap_remove(i);
            } else {
                i += 1;
            }
        }
        routed
    }

    /// A full queue with x-overflow reject-publish(-dlx) refuses a message; with -dlx the
    /// message is dead-lettered (reason maxlen).
    fn refuse(&mut self, id: QueueId, msg: &Message) {
        let dlx = self
            .queues
            .get(id)
            .is_some_and(|q| q.args.overflow == Overflow::RejectPublishDlx);
        if dlx {
            let m = QueuedMessage::new(msg.clone(), NEVER, None);
            self.dead_letter(id, m, Reason::Maxlen);
        }
    }

    /// The queues a message reaches from `root` by `keys`, following exchange-to-exchange
    /// bindings (each exchange once), sorted and without duplicates. An exchange whose own
    /// bindings match nothing (neither queue nor exchange) hands the message to its alternate
    /// exchange, if that exists (RabbitMQ's `process_alternate`); visiting each exchange once
    /// ends AE cycles. A delayed exchange reached with a message that asks for a delay routes
    /// nothing now: it is noted for `hold_reached`.
    pub(super) fn collect_destinations(
        &mut self,
        root: ExchangeId,
        keys: RouteKeys<'_>,
        headers: Option<FieldTable<'_>>,
        dests: &mut Vec<Destination>,
    ) {
        let mut pending = std::mem::take(&mut self.route.pending);
        let mut visited = std::mem::take(&mut self.route.visited);
        dests.clear();
        pending.clear();
        visited.clear();
        self.route.held.clear();
        pending.push(root);
        while let Some(x) = pending.pop() {
            if visited.contains(&x) {
                continue;
            }
            visited.push(x);
            let start = dests.len();
            if let Some(xe) = self.exchanges.get(x) {
                if xe.delayed && delay_of(headers).is_some() {
                    self.route.held.push(x);
                } else if xe.name.is_empty() {
                    // The default exchange: every queue is bound to it by its name.
                    let names = &self.queue_names;
                    keys.each(|k| dests.extend(names.get(k).map(|&q| Destination::Queue(q))));
                } else {
                    keys.each(|k| xe.routes.route(k, headers, dests));
                    if dests.len() == start {
                        if let Some(ae) = self.alternate_of(xe) {
                            pending.push(ae);
                        }
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

    /// Holds `msg` in every delayed exchange the last route noted.
    pub(super) fn hold_reached(
        &mut self,
        msg: &Message,
        headers: Option<FieldTable<'_>>,
        expiration_ms: Option<u64>,
    ) {
        if self.route.held.is_empty() {
            return;
        }
        let Some(delay) = delay_of(headers) else {
            return;
        };
        for x in std::mem::take(&mut self.route.held) {
            self.hold(x, msg, delay, expiration_ms);
        }
    }

    /// The routing scratch list, for a route outside `publish` (dead letters, delayed
    /// messages); give it back with `put_route_dests`.
    pub(super) fn take_route_dests(&mut self) -> Vec<Destination> {
        std::mem::take(&mut self.route.dests)
    }

    pub(super) fn put_route_dests(&mut self, dests: Vec<Destination>) {
        self.route.dests = dests;
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
    /// only on disk. `loc` is the message's store record if it is persistent; `expiration_ms`
    /// its per-message TTL. False if the queue is gone.
    pub(super) fn enqueue(
        &mut self,
        id: QueueId,
        msg: &Message,
        loc: Option<Location>,
        expiration_ms: Option<u64>,
    ) -> bool {
        let clock = self.clock_ms;
        let Some(q) = self.queues.get_mut(id) else {
            return false;
        };
        let expires_at = match (q.args.message_ttl_ms, expiration_ms) {
            (None, None) => NEVER,
            (ttl, exp) => {
                let ttl = ttl.unwrap_or(u64::MAX).min(exp.unwrap_or(u64::MAX));
                clock.saturating_add(ttl)
            }
        };
        let store_ref = |sid| loc.map(|l| StoreRef::at(l, sid));
        match q.store_id {
            Some(sid) if q.wants_paging(msg.priority()) => {
                let loc = match loc {
                    Some(l) => Some(l),
                    None => self.store.page_out(msg, sid, clock),
                };
                match loc {
                    Some(loc) => q.push_paged(
                        msg.priority(),
                        PagedRef {
                            loc,
                            expires_at,
                            body_len: msg.body_len() as u32,
                            redelivered: false,
                        },
                    ),
                    None => q.push(QueuedMessage::new(msg.clone(), expires_at, None)),
                }
            }
            sid => q.push(QueuedMessage::new(
                msg.clone(),
                expires_at,
                sid.and_then(store_ref),
            )),
        }
        let has_consumers = q.has_consumers();
        let limited = q.is_limited();
        // Before any trim to a length limit: such a queue is bounded by its limit anyway.
        if has_consumers && self.route.pressured.is_none() && q.flow_pressure() {
            self.route.pressured = Some(id);
        }
        if expires_at != NEVER {
            q.may_expire = true;
            self.arm_expiry(id);
        }
        if limited {
            self.limit_length(id, has_consumers);
        }
        if has_consumers {
            self.mark_ready(id);
        }
        true
    }
}
