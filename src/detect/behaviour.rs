//! The learned behaviour baseline: what the device (and each container image) normally does,
//! learned for a period, and every later deviation an `Anomaly` (rule `behaviour-anomaly`).
//!
//! Learned items, per scope (the host, or a container image):
//! - `exec`: executables run (absolute paths only: a process known by its kernel name is not
//!   judged);
//! - `child`: parent → child executable pairs (the parent as seen exec'ing earlier; a parent
//!   started before the agent is unknown and the pair is not learned);
//! - `connect`: outbound destinations, `address:port` for private and link-local addresses and
//!   the port alone for public ones (cloud endpoints rotate their addresses); loopback is left
//!   out;
//! - `listen`: listening ports (`tcp/22`);
//! - `login`: successful login users with their source (`alice from 10.0.0.0/24`-style: the
//!   address for private sources, `remote` for public ones, `local` without an address);
//! - `module`: kernel modules loaded.
//!
//! Learning starts the first time the agent runs (or after a reset) and lasts
//! `behaviourLearningPeriod` of wall-clock time across restarts (default 24 h; `PT0S` turns the
//! baseline off). The set is kept in the state directory ([`FILE_NAME`], written at most once a
//! minute when it changed, and at shutdown) so it survives restarts and upgrades. It is bounded
//! at [`MAX_ITEMS`]: past it nothing more is learned (counted in [`Behaviour::not_learned`] and
//! logged once), and such items are reported as anomalies once learning ends. After learning,
//! an item not in the set is reported, and the detector adds it to the set ([`Behaviour::learn`])
//! once its alert is raised, or suppressed because the same item alerted recently: a new
//! behaviour is one alert, not one per occurrence. An alert dropped because the rule had spent
//! its per-minute budget does not teach the item, so its next occurrence, once the budget has
//! refilled, is reported (otherwise a flood of new items would hide some of them for good).

use crate::event::{ConnectionCreate, Direction, Event, ExtraDetails, LoginResult, Payload};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::net::IpAddr;
use std::time::Duration;

/// The file in the state directory.
pub const FILE_NAME: &str = "behaviour.json";
/// Items learned at most (all scopes together).
pub const MAX_ITEMS: usize = 20_000;
/// Process ids remembered for parent → child pairs, per generation of [`Pids`].
const MAX_PIDS: usize = 4096;
/// Format version of [`FILE_NAME`].
const VERSION: u32 = 1;

/// Where the baseline stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `behaviourLearningPeriod` is zero.
    Off,
    Learning,
    /// Learning is over: deviations are anomalies.
    Watching,
}

/// One deviation: what was not learned, for the alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    /// `host` or the container image.
    pub scope: String,
    /// `exec`, `child`, `connect`, `listen`, `login`, `module`.
    pub kind: &'static str,
    pub value: String,
}

impl Deviation {
    /// The suppression subject and the learned item's key.
    pub fn key(&self) -> String {
        key(&self.scope, self.kind, &self.value)
    }
}

fn key(scope: &str, kind: &str, value: &str) -> String {
    format!("{scope}\u{1f}{kind}\u{1f}{value}")
}

/// What [`FILE_NAME`] holds.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    version: u32,
    /// Unix seconds when learning started.
    learning_started: u64,
    /// The `behaviourBaselineReset` value last applied.
    #[serde(default)]
    reset_token: Option<String>,
    items: Vec<String>,
}

/// The learned set and its learning clock; see the module documentation.
#[derive(Debug)]
pub struct Behaviour {
    period: Duration,
    learning_started: u64,
    reset_token: Option<String>,
    learned: Learned,
    exes: Pids,
}

impl Behaviour {
    /// A new baseline that starts learning at `now` (Unix seconds).
    pub fn new(period: Duration, now: u64) -> Behaviour {
        Behaviour {
            period,
            learning_started: now,
            reset_token: None,
            learned: Learned {
                dirty: true,
                ..Learned::default()
            },
            exes: Pids::default(),
        }
    }

