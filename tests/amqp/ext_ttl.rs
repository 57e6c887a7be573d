//! Message TTL (the queue's x-message-ttl, the message's `expiration`) and queue expiry
//! (x-expires) as RabbitMQ 3.10 does them (issue 10, item 1). Expiry is observed through
//! events: a dead-lettered copy arriving, a get-empty after the deadline, a mandatory publish
//! coming back once the queue is gone. Run against RabbitMQ with CONEY_TEST_ADDR.

use std::time::{Duration, Instant};

use amqprs::channel::QueueDeclareArguments;
use amqprs::BasicProperties;

use crate::ext_support::*;
use crate::support::*;

/// Declare `dlq` and a queue `q` with `args` plus a dead-letter route to `dlq` (through the
/// default exchange); returns a no-ack consumer on `dlq`.
async fn with_dead_letter_queue(
    ch: &Chan,
    q: &str,
    dlq: &str,
    args: &[(&str, amqprs::FieldValue)],
) -> Consumer {
    ch.declare_queue(dlq).await;
    let mut all = vec![
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s(dlq)),
    ];
    all.extend(args.iter().cloned());
    ch.declare_args(q, table(&all)).await;
    ch.consume(dlq, true).await.1
}

/// True if `queue` exists, found without using it (a mandatory publish is not returned).
async fn exists_unused(probe: &mut Chan, queue: &str) -> bool {
    let o = probe
        .publish_outcome("", queue, BasicProperties::default(), b"probe", true)
        .await;
    o.returned.is_empty()
}

/// A queue's x-message-ttl expires messages at the head although nobody consumes or gets:
/// the message count drops to 0 once the TTL has passed, not before.
#[tokio::test]
async fn queue_ttl_expires_messages_without_a_consumer() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("qttl");
    ch.declare_args(&q, table(&[("x-message-ttl", int(300))]))
        .await;
    let t0 = Instant::now();
    for i in 0..3 {
        ch.publish_props_confirmed(
            "",
            &q,
            BasicProperties::default(),
            format!("m{i}").as_bytes(),
        )
        .await;
    }
    assert_eq!(ch.count(&q).await, 3, "expired too early");
    await_count(&ch, &q, 0).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "expired after {:?}, TTL is 300 ms",
        t0.elapsed()
    );
    conn.close().await;
}

/// A per-message `expiration` at the head of the queue expires without a consumer.
#[tokio::test]
async fn message_ttl_at_the_head_expires_without_a_consumer() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("mttl");
    ch.declare_queue(&q).await;
    let t0 = Instant::now();
    ch.publish_props_confirmed("", &q, expiring("300"), b"short")
        .await;
    assert_eq!(ch.count(&q).await, 1, "expired too early");
    await_count(&ch, &q, 0).await;
    assert!(t0.elapsed() >= Duration::from_millis(250));
    conn.close().await;
}

/// A per-message TTL is applied when the message reaches the head: an expired message behind
/// a live one is still counted (RabbitMQ documents this), basic.get never returns it, and it
/// is dead-lettered (reason expired, with original-expiration) as soon as it is the head.
#[tokio::test]
async fn expired_message_behind_the_head_is_counted_never_returned() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (q, dlq) = (unique("behind"), unique("behind-dl"));
    let mut dl = with_dead_letter_queue(&ch, &q, &dlq, &[]).await;
    ch.publish_props_confirmed("", &q, expiring("60000"), b"long")
        .await;
    ch.publish_props_confirmed("", &q, expiring("100"), b"short")
        .await;
    // the deadline itself is what this test waits for
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ch.count(&q).await,
        2,
        "expired messages behind the head are counted"
    );
    assert_eq!(ch.get_body(&q).await.as_deref(), Some("long"));
    let d = next_delivery(&mut dl).await;
    assert_eq!(d.body_str(), "short");
    assert_one_death(&d.props, &q, "expired", "", &[q.as_str()], Some("100"));
    assert_eq!(
        d.props.expiration(),
        None,
        "expiration is removed on dead-lettering"
    );
    assert_eq!(
        ch.get_body(&q).await,
        None,
        "basic.get returned an expired message"
    );
    conn.close().await;
}

