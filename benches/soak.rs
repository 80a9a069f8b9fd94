//! Long soak of the real agent as IoT Edge runs it (issue 18, item 7): the release binary with
//! edgeAgent's environment against the edgeHub and workload doubles of `tests/support`, under
//! mixed load for hours, with its RSS and open descriptors sampled and every generated event
//! accounted for.
//!
//! ```sh
//! cargo bench --bench soak -- --minutes 120            # root; starts dockerd if needed
//! cargo bench --bench soak -- --minutes 10 --outage-every 3
//! cargo bench --bench soak -- --minutes 60 --binary dist/amd64/edgeguard   # the image's binary
//! ```
//! Load, all at once for `--minutes`:
//! - an exec every 100 ms (`sh -c 'sleep 0.2; true' eg-soak-<run>-<n>`: the marker is the
//!   shell's `$0`, so its ProcessCreate can be told apart);
//! - a loopback TCP connection every 100 ms (load only: connections are aggregated);
//! - a failed sshd login every 500 ms, one user name per line (`u<n>`), appended to the host
//!   root's auth log;
//! - a container run every `--container-every` seconds (default 60; `docker run --rm` of a
//!   busybox `FROM scratch` image with a unique name), whose `start` engine event is counted;
//! - a desired-properties patch every minute (`lowPriorityMessageFrequency` PT1M ↔ PT2M);
//! - edgeHub stopped for 60 s every `--outage-every` minutes (default 10).
//!
//! Timers are short (High every 10 s, Low every 1–2 min) so messages flow the whole time; the
//! rest of the twin is at its defaults. At the end the harness calls the `flush` direct method and
//! waits for every marked event; whatever is missing must be matched by drops the agent counted
//! (`edgeguard status --json`). It prints a sample a minute (RSS, descriptors, threads), the
//! verdict, and exits 1 when an event is unaccounted for or memory / descriptors grew after
//! warm-up (the first `--warmup` minutes, default 10: the anonymous part of RSS may rise by at
//! most 10 % over the warm-up level, descriptors by at most 8). The verdict is on anonymous
//! memory (heap, stacks) because the file-backed rest is the binary's own clean pages, which
//! `src/memory.rs` hands back after start-up and which come back as code paths run for the
//! first time: they are shared and reclaimable, and they grow with coverage, not with time.
//! Both are printed.
//!
//! The host root is a temporary directory in which the machine's `proc`, `sys`, `dev` and `etc`
//! are bind-mounted in the agent's own mount namespace (`tests/support/agent.rs`), so the kernel
//! sources see the real machine while the auth log is the harness's.

#[path = "../tests/support/mod.rs"]
mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::device::{EdgeDevice, ModuleIdentity, module_env};
use support::edgehub::Telemetry;

const AUTH_LOG: &str = "var/log/auth.log";

struct Args {
    minutes: u64,
    warmup: u64,
    outage_every: u64,
    container_every: u64,
    /// `--binary PATH`: another build (the static image binary, say); this build's own
    /// `edgeguard` by default.
    binary: Option<PathBuf>,
}

fn parse_args() -> Option<Args> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs this binary without `--bench`: nothing to do then.
    if !argv.iter().any(|a| a == "--bench") {
        println!("soak: run it with `cargo bench --bench soak -- --minutes N`");
        return None;
    }
    let mut args = Args {
        minutes: 120,
        warmup: 10,
        outage_every: 10,
        container_every: 60,
        binary: None,
    };
    let mut it = argv.into_iter().filter(|a| a != "--bench");
    while let Some(a) = it.next() {
        if a == "--binary" {
            let Some(path) = it.next() else {
                eprintln!("soak: --binary needs a path");
                std::process::exit(2);
            };
            args.binary = Some(PathBuf::from(path));
            continue;
        }
        let slot = match a.as_str() {
            "--minutes" => &mut args.minutes,
            "--warmup" => &mut args.warmup,
            "--outage-every" => &mut args.outage_every,
            "--container-every" => &mut args.container_every,
            other => {
                eprintln!("soak: unknown argument {other}");
                std::process::exit(2);
            }
        };
        *slot = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("soak: {a} needs a number");
            std::process::exit(2);
        });
    }
    args.warmup = args.warmup.min(args.minutes.saturating_sub(1));
    Some(args)
}

fn identity() -> ModuleIdentity {
    ModuleIdentity {
        hub: "soakhub.azure-devices.net",
        device: "soak-device",
        module: "edgeguard",
        generation: "638000000000000001",
        key: B64.encode([23u8; 32]),
    }
}

