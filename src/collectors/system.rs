//! `SystemInformation`: what the device is (OS, kernel, architecture, memory, uptime).
//!
//! Read from the host's files under the host root, never from the container's own: in the
//! module container `/etc/os-release` is the image's, `/host/etc/os-release` the device's. The
//! host name comes from the host's `/etc/hostname` first, because `/proc/sys/kernel/hostname`
//! answers with the reader's UTS namespace (the container's name) when read from a container.

use super::Periodic;
use crate::event::{Event, ExtraDetails, Payload, SystemInformation, envelope::AGENT_VERSION};
use crate::host::HostRoot;
use std::collections::HashMap;

pub struct SystemInformationCollector;

impl Periodic for SystemInformationCollector {
    fn name(&self) -> &'static str {
        "system"
    }

    fn collect(&mut self, host: &HostRoot) -> Vec<Event> {
        vec![Event::new(Payload::SystemInformation(vec![read(host)]))]
    }
}

/// Reads everything it can; what could not be read is named in `ExtraDetails.Unavailable`
/// (comma-separated; a file that is there but was refused or unreadable has the reason after it
/// in parentheses: `/etc/hostname (not a regular file but a FIFO)`).
pub fn read(host: &HostRoot) -> SystemInformation {
    let mut unavailable: Vec<String> = Vec::new();
    let mut extra = ExtraDetails::new();
    let mut info = SystemInformation::default();
    let mut read = |path: &'static str| match host.read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            if e.is_not_found() {
                unavailable.push(path.to_string());
            } else {
                tracing::debug!(error = %crate::text::error_chain(&e), "system information source unreadable");
                // Commas separate the entries.
                let reason = e.reason().replace(',', ";");
                unavailable.push(format!("{path} ({reason})"));
            }
            None
        }
    };

    let os = read("/etc/os-release").or_else(|| read("/usr/lib/os-release"));
    if let Some(os) = os {
        let os = parse_os_release(&os);
        info.os_name = os.get("NAME").cloned();
        info.os_version = os.get("VERSION_ID").or(os.get("VERSION")).cloned();
        info.os_vendor = os.get("ID").cloned();
        if let Some(p) = os.get("PRETTY_NAME") {
            extra.insert("OSPrettyName".into(), p.clone());
        }
    }
    info.host_name = read("/etc/hostname")
        .and_then(|s| first_line(&s))
        .or_else(|| read("/proc/sys/kernel/hostname").and_then(|s| first_line(&s)));
    if let Some(k) = read("/proc/sys/kernel/osrelease").and_then(|s| first_line(&s)) {
        extra.insert("KernelRelease".into(), k);
    }
    if let Some(k) = read("/proc/sys/kernel/version").and_then(|s| first_line(&s)) {
        extra.insert("KernelVersion".into(), k);
    }
    info.os_architecture = machine();
    info.bios_version = read("/sys/class/dmi/id/bios_version").and_then(|s| first_line(&s));
    if let Some(mem) = read("/proc/meminfo") {
        let mem = parse_meminfo(&mem);
        let get = |k: &str| mem.get(k).copied();
        info.total_physical_memory_kb = get("MemTotal");
        info.free_physical_memory_kb = get("MemFree");
        if let (Some(t), Some(s)) = (get("MemTotal"), get("SwapTotal")) {
            info.total_virtual_memory_kb = Some(t.saturating_add(s));
        }
        if let (Some(f), Some(s)) = (get("MemFree"), get("SwapFree")) {
            info.free_virtual_memory_kb = Some(f.saturating_add(s));
        }
        if let Some(a) = get("MemAvailable") {
            extra.insert("AvailablePhysicalMemoryInKB".into(), a.to_string());
        }
    }
    if let Some(up) = read("/proc/uptime").and_then(|s| parse_uptime(&s)) {
        extra.insert("UptimeSeconds".into(), up.to_string());
    }
    if let Some(bt) = read("/proc/stat").and_then(|s| parse_boot_time(&s)) {
        extra.insert("BootTimeUnix".into(), bt.to_string());
    }
    if let Some(n) = read("/sys/devices/system/cpu/online").and_then(|s| parse_cpu_list(&s)) {
        extra.insert("CpuCount".into(), n.to_string());
    }
    extra.insert("AgentVersion".into(), AGENT_VERSION.to_string());
    if !unavailable.is_empty() {
        extra.insert("Unavailable".into(), unavailable.join(","));
    }
    info.extra_details = extra;
    info
}

