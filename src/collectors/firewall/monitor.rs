//! `FirewallChange`: ruleset changes as they happen, not samples.
//!
//! The `FirewallConfiguration` snapshot is taken on the snapshot timer, so a flush that is
//! undone six seconds later was never seen. This watcher reports every change:
//!
//! - **nftables** (and iptables-nft, which writes nf_tables): the kernel multicasts every
//!   committed change on the `NFNLGRP_NFTABLES` netlink group, the one `nft monitor` listens to.
//!   Each transaction is a run of object messages (`NFT_MSG_NEWRULE`, `NFT_MSG_DELCHAIN`, …)
//!   closed by `NFT_MSG_NEWGEN`, which names the generation and the process that committed it.
//!   One `FirewallChange` event per transaction: one record per (operation, family, table, chain)
//!   with `Count`, so `nft flush ruleset` over 5,000 rules is one event, not 5,000.
//! - **iptables-legacy** has no notifications: every [`LEGACY_INTERVAL`] a digest of each legacy
//!   table (`IPT_SO_GET_INFO`/`IP6T_SO_GET_INFO`: hooks, underflows, number of entries and size;
//!   a getsockopt per table, no rule is read) is compared with the last one; a difference is one
//!   `RulesetChanged` record naming the table, with the entry counts before and after. A rule
//!   replaced by one of exactly the same size is not seen by this digest.
//!
//! A dropped notification (socket buffer overflow, `ENOBUFS`) is counted
//! (`edgeguard_errors_total{component="firewall_changes",error_type="overflow"}`) and reported as
//! one record with `Operation: ChangesLost`.

use crate::collectors::{Context, Running, Triggered};
use crate::event::{CollectorHealth, Event, ExtraDetails, FirewallChange, Payload};
use crate::kernel::bytes::{u16_at, u32_at};
use crate::kernel::netlink;
use crate::kernel::socket::{set_recv_buffer, set_recv_timeout, setsockopt, socket};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The watcher's name (metric label, `CollectorStatus.Collector`).
pub const COLLECTOR: &str = "firewall_changes";

/// How often the legacy tables' digests are compared.
pub const LEGACY_INTERVAL: Duration = Duration::from_secs(1);

/// Records of one transaction beyond this many are folded into the last one (`Truncated`).
pub const MAX_RECORDS: usize = 64;

/// A transaction that never sees its `NEWGEN` (a kernel that does not send one) is reported
/// after this long.
const OPEN_BATCH_WAIT: Duration = Duration::from_secs(1);

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNLGRP_NFTABLES: u32 = 7;
const SOL_NETLINK: i32 = 270;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// What one nftables message did, as a record's `Operation`.
fn operation(msg: u16) -> Option<&'static str> {
    Some(match msg {
        0 => "TableAdded",
        2 | 26 => "TableDeleted",
        // A new chain, or a chain's policy or hook updated.
        3 => "ChainAdded",
        5 | 27 => "ChainDeleted",
        6 => "RuleAdded",
        8 | 28 => "RuleDeleted",
        9 => "SetAdded",
        11 | 29 => "SetDeleted",
        12 => "SetElementsAdded",
        14 | 30 => "SetElementsDeleted",
        18 => "ObjectAdded",
        20 | 31 => "ObjectDeleted",
        22 => "FlowtableAdded",
        24 | 32 => "FlowtableDeleted",
        _ => return None,
    })
}

const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_NEWCHAIN: u16 = 3;

/// The nftables family names (`nfgenmsg.nfgen_family`).
fn family(f: u8) -> String {
    match f {
        1 => "inet".into(),
        2 => "ip".into(),
        3 => "arp".into(),
        5 => "netdev".into(),
        7 => "bridge".into(),
        10 => "ip6".into(),
        other => other.to_string(),
    }
}

/// The attributes of a netlink message body: `(type, value)`, walked over untrusted bytes.
fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(b, 0)? as usize;
        let kind = u16_at(b, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = b.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
        Some((kind, value))
    })
}

