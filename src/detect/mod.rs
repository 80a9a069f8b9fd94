//! On-device detection: a few high-signal rules over the event stream, each raising an `Alert`.
//!
//! The pipeline shows every event to the [`Detector`] before aggregation, so a storm of one
//! command line is still seen event by event, and alerts go out with the next high-priority
//! message instead of waiting for a timer (the cloud side may be hours behind otherwise). Like
//! the pipeline core, the detector does no I/O and has no clock of its own: callers pass `now`.
//!
//! Each rule matches something an edge device in production should rarely do. Five are code
//! rules (below: the script an interpreter was given, login origins across sources); the others
//! are data, `rules.json`, compiled in and matched by [`catalog`]'s engine (one list, reviewed
//! in one place, mapped to MITRE ATT&CK; docs/detection.md describes every rule and the match
//! language). Both sorts share the rest: a subject (container, command line, account, origin)
//! raises a rule's alert at most once per [`SUPPRESSION`], and a rule raises at most
//! [`MAX_ALERTS_PER_MINUTE`]; matches beyond either are counted, not sent. All state is bounded
//! ([`MAX_ORIGINS`], [`MAX_SUPPRESSED`], [`MAX_CORRELATION_KEYS`] per correlation rule).
//!
//! No learned baseline yet: rules that need one (a new listening port, a new outbound
//! destination) are future work. `detectionRulesDisabled` in the twin turns single rules off,
//! `eventPriorityAlert: Off` all of them. The twin also adds rules ([`CustomRules`],
//! `detectionCustomRules`: a second catalog, owned by the detector, tried after the static
//! built-in one) and tunes built-in ones ([`RuleOverride`], `detectionRuleOverrides`).

use crate::collectors::capacity::{self, Sweep};
use crate::event::{
    AccountOperation, Alert, BaselineSeverity, ConnectionCreate, ContainerEvent, ContainerObject,
    Direction, Event, ExtraDetails, Login, LoginResult, Payload, ProcessCreate, UserChange,
};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub mod behaviour;
mod catalog;
use behaviour::{Behaviour, Deviation};
pub use catalog::{
    Catalog, CustomRules, MAX_CORRELATION_KEYS, MAX_CUSTOM_RULES, MAX_RULES, MAX_THRESHOLD,
    MAX_WINDOW, RuleDef, catalog, kind_fields,
};
use catalog::{Context, Correlation, Field, KindRules, Rec};

/// How long a rule stays quiet about a subject after alerting on it.
pub const SUPPRESSION: Duration = Duration::from_secs(600);
/// Failed logins from one origin, as recorded by one source, that make a brute-force attempt…
pub const BRUTE_FORCE_THRESHOLD: usize = 10;
/// …within this window.
pub const BRUTE_FORCE_WINDOW: Duration = Duration::from_secs(300);
/// Origins of failed logins tracked at once; when full, the one seen longest ago is forgotten.
pub const MAX_ORIGINS: usize = 1024;
/// Alerts one rule may raise per minute; beyond that its matches are suppressed (and counted)
/// until the minute is over, so a flood of distinct subjects (a thousand programs dropped in
/// /tmp) cannot flood the hub with alerts either.
pub const MAX_ALERTS_PER_MINUTE: u32 = 60;
/// Suppression entries kept. When full, the expired ones are dropped; if that frees nothing
/// (a flood of distinct subjects across many rules, each within its budget), the entry that
/// ends soonest is forgotten: at worst that subject alerts again, still within its rule's budget.
pub const MAX_SUPPRESSED: usize = 8192;
/// One correlation rule's keys and their match times.
#[derive(Debug, Default)]
struct Keys {
    times: HashMap<u64, VecDeque<Instant>>,
    sweep: Sweep,
}

/// Directories anyone may write to: a program started from one was most likely dropped there.
const TEMP_DIRS: [&str; 3] = ["/tmp/", "/var/tmp/", "/dev/shm/"];
/// Whether a file name is a shell's. (`matches!` rather than a list searched: the process
/// rules ask this of nearly every ProcessCreate, and a match on a string compiles to a switch
/// on its length and a few compares.)
fn is_shell(name: &str) -> bool {
    matches!(
        name,
        "sh" | "bash" | "dash" | "ash" | "zsh" | "ksh" | "mksh" | "csh" | "tcsh" | "fish"
    )
}

/// Multi-call binaries whose first argument names the program (`busybox sh`).
fn is_multi_call(name: &str) -> bool {
    matches!(name, "busybox" | "toybox")
}

/// Script interpreters besides the shells: a script they run from a temporary directory is as
/// suspicious as a program there.
fn is_interpreter(name: &str) -> bool {
    matches!(name, "perl" | "ruby" | "node" | "php" | "lua") || name.starts_with("python")
}

/// The words of a command line as /proc gives it (arguments joined by single spaces).
fn words(command_line: &str) -> impl Iterator<Item = &str> {
    command_line.split(' ').filter(|w| !w.is_empty())
}

/// A detection rule: an index into the [`catalog`] (code rules first, in the order of the
/// constants below, then the data rules of `rules.json`). Per-rule state (budgets, metrics) is
/// indexed by it. The constants keep the names the closed enum of the first five rules had.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule(u16);

#[allow(non_upper_case_globals)]
impl Rule {
    /// A program executed from `/tmp`, `/var/tmp` or `/dev/shm` (host or container), or a
    /// script from there run by a shell or interpreter (`sh /tmp/x.sh`): where droppers put
    /// their payload, and never where an edge device's software is installed.
    pub const ExecFromTempDir: Rule = Rule(0);
    /// A program executed from an anonymous memory file (`memfd_create`): fileless malware,
    /// nothing on disk to scan.
    pub const ExecFromMemory: Rule = Rule(1);
    /// A shell started in a running container through the engine (`docker exec … sh`):
    /// someone is working inside a module by hand.
    pub const ShellInContainer: Rule = Rule(2);
    /// [`BRUTE_FORCE_THRESHOLD`] failed logins from one origin within [`BRUTE_FORCE_WINDOW`].
    pub const LoginBruteForce: Rule = Rule(3);
    /// A new account with uid 0, or an account changed to uid 0: a second root.
    pub const Uid0AccountAdded: Rule = Rule(4);
    /// A program not on `detectionAllowedProcesses` ([`AllowLists`]).
    pub const ProcessNotAllowed: Rule = Rule(5);
    /// An outbound connection not on `detectionAllowedConnections`.
    pub const ConnectionNotAllowed: Rule = Rule(6);
    /// A login by a user or from a source not on `detectionAllowedUsers` /
    /// `detectionAllowedLoginSources`.
    pub const LoginNotAllowed: Rule = Rule(7);
    /// Behaviour the learned baseline had not seen ([`behaviour`]).
    pub const BehaviourAnomaly: Rule = Rule(8);

