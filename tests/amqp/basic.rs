//! Connection, channel and basic-class behaviour, checked with the amqprs client.
//! Run against RabbitMQ with `CONEY_TEST_ADDR=127.0.0.1:5690`; otherwise a private coney.

use crate::support::*;
use amqprs::channel::{BasicConsumeArguments, QueueDeclareArguments};
use amqprs::connection::Connection;
use amqprs::{
    BasicProperties, ByteArray, DecimalValue, FieldArray, FieldTable, FieldValue, LongStr,
};

// ---------------------------------------------------------------------------------------
// connection & channels
// ---------------------------------------------------------------------------------------

/// The AMQP handshake completes with sane tuning and a channel can be opened and closed.
#[tokio::test]
async fn connection_handshake_succeeds() {
    let b = Broker::start();
    let conn = b.connect().await;
    assert!(conn.is_open());
    assert!(conn.frame_max() >= 4096, "frame_max {}", conn.frame_max());
    assert!(conn.channel_max() > 0, "channel_max {}", conn.channel_max());
    let ch = conn.channel().await;
    assert!(ch.is_open());
    ch.close().await;
    conn.close().await;
}

/// connection.start carries a product and a capabilities table with confirms and basic.nack.
#[tokio::test]
async fn server_properties_advertise_product_and_capabilities() {
    let b = Broker::start();
    let conn = b.connect().await;
    let props = conn.server_properties();
    // amqprs reports "unknown" for a missing key
    assert_ne!(props.product(), "unknown", "product key missing");
    assert!(!props.product().is_empty());
    assert!(
        props.capabilities().publisher_confirms(),
        "publisher_confirms"
    );
    assert!(props.capabilities().basic_nack(), "basic.nack");
    conn.close().await;
}

/// A wrong password makes connection opening fail (the broker refuses the login).
#[tokio::test]
async fn wrong_password_is_refused() {
    let b = Broker::start();
    let args = b.open_args("guest", "not-the-password");
    let res = within("refused login", Connection::open(&args)).await;
    // amqprs does not advertise authentication_failure_close, so RabbitMQ just drops the
    // socket; the 403 reply itself is checked in raw_wire.rs.
    assert!(res.is_err(), "login with a wrong password succeeded");
}

/// Channels on one connection are independent: each has its own delivery-tag sequence.
#[tokio::test]
async fn channels_on_one_connection_are_independent() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut c1 = conn.channel().await;
    let mut c2 = conn.channel().await;
    assert_ne!(c1.channel_id(), c2.channel_id());
    let q = unique("chan-indep");
    c1.declare_queue(&q).await;
    c1.confirm_select().await;
    for i in 0..4 {
        c1.publish_confirmed("", &q, format!("m{i}").as_bytes())
            .await;
    }
    // both channels start their delivery tags at 1
    let (ok1, _, _) = c1.get(&q, false).await.expect("message on c1");
    let (ok2, _, _) = c2.get(&q, false).await.expect("message on c2");
    assert_eq!(ok1.delivery_tag(), 1);
    assert_eq!(ok2.delivery_tag(), 1);
    let (ok1b, _, _) = c1.get(&q, false).await.expect("second message on c1");
    assert_eq!(ok1b.delivery_tag(), 2);
    // acking tag 1 on c2 only settles c2's message
    c2.ack(1, false).await;
    c1.ack(2, true).await;
    assert_eq!(c2.queue_counts(&q).await, (1, 0));
    c2.publish("", &q, b"x").await;
    c1.close().await;
    c2.close().await;
    conn.close().await;
}

/// A channel closed by a server error leaves the connection and its other channels usable.
#[tokio::test]
async fn channel_error_leaves_other_channels_usable() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut bad = conn.channel().await;
    let mut good = conn.channel().await;
    let missing = unique("missing");
    refused(
        "passive declare of a missing queue",
        bad.queue_declare(QueueDeclareArguments::new(&missing).passive(true).finish()),
    )
    .await;
    bad.expect_closed(
        404,
        &format!("NOT_FOUND - no queue '{missing}' in vhost '/'"),
    )
    .await;
    assert!(conn.is_open());
    // the other channel still works end to end
    let q = unique("still-ok");
    good.declare_queue(&q).await;
    good.confirm_select().await;
    good.publish_confirmed("", &q, b"hello").await;
    let (_, _, body) = good.get(&q, true).await.expect("message");
    assert_eq!(body, b"hello");
    // and new channels can still be opened
    let again = conn.channel().await;
    assert_eq!(again.queue_counts(&q).await, (0, 0));
    good.events.assert_empty();
    conn.close().await;
}

