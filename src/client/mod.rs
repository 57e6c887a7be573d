//! The client side of AMQP 0-9-1, with no I/O: bytes in (`Client::input`), bytes out
//! (`Client::output`), like `session/` on the server side, on coney's own codec. It does the
//! handshake (protocol header, start-ok with PLAIN, tune-ok, open), heartbeats and close both
//! ways, and hands every other method and each complete delivery to its owner as an `Event`;
//! the owner (a shovel link, later a federation link) sends channel methods through the
//! helpers below. One connection per `Client`; no state of the owner's lives here.
//!
//! State machine: AwaitingStart → AwaitingTune → AwaitingOpenOk → Open → Closing (we sent
//! connection.close) → Closed (close-ok exchanged, or the peer failed).

pub mod uri;

use crate::limits::{CLIENT_FRAME_MAX_BYTES, CLIENT_HEARTBEAT_SECS, MESSAGE_SIZE_MAX_BYTES};
use crate::protocol::constants::{CLASS_BASIC, FRAME_MIN_SIZE, FRAME_OVERHEAD, PROTOCOL_HEADER};
use crate::protocol::frame::{self, FrameKind};
use crate::protocol::method::*;
use crate::protocol::table::TableWriter;
use crate::protocol::wire::Writer;
use crate::protocol::{parse_frame, ContentHeader, FieldTable, Method, Parsed};
use std::time::{Duration, Instant};

/// Connection lifecycle; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    AwaitingStart,
    AwaitingTune,
    AwaitingOpenOk,
    Open,
    Closing,
    Closed,
}

/// Who to log in as and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
    pub vhost: String,
    /// Heartbeat interval we ask for (the server's lower value wins; 0 asks for none).
    pub heartbeat_secs: u16,
}

/// What the peer said or did, handed to the owner.
#[derive(Debug)]
pub enum Event<'a> {
    /// connection.open-ok: channels may be opened.
    Opened,
    /// A method the client does not handle itself (channel.open-ok, declare-ok, consume-ok,
    /// basic.ack/nack from confirms, channel.close, basic.cancel, ...).
    Method { channel: u16, method: Method<'a> },
    /// A complete basic.deliver with its content.
    Delivery {
        channel: u16,
        delivery_tag: u64,
        redelivered: bool,
        exchange: &'a [u8],
        routing_key: &'a [u8],
        properties: &'a [u8],
        body: &'a [u8],
    },
}

/// A delivery whose content is still arriving.
#[derive(Default)]
struct Incoming {
    channel: u16,
    delivery_tag: u64,
    redelivered: bool,
    exchange: Vec<u8>,
    routing_key: Vec<u8>,
    properties: Vec<u8>,
    body: Vec<u8>,
    body_size: u64,
    /// The content header arrived.
    header: bool,
}

pub struct Client {
    login: Login,
    state: ClientState,
    out: Vec<u8>,
    frame_max: u32,
    heartbeat: Duration,
    last_recv: Instant,
    last_send: Instant,
    incoming: Option<Incoming>,
    /// Why the connection ended (or is ending), for the owner's status and log.
    reason: Option<String>,
}

/// A protocol failure: the connection is unusable.
pub type ClientError = String;

fn client_properties() -> Vec<u8> {
    let mut v = Vec::new();
    let mut w = Writer::new(&mut v);
    let mut t = TableWriter::begin(&mut w);
    t.table("capabilities", |c| {
        c.bool("publisher_confirms", true)
            .bool("basic.nack", true)
            .bool("consumer_cancel_notify", true)
            .bool("authentication_failure_close", true);
    });
    t.longstr("product", b"coney shovel")
        .longstr("version", env!("CARGO_PKG_VERSION").as_bytes())
        .longstr("information", b"https://www.rabbitmq.com/shovel.html");
    t.finish();
    // The writer put the table's length first; FieldTable holds the entries only.
    v.split_off(4)
}

