//! Namespaces and their sockets: the network namespaces the collector looks into, their local
//! addresses and socket tables, and which process owns a socket inode ([`Owners`]).

use super::{Diag, TCP_NEW_SYN_RECV, TCP_SYN_RECV, TCP_TIME_WAIT, open_diag_in};
use crate::host::HostRoot;
use crate::host::netns::local_addresses;
use crate::host::procfs;
use crate::host::sockets::{SocketEntry, TCP_LISTEN};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What the socket tables say about a connection's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    pub(super) state: u8,
    /// `None` when the kernel keeps no owner (TIME_WAIT and pending requests report 0).
    pub(super) uid: Option<u32>,
    pub(super) inode: u64,
}

impl Found {
    pub(super) fn new(state: u8, uid: u32, inode: u64) -> Found {
        let ownerless =
            inode == 0 && matches!(state, TCP_TIME_WAIT | TCP_SYN_RECV | TCP_NEW_SYN_RECV);
        Found {
            state,
            uid: (!ownerless).then_some(uid),
            inode,
        }
    }
}

/// Finds the socket of a connection in a parsed socket table, the way the kernel's lookup would:
/// the exact local and remote ends, else (with a zero remote end) the listener on the local
/// port, preferring one bound to the exact address over a wildcard one. IPv4 connections of
/// dual-stack sockets appear in tcp6 with v4-mapped addresses.
pub fn find_in_table(
    entries: &[SocketEntry],
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<SocketEntry> {
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (local, remote) = (canon(local), canon(remote));
    if remote.port() != 0 {
        return entries
            .iter()
            .find(|e| e.state != TCP_LISTEN && canon(e.local) == local && canon(e.remote) == remote)
            .copied();
    }
    let listeners = || {
        entries
            .iter()
            .filter(|e| e.state == TCP_LISTEN && e.local.port() == local.port())
    };
    listeners()
        .find(|e| e.local.ip().to_canonical() == local.ip())
        .or_else(|| listeners().find(|e| e.local.ip().is_unspecified()))
        .copied()
}

/// One network namespace: how to tell its addresses and how to look up its sockets.
pub(super) struct Namespace {
    pub(super) inode: u64,
    /// Where its `/proc/<pid>/net` directory is read: the host root (ours: `/`).
    host: HostRoot,
    /// That directory (ours: `/proc/self/net`).
    net_dir: String,
    pub(super) addrs: HashSet<IpAddr>,
    /// sock_diag in this namespace; `None`: search `net_dir`'s socket tables instead.
    diag: Option<Diag>,
    /// The container the namespace belongs to (from its first process).
    pub(super) container_id: Option<String>,
}

impl Namespace {
    pub(super) fn lookup(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<Found> {
        if let Some(diag) = &mut self.diag {
            match diag.lookup(local, remote) {
                Ok(found) => return found.map(|s| Found::new(s.state, s.uid, s.inode)),
                Err(e) => tracing::debug!(error = %e, "sock_diag lookup failed; reading tables"),
            }
        }
        let file = if local.is_ipv4() { "tcp" } else { "tcp6" };
        let keep = |e: &SocketEntry| e.local.port() == local.port();
        let table = |file: &str| {
            let path = format!("{}/{file}", self.net_dir);
            crate::host::sockets::read_socket_table(&self.host, path, keep)
        };
        let mut entries = table(file).map(|t| t.entries).unwrap_or_default();
        if local.is_ipv4() {
            // Dual-stack sockets list IPv4 peers in tcp6.
            if let Ok(t) = table("tcp6") {
                entries.extend(t.entries);
            }
        }
        find_in_table(&entries, local, remote).map(|e| Found::new(e.state, e.uid, e.inode))
    }
}

/// How often the namespace list is re-read when a SYN fits no known namespace.
pub(super) const NS_REFRESH_ON_MISS: Duration = Duration::from_millis(500);
/// How often it is re-read anyway (new addresses, namespaces gone).
pub(super) const NS_REFRESH_EVERY: Duration = Duration::from_secs(30);

/// The agent's namespace and every other one on the host, with their addresses.
pub(super) struct Namespaces {
    ours: Namespace,
    others: HashMap<u64, Namespace>,
    by_addr: HashMap<IpAddr, u64>,
    pub(super) refreshed: Instant,
    /// Whether sock_diag worked in our namespace (else: Degraded).
    pub(super) diag_ok: bool,
}

impl Namespaces {
    pub(super) fn new(host: &HostRoot) -> Namespaces {
        // Our own namespace is where the packet socket listens: read it from /proc/self (not
        // through the host root, which may be another PID namespace's /proc).
        let own = HostRoot::default();
        let net_dir = "/proc/self/net".to_string();
        let inode = own
            .read_link("/proc/self/ns/net")
            .ok()
            .and_then(|t| crate::host::netns::parse_ns_link(t.to_str()?))
            .unwrap_or(0);
        let diag = Diag::open()
            .map_err(|e| tracing::debug!(error = %e, "sock_diag unavailable"))
            .ok();
        let diag_ok = diag.is_some();
        let mut ns = Namespaces {
            ours: Namespace {
                inode,
                addrs: local_addresses(&own, &net_dir),
                host: own,
                net_dir,
                diag,
                container_id: None,
            },
            others: HashMap::new(),
            by_addr: HashMap::new(),
            refreshed: Instant::now(),
            diag_ok,
        };
        ns.refresh(host);
        ns
    }

    pub(super) fn is_ours(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.ours.addrs.contains(&ip)
    }

    pub(super) fn theirs(&self, ip: IpAddr) -> Option<u64> {
        self.by_addr.get(&ip).copied()
    }

    pub(super) fn get(&mut self, netns: Option<u64>) -> Option<&mut Namespace> {
        match netns {
            None => Some(&mut self.ours),
            Some(inode) => self.others.get_mut(&inode),
        }
    }

    /// Re-reads the namespace list and every namespace's addresses; opens sock_diag in new ones.
    pub(super) fn refresh(&mut self, host: &HostRoot) {
        self.refreshed = Instant::now();
        self.ours.addrs = local_addresses(&self.ours.host, &self.ours.net_dir);
        let mut others = HashMap::new();
        for ns in crate::host::netns::network_namespaces(host) {
            if ns.inode == self.ours.inode {
                continue;
            }
            let net_dir = format!("/proc/{}/net", ns.pid);
            let mut entry = match self.others.remove(&ns.inode) {
                Some(known) => known,
                None => {
                    let diag = open_diag_in(host, ns)
                        .map_err(|e| tracing::debug!(netns = ns.inode, error = %e, "no sock_diag in namespace"))
                        .ok();
                    let container_id = host
                        .read_to_string(format!("/proc/{}/cgroup", ns.pid))
                        .ok()
                        .and_then(|cg| procfs::container_id_from_cgroup(&cg));
                    Namespace {
                        inode: ns.inode,
                        host: host.clone(),
                        net_dir: net_dir.clone(),
                        addrs: HashSet::new(),
                        diag,
                        container_id,
                    }
                }
            };
            entry.net_dir = net_dir;
            entry.addrs = local_addresses(host, &entry.net_dir);
            others.insert(ns.inode, entry);
        }
        // Namespaces that are gone drop here, and their netlink sockets with them (a socket
        // would keep its namespace alive).
        self.others = others;
        self.by_addr = self
            .others
            .values()
            .flat_map(|n| n.addrs.iter().map(move |a| (*a, n.inode)))
            .filter(|(a, _)| !a.is_loopback() && !self.ours.addrs.contains(a))
            .collect();
    }
}

/// Remembered pids to scan first on a miss: a process that just connected tends to connect
/// again.
const HOT_PIDS: usize = 16;
/// Full /proc scans are at most this frequent: they take tens of milliseconds on a busy host,
/// and the capture waits meanwhile.
const FULL_SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// Socket inode → pid, from `/proc/<pid>/fd`. There is no reverse index in the kernel, so a
/// miss scans, cheapest first: the recent owners, then the processes that did not exist at the
/// last full scan (newest first), then, at most once a second, every process (newest first: a
/// connection's socket may close while the scan runs).
#[derive(Debug, Default)]
pub struct Owners {
    map: HashMap<u64, u32>,
    hot: VecDeque<u32>,
    known_pids: HashSet<u32>,
    last_full: Option<Instant>,
    /// Listener inodes that a full scan did not find (see [`Owners::listener_pid`]).
    pub(super) missed_listeners: HashSet<u64>,
}

/// Bound of [`Owners`]' memory of listeners it could not find.
const MISSED_LISTENERS_MAX: usize = 4096;

impl Owners {
    /// Learns every process's sockets, so that later misses are new processes or new sockets.
    pub fn prime(&mut self, host: &HostRoot) {
        self.full_scan(host);
        self.last_full = None;
    }

    pub fn pid(&mut self, host: &HostRoot, inode: u64) -> Option<u32> {
        self.lookup(host, inode, false)
    }

    /// Like [`Owners::pid`] for a listening socket. A listener opened by a process that was
    /// already running is found only by a full scan, which [`Owners::pid`] allows once a second:
    /// without this, the first connections to a new listener of a long-running service came out
    /// unattributed. Listeners live long, so each unknown one is worth a full scan of its own;
    /// one still not found after that is remembered and not scanned for again.
    pub fn listener_pid(&mut self, host: &HostRoot, inode: u64) -> Option<u32> {
        if self.missed_listeners.contains(&inode) {
            return self.lookup(host, inode, false);
        }
        let pid = self.lookup(host, inode, true);
        if pid.is_none() && inode != 0 {
            if self.missed_listeners.len() >= MISSED_LISTENERS_MAX {
                self.missed_listeners.clear();
            }
            self.missed_listeners.insert(inode);
        }
        pid
    }

    pub(super) fn lookup(&mut self, host: &HostRoot, inode: u64, force_full: bool) -> Option<u32> {
        if inode == 0 {
            return None;
        }
        if let Some(&pid) = self.map.get(&inode) {
            self.touch(pid);
            return Some(pid);
        }
        let hot: Vec<u32> = self.hot.iter().copied().collect();
        if let Some(pid) = self.scan(host, hot, inode) {
            return Some(pid);
        }
        let mut new: Vec<u32> = crate::host::procfs::pids(host)
            .into_iter()
            .filter(|p| !self.known_pids.contains(p))
            .collect();
        new.sort_unstable_by(|a, b| b.cmp(a));
        self.known_pids.extend(&new);
        if let Some(pid) = self.scan(host, new, inode) {
            return Some(pid);
        }
        if !force_full
            && self
                .last_full
                .is_some_and(|t| t.elapsed() < FULL_SCAN_INTERVAL)
        {
            return None;
        }
        self.last_full = Some(Instant::now());
        self.full_scan(host);
        let pid = self.map.get(&inode).copied();
        if let Some(pid) = pid {
            self.touch(pid);
        }
        pid
    }

    fn full_scan(&mut self, host: &HostRoot) {
        self.map = crate::host::sockets::socket_owners(host);
        self.known_pids = crate::host::procfs::pids(host).into_iter().collect();
    }

    /// Looks for `inode` among the sockets of `pids`. Only the hit is remembered, after
    /// [`topmost_holder`]: the other sockets a scanned process holds may be its parent's,
    /// inherited at a fork, and remembered as the child's they would be attributed to it.
    fn scan(&mut self, host: &HostRoot, pids: Vec<u32>, inode: u64) -> Option<u32> {
        if self.map.len() >= crate::host::sockets::MAX_OWNERS {
            self.map.clear();
        }
        for pid in pids {
            let mut hit = false;
            crate::host::sockets::sockets_of(host, pid, |i| hit |= i == inode);
            if hit {
                let owner = topmost_holder(host, pid, inode);
                self.map.insert(inode, owner);
                self.touch(owner);
                return Some(owner);
            }
        }
        None
    }

    fn touch(&mut self, pid: u32) {
        if self.hot.front() == Some(&pid) {
            return;
        }
        self.hot.retain(|p| *p != pid);
        self.hot.push_front(pid);
        self.hot.truncate(HOT_PIDS);
    }
}

/// How far [`topmost_holder`] walks up the process tree.
const HOLDER_DEPTH: usize = 4;

/// The process that most likely made the connection of socket `inode`, found held by `pid`.
/// A child holds every socket of its parent from fork until exec (and after, when the socket is
/// inherited on purpose): a new child found first would take its parent's connection. So while
/// the parent holds the same socket, the parent is the better answer; the full scan agrees
/// (it keeps the lowest pid).
fn topmost_holder(host: &HostRoot, pid: u32, inode: u64) -> u32 {
    let mut owner = pid;
    for _ in 0..HOLDER_DEPTH {
        let Some(ppid) = host
            .read_to_string(format!("/proc/{owner}/status"))
            .ok()
            .and_then(|t| procfs::parse_status(&t).ppid)
        else {
            break;
        };
        if ppid <= 1 {
            break;
        }
        let mut held = false;
        crate::host::sockets::sockets_of(host, ppid, |i| held |= i == inode);
        if !held {
            break;
        }
        owner = ppid;
    }
    owner
}
