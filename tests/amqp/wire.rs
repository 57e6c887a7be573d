//! Raw AMQP 0-9-1 over a plain TcpStream, every byte written by hand (never the broker's
//! codec): frame builders and field encoders, frame readers, the hand-made handshakes, and the
//! assertions on how a server ends a connection. Used by raw_wire.rs and robustness.rs.
//! Every read is bounded by the socket's read timeout (support::TIMEOUT, see [`Broker::tcp`]).
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::Broker;

pub const FRAME_END: u8 = 0xCE;
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// frame_max of [`Raw::connect`]'s clients: the largest both brokers accept, so also the largest
/// frame a server may ever send a raw client.
pub const RAW_FRAME_MAX: u32 = 131_072;
/// How long a server may take to close the socket: after a frame-level error RabbitMQ does not
/// read our close-ok, it closes the socket about 3 s after its connection.close.
const EOF_WAIT: Duration = Duration::from_secs(10);
/// The capability a client needs to be told why its login failed (connection.close 403).
pub const LOGIN_CAPABILITIES: &[&str] = &["authentication_failure_close"];

// ---------------------------------------------------------------------------------------
// frames and fields
// ---------------------------------------------------------------------------------------

/// A frame: type, channel (big-endian), payload size (big-endian), payload, frame-end.
pub fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(FRAME_END);
    f
}

/// A method frame; `payload` starts with the class and method ids.
pub fn method(channel: u16, payload: &[u8]) -> Vec<u8> {
    frame(1, channel, payload)
}

/// A short string: one length octet, then the bytes (at most 255).
pub fn shortstr(s: impl AsRef<[u8]>) -> Vec<u8> {
    let s = s.as_ref();
    assert!(s.len() <= 255, "shortstr of {} bytes", s.len());
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s);
    v
}

/// A long string (or a field table's encoded fields): a 32-bit length, then the bytes.
pub fn longstr(s: impl AsRef<[u8]>) -> Vec<u8> {
    let s = s.as_ref();
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

/// channel.open (20,10) on `channel`, reserved shortstr "".
pub fn channel_open(channel: u16) -> Vec<u8> {
    method(channel, b"\x00\x14\x00\x0a\x00")
}

/// basic.publish (60,40) to the default exchange: ticket 0, exchange "", routing key, no flags.
pub fn basic_publish(channel: u16, routing_key: &str) -> Vec<u8> {
    let mut p = b"\x00\x3c\x00\x28\x00\x00".to_vec();
    p.extend_from_slice(&shortstr(""));
    p.extend_from_slice(&shortstr(routing_key));
    p.push(0);
    method(channel, &p)
}

/// A basic content header frame: class 60, weight 0, body size, flags, property bytes.
pub fn content_header(channel: u16, body_size: u64, flags: u16, props: &[u8]) -> Vec<u8> {
    let mut p = b"\x00\x3c\x00\x00".to_vec();
    p.extend_from_slice(&body_size.to_be_bytes());
    p.extend_from_slice(&flags.to_be_bytes());
    p.extend_from_slice(props);
    frame(2, channel, &p)
}

/// basic.qos(0, 10, false) on `channel`: a harmless method.
pub fn basic_qos(channel: u16) -> Vec<u8> {
    method(channel, b"\x00\x3c\x00\x0a\x00\x00\x00\x00\x00\x0a\x00")
}

// ---------------------------------------------------------------------------------------
// reading what the server sends
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Vec<u8>,
}

