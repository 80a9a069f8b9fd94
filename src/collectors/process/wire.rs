//! Wire format of the process-events connector: datagrams in, [`ProcEvent`]s out, the
//! subscription message, and wait(2) statuses.
//!
//! Wire format (include/uapi/linux/connector.h, cn_proc.h; the netlink framing is
//! [`crate::kernel::netlink`]'s). All fields are in the host's byte order. The structs are read
//! field by field from the byte buffer: the receive buffer has no alignment guarantee and its
//! content is not trusted.

use crate::kernel::bytes::{u16_at, u32_at, u64_at};
use crate::kernel::netlink::{self, NLMSG_DONE, NLMSG_NOOP};

/// The netlink header's length, part of every message here (and of the fuzz targets' inputs).
pub use crate::kernel::netlink::NLMSG_HDRLEN;
/// `struct cn_msg`: id.idx u32, id.val u32, seq u32, ack u32, len u16, flags u16, data[].
pub const CN_MSG_LEN: usize = 20;
pub(super) const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
/// `struct proc_event` header: what u32, cpu u32, timestamp_ns u64; `event_data` follows.
pub const PROC_EVENT_HEADER_LEN: usize = 16;
pub(super) const PROC_CN_MCAST_LISTEN: u32 = 1;
pub(super) const PROC_CN_MCAST_IGNORE: u32 = 2;

const PROC_EVENT_NONE: u32 = 0x0000_0000;
pub(super) const PROC_EVENT_FORK: u32 = 0x0000_0001;
pub(super) const PROC_EVENT_EXEC: u32 = 0x0000_0002;
pub(super) const PROC_EVENT_UID: u32 = 0x0000_0004;
pub(super) const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One process event, as much of it as edgeguard uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// The kernel's answer to a (un)subscription, matched by the `seq`/`ack` we sent; `err` is
    /// an errno, 0 on success.
    Ack { seq: u32, ack: u32, err: u32 },
    Fork {
        parent_pid: u32,
        parent_tgid: u32,
        child_pid: u32,
        child_tgid: u32,
    },
    Exec {
        pid: u32,
        tgid: u32,
        /// When the kernel sent it (`CLOCK_MONOTONIC`), just after the exec tracepoint fired in
        /// the same task: matches the exec to its tracepoint sample ([`super::exec_trace`]).
        timestamp_ns: u64,
    },
    /// A task's credentials changed (`setuid` family, or exec of a set-user-id program): its
    /// real and effective uid now.
    Uid {
        pid: u32,
        tgid: u32,
        ruid: u32,
        euid: u32,
    },
    Exit {
        pid: u32,
        tgid: u32,
        /// The task's `exit_code`: a wait(2) status, see [`decode_wait_status`].
        exit_code: u32,
        /// The signal sent to the parent (normally SIGCHLD), not the one that killed the task.
        exit_signal: u32,
        /// Parent's tgid; `None` on kernels before 4.18, which leave the field zero.
        parent_tgid: Option<u32>,
    },
    /// GID, SID, PTRACE, COMM, COREDUMP: not used here.
    Other { what: u32 },
}

impl ProcEvent {
    /// The event's `PROC_EVENT_*` bit (0 for an acknowledgement), as subscription filters name
    /// it.
    pub(super) fn kind(&self) -> u32 {
        match *self {
            ProcEvent::Ack { .. } => PROC_EVENT_NONE,
            ProcEvent::Fork { .. } => PROC_EVENT_FORK,
            ProcEvent::Exec { .. } => PROC_EVENT_EXEC,
            ProcEvent::Uid { .. } => PROC_EVENT_UID,
            ProcEvent::Exit { .. } => PROC_EVENT_EXIT,
            ProcEvent::Other { what } => what,
        }
    }

    /// Whether this is the exit of process `pid` (its thread-group leader, not one thread).
    pub(super) fn is_exit_of(&self, pid: u32) -> bool {
        matches!(*self, ProcEvent::Exit { pid: p, tgid: t, .. } if p == pid && t == pid)
    }
}

