//! `LocalUsers` snapshots and `UserChange` events: the host's accounts and what changes in them.
//!
//! Two parts over the same data (the host's passwd, group and, when readable, shadow files,
//! parsed by [`super::accounts`]):
//!
//! - [`LocalUsersCollector`] (periodic, `snapshotFrequency`): one `LocalUser` record per user
//!   with the primary and supplementary groups and the password state.
//! - [`watch`] (its own task): when one of the files changed, compares the accounts with the
//!   last ones seen and emits a `UserChange` per added, removed or changed user or group. It
//!   wakes on inotify events of the host's `/etc` (a change is reported within milliseconds),
//!   and also every [`WATCH_INTERVAL`] in case a notification was missed or inotify is
//!   unavailable (then it is the only trigger, as before). A new uid 0 account is flagged `NewUid0`. The last accounts seen are kept in
//!   the state directory, so a change made while the agent was stopped is reported at the next
//!   start; on the very first start there is nothing to compare with, so nothing is reported.

use super::{Context, Periodic};
use crate::event::{
    AccountOperation, CollectorHealth, Event, ExtraDetails, LocalUser, Payload, UserChange,
};
use crate::host::HostRoot;
use crate::host::accounts::{self, PasswordState};
use crate::text::error_causes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The collector's name (metric label, `CollectorStatus.Collector`).
pub const COLLECTOR: &str = "users";

const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";
const SHADOW: &str = "/etc/shadow";

/// The last accounts seen, in the state directory.
const STATE_FILE: &str = "accounts.json";

/// How often [`watch`] checks the files for changes without a notification (a stat of three
/// files).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Wakes the watcher when something in the host's `/etc` is written, created, renamed or
/// removed (tools replace passwd by rename; hand edits write in place). `None` when inotify
/// cannot be used: the interval alone then drives the watcher.
struct EtcNotifier {
    fd: tokio::io::unix::AsyncFd<crate::kernel::inotify::Inotify>,
    buf: Vec<u8>,
}

impl EtcNotifier {
    /// Sets the watch up (file system calls: from a blocking thread).
    fn watch(host: &HostRoot) -> std::io::Result<crate::kernel::inotify::Inotify> {
        use crate::kernel::inotify::{
            IN_ATTRIB, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_MOVED_TO, IN_ONLYDIR, Inotify,
        };
        let inotify = Inotify::new()?;
        let etc = host.open_dir_path("/etc").map_err(std::io::Error::other)?;
        inotify.add_watch(
            std::os::fd::AsFd::as_fd(&etc),
            IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB | IN_ONLYDIR,
        )?;
        Ok(inotify)
    }

    /// Sets the watch up and registers it with the runtime (from the watcher's task).
    async fn open(host: &HostRoot) -> Option<EtcNotifier> {
        let host = host.clone();
        let watched = tokio::task::spawn_blocking(move || EtcNotifier::watch(&host))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let result = watched.and_then(|inotify| {
            // SAFETY: the descriptor is the Inotify's own, open until the AsyncFd (which owns
            // the Inotify) is dropped, and `as_raw_fd` always returns that one descriptor.
            unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    inotify,
                    tokio::io::Interest::READABLE,
                )
            }
            .map_err(|e| std::io::Error::other(e.to_string()))
        });
        let result = result.map(|fd| EtcNotifier {
            fd,
            buf: Vec::with_capacity(4096),
        });
        match result {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::info!(collector = COLLECTOR, error = %e, "no inotify on /etc; checking the account files every few seconds");
                None
            }
        }
    }

    /// Waits for a change of one of the account files (other names in /etc are drained and
    /// ignored).
    async fn changed(&mut self) {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                return std::future::pending().await;
            };
            let mut hit = false;
            loop {
                match self.fd.get_ref().read(&mut self.buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        hit |= crate::kernel::inotify::parse(&self.buf[..n])
                            .iter()
                            .any(|e| {
                                let name = e.name.as_encoded_bytes();
                                e.mask & crate::kernel::inotify::IN_Q_OVERFLOW != 0
                                    || [PASSWD, GROUP, SHADOW].iter().any(|p| {
                                        p.strip_prefix("/etc/").map(str::as_bytes) == Some(name)
                                    })
                            });
                    }
                    Err(_) => break,
                }
            }
            ready.clear_ready();
            if hit {
                return;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the host's user database")]
    Passwd(#[source] crate::host::Error),
    #[error("the host's user database changed while it was read")]
    Unstable,
    #[error("writing {path}")]
    StateWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding the account state")]
    StateEncode(#[source] serde_json::Error),
}

/// What the password field says, as kept between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Password {
    /// A usable password hash.
    Set,
    /// `!` or `*` prefixed: no password login.
    Locked,
    /// No password at all: anyone can log in.
    Empty,
}

impl Password {
    fn as_str(self) -> &'static str {
        match self {
            Password::Set => "set",
            Password::Locked => "locked",
            Password::Empty => "empty",
        }
    }
}

