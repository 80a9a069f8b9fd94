//! ProcessCreate / ProcessTerminate, in real time, from the kernel's process-events connector.
//!
//! The retired agents polled every two minutes and missed every short-lived process. Here a
//! netlink `NETLINK_CONNECTOR` socket subscribed to `CN_IDX_PROC` hears every fork, exec and exit
//! as it happens; each exec is enriched from /proc at once (while the process most likely still
//! runs) and becomes a `ProcessCreate`, each exit of a process becomes a `ProcessTerminate`.
//!
//! The reader is a blocking loop on its own std thread ([`spawn`]): the kernel cannot be paused,
//! so the thread waits on the pipeline at most briefly ([`Context::emit_from_reader`] counts a full channel as a
//! drop) and a receive timeout lets it notice cancellation within [`RECV_TIMEOUT`]. Records go
//! over in groups, held up to [`super::READER_HOLD`] ([`Held`]), so that the pipeline's thread is
//! not woken for each one.
//!
//! When the connector is unavailable (no `CAP_NET_ADMIN`, a kernel without `CONFIG_PROC_EVENTS`,
//! or an agent outside the host's PID or user namespace, where the kernel ignores the
//! subscription), the collector reports itself `Degraded` and falls back to diffing the set of
//! pids in /proc every second: processes that live less than a second are then missed, and exit
//! statuses are unknown.
//!
//! Scope decisions:
//! - Only thread-group leaders are processes: thread creation and exit are ignored.
//! - Kernel threads (children of `kthreadd` that never exec) are not reported; usermode helpers
//!   the kernel starts (`modprobe`, core dump handlers) exec a program and are.
//! - edgeguard's own process is not filtered out: it never execs anything, so it cannot cause a
//!   feedback loop, and hiding an agent from its own report would be a blind spot to exploit.
//! - A process that forks without exec gets no `ProcessCreate` (as with the old agents, which
//!   reported execve), but its exit is a `ProcessTerminate` carrying its parent's executable.
//!
//! Known limits: when the group leader of a multithreaded process exits first (or a non-leader
//! thread execs, which kills the leader), the kernel reports the leader's exit while the process
//! lives on, so a `ProcessTerminate` can come early; events lost to a socket overflow are gone
//! (counted, never recovered).

use super::accounts::UserNames;
use super::capacity;
use super::exec_trace::ExecTrace;
use super::proc_info::{self, Liveness, ProcessInfo};
use super::{Context, Held, RecvTimeout, set_recv_timeout, setsockopt, u16_at, u32_at};
use crate::event::{
    CollectorHealth, Event, ExtraDetails, Payload, ProcessCreate, ProcessTerminate,
};
use crate::host::HostRoot;
use crate::metrics::DropReason;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `collector` label of this collector's metrics and status events.
pub const COLLECTOR: &str = "process";

/// How long a blocking receive waits before the reader checks for cancellation.
pub const RECV_TIMEOUT: Duration = Duration::from_millis(200);

/// Socket receive buffer asked for: room for a few thousand events while the reader reads /proc,
/// so an exec storm does not overflow the socket.
pub const RECV_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// How long the kernel has to acknowledge the subscription. No answer means the subscription was
/// silently ignored (agent outside the host PID/user namespace, or no `CONFIG_PROC_EVENTS`).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times the subscription is sent (each waiting [`ACK_TIMEOUT`] for an answer or an
/// event) before the collector falls back to scanning /proc.
pub const SUBSCRIBE_ATTEMPTS: u32 = 3;

/// Interval of the /proc scan used when the connector is unavailable.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// Bound of the pid → executable and pid → parent caches. Exits remove entries; the bound only
/// matters when exits were lost (overflow), which must not leak memory.
pub const CACHE_ENTRIES: usize = 16 * 1024;

/// Most pids one /proc scan looks at (a sanity bound, far above any real edge device).
const MAX_SCAN_PIDS: usize = 256 * 1024;

/// Pid of `kthreadd`, the parent of every kernel thread.
const KTHREADD: u32 = 2;

// ---------------------------------------------------------------------------------------------
// Wire format (include/uapi/linux/netlink.h, connector.h, cn_proc.h). All fields are in the host's
// byte order. The structs are read field by field from the byte buffer: the receive buffer has no
// alignment guarantee and its content is not trusted.
// ---------------------------------------------------------------------------------------------

/// `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32.
pub const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_DONE: u16 = 3;
/// `struct cn_msg`: id.idx u32, id.val u32, seq u32, ack u32, len u16, flags u16, data[].
pub const CN_MSG_LEN: usize = 20;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `struct proc_event` header: what u32, cpu u32, timestamp_ns u64; `event_data` follows.
pub const PROC_EVENT_HEADER_LEN: usize = 16;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_CN_MCAST_IGNORE: u32 = 2;

const PROC_EVENT_NONE: u32 = 0x0000_0000;
const PROC_EVENT_FORK: u32 = 0x0000_0001;
const PROC_EVENT_EXEC: u32 = 0x0000_0002;
const PROC_EVENT_UID: u32 = 0x0000_0004;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One process event, as much of it as edgeguard uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// The kernel's answer to a (un)subscription, matched by the `seq`/`ack` we sent; `err` is
    /// an errno, 0 on success.
    Ack {
        seq: u32,
        ack: u32,
        err: u32,
    },
    Fork {
        parent_pid: u32,
        parent_tgid: u32,
        child_pid: u32,
        child_tgid: u32,
    },
    Exec {
        pid: u32,
        tgid: u32,
    },
    /// A task's credentials changed (`setuid` family, or exec of a set-user-id program): its
    /// real and effective uid now.
    Uid {
        pid: u32,
        tgid: u32,
        ruid: u32,
        euid: u32,
    },
    Exit {
        pid: u32,
        tgid: u32,
        /// The task's `exit_code`: a wait(2) status, see [`decode_wait_status`].
        exit_code: u32,
        /// The signal sent to the parent (normally SIGCHLD), not the one that killed the task.
        exit_signal: u32,
        /// Parent's tgid; `None` on kernels before 4.18, which leave the field zero.
        parent_tgid: Option<u32>,
    },
    /// GID, SID, PTRACE, COMM, COREDUMP: not used here.
    Other {
        what: u32,
    },
}

impl ProcEvent {
    /// Whether this is the exit of process `pid` (its thread-group leader, not one thread).
    fn is_exit_of(&self, pid: u32) -> bool {
        matches!(*self, ProcEvent::Exit { pid: p, tgid: t, .. } if p == pid && t == pid)
    }
}

/// Why a netlink message was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("netlink message truncated")]
    Truncated,
    #[error("unexpected netlink message type {0}")]
    UnexpectedType(u16),
    #[error("connector message for another channel")]
    OtherChannel,
    #[error("process event too short for its kind")]
    ShortEvent,
}

/// The events in one received datagram (netlink may pack several messages into one). A message
/// that cannot be parsed yields an error and, when its length is unusable, ends the iteration:
/// nothing after it can be located. Never panics, allocates nothing, always terminates.
pub fn parse_datagram(buf: &[u8]) -> impl Iterator<Item = Result<ProcEvent, ParseError>> + '_ {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        loop {
            let rest = buf.get(offset..).filter(|r| !r.is_empty())?;
            if rest.len() < NLMSG_HDRLEN {
                offset = buf.len();
                return Some(Err(ParseError::Truncated));
            }
            let len = u32_at(rest, 0).map_or(0, |l| l as usize);
            let kind = u16_at(rest, 4).unwrap_or(0);
            if len < NLMSG_HDRLEN || len > rest.len() {
                offset = buf.len();
                return Some(Err(ParseError::Truncated));
            }
            // NLMSG_ALIGN: the next message starts on a 4-byte boundary.
            offset = offset.saturating_add(len.saturating_add(3) & !3);
            let payload = &rest[NLMSG_HDRLEN..len];
            match kind {
                NLMSG_NOOP => continue,
                NLMSG_DONE => return Some(parse_connector(payload)),
                other => return Some(Err(ParseError::UnexpectedType(other))),
            }
        }
    })
}

/// Parses a `cn_msg` carrying a `proc_event` (the payload of one netlink message).
pub fn parse_connector(payload: &[u8]) -> Result<ProcEvent, ParseError> {
    let field = |off| u32_at(payload, off).ok_or(ParseError::Truncated);
    let (idx, val, seq, ack) = (field(0)?, field(4)?, field(8)?, field(12)?);
    let data_len = u16_at(payload, 16).ok_or(ParseError::Truncated)? as usize;
    if payload.len() < CN_MSG_LEN {
        return Err(ParseError::Truncated);
    }
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC) {
        return Err(ParseError::OtherChannel);
    }
    let data = payload
        .get(CN_MSG_LEN..CN_MSG_LEN + data_len)
        .ok_or(ParseError::Truncated)?;
    parse_proc_event(data, seq, ack)
}

/// Parses a `struct proc_event`; `seq` and `ack` come from the enclosing `cn_msg` (used to match
/// acknowledgements).
pub fn parse_proc_event(data: &[u8], seq: u32, ack: u32) -> Result<ProcEvent, ParseError> {
    let what = u32_at(data, 0).ok_or(ParseError::Truncated)?;
    if data.len() < PROC_EVENT_HEADER_LEN {
        return Err(ParseError::Truncated);
    }
    let ev = &data[PROC_EVENT_HEADER_LEN..];
    let f = |i: usize| u32_at(ev, i * 4).ok_or(ParseError::ShortEvent);
    Ok(match what {
        PROC_EVENT_NONE => ProcEvent::Ack {
            seq,
            ack,
            err: f(0)?,
        },
        PROC_EVENT_FORK => ProcEvent::Fork {
            parent_pid: f(0)?,
            parent_tgid: f(1)?,
            child_pid: f(2)?,
            child_tgid: f(3)?,
        },
        PROC_EVENT_EXEC => ProcEvent::Exec {
            pid: f(0)?,
            tgid: f(1)?,
        },
        PROC_EVENT_UID => ProcEvent::Uid {
            pid: f(0)?,
            tgid: f(1)?,
            ruid: f(2)?,
            euid: f(3)?,
        },
        PROC_EVENT_EXIT => ProcEvent::Exit {
            pid: f(0)?,
            tgid: f(1)?,
            exit_code: f(2)?,
            exit_signal: f(3)?,
            parent_tgid: f(5).ok().filter(|p| *p != 0),
        },
        what => ProcEvent::Other { what },
    })
}

