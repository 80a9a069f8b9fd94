//! `ConnectionCreate`: TCP connections out of (connect) and into (accept) the host and its
//! containers, IPv4 and IPv6, with the process that owns each one.
//!
//! # Why packets and not /proc/net/tcp
//!
//! The retired agent polled socket tables every few minutes and missed every connection that
//! did not outlive the poll. A connection always starts with a SYN, however short it is, so this
//! collector does what Microsoft's last agent did: a packet socket (`AF_PACKET`, cooked
//! `SOCK_DGRAM` so every link type looks the same, all interfaces) with a classic BPF filter that
//! lets only connection requests (SYN set, ACK clear) and their answers (SYN-ACK) through. The
//! kernel copies a few hundred bytes of those packets and nothing else; the headers are parsed
//! here ([`parse_segment`]) as the untrusted bytes they are.
//!
//! # Direction and namespace
//!
//! The packet type says which way a packet crossed an interface: `PACKET_OUTGOING` was sent by
//! this network stack, `PACKET_HOST` received for it, `PACKET_OTHERHOST` received for another
//! MAC address (the host end of a container's veth: a bridge port, promiscuous). With the
//! local addresses of each network namespace ([`candidates`]):
//!
//! | seen as | condition | event |
//! |---|---|---|
//! | OUTGOING | source is ours | `Out` of ours (local = source) |
//! | OUTGOING | destination is a container's | `In` of that container (bridge → veth) |
//! | HOST | destination is ours | `In` of ours (local = destination) |
//! | HOST, OTHERHOST | source is a container's | `Out` of that container (veth, bridge) |
//!
//! "Ours" is the agent's network namespace: the host's, since the module runs with host
//! networking. On `lo` every packet is seen twice, once sent and once received, so a local
//! connection gives exactly one `Out` (the client) and one `In` (the server). A packet that
//! crosses several interfaces (veth, then bridge, then the uplink after masquerading) is
//! reported once: `Out` events are keyed by (initial sequence number, remote address) across
//! namespaces, which NAT does not change, and `In` events by namespace, both ends and sequence
//! number. The same keys absorb SYN retransmissions.
//!
//! # Attribution
//!
//! sock_diag finds the socket by its exact 4-tuple, with the kernel's own lookup (the one that
//! routes packets), inside the right namespace: for `Out` the connecting socket; for `In` the
//! accepted socket if a process already holds it, else the listening socket (whose owner is the
//! process that accepts). The collector works through a queue of SYNs, so a process that
//! accepts a burst and closes its listener within milliseconds can be gone before its SYNs are
//! looked at: an `In` is then still reported when the connection is shown to have been
//! established (a server socket left over, or the client's socket when the client is in the same
//! namespace, e.g. its TIME_WAIT on loopback), attributed to the listener last seen on that
//! address (remembered for 30 s), else unattributed, with `ExtraDetails.ListenerClosed`. When
//! not even that is left (a reset ends both ends, TIME_WAIT included), the listener's SYN-ACK,
//! captured right behind the SYN, is the proof ([`Capture::proved`]); an `In` with no socket and
//! no SYN-ACK within 2 s was refused. Both
//! give a uid and an inode; the inode leads to a pid through a cache
//! of `/proc/<pid>/fd` socket links (see [`Owners`]). Containers' namespaces are reached with a
//! netlink socket opened on a helper thread that `setns`'d into them; without that, their
//! `/proc/<pid>/net/tcp` is searched instead.
//!
//! A connection whose socket is gone before the lookup (a client that connects and closes within
//! microseconds, on loopback) is still reported with what is known: addresses, ports, the uid if
//! the kernel still has it, `ProcessId` 0, `Executable` "" and `ExtraDetails.Unattributed`. No
//! kernel interface short of audit or eBPF names the process of a socket that no longer exists;
//! measured here, clients that keep their connection 1 ms are attributed 96 % of the time, 10 ms
//! 100 %, and clients that close at once on loopback almost never. A SYN
//! to a port where nothing listens (refused, or forwarded elsewhere) is not a connection and is
//! not reported. A SYN sent without any socket (a raw-socket port scan) is reported unattributed.
//!
//! # Limits
//!
//! - Traffic inside one container over its own loopback, and between two namespaces joined
//!   directly (no interface in ours), never crosses an interface this socket sees.
//! - IPv6 extension headers are walked in user space (the filter passes packets that have any);
//!   an encrypted (ESP) payload cannot be read.
//! - A connection to a port published with Docker's userland proxy is seen twice: `In` of the
//!   host (`docker-proxy` listens there) and `In` of the container (after DNAT).
//! - Namespaces without any process (`ip netns add` with nothing running) are not known.
//!
//! Without `CAP_NET_RAW` the collector reports itself Degraded and polls the socket tables every
//! second ([`Poller`]): connections that open and close between two polls are missed.
//!
//! Runs on its own std thread ([`spawn`]): the socket reads block, and a packet source cannot
//! wait long for the pipeline, so events go out with [`Context::emit_from_reader`] (a full channel is a
//! counted drop), in groups held up to [`super::READER_HOLD`] ([`Held`]).

use super::accounts::UserNames;
use super::listening::{self, NetNs, SocketEntry, TCP_ESTABLISHED, TCP_LISTEN};
use super::{Context, Held, RecvTimeout, proc_info, set_recv_timeout, setsockopt};
use crate::event::{CollectorHealth, ConnectionCreate, Direction, Event, ExtraDetails, Payload};
use crate::host::HostRoot;
use crate::metrics::DropReason;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The collector's name (metric label, `CollectorStatus`).
pub const COLLECTOR: &str = "connection";

/// What the collector does without a packet socket.
const POLL_FALLBACK: &str =
    "polling /proc/net/tcp and tcp6 every second; connections shorter than a second are missed";

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

/// A TCP connection request (SYN without ACK) read from a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Syn {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The initial sequence number: the same in every copy of one SYN (retransmissions, other
    /// interfaces, NAT), different for the next connection.
    pub seq: u32,
}

/// A captured handshake segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// A connection request.
    Syn(Syn),
    /// A listener's answer to `client`'s request: proof that a listener on `server` took the
    /// connection, even if every socket of it is gone by the time the collector looks
    /// ([`Capture::proved`]). `ack` is the client's initial sequence number + 1.
    SynAck {
        server: SocketAddr,
        client: SocketAddr,
        ack: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet truncated")]
    Truncated,
    #[error("not an IPv4 or IPv6 packet")]
    NotIp,
    #[error("malformed header")]
    BadHeader,
    #[error("not a TCP segment")]
    NotTcp,
    #[error("not the first fragment")]
    Fragment,
    #[error("not a connection request")]
    NotSyn,
}

impl PacketError {
    /// A bounded metric label.
    fn label(self) -> &'static str {
        match self {
            PacketError::Truncated => "packet_truncated",
            PacketError::NotIp => "packet_not_ip",
            PacketError::BadHeader => "packet_malformed",
            PacketError::NotTcp => "packet_not_tcp",
            PacketError::Fragment => "packet_fragment",
            PacketError::NotSyn => "packet_not_syn",
        }
    }
}

const IPPROTO_TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// IPv6 extension headers followed at most; a longer chain is not a real SYN.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Reads the connection request in a packet that starts at its IP header (cooked capture).
/// Everything is bounds-checked: any byte string gives a `Syn` or an error, never a panic.
pub fn parse_syn(packet: &[u8]) -> Result<Syn, PacketError> {
    match parse_segment(packet)? {
        Segment::Syn(syn) => Ok(syn),
        Segment::SynAck { .. } => Err(PacketError::NotSyn),
    }
}

/// Reads the SYN or SYN-ACK in a packet that starts at its IP header; like [`parse_syn`], never
/// panics.
pub fn parse_segment(packet: &[u8]) -> Result<Segment, PacketError> {
    let first = *packet.first().ok_or(PacketError::Truncated)?;
    match first >> 4 {
        4 => parse_v4(packet),
        6 => parse_v6(packet),
        _ => Err(PacketError::NotIp),
    }
}

fn parse_v4(p: &[u8]) -> Result<Segment, PacketError> {
    if p.len() < 20 {
        return Err(PacketError::Truncated);
    }
    let header_len = usize::from(p[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if header_len < 20 || total_len < header_len {
        return Err(PacketError::BadHeader);
    }
    if p[9] != IPPROTO_TCP {
        return Err(PacketError::NotTcp);
    }
    if u16::from_be_bytes([p[6], p[7]]) & 0x1fff != 0 {
        return Err(PacketError::Fragment);
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    // The capture may be shorter than the packet (snap length) or longer (link padding).
    let p = &p[..p.len().min(total_len)];
    let tcp = p.get(header_len..).ok_or(PacketError::Truncated)?;
    parse_tcp(tcp, src.into(), dst.into())
}

fn parse_v6(p: &[u8]) -> Result<Segment, PacketError> {
    if p.len() < 40 {
        return Err(PacketError::Truncated);
    }
    let payload_len = usize::from(u16::from_be_bytes([p[4], p[5]]));
    let mut src = [0u8; 16];
    src.copy_from_slice(&p[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&p[24..40]);
    // Payload length 0 is a jumbogram (length in a hop-by-hop option): keep what was captured.
    let p = if payload_len == 0 {
        p
    } else {
        &p[..p.len().min(40 + payload_len)]
    };
    let (src, dst) = (Ipv6Addr::from(src).into(), Ipv6Addr::from(dst).into());
    let mut next = p[6];
    let mut offset = 40;
    for _ in 0..=MAX_EXTENSION_HEADERS {
        let header = |len: usize| p.get(offset..offset + len).ok_or(PacketError::Truncated);
        match next {
            IPPROTO_TCP => {
                let tcp = p.get(offset..).ok_or(PacketError::Truncated)?;
                return parse_tcp(tcp, src, dst);
            }
            // Hop-by-hop options, routing, destination options: length in 8-byte units, not
            // counting the first 8.
            0 | 43 | 60 => {
                let h = header(2)?;
                next = h[0];
                offset += (usize::from(h[1]) + 1) * 8;
            }
            // Fragment: only the first fragment carries the TCP header.
            44 => {
                let h = header(8)?;
                if u16::from_be_bytes([h[2], h[3]]) >> 3 != 0 {
                    return Err(PacketError::Fragment);
                }
                next = h[0];
                offset += 8;
            }
            // Authentication header: length in 4-byte units, not counting the first 8 bytes.
            51 => {
                let h = header(2)?;
                next = h[0];
                offset += (usize::from(h[1]) + 2) * 4;
            }
            // ESP (encrypted), no next header (59), or another protocol.
            _ => return Err(PacketError::NotTcp),
        }
    }
    Err(PacketError::BadHeader)
}

fn parse_tcp(tcp: &[u8], src: IpAddr, dst: IpAddr) -> Result<Segment, PacketError> {
    if tcp.len() < 14 {
        return Err(PacketError::Truncated);
    }
    let syn_ack = match tcp[13] & (TCP_SYN | TCP_ACK) {
        TCP_SYN => false,
        f if f == TCP_SYN | TCP_ACK => true,
        _ => return Err(PacketError::NotSyn),
    };
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    if sport == 0 || dport == 0 {
        return Err(PacketError::BadHeader);
    }
    let (src, dst) = (SocketAddr::new(src, sport), SocketAddr::new(dst, dport));
    Ok(if syn_ack {
        Segment::SynAck {
            server: src,
            client: dst,
            ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        }
    } else {
        Segment::Syn(Syn {
            src,
            dst,
            seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        })
    })
}

/// Bytes of each accepted packet copied to user space: IP and TCP headers, with room for IPv6
/// extension headers.
pub const SNAP_LEN: u32 = 256;

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    // Classic BPF opcodes fit in 16 bits.
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The classic BPF program attached to the packet socket: accept TCP segments with SYN set
/// (connection requests, and the SYN-ACKs that prove a listener took one), IPv4 and IPv6, and
/// drop everything else in the kernel.
///
/// The socket is cooked (`SOCK_DGRAM`), so offset 0 is the IP header on every link type and in
/// both directions. IPv6 packets with extension headers are passed to user space, which walks
/// the chain ([`parse_syn`]); they are rare, and a filter cannot loop.
pub fn syn_filter() -> Vec<libc::sock_filter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JA, BPF_JEQ, BPF_JMP, BPF_JSET,
        BPF_K, BPF_LD, BPF_LDX, BPF_MSH, BPF_RET,
    };
    // Instruction numbers of the jump targets below.
    const FLAGS: usize = 19;
    const ACCEPT: usize = 22;
    const DROP: usize = 23;
    // Relative jump from instruction `pc` to `target` (classic BPF only jumps forward).
    let to = |pc: usize, target: usize| -> u8 {
        u8::try_from(target - pc - 1).expect("filter jumps are short and forward")
    };
    let protocol = (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32;
    vec![
        // 0: A = EtherType of the packet (skb->protocol), whatever the link layer.
        stmt(BPF_LD | BPF_H | BPF_ABS, protocol),
        // 1: IPv4 → 2, else → 9.
        jump(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, to(1, 9)),
        // 2: A = IPv4 protocol field.
        stmt(BPF_LD | BPF_B | BPF_ABS, 9),
        // 3: TCP → 4, else drop.
        jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            u32::from(IPPROTO_TCP),
            0,
            to(3, DROP),
        ),
        // 4: A = flags and fragment offset.
        stmt(BPF_LD | BPF_H | BPF_ABS, 6),
        // 5: a later fragment (offset ≠ 0) has no TCP header: drop.
        jump(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, to(5, DROP), 0),
        // 6: X = IPv4 header length (4 × IHL).
        stmt(BPF_LDX | BPF_B | BPF_MSH, 0),
        // 7: A = TCP flags (byte 13 of the TCP header).
        stmt(BPF_LD | BPF_B | BPF_IND, 13),
        // 8: → flag check.
        stmt(BPF_JMP | BPF_JA, (FLAGS - 9) as u32),
        // 9: IPv6 → 10, else drop.
        jump(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 0, to(9, DROP)),
        // 10: A = IPv6 next header.
        stmt(BPF_LD | BPF_B | BPF_ABS, 6),
        // 11: TCP right after the fixed header → 12, else → 14 (extension headers?).
        jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            u32::from(IPPROTO_TCP),
            0,
            to(11, 14),
        ),
        // 12: A = TCP flags (40-byte IPv6 header + 13).
        stmt(BPF_LD | BPF_B | BPF_ABS, 40 + 13),
        // 13: → flag check.
        stmt(BPF_JMP | BPF_JA, (FLAGS - 14) as u32),
        // 14-18: hop-by-hop, routing, fragment, AH, destination options: user space decides.
        jump(BPF_JMP | BPF_JEQ | BPF_K, 0, to(14, ACCEPT), 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 43, to(15, ACCEPT), 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 44, to(16, ACCEPT), 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 51, to(17, ACCEPT), 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 60, to(18, ACCEPT), to(18, DROP)),
        // 19 (FLAGS): keep SYN and ACK.
        stmt(BPF_ALU | BPF_AND | BPF_K, u32::from(TCP_SYN | TCP_ACK)),
        // 20: SYN without ACK → accept, else → 21.
        jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            u32::from(TCP_SYN),
            to(20, ACCEPT),
            0,
        ),
        // 21: SYN-ACK → accept, else drop.
        jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            u32::from(TCP_SYN | TCP_ACK),
            0,
            to(21, DROP),
        ),
        // 22 (ACCEPT): copy the first SNAP_LEN bytes.
        stmt(BPF_RET | BPF_K, SNAP_LEN),
        // 23 (DROP).
        stmt(BPF_RET | BPF_K, 0),
    ]
}

