//! Broker benches without sockets: the whole publish path in memory — parse the publisher's
//! frames, assemble the message, route it through the broker, deliver it to a no-ack consumer
//! and encode basic.deliver — for the default, fanout and topic exchanges.
//! The `session/` benches drive the same path through two sessions (a publisher and a no-ack
//! consumer) as the reactor does, without sockets: input bytes in, delivery frames out.
//! Run: `cargo bench --bench publish_deliver`.

mod support;

use coney::broker::consumer::{Consumer, ConsumerId};
use coney::broker::message::{Message, MessageBuilder, MessageFlags};
use coney::broker::queue::{QueueId, QueuedMessage};
use coney::broker::ConnId;
use coney::broker::{Actor, Broker, DeliverySink, PublishProps, QueueFlags};
use coney::protocol::constants::CLASS_BASIC;
use coney::protocol::frame::{self, parse_frame, FrameKind, Parsed};
use coney::protocol::method::{BasicDeliver, BasicPublish, Method};
use coney::protocol::properties::{BasicProperties, ContentHeader};
use coney::protocol::{FieldTable, Outbox};
use coney::session::delivery::{deliver_ready, Sessions};
use coney::session::{Ctx, Session};
use std::hint::black_box;

const FRAME_MAX: u32 = 131_072;
/// Messages per timed call.
const BATCH: usize = 1000;
const CONN: ConnId = ConnId(1);

fn publish_frames(exchange: &[u8], key: &[u8], body: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let p = BasicPublish {
        exchange,
        routing_key: key,
        ..Default::default()
    };
    frame::write_method(&mut out, 1, &Method::BasicPublish(p));
    frame::write_content_header(&mut out, 1, CLASS_BASIC, body as u64, &[0, 0]);
    frame::write_body(&mut out, 1, &vec![7u8; body], FRAME_MAX);
    out
}

/// What the session does for one publish: frames in, message built, its exchange found and
/// the message routed (as connection CONN, in vhost "/").
fn ingest(broker: &mut Broker, who: &Actor, builder: &mut MessageBuilder, mut buf: &[u8]) -> usize {
    let mut routed = 0;
    while let Ok(Parsed::Frame { frame, len }) = parse_frame(buf, FRAME_MAX) {
        buf = &buf[len..];
        match frame.kind {
            FrameKind::Method => {
                if let Ok(Method::BasicPublish(p)) = Method::decode(frame.payload) {
                    builder.start(p.exchange, p.routing_key);
                }
            }
            FrameKind::Header => {
                let h = ContentHeader::decode(frame.payload).expect("header");
                let props = BasicProperties::decode(h.properties_raw).expect("properties");
                builder.set_header(h.properties_raw, h.body_size, MessageFlags::of(&props));
            }
            FrameKind::Body => {
                builder.push_body(frame.payload);
                if builder.body_remaining() == 0 {
                    let msg = builder.finish();
                    let target = broker
                        .publish_target(who, msg.exchange())
                        .expect("exchange");
                    routed += broker.publish(target, &msg, PublishProps::default()).queues;
                }
            }
            FrameKind::Heartbeat => {}
        }
    }
    routed
}

/// What a session does with a delivery: encode basic.deliver with its content.
struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    tag: &'a mut u64,
}

impl DeliverySink for Encoder<'_> {
    fn can_take(&mut self, _: ConsumerId, _: &Consumer) -> bool {
        true
    }
    fn deliver(
        &mut self,
        _: ConsumerId,
        _: &Consumer,
        _: QueueId,
        m: QueuedMessage,
    ) -> Result<(), QueuedMessage> {
        *self.tag += 1;
        let msg = m.message();
        let d = BasicDeliver {
            consumer_tag: b"amq.ctag-bench",
            delivery_tag: *self.tag,
            redelivered: m.redelivered(),
            exchange: msg.exchange(),
            routing_key: msg.routing_key(),
        };
        frame::write_method(self.out, 1, &Method::BasicDeliver(d));
        frame::write_content_header(self.out, 1, CLASS_BASIC, msg.body_len(), msg.properties());
        frame::write_body(self.out, 1, msg.body(), FRAME_MAX);
        Ok(())
    }
}

/// What delivery does: every ready message to its queue's no-ack consumer, encoded.
fn drain(broker: &mut Broker, out: &mut Vec<u8>, tag: &mut u64) {
    out.clear();
    while broker.has_ready() {
        broker.deliver_ready(&mut Encoder {
            out: &mut *out,
            tag: &mut *tag,
        });
    }
    black_box(&out);
}