fn string(v: &[u8]) -> String {
    let v = v.split(|c| *c == 0).next().unwrap_or(&[]);
    crate::text::within_bytes(&String::from_utf8_lossy(v), 256)
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

/// One (operation, family, table, chain) of a transaction.
type Key = (&'static str, String, String, Option<String>);

/// The changes of one transaction so far.
#[derive(Debug, Default)]
pub struct Batch {
    changes: BTreeMap<Key, (u64, ExtraDetails)>,
    since: Option<Instant>,
}

/// What a message meant for the watcher.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not an nftables change (or not understood): ignored.
    Ignored,
    /// Added to the batch.
    Added,
    /// The transaction is committed: generation, process id and name.
    Generation {
        id: Option<u32>,
        pid: Option<u32>,
        process: Option<String>,
    },
}

impl Batch {
    /// Takes one netlink message of the nftables group.
    pub fn add(&mut self, msg: &netlink::Message<'_>) -> Parsed {
        if msg.kind >> 8 != NFNL_SUBSYS_NFTABLES {
            return Parsed::Ignored;
        }
        let kind = msg.kind & 0xff;
        let Some(&fam) = msg.payload.first() else {
            return Parsed::Ignored;
        };
        let attrs = msg.payload.get(4..).unwrap_or(&[]);
        if kind == NFT_MSG_NEWGEN {
            let (mut id, mut pid, mut process) = (None, None, None);
            for (t, v) in attributes(attrs) {
                match t {
                    1 => id = be32(v),
                    2 => pid = be32(v),
                    3 => process = Some(string(v)),
                    _ => {}
                }
            }
            return Parsed::Generation { id, pid, process };
        }
        let Some(op) = operation(kind) else {
            return Parsed::Ignored;
        };
        let (mut table, mut chain, mut policy) = (String::new(), None, None);
        let is_chain = matches!(kind, 3 | 5 | 27);
        let is_rule = matches!(kind, 6 | 8 | 28);
        for (t, v) in attributes(attrs) {
            match (t, is_chain, is_rule) {
                (1, _, _) => table = string(v),
                (3, true, _) | (2, _, true) => chain = Some(string(v)),
                (5, true, _) if kind == NFT_MSG_NEWCHAIN => {
                    policy = be32(v).map(|p| if p == 1 { "accept" } else { "drop" })
                }
                _ => {}
            }
        }
        if self.changes.len() >= MAX_RECORDS
            && !self
                .changes
                .contains_key(&(op, family(fam), table.clone(), chain.clone()))
        {
            let last = self.changes.values_mut().last().expect("full");
            last.0 += 1;
            last.1.insert("Truncated".into(), "true".into());
            return Parsed::Added;
        }
        let entry = self
            .changes
            .entry((op, family(fam), table, chain))
            .or_default();
        entry.0 += 1;
        if let Some(p) = policy {
            entry.1.insert("Policy".into(), p.into());
        }
        self.since.get_or_insert_with(Instant::now);
        Parsed::Added
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether an open transaction has waited too long for its `NEWGEN`.
    fn stale(&self) -> bool {
        self.since.is_some_and(|s| s.elapsed() >= OPEN_BATCH_WAIT)
    }

    /// The records of the transaction, with what `NEWGEN` said about it; empties the batch.
    pub fn take(&mut self, generation: &Parsed) -> Vec<FirewallChange> {
        self.since = None;
        let mut common = ExtraDetails::new();
        common.insert("Backend".into(), "nftables".into());
        if let Parsed::Generation { id, pid, process } = generation {
            if let Some(id) = id {
                common.insert("Generation".into(), id.to_string());
            }
            if let Some(pid) = pid {
                common.insert("ProcessId".into(), pid.to_string());
            }
            if let Some(p) = process {
                common.insert("ProcessName".into(), p.clone());
            }
        }
        std::mem::take(&mut self.changes)
            .into_iter()
            .map(|((op, family, table, chain), (count, mut extra))| {
                extra.extend(common.clone());
                FirewallChange {
                    operation: op.to_string(),
                    family,
                    table,
                    chain,
                    count,
                    extra_details: extra,
                }
            })
            .collect()
    }
}

/// A socket subscribed to the nftables multicast group.
fn nft_socket() -> io::Result<OwnedFd> {
    let fd = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_NETFILTER).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("no netfilter netlink in this kernel (nfnetlink not loaded?): {e}"),
        )
    })?;
    netlink::bind(&fd, 0)?;
    setsockopt(&fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &NFNLGRP_NFTABLES).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot join the nftables group (nf_tables not loaded, or no CAP_NET_ADMIN): {e}"
            ),
        )
    })?;
    // Room for a large transaction (a flush of thousands of rules) between two reads.
    let _ = set_recv_buffer(&fd, 4 * 1024 * 1024);
    set_recv_timeout(&fd, Duration::from_millis(250))?;
    Ok(fd)
}

