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
use crate::limits::{BODY_PREALLOCATE_MAX_BYTES, BODY_STREAM_MIN_BYTES};
use crate::protocol::constants::{FRAME_BODY, FRAME_END, FRAME_HEADER_SIZE};
use crate::protocol::Outbox;
use std::mem::MaybeUninit;
use std::time::Instant;

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

/// Large bodies reserved whole: a message's body is reserved at its header only up to
/// BODY_PREALLOCATE_MAX_BYTES and grows as it arrives (a header alone must not reserve 128
/// MiB), which moves a 16 MiB body's first 5 MiB on the way. A connection that has already
/// sent a body of some size may have one message at a time reserved up to that size: a
/// publisher of large bodies has each but its first assembled without a move, and what a
/// connection can reserve ahead of its bytes stays one message it has already sent.
#[derive(Default)]
pub(super) struct BodyReserve {
    /// The largest body this connection has completed.
    proven: usize,
    /// The channel whose message was reserved beyond BODY_PREALLOCATE_MAX_BYTES.
    holder: Option<u16>,
}

impl BodyReserve {
    /// A body of `size` was completed on this connection.
    pub(super) fn completed(&mut self, size: usize) {
        self.proven = self.proven.max(size);
    }
}

impl Session {
    /// How much of a body of `size` announced on `channel` to reserve now (see
    /// `BodyReserve`).
    pub(super) fn body_reserve_max(&mut self, channel: u16, size: u64) -> usize {
        let r = &mut self.body_reserve;
        if size <= BODY_PREALLOCATE_MAX_BYTES as u64 || r.proven <= BODY_PREALLOCATE_MAX_BYTES {
            return BODY_PREALLOCATE_MAX_BYTES;
        }
        let held = r.holder.is_some_and(|h| {
            h != channel
                && self
                    .channels
                    .get(h)
                    .is_some_and(|c| matches!(c.publish, Publish::AwaitingBody { .. }))
        });
        if held {
            return BODY_PREALLOCATE_MAX_BYTES;
        }
        r.holder = Some(channel);
        r.proven
    }

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

    /// Where the next input octets go while a large body frame is part-way: the room at the
    /// end of its message for up to `max` octets of the frame's payload (its end octet and
    /// whatever follows are read as usual, into the read buffer). None when no frame is in
    /// flight or its channel no longer takes it: its octets are then read and dropped as
    /// before.
    pub fn body_room(&mut self, max: usize) -> Option<&mut [MaybeUninit<u8>]> {
        let f = self.body_in_flight.as_ref()?;
        if f.left == 0 || max == 0 || self.state != State::Open {
            return None;
        }
        let want = f.left.min(max);
        let c = self.channels.get_mut(f.channel)?;
        let receiving = !c.closing
            && matches!(c.publish, Publish::AwaitingBody { .. })
            && want as u64 <= c.builder.body_remaining();
        receiving.then(|| c.builder.body_room(want))
    }

    /// Whether a large body frame is part-way and its channel takes the rest (what
    /// `body_room` would offer room for).
    pub fn wants_body(&self) -> bool {
        let Some(f) = self.body_in_flight.as_ref() else {
            return false;
        };
        f.left > 0
            && self.state == State::Open
            && self
                .channels
                .get(f.channel)
                .is_some_and(|c| !c.closing && matches!(c.publish, Publish::AwaitingBody { .. }))
    }

