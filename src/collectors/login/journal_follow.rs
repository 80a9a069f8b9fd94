//! Following the systemd journal's files when there is no auth.log: which files, where reading
//! stopped in each (saved across restarts), rotation.
//!
//! Files: `*.journal` under `/var/log/journal/<machine-id>/` and `/run/log/journal/<machine-id>/`
//! (the volatile journal), the active `system.journal` and the archived
//! `system@<seqnum-id>-<seqnum>-<realtime>.journal` files journald renames it to. `user-*.journal`
//! files are left out (sshd, sudo, su and login log to the system journal); so are files
//! journald set aside as corrupt (`*.journal~`).
//!
//! A file is known by its `file_id` (header), which stays the same when journald renames it on
//! rotation; the position saved for it is the last entry's seqnum (with the file's seqnum_id),
//! so a restart skips exactly what was read. On the very first start every existing file is
//! taken as read up to its last entry (as for auth.log: no replay of history as new alerts);
//! a file that appears later is read from its first entry.
//!
//! A file that fails a check is counted and left alone until its length changes (journald may
//! still be writing the part that was read too early).

use super::journal::{Entries, JournalError, JournalFile, STATE_ARCHIVED, Walk, id_hex};
use super::{
    Attempts, AuthLine, AuthLogin, COLLECTOR, Error, StartAt, SyslogTime, parse_auth_message,
};
use crate::host::HostRoot;
use chrono::{DateTime, Local, TimeZone};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where journald keeps its files: persistent, then volatile.
pub const JOURNAL_DIRS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];
/// The saved positions, in the state directory.
const JOURNAL_STATE_FILE: &str = "login-journal.json";
/// Journal files followed at once (journald keeps far fewer with its default limits).
pub const MAX_JOURNAL_FILES: usize = 256;
/// Directory entries looked at per scan.
const MAX_SCAN: usize = 4096;
/// Entries read per file per poll; more is read at the next poll, without a pause.
const ENTRIES_PER_POLL: usize = 5000;

