//! One HTTP/1.1 server connection as a state machine with no I/O, the way `Session` is for
//! AMQP: bytes in (`handle_input`), bytes out (`pending_output` / `consume_output`), deadlines
//! checked from outside (`check_deadlines`). A `Service` turns each request into a response.
//!
//! Reading: Head → (Body | Chunked) → dispatch → Head ... → Closed. Responses go out in
//! request order: a new request is taken only when the previous response is wholly in the
//! output buffer, so pipelined requests wait in the reactor's buffer, not here.
//!
//! Writing: a body is bytes, or a stream the service produces a slice (`HTTP_BODY_SLICE_BYTES`)
//! per `pump`, only while unsent output is below `HTTP_WRITE_BUFFER_HIGH_BYTES`; a peer that
//! does not read stops production instead of growing memory, as a slow AMQP consumer does.
//!
//! How a reactor drives it, each loop turn, per connection:
//!   1. while `reads_input()`: read the socket; `used = handle_input(leftover ++ data)`; keep
//!      the unused tail (a partial head, or pipelined requests not taken yet);
//!   2. `pump(now)` while `streaming()`; then, if `reads_input()` and a tail is kept,
//!      `handle_input(tail)` again (requests held back by the per-turn bound or a stream);
//!   3. write `pending_output()`, report it with `consume_output(n)`;
//!   4. once a second, `check_deadlines(now)`; `next_deadline()` bounds the poll timeout;
//!   5. close the socket when `finished()`.

use super::request::{parse_head, BodyFraming, HeadError, Method, Request, Version};
use super::response::{write_head, Body, Framing, Progress, Response};
use super::status::Status;
use crate::limits::{
    HTTP_BODY_MAX_BYTES, HTTP_BODY_SLICE_BYTES, HTTP_CHUNK_LINE_MAX_BYTES, HTTP_IDLE_TIMEOUT_SECS,
    HTTP_REQUESTS_PER_CONNECTION_MAX, HTTP_REQUESTS_PER_TURN_MAX, HTTP_REQUEST_TIMEOUT_SECS,
    HTTP_WRITE_BUFFER_HIGH_BYTES, WRITE_BUFFER_KEEP_BYTES,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What answers requests: the management API, the Prometheus endpoint, or a test double.
pub trait Service {
    /// Resumable state of a body produced in slices (for example a cursor into a listing).
    type Stream;

    /// The response to one request. HEAD is answered as GET; the connection drops the body.
    fn respond(&mut self, req: &Request, peer: SocketAddr) -> Response<Self::Stream>;

    /// Appends the next part of a streamed body to `out`: stops once it has written at least
    /// `budget` bytes (it may finish the item it is on), and says whether more remains.
    fn produce(&mut self, stream: &mut Self::Stream, out: &mut Vec<u8>, budget: usize) -> Progress;
}

/// Where the reading side is.
enum Read {
    /// Waiting for a request head; `started` once any byte of it has arrived.
    Head {
        started: bool,
    },
    Body {
        req: Request,
        remaining: usize,
    },
    Chunked {
        req: Request,
        dec: ChunkDecoder,
    },
    /// Nothing more is read: the last response is going out, then the connection closes.
    Closed,
}

struct Active<S> {
    state: S,
    chunked: bool,
}

/// Why a connection ended, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The request or the server asked for `connection: close`, or the keep-alive bound.
    Done,
    Refused(Status),
    IdleBeforeRequest,
    SlowRequestHead,
    SlowBody,
    PeerNotReading,
}

pub struct HttpConn<S> {
    pub peer: SocketAddr,
    read: Read,
    out: Vec<u8>,
    out_sent: usize,
    stream: Option<Active<S>>,
    served: u32,
    /// The next request head must be complete by then.
    head_deadline: Instant,
    last_recv: Instant,
    last_send: Instant,
    /// Loop turn the per-turn request count belongs to (one `now` per turn).
    turn: Instant,
    turn_requests: usize,
    /// The peer stopped reading; drop without flushing.
    aborted: bool,
    pub close_reason: Option<CloseReason>,
}

impl<S> HttpConn<S> {
    pub fn new(peer: SocketAddr, now: Instant) -> Self {
        HttpConn {
            peer,
            read: Read::Head { started: false },
            out: Vec::new(),
            out_sent: 0,
            stream: None,
            served: 0,
            head_deadline: now + Duration::from_secs(HTTP_REQUEST_TIMEOUT_SECS),
            last_recv: now,
            last_send: now,
            turn: now,
            turn_requests: 0,
            aborted: false,
            close_reason: None,
        }
    }

