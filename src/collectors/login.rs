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
//! Not covered: systems that log only to the systemd journal (no rsyslog, hence no auth.log; the
//! Debian 12 default) and systems that replaced wtmp with wtmpdb's SQLite database (Debian 13).
//!
//! The collector runs as one task, [`run`]; every file read happens on a blocking thread.

use super::Context;
use crate::event::{
    CollectorHealth, Event, ExtraDetails, Login, LoginResult, Payload, format_local,
};
use crate::host::HostRoot;
use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, TimeZone};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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

// ---------------------------------------------------------------------------------------------
// utmp records (wtmp, btmp)
// ---------------------------------------------------------------------------------------------

/// `ut_type` values (glibc bits/utmp.h).
pub const EMPTY: i16 = 0;
pub const USER_PROCESS: i16 = 7;
pub const DEAD_PROCESS: i16 = 8;
const ACCOUNTING: i16 = 9;

/// The two on-disk shapes of glibc's `struct utmp` / `struct utmpx`.
///
/// Common part: `short ut_type` @0 (2 bytes of padding), `pid_t ut_pid` @4, `char ut_line[32]`
/// @8, `char ut_id[4]` @40, `char ut_user[32]` @44, `char ut_host[256]` @76,
/// `struct exit_status ut_exit` @332 (two shorts). Then, per glibc's bits/utmp.h:
///
/// - where `__WORDSIZE_TIME64_COMPAT32` is 1 (x86_64, and every 32-bit port where `long` and
///   `time_t` in utmp are 32-bit: i386, armhf; also ppc64, riscv64, mips64, sparc64):
///   `int32 ut_session` @336, `ut_tv` as two 32-bit words @340/@344 (`tv_sec` unsigned since
///   glibc 2.40, same bits as before for dates up to 2038), `int32 ut_addr_v6[4]` @348,
///   20 reserved bytes: **384 bytes**;
/// - where it is 0 on a 64-bit port (aarch64, s390x, loongarch64; also musl on every
///   architecture): `long ut_session` @336, `struct timeval ut_tv` (two int64) @344/@352,
///   `ut_addr_v6` @360, 20 reserved bytes and 4 bytes of alignment padding: **400 bytes**.
///
/// Fields are in the host's byte order; `ut_addr_v6` holds the address bytes in network order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UtmpLayout {
    /// 384-byte records with 32-bit session and time fields.
    Compat32,
    /// 400-byte records with 64-bit session and time fields.
    Native64,
}

impl UtmpLayout {
    pub const fn size(self) -> usize {
        match self {
            UtmpLayout::Compat32 => 384,
            UtmpLayout::Native64 => 400,
        }
    }

    /// The layout glibc uses on a machine (`uname -m`). Only a hint: a 64-bit kernel can run a
    /// 32-bit userland (Raspberry Pi OS), which is why [`detect_layout`] looks at the data.
    pub fn for_machine(machine: &str) -> UtmpLayout {
        match machine.trim() {
            "aarch64" | "arm64" | "aarch64_be" | "s390x" | "loongarch64" => UtmpLayout::Native64,
            _ => UtmpLayout::Compat32,
        }
    }

    /// (tv_sec, tv_usec, ut_addr_v6) offsets.
    const fn tail_offsets(self) -> (usize, usize, usize) {
        match self {
            UtmpLayout::Compat32 => (340, 344, 348),
            UtmpLayout::Native64 => (344, 352, 360),
        }
    }
}

/// One decoded utmp record: only what a login event needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtmpRecord {
    pub kind: i16,
    pub pid: i32,
    /// Terminal (`pts/0`, `tty1`, `ssh:notty`).
    pub line: String,
    pub user: String,
    /// Remote host name or address as the login program wrote it.
    pub host: String,
    pub seconds: i64,
    pub micros: i64,
    /// `ut_addr_v6`, when set.
    pub addr: Option<IpAddr>,
}

impl UtmpRecord {
    pub fn time(&self) -> Option<DateTime<FixedOffset>> {
        let nanos = u32::try_from(self.micros.clamp(0, 999_999) * 1000).ok()?;
        let utc = DateTime::from_timestamp(self.seconds, nanos)?;
        Some(utc.with_timezone(&Local).fixed_offset())
    }

    /// The remote address: `ut_addr_v6`, else `ut_host` when it is an address.
    pub fn remote_address(&self) -> Option<IpAddr> {
        self.addr
            .or_else(|| self.host.parse::<IpAddr>().ok().map(|a| a.to_canonical()))
    }

    /// Whether the record looks like one glibc wrote: a defined, non-empty type and a time
    /// between 1971 and 2514. Used to tell the two layouts apart; misreading one layout as the
    /// other puts padding or address bytes in the time fields.
    fn is_plausible(&self) -> bool {
        (1..=ACCOUNTING).contains(&self.kind)
            && (31_536_000..(1_i64 << 34)).contains(&self.seconds)
            && (0..1_000_000).contains(&self.micros)
    }
}

fn read_i16(b: &[u8], at: usize) -> i16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    i16::from_ne_bytes(a)
}

fn read_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_ne_bytes(a)
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(a)
}

fn read_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_ne_bytes(a)
}

/// A fixed-size C char field: up to the first NUL, invalid UTF-8 replaced.
fn c_field(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// `ut_addr_v6`: all zero is no address; only the first word set is IPv4; else IPv6 (an
/// IPv4-mapped address becomes IPv4). This is how OpenSSH's loginrec.c fills it.
pub fn decode_addr(raw: &[u8; 16]) -> Option<IpAddr> {
    if raw.iter().all(|b| *b == 0) {
        return None;
    }
    if raw[4..].iter().all(|b| *b == 0) {
        return Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])));
    }
    Some(IpAddr::V6(Ipv6Addr::from(*raw)).to_canonical())
}

/// Decodes one record from the first `layout.size()` bytes of `rec`.
pub fn parse_utmp_record(rec: &[u8], layout: UtmpLayout) -> Result<UtmpRecord, Error> {
    let size = layout.size();
    if rec.len() < size {
        return Err(Error::ShortRecord {
            len: rec.len(),
            size,
        });
    }
    let kind = read_i16(rec, 0);
    if !(EMPTY..=ACCOUNTING).contains(&kind) {
        return Err(Error::BadType(kind));
    }
    let (sec_at, usec_at, addr_at) = layout.tail_offsets();
    let (seconds, micros) = match layout {
        UtmpLayout::Compat32 => (
            i64::from(read_u32(rec, sec_at)),
            i64::from(read_i32(rec, usec_at)),
        ),
        UtmpLayout::Native64 => (read_i64(rec, sec_at), read_i64(rec, usec_at)),
    };
    let mut addr = [0u8; 16];
    addr.copy_from_slice(&rec[addr_at..addr_at + 16]);
    Ok(UtmpRecord {
        kind,
        pid: read_i32(rec, 4),
        line: c_field(&rec[8..40]),
        user: c_field(&rec[44..76]),
        host: c_field(&rec[76..332]),
        seconds,
        micros,
        addr: decode_addr(&addr),
    })
}

/// The whole records at the start of a buffer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UtmpChunk {
    pub records: Vec<UtmpRecord>,
    /// Bytes used (whole records); the rest is a partial record to read again later.
    pub consumed: usize,
    /// Records that did not decode (skipped).
    pub malformed: usize,
}

/// Decodes every whole record in `buf`; a partial record at the end is left unconsumed.
pub fn parse_utmp(buf: &[u8], layout: UtmpLayout) -> UtmpChunk {
    let size = layout.size();
    let mut chunk = UtmpChunk::default();
    for rec in buf.chunks_exact(size) {
        match parse_utmp_record(rec, layout) {
            Ok(r) => chunk.records.push(r),
            Err(_) => chunk.malformed += 1,
        }
        chunk.consumed += size;
    }
    chunk
}

/// Records looked at to choose a layout.
const LAYOUT_SAMPLE_RECORDS: usize = 64;
/// Bytes from a file's start [`detect_layout`] wants.
pub const LAYOUT_SAMPLE_BYTES: usize = LAYOUT_SAMPLE_RECORDS * 400;

