//! The login collector on a journal-only host, end to end: the real binary, a host root with
//! no auth.log and a real journal file (written by systemd's `systemd-journal-remote`, which
//! scripts/test.sh installs), sshd failures appended while the agent runs, and the Login events
//! it prints: one per attempt, with the journal as their source; nothing from before the start.

mod support;

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::agent::Agent;

const REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const MACHINE: &str = "0123456789abcdef0123456789abcdef";

/// Appends entries (identifier, pid, message) to the journal file at `path`.
fn append(path: &Path, entries: &[(&str, u32, &str)]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let mut export = String::new();
    for (i, (ident, pid, msg)) in entries.iter().enumerate() {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={MACHINE}\n_HOSTNAME=edge\nSYSLOG_IDENTIFIER={ident}\n_PID={pid}\nMESSAGE={msg}\n\n",
            now + i as u128,
            now + i as u128
        ));
    }
    let mut child = Command::new(REMOTE)
        .arg("-o")
        .arg(path)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{REMOTE} ({e}): apt-get install systemd-journal-remote"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn logins(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .flat_map(|m| m["Events"].as_array().into_iter().flatten())
        .filter(|e| e["Name"] == "Login")
        .flat_map(|e| e["Payload"].as_array().into_iter().flatten())
        .collect()
}

#[test]
fn sshd_failures_from_the_journal_are_reported_once_each() {
    let host = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host.path().join("etc")).unwrap();
    std::fs::write(
        host.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    let dir = host.path().join("var/log/journal").join(MACHINE);
    std::fs::create_dir_all(&dir).unwrap();
    let journal = dir.join("system.journal");
    // History from before the first start: not reported.
    append(
        &journal,
        &[(
            "sshd",
            10,
            "Failed password for root from 192.0.2.99 port 1 ssh2",
        )],
    );
    let config = state.path().join("twin.json");
    std::fs::write(
        &config,
        r#"{"highPriorityMessageFrequency":"PT1S","lowPriorityMessageFrequency":"PT1S"}"#,
    )
    .unwrap();
    let agent = Agent::start(
        state.path(),
        &[
            "--host-root",
            host.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--metrics-addr",
            "off",
        ],
    );
    // The collector saves its journal positions once it has looked at the files.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.path().join("login-journal.json").exists() {
        assert!(
            Instant::now() < deadline,
            "the journal was not looked at in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    append(
        &journal,
        &[
            (
                "sshd",
                20,
                "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7  user=root",
            ),
            (
                "sshd",
                20,
                "Failed password for root from 198.51.100.7 port 41234 ssh2",
            ),
            (
                "sshd",
                21,
                "Accepted publickey for root from 198.51.100.8 port 41235 ssh2: ED25519 SHA256:k",
            ),
            (
                "sudo",
                22,
                "    root : TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=/usr/bin/id",
            ),
        ],
    );
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while logins(&messages).len() < 3 && Instant::now() < deadline {
        if let Some(m) = agent.next_message(Duration::from_millis(200)) {
            messages.push(m);
        }
    }
    // Anything more (a second copy of the attempt) would arrive within a few polls.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if let Some(m) = agent.next_message(Duration::from_millis(200)) {
            messages.push(m);
        }
    }
    let (ok, rest, stderr) = agent.stop(Duration::from_secs(20));
    messages.extend(rest);
    assert!(ok, "agent exit: {stderr}");
    let got: Vec<_> = logins(&messages)
        .into_iter()
        .map(|r| {
            (
                r["Operation"].as_str().unwrap_or_default().to_string(),
                r["Result"].as_str().unwrap_or_default().to_string(),
                r["RemoteAddress"].as_str().unwrap_or_default().to_string(),
                r["ExtraDetails"]["Source"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let journal = |op: &str, result: &str, addr: &str| {
        (
            op.to_string(),
            result.to_string(),
            addr.to_string(),
            "journal".to_string(),
        )
    };
    assert_eq!(
        got,
        vec![
            journal("sshd:password", "Fail", "198.51.100.7"),
            journal("sshd:publickey", "Success", "198.51.100.8"),
            journal("sudo", "Success", ""),
        ],
        "{messages:#?}"
    );
}
