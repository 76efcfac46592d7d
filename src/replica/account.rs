//! The account a store belongs to, and switching it without leaving a byte
//! of the old account behind.
//!
//! [`Replica::switch_account`] is what a login does: the same account (the
//! URL spelled otherwise, or a new token) keeps the data; another account
//! clears the store, only if the [`SwitchPolicy`] allows losing what
//! [`Replica::switch_loss`] names. Asking a person, syncing first or exporting
//! the unsynced changes are the caller's, before it chooses the policy.
//!
//! A switch never edits the store in place: it writes a fresh store file next
//! to it (new actor, new binding, generation + 1), syncs it to disk and
//! renames it over the old one. A crash before the rename leaves the old
//! account intact; after it, the new one is cleanly initialized. The old
//! file's pages go with its inode, so nothing of it can be read back from the
//! store file. A sync still running on the old file (another process) writes
//! into the unlinked inode and can never reach the new account: that, and the
//! generation number, is the fence.

use std::fmt;
use std::path::{Path, PathBuf};

use super::tables::meta;
use super::{Meta, Replica, Sharing, put_meta};
use crate::error::{Error, Result};
use crate::model::Binding;

/// What logging a store in as another account would clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchLoss {
    /// The account the store belongs to now.
    pub current: Binding,
    /// The account it would belong to.
    pub wanted: Binding,
    /// Local changes the current server has not taken.
    pub pending: u64,
    /// Local changes the current server refused for good (kept for a person to retry).
    pub rejected: u64,
}

impl SwitchLoss {
    /// Whether the switch would lose changes made on this store, not only
    /// data downloaded from the server.
    pub fn loses_changes(&self) -> bool {
        self.pending > 0 || self.rejected > 0
    }
}

impl fmt::Display for SwitchLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (current, wanted) = (&self.current, &self.wanted);
        write!(
            f,
            "this store belongs to user {:?} on {} (space {:?}); switching to {:?} on {} (space {:?}) clears its downloaded data and loses {} unsynced change(s) and {} rejected one(s)",
            current.user,
            current.server,
            current.space,
            wanted.user,
            wanted.server,
            wanted.space,
            self.pending,
            self.rejected
        )
    }
}

/// What [`Replica::switch_account`] may clear when the store belongs to another account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchPolicy {
    /// Only downloaded data: a store holding unsynced or rejected changes is
    /// left as it is and the switch fails with [`Error::SwitchRefused`].
    KeepChanges,
    /// Everything, changes included: a person agreed, or the caller synced or
    /// exported them first.
    DiscardChanges,
}

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

    /// What logging this store in as `wanted` would clear: `None` when the
    /// store belongs to no account yet, or to `wanted`'s (however its server
    /// URL is spelled; a new token keeps the data).
    pub fn switch_loss(&self, wanted: &Binding) -> Result<Option<SwitchLoss>> {
        let Some(current) = self.binding()? else {
            return Ok(None);
        };
        if current.same_account(wanted) {
            return Ok(None);
        }
        let status = self.status()?;
        Ok(Some(SwitchLoss {
            current,
            wanted: wanted.clone(),
            pending: status.pending,
            rejected: status.rejected,
        }))
    }

    /// Logs the store at `path` (created if missing) in as `wanted` with
    /// `token`. A fresh store, or one of the same account, is bound and keeps
    /// its data: `Ok(None)`. A store of another account is replaced by a fresh
    /// one (see [`Replica::reset_file`]) if `policy` allows what it would lose:
    /// `Ok(Some(what was cleared))`. Close every handle on the store in this
    /// process first; `sharing` is how processes open it.
    pub fn switch_account(
        path: &Path,
        sharing: Sharing,
        wanted: &Binding,
        token: &str,
        policy: SwitchPolicy,
    ) -> Result<Option<SwitchLoss>> {
        let wanted = Binding::new(&wanted.server, &wanted.user, &wanted.space);
        let replica = Replica::open_with(path, sharing)?;
        let Some(loss) = replica.switch_loss(&wanted)? else {
            replica.bind(&wanted, token)?;
            return Ok(None);
        };
        if policy == SwitchPolicy::KeepChanges && loss.loses_changes() {
            return Err(Error::SwitchRefused(Box::new(loss)));
        }
        drop(replica);
        Replica::reset_file(path, sharing, &wanted, token)?;
        Ok(Some(loss))
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

    /// Binds a fresh store to an account (the first login), with its server
    /// URL normalised. To log in a store that may belong to another account,
    /// use [`Replica::switch_account`].
    pub fn bind(&self, binding: &Binding, token: &str) -> Result<()> {
        let binding = Binding::new(&binding.server, &binding.user, &binding.space);
        let txn = self.write()?;
        if !Meta::read_write(&txn)?.has(meta::BINDING)? {
            put_meta(&txn, meta::FIRST_SYNC, &[])?;
        }
        put_meta(
            &txn,
            meta::BINDING,
            &serde_json::to_vec(&binding).expect("binding serializes"),
        )?;
        put_meta(&txn, meta::TOKEN, token.as_bytes())?;
        txn.commit()?;
        Ok(())
    }

    /// The bearer token of the bound account.
    pub fn token(&self) -> Result<Option<String>> {
        let txn = self.read()?;
        let m = Meta::read(&txn)?;
        Ok(m.bytes(meta::TOKEN)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}
