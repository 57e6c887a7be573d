//! Raw-byte protocol tests over a plain TcpStream. Every frame is written by hand from byte
//! literals (no broker codec is used), so these tests pin down the exact wire behaviour:
//! the protocol-header exchange, and the connection errors a broken client provokes.
//! Every read is bounded by the socket read timeout (support::TIMEOUT).
//! Run against RabbitMQ with `CONEY_TEST_ADDR=127.0.0.1:5690`; otherwise a private coney.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use crate::support::*;

const FRAME_END: u8 = 0xCE;
const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

// ---------------------------------------------------------------------------------------
// tiny hand-written frame helpers
// ---------------------------------------------------------------------------------------

/// A frame: type, channel (big-endian), payload size (big-endian), payload, frame-end.
pub(crate) fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(FRAME_END);
    f
}

pub(crate) fn method(channel: u16, payload: &[u8]) -> Vec<u8> {
    frame(1, channel, payload)
}

pub(crate) fn shortstr(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

pub(crate) fn longstr(s: &[u8]) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s);
    v
}

#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) kind: u8,
    pub(crate) channel: u16,
    pub(crate) payload: Vec<u8>,
}

impl Frame {
    pub(crate) fn class_method(&self) -> (u16, u16) {
        assert_eq!(self.kind, 1, "not a method frame: {self:?}");
        (
            u16::from_be_bytes([self.payload[0], self.payload[1]]),
            u16::from_be_bytes([self.payload[2], self.payload[3]]),
        )
    }
}

/// Read one whole frame (bounded by the socket read timeout); checks the frame-end octet.
pub(crate) fn read_frame(s: &mut TcpStream) -> Frame {
    let mut h = [0u8; 7];
    s.read_exact(&mut h).expect("read frame header");
    let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]) as usize;
    assert!(size < 1 << 20, "absurd frame size {size} (header {h:?})");
    let mut payload = vec![0u8; size + 1];
    s.read_exact(&mut payload).expect("read frame payload");
    assert_eq!(payload.pop(), Some(FRAME_END), "bad frame-end from server");
    Frame {
        kind: h[0],
        channel: u16::from_be_bytes([h[1], h[2]]),
        payload,
    }
}

/// Read frames, skipping heartbeats, until a method frame arrives.
pub(crate) fn read_method(s: &mut TcpStream) -> Frame {
    for _ in 0..100 {
        let f = read_frame(s);
        if f.kind != 8 {
            return f;
        }
    }
    panic!("only heartbeats");
}