/// The digest of one iptables-legacy table: valid hooks, hook entries, underflows, number of
/// entries, size (`struct ipt_getinfo` without its name).
pub type Digest = [u32; 13];

/// `IPT_SO_GET_INFO` (same value as `IP6T_SO_GET_INFO`).
const SO_GET_INFO: i32 = 64;

/// The digest of legacy table `name` of `level` (`IPPROTO_IP` or `IPPROTO_IPV6`) on `fd` (a raw
/// socket of that family).
fn legacy_digest(fd: &impl AsFd, level: i32, name: &str) -> io::Result<Digest> {
    // struct ipt_getinfo { char name[32]; u32 valid_hooks, hook_entry[5], underflow[5],
    // num_entries, size; }
    let mut buf = [0u8; 32 + 13 * 4];
    let n = name.len().min(31);
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is valid for `len` bytes, which the kernel writes at most.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            SO_GET_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut d = [0u32; 13];
    for (i, v) in d.iter_mut().enumerate() {
        *v = u32_at(&buf, 32 + i * 4).unwrap_or(0);
    }
    Ok(d)
}

/// The legacy tables (from `/proc/net/ip_tables_names` and `ip6_tables_names`, which list
/// only the tables in use) and their digests.
struct Legacy {
    v4: Option<OwnedFd>,
    v6: Option<OwnedFd>,
    last: BTreeMap<(&'static str, String), Digest>,
    started: bool,
}

impl Legacy {
    fn open() -> Legacy {
        let raw = |domain| socket(domain, libc::SOCK_RAW, libc::IPPROTO_RAW).ok();
        Legacy {
            v4: raw(libc::AF_INET),
            v6: raw(libc::AF_INET6),
            last: BTreeMap::new(),
            started: false,
        }
    }

    fn available(&self) -> bool {
        self.v4.is_some() || self.v6.is_some()
    }

