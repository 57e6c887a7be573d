//! Delivery semantics: dispatch between consumers, requeueing, ordering, and the channel
//! errors a client provokes. Run against RabbitMQ with `CONEY_TEST_ADDR=127.0.0.1:5690`.

use std::collections::BTreeSet;

use crate::support::*;
use amqprs::channel::{
    BasicConsumeArguments, BasicGetArguments, BasicPublishArguments, QueueDeclareArguments,
};
use amqprs::BasicProperties;

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// Messages published to a queue are delivered in publish order (FIFO).
#[tokio::test]
async fn queue_delivers_in_fifo_order() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("fifo");
    ch.declare_queue(&q).await;
    let (_t, mut rx) = ch.consume(&q, true).await;
    for i in 0..100 {
        ch.publish("", &q, format!("m{i}").as_bytes()).await;
    }
    let ds = next_deliveries(&mut rx, 100).await;
    assert_eq!(bodies(&ds), names(0..100));
    conn.close().await;
}

/// Two consumers on one queue receive messages alternately (round-robin).
#[tokio::test]
async fn round_robin_between_two_consumers() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut pub_ch = conn.channel().await;
    let c1 = conn.channel().await;
    let c2 = conn.channel().await;
    let q = unique("rr");
    pub_ch.declare_queue(&q).await;
    let (_t1, mut r1) = c1.consume(&q, true).await;
    let (_t2, mut r2) = c2.consume(&q, true).await;
    for i in 0..10 {
        pub_ch.publish("", &q, format!("m{i}").as_bytes()).await;
    }
    let a = bodies(&next_deliveries(&mut r1, 5).await);
    let b2 = bodies(&next_deliveries(&mut r2, 5).await);
    assert_no_delivery(&mut r1).await;
    let evens: Vec<String> = (0..10).step_by(2).map(|i| format!("m{i}")).collect();
    let odds: Vec<String> = (1..10).step_by(2).map(|i| format!("m{i}")).collect();
    assert!(
        (a == evens && b2 == odds) || (a == odds && b2 == evens),
        "not round-robin: c1 {a:?}, c2 {b2:?}"
    );
    conn.close().await;
}

/// With several consumers acking as they go, every message is delivered exactly once.
#[tokio::test]
async fn message_is_never_delivered_to_two_consumers() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut pub_ch = conn.channel().await;
    let q = unique("once");
    pub_ch.declare_queue(&q).await;
    let mut chans = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..3 {
        let c = conn.channel().await;
        c.qos(2, false).await;
        let (_t, rx) = c.consume(&q, false).await;
        chans.push(c);
        rxs.push(rx);
    }
    let total = 60;
    for i in 0..total {
        pub_ch.publish("", &q, format!("m{i}").as_bytes()).await;
    }
    let mut seen = BTreeSet::new();
    let mut per_consumer = [0usize; 3];
    for _ in 0..total {
        let (idx, d) = {
            let [r0, r1, r2] = &mut rxs[..] else {
                unreachable!()
            };
            tokio::select! {
                d = next_delivery(r0) => (0, d),
                d = next_delivery(r1) => (1, d),
                d = next_delivery(r2) => (2, d),
            }
        };
        assert!(!d.redelivered(), "{} redelivered", d.body_str());
        assert!(
            seen.insert(d.body_str()),
            "{} delivered twice",
            d.body_str()
        );
        per_consumer[idx] += 1;
        chans[idx].ack(d.tag(), false).await;
    }
    assert_eq!(seen.len(), total);
    for rx in rxs.iter_mut() {
        assert_no_delivery(rx).await;
    }
    assert!(
        per_consumer.iter().all(|&n| n > 0),
        "some consumer got nothing: {per_consumer:?}"
    );
    assert_eq!(pub_ch.queue_counts(&q).await, (0, 3));
    conn.close().await;
}