/// Connection CONN acting in vhost "/" with every right.
fn actor(b: &Broker) -> Actor {
    b.internal_actor(CONN, "/").expect("vhost /")
}

/// Declares queue `name` with a no-ack consumer on it.
fn declare(b: &mut Broker, name: &str) {
    let who = actor(b);
    b.declare_queue(
        &who,
        name.as_bytes(),
        QueueFlags::default(),
        FieldTable::EMPTY,
    )
    .expect("declare");
    b.add_consumer(&who, 1, 0, name.as_bytes(), true, false, FieldTable::EMPTY)
        .expect("consume");
}

/// A publisher session and a consumer session on one broker, past the handshake.
struct Pair {
    broker: Broker,
    config: coney::config::Config,
    conns: Conns,
}

struct Conns(Vec<(Session, Outbox)>);

impl Sessions for Conns {
    fn session_mut(&mut self, id: ConnId) -> Option<(&mut Session, &mut Outbox)> {
        let (s, out) = self.0.get_mut(id.0 as usize)?;
        Some((s, out))
    }
    fn wants_flush(&mut self, _id: ConnId) {}
}

/// Handshake, channel 1 open, and `then` on channel 1.
fn client_input(then: &[Method<'_>]) -> Vec<u8> {
    use coney::protocol::method::*;
    let mut out = b"AMQP\x00\x00\x09\x01".to_vec();
    let start_ok = ConnectionStartOk {
        client_properties: FieldTable::EMPTY,
        mechanism: b"PLAIN",
        response: b"\0guest\0guest",
        locale: b"en_US",
    };
    frame::write_method(&mut out, 0, &Method::ConnectionStartOk(start_ok));
    let tune_ok = ConnectionTuneOk {
        channel_max: 2047,
        frame_max: FRAME_MAX,
        heartbeat: 0,
    };
    frame::write_method(&mut out, 0, &Method::ConnectionTuneOk(tune_ok));
    let open = ConnectionOpen {
        virtual_host: b"/",
        ..Default::default()
    };
    frame::write_method(&mut out, 0, &Method::ConnectionOpen(open));
    frame::write_method(&mut out, 1, &Method::ChannelOpen(ChannelOpen::default()));
    for m in then {
        frame::write_method(&mut out, 1, m);
    }
    out
}

impl Pair {
    /// Session 0 publishes; session 1 consumes every queue in `queues` with no-ack.
    fn new(queues: &[&str], binds: &[(&str, &str, String)]) -> Self {
        use coney::protocol::method::*;
        let mut p = Pair {
            broker: Broker::new(),
            config: coney::config::Config::default(),
            conns: Conns(Vec::new()),
        };
        let now = std::time::Instant::now();
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000));
        let mut setup = Vec::new();
        for q in queues {
            setup.push(Method::QueueDeclare(QueueDeclare {
                queue: q.as_bytes(),
                ..Default::default()
            }));
        }
        for (q, x, key) in binds {
            setup.push(Method::QueueBind(QueueBind {
                queue: q.as_bytes(),
                exchange: x.as_bytes(),
                routing_key: key.as_bytes(),
                ..Default::default()
            }));
        }
        let consume: Vec<Method<'_>> = queues
            .iter()
            .map(|q| {
                Method::BasicConsume(BasicConsume {
                    queue: q.as_bytes(),
                    no_ack: true,
                    ..Default::default()
                })
            })
            .collect();
        for (id, then) in [setup, consume].iter().enumerate() {
            let mut s = Session::new(ConnId(id as u32), peer, &p.config, now);
            let input = client_input(then);
            let mut ctx = Ctx {
                broker: &mut p.broker,
                config: &p.config,
                now,
                alarm: None,
            };
            let mut out = Outbox::default();
            assert_eq!(s.handle_input(&mut out, &input, &mut ctx), input.len());
            assert!(s.is_open());
            p.conns.0.push((s, out));
        }
        p.discard_output();
        p
    }

    fn discard_output(&mut self) {
        for (s, out) in &mut self.conns.0 {
            out.write_to(&mut std::io::sink()).expect("sink");
            s.after_write(out, &mut self.broker);
        }
    }

    /// One loop turn: the publisher's input, then delivery, then the output is "written".
    fn turn(&mut self, input: &[u8]) {
        let now = std::time::Instant::now();
        let mut ctx = Ctx {
            broker: &mut self.broker,
            config: &self.config,
            now,
            alarm: None,
        };
        let (s, out) = &mut self.conns.0[0];
        let used = s.handle_input(out, input, &mut ctx);
        debug_assert_eq!(used, input.len());
        while self.broker.has_ready() {
            deliver_ready(&mut self.broker, &mut self.conns);
            self.discard_output();
        }
    }
}

