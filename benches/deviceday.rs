//! Cost of a device-day (issue 19, item 3): the release binary run as IoT Edge runs it (edgeAgent's
//! environment, against the edgeHub and workload doubles of `tests/support`, as in
//! `benches/soak.rs`) through a simulated day, with what edgeHub received priced as IoT Hub bills
//! it: device-to-cloud messages in 4 KB units, a message of N body bytes costing
//! max(1, ceil(N / 4096)) units.
//!
//! ```sh
//! cargo bench --bench deviceday                                   # root; both profiles, K = 240
//! cargo bench --bench deviceday -- --scale 1440 --profile busy    # a one-minute day
//! cargo bench --bench deviceday -- --binary target/release/edgeguard
//! ```
//! Options: `--scale K` (default 240, so a day takes 6 minutes), `--profile idle|busy|both`
//! (default both, idle first), `--binary PATH` (default `target/release/edgeguard` of this
//! checkout, waited for while it is missing, e.g. during a rebuild), `--commands N` (distinct
//! command lines of the busy profile's execs, default 8).
//!
//! # Method: a scaled day
//!
//! Every time setting of the twin is sent at its default divided by K, the defaults read from
//! the agent's own code (`edgeguard::config::Config::default()`, not copied here):
//! `highPriorityMessageFrequency`, `lowPriorityMessageFrequency`, `snapshotFrequency`, every
//! `aggregationInterval*` and `heartbeatFrequency`, as the module twin's desired properties
//! (the rest of the twin at its defaults). The harness checks the agent's reported properties
//! say it uses exactly those values. Activity is multiplied by K:
//! - **busy**: an exec a second (`/bin/sh -c : eg-day-<run>-<i>`, `--commands` distinct
//!   command lines in rotation, as a device's periodic scripts and health checks repeat), a
//!   loopback TCP connection a second (to one listener, closed with a reset so no TIME_WAIT
//!   piles up), an sshd login an hour that first fails then is accepted (PAM failure,
//!   `Failed password`, `Accepted password`, session opened: appended to the host root's auth
//!   log as `soak.rs` does; the client address changes every hour, see below), and a container
//!   restart an hour (`docker restart` of a busybox `FROM scratch` container as `soak.rs`
//!   builds it), each K times as often;
//! - **idle**: no generated activity. The machine's own background (its processes,
//!   connections, whatever else runs here, such as builds) still happens and is measured too:
//!   the ProcessCreate and ConnectionCreate lines say how much of it was the harness's.
//!
//! In both profiles the device runs two sleeping busybox containers labelled as edgeAgent's
//! modules (the agent itself runs as a process), and the host root shows this machine's
//! `proc`, `sys`, `dev`, `etc`, `usr` and `var/lib` (bind-mounted in the agent's own mount
//! namespace, `tests/support/agent.rs`) with the `bin`/`lib`/`sbin` links, so the snapshots
//! (software inventory, baseline, system information) have a real system's size, while
//! `var/log` is the harness's own.
//!
//! The day starts once the agent is up and its start-up snapshots are out: the harness calls
//! the `flush` direct method, waits until edgeHub acknowledged everything, and counts from
//! there (what came before is printed as "start-up", not part of the day: a device pays it per
//! boot). The day lasts 86,400 / K seconds; the generators then stop, and 2 s later the harness
//! calls `flush` again, so events still queued or in open aggregation windows count in this
//! day, and waits until edgeHub acknowledged everything. Since the run is one day, its messages,
//! bytes and units are the per-day figures. Units per event kind are approximate: each
//! message's bytes and units are split over its events in proportion to each event's
//! serialized size (so the envelope is shared out too). A 13-hour snapshot timer gives a day
//! one or two snapshot rounds depending on where it starts (a real day averages 1.85): the
//! harness prints the rounds it saw, what one round cost, and the day's units had it held the
//! average (an estimate beside the measured figure, which is what the goals are judged on).
//! Drops are the agent's own counts (the `status` direct method, the report
//! `edgeguard status --json` prints, as `soak.rs` reads it, without an exec the agent would
//! see; and the day's `DroppedEventsStatistics`). Goals: at most 100 units a day idle,
//! 1,000 busy, nothing dropped. The harness exits 0 whatever the verdict (it is a measurement),
//! non-zero only when it could not measure. The agent's log and the day's messages (JSON
//! lines) are kept in the temporary directory (`edgeguard-deviceday-<run>-<profile>.*`).
//!
//! # What is not scaled
//!
//! Periods and limits inside the agent that are not twin keys run at real speed, so the
//! scaled day meets them K times more often than a real day does (printed at start too):
//! - wall-clock limits of detection: one alert per rule and subject per 10 min, at most 60
//!   alerts a minute per rule, `login-brute-force` (10 failures from one origin within 5 min:
//!   the harness changes the client address every scaled hour so that K-times-faster logins
//!   from one address do not trip it when a real day would not), the threshold rules of
//!   `rules.json` (`sudo-failures` 3 in 5 min, `ransomware-like` 20 in 1 min): a scaled day can
//!   raise alerts a real day would not, and repeat fewer (see "alerts by rule");
//! - the hotplug limiter (6 events a device and 120 in all a minute): container restarts add
//!   and remove veth interfaces K times as often (its drops show as `rate_limited`);
//! - file-change coalescing (1 s): more writes merged than in a real day;
//! - polls of the change detectors (accounts 5 s, packages 5 s, legacy firewall tables 1 s,
//!   hardware rescan 5 s and modules 30 s, file-watch re-arm 5 min, auth log 1 s and its
//!   30 s PAM hold, the /proc scan fallback 1 s): they report changes only, so they change
//!   latency, not counts;
//! - the heartbeat's 1 s floor: above K = 300 the scaled interval is below it, and the day has
//!   fewer heartbeats than a real one (the harness says so);
//! - `behaviourLearningPeriod` (24 h) is left at its default: the whole scaled day is learning,
//!   as a real device's first day; later days may add `behaviour-anomaly` alerts;
//! - recommendations compare the timers with the defaults (`under-utilised-messages` wants them
//!   shorter than PT7M / PT5H), so the scaled timers may add that recommendation;
//! - the machine's background runs at real speed: the scaled day holds 1/K of a real day's
//!   (repeated programs aggregate the same; distinct command lines of a real day would be many
//!   more);
//! - the end-of-day flush closes the aggregation windows early and may cut a message or two
//!   that a real day would have merged into the next one;
//! - a burst of activity lasts as long as it takes (a `docker restart` is about a second of
//!   events): against a high-priority timer of 420 s / K its events may be split over more
//!   messages than in a real day.