/// When the queue's TTL and the message's expiration differ, the lower one wins, either way.
#[tokio::test]
async fn lower_of_queue_and_message_ttl_wins() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    for (queue_ttl, message_ttl) in [(30_000, "200"), (200, "30000")] {
        let (q, dlq) = (unique("lower"), unique("lower-dl"));
        let mut dl =
            with_dead_letter_queue(&ch, &q, &dlq, &[("x-message-ttl", int(queue_ttl))]).await;
        let t0 = Instant::now();
        ch.publish_props_confirmed("", &q, expiring(message_ttl), b"m")
            .await;
        let d = next_delivery(&mut dl).await;
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_secs(3),
            "queue TTL {queue_ttl}, expiration {message_ttl}: expired after {took:?}"
        );
        assert_one_death(
            &d.props,
            &q,
            "expired",
            "",
            &[q.as_str()],
            Some(message_ttl),
        );
    }
    conn.close().await;
}

/// TTL 0: a message is delivered only if a consumer can take it at once; otherwise it expires
/// on arrival (dead-lettered, reason expired). A message requeued later expires too.
#[tokio::test]
async fn ttl_zero_reaches_only_a_consumer_that_can_take_it_now() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let (q, dlq) = (unique("ttl0"), unique("ttl0-dl"));
    let mut dl = with_dead_letter_queue(&ch, &q, &dlq, &[("x-message-ttl", int(0))]).await;
    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"nobody")
        .await;
    assert_eq!(next_delivery(&mut dl).await.body_str(), "nobody");

    let cons = conn.channel().await;
    cons.qos(1, false).await;
    let (_t, mut rx) = cons.consume(&q, false).await;
    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"taken")
        .await;
    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"full")
        .await;
    let taken = next_delivery(&mut rx).await;
    assert_eq!(taken.body_str(), "taken");
    let d = next_delivery(&mut dl).await;
    assert_eq!(d.body_str(), "full", "the consumer had no room: expired");
    assert_one_death(&d.props, &q, "expired", "", &[q.as_str()], None);

    cons.nack(taken.tag(), false, true).await;
    assert_eq!(
        next_delivery(&mut dl).await.body_str(),
        "taken",
        "requeued: expired"
    );
    assert_no_delivery(&mut rx).await;
    conn.close().await;
}

/// A per-message expiration of "0" without a consumer: the message is dropped at once.
#[tokio::test]
async fn expiration_zero_without_a_consumer_is_dropped() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("exp0");
    ch.declare_queue(&q).await;
    ch.publish_props_confirmed("", &q, expiring("0"), b"now-or-never")
        .await;
    await_count(&ch, &q, 0).await;
    assert_eq!(ch.get_body(&q).await, None);
    let (_t, mut rx) = ch.consume(&q, true).await;
    ch.publish_props_confirmed("", &q, expiring("0"), b"taken")
        .await;
    assert_eq!(next_delivery(&mut rx).await.body_str(), "taken");
    conn.close().await;
}

