//! Typed payload records, one struct per event kind, named and shaped as in the v1.0 schemas.

use super::{EventKind, ExtraDetails};
use serde::{Deserialize, Serialize, Serializer};
use std::net::IpAddr;
use uuid::Uuid;

/// Ports are strings in the schema (`"22"`, `"53248-53250"`, `"*"`); collectors deal in numbers.
fn port_str<S: Serializer>(port: &Option<u16>, s: S) -> Result<S::Ok, S::Error> {
    match port {
        Some(p) => s.collect_str(p),
        None => s.serialize_none(),
    }
}

fn port_str_req<S: Serializer>(port: &u16, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(port)
}

fn de_port_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

fn de_port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// `Direction` of a connection or firewall rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoginResult {
    Success,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FirewallAction {
    Allow,
    Deny,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BaselineResult {
    Pass,
    Fail,
    Err,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BaselineSeverity {
    Critical,
    Important,
    Warning,
    Informational,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DiagnosticSeverity {
    Fatal,
    Error,
    Warning,
    Information,
    Debug,
}

/// `ErrorType` of a `ConfigurationError` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfigErrorType {
    /// The value has the wrong type or is outside the allowed range.
    TypeMismatch,
    /// The value works but wastes resources.
    NotOptimal,
    /// The value contradicts another setting.
    Conflict,
}

/// `Queue` of a `DroppedEventsStatistics` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QueueName {
    High,
    Low,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessCreate {
    pub executable: String,
    pub command_line: String,
    pub process_id: u32,
    pub parent_process_id: u32,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessTerminate {
    pub executable: String,
    pub process_id: u32,
    pub exit_status: i32,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionCreate {
    pub remote_address: IpAddr,
    #[serde(serialize_with = "port_str_req", deserialize_with = "de_port")]
    pub remote_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address: Option<IpAddr>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "port_str",
        deserialize_with = "de_port_opt"
    )]
    pub local_port: Option<u16>,
    pub direction: Direction,
    pub protocol: String,
    pub process_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub executable: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Login {
    pub process_id: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    pub operation: String,
    pub executable: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<IpAddr>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "port_str",
        deserialize_with = "de_port_opt"
    )]
    pub remote_port: Option<u16>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "port_str",
        deserialize_with = "de_port_opt"
    )]
    pub local_port: Option<u16>,
    pub result: LoginResult,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListeningPort {
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address: Option<IpAddr>,
    #[serde(serialize_with = "port_str_req", deserialize_with = "de_port")]
    pub local_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<IpAddr>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "port_str",
        deserialize_with = "de_port_opt"
    )]
    pub remote_port: Option<u16>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// Every field is optional in the schema; a field the host does not expose is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInformation {
    #[serde(rename = "OSName", default, skip_serializing_if = "Option::is_none")]
    pub os_name: Option<String>,
    #[serde(rename = "OSVersion", default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(rename = "OSVendor", default, skip_serializing_if = "Option::is_none")]
    pub os_vendor: Option<String>,
    #[serde(
        rename = "OsArchitecture",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_architecture: Option<String>,
    #[serde(rename = "HostName", default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    #[serde(
        rename = "BIOSVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub bios_version: Option<String>,
    #[serde(
        rename = "BootDevice",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub boot_device: Option<String>,
    #[serde(
        rename = "TotalPhysicalMemoryInKB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub total_physical_memory_kb: Option<u64>,
    #[serde(
        rename = "FreePhysicalMemoryInKB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub free_physical_memory_kb: Option<u64>,
    #[serde(
        rename = "TotalVirtualMemoryInKB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub total_virtual_memory_kb: Option<u64>,
    #[serde(
        rename = "FreeVirtualMemoryInKB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub free_virtual_memory_kb: Option<u64>,
    #[serde(
        rename = "ExtraDetails",
        default,
        skip_serializing_if = "ExtraDetails::is_empty"
    )]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LocalUser {
    pub user_name: String,
    pub user_id: String,
    /// `;`-joined group names.
    pub group_names: String,
    /// `;`-joined group ids.
    pub group_ids: String,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FirewallRule {
    pub enabled: bool,
    pub action: FirewallAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BaselineCheck {
    pub description: String,
    pub cce_id: String,
    pub result: BaselineResult,
    pub error: String,
    pub severity: BaselineSeverity,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectedHardware {
    pub hardware_category: String,
    pub hardware_sub_category: String,
    pub hardware_name: String,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Diagnostic {
    pub severity: DiagnosticSeverity,
    pub message: String,
    pub process_id: u32,
    pub thread_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigurationError {
    pub configuration_name: String,
    pub error_type: ConfigErrorType,
    /// The value the agent uses instead, as text.
    pub used_configuration: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DroppedEventsStatistics {
    pub queue: QueueName,
    pub collected_events: u64,
    pub dropped_events: u64,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageStatistics {
    pub messages_sent: u64,
    #[serde(rename = "MessagesUnder4KB")]
    pub messages_under_4kb: u64,
    pub total_failed: u64,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// Health of a collector (`Status` of a `CollectorStatus` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CollectorHealth {
    /// Working from its preferred source.
    Up,
    /// Working from a fallback, or with part of its source missing.
    Degraded,
    /// Not collecting.
    Down,
}

impl CollectorHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectorHealth::Up => "Up",
            CollectorHealth::Degraded => "Degraded",
            CollectorHealth::Down => "Down",
        }
    }
}

/// A collector's health changed: what is missing, and what it falls back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CollectorStatus {
    /// The collector's name (`process`, `connection`, …).
    pub collector: String,
    pub status: CollectorHealth,
    /// What happened, for a human (`netlink process connector unavailable: permission denied`).
    pub message: String,
    /// What the collector does instead, if anything (`scanning /proc every second`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// What changed about a local account (`Operation` of a `UserChange` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccountOperation {
    UserAdded,
    UserRemoved,
    UserChanged,
    GroupAdded,
    GroupRemoved,
    GroupChanged,
}

/// A local user or group was added, removed or changed since the last look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserChange {
    pub operation: AccountOperation,
    /// User name, or group name for group operations.
    pub name: String,
    /// Uid, or gid for group operations.
    pub id: String,
    /// What changed, for `…Changed` (`uid 1000 -> 0; shell /bin/false -> /bin/bash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// Docker object an engine event is about (`ObjectType` of a `ContainerEvent` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContainerObject {
    Container,
    Image,
    Network,
    Volume,
}

/// Something happened to a container, image, network or volume, as the Docker engine's event
/// stream told it. Container fields are filled from the event's own attributes and, where the
/// engine leaves them out (network, volume and exec events), from edgeguard's container cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerEvent {
    /// The engine's action without its detail (`create`, `start`, `die`, `exec_start`, `pull`, …).
    pub action: String,
    pub object_type: ContainerObject,
    /// Full container id, when the event concerns a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// The image as referenced (`repo:tag`, `repo@sha256:…`, or an image id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Content digest or id of the image, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The IoT Edge module name, for containers that edgeAgent runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_name: Option<String>,
    /// Exit code of `die`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Command line of `exec_create` / `exec_start`: a shell in a running container is a signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Signal of `kill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// One security posture problem of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PostureFinding {
    /// Stable identifier of the check (`privileged`, `docker-socket-mounted`, …).
    pub id: String,
    pub severity: BaselineSeverity,
    /// What was found, for a human (`capability SYS_ADMIN added`).
    pub description: String,
    pub remediation: String,
    /// CIS Docker Benchmark recommendation (`5.4`), where one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cis_id: Option<String>,
}

/// One container with its security posture, from the periodic inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInventory {
    pub container_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// The image as referenced when the container was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image id the container runs (`sha256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_name: Option<String>,
    /// The engine's state (`running`, `exited`, `created`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub findings: Vec<PostureFinding>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// One image present on the device, from the periodic inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerImage {
    pub image_id: String,
    pub tags: Vec<String>,
    /// Repository digests (`repo@sha256:…`); empty for images built or loaded locally.
    pub digests: Vec<String>,
    pub size_bytes: i64,
    /// When the image was built, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// Something on-device detection (`crate::detect`) found suspicious: which rule, how bad, and
/// the process, account, address or container it is about. Raised once per subject and rule
/// within the suppression window, so a repeating cause does not flood the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Alert {
    /// Stable identifier of the rule (`shell-in-container`, …); also the metrics' `rule` label.
    pub rule_id: String,
    pub severity: BaselineSeverity,
    /// What was seen, for a human.
    pub description: String,
    pub remediation: String,
    /// The rule's title (`Shell history cleared`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// MITRE ATT&CK technique ids the rule detects (`["T1070.003"]`): an array, so a consumer
    /// need not split a string.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub techniques: Vec<String>,
    /// How many events led to this alert (failed logins for a brute-force alert, matches of a
    /// threshold rule, 2 for a sequence, else 1).
    pub event_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    /// User id, or the account name the alert is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_name: Option<String>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// The agent is alive: sent every `heartbeatFrequency` (default an hour) and at once, so an
/// upstream "device silent" rule can tell a silent device from one with nothing to report.
/// Never aggregated; off with `eventPriorityHeartbeat: Off`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Heartbeat {
    pub agent_version: String,
    pub uptime_seconds: u64,
    /// Sequence number of this heartbeat since the agent started (1, 2, …): a gap upstream
    /// means heartbeats were lost, a restart starts over.
    pub sequence: u64,
    /// Messages waiting in the spool for edgeHub's acknowledgement.
    pub spool_messages: u64,
    pub spool_bytes: u64,
    /// Events waiting in the cache (both priorities).
    pub queued_events: u64,
    pub collectors_up: u32,
    pub collectors_degraded: u32,
    pub collectors_down: u32,
    /// Events dropped since start (every stage and reason).
    pub dropped_events: u64,
    /// Each collector that is not `Up`, as `collector.<name>` → `Degraded`/`Down`.
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// Something to change on the device (`Recommendation` record): derived on the device from the
/// snapshots (listening ports, firewall, OS baseline, containers), the message statistics and
/// the twin configuration. A `Recommendation` event carries every current recommendation and is
/// sent only when the set changed; an empty one says that none is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Recommendation {
    /// Stable identifier of the kind of recommendation (`open-port-all-interfaces`, …).
    pub recommendation_id: String,
    pub title: String,
    pub severity: BaselineSeverity,
    /// What it is about (`tcp/22`, a chain, a container or module, `twin`).
    pub subject: String,
    pub description: String,
    /// What to change.
    pub remediation: String,
    /// The event kind it was derived from (`ListeningPorts`, …, `Configuration`).
    pub source: String,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// One installed package (`SoftwareInventory` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SoftwarePackage {
    pub name: String,
    pub version: String,
    /// Empty when the database does not say.
    pub architecture: String,
    /// `dpkg`, `opkg`, `apk` or `rpm`.
    pub package_manager: String,
    /// The source package or origin, when it differs from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// What happened to a package (`Operation` of a `SoftwareChange` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SoftwareOperation {
    Installed,
    Removed,
    /// Upgraded or downgraded: `PreviousVersion` says from what.
    VersionChanged,
}

