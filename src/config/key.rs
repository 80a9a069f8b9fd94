//! The twin's key names, and how each key's value is read from JSON, shown, and copied.
//!
//! One enum instead of a field per setting keeps patching, rejecting (copy the previous value
//! back), resetting (copy the default) and reporting in one place each.

use super::duration::quote;
use super::{
    Aggregation, Config, DEFAULT_AGGREGATION, MAX_MESSAGE_BYTES, MIN_SIZE_BYTES, format_duration,
    parse_duration,
};
use crate::detect::{
    AllowedDestination, CustomRules, MAX_ALLOWED, MAX_THRESHOLD, MAX_WINDOW, Rule, RuleOverride,
};
use crate::event::BaselineSeverity;
use crate::event::{EventKind, Priority};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// One setting of the configuration object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Key {
    HighPriorityMessageFrequency,
    LowPriorityMessageFrequency,
    SnapshotFrequency,
    MaxLocalCacheSizeInBytes,
    MaxMessageSizeInBytes,
    EventPriority(EventKind),
    AggregationEnabled(EventKind),
    AggregationInterval(EventKind),
    BaselineCustomChecksEnabled,
    BaselineCustomChecksFilePath,
    BaselineCustomChecksFileHash,
    HubResourceId,
    LogLevel,
    ContainerCollectionEnabled,
    DockerSocketPath,
    DetectionRulesDisabled,
    HeartbeatFrequency,
    SnapshotRefreshFrequency,
    FileIntegrityEnabled,
    FileIntegrityPaths,
    DetectionCustomRules,
    DetectionRuleOverrides,
    DetectionAllowedProcesses,
    DetectionAllowedConnections,
    DetectionAllowedUsers,
    DetectionAllowedLoginSources,
    BehaviourLearningPeriod,
    BehaviourBaselineReset,
}

const EVENT_PRIORITY: &str = "eventPriority";
const AGGREGATION_ENABLED: &str = "aggregationEnabled";
const AGGREGATION_INTERVAL: &str = "aggregationInterval";

impl Key {
    /// Every key, grouped as in security-events.md §3.
    pub(super) fn all() -> impl Iterator<Item = Key> {
        use Key::*;
        let sizes = [
            HighPriorityMessageFrequency,
            LowPriorityMessageFrequency,
            SnapshotFrequency,
            MaxLocalCacheSizeInBytes,
            MaxMessageSizeInBytes,
        ];
        let priorities = EventKind::ALL.iter().map(|kind| EventPriority(*kind));
        let aggregation = EventKind::AGGREGATABLE
            .into_iter()
            .flat_map(|kind| [AggregationEnabled(kind), AggregationInterval(kind)]);
        let rest = [
            BaselineCustomChecksEnabled,
            BaselineCustomChecksFilePath,
            BaselineCustomChecksFileHash,
            HubResourceId,
            LogLevel,
            ContainerCollectionEnabled,
            DockerSocketPath,
            DetectionRulesDisabled,
            HeartbeatFrequency,
            SnapshotRefreshFrequency,
            FileIntegrityEnabled,
            FileIntegrityPaths,
            DetectionCustomRules,
            DetectionRuleOverrides,
            DetectionAllowedProcesses,
            DetectionAllowedConnections,
            DetectionAllowedUsers,
            DetectionAllowedLoginSources,
            BehaviourLearningPeriod,
            BehaviourBaselineReset,
        ];
        sizes
            .into_iter()
            .chain(priorities)
            .chain(aggregation)
            .chain(rest)
    }

    /// The twin key name.
    pub(super) fn name(self) -> String {
        use Key::*;
        match self {
            HighPriorityMessageFrequency => "highPriorityMessageFrequency".into(),
            LowPriorityMessageFrequency => "lowPriorityMessageFrequency".into(),
            SnapshotFrequency => "snapshotFrequency".into(),
            MaxLocalCacheSizeInBytes => "maxLocalCacheSizeInBytes".into(),
            MaxMessageSizeInBytes => "maxMessageSizeInBytes".into(),
            EventPriority(kind) => format!("{EVENT_PRIORITY}{}", kind.name()),
            AggregationEnabled(kind) => format!("{AGGREGATION_ENABLED}{}", kind.name()),
            AggregationInterval(kind) => format!("{AGGREGATION_INTERVAL}{}", kind.name()),
            BaselineCustomChecksEnabled => "baselineCustomChecksEnabled".into(),
            BaselineCustomChecksFilePath => "baselineCustomChecksFilePath".into(),
            BaselineCustomChecksFileHash => "baselineCustomChecksFileHash".into(),
            HubResourceId => "hubResourceId".into(),
            LogLevel => "logLevel".into(),
            ContainerCollectionEnabled => "containerCollectionEnabled".into(),
            DockerSocketPath => "dockerSocketPath".into(),
            DetectionRulesDisabled => "detectionRulesDisabled".into(),
            HeartbeatFrequency => "heartbeatFrequency".into(),
            SnapshotRefreshFrequency => "snapshotRefreshFrequency".into(),
            FileIntegrityEnabled => "fileIntegrityEnabled".into(),
            FileIntegrityPaths => "fileIntegrityPaths".into(),
            DetectionCustomRules => "detectionCustomRules".into(),
            DetectionRuleOverrides => "detectionRuleOverrides".into(),
            DetectionAllowedProcesses => "detectionAllowedProcesses".into(),
            DetectionAllowedConnections => "detectionAllowedConnections".into(),
            DetectionAllowedUsers => "detectionAllowedUsers".into(),
            DetectionAllowedLoginSources => "detectionAllowedLoginSources".into(),
            BehaviourLearningPeriod => "behaviourLearningPeriod".into(),
            BehaviourBaselineReset => "behaviourBaselineReset".into(),
        }
    }

