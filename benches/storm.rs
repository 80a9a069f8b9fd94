//! Load generator: exec and connection storms against a running `edgeguard run`.
//!
//! Runs the release binary with a file sink, generates a storm of known size (a uniquely named
//! tiny static executable run R times a second for T seconds, or R TCP connections a second to a
//! local listener, each closed at once), stops the agent with SIGTERM, and compares what the agent
//! reported with what was generated (capture rate).
//!
//! The exec storm's child is a 150-byte static x86_64 ELF written by the harness (no dynamic
//! loader, no libc): it sleeps `--child-us` microseconds and exits 0. A shell script (as used
//! before) costs ~1 ms of CPU per exec, so 2 vCPUs could not run 2,000 of them a second beside
//! the agent; the ELF costs only the kernel's fork + exec + exit. Its lifetime is a parameter
//! because it decides what a /proc-based collector can still read: 0 is the worst case (the
//! process is gone within microseconds), 1,000 µs is about what the shell script lived. Children
//! are started with `posix_spawn` (std's `Command` without stdio changes, a vfork-like clone)
//! by `--threads` spawner threads that take their start times from one shared schedule. It also reads the agent's CPU time and peak
//! RSS from /proc, and — for the exec storm — runs Debian's `forkstat` (a proc-connector tool) in
//! the same window as a reference for CPU cost.
//!
//! ```sh
//! cargo build --release
//! cargo bench --bench storm -- exec --rate 2000 --seconds 30 --runs 5 [--child-us 1000] [--threads 8]
//! cargo bench --bench storm -- connect --rate 500 --seconds 30 --runs 5
//! ```
//! Needs root (the collectors read the kernel). Prints one line per run and the medians.

#[path = "common/proc_stats.rs"]
mod proc_stats;

use proc_stats::{cpu_seconds, median, status_kib, stop};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Args {
    mode: String,
    rate: u64,
    seconds: u64,
    runs: usize,
    binary: PathBuf,
    /// How long each exec'd child lives (exec storm).
    child_us: u64,
    /// Spawner threads.
    threads: usize,
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
        rate: 2000,
        seconds: 30,
        runs: 5,
        binary: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/edgeguard"),
        child_us: 1000,
        threads: 8,
    };
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
            other => panic!("unknown argument {other}"),
        }
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
    // Short timers and windows so everything arrives within seconds; a cache large enough that
    // nothing is evicted (evictions would be counted, but this measures capture).
    std::fs::write(
        &cfg,
        r#"{"highPriorityMessageFrequency":"PT1S","lowPriorityMessageFrequency":"PT2S",
            "maxLocalCacheSizeInBytes":50000000,
            "aggregationIntervalProcessCreate":"PT2S","aggregationIntervalConnectionCreate":"PT2S",
            "aggregationIntervalProcessTerminate":"PT2S"}"#,
    )
    .expect("write config");
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

/// Runs `work` `rate` times a second for `seconds` on `threads` threads.
///
/// The one argument every storm process gets (to count the records that carry it).
const STORM_ARGUMENT: &str = "--storm";

