//! One attempt, one failure: sshd logs several lines for one attempt, and several more for
//! the connection around it.
//!
//! A password attempt is logged by PAM (`pam_unix(sshd:auth): authentication failure; …`) and,
//! after PAM's failure delay, by sshd (`Failed password for …`); an invalid user's connection
//! says `Invalid user …` before its attempts and `Connection closed by invalid user …` after;
//! a connection that used up its tries says `maximum authentication attempts exceeded` and
//! `Disconnecting …: Too many authentication failures`. Counting every line would multiply
//! the failures the brute-force detection and the hub see.
//!
//! Lines are grouped per connection: the sshd process (host name + pid) while it keeps
//! logging. Within one:
//!
//! - every [`Role::Attempt`] (`Failed password …`) is reported, at once;
//! - a [`Role::PamFailure`] is held until the `Failed …` line that reports the same attempt
//!   replaces it, or a success for the same user shows it was not a failed login (PAM stacks
//!   where a first module fails and a second one succeeds); if neither comes, it is reported;
//! - a [`Role::Connection`] failure is reported once per connection, and only when none of
//!   its attempts was (a client that only probed a name, or only offered keys);
//! - hint lines (`Connection from H`, `Connection closed by H [preauth]`) give held lines the
//!   remote address they lack, and end the connection.
//!
//! Held lines are reported when their connection ends, [`HOLD`] after its last line, when
//! a line of a later connection reuses the pid, or at shutdown ([`Attempts::flush_all`]).
//! A crash loses what is held at that moment (at most [`HOLD`] worth of connection-level
//! failures whose lines were already read).

use super::{AuthLine, AuthLogin, Role, Service};
use chrono::{DateTime, FixedOffset, Local};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long held lines wait for the line that completes or replaces them. PAM's failure delay
/// is 2 s by default; a client typing a password after `Invalid user` takes longer, and is
/// then counted twice (once for the name, once for the password), which errs on reporting.
pub const HOLD: Duration = Duration::from_secs(30);
/// Connections followed at once (each holds at most [`MAX_PAM_HELD`] + 1 lines); beyond it
/// the least recently active one is reported and let go.
pub const MAX_CONNECTIONS: usize = 4096;
/// PAM lines held per connection; more are reported at once.
const MAX_PAM_HELD: usize = 8;

#[derive(Debug)]
struct Conn {
    host: Option<String>,
    port: Option<u16>,
    /// An attempt or a success was reported: connection-level failures add nothing.
    counted: bool,
    pam: Vec<AuthLogin>,
    conn: Option<AuthLogin>,
    seen: Instant,
    last_time: Option<DateTime<FixedOffset>>,
}

impl Conn {
    fn new(seen: Instant) -> Conn {
        Conn {
            host: None,
            port: None,
            counted: false,
            pam: Vec::new(),
            conn: None,
            seen,
            last_time: None,
        }
    }

    fn learn_host(&mut self, host: Option<&str>, port: Option<u16>) {
        let Some(host) = host else { return };
        if self.host.is_none() {
            self.host = Some(host.to_string());
            self.port = port;
        }
        for held in self.pam.iter_mut().chain(self.conn.iter_mut()) {
            if held.remote_host.is_none() {
                held.remote_host = Some(host.to_string());
                held.remote_port = held.remote_port.or(port);
            }
        }
    }

    fn release(self, out: &mut Vec<AuthLogin>) {
        out.extend(self.pam);
        out.extend(self.conn);
    }
}

/// The per-connection grouping; see the module documentation. One per followed source.
#[derive(Debug, Default)]
pub struct Attempts {
    conns: HashMap<(String, u32), Conn>,
}

