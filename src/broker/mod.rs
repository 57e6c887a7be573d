//! The broker's state: virtual hosts with their exchanges, queues and bindings, consumers,
//! and the users and permissions that decide who may do what (`auth::AccessControl`, owned
//! here), behind verbs sessions call (open, declare, bind, publish, consume, deliver, get, ack,
//! commit). No sockets, no frames, no sessions: names and flags in, results or `AmqpError`s
//! (with RabbitMQ's texts) out. Effects on other connections (a consumer cancelled because its
//! queue was deleted, a connection closed because its vhost was) are queued as `Notice`s for
//! the session layer.
//!
//! Files: `vhost.rs` (vhosts and their names), `access.rs` (users, permissions, connections
//! and their grants), `entities.rs` (declare, delete, bind), `args.rs` (queue arguments),
//! `routing.rs` (publish), `consumer.rs` (subscribe, cancel), `delivery.rs` (deliver, get,
//! settle), `expiry.rs` (the clock, TTL, x-expires, the timer heap), `dead_letter.rs` and
//! `headers.rs` (dead-lettering, header rewrites), `delayed.rs` (x-delayed-message),
//! `durability.rs` (definitions, recovery, commit), `flow.rs` (which queues pace their
//! publishers), `import.rs` (RabbitMQ's definitions documents), `cleanup.rs` (what deletions
//! leave, a bounded amount per turn); the entities themselves in `exchange.rs`, `queue/`,
//! `bindings.rs`.

mod access;
pub(crate) mod args;
mod bindings;
mod cleanup;
pub mod consumer;
pub mod counters;
mod dead_letter;
mod delayed;
mod delivery;
mod durability;
mod entities;
mod exchange;
pub mod expiry;
pub mod federation;
mod flow;
mod handle;
pub(crate) mod headers;
mod import;
mod inspect;
mod length;
pub mod message;
pub mod parameters;
mod policies;
pub mod policy;
pub mod queue;
mod reply_to;
mod rotation;
mod routing;
pub mod topic_trie;
mod vhost;

pub use access::{Actor, DefaultData, API_CONN};
pub use delivery::DeliverySink;
pub(crate) use entities::ExchangeFlags;
pub use entities::{DeclareOk, QueueFlags};
pub use import::Imported;
pub use inspect::{BindingView, ConsumerView, ExchangeView, QueueView, Totals};
pub(crate) use reply_to::{ReplyConsumerId, REPLY_QUEUE};
pub use routing::{PublishProps, PublishTarget, Routed};
pub use vhost::VhostId;

use crate::auth::AccessControl;
use crate::error::{AmqpError, Show};
use crate::store::Store;
use access::Clients;
use bindings::Bindings;
use consumer::{Consumer, ConsumerId};
use exchange::{Exchange, ExchangeId, ExchangeKind};
use handle::Registry;
use queue::{Queue, QueueId};
use reply_to::ReplyConsumer;
use std::collections::HashMap;
use vhost::VhostState;

/// A client connection, as the broker knows it: the owner of exclusive queues and consumers.
/// The reactor assigns it (its connection table's key) and the broker only compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// Something a session must be told about that another connection's action caused.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The consumer's queue was deleted; the client gets basic.cancel if it asked for that.
    ConsumerCancelled {
        conn: ConnId,
        channel: u16,
        consumer: ConsumerId,
        channel_slot: u32,
    },
    /// A reply published to the reply name of the channel's reply consumer (direct reply-to):
    /// delivered at once if that consumer is still there, else dropped.
    Reply {
        conn: ConnId,
        channel: u16,
        consumer: ReplyConsumerId,
        message: message::Message,
    },
    /// The connection must go with 320 CONNECTION_FORCED (its vhost or user was deleted).
    ConnectionForced { conn: ConnId, reason: String },
}

impl Notice {
    /// The connection the notice is for.
    pub fn conn(&self) -> ConnId {
        match self {
            Notice::ConsumerCancelled { conn, .. }
            | Notice::Reply { conn, .. }
            | Notice::ConnectionForced { conn, .. } => *conn,
        }
    }
}

