//! Host paths: symlinks resolved inside the host root, metadata and capped reads of host files.

use super::MAX_SYMLINK_HOPS;
use crate::host::HostRoot;
use std::ffi::OsString;
use std::fs::Metadata;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The path of `host_path` under `root` with every symlink resolved the way the host would:
/// absolute targets are taken relative to the root and `..` never climbs above it. (A plain join
/// would follow `/var/run -> /run` into the container's own `/run`.)
pub fn resolve(root: &Path, host_path: &Path) -> std::io::Result<PathBuf> {
    fn push_components(todo: &mut Vec<OsString>, p: &Path) {
        let parts: Vec<OsString> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_os_string()),
                Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .collect();
        todo.extend(parts.into_iter().rev());
    }
    let mut done = PathBuf::new();
    let mut todo = Vec::new();
    push_components(&mut todo, host_path);
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&c);
        let full = root.join(&next);
        let meta = std::fs::symlink_metadata(&full)?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(std::io::Error::other("too many levels of symbolic links"));
            }
            let target = std::fs::read_link(&full)?;
            if target.is_absolute() {
                done = PathBuf::new();
            }
            push_components(&mut todo, &target);
        } else {
            done = next;
        }
    }
    Ok(root.join(done))
}

/// `lstat` of a host path, symlinks along the way resolved inside the host root.
pub(super) fn host_meta(host: &HostRoot, host_path: &str) -> std::io::Result<Metadata> {
    let p = resolve(host.root(), Path::new(host_path))?;
    std::fs::symlink_metadata(p)
}

/// Reads at most `limit` bytes of a resolved host file.
pub(super) fn read_capped(
    host: &HostRoot,
    host_path: &str,
    limit: u64,
) -> std::io::Result<Vec<u8>> {
    let p = resolve(host.root(), Path::new(host_path))?;
    let mut buf = Vec::new();
    std::fs::File::open(p)?.take(limit).read_to_end(&mut buf)?;
    Ok(buf)
}

pub(super) fn is_not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

pub(super) fn exists(host: &HostRoot, host_path: &str) -> bool {
    host_meta(host, host_path).is_ok()
}
