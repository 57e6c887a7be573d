//! The event loop: one `mio::Poll` owning the listeners (plain and TLS AMQP), the signal pipe
//! and every connection.
//! Each turn: poll → accept → read ready connections (with a byte budget each) → deliver from
//! queues that can → resume publishers whose queues drained → commit → flush output (one
//! write per connection) → timers → close the dead. The only module that sees `mio::Poll`.

mod http;
mod shovel;
mod signal;

use crate::broker::expiry::wall_clock_ms;
use crate::broker::{Broker, ConnId};
use crate::config::Config;
use crate::limits::*;
use crate::mgmt::{self, ConnRow, Management};
use crate::net::conn::{Conn, ReadOutcome};
use crate::protocol::Outbox;
use crate::resources::Alarms;
use crate::session::delivery::{self, Sessions};
use crate::session::{Ctx, Session};
use log::{error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const TLS_LISTENER: Token = Token(2);
const FIRST_CONNECTION_TOKEN: usize = 3;

/// The amqps listener's keys and settings, loaded before the reactor binds.
pub type TlsKeys = std::sync::Arc<rustls::ServerConfig>;

/// Reads `ssl_options.*` files when `listeners.ssl.default` is set. An error names the file
/// and the problem; the broker must not start without the TLS it was configured with.
pub fn load_tls(config: &Config) -> Result<Option<TlsKeys>, String> {
    match config.tls.listen {
        Some(_) => crate::net::tls::server_config(&config.tls).map(Some),
        None => Ok(None),
    }
}

fn token_of(key: usize) -> Token {
    Token(key + FIRST_CONNECTION_TOKEN)
}

/// Timers are checked once per this interval (heartbeats, handshake and close deadlines).
const TICK: Duration = Duration::from_secs(1);
/// How long shutdown waits for clients to take their connection.close before exiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The connection table, as delivery sees it.
struct Table<'a> {
    conns: &'a mut Slab<Conn>,
    flush: &'a mut Vec<usize>,
}

impl Sessions for Table<'_> {
    fn session_mut(&mut self, id: ConnId) -> Option<(&mut Session, &mut Outbox)> {
        let c = self.conns.get_mut(id.0 as usize)?;
        Some((&mut c.session, &mut c.out))
    }
    fn wants_flush(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(id.0 as usize) {
            if !c.queued_flush {
                c.queued_flush = true;
                self.flush.push(id.0 as usize);
            }
        }
    }
}

/// The connection table, as the management API sees it: listed in place, closed by name
/// after the HTTP pass (closing needs the broker, which the API holds meanwhile).
struct ApiTable<'a> {
    conns: &'a Slab<Conn>,
    local: Option<std::net::SocketAddr>,
    /// The TLS listener's address, for connections that came in there.
    tls_local: Option<std::net::SocketAddr>,
    to_close: &'a mut Vec<(usize, String)>,
}

impl ApiTable<'_> {
    fn row<'c>(&self, c: &'c Conn) -> Option<ConnRow<'c>> {
        let tls = c.is_tls();
        let local = if tls { self.tls_local } else { self.local }?;
        Some(ConnRow {
            session: &c.session,
            local,
            tls,
            tls_info: c.tls_info(),
            io: &c.io,
        })
    }
}

impl mgmt::Connections for ApiTable<'_> {
    fn each(&self, f: &mut dyn FnMut(&ConnRow<'_>)) {
        for (_, c) in self.conns.iter() {
            if let Some(row) = self.row(c) {
                f(&row);
            }
        }
    }

    fn close(&mut self, name: &str, reason: &str) -> bool {
        let found = self
            .conns
            .iter()
            .find(|(_, c)| self.row(c).is_some_and(|r| r.name() == name));
        match found {
            Some((key, _)) => {
                self.to_close.push((key, reason.to_owned()));
                true
            }
            None => false,
        }
    }
}

