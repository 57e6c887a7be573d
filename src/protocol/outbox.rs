//! A connection's output: encoded frames waiting for the peer, in order. The session writes
//! methods, message content and heartbeats into it; the network layer owns it and writes it
//! out with `write_to`, without looking at frames or at how the bytes are kept. No I/O of its
//! own: `write_to` takes any `io::Write` (a socket, or a `Vec` in the fuzzer and benches).
//!
//! Small frames, frame headers and end octets are copied into one buffer. A large body is not
//! copied: each body frame's payload is kept as a reference to the message's shared `Bytes`,
//! spliced into the byte stream at its place in the buffer, and `write_to` hands the buffer's
//! pieces and the bodies to the kernel in one vectored write (writev).

use super::constants::{FRAME_BODY, FRAME_END, FRAME_OVERHEAD, PROTOCOL_HEADER};
use super::frame;
use super::method::Method;
use crate::limits::{OUTBOX_BODY_BY_REFERENCE_MIN_BYTES, OUTBOX_IOV_MAX, WRITE_BUFFER_KEEP_BYTES};
use bytes::Bytes;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// A message body handed to `Outbox::content`: the shared buffer it lives in and where in it
/// the body starts (it runs to the end).
#[derive(Clone, Copy)]
pub struct Body<'a> {
    pub shared: &'a Bytes,
    pub start: usize,
}

impl Body<'_> {
    fn bytes(&self) -> &[u8] {
        &self.shared[self.start..]
    }
}

/// A body frame's payload kept by reference: it goes out just before `buf[at]`.
struct Spliced {
    at: usize,
    bytes: Bytes,
}

/// The output stream is `buf` with every `Spliced` inserted at its offset: written in order
/// `buf[sent..refs[0].at]`, `refs[0].bytes[front_sent..]`, `buf[refs[0].at..refs[1].at]`, ...
#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already written; never past the first splice's offset.
    sent: usize,
    /// Payloads spliced into `buf`, by increasing offset.
    refs: VecDeque<Spliced>,
    /// Bytes of the first splice already written.
    front_sent: usize,
    /// Total length of `refs`, written or not.
    ref_bytes: usize,
}

impl Outbox {
    /// Appends one method frame.
    pub fn method(&mut self, channel: u16, method: &Method<'_>) {
        frame::write_method(&mut self.buf, channel, method);
    }

    /// Appends a content header (properties byte for byte as published) and the body frames;
    /// a large body's payloads are kept by reference, not copied.
    pub fn content(
        &mut self,
        channel: u16,
        class_id: u16,
        properties: &[u8],
        body: Body<'_>,
        frame_max: u32,
    ) {
        let bytes = body.bytes();
        let size = bytes.len() as u64;
        frame::write_content_header(&mut self.buf, channel, class_id, size, properties);
        if bytes.len() < OUTBOX_BODY_BY_REFERENCE_MIN_BYTES {
            frame::write_body(&mut self.buf, channel, bytes, frame_max);
            return;
        }
        let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
        let mut from = body.start;
        let end = body.shared.len();
        while from < end {
            let to = end.min(from + chunk);
            self.buf.push(FRAME_BODY);
            self.buf.extend_from_slice(&channel.to_be_bytes());
            self.buf
                .extend_from_slice(&((to - from) as u32).to_be_bytes());
            self.refs.push_back(Spliced {
                at: self.buf.len(),
                bytes: body.shared.slice(from..to),
            });
            self.ref_bytes += to - from;
            self.buf.push(FRAME_END);
            from = to;
        }
    }

    pub fn heartbeat(&mut self) {
        frame::write_heartbeat(&mut self.buf);
    }

    /// Our protocol header, the answer to a client's wrong one (AMQP 0-9-1 §4.2.2).
    pub fn protocol_header(&mut self) {
        self.buf.extend_from_slice(PROTOCOL_HEADER);
    }

