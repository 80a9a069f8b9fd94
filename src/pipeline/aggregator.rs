//! Merges repeated triggered events (same aggregation key) into one `Aggregated` event per window.
//!
//! A device that runs the same health-check script every second would otherwise send 3,600
//! identical ProcessCreate events an hour. The retired agents' aggregation map had no bound; here
//! each kind's window holds at most `max_keys` distinct keys and is flushed early when a new key
//! would exceed that, so memory stays bounded whatever the event mix.

use crate::event::{AggregationKey, Category, Event, EventKind, format_local, format_utc};
use chrono::{DateTime, FixedOffset};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;
use tokio::time::Instant;

/// Default number of distinct keys one kind's window may hold before it is flushed early.
pub const DEFAULT_MAX_KEYS: usize = 1024;

struct Entry {
    event: Event,
    hits: u64,
    first: DateTime<FixedOffset>,
    last: DateTime<FixedOffset>,
    /// The next entry whose key has the same hash (a collision chain through `entries`).
    next_same_hash: Option<usize>,
}

struct Window {
    closes: Instant,
    /// Entries in first-seen order; `index` maps a key's hash to the latest entry with that hash,
    /// the rest of the chain follows `next_same_hash`. Keys are compared field by field along the
    /// chain, so a hash collision never merges different events.
    entries: Vec<Entry>,
    index: HashMap<u64, usize>,
}

impl Window {
    /// The position of the entry with `key`, if any.
    fn find(&self, hash: u64, key: &AggregationKey<'_>) -> Option<usize> {
        let mut at = self.index.get(&hash).copied();
        while let Some(i) = at {
            let entry = &self.entries[i];
            if entry.event.payload.aggregation_key().as_ref() == Some(key) {
                return Some(i);
            }
            at = entry.next_same_hash;
        }
        None
    }

    fn into_events(self) -> impl Iterator<Item = Event> {
        self.entries.into_iter().map(finish)
    }
}

/// Turns a window entry into the event that is sent: the first occurrence's record, category
/// `Aggregated`, with `HitCount` and the first and last times in `ExtraDetails`.
fn finish(entry: Entry) -> Event {
    let mut event = entry.event;
    event.category = Category::Aggregated;
    event.time = entry.first;
    if let Some(extra) = event.payload.first_extra_details_mut() {
        extra.insert("HitCount".into(), entry.hits.to_string());
        extra.insert("StartTimeLocal".into(), format_local(&entry.first));
        extra.insert("StartTimeUtc".into(), format_utc(&entry.first));
        extra.insert("EndTimeLocal".into(), format_local(&entry.last));
        extra.insert("EndTimeUtc".into(), format_utc(&entry.last));
    }
    event
}

/// Outcome of [`Aggregator::add`].
pub enum Added {
    /// The event was merged into, or opened, a window entry.
    Merged,
    /// The event opened a new entry after the full window was flushed; these are its events.
    Flushed(Vec<Event>),
    /// The event has no aggregation key (e.g. several records); send it as it is.
    NotAggregatable(Event),
}

/// The aggregation windows; `S` hashes the keys (keyed SipHash by default, since command lines
/// come from whoever runs processes on the device; tests pass a colliding one).
pub struct Aggregator<S = RandomState> {
    windows: BTreeMap<EventKind, Window>,
    max_keys: usize,
    hasher: S,
}

impl Aggregator {
    pub fn new(max_keys: usize) -> Aggregator {
        Aggregator::with_hasher(max_keys, RandomState::new())
    }
}

impl<S: BuildHasher> Aggregator<S> {
    pub fn with_hasher(max_keys: usize, hasher: S) -> Aggregator<S> {
        Aggregator {
            windows: BTreeMap::new(),
            max_keys: max_keys.max(1),
            hasher,
        }
    }

