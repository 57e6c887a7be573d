//! Integration tests: the real coney binary driven by an independent client (amqprs) and by
//! hand-written wire bytes. One test binary, so the release build links it once.
//! Set CONEY_TEST_ADDR=host:port to run the same tests against another broker (RabbitMQ).

mod access_definitions;
mod access_permissions;
mod access_support;
mod access_users;
mod access_vhosts;
mod basic;
mod canary;
mod datapath;
mod entities;
mod ext_ae;
mod ext_args;
mod ext_delayed;
mod ext_dlx;
mod ext_expiry_load;
mod ext_length;
mod ext_priority;
mod ext_quorum;
mod ext_reply_to;
mod ext_sac;
mod ext_support;
mod ext_ttl;
mod mgmt_users;
#[path = "../common/procfs.rs"]
mod procfs;
mod raw_wire;
mod robustness;
mod semantics;
mod support;
mod tls_client;
mod wire;
mod wire_compat;
