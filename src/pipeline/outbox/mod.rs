//! The acknowledged buffer between the pipeline and a sink, backed by the [`Spool`].
//!
//! Every message from the pipeline is appended to the spool (a durable commit when the spool is
//! on disk) before the outbox takes the next one, so "handed over" means "survives a crash". A
//! message is removed only when the sink says it was delivered (`Delivery::Ack`); a failed
//! delivery (`Delivery::Retry`) is sent again, in order, with everything after it, after a
//! backoff with jitter. On start, what an earlier run left in the spool is sent first, in order.
//!
//! The spool is bounded: when it is full, the oldest Low-priority messages (then the oldest High)
//! that are not in flight are evicted and counted as dropped (`stage="spool"`,
//! `reason="spool_full"`); a message that finds the spool full of messages in flight is dropped
//! and counted the same way. Bodies are read back from the spool when they are sent, so memory
//! holds at most the window's bodies, not the whole backlog.
//!
//! Without a spool path ([`OutboxConfig::spool`] `None`, or a state directory that cannot hold
//! one) the same rules run in memory, and what is unacknowledged at exit is counted as lost.

use super::journal::Batch;
use super::spool::{self, Entry, Spool};
use super::{Message, Output};
use crate::backoff;
use crate::config::Config;
use crate::event::Priority;
use crate::metrics::{DropReason, Metrics};
use crate::text::error_chain;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

/// A message on its way to a sink, with the id its acknowledgement refers to (its spool id).
#[derive(Debug, Clone)]
pub struct Record {
    pub id: u64,
    pub priority: Priority,
    /// The module output it leaves on (edgeHub routes select on it).
    pub output: Output,
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
    /// Bytes of unacknowledged message bodies kept before the oldest are evicted.
    pub max_bytes: usize,
    /// Records handed to the sink before the first is acknowledged.
    pub window: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// After shutdown is requested, how long to keep trying to deliver what is left.
    pub grace: Duration,
    /// The spool file (`<state_dir>/spool.redb`, see [`spool::FILE_NAME`]); `None` keeps
    /// messages in memory only.
    pub spool: Option<PathBuf>,
    /// The running configuration: a twin change of `maxLocalCacheSizeInBytes` rebounds the
    /// spool (the next append evicts down to the new size). `None`: `max_bytes` for good.
    pub config: Option<watch::Receiver<Arc<Config>>>,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_bytes: 2_560_000,
            window: 1,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(60),
            grace: Duration::from_secs(10),
            spool: None,
            config: None,
        }
    }
}

/// Opens the spool `cfg` names, or an in-memory one. Never fails: a corrupt file is set aside
/// (counted as `errors_total{component="spool",error_type="corrupt"}`), and a spool that cannot
/// be opened at all (`error_type="open"`) is replaced by memory, so the agent runs regardless.
pub async fn open_spool(cfg: &OutboxConfig, metrics: &Metrics) -> Spool {
    let Some(path) = cfg.spool.clone() else {
        return Spool::memory(cfg.max_bytes);
    };
    let max_bytes = cfg.max_bytes;
    let shown = path.display().to_string();
    let opened = tokio::task::spawn_blocking(move || Spool::open(path, max_bytes))
        .await
        .unwrap_or_else(|e| Err(spool::Error::Worker(e)));
    match opened {
        Ok(s) => {
            if s.set_aside().is_some() {
                metrics.error("spool", "corrupt");
            }
            if s.repaired() > 0 {
                metrics.error("spool", "corrupt_record");
            }
            s
        }
        Err(e) => {
            tracing::error!(
                path = %shown,
                error = %error_chain(&e),
                "cannot open the spool; keeping messages in memory (lost on restart)"
            );
            metrics.error("spool", "open");
            Spool::memory(max_bytes)
        }
    }
}