    /// Every rule, in index order.
    pub fn all() -> impl ExactSizeIterator<Item = Rule> + Clone {
        (0..Rule::count() as u16).map(Rule)
    }

    /// How many built-in rules there are (code and data). Custom rules are numbered after them.
    pub fn count() -> usize {
        catalog().rules.len()
    }

    /// The rule's position in [`Rule::all`].
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The rule with this id (`detectionRulesDisabled`).
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::all().find(|r| r.id() == id)
    }

    pub fn def(self) -> &'static RuleDef {
        &catalog().rules[self.index()]
    }

    /// The alert's `RuleId` and the metrics' `rule` label.
    pub fn id(self) -> &'static str {
        &self.def().id
    }

    pub fn severity(self) -> BaselineSeverity {
        self.def().severity
    }

    pub fn title(self) -> &'static str {
        &self.def().title
    }

    /// The MITRE ATT&CK techniques the rule detects.
    pub fn techniques(self) -> &'static [String] {
        &self.def().techniques
    }
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match catalog().rules.get(self.index()) {
            Some(def) => write!(f, "Rule({})", def.id),
            None => write!(f, "Rule(#{})", self.0),
        }
    }
}

/// A built-in rule's settings from the twin (`detectionRuleOverrides`), each replacing the
/// rule's own when set.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RuleOverride {
    pub severity: Option<BaselineSeverity>,
    /// Matches that make an alert, 2 to [`MAX_THRESHOLD`]: rules with a threshold
    /// ([`Rule::tunable`]).
    pub threshold: Option<usize>,
    /// The correlation window, 1 s to [`MAX_WINDOW`]: rules with a threshold or a sequence.
    pub window: Option<Duration>,
}

impl RuleOverride {
    pub fn is_empty(&self) -> bool {
        *self == RuleOverride::default()
    }
}

impl Rule {
    /// What `detectionRuleOverrides` may set besides the severity: (a threshold, a window).
    /// Threshold rules and `login-brute-force` have both, sequence rules a window only.
    pub fn tunable(self) -> (bool, bool) {
        if self == Rule::LoginBruteForce {
            return (true, true);
        }
        match self.def().data.as_ref().map(|d| &d.correlation) {
            Some(Correlation::Threshold { .. }) => (true, true),
            Some(Correlation::Sequence { .. }) => (false, true),
            _ => (false, false),
        }
    }
}

/// A network (`10.0.0.0/8`) or one address, as the match language's `cidr` reads it.
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    catalog::cidr(text)
}

/// Entries one allow-list may have (each twin key is a string of at most this many, say so).
pub const MAX_ALLOWED: usize = 256;

/// The allow-lists of the twin (issue 17's "custom alerts" of the retired service): what the
/// device is expected to run, reach and let log in. A list that is empty is off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowLists {
    /// Executables (`detectionAllowedProcesses`): absolute paths, or directories ending in `/`
    /// whose programs (at any depth) are all allowed.
    pub processes: Vec<String>,
    /// Outbound destinations (`detectionAllowedConnections`): a network, and a port (`None`:
    /// any). Loopback destinations are always allowed.
    pub destinations: Vec<AllowedDestination>,
    /// Local user names that may log in (`detectionAllowedUsers`).
    pub users: Vec<String>,
    /// Networks logins may come from (`detectionAllowedLoginSources`).
    pub login_sources: Vec<(IpAddr, u8)>,
}

/// One entry of `detectionAllowedConnections`: `10.0.0.0/8`, `10.1.2.3:443`, `[fd00::/8]:443`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllowedDestination {
    pub net: (IpAddr, u8),
    pub port: Option<u16>,
}

impl AllowedDestination {
    /// Parses one entry; the address may be a network (`/len`), IPv6 in brackets when a port
    /// follows.
    pub fn parse(text: &str) -> Option<AllowedDestination> {
        let text = text.trim();
        let (addr, port) = if let Some(rest) = text.strip_prefix('[') {
            let (addr, after) = rest.split_once(']')?;
            match after {
                "" => (addr, None),
                p => (addr, Some(p.strip_prefix(':')?.parse().ok()?)),
            }
        } else {
            match text.rsplit_once(':') {
                // One colon: IPv4 with a port; more: a bare IPv6 address.
                Some((a, p)) if !a.contains(':') => (a, Some(p.parse().ok()?)),
                _ => (text, None),
            }
        };
        Some(AllowedDestination {
            net: catalog::cidr(addr)?,
            port,
        })
    }

    fn allows(&self, ip: IpAddr, port: u16) -> bool {
        catalog::in_cidr(ip, self.net) && self.port.is_none_or(|p| p == port)
    }
}

impl AllowLists {
    fn allows_process(&self, exe: &str) -> bool {
        self.processes.iter().any(|p| match p.ends_with('/') {
            true => exe.starts_with(p.as_str()),
            false => exe == p,
        })
    }

    fn allows_destination(&self, ip: IpAddr, port: u16) -> bool {
        ip.is_loopback()
            || ip.to_canonical().is_loopback()
            || self.destinations.iter().any(|d| d.allows(ip, port))
    }

    /// Why a successful login breaks the lists, if it does.
    fn login_violation(&self, r: &Login) -> Option<String> {
        let user = r.user_name.as_deref();
        if !self.users.is_empty() && !user.is_some_and(|u| self.users.iter().any(|a| a == u)) {
            return Some(format!(
                "user {} is not allowed to log in",
                user.unwrap_or("(unknown)")
            ));
        }
        let from = r.remote_address?;
        if !self.login_sources.is_empty()
            && !self
                .login_sources
                .iter()
                .any(|n| catalog::in_cidr(from, *n))
        {
            return Some(format!("logins from {from} are not allowed"));
        }
        None
    }
}

/// What [`Detector::inspect`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A new alert, to be sent.
    Raised(Rule, Box<Alert>),
    /// The rule matched a subject it alerted on within [`SUPPRESSION`], or had spent its
    /// [`MAX_ALERTS_PER_MINUTE`]: counted, not sent.
    Suppressed(Rule),
}

