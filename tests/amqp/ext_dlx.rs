//! Dead-lettering as RabbitMQ 3.10 does it (issue 10, item 3): the reasons rejected and
//! expired (maxlen is in ext_length, delivery_limit in ext_quorum), the x-death header and the
//! x-first-death-* headers, the dead-letter routing key against CC/BCC, cycle detection, and
//! the message's properties kept. The exact order and types of the x-death fields are read
//! from the wire by hand (amqprs keeps tables in a hash map). Run against RabbitMQ with
//! CONEY_TEST_ADDR.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use amqprs::BasicProperties;

use crate::ext_support::*;
use crate::support::*;
use crate::wire::{handshake, method, read_frame, read_method, shortstr};

/// A direct exchange `dlx` with `dlq` bound by `key`; returns a no-ack consumer on `dlq`.
async fn dead_letter_target(ch: &Chan, dlx: &str, dlq: &str, key: &str) -> Consumer {
    ch.declare_exchange(dlx, "direct").await;
    ch.declare_queue(dlq).await;
    ch.bind(dlq, dlx, key).await;
    ch.consume(dlq, true).await.1
}

/// A rejected message (reject, requeue=false) is republished to the dead-letter exchange
/// with its routing key, exchange field = the DLX, its properties (persistent, correlation
/// id, headers) kept, and an x-death entry: count 1, reason rejected, the queue, the time,
/// the exchange it was published to and its routing keys; x-first-death-* name the same.
#[tokio::test]
async fn rejected_message_is_dead_lettered_with_x_death() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (src, dlx, dlq) = (unique("rej"), unique("rej-dlx"), unique("rej-dlq"));
    let mut dl = dead_letter_target(&ch, &dlx, &dlq, "rk").await;
    ch.declare_args(&src, table(&[("x-dead-letter-exchange", s(&dlx))]))
        .await;
    ch.bind(&src, "amq.direct", "rk").await;
    let props = BasicProperties::default()
        .with_persistence(true)
        .with_correlation_id("corr-1")
        .with_priority(4)
        .with_headers(table(&[("h", s("v"))]))
        .finish();
    ch.publish_props_confirmed("amq.direct", "rk", props, b"payload")
        .await;
    let (ok, _, _) = ch
        .get(&src, false)
        .await
        .expect("message in the source queue");
    ch.reject(ok.delivery_tag(), false).await;

    let d = next_delivery(&mut dl).await;
    assert_eq!(d.body_str(), "payload");
    assert_eq!(d.deliver.exchange(), &dlx);
    assert_eq!(d.deliver.routing_key(), "rk");
    assert!(!d.redelivered());
    assert_eq!(d.props.delivery_mode(), Some(2), "persistence is kept");
    assert_eq!(d.props.correlation_id().map(String::as_str), Some("corr-1"));
    assert_eq!(d.props.priority(), Some(4));
    assert_eq!(header_str(&d.props, "h").as_deref(), Some("v"));
    assert_one_death(&d.props, &src, "rejected", "amq.direct", &["rk"], None);
    assert_eq!(ch.count(&src).await, 0);
    conn.close().await;
}

/// Dead-lettering a message that has a per-message TTL (here by a reject, long before the
/// deadline) moves its expiration into x-death's original-expiration and removes the
/// property, so the copy does not expire again where it is routed.
#[tokio::test]
async fn dead_lettering_moves_expiration_into_x_death() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (src, dlq) = (unique("rej-exp"), unique("rej-exp-dlq"));
    ch.declare_queue(&dlq).await;
    ch.declare_args(
        &src,
        table(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ]),
    )
    .await;
    ch.publish_props_confirmed("", &src, expiring("60000"), b"m")
        .await;
    let (ok, props, _) = ch
        .get(&src, false)
        .await
        .expect("message in the source queue");
    assert_eq!(props.expiration().map(String::as_str), Some("60000"));
    ch.reject(ok.delivery_tag(), false).await;
    await_count(&ch, &dlq, 1).await;
    let (_, props, _) = ch.get(&dlq, true).await.expect("the dead-lettered copy");
    assert_eq!(props.expiration(), None, "expiration kept: {props:?}");
    assert_one_death(&props, &src, "rejected", "", &[src.as_str()], Some("60000"));
    conn.close().await;
}