    /// The baseline stored in `bytes` (the contents of [`FILE_NAME`]); an unreadable or
    /// other-version file is an error, and the caller starts afresh.
    pub fn from_json(bytes: &[u8], period: Duration) -> Result<Behaviour, String> {
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if stored.version != VERSION {
            return Err(format!(
                "format version {} (expected {VERSION})",
                stored.version
            ));
        }
        let mut b = Behaviour::new(period, stored.learning_started);
        b.reset_token = stored.reset_token;
        for item in stored.items.into_iter().take(MAX_ITEMS) {
            b.learned.items.insert(item.into_boxed_str());
        }
        b.learned.dirty = false;
        Ok(b)
    }

    /// The file's contents (sorted, so equal sets give equal files); clears the dirty flag.
    pub fn to_json(&mut self) -> Vec<u8> {
        self.learned.dirty = false;
        let mut items: Vec<String> = self.learned.items.iter().map(|i| i.to_string()).collect();
        items.sort();
        let stored = Stored {
            version: VERSION,
            learning_started: self.learning_started,
            reset_token: self.reset_token.clone(),
            items,
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Whether the set or its clock changed since it was last written.
    pub fn is_dirty(&self) -> bool {
        self.learned.dirty
    }

    pub fn set_period(&mut self, period: Duration) {
        self.period = period;
    }

    /// Applies `behaviourBaselineReset`: a value other than the last applied one resets the
    /// baseline (the first value ever seen is only remembered, so deploying a twin with the key
    /// set does not throw away what a running agent learned). Returns whether it reset.
    pub fn apply_reset_token(&mut self, token: Option<&str>, now: u64) -> bool {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return false;
        };
        match &self.reset_token {
            Some(old) if old == token => false,
            None => {
                self.reset_token = Some(token.to_string());
                self.learned.dirty = true;
                false
            }
            Some(_) => {
                self.reset(now);
                self.reset_token = Some(token.to_string());
                true
            }
        }
    }

    /// Forgets everything learned and starts learning again at `now`.
    pub fn reset(&mut self, now: u64) {
        self.learned.items.clear();
        self.learning_started = now;
        self.learned.not_learned = 0;
        self.learned.full_logged = false;
        self.learned.dirty = true;
    }

    pub fn phase(&self, now: u64) -> Phase {
        if self.period.is_zero() {
            Phase::Off
        } else if now < self.learning_started.saturating_add(self.period.as_secs()) {
            Phase::Learning
        } else {
            Phase::Watching
        }
    }

    /// When learning ends, in Unix seconds.
    pub fn learning_ends(&self) -> u64 {
        self.learning_started.saturating_add(self.period.as_secs())
    }

    pub fn len(&self) -> usize {
        self.learned.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.learned.items.is_empty()
    }

    /// Items not learned because the set was full.
    pub fn not_learned(&self) -> u64 {
        self.learned.not_learned
    }

    /// Learns from `event` while learning; afterwards appends to `out` what it had not learned,
    /// each item once, without learning it: the caller learns a deviation with
    /// [`Behaviour::learn`] once its alert is not lost to the rate limit.
    pub fn observe(&mut self, event: &Event, now: u64, out: &mut Vec<Deviation>) {
        let phase = self.phase(now);
        if phase == Phase::Off {
            return;
        }
        let learned = &mut self.learned;
        match &event.payload {
            Payload::ProcessCreate(v) => {
                for r in v {
                    if !r.executable.starts_with('/') {
                        continue;
                    }
                    let scope = scope(Some(&r.extra_details));
                    let exe = r.executable.as_str();
                    learned.check(phase, scope, "exec", |b| b.push_str(exe), out);
                    if let Some(parent) = self.exes.get(r.parent_process_id) {
                        let pair = |b: &mut String| {
                            b.push_str(parent);
                            b.push_str(" -> ");
                            b.push_str(exe);
                        };
                        learned.check(phase, scope, "child", pair, out);
                    }
                    self.exes.insert(r.process_id, exe.into());
                }
            }
            Payload::ConnectionCreate(v) => {
                // Loopback is the device talking to itself (its own services, test doubles),
                // not a destination.
                let outbound = |r: &&ConnectionCreate| {
                    r.direction == Direction::Out && !r.remote_address.is_loopback()
                };
                for r in v.iter().filter(outbound) {
                    let scope = scope(Some(&r.extra_details));
                    learned.check(phase, scope, "connect", |b| destination(b, r), out);
                }
            }
            Payload::ListeningPorts(v) => {
                for r in v {
                    let scope = scope(Some(&r.extra_details));
                    let port = |b: &mut String| {
                        b.push_str(&r.protocol.to_ascii_lowercase());
                        let _ = write!(b, "/{}", r.local_port);
                    };
                    learned.check(phase, scope, "listen", port, out);
                }
            }
            Payload::Login(v) => {
                for r in v.iter().filter(|r| r.result == LoginResult::Success) {
                    let Some(user) = r.user_name.as_deref().filter(|u| !u.is_empty()) else {
                        continue;
                    };
                    let login = |b: &mut String| {
                        let _ = match r.remote_address {
                            None => write!(b, "{user} from local"),
                            Some(a) if is_local_network(a) => write!(b, "{user} from {a}"),
                            Some(_) => write!(b, "{user} from remote"),
                        };
                    };
                    learned.check(phase, "host", "login", login, out);
                }
            }
            Payload::KernelModule(v) => {
                for r in v
                    .iter()
                    .filter(|r| r.action == crate::event::ModuleAction::Loaded)
                {
                    learned.check(phase, "host", "module", |b| b.push_str(&r.name), out);
                }
            }
            _ => {}
        }
    }

    /// Learns a deviation [`Behaviour::observe`] reported (room permitting), so it is not
    /// reported again. The detector calls it when the deviation's alert was raised or suppressed
    /// as a repeat, not when the rule's rate limit dropped it.
    pub fn learn(&mut self, d: &Deviation) {
        let scratch = &mut self.learned.scratch;
        scratch.clear();
        scratch.push_str(&d.scope);
        scratch.push('\u{1f}');
        scratch.push_str(d.kind);
        scratch.push('\u{1f}');
        scratch.push_str(&d.value);
        self.learned.insert_scratch();
    }
}

/// Process id → executable, for parent → child pairs, in two generations of at most
/// [`MAX_PIDS`] each. A pid found only in the older generation moves to the younger, so a parent
/// that keeps starting children stays known; when the younger is full it becomes the older and
/// the older's entries are dropped (its allocation is reused). Nothing is removed when a process
/// exits (the detector does not see exits), so a table without generations would keep every pid
/// ever seen until a cap: memory would grow for as long as new pids come, instead of staying at
/// what the recent ones take.
#[derive(Debug, Default)]
struct Pids {
    young: HashMap<u32, Box<str>>,
    old: HashMap<u32, Box<str>>,
}

impl Pids {
    fn get(&mut self, pid: u32) -> Option<&str> {
        if !self.young.contains_key(&pid) {
            let exe = self.old.remove(&pid)?;
            self.insert(pid, exe);
        }
        self.young.get(&pid).map(|e| &**e)
    }

