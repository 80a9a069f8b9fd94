//! Following files.

use super::*;

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
        std::fs::create_dir_all(h.root.path().join("var/log")).unwrap();
        std::fs::create_dir_all(h.root.path().join("etc")).unwrap();
        std::fs::write(
            h.root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        h
    }
    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p.trim_start_matches('/'))
    }
    fn append(&self, p: &str, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(p))
            .unwrap();
        f.write_all(bytes).unwrap();
    }
    fn follower(&self, start: StartAt) -> LoginFollower {
        LoginFollower::open(HostRoot::new(self.root.path()), self.state.path(), start)
    }
}

fn ssh_fail(user: &str, port: u16) -> String {
    format!(
        "Nov 23 17:42:57 edge sshd[77]: Failed password for {user} from 198.51.100.7 port {port} ssh2\n"
    )
}

fn users(batch: &Batch) -> Vec<String> {
    batch
        .logins
        .iter()
        .map(|l| l.user_name.clone().unwrap_or_default())
        .collect()
}

#[test]
fn auth_log_is_followed_once_across_rotation_and_restart() {
    let h = Host::new();
    h.append(AUTH_LOG, ssh_fail("history", 1).as_bytes());
    let mut f = h.follower(StartAt::End);
    f.save().unwrap();
    assert!(f.poll().logins.is_empty(), "first start skips history");
    h.append(AUTH_LOG, ssh_fail("a1", 2).as_bytes());
    h.append(
        AUTH_LOG,
        b"Nov 23 17:42:57 edge sshd[77]: Failed password for a2 from 1.2.3.4 po",
    );
    let b = f.poll();
    assert_eq!(users(&b), ["a1"]);
    assert_eq!(b.logins[0].remote_port, Some(2));
    assert_eq!(b.logins[0].user_id, None);
    assert!(f.poll().logins.is_empty(), "reported once");
    h.append(AUTH_LOG, b"rt 3 ssh2\n");
    assert_eq!(users(&f.poll()), ["a2"]);

    // Rotation: rename, the writer finishes in the old file, then a new file.
    std::fs::rename(h.path(AUTH_LOG), h.path("/var/log/auth.log.1")).unwrap();
    h.append("/var/log/auth.log.1", ssh_fail("late", 4).as_bytes());
    h.append(AUTH_LOG, ssh_fail("new1", 5).as_bytes());
    assert_eq!(users(&f.poll()), ["late", "new1"]);
    h.append("/var/log/auth.log.1", ssh_fail("later", 6).as_bytes());
    assert_eq!(users(&f.poll()), ["later"]);
    f.save().unwrap();

    // Restart from the saved state: no repeats, the rotated file is still followed.
    let mut f = h.follower(StartAt::End);
    assert!(f.poll().logins.is_empty());
    h.append(AUTH_LOG, ssh_fail("after", 7).as_bytes());
    h.append("/var/log/auth.log.1", ssh_fail("oldest", 8).as_bytes());
    assert_eq!(users(&f.poll()), ["oldest", "after"]);
    for _ in 0..ROTATED_QUIET_POLLS {
        f.poll();
    }
    f.save().unwrap();

    // Rotated while stopped: the rest of the old file, then the new one from its start.
    h.append(AUTH_LOG, ssh_fail("unread", 9).as_bytes());
    std::fs::rename(h.path(AUTH_LOG), h.path("/var/log/auth.log.1")).unwrap();
    h.append(AUTH_LOG, ssh_fail("fresh", 10).as_bytes());
    let mut f = h.follower(StartAt::End);
    assert_eq!(users(&f.poll()), ["unread", "fresh"]);
    assert!(f.poll().logins.is_empty());
    f.save().unwrap();

    // Truncated in place (copytruncate): read again from the start.
    std::fs::write(h.path(AUTH_LOG), ssh_fail("t", 11)).unwrap();
    assert_eq!(users(&f.poll()), ["t"]);
}

#[test]
fn first_start_can_replay_and_missing_files_are_read_when_they_appear() {
    let h = Host::new();
    h.append(SECURE, ssh_fail("old", 1).as_bytes());
    let mut f = h.follower(StartAt::Beginning);
    assert_eq!(users(&f.poll()), ["old"]);
    assert_eq!(f.present(), [SECURE]);
    f.save().unwrap();
    // A file that did not exist at the last run is new from its first byte.
    h.append(AUTH_LOG, ssh_fail("appeared", 2).as_bytes());
    let mut f = h.follower(StartAt::End);
    assert_eq!(users(&f.poll()), ["appeared"]);
    h.append(
        WTMP,
        &utmp(
            UtmpLayout::Native64,
            USER_PROCESS,
            9,
            "tty1",
            b"alice",
            "",
            T0,
            [0; 16],
        ),
    );
    let b = f.poll();
    assert_eq!(users(&b), ["alice"]);
    assert_eq!(b.logins[0].user_id.as_deref(), Some("1000"));
    assert_eq!(b.logins[0].executable, "/bin/login");
}

