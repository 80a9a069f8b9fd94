//! The rule catalog: every rule's metadata, and the match language of the data rules.
//!
//! The built-in catalog is `rules.json` next to this file, compiled in and parsed once (on first
//! use, which is the agent's start: the metrics registry lists every rule). A test proves it
//! valid, so the `expect` in [`catalog`] cannot fire in a released build. Code rules (the five
//! hand-written ones in `mod.rs`) have an entry with `"code": true` and no match, so titles,
//! severities and techniques of all rules are reviewed in one place; they come first, in
//! [`Rule`]'s constant order.
//!
//! Data rules name the event kind they read and a condition over the fields of its records,
//! named as in the JSON payload (`CommandLine`, `UserId`, `ExtraDetails.ContainerId`) plus
//! `Program` (the executable's file name, or for busybox/toybox the applet it runs). Conditions
//! are compiled once: needles lower-cased for `nocase`, CIDRs parsed, field names checked
//! against the kind. Rules are indexed by kind and, when their condition requires one of a few
//! program names, by that name, so an ordinary exec is tested against a handful of rules only.
//! See docs/detection.md for the language.

use super::Rule;
use crate::event::{
    BaselineSeverity, ConnectedHardware, ConnectionCreate, ContainerEvent, EventKind, ExtraDetails,
    FileChange, FirewallChange, KernelModule, Login, ProcessCreate, ProcessTerminate,
    SoftwareChange, UserChange,
};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Rules in one catalog: code rules plus data rules. A rule index is a `u16`.
pub const MAX_RULES: usize = 512;
/// Keys a correlation rule (threshold or sequence) tracks at once; when full, the entries whose
/// window has passed are dropped, then the one seen longest ago.
pub const MAX_CORRELATION_KEYS: usize = 1024;
/// Longest correlation window a rule may ask for.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);
/// Largest threshold count (the per-key times kept are bounded by it).
pub const MAX_THRESHOLD: usize = 1000;
/// Longest needle list, and deepest nesting of `all`/`any`/`not`, one rule may have.
const MAX_VALUES: usize = 256;
const MAX_DEPTH: usize = 8;

/// The ids of the code rules, in [`Rule`]'s constant order.
pub(super) const CODE_RULES: [&str; 9] = [
    "exec-from-temp-dir",
    "exec-from-memory",
    "shell-in-container",
    "login-brute-force",
    "uid0-account-added",
    "process-not-allowed",
    "connection-not-allowed",
    "login-not-allowed",
    "behaviour-anomaly",
];

/// The built-in catalog, parsed on first use.
pub fn catalog() -> &'static Catalog {
    static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
        Catalog::parse(include_str!("rules.json"))
            .expect("the built-in rule catalog is valid (src/detect/tests.rs proves it)")
    });
    &CATALOG
}

/// Custom rules `detectionCustomRules` may hold. With the built-in ones they stay within
/// [`MAX_RULES`]; each is bounded by the catalog's own limits (256 values per list, conditions
/// nested 8 deep, windows of at most an hour, thresholds of at most 1000), and all of them
/// together by the twin's size (IoT Hub: 32 KB of desired properties).
pub const MAX_CUSTOM_RULES: usize = 64;

/// The custom rules of the twin (`detectionCustomRules`): data rules in the format of
/// `rules.json`, compiled into a catalog of their own that the [`super::Detector`] tries after
/// the built-in one. Built once per twin change, shared (an `Arc`) by every copy of the
/// configuration; two sets are equal when their rule objects are.
#[derive(Debug, Clone, Default)]
pub struct CustomRules {
    /// The rule objects accepted, as given: the reported view shows them.
    source: Vec<Value>,
    /// Their catalog; `None` when there are none.
    catalog: Option<Arc<Catalog>>,
}

impl PartialEq for CustomRules {
    fn eq(&self, other: &CustomRules) -> bool {
        self.source == other.source
    }
}

impl CustomRules {
    /// Compiles the rules of a list, each alone: a bad one is left out with a message naming
    /// it and saying why, the others are kept. A rule is bad when it does not parse, is a code
    /// rule (`"code": true`: those are built in), has the id of a built-in rule or of a custom
    /// rule before it, or comes after the first [`MAX_CUSTOM_RULES`].
    pub fn parse(list: &[Value]) -> (CustomRules, Vec<String>) {
        let first = catalog().rules.len();
        let mut errors = Vec::new();
        let mut source = Vec::new();
        let mut defs: Vec<RuleDef> = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let name = match v.get("id").and_then(Value::as_str) {
                Some(id) => format!("rule {:?}", crate::text::shorten(id, 64)),
                None => format!("rule #{}", i + 1),
            };
            let checked = rule_def(v).and_then(|def| {
                if def.data.is_none() {
                    return Err(
                        "code rules are built in; a custom rule needs a `kind` and a `match`"
                            .into(),
                    );
                }
                if Rule::from_id(&def.id).is_some() {
                    return Err("a built-in rule has this id".into());
                }
                if defs.iter().any(|d| d.id == def.id) {
                    return Err("an earlier custom rule has this id".into());
                }
                if defs.len() >= MAX_CUSTOM_RULES {
                    return Err(format!("at most {MAX_CUSTOM_RULES} custom rules"));
                }
                // Compiled alone first, so what fails to build is this rule's fault.
                Catalog::build(vec![def], first)?;
                rule_def(v)
            });
            match checked {
                Ok(def) => {
                    defs.push(def);
                    source.push(v.clone());
                }
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        if defs.is_empty() {
            return (CustomRules::default(), errors);
        }
        match Catalog::build(defs, first) {
            Ok(c) => {
                let catalog = Some(Arc::new(c));
                (CustomRules { source, catalog }, errors)
            }
            Err(e) => {
                errors.push(format!("the custom rules together: {e}"));
                (CustomRules::default(), errors)
            }
        }
    }

    /// The rule objects in use, as given.
    pub fn source(&self) -> &[Value] {
        &self.source
    }

    /// The ids of the rules in use.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.catalog
            .iter()
            .flat_map(|c| c.rules.iter().map(|r| r.id.as_str()))
    }

    /// Their compiled catalog, `None` when there are none.
    pub fn catalog(&self) -> Option<&Arc<Catalog>> {
        self.catalog.as_ref()
    }
}

/// One rule's description, as alerts, metrics and docs show it.
#[derive(Debug)]
pub struct RuleDef {
    pub id: String,
    pub title: String,
    pub severity: BaselineSeverity,
    /// MITRE ATT&CK technique ids (`T1070.003`).
    pub techniques: Vec<String>,
    pub description: String,
    pub remediation: String,
    /// `None` for a code rule.
    pub data: Option<DataRule>,
}

