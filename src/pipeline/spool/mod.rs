//! The crash-safe, bounded store of messages between batching and the sink.
//!
//! A message is appended (one durable redb commit) before the pipeline counts it as handed over,
//! and removed (another commit) only after the sink acknowledges it, so a crash or a restart
//! loses nothing that was accepted: on start, what is left is sent again, in id order. Ids
//! increase across restarts (the next id is committed with every append), so "in order" survives
//! restarts too, and an acknowledgement can never name a message of an earlier run by mistake.
//!
//! The spool is bounded by the sum of message body sizes (the twin's
//! `maxLocalCacheSizeInBytes`). An append that would go over the bound first evicts the oldest
//! Low-priority messages, then the oldest High ones, never one in flight (handed to the sink and
//! not yet acknowledged or failed), in the same commit as the append; what was evicted is
//! returned so the caller counts it. If only messages in flight stand in the way, the new message
//! is refused ([`Error::Full`]).
//!
//! A file that cannot be opened as a redb database (torn or overwritten by something other than
//! redb, another format) is renamed aside as `spool.redb.corrupt-<unix time>` and the spool starts
//! empty: the agent must start. A crash during a commit is not corruption: redb's commits are
//! atomic and it repairs the file on the next open.
//!
//! There is also an in-memory spool with the same rules, for snapshot mode and tests, and as the
//! fallback when the state directory cannot hold a database.
//!
//! `open`, `append`, `remove` and `read` do blocking file I/O (an `fsync` per commit): call them
//! from a blocking thread (the outbox uses `spawn_blocking`).

mod open;
mod record;

use open::*;
use record::*;

use super::Output;
use super::journal::{Batch, Rows};
use crate::event::Priority;
use redb::{Database, ReadableDatabase, TableDefinition};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The spool's file name in the state directory.
pub const FILE_NAME: &str = "spool.redb";

/// Messages by id: a small header (format, priority, event count, output) and the body.
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
/// Events waiting in the pipeline's cache, by sequence number (see [`super::journal`]).
const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
/// Open aggregation window entries, by entry id (see [`super::journal`]).
const WINDOWS: TableDefinition<u64, &[u8]> = TableDefinition::new("windows");
/// Counters that must survive restarts (`next_id`).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_ID: &str = "next_id";

/// Record format version, the first header byte. Format 1 (before the `alerts` output) had no
/// output byte; its records are read as [`Output::Events`], which is where they were going.
const FORMAT: u8 = 2;
const FORMAT_1: u8 = 1;
/// Format 1: format byte, priority byte, event count (u64 little-endian).
const HEADER_1: usize = 1 + 1 + 8;
/// Format 2: format 1's header and an output byte.
const HEADER: usize = HEADER_1 + 1;

/// redb's page cache: the spool is written once and read once per send, so a small cache is
/// plenty; a larger one only fills with pages of delivered messages (measured: part of the RSS
/// growth over a soak).
const CACHE_BYTES: usize = 512 << 10;

/// Older set-aside files kept besides the newest one, so repeated corruption cannot fill the disk.
const KEEP_CORRUPT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening the spool {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("setting the corrupt spool {path} aside")]
    SetAside {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the spool {path} is still unreadable after starting over")]
    StillCorrupt { path: PathBuf },
    #[error("writing the spool")]
    Write(#[source] redb::Error),
    #[error("reading the spool")]
    Read(#[source] redb::Error),
    #[error("spool record {id} is missing or corrupt")]
    Corrupt { id: u64 },
    #[error("the spool is full of messages in flight ({len} bytes refused)")]
    Full { len: usize },
    #[error("the spool worker stopped")]
    Worker(#[source] tokio::task::JoinError),
}

impl Error {
    /// Whether trying again later can succeed: I/O trouble, a lock held by another process, or
    /// room that acknowledgements will free. Corruption and internal failures are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Open { source, .. } | Error::Write(source) | Error::Read(source) => {
                !is_corruption(source)
            }
            Error::SetAside { .. } | Error::Full { .. } => true,
            Error::StillCorrupt { .. } | Error::Corrupt { .. } | Error::Worker(_) => false,
        }
    }
}

