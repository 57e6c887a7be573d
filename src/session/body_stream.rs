//! Large body frames taken as they arrive. A body frame whose payload has not fully arrived
//! is not kept whole in the connection's buffer (copied out of the shared read buffer and back
//! at every read); what has arrived goes straight into its message, so a body is copied once
//! from the read buffer, and the frame is followed to its end octet across reads. Only frames
//! that would be taken anyway qualify: a body frame of an open channel awaiting body, no
//! larger than the body still expected. Anything else waits whole as before, so its error (if
//! any) is the same.

use super::channel::Publish;
use super::{erlang_binary, Ctx, Session, State};
use crate::error::AmqpError;
use crate::limits::BODY_STREAM_MIN_BYTES;
use crate::protocol::constants::{FRAME_BODY, FRAME_END, FRAME_HEADER_SIZE};
use crate::protocol::Outbox;

/// Octets of the payload kept for RabbitMQ's error text should the end octet be wrong.
const SHOWN_OCTETS: usize = 16;

/// A body frame part-way through: its channel, the payload still to come (then the end
/// octet) and the first octets of its payload.
pub(super) struct BodyInFlight {
    channel: u16,
    left: usize,
    head: [u8; SHOWN_OCTETS],
    head_len: usize,
}

impl BodyInFlight {
    fn note_head(&mut self, part: &[u8]) {
        let n = part.len().min(SHOWN_OCTETS - self.head_len);
        self.head[self.head_len..self.head_len + n].copy_from_slice(&part[..n]);
        self.head_len += n;
    }
}

impl Session {
    /// `buf` starts with a frame that `parse_frame` found incomplete. If it is a large body
    /// frame the channel is waiting for, takes its header and the payload that has arrived
    /// and returns how many octets that was; otherwise 0 (the frame waits whole).
    pub(super) fn start_body_in_flight(&mut self, buf: &[u8]) -> usize {
        if buf.len() <= FRAME_HEADER_SIZE || buf[0] != FRAME_BODY || self.state != State::Open {
            return 0;
        }
        let channel = u16::from_be_bytes([buf[1], buf[2]]);
        let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
        if channel == 0 || size < BODY_STREAM_MIN_BYTES {
            return 0;
        }
        let Some(ch) = self.channels.get_mut(channel) else {
            return 0;
        };
        let awaiting = matches!(ch.publish, Publish::AwaitingBody { .. });
        if ch.closing || !awaiting || size as u64 > ch.builder.body_remaining() {
            return 0;
        }
        // Incomplete: fewer than size + 1 octets follow the header.
        let part = &buf[FRAME_HEADER_SIZE..buf.len().min(FRAME_HEADER_SIZE + size)];
        ch.builder.push_body(part);
        let mut f = BodyInFlight {
            channel,
            left: size - part.len(),
            head: [0; SHOWN_OCTETS],
            head_len: 0,
        };
        f.note_head(part);
        self.body_in_flight = Some(f);
        FRAME_HEADER_SIZE + part.len()
    }

    /// Continues the body frame in flight with `buf`: its payload into the message (unless the
    /// channel went meanwhile), then its end octet, after which the message may be complete.
    /// Returns the octets used; the frame is still in flight if that is all of `buf`.
    pub(super) fn continue_body_in_flight(
        &mut self,
        out: &mut Outbox,
        buf: &[u8],
        ctx: &mut Ctx<'_>,
    ) -> Result<usize, AmqpError> {
        let Some(f) = self.body_in_flight.as_mut() else {
            return Ok(0);
        };
        let take = f.left.min(buf.len());
        let part = &buf[..take];
        f.left -= take;
        f.note_head(part);
        let channel = f.channel;
        let left = f.left;
        let receiving = self.channels.get_mut(channel).filter(|c| {
            !c.closing
                && matches!(c.publish, Publish::AwaitingBody { .. })
                && part.len() as u64 <= c.builder.body_remaining()
        });
        if let Some(c) = receiving {
            c.builder.push_body(part);
        }
        if left > 0 || take == buf.len() {
            return Ok(take);
        }
        let Some(f) = self.body_in_flight.take() else {
            return Ok(take);
        };
        let found = buf[take];
        if found != FRAME_END {
            return Err(AmqpError::frame_error(format_args!(
                "type {FRAME_BODY}, first {SHOWN_OCTETS} octets = {}: {{invalid_frame_end_marker,{found}}}",
                erlang_binary(&f.head[..f.head_len], true)
            )));
        }
        let complete = self.channels.get_mut(channel).is_some_and(|c| {
            !c.closing
                && matches!(c.publish, Publish::AwaitingBody { .. })
                && c.builder.body_remaining() == 0
        });
        if complete {
            if let Err(e) = self.complete_publish(out, channel, ctx) {
                self.fail_method(out, channel, e, (0, 0), ctx);
            }
        }
        Ok(take + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Broker, ConnId};
    use crate::config::Config;
    use crate::protocol::constants::CLASS_BASIC;
    use crate::protocol::frame;
    use crate::protocol::method::*;
    use crate::protocol::FieldTable;
    use std::time::Instant;

    const FRAME_MAX: u32 = 131_072;

    /// The client's bytes: handshake, channel 1, queue "q", then `bodies` published to it.
    fn input(bodies: &[Vec<u8>]) -> Vec<u8> {
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
        let declare = QueueDeclare {
            queue: b"q",
            ..Default::default()
        };
        frame::write_method(&mut out, 1, &Method::QueueDeclare(declare));
        for b in bodies {
            let p = BasicPublish {
                routing_key: b"q",
                ..Default::default()
            };
            frame::write_method(&mut out, 1, &Method::BasicPublish(p));
            frame::write_content_header(&mut out, 1, CLASS_BASIC, b.len() as u64, &[0, 0]);
            frame::write_body(&mut out, 1, b, FRAME_MAX);
        }
        out
    }

    /// Feeds `bytes` in the given pieces as the network layer does: whatever the session
    /// leaves unconsumed is offered again with the next piece. Returns the largest such
    /// leftover.
    fn feed(s: &mut Session, broker: &mut Broker, bytes: &[u8], cuts: &[usize]) -> usize {
        let config = Config::default();
        let mut out = Outbox::default();
        let mut ctx = Ctx {
            broker,
            config: &config,
            now: Instant::now(),
            alarm: None,
        };
        let (mut pending, mut at, mut kept_max) = (Vec::new(), 0, 0);
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            pending.extend_from_slice(&bytes[at..cut]);
            at = cut;
            let used = s.handle_input(&mut out, &pending, &mut ctx);
            pending.drain(..used);
            kept_max = kept_max.max(pending.len());
        }
        assert!(pending.is_empty(), "{} octets left over", pending.len());
        kept_max
    }