    /// The key a twin name stands for; names are case-sensitive, as in the old agents.
    pub(super) fn from_name(name: &str) -> Option<Key> {
        use Key::*;
        let aggregatable = |kind: &str| EventKind::from_name(kind).filter(|k| k.is_aggregatable());
        Some(match name {
            "highPriorityMessageFrequency" => HighPriorityMessageFrequency,
            "lowPriorityMessageFrequency" => LowPriorityMessageFrequency,
            "snapshotFrequency" => SnapshotFrequency,
            "maxLocalCacheSizeInBytes" => MaxLocalCacheSizeInBytes,
            "maxMessageSizeInBytes" => MaxMessageSizeInBytes,
            "baselineCustomChecksEnabled" => BaselineCustomChecksEnabled,
            "baselineCustomChecksFilePath" => BaselineCustomChecksFilePath,
            "baselineCustomChecksFileHash" => BaselineCustomChecksFileHash,
            "hubResourceId" => HubResourceId,
            "logLevel" => LogLevel,
            "containerCollectionEnabled" => ContainerCollectionEnabled,
            "dockerSocketPath" => DockerSocketPath,
            "detectionRulesDisabled" => DetectionRulesDisabled,
            "heartbeatFrequency" => HeartbeatFrequency,
            "snapshotRefreshFrequency" => SnapshotRefreshFrequency,
            "fileIntegrityEnabled" => FileIntegrityEnabled,
            "fileIntegrityPaths" => FileIntegrityPaths,
            "detectionCustomRules" => DetectionCustomRules,
            "detectionRuleOverrides" => DetectionRuleOverrides,
            "detectionAllowedProcesses" => DetectionAllowedProcesses,
            "detectionAllowedConnections" => DetectionAllowedConnections,
            "detectionAllowedUsers" => DetectionAllowedUsers,
            "detectionAllowedLoginSources" => DetectionAllowedLoginSources,
            "behaviourLearningPeriod" => BehaviourLearningPeriod,
            "behaviourBaselineReset" => BehaviourBaselineReset,
            _ => {
                if let Some(kind) = name.strip_prefix(EVENT_PRIORITY) {
                    EventPriority(EventKind::from_name(kind)?)
                } else if let Some(kind) = name.strip_prefix(AGGREGATION_ENABLED) {
                    AggregationEnabled(aggregatable(kind)?)
                } else if let Some(kind) = name.strip_prefix(AGGREGATION_INTERVAL) {
                    AggregationInterval(aggregatable(kind)?)
                } else {
                    return None;
                }
            }
        })
    }

    /// The value in use, in twin form: durations as ISO-8601 text, priorities as
    /// `High`/`Low`/`Off`, `null` for an unset optional string.
    pub(super) fn get(self, config: &Config) -> Value {
        use Key::*;
        let duration = |d: Duration| Value::from(format_duration(d));
        match self {
            HighPriorityMessageFrequency => duration(config.high_priority_message_frequency),
            LowPriorityMessageFrequency => duration(config.low_priority_message_frequency),
            SnapshotFrequency => duration(config.snapshot_frequency),
            MaxLocalCacheSizeInBytes => config.max_local_cache_size_in_bytes.into(),
            MaxMessageSizeInBytes => config.max_message_size_in_bytes.into(),
            EventPriority(kind) => config.priority(kind).to_string().into(),
            AggregationEnabled(kind) => config.aggregation_entry(kind).enabled.into(),
            AggregationInterval(kind) => duration(config.aggregation_entry(kind).interval),
            BaselineCustomChecksEnabled => config.baseline_custom_checks_enabled.into(),
            BaselineCustomChecksFilePath => config.baseline_custom_checks_file_path.clone().into(),
            BaselineCustomChecksFileHash => config.baseline_custom_checks_file_hash.clone().into(),
            HubResourceId => config.hub_resource_id.clone().into(),
            LogLevel => config.log_level.clone().into(),
            ContainerCollectionEnabled => config.container_collection_enabled.into(),
            DockerSocketPath => config.docker_socket_path.clone().into(),
            DetectionRulesDisabled => config
                .detection_rules_disabled
                .iter()
                .map(|r| r.id())
                .collect::<Vec<_>>()
                .join(",")
                .into(),
            HeartbeatFrequency => duration(config.heartbeat_frequency),
            SnapshotRefreshFrequency => duration(config.snapshot_refresh_frequency),
            FileIntegrityEnabled => config.file_integrity_enabled.into(),
            FileIntegrityPaths => match &config.file_integrity_paths {
                Some(paths) => paths.join(",").into(),
                None => Value::Null,
            },
            DetectionCustomRules => custom_rules_view(config.detection_custom_rules.source()),
            DetectionRuleOverrides => overrides_view(&config.detection_rule_overrides),
            DetectionAllowedProcesses => config.detection_allow_lists.processes.join(",").into(),
            DetectionAllowedConnections => {
                let list = &config.detection_allow_lists.destinations;
                list.iter()
                    .map(destination_text)
                    .collect::<Vec<_>>()
                    .join(",")
                    .into()
            }
            DetectionAllowedUsers => config.detection_allow_lists.users.join(",").into(),
            DetectionAllowedLoginSources => {
                let list = &config.detection_allow_lists.login_sources;
                let text: Vec<String> = list.iter().map(|(a, l)| format!("{a}/{l}")).collect();
                text.join(",").into()
            }
            BehaviourLearningPeriod => duration(config.behaviour_learning_period),
            BehaviourBaselineReset => config.behaviour_baseline_reset.clone().into(),
        }
    }

