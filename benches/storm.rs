//! Load generator: exec, fork and connection storms against a running `edgeguard run`.
//!
//! Runs the release binary with a file sink, generates a storm of known size (R units of work a
//! second for T seconds), stops the agent with SIGTERM, and compares what the agent reported with
//! what was generated (capture rate). It also reads the agent's CPU time and peak RSS and — for
//! the exec and fork storms — runs Debian's `forkstat` (a proc-connector tool, `-q`, so it only
//! receives and counts) in the same window as a reference for CPU cost.
//!
//! # Exec storm shapes (`exec --shape …`)
//!
//! | shape | one unit | execs per unit |
//! |---|---|---|
//! | `elf` (default) | the tiny ELF (below) under a unique name, one argument (`--storm`), living `--child-us` µs | 1 |
//! | `quick` | the same with a lifetime of 0 µs (`--child-us 0`, whatever `--child-us` says): gone within microseconds | 1 |
//! | `script` | `/bin/sh SCRIPT --storm` started by the harness (a non-shell parent); the script runs the tiny ELF with `"$1"` and then `exit $?` | 2 |
//! | `busybox` | `busyboxXXXXXXXX true --storm`: a uniquely named symlink to `/bin/busybox` running its `true` applet | 1 |
//! | `fork` | `fork()` in the harness, the child calls `_exit(0)` at once, the parent reaps it: no exec | 0 |
//!
//! The tiny ELF is a 150-byte static x86_64 executable written by the harness (no dynamic loader,
//! no libc): it sleeps `--child-us` microseconds and exits 0 (elsewhere a shell script stands in).
//! A shell script costs ~1 ms of CPU per exec, so 2 vCPUs could not run 2,000 of them a second
//! beside the agent; the ELF costs only the kernel's fork + exec + exit. Its lifetime is a
//! parameter because it decides what a /proc-based collector can still read: 0 is the worst case
//! (the process is gone within microseconds), 1,000 µs is about what the shell script lived.
//! Children are started with `posix_spawn` (std's `Command` without stdio changes, a vfork-like
//! clone) by `--threads` spawner threads that take their start times from one shared schedule.
//!
//! Counting, per shape (ProcessCreate records, hit counts summed):
//! - `elf`, `quick`: a record whose command line starts with, or whose executable is, the ELF's
//!   path is captured; one that names it only by its kernel name (comm: the process was gone
//!   before /proc could be read) is counted apart as "by comm only" and not captured.
//! - `script`: 2 execs per unit, both counted: the shell (its command line contains the script's
//!   path; its executable is `/bin/sh`'s target and its comm `sh`, neither unique) and the ELF
//!   (as for `elf`). The script does not end with the ELF: `exit $?` follows it, so no
//!   shell can replace itself with the ELF (exec without fork) — each unit is 2 processes, 2
//!   execs, 2 ProcessCreate. (dash 0.5.12 would fork for a last command in a script file too; it
//!   skips the fork only for `sh -c`.) "By name only" counts the ELF's comm-only records and
//!   shell records without a command line (only `/bin/sh` named: the agent kept the file name,
//!   not the arguments); on a machine where other shells start during the run those count too.
//! - `busybox`: the symlink's name starts with `busybox` (busybox runs `argv[1]` as the applet only
//!   then; any other unknown name is "applet not found") and has 8 unique hex digits, 15 bytes,
//!   so the kernel's comm is the whole unique name. Captured: the command line starts with the
//!   symlink's path (its executable is busybox itself, the link's target).
//! - `fork`: nothing should be reported as ProcessCreate: a record naming the harness's
//!   executable or the spawner threads' unique name (a forked child's comm) would be an invented
//!   exec and is counted as such. Each child's exit is a ProcessTerminate carrying the parent's
//!   executable; those are counted as "exits reported". CPU is per 1,000 forks; forkstat runs
//!   with `-e fork` here (`-e exec` for the exec shapes).
//! - Everywhere "with arguments" counts the storm's records whose command line ends with the one
//!   argument (` --storm`): the whole command line, from /proc or from the exec tracepoint's
//!   stack copy when the process was gone.
//!
//! # Timers (`--timers short|default`)
//!
//! - `short` (default): high PT1S, low PT2S, aggregation windows PT2S: everything is delivered
//!   during the run, within the 5 s after the storm.
//! - `default`: the twin sets only `maxLocalCacheSizeInBytes` (50 MB, so nothing is evicted); the
//!   timers stay at the agent's defaults (high PT7M, low PT5H, aggregation windows PT1H), so the
//!   storm's events are still queued (in open windows and the cache) when the harness stops the
//!   agent. SIGTERM delivers them: the collectors stop, the pipeline closes every aggregation
//!   window and hands everything queued to the outbox (`pipeline::run` after its loop), and the
//!   outbox keeps delivering for `--shutdown-grace` (10 s) before the agent exits. Nothing else
//!   is needed (the `flush` direct method only exists under IoT Edge).
//!
//! `--snapshot DURATION` also sets `snapshotFrequency` (e.g. `PT8S`, what a user testing a
//! deployment sets beside short timers): a snapshot round then falls into the measured window.
//!
//! The agent's CPU is measured from just before the storm to 5 s after it (the window forkstat
//! runs in); what it spends after SIGTERM (in `default`, closing the windows and writing the
//! storm's messages) is reported apart ("at shutdown", from `wait4`), with the time the stop
//! took (a stop near the 10 s grace means messages may have stayed in the spool, uncounted).
//! Peak RSS is the agent's whole life (`wait4`'s `ru_maxrss`, or VmHWM if larger). Just before
//! SIGTERM the harness asks the agent for its drop counters (`edgeguard status --json`) and
//! prints them. `--keep-output DIR` keeps each run's messages file there.
//!
//! The agent reports every process on the machine, and forkstat hears them all: other work
//! running beside the storm (builds, tests, another storm) raises both CPU figures and, at low
//! rates, dominates them. Measure on a quiet machine.
//!
//! ```sh
//! cargo build --release
//! cargo bench --bench storm -- exec --rate 2000 --seconds 30 --runs 5 [--shape elf|quick|script|busybox|fork] [--timers short|default] [--snapshot PT8S] [--child-us 1000] [--threads 8] [--keep-output DIR] [--binary PATH]
//! cargo bench --bench storm -- connect --rate 500 --seconds 30 --runs 5 [--timers short|default]
//! ```
//! Needs root (the collectors read the kernel); `busybox` needs `/bin/busybox` (Debian's
//! `busybox-static` or `busybox`). Prints one line per run and the medians.

