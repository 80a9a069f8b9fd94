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
        let (tx, rx) = mpsc::channel(1024);
        let config = Config {
            file_integrity_paths: Some(paths.iter().map(|p| p.to_string()).collect()),
            ..Config::default()
        };
        let (cfg, config) = watch::channel(Arc::new(config));
        let cancel = CancellationToken::new();
        let ctx = Context {
            host: HostRoot::new(self.root.path()),
            events: tx,
            metrics: Arc::new(Metrics::for_tests()),
            config,
            cancel: cancel.clone(),
            state_dir: self.state.path().to_path_buf(),
        };
        let metrics = ctx.metrics.clone();
        let thread = std::thread::spawn(move || run(ctx));
        let r = Running_ {
            rx,
            cancel,
            thread: Some(thread),
            _cfg: cfg,
            metrics,
        };
        // Ready once the first look is saved.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.state.path().join(state::STATE_FILE).exists() {
            assert!(Instant::now() < deadline, "no state saved in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        r
    }
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
