//! The netlink connector socket: subscribing, receiving datagrams in batches, unsubscribing.

use super::{
    CN_IDX_PROC, PROC_CN_MCAST_IGNORE, PROC_CN_MCAST_LISTEN, RECV_TIMEOUT,
    filtered_subscription_message, subscription_message,
};
use crate::kernel::netlink;
pub(super) use crate::kernel::netlink::Received;
use crate::kernel::socket::{recv_buffer_size, set_recv_buffer, set_recv_timeout, socket};
use std::io;
use std::os::fd::OwnedFd;

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
    /// The event bits this socket subscribed to (Linux 6.6+), or `None` for every event.
    pub(super) filter: Option<u32>,
}

impl Connector {
    /// A socket subscribed to every process event.
    pub(super) fn open(recv_buffer: usize) -> Result<Connector, Error> {
        Connector::open_filtered(recv_buffer, None)
    }

    /// A socket subscribed to the events `filter` names ([`filtered_subscription_message`],
    /// Linux 6.6+), or to every event with `None`.
    pub(super) fn open_filtered(
        recv_buffer: usize,
        filter: Option<u32>,
    ) -> Result<Connector, Error> {
        let fd = socket(libc::AF_NETLINK, libc::SOCK_DGRAM, libc::NETLINK_CONNECTOR)
            .map_err(Error::Socket)?;
        let size = i32::try_from(recv_buffer).unwrap_or(i32::MAX);
        if let Err(e) = set_recv_buffer(&fd, size) {
            tracing::debug!(error = %e, "keeping the default netlink receive buffer");
        }
        set_recv_timeout(&fd, RECV_TIMEOUT).map_err(Error::Socket)?;
        netlink::bind(&fd, CN_IDX_PROC).map_err(Error::Bind)?;
        let connector = Connector {
            recv_buffer: recv_buffer_size(&fd),
            fd,
            seq: fastrand::u32(..),
            ack: fastrand::u32(..),
            listens: std::cell::Cell::new(0),
            filter,
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

    /// Narrows the subscription to the events `events` names (Linux 6.6+). The kernel sends
    /// no acknowledgement to a filtered socket (an acknowledgement is event 0, which no filter
    /// lets through), so a socket that must see its acknowledgement subscribes to every event
    /// first and narrows once it has.
    pub(super) fn narrow(&self, events: u32) -> io::Result<()> {
        netlink::send(
            &self.fd,
            &filtered_subscription_message(PROC_CN_MCAST_LISTEN, events, self.seq, self.ack),
        )?;
        self.listens.set(self.listens.get() + 1);
        Ok(())
    }

    /// Sends the subscription (again), counting it.
    pub(super) fn listen(&self) -> io::Result<()> {
        match self.filter {
            Some(events) => self.narrow(events),
            None => {
                self.send_op(PROC_CN_MCAST_LISTEN)?;
                self.listens.set(self.listens.get() + 1);
                Ok(())
            }
        }
    }

    fn send_op(&self, op: u32) -> io::Result<()> {
        // The socket is bound, so the message goes to the kernel (port 0).
        netlink::send(&self.fd, &subscription_message(op, self.seq, self.ack))
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
        batch.recv_from_kernel(&self.fd)
    }

    /// [`Connector::recv_batch`] without waiting: `TimedOut` when nothing is queued.
    pub(super) fn try_recv_batch(&self, batch: &mut Batch) -> io::Result<Received> {
        batch.try_recv_from_kernel(&self.fd)
    }
}

/// Datagrams one receive can take. Each is one event of about 80 bytes.
pub(super) const BATCH_SLOTS: usize = 64;
/// Room per datagram: far more than a process event (the connector's own limit is 16 KiB, but
/// the process connector's messages are all under 100 bytes).
const BATCH_SLOT_BYTES: usize = 1024;

/// Buffers for [`Connector::recv_batch`], kept across receives.
pub(super) type Batch = netlink::Batch<BATCH_SLOTS, BATCH_SLOT_BYTES>;

impl Drop for Connector {
    fn drop(&mut self) {
        for _ in 0..self.listens.get() {
            let _ = self.send_op(PROC_CN_MCAST_IGNORE);
        }
    }
}
