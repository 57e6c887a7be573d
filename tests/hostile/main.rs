//! The hostile-client suite: each test is a load a client controls (pathological topic patterns
//! and keys, huge field tables, thousands of bindings, consumer and channel churn, slowloris
//! handshakes, many exclusive queues, exchange-to-exchange graphs, pipelined declares, large
//! frames, connection floods) run for a bounded time while a canary client measures its own
//! publish→deliver round trip. On a single-threaded broker any expensive client stops every
//! other client, so the canary's p99 must stay under 10 ms during every phase of every load.
//!
//! A test binary of its own so that it runs alone (cargo runs test binaries one after the
//! other), and its tests take a lock so that they run one at a time (harness.rs): the canary's
//! bound is measured on a machine busy only with the load. Each phase prints one line
//! `HOSTILE | broker | load | phase | work | time | p50 | p99 | max | rounds | loadavg`
//! (`--nocapture`; loadavg: the machine's, at the end of the phase).
//!
//! Run: `cargo test --release --test hostile -- --nocapture`; against RabbitMQ 3.10 (the
//! same loads, figures printed but not asserted):
//! `CONEY_TEST_ADDR=127.0.0.1:5698 cargo test --release --test hostile -- --nocapture`.

#[path = "../amqp/canary.rs"]
mod canary;
mod churn;
mod entities;
mod frames;
mod handshake;
mod harness;
mod messages;
#[path = "../common/procfs.rs"]
mod procfs;
mod raw;
#[path = "../amqp/support.rs"]
mod support;
mod tables;
mod topic;
#[path = "../amqp/wire.rs"]
mod wire;
