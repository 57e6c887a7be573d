//! The two halves of a load run. A producer writes prebuilt publish frames in large batches
//! (patching only the timestamp) from one thread and reads confirms, returns and closes on a
//! second; a consumer reads large chunks, walks the frames in place, records latency and
//! batches its acks into one write per read. Shared counters are updated once per batch.

use crate::client::{
    check_close, is_timeout, Client, ClientError, Control, FrameReader, Result, CALL_TIMEOUT_SECS,
    CHANNEL, CLOSE_TIMEOUT_MS, POLL_INTERVAL_MS,
};
use crate::histogram::Histogram;
use crate::run::RunConfig;
use crate::stream::Stream;
use crate::topology;
use coney::protocol::constants::CLASS_BASIC;
use coney::protocol::frame::{self, FrameKind};
use coney::protocol::method::{
    BasicAck, BasicConsume, BasicPublish, BasicQos, BasicReject, ConfirmSelect, ConnectionClose,
    Method,
};
use coney::protocol::properties::{BasicProperties, ContentHeader, DELIVERY_MODE_PERSISTENT};
use coney::protocol::wire::Writer;
use coney::protocol::{FieldTable, ReplyCode};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes of publish frames handed to one write syscall (fewer syscalls, still interleavable).
const WRITE_BATCH_BYTES: usize = 128 * 1024;
/// Messages per write at most, so confirm windows and rate limits stay fine-grained.
const MESSAGES_PER_WRITE_MAX: usize = 2048;
/// Marks a body as ours: bytes 8..12 of every body of at least `STAMP_BYTES`.
const STAMP_MAGIC: &[u8; 4] = b"CNYP";
/// Timestamp (8) + magic (4) + producer id (4): bodies shorter than this carry no latency.
pub const STAMP_BYTES: usize = 16;
/// Ack write buffer kept across reads.
const ACK_BUFFER_BYTES: usize = 64 * 1024;

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on the machine.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// State shared by every thread of a run and the reporter.
#[derive(Default)]
pub struct Shared {
    /// Producers may start publishing.
    pub go: AtomicBool,
    pub stop: AtomicBool,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub returned: AtomicU64,
    /// `monotonic_ns` when the last batch was fully written / the last delivery was read:
    /// where a counted run's measured window ends.
    pub last_publish_ns: AtomicU64,
    pub last_receive_ns: AtomicU64,
    pub ready: AtomicUsize,
    pub producers_done: AtomicUsize,
    pub consumers_done: AtomicUsize,
    pub error: Mutex<Option<String>>,
    /// Latency samples in ns per consumer since the reporter last took them.
    pub latency: Vec<Mutex<Histogram>>,
}

impl Shared {
    pub fn new(consumers: usize) -> Self {
        Shared {
            latency: (0..consumers)
                .map(|_| Mutex::new(Histogram::new()))
                .collect(),
            ..Default::default()
        }
    }

    /// Records the first error of the run and stops everything.
    pub fn fail(&self, who: &str, e: ClientError) {
        if let Ok(mut slot) = self.error.lock() {
            if slot.is_none() {
                *slot = Some(format!("{who}: {e}"));
            }
        }
        self.stop.store(true, SeqCst);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }
}

/// One message's frames with the offset of its timestamp.
struct Template {
    bytes: Vec<u8>,
    stamp_at: usize,
}

fn build_template(
    cfg: &RunConfig,
    frame_max: u32,
    key: &str,
    priority: Option<u8>,
    producer: u32,
) -> Template {
    let mut out = Vec::new();
    let p = BasicPublish {
        exchange: cfg.exchange.as_bytes(),
        routing_key: key.as_bytes(),
        mandatory: cfg.mandatory,
        ..Default::default()
    };
    frame::write_method(&mut out, CHANNEL, &Method::BasicPublish(p));
    let props = BasicProperties {
        delivery_mode: cfg.persistent.then_some(DELIVERY_MODE_PERSISTENT),
        priority,
        ..Default::default()
    };
    let mut raw = Vec::new();
    props.encode(&mut Writer::new(&mut raw));
    frame::write_content_header(&mut out, CHANNEL, CLASS_BASIC, cfg.body_bytes as u64, &raw);
    let mut body = vec![0u8; cfg.body_bytes];
    if body.len() >= STAMP_BYTES {
        body[8..12].copy_from_slice(STAMP_MAGIC);
        body[12..16].copy_from_slice(&producer.to_be_bytes());
    }
    // The first body frame's payload starts after its 7-byte header.
    let stamp_at = out.len() + 7;
    frame::write_body(&mut out, CHANNEL, &body, frame_max);
    Template {
        bytes: out,
        stamp_at,
    }
}

