//! coney: an AMQP 0-9-1 broker on one mio reactor. Layers, bottom up: `protocol` (bytes ↔
//! frames) → `broker` (exchanges, queues, routing) → `session` (connection and channel
//! semantics) → `net` and `reactor` (sockets and readiness).

pub mod alloc;
pub mod auth;
pub mod broker;
pub mod client;
pub mod config;
pub mod config_file;
pub mod definitions;
pub(crate) mod entropy;
pub mod error;
pub mod http;
pub mod limits;
pub mod logfile;
pub mod mgmt;
pub(crate) mod net;
/// The DNS answer codec is network input: exported for its fuzz target (fuzz/fuzz_targets/dns.rs).
pub use net::dns;
pub mod notify;
pub mod protocol;
pub mod reactor;
pub mod resources;
pub mod session;
pub mod shovel;
pub(crate) mod store;
