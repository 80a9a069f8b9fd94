//! Pipeline throughput: events per second from typed `Event`s to serialized security messages.
//!
//! Every benchmark drives the synchronous [`Pipeline`] core directly (no tokio runtime, no
//! channels, no sink). Two shapes:
//! - *backlog* (`triggered_no_aggregation`, `aggregated_storm`, `connections`): `push` each of N
//!   events built beforehand (priority lookup, aggregation, encoding, cache), then
//!   `flush_windows` and `take_message(Trigger::All)` until the cache is empty — a pipeline that
//!   fell N cold events behind;
//! - *steady* (`steady_*`, [`run_steady`]): the agent's own pattern, events arriving in groups
//!   of at most `READER_HOLD_EVENTS`, messages cut as soon as a full one is queued.
//!
//! Building test events is never timed, so the numbers measure the pipeline rather than
//! test-data creation.
//!
//! Before each benchmark is timed, one run checks that the expected number of events came out in
//! messages and that nothing was dropped, so a broken configuration cannot be measured as "fast".
//!
//! Run with `cargo bench --bench pipeline`; results and method are in `docs/benchmarks.md`.
//! `EDGEGUARD_BENCH_RULES=off` turns every catalog rule off (`detectionRulesDisabled` with all of
//! them), so an A/B in one build and one window gives what the catalog costs each event.

