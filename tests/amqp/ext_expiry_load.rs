//! The cost side of message TTL (issue 10): a queue holding a million messages with
//! x-message-ttl expires them all without stalling the loop, because expiry runs in bounded
//! batches per loop turn (EXPIRY_WORK_PER_TURN_MAX in src/limits.rs). A canary on another
//! connection makes back-to-back round trips (a passive queue.declare, whose declare-ok also
//! reports how many messages are left) and its p99 must stay under 1 ms while the backlog
//! expires. coney-only: it measures coney's one loop (RabbitMQ expires in a queue process of
//! its own). Hand-written frames on both connections, so the client adds little latency.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::ext_support::coney_only;
use crate::support::*;
use crate::wire::*;

const MESSAGES: u32 = 1_000_000;
/// Long enough for the million publishes to be in the queue before the first expires.
const TTL_MS: i32 = 4000;
/// Publishes written to the socket at once while filling the queue.
const BATCH: usize = 10_000;
/// The canary's round trip, at the 99th percentile, while the queue expires.
const P99_MAX: Duration = Duration::from_millis(1);

/// queue.declare (50,10) on channel 1: `name`, `bits` (1 passive), arguments `table`.
fn queue_declare(name: &str, bits: u8, table: &[u8]) -> Vec<u8> {
    let mut p = b"\x00\x32\x00\x0a\x00\x00".to_vec();
    p.extend_from_slice(&shortstr(name));
    p.push(bits);
    p.extend_from_slice(&longstr(table));
    method(1, &p)
}

/// Passive queue.declare of `name` and its declare-ok: the message count.
fn count(s: &mut TcpStream, name: &str) -> u32 {
    s.write_all(&queue_declare(name, 1, b"")).unwrap();
    let f = read_method(s);
    assert_eq!(f.class_method(), (50, 11), "queue.declare-ok");
    let at = 4 + 1 + f.payload[4] as usize;
    u32::from_be_bytes(f.payload[at..at + 4].try_into().unwrap())
}

/// `MESSAGES` publishes of a one-byte body to `queue`, written in batches.
fn fill(s: &mut TcpStream, queue: &str) {
    let mut one = basic_publish(1, queue);
    one.extend_from_slice(&content_header(1, 1, 0, b""));
    one.extend_from_slice(&frame(3, 1, b"x"));
    let batch = one.repeat(BATCH);
    for _ in 0..MESSAGES as usize / BATCH {
        s.write_all(&batch).unwrap();
    }
}

/// A million messages with x-message-ttl expire in bounded batches: another connection's
/// round trip keeps a p99 under 1 ms from the first expiry until the queue is empty.
#[test]
fn a_million_message_ttl_queue_expires_without_stalling_other_clients() {
    let b = Broker::start();
    if coney_only(&b, "expiry load bound") {
        return;
    }
    let q = unique("ttl-million");
    let mut ttl = shortstr("x-message-ttl");
    ttl.push(b'I');
    ttl.extend_from_slice(&TTL_MS.to_be_bytes());
    let mut filler = handshake(&b);
    filler.write_all(&queue_declare(&q, 0, &ttl)).unwrap();
    assert_eq!(read_method(&mut filler).class_method(), (50, 11));
    let t0 = Instant::now();
    fill(&mut filler, &q);
    let mut canary = handshake(&b);
    let full = loop {
        let n = count(&mut canary, &q);
        if n == MESSAGES || t0.elapsed() > Duration::from_millis(TTL_MS as u64) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let filled = t0.elapsed();
    assert_eq!(
        full, MESSAGES,
        "the queue was not full before its first message expired ({filled:?})"
    );
    let mut samples = Vec::with_capacity(1 << 20);
    let limit = Instant::now() + Duration::from_millis(TTL_MS as u64) + TIMEOUT * 6;
    let mut expiring_since = None;
    loop {
        let sent = Instant::now();
        let left = count(&mut canary, &q);
        let rtt = sent.elapsed();
        if left < MESSAGES {
            expiring_since.get_or_insert(sent);
            samples.push(rtt);
        }
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < limit,
            "{left} messages still there {:?} after the fill",
            t0.elapsed()
        );
    }
    let expired_in = expiring_since.map(|t| t.elapsed()).unwrap_or_default();
    samples.sort_unstable();
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    eprintln!(
        "filled {MESSAGES} in {filled:?}; expired in {expired_in:?}; canary round trips while expiring: {} samples, p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    assert!(
        samples.len() >= 100,
        "too few round trips while the queue expired to measure: {}",
        samples.len()
    );
    assert!(
        p(0.99) < P99_MAX,
        "p99 round trip {:?} while expiring (max {:?})",
        p(0.99),
        p(1.0)
    );
}
