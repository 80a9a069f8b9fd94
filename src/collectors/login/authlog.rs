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
    /// login(1) on a console or serial line.
    Login,
}

impl Service {
    pub fn executable(self) -> &'static str {
        match self {
            Service::Sshd => "/usr/sbin/sshd",
            Service::Sudo => "/usr/bin/sudo",
            Service::Su => "/bin/su",
            Service::Login => "/bin/login",
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
    /// How the line relates to one authentication attempt (sshd logs several lines for one).
    pub role: Role,
}

/// What an sshd line is within a connection, for counting one attempt once
/// (see [`super::Attempts`]). sudo, su and login lines are all [`Role::Immediate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Stands on its own: a success, or a sudo/su/login line.
    Immediate,
    /// One failed authentication (`Failed password for …`): always counted.
    Attempt,
    /// A PAM module's report of the failure sshd reports next as `Failed …` for the same pid:
    /// counted only when that line does not follow.
    PamFailure,
    /// A failure of the whole connection (invalid user, not allowed, too many failures,
    /// pre-authentication disconnects, probes): counted once per connection, and only when no
    /// attempt of that connection was counted.
    Connection,
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
        let user_id = if self.invalid_user || self.user.is_empty() {
            None
        } else {
            uid(&self.user).map(|u| u.to_string())
        };
        Login {
            process_id: self.pid.unwrap_or(0),
            user_id,
            // Probes before any user name (no identification, negotiation failures) have none.
            user_name: (!self.user.is_empty()).then(|| self.user.clone()),
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
    /// An sshd line that is no failure itself but says which remote host a connection (pid) is
    /// from, or that it ended; [`super::Attempts`] uses it to complete held failures.
    Hint(SshdHint),
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
    parse_auth_message(h.time, h.hostname, h.program, h.pid, h.message)
}

/// Parses a message whose syslog header was already taken apart: by [`parse_auth_line`], or
/// from the journal's `SYSLOG_IDENTIFIER`/`_COMM`, `_PID` and `MESSAGE` fields.
pub fn parse_auth_message(
    time: SyslogTime,
    hostname: &str,
    program: &str,
    pid: Option<u32>,
    message: &str,
) -> AuthLine {
    let (repeat, message) = strip_repeated(message.trim());
    let service = match program {
        "sshd" | "sshd-session" | "sshd-auth" => Service::Sshd,
        "sudo" => Service::Sudo,
        "su" => Service::Su,
        "login" => Service::Login,
        _ => return AuthLine::Other,
    };
    let parsed = match service {
        Service::Sshd => match super::sshd::parse_sshd(message) {
            super::sshd::Sshd::Login(p) => Some(p),
            super::sshd::Sshd::Hint(mut hint) => {
                hint.pid = pid;
                hint.hostname = hostname.to_string();
                return AuthLine::Hint(hint);
            }
            super::sshd::Sshd::Other => None,
        },
        Service::Sudo => parse_sudo(message),
        Service::Su => parse_su(message),
        Service::Login => parse_login(message),
    };
    let Some(p) = parsed else {
        return AuthLine::Other;
    };
    AuthLine::Login(Box::new(AuthLogin {
        time,
        hostname: hostname.to_string(),
        service,
        pid,
        operation: p.operation,
        user: p.user.to_string(),
        invalid_user: p.invalid_user,
        remote_host: p.remote_host.map(str::to_string),
        remote_port: p.remote_port,
        result: p.result,
        details: p.details,
        repeat,
        role: p.role,
    }))
}

/// An sshd line that names a connection's remote host or ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdHint {
    /// Set by [`parse_auth_message`].
    pub hostname: String,
    pub pid: Option<u32>,
    pub remote_host: Option<String>,
    pub remote_port: Option<u16>,
    /// The connection is over: nothing more will be logged for it.
    pub ends: bool,
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
    if line.starts_with('<') {
        return parse_rfc5424(line);
    }
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
    let (first, after_first) = token(rest)?;
    // The host name is left out by some writers (`Feb 17 17:40:17 sshd[1]: …`); a host name
    // never ends with ':' nor is bracketed, a tag always is one or the other.
    let (hostname, tag, rest) = if first.ends_with(':') || first.starts_with('[') {
        ("", first, after_first)
    } else {
        let (tag, rest) = token(after_first)?;
        (first, tag, rest)
    };
    let (program, pid) = parse_tag(tag)?;
    let mut message = rest.trim_start_matches(' ');
    // Solaris' syslog puts a message id first: `[ID 800047 auth.info] Failed …`.
    if let Some(r) = message.strip_prefix("[ID ")
        && let Some((_, r)) = r.split_once("] ")
    {
        message = r;
    }
    Some(Header {
        time,
        hostname,
        program,
        pid,
        message,
    })
}

/// `sshd[123]:`, `sshd:`, and the bracketed `[sshd]:` / `[sshd]` some old writers use.
fn parse_tag(tag: &str) -> Option<(&str, Option<u32>)> {
    if let Some(t) = tag.strip_prefix('[') {
        let t = t.strip_suffix(':').unwrap_or(t);
        let p = t.strip_suffix(']')?;
        return (!p.is_empty() && !p.contains('[')).then_some((p, None));
    }
    let tag = tag.strip_suffix(':')?;
    match tag.split_once('[') {
        Some((p, pid)) => Some((p, Some(pid.strip_suffix(']')?.parse().ok()?))),
        None => Some((tag, None)),
    }
}

/// RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG`, with `-`
/// for an absent field (a message without a timestamp is refused: it cannot be placed).
fn parse_rfc5424(line: &str) -> Option<Header<'_>> {
    let (pri, rest) = line.strip_prefix('<')?.split_once('>')?;
    if pri.is_empty() || pri.len() > 3 || !pri.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = rest.strip_prefix("1 ")?;
    let (t, rest) = token(rest)?;
    let time = SyslogTime::Rfc3339(DateTime::parse_from_rfc3339(t).ok()?);
    let (hostname, rest) = token(rest)?;
    let (program, rest) = token(rest)?;
    let (procid, rest) = token(rest)?;
    let (_msgid, rest) = token(rest)?;
    let rest = rest.trim_start_matches(' ');
    let message = if let Some(r) = rest.strip_prefix('-') {
        r
    } else if rest.starts_with('[') {
        skip_structured_data(rest)?
    } else {
        return None;
    };
    let message = message.strip_prefix(' ').unwrap_or(message);
    let message = message.strip_prefix('\u{feff}').unwrap_or(message);
    Some(Header {
        time,
        hostname: if hostname == "-" { "" } else { hostname },
        program: if program == "-" { "" } else { program },
        pid: if procid == "-" {
            None
        } else {
            Some(procid.parse().ok()?)
        },
        message,
    })
}

/// Skips RFC 5424 structured data (`[id k="v"][id2 …]`, values may hold `\]` and `\"`).
fn skip_structured_data(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = 0;
    while b.get(i) == Some(&b'[') {
        let mut quoted = false;
        i += 1;
        loop {
            match *b.get(i)? {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    s.get(i..)
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
pub(super) struct Parsed<'a> {
    pub(super) operation: String,
    pub(super) user: &'a str,
    pub(super) invalid_user: bool,
    pub(super) remote_host: Option<&'a str>,
    pub(super) remote_port: Option<u16>,
    pub(super) result: LoginResult,
    pub(super) details: Vec<(&'static str, String)>,
    pub(super) role: Role,
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
            role: Role::Immediate,
        }
    }
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
    mark_escalation(&mut p);
    Some(p)
}

/// `PrivilegeEscalation: true` on a sudo or su to root (sudo's default target when it logs no
/// `USER=`), the detail a reader filters on.
fn mark_escalation(p: &mut Parsed<'_>) {
    let target = p
        .details
        .iter()
        .find(|(k, _)| *k == "TargetUser")
        .map_or("root", |(_, v)| v.as_str());
    if target == "root" && p.user != "root" {
        p.details.push(("PrivilegeEscalation", "true".to_string()));
    }
}

/// login(1) on a console or serial line. util-linux: `FAILED LOGIN 3 FROM tty1 FOR root,
/// Authentication failure`, `ROOT LOGIN ON tty1[ FROM host]`, `LOGIN ON tty1 BY alice[ FROM
/// host]`; shadow: `FAILED LOGIN (1) on '/dev/tty1' FOR 'root', Authentication failure`,
/// `ROOT LOGIN  on '/dev/tty1'`, `pam_unix(login:auth): authentication failure; …`.
fn parse_login(msg: &str) -> Option<Parsed<'_>> {
    if msg.starts_with("pam_") {
        return parse_pam(msg, &["login", "remote"], "login");
    }
    let unquote = |s: &str| -> String {
        let s = s.trim();
        let s = s
            .strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .unwrap_or(s);
        s.strip_prefix("/dev/").unwrap_or(s).to_string()
    };
    if let Some(rest) = msg.strip_prefix("FAILED LOGIN ") {
        // `N FROM tty FOR user, reason` or `(N) on 'tty' FOR 'user', reason`.
        let (head, tail) = rest.split_once(" FOR ")?;
        let tty = head
            .split_once(" FROM ")
            .or_else(|| head.split_once(" on "))
            .map(|(_, t)| t)?;
        let (user, reason) = tail.rsplit_once(", ").unwrap_or((tail, ""));
        let user = user.trim();
        let user = user
            .strip_prefix('\'')
            .and_then(|u| u.strip_suffix('\''))
            .unwrap_or(user);
        let mut p = Parsed::new("login", user, LoginResult::Fail);
        p.details.push(("Terminal", unquote(tty)));
        if !reason.is_empty() {
            p.details.push(("Reason", reason.trim().to_string()));
        }
        return Some(p);
    }
    let (user, rest) = if let Some(r) = msg.strip_prefix("ROOT LOGIN ") {
        ("root", r.trim_start())
    } else if let Some(r) = msg.strip_prefix("LOGIN ON ") {
        let (tty, by) = r.split_once(" BY ")?;
        let (user, from) = by.split_once(" FROM ").unwrap_or((by, ""));
        let mut p = Parsed::new("login", user.trim(), LoginResult::Success);
        p.details.push(("Terminal", unquote(tty)));
        if let Some(h) = host_or_none(from) {
            p.remote_host = Some(h);
        }
        return Some(p);
    } else {
        return None;
    };
    let rest = rest
        .strip_prefix("ON ")
        .or_else(|| rest.strip_prefix("on "))?;
    let (tty, from) = rest.split_once(" FROM ").unwrap_or((rest, ""));
    let mut p = Parsed::new("login", user, LoginResult::Success);
    p.details.push(("Terminal", unquote(tty)));
    if let Some(h) = host_or_none(from) {
        p.remote_host = Some(h);
    }
    Some(p)
}

fn host_or_none(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty() && !s.contains(' ')).then_some(s)
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
        mark_escalation(&mut p);
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
    mark_escalation(&mut p);
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