// Packet types (linux/if_packet.h).
const PACKET_HOST: u8 = 0;
const PACKET_OTHERHOST: u8 = 3;
const PACKET_OUTGOING: u8 = 4;

/// One captured packet's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured {
    pub len: usize,
    /// `PACKET_HOST`, `PACKET_OUTGOING`, …
    pub pkttype: u8,
}

fn socket(domain: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative return is a new descriptor we own.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// How long a read waits before the thread looks at its cancel token again.
const RECV_TIMEOUT: Duration = Duration::from_millis(200);

/// The filtered packet socket.
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens the socket on every interface. Needs `CAP_NET_RAW`.
    pub fn open() -> io::Result<PacketSocket> {
        // Protocol 0 receives nothing until bind(): no unfiltered packet is queued before the
        // filter is attached.
        let fd = socket(libc::AF_PACKET, libc::SOCK_DGRAM, 0)?;
        let mut filter = syn_filter();
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_mut_ptr(),
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
        // Room for bursts while attribution reads /proc: ~20k SYNs.
        let size: libc::c_int = 8 << 20;
        if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
            let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size);
        }
        set_recv_timeout(&fd, RECV_TIMEOUT)?;
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd })
    }

    /// The next packet, or `None` when the wait timed out or was interrupted.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Captured>> {
        // SAFETY: plain data, zero is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut addr_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` and `addr` are valid for the lengths passed.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut addr as *mut libc::sockaddr_ll).cast(),
                &mut addr_len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(Captured {
            len: (n as usize).min(buf.len()),
            pkttype: addr.sll_pkttype,
        }))
    }

    /// Packets the kernel dropped because the socket's queue was full, since the last call.
    pub fn take_drops(&self) -> io::Result<u64> {
        // SAFETY: plain data, zero is valid.
        let mut stats: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `stats` is valid for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(u64::from(stats.tp_drops))
    }
}

// ---------------------------------------------------------------------------------------------
// Which connection a SYN is
// ---------------------------------------------------------------------------------------------

/// A connection of one namespace, as read from a SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The other namespace's inode; `None` for the agent's own (the host's).
    pub netns: Option<u64>,
    pub direction: Direction,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The connections a SYN seen with `pkttype` stands for (none, one or two): see the table in the
/// module documentation. `ours(ip)` says whether an address belongs to the agent's namespace,
/// `theirs(ip)` which other namespace it belongs to.
pub fn candidates(
    syn: &Syn,
    pkttype: u8,
    ours: impl Fn(IpAddr) -> bool,
    theirs: impl Fn(IpAddr) -> Option<u64>,
) -> Vec<Candidate> {
    let out = |netns| Candidate {
        netns,
        direction: Direction::Out,
        local: syn.src,
        remote: syn.dst,
    };
    let inbound = |netns| Candidate {
        netns,
        direction: Direction::In,
        local: syn.dst,
        remote: syn.src,
    };
    let mut found = Vec::new();
    match pkttype {
        PACKET_OUTGOING => {
            if ours(syn.src.ip()) {
                found.push(out(None));
            }
            if let Some(ns) = theirs(syn.dst.ip()) {
                found.push(inbound(Some(ns)));
            }
        }
        PACKET_HOST => {
            if ours(syn.dst.ip()) {
                found.push(inbound(None));
            }
            if let Some(ns) = theirs(syn.src.ip()) {
                found.push(out(Some(ns)));
            }
        }
        PACKET_OTHERHOST => {
            if let Some(ns) = theirs(syn.src.ip()) {
                found.push(out(Some(ns)));
            }
        }
        // Broadcast, multicast, loopback-internal: not a unicast connection request.
        _ => {}
    }
    found
}

/// Identity of a reported connection, for suppressing copies of the same SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SeenKey {
    /// Across namespaces: NAT rewrites the source, not the destination or the sequence number.
    Out { seq: u32, remote: SocketAddr },
    In {
        netns: Option<u64>,
        seq: u32,
        local: SocketAddr,
        remote: SocketAddr,
    },
}

impl SeenKey {
    fn of(c: &Candidate, seq: u32) -> SeenKey {
        match c.direction {
            Direction::Out => SeenKey::Out {
                seq,
                remote: c.remote,
            },
            Direction::In => SeenKey::In {
                netns: c.netns,
                seq,
                local: c.local,
                remote: c.remote,
            },
        }
    }
}

/// How long a SYN is remembered: longer than the kernel's SYN retransmissions (~127 s with
/// the default six retries).
const SEEN_TTL: Duration = Duration::from_secs(130);
const SEEN_MAX: usize = 16 * 1024;

/// A bounded set of recently reported connections.
///
/// It holds a 64-bit keyed hash (fingerprint) of each [`SeenKey`], not the key: a key is 88
/// bytes (two socket addresses of IPv6 size), and with the deque's copy and the set's spare
/// room the full keys cost ~300 bytes a connection; the 200-execs/s soak's 20 connections a
/// second (both ends of each loopback SYN are seen, for 130 s) kept 1.6 MiB of them resident,
/// and a connection storm up to [`SEEN_MAX`] would keep ~5 MiB. Fingerprints cost ~40 bytes. Two
/// different connections with the same fingerprint within [`SEEN_TTL`] would hide the second:
/// with at most `SEEN_MAX` fingerprints the odds are below 1e-15 per connection, and the hash key
/// is random per process, so a peer cannot aim at a collision.
#[derive(Debug, Default)]
struct Seen {
    hasher: std::hash::RandomState,
    keys: HashSet<u64>,
    order: VecDeque<(Instant, u64)>,
}

impl Seen {
    /// True the first time `key` is seen (within [`SEEN_TTL`]).
    fn first(&mut self, key: SeenKey, now: Instant) -> bool {
        use std::hash::BuildHasher;
        let mut expired = false;
        while let Some(&(t, k)) = self.order.front() {
            if now.duration_since(t) < SEEN_TTL && self.order.len() < SEEN_MAX {
                break;
            }
            self.order.pop_front();
            self.keys.remove(&k);
            expired = true;
        }
        if expired {
            // A connection storm fills the set towards SEEN_MAX; the quiet host after it
            // should not keep that capacity resident.
            super::capacity::shrink_set(&mut self.keys);
            super::capacity::shrink_deque(&mut self.order);
        }
        let fingerprint = self.hasher.hash_one(key);
        if !self.keys.insert(fingerprint) {
            return false;
        }
        self.order.push_back((now, fingerprint));
        true
    }
}

