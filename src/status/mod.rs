//! The agent's health at a glance: what `edgeguard status` prints, what the `status` direct method
//! answers, and what the container's health check decides on.
//!
//! A [`StatusBoard`] (inside [`Metrics`], so every component that counts also reports) keeps what
//! Prometheus samples cannot carry: each collector's reason for its state and since when, the
//! hub link's state and last error, when a message was last acknowledged, and the alerts of the
//! last hour per rule. [`report`] joins it with the metrics' counters and gauges into one
//! [`Report`].
//!
//! A local process reaches it through a unix socket in the state directory ([`socket`]), not the
//! metrics endpoint: the socket exists whenever the agent runs (the metrics endpoint may be `off`
//! or bound to a network's gateway), carries the reasons (free text, which has no place in metric
//! labels), is reachable only by root on the device (mode 0600 in a root-owned directory), and
//! is at the same path inside the module container (the image's health check) and from the host
//! (through the state volume).

pub mod socket;

use crate::detect::Rule;
use crate::event::{CollectorHealth, format_utc};
use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long alerts are counted for the report.
const ALERT_WINDOW: Duration = Duration::from_secs(3600);

/// One collector's last reported state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectorState {
    /// `Up`, `Degraded` or `Down`.
    pub status: String,
    pub message: String,
    /// When it entered this state (RFC 3339 UTC).
    pub since: String,
}

/// The hub link as the session last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    /// `connecting`, `connected` or `disconnected`.
    pub state: String,
    /// When the current state began (RFC 3339 UTC).
    pub since: Option<String>,
    /// Seconds in the current state.
    #[serde(default)]
    pub seconds_in_state: u64,
    pub reconnects: u64,
    /// The last connection error, for a human.
    pub last_error: Option<String>,
}

/// One periodic snapshot kind, as [`crate::collectors::SnapshotDedup`] last decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotState {
    /// When the last full snapshot of this kind was sent (RFC 3339 UTC).
    pub last_sent: String,
    /// Rounds since then whose snapshot was identical and held back (0: the last round sent it).
    pub unchanged_rounds: u64,
}

#[derive(Debug, Default)]
struct Board {
    agent_id: Option<String>,
    sink: Option<String>,
    collectors: BTreeMap<String, CollectorState>,
    /// The link, with the instant its state began (for `seconds_in_state`).
    link: Option<(Link, Instant)>,
    last_acked: Option<String>,
    /// (when, rule id) of the alerts raised in the last hour, oldest first. Bounded by the
    /// detector's own budget (at most 60 a minute per rule, built-in or custom).
    alerts: VecDeque<(Instant, Cow<'static, str>)>,
    /// Snapshot kind → when it was last sent in full, and how many rounds held it back since.
    snapshots: BTreeMap<String, SnapshotState>,
}

/// What the report needs beyond the metrics; shared by every component through [`Metrics`].
#[derive(Debug)]
pub struct StatusBoard {
    started: Instant,
    start_time: String,
    board: Mutex<Board>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            started: Instant::now(),
            start_time: now_utc(),
            board: Mutex::new(Board::default()),
        }
    }
}

fn now_utc() -> String {
    format_utc(&chrono::Local::now().fixed_offset())
}

