//! auth.log / secure lines: syslog headers and the sshd, sudo, su and PAM messages that are logins.

use super::MAX_LINE_BYTES;
use crate::event::{ExtraDetails, Login, LoginResult, format_local};
use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, TimeZone};
use std::net::IpAddr;

/// A syslog timestamp as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogTime {
    /// RFC 3339 (`2026-11-23T17:42:57.123456+00:00`), rsyslog's high-precision format.
    Rfc3339(DateTime<FixedOffset>),
    /// `Nov 23 17:42:57`: no year and no zone (the host's local time).
    Classic {
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
    },
}

impl SyslogTime {
    /// The absolute time. A classic timestamp is read in the agent's time zone and in the most
    /// recent year that does not put it more than a day in the future (a December line read in
    /// January belongs to last year).
    pub fn resolve(&self, now: DateTime<Local>) -> Option<DateTime<FixedOffset>> {
        match *self {
            SyslogTime::Rfc3339(t) => Some(t),
            SyslogTime::Classic {
                month,
                day,
                hour,
                minute,
                second,
            } => [now.year(), now.year() - 1].into_iter().find_map(|year| {
                let naive =
                    NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, minute, second)?;
                let t = Local.from_local_datetime(&naive).earliest()?;
                (t <= now + chrono::Duration::days(1)).then(|| t.fixed_offset())
            }),
        }
    }
}

/// The program that logged an auth line we understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Sshd,
    Sudo,
    Su,
}

impl Service {
    pub fn executable(self) -> &'static str {
        match self {
            Service::Sshd => "/usr/sbin/sshd",
            Service::Sudo => "/usr/bin/sudo",
            Service::Su => "/bin/su",
        }
    }
}

/// A login, sudo or su attempt read from one auth-log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthLogin {
    pub time: SyslogTime,
    /// The syslog host name field.
    pub hostname: String,
    pub service: Service,
    pub pid: Option<u32>,
    /// `sshd:password`, `sshd:publickey`, `sshd:invalid-user`, `sudo`, `su`, …
    pub operation: String,
    /// Who tried: the login name, or the user invoking sudo or su.
    pub user: String,
    /// sshd said the user does not exist.
    pub invalid_user: bool,
    /// The remote host as logged (an address, or a name when sshd's UseDNS is on).
    pub remote_host: Option<String>,
    pub remote_port: Option<u16>,
    pub result: LoginResult,
    /// `ExtraDetails` entries (TargetUser, Terminal, Command, Reason, Key, …).
    pub details: Vec<(&'static str, String)>,
    /// rsyslog's "message repeated N times": the line stands for this many attempts.
    pub repeat: Option<u32>,
}

impl AuthLogin {
    /// The `Login` record. `uid` resolves a user name on the host (None for unknown users).
    pub fn to_login(
        &self,
        source: &str,
        now: DateTime<Local>,
        uid: impl FnOnce(&str) -> Option<u32>,
    ) -> Login {
        let mut extra = ExtraDetails::new();
        extra.insert("Source".into(), source.to_string());
        if let Some(t) = self.time.resolve(now) {
            extra.insert("Time".into(), format_local(&t));
        }
        if !self.hostname.is_empty() {
            extra.insert("Host".into(), self.hostname.clone());
        }
        let remote_address = self
            .remote_host
            .as_deref()
            .and_then(|h| h.parse::<IpAddr>().ok())
            .map(|a| a.to_canonical());
        if let (Some(h), None) = (&self.remote_host, remote_address) {
            extra.insert("RemoteHost".into(), h.clone());
        }
        if self.invalid_user {
            extra.insert("InvalidUser".into(), "true".into());
        }
        if let Some(n) = self.repeat {
            extra.insert("RepeatCount".into(), n.to_string());
        }
        for (k, v) in &self.details {
            extra.insert((*k).to_string(), v.clone());
        }
        let user_id = if self.invalid_user {
            None
        } else {
            uid(&self.user).map(|u| u.to_string())
        };
        Login {
            process_id: self.pid.unwrap_or(0),
            user_id,
            user_name: Some(self.user.clone()),
            operation: self.operation.clone(),
            executable: self.service.executable().to_string(),
            remote_address,
            remote_port: self.remote_port,
            local_port: None,
            result: self.result,
            extra_details: extra,
        }
    }
}

/// What one auth-log line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthLine {
    Login(Box<AuthLogin>),
    /// A well-formed line about something else.
    Other,
    /// Not a syslog line.
    Malformed,
}

