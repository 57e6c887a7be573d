//! An HTTP client socket: the socket, remembered readiness (edge-triggered, as `Conn`), the
//! request bytes not taken yet, and the `HttpConn` state machine that answers them. The
//! order of one pass is the one src/http/conn.rs documents: read while the state machine
//! takes input, offer the kept tail again, produce a streamed body's next slice, write.

use crate::http::{HttpConn, Service};
use crate::limits::{HTTP_HEAD_MAX_BYTES, READ_CHUNK_BYTES, READ_LEFTOVER_KEEP_BYTES};
use mio::net::TcpStream;
use std::io::{ErrorKind, Read, Write};
use std::time::Instant;

pub struct HttpSocket<S> {
    pub socket: TcpStream,
    pub conn: HttpConn<S>,
    /// Input not taken yet: a partial request, or pipelined requests held back by the
    /// per-turn bound or by a response still going out.
    kept: Vec<u8>,
    pub readable: bool,
    pub writable: bool,
    /// Already on the reactor's HTTP work list this turn.
    pub queued: bool,
    /// The socket reached EOF or failed.
    pub dead: Option<String>,
}

impl<S> HttpSocket<S> {
    pub fn new(socket: TcpStream, conn: HttpConn<S>) -> Self {
        HttpSocket {
            socket,
            conn,
            kept: Vec::new(),
            readable: false,
            writable: true,
            queued: false,
            dead: None,
        }
    }

    /// One pass: read and answer requests, continue a streamed body, write. `budget` bounds
    /// the bytes read this turn. Returns whether work remains that no event will announce
    /// (input read but not taken, or a stream with room to produce).
    pub fn pass<V>(&mut self, svc: &mut V, now: Instant, buf: &mut [u8], budget: usize) -> bool
    where
        V: Service<Stream = S>,
    {
        self.offer_kept(svc, now);
        let mut read = 0;
        // Input the state machine holds back (pipelined requests past the per-turn bound)
        // stays in the socket once `kept` holds a head's worth: memory per client is bounded
        // by HTTP_HEAD_MAX_BYTES + one chunk, and TCP flow control paces the client.
        while self.readable
            && self.dead.is_none()
            && self.conn.reads_input()
            && read < budget
            && self.kept.len() < HTTP_HEAD_MAX_BYTES
        {
            let room = READ_CHUNK_BYTES.min(buf.len());
            match self.socket.read(&mut buf[..room]) {
                Ok(0) => {
                    self.readable = false;
                    self.dead = Some("client closed the socket".into());
                }
                Ok(n) => {
                    read += n;
                    self.kept.extend_from_slice(&buf[..n]);
                    self.offer_kept(svc, now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.readable = false;
                    self.dead = Some(format!("read error: {e}"));
                }
            }
        }
        if self.conn.streaming() {
            self.conn.pump(now, svc);
        }
        self.offer_kept(svc, now);
        self.write(now);
        let more_input = self.readable && self.conn.reads_input();
        let held = !self.kept.is_empty() && self.conn.reads_input();
        self.dead.is_none() && (more_input || held || (self.conn.streaming() && self.writable))
    }

    fn offer_kept<V>(&mut self, svc: &mut V, now: Instant)
    where
        V: Service<Stream = S>,
    {
        if self.kept.is_empty() || !self.conn.reads_input() {
            return;
        }
        let used = self.conn.handle_input(&self.kept, now, svc);
        self.kept.drain(..used);
        if self.kept.is_empty() && self.kept.capacity() > READ_LEFTOVER_KEEP_BYTES {
            self.kept = Vec::new();
        }
    }

    /// Writes pending output until done or `WouldBlock`.
    pub fn write(&mut self, now: Instant) {
        while self.writable && self.dead.is_none() && !self.conn.pending_output().is_empty() {
            match self.socket.write(self.conn.pending_output()) {
                Ok(0) => self.dead = Some("socket closed while writing".into()),
                Ok(n) => self.conn.consume_output(n, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => self.dead = Some(format!("write error: {e}")),
            }
        }
    }

    /// The socket can go: it failed, or the exchange is over and everything is written.
    pub fn finished(&self) -> bool {
        self.dead.is_some() || self.conn.finished()
    }
}