    /// The value in use as text (`PT7M`, `204800`, `Low`, `true`, `null`): the
    /// `UsedConfiguration` of a rejection.
    /// Custom rules show their ids only (`a,b`; the rules themselves can be kilobytes).
    pub(super) fn used(self, config: &Config) -> String {
        if self == Key::DetectionCustomRules {
            let ids: Vec<&str> = config.detection_custom_rules.ids().collect();
            return ids.join(",");
        }
        match self.get(config) {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// Sets the key from a bare (unwrapped, non-null) twin value. On error the config is
    /// unchanged and the message says what was expected.
    pub(super) fn set(self, config: &mut Config, value: &Value) -> Result<(), String> {
        use Key::*;
        match self {
            HighPriorityMessageFrequency => {
                config.high_priority_message_frequency = duration(value)?;
            }
            LowPriorityMessageFrequency => config.low_priority_message_frequency = duration(value)?,
            SnapshotFrequency => config.snapshot_frequency = duration(value)?,
            MaxLocalCacheSizeInBytes => {
                config.max_local_cache_size_in_bytes = integer(value, MIN_SIZE_BYTES, None)?;
            }
            MaxMessageSizeInBytes => {
                config.max_message_size_in_bytes =
                    integer(value, MIN_SIZE_BYTES, Some(MAX_MESSAGE_BYTES))?;
            }
            EventPriority(kind) => {
                config.event_priorities.insert(kind, priority(value)?);
            }
            AggregationEnabled(kind) => {
                let enabled = boolean(value)?;
                aggregation_mut(config, kind).enabled = enabled;
            }
            AggregationInterval(kind) => {
                let interval = duration(value)?;
                aggregation_mut(config, kind).interval = interval;
            }
            BaselineCustomChecksEnabled => config.baseline_custom_checks_enabled = boolean(value)?,
            BaselineCustomChecksFilePath => {
                config.baseline_custom_checks_file_path = string(value)?;
            }
            BaselineCustomChecksFileHash => {
                config.baseline_custom_checks_file_hash = string(value)?;
            }
            HubResourceId => config.hub_resource_id = string(value)?.unwrap_or_default(),
            LogLevel => config.log_level = log_level(value)?,
            ContainerCollectionEnabled => config.container_collection_enabled = boolean(value)?,
            DockerSocketPath => config.docker_socket_path = socket_path(value)?,
            DetectionRulesDisabled => config.detection_rules_disabled = rules(value)?,
            HeartbeatFrequency => config.heartbeat_frequency = duration(value)?,
            SnapshotRefreshFrequency => config.snapshot_refresh_frequency = duration(value)?,
            FileIntegrityEnabled => config.file_integrity_enabled = boolean(value)?,
            FileIntegrityPaths => config.file_integrity_paths = Some(file_paths(value)?),
            DetectionCustomRules => {
                let (rules, errors) = custom_rules(value)?;
                if let Some(e) = errors.into_iter().next() {
                    return Err(e);
                }
                config.detection_custom_rules = rules;
            }
            DetectionRuleOverrides => {
                let (overrides, errors) = rule_overrides(value, &config.detection_rule_overrides)?;
                if let Some(e) = errors.into_iter().next() {
                    return Err(e);
                }
                config.detection_rule_overrides = overrides;
            }
            DetectionAllowedProcesses => {
                config.detection_allow_lists.processes = allow_list(value, "program", |p| {
                    let ok = p.starts_with('/') && !p.contains('\0') && p.len() <= 4096;
                    ok.then(|| p.to_string())
                })?;
            }
            DetectionAllowedConnections => {
                config.detection_allow_lists.destinations =
                    allow_list(value, "destination", AllowedDestination::parse)?;
            }
            DetectionAllowedUsers => {
                config.detection_allow_lists.users = allow_list(value, "user", |u| {
                    let ok = u.len() <= 256 && !u.contains(char::is_whitespace);
                    ok.then(|| u.to_string())
                })?;
            }
            DetectionAllowedLoginSources => {
                config.detection_allow_lists.login_sources =
                    allow_list(value, "network", crate::detect::parse_cidr)?;
            }
            BehaviourLearningPeriod => config.behaviour_learning_period = duration(value)?,
            BehaviourBaselineReset => {
                let token = string(value)?;
                if token.as_ref().is_some_and(|t| t.len() > 256) {
                    return Err("at most 256 bytes".into());
                }
                config.behaviour_baseline_reset = token;
            }
        }
        Ok(())
    }

    /// Whether the key is made of parts that are rejected one by one ([`Key::set_parts`]).
    pub(super) fn has_parts(self) -> bool {
        matches!(
            self,
            Key::DetectionCustomRules | Key::DetectionRuleOverrides
        )
    }

    /// Like [`Key::set`], but a key made of parts (the rules of `detectionCustomRules`) keeps
    /// its good parts and returns a message for each bad one (each becomes a rejection of its
    /// own). An `Err` rejects the whole value, as [`Key::set`] does.
    pub(super) fn set_parts(
        self,
        config: &mut Config,
        value: &Value,
    ) -> Result<Vec<String>, String> {
        if !self.has_parts() {
            return self.set(config, value).map(|()| Vec::new());
        }
        if self == Key::DetectionRuleOverrides {
            let (overrides, errors) = rule_overrides(value, &config.detection_rule_overrides)?;
            config.detection_rule_overrides = overrides;
            return Ok(errors);
        }
        let (rules, errors) = custom_rules(value)?;
        config.detection_custom_rules = rules;
        Ok(errors)
    }

    /// Copies this key's value from `from` to `to`: how a rejected key keeps its previous value
    /// and a `null` key gets its default.
    pub(super) fn copy(self, from: &Config, to: &mut Config) {
        use Key::*;
        match self {
            HighPriorityMessageFrequency => {
                to.high_priority_message_frequency = from.high_priority_message_frequency;
            }
            LowPriorityMessageFrequency => {
                to.low_priority_message_frequency = from.low_priority_message_frequency;
            }
            SnapshotFrequency => to.snapshot_frequency = from.snapshot_frequency,
            MaxLocalCacheSizeInBytes => {
                to.max_local_cache_size_in_bytes = from.max_local_cache_size_in_bytes;
            }
            MaxMessageSizeInBytes => to.max_message_size_in_bytes = from.max_message_size_in_bytes,
            EventPriority(kind) => {
                to.event_priorities.insert(kind, from.priority(kind));
            }
            AggregationEnabled(kind) => {
                aggregation_mut(to, kind).enabled = from.aggregation_entry(kind).enabled;
            }
            AggregationInterval(kind) => {
                aggregation_mut(to, kind).interval = from.aggregation_entry(kind).interval;
            }
            BaselineCustomChecksEnabled => {
                to.baseline_custom_checks_enabled = from.baseline_custom_checks_enabled;
            }
            BaselineCustomChecksFilePath => {
                to.baseline_custom_checks_file_path = from.baseline_custom_checks_file_path.clone();
            }
            BaselineCustomChecksFileHash => {
                to.baseline_custom_checks_file_hash = from.baseline_custom_checks_file_hash.clone();
            }
            HubResourceId => to.hub_resource_id = from.hub_resource_id.clone(),
            LogLevel => to.log_level = from.log_level.clone(),
            ContainerCollectionEnabled => {
                to.container_collection_enabled = from.container_collection_enabled;
            }
            DockerSocketPath => to.docker_socket_path = from.docker_socket_path.clone(),
            DetectionRulesDisabled => {
                to.detection_rules_disabled = from.detection_rules_disabled.clone();
            }
            HeartbeatFrequency => to.heartbeat_frequency = from.heartbeat_frequency,
            SnapshotRefreshFrequency => {
                to.snapshot_refresh_frequency = from.snapshot_refresh_frequency;
            }
            FileIntegrityEnabled => to.file_integrity_enabled = from.file_integrity_enabled,
            FileIntegrityPaths => to.file_integrity_paths = from.file_integrity_paths.clone(),
            DetectionCustomRules => to.detection_custom_rules = from.detection_custom_rules.clone(),
            DetectionRuleOverrides => {
                to.detection_rule_overrides = from.detection_rule_overrides.clone();
            }
            DetectionAllowedProcesses => {
                to.detection_allow_lists.processes = from.detection_allow_lists.processes.clone();
            }
            DetectionAllowedConnections => {
                to.detection_allow_lists.destinations =
                    from.detection_allow_lists.destinations.clone();
            }
            DetectionAllowedUsers => {
                to.detection_allow_lists.users = from.detection_allow_lists.users.clone();
            }
            DetectionAllowedLoginSources => {
                to.detection_allow_lists.login_sources =
                    from.detection_allow_lists.login_sources.clone();
            }
            BehaviourLearningPeriod => {
                to.behaviour_learning_period = from.behaviour_learning_period
            }
            BehaviourBaselineReset => {
                to.behaviour_baseline_reset = from.behaviour_baseline_reset.clone();
            }
        }
    }
}

fn aggregation_mut(config: &mut Config, kind: EventKind) -> &mut Aggregation {
    config
        .aggregation
        .entry(kind)
        .or_insert(DEFAULT_AGGREGATION)
}

/// Strips the `{"value": X}` wrapper the old agents required (bare values pass through).
/// `Ok(None)` is a null, which sends the key back to its default. Keys starting with `$` beside
/// `value` are twin metadata and ignored. A wrapper without `value` (`{}`) is a null too: IoT Hub
/// stores no nulls in a twin, so `{"value": null}` written in a deployment manifest or the
/// portal's twin editor reaches the module as `{}`.
pub(super) fn unwrap_value(value: &Value) -> Result<Option<&Value>, String> {
    let inner = match value {
        Value::Object(map) => {
            if let Some(other) = map.keys().find(|k| *k != "value" && !k.starts_with('$')) {
                return Err(format!(
                    "expected a value or {{\"value\": …}}, got an object with key {}",
                    quote(other)
                ));
            }
            match map.get("value") {
                Some(v) => v,
                None => return Ok(None),
            }
        }
        bare => bare,
    };
    Ok(Some(inner).filter(|v| !v.is_null()))
}

/// A value as shown in a rejection message: short, and without walking nested values.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
        scalar => scalar.to_string(),
    }
}