impl From<PasswordState> for Password {
    fn from(s: PasswordState) -> Password {
        match s {
            PasswordState::Set => Password::Set,
            PasswordState::Locked => Password::Locked,
            PasswordState::Empty => Password::Empty,
        }
    }
}

/// One user as compared between looks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
    /// `None` when unknown (the hash is in shadow and shadow is unreadable).
    pub password: Option<Password>,
}

/// One group as compared between looks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEntry {
    pub gid: u32,
    /// Sorted, without duplicates.
    pub members: Vec<String>,
}

/// The host's accounts, keyed by name (the first entry of a name wins, as with getpwnam).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounts {
    pub users: BTreeMap<String, UserEntry>,
    pub groups: BTreeMap<String, GroupEntry>,
    /// False when the group file could not be read: `groups` is then not the host's.
    pub groups_readable: bool,
    pub shadow_readable: bool,
    /// Lines skipped as malformed and duplicate names ignored, over the three files.
    #[serde(skip)]
    pub skipped: usize,
}

/// Builds [`Accounts`] from the three files' text (`group` and `shadow` when readable).
pub fn parse_accounts(passwd: &str, group: Option<&str>, shadow: Option<&str>) -> Accounts {
    let mut acc = Accounts {
        groups_readable: group.is_some(),
        shadow_readable: shadow.is_some(),
        ..Accounts::default()
    };
    let mut shadow_states = BTreeMap::new();
    if let Some(text) = shadow {
        let parsed = accounts::parse_shadow(text);
        acc.skipped += parsed.malformed;
        for s in parsed.entries {
            shadow_states.entry(s.name).or_insert(s.password);
        }
    }
    let parsed = accounts::parse_passwd(passwd);
    acc.skipped += parsed.malformed;
    for u in parsed.entries {
        if acc.users.contains_key(&u.name) {
            acc.skipped += 1;
            continue;
        }
        let password = match shadow_states.get(&u.name) {
            Some(s) => Some(Password::from(*s)),
            None => password_from_passwd(&u.passwd_field),
        };
        acc.users.insert(
            u.name,
            UserEntry {
                uid: u.uid,
                gid: u.gid,
                gecos: u.gecos,
                home: u.home,
                shell: u.shell,
                password,
            },
        );
    }
    if let Some(text) = group {
        let parsed = accounts::parse_group(text);
        acc.skipped += parsed.malformed;
        for g in parsed.entries {
            if acc.groups.contains_key(&g.name) {
                acc.skipped += 1;
                continue;
            }
            let mut members = g.members;
            members.sort();
            members.dedup();
            acc.groups.insert(
                g.name,
                GroupEntry {
                    gid: g.gid,
                    members,
                },
            );
        }
    }
    acc
}

/// The passwd password field, when it holds the password itself rather than `x` (in shadow).
fn password_from_passwd(field: &str) -> Option<Password> {
    match field {
        "x" => None,
        "" => Some(Password::Empty),
        f if f.starts_with('!') || f.starts_with('*') => Some(Password::Locked),
        _ => Some(Password::Set),
    }
}

/// Reads the host's accounts. The passwd file is required; group and shadow are optional.
pub fn read_accounts(host: &HostRoot) -> Result<Accounts, Error> {
    let passwd = host.read_to_string(PASSWD).map_err(Error::Passwd)?;
    let optional = |path: &str| match host.read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) => {
            if !e.is_not_found() {
                tracing::debug!(collector = COLLECTOR, error = %e, "optional account file unreadable");
            }
            None
        }
    };
    let group = optional(GROUP);
    let shadow = optional(SHADOW);
    Ok(parse_accounts(&passwd, group.as_deref(), shadow.as_deref()))
}

