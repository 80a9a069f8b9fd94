//! Following the login files: positions that survive rotation and restarts, reading what was
//! appended, the saved state.

use super::{
    AUTH_LOG, Attempts, AuthLogin, BTMP, CHUNK_BYTES, COLLECTOR, EMPTY, Error, HEAD_BYTES,
    LAYOUT_SAMPLE_BYTES, PROC_LOOKUP_MAX_AGE_SECS, ROTATED_QUIET_POLLS, SECURE, STATE_FILE,
    StartAt, USER_PROCESS, UtmpLayout, UtmpRecord, WTMP, detect_layout, executable_for_line,
    parse_auth_line, parse_utmp, split_lines, utmp_login,
};
use crate::event::Login;
use crate::host::HostRoot;
use crate::text::error_chain;
use chrono::{DateTime, Local};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// `Source` of logins read from the journal.
pub const JOURNAL_SOURCE: &str = "journal";
/// Chunks read from a file rotated away twice before it is let go (in one poll).
const FINAL_CHUNKS: usize = 4;
/// Names looked at when searching for a rotated file.
const MAX_ROTATED_SCAN: usize = 10_000;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Wtmp,
    Btmp,
    AuthLog,
}

/// Where reading stopped in one file, as saved across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPosition {
    pub inode: u64,
    pub offset: u64,
    /// Length and FNV-1a hash of the file's first bytes, to tell a reused inode number apart.
    pub head_len: u64,
    pub head_hash: u64,
    /// In the middle of an overlong auth-log line being dropped.
    #[serde(default)]
    pub skip_line: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SavedFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current: Option<SavedPosition>,
    /// The file before its last rotation, while it may still hold unread data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotated: Option<SavedPosition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SavedState {
    version: u32,
    files: BTreeMap<String, SavedFile>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The hash of the first `len` bytes of `file`, `None` when it is shorter.
fn head_hash(file: &File, len: u64) -> Option<u64> {
    let mut buf = vec![0u8; usize::try_from(len.min(HEAD_BYTES)).ok()?];
    file.read_exact_at(&mut buf, 0).ok()?;
    Some(fnv1a(&buf))
}

/// An open file and how far it has been read.
#[derive(Debug)]
struct Cursor {
    file: File,
    inode: u64,
    offset: u64,
    layout: Option<UtmpLayout>,
    skip_line: bool,
    head_len: u64,
    head_hash: u64,
    /// Polls in a row that found nothing new (for letting go of a rotated file).
    quiet: u32,
}

impl Cursor {
    pub(super) fn new(file: File, inode: u64, offset: u64) -> Cursor {
        Cursor {
            file,
            inode,
            offset,
            layout: None,
            skip_line: false,
            head_len: 0,
            head_hash: fnv1a(&[]),
            quiet: 0,
        }
    }

    fn saved(&self) -> SavedPosition {
        SavedPosition {
            inode: self.inode,
            offset: self.offset,
            head_len: self.head_len,
            head_hash: self.head_hash,
            skip_line: self.skip_line,
        }
    }

    /// Extends the head fingerprint while the file is shorter than [`HEAD_BYTES`].
    fn refresh_head(&mut self) {
        let want = self.offset.min(HEAD_BYTES);
        if want > self.head_len
            && let Some(h) = head_hash(&self.file, want)
        {
            self.head_len = want;
            self.head_hash = h;
        }
    }

    /// Whether `pos` describes this file (same inode, same first bytes).
    fn matches(&self, pos: &SavedPosition) -> bool {
        pos.inode == self.inode && head_hash(&self.file, pos.head_len) == Some(pos.head_hash)
    }

    /// Back to the start of the same file (it was truncated in place).
    fn reset(&mut self) {
        self.offset = 0;
        self.layout = None;
        self.skip_line = false;
        self.head_len = 0;
        self.head_hash = fnv1a(&[]);
        self.quiet = 0;
    }
}