// ---------------------------------------------------------------------------------------
// content
// ---------------------------------------------------------------------------------------

fn s(v: &str) -> FieldValue {
    FieldValue::S(LongStr::try_from(v).unwrap())
}

fn rich_headers() -> FieldTable {
    let mut nested = FieldTable::new();
    nested.insert("inner".try_into().unwrap(), s("value"));
    nested.insert("n".try_into().unwrap(), FieldValue::I(-7));
    let array = FieldArray::try_from(vec![
        FieldValue::I(1),
        s("two"),
        FieldValue::t(false),
        FieldValue::d(3.5),
    ])
    .unwrap();
    let mut h = FieldTable::new();
    h.insert("string".try_into().unwrap(), s("hello wörld"));
    h.insert("empty-string".try_into().unwrap(), s(""));
    h.insert("bool-true".try_into().unwrap(), FieldValue::t(true));
    h.insert("bool-false".try_into().unwrap(), FieldValue::t(false));
    h.insert("i8".try_into().unwrap(), FieldValue::b(-5));
    h.insert("u8".try_into().unwrap(), FieldValue::B(200));
    h.insert("i16".try_into().unwrap(), FieldValue::s(-300));
    h.insert("u16".try_into().unwrap(), FieldValue::u(60000));
    h.insert("i32".try_into().unwrap(), FieldValue::I(-70000));
    h.insert("u32".try_into().unwrap(), FieldValue::i(4_000_000_000));
    h.insert("i64".try_into().unwrap(), FieldValue::l(-5_000_000_000));
    h.insert("float".try_into().unwrap(), FieldValue::f(1.5));
    h.insert("double".try_into().unwrap(), FieldValue::d(-2.25e10));
    h.insert(
        "decimal".try_into().unwrap(),
        FieldValue::D(DecimalValue::new(2, 12345)),
    );
    h.insert(
        "timestamp".try_into().unwrap(),
        FieldValue::T(1_700_000_000),
    );
    h.insert("table".try_into().unwrap(), FieldValue::F(nested));
    h.insert("array".try_into().unwrap(), FieldValue::A(array));
    h.insert(
        "bytes".try_into().unwrap(),
        FieldValue::x(ByteArray::try_from(vec![0u8, 1, 2, 255, 0]).unwrap()),
    );
    h.insert("void".try_into().unwrap(), FieldValue::V);
    h
}

/// All 14 basic properties and a headers table of every field type survive a round trip.
#[tokio::test]
async fn all_properties_and_header_types_round_trip() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("props");
    ch.declare_queue(&q).await;
    let headers = rich_headers();
    let props = BasicProperties::new(
        Some("application/json".into()),
        Some("gzip".into()),
        Some(headers.clone()),
        Some(2),
        Some(7),
        Some("corr-42".into()),
        Some("reply.here".into()),
        Some("600000".into()),
        Some("msg-0001".into()),
        Some(1_700_000_123),
        Some("order.created".into()),
        Some("guest".into()), // RabbitMQ validates user_id against the login
        Some("coney-itest".into()),
        Some("cluster-9".into()),
    );
    let (_tag, mut rx) = ch.consume(&q, false).await;
    ch.publish_with("", &q, props, b"{\"k\":1}", false).await;
    let d = next_delivery(&mut rx).await;
    assert_eq!(d.body, b"{\"k\":1}");
    assert!(!d.redelivered());
    assert_eq!(d.deliver.exchange(), "");
    assert_eq!(d.deliver.routing_key(), &q);
    let p = &d.props;
    assert_eq!(
        p.content_type().map(String::as_str),
        Some("application/json")
    );
    assert_eq!(p.content_encoding().map(String::as_str), Some("gzip"));
    assert_eq!(p.delivery_mode(), Some(2));
    assert_eq!(p.priority(), Some(7));
    assert_eq!(p.correlation_id().map(String::as_str), Some("corr-42"));
    assert_eq!(p.reply_to().map(String::as_str), Some("reply.here"));
    assert_eq!(p.expiration().map(String::as_str), Some("600000"));
    assert_eq!(p.message_id().map(String::as_str), Some("msg-0001"));
    assert_eq!(p.timestamp(), Some(1_700_000_123));
    assert_eq!(p.message_type().map(String::as_str), Some("order.created"));
    assert_eq!(p.user_id().map(String::as_str), Some("guest"));
    assert_eq!(p.app_id().map(String::as_str), Some("coney-itest"));
    assert_eq!(p.cluster_id().map(String::as_str), Some("cluster-9"));
    let got = p.headers().expect("headers present");
    for (k, v) in headers.as_ref() {
        assert_eq!(got.get(k), Some(v), "header {k}");
    }
    // equal including the encoded table length, i.e. the same bytes on the wire
    assert_eq!(got, &headers);
    ch.ack(d.tag(), false).await;
    conn.close().await;
}

