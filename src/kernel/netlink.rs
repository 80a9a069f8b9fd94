//! Netlink: the `nlmsghdr` framing that every netlink reply shares (include/uapi/linux/netlink.h),
//! and sending to and receiving from the kernel on a netlink socket.
//!
//! All header fields are in the host's byte order. The framing is walked over untrusted bytes:
//! the receive buffer has no alignment guarantee and its content is not trusted.

use super::bytes::{u16_at, u32_at};
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32.
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_DUMP: u16 = 0x300;

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// What follows the header, up to the message's length.
    pub payload: &'a [u8],
}

/// Why the rest of a datagram cannot be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// Fewer than [`NLMSG_HDRLEN`] bytes are left.
    Short,
    /// The header's length is shorter than a header or longer than what is left.
    BadLength(u32),
}

/// The messages of one datagram (netlink may pack several into one), in order. A message whose
/// header cannot be used yields one error and ends the walk: nothing after it can be located.
/// Messages start on 4-byte boundaries (`NLMSG_ALIGN`). Never panics, allocates nothing, and
/// takes at most one step per 16 bytes.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { rest: buf }
}

/// See [`messages`].
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, FramingError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        if rest.len() < NLMSG_HDRLEN {
            self.rest = &[];
            return Some(Err(FramingError::Short));
        }
        let len = u32_at(rest, 0).unwrap_or(0);
        let n = len as usize;
        if n < NLMSG_HDRLEN || n > rest.len() {
            self.rest = &[];
            return Some(Err(FramingError::BadLength(len)));
        }
        let message = Message {
            kind: u16_at(rest, 4).unwrap_or(0),
            seq: u32_at(rest, 8).unwrap_or(0),
            payload: &rest[NLMSG_HDRLEN..n],
        };
        self.rest = rest.get(n.div_ceil(4) * 4..).unwrap_or(&[]);
        Some(Ok(message))
    }
}

/// A zeroed `sockaddr_nl` of the netlink family: port id 0 (the kernel), no groups.
fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