/// The bytes of up to `MESSAGES_PER_WRITE_MAX` messages, rebuilt only for random keys.
struct Batcher {
    templates: Vec<Template>,
    stamped: bool,
    /// For one routing key: the template repeated, built once; only stamps are patched.
    prebuilt: Vec<u8>,
    per_write: usize,
    scratch: Vec<u8>,
    rng: u64,
}

impl Batcher {
    fn new(cfg: &RunConfig, frame_max: u32, producer: u32) -> Self {
        let keys = if cfg.routing_keys_random > 0 {
            topology::topic_routing_keys(cfg.routing_keys_random)
        } else {
            vec![topology::routing_key(cfg)]
        };
        // One template per key and priority; a batch picks among them at random.
        let priorities: Vec<Option<u8>> = match cfg.max_priority {
            Some(max) => (0..=max).map(Some).collect(),
            None => vec![None],
        };
        let templates: Vec<Template> = keys
            .iter()
            .flat_map(|k| priorities.iter().map(move |p| (k, *p)))
            .map(|(k, p)| build_template(cfg, frame_max, k, p, producer))
            .collect();
        let one = templates[0].bytes.len();
        let per_write = (WRITE_BATCH_BYTES / one).clamp(1, MESSAGES_PER_WRITE_MAX);
        let prebuilt = if templates.len() == 1 {
            templates[0].bytes.repeat(per_write)
        } else {
            Vec::new()
        };
        Batcher {
            templates,
            stamped: cfg.body_bytes >= STAMP_BYTES,
            prebuilt,
            per_write,
            scratch: Vec::with_capacity(WRITE_BATCH_BYTES * 2),
            rng: 0x9e37_79b9_7f4a_7c15 ^ ((producer as u64 + 1) << 17),
        }
    }

    fn next_random(&mut self) -> usize {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x % self.templates.len() as u64) as usize
    }

    /// `n` messages stamped with `now_ns`.
    fn batch(&mut self, n: usize, now_ns: u64) -> &[u8] {
        let stamp = now_ns.to_be_bytes();
        if self.templates.len() == 1 {
            let t = &self.templates[0];
            let len = t.bytes.len();
            if self.stamped {
                for i in 0..n {
                    let at = i * len + t.stamp_at;
                    self.prebuilt[at..at + 8].copy_from_slice(&stamp);
                }
            }
            return &self.prebuilt[..n * len];
        }
        self.scratch.clear();
        for _ in 0..n {
            let i = self.next_random();
            let t = &self.templates[i];
            let at = self.scratch.len() + t.stamp_at;
            self.scratch.extend_from_slice(&t.bytes);
            if self.stamped {
                self.scratch[at..at + 8].copy_from_slice(&stamp);
            }
        }
        &self.scratch
    }
}