/// The message that subscribes (`PROC_CN_MCAST_LISTEN`) or unsubscribes
/// (`PROC_CN_MCAST_IGNORE`): nlmsghdr + cn_msg + the 4-byte operation, which every kernel
/// accepts (6.6+ also take an 8-byte form with an event filter; older ones ignore it).
pub fn subscription_message(op: u32, seq: u32, ack: u32) -> [u8; NLMSG_HDRLEN + CN_MSG_LEN + 4] {
    let mut m = [0u8; NLMSG_HDRLEN + CN_MSG_LEN + 4];
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    let cn = NLMSG_HDRLEN;
    m[cn..cn + 4].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m[cn + 4..cn + 8].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m[cn + 8..cn + 12].copy_from_slice(&seq.to_ne_bytes());
    m[cn + 12..cn + 16].copy_from_slice(&ack.to_ne_bytes());
    m[cn + 16..cn + 18].copy_from_slice(&4u16.to_ne_bytes());
    m[cn + CN_MSG_LEN..].copy_from_slice(&op.to_ne_bytes());
    m
}

/// A decoded wait(2) status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStatus {
    /// What a shell would show in `$?`: the exit code, or 128 + the signal number.
    pub exit_status: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<u32>,
    pub core_dumped: bool,
}

/// Decodes the kernel's `exit_code` (a wait status: `code << 8` for an exit, the signal number
/// in the low 7 bits and 0x80 for a core dump when killed).
pub fn decode_wait_status(raw: u32) -> WaitStatus {
    let signal = raw & 0x7f;
    if signal == 0 {
        WaitStatus {
            exit_status: ((raw >> 8) & 0xff) as i32,
            signal: None,
            core_dumped: false,
        }
    } else {
        WaitStatus {
            exit_status: 128 + signal as i32,
            signal: Some(signal),
            core_dumped: raw & 0x80 != 0,
        }
    }
}

/// The name of a signal number on this architecture (`SIGKILL`, `SIGRTMIN+3`).
pub fn signal_name(signal: u32) -> Option<String> {
    let Ok(sig) = i32::try_from(signal) else {
        return None;
    };
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        // The kernel's SIGRTMIN is 32 (glibc reserves the first few for itself).
        32..=64 => return Some(format!("SIGRTMIN+{}", sig - 32)),
        _ => return None,
    };
    Some(name.to_string())
}

// ---------------------------------------------------------------------------------------------
// Bounded caches
// ---------------------------------------------------------------------------------------------

/// pid → value that forgets its oldest insertions beyond `cap` entries.
///
/// Entries normally leave when their process exits; the bound is for exits that were never
/// seen (overflow, a fallback scan that missed them). `order` may hold stale positions of
/// re-inserted or removed pids; it is compacted when it holds more than twice the live entries
/// (not twice the bound: under a steady exec load the live set is a few hundred pids while
/// every fork and exec adds a position, and compacting only at 2 × 16,384 positions left each
/// map with 1 MiB of ring buffer that the soak measured as resident memory). After a burst both
/// containers give back capacity, so memory follows the live set rather than its high mark.
#[derive(Debug)]
struct BoundedMap<V> {
    map: HashMap<u32, (u64, V)>,
    order: VecDeque<(u32, u64)>,
    next: u64,
    cap: usize,
}

impl<V> BoundedMap<V> {
    fn new(cap: usize) -> BoundedMap<V> {
        BoundedMap {
            map: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            cap: cap.max(1),
        }
    }

    fn insert(&mut self, pid: u32, value: V) {
        self.next += 1;
        self.map.insert(pid, (self.next, value));
        self.order.push_back((pid, self.next));
        while self.map.len() > self.cap {
            let Some((old, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|(s, _)| *s == stamp) {
                self.map.remove(&old);
            }
        }
        // Amortised O(1): after a compaction `order` holds the live entries only, and the next
        // one comes after at least as many insertions again. Never more than twice the bound.
        if self.order.len() > (2 * self.map.len() + capacity::SLACK).min(2 * self.cap) {
            let map = &self.map;
            self.order
                .retain(|(pid, stamp)| map.get(pid).is_some_and(|(s, _)| s == stamp));
            capacity::shrink_deque(&mut self.order);
        }
    }

    fn get(&self, pid: u32) -> Option<&V> {
        self.map.get(&pid).map(|(_, v)| v)
    }

    fn remove(&mut self, pid: u32) -> Option<V> {
        let removed = self.map.remove(&pid).map(|(_, v)| v);
        capacity::shrink_map(&mut self.map);
        removed
    }
}

// ---------------------------------------------------------------------------------------------
// From kernel facts to records
// ---------------------------------------------------------------------------------------------

/// What the collector remembers between events: executables (for ProcessTerminate, whose
/// process is gone by then) and fork parents (for a ProcessCreate whose process exited before
/// /proc could be read).
struct Tracker {
    host: HostRoot,
    reader: proc_info::Reader,
    users: UserNames,
    /// When the passwd file was last checked for changes (see [`USERS_RECHECK`]).
    users_checked: Option<Instant>,
    executables: BoundedMap<Arc<str>>,
    parents: BoundedMap<u32>,
    /// pid → real uid, followed from the kernel's events (inherited at fork, changed by UID
    /// events), so that an exec needs `stat` rather than the far costlier `status`. Only filled
    /// from reliable sources (a /proc read, a fork of a known parent, a UID event) and emptied
    /// when the socket overflowed (a lost UID event would leave a wrong uid); a pid not in it
    /// is read from `status` as before.
    uids: BoundedMap<u32>,
    /// File names of recent execs from the kernel's tracepoint, for an exec whose /proc entry
    /// was gone before it could be read; `None` where the tracepoint cannot be opened.
    exec_trace: Option<ExecTrace>,
}

/// How often the user-name table is checked against the host's passwd file. Checking costs a
/// `stat` per call, which an exec storm would pay thousands of times a second; a user added
/// less than this long ago may be reported by uid only.
pub const USERS_RECHECK: Duration = Duration::from_secs(1);

impl Tracker {
    fn new(host: HostRoot) -> Tracker {
        Tracker {
            reader: proc_info::Reader::new(&host),
            host,
            users: UserNames::default(),
            users_checked: None,
            executables: BoundedMap::new(CACHE_ENTRIES),
            parents: BoundedMap::new(CACHE_ENTRIES),
            uids: BoundedMap::new(CACHE_ENTRIES),
            exec_trace: None,
        }
    }

    /// Opens the exec tracepoint ([`ExecTrace`]); says once in the log when it cannot.
    fn open_exec_trace(&mut self) {
        match ExecTrace::open(&self.host) {
            Ok(t) => {
                tracing::debug!(
                    "exec tracepoint open: execs reaped before /proc is read keep their file names"
                );
                self.exec_trace = Some(t);
            }
            Err(e) => tracing::info!(
                error = %e,
                "exec tracepoint unavailable: a process reaped before /proc is read is reported without its executable"
            ),
        }
    }

    /// Takes the exec tracepoint's new records and names the execs `/proc` came too late for.
    /// Returns how many tracepoint records the kernel lost since the last call.
    fn name_from_exec_trace(&mut self, infos: &mut VecDeque<ProcessInfo>) -> u64 {
        let Some(trace) = &mut self.exec_trace else {
            return 0;
        };
        let lost = trace.drain();
        for info in infos.iter_mut().filter(|i| i.exe.is_none()) {
            info.exec_name = trace.name_of(info.pid);
        }
        lost
    }

    /// A task's credentials changed: only the thread-group leader's are what `status` shows.
    fn uid_changed(&mut self, pid: u32, tgid: u32, ruid: u32) {
        if pid == tgid {
            self.uids.insert(tgid, ruid);
        }
    }

    /// Events were lost: uids followed from events may be stale; read them from /proc again.
    fn forget_uids(&mut self) {
        self.uids = BoundedMap::new(CACHE_ENTRIES);
    }

    /// Fills what stays until the process is reaped: parent, name and cgroup, and the uid from
    /// the followed uids when known (`stat`), else from `status`.
    ///
    /// `stat` is skipped too when the events already say all it would: the uid is followed, the
    /// executable link was read (so the name is not needed), and the process was forked by a
    /// parent that has not exited (`parent_exited` says whether its exit came earlier in this
    /// batch; an exit in an earlier batch made the tracker forget it). Only a parent's exit
    /// reparents a process, and the kernel sends that exit before it reparents, so this parent
    /// is the one `stat` would show at the exec. The container is read, never followed from
    /// events, because runtimes move a process into a container's cgroup between its fork and
    /// its exec ([`proc_info::Reader::read_container`]: one link for a process on the host).
    fn read_lasting(&mut self, info: &mut ProcessInfo, parent_exited: impl Fn(u32) -> bool) {
        match self.uids.get(info.pid).copied() {
            Some(uid) => {
                match self.living_fork_parent(info.pid, &parent_exited) {
                    Some(parent) if info.exe.is_some() => info.ppid = Some(parent),
                    _ => self.reader.read_stat(info),
                }
                info.uid = Some(uid);
            }
            None => self.reader.read_status(info),
        }
        self.reader.read_container(info);
    }

    /// The parent that forked `pid`, if it is known and has not exited.
    fn living_fork_parent(&self, pid: u32, exited: impl Fn(u32) -> bool) -> Option<u32> {
        let parent = self.parents.get(pid).copied()?;
        // Known processes have a parent or an executable entry until their exit removes both.
        let known = self.parents.get(parent).is_some() || self.executables.get(parent).is_some();
        (known && !exited(parent)).then_some(parent)
    }

