//! A client connection: its socket, remembered readiness (edge-triggered: set by events,
//! cleared only by `WouldBlock`), the unparsed tail of its input, its output (the `Outbox`
//! its session writes frames into) and its session. On the TLS listener a `Tls` sits between
//! the socket and the session; the session sees the same bytes either way.

use crate::limits::{
    READ_CHUNK_BYTES, READ_LEFTOVER_KEEP_BYTES, READ_TIME_PER_TURN_MAX_MICROS,
    TLS_HANDSHAKE_BYTES_PER_TURN_MAX, WRITE_BUFFER_HIGH_BYTES, WRITE_BUFFER_LOW_BYTES,
};
use crate::net::tls::Tls;
use crate::protocol::Outbox;
use crate::session::{Ctx, Session};
use mio::net::TcpStream;
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

pub struct Conn {
    pub socket: TcpStream,
    pub session: Session,
    /// Frames waiting for the socket; passed to the session on every call that may write.
    pub out: Outbox,
    /// Bytes of a frame that has not fully arrived; usually empty and unallocated.
    leftover: Vec<u8>,
    pub readable: bool,
    /// The last event said the peer closed its side or the socket failed: read until EOF or
    /// the error, even after a short read.
    pub read_closed: bool,
    pub writable: bool,
    /// Already on the reactor's read list / flush list this turn / list of connections
    /// paused by publisher flow.
    pub queued_read: bool,
    pub queued_flush: bool,
    pub queued_flow: bool,
    /// Set when the socket reached EOF or failed; the connection is closed at end of turn.
    pub dead: Option<String>,
    /// `leftover` holds whole frames the last pass had no time for: they go before any more
    /// is read.
    input_pending: bool,
    /// Reading stopped because the peer does not read its answers (unsent output reached
    /// WRITE_BUFFER_HIGH_BYTES); it resumes once the output is below WRITE_BUFFER_LOW_BYTES.
    /// A client that pipelines commands and never reads made the broker hold 192 MiB of
    /// answers for it (WRITE_BUFFER_HARD_BYTES) before this, and freeing them took 10 ms.
    output_full: bool,
    /// Present on connections accepted by the TLS listener.
    tls: Option<Box<Tls>>,
    /// Bytes and reads/writes on the socket, for the API (`io_stats.rs`).
    pub io: super::io_stats::IoStats,
}

/// Outcome of a read pass.
pub enum ReadOutcome {
    /// Drained until `WouldBlock` (or the session stopped reading, or the peer's unread
    /// output paused reading: `resume_after_flush` says when to read again).
    Drained,
    /// The per-turn byte budget ran out with input possibly left in the socket.
    BudgetSpent,
}

impl Conn {
    pub fn new(socket: TcpStream, session: Session, tls: Option<Tls>) -> Self {
        Conn {
            socket,
            session,
            out: Outbox::default(),
            leftover: Vec::new(),
            readable: false,
            read_closed: false,
            writable: true,
            queued_read: false,
            queued_flush: false,
            queued_flow: false,
            dead: None,
            input_pending: false,
            output_full: false,
            tls: tls.map(Box::new),
            io: Default::default(),
        }
    }

    /// Reads and processes input until `WouldBlock`, `budget` bytes or
    /// `READ_TIME_PER_TURN_MAX_MICROS` of work. `buf` is the reactor's shared read buffer, at
    /// least frame_max + READ_CHUNK_BYTES long.
    pub fn read(&mut self, buf: &mut [u8], mut budget: usize, ctx: &mut Ctx<'_>) -> ReadOutcome {
        let deadline = Instant::now() + Duration::from_micros(READ_TIME_PER_TURN_MAX_MICROS);
        if self.output_full() {
            return ReadOutcome::Drained;
        }
        if self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            budget = budget.min(TLS_HANDSHAKE_BYTES_PER_TURN_MAX);
        }
        if self.input_pending {
            // Frames kept from the last turn count against this turn's byte budget too.
            budget = budget.saturating_sub(self.process_leftover(ctx, Some(deadline)));
            if self.input_pending {
                return ReadOutcome::BudgetSpent;
            }
        }
        while self.readable
            && self.dead.is_none()
            && self.session.reads_input()
            && !self.session.is_blocked()
            && !self.session.in_flow()
            && !self.output_full()
        {
            if budget == 0 {
                return ReadOutcome::BudgetSpent;
            }
            let kept = self.leftover.len();
            buf[..kept].copy_from_slice(&self.leftover);
            let end = (kept + READ_CHUNK_BYTES).min(buf.len());
            if end <= kept {
                // Cannot happen while leftovers are a partial frame (< frame_max); a zero-length
                // read would look like EOF, so stop here rather than drop the peer.
                return ReadOutcome::BudgetSpent;
            }
            let got = match &mut self.tls {
                Some(tls) => tls.read(&mut self.socket, &mut buf[kept..end], &mut budget),
                None => self.socket.read(&mut buf[kept..end]).inspect(|&n| {
                    budget = budget.saturating_sub(n);
                }),
            };
            match got {
                Ok(0) => {
                    self.readable = false;
                    self.dead = Some("client closed the socket".into());
                }
                Ok(n) => {
                    self.io.received(n);
                    if n < end - kept && !self.read_closed && self.tls.is_none() {
                        // A short read emptied the socket's receive queue, so the read after
                        // it would only say EAGAIN: skip that syscall. mio documents only
                        // WouldBlock as the end of readiness (tokio-rs/mio#1611), but with
                        // edge-triggered epoll any data arriving after this read wakes the
                        // socket's wait queue again and brings a new readable event, so
                        // nothing is missed. The one thing that would not come again is an
                        // EOF or error already reported with this event: `read_closed`
                        // keeps reading to it. Not for TLS: a short plaintext read says
                        // nothing about the socket (rustls may hold more, or need more).
                        self.readable = false;
                    }
                    let filled = kept + n;
                    let used = self.session.handle_input_until(
                        &mut self.out,
                        &buf[..filled],
                        ctx,
                        Some(deadline),
                    );
                    self.leftover.clear();
                    self.leftover.extend_from_slice(&buf[used..filled]);
                    if self.leftover.is_empty()
                        && self.leftover.capacity() > READ_LEFTOVER_KEEP_BYTES
                    {
                        self.leftover = Vec::new();
                    }
                    if !self.leftover.is_empty() && Instant::now() >= deadline {
                        // Out of time, maybe with whole frames left: they wait for next turn.
                        self.input_pending = true;
                        return ReadOutcome::BudgetSpent;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.readable = false;
                    self.dead = Some(format!("read error: {e}"));
                    if let Some(tls) = &mut self.tls {
                        tls.send_alert(&mut self.socket);
                    }
                }
            }
        }
        ReadOutcome::Drained
    }

