use super::*;
use crate::config::Config;
use crate::metrics::Metrics;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

fn note(operation: FileOperation) -> Note<'static> {
    Note {
        operation,
        write_closed: false,
        is_dir: false,
        renamed_from: None,
        renamed_to: None,
    }
}

#[test]
fn a_storm_on_one_path_is_one_change_per_window_with_every_notification_counted() {
    let mut c = Coalescer::default();
    let t0 = Instant::now();
    for i in 0..2000u32 {
        let mut n = note(FileOperation::Modified);
        n.write_closed = i % 2 == 1;
        let at = t0 + Duration::from_micros(i as u64 * 100);
        assert!(c.add("/etc/hosts", n, at).is_empty());
    }
    c.add(
        "/etc/passwd",
        note(FileOperation::Attributes),
        t0 + WINDOW / 2,
    );
    assert!(
        c.due(t0 + WINDOW / 2).is_empty(),
        "nothing before the window closes"
    );
    let due = c.due(t0 + WINDOW);
    assert_eq!(due.len(), 1);
    let (path, p) = &due[0];
    assert_eq!(path, "/etc/hosts");
    assert_eq!((p.count, p.writes), (2000, 1000));
    assert_eq!(p.operation(true), FileOperation::Modified);
    assert_eq!(c.next_due(), Some(t0 + WINDOW / 2 + WINDOW));
    let rest = c.drain_all();
    assert_eq!(rest.len(), 1);
    assert!(c.is_empty());
}

#[test]
fn the_reported_operation_follows_what_happened_in_the_window() {
    use FileOperation::*;
    let t = Instant::now();
    let op = |ops: &[FileOperation], exists: bool| {
        let mut c = Coalescer::default();
        for o in ops {
            c.add("/p", note(*o), t);
        }
        c.drain_all()[0].1.operation(exists)
    };
    assert_eq!(op(&[Created, Modified], true), Created);
    assert_eq!(op(&[Modified, Attributes], true), Modified);
    assert_eq!(op(&[Attributes], true), Attributes);
    assert_eq!(op(&[Modified, Deleted], false), Deleted);
    assert_eq!(op(&[Created, Deleted], false), Deleted);
    assert_eq!(op(&[Deleted, Created], true), Created, "replaced");
    assert_eq!(op(&[Renamed], false), Renamed, "moved away");
    assert_eq!(op(&[Renamed], true), Renamed, "moved here");
    assert_eq!(op(&[Renamed, Modified], true), Renamed);
}

#[test]
fn the_pending_set_is_bounded_and_flushed_whole_when_full() {
    let mut c = Coalescer::default();
    let t = Instant::now();
    for i in 0..MAX_PENDING {
        assert!(
            c.add(&format!("/f{i}"), note(FileOperation::Modified), t)
                .is_empty()
        );
    }
    // Known paths still merge.
    assert!(c.add("/f0", note(FileOperation::Modified), t).is_empty());
    let flushed = c.add("/new", note(FileOperation::Created), t);
    assert_eq!(flushed.len(), MAX_PENDING);
    assert_eq!(
        flushed.iter().map(|(_, p)| p.count).sum::<u64>(),
        MAX_PENDING as u64 + 1
    );
    assert_eq!(c.len(), 1);
}

fn entry(size: u64, mode: u32, hash: Option<&str>) -> state::Entry {
    state::Entry {
        kind: "file".into(),
        size,
        mode,
        uid: 0,
        gid: 0,
        mtime: 100,
        hash: hash.map(str::to_string),
        caps: false,
    }
}

fn table(targets: &[&str], entries: &[(&str, state::Entry)]) -> Table {
    Table {
        targets: targets.iter().map(|t| t.to_string()).collect(),
        entries: entries
            .iter()
            .map(|(p, e)| (p.to_string(), e.clone()))
            .collect(),
        full: 0,
    }
}