impl Frame {
    /// (class id, method id) of a method frame.
    pub fn class_method(&self) -> (u16, u16) {
        assert!(
            self.kind == 1 && self.payload.len() >= 4,
            "not a method frame: {self:?}"
        );
        let p = &self.payload;
        (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    }
}

/// One whole frame, or the I/O error that stopped it (EOF is `UnexpectedEof`); checks its
/// size against [`RAW_FRAME_MAX`] and its frame-end octet.
pub fn try_read_frame(r: &mut impl Read) -> std::io::Result<Frame> {
    let mut h = [0u8; 7];
    r.read_exact(&mut h)?;
    let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
    assert!(
        size <= RAW_FRAME_MAX as usize,
        "absurd frame size {size} (header {h:?})"
    );
    let mut payload = vec![0u8; size + 1];
    r.read_exact(&mut payload)?;
    assert_eq!(payload.pop(), Some(FRAME_END), "bad frame-end from server");
    Ok(Frame {
        kind: h[0],
        channel: u16::from_be_bytes([h[1], h[2]]),
        payload,
    })
}

/// One whole frame (bounded by the socket read timeout); panics on an I/O error.
pub fn read_frame(r: &mut impl Read) -> Frame {
    try_read_frame(r).expect("read a frame from the server")
}

/// The next frame that is not a heartbeat: a method, or the content frames after one.
pub fn read_method(r: &mut impl Read) -> Frame {
    for _ in 0..1000 {
        let f = read_frame(r);
        if f.kind != 8 {
            return f;
        }
    }
    panic!("only heartbeats");
}

/// Expect `connection.close` (10,50) on channel 0; returns (reply code, reply text, class id,
/// method id).
pub fn read_connection_close(s: &mut impl Read) -> (u16, String, u16, u16) {
    connection_close_of(&read_method(s))
}

/// The (reply code, reply text, class id, method id) of a frame that must be
/// `connection.close` on channel 0.
pub fn connection_close_of(f: &Frame) -> (u16, String, u16, u16) {
    assert_eq!(
        (f.channel, f.class_method()),
        (0, (10, 50)),
        "expected connection.close on channel 0, got {f:?}"
    );
    let p = &f.payload[4..];
    let code = u16::from_be_bytes([p[0], p[1]]);
    let len = p[2] as usize;
    let text = String::from_utf8_lossy(&p[3..3 + len]).into_owned();
    let rest = &p[3 + len..];
    let class_id = u16::from_be_bytes([rest[0], rest[1]]);
    let method_id = u16::from_be_bytes([rest[2], rest[3]]);
    (code, text, class_id, method_id)
}

/// Assert the server closes the socket: reads return EOF (or reset) within [`EOF_WAIT`];
/// returns the bytes it still sent before.
pub fn assert_eof(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(EOF_WAIT)).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        match s.read(&mut buf) {
            Ok(0) => return seen,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return seen,
            Err(e) => panic!("socket not closed by the server: {e}"),
        }
    }
    panic!("server kept sending data instead of closing");
}

/// Answer with close-ok and check the server then closes the socket (EOF, bounded); returns
/// the bytes it still sent before.
pub fn close_ok_then_eof(s: &mut TcpStream) -> Vec<u8> {
    // the server may already have closed its side: a failed write is fine here
    let _ = s.write_all(&method(0, b"\x00\x0a\x00\x33"));
    assert_eof(s)
}

/// How much of RabbitMQ's reply text a test pins down.
pub enum Text<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

/// Assert the server answered with connection.close `code`, the reply text and, when given,
/// the (class id, method id) of the offending method ((0,0) for frame-level errors); then
/// that it closes the socket after our close-ok.
pub fn expect_connection_error(
    s: &mut TcpStream,
    code: u16,
    text: Text,
    class_method: impl Into<Option<(u16, u16)>>,
) {
    let (c, got, class, method) = read_connection_close(s);
    assert_eq!(
        c, code,
        "reply code (text: {got:?}, class/method: {class},{method})"
    );
    match text {
        Text::Exact(t) => assert_eq!(got, t, "reply text"),
        Text::Prefix(p) => assert!(
            got.starts_with(p),
            "reply text {got:?} does not start with {p:?}"
        ),
    }
    if let Some(ids) = class_method.into() {
        assert_eq!(
            (class, method),
            ids,
            "class/method ids of connection.close {c} {got:?}"
        );
    }
    close_ok_then_eof(s);
}

/// Assert the server closes the socket without sending any frame first.
pub fn assert_closed_without_frames(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(n) => panic!(
            "expected the connection to be dropped, got bytes {:?}",
            &buf[..n]
        ),
        Err(e) => panic!("socket not closed by the server: {e}"),
    }
}

/// Expect the server to answer a bad protocol header with its own header, then close.
pub fn expect_header_reply_and_close(s: &mut TcpStream) {
    let mut got = [0u8; 8];
    s.read_exact(&mut got).expect("server's protocol header");
    assert_eq!(&got, PROTOCOL_HEADER);
    assert_eof(s);
}

// ---------------------------------------------------------------------------------------
// handshakes
// ---------------------------------------------------------------------------------------

/// client-properties: a product name and `capabilities`, each set to true.
fn client_properties(capabilities: &[&str]) -> Vec<u8> {
    let mut caps = Vec::new();
    for c in capabilities {
        caps.extend_from_slice(&shortstr(c));
        caps.extend_from_slice(b"t\x01");
    }
    let mut fields = shortstr("product");
    fields.push(b'S');
    fields.extend_from_slice(&longstr("coney-raw-wire-test"));
    fields.extend_from_slice(&shortstr("capabilities"));
    fields.push(b'F');
    fields.extend_from_slice(&longstr(&caps));
    longstr(&fields)
}

/// connection.start-ok with PLAIN credentials, advertising `capabilities`.
pub fn start_ok(user: &str, password: &str, capabilities: &[&str]) -> Vec<u8> {
    let mut p = vec![0, 10, 0, 11];
    p.extend_from_slice(&client_properties(capabilities));
    p.extend_from_slice(&shortstr("PLAIN"));
    p.extend_from_slice(&longstr(format!("\0{user}\0{password}")));
    p.extend_from_slice(&shortstr("en_US"));
    method(0, &p)
}