/// One followed path: the file there now and, after a rotation, the previous one until it has
/// been read to its end.
#[derive(Debug)]
struct Source {
    path: &'static str,
    kind: Kind,
    current: Option<Cursor>,
    rotated: Option<Cursor>,
    /// sshd lines held to count one attempt once (auth logs only).
    attempts: Attempts,
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct Batch {
    pub logins: Vec<Login>,
    /// Records or lines skipped as malformed or overlong.
    pub malformed: u64,
    /// Read errors (besides missing files).
    pub read_errors: u64,
    /// A file had more data than one poll reads: poll again without waiting.
    pub more: bool,
    /// Files rotated away twice before they were read to their end, whose rest was skipped.
    pub skipped: u64,
    /// Journal files that failed a check (corrupt, truncated, not a journal).
    pub journal_corrupt: u64,
    /// Journal fields skipped: oversized, or compressed and not decodable.
    pub journal_skipped: u64,
}

/// Follows every login source under a host root, remembering positions in a state file.
/// Blocking: call it from a blocking thread.
pub struct LoginFollower {
    host: HostRoot,
    state_path: PathBuf,
    sources: Vec<Source>,
    hint: UtmpLayout,
    uids: UidLookup,
    /// The state last written (to skip writing an unchanged one).
    written: Option<SavedState>,
    /// The systemd journal, read when there is no auth log.
    journal: super::JournalFollower,
}

impl LoginFollower {
    /// Opens every source and positions it from the saved state (or per `first_start` when the
    /// collector never ran on this host).
    pub fn open(host: HostRoot, state_dir: &Path, first_start: StartAt) -> LoginFollower {
        let state_path = state_dir.join(STATE_FILE);
        let saved = load_state(&state_path);
        let hint = UtmpLayout::for_machine(&machine(&host));
        let mut follower = LoginFollower {
            host,
            state_path,
            sources: [
                (WTMP, Kind::Wtmp),
                (BTMP, Kind::Btmp),
                (AUTH_LOG, Kind::AuthLog),
                (SECURE, Kind::AuthLog),
            ]
            .into_iter()
            .map(|(path, kind)| Source {
                path,
                kind,
                current: None,
                rotated: None,
                attempts: Attempts::default(),
            })
            .collect(),
            hint,
            uids: UidLookup::default(),
            written: None,
            journal: super::JournalFollower::open(state_dir, first_start),
        };
        for i in 0..follower.sources.len() {
            let entry = saved.as_ref().map(|s| {
                s.files
                    .get(follower.sources[i].path)
                    .cloned()
                    .unwrap_or_default()
            });
            follower.position(i, entry, first_start);
        }
        follower
    }

    /// Positions source `i`: `entry` is its saved state, `None` on a first start ever.
    fn position(&mut self, i: usize, entry: Option<SavedFile>, first_start: StartAt) {
        let hint = self.hint;
        let path = self.sources[i].path;
        let kind = self.sources[i].kind;
        let opened = open_file(&self.host, path);
        let src = &mut self.sources[i];
        let Some(entry) = entry else {
            // First start ever.
            if let Some((file, inode, len)) = opened {
                let mut c = Cursor::new(file, inode, 0);
                if first_start == StartAt::End {
                    c.offset = len;
                    if kind != Kind::AuthLog {
                        // Undecided (an empty file): decided when records arrive.
                        c.layout = utmp_layout_of(&c.file, hint);
                        c.offset = len - len % c.layout.unwrap_or(hint).size() as u64;
                    }
                    // An unterminated last line is taken as read; the rest of it is dropped.
                    c.skip_line = kind == Kind::AuthLog && !ends_with_newline(&c.file, len);
                }
                c.refresh_head();
                src.current = Some(c);
            }
            return;
        };
        let mut restored = false;
        if let Some((file, inode, len)) = opened {
            let c = Cursor::new(file, inode, 0);
            src.current = Some(match entry.current {
                Some(pos) if c.matches(&pos) && pos.offset <= len => {
                    restored = true;
                    restore(c.file, &pos)
                }
                // Appeared, or replaced while we were stopped: all of it is new.
                _ => c,
            });
        }
        // A file rotated away before the last stop, or while we were stopped, may still hold
        // unread data: find it next to the path. (Should both exist, the older is read.)
        let unread = entry.rotated.or(entry.current.filter(|_| !restored));
        src.rotated =
            unread.and_then(|pos| find_rotated(&self.host, path, &pos).map(|f| restore(f, &pos)));
        if let Some(c) = &mut src.current {
            c.refresh_head();
        }
    }

    /// Host paths of the sources that exist now.
    pub fn present(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self
            .sources
            .iter()
            .filter(|s| s.current.is_some())
            .map(|s| s.path)
            .collect();
        if self.journal.present() {
            v.push(JOURNAL_SOURCE);
        }
        v
    }

    /// Whether an auth log (auth.log or secure) exists: then the journal is not read, since
    /// rsyslog copied the same messages into it.
    fn has_auth_log(&self) -> bool {
        self.sources
            .iter()
            .any(|s| s.kind == Kind::AuthLog && s.current.is_some())
    }

