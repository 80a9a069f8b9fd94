//! fanotify: which process changed a file. A notification group (never a permission one:
//! nothing waits for the agent), marks on directories added through a descriptor (resolved
//! inside the host root, as inotify's watches are), and the parsing of the events it returns:
//! each carries the pid of the process that caused it, and where it happened, in one of two
//! forms ([`Mode`]):
//! - [`Mode::Name`] (`FAN_REPORT_DFID_NAME`, Linux 5.9): the file handle of the directory and
//!   the entry's name, for every kind of change (writes, attributes, creations, deletions,
//!   renames); the caller maps the handle to the directory it marked ([`dir_handle`]);
//! - [`Mode::Descriptor`] (any kernel with fanotify): a descriptor of the changed file the
//!   kernel opened for the agent, for writes only; its path comes from `/proc/self/fd`.
//!
//! Needs `CAP_SYS_ADMIN`: since Linux 5.13 an unprivileged group can be made, but it sees
//! every other process's pid as 0.

use super::bytes::{bytes_at, u16_at, u32_at, u64_at};
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub use libc::{
    FAN_ATTRIB, FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE, FAN_EVENT_ON_CHILD, FAN_MODIFY,
    FAN_MOVED_FROM, FAN_MOVED_TO, FAN_ONDIR, FAN_Q_OVERFLOW,
};

/// How events say where they happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A directory's file handle and an entry name (`FAN_REPORT_DFID_NAME`, Linux 5.9).
    Name,
    /// A descriptor of the changed file, opened by the kernel (writes only).
    Descriptor,
}

/// `struct fanotify_event_metadata`: event_len, vers, reserved, metadata_len, mask, fd, pid.
pub const METADATA_LEN: usize = 24;

/// `FANOTIFY_METADATA_VERSION`, unchanged since Linux 2.6.37.
const METADATA_VERSION: u8 = 3;

/// `MAX_HANDLE_SZ`: the longest file handle the kernel encodes.
pub const MAX_HANDLE_BYTES: usize = 128;

/// `struct fanotify_event_info_header` (4 bytes) and the fsid (8) before a file handle.
const INFO_FID_HEADER: usize = 12;

/// `struct file_handle`'s fixed part: handle_bytes, handle_type.
const HANDLE_HEADER: usize = 8;

/// One fanotify group (closed when dropped, with all its marks).
#[derive(Debug)]
pub struct Fanotify {
    fd: OwnedFd,
    mode: Mode,
}

impl AsFd for Fanotify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A directory's identity as fanotify reports it: the file system's id and the file handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Handle {
    /// `f_fsid` of the file system (as `statfs` gives it), raw.
    pub fsid: [u8; 8],
    /// `handle_type`.
    pub kind: i32,
    /// `f_handle`, at most [`MAX_HANDLE_BYTES`].
    pub bytes: Vec<u8>,
}

/// Where an event of [`Mode::Name`] happened: an entry of a directory (`.` for the directory
/// itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dir: Handle,
    pub name: OsString,
}

/// One event as parsed from the bytes read ([`parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub mask: u64,
    /// The process that caused it, as seen in the reader's pid namespace (0: not visible there).
    pub pid: u32,
    /// [`Mode::Descriptor`]: the descriptor the kernel opened (`-1`: none). Only
    /// [`Fanotify::read_events`] takes ownership of it; a record parsed from other bytes holds a
    /// number, not a descriptor.
    pub fd: RawFd,
    /// [`Mode::Name`]: the directory and entry.
    pub entry: Option<Entry>,
}

/// One event read from a group.
#[derive(Debug)]
pub struct Event {
    pub mask: u64,
    pub pid: u32,
    pub entry: Option<Entry>,
    /// [`Mode::Descriptor`]: the changed file, open for reading (closed when dropped).
    pub file: Option<OwnedFd>,
}

