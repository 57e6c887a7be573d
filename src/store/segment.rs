//! What the log knows about one segment file in memory: which of its messages are still held
//! (one bit per message; the remaining queues too for a message routed to several), how many
//! bytes those take, and which older segments its ACK records refer to. No I/O: `log.rs`
//! decides what the numbers mean.

use std::collections::HashMap;

pub struct Segment {
    /// Bytes of the file, including what is appended but not yet written.
    pub size: u64,
    /// Messages some queue still holds.
    pub live_count: u64,
    /// Bytes of their records.
    pub live_bytes: u64,
    /// Compaction found damage in this file; it is left as it is.
    pub no_compact: bool,
    /// Bit `index` is set while message `index` of this segment is held.
    bits: Vec<u64>,
    /// The queues still holding a live message that was routed to more than one.
    multi: HashMap<u32, Vec<u32>>,
    /// (older segment, ACK or RELOCATED records here that name a message there). While such a
    /// segment exists, this one must too, or the messages those records settled come back.
    deps: Vec<(u32, u32)>,
}

/// Who holds a live message.
pub enum Holders<'a> {
    /// The one queue its record names.
    One,
    Many(&'a [u32]),
}

impl Segment {
    pub fn new(size: u64) -> Self {
        Segment {
            size,
            live_count: 0,
            live_bytes: 0,
            no_compact: false,
            bits: Vec::new(),
            multi: HashMap::new(),
            deps: Vec::new(),
        }
    }

    /// Message `index` is held by `queues` (at least one). `many` says the record names more
    /// than one queue, so which of them still hold it must be kept.
    pub fn hold(&mut self, index: u32, queues: &[u32], many: bool) {
        debug_assert!(!queues.is_empty());
        let (w, b) = (index as usize / 64, index % 64);
        if self.bits.len() <= w {
            self.bits.resize(w + 1, 0);
        }
        if self.bits[w] & (1 << b) == 0 {
            self.live_count += 1;
        }
        self.bits[w] |= 1 << b;
        if many {
            self.multi.insert(index, queues.to_vec());
        } else {
            self.multi.remove(&index);
        }
    }

    pub fn is_live(&self, index: u32) -> bool {
        self.bits
            .get(index as usize / 64)
            .is_some_and(|w| w & (1 << (index % 64)) != 0)
    }

    pub fn holders(&self, index: u32) -> Option<Holders<'_>> {
        if !self.is_live(index) {
            return None;
        }
        Some(match self.multi.get(&index) {
            Some(q) => Holders::Many(q),
            None => Holders::One,
        })
    }

    /// `queue` let go of message `index`. Returns None if it did not hold it, else whether the
    /// message is now dead.
    pub fn release(&mut self, index: u32, queue: u32) -> Option<bool> {
        if !self.is_live(index) {
            return None;
        }
        if let Some(qs) = self.multi.get_mut(&index) {
            let at = qs.iter().position(|&q| q == queue)?;
            qs.swap_remove(at);
            if !qs.is_empty() {
                return Some(false);
            }
            self.multi.remove(&index);
        }
        self.clear(index);
        Some(true)
    }

    /// Removes a live message whatever holds it (it was copied elsewhere); returns the queues
    /// that held it if there were several.
    pub fn take(&mut self, index: u32) -> Option<Option<Vec<u32>>> {
        if !self.is_live(index) {
            return None;
        }
        let many = self.multi.remove(&index);
        self.clear(index);
        Some(many)
    }

    fn clear(&mut self, index: u32) {
        self.bits[index as usize / 64] &= !(1 << (index % 64));
        self.live_count -= 1;
        if self.live_count == 0 {
            self.bits = Vec::new();
        }
    }

    pub fn add_dep(&mut self, target: u32) {
        match self.deps.binary_search_by_key(&target, |d| d.0) {
            Ok(i) => self.deps[i].1 += 1,
            Err(i) => self.deps.insert(i, (target, 1)),
        }
    }

    pub fn deps(&self) -> &[(u32, u32)] {
        &self.deps
    }

    /// Forgets dependencies on segments that are gone.
    pub fn prune_deps(&mut self, exists: impl Fn(u32) -> bool) {
        self.deps.retain(|d| exists(d.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_dies_with_its_last_queue() {
        let mut s = Segment::new(0);
        s.hold(3, &[7], false);
        s.hold(70, &[1, 2], true);
        assert_eq!(s.live_count, 2);
        assert!(s.is_live(3) && s.is_live(70) && !s.is_live(4));
        assert_eq!(s.release(70, 9), None, "queue 9 never held it");
        assert_eq!(s.release(70, 1), Some(false));
        assert!(matches!(s.holders(70), Some(Holders::Many(&[2]))));
        assert_eq!(s.release(70, 2), Some(true));
        assert_eq!(s.release(70, 2), None, "a second ack changes nothing");
        assert_eq!(s.take(3), Some(None));
        assert_eq!(s.live_count, 0);
        assert!(!s.is_live(3));
    }

    #[test]
    fn dependencies_are_counted_and_pruned() {
        let mut s = Segment::new(0);
        s.add_dep(5);
        s.add_dep(2);
        s.add_dep(5);
        assert_eq!(s.deps(), [(2, 1), (5, 2)]);
        s.prune_deps(|n| n != 2);
        assert_eq!(s.deps(), [(5, 2)]);
    }
}