/// What [`Detector::raise`] did with a match (both kinds of suppression are
/// [`Finding::Suppressed`] to the caller of [`Detector::inspect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Raise {
    /// The alert was sent.
    Sent,
    /// The rule alerted on the subject within [`SUPPRESSION`]: counted, not sent.
    Repeat,
    /// The rule had spent its [`MAX_ALERTS_PER_MINUTE`]: counted, not sent.
    OverBudget,
}

/// The detection state: recent failed logins per origin, correlation state of data rules, and
/// which subjects are suppressed.
#[derive(Debug)]
pub struct Detector {
    /// (source, origin) → times of failed logins within the window, oldest first.
    failures: HashMap<(String, String), VecDeque<Instant>>,
    failures_sweep: Sweep,
    /// (rule, hash of the subject) → end of its suppression. A hash, not the subject's text:
    /// a storm of one matching program looks its subject up per event, without allocating.
    suppressed: HashMap<(Rule, u64), Instant>,
    suppressed_sweep: Sweep,
    /// Keys the subject hashes (random per agent, so nobody can aim a collision at a subject).
    subject_keys: RandomState,
    /// Per rule (in [`Rule::all`] order, then the custom rules): start of its current minute
    /// and alerts raised in it.
    budget: Vec<Option<(Instant, u32)>>,
    /// Per built-in rule: turned off by `detectionRulesDisabled`.
    disabled: Vec<bool>,
    /// The twin's custom rules (`detectionCustomRules`), tried after the built-in ones; their
    /// rules are numbered after [`Rule::count`]. `None` (no custom rules) costs one test per
    /// event.
    custom: Option<Arc<Catalog>>,
    /// Per correlation rule, (hash of its key) → times of its matches within the window, oldest
    /// first (threshold: at most the count; sequence: the last first step). At most
    /// [`MAX_CORRELATION_KEYS`] keys per rule.
    correlation: HashMap<Rule, Keys>,
    /// Per built-in rule, its overrides (`detectionRuleOverrides`); empty when there are none,
    /// so a rule without any costs one bounds check where it has a threshold or a window.
    overrides: Vec<RuleOverride>,
    /// The allow-lists; `None` when all are empty (one test per event then).
    allow: Option<Box<AllowLists>>,
    /// The learned behaviour baseline (`behaviour-anomaly`); `None` until the pipeline gives
    /// one (a detector of its own, as in tests, learns nothing).
    behaviour: Option<Box<Behaviour>>,
    /// Deviations of the event being inspected (reused).
    deviations: Vec<Deviation>,
}

impl Default for Detector {
    fn default() -> Detector {
        Detector::new()
    }
}

impl Detector {
    pub fn new() -> Detector {
        Detector {
            failures: HashMap::new(),
            failures_sweep: Sweep::default(),
            suppressed: HashMap::new(),
            suppressed_sweep: Sweep::default(),
            subject_keys: RandomState::new(),
            budget: vec![None; Rule::count()],
            disabled: vec![false; Rule::count()],
            correlation: HashMap::new(),
            custom: None,
            overrides: Vec::new(),
            allow: None,
            behaviour: None,
            deviations: Vec::new(),
        }
    }

    /// Learns and judges behaviour with `behaviour` from now on ([`behaviour`]).
    pub fn set_behaviour(&mut self, behaviour: Behaviour) {
        self.behaviour = Some(Box::new(behaviour));
    }

    /// The learned baseline, for saving, resets and the period from the twin.
    pub fn behaviour_mut(&mut self) -> Option<&mut Behaviour> {
        self.behaviour.as_deref_mut()
    }

    /// Uses these allow-lists from now on (empty lists are off).
    pub fn set_allow_lists(&mut self, lists: &AllowLists) {
        self.allow = match *lists == AllowLists::default() {
            true => None,
            false => Some(Box::new(lists.clone())),
        };
    }

    /// Uses these overrides from now on (the rules not named: their own settings). Correlation
    /// state is kept: times outside a shorter window are dropped at the next match, and a lower
    /// threshold alerts at the next match that reaches it.
    pub fn set_overrides(&mut self, overrides: &BTreeMap<Rule, RuleOverride>) {
        self.overrides = match overrides.is_empty() {
            true => Vec::new(),
            false => Rule::all()
                .map(|r| overrides.get(&r).copied().unwrap_or_default())
                .collect(),
        };
    }

    fn overridden(&self, rule: Rule) -> Option<&RuleOverride> {
        self.overrides.get(rule.index())
    }

    /// `login-brute-force`'s threshold and window.
    fn brute_force(&self) -> (usize, Duration) {
        let o = self.overridden(Rule::LoginBruteForce);
        (
            o.and_then(|o| o.threshold).unwrap_or(BRUTE_FORCE_THRESHOLD),
            o.and_then(|o| o.window).unwrap_or(BRUTE_FORCE_WINDOW),
        )
    }

    /// Uses these custom rules from now on (none: `None`). The state of the custom rules
    /// before (budgets, suppressions, correlation) is dropped, since an index may now stand
    /// for another rule; the same set again (the configuration changed elsewhere) keeps it.
    pub fn set_custom(&mut self, rules: &CustomRules) {
        let next = rules.catalog().cloned();
        let same = match (&self.custom, &next) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        let base = Rule::count();
        self.custom = next;
        let total = base + self.custom.as_ref().map_or(0, |c| c.rules.len());
        self.budget.truncate(base);
        self.budget.resize(total, None);
        self.suppressed.retain(|(rule, _), _| rule.index() < base);
        self.correlation.retain(|rule, _| rule.index() < base);
    }

    /// The id of a built-in or custom rule (a custom rule replaced since: `"unknown"`).
    pub fn rule_id(&self, rule: Rule) -> &str {
        if rule.index() < Rule::count() {
            return rule.id();
        }
        let def = self.custom.as_ref().and_then(|c| c.def(rule));
        def.map_or("unknown", |d| d.id.as_str())
    }

    /// Turns off exactly these rules (the others on). A disabled rule neither alerts nor counts
    /// (failed logins, or correlated matches, seen while it is off do not count towards a later
    /// alert).
    pub fn set_disabled(&mut self, rules: &[Rule]) {
        self.disabled = Rule::all().map(|r| rules.contains(&r)).collect();
        if !self.on(Rule::LoginBruteForce) {
            self.failures = HashMap::new();
        }
        let disabled = &self.disabled;
        self.correlation
            .retain(|rule, _| !disabled.get(rule.index()).copied().unwrap_or(false));
    }

    /// Whether the rule is on (custom rules always are).
    fn on(&self, rule: Rule) -> bool {
        !self.disabled.get(rule.index()).copied().unwrap_or(false)
    }

