//! A published message: exchange, routing key, the publisher's raw property bytes and the body
//! in one `Bytes` buffer, copied once from the read buffer and shared (refcounted, not copied)
//! by every queue it is routed to. The few properties the broker acts on (priority, whether a
//! BCC header must be hidden) are read once when the message is built.

use crate::limits::{BODY_PREALLOCATE_MAX_BYTES, FRAME_MAX_BYTES};
use crate::protocol::properties::BasicProperties;
use bytes::Bytes;
use std::mem::MaybeUninit;

/// `props_and_flags` keeps the property length in its low bits and flags above them; a
/// content header never comes near this size.
const PROPERTIES_LEN_MASK: u32 = (1 << 24) - 1;
/// The properties carry a BCC header, which is kept for dead-lettering (it names routing
/// keys) but never shown to a consumer (RabbitMQ strips it at publish).
const HAS_BCC: u32 = 1 << 31;
const _: () = assert!(FRAME_MAX_BYTES <= PROPERTIES_LEN_MASK);

/// What the broker reads from a message's properties when it is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageFlags {
    pub persistent: bool,
    /// The priority property (0 without one).
    pub priority: u8,
    pub has_bcc: bool,
}

impl MessageFlags {
    /// Reads the flags from decoded properties.
    #[inline(always)]
    pub fn of(p: &BasicProperties<'_>) -> Self {
        MessageFlags {
            persistent: p.is_persistent(),
            priority: p.priority.unwrap_or(0),
            has_bcc: p.headers.is_some_and(|h| h.get(b"BCC").is_some()),
        }
    }

    /// Reads the flags from encoded properties (messages read back from the store).
    pub fn parse(raw: &[u8], persistent: bool) -> Self {
        if !BasicProperties::has_headers(raw) && !BasicProperties::has_priority(raw) {
            return MessageFlags {
                persistent,
                ..Default::default()
            };
        }
        match BasicProperties::decode(raw) {
            Ok(p) => MessageFlags {
                persistent,
                ..MessageFlags::of(&p)
            },
            Err(_) => MessageFlags {
                persistent,
                ..Default::default()
            },
        }
    }
}

/// Why an expiration property is refused (RabbitMQ's rabbit_basic:parse_expiration), shown
/// as RabbitMQ prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadExpiration {
    NoInteger,
    /// The digits did not take the whole value; the rest.
    Leftover(Vec<u8>),
    /// Beyond RabbitMQ's ten years, or negative: the number in decimal.
    TooLarge(String),
    Negative(String),
}

impl std::fmt::Display for BadExpiration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadExpiration::NoInteger => f.write_str("no_integer"),
            BadExpiration::Leftover(rest) => {
                f.write_str("{leftover_string,")?;
                erlang_string(f, rest)?;
                f.write_str("}")
            }
            BadExpiration::TooLarge(n) => write!(f, "{{value_too_large,{n}}}"),
            BadExpiration::Negative(n) => write!(f, "{{value_negative,{n}}}"),
        }
    }
}

/// A byte string as Erlang's ~p prints a list: quoted if printable, else a list of numbers.
fn erlang_string(f: &mut std::fmt::Formatter<'_>, s: &[u8]) -> std::fmt::Result {
    if s.iter().all(|c| (0x20..0x7f).contains(c)) {
        f.write_str("\"")?;
        for &c in s {
            if c == b'"' || c == b'\\' {
                f.write_str("\\")?;
            }
            write!(f, "{}", c as char)?;
        }
        return f.write_str("\"");
    }
    let list: Vec<String> = s.iter().map(|c| c.to_string()).collect();
    write!(f, "[{}]", list.join(","))
}

/// The expiration property in ms, as RabbitMQ reads it: an optional sign, decimal digits and
/// nothing else, within 0..=315360000000.
pub fn parse_expiration(v: &[u8]) -> Result<u64, BadExpiration> {
    let (negative, rest) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Err(BadExpiration::NoInteger);
    }
    if digits < rest.len() {
        return Err(BadExpiration::Leftover(rest[digits..].to_vec()));
    }
    let significant = rest[..digits]
        .iter()
        .position(|&c| c != b'0')
        .map_or(&b"0"[..], |i| &rest[i..digits]);
    let number = String::from_utf8_lossy(significant).into_owned();
    let value = if significant.len() <= 19 {
        number.parse::<u64>().unwrap_or(u64::MAX)
    } else {
        u64::MAX
    };
    if negative && value != 0 {
        return Err(BadExpiration::Negative(format!("-{number}")));
    }
    if value > crate::broker::args::EXPIRY_MAX_MS {
        return Err(BadExpiration::TooLarge(number));
    }
    Ok(value)
}

