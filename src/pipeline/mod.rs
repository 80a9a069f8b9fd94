//! From events to messages: priority → aggregation → cache → batches.
//!
//! [`Pipeline`] is the synchronous core (no I/O, no clock of its own: callers pass `now`), so
//! tests and benchmarks drive it directly. [`run`] is the task around it: it owns the send timers,
//! follows configuration changes, and hands finished messages to the outbox, waiting for room
//! there rather than building messages nobody can take (events wait in the bounded cache instead,
//! where the eviction policy applies).

pub mod aggregator;
pub mod cache;
pub mod journal;
pub mod outbox;
pub mod spool;

pub use cache::{Lane, Message, Output};

use crate::config::Config;
use crate::detect::behaviour::Behaviour;
use crate::detect::{Detector, Finding, Rule};
use crate::event::{
    DroppedEventsStatistics, EncodeError, Event, EventKind, EventType, MessageHeader,
    MessageStatistics, Payload, Priority, QueueName, envelope,
};
use crate::metrics::{DropReason, Metrics};
use crate::recommend::Recommender;
use aggregator::{Added, Aggregator};
use cache::{Cache, Evicted};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

/// Seconds since the Unix epoch by the wall clock (the behaviour baseline's learning period
/// spans restarts).
fn wall_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How often a changed behaviour baseline is written to its file.
const BEHAVIOUR_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// Recommendations derived from the snapshots and statistics that pass.
    recommender: Recommender,
    /// Where the detector's learned behaviour baseline is kept (`None`: not kept, as in a
    /// one-off snapshot).
    behaviour_file: Option<std::path::PathBuf>,
    /// A High-priority alert (or heartbeat) was queued since [`Pipeline::take_alert_raised`]
    /// last looked.
    alert_raised: bool,
    /// The next event's sequence number (its key in the spool's queue table).
    next_seq: u64,
    /// Changes for the spool's journal not yet committed (`None`: no durable spool).
    journal: Option<journal::Batch>,
    /// `eventPriorityAlert`, looked up once per configuration rather than per event.
    alert_priority: Priority,
}

