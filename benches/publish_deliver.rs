//! Broker benches without sockets: queue enqueue/dequeue, and the whole publish path in
//! memory — parse the publisher's frames, assemble the message, route it through the broker,
//! pop it from the queue and encode the delivery — for the default, fanout and topic exchanges.
//! Run: `cargo bench --bench publish_deliver`.

mod support;

use coney::broker::message::{Message, MessageBuilder};
use coney::broker::queue::{ConnId, Queue, QueueId};
use coney::broker::{Broker, QueueFlags};
use coney::protocol::constants::CLASS_BASIC;
use coney::protocol::frame::{self, parse_frame, FrameKind, Parsed};
use coney::protocol::method::{BasicDeliver, BasicPublish, Method};
use coney::protocol::properties::{BasicProperties, ContentHeader};
use coney::protocol::FieldTable;
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

/// What the session does for one publish: frames in, message built and routed.
fn ingest(broker: &mut Broker, builder: &mut MessageBuilder, mut buf: &[u8]) -> usize {
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
                builder.set_header(h.properties_raw, h.body_size, props.is_persistent());
            }
            FrameKind::Body => {
                builder.push_body(frame.payload);
                if builder.body_remaining() == 0 {
                    let msg = builder.finish();
                    routed += broker.publish(&msg, None).expect("publish");
                }
            }
            FrameKind::Heartbeat => {}
        }
    }
    routed
}

/// What delivery does: pop every ready message and encode basic.deliver with its content.
fn drain(broker: &mut Broker, queues: &[QueueId], out: &mut Vec<u8>, tag: &mut u64) {
    out.clear();
    for &q in queues {
        let q = broker.queues.get_mut(q).expect("queue");
        while let Some(m) = q.pop() {
            *tag += 1;
            let d = BasicDeliver {
                consumer_tag: b"amq.ctag-bench",
                delivery_tag: *tag,
                redelivered: m.redelivered,
                exchange: m.msg.exchange(),
                routing_key: m.msg.routing_key(),
            };
            frame::write_method(out, 1, &Method::BasicDeliver(d));
            frame::write_content_header(out, 1, CLASS_BASIC, m.msg.body_len(), m.msg.properties());
            frame::write_body(out, 1, m.msg.body(), FRAME_MAX);
        }
    }
    black_box(&out);
}

fn declare(b: &mut Broker, name: &str) -> QueueId {
    b.declare_queue(
        CONN,
        name.as_bytes(),
        QueueFlags::default(),
        FieldTable::EMPTY,
    )
    .expect("declare")
    .queue
}

fn main() {
    let bench = support::Bench::from_args();

    let msg = Message::new(b"", b"q", &[0, 0], &[7u8; 16], false);
    let mut q = Queue::new(b"q"[..].into(), false, false, None, Box::new([]));
    bench.run("queue/push + pop (one at a time)", 1, || {
        q.push(msg.clone(), None, false);
        black_box(q.pop());
    });
    bench.run(
        "queue/push 1000 then pop 1000 (per message)",
        BATCH as u64,
        || {
            for _ in 0..BATCH {
                q.push(msg.clone(), None, false);
            }
            while let Some(m) = q.pop() {
                black_box(m);
            }
        },
    );
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
    let direct = [declare(&mut b, "q")];
    let frames = publish_frames(b"", b"q", 16).repeat(BATCH);
    bench.run(
        "path/default exchange -> 1 queue -> deliver (16 B)",
        BATCH as u64,
        || {
            black_box(ingest(&mut b, &mut builder, &frames));
            drain(&mut b, &direct, &mut out, &mut tag);
        },
    );
    let frames_1k = publish_frames(b"", b"q", 1024).repeat(BATCH);
    bench.run(
        "path/default exchange -> 1 queue -> deliver (1 KiB)",
        BATCH as u64,
        || {
            black_box(ingest(&mut b, &mut builder, &frames_1k));
            drain(&mut b, &direct, &mut out, &mut tag);
        },
    );

    let mut b = Broker::new();
    let fanout: Vec<QueueId> = (0..10)
        .map(|i| {
            let name = format!("f{i}");
            let id = declare(&mut b, &name);
            b.bind_queue(CONN, name.as_bytes(), b"amq.fanout", b"", FieldTable::EMPTY)
                .expect("bind");
            id
        })
        .collect();
    let frames = publish_frames(b"amq.fanout", b"", 16).repeat(BATCH);
    bench.run(
        "path/fanout -> 10 queues -> deliver (per publish)",
        BATCH as u64,
        || {
            black_box(ingest(&mut b, &mut builder, &frames));
            drain(&mut b, &fanout, &mut out, &mut tag);
        },
    );

    let mut b = Broker::new();
    let topic = [declare(&mut b, "t")];
    for i in 0..1000 {
        let key = match i % 10 {
            0 => format!("#.e{}", (i / 10) % 10),
            1 => format!("s{}.*.e{}", (i / 10) % 10, (i / 100) % 10),
            _ => format!("s{}.m{}.e{}", i % 10, (i / 10) % 10, (i / 100) % 10),
        };
        b.bind_queue(CONN, b"t", b"amq.topic", key.as_bytes(), FieldTable::EMPTY)
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
            black_box(ingest(&mut b, &mut builder, &frames));
            drain(&mut b, &topic, &mut out, &mut tag);
        },
    );
}
