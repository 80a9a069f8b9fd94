//! Agent configuration: the module twin's desired `SecurityAgentConfiguration` object, checked key
//! by key and turned into a typed [`Config`].
//!
//! We keep the retired Azure security agent's object name, key names and `{"value": X}` wrapping so
//! existing deployments keep working (security-events.md §3), but not its failure modes: a patch
//! changes only the keys it names, `null` restores one key's default, and a bad key is rejected
//! alone ([`Rejected`], reported as a `ConfigurationError` event) while the rest applies.
//!
//! - `duration`: ISO-8601 durations.
//! - `key`: the twin key names and how each value is read and shown.
//! - `patch`: applying a desired object, the cross-key checks, and the reported view.
//! - `document`: finding the object in a twin, a desired-properties object or a file.

mod document;
mod duration;
mod key;
mod patch;

pub use document::{Desired, load_file, load_str, locate};
pub use duration::{format_duration, parse_duration};
pub use patch::{apply_patch, from_desired, reported};

use crate::detect::{AllowLists, CustomRules, Rule, RuleOverride};
use crate::event::{
    ConfigErrorType, ConfigurationError, Event, EventKind, ExtraDetails, Payload, Priority,
};
use crate::text::shorten;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The desired (and reported) property holding the agent configuration.
pub const CONFIG_OBJECT: &str = "ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration";

/// Smallest message and cache size the old agents accepted: one event must fit in a message.
const MIN_SIZE_BYTES: u64 = 8192;
/// IoT Hub's device-to-cloud message limit is 256 KB.
const MAX_MESSAGE_BYTES: u64 = 262_144;
/// IoT Hub meters messages in 4 KB blocks, so other sizes pay for space they do not use.
const MESSAGE_BLOCK_BYTES: u64 = 4096;

const DEFAULT_AGGREGATION: Aggregation = Aggregation {
    enabled: true,
    interval: Duration::from_secs(3600),
};

/// Effective agent configuration: what components see. One that comes out of this module is
/// always valid: sizes in range, the cache holds at least one message, high-priority messages go
/// out no less often than low-priority ones, every duration is positive.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub high_priority_message_frequency: Duration,
    pub low_priority_message_frequency: Duration,
    pub snapshot_frequency: Duration,
    pub max_local_cache_size_in_bytes: u64,
    pub max_message_size_in_bytes: u64,
    /// One entry per [`EventKind::ALL`].
    pub event_priorities: BTreeMap<EventKind, Priority>,
    /// One entry per [`EventKind::AGGREGATABLE`].
    pub aggregation: BTreeMap<EventKind, Aggregation>,
    pub baseline_custom_checks_enabled: bool,
    pub baseline_custom_checks_file_path: Option<String>,
    pub baseline_custom_checks_file_hash: Option<String>,
    pub hub_resource_id: String,
    /// edgeguard's own key: log filter in `RUST_LOG` syntax, applied at run time; `None` keeps
    /// the one the agent started with (`RUST_LOG`, default `info`).
    pub log_level: Option<String>,
    /// Whether the Docker watcher, inventory and enrichment run (`containerCollectionEnabled`).
    pub container_collection_enabled: bool,
    /// The Docker engine's unix socket (`dockerSocketPath`), as mounted into the module.
    pub docker_socket_path: String,
    /// Detection rules turned off (`detectionRulesDisabled`), in [`Rule::all`] order.
    pub detection_rules_disabled: Vec<Rule>,
    /// How often a `Heartbeat` is sent (`heartbeatFrequency`, edgeguard's own key).
    pub heartbeat_frequency: Duration,
    /// How long a periodic snapshot identical to the last one sent may be held back
    /// (`snapshotRefreshFrequency`, edgeguard's own key): [`crate::collectors::SnapshotDedup`].
    /// Zero sends every snapshot in full, as the retired agents did.
    pub snapshot_refresh_frequency: Duration,
    /// How long the behaviour baseline learns (`behaviourLearningPeriod`, default 24 h; zero
    /// turns it off): [`crate::detect::behaviour`].
    pub behaviour_learning_period: Duration,
    /// `behaviourBaselineReset`: a new value resets the learned baseline.
    pub behaviour_baseline_reset: Option<String>,
    /// Whether the file integrity collector runs (`fileIntegrityEnabled`).
    pub file_integrity_enabled: bool,
    /// Host paths the file integrity collector watches (`fileIntegrityPaths`), replacing its
    /// defaults; `None`: the defaults ([`crate::collectors::files::DEFAULT_PATHS`] and every
    /// home's shell and ssh files).
    pub file_integrity_paths: Option<Vec<String>>,
    /// Detection rules of the user's own (`detectionCustomRules`), compiled; none by default.
    pub detection_custom_rules: CustomRules,
    /// Severity, threshold and window of built-in rules (`detectionRuleOverrides`); none by
    /// default.
    pub detection_rule_overrides: BTreeMap<Rule, RuleOverride>,
    /// The allow-lists (`detectionAllowedProcesses`, `…Connections`, `…Users`,
    /// `…LoginSources`); all empty (off) by default.
    pub detection_allow_lists: AllowLists,
}

