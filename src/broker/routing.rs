//! basic.publish inside the broker: finding the exchange a publish names in its vhost
//! (`publish_target`), then routing the complete message through it (and exchange-to-exchange
//! bindings, and the alternate exchange of any exchange that routes it nowhere) into queues by
//! its routing key and the keys of its CC and BCC headers, writing it to the store once if it
//! is persistent and reaches durable queues. Dead letters and due delayed messages take the
//! same path. The hot path: no allocation once the scratch vectors have grown, one hash lookup
//! per exchange visited, and for a plain queue no look at the clock.

use super::args::Overflow;
use super::dead_letter::Reason;
use super::delayed::delay_of;
use super::entities::internal_exchange_refused;
use super::exchange::{Destination, Exchange, ExchangeId, ExchangeKind, MessageHeaders};
use super::handle::Id;
use super::message::Message;
use super::queue::{PagedRef, QueueId, QueuedMessage, NEVER};
use super::{Actor, Broker, VhostId};
use crate::error::AmqpError;
use crate::protocol::table::FieldArray;
use crate::protocol::{FieldTable, FieldValue};
use crate::store::{Location, StoreRef};

/// The exchange a publish goes through, found before the message is routed so that the
/// session can make RabbitMQ's checks in its order (write permission, exchange exists, not
/// internal, topic permission, user_id) before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishTarget {
    /// The default exchange of a vhost: the queue named by the routing key.
    Default(VhostId),
    Exchange {
        id: ExchangeId,
        topic: bool,
    },
}