/// Parses one auth-log line (without its newline). Never panics; anything it does not
/// understand is `Other` or `Malformed`.
pub fn parse_auth_line(line: &str) -> AuthLine {
    let Some(h) = parse_header(line) else {
        return AuthLine::Malformed;
    };
    let (repeat, message) = strip_repeated(h.message);
    let service = match h.program {
        "sshd" | "sshd-session" | "sshd-auth" => Service::Sshd,
        "sudo" => Service::Sudo,
        "su" => Service::Su,
        _ => return AuthLine::Other,
    };
    let parsed = match service {
        Service::Sshd => parse_sshd(message),
        Service::Sudo => parse_sudo(message),
        Service::Su => parse_su(message),
    };
    let Some(p) = parsed else {
        return AuthLine::Other;
    };
    AuthLine::Login(Box::new(AuthLogin {
        time: h.time,
        hostname: h.hostname.to_string(),
        service,
        pid: h.pid,
        operation: p.operation,
        user: p.user.to_string(),
        invalid_user: p.invalid_user,
        remote_host: p.remote_host.map(str::to_string),
        remote_port: p.remote_port,
        result: p.result,
        details: p.details,
        repeat,
    }))
}

struct Header<'a> {
    time: SyslogTime,
    hostname: &'a str,
    program: &'a str,
    pid: Option<u32>,
    message: &'a str,
}

/// The next space-separated token and the rest (which starts with the separating space).
fn token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    Some(match s.find(' ') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    })
}

fn parse_header(line: &str) -> Option<Header<'_>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (time, rest) = if line.as_bytes().first()?.is_ascii_digit() {
        let (t, rest) = token(line)?;
        (
            SyslogTime::Rfc3339(DateTime::parse_from_rfc3339(t).ok()?),
            rest,
        )
    } else {
        let (mon, rest) = token(line)?;
        let (day, rest) = token(rest)?;
        let (hms, rest) = token(rest)?;
        (parse_classic(mon, day, hms)?, rest)
    };
    let (hostname, rest) = token(rest)?;
    let (tag, rest) = token(rest)?;
    let tag = tag.strip_suffix(':')?;
    let (program, pid) = match tag.split_once('[') {
        Some((p, pid)) => (p, Some(pid.strip_suffix(']')?.parse().ok()?)),
        None => (tag, None),
    };
    Some(Header {
        time,
        hostname,
        program,
        pid,
        message: rest.trim_start_matches(' '),
    })
}

