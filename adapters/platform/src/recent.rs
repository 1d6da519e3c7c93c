//! A bounded set of recently seen event ids, for adapters to drop the duplicate deliveries a
//! platform makes (Slack's two sockets and retries, a Discord RESUME replay) before they are
//! queued. The engine's durable de-duplication still has the last word; this only keeps
//! duplicates that arrive close together from doing any work.

use crate::BoundedMap;

/// Recent ids, at most `capacity`, the oldest forgotten first.
#[derive(Debug)]
pub struct RecentIds {
    /// The ids, in arrival order.
    ids: BoundedMap<String, ()>,
}

impl RecentIds {
    /// An empty set keeping at most `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            ids: BoundedMap::new(capacity),
        }
    }

    /// Records `id`; false if it was seen lately.
    pub fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains_key(id) {
            return false;
        }
        self.ids.insert(id.to_string(), ());
        true
    }

    /// Ids held now.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
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
