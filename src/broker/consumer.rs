//! Consumers: a channel's subscription to a queue as the broker sees it, and subscribing and
//! cancelling. The channel's name for a consumer (its tag) and its delivery credit live in the
//! session's channel, which answers `DeliverySink::can_take`.

use super::handle::define_id;
use super::queue::QueueId;
use super::{not_found_queue, Broker, ConnId, Notice, VHOST};
use crate::error::{AmqpError, Show};

define_id!(
    /// A consumer in the broker's registry.
    ConsumerId
);

/// A subscription of a channel to a queue.
pub struct Consumer {
    conn: ConnId,
    channel: u16,
    /// Where the channel keeps this consumer: assigned by the session layer at subscribe time
    /// and handed back with each delivery, so the session finds it without a search.
    channel_slot: u32,
    queue: QueueId,
    no_ack: bool,
    exclusive: bool,
}

impl Consumer {
    pub(crate) fn conn(&self) -> ConnId {
        self.conn
    }

    pub(crate) fn channel(&self) -> u16 {
        self.channel
    }

    pub(crate) fn channel_slot(&self) -> u32 {
        self.channel_slot
    }

    /// basic.consume no-ack: a delivery is settled when it is made.
    pub(crate) fn no_ack(&self) -> bool {
        self.no_ack
    }

    pub(super) fn queue(&self) -> QueueId {
        self.queue
    }
}

impl Broker {
    /// basic.consume: subscribes `channel` of `conn` to `queue`; `channel_slot` is the
    /// channel's own place for the consumer, given back with its deliveries.
    pub fn add_consumer(
        &mut self,
        conn: ConnId,
        channel: u16,
        channel_slot: u32,
        queue: &[u8],
        no_ack: bool,
        exclusive: bool,
    ) -> Result<ConsumerId, AmqpError> {
        let qid = self.queue_for(conn, queue)?;
        let q = self.queues.get(qid).ok_or_else(|| not_found_queue(queue))?;
        if !q.admits_consumer(exclusive) {
            return Err(AmqpError::access_refused(format_args!(
                "queue '{}' in vhost '{VHOST}' in exclusive use",
                Show(queue)
            )));
        }
        let id = self.consumers.insert(Consumer {
            conn,
            channel,
            channel_slot,
            queue: qid,
            no_ack,
            exclusive,
        });
        if let Some(q) = self.queues.get_mut(qid) {
            q.add_consumer(id, exclusive);
        }
        self.mark_ready(qid);
        Ok(id)
    }

    /// A consumer tag for basic.consume with an empty one, as RabbitMQ makes them.
    pub(crate) fn new_consumer_tag(&mut self) -> Box<[u8]> {
        self.generate_name("amq.ctag-")
    }

    /// basic.cancel or the channel going: removes the consumer; an auto-delete queue left
    /// without consumers goes too.
    pub(crate) fn cancel_consumer(&mut self, id: ConsumerId) {
        let Some(c) = self.consumers.remove(id) else {
            return;
        };
        if let Some(q) = self.queues.get_mut(c.queue) {
            q.remove_consumer(id, c.exclusive);
            if q.should_auto_delete() {
                self.remove_queue(c.queue);
            } else if q.consumers().is_empty() {
                // x-expires: unused from now on.
                self.renew_lease(c.queue);
            }
        }
    }

    /// Removes the consumers of a queue being deleted; their sessions hear of it as notices.
    pub(super) fn cancel_consumers_of(&mut self, consumers: &[ConsumerId]) {
        for &id in consumers {
            if let Some(c) = self.consumers.remove(id) {
                self.notices.push(Notice::ConsumerCancelled {
                    conn: c.conn,
                    channel: c.channel,
                    consumer: id,
                    channel_slot: c.channel_slot,
                });
            }
        }
    }

    /// The consumer may take deliveries again (credit returned, flow resumed, output drained):
    /// its queue goes on the ready list.
    pub(crate) fn wake_consumer(&mut self, id: ConsumerId) {
        if let Some(c) = self.consumers.get(id) {
            let q = c.queue;
            self.mark_ready(q);
        }
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }
}