/// A message with no properties at all arrives with no properties set.
#[tokio::test]
async fn absent_properties_stay_absent() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("noprops");
    ch.declare_queue(&q).await;
    ch.confirm_select().await;
    ch.publish_confirmed("", &q, b"plain").await;
    let (_, p, body) = ch.get(&q, true).await.expect("message");
    assert_eq!(body, b"plain");
    assert!(p.content_type().is_none());
    assert!(p.headers().is_none());
    assert!(p.delivery_mode().is_none());
    assert!(p.priority().is_none());
    assert!(p.timestamp().is_none());
    assert!(p.message_id().is_none());
    assert!(p.user_id().is_none());
    conn.close().await;
}

/// An empty body is delivered as an empty body (header frame with body-size 0).
#[tokio::test]
async fn empty_body_round_trip() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("empty");
    ch.declare_queue(&q).await;
    let (_t, mut rx) = ch.consume(&q, true).await;
    ch.publish("", &q, b"").await;
    ch.publish("", &q, b"after").await;
    let d = next_delivery(&mut rx).await;
    assert!(d.body.is_empty(), "body {:?}", d.body);
    assert_eq!(next_delivery(&mut rx).await.body, b"after");
    conn.close().await;
}

/// A 300 KiB body, larger than frame_max, spans several body frames and arrives intact.
#[tokio::test]
async fn body_larger_than_frame_max_round_trip() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let size = 300 * 1024;
    assert!(
        size > conn.frame_max() as usize,
        "frame_max {}",
        conn.frame_max()
    );
    let mut x: u32 = 12345;
    let body: Vec<u8> = (0..size)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    let q = unique("big");
    ch.declare_queue(&q).await;
    let (_t, mut rx) = ch.consume(&q, true).await;
    ch.publish("", &q, &body).await;
    ch.publish("", &q, b"small-after-big").await;
    let d = next_delivery(&mut rx).await;
    assert_eq!(d.body.len(), body.len());
    assert!(d.body == body, "large body corrupted");
    assert_eq!(next_delivery(&mut rx).await.body, b"small-after-big");
    conn.close().await;
}

/// A mandatory message that no queue accepts comes back as basic.return 312 NO_ROUTE.
#[tokio::test]
async fn mandatory_unroutable_message_is_returned() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let key = unique("nowhere");
    let props = BasicProperties::default().with_message_id("ret-1").finish();
    ch.publish_with("amq.direct", &key, props, b"bounce", true)
        .await;
    match ch.events.next().await {
        ChanEvent::Returned {
            code,
            text,
            exchange,
            routing_key,
            props,
            body,
        } => {
            assert_eq!(code, 312);
            assert_eq!(text, "NO_ROUTE");
            assert_eq!(exchange, "amq.direct");
            assert_eq!(routing_key, key);
            assert_eq!(props.message_id().map(String::as_str), Some("ret-1"));
            assert_eq!(body, b"bounce");
        }
        other => panic!("expected basic.return, got {other:?}"),
    }
    // a non-mandatory unroutable message is silently dropped
    ch.publish_with(
        "amq.direct",
        &key,
        BasicProperties::default(),
        b"drop",
        false,
    )
    .await;
    ch.confirm_select().await;
    ch.publish_confirmed("amq.direct", &key, b"drop2").await;
    ch.events.assert_empty();
    conn.close().await;
}

