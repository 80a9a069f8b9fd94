//! Collectors: one folder (or file) per source. Each turns what the host shows into typed events.
//!
//! A collector has one of two shapes:
//! - [`Periodic`]: read as a whole on the `snapshotFrequency` timer (and once at start), on a
//!   blocking thread: system information, listening ports, users, firewall, OS baseline, the
//!   container inventory;
//! - [`Triggered`]: streams events as they happen until cancelled, on a thread of its own (the
//!   kernel readers: processes, connections) or as a task (logins, account changes, container
//!   events).
//!
//! Every collector of the build is listed once, in [`crate::registry`]; the wiring in `lib.rs`
//! starts whatever that list holds. A collector that cannot read part of its source says so in
//! its events and in the log, counts the error, and the others carry on. What collectors read
//! the host with is in [`crate::host`] (files) and [`crate::kernel`] (system calls).

pub mod baseline;
pub mod capacity;
pub mod connection;
pub mod files;
pub mod firewall;
pub mod hardware;
pub mod inventory;
pub mod listening;
pub mod login;
pub mod process;
pub mod system;
pub mod users;

mod context;
mod reader;

pub use context::Context;
pub use reader::{Held, KERNEL_EMIT_WAIT, READER_HOLD, READER_HOLD_EVENTS, RecvTimeout};

use crate::event::{Category, CollectorHealth, Event, EventKind};
use crate::host::HostRoot;
use crate::metrics::Metrics;
use crate::pipeline::Control;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio_util::task::TaskTracker;

/// A source that is read as a whole on a timer.
pub trait Periodic: Send + 'static {
    /// The collector's name (the `collector` metric label).
    fn name(&self) -> &'static str;

    /// Takes one snapshot. Runs on a blocking thread: it may read files.
    fn collect(&mut self, host: &HostRoot) -> Vec<Event>;
}

/// A source that streams events as they happen, until its context is cancelled.
pub trait Triggered: Send + 'static {
    /// The collector's name (the `collector` metric label).
    fn name(&self) -> &'static str;

    /// Starts following the source. An error means the collector cannot run at all; it is then
    /// reported `Down` and the others carry on.
    fn start(self: Box<Self>, ctx: Context) -> std::io::Result<Running>;
}

/// How a started [`Triggered`] collector runs.
pub enum Running {
    /// On a std thread of its own (a reader that blocks on a kernel socket).
    Thread(std::thread::JoinHandle<()>),
    /// As a task on the runtime.
    Task(Pin<Box<dyn Future<Output = ()> + Send>>),
}

impl Running {
    /// A task running `future`.
    pub fn task(future: impl Future<Output = ()> + Send + 'static) -> Running {
        Running::Task(Box::pin(future))
    }
}

/// A collector of either shape (an entry of [`crate::registry`]).
pub enum Collector {
    Periodic(Box<dyn Periodic>),
    Triggered(Box<dyn Triggered>),
}

/// A list of collectors split by shape, each part in list order.
pub struct ByShape {
    pub periodic: Vec<Box<dyn Periodic>>,
    pub triggered: Vec<Box<dyn Triggered>>,
}

impl ByShape {
    pub fn new(all: Vec<Collector>) -> ByShape {
        let mut split = ByShape {
            periodic: Vec::new(),
            triggered: Vec::new(),
        };
        for c in all {
            match c {
                Collector::Periodic(p) => split.periodic.push(p),
                Collector::Triggered(t) => split.triggered.push(t),
            }
        }
        split
    }
}

/// Every collector's state, a line each (after the first round of snapshots, when the kernel
/// readers have said how they run): what an operator reading the start of the log needs.
fn log_states(metrics: &Metrics) {
    for (collector, state) in metrics.status().collectors() {
        if state.status == CollectorHealth::Up.as_str() {
            tracing::info!(%collector, status = %state.status, "collector state: {}", state.message);
        } else {
            tracing::warn!(%collector, status = %state.status, "collector state: {}", state.message);
        }
    }
}