/// Expect `connection.close` (10,50); returns (reply code, reply text, class id, method id).
pub(crate) fn read_connection_close(s: &mut TcpStream) -> (u16, String, u16, u16) {
    let f = read_method(s);
    assert_eq!(f.channel, 0, "connection.close must be on channel 0: {f:?}");
    assert_eq!(
        f.class_method(),
        (10, 50),
        "expected connection.close, got {f:?}"
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

/// Answer with close-ok and check the server then closes the socket (EOF, bounded).
pub(crate) fn close_ok_then_eof(s: &mut TcpStream) {
    // the server may already have closed its side: a failed write is fine here
    let _ = s.write_all(&method(0, &[0, 10, 0, 51]));
    assert_eof(s);
}

/// Assert the server closes the socket: reads return EOF (or reset) within 10 s, skipping
/// anything else it still sends. (After a frame-level error RabbitMQ does not read our
/// close-ok; it closes the socket about 3 s after its connection.close.)
fn assert_eof(s: &mut TcpStream) {
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    for _ in 0..1000 {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("socket not closed by the server: {e}"),
        }
    }
    panic!("server kept sending data instead of closing");
}

/// client-properties with capabilities.authentication_failure_close = true
fn client_properties() -> Vec<u8> {
    let mut caps = shortstr("authentication_failure_close");
    caps.extend_from_slice(b"t\x01");
    let mut caps_table = (caps.len() as u32).to_be_bytes().to_vec();
    caps_table.extend_from_slice(&caps);
    let mut fields = shortstr("product");
    fields.push(b'S');
    fields.extend_from_slice(&longstr(b"raw-wire-test"));
    fields.extend_from_slice(&shortstr("capabilities"));
    fields.push(b'F');
    fields.extend_from_slice(&caps_table);
    let mut t = (fields.len() as u32).to_be_bytes().to_vec();
    t.extend_from_slice(&fields);
    t
}

/// connection.start-ok with PLAIN credentials.
fn start_ok(user: &str, password: &str) -> Vec<u8> {
    let mut p = vec![0, 10, 0, 11];
    p.extend_from_slice(&client_properties());
    p.extend_from_slice(&shortstr("PLAIN"));
    p.extend_from_slice(&longstr(format!("\0{user}\0{password}").as_bytes()));
    p.extend_from_slice(&shortstr("en_US"));
    method(0, &p)
}

/// Protocol header + start/start-ok, stopping before tune.
fn start(b: &Broker, user: &str, password: &str) -> TcpStream {
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
    s.write_all(&start_ok(user, password)).unwrap();
    s
}

/// A full hand-made handshake (frame_max negotiated down to 4096, no heartbeats) plus
/// channel.open on channel 1.
pub(crate) fn handshake(b: &Broker) -> TcpStream {
    handshake_with_channel_max(b, 2047)
}

/// `handshake` with the client's channel-max in tune-ok.
fn handshake_with_channel_max(b: &Broker, channel_max: u16) -> TcpStream {
    let mut s = start(b, "guest", "guest");
    let f = read_method(&mut s);
    assert_eq!(f.class_method(), (10, 30), "connection.tune");
    // tune-ok: channel-max, frame-max 4096, heartbeat 0
    let mut tune_ok = b"\x00\x0a\x00\x1f".to_vec();
    tune_ok.extend_from_slice(&channel_max.to_be_bytes());
    tune_ok.extend_from_slice(b"\x00\x00\x10\x00\x00\x00");
    s.write_all(&method(0, &tune_ok)).unwrap();
    // connection.open: virtual-host "/", reserved shortstr "", reserved bit 0
    s.write_all(&method(0, b"\x00\x0a\x00\x28\x01/\x00\x00"))
        .unwrap();
    let f = read_method(&mut s);
    assert_eq!(f.class_method(), (10, 41), "connection.open-ok");
    // channel.open on channel 1, reserved shortstr ""
    s.write_all(&method(1, b"\x00\x14\x00\x0a\x00")).unwrap();
    let f = read_method(&mut s);
    assert_eq!(
        (f.channel, f.class_method()),
        (1, (20, 11)),
        "channel.open-ok"
    );
    s
}

/// How much of RabbitMQ's reply text a test pins down.
pub(crate) enum Text<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

/// Assert the server answered with connection.close `code`, the reply text, and the
/// (class id, method id) of the offending method ((0,0) for frame-level errors); then
/// that it closes the socket after our close-ok.
pub(crate) fn expect_connection_error(
    s: &mut TcpStream,
    code: u16,
    text: Text,
    class_method: (u16, u16),
) {
    let (c, got, class, method) = read_connection_close(s);
    assert_eq!(c, code, "reply code (text: {got:?})");
    match text {
        Text::Exact(t) => assert_eq!(got, t, "reply text"),
        Text::Prefix(p) => assert!(
            got.starts_with(p),
            "reply text {got:?} does not start with {p:?}"
        ),
    }
    assert_eq!(
        (class, method),
        class_method,
        "class/method ids of connection.close"
    );
    close_ok_then_eof(s);
}

/// Assert the server closes the socket without sending any frame first.
fn assert_closed_without_frames(s: &mut TcpStream) {
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
fn expect_header_reply_and_close(s: &mut TcpStream) {
    let mut got = [0u8; 8];
    s.read_exact(&mut got).expect("server's protocol header");
    assert_eq!(&got, PROTOCOL_HEADER);
    assert_eof(s);
}

// ---------------------------------------------------------------------------------------
// protocol header
// ---------------------------------------------------------------------------------------

/// A correct handshake written by hand succeeds and can be closed cleanly.
#[test]
fn hand_written_handshake_and_clean_close() {
    let b = Broker::start();
    let mut s = handshake(&b);
    // connection.close 200 "bye" (0,0)
    let mut p = b"\x00\x0a\x00\x32\x00\xc8".to_vec();
    p.extend_from_slice(&shortstr("bye"));
    p.extend_from_slice(b"\x00\x00\x00\x00");
    s.write_all(&method(0, &p)).unwrap();
    let f = read_method(&mut s);
    assert_eq!(
        (f.channel, f.class_method()),
        (0, (10, 51)),
        "connection.close-ok"
    );
    // after close-ok it is the client's turn to close the socket (RabbitMQ waits for it)
}

/// An AMQP header with an unsupported version gets the server's 0-9-1 header, then close.
#[test]
fn unsupported_protocol_version_gets_server_header() {
    let b = Broker::start();
    let mut s = b.tcp();
    s.write_all(b"AMQP\x00\x00\x0a\x00").unwrap();
    expect_header_reply_and_close(&mut s);
    let mut s = b.tcp();
    s.write_all(b"AMQP\x00\x00\x09\x00").unwrap();
    expect_header_reply_and_close(&mut s);
}

/// A non-AMQP greeting (HTTP) gets the server's 0-9-1 header, then close.
#[test]
fn http_request_gets_server_header() {
    let b = Broker::start();
    let mut s = b.tcp();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    expect_header_reply_and_close(&mut s);
}

/// A wrong password (client advertising authentication_failure_close) → close 403.
#[test]
fn wrong_password_is_access_refused_403() {
    let b = Broker::start();
    let mut s = start(&b, "guest", "wrong-password");
    let (code, text, class_id, method_id) = read_connection_close(&mut s);
    assert_eq!(code, 403);
    assert_eq!(
        text,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. \
         For details see the broker logfile."
    );
    assert_eq!((class_id, method_id), (0, 0));
    close_ok_then_eof(&mut s);
}

// ---------------------------------------------------------------------------------------
// connection errors after a good handshake
// ---------------------------------------------------------------------------------------

/// A frame larger than the negotiated frame_max (4096) → connection.close 501 FRAME_ERROR.
#[test]
fn frame_larger_than_frame_max_is_frame_error() {
    let b = Broker::start();
    let mut s = handshake(&b);
    // basic.publish to "" with an over-long, padded payload: 8000 > 4096 - 8
    let mut p = b"\x00\x3c\x00\x28\x00\x00\x00\x01q\x00".to_vec();
    p.resize(8000, 0);
    s.write_all(&method(1, &p)).unwrap();
    expect_connection_error(
        &mut s,
        501,
        Text::Exact("FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,8000,4088}"),
        (0, 0),
    );
}

/// A method on a channel that was never opened → connection.close 504 CHANNEL_ERROR.
#[test]
fn method_on_unopened_channel_is_channel_error() {
    let b = Broker::start();
    let mut s = handshake(&b);
    // queue.declare on channel 7: ticket 0, queue "q", bits 0, empty arguments table
    s.write_all(&method(
        7,
        b"\x00\x32\x00\x0a\x00\x00\x01q\x00\x00\x00\x00\x00",
    ))
    .unwrap();
    expect_connection_error(
        &mut s,
        504,
        Text::Exact("CHANNEL_ERROR - expected 'channel.open'"),
        (50, 10),
    );
}

/// A content header with no preceding basic.publish → connection.close 505 UNEXPECTED_FRAME.
#[test]
fn content_header_without_publish_is_unexpected_frame() {
    let b = Broker::start();
    let mut s = handshake(&b);
    // class 60, weight 0, body-size 5, property-flags 0
    s.write_all(&frame(
        2,
        1,
        b"\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00",
    ))
    .unwrap();
    expect_connection_error(
        &mut s,
        505,
        Text::Exact("UNEXPECTED_FRAME - expected method frame, got non method frame instead"),
        (0, 0),
    );
}

/// A content body frame with no preceding basic.publish → connection.close 505.
#[test]
fn content_body_without_publish_is_unexpected_frame() {
    let b = Broker::start();
    let mut s = handshake(&b);
    s.write_all(&frame(3, 1, b"hello")).unwrap();
    expect_connection_error(
        &mut s,
        505,
        Text::Exact("UNEXPECTED_FRAME - expected method frame, got non method frame instead"),
        (0, 0),
    );
}

/// A frame whose frame-end octet is not 0xCE → connection.close 501 FRAME_ERROR.
#[test]
fn bad_frame_end_is_frame_error() {
    let b = Broker::start();
    let mut s = handshake(&b);
    // basic.qos(0, 10, false) with a bad end octet
    let mut f = method(1, b"\x00\x3c\x00\x0a\x00\x00\x00\x00\x00\x0a\x00");
    *f.last_mut().unwrap() = 0x00;
    s.write_all(&f).unwrap();
    expect_connection_error(
        &mut s,
        501,
        // RabbitMQ's full text continues with Erlang pretty-printing:
        // "...{invalid_frame_end_marker,\n<52 spaces>0}"
        Text::Prefix(
            "FRAME_ERROR - type 1, all octets = <<0,60,0,10,0,0,0,0,0,10,0>>: \
             {invalid_frame_end_marker,",
        ),
        (0, 0),
    );
}

/// An unknown method id of a known class: RabbitMQ drops the TCP connection without a
/// connection.close (its reader process exits with {unknown_method_id,{60,999}}).
#[test]
fn unknown_method_drops_connection() {
    let b = Broker::start();
    let mut s = handshake(&b);
    s.write_all(&method(1, b"\x00\x3c\x03\xe7")).unwrap();
    assert_closed_without_frames(&mut s);
}

/// An unknown class id: RabbitMQ drops the TCP connection without a connection.close.
#[test]
fn unknown_class_drops_connection() {
    let b = Broker::start();
    let mut s = handshake(&b);
    s.write_all(&method(1, b"\x00\x63\x00\x01")).unwrap();
    assert_closed_without_frames(&mut s);
}

/// A second channel.open on an open channel → connection.close 504 CHANNEL_ERROR.
#[test]
fn second_channel_open_is_channel_error() {
    let b = Broker::start();
    let mut s = handshake(&b);
    s.write_all(&method(1, b"\x00\x14\x00\x0a\x00")).unwrap();
    expect_connection_error(
        &mut s,
        504,
        Text::Exact("CHANNEL_ERROR - second 'channel.open' seen"),
        (20, 10),
    );
}

/// channel_max limits how many channels are open, not their numbers (RabbitMQ 3.10): channel
/// 65535 opens and works, while the channel beyond channel_max is 530 NOT_ALLOWED naming no
/// method.
#[test]
fn channel_max_counts_open_channels_not_channel_numbers() {
    let b = Broker::start();
    let mut s = handshake_with_channel_max(&b, 2);
    s.write_all(&method(65535, b"\x00\x14\x00\x0a\x00"))
        .unwrap();
    let f = read_method(&mut s);
    assert_eq!(
        (f.channel, f.class_method()),
        (65535, (20, 11)),
        "open-ok on 65535"
    );
    // queue.declare on 65535: ticket 0, queue "", bits exclusive, empty arguments
    s.write_all(&method(
        65535,
        b"\x00\x32\x00\x0a\x00\x00\x00\x08\x00\x00\x00\x00",
    ))
    .unwrap();
    let f = read_method(&mut s);
    assert_eq!(
        (f.channel, f.class_method()),
        (65535, (50, 11)),
        "declare-ok on 65535"
    );
    s.write_all(&method(3, b"\x00\x14\x00\x0a\x00")).unwrap();
    expect_connection_error(
        &mut s,
        530,
        Text::Exact(
            "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)",
        ),
        (0, 0),
    );
}

/// A method frame where the content header of a basic.publish is due → 505 UNEXPECTED_FRAME.
#[test]
fn method_instead_of_content_header_is_unexpected_frame() {
    let b = Broker::start();
    let mut s = handshake(&b);
    s.write_all(&method(1, b"\x00\x3c\x00\x28\x00\x00\x00\x01q\x00"))
        .unwrap();
    s.write_all(&method(1, b"\x00\x3c\x00\x0a\x00\x00\x00\x00\x00\x0a\x00"))
        .unwrap();
    expect_connection_error(
        &mut s,
        505,
        Text::Exact(
            "UNEXPECTED_FRAME - expected content header for class 60, \
             got non content header frame instead",
        ),
        (60, 40),
    );
}

/// A heartbeat frame on a non-zero channel → connection.close; RabbitMQ answers
/// 505 UNEXPECTED_FRAME (the spec suggests 501 FRAME_ERROR).
#[test]
fn heartbeat_on_nonzero_channel_is_unexpected_frame() {
    let b = Broker::start();
    let mut s = handshake(&b);
    s.write_all(&frame(8, 1, b"")).unwrap();
    expect_connection_error(
        &mut s,
        505,
        Text::Exact("UNEXPECTED_FRAME - type 8, all octets = <<>>"),
        (0, 0),
    );
}

// ---------------------------------------------------------------------------------------
// content pass-through
// ---------------------------------------------------------------------------------------

/// One headers-table entry: shortstr name + the hand-written type tag and value bytes.
fn entry(name: &str, tagged_value: &[u8]) -> Vec<u8> {
    let mut v = shortstr(name);
    v.extend_from_slice(tagged_value);
    v
}

/// A headers table using every field type RabbitMQ knows, keys deliberately unsorted.
fn every_type_table() -> Vec<u8> {
    let mut fields = Vec::new();
    for e in [
        entry("zz-str", b"S\x00\x00\x00\x05hello"),
        entry("i8", b"b\xfb"),                              // -5
        entry("u8", b"B\xc8"),                              // 200
        entry("i16", b"s\xfe\xd4"),                         // -300
        entry("u16", b"u\xea\x60"),                         // 60000
        entry("i32", b"I\xff\xfe\xee\x90"),                 // -70000
        entry("u32", b"i\xee\x6b\x28\x00"),                 // 4e9
        entry("i64", b"l\xff\xff\xff\xfe\xd5\xfa\x0e\x00"), // -5e9
        entry("f32", b"f\x3f\xc0\x00\x00"),                 // 1.5
        entry("f64", b"d\x40\x09\x21\xfb\x54\x44\x2d\x18"), // pi
        entry("dec", b"D\x02\x00\x00\x30\x39"),             // 123.45
        entry("ts", b"T\x00\x00\x00\x00\x65\x53\xf1\x00"),
        entry("bool", b"t\x01"),
        entry("void", b"V"),
        entry("bytes", b"x\x00\x00\x00\x03\x00\x01\xff"),
        // array [I 1, S "a"]: 5 + 6 = 11 bytes
        entry(
            "arr",
            b"A\x00\x00\x00\x0bI\x00\x00\x00\x01S\x00\x00\x00\x01a",
        ),
        // table {k: S "v"}: 2 + 1 + 5 = 8 bytes
        entry("tbl", b"F\x00\x00\x00\x08\x01kS\x00\x00\x00\x01v"),
        entry("a-str-last", b"S\x00\x00\x00\x00"),
    ] {
        fields.extend_from_slice(&e);
    }
    let mut t = (fields.len() as u32).to_be_bytes().to_vec();
    t.extend_from_slice(&fields);
    t
}

/// The content header (all 14 property flags set, a headers table with every field type)
/// comes back from basic.get byte-for-byte, and so does the body.
#[test]
fn content_header_round_trips_byte_for_byte() {
    let b = Broker::start();
    let mut s = handshake(&b);
    // queue.declare: ticket 0, queue "" (server-named), exclusive, no arguments
    s.write_all(&method(
        1,
        b"\x00\x32\x00\x0a\x00\x00\x00\x04\x00\x00\x00\x00",
    ))
    .unwrap();
    let f = read_method(&mut s);
    assert_eq!(f.class_method(), (50, 11), "queue.declare-ok");
    let qlen = f.payload[4] as usize;
    let queue = String::from_utf8(f.payload[5..5 + qlen].to_vec()).unwrap();
    assert!(queue.starts_with("amq.gen-"), "{queue}");

    let body = b"byte-exact body";
    let mut header = b"\x00\x3c\x00\x00".to_vec(); // class 60, weight 0
    header.extend_from_slice(&(body.len() as u64).to_be_bytes());
    header.extend_from_slice(b"\xff\xfc"); // all 14 property flags (bits 15..2)
    header.extend_from_slice(&shortstr("text/plain")); // content-type
    header.extend_from_slice(&shortstr("identity")); // content-encoding
    header.extend_from_slice(&every_type_table()); // headers
    header.extend_from_slice(b"\x02"); // delivery-mode
    header.extend_from_slice(b"\x09"); // priority
    header.extend_from_slice(&shortstr("corr")); // correlation-id
    header.extend_from_slice(&shortstr("reply")); // reply-to
    header.extend_from_slice(&shortstr("99999")); // expiration
    header.extend_from_slice(&shortstr("mid")); // message-id
    header.extend_from_slice(b"\x00\x00\x00\x00\x65\x53\xf1\x00"); // timestamp
    header.extend_from_slice(&shortstr("kind")); // type
    header.extend_from_slice(&shortstr("guest")); // user-id (must match the login)
    header.extend_from_slice(&shortstr("app")); // app-id
    header.extend_from_slice(&shortstr("cluster")); // cluster-id (deprecated)

    // basic.publish: ticket 0, exchange "", routing-key = queue, no flags
    let mut publish = b"\x00\x3c\x00\x28\x00\x00\x00".to_vec();
    publish.extend_from_slice(&shortstr(&queue));
    publish.push(0);
    s.write_all(&method(1, &publish)).unwrap();
    s.write_all(&frame(2, 1, &header)).unwrap();
    s.write_all(&frame(3, 1, body)).unwrap();

    // basic.get: ticket 0, queue, no-ack; retry while get-empty (the publish is async)
    let mut get = b"\x00\x3c\x00\x46\x00\x00".to_vec();
    get.extend_from_slice(&shortstr(&queue));
    get.push(1);
    let mut got_ok = false;
    for _ in 0..100 {
        s.write_all(&method(1, &get)).unwrap();
        let f = read_method(&mut s);
        match f.class_method() {
            (60, 71) => {
                got_ok = true;
                break;
            }
            (60, 72) => std::thread::sleep(std::time::Duration::from_millis(20)),
            other => panic!("unexpected answer to basic.get: {other:?} {f:?}"),
        }
    }
    assert!(got_ok, "message never became available");
    let h = read_frame(&mut s);
    assert_eq!((h.kind, h.channel), (2, 1), "content header frame");
    assert_eq!(h.payload, header, "content header bytes differ");
    let bf = read_frame(&mut s);
    assert_eq!((bf.kind, bf.channel), (3, 1), "content body frame");
    assert_eq!(bf.payload, body);
}

/// connection.start offers 0-9 with PLAIN and en_US; tune proposes RabbitMQ's defaults
/// (channel-max 2047, frame-max 131072, heartbeat 60).
#[test]
fn start_and_tune_parameters() {
    let b = Broker::start();
    let mut s = b.tcp();
    s.write_all(PROTOCOL_HEADER).unwrap();
    let f = read_method(&mut s);
    assert_eq!(f.class_method(), (10, 10));
    let p = &f.payload[4..];
    assert_eq!(&p[..2], &[0, 9]);
    let tlen = u32::from_be_bytes([p[2], p[3], p[4], p[5]]) as usize;
    let mut rest = &p[6 + tlen..];
    let longstr_at = |r: &mut &[u8]| {
        let n = u32::from_be_bytes([r[0], r[1], r[2], r[3]]) as usize;
        let v = String::from_utf8_lossy(&r[4..4 + n]).into_owned();
        *r = &r[4 + n..];
        v
    };
    let mechanisms = longstr_at(&mut rest);
    let locales = longstr_at(&mut rest);
    assert!(
        mechanisms.split(' ').any(|m| m == "PLAIN"),
        "mechanisms {mechanisms:?}"
    );
    assert_eq!(locales, "en_US");
    s.write_all(&start_ok("guest", "guest")).unwrap();
    let t = read_method(&mut s);
    assert_eq!(t.class_method(), (10, 30), "connection.tune");
    assert_eq!(
        &t.payload[4..],
        b"\x07\xff\x00\x02\x00\x00\x00\x3c",
        "tune: channel-max 2047, frame-max 131072, heartbeat 60"
    );
}