#[path = "../tests/support/mod.rs"]
mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use edgeguard::config::{CONFIG_OBJECT, Config, format_duration, parse_duration};
use edgeguard::event::EventKind;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use support::device::{EdgeDevice, ModuleIdentity, module_env};
use support::edgehub::{EdgeHub, Telemetry};

const AUTH_LOG: &str = "var/log/auth.log";
const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3_600);
/// IoT Hub meters device-to-cloud messages in blocks of this many bytes.
const UNIT: usize = 4096;
/// IoT Hub meters twin operations in blocks of this many bytes.
const TWIN_UNIT: usize = 512;
const GOAL_IDLE: f64 = 100.0;
const GOAL_BUSY: f64 = 1_000.0;
/// Labels edgeAgent puts on its modules' containers (`src/container/cache.rs`, `drift.rs`).
const EDGE_OWNER: &str = "net.azure-devices.edge.owner=Microsoft.Azure.Devices.Edge.Agent";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    Idle,
    Busy,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Idle => "idle",
            Profile::Busy => "busy",
        }
    }
    fn goal(self) -> f64 {
        match self {
            Profile::Idle => GOAL_IDLE,
            Profile::Busy => GOAL_BUSY,
        }
    }
}

struct Args {
    scale: u32,
    profiles: Vec<Profile>,
    binary: PathBuf,
    commands: u32,
}

fn usage_exit(msg: &str) -> ! {
    eprintln!("deviceday: {msg}");
    eprintln!(
        "usage: cargo bench --bench deviceday -- [--scale K] [--profile idle|busy|both] [--binary PATH] [--commands N]"
    );
    std::process::exit(2);
}

fn parse_args() -> Option<Args> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs this binary without `--bench`: nothing to do then.
    if !argv.iter().any(|a| a == "--bench") {
        println!("deviceday: run it with `cargo bench --bench deviceday -- [--scale K]`");
        return None;
    }
    let mut args = Args {
        scale: 240,
        profiles: vec![Profile::Idle, Profile::Busy],
        binary: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/edgeguard"),
        commands: 8,
    };
    let mut it = argv.into_iter().filter(|a| a != "--bench");
    while let Some(a) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage_exit(&format!("{a} needs a value")));
        let number = || -> u32 {
            value
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .unwrap_or_else(|| usage_exit(&format!("{a} needs a positive integer")))
        };
        match a.as_str() {
            "--scale" => args.scale = number(),
            "--commands" => args.commands = number(),
            "--binary" => args.binary = PathBuf::from(&value),
            "--profile" => {
                args.profiles = match value.as_str() {
                    "idle" => vec![Profile::Idle],
                    "busy" => vec![Profile::Busy],
                    "both" => vec![Profile::Idle, Profile::Busy],
                    _ => usage_exit("--profile is idle, busy or both"),
                }
            }
            other => usage_exit(&format!("unknown argument {other}")),
        }
    }
    Some(args)
}

fn identity() -> ModuleIdentity {
    ModuleIdentity {
        hub: "dayhub.azure-devices.net",
        device: "day-device",
        module: "edgeguard",
        generation: "638000000000000019",
        key: B64.encode([19u8; 32]),
    }
}

/// One twin time setting: its key, the agent's default and the value sent.
struct Setting {
    key: String,
    default: Duration,
    scaled: Duration,
}

/// Every time setting of the twin at its default (from the agent's code) divided by `k`.
fn scaled_settings(k: u32) -> Vec<Setting> {
    let d = Config::default();
    let mut keys: Vec<(String, Duration)> = vec![
        (
            "highPriorityMessageFrequency".into(),
            d.high_priority_message_frequency,
        ),
        (
            "lowPriorityMessageFrequency".into(),
            d.low_priority_message_frequency,
        ),
        ("snapshotFrequency".into(), d.snapshot_frequency),
    ];
    for kind in EventKind::AGGREGATABLE {
        let interval = d
            .aggregation(kind)
            .expect("aggregation is on by default")
            .interval;
        keys.push((format!("aggregationInterval{}", kind.name()), interval));
    }
    keys.push(("heartbeatFrequency".into(), d.heartbeat_frequency));
    keys.push((
        "snapshotRefreshFrequency".into(),
        d.snapshot_refresh_frequency,
    ));
    keys.into_iter()
        .map(|(key, default)| Setting {
            key,
            default,
            scaled: default / k,
        })
        .collect()
}

fn desired(settings: &[Setting]) -> Value {
    let object: serde_json::Map<String, Value> = settings
        .iter()
        .map(|s| (s.key.clone(), json!({ "value": format_duration(s.scaled) })))
        .collect();
    json!({ CONFIG_OBJECT: object })
}

