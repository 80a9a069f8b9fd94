//! File integrity monitoring under a write storm (issue 16): the release binary follows a
//! temporary host root while this harness appends to one watched file at a steady rate, and
//! reports what the agent made of it: events, the writes they account for (which must be all
//! of them), how many name this harness as the process that wrote (fanotify; none where the
//! agent cannot name writers), the agent's CPU time and peak RSS.
//!
//! ```sh
//! cargo build --release
//! cargo bench --bench fim -- --rate 1000 --seconds 30
//! cargo bench --bench fim -- --rate 1000 --seconds 30 --files 20
//! ```
//! Needs root only as the agent does (it runs every collector). `--files N` spreads the
//! writes over N files of `/etc/cron.d`; `--binary PATH` measures another build.

#[path = "common/proc_stats.rs"]
#[allow(dead_code)] // `median` is for the other benches.
mod proc_stats;

use proc_stats::{cpu_seconds, status_kib, stop};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Args {
    rate: u64,
    seconds: u64,
    files: u64,
    binary: PathBuf,
}

fn parse_args() -> Option<Args> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs this binary without `--bench`: nothing to do then.
    if !argv.iter().any(|a| a == "--bench") {
        println!("fim: run it with `cargo bench --bench fim -- --rate 1000 --seconds 30`");
        return None;
    }
    let mut args = Args {
        rate: 1000,
        seconds: 30,
        files: 1,
        binary: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/edgeguard"),
    };
    let mut it = argv.into_iter().filter(|a| a != "--bench");
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--rate" => args.rate = value().parse().expect("--rate N"),
            "--seconds" => args.seconds = value().parse().expect("--seconds N"),
            "--files" => args.files = value().parse::<u64>().expect("--files N").max(1),
            "--binary" => args.binary = PathBuf::from(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    Some(args)
}

fn append(path: &Path, line: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("append");
    f.write_all(line).expect("write");
}

fn main() {
    let Some(args) = parse_args() else { return };
    let host = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(host.path().join("etc/cron.d")).unwrap();
    std::fs::write(
        host.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n",
    )
    .unwrap();
    let config = state.path().join("twin.json");
    std::fs::write(
        &config,
        r#"{"highPriorityMessageFrequency":"PT1S","lowPriorityMessageFrequency":"PT5S",
            "snapshotFrequency":"PT1H","containerCollectionEnabled":false,
            "fileIntegrityPaths":"/etc/cron.d"}"#,
    )
    .unwrap();
    let mut child = Command::new(&args.binary)
        .args(["run", "--metrics-addr", "off", "--host-root"])
        .arg(host.path())
        .arg("--state-dir")
        .arg(state.path())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the agent starts (cargo build --release first)");
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    // (events, writes accounted, events naming this harness as the writer) per message, from
    // a reader thread.
    let me = std::process::id().to_string();
    let (tx, rx) = mpsc::channel::<(u64, u64, u64)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(m) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let mut events = 0;
            let mut writes = 0;
            let mut named = 0;
            for e in m["Events"].as_array().into_iter().flatten() {
                if e["Name"] != "FileChange" {
                    continue;
                }
                for r in e["Payload"].as_array().into_iter().flatten() {
                    events += 1;
                    if r["ExtraDetails"]["ProcessId"].as_str() == Some(me.as_str()) {
                        named += 1;
                    }
                    writes += r["ExtraDetails"]["Writes"]
                        .as_str()
                        .and_then(|w| w.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
            if tx.send((events, writes, named)).is_err() {
                break;
            }
        }
    });
    let ready = state.path().join("file-integrity.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "the collector did not start in 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu_before = cpu_seconds(pid);
    let files: Vec<PathBuf> = (0..args.files)
        .map(|i| host.path().join(format!("etc/cron.d/storm{i}")))
        .collect();
    let total = args.rate * args.seconds;
    let start = Instant::now();
    for i in 0..total {
        // Paced: write i is due at i / rate seconds.
        let due = start + Duration::from_secs_f64(i as f64 / args.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        append(
            &files[(i % args.files) as usize],
            format!("{i}\n").as_bytes(),
        );
    }
    let wrote_in = start.elapsed();
    let (mut events, mut writes, mut named) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(30);
    while writes < total && Instant::now() < deadline {
        if let Ok((e, w, n)) = rx.recv_timeout(Duration::from_millis(500)) {
            events += e;
            writes += w;
            named += n;
        }
    }
    let cpu = cpu_seconds(pid) - cpu_before;
    let peak_kib = status_kib(pid, "VmHWM:");
    stop(child);
    println!(
        "fim: {total} writes to {} file(s) in {:.1} s ({:.0}/s): {events} FileChange events \
         ({named} naming this harness as the writer), {writes} writes accounted ({}), agent CPU {cpu:.2} s ({:.1} % of one core), peak RSS {} KiB",
        args.files,
        wrote_in.as_secs_f64(),
        total as f64 / wrote_in.as_secs_f64(),
        if writes == total { "all" } else { "NOT all" },
        100.0 * cpu / wrote_in.as_secs_f64(),
        peak_kib,
    );
}
