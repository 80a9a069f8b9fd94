//! inotify: a non-blocking instance, watches added through a descriptor (so the path was
//! resolved inside the host root by [`crate::host::HostRoot`], never by the kernel from a path
//! that could leave it), waiting with `poll`, and the parsing of the events it returns.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

pub use libc::{
    IN_ATTRIB, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_EXCL_UNLINK, IN_IGNORED,
    IN_ISDIR, IN_MODIFY, IN_MOVE_SELF, IN_MOVED_FROM, IN_MOVED_TO, IN_ONLYDIR, IN_Q_OVERFLOW,
};

/// One inotify instance (closed when dropped).
#[derive(Debug)]
pub struct Inotify {
    fd: OwnedFd,
}

impl AsRawFd for Inotify {
    /// For waiting on it from an async task (`tokio::io::unix::AsyncFd`).
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Inotify {
    /// For waiting on it beside other descriptors ([`super::poll::readable`]).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One event as the kernel reported it; `name` is the entry of a watched directory it is about
/// (empty for events about the directory itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    pub name: OsString,
}

/// The fixed part of `struct inotify_event`: wd, mask, cookie, len.
const HEADER: usize = 16;

impl Inotify {
    /// A new, non-blocking instance.
    pub fn new() -> io::Result<Inotify> {
        // SAFETY: no pointers; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Ok(Inotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches the inode `target` (an `O_PATH` descriptor) refers to, through
    /// `/proc/self/fd/N`: the kernel follows that magic link to the inode already resolved,
    /// so nothing is looked up by path again. Returns the watch descriptor (the same one for
    /// an inode already watched, whose mask is then replaced).
    pub fn add_watch(&self, target: BorrowedFd<'_>, mask: u32) -> io::Result<i32> {
        let path = CString::new(format!("/proc/self/fd/{}", target.as_raw_fd()))
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `path` is NUL-terminated; the result is checked.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Removes a watch (an error for one the kernel already dropped is ignored by callers).
    pub fn rm_watch(&self, wd: i32) -> io::Result<()> {
        // SAFETY: no pointers; the result is checked.
        if unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` for events; true when some can be read.
    pub fn wait(&self, timeout_ms: i32) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the result is checked.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(n > 0 && pfd.revents & libc::POLLIN != 0)
    }

    /// Reads what is queued into `buf` (cleared first; at least 4 KiB of room is made) without
    /// blocking; `Ok(0)` when nothing is.
    pub fn read(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        match super::fs::read_append(&self.fd, buf, buf.capacity().max(4096)) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// Parses the events in what [`Inotify::read`] returned (a truncated tail is ignored: the
/// kernel never returns one).
pub fn parse(buf: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= HEADER {
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&buf[at + i..at + i + 4]);
            b
        };
        let wd = i32::from_ne_bytes(word(0));
        let mask = u32::from_ne_bytes(word(4));
        let cookie = u32::from_ne_bytes(word(8));
        let len = u32::from_ne_bytes(word(12)) as usize;
        let Some(name) = buf.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        // The name is NUL-padded.
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        out.push(Event {
            wd,
            mask,
            cookie,
            name: OsStr::from_bytes(&name[..end]).to_os_string(),
        });
        at += HEADER + len;
    }
    out
}

/// Whether the file open as `fd` has the extended attribute `name` (`security.capability`:
/// file capabilities). `ENODATA` and a file system without xattrs are `false`.
pub fn has_xattr(fd: BorrowedFd<'_>, name: &std::ffi::CStr) -> io::Result<bool> {
    // SAFETY: a size query (null buffer, size 0); the result is checked.
    let n = unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), std::ptr::null_mut(), 0) };
    if n >= 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_watch_sees_a_new_file_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let ino = Inotify::new().unwrap();
        let c = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let fd = crate::kernel::fs::open_dir(&c).unwrap();
        let wd = ino.add_watch(fd.as_fd(), IN_CREATE | IN_ONLYDIR).unwrap();
        std::fs::write(dir.path().join("new"), b"x").unwrap();
        assert!(ino.wait(5000).unwrap());
        let mut buf = Vec::new();
        assert!(ino.read(&mut buf).unwrap() > 0);
        let events = parse(&buf);
        assert_eq!(events[0].wd, wd);
        assert_ne!(events[0].mask & IN_CREATE, 0);
        assert_eq!(events[0].name, "new");
        assert_eq!(ino.read(&mut buf).unwrap(), 0);
    }
}
