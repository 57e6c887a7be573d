//! Queue length limits as RabbitMQ 3.10 does them (issue 10, item 2): x-max-length and
//! x-max-length-bytes with x-overflow drop-head (the default), reject-publish and
//! reject-publish-dlx, what counts towards the limit, and the dead-lettering of what is
//! dropped or refused (reason maxlen). Run against RabbitMQ with CONEY_TEST_ADDR.

use amqprs::BasicProperties;

use crate::ext_support::*;
use crate::support::*;

/// Declare `dlq` and return (x-dead-letter-* arguments routing to it, a consumer on it).
async fn dead_letters_to(
    ch: &Chan,
    dlq: &str,
) -> (Vec<(&'static str, amqprs::FieldValue)>, Consumer) {
    ch.declare_queue(dlq).await;
    let rx = ch.consume(dlq, true).await.1;
    (
        vec![
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(dlq)),
        ],
        rx,
    )
}

/// drop-head (the default): a full queue drops its oldest ready message to make room, so the
/// newest x-max-length messages stay; every publish is confirmed.
#[tokio::test]
async fn max_length_drop_head_keeps_the_newest() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    for args in [
        table(&[("x-max-length", int(3))]),
        table(&[("x-max-length", int(3)), ("x-overflow", s("drop-head"))]),
    ] {
        let q = unique("drophead");
        ch.declare_args(&q, args).await;
        for i in 0..5 {
            ch.publish_props_confirmed(
                "",
                &q,
                BasicProperties::default(),
                format!("m{i}").as_bytes(),
            )
            .await;
        }
        assert_eq!(ch.count(&q).await, 3);
        assert_eq!(ch.drain(&q).await, ["m2", "m3", "m4"]);
    }
    conn.close().await;
}

/// x-max-length-bytes counts body bytes only (headers do not count): bodies of 4 + 4 fit in
/// 10, a third drops the oldest, an empty body is free, a single body over the limit is
/// dropped itself.
#[tokio::test]
async fn max_length_bytes_counts_body_bytes_only() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("maxbytes");
    ch.declare_args(&q, table(&[("x-max-length-bytes", int(10))]))
        .await;
    let big_headers = with_headers(table(&[("pad", s(&"x".repeat(200)))]));
    for body in ["aaaa", "bbbb", "cccc", ""] {
        ch.publish_props_confirmed("", &q, big_headers.clone(), body.as_bytes())
            .await;
    }
    assert_eq!(ch.drain(&q).await, ["bbbb", "cccc", ""]);
    ch.publish_props_confirmed("", &q, BasicProperties::default(), &[b'z'; 11])
        .await;
    assert_eq!(
        ch.count(&q).await,
        0,
        "a body over the byte limit is dropped"
    );
    conn.close().await;
}

/// reject-publish: once the queue is full a confirming publisher gets basic.nack (a
/// mandatory publish is nacked, not returned), the queue keeps the oldest messages, nothing
/// is dead-lettered even with a DLX; without confirms the refused message just vanishes
/// and the channel stays open.
#[tokio::test]
async fn reject_publish_nacks_the_confirming_publisher() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (q, dlq) = (unique("rejpub"), unique("rejpub-dl"));
    let (mut args, mut dl) = dead_letters_to(&ch, &dlq).await;
    args.push(("x-max-length", int(2)));
    args.push(("x-overflow", s("reject-publish")));
    ch.declare_args(&q, table(&args)).await;
    let mut acks = Vec::new();
    for (i, mandatory) in [false, false, false, true].into_iter().enumerate() {
        let o = ch
            .publish_outcome(
                "",
                &q,
                BasicProperties::default(),
                format!("m{i}").as_bytes(),
                mandatory,
            )
            .await;
        assert!(o.returned.is_empty(), "m{i} returned: {o:?}");
        acks.push(o.acked);
    }
    assert_eq!(acks, [true, true, false, false]);
    assert_no_delivery(&mut dl).await;
    assert_eq!(ch.drain(&q).await, ["m0", "m1"]);

    let mut plain = conn.channel().await;
    let q2 = unique("rejpub-noconfirm");
    plain
        .declare_args(
            &q2,
            table(&[
                ("x-max-length", int(1)),
                ("x-overflow", s("reject-publish")),
            ]),
        )
        .await;
    plain.publish("", &q2, b"kept").await;
    plain.publish("", &q2, b"refused").await;
    // a confirmed publish after them: once it is answered, both were handled
    let o = plain
        .publish_outcome("", &q2, BasicProperties::default(), b"barrier", false)
        .await;
    assert!(!o.acked, "the queue is full: the barrier is nacked too");
    assert_eq!(plain.drain(&q2).await, ["kept"]);
    assert!(plain.ch.is_open());
    conn.close().await;
}