    fn insert(&mut self, pid: u32, exe: Box<str>) {
        if self.young.len() >= MAX_PIDS && !self.young.contains_key(&pid) {
            std::mem::swap(&mut self.young, &mut self.old);
            self.young.clear();
        }
        self.young.insert(pid, exe);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// The learned items and what learning them costs to track.
#[derive(Debug, Default)]
struct Learned {
    items: HashSet<Box<str>>,
    not_learned: u64,
    full_logged: bool,
    /// Changed since [`Behaviour::to_json`] last ran.
    dirty: bool,
    /// The key being looked up (reused: a known item costs no allocation).
    scratch: String,
}

impl Learned {
    /// Looks up the item whose value `fill` writes; a new one is learned (room permitting) while
    /// learning, and reported (once per `out`) when watching.
    fn check(
        &mut self,
        phase: Phase,
        scope: &str,
        kind: &'static str,
        fill: impl FnOnce(&mut String),
        out: &mut Vec<Deviation>,
    ) {
        self.scratch.clear();
        self.scratch.push_str(scope);
        self.scratch.push('\u{1f}');
        self.scratch.push_str(kind);
        self.scratch.push('\u{1f}');
        let value_at = self.scratch.len();
        fill(&mut self.scratch);
        if self.items.contains(self.scratch.as_str()) {
            return;
        }
        if phase == Phase::Watching {
            // Not learned here: see [`Behaviour::learn`]. An event naming an item twice (two
            // records of one new program) reports it once, as when it was learned at once.
            let value = &self.scratch[value_at..];
            let same = |d: &Deviation| d.kind == kind && d.scope == scope && d.value == value;
            if !out.iter().any(same) {
                out.push(Deviation {
                    scope: scope.to_string(),
                    kind,
                    value: value.to_string(),
                });
            }
            return;
        }
        self.insert_scratch();
    }

    /// Adds the item in `scratch` unless the set is full (then counts it, and logs once).
    fn insert_scratch(&mut self) {
        if self.items.contains(self.scratch.as_str()) {
            return;
        }
        if self.items.len() >= MAX_ITEMS {
            self.not_learned += 1;
            if !self.full_logged {
                self.full_logged = true;
                tracing::warn!(
                    items = MAX_ITEMS,
                    "the behaviour baseline is full: nothing more is learned"
                );
            }
            return;
        }
        self.items.insert(self.scratch.as_str().into());
        self.dirty = true;
    }
}

/// Whether events of `kind` teach or break the baseline: the detector reads the wall clock
/// and calls [`Behaviour::observe`] only for these.
pub fn judges(kind: crate::event::EventKind) -> bool {
    use crate::event::EventKind::*;
    matches!(
        kind,
        ProcessCreate | ConnectionCreate | ListeningPorts | Login | KernelModule
    )
}

/// The container image of a record, `container` for a container whose image is not known yet,
/// `host` otherwise.
fn scope(extra: Option<&ExtraDetails>) -> &str {
    let Some(extra) = extra else {
        return "host";
    };
    match (extra.get("ContainerImage"), extra.get("ContainerId")) {
        (Some(image), _) => image,
        (None, Some(_)) => "container",
        (None, None) => "host",
    }
}

/// `address:port` on the local networks, the port alone for public addresses.
fn destination(b: &mut String, r: &ConnectionCreate) {
    let _ = match r.remote_address {
        a if !is_local_network(a) => write!(b, "port {}", r.remote_port),
        IpAddr::V6(a) => write!(b, "[{a}]:{}", r.remote_port),
        a => write!(b, "{a}:{}", r.remote_port),
    };
}

/// Loopback, private (RFC 1918, unique local), link-local, or unspecified.
fn is_local_network(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local_network(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{
        ConnectionCreate, KernelModule, ListeningPort, Login, ModuleAction, ProcessCreate,
    };

    const DAY: u64 = 86_400;

    fn exec(pid: u32, ppid: u32, exe: &str, image: Option<&str>) -> Event {
        let mut extra = ExtraDetails::new();
        if let Some(i) = image {
            extra.insert("ContainerId".into(), "c0ffee".into());
            extra.insert("ContainerImage".into(), i.into());
        }
        Event::new(Payload::ProcessCreate(vec![ProcessCreate {
            executable: exe.into(),
            command_line: exe.into(),
            process_id: pid,
            parent_process_id: ppid,
            user_id: "0".into(),
            user_name: None,
            extra_details: extra,
        }]))
    }

    fn connect(to: &str, port: u16) -> Event {
        Event::new(Payload::ConnectionCreate(vec![ConnectionCreate {
            direction: Direction::Out,
            local_address: None,
            local_port: None,
            remote_address: to.parse().unwrap(),
            remote_port: port,
            protocol: "tcp".into(),
            process_id: 1,
            executable: "/usr/bin/curl".into(),
            command_line: None,
            user_id: None,
            extra_details: ExtraDetails::new(),
        }]))
    }

    /// What `e` reports; each deviation is then learned, as the detector does once it raises
    /// the alert.
    fn seen(b: &mut Behaviour, e: &Event, now: u64) -> Vec<String> {
        let mut out = Vec::new();
        b.observe(e, now, &mut out);
        out.iter().for_each(|d| b.learn(d));
        out.iter()
            .map(|d| format!("{} {} {}", d.scope, d.kind, d.value))
            .collect()
    }

    #[test]
    fn learns_then_reports_each_new_behaviour_once() {
        let t0 = 1_000_000;
        let mut b = Behaviour::new(Duration::from_secs(DAY), t0);
        assert_eq!(b.phase(t0), Phase::Learning);
        // Learning: nothing is reported.
        assert!(seen(&mut b, &exec(10, 1, "/usr/sbin/cron", None), t0).is_empty());
        assert!(seen(&mut b, &exec(11, 10, "/bin/sh", None), t0).is_empty());
        assert!(seen(&mut b, &exec(12, 1, "/app/server", Some("app:1")), t0).is_empty());
        assert!(seen(&mut b, &connect("10.1.2.3", 8883), t0).is_empty());
        assert!(seen(&mut b, &connect("20.50.1.1", 443), t0).is_empty());
        assert!(seen(&mut b, &exec(13, 1, "kworker", None), t0).is_empty());
        assert_eq!(b.len(), 6, "cron, sh, cron->sh, the app, two destinations");
        let later = t0 + DAY;
        assert_eq!(b.phase(later), Phase::Watching);
        // Known behaviour stays quiet: the same programs, the same pair, a public endpoint on
        // another address but the same port.
        assert!(seen(&mut b, &exec(20, 1, "/usr/sbin/cron", None), later).is_empty());
        assert!(seen(&mut b, &exec(21, 20, "/bin/sh", None), later).is_empty());
        assert!(seen(&mut b, &connect("20.50.9.9", 443), later).is_empty());
        // New behaviour, once each; per scope (the host's sh is not the container's).
        assert_eq!(
            seen(&mut b, &exec(22, 12, "/bin/sh", Some("app:1")), later),
            ["app:1 exec /bin/sh", "app:1 child /app/server -> /bin/sh"]
        );
        assert!(seen(&mut b, &exec(23, 12, "/bin/sh", Some("app:1")), later).is_empty());
        assert_eq!(
            seen(&mut b, &connect("10.1.2.4", 8883), later),
            ["host connect 10.1.2.4:8883"]
        );
        assert_eq!(
            seen(&mut b, &connect("198.51.100.7", 4444), later),
            ["host connect port 4444"]
        );
        let login = |user: &str, from: Option<&str>| {
            Event::new(Payload::Login(vec![Login {
                process_id: 1,
                user_id: None,
                user_name: Some(user.into()),
                operation: "sshd".into(),
                executable: "/usr/sbin/sshd".into(),
                remote_address: from.map(|f| f.parse().unwrap()),
                remote_port: None,
                local_port: None,
                result: LoginResult::Success,
                extra_details: ExtraDetails::new(),
            }]))
        };
        assert_eq!(
            seen(&mut b, &login("root", Some("203.0.113.5")), later),
            ["host login root from remote"]
        );
        assert_eq!(
            seen(&mut b, &login("pi", None), later),
            ["host login pi from local"]
        );
        let listen = Event::new(Payload::ListeningPorts(vec![ListeningPort {
            protocol: "TCP".into(),
            local_address: None,
            local_port: 4444,
            remote_address: None,
            remote_port: None,
            extra_details: ExtraDetails::new(),
        }]));
        assert_eq!(seen(&mut b, &listen, later), ["host listen tcp/4444"]);
        let module = Event::new(Payload::KernelModule(vec![KernelModule {
            name: "rootkit".into(),
            action: ModuleAction::Loaded,
            size: Some(1),
            extra_details: ExtraDetails::new(),
        }]));
        assert_eq!(seen(&mut b, &module, later), ["host module rootkit"]);
    }

    #[test]
    fn survives_a_restart_and_resets() {
        let t0 = 5_000;
        let mut b = Behaviour::new(Duration::from_secs(100), t0);
        seen(&mut b, &exec(1, 0, "/bin/a", None), t0);
        assert!(b.is_dirty());
        let bytes = b.to_json();
        assert!(!b.is_dirty());
        let mut again = Behaviour::from_json(&bytes, Duration::from_secs(100)).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again.learning_ends(), t0 + 100, "the clock spans restarts");
        assert!(seen(&mut again, &exec(2, 0, "/bin/a", None), t0 + 200).is_empty());
        assert_eq!(
            seen(&mut again, &exec(3, 0, "/bin/b", None), t0 + 200),
            ["host exec /bin/b"]
        );
        // The first reset token is remembered, a new one resets, the same one again does not.
        assert!(!again.apply_reset_token(Some("one"), t0 + 300));
        assert_eq!(again.len(), 2);
        assert!(again.apply_reset_token(Some("two"), t0 + 300));
        assert_eq!(again.len(), 0);
        assert_eq!(again.phase(t0 + 300), Phase::Learning);
        assert!(!again.apply_reset_token(Some("two"), t0 + 400));
        // Garbage and other versions are errors, not panics.
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"version":9,"learning_started":1,"items":[]}"#,
        ] {
            assert!(Behaviour::from_json(bad, Duration::from_secs(1)).is_err());
        }
        // Off: nothing learned, nothing reported.
        let mut off = Behaviour::new(Duration::ZERO, t0);
        assert_eq!(off.phase(t0), Phase::Off);
        assert!(seen(&mut off, &exec(4, 0, "/bin/c", None), t0).is_empty());
        assert!(off.is_empty());
    }

