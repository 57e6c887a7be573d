//! A published message: exchange, routing key, the publisher's raw property bytes and the body
//! in one `Bytes` buffer, copied once from the read buffer and shared (refcounted, not copied)
//! by every queue it is routed to.

use crate::limits::BODY_PREALLOCATE_MAX_BYTES;
use bytes::Bytes;

/// Immutable message shared between queues. Cloning bumps a refcount.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// exchange ++ routing key ++ property flags and list ++ body.
    data: Bytes,
    exchange_len: u8,
    routing_key_len: u8,
    properties_len: u32,
    pub(crate) persistent: bool,
}

impl Message {
    pub fn exchange(&self) -> &[u8] {
        &self.data[..self.exchange_len as usize]
    }
    pub fn routing_key(&self) -> &[u8] {
        let start = self.exchange_len as usize;
        &self.data[start..start + self.routing_key_len as usize]
    }
    /// Property flags and list exactly as published.
    pub fn properties(&self) -> &[u8] {
        let start = self.exchange_len as usize + self.routing_key_len as usize;
        &self.data[start..start + self.properties_len as usize]
    }
    pub fn body(&self) -> &[u8] {
        &self.data[self.body_start()..]
    }
    pub fn body_len(&self) -> u64 {
        (self.data.len() - self.body_start()) as u64
    }
    /// The shared buffer the body lives in and where the body starts in it (to its end), so
    /// output can keep a large body by reference instead of copying it.
    pub(crate) fn body_in_shared(&self) -> (&Bytes, usize) {
        (&self.data, self.body_start())
    }
    fn body_start(&self) -> usize {
        self.exchange_len as usize + self.routing_key_len as usize + self.properties_len as usize
    }
    /// Bytes this message holds in memory, for accounting.
    pub(crate) fn size(&self) -> usize {
        self.data.len()
    }
    /// The whole encoded buffer, for the store.
    pub(crate) fn raw(&self) -> (&Bytes, u8, u8, u32) {
        (
            &self.data,
            self.exchange_len,
            self.routing_key_len,
            self.properties_len,
        )
    }
    /// Rebuilds a message from `raw` parts (store recovery). Returns None if they do not fit.
    pub(crate) fn from_raw(
        data: Bytes,
        exchange_len: u8,
        routing_key_len: u8,
        properties_len: u32,
        persistent: bool,
    ) -> Option<Self> {
        let head = exchange_len as usize + routing_key_len as usize + properties_len as usize;
        if head > data.len() {
            return None;
        }
        Some(Message {
            data,
            exchange_len,
            routing_key_len,
            properties_len,
            persistent,
        })
    }
    /// Builds a message in one step (tests, benchmarks, store recovery).
    pub fn new(
        exchange: &[u8],
        routing_key: &[u8],
        properties: &[u8],
        body: &[u8],
        persistent: bool,
    ) -> Self {
        let mut b = MessageBuilder::default();
        b.start(exchange, routing_key);
        b.set_header(properties, body.len() as u64, persistent);
        b.push_body(body);
        b.finish()
    }
}

/// Assembles a message from basic.publish, its content header and body frames. Reused per
/// channel, so the exchange and routing key scratch space is allocated once.
#[derive(Default)]
pub struct MessageBuilder {
    /// Exchange and routing key of the pending publish; keeps its capacity between publishes.
    head: Vec<u8>,
    /// The message being assembled, allocated once at its full size when the header arrives.
    buf: Vec<u8>,
    exchange_len: u8,
    routing_key_len: u8,
    properties_len: u32,
    body_remaining: u64,
    persistent: bool,
}

impl MessageBuilder {
    /// Records the method's exchange and routing key (both shortstr, so at most 255 bytes).
    pub fn start(&mut self, exchange: &[u8], routing_key: &[u8]) {
        self.head.clear();
        self.head.extend_from_slice(exchange);
        self.head.extend_from_slice(routing_key);
        self.exchange_len = exchange.len() as u8;
        self.routing_key_len = routing_key.len() as u8;
    }

    /// Records the content header and allocates the message at its final size.
    pub fn set_header(&mut self, properties: &[u8], body_size: u64, persistent: bool) {
        // A header can announce up to max_message_size; reserve only what a peer has shown
        // it will send soon, and grow with the body frames.
        let reserve = body_size.min(BODY_PREALLOCATE_MAX_BYTES as u64) as usize;
        let mut buf = Vec::with_capacity(self.head.len() + properties.len() + reserve);
        buf.extend_from_slice(&self.head);
        buf.extend_from_slice(properties);
        self.buf = buf;
        self.properties_len = properties.len() as u32;
        self.body_remaining = body_size;
        self.persistent = persistent;
    }

    /// Bytes of body still expected.
    pub fn body_remaining(&self) -> u64 {
        self.body_remaining
    }

    /// Appends a body frame's payload; the caller has checked it does not exceed the remainder.
    pub fn push_body(&mut self, part: &[u8]) {
        debug_assert!(part.len() as u64 <= self.body_remaining);
        if self.buf.capacity() - self.buf.len() < part.len() {
            // Past the preallocation, grow to four times what has arrived (capped by what is
            // still announced), not Vec's two: a 16 MiB body is moved 1 + 4 MiB on the way
            // instead of 1 + 2 + 4 + 8, and what is reserved stays within four times what
            // the peer has actually sent.
            let more = (self.buf.len() * 3).min(self.body_remaining as usize);
            self.buf.reserve_exact(more.max(part.len()));
        }
        self.buf.extend_from_slice(part);
        self.body_remaining -= part.len() as u64;
    }

    /// Freezes the complete message.
    pub fn finish(&mut self) -> Message {
        debug_assert_eq!(self.body_remaining, 0);
        let data = Bytes::from(std::mem::take(&mut self.buf));
        Message {
            data,
            exchange_len: self.exchange_len,
            routing_key_len: self.routing_key_len,
            properties_len: self.properties_len,
            persistent: self.persistent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_come_back_exactly() {
        let m = Message::new(b"ex", b"rk.1", &[0x10, 0x00, 2], b"hello body", true);
        assert_eq!(m.exchange(), b"ex");
        assert_eq!(m.routing_key(), b"rk.1");
        assert_eq!(m.properties(), &[0x10, 0x00, 2]);
        assert_eq!(m.body(), b"hello body");
        assert_eq!(m.body_len(), 10);
        assert!(m.persistent);
        let e = Message::new(b"", b"", &[0, 0], b"", false);
        assert_eq!(
            (e.exchange(), e.routing_key(), e.body()),
            (&b""[..], &b""[..], &b""[..])
        );
    }

    #[test]
    fn body_arrives_in_parts() {
        let mut b = MessageBuilder::default();
        b.start(b"x", b"k");
        b.set_header(&[0, 0], 6, false);
        b.push_body(b"abc");
        assert_eq!(b.body_remaining(), 3);
        b.push_body(b"def");
        let m = b.finish();
        assert_eq!(m.body(), b"abcdef");
        // The builder is reusable.
        b.start(b"y", b"");
        b.set_header(&[0, 0], 0, false);
        assert_eq!(b.finish().exchange(), b"y");
    }
}
