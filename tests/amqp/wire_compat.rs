//! Wire behaviours where coney differed from RabbitMQ 3.10 (issue 10): the frame size bound,
//! the default exchange under exchange.declare, the close for immediate=true, and idempotent
//! unbinding. Raw-byte tests write every frame by hand (raw_wire's helpers); the others use
//! amqprs. Run against RabbitMQ with `CONEY_TEST_ADDR=127.0.0.1:5691`.

use std::io::Write;
use std::net::TcpStream;

use amqprs::channel::{ExchangeDeclareArguments, ExchangeUnbindArguments, QueueUnbindArguments};

use crate::support::*;
use crate::wire::*;

/// The frame_max the raw handshake negotiates.
const FRAME_MAX: usize = 4096;

/// queue.declare of a server-named exclusive queue on channel 1; returns its name.
fn declare_server_named(s: &mut TcpStream) -> String {
    s.write_all(&method(
        1,
        b"\x00\x32\x00\x0a\x00\x00\x00\x04\x00\x00\x00\x00",
    ))
    .unwrap();
    let f = read_method(s);
    assert_eq!(f.class_method(), (50, 11), "queue.declare-ok");
    let n = f.payload[4] as usize;
    String::from_utf8(f.payload[5..5 + n].to_vec()).unwrap()
}

/// basic.publish to the default exchange with routing key `queue` and `flags` (bit 0
/// mandatory, bit 1 immediate), then a content header announcing `body_size` bytes.
fn publish_head(queue: &str, flags: u8, body_size: usize) -> Vec<u8> {
    let mut p = b"\x00\x3c\x00\x28\x00\x00\x00".to_vec();
    p.extend_from_slice(&shortstr(queue));
    p.push(flags);
    let mut bytes = method(1, &p);
    let mut h = b"\x00\x3c\x00\x00".to_vec();
    h.extend_from_slice(&(body_size as u64).to_be_bytes());
    h.extend_from_slice(b"\x00\x00");
    bytes.extend_from_slice(&frame(2, 1, &h));
    bytes
}

/// basic.get no-ack of `queue`, retried while get-empty (bounded); returns the whole body.
fn get_body(s: &mut TcpStream, queue: &str) -> Vec<u8> {
    let mut get = b"\x00\x3c\x00\x46\x00\x00".to_vec();
    get.extend_from_slice(&shortstr(queue));
    get.push(1);
    for _ in 0..250 {
        s.write_all(&method(1, &get)).unwrap();
        let f = read_method(s);
        match f.class_method() {
            (60, 71) => {
                let h = read_frame(s);
                assert_eq!(h.kind, 2, "content header after get-ok");
                let size = u64::from_be_bytes(h.payload[4..12].try_into().unwrap()) as usize;
                let mut body = Vec::new();
                while body.len() < size {
                    let b = read_frame(s);
                    assert_eq!(b.kind, 3, "content body frame");
                    assert!(
                        b.payload.len() <= FRAME_MAX - 8,
                        "server sent a body frame of {} bytes for frame_max {FRAME_MAX}",
                        b.payload.len()
                    );
                    body.extend_from_slice(&b.payload);
                }
                return body;
            }
            (60, 72) => std::thread::sleep(std::time::Duration::from_millis(20)),
            other => panic!("unexpected answer to basic.get: {other:?}"),
        }
    }
    panic!("message never arrived in {queue}");
}

/// A body frame whose payload is exactly frame_max bytes (8 more than frame_max allows for
/// the whole frame) is accepted, as RabbitMQ 3.10 tolerates 8 bytes of slack: clients that
/// split bodies at frame_max work. The message arrives whole.
#[test]
fn body_frame_of_exactly_frame_max_is_accepted() {
    let b = Broker::start();
    let mut s = handshake(&b);
    let q = declare_server_named(&mut s);
    let body: Vec<u8> = (0..FRAME_MAX).map(|i| (i % 251) as u8).collect();
    let mut bytes = publish_head(&q, 0, body.len());
    bytes.extend_from_slice(&frame(3, 1, &body));
    s.write_all(&bytes).unwrap();
    assert_eq!(get_body(&mut s, &q), body, "body after the round trip");
}

/// A method frame whose payload is exactly frame_max bytes (a queue.declare padded with an
/// unknown x- argument) is accepted as well: the slack applies to every frame type.
#[test]
fn method_frame_of_exactly_frame_max_is_accepted() {
    let b = Broker::start();
    let mut s = handshake(&b);
    let q = unique("fmax-method");
    // queue.declare: ticket, queue, bits (exclusive), arguments {x-pad: S <padding>}
    let mut p = b"\x00\x32\x00\x0a\x00\x00".to_vec();
    p.extend_from_slice(&shortstr(&q));
    p.push(0x04);
    let fixed = p.len() + 4 + 1 + "x-pad".len() + 1 + 4;
    let pad = vec![b'p'; FRAME_MAX - fixed];
    let mut entry = shortstr("x-pad");
    entry.push(b'S');
    entry.extend_from_slice(&longstr(&pad));
    p.extend_from_slice(&(entry.len() as u32).to_be_bytes());
    p.extend_from_slice(&entry);
    assert_eq!(p.len(), FRAME_MAX);
    s.write_all(&method(1, &p)).unwrap();
    let f = read_method(&mut s);
    assert_eq!(f.class_method(), (50, 11), "queue.declare-ok: {f:?}");
}

