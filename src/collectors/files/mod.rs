//! `FileChange` events: file integrity monitoring of the host paths where persistence and
//! privilege escalation leave marks (accounts, sudo, sshd, cron, systemd units, shell start-up
//! files, `ld.so.preload`, PAM, the system binaries; [`DEFAULT_PATHS`] and every home's
//! [`HOME_FILES`]), or the paths `fileIntegrityPaths` names; `fileIntegrityEnabled` turns it off.
//!
//! How:
//! - inotify watches **directories** only: each target's parent (filtered by the target's
//!   name, so a file that does not exist yet, a new `/etc/ld.so.preload` or `authorized_keys`,
//!   is seen when created, and a file replaced by rename is still followed) and each target
//!   that is a directory (all its entries; its subdirectories too for `/**` targets). Watches
//!   are added through a descriptor resolved inside the host root ([`HostRoot::open_dir_path`]),
//!   never by a path the kernel would resolve on its own. At most [`MAX_WATCHES`] directories
//!   are watched; the others are counted (`edgeguard_fim_unwatched`) and said in the status.
//! - Notifications about one path within [`coalesce::WINDOW`] become one event with `Count`
//!   (and `Writes`) in `ExtraDetails`, so a write storm costs one event a second per file.
//! - Each change is read back: owner, mode, size, and the SHA-256 of regular files up to
//!   [`state::HASH_MAX_BYTES`] (through [`HostRoot`]: a FIFO or device at a watched path is
//!   refused before it is opened, a symlink is recorded as one and never followed). The last
//!   hash seen is `HashBefore`; setuid, setgid and file capabilities (`security.capability`)
//!   gained are flagged (`SetuidGained`, `SetgidGained`, `CapabilitiesGained`).
//! - What was last seen of every path is kept in the state directory ([`state::STATE_FILE`]);
//!   at start the paths are read again and differences are reported once, with
//!   `SeenAt=Start` (nothing on the very first start: there is nothing to compare with). An
//!   inotify queue overflow is counted and followed by the same comparison (`SeenAt=Rescan`).
//! - `/usr/bin` and `/usr/sbin` are recorded by metadata at start, not hashed (minutes of CPU
//!   on a small device); a file there is hashed when it changes.
//! - The process that made a change is named where the kernel allows it ([`writer`]): every
//!   watched directory is also marked with fanotify, whose events carry the writer's pid; they
//!   are read in the same loop as inotify's and gathered into the same window, and the record
//!   gets `ProcessId`, `ProcessName`, `Executable`, `CommandLine`, `UserId`, `ContainerId`
//!   (what /proc still said when the event was read) and `Processes` when several made
//!   changes in the window (the last one is named).
//!
//! Not done (future work): directories that appear under a missing parent are watched at the
//! next re-arm ([`REARM_EVERY`]); a writer gone before its event is read is named by its pid
//! alone (`FAN_REPORT_PIDFD`, Linux 5.15, could tell a reused pid from it).

mod coalesce;
pub mod state;
pub mod watch;
pub mod writer;

pub use coalesce::{Coalescer, MAX_PENDING, MAX_WRITERS, Note, Pending, WINDOW};
pub use watch::{DEFAULT_PATHS, HOME_FILES, Target};
pub use writer::WriterMode;

use super::{Context, Running, Triggered};
use crate::event::{CollectorHealth, Event, ExtraDetails, FileChange, FileOperation, Payload};
use crate::host::HostRoot;
use crate::host::accounts::UserNames;
use crate::kernel::inotify::{self as ino, Inotify};
use state::{Entry, Look, Table};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use writer::{Place, Writers};

/// The collector's name (metric label, `CollectorStatus.Collector`).
pub const COLLECTOR: &str = "files";

/// At most this many directories are watched (one inotify watch each, about 1 KiB of kernel
/// memory); the defaults need some 40 plus 2 per home.
pub const MAX_WATCHES: usize = 2048;

/// How often the watches are set up again for targets that appeared (a new home, a directory
/// created under a parent that was missing).
pub const REARM_EVERY: Duration = Duration::from_secs(300);