/// The spool, shared by the outbox (messages) and the pipeline task (its journal) with the
/// blocking threads that do the file I/O. Each awaits its own blocking calls, so the lock is
/// held by at most one commit at a time and otherwise uncontended.
#[derive(Clone)]
pub struct Store {
    spool: Arc<Mutex<Spool>>,
    durable: bool,
}

impl Store {
    pub fn new(spool: Spool) -> Store {
        Store {
            durable: spool.is_durable(),
            spool: Arc::new(Mutex::new(spool)),
        }
    }

    /// Whether what is written survives a restart.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    pub fn lock(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on a blocking thread when it may touch the disk (an `fsync` must not stall the
    /// runtime's other tasks), inline otherwise.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Spool) -> R + Send + 'static,
    ) -> Result<R, spool::Error> {
        if !self.durable {
            return Ok(f(&mut self.lock()));
        }
        let shared = self.spool.clone();
        tokio::task::spawn_blocking(move || {
            f(&mut shared.lock().unwrap_or_else(PoisonError::into_inner))
        })
        .await
        .map_err(spool::Error::Worker)
    }
}

/// Runs until the pipeline has closed `input` and every message is acknowledged, or until the
/// grace period after `shutdown` runs out. The spool comes from `cfg.spool` (see
/// [`open_spool`]); what is unacknowledged at the end stays there for the next start (or, in
/// memory, is counted as lost).
pub async fn run(
    input: mpsc::Receiver<Message>,
    records: mpsc::Sender<Record>,
    deliveries: mpsc::Receiver<Delivery>,
    metrics: Arc<Metrics>,
    cfg: OutboxConfig,
    shutdown: CancellationToken,
) {
    let spool = open_spool(&cfg, &metrics).await;
    run_with_spool(input, records, deliveries, metrics, cfg, spool, shutdown).await
}

/// [`run`] with a spool the caller opened (`cfg.spool` and `cfg.max_bytes` are not used).
pub async fn run_with_spool(
    input: mpsc::Receiver<Message>,
    records: mpsc::Sender<Record>,
    deliveries: mpsc::Receiver<Delivery>,
    metrics: Arc<Metrics>,
    cfg: OutboxConfig,
    spool: Spool,
    shutdown: CancellationToken,
) {
    run_with_store(
        input,
        records,
        deliveries,
        metrics,
        cfg,
        Store::new(spool),
        shutdown,
    )
    .await
}