impl Fanotify {
    /// A new non-blocking notification group reporting events in `mode`. `EINVAL` in
    /// [`Mode::Name`] means a kernel before 5.9; `EPERM`, no `CAP_SYS_ADMIN`; `ENOSYS`, a kernel
    /// without fanotify.
    pub fn new(mode: Mode) -> io::Result<Fanotify> {
        let report = match mode {
            Mode::Name => libc::FAN_REPORT_DFID_NAME,
            Mode::Descriptor => 0,
        };
        let flags = libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | report;
        // How the kernel opens the files it hands over in descriptor mode.
        let file_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint;
        // SAFETY: no pointers; the result is checked.
        let fd = unsafe { libc::fanotify_init(flags, file_flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Ok(Fanotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            mode,
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Marks the directory `dir` (an `O_PATH` descriptor will do) for the events in `mask`,
    /// through `/proc/self/fd/N` as [`super::inotify::Inotify::add_watch`] does: the kernel
    /// follows that magic link to the inode already resolved. `FAN_EVENT_ON_CHILD` in `mask`
    /// extends it to the directory's entries. In [`Mode::Name`], `ENODEV`, `EOPNOTSUPP` or
    /// `EXDEV` mean the file system cannot identify its files to fanotify (no fsid, no file
    /// handles): [`Mode::Descriptor`] still works there.
    pub fn mark_dir(&self, dir: BorrowedFd<'_>, mask: u64) -> io::Result<()> {
        let path = CString::new(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `path` is NUL-terminated (absolute, so the dirfd is not used); the result is
        // checked. (`as _`: musl declares the mask `c_ulonglong`, glibc `u64`.)
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_ONLYDIR,
                mask as _,
                libc::AT_FDCWD,
                path.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads what is queued into `buf` (cleared first), at most `room` bytes (so, in
    /// [`Mode::Descriptor`], at most `room / METADATA_LEN` descriptors at once), without
    /// blocking; `Ok(0)` when nothing is.
    pub fn read(&self, buf: &mut Vec<u8>, room: usize) -> io::Result<usize> {
        buf.clear();
        match super::fs::read_append(&self.fd, buf, room.max(METADATA_LEN)) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// [`Fanotify::read`] and [`parse`]: the events queued (none when nothing is). Each
    /// descriptor the kernel opened becomes owned by its event, so none is left open.
    pub fn read_events(&self, buf: &mut Vec<u8>, room: usize) -> io::Result<Vec<Event>> {
        let n = self.read(buf, room)?;
        Ok(parse(&buf[..n])
            .into_iter()
            .map(|r| Event {
                mask: r.mask,
                pid: r.pid,
                entry: r.entry,
                // SAFETY: these bytes came from this group's read: the kernel installed each
                // non-negative descriptor in our table for us to close.
                file: (r.fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(r.fd) }),
            })
            .collect())
    }
}

/// Parses the events in what [`Fanotify::read`] returned. Every length is checked: a record that
/// does not fit (a short or garbled buffer; the kernel returns whole events) ends the parse, an
/// information record that does not is skipped, and a file handle longer than
/// [`MAX_HANDLE_BYTES`] or not inside its record leaves the event without an entry.
pub fn parse(buf: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let (Some(event_len), Some(vers), Some(metadata_len)) =
        (u32_at(buf, at), buf.get(at + 4), u16_at(buf, at + 6))
    {
        let event_len = event_len as usize;
        let metadata_len = metadata_len as usize;
        if *vers != METADATA_VERSION || metadata_len < METADATA_LEN || event_len < metadata_len {
            break;
        }
        let Some(event) = bytes_at(buf, at, event_len) else {
            break;
        };
        let (Some(mask), Some(fd), Some(pid)) =
            (u64_at(event, 8), u32_at(event, 16), u32_at(event, 20))
        else {
            break;
        };
        out.push(Record {
            mask,
            pid: i32::from_ne_bytes(pid.to_ne_bytes()).max(0) as u32,
            fd: i32::from_ne_bytes(fd.to_ne_bytes()),
            entry: entry(&event[metadata_len..]),
        });
        at += event_len;
    }
    out
}

/// The first directory-and-name record among an event's information records.
fn entry(mut info: &[u8]) -> Option<Entry> {
    while let (Some(kind), Some(len)) = (info.first(), u16_at(info, 2)) {
        let len = len as usize;
        let record = bytes_at(info, 0, len).filter(|_| len >= 4)?;
        if *kind == libc::FAN_EVENT_INFO_TYPE_DFID_NAME
            && let Some(e) = dfid_name(record)
        {
            return Some(e);
        }
        info = &info[len..];
    }
    None
}

/// A `FAN_EVENT_INFO_TYPE_DFID_NAME` record: header, fsid, `struct file_handle`, then the name
/// (NUL-terminated, padded).
fn dfid_name(record: &[u8]) -> Option<Entry> {
    let fsid: [u8; 8] = bytes_at(record, 4, 8)?.try_into().ok()?;
    let handle_bytes = u32_at(record, INFO_FID_HEADER)? as usize;
    if handle_bytes > MAX_HANDLE_BYTES {
        return None;
    }
    let kind = i32::from_ne_bytes(u32_at(record, INFO_FID_HEADER + 4)?.to_ne_bytes());
    let start = INFO_FID_HEADER + HANDLE_HEADER;
    let bytes = bytes_at(record, start, handle_bytes)?.to_vec();
    let name = record.get(start + handle_bytes..)?;
    let end = name.iter().position(|b| *b == 0)?;
    if end == 0 {
        return None;
    }
    Some(Entry {
        dir: Handle { fsid, kind, bytes },
        name: OsStr::from_bytes(&name[..end]).to_os_string(),
    })
}

/// The handle fanotify's [`Mode::Name`] events give for the directory `dir` (an `O_PATH`
/// descriptor will do): its file system's `f_fsid` and its file handle
/// (`name_to_handle_at`; with `AT_HANDLE_FID`, Linux 6.5, where the file system can identify
/// files but not open them by handle, overlayfs without `nfs_export` for one). A directory's
/// handle is the one fanotify encodes for it: both leave out the parent.
pub fn dir_handle(dir: BorrowedFd<'_>) -> io::Result<Handle> {
    let fsid = fsid(dir)?;
    let (kind, bytes) = match super::fs::file_handle(dir, 0) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            super::fs::file_handle(dir, libc::AT_HANDLE_FID)
        }
        other => other,
    }?;
    Ok(Handle { fsid, kind, bytes })
}

/// `f_fsid` of the file system `fd` is on, raw.
fn fsid(fd: BorrowedFd<'_>) -> io::Result<[u8; 8]> {
    #[cfg(target_env = "gnu")]
    let fsid = {
        // fstatfs64: the 32-bit glibc targets' plain fstatfs fails on large file systems.
        let mut buf = std::mem::MaybeUninit::<libc::statfs64>::zeroed();
        // SAFETY: `buf` is a zeroed statfs64 for the call to fill; the result is checked.
        if unsafe { libc::fstatfs64(fd.as_raw_fd(), buf.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstatfs64 returned 0, so it filled the struct (which was zeroed anyway).
        unsafe { buf.assume_init() }.f_fsid
    };
    #[cfg(not(target_env = "gnu"))]
    let fsid = {
        let mut buf = std::mem::MaybeUninit::<libc::statfs>::zeroed();
        // SAFETY: `buf` is a zeroed statfs for the call to fill; the result is checked.
        if unsafe { libc::fstatfs(fd.as_raw_fd(), buf.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fstatfs returned 0, so it filled the struct (which was zeroed anyway).
        unsafe { buf.assume_init() }.f_fsid
    };
    // SAFETY: `fsid_t` is two C ints (the transmute checks the size), plain data; its fields
    // are private in libc, so it is read as the 8 bytes the kernel copies into events.
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [u8; 8]>(fsid) })
}

/// The path of an open descriptor (`/proc/self/fd/N`), as the agent's mount namespace names it
/// (under the host root's mount point for a host file). `" (deleted)"` ends it when the file
/// was removed.
pub fn fd_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    /// An event as the kernel lays it out: metadata, then a DFID_NAME record.
    fn record(
        mask: u64,
        pid: i32,
        fsid: [u8; 8],
        kind: i32,
        handle: &[u8],
        name: &[u8],
    ) -> Vec<u8> {
        let mut info = vec![libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 0, 0];
        info.extend_from_slice(&fsid);
        info.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        info.extend_from_slice(&kind.to_ne_bytes());
        info.extend_from_slice(handle);
        info.extend_from_slice(name);
        info.push(0);
        while info.len() % 4 != 0 {
            info.push(0);
        }
        let info_len = info.len() as u16;
        info[2..4].copy_from_slice(&info_len.to_ne_bytes());
        let mut out = Vec::new();
        out.extend_from_slice(&((METADATA_LEN + info.len()) as u32).to_ne_bytes());
        out.push(METADATA_VERSION);
        out.push(0);
        out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        out.extend_from_slice(&mask.to_ne_bytes());
        out.extend_from_slice(&(-1i32).to_ne_bytes());
        out.extend_from_slice(&pid.to_ne_bytes());
        out.extend_from_slice(&info);
        out
    }

    #[test]
    fn a_well_formed_buffer_parses_into_its_events() {
        let mut buf = record(FAN_CLOSE_WRITE, 42, [1; 8], 1, &[9; 8], b"passwd");
        buf.extend(record(
            FAN_CREATE | FAN_ONDIR,
            7,
            [2; 8],
            0x81,
            &[5; 20],
            b"cron.d",
        ));
        let r = parse(&buf);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].mask, r[0].pid, r[0].fd), (FAN_CLOSE_WRITE, 42, -1));
        let e = r[0].entry.as_ref().unwrap();
        assert_eq!(e.name, "passwd");
        assert_eq!(
            e.dir,
            Handle {
                fsid: [1; 8],
                kind: 1,
                bytes: vec![9; 8]
            }
        );
        assert_eq!(r[1].entry.as_ref().unwrap().name, "cron.d");
        assert_eq!(r[1].entry.as_ref().unwrap().dir.bytes.len(), 20);
    }

    #[test]
    fn short_or_garbled_buffers_never_panic() {
        let good = record(FAN_MODIFY, 1, [3; 8], 1, &[1; 8], b"x");
        // Every prefix: a whole record or nothing.
        for n in 0..good.len() {
            assert!(parse(&good[..n]).is_empty(), "prefix of {n} bytes");
        }
        assert_eq!(parse(&good).len(), 1);
        // Lengths that lie.
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(parse(&bad).is_empty(), "event_len past the end");
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert!(parse(&bad).is_empty(), "event_len 0 must not loop");
        let mut bad = good.clone();
        bad[6..8].copy_from_slice(&4u16.to_ne_bytes());
        assert!(
            parse(&bad).is_empty(),
            "metadata_len shorter than the metadata"
        );
        let mut bad = good.clone();
        bad[METADATA_LEN + 2..METADATA_LEN + 4].copy_from_slice(&0u16.to_ne_bytes());
        let r = parse(&bad);
        assert_eq!(
            r.len(),
            1,
            "an info record of length 0 is dropped, not looped on"
        );
        assert_eq!(r[0].entry, None);
        let mut bad = good.clone();
        bad[METADATA_LEN + 12..METADATA_LEN + 16].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(
            parse(&bad)[0].entry,
            None,
            "a handle longer than its record"
        );
        let mut bad = good.clone();
        bad[4] = 2;
        assert!(parse(&bad).is_empty(), "an unknown metadata version");
        // A name without its NUL.
        let mut bad = good.clone();
        let end = bad.len();
        for b in &mut bad[METADATA_LEN + 28..end] {
            *b = b'a';
        }
        assert_eq!(parse(&bad)[0].entry, None);
        // Random bytes, and random bytes after a good record.
        let mut rng = fastrand::Rng::with_seed(16);
        for _ in 0..20_000 {
            let len = rng.usize(0..300);
            let mut b: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if rng.bool() && b.len() >= 8 {
                // Plausible headers reach the deeper checks.
                b[4] = METADATA_VERSION;
                b[6..8].copy_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
                let l = rng.usize(0..len + 8) as u32;
                b[0..4].copy_from_slice(&l.to_ne_bytes());
            }
            let _ = parse(&b);
            let mut joined = good.clone();
            joined.extend_from_slice(&b);
            assert!(!parse(&joined).is_empty());
        }
    }

    /// A group in `mode`; `None` (said on stderr) without `CAP_SYS_ADMIN`.
    fn group(mode: Mode) -> Option<Fanotify> {
        match Fanotify::new(mode) {
            Ok(g) => Some(g),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!("skipping: no CAP_SYS_ADMIN for fanotify");
                None
            }
            Err(e) => panic!("fanotify_init: {e}"),
        }
    }

    #[test]
    fn the_kernel_names_the_directory_entry_and_the_writer() {
        let me = std::process::id();
        let Some(g) = group(Mode::Name) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let c = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let fd = crate::kernel::fs::open_dir(&c).unwrap();
        let handle = dir_handle(fd.as_fd()).unwrap();
        g.mark_dir(
            fd.as_fd(),
            FAN_CLOSE_WRITE | FAN_CREATE | FAN_MOVED_TO | FAN_EVENT_ON_CHILD | FAN_ONDIR,
        )
        .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(dir.path().join("new"))
            .unwrap();
        f.write_all(b"x").unwrap();
        drop(f);
        std::fs::write(dir.path().join("tmp"), b"y").unwrap();
        std::fs::rename(dir.path().join("tmp"), dir.path().join("moved")).unwrap();
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        while crate::kernel::poll::readable(&[g.as_fd()], 2000).unwrap() == 1 {
            let events = g.read_events(&mut buf, 64 * 1024).unwrap();
            if events.is_empty() {
                break;
            }
            for e in events {
                assert!(e.file.is_none());
                assert_eq!(e.pid, me);
                let entry = e.entry.unwrap();
                assert_eq!(entry.dir, handle, "the directory's handle, as marked");
                seen.push((entry.name.to_string_lossy().into_owned(), e.mask));
            }
            if seen
                .iter()
                .any(|(n, m)| n == "moved" && m & FAN_MOVED_TO != 0)
            {
                break;
            }
        }
        let has = |name: &str, bit: u64| seen.iter().any(|(n, m)| n == name && m & bit != 0);
        assert!(has("new", FAN_CREATE), "{seen:?}");
        assert!(has("new", FAN_CLOSE_WRITE), "{seen:?}");
        assert!(has("moved", FAN_MOVED_TO), "{seen:?}");
    }

    #[test]
    fn descriptor_mode_hands_over_the_changed_file() {
        let Some(g) = group(Mode::Descriptor) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let c = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let fd = crate::kernel::fs::open_dir(&c).unwrap();
        g.mark_dir(fd.as_fd(), FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD)
            .unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert_eq!(
            crate::kernel::poll::readable(&[g.as_fd()], 5000).unwrap(),
            1
        );
        let mut buf = Vec::new();
        let events = g.read_events(&mut buf, 16 * METADATA_LEN).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].pid, std::process::id());
        assert_ne!(events[0].mask & FAN_CLOSE_WRITE, 0);
        let file = events[0].file.as_ref().expect("a descriptor");
        let path = fd_path(file.as_fd()).unwrap();
        assert_eq!(path, std::fs::canonicalize(dir.path()).unwrap().join("f"));
    }
}
