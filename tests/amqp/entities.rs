//! Exchanges, queues, bindings and routing, checked with the amqprs client.
//! Run against RabbitMQ with `CONEY_TEST_ADDR=127.0.0.1:5690`; otherwise a private coney.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::*;
use amqprs::channel::{
    ExchangeDeclareArguments, ExchangeDeleteArguments, QueueBindArguments, QueueDeclareArguments,
    QueueDeleteArguments, QueuePurgeArguments,
};

// ---------------------------------------------------------------------------------------
// routing helpers
// ---------------------------------------------------------------------------------------

/// Declare an exchange of `kind`, one queue per binding key, publish every routing key
/// (body = the key) with confirms, and return, per binding key, the set of routing keys
/// that reached its queue.
async fn route(
    ch: &mut Chan,
    kind: &str,
    binding_keys: &[&str],
    routing_keys: &[&str],
) -> BTreeMap<String, BTreeSet<String>> {
    let x = unique(&format!("x-{kind}"));
    ch.declare_exchange(&x, kind).await;
    let mut queues = Vec::new();
    for bk in binding_keys {
        let q = unique("rq");
        ch.declare_queue(&q).await;
        ch.bind(&q, &x, bk).await;
        queues.push((bk.to_string(), q));
    }
    ch.confirm_select().await;
    for rk in routing_keys {
        ch.publish_confirmed(&x, rk, rk.as_bytes()).await;
    }
    let mut out = BTreeMap::new();
    for (bk, q) in queues {
        let got: Vec<String> = ch.drain(&q).await;
        let set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(
            set.len(),
            got.len(),
            "binding '{bk}' got duplicates: {got:?}"
        );
        out.insert(bk, set);
    }
    out
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------
// exchanges
// ---------------------------------------------------------------------------------------

/// The default exchange routes to the queue whose name equals the routing key.
#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q1 = unique("dflt1");
    let q2 = unique("dflt2");
    ch.declare_queue(&q1).await;
    ch.declare_queue(&q2).await;
    ch.confirm_select().await;
    ch.publish_confirmed("", &q1, b"to-q1").await;
    ch.publish_confirmed("", &q2, b"to-q2").await;
    ch.publish_confirmed("", &unique("no-such-queue"), b"lost")
        .await;
    assert_eq!(ch.drain(&q1).await, ["to-q1"]);
    assert_eq!(ch.drain(&q2).await, ["to-q2"]);
    conn.close().await;
}

/// Binding a queue to the default exchange is refused with 403 ACCESS_REFUSED.
#[tokio::test]
async fn default_exchange_cannot_be_bound() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("dfltbind");
    ch.declare_queue(&q).await;
    refused(
        "bind to default exchange",
        ch.queue_bind(QueueBindArguments::new(&q, "", "other")),
    )
    .await;
    ch.expect_closed(
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )
    .await;
    conn.close().await;
}

