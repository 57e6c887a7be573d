//! Direct reply-to (RabbitMQ's `amq.rabbitmq.reply-to` pseudo-queue): the channels consuming
//! it, the names their requests carry in reply_to, and replies routed by those names. A reply
//! is never queued: it reaches the requesting channel as a notice, or nowhere if that channel
//! is gone. The session keeps the channel's side (its tag, the rewrite of reply_to).
//!
//! A name is `amq.rabbitmq.reply-to.` followed by 32 url-safe base64 characters: the reply
//! consumer's registry handle (slot and generation, 8 bytes), so a reply finds its consumer by
//! index without a search, and 16 random bytes from the OS drawn when the consumer was
//! registered, so a name cannot be guessed, and a stale one (its channel gone, the slot or the
//! connection reused, a cancelled and renewed reply consumer) matches nothing.

use super::handle::{define_id, Handle, Id};
use super::message::Message;
use super::{Actor, Broker, ConnId, Notice};
use crate::error::{AmqpError, Show};

/// The pseudo-queue a channel consumes to receive replies.
pub(crate) const REPLY_QUEUE: &[u8] = b"amq.rabbitmq.reply-to";
/// What precedes the opaque part of a reply name.
const NAME_PREFIX: &[u8] = b"amq.rabbitmq.reply-to.";
const KEY_BYTES: usize = 16;
const TOKEN_BYTES: usize = 8 + KEY_BYTES;
/// Base64 of `TOKEN_BYTES` (a multiple of 3: no padding).
const TOKEN_CHARS: usize = TOKEN_BYTES / 3 * 4;
const _: () = assert!(TOKEN_BYTES.is_multiple_of(3));
const _: () = assert!(NAME_PREFIX.len() + TOKEN_CHARS <= u8::MAX as usize);

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

define_id!(
    /// A channel's reply consumer in the broker's registry.
    ReplyConsumerId
);

/// A channel consuming amq.rabbitmq.reply-to.
pub(super) struct ReplyConsumer {
    conn: ConnId,
    channel: u16,
    key: [u8; KEY_BYTES],
}

impl ReplyConsumer {
    pub(super) fn conn(&self) -> ConnId {
        self.conn
    }
}

fn not_found(vhost: &str, name: &[u8]) -> AmqpError {
    AmqpError::not_found(format_args!("no queue '{}' in vhost '{vhost}'", Show(name)))
}

/// 16 bytes from the OS's random source; the broker's own generator stirs in if that fails.
fn random_key(fallback: &mut impl FnMut() -> u64) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    if crate::entropy::fill(&mut key).is_err() {
        for chunk in key.chunks_mut(8) {
            let r = fallback().to_le_bytes();
            for (k, r) in chunk.iter_mut().zip(r) {
                *k ^= r;
            }
        }
    }
    key
}

fn encode(token: &[u8; TOKEN_BYTES], out: &mut Vec<u8>) {
    for c in token.chunks(3) {
        let n = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[(n >> shift) as usize & 63]);
        }
    }
}

