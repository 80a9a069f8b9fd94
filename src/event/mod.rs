//! The event model: what a collector produces and what the security message v1.0 carries.
//!
//! Field names follow the retired Azure security agents' JSON schemas
//! (`shared/reference/asc-security-schemas`), so existing queries keep working. The schemas forbid
//! unknown payload fields (`additionalProperties: false`), which is why everything edgeguard adds
//! (container id, kernel release, hit counts, …) goes into the string-valued `ExtraDetails` map.

pub mod envelope;
mod json;
mod payload;
mod timestamp;

pub use envelope::{EncodeError, EncodedEvent, MessageHeader};
pub use payload::*;

use chrono::{DateTime, FixedOffset, Local};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use uuid::Uuid;

/// Free-form details of a payload record. Values are strings: the schema says so, and the old C
/// agent's numbers there broke consumers.
pub type ExtraDetails = BTreeMap<String, String>;

/// How an event came to be (`Category` in the envelope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Category {
    /// A snapshot taken on a timer; may be empty.
    Periodic,
    /// Something happened; never empty.
    Triggered,
    /// Several triggered events merged under one aggregation key (what the old agents sent, though
    /// the published schema does not list it).
    Aggregated,
}

/// `EventType` in the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    Security,
    Operational,
    Diagnostic,
}

/// Sending priority of an event kind, set per kind by `eventPriority{Name}` in the twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    High,
    Low,
    /// Not collected at all.
    Off,
}

impl Priority {
    /// The twin's spelling, without the allocation of `to_string()` (queue gauges use it as a
    /// label on every push).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "High",
            Priority::Low => "Low",
            Priority::Off => "Off",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! event_kinds {
    ($( $kind:ident => $etype:ident, $cat:ident, $prio:ident; )*) => {
        /// Every kind of event edgeguard knows; the name is the envelope's `Name`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum EventKind { $( $kind, )* }

        impl EventKind {
            /// All kinds, in catalog order.
            pub const ALL: &'static [EventKind] = &[ $( EventKind::$kind, )* ];

            /// The envelope `Name` (and the suffix of the twin's `eventPriority…` keys).
            pub fn name(self) -> &'static str {
                match self { $( EventKind::$kind => stringify!($kind), )* }
            }

            /// The envelope `EventType`.
            pub fn event_type(self) -> EventType {
                match self { $( EventKind::$kind => EventType::$etype, )* }
            }

            /// The category a fresh (not aggregated) event of this kind has.
            pub fn category(self) -> Category {
                match self { $( EventKind::$kind => Category::$cat, )* }
            }

            /// The priority the retired agents' twin defaults give this kind.
            pub fn default_priority(self) -> Priority {
                match self { $( EventKind::$kind => Priority::$prio, )* }
            }

            /// Parses an envelope `Name`.
            pub fn from_name(name: &str) -> Option<EventKind> {
                match name { $( stringify!($kind) => Some(EventKind::$kind), )* _ => None }
            }
        }
    };
}

event_kinds! {
    ProcessCreate => Security, Triggered, Low;
    ProcessTerminate => Security, Triggered, Low;
    ConnectionCreate => Security, Triggered, Low;
    Login => Security, Triggered, High;
    ListeningPorts => Security, Periodic, High;
    SystemInformation => Security, Periodic, Low;
    LocalUsers => Security, Periodic, High;
    FirewallConfiguration => Security, Periodic, Low;
    OSBaseline => Security, Periodic, Low;
    ConnectedHardware => Security, Periodic, Low;
    Diagnostic => Diagnostic, Triggered, Low;
    ConfigurationError => Operational, Triggered, Low;
    DroppedEventsStatistics => Operational, Periodic, Low;
    MessageStatistics => Operational, Periodic, Low;
    // edgeguard's additions (schemas in schemas/, same envelope):
    CollectorStatus => Operational, Triggered, Low;
    UserChange => Security, Triggered, High;
    ContainerEvent => Security, Triggered, High;
    ContainerInventory => Security, Periodic, Low;
    ContainerImages => Security, Periodic, Low;
    Alert => Security, Triggered, High;
    Heartbeat => Operational, Periodic, High;
    SoftwareInventory => Security, Periodic, Low;
    SoftwareChange => Security, Triggered, High;
    FirewallChange => Security, Triggered, High;
    KernelModule => Security, Triggered, High;
    FileChange => Security, Triggered, High;
    Recommendation => Security, Periodic, Low;
}