fn agent_config(low: &str) -> Value {
    json!({
        "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration": {
            "highPriorityMessageFrequency": {"value": "PT10S"},
            "lowPriorityMessageFrequency": {"value": low},
        }
    })
}

/// One sample of the agent process.
#[derive(Clone, Copy)]
struct Sample {
    minute: f64,
    rss_kib: u64,
    anon_kib: u64,
    fds: usize,
    threads: u64,
}

fn sample(pid: u32, started: Instant) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Sample {
        minute: started.elapsed().as_secs_f64() / 60.0,
        rss_kib: field("VmRSS:")?,
        anon_kib: field("RssAnon:")?,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count(),
        threads: field("Threads:")?,
    })
}

/// What the load generators made, shared with the main loop.
#[derive(Default)]
struct Made {
    logins: u64,
    execs: Vec<String>,
    containers: Vec<String>,
    container_failures: u64,
    connections: u64,
}

fn append_login(host: &Path, n: u64) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(host.join(AUTH_LOG))
        .expect("auth.log opens");
    let line = format!(
        "Dec  1 21:00:00 edge sshd[{pid}]: Failed password for u{n} from 198.51.100.7 port {port} ssh2\n",
        pid = 1000 + n % 30000,
        port = 40000 + n % 20000,
    );
    f.write_all(line.as_bytes()).expect("auth.log written");
}

/// Runs `tick` every `every` until `stop`; `tick` gets the iteration number.
fn every(stop: Arc<AtomicBool>, every: Duration, mut tick: impl FnMut(u64) + Send + 'static) {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tick(n);
            n += 1;
            let next = start + every * n as u32;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    });
}

/// Acknowledged messages' events, by name.
fn events<'a>(telemetry: &'a [Telemetry], name: &'a str) -> impl Iterator<Item = Value> + 'a {
    telemetry
        .iter()
        .filter(|t| t.puback_sent)
        .filter_map(|t| serde_json::from_slice::<Value>(&t.payload).ok())
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .filter(move |e| e["Name"] == name)
        .flat_map(|e| e["Payload"].as_array().cloned().unwrap_or_default())
}

struct Delivered {
    logins: HashSet<u64>,
    execs: HashSet<String>,
    containers: HashSet<String>,
}

fn delivered(telemetry: &[Telemetry]) -> Delivered {
    Delivered {
        logins: events(telemetry, "Login")
            .filter_map(|p| p["UserName"].as_str()?.strip_prefix('u')?.parse().ok())
            .collect(),
        execs: events(telemetry, "ProcessCreate")
            .filter_map(|p| {
                let cmd = p["CommandLine"].as_str()?;
                let at = cmd.find("eg-soak-")?;
                Some(cmd[at..].split(' ').next()?.to_string())
            })
            .collect(),
        containers: events(telemetry, "ContainerEvent")
            .filter(|p| p["Action"] == "start")
            .filter_map(|p| {
                Some(
                    p["ContainerName"]
                        .as_str()?
                        .trim_start_matches('/')
                        .to_string(),
                )
            })
            .collect(),
    }
}

