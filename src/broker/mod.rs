//! The broker's state for the one vhost "/": exchanges, queues, bindings and consumers, behind
//! verbs sessions call (declare, bind, publish, consume, deliver, get, ack, commit). No
//! sockets, no frames, no sessions: names and flags in, results or `AmqpError`s (with
//! RabbitMQ's texts) out. Effects on other connections (a consumer cancelled because its queue
//! was deleted) are queued as `Notice`s for the session layer.
//!
//! Files: `entities.rs` (declare, delete, bind), `args.rs` (queue arguments), `routing.rs`
//! (publish), `consumer.rs` (subscribe, cancel), `delivery.rs` (deliver, get, settle),
//! `expiry.rs` (the clock, TTL, x-expires, the timer heap), `dead_letter.rs` and `headers.rs`
//! (dead-lettering, header rewrites), `delayed.rs` (x-delayed-message), `durability.rs`
//! (definitions, recovery, commit), `flow.rs` (which queues pace their publishers); the
//! entities themselves in `exchange.rs`, `queue/`, `bindings.rs`.

pub(crate) mod args;
mod bindings;
pub mod consumer;
pub mod counters;
mod dead_letter;
mod delayed;
mod delivery;
mod durability;
mod entities;
mod exchange;
pub mod expiry;
mod flow;
mod handle;
pub(crate) mod headers;
mod length;
pub mod message;
pub mod queue;
mod reply_to;
mod rotation;
mod routing;
pub mod topic_trie;

pub use delivery::DeliverySink;
pub(crate) use entities::ExchangeFlags;
pub use entities::{DeclareOk, QueueFlags};
pub(crate) use reply_to::{ReplyConsumerId, REPLY_QUEUE};
pub use routing::{PublishProps, Routed};

use crate::error::{AmqpError, Show};
use crate::store::Store;
use bindings::Bindings;
use consumer::{Consumer, ConsumerId};
use exchange::{Exchange, ExchangeId, ExchangeKind};
use handle::Registry;
use queue::{Queue, QueueId};
use reply_to::ReplyConsumer;
use std::collections::HashMap;

pub(crate) const VHOST: &str = "/";

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
}

impl Notice {
    /// The connection the notice is for.
    pub fn conn(&self) -> ConnId {
        match self {
            Notice::ConsumerCancelled { conn, .. } | Notice::Reply { conn, .. } => *conn,
        }
    }
}

pub struct Broker {
    exchanges: Registry<ExchangeId, Exchange>,
    exchange_names: HashMap<Box<[u8]>, ExchangeId>,
    queues: Registry<QueueId, Queue>,
    queue_names: HashMap<Box<[u8]>, QueueId>,
    bindings: Bindings,
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
    /// A broker with only the standard exchanges and no store (tests, benchmarks, fuzzing);
    /// the reactor's comes from `recovered`.
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
            bindings: Bindings::default(),
            consumers: Registry::default(),
            reply_consumers: Registry::default(),
            ready: Vec::new(),
            ready_scratch: Vec::new(),
            notices: Vec::new(),
            route: routing::RouteScratch::default(),
            rng: seed | 1,
            store: Store::disabled(),
            next_queue_store_id: 1,
            clock_ms: expiry::wall_clock_ms(),
            budget: crate::limits::EXPIRY_WORK_PER_TURN_MAX,
            timers: expiry::Timers::default(),
            dead_letters: dead_letter::DeadLetters::default(),
            delayed: delayed::Delayed::default(),
            overfull: Vec::new(),
            quorum_queues: 0,
            refusing_queues: 0,
            counters: counters::MessageCounters::default(),
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

    /// Hands out what other connections' actions did to sessions, oldest first.
    /// Message events since start (publish, deliver, get, ack, ...).
    pub fn counters(&self) -> counters::MessageCounters {
        self.counters
    }