fn duration(value: &Value) -> Result<Duration, String> {
    match value {
        Value::String(s) => parse_duration(s),
        other => Err(format!(
            "expected an ISO-8601 duration such as PT7M, got {}",
            describe(other)
        )),
    }
}

/// A JSON integer in `min..=max`. A float without a fraction counts too (`204800.0`): some
/// tools write every number that way.
fn integer(value: &Value, min: u64, max: Option<u64>) -> Result<u64, String> {
    /// 2^64, exact as an f64: floats below it convert to u64 without saturating.
    const U64_END: f64 = 18_446_744_073_709_551_616.0;
    let number = match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < U64_END)
                .map(|f| f as u64)
        }),
        _ => None,
    };
    number
        .filter(|n| *n >= min && max.is_none_or(|max| *n <= max))
        .ok_or_else(|| {
            let range = match max {
                Some(max) => format!("an integer from {min} to {max}"),
                None => format!("an integer of at least {min}"),
            };
            format!("expected {range}, got {}", describe(value))
        })
}

fn priority(value: &Value) -> Result<Priority, String> {
    let text = value.as_str().unwrap_or_default();
    [Priority::High, Priority::Low, Priority::Off]
        .into_iter()
        .find(|p| p.to_string().eq_ignore_ascii_case(text))
        .ok_or_else(|| format!("expected High, Low or Off, got {}", describe(value)))
}

