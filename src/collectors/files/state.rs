//! What is known of each watched file (size, mode, owner, modification time, hash), how it is
//! read from the host, compared, and kept in the state directory between runs.

use super::watch::Target;
use crate::host::{FileKind, HostRoot};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Files up to this size are hashed; a larger one is reported without a hash (reading a
/// large binary on every change would cost more than the signal is worth).
pub const HASH_MAX_BYTES: u64 = 1024 * 1024;

/// At most this many paths are remembered (about 200 bytes each in memory and in the state
/// file: some 4 MiB at the cap). Past it, new paths are reported without `HashBefore` and not
/// compared after a restart; [`Table::full`] counts them.
pub const MAX_ENTRIES: usize = 20_000;

/// Subdirectories of a `/**` target are walked at most this deep.
pub const MAX_DEPTH: usize = 8;

/// The state file, in the state directory.
pub const STATE_FILE: &str = "file-integrity.json";

/// One path as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `file`, `dir`, `symlink`, `fifo`, … ([`kind_name`]).
    pub kind: String,
    pub size: u64,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// SHA-256 (hex) of a regular file of at most [`HASH_MAX_BYTES`]; `None` when not hashed
    /// (too large, lazy, unreadable, not a regular file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Has a `security.capability` attribute (file capabilities).
    #[serde(default)]
    pub caps: bool,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.kind == "dir"
    }

    /// Whether the content differs (hash when both are known, else size and time). A
    /// directory's own size and time change with its entries, which are reported themselves.
    pub fn content_differs(&self, other: &Entry) -> bool {
        if self.kind != other.kind {
            return true;
        }
        if self.is_dir() {
            return false;
        }
        match (&self.hash, &other.hash) {
            (Some(a), Some(b)) => a != b,
            _ => self.size != other.size || self.mtime != other.mtime,
        }
    }

    /// Whether mode, owner or file capabilities differ.
    pub fn attributes_differ(&self, other: &Entry) -> bool {
        (self.mode, self.uid, self.gid, self.caps) != (other.mode, other.uid, other.gid, other.caps)
    }
}

/// `file`, `dir`, … as kept in [`Entry::kind`] and reported in `ExtraDetails.Type`.
pub fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "file",
        FileKind::Dir => "dir",
        FileKind::Symlink => "symlink",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "socket",
        FileKind::CharDevice => "chardev",
        FileKind::BlockDevice => "blockdev",
        FileKind::Unknown => "unknown",
    }
}

/// What reading one path found.
#[derive(Debug)]
pub enum Look {
    Gone,
    /// Seen; `note` says why it was not hashed when it could have been (refused, unreadable).
    Seen {
        entry: Entry,
        note: Option<String>,
    },
    /// Its metadata could not be read (permission, a refusal of the host root).
    Failed(String),
}

/// Reads one host path: `lstat` (a symlink is recorded as one, never followed), and for a
/// regular file up to [`HASH_MAX_BYTES`] its hash (unless `hash` is false) and whether it has
/// file capabilities. Opening goes through [`HostRoot::open`], which refuses anything but a
/// regular file before opening it, so a FIFO or a device at a watched path cannot block.
pub fn look(host: &HostRoot, path: &Path, hash: bool) -> Look {
    let meta = match host.symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Look::Gone,
        Err(e) => return Look::Failed(e.reason()),
    };
    let kind = FileKind::of(&meta);
    let mut entry = Entry {
        kind: kind_name(kind).to_string(),
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        hash: None,
        caps: false,
    };
    let mut note = None;
    if kind == FileKind::File {
        match host.open(path) {
            Ok((file, _)) => {
                entry.caps =
                    crate::kernel::inotify::has_xattr(file.as_fd(), c"security.capability")
                        .unwrap_or(false);
                if hash && meta.len() <= HASH_MAX_BYTES {
                    match sha256(file) {
                        Ok(Some(h)) => entry.hash = Some(h),
                        Ok(None) => note = Some(format!("larger than {HASH_MAX_BYTES} bytes")),
                        Err(e) => note = Some(format!("unreadable: {e}")),
                    }
                } else if meta.len() > HASH_MAX_BYTES {
                    note = Some(format!("larger than {HASH_MAX_BYTES} bytes"));
                }
            }
            // Gone since the lstat, or replaced by something else: the next event says.
            Err(e) if e.is_not_found() => return Look::Gone,
            Err(e) => note = Some(e.reason()),
        }
    }
    Look::Seen { entry, note }
}

