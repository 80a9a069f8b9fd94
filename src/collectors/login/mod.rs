//! `Login`: successful and failed logins, from the login accounting files and the auth log.
//!
//! Sources (all optional; whatever exists is followed):
//!
//! - `/var/log/wtmp`: binary `struct utmp` records; `USER_PROCESS` is a successful login
//!   (terminal logins, sshd sessions, display managers). Logouts (`DEAD_PROCESS`) and boot or run
//!   level records are skipped: they are not logins, and reporting logouts would double the
//!   High-priority traffic for no detection value.
//! - `/var/log/btmp`: the same records, each one a failed login (sshd, login(1)).
//! - `/var/log/auth.log` (Debian family) or `/var/log/secure` (RHEL family): sshd, sudo and su
//!   lines, which say what wtmp cannot: the authentication method, the remote port, sudo and su
//!   use and their failures.
//!
//! Files are followed as they grow and rotate, and the position in each (inode, offset and a
//! fingerprint of the file's first bytes) is saved in the state directory, so a restart neither
//! repeats nor skips lines. On the very first start (no saved state) reading starts at the end
//! of the files that exist: replaying months of history as fresh High-priority events would
//! flood the hub with stale alerts. [`LoginOptions::first_start`] changes that.
//!
//! - The systemd journal's files (`/var/log/journal`, `/run/log/journal`), read natively when
//!   neither auth.log nor secure exists (journal-only systems: Debian 12's default, many Yocto
//!   images): the same sshd, sudo, su and login messages, from the entries' MESSAGE fields. See
//!   `journal.rs` (the file format) and `journal_follow.rs` (files, positions, rotation).
//!
//! Not covered: systems that replaced wtmp with wtmpdb's SQLite database (Debian 13).
//!
//! The collector runs as one task, [`run`]; every file read happens on a blocking thread.

mod attempts;
mod authlog;
mod follow;
mod journal;
mod journal_follow;
mod sshd;
mod task;
#[cfg(test)]
mod tests;
mod utmp;

pub use attempts::*;
pub use authlog::*;
pub use follow::*;
pub use journal::*;
pub use journal_follow::*;
pub use task::*;
pub use utmp::*;

use std::path::PathBuf;
use std::time::Duration;

/// The collector's name (metric label, `CollectorStatus.Collector`).
pub const COLLECTOR: &str = "login";

const WTMP: &str = "/var/log/wtmp";
const BTMP: &str = "/var/log/btmp";
const AUTH_LOG: &str = "/var/log/auth.log";
const SECURE: &str = "/var/log/secure";

/// The saved positions, in the state directory.
const STATE_FILE: &str = "login-positions.json";

/// Bytes read from one file per poll: a large backlog is read in steps, without a poll pause.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Longest auth-log line kept (rsyslog's default maximum message is 8 KiB).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// How much of a file's start identifies it across restarts (an inode number can be reused).
const HEAD_BYTES: u64 = 1024;
/// Polls without new data before a rotated file is let go: the writer may still append to the
/// renamed file until it reopens its log (rsyslog does after logrotate's HUP).
const ROTATED_QUIET_POLLS: u32 = 5;
/// wtmp records whose process is consulted in /proc for the executable must be this recent, so
/// that a reused pid cannot name the wrong program.
const PROC_LOOKUP_MAX_AGE_SECS: i64 = 60;

/// What to do with files that exist when the collector starts for the first time ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Report everything already in the files.
    Beginning,
    /// Report only what is written from now on.
    End,
}

/// Tunables of [`run_with`]; [`run`] uses the defaults.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// How often the files are checked for new data.
    pub poll: Duration,
    /// Where to start in files that exist on the first start ever (no saved state).
    pub first_start: StartAt,
}

impl Default for LoginOptions {
    fn default() -> Self {
        LoginOptions {
            poll: Duration::from_secs(1),
            first_start: StartAt::End,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {path}")]
    StateWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding the login collector state")]
    StateEncode(#[source] serde_json::Error),
    #[error("utmp record is {len} bytes, shorter than the {size}-byte layout")]
    ShortRecord { len: usize, size: usize },
    #[error("utmp record has type {0}, which glibc does not define")]
    BadType(i16),
}