/// The listeners as the API names them.
fn listeners_of(
    amqp: Option<std::net::SocketAddr>,
    http: &http::HttpSide,
) -> Vec<(&'static str, std::net::SocketAddr)> {
    let (mgmt, prom) = http.local_addrs();
    [("amqp", amqp), ("http", mgmt), ("http/prometheus", prom)]
        .into_iter()
        .filter_map(|(p, a)| Some((p, a?)))
        .collect()
}

pub struct Reactor {
    poll: Poll,
    listener: Option<TcpListener>,
    /// The amqps listener and its keys, when configured.
    tls_listener: Option<(TcpListener, TlsKeys)>,
    /// Where the AMQP listener is bound (kept after shutdown stops listening).
    amqp_addr: Option<std::net::SocketAddr>,
    /// Where the TLS listener is bound, likewise.
    tls_addr: Option<std::net::SocketAddr>,
    http: http::HttpSide,
    /// Shovels and their outbound sockets.
    shovels: shovel::ShovelSide,
    stats: mgmt::Stats,
    /// Every listener, for the API's overview.
    listeners: Vec<(&'static str, std::net::SocketAddr)>,
    /// Connections the management API asked to close this turn, with the reason.
    api_closes: Vec<(usize, String)>,
    signals: signal::Signals,
    conns: Slab<Conn>,
    broker: Broker,
    config: Config,
    read_buf: Vec<u8>,
    /// Connections with input left after their budget, read again next turn.
    read_list: Vec<usize>,
    /// Connections that spent their budget (bytes or time) with input left: read again next
    /// turn, after the connections that became readable meanwhile, so a client that just sent
    /// one message does not wait behind a busy one's next share.
    carry_list: Vec<usize>,
    flush_list: Vec<usize>,
    /// Connections not read because of publisher flow, checked each turn for resumption.
    flow_list: Vec<usize>,
    /// Turns in a row that started without polling because work was left (see
    /// `BUSY_TURNS_WITHOUT_POLL_MAX`).
    busy_turns: u32,
    /// When the current turn's work started (after its poll).
    turn_started: Instant,
    /// Connections to remove at the end of the turn.
    close_list: Vec<usize>,
    /// Accepting paused (fd exhaustion); retried on the next tick.
    accept_paused: bool,
    last_tick: Instant,
    shutdown_at: Option<Instant>,
    /// Whether this turn's store writes reached the disk; false nacks this turn's publishes.
    stored: bool,
    alarms: Alarms,
    /// Most heap in use since memory was last handed back to the OS.
    heap_peak_bytes: usize,
    /// Connections the broker ended (vhost or user deleted), kept for its capacity.
    forced_scratch: Vec<(ConnId, String)>,
}

impl Reactor {
    /// Listens on `config.listen` (and the amqps listener when `tls` has keys) and serves
    /// `broker` (opened by the caller, `Broker::open`).
    pub fn bind(config: Config, broker: Broker, tls: Option<TlsKeys>) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(config.listen)
            .map_err(|e| io::Error::new(e.kind(), format!("AMQP on {}: {e}", config.listen)))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let tls_listener = match (config.tls.listen, tls) {
            (Some(addr), Some(keys)) => {
                let mut l = TcpListener::bind(addr).map_err(|e| {
                    io::Error::new(e.kind(), format!("AMQP over TLS on {addr}: {e}"))
                })?;
                poll.registry()
                    .register(&mut l, TLS_LISTENER, Interest::READABLE)?;
                Some((l, keys))
            }
            _ => None,
        };
        let signals = signal::Signals::install(poll.registry(), SIGNALS)?;
        let http = http::HttpSide::bind(&config, poll.registry())?;
        let amqp_addr = listener.local_addr().ok();
        let listeners = listeners_of(amqp_addr, &http);
        let shovels = shovel::ShovelSide::new(&config.shovels, amqp_addr, mgmt::node_name());
        let read_buf = vec![0u8; FRAME_MAX_BYTES as usize + READ_CHUNK_BYTES];
        let mut alarms = Alarms::new(&config);
        // Start with the disk alarm already right, not a tick later.
        alarms.check_disk(&config.data_dir);
        Ok(Reactor {
            poll,
            listener: Some(listener),
            tls_addr: tls_listener.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            tls_listener,
            amqp_addr,
            http,
            shovels,
            stats: mgmt::Stats::default(),
            listeners,
            api_closes: Vec::new(),
            signals,
            conns: Slab::new(),
            broker,
            config,
            read_buf,
            read_list: Vec::new(),
            carry_list: Vec::new(),
            flush_list: Vec::new(),
            flow_list: Vec::new(),
            busy_turns: 0,
            turn_started: Instant::now(),
            close_list: Vec::new(),
            accept_paused: false,
            last_tick: Instant::now(),
            shutdown_at: None,
            stored: true,
            alarms,
            heap_peak_bytes: 0,
            forced_scratch: Vec::new(),
        })
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match &self.listener {
            Some(l) => l.local_addr(),
            None => Err(io::Error::new(ErrorKind::NotConnected, "not listening")),
        }
    }