/// basic.nack with requeue=false dead-letters every message it covers (multiple), in order,
/// each with reason rejected; requeue=true never dead-letters.
#[tokio::test]
async fn nack_without_requeue_dead_letters_and_requeue_does_not() {
    let b = Broker::start();
    let conn = b.connect().await;
    let mut ch = conn.channel().await;
    let (src, dlq) = (unique("nack"), unique("nack-dlq"));
    ch.declare_queue(&dlq).await;
    let (_t, mut dl) = ch.consume(&dlq, true).await;
    ch.declare_args(
        &src,
        table(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&dlq)),
        ]),
    )
    .await;
    for i in 0..3 {
        ch.publish_props_confirmed(
            "",
            &src,
            BasicProperties::default(),
            format!("m{i}").as_bytes(),
        )
        .await;
    }
    let cons = conn.channel().await;
    let (_t, mut rx) = cons.consume(&src, false).await;
    let first = next_deliveries(&mut rx, 3).await;
    cons.reject(first[0].tag(), true).await;
    cons.nack(first[2].tag(), true, true).await;
    let again = next_deliveries(&mut rx, 3).await;
    assert!(again.iter().all(|d| d.redelivered()));
    assert_no_delivery(&mut dl).await;

    cons.nack(again[2].tag(), true, false).await;
    let dead = next_deliveries(&mut dl, 3).await;
    assert_eq!(bodies(&dead), ["m0", "m1", "m2"]);
    for d in &dead {
        assert_one_death(&d.props, &src, "rejected", "", &[src.as_str()], None);
    }
    conn.close().await;
}

/// A message expired by the queue's TTL is dead-lettered with reason expired and no
/// original-expiration; its persistence and priority are kept.
#[tokio::test]
async fn queue_ttl_expiry_dead_letters_without_original_expiration() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (src, dlx, dlq) = (unique("exp"), unique("exp-dlx"), unique("exp-dlq"));
    let mut dl = dead_letter_target(&ch, &dlx, &dlq, &src).await;
    ch.declare_args(
        &src,
        table(&[
            ("x-message-ttl", int(100)),
            ("x-dead-letter-exchange", s(&dlx)),
        ]),
    )
    .await;
    let props = BasicProperties::default()
        .with_persistence(true)
        .with_priority(3)
        .finish();
    ch.publish_props_confirmed("", &src, props, b"stale").await;
    let d = next_delivery(&mut dl).await;
    assert_eq!(d.body_str(), "stale");
    assert_eq!(
        (d.props.delivery_mode(), d.props.priority()),
        (Some(2), Some(3))
    );
    assert_one_death(&d.props, &src, "expired", "", &[src.as_str()], None);
    conn.close().await;
}

/// With x-dead-letter-routing-key the dead letter is routed by that key only: the CC header
/// is removed (its keys do not route it), while x-death still lists the original routing
/// key and the CC keys.
#[tokio::test]
async fn dead_letter_routing_key_replaces_keys_and_drops_cc() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (src, dlx, dlq, ccq) = (
        unique("dlrk"),
        unique("dlrk-dlx"),
        unique("dlrk-dlq"),
        unique("dlrk-cc"),
    );
    let mut dl = dead_letter_target(&ch, &dlx, &dlq, "dl-key").await;
    ch.declare_queue(&ccq).await;
    ch.bind(&ccq, &dlx, "cc1").await;
    ch.declare_args(
        &src,
        table(&[
            ("x-dead-letter-exchange", s(&dlx)),
            ("x-dead-letter-routing-key", s("dl-key")),
        ]),
    )
    .await;
    ch.bind(&src, "amq.direct", "rk").await;
    let props = with_headers(table(&[("CC", str_array(&["cc1"]))]));
    ch.publish_props_confirmed("amq.direct", "rk", props, b"m")
        .await;
    let (ok, p, _) = ch
        .get(&src, false)
        .await
        .expect("message in the source queue");
    assert!(
        header(&p, "CC").is_some(),
        "CC is delivered with the original"
    );
    ch.nack(ok.delivery_tag(), false, false).await;
    let d = next_delivery(&mut dl).await;
    assert_eq!(d.deliver.routing_key(), "dl-key");
    assert!(
        header(&d.props, "CC").is_none(),
        "CC removed: {:?}",
        d.props
    );
    assert_one_death(
        &d.props,
        &src,
        "rejected",
        "amq.direct",
        &["rk", "cc1"],
        None,
    );
    assert_eq!(ch.count(&ccq).await, 0, "the CC key routed the dead letter");
    conn.close().await;
}

