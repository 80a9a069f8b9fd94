//! Opening files under a directory that stands for `/` (the host root), so that what a local user
//! controls there cannot send a read elsewhere.
//!
//! Every path is resolved relative to a descriptor of the root, as the host itself would resolve
//! it: an absolute symlink target starts again at the root and `..` stops there, so nothing
//! outside the root is reached; and `/proc` magic links (`/proc/<pid>/root`, `cwd`, `exe`,
//! `fd/*`, `ns/*`, which the kernel follows to the object itself, wherever it is) are refused
//! with `ELOOP`, like a symlink loop or more than [`MAX_SYMLINK_HOPS`] links. Two resolvers give
//! the same answers:
//!
//! - [`Resolver::Openat2`]: `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` (Linux
//!   5.6 and later): the kernel resolves, atomically;
//! - [`Resolver::Walk`], where openat2 is missing (`ENOSYS`) or refused (a seccomp filter that
//!   answers `EPERM`): one `openat(O_PATH | O_NOFOLLOW)` per component, each symlink read with
//!   `readlinkat` and resolved here, `..` popping a stack of directory descriptors that never
//!   goes above the root. The kernel never follows a link in this walk, so even a link it
//!   misjudges stays inside the root; a symlink on procfs outside procfs's own top-level entries
//!   (`self`, `mounts`, …) counts as a magic link only so that the answers match openat2's.
//!
//! What is opened at the end ([`Open`]) is never a controlling terminal and never blocks:
//! `O_NONBLOCK`, so a FIFO opens at once. Callers that want regular files only open with
//! [`Open::Path`] first (an `O_PATH` descriptor runs no driver's `open`) and check the type.

use super::bytes::{u16_at, u64_at};
use super::fs::read_link_at;
use std::ffi::{CStr, CString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU8, Ordering};

/// Symlinks followed while resolving one path (Linux's own limit, `MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// Who resolves paths under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// The kernel, with `openat2(2)`.
    Openat2,
    /// This module, component by component.
    Walk,
}

/// What to open at the end of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// An `O_PATH` descriptor: nothing is opened for I/O (no device driver's `open` runs); enough
    /// to `fstat`, to resolve names under it, or to read a link.
    Path,
    /// A directory, for listing (`O_DIRECTORY`: anything else is `ENOTDIR`).
    Dir,
    /// For reading, `O_NONBLOCK | O_NOCTTY`.
    Read,
}

impl Open {
    fn flags(self) -> libc::c_int {
        libc::O_CLOEXEC
            | match self {
                // openat2 accepts nothing but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC with O_PATH.
                Open::Path => libc::O_PATH,
                Open::Dir => {
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_LARGEFILE
                }
                Open::Read => {
                    libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_LARGEFILE
                }
            }
    }
}

/// Whether a magic link on the way is an error (always, for opening) or is resolved like any
/// other symlink, inside the root (the walk only: to tell a magic link from a loop afterwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MagicLinks {
    Refuse,
    AsText,
}

/// 0: not probed yet; 1: openat2 works; 2: it does not.
static OPENAT2: AtomicU8 = AtomicU8::new(0);

/// The resolver this kernel allows, probed once with `root` (an `O_PATH` descriptor of a
/// directory): openat2 unless it is missing or refused.
pub fn resolver(root: BorrowedFd<'_>) -> Resolver {
    match OPENAT2.load(Ordering::Relaxed) {
        1 => return Resolver::Openat2,
        2 => return Resolver::Walk,
        _ => {}
    }
    match openat2(root, c".", Open::Path, MagicLinks::Refuse) {
        Ok(_) => {
            OPENAT2.store(1, Ordering::Relaxed);
            Resolver::Openat2
        }
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::E2BIG)
            ) =>
        {
            OPENAT2.store(2, Ordering::Relaxed);
            Resolver::Walk
        }
        // Undecided (the root itself unreadable?): walk this time, probe again next time.
        Err(_) => Resolver::Walk,
    }
}

/// Opens `path` under `root` (an `O_PATH` descriptor of the root directory) as the host would
/// resolve it; a leading `/` is the root. `ELOOP`: a symlink loop, more than
/// [`MAX_SYMLINK_HOPS`] links, or (with [`MagicLinks::Refuse`]) a magic link on the way.
/// [`MagicLinks::AsText`] is honoured by the walk only.
pub fn open_in_root(
    root: BorrowedFd<'_>,
    path: &[u8],
    open: Open,
    magic: MagicLinks,
    resolver: Resolver,
) -> io::Result<OwnedFd> {
    if path.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    match resolver {
        Resolver::Openat2 => {
            let relative = path.strip_prefix(b"/").unwrap_or(path);
            let relative = if relative.is_empty() { b"." } else { relative };
            let c =
                CString::new(relative).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            openat2(root, &c, open, magic)
        }
        Resolver::Walk => walk(root, path, open, magic),
    }
}

