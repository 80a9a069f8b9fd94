//! What an operator sees on the device, through the real binary: logs at `info` by default with
//! the start-up line, `--format pretty`, and `edgeguard status` against a running agent (healthy,
//! with a collector Down, with edgeHub unreachable, and with no agent at all).

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::agent::{Agent, ChildGuard, free_port};

fn edgeguard() -> Command {
    support::agent::command()
}

fn status(state: &Path, args: &[&str]) -> Output {
    edgeguard()
        .arg("status")
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .expect("edgeguard status runs")
}

/// Runs `edgeguard status` until `done` accepts its output or `timeout` passes; returns the last.
fn status_until(
    state: &Path,
    args: &[&str],
    timeout: Duration,
    done: impl Fn(&Output) -> bool,
) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        let out = status(state, args);
        if done(&out) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads the child's stderr until `pattern` appears or `timeout` passes.
fn stderr_until(child: &mut std::process::Child, pattern: &str, timeout: Duration) -> String {
    use std::io::Read;
    let mut err = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut seen = String::new();
    while !seen.contains(pattern) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Err(_) => break,
        }
    }
    seen
}

#[test]
fn logs_speak_at_info_when_rust_log_is_unset_or_empty() {
    for rust_log in [None, Some(""), Some("  ")] {
        let state = tempfile::tempdir().unwrap();
        let mut cmd = edgeguard();
        match rust_log {
            None => cmd.env_remove("RUST_LOG"),
            Some(v) => cmd.env("RUST_LOG", v),
        };
        let mut child = ChildGuard(
            cmd.args(["run", "--metrics-addr", "off", "--state-dir"])
                .arg(state.path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let seen = stderr_until(&mut child, "collector=system", Duration::from_secs(30));
        assert!(
            seen.contains(" INFO ") && seen.contains("edgeguard starting"),
            "RUST_LOG={rust_log:?}: {seen}"
        );
        for field in [
            "version=",
            "agent_id=",
            "sink=stdout",
            "mode=Run",
            "host_root=/",
        ] {
            assert!(
                seen.contains(field),
                "the start-up line names {field}: {seen}"
            );
        }
        assert!(
            seen.contains("collector=\"process\""),
            "the process collector says how it runs: {seen}"
        );
        // After the first round of snapshots, a line per collector with its state.
        for collector in ["process", "connection", "login", "system", "baseline"] {
            assert!(
                seen.lines().any(|l| l.contains("collector state:")
                    && l.contains(&format!("collector={collector} "))),
                "no state line for {collector}: {seen}"
            );
        }
    }
}

#[test]
fn snapshot_in_pretty_format_is_one_readable_line_per_event() {
    let state = tempfile::tempdir().unwrap();
    let out = edgeguard()
        .args(["snapshot", "--format", "pretty", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 4, "{stdout}");
    for line in &lines {
        let (date, rest) = line.split_at(19);
        assert!(
            chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%d %H:%M:%S").is_ok(),
            "a line starts with the local time: {line}"
        );
        assert!(
            !line.contains('{') || line.contains("sh -c"),
            "not JSON: {line}"
        );
        assert!(rest.starts_with(' '), "{line}");
    }
    let system = lines
        .iter()
        .find(|l| l[20..].starts_with("SystemInformation"))
        .expect("a SystemInformation line");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(system.contains(host.trim()), "{system}");
    assert!(
        !stdout.contains('\x1b'),
        "no colours when stdout is not a terminal"
    );
}

#[test]
fn status_reports_a_healthy_agent_and_exits_zero() {
    let state = tempfile::tempdir().unwrap();
    let agent = Agent::start(state.path(), &["--metrics-addr", "off"]);
    let out = status_until(state.path(), &[], Duration::from_secs(30), |o| {
        text(&o.stdout).contains("process ")
    });
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(
        report.contains("HEALTHY") && !report.contains("UNHEALTHY"),
        "{report}"
    );
    for line in [
        "sink: stdout",
        "messages:",
        "queued:",
        "collectors:",
        "dropped:",
        "alerts in the last hour:",
    ] {
        assert!(report.contains(line), "{line}: {report}");
    }
    let agent_id = std::fs::read_to_string(state.path().join("agent-id")).unwrap();
    assert!(report.contains(agent_id.trim()), "{report}");
    // The JSON form, as scripts read it.
    let out = status(state.path(), &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["agentId"], agent_id.trim());
    assert_eq!(v["collectors"]["process"], "Up");
    assert!(v["uptimeSeconds"].as_u64().is_some());
    assert!(v["connection"].is_null(), "no hub with the stdout sink");
    // The state directory and what is in it are the agent's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(state.path()), 0o700);
    for entry in std::fs::read_dir(state.path()).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    drop(agent);
}

#[test]
fn status_is_unhealthy_with_a_collector_down() {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = edgeguard();
    // The container collector cannot reach an engine at this path: Down.
    cmd.env(
        "EDGEGUARD_CONFIG_JSON",
        r#"{"dockerSocketPath": "/nonexistent/docker.sock"}"#,
    );
    let _agent = Agent::start_with(cmd, state.path(), &["--metrics-addr", "off"]);
    let out = status_until(state.path(), &[], Duration::from_secs(30), |o| {
        text(&o.stdout).contains("UNHEALTHY")
    });
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("collector container is Down"), "{report}");
}

#[test]
fn status_is_unhealthy_when_edgehub_stays_unreachable() {
    let state = tempfile::tempdir().unwrap();
    let key = base64_key();
    let mut cmd = edgeguard();
    cmd.env(
        "EDGEGUARD_CONNECTION_STRING",
        format!("HostName=localhost;DeviceId=dev1;ModuleId=edgeguard;SharedAccessKey={key}"),
    )
    .env("EDGEGUARD_HUB_PORT", free_port().to_string());
    let _agent = Agent::start_with(cmd, state.path(), &["--metrics-addr", "off"]);
    // Within the grace the link being down is not a problem...
    let out = status_until(state.path(), &[], Duration::from_secs(30), |o| {
        text(&o.stdout).contains("edgeHub: ")
    });
    let report = text(&out.stdout);
    assert!(report.contains("edgeHub: "), "{report}");
    assert!(out.status.success(), "{report}");
    // ...past it, it is.
    let out = status_until(
        state.path(),
        &["--hub-grace", "1"],
        Duration::from_secs(30),
        |o| text(&o.stdout).contains("UNHEALTHY"),
    );
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("edgeHub unreachable for"), "{report}");
}

#[test]
fn status_without_an_agent_says_so_and_exits_one() {
    let state = tempfile::tempdir().unwrap();
    let out = status(state.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("no agent answers"), "{err}");
}

fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}