#[path = "common/proc_stats.rs"]
mod proc_stats;

#[path = "../tests/support/elf.rs"]
mod elf;

use proc_stats::{cpu_seconds, median, status_kib, stop};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What one unit of an exec storm runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Elf,
    Quick,
    Script,
    Busybox,
    Fork,
}

impl Shape {
    fn parse(s: &str) -> Option<Shape> {
        Some(match s {
            "elf" => Shape::Elf,
            "quick" => Shape::Quick,
            "script" => Shape::Script,
            "busybox" => Shape::Busybox,
            "fork" => Shape::Fork,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Elf => "elf",
            Shape::Quick => "quick",
            Shape::Script => "script",
            Shape::Busybox => "busybox",
            Shape::Fork => "fork",
        }
    }

    /// Execs (and ProcessCreate records) one unit makes.
    fn execs_per_unit(self) -> u64 {
        match self {
            Shape::Script => 2,
            Shape::Fork => 0,
            _ => 1,
        }
    }
}

/// The agent's message timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timers {
    /// PT1S / PT2S, aggregation PT2S: delivered during the run.
    Short,
    /// The agent's defaults (PT7M / PT5H, aggregation PT1H): delivered at SIGTERM.
    Default,
}

impl Timers {
    fn name(self) -> &'static str {
        match self {
            Timers::Short => "short",
            Timers::Default => "default",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    mode: String,
    shape: Shape,
    timers: Timers,
    rate: u64,
    seconds: u64,
    runs: usize,
    binary: PathBuf,
    /// How long each exec'd ELF lives (exec storm; `quick` makes it 0).
    child_us: u64,
    /// Spawner threads.
    threads: usize,
    /// Where to copy each run's messages (to look at what the agent wrote).
    keep_output: Option<PathBuf>,
    /// `--snapshot DURATION`: the twin's `snapshotFrequency` (default: the agent's, PT13H).
    snapshot: Option<String>,
}

fn parse_args() -> Option<Args> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs this binary without `--bench`: nothing to do then.
    if !argv.iter().any(|a| a == "--bench") {
        println!("storm: load generator; run it with `cargo bench --bench storm -- exec|connect`");
        return None;
    }
    let mut args = Args {
        mode: "exec".into(),
        shape: Shape::Elf,
        timers: Timers::Short,
        rate: 2000,
        seconds: 30,
        runs: 5,
        binary: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/edgeguard"),
        child_us: 1000,
        threads: 8,
        keep_output: None,
        snapshot: None,
    };
    let mut shape_given = false;
    let mut it = argv.into_iter().filter(|a| a != "--bench");
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{what} needs a number"))
        };
        match a.as_str() {
            "exec" | "connect" => args.mode = a,
            "--rate" => args.rate = num("--rate"),
            "--seconds" => args.seconds = num("--seconds"),
            "--runs" => args.runs = num("--runs") as usize,
            "--child-us" => args.child_us = num("--child-us"),
            "--threads" => args.threads = (num("--threads") as usize).max(1),
            "--binary" => args.binary = PathBuf::from(it.next().expect("--binary needs a path")),
            "--keep-output" => {
                args.keep_output = Some(PathBuf::from(
                    it.next().expect("--keep-output needs a directory"),
                ))
            }
            "--shape" => {
                let v = it.next().unwrap_or_default();
                args.shape = Shape::parse(&v).unwrap_or_else(|| {
                    panic!("--shape needs elf, quick, script, busybox or fork, not {v:?}")
                });
                shape_given = true;
            }
            "--snapshot" => {
                args.snapshot = Some(it.next().expect("--snapshot needs an ISO 8601 duration"))
            }
            "--timers" => {
                args.timers = match it.next().as_deref() {
                    Some("short") => Timers::Short,
                    Some("default") => Timers::Default,
                    v => panic!("--timers needs short or default, not {v:?}"),
                }
            }
            other => panic!("unknown argument {other}"),
        }
    }
    if shape_given && args.mode != "exec" {
        panic!("--shape applies to the exec storm only");
    }
    if args.shape == Shape::Quick {
        args.child_us = 0;
    }
    Some(args)
}

