//! A hostile host root cannot hurt the agent (issue 18): the real binary, as root, over a host
//! root built the way a local user could shape the files the collectors read.
//!
//! The root holds FIFOs where `/etc/passwd`, `/etc/ssh/sshd_config`, `/var/log/btmp` and
//! `/root/.ssh/authorized_keys` should be; symlink loops; symlinks out of the root (absolute,
//! through `..`, and through the agent's own `/proc/self/root` magic link) to a file outside it
//! whose distinctive content must never appear; links to a character device (`/dev/zero`, a real
//! one inside the root) and to `/proc/self/mem`; a 10 GB sparse `/var/log/auth.log` that a thread
//! keeps appending sshd failures to, and an `/etc/group` that keeps growing; names with newlines
//! and invalid UTF-8. A real procfs is mounted at the root's `/proc` (in a private mount
//! namespace of the agent's own: `unshare --mount`), so the magic links are real.
//!
//! Asserted: `snapshot` finishes within a minute and exits 0 (with openat2 and with the fallback
//! walk); `run` keeps running with its RSS under 64 MiB, follows the growing log, and stops on
//! SIGTERM within seconds; every message is schema-valid JSON; nothing of the file outside the
//! root (nor of the test machine's own `/etc/shadow`) appears anywhere; and every kind of skip
//! is reported: in `SystemInformation.Unavailable`, in the baseline checks' `Error`, in the log,
//! and in `edgeguard_errors_total{component="host"}`.

mod support;

use serde_json::Value;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::agent::{ChildGuard, free_port};
use support::schema::{errors, message_validator};

const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(60);
const STOP_DEADLINE: Duration = Duration::from_secs(20);
const RUN_FOR: Duration = Duration::from_secs(20);
const RSS_LIMIT_KB: u64 = 64 * 1024;
/// The appender stops growing files beyond this, whatever happens.
const MAX_GROWTH: u64 = 256 << 20;

/// The hostile root, the file outside it, and the thread that keeps files growing.
struct Hostile {
    root: tempfile::TempDir,
    _outside: tempfile::TempDir,
    marker: String,
    stop: Arc<AtomicBool>,
    appender: Option<JoinHandle<()>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.appender.take() {
            let _ = t.join();
        }
    }
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {}",
        path.display()
    );
}

fn mknod_zero(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path; the test runs as root.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 5)) };
    assert_eq!(rc, 0, "mknod {}", path.display());
}

fn build() -> Hostile {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (device nodes, a procfs mount in a private namespace)");
    }
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let marker = format!("EGSECRET{:x}{}", nanos, std::process::id());
    let secret = outside.path().join("secret");
    std::fs::write(
        &secret,
        format!("NAME={marker}\nPRETTY_NAME={marker}\n{marker}\n{marker}:x:0:0::/:/bin/sh\n"),
    )
    .unwrap();
    let r = root.path();
    let at = |p: &str| {
        let p = r.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    };
    let link = |target: &str, p: &str| symlink(target, at(p)).unwrap();
    let secret_path = secret.to_str().unwrap();

    std::fs::create_dir_all(r.join("proc")).unwrap();
    // Out of the root: through `..`, absolutely, and through the agent's own root (magic).
    link(
        &format!("../../../../../../../../..{secret_path}"),
        "etc/os-release",
    );
    link(
        &format!("/proc/self/root{secret_path}"),
        "usr/lib/os-release",
    );
    link(secret_path, "etc/hostname");
    // The test machine's own shadow is outside the root: these lead to the root's `/etc/shadow`,
    // itself a link into the agent's own environment, a kernel file from outside /proc.
    link("/etc/shadow", "etc/gshadow");
    link("/etc/shadow", "home/u/.bash_history");
    link("/proc/self/environ", "etc/shadow");
    // FIFOs.
    for p in [
        "etc/passwd",
        "etc/ssh/sshd_config",
        "root/.ssh/authorized_keys",
        "var/log/btmp",
    ] {
        mkfifo(&at(p));
    }
    // A loop, devices, the agent's memory.
    link("/etc/docker/daemon.json", "etc/docker/daemon.json");
    mknod_zero(&at("dev/zero"));
    link("/dev/zero", "var/log/secure");
    link("/dev/zero", "sys/class/dmi/id/bios_version");
    link("/proc/self/mem", "var/log/wtmp");
    // Too large: a sparse 8 MiB login.defs, a sparse 10 GB auth.log (which also grows).
    File::create(at("etc/login.defs"))
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    File::create(at("var/log/auth.log"))
        .unwrap()
        .set_len(10 << 30)
        .unwrap();
    std::fs::write(at("etc/group"), "root:x:0:\n").unwrap();
    // Names with newlines and invalid UTF-8, in walked trees.
    std::fs::create_dir_all(at("tmp/x")).unwrap();
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let weird = r
        .join("tmp")
        .join(OsStr::from_bytes(b"evil\nname \xff\xfe"));
    std::fs::create_dir(&weird).unwrap();
    std::fs::set_permissions(&weird, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(
        r.join("var/log").join(OsStr::from_bytes(b"auth.log\n\xff")),
        "x",
    )
    .unwrap();
    link("/var/tmp", "var/tmp");
    mkfifo(&r.join("tmp").join(OsStr::from_bytes(b"fifo\n\xfe")));

    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let stop = stop.clone();
        let auth = r.join("var/log/auth.log");
        let group = r.join("etc/group");
        std::thread::spawn(move || append_until(&stop, &auth, &group))
    };
    Hostile {
        root,
        _outside: outside,
        marker,
        stop,
        appender: Some(appender),
    }
}