/// Puts every collector on the status board before it starts (`Up`, until it reports otherwise),
/// so `edgeguard status` and the start-up lines name them all.
pub fn register(all: &ByShape, metrics: &Metrics, snapshot_every: std::time::Duration) {
    let every = crate::config::format_duration(snapshot_every);
    for p in &all.periodic {
        metrics
            .status()
            .register(p.name(), &format!("snapshot every {every}"));
    }
    for t in &all.triggered {
        metrics.status().register(t.name(), "following");
    }
}

/// Starts the triggered collectors, in order: threads and tasks that stop when `ctx.cancel` is
/// cancelled, and that `tracker` waits for.
pub fn start_triggered(collectors: Vec<Box<dyn Triggered>>, ctx: &Context, tracker: &TaskTracker) {
    for collector in collectors {
        let name = collector.name();
        match collector.start(ctx.clone()) {
            Ok(Running::Thread(thread)) => {
                tracker.spawn(thread_finished(thread));
            }
            Ok(Running::Task(task)) => {
                tracker.spawn(task);
            }
            Err(e) => ctx.report_status(
                name,
                CollectorHealth::Down,
                format!("cannot start the {name} collector: {e}"),
                None,
            ),
        }
    }
}

/// Runs every periodic collector once and sends their events. Returns `false` when the pipeline
/// has stopped taking events.
pub async fn collect_once(
    collectors: &mut Vec<Box<dyn Periodic>>,
    host: &HostRoot,
    tx: &mpsc::Sender<Event>,
    metrics: &Metrics,
) -> bool {
    collect_round(collectors, host, tx, metrics, None, None).await
}

/// Holds back a periodic snapshot identical to the last one sent, for up to
/// `snapshotRefreshFrequency`.
///
/// Snapshots are most of an idle device's upstream cost (a software inventory and an OS
/// baseline are about 50 of IoT Hub's 4 KB units a round, twice a day at the 13-hour default),
/// and on a device nobody touches they repeat word for word. The latest snapshot of each kind
/// upstream stays the device's current state; the heartbeat names the kinds held back and
/// when each was last sent (`snapshot.<Kind>`), so "unchanged" can be told from "missing", and
/// a full copy goes out again at least every `snapshotRefreshFrequency` so it never ages out
/// of retention upstream. Any change, the first round after start and a requested snapshot
/// (the `snapshot` direct method) send in full.
#[derive(Debug, Default)]
pub struct SnapshotDedup {
    /// (collector, kind) → digest of the payloads last sent, and when.
    last: std::collections::HashMap<(&'static str, EventKind), (u64, Instant)>,
}

impl SnapshotDedup {
    /// What of one collector's round to send: every event but the `Periodic` kinds whose
    /// payloads equal the last ones sent less than `refresh` ago (none when `force`).
    pub fn filter(
        &mut self,
        collector: &'static str,
        events: Vec<Event>,
        refresh: Duration,
        force: bool,
        metrics: &Metrics,
        now: Instant,
    ) -> Vec<Event> {
        let mut digests: Vec<(EventKind, u64)> = Vec::new();
        let mut hashers: Vec<(EventKind, std::collections::hash_map::DefaultHasher)> = Vec::new();
        for e in events.iter().filter(|e| e.category == Category::Periodic) {
            let kind = e.kind();
            let i = match hashers.iter().position(|(k, _)| *k == kind) {
                Some(i) => i,
                None => {
                    hashers.push((kind, Default::default()));
                    hashers.len() - 1
                }
            };
            // The payload as it is sent (not the event: its id and time change every round).
            match serde_json::to_vec(&e.payload) {
                Ok(bytes) => bytes.hash(&mut hashers[i].1),
                // Cannot happen for these payloads; a fresh id makes the round count as changed.
                Err(_) => e.id.hash(&mut hashers[i].1),
            }
        }
        for (kind, h) in hashers {
            digests.push((kind, h.finish()));
        }
        let mut held = Vec::new();
        for (kind, digest) in digests {
            let key = (collector, kind);
            match self.last.get(&key) {
                Some((d, sent))
                    if !force && *d == digest && now.duration_since(*sent) < refresh =>
                {
                    held.push(kind);
                    metrics.snapshot_unchanged(kind);
                }
                _ => {
                    self.last.insert(key, (digest, now));
                    metrics.snapshot_sent(kind);
                }
            }
        }
        if held.is_empty() {
            return events;
        }
        events
            .into_iter()
            .filter(|e| !(e.category == Category::Periodic && held.contains(&e.kind())))
            .collect()
    }
}

/// One round's [`SnapshotDedup`] settings.
struct Dedup<'a> {
    state: &'a mut SnapshotDedup,
    refresh: Duration,
    force: bool,
}