/// Protocol header, connection.start (returned), start-ok; stops before tune.
fn start_with(b: &Broker, user: &str, password: &str, capabilities: &[&str]) -> (TcpStream, Frame) {
    let mut s = b.tcp();
    s.write_all(PROTOCOL_HEADER).unwrap();
    let f = read_method(&mut s);
    assert_eq!(
        (f.channel, f.class_method()),
        (0, (10, 10)),
        "connection.start"
    );
    assert_eq!(
        &f.payload[4..6],
        &[0, 9],
        "version-major 0, version-minor 9"
    );
    s.write_all(&start_ok(user, password, capabilities))
        .unwrap();
    (s, f)
}

/// Protocol header + start/start-ok (advertising authentication_failure_close, so a refused
/// login is told why), stopping before tune.
pub fn start(b: &Broker, user: &str, password: &str) -> TcpStream {
    start_with(b, user, password, LOGIN_CAPABILITIES).0
}

/// After start-ok: tune, tune-ok with the given values, connection.open "/" and open-ok, then
/// channel.open on channel 1 and open-ok.
fn tune_and_open(s: &mut TcpStream, channel_max: u16, frame_max: u32, heartbeat_secs: u16) {
    let f = read_method(s);
    assert_eq!(f.class_method(), (10, 30), "connection.tune");
    let mut tune_ok = b"\x00\x0a\x00\x1f".to_vec();
    tune_ok.extend_from_slice(&channel_max.to_be_bytes());
    tune_ok.extend_from_slice(&frame_max.to_be_bytes());
    tune_ok.extend_from_slice(&heartbeat_secs.to_be_bytes());
    s.write_all(&method(0, &tune_ok)).unwrap();
    // connection.open: virtual-host "/", reserved shortstr "", reserved bit 0
    s.write_all(&method(0, b"\x00\x0a\x00\x28\x01/\x00\x00"))
        .unwrap();
    let f = read_method(s);
    assert_eq!(f.class_method(), (10, 41), "connection.open-ok");
    s.write_all(&channel_open(1)).unwrap();
    let f = read_method(s);
    assert_eq!(
        (f.channel, f.class_method()),
        (1, (20, 11)),
        "channel.open-ok"
    );
}

/// A full hand-made handshake (frame_max negotiated down to 4096, no heartbeats) plus
/// channel.open on channel 1.
pub fn handshake(b: &Broker) -> TcpStream {
    handshake_with_channel_max(b, 2047)
}

/// `handshake` with the client's channel-max in tune-ok.
pub fn handshake_with_channel_max(b: &Broker, channel_max: u16) -> TcpStream {
    let mut s = start(b, "guest", "guest");
    tune_and_open(&mut s, channel_max, 4096, 0);
    s
}

/// A raw, hand-driven client connection that knows which broker it talks to.
pub struct Raw {
    pub s: TcpStream,
    /// `product` from connection.start, e.g. "coney" or "RabbitMQ".
    pub product: String,
}

impl Raw {
    pub fn is_rabbitmq(&self) -> bool {
        self.product == "RabbitMQ"
    }

    /// Handshake with `frame_max` and `heartbeat_secs` in tune-ok, advertising the given
    /// capabilities, then channel.open on channel 1.
    pub fn connect(b: &Broker, frame_max: u32, heartbeat_secs: u16, capabilities: &[&str]) -> Raw {
        let (mut s, start) = start_with(b, "guest", "guest", capabilities);
        let product = find_longstr(&start.payload, b"product").unwrap_or_default();
        tune_and_open(&mut s, 2047, frame_max, heartbeat_secs);
        Raw { s, product }
    }

    /// queue.declare on channel 1 with the given bits (durable 2, exclusive 4), waits for
    /// declare-ok.
    pub fn declare_queue(&mut self, name: &str, bits: u8) {
        let mut p = b"\x00\x32\x00\x0a\x00\x00".to_vec();
        p.extend_from_slice(&shortstr(name));
        p.push(bits);
        p.extend_from_slice(&longstr(b""));
        self.s.write_all(&method(1, &p)).unwrap();
        let f = read_method(&mut self.s);
        assert_eq!(f.class_method(), (50, 11), "queue.declare-ok for {name}");
    }
}

/// The longstr value of `key` in a connection.start's server-properties table (a byte
/// search is enough for the few keys we look up).
fn find_longstr(payload: &[u8], key: &[u8]) -> Option<String> {
    let mut needle = shortstr(key);
    needle.push(b'S');
    let at = payload.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let n = u32::from_be_bytes(payload.get(at..at + 4)?.try_into().ok()?) as usize;
    Some(String::from_utf8_lossy(payload.get(at + 4..at + 4 + n)?).into_owned())
}
