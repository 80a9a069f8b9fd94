//! Load generator: exec and connection storms against a running `edgeguard run`.
//!
//! Runs the release binary with a file sink, generates a storm of known size (a uniquely named
//! script executed R times a second for T seconds, or R TCP connections a second to a local
//! listener, each closed at once), stops the agent with SIGTERM, and compares what the agent
//! reported with what was generated (capture rate). It also reads the agent's CPU time and peak
//! RSS from /proc, and — for the exec storm — runs Debian's `forkstat` (a proc-connector tool) in
//! the same window as a reference for CPU cost.
//!
//! ```sh
//! cargo build --release
//! cargo bench --bench storm -- exec --rate 2000 --seconds 30 --runs 5
//! cargo bench --bench storm -- connect --rate 500 --seconds 30 --runs 5
//! ```
//! Needs root (the collectors read the kernel). Prints one line per run and the medians.

#[path = "common/proc_stats.rs"]
mod proc_stats;

use proc_stats::{cpu_seconds, median, status_kib, stop};
use std::io::Write;
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

/// Runs `work` (which returns how many events it generated) at `rate` per second for `seconds`.
fn paced(rate: u64, seconds: u64, threads: usize, work: impl Fn() + Send + Sync + 'static) -> u64 {
    let work = Arc::new(work);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let total = rate * seconds;
    let per_thread = total / threads as u64;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let work = work.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let interval = Duration::from_secs_f64(threads as f64 / rate as f64);
                for i in 0..per_thread {
                    let due = start + interval.mul_f64(i as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    work();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    eprintln!(
        "  generated {n} in {elapsed:.1} s ({:.0}/s)",
        n as f64 / elapsed
    );
    n
}

/// Picks the payload records a storm generated.
type Matcher = Box<dyn Fn(&serde_json::Value) -> bool>;

struct RunResult {
    generated: u64,
    captured: u64,
    agent_cpu_ms_per_1000: f64,
    agent_peak_rss_kib: u64,
    reference_cpu_ms_per_1000: Option<f64>,
}

fn run_once(args: &Args) -> RunResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let (agent, out) = start_agent(args, dir.path());
    std::thread::sleep(Duration::from_secs(2)); // start-up and first snapshot
    let (cpu0, _) = usage(agent.id());
    let threads = 4;
    let (generated, reference, keep): (u64, Option<Child>, Matcher) = match args.mode.as_str() {
        "exec" => {
            let tag = format!("eg-storm-{}", std::process::id());
            let script = dir.path().join(format!("{tag}.sh"));
            let mut f = std::fs::File::create(&script).expect("script");
            f.write_all(b"#!/bin/sh\nexit 0\n").expect("script");
            drop(f);
            Command::new("chmod")
                .arg("755")
                .arg(&script)
                .status()
                .expect("chmod");
            let forkstat = Command::new("forkstat")
                .args(["-q", "-e", "exec"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok();
            std::thread::sleep(Duration::from_millis(500));
            let s = script.clone();
            let n = paced(args.rate, args.seconds, threads, move || {
                let _ = Command::new(&s).status();
            });
            let tag2 = tag.clone();
            (
                n,
                forkstat,
                Box::new(move |r| r["CommandLine"].as_str().is_some_and(|c| c.contains(&tag2))),
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
            let n = paced(args.rate, args.seconds, threads, move || {
                let _ = TcpStream::connect(("127.0.0.1", port));
            });
            running.store(false, Ordering::Relaxed);
            let _ = TcpStream::connect(("127.0.0.1", port));
            (
                n,
                None,
                Box::new(move |r| {
                    r["Direction"] == "Out" && r["RemotePort"] == port.to_string().as_str()
                }),
            )
        }
    };
    std::thread::sleep(Duration::from_secs(5)); // windows close, messages flush
    let (cpu1, hwm) = usage(agent.id());
    let reference_cpu = reference.map(|c| {
        let (cpu, _) = usage(c.id());
        stop(c);
        cpu
    });
    stop(agent);
    let captured = reported(
        &out,
        if args.mode == "exec" {
            "ProcessCreate"
        } else {
            "ConnectionCreate"
        },
        keep,
    );
    let per_1000 = |cpu: f64| cpu * 1000.0 / generated.max(1) as f64 * 1000.0;
    RunResult {
        generated,
        captured,
        agent_cpu_ms_per_1000: per_1000(cpu1 - cpu0),
        agent_peak_rss_kib: hwm,
        reference_cpu_ms_per_1000: reference_cpu.map(per_1000),
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
        println!(
            "run {}: generated {} captured {} ({:.2} %), agent CPU {:.1} ms/1000, peak RSS {} KiB{}",
            i + 1,
            r.generated,
            r.captured,
            r.captured as f64 * 100.0 / r.generated.max(1) as f64,
            r.agent_cpu_ms_per_1000,
            r.agent_peak_rss_kib,
            r.reference_cpu_ms_per_1000
                .map(|c| format!(", forkstat CPU {c:.1} ms/1000"))
                .unwrap_or_default()
        );
        results.push(r);
    }
    let column =
        |f: &dyn Fn(&RunResult) -> f64| median(&mut results.iter().map(f).collect::<Vec<_>>());
    let capture = column(&|r| r.captured as f64 * 100.0 / r.generated.max(1) as f64);
    let cpu = column(&|r| r.agent_cpu_ms_per_1000);
    let rss = column(&|r| r.agent_peak_rss_kib as f64);
    println!(
        "median: capture {capture:.2} %, agent CPU {cpu:.1} ms/1000 events, peak RSS {rss:.0} KiB"
    );
    let mut refs: Vec<f64> = results
        .iter()
        .filter_map(|r| r.reference_cpu_ms_per_1000)
        .collect();
    if !refs.is_empty() {
        let r = median(&mut refs);
        println!(
            "median forkstat CPU {r:.1} ms/1000 events; agent/forkstat ratio {:.2}",
            cpu / r
        );
    }
}
