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
//! [`parse_hex_address`].
//!
//! This file also holds the /proc socket-table and namespace helpers that the connection
//! collector uses for its fallback and its attribution.

use super::{Periodic, proc_info};
use crate::event::{Event, EventKind, ExtraDetails, ListeningPort, Payload};
use crate::host::HostRoot;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// `st` of an established TCP socket (include/net/tcp_states.h).
pub const TCP_ESTABLISHED: u8 = 0x01;
/// `st` of a listening TCP socket.
pub const TCP_LISTEN: u8 = 0x0A;
/// `st` of an unconnected UDP socket (TCP_CLOSE: UDP reuses the TCP state numbers).
pub const UDP_UNCONNECTED: u8 = 0x07;

/// Lines read from one socket table at most; a table this large is not a real host's.
pub const MAX_TABLE_LINES: usize = 1 << 20;
/// Socket inodes remembered from one /proc fd scan at most.
pub const MAX_OWNERS: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The schema's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// One line of /proc/net/{tcp,tcp6,udp,udp6}.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketEntry {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Kernel state number (`st`), e.g. [`TCP_LISTEN`].
    pub state: u8,
    pub uid: u32,
    /// Socket inode; 0 for sockets no process holds (TIME_WAIT, orphans).
    pub inode: u64,
}

/// A parsed socket table: the entries kept and how many lines were unreadable.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SocketTable {
    pub entries: Vec<SocketEntry>,
    pub malformed: usize,
}

/// Parses an address as the kernel prints it in /proc/net: `0100007F:0016` or
/// `00000000000000000000000001000000:1F90`.
///
/// The kernel prints each 32-bit word of the (network-order) address with `%08X` after loading
/// it as a native integer, so the text shows the bytes of each word in host byte order. IPv4 is
/// one word, IPv6 four words (not one 128-bit number): `::1` is `…0001000000` on little-endian
/// machines. Reading each word back as a native integer and taking its native bytes undoes this
/// on any endianness. The port is printed as a plain number in hex.
pub fn parse_hex_address(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    if port.is_empty() || port.len() > 4 || !port.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    if !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Parses one line of a socket table. `Ok(None)` for the header line, `Err(())` for a line that
/// is not a socket entry.
#[allow(clippy::result_unit_err)]
pub fn parse_socket_line(line: &str) -> Result<Option<SocketEntry>, ()> {
    let mut f = line.split_whitespace();
    let first = f.next().ok_or(())?;
    if first == "sl" {
        return Ok(None);
    }
    // sl local remote st tx:rx tr:when retrnsmt uid timeout inode …
    if !first.ends_with(':') {
        return Err(());
    }
    let local = f.next().and_then(parse_hex_address).ok_or(())?;
    let remote = f.next().and_then(parse_hex_address).ok_or(())?;
    let state = f
        .next()
        .filter(|s| s.len() <= 2)
        .and_then(|s| u8::from_str_radix(s, 16).ok())
        .ok_or(())?;
    let mut f = f.skip(3);
    let uid = f.next().and_then(|s| s.parse().ok()).ok_or(())?;
    let inode = f.nth(1).and_then(|s| s.parse().ok()).ok_or(())?;
    if local.is_ipv4() != remote.is_ipv4() {
        return Err(());
    }
    Ok(Some(SocketEntry {
        local,
        remote,
        state,
        uid,
        inode,
    }))
}

/// Parses a whole socket table (fixtures, fuzzing); at most [`MAX_TABLE_LINES`] lines.
pub fn parse_socket_table(text: &str) -> SocketTable {
    let mut table = SocketTable::default();
    for line in text.lines().take(MAX_TABLE_LINES) {
        match parse_socket_line(line) {
            Ok(Some(e)) => table.entries.push(e),
            Ok(None) => {}
            Err(()) => table.malformed += 1,
        }
    }
    table
}

/// Reads a socket table line by line (a busy host's table can be larger than what
/// [`HostRoot::read`] accepts), keeping only the entries `keep` wants.
pub fn read_socket_table(
    path: &Path,
    keep: impl Fn(&SocketEntry) -> bool,
) -> std::io::Result<SocketTable> {
    let file = std::fs::File::open(path)?;
    let mut table = SocketTable::default();
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    for _ in 0..MAX_TABLE_LINES {
        line.clear();
        // Lines are ~150 bytes; a longer one is not a socket entry and is cut at 1 KiB.
        if reader.by_ref().take(1024).read_until(b'\n', &mut line)? == 0 {
            break;
        }
        match std::str::from_utf8(&line)
            .map_err(|_| ())
            .and_then(parse_socket_line)
        {
            Ok(Some(e)) if keep(&e) => table.entries.push(e),
            Ok(_) => {}
            Err(()) => table.malformed += 1,
        }
    }
    Ok(table)
}

/// The target of a `/proc/<pid>/fd/<n>` link that is a socket: `socket:[12345]` → 12345.
pub fn parse_socket_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The target of a `/proc/<pid>/ns/net` link: `net:[4026531840]` → 4026531840.
pub fn parse_ns_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Every process id in the host's /proc.
pub fn pids(host: &HostRoot) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(host.path("/proc")) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The network namespace inode of `pid`.
pub fn netns_of(host: &HostRoot, pid: u32) -> Option<u64> {
    let target = std::fs::read_link(host.path(format!("/proc/{pid}/ns/net"))).ok()?;
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

/// Calls `found` with the inode of every socket `pid` holds open.
pub fn sockets_of(host: &HostRoot, pid: u32, mut found: impl FnMut(u64)) {
    let Ok(dir) = std::fs::read_dir(host.path(format!("/proc/{pid}/fd"))) else {
        return;
    };
    for entry in dir.flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            if let Some(inode) = target.to_str().and_then(parse_socket_link) {
                found(inode);
            }
        }
    }
}

