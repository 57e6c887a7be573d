//! A hostile client's raw wire: the methods the loads pipeline, written byte by byte from the
//! AMQP 0-9-1 spec (never coney's codec), field tables of any width and depth, and a client
//! that writes batches of frames and synchronises with basic.qos when it wants to know the
//! broker has caught up. Most methods are sent with no-wait so that only errors come back.
#![allow(dead_code)]

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::Broker;
use crate::wire::*;

// ---------------------------------------------------------------------------------------
// field tables
// ---------------------------------------------------------------------------------------

/// A field table: its entries' bytes (key shortstr, type octet, value) behind a 32-bit length.
pub fn table(entries: &[u8]) -> Vec<u8> {
    longstr(entries)
}

/// One table entry `key` = long string `value` ('S').
pub fn entry_str(key: &str, value: &str) -> Vec<u8> {
    let mut e = shortstr(key);
    e.push(b'S');
    e.extend_from_slice(&longstr(value));
    e
}

/// One table entry `key` = nested table ('F') with the given entries.
pub fn entry_table(key: &str, entries: &[u8]) -> Vec<u8> {
    let mut e = shortstr(key);
    e.push(b'F');
    e.extend_from_slice(&longstr(entries));
    e
}

/// `n` entries `k0`..`k{n-1}` = "v0".. (a wide table's entries).
pub fn wide_entries(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        v.extend_from_slice(&entry_str(&format!("k{i}"), &format!("v{i}")));
    }
    v
}

/// An entry `deep` holding tables nested `depth` levels below the table it is put in, the
/// innermost with `leaf` entries. Table depth 16 (coney's TABLE_DEPTH_MAX) is the deepest
/// both brokers accept.
pub fn deep_entry(depth: usize, leaf: &[u8]) -> Vec<u8> {
    let mut inner = leaf.to_vec();
    for _ in 0..depth {
        inner = entry_table("deep", &inner);
    }
    inner
}

// ---------------------------------------------------------------------------------------
// methods (class, method ids as in the spec)
// ---------------------------------------------------------------------------------------

fn ids(class: u16, method: u16) -> Vec<u8> {
    let mut p = class.to_be_bytes().to_vec();
    p.extend_from_slice(&method.to_be_bytes());
    p
}

/// exchange.declare (40,10) no-wait: ticket, name, type, bits (durable 2, auto-delete 4,
/// no-wait 16), arguments.
pub fn exchange_declare(ch: u16, name: &str, kind: &str) -> Vec<u8> {
    let mut p = ids(40, 10);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&shortstr(name));
    p.extend_from_slice(&shortstr(kind));
    p.push(16);
    p.extend_from_slice(&table(b""));
    method(ch, &p)
}

/// exchange.delete (40,20) no-wait.
pub fn exchange_delete(ch: u16, name: &str) -> Vec<u8> {
    let mut p = ids(40, 20);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&shortstr(name));
    p.push(2);
    method(ch, &p)
}

/// exchange.bind (40,30) no-wait: destination, source, key, arguments (a whole table).
pub fn exchange_bind(ch: u16, destination: &str, source: &str, key: &str, args: &[u8]) -> Vec<u8> {
    let mut p = ids(40, 30);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&shortstr(destination));
    p.extend_from_slice(&shortstr(source));
    p.extend_from_slice(&shortstr(key));
    p.push(1);
    p.extend_from_slice(args);
    method(ch, &p)
}

/// queue.declare (50,10): bits (durable 2, exclusive 4, auto-delete 8, no-wait 16), arguments
/// (a whole table).
pub fn queue_declare(ch: u16, name: &str, bits: u8, args: &[u8]) -> Vec<u8> {
    let mut p = ids(50, 10);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&shortstr(name));
    p.push(bits);
    p.extend_from_slice(args);
    method(ch, &p)
}

pub const NO_WAIT: u8 = 16;
pub const EXCLUSIVE: u8 = 4;

/// queue.bind (50,20) no-wait: queue, exchange, key, arguments (a whole table).
pub fn queue_bind(ch: u16, queue: &str, exchange: &str, key: &str, args: &[u8]) -> Vec<u8> {
    let mut p = ids(50, 20);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&shortstr(queue));
    p.extend_from_slice(&shortstr(exchange));
    p.extend_from_slice(&shortstr(key));
    p.push(1);
    p.extend_from_slice(args);
    method(ch, &p)
}

/// queue.delete (50,40) no-wait.
pub fn queue_delete(ch: u16, name: &str) -> Vec<u8> {
    let mut p = ids(50, 40);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&shortstr(name));
    p.push(4);
    method(ch, &p)
}

