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

use crate::event::{CollectorHealth, Event};
use crate::host::HostRoot;
use crate::metrics::Metrics;
use crate::pipeline::Control;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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
    collect_round(collectors, host, tx, metrics, None).await
}

/// One round of every periodic collector; with `flush_each`, the pipeline is asked to send after
/// each collector, so a slow one (the baseline walks directories) does not hold back the others.
async fn collect_round(
    collectors: &mut Vec<Box<dyn Periodic>>,
    host: &HostRoot,
    tx: &mpsc::Sender<Event>,
    metrics: &Metrics,
    flush_each: Option<&mpsc::Sender<Control>>,
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
        for event in events {
            metrics.collected(name, event.kind());
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
    loop {
        let flush_each = first.then_some(&control);
        if !collect_round(&mut collectors, &host, &tx, &metrics, flush_each).await {
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
                _ = snapshot_now.notified() => break,
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