/// What redb reports when the file is not (or no longer) a database it wrote.
fn is_corruption(e: &redb::Error) -> bool {
    match e {
        redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::TableIsMultimap(_) => true,
        redb::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// One stored message, without its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub priority: Priority,
    pub output: Output,
    pub events: usize,
    /// Body length in bytes.
    pub len: usize,
}

/// A message pushed out to make room; the caller counts its events as dropped.
pub type Evicted = Entry;

/// The result of a successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub id: u64,
    /// Older messages removed in the same commit, oldest Low first.
    pub evicted: Vec<Evicted>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    priority: Priority,
    output: Output,
    events: usize,
    len: usize,
    in_flight: bool,
}

enum Backend {
    Memory(HashMap<u64, Arc<[u8]>>),
    /// `db` is `None` after an I/O error closed it, until the next operation reopens it.
    Disk {
        db: Option<Database>,
        path: PathBuf,
    },
}

/// The spool. The index (everything but bodies) is kept in memory; bodies are read on demand.
pub struct Spool {
    backend: Backend,
    index: BTreeMap<u64, Slot>,
    bytes: usize,
    max_bytes: usize,
    next_id: u64,
    set_aside: Option<PathBuf>,
    repaired: usize,
    /// What the queue and window tables held at open, until the pipeline takes it.
    journal: Option<Rows>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.path())
            .field("messages", &self.index.len())
            .field("bytes", &self.bytes)
            .field("max_bytes", &self.max_bytes)
            .field("next_id", &self.next_id)
            .finish()
    }
}

impl Spool {
    /// Opens the spool at `path` (usually `<state_dir>/spool.redb`), creating it if needed.
    ///
    /// A file that is not a readable redb database is renamed aside (see [`Spool::set_aside`])
    /// and an empty spool created in its place. Other failures (permissions, a read-only or full
    /// disk, another process holding the file) are returned: the caller decides whether to run
    /// from memory.
    pub fn open(path: impl AsRef<Path>, max_bytes: usize) -> Result<Spool, Error> {
        let path = path.as_ref();
        let (loaded, set_aside) = load_or_set_aside(path)?;
        let bytes = loaded.index.values().map(|s| s.len).sum();
        let spool = Spool {
            backend: Backend::Disk {
                db: Some(loaded.db),
                path: path.to_path_buf(),
            },
            bytes,
            index: loaded.index,
            max_bytes,
            next_id: loaded.next_id,
            set_aside,
            repaired: loaded.repaired,
            journal: Some(loaded.journal),
        };
        let journal = spool.journal.as_ref().expect("just set");
        tracing::info!(
            path = %path.display(),
            messages = spool.len(),
            bytes = spool.bytes,
            next_id = spool.next_id,
            queued_events = journal.queue.len(),
            open_windows = journal.windows.len(),
            "spool opened"
        );
        Ok(spool)
    }

    /// A spool that lives in memory only: same bound and eviction, lost on exit.
    pub fn memory(max_bytes: usize) -> Spool {
        Spool {
            backend: Backend::Memory(HashMap::new()),
            index: BTreeMap::new(),
            bytes: 0,
            max_bytes,
            next_id: 1,
            set_aside: None,
            repaired: 0,
            journal: None,
        }
    }

    /// The events and open windows the last run left (once; empty for a memory spool).
    pub fn take_journal(&mut self) -> Rows {
        self.journal.take().unwrap_or_default()
    }

    /// Writes one journal batch in one commit. A memory spool keeps no journal.
    pub fn write_journal(&mut self, batch: &Batch) -> Result<(), Error> {
        let written = self.disk(|db| {
            let txn = db.begin_write()?;
            {
                let mut windows = txn.open_table(WINDOWS)?;
                for id in &batch.window_removes {
                    windows.remove(id)?;
                }
                for (id, row) in &batch.window_upserts {
                    windows.insert(id, row.as_slice())?;
                }
                let mut queue = txn.open_table(QUEUE)?;
                for seq in &batch.removes {
                    queue.remove(seq)?;
                }
                for (seq, row) in &batch.inserts {
                    queue.insert(seq, row.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        });
        match written {
            Some(result) => result.map_err(Error::Write),
            None => Ok(()),
        }
    }

    /// Whether appended messages survive a restart.
    pub fn is_durable(&self) -> bool {
        matches!(self.backend, Backend::Disk { .. })
    }

    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Disk { path, .. } => Some(path),
            Backend::Memory(_) => None,
        }
    }

    /// Where a corrupt file found by [`Spool::open`] was moved, if it was.
    pub fn set_aside(&self) -> Option<&Path> {
        self.set_aside.as_deref()
    }

    /// Records removed by [`Spool::open`] because they were not in a known format.
    pub fn repaired(&self) -> usize {
        self.repaired
    }

    /// Number of stored messages.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Sum of stored body sizes (what `max_bytes` bounds).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Changes the bound; the next append evicts down to it.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    /// The id the next append will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Stored messages, oldest (lowest id) first.
    pub fn pending(&self) -> impl Iterator<Item = Entry> + '_ {
        self.index.iter().map(|(&id, s)| Entry {
            id,
            priority: s.priority,
            output: s.output,
            events: s.events,
            len: s.len,
        })
    }