/// One `LocalUser` record per user: primary group first, then supplementary groups (by gid).
/// A gid with no group entry is named by its number, as `id` does.
pub fn local_users(acc: &Accounts) -> Vec<LocalUser> {
    let mut by_gid: Vec<(&String, &GroupEntry)> = acc.groups.iter().collect();
    by_gid.sort_by_key(|(name, g)| (g.gid, *name));
    let group_name = |gid: u32| {
        by_gid
            .iter()
            .find(|(_, g)| g.gid == gid)
            .map(|(n, _)| (*n).clone())
            .unwrap_or_else(|| gid.to_string())
    };
    acc.users
        .iter()
        .map(|(name, u)| {
            let mut gids = vec![u.gid];
            for (_, g) in &by_gid {
                if !gids.contains(&g.gid) && g.members.iter().any(|m| m == name) {
                    gids.push(g.gid);
                }
            }
            let names: Vec<String> = gids.iter().map(|g| group_name(*g)).collect();
            let ids: Vec<String> = gids.iter().map(u32::to_string).collect();
            let mut extra = ExtraDetails::new();
            if let Some(p) = u.password {
                extra.insert("HasPassword".into(), (p == Password::Set).to_string());
                extra.insert("Locked".into(), (p == Password::Locked).to_string());
                extra.insert("EmptyPassword".into(), (p == Password::Empty).to_string());
            }
            if !acc.shadow_readable {
                extra.insert("ShadowReadable".into(), "false".into());
            }
            extra.insert("Shell".into(), u.shell.clone());
            extra.insert("Home".into(), u.home.clone());
            LocalUser {
                user_name: name.clone(),
                user_id: u.uid.to_string(),
                group_names: names.join(";"),
                group_ids: ids.join(";"),
                extra_details: extra,
            }
        })
        .collect()
}

/// The periodic `LocalUsers` snapshot.
pub struct LocalUsersCollector;

impl Periodic for LocalUsersCollector {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn collect(&mut self, host: &HostRoot) -> Vec<Event> {
        match read_accounts(host) {
            Ok(acc) => {
                if acc.skipped > 0 {
                    tracing::debug!(
                        collector = COLLECTOR,
                        skipped = acc.skipped,
                        "account lines skipped"
                    );
                }
                vec![Event::new(Payload::LocalUsers(local_users(&acc)))]
            }
            Err(e) => {
                // No event: an empty snapshot would claim the host has no users.
                tracing::warn!(collector = COLLECTOR, error = %e, cause = %error_causes(&e), "no LocalUsers snapshot");
                Vec::new()
            }
        }
    }
}

fn change(
    operation: AccountOperation,
    name: &str,
    id: u32,
    details: Option<String>,
    extra: ExtraDetails,
) -> UserChange {
    UserChange {
        operation,
        name: name.to_string(),
        id: id.to_string(),
        details,
        extra_details: extra,
    }
}

fn differences(parts: &mut Vec<String>, what: &str, old: &str, new: &str) {
    if old != new {
        parts.push(format!("{what} {old} -> {new}"));
    }
}

