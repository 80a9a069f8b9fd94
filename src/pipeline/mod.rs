//! From events to messages: priority → aggregation → cache → batches.
//!
//! [`Pipeline`] is the synchronous core (no I/O, no clock of its own: callers pass `now`), so
//! tests and benchmarks drive it directly. [`run`] is the task around it: it owns the send timers,
//! follows configuration changes, and hands finished messages to the outbox, waiting for room
//! there rather than building messages nobody can take (events wait in the bounded cache instead,
//! where the eviction policy applies).

pub mod aggregator;
pub mod cache;
pub mod outbox;
pub mod spool;

pub use cache::{Lane, Message, Output};

use crate::config::Config;
use crate::detect::{Detector, Finding};
use crate::event::{
    DroppedEventsStatistics, EncodeError, Event, EventKind, EventType, MessageHeader,
    MessageStatistics, Payload, Priority, QueueName, envelope,
};
use crate::metrics::{DropReason, Metrics};
use aggregator::{Added, Aggregator};
use cache::{Cache, Evicted};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

/// Largest serialization buffer kept between events; typical events are 0.5–1 KiB.
const SCRATCH_KEEP_BYTES: usize = 64 * 1024;

/// What makes the pipeline cut messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The high-priority timer: operational and High events, topped up with Low.
    High,
    /// The low-priority timer: Low events, topped up with operational and High.
    Low,
    /// The cache holds a full message's worth: send one full message at once.
    Full,
    /// Flush or shutdown: everything.
    All,
}

impl Trigger {
    fn lanes(self) -> (&'static [Lane], &'static [Lane]) {
        match self {
            Trigger::High => (&[Lane::Operational, Lane::High], &[Lane::Low]),
            Trigger::Low => (&[Lane::Low], &[Lane::Operational, Lane::High]),
            Trigger::Full | Trigger::All => (&[Lane::Operational, Lane::High, Lane::Low], &[]),
        }
    }
}

/// Events collected and dropped per queue since the last `DroppedEventsStatistics`.
#[derive(Debug, Default, Clone, Copy)]
struct QueueStats {
    collected: [u64; 2],
    dropped: [u64; 2],
}

fn queue_index(p: Priority) -> usize {
    match p {
        Priority::High => 0,
        _ => 1,
    }
}

pub struct Pipeline {
    header: MessageHeader,
    config: Arc<Config>,
    aggregator: Aggregator,
    cache: Cache,
    metrics: Arc<Metrics>,
    stats: QueueStats,
    /// Message counters already reported in a `MessageStatistics` event.
    reported_totals: (u64, u64, u64),
    /// Spool drops (High, Low) already reported in a `DroppedEventsStatistics` event.
    reported_spool_drops: [u64; 2],
    /// A limit of the sink below the twin's maximum (edgeHub refuses packets over 256 KiB,
    /// topic and properties included).
    sink_limit: usize,
    /// Serialization buffer reused for every event, so encoding does not grow a new `Vec`.
    scratch: Vec<u8>,
    /// Encoded pieces of the event being queued (reused; usually one).
    pieces: Vec<envelope::EncodedEvent>,
    /// Queue gauge values last written (High, Low): the gauges are only written when these
    /// change, since every write is a labelled lookup in the metrics registry.
    reported_queue: [(usize, usize); 2],
    /// On-device detection, shown every event before aggregation.
    detector: Detector,
    /// What the detector found in the event being pushed (reused).
    findings: Vec<Finding>,
    /// A High-priority alert was queued since [`Pipeline::take_alert_raised`] last looked.
    alert_raised: bool,
    /// `eventPriorityAlert`, looked up once per configuration rather than per event.
    alert_priority: Priority,
}

impl Pipeline {
    pub fn new(header: MessageHeader, config: Arc<Config>, metrics: Arc<Metrics>) -> Pipeline {
        let cache = Cache::new(config.max_local_cache_size_in_bytes as usize);
        let alert_priority = config.priority(EventKind::Alert);
        let mut detector = Detector::new();
        detector.set_disabled(&config.detection_rules_disabled);
        Pipeline {
            header,
            aggregator: Aggregator::new(aggregator::DEFAULT_MAX_KEYS),
            cache,
            reported_totals: metrics.message_totals(),
            reported_spool_drops: metrics.spool_dropped_totals(),
            metrics,
            config,
            stats: QueueStats::default(),
            sink_limit: usize::MAX,
            scratch: Vec::new(),
            pieces: Vec::new(),
            // Not a possible count, so the first update writes both gauges.
            reported_queue: [(usize::MAX, usize::MAX); 2],
            detector,
            findings: Vec::new(),
            alert_raised: false,
            alert_priority,
        }
    }