/// The standard exchanges amq.direct, amq.fanout, amq.topic and amq.headers exist.
#[tokio::test]
async fn standard_exchanges_exist() {
    let b = Broker::start();
    let (conn, ch) = b.connect_channel().await;
    for (name, kind) in [
        ("amq.direct", "direct"),
        ("amq.fanout", "fanout"),
        ("amq.topic", "topic"),
        ("amq.headers", "headers"),
    ] {
        within(
            "passive exchange.declare",
            ch.exchange_declare(
                ExchangeDeclareArguments::new(name, kind)
                    .passive(true)
                    .finish(),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("passive declare of {name}: {e}"));
    }
    conn.close().await;
}

/// direct, fanout and topic exchanges can be declared, redeclared identically, and found.
#[tokio::test]
async fn declare_direct_fanout_topic_exchanges() {
    let b = Broker::start();
    let (conn, ch) = b.connect_channel().await;
    for kind in ["direct", "fanout", "topic"] {
        let x = unique(&format!("decl-{kind}"));
        ch.declare_exchange(&x, kind).await;
        ch.declare_exchange(&x, kind).await; // idempotent
        within(
            "passive exchange.declare",
            ch.exchange_declare(
                ExchangeDeclareArguments::new(&x, kind)
                    .passive(true)
                    .finish(),
            ),
        )
        .await
        .expect("passive declare of a declared exchange");
        within(
            "exchange.delete-ok",
            ch.exchange_delete(ExchangeDeleteArguments::new(&x)),
        )
        .await
        .expect("exchange.delete");
    }
    conn.close().await;
}

/// Passive declare of a missing exchange closes the channel with 404 NOT_FOUND.
#[tokio::test]
async fn passive_declare_of_missing_exchange_is_not_found() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let x = unique("nox");
    refused(
        "passive declare",
        ch.exchange_declare(
            ExchangeDeclareArguments::new(&x, "direct")
                .passive(true)
                .finish(),
        ),
    )
    .await;
    ch.expect_closed(404, &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"))
        .await;
    assert!(conn.is_open());
    conn.close().await;
}

/// Redeclaring an exchange with another type closes the channel with 406 PRECONDITION_FAILED.
#[tokio::test]
async fn redeclare_exchange_with_other_type_is_precondition_failed() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let x = unique("retype");
    ch.declare_exchange(&x, "direct").await;
    refused(
        "redeclare as fanout",
        ch.exchange_declare(ExchangeDeclareArguments::new(&x, "fanout")),
    )
    .await;
    ch.expect_closed(
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': \
             received 'fanout' but current is 'direct'"
        ),
    )
    .await;
    conn.close().await;
}

/// Redeclaring an exchange with another durable flag closes the channel with 406.
#[tokio::test]
async fn redeclare_exchange_with_other_durability_is_precondition_failed() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let x = unique("redur");
    ch.declare_exchange(&x, "topic").await;
    refused(
        "redeclare durable",
        ch.exchange_declare(
            ExchangeDeclareArguments::new(&x, "topic")
                .durable(true)
                .finish(),
        ),
    )
    .await;
    ch.expect_closed(
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '{x}' in vhost '/': \
             received 'true' but current is 'false'"
        ),
    )
    .await;
    conn.close().await;
}

/// Declaring an exchange named amq.* is refused with 403 ACCESS_REFUSED.
#[tokio::test]
async fn declare_of_reserved_amq_exchange_name_is_access_refused() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    refused(
        "declare amq.foo",
        ch.exchange_declare(ExchangeDeclareArguments::new("amq.foo", "direct")),
    )
    .await;
    ch.expect_closed(
        403,
        "ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'",
    )
    .await;
    conn.close().await;
}

/// Declaring an exchange of an unknown type is a 503 COMMAND_INVALID connection error.
#[tokio::test]
async fn declare_of_unknown_exchange_type_is_command_invalid() {
    let b = Broker::start();
    let mut conn = b.connect().await;
    let ch = conn.channel().await;
    let x = unique("badtype");
    refused(
        "declare bogus type",
        ch.exchange_declare(ExchangeDeclareArguments::new(&x, "no-such-type")),
    )
    .await;
    let (code, text) = conn.events.closed().await;
    assert_eq!(code, 503);
    assert_eq!(
        text,
        "COMMAND_INVALID - unknown exchange type 'no-such-type'"
    );
}

/// exchange.delete with if-unused on an exchange that has bindings fails with 406.
#[tokio::test]
async fn delete_if_unused_of_bound_exchange_is_precondition_failed() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let x = unique("inuse");
    let q = unique("inuse-q");
    ch.declare_exchange(&x, "direct").await;
    ch.declare_queue(&q).await;
    ch.bind(&q, &x, "k").await;
    refused(
        "delete if-unused",
        ch.exchange_delete(ExchangeDeleteArguments::new(&x).if_unused(true).finish()),
    )
    .await;
    ch.expect_closed(
        406,
        &format!("PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use"),
    )
    .await;
    // after unbinding, if-unused delete succeeds
    let ch2 = conn.channel().await;
    ch2.unbind(&q, &x, "k").await;
    within(
        "exchange.delete-ok",
        ch2.exchange_delete(ExchangeDeleteArguments::new(&x).if_unused(true).finish()),
    )
    .await
    .expect("if-unused delete of an unbound exchange");
    conn.close().await;
}

