//! One AMQP channel's state: publish assembly (method → header → body frames), the unacked
//! deliveries in tag order, prefetch limits, consumers, publisher confirms and transactions.
//! Plain state with small helpers; the method handlers that drive it are in `methods.rs`.

use crate::broker::consumer::ConsumerId;
use crate::broker::message::{Message, MessageBuilder};
use crate::broker::queue::{QueueId, QueuedMessage};
use std::collections::VecDeque;

/// Where the channel is in receiving a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
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
    },
}

/// A message delivered on this channel and not yet acked.
#[derive(Debug)]
pub struct Unacked {
    pub tag: u64,
    pub queue: QueueId,
    /// None for basic.get deliveries.
    pub consumer: Option<ConsumerId>,
    /// None once acked out of order (a tombstone until it reaches the front).
    pub msg: Option<QueuedMessage>,
}

/// What an ack-like method settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Requeue,
    Discard,
}

/// Work buffered by a channel in tx mode until tx.commit.
pub enum TxOp {
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

pub struct Channel {
    /// We sent channel.close and wait for close-ok; everything else is dropped meanwhile.
    pub closing: bool,
    /// channel.flow from the client: false stops deliveries.
    pub flow_active: bool,
    pub publish: Publish,
    pub builder: MessageBuilder,
    /// basic.qos global=false: prefetch for consumers created from now on.
    pub consumer_prefetch: u16,
    /// basic.qos global=true: limit across all consumers of the channel.
    pub channel_prefetch: u16,
    pub unacked: VecDeque<Unacked>,
    /// Live (not tombstoned) entries of `unacked`.
    pub unacked_live: usize,
    pub next_delivery_tag: u64,
    pub consumers: Vec<(Box<[u8]>, ConsumerId)>,
    pub confirm: bool,
    /// Sequence number of the last message published in confirm mode.
    pub publish_seq: u64,
    /// Highest sequence number already acked to the publisher.
    pub confirmed_seq: u64,
    pub tx: Option<Vec<TxOp>>,
    /// Name of the last queue declared on this channel, used when a method names queue "".
    pub last_queue: Option<Box<[u8]>>,
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
            consumers: Vec::new(),
            confirm: false,
            publish_seq: 0,
            confirmed_seq: 0,
            tx: None,
            last_queue: None,
        }
    }
}

impl Channel {
    /// Whether the channel-wide prefetch and flow allow another delivery.
    pub fn has_credit(&self) -> bool {
        !self.closing
            && self.flow_active
            && (self.channel_prefetch == 0 || self.unacked_live < self.channel_prefetch as usize)
    }

    pub fn consumer(&self, tag: &[u8]) -> Option<ConsumerId> {
        self.consumers
            .iter()
            .find(|(t, _)| &**t == tag)
            .map(|(_, c)| *c)
    }

    pub fn remove_consumer_tag(&mut self, tag: &[u8]) -> Option<ConsumerId> {
        let i = self.consumers.iter().position(|(t, _)| &**t == tag)?;
        Some(self.consumers.swap_remove(i).1)
    }

    /// Issues the next delivery tag and, unless `no_ack`, records the delivery.
    pub fn record_delivery(
        &mut self,
        queue: QueueId,
        consumer: Option<ConsumerId>,
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

    /// Takes the deliveries an ack, nack or reject with `tag` and `multiple` settles, in tag
    /// order. None if `tag` is not an unacked delivery (tag 0 with multiple means all).
    pub fn take_settled(&mut self, tag: u64, multiple: bool, out: &mut Vec<Unacked>) -> bool {
        out.clear();
        if multiple && tag == 0 {
            out.extend(self.unacked.drain(..).filter(|u| u.msg.is_some()));
            self.unacked_live = 0;
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
        while self.unacked.front().is_some_and(|u| u.msg.is_none()) {
            self.unacked.pop_front();
        }
        true
    }

    /// Takes every unacked delivery, in tag order (channel close, recover).
    pub fn take_all_unacked(&mut self) -> impl Iterator<Item = Unacked> + '_ {
        self.unacked_live = 0;
        self.unacked.drain(..).filter(|u| u.msg.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::handle::Registry;

    fn queued(seq: u64) -> QueuedMessage {
        QueuedMessage {
            seq,
            msg: Message::new(b"", b"q", &[0, 0], b"", false),
            redelivered: false,
            store: None,
        }
    }

    #[test]
    fn acks_single_multiple_and_unknown_tags() {
        let mut r = Registry::default();
        let q = r.insert(());
        let mut ch = Channel::default();
        for i in 0..5 {
            assert_eq!(ch.record_delivery(q, None, queued(i), false), i + 1);
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
        let mut r = Registry::default();
        let q = r.insert(());
        let mut ch = Channel {
            channel_prefetch: 2,
            ..Default::default()
        };
        assert!(ch.has_credit());
        ch.record_delivery(q, None, queued(0), false);
        ch.record_delivery(q, None, queued(1), true);
        assert!(ch.has_credit(), "no-ack deliveries do not count");
        ch.record_delivery(q, None, queued(2), false);
        assert!(!ch.has_credit());
    }
}