/// Appends sshd failures to the auth log and groups to the group file, in bursts, until told
/// to stop or [`MAX_GROWTH`] was written.
fn append_until(stop: &AtomicBool, auth: &Path, group: &Path) {
    let mut auth = std::fs::OpenOptions::new().append(true).open(auth).unwrap();
    let mut group = std::fs::OpenOptions::new()
        .append(true)
        .open(group)
        .unwrap();
    let mut written = 0u64;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && written < MAX_GROWTH {
        let mut lines = String::new();
        let mut groups = String::new();
        for _ in 0..500 {
            n += 1;
            lines.push_str(&format!(
                "Nov 23 17:42:57 edge sshd[77]: Failed password for invalid user egu{n} from 198.51.100.{} port {} ssh2\n",
                n % 250,
                1024 + n % 60000
            ));
            groups.push_str(&format!("g{n}:x:{}:\n", 10_000 + n));
        }
        auth.write_all(lines.as_bytes()).unwrap();
        group.write_all(groups.as_bytes()).unwrap();
        written += (lines.len() + groups.len()) as u64;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `edgeguard ARGS…` in a private mount namespace with a procfs mounted at the root's `/proc`.
fn agent(root: &Path, walk: bool, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t proc proc "$0/proc" && exec "$@""#)
        .arg(root)
        .arg(env!("CARGO_BIN_EXE_edgeguard"))
        .arg("--host-root")
        .arg(root)
        .args(args);
    support::agent::clean_env(&mut c);
    if walk {
        c.env("EDGEGUARD_HOST_RESOLVER", "walk");
    } else {
        c.env_remove("EDGEGUARD_HOST_RESOLVER");
    }
    c
}

/// Waits for the child's exit, at most `deadline`; kills it and fails past that.
fn wait_within(child: &mut Child, deadline: Duration, what: &str) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every stdout line is a schema-valid message; returns them.
fn valid_messages(stdout: &str) -> Vec<Value> {
    let validator = message_validator();
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let m: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let errs = errors(&validator, &m);
            assert!(errs.is_empty(), "schema errors {errs:?} in {line}");
            m
        })
        .collect()
}

fn events<'a>(messages: &'a [Value], name: &str) -> Vec<&'a Value> {
    messages
        .iter()
        .flat_map(|m| m["Events"].as_array().into_iter().flatten())
        .filter(|e| e["Name"] == name)
        .collect()
}

/// Nothing of the file outside the root, nor of the machine's own shadow file, was read.
fn assert_nothing_leaked(h: &Hostile, text: &str) {
    assert!(
        !text.contains(&h.marker),
        "the file outside the root was read"
    );
    if let Ok(shadow) = std::fs::read_to_string("/etc/shadow") {
        for line in shadow.lines() {
            // Hashes and locked markers: long enough to be distinctive.
            if let Some(hash) = line.split(':').nth(1).filter(|h| h.len() > 12) {
                assert!(!text.contains(hash), "the machine's /etc/shadow was read");
            }
        }
    }
}

