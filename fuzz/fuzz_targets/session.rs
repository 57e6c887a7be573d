//! Fuzz target `session`: two AMQP connections to one in-memory broker, driven the way the
//! reactor drives them but without sockets. The input is a program of steps: feed raw bytes
//! or one harness-framed frame to a connection, run a delivery-and-write pass, advance the
//! clock, or drop a connection. Both
//! connections start past the handshake with channels 1 and 2 open, so the bytes reach the
//! channel and broker logic. Checks: no panic; every byte the broker writes is a well-formed
//! frame whose method or content header decodes; no consumer outlives its connection; the
//! broker stays consistent (`Broker::assert_consistent`: consumers and queues point at each
//! other, the bindings table at itself); after every connection is released the broker holds
//! no consumers and no exclusive queues.
#![no_main]

use coney::broker::ConnId;
use coney::broker::Broker;
use coney::config::Config;
use coney::protocol::constants::{FRAME_END, FRAME_OVERHEAD, PROTOCOL_HEADER};
use coney::protocol::frame::write_method;
use coney::protocol::method::{ChannelOpen, ConnectionOpen, ConnectionStartOk, ConnectionTuneOk};
use coney::protocol::{parse_frame, ContentHeader, FieldTable, FrameKind, Method, Outbox, Parsed};
use coney::session::delivery::{deliver_notices, deliver_ready, Sessions};
use coney::session::{Ctx, Session, State};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const CONNS: usize = 2;
const STEPS_MAX: usize = 256;
/// The two connections negotiate different frame sizes so body splitting is exercised.
const FRAME_MAX: [u32; CONNS] = [4096, 131_072];
/// Small, so few channels are open at once. It bounds how many are open, not their numbers
/// (as in RabbitMQ), so frames on any channel number are legal output.
const CHANNEL_MAX: u16 = 16;

/// client_properties raw bytes: a `capabilities` table with what pika announces.
fn client_properties() -> Vec<u8> {
    let mut caps = Vec::new();
    for key in ["consumer_cancel_notify", "publisher_confirms", "basic.nack", "authentication_failure_close"] {
        caps.push(key.len() as u8);
        caps.extend_from_slice(key.as_bytes());
        caps.extend_from_slice(b"t\x01");
    }
    let mut table = b"\x0ccapabilitiesF".to_vec();
    table.extend_from_slice(&(caps.len() as u32).to_be_bytes());
    table.extend_from_slice(&caps);
    table
}

struct Conns {
    sessions: Vec<Option<Session>>,
    /// Each connection's output, as `net::conn::Conn` owns it.
    outs: Vec<Outbox>,
    inputs: Vec<Vec<u8>>,
    /// A resource alarm (the reactor's memory or disk alarm) is raised: publishers are not read.
    alarm: Option<&'static str>,
}

impl Sessions for Conns {
    fn session_mut(&mut self, id: ConnId) -> Option<(&mut Session, &mut Outbox)> {
        let i = id.0 as usize;
        let s = self.sessions.get_mut(i)?.as_mut()?;
        Some((s, &mut self.outs[i]))
    }
    fn wants_flush(&mut self, _id: ConnId) {}
}

/// A 16-bit big-endian length and then that many bytes, or as many as are left.
fn take_chunk<'a>(data: &'a [u8], at: &mut usize) -> &'a [u8] {
    let len = match data.get(*at..*at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
        None => 0,
    };
    *at = (*at + 2).min(data.len());
    let end = (*at + len).min(data.len());
    let chunk = &data[*at..end];
    *at = end;
    chunk
}

fn handshake(conn: usize) -> Vec<u8> {
    let mut out = PROTOCOL_HEADER.to_vec();
    let raw = client_properties();
    let client_properties = FieldTable::parse(&raw).expect("valid client properties");
    let start_ok = ConnectionStartOk {
        client_properties,
        mechanism: b"PLAIN",
        response: b"\0guest\0guest",
        locale: b"en_US",
    };
    write_method(&mut out, 0, &Method::ConnectionStartOk(start_ok));
    let tune_ok = ConnectionTuneOk { channel_max: CHANNEL_MAX, frame_max: FRAME_MAX[conn], heartbeat: 0 };
    write_method(&mut out, 0, &Method::ConnectionTuneOk(tune_ok));
    write_method(&mut out, 0, &Method::ConnectionOpen(ConnectionOpen { virtual_host: b"/", ..Default::default() }));
    for ch in [1, 2] {
        write_method(&mut out, ch, &Method::ChannelOpen(ChannelOpen::default()));
    }
    out
}

