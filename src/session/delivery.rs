//! Pull-based delivery: for each queue that may deliver, hand ready messages round-robin to
//! consumers that have credit (consumer and channel prefetch, channel flow, and an output
//! buffer below the high-water mark). Messages a slow consumer cannot take stay in the queue.

use super::Session;
use crate::broker::queue::QueueId;
use crate::broker::Broker;
use crate::broker::ConnId;
use crate::limits::DELIVERIES_PER_QUEUE_PER_TURN_MAX;

/// Access to the sessions by connection id, implemented by the reactor's connection table.
pub trait Sessions {
    fn session_mut(&mut self, id: ConnId) -> Option<&mut Session>;
    /// Notes that `id` has output to flush this turn.
    fn wants_flush(&mut self, id: ConnId);
}

/// Delivers from every queue marked dirty since the last call.
pub fn deliver_dirty(
    broker: &mut Broker,
    sessions: &mut impl Sessions,
    scratch: &mut Vec<QueueId>,
) {
    broker.take_dirty(scratch);
    for &q in scratch.iter() {
        deliver_queue(broker, sessions, q);
    }
}

fn deliver_queue(broker: &mut Broker, sessions: &mut impl Sessions, qid: QueueId) {
    for _ in 0..DELIVERIES_PER_QUEUE_PER_TURN_MAX {
        let Some(q) = broker.queues.get_mut(qid) else {
            return;
        };
        let n = q.consumers.len();
        if n == 0 || q.message_count() == 0 {
            return;
        }
        let mut chosen = None;
        for i in 0..n {
            let idx = (q.next_consumer + i) % n;
            let cid = q.consumers[idx];
            let Some(c) = broker.consumers.get(cid) else {
                continue;
            };
            if c.prefetch != 0 && c.unacked >= c.prefetch as u32 {
                continue;
            }
            if sessions
                .session_mut(c.conn)
                .is_some_and(|s| s.can_deliver(c.channel))
            {
                chosen = Some((idx, cid));
                break;
            }
        }
        // No consumer has credit: the queue is marked dirty again when one gets some.
        let Some((idx, cid)) = chosen else { return };
        q.next_consumer = (idx + 1) % n;
        q.page_in(&mut broker.store);
        let Some(m) = q.pop() else { return };
        let Some(c) = broker.consumers.get_mut(cid) else {
            return;
        };
        if !c.no_ack {
            c.unacked += 1;
        }
        let (conn, channel, no_ack) = (c.conn, c.channel, c.no_ack);
        if no_ack {
            // Settled on delivery: the store forgets it now.
            if let Some(r) = m.store {
                broker.store.ack(r);
            }
        }
        if let Some(s) = sessions.session_mut(conn) {
            s.deliver(channel, &c.tag, cid, no_ack, qid, m);
            sessions.wants_flush(conn);
        }
    }
    // Budget spent with messages left: continue next turn, after other queues had theirs.
    broker.mark_dirty(qid);
}
