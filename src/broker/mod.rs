//! The broker's state for the one vhost "/": exchanges, queues, bindings and consumers, and
//! the operations sessions call on them. No sockets, no frames: names and flags in, results or
//! `AmqpError`s (with RabbitMQ's texts) out. Effects on other connections (a consumer cancelled
//! because its queue was deleted) are queued as `Notice`s for the session layer.

pub mod exchange;
pub mod handle;
pub mod message;
pub mod queue;
pub mod topic_trie;

use crate::error::{AmqpError, Show};
use crate::protocol::FieldTable;
use crate::store::definitions::{BindingRef, DefChange};
use crate::store::{Location, Recovery, Store, StoreRef};
use exchange::{Binding, Destination, Exchange, ExchangeKind};
use handle::Registry;
use message::Message;
use queue::{ConnId, ConsumerId, ExchangeId, Queue, QueueBinding, QueueId};
use std::collections::HashMap;

pub const VHOST: &str = "/";

/// A subscription of a channel to a queue.
pub struct Consumer {
    pub conn: ConnId,
    pub channel: u16,
    pub tag: Box<[u8]>,
    pub queue: QueueId,
    pub no_ack: bool,
    pub exclusive: bool,
    /// basic.qos prefetch_count (global=false) in force when the consumer was created; 0 = none.
    pub prefetch: u16,
    /// Deliveries to this consumer not yet acked.
    pub unacked: u32,
}

/// Something a session must be told about that another connection's action caused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The consumer's queue was deleted; the client gets basic.cancel if it asked for that.
    ConsumerCancelled {
        conn: ConnId,
        channel: u16,
        tag: Box<[u8]>,
    },
}

/// What queue.declare answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclareOk {
    pub queue: QueueId,
    pub name: Box<[u8]>,
    pub message_count: u32,
    pub consumer_count: u32,
}

/// Declaration flags of queue.declare.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueFlags {
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
}

/// Declaration flags of exchange.declare.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExchangeFlags {
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
}

pub struct Broker {
    pub exchanges: Registry<Exchange>,
    exchange_names: HashMap<Box<[u8]>, ExchangeId>,
    pub queues: Registry<Queue>,
    queue_names: HashMap<Box<[u8]>, QueueId>,
    pub consumers: Registry<Consumer>,
    /// Queues that may be able to deliver: new messages, consumers or credit.
    dirty: Vec<QueueId>,
    pub notices: Vec<Notice>,
    /// Reused routing scratch space, so a publish does not allocate to route.
    route_dests: Vec<Destination>,
    route_pending: Vec<ExchangeId>,
    route_visited: Vec<ExchangeId>,
    route_durable: Vec<u32>,
    /// The last default-exchange lookup: publishers usually repeat their routing key, and a
    /// byte compare is cheaper than hashing it. Handles are generation-checked, so a deleted
    /// queue cannot be hit through it.
    last_default_route: Option<(Box<[u8]>, QueueId)>,
    rng: u64,
    pub store: Store,
    next_queue_store_id: u32,
}

fn not_found_queue(name: &[u8]) -> AmqpError {
    AmqpError::not_found(format_args!("no queue '{}' in vhost '{VHOST}'", Show(name)))
}

fn not_found_exchange(name: &[u8]) -> AmqpError {
    AmqpError::not_found(format_args!(
        "no exchange '{}' in vhost '{VHOST}'",
        Show(name)
    ))
}

fn inequivalent(
    arg: &str,
    kind: &str,
    name: &[u8],
    received: impl std::fmt::Display,
    current: impl std::fmt::Display,
) -> AmqpError {
    AmqpError::precondition(format_args!(
        "inequivalent arg '{arg}' for {kind} '{}' in vhost '{VHOST}': received '{received}' but current is '{current}'",
        Show(name)
    ))
}

