use super::*;
use crate::collectors::Context;
use crate::collectors::capacity;
use crate::config::Config;
use crate::event::{CollectorHealth, Event, Payload, ProcessCreate, ProcessTerminate};
use crate::host::HostRoot;
use crate::host::procfs::ProcessInfo;
use crate::kernel::bytes::{u16_at, u32_at};
use crate::kernel::netlink::{NLMSG_DONE, NLMSG_NOOP};
use crate::metrics::DropReason;
use crate::metrics::Metrics;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
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
    let field =
        |f: &[String], i: usize| -> f64 { f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
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
