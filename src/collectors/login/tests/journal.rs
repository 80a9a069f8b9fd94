//! The systemd journal: real journal files written by systemd's own `systemd-journal-remote`
//! from the export format (Debian: `apt-get install systemd-journal-remote`; scripts/test.sh
//! installs it), checked against `journalctl --file`.

use super::*;
use crate::event::Login;
use std::path::Path;
use std::process::{Command, Stdio};

const REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const MACHINE: &str = "0123456789abcdef0123456789abcdef";

/// One journal entry in the export format: (realtime µs, identifier, pid, message).
type E<'a> = (u64, &'a str, u32, &'a str);

/// Appends `entries` to the journal file at `path` (created when missing) with
/// systemd-journal-remote; `compact` picks the layout.
fn write_journal(path: &Path, entries: &[E<'_>], compact: bool) {
    assert!(
        Path::new(REMOTE).exists(),
        "{REMOTE} is missing: apt-get install systemd-journal-remote"
    );
    let mut export = String::new();
    for (i, (t, ident, pid, msg)) in entries.iter().enumerate() {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={t}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={MACHINE}\n_HOSTNAME=edge\nSYSLOG_IDENTIFIER={ident}\n_COMM={ident}\n_PID={pid}\nMESSAGE={msg}\n\n",
            1000 + i
        ));
    }
    let mut child = Command::new(REMOTE)
        .arg("-o")
        .arg(path)
        .arg("-")
        .env("SYSTEMD_JOURNAL_COMPACT", if compact { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running systemd-journal-remote");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// journalctl's view of a file: the MESSAGE of every entry, in order.
fn journalctl_messages(path: &Path) -> Vec<String> {
    let out = Command::new("journalctl")
        .arg("--file")
        .arg(path)
        .args(["-o", "cat", "--no-pager"])
        .output()
        .expect("journalctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

const T: u64 = 1_795_000_000_000_000;

fn sample() -> Vec<E<'static>> {
    vec![
        (
            T,
            "sshd",
            100,
            "Accepted publickey for alice from 192.0.2.1 port 50000 ssh2: ED25519 SHA256:k",
        ),
        (
            T + 1,
            "CRON",
            7,
            "pam_unix(cron:session): session opened for user root",
        ),
        (
            T + 2,
            "sshd",
            101,
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7  user=root",
        ),
        (
            T + 3,
            "sshd",
            101,
            "Failed password for root from 198.51.100.7 port 41234 ssh2",
        ),
        (
            T + 4,
            "sudo",
            102,
            "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
        ),
    ]
}

#[test]
fn reads_real_journal_files_in_both_layouts() {
    for compact in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.journal");
        write_journal(&path, &sample(), compact);
        let jf = JournalFile::open(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(jf.header.compact(), compact);
        assert_eq!(jf.header.n_entries, 5);
        let mut walk = Walk::default();
        let got = jf.read_entries(&mut walk, 100, 0).unwrap();
        let messages: Vec<_> = got
            .entries
            .iter()
            .map(|e| e.message.clone().unwrap())
            .collect();
        assert_eq!(messages, journalctl_messages(&path), "compact={compact}");
        let e = &got.entries[3];
        assert_eq!(
            (
                e.identifier.as_deref(),
                e.comm.as_deref(),
                e.pid,
                e.hostname.as_deref()
            ),
            (Some("sshd"), Some("sshd"), Some(101), Some("edge"))
        );
        assert_eq!((e.seqnum, e.realtime), (4, T + 3));
        let seq: Vec<_> = got.entries.iter().map(|e| e.seqnum).collect();
        assert_eq!(seq, vec![1, 2, 3, 4, 5]);
        // Nothing new: nothing read; appended entries: only those.
        assert!(
            jf.read_entries(&mut walk, 100, 0)
                .unwrap()
                .entries
                .is_empty()
        );
        write_journal(
            &path,
            &[(T + 9, "su", 103, "(to root) alice on pts/0")],
            compact,
        );
        let mut jf = jf;
        jf.refresh().unwrap();
        let got = jf.read_entries(&mut walk, 100, 0).unwrap();
        assert_eq!(got.entries.len(), 1);
        assert_eq!(
            got.entries[0].message.as_deref(),
            Some("(to root) alice on pts/0")
        );
        // Skipping what was read before a restart.
        let mut walk = Walk::default();
        let got = jf.read_entries(&mut walk, 100, 5).unwrap();
        assert_eq!(got.entries.len(), 1);
        assert_eq!(walk.taken, 6);
    }
}

#[test]
fn long_compressed_messages_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.journal");
    let long = format!("Invalid user {} from 192.0.2.9 port 1", "x".repeat(4000));
    write_journal(
        &path,
        &[
            (T, "sshd", 5, &long),
            (T + 1, "sshd", 6, "Invalid user a from 192.0.2.9 port 1"),
        ],
        true,
    );
    let jf = JournalFile::open(std::fs::File::open(&path).unwrap()).unwrap();
    let got = jf.read_entries(&mut Walk::default(), 100, 0).unwrap();
    assert_eq!(got.entries.len(), 2);
    assert_eq!(got.entries[0].message, None);
    assert_eq!(
        got.compressed_skipped, 1,
        "journald compresses fields over 512 bytes"
    );
    assert!(got.entries[1].message.is_some());
}

fn journal_root() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("var/log/journal").join(MACHINE);
    std::fs::create_dir_all(&dir).unwrap();
    (root, dir)
}

fn poll_logins(f: &mut LoginFollower) -> Vec<Login> {
    let mut all = Vec::new();
    loop {
        let b = f.poll();
        all.extend(b.logins);
        if !b.more {
            break;
        }
    }
    all
}

fn summary(v: &[Login]) -> Vec<(String, LoginResult, Option<String>)> {
    v.iter()
        .map(|l| (l.operation.clone(), l.result, l.user_name.clone()))
        .collect()
}

#[test]
fn follows_the_journal_when_there_is_no_auth_log() {
    let (root, dir) = journal_root();
    let state = tempfile::tempdir().unwrap();
    let host = HostRoot::new(root.path());
    let active = dir.join("system.journal");
    write_journal(&active, &sample(), true);
    // A user journal is not read.
    write_journal(
        &dir.join("user-1000.journal"),
        &[(
            T,
            "sshd",
            1,
            "Failed password for bob from 192.0.2.3 port 1 ssh2",
        )],
        true,
    );

    let mut f = LoginFollower::open(host.clone(), state.path(), StartAt::Beginning);
    let got = poll_logins(&mut f);
    assert_eq!(
        summary(&got),
        vec![
            (
                "sshd:publickey".into(),
                LoginResult::Success,
                Some("alice".into())
            ),
            // One attempt: PAM's line and sshd's line.
            (
                "sshd:password".into(),
                LoginResult::Fail,
                Some("root".into())
            ),
            ("sudo".into(), LoginResult::Success, Some("alice".into())),
        ]
    );
    assert_eq!(got[1].extra_details["Source"], JOURNAL_SOURCE);
    assert_eq!(got[1].remote_address, Some("198.51.100.7".parse().unwrap()));
    assert_eq!(got[1].process_id, 101);
    assert_eq!(got[2].extra_details["Command"], "/usr/bin/id");
    assert!(f.present().contains(&JOURNAL_SOURCE));
    f.save().unwrap();
    drop(f);

    // A restart neither repeats nor skips: one new entry, read once.
    write_journal(
        &active,
        &[(T + 10, "sshd", 200, "Invalid user x from 192.0.2.4 port 2")],
        true,
    );
    let mut f = LoginFollower::open(host.clone(), state.path(), StartAt::Beginning);
    assert!(
        poll_logins(&mut f).is_empty(),
        "held until its connection ends"
    );
    let held = f.flush_held();
    assert_eq!(
        summary(&held),
        vec![(
            "sshd:invalid-user".into(),
            LoginResult::Fail,
            Some("x".into())
        )]
    );
    f.save().unwrap();

    // Rotation: journald renames the active file and starts a new one.
    let archived = dir.join(format!(
        "system@{MACHINE}-0000000000000001-0006000000000000.journal"
    ));
    std::fs::rename(&active, &archived).unwrap();
    write_journal(
        &archived,
        &[(
            T + 20,
            "sshd",
            300,
            "Failed password for root from 192.0.2.5 port 3 ssh2",
        )],
        true,
    );
    write_journal(
        &active,
        &[(
            T + 30,
            "sshd",
            301,
            "Failed password for admin from 192.0.2.6 port 4 ssh2",
        )],
        true,
    );
    let got = poll_logins(&mut f);
    assert_eq!(
        summary(&got),
        vec![
            (
                "sshd:password".into(),
                LoginResult::Fail,
                Some("root".into())
            ),
            (
                "sshd:password".into(),
                LoginResult::Fail,
                Some("admin".into())
            ),
        ]
    );
    f.save().unwrap();
    drop(f);
    let mut f = LoginFollower::open(host.clone(), state.path(), StartAt::Beginning);
    assert!(
        poll_logins(&mut f).is_empty(),
        "both files were read before the restart"
    );

    // With an auth.log, the journal is not read (rsyslog copied the same lines there).
    std::fs::create_dir_all(root.path().join("var/log")).unwrap();
    std::fs::write(root.path().join("var/log/auth.log"), "").unwrap();
    write_journal(
        &active,
        &[(
            T + 40,
            "sshd",
            302,
            "Failed password for admin from 192.0.2.6 port 4 ssh2",
        )],
        true,
    );
    let mut f = LoginFollower::open(host, state.path(), StartAt::Beginning);
    assert!(poll_logins(&mut f).is_empty());
}

#[test]
fn first_start_begins_at_the_end_of_the_journal() {
    let (root, dir) = journal_root();
    let state = tempfile::tempdir().unwrap();
    let active = dir.join("system.journal");
    write_journal(&active, &sample(), false);
    let mut f = LoginFollower::open(HostRoot::new(root.path()), state.path(), StartAt::End);
    assert!(poll_logins(&mut f).is_empty());
    write_journal(
        &active,
        &[(
            T + 10,
            "sshd",
            9,
            "Failed password for root from 192.0.2.5 port 3 ssh2",
        )],
        false,
    );
    let got = poll_logins(&mut f);
    assert_eq!(
        summary(&got),
        vec![(
            "sshd:password".into(),
            LoginResult::Fail,
            Some("root".into())
        )]
    );
}

/// A real file with bytes changed all over it (and cut at many lengths): every read ends in
/// entries or an error, never a panic or a hang.
#[test]
fn corrupt_journal_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.journal");
    write_journal(&path, &sample(), true);
    let good = std::fs::read(&path).unwrap();
    // The part of the file in use (journald preallocates the rest).
    let used = {
        let jf = JournalFile::open(std::fs::File::open(&path).unwrap()).unwrap();
        (jf.header.header_size + jf.header.arena_size) as usize
    };
    let bad = dir.path().join("bad.journal");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut errors = 0;
    for round in 0..400 {
        let mut b = good[..used.min(good.len())].to_vec();
        if round % 4 == 0 {
            b.truncate((next() as usize) % b.len());
        } else {
            for _ in 0..1 + round % 8 {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
        }
        std::fs::write(&bad, &b).unwrap();
        match JournalFile::open(std::fs::File::open(&bad).unwrap()) {
            Ok(jf) => {
                let mut walk = Walk::default();
                for _ in 0..10 {
                    match jf.read_entries(&mut walk, 3, 0) {
                        Ok(e) if e.entries.is_empty() && !e.more => break,
                        Ok(_) => {}
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors > 50, "corruption was noticed ({errors} of 400)");

    // Through the follower: a corrupt file is counted once, not every poll.
    let (root, jdir) = journal_root();
    let mut b = good.clone();
    b[176..184].copy_from_slice(&u64::MAX.to_le_bytes()); // entry_array_offset
    std::fs::write(jdir.join("system.journal"), &b).unwrap();
    std::fs::write(jdir.join("junk.journal"), b"LPKSHHRH").unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut f = LoginFollower::open(HostRoot::new(root.path()), state.path(), StartAt::Beginning);
    let first = f.poll();
    assert_eq!(first.journal_corrupt, 2);
    assert_eq!(f.poll().journal_corrupt, 0);
}

/// The fuzz target's seeds (fuzz/make_seeds.py builds them to the format document, without
/// hash tables) read as the real files do.
#[test]
fn fuzz_seed_journals_read() {
    for name in ["regular", "compact"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/login_journal")
            .join(name);
        let jf = JournalFile::open(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(jf.header.compact(), name == "compact");
        let got = jf.read_entries(&mut Walk::default(), 10, 0).unwrap();
        let seen: Vec<_> = got
            .entries
            .iter()
            .map(|e| {
                (
                    e.seqnum,
                    e.identifier.as_deref(),
                    e.pid,
                    e.message.as_deref().map(|m| &m[..6]),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, Some("sshd"), Some(1234), Some("Failed")),
                (2, Some("sshd"), Some(1234), Some("Accept"))
            ],
            "{name}"
        );
    }
}