impl Attempts {
    /// Takes one parsed line; pushes what is to be reported now onto `out`. `now` is the
    /// monotonic time of reading, `wall` the wall clock (to place syslog times in a year).
    pub fn feed(
        &mut self,
        line: AuthLine,
        now: Instant,
        wall: DateTime<Local>,
        out: &mut Vec<AuthLogin>,
    ) {
        match line {
            AuthLine::Login(a) => self.login(*a, now, wall, out),
            AuthLine::Hint(h) => {
                let Some(pid) = h.pid else { return };
                let key = (h.hostname, pid);
                if h.ends {
                    if let Some(mut c) = self.conns.remove(&key) {
                        c.learn_host(h.remote_host.as_deref(), h.remote_port);
                        c.release(out);
                    }
                    return;
                }
                let c = self.entry(key, now, out);
                c.seen = now;
                c.learn_host(h.remote_host.as_deref(), h.remote_port);
            }
            AuthLine::Other | AuthLine::Malformed => {}
        }
    }

    fn login(
        &mut self,
        mut a: AuthLogin,
        now: Instant,
        wall: DateTime<Local>,
        out: &mut Vec<AuthLogin>,
    ) {
        let pid = match a.pid {
            Some(pid) if a.service == Service::Sshd => pid,
            _ => {
                out.push(a);
                return;
            }
        };
        let key = (a.hostname.clone(), pid);
        let time = a.time.resolve(wall);
        // The pid was reused by a later connection: the earlier one is over.
        if let Some(c) = self.conns.get(&key)
            && let (Some(before), Some(t)) = (c.last_time, time)
            && (t - before).abs() > chrono::Duration::from_std(HOLD).unwrap_or_default()
            && let Some(c) = self.conns.remove(&key)
        {
            c.release(out);
        }
        let c = self.entry(key, now, out);
        c.seen = now;
        c.last_time = time.or(c.last_time);
        if a.remote_host.is_none() {
            a.remote_host = c.host.clone();
            a.remote_port = a.remote_port.or(c.port);
        } else {
            c.learn_host(a.remote_host.as_deref(), a.remote_port);
        }
        let same_user = |p: &AuthLogin, user: &str| p.user == user || p.user.is_empty();
        match a.role {
            Role::Immediate => {
                // A PAM failure followed by a success for that user: a PAM stack whose first
                // module failed and a later one succeeded, not a failed login.
                c.pam.retain(|p| !same_user(p, &a.user));
                c.counted = true;
                c.conn = None;
                out.push(a);
            }
            Role::Attempt => {
                let i = c
                    .pam
                    .iter()
                    .position(|p| p.user == a.user)
                    .or_else(|| c.pam.iter().position(|p| same_user(p, &a.user)));
                if let Some(i) = i {
                    c.pam.remove(i);
                }
                c.conn = None;
                c.counted = true;
                out.push(a);
            }
            Role::PamFailure => {
                // Several PAM modules (or a `[preauth]` echo) report the same attempt.
                if c.pam.iter().any(|p| p.user == a.user) {
                    return;
                }
                if c.pam.len() < MAX_PAM_HELD {
                    c.pam.push(a);
                } else {
                    out.push(a);
                }
            }
            Role::Connection => {
                if !c.counted && c.conn.is_none() {
                    c.conn = Some(a);
                }
            }
        }
    }

    /// The connection for `key`, made room for when new.
    fn entry(&mut self, key: (String, u32), now: Instant, out: &mut Vec<AuthLogin>) -> &mut Conn {
        if !self.conns.contains_key(&key) && self.conns.len() >= MAX_CONNECTIONS {
            self.flush_expired(now, out);
            if self.conns.len() >= MAX_CONNECTIONS
                && let Some(oldest) = self
                    .conns
                    .iter()
                    .min_by_key(|(_, c)| c.seen)
                    .map(|(k, _)| k.clone())
                && let Some(c) = self.conns.remove(&oldest)
            {
                c.release(out);
            }
        }
        self.conns.entry(key).or_insert_with(|| Conn::new(now))
    }

    /// Reports what connections quiet for [`HOLD`] still hold, and forgets them.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Vec<AuthLogin>) {
        let expired: Vec<_> = self
            .conns
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.seen) >= HOLD)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(c) = self.conns.remove(&k) {
                c.release(out);
            }
        }
    }

    /// Reports everything held (shutdown, end of a measurement).
    pub fn flush_all(&mut self, out: &mut Vec<AuthLogin>) {
        for (_, c) in self.conns.drain() {
            c.release(out);
        }
    }

    /// Connections followed now.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}