/// Chooses the layout under which more records of `head` (a file's first bytes) are plausible;
/// `hint` (from the machine) breaks ties. `None` when no record is plausible under either
/// layout yet (an empty file, or only a partial first record): ask again when the file grows.
pub fn detect_layout(head: &[u8], hint: UtmpLayout) -> Option<UtmpLayout> {
    let score = |layout: UtmpLayout| {
        head.chunks_exact(layout.size())
            .take(LAYOUT_SAMPLE_RECORDS)
            .filter(|rec| parse_utmp_record(rec, layout).is_ok_and(|r| r.is_plausible()))
            .count()
    };
    let compat = score(UtmpLayout::Compat32);
    let native = score(UtmpLayout::Native64);
    match compat.cmp(&native) {
        _ if compat == 0 && native == 0 => None,
        std::cmp::Ordering::Greater => Some(UtmpLayout::Compat32),
        std::cmp::Ordering::Less => Some(UtmpLayout::Native64),
        std::cmp::Ordering::Equal => Some(hint),
    }
}

/// The login program, guessed from the terminal when /proc cannot tell: sshd writes
/// `ssh:notty` for failures, login(1) uses a console or serial line. Anything else (a pseudo
/// terminal could be sshd, telnetd, a display manager) stays unknown: `""`.
pub fn executable_for_line(line: &str) -> &'static str {
    if line.starts_with("ssh") {
        "/usr/sbin/sshd"
    } else if line.starts_with("tty") || line == "console" {
        "/bin/login"
    } else {
        ""
    }
}

/// The `Login` record of a wtmp (`failed == false`) or btmp record. `executable` is the login
/// program when known (see [`executable_for_line`]).
pub fn utmp_login(rec: &UtmpRecord, failed: bool, source: &str, executable: &str) -> Login {
    let mut extra = ExtraDetails::new();
    extra.insert("Source".into(), source.to_string());
    if !rec.line.is_empty() {
        extra.insert("Terminal".into(), rec.line.clone());
    }
    if !rec.host.is_empty() {
        extra.insert("Host".into(), rec.host.clone());
    }
    if let Some(t) = rec.time() {
        extra.insert("Time".into(), format_local(&t));
    }
    Login {
        process_id: u32::try_from(rec.pid).unwrap_or(0),
        user_id: None,
        user_name: Some(rec.user.clone()),
        operation: if failed { "btmp:failed" } else { "wtmp:login" }.to_string(),
        executable: executable.to_string(),
        remote_address: rec.remote_address(),
        remote_port: None,
        local_port: None,
        result: if failed {
            LoginResult::Fail
        } else {
            LoginResult::Success
        },
        extra_details: extra,
    }
}

// ---------------------------------------------------------------------------------------------
// auth.log / secure
// ---------------------------------------------------------------------------------------------

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
    fn new(operation: impl Into<String>, user: &'a str, result: LoginResult) -> Self {
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

// ---------------------------------------------------------------------------------------------
// Following files
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Wtmp,
    Btmp,
    AuthLog,
}

/// Where reading stopped in one file, as saved across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPosition {
    pub inode: u64,
    pub offset: u64,
    /// Length and FNV-1a hash of the file's first bytes, to tell a reused inode number apart.
    pub head_len: u64,
    pub head_hash: u64,
    /// In the middle of an overlong auth-log line being dropped.
    #[serde(default)]
    pub skip_line: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SavedFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    current: Option<SavedPosition>,
    /// The file before its last rotation, while it may still hold unread data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotated: Option<SavedPosition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SavedState {
    version: u32,
    files: BTreeMap<String, SavedFile>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The hash of the first `len` bytes of `file`, `None` when it is shorter.
fn head_hash(file: &File, len: u64) -> Option<u64> {
    let mut buf = vec![0u8; usize::try_from(len.min(HEAD_BYTES)).ok()?];
    file.read_exact_at(&mut buf, 0).ok()?;
    Some(fnv1a(&buf))
}

/// An open file and how far it has been read.
#[derive(Debug)]
struct Cursor {
    file: File,
    inode: u64,
    offset: u64,
    layout: Option<UtmpLayout>,
    skip_line: bool,
    head_len: u64,
    head_hash: u64,
    /// Polls in a row that found nothing new (for letting go of a rotated file).
    quiet: u32,
}

impl Cursor {
    fn new(file: File, inode: u64, offset: u64) -> Cursor {
        Cursor {
            file,
            inode,
            offset,
            layout: None,
            skip_line: false,
            head_len: 0,
            head_hash: fnv1a(&[]),
            quiet: 0,
        }
    }

    fn saved(&self) -> SavedPosition {
        SavedPosition {
            inode: self.inode,
            offset: self.offset,
            head_len: self.head_len,
            head_hash: self.head_hash,
            skip_line: self.skip_line,
        }
    }

    /// Extends the head fingerprint while the file is shorter than [`HEAD_BYTES`].
    fn refresh_head(&mut self) {
        let want = self.offset.min(HEAD_BYTES);
        if want > self.head_len
            && let Some(h) = head_hash(&self.file, want)
        {
            self.head_len = want;
            self.head_hash = h;
        }
    }

    /// Whether `pos` describes this file (same inode, same first bytes).
    fn matches(&self, pos: &SavedPosition) -> bool {
        pos.inode == self.inode && head_hash(&self.file, pos.head_len) == Some(pos.head_hash)
    }

    /// Back to the start of the same file (it was truncated in place).
    fn reset(&mut self) {
        self.offset = 0;
        self.layout = None;
        self.skip_line = false;
        self.head_len = 0;
        self.head_hash = fnv1a(&[]);
        self.quiet = 0;
    }
}

/// One followed path: the file there now and, after a rotation, the previous one until it has
/// been read to its end.
#[derive(Debug)]
struct Source {
    path: &'static str,
    kind: Kind,
    current: Option<Cursor>,
    rotated: Option<Cursor>,
}

/// What one poll found.
#[derive(Debug, Default)]
pub struct Batch {
    pub logins: Vec<Login>,
    /// Records or lines skipped as malformed or overlong.
    pub malformed: u64,
    /// Read errors (besides missing files).
    pub read_errors: u64,
    /// A file had more data than one poll reads: poll again without waiting.
    pub more: bool,
}

/// Follows every login source under a host root, remembering positions in a state file.
/// Blocking: call it from a blocking thread.
pub struct LoginFollower {
    host: HostRoot,
    state_path: PathBuf,
    sources: Vec<Source>,
    hint: UtmpLayout,
    uids: UidLookup,
    /// The state last written (to skip writing an unchanged one).
    written: Option<SavedState>,
}

impl LoginFollower {
    /// Opens every source and positions it from the saved state (or per `first_start` when the
    /// collector never ran on this host).
    pub fn open(host: HostRoot, state_dir: &Path, first_start: StartAt) -> LoginFollower {
        let state_path = state_dir.join(STATE_FILE);
        let saved = load_state(&state_path);
        let hint = UtmpLayout::for_machine(&machine(&host));
        let mut follower = LoginFollower {
            host,
            state_path,
            sources: [
                (WTMP, Kind::Wtmp),
                (BTMP, Kind::Btmp),
                (AUTH_LOG, Kind::AuthLog),
                (SECURE, Kind::AuthLog),
            ]
            .into_iter()
            .map(|(path, kind)| Source {
                path,
                kind,
                current: None,
                rotated: None,
            })
            .collect(),
            hint,
            uids: UidLookup::default(),
            written: None,
        };
        for i in 0..follower.sources.len() {
            let entry = saved.as_ref().map(|s| {
                s.files
                    .get(follower.sources[i].path)
                    .cloned()
                    .unwrap_or_default()
            });
            follower.position(i, entry, first_start);
        }
        follower
    }

