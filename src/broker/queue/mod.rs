//! A queue: its declaration and parsed arguments, its ready messages (`levels.rs`: in memory,
//! then on disk past its window; one level per priority for x-max-priority), its consumers in
//! the order it serves them (`rotation.rs`: priorities, round robin, single active consumer),
//! and the state of its timers (head expiry, x-expires lease). Knows
//! nothing of channels or sockets; the broker's delivery (`delivery.rs`) pops from it for the
//! consumer it picks, and the broker decides what expiry and limits do with what it takes.

mod chunked;
mod levels;

use super::args::{Overflow, QueueArgs, QueueType};
use super::consumer::ConsumerId;
use super::handle::define_id;
use super::message::Message;
use super::rotation::Rotation;
use super::{ConnId, VhostId};
use crate::limits::{
    QUEUE_FLOW_HIGH_BYTES, QUEUE_FLOW_LOW_BYTES, QUEUE_WINDOW_BYTES_MAX, QUEUE_WINDOW_MESSAGES_MAX,
};
use crate::store::{Store, StoreRef};
use levels::Messages;
pub(crate) use levels::{Head, PagedRef, NEVER};

define_id!(
    /// A queue in the broker's registry.
    QueueId
);

/// A message taken from a queue: delivered (and unacked) or got, until it is settled back
/// through the broker (`Broker::ack`, `Broker::requeue`).
#[derive(Clone, Debug)]
pub struct QueuedMessage {
    /// Position in its level's publish order; requeued messages go back to their place by it.
    seq: u64,
    msg: Message,
    /// Absolute deadline (ms since the epoch) from x-message-ttl or the expiration property;
    /// `NEVER` without one. A requeued message keeps it.
    expires_at: u64,
    /// Where the message is on disk, for a persistent message in a durable queue: its
    /// message id (never 0, so 0 means none) and the queue's store number. Kept as two
    /// fields rather than an `Option<StoreRef>` so the struct stays within 80 bytes.
    store_msg_id: u64,
    store_queue: u32,
    /// Length of the store record the queue was given (with `store_msg_id`).
    store_len: u32,
    /// Times it was returned to a quorum queue (RabbitMQ's x-delivery-count).
    delivery_count: u32,
    redelivered: bool,
}

const _: () = assert!(std::mem::size_of::<QueuedMessage>() <= 80);

impl QueuedMessage {
    /// A message entering a queue.
    pub(super) fn new(msg: Message, expires_at: u64, store: Option<StoreRef>) -> Self {
        debug_assert!(
            store.is_none_or(|r| r.msg_id != 0),
            "message ids start at 1 << 32"
        );
        QueuedMessage {
            seq: 0,
            msg,
            expires_at,
            store_msg_id: store.map_or(0, |r| r.msg_id),
            store_queue: store.map_or(0, |r| r.queue),
            store_len: store.map_or(0, |r| r.len),
            delivery_count: 0,
            redelivered: false,
        }
    }

    /// Where the message is on disk, if it is.
    pub(super) fn store(&self) -> Option<StoreRef> {
        (self.store_msg_id != 0).then_some(StoreRef {
            msg_id: self.store_msg_id,
            queue: self.store_queue,
            len: self.store_len,
        })
    }

    pub fn message(&self) -> &Message {
        &self.msg
    }

    /// Whether it was delivered before (requeued, or recovered after a crash).
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    pub(super) fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    /// Replaces the message delivered (a quorum queue's x-delivery-count header).
    pub(super) fn set_message(&mut self, msg: Message) {
        self.msg = msg;
    }
}

/// Delivered messages going back to their queues, in the order they are to be put back (the
/// newest first, so each lands in front of what its queue holds). Handed over as the owner's
/// own list, not a copy: a channel closed with 60,000 unacked used to copy them twice, with a
/// page fault per page, before the first went back (12 ms in one command).
pub type Requeues = Box<dyn Iterator<Item = (QueueId, QueuedMessage)>>;

/// Messages taken out of a queue that was purged or deleted, dropped a batch at a time.
pub(super) struct Purged {
    messages: Messages,
    store_id: Option<u32>,
}

impl Purged {
    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Drops up to `max` messages, acking their store records; returns how many it dropped.
    pub(super) fn drop_some(&mut self, store: &mut Store, max: usize) -> usize {
        self.messages.drop_some(store, self.store_id, max)
    }
}

