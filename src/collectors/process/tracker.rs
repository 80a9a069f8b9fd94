//! From kernel facts to records: what the collector remembers between events (executables,
//! fork parents, uids) and how an exec, exit or fork becomes a `ProcessCreate`/`ProcessTerminate`.

use super::exec_trace::ExecTrace;
use super::{BoundedMap, CACHE_ENTRIES, KTHREADD, MAX_SCAN_PIDS, decode_wait_status, signal_name};
use crate::event::{ExtraDetails, ProcessCreate, ProcessTerminate};
use crate::host::HostRoot;
use crate::host::accounts::UserNames;
use crate::host::procfs::{self, Liveness, ProcessInfo};
use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the collector remembers between events: executables (for ProcessTerminate, whose
/// process is gone by then) and fork parents (for a ProcessCreate whose process exited before
/// /proc could be read).
pub(super) struct Tracker {
    host: HostRoot,
    pub(super) reader: procfs::Reader,
    users: UserNames,
    /// When the passwd file was last checked for changes (see [`USERS_RECHECK`]).
    users_checked: Option<Instant>,
    pub(super) executables: BoundedMap<Arc<str>>,
    parents: BoundedMap<u32>,
    /// pid → real uid, followed from the kernel's events (inherited at fork, changed by UID
    /// events), so that an exec needs `stat` rather than the far costlier `status`. Only filled
    /// from reliable sources (a /proc read, a fork of a known parent, a UID event) and emptied
    /// when the socket overflowed (a lost UID event would leave a wrong uid); a pid not in it
    /// is read from `status` as before.
    pub(super) uids: BoundedMap<u32>,
    /// pid → the cgroup id of its latest exec, for processes found in the host's mount
    /// namespace at that exec (read, or inherited as below); copied to a forked child. An exec
    /// in the same cgroup as this says is on the host too, without the container look-up
    /// ([`Tracker::read_lasting`]). Emptied with `uids` when events were lost.
    pub(super) host_cgroups: BoundedMap<u64>,
    /// Container look-ups made through /proc (`ns/mnt`, and `cgroup` off the host), and those
    /// spared by [`Tracker::host_cgroups`]: what the tests and the storm look at.
    pub(super) container_reads: u64,
    pub(super) container_reads_spared: u64,
    /// Whether execs come with cgroup ids, and whether those alone tell containers apart
    /// ([`ExecTrace::cgroups`]).
    pub(super) cgroup_ids: Option<bool>,
    /// File names of recent execs from the kernel's tracepoint, for an exec whose /proc entry
    /// was gone before it could be read; `None` where the tracepoint cannot be opened.
    pub(super) exec_trace: Option<ExecTrace>,
}

/// How often the user-name table is checked against the host's passwd file. Checking costs a
/// `stat` per call, which an exec storm would pay thousands of times a second; a user added
/// less than this long ago may be reported by uid only.
pub const USERS_RECHECK: Duration = Duration::from_secs(1);

impl Tracker {
    pub(super) fn new(host: HostRoot) -> Tracker {
        Tracker {
            reader: procfs::Reader::new(&host),
            host,
            users: UserNames::default(),
            users_checked: None,
            executables: BoundedMap::new(CACHE_ENTRIES),
            parents: BoundedMap::new(CACHE_ENTRIES),
            uids: BoundedMap::new(CACHE_ENTRIES),
            host_cgroups: BoundedMap::new(CACHE_ENTRIES),
            container_reads: 0,
            container_reads_spared: 0,
            cgroup_ids: None,
            exec_trace: None,
        }
    }

    /// Opens the exec tracepoint ([`ExecTrace`]); says once in the log when it cannot.
    pub(super) fn open_exec_trace(&mut self) {
        match ExecTrace::open(&self.host) {
            Ok(t) => {
                tracing::debug!(
                    "exec tracepoint open: execs reaped before /proc is read keep their file names"
                );
                self.cgroup_ids = t.cgroups();
                self.exec_trace = Some(t);
            }
            Err(e) => tracing::info!(
                error = %e,
                "exec tracepoint unavailable: a process reaped before /proc is read is reported without its executable"
            ),
        }
    }

    /// Whether the exec tracepoint's samples are matched to their events by time
    /// ([`Tracker::match_exec`]); otherwise [`Tracker::name_from_exec_trace`] fills in what /proc
    /// missed.
    pub(super) fn exec_trace_timed(&self) -> bool {
        self.exec_trace.as_ref().is_some_and(ExecTrace::timed)
    }

    /// Takes the exec tracepoint's new records (every stack parsed: see
    /// [`ExecTrace::drain`]). Returns how many records the kernel lost since the last call.
    pub(super) fn drain_exec_trace(&mut self) -> u64 {
        self.exec_trace.as_mut().map_or(0, |t| t.drain(|_| true))
    }

    /// Fills in what the exec tracepoint's sample of this exec says (file name, cgroup, and
    /// the command line when the stack copy holds all of it), so /proc is read only for the
    /// rest; what it fills in is moved out of the returned sample. `None` when no sample
    /// matches (see [`ExecTrace::take`]).
    pub(super) fn match_exec(
        &mut self,
        info: &mut ProcessInfo,
        event_ns: u64,
    ) -> Option<super::exec_trace::Matched> {
        let mut m = self.exec_trace.as_mut()?.take(info.pid, event_ns)?;
        info.exec_name = Some(std::mem::take(&mut m.name));
        info.cgroup_id = m.cgroup;
        if m.complete {
            info.cmdline = m.command_line.take();
        }
        Some(m)
    }

    /// Takes the exec tracepoint's new records and fills in the file names and command lines
    /// of the execs `/proc` came too late for.
    /// Returns how many tracepoint records the kernel lost since the last call.
    pub(super) fn name_from_exec_trace(&mut self, infos: &mut VecDeque<ProcessInfo>) -> u64 {
        let Some(trace) = &mut self.exec_trace else {
            return 0;
        };
        // A record whose pid is not in this batch belongs to an exec whose process event comes
        // in a later batch (the tracepoint fires first): whether /proc will be too late for it
        // is not known yet, and its stack is only in this record, so its arguments are kept.
        let lost = trace.drain(|pid| match infos.iter().find(|i| i.pid == pid) {
            Some(info) => info.cmdline.is_none(),
            None => true,
        });
        for i in 0..infos.len() {
            let (done, later) = infos.make_contiguous().split_at_mut(i + 1);
            let info = &mut done[i];
            if info.exe.is_some() && info.cmdline.is_some() {
                continue;
            }
            // Later execs of the same pid in this batch have the newer records.
            let back = later.iter().filter(|l| l.pid == info.pid).count();
            if info.exe.is_none() {
                info.exec_name = trace.name_of(info.pid, back);
            }
            if info.cmdline.is_none() {
                info.cmdline = trace.command_line_of(info.pid, back);
            }
        }
        lost
    }

    /// A task's credentials changed: only the thread-group leader's are what `status` shows.
    pub(super) fn uid_changed(&mut self, pid: u32, tgid: u32, ruid: u32) {
        if pid == tgid {
            self.uids.insert(tgid, ruid);
        }
    }

    /// Events were lost: uids and host cgroups followed from events may be stale (a lost exit
    /// and a recycled pid); read them from /proc again.
    pub(super) fn forget_followed(&mut self) {
        self.uids = BoundedMap::new(CACHE_ENTRIES);
        self.host_cgroups = BoundedMap::new(CACHE_ENTRIES);
    }

    /// Fills what stays until the process is reaped: parent, name and cgroup, and the uid from
    /// the followed uids when known (`stat`), else from `status`.
    ///
    /// `stat` is skipped too when the events already say all it would: the uid is followed, the
    /// executable link was read (so the name is not needed), and the process was forked by a
    /// parent that has not exited (`parent_exited` says whether its exit came earlier in this
    /// batch; an exit in an earlier batch made the tracker forget it). Only a parent's exit
    /// reparents a process, and the kernel sends that exit before it reparents, so this parent
    /// is the one `stat` would show at the exec.
    ///
    /// The container is read ([`procfs::Reader::read_container`]: one link for a process on
    /// the host), because runtimes move a process into a container's cgroup between its fork
    /// and its exec, unless the exec's cgroup (from the tracepoint) is the one of this pid's
    /// last exec or its parent's, which was found on the host ([`Tracker::host_cgroups`]): a
    /// runtime moving it would have changed its cgroup, and the container id is read from the
    /// cgroup. So the read this spares would have found the host's mount namespace, or (after
    /// an `unshare` or `nsenter` without a cgroup change) a cgroup that is not a container's.
    pub(super) fn read_lasting(
        &mut self,
        info: &mut ProcessInfo,
        parent_exited: impl Fn(u32) -> bool,
    ) {
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
        let pid = info.pid;
        let trusted = self.cgroups_trusted();
        match info.cgroup_id {
            Some(id) if trusted && self.host_cgroups.get(pid) == Some(&id) => {
                info.container_id = None;
                self.container_reads_spared += 1;
            }
            id => {
                self.container_reads += 1;
                let on_host = self.reader.read_container(info);
                match id {
                    Some(id) if on_host => self.host_cgroups.insert(pid, id),
                    // Unknown or not the host's: this pid's children are looked up again.
                    _ => {
                        self.host_cgroups.remove(pid);
                    }
                }
            }
        }
    }

    /// Whether the exec tracepoint's cgroup ids tell a container's processes from the host's:
    /// always on a cgroup v2 host; on a hybrid one, once containers were seen in v2 cgroups of
    /// their own, and never again after one was seen without.
    fn cgroups_trusted(&self) -> bool {
        let named = self.reader.v2_named_containers;
        match self.cgroup_ids {
            Some(true) => true,
            Some(false) => named > 0 && self.reader.v2_unnamed_containers == 0,
            None => false,
        }
    }

    /// The parent that forked `pid`, if it is known and has not exited.
    fn living_fork_parent(&self, pid: u32, exited: impl Fn(u32) -> bool) -> Option<u32> {
        let parent = self.parents.get(pid).copied()?;
        // Known processes have a parent or an executable entry until their exit removes both.
        let known = self.parents.get(parent).is_some() || self.executables.get(parent).is_some();
        (known && !exited(parent)).then_some(parent)
    }

    /// Remembers the processes already running, so their exits name their executables, and
    /// where execs come with cgroup ids, which of them are on the host in which cgroup
    /// ([`Tracker::host_cgroups`]), so their children's execs need no container look-up either.
    pub(super) fn seed(&mut self) -> io::Result<()> {
        let v2 = self
            .cgroup_ids
            .filter(|_| self.in_hosts_cgroup_namespace())
            .and_then(|_| cgroup_v2_root(&self.host));
        let mut ids: std::collections::HashMap<String, Option<u64>> = Default::default();
        for pid in procfs::list_pids(&self.host, MAX_SCAN_PIDS)?
            .into_iter()
            .take(CACHE_ENTRIES)
        {
            let mut info = ProcessInfo {
                pid,
                ..Default::default()
            };
            self.reader.read_fleeting(&mut info);
            self.reader.read_status(&mut info);
            let on_host = self.reader.read_container(&mut info);
            if let (true, Some(root)) = (on_host, v2) {
                let id = self.reader.cgroup_v2_path(pid).and_then(|path| {
                    *ids.entry(path).or_insert_with_key(|path| {
                        let dir = self.host.open_dir_path(format!("{root}{path}")).ok()?;
                        crate::kernel::fs::cgroup_id(dir.as_fd()).ok()
                    })
                });
                if let Some(id) = id {
                    self.host_cgroups.insert(pid, id);
                }
            }
            self.remember(&info);
        }
        Ok(())
    }

    /// What /proc shows about `pid` now.
    pub(super) fn read(&mut self, pid: u32, liveness: Liveness) -> ProcessInfo {
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

    pub(super) fn remember(&mut self, info: &ProcessInfo) {
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
    pub(super) fn fork(&mut self, parent_tgid: u32, child_pid: u32, child_tgid: u32) {
        if child_pid != child_tgid {
            return;
        }
        self.parents.insert(child_tgid, parent_tgid);
        if let Some(exe) = self.executables.get(parent_tgid).cloned() {
            self.executables.insert(child_tgid, exe);
        }
        match self.host_cgroups.get(parent_tgid).copied() {
            Some(id) => self.host_cgroups.insert(child_tgid, id),
            None => {
                self.host_cgroups.remove(child_tgid);
            }
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
    pub(super) fn exec(&mut self, pid: u32) -> ProcessCreate {
        let info = self.read(pid, Liveness::Unknown);
        self.created(info)
    }

    /// A `ProcessCreate` from what /proc showed; remembers its executable and parent.
    pub(super) fn created(&mut self, info: ProcessInfo) -> ProcessCreate {
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
        // The program that started it, where its exec (or the first scan) was seen: a shell
        // started by a web server is the web shell rule's signal.
        let parent_exe = [fork_parent, info.ppid]
            .into_iter()
            .flatten()
            .find_map(|p| self.executables.get(p));
        if let Some(parent) = parent_exe.filter(|p| !p.is_empty()) {
            extra.insert("ParentExecutable".into(), parent.to_string());
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
    pub(super) fn terminated(
        &mut self,
        pid: u32,
        raw: Option<u32>,
        kernel_parent: Option<u32>,
    ) -> Option<ProcessTerminate> {
        let executable = self.executables.remove(pid);
        let parent = self.parents.remove(pid).or(kernel_parent);
        self.uids.remove(pid);
        self.host_cgroups.remove(pid);
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

impl Tracker {
    /// Whether the agent shares the host's cgroup namespace, so the cgroup paths /proc shows it
    /// are the host's (in a namespace of its own, a path such as `/` names its own cgroup, not
    /// the host's root). Init's namespace, or kthreadd's when init's cannot be read.
    fn in_hosts_cgroup_namespace(&mut self) -> bool {
        let own = std::fs::read_link("/proc/self/ns/cgroup").ok();
        let host = self.reader.host_namespace("cgroup");
        own.is_some_and(|own| Some(own.to_string_lossy().into_owned()) == host)
    }
}

/// Where the host's cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on a v2 host,
/// `/sys/fs/cgroup/unified` beside v1 ones (systemd's hybrid layout).
pub(super) fn cgroup_v2_root(host: &HostRoot) -> Option<&'static str> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .find(|root| {
            host.open_dir_path(root).is_ok_and(|fd| {
                crate::kernel::root::fs_type(fd.as_fd())
                    .is_ok_and(|t| t == crate::kernel::fs::CGROUP2_SUPER_MAGIC)
            })
        })
}

pub(super) fn is_kernel_thread(info: &ProcessInfo) -> bool {
    info.exe.is_none() && (info.pid == KTHREADD || info.ppid == Some(KTHREADD))
}
