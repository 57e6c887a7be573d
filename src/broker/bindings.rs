//! The bindings table: the one home of every binding. It records each binding once, keeps the
//! routing structure of its source exchange (`exchange::Routes`) and its indexes by source and
//! by destination in step, so deleting a queue or an exchange finds its bindings without a
//! scan and no caller maintains two structures by hand.

use super::exchange::{Destination, Exchange, ExchangeId};
use super::federation::BindingEvents;
use super::handle::Registry;
use slab::Slab;
use std::collections::HashMap;

/// A binding's identity, as RabbitMQ defines it: source, destination, key and arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Binding {
    pub(super) source: ExchangeId,
    pub(super) dest: Destination,
    pub(super) key: Box<[u8]>,
    /// The raw argument table.
    pub(super) args: Box<[u8]>,
}

struct Entry {
    binding: Binding,
    /// Positions of this entry in its source's and its destination's index lists.
    at_source: usize,
    at_dest: usize,
}

#[derive(Default)]
pub(super) struct Bindings {
    entries: Slab<Entry>,
    /// Binding → its entry, for the identity checks of bind and unbind.
    index: HashMap<Binding, usize>,
    by_source: HashMap<ExchangeId, Vec<usize>>,
    by_dest: HashMap<Destination, Vec<usize>>,
    /// Changes of federated exchanges' bindings, for their links.
    federation: BindingEvents,
}

/// Which of an entry's index positions a list holds.
#[derive(Clone, Copy)]
enum Side {
    Source,
    Dest,
}

impl Bindings {
    /// Whether exactly this binding exists.
    pub(super) fn contains(&self, b: &Binding) -> bool {
        self.index.contains_key(b)
    }

    /// Adds a binding and routes through it; false if it existed already or its source is gone.
    pub(super) fn bind(
        &mut self,
        exchanges: &mut Registry<ExchangeId, Exchange>,
        b: Binding,
    ) -> bool {
        if self.index.contains_key(&b) {
            return false;
        }
        let Some(x) = exchanges.get_mut(b.source) else {
            return false;
        };
        x.routes.add(b.dest, &b.key, &b.args);
        if x.federated() {
            self.federation.record(&b, true);
        }
        let sources = self.by_source.entry(b.source).or_default();
        let dests = self.by_dest.entry(b.dest).or_default();
        let slot = self.entries.insert(Entry {
            binding: b.clone(),
            at_source: sources.len(),
            at_dest: dests.len(),
        });
        sources.push(slot);
        dests.push(slot);
        self.index.insert(b, slot);
        true
    }

    /// Removes a binding and its route; false if there was none.
    pub(super) fn unbind(
        &mut self,
        exchanges: &mut Registry<ExchangeId, Exchange>,
        b: &Binding,
    ) -> bool {
        let Some(slot) = self.index.remove(b) else {
            return false;
        };
        self.detach(slot, Side::Source);
        self.detach(slot, Side::Dest);
        let e = self.entries.remove(slot);
        if let Some(x) = exchanges.get_mut(b.source) {
            x.routes
                .remove(e.binding.dest, &e.binding.key, &e.binding.args);
            if x.federated() {
                self.federation.record(&e.binding, false);
            }
        }
        true
    }

    /// Removes up to `max` bindings to `dest` (a queue or exchange deleted), appending their
    /// sources to `sources` (an exchange may appear more than once); returns how many it
    /// removed. Until all are gone, routing still reaches the deleted `dest` and skips it.
    pub(super) fn remove_to(
        &mut self,
        exchanges: &mut Registry<ExchangeId, Exchange>,
        dest: Destination,
        max: usize,
        sources: &mut Vec<ExchangeId>,
    ) -> usize {
        let mut n = 0;
        while n < max {
            // From the end of the list: the others keep their recorded positions.
            let Some(slot) = self.by_dest.get_mut(&dest).and_then(Vec::pop) else {
                break;
            };
            self.detach(slot, Side::Source);
            let e = self.entries.remove(slot);
            self.index.remove(&e.binding);
            let b = e.binding;
            if let Some(x) = exchanges.get_mut(b.source) {
                x.routes.remove(b.dest, &b.key, &b.args);
                if x.federated() {
                    self.federation.record(&b, false);
                }
            }
            sources.push(b.source);
            n += 1;
        }
        if self.by_dest.get(&dest).is_some_and(Vec::is_empty) {
            self.by_dest.remove(&dest);
        }
        n
    }

