//! Who made a change: fanotify marks on the directories inotify watches, the pid each change
//! comes with, and what the host's /proc still says of that process.
//!
//! Which fanotify ([`crate::kernel::fanotify`]):
//! - Linux 5.9 and later: a group whose events name the directory (by file handle, mapped to
//!   the watch it was marked for) and the entry, for every change inotify reports: writes,
//!   attribute changes, creations, deletions and both ends of a rename;
//! - older kernels, and directories on file systems that cannot identify files to fanotify (no
//!   fsid or file handles; some FUSE file systems, overlayfs before 6.6): a group whose events
//!   carry a descriptor of the file written, whose path names it; writes only (closed, or each
//!   write outside the lazy directories);
//! - without `CAP_SYS_ADMIN`, outside the host's pid namespace (the pids would be another
//!   namespace's), or on a kernel without fanotify: none, and changes are reported without
//!   their writer (said once in the log and in the collector's status).
//!
//! The process is read when its event is read (it may be gone by the time the change is
//! reported): executable, command line, name, user and container, as the process collector
//! reads them ([`procfs::Reader`]); a process already gone keeps its pid alone. The agent's own
//! changes are not attributed (it writes none where it watches; it reads what it hashes).

use crate::host::HostRoot;
use crate::host::procfs::{self, ProcessInfo};
use crate::kernel::fanotify::{self as fan, Fanotify, Handle, Mode};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether (and how) writers are named; [`WriterMode::Auto`] outside tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterMode {
    /// Directory handles and names where the kernel has them (5.9), else descriptors.
    Auto,
    /// Descriptors only (what kernels before 5.9 get).
    Descriptor,
    /// Not at all.
    Off,
}

/// `CAP_SYS_ADMIN`'s bit in the capability sets.
const CAP_SYS_ADMIN: u32 = 21;

/// How long what /proc said of a pid is reused (a process writing many files is read once).
const CACHE_FOR: Duration = Duration::from_secs(1);

/// At most this many processes are remembered at once.
const MAX_CACHED: usize = 64;

/// Bytes read at once from the handle-and-name group: some 150 events.
const NAME_READ_BYTES: usize = 64 * 1024;

/// Events read at once from the descriptor group: each holds an open descriptor until it is
/// handled, so they are read a few at a time.
const DESCRIPTOR_READ_EVENTS: usize = 64;

/// Reads of one group before the loop goes on to the others.
const MAX_READS: usize = 64;

/// Logged once per process, not at every reconfiguration.
static SAID_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// Where a change happened, as its event said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// An entry of the directory watched as `wd`.
    Entry { wd: i32, name: OsString },
    /// A host path (from a descriptor).
    Path(PathBuf),
}

/// One change with its writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub place: Place,
    pub pid: u32,
}

/// The fanotify groups and what is needed to read them.
pub struct Writers {
    /// Events with a directory handle and a name.
    named: Option<Fanotify>,
    /// Events with a descriptor (made when first needed).
    described: Option<Fanotify>,
    /// Descriptor groups may still be made (not when the first attempt failed or `Off`).
    may_describe: bool,
    /// Why writers are not named at all.
    off: Option<String>,
    /// Directory handle → inotify watch, and back (to forget a watch's handle).
    handles: HashMap<Handle, i32>,
    by_wd: HashMap<i32, Option<Handle>>,
    /// The host root as the agent's mount namespace names it (for descriptor paths).
    root: PathBuf,
    procs: procfs::Reader,
    cache: HashMap<u32, (Instant, ProcessInfo)>,
    me: u32,
    buf: Vec<u8>,
    /// Watches whose directory could not be marked.
    unmarked: HashSet<i32>,
    /// Queue overflows since start (writers of some changes not seen).
    pub overflows: u64,
}

impl Writers {
    /// Sets up what `mode` and the kernel allow; never fails (see [`Writers::off`]).
    pub fn new(host: &HostRoot, mode: WriterMode) -> Writers {
        let mut w = Writers {
            named: None,
            described: None,
            may_describe: mode != WriterMode::Off,
            off: None,
            handles: HashMap::new(),
            by_wd: HashMap::new(),
            root: std::fs::canonicalize(host.root()).unwrap_or_else(|_| host.root().into()),
            procs: procfs::Reader::new(host),
            cache: HashMap::new(),
            me: std::process::id(),
            buf: Vec::new(),
            unmarked: HashSet::new(),
            overflows: 0,
        };
        w.off = w.start(mode);
        if let Some(why) = &w.off
            && mode != WriterMode::Off
            && !SAID_UNAVAILABLE.swap(true, Ordering::Relaxed)
        {
            tracing::info!(
                collector = super::COLLECTOR,
                "file changes are reported without the process that made them: {why}"
            );
        }
        w
    }