#[test]
fn the_state_diff_finds_each_kind_of_change_under_common_targets_only() {
    use FileOperation::*;
    let old = table(
        &["/etc/cron.d", "/etc/passwd", "/opt/gone"],
        &[
            ("/etc/cron.d", entry(4096, 0o755, None)),
            ("/etc/cron.d/a", entry(1, 0o644, Some("aa"))),
            ("/etc/cron.d/b", entry(1, 0o644, Some("bb"))),
            ("/etc/cron.d/c", entry(1, 0o644, Some("cc"))),
            ("/etc/passwd", entry(10, 0o644, Some("pp"))),
            ("/opt/gone/x", entry(1, 0o644, None)),
        ],
    );
    let mut dir = entry(8192, 0o755, None);
    dir.kind = "dir".into();
    let mut old_dir = entry(4096, 0o755, None);
    old_dir.kind = "dir".into();
    let mut old = old;
    old.entries.insert("/etc/cron.d".into(), old_dir);
    let new = table(
        &["/etc/cron.d", "/etc/passwd", "/etc/new"],
        &[
            ("/etc/cron.d", dir),
            ("/etc/cron.d/a", entry(1, 0o644, Some("a2"))),
            ("/etc/cron.d/c", entry(1, 0o4755, Some("cc"))),
            ("/etc/cron.d/d", entry(1, 0o644, Some("dd"))),
            ("/etc/passwd", entry(10, 0o644, Some("pp"))),
            ("/etc/new/y", entry(1, 0o644, None)),
        ],
    );
    let mut found: Vec<(String, FileOperation)> = state::diff(&old, &new)
        .into_iter()
        .map(|d| (d.path, d.operation))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        [
            ("/etc/cron.d/a".to_string(), Modified),
            ("/etc/cron.d/b".to_string(), Deleted),
            ("/etc/cron.d/c".to_string(), Attributes),
            ("/etc/cron.d/d".to_string(), Created),
        ],
        "a directory's own size is not a change; paths of a target only one side has are not compared"
    );
    assert!(state::diff(&new, &new).is_empty());
}

#[test]
fn hashes_of_lazy_files_carry_over_while_their_metadata_is_unchanged() {
    let old = table(
        &["/usr/bin"],
        &[
            ("/usr/bin/a", entry(5, 0o755, Some("h"))),
            ("/usr/bin/b", entry(5, 0o755, Some("h"))),
        ],
    );
    let mut new = table(
        &["/usr/bin"],
        &[
            ("/usr/bin/a", entry(5, 0o755, None)),
            ("/usr/bin/b", entry(6, 0o755, None)),
        ],
    );
    state::carry_hashes(&mut new, &old);
    assert_eq!(new.entries["/usr/bin/a"].hash.as_deref(), Some("h"));
    assert_eq!(
        new.entries["/usr/bin/b"].hash, None,
        "size changed: the old hash is not this file's"
    );
}

