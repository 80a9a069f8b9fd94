//! What /proc says about one process: executable, command line, parent, user, container.
//!
//! Shared by the process, connection and listening-port collectors. Everything is best effort: a
//! process can exit between two reads, and its files are untrusted (a command line is whatever
//! the process wrote). Missing pieces stay `None`; the caller reports what it has.

use crate::host::HostRoot;
use crate::kernel::fs;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

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
    /// The file name the exec gave, from the kernel's exec tracepoint
    /// ([`super::exec_trace`]): only looked up when `exe` could not be read.
    pub exec_name: Option<String>,
    /// Arguments joined with spaces.
    pub cmdline: Option<String>,
    /// Full container id when the process runs in a Docker, containerd, CRI-O or podman container.
    pub container_id: Option<String>,
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
    proc_path: std::path::PathBuf,
    /// The host's /proc, opened on first use (and again after a failure).
    proc_dir: Option<OwnedFd>,
    /// `<pid>/<file>` and a NUL, rebuilt per read.
    path: Vec<u8>,
    buf: Vec<u8>,
    /// The host's mount namespace, the target of `/proc/1/ns/mnt` (or of kthreadd's, see
    /// [`Reader::host_mount_ns`]): read on first use; empty when it cannot be read.
    host_mount_ns: Option<Vec<u8>>,
}