impl PublishTarget {
    /// Topic permissions apply to publishes to topic exchanges only.
    pub fn is_topic(self) -> bool {
        matches!(self, PublishTarget::Exchange { topic: true, .. })
    }
}

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
    /// Delayed exchanges the last route reached with a message that asks for a delay.
    held: Vec<ExchangeId>,
    /// The last default-exchange lookup: publishers usually repeat their routing key, and
    /// comparing the vhost and the bytes is cheaper than hashing. Ids are generation-checked,
    /// so a deleted queue cannot be hit through it.
    last_default: Option<(VhostId, Box<[u8]>, QueueId)>,
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
    /// The exchange `exchange` names in the actor's vhost: 404 if it does not exist, 403 if it
    /// is internal (RabbitMQ's checks after write permission, before topic permission).
    pub fn publish_target(&self, who: &Actor, exchange: &[u8]) -> Result<PublishTarget, AmqpError> {
        if exchange.is_empty() {
            return Ok(PublishTarget::Default(who.vhost));
        }
        let id = self.exchange_id(who, exchange)?;
        let x = self.exchanges.get(id);
        if x.is_some_and(|x| x.internal) {
            return Err(internal_exchange_refused(who.vhost_name(), exchange));
        }
        let topic = x.is_some_and(|x| x.kind() == ExchangeKind::Topic);
        Ok(PublishTarget::Exchange { id, topic })
    }

    /// Routes `msg` through `target` (and exchange-to-exchange bindings) into queues; an
    /// exchange deleted since it was found routes nowhere.
    pub fn publish(
        &mut self,
        target: PublishTarget,
        msg: &Message,
        props: PublishProps<'_>,
    ) -> Routed {
        let routed = self.route(target, msg, props);
        self.counters.publish += 1;
        self.counters.unroutable += u64::from(routed.queues == 0);
        if let PublishTarget::Exchange { id, .. } = target {
            if let Some(x) = self.exchanges.get_mut(id) {
                x.stats.now.publish_in += 1;
                x.stats.now.publish_out += routed.queues as u64;
            }
        }
        routed
    }

    fn route(&mut self, target: PublishTarget, msg: &Message, props: PublishProps<'_>) -> Routed {
        self.route.pressured = None;
        let keys = RouteKeys::of(msg.routing_key(), props.headers);
        let root = match target {
            PublishTarget::Exchange { id, .. } => id,
            PublishTarget::Default(vhost) if keys.cc.is_none() && keys.bcc.is_none() => {
                let Some(id) = self.default_route(vhost, msg.routing_key()) else {
                    if Self::is_reply_name(msg.routing_key()) {
                        self.route_reply(msg);
                    }
                    return Routed::default();
                };
                return self.enqueue_one(id, msg, props.expiration_ms);
            }
            // CC or BCC: the default exchange routes each key by queue name.
            PublishTarget::Default(vhost) => match self.default_exchange(vhost) {
                Some(id) => id,
                None => return Routed::default(),
            },
        };
        let mut dests = std::mem::take(&mut self.route.dests);
        self.collect_destinations(root, keys, props.headers, &mut dests);
        let routed = self.enqueue_all(&mut dests, msg, props.expiration_ms);
        self.route.dests = dests;
        self.hold_reached(msg, props.headers, props.expiration_ms);
        routed
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
        let walk = self.route.next_walk();
        let mut lookup = MessageHeaders::new(headers);
        let mut pending = std::mem::take(&mut self.route.pending);
        let mut visited = std::mem::take(&mut self.route.visited);
        dests.clear();
        pending.clear();
        self.route.held.clear();
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
                if xe.delayed && delay_of(headers).is_some() {
                    self.route.held.push(x);
                } else if xe.name.is_empty() {
                    // The default exchange: every queue of its vhost is bound to it by name.
                    if let Some(v) = self.vhosts.get(xe.vhost) {
                        let names = &v.queues;
                        keys.each(|k| dests.extend(names.get(k).map(|&q| Destination::Queue(q))));
                    }
                } else {
                    keys.each(|k| xe.routes.route(k, &mut lookup, dests));
                    if xe.alternate.is_some() {
                        if let Some(ae) = self.alternate_of(xe, &dests[start..]) {
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

    /// The alternate exchange of `x` in its vhost, if it names one that exists and `found`
    /// (what `x`'s own bindings matched) holds nothing alive: bindings to a deleted queue or
    /// exchange linger while the cleanup removes them, and RabbitMQ would not see them. Out of
    /// line: only exchanges with an alternate get here, and others should not pay for its code.
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
        self.vhosts.get(x.vhost)?.exchanges.get(name).copied()
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

    /// The default exchange of `vhost` as an exchange (routing by CC and BCC keys too).
    fn default_exchange(&self, vhost: VhostId) -> Option<ExchangeId> {
        self.vhosts.get(vhost)?.exchanges.get(&b""[..]).copied()
    }

    /// The queue the default exchange of `vhost` routes `key` to.
    fn default_route(&mut self, vhost: VhostId, key: &[u8]) -> Option<QueueId> {
        if let Some((v, k, id)) = &self.route.last_default {
            if *v == vhost && &**k == key && self.queues.get(*id).is_some() {
                return Some(*id);
            }
        }
        let id = *self.vhosts.get(vhost)?.queues.get(key)?;
        self.route.last_default = Some((vhost, key.into(), id));
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
        q.stats.now.publish += 1;
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
        let who = b.internal_actor(ConnId(1), "/").expect("vhost /");
        let names: Vec<String> = (0..50).map(|i| format!("e{i}")).collect();
        for n in &names {
            b.declare_exchange(
                &who,
                n.as_bytes(),
                b"fanout",
                ExchangeFlags::default(),
                FieldTable::EMPTY,
            )
            .expect("x");
        }
        for w in names.windows(2) {
            b.bind_exchange(
                &who,
                w[1].as_bytes(),
                w[0].as_bytes(),
                b"",
                FieldTable::EMPTY,
            )
            .expect("e2e");
        }
        b.bind_exchange(&who, b"e0", b"e49", b"", FieldTable::EMPTY)
            .expect("cycle");
        b.declare_queue(&who, b"q", QueueFlags::default(), FieldTable::EMPTY)
            .expect("q");
        b.bind_queue(&who, b"q", b"e49", b"", FieldTable::EMPTY)
            .expect("bind");
        let m = Message::new(b"e0", b"", &[0, 0], b"", false);
        let target = b.publish_target(&who, m.exchange()).expect("e0");
        let route = |b: &mut Broker| b.publish(target, &m, PublishProps::default()).queues;
        assert_eq!(route(&mut b), 1);
        b.route.walk = u32::MAX - 1;
        for _ in 0..3 {
            assert_eq!(route(&mut b), 1);
        }
        assert_eq!(b.route.walk, 2, "the counter wrapped past 0");
    }
}