#[test]
fn a_fifo_and_a_link_to_a_device_are_recorded_without_being_opened() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    let fifo = std::ffi::CString::new(root.path().join("etc/fifo").as_os_str().as_encoded_bytes())
        .unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink("/dev/zero", root.path().join("etc/zero")).unwrap();
    std::fs::write(root.path().join("etc/su"), b"binary").unwrap();
    std::fs::set_permissions(
        root.path().join("etc/su"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let host = HostRoot::new(root.path());
    let start = Instant::now();
    match state::look(&host, Path::new("/etc/fifo"), true) {
        Look::Seen { entry, .. } => {
            assert_eq!(entry.kind, "fifo");
            assert_eq!(entry.hash, None);
        }
        other => panic!("{other:?}"),
    }
    match state::look(&host, Path::new("/etc/zero"), true) {
        Look::Seen { entry, .. } => {
            assert_eq!(entry.kind, "symlink");
            assert_eq!(entry.hash, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5), "nothing blocked");
    match state::look(&host, Path::new("/etc/su"), true) {
        Look::Seen { entry, note } => {
            assert_eq!(entry.mode, 0o4755);
            assert_eq!(
                entry.hash.as_deref(),
                Some("9a3a45d01531a20e89ac6ae10b0b0beb0492acd7216a368aa062d1a5fecaf9cd"),
                "sha256 of 'binary'"
            );
            assert_eq!(note, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        state::look(&host, Path::new("/etc/none"), true),
        Look::Gone
    ));
}

#[test]
fn targets_are_the_configured_paths_or_the_defaults_with_every_existing_home() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::create_dir_all(root.path().join("home/alice")).unwrap();
    std::fs::create_dir_all(root.path().join("root")).unwrap();
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\nsvc:x:2:2::/nonexistent:/bin/false\nbin:x:3:3::/bin:/bin/false\n",
    )
    .unwrap();
    let host = HostRoot::new(root.path());
    let (t, over) = super::watch::targets(None, &host);
    assert_eq!(over, 0);
    let paths: Vec<String> = t.iter().map(|t| t.path.display().to_string()).collect();
    for p in [
        "/etc/passwd",
        "/usr/bin",
        "/root/.ssh",
        "/home/alice/.ssh",
        "/home/alice/.zshrc",
    ] {
        assert!(paths.contains(&p.to_string()), "{p} in {paths:?}");
    }
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("/nonexistent") || p.starts_with("/bin/"))
    );
    let cron = t
        .iter()
        .find(|t| t.path == Path::new("/var/spool/cron"))
        .unwrap();
    assert!(cron.recursive);
    assert!(
        t.iter()
            .find(|t| t.path == Path::new("/usr/bin"))
            .unwrap()
            .lazy
    );
    let (t, _) = super::watch::targets(Some(&["/opt/app/**".to_string()]), &host);
    assert_eq!(
        t,
        [Target {
            path: "/opt/app".into(),
            recursive: true,
            lazy: false
        }]
    );
}

/// A temporary host root and state directory, and the collector run on a thread over them.
struct Host {
    root: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let h = Host {
            root: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(h.root.path().join("etc/cron.d")).unwrap();
        std::fs::write(
            h.root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\n",
        )
        .unwrap();
        h
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p.trim_start_matches('/'))
    }

    /// Runs the collector over `/etc/cron.d`, `/etc/passwd` and `/etc/ld.so.preload`.
    fn start(&self) -> Running_ {
        self.start_with(&["/etc/cron.d", "/etc/passwd", "/etc/ld.so.preload"])
    }

    fn start_with(&self, paths: &[&str]) -> Running_ {
        start_collector(
            HostRoot::new(self.root.path()),
            paths,
            self.state.path(),
            WriterMode::Auto,
        )
    }
}