/// basic.get returns get-ok with the remaining message count, then get-empty.
#[tokio::test]
async fn basic_get_reports_message_count_then_empty() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("get");
    ch.declare_queue(&q).await;
    assert!(ch.get(&q, true).await.is_none(), "get on empty queue");
    ch.confirm_select().await;
    for i in 0..3 {
        ch.publish_confirmed("", &q, format!("m{i}").as_bytes())
            .await;
    }
    for i in 0..3u32 {
        let (ok, _, body) = ch.get(&q, false).await.expect("get-ok");
        assert_eq!(body, format!("m{i}").as_bytes());
        assert_eq!(ok.message_count(), 2 - i, "message-count after get {i}");
        assert_eq!(ok.delivery_tag(), u64::from(i) + 1);
        assert!(!ok.redelivered());
        assert_eq!(ok.exchange(), "");
        assert_eq!(ok.routing_key(), &q);
    }
    assert!(ch.get(&q, false).await.is_none(), "get-empty expected");
    ch.ack(3, true).await;
    conn.close().await;
}

// ---------------------------------------------------------------------------------------
// acknowledgements
// ---------------------------------------------------------------------------------------

/// basic.ack removes the message for good: closing the channel afterwards requeues nothing.
#[tokio::test]
async fn ack_removes_message() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = queue_with(&mut ch, "ack", 2).await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let ds = next_deliveries(&mut rx, 2).await;
    ch.ack(ds[0].tag(), false).await;
    ch.close().await; // the unacked second message is requeued
    let ch2 = conn.channel().await;
    assert_eq!(ch2.queue_counts(&q).await, (1, 0));
    let (ok, _, body) = ch2.get(&q, true).await.expect("requeued message");
    assert_eq!(body, b"m1");
    assert!(ok.redelivered());
    conn.close().await;
}

/// basic.ack with multiple=true acknowledges every outstanding tag up to and including it.
#[tokio::test]
async fn ack_multiple_acknowledges_up_to_tag() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = queue_with(&mut ch, "ackmulti", 4).await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let ds = next_deliveries(&mut rx, 4).await;
    assert_eq!(ds.iter().map(|d| d.tag()).collect::<Vec<_>>(), [1, 2, 3, 4]);
    ch.ack(3, true).await;
    ch.close().await;
    let ch2 = conn.channel().await;
    assert_eq!(ch2.queue_counts(&q).await, (1, 0));
    let (_, _, body) = ch2.get(&q, true).await.expect("m3 requeued");
    assert_eq!(body, b"m3");
    conn.close().await;
}

/// basic.nack with requeue=true puts the message back; it is redelivered with redelivered=true.
#[tokio::test]
async fn nack_requeue_redelivers() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = queue_with(&mut ch, "nackrq", 1).await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let d = next_delivery(&mut rx).await;
    assert!(!d.redelivered());
    ch.nack(d.tag(), false, true).await;
    let again = next_delivery(&mut rx).await;
    assert_eq!(again.body, b"m0");
    assert!(again.redelivered());
    assert_eq!(
        again.tag(),
        d.tag() + 1,
        "a redelivery gets a new delivery tag"
    );
    ch.ack(again.tag(), false).await;
    conn.close().await;
}

/// basic.nack with requeue=false drops the message (no dead-lettering configured).
#[tokio::test]
async fn nack_without_requeue_discards() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = queue_with(&mut ch, "nackdrop", 2).await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let ds = next_deliveries(&mut rx, 2).await;
    ch.nack(ds[0].tag(), false, false).await;
    assert_no_delivery(&mut rx).await;
    assert_eq!(ch.queue_counts(&q).await, (0, 1));
    ch.close().await;
    let ch2 = conn.channel().await;
    // only the un-settled m1 came back
    assert_eq!(ch2.queue_counts(&q).await, (1, 0));
    conn.close().await;
}

/// basic.nack with multiple=true and requeue=true requeues all of them in their original order.
#[tokio::test]
async fn nack_multiple_requeues_in_order() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = queue_with(&mut ch, "nackmulti", 3).await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let ds = next_deliveries(&mut rx, 3).await;
    ch.nack(ds[2].tag(), true, true).await;
    let again = next_deliveries(&mut rx, 3).await;
    assert_eq!(bodies(&again), ["m0", "m1", "m2"]);
    assert!(again.iter().all(|d| d.redelivered()));
    ch.ack(again[2].tag(), true).await;
    conn.close().await;
}

