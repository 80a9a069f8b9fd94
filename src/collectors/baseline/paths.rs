//! Host paths for the checks: metadata and capped reads of host files, resolved inside the host
//! root by [`HostRoot`] (symlinks as the host resolves them, never outside the root).

use crate::host::{Error, HostRoot};
use std::fs::Metadata;

/// `stat` of a host path, symlinks (the last one too) resolved inside the host root.
pub(super) fn host_meta(host: &HostRoot, host_path: &str) -> Result<Metadata, Error> {
    host.metadata(host_path)
}

/// Reads at most `limit` bytes of a host file (a regular file).
pub(super) fn read_capped(host: &HostRoot, host_path: &str, limit: u64) -> Result<Vec<u8>, Error> {
    host.read_prefix(host_path, limit)
}

pub(super) fn is_not_found(e: &Error) -> bool {
    e.is_not_found()
}

pub(super) fn exists(host: &HostRoot, host_path: &str) -> bool {
    host_meta(host, host_path).is_ok()
}
