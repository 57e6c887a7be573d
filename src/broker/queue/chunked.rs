//! A double-ended queue kept in chunks of at most `QUEUE_CHUNK_MESSAGES`, for a queue's
//! messages in memory. A `VecDeque` doubles by copying all it holds: a queue growing past
//! 250,000 messages copied 20 MiB in one publish, and 300 queues reached by one topic publish
//! doubled together in it (10 to 20 ms of a loop turn; tests/hostile, messages and topic).
//! Here no push, pop or insert moves more than one chunk, and a chunk drained from either end
//! is freed at once, so a queue's memory follows its length.

use crate::limits::QUEUE_CHUNK_MESSAGES;
use std::collections::VecDeque;

/// The chunks, in order. Only the sole chunk may be empty: a queue that empties and fills
/// again keeps its one allocation.
pub(crate) struct Chunked<T> {
    chunks: VecDeque<VecDeque<T>>,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: VecDeque::new(),
        }
    }
}

impl<T> Chunked<T> {
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.front().is_none_or(VecDeque::is_empty)
    }

    pub(crate) fn front(&self) -> Option<&T> {
        self.chunks.front()?.front()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    #[inline]
    pub(crate) fn push_back(&mut self, v: T) {
        match self.chunks.back_mut() {
            Some(c) if c.len() < QUEUE_CHUNK_MESSAGES => c.push_back(v),
            _ => self.new_chunk_back(v),
        }
    }

    #[inline(never)]
    fn new_chunk_back(&mut self, v: T) {
        // The first chunk grows as a VecDeque does, so a small queue stays small.
        let mut c = match self.chunks.is_empty() {
            true => VecDeque::new(),
            false => VecDeque::with_capacity(QUEUE_CHUNK_MESSAGES),
        };
        c.push_back(v);
        self.chunks.push_back(c);
    }

    pub(crate) fn push_front(&mut self, v: T) {
        match self.chunks.front_mut() {
            Some(c) if c.len() < QUEUE_CHUNK_MESSAGES => c.push_front(v),
            _ => {
                let mut c = VecDeque::with_capacity(QUEUE_CHUNK_MESSAGES);
                c.push_front(v);
                self.chunks.push_front(c);
            }
        }
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let c = self.chunks.front_mut()?;
        let v = c.pop_front();
        if c.is_empty() && self.chunks.len() > 1 {
            self.chunks.pop_front();
        }
        v
    }

    pub(crate) fn pop_back(&mut self) -> Option<T> {
        let c = self.chunks.back_mut()?;
        let v = c.pop_back();
        if c.is_empty() && self.chunks.len() > 1 {
            self.chunks.pop_back();
        }
        v
    }

    /// Inserts `v` before the first element for which `before` is false (the elements are
    /// ordered so that `before` holds for a prefix, as for `partition_point`). A full chunk is
    /// split in two.
    pub(crate) fn insert_ordered(&mut self, v: T, before: impl Fn(&T) -> bool) {
        // The chunk holding the first element `before` rejects: the first whose last does.
        let i = self
            .chunks
            .partition_point(|c| c.back().is_none_or(|last| before(last)));
        let Some(c) = self.chunks.get_mut(i) else {
            return self.push_back(v);
        };
        if c.len() >= QUEUE_CHUNK_MESSAGES {
            let tail = c.split_off(c.len() / 2);
            self.chunks.insert(i + 1, tail);
            return self.insert_ordered(v, before);
        }
        let at = c.partition_point(|x| before(x));
        c.insert(at, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(c: &Chunked<usize>) -> Vec<usize> {
        c.iter().copied().collect()
    }

    /// Pushes and pops at both ends keep the order across many chunks, drained chunks go,
    /// and ordered inserts land where `partition_point` says, splitting full chunks.
    #[test]
    fn order_is_kept_across_chunks() {
        let n = QUEUE_CHUNK_MESSAGES * 5 + 7;
        let mut c = Chunked::default();
        assert!(c.is_empty() && c.front().is_none());
        for i in 0..n {
            c.push_back(2 * i);
        }
        assert_eq!(all(&c), (0..n).map(|i| 2 * i).collect::<Vec<_>>());
        assert_eq!(c.chunks.len(), 6);
        for i in 0..QUEUE_CHUNK_MESSAGES + 1 {
            assert_eq!(c.pop_front(), Some(2 * i));
        }
        assert_eq!(c.chunks.len(), 5, "a drained chunk is freed");
        // Odd values go between the even ones; a full chunk splits.
        let firsts: Vec<usize> = (0..50)
            .map(|i| 2 * (QUEUE_CHUNK_MESSAGES + 1 + i) + 1)
            .collect();
        for &v in firsts.iter().rev() {
            c.insert_ordered(v, |x| *x < v);
        }
        let got = all(&c);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "still sorted");
        assert_eq!(got.len(), n - QUEUE_CHUNK_MESSAGES - 1 + 50);
        c.insert_ordered(usize::MAX, |x| *x < usize::MAX);
        assert_eq!(c.pop_back(), Some(usize::MAX));
        c.push_front(0);
        assert_eq!(c.front(), Some(&0));
        while c.pop_back().is_some() {}
        assert!(c.is_empty());
        assert_eq!(c.chunks.len(), 1, "the sole chunk stays for reuse");
        c.push_back(1);
        assert_eq!(c.pop_front(), Some(1));
    }
}