/// One round of every periodic collector; with `flush_each`, the pipeline is asked to send after
/// each collector, so a slow one (the baseline walks directories) does not hold back the others.
async fn collect_round(
    collectors: &mut Vec<Box<dyn Periodic>>,
    host: &HostRoot,
    tx: &mpsc::Sender<Event>,
    metrics: &Metrics,
    flush_each: Option<&mpsc::Sender<Control>>,
    mut dedup: Option<Dedup<'_>>,
) -> bool {
    for slot in collectors.iter_mut() {
        let mut c = std::mem::replace(slot, Box::new(Placeholder));
        let h = host.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let events = c.collect(&h);
            (c, events)
        })
        .await;
        let events = match joined {
            Ok((c, events)) => {
                *slot = c;
                events
            }
            Err(e) => {
                // The collector panicked: keep the others going, and this one out of rotation.
                tracing::error!(error = %e, "a periodic collector failed");
                metrics.error("collector", "panic");
                continue;
            }
        };
        let name = slot.name();
        for event in &events {
            metrics.collected(name, event.kind());
        }
        let events = match dedup.as_mut() {
            Some(d) => d
                .state
                .filter(name, events, d.refresh, d.force, metrics, Instant::now()),
            None => events,
        };
        for event in events {
            if tx.send(event).await.is_err() {
                return false;
            }
        }
        if let Some(control) = flush_each {
            let _ = control.send(Control::Flush(None)).await;
        }
    }
    true
}

/// Completes when a collector thread has ended, so the task tracker waits for it, without
/// holding one of the runtime's few blocking threads for the thread's whole life.
async fn thread_finished(thread: std::thread::JoinHandle<()>) {
    while !thread.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if thread.join().is_err() {
        tracing::error!("a collector thread panicked");
    }
}

/// Stands in while a collector runs on a blocking thread, and for one that panicked.
struct Placeholder;

impl Periodic for Placeholder {
    fn name(&self) -> &'static str {
        "failed"
    }
    fn collect(&mut self, _: &HostRoot) -> Vec<Event> {
        Vec::new()
    }
}