/// An hour: a silent device is noticed within the hour, not at the next low-priority timer
/// hours later. Each heartbeat is a message of its own on an idle device, and IoT Hub bills a
/// message at least one 4 KB unit: every five minutes would be 288 units a day, three times the
/// idle device-day budget (`docs/benchmarks.md`, "Cost of a device-day"). edgeAgent already
/// reports whether the module runs; the heartbeat adds the agent's own health.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3600);

/// A week: an unchanged snapshot is re-sent in full at least weekly, so the latest one of each
/// kind stays within any retention upstream (Log Analytics keeps 30 days by default) while an
/// idle device stops paying a full inventory and baseline (about 50 units) twice a day.
pub const DEFAULT_SNAPSHOT_REFRESH: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where Docker (Moby) listens on an IoT Edge device, and where the module mounts it.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Aggregation settings of one aggregatable event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregation {
    pub enabled: bool,
    /// Length of the window whose identical events become one `Aggregated` event.
    pub interval: Duration,
}

/// The twin defaults of the retired agents (`azureiotsecurity_default.json`).
impl Default for Config {
    fn default() -> Config {
        Config {
            high_priority_message_frequency: Duration::from_secs(7 * 60),
            low_priority_message_frequency: Duration::from_secs(5 * 3600),
            snapshot_frequency: Duration::from_secs(13 * 3600),
            max_local_cache_size_in_bytes: 2_560_000,
            max_message_size_in_bytes: 204_800,
            event_priorities: EventKind::ALL
                .iter()
                .map(|kind| (*kind, kind.default_priority()))
                .collect(),
            aggregation: EventKind::AGGREGATABLE
                .iter()
                .map(|kind| (*kind, DEFAULT_AGGREGATION))
                .collect(),
            baseline_custom_checks_enabled: false,
            baseline_custom_checks_file_path: None,
            baseline_custom_checks_file_hash: None,
            hub_resource_id: String::new(),
            log_level: None,
            container_collection_enabled: true,
            docker_socket_path: DEFAULT_DOCKER_SOCKET.to_string(),
            detection_rules_disabled: Vec::new(),
            heartbeat_frequency: DEFAULT_HEARTBEAT,
            snapshot_refresh_frequency: DEFAULT_SNAPSHOT_REFRESH,
            behaviour_learning_period: Duration::from_secs(24 * 3600),
            behaviour_baseline_reset: None,
            file_integrity_enabled: true,
            file_integrity_paths: None,
            detection_custom_rules: CustomRules::default(),
            detection_rule_overrides: BTreeMap::new(),
            detection_allow_lists: AllowLists::default(),
        }
    }
}

impl Config {
    /// The sending priority of `kind` (its default if the map lacks it).
    pub fn priority(&self, kind: EventKind) -> Priority {
        self.event_priorities
            .get(&kind)
            .copied()
            .unwrap_or_else(|| kind.default_priority())
    }