/// `open_how` of linux/openat2.h (libc's is `non_exhaustive`, so it cannot be built here).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn openat2(
    root: BorrowedFd<'_>,
    path: &CStr,
    open: Open,
    magic: MagicLinks,
) -> io::Result<OwnedFd> {
    let mut resolve = libc::RESOLVE_IN_ROOT;
    if magic == MagicLinks::Refuse {
        resolve |= libc::RESOLVE_NO_MAGICLINKS;
    }
    let how = OpenHow {
        flags: open.flags() as u64,
        mode: 0,
        resolve,
    };
    let mut races = 0;
    loop {
        // SAFETY: `path` is NUL-terminated and `how` a live `open_how` of the size passed; the
        // kernel only reads both. The result is checked.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh descriptor nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            // A rename or mount raced with a `..` on the way: the kernel asks to try again.
            Some(libc::EAGAIN) if races < 8 => races += 1,
            _ => return Err(e),
        }
    }
}

/// `openat(2)` of one name relative to `dir`, with `flags | O_NOFOLLOW | O_CLOEXEC`.
pub fn open_beneath(dir: BorrowedFd<'_>, name: &CStr, open: Open) -> io::Result<OwnedFd> {
    openat(dir, name, open.flags() | libc::O_NOFOLLOW)
}

/// Opens the link `name` in `dir` and what it points to, following it (a `/proc/<pid>/ns/*`
/// namespace file, whose link is magic), without blocking.
pub fn open_link_target(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    openat(dir, name, Open::Read.flags())
}

fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is NUL-terminated; the result is checked.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
        if fd >= 0 {
            // SAFETY: a fresh descriptor nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// `fstat` of a descriptor (any kind, `O_PATH` too), through std (64-bit sizes everywhere).
pub fn metadata(fd: OwnedFd) -> (OwnedFd, io::Result<Metadata>) {
    let file = File::from(fd);
    let meta = file.metadata();
    (OwnedFd::from(file), meta)
}

/// The component-by-component resolver (see the module documentation).
fn walk(root: BorrowedFd<'_>, path: &[u8], open: Open, magic: MagicLinks) -> io::Result<OwnedFd> {
    let mut todo: Vec<Vec<u8>> = Vec::new();
    push_components(&mut todo, path);
    // The directories entered below the root; the last one is where names are looked up.
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut hops = 0;
    let mut link = Vec::new();
    while let Some(name) = todo.pop() {
        if name == b".." {
            stack.pop();
            continue;
        }
        let dir = stack.last().map_or(root, |d| d.as_fd());
        let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let (fd, meta) = metadata(openat(
            dir,
            &cname,
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )?);
        let meta = meta?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS || (magic == MagicLinks::Refuse && is_magic_link(dir, &meta))
            {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            // An empty name reads the link the O_PATH descriptor is (Linux 2.6.39+).
            read_link_at(fd.as_fd(), c"", &mut link, libc::PATH_MAX as usize)?;
            if link.is_empty() {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            if link[0] == b'/' {
                stack.clear();
            }
            push_components(&mut todo, &link);
            continue;
        }
        if meta.is_dir() {
            stack.push(fd);
            continue;
        }
        if !todo.is_empty() {
            // More names after a file (`file/x`, `file/..`).
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        return match open {
            Open::Path => Ok(fd),
            Open::Dir => Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            // By name again, not following: a name swapped for a link meanwhile is ELOOP.
            Open::Read => open_beneath(dir, &cname, open),
        };
    }
    // The path ended on a directory (or the root itself).
    let dir = stack.last().map_or(root, |d| d.as_fd());
    openat(dir, c".", open.flags())
}

/// Pushes the names of `path` onto `todo`, last name first (so they pop in order); `.` and
/// empty names are left out.
fn push_components(todo: &mut Vec<Vec<u8>>, path: &[u8]) {
    let names: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|n| !n.is_empty() && *n != b".")
        .collect();
    todo.extend(names.into_iter().rev().map(<[u8]>::to_vec));
}

/// procfs's magic number (`PROC_SUPER_MAGIC`).
pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// sysfs's (`SYSFS_MAGIC`).
pub const SYSFS_MAGIC: i64 = 0x6265_6572;
/// tracefs's (`TRACEFS_MAGIC`).
pub const TRACEFS_MAGIC: i64 = 0x7472_6163;
/// debugfs's (`DEBUGFS_MAGIC`).
pub const DEBUGFS_MAGIC: i64 = 0x6462_6720;
/// procfs numbers its own entries (`self`, `mounts`, `net`, …, whose links are ordinary) from
/// here (`PROC_DYNAMIC_FIRST`); the per-process entries, where the magic links are, get inode
/// numbers below.
const PROC_DYNAMIC_FIRST: u64 = 0xF000_0000;

/// Whether the symlink `link` found in `dir` is a /proc magic link. A kernel that cannot tell
/// (`fstatfs` of an `O_PATH` descriptor needs Linux 3.12) gets `false`: the walk then reads the
/// link as text, inside the root, like any other.
fn is_magic_link(dir: BorrowedFd<'_>, link: &Metadata) -> bool {
    fs_type(dir).is_ok_and(|t| t == PROC_SUPER_MAGIC) && link.ino() < PROC_DYNAMIC_FIRST
}

/// The file system type (`f_type` of `fstatfs`) of the one `fd` is on.
#[cfg(target_env = "gnu")]
pub fn fs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // fstatfs64: the 32-bit glibc targets' plain fstatfs fails on large file systems.
    let mut buf = std::mem::MaybeUninit::<libc::statfs64>::zeroed();
    // SAFETY: `buf` is a zeroed statfs64 for the call to fill; the result is checked.
    if unsafe { libc::fstatfs64(fd.as_raw_fd(), buf.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatfs64 returned 0, so it filled the struct (which was zeroed anyway).
    let buf = unsafe { buf.assume_init() };
    #[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between targets.
    Ok(buf.f_type as i64)
}

/// The file system type (`f_type` of `fstatfs`) of the one `fd` is on.
#[cfg(not(target_env = "gnu"))]
pub fn fs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `buf` is a zeroed statfs for the call to fill; the result is checked.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), buf.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatfs returned 0, so it filled the struct (which was zeroed anyway).
    let buf = unsafe { buf.assume_init() };
    #[allow(clippy::unnecessary_cast)] // `f_type`'s type differs between targets.
    Ok(buf.f_type as i64)
}

/// The type of a directory entry, from `d_type` (`None`: unknown, `fstatat` it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// One entry of a directory read with [`read_dir_chunk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry<'a> {
    pub ino: u64,
    pub kind: Option<EntryType>,
    pub name: &'a [u8],
}