impl Pipeline {
    pub fn new(header: MessageHeader, config: Arc<Config>, metrics: Arc<Metrics>) -> Pipeline {
        let cache = Cache::new(config.max_local_cache_size_in_bytes as usize);
        let alert_priority = config.priority(EventKind::Alert);
        let mut detector = Detector::new();
        detector.set_disabled(&config.detection_rules_disabled);
        detector.set_custom(&config.detection_custom_rules);
        detector.set_overrides(&config.detection_rule_overrides);
        detector.set_allow_lists(&config.detection_allow_lists);
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
            recommender: Recommender::new(),
            behaviour_file: None,
            alert_raised: false,
            alert_priority,
            next_seq: 0,
            journal: None,
        }
    }

    /// Keeps a journal of the cache and the open aggregation windows for a durable spool
    /// ([`journal`]): [`Pipeline::journal_batch`] then says what to commit.
    pub fn with_journal(mut self) -> Pipeline {
        self.aggregator.track_changes();
        self.journal = Some(journal::Batch::default());
        self
    }

    /// Puts back what the journal held at the last run's end: queued events into the cache as
    /// they were, open windows as closed ones (their windows end at the restart). Rows this
    /// version cannot read are deleted and counted.
    pub fn restore(&mut self, rows: journal::Rows) {
        let (mut events, mut windows, mut bad) = (0usize, 0usize, 0u64);
        let mut removes = Vec::new();
        let mut window_removes = Vec::new();
        for (seq, row) in &rows.queue {
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
            match journal::decode_queued(row) {
                Some((lane, priority, foreign, kind, bytes)) => {
                    let event = envelope::EncodedEvent {
                        kind,
                        bytes: bytes.into(),
                        truncated: false,
                    };
                    if foreign {
                        if !self.cache.admit_foreign(lane, priority, *seq, event) {
                            removes.push(*seq);
                            self.metrics.dropped("pipeline", DropReason::InputQuota, 1);
                        }
                    } else {
                        let evicted = self.cache.push(lane, priority, *seq, event);
                        self.count_evicted(evicted);
                    }
                    events += 1;
                }
                None => {
                    removes.push(*seq);
                    bad += 1;
                }
            }
        }
        for (id, row) in &rows.windows {
            window_removes.push(*id);
            match journal::decode_window(row) {
                Some((kind, bytes)) => match self.lane_of(kind) {
                    Some((lane, priority)) => {
                        let event = envelope::EncodedEvent {
                            kind,
                            bytes: bytes.into(),
                            truncated: false,
                        };
                        self.queue_encoded(lane, priority, false, event);
                        windows += 1;
                    }
                    None => self.metrics.filtered(kind),
                },
                None => bad += 1,
            }
        }
        if bad > 0 {
            tracing::error!(rows = bad, "journal rows in an unknown format; dropped");
            self.metrics.error("spool", "corrupt_record");
        }
        if let Some(j) = &mut self.journal {
            j.removes.extend(removes);
            j.window_removes.extend(window_removes);
        }
        if events + windows > 0 {
            tracing::info!(
                events,
                windows,
                "events queued before the last stop are queued again"
            );
        }
        self.update_queue_metrics();
    }

    /// What changed since the last call, for one journal commit (`None` when nothing did, or
    /// without a journal).
    pub fn journal_batch(&mut self) -> Option<journal::Batch> {
        let limit = self.header.max_event_size(self.max_message_bytes());
        let journal = self.journal.as_mut()?;
        let gone = self.cache.take_gone();
        if !gone.is_empty() {
            let unwritten: std::collections::HashSet<u64> =
                journal.forget_inserts(&gone).into_iter().collect();
            journal
                .removes
                .extend(gone.into_iter().filter(|s| !unwritten.contains(s)));
        }
        journal.window_removes.extend(self.aggregator.take_closed());
        for (id, event) in self.aggregator.take_dirty() {
            let kind = event.kind();
            let mut pieces = Vec::new();
            // An entry too large for any message is dropped when its window closes; there is
            // nothing to keep of it.
            if envelope::encode_fitting_into(&event, limit, &mut self.scratch, &mut pieces).is_ok()
                && let Some(first) = pieces.first()
            {
                journal
                    .window_upserts
                    .push((id, journal::encode_window(kind, &first.bytes)));
            }
        }
        if journal.is_empty() {
            return None;
        }
        Some(std::mem::take(journal))
    }

    /// A batch whose commit failed: it goes again with the next one.
    pub fn journal_failed(&mut self, batch: journal::Batch) {
        if let Some(j) = &mut self.journal {
            let later = std::mem::replace(j, batch);
            j.append(later);
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
    /// Learns and judges behaviour ([`crate::detect::behaviour`]) with the baseline kept in
    /// `path`: loaded now (an unreadable or other-version file is logged and replaced by a new
    /// baseline), saved by [`Pipeline::save_behaviour`].
    pub fn with_behaviour_file(mut self, path: std::path::PathBuf) -> Pipeline {
        /// Far above the largest baseline (MAX_ITEMS of ~100 bytes); a bigger file is not ours.
        const MAX_FILE: u64 = 16 << 20;
        let period = self.config.behaviour_learning_period;
        let now = wall_secs();
        let loaded = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Ok(m) if m.len() > MAX_FILE => Some(Err(format!("{} bytes", m.len()))),
            _ => Some(
                std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| Behaviour::from_json(&bytes, period)),
            ),
        };
        let mut behaviour = match loaded {
            Some(Ok(b)) => {
                tracing::info!(items = b.len(), "behaviour baseline loaded");
                b
            }
            Some(Err(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "the behaviour baseline cannot be read; learning again from now");
                Behaviour::new(period, now)
            }
            None => Behaviour::new(period, now),
        };
        behaviour.apply_reset_token(self.config.behaviour_baseline_reset.as_deref(), now);
        self.detector.set_behaviour(behaviour);
        self.behaviour_file = Some(path);
        self
    }

    /// Writes the behaviour baseline to its file if it changed since the last write.
    pub fn save_behaviour(&mut self) {
        let (Some(path), Some(b)) = (&self.behaviour_file, self.detector.behaviour_mut()) else {
            return;
        };
        if !b.is_dirty() {
            return;
        }
        let bytes = b.to_json();
        if let Err(e) = crate::state::write_atomic(path, &bytes) {
            tracing::warn!(file = %path.display(), error = %e, "cannot save the behaviour baseline");
        }
    }

    /// Forgets the learned behaviour and starts learning again (the `baseline-reset` method);
    /// returns when learning ends (Unix seconds), or `None` without a baseline.
    pub fn reset_behaviour(&mut self) -> Option<u64> {
        let b = self.detector.behaviour_mut()?;
        b.reset(wall_secs());
        let ends = b.learning_ends();
        self.save_behaviour();
        tracing::info!("behaviour baseline reset; learning again");
        Some(ends)
    }

    pub fn set_config(&mut self, config: Arc<Config>) {
        self.config = config;
        if let Some(b) = self.detector.behaviour_mut() {
            b.set_period(self.config.behaviour_learning_period);
            let token = self.config.behaviour_baseline_reset.as_deref();
            if b.apply_reset_token(token, wall_secs()) {
                tracing::info!(
                    "behaviour baseline reset by behaviourBaselineReset; learning again"
                );
            }
        }
        self.alert_priority = self.config.priority(EventKind::Alert);
        self.detector
            .set_disabled(&self.config.detection_rules_disabled);
        self.detector
            .set_custom(&self.config.detection_custom_rules);
        self.detector
            .set_overrides(&self.config.detection_rule_overrides);
        self.detector
            .set_allow_lists(&self.config.detection_allow_lists);
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
        // Recommendations come from the snapshots and statistics that are sent (a kind turned
        // Off recommends nothing); a cheap check of the kind first.
        if kind.category() == crate::event::Category::Periodic {
            self.recommender.observe(&event, &self.config);
        }
        self.stats.collected[queue_index(priority)] += 1;
        // A heartbeat is only worth anything on time: a High one goes out at once, like an alert.
        self.alert_raised |= kind == EventKind::Heartbeat && priority == Priority::High;
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
                    match rule.index() < Rule::count() {
                        true => self.metrics.alert(rule, true),
                        false => self.metrics.custom_alert(&alert.rule_id, true),
                    }
                    tracing::warn!(
                        rule = alert.rule_id.as_str(),
                        severity = ?alert.severity,
                        "alert: {}",
                        alert.description
                    );
                    self.push(Event::new(Payload::Alert(vec![*alert])), now);
                    self.alert_raised |= self.alert_priority == Priority::High;
                }
                Finding::Suppressed(rule) if rule.index() < Rule::count() => {
                    self.metrics.alert(rule, false)
                }
                Finding::Suppressed(rule) => {
                    let id = self.detector.rule_id(rule);
                    self.metrics.custom_alert(id, false)
                }
            }
        }
        self.findings = findings;
    }

    /// Whether a High-priority alert was queued since the last call: the task then sends at
    /// once rather than on the high-priority timer.
    pub fn take_alert_raised(&mut self) -> bool {
        std::mem::take(&mut self.alert_raised)
    }

    /// The lane and priority events of `kind` are queued with (`None`: priority Off).
    fn lane_of(&self, kind: EventKind) -> Option<(Lane, Priority)> {
        let priority = self.config.priority(kind);
        let lane = match (kind.event_type(), priority) {
            (_, Priority::Off) => return None,
            _ if kind == EventKind::Alert => Lane::Alert,
            (EventType::Operational, _) => Lane::Operational,
            (_, Priority::High) => Lane::High,
            _ => Lane::Low,
        };
        Some((lane, priority))
    }

    /// Puts an encoded event into the cache under a new sequence number (and into the journal).
    /// Another module's event goes in only where there is room for it (see
    /// [`Cache::admit_foreign`]); one that is refused is counted and dropped.
    fn queue_encoded(
        &mut self,
        lane: Lane,
        priority: Priority,
        foreign: bool,
        event: envelope::EncodedEvent,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let row = self
            .journal
            .is_some()
            .then(|| journal::encode_queued(lane, priority, foreign, event.kind, &event.bytes));
        if foreign {
            if !self.cache.admit_foreign(lane, priority, seq, event) {
                self.stats.dropped[queue_index(priority)] += 1;
                self.metrics.dropped("pipeline", DropReason::InputQuota, 1);
                return;
            }
        } else {
            let evicted = self.cache.push(lane, priority, seq, event);
            self.count_evicted(evicted);
        }
        if let (Some(j), Some(row)) = (&mut self.journal, row) {
            j.inserts.push((seq, row));
        }
    }

    /// Serializes an event (split or truncated to fit a message) and puts it into the cache.
    fn enqueue(&mut self, event: Event) {
        let kind = event.kind();
        let Some((lane, priority)) = self.lane_of(kind) else {
            self.metrics.filtered(kind);
            return;
        };
        let limit = self.header.max_event_size(self.max_message_bytes());
        let mut pieces = std::mem::take(&mut self.pieces);
        match envelope::encode_fitting_into(&event, limit, &mut self.scratch, &mut pieces) {
            Ok(()) => {
                for piece in pieces.drain(..) {
                    if piece.truncated {
                        self.metrics.truncated(kind);
                    }
                    self.queue_encoded(lane, priority, event.foreign, piece);
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
        // The snapshots of a round arrive one by one: their recommendations are queued as one
        // event when a message is next cut.
        if let Some(recommendations) = self.recommender.take() {
            self.push(recommendations, Instant::now());
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
            let (mut message, oversize) =
                self.cache.take_message(&self.header, max, primary, topup);
            // Events taken before their journal rows were written need no deleting.
            if let (Some(m), Some(j)) = (&mut message, &mut self.journal) {
                let unwritten = j.forget_inserts(&m.seqs);
                if !unwritten.is_empty() {
                    m.seqs.retain(|s| !unwritten.contains(s));
                }
            }
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
    /// Forget the learned behaviour and learn again; the reply says when learning ends (Unix
    /// seconds), `None` when this agent keeps no baseline.
    ResetBehaviour(oneshot::Sender<Option<u64>>),
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

/// How long a change to the cache or an aggregation window may wait for its journal commit: what
/// a crash can lose of what the collectors handed over.
pub const JOURNAL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Commits the pipeline's journal changes to the spool (a failed commit goes again with the
/// next).
async fn commit_journal(pipeline: &mut Pipeline, store: &outbox::Store) {
    let Some(batch) = pipeline.journal_batch() else {
        return;
    };
    let result = store
        .call(move |s| {
            let r = s.write_journal(&batch);
            (batch, r)
        })
        .await;
    match result {
        Ok((_, Ok(()))) => {}
        Ok((batch, Err(e))) => {
            tracing::error!(error = %crate::text::error_chain(&e), "cannot write the pipeline's journal; retrying with the next commit");
            pipeline.metrics.error("spool", "journal");
            pipeline.journal_failed(batch);
        }
        Err(e) => {
            tracing::error!(error = %crate::text::error_chain(&e), "the spool worker failed writing the journal");
            pipeline.metrics.error("spool", "journal");
        }
    }
}

/// The pipeline task. Returns when `input` closes (every collector has stopped), after closing
/// every aggregation window and handing every queued event to `output`.
///
/// With `journal` (a durable spool, and a pipeline [`Pipeline::with_journal`]), the cache and
/// the open windows are committed to it at most [`JOURNAL_INTERVAL`] after they change; events
/// a message takes before their commit go to the spool in that message instead.
pub async fn run(
    mut pipeline: Pipeline,
    mut input: mpsc::Receiver<Event>,
    mut control: mpsc::Receiver<Control>,
    mut config: watch::Receiver<Arc<Config>>,
    output: mpsc::Sender<Message>,
    journal: Option<outbox::Store>,
) {
    let start = Instant::now();
    let mut journal_tick = tokio::time::interval(JOURNAL_INTERVAL);
    let mut behaviour_tick = tokio::time::interval(BEHAVIOUR_SAVE_INTERVAL);
    behaviour_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_commit = start;
    journal_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                // Events cut into a message before their rows were written are not written at
                // all (the message carries them into the spool): at a storm's rate most events
                // never touch the journal. A commit here only when the tick is overdue, so a
                // loop kept busy by messages cannot hold the journal back by more than
                // JOURNAL_INTERVAL.
                if let Some(store) = &journal
                    && last_commit.elapsed() >= JOURNAL_INTERVAL
                {
                    commit_journal(&mut pipeline, store).await;
                    last_commit = Instant::now();
                }
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
                Some(Control::ResetBehaviour(reply)) => {
                    let _ = reply.send(pipeline.reset_behaviour());
                }
                None => control_open = false,
            },
            _ = behaviour_tick.tick() => pipeline.save_behaviour(),
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
            _ = journal_tick.tick(), if journal.is_some() => {
                if let Some(store) = &journal {
                    commit_journal(&mut pipeline, store).await;
                    last_commit = Instant::now();
                }
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
    pipeline.save_behaviour();
    pipeline.flush_windows();
    let queued = pipeline.queued_events();
    tracing::debug!(queued, "pipeline flushing on shutdown");
    if let Some(store) = &journal {
        commit_journal(&mut pipeline, store).await;
    }
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
    if let Some(store) = &journal {
        commit_journal(&mut pipeline, store).await;
    }
    flush_replies.drain(..).for_each(|r| {
        let _ = r.send(());
    });
}

#[cfg(test)]
mod tests;