    /// Runs every enabled rule on one event, appending what they found to `out`.
    pub fn inspect(&mut self, event: &Event, now: Instant, out: &mut Vec<Finding>) {
        match &event.payload {
            Payload::ProcessCreate(v) => {
                for r in v {
                    if let Some((rule, path)) = exec_rule(r).filter(|(rule, _)| self.on(*rule)) {
                        let subject = (container_id(&r.extra_details), path);
                        self.raise(rule, subject, now, out, || process_alert(rule, r, path));
                    }
                }
                self.allowed_processes(v, now, out);
            }
            Payload::ConnectionCreate(v) => self.allowed_connections(v, now, out),
            Payload::ContainerEvent(v) if self.on(Rule::ShellInContainer) => {
                for r in v {
                    if let Some(alert) = shell_exec(r) {
                        let subject = r.container_id.as_deref().unwrap_or_default();
                        self.raise(Rule::ShellInContainer, subject, now, out, || alert);
                    }
                }
            }
            Payload::Login(v) => {
                if self.on(Rule::LoginBruteForce) {
                    for r in v.iter().filter(|r| r.result == LoginResult::Fail) {
                        self.failed_login(r, now, out);
                    }
                }
                self.allowed_logins(v, now, out);
            }
            Payload::UserChange(v) if self.on(Rule::Uid0AccountAdded) => {
                for r in v.iter().filter(|r| is_new_uid0(r)) {
                    let rule = Rule::Uid0AccountAdded;
                    self.raise(rule, r.name.as_str(), now, out, || uid0_alert(r));
                }
            }
            _ => {}
        }
        if self.behaviour.is_some()
            && behaviour::judges(event.payload.kind())
            && self.on(Rule::BehaviourAnomaly)
        {
            self.behaviour_anomalies(event, now, out);
        }
        let kind = event.payload.kind() as usize;
        let kind_rules = &catalog().kinds[kind];
        if !kind_rules.is_empty() {
            self.records(catalog(), kind_rules, event, now, out);
        }
        if let Some(custom) = self.custom.as_ref().filter(|c| !c.kinds[kind].is_empty()) {
            let custom = Arc::clone(custom);
            self.records(&custom, &custom.kinds[kind], event, now, out);
        }
    }

    /// Tries the data rules of one catalog on each record of the event.
    fn records(
        &mut self,
        cat: &Catalog,
        kind_rules: &KindRules,
        event: &Event,
        now: Instant,
        out: &mut Vec<Finding>,
    ) {
        match &event.payload {
            Payload::ProcessCreate(v) => {
                for r in v {
                    self.data_rules(cat, kind_rules, Rec::Process(r), event, now, out);
                }
            }
            Payload::ProcessTerminate(v) => {
                for r in v {
                    self.data_rules(cat, kind_rules, Rec::Terminate(r), event, now, out);
                }
            }
            Payload::ConnectionCreate(v) => {
                for r in v {
                    self.data_rules(cat, kind_rules, Rec::Connection(r), event, now, out);
                }
            }
            Payload::Login(v) => {
                for r in v {
                    self.data_rules(cat, kind_rules, Rec::Login(r), event, now, out);
                }
            }
            Payload::UserChange(v) => {
                for r in v {
                    self.data_rules(cat, kind_rules, Rec::User(r), event, now, out);
                }
            }
            Payload::ContainerEvent(v) => {
                for r in v {
                    self.data_rules(cat, kind_rules, Rec::Container(r), event, now, out);
                }
            }
            Payload::FirewallChange(v) => {
                for r in v {
                    self.data_rules(cat, kind_rules, Rec::Firewall(r), event, now, out);
                }
            }
            Payload::SoftwareChange(v) => {
                for r in v {
                    self.data_rules(cat, kind_rules, Rec::Software(r), event, now, out);
                }
            }
            Payload::FileChange(v) => {
                for r in v {
                    self.data_rules(cat, kind_rules, Rec::File(r), event, now, out);
                }
            }
            Payload::KernelModule(v) => {
                for r in v {
                    self.data_rules(cat, kind_rules, Rec::Module(r), event, now, out);
                }
            }
            Payload::ConnectedHardware(v) => {
                for r in v {
                    self.data_rules(cat, kind_rules, Rec::Hardware(r), event, now, out);
                }
            }
            _ => {}
        }
    }

    /// Tries the data rules of the record's kind: those gated on its program name, and the
    /// ungated ones.
    fn data_rules(
        &mut self,
        cat: &Catalog,
        rules: &KindRules,
        rec: Rec<'_>,
        event: &Event,
        now: Instant,
        out: &mut Vec<Finding>,
    ) {
        let cx = Context::new(&rec, cat);
        if !rules.by_program.is_empty() {
            // A rule gated under both names (`dash` run as `sh`) is tried once.
            let [name, alias] = cx.program_ids;
            let first = rules.gated(name);
            for rule in first {
                self.data_rule(cat, *rule, rec, &cx, event, now, out);
            }
            if alias != name {
                for rule in rules.gated(alias) {
                    if !first.contains(rule) {
                        self.data_rule(cat, *rule, rec, &cx, event, now, out);
                    }
                }
            }
        }
        for rule in &rules.always {
            self.data_rule(cat, *rule, rec, &cx, event, now, out);
        }
    }

    /// One data rule on one record: its condition, then its correlation, then the alert.
    #[allow(clippy::too_many_arguments)]
    fn data_rule(
        &mut self,
        cat: &Catalog,
        rule: Rule,
        rec: Rec<'_>,
        cx: &Context<'_>,
        event: &Event,
        now: Instant,
        out: &mut Vec<Finding>,
    ) {
        let Some(def) = cat.def(rule).filter(|_| self.on(rule)) else {
            return;
        };
        let Some(data) = &def.data else { return };
        let count = match &data.correlation {
            Correlation::None => match data.cond.matches(&rec, cx) {
                true => 1,
                false => return,
            },
            Correlation::Threshold { count, window, key } => {
                if !data.cond.matches(&rec, cx) {
                    return;
                }
                let o = self.overridden(rule);
                let count = &o.and_then(|o| o.threshold).unwrap_or(*count);
                let window = &o.and_then(|o| o.window).unwrap_or(*window);
                let key = self.hash_fields(&rec, std::slice::from_ref(key));
                let times = self.correlation_times(rule, key, *window, now);
                times.push_back(now);
                if times.len() < *count {
                    return;
                }
                let n = times.len() as u64;
                self.correlation
                    .get_mut(&rule)
                    .map(|m| m.times.remove(&key));
                n
            }
            Correlation::Sequence { then, window, key } => {
                let (first, second) = (data.cond.matches(&rec, cx), then.matches(&rec, cx));
                if !first && !second {
                    return;
                }
                let o = self.overridden(rule);
                let window = &o.and_then(|o| o.window).unwrap_or(*window);
                let key = self.hash_fields(&rec, std::slice::from_ref(key));
                let times = self.correlation_times(rule, key, *window, now);
                let done = second && !times.is_empty();
                times.clear();
                if first && !done {
                    times.push_back(now);
                }
                if !done {
                    return;
                }
                2
            }
        };
        let subject = self.hash_fields(&rec, &data.subject);
        self.raise(rule, subject, now, out, || {
            data_alert(def, rec, event, count)
        });
    }

