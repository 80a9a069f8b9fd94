//! The host's account databases: `/etc/passwd`, `/etc/group` and (when readable) `/etc/shadow`.
//!
//! Shared by the process and connection collectors (uid → user name), the LocalUsers collector
//! and the OS baseline. Lines that do not parse are skipped and counted, never fatal: these files
//! are edited by hand on real devices.

use crate::host::HostRoot;
use std::collections::HashMap;
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
    /// The passwd password field (`x` when the hash lives in shadow).
    pub passwd_field: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// A shadow entry: only what security checks need, never the hash itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    pub name: String,
    /// What the password field says about the account.
    pub password: PasswordState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordState {
    /// An empty field: anyone can log in without a password.
    Empty,
    /// `!` or `*` prefixed: locked, or no password login.
    Locked,
    /// A hash is set.
    Set,
}

/// Parsed lines and how many were skipped as malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub entries: Vec<T>,
    pub malformed: usize,
}

fn parse_lines<T>(text: &str, f: impl Fn(&[&str]) -> Option<T>) -> Parsed<T> {
    let mut entries = Vec::new();
    let mut malformed = 0;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        // NIS compat entries (`+`, `-name`) are not local accounts.
        if line.starts_with('+') || line.starts_with('-') {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        match f(&fields) {
            Some(e) => entries.push(e),
            None => malformed += 1,
        }
    }
    Parsed { entries, malformed }
}

pub fn parse_passwd(text: &str) -> Parsed<User> {
    parse_lines(text, |f| {
        if f.len() != 7 || f[0].is_empty() {
            return None;
        }
        Some(User {
            name: f[0].to_string(),
            passwd_field: f[1].to_string(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            gecos: f[4].to_string(),
            home: f[5].to_string(),
            shell: f[6].to_string(),
        })
    })
}

pub fn parse_group(text: &str) -> Parsed<Group> {
    parse_lines(text, |f| {
        if f.len() != 4 || f[0].is_empty() {
            return None;
        }
        Some(Group {
            name: f[0].to_string(),
            gid: f[2].parse().ok()?,
            members: f[3]
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect(),
        })
    })
}

pub fn parse_shadow(text: &str) -> Parsed<Shadow> {
    parse_lines(text, |f| {
        if f.len() < 2 || f[0].is_empty() {
            return None;
        }
        let p = f[1];
        let password = if p.is_empty() {
            PasswordState::Empty
        } else if p.starts_with('!') || p.starts_with('*') {
            PasswordState::Locked
        } else {
            PasswordState::Set
        };
        Some(Shadow {
            name: f[0].to_string(),
            password,
        })
    })
}

/// uid → user name, re-read only when the host's passwd file changes.
#[derive(Debug, Default)]
pub struct UserNames {
    names: HashMap<u32, String>,
    stamp: Option<(SystemTime, u64)>,
}

impl UserNames {
    /// The name of `uid` on the host, refreshing the table if /etc/passwd changed.
    pub fn name(&mut self, host: &HostRoot, uid: u32) -> Option<String> {
        self.refresh(host);
        self.names.get(&uid).cloned()
    }

    /// The name of `uid` in the table as last read, without checking the passwd file (for
    /// callers that check it on their own schedule, like the process collector in a storm).
    pub fn cached(&self, uid: u32) -> Option<String> {
        self.names.get(&uid).cloned()
    }

    fn refresh(&mut self, host: &HostRoot) {
        let meta = host.metadata("/etc/passwd").ok();
        let stamp = meta.and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some() && stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        // Where several accounts share a uid (a second root), the first one names it, as
        // getpwuid(3) does: an attacker's `toor` appended to passwd must not rename root's
        // processes.
        let mut names = HashMap::new();
        if let Ok(t) = host.read_to_string("/etc/passwd") {
            for u in parse_passwd(&t).entries {
                names.entry(u.uid).or_insert(u.name);
            }
        }
        self.names = names;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_uid_is_named_by_its_first_account() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\ntoor:x:0:0::/root:/bin/sh\n",
        )
        .unwrap();
        let host = HostRoot::new(dir.path());
        let mut names = UserNames::default();
        assert_eq!(names.name(&host, 0).as_deref(), Some("root"));
        assert_eq!(names.name(&host, 1000).as_deref(), Some("alice"));
        assert_eq!(names.name(&host, 7), None);
    }

    #[test]
    fn passwd_group_shadow_parse_and_skip_garbage() {
        let p = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# comment\n\nbad line\nuser:x:1000:1000::/home/user:/bin/sh\nneg:x:-1:0::/:/bin/sh\n+nis\nshort:x:1\n",
        );
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.malformed, 3);
        assert_eq!(p.entries[1].uid, 1000);
        assert_eq!(p.entries[1].shell, "/bin/sh");
        let g = parse_group("root:x:0:\nadm:x:4:syslog, user\nbroken\n");
        assert_eq!(g.entries[1].members, ["syslog", "user"]);
        assert_eq!(g.malformed, 1);
        let s = parse_shadow("root:!:19000:0:99999:7:::\nu:$6$abc:1::\nopen::1::\n*bad\n");
        let states: Vec<PasswordState> = s.entries.iter().map(|e| e.password).collect();
        assert_eq!(
            states,
            [
                PasswordState::Locked,
                PasswordState::Set,
                PasswordState::Empty
            ]
        );
        assert_eq!(s.malformed, 1);
    }

    #[test]
    fn user_names_follow_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let host = HostRoot::new(dir.path());
        let mut names = UserNames::default();
        assert_eq!(names.name(&host, 0), None);
        std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        assert_eq!(names.name(&host, 0).as_deref(), Some("root"));
        std::fs::write(
            dir.path().join("etc/passwd"),
            "admin:x:0:0::/root:/bin/sh\nu:x:5:5::/:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(names.name(&host, 5).as_deref(), Some("u"));
    }
}
