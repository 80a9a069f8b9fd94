//! Bounded filesystem walks: world-writable directories without the sticky bit, unexpected
//! setuid/setgid programs.

use super::{
    Outcome, SUID_MAX_DEPTH, SUID_MAX_ENTRIES, UNEXPECTED_SGID, UNEXPECTED_SUID, WALK_MAX_DEPTH,
    WALK_MAX_DIRS, WALK_MAX_ENTRIES, WORLD_WRITABLE_STICKY, listing, record,
};
use crate::event::BaselineCheck;
use crate::host::{FileKind, HostRoot};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a walk saw, and whether it stopped early.
#[derive(Debug, Default)]
pub(super) struct Walk {
    pub(super) found: Vec<String>,
    dirs: usize,
    pub(super) entries: usize,
    truncated: bool,
    unreadable: usize,
}

/// Walks host directories without following symlinks, calling `visit` with each entry's host
/// path, `lstat` and whether it is a directory (files only when `files`). Stops at the limits.
#[allow(clippy::too_many_arguments)]
pub(super) fn walk(
    host: &HostRoot,
    roots: &[&str],
    skip: &[&str],
    files: bool,
    max_depth: usize,
    max_dirs: usize,
    max_entries: usize,
    visit: &mut dyn FnMut(&Path, &Metadata) -> bool,
) -> Walk {
    let mut w = Walk::default();
    let mut stack: Vec<(PathBuf, usize)> = Vec::new();
    for root in roots.iter().rev() {
        // A root that is itself a symlink (`/bin -> usr/bin`) is covered by its target.
        if let Ok(m) = host.symlink_metadata(root)
            && m.is_dir()
        {
            if visit(Path::new(root), &m) {
                w.found.push((*root).to_string());
            }
            stack.push((PathBuf::from(root), 0));
        }
    }
    'outer: while let Some((dir, depth)) = stack.pop() {
        w.dirs += 1;
        if w.dirs > max_dirs {
            w.truncated = true;
            break;
        }
        // Opened inside the host root; its entries are looked at relative to it.
        let Ok(mut rd) = host.read_dir(&dir) else {
            w.unreadable += 1;
            continue;
        };
        while let Some(entry) = rd.next() {
            w.entries += 1;
            if w.entries > max_entries {
                w.truncated = true;
                break 'outer;
            }
            let Ok(entry) = entry else {
                w.unreadable += 1;
                break;
            };
            let meta = if entry.kind == FileKind::Unknown {
                match rd.symlink_metadata(&entry.name) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        w.unreadable += 1;
                        continue;
                    }
                }
            } else {
                None
            };
            let kind = meta.as_ref().map_or(entry.kind, FileKind::of);
            if !(kind == FileKind::Dir || (files && kind == FileKind::File)) {
                continue;
            }
            let child = dir.join(&entry.name);
            // Skipped trees, and roots nested in other roots (`/var/tmp` in `/var`), walked once.
            if skip.iter().chain(roots).any(|s| child == Path::new(s)) {
                continue;
            }
            let meta = match meta {
                Some(m) => m,
                None => match rd.symlink_metadata(&entry.name) {
                    Ok(m) => m,
                    Err(_) => {
                        w.unreadable += 1;
                        continue;
                    }
                },
            };
            if visit(&child, &meta) {
                w.found.push(child.display().to_string());
            }
            if meta.is_dir() && depth + 1 < max_depth {
                stack.push((child, depth + 1));
            }
        }
    }
    w.found.sort();
    w
}

/// Directories where world-writable directories matter; `/proc`, `/sys`, `/host` and container
/// storage are never entered (container layers are not the host's configuration).
const WRITABLE_ROOTS: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/etc", "/usr", "/var"];
const WRITABLE_SKIP: &[&str] = &[
    "/proc",
    "/sys",
    "/host",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/containers",
];

