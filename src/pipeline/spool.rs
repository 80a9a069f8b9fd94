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

use super::Output;
use super::journal::{Batch, Rows};
use crate::event::Priority;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
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

fn priority_byte(p: Priority) -> u8 {
    match p {
        Priority::High => 0,
        Priority::Low => 1,
        Priority::Off => 2,
    }
}

fn output_byte(o: Output) -> u8 {
    match o {
        Output::Events => 0,
        Output::Alerts => 1,
    }
}

fn encode(output: Output, priority: Priority, events: usize, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + body.len());
    v.push(FORMAT);
    v.push(priority_byte(priority));
    v.extend_from_slice(&(events as u64).to_le_bytes());
    v.push(output_byte(output));
    v.extend_from_slice(body);
    v
}

/// What a stored record's header says.
struct Decoded<'a> {
    output: Output,
    priority: Priority,
    events: usize,
    body: &'a [u8],
}

/// Splits a stored record (format 2, or format 1 of an earlier version) into its header fields
/// and body; `None` if it is not one we wrote.
fn decode(raw: &[u8]) -> Option<Decoded<'_>> {
    let (header, body, output) = match *raw.first()? {
        FORMAT => {
            let (header, body) = raw.split_at_checked(HEADER)?;
            let output = match header[HEADER_1] {
                0 => Output::Events,
                1 => Output::Alerts,
                _ => return None,
            };
            (header, body, output)
        }
        FORMAT_1 => {
            let (header, body) = raw.split_at_checked(HEADER_1)?;
            (header, body, Output::Events)
        }
        _ => return None,
    };
    let priority = match header[1] {
        0 => Priority::High,
        1 => Priority::Low,
        2 => Priority::Off,
        _ => return None,
    };
    let events = u64::from_le_bytes(header[2..HEADER_1].try_into().ok()?);
    Some(Decoded {
        output,
        priority,
        events: usize::try_from(events).ok()?,
        body,
    })
}

/// What opening the file found.
struct Loaded {
    db: Database,
    index: BTreeMap<u64, Slot>,
    next_id: u64,
    repaired: usize,
    journal: Rows,
}

/// Opens (or creates) the database and loads the index. Panics inside redb on a damaged file
/// (its debug assertions) are caught and reported as corruption.
fn load(path: &Path) -> Result<Loaded, redb::Error> {
    let opened = catch_unwind(AssertUnwindSafe(|| -> Result<Loaded, redb::Error> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            // Verify every page checksum, so a file damaged outside redb is reported instead
            // of trusted (a plain open may panic on it).
            .set_check_integrity_on_open(true)
            .create(path)?;
        let txn = db.begin_write()?;
        let mut index = BTreeMap::new();
        let repaired;
        let next_id;
        let mut journal = Rows::default();
        {
            let mut records = txn.open_table(RECORDS)?;
            let mut meta = txn.open_table(META)?;
            let mut bad = Vec::new();
            for item in records.iter()? {
                let (k, v) = item?;
                let id = k.value();
                match decode(v.value()) {
                    Some(Decoded {
                        output,
                        priority,
                        events,
                        body,
                    }) => {
                        index.insert(
                            id,
                            Slot {
                                priority,
                                output,
                                events,
                                len: body.len(),
                                in_flight: false,
                            },
                        );
                    }
                    None => bad.push(id),
                }
            }
            for id in &bad {
                tracing::error!(id, "spool record is not in a known format; removing it");
                records.remove(id)?;
            }
            repaired = bad.len();
            let stored = meta.get(NEXT_ID)?.map(|g| g.value()).unwrap_or(1);
            // Past every id seen, even of records just removed.
            let last = index
                .keys()
                .chain(&bad)
                .max()
                .map_or(0, |id| id.saturating_add(1));
            next_id = stored.max(last).max(1);
            meta.insert(NEXT_ID, next_id)?;
            for item in txn.open_table(QUEUE)?.iter()? {
                let (k, v) = item?;
                journal.queue.push((k.value(), v.value().to_vec()));
            }
            for item in txn.open_table(WINDOWS)?.iter()? {
                let (k, v) = item?;
                journal.windows.push((k.value(), v.value().to_vec()));
            }
        }
        txn.commit()?;
        Ok(Loaded {
            db,
            index,
            next_id,
            repaired,
            journal,
        })
    }));
    opened.unwrap_or_else(|_| {
        Err(redb::Error::Corrupted(
            "redb panicked while opening the file".into(),
        ))
    })
}

/// `<path>.corrupt-<unix time>`, plus a counter if that exists already.
fn set_aside_name(path: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut base = path.as_os_str().to_owned();
    base.push(format!(".corrupt-{secs}"));
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        let mut next = base.clone();
        next.push(format!(".{n}"));
        candidate = PathBuf::from(next);
        n += 1;
    }
    candidate
}

/// Deletes all but the newest `KEEP_CORRUPT` set-aside files of `path`.
fn prune_set_aside(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.corrupt-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    let mut old: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(KEEP_CORRUPT);
    for (_, p) in old.into_iter().take(excess) {
        if let Err(e) = std::fs::remove_file(&p) {
            tracing::warn!(path = %p.display(), error = %e, "cannot delete an old corrupt spool");
        }
    }
}