    pub fn drain_notices(&mut self) -> std::vec::Drain<'_, Notice> {
        self.notices.drain(..)
    }

    /// Whether `conn` still holds consumers or exclusive queues (it must not once released).
    pub fn holds_anything_of(&self, conn: ConnId) -> bool {
        self.consumers.iter().any(|(_, c)| c.conn() == conn)
            || self.reply_consumers.iter().any(|(_, c)| c.conn() == conn)
            || self.queues.iter().any(|(_, q)| q.owner == Some(conn))
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
        assert_eq!(
            b.publish(&m, PublishProps::default()).map(|r| r.queues),
            Ok(1)
        );
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
        assert!(!b.queue_names.contains_key(&b"ex"[..]));
        assert!(!b.holds_anything_of(C1));
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
            .add_consumer(C1, 1, 0, b"ad", false, false, FieldTable::EMPTY)
            .expect("consume");
        let c2 = b
            .add_consumer(C1, 1, 1, b"ad", false, false, FieldTable::EMPTY)
            .expect("consume");
        b.cancel_consumer(c1);
        assert!(b.queue_names.contains_key(&b"ad"[..]));
        b.cancel_consumer(c2);
        assert!(!b.queue_names.contains_key(&b"ad"[..]));
        b.assert_consistent();
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
            b.publish(&m, PublishProps::default()).map(|r| r.queues),
            Ok(1),
            "q1 once despite two matching bindings; old.* does not match"
        );
        let m = Message::new(b"logs", b"old.boy", &[0, 0], b"", false);
        assert_eq!(
            b.publish(&m, PublishProps::default()).map(|r| r.queues),
            Ok(2)
        );
        let m = Message::new(b"nope", b"", &[0, 0], b"", false);
        assert_eq!(
            b.publish(&m, PublishProps::default())
                .map(|r| r.queues)
                .map_err(|e| e.text),
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
        let q = Destination::Queue(b.queue_names[&b"q"[..]]);
        assert_eq!(b.bindings.count_to(q), 0);
        b.assert_consistent();
    }

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
            let mut b = Broker::open(&dir).expect("open");
            b.declare_exchange(b"x", b"direct", durable, ae_args)
                .expect("x");
            b.declare_exchange(b"ae", b"fanout", durable, FieldTable::EMPTY)
                .expect("ae");
            let flags = QueueFlags {
                durable: true,
                ..Default::default()
            };
            b.declare_queue(C1, b"sac", flags, sac_args).expect("q");
            b.bind_queue(C1, b"sac", b"ae", b"", FieldTable::EMPTY)
                .expect("bind");
            b.commit_turn().expect("commit");
            b.close_clean().expect("close");
        }
        let mut b = Broker::open(&dir).expect("reopen");
        let m = Message::new(b"x", b"nowhere", &[0, 0], b"", false);
        assert_eq!(
            b.publish(&m, PublishProps::default()).map(|r| r.queues),
            Ok(1),
            "routed through the recovered AE"
        );
        let q = b.queue_names[&b"sac"[..]];
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
        assert_eq!(
            b.publish(&m, PublishProps::default()).map(|r| r.queues),
            Ok(1)
        );
    }

    #[test]
    fn delivery_goes_round_robin_to_the_consumers_that_can_take() {
        let mut b = Broker::new();
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        let c1 = b
            .add_consumer(C1, 1, 0, b"q", true, false, FieldTable::EMPTY)
            .expect("c1");
        let c2 = b
            .add_consumer(C2, 1, 0, b"q", true, false, FieldTable::EMPTY)
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
        let first = b.get(C1, b"q", false).expect("get").expect("1");
        assert_eq!(
            (first.message_count, first.message.redelivered()),
            (1, false)
        );
        b.requeue(first.queue, first.message);
        let again = b.get(C1, b"q", false).expect("get").expect("1 again");
        assert_eq!(again.message.message().body(), b"1");
        assert!(again.message.redelivered());
        b.ack(again.message);
        let e = b.get(C2, b"nope", false).map(|_| ()).expect_err("404");
        assert_eq!(e.text, "NOT_FOUND - no queue 'nope' in vhost '/'");
    }

    #[test]
    fn deleting_a_queue_cancels_its_consumers_and_unused_auto_delete_sources() {
        let mut b = Broker::new();
        let flags = ExchangeFlags {
            auto_delete: true,
            ..Default::default()
        };
        b.declare_exchange(b"ad", b"fanout", flags, FieldTable::EMPTY)
            .expect("x");
        declare(&mut b, C1, "q", QueueFlags::default()).expect("q");
        b.bind_queue(C1, b"q", b"ad", b"", FieldTable::EMPTY)
            .expect("bind");
        let c = b
            .add_consumer(C2, 7, 3, b"q", false, false, FieldTable::EMPTY)
            .expect("consume");
        assert_eq!(b.delete_queue(C1, b"q", false, false), Ok(0));
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
        assert!(!b.exchange_names.contains_key(&b"ad"[..]));
        assert_eq!(b.consumer_count(), 0);
        b.assert_consistent();
    }
}
