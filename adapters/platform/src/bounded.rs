//! A map that holds at most a fixed number of entries and forgets the oldest first, for the
//! small memories adapters (and the engine's caches) keep: recent event ids, messages written,
//! channel facts, reranked orders.
//!
//! Entries are kept in order from oldest to newest. Inserting puts an entry at the newest
//! place (a key inserted again moves there), and past the capacity the oldest entries go.
//! Reading with [`BoundedMap::get`] leaves the order alone, so the map forgets in insertion
//! order; reading with [`BoundedMap::refresh`] moves the entry to the newest place, so a map
//! read that way forgets the least recently used.

use std::borrow::Borrow;
use std::hash::Hash;

use hashlink::LinkedHashMap;

/// At most `capacity` entries, the oldest forgotten first.
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    /// Entries from the oldest to the newest.
    map: LinkedHashMap<K, V>,
    /// The most entries kept.
    capacity: usize,
}

impl<K: Hash + Eq, V> BoundedMap<K, V> {
    /// An empty map keeping at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            map: LinkedHashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The most entries kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Stores `value` under `key` as the newest entry (moving the key there if it was held),
    /// then forgets the oldest entries past the capacity. Returns the value `key` had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.map.insert(key, value);
        while self.map.len() > self.capacity {
            self.map.pop_front();
        }
        old
    }

    /// The value under `key`, leaving the order alone.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key)
    }

    /// The value under `key`, to change in place, leaving the order alone.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_mut(key)
    }

    /// The value under `key`, moved to the newest place: a map read this way forgets the
    /// least recently used entry first.
    pub fn refresh<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.to_back(key)
    }

    /// Whether `key` is held.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(key)
    }

    /// Forgets `key`; returns its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(key)
    }

    /// The entries, from the oldest to the newest.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_insertion_is_forgotten_first() {
        let mut m = BoundedMap::new(3);
        for i in 0..5 {
            m.insert(i, i * 10);
        }
        assert_eq!(m.len(), 3);
        assert!(m.get(&0).is_none() && m.get(&1).is_none());
        assert_eq!(m.get(&4), Some(&40));
        // Reading leaves the order alone: 2 is still the oldest.
        assert_eq!(m.get(&2), Some(&20));
        m.insert(5, 50);
        assert!(!m.contains_key(&2));
        assert_eq!(m.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [3, 4, 5]);
    }

    #[test]
    fn inserting_a_key_again_makes_it_the_newest() {
        let mut m = BoundedMap::new(3);
        for i in 0..3 {
            m.insert(i, i);
        }
        assert_eq!(m.insert(0, 100), Some(0));
        m.insert(3, 3);
        assert_eq!(m.get(&0), Some(&100));
        assert!(m.get(&1).is_none(), "1 became the oldest and went");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn refreshing_reads_forget_the_least_recently_used() {
        let mut m = BoundedMap::new(2);
        m.insert("a", 1);
        m.insert("b", 2);
        assert_eq!(m.refresh("a").copied(), Some(1));
        m.insert("c", 3);
        assert!(m.get("b").is_none());
        assert_eq!(m.get("a"), Some(&1));
        assert_eq!(m.get("c"), Some(&3));
        assert!(m.refresh("b").is_none());
    }

    #[test]
    fn changes_in_place_and_removals_keep_the_bound() {
        let mut m = BoundedMap::new(0);
        assert_eq!(m.capacity(), 1, "a map holds at least one entry");
        m.insert("a".to_string(), vec![1]);
        if let Some(v) = m.get_mut("a") {
            v.push(2);
        }
        assert_eq!(m.get("a"), Some(&vec![1, 2]));
        m.insert("b".to_string(), vec![3]);
        assert_eq!(m.len(), 1);
        assert_eq!(m.remove("b"), Some(vec![3]));
        assert!(m.is_empty());
        assert_eq!(m.remove("b"), None);
    }
}