    /// Reads whatever is new in every source.
    pub fn poll(&mut self) -> Batch {
        let mut batch = Batch::default();
        self.uids.refresh(&self.host);
        let env = ReadEnv {
            host: &self.host,
            hint: self.hint,
            uids: &self.uids,
            now: Local::now(),
        };
        let mono = std::time::Instant::now();
        for src in &mut self.sources {
            poll_source(src, &env, mono, &mut batch);
            let mut held = Vec::new();
            src.attempts.flush_expired(mono, &mut held);
            for a in held {
                push_auth(a, src.path, &env, &mut batch);
            }
        }
        if !self.has_auth_log() {
            let j = self.journal.poll(&self.host, env.now, mono);
            batch.journal_corrupt += j.corrupt;
            batch.journal_skipped += j.compressed_failed + j.oversized;
            batch.more |= j.more;
            for a in j.logins {
                push_auth(a, JOURNAL_SOURCE, &env, &mut batch);
            }
        }
        batch
    }

    /// Everything the auth-log sources still hold back (see [`Attempts`]), for shutdown.
    pub fn flush_held(&mut self) -> Vec<Login> {
        let mut batch = Batch::default();
        let env = ReadEnv {
            host: &self.host,
            hint: self.hint,
            uids: &self.uids,
            now: Local::now(),
        };
        for src in &mut self.sources {
            let mut held = Vec::new();
            src.attempts.flush_all(&mut held);
            for a in held {
                push_auth(a, src.path, &env, &mut batch);
            }
        }
        for a in self.journal.flush_held() {
            push_auth(a, JOURNAL_SOURCE, &env, &mut batch);
        }
        batch.logins
    }

    fn state(&self) -> SavedState {
        SavedState {
            version: 1,
            files: self
                .sources
                .iter()
                .map(|s| {
                    let entry = SavedFile {
                        current: s.current.as_ref().map(Cursor::saved),
                        rotated: s.rotated.as_ref().map(Cursor::saved),
                    };
                    (s.path.to_string(), entry)
                })
                .collect(),
        }
    }

    /// Writes the positions if they changed since the last write.
    pub fn save(&mut self) -> Result<(), Error> {
        // Both are attempted; the first error is returned.
        let journal = self.journal.save();
        self.save_files()?;
        journal
    }

    fn save_files(&mut self) -> Result<(), Error> {
        let state = self.state();
        if self.written.as_ref() == Some(&state) {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&state).map_err(Error::StateEncode)?;
        crate::state::write_atomic(&self.state_path, &bytes).map_err(|source| {
            Error::StateWrite {
                path: self.state_path.clone(),
                source,
            }
        })?;
        self.written = Some(state);
        Ok(())
    }
}

/// What a read needs besides the file.
struct ReadEnv<'a> {
    host: &'a HostRoot,
    hint: UtmpLayout,
    uids: &'a UidLookup,
    now: DateTime<Local>,
}

/// How a file may still change, which decides what to do with an unfinished last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eof {
    /// The followed file: an unfinished record is completed later.
    Growing,
    /// Rotated away: the writer may still finish its last line until it reopens its log; after
    /// [`ROTATED_QUIET_POLLS`] quiet polls, the end is final.
    Rotated,
    /// Read to the end now (a second rotation came before the first file was finished).
    Final,
}

fn push_auth(a: AuthLogin, source: &str, env: &ReadEnv<'_>, batch: &mut Batch) {
    let login = a.to_login(source, env.now, |name| env.uids.uid(name));
    batch.logins.push(login);
}

fn poll_source(src: &mut Source, env: &ReadEnv<'_>, mono: std::time::Instant, batch: &mut Batch) {
    let attempts = &mut src.attempts;
    // Has the path been replaced or truncated?
    let meta = env.host.metadata(src.path).ok();
    if let Some(cur) = &mut src.current {
        match &meta {
            Some(m) if m.ino() == cur.inode => {
                if m.len() < cur.offset {
                    // Truncated in place (copytruncate): start again.
                    cur.reset();
                }
            }
            _ => {
                // Renamed or deleted: read the old file to its end (within a budget, so one
                // file cannot hold up the others or fill memory), then the new one.
                if let Some(mut older) = src.rotated.take() {
                    for _ in 0..FINAL_CHUNKS {
                        let before = older.offset;
                        read_cursor(
                            &mut older,
                            src.kind,
                            src.path,
                            Eof::Final,
                            env,
                            (attempts, mono),
                            batch,
                        );
                        if older.offset == before {
                            break;
                        }
                    }
                    let left = older
                        .file
                        .metadata()
                        .map_or(0, |m| m.len().saturating_sub(older.offset));
                    if left > 0 {
                        tracing::warn!(
                            collector = COLLECTOR,
                            source = src.path,
                            bytes = left,
                            "a file rotated twice before it was read: the rest of it is skipped"
                        );
                        batch.skipped += 1;
                    }
                }
                src.rotated = src.current.take();
            }
        }
    }
    if src.current.is_none()
        && meta.is_some()
        && let Some((file, inode, _)) = open_file(env.host, src.path)
    {
        src.current = Some(Cursor::new(file, inode, 0));
    }
    if let Some(old) = &mut src.rotated {
        read_cursor(
            old,
            src.kind,
            src.path,
            Eof::Rotated,
            env,
            (attempts, mono),
            batch,
        );
        if old.quiet >= ROTATED_QUIET_POLLS {
            src.rotated = None;
        }
    }
    if let Some(cur) = &mut src.current {
        read_cursor(
            cur,
            src.kind,
            src.path,
            Eof::Growing,
            env,
            (attempts, mono),
            batch,
        );
    }
}