/// Unacked messages return, in original order and ahead of undelivered ones, with
/// redelivered=true when the consumer's channel closes.
#[tokio::test]
async fn unacked_messages_requeued_in_order_when_channel_closes() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut setup = conn.channel().await;
    let q = queue_with(&mut setup, "rq-chan", 5).await;
    let ch = conn.channel().await;
    ch.qos(3, false).await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let ds = next_deliveries(&mut rx, 3).await;
    assert_eq!(bodies(&ds), names(0..3));
    ch.close().await;
    let ch2 = conn.channel().await;
    let (_t, mut rx2) = ch2.consume(&q, false).await;
    let again = next_deliveries(&mut rx2, 5).await;
    assert_eq!(bodies(&again), names(0..5));
    let flags: Vec<bool> = again.iter().map(|d| d.redelivered()).collect();
    assert_eq!(flags, [true, true, true, false, false]);
    conn.close().await;
}

/// Unacked messages return in original order with redelivered=true when the connection closes.
#[tokio::test]
async fn unacked_messages_requeued_in_order_when_connection_closes() {
    let b = Broker::start();
    let observer = b.connect().await;
    let mut setup = observer.channel().await;
    let q = queue_with(&mut setup, "rq-conn", 4).await;
    let consumer_conn = b.connect().await;
    let ch = consumer_conn.channel().await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let ds = next_deliveries(&mut rx, 4).await;
    ch.ack(ds[1].tag(), false).await; // m1 is settled, the others are not
    consumer_conn.close().await;
    let ch2 = observer.channel().await;
    let (_t, mut rx2) = ch2.consume(&q, false).await;
    let again = next_deliveries(&mut rx2, 3).await;
    assert_eq!(bodies(&again), ["m0", "m2", "m3"]);
    assert!(again.iter().all(|d| d.redelivered()));
    assert_no_delivery(&mut rx2).await;
    observer.close().await;
}

/// RabbitMQ semantics: basic.cancel does not requeue the consumer's unacked messages; they
/// stay unacked on the channel (still ackable) until it closes, then they are requeued.
#[tokio::test]
async fn cancelled_consumer_keeps_unacked_until_channel_closes() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut setup = conn.channel().await;
    let q = queue_with(&mut setup, "rq-cancel", 3).await;
    let mut ch = conn.channel().await;
    let (tag, mut rx) = ch.consume(&q, false).await;
    let ds = next_deliveries(&mut rx, 3).await;
    ch.cancel(&tag).await;
    // nothing became ready again
    assert_eq!(setup.queue_counts(&q).await, (0, 0));
    // the deliveries are still valid on the channel
    ch.ack(ds[0].tag(), false).await;
    assert_eq!(setup.queue_counts(&q).await, (0, 0));
    ch.events.assert_empty();
    ch.close().await;
    let again = setup.drain(&q).await;
    assert_eq!(again, ["m1", "m2"]);
    conn.close().await;
}

/// A requeued message goes back to its original position, not to the tail of the queue.
#[tokio::test]
async fn requeued_message_returns_to_its_original_position() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = queue_with(&mut ch, "rq-pos", 4).await;
    let (g0, _, _) = ch.get(&q, false).await.expect("m0");
    let (g1, _, b1) = ch.get(&q, false).await.expect("m1");
    assert_eq!(b1, b"m1");
    ch.reject(g1.delivery_tag(), true).await;
    let (g1b, _, b1b) = ch.get(&q, false).await.expect("m1 again");
    assert_eq!(b1b, b"m1", "requeued m1 should be ahead of m2");
    assert!(g1b.redelivered());
    ch.nack(g0.delivery_tag(), false, true).await;
    ch.nack(g1b.delivery_tag(), false, true).await;
    let rest: Vec<String> = ch.drain(&q).await;
    assert_eq!(rest, names(0..4));
    conn.close().await;
}

/// Acking an unknown delivery tag closes the channel with 406 PRECONDITION_FAILED.
#[tokio::test]
async fn ack_of_unknown_delivery_tag_is_precondition_failed() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    ch.ack(42, false).await; // asynchronous: the answer is a channel.close
    ch.expect_closed(406, "PRECONDITION_FAILED - unknown delivery tag 42")
        .await;
    let other = conn.channel().await;
    other.declare_queue(&unique("alive")).await;
    conn.close().await;
}

