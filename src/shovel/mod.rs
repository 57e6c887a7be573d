//! One shovel's protocol logic, with no I/O: two `client::Client`s (source and destination),
//! the topology each needs before messages move (as RabbitMQ's shovel: a source or
//! destination queue is looked up passively and declared durable if missing; a source
//! exchange gets a server-named exclusive queue bound with the key), then consume at the
//! source and publish at the destination, acking the source per `ack-mode`. A failure at
//! either end closes both (the source requeues what was not acked) and the shovel starts
//! again after its reconnect-delay. The reactor's `shovel.rs` owns the sockets.
//!
//! An `amqp://` end (this broker) is a loopback connection to coney's own listener with the
//! internal login (`auth::internal`), not a path through the broker's API: it goes through
//! the session code every client uses (confirms once on disk, redelivered flags, credit,
//! flow control, per-turn bounds), so there is no second way into the broker to keep equal.
//! The cost is a socket pair per local end and one more encode and decode per message.
//!
//! Status as RabbitMQ's shovel_management shows it: starting (connecting and setting up),
//! running (consuming), terminated (with the reason, until the next attempt).
//!
//! A federation link (`federation::FedLink`) is the same machine: its source is the upstream
//! queue, declared with its arguments after a passive check of the upstream exchange and
//! bound with the local exchange's keys (`sync_bindings`), its destination the local
//! exchange, and each message gets `x-received-from` instead of `x-shovelled`.

pub mod federation;
pub mod transfer;

use crate::client::uri::{self, AmqpUri};
use crate::client::{Client, Event, Login};
use crate::definitions::shovel::{AckMode, DeleteAfter, ShovelSpec, Source};
use crate::limits::CLIENT_SETUP_TIMEOUT_SECS;
use crate::protocol::Method;
use federation::{FedLink, Forward};
use log::info;
use std::time::{Duration, Instant};
use transfer::{ForwardInfo, InFlightWindow};

pub const SRC: usize = 0;
pub const DEST: usize = 1;
const SIDE: [&str; 2] = ["source", "destination"];

/// Channels a link uses: messages move on MAIN; a queue is looked up passively on LOOKUP
/// (a 404 closes that channel, not MAIN) and declared on DECLARE.
const MAIN: u16 = 1;
const LOOKUP: u16 = 2;
const DECLARE: u16 = 3;

/// The shovels as the management API lists them.
pub trait ShovelList {
    fn each(&self, f: &mut dyn FnMut(&Shovel));
    /// Asks for the dynamic shovel `name` of `vhost` to be stopped and started again from
    /// its definition (the API's restart); false when there is no such shovel. The owner of
    /// the shovels acts on it at its next turn, where it has the sockets to close.
    fn restart(&mut self, vhost: &str, name: &str) -> bool;
    /// The same for the federation link with this `id` (the federation_management plugin's
    /// restart, which looks the link up by id alone).
    fn restart_link(&mut self, id: &str) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Static,
    Dynamic,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Static => "static",
            Kind::Dynamic => "dynamic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Running,
    Terminated,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Terminated => "terminated",
        }
    }
}

/// Where a link is in its setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Handshake,
    OpenMain,
    Confirm,
    OpenLookup,
    Lookup,
    OpenDeclare,
    Declare,
    DeclareExclusive,
    Bind,
    /// Federation: the upstream exchange is looked up, then the upstream queue declared.
    FedExchange,
    FedQueue,
    Ready,
    Consume,
    Running,
}

/// One end: its client and setup step.
pub struct Link {
    pub client: Client,
    pub uri: AmqpUri,
    step: Step,
    /// The queue this link looks up, declares or consumes from.
    queue: Vec<u8>,
}

