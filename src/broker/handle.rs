//! Generation-checked handles over slab keys, and the registries that hand them out. Slab
//! slots are reused, so a handle kept elsewhere (an unacked delivery's queue) must not silently
//! refer to a newer entity; and each kind of entity has its own id type (`define_id!`), so a
//! queue id cannot be passed where a consumer id is meant.

use slab::Slab;
use std::marker::PhantomData;

/// Index into a `Registry` plus the generation the entry was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Handle {
    index: u32,
    gen: u32,
}

impl Handle {
    /// The registry slot: dense and reused, so it can index a side table (a visit mark per
    /// exchange while routing) that the generation check is not needed for.
    pub(crate) fn slot(self) -> usize {
        self.index as usize
    }

    /// The handle as bytes (index, then generation), for a name that must lead back to its
    /// entity; a forged one finds nothing, as a stale one does not.
    pub(crate) fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.index.to_be_bytes());
        b[4..].copy_from_slice(&self.gen.to_be_bytes());
        b
    }

    pub(crate) fn from_bytes(b: [u8; 8]) -> Self {
        Handle {
            index: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            gen: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// An id type handed out by a `Registry`: a newtype over `Handle` made by `define_id!`.
pub(crate) trait Id: Copy {
    fn from_handle(h: Handle) -> Self;
    fn handle(self) -> Handle;
}

/// Declares `pub struct $name(Handle)` implementing `Id`.
macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($crate::broker::handle::Handle);

        impl $crate::broker::handle::Id for $name {
            fn from_handle(h: $crate::broker::handle::Handle) -> Self {
                $name(h)
            }
            fn handle(self) -> $crate::broker::handle::Handle {
                self.0
            }
        }
    };
}
pub(crate) use define_id;

/// A slab of `T` whose ids (of type `I`) go stale when their entry is removed.
pub(crate) struct Registry<I, T> {
    slab: Slab<(u32, T)>,
    next_gen: u32,
    id: PhantomData<I>,
    /// Entries looked at (by id or by iteration), for tests that count work, not time.
    #[cfg(test)]
    visits: std::cell::Cell<u64>,
}

impl<I, T> Default for Registry<I, T> {
    fn default() -> Self {
        Registry {
            slab: Slab::new(),
            next_gen: 1,
            id: PhantomData,
            #[cfg(test)]
            visits: std::cell::Cell::new(0),
        }
    }
}

impl<I: Id, T> Registry<I, T> {
    pub(crate) fn insert(&mut self, value: T) -> I {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let index = self.slab.insert((gen, value)) as u32;
        I::from_handle(Handle { index, gen })
    }

    pub(crate) fn get(&self, id: I) -> Option<&T> {
        self.visit(1);
        let h = id.handle();
        match self.slab.get(h.index as usize) {
            Some((gen, v)) if *gen == h.gen => Some(v),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: I) -> Option<&mut T> {
        self.visit(1);
        let h = id.handle();
        match self.slab.get_mut(h.index as usize) {
            Some((gen, v)) if *gen == h.gen => Some(v),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, id: I) -> Option<T> {
        self.get(id)?;
        Some(self.slab.remove(id.handle().index as usize).1)
    }

    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (I, &T)> {
        self.slab.iter().map(|(i, (gen, v))| {
            self.visit(1);
            let h = Handle {
                index: i as u32,
                gen: *gen,
            };
            (I::from_handle(h), v)
        })
    }

    /// Every entry, mutable (ids are not needed by the callers).
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slab.iter_mut().map(|(_, (_, v))| v)
    }

    #[cfg(test)]
    fn visit(&self, n: u64) {
        self.visits.set(self.visits.get() + n);
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn visit(&self, _: u64) {}

    /// Entries looked at so far (tests only).
    #[cfg(test)]
    pub(crate) fn visits(&self) -> u64 {
        self.visits.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    define_id!(
        /// An id for the tests.
        TestId
    );

    #[test]
    fn reused_slots_do_not_answer_to_old_handles() {
        let mut r: Registry<TestId, &str> = Registry::default();
        let a = r.insert("a");
        assert_eq!(r.remove(a), Some("a"));
        let b = r.insert("b");
        assert_eq!(a.handle().index, b.handle().index);
        assert_eq!(r.get(a), None);
        assert_eq!(r.get(b), Some(&"b"));
        assert_eq!(r.remove(a), None);
        assert_eq!(r.len(), 1);
    }
}