    /// Remembers the processes already running, so their exits name their executables.
    fn seed(&mut self) -> io::Result<()> {
        for pid in list_pids(&self.host)?.into_iter().take(CACHE_ENTRIES) {
            let info = self.reader.read(pid, Liveness::Unknown);
            self.remember(&info);
        }
        Ok(())
    }

    /// What /proc shows about `pid` now.
    fn read(&mut self, pid: u32, liveness: Liveness) -> ProcessInfo {
        self.reader.read(pid, liveness)
    }

    /// The user name of `uid`, with the passwd file checked at most every [`USERS_RECHECK`].
    fn user_name(&mut self, uid: u32) -> Option<String> {
        let now = Instant::now();
        if self
            .users_checked
            .is_none_or(|t| now.duration_since(t) >= USERS_RECHECK)
        {
            self.users_checked = Some(now);
            return self.users.name(&self.host, uid);
        }
        self.users.cached(uid)
    }

    fn remember(&mut self, info: &ProcessInfo) {
        if let Some(exe) = &info.exe {
            self.executables.insert(info.pid, Arc::from(exe.as_str()));
        }
        if let Some(uid) = info.uid {
            self.uids.insert(info.pid, uid);
        }
        if let Some(ppid) = info.ppid {
            self.parents.insert(info.pid, ppid);
        }
    }

    /// A new process (not a thread) inherits its parent's executable until it execs.
    fn fork(&mut self, parent_tgid: u32, child_pid: u32, child_tgid: u32) {
        if child_pid != child_tgid {
            return;
        }
        self.parents.insert(child_tgid, parent_tgid);
        if let Some(exe) = self.executables.get(parent_tgid).cloned() {
            self.executables.insert(child_tgid, exe);
        }
        match self.uids.get(parent_tgid).copied() {
            Some(uid) => self.uids.insert(child_tgid, uid),
            // A recycled pid must not keep an earlier process's uid.
            None => {
                self.uids.remove(child_tgid);
            }
        }
    }

    /// A `ProcessCreate` for a process that just exec'd, read from /proc now (the reader reads
    /// a whole batch's execs first, see [`read_execs_first`]; tests use this shortcut).
    #[cfg(test)]
    fn exec(&mut self, pid: u32) -> ProcessCreate {
        let info = self.read(pid, Liveness::Unknown);
        self.created(info)
    }

    /// A `ProcessCreate` from what /proc showed; remembers its executable and parent.
    fn created(&mut self, info: ProcessInfo) -> ProcessCreate {
        let pid = info.pid;
        let fork_parent = self.parents.get(pid).copied();
        self.remember(&info);
        let executable = info.executable();
        if info.exe.is_none() {
            // The cache may hold the pre-exec executable inherited at fork: replace it with
            // the name reported here (argv[0] or comm), or forget it.
            if executable.is_empty() {
                self.executables.remove(pid);
            } else {
                self.executables.insert(pid, Arc::from(executable.as_str()));
            }
        }
        let mut extra = ExtraDetails::new();
        if let Some(id) = &info.container_id {
            extra.insert("ContainerId".into(), id.clone());
        }
        if info.exe.is_none() || info.uid.is_none() {
            // Gone (or a zombie) before /proc could be read: report what is known.
            extra.insert("Incomplete".into(), "true".into());
            if let Some(comm) = &info.comm {
                extra.insert("Comm".into(), comm.clone());
            }
        }
        match (info.ppid, fork_parent) {
            (Some(now), Some(forked)) if now != forked => {
                // Reparented between fork and exec (the forker exited): keep who started it.
                extra.insert("OriginalParentProcessId".into(), forked.to_string());
            }
            _ => {}
        }
        ProcessCreate {
            executable,
            command_line: info.cmdline.unwrap_or_default(),
            process_id: pid,
            parent_process_id: info.ppid.or(fork_parent).unwrap_or(0),
            user_id: info.uid.map(|u| u.to_string()).unwrap_or_default(),
            user_name: info.uid.and_then(|u| self.user_name(u)),
            extra_details: extra,
        }
    }

    /// A `ProcessTerminate` for `pid`; `raw` is the kernel's wait status (`None` when a scan
    /// only noticed the pid is gone). Kernel threads (`None`) are not reported.
    fn terminated(
        &mut self,
        pid: u32,
        raw: Option<u32>,
        kernel_parent: Option<u32>,
    ) -> Option<ProcessTerminate> {
        let executable = self.executables.remove(pid);
        let parent = self.parents.remove(pid).or(kernel_parent);
        self.uids.remove(pid);
        if executable.is_none() && (pid == KTHREADD || parent == Some(KTHREADD)) {
            return None;
        }
        let mut extra = ExtraDetails::new();
        if executable.is_none() {
            extra.insert("Incomplete".into(), "true".into());
        }
        if let Some(p) = parent {
            extra.insert("ParentProcessId".into(), p.to_string());
        }
        let exit_status = match raw {
            Some(raw) => {
                let w = decode_wait_status(raw);
                extra.insert("WaitStatus".into(), raw.to_string());
                if let Some(sig) = w.signal {
                    extra.insert("SignalNumber".into(), sig.to_string());
                    if let Some(name) = signal_name(sig) {
                        extra.insert("Signal".into(), name);
                    }
                }
                if w.core_dumped {
                    extra.insert("CoreDumped".into(), "true".into());
                }
                w.exit_status
            }
            None => {
                extra.insert("ExitStatusUnknown".into(), "true".into());
                -1
            }
        };
        Some(ProcessTerminate {
            executable: executable.map(|e| e.to_string()).unwrap_or_default(),
            process_id: pid,
            exit_status,
            extra_details: extra,
        })
    }
}

fn is_kernel_thread(info: &ProcessInfo) -> bool {
    info.exe.is_none() && (info.pid == KTHREADD || info.ppid == Some(KTHREADD))
}

/// The pids (thread-group ids) listed in the host's /proc.
fn list_pids(host: &HostRoot) -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(host.path("/proc"))? {
        let Ok(entry) = entry else { continue };
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            pids.push(pid);
            if pids.len() >= MAX_SCAN_PIDS {
                break;
            }
        }
    }
    Ok(pids)
}

// ---------------------------------------------------------------------------------------------
// The netlink socket
// ---------------------------------------------------------------------------------------------

/// Why the connector could not be used (reported in the `Degraded` status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening a netlink connector socket")]
    Socket(#[source] io::Error),
    #[error("joining the process events group")]
    Bind(#[source] io::Error),
    #[error("subscribing to process events")]
    Subscribe(#[source] io::Error),
    #[error("no process connector in this network namespace (the module needs the host's network)")]
    NotHostNetwork(#[source] io::Error),
    #[error("the kernel refused the process events subscription")]
    Refused(#[source] io::Error),
    #[error(
        "the kernel did not acknowledge the process events subscription (agent outside the host PID or user namespace, or kernel without CONFIG_PROC_EVENTS)"
    )]
    NoAck,
    #[error("reading process events")]
    Receive(#[source] io::Error),
}

/// The message and its causes on one line, for the status event.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// A subscribed `NETLINK_CONNECTOR` socket. Dropping it unsubscribes (older kernels keep a
/// global listener count that only `PROC_CN_MCAST_IGNORE` lowers) and closes it.
struct Connector {
    fd: OwnedFd,
    /// `seq`/`ack` sent with the subscription; the kernel's answer carries `ack + 1`, which
    /// tells it from other listeners' acknowledgements (all listeners receive them).
    seq: u32,
    ack: u32,
    /// The receive buffer the kernel granted (bytes, as it reports it), for the status message:
    /// without CAP_NET_ADMIN it is capped by `net.core.rmem_max`, and overflows come sooner.
    recv_buffer: Option<usize>,
    /// Subscriptions sent: older kernels count listeners globally, so each is undone on drop.
    listens: std::cell::Cell<u32>,
}

/// What one receive gave.
enum Received {
    /// At least one kernel datagram is in the batch.
    Datagrams,
    TimedOut,
    /// `ENOBUFS`: the socket buffer was full and the kernel dropped events (how many is unknown).
    Overflow,
}

fn recv_buffer_size(fd: &OwnedFd) -> Option<usize> {
    let mut size: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `size` and `len` are live and writable; the fd is open.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut size as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| usize::try_from(size).ok()).flatten()
}

impl Connector {
    fn open(recv_buffer: usize) -> Result<Connector, Error> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(Error::Socket(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = i32::try_from(recv_buffer).unwrap_or(i32::MAX);
        // FORCE passes rmem_max but needs CAP_NET_ADMIN; the plain option is capped by rmem_max.
        if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
            if let Err(e) = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size) {
                tracing::debug!(error = %e, "keeping the default netlink receive buffer");
            }
        }
        set_recv_timeout(&fd, RECV_TIMEOUT).map_err(Error::Socket)?;

        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = CN_IDX_PROC;
        // SAFETY: `addr` is a valid sockaddr_nl of the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(Error::Bind(io::Error::last_os_error()));
        }
        let connector = Connector {
            recv_buffer: recv_buffer_size(&fd),
            fd,
            seq: fastrand::u32(..),
            ack: fastrand::u32(..),
            listens: std::cell::Cell::new(0),
        };
        connector.listen().map_err(|e| {
            // The kernel's connector socket exists only in the initial network namespace.
            if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                Error::NotHostNetwork(e)
            } else {
                Error::Subscribe(e)
            }
        })?;
        Ok(connector)
    }

    /// Sends the subscription (again), counting it.
    fn listen(&self) -> io::Result<()> {
        self.send_op(PROC_CN_MCAST_LISTEN)?;
        self.listens.set(self.listens.get() + 1);
        Ok(())
    }

    fn send_op(&self, op: u32) -> io::Result<()> {
        let msg = subscription_message(op, self.seq, self.ack);
        // SAFETY: `msg` is a live buffer of the length given; the socket is bound, so the
        // message goes to the kernel (port 0).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Is this the kernel's answer to our subscription? Matched by `ack` alone (ours + 1): the
    /// kernel echoes it, but not `seq` on every version (6.18 puts its own event counter there),
    /// and matching both made every subscription look unanswered, so the collector reported
    /// `Up` only once some process event happened to arrive.
    fn is_our_ack(&self, ack: u32) -> bool {
        ack == self.ack.wrapping_add(1)
    }

    /// Receives the datagrams waiting on the socket (at least one, at most [`BATCH_SLOTS`]) with
    /// one `recvmmsg`: in an exec storm each fork, exec and exit is its own datagram, and one
    /// system call per event was a large part of the reader's cost. Datagrams not sent by the
    /// kernel (port id 0) are discarded: only the kernel may speak for the process connector.
    fn recv_batch(&self, batch: &mut Batch) -> io::Result<Received> {
        loop {
            batch.count = 0;
            // SAFETY: plain data; all-zero is a valid value of each.
            let mut from: [libc::sockaddr_nl; BATCH_SLOTS] = unsafe { std::mem::zeroed() };
            let mut iov: [libc::iovec; BATCH_SLOTS] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; BATCH_SLOTS] = unsafe { std::mem::zeroed() };
            for (i, slot) in batch.buf.chunks_exact_mut(BATCH_SLOT_BYTES).enumerate() {
                iov[i].iov_base = slot.as_mut_ptr().cast();
                iov[i].iov_len = slot.len();
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_name = (&mut from[i] as *mut libc::sockaddr_nl).cast();
                msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            }
            // SAFETY: every header points to live, writable buffers of the lengths given, which
            // outlive the call. MSG_WAITFORONE: block (up to SO_RCVTIMEO) for the first datagram
            // only, then take what is already queued.
            let n = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    BATCH_SLOTS as libc::c_uint,
                    // glibc declares the flags `int`, musl `unsigned int`.
                    libc::MSG_WAITFORONE as _,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                for (i, m) in msgs.iter().take(n as usize).enumerate() {
                    if from[i].nl_pid != 0 {
                        continue;
                    }
                    // A datagram larger than its slot arrives cut (MSG_TRUNC); parsing reports
                    // it as truncated.
                    batch.lens[batch.count] = (m.msg_len as usize).min(BATCH_SLOT_BYTES);
                    batch.slots[batch.count] = i;
                    batch.count += 1;
                }
                if batch.count == 0 {
                    continue;
                }
                return Ok(Received::Datagrams);
            }
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(Received::TimedOut),
                Some(libc::ENOBUFS) => Ok(Received::Overflow),
                Some(libc::EINTR) => continue,
                _ => Err(e),
            };
        }
    }
}