/// Detection rules by id, comma-separated (`"shell-in-container, exec-from-temp-dir"`; `""`
/// for none): a string rather than an array, which older twin tooling cannot edit. Sorted and
/// without duplicates, so the reported view is stable.
fn rules(value: &Value) -> Result<Vec<Rule>, String> {
    let known = || Rule::all().map(|r| r.id()).collect::<Vec<_>>().join(", ");
    let text = value.as_str().ok_or_else(|| {
        format!(
            "expected rule ids separated by commas ({}), got {}",
            known(),
            describe(value)
        )
    })?;
    let mut out = Vec::new();
    for id in text.split(',').map(str::trim).filter(|id| !id.is_empty()) {
        let rule = Rule::from_id(id)
            .ok_or_else(|| format!("unknown rule {} (known: {})", quote(id), known()))?;
        out.push(rule);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Custom detection rules: a JSON array of rule objects in the format of `rules.json` (data
/// rules only), or a string holding one, which older twin tooling (that cannot write arrays)
/// can edit. `[]` or `""` for none. Each rule is compiled alone: the bad ones come back as
/// messages naming them, the good ones are kept ([`CustomRules::parse`]).
fn custom_rules(value: &Value) -> Result<(CustomRules, Vec<String>), String> {
    let expected =
        "expected an array of rule objects (as in docs/detection.md), or a string holding one";
    let parsed;
    let list = match value {
        Value::Array(list) => list,
        Value::String(text) if text.trim().is_empty() => return Ok(Default::default()),
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| format!("{expected}: the string is not JSON ({e})"))?;
            parsed
                .as_array()
                .ok_or_else(|| format!("{expected}, got a string holding {}", describe(&parsed)))?
        }
        other => return Err(format!("{expected}, got {}", describe(other))),
    };
    Ok(CustomRules::parse(list))
}

/// Longest string value a twin holds (IoT Hub: 4 KB).
const MAX_TWIN_STRING: usize = 4096;

/// The custom rules in use in twin form: `""` for none; a string holding their JSON array,
/// like the other list keys (no arrays in the twin, for older tooling); an array when that
/// string would be longer than a twin string may be (such a set came in as an array anyway).
fn custom_rules_view(rules: &[Value]) -> Value {
    if rules.is_empty() {
        return Value::from("");
    }
    let text = Value::Array(rules.to_vec()).to_string();
    match text.len() <= MAX_TWIN_STRING {
        true => Value::String(text),
        false => Value::Array(rules.to_vec()),
    }
}

/// Per-rule overrides: an object keyed by built-in rule id, each `{"severity": S, "threshold":
/// N, "window": "PT5M"}` (any of the three; each only where the rule has it: [`Rule::tunable`]),
/// or a string holding such an object (older twin tooling).
///
/// An object is *merged* into `current`, as IoT Hub merges a desired patch into the twin (the
/// module is sent the patch only): a rule not named keeps its overrides, a rule set to `null`
/// loses them, a field set to `null` goes back to the rule's own. A string is a whole value and
/// replaces them all (`""`: none). Each bad entry comes back as a message naming its rule and
/// keeps that rule's previous overrides; the others apply.
fn rule_overrides(
    value: &Value,
    current: &BTreeMap<Rule, RuleOverride>,
) -> Result<(BTreeMap<Rule, RuleOverride>, Vec<String>), String> {
    let expected = "expected an object keyed by rule id, such as {\"sudo-failures\": {\"threshold\": 5, \"window\": \"PT10M\"}}, or a string holding one";
    let parsed;
    let (map, mut out) = match value {
        Value::Object(map) => (map, current.clone()),
        Value::String(text) if text.trim().is_empty() => return Ok(Default::default()),
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| format!("{expected}: the string is not JSON ({e})"))?;
            let map = parsed
                .as_object()
                .ok_or_else(|| format!("{expected}, got a string holding {}", describe(&parsed)))?;
            (map, BTreeMap::new())
        }
        other => return Err(format!("{expected}, got {}", describe(other))),
    };
    let mut errors = Vec::new();
    for (id, entry) in map.iter().filter(|(id, _)| !id.starts_with('$')) {
        match rule_override(id, entry, &out) {
            Ok((rule, o)) if o.is_empty() => {
                out.remove(&rule);
            }
            Ok((rule, o)) => {
                out.insert(rule, o);
            }
            Err(e) => errors.push(format!("rule {}: {e}", quote(id))),
        }
    }
    Ok((out, errors))
}

