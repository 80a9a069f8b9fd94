//! Socket tables of the host: `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` lines and addresses, and
//! which process holds a socket inode (`/proc/<pid>/fd` links). Read by the listening-port
//! collector and by the connection collector (its fallback and its attribution).

use super::HostRoot;
use super::procfs::pids;
use std::collections::HashMap;
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

/// Reads the socket table at `path` under the host root line by line (a busy host's table can be
/// larger than what [`HostRoot::read`] accepts), keeping only the entries `keep` wants.
pub fn read_socket_table(
    host: &HostRoot,
    path: impl AsRef<Path>,
    keep: impl Fn(&SocketEntry) -> bool,
) -> std::io::Result<SocketTable> {
    let (file, _) = host.open(path)?;
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

/// Calls `found` with the inode of every socket `pid` holds open.
pub fn sockets_of(host: &HostRoot, pid: u32, mut found: impl FnMut(u64)) {
    let Ok(mut dir) = host.read_dir(format!("/proc/{pid}/fd")) else {
        return;
    };
    let mut target = Vec::new();
    while let Some(Ok(entry)) = dir.next() {
        if dir.read_link(&entry.name, &mut target).is_ok()
            && let Some(inode) = std::str::from_utf8(&target)
                .ok()
                .and_then(parse_socket_link)
        {
            found(inode);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::netns::parse_ns_link;
    use std::net::TcpListener;

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
            let t = read_socket_table(&host, format!("/proc/self/net/{file}"), |_| true).unwrap();
            assert_eq!(t.malformed, 0, "{file}");
            assert!(
                t.entries
                    .iter()
                    .any(|e| e.local == addr && e.state == TCP_LISTEN),
                "{addr} in {file}"
            );
        }
    }
}
