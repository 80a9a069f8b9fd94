//! Collectors: one file per source. Each turns what the host shows into typed events.
//!
//! Periodic collectors take snapshots on the `snapshotFrequency` timer; triggered collectors
//! (processes, connections, logins: host collectors issue) stream events as they happen. A
//! collector that cannot read part of its source says so in its events and in the log, counts
//! the error, and the others carry on.

pub mod baseline;
pub mod capacity;
pub mod connection;
pub mod firewall;
pub mod listening;
pub mod login;
pub mod process;
pub mod system;
pub mod users;

mod context;
mod reader;

pub use context::Context;
pub use reader::{Held, KERNEL_EMIT_WAIT, READER_HOLD, READER_HOLD_EVENTS, RecvTimeout};

use crate::config::Config;
use crate::event::{CollectorHealth, Event};
use crate::host::HostRoot;
use crate::metrics::Metrics;
use crate::pipeline::Control;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::task::TaskTracker;

/// A source that is read as a whole on a timer.
pub trait Periodic: Send + 'static {
    /// The collector's name (the `collector` metric label).
    fn name(&self) -> &'static str;

    /// Takes one snapshot. Runs on a blocking thread: it may read files.
    fn collect(&mut self, host: &HostRoot) -> Vec<Event>;
}

/// Every periodic collector this build has.
pub fn periodic_collectors(
    metrics: &Arc<Metrics>,
    config: &watch::Receiver<Arc<Config>>,
) -> Vec<Box<dyn Periodic>> {
    vec![
        Box::new(system::SystemInformationCollector),
        Box::new(listening::ListeningPortsCollector),
        Box::new(users::LocalUsersCollector),
        Box::new(firewall::FirewallCollector::new(metrics.clone())),
        Box::new(baseline::BaselineCollector::new(config.clone())),
    ]
}

/// Starts every triggered collector: the kernel readers on their own threads, the file
/// followers as tasks. All of them stop when `ctx.cancel` is cancelled; `tracker` waits for them.
pub fn start_triggered(ctx: &Context, tracker: &TaskTracker) {
    match process::spawn(ctx.clone()) {
        Ok(thread) => {
            tracker.spawn(thread_finished(thread));
        }
        Err(e) => ctx.report_status(
            "process",
            CollectorHealth::Down,
            format!("cannot start the process collector: {e}"),
            None,
        ),
    }
    tracker.spawn(thread_finished(connection::spawn(ctx.clone())));
    tracker.spawn(login::run(ctx.clone()));
    tracker.spawn(users::watch(ctx.clone()));
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
        first = false;
        if !collect_round(&mut collectors, &host, &tx, &metrics, flush_each).await {
            return;
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
