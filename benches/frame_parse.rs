//! Codec benches: splitting a read buffer into frames, decoding the methods and properties a
//! publisher sends, and encoding what a delivery writes. Run: `cargo bench --bench frame_parse`.

mod support;

use coney::protocol::constants::CLASS_BASIC;
use coney::protocol::frame::{self, parse_frame, Parsed};
use coney::protocol::method::{BasicAck, BasicDeliver, BasicPublish, Method};
use coney::protocol::properties::{BasicProperties, ContentHeader};
use coney::protocol::wire::Writer;
use std::hint::black_box;

/// Publishes in the parse buffer: like one large read from a busy publisher.
const MESSAGES: usize = 1000;
const FRAME_MAX: u32 = 131_072;

fn publish_frames(body: usize) -> Vec<u8> {
    let mut one = Vec::new();
    let p = BasicPublish {
        exchange: b"amq.topic",
        routing_key: b"stock.nyse.ibm",
        ..Default::default()
    };
    frame::write_method(&mut one, 1, &Method::BasicPublish(p));
    let props = BasicProperties {
        content_type: Some(b"application/octet-stream"),
        delivery_mode: Some(2),
        ..Default::default()
    };
    let mut raw = Vec::new();
    props.encode(&mut Writer::new(&mut raw));
    frame::write_content_header(&mut one, 1, CLASS_BASIC, body as u64, &raw);
    frame::write_body(&mut one, 1, &vec![7u8; body], FRAME_MAX);
    one
}

fn main() {
    let b = support::Bench::from_args();

    let buf = publish_frames(16).repeat(MESSAGES);
    b.run(
        "frame/parse_frame (publish triples, 16 B body)",
        3 * MESSAGES as u64,
        || {
            let mut rest = black_box(&buf[..]);
            while let Ok(Parsed::Frame { frame, len }) = parse_frame(rest, FRAME_MAX) {
                black_box(frame.payload);
                rest = &rest[len..];
            }
        },
    );

    let one = publish_frames(16);
    let (method_payload, header_payload) = {
        let Ok(Parsed::Frame { frame: m, len }) = parse_frame(&one, FRAME_MAX) else {
            panic!("publish frame")
        };
        let Ok(Parsed::Frame { frame: h, .. }) = parse_frame(&one[len..], FRAME_MAX) else {
            panic!("header frame")
        };
        (m.payload.to_vec(), h.payload.to_vec())
    };
    b.run("method/decode basic.publish", 1, || {
        black_box(Method::decode(black_box(&method_payload)).ok());
    });
    b.run("properties/decode content header + properties", 1, || {
        let h = ContentHeader::decode(black_box(&header_payload)).expect("header");
        black_box(BasicProperties::decode(h.properties_raw).ok());
    });
    let mut ack = Vec::new();
    frame::write_method(
        &mut ack,
        1,
        &Method::BasicAck(BasicAck {
            delivery_tag: 123_456,
            multiple: true,
        }),
    );
    let ack_payload = ack[7..ack.len() - 1].to_vec();
    b.run("method/decode basic.ack", 1, || {
        black_box(Method::decode(black_box(&ack_payload)).ok());
    });

    let mut out = Vec::with_capacity(1 << 20);
    let body = [7u8; 16];
    let props = [0x10u8, 0x00, 2];
    let mut tag = 0u64;
    b.run(
        "method/encode basic.deliver + header + body (16 B)",
        MESSAGES as u64,
        || {
            out.clear();
            for _ in 0..MESSAGES {
                tag += 1;
                let d = BasicDeliver {
                    consumer_tag: b"amq.ctag-0123456789abcdefghijkl",
                    delivery_tag: tag,
                    redelivered: false,
                    exchange: b"amq.topic",
                    routing_key: b"stock.nyse.ibm",
                };
                frame::write_method(&mut out, 1, &Method::BasicDeliver(d));
                frame::write_content_header(&mut out, 1, CLASS_BASIC, body.len() as u64, &props);
                frame::write_body(&mut out, 1, &body, FRAME_MAX);
            }
            black_box(&out);
        },
    );
    b.run("method/encode basic.ack", MESSAGES as u64, || {
        out.clear();
        for i in 0..MESSAGES as u64 {
            let a = BasicAck {
                delivery_tag: i,
                multiple: false,
            };
            frame::write_method(&mut out, 1, &Method::BasicAck(a));
        }
        black_box(&out);
    });
}