/// queue.purge (50,30), answered with purge-ok (50,31).
pub fn queue_purge(ch: u16, name: &str) -> Vec<u8> {
    let mut p = ids(50, 30);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&shortstr(name));
    p.push(0);
    method(ch, &p)
}

/// basic.consume (60,20) no-wait: queue, tag, bits (no-ack 2, no-wait 8), no arguments.
pub fn basic_consume(ch: u16, queue: &str, tag: &str) -> Vec<u8> {
    let mut p = ids(60, 20);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&shortstr(queue));
    p.extend_from_slice(&shortstr(tag));
    p.push(8);
    p.extend_from_slice(&table(b""));
    method(ch, &p)
}

/// basic.cancel (60,30) no-wait.
pub fn basic_cancel(ch: u16, tag: &str) -> Vec<u8> {
    let mut p = ids(60, 30);
    p.extend_from_slice(&shortstr(tag));
    p.push(1);
    method(ch, &p)
}

/// basic.publish (60,40) to `exchange` with `key`, a content header carrying `headers` (a
/// whole table, or none) and the body in frames of at most `frame_max`.
pub fn publish(
    ch: u16,
    exchange: &str,
    key: &str,
    headers: Option<&[u8]>,
    body: &[u8],
    frame_max: usize,
) -> Vec<u8> {
    let mut p = ids(60, 40);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&shortstr(exchange));
    p.extend_from_slice(&shortstr(key));
    p.push(0);
    let mut f = method(ch, &p);
    match headers {
        // property flags: headers is bit 13
        Some(h) => f.extend_from_slice(&content_header(ch, body.len() as u64, 0x2000, h)),
        None => f.extend_from_slice(&content_header(ch, body.len() as u64, 0, b"")),
    }
    for chunk in body.chunks(frame_max - 8) {
        f.extend_from_slice(&frame(3, ch, chunk));
    }
    f
}

/// channel.close (20,40) from the client: 200, "bye", no method.
pub fn channel_close(ch: u16) -> Vec<u8> {
    let mut p = ids(20, 40);
    p.extend_from_slice(&200u16.to_be_bytes());
    p.extend_from_slice(&shortstr("bye"));
    p.extend_from_slice(&[0, 0, 0, 0]);
    method(ch, &p)
}

/// connection.close (10,50) from the client.
pub fn connection_close() -> Vec<u8> {
    let mut p = ids(10, 50);
    p.extend_from_slice(&200u16.to_be_bytes());
    p.extend_from_slice(&shortstr("bye"));
    p.extend_from_slice(&[0, 0, 0, 0]);
    method(0, &p)
}

// ---------------------------------------------------------------------------------------
// the client
// ---------------------------------------------------------------------------------------

/// How long a sync may wait for the broker to work through what was pipelined (RabbitMQ
/// takes seconds for tens of thousands of bindings).
const SYNC_LIMIT: Duration = Duration::from_secs(120);

/// A raw client with channel 1 open and frame_max 131072.
pub struct Client {
    pub raw: Raw,
    /// A write did not complete in time: the broker stopped reading (RabbitMQ does when a
    /// channel is busy); the connection is abandoned.
    pub stalled: bool,
}

impl Client {
    pub fn connect(b: &Broker) -> Client {
        let raw = Raw::connect(b, RAW_FRAME_MAX, 0, &[]);
        raw.s
            .set_write_timeout(Some(SYNC_LIMIT))
            .expect("write timeout");
        // A read that times out mid-frame would lose sync: wait as long as a sync may.
        raw.s
            .set_read_timeout(Some(SYNC_LIMIT))
            .expect("read timeout");
        Client {
            raw,
            stalled: false,
        }
    }

    pub fn is_rabbitmq(&self) -> bool {
        self.raw.is_rabbitmq()
    }

    /// Writes frames (blocking while the broker does not read; bounded by the write timeout).
    /// Does nothing on a stalled client, which is being abandoned.
    pub fn send(&mut self, bytes: &[u8]) {
        if !self.stalled {
            self.raw.s.write_all(bytes).expect("hostile write");
        }
    }

