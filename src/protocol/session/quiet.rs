//! A quiet round begins with its pull. When nothing is pending, no re-push is
//! owed, no snapshot is under way and every op the server acknowledged has been
//! pulled past, the round leaves out the package request: the pull's answer
//! says whether the server's epoch and package are still the ones this replica
//! holds. A round with nothing to do is then one request, and the store work
//! before it one read transaction.
//!
//! The pull carries the op and mark held at `pulled`, so a server restored
//! under the same epoch still answers `history_changed`; an answer whose head
//! is behind still starts the re-push. Another epoch drops the answer and the
//! round asks for the package first, as any round would; another package
//! version is fetched after the page is applied (pulled ops are not judged by
//! the package).

use super::{Phase, Request, Session};
use crate::error::Result;
use crate::protocol::SyncStore;
use crate::protocol::message::PullResponse;

impl Session {
    /// The pull that begins a quiet round; None when the round asks for the
    /// package first (decided once per round).
    pub(super) fn quiet_start(&mut self, store: &dyn SyncStore) -> Result<Option<Request>> {
        if self.quiet.is_some() {
            return Ok(None);
        }
        let start = store.round_start()?;
        let pulled = start.watermarks.pulled;
        let quiet = start.watermarks.epoch.is_some()
            && pulled > 0
            && start.pending == 0
            && !start.repush_owed
            && !start.snapshot_in_progress
            && start.acked.is_none_or(|(seq, _)| seq <= pulled);
        self.quiet = Some(quiet);
        if !quiet {
            return Ok(None);
        }
        self.quiet_unchecked = true;
        self.phase = Phase::Pull;
        Ok(Some(Request::Pull {
            at: start.pulled_at,
            since: pulled,
            limit: self.config.pull_page,
        }))
    }

    /// Whether the first answer of a quiet round comes from the server this
    /// replica knows. If not (another epoch), the answer is dropped and the
    /// round asks for the package first, which handles the new epoch.
    pub(super) fn quiet_answer_holds(&mut self, store: &dyn SyncStore, r: &PullResponse) -> Result<bool> {
        if store.watermarks()?.epoch.as_deref() == Some(r.epoch.as_str()) {
            return Ok(true);
        }
        self.phase = Phase::Package;
        Ok(false)
    }

    /// After the first answer of a quiet round: the package is fetched when
    /// the server's version is not this replica's (or the server did not say).
    pub(super) fn quiet_package(&mut self, store: &dyn SyncStore, r: &PullResponse) -> Result<()> {
        let local = store.package()?.map_or(0, |p| p.version);
        match r.package_version {
            Some(version) if version == local => self.summary.package_version = version,
            _ => self.phase = Phase::Package,
        }
        Ok(())
    }
}