pub struct Broker {
    /// Each vhost with the names of its exchanges and queues.
    vhosts: Registry<VhostId, VhostState>,
    vhost_ids: HashMap<Box<str>, VhostId>,
    exchanges: Registry<ExchangeId, Exchange>,
    queues: Registry<QueueId, Queue>,
    bindings: Bindings,
    /// Which exchanges policies federate (their generation).
    federation: federation::Federation,
    /// Exclusive queues by owning connection (with ids of some deleted since; see
    /// `own_exclusive`), so a closing connection finds its queues without a scan of all.
    exclusive: HashMap<ConnId, Vec<QueueId>>,
    /// What deletions left to clean up (cleanup.rs).
    cleanup: cleanup::Cleanup,
    consumers: Registry<ConsumerId, Consumer>,
    /// Channels consuming amq.rabbitmq.reply-to (at most one per channel).
    reply_consumers: Registry<ReplyConsumerId, ReplyConsumer>,
    /// Queues that may be able to deliver: new messages, consumers or credit.
    ready: Vec<QueueId>,
    /// The list `deliver_ready` works through, kept for its capacity.
    ready_scratch: Vec<QueueId>,
    notices: Vec<Notice>,
    route: routing::RouteScratch,
    rng: u64,
    store: Store,
    next_queue_store_id: u32,
    /// Users, vhosts' metadata and limits, permissions.
    access: AccessControl,
    /// Open connections: their vhost and user, counted for the limits; grants they share.
    clients: Clients,
    /// The loop turn's wall clock (ms since the epoch); message deadlines are measured from it.
    clock_ms: u64,
    /// Expiry, dead-lettering and delayed-message work this turn may still do.
    budget: usize,
    timers: expiry::Timers,
    dead_letters: dead_letter::DeadLetters,
    delayed: delayed::Delayed,
    /// Queues over their length limit, trimmed once this turn's deliveries are made.
    overfull: Vec<QueueId>,
    /// Quorum queues there are: while there are none, a transient publish does not look for
    /// one (they keep every message on disk).
    quorum_queues: usize,
    /// Queues with x-overflow reject-publish(-dlx) and a length limit: while there are none,
    /// a publish does not ask its queues whether they refuse it.
    refusing_queues: usize,
    /// Message events since start, for the management API and Prometheus.
    counters: counters::MessageCounters,
    /// Runtime parameters (the shovel component).
    parameters: parameters::Parameters,
    /// Policies and the objects still to be brought in line with them.
    policies: policies::Policies,
    /// When the per-queue and per-exchange counters were last sampled, and the time before
    /// (ms since the epoch; 0 for none): their rates are over that interval.
    rate_samples: (u64, u64),
}

fn not_found_queue(vhost: &str, name: &[u8]) -> AmqpError {
    AmqpError::not_found(format_args!("no queue '{}' in vhost '{vhost}'", Show(name)))
}