/// Datagrams one receive can take. Each is one event of about 80 bytes.
const BATCH_SLOTS: usize = 64;
/// Room per datagram: far more than a process event (the connector's own limit is 16 KiB, but
/// the process connector's messages are all under 100 bytes).
const BATCH_SLOT_BYTES: usize = 1024;

/// Buffers for [`Connector::recv_batch`], kept across receives.
struct Batch {
    buf: Vec<u8>,
    /// Slot index and length of each kernel datagram received, in order.
    slots: [usize; BATCH_SLOTS],
    lens: [usize; BATCH_SLOTS],
    count: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            buf: vec![0u8; BATCH_SLOTS * BATCH_SLOT_BYTES],
            slots: [0; BATCH_SLOTS],
            lens: [0; BATCH_SLOTS],
            count: 0,
        }
    }

    /// The kernel datagrams of the last receive, in order.
    fn datagrams(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.count).filter_map(|i| {
            let start = self.slots[i] * BATCH_SLOT_BYTES;
            self.buf.get(start..start + self.lens[i])
        })
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        for _ in 0..self.listens.get() {
            let _ = self.send_op(PROC_CN_MCAST_IGNORE);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The collector
// ---------------------------------------------------------------------------------------------

/// Starts the process collector on a dedicated thread (`edgeguard-proc`).
///
/// Emits `ProcessCreate` and `ProcessTerminate` (one record each) with [`Context::emit_from_reader`],
/// and `CollectorStatus`: `Up` once the kernel acknowledged the subscription, `Degraded` when it
/// falls back to scanning /proc. The thread ends within [`RECV_TIMEOUT`] of `ctx.cancel`, or
/// when the pipeline's channel closes. Fails only if the thread cannot be created.
pub fn spawn(ctx: Context) -> io::Result<JoinHandle<()>> {
    spawn_with(ctx, true)
}

fn spawn_with(ctx: Context, use_connector: bool) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("edgeguard-proc".into())
        .spawn(move || run(ctx, use_connector))
}

/// Nice value asked for the reader thread. The kernel reports an exec after the fact and the
/// process runs on; a process that exits before the reader gets to /proc loses its command line
/// (and, once reaped, its name). On a busy host the reader competes with everything else for the
/// CPU, so it asks to be scheduled first. It blocks on the socket when idle, so this costs nothing
/// then; without `CAP_SYS_NICE` the request fails and the thread keeps the normal priority.
pub const READER_NICE: i32 = -10;

/// Raises the calling thread's scheduling priority to [`READER_NICE`] (best effort).
fn raise_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes it.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS as _, tid as libc::id_t, READER_NICE)
    };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "keeping the normal priority for the process events reader");
    }
}

fn run(ctx: Context, use_connector: bool) {
    raise_priority();
    let mut tracker = Tracker::new(ctx.host.clone());
    let failure = if use_connector {
        match Connector::open(RECV_BUFFER_BYTES) {
            Ok(connector) => {
                tracker.open_exec_trace();
                // Seed only after subscribing, so that no process slips between the two.
                if let Err(e) = tracker.seed() {
                    tracing::warn!(error = %e, "cannot list /proc: exits of running processes will lack executables");
                    ctx.metrics.error(COLLECTOR, "proc_list");
                }
                match follow(&ctx, &connector, &mut tracker) {
                    Ok(()) => return,
                    Err(e) => chain(&e),
                }
            }
            Err(e) => chain(&e),
        }
    } else {
        "netlink process connector not used".to_string()
    };
    ctx.report_status(
        COLLECTOR,
        CollectorHealth::Degraded,
        failure,
        Some("scanning /proc every second"),
    );
    scan(&ctx, &mut tracker);
}

/// Reads the connector until cancelled (`Ok`) or until it fails (`Err`: the caller falls back).
fn follow(ctx: &Context, connector: &Connector, tracker: &mut Tracker) -> Result<(), Error> {
    let mut held = Held::default();
    let result = follow_holding(ctx, connector, tracker, &mut held);
    // Whatever ended the loop, events already made are handed over.
    ctx.release(&mut held, COLLECTOR);
    result
}