/// What runs at real speed whatever K is (see the module documentation), with the values the
/// agent's code has where it exports them.
fn not_scaled() -> Vec<String> {
    use edgeguard::collectors::{files, firewall, hardware, inventory, login, process, users};
    use edgeguard::detect;
    let s = |d: Duration| format_duration(d);
    vec![
        format!(
            "detection limits: one alert per rule and subject per {}, at most {} a minute per rule, login-brute-force at {} failures from one origin within {} (the harness changes the client address every scaled hour), threshold rules of rules.json (sudo-failures 3 in PT5M, ransomware-like 20 in PT1M): alerts a real day would not raise, fewer repeats",
            s(detect::SUPPRESSION),
            detect::MAX_ALERTS_PER_MINUTE,
            detect::BRUTE_FORCE_THRESHOLD,
            s(detect::BRUTE_FORCE_WINDOW)
        ),
        format!(
            "hotplug limiter: {} events a device and {} in all a minute (container restarts add and remove veth interfaces K times as often; drops show as rate_limited)",
            hardware::PER_DEVICE_PER_MINUTE,
            hardware::ALL_PER_MINUTE
        ),
        format!(
            "file-change coalescing window {}: more writes merged than in a real day",
            s(files::WINDOW)
        ),
        format!(
            "change-detector polls (report changes only: latency, not counts): accounts {}, packages {}, legacy firewall tables {}, hardware rescan {} and modules {}, file-watch re-arm {}, auth log {} with a {} PAM hold, /proc scan fallback {}",
            s(users::WATCH_INTERVAL),
            s(inventory::WATCH_INTERVAL),
            s(firewall::monitor::LEGACY_INTERVAL),
            s(hardware::RESCAN_INTERVAL),
            s(hardware::MODULES_INTERVAL),
            s(files::REARM_EVERY),
            s(login::LoginOptions::default().poll),
            s(login::HOLD),
            s(process::SCAN_INTERVAL)
        ),
        format!(
            "heartbeat floor {}: a scaled heartbeatFrequency below it gives fewer heartbeats than a real day",
            s(edgeguard::heartbeat::MIN_INTERVAL)
        ),
        format!(
            "behaviourLearningPeriod {} left at its default: the whole scaled day is learning (a real device's first day); later days may add behaviour-anomaly alerts",
            s(Config::default().behaviour_learning_period)
        ),
        "recommendations compare the timers with the defaults (under-utilised-messages wants them shorter than PT7M / PT5H): the scaled timers may add that recommendation".into(),
        "the machine's own background runs at real speed: the scaled day holds 1/K of a real day's".into(),
        "the end-of-day flush closes aggregation windows early and may cut a message or two a real day would have merged".into(),
        "bursts take real time (a docker restart is about a second of events): against the scaled high-priority timer they may be split over more messages than in a real day".into(),
    ]
}

/// Waits until `binary` exists and has not changed for 2 s (another build may be replacing it).
fn wait_for_binary(binary: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut said = false;
    let mut last: Option<SystemTime> = None;
    loop {
        let now = std::fs::metadata(binary).and_then(|m| m.modified()).ok();
        if now.is_some() && now == last {
            return true;
        }
        if now.is_none() && !said {
            println!(
                "deviceday: waiting for {} (being rebuilt?)",
                binary.display()
            );
            said = true;
        }
        if Instant::now() > deadline {
            return false;
        }
        last = now;
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// A host root showing this machine's trees, with a `var/log` of its own; returns the trees
/// to bind-mount.
fn host_root(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir.join("var/log")).expect("var/log");
    std::fs::write(dir.join(AUTH_LOG), b"").expect("auth.log");
    let mut trees: Vec<String> = ["proc", "sys", "dev", "etc", "usr", "var/lib"]
        .iter()
        .filter(|t| Path::new("/").join(t).is_dir())
        .map(|t| t.to_string())
        .collect();
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let path = Path::new("/").join(top);
        match std::fs::read_link(&path) {
            Ok(target) if target.is_relative() => {
                std::os::unix::fs::symlink(&target, dir.join(top)).expect("a link");
            }
            _ if path.is_dir() => trees.push(top.to_string()),
            _ => {}
        }
    }
    trees
}

/// Runs `tick` every `every` until `stop`; `tick` gets the iteration number. Waits in short
/// slices, so a slow generator (a restart a scaled hour) stops as soon as the day ends.
fn every(
    stop: Arc<AtomicBool>,
    every: Duration,
    mut tick: impl FnMut(u64) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tick(n);
            n += 1;
            let next = start + every.mul_f64(n as f64);
            while let Some(wait) = next.checked_duration_since(Instant::now()) {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(wait.min(Duration::from_millis(50)));
            }
        }
    })
}

/// What the generators made.
#[derive(Default, Clone)]
struct Made {
    execs: u64,
    exec_failures: u64,
    connections: u64,
    connection_failures: u64,
    logins: u64,
    restarts: u64,
    restart_failures: u64,
}

/// One failed then accepted sshd login (the lines sshd and PAM write), from `n`'s address.
fn append_login(host: &Path, n: u64) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(host.join(AUTH_LOG))
        .expect("auth.log opens");
    let now = chrono::Local::now().format("%b %e %H:%M:%S");
    let pid = 20_000 + n % 30_000;
    let addr = format!("198.51.100.{}", 1 + n % 254);
    let port = 40_000 + n % 20_000;
    let text = format!(
        "{now} edge sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={addr}  user=operator\n\
         {now} edge sshd[{pid}]: Failed password for operator from {addr} port {port} ssh2\n\
         {now} edge sshd[{pid}]: Accepted password for operator from {addr} port {port} ssh2\n\
         {now} edge sshd[{pid}]: pam_unix(sshd:session): session opened for user operator(uid=1000) by (uid=0)\n"
    );
    f.write_all(text.as_bytes()).expect("auth.log written");
}