/// CPU seconds (user + system) and peak RSS (KiB) of a process, from /proc.
fn usage(pid: u32) -> (f64, u64) {
    (cpu_seconds(pid), status_kib(pid, "VmHWM:"))
}

fn start_agent(args: &Args, dir: &Path) -> (Child, PathBuf) {
    let out = dir.join("messages.jsonl");
    let cfg = dir.join("twin.json");
    // A cache large enough that nothing is evicted (evictions would be counted, but this
    // measures capture) in both; `short` adds short timers and windows so everything arrives
    // within seconds, `default` leaves them at the agent's defaults (delivered at SIGTERM).
    let twin = match args.timers {
        Timers::Short => {
            r#"{"highPriorityMessageFrequency":"PT1S","lowPriorityMessageFrequency":"PT2S",
            "maxLocalCacheSizeInBytes":50000000,
            "aggregationIntervalProcessCreate":"PT2S","aggregationIntervalConnectionCreate":"PT2S",
            "aggregationIntervalProcessTerminate":"PT2S"}"#
        }
        Timers::Default => r#"{"maxLocalCacheSizeInBytes":50000000}"#,
    };
    let mut twin: serde_json::Value = serde_json::from_str(twin).expect("twin JSON");
    if let Some(period) = &args.snapshot {
        twin["snapshotFrequency"] = period.as_str().into();
    }
    std::fs::write(&cfg, twin.to_string()).expect("write config");
    let child = Command::new(&args.binary)
        .args(["run", "--sink", "file", "--metrics-addr", "off", "--output"])
        .arg(&out)
        .arg("--state-dir")
        .arg(dir)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "starting {}: {e} (cargo build --release first)",
                args.binary.display()
            )
        });
    (child, out)
}

/// Events the running agent has dropped so far, by `stage/reason` (`edgeguard status --json`
/// through the state directory's socket); `None` when it did not answer.
fn agent_drops(binary: &Path, state_dir: &Path) -> Option<Vec<(String, u64)>> {
    let out = Command::new(binary)
        .args(["status", "--json", "--state-dir"])
        .arg(state_dir)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        report["drops"]
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
            .filter(|(_, n)| *n > 0)
            .collect(),
    )
}

/// What the agent did from SIGTERM to its exit.
struct Stopped {
    /// CPU seconds (user + system) of its whole life.
    cpu: f64,
    /// Peak RSS (KiB) of its whole life.
    max_rss_kib: u64,
    /// From SIGTERM to the exit.
    seconds: f64,
}

/// Sends SIGTERM (the agent delivers what it holds, within its shutdown grace) and reaps it with
/// `wait4`, which gives its whole life's CPU time and peak RSS.
fn stop_agent(child: Child) -> Stopped {
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    // SAFETY: signalling our own child, which has not been reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `ru` are live and writable.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        if r == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            panic!("wait4 on the agent: {}", std::io::Error::last_os_error());
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        eprintln!("  the agent did not exit cleanly (wait status {status:#x})");
    }
    // Reaped above: dropping the handle neither waits nor signals.
    drop(child);
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    Stopped {
        cpu: t(ru.ru_utime) + t(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss.max(0) as u64,
        seconds,
    }
}