    /// Positions source `i`: `entry` is its saved state, `None` on a first start ever.
    fn position(&mut self, i: usize, entry: Option<SavedFile>, first_start: StartAt) {
        let hint = self.hint;
        let path = self.host.path(self.sources[i].path);
        let kind = self.sources[i].kind;
        let opened = open_file(&path);
        let src = &mut self.sources[i];
        let Some(entry) = entry else {
            // First start ever.
            if let Some((file, inode, len)) = opened {
                let mut c = Cursor::new(file, inode, 0);
                if first_start == StartAt::End {
                    c.offset = len;
                    if kind != Kind::AuthLog {
                        // Undecided (an empty file): decided when records arrive.
                        c.layout = utmp_layout_of(&c.file, hint);
                        c.offset = len - len % c.layout.unwrap_or(hint).size() as u64;
                    }
                    // An unterminated last line is taken as read; the rest of it is dropped.
                    c.skip_line = kind == Kind::AuthLog && !ends_with_newline(&c.file, len);
                }
                c.refresh_head();
                src.current = Some(c);
            }
            return;
        };
        let mut restored = false;
        if let Some((file, inode, len)) = opened {
            let c = Cursor::new(file, inode, 0);
            src.current = Some(match entry.current {
                Some(pos) if c.matches(&pos) && pos.offset <= len => {
                    restored = true;
                    restore(c.file, &pos)
                }
                // Appeared, or replaced while we were stopped: all of it is new.
                _ => c,
            });
        }
        // A file rotated away before the last stop, or while we were stopped, may still hold
        // unread data: find it next to the path. (Should both exist, the older is read.)
        let unread = entry.rotated.or(entry.current.filter(|_| !restored));
        src.rotated = unread.and_then(|pos| find_rotated(&path, &pos).map(|f| restore(f, &pos)));
        if let Some(c) = &mut src.current {
            c.refresh_head();
        }
    }

    /// Host paths of the sources that exist now.
    pub fn present(&self) -> Vec<&'static str> {
        self.sources
            .iter()
            .filter(|s| s.current.is_some())
            .map(|s| s.path)
            .collect()
    }

    /// Reads whatever is new in every source.
    pub fn poll(&mut self) -> Batch {
        let mut batch = Batch::default();
        self.uids.refresh(&self.host);
        let env = ReadEnv {
            host: &self.host,
            hint: self.hint,
            uids: &self.uids,
            now: Local::now(),
        };
        for src in &mut self.sources {
            poll_source(src, &env, &mut batch);
        }
        batch
    }

    fn state(&self) -> SavedState {
        SavedState {
            version: 1,
            files: self
                .sources
                .iter()
                .map(|s| {
                    let entry = SavedFile {
                        current: s.current.as_ref().map(Cursor::saved),
                        rotated: s.rotated.as_ref().map(Cursor::saved),
                    };
                    (s.path.to_string(), entry)
                })
                .collect(),
        }
    }

    /// Writes the positions if they changed since the last write.
    pub fn save(&mut self) -> Result<(), Error> {
        let state = self.state();
        if self.written.as_ref() == Some(&state) {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(&state).map_err(Error::StateEncode)?;
        write_atomic(&self.state_path, &bytes)?;
        self.written = Some(state);
        Ok(())
    }
}

/// What a read needs besides the file.
struct ReadEnv<'a> {
    host: &'a HostRoot,
    hint: UtmpLayout,
    uids: &'a UidLookup,
    now: DateTime<Local>,
}

/// How a file may still change, which decides what to do with an unfinished last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eof {
    /// The followed file: an unfinished record is completed later.
    Growing,
    /// Rotated away: the writer may still finish its last line until it reopens its log; after
    /// [`ROTATED_QUIET_POLLS`] quiet polls, the end is final.
    Rotated,
    /// Read to the end now (a second rotation came before the first file was finished).
    Final,
}

fn poll_source(src: &mut Source, env: &ReadEnv<'_>, batch: &mut Batch) {
    let path = env.host.path(src.path);
    // Has the path been replaced or truncated?
    let meta = std::fs::metadata(&path).ok();
    if let Some(cur) = &mut src.current {
        match &meta {
            Some(m) if m.ino() == cur.inode => {
                if m.len() < cur.offset {
                    // Truncated in place (copytruncate): start again.
                    cur.reset();
                }
            }
            _ => {
                // Renamed or deleted: read the old file to its end, then the new one.
                if let Some(mut older) = src.rotated.take() {
                    loop {
                        let before = older.offset;
                        read_cursor(&mut older, src.kind, src.path, Eof::Final, env, batch);
                        if older.offset == before {
                            break;
                        }
                    }
                }
                src.rotated = src.current.take();
            }
        }
    }
    if src.current.is_none()
        && meta.is_some()
        && let Some((file, inode, _)) = open_file(&path)
    {
        src.current = Some(Cursor::new(file, inode, 0));
    }
    if let Some(old) = &mut src.rotated {
        read_cursor(old, src.kind, src.path, Eof::Rotated, env, batch);
        if old.quiet >= ROTATED_QUIET_POLLS {
            src.rotated = None;
        }
    }
    if let Some(cur) = &mut src.current {
        read_cursor(cur, src.kind, src.path, Eof::Growing, env, batch);
    }
}

/// Reads what is new in one file (at most [`CHUNK_BYTES`]) and turns it into logins.
fn read_cursor(
    c: &mut Cursor,
    kind: Kind,
    source: &str,
    eof: Eof,
    env: &ReadEnv<'_>,
    batch: &mut Batch,
) {
    if kind != Kind::AuthLog && c.layout.is_none() {
        c.layout = utmp_layout_of(&c.file, env.hint);
        match c.layout {
            // Positioned with a guessed layout (first start on a file of garbage): realign.
            Some(l) => c.offset -= c.offset % l.size() as u64,
            None => {
                c.quiet += 1;
                return;
            }
        }
    }
    let read = c.file.metadata().and_then(|m| {
        // Sized by what is there, so an idle poll allocates nothing.
        let available = m.len().saturating_sub(c.offset);
        let mut buf = vec![0u8; available.min(CHUNK_BYTES as u64) as usize];
        let n = read_at_most(&c.file, &mut buf, c.offset)?;
        buf.truncate(n);
        Ok((buf, available))
    });
    let (buf, available) = match read {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(collector = COLLECTOR, source, error = %e, "reading a login source");
            batch.read_errors += 1;
            c.quiet += 1;
            return;
        }
    };
    let whole = available <= CHUNK_BYTES as u64;
    batch.more |= !whole;
    let at_eof = whole
        && match eof {
            Eof::Growing => false,
            Eof::Rotated => c.quiet + 1 >= ROTATED_QUIET_POLLS,
            Eof::Final => true,
        };
    let before = c.offset;
    match (kind, c.layout) {
        (Kind::AuthLog, _) => {
            let (lines, consumed, too_long) = split_lines(&buf, &mut c.skip_line, at_eof);
            batch.malformed += too_long as u64;
            for line in lines {
                match parse_auth_line(&String::from_utf8_lossy(line)) {
                    AuthLine::Login(a) => {
                        let login = a.to_login(source, env.now, |name| env.uids.uid(name));
                        batch.logins.push(login);
                    }
                    AuthLine::Other => {}
                    AuthLine::Malformed => batch.malformed += 1,
                }
            }
            c.offset += consumed as u64;
        }
        (_, Some(layout)) => {
            let chunk = parse_utmp(&buf, layout);
            batch.malformed += chunk.malformed as u64;
            let failed = kind == Kind::Btmp;
            for rec in &chunk.records {
                let wanted = if failed {
                    rec.kind != EMPTY
                } else {
                    rec.kind == USER_PROCESS
                };
                if !wanted {
                    continue;
                }
                let exe = utmp_executable(env.host, rec, env.now);
                let mut login = utmp_login(rec, failed, source, &exe);
                login.user_id = env.uids.uid(&rec.user).map(|u| u.to_string());
                batch.logins.push(login);
            }
            c.offset += chunk.consumed as u64;
            if at_eof && chunk.consumed < buf.len() {
                // A partial record at the end of a file that will not grow again.
                batch.malformed += 1;
                c.offset += (buf.len() - chunk.consumed) as u64;
            }
        }
        (_, None) => {}
    }
    if c.offset == before {
        c.quiet += 1;
    } else {
        c.quiet = 0;
        c.refresh_head();
    }
}

