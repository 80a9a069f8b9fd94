//! The kernel's device events (uevents): the `NETLINK_KOBJECT_UEVENT` socket and the messages
//! on it.
//!
//! The kernel multicasts every uevent to group 1 of that socket family as one datagram:
//! `ACTION@DEVPATH\0KEY=VALUE\0KEY=VALUE\0…` (lib/kobject_uevent.c; the variables always include
//! `ACTION`, `DEVPATH`, `SUBSYSTEM` and `SEQNUM`). udev re-broadcasts its processed events on
//! group 2 in its own binary format, starting `libudev\0`; edgeguard joins group 1 only, takes
//! datagrams whose sender is the kernel (port id 0) only, and rejects the libudev format should
//! one arrive anyway. The kernel sends uevents of network devices only to listeners in the
//! device's network namespace: the module runs with the host's network, so it sees the host's.

use crate::kernel::netlink;
use crate::kernel::socket::{recv_buffer_size, set_recv_buffer, set_recv_timeout, socket};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// The kernel's multicast group of uevents (udev's own re-broadcast is group 2).
pub const KERNEL_GROUP: u32 = 1;

/// Most variables kept from one uevent: the kernel sends at most 64 (`UEVENT_NUM_ENVP`) in at
/// most 2 KiB (`UEVENT_BUFFER_SIZE`); a message with more is not the kernel's.
pub const MAX_VARS: usize = 64;

/// Most bytes of one uevent datagram kept (the kernel's are under 2.2 KiB; a longer one is
/// cut, and parsed as far as it goes).
const SLOT_BYTES: usize = 8192;

/// Datagrams one receive can take (a hotplugged hub brings a few dozen uevents at once).
const SLOTS: usize = 16;

/// Receive buffer asked for: a USB hub with its devices, or a burst of container veths, is a
/// few hundred uevents of about 300 bytes each (the kernel counts its overhead too).
pub const RECV_BUFFER_BYTES: usize = 1024 * 1024;

/// Buffers for [`UeventSocket::recv`], kept across receives.
pub type Batch = netlink::Batch<SLOTS, SLOT_BYTES>;
pub use netlink::Received;

/// What happened to the device (the part before `@`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Remove,
    Change,
    Move,
    Online,
    Offline,
    Bind,
    Unbind,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "add" => Action::Add,
            "remove" => Action::Remove,
            "change" => Action::Change,
            "move" => Action::Move,
            "online" => Action::Online,
            "offline" => Action::Offline,
            "bind" => Action::Bind,
            "unbind" => Action::Unbind,
            _ => return None,
        })
    }
}

/// One kernel uevent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    pub action: Action,
    /// `/devices/virtual/net/eth0`, `/module/loop`.
    pub devpath: String,
    pub subsystem: String,
    /// Every `KEY=VALUE` (values cleaned like sysfs attributes), at most [`MAX_VARS`].
    pub vars: BTreeMap<String, String>,
}

impl Uevent {
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }

    /// The kernel's name of the device: the last component of its path.
    pub fn sysname(&self) -> &str {
        self.devpath.rsplit('/').next().unwrap_or("")
    }
}

/// Why a datagram is not a kernel uevent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("a udev daemon message (libudev format), not a kernel uevent")]
    Libudev,
    #[error("no ACTION@DEVPATH header")]
    NoHeader,
    #[error("unknown action")]
    UnknownAction,
    #[error("a device path that is not absolute or has empty, `.` or `..` components")]
    BadDevpath,
    #[error("a variable without `=`, or a name that is not printable ASCII")]
    BadVariable,
    #[error("more than {MAX_VARS} variables")]
    TooManyVariables,
    #[error("no SUBSYSTEM variable, or an empty one")]
    NoSubsystem,
    #[error("ACTION or DEVPATH variable contradicts the header")]
    Contradiction,
}

impl ParseError {
    /// The `error_type` label it is counted under.
    pub fn error_type(self) -> &'static str {
        match self {
            ParseError::Libudev => "uevent_libudev",
            _ => "uevent_malformed",
        }
    }
}