    /// Where the amqps listener listens, when configured.
    pub fn tls_addr(&self) -> Option<std::net::SocketAddr> {
        self.tls_addr
    }

    /// The management API's and the Prometheus endpoint's addresses, where they listen.
    pub fn http_addrs(&self) -> (Option<std::net::SocketAddr>, Option<std::net::SocketAddr>) {
        self.http.local_addrs()
    }

    /// Runs until SIGTERM or SIGINT, then closes every connection with 320 and returns.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL_MAX);
        let mut signals = Vec::new();
        while self.turn(&mut events, &mut signals)? {}
        info!("shutdown complete");
        Ok(())
    }

    /// One loop turn; false once shutdown is complete.
    fn turn(&mut self, events: &mut Events, signals: &mut Vec<i32>) -> io::Result<bool> {
        let now = Instant::now();
        if let Some(at) = self.shutdown_at {
            if self.conns.is_empty() || now >= at {
                return Ok(false);
            }
        }
        // Work left from the last turn: input past its budget (read or carried), sockets
        // still to close, queues that can deliver, the broker's and store's background work,
        // and output queued after the turn's writes (notices from connections closed at its
        // end) that would otherwise wait for the next tick.
        let busy = !self.read_list.is_empty()
            || !self.carry_list.is_empty()
            || !self.close_list.is_empty()
            || !self.flush_list.is_empty()
            || self.http.busy()
            || self.shovels.busy()
            || self.broker.has_ready()
            || self.broker.has_background_work();
        // A long last turn is followed by a poll: the poll costs little next to it, and a
        // client that just sent something waits for one long turn, not for several.
        let short = now.saturating_duration_since(self.turn_started)
            < Duration::from_micros(POLL_SKIP_AFTER_TURN_MAX_MICROS);
        if busy && short && self.busy_turns < BUSY_TURNS_WITHOUT_POLL_MAX {
            // Do it before asking the kernel for more.
            self.busy_turns += 1;
            events.clear();
        } else {
            self.busy_turns = 0;
            let timeout = if busy {
                Duration::ZERO
            } else {
                self.sleep_time(now)
            };
            if let Err(e) = self.poll.poll(events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    return Ok(true);
                }
                return Err(e);
            }
        }
        let now = Instant::now();
        self.turn_started = now;
        self.broker.begin_turn(wall_clock_ms());
        let (accept, accept_tls) = self.note_events(events, signals, now);
        for sig in signals.drain(..) {
            self.on_signal(sig, now);
        }
        if self.alarms.check_memory() {
            self.on_alarm_change(now);
        }
        if accept && !self.accept_paused {
            self.accept(now, false);
        }
        if accept_tls && !self.accept_paused {
            self.accept(now, true);
        }
        self.read_ready(now);
        self.serve_http(now);
        self.shovels.turn(
            now,
            &mut self.read_buf,
            self.poll.registry(),
            &mut self.broker,
        );
        self.broker.expire_due();
        self.deliver_notices(now);
        self.deliver();
        self.resume_flow(now);
        self.persist();
        self.flush(now);
        if now.saturating_duration_since(self.last_tick) >= TICK {
            self.last_tick = now;
            self.tick(now);
        }
        self.close_dead(now);
        Ok(true)
    }

    /// Records what the poller reported: connections become readable or writable (and are
    /// listed for this turn), signals are collected. Returns whether the plain and the TLS
    /// listener are ready.
    fn note_events(
        &mut self,
        events: &Events,
        signals: &mut Vec<i32>,
        now: Instant,
    ) -> (bool, bool) {
        let (mut accept, mut accept_tls) = (false, false);
        for ev in events.iter() {
            match ev.token() {
                LISTENER => accept = true,
                TLS_LISTENER => accept_tls = true,
                SIGNALS => self.signals.drain(signals),
                Token(t) if t >= http::HTTP_TOKEN_BASE => {
                    self.http.on_event(t, ev, self.poll.registry(), now)
                }
                Token(t) if t >= shovel::SHOVEL_TOKEN_BASE => self.shovels.on_event(t, ev),
                Token(t) => {
                    let key = t - FIRST_CONNECTION_TOKEN;
                    let Some(c) = self.conns.get_mut(key) else {
                        continue;
                    };
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        c.readable = true;
                        c.read_closed |= ev.is_read_closed() || ev.is_error();
                        if !c.queued_read {
                            c.queued_read = true;
                            self.read_list.push(key);
                        }
                    }
                    if ev.is_writable() || ev.is_error() {
                        c.writable = true;
                        if c.has_output() && !c.queued_flush {
                            c.queued_flush = true;
                            self.flush_list.push(key);
                        }
                    }
                }
            }
        }
        (accept, accept_tls)
    }

    /// One pass over the HTTP sockets with work, then the connection closes the API asked
    /// for. Before `persist`, so what the API changed is committed with the turn.
    fn serve_http(&mut self, now: Instant) {
        if !self.http.busy() {
            return;
        }
        let mut table = ApiTable {
            conns: &self.conns,
            local: self.amqp_addr,
            tls_local: self.tls_addr,
            to_close: &mut self.api_closes,
        };
        let (broker, config, stats, alarms, listeners, shovels) = (
            &mut self.broker,
            &self.config,
            &self.stats,
            &self.alarms,
            &self.listeners[..],
            &mut self.shovels,
        );
        self.http.turn(
            now,
            &mut self.read_buf,
            self.poll.registry(),
            |endpoint, pass| {
                pass(&mut Management {
                    endpoint,
                    broker: &mut *broker,
                    conns: &mut table,
                    config,
                    stats,
                    alarms,
                    listeners,
                    shovels: &mut *shovels,
                    now,
                })
            },
        );
        for (key, reason) in std::mem::take(&mut self.api_closes) {
            self.force_close(key, &reason, now);
        }
        self.deliver_notices(now);
    }

    fn on_signal(&mut self, sig: i32, now: Instant) {
        match sig {
            libc::SIGTERM | libc::SIGINT if self.shutdown_at.is_none() => {
                info!("signal {sig}: shutting down");
                self.begin_shutdown(now);
            }
            libc::SIGHUP => crate::logfile::reopen(),
            _ => {}
        }
    }

    /// Stops accepting and closes every connection with 320 CONNECTION_FORCED.
    fn begin_shutdown(&mut self, now: Instant) {
        let alarm = self.alarm_reason();
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        if let Some((mut l, _)) = self.tls_listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.http.stop_listening(self.poll.registry());
        self.shovels
            .stop_all(now, &mut self.read_buf, self.poll.registry());
        self.shutdown_at = Some(now + SHUTDOWN_GRACE);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            let mut ctx = Ctx {
                broker: &mut self.broker,
                config: &self.config,
                now,
                alarm,
            };
            c.session.force_close(
                &mut c.out,
                "broker forced connection closure with reason 'shutdown'",
                &mut ctx,
            );
            if !c.queued_flush {
                c.queued_flush = true;
                self.flush_list.push(key);
            }
        }
    }

    /// Accepts from the plain listener, or from the TLS one when `tls`.
    fn accept(&mut self, now: Instant, tls: bool) {
        let (listener, keys) = match (tls, &self.listener, &self.tls_listener) {
            (false, Some(l), _) => (l, None),
            (true, _, Some((l, keys))) => (l, Some(keys)),
            _ => return,
        };
        loop {
            match listener.accept() {
                Ok((mut socket, peer)) => {
                    if self.conns.len() >= self.config.max_connections {
                        warn!(
                            "connection limit {} reached; refusing {peer}",
                            self.config.max_connections
                        );
                        drop(socket);
                        continue;
                    }
                    let _ = socket.set_nodelay(true);
                    let transport = match keys.map(crate::net::tls::Tls::new).transpose() {
                        Ok(t) => t,
                        Err(e) => {
                            error!("TLS session for {peer}: {e}");
                            continue;
                        }
                    };
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut socket,
                        token_of(key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        error!("register {peer}: {e}");
                        continue;
                    }
                    self.stats.connections_opened += 1;
                    let session = Session::new(ConnId(key as u32), peer, &self.config, now);
                    entry.insert(Conn::new(socket, session, transport));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: the pending socket stays in the backlog; retry on the
                    // next tick instead of spinning on a listener that stays readable.
                    warn!("accept failed: {e}; pausing accepts for a tick");
                    self.accept_paused = true;
                    return;
                }
            }
        }
    }

    /// Reads the connections with input: those that became readable first, then those
    /// carried over with input left, for at most READ_TIME_ALL_PER_TURN_MAX_MICROS in all;
    /// the ones not reached keep their place for the next turn.
    fn read_ready(&mut self, now: Instant) {
        let alarm = self.alarm_reason();
        let deadline = Instant::now() + Duration::from_micros(READ_TIME_ALL_PER_TURN_MAX_MICROS);
        let mut list = std::mem::take(&mut self.read_list);
        let fresh = list.len();
        list.append(&mut self.carry_list);
        for (i, &key) in list.iter().enumerate() {
            if i > 0 && Instant::now() >= deadline {
                // Both lists were taken whole, so only this turn's carries are in carry_list.
                let split = i.max(fresh);
                self.read_list.extend_from_slice(&list[i..split]);
                let carried = std::mem::replace(&mut self.carry_list, list[split..].to_vec());
                self.carry_list.extend(carried);
                break;
            }
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.queued_read = false;
            let mut ctx = Ctx {
                broker: &mut self.broker,
                config: &self.config,
                now,
                alarm,
            };
            let outcome = c.read(&mut self.read_buf, READ_BYTES_PER_TURN_MAX, &mut ctx);
            if let ReadOutcome::BudgetSpent = outcome {
                c.queued_read = true;
                self.carry_list.push(key);
            }
            if c.session.in_flow() && !c.queued_flow {
                c.queued_flow = true;
                self.flow_list.push(key);
            }
            if c.dead.is_some() {
                self.close_list.push(key);
            }
            if (c.has_output() || c.session.confirms_pending() || !c.session.reads_input())
                && !c.queued_flush
            {
                c.queued_flush = true;
                self.flush_list.push(key);
            }
            self.deliver_notices(now);
        }
    }

    /// Tells sessions what other connections' actions (or the broker's own) did to them;
    /// closes with 320 the connections the broker ended.
    fn deliver_notices(&mut self, now: Instant) {
        let mut forced = std::mem::take(&mut self.forced_scratch);
        let mut table = Table {
            conns: &mut self.conns,
            flush: &mut self.flush_list,
        };
        delivery::deliver_notices(&mut self.broker, &mut table, &mut forced);
        for (conn, reason) in forced.drain(..) {
            self.force_close(conn.0 as usize, &reason, now);
        }
        self.forced_scratch = forced;
    }

    /// How long the poller may sleep: until the next timer tick, the broker's earliest
    /// deadline (TTL, x-expires, delayed message) or the end of the earliest publisher flow
    /// pause.
    fn sleep_time(&self, now: Instant) -> Duration {
        let mut wake = self.last_tick + TICK;
        for &key in &self.flow_list {
            if let Some(at) = self.conns.get(key).and_then(|c| c.session.flow_deadline()) {
                wake = wake.min(at);
            }
        }
        let sleep = wake.saturating_duration_since(now);
        match self.broker.next_deadline() {
            Some(at) => sleep.min(Duration::from_millis(at.saturating_sub(wall_clock_ms()))),
            None => sleep,
        }
    }

    /// Resumes reading publishers whose flow pause ended: their queue drained (deliveries
    /// this turn, acks read) or they waited long enough. All those a queue held resume in the
    /// same turn, in the order they were paused, each with the usual read budget.
    fn resume_flow(&mut self, now: Instant) {
        if self.flow_list.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut self.flow_list);
        list.retain(|&key| {
            let Some(c) = self.conns.get_mut(key) else {
                return false;
            };
            if !c.session.flow_check(&mut self.broker, now) {
                return true;
            }
            c.queued_flow = false;
            if c.readable && !c.queued_read {
                c.queued_read = true;
                self.read_list.push(key);
            }
            false
        });
        self.flow_list = list;
    }

    fn deliver(&mut self) {
        let mut table = Table {
            conns: &mut self.conns,
            flush: &mut self.flush_list,
        };
        delivery::deliver_ready(&mut self.broker, &mut table);
    }

    fn flush(&mut self, now: Instant) {
        let list = std::mem::take(&mut self.flush_list);
        for &key in &list {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.queued_flush = false;
            c.session.flush_confirms(&mut c.out, self.stored);
            c.flush(now);
            c.session.after_write(&c.out, &mut self.broker);
            if c.resume_after_flush() && !c.queued_read {
                c.queued_read = true;
                self.read_list.push(key);
            }
            if c.out.pending() >= WRITE_BUFFER_HARD_BYTES {
                c.dead = Some(format!(
                    "output buffer above {WRITE_BUFFER_HARD_BYTES} bytes: client is not reading"
                ));
            }
            if c.dead.is_some() || c.finished() {
                self.close_list.push(key);
            }
        }
        self.flush_list = list;
        self.flush_list.clear();
    }

    /// Group commit: this turn's definition changes and message records reach the disk
    /// before any reply or confirm of the turn is written to a socket. Then a bounded slice
    /// of the store's background work (compaction, definitions snapshot).
    fn persist(&mut self) {
        self.stored = self.broker.commit_turn().is_ok();
    }

    /// After a backlog drains, glibc keeps the freed pages; hand them back once the heap has
    /// shrunk by a lot, so RSS follows the load (checked once a second, trimmed rarely).
    /// "Shrunk" compares the most heap used at any moment of the last second, not the heap
    /// at the tick: a stream of 16 MiB bodies swings the heap by tens of MiB within a second,
    /// and trimming on a low sample made the next bodies fault their pages in again (200 to
    /// 340 page faults per 16 MiB message).
    fn return_freed_memory(&mut self) {
        const TRIM_AFTER_SHRINK_BYTES: usize = 4 * 1024 * 1024;
        let now_bytes = crate::alloc::take_peak_bytes();
        self.heap_peak_bytes = self.heap_peak_bytes.max(now_bytes);
        if self.heap_peak_bytes - now_bytes >= TRIM_AFTER_SHRINK_BYTES {
            // SAFETY: malloc_trim only returns free memory of the allocator to the OS.
            unsafe {
                libc::malloc_trim(0);
            }
            self.heap_peak_bytes = now_bytes;
        }
    }

    /// Clean stop of the broker's store: records which queued messages were delivered before.
    pub fn close_store(&mut self) -> io::Result<()> {
        self.broker.close_clean()
    }

    fn alarm_reason(&self) -> Option<&'static str> {
        self.alarms.any().then(|| self.alarms.reason())
    }

    /// Blocks publishers when an alarm is raised; unblocks and resumes them when all clear.
    fn on_alarm_change(&mut self, now: Instant) {
        let reason = self.alarm_reason();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            match reason {
                Some(r) if c.session.is_publisher() && c.session.is_open() => {
                    c.session.block(&mut c.out, r)
                }
                Some(_) => continue,
                None if c.session.is_blocked() => {
                    c.session.unblock(&mut c.out);
                    let mut ctx = Ctx {
                        broker: &mut self.broker,
                        config: &self.config,
                        now,
                        alarm: None,
                    };
                    c.resume(&mut ctx);
                    if !c.queued_read {
                        c.queued_read = true;
                        c.readable = true;
                        self.read_list.push(key);
                    }
                }
                None => continue,
            }
            if !c.queued_flush {
                c.queued_flush = true;
                self.flush_list.push(key);
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        self.return_freed_memory();
        self.stats.sample(now, self.broker.counters());
        self.http.tick(now, self.poll.registry());
        self.shovels.tick(now, self.poll.registry());
        if self.accept_paused {
            // The listener is edge-triggered: sockets left in the backlog raise no new event.
            self.accept_paused = false;
            self.accept(now, false);
            self.accept(now, true);
        }
        if self.alarms.check_disk(&self.config.data_dir) {
            self.on_alarm_change(now);
        }
        for (key, c) in self.conns.iter_mut() {
            c.io.sample(now);
            c.shrink_if_idle(now);
            if !c.session.tick(&mut c.out, now, &self.config) {
                let reason = c.session.close_reason().unwrap_or("timeout");
                c.dead = Some(reason.to_owned());
                self.close_list.push(key);
            } else if c.has_output() && !c.queued_flush {
                c.queued_flush = true;
                self.flush_list.push(key);
            }
        }
        self.flush(now);
    }

    /// Closes connection `key` from the broker's side (connection.close with `reason`, as the
    /// API's DELETE and the broker's own notices ask) and queues its output; a connection
    /// already gone is skipped.
    fn force_close(&mut self, key: usize, reason: &str, now: Instant) {
        let alarm = self.alarm_reason();
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let mut ctx = Ctx {
            broker: &mut self.broker,
            config: &self.config,
            now,
            alarm,
        };
        c.session.force_close(&mut c.out, reason, &mut ctx);
        if !c.queued_flush {
            c.queued_flush = true;
            self.flush_list.push(key);
        }
    }

    /// Removes connections whose socket died or whose session finished; deferred to the end
    /// of the turn so no list holds a stale key while it runs. At most
    /// `CONNECTIONS_CLOSED_PER_TURN_MAX` per turn: the rest stay listed for the next.
    fn close_dead(&mut self, now: Instant) {
        let alarm = self.alarm_reason();
        let mut list = std::mem::take(&mut self.close_list);
        list.sort_unstable();
        list.dedup();
        let later = list.split_off(list.len().min(CONNECTIONS_CLOSED_PER_TURN_MAX));
        for &key in &list {
            let Some(mut c) = self.conns.try_remove(key) else {
                continue;
            };
            self.stats.connections_closed += 1;
            // No deregister: the socket's fd is its only one (never duplicated, no fork), so
            // closing it when `c` drops takes it out of the epoll set, and an epoll_ctl per
            // close was a quarter of a closing burst's syscalls (read, close-ok, DEL, close).
            let mut ctx = Ctx {
                broker: &mut self.broker,
                config: &self.config,
                now,
                alarm,
            };
            c.session.release(&mut ctx);
            let reason = c
                .dead
                .or_else(|| c.session.close_reason().map(str::to_owned))
                .unwrap_or_else(|| "closed".into());
            let level = if c.session.is_internal() {
                log::Level::Debug
            } else {
                log::Level::Info
            };
            log::log!(
                level,
                "[conn {}] closed {} user '{}': {}",
                key,
                c.session.peer(),
                c.session.user(),
                reason
            );
        }
        list.clear();
        list.extend(later);
        self.close_list = list;
        self.deliver_notices(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::QueueFlags;
    use crate::protocol::FieldTable;

    const QUEUES: usize = 100_000;
    const DURABLE_EVERY: usize = 10;
    const IDLE_TURNS: usize = 50;
    const SETTLE_TURNS_MAX: usize = 100_000;

    /// An idle loop turn touches no queue: with 100,000 queues (10,000 durable), each bound
    /// to amq.direct, and an idle connection, turns with nothing to do, each also running the
    /// once-a-second timers, look up or iterate no queue at all (work counted, not timed).
    #[test]
    fn idle_turns_visit_no_queue() {
        let dir = std::env::temp_dir().join(format!("coney-idle-{}", std::process::id()));
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.clone(),
            ..Config::default()
        };
        let broker = Broker::open(&config.data_dir, config.default_data().as_ref()).expect("store");
        let mut r = Reactor::bind(config, broker, None).expect("bind");
        let owner = r
            .broker
            .internal_actor(ConnId(u32::MAX), "/")
            .expect("vhost /");
        for i in 0..QUEUES {
            let name = format!("idle-{i}");
            let flags = QueueFlags {
                durable: i % DURABLE_EVERY == 0,
                ..Default::default()
            };
            r.broker
                .declare_queue(&owner, name.as_bytes(), flags, FieldTable::EMPTY)
                .expect("declare");
            r.broker
                .bind_queue(
                    &owner,
                    name.as_bytes(),
                    b"amq.direct",
                    name.as_bytes(),
                    FieldTable::EMPTY,
                )
                .expect("bind");
        }
        let addr = r.local_addr().expect("address");
        let _idle = std::net::TcpStream::connect(addr).expect("connect");
        let (mut events, mut signals) = (Events::with_capacity(EVENTS_PER_POLL_MAX), Vec::new());
        // Accept the connection and let the store finish its work (the definitions journal
        // outgrew its snapshot, which is rewritten a slice per turn).
        let mut settle = 0;
        while settle < 3 || r.broker.has_background_work() {
            settle += 1;
            assert!(settle < SETTLE_TURNS_MAX, "the store stayed busy");
            r.last_tick = Instant::now() - TICK;
            assert!(r.turn(&mut events, &mut signals).expect("turn"));
        }
        assert_eq!(r.conns.len(), 1, "the idle connection was accepted");
        let before = r.broker.queue_visits();
        for _ in 0..IDLE_TURNS {
            r.last_tick = Instant::now() - TICK;
            assert!(r.turn(&mut events, &mut signals).expect("turn"));
        }
        let visits = r.broker.queue_visits() - before;
        drop(r);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(visits, 0, "{IDLE_TURNS} idle turns visited {visits} queues");
    }

    /// Output queued after a turn's writes (a notice from a connection closed at the end of
    /// the turn) goes out at the next turn, not after the poller's sleep until the next tick.
    #[test]
    fn output_queued_after_the_writes_goes_out_without_waiting_for_the_tick() {
        use std::io::Read;
        let dir = std::env::temp_dir().join(format!("coney-late-{}", std::process::id()));
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.clone(),
            ..Config::default()
        };
        let broker = Broker::open(&config.data_dir, config.default_data().as_ref()).expect("store");
        let mut r = Reactor::bind(config, broker, None).expect("bind");
        let mut client =
            std::net::TcpStream::connect(r.local_addr().expect("address")).expect("connect");
        let (mut events, mut signals) = (Events::with_capacity(EVENTS_PER_POLL_MAX), Vec::new());
        // Accept, then take the new socket's first events; each of these turns sleeps 10 ms
        // at most.
        let mut settle = 0;
        while settle < 5 || r.conns.is_empty() || r.broker.has_background_work() {
            settle += 1;
            assert!(settle < SETTLE_TURNS_MAX, "no connection accepted");
            r.last_tick = Instant::now() - TICK + Duration::from_millis(10);
            assert!(r.turn(&mut events, &mut signals).expect("turn"));
        }
        // As deliver_notices does for a connection told of something at the end of a turn.
        let key = r.conns.iter().next().map(|(k, _)| k).expect("a connection");
        r.conns[key].out.heartbeat();
        r.conns[key].queued_flush = true;
        r.flush_list.push(key);
        r.last_tick = Instant::now();
        let started = Instant::now();
        assert!(r.turn(&mut events, &mut signals).expect("turn"));
        let took = started.elapsed();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut frame = [0u8; 8];
        client.read_exact(&mut frame).expect("the heartbeat");
        drop(r);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(frame[0], 8, "a heartbeat frame");
        assert!(took < TICK / 2, "the turn slept {took:?} before writing");
    }
}