/// Deleting an exchange that does not exist succeeds (RabbitMQ 3.x: delete is idempotent).
#[tokio::test]
async fn delete_of_missing_exchange_is_ok() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    within(
        "exchange.delete-ok",
        ch.exchange_delete(ExchangeDeleteArguments::new(&unique("never"))),
    )
    .await
    .expect("delete of a missing exchange");
    ch.declare_queue(&unique("still-open")).await;
    ch.events.assert_empty();
    conn.close().await;
}

/// Deleting an exchange removes its bindings: a recreated exchange routes nowhere.
#[tokio::test]
async fn exchange_delete_removes_its_bindings() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let x = unique("delx");
    let q = unique("delx-q");
    ch.declare_exchange(&x, "fanout").await;
    ch.declare_queue(&q).await;
    ch.bind(&q, &x, "").await;
    within(
        "exchange.delete-ok",
        ch.exchange_delete(ExchangeDeleteArguments::new(&x)),
    )
    .await
    .expect("exchange.delete");
    ch.declare_exchange(&x, "fanout").await;
    ch.confirm_select().await;
    ch.publish_confirmed(&x, "", b"nobody").await;
    assert_eq!(ch.queue_counts(&q).await, (0, 0));
    conn.close().await;
}

/// Topic: `#` matches zero or more words, `*` exactly one (old.boy.python: old.# yes, old.* no).
#[tokio::test]
async fn topic_hash_and_star_word_matching() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let keys = [
        "old",
        "old.boy",
        "old.boy.python",
        "older.boy",
        "new.old.boy",
        "old.",
    ];
    let r = route(&mut ch, "topic", &["old.#", "old.*", "old"], &keys).await;
    assert_eq!(
        r["old.#"],
        set(&["old", "old.boy", "old.boy.python", "old."])
    );
    assert_eq!(r["old.*"], set(&["old.boy", "old."]));
    assert_eq!(r["old"], set(&["old"]));
    conn.close().await;
}

/// Topic: a lone `#` matches every routing key, including the empty one.
#[tokio::test]
async fn topic_lone_hash_matches_everything() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let keys = ["", "a", "a.b", "a.b.c.d.e", ".", "#", "*"];
    let r = route(&mut ch, "topic", &["#"], &keys).await;
    assert_eq!(r["#"], set(&keys));
    conn.close().await;
}

/// Topic: `*` matches exactly one word; the empty key has no words, but "." has two empty ones.
#[tokio::test]
async fn topic_lone_star_matches_one_word() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let keys = ["", "a", "abc", "a.b", ".", "a.b.c"];
    let r = route(&mut ch, "topic", &["*", "*.*"], &keys).await;
    assert_eq!(r["*"], set(&["a", "abc"]));
    assert_eq!(r["*.*"], set(&["a.b", "."]));
    conn.close().await;
}

/// Topic: `a.#.b` matches a.b, a.x.b, a.x.y.b but not a.b.c, x.a.b or a.
#[tokio::test]
async fn topic_hash_between_words() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let keys = [
        "a.b", "a.x.b", "a.x.y.b", "a.b.b", "a.b.c", "x.a.b", "a", "b", "ab",
    ];
    let r = route(&mut ch, "topic", &["a.#.b", "#.b", "a.*.b"], &keys).await;
    assert_eq!(r["a.#.b"], set(&["a.b", "a.x.b", "a.x.y.b", "a.b.b"]));
    assert_eq!(
        r["#.b"],
        set(&["a.b", "a.x.b", "a.x.y.b", "a.b.b", "x.a.b", "b"])
    );
    assert_eq!(r["a.*.b"], set(&["a.x.b", "a.b.b"]));
    conn.close().await;
}