/// One shared schedule (a token bucket without burst limit): unit `i` may start at
/// `start + i / rate`; whichever thread is free takes the next unit. Threads that fall behind
/// catch up without sleeping, so the achieved rate is what the machine could do, and it is
/// measured, not assumed.
fn paced(
    rate: u64,
    seconds: u64,
    threads: usize,
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
            std::thread::spawn(move || {
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

/// A static x86_64 Linux executable that sleeps `child_us` microseconds and exits 0:
/// ELF header, one PT_LOAD program header, 25 bytes of code, a `timespec`.
fn tiny_elf(child_us: u64) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const CODE: u64 = 64 + 56;
    #[rustfmt::skip]
    let code: [u8; 25] = [
        0x48, 0x8d, 0x3d, 18, 0, 0, 0, // lea rdi, [rip + 18]  (the timespec after the code)
        0x31, 0xf6,                     // xor esi, esi
        0xb8, 35, 0, 0, 0,              // mov eax, SYS_nanosleep
        0x0f, 0x05,                     // syscall
        0x31, 0xff,                     // xor edi, edi
        0xb8, 60, 0, 0, 0,              // mov eax, SYS_exit
        0x0f, 0x05,                     // syscall
    ];
    let total = CODE + code.len() as u64 + 16;
    let mut e = Vec::with_capacity(total as usize);
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(BASE + CODE).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    for v in [64u16, 56, 1, 64, 0, 0] {
        e.extend_from_slice(&v.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R + X
    for v in [0, BASE, BASE, total, total, 0x1000u64] {
        e.extend_from_slice(&v.to_le_bytes()); // offset, vaddr, paddr, filesz, memsz, align
    }
    e.extend_from_slice(&code);
    e.extend_from_slice(&(child_us / 1_000_000).to_le_bytes());
    e.extend_from_slice(&((child_us % 1_000_000) * 1000).to_le_bytes());
    e
}

/// Writes the storm's child: the tiny ELF on x86_64, a shell script elsewhere.
fn write_child(path: &Path, child_us: u64) {
    use std::os::unix::fs::PermissionsExt;
    let body = if cfg!(target_arch = "x86_64") {
        tiny_elf(child_us)
    } else {
        format!("#!/bin/sh\nsleep {}\n", child_us as f64 / 1e6).into_bytes()
    };
    std::fs::write(path, body).expect("write the storm's child");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
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

struct RunResult {
    generated: u64,
    achieved_rate: f64,
    /// Records that name the generated program by its full path (command line or executable).
    captured: u64,
    /// exec: records that name it only by its kernel name (comm): the process was gone (a
    /// zombie) before its command line and executable could be read; not counted in `captured`.
    /// connect: the `In` side of the connections (the listener's end), where `captured` counts
    /// the `Out` side.
    second: u64,
    /// exec: records with the whole command line (the program's path and its one argument):
    /// from /proc, or from the exec tracepoint's stack copy when the process was gone.
    with_arguments: u64,
    agent_cpu_ms_per_1000: f64,
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
    let (paced, reference, keep, second): (Paced, Option<Child>, Matcher, Option<Matcher>) =
        match args.mode.as_str() {
            "exec" => {
                // Unique per run and at most 15 bytes, so the kernel's comm is the whole name.
                let name = format!("egx{}-{}", std::process::id() % 100_000, fastrand::u16(..));
                let child = dir.path().join(&name);
                write_child(&child, args.child_us);
                let forkstat = Command::new("forkstat")
                    .args(["-q", "-e", "exec"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok();
                std::thread::sleep(Duration::from_millis(500));
                let c = child.clone();
                let p = paced(args.rate, args.seconds, args.threads, move || {
                    // posix_spawn: no stdio changes, no pre_exec, inherited environment; one
                    // argument, to count the records that have it.
                    Command::new(&c)
                        .arg(STORM_ARGUMENT)
                        .spawn()
                        .and_then(|mut ch| ch.wait())
                        .is_ok_and(|s| s.success())
                });
                let path = child.to_string_lossy().into_owned();
                let path2 = path.clone();
                let n2 = name.clone();
                (
                    p,
                    forkstat,
                    Box::new(move |r| {
                        r["CommandLine"]
                            .as_str()
                            .is_some_and(|c| c.split(' ').next() == Some(path.as_str()))
                            || r["Executable"].as_str() == Some(path.as_str())
                    }),
                    Some(Box::new(move |r| {
                        r["CommandLine"]
                            .as_str()
                            .is_none_or(|c| c.split(' ').next() != Some(path2.as_str()))
                            && r["Executable"].as_str() != Some(path2.as_str())
                            && (r["Executable"].as_str() == Some(n2.as_str())
                                || r["ExtraDetails"]["Comm"].as_str() == Some(n2.as_str()))
                    })),
                )
            }
            _ => {
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
                let p = paced(args.rate, args.seconds, args.threads, move || {
                    TcpStream::connect(("127.0.0.1", port)).is_ok()
                });
                running.store(false, Ordering::Relaxed);
                let _ = TcpStream::connect(("127.0.0.1", port));
                (
                    p,
                    None,
                    Box::new(move |r| {
                        r["Direction"] == "Out" && r["RemotePort"] == port.to_string().as_str()
                    }),
                    Some(Box::new(move |r| {
                        r["Direction"] == "In" && r["LocalPort"] == port.to_string().as_str()
                    })),
                )
            }
        };
    let gen_cpu =
        rusage_seconds(libc::RUSAGE_SELF) + rusage_seconds(libc::RUSAGE_CHILDREN) - gen_cpu0;
    std::thread::sleep(Duration::from_secs(5)); // windows close, messages flush
    let (cpu1, hwm) = usage(agent.id());
    let reference_cpu = reference.map(|c| {
        let (cpu, _) = usage(c.id());
        stop(c);
        cpu
    });
    stop(agent);
    let load_after = loadavg();
    let kind = if args.mode == "exec" {
        "ProcessCreate"
    } else {
        "ConnectionCreate"
    };
    let with_arguments = if args.mode == "exec" {
        reported(
            &out,
            kind,
            Box::new(|r: &serde_json::Value| {
                r["CommandLine"]
                    .as_str()
                    .is_some_and(|c| c.ends_with(&format!(" {STORM_ARGUMENT}")))
            }),
        )
    } else {
        0
    };
    let captured = reported(&out, kind, keep);
    let second = second.map_or(0, |m| reported(&out, kind, m));
    let generated = paced.generated;
    let per_1000 = |cpu: f64| cpu * 1000.0 / generated.max(1) as f64 * 1000.0;
    RunResult {
        generated,
        achieved_rate: paced.rate(),
        captured,
        second,
        with_arguments,
        agent_cpu_ms_per_1000: per_1000(cpu1 - cpu0),
        agent_peak_rss_kib: hwm,
        reference_cpu_ms_per_1000: reference_cpu.map(per_1000),
        generator_cpu_ms_per_1000: per_1000(gen_cpu),
        load_before,
        load_after,
    }
}

fn main() {
    let Some(args) = parse_args() else { return };
    println!(
        "storm: {} at {}/s for {} s, {} runs, agent {}",
        args.mode,
        args.rate,
        args.seconds,
        args.runs,
        args.binary.display()
    );
    let mut results = Vec::new();
    for i in 0..args.runs {
        let r = run_once(&args);
        let pct = |n: u64| n as f64 * 100.0 / r.generated.max(1) as f64;
        println!(
            "run {}: load {} -> {}; generated {} at {:.0}/s (generator CPU {:.1} ms/1000); captured {} ({:.2} %){}; agent CPU {:.1} ms/1000, peak RSS {} KiB{}",
            i + 1,
            r.load_before,
            r.load_after,
            r.generated,
            r.achieved_rate,
            r.generator_cpu_ms_per_1000,
            r.captured,
            pct(r.captured),
            if args.mode == "exec" {
                format!(
                    ", by comm only {} ({:.2} %), with arguments {} ({:.2} %)",
                    r.second,
                    pct(r.second),
                    r.with_arguments,
                    pct(r.with_arguments)
                )
            } else {
                format!(", In side {} ({:.2} %)", r.second, pct(r.second))
            },
            r.agent_cpu_ms_per_1000,
            r.agent_peak_rss_kib,
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
    let capture = column(&|r| r.captured as f64 * 100.0 / r.generated.max(1) as f64);
    let second = column(&|r| r.second as f64 * 100.0 / r.generated.max(1) as f64);
    let second_label = if args.mode == "exec" {
        "by comm only"
    } else {
        "In side"
    };
    let with_arguments = column(&|r| r.with_arguments as f64 * 100.0 / r.generated.max(1) as f64);
    let cpu = column(&|r| r.agent_cpu_ms_per_1000);
    let rss = column(&|r| r.agent_peak_rss_kib as f64);
    let rate = column(&|r| r.achieved_rate);
    println!(
        "median: achieved {rate:.0}/s, capture {capture:.2} % ({second_label} {second:.2} %), agent CPU {cpu:.1} ms/1000 events, peak RSS {rss:.0} KiB"
    );
    if args.mode == "exec" {
        println!("median: with their arguments {with_arguments:.2} %");
    }
    let mut refs: Vec<f64> = results
        .iter()
        .filter_map(|r| r.reference_cpu_ms_per_1000)
        .collect();
    if !refs.is_empty() {
        let r = median(&mut refs);
        let ratio =
            column(&|r| r.agent_cpu_ms_per_1000 / r.reference_cpu_ms_per_1000.unwrap_or(f64::NAN));
        println!(
            "median forkstat CPU {r:.1} ms/1000 events; agent/forkstat ratio {:.2} (median of per-run ratios {ratio:.2})",
            cpu / r
        );
    }
}