    /// Bytes not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent + self.ref_bytes - self.front_sent
    }

    /// Writes pending output and returns how much `w` took (`Ok(0)` when nothing is pending
    /// or `w` took nothing). One call to `w` (a plain write, or a vectored one when bodies are
    /// spliced in); another only while `w` took everything it was offered and more is pending
    /// (more than `OUTBOX_IOV_MAX` pieces), so a `Vec` or a sink takes all at once.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while self.pending() > 0 {
            let (result, offered) = if self.refs.is_empty() {
                let piece = &self.buf[self.sent..];
                (w.write(piece), piece.len())
            } else {
                let mut iov = [IoSlice::new(&[]); OUTBOX_IOV_MAX];
                let (count, offered) = self.pieces(&mut iov);
                (w.write_vectored(&iov[..count]), offered)
            };
            let n = match result {
                Ok(n) => n,
                // What was written counts; the error comes back on the next call.
                Err(_) if total > 0 => break,
                Err(e) => return Err(e),
            };
            self.advance(n);
            total += n;
            if n < offered {
                break;
            }
        }
        self.compact();
        Ok(total)
    }

    /// Fills `iov` with the pending stream from the front; returns the pieces used and their
    /// total length.
    fn pieces<'a>(&'a self, iov: &mut [IoSlice<'a>; OUTBOX_IOV_MAX]) -> (usize, usize) {
        let (mut count, mut offered) = (0, 0);
        let mut pos = self.sent;
        let mut push = |piece: &'a [u8], count: &mut usize| {
            if !piece.is_empty() && *count < OUTBOX_IOV_MAX {
                iov[*count] = IoSlice::new(piece);
                *count += 1;
                offered += piece.len();
            }
        };
        for (i, r) in self.refs.iter().enumerate() {
            if count + 2 > OUTBOX_IOV_MAX {
                break;
            }
            push(&self.buf[pos..r.at], &mut count);
            let skip = if i == 0 { self.front_sent } else { 0 };
            push(&r.bytes[skip..], &mut count);
            pos = r.at;
        }
        if count < OUTBOX_IOV_MAX && self.refs.back().is_none_or(|r| pos == r.at) {
            push(&self.buf[pos..], &mut count);
        }
        (count, offered)
    }

    /// Marks `n` more bytes of the stream as written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.refs.front() else {
                self.sent += n;
                return;
            };
            let gap = front.at - self.sent;
            if n <= gap {
                self.sent += n;
                return;
            }
            self.sent = front.at;
            n -= gap;
            let left = front.bytes.len() - self.front_sent;
            if n < left {
                self.front_sent += n;
                return;
            }
            n -= left;
            self.ref_bytes -= front.bytes.len();
            self.front_sent = 0;
            self.refs.pop_front();
        }
    }

    /// After a write: forgets what was sent, keeping the buffer's capacity while busy.
    fn compact(&mut self) {
        if self.pending() == 0 {
            // Keep the capacity while the connection is busy (regrowing it every turn costs
            // reallocations); `release_if_idle` returns it once the connection goes quiet.
            self.buf.clear();
            self.sent = 0;
            debug_assert!(self.refs.is_empty() && self.ref_bytes == 0);
            self.front_sent = 0;
        } else if self.sent >= WRITE_BUFFER_KEEP_BYTES && self.sent * 2 >= self.buf.len() {
            // The peer reads slower than we write: drop what was sent so the buffer cannot
            // grow without bound, at the cost of moving the smaller unsent half.
            self.buf.drain(..self.sent);
            for r in &mut self.refs {
                r.at -= self.sent;
            }
            self.sent = 0;
        }
    }

    /// Frees a large buffer with nothing pending (the connection has gone quiet).
    pub fn release_if_idle(&mut self) {
        if self.pending() == 0 && self.buf.capacity() > WRITE_BUFFER_KEEP_BYTES {
            *self = Outbox::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{parse_frame, FrameKind, Parsed};
    use crate::protocol::method::ChannelOpenOk;

    /// A writer that takes at most `n` bytes per call.
    struct Trickle {
        n: usize,
        got: Vec<u8>,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.n);
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_deliver_every_frame_in_order() {
        let mut out = Outbox::default();
        out.method(1, &Method::ChannelOpenOk(ChannelOpenOk { channel_id: b"" }));
        let shared = Bytes::from_static(b"xxhello");
        let body = Body {
            shared: &shared,
            start: 2,
        };
        out.content(1, 60, &[0, 0], body, 4096);
        out.heartbeat();
        let total = out.pending();
        let mut w = Trickle {
            n: 3,
            got: Vec::new(),
        };
        while out.pending() > 0 {
            let before = out.pending();
            assert_eq!(out.write_to(&mut w).expect("write"), before.min(3));
        }
        assert_eq!(w.got.len(), total);
        let mut kinds = Vec::new();
        let mut rest = &w.got[..];
        while let Ok(Parsed::Frame { frame, len }) = parse_frame(rest, 4096) {
            kinds.push(frame.kind);
            if frame.kind == FrameKind::Body {
                assert_eq!(frame.payload, b"hello");
            }
            rest = &rest[len..];
        }
        assert!(rest.is_empty());
        let expected = [
            FrameKind::Method,
            FrameKind::Header,
            FrameKind::Body,
            FrameKind::Heartbeat,
        ];
        assert_eq!(kinds, expected);
        assert_eq!(out.write_to(&mut w).expect("nothing pending"), 0);
    }

    /// xorshift64: reproducible "random" sizes without a crate.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// A socket stand-in: each vectored write takes a random number of bytes (often zero,
    /// sometimes ending inside a piece, sometimes everything), and now and then would block.
    struct ShortWrites {
        rng: Rng,
        got: Vec<u8>,
        calls: usize,
    }

    impl Write for ShortWrites {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(b)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.rng.below(8) == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let offered: usize = bufs.iter().map(|b| b.len()).sum();
            let mut take = match self.rng.below(4) {
                0 => offered,
                1 => self.rng.below(16).min(offered),
                _ => self.rng.below(offered + 1),
            };
            let n = take;
            for b in bufs {
                let part = take.min(b.len());
                self.got.extend_from_slice(&b[..part]);
                take -= part;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Large bodies go out by reference, interleaved with small frames, byte for byte what
    /// copying every frame into one buffer gives, whatever the sizes of the partial writes,
    /// and with output added between writes.
    #[test]
    fn spliced_bodies_survive_random_short_writes() {
        const FRAME_MAX: u32 = 4096;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20 {
            let mut out = Outbox::default();
            let mut expected = Vec::new();
            let mut w = ShortWrites {
                rng: Rng(round + 1),
                got: Vec::new(),
                calls: 0,
            };
            for i in 0..40 {
                let sizes = [0, 5, 4095, 4096, 9000, 70_000, 200_000];
                let size = sizes[rng.below(sizes.len())] + rng.below(3);
                let mut data = vec![0u8; 3 + size];
                for (j, b) in data.iter_mut().enumerate() {
                    *b = (j * 7 + i) as u8;
                }
                let shared = Bytes::from(data);
                let ch = (i % 3 + 1) as u16;
                out.content(
                    ch,
                    60,
                    &[0x80, 0],
                    Body {
                        shared: &shared,
                        start: 3,
                    },
                    FRAME_MAX,
                );
                frame::write_content_header(&mut expected, ch, 60, size as u64, &[0x80, 0]);
                frame::write_body(&mut expected, ch, &shared[3..], FRAME_MAX);
                drop(shared);
                if rng.below(2) == 0 {
                    out.heartbeat();
                    frame::write_heartbeat(&mut expected);
                }
                if rng.below(3) == 0 {
                    let _ = out.write_to(&mut w);
                }
                assert_eq!(out.pending(), expected.len() - w.got.len());
            }
            let mut calls = 0;
            while out.pending() > 0 {
                calls += 1;
                assert!(calls < 100_000, "no progress");
                match out.write_to(&mut w) {
                    Ok(_) => {}
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
                }
                assert_eq!(out.pending(), expected.len() - w.got.len());
            }
            assert!(w.got == expected, "round {round}: the stream differs");
            assert!(out.refs.is_empty() && out.buf.is_empty());
        }
    }

    /// A large body is not copied into the buffer: only its frame headers and end octets are.
    #[test]
    fn large_bodies_are_referenced_not_copied() {
        let shared = Bytes::from(vec![7u8; 1 << 20]);
        let mut out = Outbox::default();
        out.content(
            1,
            60,
            &[0, 0],
            Body {
                shared: &shared,
                start: 0,
            },
            131_072,
        );
        assert!(out.buf.len() < 1024, "{} bytes copied", out.buf.len());
        assert_eq!(out.ref_bytes, 1 << 20);
        let mut all = Vec::new();
        let n = out.write_to(&mut all).expect("a Vec takes everything");
        assert_eq!(n, all.len());
        assert_eq!(out.pending(), 0);
        let mut body = Vec::new();
        let mut rest = &all[..];
        while let Ok(Parsed::Frame { frame, len }) = parse_frame(rest, 131_072) {
            if frame.kind == FrameKind::Body {
                body.extend_from_slice(frame.payload);
            }
            rest = &rest[len..];
        }
        assert!(rest.is_empty() && body == shared);
    }
}