    /// Makes the group `mode` asks for; returns why there is none.
    fn start(&mut self, mode: WriterMode) -> Option<String> {
        if mode == WriterMode::Off {
            return Some("off".into());
        }
        if has_cap_sys_admin() == Some(false) {
            self.may_describe = false;
            return Some("fanotify needs CAP_SYS_ADMIN".into());
        }
        // The pids fanotify gives are the agent's namespace's; /proc is the host's.
        let mine = std::fs::read_link("/proc/self/ns/pid").ok();
        let host = self.procs.host_namespace("pid");
        if let (Some(mine), Some(host)) = (mine, host)
            && mine.as_os_str() != host.as_str()
        {
            self.may_describe = false;
            return Some("the agent is not in the host's pid namespace (PidMode host)".into());
        }
        if mode == WriterMode::Auto {
            match Fanotify::new(Mode::Name) {
                Ok(g) => {
                    self.named = Some(g);
                    return None;
                }
                // Before 5.9: no names; descriptors below.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => {
                    self.may_describe = false;
                    return Some(why_not(&e));
                }
            }
        }
        match Fanotify::new(Mode::Descriptor) {
            Ok(g) => {
                self.described = Some(g);
                None
            }
            Err(e) => {
                self.may_describe = false;
                Some(why_not(&e))
            }
        }
    }

    /// Why writers are not named, when they are not.
    pub fn off(&self) -> Option<&str> {
        self.off.as_deref()
    }

    /// How: `names`, `descriptors`, `names and descriptors` (some file systems), or `off`.
    pub fn how(&self) -> &'static str {
        if self.off.is_some() {
            "off"
        } else if self.named.is_none() {
            "descriptors"
        } else if self.by_wd.values().any(Option::is_none) {
            "names and descriptors"
        } else {
            "names"
        }
    }

    /// Directories marked.
    pub fn marked(&self) -> usize {
        self.by_wd.len()
    }

    /// Watched directories that could not be marked.
    pub fn unmarked(&self) -> usize {
        self.unmarked.len()
    }

    /// Marks the directory watched as `wd` (open as `dir`); `lazy` directories are followed by
    /// writes closed, not every write, as inotify follows them.
    pub fn mark(&mut self, wd: i32, dir: BorrowedFd<'_>, lazy: bool) -> io::Result<()> {
        if self.off.is_some() || self.by_wd.contains_key(&wd) {
            return Ok(());
        }
        let modify = if lazy { 0 } else { fan::FAN_MODIFY };
        if let Some(g) = &self.named {
            let mask = fan::FAN_CLOSE_WRITE
                | modify
                | fan::FAN_ATTRIB
                | fan::FAN_CREATE
                | fan::FAN_DELETE
                | fan::FAN_MOVED_FROM
                | fan::FAN_MOVED_TO
                | fan::FAN_EVENT_ON_CHILD
                | fan::FAN_ONDIR;
            let named = fan::dir_handle(dir).and_then(|h| g.mark_dir(dir, mask).map(|_| h));
            match named {
                Ok(h) => {
                    self.handles.insert(h.clone(), wd);
                    self.by_wd.insert(wd, Some(h));
                    return Ok(());
                }
                // The file system cannot name its files to fanotify: descriptors can.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENODEV | libc::EOPNOTSUPP | libc::EXDEV | libc::EOVERFLOW)
                    ) => {}
                Err(e) => {
                    self.unmarked.insert(wd);
                    return Err(e);
                }
            }
        }
        if self.described.is_none() && self.may_describe {
            match Fanotify::new(Mode::Descriptor) {
                Ok(g) => self.described = Some(g),
                Err(e) => {
                    self.may_describe = false;
                    self.unmarked.insert(wd);
                    return Err(e);
                }
            }
        }
        let Some(g) = &self.described else {
            self.unmarked.insert(wd);
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        };
        match g.mark_dir(dir, fan::FAN_CLOSE_WRITE | modify | fan::FAN_EVENT_ON_CHILD) {
            Ok(()) => {
                self.by_wd.insert(wd, None);
                Ok(())
            }
            Err(e) => {
                self.unmarked.insert(wd);
                Err(e)
            }
        }
    }

    /// Forgets the directory watched as `wd` (its watch is gone: so is its inode's mark, or it
    /// goes with the inode).
    pub fn forget(&mut self, wd: i32) {
        self.unmarked.remove(&wd);
        if let Some(Some(h)) = self.by_wd.remove(&wd) {
            self.handles.remove(&h);
        }
    }

    /// The groups' descriptors, to wait on.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.named.iter().chain(&self.described).map(|g| g.as_fd())
    }

    /// Reads what the `i`th group of [`Writers::fds`] has queued (until it is empty, or
    /// [`MAX_READS`] reads): the changes of other processes, at places this collector watches.
    pub fn read(&mut self, i: usize) -> io::Result<Vec<Seen>> {
        let Some(g) = self.named.iter().chain(&self.described).nth(i) else {
            return Ok(Vec::new());
        };
        let room = match g.mode() {
            Mode::Name => NAME_READ_BYTES,
            Mode::Descriptor => DESCRIPTOR_READ_EVENTS * fan::METADATA_LEN,
        };
        let mut out = Vec::new();
        let mut buf = std::mem::take(&mut self.buf);
        // Bounded, so a process writing without pause cannot keep the loop here: what is left
        // is read after inotify's notifications, at the next wait.
        for _ in 0..MAX_READS {
            let events = match g.read_events(&mut buf, room) {
                Ok(e) => e,
                Err(e) => {
                    self.buf = buf;
                    return Err(e);
                }
            };
            if events.is_empty() {
                break;
            }
            for e in events {
                if e.mask & fan::FAN_Q_OVERFLOW != 0 {
                    self.overflows += 1;
                    continue;
                }
                // 0: a process the agent's pid namespace does not see.
                if e.pid == 0 || e.pid == self.me {
                    continue;
                }
                let place = match (&e.entry, &e.file) {
                    (Some(entry), _) => {
                        if entry.name == "." {
                            continue;
                        }
                        let Some(wd) = self.handles.get(&entry.dir) else {
                            continue;
                        };
                        Place::Entry {
                            wd: *wd,
                            name: entry.name.clone(),
                        }
                    }
                    (None, Some(file)) => {
                        let Some(p) = fan::fd_path(file.as_fd())
                            .ok()
                            .and_then(|p| host_path(&self.root, &p))
                        else {
                            continue;
                        };
                        Place::Path(p)
                    }
                    (None, None) => continue,
                };
                out.push(Seen { place, pid: e.pid });
            }
        }
        self.buf = buf;
        Ok(out)
    }

    /// What the host's /proc says of `pid` now (its pid alone once it is gone).
    pub fn process(&mut self, pid: u32, now: Instant) -> ProcessInfo {
        if let Some((at, info)) = self.cache.get(&pid)
            && now.duration_since(*at) < CACHE_FOR
        {
            return info.clone();
        }
        let info = self.procs.read(pid, procfs::Liveness::Unknown);
        if self.cache.len() >= MAX_CACHED {
            self.cache
                .retain(|_, (at, _)| now.duration_since(*at) < CACHE_FOR);
            if self.cache.len() >= MAX_CACHED {
                self.cache.clear();
            }
        }
        self.cache.insert(pid, (now, info.clone()));
        info
    }
}

/// What a failed `fanotify_init` means for the status.
fn why_not(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "fanotify needs CAP_SYS_ADMIN".into(),
        Some(libc::ENOSYS) => "the kernel has no fanotify".into(),
        _ => format!("fanotify: {e}"),
    }
}

/// Whether the agent has `CAP_SYS_ADMIN` (its effective set in `/proc/self/status`); `None`
/// when that cannot be read (the kernel then decides).
fn has_cap_sys_admin() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    cap_in_status(&status, CAP_SYS_ADMIN)
}

/// Whether `CapEff` in a `status` text has capability `cap`.
pub fn cap_in_status(status: &str, cap: u32) -> Option<bool> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let set = u64::from_str_radix(hex, 16).ok()?;
    Some(set & (1 << cap) != 0)
}

/// The host path of `seen` (a path in the agent's mount namespace) under the host root
/// `root`: `None` when it is not under it, or names a file since deleted.
pub fn host_path(root: &Path, seen: &Path) -> Option<PathBuf> {
    if seen.as_os_str().as_encoded_bytes().ends_with(b" (deleted)") || !seen.is_absolute() {
        return None;
    }
    let rest = seen.strip_prefix(root).ok()?;
    Some(Path::new("/").join(rest))
}