/// SHA-256 of what `file` holds; `None` when it grew past [`HASH_MAX_BYTES`] while read.
fn sha256(file: std::fs::File) -> std::io::Result<Option<String>> {
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    let mut r = file.take(HASH_MAX_BYTES + 1);
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    if total > HASH_MAX_BYTES {
        return Ok(None);
    }
    Ok(Some(hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Path → what was last seen, bounded by [`MAX_ENTRIES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// The targets' paths (configured form) the entries were taken for: after a restart only
    /// paths under targets in both lists are compared, so a changed configuration is not
    /// reported as files appearing or vanishing.
    pub targets: Vec<String>,
    pub entries: BTreeMap<String, Entry>,
    /// Paths not remembered because the table was full (since start).
    #[serde(skip)]
    pub full: u64,
}

impl Table {
    /// Remembers `entry` for `path` (unless the table is full and the path new).
    pub fn put(&mut self, path: String, entry: Entry) {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&path) {
            self.full += 1;
            return;
        }
        self.entries.insert(path, entry);
    }
}

/// The configured form of a target (`/var/spool/cron/**`), as kept in [`Table::targets`].
pub fn target_spec(t: &Target) -> String {
    let p = t.path.to_string_lossy();
    if t.recursive {
        format!("{}/**", p.trim_end_matches('/'))
    } else {
        p.into_owned()
    }
}

/// Reads every target: the path itself and, for a directory, its entries (its subdirectories'
/// too for a recursive one, at most [`MAX_DEPTH`] deep). Lazy targets' files are not hashed.
/// Returns the table and the paths that could not be read (path, why).
pub fn scan(host: &HostRoot, targets: &[Target]) -> (Table, Vec<(String, String)>) {
    let mut table = Table {
        targets: targets.iter().map(target_spec).collect(),
        ..Table::default()
    };
    let mut failed = Vec::new();
    for t in targets {
        scan_path(host, t, &t.path, 0, &mut table, &mut failed);
    }
    (table, failed)
}

fn scan_path(
    host: &HostRoot,
    t: &Target,
    path: &Path,
    depth: usize,
    table: &mut Table,
    failed: &mut Vec<(String, String)>,
) {
    let key = path.to_string_lossy().into_owned();
    if table.entries.contains_key(&key) {
        return;
    }
    let entry = match look(host, path, !t.lazy) {
        Look::Gone => return,
        Look::Failed(why) => {
            failed.push((key, why));
            return;
        }
        Look::Seen { entry, .. } => entry,
    };
    let is_dir = entry.is_dir()
        || (entry.kind == "symlink" && depth == 0 && host.metadata(path).is_ok_and(|m| m.is_dir()));
    table.put(key, entry);
    // A target's own directory is listed; below it only for recursive targets.
    if !is_dir || (depth > 0 && !t.recursive) || depth >= MAX_DEPTH {
        return;
    }
    let dir = match host.read_dir(path) {
        Ok(d) => d,
        Err(e) => {
            failed.push((path.to_string_lossy().into_owned(), e.reason()));
            return;
        }
    };
    let mut names: Vec<PathBuf> = Vec::new();
    for e in dir {
        match e {
            Ok(e) => names.push(path.join(&e.name)),
            Err(e) => {
                failed.push((path.to_string_lossy().into_owned(), e.to_string()));
                break;
            }
        }
        if names.len() >= MAX_ENTRIES {
            break;
        }
    }
    names.sort();
    for child in names {
        if !t.recursive {
            // Entries of a plain directory target: recorded, not descended into.
            let key = child.to_string_lossy().into_owned();
            if table.entries.contains_key(&key) {
                continue;
            }
            match look(host, &child, !t.lazy) {
                Look::Seen { entry, .. } => table.put(key, entry),
                Look::Failed(why) => failed.push((key, why)),
                Look::Gone => {}
            }
        } else {
            scan_path(host, t, &child, depth + 1, table, failed);
        }
    }
}

/// A difference between two tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub operation: crate::event::FileOperation,
    pub before: Option<Entry>,
    pub after: Option<Entry>,
}

/// What changed from `old` to `new`, for paths under targets both were taken for.
pub fn diff(old: &Table, new: &Table) -> Vec<Difference> {
    use crate::event::FileOperation as Op;
    let common: Vec<Target> = new
        .targets
        .iter()
        .filter(|t| old.targets.contains(t))
        .map(|t| Target::parse(t))
        .collect();
    let covered = |p: &str| common.iter().any(|t| t.covers(Path::new(p)));
    let mut out = Vec::new();
    for (path, n) in &new.entries {
        if !covered(path) {
            continue;
        }
        let operation = match old.entries.get(path) {
            None => Op::Created,
            Some(o) if o.content_differs(n) => Op::Modified,
            Some(o) if o.attributes_differ(n) => Op::Attributes,
            Some(_) => continue,
        };
        out.push(Difference {
            path: path.clone(),
            operation,
            before: old.entries.get(path).cloned(),
            after: Some(n.clone()),
        });
    }
    for (path, o) in &old.entries {
        if covered(path) && !new.entries.contains_key(path) {
            out.push(Difference {
                path: path.clone(),
                operation: Op::Deleted,
                before: Some(o.clone()),
                after: None,
            });
        }
    }
    out
}

/// Keeps the hashes `old` knew for files `new` did not hash (lazy directories are hashed only
/// when they change) while size, time and mode are the same.
pub fn carry_hashes(new: &mut Table, old: &Table) {
    for (path, n) in new.entries.iter_mut() {
        if n.hash.is_none()
            && let Some(o) = old.entries.get(path)
            && o.hash.is_some()
            && !o.attributes_differ(n)
            && (o.kind.as_str(), o.size, o.mtime) == (n.kind.as_str(), n.size, n.mtime)
        {
            n.hash = o.hash.clone();
        }
    }
}

pub fn load(path: &Path) -> Option<Table> {
    crate::state::read_json_or_warn(
        path,
        super::COLLECTOR,
        "cannot read the saved file integrity state; changes made while stopped are not reported",
        "the saved file integrity state is corrupt; changes made while stopped are not reported",
    )
}

pub fn save(path: &Path, table: &Table) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(table).map_err(std::io::Error::other)?;
    crate::state::write_atomic(path, &bytes)
}
