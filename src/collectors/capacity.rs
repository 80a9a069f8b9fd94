//! Giving back the capacity a burst left behind.
//!
//! Rust's maps, sets and deques keep their capacity when entries leave. A collector's cache
//! bounded at thousands of entries fills up during an exec or connection storm, then holds a
//! few hundred on the quiet host after it, while its capacity (and the pages it touched) stays
//! at the storm's size for the life of the agent: that is resident memory the edge device pays
//! for nothing. These helpers shrink a container once it is less than a quarter used, to twice
//! its length, so the next shrink needs the container to halve again first (amortised O(1)).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// Capacity a container keeps whatever its length: small enough to cost nothing (a few KiB),
/// large enough that a quiet host never reallocates.
pub const SLACK: usize = 256;

/// Tables of expiring entries are swept of them once they have doubled since the last sweep,
/// and not below this size.
const SWEEP_MIN: usize = 64;

/// When a table of expiring entries (suppressions, failed-login windows, rate-limit windows) is
/// swept: once it has doubled since the last sweep. Each sweep is O(n) and comes after at least
/// n/2 inserts, so it costs O(1) per insert, and the table holds at most about twice the entries
/// still live. A table swept only when full grows with every distinct key until its cap (a
/// failed login per new user name filled the detector's 8,192 suppressions in about two hours),
/// instead of following what is live. Shrink it after the sweep ([`shrink_map`]) so its
/// capacity follows too.
#[derive(Debug, Default)]
pub struct Sweep {
    at: usize,
}

impl Sweep {
    pub fn due(&self, len: usize) -> bool {
        len >= self.at.max(SWEEP_MIN)
    }

    pub fn done(&mut self, len: usize) {
        self.at = len.saturating_mul(2);
    }
}

fn too_large(capacity: usize, len: usize) -> bool {
    capacity > SLACK && capacity / 4 > len
}

fn target(len: usize) -> usize {
    (2 * len).max(SLACK)
}

/// Shrinks `m` when less than a quarter of its capacity is used.
pub fn shrink_map<K: Hash + Eq, V>(m: &mut HashMap<K, V>) {
    if too_large(m.capacity(), m.len()) {
        m.shrink_to(target(m.len()));
    }
}

/// Shrinks `s` when less than a quarter of its capacity is used.
pub fn shrink_set<K: Hash + Eq>(s: &mut HashSet<K>) {
    if too_large(s.capacity(), s.len()) {
        s.shrink_to(target(s.len()));
    }
}

/// Shrinks `d` when less than a quarter of its capacity is used.
pub fn shrink_deque<T>(d: &mut VecDeque<T>) {
    if too_large(d.capacity(), d.len()) {
        d.shrink_to(target(d.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_only_when_mostly_empty() {
        let mut m: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        m.retain(|k, _| *k < 5_000);
        let half = m.capacity();
        shrink_map(&mut m);
        assert_eq!(m.capacity(), half, "half used: kept");
        m.retain(|k, _| *k < 100);
        shrink_map(&mut m);
        assert!(
            m.capacity() >= 100 && m.capacity() <= 4 * SLACK,
            "{}",
            m.capacity()
        );

        let mut s: HashSet<u32> = (0..10_000).collect();
        s.retain(|k| *k < 10);
        shrink_set(&mut s);
        assert!(
            s.capacity() <= 4 * SLACK && s.len() == 10,
            "{}",
            s.capacity()
        );

        let mut d: VecDeque<u32> = (0..10_000).collect();
        d.truncate(1_000);
        shrink_deque(&mut d);
        assert!(
            d.capacity() >= 1_000 && d.capacity() < 4_000,
            "{}",
            d.capacity()
        );
        assert_eq!(d.iter().copied().max(), Some(999));
    }

    #[test]
    fn small_containers_are_left_alone() {
        let mut d: VecDeque<u32> = VecDeque::with_capacity(SLACK);
        let cap = d.capacity();
        shrink_deque(&mut d);
        assert_eq!(d.capacity(), cap);
    }
}