/// What a data rule matches, and how matches are correlated.
#[derive(Debug)]
pub struct DataRule {
    pub kind: EventKind,
    pub cond: Cond,
    /// Fields whose values make the subject of its suppression.
    pub subject: Vec<Field>,
    pub correlation: Correlation,
}

#[derive(Debug)]
pub enum Correlation {
    /// Every match alerts.
    None,
    /// `count` matches with the same `key` within `window`.
    Threshold {
        count: usize,
        window: Duration,
        key: Field,
    },
    /// A match of the rule's condition, then one of `then` with the same `key` within `window`.
    Sequence {
        then: Cond,
        window: Duration,
        key: Field,
    },
}

/// A compiled condition.
#[derive(Debug)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    Leaf { field: Field, op: Op, nocase: bool },
}

/// A field of a record: a top-level one (a name from the kind's list), one of its
/// `ExtraDetails`, or the virtual `Program`.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Top(&'static str),
    Extra(Box<str>),
    Program,
}

#[derive(Debug)]
pub enum Op {
    Equals(Vec<Box<str>>),
    Prefix(Vec<Box<str>>),
    Suffix(Vec<Box<str>>),
    Contains(Vec<Needle>),
    Glob(Vec<Glob>),
    /// A whole word or phrase (bounded by the start, the end, white space or shell
    /// punctuation); a needle with `*` or `?` is a glob matched against each word.
    Word(Vec<WordNeedle>),
    Cidr(Vec<(IpAddr, u8)>),
    Num(Cmp, f64),
    Exists(bool),
    /// A case-sensitive `equals`/`in` on `Program`, numbered when the catalog is built: the
    /// names, and a bit per program number.
    Programs {
        names: Vec<Box<str>>,
        bits: Vec<u64>,
    },
}

/// A glob pattern, with its longest literal run: a text without that run cannot match, and
/// `str::contains` says so much faster than the glob walk (most texts fail there).
#[derive(Debug)]
pub struct Glob {
    pattern: Box<str>,
    literal: Box<str>,
    /// The literal's byte pairs.
    grams: Grams,
    shape: Shape,
}

/// Most catalog globs are one literal with a star on one side or both (`*/nginx`, `--output=*`,
/// `*--vacuum*`): those are a suffix, prefix or substring test, one compare instead of a
/// substring search and then the glob walk. Measured on the detector benchmark (issue 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// No wildcard: the literal is the whole pattern.
    Exact,
    /// `lit*`.
    Prefix,
    /// `*lit`.
    Suffix,
    /// `*lit*`.
    Contains,
    /// Anything else: the literal's search, then the glob walk.
    General,
}

impl Shape {
    fn of(pattern: &str) -> Shape {
        if pattern.contains('?') {
            return Shape::General;
        }
        let lead = pattern.starts_with('*');
        let trail = pattern.len() > usize::from(lead) && pattern.ends_with('*');
        let inner = &pattern[usize::from(lead)..pattern.len() - usize::from(trail)];
        match (inner.contains('*'), lead, trail) {
            (true, _, _) => Shape::General,
            (false, false, false) => Shape::Exact,
            (false, false, true) => Shape::Prefix,
            (false, true, false) => Shape::Suffix,
            (false, true, true) => Shape::Contains,
        }
    }
}

/// A literal searched for, with its byte pairs.
#[derive(Debug)]
pub struct Needle {
    text: Box<str>,
    grams: Grams,
}

impl Needle {
    fn new(text: Box<str>) -> Needle {
        Needle {
            grams: Grams::of(text.as_bytes()),
            text,
        }
    }
}

/// The set of (ASCII lower-cased) byte pairs in a text, hashed into 512 bits: a needle none of
/// whose pairs is missing from a command line's set may be in it, one with a pair missing is
/// not. A command line's set is built once per record (about a nanosecond a byte) and then
/// rejects most of the needles of the rules tried on it with eight word compares instead of a
/// substring search each: nearly every exec is ordinary, and nearly every needle absent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Grams([u64; 8]);

impl Grams {
    pub fn of(text: &[u8]) -> Grams {
        let mut g = Grams::default();
        let Some((first, rest)) = text.split_first() else {
            return g;
        };
        let mut prev = first.to_ascii_lowercase() as u32;
        for b in rest {
            let b = b.to_ascii_lowercase() as u32;
            let bit = ((prev << 8 | b).wrapping_mul(0x9E37_79B1) >> 23) as usize;
            g.0[bit >> 6] |= 1 << (bit & 63);
            prev = b;
        }
        g
    }

    /// Whether every pair of `needle` is in `self` (a text shorter than 2 bytes has none).
    fn covers(&self, needle: &Grams) -> bool {
        self.0.iter().zip(&needle.0).all(|(h, n)| h & n == *n)
    }
}

impl Glob {
    fn new(pattern: &str) -> Glob {
        let literal = pattern
            .split(['*', '?'])
            .max_by_key(|run| run.len())
            .unwrap_or_default();
        Glob {
            pattern: pattern.into(),
            literal: literal.into(),
            grams: Grams::of(literal.as_bytes()),
            shape: Shape::of(pattern),
        }
    }

    fn matches(&self, text: &str) -> bool {
        let lit = &*self.literal;
        match self.shape {
            Shape::Exact => text == lit,
            Shape::Prefix => text.starts_with(lit),
            Shape::Suffix => text.ends_with(lit),
            Shape::Contains => text.contains(lit),
            Shape::General => text.contains(lit) && glob(self.pattern.as_bytes(), text.as_bytes()),
        }
    }

    /// Whether a word of `text` (split at white space) matches.
    fn matches_a_word_of(&self, text: &str) -> bool {
        text.contains(&*self.literal)
            && text
                .split(|c: char| c.is_ascii_whitespace())
                .any(|w| match self.shape {
                    Shape::General => glob(self.pattern.as_bytes(), w.as_bytes()),
                    _ => self.matches(w),
                })
    }
}

/// A `word` needle: a literal word or phrase, or a glob tried on each word.
#[derive(Debug)]
pub enum WordNeedle {
    Phrase(Needle),
    Glob(Glob),
}

#[derive(Debug, Clone, Copy)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

/// The catalog: rules in index order, and the data rules indexed by kind.
#[derive(Debug)]
pub struct Catalog {
    pub rules: Vec<RuleDef>,
    /// The index of the first rule: 0 for the built-in catalog; a custom catalog's rules are
    /// numbered after the built-in ones, so per-rule state is one vector for both.
    pub(super) first: usize,
    /// Per event kind (by discriminant): which data rules to try.
    pub(super) kinds: Vec<KindRules>,
    /// Every program name a `Program` test lists, numbered: a record's program names are looked
    /// up once, and each test is then a bit test instead of a scan of its list.
    programs: HashMap<Box<str>, u16>,
}