/// Bytes of directory entries one `getdents64` call asks for.
pub const DIR_CHUNK_BYTES: usize = 32 * 1024;

/// Reads the next entries of the directory `dir` (opened with [`Open::Dir`]) into `buf`
/// (replacing its content); an empty `buf` means the end. Walk it with [`entries`].
pub fn read_dir_chunk(dir: BorrowedFd<'_>, buf: &mut Vec<u64>) -> io::Result<()> {
    // u64 words: the kernel writes 8-byte fields, and some CPUs want them aligned.
    let words = DIR_CHUNK_BYTES / 8;
    buf.clear();
    buf.reserve(words);
    loop {
        // SAFETY: `buf` has room for `words` u64s, and the kernel writes at most the byte count
        // given; only what it reports is made part of the vector (rounded up to whole words,
        // which the kernel pads entries to).
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr().cast::<u8>(),
                words * 8,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        // SAFETY: the kernel initialised `n` bytes; entries are 8-byte multiples (d_reclen is
        // aligned), so `n / 8` whole words.
        unsafe { buf.set_len((n as usize).div_ceil(8).min(words)) };
        return Ok(());
    }
}

/// The entries in a chunk read by [`read_dir_chunk`] (`.` and `..` included), checked: a
/// malformed record ends the walk.
pub fn entries(chunk: &[u64]) -> impl Iterator<Item = RawEntry<'_>> {
    // SAFETY: viewing initialised u64s as bytes (no padding, alignment 1).
    let bytes = unsafe { std::slice::from_raw_parts(chunk.as_ptr().cast::<u8>(), chunk.len() * 8) };
    let mut off = 0usize;
    std::iter::from_fn(move || {
        // struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        let ino = u64_at(bytes, off)?;
        let reclen = usize::from(u16_at(bytes, off + 16)?);
        let kind = *bytes.get(off + 18)?;
        let record = bytes.get(off..off.checked_add(reclen)?)?;
        if reclen < 20 {
            return None;
        }
        let name = &record[19..];
        let name = &name[..name.iter().position(|b| *b == 0)?];
        off += reclen;
        let kind = match kind {
            libc::DT_REG => Some(EntryType::File),
            libc::DT_DIR => Some(EntryType::Dir),
            libc::DT_LNK => Some(EntryType::Symlink),
            libc::DT_FIFO => Some(EntryType::Fifo),
            libc::DT_SOCK => Some(EntryType::Socket),
            libc::DT_CHR => Some(EntryType::CharDevice),
            libc::DT_BLK => Some(EntryType::BlockDevice),
            _ => None,
        };
        Some(RawEntry { ino, kind, name })
    })
}

#[cfg(test)]
mod tests;
