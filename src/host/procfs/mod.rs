//! What /proc says about one process: executable, command line, parent, user, container.
//!
//! Shared by the process, connection and listening-port collectors. Everything is best effort: a
//! process can exit between two reads, and its files are untrusted (a command line is whatever
//! the process wrote). Missing pieces stay `None`; the caller reports what it has.

use crate::host::HostRoot;
use crate::kernel::fs;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

/// Longest command line kept; the pipeline truncates further if a message needs it.
pub const MAX_CMDLINE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: Option<u32>,
    /// Real uid.
    pub uid: Option<u32>,
    /// The kernel's short name (`comm`), used when the executable cannot be read.
    pub comm: Option<String>,
    /// Target of `/proc/<pid>/exe` (the path inside the process's own mount namespace).
    pub exe: Option<String>,
    /// The file name the exec gave, from the kernel's exec tracepoint (the process
    /// collector's `exec_trace`): used when `exe` could not be read.
    pub exec_name: Option<String>,
    /// Arguments joined with spaces.
    pub cmdline: Option<String>,
    /// Full container id when the process runs in a Docker, containerd, CRI-O or podman container.
    pub container_id: Option<String>,
    /// The cgroup id the exec ran in, from the exec tracepoint where cgroups are sampled: lets
    /// the process collector skip the container look-up for a process in its parent's cgroup.
    pub cgroup_id: Option<u64>,
}

impl ProcessInfo {
    /// The best name for the executable: the exe link, else the file name the exec gave, else
    /// argv[0], else comm.
    pub fn executable(&self) -> String {
        self.exe
            .clone()
            .or_else(|| self.exec_name.clone())
            .or_else(|| {
                self.cmdline
                    .as_deref()
                    .and_then(|c| c.split(' ').next())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            })
            .or_else(|| self.comm.clone())
            .unwrap_or_default()
    }
}

/// Reads what can be read about `pid` (each piece independently). For one-off reads; the
/// process collector keeps a [`Reader`] instead, which reuses its buffers.
pub fn read(host: &HostRoot, pid: u32) -> ProcessInfo {
    Reader::new(host).read(pid, Liveness::Unknown)
}

/// What the caller already knows about whether the process still has its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Read everything.
    Unknown,
    /// The kernel already reported the process's exit: its memory (command line, executable
    /// link) is gone, so only what outlives it (`status`, `cgroup`, kept until the parent reaps
    /// the zombie) is read. Saves two system calls that would fail anyway.
    Exited,
}

/// Size of the first read of a /proc file: `status` is about 1.5 KiB, `cgroup` a few hundred
/// bytes; larger files (long command lines, many cgroup hierarchies) grow the buffer.
const FIRST_READ_BYTES: usize = 4 * 1024;

/// Reads /proc/<pid> files with few system calls, reusing its buffers between processes.
///
/// Under an exec storm the reader thread's cost is mostly system calls: `std::fs::read` makes
/// a probe read and a final empty read besides the one that returns the data, and every path is
/// a new allocation. Here each file is one `openat` (relative to the host's /proc, opened once),
/// one `read` into a kept buffer (a short read of a /proc file means its end), and one `close`;
/// the executable link is one `readlinkat`. Contents are parsed from the buffer without copies.
pub struct Reader {
    host: HostRoot,
    /// The host's /proc, opened on first use (and again after a failure).
    proc_dir: Option<OwnedFd>,
    /// `<pid>/<file>` and a NUL, rebuilt per read.
    path: Vec<u8>,
    buf: Vec<u8>,
    /// The host's mount namespace, the target of `/proc/1/ns/mnt` (or of kthreadd's, see
    /// [`Reader::host_mount_ns`]): read on first use; empty when it cannot be read.
    host_mount_ns: Option<Vec<u8>>,
    /// Containers' `cgroup` files read whose cgroup v2 line (`0::`) names the container, and
    /// those whose does not: whether runtimes give each container a cgroup of its own in the
    /// v2 hierarchy, where a hybrid host keeps the perf_event controller (the process
    /// collector trusts the exec tracepoint's cgroup ids on such a host only when they do).
    pub v2_named_containers: u64,
    pub v2_unnamed_containers: u64,
}

