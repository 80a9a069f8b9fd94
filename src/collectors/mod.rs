//! Collectors: one file per source. Each turns what the host shows into typed events.
//!
//! Periodic collectors take snapshots on the `snapshotFrequency` timer; triggered collectors
//! (processes, connections, logins: host collectors issue) stream events as they happen. A
//! collector that cannot read part of its source says so in its events and in the log, counts
//! the error, and the others carry on.

pub mod system;

use crate::config::Config;
use crate::event::Event;
use crate::host::HostRoot;
use crate::metrics::Metrics;
use crate::pipeline::Control;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// A source that is read as a whole on a timer.
pub trait Periodic: Send + 'static {
    /// The collector's name (the `collector` metric label).
    fn name(&self) -> &'static str;

    /// Takes one snapshot. Runs on a blocking thread: it may read files.
    fn collect(&mut self, host: &HostRoot) -> Vec<Event>;
}

/// Every periodic collector this build has.
pub fn periodic_collectors() -> Vec<Box<dyn Periodic>> {
    vec![Box::new(system::SystemInformationCollector)]
}

/// Runs every periodic collector once and sends their events. Returns `false` when the pipeline
/// has stopped taking events.
pub async fn collect_once(
    collectors: &mut Vec<Box<dyn Periodic>>,
    host: &HostRoot,
    tx: &mpsc::Sender<Event>,
    metrics: &Metrics,
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
    }
    true
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

/// The periodic collectors' task: a snapshot at start (followed by a flush, so the first message
/// leaves within a second of start), then one every `snapshotFrequency`, until `cancel`.
pub async fn run_periodic(
    mut collectors: Vec<Box<dyn Periodic>>,
    host: HostRoot,
    tx: mpsc::Sender<Event>,
    mut config: watch::Receiver<Arc<Config>>,
    control: mpsc::Sender<Control>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut first = true;
    loop {
        if !collect_once(&mut collectors, &host, &tx, &metrics).await {
            return;
        }
        if first {
            first = false;
            let _ = control.send(Control::Flush(None)).await;
        }
        let period = config.borrow().snapshot_frequency;
        let next = tokio::time::Instant::now() + period;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(next) => break,
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
