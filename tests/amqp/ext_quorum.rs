//! x-queue-type (issue 10, item 6): `quorum` as RabbitMQ 3.10 does it on one node (durable
//! only, x-delivery-limit with the x-delivery-count header, poison messages dead-lettered with
//! reason delivery_limit, the 406 texts for what quorum queues refuse, single active consumer
//! differences), and `stream`, which coney refuses. Quorum queues are deleted at the end of
//! each test (on RabbitMQ each is a Raft cluster). Run against RabbitMQ with CONEY_TEST_ADDR.

use amqprs::{BasicProperties, FieldTable, FieldValue};

use crate::ext_support::*;
use crate::support::*;

/// The arguments of a quorum queue plus `more`.
fn quorum(more: &[(&str, FieldValue)]) -> FieldTable {
    let mut all = vec![("x-queue-type", s("quorum"))];
    all.extend(more.iter().cloned());
    table(&all)
}

/// The x-delivery-count header (RabbitMQ 3.10 sends it as a signed 64-bit 'l').
fn delivery_count(props: &BasicProperties) -> Option<i64> {
    header(props, "x-delivery-count").map(|v| match v {
        FieldValue::l(n) => *n,
        other => panic!("x-delivery-count should be an 'l', got {other:?}"),
    })
}

/// A quorum queue is declared durable, takes and delivers persistent messages, and its type
/// is compared on redeclare: without x-queue-type or as classic is 406 inequivalent.
#[tokio::test]
async fn quorum_queue_declares_delivers_and_keeps_its_type() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = unique("qq");
    let (name, m, c) = ch.declare(durable_qargs(&q, quorum(&[]))).await;
    assert_eq!((name.as_str(), m, c), (q.as_str(), 0, 0));
    let props = BasicProperties::default().with_persistence(true).finish();
    ch.publish_props_confirmed("", &q, props, b"replicated")
        .await;
    assert_eq!(ch.count(&q).await, 1);
    ch.declare(durable_qargs(&q, quorum(&[]))).await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let d = next_delivery(&mut rx).await;
    assert_eq!(
        (d.body_str().as_str(), d.props.delivery_mode()),
        ("replicated", Some(2))
    );
    assert_eq!(
        delivery_count(&d.props),
        None,
        "no header on a first delivery"
    );
    ch.ack(d.tag(), false).await;
    for (args, received) in [
        (FieldTable::new(), "none"),
        (table(&[("x-queue-type", s("classic"))]), "'classic'"),
    ] {
        let current = if received == "none" {
            "the value 'quorum' of type 'longstr'"
        } else {
            "'quorum'"
        };
        expect_declare_refused(
            &conn,
            durable_qargs(&q, args),
            406,
            &format!(
                "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{q}' in vhost \
                 '/': received {received} but current is {current}"
            ),
        )
        .await;
    }
    ch.delete_queue(&q).await;
    conn.close().await;
}

/// What a quorum queue refuses, each with RabbitMQ 3.10's 406 text: non-durable, exclusive
/// ("exclusive-owner"), auto-delete, x-max-priority and x-queue-mode arguments, and a
/// server-named quorum queue.
#[tokio::test]
async fn quorum_queue_refusals() {
    let b = Broker::start();
    let conn = b.connect().await;
    let property = |p: &str, q: &str| {
        format!("PRECONDITION_FAILED - invalid property '{p}' for queue '{q}' in vhost '/'")
    };
    let arg = |a: &str, q: &str| {
        format!(
            "PRECONDITION_FAILED - invalid arg '{a}' for queue '{q}' in vhost '/' of queue type \
             rabbit_quorum_queue"
        )
    };
    let q = unique("qq-transient");
    let args = qargs(&q, quorum(&[]));
    expect_declare_refused(&conn, args, 406, &property("non-durable", &q)).await;
    let q = unique("qq-exclusive");
    let args = durable_qargs(&q, quorum(&[])).exclusive(true).finish();
    expect_declare_refused(&conn, args, 406, &property("exclusive-owner", &q)).await;
    let q = unique("qq-autodelete");
    let args = durable_qargs(&q, quorum(&[])).auto_delete(true).finish();
    expect_declare_refused(&conn, args, 406, &property("auto-delete", &q)).await;
    let q = unique("qq-priority");
    let args = durable_qargs(&q, quorum(&[("x-max-priority", int(5))]));
    expect_declare_refused(&conn, args, 406, &arg("x-max-priority", &q)).await;
    let q = unique("qq-lazy");
    let args = durable_qargs(&q, quorum(&[("x-queue-mode", s("lazy"))]));
    expect_declare_refused(&conn, args, 406, &arg("x-queue-mode", &q)).await;
    expect_declare_refused(
        &conn,
        durable_qargs("", quorum(&[])),
        406,
        "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue",
    )
    .await;
    conn.close().await;
}