/// [`load`], setting a corrupt file aside and starting over once.
fn load_or_set_aside(path: &Path) -> Result<(Loaded, Option<PathBuf>), Error> {
    match load(path) {
        Ok(loaded) => Ok((loaded, None)),
        Err(e) if is_corruption(&e) => {
            prune_set_aside(path);
            let aside = set_aside_name(path);
            std::fs::rename(path, &aside).map_err(|source| Error::SetAside {
                path: path.to_path_buf(),
                source,
            })?;
            tracing::error!(
                path = %path.display(),
                moved_to = %aside.display(),
                error = %e,
                "the spool is corrupt; set it aside and starting with an empty spool"
            );
            match load(path) {
                Ok(loaded) => Ok((loaded, Some(aside))),
                Err(e) if is_corruption(&e) => Err(Error::StillCorrupt {
                    path: path.to_path_buf(),
                }),
                Err(source) => Err(Error::Open {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        }
        Err(source) => Err(Error::Open {
            path: path.to_path_buf(),
            source,
        }),
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
mod tests {
    use super::*;

    fn body(id: u8, len: usize) -> Vec<u8> {
        vec![id; len]
    }

    fn ids(s: &Spool) -> Vec<u64> {
        s.pending().map(|e| e.id).collect()
    }

    fn both(max_bytes: usize) -> Vec<(Spool, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let disk = Spool::open(dir.path().join(FILE_NAME), max_bytes).unwrap();
        vec![(Spool::memory(max_bytes), None), (disk, Some(dir))]
    }

    #[test]
    fn records_survive_a_reopen_and_ids_keep_increasing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut s = Spool::open(&path, 1 << 20).unwrap();
        assert!(s.is_durable());
        let a = s.append(Priority::High, b"first", 3).unwrap();
        let b = s.append(Priority::Low, b"second", 1).unwrap();
        let c = s.append(Priority::Low, b"", 0).unwrap();
        assert_eq!((a.id, b.id, c.id), (1, 2, 3));
        assert!(a.evicted.is_empty());
        s.remove(b.id).unwrap();
        s.remove(c.id).unwrap();
        assert_eq!(s.remove(c.id).unwrap(), None);
        drop(s);

        let mut s = Spool::open(&path, 1 << 20).unwrap();
        assert_eq!(s.set_aside(), None);
        assert_eq!(
            s.pending().collect::<Vec<_>>(),
            vec![Entry {
                id: 1,
                priority: Priority::High,
                output: Output::Events,
                events: 3,
                len: 5
            }]
        );
        assert_eq!(&*s.read(1).unwrap(), b"first");
        assert!(matches!(s.read(2), Err(Error::Corrupt { id: 2 })));
        assert_eq!(s.bytes(), 5);
        // Removing everything does not reset the ids.
        s.remove(1).unwrap();
        drop(s);
        let mut s = Spool::open(&path, 1 << 20).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.append(Priority::Low, b"x", 1).unwrap().id, 4);
    }

    #[test]
    fn eviction_takes_the_oldest_low_messages_first_then_the_oldest_high() {
        for (mut s, _dir) in both(40) {
            s.append(Priority::High, &body(1, 10), 1).unwrap();
            s.append(Priority::Low, &body(2, 10), 2).unwrap();
            s.append(Priority::High, &body(3, 10), 3).unwrap();
            s.append(Priority::Low, &body(4, 10), 4).unwrap();
            assert_eq!(s.bytes(), 40);
            // 15 bytes over: the two Low messages go, oldest first.
            let a = s.append(Priority::High, &body(5, 15), 5).unwrap();
            assert_eq!(a.evicted.iter().map(|e| e.id).collect::<Vec<_>>(), [2, 4]);
            assert_eq!(a.evicted.iter().map(|e| e.events).sum::<usize>(), 6);
            assert_eq!(ids(&s), [1, 3, 5]);
            // No Low left: the oldest High goes.
            let a = s.append(Priority::Low, &body(6, 10), 6).unwrap();
            assert_eq!(a.evicted.iter().map(|e| e.id).collect::<Vec<_>>(), [1]);
            assert_eq!(ids(&s), [3, 5, 6]);
            assert_eq!(s.bytes(), 35);
            assert_eq!(&*s.read(5).unwrap(), &body(5, 15)[..]);
            assert!(s.read(1).is_err());
        }
    }

    #[test]
    fn messages_in_flight_are_never_evicted_and_a_full_spool_refuses() {
        for (mut s, _dir) in both(30) {
            for n in 1..=3 {
                s.append(Priority::Low, &body(n, 10), 1).unwrap();
            }
            s.set_in_flight(1, true);
            s.set_in_flight(2, true);
            // Only message 3 may go.
            let a = s.append(Priority::Low, &body(4, 10), 1).unwrap();
            assert_eq!(a.evicted.iter().map(|e| e.id).collect::<Vec<_>>(), [3]);
            s.set_in_flight(4, true);
            // Everything is in flight: the new message is refused and nothing is evicted.
            assert!(matches!(
                s.append(Priority::High, &body(5, 10), 1),
                Err(Error::Full { len: 10 })
            ));
            assert_eq!(ids(&s), [1, 2, 4]);
            // A failed delivery makes them evictable again.
            s.retry_from(2);
            assert!(s.is_in_flight(1) && !s.is_in_flight(2) && !s.is_in_flight(4));
            let a = s.append(Priority::High, &body(6, 10), 1).unwrap();
            assert_eq!(a.evicted.iter().map(|e| e.id).collect::<Vec<_>>(), [2]);
            assert_eq!(ids(&s), [1, 4, a.id]);
        }
    }

    #[test]
    fn a_message_larger_than_the_bound_is_stored_alone() {
        for (mut s, _dir) in both(10) {
            s.append(Priority::High, &body(1, 5), 1).unwrap();
            let a = s.append(Priority::Low, &body(2, 25), 1).unwrap();
            assert_eq!(a.evicted.len(), 1);
            assert_eq!(ids(&s), [a.id]);
            s.set_in_flight(a.id, true);
            assert!(matches!(
                s.append(Priority::Low, &body(3, 1), 1),
                Err(Error::Full { .. })
            ));
        }
    }

    #[test]
    fn a_file_that_is_not_a_database_is_set_aside_and_the_spool_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, b"this is not a redb file, just some text").unwrap();
        let mut s = Spool::open(&path, 1000).unwrap();
        assert!(s.is_empty());
        let aside = s.set_aside().unwrap().to_path_buf();
        assert!(
            aside
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("spool.redb.corrupt-")
        );
        assert_eq!(
            std::fs::read(&aside).unwrap(),
            b"this is not a redb file, just some text"
        );
        assert_eq!(s.append(Priority::Low, b"x", 1).unwrap().id, 1);
    }

    #[test]
    fn only_the_newest_set_aside_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for _ in 0..5 {
            std::fs::write(&path, b"garbage").unwrap();
            let s = Spool::open(&path, 1000).unwrap();
            assert!(s.set_aside().is_some());
        }
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            .count();
        assert_eq!(aside, KEEP_CORRUPT + 1);
    }

    #[test]
    fn records_in_an_unknown_format_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut s = Spool::open(&path, 1000).unwrap();
        s.append(Priority::Low, b"good", 2).unwrap();
        drop(s);
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(RECORDS).unwrap();
                t.insert(7, &b"\x09junk"[..]).unwrap();
                t.insert(8, &b"\x01"[..]).unwrap();
            }
            txn.commit().unwrap();
        }
        let mut s = Spool::open(&path, 1000).unwrap();
        assert_eq!(s.repaired(), 2);
        assert_eq!(ids(&s), [1]);
        // Ids never go back below what was seen on disk.
        assert_eq!(s.append(Priority::Low, b"y", 1).unwrap().id, 9);
    }

    #[test]
    fn a_spool_held_by_another_handle_is_an_error_not_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let _first = Spool::open(&path, 1000).unwrap();
        let err = Spool::open(&path, 1000).unwrap_err();
        assert!(matches!(err, Error::Open { .. }), "{err:?}");
        assert!(err.is_transient());
        assert!(path.exists());
    }

    /// (output, priority, events, body) of a decoded record.
    fn fields(raw: &[u8]) -> Option<(Output, Priority, usize, &[u8])> {
        decode(raw).map(|d| (d.output, d.priority, d.events, d.body))
    }

    #[test]
    fn decode_rejects_short_and_unknown_records() {
        assert_eq!(fields(b""), None);
        assert_eq!(fields(&[FORMAT, 0, 1, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(fields(&[FORMAT, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(fields(&[FORMAT, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]), None);
        assert_eq!(fields(&[FORMAT_1, 0, 1, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(fields(&[9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        let rec = encode(Output::Alerts, Priority::High, 7, b"abc");
        assert_eq!(
            fields(&rec),
            Some((Output::Alerts, Priority::High, 7, &b"abc"[..]))
        );
    }

    #[test]
    fn records_of_the_first_format_are_read_as_events() {
        let mut v1 = vec![FORMAT_1, 1];
        v1.extend_from_slice(&4u64.to_le_bytes());
        v1.extend_from_slice(b"{}");
        assert_eq!(
            fields(&v1),
            Some((Output::Events, Priority::Low, 4, &b"{}"[..]))
        );
    }

    #[test]
    fn the_output_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut s = Spool::open(&path, 1 << 20).unwrap();
        s.append_to(Output::Alerts, Priority::High, b"alert", 1, &[])
            .unwrap();
        s.append(Priority::Low, b"events", 2).unwrap();
        drop(s);
        let s = Spool::open(&path, 1 << 20).unwrap();
        let outputs: Vec<Output> = s.pending().map(|e| e.output).collect();
        assert_eq!(outputs, vec![Output::Alerts, Output::Events]);
    }
}