/// The changes from `old` to `new`. Groups are compared only when both group files were read,
/// password states only when both are known, so an unreadable file is not reported as every
/// account changing.
pub fn diff(old: &Accounts, new: &Accounts) -> Vec<UserChange> {
    let mut out = Vec::new();
    for (name, u) in &new.users {
        let mut extra = ExtraDetails::new();
        match old.users.get(name) {
            None => {
                extra.insert("Gid".into(), u.gid.to_string());
                extra.insert("Home".into(), u.home.clone());
                extra.insert("Shell".into(), u.shell.clone());
                if u.uid == 0 {
                    extra.insert("NewUid0".into(), "true".into());
                }
                out.push(change(
                    AccountOperation::UserAdded,
                    name,
                    u.uid,
                    None,
                    extra,
                ));
            }
            Some(o) => {
                let mut parts = Vec::new();
                differences(&mut parts, "uid", &o.uid.to_string(), &u.uid.to_string());
                differences(&mut parts, "gid", &o.gid.to_string(), &u.gid.to_string());
                differences(&mut parts, "home", &o.home, &u.home);
                differences(&mut parts, "shell", &o.shell, &u.shell);
                differences(&mut parts, "gecos", &o.gecos, &u.gecos);
                if let (Some(op), Some(np)) = (o.password, u.password) {
                    differences(&mut parts, "password", op.as_str(), np.as_str());
                }
                if parts.is_empty() {
                    continue;
                }
                if u.uid == 0 && o.uid != 0 {
                    extra.insert("NewUid0".into(), "true".into());
                }
                let details = Some(parts.join("; "));
                out.push(change(
                    AccountOperation::UserChanged,
                    name,
                    u.uid,
                    details,
                    extra,
                ));
            }
        }
    }
    for (name, o) in &old.users {
        if !new.users.contains_key(name) {
            out.push(change(
                AccountOperation::UserRemoved,
                name,
                o.uid,
                None,
                ExtraDetails::new(),
            ));
        }
    }
    if !(old.groups_readable && new.groups_readable) {
        return out;
    }
    for (name, g) in &new.groups {
        match old.groups.get(name) {
            None => {
                let mut extra = ExtraDetails::new();
                if !g.members.is_empty() {
                    extra.insert("Members".into(), g.members.join(","));
                }
                out.push(change(
                    AccountOperation::GroupAdded,
                    name,
                    g.gid,
                    None,
                    extra,
                ));
            }
            Some(o) => {
                let mut parts = Vec::new();
                differences(&mut parts, "gid", &o.gid.to_string(), &g.gid.to_string());
                let mut members: Vec<String> = g
                    .members
                    .iter()
                    .filter(|m| !o.members.contains(m))
                    .map(|m| format!("+{m}"))
                    .collect();
                members.extend(
                    o.members
                        .iter()
                        .filter(|m| !g.members.contains(m))
                        .map(|m| format!("-{m}")),
                );
                if !members.is_empty() {
                    parts.push(format!("members {}", members.join(" ")));
                }
                if parts.is_empty() {
                    continue;
                }
                let mut extra = ExtraDetails::new();
                extra.insert("Members".into(), g.members.join(","));
                let details = Some(parts.join("; "));
                out.push(change(
                    AccountOperation::GroupChanged,
                    name,
                    g.gid,
                    details,
                    extra,
                ));
            }
        }
    }
    for (name, o) in &old.groups {
        if !new.groups.contains_key(name) {
            out.push(change(
                AccountOperation::GroupRemoved,
                name,
                o.gid,
                None,
                ExtraDetails::new(),
            ));
        }
    }
    out
}

/// What to remember after a look: `new`, with the parts it could not see (an unreadable group
/// file, unknown password states) taken from `old`, so they are compared once readable again.
pub fn carry_over(mut new: Accounts, old: Option<&Accounts>) -> Accounts {
    let Some(old) = old else {
        return new;
    };
    if !new.groups_readable && old.groups_readable {
        new.groups = old.groups.clone();
        new.groups_readable = true;
    }
    for (name, u) in &mut new.users {
        if u.password.is_none() {
            u.password = old.users.get(name).and_then(|o| o.password);
        }
    }
    new
}

/// Identity of the three files (inode, size, modification time), to notice changes cheaply.
type Stamp = [Option<(u64, u64, i64, i64)>; 3];

fn stamp(host: &HostRoot) -> Stamp {
    [PASSWD, GROUP, SHADOW].map(|p| {
        host.metadata(p)
            .ok()
            .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
    })
}

/// Reads the accounts when the files are not being rewritten: the stamp is the same before
/// and after the read (tools replace these files by rename, but hand edits write in place).
fn read_stable(host: &HostRoot) -> Result<(Accounts, Stamp), Error> {
    let before = stamp(host);
    let acc = read_accounts(host)?;
    if stamp(host) != before {
        return Err(Error::Unstable);
    }
    Ok((acc, before))
}

fn load_state(path: &Path) -> Option<Accounts> {
    crate::state::read_json_or_warn(
        path,
        COLLECTOR,
        "cannot read the saved accounts; changes made while stopped are not reported",
        "saved accounts are corrupt; changes made while stopped are not reported",
    )
}

/// Saves the accounts ([`crate::state::write_atomic`]).
fn save_state(path: &Path, acc: &Accounts) -> Result<(), Error> {
    let bytes = serde_json::to_vec(acc).map_err(Error::StateEncode)?;
    crate::state::write_atomic(path, &bytes).map_err(|source| Error::StateWrite {
        path: path.to_path_buf(),
        source,
    })
}