/// What recovery needs to know of a stored message without reading it back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredMeta {
    pub body_len: u32,
    pub priority: u8,
    /// The expiration property in ms, if valid.
    pub expiration_ms: Option<u64>,
}

impl StoredMeta {
    /// Reads the meta data of a message from its encoded properties and body length.
    pub fn parse(properties: &[u8], body_len: usize) -> Self {
        let p = BasicProperties::decode(properties).unwrap_or_default();
        StoredMeta {
            body_len: body_len as u32,
            priority: p.priority.unwrap_or(0),
            expiration_ms: p.expiration.and_then(|e| parse_expiration(e).ok()),
        }
    }
}

/// Immutable message shared between queues. Cloning bumps a refcount.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// exchange ++ routing key ++ property flags and list ++ body.
    data: Bytes,
    exchange_len: u8,
    routing_key_len: u8,
    /// Property length (low 24 bits) and `HAS_BCC`.
    props_and_flags: u32,
    pub(crate) persistent: bool,
    priority: u8,
}

const _: () = assert!(std::mem::size_of::<Message>() <= 40);

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
        &self.data[start..start + self.properties_len()]
    }
    fn properties_len(&self) -> usize {
        (self.props_and_flags & PROPERTIES_LEN_MASK) as usize
    }
    /// The priority property (0 without one).
    pub fn priority(&self) -> u8 {
        self.priority
    }
    /// Whether the properties hold a BCC header, to be removed before a consumer sees them.
    pub fn has_bcc(&self) -> bool {
        self.props_and_flags & HAS_BCC != 0
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
        self.exchange_len as usize + self.routing_key_len as usize + self.properties_len()
    }
    /// The same body under another exchange, routing key and properties (a dead letter, a
    /// rewritten header): one copy of the body. Names longer than a shortstr are cut there.
    pub(crate) fn with_properties(
        &self,
        exchange: &[u8],
        routing_key: &[u8],
        properties: &[u8],
    ) -> Message {
        let short = |s: &[u8]| s.len().min(u8::MAX as usize);
        let mut b = MessageBuilder::default();
        b.start(
            &exchange[..short(exchange)],
            &routing_key[..short(routing_key)],
        );
        let flags = MessageFlags::parse(properties, self.persistent);
        b.set_header(properties, self.body_len(), flags);
        b.push_body(self.body());
        b.finish()
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
            self.properties_len() as u32,
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
        if head > data.len() || properties_len > PROPERTIES_LEN_MASK {
            return None;
        }
        let start = exchange_len as usize + routing_key_len as usize;
        let props = &data[start..start + properties_len as usize];
        let flags = MessageFlags::parse(props, persistent);
        Some(Message {
            props_and_flags: pack(properties_len, flags),
            priority: flags.priority,
            data,
            exchange_len,
            routing_key_len,
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
        let flags = MessageFlags::parse(properties, persistent);
        b.set_header(properties, body.len() as u64, flags);
        b.push_body(body);
        b.finish()
    }
}

fn pack(properties_len: u32, flags: MessageFlags) -> u32 {
    debug_assert!(properties_len <= PROPERTIES_LEN_MASK);
    properties_len | if flags.has_bcc { HAS_BCC } else { 0 }
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
    flags: MessageFlags,
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

    /// Records the content header and allocates the message at its final size. The
    /// properties were validated (content headers are checked against the frame size, so
    /// their length fits).
    pub fn set_header(&mut self, properties: &[u8], body_size: u64, flags: MessageFlags) {
        self.set_header_reserving(properties, body_size, flags, BODY_PREALLOCATE_MAX_BYTES);
    }

    /// `set_header`, reserving up to `reserve_max` bytes of body now instead of
    /// BODY_PREALLOCATE_MAX_BYTES (for a publisher that has already sent bodies that large).
    pub fn set_header_reserving(
        &mut self,
        properties: &[u8],
        body_size: u64,
        flags: MessageFlags,
        reserve_max: usize,
    ) {
        // A header can announce up to max_message_size; reserve only what a peer has shown
        // it will send soon, and grow with the body frames.
        let reserve = body_size.min(reserve_max as u64) as usize;
        let mut buf = Vec::with_capacity(self.head.len() + properties.len() + reserve);
        buf.extend_from_slice(&self.head);
        buf.extend_from_slice(properties);
        self.buf = buf;
        self.properties_len = properties.len() as u32;
        self.body_remaining = body_size;
        self.flags = flags;
    }

    /// Bytes of body still expected.
    pub fn body_remaining(&self) -> u64 {
        self.body_remaining
    }

    /// Appends a body frame's payload; the caller has checked it does not exceed the remainder.
    pub fn push_body(&mut self, part: &[u8]) {
        debug_assert!(part.len() as u64 <= self.body_remaining);
        self.make_room(part.len());
        self.buf.extend_from_slice(part);
        self.body_remaining -= part.len() as u64;
    }

    /// Ensures room for `n` more body bytes (at most the remainder).
    fn make_room(&mut self, n: usize) {
        if self.buf.capacity() - self.buf.len() < n {
            // Past the preallocation, grow to four times what has arrived (capped by what is
            // still announced), not Vec's two: a 16 MiB body is moved 1 + 4 MiB on the way
            // instead of 1 + 2 + 4 + 8, and what is reserved stays within four times what
            // the peer has actually sent.
            let more = (self.buf.len() * 3).min(self.body_remaining as usize);
            self.buf.reserve_exact(more.max(n));
        }
    }

    /// Room at the end of the message for up to `want` more body bytes (fewer if the body
    /// ends sooner), for a reader to fill straight from the socket; `body_filled` then says
    /// how much it wrote. Grows the message as `push_body` would.
    pub fn body_room(&mut self, want: usize) -> &mut [MaybeUninit<u8>] {
        let want = want.min(self.body_remaining as usize);
        self.make_room(want);
        &mut self.buf.spare_capacity_mut()[..want]
    }

    /// Takes the first `n` bytes of the room `body_room` handed out as body.
    ///
    /// # Safety
    /// Those `n` bytes were initialised (written by the reader) since that call, and `n` is at
    /// most the room's length.
    pub unsafe fn body_filled(&mut self, n: usize) {
        debug_assert!(n <= self.buf.capacity() - self.buf.len());
        debug_assert!(n as u64 <= self.body_remaining);
        // SAFETY: the caller initialised these bytes, which lie within the capacity.
        unsafe { self.buf.set_len(self.buf.len() + n) };
        self.body_remaining -= n as u64;
    }

    /// Bytes reserved for the message being assembled.
    #[cfg(test)]
    pub fn reserved(&self) -> usize {
        self.buf.capacity()
    }

    /// The last `n` bytes assembled so far (for the error text of a frame read directly).
    pub fn last_bytes(&self, n: usize) -> &[u8] {
        &self.buf[self.buf.len().saturating_sub(n)..]
    }

    /// Freezes the complete message.
    pub fn finish(&mut self) -> Message {
        debug_assert_eq!(self.body_remaining, 0);
        let data = Bytes::from(std::mem::take(&mut self.buf));
        Message {
            data,
            exchange_len: self.exchange_len,
            routing_key_len: self.routing_key_len,
            props_and_flags: pack(self.properties_len, self.flags),
            persistent: self.flags.persistent,
            priority: self.flags.priority,
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
    fn expirations_parse_as_rabbitmq_reads_them() {
        let shown = |v: &str| match parse_expiration(v.as_bytes()) {
            Ok(n) => n.to_string(),
            Err(e) => e.to_string(),
        };
        assert_eq!(shown("0"), "0");
        assert_eq!(shown("+5"), "5");
        assert_eq!(shown("-0"), "0");
        assert_eq!(shown("315360000000"), "315360000000");
        assert_eq!(shown("abc"), "no_integer");
        assert_eq!(shown(""), "no_integer");
        assert_eq!(shown(" 100"), "no_integer");
        assert_eq!(shown("-1"), "{value_negative,-1}");
        assert_eq!(shown("1.5"), "{leftover_string,\".5\"}");
        assert_eq!(shown("0x10"), "{leftover_string,\"x10\"}");
        assert_eq!(shown("1\u{1}"), "{leftover_string,[1]}");
        assert_eq!(shown("1\"a\\"), "{leftover_string,\"\\\"a\\\\\"}");
        assert_eq!(shown("315360000001"), "{value_too_large,315360000001}");
        assert_eq!(
            shown("00999999999999999999999"),
            "{value_too_large,999999999999999999999}"
        );
    }

    #[test]
    fn body_arrives_in_parts() {
        let mut b = MessageBuilder::default();
        b.start(b"x", b"k");
        b.set_header(&[0, 0], 6, MessageFlags::default());
        b.push_body(b"abc");
        assert_eq!(b.body_remaining(), 3);
        b.push_body(b"def");
        let m = b.finish();
        assert_eq!(m.body(), b"abcdef");
        // The builder is reusable.
        b.start(b"y", b"");
        b.set_header(&[0, 0], 0, MessageFlags::default());
        assert_eq!(b.finish().exchange(), b"y");
    }
}