/// The data rules of one kind: those that require one of a few program names, by name, and the
/// others, tried on every record.
#[derive(Debug, Default)]
pub(super) struct KindRules {
    /// By program number ([`Catalog`]'s `programs`).
    pub by_program: Vec<Vec<Rule>>,
    pub always: Vec<Rule>,
}

impl KindRules {
    pub fn is_empty(&self) -> bool {
        self.by_program.is_empty() && self.always.is_empty()
    }

    /// The rules gated on this program number.
    pub fn gated(&self, program: Option<u16>) -> &[Rule] {
        program
            .and_then(|p| self.by_program.get(p as usize))
            .map_or(&[], Vec::as_slice)
    }
}

/// The kinds data rules may read, with their fields (as in the JSON payload).
const KINDS: &[(EventKind, &[&str])] = &[
    (
        EventKind::ProcessCreate,
        &[
            "Executable",
            "CommandLine",
            "Arguments",
            "ProcessId",
            "ParentProcessId",
            "UserId",
            "UserName",
        ],
    ),
    (
        EventKind::ProcessTerminate,
        &["Executable", "ProcessId", "ExitStatus"],
    ),
    (
        EventKind::ConnectionCreate,
        &[
            "RemoteAddress",
            "RemotePort",
            "LocalAddress",
            "LocalPort",
            "Direction",
            "Protocol",
            "ProcessId",
            "UserId",
            "Executable",
            "CommandLine",
            "Arguments",
        ],
    ),
    (
        EventKind::Login,
        &[
            "ProcessId",
            "UserId",
            "UserName",
            "Operation",
            "Executable",
            "RemoteAddress",
            "RemotePort",
            "LocalPort",
            "Result",
        ],
    ),
    (
        EventKind::UserChange,
        &["Operation", "Name", "Id", "Details"],
    ),
    (
        EventKind::ContainerEvent,
        &[
            "Action",
            "ObjectType",
            "ContainerId",
            "ContainerName",
            "Image",
            "ImageDigest",
            "ModuleName",
            "ExitCode",
            "Command",
            "Signal",
        ],
    ),
    (
        EventKind::FirewallChange,
        &["Operation", "Family", "Table", "Chain", "Count"],
    ),
    (
        EventKind::SoftwareChange,
        &[
            "Operation",
            "Name",
            "Version",
            "PreviousVersion",
            "Architecture",
            "PackageManager",
        ],
    ),
    (
        EventKind::FileChange,
        &[
            "Path",
            "Operation",
            "OwnerId",
            "OwnerName",
            "Mode",
            "Size",
            "HashBefore",
            "HashAfter",
        ],
    ),
    (EventKind::KernelModule, &["Name", "Action", "Size"]),
    (
        EventKind::ConnectedHardware,
        &["HardwareCategory", "HardwareSubCategory", "HardwareName"],
    ),
];

/// The fields of a kind data rules may read; `None` if they cannot read it.
pub fn kind_fields(kind: EventKind) -> Option<&'static [&'static str]> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f)
}

/// Whether `Program` exists for the kind (it has an executable and a command line).
fn has_program(kind: EventKind) -> bool {
    matches!(kind, EventKind::ProcessCreate | EventKind::ConnectionCreate)
}

/// The default suppression subject of a kind: what makes two matches "the same thing".
fn default_subject(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::ProcessCreate => &["ExtraDetails.ContainerId", "CommandLine"],
        EventKind::ProcessTerminate => &["Executable"],
        EventKind::ConnectionCreate => &["Executable", "RemoteAddress", "RemotePort"],
        EventKind::Login => &["RemoteAddress", "UserName"],
        EventKind::UserChange => &["Operation", "Name"],
        EventKind::ContainerEvent => &["ContainerId", "Action"],
        EventKind::FirewallChange => &["Operation", "Family", "Table", "Chain"],
        EventKind::SoftwareChange => &["Operation", "Name", "Version"],
        EventKind::FileChange => &["Path", "Operation"],
        EventKind::KernelModule => &["Name", "Action"],
        EventKind::ConnectedHardware => &["ExtraDetails.DevicePath", "HardwareName"],
        _ => &[],
    }
}

impl Catalog {
    /// Parses and compiles a catalog: a JSON array of rules. The first entries must be the code
    /// rules, in order; ids must be unique.
    pub fn parse(text: &str) -> Result<Catalog, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let list = value.as_array().ok_or("expected an array of rules")?;
        if list.len() > MAX_RULES {
            return Err(format!("{} rules, at most {MAX_RULES}", list.len()));
        }
        let mut rules = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let def = rule_def(v).map_err(|e| {
                let id = v.get("id").and_then(Value::as_str).unwrap_or("?");
                format!("rule {i} ({id}): {e}")
            })?;
            match CODE_RULES.get(i) {
                Some(id) if def.id != *id || def.data.is_some() => {
                    return Err(format!("rule {i} must be code rule {id}, is {}", def.id));
                }
                None if def.data.is_none() => {
                    return Err(format!("rule {i} ({}): unknown code rule", def.id));
                }
                _ => {}
            }
            if rules.iter().any(|r: &RuleDef| r.id == def.id) {
                return Err(format!("rule {i}: duplicate id {}", def.id));
            }
            rules.push(def);
        }
        if rules.len() < CODE_RULES.len() {
            return Err("the code rules are missing".into());
        }
        Catalog::build(rules, 0)
    }

    /// Numbers the `Program` lists and indexes the data rules by kind and program; the rules
    /// are numbered from `first` on (a custom catalog's follow the built-in ones).
    fn build(mut rules: Vec<RuleDef>, first: usize) -> Result<Catalog, String> {
        if first + rules.len() > MAX_RULES {
            return Err(format!(
                "{} rules, at most {MAX_RULES}",
                first + rules.len()
            ));
        }
        let mut programs = HashMap::new();
        for def in &mut rules {
            let Some(data) = &mut def.data else { continue };
            number_programs(&mut data.cond, &mut programs)?;
            if let Correlation::Sequence { then, .. } = &mut data.correlation {
                number_programs(then, &mut programs)?;
            }
        }
        let mut kinds: Vec<KindRules> = EventKind::ALL.iter().map(|_| Default::default()).collect();
        for (i, def) in rules.iter().enumerate() {
            let Some(data) = &def.data else { continue };
            let rule = Rule((first + i) as u16);
            let slot = &mut kinds[data.kind as usize];
            let gate = match &data.correlation {
                Correlation::Sequence { then, .. } => {
                    gate(&data.cond).zip(gate(then)).map(|(mut a, b)| {
                        a.extend(b);
                        a
                    })
                }
                _ => gate(&data.cond),
            };
            match gate {
                Some(mut names) => {
                    names.sort();
                    names.dedup();
                    for name in names {
                        let id = programs[name] as usize;
                        if slot.by_program.len() <= id {
                            slot.by_program.resize(id + 1, Vec::new());
                        }
                        slot.by_program[id].push(rule);
                    }
                }
                None => slot.always.push(rule),
            }
        }
        Ok(Catalog {
            rules,
            first,
            kinds,
            programs,
        })
    }

    /// The rule's description, if the rule is in this catalog.
    pub fn def(&self, rule: Rule) -> Option<&RuleDef> {
        self.rules.get(rule.index().wrapping_sub(self.first))
    }

    /// The numbers of a record's program names ([`Rec::programs`]), where some test lists them.
    pub(super) fn program_ids(&self, names: &[Option<&str>; 2]) -> [Option<u16>; 2] {
        names.map(|n| n.and_then(|n| self.programs.get(n).copied()))
    }
}