    /// Some only for aggregatable kinds whose aggregation is enabled.
    pub fn aggregation(&self, kind: EventKind) -> Option<Aggregation> {
        if !kind.is_aggregatable() {
            return None;
        }
        Some(self.aggregation_entry(kind)).filter(|a| a.enabled)
    }

    /// The settings of an aggregatable kind, enabled or not (defaults if the map lacks it).
    fn aggregation_entry(&self, kind: EventKind) -> Aggregation {
        self.aggregation
            .get(&kind)
            .copied()
            .unwrap_or(DEFAULT_AGGREGATION)
    }
}

/// One key of a desired patch that was not applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejected {
    /// The twin key name, e.g. `maxMessageSizeInBytes`.
    pub key: String,
    pub error_type: ConfigErrorType,
    /// The value still in use, as text in twin form (`PT7M`, `204800`, `Low`, `true`, `null`);
    /// empty for an unknown key.
    #[serde(rename = "usedConfiguration")]
    pub used: String,
    /// Why, for a human.
    pub message: String,
}

impl Rejected {
    /// The `ConfigurationError` event that tells the cloud about this rejection.
    pub fn to_event(&self) -> Event {
        Event::new(Payload::ConfigurationError(vec![ConfigurationError {
            configuration_name: self.key.clone(),
            error_type: self.error_type,
            used_configuration: self.used.clone(),
            message: self.message.clone(),
            extra_details: ExtraDetails::new(),
        }]))
    }
}

/// Why a configuration document could not be used at all (a bad key is a [`Rejected`] instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config is not valid JSON (line {}, column {})", .0.line(), .0.column())]
    Json(#[source] serde_json::Error),
    #[error("unrecognised config document: {0}")]
    Shape(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_every_kind() {
        let config = Config::default();
        assert_eq!(config.event_priorities.len(), EventKind::ALL.len());
        for kind in EventKind::ALL {
            assert_eq!(config.priority(*kind), kind.default_priority());
        }
        assert_eq!(config.priority(EventKind::Login), Priority::High);
        for kind in EventKind::AGGREGATABLE {
            assert_eq!(config.aggregation(kind), Some(DEFAULT_AGGREGATION));
        }
        assert_eq!(config.aggregation(EventKind::Login), None);
    }

    #[test]
    fn disabled_aggregation_is_none() {
        let mut config = Config::default();
        config.aggregation.insert(
            EventKind::ProcessCreate,
            Aggregation {
                enabled: false,
                interval: Duration::from_secs(60),
            },
        );
        assert_eq!(config.aggregation(EventKind::ProcessCreate), None);
        assert!(config.aggregation(EventKind::ConnectionCreate).is_some());
    }

    #[test]
    fn rejection_becomes_a_configuration_error_event() {
        let rejected = Rejected {
            key: "maxMessageSizeInBytes".into(),
            error_type: ConfigErrorType::NotOptimal,
            used: "204800".into(),
            message: "why".into(),
        };
        let event = rejected.to_event();
        assert_eq!(event.kind(), EventKind::ConfigurationError);
        let Payload::ConfigurationError(records) = &event.payload else {
            panic!("wrong payload {:?}", event.payload);
        };
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].configuration_name, "maxMessageSizeInBytes");
        assert_eq!(records[0].error_type, ConfigErrorType::NotOptimal);
        assert_eq!(records[0].used_configuration, "204800");
        assert_eq!(records[0].message, "why");
    }

    #[test]
    fn error_messages_are_short_with_the_cause_as_source() {
        use std::error::Error as _;
        let json = serde_json::from_str::<serde_json::Value>("{\n  \"a\": }").unwrap_err();
        let error = Error::Json(json);
        assert_eq!(
            error.to_string(),
            "config is not valid JSON (line 2, column 8)"
        );
        assert!(error.source().is_some());
        let error = Error::Read {
            path: "/nope.json".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(error.to_string(), "cannot read config file /nope.json");
        assert!(error.source().is_some());
    }
}
