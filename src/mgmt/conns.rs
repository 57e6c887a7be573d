//! The connections the API lists and closes, as the reactor (their owner) lends them: one
//! trait so the management code never sees the connection table or a socket.

use crate::session::Session;
use std::net::SocketAddr;

/// A connection as the API sees it: its session (which describes itself and its channels)
/// and the listener address it came in on.
pub struct ConnRow<'a> {
    pub session: &'a Session,
    pub local: SocketAddr,
    /// Came in on the TLS (amqps) listener.
    pub tls: bool,
    /// Its TLS handshake (protocol, cipher suite, client certificate), once complete.
    pub tls_info: Option<&'a crate::net::tls::TlsInfo>,
    /// Its socket traffic (recv_oct, send_oct, ...).
    pub io: &'a crate::net::io_stats::IoStats,
}

impl ConnRow<'_> {
    /// RabbitMQ's connection name: `peer -> listener`.
    pub fn name(&self) -> String {
        format!("{} -> {}", self.session.peer(), self.local)
    }
}

/// The reactor's connection table, as the management API uses it.
pub trait Connections {
    /// Calls `f` with every connection.
    fn each(&self, f: &mut dyn FnMut(&ConnRow<'_>));
    /// Closes the named connection with 320 CONNECTION_FORCED and `reason`; false if no
    /// connection has that name.
    fn close(&mut self, name: &str, reason: &str) -> bool;
}