/// The empty routing key is legal: it matches an empty binding key on direct and topic.
#[tokio::test]
async fn empty_routing_key_is_legal() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let keys = ["", "a"];
    let direct = route(&mut ch, "direct", &["", "a"], &keys).await;
    assert_eq!(direct[""], set(&[""]));
    assert_eq!(direct["a"], set(&["a"]));
    let topic = route(&mut ch, "topic", &[""], &keys).await;
    assert_eq!(topic[""], set(&[""]));
    conn.close().await;
}

/// A fanout exchange copies each message to every bound queue, ignoring the routing key.
#[tokio::test]
async fn fanout_delivers_to_every_bound_queue() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let keys = ["", "x", "anything.at.all"];
    let r = route(&mut ch, "fanout", &["", "a", "b.c"], &keys).await;
    for bk in ["", "a", "b.c"] {
        assert_eq!(r[bk], set(&keys), "queue bound with '{bk}'");
    }
    conn.close().await;
}

/// Direct: a queue with several bindings gets each matching message once; keys match exactly.
#[tokio::test]
async fn direct_exchange_with_several_bindings() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let x = unique("multi");
    let q1 = unique("multi1");
    let q2 = unique("multi2");
    ch.declare_exchange(&x, "direct").await;
    ch.declare_queue(&q1).await;
    ch.declare_queue(&q2).await;
    ch.bind(&q1, &x, "red").await;
    ch.bind(&q1, &x, "green").await;
    ch.bind(&q1, &x, "green").await; // duplicate binding is a no-op
    ch.bind(&q2, &x, "green").await;
    ch.confirm_select().await;
    for key in ["red", "green", "blue", "Red", "red.x"] {
        ch.publish_confirmed(&x, key, key.as_bytes()).await;
    }
    assert_eq!(ch.drain(&q1).await, ["red", "green"]);
    assert_eq!(ch.drain(&q2).await, ["green"]);
    conn.close().await;
}

// ---------------------------------------------------------------------------------------
// queues
// ---------------------------------------------------------------------------------------

/// Declaring a queue with an empty name yields a server-named `amq.gen-...` queue.
#[tokio::test]
async fn empty_queue_name_gets_server_generated_name() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (name, messages, consumers) = ch.declare_queue("").await;
    assert!(name.starts_with("amq.gen-"), "name {name}");
    assert!(name.len() > "amq.gen-".len());
    assert_eq!((messages, consumers), (0, 0));
    let (other, _, _) = ch.declare_queue("").await;
    assert_ne!(name, other);
    ch.confirm_select().await;
    ch.publish_confirmed("", &name, b"hi").await;
    assert_eq!(ch.drain(&name).await, ["hi"]);
    conn.close().await;
}

/// declare-ok reports the ready-message count and the consumer count.
#[tokio::test]
async fn declare_ok_reports_message_and_consumer_counts() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("counts");
    assert_eq!(ch.declare_queue(&q).await.1, 0);
    ch.confirm_select().await;
    for _ in 0..3 {
        ch.publish_confirmed("", &q, b"m").await;
    }
    let (name, m, c) = ch.declare_queue(&q).await; // non-passive redeclare
    assert_eq!((name.as_str(), m, c), (q.as_str(), 3, 0));
    let other = conn.channel().await;
    other.qos(1, false).await;
    let (_t, mut rx) = other.consume(&q, false).await;
    next_delivery(&mut rx).await;
    // one unacked message is not counted
    assert_eq!(ch.queue_counts(&q).await, (2, 1));
    let (_t2, _rx2) = ch.consume(&q, true).await;
    conn.close().await;
}