/// One rule's entry, merged into its overrides in `current`.
fn rule_override(
    id: &str,
    entry: &Value,
    current: &BTreeMap<Rule, RuleOverride>,
) -> Result<(Rule, RuleOverride), String> {
    let rule = Rule::from_id(id).ok_or(
        "not a built-in rule (ids in docs/detection.md; a custom rule sets its own severity and threshold)",
    )?;
    let mut o = match entry {
        Value::Null => return Ok((rule, RuleOverride::default())),
        Value::Object(_) => current.get(&rule).copied().unwrap_or_default(),
        other => {
            return Err(format!(
                "expected {{\"severity\": …, \"threshold\": …, \"window\": …}} or null, got {}",
                describe(other)
            ));
        }
    };
    let (has_threshold, has_window) = rule.tunable();
    for (field, v) in entry.as_object().into_iter().flatten() {
        match (field.as_str(), v) {
            ("severity", Value::Null) => o.severity = None,
            ("severity", v) => {
                let text = v.as_str().unwrap_or_default();
                let found = [
                    BaselineSeverity::Critical,
                    BaselineSeverity::Important,
                    BaselineSeverity::Warning,
                    BaselineSeverity::Informational,
                ]
                .into_iter()
                .find(|s| format!("{s:?}").eq_ignore_ascii_case(text));
                o.severity = Some(found.ok_or_else(|| {
                    format!(
                        "severity: expected Critical, Important, Warning or Informational, got {}",
                        describe(v)
                    )
                })?);
            }
            ("threshold" | "window", _) if !(has_threshold || has_window) => {
                return Err(format!(
                    "{field}: the rule has no threshold or window (only severity can be set)"
                ));
            }
            ("threshold", _) if !has_threshold => {
                return Err("threshold: the rule has a window but no threshold".into());
            }
            ("threshold", Value::Null) => o.threshold = None,
            ("threshold", v) => {
                let n = integer(v, 2, Some(MAX_THRESHOLD as u64))
                    .map_err(|e| format!("threshold: {e}"))?;
                o.threshold = Some(n as usize);
            }
            ("window", Value::Null) => o.window = None,
            ("window", v) => {
                let d = duration(v).map_err(|e| format!("window: {e}"))?;
                if d < Duration::from_secs(1) || d > MAX_WINDOW {
                    return Err(format!(
                        "window: expected from PT1S to {}, got {}",
                        format_duration(MAX_WINDOW),
                        describe(v)
                    ));
                }
                o.window = Some(d);
            }
            (other, _) => {
                return Err(format!(
                    "unknown setting {} (severity, threshold, window)",
                    quote(other)
                ));
            }
        }
    }
    Ok((rule, o))
}

/// The overrides in use in twin form: a string holding their object (a string is replaced
/// whole when reported again; the entries of an object would be merged into the reported
/// properties and a removed rule's would linger), or the object when that string would be
/// longer than a twin string may be. `""` for none.
fn overrides_view(overrides: &BTreeMap<Rule, RuleOverride>) -> Value {
    if overrides.is_empty() {
        return Value::from("");
    }
    let object: serde_json::Map<String, Value> = overrides
        .iter()
        .map(|(rule, o)| {
            let mut entry = serde_json::Map::new();
            if let Some(s) = o.severity {
                entry.insert("severity".into(), format!("{s:?}").into());
            }
            if let Some(n) = o.threshold {
                entry.insert("threshold".into(), n.into());
            }
            if let Some(w) = o.window {
                entry.insert("window".into(), format_duration(w).into());
            }
            (rule.id().to_string(), Value::Object(entry))
        })
        .collect();
    let object = Value::Object(object);
    let text = object.to_string();
    match text.len() <= MAX_TWIN_STRING {
        true => Value::String(text),
        false => object,
    }
}

/// An allow-list: entries separated by commas (`""`: the list is off), each read by `parse`,
/// in the order given without duplicates, at most [`MAX_ALLOWED`]. One bad entry rejects the
/// whole key (the list before stays): half a list applied would raise alerts for everything
/// the bad entry meant to allow.
fn allow_list<T: PartialEq>(
    value: &Value,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, String> {
    let text = value.as_str().ok_or_else(|| {
        format!(
            "expected {what}s separated by commas, got {}",
            describe(value)
        )
    })?;
    let mut out = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let item = parse(entry).ok_or_else(|| format!("not a {what}: {}", quote(entry)))?;
        if !out.contains(&item) {
            out.push(item);
        }
    }
    if out.len() > MAX_ALLOWED {
        return Err(format!(
            "expected at most {MAX_ALLOWED} {what}s, got {}",
            out.len()
        ));
    }
    Ok(out)
}

/// An allowed destination in twin form (`10.0.0.0/8:443`, `[fd00::/8]:443`).
fn destination_text(d: &AllowedDestination) -> String {
    let (addr, len) = d.net;
    match (addr, d.port) {
        (_, None) => format!("{addr}/{len}"),
        (IpAddr::V4(_), Some(p)) => format!("{addr}/{len}:{p}"),
        (IpAddr::V6(_), Some(p)) => format!("[{addr}/{len}]:{p}"),
    }
}

/// The most paths `fileIntegrityPaths` may name: each is at least one inotify watch, and the
/// watch budget is shared ([`crate::collectors::files`]).
pub(super) const MAX_FILE_INTEGRITY_PATHS: usize = 256;

