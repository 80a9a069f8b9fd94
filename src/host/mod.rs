//! Every read of a host file goes through [`HostRoot`].
//!
//! In the container the host's filesystem is mounted at `/host` (and the module shares the host's
//! PID namespace); on the host itself the root is `/`. Files under the root are untrusted input:
//! local users control much of it (home directories, `/tmp`, what log files link to), so
//!
//! - every path is resolved inside the root, as the host resolves it ([`crate::kernel::root`]:
//!   `openat2` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, or a component-by-component walk
//!   on kernels without it): an absolute symlink starts again at the root, `..` stops there, and
//!   a path through a `/proc` magic link (`/proc/<pid>/root/…`) or a symlink loop is refused;
//! - only regular files are opened for reading: a path is first opened `O_PATH` (which runs no
//!   driver's `open`) and its type checked, so a FIFO, socket or device is refused before it is
//!   ever opened; the read itself is opened `O_NONBLOCK` and must be the same file;
//! - whole-file reads are capped at [`MAX_FILE_BYTES`] (checked against the size first, so a huge
//!   sparse file is not read at all, and by the read itself, so a file that grows is cut);
//! - every refusal and every file too large is told to the [`Reporter`] (the agent counts them in
//!   `edgeguard_errors_total{component="host"}` and logs them, at most once a minute per kind).
//!
//! Readlinks of `/proc/<pid>/…` magic links (which are read, not followed) go through
//! [`HostRoot::read_link`] and [`HostDir::read_link`]: only the directory they are in is resolved.

pub mod accounts;
mod dir;
pub mod netns;
pub mod procfs;
pub mod sockets;

pub use dir::{DirEntry, FileKind, HostDir};

use crate::kernel::root::{self as kroot, MagicLinks, Open, Resolver};
use std::ffi::{CString, OsStr};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The largest host file edgeguard reads whole.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The component `edgeguard_errors_total` counts [`HostRoot`]'s refusals under.
pub const COMPONENT: &str = "host";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path} refused: {reason}")]
    Refused { path: PathBuf, reason: Refusal },
}

/// Why a host path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a regular file but {}", .0.described())]
    NotRegular(FileKind),
    #[error("a symbolic link loop, or more than 40 links on the way")]
    Loop,
    #[error("its path goes through a /proc magic link")]
    MagicLink,
    #[error("it was replaced while being opened")]
    Changed,
    /// A file of procfs or sysfs (the kernel's own) reached from a path outside `/proc` or `/sys`.
    #[error("it leads into /{0} from elsewhere")]
    KernelFile(&'static str),
}

impl Refusal {
    /// The `error_type` label it is counted under.
    pub fn error_type(self) -> &'static str {
        match self {
            Refusal::NotRegular(_) => "not_regular",
            Refusal::Loop => "loop",
            Refusal::MagicLink => "magic_link",
            Refusal::Changed => "changed",
            Refusal::KernelFile(_) => "kernel_file_elsewhere",
        }
    }
}

impl Error {
    /// True when the file simply is not there (a different distribution, an older kernel).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The `error_type` label of a refusal or a file too large; `None` for other read errors.
    pub fn error_type(&self) -> Option<&'static str> {
        match self {
            Error::Read { .. } => None,
            Error::TooLarge { .. } => Some("too_large"),
            Error::Refused { reason, .. } => Some(reason.error_type()),
        }
    }

    /// Why, without the path: for reports that name the path themselves.
    pub fn reason(&self) -> String {
        match self {
            Error::Read { source, .. } => source.to_string(),
            Error::TooLarge { limit, .. } => format!("larger than {limit} bytes"),
            Error::Refused { reason, .. } => reason.to_string(),
        }
    }
}

impl From<Error> for io::Error {
    /// The read error itself (its kind kept), or the refusal as an `Other` error.
    fn from(e: Error) -> io::Error {
        match e {
            Error::Read { source, .. } => source,
            other => io::Error::other(other),
        }
    }
}