/// Numbers the names of the condition's `Program` lists (case-sensitive `equals`/`in`) and
/// turns each list into a bit set of those numbers.
fn number_programs(c: &mut Cond, ids: &mut HashMap<Box<str>, u16>) -> Result<(), String> {
    match c {
        Cond::All(cs) | Cond::Any(cs) => cs.iter_mut().try_for_each(|c| number_programs(c, ids)),
        Cond::Not(c) => number_programs(c, ids),
        Cond::Leaf {
            field: Field::Program,
            op,
            nocase: false,
        } => {
            let Op::Equals(names) = op else { return Ok(()) };
            let mut bits = Vec::new();
            for name in names.iter() {
                let next = u16::try_from(ids.len()).map_err(|_| "too many program names")?;
                let id = *ids.entry(name.clone()).or_insert(next) as usize;
                if bits.len() <= id / 64 {
                    bits.resize(id / 64 + 1, 0u64);
                }
                bits[id / 64] |= 1 << (id % 64);
            }
            let names = std::mem::take(names);
            *op = Op::Programs { names, bits };
            Ok(())
        }
        Cond::Leaf { .. } => Ok(()),
    }
}

/// Program names a condition requires one of, if it does: the rule is then only tried on
/// records of those programs.
fn gate(c: &Cond) -> Option<Vec<&str>> {
    match c {
        Cond::Leaf {
            op: Op::Programs { names, .. },
            ..
        } => Some(names.iter().map(|n| &**n).collect()),
        Cond::All(cs) => cs.iter().find_map(gate),
        Cond::Any(cs) => cs.iter().try_fold(Vec::new(), |mut all, c| {
            all.extend(gate(c)?);
            Some(all)
        }),
        _ => None,
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str, String> {
    match v.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        _ => Err(format!("`{key}` must be a non-empty string")),
    }
}

fn rule_def(v: &Value) -> Result<RuleDef, String> {
    let obj = v.as_object().ok_or("a rule must be an object")?;
    const KEYS: [&str; 12] = [
        "id",
        "title",
        "severity",
        "techniques",
        "description",
        "remediation",
        "code",
        "kind",
        "match",
        "subject",
        "threshold",
        "sequence",
    ];
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown key `{k}`"));
    }
    let id = text(v, "id")?;
    if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || id.len() > 64
    {
        return Err("`id` must be lower-case letters, digits and dashes (at most 64)".into());
    }
    let severity = serde_json::from_value(v.get("severity").cloned().unwrap_or_default())
        .map_err(|_| "`severity` must be Critical, Important, Warning or Informational")?;
    let techniques = match v.get("techniques") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|t| match t.as_str() {
                Some(t) if is_technique(t) => Ok(t.to_string()),
                _ => Err(format!("bad technique {t} (expected T1234 or T1234.001)")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
        _ => return Err("`techniques` must be an array of ATT&CK ids".into()),
    };
    let code = match v.get("code") {
        None => false,
        Some(Value::Bool(b)) => *b,
        _ => return Err("`code` must be true or false".into()),
    };
    let data = match code {
        true => {
            if ["kind", "match", "subject", "threshold", "sequence"]
                .iter()
                .any(|k| obj.contains_key(*k))
            {
                return Err("a code rule has no kind, match or correlation".into());
            }
            None
        }
        false => Some(data_rule(v)?),
    };
    Ok(RuleDef {
        id: id.to_string(),
        title: text(v, "title")?.to_string(),
        severity,
        techniques,
        description: text(v, "description")?.to_string(),
        remediation: text(v, "remediation")?.to_string(),
        data,
    })
}

/// `T1234` or `T1234.001`.
fn is_technique(t: &str) -> bool {
    let b = t.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 => b[0] == b'T' && digits(&b[1..]),
        9 => b[0] == b'T' && digits(&b[1..5]) && b[5] == b'.' && digits(&b[6..]),
        _ => false,
    }
}

fn data_rule(v: &Value) -> Result<DataRule, String> {
    let kind_name = text(v, "kind")?;
    let kind = EventKind::from_name(kind_name)
        .filter(|k| kind_fields(*k).is_some())
        .ok_or_else(|| {
            let known: Vec<_> = KINDS.iter().map(|(k, _)| k.name()).collect();
            format!("`kind` {kind_name} is not one of {}", known.join(", "))
        })?;
    let matcher = cond(kind, v.get("match").ok_or("`match` is missing")?, 0)?;
    let subject = match v.get("subject") {
        None => default_subject(kind)
            .iter()
            .map(|f| field(kind, f))
            .collect::<Result<_, _>>()?,
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= 8 => list
            .iter()
            .map(|f| field(kind, f.as_str().ok_or("`subject` must list field names")?))
            .collect::<Result<_, _>>()?,
        _ => return Err("`subject` must be a list of 1 to 8 field names".into()),
    };
    let window = |c: &Value| -> Result<Duration, String> {
        let secs = c.get("within_secs").and_then(Value::as_u64).unwrap_or(0);
        let d = Duration::from_secs(secs);
        if d.is_zero() || d > MAX_WINDOW {
            return Err(format!(
                "`within_secs` must be from 1 to {}",
                MAX_WINDOW.as_secs()
            ));
        }
        Ok(d)
    };
    let key = |c: &Value| field(kind, text(c, "key")?);
    let correlation = match (v.get("threshold"), v.get("sequence")) {
        (None, None) => Correlation::None,
        (Some(t), None) => {
            let count = t.get("count").and_then(Value::as_u64).unwrap_or(0) as usize;
            if !(2..=MAX_THRESHOLD).contains(&count) {
                return Err(format!(
                    "threshold `count` must be from 2 to {MAX_THRESHOLD}"
                ));
            }
            Correlation::Threshold {
                count,
                window: window(t)?,
                key: key(t)?,
            }
        }
        (None, Some(s)) => Correlation::Sequence {
            then: cond(kind, s.get("then").ok_or("sequence `then` is missing")?, 0)?,
            window: window(s)?,
            key: key(s)?,
        },
        (Some(_), Some(_)) => return Err("a rule has a threshold or a sequence, not both".into()),
    };
    Ok(DataRule {
        kind,
        cond: matcher,
        subject,
        correlation,
    })
}