/// Host paths to watch, comma-separated (`"/etc/passwd, /opt/app/conf"`): absolute, without
/// `.` or `..` components (a path is resolved inside the host root anyway; these would only
/// make the reported paths ambiguous); a trailing `/**` watches a directory's subdirectories
/// too. A string, like `detectionRulesDisabled`, which older twin tooling can edit. Kept in
/// the order given, without duplicates.
fn file_paths(value: &Value) -> Result<Vec<String>, String> {
    let text = value.as_str().ok_or_else(|| {
        format!(
            "expected absolute paths separated by commas, got {}",
            describe(value)
        )
    })?;
    let mut out: Vec<String> = Vec::new();
    for path in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bare = path.strip_suffix("/**").unwrap_or(path);
        let bad = !bare.starts_with('/')
            || path.len() > 4096
            || path.contains('\0')
            || bare.split('/').any(|c| c == "." || c == ".." || c == "**");
        if bad {
            return Err(format!(
                "expected absolute paths without . or .. separated by commas, got {}",
                quote(path)
            ));
        }
        if !out.iter().any(|p| p == path) {
            out.push(path.to_string());
        }
    }
    if out.is_empty() {
        return Err(
            "expected at least one path (set fileIntegrityEnabled to false to watch none)".into(),
        );
    }
    if out.len() > MAX_FILE_INTEGRITY_PATHS {
        return Err(format!(
            "expected at most {MAX_FILE_INTEGRITY_PATHS} paths, got {}",
            out.len()
        ));
    }
    Ok(out)
}

fn boolean(value: &Value) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| format!("expected true or false, got {}", describe(value)))
}

fn string(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Null => Ok(None),
        other => Err(format!("expected a string, got {}", describe(other))),
    }
}

/// A log filter in `RUST_LOG` syntax (`debug`, `info,edgeguard::hub=trace`); checked here so a
/// typo is rejected like any bad key instead of silencing the logs.
fn log_level(value: &Value) -> Result<Option<String>, String> {
    let Some(text) = string(value)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // A lone word would parse as a target name ("verbose" = everything from target "verbose");
    // a user who writes one means a level.
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    if !text.contains(['=', ',', ':', '[']) && !LEVELS.contains(&text.to_ascii_lowercase().as_str())
    {
        return Err(format!(
            "expected a log level (error, warn, info, debug, trace, off) or RUST_LOG directives, got {}",
            quote(text)
        ));
    }
    text.parse::<tracing_subscriber::filter::Targets>()
        .map(|_| Some(text.to_string()))
        .map_err(|e| {
            format!(
                "expected a log level (error, warn, info, debug, trace) or RUST_LOG directives: {e}"
            )
        })
}