/// Without x-dead-letter-routing-key the dead letter is routed by all the keys the message
/// was published with, CC and BCC included; the CC header stays, the BCC header never shows,
/// and x-death's routing-keys lists the routing key and the CC keys but not the BCC ones.
#[tokio::test]
async fn original_cc_and_bcc_keys_route_the_dead_letter() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (src, dlx) = (unique("cc"), unique("cc-dlx"));
    let (rkq, ccq, bccq) = (unique("cc-rk"), unique("cc-cc"), unique("cc-bcc"));
    let mut rx_rk = dead_letter_target(&ch, &dlx, &rkq, "rk").await;
    ch.declare_queue(&ccq).await;
    ch.bind(&ccq, &dlx, "cc1").await;
    ch.declare_queue(&bccq).await;
    ch.bind(&bccq, &dlx, "bcc1").await;
    let (_t, mut rx_cc) = ch.consume(&ccq, true).await;
    let (_t, mut rx_bcc) = ch.consume(&bccq, true).await;
    ch.declare_args(&src, table(&[("x-dead-letter-exchange", s(&dlx))]))
        .await;
    ch.bind(&src, "amq.direct", "rk").await;
    let props = with_headers(table(&[
        ("CC", str_array(&["cc1"])),
        ("BCC", str_array(&["bcc1"])),
    ]));
    ch.publish_props_confirmed("amq.direct", "rk", props, b"m")
        .await;
    let (ok, p, _) = ch
        .get(&src, false)
        .await
        .expect("message in the source queue");
    assert!(header(&p, "BCC").is_none(), "BCC is never delivered");
    ch.reject(ok.delivery_tag(), false).await;
    for rx in [&mut rx_rk, &mut rx_cc, &mut rx_bcc] {
        let d = next_delivery(rx).await;
        assert_eq!(d.deliver.routing_key(), "rk");
        assert!(
            header(&d.props, "CC").is_some(),
            "CC header kept: {:?}",
            d.props
        );
        assert!(
            header(&d.props, "BCC").is_none(),
            "BCC header shown: {:?}",
            d.props
        );
        assert_one_death(
            &d.props,
            &src,
            "rejected",
            "amq.direct",
            &["rk", "cc1"],
            None,
        );
    }
    conn.close().await;
}

/// A message dead-lettered again and again (with a rejection each time, so it is no cycle):
/// x-death keeps one entry per (queue, reason), the most recent first, and increments the
/// count of an entry that recurs; x-first-death-* keep naming the first death.
#[tokio::test]
async fn repeated_dead_lettering_counts_per_queue_and_reason() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (a, bq) = (unique("ping"), unique("pong"));
    for (q, other) in [(&a, &bq), (&bq, &a)] {
        ch.declare_args(
            q,
            table(&[
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s(other)),
            ]),
        )
        .await;
    }
    ch.publish_props_confirmed("", &a, BasicProperties::default(), b"ball")
        .await;
    let expected: [&[(&str, i64)]; 5] = [
        &[],
        &[("a", 1)],
        &[("b", 1), ("a", 1)],
        &[("a", 2), ("b", 1)],
        &[("b", 2), ("a", 2)],
    ];
    for (round, want) in expected.iter().enumerate() {
        let q = if round % 2 == 0 { &a } else { &bq };
        let mut got = None;
        for _ in 0..250 {
            if let Some(m) = ch.get(q, false).await {
                got = Some(m);
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let (ok, props, _) = got.unwrap_or_else(|| panic!("round {round}: nothing in {q}"));
        let deaths: Vec<(&str, i64)> = x_deaths(&props)
            .iter()
            .map(|d| {
                assert_eq!(d.reason, "rejected");
                (if d.queue == a { "a" } else { "b" }, d.count)
            })
            .collect();
        assert_eq!(&deaths, want, "round {round}");
        if round > 0 {
            assert_first_death(&props, &a, "rejected", "");
        }
        if round + 1 < expected.len() {
            ch.reject(ok.delivery_tag(), false).await;
        }
    }
    conn.close().await;
}

/// A message that would return to a queue it already died in without any rejection (here:
/// expiry into a fanout that routes back to the same queue) is not delivered to that queue
/// again, while the other queues of the fanout get it.
#[tokio::test]
async fn dead_letter_cycle_without_rejection_is_dropped() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let (f, q, observer) = (unique("cyc-f"), unique("cyc-q"), unique("cyc-o"));
    ch.declare_exchange(&f, "fanout").await;
    ch.declare_queue(&observer).await;
    ch.bind(&observer, &f, "").await;
    ch.declare_args(
        &q,
        table(&[
            ("x-message-ttl", int(100)),
            ("x-dead-letter-exchange", s(&f)),
        ]),
    )
    .await;
    ch.bind(&q, &f, "").await;
    let (_t, mut rx) = ch.consume(&observer, true).await;
    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"round")
        .await;
    let d = next_delivery(&mut rx).await;
    assert_one_death(&d.props, &q, "expired", "", &[q.as_str()], None);
    // the copy for q would have been routed with the observer's: a quiet period shows none
    tokio::time::sleep(QUIET).await;
    assert_eq!(ch.count(&q).await, 0, "the cycle delivered to {q} again");
    assert_no_delivery(&mut rx).await;

    // the shortest cycle: dead-lettering to the default exchange with the queue's own name
    let selfq = unique("cyc-self");
    ch.declare_args(
        &selfq,
        table(&[
            ("x-message-ttl", int(100)),
            ("x-dead-letter-exchange", s("")),
        ]),
    )
    .await;
    ch.publish_props_confirmed("", &selfq, BasicProperties::default(), b"self")
        .await;
    await_count(&ch, &selfq, 0).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(ch.count(&selfq).await, 0, "a self-cycle came back");
    conn.close().await;
}