    /// A keyed hash of the fields' values (a missing field hashes apart from an empty one).
    fn hash_fields(&self, rec: &Rec<'_>, fields: &[Field]) -> u64 {
        let mut h = self.subject_keys.build_hasher();
        for f in fields {
            rec.get(f).map(|v| v.text().into_owned()).hash(&mut h);
        }
        h.finish()
    }

    /// The match times kept for one key of a correlation rule, with those older than the window
    /// dropped; makes room for a new key when the rule has [`MAX_CORRELATION_KEYS`].
    fn correlation_times(
        &mut self,
        rule: Rule,
        key: u64,
        window: Duration,
        now: Instant,
    ) -> &mut VecDeque<Instant> {
        let Keys { times: keys, sweep } = self.correlation.entry(rule).or_default();
        let live = |t: &Instant| now.saturating_duration_since(*t) < window;
        if !keys.contains_key(&key) && (sweep.due(keys.len()) || keys.len() >= MAX_CORRELATION_KEYS)
        {
            keys.retain(|_, times| times.back().is_some_and(live));
            sweep.done(keys.len());
            capacity::shrink_map(keys);
            if keys.len() >= MAX_CORRELATION_KEYS {
                let stalest = keys
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(k, _)| *k);
                stalest.map(|k| keys.remove(&k));
            }
        }
        let times = keys.entry(key).or_default();
        while times.front().is_some_and(|t| !live(t)) {
            times.pop_front();
        }
        times
    }

    /// `behaviour-anomaly`: what the learned baseline had not seen, once learning is over.
    fn behaviour_anomalies(&mut self, event: &Event, now: Instant, out: &mut Vec<Finding>) {
        let Some(b) = self.behaviour.as_deref_mut() else {
            return;
        };
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut found = std::mem::take(&mut self.deviations);
        b.observe(event, wall, &mut found);
        for d in found.drain(..) {
            let rule = Rule::BehaviourAnomaly;
            let raised = self.raise(rule, d.key(), now, out, || anomaly_alert(&d, event));
            // Learned once reported (or a repeat of what was): a deviation dropped by the rate
            // limit stays new, so it is reported when it recurs after the budget refills.
            if raised != Raise::OverBudget
                && let Some(b) = self.behaviour.as_deref_mut()
            {
                b.learn(&d);
            }
        }
        self.deviations = found;
    }

    /// Sends `make()`'s alert unless the subject is suppressed or the rule's budget is spent;
    /// starts its suppression.
    fn raise(
        &mut self,
        rule: Rule,
        subject: impl Hash,
        now: Instant,
        out: &mut Vec<Finding>,
        make: impl FnOnce() -> Alert,
    ) -> Raise {
        let key = (rule, self.subject_keys.hash_one(subject));
        if self.suppressed.get(&key).is_some_and(|until| *until > now) {
            out.push(Finding::Suppressed(rule));
            return Raise::Repeat;
        }
        if !self.spend(rule, now) {
            out.push(Finding::Suppressed(rule));
            return Raise::OverBudget;
        }
        let len = self.suppressed.len();
        if self.suppressed_sweep.due(len) || len >= MAX_SUPPRESSED {
            self.suppressed.retain(|_, until| *until > now);
            self.suppressed_sweep.done(self.suppressed.len());
            capacity::shrink_map(&mut self.suppressed);
            if self.suppressed.len() >= MAX_SUPPRESSED {
                let soonest = self.suppressed.iter().min_by_key(|(_, until)| **until);
                let soonest = soonest.map(|(k, _)| *k);
                soonest.map(|k| self.suppressed.remove(&k));
            }
        }
        self.suppressed.insert(key, now + SUPPRESSION);
        let mut alert = make();
        if let Some(severity) = self.overridden(rule).and_then(|o| o.severity) {
            alert.severity = severity;
        }
        out.push(Finding::Raised(rule, Box::new(alert)));
        Raise::Sent
    }

    /// Takes one alert from the rule's budget for the current minute; false when it is spent.
    fn spend(&mut self, rule: Rule, now: Instant) -> bool {
        let minute = Duration::from_secs(60);
        let slot = &mut self.budget[rule.index()];
        match slot {
            Some((start, n)) if now.saturating_duration_since(*start) < minute => {
                if *n >= MAX_ALERTS_PER_MINUTE {
                    return false;
                }
                *n += 1;
            }
            _ => *slot = Some((now, 1)),
        }
        true
    }

    /// `process-not-allowed`: programs whose executable is not on the list.
    fn allowed_processes(&mut self, v: &[ProcessCreate], now: Instant, out: &mut Vec<Finding>) {
        let rule = Rule::ProcessNotAllowed;
        let Some(allow) = self.allow.take() else {
            return;
        };
        if !allow.processes.is_empty() && self.on(rule) {
            // A process gone before its path was known carries the kernel's short name only
            // (`ExtraDetails.Incomplete`): it cannot be judged, and every such name would alert.
            let judged = |r: &&ProcessCreate| r.executable.starts_with('/');
            for r in v
                .iter()
                .filter(judged)
                .filter(|r| !allow.allows_process(&r.executable))
            {
                let subject = (container_id(&r.extra_details), r.executable.as_str());
                self.raise(rule, subject, now, out, || {
                    let mut a = alert(
                        rule,
                        format!("{} is not on the allowed programs", r.executable),
                        1,
                    );
                    process_evidence(&mut a, r);
                    a
                });
            }
        }
        self.allow = Some(allow);
    }

    /// `connection-not-allowed`: outbound connections to destinations not on the list.
    fn allowed_connections(
        &mut self,
        v: &[ConnectionCreate],
        now: Instant,
        out: &mut Vec<Finding>,
    ) {
        let rule = Rule::ConnectionNotAllowed;
        let Some(allow) = self.allow.take() else {
            return;
        };
        if !allow.destinations.is_empty() && self.on(rule) {
            let bad = |r: &&ConnectionCreate| {
                r.direction == Direction::Out
                    && !allow.allows_destination(r.remote_address, r.remote_port)
            };
            for r in v.iter().filter(bad) {
                let subject = (r.executable.as_str(), r.remote_address, r.remote_port);
                self.raise(rule, subject, now, out, || {
                    let mut a = alert(
                        rule,
                        format!(
                            "{} connected to {} port {}, not on the allowed destinations",
                            r.executable, r.remote_address, r.remote_port
                        ),
                        1,
                    );
                    a.process_id = Some(r.process_id);
                    a.executable = Some(r.executable.clone());
                    a.command_line = r.command_line.clone();
                    a.user_id = r.user_id.clone();
                    a.remote_address = Some(r.remote_address);
                    a.extra_details
                        .insert("RemotePort".into(), r.remote_port.to_string());
                    a.extra_details
                        .insert("Protocol".into(), r.protocol.clone());
                    container_evidence(&mut a, &r.extra_details);
                    a
                });
            }
        }
        self.allow = Some(allow);
    }

    /// `login-not-allowed`: successful logins by users, or from sources, not on the lists.
    fn allowed_logins(&mut self, v: &[Login], now: Instant, out: &mut Vec<Finding>) {
        let rule = Rule::LoginNotAllowed;
        let Some(allow) = self.allow.take() else {
            return;
        };
        if self.on(rule) {
            for r in v.iter().filter(|r| r.result == LoginResult::Success) {
                let Some(why) = allow.login_violation(r) else {
                    continue;
                };
                let subject = (r.user_name.as_deref(), r.remote_address);
                self.raise(rule, subject, now, out, || {
                    let mut a = alert(rule, format!("{why} ({})", r.operation), 1);
                    a.process_id = Some(r.process_id);
                    a.executable = Some(r.executable.clone());
                    a.user_id = r.user_id.clone();
                    a.user_name = r.user_name.clone();
                    a.remote_address = r.remote_address;
                    a.extra_details
                        .insert("Operation".into(), r.operation.clone());
                    a
                });
            }
        }
        self.allow = Some(allow);
    }

    /// Counts a failed login against its origin and raises a brute-force alert at the threshold.
    fn failed_login(&mut self, r: &Login, now: Instant, out: &mut Vec<Finding>) {
        // One source may record one attempt twice (sshd's "Invalid user" and "Failed password"),
        // but two sources (auth.log and btmp) always do: counted per source, never summed.
        let source = r
            .operation
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let origin = match (&r.remote_address, &r.user_name) {
            (Some(a), _) => a.to_string(),
            (None, Some(u)) => format!("user {u}"),
            (None, None) => "unknown".to_string(),
        };
        let key = (source, origin);
        let (threshold, window) = self.brute_force();
        let len = self.failures.len();
        if !self.failures.contains_key(&key) && (self.failures_sweep.due(len) || len >= MAX_ORIGINS)
        {
            self.failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
            self.failures_sweep.done(self.failures.len());
            capacity::shrink_map(&mut self.failures);
            if self.failures.len() >= MAX_ORIGINS {
                let stalest = self
                    .failures
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(k, _)| k.clone());
                stalest.map(|k| self.failures.remove(&k));
            }
        }
        let times = self.failures.entry(key.clone()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            times.pop_front();
        }
        times.push_back(now);
        if times.len() < threshold {
            return;
        }
        let count = times.len() as u64;
        self.failures.remove(&key);
        let (source, origin) = key;
        self.raise(Rule::LoginBruteForce, (&source, &origin), now, out, || {
            brute_force_alert(r, &source, &origin, count, window)
        });
    }
}

