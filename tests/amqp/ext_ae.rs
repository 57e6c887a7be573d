//! Alternate exchanges (the `alternate-exchange` argument of exchange.declare) as RabbitMQ
//! 3.10 does them (issue 10, item 7): unroutable messages go to the AE (and so are not
//! returned to a mandatory publisher), chains of AEs, a missing AE, a cycle of AEs, and the
//! interplay with exchange-to-exchange bindings: an AE is used by any exchange on the route
//! that routes the message nowhere. Run against RabbitMQ with CONEY_TEST_ADDR.

use amqprs::BasicProperties;

use crate::ext_support::*;
use crate::support::*;

/// A fanout exchange with one queue bound; returns (exchange, queue).
async fn fanout_with_queue(ch: &Chan, prefix: &str) -> (String, String) {
    let (x, q) = (
        unique(&format!("{prefix}-x")),
        unique(&format!("{prefix}-q")),
    );
    ch.declare_exchange(&x, "fanout").await;
    ch.declare_queue(&q).await;
    ch.bind(&q, &x, "").await;
    (x, q)
}

fn ae(name: &str) -> amqprs::FieldTable {
    table(&[("alternate-exchange", s(name))])
}

/// A message the exchange cannot route goes to its alternate exchange with its exchange and
/// routing key unchanged; a mandatory publish is then routed, so not returned. A routable
/// message does not go to the AE.
#[tokio::test]
async fn unroutable_message_goes_to_the_alternate_exchange() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (aex, aeq) = fanout_with_queue(&ch, "ae").await;
    let (x, bound) = (unique("ae-main"), unique("ae-bound"));
    ch.declare_exchange_args(&x, "direct", ae(&aex)).await;
    ch.declare_queue(&bound).await;
    ch.bind(&bound, &x, "known").await;
    let (_t, mut rx) = ch.consume(&aeq, true).await;

    let o = ch
        .publish_outcome(
            &x,
            "unknown-key",
            BasicProperties::default(),
            b"stray",
            true,
        )
        .await;
    assert!(o.acked && o.returned.is_empty(), "{o:?}");
    let d = next_delivery(&mut rx).await;
    assert_eq!(d.body_str(), "stray");
    assert_eq!(
        (
            d.deliver.exchange().as_str(),
            d.deliver.routing_key().as_str()
        ),
        (x.as_str(), "unknown-key")
    );

    ch.publish_props_confirmed(&x, "known", BasicProperties::default(), b"routed")
        .await;
    assert_eq!(ch.drain(&bound).await, ["routed"]);
    assert_no_delivery(&mut rx).await;
    conn.close().await;
}

/// AEs chain: an AE that cannot route the message either hands it to its own AE.
#[tokio::test]
async fn alternate_exchanges_chain() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (last, q) = fanout_with_queue(&ch, "ae-chain-last").await;
    let middle = unique("ae-chain-mid");
    ch.declare_exchange_args(&middle, "direct", ae(&last)).await;
    let first = unique("ae-chain-first");
    ch.declare_exchange_args(&first, "topic", ae(&middle)).await;
    let o = ch
        .publish_outcome(&first, "k", BasicProperties::default(), b"hop", true)
        .await;
    assert!(o.returned.is_empty(), "{o:?}");
    assert_eq!(ch.drain(&q).await, ["hop"]);
    conn.close().await;
}

/// An alternate exchange that does not exist, or a cycle of AEs that routes nowhere: the
/// message is unroutable, so a mandatory publish is returned 312 NO_ROUTE (and acked).
#[tokio::test]
async fn missing_or_cyclic_alternate_exchange_returns_mandatory() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let missing = unique("ae-missing");
    ch.declare_exchange_args(&missing, "direct", ae(&unique("no-such-exchange")))
        .await;
    let (c1, c2) = (unique("ae-cycle-1"), unique("ae-cycle-2"));
    ch.declare_exchange_args(&c1, "direct", ae(&c2)).await;
    ch.declare_exchange_args(&c2, "direct", ae(&c1)).await;
    for x in [&missing, &c1] {
        let o = ch
            .publish_outcome(x, "k", BasicProperties::default(), b"lost", true)
            .await;
        assert!(o.acked, "{x}: {o:?}");
        assert_eq!(
            o.returned,
            [(312, "NO_ROUTE".to_string(), "lost".to_string())],
            "{x}"
        );
    }
    conn.close().await;
}

