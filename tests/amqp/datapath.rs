//! The data path under load: publisher flow control (a publisher outrunning its consumer is
//! paced while other publishers, consumers and a canary are not; a connection that publishes
//! into the queue it consumes with acks never stalls) and large bodies written from the
//! message's buffer (16 MiB bodies arrive intact through a slow reader, interleaved with
//! small deliveries). Clients are hand-written wire bytes on plain sockets.
//!
//! RSS checks need the broker's pid: the private coney's, or `CONEY_TEST_PID` for an external
//! broker. Run: `cargo test --release --test amqp datapath`.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::robustness::{Canary, RssSampler, MIB};
use crate::support::*;
use crate::wire::*;

/// basic.qos (60,10): prefetch-size 0, prefetch-count, global false.
fn basic_qos_prefetch(channel: u16, prefetch: u16) -> Vec<u8> {
    let mut p = b"\x00\x3c\x00\x0a\x00\x00\x00\x00".to_vec();
    p.extend_from_slice(&prefetch.to_be_bytes());
    p.push(0);
    method(channel, &p)
}

/// basic.consume (60,20) of `queue` with a server-named tag; no-ack bit 2.
fn basic_consume(channel: u16, queue: &str, no_ack: bool) -> Vec<u8> {
    let mut p = b"\x00\x3c\x00\x14\x00\x00".to_vec();
    p.extend_from_slice(&shortstr(queue));
    p.extend_from_slice(&shortstr(""));
    p.push(if no_ack { 2 } else { 0 });
    p.extend_from_slice(&longstr(b""));
    method(channel, &p)
}

/// basic.ack (60,80).
fn basic_ack(channel: u16, tag: u64, multiple: bool) -> Vec<u8> {
    let mut p = b"\x00\x3c\x00\x50".to_vec();
    p.extend_from_slice(&tag.to_be_bytes());
    p.push(multiple as u8);
    method(channel, &p)
}

/// One whole message as a publisher writes it: publish, header, body frames of `frame_max`.
fn publish_bytes(routing_key: &str, body: &[u8], frame_max: u32) -> Vec<u8> {
    let mut out = basic_publish(1, routing_key);
    out.extend_from_slice(&content_header(1, body.len() as u64, 0, b""));
    for part in body.chunks(frame_max as usize - 8) {
        out.extend_from_slice(&frame(3, 1, part));
    }
    out
}

/// A consumer connection on channel 1 of `queue`, after consume-ok.
fn raw_consumer(b: &Broker, queue: &str, prefetch: u16, no_ack: bool) -> Raw {
    let mut c = Raw::connect(b, RAW_FRAME_MAX, 0, &[]);
    if prefetch > 0 {
        c.s.write_all(&basic_qos_prefetch(1, prefetch)).unwrap();
        assert_eq!(read_method(&mut c.s).class_method(), (60, 11), "qos-ok");
    }
    c.s.write_all(&basic_consume(1, queue, no_ack)).unwrap();
    assert_eq!(read_method(&mut c.s).class_method(), (60, 21), "consume-ok");
    c
}

/// A delivery read off the wire: its tag and body.
struct Delivered {
    tag: u64,
    body: Vec<u8>,
}

/// Reads basic.deliver, its header and body frames; None if the read timed out before a
/// delivery began.
fn read_delivery(r: &mut impl Read) -> Option<Delivered> {
    let d = match try_read_frame(r) {
        Ok(f) => f,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
        Err(e) => panic!("consumer read: {e}"),
    };
    if d.kind == 8 {
        return None;
    }
    assert_eq!(d.class_method(), (60, 60), "basic.deliver");
    // consumer tag (shortstr), then the delivery tag
    let at = 5 + d.payload[4] as usize;
    let tag = u64::from_be_bytes(d.payload[at..at + 8].try_into().unwrap());
    let h = read_frame(r);
    assert_eq!(h.kind, 2, "content header after basic.deliver");
    let size = u64::from_be_bytes(h.payload[4..12].try_into().unwrap()) as usize;
    let mut body = Vec::with_capacity(size);
    while body.len() < size {
        let f = read_frame(r);
        assert_eq!(f.kind, 3, "body frame");
        body.extend_from_slice(&f.payload);
    }
    assert_eq!(body.len(), size, "body longer than its header said");
    Some(Delivered { tag, body })
}

