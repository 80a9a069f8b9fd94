//! The state directory (a mounted volume in the container): what must survive a restart.
//!
//! Today that is the agent id: the envelope's `AgentId` must stay the same for a device across
//! restarts and upgrades, or every restart would look like a new agent in the cloud.

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
    std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
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
    write_atomic(&path, format!("{id}\n").as_bytes())?;
    tracing::info!(agent_id = %id, path = %path.display(), "created a new agent id");
    Ok(id)
}

/// Writes through a temporary file and a rename, so a crash leaves the old or the new content.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
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
