//! A queue: its declaration, the ready messages in order (in memory, then on disk past its
//! window), and its consumers in the order it serves them (`rotation.rs`: priorities, round
//! robin, single active consumer). Knows nothing of channels or sockets; the broker's delivery
//! (`delivery.rs`) pops from it for the consumer it picks.

use super::consumer::ConsumerId;
use super::handle::define_id;
use super::message::Message;
use super::rotation::Rotation;
use super::{ConnId, VHOST};
use crate::error::{AmqpError, Show};
use crate::limits::{PAGE_IN_BATCH_MESSAGES, QUEUE_WINDOW_BYTES_MAX, QUEUE_WINDOW_MESSAGES_MAX};
use crate::protocol::{FieldTable, FieldValue};
use crate::store::{Location, Store, StoreRef};
use log::error;
use std::collections::VecDeque;

define_id!(
    /// A queue in the broker's registry.
    QueueId
);

/// A message taken from a queue: delivered (and unacked) or got, until it is settled back
/// through the broker (`Broker::ack`, `Broker::requeue`).
#[derive(Clone, Debug)]
pub struct QueuedMessage {
    /// Position in the queue's publish order; requeued messages go back to their place by it.
    seq: u64,
    msg: Message,
    redelivered: bool,
    /// Where the message is on disk, for a persistent message in a durable queue.
    pub(super) store: Option<StoreRef>,
}

impl QueuedMessage {
    pub fn message(&self) -> &Message {
        &self.msg
    }

    /// Whether it was delivered before (requeued, or recovered after a crash).
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }
}

/// A ready message that is only on disk: what a queue keeps per message beyond its window.
#[derive(Clone, Copy, Debug)]
struct PagedRef {
    loc: Location,
    seq: u64,
    redelivered: bool,
}

const _: () = assert!(std::mem::size_of::<PagedRef>() <= 32);

pub(super) struct Queue {
    pub(super) name: Box<[u8]>,
    pub(super) durable: bool,
    /// Number naming the queue in the message store; None for queues whose messages never
    /// touch the disk (non-durable or exclusive, or no store).
    pub(super) store_id: Option<u32>,
    pub(super) auto_delete: bool,
    /// The connection of an exclusive queue.
    pub(super) owner: Option<ConnId>,
    /// Declaration arguments as a raw field table, for equivalence checks.
    // Read by the management API's listings and the definitions export (issues 12, 13).
    #[allow(dead_code)]
    pub(super) arguments: Box<[u8]>,
    ready: VecDeque<QueuedMessage>,
    ready_bytes: usize,
    /// Ready messages after `ready`, in order, whose bodies are only in the store.
    paged: VecDeque<PagedRef>,
    next_seq: u64,
    consumers: Rotation,
    /// Set once a consumer has subscribed: auto-delete applies only after that (RabbitMQ).
    had_consumers: bool,
    /// Some consumer holds exclusive access.
    exclusive_consumer: bool,
    /// Already on the broker's list of queues that may deliver.
    pub(super) on_ready_list: bool,
}

impl Queue {
    pub(super) fn new(
        name: Box<[u8]>,
        durable: bool,
        auto_delete: bool,
        owner: Option<ConnId>,
        arguments: Box<[u8]>,
    ) -> Self {
        let single_active = matches!(single_active_consumer_arg(&arguments, &name), Ok(true));
        Queue {
            name,
            durable,
            store_id: None,
            auto_delete,
            owner,
            arguments,
            ready: VecDeque::new(),
            ready_bytes: 0,
            paged: VecDeque::new(),
            next_seq: 0,
            consumers: Rotation::new(single_active),
            had_consumers: false,
            exclusive_consumer: false,
            on_ready_list: false,
        }
    }

    pub(super) fn message_count(&self) -> usize {
        self.ready.len() + self.paged.len()
    }

    /// Whether a new message must go to disk instead of memory: the queue is durable and its
    /// in-memory window is full (or it is already paging, so order is kept).
    pub(super) fn wants_paging(&self) -> bool {
        self.store_id.is_some()
            && (!self.paged.is_empty()
                || self.ready.len() >= QUEUE_WINDOW_MESSAGES_MAX
                || self.ready_bytes >= QUEUE_WINDOW_BYTES_MAX)
    }

    /// Appends a message that stays on disk.
    pub(super) fn push_paged(&mut self, loc: Location, redelivered: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.paged.push_back(PagedRef {
            loc,
            seq,
            redelivered,
        });
    }