/// Closes with a reset: no TIME_WAIT, so K connections a second do not run out of ports.
fn reset_on_close(s: &std::net::TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Starts the busy profile's generators; they run until `stop`.
fn start_load(
    args: &Args,
    run: &str,
    host: &Path,
    module: &str,
    stop: &Arc<AtomicBool>,
    made: &Arc<Mutex<Made>>,
) -> (Vec<std::thread::JoinHandle<()>>, u16) {
    let k = args.scale as f64;
    let mut threads = Vec::new();
    // Execs: one a second, K times as often.
    {
        let made = made.clone();
        let run = run.to_string();
        let commands = args.commands as u64;
        let mut kids: Vec<Child> = Vec::new();
        threads.push(every(
            stop.clone(),
            Duration::from_secs(1).div_f64(k),
            move |n| {
                kids.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
                let marker = format!("eg-day-{run}-{}", n % commands);
                match Command::new("/bin/sh")
                    .args(["-c", ":", &marker])
                    .stdin(Stdio::null())
                    .spawn()
                {
                    Ok(c) => {
                        kids.push(c);
                        made.lock().unwrap().execs += 1;
                    }
                    Err(_) => made.lock().unwrap().exec_failures += 1,
                }
            },
        ));
    }
    // Loopback TCP connections: one a second, K times as often.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = listener.local_addr().expect("bound").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    {
        let made = made.clone();
        threads.push(every(
            stop.clone(),
            Duration::from_secs(1).div_f64(k),
            move |_| match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    reset_on_close(&s);
                    made.lock().unwrap().connections += 1;
                }
                Err(_) => made.lock().unwrap().connection_failures += 1,
            },
        ));
    }
    // An sshd login (failed, then accepted) an hour.
    {
        let made = made.clone();
        let host = host.to_path_buf();
        threads.push(every(stop.clone(), HOUR.div_f64(k), move |n| {
            append_login(&host, n);
            made.lock().unwrap().logins += 1;
        }));
    }
    // A container restart an hour.
    {
        let made = made.clone();
        let module = module.to_string();
        threads.push(every(stop.clone(), HOUR.div_f64(k), move |_| {
            let (ok, _, err) = support::docker::docker(&["restart", "-t", "0", &module]);
            let mut m = made.lock().unwrap();
            if ok {
                m.restarts += 1;
            } else {
                m.restart_failures += 1;
                eprintln!("deviceday: docker restart {module} failed: {err}");
            }
        }));
    }
    (threads, port)
}

/// The agent's status report (the `status` direct method: what `edgeguard status --json`
/// prints, without an exec the agent would see).
async fn status(hub: &EdgeHub) -> Value {
    match hub
        .invoke_method("status", json!({}), Duration::from_secs(30))
        .await
    {
        Ok((200, v)) => v,
        _ => Value::Null,
    }
}

/// `flush`, then waits until edgeHub acknowledged every message the agent sent.
async fn flush_and_drain(hub: &EdgeHub) -> Result<Value, String> {
    match hub
        .invoke_method("flush", json!({}), Duration::from_secs(120))
        .await
    {
        Ok((200, _)) => {}
        other => return Err(format!("flush failed: {other:?}")),
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = status(hub).await;
        let sent = s["messages"]["sent"].as_u64();
        let acked = s["messages"]["acked"].as_u64();
        let spool = s["spool"]["messages"].as_i64();
        if sent.is_some() && sent == acked && spool.unwrap_or(0) == 0 {
            return Ok(s);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "edgeHub did not acknowledge everything within 120 s of the flush: {}",
                s["messages"]
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn drops(status: &Value) -> BTreeMap<String, u64> {
    status["drops"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)).filter(|(_, v)| *v > 0))
                .collect()
        })
        .unwrap_or_default()
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT).max(1)
}

/// Per event kind.
#[derive(Default, Clone)]
struct KindStats {
    events: u64,
    /// What the events stand for: payload records, or their `HitCount` when aggregated.
    hits: u64,
    bytes: f64,
    units: f64,
    messages: u64,
    /// Messages that carried nothing else.
    alone: u64,
}

/// Periodic kinds that do not come from the snapshot round: the timers' (heartbeat,
/// statistics) and the recommendations (sent when their set changes, after a round or
/// statistics).
const NOT_ROUND_KINDS: &[&str] = &[
    "Heartbeat",
    "MessageStatistics",
    "DroppedEventsStatistics",
    "Recommendation",
];

/// Totals of a run of messages.
#[derive(Default, Clone)]
struct Bill {
    messages: u64,
    duplicates: u64,
    unparsed: u64,
    bytes: u64,
    units: u64,
    units_with_properties: u64,
    by_output: BTreeMap<String, u64>,
    kinds: BTreeMap<String, KindStats>,
    /// (kind, field value) → records: alerts by rule, container events by action, logins by
    /// result.
    details: BTreeMap<(String, String), u64>,
    /// Hits of ProcessCreate / ConnectionCreate that the harness made.
    own_execs: u64,
    own_connections: u64,
    /// Units of the snapshot rounds' events (periodic snapshots, not the timers' events).
    round_units: f64,
    /// The day's DroppedEventsStatistics: (collected, dropped).
    reported_collected: u64,
    reported_dropped: u64,
}

fn hits(event: &Value) -> u64 {
    let records = event["Payload"]
        .as_array()
        .map(|p| p.as_slice())
        .unwrap_or(&[]);
    if event["Category"] == "Aggregated" {
        records
            .iter()
            .map(|r| {
                r["ExtraDetails"]["HitCount"]
                    .as_str()
                    .and_then(|h| h.parse().ok())
                    .unwrap_or(1)
            })
            .sum()
    } else {
        records.len() as u64
    }
}