/// The predeclared exchanges of every RabbitMQ vhost.
const STANDARD_EXCHANGES: [(&str, ExchangeKind); 6] = [
    ("", ExchangeKind::Direct),
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

impl Default for Broker {
    fn default() -> Self {
        Self::new()
    }
}

impl Broker {
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            ^ ((std::process::id() as u64) << 32);
        let mut b = Broker {
            exchanges: Registry::default(),
            exchange_names: HashMap::new(),
            queues: Registry::default(),
            queue_names: HashMap::new(),
            consumers: Registry::default(),
            dirty: Vec::new(),
            notices: Vec::new(),
            route_dests: Vec::new(),
            route_pending: Vec::new(),
            route_visited: Vec::new(),
            route_durable: Vec::new(),
            last_default_route: None,
            rng: seed | 1,
            store: Store::disabled(),
            next_queue_store_id: 1,
        };
        for (name, kind) in STANDARD_EXCHANGES {
            b.insert_exchange(Exchange::new(
                name.as_bytes().into(),
                kind,
                true,
                false,
                false,
                Box::new([]),
            ));
        }
        b
    }

    fn insert_exchange(&mut self, x: Exchange) -> ExchangeId {
        let name = x.name.clone();
        let id = self.exchanges.insert(x);
        self.exchange_names.insert(name, id);
        id
    }

    /// xorshift64*: unpredictable enough for generated names, and needs no crate.
    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `prefix` followed by 22 url-safe base64 characters (128 random bits), like RabbitMQ's
    /// amq.gen- and amq.ctag- names.
    pub fn generate_name(&mut self, prefix: &str) -> Box<[u8]> {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = Vec::with_capacity(prefix.len() + 22);
        out.extend_from_slice(prefix.as_bytes());
        let (mut a, mut b) = (self.random(), self.random());
        for i in 0..22 {
            let v = if i < 11 {
                let v = a & 63;
                a >>= 6;
                v
            } else {
                let v = b & 63;
                b >>= 6;
                v
            };
            out.push(ALPHABET[v as usize]);
        }
        out.into_boxed_slice()
    }

    // ---- exchanges -------------------------------------------------------------------------

    pub fn exchange_id(&self, name: &[u8]) -> Result<ExchangeId, AmqpError> {
        self.exchange_names
            .get(name)
            .copied()
            .ok_or_else(|| not_found_exchange(name))
    }

    pub fn declare_exchange(
        &mut self,
        name: &[u8],
        kind: &[u8],
        flags: ExchangeFlags,
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        if let Some(&id) = self.exchange_names.get(name) {
            let Some(x) = self.exchanges.get(id) else {
                return Err(not_found_exchange(name));
            };
            if flags.passive {
                return Ok(());
            }
            if name.is_empty() {
                return Err(AmqpError::access_refused(
                    "operation not permitted on the default exchange",
                ));
            }
            if x.kind.name().as_bytes() != kind {
                return Err(inequivalent(
                    "type",
                    "exchange",
                    name,
                    Show(kind),
                    x.kind.name(),
                ));
            }
            let flags_now = [
                ("durable", flags.durable, x.durable),
                ("auto_delete", flags.auto_delete, x.auto_delete),
                ("internal", flags.internal, x.internal),
            ];
            if let Some((arg, received, current)) = flags_now.into_iter().find(|(_, r, c)| r != c) {
                return Err(inequivalent(arg, "exchange", name, received, current));
            }
            return Ok(());
        }
        if flags.passive {
            return Err(not_found_exchange(name));
        }
        if name.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if name.starts_with(b"amq.") {
            return Err(AmqpError::access_refused(format_args!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                Show(name)
            )));
        }
        let Some(kind) = ExchangeKind::parse(kind) else {
            return Err(AmqpError::command_invalid(format_args!(
                "unknown exchange type '{}'",
                Show(kind)
            )));
        };
        let x = Exchange::new(
            name.into(),
            kind,
            flags.durable,
            flags.auto_delete,
            flags.internal,
            args.raw().into(),
        );
        self.insert_exchange(x);
        if flags.durable {
            let (n, a) = (kind.name().as_bytes(), args.raw());
            self.store.record(DefChange::exchange(
                name,
                n,
                flags.auto_delete,
                flags.internal,
                a,
            ));
        }
        Ok(())
    }

    pub fn delete_exchange(&mut self, name: &[u8], if_unused: bool) -> Result<(), AmqpError> {
        if name.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if name.starts_with(b"amq.") {
            return Err(AmqpError::access_refused(format_args!(
                "deletion of system exchange '{}' in vhost '{VHOST}' not allowed",
                Show(name)
            )));
        }
        let Some(&id) = self.exchange_names.get(name) else {
            // Deleting a missing exchange succeeds (RabbitMQ 3.x).
            return Ok(());
        };
        if if_unused && self.exchanges.get(id).is_some_and(|x| x.has_bindings()) {
            return Err(AmqpError::precondition(format_args!(
                "exchange '{}' in vhost '{VHOST}' in use",
                Show(name)
            )));
        }
        self.remove_exchange(id);
        Ok(())
    }

    fn remove_exchange(&mut self, id: ExchangeId) {
        let Some(mut x) = self.exchanges.remove(id) else {
            return;
        };
        self.exchange_names.remove(&x.name);
        if x.durable {
            self.store
                .record(DefChange::ExchangeDeleted { name: &x.name });
        }
        let bindings: Vec<Binding> = x.bindings().cloned().collect();
        for b in &bindings {
            x.unbind(b);
            self.forget_binding_at_destination(id, b);
        }
        // Bindings where this exchange is the destination live in their sources.
        let sources: Vec<ExchangeId> = self.exchanges.iter().map(|(h, _)| h).collect();
        for s in sources {
            let removed = self
                .exchanges
                .get_mut(s)
                .map(|src| src.unbind_destination(Destination::Exchange(id)));
            if removed.is_some_and(|r| !r.is_empty()) {
                self.maybe_auto_delete_exchange(s);
            }
        }
    }

    /// Drops the destination-side record of a binding that its source no longer has.
    fn forget_binding_at_destination(&mut self, source: ExchangeId, b: &Binding) {
        if let Destination::Queue(q) = b.dest {
            if let Some(q) = self.queues.get_mut(q) {
                if let Some(i) = q
                    .bindings
                    .iter()
                    .position(|qb| qb.exchange == source && qb.key == b.key && qb.args == b.args)
                {
                    q.bindings.swap_remove(i);
                }
            }
        }
    }

    fn maybe_auto_delete_exchange(&mut self, id: ExchangeId) {
        if self
            .exchanges
            .get(id)
            .is_some_and(|x| x.auto_delete && !x.has_bindings())
        {
            self.remove_exchange(id);
        }
    }

    /// exchange.bind / queue.bind with the source exchange looked up and checked.
    fn source_for_binding(&self, exchange: &[u8]) -> Result<ExchangeId, AmqpError> {
        if exchange.is_empty() {
            return Err(AmqpError::access_refused(format_args!(
                "operation not permitted on the default exchange"
            )));
        }
        self.exchange_id(exchange)
    }

    pub fn bind_queue(
        &mut self,
        conn: ConnId,
        queue: &[u8],
        exchange: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let q = self.queue_for(conn, queue)?;
        let x = self.source_for_binding(exchange)?;
        let b = Binding {
            dest: Destination::Queue(q),
            key: key.into(),
            args: args.raw().into(),
        };
        let Some(xe) = self.exchanges.get_mut(x) else {
            return Err(not_found_exchange(exchange));
        };
        let durable = xe.durable;
        if xe.bind(b) {
            self.record_queue_binding(true, durable, q, exchange, key, args.raw());
            if let Some(qe) = self.queues.get_mut(q) {
                qe.bindings.push(QueueBinding {
                    exchange: x,
                    key: key.into(),
                    args: args.raw().into(),
                });
            }
        }
        Ok(())
    }

    pub fn unbind_queue(
        &mut self,
        conn: ConnId,
        queue: &[u8],
        exchange: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let q = self.queue_for(conn, queue)?;
        let x = self.source_for_binding(exchange)?;
        let b = Binding {
            dest: Destination::Queue(q),
            key: key.into(),
            args: args.raw().into(),
        };
        if self.exchanges.get_mut(x).is_some_and(|xe| xe.unbind(&b)) {
            let durable = self.exchanges.get(x).is_some_and(|xe| xe.durable);
            self.record_queue_binding(false, durable, q, exchange, key, args.raw());
            self.forget_binding_at_destination(x, &b);
            self.maybe_auto_delete_exchange(x);
        }
        Ok(())
    }

    pub fn bind_exchange(
        &mut self,
        destination: &[u8],
        source: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let s = self.source_for_binding(source)?;
        let d = self.source_for_binding(destination)?;
        let b = Binding {
            dest: Destination::Exchange(d),
            key: key.into(),
            args: args.raw().into(),
        };
        let bound = self.exchanges.get_mut(s).is_some_and(|src| src.bind(b));
        if bound {
            self.record_exchange_binding(true, s, d, key, args.raw());
        }
        Ok(())
    }

    pub fn unbind_exchange(
        &mut self,
        destination: &[u8],
        source: &[u8],
        key: &[u8],
        args: FieldTable<'_>,
    ) -> Result<(), AmqpError> {
        let s = self.source_for_binding(source)?;
        let d = self.source_for_binding(destination)?;
        let b = Binding {
            dest: Destination::Exchange(d),
            key: key.into(),
            args: args.raw().into(),
        };
        if self.exchanges.get_mut(s).is_some_and(|src| src.unbind(&b)) {
            self.record_exchange_binding(false, s, d, key, args.raw());
            self.maybe_auto_delete_exchange(s);
        }
        Ok(())
    }

    // ---- queues ----------------------------------------------------------------------------

    /// Looks a queue up for an operation by `conn`, enforcing exclusive ownership.
    pub fn queue_for(&self, conn: ConnId, name: &[u8]) -> Result<QueueId, AmqpError> {
        let id = *self
            .queue_names
            .get(name)
            .ok_or_else(|| not_found_queue(name))?;
        let q = self.queues.get(id).ok_or_else(|| not_found_queue(name))?;
        if q.owner.is_some_and(|o| o != conn) {
            return Err(AmqpError::resource_locked(format_args!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '{VHOST}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
                Show(name)
            )));
        }
        Ok(id)
    }

    pub fn queue_id(&self, name: &[u8]) -> Option<QueueId> {
        self.queue_names.get(name).copied()
    }

    pub fn declare_queue(
        &mut self,
        conn: ConnId,
        name: &[u8],
        flags: QueueFlags,
        args: FieldTable<'_>,
    ) -> Result<DeclareOk, AmqpError> {
        let generated = name.is_empty() && !flags.passive;
        let name: Box<[u8]> = if generated {
            self.generate_name("amq.gen-")
        } else {
            name.into()
        };
        if let Some(&id) = self.queue_names.get(&name) {
            let id = self.queue_for(conn, &name).map(|_| id)?;
            let q = self.queues.get(id).ok_or_else(|| not_found_queue(&name))?;
            if !flags.passive {
                if q.durable != flags.durable {
                    return Err(inequivalent(
                        "durable",
                        "queue",
                        &name,
                        flags.durable,
                        q.durable,
                    ));
                }
                if q.owner.is_some() != flags.exclusive {
                    return Err(AmqpError::resource_locked(format_args!(
                        "cannot obtain exclusive access to locked queue '{}' in vhost '{VHOST}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
                        Show(&name)
                    )));
                }
                if q.auto_delete != flags.auto_delete {
                    return Err(inequivalent(
                        "auto_delete",
                        "queue",
                        &name,
                        flags.auto_delete,
                        q.auto_delete,
                    ));
                }
            }
            return Ok(DeclareOk {
                queue: id,
                name: name.clone(),
                message_count: q.message_count() as u32,
                consumer_count: q.consumer_count() as u32,
            });
        }
        if flags.passive {
            return Err(not_found_queue(&name));
        }
        if name.starts_with(b"amq.") && !generated {
            return Err(AmqpError::access_refused(format_args!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                Show(&name)
            )));
        }
        let owner = flags.exclusive.then_some(conn);
        let mut q = Queue::new(
            name.clone(),
            flags.durable,
            flags.auto_delete,
            owner,
            args.raw().into(),
        );
        if flags.durable && !flags.exclusive && self.store.enabled() {
            // Exclusive queues die with their connection, so they are never recovered.
            let id = self.next_queue_store_id;
            q.store_id = Some(id);
            self.store
                .record(DefChange::queue(&name, id, flags.auto_delete, args.raw()));
            self.next_queue_store_id += 1;
        }
        let id = self.queues.insert(q);
        self.queue_names.insert(name.clone(), id);
        // Every queue is bound to the default exchange by its name; that binding is implicit.
        Ok(DeclareOk {
            queue: id,
            name,
            message_count: 0,
            consumer_count: 0,
        })
    }

    pub fn purge_queue(&mut self, conn: ConnId, name: &[u8]) -> Result<u32, AmqpError> {
        let id = self.queue_for(conn, name)?;
        let Some(q) = self.queues.get_mut(id) else {
            return Ok(0);
        };
        Ok(q.purge(&mut self.store) as u32)
    }

    pub fn delete_queue(
        &mut self,
        conn: ConnId,
        name: &[u8],
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, AmqpError> {
        let id = match self.queue_for(conn, name) {
            Ok(id) => id,
            // Deleting a missing queue succeeds with a count of 0 (RabbitMQ 3.x).
            Err(e) if e.code == crate::protocol::ReplyCode::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let q = self.queues.get(id).ok_or_else(|| not_found_queue(name))?;
        if if_unused && q.consumer_count() > 0 {
            return Err(AmqpError::precondition(format_args!(
                "queue '{}' in vhost '{VHOST}' in use",
                Show(name)
            )));
        }
        if if_empty && q.message_count() > 0 {
            return Err(AmqpError::precondition(format_args!(
                "queue '{}' in vhost '{VHOST}' not empty",
                Show(name)
            )));
        }
        let count = q.message_count() as u32;
        self.remove_queue(id);
        Ok(count)
    }

    /// Deletes a queue with its bindings; its consumers are cancelled through notices.
    pub fn remove_queue(&mut self, id: QueueId) {
        let Some(mut q) = self.queues.remove(id) else {
            return;
        };
        self.queue_names.remove(&q.name);
        if q.store_id.is_some() {
            self.store.record(DefChange::QueueDeleted { name: &q.name });
            q.purge(&mut self.store);
        }
        for b in &q.bindings {
            let binding = Binding {
                dest: Destination::Queue(id),
                key: b.key.clone(),
                args: b.args.clone(),
            };
            if self
                .exchanges
                .get_mut(b.exchange)
                .is_some_and(|x| x.unbind(&binding))
            {
                self.maybe_auto_delete_exchange(b.exchange);
            }
        }
        for c in &q.consumers {
            if let Some(c) = self.consumers.remove(*c) {
                self.notices.push(Notice::ConsumerCancelled {
                    conn: c.conn,
                    channel: c.channel,
                    tag: c.tag,
                });
            }
        }
    }

    /// Deletes the exclusive queues of a closed connection.
    pub fn connection_closed(&mut self, conn: ConnId) {
        let owned: Vec<QueueId> = self
            .queues
            .iter()
            .filter(|(_, q)| q.owner == Some(conn))
            .map(|(h, _)| h)
            .collect();
        for id in owned {
            self.remove_queue(id);
        }
    }

    // ---- consumers -------------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub fn add_consumer(
        &mut self,
        conn: ConnId,
        channel: u16,
        queue: &[u8],
        tag: Box<[u8]>,
        no_ack: bool,
        exclusive: bool,
        prefetch: u16,
    ) -> Result<ConsumerId, AmqpError> {
        let qid = self.queue_for(conn, queue)?;
        let q = self.queues.get(qid).ok_or_else(|| not_found_queue(queue))?;
        if q.exclusive_consumer || (exclusive && !q.consumers.is_empty()) {
            return Err(AmqpError::access_refused(format_args!(
                "queue '{}' in vhost '{VHOST}' in exclusive use",
                Show(queue)
            )));
        }
        let id = self.consumers.insert(Consumer {
            conn,
            channel,
            tag,
            queue: qid,
            no_ack,
            exclusive,
            prefetch,
            unacked: 0,
        });
        if let Some(q) = self.queues.get_mut(qid) {
            q.consumers.push(id);
            q.had_consumers = true;
            q.exclusive_consumer |= exclusive;
        }
        self.mark_dirty(qid);
        Ok(id)
    }

    /// Removes a consumer; an auto-delete queue left without consumers goes too.
    pub fn remove_consumer(&mut self, id: ConsumerId) -> Option<Consumer> {
        let c = self.consumers.remove(id)?;
        if let Some(q) = self.queues.get_mut(c.queue) {
            q.remove_consumer(id);
            if c.exclusive {
                q.exclusive_consumer = false;
            }
            if q.should_auto_delete() {
                self.remove_queue(c.queue);
            }
        }
        Some(c)
    }

    // ---- routing ---------------------------------------------------------------------------

    /// Routes `msg` through its exchange (and exchange-to-exchange bindings) into queues.
    /// Returns how many queues took it. Errors only if the exchange does not exist.
    pub fn publish(
        &mut self,
        msg: &Message,
        headers: Option<FieldTable<'_>>,
    ) -> Result<usize, AmqpError> {
        let exchange = msg.exchange();
        if exchange.is_empty() {
            let Some(id) = self.default_route(msg.routing_key()) else {
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
            return Err(AmqpError::access_refused(format_args!(
                "cannot publish to internal exchange '{}' in vhost '{VHOST}'",
                Show(exchange)
            )));
        }
        let mut dests = std::mem::take(&mut self.route_dests);
        let mut pending = std::mem::take(&mut self.route_pending);
        let mut visited = std::mem::take(&mut self.route_visited);
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
                xe.route(msg.routing_key(), headers, &mut dests);
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
        // A persistent message is written once, naming every durable queue it went to.
        let mut loc = None;
        if msg.persistent && self.store.enabled() {
            let mut durable = std::mem::take(&mut self.route_durable);
            durable.clear();
            durable.extend(dests.iter().filter_map(|d| match d {
                Destination::Queue(q) => self.queues.get(*q).and_then(|q| q.store_id),
                Destination::Exchange(_) => None,
            }));
            if !durable.is_empty() {
                loc = self.store.publish(msg, &durable);
            }
            self.route_durable = durable;
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
        self.route_dests = dests;
        self.route_pending = pending;
        self.route_visited = visited;
        Ok(routed)
    }

    /// Puts a routed message into a queue: in memory, or (a durable queue past its window)
    /// only on disk. `loc` is the message's store record if it is persistent.
    /// The queue the default exchange routes `key` to.
    fn default_route(&mut self, key: &[u8]) -> Option<QueueId> {
        if let Some((k, id)) = &self.last_default_route {
            if &**k == key && self.queues.get(*id).is_some() {
                return Some(*id);
            }
        }
        let id = *self.queue_names.get(key)?;
        self.last_default_route = Some((key.into(), id));
        Some(id)
    }

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
                    None => q.push(msg.clone(), None, false),
                }
            }
            Some(sid) => q.push(msg.clone(), loc.map(|l| StoreRef::at(l, sid)), false),
            None => q.push(msg.clone(), None, false),
        }
        if !q.consumers.is_empty() {
            self.mark_dirty(id);
        }
    }

    /// Settles a delivered message: back to its queue (if it still exists) or gone for good,
    /// in which case its store record is acked.
    pub fn settle(&mut self, id: QueueId, m: queue::QueuedMessage, requeue: bool) {
        if requeue {
            if let Some(q) = self.queues.get_mut(id) {
                q.requeue(m);
                self.mark_dirty(id);
                return;
            }
        }
        if let Some(r) = m.store {
            self.store.ack(r);
        }
    }

    // ---- durability ------------------------------------------------------------------------

    /// Reports a queue binding to the store if both ends are durable.
    fn record_queue_binding(
        &mut self,
        bound: bool,
        source_durable: bool,
        q: QueueId,
        source: &[u8],
        key: &[u8],
        arguments: &[u8],
    ) {
        let Some(queue) = self.queues.get(q).filter(|q| q.store_id.is_some()) else {
            return;
        };
        if !source_durable {
            return;
        }
        let b = BindingRef {
            source,
            to_exchange: false,
            destination: &queue.name,
            key,
            arguments,
        };
        let change = if bound {
            DefChange::Binding(b)
        } else {
            DefChange::Unbinding(b)
        };
        self.store.record(change);
    }

    /// Reports an exchange-to-exchange binding to the store if both ends are durable.
    fn record_exchange_binding(
        &mut self,
        bound: bool,
        s: ExchangeId,
        d: ExchangeId,
        key: &[u8],
        arguments: &[u8],
    ) {
        let (Some(src), Some(dst)) = (self.exchanges.get(s), self.exchanges.get(d)) else {
            return;
        };
        if !src.durable || !dst.durable {
            return;
        }
        let b = BindingRef {
            source: &src.name,
            to_exchange: true,
            destination: &dst.name,
            key,
            arguments,
        };
        let change = if bound {
            DefChange::Binding(b)
        } else {
            DefChange::Unbinding(b)
        };
        self.store.record(change);
    }

    /// Rebuilds durable state from what the store recovered.
    pub fn recover(&mut self, r: Recovery) -> std::io::Result<()> {
        let d = r.definitions;
        self.next_queue_store_id = d.next_queue_id.max(1);
        for x in &d.exchanges {
            let Some(kind) = ExchangeKind::parse(&x.kind) else {
                continue;
            };
            if !self.exchange_names.contains_key(&x.name[..]) {
                self.insert_exchange(Exchange::new(
                    x.name.clone().into(),
                    kind,
                    true,
                    x.auto_delete,
                    x.internal,
                    x.arguments.clone().into(),
                ));
            }
        }
        let mut by_store_id = std::collections::HashMap::new();
        for qd in &d.queues {
            let mut q = Queue::new(
                qd.name.clone().into(),
                true,
                qd.auto_delete,
                None,
                qd.arguments.clone().into(),
            );
            q.store_id = Some(qd.store_id);
            self.next_queue_store_id = self.next_queue_store_id.max(qd.store_id + 1);
            let id = self.queues.insert(q);
            self.queue_names.insert(qd.name.clone().into(), id);
            by_store_id.insert(qd.store_id, id);
        }
        for b in &d.bindings {
            let Ok(src) = self.exchange_id(&b.source) else {
                continue;
            };
            let dest = if b.to_exchange {
                match self.exchange_id(&b.destination) {
                    Ok(e) => Destination::Exchange(e),
                    Err(_) => continue,
                }
            } else {
                match self.queue_names.get(&b.destination[..]) {
                    Some(&q) => Destination::Queue(q),
                    None => continue,
                }
            };
            let binding = Binding {
                dest,
                key: b.key.clone().into(),
                args: b.arguments.clone().into(),
            };
            if let Some(x) = self.exchanges.get_mut(src) {
                x.bind(binding);
            }
            if let Destination::Queue(q) = dest {
                if let Some(q) = self.queues.get_mut(q) {
                    q.bindings.push(QueueBinding {
                        exchange: src,
                        key: b.key.clone().into(),
                        args: b.arguments.clone().into(),
                    });
                }
            }
        }
        for (sid, n) in &r.queue_counts {
            if let Some(q) = by_store_id.get(sid).and_then(|&q| self.queues.get_mut(q)) {
                q.reserve_paged(*n as usize);
            }
        }
        // Everything recovered starts on disk; queues read their window back on demand.
        let queues = &mut self.queues;
        self.store.recovered(|m| {
            if let Some(q) = by_store_id.get(&m.queue).and_then(|&q| queues.get_mut(q)) {
                q.push_recovered(m.loc, m.origin, m.redelivered);
            }
        })?;
        for &q in by_store_id.values() {
            if let Some(q) = self.queues.get_mut(q) {
                q.recovered();
            }
        }
        Ok(())
    }

    /// Store references of queued messages that were delivered before, for a clean stop.
    pub fn redelivered_refs(&self) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        for (_, q) in self.queues.iter() {
            q.redelivered_refs(&mut out);
        }
        out
    }

    /// Records that `id` may be able to deliver now.
    pub fn mark_dirty(&mut self, id: QueueId) {
        if let Some(q) = self.queues.get_mut(id) {
            if !q.dirty {
                q.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Takes the list of queues to deliver from.
    pub fn take_dirty(&mut self, into: &mut Vec<QueueId>) {
        into.clear();
        std::mem::swap(into, &mut self.dirty);
        for id in into.iter() {
            if let Some(q) = self.queues.get_mut(*id) {
                q.dirty = false;
            }
        }
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: ConnId = ConnId(1);
    const C2: ConnId = ConnId(2);

    fn declare(
        b: &mut Broker,
        conn: ConnId,
        name: &str,
        flags: QueueFlags,
    ) -> Result<DeclareOk, AmqpError> {
        b.declare_queue(conn, name.as_bytes(), flags, FieldTable::EMPTY)
    }

    #[test]
    fn server_named_queues_and_declare_counts() {
        let mut b = Broker::new();
        let ok = declare(
            &mut b,
            C1,
            "",
            QueueFlags {
                exclusive: true,
                ..Default::default()
            },
        )
        .expect("declare");
        assert!(ok.name.starts_with(b"amq.gen-"));
        assert_eq!(ok.name.len(), 8 + 22);
        let m = Message::new(b"", &ok.name, &[0, 0], b"x", false);
        assert_eq!(b.publish(&m, None), Ok(1));
        let again = b
            .declare_queue(
                C1,
                &ok.name,
                QueueFlags {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::EMPTY,
            )
            .expect("passive");
        assert_eq!(again.message_count, 1);
    }

    #[test]
    fn redeclare_with_other_flags_fails_as_rabbitmq() {
        let mut b = Broker::new();
        declare(&mut b, C1, "q", QueueFlags::default()).expect("declare");
        let e = declare(
            &mut b,
            C1,
            "q",
            QueueFlags {
                durable: true,
                ..Default::default()
            },
        )
        .expect_err("406");
        assert_eq!(e.text, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': received 'true' but current is 'false'");
        let e = declare(
            &mut b,
            C1,
            "nope",
            QueueFlags {
                passive: true,
                ..Default::default()
            },
        )
        .expect_err("404");
        assert_eq!(e.text, "NOT_FOUND - no queue 'nope' in vhost '/'");
    }

    #[test]
    fn exclusive_queues_are_locked_to_their_connection_and_go_with_it() {
        let mut b = Broker::new();
        declare(
            &mut b,
            C1,
            "ex",
            QueueFlags {
                exclusive: true,
                ..Default::default()
            },
        )
        .expect("declare");
        let e = b.purge_queue(C2, b"ex").expect_err("405");
        assert_eq!(e.code, crate::protocol::ReplyCode::ResourceLocked);
        b.connection_closed(C1);
        assert!(b.queue_id(b"ex").is_none());
    }

    #[test]
    fn auto_delete_queue_goes_with_its_last_consumer() {
        let mut b = Broker::new();
        declare(
            &mut b,
            C1,
            "ad",
            QueueFlags {
                auto_delete: true,
                ..Default::default()
            },
        )
        .expect("declare");
        let c1 = b
            .add_consumer(C1, 1, b"ad", "t1".as_bytes().into(), false, false, 0)
            .expect("consume");
        let c2 = b
            .add_consumer(C1, 1, b"ad", "t2".as_bytes().into(), false, false, 0)
            .expect("consume");
        b.remove_consumer(c1);
        assert!(b.queue_id(b"ad").is_some());
        b.remove_consumer(c2);
        assert!(b.queue_id(b"ad").is_none());
    }

    #[test]
    fn topic_and_exchange_to_exchange_routing() {
        let mut b = Broker::new();
        let flags = ExchangeFlags::default();
        b.declare_exchange(b"logs", b"topic", flags, FieldTable::EMPTY)
            .expect("x");
        b.declare_exchange(b"all", b"fanout", flags, FieldTable::EMPTY)
            .expect("x");
        declare(&mut b, C1, "q1", QueueFlags::default()).expect("q");
        declare(&mut b, C1, "q2", QueueFlags::default()).expect("q");
        b.bind_queue(C1, b"q1", b"logs", b"old.#", FieldTable::EMPTY)
            .expect("bind");
        b.bind_queue(C1, b"q1", b"logs", b"#", FieldTable::EMPTY)
            .expect("bind");
        b.bind_exchange(b"all", b"logs", b"old.*", FieldTable::EMPTY)
            .expect("e2e");
        b.bind_queue(C1, b"q2", b"all", b"", FieldTable::EMPTY)
            .expect("bind");
        let m = Message::new(b"logs", b"old.boy.python", &[0, 0], b"", false);
        assert_eq!(
            b.publish(&m, None),
            Ok(1),
            "q1 once despite two matching bindings; old.* does not match"
        );
        let m = Message::new(b"logs", b"old.boy", &[0, 0], b"", false);
        assert_eq!(b.publish(&m, None), Ok(2));
        let m = Message::new(b"nope", b"", &[0, 0], b"", false);
        assert_eq!(
            b.publish(&m, None).map_err(|e| e.text),
            Err("NOT_FOUND - no exchange 'nope' in vhost '/'".to_string())
        );
    }

    #[test]
    fn reserved_and_inequivalent_exchanges_are_refused() {
        let mut b = Broker::new();
        let f = ExchangeFlags::default();
        let e = b
            .declare_exchange(b"amq.foo", b"direct", f, FieldTable::EMPTY)
            .expect_err("403");
        assert_eq!(
            e.text,
            "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'"
        );
        b.declare_exchange(
            b"amq.direct",
            b"direct",
            ExchangeFlags { durable: true, ..f },
            FieldTable::EMPTY,
        )
        .expect("redeclare standard");
        b.declare_exchange(b"x", b"fanout", f, FieldTable::EMPTY)
            .expect("x");
        let e = b
            .declare_exchange(b"x", b"topic", f, FieldTable::EMPTY)
            .expect_err("406");
        assert_eq!(e.text, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': received 'topic' but current is 'fanout'");
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        b.bind_queue(C1, b"q", b"x", b"", FieldTable::EMPTY)
            .expect("bind");
        assert_eq!(
            b.delete_exchange(b"x", true).map_err(|e| e.code),
            Err(crate::protocol::ReplyCode::PreconditionFailed)
        );
        b.delete_exchange(b"x", false).expect("delete");
        b.delete_exchange(b"x", false).expect("idempotent");
        assert!(b
            .queues
            .get(b.queue_id(b"q").expect("q"))
            .is_some_and(|q| q.bindings.is_empty()));
    }
}
