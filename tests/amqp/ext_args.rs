//! Queue arguments as RabbitMQ 3.10 checks them (issue 10, item 10): types and values with its
//! 406 texts, which arguments a redeclare compares (406 inequivalent arg) and which it does
//! not, and unknown x- arguments accepted. Arguments of one feature are also covered in that
//! feature's file (x-max-priority in ext_priority, x-single-active-consumer in ext_sac,
//! quorum arguments in ext_quorum, alternate-exchange in ext_ae). Run against RabbitMQ with
//! CONEY_TEST_ADDR.

use amqprs::{FieldTable, FieldValue};

use crate::ext_support::*;
use crate::support::*;

/// Bad types and values of the queue arguments RabbitMQ knows: each is 406 with the exact
/// text "invalid arg '<arg>' for queue '<q>' in vhost '/': <detail>" (the dead-letter
/// exchange's type error has its own wording).
#[tokio::test]
async fn bad_argument_types_and_values_are_precondition_failed() {
    let b = Broker::start();
    let conn = b.connect().await;
    let cases: Vec<(&str, FieldValue, &str)> = vec![
        (
            "x-message-ttl",
            s("abc"),
            "\"expected integer, got longstr\"",
        ),
        ("x-message-ttl", int(-1), "{value_negative,-1}"),
        (
            "x-message-ttl",
            long(315_360_000_001),
            "{value_too_large,315360000001}",
        ),
        (
            "x-message-ttl",
            FieldValue::d(1.5),
            "\"expected integer, got double\"",
        ),
        (
            "x-message-ttl",
            boolean(true),
            "\"expected integer, got bool\"",
        ),
        ("x-expires", int(0), "{value_zero,0}"),
        ("x-expires", int(-1), "{value_negative,-1}"),
        ("x-expires", s("x"), "\"expected integer, got longstr\""),
        (
            "x-expires",
            long(315_360_000_001),
            "{value_too_large,315360000001}",
        ),
        ("x-max-length", int(-1), "{value_negative,-1}"),
        ("x-max-length", s("x"), "\"expected integer, got longstr\""),
        ("x-max-length-bytes", int(-1), "{value_negative,-1}"),
        ("x-overflow", s("foo"), "invalid_overflow"),
        ("x-overflow", int(1), "{unacceptable_type,signedint}"),
        ("x-queue-type", s("foo"), "\"unsupported queue type 'foo'\""),
        ("x-queue-type", int(1), "{unacceptable_type,signedint}"),
        ("x-queue-mode", s("foo"), "\"unsupported queue mode 'foo'\""),
        (
            "x-dead-letter-routing-key",
            int(1),
            "{unacceptable_type,signedint}",
        ),
        (
            "x-dead-letter-routing-key",
            s("rk"),
            "routing_key_but_no_dlx_defined",
        ),
    ];
    for (arg, value, detail) in cases {
        let q = unique("badarg");
        expect_declare_refused(
            &conn,
            qargs(&q, table(&[(arg, value)])),
            406,
            &invalid_arg(arg, &q, detail),
        )
        .await;
    }
    let q = unique("badarg-dlx");
    expect_declare_refused(
        &conn,
        qargs(&q, table(&[("x-dead-letter-exchange", int(1))])),
        406,
        &format!(
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in \
             queue '{q}' in vhost '/'"
        ),
    )
    .await;
    for arg in ["x-max-in-memory-length", "x-max-in-memory-bytes"] {
        let q = unique("badarg-qq-only");
        expect_declare_refused(
            &conn,
            qargs(&q, table(&[(arg, int(5))])),
            406,
            &format!(
                "PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/' of queue \
                 type rabbit_classic_queue"
            ),
        )
        .await;
    }
    conn.close().await;
}

/// Valid values at the edges, in every integer width RabbitMQ accepts, are accepted.
#[tokio::test]
async fn valid_argument_values_are_accepted() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let cases: Vec<(&str, FieldValue)> = vec![
        ("x-message-ttl", int(0)),
        ("x-message-ttl", long(315_360_000_000)),
        ("x-message-ttl", FieldValue::b(5)),
        ("x-message-ttl", FieldValue::B(200)),
        ("x-message-ttl", FieldValue::s(1000)),
        ("x-message-ttl", FieldValue::u(60000)),
        ("x-message-ttl", FieldValue::i(4_000_000_000)),
        ("x-expires", int(1)),
        ("x-expires", long(315_360_000_000)),
        ("x-max-length", int(0)),
        ("x-max-length", long(i64::MAX)),
        ("x-max-length-bytes", int(0)),
        ("x-overflow", s("drop-head")),
        ("x-overflow", s("reject-publish")),
        ("x-overflow", s("reject-publish-dlx")),
        ("x-queue-type", s("classic")),
        ("x-queue-mode", s("default")),
        ("x-queue-mode", s("lazy")),
        ("x-dead-letter-exchange", s("")),
    ];
    for (arg, value) in cases {
        let q = unique("okarg");
        ch.declare(qargs(&q, table(&[(arg, value.clone())]))).await;
        ch.delete_queue(&q).await;
    }
    conn.close().await;
}

