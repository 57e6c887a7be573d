//! Frames (AMQP 0-9-1 §4.2.3): splits a byte buffer into borrowed frames and writes frames.
//!
//! ```text
//! +------+---------+---------+   +-------------+   +-----------+
//! | type | channel |  size   |   |   payload   |   | frame-end |
//! |  u8  |   u16   |   u32   |   | size octets |   |   0xCE    |
//! +------+---------+---------+   +-------------+   +-----------+
//! ```
//! Parsing distinguishes "need more bytes" (`Parsed::Incomplete`) from malformed input
//! (`FrameError`); only the latter is an error. No I/O here.

use super::constants::*;
use super::method::Method;
use super::wire::Writer;

/// The kind of a frame, from its type octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Method,
    Header,
    Body,
    Heartbeat,
}

/// One complete frame borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: FrameKind,
    pub channel: u16,
    pub payload: &'a [u8],
}

/// Result of looking at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole frame and how many bytes it occupied.
    Frame { frame: Frame<'a>, len: usize },
    /// The buffer holds a prefix of a frame; at least `needed` bytes in total are required.
    Incomplete { needed: usize },
}

/// Malformed framing. After any of these the stream has lost sync and must not be read further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A type octet that is not method, header, body or heartbeat.
    BadType { kind: u8 },
    /// A frame larger than the negotiated frame_max.
    TooLarge { size: u32, frame_max: u32 },
    /// The octet after the payload is not 0xCE.
    BadEnd { found: u8 },
}

/// Parses the frame at the front of `buf`. `frame_max` is the value negotiated in
/// connection.tune (0 means no limit beyond `u32`). It counts header and end octet, but
/// RabbitMQ accepts a payload of up to `frame_max` octets (8 octets of slack, its
/// `FRAME_SIZE_FUDGE`), and clients that split bodies at frame_max rely on it: so do we.
pub fn parse_frame(buf: &[u8], frame_max: u32) -> Result<Parsed<'_>, FrameError> {
    if buf.len() < FRAME_HEADER_SIZE {
        return Ok(Parsed::Incomplete {
            needed: FRAME_HEADER_SIZE,
        });
    }
    let kind = match buf[0] {
        FRAME_METHOD => FrameKind::Method,
        FRAME_HEADER => FrameKind::Header,
        FRAME_BODY => FrameKind::Body,
        FRAME_HEARTBEAT => FrameKind::Heartbeat,
        other => return Err(FrameError::BadType { kind: other }),
    };
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    if frame_max != 0 && size > frame_max {
        return Err(FrameError::TooLarge { size, frame_max });
    }
    let total = FRAME_OVERHEAD + size as usize;
    if buf.len() < total {
        return Ok(Parsed::Incomplete { needed: total });
    }
    let end = buf[total - 1];
    if end != FRAME_END {
        return Err(FrameError::BadEnd { found: end });
    }
    let frame = Frame {
        kind,
        channel,
        payload: &buf[FRAME_HEADER_SIZE..total - 1],
    };
    Ok(Parsed::Frame { frame, len: total })
}