/// The rule a new process breaks, if any, and the path that breaks it (its executable, or the
/// script an interpreter was given).
fn exec_rule(r: &ProcessCreate) -> Option<(Rule, &str)> {
    let exe = r.executable.as_str();
    if exe.starts_with("/memfd:") {
        Some((Rule::ExecFromMemory, exe))
    } else if in_temp_dir(exe) {
        Some((Rule::ExecFromTempDir, exe))
    } else {
        script_path(exe, &r.command_line).map(|s| (Rule::ExecFromTempDir, s))
    }
}

fn in_temp_dir(path: &str) -> bool {
    TEMP_DIRS.iter().any(|d| path.starts_with(d))
}

/// The script in a temporary directory that a shell or interpreter was started with
/// (`sh /tmp/x.sh`, `python3 -u /dev/shm/x.py`, `busybox sh /tmp/x`): its first argument that
/// is not an option. The command line is split at spaces, so a script path with a space in it
/// is not recognised.
fn script_path<'a>(executable: &str, command_line: &'a str) -> Option<&'a str> {
    let base = base_name(executable);
    let multi = is_multi_call(base);
    if !(multi || is_shell(base) || is_interpreter(base)) {
        return None;
    }
    let mut words = words(command_line);
    let argv0 = words.next()?;
    if multi {
        // The applet is argv[0] (`sh /tmp/x` through a link) or the next word
        // (`busybox sh /tmp/x`); only shells run scripts.
        let applet = match is_multi_call(base_name(argv0)) {
            true => words.next()?,
            false => argv0,
        };
        if !is_shell(base_name(applet)) {
            return None;
        }
    }
    words
        .find(|w| !w.starts_with('-'))
        .filter(|w| in_temp_dir(w))
}

