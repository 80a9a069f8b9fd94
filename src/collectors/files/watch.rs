//! What is watched: the configured (or default) host paths, each a [`Target`].

use crate::host::HostRoot;
use crate::host::accounts::parse_passwd;
use std::path::{Path, PathBuf};

/// Watched when `fileIntegrityPaths` is not set (with every home's files, [`HOME_FILES`]):
/// where persistence and privilege escalation leave their marks on a Linux device: accounts,
/// sudo, sshd, cron, systemd units, shell start-up files, the loader's preload list, PAM, the
/// system binaries and the IoT Edge identity service's configuration.
pub const DEFAULT_PATHS: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh/sshd_config",
    "/etc/hosts",
    "/etc/crontab",
    "/etc/cron.d",
    "/etc/cron.daily",
    "/etc/cron.hourly",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/var/spool/cron/**",
    "/etc/systemd/system/**",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/etc/rc.local",
    "/etc/profile",
    "/etc/profile.d",
    "/etc/bash.bashrc",
    "/etc/ld.so.preload",
    "/etc/pam.d",
    "/usr/bin",
    "/usr/sbin",
    "/etc/aziot",
];

/// In every home directory of the host's /etc/passwd (root's too).
pub const HOME_FILES: &[&str] = &[".ssh", ".bashrc", ".profile", ".bash_profile", ".zshrc"];

/// At most this many homes are watched (a device with thousands of accounts gets the first
/// ones in passwd order; the rest are counted as unwatched).
pub const MAX_HOMES: usize = 256;

/// Directories whose files are not hashed at start (they are large: hashing every binary
/// would take minutes of CPU on a small device): their entries are recorded by metadata, and a
/// file is hashed when it changes.
const LAZY: &[&str] = &["/usr/bin", "/usr/sbin", "/bin", "/sbin"];

/// One watched host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host path, absolute (`/etc/cron.d`).
    pub path: PathBuf,
    /// A directory's subdirectories are watched too (configured with a trailing `/**`).
    pub recursive: bool,
    /// Not hashed at start ([`LAZY`]).
    pub lazy: bool,
}

impl Target {
    /// A target from its configured form (`/var/spool/cron/**`).
    pub fn parse(spec: &str) -> Target {
        let (path, recursive) = match spec.strip_suffix("/**") {
            Some(p) => (p, true),
            None => (spec, false),
        };
        let path = if path.is_empty() { "/" } else { path };
        Target {
            path: PathBuf::from(path),
            recursive,
            lazy: LAZY.contains(&path),
        }
    }

    /// Whether `path` is this target or under it.
    pub fn covers(&self, path: &Path) -> bool {
        path.starts_with(&self.path)
    }
}

/// What to watch: the configured paths, or the defaults and every home's files (homes from
/// the host's /etc/passwd, at most [`MAX_HOMES`]; homes that do not exist are skipped, and
/// the accounts' `/`, `/nonexistent` and the like with them). Returns the targets and how many
/// homes were left out over the cap.
pub fn targets(configured: Option<&[String]>, host: &HostRoot) -> (Vec<Target>, usize) {
    let mut out: Vec<Target> = Vec::new();
    let mut push = |t: Target| {
        if !out.iter().any(|o| o.path == t.path) {
            out.push(t);
        }
    };
    if let Some(paths) = configured {
        for p in paths {
            push(Target::parse(p));
        }
        return (out, 0);
    }
    for p in DEFAULT_PATHS {
        push(Target::parse(p));
    }
    let mut homes: Vec<String> = vec!["/root".into()];
    if let Ok(text) = host.read_to_string("/etc/passwd") {
        for u in parse_passwd(&text).entries {
            let h = u.home.trim_end_matches('/').to_string();
            if h.is_empty() || !h.starts_with('/') || homes.contains(&h) {
                continue;
            }
            if h.split('/').any(|c| c == "." || c == "..") {
                continue;
            }
            homes.push(h);
        }
    }
    let mut over = 0;
    let mut kept = 0;
    for home in homes {
        // Only real directories: `/`, `/bin` or `/usr/sbin` as a service account's home would
        // put its start-up files' names on a system directory's watch for nothing.
        if matches!(
            home.as_str(),
            "/" | "/bin" | "/sbin" | "/usr/bin" | "/usr/sbin" | "/dev"
        ) || !host.metadata(&home).is_ok_and(|m| m.is_dir())
        {
            continue;
        }
        if kept >= MAX_HOMES {
            over += 1;
            continue;
        }
        kept += 1;
        for f in HOME_FILES {
            let p = if home == "/" {
                format!("/{f}")
            } else {
                format!("{home}/{f}")
            };
            push(Target::parse(&p));
        }
    }
    (out, over)
}