/// basic.reject with requeue=true redelivers the message with redelivered=true.
#[tokio::test]
async fn reject_requeue_redelivers() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = queue_with(&mut ch, "rejrq", 1).await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let d = next_delivery(&mut rx).await;
    ch.reject(d.tag(), true).await;
    let again = next_delivery(&mut rx).await;
    assert_eq!(again.body, b"m0");
    assert!(again.redelivered());
    ch.ack(again.tag(), false).await;
    conn.close().await;
}

/// basic.reject with requeue=false drops the message.
#[tokio::test]
async fn reject_without_requeue_discards() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = queue_with(&mut ch, "rejdrop", 1).await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let d = next_delivery(&mut rx).await;
    ch.reject(d.tag(), false).await;
    assert_no_delivery(&mut rx).await;
    ch.close().await;
    let ch2 = conn.channel().await;
    assert_eq!(ch2.queue_counts(&q).await, (0, 0));
    conn.close().await;
}

/// basic.recover(requeue=true) redelivers all unacked messages with redelivered=true.
#[tokio::test]
async fn recover_redelivers_unacked() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = queue_with(&mut ch, "recover", 3).await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let ds = next_deliveries(&mut rx, 3).await;
    ch.ack(ds[0].tag(), false).await;
    within("basic.recover-ok", ch.basic_recover(true))
        .await
        .expect("basic.recover");
    let again = next_deliveries(&mut rx, 2).await;
    assert_eq!(bodies(&again), ["m1", "m2"]);
    assert!(again.iter().all(|d| d.redelivered()));
    assert!(again.iter().all(|d| d.tag() > 3), "new tags after recover");
    assert_no_delivery(&mut rx).await;
    ch.ack(again[1].tag(), true).await;
    conn.close().await;
}

/// A consumer with no_ack (auto-ack) settles on delivery: closing the channel requeues nothing.
#[tokio::test]
async fn auto_ack_deliveries_are_not_requeued() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = queue_with(&mut ch, "autoack", 3).await;
    let (_t, mut rx) = ch.consume(&q, true).await;
    let ds = next_deliveries(&mut rx, 3).await;
    assert_eq!(bodies(&ds), ["m0", "m1", "m2"]);
    ch.close().await;
    let ch2 = conn.channel().await;
    assert_eq!(ch2.queue_counts(&q).await, (0, 0));
    conn.close().await;
}

// ---------------------------------------------------------------------------------------
// qos
// ---------------------------------------------------------------------------------------

/// basic.qos prefetch_count=2: with 5 messages the consumer holds exactly 2 until it acks.
#[tokio::test]
async fn qos_prefetch_count_limits_unacked() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = queue_with(&mut ch, "qos", 5).await;
    ch.qos(2, false).await;
    let (_t, mut rx) = ch.consume(&q, false).await;
    let first = next_deliveries(&mut rx, 2).await;
    assert_eq!(bodies(&first), ["m0", "m1"]);
    assert_no_delivery(&mut rx).await;
    assert_eq!(ch.queue_counts(&q).await, (3, 1));
    ch.ack(first[0].tag(), false).await;
    let third = next_delivery(&mut rx).await;
    assert_eq!(third.body, b"m2");
    assert_no_delivery(&mut rx).await;
    ch.ack(third.tag(), true).await; // settles m1 and m2
    let more = next_deliveries(&mut rx, 2).await;
    assert_eq!(bodies(&more), ["m3", "m4"]);
    ch.ack(more[1].tag(), true).await;
    assert_eq!(ch.queue_counts(&q).await, (0, 1));
    conn.close().await;
}

/// RabbitMQ semantics: basic.qos with a non-zero prefetch_size is a 540 NOT_IMPLEMENTED
/// connection error.
#[tokio::test]
async fn qos_prefetch_size_is_not_implemented() {
    let b = Broker::start();
    let mut conn = b.connect().await;
    let ch = conn.channel().await;
    refused(
        "basic.qos prefetch_size",
        ch.basic_qos(amqprs::channel::BasicQosArguments::new(1000, 0, false)),
    )
    .await;
    let (code, text) = conn.events.closed().await;
    assert_eq!(code, 540);
    assert_eq!(text, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)");
}