/// Publishes `body` to `queue` as fast as the socket takes it until `stop`; returns how many
/// whole messages went out. Stops mid-message if need be (the socket is then dropped).
fn fast_publisher(
    b: &Broker,
    queue: String,
    body: usize,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    let raw = Raw::connect(b, RAW_FRAME_MAX, 0, &[]);
    std::thread::spawn(move || {
        let mut s = raw.s;
        s.set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let one = publish_bytes(&queue, &vec![b'f'; body], RAW_FRAME_MAX);
        let batch = one.repeat(1000);
        let mut written = 0u64;
        // bounded: the test stops it after seconds; this is a backstop
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let at = (written % batch.len() as u64) as usize;
            match s.write(&batch[at..]) {
                Ok(n) => written += n as u64,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("fast publisher: {e}"),
            }
        }
        written / one.len() as u64
    })
}

/// A publisher to `queue` of `per_tick` messages every 10 ms until `stop`; returns how many
/// it published and the longest any write call blocked.
fn steady_publisher(
    b: &Broker,
    queue: String,
    per_tick: usize,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(u64, Duration)> {
    let raw = Raw::connect(b, RAW_FRAME_MAX, 0, &[]);
    std::thread::spawn(move || {
        let mut s = raw.s;
        let tick = publish_bytes(&queue, b"steady", RAW_FRAME_MAX).repeat(per_tick);
        let (mut sent, mut longest) = (0u64, Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let t = Instant::now();
            s.write_all(&tick).expect("steady publisher write");
            longest = longest.max(t.elapsed());
            sent += per_tick as u64;
            std::thread::sleep(Duration::from_millis(10));
        }
        (sent, longest)
    })
}

/// Counts deliveries of a no-ack consumer until it has `want` (read from `want` once set) or
/// 30 s pass.
fn counting_consumer(c: Raw, got: Arc<AtomicU64>, want: Arc<AtomicU64>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(1 << 16, c.s);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let w = want.load(Ordering::SeqCst);
            if w != 0 && got.load(Ordering::SeqCst) >= w {
                return;
            }
            if read_delivery(&mut r).is_some() {
                got.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
}

/// A publisher outrunning a slow consumer is paced: the broker's RSS and the queue stay
/// bounded, while a steady publisher to another queue, its consumer and a canary go on as
/// before.
///
/// Without flow control the fast publisher's queue grows by about a million messages a second
/// (coney before issue 11: gigabytes within seconds).
#[test]
fn fast_publisher_is_paced_by_a_slow_consumer_and_no_one_else_is() {
    const RUN: Duration = Duration::from_secs(8);
    const BODY_BYTES: usize = 64;
    /// Queue depth allowed: the 16 MiB flow mark is about 66,000 such messages; past it, one
    /// read chunk (about 500 messages) when the pause begins and at each forced resume.
    const DEPTH_MAX: u32 = 80_000;
    /// RSS growth allowed: the queue up to its mark with its bookkeeping, buffers.
    const RSS_GROWTH_MAX_BYTES: u64 = 64 * MIB;
    /// The steady publisher: 20 messages every 10 ms.
    const STEADY_PER_TICK: usize = 20;

    let b = Broker::start();
    let (fast_q, steady_q) = (unique("flow-fast"), unique("flow-steady"));
    let mut admin = Raw::connect(&b, RAW_FRAME_MAX, 0, &[]);
    admin.declare_queue(&fast_q, 0);
    admin.declare_queue(&steady_q, 0);

    // The slow consumer: prefetch 100, acks each message, about 2,000 a second.
    let slow = raw_consumer(&b, &fast_q, 100, false);
    let stop = Arc::new(AtomicBool::new(false));
    let slow_got = Arc::new(AtomicU64::new(0));
    let slow_thread = {
        let (stop, got) = (stop.clone(), slow_got.clone());
        std::thread::spawn(move || {
            let mut w = slow.s.try_clone().unwrap();
            let mut r = BufReader::with_capacity(1 << 16, slow.s);
            while !stop.load(Ordering::SeqCst) {
                let Some(d) = read_delivery(&mut r) else {
                    continue;
                };
                w.write_all(&basic_ack(1, d.tag, false)).unwrap();
                if got.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let steady_got = Arc::new(AtomicU64::new(0));
    let steady_want = Arc::new(AtomicU64::new(0));
    let steady_consumer = counting_consumer(
        raw_consumer(&b, &steady_q, 0, true),
        steady_got.clone(),
        steady_want.clone(),
    );

    let canary = Canary::start(&b);
    let pid = b.pid();
    let rss_before = pid.and_then(proc_rss_bytes);
    let sampler = pid.map(RssSampler::start);
    let fast = fast_publisher(&b, fast_q.clone(), BODY_BYTES, stop.clone());
    let steady = steady_publisher(&b, steady_q.clone(), STEADY_PER_TICK, stop.clone());
    let started = Instant::now();
    while started.elapsed() < RUN {
        canary.check();
        std::thread::sleep(Duration::from_millis(50));
    }
    // The depth while the slow consumer is still there: once it goes, nothing paces the
    // publisher any more (a queue without consumers is left to the memory alarm).
    let rt = current_thread_runtime();
    let (depth, _) = rt.block_on(async {
        let (conn, ch) = b.connect_channel().await;
        let counts = ch.queue_counts(&fast_q).await;
        conn.close().await;
        counts
    });
    stop.store(true, Ordering::SeqCst);
    let fast_sent = fast.join().expect("fast publisher");
    let (steady_sent, steady_longest) = steady.join().expect("steady publisher");
    steady_want.store(steady_sent, Ordering::SeqCst);
    steady_consumer.join().expect("steady consumer");
    slow_thread.join().expect("slow consumer");

    let rss = rss_before.zip(sampler.map(RssSampler::max));
    eprintln!(
        "flow: fast publisher sent {fast_sent}, slow consumer took {}, queue depth {depth}; \
         steady publisher sent {steady_sent} (longest write {steady_longest:?}), its consumer \
         got {}; RSS {:?} MiB (before, max)",
        slow_got.load(Ordering::SeqCst),
        steady_got.load(Ordering::SeqCst),
        rss.map(|(a, m)| (a / MIB, m / MIB))
    );
    assert!(
        depth <= DEPTH_MAX,
        "the fast publisher's queue reached {depth} messages"
    );
    if let Some((before, max)) = rss {
        assert!(
            max.saturating_sub(before) <= RSS_GROWTH_MAX_BYTES,
            "RSS grew by {} MiB",
            (max - before) / MIB
        );
    }
    // The steady publisher kept its schedule (its writes never waited on the broker for
    // long) and everything it sent arrived.
    let ticks = RUN.as_millis() as u64 / 10;
    assert!(
        steady_sent >= ticks * STEADY_PER_TICK as u64 / 2,
        "the steady publisher got only {steady_sent} messages out"
    );
    assert!(
        steady_longest < Duration::from_millis(500),
        "a steady publisher's write blocked for {steady_longest:?}"
    );
    assert_eq!(steady_got.load(Ordering::SeqCst), steady_sent);
    canary.finish();
}

/// A paced publisher shows RabbitMQ's connection state "flow" in the management API's
/// /api/connections while its consumer's connection stays "running".
#[test]
fn a_paced_publisher_is_listed_in_state_flow() {
    const BODY_BYTES: usize = 64 * 1024;
    const LIMIT: Duration = Duration::from_secs(20);
    let http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let http = format!("127.0.0.1:{http_port}");
    let b = Broker::start_with(&["--management-listen", &http]);
    if b.is_external() {
        eprintln!("skipped: needs the management listener of a private coney");
        return;
    }
    let queue = unique("flow-state");
    let mut admin = Raw::connect(&b, RAW_FRAME_MAX, 0, &[]);
    admin.declare_queue(&queue, 0);
    // A consumer that takes ten messages and acks none: the queue only grows.
    let consumer = raw_consumer(&b, &queue, 10, false);
    let consumer_port = consumer.s.local_addr().unwrap().port();
    let publisher = Raw::connect(&b, RAW_FRAME_MAX, 0, &[]);
    let publisher_port = publisher.s.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut s = publisher.s;
        std::thread::spawn(move || {
            s.set_write_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let one = publish_bytes(&queue, &vec![b'f'; BODY_BYTES], RAW_FRAME_MAX);
            let mut at = 0;
            let deadline = Instant::now() + LIMIT;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match s.write(&one[at..]) {
                    Ok(n) => at = (at + n) % one.len(),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => panic!("publisher: {e}"),
                }
            }
            s
        })
    };
    let state_of = |conns: &serde_json::Value, port: u16| {
        conns.as_array().and_then(|a| {
            a.iter()
                .find(|c| c["peer_port"].as_u64() == Some(port.into()))
                .and_then(|c| c["state"].as_str().map(str::to_owned))
        })
    };
    let started = Instant::now();
    let mut seen = (None, None);
    while started.elapsed() < LIMIT {
        let conns = http_get_json(&http, "/api/connections");
        seen = (
            state_of(&conns, publisher_port),
            state_of(&conns, consumer_port),
        );
        if seen.0.as_deref() == Some("flow") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    drop(writer.join().expect("publisher"));
    assert_eq!(seen.0.as_deref(), Some("flow"), "the publisher's state");
    assert_eq!(seen.1.as_deref(), Some("running"), "the consumer's state");
    drop(consumer);
}

/// GET `path` from the management listener at `addr` as guest (HTTP/1.0, so the body runs to
/// the end of the stream); the body as JSON.
fn http_get_json(addr: &str, path: &str) -> serde_json::Value {
    let mut s = TcpStream::connect(addr).expect("management listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).expect("response");
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the head");
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    serde_json::from_slice(&response[at + 4..]).expect("JSON")
}

/// A connection that publishes into the queue it consumes with manual acks is never paused
/// for that queue: its acks are what drains it, so 200,000 messages (several times the flow
/// mark, queued before the first ack) go round through one socket, publishes and acks
/// interleaved, without stalling. (Paused, it would be read one chunk a second.)
#[test]
fn a_connection_feeding_its_own_queue_with_acks_never_stalls() {
    const COUNT: u64 = 200_000;
    const BODY_BYTES: usize = 200;
    /// About the 16 MiB flow mark in such messages (each costs the queue ~390 bytes).
    const FLOW_MARK_MESSAGES: u64 = 43_000;
    const LIMIT: Duration = Duration::from_secs(60);
    let b = Broker::start();
    let queue = unique("flow-self");
    let mut c = Raw::connect(&b, RAW_FRAME_MAX, 0, &[]);
    c.declare_queue(&queue, 0);
    c.s.write_all(&basic_qos_prefetch(1, 500)).unwrap();
    assert_eq!(read_method(&mut c.s).class_method(), (60, 11), "qos-ok");
    c.s.write_all(&basic_consume(1, &queue, false)).unwrap();
    assert_eq!(read_method(&mut c.s).class_method(), (60, 21), "consume-ok");

    // One socket, two writers (publishes and acks), each writing whole frames under a lock.
    let out = Arc::new(Mutex::new(c.s.try_clone().unwrap()));
    let publisher = {
        let out = out.clone();
        let queue = queue.clone();
        std::thread::spawn(move || {
            let batch = publish_bytes(&queue, &[b'p'; BODY_BYTES], RAW_FRAME_MAX).repeat(1000);
            for _ in 0..COUNT / 1000 {
                out.lock().unwrap().write_all(&batch).expect("publish");
            }
        })
    };
    // Nothing is read for a second: the publishes pile up in the queue, far past its flow
    // mark, before the acks that drain it start to flow.
    std::thread::sleep(Duration::from_secs(1));
    let rt = current_thread_runtime();
    let (ready, _) = rt.block_on(async {
        let (conn, ch) = b.connect_channel().await;
        let counts = ch.queue_counts(&queue).await;
        conn.close().await;
        counts
    });
    assert!(
        ready as u64 > FLOW_MARK_MESSAGES,
        "only {ready} messages queued: the flow mark was never reached"
    );
    let started = Instant::now();
    let mut r = BufReader::with_capacity(1 << 16, c.s);
    let mut got = 0u64;
    while got < COUNT {
        assert!(
            started.elapsed() < LIMIT,
            "only {got} of {COUNT} came round in {LIMIT:?}: the connection stalled"
        );
        let Some(d) = read_delivery(&mut r) else {
            continue;
        };
        assert_eq!(d.body.len(), BODY_BYTES);
        got += 1;
        if got.is_multiple_of(50) {
            out.lock()
                .unwrap()
                .write_all(&basic_ack(1, d.tag, true))
                .expect("ack");
        }
    }
    publisher.join().expect("publisher");
    eprintln!(
        "{COUNT} messages through one connection in {:?}",
        started.elapsed()
    );
}

/// 16 MiB bodies (written from the message's own buffer, not copied) arrive byte for byte
/// through a consumer that reads slowly in small pieces, so the broker's writes end at every
/// possible place; small deliveries from another queue interleave with them on the same
/// channel, each delivery's frames together.
#[test]
fn sixteen_mib_bodies_arrive_intact_through_a_slow_reader() {
    const BIG_BYTES: usize = 16 * 1024 * 1024;
    const BIG_COUNT: usize = 4;
    const SMALL_COUNT: usize = 200;
    let b = Broker::start();
    let (big_q, small_q) = (unique("big"), unique("small"));
    let mut p = Raw::connect(&b, RAW_FRAME_MAX, 0, &[]);
    p.declare_queue(&big_q, 0);
    p.declare_queue(&small_q, 0);
    // One consumer connection, both queues on channel 1, no-ack; it reads 16 KiB at a time
    // with a pause after each 1 MiB.
    let mut c = raw_consumer(&b, &big_q, 0, true);
    c.s.write_all(&basic_consume(1, &small_q, true)).unwrap();
    assert_eq!(read_method(&mut c.s).class_method(), (60, 21), "consume-ok");
    let pattern = |i: usize, j: usize| (j.wrapping_mul(31) ^ (j >> 11) ^ i) as u8;
    let publisher = std::thread::spawn(move || {
        p.s.set_write_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        for i in 0..BIG_COUNT {
            let body: Vec<u8> = (0..BIG_BYTES).map(|j| pattern(i, j)).collect();
            p.s.write_all(&publish_bytes(&big_q, &body, RAW_FRAME_MAX))
                .unwrap();
            for k in 0..SMALL_COUNT / BIG_COUNT {
                let small = format!("small {i} {k}");
                p.s.write_all(&publish_bytes(&small_q, small.as_bytes(), RAW_FRAME_MAX))
                    .unwrap();
            }
        }
        p
    });
    let mut r = BufReader::new(SlowReader {
        s: c.s,
        since_pause: 0,
    });
    let (mut big, mut small) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while big < BIG_COUNT || small < SMALL_COUNT {
        assert!(
            Instant::now() < deadline,
            "{big} big, {small} small by the deadline"
        );
        let Some(d) = read_delivery(&mut r) else {
            continue;
        };
        if d.body.len() == BIG_BYTES {
            let i = big;
            let bad = (0..BIG_BYTES).find(|&j| d.body[j] != pattern(i, j));
            assert_eq!(bad, None, "big body {i} differs at this offset");
            big += 1;
        } else {
            let text = String::from_utf8(d.body).expect("small body");
            assert!(text.starts_with("small "), "unexpected body {text:?}");
            small += 1;
        }
    }
    publisher.join().expect("publisher");
}

/// A socket read in pieces of at most 16 KiB, pausing 5 ms after each MiB.
struct SlowReader {
    s: TcpStream,
    since_pause: usize,
}

impl Read for SlowReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since_pause >= 1 << 20 {
            std::thread::sleep(Duration::from_millis(5));
            self.since_pause = 0;
        }
        let n = buf.len().min(16 * 1024);
        let got = self.s.read(&mut buf[..n])?;
        self.since_pause += got;
        Ok(got)
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
