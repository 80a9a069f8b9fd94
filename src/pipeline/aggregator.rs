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
    /// Its key in the spool's window table (a durable agent keeps open windows there).
    id: u64,
    /// Changed since [`Aggregator::take_dirty`] last looked.
    dirty: bool,
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
        self.entries.into_iter().map(|e| {
            let (first, last, hits) = (e.first, e.last, e.hits);
            finish(e.event, first, last, hits)
        })
    }
}

/// Turns a window entry into the event that is sent: the first occurrence's record, category
/// `Aggregated`, with `HitCount` and the first and last times in `ExtraDetails`.
fn finish(
    mut event: Event,
    first: DateTime<FixedOffset>,
    last: DateTime<FixedOffset>,
    hits: u64,
) -> Event {
    event.category = Category::Aggregated;
    event.time = first;
    if let Some(extra) = event.payload.first_extra_details_mut() {
        extra.insert("HitCount".into(), hits.to_string());
        extra.insert("StartTimeLocal".into(), format_local(&first));
        extra.insert("StartTimeUtc".into(), format_utc(&first));
        extra.insert("EndTimeLocal".into(), format_local(&last));
        extra.insert("EndTimeUtc".into(), format_utc(&last));
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
    /// Whether to keep track of changed and closed entries (a durable agent writes them to the
    /// spool; without one this is skipped).
    track: bool,
    next_id: u64,
    /// (kind, position) of the entries changed since the last [`Aggregator::take_dirty`].
    dirty: Vec<(EventKind, usize)>,
    /// Ids of entries whose window closed since the last [`Aggregator::take_closed`].
    closed: Vec<u64>,
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
            track: false,
            next_id: 0,
            dirty: Vec::new(),
            closed: Vec::new(),
        }
    }

    /// Keeps track of changed and closed entries from now on (see [`Aggregator::take_dirty`]).
    pub fn track_changes(&mut self) {
        self.track = true;
    }

    /// Removes a kind's window, noting its entries as closed.
    fn close(&mut self, kind: EventKind) -> Option<Window> {
        let window = self.windows.remove(&kind)?;
        if self.track {
            self.closed.extend(window.entries.iter().map(|e| e.id));
            self.dirty.retain(|(k, _)| *k != kind);
        }
        Some(window)
    }

    /// The current state of every entry changed since the last call, as the event it would
    /// become if its window closed now, with the entry's id.
    pub fn take_dirty(&mut self) -> Vec<(u64, Event)> {
        let mut out = Vec::with_capacity(self.dirty.len());
        for (kind, i) in std::mem::take(&mut self.dirty) {
            let Some(entry) = self
                .windows
                .get_mut(&kind)
                .and_then(|w| w.entries.get_mut(i))
            else {
                continue;
            };
            entry.dirty = false;
            let event = finish(entry.event.clone(), entry.first, entry.last, entry.hits);
            out.push((entry.id, event));
        }
        out
    }

    /// Ids of the entries whose windows closed since the last call.
    pub fn take_closed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.closed)
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
                let full = self.close(kind).expect("window checked above");
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
                if self.track && !entry.dirty {
                    entry.dirty = true;
                    self.dirty.push((kind, i));
                }
                true
            }
            None => {
                let position = window.entries.len();
                let next_same_hash = window.index.insert(hash, position);
                let id = self.next_id;
                self.next_id += 1;
                if self.track {
                    self.dirty.push((kind, position));
                }
                window.entries.push(Entry {
                    id,
                    dirty: self.track,
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
            .filter_map(|k| self.close(k))
            .flat_map(Window::into_events)
            .collect()
    }

    /// Events of one kind's open window (when its aggregation is switched off).
    pub fn drain_kind(&mut self, kind: EventKind) -> Vec<Event> {
        self.close(kind)
            .map(|w| w.into_events().collect())
            .unwrap_or_default()
    }

    /// Events of every open window (shutdown, flush).
    pub fn drain_all(&mut self) -> Vec<Event> {
        let kinds: Vec<EventKind> = self.windows.keys().copied().collect();
        kinds
            .into_iter()
            .filter_map(|k| self.close(k))
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

#[cfg(test)]
mod tracking {
    use super::*;
    use crate::event::{Payload, ProcessCreate};

    fn process(cmd: &str) -> Event {
        Event::new(Payload::ProcessCreate(vec![ProcessCreate {
            executable: "/bin/sh".into(),
            command_line: cmd.into(),
            process_id: 1,
            parent_process_id: 1,
            user_id: "0".into(),
            user_name: None,
            extra_details: Default::default(),
        }]))
    }

    fn hit_count(e: &Event) -> String {
        match &e.payload {
            Payload::ProcessCreate(v) => v[0].extra_details["HitCount"].clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn changed_entries_are_reported_once_until_they_change_again() {
        let mut a = Aggregator::new(2);
        a.track_changes();
        let (interval, now) = (Duration::from_secs(60), Instant::now());
        a.add(process("a"), interval, now);
        a.add(process("a"), interval, now);
        a.add(process("b"), interval, now);
        let dirty = a.take_dirty();
        assert_eq!(dirty.len(), 2, "one report per changed entry");
        let (id_a, ev_a) = &dirty[0];
        assert_eq!(hit_count(ev_a), "2");
        assert!(a.take_dirty().is_empty(), "nothing changed since");
        a.add(process("a"), interval, now);
        let again = a.take_dirty();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].0, *id_a);
        assert_eq!(hit_count(&again[0].1), "3");
        // A third key overflows the window of two: both entries close, the new one opens.
        a.add(process("c"), interval, now);
        let mut closed = a.take_closed();
        closed.sort();
        assert_eq!(closed.len(), 2);
        assert!(closed.contains(id_a));
        let dirty = a.take_dirty();
        assert_eq!(dirty.len(), 1, "only the new entry: {dirty:?}");
        assert!(!closed.contains(&dirty[0].0), "ids are not reused");
        assert_eq!(a.drain_all().len(), 1);
        assert_eq!(a.take_closed(), vec![dirty[0].0]);
        assert!(a.take_dirty().is_empty());
    }

    #[test]
    fn without_tracking_nothing_is_kept() {
        let mut a = Aggregator::new(2);
        let (interval, now) = (Duration::from_secs(60), Instant::now());
        for cmd in ["a", "b", "c", "a"] {
            a.add(process(cmd), interval, now);
        }
        a.drain_all();
        assert!(a.take_dirty().is_empty() && a.take_closed().is_empty());
    }
}
