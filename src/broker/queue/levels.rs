//! A queue's ready messages: one level for a plain queue, one level per priority in use for a
//! queue with x-max-priority (highest first, FIFO within a level). Each level keeps its oldest
//! messages in memory and, past the queue's window, the rest only on disk, so a priority
//! backlog larger than memory keeps its order. Counters cover every level: messages, body
//! bytes (x-max-length-bytes), and what is in memory (the window).

use super::chunked::Chunked;
use super::QueuedMessage;
use crate::limits::{
    PAGE_IN_BATCH_MESSAGES, QUEUED_MESSAGE_OVERHEAD_BYTES, QUEUE_WINDOW_BYTES_MAX,
};
use crate::store::{Location, Store, StoreRef};
use log::error;
use std::collections::VecDeque;

/// A deadline that never comes.
pub(crate) const NEVER: u64 = u64::MAX;

/// A ready message that is only on disk: what a queue keeps per message beyond its window.
/// Its position in the queue's order is not stored: a level's paged messages have consecutive
/// sequence numbers ending just before the level's `next_seq`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PagedRef {
    pub(crate) loc: Location,
    /// Absolute deadline (ms since the epoch), `NEVER` without a TTL.
    pub(crate) expires_at: u64,
    pub(crate) body_len: u32,
    pub(crate) redelivered: bool,
}

const _: () = assert!(std::mem::size_of::<PagedRef>() <= 32);

/// The messages of one priority, in order: those in memory, then those only on disk.
#[derive(Default)]
struct Level {
    ready: Chunked<QueuedMessage>,
    paged: VecDeque<PagedRef>,
    next_seq: u64,
    /// While recovering: the id each of `paged` was first published with, which orders them
    /// (compaction may have moved older messages into newer files). Empty otherwise.
    origins: Vec<u64>,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.paged.is_empty()
    }
}

/// Levels 1..=max of a priority queue, allocated when first used, with a bitmap of the
/// non-empty ones so the highest is found in constant time.
struct Higher {
    levels: Vec<Option<Box<Level>>>,
    nonempty: [u64; 4],
}

impl Higher {
    fn highest(&self) -> Option<u8> {
        (0..4).rev().find_map(|w| {
            let bits = self.nonempty[w];
            (bits != 0).then(|| (w * 64 + 63 - bits.leading_zeros() as usize) as u8)
        })
    }
    fn mark(&mut self, p: u8, nonempty: bool) {
        let (w, b) = (p as usize / 64, p as usize % 64);
        if nonempty {
            self.nonempty[w] |= 1 << b;
        } else {
            self.nonempty[w] &= !(1 << b);
        }
    }
}

/// What `Messages::take_head` found.
pub(crate) enum Head {
    Message(QueuedMessage),
    /// A paged message taken without reading it back: its store reference.
    OnDisk(StoreRef),
}

/// Every ready message of a queue.
#[derive(Default)]
pub(crate) struct Messages {
    /// Level 0, the only one of a plain queue.
    base: Level,
    /// Levels above 0, for a queue with x-max-priority above 0.
    higher: Option<Box<Higher>>,
    max_priority: u8,
    len: usize,
    /// Kept for every queue: a policy may give any queue x-max-length-bytes later.
    body_bytes: u64,
    in_memory: usize,
    in_memory_bytes: usize,
}

