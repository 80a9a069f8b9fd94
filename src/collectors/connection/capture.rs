//! The capture loop: SYNs and SYN-ACKs read from the packet socket, attributed to a process
//! through sock_diag and the socket owners, and turned into `ConnectionCreate` records.

use super::{
    COLLECTOR, Candidate, Found, NS_REFRESH_EVERY, NS_REFRESH_ON_MISS, Namespace, Namespaces,
    Owners, PACKET_HOST, PACKET_OTHERHOST, PACKET_OUTGOING, POLL_FALLBACK, PacketSocket,
    RECV_TIMEOUT, SNAP_LEN, Seen, SeenKey, Segment, Syn, candidates, parse_segment, poll_loop,
};
use crate::collectors::{Context, Held, RecvTimeout};
use crate::event::{CollectorHealth, ConnectionCreate, Direction, Event, ExtraDetails, Payload};
use crate::host::HostRoot;
use crate::host::accounts::UserNames;
use crate::host::procfs;
use crate::host::sockets::TCP_LISTEN;
use crate::metrics::DropReason;
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The connection collector as the registry lists it: [`spawn`] on its own thread.
pub struct ConnectionCollector;

impl crate::collectors::Triggered for ConnectionCollector {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn start(self: Box<Self>, ctx: Context) -> std::io::Result<crate::collectors::Running> {
        Ok(crate::collectors::Running::Thread(spawn(ctx)))
    }
}

/// Who a connection belongs to, as far as is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Attribution {
    pub(super) pid: Option<u32>,
    pub(super) uid: Option<u32>,
}

/// Builds the record for a connection of namespace `netns` (its inode and container).
pub(super) fn record(
    host: &HostRoot,
    names: &mut UserNames,
    c: &Candidate,
    who: Attribution,
    netns: u64,
    ns_container: Option<&str>,
) -> ConnectionCreate {
    let info = who.pid.map(|pid| procfs::read(host, pid));
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
pub(super) struct Capture {
    host: HostRoot,
    namespaces: Namespaces,
    owners: Owners,
    seen: Seen,
    names: UserNames,
    /// Inbound SYNs with no listener and no trace of an accepted connection since the last
    /// count (refused attempts, e.g. a port scan): not reported as connections, but counted.
    pub(super) refused: u64,
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
pub(super) const PROOF_WAIT: Duration = Duration::from_secs(2);
/// Unproven `In`s kept at most (a port scan makes many); beyond, the oldest counts as refused.
const MAX_UNPROVEN: usize = 4096;

impl Capture {
    pub(super) fn new(host: &HostRoot) -> Capture {
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
    pub(super) fn proved(
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
    pub(super) fn await_proof(&mut self, candidate: Candidate, seq: u32, now: Instant) {
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
    pub(super) fn expire_unproven(&mut self, now: Instant) {
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

    pub(super) fn records(&mut self, syn: &Syn, pkttype: u8) -> Vec<ConnectionCreate> {
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
    pub(super) fn remember(
        &mut self,
        key: (Option<u64>, SocketAddr),
        who: Attribution,
        now: Instant,
    ) {
        if self.map.len() >= LISTENERS_MAX {
            self.map
                .retain(|_, (t, _)| now.duration_since(*t) < LISTENER_TTL);
            if self.map.len() >= LISTENERS_MAX {
                self.map.clear();
            }
            crate::collectors::capacity::shrink_map(&mut self.map);
        }
        self.map.insert(key, (now, who));
    }

    pub(super) fn get(&self, key: &(Option<u64>, SocketAddr), now: Instant) -> Option<Attribution> {
        self.map
            .get(key)
            .filter(|(t, _)| now.duration_since(*t) < LISTENER_TTL)
            .map(|(_, who)| *who)
    }
}