/// Writes all of `buf`. If the run stops while the socket is full (a broker applying flow
/// control), keeps trying for `CLOSE_TIMEOUT_MS` so the stream does not end mid-frame; returns
/// false if it still could not finish, and the caller must then drop the socket unclosed.
fn write_whole(s: &mut Stream, mut buf: &[u8], shared: &Shared) -> Result<bool> {
    let mut stop_seen: Option<Instant> = None;
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(ClientError::Protocol("socket closed while writing".into())),
            Ok(n) => buf = &buf[n..],
            Err(e) if is_timeout(&e) => {
                if shared.stopping() {
                    let since = *stop_seen.get_or_insert_with(Instant::now);
                    if since.elapsed() >= Duration::from_millis(CLOSE_TIMEOUT_MS) {
                        return Ok(false);
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Publisher confirms can arrive singly and out of order; this counts tags confirmed so far.
#[derive(Default)]
struct ConfirmTracker {
    /// Every tag up to here is confirmed.
    floor: u64,
    /// Tags floor+1, floor+2, ...: confirmed or not.
    above: VecDeque<bool>,
    singles_above: u64,
}

impl ConfirmTracker {
    fn confirm(&mut self, tag: u64, multiple: bool) {
        if tag <= self.floor {
            return;
        }
        let idx = (tag - self.floor - 1) as usize;
        if self.above.len() <= idx {
            self.above.resize(idx + 1, false);
        }
        if multiple {
            for i in 0..=idx {
                if !self.above[i] {
                    self.above[i] = true;
                    self.singles_above += 1;
                }
            }
        } else if !self.above[idx] {
            self.above[idx] = true;
            self.singles_above += 1;
        }
        while self.above.front() == Some(&true) {
            self.above.pop_front();
            self.floor += 1;
            self.singles_above -= 1;
        }
    }

    fn confirmed(&self) -> u64 {
        self.floor + self.singles_above
    }
}

/// Reads what the server sends a producer: confirms, returns, blocked, closes.
fn producer_reader(
    mut stream: Stream,
    mut reader: FrameReader,
    shared: Arc<Shared>,
    writer: thread::Thread,
    closed: Arc<AtomicBool>,
    mine: Arc<AtomicU64>,
    id: usize,
) {
    let who = format!("producer {id}");
    let mut tracker = ConfirmTracker::default();
    let mut ignored = Vec::new();
    let mut stop_seen: Option<Instant> = None;
    loop {
        if shared.stopping() {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(CLOSE_TIMEOUT_MS + POLL_INTERVAL_MS) {
                return;
            }
        }
        if let Err(e) = reader.fill(&mut stream) {
            // After the stop, a broker may drop a connection we closed or abandoned: not news.
            if !shared.stopping() && !closed.load(SeqCst) {
                shared.fail(&who, e.into());
            }
            return;
        }
        let before = tracker.confirmed();
        let mut close_ok = false;
        loop {
            let f = match reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) if shared.stopping() => return drop(e),
                Err(e) => return shared.fail(&who, e),
            };
            if f.kind != FrameKind::Method {
                continue; // content of a basic.return
            }
            let m = match Method::decode(f.payload) {
                Ok(m) => m,
                Err(e) => {
                    return shared.fail(&who, ClientError::Protocol(format!("bad method: {e:?}")))
                }
            };
            match m {
                Method::BasicAck(a) => tracker.confirm(a.delivery_tag, a.multiple),
                Method::BasicNack(n) => {
                    let was = tracker.confirmed();
                    tracker.confirm(n.delivery_tag, n.multiple);
                    shared.nacked.fetch_add(tracker.confirmed() - was, Relaxed);
                }
                Method::BasicReturn(_) => {
                    shared.returned.fetch_add(1, Relaxed);
                }
                Method::ConnectionCloseOk(_) => {
                    close_ok = true;
                    break;
                }
                Method::ConnectionBlocked(b) => eprintln!(
                    "coney-perf: {who}: broker blocked publishing: {}",
                    String::from_utf8_lossy(b.reason)
                ),
                other => {
                    // The close-ok is not sent from here: the writer thread owns the socket's
                    // output, and the run is over anyway.
                    if let Control::Closed(e) = check_close(&mut ignored, f.channel, &other) {
                        if !shared.stopping() {
                            shared.fail(&who, e);
                        }
                        return;
                    }
                }
            }
        }
        let after = tracker.confirmed();
        if after != before {
            shared.confirmed.fetch_add(after - before, Relaxed);
            mine.fetch_add(after - before, Release);
            writer.unpark();
        }
        if close_ok {
            return;
        }
    }
}

/// Connects a producer, waits for the start signal, publishes until told to stop.
pub fn run_producer(cfg: Arc<RunConfig>, shared: Arc<Shared>, id: usize) {
    let who = format!("producer {id}");
    if let Err(e) = producer(&cfg, &shared, id) {
        shared.fail(&who, e);
    }
    shared.producers_done.fetch_add(1, SeqCst);
}

fn producer(cfg: &RunConfig, shared: &Arc<Shared>, id: usize) -> Result<()> {
    let mut c = Client::connect(&cfg.uri, Duration::from_secs(CALL_TIMEOUT_SECS))?;
    if cfg.confirm_window > 0 {
        c.call(
            CHANNEL,
            &Method::ConfirmSelect(ConfirmSelect { no_wait: false }),
            "confirm.select-ok",
            |m| matches!(m, Method::ConfirmSelectOk(_)).then_some(()),
        )?;
    }
    let poll = Some(Duration::from_millis(POLL_INTERVAL_MS));
    c.stream.set_read_timeout(poll)?;
    c.stream.set_write_timeout(poll)?;
    let mut batcher = Batcher::new(cfg, c.frame_max, id as u32);
    let closed = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicU64::new(0));
    let reader = {
        let stream = c.stream.try_clone()?;
        let frames = std::mem::replace(&mut c.reader, FrameReader::new(c.frame_max));
        let (shared, closed, mine) = (shared.clone(), closed.clone(), confirmed.clone());
        let me = thread::current();
        thread::Builder::new()
            .name(format!("producer-{id}-reader"))
            .spawn(move || producer_reader(stream, frames, shared, me, closed, mine, id))?
    };
    shared.ready.fetch_add(1, SeqCst);
    while !shared.go.load(Acquire) {
        if shared.stopping() {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let result = publish_loop(cfg, shared, &mut c.stream, &mut batcher, &confirmed);
    closed.store(true, SeqCst);
    if !matches!(result, Ok(true)) {
        // Mid-frame or broken: a close frame now would be garbage to the broker.
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
        let _ = reader.join();
        return result.map(|_| ());
    }
    // A clean close lets the broker free the connection at once; the reader sees close-ok.
    let close = ConnectionClose {
        reply_code: ReplyCode::Success.code(),
        reply_text: b"Goodbye",
        ..Default::default()
    };
    let mut out = Vec::new();
    frame::write_method(&mut out, 0, &Method::ConnectionClose(close));
    let _ = c
        .stream
        .set_write_timeout(Some(Duration::from_millis(CLOSE_TIMEOUT_MS)));
    let _ = c.stream.write_all(&out);
    let _ = reader.join();
    Ok(())
}

fn publish_loop(
    cfg: &RunConfig,
    shared: &Shared,
    stream: &mut Stream,
    batcher: &mut Batcher,
    confirmed: &AtomicU64,
) -> Result<bool> {
    let start = Instant::now();
    let window = cfg.confirm_window as u64;
    let limit = cfg.producer_count.unwrap_or(u64::MAX);
    let mut sent = 0u64;
    while !shared.stopping() && sent < limit {
        let mut n = batcher.per_write as u64;
        n = n.min(limit - sent);
        if window > 0 {
            let outstanding = sent.saturating_sub(confirmed.load(Acquire));
            if outstanding >= window {
                thread::park_timeout(Duration::from_millis(10));
                continue;
            }
            n = n.min(window - outstanding);
        }
        if cfg.rate_per_producer > 0.0 {
            let elapsed = start.elapsed().as_secs_f64();
            let due = (elapsed * cfg.rate_per_producer) as u64 + 1;
            if due <= sent {
                let next = sent as f64 / cfg.rate_per_producer;
                thread::sleep(Duration::from_secs_f64((next - elapsed).max(0.0)));
                continue;
            }
            n = n.min(due - sent);
        }
        let bytes = batcher.batch(n as usize, monotonic_ns());
        if !write_whole(stream, bytes, shared)? {
            return Ok(false);
        }
        sent += n;
        shared.sent.fetch_add(n, Relaxed);
        shared.last_publish_ns.fetch_max(monotonic_ns(), Relaxed);
    }
    if window > 0 && sent >= limit {
        // A counted run ends with every confirm in, or the count of confirms would be short.
        let deadline = Instant::now() + Duration::from_millis(CLOSE_TIMEOUT_MS);
        while confirmed.load(Acquire) < sent && Instant::now() < deadline && !shared.stopping() {
            thread::park_timeout(Duration::from_millis(10));
        }
    }
    Ok(true)
}

/// Where a consumer is inside the current delivery.
enum Content {
    Idle,
    Header {
        tag: u64,
    },
    Body {
        tag: u64,
        remaining: u64,
        first: bool,
        /// A first delivery in a retry run: rejected once complete.
        retry: bool,
    },
}

/// Consumes from `queue` until told to stop, or until `-D` messages.
pub fn run_consumer(cfg: Arc<RunConfig>, shared: Arc<Shared>, id: usize, queue: String) {
    let who = format!("consumer {id} (queue {queue})");
    if let Err(e) = consumer(&cfg, &shared, id, &queue) {
        shared.fail(&who, e);
    }
    shared.consumers_done.fetch_add(1, SeqCst);
}

fn consumer(cfg: &RunConfig, shared: &Shared, id: usize, queue: &str) -> Result<()> {
    let mut c = Client::connect(&cfg.uri, Duration::from_secs(CALL_TIMEOUT_SECS))?;
    if cfg.prefetch > 0 {
        let q = BasicQos {
            prefetch_count: cfg.prefetch,
            ..Default::default()
        };
        c.call(CHANNEL, &Method::BasicQos(q), "basic.qos-ok", |m| {
            matches!(m, Method::BasicQosOk(_)).then_some(())
        })?;
    }
    let consume = BasicConsume {
        queue: queue.as_bytes(),
        no_ack: cfg.autoack,
        arguments: FieldTable::EMPTY,
        ..Default::default()
    };
    c.call(
        CHANNEL,
        &Method::BasicConsume(consume),
        "basic.consume-ok",
        |m| matches!(m, Method::BasicConsumeOk(_)).then_some(()),
    )?;
    c.stream
        .set_read_timeout(Some(Duration::from_millis(POLL_INTERVAL_MS)))?;
    shared.ready.fetch_add(1, SeqCst);
    let result = consume_loop(cfg, shared, &mut c, id);
    if result.is_ok() {
        c.close();
    }
    result
}

/// What a content header starts: the body of delivery `tag`. In a retry run a first delivery
/// has no headers (it is rejected once complete); a retried one has x-death.
fn body_after(cfg: &RunConfig, tag: u64, payload: &[u8]) -> Result<Content> {
    let h = ContentHeader::decode(payload)
        .map_err(|e| ClientError::Protocol(format!("bad content header: {e:?}")))?;
    Ok(Content::Body {
        tag,
        remaining: h.body_size,
        first: true,
        retry: cfg.retry_ttl_ms.is_some() && !BasicProperties::has_headers(h.properties_raw),
    })
}

/// A first delivery of a retry run goes to the retry queue: rejected, dead-lettered there.
fn reject(acks: &mut Vec<u8>, delivery_tag: u64) {
    let r = BasicReject {
        delivery_tag,
        requeue: false,
    };
    frame::write_method(acks, CHANNEL, &Method::BasicReject(r));
}

fn consume_loop(cfg: &RunConfig, shared: &Shared, c: &mut Client, id: usize) -> Result<()> {
    let limit = cfg.consumer_count.unwrap_or(u64::MAX);
    // Ack every message, or every `multi_ack_every` with multiple=true.
    let ack_every = cfg.multi_ack_every.max(1) as u64;
    let mut content = Content::Idle;
    let mut received = 0u64;
    let mut unacked = 0u64;
    let mut last_tag = 0u64;
    let mut acks: Vec<u8> = Vec::with_capacity(ACK_BUFFER_BYTES);
    while !shared.stopping() && received < limit {
        if c.reader.fill(&mut c.stream)? == 0 {
            continue;
        }
        let now = monotonic_ns();
        let before = received;
        let mut hist = shared.latency[id]
            .lock()
            .map_err(|_| ClientError::Protocol("latency lock poisoned".into()))?;
        while let Some(f) = c.reader.next_frame()? {
            match (f.kind, &mut content) {
                (FrameKind::Method, Content::Idle) => {
                    let m = Method::decode(f.payload).map_err(|e| {
                        ClientError::Protocol(format!("bad method from server: {e:?}"))
                    })?;
                    match m {
                        Method::BasicDeliver(d) => {
                            content = Content::Header {
                                tag: d.delivery_tag,
                            }
                        }
                        Method::BasicCancel(_) => {
                            return Err(ClientError::Protocol(
                                "the broker cancelled the consumer (queue deleted?)".into(),
                            ))
                        }
                        other => {
                            if let Control::Closed(e) = check_close(&mut acks, f.channel, &other) {
                                let _ = c.stream.write_all(&acks);
                                return Err(e);
                            }
                        }
                    }
                }
                (FrameKind::Header, Content::Header { tag }) => {
                    content = body_after(cfg, *tag, f.payload)?;
                }
                (
                    FrameKind::Body,
                    Content::Body {
                        remaining,
                        first,
                        retry,
                        ..
                    },
                ) => {
                    if *first
                        && !*retry
                        && f.payload.len() >= STAMP_BYTES
                        && &f.payload[8..12] == STAMP_MAGIC
                    {
                        let sent_ns =
                            u64::from_be_bytes(f.payload[..8].try_into().unwrap_or([0; 8]));
                        hist.record(now.saturating_sub(sent_ns));
                    }
                    *first = false;
                    *remaining = remaining.saturating_sub(f.payload.len() as u64);
                }
                (FrameKind::Heartbeat, _) => {}
                (kind, _) => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected {kind:?} frame in a delivery"
                    )))
                }
            }
            if let Content::Body {
                tag,
                remaining: 0,
                retry: true,
                ..
            } = content
            {
                content = Content::Idle;
                reject(&mut acks, tag);
                continue;
            }
            if let Content::Body {
                tag, remaining: 0, ..
            } = content
            {
                content = Content::Idle;
                received += 1;
                if !cfg.autoack {
                    last_tag = tag;
                    unacked += 1;
                    if unacked >= ack_every {
                        let a = BasicAck {
                            delivery_tag: tag,
                            multiple: ack_every > 1,
                        };
                        frame::write_method(&mut acks, CHANNEL, &Method::BasicAck(a));
                        unacked = 0;
                    }
                }
            }
        }
        drop(hist);
        if received >= limit && unacked > 0 {
            let a = BasicAck {
                delivery_tag: last_tag,
                multiple: true,
            };
            frame::write_method(&mut acks, CHANNEL, &Method::BasicAck(a));
        }
        if received != before {
            shared.received.fetch_add(received - before, Relaxed);
            shared.last_receive_ns.fetch_max(now, Relaxed);
        }
        if !acks.is_empty() {
            c.stream.write_all(&acks)?;
            acks.clear();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coney::protocol::frame::{parse_frame, Parsed};

    #[test]
    fn confirms_count_singles_out_of_order_and_multiples() {
        let mut t = ConfirmTracker::default();
        t.confirm(2, false);
        assert_eq!(t.confirmed(), 1);
        t.confirm(1, false);
        assert_eq!((t.confirmed(), t.floor), (2, 2));
        t.confirm(5, false);
        t.confirm(4, true);
        assert_eq!((t.confirmed(), t.floor), (5, 5));
        t.confirm(3, true);
        assert_eq!(t.confirmed(), 5);
    }

    #[test]
    fn batches_are_valid_frames_with_stamps() {
        let cfg = RunConfig {
            body_bytes: 200_000,
            persistent: true,
            ..RunConfig::default()
        };
        let mut b = Batcher::new(&cfg, 131_072, 3);
        let bytes = b.batch(1, 0x0102_0304_0506_0708).to_vec();
        let mut rest = &bytes[..];
        let mut kinds = Vec::new();
        while !rest.is_empty() {
            let Ok(Parsed::Frame { frame, len }) = parse_frame(rest, 131_072) else {
                panic!("bad frame")
            };
            if kinds.len() == 2 {
                assert_eq!(&frame.payload[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
                assert_eq!(&frame.payload[8..12], STAMP_MAGIC);
            }
            kinds.push(frame.kind);
            rest = &rest[len..];
        }
        assert_eq!(
            kinds,
            [
                FrameKind::Method,
                FrameKind::Header,
                FrameKind::Body,
                FrameKind::Body
            ]
        );
        let small = RunConfig {
            routing_keys_random: 10,
            exchange: "t".into(),
            ..RunConfig::default()
        };
        let mut b = Batcher::new(&small, 131_072, 0);
        let n = b.per_write;
        let bytes = b.batch(n, 7).to_vec();
        let mut rest = &bytes[..];
        let mut methods = 0;
        while let Ok(Parsed::Frame { frame, len }) = parse_frame(rest, 131_072) {
            methods += (frame.kind == FrameKind::Method) as usize;
            rest = &rest[len..];
        }
        assert!(rest.is_empty());
        assert_eq!(methods, n);
    }
}