    pub fn pending_output(&self) -> &[u8] {
        &self.out[self.out_sent..]
    }

    /// The reactor wrote `n` bytes of `pending_output()`.
    pub fn consume_output(&mut self, n: usize, now: Instant) {
        self.out_sent = (self.out_sent + n).min(self.out.len());
        if n > 0 {
            self.last_send = now;
        }
        if self.out_sent == self.out.len() {
            self.out.clear();
            self.out_sent = 0;
            if self.out.capacity() > WRITE_BUFFER_KEEP_BYTES {
                self.out = Vec::new();
            }
            if self.stream.is_none() && matches!(self.read, Read::Head { started: false }) {
                // The next request's clock starts when this response has been sent.
                self.head_deadline = now + Duration::from_secs(HTTP_REQUEST_TIMEOUT_SECS);
            }
        } else if self.out_sent >= WRITE_BUFFER_KEEP_BYTES && self.out_sent * 2 >= self.out.len() {
            self.out.drain(..self.out_sent);
            self.out_sent = 0;
        }
    }

    fn pending_len(&self) -> usize {
        self.out.len() - self.out_sent
    }

    /// Whether the reactor should read the socket and offer input: not while a response is
    /// still being produced or its output is above the high-water mark.
    pub fn reads_input(&self) -> bool {
        !matches!(self.read, Read::Closed)
            && self.stream.is_none()
            && self.pending_len() < HTTP_WRITE_BUFFER_HIGH_BYTES
    }

    /// A streamed body is in progress; `pump` continues it.
    pub fn streaming(&self) -> bool {
        self.stream.is_some()
    }

    /// The socket can be closed: nothing more to read or write.
    pub fn finished(&self) -> bool {
        self.aborted
            || (matches!(self.read, Read::Closed)
                && self.stream.is_none()
                && self.pending_len() == 0)
    }