/// Passive declare of a missing queue closes the channel with 404 NOT_FOUND.
#[tokio::test]
async fn passive_declare_of_missing_queue_is_not_found() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("noq");
    refused(
        "passive declare",
        ch.queue_declare(QueueDeclareArguments::new(&q).passive(true).finish()),
    )
    .await;
    ch.expect_closed(404, &format!("NOT_FOUND - no queue '{q}' in vhost '/'"))
        .await;
    conn.close().await;
}

/// Redeclaring a queue with another durable flag closes the channel with 406.
#[tokio::test]
async fn redeclare_queue_with_other_durability_is_precondition_failed() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("qdur");
    ch.declare_queue(&q).await;
    refused(
        "redeclare durable",
        ch.queue_declare(QueueDeclareArguments::new(&q).durable(true).finish()),
    )
    .await;
    ch.expect_closed(
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': \
             received 'true' but current is 'false'"
        ),
    )
    .await;
    conn.close().await;
}

/// Redeclaring a queue with another auto-delete flag closes the channel with 406.
#[tokio::test]
async fn redeclare_queue_with_other_auto_delete_is_precondition_failed() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("qad");
    ch.declare_queue(&q).await;
    refused(
        "redeclare auto-delete",
        ch.queue_declare(QueueDeclareArguments::new(&q).auto_delete(true).finish()),
    )
    .await;
    ch.expect_closed(
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '{q}' in vhost '/': \
             received 'true' but current is 'false'"
        ),
    )
    .await;
    conn.close().await;
}

fn locked_text(q: &str) -> String {
    format!(
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. \
         It could be originally declared on another connection or the exclusive property \
         value does not match that of the original declaration."
    )
}

/// Redeclaring a non-exclusive queue as exclusive fails with 405 RESOURCE_LOCKED.
#[tokio::test]
async fn redeclare_queue_with_other_exclusivity_is_resource_locked() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("qexcl");
    ch.declare_queue(&q).await;
    refused(
        "redeclare exclusive",
        ch.queue_declare(QueueDeclareArguments::new(&q).exclusive(true).finish()),
    )
    .await;
    ch.expect_closed(405, &locked_text(&q)).await;
    conn.close().await;
}