/// What every run over the hostile root must show: the skips, with their reasons.
fn assert_skips_reported(messages: &[Value], stderr: &str) {
    let info = events(messages, "SystemInformation");
    let unavailable = info[0]["Payload"][0]["ExtraDetails"]["Unavailable"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        unavailable.contains("/usr/lib/os-release (its path goes through a /proc magic link)"),
        "{unavailable}"
    );
    assert!(
        unavailable
            .contains("/sys/class/dmi/id/bios_version (not a regular file but a character device)"),
        "{unavailable}"
    );
    let baseline = serde_json::to_string(&events(messages, "OSBaseline")).unwrap();
    for reason in [
        "/etc/ssh/sshd_config refused: not a regular file but a FIFO",
        "/etc/passwd refused: not a regular file but a FIFO",
        "/etc/docker/daemon.json refused: a symbolic link loop",
    ] {
        assert!(
            baseline.contains(reason),
            "{reason} not in the baseline: {baseline}"
        );
    }
    for error_type in [
        "not_regular",
        "loop",
        "magic_link",
        "too_large",
        "kernel_file_elsewhere",
    ] {
        assert!(
            stderr.contains(&format!("error_type=\"{error_type}\""))
                || stderr.contains(&format!("error_type={error_type}")),
            "no {error_type} skip logged:\n{stderr}"
        );
    }
}

fn snapshot(walk: bool) {
    let h = build();
    let state = tempfile::tempdir().unwrap();
    let out_path = state.path().join("stdout");
    let err_path = state.path().join("stderr");
    let started = Instant::now();
    let mut child = ChildGuard(
        agent(h.root.path(), walk, &["snapshot", "--state-dir"])
            .arg(state.path().join("state"))
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let status = wait_within(&mut child, SNAPSHOT_DEADLINE, "snapshot");
    let took = started.elapsed();
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "snapshot failed ({status}):\n{stderr}");
    eprintln!("snapshot (walk: {walk}) took {took:?}");
    let messages = valid_messages(&stdout);
    assert!(!events(&messages, "OSBaseline").is_empty(), "{stdout}");
    assert_nothing_leaked(&h, &stdout);
    assert_nothing_leaked(&h, &stderr);
    assert_skips_reported(&messages, &stderr);
    // The name with a newline went out escaped, in one line.
    assert!(
        stdout.contains("evil\\nname"),
        "the world-writable directory is listed"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn snapshot_over_a_hostile_root_finishes_and_reports_the_skips() {
    snapshot(false);
}

#[test]
fn snapshot_over_a_hostile_root_with_the_fallback_walk() {
    snapshot(true);
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint accepts");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

fn host_errors(scrape: &str, error_type: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| {
            l.starts_with("edgeguard_errors_total{")
                && l.contains("component=\"host\"")
                && l.contains(&format!("error_type=\"{error_type}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn run_over_a_hostile_root_stays_small_and_stops_on_sigterm() {
    let h = build();
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("twin.json");
    std::fs::write(
        &config,
        r#"{"highPriorityMessageFrequency":"PT2S","lowPriorityMessageFrequency":"PT4S"}"#,
    )
    .unwrap();
    let err_path = state.path().join("stderr");
    let port = free_port();
    let mut child = ChildGuard(
        agent(h.root.path(), false, &["run", "--state-dir"])
            .arg(state.path().join("state"))
            .arg("--config")
            .arg(&config)
            .args(["--shutdown-grace", "2", "--metrics-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let pid = child.id();
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let started = Instant::now();
    let mut max_rss = 0;
    let mut metrics = String::new();
    while started.elapsed() < RUN_FOR {
        if let Some(s) = child.try_wait().unwrap() {
            panic!(
                "the agent exited ({s}):\n{}",
                std::fs::read_to_string(&err_path).unwrap()
            );
        }
        if let Some(kb) = vm_rss_kb(pid) {
            max_rss = max_rss.max(kb);
        }
        if metrics.is_empty() && started.elapsed() > RUN_FOR / 2 {
            metrics = scrape(port);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let stopping = Instant::now();
    let status = wait_within(&mut child.0, STOP_DEADLINE, "run after SIGTERM");
    eprintln!(
        "stopped {:?} after SIGTERM; max RSS {max_rss} KiB",
        stopping.elapsed()
    );
    reader.join().unwrap();
    let stdout: Vec<String> = lines.try_iter().collect();
    let stdout = stdout.join("\n");
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(status.success(), "exit {status}:\n{stderr}");
    assert!(
        max_rss > 0 && max_rss < RSS_LIMIT_KB,
        "max RSS {max_rss} KiB"
    );
    let messages = valid_messages(&stdout);
    assert_nothing_leaked(&h, &stdout);
    assert_nothing_leaked(&h, &stderr);
    assert_skips_reported(&messages, &stderr);
    // The follower kept up with the growing 10 GB log.
    let logins = events(&messages, "Login");
    assert!(!logins.is_empty(), "no Login from the growing auth.log");
    for error_type in [
        "not_regular",
        "loop",
        "magic_link",
        "too_large",
        "kernel_file_elsewhere",
    ] {
        assert!(
            host_errors(&metrics, error_type) >= 1.0,
            "edgeguard_errors_total{{component=\"host\",error_type=\"{error_type}\"}} missing:\n{metrics}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}