impl Messages {
    pub(crate) fn new(max_priority: Option<u8>) -> Self {
        let max_priority = max_priority.unwrap_or(0);
        let higher = (max_priority > 0).then(|| {
            Box::new(Higher {
                levels: (0..max_priority).map(|_| None).collect(),
                nonempty: [0; 4],
            })
        });
        Messages {
            higher,
            max_priority,
            ..Default::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Body bytes of every ready message (what x-max-length-bytes limits).
    pub(crate) fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// The level a message of `priority` goes to: above the maximum counts as the maximum.
    fn level_of(&self, priority: u8) -> u8 {
        priority.min(self.max_priority)
    }

    fn level(&self, p: u8) -> Option<&Level> {
        match (&self.higher, p) {
            (_, 0) => Some(&self.base),
            (Some(h), p) => h.levels[p as usize - 1].as_deref(),
            (None, _) => None,
        }
    }

    fn level_mut(&mut self, p: u8) -> &mut Level {
        match (&mut self.higher, p) {
            (Some(h), p) if p > 0 => h.levels[p as usize - 1].get_or_insert_with(Box::default),
            _ => &mut self.base,
        }
    }

    /// Keeps the non-empty bitmap right after level `p` changed.
    fn touched(&mut self, p: u8) {
        if p == 0 {
            return;
        }
        let nonempty = self.level(p).is_some_and(|l| !l.is_empty());
        if let Some(h) = self.higher.as_deref_mut() {
            h.mark(p, nonempty);
        }
    }

    /// The level the next message comes from.
    fn head_level(&self) -> Option<u8> {
        if let Some(p) = self.higher.as_deref().and_then(Higher::highest) {
            return Some(p);
        }
        (!self.base.is_empty()).then_some(0)
    }

    /// Whether a new message of `priority` must go to disk instead of memory: the queue can
    /// page (`paging`) and its window (`window`: messages, bytes) is full, or that level
    /// already pages (order is kept).
    pub(crate) fn wants_paging(&self, paging: bool, window: (usize, usize), priority: u8) -> bool {
        paging
            && (self.in_memory >= window.0
                || self.in_memory_bytes >= window.1
                || self
                    .level(self.level_of(priority))
                    .is_some_and(|l| !l.paged.is_empty()))
    }

    /// Appends a message, in memory.
    #[inline(always)]
    pub(crate) fn push(&mut self, mut m: QueuedMessage) {
        self.count_in(&m);
        if self.higher.is_none() {
            m.seq = self.base.next_seq;
            self.base.next_seq += 1;
            self.base.ready.push_back(m);
            return;
        }
        self.push_level(m);
    }

    #[inline(never)]
    fn push_level(&mut self, mut m: QueuedMessage) {
        let p = self.level_of(m.msg.priority());
        let level = self.level_mut(p);
        m.seq = level.next_seq;
        level.next_seq += 1;
        level.ready.push_back(m);
        self.touched(p);
    }

    /// Appends a message that stays on disk.
    pub(crate) fn push_paged(&mut self, priority: u8, r: PagedRef) {
        let p = self.level_of(priority);
        self.count_paged(&r, 1);
        let level = self.level_mut(p);
        level.next_seq += 1;
        level.paged.push_back(r);
        self.touched(p);
    }

    /// Room for `n` recovered messages of a plain queue (a priority queue's levels grow).
    pub(crate) fn reserve_paged(&mut self, n: usize) {
        if self.higher.is_none() {
            self.base.paged.reserve_exact(n);
            self.base.origins.reserve_exact(n);
        }
    }

    /// Appends a message found in the store at start (see `recovered`).
    pub(crate) fn push_recovered(&mut self, priority: u8, r: PagedRef, origin: u64) {
        self.push_paged(priority, r);
        let p = self.level_of(priority);
        self.level_mut(p).origins.push(origin);
    }

    /// Every recovered message is in: each level's paged messages are put in publish order.
    pub(crate) fn recovered(&mut self) {
        for level in self.levels_mut() {
            let origins = std::mem::take(&mut level.origins);
            debug_assert_eq!(origins.len(), level.paged.len());
            if origins.is_sorted() {
                continue;
            }
            let mut pairs: Vec<(u64, PagedRef)> =
                origins.into_iter().zip(level.paged.drain(..)).collect();
            pairs.sort_unstable_by_key(|p| p.0);
            level.paged.extend(pairs.into_iter().map(|p| p.1));
        }
    }

    #[inline]
    fn count_in(&mut self, m: &QueuedMessage) {
        self.len += 1;
        self.body_bytes += m.msg.body_len();
        self.in_memory += 1;
        self.in_memory_bytes += m.msg.size();
    }

    #[inline]
    fn count_out(&mut self, m: &QueuedMessage) {
        self.len -= 1;
        self.body_bytes -= m.msg.body_len();
        self.in_memory -= 1;
        self.in_memory_bytes -= m.msg.size();
    }

    #[inline]
    fn count_paged(&mut self, r: &PagedRef, n: i64) {
        self.len = (self.len as i64 + n) as usize;
        self.body_bytes = (self.body_bytes as i64 + n * r.body_len as i64) as u64;
    }

    /// The deadline of the message `pop` would return next.
    pub(crate) fn head_expires_at(&self) -> Option<u64> {
        let l = self.level(self.head_level()?)?;
        match l.ready.front() {
            Some(m) => Some(m.expires_at),
            None => l.paged.front().map(|r| r.expires_at),
        }
    }

    /// Takes the next message (highest priority, oldest), reading a batch back from disk
    /// first if its level has none in memory. `store_id` is the queue's number in the store.
    #[inline(always)]
    pub(crate) fn pop(
        &mut self,
        store: &mut Store,
        store_id: Option<u32>,
    ) -> Option<QueuedMessage> {
        if self.higher.is_none() {
            if let Some(m) = self.base.ready.pop_front() {
                self.count_out(&m);
                return Some(m);
            }
        }
        self.pop_level(store, store_id)
    }

    /// `pop` from the highest non-empty level, paging in as needed.
    #[inline(never)]
    fn pop_level(&mut self, store: &mut Store, store_id: Option<u32>) -> Option<QueuedMessage> {
        loop {
            let p = self.head_level()?;
            if self.level(p).is_some_and(|l| l.ready.is_empty()) {
                // Only a queue in the store has messages on disk.
                store_id?;
                // A message that cannot be read back is dropped, so this always progresses.
                self.page_in(p, store, store_id);
            }
            let m = self.level_mut(p).ready.pop_front();
            if let Some(m) = &m {
                self.count_out(m);
            }
            self.touched(p);
            if m.is_some() {
                return m;
            }
        }
    }

    /// Takes the next message; if it is only on disk, without reading it (it is dropped).
    pub(crate) fn take_head(&mut self, store: &mut Store, store_id: Option<u32>) -> Option<Head> {
        let p = self.head_level()?;
        let level = self.level_mut(p);
        let on_disk = match (level.ready.is_empty(), store_id) {
            (true, Some(queue)) => level.paged.pop_front().map(|r| (r, queue)),
            _ => None,
        };
        if let Some((r, queue)) = on_disk {
            self.count_paged(&r, -1);
            self.touched(p);
            return Some(Head::OnDisk(StoreRef::at(r.loc, queue)));
        }
        self.pop(store, store_id).map(Head::Message)
    }

    /// Reads the next batch of level `p`'s paged messages into memory.
    #[inline(never)]
    fn page_in(&mut self, p: u8, store: &mut Store, store_id: Option<u32>) {
        let Some(queue) = store_id else { return };
        for _ in 0..PAGE_IN_BATCH_MESSAGES {
            let level = self.level_mut(p);
            let seq = level.next_seq - level.paged.len() as u64;
            let Some(r) = level.paged.pop_front() else {
                break;
            };
            let store_ref = StoreRef::at(r.loc, queue);
            self.count_paged(&r, -1);
            match store.read(r.loc) {
                Ok(msg) => {
                    let mut m = QueuedMessage::new(msg, r.expires_at, Some(store_ref));
                    m.seq = seq;
                    m.redelivered = r.redelivered;
                    self.count_in(&m);
                    // Paged messages are newer than any in memory, so order is kept.
                    self.level_mut(p).ready.push_back(m);
                }
                Err(e) => {
                    error!("cannot read a message back from the store: {e}; dropping it");
                    store.ack(store_ref);
                }
            }
            if self.in_memory_bytes >= QUEUE_WINDOW_BYTES_MAX {
                break;
            }
        }
        self.touched(p);
    }

    /// Puts back a message `pop` just returned that no one took: first again, unchanged.
    pub(crate) fn unpop(&mut self, m: QueuedMessage) {
        let p = self.level_of(m.msg.priority());
        self.count_in(&m);
        self.level_mut(p).ready.push_front(m);
        self.touched(p);
    }

    /// Puts a delivered message back at its original position within its level.
    pub(crate) fn requeue(&mut self, m: QueuedMessage) {
        let p = self.level_of(m.msg.priority());
        self.count_in(&m);
        let level = self.level_mut(p);
        // Requeued messages are usually older than everything ready, so this is near the front.
        let seq = m.seq;
        level.ready.insert_ordered(m, |r| r.seq < seq);
        self.touched(p);
    }

    fn levels_mut(&mut self) -> impl Iterator<Item = &mut Level> {
        let higher = self.higher.as_deref_mut().into_iter();
        std::iter::once(&mut self.base)
            .chain(higher.flat_map(|h| h.levels.iter_mut().filter_map(|l| l.as_deref_mut())))
    }

    fn levels(&self) -> impl Iterator<Item = &Level> {
        let higher = self.higher.as_deref().into_iter();
        std::iter::once(&self.base)
            .chain(higher.flat_map(|h| h.levels.iter().filter_map(|l| l.as_deref())))
    }

    /// Takes every ready message out into a `Messages` of their own, for the cleanup to drop
    /// a batch at a time (`drop_some`); this one is empty afterwards and keeps numbering
    /// where it was, so messages requeued later still find their place.
    pub(crate) fn take_all(&mut self) -> Messages {
        let mut out = Messages {
            len: self.len,
            ..Default::default()
        };
        let take = |l: &mut Level| Level {
            ready: std::mem::take(&mut l.ready),
            paged: std::mem::take(&mut l.paged),
            ..Default::default()
        };
        out.base = take(&mut self.base);
        if let Some(h) = self.higher.as_deref_mut() {
            let levels = h
                .levels
                .iter_mut()
                .map(|l| l.as_deref_mut().map(|l| Box::new(take(l))))
                .collect();
            out.higher = Some(Box::new(Higher {
                levels,
                nonempty: std::mem::take(&mut h.nonempty),
            }));
        }
        self.len = 0;
        self.body_bytes = 0;
        self.in_memory = 0;
        self.in_memory_bytes = 0;
        out
    }

    /// Drops up to `max` messages of a set `take_all` made, the newest first, acking their
    /// store records (`store_id`: the queue's number in the store); returns how many. Only
    /// the count of such a set is kept.
    pub(crate) fn drop_some(
        &mut self,
        store: &mut Store,
        store_id: Option<u32>,
        max: usize,
    ) -> usize {
        let mut n = 0;
        for level in self.levels_mut() {
            while n < max {
                let Some(p) = level.paged.pop_back() else {
                    break;
                };
                if let Some(queue) = store_id {
                    store.ack(StoreRef::at(p.loc, queue));
                }
                n += 1;
            }
            while n < max {
                let Some(m) = level.ready.pop_back() else {
                    break;
                };
                if let Some(r) = m.store() {
                    store.ack(r);
                }
                n += 1;
            }
        }
        self.len -= n;
        n
    }

    /// Store references of ready messages delivered before (for a clean stop).
    pub(crate) fn redelivered_refs(&self, store_id: Option<u32>, out: &mut Vec<(u64, u32)>) {
        let Some(queue) = store_id else { return };
        for level in self.levels() {
            out.extend(
                level
                    .ready
                    .iter()
                    .filter(|m| m.redelivered)
                    .filter_map(|m| m.store().map(|r| (r.msg_id, r.queue))),
            );
            out.extend(
                level
                    .paged
                    .iter()
                    .filter(|p| p.redelivered)
                    .map(|p| (p.loc.msg_id, queue)),
            );
        }
    }

    /// Bytes held in memory (tests).
    #[cfg(test)]
    pub(crate) fn in_memory_bytes(&self) -> usize {
        self.in_memory_bytes
    }

    /// What the ready messages cost in memory, roughly: the bytes of those in memory with
    /// their bookkeeping, and a location for each one only on disk (publisher flow).
    pub(crate) fn memory_estimate(&self) -> usize {
        self.in_memory_bytes
            + self.in_memory * QUEUED_MESSAGE_OVERHEAD_BYTES
            + (self.len - self.in_memory) * std::mem::size_of::<PagedRef>()
    }
}
