//! Footprint of the release binary: time to the first message, idle RSS, and RSS over a soak
//! with steady load, and peak RSS through an exec storm (issue 6's budget: first message ≤ 1 s,
//! idle RSS ≤ 6 MiB, flat RSS, peak RSS ≤ 16 MiB through 5,000 execs).
//!
//! ```sh
//! cargo build --release
//! cargo bench --bench footprint -- idle --seconds 60 --runs 5
//! cargo bench --bench footprint -- soak --minutes 10 --rate 200
//! cargo bench --bench footprint -- storm --execs 5000 --runs 3
//! ```
//! Needs root (every collector is on and reads the kernel). `--binary PATH` measures another
//! build (a static or cross-built one under qemu, say). Prints one line per run or sample and
//! the medians.

#[path = "common/proc_stats.rs"]
mod proc_stats;

use proc_stats::{cpu_seconds, median, status_kib, stop};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Args {
    mode: String,
    seconds: u64,
    minutes: u64,
    rate: u64,
    runs: usize,
    /// Execs of one storm run.
    execs: u64,
    binary: PathBuf,
    /// A command prefix (e.g. `qemu-arm-static`) for a binary of another architecture.
    runner: Option<String>,
}

fn parse_args() -> Option<Args> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs this binary without `--bench`: nothing to do then.
    if !argv.iter().any(|a| a == "--bench") {
        println!("footprint: run it with `cargo bench --bench footprint -- idle|soak`");
        return None;
    }
    let mut args = Args {
        mode: "idle".into(),
        seconds: 60,
        minutes: 10,
        rate: 200,
        runs: 5,
        execs: 5000,
        binary: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/edgeguard"),
        runner: None,
    };
    let mut it = argv.into_iter().filter(|a| a != "--bench");
    while let Some(a) = it.next() {
        let mut num = |what: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{what} needs a number"))
        };
        match a.as_str() {
            "idle" | "soak" | "storm" => args.mode = a,
            "--seconds" => args.seconds = num("--seconds"),
            "--minutes" => args.minutes = num("--minutes"),
            "--rate" => args.rate = num("--rate"),
            "--runs" => args.runs = num("--runs") as usize,
            "--execs" => args.execs = num("--execs"),
            "--binary" => args.binary = PathBuf::from(it.next().expect("--binary needs a path")),
            "--runner" => args.runner = Some(it.next().expect("--runner needs a command")),
            other => panic!("unknown argument {other}"),
        }
    }
    Some(args)
}

/// Starts `edgeguard run` (stdout sink) with every collector at the defaults, state in `dir`.
fn start(args: &Args, dir: &std::path::Path) -> Child {
    let mut c = match &args.runner {
        Some(r) => {
            let mut c = Command::new(r);
            c.arg(&args.binary);
            c
        }
        None => Command::new(&args.binary),
    };
    c.args(["run", "--sink", "stdout", "--metrics-addr", "off"])
        .arg("--state-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "starting {}: {e} (cargo build --release first)",
                args.binary.display()
            )
        })
}

/// Reads stdout on a thread; reports when the first line arrived.
fn first_line_timer(child: &mut Child) -> std::sync::mpsc::Receiver<Instant> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut first = true;
        for line in BufReader::new(stdout).lines() {
            if line.is_err() {
                break;
            }
            if first {
                let _ = tx.send(Instant::now());
                first = false;
            }
        }
    });
    rx
}

fn idle(args: &Args) {
    let (mut firsts, mut rss, mut hwm, mut cpu) = (vec![], vec![], vec![], vec![]);
    for run in 1..=args.runs {
        let dir = tempfile::tempdir().expect("state dir");
        let started = Instant::now();
        let mut child = start(args, dir.path());
        let pid = child.id();
        let first = first_line_timer(&mut child);
        let first_ms = first
            .recv_timeout(Duration::from_secs(args.seconds))
            .map(|t| t.duration_since(started).as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN);
        std::thread::sleep(Duration::from_secs(args.seconds).saturating_sub(started.elapsed()));
        let (r, h, c) = (
            status_kib(pid, "VmRSS:"),
            status_kib(pid, "VmHWM:"),
            cpu_seconds(pid),
        );
        stop(child);
        println!(
            "run {run}: first message {first_ms:.0} ms, RSS after {} s {r} KiB (peak {h} KiB), CPU {c:.2} s",
            args.seconds
        );
        firsts.push(first_ms);
        rss.push(r as f64);
        hwm.push(h as f64);
        cpu.push(c);
    }
    println!(
        "median of {}: first message {:.0} ms, idle RSS {:.0} KiB ({:.2} MiB), peak {:.0} KiB, CPU {:.2} s in {} s",
        args.runs,
        median(&mut firsts),
        median(&mut rss),
        median(&mut rss) / 1024.0,
        median(&mut hwm),
        median(&mut cpu),
        args.seconds
    );
}

