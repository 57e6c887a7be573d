//! Regression tests for what the robustness work of issue 6 (fuzz targets under fuzz/, the
//! soak in scripts/soak.sh) found in the broker. Each test drives the public API the way the
//! reactor does, with the offending bytes inline, and says what it proves.

use coney::broker::Broker;
use coney::broker::ConnId;
use coney::config::Config;
use coney::protocol::frame::write_method;
use coney::protocol::method::{
    BasicPublish, ChannelOpen, ConnectionOpen, ConnectionStartOk, ConnectionTuneOk, Method,
};
use coney::protocol::{FieldTable, Outbox};
use coney::session::{Ctx, Session, State};
use std::net::SocketAddr;
use std::time::Instant;

/// Protocol header, start-ok (PLAIN guest/guest), tune-ok and open: a client past the handshake.
fn handshake() -> Vec<u8> {
    let mut out = b"AMQP\x00\x00\x09\x01".to_vec();
    let start_ok = ConnectionStartOk {
        client_properties: FieldTable::EMPTY,
        mechanism: b"PLAIN",
        response: b"\0guest\0guest",
        locale: b"en_US",
    };
    write_method(&mut out, 0, &Method::ConnectionStartOk(start_ok));
    let tune_ok = ConnectionTuneOk {
        channel_max: 2047,
        frame_max: 131_072,
        heartbeat: 0,
    };
    write_method(&mut out, 0, &Method::ConnectionTuneOk(tune_ok));
    let open = ConnectionOpen {
        virtual_host: b"/",
        ..Default::default()
    };
    write_method(&mut out, 0, &Method::ConnectionOpen(open));
    out
}

#[path = "common/procfs.rs"]
mod procfs;

/// The process's virtual size from /proc/self/status, in KiB.
fn vm_size_kb() -> u64 {
    procfs::status_kb("self", "VmSize").expect("VmSize of /proc/self/status")
}

/// A content header only announces a body size; memory for the body must follow the body bytes
/// that actually arrive. Today `MessageBuilder::set_header` reserves the announced size (up to
/// max_message_size, 128 MiB) when the header arrives, so a client that sends publish + header
/// on many channels and never a body makes the broker reserve 128 MiB of address space per
/// channel. Against the release binary, ~170 connections x 2047 channels of such headers (about
/// 20 MB of traffic, no body bytes) abort coney with "memory allocation of N bytes failed";
/// under `ulimit -v 2097152` 20 headers are enough. Here 64 headers must not grow the virtual
/// size by anything like 64 x 128 MiB = 8 GiB.
#[test]
fn announced_body_size_is_not_reserved_before_the_body_arrives() {
    const CHANNELS: u16 = 64;
    const GROWTH_MAX_KB: u64 = 1024 * 1024; // 1 GiB: generous for 64 partial messages
    let config = Config::default();
    let mut broker = Broker::new();
    let now = Instant::now();
    let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
    let mut session = Session::new(ConnId(0), peer, &config, now);
    let mut input = handshake();
    for ch in 1..=CHANNELS {
        write_method(&mut input, ch, &Method::ChannelOpen(ChannelOpen::default()));
        let publish = BasicPublish {
            exchange: b"",
            routing_key: b"q",
            ..Default::default()
        };
        write_method(&mut input, ch, &Method::BasicPublish(publish));
        // Content header frame: class 60, weight 0, body size 0x0800_0000 (128 MiB), no properties.
        input.extend_from_slice(&[2]);
        input.extend_from_slice(&ch.to_be_bytes());
        input.extend_from_slice(&[
            0, 0, 0, 14, 0, 60, 0, 0, 0, 0, 0, 0, 0x08, 0, 0, 0, 0, 0, 0xce,
        ]);
    }
    let before_kb = vm_size_kb();
    let mut ctx = Ctx {
        broker: &mut broker,
        config: &config,
        now,
        alarm: None,
    };
    let mut out = Outbox::default();
    let used = session.handle_input(&mut out, &input, &mut ctx);
    let grown_kb = vm_size_kb().saturating_sub(before_kb);
    assert_eq!(used, input.len(), "the whole input is complete frames");
    assert_eq!(
        session.state(),
        State::Open,
        "the headers are legal: nothing is refused"
    );
    assert!(
        grown_kb < GROWTH_MAX_KB,
        "{CHANNELS} content headers announcing 128 MiB each, with no body, grew the virtual size \
         by {} MiB: the body is reserved at its announced size before any of it arrives",
        grown_kb / 1024
    );
    session.release(&mut ctx);
}
