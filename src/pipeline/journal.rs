//! The durable side of the pipeline: events waiting in the cache and the open aggregation
//! windows, kept in the spool's database so a crash or a power cut loses at most the last
//! commit interval (one second) of what the collectors handed over.
//!
//! Two tables beside the spool's messages:
//! - `queue`: one row per event in the cache (key: its sequence number; value: lane, priority,
//!   kind and the encoded event). A row is inserted by a journal commit and deleted in the same
//!   commit that stores the message carrying the event (so an event is always in exactly one of
//!   the two tables), or by a journal commit when the event is evicted.
//! - `windows`: one row per open aggregation window entry (key: the entry's id; value: the
//!   event the entry would become if its window closed now). A row is upserted while the window
//!   gathers hits and deleted in the commit that queues the window's event.
//!
//! After a restart the queue rows go back into the cache as they were, and each window row is
//! queued as a closed window (its window ends at the crash; later hits open a new one).
//!
//! The pipeline commits at most a second after a change, and always before it cuts a message,
//! so a message never carries an event whose row is still to be written.

use super::cache::Lane;
use crate::event::{EventKind, Priority};

/// Row format version, the first byte of every row.
const ROW_FORMAT: u8 = 1;

/// One journal commit: what changed since the last one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Queue rows to insert: (sequence number, encoded row).
    pub inserts: Vec<(u64, Vec<u8>)>,
    /// Queue rows to delete (evicted or dropped events).
    pub removes: Vec<u64>,
    /// Window rows to insert or replace: (entry id, encoded row).
    pub window_upserts: Vec<(u64, Vec<u8>)>,
    /// Window rows to delete (the window closed; its event is among `inserts` or already gone).
    pub window_removes: Vec<u64>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.inserts.is_empty()
            && self.removes.is_empty()
            && self.window_upserts.is_empty()
            && self.window_removes.is_empty()
    }

    /// Appends `later` after `self` (a failed commit retried with what came since), so that one
    /// commit of the result leaves the tables as the two in order would: a row inserted by
    /// `self` and deleted by `later` is neither written nor deleted, and a window's later state
    /// replaces its earlier one.
    pub fn append(&mut self, later: Batch) {
        self.inserts.extend(later.inserts);
        for seq in later.removes {
            match self.inserts.iter().position(|(s, _)| *s == seq) {
                Some(i) => {
                    self.inserts.remove(i);
                }
                None => self.removes.push(seq),
            }
        }
        for id in &later.window_removes {
            self.window_upserts.retain(|(w, _)| w != id);
        }
        self.window_removes.extend(later.window_removes);
        self.window_upserts
            .retain(|(id, _)| !later.window_upserts.iter().any(|(l, _)| l == id));
        self.window_upserts.extend(later.window_upserts);
    }

    /// Drops the inserts of events a message has taken before they were written; returns which
    /// of `seqs` it dropped.
    pub fn forget_inserts(&mut self, seqs: &[u64]) -> Vec<u64> {
        let mut dropped = Vec::new();
        if self.inserts.is_empty() || seqs.is_empty() {
            return dropped;
        }
        // Sequence numbers grow: only those at or past the first pending insert can match.
        let first = self.inserts[0].0;
        let wanted: std::collections::HashSet<u64> =
            seqs.iter().copied().filter(|s| *s >= first).collect();
        if wanted.is_empty() {
            return dropped;
        }
        self.inserts.retain(|(s, _)| {
            let taken = wanted.contains(s);
            if taken {
                dropped.push(*s);
            }
            !taken
        });
        dropped
    }
}

/// What the spool held at open: queued events and open windows of the last run.
#[derive(Debug, Default)]
pub struct Rows {
    pub queue: Vec<(u64, Vec<u8>)>,
    pub windows: Vec<(u64, Vec<u8>)>,
}

fn lane_byte(lane: Lane) -> u8 {
    lane as u8
}

fn lane_of(b: u8) -> Option<Lane> {
    Some(match b {
        0 => Lane::Low,
        1 => Lane::High,
        2 => Lane::Alert,
        3 => Lane::Operational,
        _ => return None,
    })
}

fn kind_byte(kind: EventKind) -> u8 {
    EventKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("every kind is in ALL") as u8
}

fn kind_of(b: u8) -> Option<EventKind> {
    EventKind::ALL.get(usize::from(b)).copied()
}