pub struct Shovel {
    pub name: String,
    pub vhost: String,
    pub kind: Kind,
    pub spec: ShovelSpec,
    /// The parameter value it was made from (dynamic), to notice a change.
    pub value: serde_json::Value,
    status: Status,
    reason: Option<String>,
    /// Wall-clock ms of the last status change, for the status listing.
    pub since_ms: u64,
    pub links: [Option<Link>; 2],
    window: InFlightWindow,
    /// The highest source tag to ack with multiple after this batch (on-publish).
    ack_upto: Option<u64>,
    /// Messages still to move before the shovel deletes itself (src-delete-after).
    remaining: Option<u64>,
    pub moved: u64,
    /// When the next attempt may start.
    retry_at: Option<Instant>,
    setup_deadline: Option<Instant>,
    forward: Option<ForwardInfo>,
    /// Deliveries taken this turn (bounded by SHOVEL_MESSAGES_PER_TURN_MAX).
    pub taken_this_turn: usize,
    /// The reason of the last failure logged, until the shovel runs again.
    last_failure: Option<String>,
    /// What makes it a federation link; None for a shovel.
    pub federation: Option<Box<FedLink>>,
}

impl Shovel {
    /// "shovel 'NAME' in vhost 'V'" or "federation link 'X' <- upstream 'U' in vhost 'V'".
    pub fn what(&self) -> String {
        match &self.federation {
            Some(f) => format!(
                "federation link of exchange '{}' from upstream '{}' in vhost '{}'",
                f.exchange, f.upstream, f.vhost
            ),
            None => format!("shovel '{}' in vhost '{}'", self.name, self.vhost),
        }
    }
}

fn set_status(s: &mut Shovel, status: Status, reason: Option<String>) {
    // A retry that fails again the same way is not logged again (one line per change, not
    // two per reconnect-delay).
    let retry = status == Status::Starting && s.status == Status::Terminated;
    let same_failure = status == Status::Terminated && reason == s.last_failure;
    if status == Status::Terminated {
        s.last_failure = reason.clone();
    } else if status == Status::Running {
        s.last_failure = None;
    }
    if (s.status != status || s.reason != reason) && !retry && !same_failure {
        match &reason {
            Some(r) => info!("{}: {} ({r})", s.what(), status.name()),
            None => info!("{}: {}", s.what(), status.name()),
        }
    }
    if s.status != status || s.reason != reason {
        s.since_ms = crate::broker::expiry::wall_clock_ms();
    }
    s.status = status;
    s.reason = reason;
}

impl Shovel {
    pub fn new(
        name: &str,
        vhost: &str,
        kind: Kind,
        spec: ShovelSpec,
        value: serde_json::Value,
        node: &str,
    ) -> Self {
        let forward = spec
            .add_forward_headers
            .then(|| forward_info(name, vhost, kind, &spec, node));
        Shovel {
            name: name.to_owned(),
            vhost: vhost.to_owned(),
            kind,
            spec,
            value,
            status: Status::Starting,
            reason: None,
            since_ms: crate::broker::expiry::wall_clock_ms(),
            links: [None, None],
            window: InFlightWindow::new(),
            ack_upto: None,
            remaining: None,
            moved: 0,
            retry_at: None,
            setup_deadline: None,
            forward,
            taken_this_turn: 0,
            last_failure: None,
            federation: None,
        }
    }

