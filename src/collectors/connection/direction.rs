//! Which connection a SYN is: its direction and namespace from the packet type and the local
//! addresses ([`candidates`]), and the keys that report each connection once ([`Seen`]).

use super::{PACKET_HOST, PACKET_OTHERHOST, PACKET_OUTGOING, Syn};
use crate::event::Direction;
use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

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
pub(super) enum SeenKey {
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
    pub(super) fn of(c: &Candidate, seq: u32) -> SeenKey {
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
pub(super) const SEEN_TTL: Duration = Duration::from_secs(130);
pub(super) const SEEN_MAX: usize = 16 * 1024;

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
pub(super) struct Seen {
    hasher: std::hash::RandomState,
    pub(super) keys: HashSet<u64>,
    pub(super) order: VecDeque<(Instant, u64)>,
}

impl Seen {
    /// True the first time `key` is seen (within [`SEEN_TTL`]).
    pub(super) fn first(&mut self, key: SeenKey, now: Instant) -> bool {
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
            crate::collectors::capacity::shrink_set(&mut self.keys);
            crate::collectors::capacity::shrink_deque(&mut self.order);
        }
        let fingerprint = self.hasher.hash_one(key);
        if !self.keys.insert(fingerprint) {
            return false;
        }
        self.order.push_back((now, fingerprint));
        true
    }
}
