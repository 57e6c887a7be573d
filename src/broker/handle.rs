//! Generation-checked handles over slab keys. Slab slots are reused, so a handle kept by a
//! channel (an unacked delivery's queue) must not silently refer to a newer entity.

use slab::Slab;

/// Index into a `Registry` plus the generation the entry was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    index: u32,
    gen: u32,
}

impl Handle {
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// A slab whose handles go stale when their entry is removed.
pub struct Registry<T> {
    slab: Slab<(u32, T)>,
    next_gen: u32,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            slab: Slab::new(),
            next_gen: 1,
        }
    }
}

impl<T> Registry<T> {
    pub fn insert(&mut self, value: T) -> Handle {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let index = self.slab.insert((gen, value)) as u32;
        Handle { index, gen }
    }

    pub fn get(&self, h: Handle) -> Option<&T> {
        match self.slab.get(h.index as usize) {
            Some((gen, v)) if *gen == h.gen => Some(v),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, h: Handle) -> Option<&mut T> {
        match self.slab.get_mut(h.index as usize) {
            Some((gen, v)) if *gen == h.gen => Some(v),
            _ => None,
        }
    }

    pub fn remove(&mut self, h: Handle) -> Option<T> {
        if self.get(h).is_none() {
            return None;
        }
        Some(self.slab.remove(h.index as usize).1)
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Handle, &T)> {
        self.slab.iter().map(|(i, (gen, v))| {
            (
                Handle {
                    index: i as u32,
                    gen: *gen,
                },
                v,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_slots_do_not_answer_to_old_handles() {
        let mut r = Registry::default();
        let a = r.insert("a");
        assert_eq!(r.remove(a), Some("a"));
        let b = r.insert("b");
        assert_eq!(a.index(), b.index());
        assert_eq!(r.get(a), None);
        assert_eq!(r.get(b), Some(&"b"));
        assert_eq!(r.remove(a), None);
        assert_eq!(r.len(), 1);
    }
}