/// A package installed, removed or changed since the last look (`SoftwareChange` record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SoftwareChange {
    pub operation: SoftwareOperation,
    pub name: String,
    /// The version now (the removed version for `Removed`).
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<String>,
    pub architecture: String,
    pub package_manager: String,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// A packet-filter ruleset change as it happened (`FirewallChange` record): one per operation,
/// family, table and chain of a committed transaction, with how many objects it touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FirewallChange {
    /// `RuleAdded`, `RuleDeleted`, `ChainAdded` (also a policy change), `ChainDeleted`,
    /// `TableAdded`, `TableDeleted`, `Set…`, `Object…`, `Flowtable…`, `RulesetChanged`
    /// (iptables-legacy), `ChangesLost`.
    pub operation: String,
    /// `ip`, `ip6`, `inet`, `arp`, `bridge`, `netdev`.
    pub family: String,
    pub table: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    pub count: u64,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// What happened to a kernel module (`Action` of a `KernelModule` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModuleAction {
    Loaded,
    Removed,
}

/// A kernel module was loaded or removed: code running in the kernel changed, which is what a
/// rootkit does and what an appliance rarely does after boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KernelModule {
    pub name: String,
    pub action: ModuleAction,
    /// Size in bytes, from `/proc/modules` (a module uevent does not carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