    fn session() -> Session {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000));
        Session::new(ConnId(1), peer, &Config::default(), Instant::now())
    }

    /// Large bodies cut at random places (inside frame headers, payloads and just before end
    /// octets) arrive whole and in order, and no partial frame larger than a frame header
    /// is ever kept between pieces.
    #[test]
    fn large_bodies_cut_anywhere_arrive_whole_and_are_not_kept_as_partial_frames() {
        let bodies: Vec<Vec<u8>> = [300_000usize, 4096, 131_064, 131_065, 70_000, 5]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (j * 13 + i) as u8).collect())
            .collect();
        let bytes = input(&bodies);
        let handshake_end = input(&[]).len();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20 {
            let mut cuts = vec![handshake_end];
            while *cuts.last().unwrap_or(&0) < bytes.len() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let step =
                    [1, 6, 7, 8, 1000, 65_536][(rng % 6) as usize] + (rng >> 40) as usize % 3;
                cuts.push((cuts.last().unwrap_or(&0) + step).min(bytes.len()));
            }
            let mut broker = Broker::new();
            let mut s = session();
            let kept_max = feed(&mut s, &mut broker, &bytes, &cuts[..cuts.len() - 1]);
            assert!(s.is_open());
            // A partial method or header frame may wait whole (< 100 octets here); body frames
            // of a few KiB and more never do.
            assert!(
                kept_max < BODY_STREAM_MIN_BYTES,
                "{kept_max} octets kept between pieces"
            );
            for (i, body) in bodies.iter().enumerate() {
                let got = broker
                    .get(ConnId(1), b"q", true)
                    .expect("get")
                    .unwrap_or_else(|| panic!("message {i} missing"));
                assert!(
                    got.message.message().body() == &body[..],
                    "body {i} differs"
                );
            }
            assert!(broker.get(ConnId(1), b"q", true).expect("get").is_none());
        }
    }

    /// A wrong end octet after a body frame taken in pieces is a frame error, as whole.
    #[test]
    fn wrong_end_octet_after_a_body_in_flight_closes_the_connection() {
        let body = vec![7u8; 50_000];
        let mut bytes = input(&[body]);
        let last = bytes.len() - 1;
        bytes[last] = 0xAB;
        let mut broker = Broker::new();
        let mut s = session();
        let mut out = Outbox::default();
        let config = Config::default();
        let mut ctx = Ctx {
            broker: &mut broker,
            config: &config,
            now: Instant::now(),
            alarm: None,
        };
        let cut = bytes.len() - 20_000;
        let used = s.handle_input(&mut out, &bytes[..cut], &mut ctx);
        assert_eq!(used, cut, "the body frame's start was taken");
        s.handle_input(&mut out, &bytes[cut..], &mut ctx);
        assert!(s.state() == State::Closed || s.state() == State::Closing);
        let reason = s.close_reason().unwrap_or("");
        assert!(
            reason.contains("FRAME_ERROR") && reason.contains("{invalid_frame_end_marker,171}"),
            "{reason}"
        );
        assert!(broker.get(ConnId(1), b"q", true).expect("get").is_none());
    }
}