fn parse_classic(mon: &str, day: &str, hms: &str) -> Option<SyslogTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let day: u32 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let mut parts = hms.split(':');
    let mut next = |max: u32| -> Option<u32> {
        let p = parts.next()?;
        (p.len() == 2)
            .then(|| p.parse().ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    let (hour, minute, second) = (next(23)?, next(59)?, next(60)?);
    if parts.next().is_some() {
        return None;
    }
    Some(SyslogTime::Classic {
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// rsyslog's repeated-message reduction: `message repeated 3 times: [ Failed password …]`.
fn strip_repeated(msg: &str) -> (Option<u32>, &str) {
    let inner = msg.strip_prefix("message repeated ").and_then(|r| {
        let (n, r) = r.split_once(" times: [")?;
        Some((n.parse::<u32>().ok()?, r.strip_suffix(']')?.trim()))
    });
    match inner {
        Some((n, m)) => (Some(n), m),
        None => (None, msg),
    }
}

/// A login line's meaning, before the header is attached.
struct Parsed<'a> {
    operation: String,
    user: &'a str,
    invalid_user: bool,
    remote_host: Option<&'a str>,
    remote_port: Option<u16>,
    result: LoginResult,
    details: Vec<(&'static str, String)>,
}

impl<'a> Parsed<'a> {
    pub(super) fn new(operation: impl Into<String>, user: &'a str, result: LoginResult) -> Self {
        Parsed {
            operation: operation.into(),
            user,
            invalid_user: false,
            remote_host: None,
            remote_port: None,
            result,
            details: Vec::new(),
        }
    }
}

/// `sshd:<method>` with the method reduced to a known, bounded word.
fn sshd_operation(method: &str) -> String {
    let method = method.split('/').next().unwrap_or("");
    let known = [
        "password",
        "publickey",
        "keyboard-interactive",
        "hostbased",
        "gssapi-with-mic",
        "gssapi-keyex",
        "none",
    ];
    if known.contains(&method) {
        format!("sshd:{method}")
    } else {
        "sshd:other".to_string()
    }
}

/// Splits `USER from HOST port N[ rest]` into (USER, HOST, N, rest). The user name is the
/// client's choice and may itself contain " from 1.2.3.4 port 5": for names sshd has not
/// checked, take the last match (`last`), which sshd appended.
fn split_from(s: &str, last: bool) -> Option<(&str, &str, u16, &str)> {
    let try_at = |i: usize| -> Option<(&str, &str, u16, &str)> {
        let tail = &s[i + " from ".len()..];
        let (host, tail) = tail.split_once(" port ")?;
        if host.is_empty() || host.contains(' ') {
            return None;
        }
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        let port = tail[..digits].parse().ok()?;
        let rest = &tail[digits..];
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with(':')) {
            return None;
        }
        Some((&s[..i], host, port, rest))
    };
    if last {
        s.rmatch_indices(" from ").find_map(|(i, _)| try_at(i))
    } else {
        s.match_indices(" from ").find_map(|(i, _)| try_at(i))
    }
}

/// `USER HOST port N [preauth]`, read from the right (the user name is the client's).
fn split_user_host_port(s: &str) -> Option<(&str, &str, u16)> {
    let s = s.trim_end();
    let s = s.strip_suffix("[preauth]").unwrap_or(s).trim_end();
    let (s, port) = s.rsplit_once(' ')?;
    let port = port.parse().ok()?;
    let s = s.strip_suffix(" port")?;
    let (user, host) = s.rsplit_once(' ').unwrap_or(("", s));
    Some((user, host, port))
}

fn parse_sshd(msg: &str) -> Option<Parsed<'_>> {
    if let Some(rest) = msg.strip_prefix("Accepted ") {
        let (method, rest) = rest.split_once(" for ")?;
        // The user exists and sshd checked the name: the first match is sshd's own.
        let (user, host, port, tail) = split_from(rest, false)?;
        let mut p = Parsed::new(sshd_operation(method), user, LoginResult::Success);
        p.remote_host = Some(host);
        p.remote_port = Some(port);
        if let Some(key) = tail.trim_start().strip_prefix("ssh2: ") {
            p.details.push(("Key", key.trim().to_string()));
        }
        return Some(p);
    }
    if let Some(rest) = msg.strip_prefix("Failed ") {
        let (method, rest) = rest.split_once(" for ")?;
        let (user, host, port, _) = split_from(rest, true)?;
        let (user, invalid) = match user.strip_prefix("invalid user ") {
            Some(u) => (u, true),
            None => (user, false),
        };
        let mut p = Parsed::new(sshd_operation(method), user, LoginResult::Fail);
        p.invalid_user = invalid;
        p.remote_host = Some(host);
        p.remote_port = Some(port);
        return Some(p);
    }
    if let Some(rest) = msg.strip_prefix("Invalid user ") {
        let (user, host, port, _) = split_from(rest, true)?;
        let mut p = Parsed::new("sshd:invalid-user", user, LoginResult::Fail);
        p.invalid_user = true;
        p.remote_host = Some(host);
        p.remote_port = Some(port);
        return Some(p);
    }
    // The only trace, at sshd's default log level, of a client whose keys were all refused for
    // an existing user: it gives up and disconnects before authenticating.
    let preauth = msg
        .strip_prefix("Connection closed by authenticating user ")
        .or_else(|| msg.strip_prefix("Disconnected from authenticating user "));
    if let Some(rest) = preauth {
        let (user, host, port) = split_user_host_port(rest)?;
        let mut p = Parsed::new("sshd:preauth-closed", user, LoginResult::Fail);
        p.remote_host = Some(host);
        p.remote_port = Some(port);
        p.details.push((
            "Reason",
            "connection closed before authentication".to_string(),
        ));
        return Some(p);
    }
    if let Some(rest) = msg.strip_prefix("User ") {
        let (head, reason) = rest.rsplit_once(" not allowed because ")?;
        let (user, host) = head.rsplit_once(" from ")?;
        let mut p = Parsed::new("sshd:not-allowed", user, LoginResult::Fail);
        p.remote_host = Some(host);
        p.details
            .push(("Reason", format!("not allowed because {reason}")));
        return Some(p);
    }
    None
}

/// sudo: `alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id` (success), or
/// the same with a reason first (`3 incorrect password attempts ; TTY=…`, `user NOT in sudoers
/// ; …`: failure), or a PAM authentication failure.
fn parse_sudo(msg: &str) -> Option<Parsed<'_>> {
    if msg.starts_with("pam_") {
        return parse_pam(msg, &["sudo", "sudo-i"], "sudo");
    }
    let (user, rest) = msg.split_once(" : ")?;
    let user = user.trim();
    if user.is_empty() || user.contains(' ') {
        return None;
    }
    let (first, after_first) = rest.split_once(" ; ").unwrap_or((rest, ""));
    let is_field = |s: &str| {
        s.split_once('=')
            .is_some_and(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_uppercase()))
    };
    let (result, mut fields) = if is_field(first) {
        (LoginResult::Success, rest)
    } else {
        (LoginResult::Fail, after_first)
    };
    let mut p = Parsed::new("sudo", user, result);
    if result == LoginResult::Fail {
        p.details.push(("Reason", first.trim().to_string()));
    }
    // COMMAND comes last and may itself contain " ; ": it takes the rest of the line.
    while !fields.is_empty() {
        if let Some(cmd) = fields.strip_prefix("COMMAND=") {
            p.details.push(("Command", cmd.to_string()));
            break;
        }
        let (field, rest) = fields.split_once(" ; ").unwrap_or((fields, ""));
        fields = rest;
        let Some((k, v)) = field.split_once('=') else {
            continue;
        };
        let key = match k {
            "TTY" => "Terminal",
            "PWD" => "Pwd",
            "USER" => "TargetUser",
            "GROUP" => "TargetGroup",
            _ => continue,
        };
        p.details.push((key, v.to_string()));
    }
    Some(p)
}

