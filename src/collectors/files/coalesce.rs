//! Coalescing: the kernel's notifications about one path within [`WINDOW`] become one change,
//! so a file written 1,000 times a second yields one `FileChange` a second, with the number of
//! notifications (`Count`) and of writes closed (`Writes`) it stands for, and the process that
//! made the last of them where fanotify said ([`Coalescer::attribute`]).

use crate::event::FileOperation;
use crate::host::procfs::ProcessInfo;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long notifications about one path are gathered, from the first one, before they are
/// reported together.
pub const WINDOW: Duration = Duration::from_secs(1);

/// At most this many paths gather notifications at once; when a notification about another
/// path comes, everything gathered is reported at once (nothing is lost, the storm is only
/// less coalesced).
pub const MAX_PENDING: usize = 1024;

/// At most this many distinct writers of one path are counted in a window.
pub const MAX_WRITERS: usize = 64;

/// Notifications gathered about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub first: Instant,
    /// Distinct operations, in the order first seen.
    pub operations: Vec<FileOperation>,
    /// Kernel notifications merged (after the kernel's own merging of identical consecutive
    /// ones, which it does before anyone reads them).
    pub count: u64,
    /// Of them, writes closed (`IN_CLOSE_WRITE`): one per writer that opened, wrote and closed.
    pub writes: u64,
    pub renamed_from: Option<String>,
    pub renamed_to: Option<String>,
    /// The notification said the path is a directory.
    pub is_dir: bool,
    /// The process that made the last change attributed (fanotify), as read then.
    pub writer: Option<ProcessInfo>,
    /// The distinct pids of the processes that made the changes attributed, at most
    /// [`MAX_WRITERS`].
    pub writer_pids: Vec<u32>,
}

impl Pending {
    fn new(first: Instant) -> Pending {
        Pending {
            first,
            operations: Vec::new(),
            count: 0,
            writes: 0,
            renamed_from: None,
            renamed_to: None,
            is_dir: false,
            writer: None,
            writer_pids: Vec::new(),
        }
    }

    /// The one operation a record reports: a path that is gone was `Deleted` (or `Renamed`
    /// away, when that was the last thing seen); one that exists was `Created` if that
    /// happened in the window, else `Renamed`, `Modified`, or `Attributes`, in that order.
    pub fn operation(&self, exists: bool) -> FileOperation {
        use FileOperation::*;
        let has = |op| self.operations.contains(&op);
        if !exists {
            return match self.operations.last() {
                Some(Renamed) if self.renamed_to.is_some() || !has(Deleted) => Renamed,
                _ => Deleted,
            };
        }
        [Created, Renamed, Modified, Deleted]
            .into_iter()
            .find(|op| has(*op))
            .map(|op| if op == Deleted { Created } else { op })
            .unwrap_or(Attributes)
    }
}

/// The paths gathering notifications.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: HashMap<String, Pending>,
}

/// One notification about a path.
#[derive(Debug, Clone, Copy)]
pub struct Note<'a> {
    pub operation: FileOperation,
    pub write_closed: bool,
    pub is_dir: bool,
    pub renamed_from: Option<&'a str>,
    pub renamed_to: Option<&'a str>,
}

impl Coalescer {
    /// Adds a notification. Returns what must be reported now to stay within [`MAX_PENDING`].
    pub fn add(&mut self, path: &str, note: Note<'_>, now: Instant) -> Vec<(String, Pending)> {
        let (p, out) = self.gather(path, now);
        p.count += 1;
        p.writes += note.write_closed as u64;
        p.is_dir |= note.is_dir;
        if !p.operations.contains(&note.operation) {
            p.operations.push(note.operation);
        } else if p.operations.last() != Some(&note.operation) {
            // Keep the latest order: what happened last decides a gone path's operation.
            p.operations.retain(|o| *o != note.operation);
            p.operations.push(note.operation);
        }
        if let Some(f) = note.renamed_from {
            p.renamed_from = Some(f.to_string());
        }
        if let Some(t) = note.renamed_to {
            p.renamed_to = Some(t.to_string());
        }
        out
    }

    /// `path`'s pending entry (a new window when there is none), and what must be reported
    /// first to make room for it within [`MAX_PENDING`].
    fn gather(&mut self, path: &str, now: Instant) -> (&mut Pending, Vec<(String, Pending)>) {
        let mut out = Vec::new();
        if !self.pending.contains_key(path) && self.pending.len() >= MAX_PENDING {
            out = self.drain_all();
        }
        let p = self
            .pending
            .entry(path.to_string())
            .or_insert_with(|| Pending::new(now));
        (p, out)
    }

    /// The pid of the last process known to have changed `path` in its window.
    pub fn writer_of(&self, path: &str) -> Option<u32> {
        self.pending.get(path)?.writer.as_ref().map(|w| w.pid)
    }

    /// Notes that `writer` changed `path` (fanotify; inotify reports the change itself, so this
    /// is no notification and adds none of `Count`): it becomes the path's writer, the last
    /// one wins, and its pid is counted among the distinct writers. A path that inotify has not
    /// reported yet starts gathering (its report may come a moment later, on the other
    /// descriptor). Returns what must be reported now to stay within [`MAX_PENDING`].
    pub fn attribute(
        &mut self,
        path: &str,
        writer: ProcessInfo,
        now: Instant,
    ) -> Vec<(String, Pending)> {
        let (p, out) = self.gather(path, now);
        if !p.writer_pids.contains(&writer.pid) && p.writer_pids.len() < MAX_WRITERS {
            p.writer_pids.push(writer.pid);
        }
        p.writer = Some(writer);
        out
    }

    /// The paths whose window has closed by `now`, oldest first.
    pub fn due(&mut self, now: Instant) -> Vec<(String, Pending)> {
        let ready: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.first) >= WINDOW)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<(String, Pending)> = ready
            .into_iter()
            .filter_map(|k| self.pending.remove_entry(&k))
            .collect();
        out.sort_by_key(|(_, p)| p.first);
        out
    }

    /// Everything gathered, oldest first (at shutdown, or when full).
    pub fn drain_all(&mut self) -> Vec<(String, Pending)> {
        let mut out: Vec<(String, Pending)> = self.pending.drain().collect();
        out.sort_by_key(|(_, p)| p.first);
        out
    }

    /// Records where a gathered path was renamed to (its `MOVED_TO` came).
    pub fn note_renamed_to(&mut self, from: &str, to: &str) {
        if let Some(p) = self.pending.get_mut(from) {
            p.renamed_to = Some(to.to_string());
        }
    }

    /// When the next window closes.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.first + WINDOW).min()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}
