//! `ListeningPorts`: TCP sockets in LISTEN state and bound, unconnected UDP sockets, in every
//! network namespace of the host, with the process that owns each one.
//!
//! Source: `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` of one process per network namespace. Those
//! files show the namespace of the process, not of the reader, so reading them for one process
//! of each distinct `/proc/<pid>/ns/net` covers the host and every container without `setns`.
//! Owners come from the socket inodes in `/proc/<pid>/fd` (one scan per snapshot).
//!
//! Decisions:
//! - A UDP socket is "listening" when it is bound and unconnected (state 07, remote port 0): it
//!   takes datagrams from anyone. A connected UDP socket (state 01) only talks to its peer, like a
//!   client, so it is left out; `RemoteAddress`/`RemotePort` are therefore never set.
//! - One record per (namespace, protocol, local address, local port): `SO_REUSEPORT` groups and
//!   sockets shared by forked workers become one record, owned by the lowest pid.
//! - A namespace without any process (an `ip netns add` name with nothing running in it) is not
//!   visible through /proc and is not reported.
//!
//! The retired agent got two things wrong here (security-events.md §5): it did not filter on the
//! LISTEN state, and it parsed IPv6 addresses as IPv4. The address format is subtle: see
//! [`parse_hex_address`](crate::host::sockets::parse_hex_address).
//!
//! The socket tables and namespaces themselves are read by [`crate::host::sockets`] and
//! [`crate::host::netns`], which the connection collector shares.

use super::Periodic;
use crate::event::{Event, EventKind, ExtraDetails, ListeningPort, Payload};
use crate::host::HostRoot;
use crate::host::netns::network_namespaces;
use crate::host::procfs;
use crate::host::sockets::{Protocol, SocketEntry, is_listening, read_socket_table, socket_owners};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// The four tables of a namespace, as seen through one of its processes.
const TABLES: [(Protocol, &str); 4] = [
    (Protocol::Tcp, "tcp"),
    (Protocol::Tcp, "tcp6"),
    (Protocol::Udp, "udp"),
    (Protocol::Udp, "udp6"),
];

/// The periodic `ListeningPorts` collector.
#[derive(Debug, Default)]
pub struct ListeningPortsCollector;

impl Periodic for ListeningPortsCollector {
    fn name(&self) -> &'static str {
        "listening"
    }

    fn collect(&mut self, host: &HostRoot) -> Vec<Event> {
        let records = snapshot(host);
        if records.is_empty() {
            return vec![Event::empty_snapshot(EventKind::ListeningPorts)];
        }
        vec![Event::new(Payload::ListeningPorts(records))]
    }
}