/// [`run`] with a spool shared with the pipeline's journal.
pub async fn run_with_store(
    mut input: mpsc::Receiver<Message>,
    records: mpsc::Sender<Record>,
    mut deliveries: mpsc::Receiver<Delivery>,
    metrics: Arc<Metrics>,
    cfg: OutboxConfig,
    store: Store,
    shutdown: CancellationToken,
) {
    {
        let spool = store.lock();
        if !spool.is_empty() {
            tracing::info!(
                messages = spool.len(),
                bytes = spool.bytes(),
                "sending messages left in the spool first"
            );
        }
    }
    // A message the spool could not store (I/O error); input waits until it is stored.
    let mut held: Option<Message> = None;
    let mut held_attempt = 0u32;
    let mut store_at: Option<Instant> = None;
    let mut input_open = true;
    let mut attempt = 0u32;
    let mut resume_at: Option<Instant> = None;
    let mut deadline: Option<Instant> = None;
    let window = cfg.window.max(1);
    let mut config = cfg.config.clone();

    loop {
        if !input_open && held.is_none() && store.lock().is_empty() {
            break;
        }
        // Hand records to the sink, in id order, up to the window.
        if resume_at.is_none_or(|t| t <= Instant::now()) {
            resume_at = None;
            let next: Vec<Entry> = {
                let s = store.lock();
                let room = window.saturating_sub(s.in_flight());
                s.idle().take(room).collect()
            };
            for e in next {
                let body = match store.call(move |s| s.read(e.id)).await.and_then(|r| r) {
                    Ok(body) => body,
                    Err(err) if !err.is_transient() => {
                        // Unreadable for good: drop it rather than block everything behind it.
                        tracing::error!(id = e.id, events = e.events, error = %error_chain(&err), "spool record unreadable; dropping it");
                        metrics.error("spool", "corrupt_record");
                        let _ = store.call(move |s| s.remove(e.id)).await;
                        store.lock().forget(e.id);
                        continue;
                    }
                    Err(err) => {
                        tracing::error!(id = e.id, error = %error_chain(&err), "cannot read the spool; retrying after backoff");
                        metrics.error("spool", "read");
                        resume_at = Some(
                            Instant::now()
                                + backoff::full_jitter(cfg.backoff_min, cfg.backoff_max, attempt),
                        );
                        attempt = attempt.saturating_add(1);
                        break;
                    }
                };
                let record = Record {
                    id: e.id,
                    priority: e.priority,
                    output: e.output,
                    body,
                    events: e.events,
                };
                if records.send(record).await.is_err() {
                    tracing::error!("sink stopped; undelivered messages stay queued");
                    input_open = false;
                    deadline.get_or_insert_with(Instant::now);
                    break;
                }
                metrics.message_sent();
                store.lock().set_in_flight(e.id, true);
            }
        }
        {
            let s = store.lock();
            metrics.set_spool(s.len(), s.bytes());
        }

        let accepting = input_open && held.is_none();
        tokio::select! {
            biased;
            d = deliveries.recv() => match d {
                Some(Delivery::Ack(id)) => {
                    let entry = {
                        let s = store.lock();
                        s.get(id).filter(|_| s.is_in_flight(id))
                    };
                    match entry {
                        Some(e) => {
                            match store.call(move |s| s.remove(id)).await.and_then(|r| r) {
                                Ok(_) => {}
                                Err(err) => {
                                    tracing::error!(id, error = %error_chain(&err), "cannot delete a delivered message; it may be sent again after a restart");
                                    metrics.error("spool", "write");
                                    store.lock().forget(id);
                                }
                            }
                            metrics.message_acked(e.len);
                            attempt = 0;
                        }
                        None => tracing::warn!(id, "acknowledgement for a message not in flight"),
                    }
                }
                Some(Delivery::Retry(id)) => {
                    metrics.message_failed();
                    // A sink reports every record of a dropped connection; the first one already
                    // sent the rest back, and must not grow the backoff once per record.
                    if store.lock().is_in_flight(id) {
                        // Everything from this record on goes again, in order.
                        store.lock().retry_from(id);
                        let delay = backoff::full_jitter(cfg.backoff_min, cfg.backoff_max, attempt);
                        attempt = attempt.saturating_add(1);
                        tracing::debug!(id, ?delay, "delivery failed; retrying after backoff");
                        resume_at = Some(Instant::now() + delay);
                    }
                }
                None => {
                    tracing::error!("sink stopped reporting deliveries");
                    break;
                }
            },
            changed = async { config.as_mut()?.changed().await.ok() }, if config.is_some() => {
                match changed {
                    Some(()) => {
                        let max = config
                            .as_mut()
                            .map(|c| c.borrow_and_update().max_local_cache_size_in_bytes as usize);
                        if let Some(max) = max {
                            let mut s = store.lock();
                            if s.max_bytes() != max {
                                tracing::info!(max_bytes = max, "spool bound changed");
                                s.set_max_bytes(max);
                            }
                        }
                    }
                    // The configuration no longer changes.
                    None => config = None,
                }
            }
            _ = shutdown.cancelled(), if deadline.is_none() => {
                deadline = Some(Instant::now() + cfg.grace);
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                break;
            }
            _ = sleep_until(resume_at.unwrap_or_else(Instant::now)), if resume_at.is_some() => {}
            _ = sleep_until(store_at.unwrap_or_else(Instant::now)), if store_at.is_some() => {
                store_at = None;
                if let Some(m) = held.take() {
                    held = store_message(&store, &metrics, m).await;
                    if held.is_some() {
                        store_at = Some(Instant::now() + backoff::full_jitter(cfg.backoff_min, cfg.backoff_max, held_attempt));
                        held_attempt = held_attempt.saturating_add(1);
                    } else {
                        held_attempt = 0;
                    }
                }
            }
            m = input.recv(), if accepting => match m {
                Some(m) => {
                    held = store_message(&store, &metrics, m).await;
                    if held.is_some() {
                        store_at = Some(Instant::now() + backoff::full_jitter(cfg.backoff_min, cfg.backoff_max, 0));
                        held_attempt = 1;
                    }
                }
                None => input_open = false,
            },
        }
    }

    // What the pipeline already handed over is kept for the next start rather than lost.
    if store.durable {
        if let Some(m) = held.take() {
            held = store_message(&store, &metrics, m).await;
        }
        while held.is_none() {
            let Ok(m) = input.try_recv() else { break };
            held = store_message(&store, &metrics, m).await;
        }
    }
    if let Some(m) = held {
        tracing::error!(
            events = m.events,
            "stopping with a message the spool could not store"
        );
        metrics.dropped("outbox", DropReason::Shutdown, m.events as u64);
    }
    let s = store.lock();
    if s.is_durable() {
        if !s.is_empty() {
            tracing::info!(
                messages = s.len(),
                bytes = s.bytes(),
                "stopping; unacknowledged messages stay in the spool for the next start"
            );
        }
    } else if !s.is_empty() {
        let lost_events: usize = s.pending().map(|e| e.events).sum();
        tracing::error!(
            messages = s.len(),
            events = lost_events,
            "stopping with undelivered messages (no durable spool)"
        );
        metrics.dropped("outbox", DropReason::Shutdown, lost_events as u64);
    }
    metrics.set_spool(0, 0);
}

