//! Fuzz target `frame`: splits arbitrary bytes into frames with `parse_frame` under several
//! frame_max values and checks the three-way contract (frame, incomplete, error) on each step.
//! Complete method and header frames are also handed to their payload decoders.
#![no_main]

use coney::protocol::constants::{FRAME_END, FRAME_HEADER_SIZE, FRAME_OVERHEAD};
use coney::protocol::{parse_frame, ContentHeader, FrameKind, Method, Parsed};
use libfuzzer_sys::fuzz_target;

/// 0 means "no limit"; 4096 is the spec minimum; 131072 is what coney offers; tiny values
/// reach the overhead arithmetic.
const FRAME_MAX_CHOICES: [u32; 6] = [0, 1, 8, 4096, 131_072, u32::MAX];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let frame_max = FRAME_MAX_CHOICES[selector as usize % FRAME_MAX_CHOICES.len()];
    let mut rest = stream;
    // Each accepted frame consumes at least FRAME_OVERHEAD bytes, so this bound is never hit
    // by a correct parser; it keeps a broken one from looping forever.
    for _ in 0..=stream.len() / FRAME_OVERHEAD {
        match parse_frame(rest, frame_max) {
            Ok(Parsed::Frame { frame, len }) => {
                check_frame(rest, frame_max, frame.kind, frame.channel, frame.payload, len);
                check_prefixes_are_incomplete(&rest[..len], frame_max);
                match frame.kind {
                    FrameKind::Method => {
                        let _ = Method::decode(frame.payload);
                    }
                    FrameKind::Header => {
                        let _ = ContentHeader::decode(frame.payload);
                    }
                    FrameKind::Body | FrameKind::Heartbeat => {}
                }
                rest = &rest[len..];
            }
            Ok(Parsed::Incomplete { needed }) => {
                assert!(needed > rest.len(), "Incomplete needs {needed} but {} are there", rest.len());
                if rest.len() >= FRAME_HEADER_SIZE && frame_max != 0 {
                    // The size field was read, so an oversized frame must have been refused: a
                    // payload may be frame_max long (RabbitMQ's slack), the frame 8 octets more.
                    let most = frame_max as u64 + FRAME_OVERHEAD as u64;
                    assert!(needed as u64 <= most, "needed {needed} > frame_max {frame_max} + overhead");
                }
                return;
            }
            Err(_) => return,
        }
    }
    assert!(rest.is_empty(), "frame loop did not terminate");
});

fn check_frame(buf: &[u8], frame_max: u32, kind: FrameKind, channel: u16, payload: &[u8], len: usize) {
    assert!(len >= FRAME_OVERHEAD && len <= buf.len(), "len {len} of {}", buf.len());
    assert_eq!(payload.len(), len - FRAME_OVERHEAD);
    assert_eq!(payload, &buf[FRAME_HEADER_SIZE..len - 1]);
    assert_eq!(buf[len - 1], FRAME_END);
    assert_eq!(channel, u16::from_be_bytes([buf[1], buf[2]]));
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    assert_eq!(size as usize, payload.len());
    if frame_max != 0 {
        assert!(size <= frame_max, "payload of {size} accepted under frame_max {frame_max}");
    }
    let kind_octet = match kind {
        FrameKind::Method => 1,
        FrameKind::Header => 2,
        FrameKind::Body => 3,
        FrameKind::Heartbeat => 8,
    };
    assert_eq!(buf[0], kind_octet);
}

/// A frame cut anywhere short of its end is Incomplete (never an error, never a frame), and
/// the parse does not depend on bytes after the frame. Checked at a few cuts to stay fast.
fn check_prefixes_are_incomplete(frame: &[u8], frame_max: u32) {
    let n = frame.len();
    for cut in [0, 1, FRAME_HEADER_SIZE - 1, FRAME_HEADER_SIZE, n / 2, n - 1] {
        if cut >= n {
            continue;
        }
        match parse_frame(&frame[..cut], frame_max) {
            Ok(Parsed::Incomplete { needed }) => assert!(needed > cut && needed <= n, "cut {cut} of {n}: needed {needed}"),
            other => panic!("prefix {cut} of a {n}-byte frame gave {other:?}"),
        }
    }
}