impl Reader {
    pub fn new(host: &HostRoot) -> Reader {
        Reader {
            proc_path: host.path("/proc"),
            proc_dir: None,
            path: Vec::with_capacity(64),
            buf: Vec::with_capacity(FIRST_READ_BYTES),
            host_mount_ns: None,
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
        if self.file(info.pid, "cmdline", MAX_CMDLINE_BYTES) {
            info.cmdline = parse_cmdline(&self.buf);
        }
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
    /// namespace or the host's cannot be read, has its `cgroup` read as before.
    pub fn read_container(&mut self, info: &mut ProcessInfo) {
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
    }

    /// The host's mount namespace: init's, or else kthreadd's (pid 2). Reading a process's
    /// namespace needs ptrace-read access to it, which init can refuse where kthreadd does not
    /// (seen on a sandbox whose init holds a capability the agent lacks); kthreadd and every
    /// kernel thread keep the boot-time namespace, which is init's on any ordinary host. Pid 2
    /// is trusted only when its name says it is kthreadd.
    fn host_mount_ns(&mut self) -> Option<Vec<u8>> {
        if let Some(ns) = self.link(1, "ns/mnt") {
            return Some(ns.into_bytes());
        }
        let kthreadd = self.file(2, "comm", 64) && self.buf.as_slice() == b"kthreadd\n";
        let ns = kthreadd.then(|| self.link(2, "ns/mnt")).flatten()?;
        tracing::debug!("init's mount namespace cannot be read; kthreadd's stands for the host's");
        Some(ns.into_bytes())
    }

    /// Container id from `cgroup`.
    pub fn read_cgroup(&mut self, info: &mut ProcessInfo) {
        if self.file(info.pid, "cgroup", MAX_CGROUP_BYTES) {
            info.container_id = container_id_from_cgroup(&String::from_utf8_lossy(&self.buf));
        }
    }

    /// Opens the host's /proc directory once; false when it cannot be.
    fn open_dir(&mut self) -> bool {
        if self.proc_dir.is_none() {
            let Ok(path) = CString::new(self.proc_path.as_os_str().as_bytes()) else {
                return false;
            };
            self.proc_dir = fs::open_dir(&path).ok();
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
    for entry in std::fs::read_dir(host.path("/proc"))? {
        let Ok(entry) = entry else { continue };
        if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
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
mod tests {
    use super::*;

    const ID: &str = "3f1d9c2e4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

    #[test]
    fn container_ids_from_every_runtime_layout() {
        for line in [
            format!("12:pids:/docker/{ID}"),
            format!("0::/system.slice/docker-{ID}.scope"),
            format!("0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-{ID}.scope"),
            format!("0::/machine.slice/libpod-{ID}.scope/container"),
            format!("4:memory:/kubepods/besteffort/pod1234/{ID}"),
            format!("0::/system.slice/crio-{ID}.scope"),
        ] {
            assert_eq!(
                container_id_from_cgroup(&format!("1:name=systemd:/\n{line}\n")).as_deref(),
                Some(ID),
                "{line}"
            );
        }
        for host in [
            "0::/",
            "0::/user.slice/user-1000.slice/session-2.scope",
            "4:memory:/process_api/206918bc0487cf4f4d2791ca9ea4321e",
            "garbage",
            "",
        ] {
            assert_eq!(container_id_from_cgroup(host), None, "{host}");
        }
    }

    #[test]
    fn stat_names_with_spaces_and_parentheses() {
        assert_eq!(
            parse_stat(b"4242 (a (b) c) S 17 4242 4242 0 -1 4194560 120 0 0 0\n"),
            Status {
                name: Some("a (b) c".into()),
                ppid: Some(17),
                uid: None
            }
        );
        assert_eq!(
            parse_stat(b"1 (init) S 0 1 1"),
            Status {
                name: Some("init".into()),
                ppid: Some(0),
                uid: None
            }
        );
        for bad in [
            &b""[..],
            b"garbage",
            b"1 )x( S 2",
            b"1 (x) S",
            b"1 (x) S notapid",
        ] {
            assert_eq!(parse_stat(bad).ppid, None, "{bad:?}");
        }
        // The same as status says, for this process.
        let mut from_stat = ProcessInfo {
            pid: std::process::id(),
            ..Default::default()
        };
        let mut from_status = from_stat.clone();
        let mut r = Reader::new(&HostRoot::default());
        r.read_stat(&mut from_stat);
        r.read_status(&mut from_status);
        assert_eq!(from_stat.ppid, from_status.ppid);
        assert_eq!(from_stat.comm, from_status.comm);
        assert!(from_stat.ppid.is_some() && from_stat.uid.is_none());
    }

    #[test]
    fn status_and_cmdline() {
        let s = parse_status("Name:\tbash\nUmask:\t0022\nPPid:\t12\nUid:\t1000\t0\t0\t0\n");
        assert_eq!(
            s,
            Status {
                name: Some("bash".into()),
                ppid: Some(12),
                uid: Some(1000)
            }
        );
        assert_eq!(parse_status("garbage\nPPid: x\n"), Status::default());
        assert_eq!(
            parse_cmdline(b"sh\0-c\0echo hi\0").as_deref(),
            Some("sh -c echo hi")
        );
        assert_eq!(parse_cmdline(b""), None);
        assert_eq!(parse_cmdline(b"\0\0"), None);
        assert_eq!(
            parse_cmdline(&[0xff, b'a', 0]).as_deref(),
            Some("\u{fffd}a")
        );
        let long = vec![b'a'; MAX_CMDLINE_BYTES * 2];
        assert_eq!(parse_cmdline(&long).unwrap().len(), MAX_CMDLINE_BYTES);
    }

    #[test]
    fn reads_this_process() {
        let me = read(&HostRoot::default(), std::process::id());
        assert_eq!(me.ppid, Some(std::os::unix::process::parent_id()));
        assert_eq!(me.uid, Some(unsafe { libc::getuid() }));
        assert!(me.exe.is_some());
        assert!(me.cmdline.is_some());
        let gone = read(&HostRoot::default(), u32::MAX - 1);
        assert_eq!(gone.exe, None);
        assert_eq!(gone.executable(), "");
    }

    #[test]
    fn reader_matches_std_reads_and_reuses_itself() {
        let mut r = Reader::new(&HostRoot::default());
        // A command line longer than the first read, to exercise the growing buffer.
        let long = "x".repeat(FIRST_READ_BYTES * 2 + 17);
        // A shell waiting on its stdin, with the long text as its `$0`.
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "read x", &long])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // spawn returns once the child's new memory is in place, which can be before the
        // kernel has filled in its argument area: wait until /proc shows the arguments.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .len()
            < long.len()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "child never showed its arguments"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        for _ in 0..2 {
            let info = r.read(pid, Liveness::Unknown);
            assert_eq!(info.cmdline, Some(format!("/bin/sh -c read x {long}")));
            assert_eq!(
                info.exe.as_deref().map(std::path::Path::new),
                Some(std::fs::canonicalize("/bin/sh").unwrap().as_path())
            );
            assert_eq!(info.ppid, Some(std::process::id()));
            assert_eq!(info.comm.as_deref(), Some("sh"));
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            assert_eq!(info.container_id, container_id_from_cgroup(&cg));
            // The same reader on this process gives what the std reads give.
            let me = r.read(std::process::id(), Liveness::Unknown);
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let s = parse_status(&status);
            assert_eq!((me.ppid, me.uid, me.comm), (s.ppid, s.uid, s.name));
            let raw = std::fs::read("/proc/self/cmdline").unwrap();
            assert_eq!(me.cmdline, parse_cmdline(&raw));
        }
        // An exited process is only asked for what outlives its memory.
        let exited = r.read(pid, Liveness::Exited);
        assert_eq!((exited.cmdline, exited.exe), (None, None));
        assert_eq!(exited.ppid, Some(std::process::id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            r.read(pid, Liveness::Unknown),
            ProcessInfo {
                pid,
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_zombie_still_has_its_name_and_parent() {
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        // Not reaped: wait until it has exited (state Z), then read it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "child never became a zombie"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let info = Reader::new(&HostRoot::default()).read(pid, Liveness::Unknown);
        assert_eq!((info.cmdline.as_deref(), info.exe.as_deref()), (None, None));
        assert_eq!(info.comm.as_deref(), Some("true"));
        assert_eq!(info.ppid, Some(std::process::id()));
        assert_eq!(info.uid, Some(unsafe { libc::getuid() }));
        child.wait().unwrap();
    }

    #[test]
    fn cgroup_is_read_only_outside_the_hosts_mount_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        let make = |pid: u32, mnt: Option<&str>| {
            let p = proc.join(pid.to_string());
            std::fs::create_dir_all(p.join("ns")).unwrap();
            if let Some(mnt) = mnt {
                std::os::unix::fs::symlink(mnt, p.join("ns/mnt")).unwrap();
            }
            std::fs::write(
                p.join("cgroup"),
                format!("0::/system.slice/docker-{ID}.scope\n"),
            )
            .unwrap();
        };
        make(1, Some("mnt:[4026531841]"));
        // Same namespace as the host: the cgroup (made up here) is not even read.
        make(10, Some("mnt:[4026531841]"));
        // A namespace of its own, or one that cannot be read (a zombie): read as before.
        make(11, Some("mnt:[4026532500]"));
        make(12, None);
        let mut r = Reader::new(&HostRoot::new(dir.path()));
        let container = |r: &mut Reader, pid| {
            let mut info = ProcessInfo {
                pid,
                ..Default::default()
            };
            r.read_container(&mut info);
            info.container_id
        };
        assert_eq!(container(&mut r, 10), None);
        assert_eq!(container(&mut r, 11).as_deref(), Some(ID));
        assert_eq!(container(&mut r, 12).as_deref(), Some(ID));

        // Init's namespace cannot be read, kthreadd's can: it stands for the host's.
        std::fs::remove_file(proc.join("1/ns/mnt")).unwrap();
        make(2, Some("mnt:[4026531841]"));
        std::fs::write(proc.join("2/comm"), "kthreadd\n").unwrap();
        let mut r = Reader::new(&HostRoot::new(dir.path()));
        assert_eq!(container(&mut r, 10), None);
        assert_eq!(container(&mut r, 11).as_deref(), Some(ID));

        // Pid 2 is not kthreadd (a private pid namespace): not trusted, cgroup is read.
        std::fs::write(proc.join("2/comm"), "sh\n").unwrap();
        let mut r = Reader::new(&HostRoot::new(dir.path()));
        assert_eq!(container(&mut r, 10).as_deref(), Some(ID));

        // No host namespace at all: every process's cgroup is read.
        std::fs::remove_file(proc.join("2/ns/mnt")).unwrap();
        std::fs::write(proc.join("2/comm"), "kthreadd\n").unwrap();
        let mut r = Reader::new(&HostRoot::new(dir.path()));
        assert_eq!(container(&mut r, 10).as_deref(), Some(ID));
    }

    #[test]
    fn reader_under_an_empty_root_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reader::new(&HostRoot::new(dir.path()));
        let me = std::process::id();
        assert_eq!(
            r.read(me, Liveness::Unknown),
            ProcessInfo {
                pid: me,
                ..Default::default()
            }
        );
    }
}