fn peer(conn: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000 + conn as u16))
}

/// Hands `conn` its buffered input, as `net::conn::Conn::read` does, keeping the unparsed rest.
fn feed(c: &mut Conns, conn: usize, broker: &mut Broker, config: &Config, now: Instant) {
    let Some(s) = c.sessions[conn].as_mut() else { return };
    if !s.reads_input() {
        c.inputs[conn].clear();
        return;
    }
    let mut ctx = Ctx { broker, config, now, alarm: c.alarm };
    let used = s.handle_input(&mut c.outs[conn], &c.inputs[conn], &mut ctx);
    assert!(used <= c.inputs[conn].len(), "consumed {used} of {} bytes", c.inputs[conn].len());
    c.inputs[conn].drain(..used);
    cancel_notices(c, broker);
}

/// The reactor's `deliver_notices`: cancellations and direct replies reach their sessions.
/// Nothing here deletes a vhost or a user, so no connection is forced closed.
fn cancel_notices(c: &mut Conns, broker: &mut Broker) {
    let mut forced = Vec::new();
    deliver_notices(broker, c, &mut forced);
    assert!(forced.is_empty(), "no vhost or user is deleted here");
}

/// Every output byte must be whole, decodable frames within the negotiated limits. The peer
/// reads everything at once.
fn check_output(s: &Session, out: &mut Outbox) {
    let mut written = Vec::new();
    out.write_to(&mut written).expect("a Vec takes everything");
    assert_eq!(out.pending(), 0, "one write to a Vec takes all the output");
    let mut rest = &written[..];
    while !rest.is_empty() {
        // The limit a peer enforces is what it negotiated; before tune-ok it is the server's.
        match parse_frame(rest, 0) {
            Ok(Parsed::Frame { frame, len }) => {
                if s.state() != State::AwaitingHeader && frame.kind != FrameKind::Method {
                    assert!(len as u64 <= s.frame_max() as u64, "{len}-byte frame over frame_max {}", s.frame_max());
                }
                match frame.kind {
                    FrameKind::Method => {
                        if let Err(e) = Method::decode(frame.payload) {
                            panic!("broker wrote an undecodable method ({e:?}): {:02x?}", frame.payload);
                        }
                    }
                    FrameKind::Header => {
                        assert!(ContentHeader::decode(frame.payload).is_ok(), "bad content header");
                    }
                    FrameKind::Body => assert!(len > FRAME_OVERHEAD, "empty body frame"),
                    FrameKind::Heartbeat => assert_eq!(frame.channel, 0),
                }
                rest = &rest[len..];
            }
            // A rejected protocol header is answered with our 8-byte header, not a frame.
            _ if rest == PROTOCOL_HEADER => return,
            other => panic!("broker wrote a malformed frame: {other:?} in {:02x?}", &rest[..rest.len().min(64)]),
        }
    }
}

/// The reactor's delivery, confirm and write pass; the peer reads everything at once.
fn write_pass(c: &mut Conns, broker: &mut Broker) {
    deliver_ready(broker, c);
    for (slot, out) in c.sessions.iter_mut().zip(c.outs.iter_mut()) {
        let Some(s) = slot.as_mut() else { continue };
        s.flush_confirms(out, true);
        check_output(s, out);
        s.after_write(out, broker);
    }
}

/// Raising blocks open publishers; clearing unblocks them and hands them their waiting input.
fn toggle_alarm(c: &mut Conns, broker: &mut Broker, config: &Config, now: Instant) {
    c.alarm = match c.alarm {
        None => Some("memory"),
        Some(_) => None,
    };
    for conn in 0..CONNS {
        let Some(s) = c.sessions[conn].as_mut() else { continue };
        match c.alarm {
            Some(reason) if s.is_publisher() && s.is_open() => s.block(&mut c.outs[conn], reason),
            None if s.is_blocked() => {
                s.unblock(&mut c.outs[conn]);
                feed(c, conn, broker, config, now);
            }
            _ => {}
        }
    }
}

