//! Waiting for any of several descriptors to be readable (`poll`): the file integrity
//! collector's inotify and fanotify groups, the process collector's exec tracepoint rings.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The most descriptors [`readable`] waits on (one bit each in its answer).
pub const MAX_FDS: usize = 64;

/// Waits up to `timeout_ms` (-1: without end) for any of `fds` (at most [`MAX_FDS`]) to be
/// readable; returns a bit per descriptor (bit `i`: `fds[i]`), 0 on timeout or interruption.
pub fn readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<u64> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_FDS];
    for (p, fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd.as_raw_fd();
        p.events = libc::POLLIN;
    }
    // SAFETY: `fds.len()` valid pollfds; the result is checked.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(pfds
        .iter()
        .take(fds.len())
        .enumerate()
        .filter(|(_, p)| p.revents & libc::POLLIN != 0)
        .fold(0, |bits, (i, _)| bits | 1 << i))
}