fn decode(text: &[u8]) -> Option<[u8; TOKEN_BYTES]> {
    if text.len() != TOKEN_CHARS {
        return None;
    }
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut token = [0u8; TOKEN_BYTES];
    for (quad, out) in text.chunks(4).zip(token.chunks_mut(3)) {
        let mut n = 0u32;
        for &c in quad {
            n = n << 6 | sextet(c)?;
        }
        out.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    Some(token)
}

/// Equal without an early exit, so answer times do not tell how much of a key was right.
fn same_key(a: &[u8; KEY_BYTES], b: &[u8]) -> bool {
    b.len() == KEY_BYTES && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Broker {
    /// basic.consume of amq.rabbitmq.reply-to on `channel` of `conn` (the session checked it
    /// is no-ack and the channel's first): returns the consumer and the name that requests
    /// from this channel carry as reply_to.
    pub(crate) fn add_reply_consumer(
        &mut self,
        conn: ConnId,
        channel: u16,
    ) -> (ReplyConsumerId, Box<[u8]>) {
        let key = random_key(&mut || self.random());
        let id = self
            .reply_consumers
            .insert(ReplyConsumer { conn, channel, key });
        let mut token = [0u8; TOKEN_BYTES];
        token[..8].copy_from_slice(&id.handle().to_bytes());
        token[8..].copy_from_slice(&key);
        let mut name = Vec::with_capacity(NAME_PREFIX.len() + TOKEN_CHARS);
        name.extend_from_slice(NAME_PREFIX);
        encode(&token, &mut name);
        (id, name.into_boxed_slice())
    }

    /// The reply consumer is cancelled or its channel is going: its name routes nowhere now.
    pub(crate) fn cancel_reply_consumer(&mut self, id: ReplyConsumerId) {
        self.reply_consumers.remove(id);
    }

    /// The live reply consumer a reply name leads to.
    fn reply_target(&self, name: &[u8]) -> Option<(ReplyConsumerId, &ReplyConsumer)> {
        let token = decode(name.strip_prefix(NAME_PREFIX)?)?;
        let mut handle = [0u8; 8];
        handle.copy_from_slice(&token[..8]);
        let id = ReplyConsumerId::from_handle(Handle::from_bytes(handle));
        let c = self.reply_consumers.get(id)?;
        same_key(&c.key, &token[8..]).then_some((id, c))
    }

    /// queue.declare (passive or not) of a name starting with amq.rabbitmq.reply-to, which
    /// RabbitMQ answers itself: the pseudo-queue always exists, a reply name while its
    /// consumer does; anything else is 404. Declare-ok then says 0 messages, 1 consumer.
    pub(crate) fn declare_reply_queue(&self, who: &Actor, name: &[u8]) -> Result<(), AmqpError> {
        if name == REPLY_QUEUE || self.reply_target(name).is_some() {
            Ok(())
        } else {
            Err(not_found(who.vhost_name(), name))
        }
    }

    /// A message published to the default exchange with a reply name as routing key goes to
    /// that reply consumer's channel, if it is still there. Either way no queue took it, so a
    /// mandatory reply is returned too (RabbitMQ documents this).
    pub(super) fn route_reply(&mut self, msg: &Message) {
        if let Some((id, c)) = self.reply_target(msg.routing_key()) {
            let notice = Notice::Reply {
                conn: c.conn,
                channel: c.channel,
                consumer: id,
                message: msg.clone(),
            };
            self.notices.push(notice);
        }
    }

    /// Whether the routing key may name a reply consumer (checked only once no queue has it).
    pub(super) fn is_reply_name(key: &[u8]) -> bool {
        key.starts_with(NAME_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(b: &Broker) -> Actor {
        b.internal_actor(ConnId(9), "/").expect("vhost /")
    }

    fn reply(b: &mut Broker, key: &[u8]) -> Vec<Notice> {
        let m = Message::new(b"", key, &[0, 0], b"answer", false);
        let target = b.publish_target(&root(b), b"").expect("default exchange");
        assert_eq!(
            b.publish(target, &m, crate::broker::PublishProps::default())
                .queues,
            0,
            "a reply is never routed to a queue"
        );
        b.drain_notices().collect()
    }

    #[test]
    fn replies_reach_the_live_consumer_of_their_name_only() {
        let mut b = Broker::new();
        let (id, name) = b.add_reply_consumer(ConnId(3), 7);
        assert!(name.starts_with(NAME_PREFIX));
        assert_eq!(name.len(), NAME_PREFIX.len() + TOKEN_CHARS);
        let got = reply(&mut b, &name);
        assert!(matches!(
            &got[..],
            [Notice::Reply { conn: ConnId(3), channel: 7, consumer, message }]
                if *consumer == id && message.body() == b"answer"
        ));
        assert_eq!(b.declare_reply_queue(&root(&b), &name), Ok(()));
        assert_eq!(b.declare_reply_queue(&root(&b), REPLY_QUEUE), Ok(()));

        // Any change to the key, or a name of the right shape that was never issued, finds
        // nothing.
        let mut forged = name.to_vec();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(reply(&mut b, &forged).is_empty());
        assert!(b.declare_reply_queue(&root(&b), &forged).is_err());
        for bad in [
            &b"amq.rabbitmq.reply-to.short"[..],
            b"amq.rabbitmq.reply-toX",
        ] {
            assert!(reply(&mut b, bad).is_empty());
            assert_eq!(
                b.declare_reply_queue(&root(&b), bad).map_err(|e| e.text),
                Err(format!("NOT_FOUND - no queue '{}' in vhost '/'", Show(bad)))
            );
        }

        // Cancelled: the name is stale, even once the slot is reused by another channel.
        b.cancel_reply_consumer(id);
        assert!(reply(&mut b, &name).is_empty());
        let (again, renewed) = b.add_reply_consumer(ConnId(3), 7);
        assert_eq!(again.handle().to_bytes()[..4], id.handle().to_bytes()[..4]);
        assert_ne!(renewed, name);
        assert!(reply(&mut b, &name).is_empty());
        assert_eq!(reply(&mut b, &renewed).len(), 1);
    }

    #[test]
    fn tokens_round_trip_through_the_name_alphabet() {
        let mut token = [0u8; TOKEN_BYTES];
        for (i, t) in token.iter_mut().enumerate() {
            *t = (i as u8).wrapping_mul(37) ^ 0xa5;
        }
        let mut text = Vec::new();
        encode(&token, &mut text);
        assert_eq!(text.len(), TOKEN_CHARS);
        assert_eq!(decode(&text), Some(token));
        text[0] = b'+';
        assert_eq!(decode(&text), None);
    }
}