// ---------------------------------------------------------------------------------------------
// sock_diag
// ---------------------------------------------------------------------------------------------

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_req_v2`.
const DIAG_REQ_LEN: usize = 56;
/// `struct inet_diag_msg`.
const DIAG_MSG_LEN: usize = 72;
const TCP_SYN_RECV: u8 = 3;
const TCP_TIME_WAIT: u8 = 6;
const TCP_NEW_SYN_RECV: u8 = 12;

/// What the kernel says about one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub uid: u32,
    /// 0 when no process holds the socket (TIME_WAIT, not yet accepted, closed).
    pub inode: u64,
}

/// One netlink message of a sock_diag reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagMessage {
    Socket(DiagSocket),
    /// End of a dump.
    Done,
    /// An error (negative errno) or, with 0, an acknowledgement.
    Error(i32),
    /// A message type this collector does not use.
    Other(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DiagError {
    #[error("netlink message truncated")]
    Truncated,
    #[error("netlink message length {0} is invalid")]
    BadLength(u32),
    #[error("socket family {0} is not IPv4 or IPv6")]
    BadFamily(u8),
}

/// Builds a sock_diag request for TCP: an exact lookup of the socket with this local and remote
/// end (`dump_states: None`), or a dump of the sockets in the given state bits.
///
/// The exact lookup is the kernel's packet demultiplexer (`inet_lookup`): established sockets
/// (including TIME_WAIT and pending requests) first, then the listener on the local address
/// and port. With an all-zero remote end only the listener can match.
pub fn encode_diag_request(
    seq: u32,
    local: SocketAddr,
    remote: SocketAddr,
    dump_states: Option<u32>,
) -> [u8; NLMSG_HDRLEN + DIAG_REQ_LEN] {
    let mut b = [0u8; NLMSG_HDRLEN + DIAG_REQ_LEN];
    let flags = match dump_states {
        Some(_) => NLM_F_REQUEST | NLM_F_DUMP,
        None => NLM_F_REQUEST,
    };
    b[0..4].copy_from_slice(&((NLMSG_HDRLEN + DIAG_REQ_LEN) as u32).to_ne_bytes());
    b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b[6..8].copy_from_slice(&flags.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel.
    let r = &mut b[NLMSG_HDRLEN..];
    r[0] = if local.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    };
    r[1] = IPPROTO_TCP;
    // idiag_ext 0, pad 0.
    r[4..8].copy_from_slice(&dump_states.unwrap_or(u32::MAX).to_ne_bytes());
    // inet_diag_sockid: ports and addresses in network order.
    let id = &mut r[8..];
    id[0..2].copy_from_slice(&local.port().to_be_bytes());
    id[2..4].copy_from_slice(&remote.port().to_be_bytes());
    let put = |slot: &mut [u8], ip: IpAddr| match ip {
        IpAddr::V4(v4) => slot[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => slot.copy_from_slice(&v6.octets()),
    };
    if dump_states.is_none() {
        put(&mut id[4..20], local.ip());
        put(&mut id[20..36], remote.ip());
    }
    // idiag_if 0 (any interface); cookie INET_DIAG_NOCOOKIE: do not check it.
    id[40..48].fill(0xff);
    b
}

/// Parses the netlink messages in one datagram of a sock_diag reply, with their sequence
/// numbers. At most one message per 16 bytes: no input can make this loop long.
pub fn parse_diag_messages(buf: &[u8]) -> Result<Vec<(u32, DiagMessage)>, DiagError> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let hdr = rest.get(..NLMSG_HDRLEN).ok_or(DiagError::Truncated)?;
        let len = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let ty = u16::from_ne_bytes([hdr[4], hdr[5]]);
        let seq = u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
        let n = len as usize;
        if n < NLMSG_HDRLEN || n > rest.len() {
            return Err(DiagError::BadLength(len));
        }
        let body = &rest[NLMSG_HDRLEN..n];
        let msg = match ty {
            NLMSG_DONE => DiagMessage::Done,
            NLMSG_ERROR => {
                let e = body.get(..4).ok_or(DiagError::Truncated)?;
                DiagMessage::Error(i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
            }
            SOCK_DIAG_BY_FAMILY => DiagMessage::Socket(parse_diag_socket(body)?),
            other => DiagMessage::Other(other),
        };
        out.push((seq, msg));
        // Messages are 4-byte aligned.
        let next = n.div_ceil(4) * 4;
        rest = rest.get(next..).unwrap_or(&[]);
    }
    Ok(out)
}

/// Parses a `struct inet_diag_msg`.
pub fn parse_diag_socket(b: &[u8]) -> Result<DiagSocket, DiagError> {
    let b = b.get(..DIAG_MSG_LEN).ok_or(DiagError::Truncated)?;
    let ip = |slot: &[u8]| -> Result<IpAddr, DiagError> {
        match i32::from(b[0]) {
            libc::AF_INET => Ok(Ipv4Addr::new(slot[0], slot[1], slot[2], slot[3]).into()),
            libc::AF_INET6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(slot);
                Ok(Ipv6Addr::from(a).into())
            }
            _ => Err(DiagError::BadFamily(b[0])),
        }
    };
    let sport = u16::from_be_bytes([b[4], b[5]]);
    let dport = u16::from_be_bytes([b[6], b[7]]);
    Ok(DiagSocket {
        state: b[1],
        local: SocketAddr::new(ip(&b[8..24])?, sport),
        remote: SocketAddr::new(ip(&b[24..40])?, dport),
        uid: u32::from_ne_bytes([b[64], b[65], b[66], b[67]]),
        inode: u64::from(u32::from_ne_bytes([b[68], b[69], b[70], b[71]])),
    })
}

/// A sock_diag netlink socket, bound to the network namespace it was opened in.
pub struct Diag {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Diag {
    pub fn open() -> io::Result<Diag> {
        let fd = socket(libc::AF_NETLINK, libc::SOCK_DGRAM, libc::NETLINK_SOCK_DIAG)?;
        // A kernel that does not answer must not stall the capture for long.
        set_recv_timeout(&fd, Duration::from_millis(500))?;
        let mut diag = Diag {
            fd,
            seq: 0,
            buf: vec![0; 32 * 1024],
        };
        // A dump of the listeners proves tcp_diag is there: without it an exact lookup would
        // answer ENOENT, which looks like "no such socket".
        diag.dump_listeners()?;
        Ok(diag)
    }

    fn send(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        dump: Option<u32>,
    ) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let req = encode_diag_request(self.seq, local, remote, dump);
        // SAFETY: zeroed sockaddr_nl is valid; family set below, pid 0 is the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `req` and `kernel` are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.seq)
    }

    /// Receives one datagram and parses it.
    fn receive(&mut self) -> io::Result<Vec<(u32, DiagMessage)>> {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = &self.buf[..(n as usize).min(self.buf.len())];
        parse_diag_messages(got).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn dump_listeners(&mut self) -> io::Result<usize> {
        let any = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0);
        let seq = self.send(any, any, Some(1 << TCP_LISTEN))?;
        let mut sockets = 0;
        // A dump is a few datagrams; a bound keeps a misbehaving reply from spinning.
        for _ in 0..10_000 {
            for (s, msg) in self.receive()? {
                if s != seq {
                    continue;
                }
                match msg {
                    DiagMessage::Socket(_) => sockets += 1,
                    DiagMessage::Done => return Ok(sockets),
                    DiagMessage::Error(e) if e < 0 => return Err(io::Error::from_raw_os_error(-e)),
                    _ => {}
                }
            }
        }
        Err(io::Error::other("sock_diag dump did not end"))
    }

    /// The socket the kernel would deliver a packet from `remote` to `local` to.
    pub fn lookup(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> io::Result<Option<DiagSocket>> {
        let seq = self.send(local, remote, None)?;
        // Replies to earlier requests that timed out may still be queued: skip them.
        for _ in 0..16 {
            for (s, msg) in self.receive()? {
                if s != seq {
                    continue;
                }
                return match msg {
                    DiagMessage::Socket(sock) => Ok(Some(sock)),
                    DiagMessage::Error(e) if e == -libc::ENOENT || e == 0 => Ok(None),
                    DiagMessage::Error(e) => Err(io::Error::from_raw_os_error(-e)),
                    DiagMessage::Done | DiagMessage::Other(_) => Ok(None),
                };
            }
        }
        Err(io::Error::other("no sock_diag reply"))
    }
}

/// Opens a sock_diag socket inside `ns`: a helper thread joins the namespace, opens the socket
/// (which stays bound to that namespace) and ends.
fn open_diag_in(host: &HostRoot, ns: NetNs) -> io::Result<Diag> {
    let file = std::fs::File::open(host.path(format!("/proc/{}/ns/net", ns.pid)))?;
    // The pid may have moved on since the namespace list was made.
    if file.metadata()?.ino() != ns.inode {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the process left the namespace",
        ));
    }
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("edgeguard-netns".into())
            .spawn_scoped(s, || {
                // SAFETY: setns on this short-lived thread only; the fd is a valid ns file.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Diag::open()
            })?;
        helper
            .join()
            .map_err(|_| io::Error::other("namespace helper thread failed"))?
    })
}

// ---------------------------------------------------------------------------------------------
// Namespaces and their sockets
// ---------------------------------------------------------------------------------------------

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

/// The addresses of the namespace whose `/proc/<pid>/net` is `net_dir`.
fn local_addresses(net_dir: &Path) -> HashSet<IpAddr> {
    let read = |f: &str| {
        std::fs::File::open(net_dir.join(f))
            .and_then(|file| {
                let mut s = String::new();
                io::Read::read_to_string(
                    &mut io::Read::take(file, crate::host::MAX_FILE_BYTES),
                    &mut s,
                )?;
                Ok(s)
            })
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

/// What the socket tables say about a connection's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    state: u8,
    /// `None` when the kernel keeps no owner (TIME_WAIT and pending requests report 0).
    uid: Option<u32>,
    inode: u64,
}

impl Found {
    fn new(state: u8, uid: u32, inode: u64) -> Found {
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
struct Namespace {
    inode: u64,
    /// Its `/proc/<pid>/net` directory (ours: `/proc/self/net`).
    net_dir: PathBuf,
    addrs: HashSet<IpAddr>,
    /// sock_diag in this namespace; `None`: search `net_dir`'s socket tables instead.
    diag: Option<Diag>,
    /// The container the namespace belongs to (from its first process).
    container_id: Option<String>,
}

impl Namespace {
    fn lookup(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<Found> {
        if let Some(diag) = &mut self.diag {
            match diag.lookup(local, remote) {
                Ok(found) => return found.map(|s| Found::new(s.state, s.uid, s.inode)),
                Err(e) => tracing::debug!(error = %e, "sock_diag lookup failed; reading tables"),
            }
        }
        let file = if local.is_ipv4() { "tcp" } else { "tcp6" };
        let keep = |e: &SocketEntry| e.local.port() == local.port();
        let mut entries = listening::read_socket_table(&self.net_dir.join(file), keep)
            .map(|t| t.entries)
            .unwrap_or_default();
        if local.is_ipv4() {
            // Dual-stack sockets list IPv4 peers in tcp6.
            if let Ok(t) = listening::read_socket_table(&self.net_dir.join("tcp6"), keep) {
                entries.extend(t.entries);
            }
        }
        find_in_table(&entries, local, remote).map(|e| Found::new(e.state, e.uid, e.inode))
    }
}

/// How often the namespace list is re-read when a SYN fits no known namespace.
const NS_REFRESH_ON_MISS: Duration = Duration::from_millis(500);
/// How often it is re-read anyway (new addresses, namespaces gone).
const NS_REFRESH_EVERY: Duration = Duration::from_secs(30);

/// The agent's namespace and every other one on the host, with their addresses.
struct Namespaces {
    ours: Namespace,
    others: HashMap<u64, Namespace>,
    by_addr: HashMap<IpAddr, u64>,
    refreshed: Instant,
    /// Whether sock_diag worked in our namespace (else: Degraded).
    diag_ok: bool,
}

impl Namespaces {
    fn new(host: &HostRoot) -> Namespaces {
        // Our own namespace is where the packet socket listens: read it from /proc/self (not
        // through the host root, which may be another PID namespace's /proc).
        let net_dir = PathBuf::from("/proc/self/net");
        let inode = std::fs::read_link("/proc/self/ns/net")
            .ok()
            .and_then(|t| listening::parse_ns_link(t.to_str()?))
            .unwrap_or(0);
        let diag = Diag::open()
            .map_err(|e| tracing::debug!(error = %e, "sock_diag unavailable"))
            .ok();
        let diag_ok = diag.is_some();
        let mut ns = Namespaces {
            ours: Namespace {
                inode,
                addrs: local_addresses(&net_dir),
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

    fn is_ours(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.ours.addrs.contains(&ip)
    }

    fn theirs(&self, ip: IpAddr) -> Option<u64> {
        self.by_addr.get(&ip).copied()
    }

    fn get(&mut self, netns: Option<u64>) -> Option<&mut Namespace> {
        match netns {
            None => Some(&mut self.ours),
            Some(inode) => self.others.get_mut(&inode),
        }
    }

    /// Re-reads the namespace list and every namespace's addresses; opens sock_diag in new ones.
    fn refresh(&mut self, host: &HostRoot) {
        self.refreshed = Instant::now();
        self.ours.addrs = local_addresses(&self.ours.net_dir);
        let mut others = HashMap::new();
        for ns in listening::network_namespaces(host) {
            if ns.inode == self.ours.inode {
                continue;
            }
            let net_dir = host.path(format!("/proc/{}/net", ns.pid));
            let mut entry = match self.others.remove(&ns.inode) {
                Some(known) => known,
                None => {
                    let diag = open_diag_in(host, ns)
                        .map_err(|e| tracing::debug!(netns = ns.inode, error = %e, "no sock_diag in namespace"))
                        .ok();
                    let container_id = host
                        .read_to_string(format!("/proc/{}/cgroup", ns.pid))
                        .ok()
                        .and_then(|cg| proc_info::container_id_from_cgroup(&cg));
                    Namespace {
                        inode: ns.inode,
                        net_dir: net_dir.clone(),
                        addrs: HashSet::new(),
                        diag,
                        container_id,
                    }
                }
            };
            entry.net_dir = net_dir;
            entry.addrs = local_addresses(&entry.net_dir);
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
    missed_listeners: HashSet<u64>,
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

    fn lookup(&mut self, host: &HostRoot, inode: u64, force_full: bool) -> Option<u32> {
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
        let mut new: Vec<u32> = listening::pids(host)
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
        self.map = listening::socket_owners(host);
        self.known_pids = listening::pids(host).into_iter().collect();
    }

    /// Looks for `inode` among the sockets of `pids`. Only the hit is remembered, after
    /// [`topmost_holder`]: the other sockets a scanned process holds may be its parent's,
    /// inherited at a fork, and remembered as the child's they would be attributed to it.
    fn scan(&mut self, host: &HostRoot, pids: Vec<u32>, inode: u64) -> Option<u32> {
        if self.map.len() >= listening::MAX_OWNERS {
            self.map.clear();
        }
        for pid in pids {
            let mut hit = false;
            listening::sockets_of(host, pid, |i| hit |= i == inode);
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
        let Some(ppid) = std::fs::read_to_string(host.path(format!("/proc/{owner}/status")))
            .ok()
            .and_then(|t| proc_info::parse_status(&t).ppid)
        else {
            break;
        };
        if ppid <= 1 {
            break;
        }
        let mut held = false;
        listening::sockets_of(host, ppid, |i| held |= i == inode);
        if !held {
            break;
        }
        owner = ppid;
    }
    owner
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// Who a connection belongs to, as far as is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Attribution {
    pid: Option<u32>,
    uid: Option<u32>,
}

/// Builds the record for a connection of namespace `netns` (its inode and container).
fn record(
    host: &HostRoot,
    names: &mut UserNames,
    c: &Candidate,
    who: Attribution,
    netns: u64,
    ns_container: Option<&str>,
) -> ConnectionCreate {
    let info = who.pid.map(|pid| proc_info::read(host, pid));
    let uid = who.uid.or(info.as_ref().and_then(|i| i.uid));
    let mut extra = ExtraDetails::new();
    if netns != 0 {
        extra.insert("NetNs".into(), netns.to_string());
    }
    let container = info
        .as_ref()
        .and_then(|i| i.container_id.clone())
        .or(ns_container.map(str::to_string));
    if let Some(id) = container {
        extra.insert("ContainerId".into(), id);
    }
    if let Some(name) = uid.and_then(|u| names.name(host, u)) {
        extra.insert("UserName".into(), name);
    }
    if who.pid.is_none() {
        extra.insert("Unattributed".into(), "true".into());
    }
    ConnectionCreate {
        remote_address: c.remote.ip(),
        remote_port: c.remote.port(),
        local_address: Some(c.local.ip()),
        local_port: Some(c.local.port()),
        direction: c.direction,
        protocol: "TCP".into(),
        process_id: who.pid.unwrap_or(0),
        user_id: uid.map(|u| u.to_string()),
        executable: info.as_ref().map(|i| i.executable()).unwrap_or_default(),
        command_line: info.and_then(|i| i.cmdline),
        extra_details: extra,
    }
}

// ---------------------------------------------------------------------------------------------
// The capture loop
// ---------------------------------------------------------------------------------------------

/// Starts the collector on its own thread. It stops when `ctx.cancel` is cancelled (within
/// ~200 ms) or when the pipeline is gone. Emits `ConnectionCreate` events (and `CollectorStatus`
/// when it has to fall back).
pub fn spawn(ctx: Context) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("edgeguard-connection".into())
        .spawn(move || run(ctx))
        .expect("the OS can start one more thread")
}

fn run(ctx: Context) {
    let socket = match PacketSocket::open() {
        Ok(s) => s,
        Err(e) => {
            ctx.report_status(
                COLLECTOR,
                CollectorHealth::Degraded,
                format!("cannot open a packet socket (CAP_NET_RAW is needed): {e}"),
                Some(POLL_FALLBACK),
            );
            poll_loop(&ctx);
            return;
        }
    };
    let mut capture = Capture::new(&ctx.host);
    if capture.namespaces.diag_ok {
        ctx.report_status(
            COLLECTOR,
            CollectorHealth::Up,
            "capturing TCP connection requests on every interface",
            None,
        );
    } else {
        ctx.report_status(
            COLLECTOR,
            CollectorHealth::Degraded,
            "sock_diag (tcp_diag) is unavailable: connections are attributed from /proc/net/tcp",
            Some("short-lived connections may be reported without their process"),
        );
    }
    if !capture.run(&ctx, &socket) {
        ctx.report_status(
            COLLECTOR,
            CollectorHealth::Degraded,
            "the packet socket keeps failing",
            Some(POLL_FALLBACK),
        );
        poll_loop(&ctx);
    }
}

/// State of the capture thread.
struct Capture {
    host: HostRoot,
    namespaces: Namespaces,
    owners: Owners,
    seen: Seen,
    names: UserNames,
    /// Inbound SYNs with no listener and no trace of an accepted connection since the last
    /// count (refused attempts, e.g. a port scan): not reported as connections, but counted.
    refused: u64,
    listeners: RecentListeners,
    /// `In`s whose lookup found nothing, waiting for their SYN-ACK ([`Capture::proved`]).
    unproven: VecDeque<Unproven>,
}

/// An `In` whose lookup found no listener and no socket of the connection: a refused attempt,
/// or a connection whose every socket was gone before the collector got to its SYN (a burst
/// accepted and closed at once; a reset ends even the client's TIME_WAIT). The listener's
/// SYN-ACK, captured too, tells the two apart.
struct Unproven {
    candidate: Candidate,
    seq: u32,
    since: Instant,
}

/// How long an unproven `In` waits for its SYN-ACK before it counts as refused. The SYN-ACK
/// leaves as the SYN arrives, so it is queued right behind it: this only covers the collector
/// falling behind its queue.
const PROOF_WAIT: Duration = Duration::from_secs(2);
/// Unproven `In`s kept at most (a port scan makes many); beyond, the oldest counts as refused.
const MAX_UNPROVEN: usize = 4096;

impl Capture {
    fn new(host: &HostRoot) -> Capture {
        let mut owners = Owners::default();
        owners.prime(host);
        Capture {
            host: host.clone(),
            namespaces: Namespaces::new(host),
            owners,
            seen: Seen::default(),
            names: UserNames::default(),
            listeners: RecentListeners::default(),
            refused: 0,
            unproven: VecDeque::new(),
        }
    }

    /// Reads packets until cancelled (`true`) or until the socket keeps failing (`false`).
    fn run(&mut self, ctx: &Context, socket: &PacketSocket) -> bool {
        let mut held = Held::default();
        let result = self.run_holding(ctx, socket, &mut held);
        // However the loop ended, records already made are handed over.
        ctx.release(&mut held, COLLECTOR);
        result
    }

    fn run_holding(&mut self, ctx: &Context, socket: &PacketSocket, held: &mut Held) -> bool {
        let mut buf = [0u8; 2 * SNAP_LEN as usize];
        let mut last_stats = Instant::now();
        let mut failures = 0u32;
        let mut timeout = RecvTimeout::new(RECV_TIMEOUT);
        while !ctx.cancel.is_cancelled() {
            if held.due_in().is_some_and(|d| d.is_zero()) && !ctx.release(held, COLLECTOR) {
                return true; // the pipeline has stopped
            }
            self.expire_unproven(Instant::now());
            for _ in 0..std::mem::take(&mut self.refused) {
                ctx.metrics.error(COLLECTOR, "inbound_refused");
            }
            timeout.follow(&socket.fd, held);
            match socket.recv(&mut buf) {
                Ok(Some(got)) => {
                    failures = 0;
                    for r in self.handle(&buf[..got.len], got.pkttype, ctx) {
                        let event = Event::new(Payload::ConnectionCreate(vec![r]));
                        if !ctx.hold(held, COLLECTOR, event) {
                            return true; // the pipeline has stopped
                        }
                    }
                }
                // The traffic paused (or a signal came): what is held goes over.
                Ok(None) => {
                    if !held.is_empty() && !ctx.release(held, COLLECTOR) {
                        return true; // the pipeline has stopped
                    }
                }
                Err(e) => {
                    failures += 1;
                    ctx.metrics.error(COLLECTOR, "packet_recv");
                    tracing::debug!(error = %e, "packet socket read failed");
                    if failures >= 100 {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if last_stats.elapsed() >= Duration::from_secs(1) {
                last_stats = Instant::now();
                if let Ok(drops) = socket.take_drops() {
                    ctx.metrics
                        .dropped(COLLECTOR, DropReason::SourceOverflow, drops);
                }
            }
            if self.namespaces.refreshed.elapsed() >= NS_REFRESH_EVERY {
                self.namespaces.refresh(&self.host);
            }
        }
        true
    }

    /// The records a captured packet stands for.
    fn handle(&mut self, packet: &[u8], pkttype: u8, ctx: &Context) -> Vec<ConnectionCreate> {
        match parse_segment(packet) {
            Ok(Segment::Syn(syn)) => self.records(&syn, pkttype),
            Ok(Segment::SynAck {
                server,
                client,
                ack,
            }) => self.proved(server, client, ack),
            Err(e) => {
                ctx.metrics.error(COLLECTOR, e.label());
                Vec::new()
            }
        }
    }

    /// A listener answered `client`: the `In` waiting for that answer was a connection after
    /// all. Reported like one whose listener closed before the lookup (the listener last seen
    /// on that address, else unattributed). Each SYN-ACK is captured twice on loopback; the
    /// second finds nothing waiting.
    fn proved(
        &mut self,
        server: SocketAddr,
        client: SocketAddr,
        ack: u32,
    ) -> Vec<ConnectionCreate> {
        let Some(i) = self.unproven.iter().position(|u| {
            u.candidate.local == server
                && u.candidate.remote == client
                && u.seq.wrapping_add(1) == ack
        }) else {
            return Vec::new();
        };
        let Some(u) = self.unproven.remove(i) else {
            return Vec::new();
        };
        let owner = Owner {
            inode_pid: None,
            uid: None,
            via: Via::ListenerClosed,
        };
        self.report(&u.candidate, owner, Instant::now())
            .into_iter()
            .collect()
    }

    /// Waits for the SYN-ACK of an `In` whose lookup found nothing ([`Unproven`]).
    fn await_proof(&mut self, candidate: Candidate, seq: u32, now: Instant) {
        if self.unproven.len() >= MAX_UNPROVEN {
            self.unproven.pop_front();
            self.refused += 1;
        }
        self.unproven.push_back(Unproven {
            candidate,
            seq,
            since: now,
        });
    }

    /// `In`s whose SYN-ACK never came were refused attempts (e.g. a port scan): counted, not
    /// reported.
    fn expire_unproven(&mut self, now: Instant) {
        while let Some(u) = self
            .unproven
            .front()
            .filter(|u| now.duration_since(u.since) >= PROOF_WAIT)
        {
            tracing::debug!(local = %u.candidate.local, remote = %u.candidate.remote, "inbound SYN with no listener, no accepted connection and no SYN-ACK: not reported");
            self.unproven.pop_front();
            self.refused += 1;
        }
    }

    fn candidates(&self, syn: &Syn, pkttype: u8) -> Vec<Candidate> {
        let ns = &self.namespaces;
        candidates(syn, pkttype, |ip| ns.is_ours(ip), |ip| ns.theirs(ip))
    }

    fn records(&mut self, syn: &Syn, pkttype: u8) -> Vec<ConnectionCreate> {
        let mut found = self.candidates(syn, pkttype);
        if found.is_empty()
            && matches!(pkttype, PACKET_HOST | PACKET_OUTGOING | PACKET_OTHERHOST)
            && self.namespaces.refreshed.elapsed() >= NS_REFRESH_ON_MISS
        {
            // Perhaps a container that started since the last look.
            self.namespaces.refresh(&self.host);
            found = self.candidates(syn, pkttype);
        }
        let now = Instant::now();
        let mut out = Vec::new();
        for c in found {
            if !self.seen.first(SeenKey::of(&c, syn.seq), now) {
                continue;
            }
            let Some(ns) = self.namespaces.get(c.netns) else {
                continue;
            };
            let Some(owner) = attribute(ns, &c) else {
                self.await_proof(c, syn.seq, now);
                continue;
            };
            out.extend(self.report(&c, owner, now));
        }
        out
    }

    /// The record of a connection whose socket lookup found `owner`.
    fn report(&mut self, c: &Candidate, owner: Owner, now: Instant) -> Option<ConnectionCreate> {
        let ns = self.namespaces.get(c.netns)?;
        let mut pid = match owner.via {
            Via::Listener => owner
                .inode_pid
                .and_then(|i| self.owners.listener_pid(&self.host, i)),
            _ => owner.inode_pid.and_then(|i| self.owners.pid(&self.host, i)),
        };
        if pid.is_none() && c.direction == Direction::In && owner.via == Via::Socket {
            // The accepted socket is new to the inode cache and may be closed before a scan
            // finds it; the process that accepts is the listener's owner.
            pid = listener_of(ns, c).and_then(|l| self.owners.listener_pid(&self.host, l.inode));
        }
        let mut who = Attribution {
            pid,
            uid: owner.uid,
        };
        let listener_key = (c.netns, c.local);
        match owner.via {
            Via::Listener if who.pid.is_some() => {
                self.listeners.remember(listener_key, who, now);
            }
            Via::ListenerClosed if who.pid.is_none() => {
                if let Some(remembered) = self.listeners.get(&listener_key, now) {
                    who = remembered;
                }
            }
            _ => {}
        }
        let (netns, container) = (ns.inode, ns.container_id.clone());
        let mut r = record(
            &self.host,
            &mut self.names,
            c,
            who,
            netns,
            container.as_deref(),
        );
        if owner.via == Via::ListenerClosed {
            r.extra_details
                .insert("ListenerClosed".into(), "true".into());
        }
        Some(r)
    }
}

/// The socket behind a candidate connection: its inode (when a process holds it) and uid.
struct Owner {
    inode_pid: Option<u64>,
    uid: Option<u32>,
    /// How the `In` side was found (always `Socket` for `Out`).
    via: Via,
}

/// What an `In` candidate's lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The connection's own socket, or the listener at the time of the lookup.
    Socket,
    /// The live listener (its owner is the process that accepts).
    Listener,
    /// No listener any more, but the connection was established: the collector got to the
    /// SYN after the listener had closed (it works through a queue, and a process may accept
    /// a burst and close its listener within milliseconds).
    ListenerClosed,
}

/// TCP states of a socket that prove its connection was established at some point (not
/// `SYN_SENT`, `LISTEN` or `CLOSE`, which a refused connection also passes through).
fn was_established(state: u8) -> bool {
    !matches!(state, 2 | TCP_LISTEN | 7)
}

/// Looks up the socket of a connection in its namespace. `None`: an `In` with nothing listening
/// and no sign that the connection was ever established (refused, or not for this namespace),
/// which is not a connection.
fn attribute(ns: &mut Namespace, c: &Candidate) -> Option<Owner> {
    let owner = |f: Found, via: Via| Owner {
        inode_pid: (f.inode != 0).then_some(f.inode),
        uid: f.uid,
        via,
    };
    match c.direction {
        Direction::Out => {
            // A listener here would be a coincidence of ports, not the connecting socket.
            let found = ns
                .lookup(c.local, c.remote)
                .filter(|f| f.state != TCP_LISTEN);
            Some(found.map(|f| owner(f, Via::Socket)).unwrap_or(Owner {
                inode_pid: None,
                uid: None,
                via: Via::Socket,
            }))
        }
        Direction::In => {
            let first = ns.lookup(c.local, c.remote);
            if let Some(f) = first {
                if f.state == TCP_LISTEN {
                    return Some(owner(f, Via::Listener));
                }
                if f.inode != 0 {
                    // The accepted socket itself.
                    return Some(owner(f, Via::Socket));
                }
            }
            let any = SocketAddr::new(
                match c.local {
                    SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
                    SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
                },
                0,
            );
            if let Some(listener) = ns.lookup(c.local, any).filter(|f| f.state == TCP_LISTEN) {
                return Some(owner(listener, Via::Listener));
            }
            // The listener is gone. The connection's server end (an orphan or TIME_WAIT) proves
            // it was accepted; so does the client end when the client is in this namespace too
            // (loopback), where the client's TIME_WAIT outlives both server sockets.
            if let Some(f) = first.filter(|f| was_established(f.state)) {
                return Some(owner(f, Via::ListenerClosed));
            }
            let local_peer = c.remote.ip().is_loopback() || ns.addrs.contains(&c.remote.ip());
            if local_peer {
                let client = ns
                    .lookup(c.remote, c.local)
                    .filter(|f| was_established(f.state));
                if client.is_some() {
                    return Some(Owner {
                        inode_pid: None,
                        uid: None,
                        via: Via::ListenerClosed,
                    });
                }
            }
            None
        }
    }
}

/// The listener on a connection's local end, if one listens now.
fn listener_of(ns: &mut Namespace, c: &Candidate) -> Option<Found> {
    let any = SocketAddr::new(
        match c.local {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        },
        0,
    );
    ns.lookup(c.local, any)
        .filter(|f| f.state == TCP_LISTEN && f.inode != 0)
}

/// Listeners recently seen accepting, by namespace and local end: the owner of a connection
/// whose listener closed before the collector got to its SYN (see [`Via::ListenerClosed`]).
#[derive(Debug, Default)]
struct RecentListeners {
    map: HashMap<(Option<u64>, SocketAddr), (Instant, Attribution)>,
}

/// How long a closed listener is remembered for the SYNs still queued behind it.
const LISTENER_TTL: Duration = Duration::from_secs(30);
const LISTENERS_MAX: usize = 4096;

impl RecentListeners {
    fn remember(&mut self, key: (Option<u64>, SocketAddr), who: Attribution, now: Instant) {
        if self.map.len() >= LISTENERS_MAX {
            self.map
                .retain(|_, (t, _)| now.duration_since(*t) < LISTENER_TTL);
            if self.map.len() >= LISTENERS_MAX {
                self.map.clear();
            }
            super::capacity::shrink_map(&mut self.map);
        }
        self.map.insert(key, (now, who));
    }

    fn get(&self, key: &(Option<u64>, SocketAddr), now: Instant) -> Option<Attribution> {
        self.map
            .get(key)
            .filter(|(t, _)| now.duration_since(*t) < LISTENER_TTL)
            .map(|(_, who)| *who)
    }
}

// ---------------------------------------------------------------------------------------------
// Fallback: polling the socket tables
// ---------------------------------------------------------------------------------------------

/// A new established connection found by [`Poller`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    pub netns: NetNs,
    pub direction: Direction,
    pub entry: SocketEntry,
}

/// Finds connections by comparing snapshots of every namespace's tcp and tcp6 tables. The first
/// poll only learns what exists.
#[derive(Debug, Default)]
pub struct Poller {
    seen: HashSet<(u64, SocketAddr, SocketAddr, u64)>,
    primed: bool,
}

impl Poller {
    pub fn poll(&mut self, host: &HostRoot) -> Vec<Polled> {
        let mut now_seen = HashSet::new();
        let mut new = Vec::new();
        for ns in listening::network_namespaces(host) {
            let mut entries = Vec::new();
            for file in ["tcp", "tcp6"] {
                let path = host.path(format!("/proc/{}/net/{file}", ns.pid));
                let keep = |e: &SocketEntry| e.state == TCP_ESTABLISHED || e.state == TCP_LISTEN;
                if let Ok(t) = listening::read_socket_table(&path, keep) {
                    entries.extend(t.entries);
                }
            }
            for e in entries.iter().filter(|e| e.state == TCP_ESTABLISHED) {
                let key = (ns.inode, e.local, e.remote, e.inode);
                now_seen.insert(key);
                if self.primed && !self.seen.contains(&key) {
                    let any = SocketAddr::new(e.local.ip(), 0);
                    let listener = find_in_table(&entries, e.local, any);
                    new.push(Polled {
                        netns: ns,
                        direction: if listener.is_some() {
                            Direction::In
                        } else {
                            Direction::Out
                        },
                        entry: *e,
                    });
                }
            }
        }
        self.seen = now_seen;
        self.primed = true;
        new
    }
}

fn poll_loop(ctx: &Context) {
    let mut poller = Poller::default();
    let mut owners = Owners::default();
    let mut names = UserNames::default();
    let ours = listening::netns_of(&ctx.host, std::process::id());
    while !ctx.cancel.is_cancelled() {
        for p in poller.poll(&ctx.host) {
            let c = Candidate {
                netns: Some(p.netns.inode),
                direction: p.direction,
                local: p.entry.local,
                remote: p.entry.remote,
            };
            let who = Attribution {
                pid: owners.pid(&ctx.host, p.entry.inode),
                uid: Some(p.entry.uid),
            };
            let container = (ours != Some(p.netns.inode))
                .then(|| {
                    ctx.host
                        .read_to_string(format!("/proc/{}/cgroup", p.netns.pid))
                        .ok()
                        .and_then(|cg| proc_info::container_id_from_cgroup(&cg))
                })
                .flatten();
            let r = record(
                &ctx.host,
                &mut names,
                &c,
                who,
                p.netns.inode,
                container.as_deref(),
            );
            if !ctx.emit_from_reader(COLLECTOR, Event::new(Payload::ConnectionCreate(vec![r]))) {
                return;
            }
        }
        for _ in 0..5 {
            if ctx.cancel.is_cancelled() {
                return;
            }
            std::thread::sleep(RECV_TIMEOUT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collectors::listening::tests::TestNetns;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use tokio::sync::{mpsc, watch};
    use tokio_util::sync::CancellationToken;

    // ----- packet builders -----

    fn tcp(sport: u16, dport: u16, seq: u32, flags: u8) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t
    }

    fn v4(src: [u8; 4], dst: [u8; 4], option_words: usize, payload: &[u8]) -> Vec<u8> {
        let hl = 20 + option_words * 4;
        let mut p = vec![0u8; hl];
        p[0] = 0x40 | (hl / 4) as u8;
        p[2..4].copy_from_slice(&((hl + payload.len()) as u16).to_be_bytes());
        p[8] = 64;
        p[9] = IPPROTO_TCP;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p.extend_from_slice(payload);
        p
    }

    fn v6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p[6] = next;
        p[7] = 64;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        p.extend_from_slice(payload);
        p
    }

    /// An IPv6 extension header of `units` × 8 bytes followed by `rest`.
    fn ext(next: u8, units: u8, rest: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; (usize::from(units) + 1) * 8];
        h[0] = next;
        h[1] = units;
        h.extend_from_slice(rest);
        h
    }

    fn fragment(next: u8, offset: u16, rest: &[u8]) -> Vec<u8> {
        let mut h = vec![next, 0, 0, 0, 0, 0, 0, 1];
        h[2..4].copy_from_slice(&(offset << 3 | 1).to_be_bytes());
        h.extend_from_slice(rest);
        h
    }

    const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn syn_packets_parse() {
        let syn = tcp(40000, 443, 0xdeadbeef, TCP_SYN);
        let want = Syn {
            src: sa("10.0.0.1:40000"),
            dst: sa("10.0.0.2:443"),
            seq: 0xdeadbeef,
        };
        assert_eq!(
            parse_syn(&v4([10, 0, 0, 1], [10, 0, 0, 2], 0, &syn)),
            Ok(want)
        );
        // IP options, link padding after the packet.
        let mut padded = v4([10, 0, 0, 1], [10, 0, 0, 2], 3, &syn);
        padded.extend_from_slice(&[0xff; 10]);
        assert_eq!(parse_syn(&padded), Ok(want));
        // SYN with other flags (ECN, FIN from a scanner) is still a request.
        assert!(parse_syn(&v4([10, 0, 0, 1], [10, 0, 0, 2], 0, &tcp(1, 2, 0, 0xc3))).is_ok());

        let want6 = Syn {
            src: SocketAddr::new(A6.into(), 40000),
            dst: SocketAddr::new(B6.into(), 443),
            seq: 0xdeadbeef,
        };
        assert_eq!(parse_syn(&v6(A6, B6, IPPROTO_TCP, &syn)), Ok(want6));
        // Hop-by-hop, then destination options (2 units), then TCP.
        let chain = ext(0x3c, 0, &ext(IPPROTO_TCP, 2, &syn));
        assert_eq!(parse_syn(&v6(A6, B6, 0, &chain)), Ok(want6));
        // First fragment parses; a later one does not.
        assert_eq!(
            parse_syn(&v6(A6, B6, 44, &fragment(IPPROTO_TCP, 0, &syn))),
            Ok(want6)
        );
        assert_eq!(
            parse_syn(&v6(A6, B6, 44, &fragment(IPPROTO_TCP, 5, &syn))),
            Err(PacketError::Fragment)
        );
        // AH: (len + 2) × 4 bytes.
        let mut ah = vec![IPPROTO_TCP, 4];
        ah.extend_from_slice(&[0; 22]);
        ah.extend_from_slice(&syn);
        assert_eq!(parse_syn(&v6(A6, B6, 51, &ah)), Ok(want6));
    }

    #[test]
    fn other_packets_are_errors() {
        let syn = tcp(40000, 443, 1, TCP_SYN);
        let ip4 = |p: &[u8]| v4([10, 0, 0, 1], [10, 0, 0, 2], 0, p);
        assert_eq!(
            parse_syn(&ip4(&tcp(1, 2, 0, TCP_SYN | TCP_ACK))),
            Err(PacketError::NotSyn)
        );
        assert_eq!(
            parse_syn(&ip4(&tcp(1, 2, 0, TCP_ACK))),
            Err(PacketError::NotSyn)
        );
        assert_eq!(
            parse_syn(&ip4(&tcp(0, 2, 0, TCP_SYN))),
            Err(PacketError::BadHeader)
        );
        let mut udp = ip4(&syn);
        udp[9] = 17;
        assert_eq!(parse_syn(&udp), Err(PacketError::NotTcp));
        let mut frag = ip4(&syn);
        frag[7] = 1;
        assert_eq!(parse_syn(&frag), Err(PacketError::Fragment));
        let mut short_ihl = ip4(&syn);
        short_ihl[0] = 0x44;
        assert_eq!(parse_syn(&short_ihl), Err(PacketError::BadHeader));
        let mut short_total = ip4(&syn);
        short_total[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(parse_syn(&short_total), Err(PacketError::Truncated));
        assert_eq!(parse_syn(&[0x10; 60]), Err(PacketError::NotIp));
        assert_eq!(parse_syn(&[]), Err(PacketError::Truncated));
        // ESP cannot be read; no-next-header has nothing.
        assert_eq!(parse_syn(&v6(A6, B6, 50, &syn)), Err(PacketError::NotTcp));
        assert_eq!(parse_syn(&v6(A6, B6, 59, &[])), Err(PacketError::NotTcp));
        // An endless chain of hop-by-hop headers stops.
        let mut chain = syn.clone();
        for _ in 0..20 {
            chain = ext(0, 0, &chain);
        }
        assert_eq!(
            parse_syn(&v6(A6, B6, 0, &chain)),
            Err(PacketError::BadHeader)
        );
        // An extension header claiming more than there is.
        assert_eq!(
            parse_syn(&v6(A6, B6, 0, &[IPPROTO_TCP, 255, 0, 0])),
            Err(PacketError::Truncated)
        );
    }

    #[test]
    fn truncated_and_random_packets_never_panic() {
        let syn = tcp(40000, 443, 1, TCP_SYN);
        for p in [
            v4([10, 0, 0, 1], [10, 0, 0, 2], 2, &syn),
            v6(A6, B6, 0, &ext(44, 1, &fragment(IPPROTO_TCP, 0, &syn))),
        ] {
            let whole = parse_syn(&p).unwrap();
            for n in 0..p.len() {
                // 14 bytes of TCP header are enough; fewer must be an error, never another SYN.
                let cut = &p[..n];
                assert!(
                    parse_syn(cut).is_err() || parse_syn(cut) == Ok(whole),
                    "cut at {n}"
                );
                let _ = candidates(
                    &Syn {
                        src: sa("1.1.1.1:1"),
                        dst: sa("1.1.1.1:1"),
                        seq: 0,
                    },
                    0,
                    |_| true,
                    |_| None,
                );
            }
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let mut p: Vec<u8> = (0..rng.usize(0..160)).map(|_| rng.u8(..)).collect();
            if let Some(b) = p.first_mut() {
                *b = (*b & 0x0f) | if rng.bool() { 0x40 } else { 0x60 };
            }
            let _ = parse_syn(&p);
            let _ = parse_diag_messages(&p);
            let _ = parse_diag_socket(&p);
        }
    }

    // ----- the filter, run by a small classic-BPF interpreter -----

    fn run_filter(prog: &[libc::sock_filter], pkt: &[u8], ethertype: u16) -> u32 {
        use libc::*;
        let load = |off: usize, size: usize| -> Option<u32> {
            let b = pkt.get(off..off.checked_add(size)?)?;
            Some(b.iter().fold(0u32, |acc, &v| acc << 8 | u32::from(v)))
        };
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        for _ in 0..prog.len() {
            let i = prog[pc];
            pc += 1;
            let (k, code) = (i.k, u32::from(i.code));
            let loaded = |v: Option<u32>| v.unwrap_or(u32::MAX);
            match code {
                c if c == BPF_LD | BPF_H | BPF_ABS => {
                    if k == (SKF_AD_OFF + SKF_AD_PROTOCOL) as u32 {
                        a = u32::from(ethertype);
                    } else {
                        match load(k as usize, 2) {
                            Some(v) => a = v,
                            None => return 0,
                        }
                    }
                }
                c if c == BPF_LD | BPF_B | BPF_ABS => match load(k as usize, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LD | BPF_B | BPF_IND => match load((x + k) as usize, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LDX | BPF_B | BPF_MSH => {
                    let v = loaded(load(k as usize, 1));
                    if v == u32::MAX {
                        return 0;
                    }
                    x = (v & 0xf) * 4;
                }
                c if c == BPF_JMP | BPF_JA => pc += k as usize,
                c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                    pc += usize::from(if a == k { i.jt } else { i.jf })
                }
                c if c == BPF_JMP | BPF_JSET | BPF_K => {
                    pc += usize::from(if a & k != 0 { i.jt } else { i.jf })
                }
                c if c == BPF_ALU | BPF_AND | BPF_K => a &= k,
                c if c == BPF_RET | BPF_K => return k,
                other => panic!("opcode {other:#x} at {}", pc - 1),
            }
        }
        panic!("the program ran off its end");
    }

    #[test]
    fn filter_accepts_only_connection_requests_and_their_answers() {
        let prog = syn_filter();
        assert!(prog.len() <= libc::BPF_MAXINSNS as usize);
        let syn = tcp(40000, 443, 1, TCP_SYN);
        let synack = tcp(443, 40000, 1, TCP_SYN | TCP_ACK);
        let ip4 = |opts, p: &[u8]| v4([10, 0, 0, 1], [10, 0, 0, 2], opts, p);
        let cases: Vec<(Vec<u8>, u16, bool)> = vec![
            (ip4(0, &syn), 0x0800, true),
            (ip4(4, &syn), 0x0800, true),
            (ip4(0, &synack), 0x0800, true),
            (ip4(0, &tcp(443, 40000, 1, TCP_ACK | 0x01)), 0x0800, false),
            (ip4(0, &tcp(1, 2, 0, TCP_ACK)), 0x0800, false),
            (ip4(0, &syn), 0x0806, false),
            (ip4(0, &syn)[..30].to_vec(), 0x0800, false),
            (
                {
                    let mut p = ip4(0, &syn);
                    p[9] = 17;
                    p
                },
                0x0800,
                false,
            ),
            (
                {
                    let mut p = ip4(0, &syn);
                    p[7] = 9;
                    p
                },
                0x0800,
                false,
            ),
            (v6(A6, B6, IPPROTO_TCP, &syn), 0x86dd, true),
            (v6(A6, B6, IPPROTO_TCP, &synack), 0x86dd, true),
            (v6(A6, B6, 17, &syn), 0x86dd, false),
            (v6(A6, B6, 58, &syn), 0x86dd, false),
            // Extension headers go to user space.
            (v6(A6, B6, 0, &ext(IPPROTO_TCP, 0, &syn)), 0x86dd, true),
            (
                v6(A6, B6, 44, &fragment(IPPROTO_TCP, 0, &syn)),
                0x86dd,
                true,
            ),
        ];
        for (i, (pkt, ethertype, accept)) in cases.iter().enumerate() {
            let got = run_filter(&prog, pkt, *ethertype);
            assert_eq!(got == SNAP_LEN, *accept, "case {i}");
            assert!(got == 0 || got == SNAP_LEN, "case {i}");
        }
    }

    // ----- sock_diag messages -----

    fn diag_reply(
        seq: u32,
        family: u8,
        state: u8,
        local: SocketAddr,
        remote: SocketAddr,
        uid: u32,
        inode: u32,
    ) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HDRLEN + DIAG_MSG_LEN];
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        let b = &mut m[NLMSG_HDRLEN..];
        b[0] = family;
        b[1] = state;
        b[4..6].copy_from_slice(&local.port().to_be_bytes());
        b[6..8].copy_from_slice(&remote.port().to_be_bytes());
        let put = |slot: &mut [u8], ip: IpAddr| match ip {
            IpAddr::V4(a) => slot[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => slot.copy_from_slice(&a.octets()),
        };
        put(&mut b[8..24], local.ip());
        put(&mut b[24..40], remote.ip());
        b[64..68].copy_from_slice(&uid.to_ne_bytes());
        b[68..72].copy_from_slice(&inode.to_ne_bytes());
        m
    }

    #[test]
    fn diag_request_and_reply_layout() {
        let req = encode_diag_request(7, sa("10.0.0.1:40000"), sa("10.0.0.2:443"), None);
        assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 72);
        assert_eq!(
            u16::from_ne_bytes(req[4..6].try_into().unwrap()),
            SOCK_DIAG_BY_FAMILY
        );
        assert_eq!(
            u16::from_ne_bytes(req[6..8].try_into().unwrap()),
            NLM_F_REQUEST
        );
        assert_eq!(u32::from_ne_bytes(req[8..12].try_into().unwrap()), 7);
        let r = &req[NLMSG_HDRLEN..];
        assert_eq!((r[0], r[1]), (libc::AF_INET as u8, IPPROTO_TCP));
        assert_eq!(&r[8..12], &[0x9c, 0x40, 0x01, 0xbb]);
        assert_eq!(&r[12..16], &[10, 0, 0, 1]);
        assert_eq!(&r[28..32], &[10, 0, 0, 2]);
        assert_eq!(&r[48..56], &[0xff; 8]);
        let req6 = encode_diag_request(
            8,
            SocketAddr::new(A6.into(), 1),
            SocketAddr::new(B6.into(), 2),
            None,
        );
        assert_eq!(req6[NLMSG_HDRLEN], libc::AF_INET6 as u8);
        assert_eq!(&req6[NLMSG_HDRLEN + 12..NLMSG_HDRLEN + 28], &A6.octets());

        let mut buf = diag_reply(
            7,
            libc::AF_INET as u8,
            1,
            sa("10.0.0.1:40000"),
            sa("10.0.0.2:443"),
            1000,
            4242,
        );
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[8..12].copy_from_slice(&8u32.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        buf.extend_from_slice(&err);
        let msgs = parse_diag_messages(&buf).unwrap();
        assert_eq!(
            msgs,
            vec![
                (
                    7,
                    DiagMessage::Socket(DiagSocket {
                        state: 1,
                        local: sa("10.0.0.1:40000"),
                        remote: sa("10.0.0.2:443"),
                        uid: 1000,
                        inode: 4242
                    })
                ),
                (8, DiagMessage::Error(-libc::ENOENT)),
            ]
        );
        // Bad lengths and families are errors, not panics.
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(parse_diag_messages(&bad), Err(DiagError::BadLength(8)));
        bad[0..4].copy_from_slice(&9999u32.to_ne_bytes());
        assert_eq!(parse_diag_messages(&bad), Err(DiagError::BadLength(9999)));
        let mut fam = buf.clone();
        fam[NLMSG_HDRLEN] = 99;
        assert_eq!(parse_diag_messages(&fam), Err(DiagError::BadFamily(99)));
        for n in 0..buf.len() {
            let _ = parse_diag_messages(&buf[..n]);
        }
    }

    // ----- interpretation -----

    #[test]
    fn candidates_follow_the_table() {
        let ours = |ip: IpAddr| ip.is_loopback() || ip == IpAddr::from([192, 0, 2, 2]);
        let theirs = |ip: IpAddr| (ip == IpAddr::from([172, 17, 0, 2])).then_some(9u64);
        let s = |src: &str, dst: &str| Syn {
            src: sa(src),
            dst: sa(dst),
            seq: 1,
        };
        let dirs = |syn: Syn, t: u8| -> Vec<(Option<u64>, Direction, u16)> {
            candidates(&syn, t, ours, theirs)
                .into_iter()
                .map(|c| (c.netns, c.direction, c.local.port()))
                .collect()
        };
        use Direction::{In, Out};
        // Loopback: one Out from the sent copy, one In from the received copy.
        let lo = s("127.0.0.1:5000", "127.0.0.1:80");
        assert_eq!(dirs(lo, PACKET_OUTGOING), vec![(None, Out, 5000)]);
        assert_eq!(dirs(lo, PACKET_HOST), vec![(None, In, 80)]);
        assert_eq!(dirs(lo, 1), vec![]);
        // Host to the internet, and back.
        assert_eq!(
            dirs(s("192.0.2.2:5000", "8.8.8.8:53"), PACKET_OUTGOING),
            vec![(None, Out, 5000)]
        );
        assert_eq!(
            dirs(s("8.8.8.8:5000", "192.0.2.2:22"), PACKET_HOST),
            vec![(None, In, 22)]
        );
        // Spoofed: a received packet claiming our source is no Out of ours.
        assert_eq!(dirs(s("192.0.2.2:5000", "8.8.8.8:53"), PACKET_HOST), vec![]);
        // Container out: veth (OTHERHOST) and bridge (HOST) copies are the container's Out.
        let c = s("172.17.0.2:5000", "8.8.8.8:53");
        assert_eq!(dirs(c, PACKET_OTHERHOST), vec![(Some(9), Out, 5000)]);
        assert_eq!(dirs(c, PACKET_HOST), vec![(Some(9), Out, 5000)]);
        // Forwarded to a container (after DNAT): its In.
        assert_eq!(
            dirs(s("8.8.8.8:5000", "172.17.0.2:80"), PACKET_OUTGOING),
            vec![(Some(9), In, 80)]
        );
        // Host to container: our Out and its In.
        assert_eq!(
            dirs(s("192.0.2.2:5000", "172.17.0.2:80"), PACKET_OUTGOING),
            vec![(None, Out, 5000), (Some(9), In, 80)]
        );
        // Someone else's traffic.
        assert_eq!(
            dirs(s("8.8.4.4:5000", "8.8.8.8:53"), PACKET_OTHERHOST),
            vec![]
        );
    }

    #[test]
    fn copies_and_retransmissions_are_reported_once() {
        let mut seen = Seen::default();
        let t0 = Instant::now();
        let out = Candidate {
            netns: None,
            direction: Direction::Out,
            local: sa("192.0.2.2:5000"),
            remote: sa("8.8.8.8:53"),
        };
        // The same SYN, masqueraded: another local end, same remote and sequence number.
        let container = Candidate {
            netns: Some(9),
            local: sa("172.17.0.2:5000"),
            ..out
        };
        assert!(seen.first(SeenKey::of(&container, 1), t0));
        assert!(!seen.first(SeenKey::of(&out, 1), t0));
        assert!(seen.first(SeenKey::of(&out, 2), t0), "a new connection");
        let inbound = Candidate {
            direction: Direction::In,
            local: sa("127.0.0.1:80"),
            remote: sa("127.0.0.1:5000"),
            netns: None,
        };
        assert!(seen.first(SeenKey::of(&inbound, 1), t0));
        assert!(!seen.first(SeenKey::of(&inbound, 1), t0 + Duration::from_secs(60)));
        assert!(seen.first(
            SeenKey::of(&inbound, 1),
            t0 + SEEN_TTL + Duration::from_secs(61)
        ));
        // Bounded.
        for i in 0..(SEEN_MAX as u32 * 2) {
            seen.first(SeenKey::of(&out, i + 10), t0);
        }
        assert!(seen.keys.len() <= SEEN_MAX && seen.order.len() <= SEEN_MAX);
        // After the storm, a quiet host: the storm's entries expire and their room goes back.
        let later = t0 + SEEN_TTL + Duration::from_secs(1);
        for i in 0..10u32 {
            assert!(seen.first(SeenKey::of(&out, u32::MAX - i), later));
        }
        assert_eq!(seen.order.len(), 10);
        assert!(
            seen.keys.capacity() <= 4 * crate::collectors::capacity::SLACK
                && seen.order.capacity() <= 4 * crate::collectors::capacity::SLACK,
            "{} {}",
            seen.keys.capacity(),
            seen.order.capacity()
        );
    }

    #[test]
    fn addresses_of_a_namespace() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n        +-- 127.0.0.0/31 1 0 0\n           |-- 127.0.0.0\n              /8 host LOCAL\n           |-- 127.0.0.1\n              /32 host LOCAL\n        |-- 127.255.255.255\n           /32 link BROADCAST\n     +-- 192.0.2.0/24 2 0 2\n        +-- 192.0.2.0/30 2 0 2\n           |-- 192.0.2.0\n              /24 link UNICAST\n           |-- 192.0.2.2\n              /32 host LOCAL\nLocal:\n           |-- 192.0.2.2\n              /32 host LOCAL\n           |-- garbage\n              /32 host LOCAL\n";
        let v4 = parse_fib_trie_local(trie);
        assert_eq!(
            v4,
            [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(192, 0, 2, 2)].into()
        );
        let v6 = parse_if_inet6(
            "00000000000000000000000000000001 01 80 10 80       lo\nfd000000000000000000000000000002 04 40 00 82     eth0\nzz\n\n",
        );
        assert_eq!(v6, [Ipv6Addr::LOCALHOST, "fd00::2".parse().unwrap()].into());
        // The real files of this host parse to something containing loopback.
        let mine = local_addresses(Path::new("/proc/self/net"));
        assert!(mine.contains(&IpAddr::from([127, 0, 0, 1])));
    }

    #[test]
    fn table_lookup_like_the_kernel() {
        let e = |l: &str, r: &str, state, inode| SocketEntry {
            local: sa(l),
            remote: sa(r),
            state,
            uid: 0,
            inode,
        };
        let table = [
            e("0.0.0.0:80", "0.0.0.0:0", TCP_LISTEN, 1),
            e("127.0.0.1:80", "0.0.0.0:0", TCP_LISTEN, 2),
            e("[::]:22", "[::]:0", TCP_LISTEN, 3),
            e("127.0.0.1:80", "127.0.0.1:5000", TCP_ESTABLISHED, 4),
            e(
                "[::ffff:10.0.0.1]:22",
                "[::ffff:10.0.0.9]:6000",
                TCP_ESTABLISHED,
                5,
            ),
        ];
        let find = |l: &str, r: &str| find_in_table(&table, sa(l), sa(r)).map(|e| e.inode);
        assert_eq!(find("127.0.0.1:80", "127.0.0.1:5000"), Some(4));
        assert_eq!(find("127.0.0.1:80", "127.0.0.1:5001"), None);
        assert_eq!(
            find("127.0.0.1:80", "0.0.0.0:0"),
            Some(2),
            "exact address first"
        );
        assert_eq!(
            find("10.0.0.1:80", "0.0.0.0:0"),
            Some(1),
            "then the wildcard"
        );
        assert_eq!(
            find("10.0.0.1:22", "0.0.0.0:0"),
            Some(3),
            "dual-stack listener"
        );
        assert_eq!(find("10.0.0.1:22", "10.0.0.9:6000"), Some(5), "v4-mapped");
        assert_eq!(find("10.0.0.1:23", "0.0.0.0:0"), None);
    }

    // ----- against the kernel -----

    #[test]
    fn sock_diag_finds_both_ends_and_the_listener() {
        let mut diag = Diag::open().expect("sock_diag");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server_addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(server_addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        let client_addr = client.local_addr().unwrap();
        let inode_of = |fd: i32| {
            let t = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            listening::parse_socket_link(t.to_str().unwrap()).unwrap()
        };
        use std::os::fd::AsRawFd;
        let c = diag.lookup(client_addr, server_addr).unwrap().unwrap();
        assert_eq!(
            (c.state, c.inode),
            (TCP_ESTABLISHED, inode_of(client.as_raw_fd()))
        );
        assert_eq!(c.uid, unsafe { libc::getuid() });
        let s = diag.lookup(server_addr, client_addr).unwrap().unwrap();
        assert_eq!(s.inode, inode_of(server.as_raw_fd()));
        let l = diag.lookup(server_addr, sa("0.0.0.0:0")).unwrap().unwrap();
        assert_eq!(
            (l.state, l.inode),
            (TCP_LISTEN, inode_of(listener.as_raw_fd()))
        );
        assert_eq!(
            diag.lookup(sa("127.0.0.1:1"), sa("127.0.0.1:2")).unwrap(),
            None
        );
        let mut owners = Owners::default();
        assert_eq!(
            owners.pid(&HostRoot::default(), l.inode),
            Some(std::process::id())
        );
        assert_eq!(
            owners.pid(&HostRoot::default(), c.inode),
            Some(std::process::id())
        );
        assert_eq!(owners.pid(&HostRoot::default(), 0), None);
    }

    /// The collector running on its thread, with the events it has sent so far.
    struct Running {
        ctx: Context,
        rx: mpsc::Receiver<Event>,
        handle: Option<std::thread::JoinHandle<()>>,
        got: Vec<ConnectionCreate>,
    }

    impl Running {
        fn start() -> Running {
            Running::start_with(spawn, CollectorHealth::Up)
        }

        /// Starts the collector through `start` and waits for its first status, which must be
        /// `want`.
        fn start_with(
            start: impl FnOnce(Context) -> std::thread::JoinHandle<()>,
            want: CollectorHealth,
        ) -> Running {
            let (tx, rx) = mpsc::channel(200_000);
            let (_config_tx, config) = watch::channel(Arc::new(Config::default()));
            let ctx = Context {
                host: HostRoot::default(),
                events: tx,
                metrics: Arc::new(Metrics::for_tests()),
                config,
                cancel: CancellationToken::new(),
                state_dir: std::env::temp_dir(),
            };
            let handle = Some(start(ctx.clone()));
            let mut r = Running {
                ctx,
                rx,
                handle,
                got: Vec::new(),
            };
            // The socket is bound once the status is out.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match r.rx.try_recv() {
                    Ok(e) => match e.payload {
                        Payload::CollectorStatus(s) => {
                            assert_eq!(s[0].status, want, "{}", s[0].message);
                            return r;
                        }
                        Payload::ConnectionCreate(c) => r.got.extend(c),
                        _ => {}
                    },
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => panic!("the collector did not start"),
                }
            }
        }

        /// Collects events until `done` says so or `timeout` passes.
        fn wait(&mut self, timeout: Duration, done: impl Fn(&[ConnectionCreate]) -> bool) {
            let deadline = Instant::now() + timeout;
            while !done(&self.got) && Instant::now() < deadline {
                match self.rx.try_recv() {
                    Ok(e) => {
                        if let Payload::ConnectionCreate(c) = e.payload {
                            self.got.extend(c);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }

        fn find(
            &self,
            direction: Direction,
            local: SocketAddr,
            remote: SocketAddr,
        ) -> Vec<&ConnectionCreate> {
            self.got
                .iter()
                .filter(|r| {
                    r.direction == direction
                        && r.local_address == Some(local.ip())
                        && r.local_port == Some(local.port())
                        && r.remote_address == remote.ip()
                        && r.remote_port == remote.port()
                })
                .collect()
        }

        fn stop(&mut self) -> Duration {
            let t = Instant::now();
            self.ctx.cancel.cancel();
            if let Some(h) = self.handle.take() {
                h.join().unwrap();
            }
            t.elapsed()
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop();
        }
    }

    /// A listener that accepts and drops everything, so its backlog never fills.
    fn acceptor(addr: &str) -> SocketAddr {
        let l = TcpListener::bind(addr).unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                drop(s);
            }
        });
        a
    }

    #[test]
    fn reports_200_short_connections_with_direction_and_owner() {
        let mut run = Running::start();
        let servers = [acceptor("127.0.0.1:0"), acceptor("[::1]:0")];
        let mut clients = Vec::new();
        for i in 0..200 {
            let server = servers[i % 2];
            let c = TcpStream::connect(server).unwrap();
            clients.push((c.local_addr().unwrap(), server));
            drop(c); // closed at once
        }
        let want = clients.clone();
        run.wait(Duration::from_secs(15), |got| {
            let n = |d: Direction, l: SocketAddr, r: SocketAddr| {
                got.iter().any(|g| {
                    g.direction == d
                        && g.local_port == Some(l.port())
                        && g.remote_port == r.port()
                        && g.remote_address == r.ip()
                })
            };
            want.iter()
                .all(|&(c, s)| n(Direction::Out, c, s) && n(Direction::In, s, c))
        });
        let attributed = clients
            .iter()
            .filter(|&&(client, server)| check_pair(&run, client, server))
            .count();
        eprintln!(
            "200 connections closed at once: 200/200 Out and In reported; Out attributed {attributed}, unattributed {}",
            200 - attributed
        );
        let stopped = run.stop();
        assert!(stopped < Duration::from_secs(2), "stopped in {stopped:?}");
    }

    /// The acceptance check's pattern: a listener that accepts exactly `N` connections and is
    /// then closed, while the collector may still be working through the queued SYNs. Every
    /// connection must still give one `Out` and one `In`, the `In` attributed to this process.
    ///
    /// Under CPU load (two or three busy loops beside it) the server end resets some of these
    /// connections right after the burst, and an RST ends the client's TIME_WAIT as well
    /// (Linux's default `tcp_rfc1337 = 0`): when the collector gets to those SYNs, no socket of
    /// the connection is left. A raw capture on `lo` showed RSTs for exactly the missing ones.
    /// Such an `In` is reported once the listener's SYN-ACK shows it was taken
    /// ([`Capture::proved`]); before that, 3–22 of 200 were missing in most loaded runs, after
    /// it 8 of 8 loaded runs were complete.
    #[test]
    fn loopback_connections_to_a_listener_that_closes_are_all_reported_in_and_out() {
        const N: usize = 200;
        let mut run = Running::start();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let acceptor = std::thread::spawn(move || {
            for _ in 0..N {
                drop(listener.accept());
            }
            // The listener closes here, right after the last accept.
        });
        let clients: Vec<SocketAddr> = (0..N)
            .map(|_| {
                let c = TcpStream::connect(server).unwrap();
                c.local_addr().unwrap()
            })
            .collect();
        acceptor.join().unwrap();
        run.wait(Duration::from_secs(15), |got| {
            got.iter()
                .filter(|g| g.remote_port == server.port())
                .count()
                >= N
                && got
                    .iter()
                    .filter(|g| g.local_port == Some(server.port()))
                    .count()
                    >= N
        });
        // Anything late or duplicated shows up too.
        run.wait(Duration::from_millis(300), |_| false);
        let outs = clients
            .iter()
            .filter(|c| run.find(Direction::Out, **c, server).len() == 1)
            .count();
        let ins = clients
            .iter()
            .filter(|c| run.find(Direction::In, server, **c).len() == 1)
            .count();
        let me = std::process::id();
        let mut in_attributed = 0;
        for c in &clients {
            for r in run.find(Direction::In, server, *c) {
                if r.process_id == me {
                    in_attributed += 1;
                } else {
                    // Only when the collector got to the SYN after the listener had closed,
                    // and then never somebody else.
                    assert_eq!(r.process_id, 0, "{r:?}");
                    assert_eq!(r.extra_details["ListenerClosed"], "true", "{r:?}");
                    assert_eq!(r.extra_details["Unattributed"], "true", "{r:?}");
                }
            }
        }
        let refused = run
            .ctx
            .metrics
            .value(
                "edgeguard_errors_total",
                &[("component", COLLECTOR), ("error_type", "inbound_refused")],
            )
            .unwrap_or(0.0);
        let missing: Vec<_> = clients
            .iter()
            .filter(|c| run.find(Direction::In, server, **c).len() != 1)
            .map(|c| (c, run.find(Direction::In, server, *c)))
            .collect();
        eprintln!(
            "{N} connections: Out {outs}, In {ins} (attributed {in_attributed}), refused {refused}"
        );
        assert_eq!(
            (outs, ins),
            (N, N),
            "Out and In of every connection; refused {refused}; In not once: {missing:?}"
        );
    }

    #[test]
    fn a_syn_ack_parses_as_the_listeners_answer() {
        let mut synack = tcp(443, 40000, 7, TCP_SYN | TCP_ACK);
        synack[8..12].copy_from_slice(&1001u32.to_be_bytes());
        let p = v4([10, 0, 0, 1], [10, 0, 0, 2], 0, &synack);
        assert_eq!(
            parse_segment(&p),
            Ok(Segment::SynAck {
                server: "10.0.0.1:443".parse().unwrap(),
                client: "10.0.0.2:40000".parse().unwrap(),
                ack: 1001,
            })
        );
        // parse_syn keeps meaning "a connection request".
        assert_eq!(parse_syn(&p), Err(PacketError::NotSyn));
    }

    /// An `In` whose sockets were all gone is reported once its listener's SYN-ACK shows up (the
    /// SYN-ACK of that very request: same ends, ack = its seq + 1), and counted as refused when
    /// none comes.
    #[test]
    fn an_in_with_no_socket_left_waits_for_its_syn_ack() {
        let mut capture = Capture::new(&HostRoot::new("/"));
        let server: SocketAddr = "127.0.0.1:4711".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:50001".parse().unwrap();
        let candidate = Candidate {
            netns: None,
            direction: Direction::In,
            local: server,
            remote: client,
        };
        let now = Instant::now();
        capture.await_proof(candidate, 1000, now);
        // Another request's answer, or another client's: nothing.
        assert!(capture.proved(server, client, 5001).is_empty());
        let other: SocketAddr = "127.0.0.1:50002".parse().unwrap();
        assert!(capture.proved(server, other, 1001).is_empty());
        let got = capture.proved(server, client, 1001);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].direction, Direction::In);
        assert_eq!(got[0].local_port, Some(4711));
        assert_eq!(got[0].extra_details["ListenerClosed"], "true");
        // Loopback shows the SYN-ACK twice: the second copy finds nothing waiting.
        assert!(capture.proved(server, client, 1001).is_empty());
        assert_eq!(capture.refused, 0);

        // No answer within PROOF_WAIT: a refused attempt.
        capture.await_proof(candidate, 2000, now);
        capture.expire_unproven(now + PROOF_WAIT / 2);
        assert_eq!(capture.refused, 0);
        capture.expire_unproven(now + PROOF_WAIT);
        assert_eq!(capture.refused, 1);
        assert!(capture.proved(server, client, 2001).is_empty());
    }

    /// A SYN to a port nobody listens on is no connection: not reported, but counted.
    #[test]
    fn a_refused_connection_is_counted_not_reported() {
        let mut run = Running::start();
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let refused = |run: &Running| {
            run.ctx
                .metrics
                .value(
                    "edgeguard_errors_total",
                    &[("component", COLLECTOR), ("error_type", "inbound_refused")],
                )
                .unwrap_or(0.0)
        };
        let before = refused(&run);
        assert!(TcpStream::connect(closed).is_err(), "nothing listens there");
        // The Out side is a real attempt and is reported; wait for it, then for the count.
        run.wait(Duration::from_secs(5), |got| {
            got.iter().any(|g| g.remote_port == closed.port())
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while refused(&run) <= before && Instant::now() < deadline {
            run.wait(Duration::from_millis(50), |_| false);
        }
        assert!(refused(&run) > before, "the refused SYN is counted");
        assert!(
            run.got.iter().all(|g| g.local_port != Some(closed.port())),
            "no In for a refused SYN: {:?}",
            run.got
        );
    }

    /// A child forked after a connection was made holds the socket too (from fork until exec):
    /// the connection is still the parent's, although the newer child is scanned first.
    #[test]
    fn a_socket_inherited_by_a_forked_child_stays_the_parents() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", c.as_raw_fd()))
            .unwrap()
            .ino();
        // The child only waits to be killed (async-signal-safe calls only after fork).
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork");
        if child == 0 {
            loop {
                unsafe { libc::pause() };
            }
        }
        let child = child as u32;
        let mut found_in_child = false;
        listening::sockets_of(&HostRoot::default(), child, |i| {
            found_in_child |= i == inode
        });
        let owner = Owners::default().pid(&HostRoot::default(), inode);
        unsafe {
            libc::kill(child as i32, libc::SIGKILL);
            libc::waitpid(child as i32, std::ptr::null_mut(), 0);
        }
        assert!(found_in_child, "the child holds the socket too");
        assert_eq!(owner, Some(std::process::id()));
    }

    /// A new listener of a process that was already running is found at once, even right after
    /// a full scan (which plain lookups allow only once a second).
    #[test]
    fn a_new_listener_of_a_running_process_is_attributed_at_once() {
        let host = HostRoot::default();
        let mut owners = Owners::default();
        owners.prime(&host);
        // An unknown inode: a full scan now, so the next one is a second away.
        assert_eq!(owners.pid(&host, u64::MAX - 1), None);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", listener.as_raw_fd()))
            .unwrap()
            .ino();
        assert_eq!(owners.pid(&host, inode), None, "plain lookups wait");
        assert_eq!(owners.listener_pid(&host, inode), Some(std::process::id()));
        // A listener that no scan finds is not scanned for again and again.
        assert_eq!(owners.listener_pid(&host, u64::MAX - 2), None);
        assert!(owners.missed_listeners.contains(&(u64::MAX - 2)));
    }

    /// The collector looks at a SYN only after the connection and its listener are gone (as when
    /// it lags behind a burst): the `In` is still reported, from the connection's leftover
    /// sockets, attributed to the listener it saw before.
    #[test]
    fn an_in_whose_listener_closed_before_the_lookup_is_still_reported() {
        let host = HostRoot::default();
        let mut capture = Capture::new(&host);
        let me = std::process::id();
        for remembered in [false, true] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let server = listener.local_addr().unwrap();
            let mut clients = Vec::new();
            for i in 0..3u32 {
                let c = TcpStream::connect(server).unwrap();
                clients.push((c.local_addr().unwrap(), 1000 + i));
                if remembered && i == 0 {
                    // The first SYN is looked at while the listener still listens.
                    let syn = Syn {
                        src: c.local_addr().unwrap(),
                        dst: server,
                        seq: 1000,
                    };
                    let r = capture.records(&syn, PACKET_HOST);
                    assert_eq!(r.len(), 1, "{r:?}");
                    assert_eq!(r[0].process_id, me);
                }
                let (accepted, _) = listener.accept().unwrap();
                drop(c);
                drop(accepted);
            }
            drop(listener);
            std::thread::sleep(Duration::from_millis(50));
            for &(client, seq) in clients.iter().skip(usize::from(remembered)) {
                let syn = Syn {
                    src: client,
                    dst: server,
                    seq,
                };
                let r = capture.records(&syn, PACKET_HOST);
                assert_eq!(r.len(), 1, "{client} → {server}: {r:?}");
                assert_eq!(r[0].direction, Direction::In);
                assert_eq!(r[0].extra_details["ListenerClosed"], "true", "{:?}", r[0]);
                if remembered {
                    assert_eq!(r[0].process_id, me, "{:?}", r[0]);
                } else {
                    assert_eq!(r[0].process_id, 0);
                    assert_eq!(r[0].extra_details["Unattributed"], "true");
                }
            }
        }
        // A refused connection (nothing ever listened) is still not one.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(TcpStream::connect(closed).is_err());
        let syn = Syn {
            src: SocketAddr::new(closed.ip(), 40999),
            dst: closed,
            seq: 7,
        };
        assert!(capture.records(&syn, PACKET_HOST).is_empty());
    }

    /// Checks one client's pair of events: both reported once with the right ends; the accepting
    /// side attributed to this process; the connecting side to this process or, if its socket
    /// was gone before the lookup, explicitly unattributed. Returns whether `Out` was attributed.
    fn check_pair(run: &Running, client: SocketAddr, server: SocketAddr) -> bool {
        let me = std::process::id();
        let o = run.find(Direction::Out, client, server);
        let i = run.find(Direction::In, server, client);
        assert_eq!(o.len(), 1, "Out {client} → {server}: {o:?}");
        assert_eq!(i.len(), 1, "In {server} ← {client}: {i:?}");
        let i = i[0];
        assert_eq!(i.process_id, me, "{i:?}");
        assert!(i.executable.len() > 1 && i.command_line.is_some());
        assert_eq!(
            i.user_id,
            Some(unsafe { libc::getuid() }.to_string()),
            "{i:?}"
        );
        assert_eq!(i.protocol, "TCP");
        assert!(!i.extra_details.contains_key("Unattributed"));
        let o = o[0];
        if o.process_id == me {
            assert!(o.command_line.as_deref().is_some_and(|c| !c.is_empty()));
            assert!(!o.extra_details.contains_key("Unattributed"));
            true
        } else {
            assert_eq!(o.process_id, 0, "never another process: {o:?}");
            assert_eq!(o.executable, "");
            assert_eq!(o.extra_details["Unattributed"], "true");
            false
        }
    }

    #[test]
    fn a_connection_of_a_few_milliseconds_is_reported() {
        let mut run = Running::start();
        for server in [acceptor("127.0.0.1:0"), acceptor("[::1]:0")] {
            let opened = Instant::now();
            let c = TcpStream::connect(server).unwrap();
            let client = c.local_addr().unwrap();
            std::thread::sleep(Duration::from_millis(2));
            drop(c);
            let lived = opened.elapsed();
            run.wait(Duration::from_secs(5), |got| {
                got.iter()
                    .filter(|g| {
                        g.local_port == Some(client.port()) || g.remote_port == client.port()
                    })
                    .count()
                    >= 2
            });
            let attributed = check_pair(&run, client, server);
            eprintln!("{client} → {server} lived {lived:?}; Out attributed: {attributed}");
        }
    }

    #[test]
    fn a_syn_without_a_socket_is_reported_unattributed() {
        let mut run = Running::start();
        // A closed port, and a SYN sent by hand (as a port scanner would).
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let raw = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP).unwrap();
        let sport = 40000 + (std::process::id() % 20000) as u16;
        let seg = tcp(sport, closed.port(), 12345, TCP_SYN);
        let mut dst: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        dst.sin_family = libc::AF_INET as u16;
        dst.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let n = unsafe {
            libc::sendto(
                raw.as_raw_fd(),
                seg.as_ptr().cast(),
                seg.len(),
                0,
                (&dst as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        assert_eq!(n, seg.len() as isize);
        let client = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), sport);
        run.wait(Duration::from_secs(5), |got| {
            got.iter().any(|g| g.local_port == Some(sport))
        });
        std::thread::sleep(Duration::from_millis(200));
        run.wait(Duration::from_millis(100), |_| false);
        let o = run.find(Direction::Out, client, closed);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].process_id, o[0].executable.as_str()), (0, ""));
        assert_eq!(o[0].extra_details["Unattributed"], "true");
        // Nothing listens there: no In.
        assert!(run.find(Direction::In, closed, client).is_empty());
    }

    #[test]
    fn connections_of_another_namespace_are_attributed_there() {
        let Some(ns) = TestNetns::create(2) else {
            return;
        };
        let mut run = Running::start();
        let me = std::process::id();
        let inode = ns.inode.to_string();
        // Host → namespace.
        let ns_ip = ns.ns_ip;
        let inside = ns.run_in(|| TcpListener::bind((ns_ip, 0)).unwrap());
        let inside_addr = inside.local_addr().unwrap();
        let c = TcpStream::connect(inside_addr).unwrap();
        let client = c.local_addr().unwrap();
        assert_eq!(client.ip(), IpAddr::from(ns.host_ip));
        // Namespace → host.
        let outside = TcpListener::bind((ns.host_ip, 0)).unwrap();
        let outside_addr = outside.local_addr().unwrap();
        let c2 = ns.run_in(|| TcpStream::connect(outside_addr).unwrap());
        let client2 = c2.local_addr().unwrap();
        run.wait(Duration::from_secs(10), |got| {
            got.iter()
                .filter(|g| {
                    [client.port(), client2.port()].contains(&g.local_port.unwrap_or(0))
                        || [client.port(), client2.port()].contains(&g.remote_port)
                })
                .count()
                >= 4
        });
        let out = run.find(Direction::Out, client, inside_addr);
        let inn = run.find(Direction::In, inside_addr, client);
        assert_eq!((out.len(), inn.len()), (1, 1), "{:?}", run.got);
        assert_eq!(out[0].process_id, me);
        let ours = listening::netns_of(&HostRoot::default(), me)
            .unwrap()
            .to_string();
        assert_eq!(out[0].extra_details.get("NetNs"), Some(&ours));
        assert_eq!(inn[0].process_id, me, "{:?}", inn[0]);
        assert_eq!(inn[0].extra_details.get("NetNs"), Some(&inode));
        let out2 = run.find(Direction::Out, client2, outside_addr);
        let in2 = run.find(Direction::In, outside_addr, client2);
        assert_eq!((out2.len(), in2.len()), (1, 1), "{:?}", run.got);
        assert_eq!(out2[0].process_id, me, "{:?}", out2[0]);
        assert_eq!(out2[0].extra_details.get("NetNs"), Some(&inode));
        assert_eq!(in2[0].process_id, me);
        drop((c, c2, inside, outside));
    }

    /// Without CAP_NET_RAW (dropped on the thread that starts the collector, which inherits
    /// it), the collector says so and polls.
    #[test]
    fn without_cap_net_raw_it_degrades_to_polling() {
        const CAP_NET_RAW: u32 = 13;
        let spawn_unprivileged = |ctx: Context| {
            std::thread::spawn(move || {
                #[repr(C)]
                struct Header {
                    version: u32,
                    pid: i32,
                }
                let mut header = Header {
                    version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
                    pid: 0,
                };
                // effective, permitted, inheritable × 2 words
                let mut data = [0u32; 6];
                unsafe {
                    assert_eq!(
                        libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
                        0
                    );
                    data[0] &= !(1 << CAP_NET_RAW);
                    assert_eq!(libc::syscall(libc::SYS_capset, &header, data.as_ptr()), 0);
                }
                spawn(ctx)
            })
            .join()
            .unwrap()
        };
        let mut run = Running::start_with(spawn_unprivileged, CollectorHealth::Degraded);
        // The first poll learns what exists; give it time to run before connecting.
        std::thread::sleep(Duration::from_millis(1500));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let c = TcpStream::connect(server).unwrap();
        let _accepted = listener.accept().unwrap();
        let client = c.local_addr().unwrap();
        run.wait(Duration::from_secs(5), |got| {
            got.iter().any(|g| g.local_port == Some(client.port()))
        });
        run.wait(Duration::from_secs(1), |_| false);
        let o = run.find(Direction::Out, client, server);
        assert_eq!(o.len(), 1, "{:?}", run.got);
        assert_eq!(o[0].process_id, std::process::id());
        let i = run.find(Direction::In, server, client);
        assert_eq!(i.len(), 1, "{:?}", run.got);
        assert_eq!(i[0].process_id, std::process::id());
        drop(c);
        let stopped = run.stop();
        assert!(stopped < Duration::from_secs(2), "stopped in {stopped:?}");
    }

    #[test]
    fn the_fallback_poller_finds_new_connections() {
        let host = HostRoot::default();
        let mut poller = Poller::default();
        let listener = TcpListener::bind("[::1]:0").unwrap();
        assert!(poller.poll(&host).is_empty(), "the first poll only learns");
        let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_s, _) = listener.accept().unwrap();
        let new = poller.poll(&host);
        let mine: Vec<_> = new
            .iter()
            .filter(|p| {
                p.entry.local == c.local_addr().unwrap()
                    || p.entry.remote == c.local_addr().unwrap()
            })
            .collect();
        assert_eq!(mine.len(), 2, "{new:?}");
        let out = mine
            .iter()
            .find(|p| p.entry.local == c.local_addr().unwrap())
            .unwrap();
        assert_eq!(out.direction, Direction::Out);
        let inn = mine
            .iter()
            .find(|p| p.entry.remote == c.local_addr().unwrap())
            .unwrap();
        assert_eq!(inn.direction, Direction::In);
        assert_eq!(
            Owners::default().pid(&host, out.entry.inode),
            Some(std::process::id())
        );
        // Already known: not again.
        assert!(
            poller
                .poll(&host)
                .iter()
                .all(|p| p.entry.local != c.local_addr().unwrap())
        );
    }

    /// Attribution of connections that live a few milliseconds:
    /// `HOLD_MS=10 cargo test --lib collectors::connection::tests::held -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement, prints numbers"]
    fn held() {
        let hold: u64 = std::env::var("HOLD_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10);
        let mut run = Running::start();
        let server = acceptor("127.0.0.1:0");
        let mut clients = Vec::new();
        for _ in 0..100 {
            let c = TcpStream::connect(server).unwrap();
            clients.push((c.local_addr().unwrap(), server));
            std::thread::sleep(Duration::from_millis(hold));
        }
        run.wait(Duration::from_secs(10), |got| got.len() >= 200);
        let attributed = clients
            .iter()
            .filter(|&&(c, s)| check_pair(&run, c, s))
            .count();
        eprintln!("100 connections held {hold} ms: all reported, Out attributed {attributed}/100");
    }

    /// Capture rate under a burst: `cargo test --lib collectors::connection::tests::burst -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement, prints numbers"]
    fn burst() {
        let n: usize = std::env::var("BURST")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let mut run = Running::start();
        let server = acceptor("127.0.0.1:0");
        let t = Instant::now();
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let c = TcpStream::connect(server).unwrap();
            clients.push(c.local_addr().unwrap());
        }
        let spent = t.elapsed();
        run.wait(Duration::from_secs(20), |got| got.len() >= 2 * n);
        let outs = clients
            .iter()
            .filter(|c| !run.find(Direction::Out, **c, server).is_empty())
            .count();
        let ins = clients
            .iter()
            .filter(|c| !run.find(Direction::In, server, **c).is_empty())
            .count();
        let attributed = clients
            .iter()
            .filter(|c| {
                run.find(Direction::Out, **c, server)
                    .iter()
                    .any(|o| o.process_id == std::process::id())
            })
            .count();
        let dropped = run
            .ctx
            .metrics
            .dropped_total(COLLECTOR, DropReason::SourceOverflow);
        eprintln!(
            "burst of {n} connections in {spent:?}: Out reported {outs}/{n} (attributed {attributed}), In reported {ins}/{n}, kernel drops {dropped}, reported in {:?}",
            t.elapsed()
        );
    }
}
