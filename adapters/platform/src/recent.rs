//! A bounded set of recently seen event ids, for adapters to drop the duplicate deliveries a
//! platform makes (Slack's two sockets and retries, a Discord RESUME replay) before they are
//! queued. The engine's durable de-duplication still has the last word; this only keeps
//! duplicates that arrive close together from doing any work.

use std::collections::{HashSet, VecDeque};

/// Recent ids, at most `capacity`, the oldest forgotten first.
#[derive(Debug)]
pub struct RecentIds {
    /// Ids in arrival order.
    order: VecDeque<String>,
    /// The same ids, for lookups.
    set: HashSet<String>,
    /// The most ids kept.
    capacity: usize,
}

impl RecentIds {
    /// An empty set keeping at most `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::new(),
            set: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records `id`; false if it was seen lately.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(id.to_string());
        self.set.insert(id.to_string());
        true
    }

    /// Ids held now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_are_bounded_and_deduplicate() {
        let mut r = RecentIds::new(8);
        assert!(r.insert("a"));
        assert!(!r.insert("a"));
        for i in 0..8 {
            r.insert(&i.to_string());
        }
        assert_eq!(r.len(), 8);
        assert!(r.insert("a"), "the oldest id was forgotten");
    }
}
