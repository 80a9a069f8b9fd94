//! utmp/wtmp/btmp records: layouts, parsing, and the `Login` a record becomes.

use super::Error;
use crate::event::{ExtraDetails, Login, LoginResult, format_local};
use chrono::{DateTime, FixedOffset, Local};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    pub(super) const fn tail_offsets(self) -> (usize, usize, usize) {
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