/// su (util-linux): `(to root) alice on pts/0`, `FAILED SU (to root) alice on pts/0`; shadow's
/// su: `Successful su for root by alice`, `FAILED su for root by alice`; PAM failures.
fn parse_su(msg: &str) -> Option<Parsed<'_>> {
    if msg.starts_with("pam_") {
        return parse_pam(msg, &["su", "su-l"], "su");
    }
    let (result, rest) = match msg.strip_prefix("FAILED SU ") {
        Some(r) => (LoginResult::Fail, r),
        None => (LoginResult::Success, msg),
    };
    if let Some(rest) = rest.strip_prefix("(to ") {
        let (target, rest) = rest.split_once(") ")?;
        let (user, tty) = rest.rsplit_once(" on ").unwrap_or((rest, ""));
        let mut p = Parsed::new("su", user, result);
        p.details.push(("TargetUser", target.to_string()));
        if !tty.is_empty() && tty != "none" {
            p.details.push(("Terminal", tty.to_string()));
        }
        return Some(p);
    }
    let (result, rest) = if let Some(r) = msg.strip_prefix("Successful su for ") {
        (LoginResult::Success, r)
    } else if let Some(r) = msg.strip_prefix("FAILED su for ") {
        (LoginResult::Fail, r)
    } else {
        return None;
    };
    let (target, user) = rest.rsplit_once(" by ")?;
    let mut p = Parsed::new("su", user.trim(), result);
    p.details.push(("TargetUser", target.to_string()));
    Some(p)
}

/// `pam_unix(su:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0
/// ruser=alice rhost=  user=root`. The one who tried is `ruser` (else `logname`); `user` is the
/// account asked for (the target, for su).
fn parse_pam<'a>(msg: &'a str, services: &[&str], operation: &str) -> Option<Parsed<'a>> {
    let (module, rest) = msg.split_once("): ")?;
    let (_, service) = module.split_once('(')?;
    let (service, phase) = service.split_once(':')?;
    if phase != "auth" || !services.contains(&service) {
        return None;
    }
    let fields = rest.strip_prefix("authentication failure")?;
    let fields = fields.trim_start_matches(';');
    let get = |key: &str| {
        fields
            .split_ascii_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .filter(|v| !v.is_empty())
    };
    let target = get("user");
    let user = get("ruser").or_else(|| get("logname")).or(target)?;
    let mut p = Parsed::new(operation, user, LoginResult::Fail);
    p.details
        .push(("Reason", "authentication failure".to_string()));
    if let Some(t) = target.filter(|t| *t != user) {
        p.details.push(("TargetUser", t.to_string()));
    }
    if let Some(tty) = get("tty") {
        p.details.push(("Terminal", tty.to_string()));
    }
    Some(p)
}

/// Splits a buffer into complete lines. Returns the lines, the bytes consumed (through the last
/// newline, or an overlong unterminated line that is dropped) and how many lines were too long.
/// `skip_first` drops text up to the first newline (the tail of an overlong line); it is updated
/// for the next buffer. `at_eof` takes an unterminated last line as a line (a rotated file that
/// will not grow again).
pub fn split_lines<'a>(
    buf: &'a [u8],
    skip_first: &mut bool,
    at_eof: bool,
) -> (Vec<&'a [u8]>, usize, usize) {
    let mut lines = Vec::new();
    let mut pos = 0;
    let mut too_long = 0;
    while pos < buf.len() {
        let line_end = buf[pos..].iter().position(|b| *b == b'\n');
        let (line, next) = match line_end {
            Some(n) => (&buf[pos..pos + n], pos + n + 1),
            None if at_eof => (&buf[pos..], buf.len()),
            None if buf.len() - pos >= MAX_LINE_BYTES => {
                // No newline within the longest line we keep: drop what we have and the rest
                // of this line when it arrives.
                if !*skip_first {
                    too_long += 1;
                }
                *skip_first = true;
                pos = buf.len();
                break;
            }
            None => break,
        };
        if std::mem::take(skip_first) {
            // The end of a line already dropped as overlong.
        } else if line.len() > MAX_LINE_BYTES {
            too_long += 1;
        } else {
            lines.push(line);
        }
        pos = next;
    }
    (lines, pos, too_long)
}