    /// A federation link: a shovel from the upstream queue into the local exchange.
    pub fn federation_link(link: FedLink) -> Self {
        let name = format!("{} <- {}", link.exchange, link.upstream);
        let vhost = link.vhost.clone();
        let spec = link.shovel_spec();
        let mut s = Shovel::new(
            &name,
            &vhost,
            Kind::Dynamic,
            spec,
            serde_json::Value::Null,
            "",
        );
        s.federation = Some(Box::new(link));
        s
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Its src-delete-after was reached and everything moved is settled (confirmed, or
    /// for the other ack modes written to the destination's socket).
    pub fn completed(&self) -> bool {
        self.remaining == Some(0)
            && self.window.is_empty()
            && self.status == Status::Running
            && self.links[DEST]
                .as_ref()
                .is_none_or(|l| l.client.pending() == 0)
    }

    /// Not connected and its reconnect-delay (if any) is over.
    pub fn due_to_start(&self, now: Instant) -> bool {
        self.links.iter().all(Option::is_none) && self.retry_at.is_none_or(|t| now >= t)
    }

    /// When it wants to be looked at without an event (a retry or setup deadline).
    pub fn deadline(&self) -> Option<Instant> {
        match (self.retry_at, self.setup_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Begins an attempt: both clients, each having its protocol header to send. The caller
    /// connects the sockets (`uri` of each link), with `local` login for `amqp://` ends.
    pub fn start(&mut self, now: Instant) -> Result<(), String> {
        // A URI without a path means vhost "/", whatever the shovel's own vhost: RabbitMQ
        // 3.10.8's shovel, asked for `amqp://` from vhost mig-down, looked in '/' (observed
        // while writing tests/shovel's migration test).
        if let Some(f) = &mut self.federation {
            self.spec.src_uri = f.next_uri();
            f.sync.reconnected();
            f.local_connection = None;
        }
        let src = uri::parse(&self.spec.src_uri, uri::DEFAULT_VHOST)?;
        let dest = uri::parse(&self.spec.dest_uri, uri::DEFAULT_VHOST)?;
        let src_queue = match &self.spec.source {
            Source::Queue(q) => q.as_bytes().to_vec(),
            Source::Exchange { .. } => Vec::new(),
        };
        let dest_queue = self
            .spec
            .dest_queue
            .as_deref()
            .unwrap_or("")
            .as_bytes()
            .to_vec();
        self.links = [link(src, src_queue, now), link(dest, dest_queue, now)].map(Some);
        self.window = InFlightWindow::new();
        self.ack_upto = None;
        self.retry_at = None;
        self.setup_deadline = Some(now + Duration::from_secs(CLIENT_SETUP_TIMEOUT_SECS));
        set_status(self, Status::Starting, None);
        Ok(())
    }

    /// Ends the attempt: both links are dropped (the caller closes the sockets after writing
    /// what they hold, e.g. connection.close) and the next attempt waits reconnect-delay.
    pub fn fail(&mut self, reason: String, now: Instant) {
        for l in self.links.iter_mut().flatten() {
            l.client.close(&reason);
        }
        self.setup_deadline = None;
        let delay = Duration::from_secs_f64(self.spec.reconnect_delay_secs.min(1e6));
        self.retry_at = Some(now + delay);
        set_status(self, Status::Terminated, Some(reason));
    }

    /// Ends this attempt now (connections closed with `reason`) and starts the next one at
    /// once instead of after reconnect-delay: a federation link's restart, which keeps its
    /// binding state so that the next attempt syncs bindings as after any failure.
    pub fn restart_now(&mut self, reason: &str, now: Instant) {
        self.fail(reason.to_owned(), now);
        self.retry_at = Some(now);
    }

    /// The links are gone (sockets closed): forget the clients.
    pub fn drop_links(&mut self) {
        self.links = [None, None];
    }

    /// Whether the attempt ended and the links should be closed.
    pub fn is_down(&self) -> bool {
        self.retry_at.is_some() && self.links.iter().any(Option::is_some)
    }

    /// Stops for good (deleted parameter or shutdown): connections closed, no retry.
    pub fn stop(&mut self, reason: &str) {
        for l in self.links.iter_mut().flatten() {
            l.client.close(reason);
        }
        self.retry_at = Some(Instant::now() + Duration::from_secs(u32::MAX as u64));
        set_status(self, Status::Terminated, Some(reason.to_owned()));
    }

    /// Timers: setup deadline and heartbeats. Returns false when the attempt failed.
    pub fn tick(&mut self, now: Instant) -> bool {
        if self.retry_at.is_some() {
            return true;
        }
        if self.setup_deadline.is_some_and(|d| now >= d) {
            self.fail("setup did not finish in time".into(), now);
            return false;
        }
        for side in [SRC, DEST] {
            if let Some(l) = &mut self.links[side] {
                if !l.client.tick(now) {
                    let r = format!("{}: missed heartbeats", SIDE[side]);
                    self.fail(r, now);
                    return false;
                }
            }
        }
        true
    }

    /// Whether the source's input may be taken now: the destination keeps up, and this
    /// turn's share of messages is not spent.
    pub fn source_may_read(&self, out_high: usize, per_turn: usize) -> bool {
        let dest_out = self.links[DEST]
            .as_ref()
            .map_or(0, |l| l.client_output_len());
        dest_out < out_high && self.taken_this_turn < per_turn
    }

    /// Feeds bytes read from one side's socket; returns the bytes consumed. An error has
    /// already failed the shovel.
    pub fn input(&mut self, side: usize, buf: &[u8], now: Instant, per_turn: usize) -> usize {
        let mut events: Vec<Owned> = Vec::new();
        let budget = per_turn.saturating_sub(self.taken_this_turn);
        let Some(link) = self.links[side].as_mut() else {
            return buf.len();
        };
        let mut deliveries = Vec::new();
        let r = link.client.input(buf, now, budget, &mut |_, ev| match ev {
            Event::Opened => events.push(Owned::Opened),
            Event::Method { channel, method } => events.push(Owned::from_method(channel, method)),
            Event::Delivery {
                delivery_tag,
                redelivered,
                exchange,
                routing_key,
                properties,
                body,
                ..
            } => deliveries.push((
                delivery_tag,
                redelivered,
                exchange.to_vec(),
                routing_key.to_vec(),
                properties.to_vec(),
                body.to_vec(),
            )),
        });
        let used = match r {
            Ok(n) => n,
            Err(e) => {
                self.fail(format!("{}: {e}", SIDE[side]), now);
                return buf.len();
            }
        };
        if link.client.state() == crate::client::ClientState::Closed {
            let why = link.client.reason().unwrap_or("closed").to_owned();
            self.fail(format!("{} closed the connection: {why}", SIDE[side]), now);
            return buf.len();
        }
        for ev in events {
            if let Err(e) = self.on_event(side, ev) {
                self.fail(format!("{}: {e}", SIDE[side]), now);
                return buf.len();
            }
        }
        for (tag, redelivered, x, rk, props, body) in deliveries {
            self.taken_this_turn += 1;
            self.forward_one(tag, redelivered, &x, &rk, &props, &body);
        }
        self.flush_acks();
        used
    }
}

fn link(uri: AmqpUri, queue: Vec<u8>, now: Instant) -> Link {
    let login = Login {
        user: uri.user.clone(),
        password: uri.password.clone(),
        vhost: uri.vhost.clone(),
        heartbeat_secs: uri.heartbeat_secs,
    };
    Link {
        client: Client::new(login, now),
        uri,
        step: Step::Handshake,
        queue,
    }
}

impl Link {
    pub fn client_output_len(&self) -> usize {
        // The client's output buffer is drained by the socket writer.
        self.client.pending()
    }

    /// Replaces the login for an `amqp://` end (coney itself).
    pub fn use_internal_login(&mut self, now: Instant) {
        let login = Login {
            user: crate::auth::internal::INTERNAL_USER.to_owned(),
            password: crate::auth::internal::secret().to_owned(),
            vhost: self.uri.vhost.clone(),
            heartbeat_secs: self.uri.heartbeat_secs,
        };
        self.client = Client::new(login, now);
    }
}

/// A method copied out of the input buffer (only what the setup and confirms read).
enum Owned {
    Opened,
    ChannelOpenOk(u16),
    ChannelClose(u16, u16, String),
    ConfirmSelectOk,
    DeclareOk(u16, Vec<u8>, u32),
    ExchangeDeclareOk,
    /// queue.bind-ok or queue.unbind-ok.
    BindOk,
    ConsumeOk,
    Ack(u64, bool),
    Nack(u64, bool),
    Cancelled,
    Other,
}

impl Owned {
    fn from_method(channel: u16, m: Method<'_>) -> Owned {
        match m {
            Method::ChannelOpenOk(_) => Owned::ChannelOpenOk(channel),
            Method::ChannelClose(c) => Owned::ChannelClose(
                channel,
                c.reply_code,
                String::from_utf8_lossy(c.reply_text).into_owned(),
            ),
            Method::ConfirmSelectOk(_) => Owned::ConfirmSelectOk,
            Method::QueueDeclareOk(d) => {
                Owned::DeclareOk(channel, d.queue.to_vec(), d.message_count)
            }
            Method::QueueBindOk(_) | Method::QueueUnbindOk(_) => Owned::BindOk,
            Method::ExchangeDeclareOk(_) => Owned::ExchangeDeclareOk,
            Method::BasicConsumeOk(_) => Owned::ConsumeOk,
            Method::BasicAck(a) => Owned::Ack(a.delivery_tag, a.multiple),
            Method::BasicNack(n) => Owned::Nack(n.delivery_tag, n.multiple),
            Method::BasicCancel(_) => Owned::Cancelled,
            _ => Owned::Other,
        }
    }
}

impl Shovel {
    fn on_event(&mut self, side: usize, ev: Owned) -> Result<(), String> {
        let ack_mode = self.spec.ack_mode;
        let federated = self.federation.is_some();
        let Some(l) = self.links[side].as_mut() else {
            return Ok(());
        };
        match (l.step, ev) {
            (Step::Handshake, Owned::Opened) => {
                l.client.channel_open(MAIN);
                l.step = Step::OpenMain;
            }
            (Step::OpenMain, Owned::ChannelOpenOk(MAIN)) => {
                if side == DEST && ack_mode == AckMode::OnConfirm {
                    l.client.confirm_select(MAIN);
                    l.step = Step::Confirm;
                } else {
                    self.after_main(side);
                }
            }
            (Step::Confirm, Owned::ConfirmSelectOk) => self.after_main(side),
            (Step::OpenLookup, Owned::ChannelOpenOk(LOOKUP)) => {
                l.client.queue_declare(LOOKUP, &l.queue, true);
                l.step = Step::Lookup;
            }
            (Step::Lookup, Owned::ChannelClose(LOOKUP, 404, _)) => {
                l.client.channel_close_ok(LOOKUP);
                l.client.channel_open(DECLARE);
                l.step = Step::OpenDeclare;
            }
            (Step::OpenDeclare, Owned::ChannelOpenOk(DECLARE)) => {
                l.client.queue_declare(DECLARE, &l.queue, false);
                l.step = Step::Declare;
            }
            (Step::Lookup | Step::Declare, Owned::DeclareOk(_, _, count)) => {
                l.step = Step::Ready;
                if side == SRC {
                    self.count_from(Some(count));
                }
                self.consume_if_ready();
            }
            (Step::DeclareExclusive, Owned::DeclareOk(MAIN, name, _)) => {
                if let Source::Exchange { exchange, key } = &self.spec.source {
                    l.client.queue_binding(
                        MAIN,
                        true,
                        &name,
                        exchange.as_bytes(),
                        key.as_bytes(),
                        &[],
                    );
                }
                l.queue = name;
                l.step = Step::Bind;
            }
            (Step::Bind, Owned::BindOk) => {
                l.step = Step::Ready;
                self.count_from(None);
                self.consume_if_ready();
            }
            (Step::FedExchange, Owned::ExchangeDeclareOk) => {
                if let Some(f) = &self.federation {
                    l.client
                        .queue_declare_durable(MAIN, f.queue.as_bytes(), &f.queue_arguments());
                }
                l.step = Step::FedQueue;
            }
            (Step::FedQueue, Owned::DeclareOk(MAIN, _, _)) => {
                l.step = Step::Ready;
                self.consume_if_ready();
            }
            // The binding sync's replies.
            (_, Owned::BindOk) if federated && side == SRC => {}
            (Step::Consume, Owned::ConsumeOk) => {
                l.step = Step::Running;
                self.setup_deadline = None;
                set_status(self, Status::Running, None);
            }
            (_, Owned::Ack(seq, multiple)) if side == DEST => self.settle(seq, multiple, true),
            (_, Owned::Nack(seq, multiple)) if side == DEST => self.settle(seq, multiple, false),
            (_, Owned::Cancelled) => return Err("the consumer was cancelled".into()),
            (_, Owned::ChannelClose(ch, code, text)) => {
                return Err(format!("channel {ch} closed: {code} {text}"))
            }
            (_, Owned::Other | Owned::ChannelOpenOk(_)) => {}
            (step, _) => return Err(format!("unexpected reply in setup step {step:?}")),
        }
        Ok(())
    }

    /// src-delete-after's count, from the source queue's length when it has one.
    fn count_from(&mut self, queue_length: Option<u32>) {
        self.remaining = match self.spec.delete_after {
            DeleteAfter::Never => None,
            DeleteAfter::QueueLength => queue_length.map(u64::from),
            DeleteAfter::Count(n) => Some(n),
        };
    }

    /// The main channel is open (and in confirm mode): set up the queue.
    fn after_main(&mut self, side: usize) {
        let Some(l) = self.links[side].as_mut() else {
            return;
        };
        if let (SRC, Some(f)) = (side, &self.federation) {
            l.client
                .exchange_declare_passive(MAIN, f.upstream_exchange.as_bytes());
            l.step = Step::FedExchange;
        } else if side == SRC && l.queue.is_empty() {
            l.client.queue_declare(MAIN, b"", false);
            l.step = Step::DeclareExclusive;
        } else if l.queue.is_empty() {
            l.step = Step::Ready;
            self.consume_if_ready();
        } else {
            l.client.channel_open(LOOKUP);
            l.step = Step::OpenLookup;
        }
    }

    /// Both ends are set up: start consuming at the source.
    fn consume_if_ready(&mut self) {
        let ready = |l: &Option<Link>| l.as_ref().is_some_and(|l| l.step == Step::Ready);
        if !(ready(&self.links[SRC]) && ready(&self.links[DEST])) {
            return;
        }
        let no_ack = self.spec.ack_mode == AckMode::NoAck;
        if let Some(d) = self.links[DEST].as_mut() {
            d.step = Step::Running;
        }
        if let Some(s) = self.links[SRC].as_mut() {
            s.client.qos(MAIN, self.spec.prefetch);
            let q = std::mem::take(&mut s.queue);
            s.client.consume(MAIN, &q, no_ack);
            s.queue = q;
            s.step = Step::Consume;
        }
    }

    fn forward_one(
        &mut self,
        tag: u64,
        redelivered: bool,
        exchange: &[u8],
        key: &[u8],
        props: &[u8],
        body: &[u8],
    ) {
        if self.remaining == Some(0) {
            // Delivered past src-delete-after (prefetch): not moved, requeued at the close.
            return;
        }
        let federated = match self
            .federation
            .as_ref()
            .map(|f| f.forward(props, redelivered))
        {
            Some(Some(Forward::Drop)) => {
                self.not_forwarded(tag);
                return;
            }
            Some(Some(Forward::Publish(p))) => Some(p),
            _ => None,
        };
        let x = self
            .spec
            .dest_exchange
            .as_deref()
            .map_or(exchange, str::as_bytes);
        let rk = self.spec.dest_key.as_deref().map_or(key, str::as_bytes);
        let forwarded = federated.or_else(|| {
            self.forward
                .as_ref()
                .and_then(|f| transfer::forward_properties(props, f, redelivered))
        });
        let Some(dest) = self.links[DEST].as_mut() else {
            return;
        };
        dest.client
            .publish(MAIN, x, rk, forwarded.as_deref().unwrap_or(props), body);
        match self.spec.ack_mode {
            AckMode::OnConfirm => self.window.published(tag),
            AckMode::OnPublish => self.ack_upto = Some(tag),
            AckMode::NoAck => {}
        }
        self.moved += 1;
        if let Some(r) = &mut self.remaining {
            *r -= 1;
        }
    }

    /// A delivery that is acked without being published (federation's max-hops), in order
    /// with the others per ack-mode.
    fn not_forwarded(&mut self, tag: u64) {
        match self.spec.ack_mode {
            AckMode::OnConfirm => {
                let actions = self.window.skipped(tag);
                self.ack_source(actions);
            }
            AckMode::OnPublish => self.ack_upto = Some(tag),
            AckMode::NoAck => {}
        }
    }

    fn settle(&mut self, seq: u64, multiple: bool, ok: bool) {
        let actions = self.window.confirm(seq, multiple, ok);
        self.ack_source(actions);
    }

    fn ack_source(&mut self, actions: transfer::Settle) {
        let Some(src) = self.links[SRC].as_mut() else {
            return;
        };
        for (tag, ack) in actions {
            if ack {
                src.client.ack(MAIN, tag, true);
            } else {
                src.client.nack(MAIN, tag, false);
            }
        }
    }

    /// on-publish: one multiple ack for the batch just published.
    fn flush_acks(&mut self) {
        if let (Some(tag), Some(src)) = (self.ack_upto.take(), self.links[SRC].as_mut()) {
            src.client.ack(MAIN, tag, true);
        }
    }

    /// Federation: sends up to `max` binds and unbinds that bring the upstream queue to the
    /// local exchange's keys, once the queue is declared. Returns whether more are waiting.
    pub fn sync_bindings(&mut self, max: usize) -> bool {
        let (Some(f), Some(l)) = (self.federation.as_mut(), self.links[SRC].as_mut()) else {
            return false;
        };
        if !matches!(l.step, Step::Ready | Step::Consume | Step::Running) {
            return false;
        }
        for ((key, args), bind) in f.sync.next_ops(max) {
            let (q, x) = (f.queue.as_bytes(), f.upstream_exchange.as_bytes());
            l.client.queue_binding(MAIN, bind, q, x, &key, &args);
        }
        f.sync.pending()
    }

    /// Federation, the link removed: the upstream queue is deleted (RabbitMQ's
    /// resource-cleanup-mode default) when connected; else it stays until its x-expires.
    pub fn delete_upstream_queue(&mut self) {
        let (Some(f), Some(l)) = (self.federation.as_ref(), self.links[SRC].as_mut()) else {
            return;
        };
        if f.spec.keep_upstream_queue || !matches!(l.step, Step::Consume | Step::Running) {
            return;
        }
        l.client.queue_delete(MAIN, f.queue.as_bytes());
    }

    /// A status row's fields: (src_uri, dest_uri) without credentials.
    pub fn uris(&self) -> (String, String) {
        (
            uri::redact(&self.spec.src_uri),
            uri::redact(&self.spec.dest_uri),
        )
    }
}

/// RabbitMQ 3.10's `x-shovelled` table: who shovelled, and the definition's ends.
fn forward_info(name: &str, vhost: &str, kind: Kind, spec: &ShovelSpec, node: &str) -> ForwardInfo {
    let mut entries = vec![
        ("shovelled-by", node.to_owned()),
        ("shovel-type", kind.name().to_owned()),
        ("shovel-name", name.to_owned()),
        ("shovel-vhost", vhost.to_owned()),
        ("src-uri", uri::redact(&spec.src_uri)),
        ("dest-uri", uri::redact(&spec.dest_uri)),
    ];
    match &spec.source {
        Source::Queue(q) => entries.push(("src-queue", q.clone())),
        Source::Exchange { exchange, key } => {
            entries.push(("src-exchange", exchange.clone()));
            entries.push(("src-exchange-key", key.clone()));
        }
    }
    match (&spec.dest_queue, &spec.dest_exchange) {
        (Some(q), _) => entries.push(("dest-queue", q.clone())),
        (None, Some(x)) => {
            entries.push(("dest-exchange", x.clone()));
            if let Some(k) = &spec.dest_key {
                entries.push(("dest-exchange-key", k.clone()));
            }
        }
        (None, None) => {}
    }
    ForwardInfo { entries }
}