impl Client {
    /// A client that has just sent its protocol header (the socket is connecting).
    pub fn new(login: Login, now: Instant) -> Self {
        Client {
            login,
            state: ClientState::AwaitingStart,
            out: PROTOCOL_HEADER.to_vec(),
            frame_max: FRAME_MIN_SIZE,
            heartbeat: Duration::ZERO,
            last_recv: now,
            last_send: now,
            incoming: None,
            reason: None,
        }
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn is_open(&self) -> bool {
        self.state == ClientState::Open
    }

    /// Why the connection ended or is ending.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Bytes to write to the socket; the caller drains what it wrote.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Output reached the socket at `now` (heartbeats are due after a quiet half interval).
    pub fn sent(&mut self, now: Instant) {
        self.last_send = now;
    }

    fn method(&mut self, channel: u16, m: &Method<'_>) {
        frame::write_method(&mut self.out, channel, m);
    }

    /// Takes whole frames from `buf`, handing events to `on`; returns the bytes consumed (the
    /// rest is a partial frame), or stops after `deliveries_max` deliveries so the owner can
    /// bound its work per turn. An error means the connection is unusable.
    pub fn input(
        &mut self,
        buf: &[u8],
        now: Instant,
        deliveries_max: usize,
        on: &mut dyn FnMut(&mut Client, Event<'_>),
    ) -> Result<usize, ClientError> {
        if !buf.is_empty() {
            self.last_recv = now;
        }
        let mut pos = 0;
        let mut delivered = 0;
        while pos < buf.len() && self.state != ClientState::Closed && delivered < deliveries_max {
            let (f, len) = match parse_frame(&buf[pos..], self.frame_max.max(FRAME_MIN_SIZE)) {
                Ok(Parsed::Frame { frame, len }) => (frame, len),
                Ok(Parsed::Incomplete { .. }) => break,
                Err(e) => return Err(self.fail(format!("framing error from peer: {e:?}"))),
            };
            pos += len;
            match f.kind {
                FrameKind::Heartbeat => {}
                FrameKind::Method => {
                    let m = Method::decode(f.payload)
                        .map_err(|e| self.fail(format!("undecodable method: {e:?}")))?;
                    self.on_method(f.channel, m, on)?;
                }
                FrameKind::Header => self.on_header(f.payload)?,
                FrameKind::Body => self.on_body(f.payload)?,
            }
            if self
                .incoming
                .as_ref()
                .is_some_and(|i| i.header && i.body.len() as u64 == i.body_size)
            {
                if let Some(i) = self.incoming.take() {
                    delivered += 1;
                    on(
                        self,
                        Event::Delivery {
                            channel: i.channel,
                            delivery_tag: i.delivery_tag,
                            redelivered: i.redelivered,
                            exchange: &i.exchange,
                            routing_key: &i.routing_key,
                            properties: &i.properties,
                            body: &i.body,
                        },
                    );
                }
            }
        }
        Ok(pos)
    }

    fn fail(&mut self, reason: String) -> ClientError {
        self.state = ClientState::Closed;
        self.reason.get_or_insert_with(|| reason.clone());
        reason
    }

    fn on_method(
        &mut self,
        channel: u16,
        m: Method<'_>,
        on: &mut dyn FnMut(&mut Client, Event<'_>),
    ) -> Result<(), ClientError> {
        if self.incoming.is_some() {
            return Err(self.fail("method frame in the middle of a content".into()));
        }
        match (self.state, m) {
            (ClientState::AwaitingStart, Method::ConnectionStart(s)) => self.start(s),
            (ClientState::AwaitingTune, Method::ConnectionTune(t)) => self.tune(t),
            (ClientState::AwaitingOpenOk, Method::ConnectionOpenOk(_)) => {
                self.state = ClientState::Open;
                on(self, Event::Opened);
                Ok(())
            }
            (_, Method::ConnectionClose(c)) => {
                self.method(0, &Method::ConnectionCloseOk(ConnectionCloseOk));
                let reason = format!("{} {}", c.reply_code, String::from_utf8_lossy(c.reply_text));
                self.state = ClientState::Closed;
                self.reason.get_or_insert(reason);
                Ok(())
            }
            (ClientState::Closing, Method::ConnectionCloseOk(_)) => {
                self.state = ClientState::Closed;
                Ok(())
            }
            (ClientState::Closing, _) => Ok(()),
            (ClientState::Open, Method::BasicDeliver(d)) => {
                self.incoming = Some(Incoming {
                    channel,
                    delivery_tag: d.delivery_tag,
                    redelivered: d.redelivered,
                    exchange: d.exchange.to_vec(),
                    routing_key: d.routing_key.to_vec(),
                    ..Default::default()
                });
                Ok(())
            }
            (ClientState::Open, Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_)) => {
                Ok(())
            }
            (ClientState::Open, m) => {
                on(self, Event::Method { channel, method: m });
                Ok(())
            }
            (state, m) => Err(self.fail(format!("unexpected {} in state {state:?}", m.name()))),
        }
    }

    fn start(&mut self, s: ConnectionStart<'_>) -> Result<(), ClientError> {
        if !s.mechanisms.split(|&b| b == b' ').any(|m| m == b"PLAIN") {
            return Err(self.fail("the server does not offer PLAIN".into()));
        }
        let props = client_properties();
        let response = format!("\0{}\0{}", self.login.user, self.login.password);
        let start_ok = ConnectionStartOk {
            client_properties: FieldTable::parse(&props).unwrap_or_default(),
            mechanism: b"PLAIN",
            response: response.as_bytes(),
            locale: b"en_US",
        };
        self.method(0, &Method::ConnectionStartOk(start_ok));
        self.state = ClientState::AwaitingTune;
        Ok(())
    }

    fn tune(&mut self, t: ConnectionTune) -> Result<(), ClientError> {
        let frame_max = match t.frame_max {
            0 => CLIENT_FRAME_MAX_BYTES,
            n => n.min(CLIENT_FRAME_MAX_BYTES),
        };
        if frame_max < FRAME_MIN_SIZE {
            return Err(self.fail(format!("server frame_max {frame_max} is too small")));
        }
        let heartbeat = match (t.heartbeat, self.login.heartbeat_secs) {
            (0, _) | (_, 0) => 0,
            (s, c) => s.min(c),
        };
        self.frame_max = frame_max;
        self.heartbeat = Duration::from_secs(heartbeat as u64);
        let tune_ok = ConnectionTuneOk {
            channel_max: t.channel_max,
            frame_max,
            heartbeat,
        };
        self.method(0, &Method::ConnectionTuneOk(tune_ok));
        let vhost = std::mem::take(&mut self.login.vhost);
        self.method(
            0,
            &Method::ConnectionOpen(ConnectionOpen {
                virtual_host: vhost.as_bytes(),
                ..Default::default()
            }),
        );
        self.login.vhost = vhost;
        self.state = ClientState::AwaitingOpenOk;
        Ok(())
    }

    fn on_header(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let h = ContentHeader::decode(payload).map_err(|e| self.fail(format!("{e:?}")))?;
        let Some(i) = self.incoming.as_mut().filter(|i| !i.header) else {
            return Err(self.fail("content header without a delivery".into()));
        };
        if h.class_id != CLASS_BASIC || h.body_size > MESSAGE_SIZE_MAX_BYTES {
            return Err(self.fail(format!("bad content header (body {})", h.body_size)));
        }
        i.header = true;
        i.body_size = h.body_size;
        i.properties = h.properties_raw.to_vec();
        i.body.reserve(h.body_size as usize);
        Ok(())
    }

    fn on_body(&mut self, payload: &[u8]) -> Result<(), ClientError> {
        let Some(i) = self.incoming.as_mut().filter(|i| i.header) else {
            return Err(self.fail("body frame without a content header".into()));
        };
        if (i.body.len() + payload.len()) as u64 > i.body_size {
            return Err(self.fail("body longer than its content header said".into()));
        }
        i.body.extend_from_slice(payload);
        Ok(())
    }

    /// Sends heartbeats when due; false when the peer has been silent for two intervals.
    pub fn tick(&mut self, now: Instant) -> bool {
        if self.heartbeat.is_zero() || self.state == ClientState::Closed {
            return true;
        }
        if now.saturating_duration_since(self.last_send) >= self.heartbeat / 2 {
            frame::write_heartbeat(&mut self.out);
        }
        if now.saturating_duration_since(self.last_recv) >= self.heartbeat * 2 {
            self.fail("missed heartbeats from the server".into());
            return false;
        }
        true
    }

    /// Sends connection.close (once); the connection is Closed when close-ok arrives.
    pub fn close(&mut self, text: &str) {
        if matches!(self.state, ClientState::Closing | ClientState::Closed) {
            return;
        }
        self.reason.get_or_insert_with(|| text.to_owned());
        if self.state == ClientState::AwaitingStart {
            self.state = ClientState::Closed;
            return;
        }
        let close = ConnectionClose {
            reply_code: 200,
            reply_text: text.as_bytes(),
            class_id: 0,
            method_id: 0,
        };
        self.method(0, &Method::ConnectionClose(close));
        self.state = ClientState::Closing;
    }

    pub fn channel_open(&mut self, channel: u16) {
        self.method(channel, &Method::ChannelOpen(ChannelOpen::default()));
    }

    pub fn channel_close_ok(&mut self, channel: u16) {
        self.method(channel, &Method::ChannelCloseOk(ChannelCloseOk));
    }

    pub fn confirm_select(&mut self, channel: u16) {
        self.method(
            channel,
            &Method::ConfirmSelect(ConfirmSelect { no_wait: false }),
        );
    }

    pub fn qos(&mut self, channel: u16, prefetch_count: u16) {
        let q = BasicQos {
            prefetch_count,
            ..Default::default()
        };
        self.method(channel, &Method::BasicQos(q));
    }

    /// queue.declare: passive (does it exist), or durable with no arguments, or (an empty
    /// name) a server-named exclusive queue.
    pub fn queue_declare(&mut self, channel: u16, queue: &[u8], passive: bool) {
        let d = QueueDeclare {
            queue,
            passive,
            durable: !passive && !queue.is_empty(),
            exclusive: queue.is_empty(),
            ..Default::default()
        };
        self.method(channel, &Method::QueueDeclare(d));
    }

    /// queue.declare of a durable queue with arguments (raw table entries; a federation
    /// link's upstream queue).
    pub fn queue_declare_durable(&mut self, channel: u16, queue: &[u8], arguments: &[u8]) {
        let d = QueueDeclare {
            queue,
            durable: true,
            arguments: FieldTable::parse(arguments).unwrap_or_default(),
            ..Default::default()
        };
        self.method(channel, &Method::QueueDeclare(d));
    }

    /// exchange.declare passive: does it exist (a 404 closes the channel).
    pub fn exchange_declare_passive(&mut self, channel: u16, exchange: &[u8]) {
        let d = ExchangeDeclare {
            exchange,
            passive: true,
            ..Default::default()
        };
        self.method(channel, &Method::ExchangeDeclare(d));
    }

    /// queue.bind (`bind`) or queue.unbind, with arguments (raw table entries).
    pub fn queue_binding(
        &mut self,
        channel: u16,
        bind: bool,
        queue: &[u8],
        exchange: &[u8],
        key: &[u8],
        arguments: &[u8],
    ) {
        let arguments = FieldTable::parse(arguments).unwrap_or_default();
        let m = if bind {
            Method::QueueBind(QueueBind {
                queue,
                exchange,
                routing_key: key,
                arguments,
                ..Default::default()
            })
        } else {
            Method::QueueUnbind(QueueUnbind {
                queue,
                exchange,
                routing_key: key,
                arguments,
                ..Default::default()
            })
        };
        self.method(channel, &m);
    }

    pub fn queue_delete(&mut self, channel: u16, queue: &[u8]) {
        let d = QueueDelete {
            queue,
            ..Default::default()
        };
        self.method(channel, &Method::QueueDelete(d));
    }

    pub fn consume(&mut self, channel: u16, queue: &[u8], no_ack: bool) {
        let c = BasicConsume {
            queue,
            no_ack,
            ..Default::default()
        };
        self.method(channel, &Method::BasicConsume(c));
    }

    /// basic.publish with a content header (properties as raw flags and list) and body.
    pub fn publish(
        &mut self,
        channel: u16,
        exchange: &[u8],
        routing_key: &[u8],
        properties: &[u8],
        body: &[u8],
    ) {
        let p = BasicPublish {
            exchange,
            routing_key,
            ..Default::default()
        };
        self.method(channel, &Method::BasicPublish(p));
        frame::write_content_header(
            &mut self.out,
            channel,
            CLASS_BASIC,
            body.len() as u64,
            properties,
        );
        frame::write_body(&mut self.out, channel, body, self.frame_max);
    }

    pub fn ack(&mut self, channel: u16, delivery_tag: u64, multiple: bool) {
        let a = BasicAck {
            delivery_tag,
            multiple,
        };
        self.method(channel, &Method::BasicAck(a));
    }

    pub fn nack(&mut self, channel: u16, delivery_tag: u64, multiple: bool) {
        let n = BasicNack {
            delivery_tag,
            multiple,
            requeue: true,
        };
        self.method(channel, &Method::BasicNack(n));
    }
}

const _: () = assert!(CLIENT_FRAME_MAX_BYTES as usize > FRAME_OVERHEAD);
const _: () = assert!(CLIENT_HEARTBEAT_SECS > 0);

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> Login {
        Login {
            user: "u".into(),
            password: "p".into(),
            vhost: "/".into(),
            heartbeat_secs: 10,
        }
    }

    /// A server's connection.close, written by hand: class 10 method 50, code 320, text "x",
    /// class 0, method 0.
    const CLOSE: &[u8] = &[
        1, 0, 0, 0, 0, 0, 12, 0, 10, 0, 50, 1, 64, 1, b'x', 0, 0, 0, 0, 0xce,
    ];

    /// The client starts with the protocol header, answers a server's close with close-ok
    /// (bytes written by hand) and reports the server's reason.
    #[test]
    fn header_then_close_ok_to_a_server_close() {
        let now = Instant::now();
        let mut c = Client::new(login(), now);
        assert_eq!(c.output().as_slice(), b"AMQP\x00\x00\x09\x01");
        c.output().clear();
        let used = c
            .input(CLOSE, now, usize::MAX, &mut |_, _| panic!("no event"))
            .expect("input");
        assert_eq!(used, CLOSE.len());
        assert_eq!(c.state(), ClientState::Closed);
        assert_eq!(c.reason(), Some("320 x"));
        assert_eq!(
            c.output().as_slice(),
            &[1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 51, 0xce]
        );
    }

    /// A partial frame is left for the next call; garbage is an error, not a panic.
    #[test]
    fn partial_frames_wait_and_garbage_fails() {
        let now = Instant::now();
        let mut c = Client::new(login(), now);
        let used = c
            .input(&CLOSE[..10], now, usize::MAX, &mut |_, _| {})
            .expect("partial");
        assert_eq!(used, 0);
        let mut c = Client::new(login(), now);
        assert!(c
            .input(b"HTTP/1.1 200 OK\r\n", now, 1, &mut |_, _| {})
            .is_err());
        assert_eq!(c.state(), ClientState::Closed);
    }

    /// Two silent heartbeat intervals end the connection; a heartbeat is sent after half of
    /// one without output.
    #[test]
    fn heartbeats_are_sent_and_checked() {
        let now = Instant::now();
        let mut c = Client::new(login(), now);
        c.heartbeat = Duration::from_secs(10);
        c.output().clear();
        assert!(c.tick(now + Duration::from_secs(6)));
        assert_eq!(c.output().as_slice(), &[8, 0, 0, 0, 0, 0, 0, 0xce]);
        assert!(!c.tick(now + Duration::from_secs(21)));
        assert_eq!(c.state(), ClientState::Closed);
    }
}