/// The programs whose entries are auth lines.
const PROGRAMS: [&str; 6] = ["sshd", "sshd-session", "sshd-auth", "sudo", "su", "login"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SavedJournal {
    seqnum_id: String,
    /// The last entry read (0: none).
    seqnum: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct JournalState {
    version: u32,
    /// By file_id (hex).
    files: BTreeMap<String, SavedJournal>,
}

#[derive(Debug)]
struct Tracked {
    path: String,
    inode: u64,
    jf: JournalFile,
    walk: Walk,
    /// Entries up to this seqnum are already read (restored position, or the first start).
    skip_to: u64,
    /// The last entry read.
    last: u64,
    /// Failed a check at this file length: retried when the length changes.
    broken_at: Option<u64>,
    /// Seen in the last directory scan.
    present: bool,
}

/// What one poll of the journal found.
#[derive(Debug, Default)]
pub struct JournalBatch {
    pub logins: Vec<AuthLogin>,
    /// Files that failed a check (corrupt, truncated, not a journal).
    pub corrupt: u64,
    pub compressed_failed: u64,
    pub oversized: u64,
    pub more: bool,
}

/// Follows the journal files under a host root. Blocking: call it from a blocking thread.
#[derive(Debug)]
pub struct JournalFollower {
    state_path: PathBuf,
    /// By file_id.
    files: HashMap<[u8; 16], Tracked>,
    saved: JournalState,
    /// No state file existed: files found at the first scan count as read to their end.
    first_scan_at_end: bool,
    written: Option<JournalState>,
    attempts: Attempts,
    /// Files that could not be opened as journals, by inode, with their length then: tried
    /// again (and counted again) only when the length changes. At most
    /// [`MAX_JOURNAL_FILES`] entries.
    rejected: HashMap<u64, u64>,
}

impl JournalFollower {
    pub fn open(state_dir: &Path, first_start: StartAt) -> JournalFollower {
        let state_path = state_dir.join(JOURNAL_STATE_FILE);
        let saved: Option<JournalState> = crate::state::read_json_or_warn(
            &state_path,
            COLLECTOR,
            "cannot read saved journal positions; starting at the end of the journal",
            "saved journal positions are corrupt; starting at the end of the journal",
        );
        JournalFollower {
            state_path,
            files: HashMap::new(),
            first_scan_at_end: saved.is_none() && first_start == StartAt::End,
            saved: saved.unwrap_or_default(),
            written: None,
            attempts: Attempts::default(),
            rejected: HashMap::new(),
        }
    }

    /// Whether any journal file is followed.
    pub fn present(&self) -> bool {
        !self.files.is_empty()
    }

    /// Finds new files and reads new entries from every file.
    pub fn poll(&mut self, host: &HostRoot, wall: DateTime<Local>, mono: Instant) -> JournalBatch {
        let mut batch = JournalBatch::default();
        self.scan(host, &mut batch);
        self.first_scan_at_end = false;
        // Oldest first, so that entries of an archived file come before the active one's.
        let mut order: Vec<_> = self
            .files
            .iter()
            .map(|(id, t)| (t.jf.header.head_entry_realtime, *id))
            .collect();
        order.sort();
        let mut out = Vec::new();
        for (_, id) in order {
            let Some(t) = self.files.get_mut(&id) else {
                continue;
            };
            read_file(t, &mut self.attempts, wall, mono, &mut out, &mut batch);
        }
        // Files gone from the directory (vacuumed) are let go once read to their end, or at
        // once when they failed a check (they will not be fixed).
        self.files.retain(|_, t| {
            t.present || (t.broken_at.is_none() && t.walk.taken < t.jf.header.n_entries)
        });
        self.attempts.flush_expired(mono, &mut out);
        batch.logins = out;
        batch
    }

    fn scan(&mut self, host: &HostRoot, batch: &mut JournalBatch) {
        for t in self.files.values_mut() {
            t.present = false;
        }
        let mut looked = 0;
        for base in JOURNAL_DIRS {
            let Ok(mut machines) = host.read_dir(base) else {
                continue;
            };
            let mut dirs = Vec::new();
            while let Some(Ok(entry)) = machines.next() {
                looked += 1;
                if looked > MAX_SCAN {
                    break;
                }
                if let Some(name) = entry.name.to_str()
                    && name.len() == 32
                    && name.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    dirs.push(format!("{base}/{name}"));
                }
            }
            for dir in dirs {
                let Ok(mut listing) = host.read_dir(&dir) else {
                    continue;
                };
                while let Some(Ok(entry)) = listing.next() {
                    looked += 1;
                    if looked > MAX_SCAN {
                        break;
                    }
                    let Some(name) = entry.name.to_str() else {
                        continue;
                    };
                    if !name.ends_with(".journal") || name.starts_with("user-") {
                        continue;
                    }
                    let Ok(meta) = listing.symlink_metadata(&entry.name) else {
                        continue;
                    };
                    let path = format!("{dir}/{name}");
                    if let Some(t) = self.files.values_mut().find(|t| t.inode == meta.ino()) {
                        t.present = true;
                        t.path = path;
                        continue;
                    }
                    if self.files.len() >= MAX_JOURNAL_FILES
                        || self.rejected.get(&meta.ino()) == Some(&meta.len())
                    {
                        continue;
                    }
                    if !self.add(host, &path, batch) {
                        if self.rejected.len() >= MAX_JOURNAL_FILES {
                            self.rejected.clear();
                        }
                        self.rejected.insert(meta.ino(), meta.len());
                    }
                }
            }
        }
    }

    /// Starts following the file at `path`; false when it is no journal file.
    fn add(&mut self, host: &HostRoot, path: &str, batch: &mut JournalBatch) -> bool {
        let Ok((file, meta)) = host.open(path) else {
            return false;
        };
        let jf = match JournalFile::open(file) {
            Ok(jf) => jf,
            Err(e) => {
                tracing::debug!(collector = COLLECTOR, path, error = %e, "unreadable journal file");
                batch.corrupt += 1;
                return false;
            }
        };
        let h = jf.header;
        let saved = self
            .saved
            .files
            .get(&id_hex(&h.file_id))
            .filter(|s| s.seqnum_id == id_hex(&h.seqnum_id));
        let skip_to = match saved {
            Some(s) => s.seqnum,
            None if self.first_scan_at_end => h.tail_entry_seqnum,
            None => 0,
        };
        self.files.insert(
            h.file_id,
            Tracked {
                path: path.to_string(),
                inode: meta.ino(),
                jf,
                walk: Walk::default(),
                skip_to,
                last: skip_to,
                broken_at: None,
                present: true,
            },
        );
        true
    }

    /// Everything held back to count one attempt once, for shutdown.
    pub fn flush_held(&mut self) -> Vec<AuthLogin> {
        let mut out = Vec::new();
        self.attempts.flush_all(&mut out);
        out
    }

    fn state(&self) -> JournalState {
        let mut files = BTreeMap::new();
        for t in self.files.values() {
            files.insert(
                id_hex(&t.jf.header.file_id),
                SavedJournal {
                    seqnum_id: id_hex(&t.jf.header.seqnum_id),
                    seqnum: t.last,
                },
            );
        }
        JournalState { version: 1, files }
    }

    /// Writes the positions if they changed since the last write.
    pub fn save(&mut self) -> Result<(), Error> {
        let state = self.state();
        if self.written.as_ref() == Some(&state)
            || (self.files.is_empty() && self.written.is_none() && self.saved.files.is_empty())
        {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&state).map_err(Error::StateEncode)?;
        crate::state::write_atomic(&self.state_path, &bytes).map_err(|source| {
            Error::StateWrite {
                path: self.state_path.clone(),
                source,
            }
        })?;
        self.saved = state.clone();
        self.written = Some(state);
        Ok(())
    }
}

fn read_file(
    t: &mut Tracked,
    attempts: &mut Attempts,
    wall: DateTime<Local>,
    mono: Instant,
    out: &mut Vec<AuthLogin>,
    batch: &mut JournalBatch,
) {
    if let Err(e) = t.jf.refresh() {
        fail(t, e, batch);
        return;
    }
    if let Some(at) = t.broken_at {
        if t.jf.len() == at {
            return;
        }
        t.broken_at = None;
    }
    if t.walk.taken >= t.jf.header.n_entries {
        return;
    }
    let read: Result<Entries, JournalError> =
        t.jf.read_entries(&mut t.walk, ENTRIES_PER_POLL, t.skip_to);
    let entries = match read {
        Ok(e) => e,
        Err(e) => {
            fail(t, e, batch);
            return;
        }
    };
    batch.compressed_failed += entries.compressed_failed;
    batch.oversized += entries.oversized;
    batch.more |= entries.more;
    for e in entries.entries {
        t.last = t.last.max(e.seqnum);
        let program = e.identifier.as_deref().or(e.comm.as_deref()).unwrap_or("");
        if !PROGRAMS.contains(&program) {
            continue;
        }
        let Some(message) = e.message.as_deref() else {
            continue;
        };
        let time = Local
            .timestamp_micros(i64::try_from(e.realtime).unwrap_or(i64::MAX))
            .single()
            .map(|t| SyslogTime::Rfc3339(t.fixed_offset()));
        let Some(time) = time else { continue };
        let hostname = e.hostname.as_deref().unwrap_or("");
        let line = parse_auth_message(time, hostname, program, e.pid, message);
        if matches!(line, AuthLine::Malformed) {
            continue;
        }
        attempts.feed(line, mono, wall, out);
    }
    if t.jf.header.state == STATE_ARCHIVED && t.walk.taken >= t.jf.header.n_entries {
        // Read to its end; it will not change again.
        t.skip_to = t.last;
    }
}

fn fail(t: &mut Tracked, e: JournalError, batch: &mut JournalBatch) {
    if t.broken_at.is_none() {
        tracing::debug!(collector = COLLECTOR, path = %t.path, error = %e, "journal file failed a check");
        batch.corrupt += 1;
    }
    t.broken_at = Some(t.jf.len());
}