impl StatusBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        // A panic elsewhere while holding the lock leaves the board readable, not poisoned.
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who this agent is and where its messages go (set once at start).
    pub fn set_identity(&self, agent_id: &str, sink: &str) {
        let mut b = self.lock();
        b.agent_id = Some(agent_id.to_string());
        b.sink = Some(sink.to_string());
    }

    /// A collector's state; `since` moves only when the state changes.
    pub fn collector(&self, collector: &str, status: CollectorHealth, message: &str) {
        let mut b = self.lock();
        let since = match b.collectors.get(collector) {
            Some(s) if s.status == status.as_str() => s.since.clone(),
            _ => now_utc(),
        };
        b.collectors.insert(
            collector.to_string(),
            CollectorState {
                status: status.as_str().to_string(),
                message: message.to_string(),
                since,
            },
        );
    }

    /// A collector that runs, before it has reported anything: `Up` with `message`. A state it
    /// reports later replaces this.
    pub fn register(&self, collector: &str, message: &str) {
        let mut b = self.lock();
        b.collectors
            .entry(collector.to_string())
            .or_insert_with(|| CollectorState {
                status: CollectorHealth::Up.as_str().to_string(),
                message: message.to_string(),
                since: now_utc(),
            });
    }

    /// Every collector's state, by name.
    pub fn collectors(&self) -> Vec<(String, CollectorState)> {
        self.lock()
            .collectors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The hub link's new state.
    pub fn link(&self, state: &str, error: Option<&str>, reconnect: bool) {
        let mut b = self.lock();
        let (mut link, mut began) = b.link.take().unwrap_or_else(|| {
            (
                Link {
                    state: String::new(),
                    since: None,
                    seconds_in_state: 0,
                    reconnects: 0,
                    last_error: None,
                },
                Instant::now(),
            )
        });
        if link.state != state {
            link.state = state.to_string();
            link.since = Some(now_utc());
            began = Instant::now();
        }
        if reconnect {
            link.reconnects += 1;
        }
        if let Some(e) = error {
            link.last_error = Some(e.to_string());
        }
        b.link = Some((link, began));
    }

    /// A full snapshot of `kind` was sent now.
    pub fn snapshot_sent(&self, kind: &str) {
        self.lock().snapshots.insert(
            kind.to_string(),
            SnapshotState {
                last_sent: now_utc(),
                unchanged_rounds: 0,
            },
        );
    }

    /// A snapshot of `kind` identical to the last one sent was held back.
    pub fn snapshot_unchanged(&self, kind: &str) {
        let mut b = self.lock();
        let state = b
            .snapshots
            .entry(kind.to_string())
            .or_insert_with(|| SnapshotState {
                last_sent: now_utc(),
                unchanged_rounds: 0,
            });
        state.unchanged_rounds += 1;
    }

    pub fn acked(&self) {
        self.lock().last_acked = Some(now_utc());
    }

    /// An alert of the rule with this id (built-in ids are borrowed, custom ones copied).
    pub fn alert(&self, rule: Cow<'static, str>) {
        let now = Instant::now();
        let mut b = self.lock();
        while b
            .alerts
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > ALERT_WINDOW)
        {
            b.alerts.pop_front();
        }
        b.alerts.push_back((now, rule));
    }
}

