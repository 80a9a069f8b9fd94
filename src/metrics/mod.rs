//! Prometheus metrics: one registry per agent, one method per thing that happens.
//!
//! Names follow `edgeguard_<subsystem>_<name>_<unit>` with `_total` for counters, and every metric
//! carries the constant labels the IoT Edge metrics-collector expects (`iothub`, `edge_device`,
//! `module_name`, `instance_number`). Label values are bounded: kinds, stages and reasons, never
//! pids, paths or error text. Methods that count a drop also log it, at most once a minute per
//! (stage, reason), so a storm cannot flood the log.

use crate::detect::Rule;
use crate::event::{CollectorHealth, EventKind, Priority};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{Counter, Gauge};
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Identity of this agent instance, attached to every metric as constant labels.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub iothub: String,
    pub edge_device: String,
    pub module_name: String,
    pub instance_number: String,
}

impl Identity {
    /// Reads the IoT Edge environment (empty values outside IoT Edge) and picks a fresh
    /// instance number, so a restart shows up as a new series rather than a counter reset.
    pub fn from_env() -> Identity {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Identity {
            iothub: var("IOTEDGE_IOTHUBHOSTNAME"),
            edge_device: var("IOTEDGE_DEVICEID"),
            module_name: std::env::var("IOTEDGE_MODULEID").unwrap_or_else(|_| "edgeguard".into()),
            instance_number: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        }
    }
}

/// Why an event was dropped (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The in-memory cache was full and this event was the oldest of the lowest priority.
    CacheFull,
    /// The event could not be made to fit into one message.
    TooLarge,
    /// A kernel or other source lost events before edgeguard saw them.
    SourceOverflow,
    /// The agent stopped before it could hand the event on.
    Shutdown,
    /// A source that cannot pause found the pipeline's channel full.
    ChannelFull,
    /// The spool reached `maxLocalCacheSizeInBytes` while edgeHub was unreachable: its oldest
    /// Low-priority messages were evicted (or the new one, if all were in flight).
    SpoolFull,
    /// Another module's event found its share of the cache full (it never evicts edgeguard's
    /// own events), or its sender over its quota.
    InputQuota,
    /// A source over its rate limit (a flapping device's hotplug events).
    RateLimited,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::CacheFull => "cache_full",
            DropReason::TooLarge => "too_large",
            DropReason::SourceOverflow => "source_overflow",
            DropReason::Shutdown => "shutdown",
            DropReason::ChannelFull => "channel_full",
            DropReason::SpoolFull => "spool_full",
            DropReason::InputQuota => "input_quota",
            DropReason::RateLimited => "rate_limited",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    events_collected: IntCounterVec,
    events_filtered: IntCounterVec,
    events_dropped: IntCounterVec,
    /// `edgeguard_events_aggregated_total` per aggregatable kind, in
    /// [`EventKind::AGGREGATABLE`] order.
    aggregated_counters: [IntCounter; 3],
    events_truncated: IntCounterVec,
    /// (`edgeguard_queue_events`, `edgeguard_queue_size_bytes`) for High and Low.
    queue_gauges: [(IntGauge, IntGauge); 2],
    messages_sent: IntCounter,
    messages_acked: IntCounter,
    messages_failed: IntCounter,
    messages_bytes: IntCounter,
    messages_under_4kb: IntCounter,
    spool_messages: IntGauge,
    spool_bytes: IntGauge,
    hub_connected: IntGauge,
    hub_reconnects: IntCounter,
    /// Events evicted from the spool, per queue (High, Low), for `DroppedEventsStatistics`.
    spool_dropped: [std::sync::atomic::AtomicU64; 2],
    config_rejected: IntCounterVec,
    config_version: IntGauge,
    errors: IntCounterVec,
    collector_status: IntGaugeVec,
    container_enrichment: IntCounterVec,
    input_events: IntCounterVec,
    /// `edgeguard_alerts_total` and `edgeguard_alerts_suppressed_total` per rule, in
    /// [`Rule::all`] order.
    alerts: Vec<(IntCounter, IntCounter)>,
    /// The same two families, for the custom rules' series.
    alert_vecs: (IntCounterVec, IntCounterVec),
    /// Custom rule ids with series of their own.
    custom_rule_ids: Mutex<std::collections::HashSet<String>>,
    resident_memory: IntGauge,
    cpu_seconds: Counter,
    /// The file integrity collector: (`edgeguard_fim_watches`, `edgeguard_fim_unwatched`).
    fim_watches: (IntGauge, IntGauge),
    fim_overflows: IntCounter,
    snapshots_unchanged: IntCounterVec,
    fim_notifications: IntCounter,
    /// (`edgeguard_fim_attributed`, `edgeguard_fim_unattributed_total`).
    fim_writers: (IntGauge, IntCounter),
    drop_log: Mutex<HashMap<DropKey, DropLog>>,
    /// What the status report needs beyond counters (reasons, times).
    status: crate::status::StatusBoard,
}

