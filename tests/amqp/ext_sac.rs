//! Single active consumer (x-single-active-consumer) as RabbitMQ 3.10 does it for classic
//! queues (issue 10, item 5); the quorum-queue differences are in ext_quorum. Run against
//! RabbitMQ with CONEY_TEST_ADDR.

use amqprs::BasicProperties;

use crate::ext_support::*;
use crate::support::*;

/// Declare a classic single-active-consumer queue.
async fn sac_queue(ch: &Chan, prefix: &str) -> String {
    let q = unique(prefix);
    ch.declare_args(&q, table(&[("x-single-active-consumer", boolean(true))]))
        .await;
    q
}

async fn publish_n(ch: &mut Chan, q: &str, from: usize, to: usize) {
    for i in from..to {
        ch.publish_props_confirmed(
            "",
            q,
            BasicProperties::default(),
            format!("m{i}").as_bytes(),
        )
        .await;
    }
}

fn names(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("m{i}")).collect()
}

/// With several consumers registered, the first one gets every message; the others none.
#[tokio::test]
async fn first_registered_consumer_gets_everything() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = sac_queue(&ch, "sac").await;
    let mut chans = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..3 {
        let c = conn.channel().await;
        rxs.push(c.consume(&q, true).await.1);
        chans.push(c);
    }
    publish_n(&mut ch, &q, 0, 6).await;
    assert_eq!(bodies(&next_deliveries(&mut rxs[0], 6).await), names(0, 6));
    assert_no_delivery(&mut rxs[1]).await;
    assert_no_delivery(&mut rxs[2]).await;
    conn.close().await;
}

/// When the active consumer goes (its channel closed, or basic.cancel), the next one in
/// registration order takes over: B after A, then C after B.
#[tokio::test]
async fn next_consumer_in_registration_order_takes_over() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = sac_queue(&ch, "sac-takeover").await;
    let a = conn.channel().await;
    let (_ta, mut rx_a) = a.consume(&q, true).await;
    let bc = conn.channel().await;
    let (tb, mut rx_b) = bc.consume(&q, true).await;
    let c = conn.channel().await;
    let (_tc, mut rx_c) = c.consume(&q, true).await;
    publish_n(&mut ch, &q, 0, 2).await;
    assert_eq!(bodies(&next_deliveries(&mut rx_a, 2).await), names(0, 2));

    a.close().await;
    publish_n(&mut ch, &q, 2, 4).await;
    assert_eq!(bodies(&next_deliveries(&mut rx_b, 2).await), names(2, 4));
    assert_no_delivery(&mut rx_c).await;

    bc.cancel(&tb).await;
    publish_n(&mut ch, &q, 4, 6).await;
    assert_eq!(bodies(&next_deliveries(&mut rx_c, 2).await), names(4, 6));
    conn.close().await;
}

/// Messages the active consumer held unacknowledged when it went are requeued and go, in
/// order and marked redelivered, to the consumer that takes over.
#[tokio::test]
async fn unacked_messages_go_to_the_next_consumer() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = sac_queue(&ch, "sac-unacked").await;
    let a = conn.channel().await;
    let (_ta, mut rx_a) = a.consume(&q, false).await;
    let bc = conn.channel().await;
    let (_tb, mut rx_b) = bc.consume(&q, false).await;
    publish_n(&mut ch, &q, 0, 3).await;
    next_deliveries(&mut rx_a, 3).await;
    assert_no_delivery(&mut rx_b).await;
    a.close().await;
    let got = next_deliveries(&mut rx_b, 3).await;
    assert_eq!(bodies(&got), names(0, 3));
    assert!(got.iter().all(|d| d.redelivered()));
    conn.close().await;
}

/// On a classic single-active-consumer queue, declare-ok counts every registered consumer,
/// active or waiting (a quorum queue counts only the active one: see ext_quorum).
#[tokio::test]
async fn classic_sac_declare_ok_counts_every_registered_consumer() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let q = sac_queue(&ch, "sac-count").await;
    let mut chans = Vec::new();
    for _ in 0..3 {
        let c = conn.channel().await;
        c.consume(&q, true).await;
        chans.push(c);
    }
    assert_eq!(ch.queue_counts(&q).await, (0, 3));
    conn.close().await;
}