    #[test]
    fn the_set_is_bounded() {
        let mut b = Behaviour::new(Duration::from_secs(10), 0);
        for i in 0..MAX_ITEMS as u32 + 5 {
            seen(&mut b, &exec(i, u32::MAX, &format!("/bin/p{i}"), None), 0);
        }
        assert_eq!(b.len(), MAX_ITEMS);
        assert_eq!(b.not_learned(), 5);
        // What could not be learned is an anomaly once learning is over.
        let late = format!("/bin/p{}", MAX_ITEMS + 1);
        assert_eq!(
            seen(&mut b, &exec(1, u32::MAX, &late, None), 10),
            [format!("host exec {late}")]
        );
    }

    #[test]
    fn pids_are_bounded_and_a_busy_parent_stays_known() {
        let t0 = 0;
        let mut b = Behaviour::new(Duration::from_secs(10), t0);
        seen(&mut b, &exec(1, 0, "/usr/sbin/cron", None), t0);
        // Ten generations' worth of other processes, the parent starting a child now and then.
        let mut pid = 100;
        for round in 0..10 {
            for _ in 0..MAX_PIDS - 1 {
                seen(&mut b, &exec(pid, 0, "/bin/true", None), t0);
                pid += 1;
            }
            seen(&mut b, &exec(pid, 1, "/bin/sh", None), t0);
            pid += 1;
            assert!(
                b.exes.len() <= 2 * MAX_PIDS,
                "round {round}: {}",
                b.exes.len()
            );
        }
        assert_eq!(
            b.exes.get(1),
            Some("/usr/sbin/cron"),
            "moved up at each child"
        );
        let later = t0 + 10;
        // A parent that started nothing for two generations is forgotten: no pair is judged.
        for _ in 0..2 * MAX_PIDS {
            seen(&mut b, &exec(pid, 0, "/bin/true", None), later);
            pid += 1;
        }
        assert!(b.exes.get(1).is_none());
        assert!(b.exes.len() <= 2 * MAX_PIDS);
    }
}