/// Set in a queue row's priority byte for another module's event.
const FOREIGN: u8 = 0x80;

/// A queue row: format, lane, priority (with [`FOREIGN`]), kind, then the encoded event.
pub fn encode_queued(
    lane: Lane,
    priority: Priority,
    foreign: bool,
    kind: EventKind,
    event: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + event.len());
    let priority = match priority {
        Priority::High => 0,
        _ => 1,
    };
    v.extend_from_slice(&[
        ROW_FORMAT,
        lane_byte(lane),
        priority | if foreign { FOREIGN } else { 0 },
        kind_byte(kind),
    ]);
    v.extend_from_slice(event);
    v
}

/// `(lane, priority, foreign, kind, event)` of a queue row; `None` for a row this version
/// cannot read.
pub fn decode_queued(row: &[u8]) -> Option<(Lane, Priority, bool, EventKind, &[u8])> {
    let [format, lane, priority, kind, event @ ..] = row else {
        return None;
    };
    if *format != ROW_FORMAT || event.is_empty() {
        return None;
    }
    let foreign = priority & FOREIGN != 0;
    let priority = match priority & !FOREIGN {
        0 => Priority::High,
        1 => Priority::Low,
        _ => return None,
    };
    Some((lane_of(*lane)?, priority, foreign, kind_of(*kind)?, event))
}

/// A window row: format, kind, then the event the window would send now.
pub fn encode_window(kind: EventKind, event: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + event.len());
    v.extend_from_slice(&[ROW_FORMAT, kind_byte(kind)]);
    v.extend_from_slice(event);
    v
}

/// `(kind, event)` of a window row; `None` for a row this version cannot read.
pub fn decode_window(row: &[u8]) -> Option<(EventKind, &[u8])> {
    let [format, kind, event @ ..] = row else {
        return None;
    };
    if *format != ROW_FORMAT || event.is_empty() {
        return None;
    }
    Some((kind_of(*kind)?, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_garbage_is_refused() {
        for lane in [Lane::Low, Lane::High, Lane::Alert, Lane::Operational] {
            for priority in [Priority::High, Priority::Low] {
                for (kind, foreign) in EventKind::ALL
                    .iter()
                    .copied()
                    .zip([false, true].into_iter().cycle())
                {
                    let row = encode_queued(lane, priority, foreign, kind, b"{\"x\":1}");
                    assert_eq!(
                        decode_queued(&row),
                        Some((lane, priority, foreign, kind, &b"{\"x\":1}"[..]))
                    );
                    let row = encode_window(kind, b"{}");
                    assert_eq!(decode_window(&row), Some((kind, &b"{}"[..])));
                }
            }
        }
        for bad in [
            &b""[..],
            &[ROW_FORMAT, 0, 0, 0],
            &[9, 0, 0, 0, b'x'],
            &[ROW_FORMAT, 7, 0, 0, b'x'],
            &[ROW_FORMAT, 0, 5, 0, b'x'],
            &[ROW_FORMAT, 0, 0, 250, b'x'],
        ] {
            assert_eq!(decode_queued(bad), None, "{bad:?}");
        }
        for bad in [
            &b""[..],
            &[ROW_FORMAT, 0],
            &[2, 0, b'x'],
            &[ROW_FORMAT, 250, b'x'],
        ] {
            assert_eq!(decode_window(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_batch_replaces_a_window_upsert() {
        let mut a = Batch {
            inserts: vec![(1, vec![1])],
            window_upserts: vec![(5, vec![1]), (6, vec![1])],
            ..Batch::default()
        };
        a.append(Batch {
            inserts: vec![(2, vec![2])],
            removes: vec![1],
            window_upserts: vec![(5, vec![2])],
            window_removes: vec![6],
        });
        assert_eq!(
            a.inserts,
            vec![(2, vec![2])],
            "1 was inserted, then removed"
        );
        assert_eq!(a.removes, Vec::<u64>::new());
        assert_eq!(
            a.window_upserts,
            vec![(5, vec![2])],
            "6 closed, 5 changed again"
        );
        assert_eq!(a.window_removes, vec![6]);
        assert_eq!(a.forget_inserts(&[2, 3]), vec![2]);
        assert!(a.inserts.is_empty());
    }
}
