//! Every read of a host file goes through [`HostRoot`].
//!
//! In the container the host's filesystem is mounted at `/host` (and the module shares the host's
//! PID namespace); on the host itself the root is `/`. Files under the root are untrusted input:
//! reads are capped so a huge or endless file (a FIFO, `/dev/zero` bind-mounted by mistake) cannot
//! exhaust memory.

pub mod accounts;
pub mod netns;
pub mod procfs;
pub mod sockets;

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest host file edgeguard reads whole.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
}

impl Error {
    /// True when the file simply is not there (a different distribution, an older kernel).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    root: PathBuf,
}

impl Default for HostRoot {
    fn default() -> Self {
        HostRoot::new("/")
    }
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> HostRoot {
        HostRoot { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a host path (`/etc/os-release`) under the root.
    pub fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let p = host_path.as_ref();
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    /// Reads a host file as text (invalid UTF-8 replaced), at most [`MAX_FILE_BYTES`].
    pub fn read_to_string(&self, host_path: impl AsRef<Path>) -> Result<String, Error> {
        let bytes = self.read(host_path)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Reads a host file, at most [`MAX_FILE_BYTES`].
    pub fn read(&self, host_path: impl AsRef<Path>) -> Result<Vec<u8>, Error> {
        let path = self.path(host_path);
        let read_err = |source| Error::Read {
            path: path.clone(),
            source,
        };
        let f = std::fs::File::open(&path).map_err(read_err)?;
        let mut buf = Vec::new();
        f.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(read_err)?;
        if buf.len() as u64 > MAX_FILE_BYTES {
            return Err(Error::TooLarge {
                path,
                limit: MAX_FILE_BYTES,
            });
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_joined_under_the_root() {
        let h = HostRoot::new("/host");
        assert_eq!(h.path("/etc/passwd"), PathBuf::from("/host/etc/passwd"));
        assert_eq!(h.path("proc/1/stat"), PathBuf::from("/host/proc/1/stat"));
        assert_eq!(HostRoot::default().path("/etc"), PathBuf::from("/etc"));
    }

    #[test]
    fn missing_and_oversized_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let h = HostRoot::new(dir.path());
        assert!(h.read("/nope").unwrap_err().is_not_found());
        std::fs::write(
            dir.path().join("big"),
            vec![b'x'; MAX_FILE_BYTES as usize + 1],
        )
        .unwrap();
        assert!(matches!(h.read("/big"), Err(Error::TooLarge { .. })));
    }
}
