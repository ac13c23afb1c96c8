//! Entries counted in bytes, least recently used first out: the memory
//! storage and the Redis near cache. The owner decides when to evict (it
//! may have to clean up after each evicted entry).

use pingora::cache::key::HashBinary;
use std::collections::{BTreeMap, HashMap};

struct Slot<V> {
    value: V,
    size: usize,
    tick: u64,
}

pub(crate) struct Lru<V> {
    slots: HashMap<HashBinary, Slot<V>>,
    /// tick → key, oldest first.
    order: BTreeMap<u64, HashBinary>,
    tick: u64,
    size: usize,
}

impl<V> Default for Lru<V> {
    fn default() -> Self {
        Lru {
            slots: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            size: 0,
        }
    }
}

impl<V> Lru<V> {
    /// Bytes counted for all entries.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The entry, marked as the most recently used.
    pub(crate) fn get(&mut self, key: &HashBinary) -> Option<&V> {
        let slot = self.slots.get_mut(key)?;
        self.tick += 1;
        self.order.remove(&slot.tick);
        slot.tick = self.tick;
        self.order.insert(self.tick, *key);
        Some(&slot.value)
    }

    /// Change an entry in place; `f` returns its new size in bytes.
    pub(crate) fn update(&mut self, key: &HashBinary, f: impl FnOnce(&mut V) -> usize) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        let size = f(&mut slot.value);
        self.size = self.size - slot.size + size;
        slot.size = size;
        true
    }

    /// Add (or replace) an entry as the most recently used; the replaced
    /// value is returned. Nothing is evicted here (see `pop_oldest`).
    pub(crate) fn insert(&mut self, key: HashBinary, value: V, size: usize) -> Option<V> {
        let old = self.remove(&key);
        self.tick += 1;
        self.order.insert(self.tick, key);
        self.size += size;
        self.slots.insert(
            key,
            Slot {
                value,
                size,
                tick: self.tick,
            },
        );
        old
    }

    pub(crate) fn remove(&mut self, key: &HashBinary) -> Option<V> {
        let slot = self.slots.remove(key)?;
        self.order.remove(&slot.tick);
        self.size -= slot.size;
        Some(slot.value)
    }

    /// Take out the least recently used entry.
    pub(crate) fn pop_oldest(&mut self) -> Option<(HashBinary, V)> {
        let (_, key) = self.order.pop_first()?;
        let slot = self.slots.remove(&key)?;
        self.size -= slot.size;
        Some((key, slot.value))
    }

    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.order.clear();
        self.size = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_first_and_sizes() {
        let mut lru = Lru::default();
        for i in 0..3u8 {
            lru.insert([i; 16], i, 10);
        }
        assert_eq!(lru.size(), 30);
        // Using 0 makes 1 the oldest.
        assert_eq!(lru.get(&[0; 16]), Some(&0));
        assert_eq!(lru.pop_oldest(), Some(([1; 16], 1)));
        assert!(lru.update(&[2; 16], |v| {
            *v = 20;
            25
        }));
        assert_eq!(lru.size(), 35);
        assert_eq!(lru.insert([0; 16], 9, 1), Some(0));
        assert_eq!(lru.size(), 26);
        assert_eq!(lru.pop_oldest(), Some(([2; 16], 20)));
        assert_eq!(lru.remove(&[0; 16]), Some(9));
        assert_eq!((lru.size(), lru.pop_oldest()), (0, None));
    }
}
