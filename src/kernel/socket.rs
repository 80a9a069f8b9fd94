//! Sockets: opening them, their options, and the packet socket's calls.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// `socket(2)` with `SOCK_CLOEXEC`: a new descriptor the caller owns.
pub fn socket(domain: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative return is a new descriptor we own.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(2)` with a plain-data value (the kernel readers' sockets).
pub fn setsockopt<T>(fd: &impl AsFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size given; the fd is borrowed, so open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets `SO_RCVTIMEO` of a socket.
pub fn set_recv_timeout(fd: &impl AsFd, wait: Duration) -> io::Result<()> {
    // `as _`: the field types differ between libcs (musl's are changing to 64 bits).
    let tv = libc::timeval {
        tv_sec: wait.as_secs() as _,
        tv_usec: wait.subsec_micros() as _,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
}

/// Asks for a receive buffer of `bytes`: `SO_RCVBUFFORCE` passes `net.core.rmem_max` but needs
/// `CAP_NET_ADMIN`; without it the plain `SO_RCVBUF`, capped by `rmem_max`, is tried. The error
/// is the plain option's, when both fail.
pub fn set_recv_buffer(fd: &impl AsFd, bytes: libc::c_int) -> io::Result<()> {
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &bytes).is_err() {
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes)?;
    }
    Ok(())
}

/// The receive buffer the kernel granted (`SO_RCVBUF`, in bytes as it reports them).
pub fn recv_buffer_size(fd: &impl AsFd) -> Option<usize> {
    let mut size: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `size` and `len` are live and writable; the fd is borrowed, so open.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut size as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| usize::try_from(size).ok()).flatten()
}

/// Binds a packet socket to every interface and protocol (`ETH_P_ALL`).
pub fn bind_packet_all(fd: &impl AsFd) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(
            fd.as_fd().as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one packet from a packet socket into `buf`: its length (cut to `buf`) and packet
/// type (`sll_pkttype`), or `None` when the wait timed out or was interrupted.
pub fn recv_packet(fd: &impl AsFd, buf: &mut [u8]) -> io::Result<Option<(usize, u8)>> {
    // SAFETY: plain data, zero is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut addr_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `buf` and `addr` are valid for the lengths passed.
    let n = unsafe {
        libc::recvfrom(
            fd.as_fd().as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&mut addr as *mut libc::sockaddr_ll).cast(),
            &mut addr_len,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(((n as usize).min(buf.len()), addr.sll_pkttype)))
}

/// Packets the kernel dropped because a packet socket's queue was full, since the last call
/// (`PACKET_STATISTICS`).
pub fn packet_drops(fd: &impl AsFd) -> io::Result<u64> {
    // SAFETY: plain data, zero is valid.
    let mut stats: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `stats` is valid for `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(stats.tp_drops))
}