/// A message requeued after its deadline keeps its original expiry: it is not delivered
/// again but dead-lettered (reason expired).
#[tokio::test]
async fn requeued_message_keeps_its_original_expiry() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (q, dlq) = (unique("requeue-exp"), unique("requeue-exp-dl"));
    let mut dl = with_dead_letter_queue(&ch, &q, &dlq, &[]).await;
    ch.publish_props_confirmed("", &q, expiring("200"), b"late")
        .await;
    let (ok, props, _) = ch
        .get(&q, false)
        .await
        .expect("the message before its deadline");
    assert_eq!(props.expiration().map(String::as_str), Some("200"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    ch.nack(ok.delivery_tag(), false, true).await;
    let d = next_delivery(&mut dl).await;
    assert_eq!(d.body_str(), "late");
    assert_eq!(x_deaths(&d.props)[0].reason, "expired");
    assert_eq!(ch.get_body(&q).await, None);
    conn.close().await;
}

/// A malformed `expiration` closes the channel with 406 and RabbitMQ's text naming the value
/// and the parse error, class/method 60/40 (basic.publish); valid ones are accepted.
#[tokio::test]
async fn bad_expiration_is_precondition_failed() {
    let b = Broker::start();
    let conn = b.connect().await;
    for (value, detail) in [
        ("abc", "no_integer"),
        ("", "no_integer"),
        (" 100", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("1.5", "{leftover_string,\".5\"}"),
        ("0x10", "{leftover_string,\"x10\"}"),
        ("315360000001", "{value_too_large,315360000001}"),
    ] {
        let mut ch = conn.channel().await;
        let q = unique("badexp");
        ch.declare_queue(&q).await;
        ch.publish_with("", &q, expiring(value), b"x", false).await;
        let (code, text, class, method) = ch.events.closed_full().await;
        assert_eq!(
            (code, text.as_str(), class, method),
            (
                406,
                format!("PRECONDITION_FAILED - invalid expiration '{value}': {detail}").as_str(),
                60,
                40
            ),
            "expiration {value:?}"
        );
    }
    let mut ch = conn.channel().await;
    let q = unique("goodexp");
    ch.declare_queue(&q).await;
    for value in ["0", "+5", "315360000000"] {
        ch.publish_props_confirmed("", &q, expiring(value), b"ok")
            .await;
    }
    conn.close().await;
}

/// x-expires deletes a queue nobody uses: it is gone after the expiry period (not before),
/// and publishing to it does not count as a use.
#[tokio::test]
async fn x_expires_deletes_an_unused_queue() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let mut probe = conn.channel().await;
    let q = unique("expires");
    ch.declare_args(&q, table(&[("x-expires", int(400))])).await;
    let since = Instant::now();
    let took = await_queue_expired(&mut probe, &q, since, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(350),
        "deleted after {took:?}, x-expires is 400 ms"
    );
    conn.wait_queue_deleted(&q).await;
    conn.close().await;
}

/// A consumer keeps a queue with x-expires alive; once it is cancelled the queue expires.
#[tokio::test]
async fn x_expires_waits_while_a_consumer_is_attached() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let mut probe = conn.channel().await;
    let q = unique("expires-cons");
    ch.declare_args(&q, table(&[("x-expires", int(300))])).await;
    let (tag, _rx) = ch.consume(&q, true).await;
    // three expiry periods with a consumer attached: the absence of a deletion is the point
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        exists_unused(&mut probe, &q).await,
        "deleted while consumed"
    );
    ch.cancel(&tag).await;
    let since = Instant::now();
    let took = await_queue_expired(&mut probe, &q, since, Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(250),
        "deleted {took:?} after the cancel"
    );
    conn.close().await;
}

/// basic.get, a redeclare and (on RabbitMQ) a passive declare each renew the lease of a
/// queue with x-expires; after the last of them it expires one period later.
#[tokio::test]
async fn x_expires_lease_renewed_by_get_and_declares() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let mut probe = conn.channel().await;
    let q = unique("expires-renew");
    let args = || qargs(&q, table(&[("x-expires", int(400))]));
    ch.declare(args()).await;
    for use_kind in ["basic.get", "queue.declare", "passive queue.declare"] {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            match use_kind {
                "basic.get" => assert_eq!(ch.get_body(&q).await, None),
                "queue.declare" => {
                    ch.declare(args()).await;
                }
                _ => {
                    ch.declare(QueueDeclareArguments::new(&q).passive(true).finish())
                        .await;
                }
            }
        }
        assert!(
            exists_unused(&mut probe, &q).await,
            "{use_kind} every 150 ms did not keep a 400 ms lease"
        );
        assert_eq!(ch.get_body(&q).await.as_deref(), Some("probe"));
    }
    let since = Instant::now();
    await_queue_expired(&mut probe, &q, since, Duration::from_secs(5)).await;
    conn.close().await;
}

/// When a queue expires its messages are deleted with it, not dead-lettered.
#[tokio::test]
async fn expired_queue_does_not_dead_letter_its_messages() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let mut probe = conn.channel().await;
    let (q, dlq) = (unique("expires-dl"), unique("expires-dl-target"));
    let mut dl = with_dead_letter_queue(&ch, &q, &dlq, &[("x-expires", int(300))]).await;
    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"goes-with-the-queue")
        .await;
    let since = Instant::now();
    await_queue_expired(&mut probe, &q, since, Duration::from_secs(5)).await;
    assert_no_delivery(&mut dl).await;
    conn.close().await;
}