/// Socket inode → the lowest pid holding it, for every process (at most [`MAX_OWNERS`]).
/// Newest processes first: a short-lived socket is more likely to be theirs, and may close
/// while the scan runs.
pub fn socket_owners(host: &HostRoot) -> HashMap<u64, u32> {
    let mut owners: HashMap<u64, u32> = HashMap::new();
    let mut all = pids(host);
    all.sort_unstable_by(|a, b| b.cmp(a));
    for pid in all {
        sockets_of(host, pid, |inode| {
            if owners.len() < MAX_OWNERS || owners.contains_key(&inode) {
                let slot = owners.entry(inode).or_insert(pid);
                *slot = (*slot).min(pid);
            }
        });
    }
    owners
}

/// Whether a socket-table entry is a listening socket of `protocol`.
pub fn is_listening(protocol: Protocol, e: &SocketEntry) -> bool {
    match protocol {
        Protocol::Tcp => e.state == TCP_LISTEN,
        Protocol::Udp => e.state == UDP_UNCONNECTED && e.remote.port() == 0,
    }
}

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
    let owners = socket_owners(host);
    // (netns, protocol, local) → (entry, owner)
    let mut found: BTreeMap<(u64, Protocol, SocketAddr), (SocketEntry, Option<u32>)> =
        BTreeMap::new();
    let namespaces = network_namespaces(host);
    for ns in &namespaces {
        for (protocol, file) in TABLES {
            let path = host.path(format!("/proc/{}/net/{file}", ns.pid));
            let table = match read_socket_table(&path, |e| is_listening(protocol, e)) {
                Ok(t) => t,
                Err(e) => {
                    // The process exited, or the kernel has no IPv6: skip this table.
                    tracing::debug!(path = %path.display(), error = %e, "socket table unreadable");
                    continue;
                }
            };
            if table.malformed > 0 {
                tracing::debug!(
                    path = %path.display(),
                    lines = table.malformed,
                    "malformed socket table lines"
                );
            }
            for e in table.entries {
                let owner = owners.get(&e.inode).copied().filter(|_| e.inode != 0);
                let slot = found
                    .entry((ns.inode, protocol, e.local))
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
    }

    let ns_pid: HashMap<u64, u32> = namespaces.iter().map(|n| (n.inode, n.pid)).collect();
    let mut infos: HashMap<u32, proc_info::ProcessInfo> = HashMap::new();
    let mut info = |pid: u32| {
        infos
            .entry(pid)
            .or_insert_with(|| proc_info::read(host, pid))
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
pub(crate) mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_in_both_families() {
        // Kernel text is host byte order per 32-bit word: these fixtures are little-endian.
        #[cfg(target_endian = "little")]
        {
            assert_eq!(parse_hex_address("0100007F:0016"), Some(sa("127.0.0.1:22")));
            assert_eq!(
                parse_hex_address("0202000A:FFFF"),
                Some(sa("10.0.2.2:65535"))
            );
            assert_eq!(
                parse_hex_address("00000000000000000000000001000000:1F90"),
                Some(sa("[::1]:8080"))
            );
            assert_eq!(
                parse_hex_address("B80D0120000000000000000001000000:0035"),
                Some(sa("[2001:db8::1]:53"))
            );
            assert_eq!(
                parse_hex_address("000000FD000000000000000002000000:01BB"),
                Some(sa("[fd00::2]:443"))
            );
            // A v4-mapped address stays an IPv6 address.
            assert_eq!(
                parse_hex_address("0000000000000000FFFF00000100007F:0050"),
                Some(sa("[::ffff:127.0.0.1]:80"))
            );
        }
        assert_eq!(
            parse_hex_address("00000000000000000000000000000000:0000"),
            Some(sa("[::]:0"))
        );
        for bad in [
            "",
            ":",
            "0100007F",
            "0100007F:",
            "0100007F:10000",
            "0100007G:0016",
            "+100007F:0016",
            "0100007F:+016",
            "0100007F00:0016",
            "0000000000000000000000000100000:0016",
            "ééééééé:0016",
            "0100007F:0016:0016",
        ] {
            assert_eq!(parse_hex_address(bad), None, "{bad:?}");
        }
    }

    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0
   2: 000000FD000000000000000002000000:0016 000000FD000000000000000001000000:D2F0 01 00000000:00000000 02:0000A2E4 00000000  1000        0 5678 2 0000000000000000 20 4 30 10 -1
   3: garbage line
   4: 000000FD000000000000000002000000:0016 0100007F:D2F0 01 00000000:00000000 02:0000A2E4 00000000  1000        0 5678
   5: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0
";

    #[cfg(target_endian = "little")]
    #[test]
    fn tcp6_table_fixture() {
        let t = parse_socket_table(TCP6);
        assert_eq!(t.malformed, 3, "garbage, mixed families, truncated");
        assert_eq!(
            t.entries,
            vec![
                SocketEntry {
                    local: sa("[::1]:8080"),
                    remote: sa("[::]:0"),
                    state: TCP_LISTEN,
                    uid: 0,
                    inode: 31337
                },
                SocketEntry {
                    local: sa("[::]:22"),
                    remote: sa("[::]:0"),
                    state: TCP_LISTEN,
                    uid: 0,
                    inode: 1234
                },
                SocketEntry {
                    local: sa("[fd00::2]:22"),
                    remote: sa("[fd00::1]:54000"),
                    state: TCP_ESTABLISHED,
                    uid: 1000,
                    inode: 5678
                },
            ]
        );
        let listening: Vec<_> = t
            .entries
            .iter()
            .filter(|e| is_listening(Protocol::Tcp, e))
            .collect();
        assert_eq!(listening.len(), 2);
    }

    #[test]
    fn udp_listening_means_unconnected() {
        let unconnected = SocketEntry {
            local: sa("0.0.0.0:53"),
            remote: sa("0.0.0.0:0"),
            state: UDP_UNCONNECTED,
            uid: 0,
            inode: 1,
        };
        assert!(is_listening(Protocol::Udp, &unconnected));
        let connected = SocketEntry {
            remote: sa("8.8.8.8:53"),
            state: TCP_ESTABLISHED,
            ..unconnected
        };
        assert!(!is_listening(Protocol::Udp, &connected));
        assert!(!is_listening(Protocol::Tcp, &unconnected));
    }

    #[test]
    fn links_and_garbage() {
        assert_eq!(parse_socket_link("socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link("pipe:[12345]"), None);
        assert_eq!(parse_socket_link("socket:[]"), None);
        assert_eq!(parse_socket_link("socket:[-1]"), None);
        assert_eq!(parse_ns_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_ns_link("mnt:[4026531840]"), None);
        assert_eq!(parse_socket_line(""), Err(()));
        assert_eq!(parse_socket_line("sl local"), Ok(None));
        let t = parse_socket_table("\0\0\n\u{fffd}\n 0: : : : : : : : :\n");
        assert_eq!(t.entries.len(), 0);
        assert_eq!(t.malformed, 3);
    }

    /// The kernel's own text for sockets we open, so the fixtures above are not our guess.
    #[test]
    fn real_kernel_tables_parse() {
        let host = HostRoot::default();
        let l4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let l6 = TcpListener::bind("[::1]:0").unwrap();
        for (file, addr) in [
            ("tcp", l4.local_addr().unwrap()),
            ("tcp6", l6.local_addr().unwrap()),
        ] {
            let path = host.path(format!("/proc/self/net/{file}"));
            let t = read_socket_table(&path, |_| true).unwrap();
            assert_eq!(t.malformed, 0, "{file}");
            assert!(
                t.entries
                    .iter()
                    .any(|e| e.local == addr && e.state == TCP_LISTEN),
                "{addr} in {file}"
            );
        }
    }

    /// A global (non-loopback, non-link-local) IPv6 address of this host, if it has one.
    pub(crate) fn real_v6_address() -> Option<Ipv6Addr> {
        let text = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
        text.lines().find_map(|l| {
            let hex = l.split_whitespace().next()?;
            let v = u128::from_str_radix(hex, 16).ok()?;
            let ip = Ipv6Addr::from(v);
            (!ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80).then_some(ip)
        })
    }

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

    /// A network namespace joined to the host by a veth pair, like a container on a bridge:
    /// `host_ip` on the host side, `ns_ip` inside, and a `sleep` process in it so that /proc
    /// shows the namespace. Removed on drop. `None` (and the test skips) without `ip`.
    pub(crate) struct TestNetns {
        name: String,
        pub host_ip: Ipv4Addr,
        pub ns_ip: Ipv4Addr,
        pub inode: u64,
        sleeper: std::process::Child,
    }

    impl TestNetns {
        /// `tag` keeps concurrent tests apart (interface names and a /30 of 10.213.<tag>.0).
        pub(crate) fn create(tag: u8) -> Option<TestNetns> {
            let name = format!("eg{tag}n{}", std::process::id() % 100_000);
            let (h, c) = (format!("eg{tag}h{}", std::process::id() % 100_000), "eth0");
            let host_ip = Ipv4Addr::new(10, 213, tag, 1);
            let ns_ip = Ipv4Addr::new(10, 213, tag, 2);
            let ip = |args: &[&str]| {
                std::process::Command::new("ip")
                    .args(args)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            let _ = ip(&["netns", "del", &name]);
            // A run killed before its drop leaves its veth (holding this tag's addresses) and
            // namespace behind; they would collide with this one.
            let stale = |kind: &[&str], prefix: &str| -> Vec<String> {
                std::process::Command::new("ip")
                    .args(kind)
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(|w| {
                        w.trim_end_matches(':')
                            .split('@')
                            .next()
                            .unwrap_or("")
                            .to_string()
                    })
                    .filter(|w| {
                        w.strip_prefix(prefix)
                            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .collect()
            };
            for link in stale(&["-o", "link", "show"], &format!("eg{tag}h")) {
                let _ = ip(&["link", "del", &link]);
            }
            for ns in stale(&["netns", "list"], &format!("eg{tag}n")) {
                let _ = ip(&["netns", "del", &ns]);
            }
            if !ip(&["netns", "add", &name]) {
                eprintln!("skipping: cannot create a network namespace with ip(8)");
                return None;
            }
            let ok = ip(&[
                "link", "add", &h, "type", "veth", "peer", "name", c, "netns", &name,
            ]) && ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &h])
                && ip(&["link", "set", &h, "up"])
                && ip(&["-n", &name, "addr", "add", &format!("{ns_ip}/30"), "dev", c])
                && ip(&["-n", &name, "link", "set", c, "up"])
                && ip(&["-n", &name, "link", "set", "lo", "up"]);
            let sleeper = std::process::Command::new("ip")
                .args(["netns", "exec", &name, "sleep", "600"])
                .spawn();
            let (true, Ok(sleeper)) = (ok, sleeper) else {
                let _ = ip(&["netns", "del", &name]);
                panic!("setting up the test namespace failed");
            };
            let mut ns = TestNetns {
                name,
                host_ip,
                ns_ip,
                inode: 0,
                sleeper,
            };
            // Wait until the sleeper has entered the namespace.
            for _ in 0..200 {
                let inner = std::fs::metadata(format!("/run/netns/{}", ns.name))
                    .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                    .unwrap_or(0);
                if inner != 0 && netns_of(&HostRoot::default(), ns.sleeper.id()) == Some(inner) {
                    ns.inode = inner;
                    return Some(ns);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("the sleeper never entered the test namespace");
        }

        /// Runs `f` on a thread that has joined the namespace: sockets it creates live there.
        pub(crate) fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(format!("/run/netns/{}", self.name)).unwrap();
            std::thread::scope(|s| {
                s.spawn(|| {
                    assert_eq!(
                        unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                        0,
                        "setns"
                    );
                    f()
                })
                .join()
                .unwrap()
            })
        }
    }

    impl Drop for TestNetns {
        fn drop(&mut self) {
            let _ = self.sleeper.kill();
            let _ = self.sleeper.wait();
            // Deleting the namespace destroys its veth end, and with it the host's.
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
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
}