const SUID_ROOTS: &[&str] = &[
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// Setuid programs common distributions ship; anything else is listed.
const SUID_ALLOWED: &[&str] = &[
    "su",
    "sudo",
    "sudoedit",
    "passwd",
    "mount",
    "umount",
    "ping",
    "ping6",
    "chsh",
    "chfn",
    "newgrp",
    "gpasswd",
    "pkexec",
    "fusermount",
    "fusermount3",
    "newuidmap",
    "newgidmap",
    "ntfs-3g",
    "mount.nfs",
    "mount.cifs",
    "mount.ecryptfs_private",
    "unix_chkpwd",
    "pam_timestamp_check",
    "userhelper",
    "at",
    "crontab",
    "staprun",
    "Xorg.wrap",
    "traceroute6.iputils",
    "ssh-keysign",
];

/// Setgid programs common distributions ship.
const SGID_ALLOWED: &[&str] = &[
    "chage",
    "expiry",
    "crontab",
    "at",
    "ssh-agent",
    "wall",
    "write",
    "bsd-write",
    "dotlockfile",
    "dotlock.mailutils",
    "unix_chkpwd",
    "mlocate",
    "plocate",
    "locate",
    "screen",
    "netreport",
    "usernetctl",
    "lockdev",
    "mail-lock",
    "mail-unlock",
    "mail-touchlock",
    "Xorg.wrap",
];

/// What the walk covered. No counts unless it stopped early: `/tmp` and `/var` change by the
/// minute, and a count in `Actual` would make every OSBaseline snapshot differ from the last,
/// so none could be held back as unchanged (`collectors::SnapshotDedup`).
fn walk_note(w: &Walk) -> String {
    let mut note = format!("walked {}", WRITABLE_ROOTS.join(", "));
    if w.truncated {
        note.push_str(&format!(
            "; walk limit reached after {} directories, the rest was not examined",
            w.dirs.min(WALK_MAX_DIRS)
        ));
    }
    note
}

/// How long the world-writable walk's result is reused. The walk reads every directory under
/// `/usr`, `/var`, `/etc` and the temporary directories (18,000 on a developer's machine, 0.3 s
/// of CPU, mostly in the kernel): at the default `snapshotFrequency` (13 h) it runs every round,
/// but a snapshot timer of seconds (what a user sets while testing a deployment) would repeat it
/// every few seconds, half again as much CPU as an exec storm of 1,000 a second costs.
pub(super) const WALK_REFRESH: Duration = Duration::from_secs(3600);

/// The last walks' records, each reused for [`WALK_REFRESH`]: the world-writable walk's, and
/// the set-id walk's two (it `lstat`s every program in six directories: 9 % of an idle agent's
/// CPU at a PT8S snapshot timer; a set-id bit gained under `/usr/bin` or `/usr/sbin` is reported
/// at once by the file integrity collector anyway, `SetuidGained`).
#[derive(Debug, Default)]
pub(super) struct WalkCache {
    last: Option<(Instant, BaselineCheck)>,
    setid: Option<(Instant, Vec<BaselineCheck>)>,
}

/// The cached walk's time and record (tests move the time back).
#[cfg(test)]
pub(super) fn cache_last(cache: &mut WalkCache) -> Option<(&mut Instant, &mut BaselineCheck)> {
    cache.last.as_mut().map(|(at, r)| (at, r))
}

/// The cached set-id walk's time (tests move it back).
#[cfg(test)]
pub(super) fn cache_setid_at(cache: &mut WalkCache) -> Option<&mut Instant> {
    cache.setid.as_mut().map(|(at, _)| at)
}

pub(super) fn walk_checks(
    host: &HostRoot,
    mut cache: Option<&mut WalkCache>,
    out: &mut Vec<BaselineCheck>,
) {
    let fresh = cache.as_ref().and_then(|c| {
        c.last
            .as_ref()
            .filter(|(at, _)| at.elapsed() < WALK_REFRESH)
            .map(|(_, r)| r.clone())
    });
    let writable = match fresh {
        Some(record) => record,
        None => {
            let record = world_writable_check(host);
            if let Some(cache) = cache.as_deref_mut() {
                cache.last = Some((Instant::now(), record.clone()));
            }
            record
        }
    };
    out.push(writable);
    match cache {
        Some(WalkCache {
            setid: Some((at, records)),
            ..
        }) if at.elapsed() < WALK_REFRESH => out.extend(records.iter().cloned()),
        Some(cache) => {
            let mut records = Vec::new();
            setid_checks(host, &mut records);
            out.extend(records.iter().cloned());
            cache.setid = Some((Instant::now(), records));
        }
        None => setid_checks(host, out),
    }
}

fn world_writable_check(host: &HostRoot) -> BaselineCheck {
    let w = walk(
        host,
        WRITABLE_ROOTS,
        WRITABLE_SKIP,
        false,
        WALK_MAX_DEPTH,
        WALK_MAX_DIRS,
        WALK_MAX_ENTRIES,
        &mut |_, m| m.is_dir() && m.mode() & 0o002 != 0 && m.mode() & 0o1000 == 0,
    );
    record(
        &WORLD_WRITABLE_STICKY,
        if w.found.is_empty() {
            Outcome::Pass(walk_note(&w))
        } else {
            Outcome::Fail(format!("{} ({})", listing(&w.found), walk_note(&w)))
        },
    )
}

fn setid_checks(host: &HostRoot, out: &mut Vec<BaselineCheck>) {
    let mut suid = Vec::new();
    let mut sgid = Vec::new();
    let w = walk(
        host,
        SUID_ROOTS,
        &[],
        true,
        SUID_MAX_DEPTH,
        usize::MAX,
        SUID_MAX_ENTRIES,
        &mut |path, m| {
            if !m.is_file() {
                return false;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if m.mode() & 0o4000 != 0 && !SUID_ALLOWED.contains(&name.as_str()) {
                suid.push(path.display().to_string());
            }
            if m.mode() & 0o2000 != 0 && !SGID_ALLOWED.contains(&name.as_str()) {
                sgid.push(path.display().to_string());
            }
            false
        },
    );
    for (meta, found) in [(&UNEXPECTED_SUID, suid), (&UNEXPECTED_SGID, sgid)] {
        let mut note = format!("{} entries examined", w.entries);
        if w.truncated {
            note.push_str("; walk limit reached");
        }
        out.push(record(
            meta,
            if found.is_empty() {
                Outcome::Pass(note)
            } else {
                Outcome::Fail(format!("{} ({note})", listing(&found)))
            },
        ));
    }
}
