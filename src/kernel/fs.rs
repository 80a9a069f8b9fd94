//! File reads relative to a directory descriptor, for `/proc`: one `openat` or `readlinkat` per
//! file instead of resolving the whole path each time, into buffers the caller keeps.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Opens a directory as an `O_PATH` descriptor, to resolve names under it.
pub fn open_dir(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a NUL-terminated string; the result is checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `path` (relative to `dir`) for reading: never a symlink as its last name, never
/// blocking (`O_NONBLOCK`), never a controlling terminal. For `/proc/<pid>/<file>` reads, whose
/// files are all regular.
pub fn open_at(dir: BorrowedFd<'_>, path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated; the result is checked.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns (closed when dropped).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads at most `room` bytes from `fd` and appends them to `buf` (growing its capacity first
/// when needed), without zeroing the room beforehand. Returns how many were read.
pub fn read_append(fd: &OwnedFd, buf: &mut Vec<u8>, room: usize) -> io::Result<usize> {
    buf.reserve(room);
    let len = buf.len();
    // SAFETY: the spare capacity holds at least `room` bytes; the kernel writes at most that
    // many, and only the `n` it reports are made part of the vector.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().add(len).cast(), room) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised `n <= room` bytes after `len`.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

/// Reads the target of the link `path` (relative to `dir`) into `buf`, replacing its content;
/// room for at least `room` bytes is made first (a longer target comes back cut to the room).
pub fn read_link_at(
    dir: BorrowedFd<'_>,
    path: &CStr,
    buf: &mut Vec<u8>,
    room: usize,
) -> io::Result<()> {
    buf.clear();
    buf.reserve(room);
    // SAFETY: `path` is NUL-terminated; `buf` has room for the length given.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            path.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.capacity(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel wrote `n` bytes (never more than the capacity given).
    unsafe { buf.set_len(n as usize) };
    Ok(())
}

/// Mounts tracefs read-only on a fresh directory under the temporary directory for as long as
/// `f` runs, then unmounts it (lazily) and removes the directory; for a host that has not
/// mounted tracefs itself (systemd does it on most, a minimal or non-systemd image may not).
///
/// tracefs is one file system whatever the mount, so what `f` reads there is the host's. The
/// mount lives only as long as `f`: the perf events opened from what it read do not need it.
/// Needs `CAP_SYS_ADMIN` (and no security profile that denies mounts, as Docker's default
/// AppArmor profile does). The directory has a random name and is created, never reused, so a
/// local user cannot point the mount elsewhere.
pub fn with_private_tracefs<T>(f: impl FnOnce(&std::path::Path) -> T) -> io::Result<T> {
    use std::os::unix::ffi::OsStrExt;
    let base = std::env::temp_dir();
    // A FROM scratch image has no /tmp.
    std::fs::create_dir_all(&base)?;
    let dir = base.join(format!(
        "edgeguard-tracefs-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir(&dir)?;
    let target = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: NUL-terminated strings for source, target and type; no data argument.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    let out = f(&dir);
    // SAFETY: NUL-terminated target; MNT_DETACH so a reader still inside cannot keep it busy.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    let _ = std::fs::remove_dir(&dir);
    Ok(out)
}

/// `CGROUP2_SUPER_MAGIC`: the file system type of a cgroup v2 hierarchy.
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The id of the cgroup v2 directory `dir` (an `O_PATH` descriptor will do): its kernfs file
/// handle, the 64-bit number the kernel calls the cgroup's id (`cgroup_id()`), which perf
/// samples carry (`PERF_SAMPLE_CGROUP`). `name_to_handle_at` needs no privilege; kernfs has file
/// handles since Linux 5.5, before cgroup ids were sampled (5.7). The inode number is not used:
/// on 32-bit kernels it holds only the id's low half.
pub fn cgroup_id(dir: BorrowedFd<'_>) -> io::Result<u64> {
    if super::root::fs_type(dir)? != CGROUP2_SUPER_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a cgroup v2 directory",
        ));
    }
    let (_, bytes) = file_handle(dir, 0)?;
    let id: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a cgroup's file handle of {} bytes", bytes.len()),
        )
    })?;
    Ok(u64::from_ne_bytes(id))
}

/// The file handle of `dir` itself (`name_to_handle_at` with `AT_EMPTY_PATH`, plus `flags`:
/// `AT_HANDLE_FID` for a handle that only identifies): its type and bytes. For fanotify, which
/// reports directories by these handles ([`super::fanotify::dir_handle`]), and [`cgroup_id`]
/// (kernfs, whose handle is the 8-byte id).
pub fn file_handle(dir: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<(i32, Vec<u8>)> {
    const ROOM: usize = super::fanotify::MAX_HANDLE_BYTES;
    /// `struct file_handle` with room for the longest handle (`MAX_HANDLE_SZ`).
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        data: [u8; ROOM],
    }
    let mut handle = Handle {
        bytes: ROOM as u32,
        kind: 0,
        data: [0; ROOM],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `handle` is a file_handle whose `bytes` says how much room follows it; the empty
    // path with AT_EMPTY_PATH names `dir` itself; the result is checked.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            dir.as_raw_fd(),
            c"".as_ptr(),
            &mut handle as *mut Handle,
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH | flags,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let n = handle.bytes as usize;
    let data = handle.data.get(..n).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a file handle of {n} bytes"),
        )
    })?;
    Ok((handle.kind, data.to_vec()))
}