/// The login program of a wtmp/btmp record: the process's executable when it is still running
/// and the record is fresh, else a guess from the terminal.
fn utmp_executable(host: &HostRoot, rec: &UtmpRecord, now: DateTime<Local>) -> String {
    let fresh = (now.timestamp() - rec.seconds).abs() <= PROC_LOOKUP_MAX_AGE_SECS;
    if fresh
        && let Ok(pid) = u32::try_from(rec.pid)
        && pid > 0
        && let Some(exe) = super::proc_info::read(host, pid).exe
    {
        return exe;
    }
    executable_for_line(&rec.line).to_string()
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn utmp_layout_of(file: &File, hint: UtmpLayout) -> Option<UtmpLayout> {
    let mut head = vec![0u8; LAYOUT_SAMPLE_BYTES];
    let n = read_at_most(file, &mut head, 0).ok()?;
    head.truncate(n);
    // A file whose whole sample is implausible under both layouts is garbage at its start:
    // rather than wait forever, read it the way this machine's glibc writes it.
    detect_layout(&head, hint).or((n == LAYOUT_SAMPLE_BYTES).then_some(hint))
}

fn ends_with_newline(file: &File, len: u64) -> bool {
    let mut b = [0u8; 1];
    len == 0 || (file.read_exact_at(&mut b, len - 1).is_ok() && b[0] == b'\n')
}

/// Opens a regular file: (file, inode, length). FIFOs and devices are refused (a read could
/// block forever).
fn open_file(path: &Path) -> Option<(File, u64, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(collector = COLLECTOR, path = %path.display(), error = %e, "cannot open a login source");
            }
            return None;
        }
    };
    let meta = file.metadata().ok()?;
    meta.is_file().then(|| (file, meta.ino(), meta.len()))
}

fn restore(file: File, pos: &SavedPosition) -> Cursor {
    let mut c = Cursor::new(file, pos.inode, pos.offset);
    c.skip_line = pos.skip_line;
    c.head_len = pos.head_len;
    c.head_hash = pos.head_hash;
    c
}

/// The rotated predecessor of `path` (`auth.log.1`, `secure-20261123`, `wtmp.1`): a file next
/// to it whose name starts with the same name and that is the saved file.
fn find_rotated(path: &Path, pos: &SavedPosition) -> Option<File> {
    let dir = path.parent()?;
    let name = path.file_name()?.to_str()?;
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let candidate = entry.file_name();
        let candidate = candidate.to_str()?;
        if candidate == name || !candidate.starts_with(name) {
            return None;
        }
        if entry.metadata().ok()?.ino() != pos.inode {
            return None;
        }
        let (file, inode, len) = open_file(&entry.path())?;
        let c = Cursor::new(file, inode, 0);
        (c.matches(pos) && pos.offset <= len).then_some(c.file)
    })
}

fn load_state(path: &Path) -> Option<SavedState> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(collector = COLLECTOR, path = %path.display(), error = %e, "cannot read saved login positions; starting at the end of the files");
            return None;
        }
    };
    match serde_json::from_slice::<SavedState>(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(collector = COLLECTOR, path = %path.display(), error = %e, "saved login positions are corrupt; starting at the end of the files");
            None
        }
    }
}