impl Reader {
    pub fn new(host: &HostRoot) -> Reader {
        Reader {
            host: host.clone(),
            proc_dir: None,
            path: Vec::with_capacity(64),
            buf: Vec::with_capacity(FIRST_READ_BYTES),
            host_mount_ns: None,
            v2_named_containers: 0,
            v2_unnamed_containers: 0,
        }
    }

    /// Reads what can be read about `pid`, in the order in which an exiting process loses it:
    /// command line and executable link first (released with its memory), then `status` and
    /// `cgroup` (kept until its parent reaps it).
    pub fn read(&mut self, pid: u32, liveness: Liveness) -> ProcessInfo {
        let mut info = ProcessInfo {
            pid,
            ..Default::default()
        };
        if liveness == Liveness::Unknown {
            self.read_fleeting(&mut info);
        }
        self.read_lasting(&mut info);
        info
    }

    /// Fills what a process loses when it exits (before it is a zombie): command line and
    /// executable link. A caller with several new processes reads this for all of them first.
    pub fn read_fleeting(&mut self, info: &mut ProcessInfo) {
        self.read_cmdline(info);
        self.read_exe(info);
    }

    /// The command line, from `cmdline`.
    pub fn read_cmdline(&mut self, info: &mut ProcessInfo) {
        if self.file(info.pid, "cmdline", MAX_CMDLINE_BYTES) {
            info.cmdline = parse_cmdline(&self.buf);
        }
    }

    /// The executable, from the `exe` link.
    pub fn read_exe(&mut self, info: &mut ProcessInfo) {
        info.exe = self.link(info.pid, "exe");
    }

    /// Fills what stays readable until the process is reaped: name, parent and user (`status`),
    /// container (`cgroup`, see [`Reader::read_container`]).
    pub fn read_lasting(&mut self, info: &mut ProcessInfo) {
        self.read_status(info);
        self.read_container(info);
    }

    /// Name, parent and real uid from `status`.
    pub fn read_status(&mut self, info: &mut ProcessInfo) {
        if self.file(info.pid, "status", MAX_STATUS_BYTES) {
            let s = parse_status_bytes(&self.buf);
            info.ppid = s.ppid;
            info.uid = s.uid;
            info.comm = s.name;
        }
    }

    /// Name and parent from `stat`, for a caller that knows the uid from elsewhere: the kernel
    /// builds `stat` several times faster than `status` (measured 12–22 µs against 60–100 µs
    /// per open + read + close on the development VM), and the process collector reads one per
    /// exec.
    pub fn read_stat(&mut self, info: &mut ProcessInfo) {
        if self.file(info.pid, "stat", MAX_STATUS_BYTES) {
            let s = parse_stat(&self.buf);
            info.ppid = s.ppid;
            info.comm = s.name;
        }
    }

    /// Container id, read from `cgroup` unless the process is in the host's mount namespace.
    ///
    /// Every container has a mount namespace of its own (it is what makes its file system), so a
    /// process in the host's one is in no container, and one `readlinkat` of `ns/mnt` spares
    /// the `openat` + `read` + `close` of `cgroup` that was the costliest read of an exec on
    /// the host. Any process elsewhere (containers, services with a private /tmp), and any whose
    /// namespace or the host's cannot be read, has its `cgroup` read as before. Returns whether
    /// the process was found in the host's mount namespace.
    pub fn read_container(&mut self, info: &mut ProcessInfo) -> bool {
        if self.host_mount_ns.is_none() {
            let host = self.host_mount_ns();
            self.host_mount_ns = Some(host.unwrap_or_default());
        }
        let host = self.host_mount_ns.take().unwrap_or_default();
        let on_host = !host.is_empty() && self.link_is(info.pid, "ns/mnt", &host);
        self.host_mount_ns = Some(host);
        if on_host {
            info.container_id = None;
        } else {
            self.read_cgroup(info);
        }
        on_host
    }

    /// The host's mount namespace: init's, or else kthreadd's (pid 2). Reading a process's
    /// namespace needs ptrace-read access to it, which init can refuse where kthreadd does not
    /// (seen on a sandbox whose init holds a capability the agent lacks); kthreadd and every
    /// kernel thread keep the boot-time namespace, which is init's on any ordinary host. Pid 2
    /// is trusted only when its name says it is kthreadd.
    fn host_mount_ns(&mut self) -> Option<Vec<u8>> {
        self.host_namespace("mnt").map(String::into_bytes)
    }