/// Custom rule ids given series of their own by [`Metrics::custom_alert`].
pub const MAX_CUSTOM_RULE_SERIES: usize = 256;

/// (stage, reason) of a drop.
type DropKey = (&'static str, DropReason);
/// When a drop was last logged, and how many were counted since.
type DropLog = (Instant, u64);

const DROP_LOG_INTERVAL: Duration = Duration::from_secs(60);

fn counter_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("metric names and labels are valid literals");
    reg.register(Box::new(c.clone()))
        .expect("each metric is registered once");
    c
}

fn gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .expect("metric names and labels are valid literals");
    reg.register(Box::new(g.clone()))
        .expect("each metric is registered once");
    g
}

fn counter(reg: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric names are valid literals");
    reg.register(Box::new(c.clone()))
        .expect("each metric is registered once");
    c
}

fn gauge(reg: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("metric names are valid literals");
    reg.register(Box::new(g.clone()))
        .expect("each metric is registered once");
    g
}

impl Metrics {
    pub fn new(identity: &Identity) -> Metrics {
        let labels: HashMap<String, String> = [
            ("iothub", &identity.iothub),
            ("edge_device", &identity.edge_device),
            ("module_name", &identity.module_name),
            ("instance_number", &identity.instance_number),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
        let r = Registry::new_custom(None, Some(labels)).expect("constant labels are valid");
        // Registered once; only read by scrapes.
        let start_time = Gauge::new(
            "edgeguard_process_start_time_seconds",
            "When the agent started, in Unix seconds",
        )
        .expect("metric names are valid literals");
        start_time.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
        r.register(Box::new(start_time))
            .expect("each metric is registered once");
        let events_aggregated = counter_vec(
            &r,
            "edgeguard_events_aggregated_total",
            "Events merged into an earlier event with the same aggregation key",
            &["kind"],
        );
        let queue_bytes = gauge_vec(
            &r,
            "edgeguard_queue_size_bytes",
            "Serialized bytes waiting in the in-memory cache",
            &["priority"],
        );
        let queue_events = gauge_vec(
            &r,
            "edgeguard_queue_events",
            "Events waiting in the in-memory cache",
            &["priority"],
        );
        // Resolved once: the pipeline sets these on nearly every event, and each labelled lookup
        // hashes the labels under a lock.
        let queue_gauges = [Priority::High, Priority::Low].map(|p| {
            (
                queue_events.with_label_values(&[p.as_str()]),
                queue_bytes.with_label_values(&[p.as_str()]),
            )
        });
        let aggregated_counters =
            EventKind::AGGREGATABLE.map(|k| events_aggregated.with_label_values(&[k.name()]));
        let alerts_raised = counter_vec(
            &r,
            "edgeguard_alerts_total",
            "Alerts raised by on-device detection, by rule",
            &["rule"],
        );
        let alerts_suppressed = counter_vec(
            &r,
            "edgeguard_alerts_suppressed_total",
            "Rule matches not sent: the rule alerted on the same subject within the suppression window, or spent its alerts for the minute",
            &["rule"],
        );
        // Every rule's series exists from the start (at 0), so a dashboard can tell "no alerts"
        // from "no such rule".
        let alerts = Rule::all()
            .map(|rule| {
                (
                    alerts_raised.with_label_values(&[rule.id()]),
                    alerts_suppressed.with_label_values(&[rule.id()]),
                )
            })
            .collect();
        Metrics {
            snapshots_unchanged: counter_vec(
                &r,
                "edgeguard_snapshots_unchanged_total",
                "Periodic snapshots held back because they were identical to the last one sent",
                &["kind"],
            ),
            events_collected: counter_vec(
                &r,
                "edgeguard_events_collected_total",
                "Events produced by collectors",
                &["collector", "kind"],
            ),
            events_filtered: counter_vec(
                &r,
                "edgeguard_events_filtered_total",
                "Events discarded on purpose because their priority is Off",
                &["kind"],
            ),
            events_dropped: counter_vec(
                &r,
                "edgeguard_events_dropped_total",
                "Events lost, by stage and reason",
                &["stage", "reason"],
            ),
            events_truncated: counter_vec(
                &r,
                "edgeguard_events_truncated_total",
                "Events whose longest fields were shortened to fit into a message",
                &["kind"],
            ),
            queue_gauges,
            aggregated_counters,
            messages_sent: counter(
                &r,
                "edgeguard_sink_messages_sent_total",
                "Messages handed to the sink (including resends)",
            ),
            messages_acked: counter(
                &r,
                "edgeguard_sink_messages_acked_total",
                "Messages the sink acknowledged",
            ),
            messages_failed: counter(
                &r,
                "edgeguard_sink_messages_failed_total",
                "Message deliveries that failed and will be retried",
            ),
            messages_bytes: counter(
                &r,
                "edgeguard_sink_sent_bytes_total",
                "Bytes of acknowledged messages",
            ),
            messages_under_4kb: counter(
                &r,
                "edgeguard_sink_messages_under_4kb_total",
                "Acknowledged messages smaller than 4 KiB (billed as one IoT Hub message unit each)",
            ),
            spool_messages: gauge(
                &r,
                "edgeguard_spool_messages",
                "Messages in the spool (on disk in run mode), waiting for acknowledgement",
            ),
            spool_bytes: gauge(
                &r,
                "edgeguard_spool_size_bytes",
                "Bytes of message bodies in the spool, waiting for acknowledgement",
            ),
            hub_connected: gauge(
                &r,
                "edgeguard_hub_connected",
                "1 while the MQTT connection to edgeHub (or IoT Hub) is up, else 0",
            ),
            hub_reconnects: counter(
                &r,
                "edgeguard_hub_reconnects_total",
                "Connections to the hub that were lost (token renewals not counted)",
            ),
            config_rejected: counter_vec(
                &r,
                "edgeguard_config_rejected_total",
                "Configuration keys rejected, by error type",
                &["error_type"],
            ),
            config_version: gauge(
                &r,
                "edgeguard_config_desired_version",
                "Desired-properties $version of the configuration in effect (-1: local)",
            ),
            errors: counter_vec(
                &r,
                "edgeguard_errors_total",
                "Errors by component and type",
                &["component", "error_type"],
            ),
            collector_status: gauge_vec(
                &r,
                "edgeguard_collector_status",
                "1 for the collector's current health (Up, Degraded, Down), 0 for the others",
                &["collector", "status"],
            ),
            container_enrichment: counter_vec(
                &r,
                "edgeguard_container_enrichment_total",
                "Container-scoped process, connection and port records, by whether the container's name and image were known when they passed",
                &["result"],
            ),
            input_events: counter_vec(
                &r,
                "edgeguard_input_events_total",
                "Events other modules sent to the securityMessages input, by sender module and result (accepted, rejected, over_quota)",
                &["sender", "result"],
            ),
            alerts,
            alert_vecs: (alerts_raised, alerts_suppressed),
            custom_rule_ids: Mutex::new(Default::default()),
            resident_memory: gauge(
                &r,
                "edgeguard_process_resident_memory_bytes",
                "Resident set size of the agent process",
            ),
            cpu_seconds: {
                let c = Counter::new(
                    "edgeguard_process_cpu_seconds_total",
                    "User and system CPU time of the agent process",
                )
                .expect("metric names are valid literals");
                r.register(Box::new(c.clone()))
                    .expect("each metric is registered once");
                c
            },
            fim_watches: (
                gauge(
                    &r,
                    "edgeguard_fim_watches",
                    "Directories the file integrity collector watches (inotify watches in use)",
                ),
                gauge(
                    &r,
                    "edgeguard_fim_unwatched",
                    "Directories the file integrity collector could not watch (over its watch cap, or refused)",
                ),
            ),
            fim_overflows: counter(
                &r,
                "edgeguard_fim_overflows_total",
                "inotify queue overflows (each followed by a rescan of the watched paths)",
            ),
            fim_notifications: counter(
                &r,
                "edgeguard_fim_notifications_total",
                "Kernel file change notifications of watched paths, before coalescing into FileChange events",
            ),
            fim_writers: (
                gauge(
                    &r,
                    "edgeguard_fim_attributed",
                    "Watched directories with a fanotify mark, whose changes name the process that made them",
                ),
                counter(
                    &r,
                    "edgeguard_fim_unattributed_total",
                    "FileChange events of changes seen live reported without the process that made them",
                ),
            ),
            spool_dropped: Default::default(),
            registry: r,
            drop_log: Mutex::new(HashMap::new()),
            status: crate::status::StatusBoard::default(),
        }
    }

    /// The status board (collector reasons, hub link, last acknowledgement, recent alerts).
    pub fn status(&self) -> &crate::status::StatusBoard {
        &self.status
    }

    /// (events collected, messages sent, messages acknowledged, events dropped) since start,
    /// for the periodic summary line.
    pub fn summary_counts(&self) -> (u64, u64, u64, u64) {
        let sum = |name: &str| -> u64 {
            self.registry
                .gather()
                .iter()
                .filter(|f| f.name() == name)
                .flat_map(|f| f.get_metric())
                .map(|m| m.get_counter().get_value() as u64)
                .sum()
        };
        (
            sum("edgeguard_events_collected_total"),
            self.messages_sent.get(),
            self.messages_acked.get(),
            sum("edgeguard_events_dropped_total"),
        )
    }

    /// Events dropped since start by `stage/reason` (those with a count).
    pub fn drops(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for family in self.registry.gather() {
            if family.name() != "edgeguard_events_dropped_total" {
                continue;
            }
            for m in family.get_metric() {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                out.insert(
                    format!("{}/{}", label("stage"), label("reason")),
                    m.get_counter().get_value() as u64,
                );
            }
        }
        out
    }

    /// A registry with empty identity labels, for tests and benchmarks.
    pub fn for_tests() -> Metrics {
        Metrics::new(&Identity::default())
    }

    /// Prometheus text exposition of every metric (process figures refreshed first).
    pub fn render(&self) -> String {
        self.refresh_process();
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("the text encoder writes to a Vec");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }

    /// Reads this process's RSS and CPU time from /proc/self (the agent's own, not the host's).
    fn refresh_process(&self) {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
            {
                self.resident_memory.set(kb * 1024);
            }
        }
        if let Some(secs) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| cpu_seconds_from_stat(&s))
        {
            let delta = secs - self.cpu_seconds.get();
            if delta > 0.0 {
                self.cpu_seconds.inc_by(delta);
            }
        }
    }

    pub fn collected(&self, collector: &str, kind: EventKind) {
        self.events_collected
            .with_label_values(&[collector, kind.name()])
            .inc();
    }

    /// A full snapshot of `kind` was sent.
    pub fn snapshot_sent(&self, kind: EventKind) {
        self.status.snapshot_sent(kind.name());
    }

    /// A snapshot of `kind` identical to the last one sent was held back.
    pub fn snapshot_unchanged(&self, kind: EventKind) {
        self.snapshots_unchanged
            .with_label_values(&[kind.name()])
            .inc();
        self.status.snapshot_unchanged(kind.name());
    }

    pub fn filtered(&self, kind: EventKind) {
        self.events_filtered.with_label_values(&[kind.name()]).inc();
    }

    pub fn aggregated(&self, kind: EventKind) {
        if let Some(i) = EventKind::AGGREGATABLE.iter().position(|k| *k == kind) {
            self.aggregated_counters[i].inc();
        }
    }

    pub fn truncated(&self, kind: EventKind) {
        self.events_truncated
            .with_label_values(&[kind.name()])
            .inc();
    }

    /// Counts `n` lost events and logs a warning at most once a minute per stage and reason.
    pub fn dropped(&self, stage: &'static str, reason: DropReason, n: u64) {
        if n == 0 {
            return;
        }
        self.events_dropped
            .with_label_values(&[stage, reason.as_str()])
            .inc_by(n);
        let mut log = self.drop_log.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let entry = log
            .entry((stage, reason))
            .or_insert((now - DROP_LOG_INTERVAL, 0));
        entry.1 += n;
        if now.duration_since(entry.0) >= DROP_LOG_INTERVAL {
            tracing::warn!(
                stage,
                reason = reason.as_str(),
                count = entry.1,
                "events dropped (logged at most once a minute)"
            );
            *entry = (now, 0);
        }
    }

    /// Logs the drops counted since the last warning of each (stage, reason) whose minute has
    /// passed. Without this, the tail of a burst (drops after the last warning) would never be
    /// logged once the drops stop; `run` calls it once a minute, and with `all` at shutdown
    /// (when everything still counted is logged). Returns how many lines it logged.
    pub fn log_pending_drops(&self, all: bool) -> usize {
        let mut log = self.drop_log.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut lines = 0;
        for ((stage, reason), entry) in log.iter_mut() {
            if entry.1 > 0 && (all || now.duration_since(entry.0) >= DROP_LOG_INTERVAL) {
                tracing::warn!(
                    stage = *stage,
                    reason = reason.as_str(),
                    count = entry.1,
                    "events dropped (logged at most once a minute)"
                );
                *entry = (now, 0);
                lines += 1;
            }
        }
        lines
    }

    /// Counts events of a `priority` message the spool dropped when full, both in the metric
    /// (`stage="spool"`, `reason="spool_full"`) and for the next `DroppedEventsStatistics`.
    pub fn spool_dropped(&self, priority: Priority, n: u64) {
        let i = usize::from(priority != Priority::High);
        self.spool_dropped[i].fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        self.dropped("spool", DropReason::SpoolFull, n);
    }

    /// Events the spool dropped so far, per queue (High, Low).
    pub fn spool_dropped_totals(&self) -> [u64; 2] {
        self.spool_dropped
            .each_ref()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn dropped_total(&self, stage: &str, reason: DropReason) -> u64 {
        self.events_dropped
            .with_label_values(&[stage, reason.as_str()])
            .get()
    }

    pub fn set_queue(&self, priority: Priority, events: usize, bytes: usize) {
        let (events_gauge, bytes_gauge) = match priority {
            Priority::High => &self.queue_gauges[0],
            Priority::Low => &self.queue_gauges[1],
            Priority::Off => return,
        };
        events_gauge.set(events as i64);
        bytes_gauge.set(bytes as i64);
    }

    pub fn message_sent(&self) {
        self.messages_sent.inc();
    }

    pub fn message_acked(&self, bytes: usize) {
        self.status.acked();
        self.messages_acked.inc();
        self.messages_bytes.inc_by(bytes as u64);
        if bytes < 4096 {
            self.messages_under_4kb.inc();
        }
    }

    pub fn message_failed(&self) {
        self.messages_failed.inc();
    }

    pub fn set_spool(&self, messages: usize, bytes: usize) {
        self.spool_messages.set(messages as i64);
        self.spool_bytes.set(bytes as i64);
    }

    /// The hub link's state (`connecting`, `connected`, `disconnected`) with the error that
    /// ended the last connection, if any; `reconnect` counts a lost connection.
    pub fn set_hub_link(&self, state: &str, error: Option<&str>, reconnect: bool) {
        self.status.link(state, error, reconnect);
        self.hub_connected.set(i64::from(state == "connected"));
        if reconnect {
            self.hub_reconnects.inc();
        }
    }

    pub fn config_rejected(&self, error_type: &str) {
        self.config_rejected.with_label_values(&[error_type]).inc();
    }

    pub fn set_config_version(&self, version: Option<i64>) {
        self.config_version.set(version.unwrap_or(-1));
    }

    pub fn error(&self, component: &str, error_type: &str) {
        self.errors
            .with_label_values(&[component, error_type])
            .inc();
    }

    /// The value of one sample, found by metric name and (a subset of) its labels; for tests
    /// and the `status` method.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let family = self
            .registry
            .gather()
            .into_iter()
            .find(|f| f.name() == name)?;
        let is_counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
        family.get_metric().iter().find_map(|m| {
            let matches = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if !matches {
                return None;
            }
            if is_counter {
                Some(m.get_counter().get_value())
            } else {
                Some(m.get_gauge().get_value())
            }
        })
    }

    /// The file integrity collector's watches: in use, and wanted but not watched.
    pub fn set_fim_watches(&self, watching: usize, unwatched: usize) {
        self.fim_watches.0.set(watching as i64);
        self.fim_watches.1.set(unwatched as i64);
    }

    /// An inotify queue overflow (changes were lost; a rescan follows).
    pub fn fim_overflow(&self) {
        self.fim_overflows.inc();
    }

    /// `n` kernel notifications about watched paths (coalesced into fewer events).
    pub fn fim_notifications(&self, n: u64) {
        self.fim_notifications.inc_by(n);
    }

    /// Watched directories whose changes name their writer (fanotify marks).
    pub fn set_fim_attributed(&self, directories: usize) {
        self.fim_writers.0.set(directories as i64);
    }

    /// A live `FileChange` reported without the process that made it.
    pub fn fim_unattributed(&self) {
        self.fim_writers.1.inc();
    }

    /// A collector's state and why (the gauge, and the status report's reason).
    pub fn collector_status(&self, collector: &str, status: CollectorHealth, message: &str) {
        self.status.collector(collector, status, message);
        for s in [
            CollectorHealth::Up,
            CollectorHealth::Degraded,
            CollectorHealth::Down,
        ] {
            self.collector_status
                .with_label_values(&[collector, s.as_str()])
                .set((s == status) as i64);
        }
    }

    /// Counts a rule's match: an alert raised, or (`raised == false`) one suppressed.
    pub fn alert(&self, rule: Rule, raised: bool) {
        let (sent, suppressed) = &self.alerts[rule.index()];
        if raised {
            sent.inc();
            self.status.alert(rule.id().into());
        } else {
            suppressed.inc()
        }
    }

    /// A custom rule's match (`detectionCustomRules`), raised or suppressed. Its series are
    /// made on first use, labelled with the rule's id; at most [`MAX_CUSTOM_RULE_SERIES`] ids
    /// get series of their own (the twin may change its rules any number of times), the
    /// rest share `rule="custom-other"`.
    pub fn custom_alert(&self, id: &str, raised: bool) {
        let label = {
            let mut seen = self
                .custom_rule_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if seen.contains(id) || seen.len() < MAX_CUSTOM_RULE_SERIES {
                seen.insert(id.to_string());
                id
            } else {
                "custom-other"
            }
        };
        let (sent, suppressed) = &self.alert_vecs;
        if raised {
            sent.with_label_values(&[label]).inc();
            self.status.alert(id.to_string().into());
        } else {
            suppressed.with_label_values(&[label]).inc();
        }
    }

    /// `n` events from another module (`sender`, a bounded set of names) with their outcome.
    pub fn input_events(&self, sender: &str, result: &str, n: u64) {
        if n > 0 {
            self.input_events
                .with_label_values(&[sender, result])
                .inc_by(n);
        }
    }

    /// A record from inside a container was (or could not be) given the container's name and image.
    pub fn container_enrichment(&self, enriched: bool) {
        let result = if enriched { "enriched" } else { "not_enriched" };
        self.container_enrichment.with_label_values(&[result]).inc();
    }

    /// Counters the `MessageStatistics` event reports: (acked, acked under 4 KiB, failed).
    pub fn message_totals(&self) -> (u64, u64, u64) {
        (
            self.messages_acked.get(),
            self.messages_under_4kb.get(),
            self.messages_failed.get(),
        )
    }
}