fn follow_holding(
    ctx: &Context,
    connector: &Connector,
    tracker: &mut Tracker,
    held: &mut Held,
) -> Result<(), Error> {
    let mut batch = Batch::new();
    let mut events: Vec<ProcEvent> = Vec::with_capacity(BATCH_SLOTS);
    let mut early: VecDeque<ProcessInfo> = VecDeque::with_capacity(BATCH_SLOTS);
    let started = Instant::now();
    let mut confirmed = false;
    let mut failures = 0u32;
    let mut timeout = RecvTimeout::new(RECV_TIMEOUT);
    while !ctx.cancel.is_cancelled() {
        if held.due_in().is_some_and(|d| d.is_zero()) && !ctx.release(held, COLLECTOR) {
            return Ok(());
        }
        timeout.follow(&connector.fd, held);
        match connector.recv_batch(&mut batch) {
            Ok(Received::Datagrams) => {}
            // The traffic paused: what is held goes over.
            Ok(Received::TimedOut) if !held.is_empty() => {
                if !ctx.release(held, COLLECTOR) {
                    return Ok(());
                }
                continue;
            }
            Ok(Received::TimedOut) => {
                if !confirmed && started.elapsed() > ACK_TIMEOUT * connector.listens.get() {
                    // A busy host can lose the first answer; ask again before falling back.
                    if connector.listens.get() >= SUBSCRIBE_ATTEMPTS {
                        return Err(Error::NoAck);
                    }
                    tracing::debug!(
                        attempt = connector.listens.get() + 1,
                        "no answer to the process events subscription yet; subscribing again"
                    );
                    connector.listen().map_err(Error::Subscribe)?;
                }
                continue;
            }
            Ok(Received::Overflow) => {
                // The kernel does not say how many events it dropped: count the occurrence.
                ctx.metrics
                    .dropped(COLLECTOR, DropReason::SourceOverflow, 1);
                tracker.forget_uids();
                confirm(ctx, connector, &mut confirmed);
                continue;
            }
            Err(e) => {
                ctx.metrics.error(COLLECTOR, "netlink_recv");
                failures += 1;
                if failures >= 10 {
                    return Err(Error::Receive(e));
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        failures = 0;
        events.clear();
        for datagram in batch.datagrams() {
            for parsed in parse_datagram(datagram) {
                match parsed {
                    Ok(event) => events.push(event),
                    Err(e) => {
                        tracing::debug!(error = %e, "skipping a netlink message");
                        ctx.metrics.error(COLLECTOR, "malformed_message");
                    }
                }
            }
        }
        if read_execs_first(tracker, &events, &mut early) > 0 {
            ctx.metrics.error(COLLECTOR, "exec_trace_lost");
        }
        for event in &events {
            let payload = match *event {
                ProcEvent::Ack { ack, err, .. } if connector.is_our_ack(ack) => {
                    if err != 0 {
                        return Err(Error::Refused(io::Error::from_raw_os_error(err as i32)));
                    }
                    confirm(ctx, connector, &mut confirmed);
                    continue;
                }
                // Applied by `read_execs_first`, in order, before the execs were read.
                ProcEvent::Fork { .. } | ProcEvent::Uid { .. } => continue,
                ProcEvent::Exec { pid, tgid } if pid == tgid => {
                    let info = match early.pop_front() {
                        Some(info) if info.pid == pid => info,
                        _ => tracker.read(pid, Liveness::Unknown),
                    };
                    Payload::ProcessCreate(vec![tracker.created(info)])
                }
                ProcEvent::Exit {
                    pid,
                    tgid,
                    exit_code,
                    parent_tgid,
                    ..
                } if pid == tgid => match tracker.terminated(pid, Some(exit_code), parent_tgid) {
                    Some(r) => Payload::ProcessTerminate(vec![r]),
                    None => continue,
                },
                _ => continue,
            };
            // Events flow, so the subscription works even if the ack went missing.
            confirm(ctx, connector, &mut confirmed);
            if !ctx.hold(held, COLLECTOR, Event::new(payload)) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads /proc for every exec of a batch before anything else is done with the batch (building
/// and sending records): a short-lived process loses its command line and executable link when
/// it exits, so each microsecond before the read counts.
///
/// First those two are read for every exec, in order; an exec whose exit is already in the same
/// batch is skipped (its memory is gone). Then the batch's forks and uid changes are applied to
/// the tracker in order, and at each exec what stays until the process is reaped (parent, name,
/// user, cgroup; see [`Tracker::read_lasting`]) is read, so that a fork earlier in the same batch
/// already gives the uid. The caller handles everything else in a second walk, in order, and
/// skips forks and uid changes.
///
/// An exec whose executable link could not be read (gone already) gets the file name its exec
/// gave from the exec tracepoint, when that is open. Returns how many tracepoint records the
/// kernel lost since the last batch.
fn read_execs_first(
    tracker: &mut Tracker,
    events: &[ProcEvent],
    early: &mut VecDeque<ProcessInfo>,
) -> u64 {
    early.clear();
    for (i, event) in events.iter().enumerate() {
        let ProcEvent::Exec { pid, tgid } = *event else {
            continue;
        };
        if pid != tgid {
            continue;
        }
        let exited = events[i + 1..].iter().any(|later| later.is_exit_of(pid));
        let mut info = ProcessInfo {
            pid,
            ..Default::default()
        };
        if !exited {
            tracker.reader.read_fleeting(&mut info);
        }
        early.push_back(info);
    }
    let lost = tracker.name_from_exec_trace(early);
    let mut next = 0;
    for (i, event) in events.iter().enumerate() {
        match *event {
            ProcEvent::Fork {
                parent_tgid,
                child_pid,
                child_tgid,
                ..
            } => tracker.fork(parent_tgid, child_pid, child_tgid),
            ProcEvent::Uid {
                pid, tgid, ruid, ..
            } => tracker.uid_changed(pid, tgid, ruid),
            ProcEvent::Exec { pid, tgid } if pid == tgid => {
                if let Some(info) = early.get_mut(next) {
                    // The tracker applies this batch's exits only later.
                    let exited_before =
                        |parent: u32| events[..i].iter().any(|e| e.is_exit_of(parent));
                    tracker.read_lasting(info, exited_before);
                }
                next += 1;
            }
            _ => {}
        }
    }
    lost
}

/// Reports `Up` the first time the subscription shows it works (our ack, an event, an overflow).
fn confirm(ctx: &Context, connector: &Connector, confirmed: &mut bool) {
    if !*confirmed {
        *confirmed = true;
        let buffer = connector
            .recv_buffer
            .map(|b| format!(" (receive buffer {} KiB)", b / 1024))
            .unwrap_or_default();
        ctx.report_status(
            COLLECTOR,
            CollectorHealth::Up,
            format!("following the kernel's process events{buffer}"),
            None,
        );
    }
}

/// The fallback: diffs the pids in /proc every [`SCAN_INTERVAL`] until cancelled. The first
/// scan is a baseline (processes already running are not "created").
fn scan(ctx: &Context, tracker: &mut Tracker) {
    // pid → reported (false for kernel threads, remembered so they are not re-read every scan).
    let mut known: HashMap<u32, bool> = HashMap::new();
    let mut first = true;
    while !ctx.cancel.is_cancelled() {
        match list_pids(&ctx.host) {
            Ok(pids) => {
                let current: HashSet<u32> = pids.into_iter().collect();
                let mut events = Vec::new();
                for &pid in &current {
                    if known.contains_key(&pid) {
                        continue;
                    }
                    let info = tracker.read(pid, Liveness::Unknown);
                    if info.uid.is_none() && info.ppid.is_none() && info.exe.is_none() {
                        continue; // gone already
                    }
                    // Kernel threads are remembered (not re-read every scan) but not reported.
                    let report = !is_kernel_thread(&info);
                    known.insert(pid, report);
                    if first || !report {
                        tracker.remember(&info);
                    } else {
                        events.push(Payload::ProcessCreate(vec![tracker.created(info)]));
                    }
                }
                let gone: Vec<u32> = known
                    .keys()
                    .copied()
                    .filter(|p| !current.contains(p))
                    .collect();
                for pid in gone {
                    let reported = known.remove(&pid).unwrap_or(false);
                    let record = tracker.terminated(pid, None, None);
                    if let (true, Some(r)) = (reported, record) {
                        events.push(Payload::ProcessTerminate(vec![r]));
                    }
                }
                for payload in events {
                    if !ctx.emit_from_reader(COLLECTOR, Event::new(payload)) {
                        return;
                    }
                }
                first = false;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot list /proc");
                ctx.metrics.error(COLLECTOR, "proc_list");
            }
        }
        // Sleep in short steps so cancellation is noticed promptly.
        let wake = Instant::now() + SCAN_INTERVAL;
        while !ctx.cancel.is_cancelled() {
            let left = wake.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(RECV_TIMEOUT));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use std::collections::HashMap;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Child, Command, Stdio};
    use tokio::sync::{mpsc, watch};
    use tokio_util::sync::CancellationToken;

    // ----- hand-made wire messages -----

    fn proc_event(what: u32, fields: &[u32]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&what.to_ne_bytes());
        d.extend_from_slice(&0u32.to_ne_bytes()); // cpu
        d.extend_from_slice(&123u64.to_ne_bytes()); // timestamp
        let mut data = [0u8; 24]; // the union is 24 bytes, zero-padded, as the kernel sends it
        for (i, f) in fields.iter().enumerate() {
            data[i * 4..i * 4 + 4].copy_from_slice(&f.to_ne_bytes());
        }
        d.extend_from_slice(&data);
        d
    }

    fn cn_msg(idx: u32, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        for v in [idx, 1, seq, ack] {
            m.extend_from_slice(&v.to_ne_bytes());
        }
        m.extend_from_slice(&(data.len() as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(data);
        m
    }

    fn nlmsg(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn datagram(what: u32, fields: &[u32]) -> Vec<u8> {
        nlmsg(NLMSG_DONE, &cn_msg(1, 0, 0, &proc_event(what, fields)))
    }

    fn parse_all(buf: &[u8]) -> Vec<Result<ProcEvent, ParseError>> {
        parse_datagram(buf).collect()
    }

    #[test]
    fn parses_fork_exec_exit_and_ack() {
        assert_eq!(
            parse_all(&datagram(PROC_EVENT_FORK, &[10, 10, 11, 11])),
            [Ok(ProcEvent::Fork {
                parent_pid: 10,
                parent_tgid: 10,
                child_pid: 11,
                child_tgid: 11
            })]
        );
        assert_eq!(
            parse_all(&datagram(PROC_EVENT_EXEC, &[11, 11])),
            [Ok(ProcEvent::Exec { pid: 11, tgid: 11 })]
        );
        assert_eq!(
            parse_all(&datagram(PROC_EVENT_EXIT, &[11, 11, 0x300, 17, 10, 10])),
            [Ok(ProcEvent::Exit {
                pid: 11,
                tgid: 11,
                exit_code: 0x300,
                exit_signal: 17,
                parent_tgid: Some(10)
            })]
        );
        // An old kernel leaves the parent zero.
        assert!(matches!(
            parse_all(&datagram(PROC_EVENT_EXIT, &[11, 11, 9, 17]))[0],
            Ok(ProcEvent::Exit {
                parent_tgid: None,
                ..
            })
        ));
        let ack = nlmsg(NLMSG_DONE, &cn_msg(1, 7, 8, &proc_event(0, &[1])));
        assert_eq!(
            parse_all(&ack),
            [Ok(ProcEvent::Ack {
                seq: 7,
                ack: 8,
                err: 1
            })]
        );
        assert_eq!(
            parse_all(&datagram(PROC_EVENT_UID, &[12, 11, 1000, 0])),
            [Ok(ProcEvent::Uid {
                pid: 12,
                tgid: 11,
                ruid: 1000,
                euid: 0
            })]
        );
        assert_eq!(
            parse_all(&datagram(0x200, &[1, 1])),
            [Ok(ProcEvent::Other { what: 0x200 })]
        );
        // Several messages in one datagram, with a NOOP between them.
        let mut two = datagram(PROC_EVENT_EXEC, &[5, 5]);
        two.extend(nlmsg(NLMSG_NOOP, &[]));
        two.extend(datagram(PROC_EVENT_EXEC, &[6, 6]));
        assert_eq!(
            parse_all(&two),
            [
                Ok(ProcEvent::Exec { pid: 5, tgid: 5 }),
                Ok(ProcEvent::Exec { pid: 6, tgid: 6 })
            ]
        );
    }

    #[test]
    fn skips_truncated_and_foreign_messages() {
        let good = datagram(PROC_EVENT_EXEC, &[5, 5]);
        // Every truncation of a valid message is an error, never a panic or a wrong event.
        for cut in 1..good.len() {
            let r = parse_all(&good[..cut]);
            assert!(r.iter().all(|e| e.is_err()), "cut at {cut}: {r:?}");
        }
        assert_eq!(parse_all(&[]), []);
        // nlmsg_len smaller than the header, or larger than the buffer.
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(parse_all(&bad), [Err(ParseError::Truncated)]);
        bad[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(parse_all(&bad), [Err(ParseError::Truncated)]);
        // cn_msg.len larger than the message.
        let mut cn = cn_msg(1, 0, 0, &proc_event(PROC_EVENT_EXEC, &[5, 5]));
        cn[16..18].copy_from_slice(&500u16.to_ne_bytes());
        assert_eq!(
            parse_all(&nlmsg(NLMSG_DONE, &cn)),
            [Err(ParseError::Truncated)]
        );
        // An exit event cut short inside its data.
        let mut short = proc_event(PROC_EVENT_EXIT, &[1, 1]);
        short.truncate(PROC_EVENT_HEADER_LEN + 8);
        assert_eq!(
            parse_all(&nlmsg(NLMSG_DONE, &cn_msg(1, 0, 0, &short))),
            [Err(ParseError::ShortEvent)]
        );
        // Another connector channel, an error message.
        assert_eq!(
            parse_all(&nlmsg(
                NLMSG_DONE,
                &cn_msg(9, 0, 0, &proc_event(2, &[1, 1]))
            )),
            [Err(ParseError::OtherChannel)]
        );
        assert_eq!(
            parse_all(&nlmsg(2, &[0u8; 20])),
            [Err(ParseError::UnexpectedType(2))]
        );
        // A bad message after a good one: the good one still counts.
        let mut mixed = good.clone();
        mixed.extend_from_slice(&[0xff; 7]);
        assert_eq!(
            parse_all(&mixed),
            [
                Ok(ProcEvent::Exec { pid: 5, tgid: 5 }),
                Err(ParseError::Truncated)
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let n = parse_datagram(&bytes).count();
            proptest::prop_assert!(n <= bytes.len() / NLMSG_HDRLEN + 1);
        }
    }

    #[test]
    fn subscription_message_round_trips() {
        let m = subscription_message(PROC_CN_MCAST_LISTEN, 42, 7);
        assert_eq!(m.len(), 40);
        assert_eq!(u32_at(&m, 0), Some(40));
        let cn = &m[NLMSG_HDRLEN..];
        assert_eq!(u32_at(cn, 8), Some(42));
        assert_eq!(u32_at(cn, 12), Some(7));
        assert_eq!(u16_at(cn, 16), Some(4));
        assert_eq!(u32_at(cn, CN_MSG_LEN), Some(PROC_CN_MCAST_LISTEN));
    }

    #[test]
    fn wait_statuses_read_like_a_shell() {
        assert_eq!(
            decode_wait_status(3 << 8),
            WaitStatus {
                exit_status: 3,
                signal: None,
                core_dumped: false
            }
        );
        assert_eq!(decode_wait_status(0).exit_status, 0);
        assert_eq!(
            decode_wait_status(9),
            WaitStatus {
                exit_status: 137,
                signal: Some(9),
                core_dumped: false
            }
        );
        assert!(decode_wait_status(0x80 | 11).core_dumped);
        assert_eq!(decode_wait_status(u32::MAX).exit_status, 255);
        assert_eq!(signal_name(9).as_deref(), Some("SIGKILL"));
        assert_eq!(signal_name(15).as_deref(), Some("SIGTERM"));
        assert_eq!(signal_name(35).as_deref(), Some("SIGRTMIN+3"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(u32::MAX), None);
    }

    #[test]
    fn bounded_map_forgets_the_oldest() {
        let mut m = BoundedMap::new(3);
        for pid in 1..=5 {
            m.insert(pid, pid * 10);
        }
        assert_eq!(m.map.len(), 3);
        assert_eq!(m.get(1), None);
        assert_eq!(m.get(5), Some(&50));
        // Re-inserting refreshes a pid's age; stale positions never evict a newer value.
        m.insert(3, 31);
        m.insert(6, 60);
        assert_eq!(m.get(3), Some(&31));
        assert_eq!(m.get(4), None);
        assert_eq!(m.remove(3), Some(31));
        // Churn keeps the order queue bounded.
        for i in 0..10_000 {
            m.insert(7, i);
            m.remove(7);
        }
        assert!(m.order.len() <= 2 * m.cap + 1);
    }

    #[test]
    fn bounded_map_memory_follows_the_live_set() {
        // The process collector's shape: a large bound, a steady exec load where each process
        // exits soon, so only a few pids are live at a time.
        let mut m = BoundedMap::new(CACHE_ENTRIES);
        for pid in 0..(4 * CACHE_ENTRIES as u32) {
            m.insert(pid, pid);
            if pid >= 8 {
                m.remove(pid - 8);
            }
        }
        assert!(m.map.len() <= 8);
        assert!(
            m.order.len() <= 2 * 8 + capacity::SLACK + 1,
            "{}",
            m.order.len()
        );
        assert!(
            m.order.capacity() <= 4 * capacity::SLACK,
            "{}",
            m.order.capacity()
        );
        // A burst of live processes, then they all exit: the capacity goes back.
        for pid in 0..10_000 {
            m.insert(pid, pid);
        }
        assert!(m.map.capacity() >= 10_000);
        for pid in 0..10_000 {
            m.remove(pid);
        }
        for pid in 0..1_000 {
            m.insert(pid, pid);
            m.remove(pid);
        }
        assert!(
            m.map.capacity() <= 4 * capacity::SLACK,
            "{}",
            m.map.capacity()
        );
        assert!(
            m.order.capacity() <= 4 * capacity::SLACK,
            "{}",
            m.order.capacity()
        );
    }

    #[test]
    fn an_exec_of_a_known_living_parent_is_read_without_stat() {
        let dir = tempfile::tempdir().unwrap();
        let id = "ab".repeat(32);
        let write_proc = |pid: u32, exe: bool| {
            let p = dir.path().join(format!("proc/{pid}"));
            std::fs::create_dir_all(&p).unwrap();
            if exe {
                std::os::unix::fs::symlink("/usr/bin/python3", p.join("exe")).unwrap();
            }
            std::fs::write(p.join("cmdline"), b"python3\0-c\0pass\0").unwrap();
            // `stat` names another parent, as after a reparenting, so it shows which was used.
            std::fs::write(
                p.join("stat"),
                format!("{pid} (python3) S 1 {pid} {pid} 0 -1 0\n"),
            )
            .unwrap();
            std::fs::write(
                p.join("cgroup"),
                format!("0::/system.slice/docker-{id}.scope\n"),
            )
            .unwrap();
        };
        write_proc(201, true);
        write_proc(202, false);
        let mut t = Tracker::new(HostRoot::new(dir.path()));
        t.executables.insert(100, Arc::from("/bin/bash"));
        t.uids.insert(100, 1000);
        t.fork(100, 201, 201);
        t.fork(100, 202, 202);
        let read = |t: &mut Tracker, pid: u32, parent_exited: bool| {
            let mut info = ProcessInfo {
                pid,
                ..Default::default()
            };
            t.reader.read_fleeting(&mut info);
            t.read_lasting(&mut info, |_| parent_exited);
            info
        };

        let info = read(&mut t, 201, false);
        assert_eq!(info.ppid, Some(100), "the fork parent, not stat's");
        assert_eq!(info.uid, Some(1000));
        assert_eq!(info.comm, None, "stat was not read");
        assert_eq!(info.exe.as_deref(), Some("/usr/bin/python3"));
        assert_eq!(
            info.container_id.as_deref(),
            Some(id.as_str()),
            "cgroup is always read"
        );

        // The parent exited earlier in the same batch: stat says who the parent is now.
        let info = read(&mut t, 201, true);
        assert_eq!(
            (info.ppid, info.comm.as_deref()),
            (Some(1), Some("python3"))
        );
        // No executable link (a zombie, or not allowed): stat gives the name.
        let info = read(&mut t, 202, false);
        assert_eq!(
            (info.ppid, info.comm.as_deref()),
            (Some(1), Some("python3"))
        );
        // The parent's exit came in an earlier batch: the tracker forgot it.
        t.terminated(100, Some(0), None);
        let info = read(&mut t, 201, false);
        assert_eq!((info.ppid, info.uid), (Some(1), Some(1000)));
    }

    #[test]
    fn tracker_records_from_kernel_facts() {
        let dir = tempfile::tempdir().unwrap();
        // An empty host root: nothing can be read from /proc, as for a process already gone.
        let mut t = Tracker::new(HostRoot::new(dir.path()));
        t.executables.insert(100, Arc::from("/usr/bin/dash"));
        t.fork(100, 101, 101);
        t.fork(100, 102, 101); // a thread: ignored
        assert_eq!(t.executables.get(102), None);
        t.fork(100, 103, 103);
        // 101 execs and exits before /proc is read: reported with what the kernel said.
        let c = t.exec(101);
        assert_eq!(c.parent_process_id, 100);
        assert_eq!((c.executable.as_str(), c.command_line.as_str()), ("", ""));
        assert_eq!(c.user_id, "");
        assert_eq!(c.extra_details["Incomplete"], "true");
        let e = t.terminated(101, Some(0), None).unwrap();
        assert_eq!(e.executable, "", "not the pre-exec executable");
        assert_eq!(e.extra_details["Incomplete"], "true");
        // A child that never execs exits with its parent's executable.
        let e = t.terminated(103, Some(9), Some(100)).unwrap();
        assert_eq!(e.executable, "/usr/bin/dash");
        assert_eq!(e.exit_status, 137);
        assert_eq!(e.extra_details["Signal"], "SIGKILL");
        assert_eq!(e.extra_details["WaitStatus"], "9");
        assert_eq!(e.extra_details["ParentProcessId"], "100");
        assert!(!e.extra_details.contains_key("Incomplete"));
        // Unknown exits are reported as such; kernel threads not at all.
        let u = t.terminated(555, None, None).unwrap();
        assert_eq!((u.exit_status, u.executable.as_str()), (-1, ""));
        assert_eq!(u.extra_details["ExitStatusUnknown"], "true");
        assert_eq!(u.extra_details["Incomplete"], "true");
        t.fork(KTHREADD, 700, 700);
        assert_eq!(t.terminated(700, Some(0), None), None);
        assert_eq!(t.terminated(701, Some(0), Some(KTHREADD)), None);
    }

    #[test]
    fn execs_of_a_batch_are_read_first_and_exited_ones_lightly() {
        let mut child = Command::new("/bin/sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        // spawn can return before the kernel has filled in the new argument area.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
            != b"/bin/sleep\x0030\x00"
        {
            assert!(
                Instant::now() < deadline,
                "child never showed its arguments"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut t = Tracker::new(HostRoot::default());
        let mut early = VecDeque::new();
        let exec = ProcEvent::Exec { pid, tgid: pid };
        let exit = ProcEvent::Exit {
            pid,
            tgid: pid,
            exit_code: 0,
            exit_signal: 17,
            parent_tgid: None,
        };
        let other = ProcEvent::Fork {
            parent_pid: 1,
            parent_tgid: 1,
            child_pid: 5,
            child_tgid: 5,
        };
        // Still running as far as the batch says: everything is read.
        read_execs_first(&mut t, &[other, exec], &mut early);
        assert_eq!(early.len(), 1);
        assert_eq!(early[0].cmdline.as_deref(), Some("/bin/sleep 30"));
        assert!(early[0].exe.is_some());
        // Its exit is in the same batch: only what outlives the memory is asked for.
        read_execs_first(&mut t, &[exec, other, exit], &mut early);
        assert_eq!(early.len(), 1);
        assert_eq!(
            (early[0].cmdline.as_deref(), early[0].exe.as_deref()),
            (None, None)
        );
        assert_eq!(early[0].ppid, Some(std::process::id()));
        // An exit before the exec (an earlier process with that pid) does not count; threads'
        // execs are not read.
        read_execs_first(
            &mut t,
            &[
                exit,
                exec,
                ProcEvent::Exec {
                    pid: pid + 1,
                    tgid: pid,
                },
            ],
            &mut early,
        );
        assert_eq!(early.len(), 1);
        assert!(early[0].cmdline.is_some());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Real kernel: needs tracefs (scripts/test.sh mounts it where the host has not).
    #[test]
    fn an_exec_reaped_before_its_read_keeps_its_file_name_from_the_tracepoint() {
        let mut t = Tracker::new(HostRoot::new("/"));
        t.open_exec_trace();
        assert!(
            t.exec_trace.is_some(),
            "the exec tracepoint should open as root (is tracefs mounted at /sys/kernel/tracing?)"
        );
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("egreaped");
        std::fs::copy("/bin/true", &exe).unwrap();
        let mut child = Command::new(&exe).spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // Gone before the reader got to it: /proc has nothing left.
        let mut early = VecDeque::new();
        read_execs_first(&mut t, &[ProcEvent::Exec { pid, tgid: pid }], &mut early);
        let info = early.pop_front().unwrap();
        assert_eq!((info.exe.as_deref(), info.cmdline.as_deref()), (None, None));
        let record = t.created(info);
        assert_eq!(record.executable, exe.to_str().unwrap());
        assert_eq!(
            record.extra_details.get("Incomplete").map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn uids_follow_forks_and_credential_changes() {
        let dir = tempfile::tempdir().unwrap();
        // An empty host root: /proc cannot be read, so every uid below comes from the events.
        let mut t = Tracker::new(HostRoot::new(dir.path()));
        t.uids.insert(100, 1000);
        let mut early = VecDeque::new();
        let fork = |child| ProcEvent::Fork {
            parent_pid: 100,
            parent_tgid: 100,
            child_pid: child,
            child_tgid: child,
        };
        let exec = |pid| ProcEvent::Exec { pid, tgid: pid };
        // Fork and exec in one batch: the child has its parent's uid.
        read_execs_first(&mut t, &[fork(101), exec(101)], &mut early);
        assert_eq!(early[0].uid, Some(1000));
        let c = t.created(early.pop_front().unwrap());
        assert_eq!(c.user_id, "1000");
        // setuid between fork and exec; a thread's own change does not count.
        let uid = |pid, tgid, ruid| ProcEvent::Uid {
            pid,
            tgid,
            ruid,
            euid: ruid,
        };
        read_execs_first(
            &mut t,
            &[fork(102), uid(102, 102, 0), uid(103, 102, 7), exec(102)],
            &mut early,
        );
        assert_eq!(early[0].uid, Some(0));
        // A parent whose uid is unknown, and a pid recycled from a known process: unknown
        // (read from status, which this empty root does not have).
        t.uids.insert(104, 55);
        read_execs_first(
            &mut t,
            &[
                ProcEvent::Fork {
                    parent_pid: 9,
                    parent_tgid: 9,
                    child_pid: 104,
                    child_tgid: 104,
                },
                exec(104),
            ],
            &mut early,
        );
        assert_eq!(early[0].uid, None);
        // Exits forget; a lost event forgets everything.
        t.terminated(101, Some(0), None);
        assert_eq!(t.uids.get(101), None);
        t.forget_uids();
        read_execs_first(&mut t, &[fork(105), exec(105)], &mut early);
        assert_eq!(early[0].uid, None);
    }

    // ----- against the real kernel -----

    fn create_of(e: &Event) -> Option<&ProcessCreate> {
        match &e.payload {
            Payload::ProcessCreate(r) => r.first(),
            _ => None,
        }
    }

    fn terminate_of(e: &Event) -> Option<&ProcessTerminate> {
        match &e.payload {
            Payload::ProcessTerminate(r) => r.first(),
            _ => None,
        }
    }

    struct Harness {
        rx: mpsc::Receiver<Event>,
        cancel: CancellationToken,
        handle: Option<JoinHandle<()>>,
        metrics: Arc<Metrics>,
        _state: tempfile::TempDir,
    }

    fn start(use_connector: bool) -> Harness {
        let (events, rx) = mpsc::channel(200_000);
        let cancel = CancellationToken::new();
        let metrics = Arc::new(Metrics::for_tests());
        let state = tempfile::tempdir().unwrap();
        let ctx = Context {
            host: HostRoot::default(),
            events,
            metrics: metrics.clone(),
            config: watch::channel(Arc::new(Config::default())).1,
            cancel: cancel.clone(),
            state_dir: state.path().to_path_buf(),
        };
        let handle = spawn_with(ctx, use_connector).unwrap();
        Harness {
            rx,
            cancel,
            handle: Some(handle),
            metrics,
            _state: state,
        }
    }

    impl Harness {
        /// Feeds events to `f` until it returns true or `timeout` passes; returns whether it did.
        fn until(&mut self, timeout: Duration, mut f: impl FnMut(&Event) -> bool) -> bool {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                match self.rx.try_recv() {
                    Ok(e) => {
                        if f(&e) {
                            return true;
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            false
        }

        fn wait_status(&mut self, want: CollectorHealth) {
            let seen = self.until(
                Duration::from_secs(5),
                |e| matches!(&e.payload, Payload::CollectorStatus(s) if s[0].status == want),
            );
            assert!(seen, "no {want:?} status");
        }

        fn stop(mut self) -> Duration {
            let t = Instant::now();
            self.cancel.cancel();
            self.handle.take().unwrap().join().unwrap();
            t.elapsed()
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            self.cancel.cancel();
        }
    }

    /// A script that waits for its stdin to close, then exits 3: it lives until the test lets
    /// it go, so each ProcessCreate can be checked in full.
    fn script(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("edgeguard-proc-test.sh");
        std::fs::write(&path, "#!/bin/sh\nread line\nexit 3\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn spawn_waiting(script: &std::path::Path, arg: &str) -> Child {
        Command::new(script)
            .arg(arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    #[test]
    fn reports_every_exec_and_exit_with_status() {
        let dir = tempfile::tempdir().unwrap();
        let script = script(dir.path());
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let mut h = start(true);
        h.wait_status(CollectorHealth::Up);

        let mut children: HashMap<u32, (usize, Child)> = HashMap::new();
        for i in 0..200 {
            let child = spawn_waiting(&script, &format!("run-{i}"));
            children.insert(child.id(), (i, child));
        }
        let mut created: HashMap<u32, ProcessCreate> = HashMap::new();
        let all = h.until(Duration::from_secs(20), |e| {
            if let Some(r) = create_of(e).filter(|r| children.contains_key(&r.process_id)) {
                created.insert(r.process_id, r.clone());
            }
            created.len() == children.len()
        });
        assert!(all, "saw {} of 200 ProcessCreate", created.len());
        for (pid, (i, _)) in &children {
            let c = &created[pid];
            assert_eq!(c.executable, sh.to_str().unwrap());
            assert_eq!(
                c.command_line,
                format!("/bin/sh {} run-{i}", script.display())
            );
            assert_eq!(c.parent_process_id, std::process::id());
            assert_eq!(c.user_id, unsafe { libc::getuid() }.to_string());
            assert_eq!(c.user_name.as_deref(), Some("root"));
            assert!(!c.extra_details.contains_key("Incomplete"), "{c:?}");
        }

        for (_, (_, mut child)) in children.drain() {
            drop(child.stdin.take());
            assert_eq!(child.wait().unwrap().code(), Some(3));
        }
        let pids: HashSet<u32> = created.keys().copied().collect();
        let mut ended: HashMap<u32, ProcessTerminate> = HashMap::new();
        let all = h.until(Duration::from_secs(20), |e| {
            if let Some(r) = terminate_of(e).filter(|r| pids.contains(&r.process_id)) {
                ended.insert(r.process_id, r.clone());
            }
            ended.len() == pids.len()
        });
        assert!(all, "saw {} of 200 ProcessTerminate", ended.len());
        for t in ended.values() {
            assert_eq!(t.exit_status, 3);
            assert_eq!(t.executable, sh.to_str().unwrap());
            assert_eq!(t.extra_details["WaitStatus"], (3 << 8).to_string());
            assert_eq!(
                t.extra_details["ParentProcessId"],
                std::process::id().to_string()
            );
        }
        assert_eq!(
            h.metrics
                .dropped_total(COLLECTOR, DropReason::SourceOverflow),
            0
        );
        assert!(h.stop() < Duration::from_secs(1));
    }

    #[test]
    fn a_killed_process_exits_137() {
        let dir = tempfile::tempdir().unwrap();
        let script = script(dir.path());
        let mut h = start(true);
        h.wait_status(CollectorHealth::Up);
        let mut child = spawn_waiting(&script, "to-be-killed");
        let pid = child.id();
        assert!(h.until(Duration::from_secs(5), |e| matches!(
            &e.payload,
            Payload::ProcessCreate(r) if r[0].process_id == pid
        )));
        child.kill().unwrap();
        child.wait().unwrap();
        let mut ended = None;
        assert!(h.until(Duration::from_secs(5), |e| {
            if let Some(r) = terminate_of(e).filter(|r| r.process_id == pid) {
                ended = Some(r.clone());
            }
            ended.is_some()
        }));
        let t = ended.unwrap();
        assert_eq!(t.exit_status, 137);
        assert_eq!(t.extra_details["Signal"], "SIGKILL");
        assert_eq!(t.extra_details["SignalNumber"], "9");
    }

    /// The uid comes from the kernel's events (fork, then a UID event for the setuid between
    /// fork and exec), not from `status`: a process that drops to `nobody` before exec'ing is
    /// reported as `nobody`.
    #[test]
    fn a_process_that_changes_user_before_exec_is_reported_with_the_new_uid() {
        use std::os::unix::process::CommandExt;
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: cannot change user, skipping");
            return;
        }
        let mut h = start(true);
        h.wait_status(CollectorHealth::Up);
        let mut child = Command::new("/bin/sleep")
            .arg("5")
            .uid(65534)
            .gid(65534)
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut created = None;
        assert!(h.until(Duration::from_secs(5), |e| {
            if let Some(r) = create_of(e).filter(|r| r.process_id == pid) {
                created = Some(r.clone());
            }
            created.is_some()
        }));
        child.kill().unwrap();
        child.wait().unwrap();
        let c = created.unwrap();
        assert_eq!(c.user_id, "65534", "{c:?}");
        assert_eq!(c.command_line, "/bin/sleep 5");
        h.stop();
    }

    #[test]
    fn fallback_scanner_sees_a_process_start_and_exit() {
        let mut h = start(false);
        h.wait_status(CollectorHealth::Degraded);
        // Let the baseline scan pass, so the sleeper is new to the next one.
        std::thread::sleep(Duration::from_millis(1200));
        let arg = format!("30.{}", fastrand::u32(1000..9999));
        let mut child = Command::new("sleep").arg(&arg).spawn().unwrap();
        let pid = child.id();
        let mut created = None;
        let me = std::process::id();
        let mut saw_myself = false;
        assert!(h.until(Duration::from_secs(5), |e| {
            if let Some(r) = create_of(e) {
                saw_myself |= r.process_id == me;
                if r.process_id == pid {
                    created = Some(r.clone());
                }
            }
            created.is_some()
        }));
        assert!(!saw_myself, "processes running at start are not reported");
        let c = created.unwrap();
        assert_eq!(c.command_line, format!("sleep {arg}"));
        assert_eq!(c.parent_process_id, me);
        assert_eq!(
            c.executable,
            std::fs::canonicalize("/bin/sleep")
                .unwrap()
                .to_str()
                .unwrap()
        );

        child.kill().unwrap();
        child.wait().unwrap();
        let mut ended = None;
        assert!(h.until(Duration::from_secs(5), |e| {
            if let Some(r) = terminate_of(e).filter(|r| r.process_id == pid) {
                ended = Some(r.clone());
            }
            ended.is_some()
        }));
        let t = ended.unwrap();
        assert_eq!(t.exit_status, -1);
        assert_eq!(t.extra_details["ExitStatusUnknown"], "true");
        assert_eq!(t.executable, c.executable);
        assert!(h.stop() < Duration::from_secs(1));
    }

    /// Outside the host's network namespace there is no connector to talk to (a module deployed
    /// without host networking): the collector says so and scans /proc. Runs this test binary
    /// again under `unshare --net`. (Dropping CAP_NET_ADMIN is no longer a failure on kernels
    /// that let unprivileged processes join CN_IDX_PROC, like this test VM's 6.18.)
    #[test]
    fn outside_the_host_network_it_falls_back() {
        const CHILD: &str = "EDGEGUARD_PROCESS_TEST_NETNS";
        let name = "collectors::process::tests::outside_the_host_network_it_falls_back";
        if std::env::var_os(CHILD).is_some() {
            let mut h = start(true);
            let mut status = None;
            assert!(h.until(Duration::from_secs(5), |e| match &e.payload {
                Payload::CollectorStatus(s) => {
                    status = Some(s[0].clone());
                    true
                }
                _ => false,
            }));
            let s = status.unwrap();
            println!("status: {s:?}");
            assert_eq!(s.status, CollectorHealth::Degraded);
            assert!(
                s.message.starts_with("no process connector"),
                "{}",
                s.message
            );
            assert_eq!(s.fallback.as_deref(), Some("scanning /proc every second"));
            let labels = [("collector", COLLECTOR), ("status", "Degraded")];
            assert_eq!(
                h.metrics.value("edgeguard_collector_status", &labels),
                Some(1.0)
            );
            return;
        }
        let Some(unshare) = ["/usr/bin/unshare", "/bin/unshare"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            eprintln!("unshare (util-linux) not installed: skipping");
            return;
        };
        let out = Command::new(unshare)
            .args(["--net", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("{stdout}");
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_reader_asks_to_be_scheduled_first() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: the priority cannot be raised, skipping");
            return;
        }
        let mut h = start(true);
        h.wait_status(CollectorHealth::Up);
        // Field 19 (nice); the fields start at field 3.
        let nices: Vec<Option<i32>> = reader_stats()
            .iter()
            .map(|f| f.get(16).and_then(|n| n.parse().ok()))
            .collect();
        assert!(!nices.is_empty(), "no reader thread found");
        assert!(nices.iter().all(|n| *n == Some(READER_NICE)), "{nices:?}");
        h.stop();
    }

    #[test]
    fn cancel_stops_the_reader_promptly() {
        let mut h = start(true);
        h.wait_status(CollectorHealth::Up);
        assert!(h.stop() < Duration::from_secs(1));
    }

    #[test]
    fn an_overflowing_socket_is_counted() {
        // A socket nobody reads, with the smallest buffer the kernel allows.
        let idle = Connector::open(0).unwrap();
        let children: Vec<Child> = (0..300)
            .map(|_| Command::new("/bin/true").spawn().unwrap())
            .collect();
        for mut c in children {
            c.wait().unwrap();
        }
        let (events, _rx) = mpsc::channel(100_000);
        let metrics = Arc::new(Metrics::for_tests());
        let cancel = CancellationToken::new();
        let ctx = Context {
            host: HostRoot::default(),
            events,
            metrics: metrics.clone(),
            config: watch::channel(Arc::new(Config::default())).1,
            cancel: cancel.clone(),
            state_dir: std::env::temp_dir(),
        };
        let reader = std::thread::spawn(move || {
            let mut tracker = Tracker::new(HostRoot::default());
            follow(&ctx, &idle, &mut tracker)
        });
        std::thread::sleep(Duration::from_millis(500));
        cancel.cancel();
        assert!(reader.join().unwrap().is_ok());
        assert!(metrics.dropped_total(COLLECTOR, DropReason::SourceOverflow) >= 1);
    }

    /// The `stat` fields from field 3 on of every reader thread (`edgeguard-proc`) of this test
    /// process.
    fn reader_stats() -> Vec<Vec<String>> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() != "edgeguard-proc" {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
            found.push(after.split_whitespace().map(str::to_string).collect());
        }
        found
    }

    /// CPU time (user + system) of the reader thread of this test process.
    fn reader_cpu() -> Duration {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let field = |f: &[String], i: usize| -> f64 {
            f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        };
        // Fields 14 and 15 (utime, stime); the fields start at field 3.
        let total: f64 = reader_stats()
            .iter()
            .map(|f| (field(f, 11) + field(f, 12)) / ticks)
            .sum();
        Duration::from_secs_f64(total)
    }

    /// Capture rate under an exec storm. Not a pass/fail test: run with
    /// `cargo test --release --lib collectors::process::tests::exec_storm -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn exec_storm() {
        let total: usize = std::env::var("STORM_EXECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        let workers: usize = std::env::var("STORM_WORKERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4);
        let mut h = start(true);
        h.wait_status(CollectorHealth::Up);
        let started = Instant::now();
        let pids: Vec<u32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    s.spawn(move || {
                        (0..total / workers)
                            .map(|i| {
                                let mut c = Command::new("/bin/true")
                                    .arg(format!("storm-{w}-{i}"))
                                    .spawn()
                                    .unwrap();
                                let pid = c.id();
                                c.wait().unwrap();
                                pid
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let elapsed = started.elapsed();
        let generated: HashSet<u32> = pids.into_iter().collect();
        let (mut created, mut complete, mut ended) = (HashSet::new(), 0usize, HashSet::new());
        h.until(Duration::from_secs(3), |e| {
            match &e.payload {
                Payload::ProcessCreate(r) if generated.contains(&r[0].process_id) => {
                    let fresh = created.insert(r[0].process_id);
                    if fresh && !r[0].extra_details.contains_key("Incomplete") {
                        complete += 1;
                    }
                }
                Payload::ProcessTerminate(r) if generated.contains(&r[0].process_id) => {
                    ended.insert(r[0].process_id);
                }
                _ => {}
            }
            false
        });
        let overflows = h
            .metrics
            .dropped_total(COLLECTOR, DropReason::SourceOverflow);
        println!(
            "generated {} execs in {:.2?} ({:.0}/s, {workers} workers): ProcessCreate {} ({} complete), ProcessTerminate {}, overflows {overflows}, reader CPU {:.0} ms",
            generated.len(),
            elapsed,
            generated.len() as f64 / elapsed.as_secs_f64(),
            created.len(),
            complete,
            ended.len(),
            reader_cpu().as_secs_f64() * 1000.0,
        );
        let _ = std::io::stdout().flush();
    }
}