/// With exchange-to-exchange bindings the AE of the exchange that routes the message nowhere
/// is used: X -> Y where Y has no bindings sends it to Y's AE; but X's own AE is not used when
/// X routed it to Y (even though Y delivers it nowhere), so a mandatory publish is returned.
#[tokio::test]
async fn alternate_exchange_with_exchange_to_exchange_bindings() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (y_ae, y_ae_q) = fanout_with_queue(&ch, "e2e-yae").await;
    let (x, y) = (unique("e2e-x"), unique("e2e-y"));
    ch.declare_exchange(&x, "direct").await;
    ch.declare_exchange_args(&y, "direct", ae(&y_ae)).await;
    ch.bind_exchange(&y, &x, "k").await;
    let o = ch
        .publish_outcome(&x, "k", BasicProperties::default(), b"via-y", true)
        .await;
    assert!(o.returned.is_empty(), "{o:?}");
    assert_eq!(ch.drain(&y_ae_q).await, ["via-y"]);

    let (x_ae, x_ae_q) = fanout_with_queue(&ch, "e2e-xae").await;
    let (x2, y2) = (unique("e2e-x2"), unique("e2e-y2"));
    ch.declare_exchange_args(&x2, "direct", ae(&x_ae)).await;
    ch.declare_exchange(&y2, "direct").await;
    ch.bind_exchange(&y2, &x2, "k").await;
    let o = ch
        .publish_outcome(&x2, "k", BasicProperties::default(), b"dead-end", true)
        .await;
    assert_eq!(o.returned.len(), 1, "{o:?}");
    assert_eq!(ch.count(&x_ae_q).await, 0, "the source's AE was used");
    conn.close().await;
}

/// alternate-exchange must be a string (406, RabbitMQ's text) and is compared on redeclare.
#[tokio::test]
async fn alternate_exchange_argument_checked_and_compared() {
    let b = Broker::start();
    let conn = b.connect().await;
    let x = unique("ae-type");
    let mut c = conn.channel().await;
    refused(
        "exchange.declare alternate-exchange=5",
        c.ch.exchange_declare(
            amqprs::channel::ExchangeDeclareArguments::new(&x, "direct")
                .arguments(table(&[("alternate-exchange", int(5))]))
                .finish(),
        ),
    )
    .await;
    c.expect_closed(
        406,
        &format!(
            "PRECONDITION_FAILED - invalid type 'signedint' for arg 'alternate-exchange' in \
             exchange '{x}' in vhost '/'"
        ),
    )
    .await;
    let x = unique("ae-eq");
    conn.channel()
        .await
        .declare_exchange_args(&x, "direct", ae("a"))
        .await;
    for (args, detail) in [
        (ae("b"), "received 'b' but current is 'a'".to_string()),
        (
            amqprs::FieldTable::new(),
            "received none but current is the value 'a' of type 'longstr'".to_string(),
        ),
    ] {
        let mut c = conn.channel().await;
        refused(
            "exchange.declare with another alternate-exchange",
            c.ch.exchange_declare(
                amqprs::channel::ExchangeDeclareArguments::new(&x, "direct")
                    .arguments(args)
                    .finish(),
            ),
        )
        .await;
        c.expect_closed(
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '{x}' \
                 in vhost '/': {detail}"
            ),
        )
        .await;
    }
    conn.close().await;
}

/// The alternate exchange is found by name when a message needs it: one declared after the
/// exchange that names it is used from then on, and it may be internal (clients cannot
/// publish to it, the broker can route through it).
#[tokio::test]
async fn alternate_exchange_is_looked_up_by_name_and_may_be_internal() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (x, later) = (unique("ae-later-x"), unique("ae-later"));
    ch.declare_exchange_args(&x, "direct", ae(&later)).await;
    let o = ch
        .publish_outcome(&x, "k", BasicProperties::default(), b"early", true)
        .await;
    assert_eq!(o.returned.len(), 1, "no AE yet: {o:?}");
    within(
        "exchange.declare internal AE",
        ch.ch.exchange_declare(
            amqprs::channel::ExchangeDeclareArguments::new(&later, "fanout")
                .internal(true)
                .finish(),
        ),
    )
    .await
    .expect("exchange.declare internal");
    let q = unique("ae-later-q");
    ch.declare_queue(&q).await;
    ch.bind(&q, &later, "").await;
    let o = ch
        .publish_outcome(&x, "k", BasicProperties::default(), b"late", true)
        .await;
    assert!(o.acked && o.returned.is_empty(), "{o:?}");
    assert_eq!(ch.drain(&q).await, ["late"]);
    conn.close().await;
}

/// Redeclaring with an alternate-exchange of another type, or adding one where there was
/// none, is inequivalent too, with RabbitMQ's renderings of the values; other x- arguments
/// are not compared.
#[tokio::test]
async fn alternate_exchange_type_changes_are_inequivalent() {
    let b = Broker::start();
    let conn = b.connect().await;
    let (with, without) = (unique("ae-typed"), unique("ae-none"));
    let ch = conn.channel().await;
    ch.declare_exchange_args(&with, "direct", ae("a")).await;
    ch.declare_exchange(&without, "direct").await;
    ch.declare_exchange_args(
        &with,
        "direct",
        table(&[("alternate-exchange", s("a")), ("x-other", int(1))]),
    )
    .await;
    for (x, detail) in [
        (&with, "received '5' but current is 'a'"),
        (
            &without,
            "received the value '5' of type 'signedint' but current is none",
        ),
    ] {
        let mut c = conn.channel().await;
        refused(
            "exchange.declare alternate-exchange=5",
            c.ch.exchange_declare(
                amqprs::channel::ExchangeDeclareArguments::new(x, "direct")
                    .arguments(table(&[("alternate-exchange", int(5))]))
                    .finish(),
            ),
        )
        .await;
        c.expect_closed(
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange \
                 '{x}' in vhost '/': {detail}"
            ),
        )
        .await;
    }
    conn.close().await;
}