fn bill(telemetry: &[Telemetry], marker: &str, port: Option<u16>) -> Bill {
    let mut b = Bill::default();
    for t in telemetry {
        let n = t.payload.len();
        let u = units(n);
        let props: usize = t
            .properties
            .as_ref()
            .map(|p| p.pairs.iter().map(|(k, v)| k.len() + v.len()).sum())
            .unwrap_or(0);
        b.messages += 1;
        b.duplicates += t.dup as u64;
        b.bytes += n as u64;
        b.units += u as u64;
        b.units_with_properties += units(n + props) as u64;
        let output = t
            .properties
            .as_ref()
            .ok()
            .and_then(|p| p.get("$.on"))
            .unwrap_or("(none)")
            .to_string();
        *b.by_output.entry(output).or_default() += 1;
        let events = serde_json::from_slice::<Value>(&t.payload)
            .ok()
            .and_then(|m| m["Events"].as_array().cloned())
            .unwrap_or_default();
        if events.is_empty() {
            b.unparsed += 1;
            let k = b.kinds.entry("(not an ASC message)".into()).or_default();
            k.bytes += n as f64;
            k.units += u as f64;
            k.messages += 1;
            k.alone += 1;
            continue;
        }
        let sizes: Vec<usize> = events
            .iter()
            .map(|e| serde_json::to_vec(e).map_or(1, |v| v.len()))
            .collect();
        let total: usize = sizes.iter().sum();
        let names: Vec<String> = events
            .iter()
            .map(|e| e["Name"].as_str().unwrap_or("(no Name)").to_string())
            .collect();
        let alone = names.iter().all(|x| *x == names[0]);
        let mut seen: Vec<&str> = Vec::new();
        for ((e, size), name) in events.iter().zip(&sizes).zip(&names) {
            let share = *size as f64 / total as f64;
            if e["Category"] == "Periodic" && !NOT_ROUND_KINDS.contains(&name.as_str()) {
                b.round_units += u as f64 * share;
            }
            let k = b.kinds.entry(name.clone()).or_default();
            k.events += 1;
            k.hits += hits(e);
            k.bytes += n as f64 * share;
            k.units += u as f64 * share;
            if !seen.contains(&name.as_str()) {
                seen.push(name);
                k.messages += 1;
                k.alone += alone as u64;
            }
            let records = e["Payload"].as_array().map(|p| p.as_slice()).unwrap_or(&[]);
            let field = match name.as_str() {
                "Alert" => Some("RuleId"),
                "ContainerEvent" => Some("Action"),
                "Login" => Some("Result"),
                _ => None,
            };
            if let Some(field) = field {
                for r in records {
                    let v = r[field].as_str().unwrap_or("?").to_string();
                    *b.details.entry((name.clone(), v)).or_default() += 1;
                }
            }
            let own = |r: &Value| -> u64 {
                if e["Category"] == "Aggregated" {
                    r["ExtraDetails"]["HitCount"]
                        .as_str()
                        .and_then(|h| h.parse().ok())
                        .unwrap_or(1)
                } else {
                    1
                }
            };
            match name.as_str() {
                "ProcessCreate" => {
                    for r in records {
                        if r["CommandLine"]
                            .as_str()
                            .is_some_and(|c| c.contains(marker))
                        {
                            b.own_execs += own(r);
                        }
                    }
                }
                "ConnectionCreate" => {
                    for r in records {
                        let p = |f: &str| {
                            r[f].as_u64()
                                .or_else(|| r[f].as_str()?.parse().ok())
                                .map(|v| v as u16)
                        };
                        if port.is_some() && (p("RemotePort") == port || p("LocalPort") == port) {
                            b.own_connections += own(r);
                        }
                    }
                }
                "DroppedEventsStatistics" => {
                    for r in records {
                        b.reported_collected += r["CollectedEvents"].as_u64().unwrap_or(0);
                        b.reported_dropped += r["DroppedEvents"].as_u64().unwrap_or(0);
                    }
                }
                _ => {}
            }
        }
    }
    b
}

/// The snapshot rounds in the day, a real day's average, and the units of the day had it
/// held that average (the round's units scaled): a 13-hour timer gives a day one or two rounds
/// depending on where the day starts. Unchanged snapshots are held back for up to
/// `snapshotRefreshFrequency` (a week), longer than the day: the estimate adds the full
/// re-send's share of a day (the start-up round's snapshot units × day / refresh), returned
/// last.
fn rounds_estimate(
    b: &Bill,
    startup: &Bill,
    settings: &[Setting],
    day: Duration,
) -> (u64, f64, f64, f64, f64) {
    let refresh_share = settings
        .iter()
        .find(|s| s.key == "snapshotRefreshFrequency")
        .filter(|s| !s.scaled.is_zero())
        .map_or(0.0, |s| day.as_secs_f64() / s.scaled.as_secs_f64());
    let refresh_units = startup.round_units * refresh_share;
    let seen = b.kinds.get("SystemInformation").map_or(0, |s| s.events);
    let expected = settings
        .iter()
        .find(|s| s.key == "snapshotFrequency")
        .map_or(0.0, |s| day.as_secs_f64() / s.scaled.as_secs_f64());
    let per_round = if seen > 0 {
        b.round_units / seen as f64
    } else {
        0.0
    };
    let estimate = b.units as f64 + (expected - seen as f64) * per_round + refresh_units;
    (seen, expected, per_round, estimate, refresh_units)
}