/// Wait for `n` deliveries spread over two consumers; returns how many each got.
async fn take_from_two(
    a: &mut Consumer,
    b: &mut Consumer,
    n: usize,
) -> (Vec<Delivery>, Vec<Delivery>) {
    let (mut da, mut db) = (Vec::new(), Vec::new());
    for _ in 0..n {
        tokio::select! {
            d = next_delivery(a) => da.push(d),
            d = next_delivery(b) => db.push(d),
        }
    }
    (da, db)
}

/// basic.qos global=true caps unacked deliveries across all consumers of the channel.
#[tokio::test]
async fn qos_global_limit_is_shared_by_channel_consumers() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q1 = queue_with(&mut ch, "qosg1", 5).await;
    let q2 = queue_with(&mut ch, "qosg2", 5).await;
    ch.qos(3, true).await;
    let (_t1, mut r1) = ch.consume(&q1, false).await;
    let (_t2, mut r2) = ch.consume(&q2, false).await;
    let (d1, d2) = take_from_two(&mut r1, &mut r2, 3).await;
    assert_no_delivery(&mut r1).await;
    assert_no_delivery(&mut r2).await;
    let ready = ch.queue_counts(&q1).await.0 + ch.queue_counts(&q2).await.0;
    assert_eq!(
        ready,
        7,
        "3 of 10 delivered (got {} + {})",
        d1.len(),
        d2.len()
    );
    conn.close().await;
}

/// RabbitMQ semantics: basic.qos global=false limits each consumer separately.
#[tokio::test]
async fn qos_non_global_limit_applies_per_consumer() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q1 = queue_with(&mut ch, "qosc1", 5).await;
    let q2 = queue_with(&mut ch, "qosc2", 5).await;
    ch.qos(2, false).await;
    let (_t1, mut r1) = ch.consume(&q1, false).await;
    let (_t2, mut r2) = ch.consume(&q2, false).await;
    let (d1, d2) = take_from_two(&mut r1, &mut r2, 4).await;
    assert_eq!((d1.len(), d2.len()), (2, 2));
    assert_no_delivery(&mut r1).await;
    assert_no_delivery(&mut r2).await;
    assert_eq!(ch.queue_counts(&q1).await, (3, 1));
    assert_eq!(ch.queue_counts(&q2).await, (3, 1));
    conn.close().await;
}

// ---------------------------------------------------------------------------------------
// consumers
// ---------------------------------------------------------------------------------------

/// An exclusive consumer makes a second consumer on the queue fail with 403 ACCESS_REFUSED.
#[tokio::test]
async fn exclusive_consumer_refuses_second_consumer() {
    let b = Broker::start();
    let conn = b.connect().await;
    let c1 = conn.channel().await;
    let mut c2 = conn.channel().await;
    let q = unique("exclcons");
    c1.declare_queue(&q).await;
    let args = BasicConsumeArguments::new(&q, "").exclusive(true).finish();
    within("exclusive consume", c1.basic_consume_rx(args))
        .await
        .expect("exclusive consume");
    refused(
        "second consumer",
        c2.basic_consume_rx(BasicConsumeArguments::new(&q, "").finish()),
    )
    .await;
    c2.expect_closed(
        403,
        &format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"),
    )
    .await;
    assert_eq!(c1.queue_counts(&q).await, (0, 1));
    conn.close().await;
}

/// An exclusive consume on a queue that already has a consumer fails with 403 ACCESS_REFUSED.
#[tokio::test]
async fn exclusive_consume_refused_when_queue_has_consumers() {
    let b = Broker::start();
    let conn = b.connect().await;
    let c1 = conn.channel().await;
    let mut c2 = conn.channel().await;
    let q = unique("exclcons2");
    c1.declare_queue(&q).await;
    c1.consume(&q, false).await;
    let args = BasicConsumeArguments::new(&q, "").exclusive(true).finish();
    refused("exclusive consume", c2.basic_consume_rx(args)).await;
    c2.expect_closed(
        403,
        &format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"),
    )
    .await;
    conn.close().await;
}