/// Reads what is new in one file (at most [`CHUNK_BYTES`]) and turns it into logins.
fn read_cursor(
    c: &mut Cursor,
    kind: Kind,
    source: &str,
    eof: Eof,
    env: &ReadEnv<'_>,
    (attempts, mono): (&mut Attempts, std::time::Instant),
    batch: &mut Batch,
) {
    if kind != Kind::AuthLog && c.layout.is_none() {
        c.layout = utmp_layout_of(&c.file, env.hint);
        match c.layout {
            // Positioned with a guessed layout (first start on a file of garbage): realign.
            Some(l) => c.offset -= c.offset % l.size() as u64,
            None => {
                c.quiet += 1;
                return;
            }
        }
    }
    let read = c.file.metadata().and_then(|m| {
        // Sized by what is there, so an idle poll allocates nothing.
        let available = m.len().saturating_sub(c.offset);
        let mut buf = vec![0u8; available.min(CHUNK_BYTES as u64) as usize];
        let n = read_at_most(&c.file, &mut buf, c.offset)?;
        buf.truncate(n);
        Ok((buf, available))
    });
    let (buf, available) = match read {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(collector = COLLECTOR, source, error = %e, "reading a login source");
            batch.read_errors += 1;
            c.quiet += 1;
            return;
        }
    };
    let whole = available <= CHUNK_BYTES as u64;
    batch.more |= !whole;
    let at_eof = whole
        && match eof {
            Eof::Growing => false,
            Eof::Rotated => c.quiet + 1 >= ROTATED_QUIET_POLLS,
            Eof::Final => true,
        };
    let before = c.offset;
    match (kind, c.layout) {
        (Kind::AuthLog, _) => {
            let (lines, consumed, too_long) = split_lines(&buf, &mut c.skip_line, at_eof);
            batch.malformed += too_long as u64;
            let mut out = Vec::new();
            for line in lines {
                let parsed = parse_auth_line(&String::from_utf8_lossy(line));
                if parsed == super::AuthLine::Malformed {
                    batch.malformed += 1;
                }
                attempts.feed(parsed, mono, env.now, &mut out);
            }
            for a in out {
                push_auth(a, source, env, batch);
            }
            c.offset += consumed as u64;
        }
        (_, Some(layout)) => {
            let chunk = parse_utmp(&buf, layout);
            batch.malformed += chunk.malformed as u64;
            let failed = kind == Kind::Btmp;
            for rec in &chunk.records {
                let wanted = if failed {
                    rec.kind != EMPTY
                } else {
                    rec.kind == USER_PROCESS
                };
                if !wanted {
                    continue;
                }
                let exe = utmp_executable(env.host, rec, env.now);
                let mut login = utmp_login(rec, failed, source, &exe);
                login.user_id = env.uids.uid(&rec.user).map(|u| u.to_string());
                batch.logins.push(login);
            }
            c.offset += chunk.consumed as u64;
            if at_eof && chunk.consumed < buf.len() {
                // A partial record at the end of a file that will not grow again.
                batch.malformed += 1;
                c.offset += (buf.len() - chunk.consumed) as u64;
            }
        }
        (_, None) => {}
    }
    if c.offset == before {
        c.quiet += 1;
    } else {
        c.quiet = 0;
        c.refresh_head();
    }
}