/// Runs the collector over `paths` of `host`, naming writers as `writers` says; returns once
/// the first look is saved in `state`.
fn start_collector(host: HostRoot, paths: &[&str], state: &Path, writers: WriterMode) -> Running_ {
    let (tx, rx) = mpsc::channel(1024);
    let config = Config {
        file_integrity_paths: Some(paths.iter().map(|p| p.to_string()).collect()),
        ..Config::default()
    };
    let (cfg, config) = watch::channel(Arc::new(config));
    let cancel = CancellationToken::new();
    let ctx = Context {
        host,
        events: tx,
        metrics: Arc::new(Metrics::for_tests()),
        config,
        cancel: cancel.clone(),
        state_dir: state.to_path_buf(),
    };
    let metrics = ctx.metrics.clone();
    let thread = std::thread::spawn(move || run_with(ctx, writers));
    let r = Running_ {
        rx,
        cancel,
        thread: Some(thread),
        _cfg: cfg,
        metrics,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state.join(state::STATE_FILE).exists() {
        assert!(Instant::now() < deadline, "no state saved in 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    r
}

struct Running_ {
    rx: mpsc::Receiver<Event>,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    _cfg: watch::Sender<Arc<Config>>,
    metrics: Arc<Metrics>,
}

impl Running_ {
    /// The next FileChange record within `within`.
    fn next(&mut self, within: Duration) -> Option<FileChange> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.rx.try_recv() {
                Ok(Event {
                    payload: Payload::FileChange(mut v),
                    ..
                }) => return Some(v.remove(0)),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        None
    }

    /// The next FileChange record about `path` within `within` (others are passed over).
    fn next_about(&mut self, path: &str, within: Duration) -> Option<FileChange> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.next(deadline.saturating_duration_since(Instant::now())) {
                Some(c) if c.path == path => return Some(c),
                _ => {}
            }
        }
        None
    }

    fn stop(mut self) -> Vec<FileChange> {
        self.cancel.cancel();
        self.thread.take().unwrap().join().unwrap();
        let mut rest = Vec::new();
        while let Ok(e) = self.rx.try_recv() {
            if let Payload::FileChange(v) = e.payload {
                rest.extend(v);
            }
        }
        rest
    }
}

impl Drop for Running_ {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn changes_are_reported_live_and_changes_while_stopped_once_at_the_next_start() {
    let h = Host::new();
    std::fs::write(h.path("/etc/cron.d/job"), "* * * * * root true\n").unwrap();
    let mut r = h.start();
    assert_eq!(
        r.next(Duration::from_millis(300)),
        None,
        "nothing at the first start"
    );

    std::fs::write(h.path("/etc/ld.so.preload"), "/tmp/evil.so\n").unwrap();
    let c = r
        .next(Duration::from_secs(10))
        .expect("the new preload file");
    assert_eq!(c.path, "/etc/ld.so.preload");
    assert_eq!(c.operation, FileOperation::Created);
    assert_eq!(c.owner_name.as_deref(), Some("root"));
    assert_eq!(c.size, Some(13));
    assert!(c.hash_after.is_some());
    assert_eq!(c.hash_before, None);
    assert!(
        !c.extra_details.contains_key("ProcessId"),
        "the agent's own change (this test process) is not attributed: {:?}",
        c.extra_details
    );

    let before_hash = {
        std::fs::OpenOptions::new()
            .append(true)
            .open(h.path("/etc/cron.d/job"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"@reboot root /tmp/x\n"))
            .unwrap();
        let c = r
            .next(Duration::from_secs(10))
            .expect("the cron file appended to");
        assert_eq!(
            (c.path.as_str(), c.operation),
            ("/etc/cron.d/job", FileOperation::Modified)
        );
        assert!(c.hash_before.is_some(), "known from the first look");
        assert_ne!(c.hash_before, c.hash_after);
        c.hash_after
    };
    assert!(r.metrics.value("edgeguard_fim_watches", &[]).unwrap() >= 2.0);
    assert!(r.stop().is_empty());

    // While stopped: one file changed, one removed.
    std::fs::write(h.path("/etc/cron.d/job"), "replaced\n").unwrap();
    std::fs::remove_file(h.path("/etc/ld.so.preload")).unwrap();
    let mut r = h.start();
    let mut seen = Vec::new();
    while let Some(c) = r.next(Duration::from_millis(500)) {
        seen.push(c);
    }
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].path.as_str(), seen[0].operation),
        ("/etc/cron.d/job", FileOperation::Modified)
    );
    assert_eq!(seen[0].hash_before, before_hash);
    assert_eq!(seen[0].extra_details["SeenAt"], "Start");
    assert_eq!(
        (seen[1].path.as_str(), seen[1].operation),
        ("/etc/ld.so.preload", FileOperation::Deleted)
    );
    assert!(r.stop().is_empty());

    // Reported once: not again at the next start.
    let mut r = h.start();
    assert_eq!(r.next(Duration::from_millis(500)), None);
    r.stop();
}