/// What happened to a watched file (`Operation` of a `FileChange` record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileOperation {
    Created,
    Modified,
    Deleted,
    /// Moved to or from this path (`RenamedFrom` / `RenamedTo` in `ExtraDetails`).
    Renamed,
    /// Mode, owner, timestamps or extended attributes changed, not the content.
    Attributes,
}

/// A watched host file or directory changed (file integrity monitoring). Several changes of
/// one path within a short window are one record (`Count` in `ExtraDetails`). Owner, mode,
/// size and hash are what the file is after the change (absent when it is gone or could not
/// be read); `HashBefore` is the last hash seen, where one was kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileChange {
    /// The host path (`/etc/passwd`), not the path under the agent's host root.
    pub path: String,
    pub operation: FileOperation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
    /// Permission bits in octal, setuid/setgid/sticky included (`4755`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256, lowercase hex, of the content before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_before: Option<String>,
    /// SHA-256, lowercase hex, of the content after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_after: Option<String>,
    #[serde(default, skip_serializing_if = "ExtraDetails::is_empty")]
    pub extra_details: ExtraDetails,
}

macro_rules! payloads {
    ($( $kind:ident($record:ty) ),* $(,)?) => {
        /// The `Payload` array of an event: records of one kind. Serializes as the bare array.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Payload { $( $kind(Vec<$record>), )* }

        impl Payload {
            pub fn kind(&self) -> EventKind {
                match self { $( Payload::$kind(_) => EventKind::$kind, )* }
            }

            pub fn len(&self) -> usize {
                match self { $( Payload::$kind(v) => v.len(), )* }
            }

            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// A payload of `kind` with no records.
            pub fn empty(kind: EventKind) -> Payload {
                match kind { $( EventKind::$kind => Payload::$kind(Vec::new()), )* }
            }

            /// Splits the records at `at`; `self` keeps `[0, at)`. Used to cut a snapshot that is
            /// too large for one message into several events of the same kind.
            pub fn split_off(&mut self, at: usize) -> Payload {
                match self { $( Payload::$kind(v) => Payload::$kind(v.split_off(at)), )* }
            }

            /// The `ExtraDetails` of the first record, where aggregation writes its hit count.
            pub fn first_extra_details_mut(&mut self) -> Option<&mut ExtraDetails> {
                match self { $( Payload::$kind(v) => v.first_mut().map(|r| &mut r.extra_details), )* }
            }

            /// Parses a payload array of the named kind (security messages from other modules).
            pub fn from_json(kind: EventKind, value: serde_json::Value) -> Result<Payload, serde_json::Error> {
                Ok(match kind { $( EventKind::$kind => Payload::$kind(serde_json::from_value(value)?), )* })
            }
        }
    };
}

