//! Listing a host directory opened inside the root ([`super::HostRoot::read_dir`]), and looking
//! at its entries relative to it, without resolving their paths again.

use crate::kernel::root::{self as kroot, EntryType, Open};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{FileType, Metadata};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    /// The file system did not say (`DT_UNKNOWN`): ask [`HostDir::symlink_metadata`].
    Unknown,
}

impl FileKind {
    pub fn of(meta: &Metadata) -> FileKind {
        FileKind::of_type(meta.file_type())
    }

    pub fn of_type(t: FileType) -> FileKind {
        if t.is_file() {
            FileKind::File
        } else if t.is_dir() {
            FileKind::Dir
        } else if t.is_symlink() {
            FileKind::Symlink
        } else if t.is_fifo() {
            FileKind::Fifo
        } else if t.is_socket() {
            FileKind::Socket
        } else if t.is_char_device() {
            FileKind::CharDevice
        } else if t.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::Unknown
        }
    }

    /// "a FIFO", "a character device", … (in refusals).
    pub fn described(self) -> &'static str {
        match self {
            FileKind::File => "a regular file",
            FileKind::Dir => "a directory",
            FileKind::Symlink => "a symbolic link",
            FileKind::Fifo => "a FIFO",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Unknown => "of an unknown type",
        }
    }
}

impl From<Option<EntryType>> for FileKind {
    fn from(t: Option<EntryType>) -> FileKind {
        match t {
            Some(EntryType::File) => FileKind::File,
            Some(EntryType::Dir) => FileKind::Dir,
            Some(EntryType::Symlink) => FileKind::Symlink,
            Some(EntryType::Fifo) => FileKind::Fifo,
            Some(EntryType::Socket) => FileKind::Socket,
            Some(EntryType::CharDevice) => FileKind::CharDevice,
            Some(EntryType::BlockDevice) => FileKind::BlockDevice,
            None => FileKind::Unknown,
        }
    }
}

/// One entry of a [`HostDir`] (never `.` or `..`). The name is any bytes but `/` and NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    pub ino: u64,
    pub kind: FileKind,
}

/// An open host directory: iterate it for its entries (`Err` once if the listing fails midway).
pub struct HostDir {
    fd: OwnedFd,
    path: PathBuf,
    chunk: Vec<u64>,
    /// Entries of the current chunk not handed out yet, in order.
    pending: std::collections::VecDeque<DirEntry>,
    done: bool,
}

impl HostDir {
    pub(super) fn new(fd: OwnedFd, path: PathBuf) -> HostDir {
        HostDir {
            fd,
            path,
            chunk: Vec::new(),
            pending: std::collections::VecDeque::new(),
            done: false,
        }
    }

    /// The directory's path under the root (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `lstat` of an entry, relative to this directory (a symlink is not followed).
    pub fn symlink_metadata(&self, name: &OsStr) -> io::Result<Metadata> {
        let fd = kroot::open_beneath(self.fd.as_fd(), &c_name(name)?, Open::Path)?;
        kroot::metadata(fd).1
    }

    /// The target of a symlink entry (a `/proc/<pid>/fd/*` link too: read, not followed).
    pub fn read_link(&self, name: &OsStr, buf: &mut Vec<u8>) -> io::Result<()> {
        crate::kernel::fs::read_link_at(
            self.fd.as_fd(),
            &c_name(name)?,
            buf,
            libc::PATH_MAX as usize,
        )
    }
}

impl Iterator for HostDir {
    type Item = io::Result<DirEntry>;

    fn next(&mut self) -> Option<io::Result<DirEntry>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            if let Err(e) = kroot::read_dir_chunk(self.fd.as_fd(), &mut self.chunk) {
                self.done = true;
                return Some(Err(e));
            }
            if self.chunk.is_empty() {
                self.done = true;
                return None;
            }
            self.pending.extend(
                kroot::entries(&self.chunk)
                    .filter(|e| e.name != b"." && e.name != b"..")
                    .map(|e| DirEntry {
                        name: OsStr::from_bytes(e.name).to_os_string(),
                        ino: e.ino,
                        kind: e.kind.into(),
                    }),
            );
        }
    }
}

/// A name as a C string, for the `*at` calls: one name, never a path.
fn c_name(name: &OsStr) -> io::Result<CString> {
    let bytes = name.as_bytes();
    if bytes.contains(&b'/') || bytes.is_empty() || bytes == b"." || bytes == b".." {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}
