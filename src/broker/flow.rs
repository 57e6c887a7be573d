//! Publisher flow as the broker sees it: which queue a publish found over its memory mark,
//! whether a queue still is, and whether a connection's own acks are what drains it. The
//! session decides to pause reading a connection; the reactor resumes it. The marks and
//! their hysteresis are the queue's (`Queue::flow_pressure`).

use super::queue::QueueId;
use super::{Broker, ConnId};

impl Broker {
    /// The first queue with consumers that the last `publish` put a message into while that
    /// queue was over its flow mark, if any.
    pub(crate) fn publish_pressure(&self) -> Option<QueueId> {
        self.route.pressured
    }

    /// Whether `queue` still paces its publishers: it exists, has consumers and has not
    /// drained under its low mark since it went over the high one.
    pub(crate) fn queue_pressure(&mut self, queue: QueueId) -> bool {
        self.queues
            .get_mut(queue)
            .is_some_and(|q| q.flow_pressure())
    }

    /// Whether `conn` consumes from `queue` with manual acks. Such a connection is not paused
    /// for that queue: the queue drains only as its acks are read, so pausing it would wait
    /// for itself. Walks the queue's consumers; the session asks once per queue it is
    /// pressured by and remembers the answer until its own consumers change.
    pub(crate) fn drains_with_acks(&self, queue: QueueId, conn: ConnId) -> bool {
        let Some(q) = self.queues.get(queue) else {
            return false;
        };
        q.consumers().any(|id| {
            self.consumers
                .get(id)
                .is_some_and(|c| c.conn() == conn && !c.no_ack())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::Message;
    use crate::broker::{PublishProps, QueueFlags};
    use crate::limits::{QUEUE_FLOW_HIGH_BYTES, QUEUE_FLOW_LOW_BYTES};
    use crate::protocol::FieldTable;

    const PUBLISHER: ConnId = ConnId(1);
    const CONSUMER: ConnId = ConnId(2);
    const BODY_BYTES: usize = 64 * 1024;

    fn publish(b: &mut Broker) -> Option<QueueId> {
        let m = Message::new(b"", b"q", &[0, 0], &[0; BODY_BYTES], false);
        let routed = b.publish(&m, PublishProps::default()).expect("publish");
        assert_eq!(routed.queues, 1);
        b.publish_pressure()
    }

    /// A queue paces publishers from its high mark until it drains under its low mark, only
    /// while it has consumers; a manual-ack consumer's connection drains it itself.
    #[test]
    fn pressure_from_the_high_mark_to_the_low_mark_while_consumed() {
        let mut b = Broker::new();
        let q = b
            .declare_queue(PUBLISHER, b"q", QueueFlags::default(), FieldTable::EMPTY)
            .expect("declare")
            .queue;
        let per_message = BODY_BYTES + 3;
        let to_high = QUEUE_FLOW_HIGH_BYTES / per_message + 1;
        for _ in 0..to_high {
            assert_eq!(publish(&mut b), None, "no consumer, no pacing");
        }
        let consumer = b
            .add_consumer(CONSUMER, 1, 0, b"q", false, false, FieldTable::EMPTY)
            .expect("consume");
        assert_eq!(publish(&mut b), Some(q), "over the high mark");
        assert!(b.drains_with_acks(q, CONSUMER));
        assert!(!b.drains_with_acks(q, PUBLISHER));
        // Take messages until just above the low mark: still pressured (hysteresis).
        let low = QUEUE_FLOW_LOW_BYTES / per_message;
        let mut taken = 0;
        while b.queues.get(q).expect("q").message_count() > low + 1 {
            b.get(CONSUMER, b"q", true)
                .expect("get")
                .expect("a message");
            taken += 1;
        }
        assert!(taken > 0);
        assert!(b.queue_pressure(q), "between the marks it still paces");
        b.get(CONSUMER, b"q", true)
            .expect("get")
            .expect("a message");
        b.get(CONSUMER, b"q", true)
            .expect("get")
            .expect("a message");
        assert!(!b.queue_pressure(q), "under the low mark");
        assert_eq!(publish(&mut b), None);
        // Over again, then the consumer goes: a queue nobody consumes does not pace.
        let again = (0..to_high).find(|_| publish(&mut b).is_some());
        assert!(again.is_some(), "over the high mark again");
        b.cancel_consumer(consumer);
        assert!(!b.queue_pressure(q));
        assert!(!b.drains_with_acks(q, CONSUMER));
    }
}