fn release(c: &mut Conns, conn: usize, broker: &mut Broker, config: &Config, now: Instant) {
    if let Some(mut s) = c.sessions[conn].take() {
        let mut ctx = Ctx { broker, config, now, alarm: c.alarm };
        s.release(&mut ctx);
        cancel_notices(c, broker);
    }
    c.inputs[conn].clear();
    c.outs[conn] = Outbox::default();
    assert!(
        !broker.holds_anything_of(ConnId(conn as u32)),
        "a consumer or exclusive queue outlived connection {conn}"
    );
}

fn open(c: &mut Conns, conn: usize, with_handshake: bool, broker: &mut Broker, config: &Config, now: Instant) {
    c.sessions[conn] = Some(Session::new(ConnId(conn as u32), peer(conn), config, now));
    if with_handshake {
        c.inputs[conn] = handshake(conn);
        feed(c, conn, broker, config, now);
        let s = c.sessions[conn].as_ref().expect("just opened");
        assert_eq!(s.state(), State::Open, "handshake did not open the connection");
    }
}

fuzz_target!(|data: &[u8]| {
    let config = Config { channel_max: CHANNEL_MAX, ..Config::default() };
    let mut broker = Broker::new();
    let mut now = Instant::now();
    let mut c = Conns {
        sessions: (0..CONNS).map(|_| None).collect(),
        outs: (0..CONNS).map(|_| Outbox::default()).collect(),
        inputs: vec![Vec::new(); CONNS],
        alarm: None,
    };
    for conn in 0..CONNS {
        open(&mut c, conn, true, &mut broker, &config, now);
    }
    write_pass(&mut c, &mut broker);

    let mut at = 0;
    for _ in 0..STEPS_MAX {
        let Some(&op) = data.get(at) else { break };
        at += 1;
        let conn = (op & 1) as usize;
        match (op >> 1) & 7 {
            // Raw bytes for a connection: a 16-bit length, then that many bytes (or what is
            // left). Reaches framing errors and partial frames.
            0 | 1 => {
                let chunk = take_chunk(data, &mut at);
                c.inputs[conn].extend_from_slice(chunk);
                feed(&mut c, conn, &mut broker, &config, now);
            }
            // One frame built by the harness: type selector, channel, 16-bit length, payload.
            // Mutations then change methods and arguments without breaking the framing.
            2 | 3 => {
                let kind = [1u8, 2, 3, 8][data.get(at).map_or(0, |b| *b as usize % 4)];
                let channel = data.get(at + 1).map_or(0, |b| *b as u16 % (CHANNEL_MAX + 1));
                at = (at + 2).min(data.len());
                let payload = take_chunk(data, &mut at);
                let input = &mut c.inputs[conn];
                input.push(kind);
                input.extend_from_slice(&channel.to_be_bytes());
                input.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                input.extend_from_slice(payload);
                input.push(FRAME_END);
                feed(&mut c, conn, &mut broker, &config, now);
            }
            4 | 5 => write_pass(&mut c, &mut broker),
            // Bit 4 set: raise or clear the resource alarm, as the reactor's on_alarm_change.
            6 if op & 0x10 != 0 => toggle_alarm(&mut c, &mut broker, &config, now),
            6 => {
                now += Duration::from_secs(1 + (op >> 5) as u64);
                for conn in 0..CONNS {
                    let out = &mut c.outs[conn];
                    let alive = c.sessions[conn].as_mut().map_or(true, |s| s.tick(out, now, &config));
                    if !alive {
                        release(&mut c, conn, &mut broker, &config, now);
                        open(&mut c, conn, true, &mut broker, &config, now);
                    }
                }
            }
            // The socket goes (client vanished): release, then a new client on the same slot,
            // like the reactor's slab reusing the key. Bit 4 says whether it handshakes.
            _ => {
                release(&mut c, conn, &mut broker, &config, now);
                open(&mut c, conn, op & 0x10 == 0, &mut broker, &config, now);
            }
        }
        for conn in 0..CONNS {
            let finished = c.sessions[conn].as_ref().is_some_and(|s| s.is_closed()) && c.outs[conn].pending() == 0;
            if finished {
                release(&mut c, conn, &mut broker, &config, now);
                open(&mut c, conn, true, &mut broker, &config, now);
            }
        }
        broker.assert_consistent();
    }
    write_pass(&mut c, &mut broker);
    for conn in 0..CONNS {
        release(&mut c, conn, &mut broker, &config, now);
    }
    assert_eq!(broker.consumer_count(), 0, "consumers left with no connection");
    broker.assert_consistent();
});
