//! One AMQP connection's protocol state: the handshake (protocol header, start, tune, open),
//! frame dispatch to channels, connection-level close and heartbeats. Knows the protocol and
//! the broker, not sockets: bytes in (`handle_input`), frames out into the connection's
//! `Outbox`, which the network layer owns and passes in on every call.
//!
//! State machine: AwaitingHeader → AwaitingStartOk → AwaitingTuneOk → AwaitingOpen → Open →
//! Closing (we sent connection.close) → Closed (flush, then the socket goes).

mod body_stream;
/// Test input for the network layer's read path.
#[cfg(test)]
pub(crate) use body_stream::tests as body_test_support;
mod channel;
mod channels;
mod consume;
pub mod delivery;
mod dispatch;
mod entities;
mod flow;
mod handshake;
pub use handshake::Transport;
pub mod info;
mod publish;
pub(crate) use publish::publish_props;
mod reply_to;
pub mod stats;

use crate::broker::queue::QueueId;
use crate::broker::{Actor, Broker, ConnId};
use crate::config::Config;
use crate::error::{AmqpError, Show};
use crate::limits;
use crate::protocol::constants::{CLASS_CONNECTION, FRAME_OVERHEAD, PROTOCOL_HEADER};
use crate::protocol::frame::{self, FrameError, FrameKind};
use crate::protocol::method::*;
use crate::protocol::wire::WireError;
use crate::protocol::{Frame, Outbox, Parsed, ReplyCode};
use log::{debug, info};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use flow::FlowState;

/// Connection lifecycle; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    AwaitingHeader,
    AwaitingStartOk,
    AwaitingTuneOk,
    AwaitingOpen,
    Open,
    /// We sent connection.close; only close-ok (or close) is read now.
    Closing,
    /// Nothing more is read; the socket closes once the output is flushed.
    Closed,
}

/// What the client said it supports in start-ok's capabilities table.
#[derive(Debug, Clone, Copy, Default)]
struct ClientCaps {
    consumer_cancel_notify: bool,
    connection_blocked: bool,
    authentication_failure_close: bool,
}

/// What the broker and config a session works against; passed to every handler.
pub struct Ctx<'a> {
    pub broker: &'a mut Broker,
    pub config: &'a Config,
    pub now: Instant,
    /// A resource alarm is raised (its connection.blocked reason): publishers are not read.
    pub alarm: Option<&'static str>,
}

pub struct Session {
    id: ConnId,
    peer: SocketAddr,
    state: State,
    frame_max: u32,
    channel_max: u16,
    heartbeat_secs: u16,
    channels: channels::Channels,
    user: String,
    /// After connection.open: the vhost and the rights every channel method acts with.
    actor: Option<Actor>,
    caps: ClientCaps,
    client_product: String,
    /// start-ok's client properties as sent (a field table), for the management API.
    client_properties: Box<[u8]>,
    opened_at: Instant,
    last_recv: Instant,
    last_send: Instant,
    closing_since: Option<Instant>,
    /// Why the connection is ending, for the log line.
    close_reason: Option<String>,
    /// Delivery output crossed the high-water mark; queues wait until it drains.
    throttled: bool,
    /// A channel published in confirm mode this turn; acks go out at flush time.
    confirms_pending: bool,
    /// Confirms owed on channels already released by a client close: (channel, seq, multiple,
    /// refused).
    final_confirms: Vec<(u16, u64, bool, bool)>,
    /// connection.close-ok is written after `final_confirms`.
    close_ok_pending: bool,
    /// This connection has published; alarms block it.
    publisher: bool,
    /// Not read while a resource alarm lasts.
    blocked: bool,
    /// connection.blocked was sent and connection.unblocked is owed.
    blocked_sent: bool,
    /// Publisher flow: not read while a queue it published into drains (`flow.rs`).
    flow: Option<flow::FlowPause>,
    /// When the last flow pause ended, for `flow_state`.
    flow_ended: Option<Instant>,
    /// A queue this connection drains with its own acks, so it is never paused for it;
    /// forgotten when its consumers change.
    flow_exempt: Option<QueueId>,
    /// A large body frame part-way through (`body_stream.rs`).
    body_in_flight: Option<body_stream::BodyInFlight>,
    /// How much body a publish on this connection may have reserved when its header arrives.
    body_reserve: body_stream::BodyReserve,
    settle_scratch: Vec<channel::Unacked>,
    /// The message just routed went to the default exchange: one lookup and one queue, so the
    /// input deadline need not be checked after it (read and cleared by `handle_input_until`).
    cheap_route: bool,
    /// Plain or TLS, and the client certificate (`handshake.rs`, for SASL EXTERNAL).
    transport: Transport,
    /// Logged in with coney's internal login (`auth::internal`): full rights in the vhost.
    internal: bool,
    /// The SASL mechanism the client logged in with ("" before start-ok).
    auth_mechanism: &'static str,
    /// The rate epoch of the broker's clock when input was last handled, for the channel
    /// counters of events that have no broker at hand (`stats.rs`).
    rate_epoch: u64,
}