impl EventKind {
    /// Kinds whose events can be merged by the aggregator (`aggregationEnabled{Name}` in the twin).
    pub const AGGREGATABLE: [EventKind; 3] = [
        EventKind::ProcessCreate,
        EventKind::ConnectionCreate,
        EventKind::ProcessTerminate,
    ];

    pub fn is_aggregatable(self) -> bool {
        Self::AGGREGATABLE.contains(&self)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One security event: the envelope fields plus a typed payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Uuid,
    /// When it happened, in the device's local time zone (the UTC time is derived from it).
    pub time: DateTime<FixedOffset>,
    pub category: Category,
    pub payload: Payload,
    /// Sent by another module (the `securityMessages` input), not collected here: such events
    /// get a bounded share of the cache and never push edgeguard's own events out of it.
    pub foreign: bool,
}

/// A new random (version 4) event id. Drawn from a per-thread generator seeded once from the
/// OS, not from a `getrandom` call per event as `Uuid::new_v4` does: an event id only has to be
/// unique, and those calls (two per exec) were about 1.5 % of the process reader's time in an
/// exec storm.
pub fn new_id() -> Uuid {
    thread_local! {
        static IDS: std::cell::RefCell<fastrand::Rng> = std::cell::RefCell::new({
            let (a, b) = Uuid::new_v4().as_u64_pair();
            fastrand::Rng::with_seed(a ^ b.rotate_left(32))
        });
    }
    let bits = IDS.with(|rng| rng.borrow_mut().u128(..));
    uuid::Builder::from_random_bytes(bits.to_le_bytes()).into_uuid()
}

impl Event {
    /// A new event of the payload's own category, stamped now.
    pub fn new(payload: Payload) -> Event {
        Event {
            id: new_id(),
            time: Local::now().fixed_offset(),
            category: payload.kind().category(),
            payload,
            foreign: false,
        }
    }

    /// A periodic snapshot with no records (`IsEmpty: true`).
    pub fn empty_snapshot(kind: EventKind) -> Event {
        Event::new(Payload::empty(kind))
    }

    pub fn kind(&self) -> EventKind {
        self.payload.kind()
    }

    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}

/// Formats a local timestamp the way the old agents did: `2018-08-10T11:01:21.000+01:00`.
pub fn format_local(t: &DateTime<FixedOffset>) -> String {
    timestamp::local(t).as_str().to_owned()
}

/// Formats a UTC timestamp: `2018-08-10T10:01:21.000Z`.
pub fn format_utc(t: &DateTime<FixedOffset>) -> String {
    timestamp::utc(t).as_str().to_owned()
}

#[cfg(test)]
pub(crate) mod encode_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.name()), Some(*kind));
        }
        assert_eq!(EventKind::from_name("NoSuchEvent"), None);
    }

    #[test]
    fn event_ids_are_version_4_and_distinct_across_threads() {
        let ids = |n| (0..n).map(|_| new_id()).collect::<Vec<_>>();
        let here = ids(10_000);
        let there = std::thread::spawn(move || ids(10_000)).join().unwrap();
        let all: std::collections::HashSet<_> = here.iter().chain(&there).collect();
        assert_eq!(all.len(), 20_000);
        for id in all {
            assert_eq!(id.get_version(), Some(uuid::Version::Random));
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
    }

    #[test]
    fn timestamps_have_millis_and_offsets() {
        let t = DateTime::parse_from_rfc3339("2018-08-10T11:01:21.5+01:00").unwrap();
        assert_eq!(format_local(&t), "2018-08-10T11:01:21.500+01:00");
        assert_eq!(format_utc(&t), "2018-08-10T10:01:21.500Z");
    }
}
