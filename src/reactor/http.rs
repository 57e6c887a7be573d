//! The HTTP side of the loop: the management and Prometheus listeners and their client
//! sockets, on the same `Poll` as AMQP. Tokens of HTTP sockets live above
//! `HTTP_TOKEN_BASE`, so one match in the loop tells them from AMQP connections.
//!
//! Per turn, each HTTP socket with work gets one `HttpSocket::pass` (read at most
//! `HTTP_READ_BYTES_PER_TURN_MAX`, answer at most `HTTP_REQUESTS_PER_TURN_MAX` requests,
//! produce at most one body slice, write); a big listing therefore goes out a slice per turn
//! between AMQP turns, and a client that stops reading stops its own production.

use crate::config::Config;
use crate::http::HttpConn;
use crate::limits::{
    HTTP_CONNECTIONS_MAX, HTTP_READ_BYTES_PER_TURN_MAX, HTTP_SOCKETS_PER_TURN_MAX,
};
use crate::mgmt::{Endpoint, Listing, Management};
use crate::net::http::HttpSocket;
use log::{info, warn};
use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::time::Instant;

/// Listener tokens and the first HTTP socket token; far above any AMQP connection's.
pub(super) const HTTP_TOKEN_BASE: usize = 1 << 40;
const MANAGEMENT_LISTENER: usize = HTTP_TOKEN_BASE;
const PROMETHEUS_LISTENER: usize = HTTP_TOKEN_BASE + 1;
const FIRST_SOCKET: usize = HTTP_TOKEN_BASE + 2;

struct Client {
    sock: HttpSocket<Listing>,
    endpoint: Endpoint,
}

pub(super) struct HttpSide {
    management: Option<TcpListener>,
    prometheus: Option<TcpListener>,
    clients: Slab<Client>,
    /// Sockets with work this turn (an event, or work left from the last pass).
    work: Vec<usize>,
}

/// Binds one configured listener. An explicit one that fails is the start's failure; the
/// default one is logged and skipped (see `HttpListener::explicit`).
fn bind(
    what: &str,
    l: crate::config::HttpListener,
    registry: &Registry,
    token: usize,
) -> io::Result<Option<TcpListener>> {
    let Some(addr) = l.addr else {
        return Ok(None);
    };
    match TcpListener::bind(addr) {
        Ok(mut listener) => {
            registry.register(&mut listener, Token(token), Interest::READABLE)?;
            info!("{what} listening on {}", listener.local_addr()?);
            Ok(Some(listener))
        }
        Err(e) if !l.explicit => {
            warn!("{what}: cannot listen on {addr}: {e}; running without it (set its address or turn it off in the config)");
            Ok(None)
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("{what} on {addr}: {e}"))),
    }
}

impl HttpSide {
    pub(super) fn bind(config: &Config, registry: &Registry) -> io::Result<Self> {
        Ok(HttpSide {
            management: bind(
                "management API",
                config.management,
                registry,
                MANAGEMENT_LISTENER,
            )?,
            prometheus: bind(
                "prometheus metrics",
                config.prometheus,
                registry,
                PROMETHEUS_LISTENER,
            )?,
            clients: Slab::new(),
            work: Vec::new(),
        })
    }