    pub fn get(&self, id: u64) -> Option<Entry> {
        self.index.get(&id).map(|s| Entry {
            id,
            priority: s.priority,
            output: s.output,
            events: s.events,
            len: s.len,
        })
    }

    /// Stored messages not in flight, oldest first: what to send next.
    pub fn idle(&self) -> impl Iterator<Item = Entry> + '_ {
        self.index
            .iter()
            .filter(|(_, s)| !s.in_flight)
            .map(|(&id, s)| Entry {
                id,
                priority: s.priority,
                output: s.output,
                events: s.events,
                len: s.len,
            })
    }

    pub fn in_flight(&self) -> usize {
        self.index.values().filter(|s| s.in_flight).count()
    }

    pub fn is_in_flight(&self, id: u64) -> bool {
        self.index.get(&id).is_some_and(|s| s.in_flight)
    }

    /// Marks a message as handed to the sink (protected from eviction) or back to waiting.
    /// In memory only: after a restart nothing is in flight.
    pub fn set_in_flight(&mut self, id: u64, in_flight: bool) {
        if let Some(s) = self.index.get_mut(&id) {
            s.in_flight = in_flight;
        }
    }

    /// Marks every message from `id` on as waiting again (a failed delivery resends them all).
    pub fn retry_from(&mut self, id: u64) {
        for s in self.index.range_mut(id..).map(|(_, s)| s) {
            s.in_flight = false;
        }
    }

    /// Which messages must go for `len` more bytes to fit, or `Full`.
    fn victims(&self, len: usize) -> Result<Vec<Evicted>, Error> {
        let mut over = (self.bytes + len).saturating_sub(self.max_bytes);
        if over == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        // Oldest Low (and anything not High) first, then oldest High.
        for high in [false, true] {
            for e in self.idle() {
                if over == 0 {
                    break;
                }
                if (e.priority == Priority::High) == high {
                    over = over.saturating_sub(e.len);
                    out.push(e);
                }
            }
        }
        if over > 0 && self.index.values().any(|s| s.in_flight) {
            return Err(Error::Full { len });
        }
        // Nothing is in flight and it still does not fit: a message larger than the whole
        // bound is stored alone rather than never sent.
        Ok(out)
    }

    /// Runs `op` on the database (`None` for the in-memory spool). A database closed by an
    /// earlier I/O error is reopened first; an I/O error closes it, because redb refuses every
    /// later operation until it is reopened (a full disk must not disable the spool for good).
    fn disk<T>(
        &mut self,
        op: impl FnOnce(&Database) -> Result<T, redb::Error>,
    ) -> Option<Result<T, redb::Error>> {
        let Backend::Disk { db, path } = &mut self.backend else {
            return None;
        };
        if db.is_none() {
            match load_or_set_aside(path) {
                Ok((loaded, set_aside)) => {
                    tracing::info!(path = %path.display(), "spool reopened after an I/O error");
                    *db = Some(loaded.db);
                    if set_aside.is_some() {
                        self.set_aside = set_aside;
                    }
                    // The file is the truth now; what is in flight stays so.
                    let mut index = loaded.index;
                    for (id, slot) in index.iter_mut() {
                        slot.in_flight = self.index.get(id).is_some_and(|s| s.in_flight);
                    }
                    self.bytes = index.values().map(|s| s.len).sum();
                    self.index = index;
                    self.next_id = self.next_id.max(loaded.next_id);
                }
                Err(Error::Open { source, .. }) => return Some(Err(source)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot reopen the spool");
                    return Some(Err(redb::Error::DatabaseClosed));
                }
            }
        }
        let Backend::Disk { db, .. } = &mut self.backend else {
            return None;
        };
        let Some(open) = db.as_ref() else {
            return Some(Err(redb::Error::DatabaseClosed));
        };
        let result = op(open);
        if let Err(e) = &result
            && matches!(
                e,
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            )
        {
            *db = None;
        }
        Some(result)
    }

    /// Stores a message for the events output durably; see [`Spool::append_to`].
    pub fn append(
        &mut self,
        priority: Priority,
        body: &[u8],
        events: usize,
    ) -> Result<Appended, Error> {
        self.append_to(Output::Events, priority, body, events, &[])
    }

    /// Stores a message for `output` durably (one commit), evicting older ones if the bound
    /// requires it, and removes the queue rows of the events it carries (`consumed`) in the same
    /// commit. When this returns `Ok`, the message survives a crash.
    pub fn append_to(
        &mut self,
        output: Output,
        priority: Priority,
        body: &[u8],
        events: usize,
        consumed: &[u64],
    ) -> Result<Appended, Error> {
        let evicted = self.victims(body.len())?;
        let id = self.next_id;
        let written = self.disk(|db| {
            let txn = db.begin_write()?;
            {
                let mut records = txn.open_table(RECORDS)?;
                for e in &evicted {
                    records.remove(e.id)?;
                }
                records.insert(id, encode(output, priority, events, body).as_slice())?;
                txn.open_table(META)?.insert(NEXT_ID, id + 1)?;
                if !consumed.is_empty() {
                    let mut queue = txn.open_table(QUEUE)?;
                    for seq in consumed {
                        queue.remove(seq)?;
                    }
                }
            }
            txn.commit()?;
            Ok(())
        });
        match written {
            Some(result) => result.map_err(Error::Write)?,
            None => {
                if let Backend::Memory(bodies) = &mut self.backend {
                    bodies.insert(id, body.into());
                }
            }
        }
        self.next_id = id + 1;
        for e in &evicted {
            self.forget(e.id);
        }
        self.index.insert(
            id,
            Slot {
                priority,
                output,
                events,
                len: body.len(),
                in_flight: false,
            },
        );
        self.bytes += body.len();
        Ok(Appended { id, evicted })
    }

    /// The body of message `id`.
    pub fn read(&mut self, id: u64) -> Result<Arc<[u8]>, Error> {
        let raw = self.disk(|db| {
            let txn = db.begin_read()?;
            let records = txn.open_table(RECORDS)?;
            let raw = records.get(id)?.map(|g| g.value().to_vec());
            Ok(raw)
        });
        match raw {
            Some(raw) => {
                let raw = raw.map_err(Error::Read)?.ok_or(Error::Corrupt { id })?;
                let stored = decode(&raw).ok_or(Error::Corrupt { id })?;
                Ok(stored.body.into())
            }
            None => match &self.backend {
                Backend::Memory(bodies) => bodies.get(&id).cloned().ok_or(Error::Corrupt { id }),
                Backend::Disk { .. } => Err(Error::Corrupt { id }),
            },
        }
    }

    /// Deletes an acknowledged message (one commit). `Ok(None)` if it was not stored.
    pub fn remove(&mut self, id: u64) -> Result<Option<Entry>, Error> {
        let Some(entry) = self.get(id) else {
            return Ok(None);
        };
        let removed = self.disk(|db| {
            let txn = db.begin_write()?;
            txn.open_table(RECORDS)?.remove(id)?;
            txn.commit()?;
            Ok(())
        });
        if let Some(result) = removed {
            result.map_err(Error::Write)?;
        }
        self.forget(id);
        Ok(Some(entry))
    }

    /// Drops a message from the index (and memory) only: used when deleting it from disk failed
    /// after delivery, so it is not sent again in this run. It may come back after a restart
    /// (a duplicate, never a loss).
    pub fn forget(&mut self, id: u64) {
        if let Some(s) = self.index.remove(&id) {
            self.bytes -= s.len;
        }
        if let Backend::Memory(bodies) = &mut self.backend {
            bodies.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests;
