//! A connection's open channels by number. Memory follows the channels that are open, not the
//! numbers they use: a client may open channel 65535 (RabbitMQ limits how many channels are
//! open, not their ids), and that must cost what channel 1 costs. Channels live in a slab;
//! a small index sorted by number finds them by binary search and lists them in number order.

use super::channel::Channel;
use slab::Slab;

#[derive(Default)]
pub(crate) struct Channels {
    slots: Slab<Channel>,
    /// (channel number, slab key), sorted by number.
    index: Vec<(u16, usize)>,
}

impl Channels {
    fn find(&self, id: u16) -> Result<usize, usize> {
        self.index.binary_search_by_key(&id, |&(n, _)| n)
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn contains(&self, id: u16) -> bool {
        self.find(id).is_ok()
    }

    pub(crate) fn get(&self, id: u16) -> Option<&Channel> {
        let at = self.find(id).ok()?;
        self.slots.get(self.index[at].1)
    }

    pub(crate) fn get_mut(&mut self, id: u16) -> Option<&mut Channel> {
        let at = self.find(id).ok()?;
        self.slots.get_mut(self.index[at].1)
    }

    /// Opens channel `id`; false (and nothing changes) if it is open already.
    pub(crate) fn insert(&mut self, id: u16, channel: Channel) -> bool {
        match self.find(id) {
            Ok(_) => false,
            Err(at) => {
                let key = self.slots.insert(channel);
                self.index.insert(at, (id, key));
                true
            }
        }
    }

    pub(crate) fn remove(&mut self, id: u16) -> Option<Channel> {
        let at = self.find(id).ok()?;
        let (_, key) = self.index.remove(at);
        let channel = self.slots.try_remove(key);
        if self.index.is_empty() {
            // Give back the memory of a burst of channels once they are all closed.
            self.slots = Slab::new();
            self.index = Vec::new();
        }
        channel
    }

    /// The open channel numbers, in order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.index.iter().map(|&(n, _)| n)
    }

    /// Every open channel with its number, in number order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u16, &Channel)> + '_ {
        self.index
            .iter()
            .filter_map(|&(n, key)| self.slots.get(key).map(|c| (n, c)))
    }

    /// Calls `f` on every open channel, in number order.
    pub(crate) fn for_each_mut(&mut self, mut f: impl FnMut(u16, &mut Channel)) {
        for &(n, key) in &self.index {
            if let Some(c) = self.slots.get_mut(key) {
                f(n, c);
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.slots = Slab::new();
        self.index = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_found_by_number_and_listed_in_order() {
        let mut t = Channels::default();
        assert!(t.insert(65535, Channel::default()));
        assert!(t.insert(1, Channel::default()));
        assert!(t.insert(2047, Channel::default()));
        assert!(!t.insert(1, Channel::default()), "second open of 1");
        assert_eq!(t.ids().collect::<Vec<_>>(), [1, 2047, 65535]);
        t.get_mut(2047).expect("open").confirm = true;
        assert!(t.get(2047).is_some_and(|c| c.confirm));
        assert!(t.remove(2047).is_some());
        assert!(t.get(2047).is_none());
        assert!(t.remove(2047).is_none());
        assert_eq!(t.len(), 2);
        // A slot freed by 2047 is reused without disturbing the others.
        assert!(t.insert(7, Channel::default()));
        assert!(t.get(65535).is_some_and(|c| !c.confirm));
        assert_eq!(t.ids().collect::<Vec<_>>(), [1, 7, 65535]);
    }
}