    /// Takes whole requests from `buf` and answers them; returns the bytes consumed. The rest
    /// (a partial head, or requests held back) must be offered again, with more data appended.
    /// `now` is the loop turn's clock: the per-turn request bound counts calls with one `now`.
    pub fn handle_input<V>(&mut self, buf: &[u8], now: Instant, svc: &mut V) -> usize
    where
        V: Service<Stream = S>,
    {
        if now != self.turn {
            self.turn = now;
            self.turn_requests = 0;
        }
        if !buf.is_empty() {
            self.last_recv = now;
        }
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match &mut self.read {
                Read::Closed => return buf.len(),
                _ if rest.is_empty() => break,
                Read::Head { started } => {
                    if self.stream.is_some()
                        || self.out.len() - self.out_sent >= HTTP_WRITE_BUFFER_HIGH_BYTES
                        || self.turn_requests >= HTTP_REQUESTS_PER_TURN_MAX
                    {
                        break;
                    }
                    match parse_head(rest) {
                        Ok(None) => {
                            *started |= rest.iter().any(|&b| b != b'\r' && b != b'\n');
                            break;
                        }
                        Ok(Some((req, len))) => {
                            pos += len;
                            self.begin_body(req, buf.len() - pos, now, svc);
                        }
                        Err(e) => {
                            self.refuse(e.status());
                            return buf.len();
                        }
                    }
                }
                Read::Body { req, remaining } => {
                    let n = (*remaining).min(rest.len());
                    req.body.extend_from_slice(&rest[..n]);
                    *remaining -= n;
                    pos += n;
                    if *remaining > 0 {
                        break;
                    }
                    self.finish_body(now, svc);
                }
                Read::Chunked { req, dec } => match dec.feed(rest, &mut req.body) {
                    Ok((n, done)) => {
                        pos += n;
                        if !done {
                            break;
                        }
                        self.finish_body(now, svc);
                    }
                    Err(e) => {
                        self.refuse(e.status());
                        return buf.len();
                    }
                },
            }
        }
        pos
    }

    fn begin_body<V>(&mut self, req: Request, available: usize, now: Instant, svc: &mut V)
    where
        V: Service<Stream = S>,
    {
        // curl and others wait (about a second) for this before sending a body.
        let continue_now = req.expect_continue && available == 0;
        match req.framing {
            BodyFraming::None => return self.dispatch(req, now, svc),
            BodyFraming::Length(n) => self.read = Read::Body { req, remaining: n },
            BodyFraming::Chunked => {
                self.read = Read::Chunked {
                    req,
                    dec: ChunkDecoder::default(),
                }
            }
        }
        if continue_now {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
    }

    fn finish_body<V>(&mut self, now: Instant, svc: &mut V)
    where
        V: Service<Stream = S>,
    {
        let read = std::mem::replace(&mut self.read, Read::Head { started: false });
        if let Read::Body { req, .. } | Read::Chunked { req, .. } = read {
            self.dispatch(req, now, svc);
        }
    }

    /// Answers one request and leaves the reading side ready for the next (or closed).
    fn dispatch<V>(&mut self, req: Request, now: Instant, svc: &mut V)
    where
        V: Service<Stream = S>,
    {
        self.served += 1;
        self.turn_requests += 1;
        let mut close = !req.keep_alive || self.served >= HTTP_REQUESTS_PER_CONNECTION_MAX;
        let response = if req.malformed {
            Response::new(Status::BAD_REQUEST)
        } else {
            svc.respond(&req, self.peer)
        };
        self.write_response(response, &req, &mut close, now, svc);
        if close {
            self.read = Read::Closed;
            self.close_reason.get_or_insert(CloseReason::Done);
        } else {
            self.read = Read::Head { started: false };
        }
    }

    fn write_response<V>(
        &mut self,
        r: Response<S>,
        req: &Request,
        close: &mut bool,
        now: Instant,
        svc: &mut V,
    ) where
        V: Service<Stream = S>,
    {
        let head_only = req.method == Method::Head;
        let no_body = r.status.has_no_body();
        match r.body {
            Body::Empty => {
                let framing = if no_body {
                    Framing::None
                } else {
                    Framing::Length(0)
                };
                write_head(&mut self.out, r.status, &r.headers, framing, *close);
            }
            Body::Bytes(bytes) if no_body => {
                debug_assert!(
                    bytes.is_empty(),
                    "a {} response has no body",
                    r.status.code()
                );
                write_head(&mut self.out, r.status, &r.headers, Framing::None, *close);
            }
            Body::Bytes(bytes) => {
                let framing = Framing::Length(bytes.len());
                write_head(&mut self.out, r.status, &r.headers, framing, *close);
                if !head_only {
                    self.out.extend_from_slice(&bytes);
                }
            }
            Body::Stream(state) => {
                let chunked = req.version == Version::Http11;
                // An HTTP/1.0 client learns where the body ends only from the close.
                *close |= !chunked && !head_only;
                let framing = match (no_body, chunked) {
                    (true, _) => Framing::None,
                    (false, true) => Framing::Chunked,
                    (false, false) => Framing::UntilClose,
                };
                write_head(&mut self.out, r.status, &r.headers, framing, *close);
                if !head_only && !no_body {
                    self.stream = Some(Active { state, chunked });
                    self.pump(now, svc);
                }
            }
        }
        if self.stream.is_none() {
            self.head_deadline = now + Duration::from_secs(HTTP_REQUEST_TIMEOUT_SECS);
        }
    }

    /// Produces the next slice of a streamed body, if output is below the high-water mark.
    pub fn pump<V>(&mut self, now: Instant, svc: &mut V)
    where
        V: Service<Stream = S>,
    {
        let pending = self.pending_len();
        let Some(active) = self.stream.as_mut() else {
            return;
        };
        if pending >= HTTP_WRITE_BUFFER_HIGH_BYTES {
            return;
        }
        let budget = (HTTP_WRITE_BUFFER_HIGH_BYTES - pending).min(HTTP_BODY_SLICE_BYTES);
        let mark = self.out.len();
        if active.chunked {
            // Room for the chunk size, patched once the slice is written (leading zeros
            // are allowed in chunk-size, RFC 9112 §7.1).
            self.out.extend_from_slice(b"00000000\r\n");
        }
        let start = self.out.len();
        let progress = svc.produce(&mut active.state, &mut self.out, budget);
        let n = self.out.len() - start;
        if active.chunked {
            if n == 0 {
                self.out.truncate(mark);
            } else {
                debug_assert!(n <= u32::MAX as usize, "one slice is far below 4 GiB");
                let size = format!("{n:08x}");
                self.out[mark..mark + 8].copy_from_slice(size.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
        if progress == Progress::Done {
            if active.chunked {
                self.out.extend_from_slice(b"0\r\n\r\n");
            }
            self.stream = None;
            self.head_deadline = now + Duration::from_secs(HTTP_REQUEST_TIMEOUT_SECS);
        }
    }

    /// A refused head or body: the status with an empty body, then close (as cowboy).
    fn refuse(&mut self, status: Status) {
        write_head(&mut self.out, status, &[], Framing::Length(0), true);
        self.read = Read::Closed;
        self.close_reason = Some(CloseReason::Refused(status));
    }

    /// Closes connections past their deadlines: a request head not complete within
    /// `HTTP_REQUEST_TIMEOUT_SECS` (408 if part of it came), a body or a reader stalled for
    /// `HTTP_IDLE_TIMEOUT_SECS`.
    pub fn check_deadlines(&mut self, now: Instant) {
        let idle = Duration::from_secs(HTTP_IDLE_TIMEOUT_SECS);
        if self.pending_len() > 0 {
            if now.saturating_duration_since(self.last_send) >= idle {
                self.aborted = true;
                self.close_reason = Some(CloseReason::PeerNotReading);
            }
            return;
        }
        match self.read {
            Read::Head { started } if self.stream.is_none() && now >= self.head_deadline => {
                if started {
                    self.refuse(Status::REQUEST_TIMEOUT);
                    self.close_reason = Some(CloseReason::SlowRequestHead);
                } else {
                    self.read = Read::Closed;
                    self.close_reason = Some(CloseReason::IdleBeforeRequest);
                }
            }
            Read::Body { .. } | Read::Chunked { .. }
                if now.saturating_duration_since(self.last_recv) >= idle =>
            {
                self.read = Read::Closed;
                self.close_reason = Some(CloseReason::SlowBody);
            }
            _ => {}
        }
    }

    /// The earliest instant `check_deadlines` could act, for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        let idle = Duration::from_secs(HTTP_IDLE_TIMEOUT_SECS);
        if self.pending_len() > 0 {
            return Some(self.last_send + idle);
        }
        match self.read {
            Read::Head { .. } if self.stream.is_none() => Some(self.head_deadline),
            Read::Body { .. } | Read::Chunked { .. } => Some(self.last_recv + idle),
            _ => None,
        }
    }
}

/// Decodes a chunked request body (RFC 9112 §7.1) into the request's body, bounded by
/// `HTTP_BODY_MAX_BYTES` and `HTTP_CHUNK_LINE_MAX_BYTES`; extensions and trailers are skipped.
#[derive(Debug, Default)]
struct ChunkDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Trailer,
}

impl ChunkDecoder {
    /// Consumes what it can of `buf`; returns (consumed, body complete).
    fn feed(&mut self, buf: &[u8], body: &mut Vec<u8>) -> Result<(usize, bool), HeadError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                ChunkState::Data(remaining) => {
                    if rest.is_empty() {
                        return Ok((pos, false));
                    }
                    let n = remaining.min(rest.len());
                    body.extend_from_slice(&rest[..n]);
                    pos += n;
                    self.state = if n == remaining {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(remaining - n)
                    };
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let Some(line_len) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() > HTTP_CHUNK_LINE_MAX_BYTES {
                            return Err(HeadError::Malformed);
                        }
                        return Ok((pos, false));
                    };
                    if line_len > HTTP_CHUNK_LINE_MAX_BYTES {
                        return Err(HeadError::Malformed);
                    }
                    let line = &rest[..line_len];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    pos += line_len + 1;
                    if self.line(line, body.len())? {
                        return Ok((pos, true));
                    }
                }
            }
        }
    }

    /// Handles one line in a line state; true when the body is complete.
    fn line(&mut self, line: &[u8], body_len: usize) -> Result<bool, HeadError> {
        match self.state {
            ChunkState::Size => {
                let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
                let hex = std::str::from_utf8(hex)
                    .map_err(|_| HeadError::Malformed)?
                    .trim();
                if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(HeadError::Malformed);
                }
                let size = usize::from_str_radix(hex, 16).map_err(|_| HeadError::BodyTooLarge)?;
                if size > HTTP_BODY_MAX_BYTES - body_len {
                    return Err(HeadError::BodyTooLarge);
                }
                self.state = if size == 0 {
                    ChunkState::Trailer
                } else {
                    ChunkState::Data(size)
                };
                Ok(false)
            }
            ChunkState::DataEnd if line.is_empty() => {
                self.state = ChunkState::Size;
                Ok(false)
            }
            ChunkState::DataEnd => Err(HeadError::Malformed),
            ChunkState::Trailer => Ok(line.is_empty()),
            ChunkState::Data(_) => Err(HeadError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests;
