//! The spool survives SIGKILL mid-stream and damaged files.
//!
//! The crash test runs this test binary again as a child ("writer" mode, selected by an
//! environment variable) that appends numbered messages to a spool and prints each id once
//! `append` has returned `Ok`, flushed, so the parent knows exactly what was promised. The
//! parent kills the child with SIGKILL at a random point, several times over the same file,
//! and checks after each kill that every promised message is there with its exact body, that
//! at most the one append in progress shows up besides, that ids keep increasing across
//! restarts, and that the file opens without being set aside.

use edgeguard::event::Priority;
use edgeguard::pipeline::spool::{self, Spool};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set to the spool path in the child; selects writer mode.
const CHILD_PATH: &str = "EDGEGUARD_SPOOL_CRASH_PATH";
/// The child's run number, which seeds the bodies it writes.
const CHILD_RUN: &str = "EDGEGUARD_SPOOL_CRASH_RUN";
/// Large enough that nothing is evicted: eviction is covered by the unit tests.
const MAX_BYTES: usize = 64 << 20;
/// Children killed, one after the other, over the same file.
const RUNS: u64 = 4;
/// The child stops by itself after this long, should the parent fail to kill it.
const CHILD_LIMIT: Duration = Duration::from_secs(20);

fn body(run: u64, n: u64) -> Vec<u8> {
    let len = ((run * 7919 + n * 104_729) % 20_000 + 1) as usize;
    (0..len)
        .map(|i| (i as u64 ^ (run << 5) ^ n.wrapping_mul(31)) as u8)
        .collect()
}

fn priority(n: u64) -> Priority {
    if n.is_multiple_of(5) {
        Priority::High
    } else {
        Priority::Low
    }
}

fn events(n: u64) -> usize {
    (n % 7 + 1) as usize
}

/// The message the child appended as number `n`, and whether it removes the previous one after
/// it (every third append removes its predecessor, to crash during removals too).
fn removes_previous(n: u64) -> bool {
    n % 3 == 2
}

/// Writer mode: does nothing unless the parent started this binary with `CHILD_PATH` set.
#[test]
fn writer_child() {
    let Ok(path) = std::env::var(CHILD_PATH) else {
        return;
    };
    let run: u64 = std::env::var(CHILD_RUN).unwrap().parse().unwrap();
    let mut spool = Spool::open(&path, MAX_BYTES).unwrap();
    // Direct writes to fd 1 are not captured by the test harness.
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n@@ OPEN {}", spool.next_id()).unwrap();
    out.flush().unwrap();
    let started = Instant::now();
    let mut prev = None;
    for n in 0.. {
        if started.elapsed() > CHILD_LIMIT {
            break;
        }
        let a = spool.append(priority(n), &body(run, n), events(n)).unwrap();
        writeln!(out, "@@ A {n} {}", a.id).unwrap();
        out.flush().unwrap();
        if removes_previous(n) {
            if let Some(p) = prev {
                spool.remove(p).unwrap();
                writeln!(out, "@@ R {p}").unwrap();
                out.flush().unwrap();
            }
        }
        prev = Some(a.id);
    }
}

/// What one child promised before it died.
#[derive(Debug, Default)]
struct Promised {
    open_next_id: u64,
    /// (n, id) of every append that returned Ok.
    appended: Vec<(u64, u64)>,
    removed: BTreeSet<u64>,
}