payloads! {
    ProcessCreate(ProcessCreate),
    ProcessTerminate(ProcessTerminate),
    ConnectionCreate(ConnectionCreate),
    Login(Login),
    ListeningPorts(ListeningPort),
    SystemInformation(SystemInformation),
    LocalUsers(LocalUser),
    FirewallConfiguration(FirewallRule),
    OSBaseline(BaselineCheck),
    ConnectedHardware(ConnectedHardware),
    Diagnostic(Diagnostic),
    ConfigurationError(ConfigurationError),
    DroppedEventsStatistics(DroppedEventsStatistics),
    MessageStatistics(MessageStatistics),
    CollectorStatus(CollectorStatus),
    UserChange(UserChange),
    ContainerEvent(ContainerEvent),
    ContainerInventory(ContainerInventory),
    ContainerImages(ContainerImage),
    Alert(Alert),
    Heartbeat(Heartbeat),
    SoftwareInventory(SoftwarePackage),
    SoftwareChange(SoftwareChange),
    FirewallChange(FirewallChange),
    KernelModule(KernelModule),
    FileChange(FileChange),
    Recommendation(Recommendation),
}

/// The fields that decide which events the aggregator merges (security-events.md §4), borrowed
/// from the event. Compared and hashed field by field: building a key `String` per event (with
/// the addresses and port formatted as text) was most of the aggregated path's cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregationKey<'a> {
    ProcessCreate {
        executable: &'a str,
        command_line: &'a str,
        user_id: &'a str,
        /// An absent user name counts as empty.
        user_name: &'a str,
    },
    ProcessTerminate {
        executable: &'a str,
        exit_status: i32,
    },
    ConnectionCreate {
        executable: &'a str,
        /// An absent command line counts as empty.
        command_line: &'a str,
        /// An absent user id counts as empty.
        user_id: &'a str,
        direction: Direction,
        local_address: Option<IpAddr>,
        remote_address: IpAddr,
        protocol: &'a str,
        /// The local port of inbound (absent counts as 0), the remote port of outbound connections.
        port: u16,
    },
}

impl Payload {
    /// The aggregation key of a single-record ProcessCreate / ConnectionCreate / ProcessTerminate
    /// payload (security-events.md §4); `None` for every other payload. Process ids are not part
    /// of a key: a storm of the same command line becomes one event with a hit count.
    pub fn aggregation_key(&self) -> Option<AggregationKey<'_>> {
        Some(match self {
            Payload::ProcessCreate(v) if v.len() == 1 => {
                let r = &v[0];
                AggregationKey::ProcessCreate {
                    executable: &r.executable,
                    command_line: &r.command_line,
                    user_id: &r.user_id,
                    user_name: r.user_name.as_deref().unwrap_or(""),
                }
            }
            Payload::ProcessTerminate(v) if v.len() == 1 => {
                let r = &v[0];
                AggregationKey::ProcessTerminate {
                    executable: &r.executable,
                    exit_status: r.exit_status,
                }
            }
            Payload::ConnectionCreate(v) if v.len() == 1 => {
                let r = &v[0];
                AggregationKey::ConnectionCreate {
                    executable: &r.executable,
                    command_line: r.command_line.as_deref().unwrap_or(""),
                    user_id: r.user_id.as_deref().unwrap_or(""),
                    direction: r.direction,
                    local_address: r.local_address,
                    remote_address: r.remote_address,
                    protocol: &r.protocol,
                    port: match r.direction {
                        Direction::In => r.local_port.unwrap_or(0),
                        Direction::Out => r.remote_port,
                    },
                }
            }
            _ => return None,
        })
    }
}