/// A dead-letter exchange that does not exist: the rejected message is dropped and nothing
/// is reported to the client (the channel stays open).
#[tokio::test]
async fn missing_dead_letter_exchange_drops_the_message() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let q = unique("nodlx");
    ch.declare_args(
        &q,
        table(&[("x-dead-letter-exchange", s(&unique("no-such-exchange")))]),
    )
    .await;
    ch.publish_props_confirmed("", &q, BasicProperties::default(), b"lost")
        .await;
    let (ok, _, _) = ch.get(&q, false).await.expect("message");
    ch.reject(ok.delivery_tag(), false).await;
    assert_eq!(ch.count(&q).await, 0);
    assert!(ch.ch.is_open());
    conn.close().await;
}

// ---------------------------------------------------------------------------------------
// x-death on the wire
// ---------------------------------------------------------------------------------------

/// Read a field value at `p` (type octet first); returns (type, bytes of the value, rest).
fn field_value(p: &[u8]) -> (u8, &[u8], &[u8]) {
    let t = p[0];
    let p = &p[1..];
    let n = match t {
        b't' | b'b' | b'B' => 1,
        b's' | b'u' => 2,
        b'I' | b'i' | b'f' => 4,
        b'l' | b'd' | b'T' => 8,
        b'D' => 5,
        b'V' => 0,
        b'S' | b'A' | b'F' | b'x' => 4 + u32::from_be_bytes(p[..4].try_into().unwrap()) as usize,
        other => panic!("unknown field type {:?}", other as char),
    };
    (t, &p[..n], &p[n..])
}

/// The entries of a field table (its bytes after the length): (name, type, value bytes).
fn table_entries(mut p: &[u8]) -> Vec<(String, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !p.is_empty() {
        let n = p[0] as usize;
        let name = String::from_utf8_lossy(&p[1..1 + n]).into_owned();
        let (t, v, rest) = field_value(&p[1 + n..]);
        out.push((name, t, v.to_vec()));
        p = rest;
    }
    out
}

/// basic.get (no-ack) of `queue` over raw bytes; the message's headers table entries.
fn raw_get_headers(s: &mut TcpStream, queue: &str) -> Vec<(String, u8, Vec<u8>)> {
    let mut get = b"\x00\x3c\x00\x46\x00\x00".to_vec();
    get.extend_from_slice(&shortstr(queue));
    get.push(1);
    for _ in 0..250 {
        s.write_all(&method(1, &get)).unwrap();
        let f = read_method(s);
        match f.class_method() {
            (60, 71) => {
                let h = read_frame(s);
                let flags = u16::from_be_bytes([h.payload[12], h.payload[13]]);
                let mut p = &h.payload[14..];
                for bit in [15, 14] {
                    if flags & (1 << bit) != 0 {
                        p = &p[1 + p[0] as usize..];
                    }
                }
                assert!(flags & (1 << 13) != 0, "no headers: flags {flags:#x}");
                let len = u32::from_be_bytes(p[..4].try_into().unwrap()) as usize;
                let entries = table_entries(&p[4..4 + len]);
                let size = u64::from_be_bytes(h.payload[4..12].try_into().unwrap());
                if size > 0 {
                    read_frame(s);
                }
                return entries;
            }
            (60, 72) => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("unexpected answer to basic.get: {other:?}"),
        }
    }
    panic!("nothing arrived in {queue}");
}

