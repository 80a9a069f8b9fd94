//! [`Context`]: what every collector task is given, and how its events reach the pipeline.

use super::reader::{Held, KERNEL_EMIT_WAIT, READER_HOLD_EVENTS};
use crate::config::Config;
use crate::event::{CollectorHealth, CollectorStatus, Event, Payload};
use crate::host::HostRoot;
use crate::metrics::{DropReason, Metrics};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// What every collector task is given: where the host is, where events go, and how to stop.
#[derive(Clone)]
pub struct Context {
    pub host: HostRoot,
    pub events: mpsc::Sender<Event>,
    pub metrics: Arc<Metrics>,
    pub config: watch::Receiver<Arc<Config>>,
    pub cancel: CancellationToken,
    /// For state that must survive a restart (file positions, last-seen account lists).
    pub state_dir: PathBuf,
}

impl Context {
    /// Sends an event from a source that can wait (files, snapshots). Returns `false` once the
    /// pipeline has stopped.
    pub async fn emit(&self, collector: &'static str, event: Event) -> bool {
        self.metrics.collected(collector, event.kind());
        self.events.send(event).await.is_ok()
    }

    /// Sends an event from a source that cannot pause (a kernel socket that would overflow): when
    /// the pipeline is behind, the event is dropped and counted instead of blocking the reader.
    /// Returns `false` once the pipeline has stopped.
    pub fn emit_now(&self, collector: &'static str, event: Event) -> bool {
        self.metrics.collected(collector, event.kind());
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.dropped(collector, DropReason::ChannelFull, 1);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Like [`Context::emit_now`], for the kernel readers' own threads (never call it from an
    /// async task: it sleeps): when the channel is full it waits up to [`KERNEL_EMIT_WAIT`] for
    /// room before dropping and counting the event. A pipeline that is only briefly behind (a
    /// busy CPU, a snapshot being serialized) then costs no events; meanwhile the kernel keeps
    /// queueing in the reader's socket buffer (several MiB), and overflows there are counted too.
    pub fn emit_from_reader(&self, collector: &'static str, event: Event) -> bool {
        self.metrics.collected(collector, event.kind());
        let mut event = event;
        let mut deadline = None;
        loop {
            match self.events.try_send(event) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(back)) => {
                    let until = *deadline.get_or_insert_with(|| Instant::now() + KERNEL_EMIT_WAIT);
                    if Instant::now() >= until || self.cancel.is_cancelled() {
                        self.metrics.dropped(collector, DropReason::ChannelFull, 1);
                        return true;
                    }
                    event = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
    }

    /// Holds an event of a kernel reader ([`Held`]); hands the hold over when it is full.
    /// Returns `false` once the pipeline has stopped.
    pub fn hold(&self, held: &mut Held, collector: &'static str, event: Event) -> bool {
        held.since.get_or_insert_with(Instant::now);
        held.events.push(event);
        if held.events.len() >= READER_HOLD_EVENTS {
            return self.release(held, collector);
        }
        true
    }

    /// Hands every held event to the pipeline, in order ([`Context::emit_from_reader`] for
    /// each). Returns `false` once the pipeline has stopped.
    pub fn release(&self, held: &mut Held, collector: &'static str) -> bool {
        held.since = None;
        let mut open = true;
        for event in held.events.drain(..) {
            open = open && self.emit_from_reader(collector, event);
        }
        open
    }

    /// Like [`Context::emit`], from a blocking thread (a netlink reader).
    pub fn blocking_emit(&self, collector: &'static str, event: Event) -> bool {
        self.metrics.collected(collector, event.kind());
        self.events.blocking_send(event).is_ok()
    }

    /// Records a collector's health: the metric always, and a `CollectorStatus` event plus a log
    /// line (warning unless Up). Call it on changes, not on every read: it is meant to be rare.
    pub fn report_status(
        &self,
        collector: &'static str,
        status: CollectorHealth,
        message: impl Into<String>,
        fallback: Option<&str>,
    ) {
        let message = message.into();
        self.metrics.collector_status(collector, status, &message);
        match status {
            CollectorHealth::Up => tracing::info!(collector, "{message}"),
            _ => tracing::warn!(collector, status = status.as_str(), fallback, "{message}"),
        }
        let event = Event::new(Payload::CollectorStatus(vec![CollectorStatus {
            collector: collector.to_string(),
            status,
            message,
            fallback: fallback.map(str::to_string),
            extra_details: Default::default(),
        }]));
        // May be called from a blocking thread: never wait; a full channel is counted as a drop.
        self.emit_now(collector, event);
    }
}
