//! Permissions checked on every operation as RabbitMQ 3.10 checks them, with its reply codes
//! and texts, in its order relative to the existence checks: the rows observed with pika on
//! RabbitMQ 3.10 (tests/fixtures/rabbitmq-3.10-access-control.txt), replayed over the wire
//! with amqprs in a vhost of their own. Against RabbitMQ set CONEY_TEST_ADDR and
//! CONEY_RABBITMQ_DIR.

use crate::access_support::{login, Setup};
use crate::ext_support::{s, table};
use crate::support::*;
use amqprs::channel::{
    BasicConsumeArguments, BasicGetArguments, ExchangeBindArguments, ExchangeDeclareArguments,
    ExchangeDeleteArguments, ExchangeUnbindArguments, QueueBindArguments, QueueDeclareArguments,
    QueueDeleteArguments, QueuePurgeArguments, QueueUnbindArguments,
};
use amqprs::{BasicProperties, FieldTable};

/// One operation of the table, on a fresh channel.
enum Op<'a> {
    /// queue.declare; "" is a server-named exclusive queue.
    Declare(&'a str),
    DeclareArgs(&'a str, FieldTable),
    PassiveQueue(&'a str),
    Exchange(&'a str),
    ExchangeArgs(&'a str, FieldTable),
    PassiveExchange(&'a str),
    DeleteQueue(&'a str),
    DeleteExchange(&'a str),
    Bind(&'a str, &'a str, &'a str),
    Unbind(&'a str, &'a str, &'a str),
    BindX(&'a str, &'a str, &'a str),
    UnbindX(&'a str, &'a str, &'a str),
    Publish(&'a str, &'a str),
    PublishAs(&'a str, &'a str, &'a str),
    Get(&'a str),
    Consume(&'a str),
    Purge(&'a str),
}

/// "ok", or "CODE TEXT" of the channel (or connection) close the operation got; a
/// server-generated queue name shows as `amq.gen-*`.
async fn outcome(c: &Conn, op: Op<'_>) -> String {
    let mut ch = c.channel().await;
    let result = match op {
        Op::Declare("") => within(
            "declare",
            ch.ch
                .queue_declare(QueueDeclareArguments::exclusive_server_named()),
        )
        .await
        .map(|_| ()),
        Op::Declare(q) => within(
            "declare",
            ch.ch
                .queue_declare(QueueDeclareArguments::new(q).auto_delete(true).finish()),
        )
        .await
        .map(|_| ()),
        Op::DeclareArgs(q, args) => within(
            "declare",
            ch.ch.queue_declare(
                QueueDeclareArguments::new(q)
                    .auto_delete(true)
                    .arguments(args)
                    .finish(),
            ),
        )
        .await
        .map(|_| ()),
        Op::PassiveQueue(q) => within(
            "passive",
            ch.ch
                .queue_declare(QueueDeclareArguments::new(q).passive(true).finish()),
        )
        .await
        .map(|_| ()),
        Op::Exchange(x) => {
            within(
                "exchange",
                ch.ch.exchange_declare(
                    ExchangeDeclareArguments::new(x, "fanout")
                        .auto_delete(true)
                        .finish(),
                ),
            )
            .await
        }
        Op::ExchangeArgs(x, args) => {
            within(
                "exchange",
                ch.ch.exchange_declare(
                    ExchangeDeclareArguments::new(x, "fanout")
                        .auto_delete(true)
                        .arguments(args)
                        .finish(),
                ),
            )
            .await
        }
        Op::PassiveExchange(x) => {
            within(
                "passive",
                ch.ch.exchange_declare(
                    ExchangeDeclareArguments::new(x, "topic")
                        .passive(true)
                        .finish(),
                ),
            )
            .await
        }
        Op::DeleteQueue(q) => within("delete", ch.ch.queue_delete(QueueDeleteArguments::new(q)))
            .await
            .map(|_| ()),
        Op::DeleteExchange(x) => {
            within(
                "delete",
                ch.ch.exchange_delete(ExchangeDeleteArguments::new(x)),
            )
            .await
        }
        Op::Bind(q, x, k) => {
            within("bind", ch.ch.queue_bind(QueueBindArguments::new(q, x, k))).await
        }
        Op::Unbind(q, x, k) => {
            within(
                "unbind",
                ch.ch.queue_unbind(QueueUnbindArguments::new(q, x, k)),
            )
            .await
        }
        Op::BindX(d, src, k) => {
            within(
                "e2e bind",
                ch.ch.exchange_bind(ExchangeBindArguments::new(d, src, k)),
            )
            .await
        }
        Op::UnbindX(d, src, k) => {
            within(
                "e2e unbind",
                ch.ch
                    .exchange_unbind(ExchangeUnbindArguments::new(d, src, k)),
            )
            .await
        }
        Op::Get(q) => within("get", ch.ch.basic_get(BasicGetArguments::new(q)))
            .await
            .map(|_| ()),
        Op::Consume(q) => within(
            "consume",
            ch.ch.basic_consume_rx(BasicConsumeArguments::new(q, "")),
        )
        .await
        .map(|_| ()),
        Op::Purge(q) => within("purge", ch.ch.queue_purge(QueuePurgeArguments::new(q)))
            .await
            .map(|_| ()),
        Op::Publish(x, k) => return published(&mut ch, x, k, BasicProperties::default()).await,
        Op::PublishAs(x, k, uid) => {
            let props = BasicProperties::default().with_user_id(uid).finish();
            return published(&mut ch, x, k, props).await;
        }
    };
    match result {
        Ok(()) => "ok".into(),
        Err(_) => closed(&mut ch).await,
    }
}

/// Publishes in confirm mode: "ok" once acked, or the close it got.
async fn published(ch: &mut Chan, x: &str, k: &str, props: BasicProperties) -> String {
    ch.confirm_select().await;
    ch.publish_with(x, k, props, b"m", false).await;
    match ch.events.next().await {
        ChanEvent::Ack { .. } => "ok".into(),
        ChanEvent::Closed {
            code,
            text,
            class_id,
            method_id,
        } => {
            assert_eq!((class_id, method_id), (60, 40), "{text}");
            format!("{code} {text}")
        }
        other => panic!("publish to {x}: {other:?}"),
    }
}

async fn closed(ch: &mut Chan) -> String {
    let (code, text) = ch.events.closed().await;
    let text = match text.find("'amq.gen-") {
        Some(at) => format!("{}'amq.gen-*{}", &text[..at], &text[at + 31..]),
        None => text,
    };
    format!("{code} {text}")
}

/// A vhost of the test's own, guest everywhere in it, and the entities of the observed
/// session: queues pre, srcq, dstq, otherq; exchanges srcx (topic), dstx, otherx, ae-ok,
/// ae-no, dlx-no (fanout), tx3 (topic), txd, x (direct).
struct Node {
    b: Broker,
    vhost: String,
}

impl Node {
    async fn start(setup: impl FnOnce(Setup, &str) -> Setup) -> Node {
        let vhost = unique("perm");
        let b = setup(
            Setup::new()
                .vhost(&vhost)
                .permit("guest", &vhost, ".*", ".*", ".*"),
            &vhost,
        )
        .start();
        let c = login(&b, "guest", "guest", &vhost).await;
        let ch = c.channel().await;
        for q in ["pre", "srcq", "dstq", "otherq"] {
            ch.declare_queue(q).await;
        }
        for (x, t) in [
            ("srcx", "topic"),
            ("dstx", "fanout"),
            ("otherx", "fanout"),
            ("ae-ok", "fanout"),
            ("ae-no", "fanout"),
            ("dlx-no", "fanout"),
            ("tx3", "topic"),
            ("txd", "direct"),
            ("x", "direct"),
        ] {
            ch.declare_exchange(x, t).await;
        }
        c.close().await;
        Node { b, vhost }
    }

    /// Runs `rows` as `user` and compares each outcome; `{u}` in a text stands for
    /// "in vhost 'VHOST' refused for user 'USER'".
    async fn check(&self, user: &str, rows: Vec<(Op<'_>, &str)>) {
        let c = login(&self.b, user, "p", &self.vhost).await;
        let u = format!("in vhost '{}' refused for user '{user}'", self.vhost);
        let mut wrong = Vec::new();
        for (op, want) in rows {
            let what = op_name(&op);
            let want = want.replace("{u}", &u).replace("{vhost}", &self.vhost);
            let got = outcome(&c, op).await;
            if got != want {
                wrong.push(format!("{user} {what}:\n   got {got}\n  want {want}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

fn op_name(op: &Op<'_>) -> String {
    match op {
        Op::Declare(q) | Op::DeclareArgs(q, _) => format!("declare queue '{q}'"),
        Op::PassiveQueue(q) => format!("passive declare '{q}'"),
        Op::Exchange(x) | Op::ExchangeArgs(x, _) => format!("declare exchange '{x}'"),
        Op::PassiveExchange(x) => format!("passive declare exchange '{x}'"),
        Op::DeleteQueue(q) => format!("delete queue '{q}'"),
        Op::DeleteExchange(x) => format!("delete exchange '{x}'"),
        Op::Bind(q, x, k) => format!("bind {q} <- {x} '{k}'"),
        Op::Unbind(q, x, k) => format!("unbind {q} <- {x} '{k}'"),
        Op::BindX(d, x, k) => format!("e2e bind {d} <- {x} '{k}'"),
        Op::UnbindX(d, x, k) => format!("e2e unbind {d} <- {x} '{k}'"),
        Op::Publish(x, k) => format!("publish {x} '{k}'"),
        Op::PublishAs(x, k, uid) => format!("publish {x} '{k}' user_id {uid}"),
        Op::Get(q) => format!("get {q}"),
        Op::Consume(q) => format!("consume {q}"),
        Op::Purge(q) => format!("purge {q}"),
    }
}

/// Declares and deletes need configure on the actual name (passive declares need nothing),
/// "" patterns allow nothing, patterns are unanchored, `amq.` deletions are refused first.
#[tokio::test]
async fn declare_and_delete_need_configure() {
    let (e, a, g) = (unique("u_empty"), unique("u_anchor"), unique("u_gen"));
    let n = Node::start(|s, v| {
        s.user(&e, "p")
            .permit(&e, v, "", "", "")
            .user(&a, "p")
            .permit(&a, v, "q", ".*", ".*")
            .user(&g, "p")
            .permit(&g, v, "^amq\\.gen.*", ".*", ".*")
    })
    .await;
    n.check(&e, vec![
        (Op::Publish("", "k"), "403 ACCESS_REFUSED - access to exchange 'amq.default' {u}"),
        (Op::Declare(""), "403 ACCESS_REFUSED - access to queue 'amq.gen-*' {u}"),
        (Op::Declare("q"), "403 ACCESS_REFUSED - access to queue 'q' {u}"),
        (Op::PassiveQueue("pre"), "ok"),
        (Op::PassiveExchange("amq.topic"), "ok"),
        (Op::Exchange("e1"), "403 ACCESS_REFUSED - access to exchange 'e1' {u}"),
        (Op::Declare("pre"), "403 ACCESS_REFUSED - access to queue 'pre' {u}"),
        (Op::DeleteQueue("pre"), "403 ACCESS_REFUSED - access to queue 'pre' {u}"),
        (Op::DeleteExchange("srcx"), "403 ACCESS_REFUSED - access to exchange 'srcx' {u}"),
        (Op::DeleteExchange("amq.topic"), "403 ACCESS_REFUSED - deletion of system exchange 'amq.topic' in vhost '{vhost}' not allowed"),
        (Op::DeleteQueue("nosuchq"), "403 ACCESS_REFUSED - access to queue 'nosuchq' {u}"),
    ]).await;
    n.check(
        &a,
        vec![
            (Op::Declare("xqx"), "ok"),
            (
                Op::Declare("abc"),
                "403 ACCESS_REFUSED - access to queue 'abc' {u}",
            ),
        ],
    )
    .await;
    n.check(
        &g,
        vec![
            (Op::Declare(""), "ok"),
            (
                Op::Declare("q"),
                "403 ACCESS_REFUSED - access to queue 'q' {u}",
            ),
        ],
    )
    .await;
}

/// Bindings need write on the destination, then neither end the default exchange, then read
/// on the source; a missing source is 404 only after those; exchange-to-exchange alike.
#[tokio::test]
async fn bindings_need_write_on_destination_and_read_on_source() {
    let rw = unique("u_rw");
    let n = Node::start(|s, v| s.user(&rw, "p").permit(&rw, v, ".*", "^dst", "^src")).await;
    n.check(
        &rw,
        vec![
            (Op::Bind("dstq", "srcx", "k"), "ok"),
            (
                Op::Bind("otherq", "srcx", "k"),
                "403 ACCESS_REFUSED - access to queue 'otherq' {u}",
            ),
            (
                Op::Bind("dstq", "otherx", "k"),
                "403 ACCESS_REFUSED - access to exchange 'otherx' {u}",
            ),
            (
                Op::Bind("otherq", "otherx", "k"),
                "403 ACCESS_REFUSED - access to queue 'otherq' {u}",
            ),
            (
                Op::Bind("dstq", "", "k"),
                "403 ACCESS_REFUSED - operation not permitted on the default exchange",
            ),
            (
                Op::Bind("dstq", "srcnosuch", "k"),
                "404 NOT_FOUND - no exchange 'srcnosuch' in vhost '{vhost}'",
            ),
            (
                Op::Bind("nosuchq", "srcx", "k"),
                "403 ACCESS_REFUSED - access to queue 'nosuchq' {u}",
            ),
            (
                Op::Unbind("otherq", "srcx", "k"),
                "403 ACCESS_REFUSED - access to queue 'otherq' {u}",
            ),
            (Op::BindX("dstx", "srcx", "k"), "ok"),
            (
                Op::BindX("otherx", "srcx", "k"),
                "403 ACCESS_REFUSED - access to exchange 'otherx' {u}",
            ),
            (
                Op::BindX("dstx", "otherx", "k"),
                "403 ACCESS_REFUSED - access to exchange 'otherx' {u}",
            ),
            (
                Op::UnbindX("dstx", "otherx", "k"),
                "403 ACCESS_REFUSED - access to exchange 'otherx' {u}",
            ),
        ],
    )
    .await;
}

/// Publish needs write on the exchange before its existence is checked (the default exchange
/// is 'amq.default'); get, consume and purge need read on the queue.
#[tokio::test]
async fn publish_needs_write_and_reads_need_read() {
    let (rw, d, x) = (unique("u_rw"), unique("u_dflt"), unique("u_x"));
    let n = Node::start(|s, v| {
        s.user(&rw, "p")
            .permit(&rw, v, ".*", "^dst", "^src")
            .user(&d, "p")
            .permit(&d, v, ".*", "^amq\\.default$", ".*")
            .user(&x, "p")
            .permit(&x, v, ".*", "^x$", ".*")
    })
    .await;
    n.check(
        &rw,
        vec![
            (
                Op::Publish("srcx", "k"),
                "403 ACCESS_REFUSED - access to exchange 'srcx' {u}",
            ),
            (Op::Publish("dstx", "k"), "ok"),
            (Op::Publish("dstx", "k"), "ok"),
            (
                Op::Publish("nosuch", "k"),
                "403 ACCESS_REFUSED - access to exchange 'nosuch' {u}",
            ),
            (
                Op::Publish("dstnosuch", "k"),
                "404 NOT_FOUND - no exchange 'dstnosuch' in vhost '{vhost}'",
            ),
            (Op::Get("srcq"), "ok"),
            (
                Op::Get("dstq"),
                "403 ACCESS_REFUSED - access to queue 'dstq' {u}",
            ),
            (
                Op::Consume("dstq"),
                "403 ACCESS_REFUSED - access to queue 'dstq' {u}",
            ),
            (
                Op::Purge("dstq"),
                "403 ACCESS_REFUSED - access to queue 'dstq' {u}",
            ),
            (Op::Purge("srcq"), "ok"),
            (
                Op::Get("nosuch"),
                "403 ACCESS_REFUSED - access to queue 'nosuch' {u}",
            ),
        ],
    )
    .await;
    n.check(&d, vec![(Op::Publish("", "k"), "ok")]).await;
    n.check(
        &x,
        vec![
            (
                Op::Publish("", "k"),
                "403 ACCESS_REFUSED - access to exchange 'amq.default' {u}",
            ),
            (Op::Publish("x", "k"), "ok"),
        ],
    )
    .await;
}

/// A new exchange with an alternate exchange needs read on itself and write on the
/// alternate; a new queue with a dead-letter exchange, read on itself and write on the DLX
/// ("" being amq.default).
#[tokio::test]
async fn alternate_and_dead_letter_exchanges_need_read_and_write() {
    let (a1, a2) = (unique("u_ae1"), unique("u_ae2"));
    let n = Node::start(|s, v| {
        s.user(&a1, "p")
            .permit(&a1, v, ".*", "^ae-ok", "^$")
            .user(&a2, "p")
            .permit(&a2, v, ".*", "^ae-ok", ".*")
    })
    .await;
    let ae = |x: &str| table(&[("alternate-exchange", s(x))]);
    let dlx = |x: &str| table(&[("x-dead-letter-exchange", s(x))]);
    n.check(
        &a1,
        vec![
            (
                Op::ExchangeArgs("xa", ae("ae-ok")),
                "403 ACCESS_REFUSED - access to exchange 'xa' {u}",
            ),
            (
                Op::DeclareArgs("qd", dlx("ae-ok")),
                "403 ACCESS_REFUSED - access to queue 'qd' {u}",
            ),
        ],
    )
    .await;
    n.check(
        &a2,
        vec![
            (
                Op::ExchangeArgs("xa2", ae("ae-no")),
                "403 ACCESS_REFUSED - access to exchange 'ae-no' {u}",
            ),
            (Op::ExchangeArgs("xa3", ae("ae-ok")), "ok"),
            (
                Op::DeclareArgs("qd2", dlx("dlx-no")),
                "403 ACCESS_REFUSED - access to exchange 'dlx-no' {u}",
            ),
            (
                Op::DeclareArgs("qd3", dlx("")),
                "403 ACCESS_REFUSED - access to exchange 'amq.default' {u}",
            ),
        ],
    )
    .await;
}

/// Topic permissions: write on publishes and read on (un)binds of topic exchanges only,
/// {username} and {vhost} expanded, {client_id} literal, "" allowing only the empty key.
#[tokio::test]
async fn topic_permissions_on_topic_exchanges() {
    let t = unique("u_t");
    let n = Node::start(|s, v| {
        s.user(&t, "p")
            .permit(&t, v, ".*", ".*", ".*")
            .topic(&t, v, "amq.topic", "^{username}\\.", "^{vhost}-r$")
            .topic(&t, v, "tx3", "^{client_id}$", "")
            .topic(&t, v, "txd", "^nothing$", "^nothing$")
    })
    .await;
    let own = format!("{t}.a");
    let vr = format!("{}-r", n.vhost);
    let topic = |k: &str, x: &str| {
        format!("403 ACCESS_REFUSED - access to topic '{k}' in exchange '{x}' {{u}}")
    };
    n.check(
        &t,
        vec![
            (Op::Publish("amq.topic", &own), "ok"),
            (Op::Publish("amq.topic", "x.a"), &topic("x.a", "amq.topic")),
            (Op::Bind("pre", "amq.topic", &vr), "ok"),
            (
                Op::Bind("pre", "amq.topic", "other"),
                &topic("other", "amq.topic"),
            ),
            (
                Op::Unbind("pre", "amq.topic", "other"),
                &topic("other", "amq.topic"),
            ),
            (Op::Publish("tx3", "{client_id}"), "ok"),
            (Op::Publish("tx3", "cid1"), &topic("cid1", "tx3")),
            (Op::Bind("pre", "tx3", ""), "ok"),
            (Op::Bind("pre", "tx3", "a"), &topic("a", "tx3")),
            (Op::Publish("txd", "other"), "ok"),
            (Op::Bind("pre", "txd", "other"), "ok"),
        ],
    )
    .await;
}

/// A user_id property must name the authenticated user unless it is an impersonator (406),
/// and it is checked after the exchange (404 first).
#[tokio::test]
async fn user_id_must_be_the_authenticated_user() {
    let (t, imp) = (unique("u_t"), unique("u_imp"));
    let n = Node::start(|s, v| {
        s.user(&t, "p")
            .permit(&t, v, ".*", ".*", ".*")
            .user_tagged(&imp, "p", &["impersonator"])
            .permit(&imp, v, ".*", ".*", ".*")
    })
    .await;
    let refused = format!("406 PRECONDITION_FAILED - user_id property set to 'someone' but authenticated user was '{t}'");
    n.check(
        &t,
        vec![
            (Op::PublishAs("amq.direct", "k", "someone"), &refused),
            (Op::PublishAs("amq.direct", "k", &t), "ok"),
            (Op::PublishAs("", "pre", "someone"), &refused),
            (
                Op::PublishAs("nosuch", "k", "someone"),
                "404 NOT_FOUND - no exchange 'nosuch' in vhost '{vhost}'",
            ),
        ],
    )
    .await;
    n.check(
        &imp,
        vec![(Op::PublishAs("amq.direct", "k", "someone"), "ok")],
    )
    .await;
}