/// Sum of hit counts of events named `name` whose payload matches `keep`.
fn reported(out: &Path, name: &str, keep: impl Fn(&serde_json::Value) -> bool) -> u64 {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut total = 0;
    for line in text.lines() {
        let Ok(m) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for e in m["Events"].as_array().into_iter().flatten() {
            if e["Name"] != name {
                continue;
            }
            for r in e["Payload"].as_array().into_iter().flatten() {
                if keep(r) {
                    total += r["ExtraDetails"]["HitCount"]
                        .as_str()
                        .and_then(|h| h.parse().ok())
                        .unwrap_or(1);
                }
            }
        }
    }
    total
}

/// What a paced storm did: how many units of work, in how long.
struct Paced {
    generated: u64,
    seconds: f64,
}

impl Paced {
    fn rate(&self) -> f64 {
        self.generated as f64 / self.seconds.max(1e-9)
    }
}

/// The one argument every storm process gets (to count the records that carry it).
const STORM_ARGUMENT: &str = "--storm";

/// Runs `work` `rate` times a second for `seconds` on `threads` threads named `thread_name` (at
/// most 15 bytes: the kernel's comm of the threads, and of a child one of them forks).
///
/// One shared schedule (a token bucket without burst limit): unit `i` may start at
/// `start + i / rate`; whichever thread is free takes the next unit. Threads that fall behind
/// catch up without sleeping, so the achieved rate is what the machine could do, and it is
/// measured, not assumed.
fn paced(
    rate: u64,
    seconds: u64,
    threads: usize,
    thread_name: &str,
    work: impl Fn() -> bool + Send + Sync + 'static,
) -> Paced {
    let work = Arc::new(work);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let work = work.clone();
            let next = next.clone();
            let done = done.clone();
            std::thread::Builder::new()
                .name(thread_name.to_owned())
                .spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let due = start + interval.mul_f64(i as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        if work() {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .expect("spawner thread")
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let p = Paced {
        generated: done.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
    };
    eprintln!(
        "  generated {} of {total} in {:.1} s ({:.0}/s)",
        p.generated,
        p.seconds,
        p.rate()
    );
    p
}

/// Writes an executable file.
fn write_executable(path: &Path, body: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).expect("write the storm's child");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Writes the storm's child: the tiny ELF on x86_64, a shell script elsewhere.
fn write_child(path: &Path, child_us: u64) {
    let body = if cfg!(target_arch = "x86_64") {
        elf::sleeper(child_us)
    } else {
        format!("#!/bin/sh\nsleep {}\n", child_us as f64 / 1e6).into_bytes()
    };
    write_executable(path, &body);
}

/// Writes the `script` shape's script: it runs `program` with the script's one argument, then
/// `exit $?`, so the shell forks for the program and cannot exec it in its own place.
fn write_script(path: &Path, program: &Path) {
    let body = format!(
        "#!/bin/sh\n# edgeguard storm: one external program, forked (the exit after it keeps any \
         shell from exec'ing it in place)\n{} \"$1\"\nexit $?\n",
        program.display()
    );
    write_executable(path, body.as_bytes());
}

/// Debian's busybox (`busybox-static` or `busybox`).
fn find_busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            eprintln!(
                "storm: --shape busybox needs /bin/busybox; install it with \
                 `apt-get install busybox-static` (or `busybox`)"
            );
            std::process::exit(2)
        })
}

/// Starts `program` with `args` by `posix_spawn` (no stdio changes, no pre_exec, inherited
/// environment) and waits for it; true when it exited 0.
fn spawn_and_wait(program: &Path, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .spawn()
        .and_then(|mut ch| ch.wait())
        .is_ok_and(|s| s.success())
}

/// Forks a child that calls `_exit(0)` at once and reaps it; true when it exited 0.
fn fork_and_reap() -> bool {
    // SAFETY: this process is multithreaded, so the child may call only async-signal-safe
    // functions: it calls `_exit` and nothing else (no allocation, no locks, no destructors).
    match unsafe { libc::fork() } {
        // SAFETY: `_exit` is async-signal-safe and ends the child at once.
        0 => unsafe { libc::_exit(0) },
        -1 => false,
        pid => {
            let mut status = 0;
            loop {
                // SAFETY: `status` is live and writable; `pid` is our unreaped child.
                let r = unsafe { libc::waitpid(pid, &mut status, 0) };
                if r == pid {
                    break libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
                }
                if r == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    break false;
                }
            }
        }
    }
}