/// An exclusive queue used from another connection fails with 405 RESOURCE_LOCKED.
#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection() {
    let b = Broker::start();
    let owner = b.connect().await;
    let och = owner.channel().await;
    let (q, _, _) = within(
        "exclusive declare",
        och.queue_declare(
            QueueDeclareArguments::new(&unique("excl"))
                .exclusive(true)
                .finish(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let other = b.connect().await;
    // declare (even passive), consume, get, purge, delete and bind are all refused
    let mut c = other.channel().await;
    refused(
        "passive declare",
        c.queue_declare(QueueDeclareArguments::new(&q).passive(true).finish()),
    )
    .await;
    c.expect_closed(405, &locked_text(&q)).await;
    let mut c = other.channel().await;
    refused(
        "consume",
        c.basic_consume_rx(amqprs::channel::BasicConsumeArguments::new(&q, "")),
    )
    .await;
    c.expect_closed(405, &locked_text(&q)).await;
    let mut c = other.channel().await;
    refused(
        "get",
        c.basic_get(amqprs::channel::BasicGetArguments::new(&q)),
    )
    .await;
    c.expect_closed(405, &locked_text(&q)).await;
    let mut c = other.channel().await;
    refused("delete", c.queue_delete(QueueDeleteArguments::new(&q))).await;
    c.expect_closed(405, &locked_text(&q)).await;
    let mut c = other.channel().await;
    refused("purge", c.queue_purge(QueuePurgeArguments::new(&q))).await;
    c.expect_closed(405, &locked_text(&q)).await;
    let mut c = other.channel().await;
    refused(
        "bind",
        c.queue_bind(QueueBindArguments::new(&q, "amq.fanout", "")),
    )
    .await;
    c.expect_closed(405, &locked_text(&q)).await;
    // the owner still uses it freely
    assert_eq!(och.queue_counts(&q).await, (0, 0));
    other.close().await;
    owner.close().await;
}

/// An exclusive queue is deleted when its declaring connection closes.
#[tokio::test]
async fn exclusive_queue_is_deleted_with_its_connection() {
    let b = Broker::start();
    let owner = b.connect().await;
    let och = owner.channel().await;
    let q = unique("excl-gone");
    within(
        "exclusive declare",
        och.queue_declare(QueueDeclareArguments::new(&q).exclusive(true).finish()),
    )
    .await
    .unwrap();
    let observer = b.connect().await;
    owner.close().await;
    observer.wait_queue_deleted(&q).await;
    observer.close().await;
}

/// An auto-delete queue survives until its last consumer cancels, then it is deleted.
#[tokio::test]
async fn auto_delete_queue_is_deleted_after_last_consumer_cancels() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let q = unique("autodel");
    within(
        "auto-delete declare",
        ch.queue_declare(QueueDeclareArguments::transient_autodelete(&q)),
    )
    .await
    .unwrap();
    let (t1, _r1) = ch.consume(&q, true).await;
    let (t2, _r2) = ch.consume(&q, true).await;
    ch.cancel(&t1).await;
    assert_eq!(ch.queue_counts(&q).await, (0, 1));
    ch.cancel(&t2).await;
    conn.wait_queue_deleted(&q).await;
    conn.close().await;
}

/// queue.bind makes an exchange route to the queue; queue.unbind stops it.
#[tokio::test]
async fn bind_and_unbind_control_routing() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("bindq");
    let key = unique("k");
    ch.declare_queue(&q).await;
    ch.confirm_select().await;
    ch.publish_confirmed("amq.direct", &key, b"before-bind")
        .await;
    ch.bind(&q, "amq.direct", &key).await;
    ch.publish_confirmed("amq.direct", &key, b"bound").await;
    ch.unbind(&q, "amq.direct", &key).await;
    ch.publish_confirmed("amq.direct", &key, b"after-unbind")
        .await;
    assert_eq!(ch.drain(&q).await, ["bound"]);
    // unbinding a binding that does not exist is fine
    ch.unbind(&q, "amq.direct", &key).await;
    ch.events.assert_empty();
    conn.close().await;
}

/// Binding to a missing exchange, or binding a missing queue, closes the channel with 404.
#[tokio::test]
async fn bind_with_missing_exchange_or_queue_is_not_found() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = unique("bindmiss");
    let x = unique("nox");
    ch.declare_queue(&q).await;
    refused(
        "bind to missing exchange",
        ch.queue_bind(QueueBindArguments::new(&q, &x, "k")),
    )
    .await;
    ch.expect_closed(404, &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"))
        .await;
    let mut ch = conn.channel().await;
    let missing = unique("noq");
    refused(
        "bind missing queue",
        ch.queue_bind(QueueBindArguments::new(&missing, "amq.direct", "k")),
    )
    .await;
    ch.expect_closed(
        404,
        &format!("NOT_FOUND - no queue '{missing}' in vhost '/'"),
    )
    .await;
    conn.close().await;
}

/// queue.purge returns the number of ready messages removed; unacked ones are kept.
#[tokio::test]
async fn purge_returns_count_and_keeps_unacked() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = unique("purge");
    ch.declare_queue(&q).await;
    ch.confirm_select().await;
    for i in 0..5 {
        ch.publish_confirmed("", &q, format!("m{i}").as_bytes())
            .await;
    }
    let (_ok, _, _) = ch.get(&q, false).await.expect("one unacked");
    let purged = within(
        "queue.purge-ok",
        ch.queue_purge(QueuePurgeArguments::new(&q)),
    )
    .await
    .expect("purge")
    .expect("purge-ok");
    assert_eq!(purged, 4);
    let again = within(
        "queue.purge-ok",
        ch.queue_purge(QueuePurgeArguments::new(&q)),
    )
    .await
    .expect("purge")
    .expect("purge-ok");
    assert_eq!(again, 0);
    ch.close().await; // the unacked m0 returns
    let ch2 = conn.channel().await;
    assert_eq!(ch2.drain(&q).await, ["m0"]);
    conn.close().await;
}