fn status(state: &Path) -> Value {
    let out = support::agent::command()
        .args(["status", "--json", "--state-dir"])
        .arg(state)
        .output()
        .expect("edgeguard status runs");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn main() {
    let Some(args) = parse_args() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let ok = rt.block_on(soak(&args));
    std::process::exit(if ok { 0 } else { 1 });
}

async fn soak(args: &Args) -> bool {
    let id = identity();
    let doubles = EdgeDevice::start(&id, |cfg| cfg.initial_desired = agent_config("PT1M")).await;
    let EdgeDevice {
        pki: _pki,
        hub,
        workload,
    } = doubles;
    let host = tempfile::tempdir().expect("host root");
    std::fs::create_dir_all(host.path().join("var/log")).expect("var/log");
    std::fs::write(host.path().join(AUTH_LOG), b"").expect("auth.log");
    let state = tempfile::tempdir().expect("state dir");
    let image = support::docker::busybox_image();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();

    let binary = args
        .binary
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_edgeguard")));
    let log_path = state.path().join("agent.log");
    let log = std::fs::File::create(&log_path).expect("agent log");
    let trees = ["proc", "sys", "dev", "etc"];
    let mut command = support::agent::command_with_trees_of(&binary, host.path(), &trees);
    let mut agent = support::agent::ChildGuard(
        support::agent::as_module(
            &mut command,
            module_env(&id, &workload.uri()),
            hub.port(),
            host.path(),
            state.path(),
            log,
        )
        .spawn()
        .expect("edgeguard starts"),
    );
    let pid = agent.id();
    let positions = state.path().join("login-positions.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(hub.is_connected() && positions.exists()) {
        if Instant::now() > deadline {
            eprintln!(
                "soak: the agent did not connect and follow the auth log in 60 s; see {}",
                log_path.display()
            );
            let _ = agent.kill();
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "soak: {} minutes, agent pid {pid}, run {run}, log {}",
        args.minutes,
        log_path.display()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(Mutex::new(Made::default()));
    // Execs, reaped as they end.
    {
        let made = made.clone();
        let run = run.clone();
        let children: Arc<Mutex<Vec<Child>>> = Arc::default();
        every(stop.clone(), Duration::from_millis(100), move |n| {
            let marker = format!("eg-soak-{run}-{n}");
            let mut kids = children.lock().unwrap();
            kids.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
            if let Ok(c) = Command::new("/bin/sh")
                .args(["-c", "sleep 0.2; true", &marker])
                .stdin(Stdio::null())
                .spawn()
            {
                kids.push(c);
                made.lock().unwrap().execs.push(marker);
            }
        });
    }
    // Loopback connections.
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        let port = listener.local_addr().expect("bound").port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                drop(conn);
            }
        });
        let made = made.clone();
        every(stop.clone(), Duration::from_millis(100), move |_| {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                made.lock().unwrap().connections += 1;
            }
        });
    }
    // Logins.
    {
        let made = made.clone();
        let host = host.path().to_path_buf();
        every(stop.clone(), Duration::from_millis(500), move |n| {
            append_login(&host, n);
            made.lock().unwrap().logins = n + 1;
        });
    }
    // Container churn.
    {
        let made = made.clone();
        let run = run.clone();
        every(
            stop.clone(),
            Duration::from_secs(args.container_every),
            move |n| {
                let name = format!("eg-soak-{run}-c{n}");
                let (ok, _, err) =
                    support::docker::docker(&["run", "--rm", "--name", &name, image, "true"]);
                let mut m = made.lock().unwrap();
                if ok {
                    m.containers.push(name);
                } else {
                    m.container_failures += 1;
                    eprintln!("soak: docker run {name} failed: {}", err.trim());
                }
            },
        );
    }

    // The main loop: samples every 10 s, a twin change every minute, edgeHub outages.
    let started = Instant::now();
    let total = Duration::from_secs(args.minutes * 60);
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut next_twin = Duration::from_secs(60);
    let mut next_outage = Duration::from_secs(args.outage_every * 60);
    let mut outage_until: Option<Duration> = None;
    let mut twin_changes = 0u64;
    let mut outages = 0u64;
    let mut agent_died = false;
    while started.elapsed() < total {
        let now = started.elapsed();
        if now >= next_sample {
            match sample(pid, started) {
                Some(s) => {
                    if samples.len().is_multiple_of(6) {
                        println!(
                            "minute {:>6.1}: RSS {:>6} KiB ({:>6} anonymous), {:>3} fds, {:>2} threads, {} messages",
                            s.minute,
                            s.rss_kib,
                            s.anon_kib,
                            s.fds,
                            s.threads,
                            hub.telemetry().len()
                        );
                    }
                    samples.push(s);
                }
                None => {
                    agent_died = true;
                    eprintln!(
                        "soak: the agent is gone at {:.1} min",
                        now.as_secs_f64() / 60.0
                    );
                    break;
                }
            }
            next_sample += Duration::from_secs(10);
        }
        if now >= next_twin {
            twin_changes += 1;
            let low = if twin_changes % 2 == 1 {
                "PT2M"
            } else {
                "PT1M"
            };
            hub.set_desired_patch(agent_config(low));
            next_twin += Duration::from_secs(60);
        }
        if let Some(until) = outage_until
            && now >= until
        {
            hub.restart().await;
            outage_until = None;
        }
        if args.outage_every > 0 && now >= next_outage && outage_until.is_none() {
            outages += 1;
            println!(
                "minute {:>6.1}: edgeHub stops for 60 s",
                now.as_secs_f64() / 60.0
            );
            hub.stop().await;
            outage_until = Some(now + Duration::from_secs(60));
            next_outage += Duration::from_secs(args.outage_every * 60);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    if outage_until.is_some() {
        hub.restart().await;
    }
    let load_end = Instant::now();

    // Everything out, then count.
    let flushed = if agent_died {
        None
    } else {
        let _ = hub.wait_connected(Duration::from_secs(120)).await;
        Some(
            hub.invoke_method("flush", json!({}), Duration::from_secs(120))
                .await,
        )
    };
    let made = std::mem::take(&mut *made.lock().unwrap());
    // Until every marked event is upstream (or 3 minutes): the generators' last events may
    // reach the agent after the flush, so it is asked again every 10 s.
    let deadline = Instant::now() + Duration::from_secs(180);
    let got = loop {
        let got = delivered(&hub.telemetry());
        let complete = (0..made.logins).all(|n| got.logins.contains(&n))
            && made.execs.iter().all(|e| got.execs.contains(e))
            && made.containers.iter().all(|c| got.containers.contains(c));
        if complete || agent_died || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        let _ = hub
            .invoke_method("flush", json!({}), Duration::from_secs(30))
            .await;
    };
    let report = status(state.path());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let exited = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = agent.try_wait() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = agent.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // The verdict.
    let lost_logins = (0..made.logins).filter(|n| !got.logins.contains(n)).count() as u64;
    let lost_execs = made
        .execs
        .iter()
        .filter(|e| !got.execs.contains(*e))
        .count() as u64;
    let lost_containers = made
        .containers
        .iter()
        .filter(|c| !got.containers.contains(*c))
        .count() as u64;
    let drops: BTreeMap<String, u64> = report["drops"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let dropped: u64 = drops.values().sum();
    let lost = lost_logins + lost_execs + lost_containers;
    let warm: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.minute >= args.warmup as f64)
        .collect();
    let (rss_min, rss_max) = min_max(warm.iter().map(|s| s.rss_kib));
    let (anon_min, anon_max) = min_max(warm.iter().map(|s| s.anon_kib));
    let (fd_min, fd_max) = min_max(warm.iter().map(|s| s.fds as u64));
    let at_warmup = warm.first().copied();
    let last = samples.last().copied();
    // Medians of the first and the last 10 minutes after warm-up (60 samples each).
    let first_anon = median(warm.iter().take(60).map(|s| s.anon_kib).collect());
    let last_anon = median(warm.iter().rev().take(60).map(|s| s.anon_kib).collect());
    let first_rss = median(warm.iter().take(60).map(|s| s.rss_kib).collect());
    let last_rss = median(warm.iter().rev().take(60).map(|s| s.rss_kib).collect());
    println!("---");
    println!(
        "generated: {} logins, {} execs, {} containers ({} docker run failures), {} connections; {} twin changes, {} edgeHub outages",
        made.logins,
        made.execs.len(),
        made.containers.len(),
        made.container_failures,
        made.connections,
        twin_changes,
        outages
    );
    println!(
        "missing upstream: {lost_logins} logins, {lost_execs} execs, {lost_containers} container starts; drops the agent counted: {dropped} {drops:?}"
    );
    println!(
        "messages: {} received by edgeHub, {} acknowledged; flush: {:?}; load ended {:.1} s before the count",
        hub.telemetry().len(),
        hub.telemetry().iter().filter(|t| t.puback_sent).count(),
        flushed
            .as_ref()
            .map(|r| r.as_ref().map(|(s, _)| *s).map_err(|e| format!("{e:?}"))),
        load_end.elapsed().as_secs_f64()
    );
    if let (Some(w), Some(l)) = (at_warmup, last) {
        println!(
            "after warm-up ({} min), medians of the first and last 10 min: anonymous {first_anon} → {last_anon} KiB (range {anon_min}..{anon_max}), RSS {first_rss} → {last_rss} KiB (range {rss_min}..{rss_max}); fds {fd_min}..{fd_max} (at warm-up {}, last {}), threads {}",
            args.warmup, w.fds, l.fds, l.threads
        );
    }
    println!("agent exit after SIGTERM: {exited:?}");
    let mut ok = true;
    if agent_died {
        println!("FAIL: the agent died");
        ok = false;
    }
    if lost > dropped {
        println!("FAIL: {lost} events missing, only {dropped} counted as dropped");
        ok = false;
    }
    if let Some(w) = at_warmup {
        if last_anon > first_anon + first_anon / 10 {
            println!(
                "FAIL: anonymous memory grew after warm-up: {first_anon} → {last_anon} KiB (medians of the first and last 10 min)"
            );
            ok = false;
        }
        if fd_max > w.fds as u64 + 8 {
            println!("FAIL: descriptors grew after warm-up: {} → {fd_max}", w.fds);
            ok = false;
        }
    }
    if !exited.is_some_and(|s| s.success()) {
        println!("FAIL: no clean exit after SIGTERM");
        ok = false;
    }
    println!("{}", if ok { "PASS" } else { "see FAIL lines" });
    if !ok {
        let keep: PathBuf = std::env::temp_dir().join(format!("edgeguard-soak-{run}.log"));
        let _ = std::fs::copy(&log_path, &keep);
        println!("agent log kept at {}", keep.display());
    }
    ok
}

fn min_max(values: impl Iterator<Item = u64>) -> (u64, u64) {
    values.fold((u64::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

fn median(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 2]
}