/// User + system CPU seconds of this process (`RUSAGE_SELF`) or of its reaped children.
fn rusage_seconds(who: i32) -> f64 {
    // SAFETY: rusage is plain data; getrusage writes it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is live and writable.
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Picks the payload records a storm generated.
type Matcher = Box<dyn Fn(&serde_json::Value) -> bool>;

/// The record names `path` by its full path: first word of the command line, or the executable.
fn names_path(r: &serde_json::Value, path: &str) -> bool {
    r["CommandLine"]
        .as_str()
        .is_some_and(|c| c.split(' ').next() == Some(path))
        || r["Executable"].as_str() == Some(path)
}

/// The record names the process by its kernel name (comm) `name`.
fn names_comm(r: &serde_json::Value, name: &str) -> bool {
    r["Executable"].as_str() == Some(name) || r["ExtraDetails"]["Comm"].as_str() == Some(name)
}

/// Records of a program started by its unique `path` (file name `name`): `(captured, by comm
/// only)`.
fn program_matchers(path: &Path, name: &str) -> (Matcher, Matcher) {
    let path = path.to_string_lossy().into_owned();
    let path2 = path.clone();
    let name = name.to_owned();
    (
        Box::new(move |r| names_path(r, &path)),
        Box::new(move |r| !names_path(r, &path2) && names_comm(r, &name)),
    )
}

/// A storm that ran, with how to find its records in the agent's output.
struct Storm {
    paced: Paced,
    /// forkstat, when it could be started.
    reference: Option<Child>,
    /// The records the storm made, by part (`script`: the shell, then the program), each
    /// matcher picking one part's fully named records.
    parts: Vec<(&'static str, Matcher)>,
    /// exec: records naming the program by comm only (`script`: and the shell by file name
    /// only); connect: the `In` side.
    second: Option<Matcher>,
    /// What `second` counts, in the output.
    second_label: &'static str,
    /// fork: the children's ProcessTerminate records.
    exits: Option<Matcher>,
}

/// A short name unique to this run (`prefix` + digits, at most 15 bytes with a 3-byte prefix).
fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id() % 100_000,
        fastrand::u16(..)
    )
}

fn start_forkstat(events: &str) -> Option<Child> {
    let c = Command::new("forkstat")
        .args(["-q", "-e", events])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok();
    if c.is_none() {
        eprintln!("  forkstat not found (apt-get install forkstat): no reference CPU");
    }
    std::thread::sleep(Duration::from_millis(500));
    c
}

fn exec_storm(args: &Args, dir: &Path) -> Storm {
    let threads_name = unique_name("egt");
    match args.shape {
        Shape::Elf | Shape::Quick => {
            // Unique per run and at most 15 bytes, so the kernel's comm is the whole name.
            let name = unique_name("egx");
            let program = dir.join(&name);
            write_child(&program, args.child_us);
            let reference = start_forkstat("exec");
            let p = program.clone();
            let paced = paced(
                args.rate,
                args.seconds,
                args.threads,
                &threads_name,
                move || spawn_and_wait(&p, &[STORM_ARGUMENT]),
            );
            let (captured, by_comm) = program_matchers(&program, &name);
            Storm {
                paced,
                reference,
                parts: vec![("program", captured)],
                second: Some(by_comm),
                second_label: "by comm only",
                exits: None,
            }
        }
        Shape::Script => {
            let name = unique_name("egx");
            let program = dir.join(&name);
            write_child(&program, args.child_us);
            let script = dir.join(format!("{}.sh", unique_name("egs")));
            write_script(&script, &program);
            let reference = start_forkstat("exec");
            let script = script.to_string_lossy().into_owned();
            let s = script.clone();
            let paced = paced(
                args.rate,
                args.seconds,
                args.threads,
                &threads_name,
                move || spawn_and_wait(Path::new("/bin/sh"), &[s.as_str(), STORM_ARGUMENT]),
            );
            let shell: Matcher = Box::new(move |r| {
                r["CommandLine"]
                    .as_str()
                    .is_some_and(|c| c.contains(script.as_str()))
            });
            let (captured, by_comm) = program_matchers(&program, &name);
            // A shell whose record has no command line names only /bin/sh (or its target):
            // not attributable to the storm when other shells run at the same time.
            let sh_target = std::fs::canonicalize("/bin/sh")
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let shell_by_name: Matcher = Box::new(move |r| {
                r["CommandLine"].as_str().unwrap_or_default().is_empty()
                    && ["/bin/sh", sh_target.as_str(), "sh"]
                        .iter()
                        .any(|n| names_comm(r, n))
            });
            Storm {
                paced,
                reference,
                parts: vec![("sh", shell), ("program", captured)],
                second: Some(Box::new(move |r| by_comm(r) || shell_by_name(r))),
                second_label: "by name only",
                exits: None,
            }
        }
        Shape::Busybox => {
            let busybox = find_busybox();
            // busybox runs argv[1] as the applet only when its own name starts with "busybox";
            // 8 hex digits make it unique and 15 bytes, the whole comm.
            let name = format!("busybox{:08x}", fastrand::u32(..));
            let link = dir.join(&name);
            std::os::unix::fs::symlink(&busybox, &link).expect("symlink to busybox");
            let reference = start_forkstat("exec");
            let l = link.clone();
            let paced = paced(
                args.rate,
                args.seconds,
                args.threads,
                &threads_name,
                move || spawn_and_wait(&l, &["true", STORM_ARGUMENT]),
            );
            let (captured, by_comm) = program_matchers(&link, &name);
            Storm {
                paced,
                reference,
                parts: vec![("program", captured)],
                second: Some(by_comm),
                second_label: "by comm only",
                exits: None,
            }
        }
        Shape::Fork => {
            let reference = start_forkstat("fork");
            let paced = paced(
                args.rate,
                args.seconds,
                args.threads,
                &threads_name,
                fork_and_reap,
            );
            // A forked child is this executable, its comm the forking thread's name.
            let exe = std::fs::read_link("/proc/self/exe")
                .expect("/proc/self/exe")
                .to_string_lossy()
                .into_owned();
            let exe2 = exe.clone();
            let t2 = threads_name.clone();
            Storm {
                paced,
                reference,
                parts: vec![(
                    "invented",
                    Box::new(move |r| names_path(r, &exe) || names_comm(r, &threads_name)),
                )],
                second: None,
                second_label: "",
                exits: Some(Box::new(move |r| {
                    r["Executable"].as_str() == Some(exe2.as_str()) || names_comm(r, &t2)
                })),
            }
        }
    }
}

