//! The acknowledged buffer between the pipeline and a sink.
//!
//! A message is kept here until the sink says it was delivered (`Delivery::Ack`); a failed
//! delivery (`Delivery::Retry`) is sent again, in order, after a backoff with jitter. This is the
//! in-memory form of the spool: the crash-safe on-disk spool (edgeHub issue) takes its place with
//! the same records and deliveries, so sinks do not change.

use super::Message;
use crate::event::Priority;
use crate::metrics::{DropReason, Metrics};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

/// A message on its way to a sink, with the id its acknowledgement refers to.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: u64,
    pub priority: Priority,
    pub body: Arc<[u8]>,
    pub events: usize,
}

/// What a sink reports for each record it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered (written and flushed, or acknowledged by the broker): forget it.
    Ack(u64),
    /// Not delivered: send it again later, and everything sent after it.
    Retry(u64),
}

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Bytes of unacknowledged messages held before the outbox stops taking new ones.
    pub max_bytes: usize,
    /// Records handed to the sink before the first is acknowledged.
    pub window: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// After shutdown is requested, how long to keep trying to deliver what is left.
    pub grace: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_bytes: 2_560_000,
            window: 1,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(60),
            grace: Duration::from_secs(10),
        }
    }
}

struct Entry {
    record: Record,
    in_flight: bool,
}

/// Exponential backoff with full jitter: a random delay in `[min, min·2^attempt]`, capped.
pub fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = min
        .saturating_mul(1u32 << attempt.min(16))
        .min(max)
        .max(min);
    let span = (ceiling - min).as_millis() as u64;
    min + Duration::from_millis(fastrand::u64(0..=span))
}