/// Told of every host path refused or too large: its `error_type` label and the path (under the
/// root). Called on the reading thread; it must not block.
pub type Reporter = Arc<dyn Fn(&'static str, &Path) + Send + Sync>;

/// Where the host's filesystem is, and how it is read (see the module documentation).
#[derive(Clone)]
pub struct HostRoot {
    root: PathBuf,
    reporter: Option<Reporter>,
    /// Set by tests (and `EDGEGUARD_HOST_RESOLVER=walk`); else probed once per process.
    resolver: Option<Resolver>,
}

impl std::fmt::Debug for HostRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRoot")
            .field("root", &self.root)
            .field("resolver", &self.resolver)
            .finish_non_exhaustive()
    }
}

impl PartialEq for HostRoot {
    fn eq(&self, other: &HostRoot) -> bool {
        self.root == other.root && self.resolver == other.resolver
    }
}

impl Eq for HostRoot {}

impl Default for HostRoot {
    fn default() -> Self {
        HostRoot::new("/")
    }
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> HostRoot {
        HostRoot {
            root: root.into(),
            reporter: None,
            resolver: None,
        }
    }

    /// The same root, telling `reporter` of every refusal.
    pub fn with_reporter(mut self, reporter: Reporter) -> HostRoot {
        self.reporter = Some(reporter);
        self
    }

