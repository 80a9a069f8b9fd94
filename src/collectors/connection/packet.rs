//! Packets: the TCP/IP headers of a captured SYN or SYN-ACK, parsed as untrusted bytes, the classic
//! BPF filter that lets only those through, and the `AF_PACKET` socket that reads them.

use crate::kernel::socket::{
    bind_packet_all, packet_drops, recv_packet, set_recv_buffer, set_recv_timeout, setsockopt,
    socket,
};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Duration;

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
    pub(super) fn label(self) -> &'static str {
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

pub(super) const IPPROTO_TCP: u8 = 6;
pub(super) const TCP_SYN: u8 = 0x02;
pub(super) const TCP_ACK: u8 = 0x10;
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
pub(super) const PACKET_HOST: u8 = 0;
pub(super) const PACKET_OTHERHOST: u8 = 3;
pub(super) const PACKET_OUTGOING: u8 = 4;

/// One captured packet's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captured {
    pub len: usize,
    /// `PACKET_HOST`, `PACKET_OUTGOING`, …
    pub pkttype: u8,
}

/// How long a read waits before the thread looks at its cancel token again.
pub(super) const RECV_TIMEOUT: Duration = Duration::from_millis(200);

/// The filtered packet socket.
pub struct PacketSocket {
    pub(super) fd: OwnedFd,
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
        let _ = set_recv_buffer(&fd, 8 << 20);
        set_recv_timeout(&fd, RECV_TIMEOUT)?;
        bind_packet_all(&fd)?;
        Ok(PacketSocket { fd })
    }

    /// The next packet, or `None` when the wait timed out or was interrupted.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Captured>> {
        Ok(recv_packet(&self.fd, buf)?.map(|(len, pkttype)| Captured { len, pkttype }))
    }

    /// Packets the kernel dropped because the socket's queue was full, since the last call.
    pub fn take_drops(&self) -> io::Result<u64> {
        packet_drops(&self.fd)
    }
}