/// RabbitMQ's rendering of a frame in error texts: "type 1, all octets = <<0,60>>".
fn describe_frame(kind: u8, payload: &[u8]) -> String {
    const SHOWN_MAX: usize = 16;
    let shown = &payload[..payload.len().min(SHOWN_MAX)];
    let which = if payload.len() > SHOWN_MAX {
        "first 16 octets"
    } else {
        "all octets"
    };
    format!("type {kind}, {which} = {}", erlang_binary(shown, true))
}

/// A binary as Erlang prints it: `<<"text">>` when printable and `pretty` (~p), otherwise
/// `<<1,2,3>>` (~w).
fn erlang_binary(b: &[u8], pretty: bool) -> String {
    if pretty
        && !b.is_empty()
        && b.iter()
            .all(|c| (0x20..0x7f).contains(c) && *c != b'"' && *c != b'\\')
    {
        return format!("<<\"{}\">>", String::from_utf8_lossy(b));
    }
    let list: Vec<String> = b.iter().map(|c| c.to_string()).collect();
    format!("<<{}>>", list.join(","))
}

/// Whether a method frame is one whose work is small and bounded: basic.publish (the message
/// is routed when its content is complete) and a single ack, nack or reject. Read from the
/// payload: class and method ids, then for ack and nack the delivery tag and the bits, whose
/// first is `multiple`.
fn is_cheap(f: &Frame<'_>) -> bool {
    if f.kind != FrameKind::Method {
        return false;
    }
    let single = || f.payload.get(12).is_some_and(|bits| bits & 1 == 0);
    match f.payload.get(..4) {
        Some([0, 60, 0, 40]) | Some([0, 60, 0, 90]) => true,
        Some([0, 60, 0, 80]) | Some([0, 60, 0, 120]) => single(),
        _ => false,
    }
}

/// Whether a method's arguments may hold a password or token (start-ok, secure-ok,
/// update-secret): their bytes never go into an error text or a log line.
fn carries_credentials((class_id, method_id): (u16, u16)) -> bool {
    class_id == CLASS_CONNECTION && matches!(method_id, 11 | 21 | 70)
}

/// Frame-level failure while reading, with RabbitMQ's texts. `buf` starts at the frame.
fn frame_error_to_amqp(e: FrameError, buf: &[u8]) -> AmqpError {
    let kind = buf.first().copied().unwrap_or(0);
    match e {
        FrameError::BadType { kind } => {
            // RabbitMQ reads the whole frame first; show what of its payload has arrived.
            let size = buf
                .get(3..7)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
            let payload = buf.get(7..).map_or(&[][..], |p| &p[..p.len().min(size)]);
            AmqpError::frame_error(format_args!(
                "{}: unknown_frame",
                describe_frame(kind, payload)
            ))
        }
        FrameError::TooLarge { size, frame_max } => AmqpError::frame_error(format_args!(
            "{}: {{frame_too_large,{size},{}}}",
            describe_frame(kind, &[]),
            frame_max.saturating_sub(FRAME_OVERHEAD as u32)
        )),
        FrameError::BadEnd { found } => {
            let size = buf
                .get(3..7)
                .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
            let payload = buf.get(7..7 + size).unwrap_or(&[]);
            AmqpError::frame_error(format_args!(
                "{}: {{invalid_frame_end_marker,{found}}}",
                describe_frame(kind, payload)
            ))
        }
    }
}