    /// Room for `n` recovered messages, so recovery allocates exactly what they take.
    pub fn reserve_paged(&mut self, n: usize) {
        self.paged.reserve_exact(n);
    }

    /// Appends a message found in the store at start. `origin` (the id it was first
    /// published with) orders the queue: the store hands messages over in file order, and
    /// compaction may have moved older ones into newer files.
    pub fn push_recovered(&mut self, loc: Location, origin: u64, redelivered: bool) {
        self.paged.push_back(PagedRef {
            loc,
            seq: origin,
            redelivered,
        });
    }

    /// Every recovered message is in: puts them in publish order and numbers new ones after.
    pub fn recovered(&mut self) {
        let paged = self.paged.make_contiguous();
        if !paged.is_sorted_by_key(|p| p.seq) {
            paged.sort_unstable_by_key(|p| p.seq);
        }
        self.next_seq = self.paged.back().map_or(self.next_seq, |p| p.seq + 1);
    }

    /// Reads the next batch of paged messages into memory once the window has run dry.
    #[inline(never)]
    fn page_in(&mut self, store: &mut Store) {
        if !self.ready.is_empty() || self.paged.is_empty() {
            return;
        }
        let Some(queue) = self.store_id else { return };
        for _ in 0..PAGE_IN_BATCH_MESSAGES {
            let Some(p) = self.paged.pop_front() else {
                break;
            };
            let store_ref = StoreRef::at(p.loc, queue);
            match store.read(p.loc) {
                Ok(msg) => {
                    self.ready_bytes += msg.size();
                    // Paged messages are newer than any in memory, so order is kept.
                    self.ready.push_back(QueuedMessage {
                        seq: p.seq,
                        msg,
                        redelivered: p.redelivered,
                        store: Some(store_ref),
                    });
                }
                Err(e) => {
                    error!(
                        "queue '{}': cannot read message back from the store: {e}; dropping it",
                        String::from_utf8_lossy(&self.name)
                    );
                    store.ack(store_ref);
                }
            }
            if self.ready_bytes >= QUEUE_WINDOW_BYTES_MAX {
                break;
            }
        }
    }

    /// Appends a newly routed message.
    pub(super) fn push(&mut self, msg: Message, store: Option<StoreRef>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ready_bytes += msg.size();
        self.ready.push_back(QueuedMessage {
            seq,
            msg,
            redelivered: false,
            store,
        });
    }

    /// Store references of ready messages delivered before (for a clean stop).
    pub(super) fn redelivered_refs(&self, out: &mut Vec<(u64, u32)>) {
        let Some(queue) = self.store_id else { return };
        out.extend(
            self.ready
                .iter()
                .filter(|m| m.redelivered)
                .filter_map(|m| m.store.map(|r| (r.msg_id, r.queue))),
        );
        out.extend(
            self.paged
                .iter()
                .filter(|p| p.redelivered)
                .map(|p| (p.loc.msg_id, queue)),
        );
    }

    /// Takes the oldest ready message, reading the next batch from disk first if needed.
    #[inline]
    pub(super) fn pop(&mut self, store: &mut Store) -> Option<QueuedMessage> {
        if self.ready.is_empty() {
            self.page_in(store);
        }
        let m = self.ready.pop_front()?;
        self.ready_bytes -= m.msg.size();
        Some(m)
    }

    /// Puts back a message `pop` just returned that no one took: first again, unchanged.
    pub(super) fn unpop(&mut self, m: QueuedMessage) {
        self.ready_bytes += m.msg.size();
        self.ready.push_front(m);
    }

    /// Puts a delivered message back at its original position, marked redelivered.
    pub(super) fn requeue(&mut self, mut m: QueuedMessage) {
        m.redelivered = true;
        self.ready_bytes += m.msg.size();
        // Requeued messages are usually older than everything ready, so this is near the front.
        let at = self.ready.partition_point(|r| r.seq < m.seq);
        self.ready.insert(at, m);
    }

    /// Drops every ready message, acking their store records; returns how many there were.
    pub(super) fn purge(&mut self, store: &mut Store) -> usize {
        let n = self.message_count();
        self.ready_bytes = 0;
        for m in std::mem::take(&mut self.ready) {
            if let Some(r) = m.store {
                store.ack(r);
            }
        }
        if let Some(queue) = self.store_id {
            for p in std::mem::take(&mut self.paged) {
                store.ack(StoreRef::at(p.loc, queue));
            }
        }
        n
    }