fn container_id(extra: &ExtraDetails) -> &str {
    extra.get("ContainerId").map(String::as_str).unwrap_or("")
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether a command line starts a shell (`sh -c …`, `/bin/bash`, `busybox sh`).
fn is_shell_command(command: &str) -> bool {
    let mut words = command.split_whitespace().map(base_name);
    match words.next() {
        Some(first) if is_shell(first) => true,
        Some(first) if is_multi_call(first) => words.next().is_some_and(is_shell),
        _ => false,
    }
}

fn is_new_uid0(r: &UserChange) -> bool {
    r.extra_details.get("NewUid0").is_some_and(|v| v == "true")
        || (r.operation == AccountOperation::UserAdded && r.id == "0")
}

/// Fields every alert has, with the rule's severity and remediation.
fn alert(rule: Rule, description: String, event_count: u64) -> Alert {
    rule_alert(rule.def(), description, event_count)
}

/// Fields every alert has, from the rule's description (built-in or custom).
fn rule_alert(def: &RuleDef, description: String, event_count: u64) -> Alert {
    Alert {
        rule_id: def.id.clone(),
        severity: def.severity,
        description,
        remediation: def.remediation.clone(),
        title: Some(def.title.clone()),
        techniques: def.techniques.clone(),
        event_count,
        process_id: None,
        executable: None,
        command_line: None,
        user_id: None,
        user_name: None,
        remote_address: None,
        container_id: None,
        container_name: None,
        module_name: None,
        extra_details: ExtraDetails::new(),
    }
}

/// An `Anomaly`: what was not learned, in which scope, with the event that showed it.
fn anomaly_alert(d: &Deviation, event: &Event) -> Alert {
    let what = match d.kind {
        "exec" => "program run",
        "child" => "program started by",
        "connect" => "outbound destination",
        "listen" => "listening port",
        "login" => "login",
        _ => "kernel module loaded",
    };
    let mut a = alert(
        Rule::BehaviourAnomaly,
        format!("{what} not seen while learning ({}): {}", d.scope, d.value),
        1,
    );
    for (k, v) in [
        ("Anomaly", d.kind.to_string()),
        ("Scope", d.scope.clone()),
        ("Value", d.value.clone()),
        ("EventId", event.id.to_string()),
        ("EventKind", event.kind().name().to_string()),
    ] {
        a.extra_details.insert(k.into(), v);
    }
    if let Payload::ProcessCreate(v) = &event.payload
        && let Some(r) = v.iter().find(|r| d.value.ends_with(r.executable.as_str()))
    {
        process_evidence(&mut a, r);
    }
    a
}

fn process_alert(rule: Rule, r: &ProcessCreate, path: &str) -> Alert {
    let place = match r.extra_details.get("ContainerName") {
        Some(name) => format!(" in container {name}"),
        None if r.extra_details.contains_key("ContainerId") => " in a container".to_string(),
        None => String::new(),
    };
    let what = match rule {
        Rule::ExecFromMemory => "from an anonymous memory file",
        _ => "from a world-writable temporary directory",
    };
    let script = path != r.executable;
    let description = match script {
        false => format!("{path} was executed {what}{place}"),
        true => format!("script {path} was run by {} {what}{place}", r.executable),
    };
    let mut a = alert(rule, description, 1);
    if script {
        a.extra_details.insert("Script".into(), path.to_string());
    }
    process_evidence(&mut a, r);
    a
}

/// The process an alert is about: its pid, program, command line, user, parent and container.
fn process_evidence(a: &mut Alert, r: &ProcessCreate) {
    a.process_id = Some(r.process_id);
    a.executable = Some(r.executable.clone());
    a.command_line = Some(r.command_line.clone());
    a.user_id = Some(r.user_id.clone());
    a.user_name = r.user_name.clone();
    a.extra_details
        .insert("ParentProcessId".into(), r.parent_process_id.to_string());
    container_evidence(a, &r.extra_details);
}

/// The container a record's `ExtraDetails` names (the collectors' `ContainerId`, the enrich
/// stage's `ContainerName` and `ModuleName`), onto the alert.
fn container_evidence(a: &mut Alert, extra: &ExtraDetails) {
    let get = |k: &str| extra.get(k).cloned();
    a.container_id = get("ContainerId");
    a.container_name = get("ContainerName");
    a.module_name = get("ModuleName");
}

/// The alert for a shell exec'd into a running container, if `r` is one.
fn shell_exec(r: &ContainerEvent) -> Option<Alert> {
    if r.object_type != ContainerObject::Container || r.action != "exec_start" {
        return None;
    }
    let command = r.command.as_deref().filter(|c| is_shell_command(c))?;
    let name = r
        .container_name
        .as_deref()
        .or(r.container_id.as_deref())
        .unwrap_or("(unknown)");
    let mut a = alert(
        Rule::ShellInContainer,
        format!("a shell was started in running container {name}: {command}"),
        1,
    );
    a.command_line = Some(command.to_string());
    a.executable = command.split_whitespace().next().map(str::to_string);
    a.container_id = r.container_id.clone();
    a.container_name = r.container_name.clone();
    a.module_name = r.module_name.clone();
    if let Some(image) = &r.image {
        a.extra_details
            .insert("ContainerImage".into(), image.clone());
    }
    Some(a)
}

fn brute_force_alert(r: &Login, source: &str, origin: &str, count: u64, window: Duration) -> Alert {
    let within = match window.as_secs() {
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    };
    let mut a = alert(
        Rule::LoginBruteForce,
        format!("{count} failed logins from {origin} recorded by {source} within {within}"),
        count,
    );
    a.remote_address = r.remote_address;
    a.user_name = r.user_name.clone();
    a.user_id = r.user_id.clone();
    a.executable = Some(r.executable.clone());
    a.extra_details.insert("Source".into(), source.to_string());
    a.extra_details
        .insert("LastOperation".into(), r.operation.clone());
    a
}

fn uid0_alert(r: &UserChange) -> Alert {
    let what = match r.operation {
        AccountOperation::UserAdded => "was added with uid 0",
        _ => "was changed to uid 0",
    };
    let mut a = alert(
        Rule::Uid0AccountAdded,
        format!("account {} {what}", r.name),
        1,
    );
    a.user_name = Some(r.name.clone());
    a.user_id = Some(r.id.clone());
    if let Some(d) = &r.details {
        a.extra_details.insert("Details".into(), d.clone());
    }
    a
}

/// Longest command line or summary put into a data rule's description (the full command line
/// is in `CommandLine`).
const MAX_SUMMARY: usize = 256;

/// The alert of a data rule: its title, what matched (the record's key fields), and the
/// matched event's id and kind as evidence.
fn data_alert(def: &RuleDef, rec: Rec<'_>, event: &Event, count: u64) -> Alert {
    let mut a = rule_alert(def, String::new(), count);
    let place = |extra: &ExtraDetails| match (extra.get("ContainerName"), extra.get("ContainerId"))
    {
        (Some(name), _) => format!(" in container {name}"),
        (None, Some(_)) => " in a container".to_string(),
        (None, None) => String::new(),
    };
    let details = |a: &mut Alert, pairs: &[(&str, Option<String>)]| {
        for (k, v) in pairs {
            if let Some(v) = v {
                a.extra_details.insert((*k).into(), v.clone());
            }
        }
    };
    let summary = match rec {
        Rec::Process(r) => {
            process_evidence(&mut a, r);
            let user = r.user_name.as_deref().unwrap_or(&r.user_id);
            format!(
                "{} (process {}, user {user}){}",
                r.command_line,
                r.process_id,
                place(&r.extra_details)
            )
        }
        Rec::Terminate(r) => {
            a.process_id = Some(r.process_id);
            a.executable = Some(r.executable.clone());
            details(&mut a, &[("ExitStatus", Some(r.exit_status.to_string()))]);
            format!("{} exited with {}", r.executable, r.exit_status)
        }
        Rec::Connection(r) => {
            a.process_id = Some(r.process_id);
            a.executable = Some(r.executable.clone());
            a.command_line = r.command_line.clone();
            a.user_id = r.user_id.clone();
            a.remote_address = Some(r.remote_address);
            container_evidence(&mut a, &r.extra_details);
            details(
                &mut a,
                &[
                    ("RemotePort", Some(r.remote_port.to_string())),
                    ("Protocol", Some(r.protocol.clone())),
                ],
            );
            format!(
                "{} connected to {} port {}{}",
                r.executable,
                r.remote_address,
                r.remote_port,
                place(&r.extra_details)
            )
        }
        Rec::Login(r) => {
            a.process_id = Some(r.process_id);
            a.executable = Some(r.executable.clone());
            a.user_id = r.user_id.clone();
            a.user_name = r.user_name.clone();
            a.remote_address = r.remote_address;
            details(&mut a, &[("Operation", Some(r.operation.clone()))]);
            let user = r.user_name.as_deref().unwrap_or("(unknown)");
            format!("{} by {user}", r.operation)
        }
        Rec::User(r) => {
            a.user_name = Some(r.name.clone());
            a.user_id = Some(r.id.clone());
            let op = format!("{:?}", r.operation);
            details(
                &mut a,
                &[
                    ("Operation", Some(op.clone())),
                    ("Details", r.details.clone()),
                ],
            );
            format!("{op} {} (id {})", r.name, r.id)
        }
        Rec::Container(r) => {
            a.container_id = r.container_id.clone();
            a.container_name = r.container_name.clone();
            a.module_name = r.module_name.clone();
            a.command_line = r.command.clone();
            details(
                &mut a,
                &[
                    ("Action", Some(r.action.clone())),
                    ("ContainerImage", r.image.clone()),
                    ("ImageId", r.image_digest.clone()),
                ],
            );
            for k in [
                "Privileges",
                "PrivilegesGained",
                "PreviousImageId",
                "PreviousContainerId",
                "IotEdgeOwner",
            ] {
                details(&mut a, &[(k, r.extra_details.get(k).cloned())]);
            }
            let name = r.container_name.as_deref().or(r.container_id.as_deref());
            format!("{} of container {}", r.action, name.unwrap_or("(unknown)"))
        }
        Rec::Firewall(r) => {
            details(
                &mut a,
                &[
                    ("Operation", Some(r.operation.clone())),
                    ("Family", Some(r.family.clone())),
                    ("Table", Some(r.table.clone())),
                    ("Chain", r.chain.clone()),
                    ("Count", Some(r.count.to_string())),
                ],
            );
            for k in ["ProcessId", "ProcessName", "Backend"] {
                details(&mut a, &[(k, r.extra_details.get(k).cloned())]);
            }
            format!(
                "{} {} {} ({} objects)",
                r.operation, r.family, r.table, r.count
            )
        }
        Rec::Software(r) => {
            let op = format!("{:?}", r.operation);
            details(
                &mut a,
                &[
                    ("Operation", Some(op.clone())),
                    ("Package", Some(r.name.clone())),
                    ("Version", Some(r.version.clone())),
                    ("PreviousVersion", r.previous_version.clone()),
                    ("PackageManager", Some(r.package_manager.clone())),
                ],
            );
            format!("{op} {} {} ({})", r.name, r.version, r.package_manager)
        }
        Rec::File(r) => {
            let op = format!("{:?}", r.operation);
            details(
                &mut a,
                &[
                    ("Path", Some(r.path.clone())),
                    ("Operation", Some(op.clone())),
                    ("OwnerId", r.owner_id.clone()),
                    ("Mode", r.mode.clone()),
                    ("HashBefore", r.hash_before.clone()),
                    ("HashAfter", r.hash_after.clone()),
                ],
            );
            a.user_name = r.owner_name.clone();
            for k in [
                "ModeBefore",
                "SetuidGained",
                "SetgidGained",
                "CapabilitiesGained",
                "RenamedFrom",
                "ProcessId",
                "ProcessName",
                "ContainerId",
            ] {
                details(&mut a, &[(k, r.extra_details.get(k).cloned())]);
            }
            format!("{op} {}", r.path)
        }
        Rec::Module(r) => {
            let action = format!("{:?}", r.action);
            details(
                &mut a,
                &[
                    ("Module", Some(r.name.clone())),
                    ("Action", Some(action.clone())),
                    ("Size", r.size.map(|n| n.to_string())),
                ],
            );
            for k in ["Source", "Taint", "Unsigned", "OutOfTree", "Proprietary"] {
                details(&mut a, &[(k, r.extra_details.get(k).cloned())]);
            }
            format!("kernel module {} {}", r.name, action.to_lowercase())
        }
        Rec::Hardware(r) => {
            details(
                &mut a,
                &[
                    ("HardwareCategory", Some(r.hardware_category.clone())),
                    ("HardwareSubCategory", Some(r.hardware_sub_category.clone())),
                    ("HardwareName", Some(r.hardware_name.clone())),
                ],
            );
            for k in [
                "Action",
                "Bus",
                "VendorId",
                "ProductId",
                "SerialNumber",
                "DevicePath",
                "InterfaceClasses",
            ] {
                details(&mut a, &[(k, r.extra_details.get(k).cloned())]);
            }
            let action = r.extra_details.get("Action").map_or("Seen", |s| s.as_str());
            format!(
                "{action} {} ({} / {})",
                r.hardware_name, r.hardware_category, r.hardware_sub_category
            )
        }
    };
    let summary = match summary.char_indices().nth(MAX_SUMMARY) {
        Some((at, _)) => format!("{}…", &summary[..at]),
        None => summary,
    };
    a.description = format!("{}: {summary}", def.title);
    a.extra_details
        .insert("EventId".into(), event.id.to_string());
    a.extra_details
        .insert("EventKind".into(), event.payload.kind().name().to_string());
    a
}

#[cfg(test)]
mod tests;
