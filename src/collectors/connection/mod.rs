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

mod capture;
mod diag;
mod direction;
mod netns;
mod packet;
mod poll;
#[cfg(test)]
mod tests;

pub use capture::*;
pub use diag::*;
pub use direction::*;
pub use netns::*;
pub use packet::*;
pub use poll::*;

/// The collector's name (metric label, `CollectorStatus`).
pub const COLLECTOR: &str = "connection";

/// What the collector does without a packet socket.
const POLL_FALLBACK: &str =
    "polling /proc/net/tcp and tcp6 every second; connections shorter than a second are missed";
