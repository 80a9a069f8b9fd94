//! Fallback without a packet socket (no `CAP_NET_RAW`): the socket tables polled every second.

use super::{Attribution, COLLECTOR, Candidate, Owners, RECV_TIMEOUT, find_in_table, record};
use crate::collectors::Context;
use crate::event::{Direction, Event, Payload};
use crate::host::HostRoot;
use crate::host::accounts::UserNames;
use crate::host::netns::NetNs;
use crate::host::procfs;
use crate::host::sockets::{SocketEntry, TCP_ESTABLISHED, TCP_LISTEN};
use std::collections::HashSet;
use std::net::SocketAddr;

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
        for ns in crate::host::netns::network_namespaces(host) {
            let mut entries = Vec::new();
            for file in ["tcp", "tcp6"] {
                let path = format!("/proc/{}/net/{file}", ns.pid);
                let keep = |e: &SocketEntry| e.state == TCP_ESTABLISHED || e.state == TCP_LISTEN;
                if let Ok(t) = crate::host::sockets::read_socket_table(host, path, keep) {
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

pub(super) fn poll_loop(ctx: &Context) {
    let mut poller = Poller::default();
    let mut owners = Owners::default();
    let mut names = UserNames::default();
    let ours = crate::host::netns::netns_of(&ctx.host, std::process::id());
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
                        .and_then(|cg| procfs::container_id_from_cgroup(&cg))
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
