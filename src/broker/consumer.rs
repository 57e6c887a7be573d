//! A consumer: a channel's subscription to a queue, as the broker sees it. The channel's
//! name for it (the consumer tag) and its delivery credit live in the session's channel.

use super::handle::define_id;
use super::queue::QueueId;
use super::ConnId;

define_id!(
    /// A consumer in the broker's registry.
    ConsumerId
);

/// A subscription of a channel to a queue.
pub struct Consumer {
    pub conn: ConnId,
    pub channel: u16,
    pub tag: Box<[u8]>,
    pub queue: QueueId,
    pub no_ack: bool,
    pub exclusive: bool,
    /// basic.qos prefetch_count (global=false) in force when the consumer was created; 0 = none.
    pub prefetch: u16,
    /// Deliveries to this consumer not yet acked.
    pub unacked: u32,
}