/// Runs until the pipeline has closed `input` and every message is acknowledged, or until the
/// grace period after `shutdown` runs out (what is left then is counted as dropped).
pub async fn run(
    mut input: mpsc::Receiver<Message>,
    records: mpsc::Sender<Record>,
    mut deliveries: mpsc::Receiver<Delivery>,
    metrics: Arc<Metrics>,
    cfg: OutboxConfig,
    shutdown: CancellationToken,
) {
    let mut queue: VecDeque<Entry> = VecDeque::new();
    let mut bytes = 0usize;
    let mut next_id = 1u64;
    let mut input_open = true;
    let mut attempt = 0u32;
    let mut resume_at: Option<Instant> = None;
    let mut deadline: Option<Instant> = None;
    let window = cfg.window.max(1);

    loop {
        if !input_open && queue.is_empty() {
            break;
        }
        // Hand records to the sink, in order, up to the window.
        if resume_at.is_none_or(|t| t <= Instant::now()) {
            resume_at = None;
            let in_flight = queue.iter().filter(|e| e.in_flight).count();
            let mut room = window.saturating_sub(in_flight);
            for e in queue.iter_mut().filter(|e| !e.in_flight) {
                if room == 0 {
                    break;
                }
                if records.send(e.record.clone()).await.is_err() {
                    tracing::error!("sink stopped; undelivered messages stay queued");
                    input_open = false;
                    deadline.get_or_insert_with(Instant::now);
                    break;
                }
                metrics.message_sent();
                e.in_flight = true;
                room -= 1;
            }
        }
        metrics.set_outbox(queue.len(), bytes);

        let accepting = input_open && (queue.is_empty() || bytes < cfg.max_bytes);
        tokio::select! {
            biased;
            d = deliveries.recv() => match d {
                Some(Delivery::Ack(id)) => {
                    if let Some(pos) = queue.iter().position(|e| e.record.id == id && e.in_flight) {
                        let e = queue.remove(pos).expect("position is in range");
                        bytes -= e.record.body.len();
                        metrics.message_acked(e.record.body.len());
                        attempt = 0;
                    } else {
                        tracing::warn!(id, "acknowledgement for a message not in flight");
                    }
                }
                Some(Delivery::Retry(id)) => {
                    metrics.message_failed();
                    // Everything from this record on goes again, in order.
                    let mut from = false;
                    for e in queue.iter_mut() {
                        from |= e.record.id == id;
                        if from {
                            e.in_flight = false;
                        }
                    }
                    let delay = backoff(cfg.backoff_min, cfg.backoff_max, attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::debug!(id, ?delay, "delivery failed; retrying after backoff");
                    resume_at = Some(Instant::now() + delay);
                }
                None => {
                    tracing::error!("sink stopped reporting deliveries");
                    break;
                }
            },
            _ = shutdown.cancelled(), if deadline.is_none() => {
                deadline = Some(Instant::now() + cfg.grace);
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                break;
            }
            _ = sleep_until(resume_at.unwrap_or_else(Instant::now)), if resume_at.is_some() => {}
            m = input.recv(), if accepting => match m {
                Some(m) => {
                    bytes += m.body.len();
                    queue.push_back(Entry {
                        record: Record { id: next_id, priority: m.priority, body: m.body.into(), events: m.events },
                        in_flight: false,
                    });
                    next_id += 1;
                }
                None => input_open = false,
            },
        }
    }
    let lost_events: usize = queue.iter().map(|e| e.record.events).sum();
    if !queue.is_empty() {
        tracing::error!(
            messages = queue.len(),
            events = lost_events,
            "stopping with undelivered messages (no durable spool yet)"
        );
        metrics.dropped("outbox", DropReason::Shutdown, lost_events as u64);
    }
    metrics.set_outbox(0, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u8) -> Message {
        Message {
            priority: Priority::Low,
            body: vec![n; 10],
            events: 1,
        }
    }

    struct Harness {
        input: mpsc::Sender<Message>,
        records: mpsc::Receiver<Record>,
        deliveries: mpsc::Sender<Delivery>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(cfg: OutboxConfig) -> Harness {
        let metrics = Arc::new(Metrics::for_tests());
        let (input, in_rx) = mpsc::channel(1);
        let (rec_tx, records) = mpsc::channel(cfg.window);
        let (deliveries, del_rx) = mpsc::channel(cfg.window + 1);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(
            in_rx,
            rec_tx,
            del_rx,
            metrics.clone(),
            cfg,
            shutdown.clone(),
        ));
        Harness {
            input,
            records,
            deliveries,
            metrics,
            shutdown,
            task,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_message_is_resent_in_order_until_acknowledged() {
        let mut h = start(OutboxConfig::default());
        h.input.send(message(1)).await.unwrap();
        h.input.send(message(2)).await.unwrap();
        let r1 = h.records.recv().await.unwrap();
        assert_eq!(r1.body[0], 1);
        h.deliveries.send(Delivery::Retry(r1.id)).await.unwrap();
        // The same record comes again after the backoff, before record 2.
        let again = h.records.recv().await.unwrap();
        assert_eq!(again.id, r1.id);
        h.deliveries.send(Delivery::Ack(again.id)).await.unwrap();
        let r2 = h.records.recv().await.unwrap();
        assert_eq!(r2.body[0], 2);
        h.deliveries.send(Delivery::Ack(r2.id)).await.unwrap();
        drop(h.input);
        h.task.await.unwrap();
        assert_eq!(h.metrics.message_totals(), (2, 2, 1));
        assert_eq!(h.metrics.dropped_total("outbox", DropReason::Shutdown), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn unacknowledged_messages_are_counted_as_lost_after_the_grace_period() {
        let mut h = start(OutboxConfig {
            grace: Duration::from_secs(3),
            ..OutboxConfig::default()
        });
        h.input.send(message(1)).await.unwrap();
        let r = h.records.recv().await.unwrap();
        h.shutdown.cancel();
        // The sink keeps failing.
        h.deliveries.send(Delivery::Retry(r.id)).await.unwrap();
        let started = Instant::now();
        while let Some(r) = h.records.recv().await {
            let _ = h.deliveries.send(Delivery::Retry(r.id)).await;
        }
        h.task.await.unwrap();
        assert!(started.elapsed() <= Duration::from_secs(4));
        assert_eq!(h.metrics.dropped_total("outbox", DropReason::Shutdown), 1);
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 0..40 {
            let d = backoff(min, max, attempt);
            assert!(d >= min && d <= max, "{d:?}");
        }
        let late: Vec<Duration> = (0..50).map(|_| backoff(min, max, 10)).collect();
        assert!(late.iter().any(|d| *d > Duration::from_secs(1)), "grows");
        assert!(late.windows(2).any(|w| w[0] != w[1]), "jitters");
    }
}