/// reject-publish-dlx: a refused publish is nacked and dead-lettered (reason maxlen).
#[tokio::test]
async fn reject_publish_dlx_nacks_and_dead_letters() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (q, dlq) = (unique("rejdlx"), unique("rejdlx-dl"));
    let (mut args, mut dl) = dead_letters_to(&ch, &dlq).await;
    args.push(("x-max-length", int(1)));
    args.push(("x-overflow", s("reject-publish-dlx")));
    ch.declare_args(&q, table(&args)).await;
    let mut acks = Vec::new();
    for i in 0..3 {
        let o = ch
            .publish_outcome(
                "",
                &q,
                BasicProperties::default(),
                format!("m{i}").as_bytes(),
                false,
            )
            .await;
        acks.push(o.acked);
    }
    assert_eq!(acks, [true, false, false]);
    for want in ["m1", "m2"] {
        let d = next_delivery(&mut dl).await;
        assert_eq!(d.body_str(), want);
        assert_one_death(&d.props, &q, "maxlen", "", &[q.as_str()], None);
    }
    assert_eq!(ch.drain(&q).await, ["m0"]);
    conn.close().await;
}

/// drop-head with a DLX: the dropped head is dead-lettered with reason maxlen.
#[tokio::test]
async fn dropped_head_is_dead_lettered_maxlen() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (q, dlq) = (unique("dropdl"), unique("dropdl-dl"));
    let (mut args, mut dl) = dead_letters_to(&ch, &dlq).await;
    args.push(("x-max-length", int(1)));
    ch.declare_args(&q, table(&args)).await;
    for body in ["old", "new"] {
        ch.publish_props_confirmed("", &q, BasicProperties::default(), body.as_bytes())
            .await;
    }
    let d = next_delivery(&mut dl).await;
    assert_eq!(d.body_str(), "old");
    assert_one_death(&d.props, &q, "maxlen", "", &[q.as_str()], None);
    assert_eq!(ch.drain(&q).await, ["new"]);
    conn.close().await;
}

/// Only ready messages count towards the limit: a message held unacknowledged does not; once
/// it is requeued (to the head) the queue is over the limit and drop-head drops it.
#[tokio::test]
async fn unacknowledged_messages_do_not_count() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("unacked");
    ch.declare_args(&q, table(&[("x-max-length", int(1))]))
        .await;
    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"u0")
        .await;
    let (held, _, _) = ch.get(&q, false).await.expect("u0");
    for body in ["u1", "u2"] {
        ch.publish_props_confirmed("", &q, BasicProperties::default(), body.as_bytes())
            .await;
    }
    assert_eq!(ch.count(&q).await, 1, "one ready besides the unacked one");
    ch.nack(held.delivery_tag(), false, true).await;
    assert_eq!(ch.drain(&q).await, ["u2"], "the requeued head was dropped");
    conn.close().await;
}

/// x-max-length 0 still hands a message to a consumer that can take it at once; without one
/// the message is dropped.
#[tokio::test]
async fn max_length_zero_only_passes_to_a_waiting_consumer() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = unique("maxlen0");
    ch.declare_args(&q, table(&[("x-max-length", int(0))]))
        .await;
    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"dropped")
        .await;
    assert_eq!(ch.count(&q).await, 0);
    let cons = conn.channel().await;
    let (_t, mut rx) = cons.consume(&q, true).await;
    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"passed")
        .await;
    assert_eq!(next_delivery(&mut rx).await.body_str(), "passed");
    conn.close().await;
}