    /// The same root, resolved by `resolver` instead of the probed one (tests; the walk is what
    /// kernels before 5.6 get).
    pub fn with_resolver(mut self, resolver: Resolver) -> HostRoot {
        self.resolver = Some(resolver);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a host path (`/etc/os-release`) under the root, for messages (and for the
    /// firewall tools, which run chrooted into the root). Never open it: that would follow
    /// symlinks outside the root; use the methods below.
    pub fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let p = host_path.as_ref();
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// Reads a host file as text (invalid UTF-8 replaced), at most [`MAX_FILE_BYTES`].
    pub fn read_to_string(&self, host_path: impl AsRef<Path>) -> Result<String, Error> {
        let bytes = self.read(host_path)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Reads a host file (a regular file), at most [`MAX_FILE_BYTES`]: a larger one is
    /// [`Error::TooLarge`], found from its size before reading when it says so.
    pub fn read(&self, host_path: impl AsRef<Path>) -> Result<Vec<u8>, Error> {
        let host_path = host_path.as_ref();
        let (file, meta) = self.open(host_path)?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(self.too_large(host_path));
        }
        let buf = self.read_from(host_path, file, meta.len(), MAX_FILE_BYTES + 1)?;
        if buf.len() as u64 > MAX_FILE_BYTES {
            // It grew while it was read (or it is a /proc file, whose size says nothing).
            return Err(self.too_large(host_path));
        }
        Ok(buf)
    }

    /// The first `limit` bytes of a host file (a regular file), or all of it when shorter.
    pub fn read_prefix(&self, host_path: impl AsRef<Path>, limit: u64) -> Result<Vec<u8>, Error> {
        let host_path = host_path.as_ref();
        let (file, meta) = self.open(host_path)?;
        self.read_from(host_path, file, meta.len(), limit)
    }

    fn read_from(
        &self,
        host_path: &Path,
        file: File,
        len: u64,
        limit: u64,
    ) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::with_capacity(len.min(limit) as usize);
        file.take(limit)
            .read_to_end(&mut buf)
            .map_err(|source| self.read_error(host_path, source))?;
        Ok(buf)
    }

    /// Opens a host file for reading: a regular file only (anything else is refused before it
    /// is opened), never blocking. Returns it with its metadata.
    pub fn open(&self, host_path: impl AsRef<Path>) -> Result<(File, Metadata), Error> {
        let host_path = host_path.as_ref();
        let root = self.root_fd(host_path)?;
        let (probe, seen) = kroot::metadata(self.resolve(root.as_fd(), host_path, Open::Path)?);
        let seen = seen.map_err(|e| self.read_error(host_path, e))?;
        if !seen.is_file() {
            return Err(self.refuse(host_path, Refusal::NotRegular(FileKind::of(&seen))));
        }
        drop(probe);
        let file = File::from(self.resolve(root.as_fd(), host_path, Open::Read)?);
        let meta = file.metadata().map_err(|e| self.read_error(host_path, e))?;
        if !meta.is_file() || (meta.dev(), meta.ino()) != (seen.dev(), seen.ino()) {
            return Err(self.refuse(host_path, Refusal::Changed));
        }
        // A link from elsewhere into /proc or /sys (`~/.bash_history -> /proc/1/environ`) would
        // read what the kernel says about other processes into whatever the path was for.
        // (Opening a regular file there has no effect; reading it would.)
        let fs = kroot::fs_type(file.as_fd()).map_err(|e| self.read_error(host_path, e))?;
        if let Some(home) = kernel_files_home(fs)
            && !first_name_is(host_path, home)
        {
            return Err(self.refuse(host_path, Refusal::KernelFile(home)));
        }
        Ok((file, meta))
    }

    /// The metadata of a host path, symlinks (the last one too) followed inside the root.
    pub fn metadata(&self, host_path: impl AsRef<Path>) -> Result<Metadata, Error> {
        let host_path = host_path.as_ref();
        let root = self.root_fd(host_path)?;
        let (_, meta) = kroot::metadata(self.resolve(root.as_fd(), host_path, Open::Path)?);
        meta.map_err(|e| self.read_error(host_path, e))
    }

    /// The metadata of a host path without following its last component when that is a
    /// symlink (`lstat`); the directories on the way are resolved inside the root.
    pub fn symlink_metadata(&self, host_path: impl AsRef<Path>) -> Result<Metadata, Error> {
        let host_path = host_path.as_ref();
        let Some((parent, name)) = split_last(host_path) else {
            return self.metadata(host_path);
        };
        let dir = self.dir_fd(parent, host_path)?;
        let fd = kroot::open_beneath(dir.as_fd(), &name, Open::Path)
            .map_err(|e| self.read_error(host_path, e))?;
        kroot::metadata(fd)
            .1
            .map_err(|e| self.read_error(host_path, e))
    }

    /// The target of a symlink (a `/proc/<pid>/…` magic link too: it is read, not followed).
    pub fn read_link(&self, host_path: impl AsRef<Path>) -> Result<PathBuf, Error> {
        let host_path = host_path.as_ref();
        let Some((parent, name)) = split_last(host_path) else {
            return Err(self.read_error(host_path, io::Error::from_raw_os_error(libc::EINVAL)));
        };
        let dir = self.dir_fd(parent, host_path)?;
        let mut buf = Vec::new();
        crate::kernel::fs::read_link_at(dir.as_fd(), &name, &mut buf, libc::PATH_MAX as usize)
            .map_err(|e| self.read_error(host_path, e))?;
        Ok(PathBuf::from(OsStr::from_bytes(&buf)))
    }

    /// Opens a namespace file (`/proc/<pid>/ns/net`), for `setns`: its directory is resolved
    /// inside the root, the last component (a magic link) is followed, without blocking.
    pub fn open_namespace(&self, host_path: impl AsRef<Path>) -> Result<File, Error> {
        let host_path = host_path.as_ref();
        let Some((parent, name)) = split_last(host_path) else {
            return Err(self.read_error(host_path, io::Error::from_raw_os_error(libc::EINVAL)));
        };
        let dir = self.dir_fd(parent, host_path)?;
        kroot::open_link_target(dir.as_fd(), &name)
            .map(File::from)
            .map_err(|e| self.read_error(host_path, e))
    }

    /// An `O_PATH` descriptor of a host directory (to open names under it with `openat`).
    pub fn open_dir_path(&self, host_path: impl AsRef<Path>) -> Result<OwnedFd, Error> {
        let host_path = host_path.as_ref();
        self.dir_fd(host_path, host_path)
    }

    /// Lists a host directory.
    pub fn read_dir(&self, host_path: impl AsRef<Path>) -> Result<HostDir, Error> {
        let host_path = host_path.as_ref();
        let root = self.root_fd(host_path)?;
        let fd = self.resolve(root.as_fd(), host_path, Open::Dir)?;
        Ok(HostDir::new(fd, self.path(host_path)))
    }

    fn dir_fd(&self, dir: &Path, for_path: &Path) -> Result<OwnedFd, Error> {
        let root = self.root_fd(for_path)?;
        let (fd, meta) = kroot::metadata(self.resolve(root.as_fd(), dir, Open::Path)?);
        match meta {
            Ok(m) if m.is_dir() => Ok(fd),
            Ok(_) => Err(self.read_error(for_path, io::Error::from_raw_os_error(libc::ENOTDIR))),
            Err(e) => Err(self.read_error(for_path, e)),
        }
    }

    fn root_fd(&self, host_path: &Path) -> Result<OwnedFd, Error> {
        let c = CString::new(self.root.as_os_str().as_bytes())
            .map_err(|_| self.read_error(host_path, io::Error::from_raw_os_error(libc::EINVAL)))?;
        crate::kernel::fs::open_dir(&c).map_err(|e| self.read_error(host_path, e))
    }

    fn resolver(&self, root: BorrowedFd<'_>) -> Resolver {
        self.resolver.unwrap_or_else(|| kroot::resolver(root))
    }

    /// Resolves `host_path` under `root`; `ELOOP` is told apart as a magic link or a loop.
    fn resolve(
        &self,
        root: BorrowedFd<'_>,
        host_path: &Path,
        open: Open,
    ) -> Result<OwnedFd, Error> {
        let bytes = host_path.as_os_str().as_bytes();
        let resolver = self.resolver(root);
        match kroot::open_in_root(root, bytes, open, MagicLinks::Refuse, resolver) {
            Ok(fd) => Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                // Walked again with magic links read as text (never leaving the root): a loop
                // loops again, a path that only a magic link stopped does not.
                let again = kroot::open_in_root(
                    root,
                    bytes,
                    Open::Path,
                    MagicLinks::AsText,
                    Resolver::Walk,
                );
                let reason = match again {
                    Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Refusal::Loop,
                    _ => Refusal::MagicLink,
                };
                Err(self.refuse(host_path, reason))
            }
            Err(e) => Err(self.read_error(host_path, e)),
        }
    }