/// The state file is written at most this often while changes come.
const SAVE_EVERY: Duration = Duration::from_secs(2);

/// Renames whose source was seen but not yet their destination (kernel cookies), at most.
const MAX_COOKIES: usize = 64;

/// The longest wait for notifications, so cancellation and configuration changes are noticed.
const POLL_MS: i32 = 250;

/// The collector as the registry lists it: [`run`] on a thread of its own.
pub struct FileIntegrityCollector;

impl Triggered for FileIntegrityCollector {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn start(self: Box<Self>, ctx: Context) -> std::io::Result<Running> {
        std::thread::Builder::new()
            .name("edgeguard-fim".into())
            .spawn(move || run(ctx))
            .map(Running::Thread)
    }
}

/// The settings the collector follows: (`fileIntegrityEnabled`, `fileIntegrityPaths`).
type Settings = (bool, Option<Vec<String>>);

fn settings(ctx: &mut Context) -> Settings {
    let c = ctx.config.borrow_and_update();
    (c.file_integrity_enabled, c.file_integrity_paths.clone())
}

/// Until cancelled: follows the watched paths; starts over when the settings change.
pub fn run(ctx: Context) {
    run_with(ctx, WriterMode::Auto)
}

/// [`run`], naming the processes that make changes as `writers` says (tests turn it off or
/// force the fallback).
pub fn run_with(mut ctx: Context, writers: WriterMode) {
    let state_path = ctx.state_dir.join(state::STATE_FILE);
    let mut current = settings(&mut ctx);
    let mut carried: Option<Table> = None;
    loop {
        if !current.0 {
            ctx.metrics.set_fim_watches(0, 0);
            ctx.metrics.set_fim_attributed(0);
            ctx.report_status(
                COLLECTOR,
                CollectorHealth::Up,
                "file integrity monitoring is off (fileIntegrityEnabled)",
                None,
            );
            loop {
                if ctx.cancel.is_cancelled() {
                    return;
                }
                if ctx.config.has_changed().unwrap_or(false) {
                    let next = settings(&mut ctx);
                    if next != current {
                        current = next;
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(POLL_MS as u64));
            }
            continue;
        }
        let started = Monitor::start(
            &ctx,
            current.1.as_deref(),
            &state_path,
            carried.take(),
            writers,
        );
        let mut m = match started {
            Ok(m) => m,
            Err(e) => {
                ctx.metrics.error(COLLECTOR, "inotify");
                ctx.report_status(
                    COLLECTOR,
                    CollectorHealth::Down,
                    format!("cannot start inotify: {e}"),
                    None,
                );
                return;
            }
        };
        let reconfigured = m.follow(&mut ctx, &mut current);
        m.finish(&ctx);
        if !reconfigured {
            return;
        }
        carried = Some(m.table);
    }
}

/// One watched directory.
#[derive(Debug)]
struct Dir {
    path: PathBuf,
    /// Every entry is of interest (a directory target, or under a recursive one).
    all: bool,
    /// Else only these entries (targets in this directory).
    names: HashSet<OsString>,
    /// New subdirectories are watched too.
    recursive: bool,
}

struct Monitor {
    host: HostRoot,
    inotify: Inotify,
    /// fanotify, for the process behind each change.
    writers: Writers,
    targets: Vec<Target>,
    dirs: HashMap<i32, Dir>,
    watched: HashMap<PathBuf, i32>,
    unwatched: BTreeSet<PathBuf>,
    homes_over: usize,
    /// How many directories could not be watched, and how writers were named, when the status
    /// was last reported: it is reported again only when that changes (a re-arm every few
    /// minutes is not news).
    reported: Option<(usize, &'static str, usize)>,
    table: Table,
    pending: Coalescer,
    cookies: VecDeque<(u32, String)>,
    names: UserNames,
    state_path: PathBuf,
    dirty: bool,
    last_save: Instant,
    last_arm: Instant,
    buf: Vec<u8>,
}

fn watch_mask(lazy: bool) -> u32 {
    let base = ino::IN_CREATE
        | ino::IN_DELETE
        | ino::IN_ATTRIB
        | ino::IN_CLOSE_WRITE
        | ino::IN_MOVED_FROM
        | ino::IN_MOVED_TO
        | ino::IN_DELETE_SELF
        | ino::IN_MOVE_SELF
        | ino::IN_ONLYDIR
        | ino::IN_EXCL_UNLINK;
    // A lazy directory (/usr/bin) is followed by closes after writing, not every write.
    if lazy { base } else { base | ino::IN_MODIFY }
}

impl Monitor {
    /// Watches, reads every target, and reports what changed since `old` (the saved state at
    /// start; the previous table after a reconfiguration).
    fn start(
        ctx: &Context,
        configured: Option<&[String]>,
        state_path: &Path,
        old: Option<Table>,
        writers: WriterMode,
    ) -> std::io::Result<Monitor> {
        let inotify = Inotify::new()?;
        let (targets, homes_over) = watch::targets(configured, &ctx.host);
        let mut m = Monitor {
            host: ctx.host.clone(),
            inotify,
            writers: Writers::new(&ctx.host, writers),
            targets,
            dirs: HashMap::new(),
            watched: HashMap::new(),
            unwatched: BTreeSet::new(),
            homes_over,
            reported: None,
            table: Table::default(),
            pending: Coalescer::default(),
            cookies: VecDeque::new(),
            names: UserNames::default(),
            state_path: state_path.to_path_buf(),
            dirty: false,
            last_save: Instant::now(),
            last_arm: Instant::now(),
            buf: Vec::with_capacity(64 * 1024),
        };
        // Watches first, then the scan: a change between the two is then seen twice at most,
        // never missed.
        m.arm(ctx);
        let (old, seen_at) = match old {
            Some(t) => (Some(t), "Rescan"),
            None => (state::load(state_path), "Start"),
        };
        let mut table = m.scan(ctx);
        if let Some(old) = &old {
            state::carry_hashes(&mut table, old);
        }
        let differences = old
            .as_ref()
            .map(|o| state::diff(o, &table))
            .unwrap_or_default();
        m.table = table;
        m.save(ctx);
        for d in differences {
            let mut extra = ExtraDetails::new();
            extra.insert("SeenAt".into(), seen_at.into());
            let record = m.record(
                &d.path,
                d.operation,
                d.before.as_ref(),
                d.after.as_ref(),
                extra,
            );
            if !ctx.blocking_emit(COLLECTOR, Event::new(Payload::FileChange(vec![record]))) {
                break;
            }
        }
        m.report_watches(ctx);
        Ok(m)
    }

    fn report_watches(&mut self, ctx: &Context) {
        let unwatched = self.unwatched.len() + self.homes_over;
        ctx.metrics.set_fim_watches(self.dirs.len(), unwatched);
        ctx.metrics.set_fim_attributed(self.writers.marked());
        let how = self.writers.how();
        let unmarked = self.writers.unmarked();
        let now = (unwatched, how, unmarked);
        if self.reported.replace(now) == Some(now) {
            return;
        }
        let writers = match self.writers.off() {
            Some(why) => format!("writers not named ({why})"),
            None if unmarked > 0 => {
                format!(
                    "writers named by fanotify ({how}) except in {unmarked} directories it could not mark"
                )
            }
            None => format!("writers named by fanotify ({how})"),
        };
        if unwatched == 0 {
            ctx.report_status(
                COLLECTOR,
                CollectorHealth::Up,
                format!(
                    "watching {} paths in {} directories; {writers}",
                    self.targets.len(),
                    self.dirs.len()
                ),
                None,
            );
        } else {
            let first: Vec<String> = self
                .unwatched
                .iter()
                .take(3)
                .map(|p| p.display().to_string())
                .collect();
            ctx.report_status(
                COLLECTOR,
                CollectorHealth::Degraded,
                format!(
                    "watching {} directories; {unwatched} could not be watched (cap {MAX_WATCHES}, {} homes over {}): {}; {writers}",
                    self.dirs.len(),
                    self.homes_over,
                    watch::MAX_HOMES,
                    first.join(", ")
                ),
                Some("changes there are found by the comparison at the next start"),
            );
        }
    }

    fn scan(&mut self, ctx: &Context) -> Table {
        let (table, failed) = state::scan(&self.host, &self.targets);
        for (path, why) in failed.iter().take(5) {
            tracing::debug!(collector = COLLECTOR, %path, %why, "cannot read a watched path");
        }
        if !failed.is_empty() {
            ctx.metrics.error(COLLECTOR, "read");
        }
        table
    }

    /// Sets up the watches of every target (again: a directory already watched keeps its
    /// watch).
    fn arm(&mut self, ctx: &Context) {
        self.last_arm = Instant::now();
        let targets = self.targets.clone();
        for t in &targets {
            if let (Some(parent), Some(name)) = (t.path.parent(), t.path.file_name()) {
                self.watch_dir(ctx, parent, Some(name.to_os_string()), false, false);
            }
            if self.host.metadata(&t.path).is_ok_and(|m| m.is_dir()) {
                self.watch_tree(ctx, &t.path, t.recursive, t.lazy, 0);
            }
        }
    }

    /// Watches `path` (all its entries), and its subdirectories when `recursive`.
    fn watch_tree(
        &mut self,
        ctx: &Context,
        path: &Path,
        recursive: bool,
        lazy: bool,
        depth: usize,
    ) {
        self.watch_dir(ctx, path, None, recursive, lazy);
        if !recursive || depth >= state::MAX_DEPTH {
            return;
        }
        let Ok(dir) = self.host.read_dir(path) else {
            return;
        };
        let subdirs: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .filter(|e| e.kind == crate::host::FileKind::Dir)
            .map(|e| path.join(e.name))
            .take(MAX_WATCHES)
            .collect();
        for s in subdirs {
            self.watch_tree(ctx, &s, recursive, lazy, depth + 1);
        }
    }

    /// Watches one directory: for the entry `name` only, or (None) for all of them.
    fn watch_dir(
        &mut self,
        ctx: &Context,
        path: &Path,
        name: Option<OsString>,
        recursive: bool,
        lazy: bool,
    ) {
        let merge = |d: &mut Dir| {
            match &name {
                Some(n) => {
                    d.names.insert(n.clone());
                }
                None => d.all = true,
            }
            d.recursive |= recursive;
        };
        if let Some(wd) = self.watched.get(path)
            && let Some(d) = self.dirs.get_mut(wd)
        {
            merge(d);
            return;
        }
        if self.dirs.len() >= MAX_WATCHES {
            self.unwatched.insert(path.to_path_buf());
            return;
        }
        let fd = match self.host.open_dir_path(path) {
            Ok(fd) => fd,
            // Not there (yet): its parent's watch, if any, says when it comes.
            Err(e) if e.is_not_found() => return,
            Err(e) => {
                ctx.metrics.error(COLLECTOR, "watch");
                tracing::debug!(collector = COLLECTOR, path = %path.display(), error = %e.reason(), "cannot watch a directory");
                self.unwatched.insert(path.to_path_buf());
                return;
            }
        };
        match self.inotify.add_watch(fd.as_fd(), watch_mask(lazy)) {
            Ok(wd) => {
                // A new watch (not an inode already watched under another name): mark it for
                // its writers too.
                if !self.dirs.contains_key(&wd)
                    && let Err(e) = self.writers.mark(wd, fd.as_fd(), lazy)
                {
                    ctx.metrics.error(COLLECTOR, "fanotify_mark");
                    tracing::debug!(collector = COLLECTOR, path = %path.display(), error = %e, "cannot mark a directory for fanotify; its changes are reported without their writer");
                }
                self.unwatched.remove(path);
                self.watched.insert(path.to_path_buf(), wd);
                // The same inode under another name (`/lib` → `/usr/lib`): one watch, reported
                // under the first name.
                let d = self.dirs.entry(wd).or_insert_with(|| Dir {
                    path: path.to_path_buf(),
                    all: false,
                    names: HashSet::new(),
                    recursive: false,
                });
                merge(d);
                ctx.metrics
                    .set_fim_watches(self.dirs.len(), self.unwatched.len() + self.homes_over);
            }
            Err(e) => {
                let kind = if e.raw_os_error() == Some(libc::ENOSPC) {
                    "watch_limit"
                } else {
                    "watch"
                };
                ctx.metrics.error(COLLECTOR, kind);
                tracing::debug!(collector = COLLECTOR, path = %path.display(), error = %e, "cannot watch a directory");
                self.unwatched.insert(path.to_path_buf());
            }
        }
    }

    /// Follows until cancelled (false) or the settings changed (true).
    fn follow(&mut self, ctx: &mut Context, current: &mut Settings) -> bool {
        loop {
            if ctx.cancel.is_cancelled() {
                return false;
            }
            if ctx.config.has_changed().unwrap_or(false) {
                let next = settings(ctx);
                if next != *current {
                    *current = next;
                    return true;
                }
            }
            let now = Instant::now();
            let timeout = self
                .pending
                .next_due()
                .map(|d| d.saturating_duration_since(now).as_millis() as i32 + 1)
                .unwrap_or(POLL_MS)
                .clamp(0, POLL_MS);
            // Bit 0: inotify; bit i + 1: the ith fanotify group.
            let ready = {
                let fds: Vec<BorrowedFd<'_>> = std::iter::once(self.inotify.as_fd())
                    .chain(self.writers.fds())
                    .collect();
                crate::kernel::poll::readable(&fds, timeout)
            };
            match ready {
                Ok(bits) => {
                    // Writers first: a change's writer is then waiting in its window when
                    // inotify's notification of it is read.
                    for i in 0..self.writers.fds().count() {
                        if bits & (2 << i) != 0 && !self.read_writers(ctx, i) {
                            return false;
                        }
                    }
                    if bits & 1 != 0 && !self.read_events(ctx) {
                        return false;
                    }
                }
                Err(e) => {
                    ctx.metrics.error(COLLECTOR, "inotify");
                    tracing::warn!(collector = COLLECTOR, error = %e, "waiting for inotify failed");
                    std::thread::sleep(Duration::from_millis(POLL_MS as u64));
                }
            }
            let due = self.pending.due(Instant::now());
            if !self.report(ctx, due) {
                return false;
            }
            if self.dirty && self.last_save.elapsed() >= SAVE_EVERY {
                self.save(ctx);
            }
            if self.last_arm.elapsed() >= REARM_EVERY {
                self.arm(ctx);
                self.report_watches(ctx);
            }
        }
    }

    /// Reports what is gathered and saves the state (at shutdown or before a restart).
    fn finish(&mut self, ctx: &Context) {
        let all = self.pending.drain_all();
        self.report(ctx, all);
        if self.dirty {
            self.save(ctx);
        }
    }

    fn save(&mut self, ctx: &Context) {
        self.dirty = false;
        self.last_save = Instant::now();
        if let Err(e) = state::save(&self.state_path, &self.table) {
            ctx.metrics.error(COLLECTOR, "state_write");
            tracing::warn!(collector = COLLECTOR, error = %e, "cannot save the file integrity state; a restart may miss or repeat changes");
        }
    }

    /// Reads and handles every queued notification. False once the pipeline has stopped.
    fn read_events(&mut self, ctx: &Context) -> bool {
        let mut overflow = false;
        let mut notifications = 0u64;
        loop {
            let mut buf = std::mem::take(&mut self.buf);
            let n = match self.inotify.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    ctx.metrics.error(COLLECTOR, "inotify");
                    tracing::warn!(collector = COLLECTOR, error = %e, "reading inotify failed");
                    0
                }
            };
            let events = ino::parse(&buf[..n]);
            self.buf = buf;
            if events.is_empty() {
                break;
            }
            for ev in events {
                if ev.mask & ino::IN_Q_OVERFLOW != 0 {
                    overflow = true;
                    continue;
                }
                if let Some(flushed) = self.handle(ctx, ev) {
                    notifications += 1;
                    if !self.report(ctx, flushed) {
                        return false;
                    }
                }
            }
        }
        ctx.metrics.fim_notifications(notifications);
        if overflow {
            ctx.metrics.fim_overflow();
            tracing::warn!(
                collector = COLLECTOR,
                "inotify queue overflow: changes were lost; rescanning the watched paths"
            );
            return self.rescan(ctx);
        }
        true
    }

    /// Reads the writers the `i`th fanotify group reports, and notes each where inotify's
    /// notifications of the same path are gathered. False once the pipeline has stopped.
    fn read_writers(&mut self, ctx: &Context, i: usize) -> bool {
        let overflows = self.writers.overflows;
        let seen = match self.writers.read(i) {
            Ok(s) => s,
            Err(e) => {
                ctx.metrics.error(COLLECTOR, "fanotify");
                tracing::warn!(collector = COLLECTOR, error = %e, "reading fanotify failed");
                Vec::new()
            }
        };
        if self.writers.overflows > overflows {
            ctx.metrics.error(COLLECTOR, "fanotify_overflow");
            tracing::warn!(
                collector = COLLECTOR,
                "fanotify queue overflow: some changes are reported without their writer"
            );
        }
        let now = Instant::now();
        for s in seen {
            let (dir, name) = match &s.place {
                Place::Entry { wd, name } => (self.dirs.get(wd), name.clone()),
                Place::Path(p) => {
                    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
                        continue;
                    };
                    let dir = self.watched.get(parent).and_then(|wd| self.dirs.get(wd));
                    (dir, name.to_os_string())
                }
            };
            let Some(dir) = dir else { continue };
            if !(dir.all || dir.names.contains(&name)) {
                continue;
            }
            let path = dir.path.join(&name).to_string_lossy().into_owned();
            if self.pending.writer_of(&path) == Some(s.pid) {
                continue;
            }
            let process = self.writers.process(s.pid, now);
            let flushed = self.pending.attribute(&path, process, now);
            if !self.report(ctx, flushed) {
                return false;
            }
        }
        true
    }

    /// After an overflow: what is gathered is reported, then every path is read again and
    /// compared with what was last seen.
    fn rescan(&mut self, ctx: &Context) -> bool {
        let all = self.pending.drain_all();
        if !self.report(ctx, all) {
            return false;
        }
        self.arm(ctx);
        let mut table = self.scan(ctx);
        state::carry_hashes(&mut table, &self.table);
        let differences = state::diff(&self.table, &table);
        let old = std::mem::replace(&mut self.table, table);
        self.dirty = true;
        for d in differences {
            let mut extra = ExtraDetails::new();
            extra.insert("SeenAt".into(), "Rescan".into());
            let before = old.entries.get(&d.path);
            let record = self.record(&d.path, d.operation, before, d.after.as_ref(), extra);
            if !ctx.blocking_emit(COLLECTOR, Event::new(Payload::FileChange(vec![record]))) {
                return false;
            }
        }
        true
    }

    /// One notification: gathered when it is about a watched path (returns what had to be
    /// reported at once to make room), `None` when not of interest.
    fn handle(&mut self, ctx: &Context, ev: ino::Event) -> Option<Vec<(String, Pending)>> {
        if ev.mask & ino::IN_IGNORED != 0 {
            // The directory is gone (or was unmounted): its parent's watch reports that.
            self.writers.forget(ev.wd);
            if let Some(d) = self.dirs.remove(&ev.wd) {
                self.watched.retain(|_, wd| *wd != ev.wd);
                tracing::debug!(collector = COLLECTOR, path = %d.path.display(), "watch removed");
            }
            return None;
        }
        if ev.name.is_empty() {
            return None;
        }
        let dir = self.dirs.get(&ev.wd)?;
        let full = dir.path.join(&ev.name);
        let full_text = full.to_string_lossy().into_owned();
        let interesting = dir.all || dir.names.contains(&ev.name);
        let recursive = dir.recursive;
        let all = dir.all;
        if ev.mask & ino::IN_MOVED_FROM != 0 {
            if self.cookies.len() >= MAX_COOKIES {
                self.cookies.pop_front();
            }
            self.cookies.push_back((ev.cookie, full_text.clone()));
        }
        if !interesting {
            return None;
        }
        let is_dir = ev.mask & ino::IN_ISDIR != 0;
        let mut renamed_from = None;
        let operation = if ev.mask & ino::IN_CREATE != 0 {
            FileOperation::Created
        } else if ev.mask & ino::IN_DELETE != 0 {
            FileOperation::Deleted
        } else if ev.mask & ino::IN_MOVED_FROM != 0 {
            FileOperation::Renamed
        } else if ev.mask & ino::IN_MOVED_TO != 0 {
            if let Some(i) = self.cookies.iter().position(|(c, _)| *c == ev.cookie) {
                let (_, from) = self.cookies.remove(i).expect("found above");
                self.pending.note_renamed_to(&from, &full_text);
                renamed_from = Some(from);
            }
            FileOperation::Renamed
        } else if ev.mask & (ino::IN_MODIFY | ino::IN_CLOSE_WRITE) != 0 {
            FileOperation::Modified
        } else if ev.mask & ino::IN_ATTRIB != 0 {
            FileOperation::Attributes
        } else {
            return None;
        };
        // A directory that appears where one is watched: watch it, and report what it already
        // holds (created before the watch was there).
        let arrived = ev.mask & (ino::IN_CREATE | ino::IN_MOVED_TO) != 0;
        let mut flushed = Vec::new();
        if arrived && is_dir {
            let target = self.targets.iter().find(|t| t.path == full).cloned();
            if let Some(t) = target {
                self.watch_tree(ctx, &full, t.recursive, t.lazy, 0);
                flushed.extend(self.created_inside(&full));
            } else if all && recursive {
                self.watch_tree(ctx, &full, true, false, 1);
                flushed.extend(self.created_inside(&full));
            }
        }
        let note = Note {
            operation,
            write_closed: ev.mask & ino::IN_CLOSE_WRITE != 0,
            is_dir,
            renamed_from: renamed_from.as_deref(),
            renamed_to: None,
        };
        flushed.extend(self.pending.add(&full_text, note, Instant::now()));
        Some(flushed)
    }

    /// Gathers a `Created` for each entry of a directory just watched that is not known yet.
    fn created_inside(&mut self, dir: &Path) -> Vec<(String, Pending)> {
        let Ok(list) = self.host.read_dir(dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let names: Vec<PathBuf> = list
            .filter_map(Result::ok)
            .map(|e| dir.join(e.name))
            .take(MAX_PENDING)
            .collect();
        for p in names {
            let key = p.to_string_lossy().into_owned();
            if self.table.entries.contains_key(&key) {
                continue;
            }
            let note = Note {
                operation: FileOperation::Created,
                write_closed: false,
                is_dir: false,
                renamed_from: None,
                renamed_to: None,
            };
            out.extend(self.pending.add(&key, note, Instant::now()));
        }
        out
    }

    /// Reads each gathered path back, emits its event and remembers what was seen. False once
    /// the pipeline has stopped.
    fn report(&mut self, ctx: &Context, changes: Vec<(String, Pending)>) -> bool {
        for (path, p) in changes {
            // Only a writer, no notification (inotify's was lost in an overflow, whose rescan
            // reports the change): nothing to report.
            if p.count == 0 {
                continue;
            }
            let look = state::look(&self.host, Path::new(&path), true);
            let exists = !matches!(look, Look::Gone);
            let operation = p.operation(exists);
            let mut extra = ExtraDetails::new();
            extra.insert("Count".into(), p.count.to_string());
            if p.writes > 0 {
                extra.insert("Writes".into(), p.writes.to_string());
            }
            if p.operations.len() > 1 {
                let ops: Vec<&str> = p.operations.iter().map(|o| op_name(*o)).collect();
                extra.insert("Operations".into(), ops.join(","));
            }
            if let Some(f) = &p.renamed_from {
                extra.insert("RenamedFrom".into(), f.clone());
            }
            if let Some(t) = &p.renamed_to {
                extra.insert("RenamedTo".into(), t.clone());
            }
            match &p.writer {
                Some(w) => writer_details(&mut extra, w, p.writer_pids.len()),
                None => ctx.metrics.fim_unattributed(),
            }
            let before = self.table.entries.get(&path).cloned();
            let after = match look {
                Look::Seen { entry, note } => {
                    if let Some(n) = note {
                        extra.insert("NotHashed".into(), n);
                    }
                    Some(entry)
                }
                Look::Failed(why) => {
                    ctx.metrics.error(COLLECTOR, "read");
                    extra.insert("Error".into(), why);
                    None
                }
                Look::Gone => None,
            };
            // Opened for writing and closed without a change (`touch`, an editor's save of the
            // same text): the content is what it was.
            let operation = match (&before, &after) {
                (Some(b), Some(a))
                    if operation == FileOperation::Modified
                        && b.hash.is_some()
                        && b.hash == a.hash =>
                {
                    extra.insert("ContentUnchanged".into(), "true".into());
                    FileOperation::Attributes
                }
                _ => operation,
            };
            let record = self.record(&path, operation, before.as_ref(), after.as_ref(), extra);
            match &after {
                Some(e) => self.table.put(path.clone(), e.clone()),
                None if exists => {}
                None => {
                    self.table.entries.remove(&path);
                }
            }
            self.dirty = true;
            if !ctx.blocking_emit(COLLECTOR, Event::new(Payload::FileChange(vec![record]))) {
                return false;
            }
        }
        true
    }

    /// The record of one change: the path as it is now (`after`), compared with `before`.
    fn record(
        &mut self,
        path: &str,
        operation: FileOperation,
        before: Option<&Entry>,
        after: Option<&Entry>,
        extra: ExtraDetails,
    ) -> FileChange {
        let mut extra = extra;
        let mut r = FileChange {
            path: path.to_string(),
            operation,
            owner_id: None,
            owner_name: None,
            mode: None,
            size: None,
            hash_before: before.and_then(|b| b.hash.clone()),
            hash_after: None,
            extra_details: ExtraDetails::new(),
        };
        if let Some(a) = after {
            r.owner_id = Some(a.uid.to_string());
            r.owner_name = self.names.name(&self.host, a.uid);
            r.mode = Some(format!("{:04o}", a.mode));
            r.size = Some(a.size);
            r.hash_after = a.hash.clone();
            extra.insert("Type".into(), a.kind.clone());
            extra.insert("GroupId".into(), a.gid.to_string());
            for (bit, name) in [(0o4000, "Setuid"), (0o2000, "Setgid")] {
                if a.mode & bit != 0 {
                    extra.insert(name.into(), "true".into());
                    if before.is_none_or(|b| b.mode & bit == 0) {
                        extra.insert(format!("{name}Gained"), "true".into());
                    }
                }
            }
            if a.caps {
                extra.insert("Capabilities".into(), "true".into());
                if before.is_none_or(|b| !b.caps) {
                    extra.insert("CapabilitiesGained".into(), "true".into());
                }
            }
            if let Some(b) = before {
                if b.mode != a.mode {
                    extra.insert("ModeBefore".into(), format!("{:04o}", b.mode));
                }
                if b.uid != a.uid {
                    extra.insert("OwnerIdBefore".into(), b.uid.to_string());
                }
            }
        }
        r.extra_details = extra;
        r
    }
}

/// The writer of a change in `ExtraDetails`, with the names the process events use; `processes`:
/// how many distinct processes made changes in the window (said when more than one).
fn writer_details(
    extra: &mut ExtraDetails,
    w: &crate::host::procfs::ProcessInfo,
    processes: usize,
) {
    extra.insert("ProcessId".into(), w.pid.to_string());
    let executable = w.executable();
    if !executable.is_empty() {
        extra.insert("Executable".into(), executable);
    }
    let fields = [
        ("ProcessName", &w.comm),
        ("CommandLine", &w.cmdline),
        ("ContainerId", &w.container_id),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            extra.insert(key.into(), v.clone());
        }
    }
    if let Some(uid) = w.uid {
        extra.insert("UserId".into(), uid.to_string());
    }
    if processes > 1 {
        extra.insert("Processes".into(), processes.to_string());
    }
}

/// The name of an operation, as in the event.
pub fn op_name(op: FileOperation) -> &'static str {
    match op {
        FileOperation::Created => "Created",
        FileOperation::Modified => "Modified",
        FileOperation::Deleted => "Deleted",
        FileOperation::Renamed => "Renamed",
        FileOperation::Attributes => "Attributes",
    }
}

#[cfg(test)]
mod tests;