    /// Every consumer, by priority (highest first), then in registration order.
    pub(super) fn consumers(&self) -> impl Iterator<Item = ConsumerId> + '_ {
        self.consumers.iter()
    }

    pub(super) fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    pub(super) fn has_consumers(&self) -> bool {
        !self.consumers.is_empty()
    }

    /// Whether a new consumer (exclusive or not) may subscribe: not while another holds
    /// exclusive access, and an exclusive one only alone on a queue without a single active
    /// consumer (RabbitMQ refuses exclusive consumers there).
    pub(super) fn admits_consumer(&self, exclusive: bool) -> bool {
        !self.exclusive_consumer
            && (!exclusive || (self.consumers.is_empty() && !self.single_active()))
    }

    pub(super) fn add_consumer(&mut self, c: ConsumerId, exclusive: bool, priority: i64) {
        self.consumers.add(c, priority);
        self.had_consumers = true;
        self.exclusive_consumer |= exclusive;
    }

    pub(super) fn remove_consumer(&mut self, c: ConsumerId, exclusive: bool, priority: i64) {
        if exclusive {
            self.exclusive_consumer = false;
        }
        self.consumers.remove(c, priority);
    }

    /// The consumer to deliver to next among those `may_take` accepts (`Rotation::pick`).
    #[inline]
    pub(super) fn pick_consumer(
        &mut self,
        may_take: impl FnMut(ConsumerId) -> bool,
    ) -> Option<ConsumerId> {
        self.consumers.pick(may_take)
    }

    /// Whether the auto-delete rule removes this queue now.
    pub(super) fn should_auto_delete(&self) -> bool {
        self.auto_delete && self.had_consumers && self.consumers.is_empty()
    }

    /// x-single-active-consumer: only one consumer at a time is served.
    pub(super) fn single_active(&self) -> bool {
        self.consumers.single_active()
    }

    /// The active consumer of a single-active-consumer queue.
    pub(super) fn active_consumer(&self) -> Option<ConsumerId> {
        self.consumers.active()
    }

    /// The exclusive-consumer flag agrees with the consumers (checked by `Broker::assert_consistent`).
    pub(super) fn exclusive_consumer(&self) -> bool {
        self.exclusive_consumer
    }
}

/// x-single-active-consumer of queue.declare: a boolean (RabbitMQ's 406 for other types),
/// false when absent.
pub(super) fn single_active_consumer_arg(args: &[u8], queue: &[u8]) -> Result<bool, AmqpError> {
    const KEY: &str = "x-single-active-consumer";
    let value = FieldTable::parse(args)
        .ok()
        .and_then(|t| t.get(KEY.as_bytes()));
    match value {
        None => Ok(false),
        Some(FieldValue::Bool(on)) => Ok(on),
        Some(other) => Err(AmqpError::precondition(format_args!(
            "invalid arg '{KEY}' for queue '{}' in vhost '{VHOST}': {{unacceptable_type,{}}}",
            Show(queue),
            other.type_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(b: &str) -> Message {
        Message::new(b"", b"q", &[0, 0], b.as_bytes(), false)
    }

    #[test]
    fn requeued_messages_return_to_their_original_place() {
        let mut q = Queue::new(b"q"[..].into(), false, false, None, Box::new([]));
        let mut store = Store::disabled();
        for b in ["1", "2", "3", "4"] {
            q.push(msg(b), None);
        }
        let m1 = q.pop(&mut store).expect("1");
        let m2 = q.pop(&mut store).expect("2");
        let m3 = q.pop(&mut store).expect("3");
        q.requeue(m3);
        q.requeue(m1);
        q.push(msg("5"), None);
        q.requeue(m2);
        let m4 = q.pop(&mut store).expect("4");
        q.unpop(m4);
        let order: Vec<_> = std::iter::from_fn(|| q.pop(&mut store))
            .map(|m| (m.msg.body().to_vec(), m.redelivered))
            .collect();
        assert_eq!(
            order,
            vec![
                (b"1".to_vec(), true),
                (b"2".to_vec(), true),
                (b"3".to_vec(), true),
                (b"4".to_vec(), false),
                (b"5".to_vec(), false)
            ]
        );
        assert_eq!(q.ready_bytes, 0);
    }
}
