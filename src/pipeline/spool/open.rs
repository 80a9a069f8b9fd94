//! Opening the database: loading what it holds, and setting a file aside that cannot be opened
//! (keeping the last few), so the agent starts with an empty spool instead of not at all.

use super::*;
use super::{Decoded, decode};
use crate::pipeline::journal::Rows;
use redb::{Database, ReadableTable};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

pub(super) struct Loaded {
    pub(super) db: Database,
    pub(super) index: BTreeMap<u64, Slot>,
    pub(super) next_id: u64,
    pub(super) repaired: usize,
    pub(super) journal: Rows,
}

/// Opens (or creates) the database and loads the index. Panics inside redb on a damaged file
/// (its debug assertions) are caught and reported as corruption.
fn load(path: &Path) -> Result<Loaded, redb::Error> {
    let opened = catch_unwind(AssertUnwindSafe(|| -> Result<Loaded, redb::Error> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            // Verify every page checksum, so a file damaged outside redb is reported instead
            // of trusted (a plain open may panic on it).
            .set_check_integrity_on_open(true)
            .create(path)?;
        // Queued events and messages are the device's security record: the agent's alone.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(redb::Error::Io)?;
        }
        let txn = db.begin_write()?;
        let mut index = BTreeMap::new();
        let repaired;
        let next_id;
        let mut journal = Rows::default();
        {
            let mut records = txn.open_table(RECORDS)?;
            let mut meta = txn.open_table(META)?;
            let mut bad = Vec::new();
            for item in records.iter()? {
                let (k, v) = item?;
                let id = k.value();
                match decode(v.value()) {
                    Some(Decoded {
                        output,
                        priority,
                        events,
                        body,
                    }) => {
                        index.insert(
                            id,
                            Slot {
                                priority,
                                output,
                                events,
                                len: body.len(),
                                in_flight: false,
                            },
                        );
                    }
                    None => bad.push(id),
                }
            }
            for id in &bad {
                tracing::error!(id, "spool record is not in a known format; removing it");
                records.remove(id)?;
            }
            repaired = bad.len();
            let stored = meta.get(NEXT_ID)?.map(|g| g.value()).unwrap_or(1);
            // Past every id seen, even of records just removed.
            let last = index
                .keys()
                .chain(&bad)
                .max()
                .map_or(0, |id| id.saturating_add(1));
            next_id = stored.max(last).max(1);
            meta.insert(NEXT_ID, next_id)?;
            for item in txn.open_table(QUEUE)?.iter()? {
                let (k, v) = item?;
                journal.queue.push((k.value(), v.value().to_vec()));
            }
            for item in txn.open_table(WINDOWS)?.iter()? {
                let (k, v) = item?;
                journal.windows.push((k.value(), v.value().to_vec()));
            }
        }
        txn.commit()?;
        Ok(Loaded {
            db,
            index,
            next_id,
            repaired,
            journal,
        })
    }));
    opened.unwrap_or_else(|_| {
        Err(redb::Error::Corrupted(
            "redb panicked while opening the file".into(),
        ))
    })
}

/// `<path>.corrupt-<unix time>`, plus a counter if that exists already.
fn set_aside_name(path: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut base = path.as_os_str().to_owned();
    base.push(format!(".corrupt-{secs}"));
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        let mut next = base.clone();
        next.push(format!(".{n}"));
        candidate = PathBuf::from(next);
        n += 1;
    }
    candidate
}

/// Deletes all but the newest `KEEP_CORRUPT` set-aside files of `path`.
fn prune_set_aside(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.corrupt-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    let mut old: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(KEEP_CORRUPT);
    for (_, p) in old.into_iter().take(excess) {
        if let Err(e) = std::fs::remove_file(&p) {
            tracing::warn!(path = %p.display(), error = %e, "cannot delete an old corrupt spool");
        }
    }
}

/// [`load`], setting a corrupt file aside and starting over once.
pub(super) fn load_or_set_aside(path: &Path) -> Result<(Loaded, Option<PathBuf>), Error> {
    match load(path) {
        Ok(loaded) => Ok((loaded, None)),
        Err(e) if is_corruption(&e) => {
            prune_set_aside(path);
            let aside = set_aside_name(path);
            std::fs::rename(path, &aside).map_err(|source| Error::SetAside {
                path: path.to_path_buf(),
                source,
            })?;
            tracing::error!(
                path = %path.display(),
                moved_to = %aside.display(),
                error = %e,
                "the spool is corrupt; set it aside and starting with an empty spool"
            );
            match load(path) {
                Ok(loaded) => Ok((loaded, Some(aside))),
                Err(e) if is_corruption(&e) => Err(Error::StillCorrupt {
                    path: path.to_path_buf(),
                }),
                Err(source) => Err(Error::Open {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        }
        Err(source) => Err(Error::Open {
            path: path.to_path_buf(),
            source,
        }),
    }
}