/// Deleting a single-active-consumer queue sends basic.cancel to every consumer, the waiting
/// ones included (consumer_cancel_notify).
#[tokio::test]
async fn deleting_the_queue_cancels_active_and_waiting_consumers() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let q = sac_queue(&ch, "sac-delete").await;
    let mut chans = Vec::new();
    let mut tags = Vec::new();
    for _ in 0..3 {
        let c = conn.channel().await;
        tags.push(c.consume(&q, true).await.0);
        chans.push(c);
    }
    ch.delete_queue(&q).await;
    for (c, tag) in chans.iter_mut().zip(&tags) {
        match c.events.next().await {
            ChanEvent::Cancelled(t) => assert_eq!(&t, tag),
            other => panic!("expected basic.cancel for {tag}, got {other:?}"),
        }
    }
    conn.close().await;
}

/// x-single-active-consumer must be a boolean: other types are 406 with RabbitMQ's text.
#[tokio::test]
async fn sac_argument_must_be_boolean() {
    let b = Broker::start();
    let conn = b.connect().await;
    for (value, detail) in [
        (int(1), "{unacceptable_type,signedint}"),
        (s("true"), "{unacceptable_type,longstr}"),
    ] {
        let q = unique("sac-bad");
        expect_declare_refused(
            &conn,
            qargs(&q, table(&[("x-single-active-consumer", value)])),
            406,
            &invalid_arg("x-single-active-consumer", &q, detail),
        )
        .await;
    }
    let ch = conn.channel().await;
    ch.declare_args(
        &unique("sac-off"),
        table(&[("x-single-active-consumer", boolean(false))]),
    )
    .await;
    conn.close().await;
}

/// With consumer priorities, the first registered consumer is active even when consumers of
/// higher priority register after it; when the active one goes, the consumer of the highest
/// priority takes over (the first registered among equals), as RabbitMQ 3.10 chooses.
#[tokio::test]
async fn takeover_goes_to_the_highest_priority_then_registration_order() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = sac_queue(&ch, "sac-prio").await;
    let mut chans = Vec::new();
    let mut rxs = Vec::new();
    let mut tags = Vec::new();
    for prio in [0, 0, 10, 10] {
        let c = conn.channel().await;
        let (t, rx) = c
            .consume_args(&q, true, table(&[("x-priority", int(prio))]))
            .await;
        tags.push(t);
        rxs.push(rx);
        chans.push(c);
    }
    // Active in turn: A (first registered), C and D (priority 10, in order), then B.
    let mut sent = 0;
    for (step, active) in [0usize, 2, 3, 1].into_iter().enumerate() {
        if step > 0 {
            let previous = [0usize, 2, 3][step - 1];
            chans[previous].cancel(&tags[previous]).await;
        }
        publish_n(&mut ch, &q, sent, sent + 2).await;
        let got = next_deliveries(&mut rxs[active], 2).await;
        assert_eq!(bodies(&got), names(sent, sent + 2), "consumer {active}");
        sent += 2;
    }
    for rx in &mut rxs {
        assert_no_delivery(rx).await;
    }
    conn.close().await;
}

/// An exclusive basic.consume on a single-active-consumer queue is refused with 403, even on
/// a queue without consumers.
#[tokio::test]
async fn exclusive_consume_is_refused_on_a_sac_queue() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let q = sac_queue(&ch, "sac-exclusive").await;
    let mut c = conn.channel().await;
    refused(
        "exclusive basic.consume on a SAC queue",
        c.ch.basic_consume_rx(
            amqprs::channel::BasicConsumeArguments::new(&q, "")
                .exclusive(true)
                .finish(),
        ),
    )
    .await;
    c.expect_closed(
        403,
        &format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"),
    )
    .await;
    conn.close().await;
}