#[test]
fn a_fifo_at_a_watched_path_is_reported_without_hanging() {
    let h = Host::new();
    let mut r = h.start();
    let fifo =
        std::ffi::CString::new(h.path("/etc/cron.d/pipe").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let c = r.next(Duration::from_secs(10)).expect("the FIFO");
    assert_eq!(
        (c.path.as_str(), c.operation),
        ("/etc/cron.d/pipe", FileOperation::Created)
    );
    assert_eq!(c.extra_details["Type"], "fifo");
    assert_eq!(c.hash_after, None);
    // Still following.
    std::fs::write(h.path("/etc/cron.d/after"), "x").unwrap();
    let c = r
        .next(Duration::from_secs(10))
        .expect("a file after the FIFO");
    assert_eq!(c.path, "/etc/cron.d/after");
    r.stop();
}

#[test]
fn a_watched_directory_created_later_is_watched_with_what_it_already_holds() {
    let h = Host::new();
    let mut r = h.start_with(&["/etc/sudoers.d", "/var/spool/cron/**"]);
    // Created and filled at once: the file may be there before the directory's watch is.
    std::fs::create_dir_all(h.path("/etc/sudoers.d")).unwrap();
    std::fs::write(h.path("/etc/sudoers.d/x"), "x ALL=(ALL) NOPASSWD: ALL\n").unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 && Instant::now() < deadline {
        if let Some(c) = r.next(Duration::from_millis(100)) {
            seen.push((c.path, c.operation));
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("/etc/sudoers.d".to_string(), FileOperation::Created),
            ("/etc/sudoers.d/x".to_string(), FileOperation::Created),
        ]
    );
    // Later changes inside it are followed.
    std::fs::write(h.path("/etc/sudoers.d/x"), "changed\n").unwrap();
    let c = r.next(Duration::from_secs(10)).expect("a change inside");
    assert_eq!(
        (c.path.as_str(), c.operation),
        ("/etc/sudoers.d/x", FileOperation::Modified)
    );
    // A touch (open for writing, close, nothing written) is not a content change.
    std::fs::OpenOptions::new()
        .write(true)
        .open(h.path("/etc/sudoers.d/x"))
        .unwrap();
    let c = r.next(Duration::from_secs(10)).expect("the touch");
    assert_eq!(c.operation, FileOperation::Attributes);
    assert_eq!(c.extra_details["ContentUnchanged"], "true");
    r.stop();
}

#[test]
fn a_writer_is_remembered_without_counting_as_a_notification() {
    let mut c = Coalescer::default();
    let t = Instant::now();
    let p = |pid: u32| crate::host::procfs::ProcessInfo {
        pid,
        ..Default::default()
    };
    c.attribute("/etc/hosts", p(10), t);
    assert_eq!(c.writer_of("/etc/hosts"), Some(10));
    c.add("/etc/hosts", note(FileOperation::Modified), t);
    c.attribute("/etc/hosts", p(11), t);
    c.attribute("/etc/hosts", p(10), t);
    c.attribute("/etc/passwd", p(12), t);
    let mut due = c.due(t + WINDOW);
    due.sort_by(|a, b| a.0.cmp(&b.0));
    let (_, hosts) = &due[0];
    assert_eq!(hosts.count, 1, "only inotify's notification counts");
    assert_eq!(
        hosts.writer.as_ref().map(|w| w.pid),
        Some(10),
        "the last one"
    );
    assert_eq!(hosts.writer_pids, [10, 11]);
    let (_, passwd) = &due[1];
    assert_eq!(
        passwd.count, 0,
        "a writer alone: nothing inotify said (not reported)"
    );
}

#[test]
fn descriptor_paths_map_back_under_the_host_root_and_capabilities_are_read() {
    use writer::{cap_in_status, host_path};
    let root = Path::new("/host");
    assert_eq!(
        host_path(root, Path::new("/host/etc/passwd")),
        Some(PathBuf::from("/etc/passwd"))
    );
    assert_eq!(host_path(root, Path::new("/hostile/etc/passwd")), None);
    assert_eq!(
        host_path(root, Path::new("/etc/passwd")),
        None,
        "the agent's own"
    );
    assert_eq!(host_path(root, Path::new("/host/etc/x (deleted)")), None);
    assert_eq!(
        host_path(Path::new("/"), Path::new("/etc/passwd")),
        Some(PathBuf::from("/etc/passwd"))
    );
    let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t0000000000200000\n";
    assert_eq!(cap_in_status(status, 21), Some(true));
    assert_eq!(cap_in_status(status, 20), Some(false));
    assert_eq!(cap_in_status("Name:\tx\n", 21), None);
}

/// Files in a temporary directory, watched through the real root (`/`): the processes that
/// change them are this system's, and so is the /proc the collector reads them from.
struct Real {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Real {
    fn new() -> Real {
        let r = Real {
            dir: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(r.path("cron.d")).unwrap();
        std::fs::write(r.path("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        r
    }

    /// The absolute path of `name` in the directory (its host path too).
    fn path(&self, name: &str) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).unwrap().join(name)
    }

    fn key(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// Watches the directory's `cron.d` and `passwd`.
    fn start(&self, writers: WriterMode) -> Running_ {
        let paths = [self.key("cron.d"), self.key("passwd")];
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        start_collector(HostRoot::default(), &paths, self.state.path(), writers)
    }
}

/// Whether this test process may use fanotify (root with CAP_SYS_ADMIN); says so when not.
fn may_use_fanotify() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // SAFETY: no arguments.
    let ok = unsafe { libc::geteuid() } == 0 && writer::cap_in_status(&status, 21) == Some(true);
    if !ok {
        eprintln!("skipping: fanotify needs root with CAP_SYS_ADMIN");
    }
    ok
}

/// A shell that runs `script` and then lives 3 s more (so /proc still has it when the event is
/// read); returns it with its executable as /proc names it.
fn shell(script: &str) -> (std::process::Child, String) {
    let child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{script}; sleep 3"))
        .spawn()
        .unwrap();
    // `spawn` returns once the exec is done: the link is the shell's.
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id()))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (child, exe)
}

fn reap(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for a program to end, successfully.
fn finish(mut child: std::process::Child) {
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_change_names_the_process_that_made_it() {
    if !may_use_fanotify() {
        return;
    }
    let h = Real::new();
    std::fs::write(h.path("cron.d/job"), "* * * * * root true\n").unwrap();
    let mut r = h.start(WriterMode::Auto);
    assert_eq!(
        r.metrics.value("edgeguard_fim_attributed", &[]),
        r.metrics.value("edgeguard_fim_watches", &[]),
        "every watched directory is marked"
    );

    let job = h.key("cron.d/job");
    let (child, exe) = shell(&format!("echo '@reboot root /tmp/x' >> '{job}'"));
    let pid = child.id();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    let c = r
        .next_about(&job, Duration::from_secs(10))
        .expect("the cron file appended to");
    reap(child);
    assert_eq!(c.operation, FileOperation::Modified);
    let x = &c.extra_details;
    assert_eq!(x.get("ProcessId"), Some(&pid.to_string()), "{x:?}");
    assert_eq!(x.get("Executable"), Some(&exe), "{x:?}");
    assert_eq!(x.get("ProcessName").map(String::as_str), Some(comm.trim()));
    assert!(
        x.get("CommandLine")
            .is_some_and(|c| c.contains("@reboot root /tmp/x")),
        "{x:?}"
    );
    // SAFETY: no arguments.
    let uid = unsafe { libc::getuid() };
    assert_eq!(x.get("UserId"), Some(&uid.to_string()));
    assert_eq!(x.get("Processes"), None, "one writer");

    // Two processes in one window: the last is named, both are counted.
    let passwd = h.key("passwd");
    let (child, _) = shell(&format!(
        "echo a >> '{passwd}'; /bin/sh -c \"echo b >> '{passwd}'; sleep 3\""
    ));
    let outer = child.id();
    let c = r
        .next_about(&passwd, Duration::from_secs(10))
        .expect("passwd appended to twice");
    reap(child);
    let x = &c.extra_details;
    assert_eq!(x.get("Processes").map(String::as_str), Some("2"), "{x:?}");
    assert_ne!(
        x.get("ProcessId"),
        Some(&outer.to_string()),
        "the inner shell wrote last"
    );
    assert!(
        x.get("CommandLine").is_some_and(|c| c.contains("echo b")),
        "{x:?}"
    );
    r.stop();
}

#[test]
fn a_created_and_a_renamed_into_place_file_name_their_writers() {
    if !may_use_fanotify() {
        return;
    }
    let h = Real::new();
    let mut r = h.start(WriterMode::Auto);
    std::fs::write(h.path("source"), "x ALL=(ALL) NOPASSWD: ALL\n").unwrap();

    // A program that is gone by the time its change is reported, maybe before its event is
    // read: its pid is named all the same.
    let new = h.key("cron.d/new");
    let cp = std::process::Command::new("/bin/cp")
        .arg(h.path("source"))
        .arg(&new)
        .spawn()
        .unwrap();
    let cp_pid = cp.id();
    finish(cp);
    let c = r
        .next_about(&new, Duration::from_secs(10))
        .expect("the file cp created");
    assert_eq!(c.operation, FileOperation::Created);
    assert_eq!(c.extra_details.get("ProcessId"), Some(&cp_pid.to_string()));
    if let Some(exe) = c.extra_details.get("Executable") {
        assert!(exe.ends_with("cp"), "{exe}");
    }

    // Replaced by a rename (what editors and package managers do): the name is not watched
    // when the file is written, only when it is renamed over the watched one.
    std::fs::write(h.path("passwd.new"), "root:x:0:0::/root:/bin/bash\n").unwrap();
    let passwd = h.key("passwd");
    let mv = std::process::Command::new("/bin/mv")
        .arg(h.path("passwd.new"))
        .arg(&passwd)
        .spawn()
        .unwrap();
    let mv_pid = mv.id();
    finish(mv);
    let c = r
        .next_about(&passwd, Duration::from_secs(10))
        .expect("passwd renamed into place");
    assert_eq!(c.operation, FileOperation::Renamed);
    assert_eq!(
        c.extra_details.get("RenamedFrom"),
        Some(&h.key("passwd.new"))
    );
    assert_eq!(c.extra_details.get("ProcessId"), Some(&mv_pid.to_string()));
    r.stop();
}

#[test]
fn descriptors_name_the_writer_where_names_are_not_available() {
    if !may_use_fanotify() {
        return;
    }
    let h = Real::new();
    std::fs::write(h.path("cron.d/job"), "x\n").unwrap();
    let mut r = h.start(WriterMode::Descriptor);
    assert!(r.metrics.value("edgeguard_fim_attributed", &[]).unwrap() >= 2.0);
    let job = h.key("cron.d/job");
    let (child, exe) = shell(&format!("echo y >> '{job}'"));
    let pid = child.id();
    let c = r
        .next_about(&job, Duration::from_secs(10))
        .expect("the cron file appended to");
    reap(child);
    assert_eq!(c.extra_details.get("ProcessId"), Some(&pid.to_string()));
    assert_eq!(c.extra_details.get("Executable"), Some(&exe));
    r.stop();
}

#[test]
fn without_fanotify_changes_are_reported_without_their_writer() {
    let h = Real::new();
    let mut r = h.start(WriterMode::Off);
    assert_eq!(r.metrics.value("edgeguard_fim_attributed", &[]), Some(0.0));
    let job = h.key("cron.d/job");
    let (child, _) = shell(&format!("echo y > '{job}'"));
    let c = r
        .next_about(&job, Duration::from_secs(10))
        .expect("the new cron file");
    reap(child);
    assert_eq!(c.operation, FileOperation::Created);
    assert!(c.hash_after.is_some());
    assert!(!c.extra_details.contains_key("ProcessId"), "{c:?}");
    assert!(
        r.metrics
            .value("edgeguard_fim_unattributed_total", &[])
            .unwrap()
            >= 1.0
    );
    r.stop();
}