use chrono::{DateTime, Duration as ChronoDuration, FixedOffset};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use edgeguard::collectors::READER_HOLD_EVENTS;
use edgeguard::config::Config;
use edgeguard::event::envelope::{AGENT_VERSION, encode};
use edgeguard::event::{
    ConnectionCreate, Direction, Event, ExtraDetails, MessageHeader, Payload, ProcessCreate,
};
use edgeguard::metrics::{DropReason, Metrics};
use edgeguard::pipeline::spool::Spool;
use edgeguard::pipeline::{Pipeline, Trigger};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`): unlike wall-clock time it leaves
/// out the time the benchmark thread spent preempted, which on a shared, overloaded machine is
/// most of the noise. Selected with `EDGEGUARD_BENCH_CLOCK=thread-cpu`; reported in nanoseconds
/// like wall-clock time. It still includes cache and memory-bandwidth interference.
struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
        *v1 + *v2
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Same unit (nanoseconds) as wall-clock time, so reuse its formatter.
        const WALL: &WallTime = &WallTime;
        WALL.formatter()
    }
}

/// Group-name suffix, so the two clocks keep separate criterion baselines.
fn clock_suffix<M: Measurement + 'static>() -> &'static str {
    if std::any::TypeId::of::<M>() == std::any::TypeId::of::<ThreadCpuTime>() {
        "_cpu"
    } else {
        ""
    }
}

/// Events pushed per iteration, unless `EDGEGUARD_BENCH_EVENTS` says otherwise.
const DEFAULT_EVENTS: usize = 10_000;

/// Events pushed per iteration of the `pipeline/*` benchmarks.
fn n() -> usize {
    std::env::var("EDGEGUARD_BENCH_EVENTS")
        .ok()
        .map(|v| v.parse().expect("EDGEGUARD_BENCH_EVENTS must be a number"))
        .unwrap_or(DEFAULT_EVENTS)
}

/// Distinct command lines in the exec storm.
const STORM_DISTINCT: usize = 50;

/// A cache this large never evicts the events of the sizes built here (about 0.5–1 KiB each).
const NO_EVICTION_CACHE_BYTES: u64 = 256 * 1024 * 1024;

const EXECUTABLES: [&str; 8] = [
    "/usr/bin/python3",
    "/bin/sh",
    "/usr/bin/curl",
    "/usr/local/bin/node",
    "/usr/sbin/iptables",
    "/usr/bin/dotnet",
    "/usr/bin/awk",
    "/opt/vendor/bin/telemetry-agent",
];

fn base_time() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2025-03-14T09:26:53.589+01:00").expect("valid RFC 3339 time")
}

fn container_details(i: usize) -> ExtraDetails {
    let mut extra = ExtraDetails::new();
    // A 64-hex-digit container id, as Docker/Moby reports it.
    extra.insert(
        "ContainerId".into(),
        format!(
            "{:016x}{:016x}{:016x}{:016x}",
            i % 7,
            0x9e37_79b9_7f4a_7c15_u64,
            i,
            !i
        ),
    );
    extra.insert(
        "ContainerName".into(),
        format!("telemetry-module-{}", i % 7),
    );
    extra
}

/// A ProcessCreate event of realistic size; `variant` picks the command line (and executable),
/// `i` makes the rest (id, pids, time, container) distinct.
fn process_create(i: usize, variant: usize) -> Event {
    let executable = EXECUTABLES[variant % EXECUTABLES.len()];
    // The script's extension fits its interpreter (a shell running a `.py` is the
    // interpreter-extension-mismatch rule's signal); all three are the same length.
    let extension = match executable {
        "/bin/sh" => "sh",
        "/usr/local/bin/node" => "js",
        _ => "py",
    };
    // 60–120 characters depending on the variant.
    let command_line = format!(
        "{executable} /opt/health/check_{variant:05}.{extension} --endpoint https://10.{}.{}.{}:8443/{} -t 5",
        variant % 256,
        (variant / 256) % 256,
        variant % 200 + 1,
        "s".repeat(variant % 15),
    );
    let (user_id, user_name) = if variant.is_multiple_of(3) {
        ("0", "root")
    } else {
        ("1000", "edgeuser")
    };
    Event {
        id: Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 | i as u128),
        time: base_time() + ChronoDuration::milliseconds(i as i64),
        category: edgeguard::event::Category::Triggered,
        payload: Payload::ProcessCreate(vec![ProcessCreate {
            executable: executable.into(),
            command_line,
            process_id: 4_000 + i as u32,
            parent_process_id: 1 + (i as u32 % 97),
            user_id: user_id.into(),
            user_name: Some(user_name.into()),
            extra_details: container_details(i),
        }]),
        foreign: false,
    }
}

/// A ConnectionCreate event; even `i` are IPv4 outbound, odd `i` IPv6 inbound.
fn connection_create(i: usize) -> Event {
    let ipv6 = i % 2 == 1;
    let (remote, local, direction, local_port, remote_port) = if ipv6 {
        (
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0x0db8,
                (i >> 16) as u16,
                i as u16,
                0,
                0,
                0xbeef,
                1,
            )),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x42)),
            Direction::In,
            Some(443),
            (1024 + i % 60_000) as u16,
        )
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(52, (i >> 16) as u8, (i >> 8) as u8, i as u8)),
            IpAddr::V4(Ipv4Addr::new(172, 18, 0, 5)),
            Direction::Out,
            Some((32_768 + i % 28_000) as u16),
            8883,
        )
    };
    let executable = EXECUTABLES[i % EXECUTABLES.len()];
    Event {
        id: Uuid::from_u128(0xc0ee_0000_0000_0000_0000_0000_0000_0000 | i as u128),
        time: base_time() + ChronoDuration::milliseconds(i as i64),
        category: edgeguard::event::Category::Triggered,
        payload: Payload::ConnectionCreate(vec![ConnectionCreate {
            remote_address: remote,
            remote_port,
            local_address: Some(local),
            local_port,
            direction,
            protocol: "TCP".into(),
            process_id: 4_000 + i as u32,
            user_id: Some("1000".into()),
            executable: executable.into(),
            command_line: Some(format!(
                "{executable} --mqtt-host hub.example.net --port 8883"
            )),
            extra_details: container_details(i),
        }]),
        foreign: false,
    }
}

/// Default configuration (max message 204,800 bytes) with a cache that does not evict and
/// aggregation switched on or off for every aggregatable kind.
fn config(aggregation: bool) -> Arc<Config> {
    let mut c = Config {
        max_local_cache_size_in_bytes: NO_EVICTION_CACHE_BYTES,
        detection_rules_disabled: rules_disabled(),
        ..Config::default()
    };
    for agg in c.aggregation.values_mut() {
        agg.enabled = aggregation;
    }
    Arc::new(c)
}

/// Every rule of the catalog with `EDGEGUARD_BENCH_RULES=off`, none otherwise.
fn rules_disabled() -> Vec<edgeguard::detect::Rule> {
    match std::env::var("EDGEGUARD_BENCH_RULES").as_deref() {
        Ok("off") => edgeguard::detect::Rule::all().collect(),
        Ok("on") | Err(_) => Vec::new(),
        Ok(other) => panic!("EDGEGUARD_BENCH_RULES={other}: expected `on` or `off`"),
    }
}

fn pipeline(config: &Arc<Config>) -> (Pipeline, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::for_tests());
    let header = MessageHeader::new(AGENT_VERSION, Uuid::from_u128(0xa9e1_7000));
    (
        Pipeline::new(header, config.clone(), metrics.clone()),
        metrics,
    )
}

/// What came out of one run.
#[derive(Debug, Default)]
struct Drained {
    messages: usize,
    events: usize,
    bytes: usize,
}

/// Takes every message `trigger` gives now, counting what came out.
fn take(pipeline: &mut Pipeline, trigger: Trigger, out: &mut Drained) {
    while let Some(message) = pipeline.take_message(trigger) {
        out.messages += 1;
        out.events += message.events;
        out.bytes += message.body.len();
        black_box(&message.body);
    }
}

/// The timed part: push every event, close the aggregation windows, take every message.
fn run(pipeline: &mut Pipeline, events: Vec<Event>) -> Drained {
    for event in events {
        pipeline.push(event, Instant::now());
    }
    pipeline.flush_windows();
    let mut out = Drained::default();
    take(pipeline, Trigger::All, &mut out);
    out
}

/// One untimed run that checks the benchmark measures real work.
fn check(config: &Arc<Config>, events: Vec<Event>, expected_events: usize, name: &str) {
    let events_in = events.len();
    let (mut p, metrics) = pipeline(config);
    let out = run(&mut p, events);
    verify(name, &p, &metrics, &out, expected_events);
    eprintln!(
        "{name}: {events_in} events in -> {} events in {} messages, {} bytes ({} bytes/event out)",
        out.events,
        out.messages,
        out.bytes,
        out.bytes / out.events.max(1)
    );
}

/// What a checked run must show: the expected events out, none left, none dropped, some output.
fn verify(name: &str, p: &Pipeline, metrics: &Metrics, out: &Drained, expected_events: usize) {
    assert_eq!(
        out.events, expected_events,
        "{name}: events out of the pipeline"
    );
    assert_eq!(p.queued_events(), 0, "{name}: events left in the cache");
    for reason in [DropReason::CacheFull, DropReason::TooLarge] {
        assert_eq!(
            metrics.dropped_total("pipeline", reason),
            0,
            "{name}: events dropped ({reason:?})"
        );
    }
    assert!(
        out.messages >= 1 && out.bytes >= out.events,
        "{name}: no output"
    );
}

/// The settings every group here uses, with `n` events per iteration.
fn configure<M: Measurement>(group: &mut criterion::BenchmarkGroup<'_, M>, n: usize) {
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(n as u64));
}

fn bench_pipeline<M: Measurement + 'static>(
    c: &mut Criterion<M>,
    name: &str,
    config: Arc<Config>,
    make: impl Fn() -> Vec<Event> + Copy,
    expected_events: usize,
) {
    let events = make();
    let n = events.len();
    check(&config, events, expected_events, name);
    let mut group = c.benchmark_group(format!("pipeline{}", clock_suffix::<M>()));
    configure(&mut group, n);
    group.bench_function(name, |b| {
        b.iter_batched(
            || (pipeline(&config).0, make()),
            |(mut p, events)| {
                let out = run(&mut p, events);
                // Returned, so the pipeline is dropped outside the timed part.
                (p, black_box(out))
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// The running clock of measurement `M` (thread CPU time or wall-clock time), for `iter_custom`.
fn clock_now<M: Measurement + 'static>() -> Duration {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    if std::any::TypeId::of::<M>() == std::any::TypeId::of::<ThreadCpuTime>() {
        thread_cpu_now()
    } else {
        EPOCH.get_or_init(std::time::Instant::now).elapsed()
    }
}

/// The agent's own pattern, unlike [`run`]'s backlog of N cold events: the kernel readers hand
/// events over in groups of at most [`READER_HOLD_EVENTS`], built moments before (so in cache);
/// the pipeline task pushes them one by one and cuts a message as soon as the cache holds a full
/// one (`Trigger::Full`, as `pipeline::run` does); at the end everything left is flushed.
/// Only the pipeline's part is timed: building each group is not. Returns the timed duration.
fn run_steady<M: Measurement + 'static>(
    pipeline: &mut Pipeline,
    n: usize,
    make: impl Fn(usize) -> Event,
    out: &mut Drained,
) -> Duration {
    let mut timed = Duration::ZERO;
    let mut start = 0;
    while start < n {
        let end = (start + READER_HOLD_EVENTS).min(n);
        let group: Vec<Event> = (start..end).map(&make).collect();
        start = end;
        let t0 = clock_now::<M>();
        for event in group {
            pipeline.push(event, Instant::now());
            if pipeline.is_full() {
                take(pipeline, Trigger::Full, out);
            }
        }
        timed += clock_now::<M>().saturating_sub(t0);
    }
    let t0 = clock_now::<M>();
    pipeline.flush_windows();
    take(pipeline, Trigger::All, out);
    timed + clock_now::<M>().saturating_sub(t0)
}

/// [`run_steady`] as a benchmark, after one checked run (like [`check`]).
fn bench_steady<M: Measurement<Value = Duration> + 'static>(
    c: &mut Criterion<M>,
    name: &str,
    config: Arc<Config>,
    make: impl Fn(usize) -> Event + Copy,
    expected_events: usize,
) {
    let n = n();
    let (mut p, metrics) = pipeline(&config);
    let mut out = Drained::default();
    run_steady::<M>(&mut p, n, make, &mut out);
    verify(name, &p, &metrics, &out, expected_events);
    eprintln!(
        "{name}: {n} events in groups of {READER_HOLD_EVENTS} -> {} events in {} messages, {} bytes",
        out.events, out.messages, out.bytes
    );
    let mut group = c.benchmark_group(format!("pipeline{}", clock_suffix::<M>()));
    configure(&mut group, n);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (mut p, _) = pipeline(&config);
                let mut out = Drained::default();
                total += run_steady::<M>(&mut p, n, make, &mut out);
                black_box(out);
            }
            total
        })
    });
    group.finish();
}

fn steady_no_aggregation<M: Measurement<Value = Duration> + 'static>(c: &mut Criterion<M>) {
    bench_steady(
        c,
        "steady_no_aggregation",
        config(false),
        |i| process_create(i, i),
        n(),
    );
}

fn steady_aggregated<M: Measurement<Value = Duration> + 'static>(c: &mut Criterion<M>) {
    bench_steady(
        c,
        "steady_aggregated",
        config(true),
        |i| process_create(i, i % STORM_DISTINCT),
        STORM_DISTINCT.min(n()),
    );
}

fn steady_connections<M: Measurement<Value = Duration> + 'static>(c: &mut Criterion<M>) {
    bench_steady(
        c,
        "steady_connections",
        config(false),
        connection_create,
        n(),
    );
}

/// [`run_steady`] with the outbox's durable spool in the loop, as `run` with a state directory
/// has it: every message cut is appended to a spool on disk (a redb commit, fsynced), and with
/// a journal the pipeline commits it every `commit_every` (the agent: once a second,
/// [`edgeguard::pipeline::JOURNAL_INTERVAL`]; events a message takes before their commit are
/// never written to the journal). Comparing with and without gives the journal's cost on top
/// of what storing messages already cost.
fn run_steady_durable<M: Measurement + 'static>(
    pipeline: &mut Pipeline,
    spool: &mut Spool,
    n: usize,
    make: impl Fn(usize) -> Event,
    out: &mut Drained,
    commit_every: Duration,
) -> Duration {
    let mut last_commit = std::time::Instant::now();
    let mut timed = Duration::ZERO;
    let mut start = 0;
    let commit = |p: &mut Pipeline, spool: &mut Spool| {
        if let Some(batch) = p.journal_batch() {
            spool.write_journal(&batch).expect("journal commit");
        }
    };
    let store = |p: &mut Pipeline, spool: &mut Spool, trigger: Trigger, out: &mut Drained| {
        while let Some(m) = p.take_message(trigger) {
            spool
                .append_to(m.output, m.priority, &m.body, m.events, &m.seqs)
                .expect("spool append");
            out.messages += 1;
            out.events += m.events;
            out.bytes += m.body.len();
        }
    };
    while start < n {
        let end = (start + READER_HOLD_EVENTS).min(n);
        let group: Vec<Event> = (start..end).map(&make).collect();
        start = end;
        let t0 = clock_now::<M>();
        for event in group {
            pipeline.push(event, Instant::now());
            if pipeline.is_full() {
                store(pipeline, spool, Trigger::Full, out);
            }
        }
        if last_commit.elapsed() >= commit_every {
            commit(pipeline, spool);
            last_commit = std::time::Instant::now();
        }
        timed += clock_now::<M>().saturating_sub(t0);
    }
    let t0 = clock_now::<M>();
    pipeline.flush_windows();
    store(pipeline, spool, Trigger::All, out);
    commit(pipeline, spool);
    timed + clock_now::<M>().saturating_sub(t0)
}

/// [`run_steady_durable`] as a benchmark: `spooled_*` without the journal, `journaled_*` with.
fn bench_durable<M: Measurement<Value = Duration> + 'static>(
    c: &mut Criterion<M>,
    name: &str,
    config: Arc<Config>,
    make: impl Fn(usize) -> Event + Copy,
    expected_events: usize,
) {
    let n = n();
    let fresh = |journal: bool| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let spool = Spool::open(dir.path().join("spool.redb"), 1 << 30).expect("spool opens");
        let (p, metrics) = pipeline(&config);
        let p = if journal { p.with_journal() } else { p };
        (dir, spool, p, metrics)
    };
    // (label, journal, commit every): the agent's once a second, and a hundred times as often
    // (commits then fall inside a 10,000-event run, which takes well under a second).
    let variants = [
        ("spooled", false, Duration::MAX),
        ("journaled", true, edgeguard::pipeline::JOURNAL_INTERVAL),
        ("journaled_10ms", true, Duration::from_millis(10)),
    ];
    for (_, journal, every) in variants {
        let (dir, mut spool, mut p, metrics) = fresh(journal);
        let mut out = Drained::default();
        run_steady_durable::<M>(&mut p, &mut spool, n, make, &mut out, every);
        verify(name, &p, &metrics, &out, expected_events);
        assert_eq!(spool.len(), out.messages, "{name}: every message stored");
        // Reopened, the spool holds every message and no journal row: each event is in
        // exactly one place.
        drop(spool);
        let mut again = Spool::open(dir.path().join("spool.redb"), 1 << 30).expect("reopens");
        let rows = again.take_journal();
        assert_eq!(
            again.len(),
            out.messages,
            "{name}: messages after reopening"
        );
        assert!(
            rows.queue.is_empty() && rows.windows.is_empty(),
            "{name}: {} queued and {} window rows left in the journal",
            rows.queue.len(),
            rows.windows.len()
        );
    }
    let mut group = c.benchmark_group(format!("durable{}", clock_suffix::<M>()));
    configure(&mut group, n);
    for (label, journal, every) in variants {
        group.bench_function(format!("{label}_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (_dir, mut spool, mut p, _) = fresh(journal);
                    let mut out = Drained::default();
                    total += run_steady_durable::<M>(&mut p, &mut spool, n, make, &mut out, every);
                    black_box(out);
                }
                total
            })
        });
    }
    group.finish();
}

fn durable_no_aggregation<M: Measurement<Value = Duration> + 'static>(c: &mut Criterion<M>) {
    bench_durable(
        c,
        "no_aggregation",
        config(false),
        |i| process_create(i, i),
        n(),
    );
}

fn durable_aggregated<M: Measurement<Value = Duration> + 'static>(c: &mut Criterion<M>) {
    bench_durable(
        c,
        "aggregated",
        config(true),
        |i| process_create(i, i % STORM_DISTINCT),
        STORM_DISTINCT.min(n()),
    );
}

/// Command lines of the generated ProcessCreate events stay within 60–120 characters.
fn check_command_lines(events: &[Event]) {
    for e in events {
        if let Payload::ProcessCreate(v) = &e.payload {
            let n = v[0].command_line.len();
            assert!((60..=120).contains(&n), "command line of {n} characters");
        }
    }
}

fn triggered_no_aggregation<M: Measurement + 'static>(c: &mut Criterion<M>) {
    let n = n();
    check_command_lines(&(0..n).map(|i| process_create(i, i)).collect::<Vec<_>>());
    bench_pipeline(
        c,
        "triggered_no_aggregation",
        config(false),
        move || (0..n).map(|i| process_create(i, i)).collect(),
        n,
    );
}

fn aggregated_storm<M: Measurement + 'static>(c: &mut Criterion<M>) {
    let n = n();
    bench_pipeline(
        c,
        "aggregated_storm",
        config(true),
        move || {
            (0..n)
                .map(|i| process_create(i, i % STORM_DISTINCT))
                .collect()
        },
        STORM_DISTINCT.min(n),
    );
}

fn connections<M: Measurement + 'static>(c: &mut Criterion<M>) {
    let n = n();
    bench_pipeline(
        c,
        "connections",
        config(false),
        move || (0..n).map(connection_create).collect(),
        n,
    );
}

fn encode_event<M: Measurement + 'static>(c: &mut Criterion<M>) {
    let event = process_create(12_345, 12_345);
    let size = encode(&event).len();
    assert!(size > 300, "encoded ProcessCreate is only {size} bytes");
    eprintln!("encode/event: one ProcessCreate encodes to {size} bytes");
    let mut group = c.benchmark_group(format!("encode{}", clock_suffix::<M>()));
    configure(&mut group, 1);
    group.bench_function("event", |b| b.iter(|| encode(black_box(&event))));
    group.finish();
}

/// The detector alone, on the process events of the pipeline benchmarks (none matches a rule:
/// this is the cost of looking, which every event pays in `Pipeline::push`).
fn detect_process<M: Measurement + 'static>(c: &mut Criterion<M>) {
    let events: Vec<Event> = (0..1_000).map(|i| process_create(i, i)).collect();
    let mut detector = edgeguard::detect::Detector::new();
    detector.set_disabled(&rules_disabled());
    let now = tokio::time::Instant::now();
    let mut found = Vec::new();
    for e in &events {
        detector.inspect(e, now, &mut found);
    }
    assert!(
        found.is_empty(),
        "no benchmark event matches a rule: {found:?}"
    );
    let mut group = c.benchmark_group(format!("detect{}", clock_suffix::<M>()));
    configure(&mut group, events.len());
    group.bench_function("process", |b| {
        b.iter(|| {
            for e in &events {
                detector.inspect(black_box(e), now, &mut found);
            }
        })
    });
    group.finish();
}

criterion_group!(
    name = wall_clock;
    config = Criterion::default();
    targets = triggered_no_aggregation::<WallTime>,
        aggregated_storm::<WallTime>,
        connections::<WallTime>,
        steady_no_aggregation::<WallTime>,
        steady_aggregated::<WallTime>,
        steady_connections::<WallTime>,
        durable_no_aggregation::<WallTime>,
        durable_aggregated::<WallTime>,
        encode_event::<WallTime>,
        detect_process::<WallTime>
);

criterion_group!(
    name = thread_cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = triggered_no_aggregation::<ThreadCpuTime>,
        aggregated_storm::<ThreadCpuTime>,
        connections::<ThreadCpuTime>,
        steady_no_aggregation::<ThreadCpuTime>,
        steady_aggregated::<ThreadCpuTime>,
        steady_connections::<ThreadCpuTime>,
        durable_no_aggregation::<ThreadCpuTime>,
        durable_aggregated::<ThreadCpuTime>,
        encode_event::<ThreadCpuTime>,
        detect_process::<ThreadCpuTime>
);

/// Wall-clock time by default (criterion's usual clock); `EDGEGUARD_BENCH_CLOCK=thread-cpu` measures
/// the benchmark thread's CPU time instead (groups `pipeline_cpu/*`, `encode_cpu/*`).
fn main() {
    match std::env::var("EDGEGUARD_BENCH_CLOCK").as_deref() {
        Ok("thread-cpu") => thread_cpu(),
        Ok("wall") | Err(_) => wall_clock(),
        Ok(other) => panic!("EDGEGUARD_BENCH_CLOCK={other}: expected `wall` or `thread-cpu`"),
    }
    Criterion::default().configure_from_args().final_summary();
}
