//! Bounded caches and the tracker, from kernel facts.

use super::*;
use crate::test_support::monotonic_ns;

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
    assert_eq!(c.extra_details["ParentExecutable"], "/usr/bin/dash");
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
    let exec = exec_now(pid);
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
                timestamp_ns: monotonic_ns(),
            },
        ],
        &mut early,
    );
    assert_eq!(early.len(), 1);
    assert!(early[0].cmdline.is_some());
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A tracker of the real host with the exec tracepoint open (root and tracefs needed).
/// The exec event of `pid` as the kernel would send it now.
fn exec_now(pid: u32) -> ProcEvent {
    ProcEvent::Exec {
        pid,
        tgid: pid,
        timestamp_ns: monotonic_ns(),
    }
}

fn traced_tracker() -> Tracker {
    let mut t = Tracker::new(HostRoot::new("/"));
    t.open_exec_trace();
    assert!(
        t.exec_trace.is_some(),
        "the exec tracepoint should open as root (is tracefs mounted at /sys/kernel/tracing?)"
    );
    t
}

/// Runs `exe` with `args` and reaps it, so /proc has nothing left of it; its pid.
fn run_and_reap(exe: &std::path::Path, args: &[&str]) -> u32 {
    let mut child = Command::new(exe).args(args).spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Real kernel: needs tracefs (scripts/test.sh mounts it where the host has not).
#[test]
fn an_exec_reaped_before_its_read_keeps_its_file_name_and_arguments_from_the_tracepoint() {
    let mut t = traced_tracker();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("egreaped");
    std::fs::copy("/bin/true", &exe).unwrap();
    let mut with_arguments = 0;
    for i in 0..20 {
        let pid = run_and_reap(&exe, &["--reaped", &i.to_string()]);
        // Gone before the reader got to it: /proc has nothing left, the tracepoint has the
        // file name and (unless stack randomization hid them, see exec_trace::STACK_BYTES)
        // the arguments.
        let mut early = VecDeque::new();
        read_execs_first(&mut t, &[exec_now(pid)], &mut early);
        let info = early.pop_front().unwrap();
        assert_eq!(info.exe, None);
        let expected = format!("{} --reaped {i}", exe.display());
        match info.cmdline.as_deref() {
            None => {}
            Some(line) => {
                assert_eq!(line, expected);
                with_arguments += 1;
            }
        }
        let record = t.created(info);
        assert_eq!(record.executable, exe.to_str().unwrap());
        assert_eq!(
            record.extra_details.get("Incomplete").map(String::as_str),
            Some("true")
        );
    }
    if t.exec_trace.as_ref().is_some_and(|x| x.has_arguments()) {
        assert!(with_arguments > 0, "no reaped exec had its arguments");
    }
}

/// Real kernel, tracefs as above. The tracepoint fires before the process connector sends the
/// exec, so the record of an exec can be drained with the batch before the one that brings its
/// event; its stack must be kept then, or a process reaped by the time its event comes loses its
/// arguments.
#[test]
fn an_exec_drained_before_its_event_comes_keeps_its_arguments() {
    let mut t = traced_tracker();
    if !t.exec_trace.as_ref().is_some_and(|x| x.has_arguments()) {
        eprintln!("the kernel refused the stack copy: only file names, nothing to check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("egahead");
    std::fs::copy("/bin/true", &exe).unwrap();
    let mut with_arguments = 0;
    for i in 0..20 {
        let pid = run_and_reap(&exe, &["--ahead", &i.to_string()]);
        let mut early = VecDeque::new();
        // A batch without this exec drains its record (it was written already) ...
        read_execs_first(&mut t, &[], &mut early);
        // ... and the next batch brings its event, when /proc has nothing left.
        read_execs_first(&mut t, &[exec_now(pid)], &mut early);
        let info = early.pop_front().unwrap();
        assert_eq!(info.exe, None);
        assert_eq!(info.exec_name.as_deref(), exe.to_str());
        if let Some(line) = info.cmdline.as_deref() {
            assert_eq!(line, format!("{} --ahead {i}", exe.display()));
            with_arguments += 1;
        }
    }
    // Stack randomization hides the strings of about a quarter of execs (exec_trace::STACK_BYTES);
    // before the fix none of these 20 had arguments.
    assert!(
        with_arguments >= 5,
        "{with_arguments} of 20 execs drained before their event kept their arguments"
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
    let exec = exec_now;
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
    t.forget_followed();
    read_execs_first(&mut t, &[fork(105), exec(105)], &mut early);
    assert_eq!(early[0].uid, None);
}

/// The container look-up a process in its parent's cgroup on the host is spared, and one the
/// runtime moved into another cgroup is not (made-up /proc; the cgroup ids stand for the exec
/// tracepoint's).
#[test]
fn a_process_in_its_hosted_parents_cgroup_skips_the_container_look_up() {
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let proc = dir.path().join("proc");
    let make = |pid: u32, mnt: &str, cgroup: &str| {
        let p = proc.join(pid.to_string());
        std::fs::create_dir_all(p.join("ns")).unwrap();
        std::os::unix::fs::symlink(mnt, p.join("ns/mnt")).unwrap();
        std::fs::write(p.join("cgroup"), format!("0::{cgroup}\n")).unwrap();
    };
    let host = "mnt:[4026531841]";
    make(1, host, "/init.scope");
    make(100, host, "/system.slice/shell.service");
    make(101, host, "/system.slice/shell.service");
    // A runtime's child: moved into the container's cgroup, then its own mount namespace.
    make(
        102,
        "mnt:[4026532600]",
        &format!("/system.slice/docker-{ID}.scope"),
    );
    let mut t = Tracker::new(HostRoot::new(dir.path()));
    // As on a cgroup v2 host.
    t.cgroup_ids = Some(true);
    let exec = |t: &mut Tracker, pid: u32, cgroup: Option<u64>| {
        let mut info = ProcessInfo {
            pid,
            cgroup_id: cgroup,
            ..Default::default()
        };
        t.read_lasting(&mut info, |_| false);
        info.container_id
    };
    // The first exec in a cgroup is looked up; it is on the host.
    assert_eq!(exec(&mut t, 100, Some(7)), None);
    assert_eq!((t.container_reads, t.container_reads_spared), (1, 0));
    // Its child in the same cgroup: spared (the look-up would give the same answer).
    t.fork(100, 101, 101);
    assert_eq!(exec(&mut t, 101, Some(7)), None);
    assert_eq!((t.container_reads, t.container_reads_spared), (1, 1));
    // And so is the same pid's next exec (a shell's `exec`) in that cgroup.
    assert_eq!(exec(&mut t, 101, Some(7)), None);
    assert_eq!((t.container_reads, t.container_reads_spared), (1, 2));
    // A child the runtime moved into another cgroup before its exec: looked up, a container.
    t.fork(100, 102, 102);
    assert_eq!(exec(&mut t, 102, Some(9)).as_deref(), Some(ID));
    assert_eq!((t.container_reads, t.container_reads_spared), (2, 2));
    // ... and its children are looked up too (it was not found on the host).
    t.fork(102, 103, 103);
    make(
        103,
        "mnt:[4026532600]",
        &format!("/system.slice/docker-{ID}.scope"),
    );
    assert_eq!(exec(&mut t, 103, Some(9)).as_deref(), Some(ID));
    assert_eq!((t.container_reads, t.container_reads_spared), (3, 2));
    // Without the exec's cgroup (not sampled, or its sample lost): looked up, and the pid's
    // children are looked up again.
    assert_eq!(exec(&mut t, 100, None), None);
    assert_eq!((t.container_reads, t.container_reads_spared), (4, 2));
    t.fork(100, 104, 104);
    make(104, host, "/system.slice/shell.service");
    assert_eq!(exec(&mut t, 104, Some(7)), None);
    assert_eq!((t.container_reads, t.container_reads_spared), (5, 2));
    // An exit forgets the pid; lost events forget every pid.
    t.terminated(104, Some(0), Some(100));
    assert_eq!(exec(&mut t, 104, Some(7)), None);
    assert_eq!((t.container_reads, t.container_reads_spared), (6, 2));
    t.forget_followed();
    assert_eq!(exec(&mut t, 104, Some(7)), None);
    assert_eq!((t.container_reads, t.container_reads_spared), (7, 2));

    // A hybrid host: trusted once a container was read in a v2 cgroup of its own ...
    let mut t = Tracker::new(HostRoot::new(dir.path()));
    t.cgroup_ids = Some(false);
    assert_eq!(exec(&mut t, 100, Some(7)), None);
    t.fork(100, 101, 101);
    assert_eq!(exec(&mut t, 101, Some(7)), None);
    assert_eq!((t.container_reads, t.container_reads_spared), (2, 0));
    assert_eq!(exec(&mut t, 102, Some(9)).as_deref(), Some(ID));
    t.fork(101, 105, 105);
    assert_eq!(exec(&mut t, 105, Some(7)), None);
    assert_eq!((t.container_reads, t.container_reads_spared), (3, 1));
    // ... and never again after one was read without (a runtime that leaves v2 alone).
    make(106, "mnt:[4026532700]", "/");
    std::fs::write(
        proc.join("106/cgroup"),
        format!("4:memory:/docker/{ID}\n0::/system.slice/containerd.service\n"),
    )
    .unwrap();
    assert_eq!(exec(&mut t, 106, Some(7)).as_deref(), Some(ID));
    t.fork(101, 107, 107);
    assert_eq!(exec(&mut t, 107, Some(7)), None);
    assert_eq!((t.container_reads, t.container_reads_spared), (5, 1));
}

/// Real kernel, tracefs as above: a shell that execs another program at once (`sh -c 'exec
/// …'`) is reported as the shell, from its own sample, and its successor as itself; /proc,
/// which shows the successor by then, is not read for the shell.
#[test]
fn a_shell_that_execs_at_once_is_reported_as_itself_and_its_successor_as_itself() {
    let mut t = traced_tracker();
    if !t.exec_trace_timed() {
        eprintln!("the kernel refused the clock in samples (before 4.1): matched by order");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("egsecond");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let mut child = Command::new("/bin/sh")
        .args(["-c", &format!("exec {} 30", exe.display())])
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Wait for both samples, not only for /proc: the kernel shows the new executable in
    // /proc before it fires the exec tracepoint, and a task preempted in between (CPU
    // burners beside CI) has no sample yet. Drain while waiting, as the reader does: every
    // exec on the host (other tests run beside this one) writes to the ring.
    let mut lost = 0;
    loop {
        lost += t.exec_trace.as_mut().unwrap().drain(|_| false);
        let execd = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .as_deref()
            == Some(exe.as_path());
        if execd && t.exec_trace.as_ref().unwrap().sample_times(pid).len() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shell never exec'd (in /proc: {execd}; samples: {:?}; {lost} lost to a full ring)",
            t.exec_trace.as_ref().unwrap().sample_times(pid)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut early = VecDeque::new();
    read_execs_first(&mut t, &[], &mut early);
    let times = t.exec_trace.as_ref().unwrap().sample_times(pid);
    assert_eq!(
        times.len(),
        2,
        "two execs of pid {pid}: {times:?} ({lost} samples lost to a full ring while waiting)"
    );
    let at = |ns: u64| ProcEvent::Exec {
        pid,
        tgid: pid,
        timestamp_ns: ns,
    };
    read_execs_first(&mut t, &[at(times[0] + 1), at(times[1] + 1)], &mut early);
    child.kill().unwrap();
    child.wait().unwrap();
    let (shell, second) = (early.pop_front().unwrap(), early.pop_front().unwrap());
    assert_eq!(shell.exec_name.as_deref(), Some("/bin/sh"));
    assert_eq!(
        shell.exe, None,
        "/proc shows the successor: not read for the shell"
    );
    let line = format!("{} 30", exe.display());
    if let Some(cmd) = shell.cmdline.as_deref() {
        assert_eq!(cmd, format!("/bin/sh -c exec {line}"));
    }
    assert_eq!(second.exe.as_deref(), exe.to_str());
    assert_eq!(second.cmdline.as_deref(), Some(line.as_str()));
}

/// Real kernel, tracefs as above: a process running before the collector started is seeded
/// with its cgroup's id from the cgroup file system (its kernfs file handle), and that is the
/// id its next exec's sample carries; so its children need no container look-up.
#[test]
fn a_process_running_before_the_seed_gets_the_cgroup_id_its_exec_samples_carry() {
    let mut t = traced_tracker();
    if t.cgroup_ids.is_none() {
        eprintln!("no cgroup ids in samples (kernel before 5.7, or perf_event in a v1 hierarchy)");
        return;
    }
    if super::super::tracker::cgroup_v2_root(&HostRoot::new("/")).is_none() {
        eprintln!("no cgroup v2 hierarchy mounted: nothing to seed from");
        return;
    }
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    // Init's namespace may not be readable (see procfs::Reader::host_mount_ns); kthreadd's is.
    if ns("self") != ns("1").or_else(|| ns("2")) {
        eprintln!("this test runs outside the host's mount namespace: nothing is seeded");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("egseeded");
    std::fs::copy("/bin/true", &exe).unwrap();
    let mut child = Command::new("/bin/sh")
        .args(["-c", &format!("read x; exec {} --seeded", exe.display())])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    t.seed().unwrap();
    let seeded = t.host_cgroups.get(pid).copied();
    drop(child.stdin.take());
    child.wait().unwrap();
    assert!(seeded.is_some(), "pid {pid}, on the host, was not seeded");
    let mut early = VecDeque::new();
    read_execs_first(&mut t, &[], &mut early);
    let times = t.exec_trace.as_ref().unwrap().sample_times(pid);
    let last = *times.last().expect("the exec of egseeded was sampled");
    let event = ProcEvent::Exec {
        pid,
        tgid: pid,
        timestamp_ns: last + 1,
    };
    read_execs_first(&mut t, &[event], &mut early);
    assert_eq!(early[0].exec_name.as_deref(), exe.to_str());
    assert_eq!(early[0].cgroup_id, seeded);
}
