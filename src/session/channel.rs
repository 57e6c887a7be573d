//! One AMQP channel's state: publish assembly (method → header → body frames), the unacked
//! deliveries in tag order, its consumers with their delivery credit (the one place prefetch
//! is decided: `can_take`), publisher confirms and transactions. Plain state with small
//! helpers; the method handlers that drive it are in `methods.rs`.

use crate::broker::consumer::ConsumerId;
use crate::broker::message::{Message, MessageBuilder};
use crate::broker::queue::{QueueId, QueuedMessage};
use crate::broker::ReplyConsumerId;
use crate::limits::UNACKED_PER_CHANNEL_MAX;
use slab::Slab;
use std::collections::{HashMap, VecDeque};

/// Where the channel is in receiving a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publish {
    Idle,
    /// basic.publish seen; the content header must come next.
    AwaitingHeader {
        mandatory: bool,
        immediate: bool,
    },
    /// Header seen; body frames until the announced size is reached.
    AwaitingBody {
        mandatory: bool,
        immediate: bool,
        /// reply_to is amq.rabbitmq.reply-to but the channel has no reply consumer: the
        /// publish fails once complete (RabbitMQ checks the exchange first).
        reply_to_missing: bool,
    },
}

/// The channel's consumer of amq.rabbitmq.reply-to (direct reply-to).
#[derive(Debug)]
pub(crate) struct ChannelReply {
    pub(crate) id: ReplyConsumerId,
    pub(crate) tag: Box<[u8]>,
    /// What reply_to=amq.rabbitmq.reply-to becomes in this channel's publishes.
    pub(crate) name: Box<[u8]>,
}

/// A message delivered on this channel and not yet acked.
#[derive(Debug)]
pub(crate) struct Unacked {
    pub(crate) tag: u64,
    pub(crate) queue: QueueId,
    /// None for basic.get deliveries.
    pub(crate) consumer: Option<ConsumerRef>,
    /// None once acked out of order (a tombstone until it reaches the front).
    pub(crate) msg: Option<QueuedMessage>,
}

/// A consumer as its channel addresses it: the broker's id and the channel's slot for it. The
/// broker is given the slot at basic.consume and hands it back with each delivery, so finding
/// the consumer's credit is an index, not a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConsumerRef {
    pub(crate) id: ConsumerId,
    pub(crate) slot: u32,
}

/// A consumer of this channel: its tag and its delivery credit.
#[derive(Debug)]
pub(crate) struct ChannelConsumer {
    pub(crate) id: ConsumerId,
    pub(crate) tag: Box<[u8]>,
    /// basic.qos prefetch_count (global=false) in force when the consumer was created; 0 = none.
    prefetch: u16,
    /// Deliveries to this consumer not yet acked.
    unacked: u32,
}

/// What an ack-like method settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Requeue,
    Discard,
}

impl Settle {
    /// basic.reject / basic.nack: back to the queue, or dropped.
    pub(crate) fn rejected(requeue: bool) -> Self {
        if requeue {
            Settle::Requeue
        } else {
            Settle::Discard
        }
    }
}

/// Work buffered by a channel in tx mode until tx.commit.
pub(crate) enum TxOp {
    Publish {
        msg: Message,
        mandatory: bool,
    },
    Settle {
        tag: u64,
        multiple: bool,
        how: Settle,
    },
}

pub(crate) struct Channel {
    /// We sent channel.close and wait for close-ok; everything else is dropped meanwhile.
    pub(crate) closing: bool,
    /// channel.flow from the client: false stops deliveries.
    pub(crate) flow_active: bool,
    pub(crate) publish: Publish,
    pub(crate) builder: MessageBuilder,
    /// basic.qos global=false: prefetch for consumers created from now on.
    pub(crate) consumer_prefetch: u16,
    /// basic.qos global=true: limit across all consumers of the channel.
    pub(crate) channel_prefetch: u16,
    unacked: VecDeque<Unacked>,
    /// Live (not tombstoned) entries of `unacked`.
    unacked_live: usize,
    next_delivery_tag: u64,
    /// By slot (`ConsumerRef::slot`); slots are reused, so a lookup also checks the id.
    consumers: Slab<ChannelConsumer>,
    /// Consumer tag → slot: basic.consume's duplicate check and basic.cancel without a scan.
    tags: HashMap<Box<[u8]>, u32>,
    pub(crate) confirm: bool,
    /// Sequence number of the last message published in confirm mode.
    pub(crate) publish_seq: u64,
    /// Highest sequence number already acked to the publisher.
    pub(crate) confirmed_seq: u64,
    /// Sequence numbers above `confirmed_seq` that a queue refused (nacked), in order.
    pub(crate) refused: Vec<u64>,
    pub(crate) tx: Option<Vec<TxOp>>,
    /// Name of the last queue declared on this channel, used when a method names queue "".
    pub(crate) last_queue: Option<Box<[u8]>>,
    /// The reply consumer, at most one per channel (RabbitMQ).
    pub(crate) reply: Option<ChannelReply>,
    /// The last exchange this channel was allowed to publish to, with the generation of the
    /// grant that allowed it: publishers repeat their exchange, and comparing it is cheaper
    /// than matching the write pattern.
    pub(crate) publish_allowed: Option<(u64, Box<[u8]>)>,
    /// The user_id property of the message being received, when it names another user: seen
    /// at the header, refused once the message is complete (RabbitMQ's order of checks).
    pub(crate) claimed_user_id: Option<Box<[u8]>>,
    /// Its message counts for the management API.
    pub(crate) stats: super::stats::ChannelStats,
}