/// Starts a frame: writes the header with a placeholder size and returns where the size goes.
fn begin(out: &mut Vec<u8>, kind: u8, channel: u16) -> usize {
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

/// Ends a frame begun at `at`: patches the payload size and appends the end octet.
fn finish(out: &mut Vec<u8>, at: usize) {
    let size = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
    out.push(FRAME_END);
}

/// Appends one method frame.
pub fn write_method(out: &mut Vec<u8>, channel: u16, method: &Method<'_>) {
    let at = begin(out, FRAME_METHOD, channel);
    method.encode(&mut Writer::new(out));
    finish(out, at);
}

/// Appends a content header frame: class, weight 0, body size, then the raw property flags
/// and list exactly as the publisher sent them.
pub fn write_content_header(
    out: &mut Vec<u8>,
    channel: u16,
    class_id: u16,
    body_size: u64,
    properties: &[u8],
) {
    let at = begin(out, FRAME_HEADER, channel);
    out.extend_from_slice(&class_id.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&body_size.to_be_bytes());
    out.extend_from_slice(properties);
    finish(out, at);
}

/// Appends the body as as many body frames as `frame_max` requires (none for an empty body).
pub fn write_body(out: &mut Vec<u8>, channel: u16, body: &[u8], frame_max: u32) {
    let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
    for part in body.chunks(chunk) {
        let at = begin(out, FRAME_BODY, channel);
        out.extend_from_slice(part);
        finish(out, at);
    }
}

/// Appends a heartbeat frame (always on channel 0).
pub fn write_heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::method::{ConnectionTune, Method};

    fn tune_frame() -> Vec<u8> {
        let mut out = Vec::new();
        let tune = ConnectionTune {
            channel_max: 2047,
            frame_max: 131072,
            heartbeat: 60,
        };
        write_method(&mut out, 0, &Method::ConnectionTune(tune));
        out
    }

    #[test]
    fn tune_frame_matches_the_wire_bytes_rabbitmq_sends() {
        let expected = [
            1, 0, 0, 0, 0, 0, 12, 0, 10, 0, 30, 0x07, 0xff, 0, 2, 0, 0, 0, 60, 0xce,
        ];
        assert_eq!(tune_frame(), expected);
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete() {
        let bytes = tune_frame();
        for cut in 0..bytes.len() {
            match parse_frame(&bytes[..cut], 131072) {
                Ok(Parsed::Incomplete { needed }) => assert!(needed > cut),
                other => panic!("prefix {cut}: {other:?}"),
            }
        }
        match parse_frame(&bytes, 131072) {
            Ok(Parsed::Frame { frame, len }) => {
                assert_eq!(len, bytes.len());
                assert_eq!(frame.kind, FrameKind::Method);
                assert_eq!(frame.channel, 0);
                assert_eq!(frame.payload.len(), 12);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_frames_give_precise_errors() {
        let mut bad_end = tune_frame();
        let last = bad_end.len() - 1;
        bad_end[last] = 0;
        assert_eq!(
            parse_frame(&bad_end, 131072),
            Err(FrameError::BadEnd { found: 0 })
        );
        let mut bad_type = tune_frame();
        bad_type[0] = 4;
        assert_eq!(
            parse_frame(&bad_type, 131072),
            Err(FrameError::BadType { kind: 4 })
        );
        // Size is checked as soon as the header is complete, before the payload arrives; a
        // payload of exactly frame_max is accepted (RabbitMQ's slack), one octet more is not.
        let mut exact = vec![3, 0, 1, 0, 0, 0x10, 0];
        exact.resize(7 + 4096, 0);
        exact.push(FRAME_END);
        assert!(matches!(
            parse_frame(&exact, 4096),
            Ok(Parsed::Frame { len, .. }) if len == 4096 + FRAME_OVERHEAD
        ));
        assert_eq!(
            parse_frame(&[3, 0, 1, 0, 0, 0x10, 1], 4096),
            Err(FrameError::TooLarge {
                size: 4097,
                frame_max: 4096
            })
        );
        let big = [1, 0, 1, 0, 0x10, 0, 0];
        assert_eq!(
            parse_frame(&big, 131072),
            Err(FrameError::TooLarge {
                size: 0x0010_0000,
                frame_max: 131072
            })
        );
    }

    #[test]
    fn body_is_split_at_frame_max() {
        let body = vec![7u8; 10_000];
        let mut out = Vec::new();
        write_body(&mut out, 1, &body, 4096);
        let mut rest = &out[..];
        let mut total = 0;
        let mut frames = 0;
        while !rest.is_empty() {
            match parse_frame(rest, 4096) {
                Ok(Parsed::Frame { frame, len }) => {
                    assert_eq!(frame.kind, FrameKind::Body);
                    assert!(frame.payload.len() <= 4096 - FRAME_OVERHEAD);
                    total += frame.payload.len();
                    frames += 1;
                    rest = &rest[len..];
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(total, body.len());
        assert_eq!(frames, 3);
        let mut empty = Vec::new();
        write_body(&mut empty, 1, &[], 4096);
        assert!(empty.is_empty());
    }

    #[test]
    fn heartbeat_is_eight_bytes_on_channel_zero() {
        let mut out = Vec::new();
        write_heartbeat(&mut out);
        match parse_frame(&out, 4096) {
            Ok(Parsed::Frame { frame, len: 8 }) => {
                assert_eq!(frame.kind, FrameKind::Heartbeat);
                assert_eq!(frame.channel, 0);
            }
            other => panic!("{other:?}"),
        }
    }
}