/// Why a netlink message was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("netlink message truncated")]
    Truncated,
    #[error("unexpected netlink message type {0}")]
    UnexpectedType(u16),
    #[error("connector message for another channel")]
    OtherChannel,
    #[error("process event too short for its kind")]
    ShortEvent,
}

/// The events in one received datagram (netlink may pack several messages into one). A message
/// that cannot be parsed yields an error and, when its length is unusable, ends the iteration:
/// nothing after it can be located. Never panics, allocates nothing, always terminates.
pub fn parse_datagram(buf: &[u8]) -> impl Iterator<Item = Result<ProcEvent, ParseError>> + '_ {
    parse_datagram_timed(buf).map(|r| r.map(|(_, event)| event))
}

/// [`parse_datagram`], each event with the kernel's time of it (`timestamp_ns`, nanoseconds of
/// `CLOCK_MONOTONIC`; 0 in acknowledgements), by which events read from two sockets are put
/// back in order.
pub fn parse_datagram_timed(
    buf: &[u8],
) -> impl Iterator<Item = Result<(u64, ProcEvent), ParseError>> + '_ {
    let mut messages = netlink::messages(buf);
    std::iter::from_fn(move || {
        loop {
            let message = match messages.next()? {
                Ok(m) => m,
                Err(_) => return Some(Err(ParseError::Truncated)),
            };
            match message.kind {
                NLMSG_NOOP => continue,
                NLMSG_DONE => return Some(parse_connector_timed(message.payload)),
                other => return Some(Err(ParseError::UnexpectedType(other))),
            }
        }
    })
}

/// Parses a `cn_msg` carrying a `proc_event` (the payload of one netlink message).
pub fn parse_connector(payload: &[u8]) -> Result<ProcEvent, ParseError> {
    parse_connector_timed(payload).map(|(_, event)| event)
}

/// [`parse_connector`] with the event's `timestamp_ns`.
fn parse_connector_timed(payload: &[u8]) -> Result<(u64, ProcEvent), ParseError> {
    let field = |off| u32_at(payload, off).ok_or(ParseError::Truncated);
    let (idx, val, seq, ack) = (field(0)?, field(4)?, field(8)?, field(12)?);
    let data_len = u16_at(payload, 16).ok_or(ParseError::Truncated)? as usize;
    if payload.len() < CN_MSG_LEN {
        return Err(ParseError::Truncated);
    }
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC) {
        return Err(ParseError::OtherChannel);
    }
    let data = payload
        .get(CN_MSG_LEN..CN_MSG_LEN + data_len)
        .ok_or(ParseError::Truncated)?;
    let event = parse_proc_event(data, seq, ack)?;
    Ok((u64_at(data, 8).unwrap_or(0), event))
}

/// Parses a `struct proc_event`; `seq` and `ack` come from the enclosing `cn_msg` (used to match
/// acknowledgements).
pub fn parse_proc_event(data: &[u8], seq: u32, ack: u32) -> Result<ProcEvent, ParseError> {
    let what = u32_at(data, 0).ok_or(ParseError::Truncated)?;
    if data.len() < PROC_EVENT_HEADER_LEN {
        return Err(ParseError::Truncated);
    }
    let ev = &data[PROC_EVENT_HEADER_LEN..];
    let f = |i: usize| u32_at(ev, i * 4).ok_or(ParseError::ShortEvent);
    Ok(match what {
        PROC_EVENT_NONE => ProcEvent::Ack {
            seq,
            ack,
            err: f(0)?,
        },
        PROC_EVENT_FORK => ProcEvent::Fork {
            parent_pid: f(0)?,
            parent_tgid: f(1)?,
            child_pid: f(2)?,
            child_tgid: f(3)?,
        },
        PROC_EVENT_EXEC => ProcEvent::Exec {
            pid: f(0)?,
            tgid: f(1)?,
            timestamp_ns: u64_at(data, 8).unwrap_or(0),
        },
        PROC_EVENT_UID => ProcEvent::Uid {
            pid: f(0)?,
            tgid: f(1)?,
            ruid: f(2)?,
            euid: f(3)?,
        },
        PROC_EVENT_EXIT => ProcEvent::Exit {
            pid: f(0)?,
            tgid: f(1)?,
            exit_code: f(2)?,
            exit_signal: f(3)?,
            parent_tgid: f(5).ok().filter(|p| *p != 0),
        },
        what => ProcEvent::Other { what },
    })
}