impl Default for Channel {
    fn default() -> Self {
        Channel {
            closing: false,
            flow_active: true,
            publish: Publish::Idle,
            builder: MessageBuilder::default(),
            consumer_prefetch: 0,
            channel_prefetch: 0,
            unacked: VecDeque::new(),
            unacked_live: 0,
            next_delivery_tag: 1,
            consumers: Slab::new(),
            tags: HashMap::new(),
            confirm: false,
            publish_seq: 0,
            confirmed_seq: 0,
            refused: Vec::new(),
            tx: None,
            last_queue: None,
            reply: None,
            publish_allowed: None,
            claimed_user_id: None,
            stats: Default::default(),
        }
    }
}

impl Channel {
    /// The one answer to "may `consumer` take a delivery now": the channel is open and
    /// flowing, below its unacked bound, below the channel-wide prefetch (global qos) and
    /// below the consumer's own prefetch.
    pub(crate) fn can_take(&self, consumer: ConsumerRef) -> bool {
        if self.closing
            || !self.flow_active
            || self.unacked.len() >= UNACKED_PER_CHANNEL_MAX
            || (self.channel_prefetch != 0 && self.unacked_live >= self.channel_prefetch as usize)
        {
            return false;
        }
        self.consumer(consumer)
            .is_some_and(|c| c.prefetch == 0 || c.unacked < c.prefetch as u32)
    }

    fn consumer(&self, c: ConsumerRef) -> Option<&ChannelConsumer> {
        self.consumers
            .get(c.slot as usize)
            .filter(|found| found.id == c.id)
    }

    fn consumer_mut(&mut self, c: ConsumerRef) -> Option<&mut ChannelConsumer> {
        self.consumers
            .get_mut(c.slot as usize)
            .filter(|found| found.id == c.id)
    }

    /// Deliveries not yet settled (basic.ack/nack/reject).
    pub(crate) fn unacked_count(&self) -> usize {
        self.unacked_live
    }

    /// The unacked deliveries the settles held by an open transaction cover (RabbitMQ's
    /// acks_uncommitted counts deliveries, not methods): for the management API.
    pub(crate) fn settles_uncommitted(&self) -> usize {
        let Some(ops) = self.tx.as_deref() else {
            return 0;
        };
        let mut upto = 0;
        let mut single = Vec::new();
        for op in ops {
            match *op {
                TxOp::Settle {
                    tag: 0,
                    multiple: true,
                    ..
                } => upto = u64::MAX,
                TxOp::Settle {
                    tag,
                    multiple: true,
                    ..
                } => upto = upto.max(tag),
                TxOp::Settle { tag, .. } => single.push(tag),
                TxOp::Publish { .. } => {}
            }
        }
        single.sort_unstable();
        single.dedup();
        let live = |t: &u64| {
            self.unacked
                .binary_search_by_key(t, |u| u.tag)
                .is_ok_and(|at| self.unacked[at].msg.is_some())
        };
        let covered = self
            .unacked
            .iter()
            .take_while(|u| u.tag <= upto)
            .filter(|u| u.msg.is_some())
            .count();
        covered + single.iter().filter(|t| **t > upto && live(t)).count()
    }

    pub(crate) fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// Each consumer's broker id, tag and prefetch (for the management API).
    pub(crate) fn each_consumer(&self, mut f: impl FnMut(ConsumerId, &[u8], u16)) {
        for (_, c) in self.consumers.iter() {
            f(c.id, &c.tag, c.prefetch);
        }
    }

