//! A client connection: its socket, remembered readiness (edge-triggered: set by events,
//! cleared only by `WouldBlock`), the unparsed tail of its input, and its session.

use crate::limits::{READ_CHUNK_BYTES, READ_LEFTOVER_KEEP_BYTES, WRITE_BUFFER_KEEP_BYTES};
use crate::session::{Ctx, Session};
use mio::net::TcpStream;
use std::io::{ErrorKind, Read, Write};
use std::time::Instant;

pub struct Conn {
    pub socket: TcpStream,
    pub session: Session,
    /// Bytes of a frame that has not fully arrived; usually empty and unallocated.
    leftover: Vec<u8>,
    pub readable: bool,
    pub writable: bool,
    /// Already on the reactor's read list / flush list this turn.
    pub queued_read: bool,
    pub queued_flush: bool,
    /// Set when the socket reached EOF or failed; the connection is closed at end of turn.
    pub dead: Option<String>,
}

/// Outcome of a read pass.
pub enum ReadOutcome {
    /// Drained until `WouldBlock` (or the session stopped reading).
    Drained,
    /// The per-turn byte budget ran out with input possibly left in the socket.
    BudgetSpent,
}

impl Conn {
    pub fn new(socket: TcpStream, session: Session) -> Self {
        Conn {
            socket,
            session,
            leftover: Vec::new(),
            readable: false,
            writable: true,
            queued_read: false,
            queued_flush: false,
            dead: None,
        }
    }

    /// Reads and processes input until `WouldBlock` or `budget` bytes. `buf` is the reactor's
    /// shared read buffer, at least frame_max + READ_CHUNK_BYTES long.
    pub fn read(&mut self, buf: &mut [u8], mut budget: usize, ctx: &mut Ctx<'_>) -> ReadOutcome {
        while self.readable
            && self.dead.is_none()
            && self.session.reads_input()
            && !self.session.blocked
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
            match self.socket.read(&mut buf[kept..end]) {
                Ok(0) => {
                    self.readable = false;
                    self.dead = Some("client closed the socket".into());
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let filled = kept + n;
                    let used = self.session.handle_input(&buf[..filled], ctx);
                    self.leftover.clear();
                    self.leftover.extend_from_slice(&buf[used..filled]);
                    if self.leftover.is_empty()
                        && self.leftover.capacity() > READ_LEFTOVER_KEEP_BYTES
                    {
                        self.leftover = Vec::new();
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.readable = false;
                    self.dead = Some(format!("read error: {e}"));
                }
            }
        }
        ReadOutcome::Drained
    }

    /// Processes input that arrived while the session was blocked, without reading more.
    pub fn resume(&mut self, ctx: &mut Ctx<'_>) {
        if self.leftover.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.leftover);
        let used = self.session.handle_input(&pending, ctx);
        self.leftover.extend_from_slice(&pending[used..]);
    }

    /// Frees a large output buffer once nothing was written for a while (called each tick).
    pub fn shrink_if_idle(&mut self, now: Instant) {
        let s = &mut self.session;
        let idle = now.saturating_duration_since(s.last_send) >= std::time::Duration::from_secs(1);
        if idle && s.pending_out() == 0 && s.out.capacity() > WRITE_BUFFER_KEEP_BYTES {
            s.out = Vec::new();
            s.out_sent = 0;
        }
    }

    /// Writes pending output until done or `WouldBlock`: one syscall per turn in the usual case.
    pub fn flush(&mut self, now: Instant) {
        let s = &mut self.session;
        while s.pending_out() > 0 && self.writable && self.dead.is_none() {
            match self.socket.write(&s.out[s.out_sent..]) {
                Ok(0) => self.dead = Some("socket closed while writing".into()),
                Ok(n) => {
                    s.out_sent += n;
                    s.last_send = now;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => self.dead = Some(format!("write error: {e}")),
            }
        }
        if s.pending_out() == 0 {
            // Keep the capacity while the connection is busy (regrowing it every turn costs
            // reallocations); `shrink_if_idle` returns it once the connection goes quiet.
            s.out.clear();
            s.out_sent = 0;
        } else if s.out_sent >= WRITE_BUFFER_KEEP_BYTES && s.out_sent * 2 >= s.out.len() {
            // The peer reads slower than we write: drop what was sent so the buffer cannot
            // grow without bound, at the cost of moving the smaller unsent half.
            s.out.drain(..s.out_sent);
            s.out_sent = 0;
        }
    }
}
