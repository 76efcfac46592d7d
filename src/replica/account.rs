//! The account a store belongs to, and switching it without leaving a byte
//! of the old account behind.
//!
//! A switch never edits the store in place: it writes a fresh store file next
//! to it (new actor, new binding, generation + 1), syncs it to disk and
//! renames it over the old one. A crash before the rename leaves the old
//! account intact; after it, the new one is cleanly initialized. The old
//! file's pages go with its inode, so nothing of it can be read back from the
//! store file. A sync still running on the old file (another process) writes
//! into the unlinked inode and can never reach the new account: that, and the
//! generation number, is the fence.

use std::path::{Path, PathBuf};

use super::tables::meta;
use super::{Meta, Replica, Sharing, put_meta};
use crate::error::{Error, Result};
use crate::model::Binding;

/// What a sync round checks before each write: the store is still the one it started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    generation: u64,
    file: Option<(u64, u64)>,
}

/// Identity of a file on disk (device, inode), where the platform has one.
pub(crate) fn file_identity(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn switching_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".switching");
    path.with_file_name(name)
}

impl Replica {
    /// Bumped by every account switch.
    pub fn generation(&self) -> Result<u64> {
        let txn = self.read()?;
        Meta::read(&txn)?.u64(meta::GENERATION)
    }

    /// Captures what [`Replica::check_fence`] compares against.
    pub fn fence(&self) -> Result<Fence> {
        Ok(Fence {
            generation: self.generation()?,
            file: self.file_id,
        })
    }

    /// Fails when the store switched accounts since `fence` was taken.
    pub fn check_fence(&self, fence: &Fence) -> Result<()> {
        let moved = match (&self.path, fence.file) {
            (Some(path), Some(id)) => file_identity(path) != Some(id),
            _ => false,
        };
        if moved || self.generation()? != fence.generation {
            return Err(Error::Sync(
                "the store switched accounts during this sync; its answers are discarded".into(),
            ));
        }
        Ok(())
    }

    /// True when the file at this store's path is no longer the one this handle has open
    /// (another process switched accounts): reopen the store.
    pub fn is_replaced(&self) -> bool {
        match (&self.path, self.file_id) {
            (Some(path), Some(id)) => file_identity(path) != Some(id),
            _ => false,
        }
    }

    /// Replaces the store file at `path` by a fresh store bound to `binding`:
    /// no records, no log, no package, no watermarks, a new actor id. Close
    /// every handle on the old file in this process first. `sharing` is how
    /// the other processes open the old file.
    pub fn reset_file(path: &Path, sharing: Sharing, binding: &Binding, token: &str) -> Result<()> {
        let generation = if path.exists() {
            Replica::open_with(path, sharing)?.generation()?
        } else {
            0
        };
        let tmp = switching_path(path);
        let io = |e: std::io::Error| Error::storage(format!("switching accounts in {}: {e}", path.display()));
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        {
            let fresh = Replica::open(&tmp)?;
            fresh.bind(binding, token)?;
            let txn = fresh.write()?;
            put_meta(&txn, meta::GENERATION, &(generation + 1).to_le_bytes())?;
            txn.commit()?;
        }
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename itself durable.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}