    pub(super) fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let addr = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        (addr(&self.management), addr(&self.prometheus))
    }

    /// Takes an event for a token at or above `HTTP_TOKEN_BASE`.
    pub(super) fn on_event(
        &mut self,
        token: usize,
        ev: &mio::event::Event,
        registry: &Registry,
        now: Instant,
    ) {
        match token {
            MANAGEMENT_LISTENER => self.accept(Endpoint::Api, registry, now),
            PROMETHEUS_LISTENER => self.accept(Endpoint::Metrics, registry, now),
            t => {
                let key = t - FIRST_SOCKET;
                let Some(c) = self.clients.get_mut(key) else {
                    return;
                };
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    c.sock.readable = true;
                }
                if ev.is_writable() || ev.is_error() {
                    c.sock.writable = true;
                }
                if !c.sock.queued {
                    c.sock.queued = true;
                    self.work.push(key);
                }
            }
        }
    }

    fn accept(&mut self, endpoint: Endpoint, registry: &Registry, now: Instant) {
        let listener = match endpoint {
            Endpoint::Api => &self.management,
            Endpoint::Metrics => &self.prometheus,
        };
        let Some(listener) = listener else { return };
        loop {
            match listener.accept() {
                Ok((mut socket, peer)) => {
                    if self.clients.len() >= HTTP_CONNECTIONS_MAX {
                        warn!(
                            "HTTP connection limit {HTTP_CONNECTIONS_MAX} reached; refusing {peer}"
                        );
                        continue;
                    }
                    let _ = socket.set_nodelay(true);
                    let entry = self.clients.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = registry.register(
                        &mut socket,
                        Token(FIRST_SOCKET + key),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!("register HTTP client {peer}: {e}");
                        continue;
                    }
                    entry.insert(Client {
                        sock: HttpSocket::new(socket, HttpConn::new(peer, now)),
                        endpoint,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    // The socket stays in the backlog; the next readiness event retries.
                    warn!("HTTP accept failed: {e}");
                    return;
                }
            }
        }
    }

    /// Whether a socket has work that needs the loop to turn without sleeping.
    pub(super) fn busy(&self) -> bool {
        !self.work.is_empty()
    }

    /// One pass over the sockets with work; `svc` builds the service for a socket's endpoint.
    pub(super) fn turn(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        registry: &Registry,
        mut svc: impl FnMut(Endpoint, &mut dyn FnMut(&mut Management<'_>)),
    ) {
        // The first HTTP_SOCKETS_PER_TURN_MAX in line are served; the rest keep their order
        // ahead of those that come back with work left.
        let take = self.work.len().min(HTTP_SOCKETS_PER_TURN_MAX);
        let list: Vec<usize> = self.work.drain(..take).collect();
        let mut done = Vec::new();
        for &key in &list {
            let Some(c) = self.clients.get_mut(key) else {
                continue;
            };
            c.sock.queued = false;
            let mut more = false;
            let sock = &mut c.sock;
            svc(c.endpoint, &mut |m| {
                more = sock.pass(m, now, buf, HTTP_READ_BYTES_PER_TURN_MAX);
            });
            if sock.finished() {
                done.push(key);
            } else if more {
                sock.queued = true;
                self.work.push(key);
            }
        }
        for key in done {
            self.close(key, registry);
        }
    }

    /// Deadlines (slow heads, idle peers, readers that stopped), once a tick.
    pub(super) fn tick(&mut self, now: Instant, registry: &Registry) {
        let mut done = Vec::new();
        for (key, c) in self.clients.iter_mut() {
            c.sock.conn.check_deadlines(now);
            c.sock.write(now);
            if c.sock.finished() {
                done.push(key);
            }
        }
        for key in done {
            self.close(key, registry);
        }
    }

    fn close(&mut self, key: usize, registry: &Registry) {
        if let Some(mut c) = self.clients.try_remove(key) {
            let _ = registry.deregister(&mut c.sock.socket);
            log::debug!(
                "HTTP client {} closed: {:?}",
                c.sock.conn.peer,
                c.sock
                    .dead
                    .as_deref()
                    .map_or_else(|| format!("{:?}", c.sock.conn.close_reason), str::to_owned)
            );
        }
    }

    /// Stops listening (shutdown); client sockets are dropped with the reactor.
    pub(super) fn stop_listening(&mut self, registry: &Registry) {
        for l in [self.management.take(), self.prometheus.take()]
            .into_iter()
            .flatten()
        {
            let mut l = l;
            let _ = registry.deregister(&mut l);
        }
    }
}