fn session_benches(bench: &support::Bench) {
    let frames = publish_frames(b"", b"q", 16).repeat(BATCH);
    let mut p = Pair::new(&["q"], &[]);
    bench.run(
        "session/default exchange -> 1 queue -> deliver (16 B)",
        BATCH as u64,
        || p.turn(&frames),
    );
    let frames = publish_frames(b"", b"q", 1024).repeat(BATCH);
    bench.run(
        "session/default exchange -> 1 queue -> deliver (1 KiB)",
        BATCH as u64,
        || p.turn(&frames),
    );
    let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let queues: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let binds: Vec<(&str, &str, String)> = queues
        .iter()
        .map(|q| (*q, "amq.fanout", String::new()))
        .collect();
    let mut p = Pair::new(&queues, &binds);
    let frames = publish_frames(b"amq.fanout", b"", 16).repeat(BATCH);
    bench.run(
        "session/fanout -> 10 queues -> deliver (per publish)",
        BATCH as u64,
        || p.turn(&frames),
    );
}

fn main() {
    let bench = support::Bench::from_args();
    session_benches(&bench);

    bench.run("message/build 16 B (MessageBuilder)", 1, || {
        black_box(Message::new(
            b"",
            b"q",
            &[0, 0],
            black_box(&[7u8; 16]),
            false,
        ));
    });

    let mut out = Vec::with_capacity(1 << 20);
    let mut tag = 0u64;
    let mut builder = MessageBuilder::default();

    let mut b = Broker::new();
    let who = actor(&b);
    declare(&mut b, "q");
    let frames = publish_frames(b"", b"q", 16).repeat(BATCH);
    bench.run(
        "path/default exchange -> 1 queue -> deliver (16 B)",
        BATCH as u64,
        || {
            black_box(ingest(&mut b, &who, &mut builder, &frames));
            drain(&mut b, &mut out, &mut tag);
        },
    );
    let frames_1k = publish_frames(b"", b"q", 1024).repeat(BATCH);
    bench.run(
        "path/default exchange -> 1 queue -> deliver (1 KiB)",
        BATCH as u64,
        || {
            black_box(ingest(&mut b, &who, &mut builder, &frames_1k));
            drain(&mut b, &mut out, &mut tag);
        },
    );

    let mut b = Broker::new();
    let who = actor(&b);
    for i in 0..10 {
        let name = format!("f{i}");
        declare(&mut b, &name);
        b.bind_queue(
            &actor(&b),
            name.as_bytes(),
            b"amq.fanout",
            b"",
            FieldTable::EMPTY,
        )
        .expect("bind");
    }
    let frames = publish_frames(b"amq.fanout", b"", 16).repeat(BATCH);
    bench.run(
        "path/fanout -> 10 queues -> deliver (per publish)",
        BATCH as u64,
        || {
            black_box(ingest(&mut b, &who, &mut builder, &frames));
            drain(&mut b, &mut out, &mut tag);
        },
    );

    let mut b = Broker::new();
    let who = actor(&b);
    declare(&mut b, "t");
    for i in 0..1000 {
        let key = match i % 10 {
            0 => format!("#.e{}", (i / 10) % 10),
            1 => format!("s{}.*.e{}", (i / 10) % 10, (i / 100) % 10),
            _ => format!("s{}.m{}.e{}", i % 10, (i / 10) % 10, (i / 100) % 10),
        };
        b.bind_queue(
            &actor(&b),
            b"t",
            b"amq.topic",
            key.as_bytes(),
            FieldTable::EMPTY,
        )
        .expect("bind");
    }
    let frames: Vec<u8> = (0..BATCH)
        .flat_map(|i| {
            let key = format!("s{}.m{}.e{}", i % 10, (i / 10) % 10, (i / 100) % 10);
            publish_frames(b"amq.topic", key.as_bytes(), 16)
        })
        .collect();
    bench.run(
        "path/topic, 1000 bindings -> 1 queue -> deliver",
        BATCH as u64,
        || {
            black_box(ingest(&mut b, &who, &mut builder, &frames));
            drain(&mut b, &mut out, &mut tag);
        },
    );
}