/// A frame whose payload is frame_max + 1 bytes is the smallest that RabbitMQ refuses:
/// 501 FRAME_ERROR naming the size and frame_max - 8, class/method 0/0.
#[test]
fn body_frame_one_byte_over_frame_max_is_frame_error() {
    let b = Broker::start();
    let mut s = handshake(&b);
    let q = declare_server_named(&mut s);
    let body = vec![7u8; FRAME_MAX + 1];
    let mut bytes = publish_head(&q, 0, body.len());
    bytes.extend_from_slice(&frame(3, 1, &body));
    s.write_all(&bytes).unwrap();
    expect_connection_error(
        &mut s,
        501,
        Text::Exact(&format!(
            "FRAME_ERROR - type 3, all octets = <<>>: {{frame_too_large,{},{}}}",
            FRAME_MAX + 1,
            FRAME_MAX - 8
        )),
        (0, 0),
    );
}

/// basic.publish with immediate=true: connection.close 540 NOT_IMPLEMENTED "immediate=true"
/// naming basic.publish (60/40), so clients report the method.
#[test]
fn immediate_publish_close_names_basic_publish() {
    let b = Broker::start();
    let mut s = handshake(&b);
    let q = declare_server_named(&mut s);
    let mut bytes = publish_head(&q, 0x02, 3);
    bytes.extend_from_slice(&frame(3, 1, b"now"));
    s.write_all(&bytes).unwrap();
    expect_connection_error(
        &mut s,
        540,
        Text::Exact("NOT_IMPLEMENTED - immediate=true"),
        (60, 40),
    );
}

/// exchange.declare of the default exchange "" is 403 ACCESS_REFUSED, passive or not.
#[tokio::test]
async fn declaring_the_default_exchange_is_access_refused() {
    let b = Broker::start();
    let conn = b.connect().await;
    for passive in [true, false] {
        let mut ch = conn.channel().await;
        refused(
            "exchange.declare \"\"",
            ch.ch.exchange_declare(
                ExchangeDeclareArguments::new("", "direct")
                    .passive(passive)
                    .finish(),
            ),
        )
        .await;
        ch.expect_closed(
            403,
            "ACCESS_REFUSED - operation not permitted on the default exchange",
        )
        .await;
    }
    conn.close().await;
}

/// queue.unbind is idempotent on RabbitMQ 3.10: unbinding a queue that does not exist, from
/// an exchange that does not exist, or both, answers unbind-ok and the channel stays open.
#[tokio::test]
async fn queue_unbind_of_missing_queue_or_exchange_is_ok() {
    let b = Broker::start();
    let (conn, ch) = b.connect_channel().await;
    let q = unique("unbind-q");
    ch.declare_queue(&q).await;
    let ghost_q = unique("ghost-q");
    let ghost_x = unique("ghost-x");
    for (queue, exchange) in [
        (ghost_q.as_str(), "amq.direct"),
        (q.as_str(), ghost_x.as_str()),
        (ghost_q.as_str(), ghost_x.as_str()),
    ] {
        within(
            "queue.unbind-ok",
            ch.ch
                .queue_unbind(QueueUnbindArguments::new(queue, exchange, "k")),
        )
        .await
        .unwrap_or_else(|e| panic!("queue.unbind {queue} from {exchange}: {e}"));
    }
    assert!(ch.ch.is_open(), "channel closed by an idempotent unbind");
    assert_eq!(ch.queue_counts(&q).await, (0, 0));
    conn.close().await;
}

/// exchange.unbind is idempotent on RabbitMQ 3.10: a missing source or a missing destination
/// answers unbind-ok and the channel stays open.
#[tokio::test]
async fn exchange_unbind_of_missing_source_or_destination_is_ok() {
    let b = Broker::start();
    let (conn, ch) = b.connect_channel().await;
    let ghost = unique("ghost-x");
    for (destination, source) in [
        ("amq.fanout", ghost.as_str()),
        (ghost.as_str(), "amq.direct"),
    ] {
        within(
            "exchange.unbind-ok",
            ch.ch
                .exchange_unbind(ExchangeUnbindArguments::new(destination, source, "k")),
        )
        .await
        .unwrap_or_else(|e| panic!("exchange.unbind {destination} <- {source}: {e}"));
    }
    assert!(ch.ch.is_open(), "channel closed by an idempotent unbind");
    conn.close().await;
}
