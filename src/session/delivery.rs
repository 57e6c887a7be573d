//! The broker's deliveries and notices reaching sessions: the connection table (the
//! reactor's, or the fuzzer's) is wrapped as the broker's `DeliverySink`, so "can this
//! consumer take one" is answered by its session's channel and the message is written by its
//! session; notices (a consumer cancelled by a queue deletion, a direct reply) go to the
//! session they are for.

use super::channel::ConsumerRef;
use super::Session;
use crate::broker::consumer::{Consumer, ConsumerId};
use crate::broker::queue::{QueueId, QueuedMessage};
use crate::broker::{Broker, ConnId, DeliverySink, Notice};
use crate::protocol::Outbox;

/// Access to the sessions by connection id, implemented by the reactor's connection table.
pub trait Sessions {
    /// The session of connection `id` and the output it writes into.
    fn session_mut(&mut self, id: ConnId) -> Option<(&mut Session, &mut Outbox)>;
    /// Notes that `id` has output to flush this turn.
    fn wants_flush(&mut self, id: ConnId);
}

/// Delivers from every queue that may deliver into the sessions of `sessions`.
pub fn deliver_ready(broker: &mut Broker, sessions: &mut impl Sessions) {
    let epoch = broker.rate_epoch();
    broker.deliver_ready(&mut Sink(sessions, epoch));
}

/// Tells sessions what other connections' actions did to them, oldest first. The connections
/// the broker closes (their vhost or user was deleted) are left in `forced`, for the caller to
/// close with its context (`Session::force_close`).
pub fn deliver_notices(
    broker: &mut Broker,
    sessions: &mut impl Sessions,
    forced: &mut Vec<(ConnId, String)>,
) {
    for n in broker.drain_notices() {
        let conn = n.conn();
        let Some((s, out)) = sessions.session_mut(conn) else {
            continue;
        };
        match n {
            Notice::ConsumerCancelled {
                channel,
                consumer,
                channel_slot,
                ..
            } => s.consumer_cancelled(out, channel, consumer, channel_slot),
            Notice::Reply {
                channel,
                consumer,
                message,
                ..
            } => s.deliver_reply(out, channel, consumer, &message),
            // Closing needs the broker, which is busy handing out notices here.
            Notice::ConnectionForced { reason, .. } => forced.push((conn, reason)),
        }
        sessions.wants_flush(conn);
    }
}

/// The sessions, and the rate epoch their channel counters are at this turn.
struct Sink<'a, S>(&'a mut S, u64);

fn slot_of(id: ConsumerId, c: &Consumer) -> ConsumerRef {
    ConsumerRef {
        id,
        slot: c.channel_slot(),
    }
}

impl<S: Sessions> DeliverySink for Sink<'_, S> {
    fn can_take(&mut self, consumer: ConsumerId, c: &Consumer) -> bool {
        self.0
            .session_mut(c.conn())
            .is_some_and(|(s, _)| s.can_take(c.channel(), slot_of(consumer, c)))
    }

    fn deliver(
        &mut self,
        consumer: ConsumerId,
        c: &Consumer,
        queue: QueueId,
        m: QueuedMessage,
    ) -> Result<(), QueuedMessage> {
        let Some((s, out)) = self.0.session_mut(c.conn()) else {
            return Err(m);
        };
        let epoch = self.1;
        s.deliver(
            out,
            c.channel(),
            slot_of(consumer, c),
            c.no_ack(),
            queue,
            m,
            epoch,
        )?;
        self.0.wants_flush(c.conn());
        Ok(())
    }
}