    /// Whether reading is paused for unsent output (see `output_full`); sets the pause at
    /// the high-water mark.
    fn output_full(&mut self) -> bool {
        if self.out.pending() >= WRITE_BUFFER_HIGH_BYTES {
            self.output_full = true;
        }
        self.output_full
    }

    /// After a flush: whether reading was paused for unsent output and may resume now (the
    /// caller puts the connection back on the read list).
    pub fn resume_after_flush(&mut self) -> bool {
        if self.output_full && self.out.pending() < WRITE_BUFFER_LOW_BYTES {
            self.output_full = false;
            return true;
        }
        false
    }

    /// Processes input that arrived while the session was blocked, without reading more.
    pub fn resume(&mut self, ctx: &mut Ctx<'_>) {
        self.process_leftover(ctx, None);
    }

    /// Processes the frames kept in `leftover` (until `deadline`), without reading more;
    /// returns how many bytes it used.
    fn process_leftover(&mut self, ctx: &mut Ctx<'_>, deadline: Option<Instant>) -> usize {
        self.input_pending = false;
        if self.leftover.is_empty() {
            return 0;
        }
        let used = self
            .session
            .handle_input_until(&mut self.out, &self.leftover, ctx, deadline);
        self.leftover.drain(..used);
        if !self.leftover.is_empty() && deadline.is_some_and(|d| Instant::now() >= d) {
            self.input_pending = true;
        }
        used
    }

    /// Frees a large output buffer once nothing was written for a while (called each tick).
    pub fn shrink_if_idle(&mut self, now: Instant) {
        let quiet = now.saturating_duration_since(self.session.last_send());
        if quiet >= std::time::Duration::from_secs(1) {
            self.out.release_if_idle();
        }
    }

    /// Writes pending output until done or `WouldBlock`: one syscall per turn in the usual case.
    pub fn flush(&mut self, now: Instant) {
        if self.tls.is_some() {
            return self.flush_tls(now);
        }
        let mut wrote = false;
        while self.out.pending() > 0 && self.writable && self.dead.is_none() {
            match self.out.write_to(&mut self.socket) {
                Ok(0) => self.dead = Some("socket closed while writing".into()),
                Ok(n) => {
                    self.io.sent(n);
                    wrote = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => self.dead = Some(format!("write error: {e}")),
            }
        }
        if wrote {
            self.session.sent(now);
        }
    }

    fn flush_tls(&mut self, now: Instant) {
        let Some(tls) = &mut self.tls else { return };
        if !self.writable || self.dead.is_some() {
            return;
        }
        let closed = self.session.is_closed();
        let pending = self.out.pending();
        match tls.flush(&mut self.out, &mut self.socket, closed) {
            Ok((wrote, blocked)) => {
                let taken = pending.saturating_sub(self.out.pending());
                if taken > 0 {
                    self.io.sent(taken);
                }
                if wrote {
                    self.session.sent(now);
                }
                self.writable = !blocked;
            }
            Err(e) => self.dead = Some(format!("write error: {e}")),
        }
    }

    /// Whether this connection came in on the TLS listener.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Output not yet on the socket: the outbox, or TLS records rustls still holds.
    pub fn has_output(&self) -> bool {
        self.out.pending() > 0 || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Whether the socket can go: the session reads nothing more and everything is written.
    pub fn finished(&self) -> bool {
        self.session.is_closed() && !self.has_output()
    }
}