fn first_line(s: &str) -> Option<String> {
    let line = s.lines().next()?.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// The machine name of the running kernel (`uname -m`): the device's, also from a container,
/// unlike the architecture this binary was built for.
pub fn machine() -> Option<String> {
    crate::kernel::sys::uname_machine()
}

/// Parses os-release (`KEY=value`, values optionally quoted, `#` comments).
pub fn parse_os_release(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (k, v) = line.split_once('=')?;
            let k = k.trim();
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            Some((k.to_string(), unquote(v.trim())))
        })
        .collect()
}

fn unquote(v: &str) -> String {
    let quoted = v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')));
    if !quoted {
        return v.to_string();
    }
    let inner = &v[1..v.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses /proc/meminfo into kB values.
pub fn parse_meminfo(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (k, rest) = line.split_once(':')?;
            let n = rest.split_whitespace().next()?.parse().ok()?;
            Some((k.trim().to_string(), n))
        })
        .collect()
}

/// Seconds since boot from /proc/uptime.
pub fn parse_uptime(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

/// Boot time (Unix seconds) from the `btime` line of /proc/stat.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Counts CPUs in a kernel CPU list such as `0-3,5,7-8`.
pub fn parse_cpu_list(text: &str) -> Option<u64> {
    let mut n: u64 = 0;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                n = n.checked_add(b.checked_sub(a)?.checked_add(1)?)?;
            }
            None => {
                part.trim().parse::<u64>().ok()?;
                n = n.checked_add(1)?;
            }
        }
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quotes_and_comments() {
        let m = parse_os_release(
            "# comment\nNAME=\"Debian GNU/Linux\"\nVERSION_ID='12'\nID=debian\nBROKEN\n=x\nPRETTY_NAME=\"A \\\"quoted\\\" name\"\n",
        );
        assert_eq!(m["NAME"], "Debian GNU/Linux");
        assert_eq!(m["VERSION_ID"], "12");
        assert_eq!(m["ID"], "debian");
        assert_eq!(m["PRETTY_NAME"], "A \"quoted\" name");
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn meminfo_uptime_btime_cpus() {
        let m = parse_meminfo(
            "MemTotal:       16384 kB\nMemFree: 100 kB\nHugePages_Total: 0\ngarbage\n",
        );
        assert_eq!(m["MemTotal"], 16384);
        assert_eq!(m["HugePages_Total"], 0);
        assert_eq!(parse_uptime("12345.67 999.0\n"), Some(12345));
        assert_eq!(parse_uptime("nan 1"), None);
        assert_eq!(parse_uptime(""), None);
        assert_eq!(
            parse_boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("cpu 1 2\n"), None);
        assert_eq!(parse_cpu_list("0-3,5,7-8\n"), Some(7));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list("0-18446744073709551615"), None);
    }

    #[test]
    fn reads_a_fake_host_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::write(
            root.join("etc/os-release"),
            "NAME=TestOS\nVERSION_ID=1.2\nID=test\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/hostname"), "edge-01\n").unwrap();
        std::fs::write(
            root.join("proc/meminfo"),
            "MemTotal: 1000 kB\nMemFree: 400 kB\nMemAvailable: 600 kB\nSwapTotal: 100 kB\nSwapFree: 50 kB\n",
        )
        .unwrap();
        let info = read(&HostRoot::new(root));
        assert_eq!(info.os_name.as_deref(), Some("TestOS"));
        assert_eq!(info.os_version.as_deref(), Some("1.2"));
        assert_eq!(info.host_name.as_deref(), Some("edge-01"));
        assert_eq!(info.total_physical_memory_kb, Some(1000));
        assert_eq!(info.free_virtual_memory_kb, Some(450));
        assert!(info.extra_details["Unavailable"].contains("/proc/uptime"));
        assert_eq!(info.extra_details["AgentVersion"], AGENT_VERSION);
    }
}
