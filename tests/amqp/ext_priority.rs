//! Priority queues (x-max-priority) and consumer priorities (x-priority on basic.consume) as
//! RabbitMQ 3.10 does them (issue 10, item 4). Backlogs paged to disk and restarts are in
//! tests/durability/test_ext.py. Run against RabbitMQ with CONEY_TEST_ADDR.

use amqprs::BasicProperties;

use crate::ext_support::*;
use crate::support::*;

/// Publish (confirmed) `(priority, body)` pairs; `None` publishes without a priority.
async fn publish_prioritised(ch: &mut Chan, q: &str, msgs: &[(Option<u8>, &str)]) {
    for (p, body) in msgs {
        let props = match p {
            Some(p) => prioritised(*p),
            None => BasicProperties::default(),
        };
        ch.publish_props_confirmed("", q, props, body.as_bytes())
            .await;
    }
}

/// Highest priority first, FIFO within one priority; no priority counts as 0; a priority
/// above x-max-priority counts as the maximum (and is delivered unchanged).
#[tokio::test]
async fn highest_priority_first_fifo_within_a_priority() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("prio");
    ch.declare_args(&q, table(&[("x-max-priority", int(5))]))
        .await;
    publish_prioritised(
        &mut ch,
        &q,
        &[
            (Some(1), "a"),
            (None, "b"),
            (Some(5), "c"),
            (Some(200), "d"),
            (Some(3), "e"),
            (Some(5), "f"),
            (Some(0), "g"),
            (Some(6), "h"),
            (Some(1), "i"),
        ],
    )
    .await;
    let mut got = Vec::new();
    while let Some((_, props, body)) = ch.get(&q, true).await {
        got.push((
            String::from_utf8_lossy(&body).into_owned(),
            props.priority(),
        ));
    }
    let want = [
        ("c", Some(5)),
        ("d", Some(200)),
        ("f", Some(5)),
        ("h", Some(6)),
        ("e", Some(3)),
        ("a", Some(1)),
        ("i", Some(1)),
        ("b", None),
        ("g", Some(0)),
    ];
    let want: Vec<(String, Option<u8>)> = want.iter().map(|(b, p)| (b.to_string(), *p)).collect();
    assert_eq!(got, want);
    conn.close().await;
}

/// A consumer that starts on a backlog sees it highest priority first (10 levels, 0..9,
/// published lowest first).
#[tokio::test]
async fn consumer_sees_a_backlog_highest_priority_first() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("prio-backlog");
    ch.declare_args(&q, table(&[("x-max-priority", int(9))]))
        .await;
    let mut msgs = Vec::new();
    for round in 0..5 {
        for p in 0..10u8 {
            msgs.push((Some(p), format!("p{p}-r{round}")));
        }
    }
    let refs: Vec<(Option<u8>, &str)> = msgs.iter().map(|(p, b)| (*p, b.as_str())).collect();
    publish_prioritised(&mut ch, &q, &refs).await;
    let (_t, mut rx) = ch.consume(&q, true).await;
    let got = bodies(&next_deliveries(&mut rx, 50).await);
    let want: Vec<String> = (0..10u8)
        .rev()
        .flat_map(|p| (0..5).map(move |r| format!("p{p}-r{r}")))
        .collect();
    assert_eq!(got, want);
    conn.close().await;
}

/// A requeued message goes back in front of the others of its priority, behind higher ones.
#[tokio::test]
async fn requeued_message_goes_first_within_its_priority() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("prio-requeue");
    ch.declare_args(&q, table(&[("x-max-priority", int(9))]))
        .await;
    publish_prioritised(
        &mut ch,
        &q,
        &[(Some(1), "low"), (Some(9), "high"), (Some(5), "mid")],
    )
    .await;
    let (held, _, body) = ch.get(&q, false).await.expect("high");
    assert_eq!(body, b"high");
    publish_prioritised(&mut ch, &q, &[(Some(9), "high2")]).await;
    ch.nack(held.delivery_tag(), false, true).await;
    assert_eq!(ch.drain(&q).await, ["high", "high2", "mid", "low"]);
    conn.close().await;
}

/// Without x-max-priority the priority property is ignored: FIFO.
#[tokio::test]
async fn priority_is_ignored_without_x_max_priority() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("noprio");
    ch.declare_queue(&q).await;
    publish_prioritised(&mut ch, &q, &[(Some(1), "a"), (Some(9), "b"), (None, "c")]).await;
    assert_eq!(ch.drain(&q).await, ["a", "b", "c"]);
    conn.close().await;
}

/// x-max-priority accepts 0..=255 and refuses other values with RabbitMQ's 406 texts.
#[tokio::test]
async fn max_priority_range_and_refusals() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    for ok in [0, 1, 10, 255] {
        ch.declare_args(&unique("maxprio-ok"), table(&[("x-max-priority", int(ok))]))
            .await;
    }
    for (value, detail) in [
        (int(256), "{max_value_exceeded,256}"),
        (int(-1), "{value_negative,-1}"),
        (s("ten"), "\"expected integer, got longstr\""),
    ] {
        let q = unique("maxprio-bad");
        expect_declare_refused(
            &conn,
            qargs(&q, table(&[("x-max-priority", value)])),
            406,
            &invalid_arg("x-max-priority", &q, detail),
        )
        .await;
    }
    conn.close().await;
}