pub(super) struct Queue {
    pub(super) vhost: VhostId,
    pub(super) name: Box<[u8]>,
    pub(super) durable: bool,
    /// Number naming the queue in the message store; None for queues whose messages never
    /// touch the disk (non-durable or exclusive, or no store).
    pub(super) store_id: Option<u32>,
    pub(super) auto_delete: bool,
    /// The connection of an exclusive queue.
    pub(super) owner: Option<ConnId>,
    /// Declaration arguments as a raw field table, for equivalence checks and storage.
    pub(super) arguments: Box<[u8]>,
    /// The same arguments, parsed: what the queue does beyond FIFO.
    pub(super) args: QueueArgs,
    messages: Messages,
    /// Ready messages and bytes kept in memory before new ones go to disk (durable queues):
    /// coney's window, or less if the arguments ask for less.
    window: (usize, usize),
    consumers: Rotation,
    /// Set once a consumer has subscribed: auto-delete applies only after that (RabbitMQ).
    had_consumers: bool,
    /// Some consumer holds exclusive access.
    exclusive_consumer: bool,
    /// Already on the broker's list of queues that may deliver.
    pub(super) on_ready_list: bool,
    /// Messages here may have a deadline (x-message-ttl, or one arrived with an expiration),
    /// so the head is checked before it is taken. Plain queues never look at the clock.
    pub(super) may_expire: bool,
    /// When this queue's head-expiry entry in the broker's timer heap is due; `NEVER` if it
    /// has none. Entries that do not match are stale and skipped.
    pub(super) expiry_due: u64,
    /// x-expires: when the unused queue is deleted (`NEVER` while consumers hold it).
    pub(super) lease_until: u64,
    /// When this queue's lease entry in the timer heap is due; `NEVER` if it has none.
    pub(super) lease_due: u64,
    /// Already on the broker's list of queues to trim to their length limit.
    pub(super) on_overfull_list: bool,
    /// Delivered or got with an ack owed, not yet settled (messages_unacknowledged).
    pub(super) unacked: u64,
    /// Publisher flow: the queue's memory went over the high mark and has not yet come back
    /// under the low one (see `flow_pressure`).
    flow_over: bool,
    /// The policy applied to the queue (its definition is merged into `args`).
    pub(super) policy: Option<std::rc::Rc<super::policy::Policy>>,
    /// What happened to its messages (the API's per-queue message_stats), one add per event.
    pub(super) stats: super::counters::Sampled<super::counters::MessageCounters>,
}

/// Ready messages and bytes a durable queue keeps in memory: coney's window, or less if the
/// arguments ask for less.
fn window_of(args: &QueueArgs) -> (usize, usize) {
    (
        args.in_memory_max.map_or(QUEUE_WINDOW_MESSAGES_MAX, |n| {
            n.min(QUEUE_WINDOW_MESSAGES_MAX as u64) as usize
        }),
        args.in_memory_bytes_max
            .map_or(QUEUE_WINDOW_BYTES_MAX, |n| {
                n.min(QUEUE_WINDOW_BYTES_MAX as u64) as usize
            }),
    )
}

impl Queue {
    pub(super) fn new(
        vhost: VhostId,
        name: Box<[u8]>,
        durable: bool,
        auto_delete: bool,
        owner: Option<ConnId>,
        arguments: Box<[u8]>,
        args: QueueArgs,
    ) -> Self {
        Queue {
            vhost,
            name,
            durable,
            store_id: None,
            auto_delete,
            owner,
            arguments,
            messages: Messages::new(args.max_priority),
            window: window_of(&args),
            may_expire: args.message_ttl_ms.is_some(),
            consumers: Rotation::new(args.single_active_consumer),
            args,
            had_consumers: false,
            exclusive_consumer: false,
            on_ready_list: false,
            expiry_due: NEVER,
            lease_until: NEVER,
            lease_due: NEVER,
            on_overfull_list: false,
            unacked: 0,
            flow_over: false,
            policy: None,
            stats: Default::default(),
        }
    }

    /// Replaces the arguments the queue acts on (a policy was applied, changed or cleared:
    /// `policies.rs`), with what they set up at declare: the in-memory window, and whether
    /// heads are checked for expiry (once on, it stays on: messages queued meanwhile keep
    /// their deadlines).
    pub(super) fn set_effective_args(&mut self, args: QueueArgs) {
        self.window = window_of(&args);
        self.may_expire |= args.message_ttl_ms.is_some();
        self.args = args;
    }

    pub(super) fn unacked_count(&self) -> u64 {
        self.unacked
    }

    pub(super) fn message_count(&self) -> usize {
        self.messages.len()
    }

    pub(super) fn is_quorum(&self) -> bool {
        self.args.queue_type == QueueType::Quorum
    }