/// Everything `edgeguard status` shows; also the `status` direct method's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub agent_version: String,
    pub agent_id: Option<String>,
    /// Where messages go: `edgeHub HOST:PORT as DEVICE/MODULE`, `stdout` or `file PATH`.
    pub sink: Option<String>,
    pub start_time: String,
    pub uptime_seconds: u64,
    /// The hub link, when the sink is edgeHub.
    pub connection: Option<Link>,
    pub config: ConfigReport,
    pub spool: Depth,
    pub queue: BTreeMap<String, Depth>,
    pub messages: Messages,
    /// Collector → `Up`/`Degraded`/`Down`.
    pub collectors: BTreeMap<String, String>,
    /// Collector → its state with the reason and since when.
    pub collector_details: BTreeMap<String, CollectorState>,
    /// `stage/reason` → events dropped since start.
    pub drops: BTreeMap<String, u64>,
    /// Rule → alerts raised in the last hour.
    pub alerts_last_hour: BTreeMap<String, u64>,
    /// Snapshot kind → when it was last sent in full and how many identical rounds were held
    /// back since (`snapshotRefreshFrequency`).
    #[serde(default)]
    pub snapshots: BTreeMap<String, SnapshotState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigReport {
    /// The desired `$version` in effect (`None`: a local configuration).
    pub desired_version: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Depth {
    pub messages: Option<i64>,
    pub events: Option<i64>,
    pub bytes: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Messages {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    /// When edgeHub (or the local sink) last acknowledged a message (RFC 3339 UTC).
    pub last_acked: Option<String>,
}

/// The report of the running agent.
pub fn report(metrics: &Metrics) -> Report {
    let int = |name: &str, labels: &[(&str, &str)]| metrics.value(name, labels).map(|v| v as i64);
    let count = |name: &str| int(name, &[]).unwrap_or(0).max(0) as u64;
    let status = metrics.status();
    let b = status.lock();
    let now = Instant::now();
    let mut alerts: BTreeMap<String, u64> = Rule::all().map(|r| (r.id().to_string(), 0)).collect();
    for (t, rule) in &b.alerts {
        if now.duration_since(*t) <= ALERT_WINDOW {
            *alerts.entry(rule.to_string()).or_default() += 1;
        }
    }
    let queue = ["High", "Low"]
        .into_iter()
        .map(|p| {
            (
                p.to_string(),
                Depth {
                    messages: None,
                    events: int("edgeguard_queue_events", &[("priority", p)]),
                    bytes: int("edgeguard_queue_size_bytes", &[("priority", p)]),
                },
            )
        })
        .collect();
    Report {
        agent_version: crate::event::envelope::AGENT_VERSION.to_string(),
        agent_id: b.agent_id.clone(),
        sink: b.sink.clone(),
        start_time: status.start_time.clone(),
        uptime_seconds: status.started.elapsed().as_secs(),
        connection: b.link.as_ref().map(|(link, began)| Link {
            seconds_in_state: began.elapsed().as_secs(),
            ..link.clone()
        }),
        config: ConfigReport {
            desired_version: int("edgeguard_config_desired_version", &[]).filter(|v| *v >= 0),
        },
        spool: Depth {
            messages: int("edgeguard_spool_messages", &[]),
            events: None,
            bytes: int("edgeguard_spool_size_bytes", &[]),
        },
        queue,
        messages: Messages {
            sent: count("edgeguard_sink_messages_sent_total"),
            acked: count("edgeguard_sink_messages_acked_total"),
            failed: count("edgeguard_sink_messages_failed_total"),
            last_acked: b.last_acked.clone(),
        },
        collectors: b
            .collectors
            .iter()
            .map(|(k, v)| (k.clone(), v.status.clone()))
            .collect(),
        collector_details: b.collectors.clone(),
        drops: metrics.drops(),
        alerts_last_hour: alerts,
        snapshots: b.snapshots.clone(),
    }
}

impl Report {
    /// Why the agent is not healthy (empty when it is): a collector `Down`, or the hub link down
    /// for longer than `hub_grace`.
    pub fn problems(&self, hub_grace: Duration) -> Vec<String> {
        let mut out: Vec<String> = self
            .collector_details
            .iter()
            .filter(|(_, s)| s.status == CollectorHealth::Down.as_str())
            .map(|(name, s)| format!("collector {name} is Down: {}", s.message))
            .collect();
        if let Some(link) = &self.connection
            && link.state != "connected"
            && link.seconds_in_state > hub_grace.as_secs()
        {
            out.push(format!(
                "edgeHub unreachable for {} s (longer than {} s){}",
                link.seconds_in_state,
                hub_grace.as_secs(),
                link.last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        out
    }

    /// The short health report `edgeguard status` prints.
    pub fn render(&self, hub_grace: Duration) -> String {
        let mut s = String::new();
        let mut line = |text: String| {
            s.push_str(&text);
            s.push('\n');
        };
        let problems = self.problems(hub_grace);
        line(format!(
            "edgeguard {}  agent {}  up {}  {}",
            self.agent_version,
            self.agent_id.as_deref().unwrap_or("?"),
            human_duration(self.uptime_seconds),
            if problems.is_empty() {
                "HEALTHY"
            } else {
                "UNHEALTHY"
            }
        ));
        for p in &problems {
            line(format!("  ! {p}"));
        }
        line(format!(
            "sink: {}",
            self.sink.as_deref().unwrap_or("unknown")
        ));
        if let Some(link) = &self.connection {
            line(format!(
                "edgeHub: {} for {}, {} reconnects{}",
                link.state,
                human_duration(link.seconds_in_state),
                link.reconnects,
                link.last_error
                    .as_deref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default()
            ));
        }
        line(format!(
            "messages: {} sent, {} acknowledged, {} failed; last acknowledged {}",
            self.messages.sent,
            self.messages.acked,
            self.messages.failed,
            self.messages.last_acked.as_deref().unwrap_or("never")
        ));
        let depth = |d: &Depth| d.events.or(d.messages).unwrap_or(0);
        line(format!(
            "queued: {} High, {} Low events; spool: {} messages, {} bytes",
            self.queue.get("High").map_or(0, depth),
            self.queue.get("Low").map_or(0, depth),
            self.spool.messages.unwrap_or(0),
            self.spool.bytes.unwrap_or(0)
        ));
        line("collectors:".into());
        for (name, c) in &self.collector_details {
            line(format!(
                "  {name:<20} {:<9} since {}  {}",
                c.status, c.since, c.message
            ));
        }
        line(format!("dropped: {}", counts(&self.drops, "nothing")));
        line(format!(
            "alerts in the last hour: {}",
            counts(&self.alerts_last_hour, "none")
        ));
        let held: Vec<String> = self
            .snapshots
            .iter()
            .filter(|(_, st)| st.unchanged_rounds > 0)
            .map(|(kind, st)| format!("{kind} (sent {})", st.last_sent))
            .collect();
        if !held.is_empty() {
            line(format!(
                "unchanged snapshots held back: {}",
                held.join(", ")
            ));
        }
        s
    }
}

/// `a 3, b 1` for the non-zero counts, or `none` when there are none.
fn counts(counts: &BTreeMap<String, u64>, none: &str) -> String {
    let shown: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if shown.is_empty() {
        none.to_string()
    } else {
        shown.join(", ")
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `42s`.
fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests;