impl Session {
    pub fn new(id: ConnId, peer: SocketAddr, config: &Config, now: Instant) -> Self {
        Session {
            id,
            peer,
            state: State::AwaitingHeader,
            frame_max: config.frame_max,
            channel_max: config.channel_max,
            heartbeat_secs: 0,
            channels: channels::Channels::default(),
            user: String::new(),
            actor: None,
            caps: ClientCaps::default(),
            client_product: String::new(),
            client_properties: Box::new([]),
            opened_at: now,
            last_recv: now,
            last_send: now,
            closing_since: None,
            close_reason: None,
            throttled: false,
            confirms_pending: false,
            final_confirms: Vec::new(),
            close_ok_pending: false,
            publisher: false,
            blocked: false,
            blocked_sent: false,
            flow: None,
            flow_ended: None,
            flow_exempt: None,
            body_in_flight: None,
            body_reserve: body_stream::BodyReserve::default(),
            settle_scratch: Vec::new(),
            cheap_route: false,
            transport: Transport::Plain,
            internal: false,
            auth_mechanism: "",
            rate_epoch: 0,
        }
    }

    pub fn reads_input(&self) -> bool {
        self.state != State::Closed
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The frame size negotiated in tune-ok (the server's offer before that).
    pub fn frame_max(&self) -> u32 {
        self.frame_max
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The user that logged in ("" before start-ok).
    pub(crate) fn user(&self) -> &str {
        &self.user
    }

    /// Logged in with coney's internal login (a shovel's `amqp://` end).
    pub(crate) fn is_internal(&self) -> bool {
        self.internal
    }

    /// Why the connection is ending, for the log line.
    pub(crate) fn close_reason(&self) -> Option<&str> {
        self.close_reason.as_deref()
    }

    /// Confirms (or close-ok after them) are owed once this turn's store sync is done.
    pub(crate) fn confirms_pending(&self) -> bool {
        self.confirms_pending
    }

    /// The connection has published, so resource alarms block it.
    pub fn is_publisher(&self) -> bool {
        self.publisher
    }

    /// Not read while a resource alarm lasts.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Nothing more is read; the socket goes once the output is written.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Output reached the peer at `now` (heartbeats are sent after a quiet half interval).
    pub(crate) fn sent(&mut self, now: Instant) {
        self.last_send = now;
    }

    pub(crate) fn last_send(&self) -> Instant {
        self.last_send
    }

    fn channel_mut(&mut self, id: u16) -> Option<&mut channel::Channel> {
        self.channels.get_mut(id)
    }

    /// Consumes as many whole frames from `buf` as it can; returns the bytes consumed. The
    /// rest (a partial frame) must be offered again with more data appended.
    pub fn handle_input(&mut self, out: &mut Outbox, buf: &[u8], ctx: &mut Ctx<'_>) -> usize {
        self.handle_input_until(out, buf, ctx, None)
    }

    /// `handle_input`, stopping between frames once `deadline` has passed (after at least one
    /// frame): the rest, whole frames included, must be offered again later.
    pub fn handle_input_until(
        &mut self,
        out: &mut Outbox,
        buf: &[u8],
        ctx: &mut Ctx<'_>,
        deadline: Option<Instant>,
    ) -> usize {
        let mut pos = 0;
        let mut unchecked = 0;
        if !buf.is_empty() {
            self.last_recv = ctx.now;
        }
        self.rate_epoch = ctx.broker.rate_epoch();
        if self.state == State::AwaitingHeader {
            if buf.len() < PROTOCOL_HEADER.len() {
                // A wrong first byte need not wait for eight.
                if !PROTOCOL_HEADER.starts_with(buf) {
                    self.reject_header(out);
                    return buf.len();
                }
                return 0;
            }
            if &buf[..8] != PROTOCOL_HEADER {
                self.reject_header(out);
                return buf.len();
            }
            pos = 8;
            self.send_start(out, ctx.config);
        }
        while self.reads_input() && pos < buf.len() {
            if self.body_in_flight.is_some() {
                match self.continue_body_in_flight(out, &buf[pos..], ctx) {
                    Ok(used) => {
                        pos += used;
                        // A large body just completed its message, which was routed.
                        if self.body_in_flight.is_none()
                            && deadline.is_some_and(|d| Instant::now() >= d)
                        {
                            break;
                        }
                    }
                    Err(err) => {
                        self.close_connection(out, err, 0, 0, ctx);
                        self.state = State::Closed;
                        return buf.len();
                    }
                }
                continue;
            }
            if let (Some(reason), true, State::Open) = (ctx.alarm, self.publisher, self.state) {
                // Stop between frames; the rest waits in the connection's buffer.
                self.block(out, reason);
                return pos;
            }
            match frame::parse_frame(&buf[pos..], self.frame_max) {
                Ok(Parsed::Incomplete { .. }) => {
                    pos += self.start_body_in_flight(&buf[pos..]);
                    break;
                }
                Ok(Parsed::Frame { frame, len }) => {
                    pos += len;
                    let (kind, channel, cheap) = (frame.kind, frame.channel, is_cheap(&frame));
                    self.handle_frame(out, frame, ctx);
                    // A clock read costs as much as a small publish: only after a frame that
                    // may have done unbounded work (a message routed through an exchange, a
                    // method other than the hot cheap ones), and after every
                    // INPUT_CHEAP_FRAMES_PER_CLOCK_READ others (cheap is not free: a page
                    // fault per queue page, a busy machine), never inside a message.
                    let costly = match kind {
                        FrameKind::Method => !cheap,
                        FrameKind::Header | FrameKind::Body => {
                            self.completed_message(channel)
                                && !std::mem::take(&mut self.cheap_route)
                        }
                        FrameKind::Heartbeat => false,
                    };
                    unchecked += 1;
                    let due = costly
                        || (unchecked >= limits::INPUT_CHEAP_FRAMES_PER_CLOCK_READ
                            && self.completed_message(channel));
                    if due {
                        unchecked = 0;
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                    }
                }
                Err(e) => {
                    // Lost sync with the peer: answer, then read nothing more (rabbit_reader).
                    let err = frame_error_to_amqp(e, &buf[pos..]);
                    self.close_connection(out, err, 0, 0, ctx);
                    self.state = State::Closed;
                    return buf.len();
                }
            }
        }
        if !self.reads_input() {
            return buf.len();
        }
        pos
    }

    /// Whether content just handled on `channel` completed a message (which was then routed),
    /// or ended in an error.
    fn completed_message(&self, channel: u16) -> bool {
        self.channels
            .get(channel)
            .is_none_or(|c| c.publish == channel::Publish::Idle)
    }

    /// Handles one frame; errors become channel or connection closes naming the method.
    fn handle_frame(&mut self, out: &mut Outbox, f: Frame<'_>, ctx: &mut Ctx<'_>) {
        if self.state == State::Closing && (f.channel != 0 || f.kind != FrameKind::Method) {
            // Waiting for close-ok: whatever the client sent before it saw our close is
            // dropped without an answer (spec: "discard all frames").
            return;
        }
        let mut ids = (0, 0);
        let result = match f.kind {
            FrameKind::Heartbeat if f.channel != 0 => {
                Err(AmqpError::unexpected_frame(describe_frame(8, f.payload)))
            }
            FrameKind::Heartbeat => Ok(()),
            FrameKind::Method => match Method::decode(f.payload) {
                Ok(method) => {
                    ids = method.id();
                    if f.channel == 0 {
                        self.handle_connection_method(out, method, ctx)
                    } else {
                        self.handle_channel_method(out, f.channel, method, ctx)
                    }
                }
                Err(WireError::UnknownMethod {
                    class_id,
                    method_id,
                }) => {
                    // RabbitMQ's reader exits on an unknown method id without a close: the
                    // peer speaks something we cannot follow, so the socket just goes.
                    self.close_reason =
                        Some(format!("unknown method id {{{class_id},{method_id}}}"));
                    self.release(ctx);
                    self.state = State::Closed;
                    return;
                }
                Err(_) => {
                    if let [c0, c1, m0, m1, ..] = *f.payload {
                        ids = (u16::from_be_bytes([c0, c1]), u16::from_be_bytes([m0, m1]));
                    }
                    let args = f.payload.get(4..).unwrap_or(&[]);
                    if carries_credentials(ids) {
                        // RabbitMQ shows (and logs) the bytes; these may hold a password.
                        Err(AmqpError::frame_error(format_args!(
                            "cannot decode <<{} bytes of credentials, not shown>>",
                            args.len()
                        )))
                    } else {
                        Err(AmqpError::frame_error(format_args!(
                            "cannot decode {}",
                            erlang_binary(args, false)
                        )))
                    }
                }
            },
            FrameKind::Header | FrameKind::Body if self.state != State::Open || f.channel == 0 => {
                Err(AmqpError::unexpected_frame(
                    "expected method frame, got non method frame instead",
                ))
            }
            FrameKind::Header | FrameKind::Body => self.handle_content(out, f, ctx),
        };
        if let Err(e) = result {
            self.fail_method(out, f.channel, e, ids, ctx);
        }
    }

    fn handle_connection_method(
        &mut self,
        out: &mut Outbox,
        m: Method<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), AmqpError> {
        match (self.state, m) {
            (State::AwaitingStartOk, Method::ConnectionStartOk(s)) => self.start_ok(out, s, ctx),
            (State::AwaitingTuneOk, Method::ConnectionTuneOk(t)) => self.tune_ok(t, ctx),
            (State::AwaitingOpen, Method::ConnectionOpen(o)) => self.open(out, o, ctx),
            (State::Closing, Method::ConnectionCloseOk(_))
            | (State::Closing, Method::ConnectionClose(_)) => {
                if matches!(m, Method::ConnectionClose(_)) {
                    out.method(0, &Method::ConnectionCloseOk(ConnectionCloseOk));
                }
                self.state = State::Closed;
                Ok(())
            }
            (State::Closing, _) => Ok(()),
            (_, Method::ConnectionClose(c)) => {
                self.close_reason = Some(format!(
                    "client closed: {} {}",
                    c.reply_code,
                    Show(c.reply_text)
                ));
                // Publishes that arrived with the close still get their confirms, after this
                // turn's store sync and before close-ok (flush_confirms writes both).
                self.take_final_confirms();
                self.release(ctx);
                self.close_ok_pending = true;
                self.confirms_pending = true;
                self.state = State::Closed;
                Ok(())
            }
            (State::Open, Method::ConnectionUpdateSecret(_)) => {
                out.method(
                    0,
                    &Method::ConnectionUpdateSecretOk(ConnectionUpdateSecretOk),
                );
                Ok(())
            }
            (State::Open, Method::ConnectionBlocked(_))
            | (State::Open, Method::ConnectionUnblocked(_)) => Ok(()),
            (_, m) => Err(AmqpError::command_invalid(format_args!(
                "unexpected method {} on channel 0 in state {:?}",
                m.name(),
                self.state
            ))),
        }
    }

    /// Sends connection.close for a hard error and waits for close-ok.
    fn close_connection(
        &mut self,
        out: &mut Outbox,
        e: AmqpError,
        class_id: u16,
        method_id: u16,
        ctx: &mut Ctx<'_>,
    ) {
        info!("[conn {}] closing {}: {}", self.id.0, self.peer, e);
        self.close_reason = Some(e.to_string());
        let close = ConnectionClose {
            reply_code: e.code.code(),
            reply_text: e.text.as_bytes(),
            class_id,
            method_id,
        };
        out.method(0, &Method::ConnectionClose(close));
        self.release(ctx);
        self.state = State::Closing;
        self.closing_since = Some(ctx.now);
    }

    /// The one place an error becomes a frame: soft errors close the channel, hard errors
    /// (and any error on channel 0) the connection.
    fn fail_method(
        &mut self,
        out: &mut Outbox,
        channel: u16,
        e: AmqpError,
        ids: (u16, u16),
        ctx: &mut Ctx<'_>,
    ) {
        let login =
            matches!(self.state, State::AwaitingStartOk) && e.code == ReplyCode::AccessRefused;
        if login && !self.caps.authentication_failure_close {
            // Clients that cannot read a close during the handshake just see the socket go.
            self.close_reason = Some(e.to_string());
            self.state = State::Closed;
            return;
        }
        if e.is_hard() || channel == 0 || self.state != State::Open {
            // A refused login names no method (RabbitMQ sends 0/0).
            let ids = if login { (0, 0) } else { ids };
            self.close_connection(out, e, ids.0, ids.1, ctx);
            return;
        }
        debug!("[conn {} ch {}] channel error: {}", self.id.0, channel, e);
        self.release_channel(channel, ctx);
        if let Some(ch) = self.channel_mut(channel) {
            ch.closing = true;
        }
        let close = ChannelClose {
            reply_code: e.code.code(),
            reply_text: e.text.as_bytes(),
            class_id: ids.0,
            method_id: ids.1,
        };
        out.method(channel, &Method::ChannelClose(close));
    }

    /// Releases everything the connection holds in the broker: unacked deliveries go back to
    /// their queues, consumers are removed, exclusive queues deleted.
    pub fn release(&mut self, ctx: &mut Ctx<'_>) {
        let ids: Vec<u16> = self.channels.ids().collect();
        for id in ids {
            self.release_channel(id, ctx);
        }
        self.channels.clear();
        ctx.broker.connection_closed(self.id);
    }

    /// Heartbeats and deadlines; called about once a second. Returns false if the connection
    /// must be dropped now (without the close handshake).
    pub fn tick(&mut self, out: &mut Outbox, now: Instant, config: &Config) -> bool {
        let since_open = now.saturating_duration_since(self.opened_at);
        match self.state {
            State::Open => {}
            State::Closing => {
                let since = self
                    .closing_since
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                if since >= Duration::from_secs(limits::CLOSE_TIMEOUT_SECS) {
                    self.close_reason
                        .get_or_insert_with(|| "no close-ok from client".into());
                    return false;
                }
                return true;
            }
            State::Closed => return true,
            _ => {
                if since_open >= Duration::from_secs(config.handshake_timeout_secs) {
                    self.close_reason = Some("handshake timeout".into());
                    return false;
                }
                return true;
            }
        }
        if self.heartbeat_secs == 0 {
            return true;
        }
        if self.blocked || self.flow.is_some() {
            // We are not reading, so the peer's heartbeats wait unread in the socket: its
            // silence is ours (RabbitMQ pauses its heartbeat monitor while blocked).
            self.last_recv = now;
        }
        let hb = Duration::from_secs(self.heartbeat_secs as u64);
        if now.saturating_duration_since(self.last_recv) >= hb * 2 {
            self.close_reason = Some(format!(
                "missed heartbeats from client, timeout: {}s",
                self.heartbeat_secs
            ));
            return false;
        }
        // Send when half an interval passed without output, so the peer never waits a whole one.
        if now.saturating_duration_since(self.last_send) >= hb / 2 && out.pending() == 0 {
            out.heartbeat();
            self.last_send = now;
        }
        true
    }

    /// Closes the connection from the server side with 320 CONNECTION_FORCED (shutdown).
    pub(crate) fn force_close(&mut self, out: &mut Outbox, reason: &str, ctx: &mut Ctx<'_>) {
        match self.state {
            State::Open | State::AwaitingOpen | State::AwaitingTuneOk => self.close_connection(
                out,
                AmqpError::new(ReplyCode::ConnectionForced, reason),
                0,
                0,
                ctx,
            ),
            State::Closing | State::Closed => {}
            State::AwaitingHeader | State::AwaitingStartOk => {
                self.close_reason = Some(reason.into());
                self.state = State::Closed;
            }
        }
    }

    /// Stops reading a publisher during a resource alarm (RabbitMQ: connection.blocked).
    pub fn block(&mut self, out: &mut Outbox, reason: &str) {
        self.blocked = true;
        if self.caps.connection_blocked && !self.blocked_sent && self.state == State::Open {
            out.method(
                0,
                &Method::ConnectionBlocked(ConnectionBlocked {
                    reason: reason.as_bytes(),
                }),
            );
            self.blocked_sent = true;
        }
    }

    /// The alarm cleared: read again, and tell a client that was told it was blocked.
    pub fn unblock(&mut self, out: &mut Outbox) {
        self.blocked = false;
        if self.blocked_sent && self.state == State::Open {
            out.method(0, &Method::ConnectionUnblocked(ConnectionUnblocked));
        }
        self.blocked_sent = false;
    }

    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::write_method;
    use crate::protocol::FieldTable;

    /// A deadline stops input between frames, after at least one: the rest, whole frames
    /// included, is left for the caller to offer again.
    #[test]
    fn input_stops_between_frames_at_the_deadline() {
        let config = Config::default();
        let mut broker = Broker::new();
        let now = Instant::now();
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let mut session = Session::new(ConnId(0), peer, &config, now);
        let mut input = PROTOCOL_HEADER.to_vec();
        let start_ok = ConnectionStartOk {
            client_properties: FieldTable::EMPTY,
            mechanism: b"PLAIN",
            response: b"\0guest\0guest",
            locale: b"en_US",
        };
        write_method(&mut input, 0, &Method::ConnectionStartOk(start_ok));
        let tune_ok = ConnectionTuneOk {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 0,
        };
        write_method(&mut input, 0, &Method::ConnectionTuneOk(tune_ok));
        let open = ConnectionOpen {
            virtual_host: b"/",
            ..Default::default()
        };
        write_method(&mut input, 0, &Method::ConnectionOpen(open));
        let mut ctx = Ctx {
            broker: &mut broker,
            config: &config,
            now,
            alarm: None,
        };
        let mut out = Outbox::default();
        assert_eq!(
            session.handle_input(&mut out, &input, &mut ctx),
            input.len()
        );
        assert!(session.is_open());
        let mut frames = Vec::new();
        for ch in 1..=10 {
            write_method(
                &mut frames,
                ch,
                &Method::ChannelOpen(ChannelOpen::default()),
            );
        }
        let one = frames.len() / 10;
        let past = Some(now);
        let used = session.handle_input_until(&mut out, &frames, &mut ctx, past);
        assert_eq!(used, one, "one frame, then the deadline");
        let rest = &frames[used..];
        let used = session.handle_input_until(&mut out, rest, &mut ctx, None);
        assert_eq!(used, rest.len(), "no deadline: everything");
        assert_eq!(session.channels.len(), 10);
        // A publish is not cut between its method and its content: the clock is read once
        // the message is routed through an exchange; the default exchange's single lookup
        // does not need it.
        let publishes = |exchange: &'static [u8], n: usize| {
            let mut bytes = Vec::new();
            for _ in 0..n {
                let publish = BasicPublish {
                    exchange,
                    routing_key: b"nowhere",
                    ..Default::default()
                };
                write_method(&mut bytes, 1, &Method::BasicPublish(publish));
                crate::protocol::frame::write_content_header(&mut bytes, 1, 60, 0, &[0, 0]);
            }
            bytes
        };
        let routed = publishes(b"amq.direct", 3);
        let used = session.handle_input_until(&mut out, &routed, &mut ctx, past);
        assert_eq!(
            used,
            routed.len() / 3,
            "one whole publish, then the deadline"
        );
        let default = publishes(b"", 3);
        let used = session.handle_input_until(&mut out, &default, &mut ctx, past);
        assert_eq!(
            used,
            default.len(),
            "default-exchange publishes need no clock"
        );
        // ... but not none at all: whole publishes up to INPUT_CHEAP_FRAMES_PER_CLOCK_READ
        // frames, then the deadline.
        let many = publishes(b"", 1000);
        let used = session.handle_input_until(&mut out, &many, &mut ctx, past);
        let per_publish = many.len() / 1000;
        assert_eq!(used % per_publish, 0, "whole publishes");
        assert_eq!(
            used / per_publish,
            limits::INPUT_CHEAP_FRAMES_PER_CLOCK_READ / 2
        );
        session.release(&mut ctx);
    }
}