/// Acking the same delivery tag twice closes the channel with 406 PRECONDITION_FAILED.
#[tokio::test]
async fn double_ack_is_precondition_failed() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = queue_with(&mut ch, "dblack", 1).await;
    let (ok, _, _) = ch.get(&q, false).await.expect("message");
    ch.ack(ok.delivery_tag(), false).await;
    ch.ack(ok.delivery_tag(), false).await;
    ch.expect_closed(
        406,
        &format!(
            "PRECONDITION_FAILED - unknown delivery tag {}",
            ok.delivery_tag()
        ),
    )
    .await;
    conn.close().await;
}

/// Rejecting a delivery tag of another channel is an unknown tag: 406 PRECONDITION_FAILED.
#[tokio::test]
async fn delivery_tags_are_channel_scoped() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let mut other = conn.channel().await;
    let q = queue_with(&mut ch, "scoped", 1).await;
    let (ok, _, _) = ch.get(&q, false).await.expect("message");
    other.reject(ok.delivery_tag(), true).await;
    other
        .expect_closed(
            406,
            &format!(
                "PRECONDITION_FAILED - unknown delivery tag {}",
                ok.delivery_tag()
            ),
        )
        .await;
    ch.ack(ok.delivery_tag(), false).await;
    assert_eq!(ch.queue_counts(&q).await, (0, 0));
    conn.close().await;
}

/// Publishing to a missing exchange closes the channel with 404 NOT_FOUND.
#[tokio::test]
async fn publish_to_missing_exchange_is_not_found() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let x = unique("ghost");
    ch.publish(&x, "k", b"lost").await;
    ch.expect_closed(404, &format!("NOT_FOUND - no exchange '{x}' in vhost '/'"))
        .await;
    assert!(conn.is_open());
    conn.close().await;
}

/// Consuming from a missing queue closes the channel with 404 NOT_FOUND.
#[tokio::test]
async fn consume_from_missing_queue_is_not_found() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("ghostq");
    refused(
        "consume",
        ch.basic_consume_rx(BasicConsumeArguments::new(&q, "")),
    )
    .await;
    ch.expect_closed(404, &format!("NOT_FOUND - no queue '{q}' in vhost '/'"))
        .await;
    conn.close().await;
}

/// basic.get from a missing queue closes the channel with 404 NOT_FOUND.
#[tokio::test]
async fn get_from_missing_queue_is_not_found() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("ghostget");
    refused("get", ch.basic_get(BasicGetArguments::new(&q))).await;
    ch.expect_closed(404, &format!("NOT_FOUND - no queue '{q}' in vhost '/'"))
        .await;
    conn.close().await;
}

/// RabbitMQ semantics: publish with immediate=true is a 540 NOT_IMPLEMENTED connection error.
#[tokio::test]
async fn publish_immediate_is_not_implemented() {
    let b = Broker::start();
    let mut conn = b.connect().await;
    let ch = conn.channel().await;
    let q = unique("imm");
    ch.declare_queue(&q).await;
    let mut args = BasicPublishArguments::new("", &q);
    args.immediate(true);
    within(
        "basic.publish",
        ch.basic_publish(BasicProperties::default(), b"now".to_vec(), args.finish()),
    )
    .await
    .expect("publish");
    let (code, text) = conn.events.closed().await;
    assert_eq!(code, 540);
    assert_eq!(text, "NOT_IMPLEMENTED - immediate=true");
}

/// A queue declared passive on one channel while another channel consumes sees the consumer.
#[tokio::test]
async fn consumer_count_tracks_consumers_across_channels() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let q = unique("ccount");
    ch.declare_queue(&q).await;
    let c1 = conn.channel().await;
    let c2 = conn.channel().await;
    c1.consume(&q, true).await;
    let (t2, _r) = c2.consume(&q, true).await;
    assert_eq!(ch.queue_counts(&q).await, (0, 2));
    c2.cancel(&t2).await;
    assert_eq!(ch.queue_counts(&q).await, (0, 1));
    c1.close().await;
    assert_eq!(ch.queue_counts(&q).await, (0, 0));
    let (_, m, c) = within(
        "queue.declare",
        ch.queue_declare(QueueDeclareArguments::new(&q)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!((m, c), (0, 0));
    conn.close().await;
}
