//! Network namespaces of the host, each reached through one of its processes, and the local
//! addresses of a namespace.

use super::HostRoot;
use super::procfs::pids;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The target of a `/proc/<pid>/ns/net` link: `net:[4026531840]` → 4026531840.
pub fn parse_ns_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The network namespace inode of `pid`.
pub fn netns_of(host: &HostRoot, pid: u32) -> Option<u64> {
    let target = host.read_link(format!("/proc/{pid}/ns/net")).ok()?;
    parse_ns_link(target.to_str()?)
}

/// A network namespace and one process in it (the lowest pid, often the container's init).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetNs {
    pub inode: u64,
    pub pid: u32,
}

/// One process per distinct network namespace, sorted by namespace inode.
pub fn network_namespaces(host: &HostRoot) -> Vec<NetNs> {
    let mut by_inode: BTreeMap<u64, u32> = BTreeMap::new();
    for pid in pids(host) {
        if let Some(inode) = netns_of(host, pid) {
            let slot = by_inode.entry(inode).or_insert(pid);
            *slot = (*slot).min(pid);
        }
    }
    by_inode
        .into_iter()
        .map(|(inode, pid)| NetNs { inode, pid })
        .collect()
}

/// Local IPv4 addresses from `/proc/net/fib_trie`: the leaves marked `/32 host LOCAL`.
pub fn parse_fib_trie_local(text: &str) -> HashSet<Ipv4Addr> {
    let mut found = HashSet::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(addr) = t.strip_prefix("|-- ") {
            leaf = addr.trim().parse().ok();
        } else if t.starts_with('/') {
            let mut f = t.split_whitespace();
            if (f.next(), f.next(), f.next()) == (Some("/32"), Some("host"), Some("LOCAL")) {
                if let Some(a) = leaf {
                    found.insert(a);
                }
            }
        }
    }
    found
}

/// IPv6 addresses from `/proc/net/if_inet6` (32 hex digits in network byte order per line).
pub fn parse_if_inet6(text: &str) -> HashSet<Ipv6Addr> {
    text.lines()
        .filter_map(|l| {
            let hex = l.split_whitespace().next()?;
            if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            Some(Ipv6Addr::from(u128::from_str_radix(hex, 16).ok()?))
        })
        .collect()
}

/// The addresses of the namespace whose `/proc/<pid>/net` is `net_dir` under `host` (ours:
/// `/proc/self/net` under `/`).
pub fn local_addresses(host: &HostRoot, net_dir: &str) -> HashSet<IpAddr> {
    let read = |f: &str| {
        host.read_prefix(format!("{net_dir}/{f}"), crate::host::MAX_FILE_BYTES)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let mut addrs: HashSet<IpAddr> = parse_fib_trie_local(&read("fib_trie"))
        .into_iter()
        .map(IpAddr::from)
        .collect();
    addrs.extend(
        parse_if_inet6(&read("if_inet6"))
            .into_iter()
            .map(IpAddr::from),
    );
    addrs
}
