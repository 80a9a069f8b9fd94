//! The netlink connector socket: subscribing, receiving datagrams in batches, unsubscribing.

use super::{
    CN_IDX_PROC, PROC_CN_MCAST_IGNORE, PROC_CN_MCAST_LISTEN, RECV_TIMEOUT, subscription_message,
};
use crate::collectors::{set_recv_timeout, setsockopt};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Why the connector could not be used (reported in the `Degraded` status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening a netlink connector socket")]
    Socket(#[source] io::Error),
    #[error("joining the process events group")]
    Bind(#[source] io::Error),
    #[error("subscribing to process events")]
    Subscribe(#[source] io::Error),
    #[error("no process connector in this network namespace (the module needs the host's network)")]
    NotHostNetwork(#[source] io::Error),
    #[error("the kernel refused the process events subscription")]
    Refused(#[source] io::Error),
    #[error(
        "the kernel did not acknowledge the process events subscription (agent outside the host PID or user namespace, or kernel without CONFIG_PROC_EVENTS)"
    )]
    NoAck,
    #[error("reading process events")]
    Receive(#[source] io::Error),
}

/// The message and its causes on one line, for the status event.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// A subscribed `NETLINK_CONNECTOR` socket. Dropping it unsubscribes (older kernels keep a
/// global listener count that only `PROC_CN_MCAST_IGNORE` lowers) and closes it.
pub(super) struct Connector {
    pub(super) fd: OwnedFd,
    /// `seq`/`ack` sent with the subscription; the kernel's answer carries `ack + 1`, which
    /// tells it from other listeners' acknowledgements (all listeners receive them).
    seq: u32,
    ack: u32,
    /// The receive buffer the kernel granted (bytes, as it reports it), for the status message:
    /// without CAP_NET_ADMIN it is capped by `net.core.rmem_max`, and overflows come sooner.
    pub(super) recv_buffer: Option<usize>,
    /// Subscriptions sent: older kernels count listeners globally, so each is undone on drop.
    pub(super) listens: std::cell::Cell<u32>,
}

/// What one receive gave.
pub(super) enum Received {
    /// At least one kernel datagram is in the batch.
    Datagrams,
    TimedOut,
    /// `ENOBUFS`: the socket buffer was full and the kernel dropped events (how many is unknown).
    Overflow,
}

fn recv_buffer_size(fd: &OwnedFd) -> Option<usize> {
    let mut size: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `size` and `len` are live and writable; the fd is open.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut size as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| usize::try_from(size).ok()).flatten()
}

impl Connector {
    pub(super) fn open(recv_buffer: usize) -> Result<Connector, Error> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_CONNECTOR,
            )
        };
        if raw < 0 {
            return Err(Error::Socket(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = i32::try_from(recv_buffer).unwrap_or(i32::MAX);
        // FORCE passes rmem_max but needs CAP_NET_ADMIN; the plain option is capped by rmem_max.
        if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size).is_err() {
            if let Err(e) = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &size) {
                tracing::debug!(error = %e, "keeping the default netlink receive buffer");
            }
        }
        set_recv_timeout(&fd, RECV_TIMEOUT).map_err(Error::Socket)?;

        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = CN_IDX_PROC;
        // SAFETY: `addr` is a valid sockaddr_nl of the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(Error::Bind(io::Error::last_os_error()));
        }
        let connector = Connector {
            recv_buffer: recv_buffer_size(&fd),
            fd,
            seq: fastrand::u32(..),
            ack: fastrand::u32(..),
            listens: std::cell::Cell::new(0),
        };
        connector.listen().map_err(|e| {
            // The kernel's connector socket exists only in the initial network namespace.
            if e.raw_os_error() == Some(libc::ECONNREFUSED) {
                Error::NotHostNetwork(e)
            } else {
                Error::Subscribe(e)
            }
        })?;
        Ok(connector)
    }

    /// Sends the subscription (again), counting it.
    pub(super) fn listen(&self) -> io::Result<()> {
        self.send_op(PROC_CN_MCAST_LISTEN)?;
        self.listens.set(self.listens.get() + 1);
        Ok(())
    }

    fn send_op(&self, op: u32) -> io::Result<()> {
        let msg = subscription_message(op, self.seq, self.ack);
        // SAFETY: `msg` is a live buffer of the length given; the socket is bound, so the
        // message goes to the kernel (port 0).
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Is this the kernel's answer to our subscription? Matched by `ack` alone (ours + 1): the
    /// kernel echoes it, but not `seq` on every version (6.18 puts its own event counter there),
    /// and matching both made every subscription look unanswered, so the collector reported
    /// `Up` only once some process event happened to arrive.
    pub(super) fn is_our_ack(&self, ack: u32) -> bool {
        ack == self.ack.wrapping_add(1)
    }

    /// Receives the datagrams waiting on the socket (at least one, at most [`BATCH_SLOTS`]) with
    /// one `recvmmsg`: in an exec storm each fork, exec and exit is its own datagram, and one
    /// system call per event was a large part of the reader's cost. Datagrams not sent by the
    /// kernel (port id 0) are discarded: only the kernel may speak for the process connector.
    pub(super) fn recv_batch(&self, batch: &mut Batch) -> io::Result<Received> {
        loop {
            batch.count = 0;
            // SAFETY: plain data; all-zero is a valid value of each.
            let mut from: [libc::sockaddr_nl; BATCH_SLOTS] = unsafe { std::mem::zeroed() };
            let mut iov: [libc::iovec; BATCH_SLOTS] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; BATCH_SLOTS] = unsafe { std::mem::zeroed() };
            for (i, slot) in batch.buf.chunks_exact_mut(BATCH_SLOT_BYTES).enumerate() {
                iov[i].iov_base = slot.as_mut_ptr().cast();
                iov[i].iov_len = slot.len();
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
                msgs[i].msg_hdr.msg_name = (&mut from[i] as *mut libc::sockaddr_nl).cast();
                msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            }
            // SAFETY: every header points to live, writable buffers of the lengths given, which
            // outlive the call. MSG_WAITFORONE: block (up to SO_RCVTIMEO) for the first datagram
            // only, then take what is already queued.
            let n = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    BATCH_SLOTS as libc::c_uint,
                    // glibc declares the flags `int`, musl `unsigned int`.
                    libc::MSG_WAITFORONE as _,
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
                    batch.lens[batch.count] = (m.msg_len as usize).min(BATCH_SLOT_BYTES);
                    batch.slots[batch.count] = i;
                    batch.count += 1;
                }
                if batch.count == 0 {
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

/// Datagrams one receive can take. Each is one event of about 80 bytes.
pub(super) const BATCH_SLOTS: usize = 64;
/// Room per datagram: far more than a process event (the connector's own limit is 16 KiB, but
/// the process connector's messages are all under 100 bytes).
const BATCH_SLOT_BYTES: usize = 1024;

/// Buffers for [`Connector::recv_batch`], kept across receives.
pub(super) struct Batch {
    buf: Vec<u8>,
    /// Slot index and length of each kernel datagram received, in order.
    slots: [usize; BATCH_SLOTS],
    lens: [usize; BATCH_SLOTS],
    count: usize,
}

impl Batch {
    pub(super) fn new() -> Batch {
        Batch {
            buf: vec![0u8; BATCH_SLOTS * BATCH_SLOT_BYTES],
            slots: [0; BATCH_SLOTS],
            lens: [0; BATCH_SLOTS],
            count: 0,
        }
    }

    /// The kernel datagrams of the last receive, in order.
    pub(super) fn datagrams(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.count).filter_map(|i| {
            let start = self.slots[i] * BATCH_SLOT_BYTES;
            self.buf.get(start..start + self.lens[i])
        })
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        for _ in 0..self.listens.get() {
            let _ = self.send_op(PROC_CN_MCAST_IGNORE);
        }
    }
}