/// Appends `m` to the spool and counts what that evicted (or the message itself, if the spool
/// is full of messages in flight). Returns the message if the spool could not store it (I/O
/// trouble), for a later attempt.
async fn store_message(store: &Store, metrics: &Metrics, m: Message) -> Option<Message> {
    let events = m.events;
    let result = store
        .call(move |s| {
            let mut r = s.append_to(m.output, m.priority, &m.body, m.events, &m.seqs);
            if let Err(spool::Error::Full { .. }) = &r {
                // Dropped, not stored: its events must not come back from the queue table.
                let forget = Batch {
                    removes: m.seqs.clone(),
                    ..Batch::default()
                };
                if let Err(e) = s.write_journal(&forget) {
                    r = Err(e);
                }
            }
            (m, r)
        })
        .await;
    match result {
        Ok((_, Ok(appended))) => {
            let evicted: usize = appended.evicted.iter().map(|e| e.events).sum();
            if !appended.evicted.is_empty() {
                tracing::debug!(
                    messages = appended.evicted.len(),
                    events = evicted,
                    "spool full; evicted the oldest messages"
                );
            }
            for e in &appended.evicted {
                metrics.spool_dropped(e.priority, e.events as u64);
            }
            None
        }
        Ok((m, Err(spool::Error::Full { len }))) => {
            tracing::debug!(
                len,
                events,
                "spool full of messages in flight; message dropped"
            );
            metrics.spool_dropped(m.priority, events as u64);
            None
        }
        Ok((m, Err(err))) => {
            tracing::error!(error = %error_chain(&err), "cannot store a message in the spool; retrying after backoff");
            metrics.error("spool", "write");
            Some(m)
        }
        Err(err) => {
            tracing::error!(error = %error_chain(&err), events, "spool worker failed; message dropped");
            metrics.error("spool", "worker");
            metrics.dropped("outbox", DropReason::Shutdown, events as u64);
            None
        }
    }
}

#[cfg(test)]
mod tests;