/// Consumer priorities: the consumer with the higher x-priority gets messages while it has
/// room (prefetch); the lower one only gets what the higher one cannot take.
#[tokio::test]
async fn higher_priority_consumer_served_first_while_it_has_room() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = unique("cprio");
    ch.declare_queue(&q).await;
    let low = conn.channel().await;
    low.qos(10, false).await;
    let (_t, mut rx_low) = low
        .consume_args(&q, false, table(&[("x-priority", int(0))]))
        .await;
    let high = conn.channel().await;
    high.qos(2, false).await;
    let (_t, mut rx_high) = high
        .consume_args(&q, false, table(&[("x-priority", int(10))]))
        .await;
    for i in 0..5 {
        ch.publish_props_confirmed(
            "",
            &q,
            BasicProperties::default(),
            format!("m{i}").as_bytes(),
        )
        .await;
    }
    assert_eq!(
        bodies(&next_deliveries(&mut rx_high, 2).await),
        ["m0", "m1"]
    );
    assert_eq!(
        bodies(&next_deliveries(&mut rx_low, 3).await),
        ["m2", "m3", "m4"]
    );
    assert_no_delivery(&mut rx_high).await;
    conn.close().await;
}

/// Consumers of one priority share its messages round robin, strictly alternating; a
/// consumer of lower priority gets none while they have room.
#[tokio::test]
async fn consumers_of_one_priority_alternate() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let q = unique("cprio-rr");
    ch.declare_queue(&q).await;
    let low = conn.channel().await;
    let (_t, mut rx_low) = low
        .consume_args(&q, true, table(&[("x-priority", int(1))]))
        .await;
    let mut highs = Vec::new();
    for _ in 0..2 {
        let c = conn.channel().await;
        let (_t, rx) = c
            .consume_args(&q, true, table(&[("x-priority", int(5))]))
            .await;
        highs.push((c, rx));
    }
    for i in 0..6 {
        ch.publish_props_confirmed(
            "",
            &q,
            BasicProperties::default(),
            format!("m{i}").as_bytes(),
        )
        .await;
    }
    let a = bodies(&next_deliveries(&mut highs[0].1, 3).await);
    let b2 = bodies(&next_deliveries(&mut highs[1].1, 3).await);
    let (even, odd) = if a[0] == "m0" { (a, b2) } else { (b2, a) };
    assert_eq!(even, ["m0", "m2", "m4"]);
    assert_eq!(odd, ["m1", "m3", "m5"]);
    assert_no_delivery(&mut rx_low).await;
    conn.close().await;
}

/// x-cancel-on-ha-failover on basic.consume must be a boolean (406 with RabbitMQ's text); it
/// is checked after x-priority.
#[tokio::test]
async fn cancel_on_ha_failover_argument_checked() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let q = unique("cprio-ha");
    ch.declare_queue(&q).await;
    ch.consume_args(
        &q,
        true,
        table(&[("x-cancel-on-ha-failover", boolean(true))]),
    )
    .await;
    for (args, key, detail) in [
        (
            table(&[("x-cancel-on-ha-failover", int(1))]),
            "x-cancel-on-ha-failover",
            "{unacceptable_type,signedint}",
        ),
        (
            table(&[
                ("x-priority", boolean(true)),
                ("x-cancel-on-ha-failover", int(1)),
            ]),
            "x-priority",
            "\"expected integer, got bool\"",
        ),
    ] {
        let mut bad = conn.channel().await;
        refused(
            "basic.consume with a bad argument",
            bad.ch.basic_consume_rx(
                amqprs::channel::BasicConsumeArguments::new(&q, "")
                    .arguments(args)
                    .finish(),
            ),
        )
        .await;
        bad.expect_closed(406, &invalid_arg(key, &q, detail)).await;
    }
    conn.close().await;
}

/// x-priority must be an integer (406 with RabbitMQ's text); negative values are accepted
/// (a consumer below the default 0), unknown consumer arguments are accepted.
#[tokio::test]
async fn consumer_priority_argument_checked() {
    let b = Broker::start();
    let conn = b.connect().await;
    let ch = conn.channel().await;
    let q = unique("cprio-args");
    ch.declare_queue(&q).await;
    for args in [
        table(&[("x-priority", int(-5))]),
        table(&[("x-priority", long(1 << 40))]),
        table(&[("x-unknown-consumer-arg", s("whatever"))]),
    ] {
        ch.consume_args(&q, true, args).await;
    }
    let mut bad = conn.channel().await;
    refused(
        "basic.consume x-priority=\"high\"",
        bad.ch.basic_consume_rx(
            amqprs::channel::BasicConsumeArguments::new(&q, "")
                .arguments(table(&[("x-priority", s("high"))]))
                .finish(),
        ),
    )
    .await;
    bad.expect_closed(
        406,
        &invalid_arg("x-priority", &q, "\"expected integer, got longstr\""),
    )
    .await;
    conn.close().await;
}