/// x-delivery-count counts returns: a first delivery to a consumer has no header, after a
/// reject with requeue it is 1, after the holding channel closes it is 2. (basic.get on
/// RabbitMQ 3.10 adds the header already on a first delivery, with 0.)
#[tokio::test]
async fn delivery_count_header_counts_returns() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = unique("qq-count");
    ch.declare(durable_qargs(&q, quorum(&[]))).await;
    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"m")
        .await;
    let c1 = conn.channel().await;
    let (_t, mut rx) = c1.consume(&q, false).await;
    let d = next_delivery(&mut rx).await;
    assert_eq!((delivery_count(&d.props), d.redelivered()), (None, false));
    c1.reject(d.tag(), true).await;
    let d = next_delivery(&mut rx).await;
    assert_eq!((delivery_count(&d.props), d.redelivered()), (Some(1), true));
    c1.close().await;
    let c2 = conn.channel().await;
    let (_t, mut rx) = c2.consume(&q, false).await;
    let d = next_delivery(&mut rx).await;
    assert_eq!((delivery_count(&d.props), d.redelivered()), (Some(2), true));
    c2.ack(d.tag(), false).await;
    c2.close().await;

    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"got")
        .await;
    let (_, props, _) = ch.get(&q, true).await.expect("message");
    assert_eq!(
        delivery_count(&props),
        Some(0),
        "basic.get's first delivery"
    );
    ch.delete_queue(&q).await;
    conn.close().await;
}

/// A poison message: with x-delivery-limit 2 it is delivered three times (counts none, 1, 2)
/// and on the third return it is dead-lettered with reason delivery_limit, persistence kept.
#[tokio::test]
async fn poison_message_dead_lettered_after_the_delivery_limit() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let (q, dlq) = (unique("qq-poison"), unique("qq-poison-dl"));
    ch.declare_queue(&dlq).await;
    let (_t, mut dl) = ch.consume(&dlq, true).await;
    ch.declare(durable_qargs(
        &q,
        quorum(&[
            ("x-delivery-limit", int(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ]),
    ))
    .await;
    let props = BasicProperties::default().with_persistence(true).finish();
    ch.publish_props_confirmed("", &q, props, b"poison").await;
    let cons = conn.channel().await;
    let (_t, mut rx) = cons.consume(&q, false).await;
    for want in [None, Some(1), Some(2)] {
        let d = next_delivery(&mut rx).await;
        assert_eq!(delivery_count(&d.props), want);
        cons.nack(d.tag(), false, true).await;
    }
    let d = next_delivery(&mut dl).await;
    assert_eq!(
        (d.body_str().as_str(), d.props.delivery_mode()),
        ("poison", Some(2))
    );
    assert_one_death(&d.props, &q, "delivery_limit", "", &[q.as_str()], None);
    assert_no_delivery(&mut rx).await;
    assert_eq!(ch.count(&q).await, 0);
    cons.close().await;
    ch.delete_queue(&q).await;
    conn.close().await;
}

/// Without a dead-letter exchange a poison message is dropped at the limit; x-delivery-limit
/// 0 allows a single delivery.
#[tokio::test]
async fn poison_message_without_dlx_is_dropped() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = unique("qq-drop");
    ch.declare(durable_qargs(&q, quorum(&[("x-delivery-limit", int(0))])))
        .await;
    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"once")
        .await;
    let cons = conn.channel().await;
    let (_t, mut rx) = cons.consume(&q, false).await;
    let d = next_delivery(&mut rx).await;
    cons.reject(d.tag(), true).await;
    assert_no_delivery(&mut rx).await;
    assert_eq!(ch.count(&q).await, 0);
    cons.close().await;
    ch.delete_queue(&q).await;
    conn.close().await;
}

/// x-delivery-limit is a quorum-queue argument: a classic queue refuses it, naming its type.
#[tokio::test]
async fn classic_queue_refuses_x_delivery_limit() {
    let b = Broker::start();
    let conn = b.connect().await;
    let q = unique("classic-dl");
    expect_declare_refused(
        &conn,
        qargs(&q, table(&[("x-delivery-limit", int(5))])),
        406,
        &format!(
            "PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue '{q}' in vhost '/' \
             of queue type rabbit_classic_queue"
        ),
    )
    .await;
    conn.close().await;
}

/// Single active consumer on a quorum queue: declare-ok counts only the active consumer, and
/// basic.get is refused with 405 RESOURCE_LOCKED.
#[tokio::test]
async fn quorum_single_active_consumer_counts_and_refuses_get() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let q = unique("qq-sac");
    ch.declare(durable_qargs(
        &q,
        quorum(&[("x-single-active-consumer", boolean(true))]),
    ))
    .await;
    let mut chans = Vec::new();
    for _ in 0..3 {
        let c = conn.channel().await;
        c.consume(&q, true).await;
        chans.push(c);
    }
    assert_eq!(ch.queue_counts(&q).await, (0, 1));
    let mut g = conn.channel().await;
    refused(
        "basic.get on a quorum SAC queue",
        g.ch.basic_get(amqprs::channel::BasicGetArguments::new(&q)),
    )
    .await;
    g.expect_closed(
        405,
        &format!(
            "RESOURCE_LOCKED - cannot obtain access to locked queue '{q}' in vhost '/'. \
             basic.get operations are not supported by quorum queues with single active consumer"
        ),
    )
    .await;
    for c in chans {
        c.close().await;
    }
    ch.delete_queue(&q).await;
    conn.close().await;
}

/// coney-only (RabbitMQ 3.10 supports streams): x-queue-type stream is refused with 406 and
/// RabbitMQ's text for an unsupported queue type, instead of being accepted and ignored.
#[tokio::test]
async fn stream_queue_type_is_refused() {
    let b = Broker::start();
    if coney_only(&b, "x-queue-type stream is refused") {
        return;
    }
    let conn = b.connect().await;
    let q = unique("stream");
    expect_declare_refused(
        &conn,
        durable_qargs(&q, table(&[("x-queue-type", s("stream"))])),
        406,
        &invalid_arg("x-queue-type", &q, "\"unsupported queue type 'stream'\""),
    )
    .await;
    assert!(!conn.queue_exists(&q).await);
    conn.close().await;
}