    fn read_error(&self, host_path: &Path, source: io::Error) -> Error {
        Error::Read {
            path: self.path(host_path),
            source,
        }
    }

    fn refuse(&self, host_path: &Path, reason: Refusal) -> Error {
        let path = self.path(host_path);
        self.report(reason.error_type(), &path);
        Error::Refused { path, reason }
    }

    fn too_large(&self, host_path: &Path) -> Error {
        let path = self.path(host_path);
        self.report("too_large", &path);
        Error::TooLarge {
            path,
            limit: MAX_FILE_BYTES,
        }
    }

    fn report(&self, error_type: &'static str, path: &Path) {
        if let Some(r) = &self.reporter {
            r(error_type, path);
        }
    }
}

/// Where the files of a kernel file system are read from (`proc`, `sys`), `None` for others.
fn kernel_files_home(fs_type: i64) -> Option<&'static str> {
    match fs_type {
        kroot::PROC_SUPER_MAGIC => Some("proc"),
        kroot::SYSFS_MAGIC | kroot::TRACEFS_MAGIC | kroot::DEBUGFS_MAGIC => Some("sys"),
        _ => None,
    }
}

/// Whether the first name of a host path is `name` (`/proc/…` for `proc`).
fn first_name_is(host_path: &Path, name: &str) -> bool {
    host_path
        .components()
        .find(|c| matches!(c, std::path::Component::Normal(_)))
        .is_some_and(|c| c.as_os_str() == name)
}

/// The directory and last name of a host path; `None` when there is no last name to look up on
/// its own (the root, or a path ending in `.` or `..`).
fn split_last(host_path: &Path) -> Option<(&Path, CString)> {
    let bytes = host_path.as_os_str().as_bytes();
    let trimmed = bytes.strip_suffix(b"/").unwrap_or(bytes);
    let cut = trimmed.iter().rposition(|b| *b == b'/');
    let (parent, name) = match cut {
        Some(i) => (&trimmed[..i.max(1)], &trimmed[i + 1..]),
        None => (&b"/"[..], trimmed),
    };
    if name.is_empty() || name == b"." || name == b".." {
        return None;
    }
    let name = CString::new(name).ok()?;
    Some((Path::new(OsStr::from_bytes(parent)), name))
}

#[cfg(test)]
mod tests;
