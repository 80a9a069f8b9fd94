//! `FirewallConfiguration`: the host's live packet-filter ruleset, from every backend it may use.
//!
//! A device can filter with nftables, with iptables on the legacy `x_tables` backend, with
//! iptables on the nf_tables backend, or with a mix (Docker still writes iptables rules), for IPv4
//! and IPv6. The retired agent read IPv4 iptables only, so a device filtering with nftables looked
//! unprotected. We ask each backend's own tool, because only the tools know their kernel formats:
//!
//! | tool | backend | format |
//! |---|---|---|
//! | `nft -j list ruleset` | `nftables` | JSON (libnftables-json(5)) |
//! | `iptables-legacy-save`, `ip6tables-legacy-save` | `iptables-legacy` | iptables-save text |
//! | `iptables-nft-save`, `ip6tables-nft-save` | `iptables-nft` | iptables-save text |
//! | `iptables-save`, `ip6tables-save` (only when neither variant exists) | from its header | iptables-save text |
//!
//! The tools are the host's own: when the host root is `/` they run directly, otherwise chrooted
//! into the host root (needs `CAP_SYS_CHROOT`; the module already shares the host's network
//! namespace, which is what the tools read). Each run has a time limit and an output cap.
//!
//! **De-duplication.** iptables-nft rules live in nf_tables, so `nft` lists them too, but it shows
//! their `xt` matches and targets only by name (`{"xt":{"type":"target","name":"REJECT"}}`).
//! Every nft table that iptables-nft-save also printed (same family and name) is therefore taken
//! from iptables-nft-save and dropped from the nft listing. Legacy tables are separate kernel
//! tables and never overlap.
//!
//! **Mapping.** One record per rule: `Priority` is the rule's 1-based position in its chain (as in
//! `iptables -L --line-numbers`), `ChainName` is `table/chain`, `Direction` is `In` for
//! input/prerouting/ingress chains and `Out` for output/postrouting/egress ones (omitted for
//! forward and user chains), `Action` is `Allow` (accept), `Deny` (drop, reject) or `Other`
//! (jump, goto, return, log, NAT, …; the verdict is in `ExtraDetails.Target`). A negated match
//! keeps iptables' notation (`!192.168.0.0/16`). Each base chain's policy becomes one more record
//! after its rules, with `ExtraDetails.Policy = "true"`.
//!
//! **No firewall.** When every tool that exists answered and the ruleset has no rule and only
//! accepting policies, nothing filters traffic. That is reported explicitly as one record with
//! `Enabled: false`, `Action: Allow`, `ChainName: "none"`, `ExtraDetails.NoFirewall = "true"` and
//! `ExtraDetails.Backend` listing every backend that answered (comma-separated), so "checked and
//! found nothing" differs from "could not check" (an empty snapshot plus a `Degraded` status).

mod iptables;
pub mod monitor;
mod nft;
mod rule;
mod ruleset;
#[cfg(test)]
mod tests;
mod tool;

pub use iptables::*;
pub use nft::*;
use rule::*;
pub use ruleset::*;
pub use tool::*;

use super::Periodic;
use crate::event::{
    CollectorHealth, CollectorStatus, Event, EventKind, ExtraDetails, FirewallRule, Payload,
};
use crate::host::HostRoot;
use crate::metrics::Metrics;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The collector's name (metric label and `CollectorStatus.Collector`).
pub const COLLECTOR: &str = "firewall";

/// A tool that has not finished by then is killed: a wedged netlink socket must not stall the
/// periodic collectors.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The most output read from one tool. Large Kubernetes-style rulesets are a few MiB; anything
/// bigger is refused rather than half-parsed.
pub const MAX_TOOL_OUTPUT: usize = 16 * 1024 * 1024;

/// The most records one snapshot carries; the rest are counted in the log.
pub const MAX_RULES: usize = 10_000;

/// `ExtraDetails.Rule` keeps at most this many bytes of the original rule text. Public so the
/// fuzz targets (fuzz/) can check the bound.
pub const MAX_RULE_TEXT: usize = 512;

/// Where the tools are looked for, inside the host root. Fixed, so a container `PATH` never
/// decides which binary runs as root.
const TOOL_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
];