    /// Writes frames unless `deadline` passes first; false (and the client is `stalled`) if
    /// it did: the broker stopped reading.
    pub fn send_before(&mut self, bytes: &[u8], deadline: Instant) -> bool {
        if self.stalled {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let s = &mut self.raw.s;
        s.set_write_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("write timeout");
        let ok = s.write_all(bytes).is_ok();
        s.set_write_timeout(Some(SYNC_LIMIT))
            .expect("write timeout");
        self.stalled = !ok;
        ok
    }

    /// basic.qos on channel 1 and waits for its qos-ok: everything sent before has been
    /// processed. Panics on a channel or connection close, naming it. Does nothing on a
    /// stalled client.
    pub fn sync(&mut self) {
        if self.stalled {
            return;
        }
        self.send(&basic_qos(1));
        self.wait_for(1, (60, 11));
    }

    /// basic.qos and waits at most `limit` for its qos-ok; false (and the client is `stalled`)
    /// if the broker was still busy with what came before.
    pub fn try_sync(&mut self, limit: Duration) -> bool {
        if self.stalled {
            return false;
        }
        self.send(&basic_qos(1));
        self.raw
            .s
            .set_read_timeout(Some(limit))
            .expect("read timeout");
        let got = self.try_wait_for(1, (60, 11)).is_some();
        self.raw
            .s
            .set_read_timeout(Some(SYNC_LIMIT))
            .expect("read timeout");
        self.stalled = !got;
        got
    }

    /// Reads frames until `(class, method)` arrives on `ch`, skipping others, bounded by
    /// [`SYNC_LIMIT`]; panics on a close.
    pub fn wait_for(&mut self, ch: u16, want: (u16, u16)) -> Frame {
        match self.try_wait_for(ch, want) {
            Some(f) => f,
            None => panic!("no {want:?} within {SYNC_LIMIT:?}"),
        }
    }

    /// `wait_for`, but None when a read times out (the socket's read timeout).
    fn try_wait_for(&mut self, ch: u16, want: (u16, u16)) -> Option<Frame> {
        let deadline = Instant::now() + SYNC_LIMIT;
        loop {
            if Instant::now() >= deadline {
                return None;
            }
            let f = match try_read_frame(&mut self.raw.s) {
                Ok(f) => f,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("waiting for {want:?}: {e}"),
            };
            if f.kind != 1 {
                continue;
            }
            let cm = f.class_method();
            if cm == (20, 40) || cm == (10, 50) {
                let p = &f.payload[4..];
                let n = p[2] as usize;
                panic!(
                    "closed while waiting for {want:?}: {} {}",
                    u16::from_be_bytes([p[0], p[1]]),
                    String::from_utf8_lossy(&p[3..3 + n])
                );
            }
            if f.channel == ch && cm == want {
                return Some(f);
            }
        }
    }

    /// The next method frame (heartbeats skipped).
    pub fn next_method(&mut self) -> Frame {
        read_method(&mut self.raw.s)
    }

    /// Opens channel `ch` and waits for open-ok.
    pub fn open_channel(&mut self, ch: u16) {
        self.send(&channel_open(ch));
        self.wait_for(ch, (20, 11));
    }

    /// connection.close and waits (bounded) for close-ok; a stalled client is just dropped.
    pub fn close(mut self) {
        if self.stalled {
            return;
        }
        self.send(&connection_close());
        self.wait_for(0, (10, 51));
    }
}

/// Keys of `n` words taken from `words` in turn, each at most 255 bytes (a shortstr).
pub fn key_of(words: &[&str], n: usize) -> String {
    let mut k = String::new();
    for i in 0..n {
        let w = words[i % words.len()];
        let extra = if k.is_empty() { w.len() } else { w.len() + 1 };
        if k.len() + extra > 255 {
            break;
        }
        if !k.is_empty() {
            k.push('.');
        }
        k.push_str(w);
    }
    k
}

/// How much longer than its load's time a write may block before the client counts as stalled.
const STALL_GRACE: Duration = Duration::from_secs(3);

/// How long a load waits for the broker to finish what it pipelined before it gives up on
/// the connection (RabbitMQ may still be routing minutes later).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(20);

/// Writes `batch` again and again for `limit` (at most `max_batches` times), then syncs;
/// returns how many batches were written and, if the broker did not catch up within
/// [`CATCH_UP_LIMIT`] (or stopped reading), says so: "" when it did.
pub fn pump(c: &mut Client, batch: &[u8], limit: Duration, max_batches: usize) -> (usize, String) {
    let deadline = Instant::now() + limit;
    let mut n = 0;
    while n < max_batches && Instant::now() < deadline {
        if !c.send_before(batch, deadline + STALL_GRACE) {
            return (n, " (the broker stopped reading)".to_owned());
        }
        n += 1;
    }
    if c.try_sync(CATCH_UP_LIMIT) {
        (n, String::new())
    } else {
        (n, format!(" (not caught up {CATCH_UP_LIMIT:?} later)"))
    }
}

/// A small deterministic pseudo-random sequence (xorshift32), so loads are repeatable.
pub struct Rng(pub u32);

impl Rng {
    pub fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// A lower-case letter.
    pub fn letter(&mut self) -> char {
        (b'a' + (self.next() % 26) as u8) as char
    }
}

/// "1,234,567": counts in the report.
pub fn count(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
