//! The `Heartbeat`: a small operational event every `heartbeatFrequency`, so that upstream a
//! device that went silent can be told from one that has nothing to report.
//!
//! Without it the only regular message is the low-priority timer's statistics, hours apart at
//! the twin defaults. The heartbeat carries what an operator asks first about a quiet device:
//! is the agent up (and since when), are its collectors healthy, is anything piling up in the
//! spool, has anything been dropped. The pipeline sends a High heartbeat at once rather than on
//! the high-priority timer, and never aggregates it.

use crate::config::Config;
use crate::event::{Event, ExtraDetails, Heartbeat, Payload};
use crate::metrics::Metrics;
use crate::status;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The shortest interval honoured: a twin value below it (`PT0S`, `PT0.1S`) would turn the
/// heartbeat into a flood of messages.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The heartbeat record of the agent as `metrics` shows it now; `sequence` counts from 1.
pub fn heartbeat(metrics: &Metrics, sequence: u64) -> Heartbeat {
    let r = status::report(metrics);
    let count = |state: &str| r.collectors.values().filter(|s| *s == state).count() as u32;
    let mut extra = ExtraDetails::new();
    for (name, state) in &r.collectors {
        if state != "Up" {
            extra.insert(format!("collector.{name}"), state.clone());
        }
    }
    // What an unchanged snapshot held back would have said is the last one sent: name it, so
    // upstream can tell "unchanged" from "missing" (`snapshotRefreshFrequency`).
    for (kind, s) in &r.snapshots {
        if s.unchanged_rounds > 0 {
            extra.insert(
                format!("snapshot.{kind}"),
                format!("unchanged since {}", s.last_sent),
            );
        }
    }
    let nonneg = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
    Heartbeat {
        agent_version: r.agent_version,
        uptime_seconds: r.uptime_seconds,
        sequence,
        spool_messages: nonneg(r.spool.messages),
        spool_bytes: nonneg(r.spool.bytes),
        queued_events: r.queue.values().map(|d| nonneg(d.events)).sum(),
        collectors_up: count("Up"),
        collectors_degraded: count("Degraded"),
        collectors_down: count("Down"),
        dropped_events: r.drops.values().sum(),
        extra_details: extra,
    }
}

/// Sends a heartbeat to `tx` every `heartbeatFrequency` (the first one interval after start:
/// the start itself is visible in the first snapshot), following changes of the key at once,
/// until `stop` is cancelled or the pipeline is gone.
pub async fn run(
    metrics: Arc<Metrics>,
    mut config: watch::Receiver<Arc<Config>>,
    tx: mpsc::Sender<Event>,
    stop: CancellationToken,
) {
    let interval = |c: &Config| c.heartbeat_frequency.max(MIN_INTERVAL);
    let mut every = interval(&config.borrow_and_update());
    let mut next = Instant::now() + every;
    let mut sequence = 0u64;
    let mut config_open = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = config.changed(), if config_open => {
                if changed.is_err() {
                    config_open = false;
                    continue;
                }
                let new = interval(&config.borrow_and_update());
                if new != every {
                    // A shorter interval takes effect now, not after the old one runs out.
                    next = next.min(Instant::now() + new);
                    every = new;
                }
            }
            _ = tokio::time::sleep_until(next) => {
                next = Instant::now() + every;
                sequence += 1;
                let event = Event::new(Payload::Heartbeat(vec![heartbeat(&metrics, sequence)]));
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CollectorHealth;
    use crate::metrics::Identity;

    fn record(e: &Event) -> Heartbeat {
        match &e.payload {
            Payload::Heartbeat(v) => v[0].clone(),
            other => panic!("not a heartbeat: {other:?}"),
        }
    }

    #[test]
    fn reports_collector_health_and_depths() {
        let metrics = Metrics::new(&Identity::default());
        metrics.collector_status("process", CollectorHealth::Up, "following");
        metrics.collector_status("connection", CollectorHealth::Degraded, "polling");
        metrics.collector_status("login", CollectorHealth::Down, "no auth log");
        metrics.set_spool(3, 4096);
        let h = heartbeat(&metrics, 7);
        assert_eq!(h.sequence, 7);
        assert_eq!(
            (h.collectors_up, h.collectors_degraded, h.collectors_down),
            (1, 1, 1)
        );
        assert_eq!((h.spool_messages, h.spool_bytes), (3, 4096));
        assert_eq!(h.extra_details.get("collector.login").unwrap(), "Down");
        assert_eq!(
            h.extra_details.get("collector.connection").unwrap(),
            "Degraded"
        );
        assert!(!h.extra_details.contains_key("collector.process"));
    }

    #[tokio::test(start_paused = true)]
    async fn beats_on_the_interval_and_follows_the_twin() {
        let metrics = Arc::new(Metrics::new(&Identity::default()));
        let (config_tx, config_rx) = watch::channel(Arc::new(Config::default()));
        let (tx, mut rx) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(metrics, config_rx, tx, stop.clone()));
        let start = Instant::now();
        let first = rx.recv().await.unwrap();
        assert_eq!(start.elapsed(), crate::config::DEFAULT_HEARTBEAT);
        assert_eq!(record(&first).sequence, 1);
        // A shorter interval applies at once; zero is raised to the minimum.
        config_tx.send_modify(|c| Arc::make_mut(c).heartbeat_frequency = Duration::ZERO);
        let t = Instant::now();
        let second = rx.recv().await.unwrap();
        assert_eq!(t.elapsed(), MIN_INTERVAL);
        assert_eq!(record(&second).sequence, 2);
        stop.cancel();
        task.await.unwrap();
    }
}