    /// The changes since the last look (none on the first).
    fn changes(&mut self) -> Vec<FirewallChange> {
        let mut now = BTreeMap::new();
        for (family, names, fd, level) in [
            (
                "ip",
                "/proc/net/ip_tables_names",
                &self.v4,
                libc::IPPROTO_IP,
            ),
            (
                "ip6",
                "/proc/net/ip6_tables_names",
                &self.v6,
                libc::IPPROTO_IPV6,
            ),
        ] {
            let Some(fd) = fd else { continue };
            // The module shares the host's network namespace: its /proc/net is the host's.
            let Ok(text) = std::fs::read_to_string(names) else {
                continue;
            };
            for name in text
                .lines()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .take(16)
            {
                if let Ok(d) = legacy_digest(fd, level, name) {
                    now.insert((family, name.to_string()), d);
                }
            }
        }
        let mut out = Vec::new();
        if self.started {
            let empty = [0u32; 13];
            for key in now.keys().chain(self.last.keys()) {
                let (before, after) = (self.last.get(key), now.get(key));
                if before == after
                    || out
                        .iter()
                        .any(|c: &FirewallChange| c.family == key.0 && c.table == key.1)
                {
                    continue;
                }
                let mut extra = ExtraDetails::new();
                extra.insert("Backend".into(), "iptables-legacy".into());
                extra.insert(
                    "EntriesBefore".into(),
                    before.unwrap_or(&empty)[11].to_string(),
                );
                extra.insert(
                    "EntriesAfter".into(),
                    after.unwrap_or(&empty)[11].to_string(),
                );
                out.push(FirewallChange {
                    operation: "RulesetChanged".into(),
                    family: key.0.to_string(),
                    table: key.1.clone(),
                    chain: None,
                    count: 1,
                    extra_details: extra,
                });
            }
        }
        self.started = true;
        self.last = now;
        out
    }
}

/// The watcher as the registry lists it.
pub struct FirewallMonitor;

impl Triggered for FirewallMonitor {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn start(self: Box<Self>, ctx: Context) -> io::Result<Running> {
        let (nft, nft_error) = match nft_socket() {
            Ok(fd) => (Some(fd), None),
            Err(e) => {
                ctx.metrics.error(COLLECTOR, "socket");
                tracing::warn!(collector = COLLECTOR, error = %e, "cannot follow nftables changes");
                (None, Some(e))
            }
        };
        let legacy = Legacy::open();
        if nft.is_none() && !legacy.available() {
            return Err(io::Error::other(
                "neither the nftables netlink group nor the iptables-legacy tables can be read (CAP_NET_ADMIN?)",
            ));
        }
        // The reason goes into the status: "not followed" alone does not tell an operator whether
        // the kernel lacks nf_tables (a module not loaded) or the agent lacks CAP_NET_ADMIN.
        let (status, message) = match &nft_error {
            None => (
                CollectorHealth::Up,
                "following nftables changes; comparing iptables-legacy tables every second"
                    .to_string(),
            ),
            Some(e) => (
                CollectorHealth::Degraded,
                format!(
                    "comparing iptables-legacy tables every second; nftables changes not followed ({e})"
                ),
            ),
        };
        ctx.report_status(COLLECTOR, status, &message, None);
        let thread = std::thread::Builder::new()
            .name("firewall-changes".into())
            .spawn(move || follow(ctx, nft, legacy))?;
        Ok(Running::Thread(thread))
    }
}

fn send(ctx: &Context, changes: Vec<FirewallChange>) -> bool {
    if changes.is_empty() {
        return true;
    }
    ctx.emit_from_reader(COLLECTOR, Event::new(Payload::FirewallChange(changes)))
}

fn follow(ctx: Context, nft: Option<OwnedFd>, mut legacy: Legacy) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut batch = Batch::default();
    let mut next_legacy = Instant::now();
    let mut lost = false;
    while !ctx.cancel.is_cancelled() {
        if Instant::now() >= next_legacy {
            next_legacy = Instant::now() + LEGACY_INTERVAL;
            if !send(&ctx, legacy.changes()) {
                return;
            }
        }
        let Some(fd) = &nft else {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        };
        match netlink::recv(fd, &mut buf) {
            Ok(n) => {
                for msg in netlink::messages(&buf[..n]) {
                    let Ok(msg) = msg else {
                        ctx.metrics.error(COLLECTOR, "malformed");
                        break;
                    };
                    let parsed = batch.add(&msg);
                    if matches!(parsed, Parsed::Generation { .. }) {
                        let mut changes = batch.take(&parsed);
                        if std::mem::take(&mut lost) {
                            changes.push(lost_record());
                        }
                        if !send(&ctx, changes) {
                            return;
                        }
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                ctx.metrics.error(COLLECTOR, "overflow");
                lost = true;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                ctx.metrics.error(COLLECTOR, "recv");
                tracing::warn!(collector = COLLECTOR, error = %e, "reading nftables changes failed");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        if batch.stale() || (lost && batch.is_empty()) {
            let mut changes = batch.take(&Parsed::Ignored);
            if std::mem::take(&mut lost) {
                changes.push(lost_record());
            }
            if !send(&ctx, changes) {
                return;
            }
        }
    }
}

fn lost_record() -> FirewallChange {
    let mut extra = ExtraDetails::new();
    extra.insert("Backend".into(), "nftables".into());
    FirewallChange {
        operation: "ChangesLost".into(),
        family: String::new(),
        table: String::new(),
        chain: None,
        count: 1,
        extra_details: extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::host::HostRoot;
    use crate::metrics::Metrics;
    use proptest::prelude::*;
    use std::process::Command;
    use std::sync::Arc;
    use tokio::sync::{mpsc, watch};
    use tokio_util::sync::CancellationToken;

    fn context() -> (Context, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(256);
        let (_cfg, config) = watch::channel(Arc::new(Config::default()));
        (
            Context {
                host: HostRoot::default(),
                events: tx,
                metrics: Arc::new(Metrics::for_tests()),
                config,
                cancel: CancellationToken::new(),
                state_dir: std::env::temp_dir(),
            },
            rx,
        )
    }

    fn run(program: &str, args: &[&str]) {
        let out = Command::new(program).args(args).output().expect(program);
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Firewall changes received until `done` says the records seen so far are enough (or 20 s).
    fn changes_until(
        rx: &mut mpsc::Receiver<Event>,
        done: impl Fn(&[FirewallChange]) -> bool,
    ) -> Vec<FirewallChange> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while !done(&seen) && Instant::now() < deadline {
            match rx.try_recv() {
                Ok(Event {
                    payload: Payload::FirewallChange(c),
                    ..
                }) => seen.extend(c),
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        seen
    }

    fn has(seen: &[FirewallChange], op: &str, table: &str, count: u64) -> bool {
        seen.iter()
            .any(|c| c.operation == op && c.table == table && c.count == count)
    }

    /// Real nftables transactions through the real kernel: each is seen with its process, a
    /// flush as one record counting the rules it removed, a policy change with the policy.
    #[test]
    fn nftables_changes_are_seen_as_they_are_committed() {
        let table = format!("egmon{}", std::process::id());
        let (ctx, mut rx) = context();
        let Running::Thread(thread) = Box::new(FirewallMonitor).start(ctx.clone()).unwrap() else {
            panic!("a thread");
        };
        run("nft", &["add", "table", "inet", &table]);
        run(
            "nft",
            &[
                "add chain inet",
                &table,
                "c { type filter hook input priority 0; policy accept; }",
            ]
            .join(" ")
            .split(' ')
            .collect::<Vec<_>>(),
        );
        for host in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            run(
                "nft",
                &[
                    "add", "rule", "inet", &table, "c", "ip", "saddr", host, "drop",
                ],
            );
        }
        run("nft", &["flush", "table", "inet", &table]);
        run(
            "nft",
            &[
                "chain", "inet", &table, "c", "{", "policy", "drop", ";", "}",
            ],
        );
        run("nft", &["delete", "table", "inet", &table]);
        let seen = changes_until(&mut rx, |s| has(s, "TableDeleted", &table, 1));
        let ours: Vec<&FirewallChange> = seen.iter().filter(|c| c.table == table).collect();
        assert!(has(&seen, "TableAdded", &table, 1), "{ours:#?}");
        assert!(
            ours.iter()
                .filter(|c| c.operation == "RuleAdded")
                .all(|c| c.chain.as_deref() == Some("c") && c.family == "inet"),
            "{ours:#?}"
        );
        assert_eq!(
            ours.iter().filter(|c| c.operation == "RuleAdded").count(),
            3,
            "one transaction each: {ours:#?}"
        );
        assert!(
            has(&seen, "RuleDeleted", &table, 3),
            "the flush, one record: {ours:#?}"
        );
        assert!(
            ours.iter().any(|c| c.operation == "ChainAdded"
                && c.extra_details.get("Policy").map(String::as_str) == Some("drop")),
            "the policy change: {ours:#?}"
        );
        assert!(has(&seen, "TableDeleted", &table, 1), "{ours:#?}");
        assert!(
            ours.iter()
                .all(
                    |c| c.extra_details.get("ProcessName").map(String::as_str) == Some("nft")
                        && c.extra_details.contains_key("ProcessId")
                ),
            "{ours:#?}"
        );
        ctx.cancel.cancel();
        thread.join().unwrap();
    }

    /// A rule added and removed with iptables-legacy is seen by the digest (looks taken by
    /// hand here, so the test does not depend on when the thread looks).
    #[test]
    fn iptables_legacy_changes_are_seen_by_the_digest() {
        // Listing loads the table (on a fresh boot it does not exist yet, and its creation
        // would count its built-in entries too).
        run("iptables-legacy", &["-t", "raw", "-S"]);
        let mut legacy = Legacy::open();
        assert!(legacy.available());
        assert!(
            legacy.changes().is_empty(),
            "the first look reports nothing"
        );
        // The raw table is rarely used by anyone else on the machine.
        let rule = [
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-s",
            "192.0.2.77",
            "-j",
            "DROP",
        ];
        run("iptables-legacy", &rule);
        let seen = legacy.changes();
        let delete: Vec<&str> = rule
            .iter()
            .map(|a| if *a == "-A" { "-D" } else { a })
            .collect();
        run("iptables-legacy", &delete);
        let added = seen
            .iter()
            .find(|c| c.operation == "RulesetChanged" && c.table == "raw" && c.family == "ip")
            .unwrap_or_else(|| panic!("{seen:#?}"));
        let n = |c: &FirewallChange, k: &str| c.extra_details[k].parse::<u32>().unwrap();
        assert_eq!(
            n(added, "EntriesAfter"),
            n(added, "EntriesBefore") + 1,
            "{added:?}"
        );
        let seen = legacy.changes();
        let removed = seen
            .iter()
            .find(|c| c.table == "raw" && c.family == "ip")
            .unwrap_or_else(|| panic!("the removal is seen too: {seen:#?}"));
        assert_eq!(n(removed, "EntriesAfter") + 1, n(removed, "EntriesBefore"));
        assert!(
            legacy.changes().iter().all(|c| c.table != "raw"),
            "nothing more"
        );
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn a_full_batch_folds_into_its_last_record() {
        let mut b = Batch::default();
        for i in 0..(MAX_RECORDS + 10) {
            let name = format!("t{i:03}\0");
            let mut body = vec![2, 0, 0, 0];
            body.extend_from_slice(&((4 + name.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&1u16.to_ne_bytes());
            body.extend_from_slice(name.as_bytes());
            while body.len() % 4 != 0 {
                body.push(0);
            }
            let new_table = NFNL_SUBSYS_NFTABLES << 8; // NFT_MSG_NEWTABLE is 0
            let m = message(new_table, &body);
            let msg = netlink::messages(&m).next().unwrap().unwrap();
            assert_eq!(b.add(&msg), Parsed::Added);
        }
        let records = b.take(&Parsed::Ignored);
        assert_eq!(records.len(), MAX_RECORDS);
        assert_eq!(
            records.iter().map(|r| r.count).sum::<u64>(),
            MAX_RECORDS as u64 + 10
        );
        assert!(b.is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_messages_never_panic(kind in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut b = Batch::default();
            let m = message(kind, &body);
            for msg in netlink::messages(&m).flatten() {
                let parsed = b.add(&msg);
                let _ = b.take(&parsed);
            }
        }
    }
}