/// Writes through a temporary file and a rename, so a crash leaves the old or the new content.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let err = |source| Error::StateWrite {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The host's machine name (`uname -m`): /proc/sys/kernel/arch under the host root, else the
/// running kernel's (the same kernel, in a container).
fn machine(host: &HostRoot) -> String {
    if let Ok(s) = host.read_to_string("/proc/sys/kernel/arch")
        && !s.trim().is_empty()
    {
        return s.trim().to_string();
    }
    super::system::machine().unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// User name → uid, from the host's passwd, re-read when the file changes.
#[derive(Debug, Default)]
struct UidLookup {
    uids: HashMap<String, u32>,
    stamp: Option<(SystemTime, u64)>,
}

impl UidLookup {
    fn refresh(&mut self, host: &HostRoot) {
        let stamp = std::fs::metadata(host.path("/etc/passwd"))
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some() && stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        self.uids = host
            .read_to_string("/etc/passwd")
            .map(|t| {
                let mut map = HashMap::new();
                for u in super::accounts::parse_passwd(&t).entries {
                    // The first entry wins, as with getpwnam.
                    map.entry(u.name).or_insert(u.uid);
                }
                map
            })
            .unwrap_or_default();
    }

    fn uid(&self, name: &str) -> Option<u32> {
        self.uids.get(name).copied()
    }
}

// ---------------------------------------------------------------------------------------------
// The task
// ---------------------------------------------------------------------------------------------

/// The login collector's task, with default options: follows the sources until `ctx.cancel`.
/// Emits one `Login` event per login, failure, sudo or su use; a `CollectorStatus` (Degraded)
/// when no source exists, and Up when one appears.
pub async fn run(ctx: Context) {
    run_with(ctx, LoginOptions::default()).await
}

/// [`run`] with explicit options (tests use a short poll).
pub async fn run_with(ctx: Context, opts: LoginOptions) {
    let host = ctx.host.clone();
    let state_dir = ctx.state_dir.clone();
    let first_start = opts.first_start;
    let opened =
        tokio::task::spawn_blocking(move || LoginFollower::open(host, &state_dir, first_start))
            .await;
    let Ok(mut follower) = opened else {
        ctx.metrics.error(COLLECTOR, "panic");
        ctx.report_status(
            COLLECTOR,
            CollectorHealth::Down,
            "opening the login sources failed",
            None,
        );
        return;
    };
    let mut degraded = false;
    let mut save_failed = false;
    loop {
        // Save, then read: the positions saved are those of events already handed over (a
        // crash in between repeats a few logins, never loses one). The first save also fixes
        // the first start's choice, so a restart before any login does not make it again.
        let joined = tokio::task::spawn_blocking(move || {
            let saved = follower.save();
            let batch = follower.poll();
            (follower, saved, batch)
        })
        .await;
        let Ok((f, saved, batch)) = joined else {
            ctx.metrics.error(COLLECTOR, "panic");
            ctx.report_status(
                COLLECTOR,
                CollectorHealth::Down,
                "reading the login sources failed",
                None,
            );
            return;
        };
        follower = f;
        match saved {
            Err(e) => {
                ctx.metrics.error(COLLECTOR, "state_write");
                if !save_failed {
                    tracing::warn!(collector = COLLECTOR, error = %e, cause = %source_text(&e), "cannot save login positions; a restart may repeat or skip logins");
                }
                save_failed = true;
            }
            Ok(()) => save_failed = false,
        }
        let present = follower.present();
        if present.is_empty() != degraded {
            degraded = present.is_empty();
            if degraded {
                ctx.report_status(
                    COLLECTOR,
                    CollectorHealth::Degraded,
                    format!(
                        "no login source: {WTMP}, {BTMP}, {AUTH_LOG} and {SECURE} are all missing"
                    ),
                    Some("checking for them every poll"),
                );
            } else {
                ctx.report_status(
                    COLLECTOR,
                    CollectorHealth::Up,
                    format!("following {}", present.join(", ")),
                    None,
                );
            }
        }
        for _ in 0..batch.malformed {
            ctx.metrics.error(COLLECTOR, "malformed_record");
        }
        for _ in 0..batch.read_errors {
            ctx.metrics.error(COLLECTOR, "read");
        }
        for login in batch.logins {
            let event = Event::new(Payload::Login(vec![login]));
            tokio::select! {
                sent = ctx.emit(COLLECTOR, event) => if !sent { return },
                // Stopping while the pipeline is full: this batch is read again next start.
                _ = ctx.cancel.cancelled() => return,
            }
        }
        if !batch.more {
            tokio::select! {
                _ = ctx.cancel.cancelled() => break,
                _ = tokio::time::sleep(opts.poll) => {}
            }
        } else if ctx.cancel.is_cancelled() {
            break;
        }
    }
    let saved = tokio::task::spawn_blocking(move || follower.save()).await;
    if let Ok(Err(e)) = saved {
        ctx.metrics.error(COLLECTOR, "state_write");
        tracing::warn!(collector = COLLECTOR, error = %e, cause = %source_text(&e), "cannot save login positions at shutdown");
    }
}

/// The causes of an error, joined (its own message is logged separately).
fn source_text(e: &Error) -> String {
    let mut causes = Vec::new();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        causes.push(cause.to_string());
        next = cause.source();
    }
    causes.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use std::io::Write;
    use std::sync::Arc;
    use tokio::sync::{mpsc, watch};
    use tokio_util::sync::CancellationToken;

    const T0: i64 = 1_795_000_000; // 2026-11-19

    /// A utmp record written field by field at the layout's offsets.
    #[allow(clippy::too_many_arguments)]
    fn utmp(
        layout: UtmpLayout,
        kind: i16,
        pid: i32,
        line: &str,
        user: &[u8],
        host: &str,
        sec: i64,
        addr: [u8; 16],
    ) -> Vec<u8> {
        let mut b = vec![0u8; layout.size()];
        let put = |b: &mut [u8], s: &[u8]| b[..s.len()].copy_from_slice(s);
        b[0..2].copy_from_slice(&kind.to_ne_bytes());
        b[4..8].copy_from_slice(&pid.to_ne_bytes());
        put(&mut b[8..40], line.as_bytes());
        put(&mut b[40..44], b"ts/0");
        put(&mut b[44..76], user);
        put(&mut b[76..332], host.as_bytes());
        let (s, u, a) = layout.tail_offsets();
        match layout {
            UtmpLayout::Compat32 => {
                b[336..340].copy_from_slice(&4242_i32.to_ne_bytes());
                b[s..s + 4].copy_from_slice(&(sec as u32).to_ne_bytes());
                b[u..u + 4].copy_from_slice(&123_456_i32.to_ne_bytes());
            }
            UtmpLayout::Native64 => {
                b[336..344].copy_from_slice(&4242_i64.to_ne_bytes());
                b[s..s + 8].copy_from_slice(&sec.to_ne_bytes());
                b[u..u + 8].copy_from_slice(&123_456_i64.to_ne_bytes());
            }
        }
        b[a..a + 16].copy_from_slice(&addr);
        b
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut r = [0u8; 16];
        r[..4].copy_from_slice(&a);
        r
    }

    fn sample(layout: UtmpLayout) -> Vec<u8> {
        let v6: [u8; 16] = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets();
        [
            utmp(layout, 2, 0, "~", b"reboot", "6.18.0", T0, [0; 16]),
            utmp(
                layout,
                USER_PROCESS,
                1200,
                "pts/0",
                b"alice",
                "203.0.113.9",
                T0 + 5,
                v4([203, 0, 113, 9]),
            ),
            utmp(
                layout,
                DEAD_PROCESS,
                1200,
                "pts/0",
                b"",
                "",
                T0 + 60,
                [0; 16],
            ),
            utmp(
                layout,
                6,
                1300,
                "ssh:notty",
                b"admin",
                "2001:db8::7",
                T0 + 70,
                v6,
            ),
        ]
        .concat()
    }

    #[test]
    fn layouts_match_glibc() {
        // libc mirrors glibc's struct utmpx for the target this test runs on.
        let size = std::mem::size_of::<libc::utmpx>();
        let layout = UtmpLayout::for_machine(std::env::consts::ARCH);
        assert_eq!(size, layout.size());
        let (sec, _, addr) = layout.tail_offsets();
        assert_eq!(std::mem::offset_of!(libc::utmpx, ut_tv), sec);
        assert_eq!(std::mem::offset_of!(libc::utmpx, ut_addr_v6), addr);
        assert_eq!(std::mem::offset_of!(libc::utmpx, ut_user), 44);
        assert_eq!(std::mem::offset_of!(libc::utmpx, ut_host), 76);
        assert_eq!(UtmpLayout::for_machine("x86_64"), UtmpLayout::Compat32);
        assert_eq!(UtmpLayout::for_machine("armv7l"), UtmpLayout::Compat32);
        assert_eq!(UtmpLayout::for_machine("i686"), UtmpLayout::Compat32);
        assert_eq!(UtmpLayout::for_machine("aarch64\n"), UtmpLayout::Native64);
    }

    #[cfg(target_env = "gnu")]
    #[test]
    fn reads_a_record_written_by_glibc() {
        unsafe extern "C" {
            fn updwtmpx(file: *const libc::c_char, ut: *const libc::utmpx);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wtmp");
        std::fs::write(&path, b"").unwrap();
        // SAFETY: utmpx is plain old data; all-zero is a valid value.
        let mut ut: libc::utmpx = unsafe { std::mem::zeroed() };
        ut.ut_type = libc::USER_PROCESS;
        ut.ut_pid = 4321;
        for (d, s) in ut.ut_line.iter_mut().zip(b"pts/7") {
            *d = *s as libc::c_char;
        }
        for (d, s) in ut.ut_user.iter_mut().zip(b"glibcuser") {
            *d = *s as libc::c_char;
        }
        for (d, s) in ut.ut_host.iter_mut().zip(b"198.51.100.4") {
            *d = *s as libc::c_char;
        }
        ut.ut_tv.tv_sec = T0 as _;
        ut.ut_addr_v6[0] = i32::from_ne_bytes([198, 51, 100, 4]);
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: both pointers are valid for the call; glibc appends one record to the file.
        unsafe { updwtmpx(c_path.as_ptr(), &ut) };
        let bytes = std::fs::read(&path).unwrap();
        let layout = detect_layout(&bytes, UtmpLayout::Compat32).unwrap();
        assert_eq!(layout, UtmpLayout::for_machine(std::env::consts::ARCH));
        assert_eq!(bytes.len(), layout.size());
        let r = parse_utmp_record(&bytes, layout).unwrap();
        assert_eq!((r.kind, r.pid, r.seconds), (USER_PROCESS, 4321, T0));
        assert_eq!((r.line.as_str(), r.user.as_str()), ("pts/7", "glibcuser"));
        assert_eq!(r.addr, Some("198.51.100.4".parse().unwrap()));
    }

    #[test]
    fn parses_both_layouts_and_detects_them() {
        for layout in [UtmpLayout::Compat32, UtmpLayout::Native64] {
            let other = match layout {
                UtmpLayout::Compat32 => UtmpLayout::Native64,
                UtmpLayout::Native64 => UtmpLayout::Compat32,
            };
            let buf = sample(layout);
            // The data wins over a wrong hint, also with a single record.
            assert_eq!(detect_layout(&buf, other), Some(layout), "{layout:?}");
            assert_eq!(
                detect_layout(&buf[layout.size()..2 * layout.size()], other),
                Some(layout)
            );
            let chunk = parse_utmp(&buf, layout);
            assert_eq!(
                (chunk.records.len(), chunk.consumed, chunk.malformed),
                (4, buf.len(), 0)
            );
            let login = &chunk.records[1];
            assert_eq!((login.kind, login.pid), (USER_PROCESS, 1200));
            assert_eq!(
                (login.line.as_str(), login.user.as_str()),
                ("pts/0", "alice")
            );
            assert_eq!(login.host, "203.0.113.9");
            assert_eq!((login.seconds, login.micros), (T0 + 5, 123_456));
            assert_eq!(login.remote_address(), Some("203.0.113.9".parse().unwrap()));
            let failed = &chunk.records[3];
            assert_eq!(
                failed.remote_address(),
                Some("2001:db8::7".parse().unwrap())
            );
            let l = utmp_login(failed, true, BTMP, executable_for_line(&failed.line));
            assert_eq!(l.operation, "btmp:failed");
            assert_eq!(l.result, LoginResult::Fail);
            assert_eq!(l.executable, "/usr/sbin/sshd");
            assert_eq!(l.user_name.as_deref(), Some("admin"));
            assert_eq!(l.extra_details["Terminal"], "ssh:notty");
            assert!(l.extra_details["Time"].starts_with("2026-11-"));
        }
        assert_eq!(detect_layout(&[], UtmpLayout::Compat32), None);
        assert_eq!(detect_layout(&[0u8; 4000], UtmpLayout::Compat32), None);
    }

    #[test]
    fn truncated_and_garbage_utmp_never_panic() {
        let layout = UtmpLayout::Compat32;
        let buf = sample(layout);
        let cut = &buf[..2 * layout.size() + 100];
        let chunk = parse_utmp(cut, layout);
        assert_eq!(
            (chunk.records.len(), chunk.consumed),
            (2, 2 * layout.size())
        );
        assert!(matches!(
            parse_utmp_record(&buf[..10], layout),
            Err(Error::ShortRecord { len: 10, size: 384 })
        ));
        // A bad type is skipped and counted; names that are not UTF-8 are kept, replaced.
        let mut bad = utmp(layout, 77, 1, "x", b"u", "", T0, [0; 16]);
        bad.extend(utmp(
            layout,
            USER_PROCESS,
            1,
            "tty1",
            b"\xff\xferoot",
            "",
            T0,
            [0; 16],
        ));
        let chunk = parse_utmp(&bad, layout);
        assert_eq!(chunk.malformed, 1);
        assert_eq!(chunk.records[0].user, "\u{fffd}\u{fffd}root");
        // Arbitrary bytes: whatever comes out, no panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for l in [UtmpLayout::Compat32, UtmpLayout::Native64] {
            let _ = parse_utmp(&noise, l);
            for r in parse_utmp(&noise, l).records {
                let _ = (r.time(), r.remote_address());
            }
        }
        let _ = detect_layout(&noise, UtmpLayout::Native64);
    }

    #[test]
    fn addresses_decode_as_openssh_writes_them() {
        assert_eq!(decode_addr(&[0; 16]), None);
        assert_eq!(
            decode_addr(&v4([10, 1, 2, 3])),
            Some("10.1.2.3".parse().unwrap())
        );
        let mapped = "::ffff:192.0.2.1".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(decode_addr(&mapped), Some("192.0.2.1".parse().unwrap()));
        let v6 = "fe80::1".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(decode_addr(&v6), Some("fe80::1".parse().unwrap()));
    }

    fn auth(line: &str) -> AuthLogin {
        match parse_auth_line(line) {
            AuthLine::Login(a) => *a,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn detail<'a>(a: &'a AuthLogin, key: &str) -> Option<&'a str> {
        a.details
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn sshd_lines() {
        let a = auth(
            "Nov 23 17:42:57 edge sshd[1234]: Accepted password for alice from 203.0.113.5 port 50022 ssh2",
        );
        assert_eq!(
            (a.service, a.pid, a.operation.as_str()),
            (Service::Sshd, Some(1234), "sshd:password")
        );
        assert_eq!((a.user.as_str(), a.result), ("alice", LoginResult::Success));
        assert_eq!(
            (a.remote_host.as_deref(), a.remote_port),
            (Some("203.0.113.5"), Some(50022))
        );
        assert_eq!(a.hostname, "edge");
        let a = auth(
            "2026-11-23T17:42:57.123456+00:00 edge sshd[99]: Accepted publickey for bob from 2001:db8::5 port 40000 ssh2: ED25519 SHA256:AbCd",
        );
        assert_eq!(a.operation, "sshd:publickey");
        assert_eq!(detail(&a, "Key"), Some("ED25519 SHA256:AbCd"));
        assert!(matches!(a.time, SyslogTime::Rfc3339(_)));
        let login = a.to_login(AUTH_LOG, Local::now(), |n| (n == "bob").then_some(1001));
        assert_eq!(login.user_id.as_deref(), Some("1001"));
        assert_eq!(login.remote_address, Some("2001:db8::5".parse().unwrap()));
        assert_eq!(login.executable, "/usr/sbin/sshd");
        assert_eq!(login.local_port, None);
        assert_eq!(login.extra_details["Time"], "2026-11-23T17:42:57.123+00:00");
        let a = auth(
            "Nov  3 01:02:03 edge sshd-session[7]: Accepted keyboard-interactive/pam for carol from 10.0.0.1 port 1 ssh2",
        );
        assert_eq!(a.operation, "sshd:keyboard-interactive");

        let a = auth(
            "Nov 23 17:42:57 edge sshd[1234]: Failed password for invalid user admin from 198.51.100.7 port 41234 ssh2",
        );
        assert_eq!(
            (a.user.as_str(), a.invalid_user, a.result),
            ("admin", true, LoginResult::Fail)
        );
        let login = a.to_login(AUTH_LOG, Local::now(), |_| Some(0));
        assert_eq!(login.user_id, None, "an invalid user has no uid");
        assert_eq!(login.extra_details["InvalidUser"], "true");
        let a = auth(
            "Nov 23 17:42:57 edge sshd[1234]: Failed password for root from 198.51.100.7 port 41234 ssh2",
        );
        assert_eq!((a.user.as_str(), a.invalid_user), ("root", false));
        let a =
            auth("Nov 23 17:42:57 edge sshd[5]: Invalid user oracle from 198.51.100.8 port 5555");
        assert_eq!(
            (a.operation.as_str(), a.user.as_str()),
            ("sshd:invalid-user", "oracle")
        );
        let a = auth("Nov 23 17:42:57 edge sshd[5]: Invalid user  from 198.51.100.8 port 5555");
        assert_eq!(a.user, "");
        let a = auth(
            "Nov 23 17:42:57 edge sshd[6]: Connection closed by authenticating user root 198.51.100.9 port 60000 [preauth]",
        );
        assert_eq!(
            (a.operation.as_str(), a.user.as_str()),
            ("sshd:preauth-closed", "root")
        );
        assert_eq!(
            (a.remote_host.as_deref(), a.remote_port),
            (Some("198.51.100.9"), Some(60000))
        );
        let a = auth(
            "Nov 23 17:42:57 edge sshd[6]: Disconnected from authenticating user pi 198.51.100.9 port 60001 [preauth]",
        );
        assert_eq!(a.user, "pi");
        let a = auth(
            "Nov 23 17:42:57 edge sshd[6]: User guest from 198.51.100.10 not allowed because not listed in AllowUsers",
        );
        assert_eq!(
            (a.operation.as_str(), a.remote_port),
            ("sshd:not-allowed", None)
        );
        // UseDNS: a host name instead of an address.
        let a = auth(
            "Nov 23 17:42:57 edge sshd[6]: Accepted password for al from gw.example.net port 2 ssh2",
        );
        let login = a.to_login(AUTH_LOG, Local::now(), |_| None);
        assert_eq!(login.remote_address, None);
        assert_eq!(login.extra_details["RemoteHost"], "gw.example.net");
        // rsyslog's repeat reduction.
        let a = auth(
            "Nov 23 17:42:57 edge sshd[6]: message repeated 4 times: [ Failed password for root from 198.51.100.7 port 41234 ssh2]",
        );
        assert_eq!((a.repeat, a.user.as_str()), (Some(4), "root"));
    }

    #[test]
    fn sshd_user_names_cannot_spoof_the_address() {
        let a = auth(
            "Nov 23 17:42:57 edge sshd[1]: Invalid user x from 1.1.1.1 port 22 from 198.51.100.7 port 4000",
        );
        assert_eq!(a.user, "x from 1.1.1.1 port 22");
        assert_eq!(a.remote_host.as_deref(), Some("198.51.100.7"));
        let a = auth(
            "Nov 23 17:42:57 edge sshd[1]: Failed password for invalid user y from 1.1.1.1 port 2 ssh2 from 198.51.100.7 port 4000 ssh2",
        );
        assert_eq!(a.remote_host.as_deref(), Some("198.51.100.7"));
        let a = auth(
            "Nov 23 17:42:57 edge sshd[1]: Connection closed by authenticating user z 1.1.1.1 port 2 198.51.100.7 port 4000 [preauth]",
        );
        assert_eq!(
            (a.user.as_str(), a.remote_port),
            ("z 1.1.1.1 port 2", Some(4000))
        );
    }

    #[test]
    fn sudo_and_su_lines() {
        let a = auth(
            "Nov 23 17:42:57 edge sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id ; echo x",
        );
        assert_eq!(
            (a.service, a.pid, a.result),
            (Service::Sudo, None, LoginResult::Success)
        );
        assert_eq!((a.operation.as_str(), a.user.as_str()), ("sudo", "alice"));
        assert_eq!(detail(&a, "TargetUser"), Some("root"));
        assert_eq!(detail(&a, "Terminal"), Some("pts/0"));
        assert_eq!(detail(&a, "Command"), Some("/usr/bin/id ; echo x"));
        let login = a.to_login(AUTH_LOG, Local::now(), |_| Some(1000));
        assert_eq!(
            (login.process_id, login.executable.as_str()),
            (0, "/usr/bin/sudo")
        );
        let a = auth(
            "2026-11-23T17:42:57+01:00 edge sudo[812]:    alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/sh",
        );
        assert_eq!((a.result, a.pid), (LoginResult::Fail, Some(812)));
        assert_eq!(detail(&a, "Reason"), Some("3 incorrect password attempts"));
        assert_eq!(detail(&a, "Command"), Some("/bin/sh"));
        let a = auth(
            "Nov 23 17:42:57 edge sudo:      bob : user NOT in sudoers ; TTY=pts/1 ; PWD=/ ; USER=root ; COMMAND=/bin/ls",
        );
        assert_eq!((a.user.as_str(), a.result), ("bob", LoginResult::Fail));
        let a = auth(
            "Nov 23 17:42:57 edge sudo: pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=alice",
        );
        assert_eq!((a.user.as_str(), a.result), ("alice", LoginResult::Fail));
        assert_eq!(detail(&a, "TargetUser"), None);

        let a = auth("Nov 23 17:42:57 edge su[2345]: (to root) alice on pts/0");
        assert_eq!(
            (a.service, a.result, a.user.as_str()),
            (Service::Su, LoginResult::Success, "alice")
        );
        assert_eq!(detail(&a, "TargetUser"), Some("root"));
        assert_eq!(
            a.to_login(SECURE, Local::now(), |_| None).executable,
            "/bin/su"
        );
        let a = auth("Nov 23 17:42:57 edge su[2345]: FAILED SU (to root) alice on pts/0");
        assert_eq!(a.result, LoginResult::Fail);
        let a = auth(
            "Nov 23 17:42:57 edge su[2345]: pam_unix(su-l:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=root",
        );
        assert_eq!((a.user.as_str(), a.result), ("alice", LoginResult::Fail));
        assert_eq!(detail(&a, "TargetUser"), Some("root"));
        let a = auth("Nov 23 17:42:57 edge su[1]: FAILED su for root by mallory");
        assert_eq!((a.user.as_str(), a.result), ("mallory", LoginResult::Fail));
        let a = auth("Nov 23 17:42:57 edge su[1]: Successful su for root by mallory");
        assert_eq!(a.result, LoginResult::Success);
    }

    #[test]
    fn other_and_garbage_lines() {
        for line in [
            "Nov 23 17:42:57 edge sshd[1]: Received disconnect from 1.2.3.4 port 5:11: Bye [preauth]",
            "Nov 23 17:42:57 edge sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4",
            "Nov 23 17:42:57 edge sudo: pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)",
            "Nov 23 17:42:57 edge CRON[3]: pam_unix(cron:session): session closed for user root",
            "Nov 23 17:42:57 edge sshd[1]: Accepted password for",
            "Nov 23 17:42:57 edge sudo: unable to resolve host edge",
        ] {
            assert_eq!(parse_auth_line(line), AuthLine::Other, "{line}");
        }
        for line in [
            "",
            "garbage",
            "Foo 23 17:42:57 edge sshd[1]: Accepted password for a from 1.2.3.4 port 1 ssh2",
            "Nov 32 17:42:57 edge sshd[1]: x",
            "Nov 23 25:42:57 edge sshd[1]: x",
            "Nov 23 17:42:57 edge sshd[x]: x",
            "Nov 23 17:42:57 edge",
            "2026-13-23T17:42:57Z edge sshd[1]: x",
            "\u{0}\u{1}\u{2}",
        ] {
            assert_eq!(parse_auth_line(line), AuthLine::Malformed, "{line:?}");
        }
        // Multi-byte characters anywhere must not split a char boundary.
        for line in [
            "Nov 23 17:42:57 é sshd[1]: Accepted é for é from é port 1 ssh2",
            "Nov 23 17:42:57 h su[1]: (to é) é on é",
        ] {
            let _ = parse_auth_line(line);
        }
    }

    #[test]
    fn classic_timestamps_get_the_right_year() {
        let now = Local.with_ymd_and_hms(2027, 1, 2, 10, 0, 0).unwrap();
        let t = SyslogTime::Classic {
            month: 12,
            day: 31,
            hour: 23,
            minute: 59,
            second: 0,
        };
        assert_eq!(t.resolve(now).unwrap().year(), 2026);
        let t = SyslogTime::Classic {
            month: 1,
            day: 2,
            hour: 9,
            minute: 0,
            second: 0,
        };
        assert_eq!(t.resolve(now).unwrap().year(), 2027);
        let t = SyslogTime::Classic {
            month: 2,
            day: 30,
            hour: 9,
            minute: 0,
            second: 0,
        };
        assert_eq!(t.resolve(now), None);
    }

    #[test]
    fn lines_split_with_partial_and_overlong_lines() {
        let mut skip = false;
        let (lines, used, long) = split_lines(b"a\nb\npart", &mut skip, false);
        assert_eq!((lines, used, long), (vec![&b"a"[..], b"b"], 4, 0));
        let (lines, used, _) = split_lines(b"a\npart", &mut skip, true);
        assert_eq!((lines, used), (vec![&b"a"[..], b"part"], 6));
        // An overlong unterminated line is dropped now, and its tail when it ends.
        let big = vec![b'x'; MAX_LINE_BYTES + 10];
        let (lines, used, long) = split_lines(&big, &mut skip, false);
        assert_eq!((lines.len(), used, long, skip), (0, big.len(), 1, true));
        let (lines, used, long) = split_lines(b"tail\nnext\n", &mut skip, false);
        assert_eq!(
            (lines, used, long, skip),
            (vec![&b"next"[..]], 10, 0, false)
        );
        let mut terminated = vec![b'y'; MAX_LINE_BYTES + 1];
        terminated.extend(b"\nok\n");
        let (lines, _, long) = split_lines(&terminated, &mut skip, false);
        assert_eq!((lines, long), (vec![&b"ok"[..]], 1));
    }

    // ---- following files ----

    struct Host {
        root: tempfile::TempDir,
        state: tempfile::TempDir,
    }

    impl Host {
        fn new() -> Host {
            let h = Host {
                root: tempfile::tempdir().unwrap(),
                state: tempfile::tempdir().unwrap(),
            };
            std::fs::create_dir_all(h.root.path().join("var/log")).unwrap();
            std::fs::create_dir_all(h.root.path().join("etc")).unwrap();
            std::fs::write(
                h.root.path().join("etc/passwd"),
                "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
            )
            .unwrap();
            h
        }
        fn path(&self, p: &str) -> PathBuf {
            self.root.path().join(p.trim_start_matches('/'))
        }
        fn append(&self, p: &str, bytes: &[u8]) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(p))
                .unwrap();
            f.write_all(bytes).unwrap();
        }
        fn follower(&self, start: StartAt) -> LoginFollower {
            LoginFollower::open(HostRoot::new(self.root.path()), self.state.path(), start)
        }
    }

    fn ssh_fail(user: &str, port: u16) -> String {
        format!(
            "Nov 23 17:42:57 edge sshd[77]: Failed password for {user} from 198.51.100.7 port {port} ssh2\n"
        )
    }

    fn users(batch: &Batch) -> Vec<String> {
        batch
            .logins
            .iter()
            .map(|l| l.user_name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn auth_log_is_followed_once_across_rotation_and_restart() {
        let h = Host::new();
        h.append(AUTH_LOG, ssh_fail("history", 1).as_bytes());
        let mut f = h.follower(StartAt::End);
        f.save().unwrap();
        assert!(f.poll().logins.is_empty(), "first start skips history");
        h.append(AUTH_LOG, ssh_fail("a1", 2).as_bytes());
        h.append(
            AUTH_LOG,
            b"Nov 23 17:42:57 edge sshd[77]: Failed password for a2 from 1.2.3.4 po",
        );
        let b = f.poll();
        assert_eq!(users(&b), ["a1"]);
        assert_eq!(b.logins[0].remote_port, Some(2));
        assert_eq!(b.logins[0].user_id, None);
        assert!(f.poll().logins.is_empty(), "reported once");
        h.append(AUTH_LOG, b"rt 3 ssh2\n");
        assert_eq!(users(&f.poll()), ["a2"]);

        // Rotation: rename, the writer finishes in the old file, then a new file.
        std::fs::rename(h.path(AUTH_LOG), h.path("/var/log/auth.log.1")).unwrap();
        h.append("/var/log/auth.log.1", ssh_fail("late", 4).as_bytes());
        h.append(AUTH_LOG, ssh_fail("new1", 5).as_bytes());
        assert_eq!(users(&f.poll()), ["late", "new1"]);
        h.append("/var/log/auth.log.1", ssh_fail("later", 6).as_bytes());
        assert_eq!(users(&f.poll()), ["later"]);
        f.save().unwrap();

        // Restart from the saved state: no repeats, the rotated file is still followed.
        let mut f = h.follower(StartAt::End);
        assert!(f.poll().logins.is_empty());
        h.append(AUTH_LOG, ssh_fail("after", 7).as_bytes());
        h.append("/var/log/auth.log.1", ssh_fail("oldest", 8).as_bytes());
        assert_eq!(users(&f.poll()), ["oldest", "after"]);
        for _ in 0..ROTATED_QUIET_POLLS {
            f.poll();
        }
        f.save().unwrap();

        // Rotated while stopped: the rest of the old file, then the new one from its start.
        h.append(AUTH_LOG, ssh_fail("unread", 9).as_bytes());
        std::fs::rename(h.path(AUTH_LOG), h.path("/var/log/auth.log.1")).unwrap();
        h.append(AUTH_LOG, ssh_fail("fresh", 10).as_bytes());
        let mut f = h.follower(StartAt::End);
        assert_eq!(users(&f.poll()), ["unread", "fresh"]);
        assert!(f.poll().logins.is_empty());
        f.save().unwrap();

        // Truncated in place (copytruncate): read again from the start.
        std::fs::write(h.path(AUTH_LOG), ssh_fail("t", 11)).unwrap();
        assert_eq!(users(&f.poll()), ["t"]);
    }

    #[test]
    fn first_start_can_replay_and_missing_files_are_read_when_they_appear() {
        let h = Host::new();
        h.append(SECURE, ssh_fail("old", 1).as_bytes());
        let mut f = h.follower(StartAt::Beginning);
        assert_eq!(users(&f.poll()), ["old"]);
        assert_eq!(f.present(), [SECURE]);
        f.save().unwrap();
        // A file that did not exist at the last run is new from its first byte.
        h.append(AUTH_LOG, ssh_fail("appeared", 2).as_bytes());
        let mut f = h.follower(StartAt::End);
        assert_eq!(users(&f.poll()), ["appeared"]);
        h.append(
            WTMP,
            &utmp(
                UtmpLayout::Native64,
                USER_PROCESS,
                9,
                "tty1",
                b"alice",
                "",
                T0,
                [0; 16],
            ),
        );
        let b = f.poll();
        assert_eq!(users(&b), ["alice"]);
        assert_eq!(b.logins[0].user_id.as_deref(), Some("1000"));
        assert_eq!(b.logins[0].executable, "/bin/login");
    }

    #[test]
    fn wtmp_and_btmp_are_followed_record_by_record() {
        let h = Host::new();
        let layout = UtmpLayout::for_machine(&machine(&HostRoot::new(h.root.path())));
        h.append(WTMP, &sample(layout));
        h.append(BTMP, &sample(layout)[..layout.size() + 10]); // history with a partial record
        let mut f = h.follower(StartAt::End);
        assert!(f.poll().logins.is_empty());
        // A record being written at the first start is completed: it is new, so reported.
        h.append(BTMP, &sample(layout)[layout.size() + 10..2 * layout.size()]);
        assert_eq!(users(&f.poll()), ["alice"]);

        let rec = utmp(
            layout,
            USER_PROCESS,
            1,
            "pts/3",
            b"alice",
            "192.0.2.50",
            T0,
            v4([192, 0, 2, 50]),
        );
        let logout = utmp(layout, DEAD_PROCESS, 1, "pts/3", b"", "", T0, [0; 16]);
        h.append(WTMP, &[rec.clone(), logout].concat());
        let fail = utmp(
            layout,
            6,
            2,
            "ssh:notty",
            b"\xffbad",
            "192.0.2.51",
            T0,
            v4([192, 0, 2, 51]),
        );
        h.append(BTMP, &fail[..100]);
        let b = f.poll();
        assert_eq!(users(&b), ["alice"], "logouts are not logins");
        let l = &b.logins[0];
        assert_eq!(
            (l.operation.as_str(), l.result, l.process_id),
            ("wtmp:login", LoginResult::Success, 1)
        );
        assert_eq!(l.remote_address, Some("192.0.2.50".parse().unwrap()));
        assert_eq!(l.extra_details["Source"], WTMP);
        h.append(BTMP, &fail[100..]);
        let b = f.poll();
        assert_eq!(users(&b), ["\u{fffd}bad"]);
        assert_eq!(
            (b.logins[0].result, b.logins[0].executable.as_str()),
            (LoginResult::Fail, "/usr/sbin/sshd")
        );
        f.save().unwrap();

        // Restart, then logrotate's wtmp rotation (rename + create).
        let mut f = h.follower(StartAt::End);
        assert!(f.poll().logins.is_empty());
        std::fs::rename(h.path(WTMP), h.path("/var/log/wtmp.1")).unwrap();
        h.append(WTMP, &rec);
        assert_eq!(users(&f.poll()), ["alice"]);
        assert!(f.poll().logins.is_empty());

        // Garbage appended: skipped and counted, and following goes on.
        h.append(WTMP, &vec![0xAB; layout.size()]);
        h.append(WTMP, &rec);
        let b = f.poll();
        assert_eq!((users(&b), b.malformed), (vec!["alice".to_string()], 1));
    }

    #[test]
    fn corrupt_state_is_a_first_start() {
        let h = Host::new();
        h.append(AUTH_LOG, ssh_fail("history", 1).as_bytes());
        std::fs::write(h.state.path().join(STATE_FILE), b"{not json").unwrap();
        let mut f = h.follower(StartAt::End);
        assert!(f.poll().logins.is_empty());
    }

    #[test]
    fn the_real_host_files_read_without_error() {
        // Read-only: a follower on the real root with a throwaway state directory.
        let state = tempfile::tempdir().unwrap();
        let mut f = LoginFollower::open(HostRoot::default(), state.path(), StartAt::Beginning);
        let b = f.poll();
        for l in &b.logins {
            assert!(!l.operation.is_empty());
        }
        if let Ok(bytes) = std::fs::read(WTMP) {
            let hint = UtmpLayout::for_machine(std::env::consts::ARCH);
            if let Some(layout) = detect_layout(&bytes, hint) {
                assert_eq!(layout, hint);
            }
        }
    }

    fn context(h: &Host) -> (Context, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(64);
        let (_cfg, config) = watch::channel(Arc::new(Config::default()));
        let ctx = Context {
            host: HostRoot::new(h.root.path()),
            events: tx,
            metrics: Arc::new(Metrics::for_tests()),
            config,
            cancel: CancellationToken::new(),
            state_dir: h.state.path().to_path_buf(),
        };
        (ctx, rx)
    }

    async fn next(rx: &mut mpsc::Receiver<Event>) -> Payload {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap()
            .payload
    }

    #[tokio::test]
    async fn the_task_reports_status_emits_logins_and_stops() {
        let h = Host::new();
        let (ctx, mut rx) = context(&h);
        let opts = LoginOptions {
            poll: Duration::from_millis(20),
            ..LoginOptions::default()
        };
        let task = tokio::spawn(run_with(ctx.clone(), opts.clone()));
        match next(&mut rx).await {
            Payload::CollectorStatus(s) => {
                assert_eq!(s[0].status, CollectorHealth::Degraded);
                assert!(
                    s[0].message.contains("/var/log/auth.log"),
                    "{}",
                    s[0].message
                );
            }
            other => panic!("{other:?}"),
        }
        h.append(AUTH_LOG, ssh_fail("root", 9).as_bytes());
        match next(&mut rx).await {
            Payload::CollectorStatus(s) => assert_eq!(s[0].status, CollectorHealth::Up),
            other => panic!("{other:?}"),
        }
        match next(&mut rx).await {
            Payload::Login(l) => {
                assert_eq!(
                    (l[0].user_name.as_deref(), l[0].user_id.as_deref()),
                    (Some("root"), Some("0"))
                );
                assert_eq!(l[0].process_id, 77);
            }
            other => panic!("{other:?}"),
        }
        ctx.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap();
        // Restarted: nothing repeated, and no status while healthy.
        let (ctx, mut rx) = context(&h);
        let task = tokio::spawn(run_with(ctx.clone(), opts));
        h.append(AUTH_LOG, ssh_fail("second", 10).as_bytes());
        match next(&mut rx).await {
            Payload::Login(l) => assert_eq!(l[0].user_name.as_deref(), Some("second")),
            other => panic!("{other:?}"),
        }
        ctx.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap();
        assert!(rx.try_recv().is_err());
    }
}
