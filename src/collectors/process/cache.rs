//! A bounded pid → value map that forgets its oldest entries.

use crate::collectors::capacity;
use std::collections::{HashMap, VecDeque};

/// pid → value that forgets its oldest insertions beyond `cap` entries.
///
/// Entries normally leave when their process exits; the bound is for exits that were never
/// seen (overflow, a fallback scan that missed them). `order` may hold stale positions of
/// re-inserted or removed pids; it is compacted when it holds more than twice the live entries
/// (not twice the bound: under a steady exec load the live set is a few hundred pids while
/// every fork and exec adds a position, and compacting only at 2 × 16,384 positions left each
/// map with 1 MiB of ring buffer that the soak measured as resident memory). After a burst both
/// containers give back capacity, so memory follows the live set rather than its high mark.
#[derive(Debug)]
pub(super) struct BoundedMap<V> {
    pub(super) map: HashMap<u32, (u64, V)>,
    pub(super) order: VecDeque<(u32, u64)>,
    next: u64,
    pub(super) cap: usize,
}

impl<V> BoundedMap<V> {
    pub(super) fn new(cap: usize) -> BoundedMap<V> {
        BoundedMap {
            map: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            cap: cap.max(1),
        }
    }

    pub(super) fn insert(&mut self, pid: u32, value: V) {
        self.next += 1;
        self.map.insert(pid, (self.next, value));
        self.order.push_back((pid, self.next));
        while self.map.len() > self.cap {
            let Some((old, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|(s, _)| *s == stamp) {
                self.map.remove(&old);
            }
        }
        // Amortised O(1): after a compaction `order` holds the live entries only, and the next
        // one comes after at least as many insertions again. Never more than twice the bound.
        if self.order.len() > (2 * self.map.len() + capacity::SLACK).min(2 * self.cap) {
            let map = &self.map;
            self.order
                .retain(|(pid, stamp)| map.get(pid).is_some_and(|(s, _)| s == stamp));
            capacity::shrink_deque(&mut self.order);
        }
    }

    pub(super) fn get(&self, pid: u32) -> Option<&V> {
        self.map.get(&pid).map(|(_, v)| v)
    }

    pub(super) fn remove(&mut self, pid: u32) -> Option<V> {
        let removed = self.map.remove(&pid).map(|(_, v)| v);
        capacity::shrink_map(&mut self.map);
        removed
    }
}
