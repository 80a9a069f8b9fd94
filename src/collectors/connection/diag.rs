//! sock_diag: the kernel's own socket lookup by exact 4-tuple, its wire format ([`encode_diag_request`],
//! [`parse_diag_messages`]) and a socket opened inside another network namespace.

use super::IPPROTO_TCP;
use crate::host::HostRoot;
use crate::host::netns::NetNs;
use crate::host::sockets::TCP_LISTEN;
use crate::kernel::netlink::{
    self, FramingError, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN,
};
use crate::kernel::socket::{set_recv_timeout, socket};
use crate::kernel::sys::in_network_namespace;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

pub(super) const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct inet_diag_req_v2`.
const DIAG_REQ_LEN: usize = 56;
/// `struct inet_diag_msg`.
pub(super) const DIAG_MSG_LEN: usize = 72;
pub(super) const TCP_SYN_RECV: u8 = 3;
pub(super) const TCP_TIME_WAIT: u8 = 6;
pub(super) const TCP_NEW_SYN_RECV: u8 = 12;

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
    for message in netlink::messages(buf) {
        let m = message.map_err(|e| match e {
            FramingError::Short => DiagError::Truncated,
            FramingError::BadLength(len) => DiagError::BadLength(len),
        })?;
        let msg = match m.kind {
            NLMSG_DONE => DiagMessage::Done,
            NLMSG_ERROR => {
                let e = m.payload.get(..4).ok_or(DiagError::Truncated)?;
                DiagMessage::Error(i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
            }
            SOCK_DIAG_BY_FAMILY => DiagMessage::Socket(parse_diag_socket(m.payload)?),
            other => DiagMessage::Other(other),
        };
        out.push((m.seq, msg));
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
        netlink::send_to_kernel(&self.fd, &req)?;
        Ok(self.seq)
    }

    /// Receives one datagram and parses it.
    fn receive(&mut self) -> io::Result<Vec<(u32, DiagMessage)>> {
        let n = netlink::recv(&self.fd, &mut self.buf)?;
        parse_diag_messages(&self.buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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
pub(super) fn open_diag_in(host: &HostRoot, ns: NetNs) -> io::Result<Diag> {
    let file = host.open_namespace(format!("/proc/{}/ns/net", ns.pid))?;
    // The pid may have moved on since the namespace list was made.
    if file.metadata()?.ino() != ns.inode {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the process left the namespace",
        ));
    }
    in_network_namespace(&file, Diag::open)
}