fn run_child(path: &Path, run: u64, kill_after: usize, extra_delay: Duration) -> Promised {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "writer_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_PATH, path)
        .env(CHILD_RUN, run.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut promised = Promised::default();
    let mut killed = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        // The harness may print on the same line; ours start with a marker.
        let ours = line.split_once("@@ ").map_or("", |(_, rest)| rest);
        let parts: Vec<&str> = ours.split_whitespace().collect();
        match parts.as_slice() {
            ["OPEN", next] => promised.open_next_id = next.parse().unwrap(),
            ["A", n, id] => promised
                .appended
                .push((n.parse().unwrap(), id.parse().unwrap())),
            ["R", id] => {
                promised.removed.insert(id.parse().unwrap());
            }
            _ => {}
        }
        if !killed && promised.appended.len() >= kill_after {
            std::thread::sleep(extra_delay);
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child ended by itself: {status:?}");
    assert!(!status.success());
    promised
}

/// Expected content of a message, by id.
type Model = BTreeMap<u64, (u64, u64)>;

fn check(spool: &mut Spool, must: &Model, may: &Model) {
    let present: BTreeMap<u64, spool::Entry> = spool.pending().map(|e| (e.id, e)).collect();
    for (id, &(run, n)) in must {
        let e = present
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged message {id} (run {run}, n {n}) is missing"));
        assert_eq!((e.priority, e.events), (priority(n), events(n)), "id {id}");
        assert_eq!(&*spool.read(*id).unwrap(), &body(run, n)[..], "id {id}");
    }
    for (id, e) in &present {
        if must.contains_key(id) {
            continue;
        }
        let &(run, n) = may
            .get(id)
            .unwrap_or_else(|| panic!("message {id} was never appended: {e:?}"));
        // A message that was in progress is there whole, or not at all.
        assert_eq!((e.priority, e.events), (priority(n), events(n)), "id {id}");
        assert_eq!(&*spool.read(*id).unwrap(), &body(run, n)[..], "id {id}");
    }
}

#[test]
fn every_acknowledged_append_survives_sigkill() {
    if std::env::var(CHILD_PATH).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(spool::FILE_NAME);
    let started = Instant::now();
    let mut must = Model::new();
    let mut highest_seen = 0u64;
    let mut total_appends = 0;
    for run in 1..=RUNS {
        let kill_after = fastrand::usize(10..120);
        let delay = Duration::from_micros(fastrand::u64(0..3000));
        let p = run_child(&path, run, kill_after, delay);
        total_appends += p.appended.len();

        // Ids keep increasing across restarts, past anything an earlier child may have written.
        assert!(p.open_next_id > highest_seen, "run {run}: ids went back");
        let ids: Vec<u64> = p.appended.iter().map(|a| a.1).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "run {run}: {ids:?}");
        assert_eq!(ids.first(), Some(&p.open_next_id));

        let mut may = Model::new();
        let &(last_n, last_id) = p.appended.last().unwrap();
        for (i, &(n, id)) in p.appended.iter().enumerate() {
            if p.removed.contains(&id) {
                continue;
            }
            // The child may have died while removing the one before its last append.
            let removing = i + 2 == p.appended.len() && removes_previous(last_n);
            if removing {
                may.insert(id, (run, n));
            } else {
                must.insert(id, (run, n));
            }
        }
        // The append in progress when the child died.
        may.insert(last_id + 1, (run, last_n + 1));

        let mut spool = Spool::open(&path, MAX_BYTES).unwrap();
        assert_eq!(spool.set_aside(), None, "a crash is not corruption");
        assert_eq!(spool.repaired(), 0);
        check(&mut spool, &must, &may);
        // What turned out to be there is now promised too.
        for (id, v) in may {
            if spool.get(id).is_some() {
                must.insert(id, v);
            }
        }
        assert_eq!(spool.len(), must.len());
        highest_seen = spool.next_id() - 1;
        assert!(highest_seen >= last_id);
        // A fresh append gets a new, higher id.
        let a = spool.append(Priority::Low, b"probe", 1).unwrap();
        assert!(a.id > last_id);
        spool.remove(a.id).unwrap();
        highest_seen = a.id;
    }
    eprintln!(
        "{total_appends} appends over {RUNS} kills in {:?}",
        started.elapsed()
    );
}

fn filled(i: u64, len: usize) -> Vec<u8> {
    body(0, i).into_iter().cycle().take(len).collect()
}

/// Writes a spool of `n` records of `len` bytes and closes it.
fn fill(path: &Path, n: u64, len: usize) {
    let mut s = Spool::open(path, MAX_BYTES).unwrap();
    for i in 0..n {
        s.append(priority(i), &filled(i, len), 1).unwrap();
    }
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

fn set_aside_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".redb.corrupt-"))
        .collect()
}

/// After damage, the spool either set the file aside and started empty, or opened it and
/// every record it reports reads back exactly as written.
fn opens_safely(path: &Path, n: u64, len: usize) -> bool {
    let mut s = Spool::open(path, MAX_BYTES).unwrap();
    let aside = s.set_aside().map(Path::to_path_buf);
    match aside {
        Some(aside) => {
            assert!(s.is_empty());
            assert!(aside.exists());
            assert!(path.exists(), "a fresh spool is created in its place");
            let a = s.append(Priority::High, b"after", 1).unwrap();
            assert_eq!(&*s.read(a.id).unwrap(), b"after");
            true
        }
        None => {
            assert!(s.len() as u64 <= n);
            for e in s.pending().collect::<Vec<_>>() {
                let i = e.id - 1;
                assert_eq!(&*s.read(e.id).unwrap(), &filled(i, len)[..]);
            }
            false
        }
    }
}

#[test]
fn bytes_overwritten_in_the_middle_set_the_file_aside() {
    if std::env::var(CHILD_PATH).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(spool::FILE_NAME);
    fill(&path, 200, 3000);
    let len = std::fs::metadata(&path).unwrap().len();
    overwrite(&path, len / 2, &[0xA5; 16 << 10]);
    // Whatever the bytes hit, opening must not panic and must not return damaged records.
    let set_aside = opens_safely(&path, 200, 3000);
    eprintln!("middle overwrite: set aside = {set_aside}");
    assert_eq!(set_aside_files(dir.path()).len(), usize::from(set_aside));
}