/// Parses one datagram. Never panics on any input; allocates at most what the datagram holds.
pub fn parse(buf: &[u8]) -> Result<Uevent, ParseError> {
    if buf.starts_with(b"libudev\0") {
        return Err(ParseError::Libudev);
    }
    let mut fields = buf.split(|b| *b == 0).filter(|f| !f.is_empty());
    let header = fields.next().ok_or(ParseError::NoHeader)?;
    let at = header
        .iter()
        .position(|b| *b == b'@')
        .ok_or(ParseError::NoHeader)?;
    let action = std::str::from_utf8(&header[..at]).map_err(|_| ParseError::UnknownAction)?;
    let action = Action::parse(action).ok_or(ParseError::UnknownAction)?;
    let devpath = std::str::from_utf8(&header[at + 1..]).map_err(|_| ParseError::BadDevpath)?;
    if !is_devpath(devpath) {
        return Err(ParseError::BadDevpath);
    }
    let mut vars = BTreeMap::new();
    for field in fields {
        if vars.len() >= MAX_VARS {
            return Err(ParseError::TooManyVariables);
        }
        let eq = field
            .iter()
            .position(|b| *b == b'=')
            .ok_or(ParseError::BadVariable)?;
        let key = &field[..eq];
        // Kernel keys are upper case (`DEVTYPE`, `PCI_CLASS`), but synthetic uevents (written
        // to a `uevent` file) carry `SYNTH_ARG_<name>` with the writer's case: any printable
        // ASCII is accepted, so such an event is not lost.
        if key.is_empty() || !key.iter().all(u8::is_ascii_graphic) {
            return Err(ParseError::BadVariable);
        }
        let key = String::from_utf8_lossy(key).into_owned();
        let value = super::sysfs::clean(&String::from_utf8_lossy(&field[eq + 1..]));
        vars.insert(key, value);
    }
    let event = Uevent {
        action,
        devpath: devpath.to_string(),
        // Every kernel uevent names a subsystem; an empty one (after cleaning) is none.
        subsystem: vars
            .get("SUBSYSTEM")
            .filter(|s| !s.is_empty())
            .cloned()
            .ok_or(ParseError::NoSubsystem)?,
        vars,
    };
    let action_var = event.var("ACTION").map(Action::parse);
    if action_var.is_some_and(|a| a != Some(action))
        || event.var("DEVPATH").is_some_and(|d| d != devpath)
    {
        return Err(ParseError::Contradiction);
    }
    Ok(event)
}

/// `/a/b/c`: absolute, no empty, `.` or `..` components (the name is used to look the device
/// up under /sys).
fn is_devpath(p: &str) -> bool {
    match p.strip_prefix('/') {
        Some(rest) => rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.chars().any(char::is_control)),
        None => false,
    }
}

/// Why the uevent socket cannot be used (the collector then rescans /sys instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening a kernel uevent socket")]
    Socket(#[source] io::Error),
    #[error("joining the kernel's uevent group")]
    Bind(#[source] io::Error),
}

/// A `NETLINK_KOBJECT_UEVENT` socket joined to the kernel's group.
pub struct UeventSocket {
    pub fd: OwnedFd,
    /// The receive buffer the kernel granted (for the status message).
    pub recv_buffer: Option<usize>,
}

impl UeventSocket {
    /// Opens the socket; receives wait at most `timeout` (so the reader sees its cancel token).
    pub fn open(timeout: Duration) -> Result<UeventSocket, Error> {
        let fd = socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM,
            libc::NETLINK_KOBJECT_UEVENT,
        )
        .map_err(Error::Socket)?;
        let size = i32::try_from(RECV_BUFFER_BYTES).unwrap_or(i32::MAX);
        if let Err(e) = set_recv_buffer(&fd, size) {
            tracing::debug!(error = %e, "keeping the default uevent receive buffer");
        }
        set_recv_timeout(&fd, timeout).map_err(Error::Socket)?;
        netlink::bind(&fd, KERNEL_GROUP).map_err(Error::Bind)?;
        Ok(UeventSocket {
            recv_buffer: recv_buffer_size(&fd),
            fd,
        })
    }

    /// The datagrams waiting (kernel ones only), or a timeout, or an overflow.
    pub fn recv(&self, batch: &mut Batch) -> io::Result<Received> {
        batch.recv_from_kernel(&self.fd)
    }
}
