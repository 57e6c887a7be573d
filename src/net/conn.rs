//! A client connection: its socket, remembered readiness (edge-triggered: set by events,
//! cleared only by `WouldBlock`), the unparsed tail of its input, its output (the `Outbox`
//! its session writes frames into) and its session. On the TLS listener a `Tls` sits between
//! the socket and the session; the session sees the same bytes either way.

use crate::limits::{
    BODY_TAIL_READ_BYTES, READ_BODY_BYTES_PER_TURN_MAX, READ_CHUNK_BYTES, READ_LEFTOVER_KEEP_BYTES,
    READ_TIME_PER_TURN_MAX_MICROS, TLS_HANDSHAKE_BYTES_PER_TURN_MAX, WRITE_BUFFER_HIGH_BYTES,
    WRITE_BUFFER_LOW_BYTES,
};
use crate::net::tls::Tls;
use crate::protocol::Outbox;
use crate::session::{Ctx, Session};
use mio::net::TcpStream;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// A vectored read from the socket (`readv`), replaced in tests by one that cuts the input.
type ReadFn<'a> = dyn FnMut(&mut [libc::iovec]) -> io::Result<usize> + 'a;

/// What one read brought: octets written straight into a message body, octets into the read
/// buffer, and how many were asked for (fewer means the socket is drained).
struct Got {
    direct: usize,
    buffered: usize,
    asked: usize,
}