    /// Removes up to `max` bindings from `source`, an exchange deleted: its routing structure
    /// went with it, so only the table is updated. Returns how many it removed.
    pub(super) fn remove_from(&mut self, source: ExchangeId, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(slot) = self.by_source.get_mut(&source).and_then(Vec::pop) else {
                break;
            };
            self.detach(slot, Side::Dest);
            let e = self.entries.remove(slot);
            self.index.remove(&e.binding);
            n += 1;
        }
        if self.by_source.get(&source).is_some_and(Vec::is_empty) {
            self.by_source.remove(&source);
        }
        n
    }

    /// Whether bindings to `dest` are left.
    pub(super) fn has_dest(&self, dest: Destination) -> bool {
        self.by_dest.contains_key(&dest)
    }

    /// Whether `source` routes anywhere (exchange.delete if-unused, auto-delete).
    pub(super) fn has_source(&self, source: ExchangeId) -> bool {
        self.by_source.contains_key(&source)
    }

    /// Bindings whose source is `source`.
    pub(super) fn from_source(&self, source: ExchangeId) -> impl Iterator<Item = &Binding> {
        self.by_source
            .get(&source)
            .into_iter()
            .flatten()
            .map(|&slot| &self.entries[slot].binding)
    }

    /// The changes of federated exchanges' bindings waiting for the loop.
    pub(super) fn federation_events(&mut self) -> &mut BindingEvents {
        &mut self.federation
    }

    /// Every binding (listings and the definitions export, issues 12 and 13; tests).
    #[allow(dead_code)]
    pub(super) fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.entries.iter().map(|(_, e)| &e.binding)
    }

    /// Bindings whose destination is `dest`.
    #[cfg(test)]
    pub(super) fn count_to(&self, dest: Destination) -> usize {
        self.by_dest.get(&dest).map_or(0, |v| v.len())
    }

    /// Takes `slot` out of one of its index lists, keeping the positions of the others right;
    /// an emptied list is dropped, so `has_source` is a lookup.
    fn detach(&mut self, slot: usize, side: Side) {
        let e = &self.entries[slot];
        let (source, dest) = (e.binding.source, e.binding.dest);
        let (list, at) = match side {
            Side::Source => (self.by_source.get_mut(&source), e.at_source),
            Side::Dest => (self.by_dest.get_mut(&dest), e.at_dest),
        };
        let Some(list) = list else { return };
        debug_assert_eq!(list.get(at), Some(&slot));
        list.swap_remove(at);
        if let Some(&moved) = list.get(at) {
            match side {
                Side::Source => self.entries[moved].at_source = at,
                Side::Dest => self.entries[moved].at_dest = at,
            }
        } else if list.is_empty() {
            match side {
                Side::Source => self.by_source.remove(&source),
                Side::Dest => self.by_dest.remove(&dest),
            };
        }
    }

    /// Every binding is in the identity index and at the recorded place of both lists, and the
    /// lists hold nothing else (the fuzzer checks this through `Broker::assert_consistent`).
    pub(super) fn assert_consistent(&self) {
        assert_eq!(self.index.len(), self.entries.len(), "binding index size");
        let listed: usize = self.by_source.values().map(Vec::len).sum();
        assert_eq!(listed, self.entries.len(), "bindings listed by source");
        let listed: usize = self.by_dest.values().map(Vec::len).sum();
        assert_eq!(listed, self.entries.len(), "bindings listed by destination");
        for (slot, e) in self.entries.iter() {
            let b = &e.binding;
            assert_eq!(self.index.get(b), Some(&slot), "binding index");
            assert_eq!(self.by_source[&b.source][e.at_source], slot, "source list");
            assert_eq!(self.by_dest[&b.dest][e.at_dest], slot, "destination list");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::exchange::{ExchangeKind, MessageHeaders};
    use super::super::queue::QueueId;
    use super::*;

    fn exchange(r: &mut Registry<ExchangeId, Exchange>, kind: ExchangeKind) -> ExchangeId {
        let mut vhosts: Registry<super::super::VhostId, ()> = Registry::default();
        r.insert(Exchange::new(
            vhosts.insert(()),
            b"x"[..].into(),
            kind,
            false,
            false,
            false,
            Box::new([]),
        ))
    }

    fn binding(source: ExchangeId, dest: Destination, key: &str) -> Binding {
        Binding {
            source,
            dest,
            key: key.as_bytes().into(),
            args: Box::new([]),
        }
    }

    fn routed(r: &Registry<ExchangeId, Exchange>, x: ExchangeId, key: &str) -> Vec<Destination> {
        let mut out = Vec::new();
        if let Some(x) = r.get(x) {
            x.routes
                .route(key.as_bytes(), &mut MessageHeaders::new(None), &mut out);
        }
        out
    }

    #[test]
    fn bindings_and_routes_stay_in_step_when_either_end_goes() {
        let mut xs = Registry::default();
        let mut qs: Registry<QueueId, ()> = Registry::default();
        let (q1, q2) = (
            Destination::Queue(qs.insert(())),
            Destination::Queue(qs.insert(())),
        );
        let d = exchange(&mut xs, ExchangeKind::Direct);
        let f = exchange(&mut xs, ExchangeKind::Fanout);
        let mut t = Bindings::default();
        assert!(t.bind(&mut xs, binding(d, q1, "a")));
        assert!(
            !t.bind(&mut xs, binding(d, q1, "a")),
            "a second identical bind"
        );
        assert!(t.bind(&mut xs, binding(d, q2, "a")));
        assert!(t.bind(&mut xs, binding(d, Destination::Exchange(f), "a")));
        assert!(t.bind(&mut xs, binding(f, q1, "")));
        t.assert_consistent();
        assert_eq!(routed(&xs, d, "a").len(), 3);

        let mut sources = Vec::new();
        assert_eq!(t.remove_to(&mut xs, q1, 1, &mut sources), 1);
        t.assert_consistent();
        assert_eq!(t.remove_to(&mut xs, q1, usize::MAX, &mut sources), 1);
        sources.sort();
        assert_eq!(sources.len(), 2);
        assert_eq!(routed(&xs, d, "a").len(), 2, "q1's route is gone");
        assert_eq!(routed(&xs, f, ""), []);
        assert!(!t.has_source(f));
        t.assert_consistent();

        assert_eq!(t.remove_from(d, 2), 2);
        t.assert_consistent();
        assert_eq!(t.remove_from(d, 2), 0);
        xs.remove(d);
        assert_eq!(t.count_to(q2), 0);
        assert_eq!(t.count_to(Destination::Exchange(f)), 0);
        assert_eq!(t.iter().count(), 0);
        t.assert_consistent();

        assert!(t.bind(&mut xs, binding(f, q2, "")));
        assert!(!t.unbind(&mut xs, &binding(f, q1, "")));
        assert!(t.unbind(&mut xs, &binding(f, q2, "")));
        assert_eq!(routed(&xs, f, ""), []);
        t.assert_consistent();
    }
}