fn field(kind: EventKind, name: &str) -> Result<Field, String> {
    if let Some(extra) = name.strip_prefix("ExtraDetails.") {
        if extra.is_empty() {
            return Err("`ExtraDetails.` needs a key".into());
        }
        return Ok(Field::Extra(extra.into()));
    }
    if name == "Program" && has_program(kind) {
        return Ok(Field::Program);
    }
    let fields = kind_fields(kind).unwrap_or_default();
    fields
        .iter()
        .find(|f| **f == name)
        .map(|f| Field::Top(f))
        .ok_or_else(|| {
            let program = if has_program(kind) { ", Program" } else { "" };
            format!(
                "{kind} has no field {name} (known: {}{program}, ExtraDetails.X)",
                fields.join(", ")
            )
        })
}

const OPS: [&str; 14] = [
    "equals", "in", "prefix", "suffix", "contains", "glob", "word", "cidr", "gt", "ge", "lt", "le",
    "exists", "nocase",
];

fn cond(kind: EventKind, v: &Value, depth: usize) -> Result<Cond, String> {
    if depth > MAX_DEPTH {
        return Err(format!("conditions nested deeper than {MAX_DEPTH}"));
    }
    let obj = v.as_object().ok_or("a condition must be an object")?;
    let list = |x: &Value| -> Result<Vec<Cond>, String> {
        match x.as_array() {
            Some(l) if !l.is_empty() && l.len() <= MAX_VALUES => {
                l.iter().map(|c| cond(kind, c, depth + 1)).collect()
            }
            _ => Err(format!(
                "`all`/`any` need a list of 1 to {MAX_VALUES} conditions"
            )),
        }
    };
    if obj.len() == 1 {
        if let Some(x) = obj.get("all") {
            return Ok(Cond::All(list(x)?));
        }
        if let Some(x) = obj.get("any") {
            return Ok(Cond::Any(list(x)?));
        }
        if let Some(x) = obj.get("not") {
            return Ok(Cond::Not(Box::new(cond(kind, x, depth + 1)?)));
        }
    }
    let name = obj
        .get("field")
        .and_then(Value::as_str)
        .ok_or("a condition is `all`, `any`, `not`, or has a `field`")?;
    let field = field(kind, name)?;
    let nocase = match obj.get("nocase") {
        None => false,
        Some(Value::Bool(b)) => *b,
        _ => return Err("`nocase` must be true or false".into()),
    };
    let ops: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "field" && *k != "nocase")
        .collect();
    let [op] = ops.as_slice() else {
        return Err(format!(
            "condition on {name} needs exactly one operator of {}",
            OPS[..13].join(", ")
        ));
    };
    let op = *op;
    let arg = &obj[op];
    let needles = || -> Result<Vec<Box<str>>, String> {
        let raw: Vec<&str> = match arg {
            Value::String(s) => vec![s],
            Value::Array(l) if !l.is_empty() && l.len() <= MAX_VALUES => l
                .iter()
                .map(|x| x.as_str().ok_or(format!("`{op}` takes strings")))
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(format!(
                    "`{op}` takes a string or a list of 1 to {MAX_VALUES} strings"
                ));
            }
        };
        if raw.iter().any(|s| s.is_empty()) {
            return Err(format!("`{op}` with an empty string"));
        }
        Ok(raw
            .into_iter()
            .map(|s| match nocase {
                true => s.to_ascii_lowercase().into(),
                false => s.into(),
            })
            .collect())
    };
    let number = || arg.as_f64().ok_or_else(|| format!("`{op}` takes a number"));
    let op = match op {
        "equals" | "in" => Op::Equals(needles()?),
        "prefix" => Op::Prefix(needles()?),
        "suffix" => Op::Suffix(needles()?),
        "contains" => Op::Contains(needles()?.into_iter().map(Needle::new).collect()),
        "glob" => Op::Glob(needles()?.iter().map(|n| Glob::new(n)).collect()),
        "word" => Op::Word(
            needles()?
                .into_iter()
                .map(|n| match n.contains(['*', '?']) {
                    true => WordNeedle::Glob(Glob::new(&n)),
                    false => WordNeedle::Phrase(Needle::new(n)),
                })
                .collect(),
        ),
        "cidr" => Op::Cidr(
            needles()?
                .iter()
                .map(|c| cidr(c).ok_or_else(|| format!("bad CIDR {c}")))
                .collect::<Result<_, _>>()?,
        ),
        "gt" => Op::Num(Cmp::Gt, number()?),
        "ge" => Op::Num(Cmp::Ge, number()?),
        "lt" => Op::Num(Cmp::Lt, number()?),
        "le" => Op::Num(Cmp::Le, number()?),
        "exists" => Op::Exists(arg.as_bool().ok_or("`exists` takes true or false")?),
        other => {
            return Err(format!(
                "unknown operator `{other}` (known: {})",
                OPS.join(", ")
            ));
        }
    };
    Ok(Cond::Leaf { field, op, nocase })
}

/// `10.0.0.0/8`, `fe80::/10`, or an address alone (a host).
pub(crate) fn cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((addr, len))
}

pub(crate) fn in_cidr(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - len as u32).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - len as u32).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        // An IPv4-mapped IPv6 address is its IPv4 address.
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|a| in_cidr(IpAddr::V4(a), (net, len))),
        _ => false,
    }
}

/// A field's value: text, or a number or address (turned into text only if a text operator
/// asks for it).
#[derive(Debug)]
pub enum Val<'a> {
    Str(Cow<'a, str>),
    Num(i64),
    Ip(IpAddr),
}