    /// The host's namespace of kind `kind` (`mnt`, `cgroup`, …): init's, or else kthreadd's,
    /// for the reason [`Reader::host_mount_ns`] gives.
    pub fn host_namespace(&mut self, kind: &str) -> Option<String> {
        let link = format!("ns/{kind}");
        if let Some(ns) = self.link(1, &link) {
            return Some(ns);
        }
        let kthreadd = self.file(2, "comm", 64) && self.buf.as_slice() == b"kthreadd\n";
        let ns = kthreadd.then(|| self.link(2, &link)).flatten()?;
        tracing::debug!("init's {kind} namespace cannot be read; kthreadd's stands for the host's");
        Some(ns)
    }

    /// The process's cgroup in the v2 hierarchy (the `0::` line of `cgroup`), when it lies
    /// inside the reader's cgroup namespace (an agent in a namespace of its own sees the host's
    /// cgroups as `/../..`, which name nothing it can open).
    pub fn cgroup_v2_path(&mut self, pid: u32) -> Option<String> {
        if !self.file(pid, "cgroup", MAX_CGROUP_BYTES) {
            return None;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
        let inside = path.starts_with('/')
            && !path.split('/').any(|c| c == "..")
            && !path.ends_with(" (deleted)");
        inside.then(|| path.to_string())
    }

    /// Container id from `cgroup`.
    pub fn read_cgroup(&mut self, info: &mut ProcessInfo) {
        if self.file(info.pid, "cgroup", MAX_CGROUP_BYTES) {
            let text = String::from_utf8_lossy(&self.buf);
            info.container_id = container_id_from_cgroup(&text);
            if let Some(id) = &info.container_id {
                let named = text
                    .lines()
                    .any(|l| l.starts_with("0::") && l.contains(id.as_str()));
                match named {
                    true => self.v2_named_containers += 1,
                    false => self.v2_unnamed_containers += 1,
                }
            }
        }
    }

    /// Opens the host's /proc directory once (resolved inside the host root); false when it
    /// cannot be.
    fn open_dir(&mut self) -> bool {
        if self.proc_dir.is_none() {
            self.proc_dir = self.host.open_dir_path("/proc").ok();
        }
        self.proc_dir.is_some()
    }

    /// Sets `self.path` to `<pid>/<name>` and a NUL.
    fn set_path(&mut self, pid: u32, name: &str) {
        use std::io::Write;
        self.path.clear();
        // Writing to a Vec cannot fail.
        let _ = write!(self.path, "{pid}/{name}\0");
    }

    /// Reads `/proc/<pid>/<name>` (at most `max` bytes) into `self.buf`; false when it cannot
    /// be opened or read.
    fn file(&mut self, pid: u32, name: &str, max: usize) -> bool {
        self.buf.clear();
        if !self.open_dir() {
            return false;
        }
        self.set_path(pid, name);
        let (Some(dir), Ok(path)) = (&self.proc_dir, CStr::from_bytes_with_nul(&self.path)) else {
            return false;
        };
        let Ok(fd) = fs::open_at(dir.as_fd(), path) else {
            return false;
        };
        let mut want = FIRST_READ_BYTES.min(max);
        loop {
            let room = want - self.buf.len();
            let n = match fs::read_append(&fd, &mut self.buf, room) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.buf.clear();
                    return false;
                }
            };
            // A short read of a /proc file is its end; a full one may have more behind it.
            if n < room || want >= max {
                return true;
            }
            want = (want * 4).min(max);
        }
    }

    /// Whether the link `/proc/<pid>/<name>` can be read and points to `target`.
    fn link_is(&mut self, pid: u32, name: &str, target: &[u8]) -> bool {
        self.read_link(pid, name, target.len() + 1) && self.buf == target
    }

    /// The target of the link `/proc/<pid>/<name>`.
    fn link(&mut self, pid: u32, name: &str) -> Option<String> {
        self.read_link(pid, name, libc::PATH_MAX as usize)
            .then(|| String::from_utf8_lossy(&self.buf).into_owned())
    }

    /// Reads the target of the link `/proc/<pid>/<name>` into `self.buf` (room for at least
    /// `room` bytes); false when it cannot be read.
    fn read_link(&mut self, pid: u32, name: &str, room: usize) -> bool {
        if !self.open_dir() {
            return false;
        }
        self.set_path(pid, name);
        let (Some(dir), Ok(path)) = (&self.proc_dir, CStr::from_bytes_with_nul(&self.path)) else {
            return false;
        };
        fs::read_link_at(dir.as_fd(), path, &mut self.buf, room).is_ok()
    }
}

