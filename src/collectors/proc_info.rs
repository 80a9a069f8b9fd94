//! What /proc says about one process: executable, command line, parent, user, container.
//!
//! Shared by the process, connection and listening-port collectors. Everything is best effort: a
//! process can exit between two reads, and its files are untrusted (a command line is whatever
//! the process wrote). Missing pieces stay `None`; the caller reports what it has.

use crate::host::HostRoot;

/// Longest command line kept; the pipeline truncates further if a message needs it.
pub const MAX_CMDLINE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: Option<u32>,
    /// Real uid.
    pub uid: Option<u32>,
    /// The kernel's short name (`comm`), used when the executable cannot be read.
    pub comm: Option<String>,
    /// Target of `/proc/<pid>/exe` (the path inside the process's own mount namespace).
    pub exe: Option<String>,
    /// Arguments joined with spaces.
    pub cmdline: Option<String>,
    /// Full container id when the process runs in a Docker, containerd, CRI-O or podman container.
    pub container_id: Option<String>,
}

impl ProcessInfo {
    /// The best name for the executable: the exe link, else argv[0], else comm.
    pub fn executable(&self) -> String {
        self.exe
            .clone()
            .or_else(|| {
                self.cmdline
                    .as_deref()
                    .and_then(|c| c.split(' ').next())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            })
            .or_else(|| self.comm.clone())
            .unwrap_or_default()
    }
}

/// Reads what can be read about `pid` (each piece independently).
///
/// The order matters for a process that is exiting: its executable link and command line go
/// first (when it releases its memory), `status` only when its parent reaps it. Reading the
/// fleeting ones first keeps more short-lived processes complete.
pub fn read(host: &HostRoot, pid: u32) -> ProcessInfo {
    let base = format!("/proc/{pid}");
    let mut info = ProcessInfo {
        pid,
        ..Default::default()
    };
    if let Ok(raw) = host.read(format!("{base}/cmdline")) {
        info.cmdline = parse_cmdline(&raw);
    }
    info.exe = std::fs::read_link(host.path(format!("{base}/exe")))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    if let Ok(status) = host.read_to_string(format!("{base}/status")) {
        let s = parse_status(&status);
        info.ppid = s.ppid;
        info.uid = s.uid;
        info.comm = s.name;
    }
    if let Ok(cg) = host.read_to_string(format!("{base}/cgroup")) {
        info.container_id = container_id_from_cgroup(&cg);
    }
    info
}

/// Fields of /proc/<pid>/status that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub name: Option<String>,
    pub ppid: Option<u32>,
    pub uid: Option<u32>,
}

pub fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "Name" => s.name = Some(v.to_string()),
            "PPid" => s.ppid = v.parse().ok(),
            "Uid" => s.uid = v.split_whitespace().next().and_then(|u| u.parse().ok()),
            _ => {}
        }
    }
    s
}

/// Turns the NUL-separated argv into one line; `None` for kernel threads (empty cmdline).
pub fn parse_cmdline(raw: &[u8]) -> Option<String> {
    let raw = &raw[..raw.len().min(MAX_CMDLINE_BYTES)];
    let text: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (!text.is_empty()).then(|| text.join(" "))
}

/// Finds a container id (64 hex characters) in /proc/<pid>/cgroup, for cgroup v1 and v2 and the
/// usual runtimes: `/docker/<id>`, `docker-<id>.scope`, `cri-containerd-<id>.scope`,
/// `crio-<id>.scope`, `libpod-<id>.scope`, `/kubepods/…/<id>`, `/system.slice/containerd…/<id>`.
pub fn container_id_from_cgroup(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        // hierarchy-id:controllers:path
        let path = line.splitn(3, ':').nth(2)?;
        path.split('/').rev().find_map(container_id_in_segment)
    })
}

fn container_id_in_segment(segment: &str) -> Option<String> {
    let s = segment.strip_suffix(".scope").unwrap_or(segment);
    let s = s.rsplit(['-', ':']).next().unwrap_or(s);
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1d9c2e4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

    #[test]
    fn container_ids_from_every_runtime_layout() {
        for line in [
            format!("12:pids:/docker/{ID}"),
            format!("0::/system.slice/docker-{ID}.scope"),
            format!("0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-{ID}.scope"),
            format!("0::/machine.slice/libpod-{ID}.scope/container"),
            format!("4:memory:/kubepods/besteffort/pod1234/{ID}"),
            format!("0::/system.slice/crio-{ID}.scope"),
        ] {
            assert_eq!(
                container_id_from_cgroup(&format!("1:name=systemd:/\n{line}\n")).as_deref(),
                Some(ID),
                "{line}"
            );
        }
        for host in [
            "0::/",
            "0::/user.slice/user-1000.slice/session-2.scope",
            "4:memory:/process_api/206918bc0487cf4f4d2791ca9ea4321e",
            "garbage",
            "",
        ] {
            assert_eq!(container_id_from_cgroup(host), None, "{host}");
        }
    }

    #[test]
    fn status_and_cmdline() {
        let s = parse_status("Name:\tbash\nUmask:\t0022\nPPid:\t12\nUid:\t1000\t0\t0\t0\n");
        assert_eq!(
            s,
            Status {
                name: Some("bash".into()),
                ppid: Some(12),
                uid: Some(1000)
            }
        );
        assert_eq!(parse_status("garbage\nPPid: x\n"), Status::default());
        assert_eq!(
            parse_cmdline(b"sh\0-c\0echo hi\0").as_deref(),
            Some("sh -c echo hi")
        );
        assert_eq!(parse_cmdline(b""), None);
        assert_eq!(parse_cmdline(b"\0\0"), None);
        assert_eq!(
            parse_cmdline(&[0xff, b'a', 0]).as_deref(),
            Some("\u{fffd}a")
        );
        let long = vec![b'a'; MAX_CMDLINE_BYTES * 2];
        assert_eq!(parse_cmdline(&long).unwrap().len(), MAX_CMDLINE_BYTES);
    }

    #[test]
    fn reads_this_process() {
        let me = read(&HostRoot::default(), std::process::id());
        assert_eq!(me.ppid, Some(std::os::unix::process::parent_id()));
        assert_eq!(me.uid, Some(unsafe { libc::getuid() }));
        assert!(me.exe.is_some());
        assert!(me.cmdline.is_some());
        let gone = read(&HostRoot::default(), u32::MAX - 1);
        assert_eq!(gone.exe, None);
        assert_eq!(gone.executable(), "");
    }
}
