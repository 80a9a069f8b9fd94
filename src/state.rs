//! The state directory (a mounted volume in the container): what must survive a restart.
//!
//! Here: the agent id (the envelope's `AgentId` must stay the same for a device across restarts
//! and upgrades, or every restart would look like a new agent in the cloud), and the two helpers
//! every state file is written and read with ([`write_atomic`], [`read_json`]): the login
//! collector's file positions and the account watcher's last-seen accounts use them too. (The
//! spool, `spool.redb`, is its own database: [`crate::pipeline::spool`].)

use std::path::{Path, PathBuf};
use uuid::Uuid;

const AGENT_ID_FILE: &str = "agent-id";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating the state directory {path} (set --state-dir to a writable directory)")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads the agent id from `dir`, or creates and persists a new one.
///
/// A file that does not hold a GUID (truncated, edited by hand) is replaced with a fresh id and
/// a warning: the agent must start, and the old id is unrecoverable anyway.
pub fn agent_id(dir: &Path) -> Result<Uuid, Error> {
    private_dir(dir).map_err(|source| Error::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(AGENT_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match Uuid::parse_str(text.trim()) {
            Ok(id) => return Ok(id),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "agent id file is corrupt; creating a new agent id");
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(Error::Read { path, source }),
    }
    let id = Uuid::new_v4();
    write_atomic(&path, format!("{id}\n").as_bytes()).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    tracing::info!(agent_id = %id, path = %path.display(), "created a new agent id");
    Ok(id)
}

/// Creates the state directory (and its parents) and makes it the agent's alone (0700): it
/// holds what the agent saw (queued events, login positions, account snapshots) and its
/// identity.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path` (mode 0600) through a temporary file (`path` with the extension `tmp`), an fsync
/// and a rename, so a crash leaves the old or the new content, never a mix. Creates the parent
/// directory when it is missing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Why a saved state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    #[error("it is corrupt")]
    Corrupt(#[source] serde_json::Error),
}

/// [`read_json`] for a collector that starts afresh without its state: `None` when there is
/// none, and when it cannot be used, after a warning (`unreadable` or `corrupt`, with the path
/// and the error).
pub fn read_json_or_warn<T: serde::de::DeserializeOwned>(
    path: &Path,
    collector: &'static str,
    unreadable: &str,
    corrupt: &str,
) -> Option<T> {
    match read_json(path) {
        Ok(state) => state,
        Err(LoadError::Read(e)) => {
            tracing::warn!(collector, path = %path.display(), error = %e, "{unreadable}");
            None
        }
        Err(LoadError::Corrupt(e)) => {
            tracing::warn!(collector, path = %path.display(), error = %e, "{corrupt}");
            None
        }
    }
}

/// Reads a JSON state file written by [`write_atomic`]: `None` when there is none yet.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, LoadError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LoadError::Read(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(LoadError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_id_is_stable_and_repairs_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let a = agent_id(dir.path()).unwrap();
        assert_eq!(agent_id(dir.path()).unwrap(), a);
        std::fs::write(dir.path().join(AGENT_ID_FILE), "garbage").unwrap();
        let b = agent_id(dir.path()).unwrap();
        assert_ne!(a, b);
        assert_eq!(agent_id(dir.path()).unwrap(), b);
    }

    #[test]
    fn unwritable_state_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = agent_id(&file.join("sub")).unwrap_err();
        assert!(err.to_string().contains("--state-dir"), "{err}");
    }
}
