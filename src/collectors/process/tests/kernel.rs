//! Against the real kernel.

use super::*;

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
    start_following(if use_connector {
        Follow::Auto
    } else {
        Follow::Scan
    })
}

fn start_following(how: Follow) -> Harness {
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
    let handle = spawn_with(ctx, how).unwrap();
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
    every_exec_and_exit_with_status(Follow::Auto);
}

/// The same on one socket for every event, as on kernels before 6.6 (this kernel filters, so
/// the test above reads execs and the rest from two sockets).
#[test]
fn reports_every_exec_and_exit_with_status_on_one_socket() {
    every_exec_and_exit_with_status(Follow::OneSocket);
}

fn every_exec_and_exit_with_status(how: Follow) {
    let dir = tempfile::tempdir().unwrap();
    let script = script(dir.path());
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let mut h = start_following(how);
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
        let me = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(
            c.extra_details.get("ParentExecutable").map(String::as_str),
            me.to_str(),
            "the parent (this test, running before the collector) is known"
        );
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
    // This test's name for the harness (module path less the crate), so it survives moves.
    let name = concat!(module_path!(), "::outside_the_host_network_it_falls_back")
        .trim_start_matches("edgeguard::");
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
    let idle = Connectors::single(Connector::open(0).unwrap());
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

/// Issue 17's web-shell rule from real processes: a program named like a web server (a copy of
/// the shell) starts `sh -c …`; the collector names the parent's program and the detector raises
/// `web-shell`. The same command started by a shell of the ordinary name does not.
#[test]
fn a_shell_started_by_a_web_server_raises_web_shell() {
    use crate::detect::{Detector, Finding};
    let dir = tempfile::Builder::new()
        .prefix("eg-www-")
        .tempdir_in("/var/lib")
        .unwrap();
    let server = dir.path().join("nginx");
    std::fs::copy(std::fs::canonicalize("/bin/bash").unwrap(), &server).unwrap();
    let ordinary = dir.path().join("bash");
    std::fs::copy(std::fs::canonicalize("/bin/bash").unwrap(), &ordinary).unwrap();
    let mut h = start(true);
    h.wait_status(CollectorHealth::Up);
    let marker = format!("eg-webshell-{}", std::process::id());
    let mut parents = Vec::new();
    for parent in [&server, &ordinary] {
        // The inner shell lives a moment, so /proc is read while it runs.
        let child = std::process::Command::new(parent)
            .args(["-c", &format!("sh -c 'sleep 0.3; true {marker}'; true")])
            .spawn()
            .unwrap();
        parents.push(child);
    }
    let mut shells: Vec<ProcessCreate> = Vec::new();
    let both = h.until(Duration::from_secs(20), |e| {
        if let Some(r) = create_of(e)
            .filter(|r| r.command_line.contains(&marker) && r.command_line.starts_with("sh "))
        {
            shells.push(r.clone());
        }
        shells.len() == 2
    });
    for mut p in parents {
        let _ = p.wait();
    }
    assert!(
        both,
        "saw {} of the 2 inner shells: {shells:?}",
        shells.len()
    );
    let mut d = Detector::new();
    let mut fired = Vec::new();
    for s in &shells {
        let mut found = Vec::new();
        d.inspect(
            &Event::new(Payload::ProcessCreate(vec![s.clone()])),
            tokio::time::Instant::now(),
            &mut found,
        );
        for f in found {
            if let Finding::Raised(rule, _) = f {
                fired.push((s.extra_details.get("ParentExecutable").cloned(), rule.id()));
            }
        }
    }
    let server = server.to_str().unwrap().to_string();
    assert_eq!(fired, [(Some(server), "web-shell")], "{shells:#?}");
}

/// Where the kernel filters process events per socket (Linux 6.6+), the reader's wake socket
/// gets every exec and no fork or exit, and the other socket every fork and exit and no exec.
/// On an older kernel the reader must use one socket.
#[test]
fn execs_and_the_rest_come_on_their_own_sockets() {
    let release = crate::kernel::sys::uname_release().unwrap();
    let filters = kernel_filters_events(&release);
    let connectors = Connectors::open(RECV_BUFFER_BYTES, filters).unwrap();
    let Some(rest) = connectors.rest.as_ref() else {
        assert!(
            !filters,
            "Linux {release} filters events, yet one socket was opened"
        );
        return;
    };
    // The wake socket first takes every event, so that it sees the kernel's answer (a filtered
    // socket gets none); then it is narrowed to execs.
    let mut batch = Batch::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = false;
    while !answered && Instant::now() < deadline {
        if connectors.wake.recv_batch(&mut batch).unwrap() == Received::Datagrams {
            answered = batch.datagrams().any(|d| {
                parse_datagram(d).filter_map(Result::ok).any(|e| {
                    matches!(e, ProcEvent::Ack { ack, err: 0, .. } if connectors.wake.is_our_ack(ack))
                })
            });
        }
    }
    assert!(answered, "no answer to the wake socket's subscription");
    connectors.narrow().unwrap();
    // What was queued before the narrowing (the kernel applies it before `narrow` returns).
    while connectors.wake.try_recv_batch(&mut batch).unwrap() != Received::TimedOut {}
    // A shell that forks a subshell (no exec) and exits.
    let sh = Command::new("/bin/sh")
        .args(["-c", "(exit 0); exit 0"])
        .spawn()
        .unwrap();
    let pid = sh.id();
    let mut sh = sh;
    sh.wait().unwrap();
    let read_until = |connector: &Connector, done: &dyn Fn(&[ProcEvent]) -> bool| {
        let mut batch = Batch::default();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&seen) && Instant::now() < deadline {
            if connector.recv_batch(&mut batch).unwrap() == Received::Datagrams {
                for d in batch.datagrams() {
                    seen.extend(parse_datagram(d).filter_map(Result::ok));
                }
            }
        }
        seen
    };
    let on_wake = read_until(&connectors.wake, &|seen| {
        seen.iter()
            .any(|e| matches!(*e, ProcEvent::Exec { pid: p, .. } if p == pid))
    });
    assert!(
        on_wake
            .iter()
            .any(|e| matches!(*e, ProcEvent::Exec { pid: p, .. } if p == pid)),
        "no exec of {pid} on the wake socket: {on_wake:?}"
    );
    let not_exec: Vec<_> = on_wake
        .iter()
        .filter(|e| !matches!(e, ProcEvent::Exec { .. } | ProcEvent::Ack { .. }))
        .collect();
    assert!(not_exec.is_empty(), "the wake socket got {not_exec:?}");
    let on_rest = read_until(rest, &|seen| seen.iter().any(|e| e.is_exit_of(pid)));
    assert!(on_rest.iter().any(|e| e.is_exit_of(pid)), "{on_rest:?}");
    assert!(
        on_rest
            .iter()
            .any(|e| matches!(*e, ProcEvent::Fork { child_tgid, .. } if child_tgid == pid)),
        "no fork of {pid}"
    );
    assert!(
        on_rest
            .iter()
            .any(|e| matches!(*e, ProcEvent::Fork { parent_tgid, .. } if parent_tgid == pid)),
        "no fork of the subshell of {pid}"
    );
    let execs: Vec<_> = on_rest
        .iter()
        .filter(|e| matches!(e, ProcEvent::Exec { .. }))
        .collect();
    assert!(execs.is_empty(), "the rest socket got {execs:?}");
}