/// utime + stime of a /proc/<pid>/stat line, in seconds.
fn cpu_seconds_from_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces and parentheses: fields restart after the
    // last ')'. utime and stime are fields 14 and 15, i.e. 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    let ticks = crate::kernel::sys::clock_ticks();
    (ticks > 0).then(|| (utime + stime) / ticks as f64)
}

/// Most scrapes in flight at once; more wait for a free slot.
const MAX_SCRAPES: usize = 4;

/// Serves `GET /metrics` in the Prometheus text format until `cancel`.
///
/// The IoT Edge metrics-collector module scrapes `:9600/metrics` of every module over the
/// `azure-iot-edge` network. The endpoint is read-only and serves nothing else.
pub async fn serve(
    metrics: Arc<Metrics>,
    listener: tokio::net::TcpListener,
    cancel: CancellationToken,
) {
    let limits = crate::local_http::Limits {
        component: "metrics",
        clients: MAX_SCRAPES,
        header_timeout: Duration::from_secs(10),
        connection_timeout: Duration::from_secs(30),
    };
    crate::local_http::serve(metrics, listener, limits, respond, cancel).await
}

fn respond<B>(metrics: &Metrics, req: &Request<B>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found; try /metrics\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    let mut r = Response::new(Full::new(Bytes::from(metrics.render())));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests;