    /// Caps message sizes below `maxMessageSizeInBytes` for a sink that needs room of its own.
    pub fn with_sink_limit(mut self, max_message_bytes: usize) -> Pipeline {
        self.sink_limit = max_message_bytes;
        self
    }

    /// Bounds the aggregation map to `max_keys` distinct keys per kind.
    pub fn with_max_aggregation_keys(mut self, max_keys: usize) -> Pipeline {
        self.aggregator = Aggregator::new(max_keys);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn max_message_bytes(&self) -> usize {
        (self.config.max_message_size_in_bytes as usize).min(self.sink_limit)
    }

    /// Applies a new configuration: windows of kinds whose aggregation was switched off are
    /// flushed, and a smaller cache evicts at once.
    pub fn set_config(&mut self, config: Arc<Config>) {
        self.config = config;
        self.alert_priority = self.config.priority(EventKind::Alert);
        self.detector
            .set_disabled(&self.config.detection_rules_disabled);
        for kind in EventKind::AGGREGATABLE {
            if self.config.aggregation(kind).is_none() {
                for e in self.aggregator.drain_kind(kind) {
                    self.enqueue(e);
                }
            }
        }
        let evicted = self
            .cache
            .set_limit(self.config.max_local_cache_size_in_bytes as usize);
        self.count_evicted(evicted);
        self.update_queue_metrics();
    }

    /// Takes one event in: shown to the detector, then filtered by priority, aggregated, or
    /// queued.
    pub fn push(&mut self, event: Event, now: Instant) {
        let kind = event.kind();
        // `eventPriorityAlert: Off` turns detection off; alerts from other modules are not
        // inspected again.
        if kind != EventKind::Alert && self.alert_priority != Priority::Off {
            self.detect(&event, now);
        }
        let priority = self.config.priority(kind);
        if priority == Priority::Off {
            self.metrics.filtered(kind);
            return;
        }
        self.stats.collected[queue_index(priority)] += 1;
        match self.config.aggregation(kind) {
            Some(agg) => {
                let (added, merged) = self.aggregator.add(event, agg.interval, now);
                if merged {
                    self.metrics.aggregated(kind);
                }
                match added {
                    Added::Merged => {}
                    Added::Flushed(events) => events.into_iter().for_each(|e| self.enqueue(e)),
                    Added::NotAggregatable(e) => self.enqueue(e),
                }
            }
            None => self.enqueue(event),
        }
        self.update_queue_metrics();
    }

    /// Runs the detector on `event` and queues the alerts it raises.
    #[inline(never)]
    fn detect(&mut self, event: &Event, now: Instant) {
        self.detector.inspect(event, now, &mut self.findings);
        if self.findings.is_empty() {
            return;
        }
        let mut findings = std::mem::take(&mut self.findings);
        for finding in findings.drain(..) {
            match finding {
                Finding::Raised(rule, alert) => {
                    self.metrics.alert(rule, true);
                    tracing::warn!(
                        rule = rule.id(),
                        severity = ?alert.severity,
                        "alert: {}",
                        alert.description
                    );
                    self.push(Event::new(Payload::Alert(vec![*alert])), now);
                    self.alert_raised |= self.alert_priority == Priority::High;
                }
                Finding::Suppressed(rule) => self.metrics.alert(rule, false),
            }
        }
        self.findings = findings;
    }

    /// Whether a High-priority alert was queued since the last call: the task then sends at
    /// once rather than on the high-priority timer.
    pub fn take_alert_raised(&mut self) -> bool {
        std::mem::take(&mut self.alert_raised)
    }

    /// Serializes an event (split or truncated to fit a message) and puts it into the cache.
    fn enqueue(&mut self, event: Event) {
        let kind = event.kind();
        let priority = self.config.priority(kind);
        if priority == Priority::Off {
            self.metrics.filtered(kind);
            return;
        }
        let lane = match (kind.event_type(), priority) {
            _ if kind == EventKind::Alert => Lane::Alert,
            (EventType::Operational, _) => Lane::Operational,
            (_, Priority::High) => Lane::High,
            _ => Lane::Low,
        };
        let limit = self.header.max_event_size(self.max_message_bytes());
        let mut pieces = std::mem::take(&mut self.pieces);
        match envelope::encode_fitting_into(&event, limit, &mut self.scratch, &mut pieces) {
            Ok(()) => {
                for piece in pieces.drain(..) {
                    if piece.truncated {
                        self.metrics.truncated(kind);
                    }
                    let evicted = self.cache.push(lane, priority, piece);
                    self.count_evicted(evicted);
                }
            }
            Err(e @ EncodeError::TooLarge { .. }) => {
                tracing::debug!(error = %e, "event dropped");
                self.stats.dropped[queue_index(priority)] += 1;
                self.metrics.dropped("pipeline", DropReason::TooLarge, 1);
            }
        }
        // Pieces of an event refused half-way are not queued, as before.
        pieces.clear();
        self.pieces = pieces;
        // One huge snapshot should not pin its buffer for the agent's lifetime.
        if self.scratch.capacity() > SCRATCH_KEEP_BYTES {
            self.scratch = Vec::new();
        }
    }

    fn count_evicted(&mut self, evicted: Evicted) {
        if evicted == Evicted::default() {
            return;
        }
        self.stats.dropped[0] += evicted.high;
        self.stats.dropped[1] += evicted.low;
        self.metrics.dropped(
            "pipeline",
            DropReason::CacheFull,
            evicted.high + evicted.low,
        );
    }

    fn update_queue_metrics(&mut self) {
        for (i, p) in [Priority::High, Priority::Low].into_iter().enumerate() {
            let queued = self.cache.queued(p);
            if self.reported_queue[i] != queued {
                self.reported_queue[i] = queued;
                self.metrics.set_queue(p, queued.0, queued.1);
            }
        }
    }

    /// Moves the events of closed aggregation windows into the cache.
    pub fn expire_windows(&mut self, now: Instant) {
        for e in self.aggregator.expired(now) {
            self.enqueue(e);
        }
        self.update_queue_metrics();
    }

    /// Moves every open aggregation window into the cache (flush, shutdown).
    pub fn flush_windows(&mut self) {
        for e in self.aggregator.drain_all() {
            self.enqueue(e);
        }
        self.update_queue_metrics();
    }

    pub fn next_window_close(&self) -> Option<Instant> {
        self.aggregator.next_deadline()
    }

    /// Whether the cache holds at least one full message's worth of events.
    pub fn is_full(&self) -> bool {
        self.cache.len() > 1
            && self
                .header
                .message_size(self.cache.len(), self.cache.bytes())
                >= self.max_message_bytes()
    }

    pub fn queued_events(&self) -> usize {
        self.cache.len()
    }

    pub fn queued_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Cuts the next message for `trigger`, or `None` when that trigger has nothing (more) to send.
    ///
    /// Queued alerts go first, in messages of their own ([`Output::Alerts`]), on the triggers of
    /// their priority (`eventPriorityAlert`): High alerts with the high timer (which a new alert
    /// fires at once), Low ones with the low timer, both with a full cache or a flush.
    pub fn take_message(&mut self, trigger: Trigger) -> Option<Message> {
        if trigger == Trigger::Full && !self.is_full() {
            return None;
        }
        let alerts_go = match trigger {
            Trigger::High => self.alert_priority == Priority::High,
            Trigger::Low => self.alert_priority != Priority::High,
            Trigger::Full | Trigger::All => true,
        };
        if alerts_go && let Some(mut m) = self.cut(&[Lane::Alert], &[]) {
            m.output = Output::Alerts;
            return Some(m);
        }
        let (primary, topup) = trigger.lanes();
        self.cut(primary, topup)
    }

    /// One message from `primary` lanes topped up from `topup` (events too large for any message
    /// are dropped and counted on the way).
    fn cut(&mut self, primary: &[Lane], topup: &[Lane]) -> Option<Message> {
        let max = self.max_message_bytes();
        loop {
            let (message, oversize) = self.cache.take_message(&self.header, max, primary, topup);
            if oversize > 0 {
                self.metrics
                    .dropped("pipeline", DropReason::TooLarge, oversize);
            }
            self.update_queue_metrics();
            // A None with drops means the lane still may hold events that do fit: try again.
            if message.is_some() || oversize == 0 {
                return message;
            }
        }
    }

    /// `DroppedEventsStatistics` and `MessageStatistics` for the time since the last call.
    pub fn statistics_events(&mut self) -> Vec<Event> {
        let mut s = std::mem::take(&mut self.stats);
        // Events the spool evicted while the hub was away were collected here earlier; they
        // count as dropped from their queue now.
        let spool = self.metrics.spool_dropped_totals();
        let last_spool = std::mem::replace(&mut self.reported_spool_drops, spool);
        for i in 0..2 {
            s.dropped[i] += spool[i].saturating_sub(last_spool[i]);
        }
        let dropped = Payload::DroppedEventsStatistics(
            [QueueName::High, QueueName::Low]
                .into_iter()
                .enumerate()
                .map(|(i, queue)| DroppedEventsStatistics {
                    queue,
                    collected_events: s.collected[i],
                    dropped_events: s.dropped[i],
                    extra_details: Default::default(),
                })
                .collect(),
        );
        let totals = self.metrics.message_totals();
        let last = std::mem::replace(&mut self.reported_totals, totals);
        let messages = Payload::MessageStatistics(vec![MessageStatistics {
            messages_sent: totals.0 - last.0,
            messages_under_4kb: totals.1 - last.1,
            total_failed: totals.2 - last.2,
            extra_details: Default::default(),
        }]);
        vec![Event::new(dropped), Event::new(messages)]
    }
}

/// Requests to the pipeline task.
#[derive(Debug)]
pub enum Control {
    /// Close every aggregation window and send everything queued now; the reply (if any) comes
    /// once the messages are in the outbox.
    Flush(Option<oneshot::Sender<()>>),
}

/// Which triggers are waiting for room in the outbox.
#[derive(Debug, Default)]
struct Pending {
    all: bool,
    high: bool,
    low: bool,
    full: bool,
}

impl Pending {
    fn next(&self) -> Option<Trigger> {
        if self.all {
            Some(Trigger::All)
        } else if self.high {
            Some(Trigger::High)
        } else if self.low {
            Some(Trigger::Low)
        } else if self.full {
            Some(Trigger::Full)
        } else {
            None
        }
    }