/// The login program of a wtmp/btmp record: the process's executable when it is still running
/// and the record is fresh, else a guess from the terminal.
fn utmp_executable(host: &HostRoot, rec: &UtmpRecord, now: DateTime<Local>) -> String {
    let fresh = (now.timestamp() - rec.seconds).abs() <= PROC_LOOKUP_MAX_AGE_SECS;
    if fresh
        && let Ok(pid) = u32::try_from(rec.pid)
        && pid > 0
        && let Some(exe) = crate::host::procfs::read(host, pid).exe
    {
        return exe;
    }
    executable_for_line(&rec.line).to_string()
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn utmp_layout_of(file: &File, hint: UtmpLayout) -> Option<UtmpLayout> {
    let mut head = vec![0u8; LAYOUT_SAMPLE_BYTES];
    let n = read_at_most(file, &mut head, 0).ok()?;
    head.truncate(n);
    // A file whose whole sample is implausible under both layouts is garbage at its start:
    // rather than wait forever, read it the way this machine's glibc writes it.
    detect_layout(&head, hint).or((n == LAYOUT_SAMPLE_BYTES).then_some(hint))
}

fn ends_with_newline(file: &File, len: u64) -> bool {
    let mut b = [0u8; 1];
    len == 0 || (file.read_exact_at(&mut b, len - 1).is_ok() && b[0] == b'\n')
}

/// Opens a regular file under the host root: (file, inode, length). FIFOs and devices are
/// refused by [`HostRoot::open`] (and counted there).
fn open_file(host: &HostRoot, path: &str) -> Option<(File, u64, u64)> {
    match host.open(path) {
        Ok((file, meta)) => Some((file, meta.ino(), meta.len())),
        Err(e) => {
            if !e.is_not_found() {
                tracing::debug!(collector = COLLECTOR, error = %error_chain(&e), "cannot open a login source");
            }
            None
        }
    }
}

fn restore(file: File, pos: &SavedPosition) -> Cursor {
    let mut c = Cursor::new(file, pos.inode, pos.offset);
    c.skip_line = pos.skip_line;
    c.head_len = pos.head_len;
    c.head_hash = pos.head_hash;
    c
}

/// The rotated predecessor of `path` (`auth.log.1`, `secure-20261123`, `wtmp.1`): a file next
/// to it whose name starts with the same name and that is the saved file.
fn find_rotated(host: &HostRoot, path: &str, pos: &SavedPosition) -> Option<File> {
    let (dir, name) = path.rsplit_once('/')?;
    let mut listing = host.read_dir(dir).ok()?;
    // A directory of millions of names is not looked through to its end.
    let mut looked = 0;
    while let Some(Ok(entry)) = listing.next() {
        looked += 1;
        if looked > MAX_ROTATED_SCAN {
            break;
        }
        let Some(candidate) = entry.name.to_str() else {
            continue;
        };
        if candidate == name || !candidate.starts_with(name) {
            continue;
        }
        if !listing
            .symlink_metadata(&entry.name)
            .is_ok_and(|m| m.ino() == pos.inode)
        {
            continue;
        }
        let (file, inode, len) = open_file(host, &format!("{dir}/{candidate}"))?;
        let c = Cursor::new(file, inode, 0);
        return (c.matches(pos) && pos.offset <= len).then_some(c.file);
    }
    None
}

fn load_state(path: &Path) -> Option<SavedState> {
    crate::state::read_json_or_warn(
        path,
        COLLECTOR,
        "cannot read saved login positions; starting at the end of the files",
        "saved login positions are corrupt; starting at the end of the files",
    )
}

/// The host's machine name (`uname -m`): /proc/sys/kernel/arch under the host root, else the
/// running kernel's (the same kernel, in a container).
pub(super) fn machine(host: &HostRoot) -> String {
    if let Ok(s) = host.read_to_string("/proc/sys/kernel/arch")
        && !s.trim().is_empty()
    {
        return s.trim().to_string();
    }
    crate::collectors::system::machine().unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// User name → uid, from the host's passwd, re-read when the file changes.
#[derive(Debug, Default)]
struct UidLookup {
    uids: HashMap<String, u32>,
    stamp: Option<(SystemTime, u64)>,
}

impl UidLookup {
    pub(super) fn refresh(&mut self, host: &HostRoot) {
        let stamp = host
            .metadata("/etc/passwd")
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some() && stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        self.uids = host
            .read_to_string("/etc/passwd")
            .map(|t| {
                let mut map = HashMap::new();
                for u in crate::host::accounts::parse_passwd(&t).entries {
                    // The first entry wins, as with getpwnam.
                    map.entry(u.name).or_insert(u.uid);
                }
                map
            })
            .unwrap_or_default();
    }

    fn uid(&self, name: &str) -> Option<u32> {
        self.uids.get(name).copied()
    }
}