/// The message that subscribes (`PROC_CN_MCAST_LISTEN`) or unsubscribes
/// (`PROC_CN_MCAST_IGNORE`): nlmsghdr + cn_msg + the 4-byte operation, which every kernel
/// accepts.
pub fn subscription_message(op: u32, seq: u32, ack: u32) -> [u8; NLMSG_HDRLEN + CN_MSG_LEN + 4] {
    let mut m = [0u8; NLMSG_HDRLEN + CN_MSG_LEN + 4];
    connector_message(&mut m, seq, ack);
    m[NLMSG_HDRLEN + CN_MSG_LEN..].copy_from_slice(&op.to_ne_bytes());
    m
}

/// The subscription with an event filter (`struct proc_input`: the operation, then the event
/// bits this socket is to receive), which Linux 6.6 and later apply per socket. Older kernels
/// ignore an 8-byte operation without an answer, so it is only sent where
/// [`kernel_filters_events`] says the kernel takes it.
pub fn filtered_subscription_message(
    op: u32,
    events: u32,
    seq: u32,
    ack: u32,
) -> [u8; NLMSG_HDRLEN + CN_MSG_LEN + 8] {
    let mut m = [0u8; NLMSG_HDRLEN + CN_MSG_LEN + 8];
    connector_message(&mut m, seq, ack);
    let data = NLMSG_HDRLEN + CN_MSG_LEN;
    m[data..data + 4].copy_from_slice(&op.to_ne_bytes());
    m[data + 4..].copy_from_slice(&events.to_ne_bytes());
    m
}

/// Whether a kernel of this release (`uname -r`) filters process events per socket: Linux 6.6
/// added `struct proc_input` and the filter (`cn_filter`). A release that cannot be read is taken as
/// older.
pub fn kernel_filters_events(release: &str) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (6, 6),
        _ => false,
    }
}

/// Fills the netlink and connector headers of a subscription message (the whole buffer is the
/// message; the operation follows the headers).
fn connector_message(m: &mut [u8], seq: u32, ack: u32) {
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    let cn = NLMSG_HDRLEN;
    m[cn..cn + 4].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
    m[cn + 4..cn + 8].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
    m[cn + 8..cn + 12].copy_from_slice(&seq.to_ne_bytes());
    m[cn + 12..cn + 16].copy_from_slice(&ack.to_ne_bytes());
    let data_len = (m.len() - NLMSG_HDRLEN - CN_MSG_LEN) as u16;
    m[cn + 16..cn + 18].copy_from_slice(&data_len.to_ne_bytes());
}

/// A decoded wait(2) status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStatus {
    /// What a shell would show in `$?`: the exit code, or 128 + the signal number.
    pub exit_status: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<u32>,
    pub core_dumped: bool,
}

/// Decodes the kernel's `exit_code` (a wait status: `code << 8` for an exit, the signal number
/// in the low 7 bits and 0x80 for a core dump when killed).
pub fn decode_wait_status(raw: u32) -> WaitStatus {
    let signal = raw & 0x7f;
    if signal == 0 {
        WaitStatus {
            exit_status: ((raw >> 8) & 0xff) as i32,
            signal: None,
            core_dumped: false,
        }
    } else {
        WaitStatus {
            exit_status: 128 + signal as i32,
            signal: Some(signal),
            core_dumped: raw & 0x80 != 0,
        }
    }
}

/// The name of a signal number on this architecture (`SIGKILL`, `SIGRTMIN+3`).
pub fn signal_name(signal: u32) -> Option<String> {
    let Ok(sig) = i32::try_from(signal) else {
        return None;
    };
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        // The kernel's SIGRTMIN is 32 (glibc reserves the first few for itself).
        32..=64 => return Some(format!("SIGRTMIN+{}", sig - 32)),
        _ => return None,
    };
    Some(name.to_string())
}
