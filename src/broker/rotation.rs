//! The order in which a queue serves its consumers: grouped by consumer priority (x-priority
//! on basic.consume), highest first, round robin within a group; and on a single-active-
//! consumer queue, which one is active. A queue whose consumers have no priority keeps them in
//! one group, so picking costs what plain round robin costs. Knows ids only; whether a
//! consumer can take a delivery is the caller's question.

use super::consumer::ConsumerId;

/// The consumers of one priority, in registration order, and the next one in turn.
struct Group {
    priority: i64,
    members: Vec<ConsumerId>,
    next: usize,
}

pub(super) struct Rotation {
    /// Sorted by priority, highest first; no group is empty.
    groups: Vec<Group>,
    len: usize,
    /// x-single-active-consumer: only `active` is served.
    single_active: bool,
    /// The active consumer of a single-active-consumer queue (None without consumers).
    active: Option<ConsumerId>,
}

impl Rotation {
    pub(super) fn new(single_active: bool) -> Self {
        Rotation {
            groups: Vec::new(),
            len: 0,
            single_active,
            active: None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn single_active(&self) -> bool {
        self.single_active
    }

    /// Every consumer: by priority, highest first, then in registration order.
    pub(super) fn iter(&self) -> impl Iterator<Item = ConsumerId> + '_ {
        self.groups.iter().flat_map(|g| g.members.iter().copied())
    }

    /// Where the group of `priority` is, or would go (groups run from highest to lowest).
    fn find(&self, priority: i64) -> Result<usize, usize> {
        self.groups.binary_search_by(|g| priority.cmp(&g.priority))
    }

    /// Adds a consumer behind the others of its priority. On a single-active-consumer queue
    /// the first consumer becomes active; later ones wait, whatever their priority (RabbitMQ
    /// 3.10: a higher-priority newcomer does not take over).
    pub(super) fn add(&mut self, id: ConsumerId, priority: i64) {
        match self.find(priority) {
            Ok(at) => self.groups[at].members.push(id),
            Err(at) => self.groups.insert(
                at,
                Group {
                    priority,
                    members: vec![id],
                    next: 0,
                },
            ),
        }
        self.len += 1;
        if self.single_active && self.active.is_none() {
            self.active = Some(id);
        }
    }

    /// Removes a consumer. If it was the active one, the one that takes over is the first of
    /// the highest priority (RabbitMQ 3.10's choice: its priority queue's head).
    pub(super) fn remove(&mut self, id: ConsumerId, priority: i64) {
        let Ok(at) = self.find(priority) else { return };
        let g = &mut self.groups[at];
        let Some(i) = g.members.iter().position(|x| *x == id) else {
            return;
        };
        g.members.remove(i);
        if g.next > i {
            g.next -= 1;
        }
        if g.next >= g.members.len() {
            g.next = 0;
        }
        if g.members.is_empty() {
            self.groups.remove(at);
        }
        self.len -= 1;
        if self.active == Some(id) {
            self.active = self.groups.first().and_then(|g| g.members.first().copied());
        }
    }

    /// The consumer to serve next: the active one on a single-active-consumer queue, if it may
    /// take; otherwise, from the highest priority down, the first of a group from its next in
    /// turn that `may_take` accepts, which then becomes the last served of its group.
    #[inline]
    pub(super) fn pick(
        &mut self,
        mut may_take: impl FnMut(ConsumerId) -> bool,
    ) -> Option<ConsumerId> {
        if self.single_active {
            return self.active.filter(|&c| may_take(c));
        }
        for g in &mut self.groups {
            let n = g.members.len();
            for i in 0..n {
                let idx = (g.next + i) % n;
                let c = g.members[idx];
                if may_take(c) {
                    g.next = (idx + 1) % n;
                    return Some(c);
                }
            }
        }
        None
    }

    /// The active consumer, on a single-active-consumer queue.
    pub(super) fn active(&self) -> Option<ConsumerId> {
        self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::handle::Registry;

    fn ids(n: usize) -> Vec<ConsumerId> {
        let mut r: Registry<ConsumerId, ()> = Registry::default();
        (0..n).map(|_| r.insert(())).collect()
    }

    fn picks(r: &mut Rotation, n: usize, may: impl Fn(ConsumerId) -> bool) -> Vec<ConsumerId> {
        (0..n).filter_map(|_| r.pick(&may)).collect()
    }

    #[test]
    fn round_robin_within_the_highest_priority_that_can_take() {
        let c = ids(4);
        let mut r = Rotation::new(false);
        r.add(c[0], 0);
        r.add(c[1], 5);
        r.add(c[2], 5);
        r.add(c[3], -1);
        assert_eq!(r.iter().collect::<Vec<_>>(), [c[1], c[2], c[0], c[3]]);
        assert_eq!(picks(&mut r, 4, |_| true), [c[1], c[2], c[1], c[2]]);
        let low = |x| x == c[0] || x == c[3];
        assert_eq!(picks(&mut r, 3, low), [c[0], c[0], c[0]]);
        assert_eq!(picks(&mut r, 2, |x| x == c[3]), [c[3], c[3]]);
        r.remove(c[1], 5);
        r.remove(c[2], 5);
        assert_eq!(picks(&mut r, 3, |_| true), [c[0], c[0], c[0]]);
        r.remove(c[0], 0);
        r.remove(c[3], -1);
        assert!(r.is_empty() && r.groups.is_empty());
        assert_eq!(r.pick(|_| true), None);
    }

    #[test]
    fn removing_keeps_the_turn() {
        let c = ids(3);
        let mut r = Rotation::new(false);
        for &x in &c {
            r.add(x, 0);
        }
        assert_eq!(r.pick(|_| true), Some(c[0]));
        r.remove(c[0], 0);
        assert_eq!(picks(&mut r, 3, |_| true), [c[1], c[2], c[1]]);
        r.remove(c[2], 0);
        assert_eq!(r.pick(|_| true), Some(c[1]));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn single_active_consumer_takes_over_by_priority_then_registration() {
        let c = ids(4);
        let mut r = Rotation::new(true);
        r.add(c[0], 0);
        r.add(c[1], 0);
        r.add(c[2], 10);
        r.add(c[3], 10);
        assert_eq!(
            r.active(),
            Some(c[0]),
            "the first registered, whatever came later"
        );
        assert_eq!(picks(&mut r, 2, |_| true), [c[0], c[0]]);
        assert_eq!(r.pick(|x| x != c[0]), None, "the others wait");
        r.remove(c[0], 0);
        assert_eq!(r.active(), Some(c[2]));
        r.remove(c[1], 0);
        assert_eq!(
            r.active(),
            Some(c[2]),
            "a waiting one going changes nothing"
        );
        r.remove(c[2], 10);
        assert_eq!(r.active(), Some(c[3]));
        r.remove(c[3], 10);
        assert_eq!(r.active(), None);
    }
}