#[test]
fn wtmp_and_btmp_are_followed_record_by_record() {
    let h = Host::new();
    let layout = UtmpLayout::for_machine(&machine(&HostRoot::new(h.root.path())));
    h.append(WTMP, &sample(layout));
    h.append(BTMP, &sample(layout)[..layout.size() + 10]); // history with a partial record
    let mut f = h.follower(StartAt::End);
    assert!(f.poll().logins.is_empty());
    // A record being written at the first start is completed: it is new, so reported.
    h.append(BTMP, &sample(layout)[layout.size() + 10..2 * layout.size()]);
    assert_eq!(users(&f.poll()), ["alice"]);

    let rec = utmp(
        layout,
        USER_PROCESS,
        1,
        "pts/3",
        b"alice",
        "192.0.2.50",
        T0,
        v4([192, 0, 2, 50]),
    );
    let logout = utmp(layout, DEAD_PROCESS, 1, "pts/3", b"", "", T0, [0; 16]);
    h.append(WTMP, &[rec.clone(), logout].concat());
    let fail = utmp(
        layout,
        6,
        2,
        "ssh:notty",
        b"\xffbad",
        "192.0.2.51",
        T0,
        v4([192, 0, 2, 51]),
    );
    h.append(BTMP, &fail[..100]);
    let b = f.poll();
    assert_eq!(users(&b), ["alice"], "logouts are not logins");
    let l = &b.logins[0];
    assert_eq!(
        (l.operation.as_str(), l.result, l.process_id),
        ("wtmp:login", LoginResult::Success, 1)
    );
    assert_eq!(l.remote_address, Some("192.0.2.50".parse().unwrap()));
    assert_eq!(l.extra_details["Source"], WTMP);
    h.append(BTMP, &fail[100..]);
    let b = f.poll();
    assert_eq!(users(&b), ["\u{fffd}bad"]);
    assert_eq!(
        (b.logins[0].result, b.logins[0].executable.as_str()),
        (LoginResult::Fail, "/usr/sbin/sshd")
    );
    f.save().unwrap();

    // Restart, then logrotate's wtmp rotation (rename + create).
    let mut f = h.follower(StartAt::End);
    assert!(f.poll().logins.is_empty());
    std::fs::rename(h.path(WTMP), h.path("/var/log/wtmp.1")).unwrap();
    h.append(WTMP, &rec);
    assert_eq!(users(&f.poll()), ["alice"]);
    assert!(f.poll().logins.is_empty());

    // Garbage appended: skipped and counted, and following goes on.
    h.append(WTMP, &vec![0xAB; layout.size()]);
    h.append(WTMP, &rec);
    let b = f.poll();
    assert_eq!((users(&b), b.malformed), (vec!["alice".to_string()], 1));
}

#[test]
fn corrupt_state_is_a_first_start() {
    let h = Host::new();
    h.append(AUTH_LOG, ssh_fail("history", 1).as_bytes());
    std::fs::write(h.state.path().join(STATE_FILE), b"{not json").unwrap();
    let mut f = h.follower(StartAt::End);
    assert!(f.poll().logins.is_empty());
}

#[test]
fn the_real_host_files_read_without_error() {
    // Read-only: a follower on the real root with a throwaway state directory.
    let state = tempfile::tempdir().unwrap();
    let mut f = LoginFollower::open(HostRoot::default(), state.path(), StartAt::Beginning);
    let b = f.poll();
    for l in &b.logins {
        assert!(!l.operation.is_empty());
    }
    if let Ok(bytes) = std::fs::read(WTMP) {
        let hint = UtmpLayout::for_machine(std::env::consts::ARCH);
        if let Some(layout) = detect_layout(&bytes, hint) {
            assert_eq!(layout, hint);
        }
    }
}

fn context(h: &Host) -> (Context, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel(64);
    let (_cfg, config) = watch::channel(Arc::new(Config::default()));
    let ctx = Context {
        host: HostRoot::new(h.root.path()),
        events: tx,
        metrics: Arc::new(Metrics::for_tests()),
        config,
        cancel: CancellationToken::new(),
        state_dir: h.state.path().to_path_buf(),
    };
    (ctx, rx)
}

async fn next(rx: &mut mpsc::Receiver<Event>) -> Payload {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .payload
}

#[tokio::test]
async fn the_task_reports_status_emits_logins_and_stops() {
    let h = Host::new();
    let (ctx, mut rx) = context(&h);
    let opts = LoginOptions {
        poll: Duration::from_millis(20),
        ..LoginOptions::default()
    };
    let task = tokio::spawn(run_with(ctx.clone(), opts.clone()));
    match next(&mut rx).await {
        Payload::CollectorStatus(s) => {
            assert_eq!(s[0].status, CollectorHealth::Degraded);
            assert!(
                s[0].message.contains("/var/log/auth.log"),
                "{}",
                s[0].message
            );
        }
        other => panic!("{other:?}"),
    }
    h.append(AUTH_LOG, ssh_fail("root", 9).as_bytes());
    match next(&mut rx).await {
        Payload::CollectorStatus(s) => assert_eq!(s[0].status, CollectorHealth::Up),
        other => panic!("{other:?}"),
    }
    match next(&mut rx).await {
        Payload::Login(l) => {
            assert_eq!(
                (l[0].user_name.as_deref(), l[0].user_id.as_deref()),
                (Some("root"), Some("0"))
            );
            assert_eq!(l[0].process_id, 77);
        }
        other => panic!("{other:?}"),
    }
    ctx.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
    // Restarted: nothing repeated, and no status while healthy.
    let (ctx, mut rx) = context(&h);
    let task = tokio::spawn(run_with(ctx.clone(), opts));
    h.append(AUTH_LOG, ssh_fail("second", 10).as_bytes());
    match next(&mut rx).await {
        Payload::Login(l) => assert_eq!(l[0].user_name.as_deref(), Some("second")),
        other => panic!("{other:?}"),
    }
    ctx.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
    assert!(rx.try_recv().is_err());
}
