//! Test helpers shared by several modules' tests.

use crate::host::HostRoot;
use crate::host::netns::netns_of;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Now on `CLOCK_MONOTONIC`, the clock of the process connector's timestamps.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the current time into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A global (non-loopback, non-link-local) IPv6 address of this host, if it has one.
pub(crate) fn real_v6_address() -> Option<Ipv6Addr> {
    let text = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
    text.lines().find_map(|l| {
        let hex = l.split_whitespace().next()?;
        let v = u128::from_str_radix(hex, 16).ok()?;
        let ip = Ipv6Addr::from(v);
        (!ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80).then_some(ip)
    })
}

/// A network namespace joined to the host by a veth pair, like a container on a bridge:
/// `host_ip` on the host side, `ns_ip` inside, and a `sleep` process in it so that /proc
/// shows the namespace. Removed on drop. `None` (and the test skips) without `ip`.
pub(crate) struct TestNetns {
    name: String,
    pub host_ip: Ipv4Addr,
    pub ns_ip: Ipv4Addr,
    pub inode: u64,
    sleeper: std::process::Child,
}

impl TestNetns {
    /// `tag` keeps concurrent tests apart (interface names and a /30 of 10.213.<tag>.0).
    pub(crate) fn create(tag: u8) -> Option<TestNetns> {
        let name = format!("eg{tag}n{}", std::process::id() % 100_000);
        let (h, c) = (format!("eg{tag}h{}", std::process::id() % 100_000), "eth0");
        let host_ip = Ipv4Addr::new(10, 213, tag, 1);
        let ns_ip = Ipv4Addr::new(10, 213, tag, 2);
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let _ = ip(&["netns", "del", &name]);
        // A run killed before its drop leaves its veth (holding this tag's addresses) and
        // namespace behind; they would collide with this one.
        let stale = |kind: &[&str], prefix: &str| -> Vec<String> {
            std::process::Command::new("ip")
                .args(kind)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
                .split_whitespace()
                .map(|w| {
                    w.trim_end_matches(':')
                        .split('@')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .filter(|w| {
                    w.strip_prefix(prefix)
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .collect()
        };
        for link in stale(&["-o", "link", "show"], &format!("eg{tag}h")) {
            let _ = ip(&["link", "del", &link]);
        }
        for ns in stale(&["netns", "list"], &format!("eg{tag}n")) {
            let _ = ip(&["netns", "del", &ns]);
        }
        if !ip(&["netns", "add", &name]) {
            eprintln!("skipping: cannot create a network namespace with ip(8)");
            return None;
        }
        let ok = ip(&[
            "link", "add", &h, "type", "veth", "peer", "name", c, "netns", &name,
        ]) && ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &h])
            && ip(&["link", "set", &h, "up"])
            && ip(&["-n", &name, "addr", "add", &format!("{ns_ip}/30"), "dev", c])
            && ip(&["-n", &name, "link", "set", c, "up"])
            && ip(&["-n", &name, "link", "set", "lo", "up"]);
        let sleeper = std::process::Command::new("ip")
            .args(["netns", "exec", &name, "sleep", "600"])
            .spawn();
        let (true, Ok(sleeper)) = (ok, sleeper) else {
            let _ = ip(&["netns", "del", &name]);
            panic!("setting up the test namespace failed");
        };
        let mut ns = TestNetns {
            name,
            host_ip,
            ns_ip,
            inode: 0,
            sleeper,
        };
        // Wait until the sleeper has entered the namespace.
        for _ in 0..200 {
            let inner = std::fs::metadata(format!("/run/netns/{}", ns.name))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap_or(0);
            if inner != 0 && netns_of(&HostRoot::default(), ns.sleeper.id()) == Some(inner) {
                ns.inode = inner;
                return Some(ns);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the sleeper never entered the test namespace");
    }

    /// Runs `f` on a thread that has joined the namespace: sockets it creates live there.
    pub(crate) fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = std::fs::File::open(format!("/run/netns/{}", self.name)).unwrap();
        crate::kernel::sys::in_network_namespace(&file, || Ok(f())).expect("setns")
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
        // Deleting the namespace destroys its veth end, and with it the host's.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