/// The account watcher: what one look found.
struct Look {
    changes: Vec<UserChange>,
    /// What to remember and save (after the changes are sent).
    remember: Accounts,
    stamp: Stamp,
}

/// Compares the host's accounts with `last` (None on the first start ever: nothing to report).
fn look(host: &HostRoot, last: Option<&Accounts>) -> Result<Look, Error> {
    let (acc, stamp) = read_stable(host)?;
    let changes = last.map(|old| diff(old, &acc)).unwrap_or_default();
    Ok(Look {
        changes,
        remember: carry_over(acc, last),
        stamp,
    })
}

/// The account watcher as the registry lists it: [`watch`] as a task (`UserChange` events;
/// the `LocalUsers` snapshot is [`LocalUsersCollector`]).
pub struct AccountWatcher;

impl super::Triggered for AccountWatcher {
    fn name(&self) -> &'static str {
        COLLECTOR
    }

    fn start(self: Box<Self>, ctx: Context) -> std::io::Result<super::Running> {
        Ok(super::Running::task(watch(ctx)))
    }
}

/// The `UserChange` task, with the default interval: until `ctx.cancel`, emits one
/// `UserChange` event per account change. Reports Degraded while the passwd file cannot be
/// read, and Up when it can again.
pub async fn watch(ctx: Context) {
    watch_every(ctx, WATCH_INTERVAL).await
}

/// [`watch`] with an explicit interval (tests use a short one).
pub async fn watch_every(ctx: Context, interval: Duration) {
    let state_path = ctx.state_dir.join(STATE_FILE);
    let path = state_path.clone();
    let mut last = tokio::task::spawn_blocking(move || load_state(&path))
        .await
        .unwrap_or_default();
    let mut last_stamp: Option<Stamp> = None;
    let mut degraded = false;
    let mut notifier = EtcNotifier::open(&ctx.host).await;
    loop {
        let host = ctx.host.clone();
        let seen = last_stamp;
        let prev = last.clone();
        // Stat always; read and compare only when a file changed.
        let result = tokio::task::spawn_blocking(move || {
            if seen.is_some() && seen == Some(stamp(&host)) {
                return Ok(None);
            }
            look(&host, prev.as_ref()).map(Some)
        })
        .await;
        match result {
            Ok(Ok(Some(found))) => {
                if degraded {
                    degraded = false;
                    ctx.report_status(
                        COLLECTOR,
                        CollectorHealth::Up,
                        "reading the host's accounts again",
                        None,
                    );
                }
                for c in found.changes {
                    let event = Event::new(Payload::UserChange(vec![c]));
                    tokio::select! {
                        sent = ctx.emit(COLLECTOR, event) => if !sent { return },
                        // Not saved: the change is reported again at the next start.
                        _ = ctx.cancel.cancelled() => return,
                    }
                }
                if last.as_ref() != Some(&found.remember) {
                    let path = state_path.clone();
                    let acc = found.remember.clone();
                    let saved = tokio::task::spawn_blocking(move || save_state(&path, &acc)).await;
                    if let Ok(Err(e)) = saved {
                        ctx.metrics.error(COLLECTOR, "state_write");
                        tracing::warn!(collector = COLLECTOR, error = %e, cause = %error_causes(&e), "cannot save the accounts; a restart may miss or repeat changes");
                    }
                }
                last = Some(found.remember);
                last_stamp = Some(found.stamp);
            }
            Ok(Ok(None)) | Ok(Err(Error::Unstable)) => {}
            Ok(Err(e)) => {
                ctx.metrics.error(COLLECTOR, "read");
                if !degraded {
                    degraded = true;
                    ctx.report_status(
                        COLLECTOR,
                        CollectorHealth::Degraded,
                        format!("{e}: {}", error_causes(&e)),
                        Some("retrying every few seconds"),
                    );
                }
            }
            Err(_) => {
                ctx.metrics.error(COLLECTOR, "panic");
                ctx.report_status(
                    COLLECTOR,
                    CollectorHealth::Down,
                    "the account watcher failed",
                    None,
                );
                return;
            }
        }
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = async {
                match &mut notifier {
                    Some(n) => n.changed().await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

#[cfg(test)]
mod tests;