/// An absolute path (a `unix://` prefix, as Docker writes `DOCKER_HOST`, is accepted and
/// dropped). A relative path would depend on the agent's working directory.
fn socket_path(value: &Value) -> Result<String, String> {
    let text = value.as_str().unwrap_or_default();
    let path = text.strip_prefix("unix://").unwrap_or(text);
    if path.starts_with('/') && !path.contains('\0') {
        Ok(path.to_string())
    } else {
        Err(format!(
            "expected an absolute unix socket path such as /var/run/docker.sock, got {}",
            describe(value)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_levels_are_checked() {
        for good in ["debug", "INFO", "info,edgeguard::hub=trace", " warn "] {
            assert!(log_level(&json!(good)).unwrap().is_some(), "{good}");
        }
        assert_eq!(log_level(&json!("")).unwrap(), None);
        assert_eq!(log_level(&Value::Null).unwrap(), None);
        for bad in [json!("verbose"), json!("info,edgeguard=lots"), json!(3)] {
            assert!(log_level(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        let names: Vec<String> = Key::all().map(Key::name).collect();
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert_eq!(names.len(), 5 + EventKind::ALL.len() + 6 + 20);
        for key in Key::all() {
            assert_eq!(Key::from_name(&key.name()), Some(key));
        }
        assert!(names.contains(&"eventPriorityConnectedHardware".to_string()));
        assert!(names.contains(&"aggregationIntervalProcessTerminate".to_string()));
    }

    #[test]
    fn detection_rules_disabled_is_a_list_of_known_rule_ids() {
        let mut c = Config::default();
        let key = Key::DetectionRulesDisabled;
        assert_eq!(key.get(&c), json!(""));
        key.set(
            &mut c,
            &json!(" shell-in-container,exec-from-temp-dir,, shell-in-container "),
        )
        .unwrap();
        assert_eq!(
            c.detection_rules_disabled,
            [Rule::ExecFromTempDir, Rule::ShellInContainer]
        );
        assert_eq!(key.get(&c), json!("exec-from-temp-dir,shell-in-container"));
        for bad in [
            json!("shell-in-container,nope"),
            json!(["shell-in-container"]),
            json!(5),
        ] {
            let e = key.set(&mut c, &bad).unwrap_err();
            assert!(e.contains("login-brute-force"), "{e}");
        }
        assert_eq!(
            c.detection_rules_disabled.len(),
            2,
            "unchanged by a bad value"
        );
        key.set(&mut c, &json!("")).unwrap();
        assert!(c.detection_rules_disabled.is_empty());
    }

    #[test]
    fn file_integrity_paths_are_absolute_and_deduplicated() {
        let mut c = Config::default();
        let key = Key::FileIntegrityPaths;
        assert_eq!(key.get(&c), Value::Null, "defaults");
        key.set(&mut c, &json!(" /etc/passwd,, /opt/app/** ,/etc/passwd"))
            .unwrap();
        assert_eq!(
            c.file_integrity_paths.as_deref(),
            Some(&["/etc/passwd".to_string(), "/opt/app/**".to_string()][..])
        );
        assert_eq!(key.get(&c), json!("/etc/passwd,/opt/app/**"));
        let too_many = (0..=MAX_FILE_INTEGRITY_PATHS)
            .map(|i| format!("/p{i}"))
            .collect::<Vec<_>>()
            .join(",");
        for bad in [
            json!("etc/passwd"),
            json!("/etc/../root"),
            json!("/etc/./x"),
            json!("/a/**/b"),
            json!(""),
            json!(" , "),
            json!(["/etc"]),
            json!(true),
            json!(too_many),
        ] {
            assert!(key.set(&mut c, &bad).is_err(), "{bad}");
        }
        assert_eq!(
            c.file_integrity_paths.as_ref().unwrap().len(),
            2,
            "unchanged"
        );
        let on = Key::FileIntegrityEnabled;
        assert_eq!(on.get(&c), json!(true));
        on.set(&mut c, &json!(false)).unwrap();
        assert!(!c.file_integrity_enabled);
        assert!(on.set(&mut c, &json!("no")).is_err());
    }

    #[test]
    fn container_keys() {
        let mut c = Config::default();
        assert!(c.container_collection_enabled);
        assert_eq!(c.docker_socket_path, "/var/run/docker.sock");
        Key::DockerSocketPath
            .set(&mut c, &json!("unix:///run/moby.sock"))
            .unwrap();
        assert_eq!(c.docker_socket_path, "/run/moby.sock");
        assert_eq!(Key::DockerSocketPath.get(&c), json!("/run/moby.sock"));
        for bad in [
            json!("docker.sock"),
            json!(""),
            json!(5),
            json!("tcp://x:2375"),
        ] {
            assert!(Key::DockerSocketPath.set(&mut c, &bad).is_err(), "{bad}");
        }
        assert_eq!(c.docker_socket_path, "/run/moby.sock");
        Key::ContainerCollectionEnabled
            .set(&mut c, &json!(false))
            .unwrap();
        assert!(!c.container_collection_enabled);
        assert!(
            Key::ContainerCollectionEnabled
                .set(&mut c, &json!("no"))
                .is_err()
        );
    }

    #[test]
    fn unknown_names() {
        for name in [
            "",
            "HighPriorityMessageFrequency",
            "eventPriority",
            "eventPriorityprocessCreate",
            "aggregationEnabledLogin",
            "aggregationIntervalListeningPorts",
            "eventPriorityProcessCreate ",
        ] {
            assert_eq!(Key::from_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn unwraps_values() {
        assert_eq!(unwrap_value(&json!(5)), Ok(Some(&json!(5))));
        assert_eq!(unwrap_value(&json!({"value": 5})), Ok(Some(&json!(5))));
        assert_eq!(
            unwrap_value(&json!({"value": 5, "$metadata": {}})),
            Ok(Some(&json!(5)))
        );
        assert_eq!(unwrap_value(&json!(null)), Ok(None));
        assert_eq!(unwrap_value(&json!({"value": null})), Ok(None));
        assert_eq!(
            unwrap_value(&json!({"value": {"value": 1}})),
            Ok(Some(&json!({"value": 1})))
        );
        assert_eq!(unwrap_value(&json!({})), Ok(None), "a null IoT Hub removed");
        assert_eq!(unwrap_value(&json!({"$version": 3})), Ok(None));
        assert!(unwrap_value(&json!({"value": 1, "unit": "s"})).is_err());
    }

    #[test]
    fn integers() {
        assert_eq!(integer(&json!(204800), 8192, Some(262144)), Ok(204800));
        assert_eq!(integer(&json!(204800.0), 8192, Some(262144)), Ok(204800));
        assert_eq!(integer(&json!(8192), 8192, Some(262144)), Ok(8192));
        assert_eq!(integer(&json!(262144), 8192, Some(262144)), Ok(262144));
        assert_eq!(integer(&json!(u64::MAX), 8192, None), Ok(u64::MAX));
        for bad in [
            json!(8191),
            json!(262145),
            json!(-8192),
            json!(204800.5),
            json!(1e300),
            json!(-0.0),
            json!("204800"),
            json!(true),
            json!([204800]),
        ] {
            assert!(integer(&bad, 8192, Some(262144)).is_err(), "{bad}");
        }
        assert_eq!(
            integer(&json!(1), 8192, Some(262144)).unwrap_err(),
            "expected an integer from 8192 to 262144, got 1"
        );
        assert_eq!(
            integer(&json!("lots"), 8192, None).unwrap_err(),
            "expected an integer of at least 8192, got \"lots\""
        );
        assert!(integer(&json!(1e300), 8192, None).is_err());
    }

    #[test]
    fn priorities_ignore_case() {
        for (text, want) in [
            ("High", Priority::High),
            ("low", Priority::Low),
            ("OFF", Priority::Off),
        ] {
            assert_eq!(priority(&json!(text)), Ok(want));
        }
        for bad in [
            json!("Medium"),
            json!(""),
            json!(1),
            json!(null),
            json!(["High"]),
        ] {
            assert!(priority(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn get_and_set_agree() {
        let defaults = Config::default();
        let mut config = defaults.clone();
        for key in Key::all() {
            let value = key.get(&defaults);
            if value.is_null() {
                continue;
            }
            key.set(&mut config, &value).unwrap();
        }
        assert_eq!(config, defaults);
    }

    #[test]
    fn long_values_are_cut_short_in_messages() {
        let long = "é".repeat(10_000);
        assert!(describe(&json!(long)).len() < 100);
        assert_eq!(describe(&json!([[1]])), "an array");
        assert_eq!(describe(&json!(1.5)), "1.5");
    }
}
