//! A connection's output: encoded frames waiting for the peer, in order. The session writes
//! methods, message content and heartbeats into it; the network layer owns it and writes it
//! out with `write_to`, without looking at frames or at how the bytes are kept. No I/O of its
//! own: `write_to` takes any `io::Write` (a socket, or a `Vec` in the fuzzer and benches).
//!
//! Bodies arrive as `Body`, a range of the message's shared buffer. Today they are copied into
//! the one output buffer; keeping a large body as a reference to its `Bytes` and writing the
//! segments with `write_vectored` (issue 11) changes only this file.

use super::constants::PROTOCOL_HEADER;
use super::frame;
use super::method::Method;
use crate::limits::WRITE_BUFFER_KEEP_BYTES;
use bytes::Bytes;
use std::io::{self, Write};

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

#[derive(Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already written.
    sent: usize,
}

impl Outbox {
    /// Appends one method frame.
    pub fn method(&mut self, channel: u16, method: &Method<'_>) {
        frame::write_method(&mut self.buf, channel, method);
    }

    /// Appends a content header (properties byte for byte as published) and the body frames.
    pub fn content(
        &mut self,
        channel: u16,
        class_id: u16,
        properties: &[u8],
        body: Body<'_>,
        frame_max: u32,
    ) {
        let body = body.bytes();
        let size = body.len() as u64;
        frame::write_content_header(&mut self.buf, channel, class_id, size, properties);
        frame::write_body(&mut self.buf, channel, body, frame_max);
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
        self.buf.len() - self.sent
    }

    /// Writes pending output with one call to `w`, returning how much it took (`Ok(0)` when
    /// nothing is pending or the writer took nothing).
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<usize> {
        if self.pending() == 0 {
            return Ok(0);
        }
        let n = w.write(&self.buf[self.sent..])?;
        self.sent += n;
        if self.pending() == 0 {
            // Keep the capacity while the connection is busy (regrowing it every turn costs
            // reallocations); `release_if_idle` returns it once the connection goes quiet.
            self.buf.clear();
            self.sent = 0;
        } else if self.sent >= WRITE_BUFFER_KEEP_BYTES && self.sent * 2 >= self.buf.len() {
            // The peer reads slower than we write: drop what was sent so the buffer cannot
            // grow without bound, at the cost of moving the smaller unsent half.
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        Ok(n)
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
}