const TOOL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A firewall backend, as named in `ExtraDetails.Backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Nftables,
    IptablesLegacy,
    IptablesNft,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nftables => "nftables",
            Backend::IptablesLegacy => "iptables-legacy",
            Backend::IptablesNft => "iptables-nft",
        }
    }
}

/// The address family an iptables-save listing belongs to (`ExtraDetails.Family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    /// The nftables family name of the same tables (`ip`, `ip6`).
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "ip",
            IpFamily::V6 => "ip6",
        }
    }
}

/// What a parser made of one tool's output.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    /// Rules and policy records, in listing order.
    pub rules: Vec<FirewallRule>,
    /// `(family, table)` of every table the listing contained (for de-duplication).
    pub tables: Vec<(String, String)>,
    /// Lines or objects that could not be understood and were skipped.
    pub malformed: usize,
    /// The listing ended inside a table (no `COMMIT`): the output was cut short.
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("nft output is not valid JSON")]
    Json(#[source] serde_json::Error),
    #[error("nft output has no \"nftables\" array")]
    Shape,
}

/// Why a tool gave no listing.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("not installed")]
    NotFound,
    #[error("host root path is not usable for chroot")]
    BadRoot,
    #[error("could not start")]
    Spawn(#[source] std::io::Error),
    #[error("reading its output")]
    Io(#[source] std::io::Error),
    #[error("did not finish within {0:?}")]
    Timeout(Duration),
    #[error("output larger than {0} bytes")]
    TooLarge(usize),
    #[error("exited with {status}: {stderr}")]
    Failed { status: String, stderr: String },
}

/// Runs a tool; swapped out in tests.
type Runner = Box<dyn FnMut(&Path) -> Vec<ToolRun> + Send>;

/// The periodic `FirewallConfiguration` collector. Blocking (it runs processes): called by
/// `run_periodic` on a blocking thread like every [`Periodic`].
pub struct FirewallCollector {
    metrics: Arc<Metrics>,
    runner: Runner,
    /// The last health reported, so a status event is sent on changes only.
    last: Option<(CollectorHealth, String)>,
}

impl FirewallCollector {
    pub fn new(metrics: Arc<Metrics>) -> FirewallCollector {
        FirewallCollector {
            metrics,
            runner: Box::new(run_all),
            last: None,
        }
    }

    #[cfg(test)]
    fn with_runner(metrics: Arc<Metrics>, runner: Runner) -> FirewallCollector {
        FirewallCollector {
            metrics,
            runner,
            last: None,
        }
    }

    /// A `CollectorStatus` event when health changed: Degraded whenever the message changes, Up
    /// only when recovering (a healthy start is not news).
    fn status_event(&mut self, health: CollectorHealth, message: String) -> Option<Event> {
        let changed = match &self.last {
            None => health != CollectorHealth::Up,
            Some((h, m)) => *h != health || (health != CollectorHealth::Up && *m != message),
        };
        self.metrics.collector_status(COLLECTOR, health, &message);
        self.last = Some((health, message.clone()));
        if !changed {
            return None;
        }
        match health {
            CollectorHealth::Up => tracing::info!(collector = COLLECTOR, "{message}"),
            _ => tracing::warn!(collector = COLLECTOR, status = health.as_str(), "{message}"),
        }
        let fallback = (health != CollectorHealth::Up)
            .then(|| "reporting the backends that answered; none: empty snapshot".to_string());
        Some(Event::new(Payload::CollectorStatus(vec![
            CollectorStatus {
                collector: COLLECTOR.to_string(),
                status: health,
                message,
                fallback,
                extra_details: ExtraDetails::new(),
            },
        ])))
    }
}

impl Periodic for FirewallCollector {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn collect(&mut self, host: &HostRoot) -> Vec<Event> {
        let runs = (self.runner)(host.root());
        for run in &runs {
            if let Err(e) = &run.result
                && !matches!(e, ToolError::NotFound)
            {
                self.metrics.error(COLLECTOR, "tool_failed");
            }
        }
        let (rules, health, message) = records(snapshot(&runs));
        let mut events = Vec::new();
        if let Some(status) = self.status_event(health, message) {
            events.push(status);
        }
        events.push(if rules.is_empty() {
            Event::empty_snapshot(EventKind::FirewallConfiguration)
        } else {
            Event::new(Payload::FirewallConfiguration(rules))
        });
        events
    }
}