    /// Adds an event to its kind's window, opening one of `interval` if none is open.
    /// Returns whether it was merged into an existing entry (a hit beyond the first).
    pub fn add(&mut self, event: Event, interval: Duration, now: Instant) -> (Added, bool) {
        let Some(key) = event.payload.aggregation_key() else {
            return (Added::NotAggregatable(event), false);
        };
        let hash = self.hasher.hash_one(key);
        let kind = event.kind();
        let mut flushed = Vec::new();
        let mut found = None;
        if let Some(w) = self.windows.get(&kind) {
            found = w.find(hash, &key);
            if found.is_none() && w.entries.len() >= self.max_keys {
                let full = self.windows.remove(&kind).expect("window checked above");
                flushed.extend(full.into_events());
            }
        }
        let window = self.windows.entry(kind).or_insert_with(|| Window {
            closes: now + interval,
            entries: Vec::new(),
            index: HashMap::new(),
        });
        let merged = match found {
            Some(i) => {
                let entry = &mut window.entries[i];
                entry.hits += 1;
                entry.last = entry.last.max(event.time);
                entry.first = entry.first.min(event.time);
                true
            }
            None => {
                let next_same_hash = window.index.insert(hash, window.entries.len());
                window.entries.push(Entry {
                    first: event.time,
                    last: event.time,
                    event,
                    hits: 1,
                    next_same_hash,
                });
                false
            }
        };
        let added = if flushed.is_empty() {
            Added::Merged
        } else {
            Added::Flushed(flushed)
        };
        (added, merged)
    }

    /// Events of every window that has closed by `now`.
    pub fn expired(&mut self, now: Instant) -> Vec<Event> {
        let closed: Vec<EventKind> = self
            .windows
            .iter()
            .filter(|(_, w)| w.closes <= now)
            .map(|(k, _)| *k)
            .collect();
        closed
            .into_iter()
            .filter_map(|k| self.windows.remove(&k))
            .flat_map(Window::into_events)
            .collect()
    }

    /// Events of one kind's open window (when its aggregation is switched off).
    pub fn drain_kind(&mut self, kind: EventKind) -> Vec<Event> {
        self.windows
            .remove(&kind)
            .map(|w| w.into_events().collect())
            .unwrap_or_default()
    }

    /// Events of every open window (shutdown, flush).
    pub fn drain_all(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.windows)
            .into_values()
            .flat_map(Window::into_events)
            .collect()
    }

    /// When the next window closes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.windows.values().map(|w| w.closes).min()
    }

    /// Distinct keys held across all windows.
    pub fn len(&self) -> usize {
        self.windows.values().map(|w| w.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Payload, ProcessCreate};
    use std::hash::{BuildHasherDefault, Hasher};

    /// Hashes every key to the same value, so every lookup walks the collision chain.
    #[derive(Default)]
    struct Colliding;

    impl Hasher for Colliding {
        fn finish(&self) -> u64 {
            42
        }
        fn write(&mut self, _: &[u8]) {}
    }

    fn process(cmd: &str, user_name: Option<&str>, pid: u32) -> Event {
        Event::new(Payload::ProcessCreate(vec![ProcessCreate {
            executable: "/bin/sh".into(),
            command_line: cmd.into(),
            process_id: pid,
            parent_process_id: 1,
            user_id: "0".into(),
            user_name: user_name.map(str::to_string),
            extra_details: Default::default(),
        }]))
    }

    fn hits(events: &[Event]) -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| match &e.payload {
                Payload::ProcessCreate(v) => (
                    v[0].command_line.clone(),
                    v[0].extra_details["HitCount"].clone(),
                ),
                other => panic!("unexpected payload {other:?}"),
            })
            .collect()
    }

    #[test]
    fn colliding_hashes_do_not_merge_different_keys() {
        let mut a = Aggregator::with_hasher(16, BuildHasherDefault::<Colliding>::default());
        let interval = Duration::from_secs(60);
        let now = Instant::now();
        for (i, cmd) in ["a", "b", "a", "c", "b", "a"].into_iter().enumerate() {
            a.add(process(cmd, Some("root"), i as u32), interval, now);
        }
        let out = a.drain_all();
        let expect =
            [("a", "3"), ("b", "2"), ("c", "1")].map(|(c, h)| (c.to_string(), h.to_string()));
        assert_eq!(hits(&out), expect);
    }

    #[test]
    fn absent_and_empty_user_name_are_the_same_key() {
        let mut a = Aggregator::new(16);
        let now = Instant::now();
        let interval = Duration::from_secs(60);
        let (_, merged) = a.add(process("x", None, 1), interval, now);
        assert!(!merged);
        let (_, merged) = a.add(process("x", Some(""), 2), interval, now);
        assert!(merged);
        let (_, merged) = a.add(process("x", Some("root"), 3), interval, now);
        assert!(!merged);
        assert_eq!(a.len(), 2);
    }
}