/// One vectored read of the socket `fd`.
fn readv(fd: RawFd, iov: &mut [libc::iovec]) -> io::Result<usize> {
    // SAFETY: each iovec points at writable memory of its length, borrowed for this call
    // (`read_plain`); the kernel writes at most that much into each.
    let n = unsafe { libc::readv(fd, iov.as_ptr(), iov.len() as libc::c_int) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// What is left of a connection's read budgets this turn.
struct Budget {
    /// Octets into the read buffer (READ_BYTES_PER_TURN_MAX, or less).
    bytes: usize,
    /// Octets straight into message bodies (READ_BODY_BYTES_PER_TURN_MAX).
    body: usize,
}

/// One plaintext read. While a large body frame is part-way (and no partial frame is kept,
/// `direct_ok`), its payload is read straight into its message (`Session::body_room`), and
/// only what follows it, at most BODY_TAIL_READ_BYTES once the room is that large, into
/// `tail` (the read buffer): in one readv, so a large body is copied once, by the kernel.
fn read_plain(
    session: &mut Session,
    src: &mut ReadFn<'_>,
    tail: &mut [u8],
    budget: &mut Budget,
    (direct_ok, now): (bool, Instant),
) -> io::Result<Got> {
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = [empty, empty];
    let mut count = 0;
    let mut room_len = 0;
    if direct_ok {
        if let Some(room) = session.body_room(budget.body) {
            room_len = room.len();
            iov[0] = libc::iovec {
                iov_base: room.as_mut_ptr().cast(),
                iov_len: room_len,
            };
            count = 1;
        }
    }
    let tail_len = if room_len >= BODY_TAIL_READ_BYTES {
        BODY_TAIL_READ_BYTES.min(tail.len())
    } else {
        tail.len()
    };
    iov[count] = libc::iovec {
        iov_base: tail.as_mut_ptr().cast(),
        iov_len: tail_len,
    };
    count += 1;
    let n = src(&mut iov[..count])?;
    let direct = n.min(room_len);
    budget.body -= direct;
    budget.bytes = budget.bytes.saturating_sub(n - direct);
    if direct > 0 {
        // SAFETY: the kernel (or the test's reader) wrote the first `direct` octets of the
        // room, which is the first iovec and at least that long.
        unsafe { session.body_filled(direct, now) };
    }
    Ok(Got {
        direct,
        buffered: n - direct,
        asked: room_len + tail_len,
    })
}

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

    /// Reads and processes input until `WouldBlock`, `budget` bytes (and
    /// READ_BODY_BYTES_PER_TURN_MAX more read straight into message bodies) or
    /// `READ_TIME_PER_TURN_MAX_MICROS` of work. `buf` is the reactor's shared read buffer, at
    /// least frame_max + READ_CHUNK_BYTES long.
    pub fn read(&mut self, buf: &mut [u8], budget: usize, ctx: &mut Ctx<'_>) -> ReadOutcome {
        let fd = self.socket.as_raw_fd();
        self.read_with(buf, budget, ctx, &mut |iov| readv(fd, iov))
    }

    /// `read`, with `src` as the plaintext socket's vectored read.
    fn read_with(
        &mut self,
        buf: &mut [u8],
        budget: usize,
        ctx: &mut Ctx<'_>,
        src: &mut ReadFn<'_>,
    ) -> ReadOutcome {
        let mut budget = Budget {
            bytes: budget,
            body: READ_BODY_BYTES_PER_TURN_MAX,
        };
        let deadline = Instant::now() + Duration::from_micros(READ_TIME_PER_TURN_MAX_MICROS);
        if self.output_full() {
            return ReadOutcome::Drained;
        }
        if self.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            budget.bytes = budget.bytes.min(TLS_HANDSHAKE_BYTES_PER_TURN_MAX);
        }
        if self.input_pending {
            // Frames kept from the last turn count against this turn's byte budget too.
            let used = self.process_leftover(ctx, Some(deadline));
            budget.bytes = budget.bytes.saturating_sub(used);
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
            if budget.bytes == 0 || (budget.body == 0 && self.session.wants_body()) {
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
                Some(tls) => tls
                    .read(&mut self.socket, &mut buf[kept..end], &mut budget.bytes)
                    .map(|n| Got {
                        direct: 0,
                        buffered: n,
                        asked: end - kept,
                    }),
                None => read_plain(
                    &mut self.session,
                    src,
                    &mut buf[kept..end],
                    &mut budget,
                    (kept == 0, ctx.now),
                ),
            };
            if self.after_read(got, buf, kept, ctx, deadline) {
                return ReadOutcome::BudgetSpent;
            }
        }
        ReadOutcome::Drained
    }

    /// Acts on one read's outcome: EOF, a short read (the socket is drained), the bytes read
    /// into `buf` after the `kept` ones handed to the session, or an error. Returns whether
    /// the turn's time ran out with input left.
    fn after_read(
        &mut self,
        got: io::Result<Got>,
        buf: &[u8],
        kept: usize,
        ctx: &mut Ctx<'_>,
        deadline: Instant,
    ) -> bool {
        match got {
            Ok(Got {
                direct: 0,
                buffered: 0,
                ..
            }) => {
                self.readable = false;
                self.dead = Some("client closed the socket".into());
            }
            Ok(got) => {
                self.io.received(got.direct + got.buffered);
                if got.direct + got.buffered < got.asked && !self.read_closed && self.tls.is_none()
                {
                    // A short read emptied the socket's receive queue, so the read after it
                    // would only say EAGAIN: skip that syscall. mio documents only WouldBlock
                    // as the end of readiness (tokio-rs/mio#1611), but with edge-triggered
                    // epoll any data arriving after this read wakes the socket's wait queue
                    // again and brings a new readable event, so nothing is missed. The one
                    // thing that would not come again is an EOF or error already reported
                    // with this event: `read_closed` keeps reading to it. Not for TLS: a
                    // short plaintext read says nothing about the socket (rustls may hold
                    // more, or need more).
                    self.readable = false;
                }
                if let Some(t) = self.tls.as_mut().and_then(|t| t.take_transport()) {
                    // The handshake is done: the session learns the peer's certificate
                    // before it reads the first AMQP byte (SASL EXTERNAL).
                    self.session.set_transport(t);
                }
                if got.buffered > 0 {
                    return self.take_input(buf, kept + got.buffered, ctx, deadline);
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
        false
    }

    /// Hands `buf[..filled]` to the session and keeps what it left (a partial frame, or
    /// whole frames it had no time for). Returns whether the turn's time ran out with input
    /// left, which then waits for the next turn.
    fn take_input(
        &mut self,
        buf: &[u8],
        filled: usize,
        ctx: &mut Ctx<'_>,
        deadline: Instant,
    ) -> bool {
        let used =
            self.session
                .handle_input_until(&mut self.out, &buf[..filled], ctx, Some(deadline));
        self.leftover.clear();
        self.leftover.extend_from_slice(&buf[used..filled]);
        if self.leftover.is_empty() && self.leftover.capacity() > READ_LEFTOVER_KEEP_BYTES {
            self.leftover = Vec::new();
        }
        if !self.leftover.is_empty() && Instant::now() >= deadline {
            self.input_pending = true;
            return true;
        }
        false
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

    /// A second handle on the same socket, for tests that need many connections.
    #[cfg(test)]
    fn socket_clone(&self) -> TcpStream {
        let fd = self.socket.as_raw_fd();
        // SAFETY: dup returns a new descriptor this handle then owns.
        let dup = unsafe { libc::dup(fd) };
        assert!(dup >= 0, "dup failed");
        // SAFETY: `dup` is an open socket descriptor owned by nobody else.
        TcpStream::from_std(unsafe {
            <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(dup)
        })
    }

    /// Whether this connection came in on the TLS listener.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A TLS connection's handshake as the management API reports it, once complete.
    pub fn tls_info(&self) -> Option<&crate::net::tls::TlsInfo> {
        self.tls.as_ref().and_then(|t| t.info())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Broker;
    use crate::config::Config;
    use crate::limits::{FRAME_MAX_BYTES, READ_BYTES_PER_TURN_MAX};
    use crate::session::body_test_support::{guest, input_with, session};
    use crate::session::State;

    /// A connection on a loopback socket that is never read: the tests read through `src`.
    fn conn(listener: &std::net::TcpListener) -> Conn {
        let addr = listener.local_addr().expect("addr");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let (sock, _) = listener.accept().expect("accept");
        sock.set_nonblocking(true).expect("nonblocking");
        Conn::new(TcpStream::from_std(sock), session(), None)
    }

    /// A peer's input delivered in pieces: each read returns at most the rest of the current
    /// piece (filling the iovecs in order, as readv does), then WouldBlock once it is gone.
    struct Pieces<'a> {
        bytes: &'a [u8],
        at: usize,
        piece_end: usize,
        /// Reads that had a body's room as their first iovec (and the read buffer second).
        direct_reads: usize,
    }

    impl Pieces<'_> {
        fn read(&mut self, iov: &mut [libc::iovec]) -> io::Result<usize> {
            if self.at == self.piece_end {
                return Err(ErrorKind::WouldBlock.into());
            }
            if iov.len() == 2 {
                self.direct_reads += 1;
            }
            let start = self.at;
            for v in iov.iter() {
                let n = v.iov_len.min(self.piece_end - self.at);
                let from = &self.bytes[self.at..self.at + n];
                // SAFETY: the iovec points at `iov_len` writable bytes (`read_plain`).
                unsafe { std::ptr::copy_nonoverlapping(from.as_ptr(), v.iov_base.cast(), n) };
                self.at += n;
            }
            Ok(self.at - start)
        }
    }

    /// Feeds `bytes` to `c` cut at `cuts` (each piece read until WouldBlock, over as many
    /// turns as the budgets take). Returns how many reads went straight into a body.
    fn feed(c: &mut Conn, broker: &mut Broker, bytes: &[u8], cuts: &[usize]) -> usize {
        let config = Config::default();
        let mut buf = vec![0u8; FRAME_MAX_BYTES as usize + READ_CHUNK_BYTES];
        let mut p = Pieces {
            bytes,
            at: 0,
            piece_end: 0,
            direct_reads: 0,
        };
        for &end in cuts.iter().chain(std::iter::once(&bytes.len())) {
            p.piece_end = end;
            for _ in 0..1000 {
                c.readable = true;
                let mut ctx = Ctx {
                    broker,
                    config: &config,
                    now: Instant::now(),
                    alarm: None,
                };
                let outcome = c.read_with(&mut buf, READ_BYTES_PER_TURN_MAX, &mut ctx, &mut |v| {
                    p.read(v)
                });
                if matches!(outcome, ReadOutcome::Drained) && p.at == p.piece_end {
                    break;
                }
            }
            assert_eq!(p.at, p.piece_end, "the piece was not read whole");
        }
        p.direct_reads
    }

    /// Bodies, each spread over several body frames: byte `i * 31 + j` of body `i`.
    fn bodies(sizes: &[usize]) -> Vec<Vec<u8>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect()
    }

    /// Reads every body of `sent` back from queue "q", in order, and nothing more.
    fn assert_queue_holds(broker: &mut Broker, sent: &[Vec<u8>], what: &str) {
        for (i, body) in sent.iter().enumerate() {
            let who = guest(broker);
            let got = broker
                .get(&who, b"q", true)
                .expect("get")
                .unwrap_or_else(|| panic!("{what}: message {i} missing"));
            assert!(
                got.message.message().body() == &body[..],
                "{what}: body {i} differs"
            );
        }
        let who = guest(broker);
        assert!(broker.get(&who, b"q", true).expect("get").is_none());
    }

    /// Two multi-frame bodies read in two pieces cut at every octet boundary of the
    /// publishes (inside frame headers, payloads read straight into the message, end octets)
    /// arrive whole and in order, and the reads did go straight into the bodies.
    #[test]
    fn bodies_read_directly_survive_a_cut_at_every_boundary() {
        const FRAME_MAX: u32 = 8192;
        let sent = bodies(&[20_000, 9_000]);
        let bytes = input_with(&sent, FRAME_MAX);
        let start = input_with(&[], FRAME_MAX).len();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = conn(&listener);
        let mut direct = 0;
        for cut in start..bytes.len() {
            let sock = base.socket_clone();
            let mut c = Conn::new(sock, session(), None);
            let mut broker = Broker::new();
            direct += feed(&mut c, &mut broker, &bytes, &[cut]);
            assert!(c.session.is_open(), "closed at cut {cut}");
            assert!(c.leftover.is_empty(), "input left at cut {cut}");
            assert_queue_holds(&mut broker, &sent, &format!("cut {cut}"));
        }
        assert!(direct > bytes.len() - start, "{direct} direct reads");
    }

    /// The same bodies in many small and large pieces (random cuts), with frame_max at its
    /// largest: every body arrives whole.
    #[test]
    fn bodies_read_directly_survive_random_pieces() {
        let sent = bodies(&[300_000, 4096, 131_064, 131_065, 70_000, 5, 1_000_000]);
        let bytes = input_with(&sent, FRAME_MAX_BYTES);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = conn(&listener);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..20 {
            let mut cuts = vec![];
            let mut at = 0;
            while at < bytes.len() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                at += [1, 7, 8, 100, 4097, 65_536, 200_000][(rng % 7) as usize];
                cuts.push(at.min(bytes.len()));
            }
            let mut c = Conn::new(base.socket_clone(), session(), None);
            let mut broker = Broker::new();
            let direct = feed(&mut c, &mut broker, &bytes, &cuts);
            assert!(direct > 0, "round {round}: no direct read");
            assert_queue_holds(&mut broker, &sent, &format!("round {round}"));
        }
    }

    /// A wrong end octet right after a payload read straight into its message is RabbitMQ's
    /// 501 frame error naming the payload's first octets, and nothing is queued.
    #[test]
    fn wrong_end_octet_after_a_direct_read_is_a_frame_error() {
        let body: Vec<u8> = (0..50_000u32).map(|j| b'a' + (j % 26) as u8).collect();
        let mut bytes = input_with(&[body], FRAME_MAX_BYTES);
        let last = bytes.len() - 1;
        bytes[last] = 0xAB;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut c = conn(&listener);
        let mut broker = Broker::new();
        // The first piece ends inside the body frame, so the rest is read directly.
        let direct = feed(&mut c, &mut broker, &bytes, &[bytes.len() - 30_000]);
        assert!(direct > 0, "no direct read");
        assert!(matches!(c.session.state(), State::Closed | State::Closing));
        let reason = c.session.close_reason().unwrap_or("");
        assert!(
            reason.contains("FRAME_ERROR")
                && reason.contains("first 16 octets = <<\"abcdefghijklmnop\">>")
                && reason.contains("{invalid_frame_end_marker,171}"),
            "{reason}"
        );
        let who = guest(&broker);
        assert!(broker.get(&who, b"q", true).expect("get").is_none());
    }
}