/// Steady load: `rate` execs of /bin/true a second and a tenth as many loopback connections.
fn soak(args: &Args) {
    let dir = tempfile::tempdir().expect("state dir");
    let mut child = start(args, dir.path());
    let pid = child.id();
    let _lines = first_line_timer(&mut child);
    let stop_load = Arc::new(AtomicBool::new(false));
    let generated = Arc::new(AtomicU64::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let addr = listener.local_addr().expect("address");
    {
        let stop_load = stop_load.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                drop(s);
                if stop_load.load(Ordering::Relaxed) {
                    break;
                }
            }
        });
    }
    let load = {
        let (stop_load, generated, rate) = (stop_load.clone(), generated.clone(), args.rate);
        std::thread::spawn(move || {
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let start = Instant::now();
            let mut i = 0u64;
            while !stop_load.load(Ordering::Relaxed) {
                let due = start + interval.mul_f64(i as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let _ = Command::new("/bin/true").status();
                if i.is_multiple_of(10) {
                    let _ = TcpStream::connect(addr);
                }
                generated.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let started = Instant::now();
    let total = Duration::from_secs(args.minutes * 60);
    let mut samples: Vec<(f64, u64)> = Vec::new();
    while started.elapsed() < total {
        std::thread::sleep(Duration::from_secs(10));
        let s = (started.elapsed().as_secs_f64(), status_kib(pid, "VmRSS:"));
        println!(
            "t={:>4.0} s RSS {} KiB, execs {}",
            s.0,
            s.1,
            generated.load(Ordering::Relaxed)
        );
        samples.push(s);
    }
    stop_load.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr);
    let _ = load.join();
    let (hwm, cpu) = (status_kib(pid, "VmHWM:"), cpu_seconds(pid));
    stop(child);
    let minute = |from: f64, to: f64| {
        let mut v: Vec<f64> = samples
            .iter()
            .filter(|(t, _)| *t > from && *t <= to)
            .map(|(_, r)| *r as f64)
            .collect();
        if v.is_empty() {
            f64::NAN
        } else {
            median(&mut v)
        }
    };
    let end = started.elapsed().as_secs_f64();
    let n = generated.load(Ordering::Relaxed);
    println!(
        "soak {} min at {} execs/s ({n} execs): median RSS minute 2 {:.0} KiB, last minute {:.0} KiB, peak {hwm} KiB; agent CPU {cpu:.1} s ({:.1} ms per 1,000 execs)",
        args.minutes,
        args.rate,
        minute(60.0, 120.0),
        minute(end - 60.0, end),
        cpu * 1000.0 / (n.max(1) as f64) * 1000.0
    );
}

/// Peak RSS through a burst: `execs` execs of /bin/true, as fast as two spawning threads go,
/// once the agent has settled (first message plus 5 s). The peak is taken until the agent has
/// had 10 s to work off what it heard, so it includes the processing, not just the burst.
fn storm(args: &Args) {
    let (mut before, mut after, mut hwm, mut rates) = (vec![], vec![], vec![], vec![]);
    for run in 1..=args.runs {
        let dir = tempfile::tempdir().expect("state dir");
        let mut child = start(args, dir.path());
        let pid = child.id();
        let first = first_line_timer(&mut child);
        let _ = first.recv_timeout(Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(5));
        let b = status_kib(pid, "VmRSS:");
        // VmHWM is only brought up to date when the kernel unmaps memory, so a short peak can
        // be missing from it: sample VmRSS every 20 ms as well and report the larger.
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            std::thread::spawn(move || {
                let mut max = 0;
                while sampling.load(Ordering::Relaxed) {
                    max = max.max(status_kib(pid, "VmRSS:"));
                    std::thread::sleep(Duration::from_millis(20));
                }
                max
            })
        };
        let started = Instant::now();
        let per_thread = args.execs / 2;
        let spawners: Vec<_> = [per_thread, args.execs - per_thread]
            .into_iter()
            .map(|n| {
                std::thread::spawn(move || {
                    for _ in 0..n {
                        let _ = Command::new("/bin/true").status();
                    }
                })
            })
            .collect();
        for s in spawners {
            let _ = s.join();
        }
        let took = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(10));
        let (a, h) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));
        sampling.store(false, Ordering::Relaxed);
        let sampled = sampler.join().unwrap_or(0);
        let h = h.max(sampled);
        stop(child);
        let rate = args.execs as f64 / took;
        println!(
            "run {run}: {} execs in {took:.1} s ({rate:.0}/s): RSS before {b} KiB, after {a} KiB, peak {h} KiB (VmHWM or 20 ms samples of VmRSS, whichever is larger)",
            args.execs
        );
        before.push(b as f64);
        after.push(a as f64);
        hwm.push(h as f64);
        rates.push(rate);
    }
    println!(
        "median of {}: {} execs at {:.0}/s, RSS before {:.0} KiB, after {:.0} KiB, peak {:.0} KiB ({:.2} MiB)",
        args.runs,
        args.execs,
        median(&mut rates),
        median(&mut before),
        median(&mut after),
        median(&mut hwm),
        median(&mut hwm) / 1024.0
    );
}

fn main() {
    let Some(args) = parse_args() else { return };
    match args.mode.as_str() {
        "idle" => idle(&args),
        "storm" => storm(&args),
        _ => soak(&args),
    }
}