/// The x-death entries of a headers table: for each, its (field name, type) in wire order.
fn x_death_layout(headers: &[(String, u8, Vec<u8>)]) -> Vec<Vec<(String, char)>> {
    let (_, t, v) = headers
        .iter()
        .find(|(n, _, _)| n == "x-death")
        .expect("x-death header");
    assert_eq!(*t, b'A', "x-death is an array");
    let mut items = &v[4..];
    let mut out = Vec::new();
    while !items.is_empty() {
        let (t, v, rest) = field_value(items);
        assert_eq!(t, b'F', "x-death entries are tables");
        out.push(
            table_entries(&v[4..])
                .into_iter()
                .map(|(n, t, _)| (n, t as char))
                .collect(),
        );
        items = rest;
    }
    out
}

fn layout(fields: &[(&str, char)]) -> Vec<(String, char)> {
    fields.iter().map(|(n, t)| (n.to_string(), *t)).collect()
}

/// Publish one message with a per-message TTL to `a` of a pair of queues that dead-letter
/// into each other, reject it `passes` times (a -> b -> a ...), and read the headers of
/// where it ended up over raw bytes.
async fn headers_after_passes(
    b: &Broker,
    ch: &mut Chan,
    passes: usize,
) -> Vec<(String, u8, Vec<u8>)> {
    let (a, bq) = (unique("wire-a"), unique("wire-b"));
    for (q, other) in [(&a, &bq), (&bq, &a)] {
        ch.declare_args(
            q,
            table(&[
                ("x-dead-letter-exchange", s("")),
                ("x-dead-letter-routing-key", s(other)),
            ]),
        )
        .await;
    }
    ch.publish_props_confirmed("", &a, expiring("60000"), b"m")
        .await;
    for pass in 0..passes {
        let q = if pass % 2 == 0 { &a } else { &bq };
        let mut got = None;
        for _ in 0..250 {
            if let Some(m) = ch.get(q, false).await {
                got = Some(m);
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let (ok, _, _) = got.unwrap_or_else(|| panic!("nothing in {q}"));
        ch.reject(ok.delivery_tag(), false).await;
    }
    let last = if passes.is_multiple_of(2) { &a } else { &bq };
    await_count(ch, last, 1).await;
    let mut s = handshake(b);
    raw_get_headers(&mut s, last)
}

/// The x-death entries on the wire, as RabbitMQ 3.10 writes them. The first entry of a
/// message (no x-death yet) has the fields count (l), reason (S), queue (S), time (T),
/// exchange (S), routing-keys (A) and, for a message that had a per-message TTL,
/// original-expiration (S), in that order; the expiration is gone from the message
/// afterwards, so later entries have no original-expiration. Every later write (a new entry
/// in front, or an entry whose count is incremented and moved to the front) puts that entry's
/// fields in name order; the entries behind it are left as they were. The x-first-death-*
/// headers are long strings.
#[tokio::test]
async fn x_death_fields_in_rabbitmqs_order_and_types() {
    let b = Broker::start();
    let (conn, mut ch) = b.connect_channel().await;
    let fresh = layout(&[
        ("count", 'l'),
        ("reason", 'S'),
        ("queue", 'S'),
        ("time", 'T'),
        ("exchange", 'S'),
        ("routing-keys", 'A'),
    ]);
    let mut fresh_oe = fresh.clone();
    fresh_oe.push(("original-expiration".into(), 'S'));
    let sorted = layout(&[
        ("count", 'l'),
        ("exchange", 'S'),
        ("queue", 'S'),
        ("reason", 'S'),
        ("routing-keys", 'A'),
        ("time", 'T'),
    ]);
    let mut sorted_oe = sorted.clone();
    sorted_oe.insert(2, ("original-expiration".into(), 'S'));

    let once = headers_after_passes(&b, &mut ch, 1).await;
    assert_eq!(
        x_death_layout(&once),
        vec![fresh_oe.clone()],
        "after one death"
    );
    for (name, t) in [
        ("x-first-death-exchange", b'S'),
        ("x-first-death-queue", b'S'),
        ("x-first-death-reason", b'S'),
    ] {
        assert!(
            once.iter().any(|(n, ty, _)| n == name && *ty == t),
            "{name} of type {} in {once:?}",
            t as char
        );
    }
    let twice = headers_after_passes(&b, &mut ch, 2).await;
    assert_eq!(
        x_death_layout(&twice),
        vec![sorted.clone(), fresh_oe],
        "after two deaths (b, then a untouched)"
    );
    let thrice = headers_after_passes(&b, &mut ch, 3).await;
    assert_eq!(
        x_death_layout(&thrice),
        vec![sorted_oe, sorted],
        "after three deaths (a counted twice, then b)"
    );
    conn.close().await;
}
