//! Sockets and their buffers: reading into the shared buffer with the partial-frame leftover
//! kept per connection, and draining a session's output until the socket would block; TLS as
//! a transport under the same sessions; host names resolved without blocking (DNS over UDP).

pub mod conn;
pub mod dns;
pub mod http;
pub mod io_stats;
pub mod resolver;
pub mod tls;