/// The periodic collectors' task: a snapshot at start (each collector's events flushed as soon as
/// it is done, so the first message leaves within a second of start), then one every
/// `snapshotFrequency`, until `cancel`.
pub async fn run_periodic(
    mut collectors: Vec<Box<dyn Periodic>>,
    ctx: Context,
    control: mpsc::Sender<Control>,
    snapshot_now: Arc<Notify>,
) {
    let Context {
        host,
        events: tx,
        metrics,
        mut config,
        cancel,
        ..
    } = ctx;
    let mut first = true;
    let mut dedup = SnapshotDedup::default();
    // The first round, and one the `snapshot` direct method asked for, send in full.
    let mut force = true;
    loop {
        let flush_each = first.then_some(&control);
        let round = Dedup {
            state: &mut dedup,
            refresh: config.borrow().snapshot_refresh_frequency,
            force: std::mem::take(&mut force),
        };
        if !collect_round(
            &mut collectors,
            &host,
            &tx,
            &metrics,
            flush_each,
            Some(round),
        )
        .await
        {
            return;
        }
        if std::mem::take(&mut first) {
            log_states(&metrics);
        }
        let period = config.borrow().snapshot_frequency;
        let next = tokio::time::Instant::now() + period;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(next) => break,
                // The `snapshot` direct method.
                _ = snapshot_now.notified() => {
                    force = true;
                    break;
                }
                changed = config.changed() => {
                    if changed.is_err() {
                        // The config owner is gone: keep the current period.
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep_until(next) => break,
                        }
                    }
                    // A shorter period applies to the current wait too.
                    let period = config.borrow().snapshot_frequency;
                    if tokio::time::Instant::now() + period < next {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod dedup_tests {
    use super::*;
    use crate::event::{LocalUser, Payload};
    use crate::metrics::Identity;

    fn users(name: &str) -> Event {
        Event::new(Payload::LocalUsers(vec![LocalUser {
            user_name: name.into(),
            user_id: "1000".into(),
            group_names: "users".into(),
            group_ids: "100".into(),
            extra_details: Default::default(),
        }]))
    }

    fn kinds(events: &[Event]) -> Vec<EventKind> {
        events.iter().map(|e| e.kind()).collect()
    }

    #[test]
    fn holds_back_an_identical_snapshot_until_the_refresh_is_due() {
        let metrics = Metrics::new(&Identity::default());
        let mut d = SnapshotDedup::default();
        let week = Duration::from_secs(7 * 86_400);
        let t0 = Instant::now();
        let round = || {
            vec![
                users("pi"),
                Event::empty_snapshot(EventKind::ListeningPorts),
            ]
        };
        let first = d.filter("users", round(), week, false, &metrics, t0);
        assert_eq!(first.len(), 2, "the first round is always sent");
        // Same content, new ids and times: held back, and the heartbeat says since when.
        let later = t0 + Duration::from_secs(13 * 3600);
        assert!(
            d.filter("users", round(), week, false, &metrics, later)
                .is_empty()
        );
        let r = crate::status::report(&metrics);
        assert_eq!(r.snapshots["LocalUsers"].unchanged_rounds, 1);
        let hb = crate::heartbeat::heartbeat(&metrics, 1);
        assert!(
            hb.extra_details["snapshot.LocalUsers"].starts_with("unchanged since "),
            "{:?}",
            hb.extra_details
        );
        assert_eq!(
            metrics.value(
                "edgeguard_snapshots_unchanged_total",
                &[("kind", "LocalUsers")]
            ),
            Some(1.0)
        );
        // A change of one kind sends that kind only.
        let changed = vec![
            users("mallory"),
            Event::empty_snapshot(EventKind::ListeningPorts),
        ];
        let sent = d.filter("users", changed, week, false, &metrics, later);
        assert_eq!(kinds(&sent), [EventKind::LocalUsers]);
        assert_eq!(
            crate::status::report(&metrics).snapshots["LocalUsers"].unchanged_rounds,
            0
        );
        // A requested snapshot is sent in full.
        let forced = vec![users("mallory")];
        assert_eq!(
            d.filter("users", forced, week, true, &metrics, later).len(),
            1
        );
        // The refresh period sends the unchanged one again.
        let due = later + week;
        assert_eq!(
            d.filter("users", vec![users("mallory")], week, false, &metrics, due)
                .len(),
            1
        );
        // Zero refresh: every snapshot in full, as the retired agents did.
        assert_eq!(
            d.filter(
                "users",
                vec![users("mallory")],
                Duration::ZERO,
                false,
                &metrics,
                due
            )
            .len(),
            1
        );
    }

    #[test]
    fn passes_events_that_are_not_snapshots() {
        let metrics = Metrics::new(&Identity::default());
        let mut d = SnapshotDedup::default();
        let triggered = || {
            let mut e = users("pi");
            e.category = Category::Triggered;
            e
        };
        let t = Instant::now();
        for _ in 0..3 {
            let sent = d.filter("x", vec![triggered()], Duration::MAX, false, &metrics, t);
            assert_eq!(sent.len(), 1);
        }
    }
}