    fn clear(&mut self, t: Trigger) {
        match t {
            Trigger::All => self.all = false,
            Trigger::High => self.high = false,
            Trigger::Low => self.low = false,
            Trigger::Full => self.full = false,
        }
    }
}

/// The pipeline task. Returns when `input` closes (every collector has stopped), after closing
/// every aggregation window and handing every queued event to `output`.
pub async fn run(
    mut pipeline: Pipeline,
    mut input: mpsc::Receiver<Event>,
    mut control: mpsc::Receiver<Control>,
    mut config: watch::Receiver<Arc<Config>>,
    output: mpsc::Sender<Message>,
) {
    let start = Instant::now();
    let mut next_high = start + pipeline.config().high_priority_message_frequency;
    let mut next_low = start + pipeline.config().low_priority_message_frequency;
    let mut pending = Pending::default();
    let mut flush_replies: Vec<oneshot::Sender<()>> = Vec::new();
    let mut control_open = true;
    let mut config_open = true;

    loop {
        let window_close = pipeline.next_window_close();
        let trigger = pending.next();
        tokio::select! {
            biased;
            permit = output.reserve(), if trigger.is_some() => {
                let Ok(permit) = permit else {
                    tracing::error!("outbox closed; pipeline stops");
                    break;
                };
                let t = trigger.expect("branch enabled only with a trigger");
                match pipeline.take_message(t) {
                    Some(m) => permit.send(m),
                    None => {
                        pending.clear(t);
                        if t == Trigger::All {
                            flush_replies.drain(..).for_each(|r| { let _ = r.send(()); });
                        }
                    }
                }
            }
            changed = config.changed(), if config_open => {
                if changed.is_err() {
                    config_open = false;
                    continue;
                }
                let new = config.borrow_and_update().clone();
                let now = Instant::now();
                next_high = next_high.min(now + new.high_priority_message_frequency);
                next_low = next_low.min(now + new.low_priority_message_frequency);
                pipeline.set_config(new);
                pending.full |= pipeline.is_full();
            }
            cmd = control.recv(), if control_open => match cmd {
                Some(Control::Flush(reply)) => {
                    // Events sent before the flush request are part of it.
                    let now = Instant::now();
                    while let Ok(event) = input.try_recv() {
                        pipeline.push(event, now);
                    }
                    pipeline.flush_windows();
                    pending.all = true;
                    flush_replies.extend(reply);
                }
                None => control_open = false,
            },
            _ = sleep_until(next_high) => {
                next_high = Instant::now() + pipeline.config().high_priority_message_frequency;
                pending.high = true;
            }
            _ = sleep_until(next_low) => {
                next_low = Instant::now() + pipeline.config().low_priority_message_frequency;
                let now = Instant::now();
                for e in pipeline.statistics_events() {
                    pipeline.push(e, now);
                }
                pending.low = true;
            }
            _ = sleep_until(window_close.unwrap_or(start)), if window_close.is_some() => {
                pipeline.expire_windows(Instant::now());
                pending.full |= pipeline.is_full();
            }
            event = input.recv() => match event {
                Some(event) => {
                    pipeline.push(event, Instant::now());
                    pending.full |= pipeline.is_full();
                    pending.high |= pipeline.take_alert_raised();
                }
                None => break,
            },
        }
    }

    // Input closed: every collector is done. Close windows and hand everything on.
    pipeline.flush_windows();
    let queued = pipeline.queued_events();
    tracing::debug!(queued, "pipeline flushing on shutdown");
    while let Some(m) = pipeline.take_message(Trigger::All) {
        let events = m.events;
        if output.send(m).await.is_err() {
            let lost = events + pipeline.queued_events();
            pipeline
                .metrics
                .dropped("pipeline", DropReason::Shutdown, lost as u64);
            tracing::error!(lost, "outbox closed before the pipeline could flush");
            break;
        }
    }
    flush_replies.drain(..).for_each(|r| {
        let _ = r.send(());
    });
}

#[cfg(test)]
mod tests;