fn connect_storm(args: &Args) -> Storm {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let running = Arc::new(AtomicBool::new(true));
    let r2 = running.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
            if !r2.load(Ordering::Relaxed) {
                break;
            }
        }
    });
    let paced = paced(
        args.rate,
        args.seconds,
        args.threads,
        "egconnect",
        move || TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    running.store(false, Ordering::Relaxed);
    let _ = TcpStream::connect(("127.0.0.1", port));
    // The records carry ports as strings.
    let out_port = port.to_string();
    let in_port = out_port.clone();
    Storm {
        paced,
        reference: None,
        parts: vec![(
            "Out",
            Box::new(move |r| r["Direction"] == "Out" && r["RemotePort"] == out_port.as_str()),
        )],
        second: Some(Box::new(move |r| {
            r["Direction"] == "In" && r["LocalPort"] == in_port.as_str()
        })),
        second_label: "In side",
        exits: None,
    }
}

struct RunResult {
    /// Units of work done (execs of the first program, forks, connections).
    generated: u64,
    achieved_rate: f64,
    /// exec: execs the units made (fork: 0); connect: connections.
    expected: u64,
    /// Records that name the generated program(s) by full path (command line or executable),
    /// all parts together; fork: ProcessCreate records for the forked children (should be 0).
    /// connect: the `Out` side.
    captured: u64,
    /// `captured` by part (`script`: sh, program).
    parts: Vec<(&'static str, u64)>,
    /// exec: records that name it only by its kernel name (comm): the process was gone (a
    /// zombie) before its command line and executable could be read; not counted in `captured`.
    /// connect: the `In` side of the connections (the listener's end).
    second: u64,
    second_label: &'static str,
    /// exec: the storm's records with the whole command line (the program's path and its one
    /// argument): from /proc, or from the exec tracepoint's stack copy when the process was gone.
    with_arguments: u64,
    /// fork: ProcessTerminate records of the forked children.
    exits: u64,
    agent_cpu_ms_per_1000: f64,
    /// What the agent spent from SIGTERM to its exit, per 1,000 units.
    agent_shutdown_cpu_ms_per_1000: f64,
    /// From SIGTERM to the agent's exit.
    stop_seconds: f64,
    /// What the agent said it dropped, just before SIGTERM (`None`: it did not answer).
    drops: Option<Vec<(String, u64)>>,
    agent_peak_rss_kib: u64,
    reference_cpu_ms_per_1000: Option<f64>,
    /// CPU of the generator itself and of its children, per 1,000 units.
    generator_cpu_ms_per_1000: f64,
    load_before: String,
    load_after: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_once(args: &Args) -> RunResult {
    let load_before = loadavg();
    let dir = tempfile::tempdir().expect("tempdir");
    let (agent, out) = start_agent(args, dir.path());
    std::thread::sleep(Duration::from_secs(2)); // start-up and first snapshot
    let gen_cpu0 = rusage_seconds(libc::RUSAGE_SELF) + rusage_seconds(libc::RUSAGE_CHILDREN);
    let (cpu0, _) = usage(agent.id());
    let exec = args.mode == "exec";
    let storm = if exec {
        exec_storm(args, dir.path())
    } else {
        connect_storm(args)
    };
    let gen_cpu =
        rusage_seconds(libc::RUSAGE_SELF) + rusage_seconds(libc::RUSAGE_CHILDREN) - gen_cpu0;
    // Short timers: windows close, messages flush. Default timers: nothing is sent yet, but the
    // window is the same, so the CPU numbers compare.
    std::thread::sleep(Duration::from_secs(5));
    let (cpu1, hwm) = usage(agent.id());
    let reference_cpu = storm.reference.map(|c| {
        let (cpu, _) = usage(c.id());
        stop(c);
        cpu
    });
    let drops = agent_drops(&args.binary, dir.path());
    let stopped = stop_agent(agent);
    if let Some(keep) = &args.keep_output {
        let to = keep.join(format!(
            "{}-{}-{}-{}.jsonl",
            args.mode,
            args.shape.name(),
            args.timers.name(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        ));
        std::fs::create_dir_all(keep).expect("--keep-output directory");
        std::fs::copy(&out, &to).expect("copy the messages");
        eprintln!("  messages kept in {}", to.display());
    }
    let load_after = loadavg();
    let kind = if exec {
        "ProcessCreate"
    } else {
        "ConnectionCreate"
    };
    let parts: Vec<(&'static str, u64)> = storm
        .parts
        .iter()
        .map(|(label, m)| (*label, reported(&out, kind, m)))
        .collect();
    let captured = parts.iter().map(|(_, n)| n).sum();
    let second = storm.second.as_ref().map_or(0, |m| reported(&out, kind, m));
    let with_arguments = if exec {
        let suffix = format!(" {STORM_ARGUMENT}");
        reported(&out, kind, |r: &serde_json::Value| {
            (storm.parts.iter().any(|(_, m)| m(r)) || storm.second.as_ref().is_some_and(|m| m(r)))
                && r["CommandLine"]
                    .as_str()
                    .is_some_and(|c| c.ends_with(&suffix))
        })
    } else {
        0
    };
    let exits = storm
        .exits
        .as_ref()
        .map_or(0, |m| reported(&out, "ProcessTerminate", m));
    let generated = storm.paced.generated;
    let expected = if exec {
        generated * args.shape.execs_per_unit()
    } else {
        generated
    };
    let per_1000 = |cpu: f64| cpu * 1000.0 / generated.max(1) as f64 * 1000.0;
    RunResult {
        generated,
        achieved_rate: storm.paced.rate(),
        expected,
        captured,
        parts,
        second,
        second_label: storm.second_label,
        with_arguments,
        exits,
        agent_cpu_ms_per_1000: per_1000(cpu1 - cpu0),
        agent_shutdown_cpu_ms_per_1000: per_1000((stopped.cpu - cpu1).max(0.0)),
        stop_seconds: stopped.seconds,
        drops,
        agent_peak_rss_kib: hwm.max(stopped.max_rss_kib),
        reference_cpu_ms_per_1000: reference_cpu.map(per_1000),
        generator_cpu_ms_per_1000: per_1000(gen_cpu),
        load_before,
        load_after,
    }
}

/// `n` as a share of `of`, in per cent.
fn pct(n: u64, of: u64) -> f64 {
    n as f64 * 100.0 / of.max(1) as f64
}

/// The storm-specific middle of a run's line: what was expected and what the agent reported.
fn counts(args: &Args, r: &RunResult) -> String {
    if args.mode != "exec" {
        return format!(
            "captured {} ({:.2} %), {} {} ({:.2} %)",
            r.captured,
            pct(r.captured, r.expected),
            r.second_label,
            r.second,
            pct(r.second, r.expected)
        );
    }
    if args.shape == Shape::Fork {
        return format!(
            "execs expected 0, ProcessCreate for them {}, exits reported {} ({:.2} %)",
            r.captured,
            r.exits,
            pct(r.exits, r.generated)
        );
    }
    let parts = if r.parts.len() > 1 {
        let p: Vec<String> = r.parts.iter().map(|(l, n)| format!("{l} {n}")).collect();
        format!(": {}", p.join(" + "))
    } else {
        String::new()
    };
    format!(
        "execs expected {}, reported {} ({:.2} %{parts}), {} {} ({:.2} %), with arguments {} ({:.2} %)",
        r.expected,
        r.captured,
        pct(r.captured, r.expected),
        r.second_label,
        r.second,
        pct(r.second, r.expected),
        r.with_arguments,
        pct(r.with_arguments, r.expected)
    )
}

fn main() {
    let Some(args) = parse_args() else { return };
    let what = if args.mode == "exec" {
        format!(
            "exec --shape {} (child {} µs)",
            args.shape.name(),
            args.child_us
        )
    } else {
        args.mode.clone()
    };
    let unit = match (args.mode.as_str(), args.shape) {
        ("exec", Shape::Fork) => "forks",
        ("exec", Shape::Script) => "scripts",
        ("exec", _) => "execs",
        _ => "connections",
    };
    println!(
        "storm: {what} at {}/s for {} s, {} runs, timers {}{}, agent {}",
        args.rate,
        args.seconds,
        args.runs,
        args.timers.name(),
        args.snapshot
            .as_deref()
            .map(|p| format!(" with snapshotFrequency {p}"))
            .unwrap_or_default(),
        args.binary.display()
    );
    let label = if args.mode == "exec" {
        format!("{}/{}", args.shape.name(), args.timers.name())
    } else {
        format!("{}/{}", args.mode, args.timers.name())
    };
    let mut results = Vec::new();
    for i in 0..args.runs {
        let r = run_once(&args);
        println!(
            "run {}: {label}: load {} -> {}; generated {} {unit} at {:.0}/s (generator CPU {:.1} ms/1000); {}; agent CPU {:.1} ms/1000 {unit} (+{:.1} at shutdown, stop {:.1} s), peak RSS {} KiB, dropped {}{}",
            i + 1,
            r.load_before,
            r.load_after,
            r.generated,
            r.achieved_rate,
            r.generator_cpu_ms_per_1000,
            counts(&args, &r),
            r.agent_cpu_ms_per_1000,
            r.agent_shutdown_cpu_ms_per_1000,
            r.stop_seconds,
            r.agent_peak_rss_kib,
            match &r.drops {
                None => "unknown (no status answer)".to_string(),
                Some(d) if d.is_empty() => "nothing".to_string(),
                Some(d) => d
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            },
            r.reference_cpu_ms_per_1000
                .map(|c| format!(
                    ", forkstat CPU {c:.1} ms/1000 (ratio {:.2})",
                    r.agent_cpu_ms_per_1000 / c
                ))
                .unwrap_or_default()
        );
        results.push(r);
    }
    let column =
        |f: &dyn Fn(&RunResult) -> f64| median(&mut results.iter().map(f).collect::<Vec<_>>());
    let capture = column(&|r| pct(r.captured, r.expected));
    let second = column(&|r| pct(r.second, r.expected));
    let with_arguments = column(&|r| pct(r.with_arguments, r.expected));
    let cpu = column(&|r| r.agent_cpu_ms_per_1000);
    let shutdown_cpu = column(&|r| r.agent_shutdown_cpu_ms_per_1000);
    let rss = column(&|r| r.agent_peak_rss_kib as f64);
    let rate = column(&|r| r.achieved_rate);
    let second_label = results.first().map_or("", |r| r.second_label);
    let middle = match (args.mode.as_str(), args.shape) {
        ("exec", Shape::Fork) => format!(
            "ProcessCreate for the forks {:.0} (most in a run {}), exits reported {:.2} %",
            column(&|r| r.captured as f64),
            results.iter().map(|r| r.captured).max().unwrap_or(0),
            column(&|r| pct(r.exits, r.generated))
        ),
        ("exec", _) => format!(
            "capture {capture:.2} % ({second_label} {second:.2} %), with their arguments {with_arguments:.2} %"
        ),
        _ => format!("capture {capture:.2} % ({second_label} {second:.2} %)"),
    };
    println!(
        "median ({label}): achieved {rate:.0}/s, {middle}, agent CPU {cpu:.1} ms/1000 {unit} (+{shutdown_cpu:.1} at shutdown), peak RSS {rss:.0} KiB"
    );
    let mut refs: Vec<f64> = results
        .iter()
        .filter_map(|r| r.reference_cpu_ms_per_1000)
        .collect();
    if !refs.is_empty() {
        let r = median(&mut refs);
        let ratio =
            column(&|r| r.agent_cpu_ms_per_1000 / r.reference_cpu_ms_per_1000.unwrap_or(f64::NAN));
        println!(
            "median forkstat CPU {r:.1} ms/1000 {unit}; agent/forkstat ratio {:.2} (median of per-run ratios {ratio:.2})",
            cpu / r
        );
    }
}
