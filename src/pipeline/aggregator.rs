//! Merges repeated triggered events (same aggregation key) into one `Aggregated` event per window.
//!
//! A device that runs the same health-check script every second would otherwise send 3,600
//! identical ProcessCreate events an hour. The retired agents' aggregation map had no bound; here
//! each kind's window holds at most `max_keys` distinct keys and is flushed early when a new key
//! would exceed that, so memory stays bounded whatever the event mix.

use crate::event::{Category, Event, EventKind, format_local, format_utc};
use chrono::{DateTime, FixedOffset};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// Default number of distinct keys one kind's window may hold before it is flushed early.
pub const DEFAULT_MAX_KEYS: usize = 1024;

struct Entry {
    event: Event,
    hits: u64,
    first: DateTime<FixedOffset>,
    last: DateTime<FixedOffset>,
}

struct Window {
    closes: Instant,
    /// Entries in first-seen order; `index` maps a key to its position.
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl Window {
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

pub struct Aggregator {
    windows: BTreeMap<EventKind, Window>,
    max_keys: usize,
}

impl Aggregator {
    pub fn new(max_keys: usize) -> Aggregator {
        Aggregator {
            windows: BTreeMap::new(),
            max_keys: max_keys.max(1),
        }
    }

    /// Adds an event to its kind's window, opening one of `interval` if none is open.
    /// Returns whether it was merged into an existing entry (a hit beyond the first).
    pub fn add(&mut self, event: Event, interval: Duration, now: Instant) -> (Added, bool) {
        let Some(key) = event.payload.aggregation_key() else {
            return (Added::NotAggregatable(event), false);
        };
        let kind = event.kind();
        let mut flushed = Vec::new();
        if let Some(w) = self.windows.get(&kind) {
            if !w.index.contains_key(&key) && w.entries.len() >= self.max_keys {
                let full = self.windows.remove(&kind).expect("window checked above");
                flushed.extend(full.into_events());
            }
        }
        let window = self.windows.entry(kind).or_insert_with(|| Window {
            closes: now + interval,
            entries: Vec::new(),
            index: HashMap::new(),
        });
        let merged = match window.index.get(&key) {
            Some(&i) => {
                let entry = &mut window.entries[i];
                entry.hits += 1;
                entry.last = entry.last.max(event.time);
                entry.first = entry.first.min(event.time);
                true
            }
            None => {
                window.index.insert(key, window.entries.len());
                window.entries.push(Entry {
                    first: event.time,
                    last: event.time,
                    event,
                    hits: 1,
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