/// An empty consumer tag makes the server generate one starting with "amq.ctag-".
#[tokio::test]
async fn server_generates_consumer_tags() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("ctag");
    ch.declare_queue(&q).await;
    let (t1, mut rx) = ch.consume(&q, true).await;
    let (t2, _rx2) = ch.consume(&q, true).await;
    assert!(t1.starts_with("amq.ctag-"), "tag {t1}");
    assert!(t2.starts_with("amq.ctag-"), "tag {t2}");
    assert_ne!(t1, t2);
    // a client-chosen tag is used as is
    let args = BasicConsumeArguments::new(&q, "my-tag").finish();
    let (t3, _rx3) = within("consume", ch.basic_consume_rx(args)).await.unwrap();
    assert_eq!(t3, "my-tag");
    ch.cancel(&t2).await;
    ch.cancel(&t3).await;
    ch.publish("", &q, b"x").await;
    let d = next_delivery(&mut rx).await;
    assert_eq!(d.deliver.consumer_tag(), &t1);
    conn.close().await;
}

/// A duplicate consumer tag on the same channel is a 530 NOT_ALLOWED connection error.
#[tokio::test]
async fn duplicate_consumer_tag_is_not_allowed() {
    let b = Broker::start();
    let mut conn = b.connect().await;
    let ch = conn.channel().await;
    let q = unique("duptag");
    ch.declare_queue(&q).await;
    let args = BasicConsumeArguments::new(&q, "dup").finish();
    within("consume", ch.basic_consume_rx(args.clone()))
        .await
        .unwrap();
    refused("duplicate tag", ch.basic_consume_rx(args)).await;
    let (code, text) = conn.events.closed().await;
    assert_eq!(code, 530);
    assert_eq!(text, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'");
}

/// basic.cancel confirms the tag and stops further deliveries to that consumer.
#[tokio::test]
async fn basic_cancel_stops_deliveries() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("cancel");
    ch.declare_queue(&q).await;
    let (tag, mut rx) = ch.consume(&q, true).await;
    ch.publish("", &q, b"before").await;
    assert_eq!(next_delivery(&mut rx).await.body, b"before");
    assert_eq!(ch.cancel(&tag).await, tag);
    assert_eq!(ch.queue_counts(&q).await, (0, 0));
    ch.confirm_select().await;
    ch.publish_confirmed("", &q, b"after").await;
    assert!(
        within("consumer stream end", rx.recv()).await.is_none(),
        "delivery after cancel"
    );
    assert_eq!(ch.queue_counts(&q).await, (1, 0));
    conn.close().await;
}

/// Cancelling an unknown consumer tag is not an error (cancel-ok echoes the tag).
#[tokio::test]
async fn cancel_of_unknown_consumer_tag_is_ok() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    assert_eq!(ch.cancel("no-such-tag").await, "no-such-tag");
    let q = unique("cancel-unknown");
    ch.declare_queue(&q).await;
    ch.events.assert_empty();
    conn.close().await;
}

/// Publisher confirms: after confirm.select every publish is acked, tags counting from 1.
#[tokio::test]
async fn publisher_confirms_ack_every_publish() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("confirm");
    ch.declare_queue(&q).await;
    ch.confirm_select().await;
    for i in 0..10 {
        ch.publish("", &q, format!("c{i}").as_bytes()).await;
    }
    // unroutable messages are confirmed too
    ch.publish("amq.direct", &unique("nobody"), b"lost").await;
    // Every tag 1..=11 is acked exactly once. Acks may come out of order: RabbitMQ acks an
    // unroutable message at once but a routed one only when its queue has taken it.
    let mut acked = std::collections::BTreeSet::new();
    let mut events = 0;
    while acked.len() < 11 && events < 100 {
        events += 1;
        match ch.events.next().await {
            ChanEvent::Ack { tag, multiple } => {
                assert!((1..=11).contains(&tag), "ack for unknown tag {tag}");
                let lo = if multiple { 1 } else { tag };
                let mut new = 0;
                for t in lo..=tag {
                    if acked.insert(t) {
                        new += 1;
                    }
                }
                assert!(
                    new > 0 && (multiple || new == 1),
                    "ack {tag} (multiple={multiple}) repeats"
                );
            }
            other => panic!("expected basic.ack, got {other:?}"),
        }
    }
    assert_eq!(acked.len(), 11);
    assert_eq!(ch.queue_counts(&q).await, (10, 0));
    conn.close().await;
}