/// Cap of a `status` read (it is a few KiB even with huge CPU and memory lists).
const MAX_STATUS_BYTES: usize = 64 * 1024;
/// Cap of a `cgroup` read.
const MAX_CGROUP_BYTES: usize = 64 * 1024;

/// [`parse_status`] on raw bytes: only the three lines it needs are decoded (lossily).
pub fn parse_status_bytes(raw: &[u8]) -> Status {
    let mut s = Status::default();
    for line in raw.split(|b| *b == b'\n') {
        let (k, v) = match line.iter().position(|b| *b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => continue,
        };
        match k {
            b"Name" | b"PPid" | b"Uid" => {}
            _ => continue,
        }
        let v = String::from_utf8_lossy(v);
        let v = v.trim();
        match k {
            b"Name" => s.name = Some(v.to_string()),
            b"PPid" => s.ppid = v.parse().ok(),
            _ => s.uid = v.split_whitespace().next().and_then(|u| u.parse().ok()),
        }
        if s.name.is_some() && s.ppid.is_some() && s.uid.is_some() {
            break;
        }
    }
    s
}

/// Fields of /proc/<pid>/status that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub name: Option<String>,
    pub ppid: Option<u32>,
    pub uid: Option<u32>,
}

pub fn parse_status(text: &str) -> Status {
    parse_status_bytes(text.as_bytes())
}

/// Name and parent from /proc/<pid>/stat (`pid (comm) state ppid ...`); the name may hold
/// spaces and parentheses, so it ends at the last `)`. The uid is not in `stat`.
pub fn parse_stat(raw: &[u8]) -> Status {
    let mut s = Status::default();
    let (Some(open), Some(close)) = (
        raw.iter().position(|b| *b == b'('),
        raw.iter().rposition(|b| *b == b')'),
    ) else {
        return s;
    };
    if close <= open {
        return s;
    }
    s.name = Some(String::from_utf8_lossy(&raw[open + 1..close]).into_owned());
    s.ppid = raw[close + 1..]
        .split(|b| *b == b' ')
        .filter(|f| !f.is_empty())
        .nth(1)
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|f| f.parse().ok());
    s
}

/// Turns the NUL-separated argv into one line; `None` for kernel threads (empty cmdline).
pub fn parse_cmdline(raw: &[u8]) -> Option<String> {
    let raw = &raw[..raw.len().min(MAX_CMDLINE_BYTES)];
    let text: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!text.is_empty()).then(|| text.join(" "))
}

/// Finds a container id (64 hex characters) in /proc/<pid>/cgroup, for cgroup v1 and v2 and the
/// usual runtimes: `/docker/<id>`, `docker-<id>.scope`, `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, `libpod-<id>.scope`, `/kubepods/…/<id>`, `/system.slice/containerd…/<id>`.
pub fn container_id_from_cgroup(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        // hierarchy-id:controllers:path
        let path = line.splitn(3, ':').nth(2)?;
        path.split('/').rev().find_map(container_id_in_segment)
    })
}

fn container_id_in_segment(segment: &str) -> Option<String> {
    let s = segment.strip_suffix(".scope").unwrap_or(segment);
    let s = s.rsplit(['-', ':']).next().unwrap_or(s);
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// The pids (thread-group ids) listed in the host's /proc, at most `max` of them.
pub fn list_pids(host: &HostRoot, max: usize) -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in host.read_dir("/proc")? {
        let Ok(entry) = entry else { break };
        if let Some(pid) = entry.name.to_str().and_then(|n| n.parse().ok()) {
            pids.push(pid);
            if pids.len() >= max {
                break;
            }
        }
    }
    Ok(pids)
}

/// Every process id in the host's /proc (none when it cannot be read).
pub fn pids(host: &HostRoot) -> Vec<u32> {
    list_pids(host, usize::MAX).unwrap_or_default()
}

#[cfg(test)]
mod tests;