    /// Whether a new message of `priority` must go to disk instead of memory: the queue is
    /// durable and its in-memory window is full (or that level is already paging).
    pub(super) fn wants_paging(&self, priority: u8) -> bool {
        self.messages
            .wants_paging(self.store_id.is_some(), self.window, priority)
    }

    /// Whether publishers into this queue should be paced: it has consumers (pacing matches
    /// publishers to them; a queue nobody consumes is a backlog, left to the memory alarm and
    /// to paging) and its memory went over the high mark without yet falling under the low
    /// one (hysteresis, so publishers are not paused and resumed every message).
    pub(super) fn flow_pressure(&mut self) -> bool {
        let bytes = self.messages.memory_estimate();
        if bytes >= QUEUE_FLOW_HIGH_BYTES {
            self.flow_over = true;
        } else if bytes < QUEUE_FLOW_LOW_BYTES {
            self.flow_over = false;
        }
        self.flow_over && self.has_consumers()
    }

    /// Whether the queue has a length limit (checked on every enqueue).
    pub(super) fn is_limited(&self) -> bool {
        self.args.max_length.is_some() || self.args.max_length_bytes.is_some()
    }

    /// A length limit with x-overflow reject-publish(-dlx): publishes may be refused.
    pub(super) fn may_refuse(&self) -> bool {
        self.is_limited() && self.args.overflow != Overflow::DropHead
    }

    /// Ready messages beyond x-max-length or x-max-length-bytes.
    pub(super) fn over_limit(&self) -> bool {
        self.args
            .max_length
            .is_some_and(|max| self.messages.len() as u64 > max)
            || self
                .args
                .max_length_bytes
                .is_some_and(|max| self.messages.body_bytes() > max)
    }

    /// x-overflow reject-publish(-dlx): a message of `body_len` bytes would not fit.
    pub(super) fn refuses(&self, body_len: u64) -> bool {
        self.args.overflow != Overflow::DropHead
            && (self
                .args
                .max_length
                .is_some_and(|max| self.messages.len() as u64 + 1 > max)
                || self
                    .args
                    .max_length_bytes
                    .is_some_and(|max| self.messages.body_bytes() + body_len > max))
    }

    /// Appends a message that stays on disk.
    pub(super) fn push_paged(&mut self, priority: u8, r: PagedRef) {
        self.messages.push_paged(priority, r);
    }

    /// Room for `n` recovered messages, so recovery allocates exactly what they take.
    pub(super) fn reserve_paged(&mut self, n: usize) {
        self.messages.reserve_paged(n);
    }

    /// Appends a message found in the store at start. `origin` (the id it was first
    /// published with) orders the queue: the store hands messages over in file order, and
    /// compaction may have moved older ones into newer files.
    pub(super) fn push_recovered(&mut self, priority: u8, r: PagedRef, origin: u64) {
        self.messages.push_recovered(priority, r, origin);
    }

    /// Every recovered message is in: puts them in publish order.
    pub(super) fn recovered(&mut self) {
        self.messages.recovered();
    }

    /// Appends a newly routed message.
    #[inline(always)]
    pub(super) fn push(&mut self, m: QueuedMessage) {
        self.messages.push(m);
    }

    /// Store references of ready messages delivered before (for a clean stop).
    pub(super) fn redelivered_refs(&self, out: &mut Vec<(u64, u32)>) {
        self.messages.redelivered_refs(self.store_id, out);
    }

    /// The deadline of the message that would be taken next.
    pub(super) fn head_expires_at(&self) -> Option<u64> {
        self.messages.head_expires_at()
    }

    /// Takes the next ready message, reading the next batch from disk first if needed.
    #[inline(always)]
    pub(super) fn pop(&mut self, store: &mut Store) -> Option<QueuedMessage> {
        self.messages.pop(store, self.store_id)
    }

    /// Takes the next ready message to drop it: one only on disk is not read back.
    pub(super) fn take_head(&mut self, store: &mut Store) -> Option<Head> {
        self.messages.take_head(store, self.store_id)
    }

    /// Puts back a message `pop` just returned that no one took: first again, unchanged.
    pub(super) fn unpop(&mut self, m: QueuedMessage) {
        self.messages.unpop(m);
    }

    /// Puts a delivered message back at its original position, marked redelivered; a
    /// quorum queue counts the return.
    pub(super) fn requeue(&mut self, mut m: QueuedMessage) {
        m.redelivered = true;
        self.messages.requeue(m);
    }