impl Val<'_> {
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Val::Str(s) => Cow::Borrowed(s),
            Val::Num(n) => Cow::Owned(n.to_string()),
            Val::Ip(ip) => Cow::Owned(ip.to_string()),
        }
    }
}

/// A record a data rule reads.
#[derive(Debug, Clone, Copy)]
pub enum Rec<'a> {
    Process(&'a ProcessCreate),
    Terminate(&'a ProcessTerminate),
    Connection(&'a ConnectionCreate),
    Login(&'a Login),
    User(&'a UserChange),
    Container(&'a ContainerEvent),
    Firewall(&'a FirewallChange),
    Software(&'a SoftwareChange),
    File(&'a FileChange),
    Module(&'a KernelModule),
    Hardware(&'a ConnectedHardware),
}

fn s(v: &str) -> Option<Val<'_>> {
    Some(Val::Str(Cow::Borrowed(v)))
}

fn os(v: &Option<String>) -> Option<Val<'_>> {
    v.as_deref().and_then(s)
}

/// `Arguments`: the command line without its first word (argv[0], often the program's full
/// path), so that a test of what a program was given does not match where it lives
/// (`contains "/bin/"` on `/usr/bin/chattr +i x`); empty when there is none.
fn arguments(command_line: &str) -> Option<Val<'_>> {
    s(command_line.split_once(' ').map_or("", |(_, rest)| rest))
}

/// An enum field as its JSON name (`Out`, `UserAdded`).
fn named<T: serde::Serialize>(v: &T) -> Option<Val<'static>> {
    match serde_json::to_value(v) {
        Ok(Value::String(t)) => Some(Val::Str(Cow::Owned(t))),
        _ => None,
    }
}

impl<'a> Rec<'a> {
    pub fn extra(&self) -> &'a ExtraDetails {
        match *self {
            Rec::Process(r) => &r.extra_details,
            Rec::Terminate(r) => &r.extra_details,
            Rec::Connection(r) => &r.extra_details,
            Rec::Login(r) => &r.extra_details,
            Rec::User(r) => &r.extra_details,
            Rec::Container(r) => &r.extra_details,
            Rec::Firewall(r) => &r.extra_details,
            Rec::Software(r) => &r.extra_details,
            Rec::File(r) => &r.extra_details,
            Rec::Module(r) => &r.extra_details,
            Rec::Hardware(r) => &r.extra_details,
        }
    }

    /// The names of the program a process record is about: the executable's file name, and
    /// argv[0]'s when it differs (`/usr/bin/kmod` run as `insmod`, `x86_64-linux-gnu-gcc-12` as
    /// `cc`); for a multi-call binary, the applet it runs (`busybox rm …` and a `rm` link to
    /// busybox are both `rm`). A condition on `Program` holds if it holds for either name: the
    /// executable's name cannot be changed by the caller, argv[0]'s can.
    pub fn programs(&self) -> [Option<&'a str>; 2] {
        let (exe, cmd) = match *self {
            Rec::Process(r) => (r.executable.as_str(), Some(r.command_line.as_str())),
            Rec::Connection(r) => (r.executable.as_str(), r.command_line.as_deref()),
            _ => return [None, None],
        };
        let name = super::base_name(exe);
        let mut words = super::words(cmd.unwrap_or_default());
        let argv0 = words.next().map(super::base_name);
        if !super::is_multi_call(name) {
            let alias = argv0.filter(|a| *a != name && !a.is_empty());
            return [Some(name).filter(|n| !n.is_empty()), alias];
        }
        let applet = match argv0 {
            Some(a) if super::is_multi_call(a) => words.next().map(super::base_name),
            other => other,
        };
        [applet, None]
    }

    /// The command line of a process or connection record, straight (the hot field).
    fn command_line(&self) -> Option<&'a str> {
        match *self {
            Rec::Process(r) => Some(&r.command_line),
            Rec::Connection(r) => r.command_line.as_deref(),
            _ => None,
        }
    }

    pub fn get(&self, f: &Field) -> Option<Val<'a>> {
        let name = match f {
            Field::Top(name) => *name,
            Field::Extra(k) => return self.extra().get(&**k).and_then(|v| s(v)),
            Field::Program => return self.programs()[0].and_then(s),
        };
        let num = |n: i64| Some(Val::Num(n));
        match *self {
            Rec::Process(r) => match name {
                "Executable" => s(&r.executable),
                "CommandLine" => s(&r.command_line),
                "Arguments" => arguments(&r.command_line),
                "ProcessId" => num(r.process_id.into()),
                "ParentProcessId" => num(r.parent_process_id.into()),
                "UserId" => s(&r.user_id),
                "UserName" => os(&r.user_name),
                _ => None,
            },
            Rec::Terminate(r) => match name {
                "Executable" => s(&r.executable),
                "ProcessId" => num(r.process_id.into()),
                "ExitStatus" => num(r.exit_status.into()),
                _ => None,
            },
            Rec::Connection(r) => match name {
                "RemoteAddress" => Some(Val::Ip(r.remote_address)),
                "RemotePort" => num(r.remote_port.into()),
                "LocalAddress" => r.local_address.map(Val::Ip),
                "LocalPort" => r.local_port.map(|p| Val::Num(p.into())),
                "Direction" => named(&r.direction),
                "Protocol" => s(&r.protocol),
                "ProcessId" => num(r.process_id.into()),
                "UserId" => os(&r.user_id),
                "Executable" => s(&r.executable),
                "CommandLine" => os(&r.command_line),
                "Arguments" => r.command_line.as_deref().and_then(arguments),
                _ => None,
            },
            Rec::Login(r) => match name {
                "ProcessId" => num(r.process_id.into()),
                "UserId" => os(&r.user_id),
                "UserName" => os(&r.user_name),
                "Operation" => s(&r.operation),
                "Executable" => s(&r.executable),
                "RemoteAddress" => r.remote_address.map(Val::Ip),
                "RemotePort" => r.remote_port.map(|p| Val::Num(p.into())),
                "LocalPort" => r.local_port.map(|p| Val::Num(p.into())),
                "Result" => named(&r.result),
                _ => None,
            },
            Rec::User(r) => match name {
                "Operation" => named(&r.operation),
                "Name" => s(&r.name),
                "Id" => s(&r.id),
                "Details" => os(&r.details),
                _ => None,
            },
            Rec::Container(r) => match name {
                "Action" => s(&r.action),
                "ObjectType" => named(&r.object_type),
                "ContainerId" => os(&r.container_id),
                "ContainerName" => os(&r.container_name),
                "Image" => os(&r.image),
                "ImageDigest" => os(&r.image_digest),
                "ModuleName" => os(&r.module_name),
                "ExitCode" => r.exit_code.map(Val::Num),
                "Command" => os(&r.command),
                "Signal" => os(&r.signal),
                _ => None,
            },
            Rec::Firewall(r) => match name {
                "Operation" => s(&r.operation),
                "Family" => s(&r.family),
                "Table" => s(&r.table),
                "Chain" => os(&r.chain),
                "Count" => num(r.count.min(i64::MAX as u64) as i64),
                _ => None,
            },
            Rec::Software(r) => match name {
                "Operation" => named(&r.operation),
                "Name" => s(&r.name),
                "Version" => s(&r.version),
                "PreviousVersion" => os(&r.previous_version),
                "Architecture" => s(&r.architecture),
                "PackageManager" => s(&r.package_manager),
                _ => None,
            },
            Rec::File(r) => match name {
                "Path" => s(&r.path),
                "Operation" => named(&r.operation),
                "OwnerId" => os(&r.owner_id),
                "OwnerName" => os(&r.owner_name),
                "Mode" => os(&r.mode),
                "Size" => r.size.map(|n| Val::Num(n.min(i64::MAX as u64) as i64)),
                "HashBefore" => os(&r.hash_before),
                "HashAfter" => os(&r.hash_after),
                _ => None,
            },
            Rec::Module(r) => match name {
                "Name" => s(&r.name),
                "Action" => named(&r.action),
                "Size" => r.size.map(|n| Val::Num(n.min(i64::MAX as u64) as i64)),
                _ => None,
            },
            Rec::Hardware(r) => match name {
                "HardwareCategory" => s(&r.hardware_category),
                "HardwareSubCategory" => s(&r.hardware_sub_category),
                "HardwareName" => s(&r.hardware_name),
                _ => None,
            },
        }
    }
}

impl Cond {
    /// Whether the record satisfies the condition.
    pub fn matches(&self, r: &Rec<'_>, cx: &Context<'_>) -> bool {
        match self {
            Cond::All(cs) => cs.iter().all(|c| c.matches(r, cx)),
            Cond::Any(cs) => cs.iter().any(|c| c.matches(r, cx)),
            Cond::Not(c) => !c.matches(r, cx),
            Cond::Leaf {
                field: Field::Program,
                op,
                nocase,
            } => {
                if let Op::Programs { bits, .. } = op {
                    let has = |id: u16| {
                        bits.get(id as usize / 64)
                            .is_some_and(|w| w >> (id % 64) & 1 == 1)
                    };
                    return cx.program_ids.into_iter().flatten().any(has);
                }
                let names = cx.programs;
                if names[0].is_none() {
                    return matches!(op, Op::Exists(false));
                }
                let names = names.into_iter().flatten();
                names
                    .map(|n| Val::Str(Cow::Borrowed(n)))
                    .any(|v| leaf(op, *nocase, &v, None))
            }
            Cond::Leaf {
                field: Field::Top("CommandLine"),
                op,
                nocase,
            } => match r.command_line() {
                Some(text) => {
                    let grams = cx.command_line.get().unwrap_or_else(|| {
                        let g = Grams::of(text.as_bytes());
                        cx.command_line.set(Some(g));
                        g
                    });
                    leaf(op, *nocase, &Val::Str(Cow::Borrowed(text)), Some(&grams))
                }
                None => match r.get(&Field::Top("CommandLine")) {
                    Some(v) => leaf(op, *nocase, &v, None),
                    None => matches!(op, Op::Exists(false)),
                },
            },
            Cond::Leaf { field, op, nocase } => {
                let value = r.get(field);
                let Some(value) = value else {
                    return matches!(op, Op::Exists(false));
                };
                leaf(op, *nocase, &value, None)
            }
        }
    }
}

/// What is worked out once per record for all the rules tried on it.
#[derive(Debug)]
pub struct Context<'a> {
    /// [`Rec::programs`].
    pub programs: [Option<&'a str>; 2],
    /// Their numbers in the catalog.
    pub program_ids: [Option<u16>; 2],
    /// The byte pairs of the command line, once a rule has looked at it.
    command_line: std::cell::Cell<Option<Grams>>,
}

impl<'a> Context<'a> {
    pub fn new(r: &Rec<'a>, catalog: &Catalog) -> Context<'a> {
        let programs = r.programs();
        Context {
            program_ids: catalog.program_ids(&programs),
            programs,
            command_line: Default::default(),
        }
    }
}

/// One field test; `grams` (the value's byte pairs, when known) rejects needles early.
fn leaf(op: &Op, nocase: bool, value: &Val<'_>, grams: Option<&Grams>) -> bool {
    let may = |g: &Grams| grams.is_none_or(|have| have.covers(g));
    match op {
        Op::Exists(want) => *want,
        Op::Num(cmp, n) => {
            let v = match value {
                Val::Num(v) => *v as f64,
                Val::Str(t) => match t.trim().parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => return false,
                },
                Val::Ip(_) => return false,
            };
            match cmp {
                Cmp::Gt => v > *n,
                Cmp::Ge => v >= *n,
                Cmp::Lt => v < *n,
                Cmp::Le => v <= *n,
            }
        }
        Op::Cidr(nets) => {
            let ip = match value {
                Val::Ip(ip) => *ip,
                Val::Str(t) => match t.trim().parse() {
                    Ok(ip) => ip,
                    Err(_) => return false,
                },
                Val::Num(_) => return false,
            };
            nets.iter().any(|n| in_cidr(ip, *n))
        }
        Op::Equals(ns) | Op::Programs { names: ns, .. } => {
            text_op(value, nocase, ns.iter(), |h, n| h == &**n)
        }
        Op::Prefix(ns) => text_op(value, nocase, ns.iter(), |h, n| h.starts_with(&**n)),
        Op::Suffix(ns) => text_op(value, nocase, ns.iter(), |h, n| h.ends_with(&**n)),
        Op::Contains(ns) => {
            let mut ns = ns.iter().filter(|n| may(&n.grams)).peekable();
            ns.peek().is_some() && text_op(value, nocase, ns, |h, n| h.contains(&*n.text))
        }
        Op::Glob(ns) => {
            let mut ns = ns.iter().filter(|g| may(&g.grams)).peekable();
            ns.peek().is_some() && text_op(value, nocase, ns, |h, g| g.matches(h))
        }
        Op::Word(ns) => {
            let mut ns = ns
                .iter()
                .filter(|n| match n {
                    WordNeedle::Phrase(p) => may(&p.grams),
                    WordNeedle::Glob(g) => may(&g.grams),
                })
                .peekable();
            ns.peek().is_some()
                && text_op(value, nocase, ns, |h, n| match n {
                    WordNeedle::Phrase(p) => word(h, &p.text),
                    WordNeedle::Glob(g) => g.matches_a_word_of(h),
                })
        }
    }
}

/// Tries each needle on the value's text (lower-cased first for `nocase`, once per leaf; the
/// needles were lower-cased when compiled).
fn text_op<N>(
    value: &Val<'_>,
    nocase: bool,
    mut needles: impl Iterator<Item = N>,
    f: impl Fn(&str, N) -> bool,
) -> bool {
    let text = value.text();
    let text = match nocase && text.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(text.to_ascii_lowercase()),
        false => text,
    };
    needles.any(|n| f(&text, n))
}

/// Characters that end a word on a command line: white space and shell punctuation.
fn is_boundary(b: u8) -> bool {
    b.is_ascii_whitespace() || b";|&()<>'\"`=,".contains(&b)
}

/// Whether `needle` occurs in `hay` as a whole word or phrase. (A `word` needle with `*` or
/// `?` is a glob matched against each word instead: see [`WordNeedle`].)
fn word(hay: &str, needle: &str) -> bool {
    let h = hay.as_bytes();
    let mut from = 0;
    while let Some(at) = hay[from..].find(needle) {
        let start = from + at;
        let end = start + needle.len();
        let before = start == 0 || is_boundary(h[start - 1]);
        let after = end == h.len() || is_boundary(h[end]);
        if before && after {
            return true;
        }
        // The next char boundary after `start` (needles may start with a multi-byte char).
        from = start + hay[start..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// `*` (any run) and `?` (any one byte) against the whole text, linear in practice: the usual
/// backtrack to the last star only.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == b'?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
pub(super) mod language_tests {
    use super::*;

    /// The shapes' shortcuts agree with the glob walk on every pattern and text tried.
    #[test]
    fn glob_shapes_agree_with_the_glob_walk() {
        let patterns = [
            "",
            "*",
            "**",
            "a",
            "*a",
            "a*",
            "*a*",
            "*/nginx",
            "--output=*",
            "*--vacuum*",
            "4???",
            "*.py",
            "*> *_history",
            "a*b",
            "*a*b*",
            "?",
            "*?",
            "ab",
            "*ab",
            "ab*",
            "*ab*",
        ];
        let texts = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "aab",
            "abb",
            "/usr/sbin/nginx",
            "/usr/sbin/nginx-debug",
            "--output=x",
            "--output",
            "x--vacuum-size=1",
            "4755",
            "x.py",
            "x.pyc",
            "echo > ~/.bash_history",
            "*",
            "a*b",
        ];
        for p in patterns {
            let g = Glob::new(p);
            for t in texts {
                assert_eq!(
                    g.matches(t),
                    glob(p.as_bytes(), t.as_bytes()),
                    "{p:?} on {t:?}"
                );
                let words = t.split(|c: char| c.is_ascii_whitespace());
                let walk = words.clone().any(|w| glob(p.as_bytes(), w.as_bytes()));
                assert_eq!(g.matches_a_word_of(t), walk, "{p:?} on the words of {t:?}");
            }
        }
    }

    #[test]
    fn glob_and_word_matching() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*c", b"abbbc"));
        assert!(glob(b"*.ko", b"/tmp/x.ko"));
        assert!(!glob(b"*.ko", b"/tmp/x.ko.bak"));
        assert!(glob(b"4???", b"4755"));
        assert!(!glob(b"4???", b"47555"));
        assert!(glob(b"*> *_history", b"sh -c : > ~/.bash_history"));
        assert!(word("iptables -F", "-F"));
        assert!(word("iptables -P INPUT ACCEPT", "-P INPUT ACCEPT"));
        assert!(!word("iptables -FX", "-F"));
        assert!(!word("systemctl is-enabled x", "enable"));
        assert!(word("a;enable;b", "enable"));
        let word_glob = |hay: &str, g: &str| {
            let g = Glob::new(g);
            hay.contains(&*g.literal) && hay.split(' ').any(|w| g.matches(w))
        };
        assert!(word_glob("chmod u+s /bin/x", "*+*s"));
        assert!(!word_glob("chmod u+x /bin/s", "*+*s"));
        assert!(Glob::new("*> *_history").matches("sh -c : > ~/.bash_history"));
        assert!(!Glob::new("*> *_history").matches("sh -c cat ~/.bash_history > x"));
        assert!(!word("ünïcode ü", "n"));
        assert!(word("ünïcode ü", "ü"));
    }

    proptest::proptest! {
        /// The byte-pair filter never rejects a needle that is in the text (any case).
        #[test]
        fn byte_pairs_never_reject_a_contained_needle(
            text in ".{0,60}",
            from in 0usize..60,
            len in 0usize..20,
        ) {
            let bytes = text.as_bytes();
            let from = from.min(bytes.len());
            let to = (from + len).min(bytes.len());
            let needle = &bytes[from..to];
            proptest::prop_assert!(Grams::of(bytes).covers(&Grams::of(needle)));
            let upper = text.to_ascii_uppercase();
            proptest::prop_assert!(Grams::of(upper.as_bytes()).covers(&Grams::of(needle)));
        }
    }

    #[test]
    fn byte_pairs_reject_most_absent_needles() {
        let line = Grams::of(
            b"/usr/bin/python3 /opt/health/check_00042.py --endpoint https://10.0.0.1:8443/s -t 5",
        );
        let absent = [
            "stratum+tcp://",
            "--donate-level",
            "/etc/shadow",
            "base64 -d",
            "_history",
        ];
        for n in absent {
            assert!(!line.covers(&Grams::of(n.as_bytes())), "{n}");
        }
        assert!(line.covers(&Grams::of(b"ENDPOINT")));
    }

    #[test]
    fn cidr_matching() {
        let net = cidr("10.0.0.0/8").unwrap();
        assert!(in_cidr("10.1.2.3".parse().unwrap(), net));
        assert!(!in_cidr("11.1.2.3".parse().unwrap(), net));
        assert!(in_cidr("::ffff:10.1.2.3".parse().unwrap(), net));
        assert!(in_cidr(
            "1.2.3.4".parse().unwrap(),
            cidr("0.0.0.0/0").unwrap()
        ));
        assert!(in_cidr(
            "fe80::1".parse().unwrap(),
            cidr("fe80::/10").unwrap()
        ));
        assert!(!in_cidr("fe80::1".parse().unwrap(), net));
        assert_eq!(cidr("10.0.0.0/33"), None);
        assert_eq!(cidr("nope"), None);
    }
}