/// What one profile's day measured.
struct DayResult {
    profile: Profile,
    bill: Bill,
    made: Made,
    startup: Bill,
    drops_day: BTreeMap<String, u64>,
    drops_total: BTreeMap<String, u64>,
    twin_patches: u64,
    twin_units: u64,
    /// The machine's 1-minute load average as the day began and ended.
    load: (String, String),
    /// [`rounds_estimate`].
    rounds: (u64, f64, f64, f64, f64),
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() {
    let Some(args) = parse_args() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    std::process::exit(rt.block_on(measure(&args)));
}

async fn measure(args: &Args) -> i32 {
    let k = args.scale;
    let day = DAY / k;
    let settings = scaled_settings(k);
    if !wait_for_binary(&args.binary) {
        eprintln!("deviceday: {} never appeared", args.binary.display());
        return 2;
    }
    let built = std::fs::metadata(&args.binary)
        .and_then(|m| m.modified())
        .ok()
        .map(|t| {
            chrono::DateTime::<chrono::Local>::from(t)
                .format("%F %T")
                .to_string()
        })
        .unwrap_or_default();
    println!(
        "deviceday: a scaled day, K = {k}: a day is {:.1} s; binary {} (built {built})",
        day.as_secs_f64(),
        args.binary.display()
    );
    println!("twin time settings (defaults from the agent's code, divided by K):");
    for s in &settings {
        println!(
            "  {:<40} {:>8} -> {}",
            s.key,
            format_duration(s.default),
            format_duration(s.scaled)
        );
    }
    if let Some(hb) = settings.iter().find(|s| s.key == "heartbeatFrequency")
        && hb.scaled < edgeguard::heartbeat::MIN_INTERVAL
    {
        println!(
            "  NOTE: heartbeatFrequency {} is below the agent's {} floor: this day has about {} heartbeats where a real day has {}",
            format_duration(hb.scaled),
            format_duration(edgeguard::heartbeat::MIN_INTERVAL),
            (day.as_secs_f64() / edgeguard::heartbeat::MIN_INTERVAL.as_secs_f64()) as u64,
            DAY.as_secs() / hb.default.as_secs().max(1)
        );
    }
    println!("not scaled (real speed whatever K is):");
    for line in not_scaled() {
        println!("  - {line}");
    }
    support::docker::busybox_image();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let mut results = Vec::new();
    for profile in &args.profiles {
        match one_day(args, *profile, &settings, &run).await {
            Ok(r) => results.push(r),
            Err(e) => {
                eprintln!("deviceday: the {} day failed: {e}", profile.name());
                return 2;
            }
        }
    }
    verdict(k, &results);
    0
}

async fn one_day(
    args: &Args,
    profile: Profile,
    settings: &[Setting],
    run: &str,
) -> Result<DayResult, String> {
    let k = args.scale;
    let day = DAY / k;
    println!();
    println!(
        "=== {} day (K = {k}, {:.1} s) ===",
        profile.name(),
        day.as_secs_f64()
    );
    let id = identity();
    let initial = desired(settings);
    let EdgeDevice {
        pki: _pki,
        hub,
        workload,
    } = EdgeDevice::start(&id, |cfg| cfg.initial_desired = initial).await;
    let host = tempfile::tempdir().expect("host root");
    let trees = host_root(host.path());
    let tree_refs: Vec<&str> = trees.iter().map(String::as_str).collect();
    let state = tempfile::tempdir().expect("state dir");

    // The device's modules: two sleeping containers labelled as edgeAgent's.
    let mut names = support::docker::Names::new();
    let mut modules = Vec::new();
    for m in ["edgehub", "sensor"] {
        let name = format!("eg-day-{run}-{}-{m}", profile.name());
        names.adopt(&name);
        let original = format!(
            "net.azure-devices.edge.original-image={}",
            support::docker::IMAGE
        );
        let (ok, _, err) = support::docker::docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            EDGE_OWNER,
            "--label",
            &original,
            support::docker::IMAGE,
            "sleep",
            "86400",
        ]);
        if !ok {
            return Err(format!("docker run {name}: {err}"));
        }
        modules.push(name);
    }

    let log_path = state.path().join("agent.log");
    let log = std::fs::File::create(&log_path).expect("agent log");
    let mut command = support::agent::command_with_trees_of(&args.binary, host.path(), &tree_refs);
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
        .map_err(|e| format!("edgeguard does not start: {e}"))?,
    );
    let pid = agent.id();
    let keep_log =
        std::env::temp_dir().join(format!("edgeguard-deviceday-{run}-{}.log", profile.name()));
    let fail = |why: String| {
        let _ = std::fs::copy(&log_path, &keep_log);
        format!("{why} (agent log: {})", keep_log.display())
    };

    // Up: connected, following the auth log, first round of snapshots done.
    let positions = state.path().join("login-positions.json");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let logged = std::fs::read_to_string(&log_path).unwrap_or_default();
        if hub.is_connected() && positions.exists() && logged.contains("collector state:") {
            break;
        }
        if Instant::now() > deadline {
            return Err(fail(
                "the agent did not connect, follow the auth log and finish its first snapshots in 180 s".into(),
            ));
        }
        if let Ok(Some(s)) = agent.try_wait() {
            return Err(fail(format!("the agent exited at start: {s}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The twin values in effect are the scaled ones.
    let reported = hub.reported();
    let object = &reported[CONFIG_OBJECT];
    let mut mismatches = Vec::new();
    for s in settings {
        let v = &object[&s.key]["value"];
        if v.as_str().and_then(|t| parse_duration(t).ok()) != Some(s.scaled) {
            mismatches.push(format!("{} = {v}", s.key));
        }
    }
    let rejected = object["rejected"].as_array().map_or(0, Vec::len);
    if mismatches.is_empty() && rejected == 0 {
        println!(
            "agent pid {pid}: reports the {} scaled settings in effect, none rejected",
            settings.len()
        );
    } else {
        println!(
            "agent pid {pid}: WARNING: reported settings differ: {mismatches:?}; {rejected} rejected: {}",
            object["rejected"]
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = flush_and_drain(&hub).await.map_err(&fail)?;
    let telemetry = hub.telemetry();
    let n0 = telemetry.len();
    let startup = bill(&telemetry, "\u{0}", None);
    let twin0 = hub.twin_requests().len();
    println!(
        "start-up (not in the day): {} messages, {} bytes, {} units",
        startup.messages,
        thousands(startup.bytes),
        startup.units
    );

    // The day.
    let load_before = loadavg();
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(Mutex::new(Made::default()));
    let marker = format!("eg-day-{run}-");
    let (threads, port) = match profile {
        Profile::Busy => {
            let (t, p) = start_load(args, run, host.path(), &modules[1], &stop, &made);
            (t, Some(p))
        }
        Profile::Idle => (Vec::new(), None),
    };
    let mut next_report = 1u32;
    while t0.elapsed() < day {
        if t0.elapsed() >= day.mul_f64(next_report as f64 / 6.0) {
            let m = made.lock().unwrap().clone();
            println!(
                "  {:>5.1} s ({:>3} % of the day): {} messages so far; generated {} execs, {} connections, {} logins, {} restarts",
                t0.elapsed().as_secs_f64(),
                next_report * 100 / 6,
                hub.telemetry().len() - n0,
                m.execs,
                m.connections,
                m.logins,
                m.restarts
            );
            next_report += 1;
        }
        if let Ok(Some(s)) = agent.try_wait() {
            stop.store(true, Ordering::Relaxed);
            return Err(fail(format!("the agent exited during the day: {s}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let load_after = loadavg();
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = flush_and_drain(&hub).await.map_err(&fail)?;
    let telemetry = hub.telemetry();
    let n1 = telemetry.len();
    let twin = hub.twin_requests();
    let patches: Vec<_> = twin[twin0..].iter().filter(|r| r.kind == "PATCH").collect();
    let twin_units = patches
        .iter()
        .map(|r| r.body.len().div_ceil(TWIN_UNIT).max(1) as u64)
        .sum();
    let b = bill(&telemetry[n0..n1], &marker, port);
    let dump = std::env::temp_dir().join(format!(
        "edgeguard-deviceday-{run}-{}.jsonl",
        profile.name()
    ));
    if let Ok(mut f) = std::fs::File::create(&dump) {
        for t in &telemetry[n0..n1] {
            let _ = f.write_all(&t.payload);
            let _ = f.write_all(b"\n");
        }
    }
    let made = made.lock().unwrap().clone();

    // Stop the agent.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Ok(Some(s)) = agent.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = agent.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = std::fs::copy(&log_path, &keep_log);
    drop(names);

    let total = drops(&after);
    let start = drops(&before);
    let drops_day: BTreeMap<String, u64> = total
        .iter()
        .map(|(k, v)| (k.clone(), v - start.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let r = DayResult {
        profile,
        bill: b,
        made,
        startup,
        drops_day,
        drops_total: total,
        twin_patches: patches.len() as u64,
        twin_units,
        load: (load_before, load_after),
        rounds: (0, 0.0, 0.0, 0.0, 0.0),
    };
    let r = DayResult {
        rounds: rounds_estimate(&r.bill, &r.startup, settings, day),
        ..r
    };
    print_day(args, &r, settings, day);
    println!(
        "agent exit after SIGTERM: {}; log kept at {}, the day's messages at {}",
        exited.map_or("none (killed)".to_string(), |s| s.to_string()),
        keep_log.display(),
        dump.display()
    );
    Ok(r)
}

fn print_day(args: &Args, r: &DayResult, settings: &[Setting], day: Duration) {
    let b = &r.bill;
    let m = &r.made;
    let k = args.scale as f64;
    match r.profile {
        Profile::Busy => println!(
            "generated: {} execs ({} command lines; target {:.0}), {} TCP connections (target {:.0}), {} sshd logins failed then accepted (target {:.0}), {} container restarts (target {:.0}); failures: {} execs, {} connections, {} restarts",
            thousands(m.execs),
            args.commands,
            day.as_secs_f64() * k,
            thousands(m.connections),
            day.as_secs_f64() * k,
            m.logins,
            24.0,
            m.restarts,
            24.0,
            m.exec_failures,
            m.connection_failures,
            m.restart_failures
        ),
        Profile::Idle => {
            println!("generated: nothing (the machine's own background only)")
        }
    }
    println!(
        "machine load average (1 min, 2 cores) {} as the day began, {} as it ended: the background the agent saw besides the harness",
        r.load.0, r.load.1
    );
    let target = day.as_secs_f64() * k;
    if r.profile == Profile::Busy && (m.execs as f64) < 0.95 * target {
        println!(
            "  WARNING: the exec generator made {:.0} % of its target: this machine cannot fork that fast beside the agent; a lower K is closer to a real day",
            100.0 * m.execs as f64 / target
        );
    }
    let outputs: Vec<String> = b
        .by_output
        .iter()
        .map(|(o, n)| format!("{n} {o}"))
        .collect();
    println!(
        "DAY ({}): {} messages ({}; {} duplicates{}), {} bytes, {} units of 4 KB ({} if the message properties counted too)",
        r.profile.name(),
        thousands(b.messages),
        outputs.join(", "),
        b.duplicates,
        if b.unparsed > 0 {
            format!(", {} not ASC messages", b.unparsed)
        } else {
            String::new()
        },
        thousands(b.bytes),
        thousands(b.units),
        thousands(b.units_with_properties)
    );
    let count = |name: &str| b.kinds.get(name).map_or(0, |s| s.events);
    let expect = |key: &str| {
        settings
            .iter()
            .find(|s| s.key == key)
            .map_or(0.0, |s| day.as_secs_f64() / s.scaled.as_secs_f64())
    };
    println!(
        "timers seen: {} heartbeats (a real day: {:.0}), {} snapshot rounds (SystemInformation; a real day averages {:.2}), {} statistics rounds (MessageStatistics; {:.2})",
        count("Heartbeat"),
        expect("heartbeatFrequency"),
        count("SystemInformation"),
        expect("snapshotFrequency"),
        count("MessageStatistics"),
        expect("lowPriorityMessageFrequency")
    );
    let (seen, expected, per_round, estimate, refresh) = r.rounds;
    println!(
        "snapshot rounds: {seen} in this day, a real day averages {expected:.2} (which of one or two depends on where the day starts); one round's snapshots cost {per_round:.1} units here; the start-up round sent every snapshot in full ({:.1} units), which an unchanged device re-sends once per snapshotRefreshFrequency: {refresh:.1} units a day; so a day of {expected:.2} rounds comes to about {estimate:.0} units",
        r.startup.round_units
    );
    println!(
        "per event kind (bytes and units: each message's split over its events by serialized size; hits: records, or HitCount when aggregated; alone: messages with nothing else):"
    );
    println!(
        "  {:<26} {:>7} {:>9} {:>12} {:>6} {:>9} {:>6} {:>8} {:>6}",
        "kind", "events", "hits", "bytes", "bytes%", "units", "units%", "messages", "alone"
    );
    let mut kinds: Vec<(&String, &KindStats)> = b.kinds.iter().collect();
    kinds.sort_by(|a, b| b.1.units.total_cmp(&a.1.units));
    let pct = |part: f64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            100.0 * part / whole as f64
        }
    };
    for (name, s) in &kinds {
        println!(
            "  {:<26} {:>7} {:>9} {:>12} {:>5.1}% {:>9.1} {:>5.1}% {:>8} {:>6}",
            name,
            thousands(s.events),
            thousands(s.hits),
            thousands(s.bytes.round() as u64),
            pct(s.bytes, b.bytes),
            s.units,
            pct(s.units, b.units),
            thousands(s.messages),
            thousands(s.alone)
        );
    }
    let hits_of = |name: &str| b.kinds.get(name).map_or(0, |s| s.hits);
    println!(
        "ProcessCreate hits: {} the harness's execs (of {} made), {} others (machine background, docker, the container runtime); ConnectionCreate hits: {} the harness's connections (of {} made; each can be seen at both ends), {} others",
        thousands(b.own_execs),
        thousands(m.execs),
        thousands(hits_of("ProcessCreate").saturating_sub(b.own_execs)),
        thousands(b.own_connections),
        thousands(m.connections),
        thousands(hits_of("ConnectionCreate").saturating_sub(b.own_connections))
    );
    for kind in ["Alert", "ContainerEvent", "Login"] {
        let list: Vec<String> = b
            .details
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, v), n)| format!("{v} {n}"))
            .collect();
        if !list.is_empty() {
            let what = match kind {
                "Alert" => "alerts by rule",
                "ContainerEvent" => "container events by action",
                _ => "logins by result",
            };
            println!("{what}: {}", list.join(", "));
        }
    }
    let drops_text = |d: &BTreeMap<String, u64>| {
        if d.is_empty() {
            "nothing".to_string()
        } else {
            format!("{d:?}")
        }
    };
    println!(
        "drops: in the day {} (since start {}); the day's DroppedEventsStatistics: {} dropped of {} collected",
        drops_text(&r.drops_day),
        drops_text(&r.drops_total),
        r.bill.reported_dropped,
        thousands(r.bill.reported_collected)
    );
    println!(
        "twin (not in the units above; IoT Hub meters twin updates in 512-byte units): {} reported-property patches in the day ({} units)",
        r.twin_patches, r.twin_units
    );
    println!(
        "start-up (per boot, not in the day): {} messages, {} units",
        r.startup.messages, r.startup.units
    );
}

fn verdict(k: u32, results: &[DayResult]) {
    println!();
    println!("=== verdict (K = {k}; units per day = units of the scaled day) ===");
    let mut all_met = true;
    for r in results {
        let units = r.bill.units as f64;
        let goal = r.profile.goal();
        let met = units <= goal;
        let dropped = !r.drops_total.is_empty() || r.bill.reported_dropped > 0;
        all_met &= met && !dropped;
        let mut kinds: Vec<(&String, &KindStats)> = r.bill.kinds.iter().collect();
        kinds.sort_by(|a, b| b.1.units.total_cmp(&a.1.units));
        let top: Vec<String> = kinds
            .iter()
            .take(3)
            .map(|(n, s)| {
                format!(
                    "{n} {:.0} units ({:.0} %)",
                    s.units,
                    100.0 * s.units / units.max(1.0)
                )
            })
            .collect();
        let estimate = r.rounds.3;
        println!(
            "{}: {} messages, {} bytes, {} units a day (about {:.0} with a real day's average {:.2} snapshot rounds and the weekly full re-send); goal <= {}: {}{}; dropped: {}; biggest: {}",
            r.profile.name(),
            thousands(r.bill.messages),
            thousands(r.bill.bytes),
            thousands(r.bill.units),
            estimate,
            r.rounds.1,
            thousands(goal as u64),
            if met { "MET" } else { "NOT MET" },
            match (met, estimate <= goal) {
                (true, false) => " (but not with the average rounds)",
                (false, true) => " (but met with the average rounds)",
                _ => "",
            },
            if dropped {
                format!(
                    "{:?} (DroppedEventsStatistics {})",
                    r.drops_total, r.bill.reported_dropped
                )
            } else {
                "nothing".into()
            },
            top.join(", ")
        );
    }
    println!(
        "VERDICT: {}",
        if all_met {
            "every goal met, nothing dropped"
        } else {
            "goals NOT all met (see above); this is a measurement, exit 0"
        }
    );
}