/// Every listening socket of every namespace, one record per (namespace, protocol, address,
/// port), in a stable order.
pub fn snapshot(host: &HostRoot) -> Vec<ListeningPort> {
    // The socket tables first, then their owners: a listener opened between the two reads is
    // then in both (its descriptor outlives the scan), not in the table alone, which would
    // leave it without a process until the next snapshot, hours later.
    let mut tables = Vec::new();
    let namespaces = network_namespaces(host);
    for ns in &namespaces {
        for (protocol, file) in TABLES {
            let path = format!("/proc/{}/net/{file}", ns.pid);
            let table = match read_socket_table(host, &path, |e| is_listening(protocol, e)) {
                Ok(t) => t,
                Err(e) => {
                    // The process exited, or the kernel has no IPv6: skip this table.
                    tracing::debug!(path, error = %e, "socket table unreadable");
                    continue;
                }
            };
            if table.malformed > 0 {
                tracing::debug!(
                    path,
                    lines = table.malformed,
                    "malformed socket table lines"
                );
            }
            tables.push((ns.inode, protocol, table.entries));
        }
    }
    let owners = socket_owners(host);
    // (netns, protocol, local) → (entry, owner)
    let mut found: BTreeMap<(u64, Protocol, SocketAddr), (SocketEntry, Option<u32>)> =
        BTreeMap::new();
    for (ns_inode, protocol, entries) in tables {
        for e in entries {
            let owner = owners.get(&e.inode).copied().filter(|_| e.inode != 0);
            let slot = found
                .entry((ns_inode, protocol, e.local))
                .or_insert((e, owner));
            // Keep the socket with a known owner, and the lowest pid among those.
            let better = match (slot.1, owner) {
                (None, Some(_)) => true,
                (Some(a), Some(b)) => b < a,
                _ => false,
            };
            if better {
                *slot = (e, owner);
            }
        }
    }

    let ns_pid: HashMap<u64, u32> = namespaces.iter().map(|n| (n.inode, n.pid)).collect();
    let mut infos: HashMap<u32, procfs::ProcessInfo> = HashMap::new();
    let mut info = |pid: u32| {
        infos
            .entry(pid)
            .or_insert_with(|| procfs::read(host, pid))
            .clone()
    };
    found
        .into_iter()
        .map(|((netns, protocol, local), (entry, owner))| {
            let mut extra = ExtraDetails::new();
            extra.insert("NetNs".into(), netns.to_string());
            extra.insert("UserId".into(), entry.uid.to_string());
            let container = match owner {
                Some(pid) => {
                    let p = info(pid);
                    extra.insert("ProcessId".into(), pid.to_string());
                    extra.insert("Executable".into(), p.executable());
                    p.container_id
                }
                // No process holds it (a socket passed on and closed, a kernel socket): the
                // namespace still tells which container it belongs to.
                None => ns_pid.get(&netns).and_then(|&pid| info(pid).container_id),
            };
            if let Some(id) = container {
                extra.insert("ContainerId".into(), id);
            }
            ListeningPort {
                protocol: protocol.as_str().to_string(),
                local_address: Some(local.ip()),
                local_port: local.port(),
                remote_address: None,
                remote_port: None,
                extra_details: extra,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::netns::netns_of;
    use crate::test_support::{TestNetns, real_v6_address};
    use std::net::{TcpListener, UdpSocket};

    fn find<'a>(
        records: &'a [ListeningPort],
        protocol: &str,
        addr: SocketAddr,
    ) -> Option<&'a ListeningPort> {
        records.iter().find(|r| {
            r.protocol == protocol
                && r.local_address == Some(addr.ip())
                && r.local_port == addr.port()
        })
    }

    #[test]
    fn snapshot_finds_our_listeners_with_owner() {
        let host = HostRoot::default();
        let me = std::process::id().to_string();
        let mut tcp = vec![
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("[::1]:0").unwrap(),
        ];
        let mut udp = vec![
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("[::1]:0").unwrap(),
        ];
        if let Some(v6) = real_v6_address() {
            tcp.push(TcpListener::bind((v6, 0)).unwrap());
            udp.push(UdpSocket::bind((v6, 0)).unwrap());
        }
        // A connected UDP socket and an established TCP connection are not listening.
        let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
        connected.connect(udp[0].local_addr().unwrap()).unwrap();
        let client = std::net::TcpStream::connect(tcp[0].local_addr().unwrap()).unwrap();

        let records = snapshot(&host);
        let our_ns = netns_of(&host, std::process::id()).unwrap().to_string();
        for (protocol, addr) in tcp
            .iter()
            .map(|l| ("TCP", l.local_addr().unwrap()))
            .chain(udp.iter().map(|u| ("UDP", u.local_addr().unwrap())))
        {
            let r = find(&records, protocol, addr).unwrap_or_else(|| panic!("{protocol} {addr}"));
            assert_eq!(
                r.extra_details.get("ProcessId"),
                Some(&me),
                "{protocol} {addr}"
            );
            assert_eq!(r.extra_details.get("NetNs"), Some(&our_ns));
            assert!(r.extra_details["Executable"].len() > 1);
            assert_eq!(r.remote_address, None);
        }
        assert!(find(&records, "UDP", connected.local_addr().unwrap()).is_none());
        assert!(find(&records, "TCP", client.local_addr().unwrap()).is_none());
        // One record per key.
        let mut keys: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r.extra_details.get("NetNs").cloned(),
                    r.protocol.clone(),
                    r.local_address,
                    r.local_port,
                )
            })
            .collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n);

        let events = ListeningPortsCollector.collect(&host);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind(), EventKind::ListeningPorts);
    }

    #[test]
    fn snapshot_covers_other_namespaces() {
        let Some(ns) = TestNetns::create(1) else {
            return;
        };
        let me = std::process::id().to_string();
        let ns_ip = ns.ns_ip;
        let (tcp, udp) = ns.run_in(|| {
            (
                TcpListener::bind((ns_ip, 0)).unwrap(),
                UdpSocket::bind("0.0.0.0:0").unwrap(),
            )
        });
        let records = snapshot(&HostRoot::default());
        for (protocol, addr) in [
            ("TCP", tcp.local_addr().unwrap()),
            ("UDP", udp.local_addr().unwrap()),
        ] {
            let r = find(&records, protocol, addr).unwrap_or_else(|| panic!("{protocol} {addr}"));
            assert_eq!(r.extra_details["NetNs"], ns.inode.to_string());
            assert_eq!(r.extra_details.get("ProcessId"), Some(&me));
        }
    }

    #[test]
    fn namespaces_include_our_own() {
        let host = HostRoot::default();
        let ours = netns_of(&host, std::process::id()).unwrap();
        let all = network_namespaces(&host);
        assert!(all.iter().any(|n| n.inode == ours));
        let mut inodes: Vec<_> = all.iter().map(|n| n.inode).collect();
        inodes.dedup();
        assert_eq!(inodes.len(), all.len());
        // A missing host root yields nothing rather than an error.
        assert!(snapshot(&HostRoot::new("/nonexistent")).is_empty());
    }
}
