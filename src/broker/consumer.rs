//! Consumers: a channel's subscription to a queue as the broker sees it, and subscribing and
//! cancelling. The channel's name for a consumer (its tag) and its delivery credit live in the
//! session's channel, which answers `DeliverySink::can_take`.

use super::handle::define_id;
use super::queue::QueueId;
use super::{not_found_queue, Actor, Broker, ConnId, Notice};
use crate::error::{AmqpError, Show};
use crate::protocol::{FieldTable, FieldValue};

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
    /// x-priority: served before consumers of lower priority while it can take deliveries.
    priority: i64,
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

    pub(super) fn exclusive(&self) -> bool {
        self.exclusive
    }

    pub(super) fn priority(&self) -> i64 {
        self.priority
    }
}

impl Broker {
    /// basic.consume: read permission, then subscribes `channel` of the actor's connection to
    /// `queue`; `channel_slot` is the channel's own place for the consumer, given back with
    /// its deliveries. `args` may set the consumer's priority (x-priority).
    #[allow(clippy::too_many_arguments)]
    pub fn add_consumer(
        &mut self,
        who: &Actor,
        channel: u16,
        channel_slot: u32,
        queue: &[u8],
        no_ack: bool,
        exclusive: bool,
        args: FieldTable<'_>,
    ) -> Result<ConsumerId, AmqpError> {
        who.grant().check_basic_consume(queue)?;
        let qid = self.queue_for(who, queue)?;
        let q = self
            .queues
            .get(qid)
            .ok_or_else(|| not_found_queue(who.vhost_name(), queue))?;
        let priority = consumer_priority(args, who.vhost_name(), &q.name)?;
        if !q.admits_consumer(exclusive) {
            return Err(AmqpError::access_refused(format_args!(
                "queue '{}' in vhost '{}' in exclusive use",
                Show(queue),
                who.vhost_name()
            )));
        }
        let conn = who.conn;
        let id = self.consumers.insert(Consumer {
            conn,
            channel,
            channel_slot,
            queue: qid,
            no_ack,
            exclusive,
            priority,
        });
        if let Some(q) = self.queues.get_mut(qid) {
            q.add_consumer(id, exclusive, priority);
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
            let was_active = q.active_consumer() == Some(id);
            q.remove_consumer(id, c.exclusive, c.priority);
            if q.should_auto_delete() {
                self.remove_queue(c.queue);
            } else if !q.has_consumers() {
                // x-expires: unused from now on.
                self.renew_lease(c.queue);
            } else if was_active {
                // Another consumer took over and may take what is ready.
                self.mark_ready(c.queue);
            }
        }
    }

    /// Removes the consumers of a queue being deleted; their sessions hear of it as notices.
    pub(super) fn cancel_consumers_of(&mut self, consumers: impl Iterator<Item = ConsumerId>) {
        for id in consumers {
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

/// The arguments of basic.consume RabbitMQ 3.10 checks, with its texts: x-priority (an
/// integer of any width; default 0) and x-cancel-on-ha-failover (a boolean, without effect
/// on a single node, where no mirror fails over). Others are accepted, as RabbitMQ does.
fn consumer_priority(args: FieldTable<'_>, vhost: &str, queue: &[u8]) -> Result<i64, AmqpError> {
    let invalid = |key: &str, detail: std::fmt::Arguments<'_>| {
        AmqpError::precondition(format_args!(
            "invalid arg '{key}' for queue '{}' in vhost '{vhost}': {detail}",
            Show(queue)
        ))
    };
    let priority = match args.get(b"x-priority") {
        None => 0,
        Some(v) => v.as_integer().ok_or_else(|| {
            invalid(
                "x-priority",
                format_args!("\"expected integer, got {}\"", v.type_name()),
            )
        })?,
    };
    match args.get(b"x-cancel-on-ha-failover") {
        None | Some(FieldValue::Bool(_)) => Ok(priority),
        Some(v) => Err(invalid(
            "x-cancel-on-ha-failover",
            format_args!("{{unacceptable_type,{}}}", v.type_name()),
        )),
    }
}