/// Unknown arguments (x- or not, any type) are accepted, for queues and exchanges.
#[tokio::test]
async fn unknown_arguments_are_accepted() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let unknown = table(&[
        ("x-foo-bar", s("whatever")),
        ("x-number", int(-7)),
        ("x-flag", boolean(true)),
        ("not-x-prefixed", long(1)),
    ]);
    ch.declare_args(&unique("unknown-args"), unknown.clone())
        .await;
    ch.declare_exchange_args(&unique("unknown-args-x"), "topic", unknown)
        .await;
    conn.close().await;
}

/// Redeclaring with a different value of an argument RabbitMQ compares is 406 "inequivalent
/// arg", with RabbitMQ's way of showing both sides (a missing side is "none", the other then
/// shows its value and type).
#[tokio::test]
async fn redeclare_with_different_arguments_is_inequivalent() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let none = FieldTable::new;
    let one = |k: &str, v: FieldValue| table(&[(k, v)]);
    let cases: Vec<(&str, FieldTable, FieldTable, &str)> = vec![
        (
            "x-message-ttl",
            one("x-message-ttl", int(1000)),
            one("x-message-ttl", int(2000)),
            "received '2000' but current is '1000'",
        ),
        (
            "x-message-ttl",
            one("x-message-ttl", int(1000)),
            none(),
            "received none but current is the value '1000' of type 'signedint'",
        ),
        (
            "x-message-ttl",
            none(),
            one("x-message-ttl", int(1000)),
            "received the value '1000' of type 'signedint' but current is none",
        ),
        (
            "x-expires",
            one("x-expires", int(10000)),
            one("x-expires", int(20000)),
            "received '20000' but current is '10000'",
        ),
        (
            "x-max-length",
            one("x-max-length", int(10)),
            one("x-max-length", int(20)),
            "received '20' but current is '10'",
        ),
        (
            "x-max-length-bytes",
            one("x-max-length-bytes", int(10)),
            one("x-max-length-bytes", int(20)),
            "received '20' but current is '10'",
        ),
        (
            "x-overflow",
            one("x-overflow", s("drop-head")),
            one("x-overflow", s("reject-publish")),
            "received 'reject-publish' but current is 'drop-head'",
        ),
        (
            "x-overflow",
            none(),
            one("x-overflow", s("drop-head")),
            "received the value 'drop-head' of type 'longstr' but current is none",
        ),
        (
            "x-dead-letter-exchange",
            one("x-dead-letter-exchange", s("a")),
            one("x-dead-letter-exchange", s("b")),
            "received 'b' but current is 'a'",
        ),
        (
            "x-max-priority",
            one("x-max-priority", int(5)),
            one("x-max-priority", int(6)),
            "received '6' but current is '5'",
        ),
        (
            "x-queue-mode",
            one("x-queue-mode", s("lazy")),
            one("x-queue-mode", s("default")),
            "received 'default' but current is 'lazy'",
        ),
        (
            "x-single-active-consumer",
            one("x-single-active-consumer", boolean(true)),
            one("x-single-active-consumer", boolean(false)),
            "received 'false' but current is 'true'",
        ),
        (
            "x-single-active-consumer",
            none(),
            one("x-single-active-consumer", boolean(true)),
            "received the value 'true' of type 'bool' but current is none",
        ),
    ];
    for (arg, first, second, detail) in cases {
        let q = unique("ineq");
        ch.declare(qargs(&q, first)).await;
        expect_declare_refused(
            &conn,
            qargs(&q, second),
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg '{arg}' for queue '{q}' in vhost '/': \
                 {detail}"
            ),
        )
        .await;
        ch.delete_queue(&q).await;
    }
    conn.close().await;
}

/// What a redeclare does not compare: x-queue-type "classic" against no x-queue-type, unknown
/// x- arguments, and the integer width of an equal value (1000 as 'I', 'l', 's' or 'u').
#[tokio::test]
async fn redeclare_ignores_what_rabbitmq_does_not_compare() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let pairs: Vec<(FieldTable, FieldTable)> = vec![
        (FieldTable::new(), table(&[("x-queue-type", s("classic"))])),
        (table(&[("x-queue-type", s("classic"))]), FieldTable::new()),
        (table(&[("x-foo", s("a"))]), table(&[("x-foo", s("b"))])),
        (table(&[("x-foo", s("a"))]), FieldTable::new()),
        (
            table(&[("x-message-ttl", int(1000))]),
            table(&[("x-message-ttl", long(1000))]),
        ),
        (
            table(&[("x-message-ttl", int(1000))]),
            table(&[("x-message-ttl", FieldValue::s(1000))]),
        ),
        (
            table(&[("x-max-length", FieldValue::u(1000))]),
            table(&[("x-max-length", int(1000))]),
        ),
    ];
    for (first, second) in pairs {
        let q = unique("eq");
        ch.declare(qargs(&q, first)).await;
        ch.declare(qargs(&q, second)).await;
        ch.delete_queue(&q).await;
    }
    conn.close().await;
}