    pub(crate) fn has_consumer_tag(&self, tag: &[u8]) -> bool {
        self.tags.contains_key(tag)
    }

    /// The slot the next `add_consumer` uses, for the broker to hand back with deliveries.
    pub(crate) fn next_consumer_slot(&self) -> u32 {
        self.consumers.vacant_key() as u32
    }

    /// Adds a consumer at `next_consumer_slot`, with the channel's per-consumer prefetch as it
    /// is now.
    pub(crate) fn add_consumer(&mut self, c: ConsumerRef, tag: Box<[u8]>) {
        let slot = self.consumers.insert(ChannelConsumer {
            id: c.id,
            tag: tag.clone(),
            prefetch: self.consumer_prefetch,
            unacked: 0,
        });
        debug_assert_eq!(slot, c.slot as usize, "the slot the broker was given");
        let before = self.tags.insert(tag, c.slot);
        debug_assert!(before.is_none(), "basic.consume checked the tag is new");
    }

    /// basic.cancel: forgets the consumer with `tag`, returning its id.
    pub(crate) fn remove_consumer_tag(&mut self, tag: &[u8]) -> Option<ConsumerId> {
        let slot = self.tags.remove(tag)?;
        Some(self.consumers.remove(slot as usize).id)
    }

    /// Forgets a consumer the broker cancelled, returning its tag.
    pub(crate) fn remove_consumer(&mut self, c: ConsumerRef) -> Option<Box<[u8]>> {
        self.consumer(c)?;
        let tag = self.consumers.remove(c.slot as usize).tag;
        self.tags.remove(&tag);
        Some(tag)
    }