    /// Counts one more return of `m` to a quorum queue; true if that is past its
    /// x-delivery-limit (the message is then dead-lettered instead of requeued).
    pub(super) fn count_return(&self, m: &mut QueuedMessage) -> bool {
        if !self.is_quorum() {
            return false;
        }
        m.delivery_count = m.delivery_count.saturating_add(1);
        self.args
            .delivery_limit
            .is_some_and(|limit| m.delivery_count as i64 > limit)
    }

    /// Takes every ready message out at once (the queue is empty afterwards, whatever it held);
    /// dropping them, and acking their store records, is left to `Purged::drop_some`.
    pub(super) fn take_messages(&mut self) -> Purged {
        Purged {
            messages: self.messages.take_all(),
            store_id: self.store_id,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(b: &str) -> QueuedMessage {
        QueuedMessage::new(
            Message::new(b"", b"q", &[0, 0], b.as_bytes(), false),
            NEVER,
            None,
        )
    }

    fn queue(args: QueueArgs) -> Queue {
        let mut vhosts: crate::broker::handle::Registry<VhostId, ()> = Default::default();
        let vhost = vhosts.insert(());
        Queue::new(
            vhost,
            b"q"[..].into(),
            false,
            false,
            None,
            Box::new([]),
            args,
        )
    }

    #[test]
    fn requeued_messages_return_to_their_original_place() {
        let mut q = queue(QueueArgs::default());
        let mut store = Store::disabled();
        for b in ["1", "2", "3", "4"] {
            q.push(msg(b));
        }
        let m1 = q.pop(&mut store).expect("1");
        let m2 = q.pop(&mut store).expect("2");
        let m3 = q.pop(&mut store).expect("3");
        q.requeue(m3);
        q.requeue(m1);
        q.push(msg("5"));
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
        assert_eq!(q.messages.in_memory_bytes(), 0);
    }

    /// A message with a priority property (basic properties: flags word, priority octet).
    fn prio(b: &str, p: u8) -> QueuedMessage {
        let m = Message::new(b"", b"q", &[0x08, 0x00, p], b.as_bytes(), false);
        QueuedMessage::new(m, NEVER, None)
    }

    #[test]
    fn recovered_messages_are_put_back_in_publish_order_within_each_level() {
        use crate::store::Location;
        let mut q = queue(QueueArgs {
            max_priority: Some(2),
            ..Default::default()
        });
        q.store_id = Some(1);
        // File order as compaction leaves it: copies of older messages in a newer file.
        for (origin, p) in [(3, 0), (1, 0), (5, 2), (2, 0), (4, 2)] {
            let r = PagedRef {
                loc: Location {
                    msg_id: origin,
                    offset: 0,
                    len: 1,
                },
                expires_at: NEVER,
                body_len: 1,
                redelivered: false,
            };
            q.push_recovered(p, r, origin);
        }
        q.recovered();
        let mut store = Store::disabled();
        let mut order = Vec::new();
        while let Some(Head::OnDisk(r)) = q.take_head(&mut store) {
            order.push(r.msg_id);
        }
        assert_eq!(order, [4, 5, 1, 2, 3]);
    }

    #[test]
    fn lazy_mode_keeps_no_ready_message_of_a_durable_queue_in_memory() {
        let mut lazy = queue(QueueArgs {
            in_memory_max: Some(0),
            ..Default::default()
        });
        assert!(!lazy.wants_paging(0), "a queue without a store cannot page");
        lazy.store_id = Some(1);
        assert!(lazy.wants_paging(0));
        let mut plain = queue(QueueArgs::default());
        plain.store_id = Some(2);
        assert!(!plain.wants_paging(0), "the default window holds it");
    }

    #[test]
    fn priority_levels_give_highest_first_and_fifo_within_one() {
        let mut q = queue(QueueArgs {
            max_priority: Some(5),
            max_length_bytes: Some(100),
            ..Default::default()
        });
        let mut store = Store::disabled();
        for (b, p) in [("a", 1), ("b", 0), ("c", 5), ("d", 200), ("e", 3), ("f", 5)] {
            q.push(prio(b, p));
        }
        let first = q.pop(&mut store).expect("c");
        q.push(prio("g", 5));
        q.requeue(first);
        let order: Vec<_> = std::iter::from_fn(|| q.pop(&mut store))
            .map(|m| String::from_utf8_lossy(m.msg.body()).into_owned())
            .collect();
        assert_eq!(order, ["c", "d", "f", "g", "e", "a", "b"]);
        assert_eq!((q.message_count(), q.messages.body_bytes()), (0, 0));
    }
}