#[test]
fn a_file_overwritten_past_its_header_is_set_aside_and_the_spool_starts_empty() {
    if std::env::var(CHILD_PATH).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(spool::FILE_NAME);
    fill(&path, 50, 3000);
    let len = std::fs::metadata(&path).unwrap().len();
    overwrite(&path, 4096, &vec![0x5A; (len - 4096) as usize]);
    assert!(opens_safely(&path, 50, 3000), "damage must be detected");
    assert_eq!(set_aside_files(dir.path()).len(), 1);
}

#[test]
fn a_truncated_or_garbled_file_opens_without_panicking() {
    if std::env::var(CHILD_PATH).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(spool::FILE_NAME);
    fill(&path, 100, 3000);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    opens_safely(&path, 100, 3000);

    // The header itself.
    std::fs::remove_file(&path).unwrap();
    fill(&path, 10, 100);
    overwrite(&path, 0, &[0xFF; 512]);
    assert!(opens_safely(&path, 10, 100));
}

/// Appends per second (each one durable commit) and file size under churn; run with
/// `cargo test --test spool_crash -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_append_rate() {
    for len in [1024usize, 16 << 10, 256 << 10] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(spool::FILE_NAME);
        let mut s = Spool::open(&path, 2_560_000).unwrap();
        let body = vec![7u8; len];
        let n = 500;
        let started = Instant::now();
        for _ in 0..n {
            s.append(Priority::Low, &body, 1).unwrap();
        }
        let append = started.elapsed();
        let started = Instant::now();
        let ids: Vec<u64> = s.pending().map(|e| e.id).collect();
        let removed = ids.len();
        for id in ids {
            s.remove(id).unwrap();
        }
        let remove = started.elapsed();
        // Churn: a steady backlog with appends and removals.
        for i in 0..2000u64 {
            let a = s.append(Priority::Low, &body, 1).unwrap();
            if i % 2 == 1 || s.bytes() > 1_000_000 {
                let first = s.pending().next().unwrap().id;
                s.remove(first).unwrap();
            }
            let _ = a;
        }
        let size = std::fs::metadata(&path).unwrap().len();
        eprintln!(
            "body {len} B: {:.0} appends/s, {:.0} removes/s; file {} KiB after 2000 churn appends (held {} KiB)",
            n as f64 / append.as_secs_f64(),
            removed as f64 / remove.as_secs_f64(),
            size / 1024,
            s.bytes() / 1024,
        );
    }
}

/// A full disk fails appends with a transient error, loses nothing already stored, and the
/// spool works again once there is room (redb must be reopened after an I/O error; the spool
/// does that itself). Needs root to mount a small tmpfs:
/// `cargo test --test spool_crash -- --ignored full_disk`.
#[test]
#[ignore = "needs root: mounts a 1 MiB tmpfs"]
fn a_full_disk_fails_appends_until_there_is_room_again() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "mounting a tmpfs needs root");
    let result = std::panic::catch_unwind(|| {
        let filler = dir.path().join("filler");
        std::fs::write(&filler, vec![0u8; 300 << 10]).unwrap();
        let path = dir.path().join(spool::FILE_NAME);
        let mut s = Spool::open(&path, MAX_BYTES).unwrap();
        let mut stored = Vec::new();
        let err = loop {
            let n = stored.len() as u64;
            match s.append(priority(n), &filled(n, 16 << 10), events(n)) {
                Ok(a) => stored.push((a.id, n)),
                Err(e) => break e,
            }
            assert!(stored.len() < 1000, "the disk never filled");
        };
        eprintln!("full after {} appends: {err:?}", stored.len());
        assert!(matches!(err, spool::Error::Write(_)), "{err:?}");
        assert!(err.is_transient());
        // Still full: still failing, nothing lost.
        assert!(s.append(Priority::Low, &[1; 16 << 10], 1).is_err());
        std::fs::remove_file(&filler).unwrap();
        let a = s.append(Priority::High, b"after", 1).unwrap();
        assert!(a.id > stored.last().unwrap().0);
        for &(id, n) in &stored {
            assert_eq!(&*s.read(id).unwrap(), &filled(n, 16 << 10)[..]);
        }
        drop(s);
        let s = Spool::open(&path, MAX_BYTES).unwrap();
        assert_eq!(s.len(), stored.len() + 1);
    });
    let _ = Command::new("umount").arg(dir.path()).status();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