    pub(crate) fn consumer_ids(&self) -> impl Iterator<Item = ConsumerId> + '_ {
        self.consumers.iter().map(|(_, c)| c.id)
    }

    /// Forgets every consumer (the channel is going), returning their ids.
    pub(crate) fn take_consumers(&mut self) -> impl Iterator<Item = ConsumerId> + '_ {
        self.tags.clear();
        self.consumers.drain().map(|c| c.id)
    }

    /// The delivery tag the next delivery gets. Direct replies carry it without using it up,
    /// as RabbitMQ 3.10 does: they are never acked.
    pub(crate) fn next_delivery_tag(&self) -> u64 {
        self.next_delivery_tag
    }

    /// basic.get: issues the next delivery tag and, unless `no_ack`, records the delivery.
    pub(crate) fn record_delivery(
        &mut self,
        queue: QueueId,
        msg: QueuedMessage,
        no_ack: bool,
    ) -> u64 {
        self.record(queue, None, msg, no_ack)
    }

    /// Issues the next delivery tag and, unless `no_ack`, records the delivery.
    fn record(
        &mut self,
        queue: QueueId,
        consumer: Option<ConsumerRef>,
        msg: QueuedMessage,
        no_ack: bool,
    ) -> u64 {
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        if !no_ack {
            // Tags are issued in increasing order; ack lookup by binary search relies on it.
            debug_assert!(self.unacked.back().is_none_or(|u| u.tag < tag));
            self.unacked.push_back(Unacked {
                tag,
                queue,
                consumer,
                msg: Some(msg),
            });
            self.unacked_live += 1;
        }
        tag
    }

    /// Records a delivery to `consumer` (see `record_delivery`), returning its delivery tag and
    /// the consumer tag; `Err` gives the message back if the consumer is not on this channel.
    pub(crate) fn record_consumer_delivery(
        &mut self,
        consumer: ConsumerRef,
        queue: QueueId,
        msg: QueuedMessage,
        no_ack: bool,
    ) -> Result<(u64, &[u8]), QueuedMessage> {
        if self.consumer(consumer).is_none() {
            return Err(msg);
        }
        let tag = self.record(queue, Some(consumer), msg, no_ack);
        let c = &mut self.consumers[consumer.slot as usize];
        if !no_ack {
            c.unacked += 1;
        }
        Ok((tag, &c.tag))
    }

    /// Takes the deliveries an ack, nack or reject with `tag` and `multiple` settles, in tag
    /// order. None if `tag` is not an unacked delivery (tag 0 with multiple means all).
    pub(crate) fn take_settled(
        &mut self,
        tag: u64,
        multiple: bool,
        out: &mut Vec<Unacked>,
    ) -> bool {
        out.clear();
        if multiple && tag == 0 {
            out.extend(self.take_all_unacked());
            return true;
        }
        let Ok(at) = self.unacked.binary_search_by_key(&tag, |u| u.tag) else {
            return false;
        };
        if self.unacked[at].msg.is_none() {
            return false;
        }
        if multiple {
            out.extend(self.unacked.drain(..=at).filter(|u| u.msg.is_some()));
        } else {
            let u = &mut self.unacked[at];
            out.push(Unacked {
                tag: u.tag,
                queue: u.queue,
                consumer: u.consumer,
                msg: u.msg.take(),
            });
        }
        self.unacked_live -= out.len();
        for u in out.iter() {
            if let Some(c) = u.consumer.and_then(|c| self.consumer_mut(c)) {
                debug_assert!(
                    c.unacked > 0,
                    "a consumer's count covers its unacked deliveries"
                );
                c.unacked = c.unacked.saturating_sub(1);
            }
        }
        while self.unacked.front().is_some_and(|u| u.msg.is_none()) {
            self.unacked.pop_front();
        }
        true
    }

    /// Takes the list of unacked deliveries whole, in tag order (settled ones are left as
    /// tombstones, `msg` None): channel close and recover, without a copy.
    pub(crate) fn take_unacked_list(&mut self) -> VecDeque<Unacked> {
        self.unacked_live = 0;
        for (_, c) in &mut self.consumers {
            c.unacked = 0;
        }
        std::mem::take(&mut self.unacked)
    }

    /// The confirms owed, as (delivery tag, multiple, ack): acks coalesced with `multiple`
    /// around the nacks of refused publishes. Marks them all confirmed.
    pub(crate) fn take_confirms(&mut self) -> Vec<(u64, bool, bool)> {
        let mut out = Vec::with_capacity(1 + 2 * self.refused.len());
        for n in std::mem::take(&mut self.refused) {
            if n > self.confirmed_seq + 1 {
                out.push((n - 1, n - 1 - self.confirmed_seq > 1, true));
            }
            out.push((n, false, false));
            self.confirmed_seq = n;
        }
        if self.publish_seq > self.confirmed_seq {
            out.push((
                self.publish_seq,
                self.publish_seq - self.confirmed_seq > 1,
                true,
            ));
            self.confirmed_seq = self.publish_seq;
        }
        out
    }

    /// Takes every unacked delivery, in tag order (ack or nack of all with tag 0).
    pub(crate) fn take_all_unacked(&mut self) -> impl Iterator<Item = Unacked> + '_ {
        self.unacked_live = 0;
        for (_, c) in &mut self.consumers {
            c.unacked = 0;
        }
        self.unacked.drain(..).filter(|u| u.msg.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Broker, ConnId, QueueFlags};
    use crate::protocol::FieldTable;

    const CONN: ConnId = ConnId(1);

    /// A broker with queue "q", its id, and a consumer on it in slot 0 of a channel.
    fn setup() -> (Broker, QueueId, ConsumerRef) {
        let mut b = Broker::new();
        let who = b.internal_actor(CONN, "/").expect("vhost /");
        let q = b
            .declare_queue(&who, b"q", QueueFlags::default(), FieldTable::EMPTY)
            .expect("declare")
            .queue;
        let id = b
            .add_consumer(&who, 1, 0, b"q", false, false, FieldTable::EMPTY)
            .expect("consume");
        (b, q, ConsumerRef { id, slot: 0 })
    }

    /// A message taken from "q", as a delivery would carry it.
    fn queued(b: &mut Broker) -> QueuedMessage {
        let m = Message::new(b"", b"q", &[0, 0], b"", false);
        let who = b.internal_actor(CONN, "/").expect("vhost /");
        let target = b.publish_target(&who, b"").expect("default exchange");
        b.publish(target, &m, crate::broker::PublishProps::default());
        b.get(&who, b"q", false)
            .expect("get")
            .expect("a message")
            .message
    }

    #[test]
    fn acks_single_multiple_and_unknown_tags() {
        let (mut b, q, _) = setup();
        let mut ch = Channel::default();
        for i in 0..5 {
            let m = queued(&mut b);
            assert_eq!(ch.record_delivery(q, m, false), i + 1);
        }
        let mut out = Vec::new();
        assert!(ch.take_settled(3, false, &mut out));
        assert_eq!(out.iter().map(|u| u.tag).collect::<Vec<_>>(), [3]);
        assert!(
            !ch.take_settled(3, false, &mut out),
            "double ack is an unknown tag"
        );
        assert!(!ch.take_settled(9, false, &mut out));
        assert!(ch.take_settled(4, true, &mut out));
        assert_eq!(out.iter().map(|u| u.tag).collect::<Vec<_>>(), [1, 2, 4]);
        assert_eq!(ch.unacked_live, 1);
        assert!(ch.take_settled(0, true, &mut out));
        assert_eq!(out.iter().map(|u| u.tag).collect::<Vec<_>>(), [5]);
        assert_eq!(ch.unacked_live, 0);
        assert!(ch.unacked.is_empty());
    }

    #[test]
    fn channel_prefetch_limits_credit() {
        let (mut b, q, c) = setup();
        let mut ch = Channel {
            channel_prefetch: 2,
            ..Default::default()
        };
        ch.add_consumer(c, b"t"[..].into());
        assert!(ch.can_take(c));
        ch.record_delivery(q, queued(&mut b), false);
        ch.record_consumer_delivery(c, q, queued(&mut b), true)
            .expect("c");
        assert!(ch.can_take(c), "no-ack deliveries do not count");
        ch.record_delivery(q, queued(&mut b), false);
        assert!(!ch.can_take(c));
    }

    #[test]
    fn consumer_prefetch_counts_its_own_unacked_deliveries() {
        let (mut b, q, c) = setup();
        let id = b
            .add_consumer(
                &b.internal_actor(CONN, "/").expect("vhost /"),
                1,
                1,
                b"q",
                false,
                false,
                FieldTable::EMPTY,
            )
            .expect("consume");
        let other = ConsumerRef { id, slot: 1 };
        let mut ch = Channel {
            consumer_prefetch: 2,
            ..Default::default()
        };
        ch.add_consumer(c, b"c"[..].into());
        ch.consumer_prefetch = 0;
        ch.add_consumer(other, b"other"[..].into());
        ch.record_consumer_delivery(c, q, queued(&mut b), false)
            .expect("c");
        ch.record_consumer_delivery(other, q, queued(&mut b), false)
            .expect("other");
        ch.record_consumer_delivery(c, q, queued(&mut b), false)
            .expect("c");
        assert!(!ch.can_take(c), "two unacked against a prefetch of 2");
        assert!(ch.can_take(other), "prefetch 0 is no limit");
        let mut out = Vec::new();
        assert!(ch.take_settled(1, false, &mut out));
        assert!(ch.can_take(c), "its ack returned the credit");
        // A cancelled consumer's deliveries settle without touching the others' counts.
        assert_eq!(ch.remove_consumer(c).as_deref(), Some(&b"c"[..]));
        assert!(!ch.can_take(c), "gone");
        // Its slot is reused by the next consumer: the old reference does not reach it.
        let next = ConsumerRef {
            id: b
                .add_consumer(
                    &b.internal_actor(CONN, "/").expect("vhost /"),
                    1,
                    0,
                    b"q",
                    false,
                    false,
                    FieldTable::EMPTY,
                )
                .expect("consume"),
            slot: ch.next_consumer_slot(),
        };
        assert_eq!(next.slot, c.slot);
        ch.add_consumer(next, b"next"[..].into());
        assert!(ch.remove_consumer(c).is_none(), "a stale reference");
        assert!(ch.take_settled(3, false, &mut out));
        assert_eq!(
            ch.consumers[1].unacked, 1,
            "other's delivery is still unacked"
        );
        ch.take_all_unacked().for_each(drop);
        assert_eq!(ch.consumers[1].unacked, 0);
    }

    /// Tags are found by lookup and forgotten however the consumer goes: cancelled by tag,
    /// cancelled by the broker, or with the channel.
    #[test]
    fn consumer_tags_follow_their_consumers() {
        let (mut b, _, c) = setup();
        let who = b.internal_actor(CONN, "/").expect("vhost /");
        let mut ch = Channel::default();
        ch.add_consumer(c, b"c"[..].into());
        for i in 1..1000u32 {
            let id = b
                .add_consumer(&who, 1, i, b"q", false, false, FieldTable::EMPTY)
                .expect("consume");
            let slot = ch.next_consumer_slot();
            ch.add_consumer(
                ConsumerRef { id, slot },
                format!("t{i}").into_bytes().into(),
            );
        }
        assert!(ch.has_consumer_tag(b"c") && ch.has_consumer_tag(b"t999"));
        assert!(ch.remove_consumer_tag(b"t500").is_some());
        assert!(!ch.has_consumer_tag(b"t500"));
        assert!(ch.remove_consumer_tag(b"t500").is_none(), "cancelled twice");
        assert_eq!(ch.remove_consumer(c).as_deref(), Some(&b"c"[..]));
        assert!(!ch.has_consumer_tag(b"c"), "cancelled by the broker");
        assert_eq!(ch.take_consumers().count(), 998);
        assert!(!ch.has_consumer_tag(b"t1"), "gone with the channel");
    }
}