/// Binds a netlink socket to the multicast `groups` (the kernel picks the port id).
pub fn bind(fd: &impl AsFd, groups: u32) -> io::Result<()> {
    let mut addr = kernel_address();
    addr.nl_groups = groups;
    // SAFETY: `addr` is a valid sockaddr_nl of the length given.
    let rc = unsafe {
        libc::bind(
            fd.as_fd().as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `send(2)` on a bound netlink socket: the message goes to the kernel (port 0).
pub fn send(fd: &impl AsFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: `msg` is a live buffer of the length given.
    let n = unsafe { libc::send(fd.as_fd().as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `sendto(2)` the kernel (port id 0), for a socket that was never bound.
pub fn send_to_kernel(fd: &impl AsFd, msg: &[u8]) -> io::Result<()> {
    let kernel = kernel_address();
    // SAFETY: `msg` and `kernel` are valid for the lengths passed.
    let n = unsafe {
        libc::sendto(
            fd.as_fd().as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram into `buf`; its length, cut to `buf`.
pub fn recv(fd: &impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for its length.
    let n = unsafe {
        libc::recv(
            fd.as_fd().as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize).min(buf.len()))
}

/// What one batch receive gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// At least one kernel datagram is in the batch.
    Datagrams,
    TimedOut,
    /// `ENOBUFS`: the socket buffer was full and the kernel dropped messages (how many is
    /// unknown).
    Overflow,
}

/// Buffers for [`Batch::recv_from_kernel`], kept across receives: `SLOTS` datagrams of at most
/// `SLOT_BYTES` each.
pub struct Batch<const SLOTS: usize, const SLOT_BYTES: usize> {
    buf: Vec<u8>,
    /// Slot index and length of each kernel datagram received, in order.
    slots: [usize; SLOTS],
    lens: [usize; SLOTS],
    count: usize,
}

impl<const SLOTS: usize, const SLOT_BYTES: usize> Default for Batch<SLOTS, SLOT_BYTES> {
    fn default() -> Self {
        Batch {
            buf: vec![0u8; SLOTS * SLOT_BYTES],
            slots: [0; SLOTS],
            lens: [0; SLOTS],
            count: 0,
        }
    }
}

impl<const SLOTS: usize, const SLOT_BYTES: usize> Batch<SLOTS, SLOT_BYTES> {
    /// The kernel datagrams of the last receive, in order.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.count).filter_map(|i| {
            let start = self.slots[i] * SLOT_BYTES;
            self.buf.get(start..start + self.lens[i])
        })
    }

    /// Receives the datagrams waiting on the socket (at least one, at most `SLOTS`) with one
    /// `recvmmsg`: where every event is its own datagram, one system call per event is a large
    /// part of a reader's cost. Datagrams not sent by the kernel (port id 0) are discarded: only
    /// the kernel may speak for a kernel channel. Waits (up to `SO_RCVTIMEO`) for the first
    /// datagram only, then takes what is already queued.
    pub fn recv_from_kernel(&mut self, fd: &impl AsFd) -> io::Result<Received> {
        self.recv_with(fd, libc::MSG_WAITFORONE)
    }

    /// [`Batch::recv_from_kernel`] without waiting for the first datagram: `TimedOut` when
    /// none is queued.
    pub fn try_recv_from_kernel(&mut self, fd: &impl AsFd) -> io::Result<Received> {
        self.recv_with(fd, libc::MSG_DONTWAIT)
    }

    fn recv_with(&mut self, fd: &impl AsFd, flags: libc::c_int) -> io::Result<Received> {
        loop {
            self.count = 0;
            // SAFETY: plain data; all-zero is a valid value of each.
            let mut from: [libc::sockaddr_nl; SLOTS] = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut iov: [libc::iovec; SLOTS] = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut msgs: [libc::mmsghdr; SLOTS] = unsafe { std::mem::zeroed() };
            for (i, slot) in self.buf.chunks_exact_mut(SLOT_BYTES).enumerate() {
                iov[i].iov_base = slot.as_mut_ptr().cast();
                iov[i].iov_len = slot.len();
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_name = (&mut from[i] as *mut libc::sockaddr_nl).cast();
                msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            }
            // SAFETY: every header points to live, writable buffers of the lengths given, which
            // outlive the call. MSG_WAITFORONE: block (up to SO_RCVTIMEO) for the first datagram
            // only, then take what is already queued; MSG_DONTWAIT: do not block at all.
            let n = unsafe {
                libc::recvmmsg(
                    fd.as_fd().as_raw_fd(),
                    msgs.as_mut_ptr(),
                    SLOTS as libc::c_uint,
                    // glibc declares the flags `int`, musl `unsigned int`.
                    flags as _,
                    std::ptr::null_mut(),
                )
            };
            if n >= 0 {
                for (i, m) in msgs.iter().take(n as usize).enumerate() {
                    if from[i].nl_pid != 0 {
                        continue;
                    }
                    // A datagram larger than its slot arrives cut (MSG_TRUNC); parsing reports
                    // it as truncated.
                    self.lens[self.count] = (m.msg_len as usize).min(SLOT_BYTES);
                    self.slots[self.count] = i;
                    self.count += 1;
                }
                if self.count == 0 {
                    continue;
                }
                return Ok(Received::Datagrams);
            }
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Ok(Received::TimedOut),
                Some(libc::ENOBUFS) => Ok(Received::Overflow),
                Some(libc::EINTR) => continue,
                _ => Err(e),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, kind: u16, seq: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&len.to_ne_bytes());
        h.extend_from_slice(&kind.to_ne_bytes());
        h.extend_from_slice(&0u16.to_ne_bytes());
        h.extend_from_slice(&seq.to_ne_bytes());
        h.extend_from_slice(&0u32.to_ne_bytes());
        h
    }

    #[test]
    fn messages_are_walked_on_4_byte_boundaries_and_a_bad_length_ends_the_walk() {
        let mut buf = header(18, 7, 1);
        buf.extend_from_slice(&[0xaa, 0xbb, 0, 0]); // payload of 2, padded to 4
        buf.extend(header(16, NLMSG_DONE, 2));
        buf.extend(header(99, 9, 3));
        let got: Vec<_> = messages(&buf).collect();
        assert_eq!(
            got,
            [
                Ok(Message {
                    kind: 7,
                    seq: 1,
                    payload: &[0xaa, 0xbb][..]
                }),
                Ok(Message {
                    kind: NLMSG_DONE,
                    seq: 2,
                    payload: &[][..]
                }),
                Err(FramingError::BadLength(99)),
            ]
        );
        assert_eq!(
            messages(&buf[..10]).collect::<Vec<_>>(),
            [Err(FramingError::Short)]
        );
        assert_eq!(messages(&[]).count(), 0);
    }
}