    /// The reader wrote `n` octets into the room `body_room` handed out, at `now`.
    ///
    /// # Safety
    /// Those `n` octets were initialised since that call, and `n` is at most the room's length.
    pub unsafe fn body_filled(&mut self, n: usize, now: Instant) {
        let (Some(f), channels) = (self.body_in_flight.as_mut(), &mut self.channels) else {
            return;
        };
        let Some(c) = channels.get_mut(f.channel) else {
            return;
        };
        // SAFETY: passed on from the caller; the room came from this channel's builder.
        unsafe { c.builder.body_filled(n) };
        f.left -= n;
        if f.head_len < SHOWN_OCTETS {
            f.note_head(c.builder.last_bytes(n));
        }
        self.last_recv = now;
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
        let open = self.state == State::Open;
        let receiving = self.channels.get_mut(channel).filter(|c| {
            open && !c.closing
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
            open && !c.closing
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
pub(crate) mod tests {
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
        input_with(bodies, FRAME_MAX)
    }

    /// `input` with `frame_max` agreed in tune-ok (and the bodies cut into frames that large).
    pub(crate) fn input_with(bodies: &[Vec<u8>], frame_max: u32) -> Vec<u8> {
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
            frame_max,
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
            frame::write_body(&mut out, 1, b, frame_max);
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

    /// Full rights in vhost "/" as connection 1, for reading back what the session routed.
    pub(crate) fn guest(b: &Broker) -> crate::broker::Actor {
        b.internal_actor(ConnId(1), "/").expect("vhost /")
    }

    pub(crate) fn session() -> Session {
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
                    .get(&guest(&broker), b"q", true)
                    .expect("get")
                    .unwrap_or_else(|| panic!("message {i} missing"));
                assert!(
                    got.message.message().body() == &body[..],
                    "body {i} differs"
                );
            }
            assert!(broker
                .get(&guest(&broker), b"q", true)
                .expect("get")
                .is_none());
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
        assert!(broker
            .get(&guest(&broker), b"q", true)
            .expect("get")
            .is_none());
    }

    /// The bytes of a publish on `channel` announcing `size` octets of body, with `sent` of
    /// them in one body frame.
    fn publish_part(channel: u16, size: u64, sent: usize) -> Vec<u8> {
        let mut out = Vec::new();
        frame::write_method(
            &mut out,
            channel,
            &Method::ChannelOpen(ChannelOpen::default()),
        );
        let p = BasicPublish {
            routing_key: b"q",
            ..Default::default()
        };
        frame::write_method(&mut out, channel, &Method::BasicPublish(p));
        frame::write_content_header(&mut out, channel, CLASS_BASIC, size, &[0, 0]);
        frame::write_body(&mut out, channel, &vec![1u8; sent], FRAME_MAX);
        out
    }

    fn reserved(s: &mut Session, channel: u16) -> usize {
        s.channels
            .get_mut(channel)
            .map_or(0, |c| c.builder.reserved())
    }

    /// A header announcing the largest body allowed reserves at most
    /// BODY_PREALLOCATE_MAX_BYTES before the body comes; one announcing more than
    /// max_message_size is refused with RabbitMQ's 406 before anything is reserved, and the
    /// connection stays usable.
    #[test]
    fn announced_body_sizes_reserve_little_and_too_large_is_refused_first() {
        let mut broker = Broker::new();
        let mut s = session();
        let mut bytes = input(&[]);
        bytes.extend(publish_part(
            2,
            crate::limits::MESSAGE_SIZE_MAX_BYTES,
            8_000,
        ));
        feed(&mut s, &mut broker, &bytes, &[]);
        let r = reserved(&mut s, 2);
        assert!(
            (8_000..=BODY_PREALLOCATE_MAX_BYTES + 64).contains(&r),
            "{r}"
        );
        let bytes = publish_part(3, u64::MAX / 2, 0);
        feed(&mut s, &mut broker, &bytes, &[]);
        assert!(s.is_open());
        assert_eq!(reserved(&mut s, 3), 0);
        let shown = s.channels.get(3).map(|c| c.closing);
        assert_eq!(shown, Some(true), "channel 3 is closed with 406");
    }

    /// After a connection sent a 2 MiB body, its next 2 MiB message is reserved whole at its
    /// header, but only one at a time: a second channel's gets BODY_PREALLOCATE_MAX_BYTES.
    #[test]
    fn a_proven_body_size_is_reserved_for_one_message_at_a_time() {
        const BIG: usize = 2 * 1024 * 1024;
        let mut broker = Broker::new();
        let mut s = session();
        let bytes = input(&[vec![5u8; BIG]]);
        feed(&mut s, &mut broker, &bytes, &[]);
        let mut more = publish_part(2, BIG as u64, 10_000);
        more.extend(publish_part(3, BIG as u64, 10_000));
        feed(&mut s, &mut broker, &more, &[]);
        assert!(reserved(&mut s, 2) >= BIG, "{}", reserved(&mut s, 2));
        assert!(reserved(&mut s, 3) <= BODY_PREALLOCATE_MAX_BYTES + 64);
    }
}