fn not_found_exchange(vhost: &str, name: &[u8]) -> AmqpError {
    AmqpError::not_found(format_args!(
        "no exchange '{}' in vhost '{vhost}'",
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
    /// What a fresh RabbitMQ node has: the vhost "/" with its standard exchanges and the user
    /// guest/guest with every permission there; no store (tests, benchmarks, fuzzing). The
    /// reactor's broker comes from `open`.
    pub fn new() -> Self {
        let mut b = Self::empty();
        // Seeding a fresh node cannot fail: the defaults are valid names and patterns.
        let _ = b.insert_default_data(&DefaultData::default());
        b
    }

    /// No vhost, no user, no store.
    fn empty() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            ^ ((std::process::id() as u64) << 32);
        Broker {
            vhosts: Registry::default(),
            vhost_ids: HashMap::new(),
            exchanges: Registry::default(),
            queues: Registry::default(),
            bindings: Bindings::default(),
            federation: federation::Federation::default(),
            exclusive: HashMap::new(),
            cleanup: cleanup::Cleanup::default(),
            consumers: Registry::default(),
            reply_consumers: Registry::default(),
            ready: Vec::new(),
            ready_scratch: Vec::new(),
            notices: Vec::new(),
            route: routing::RouteScratch::default(),
            rng: seed | 1,
            store: Store::disabled(),
            next_queue_store_id: 1,
            access: AccessControl::new(),
            clients: Clients::default(),
            clock_ms: expiry::wall_clock_ms(),
            budget: crate::limits::EXPIRY_WORK_PER_TURN_MAX,
            timers: expiry::Timers::default(),
            dead_letters: dead_letter::DeadLetters::default(),
            delayed: delayed::Delayed::default(),
            overfull: Vec::new(),
            quorum_queues: 0,
            refusing_queues: 0,
            counters: counters::MessageCounters::default(),
            parameters: parameters::Parameters::default(),
            policies: policies::Policies::default(),
            rate_samples: (0, 0),
        }
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
    fn generate_name(&mut self, prefix: &str) -> Box<[u8]> {
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

    /// Whether work is left that the turn's budget did not cover (the reactor polls without
    /// sleeping then).
    fn has_pending_work(&self) -> bool {
        !self.dead_letters.is_empty() || !self.overfull.is_empty()
    }

    /// Message events since start (publish, deliver, get, ack, ...).
    pub fn counters(&self) -> counters::MessageCounters {
        self.counters
    }

    /// Every `RATE_SAMPLE_MS`, moves each queue's and exchange's samples along (their
    /// `_details.rate`): a copy per object, about 30 µs for 10,000 queues.
    pub(super) fn sample_rates(&mut self) {
        let now = self.clock_ms;
        if now
            < self
                .rate_samples
                .1
                .saturating_add(crate::limits::RATE_SAMPLE_MS)
        {
            return;
        }
        for q in self.queues.values_mut() {
            q.stats.rotate();
        }
        for x in self.exchanges.values_mut() {
            x.stats.rotate();
        }
        self.rate_samples = (self.rate_samples.1, now);
    }

    /// The rate epoch of the turn's clock: `RATE_SAMPLE_MS` periods of wall-clock time, by
    /// which the sessions' channel counters rotate their samples (`session::stats`).
    pub fn rate_epoch(&self) -> u64 {
        self.clock_ms / crate::limits::RATE_SAMPLE_MS
    }

    /// Seconds between the last two samples (0 before there are two).
    pub(super) fn rate_secs(&self) -> f64 {
        match self.rate_samples {
            (0, _) => 0.0,
            (base, last) => (last - base) as f64 / 1000.0,
        }
    }

    /// Hands out what other connections' actions did to sessions, oldest first.
    pub fn drain_notices(&mut self) -> std::vec::Drain<'_, Notice> {
        self.notices.drain(..)
    }

    /// Whether `conn` still holds consumers, exclusive queues or a place among the open
    /// connections (it must not once released).
    pub fn holds_anything_of(&self, conn: ConnId) -> bool {
        self.consumers.iter().any(|(_, c)| c.conn() == conn)
            || self.reply_consumers.iter().any(|(_, c)| c.conn() == conn)
            || self.queues.iter().any(|(_, q)| q.owner == Some(conn))
            || self.clients.has(conn)
    }

    /// Queue entries looked at so far, by id or by iteration (tests count work with it).
    #[cfg(test)]
    pub(crate) fn queue_visits(&self) -> u64 {
        self.queues.visits()
    }

    /// Checks that consumers and queues point at each other, and the bindings table at
    /// itself; panics naming what is wrong (for the fuzzer and tests; walks everything).
    pub fn assert_consistent(&self) {
        for (cid, c) in self.consumers.iter() {
            let q = self.queues.get(c.queue());
            assert!(
                q.is_some_and(|q| q.consumers().any(|x| x == cid)),
                "consumer missing from its queue's list"
            );
        }
        for (qid, q) in self.queues.iter() {
            for cid in q.consumers() {
                let c = self.consumers.get(cid);
                assert!(
                    c.is_some_and(|c| c.queue() == qid),
                    "queue lists a consumer that is gone or elsewhere"
                );
            }
            if !q.has_consumers() {
                assert!(
                    !q.exclusive_consumer(),
                    "exclusive-consumer flag left on a queue without consumers"
                );
            }
        }
        self.bindings.assert_consistent();
        for (vid, v) in self.vhosts.iter() {
            for &q in v.queues.values() {
                assert!(
                    self.queues.get(q).is_some_and(|q| q.vhost == vid),
                    "a vhost names a queue that is gone or elsewhere"
                );
            }
            for &x in v.exchanges.values() {
                assert!(
                    self.exchanges.get(x).is_some_and(|x| x.vhost == vid),
                    "a vhost names an exchange that is gone or elsewhere"
                );
            }
        }
        self.clients.assert_consistent(&self.vhosts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FieldTable;
    use exchange::Destination;
    use message::Message;

    const C1: ConnId = ConnId(1);
    const C2: ConnId = ConnId(2);

    /// Connection `conn` acting in "/" with every right.
    fn a(b: &Broker, conn: ConnId) -> Actor {
        b.internal_actor(conn, "/").expect("vhost /")
    }

    fn declare(
        b: &mut Broker,
        conn: ConnId,
        name: &str,
        flags: QueueFlags,
    ) -> Result<DeclareOk, AmqpError> {
        let who = a(b, conn);
        b.declare_queue(&who, name.as_bytes(), flags, FieldTable::EMPTY)
    }

    /// basic.publish as the session does it: find the exchange, then route.
    fn route(b: &mut Broker, m: &Message) -> Result<usize, AmqpError> {
        let who = a(b, C1);
        let target = b.publish_target(&who, m.exchange())?;
        Ok(b.publish(target, m, PublishProps::default()).queues)
    }

    fn names<'b>(b: &'b Broker, vhost: &str) -> &'b VhostState {
        b.vhosts
            .get(b.vhost_id(vhost).expect("vhost"))
            .expect("names")
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
        assert_eq!(route(&mut b, &m), Ok(1));
        let again = b
            .declare_queue(
                &a(&b, C1),
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
        let e = b.purge_queue(&a(&b, C2), b"ex").expect_err("405");
        assert_eq!(e.code, crate::protocol::ReplyCode::ResourceLocked);
        b.connection_closed(C1);
        assert!(!names(&b, "/").queues.contains_key(&b"ex"[..]));
        assert!(!b.holds_anything_of(C1));
    }

    /// Runs deferred cleanup turn by turn (bounded); returns how many turns it took.
    fn clean_up_fully(b: &mut Broker) -> usize {
        let mut turns = 0;
        while b.cleaning_up() {
            assert!(turns < 10_000, "cleanup does not end");
            b.clean_up();
            turns += 1;
        }
        turns
    }

    /// A queue deleted with thousands of bindings is gone at once (name free, nothing routed
    /// to it); its bindings go over the next turns, and then its auto-delete source too.
    #[test]
    fn a_queue_with_thousands_of_bindings_is_cleaned_up_over_turns() {
        let mut b = Broker::new();
        let flags = ExchangeFlags {
            auto_delete: true,
            ..Default::default()
        };
        b.declare_exchange(&a(&b, C1), b"ad", b"direct", flags, FieldTable::EMPTY)
            .expect("x");
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        for i in 0..5_000 {
            b.bind_queue(
                &a(&b, C1),
                b"q",
                b"ad",
                format!("k{i}").as_bytes(),
                FieldTable::EMPTY,
            )
            .expect("bind");
        }
        assert_eq!(b.delete_queue(&a(&b, C1), b"q", false, false), Ok(0));
        assert!(!names(&b, "/").queues.contains_key(&b"q"[..]));
        assert!(
            b.cleaning_up(),
            "5,000 bindings are more than the inline share"
        );
        let m = Message::new(b"ad", b"k1", &[0, 0], b"", false);
        assert_eq!(
            route(&mut b, &m),
            Ok(0),
            "nothing reaches the deleted queue"
        );
        b.assert_consistent();
        assert!(clean_up_fully(&mut b) >= 4);
        assert!(
            !names(&b, "/").exchanges.contains_key(&b"ad"[..]),
            "auto-delete source"
        );
        b.assert_consistent();
    }

    /// Bindings to a deleted queue that the cleanup has not removed yet do not count as a
    /// route: the exchange's alternate exchange takes the message, as in RabbitMQ, where the
    /// bindings are gone with the queue.
    #[test]
    fn lingering_bindings_to_a_deleted_queue_leave_the_alternate_exchange_in_charge() {
        let mut b = Broker::new();
        b.declare_exchange(
            &a(&b, C1),
            b"ae",
            b"fanout",
            ExchangeFlags::default(),
            FieldTable::EMPTY,
        )
        .expect("ae");
        let mut raw = Vec::new();
        let mut w = crate::protocol::wire::Writer::new(&mut raw);
        w.shortstr(b"alternate-exchange");
        w.u8(b'S');
        w.longstr(b"ae");
        let args = FieldTable::parse(&raw).expect("table");
        b.declare_exchange(&a(&b, C1), b"x", b"direct", ExchangeFlags::default(), args)
            .expect("x");
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        declare(&mut b, C1, "caught", QueueFlags::default()).expect("caught");
        b.bind_queue(&a(&b, C1), b"caught", b"ae", b"", FieldTable::EMPTY)
            .expect("bind ae");
        for i in 0..5_000 {
            let key = format!("k{i}");
            b.bind_queue(&a(&b, C1), b"q", b"x", key.as_bytes(), FieldTable::EMPTY)
                .expect("bind");
        }
        assert_eq!(b.delete_queue(&a(&b, C1), b"q", false, false), Ok(0));
        assert!(b.cleaning_up(), "the first bindings are still there");
        let m = Message::new(b"x", b"k0", &[0, 0], b"", false);
        assert_eq!(route(&mut b, &m), Ok(1), "routed through the AE");
        clean_up_fully(&mut b);
        assert_eq!(route(&mut b, &m), Ok(1));
        let caught = names(&b, "/").queues[&b"caught"[..]];
        assert_eq!(b.queues.get(caught).map(|q| q.message_count()), Some(2));
    }

    /// Binding changes of a federated exchange reach its links: binds, unbinds and a deleted
    /// queue's bindings are recorded once the policy federates it (not before, not for other
    /// exchanges), and a policy applied or removed changes the federation generation.
    #[test]
    fn federated_exchanges_record_binding_changes() {
        use federation::BindingChange::{Added, Removed};
        let mut b = Broker::new();
        let flags = ExchangeFlags::default();
        b.declare_exchange(&a(&b, C1), b"fx", b"topic", flags, FieldTable::EMPTY)
            .expect("fx");
        b.declare_exchange(&a(&b, C1), b"other", b"topic", flags, FieldTable::EMPTY)
            .expect("other");
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        b.bind_queue(&a(&b, C1), b"q", b"fx", b"before", FieldTable::EMPTY)
            .expect("bind");
        let generation = b.federation_generation();
        let p = policy::Policy::from_json(
            "/",
            "fed",
            &serde_json::json!({"pattern": "^fx$", "apply-to": "exchanges",
                "definition": {"federation-upstream-set": "all"}}),
        )
        .expect("policy");
        b.put_policy(p);
        while b.policies_pending() {
            b.apply_policies_some();
        }
        assert_ne!(b.federation_generation(), generation);
        let fx = b.federated_exchanges();
        assert_eq!(fx.len(), 1);
        assert_eq!(fx[0].name, "fx");
        assert!(
            b.take_federation_events(10).is_empty(),
            "nothing before the policy"
        );
        let key = |k: &str| (Box::from(k.as_bytes()), Box::from([] as [u8; 0]));
        for k in ["a.*", "b.#"] {
            b.bind_queue(&a(&b, C1), b"q", b"fx", k.as_bytes(), FieldTable::EMPTY)
                .expect("bind");
        }
        b.bind_queue(&a(&b, C1), b"q", b"other", b"z", FieldTable::EMPTY)
            .expect("bind other");
        b.unbind_queue(&a(&b, C1), b"q", b"fx", b"a.*", FieldTable::EMPTY)
            .expect("unbind");
        let changes: Vec<_> = b
            .take_federation_events(2)
            .into_iter()
            .map(|e| e.change)
            .collect();
        assert_eq!(
            changes,
            vec![Added(key("a.*")), Added(key("b.#"))],
            "at most 2"
        );
        let changes: Vec<_> = b
            .take_federation_events(10)
            .into_iter()
            .map(|e| e.change)
            .collect();
        assert_eq!(changes, vec![Removed(key("a.*"))]);
        assert_eq!(b.delete_queue(&a(&b, C1), b"q", false, false), Ok(0));
        clean_up_fully(&mut b);
        let mut changes: Vec<_> = b
            .take_federation_events(10)
            .into_iter()
            .map(|e| e.change)
            .collect();
        changes.sort_by_key(|c| match c {
            Removed(k) => k.0.clone(),
            _ => Box::from([] as [u8; 0]),
        });
        assert_eq!(changes, vec![Removed(key("b.#")), Removed(key("before"))]);
        let generation = b.federation_generation();
        b.delete_policy("/", "fed");
        while b.policies_pending() {
            b.apply_policies_some();
        }
        assert_ne!(b.federation_generation(), generation);
        assert!(b.federated_exchanges().is_empty());
    }

    /// A closed connection's exclusive queues are locked to everyone at once, then deleted
    /// over the next turns; a new connection with the same id does not inherit them.
    #[test]
    fn a_closed_connections_exclusive_queues_go_over_turns() {
        let mut b = Broker::new();
        let exclusive = QueueFlags {
            exclusive: true,
            ..Default::default()
        };
        for i in 0..3_000 {
            declare(&mut b, C1, &format!("x{i}"), exclusive).expect("declare");
        }
        b.connection_closed(C1);
        assert!(!b.holds_anything_of(C1));
        assert!(b.cleaning_up());
        // The last declared go first: the first is still there, locked.
        let e = b.purge_queue(&a(&b, C1), b"x0").expect_err("locked");
        assert_eq!(e.code, crate::protocol::ReplyCode::ResourceLocked);
        clean_up_fully(&mut b);
        assert_eq!(b.queues.len(), 0);
        let e = b.purge_queue(&a(&b, C2), b"x0").expect_err("gone");
        assert_eq!(e.code, crate::protocol::ReplyCode::NotFound);
    }

    /// A purge empties the queue at once and answers the count; the messages are dropped over
    /// the next turns.
    #[test]
    fn a_large_purge_is_immediate_and_its_messages_dropped_over_turns() {
        let mut b = Broker::new();
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        for _ in 0..100_000 {
            publish(&mut b, "q", "m");
        }
        assert_eq!(b.purge_queue(&a(&b, C1), b"q"), Ok(100_000));
        assert!(b.get(&a(&b, C1), b"q", true).expect("get").is_none());
        assert!(b.cleaning_up());
        clean_up_fully(&mut b);
    }

    /// Thousands of deliveries requeued at once (a channel closed with them unacked) come
    /// back in their original order, some at once and the rest over the next turns.
    #[test]
    fn a_large_requeue_keeps_the_order() {
        let mut b = Broker::new();
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        for i in 0..20_000 {
            publish(&mut b, "q", &i.to_string());
        }
        let taken: Vec<_> = (0..10_000)
            .map(|_| {
                b.get(&a(&b, C1), b"q", false)
                    .expect("get")
                    .expect("message")
            })
            .map(|g| (g.queue, g.message))
            .collect();
        b.requeue_all(Box::new(taken.into_iter().rev()));
        assert!(b.cleaning_up(), "10,000 are more than the inline share");
        clean_up_fully(&mut b);
        for i in 0..20_000 {
            let g = b
                .get(&a(&b, C1), b"q", true)
                .expect("get")
                .expect("message");
            assert_eq!(g.message.message().body(), i.to_string().as_bytes());
            assert_eq!(g.message.redelivered(), i < 10_000);
        }
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
            .add_consumer(&a(&b, C1), 1, 0, b"ad", false, false, FieldTable::EMPTY)
            .expect("consume");
        let c2 = b
            .add_consumer(&a(&b, C1), 1, 1, b"ad", false, false, FieldTable::EMPTY)
            .expect("consume");
        b.cancel_consumer(c1);
        assert!(names(&b, "/").queues.contains_key(&b"ad"[..]));
        b.cancel_consumer(c2);
        assert!(!names(&b, "/").queues.contains_key(&b"ad"[..]));
        b.assert_consistent();
    }

    #[test]
    fn topic_and_exchange_to_exchange_routing() {
        let mut b = Broker::new();
        let flags = ExchangeFlags::default();
        b.declare_exchange(&a(&b, C1), b"logs", b"topic", flags, FieldTable::EMPTY)
            .expect("x");
        b.declare_exchange(&a(&b, C1), b"all", b"fanout", flags, FieldTable::EMPTY)
            .expect("x");
        declare(&mut b, C1, "q1", QueueFlags::default()).expect("q");
        declare(&mut b, C1, "q2", QueueFlags::default()).expect("q");
        b.bind_queue(&a(&b, C1), b"q1", b"logs", b"old.#", FieldTable::EMPTY)
            .expect("bind");
        b.bind_queue(&a(&b, C1), b"q1", b"logs", b"#", FieldTable::EMPTY)
            .expect("bind");
        b.bind_exchange(&a(&b, C1), b"all", b"logs", b"old.*", FieldTable::EMPTY)
            .expect("e2e");
        b.bind_queue(&a(&b, C1), b"q2", b"all", b"", FieldTable::EMPTY)
            .expect("bind");
        let m = Message::new(b"logs", b"old.boy.python", &[0, 0], b"", false);
        assert_eq!(
            route(&mut b, &m),
            Ok(1),
            "q1 once despite two matching bindings; old.* does not match"
        );
        let m = Message::new(b"logs", b"old.boy", &[0, 0], b"", false);
        assert_eq!(route(&mut b, &m), Ok(2));
        let m = Message::new(b"nope", b"", &[0, 0], b"", false);
        assert_eq!(
            route(&mut b, &m).map_err(|e| e.text),
            Err("NOT_FOUND - no exchange 'nope' in vhost '/'".to_string())
        );
    }

    #[test]
    fn reserved_and_inequivalent_exchanges_are_refused() {
        let mut b = Broker::new();
        let f = ExchangeFlags::default();
        let e = b
            .declare_exchange(&a(&b, C1), b"amq.foo", b"direct", f, FieldTable::EMPTY)
            .expect_err("403");
        assert_eq!(
            e.text,
            "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'"
        );
        b.declare_exchange(
            &a(&b, C1),
            b"amq.direct",
            b"direct",
            ExchangeFlags { durable: true, ..f },
            FieldTable::EMPTY,
        )
        .expect("redeclare standard");
        b.declare_exchange(&a(&b, C1), b"x", b"fanout", f, FieldTable::EMPTY)
            .expect("x");
        let e = b
            .declare_exchange(&a(&b, C1), b"x", b"topic", f, FieldTable::EMPTY)
            .expect_err("406");
        assert_eq!(e.text, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': received 'topic' but current is 'fanout'");
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        b.bind_queue(&a(&b, C1), b"q", b"x", b"", FieldTable::EMPTY)
            .expect("bind");
        assert_eq!(
            b.delete_exchange(&a(&b, C1), b"x", true)
                .map_err(|e| e.code),
            Err(crate::protocol::ReplyCode::PreconditionFailed)
        );
        b.delete_exchange(&a(&b, C1), b"x", false).expect("delete");
        b.delete_exchange(&a(&b, C1), b"x", false)
            .expect("idempotent");
        let q = Destination::Queue(names(&b, "/").queues[&b"q"[..]]);
        assert_eq!(b.bindings.count_to(q), 0);
        b.assert_consistent();
    }

    /// A durable exchange's alternate exchange and a durable queue's single-active-consumer
    /// flag come back from the store after a restart.
    #[test]
    fn alternate_exchanges_and_single_active_consumer_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!(
            "coney-ae-sac-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut raw = Vec::new();
        let mut w = crate::protocol::wire::Writer::new(&mut raw);
        w.shortstr(b"alternate-exchange");
        w.u8(b'S');
        w.longstr(b"ae");
        let ae_args = FieldTable::parse(&raw).expect("table");
        let mut raw = Vec::new();
        let mut w = crate::protocol::wire::Writer::new(&mut raw);
        w.shortstr(b"x-single-active-consumer");
        w.u8(b't');
        w.u8(1);
        let sac_args = FieldTable::parse(&raw).expect("table");
        let durable = ExchangeFlags {
            durable: true,
            ..Default::default()
        };
        {
            let mut b = Broker::open(&dir, Some(&DefaultData::default())).expect("open");
            let who = a(&b, C1);
            b.declare_exchange(&who, b"x", b"direct", durable, ae_args)
                .expect("x");
            b.declare_exchange(&who, b"ae", b"fanout", durable, FieldTable::EMPTY)
                .expect("ae");
            let flags = QueueFlags {
                durable: true,
                ..Default::default()
            };
            b.declare_queue(&who, b"sac", flags, sac_args).expect("q");
            b.bind_queue(&who, b"sac", b"ae", b"", FieldTable::EMPTY)
                .expect("bind");
            b.commit_turn().expect("commit");
            b.close_clean().expect("close");
        }
        let mut b = Broker::open(&dir, None).expect("reopen");
        let m = Message::new(b"x", b"nowhere", &[0, 0], b"", false);
        assert_eq!(route(&mut b, &m), Ok(1), "routed through the recovered AE");
        let q = names(&b, "/").queues[&b"sac"[..]];
        assert!(b.queues.get(q).is_some_and(|q| q.single_active()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Takes deliveries for the consumers it is told to accept, recording who got what.
    #[derive(Default)]
    struct TestSink {
        refuse: Vec<ConsumerId>,
        got: Vec<(ConsumerId, Vec<u8>, bool)>,
    }

    impl DeliverySink for TestSink {
        fn can_take(&mut self, consumer: ConsumerId, _: &Consumer) -> bool {
            !self.refuse.contains(&consumer)
        }
        fn deliver(
            &mut self,
            consumer: ConsumerId,
            _: &Consumer,
            _: QueueId,
            m: queue::QueuedMessage,
        ) -> Result<(), queue::QueuedMessage> {
            let body = m.message().body().to_vec();
            self.got.push((consumer, body, m.redelivered()));
            Ok(())
        }
    }

    fn publish(b: &mut Broker, key: &str, body: &str) {
        let m = Message::new(b"", key.as_bytes(), &[0, 0], body.as_bytes(), false);
        assert_eq!(route(b, &m), Ok(1));
    }

    #[test]
    fn delivery_goes_round_robin_to_the_consumers_that_can_take() {
        let mut b = Broker::new();
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        let c1 = b
            .add_consumer(&a(&b, C1), 1, 0, b"q", true, false, FieldTable::EMPTY)
            .expect("c1");
        let c2 = b
            .add_consumer(&a(&b, C2), 1, 0, b"q", true, false, FieldTable::EMPTY)
            .expect("c2");
        let mut sink = TestSink {
            refuse: vec![c1],
            ..Default::default()
        };
        for body in ["1", "2"] {
            publish(&mut b, "q", body);
        }
        assert!(b.has_ready());
        b.deliver_ready(&mut sink);
        let to: Vec<_> = sink.got.iter().map(|g| g.0).collect();
        assert_eq!(to, [c2, c2], "c1 has no credit");
        sink.refuse.clear();
        sink.got.clear();
        for body in ["3", "4", "5"] {
            publish(&mut b, "q", body);
        }
        b.deliver_ready(&mut sink);
        let to: Vec<_> = sink.got.iter().map(|g| g.0).collect();
        assert_eq!(to, [c1, c2, c1]);
        assert!(!b.has_ready(), "nothing left to deliver");
    }

    #[test]
    fn get_and_requeue_keep_the_order_and_mark_redelivered() {
        let mut b = Broker::new();
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        for body in ["1", "2"] {
            publish(&mut b, "q", body);
        }
        let first = b.get(&a(&b, C1), b"q", false).expect("get").expect("1");
        assert_eq!(
            (first.message_count, first.message.redelivered()),
            (1, false)
        );
        b.requeue(first.queue, first.message);
        let again = b
            .get(&a(&b, C1), b"q", false)
            .expect("get")
            .expect("1 again");
        assert_eq!(again.message.message().body(), b"1");
        assert!(again.message.redelivered());
        b.ack(again.queue, again.message);
        let e = b
            .get(&a(&b, C2), b"nope", false)
            .map(|_| ())
            .expect_err("404");
        assert_eq!(e.text, "NOT_FOUND - no queue 'nope' in vhost '/'");
    }

    #[test]
    fn deleting_a_queue_cancels_its_consumers_and_unused_auto_delete_sources() {
        let mut b = Broker::new();
        let flags = ExchangeFlags {
            auto_delete: true,
            ..Default::default()
        };
        b.declare_exchange(&a(&b, C1), b"ad", b"fanout", flags, FieldTable::EMPTY)
            .expect("x");
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        b.bind_queue(&a(&b, C1), b"q", b"ad", b"", FieldTable::EMPTY)
            .expect("bind");
        let c = b
            .add_consumer(&a(&b, C2), 7, 3, b"q", false, false, FieldTable::EMPTY)
            .expect("consume");
        assert_eq!(b.delete_queue(&a(&b, C1), b"q", false, false), Ok(0));
        let notices: Vec<Notice> = b.drain_notices().collect();
        assert_eq!(
            notices,
            [Notice::ConsumerCancelled {
                conn: C2,
                channel: 7,
                consumer: c,
                channel_slot: 3,
            }]
        );
        assert!(!names(&b, "/").exchanges.contains_key(&b"ad"[..]));
        assert_eq!(b.consumer_count(), 0);
        b.assert_consistent();
    }

    /// A policy that lowers a queue's max-length below its backlog trims it by at most
    /// POLICY_TRIM_PER_TURN_MAX heads a turn, the queue lists the policy, and clearing the
    /// policy leaves the queue as its arguments say.
    #[test]
    fn policy_trims_a_backlog_a_bounded_slice_per_turn() {
        use crate::limits::POLICY_TRIM_PER_TURN_MAX;
        let mut b = Broker::new();
        declare(&mut b, C1, "jobs", QueueFlags::default()).expect("q");
        let backlog = 3 * POLICY_TRIM_PER_TURN_MAX + 10;
        for i in 0..backlog {
            publish(&mut b, "jobs", &i.to_string());
        }
        let body = serde_json::json!({"pattern": "^jobs$", "definition": {"max-length": 5}});
        let p = policy::Policy::from_json("/", "cap", &body).expect("valid");
        assert!(b.put_policy(p));
        let ready = |b: &Broker| b.queue_views(Some("/"))[0].ready as usize;
        b.commit_turn().expect("turn");
        assert_eq!(ready(&b), backlog - POLICY_TRIM_PER_TURN_MAX);
        for _ in 0..3 {
            b.commit_turn().expect("turn");
        }
        assert_eq!(ready(&b), 5);
        let view = &b.queue_views(Some("/"))[0];
        assert_eq!(view.policy.as_ref().map(|p| p.name.as_str()), Some("cap"));
        assert!(b.delete_policy("/", "cap"));
        b.commit_turn().expect("turn");
        publish(&mut b, "jobs", "more");
        assert_eq!(ready(&b), 6);
        assert!(b.queue_views(Some("/"))[0].policy.is_none());
        b.assert_consistent();
    }
}