/// queue.delete with if-unused on a queue with a consumer fails with 406.
#[tokio::test]
async fn delete_if_unused_with_consumer_is_precondition_failed() {
    let b = Broker::start();
    let conn = b.connect().await;
    let cons = conn.channel().await;
    let mut ch = conn.channel().await;
    let q = unique("delunused");
    ch.declare_queue(&q).await;
    cons.consume(&q, true).await;
    refused(
        "delete if-unused",
        ch.queue_delete(QueueDeleteArguments::new(&q).if_unused(true).finish()),
    )
    .await;
    ch.expect_closed(
        406,
        &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' in use"),
    )
    .await;
    assert_eq!(cons.queue_counts(&q).await, (0, 1));
    conn.close().await;
}

/// queue.delete with if-empty on a queue holding messages fails with 406.
#[tokio::test]
async fn delete_if_empty_with_messages_is_precondition_failed() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("delempty");
    ch.declare_queue(&q).await;
    ch.confirm_select().await;
    ch.publish_confirmed("", &q, b"m").await;
    refused(
        "delete if-empty",
        ch.queue_delete(QueueDeleteArguments::new(&q).if_empty(true).finish()),
    )
    .await;
    ch.expect_closed(
        406,
        &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty"),
    )
    .await;
    let ch2 = conn.channel().await;
    assert_eq!(ch2.queue_counts(&q).await, (1, 0));
    conn.close().await;
}

/// Deleting a queue that does not exist succeeds with a message count of 0.
#[tokio::test]
async fn delete_of_missing_queue_is_ok() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let n = within(
        "queue.delete-ok",
        ch.queue_delete(QueueDeleteArguments::new(&unique("never"))),
    )
    .await
    .expect("delete of a missing queue")
    .expect("delete-ok");
    assert_eq!(n, 0);
    ch.declare_queue(&unique("still-open")).await;
    ch.events.assert_empty();
    conn.close().await;
}

/// delete-ok carries the number of messages the deleted queue held.
#[tokio::test]
async fn delete_ok_returns_message_count() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = unique("delcount");
    ch.declare_queue(&q).await;
    ch.confirm_select().await;
    for _ in 0..3 {
        ch.publish_confirmed("", &q, b"m").await;
    }
    let n = within(
        "queue.delete-ok",
        ch.queue_delete(QueueDeleteArguments::new(&q)),
    )
    .await
    .expect("delete")
    .expect("delete-ok");
    assert_eq!(n, 3);
    assert!(!conn.queue_exists(&q).await);
    conn.close().await;
}

/// Deleting a queue cancels its consumers with a server-sent basic.cancel.
#[tokio::test]
async fn delete_of_consumed_queue_notifies_consumer() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut cons = conn.channel().await;
    let ch = conn.channel().await;
    let q = unique("delcancel");
    ch.declare_queue(&q).await;
    let (tag, _rx) = cons.consume(&q, true).await;
    within(
        "queue.delete-ok",
        ch.queue_delete(QueueDeleteArguments::new(&q)),
    )
    .await
    .expect("delete");
    match cons.events.next().await {
        ChanEvent::Cancelled(t) => assert_eq!(t, tag),
        other => panic!("expected basic.cancel, got {other:?}"),
    }
    assert!(cons.is_open());
    conn.close().await;
}

/// Declaring a queue named amq.* is refused with 403 ACCESS_REFUSED.
#[tokio::test]
async fn declare_of_reserved_amq_queue_name_is_access_refused() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    refused(
        "declare amq.q",
        ch.queue_declare(QueueDeclareArguments::new("amq.myqueue")),
    )
    .await;
    ch.expect_closed(
        403,
        "ACCESS_REFUSED - queue name 'amq.myqueue' contains reserved prefix 'amq.*'",
    )
    .await;
    conn.close().await;
}
