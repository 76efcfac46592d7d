//! What a sync session needs from the store it syncs, and nothing more: the
//! session reads and moves its watermarks, queue and checkpoints through this
//! trait, so it can run against [`Replica`] or against a store a test or a
//! simulation wraps (one that crashes between two calls, say).
//!
//! Every method is one transaction of the store: a session interrupted between
//! two calls leaves a state the next round resumes from.

use crate::error::Result;
use crate::model::{HeldAt, LogPos, OpId, Package, Seq};
use crate::replica::{
    ApplyReport, Fence, PendingOp, PulledPage, Refusal, Replica, RepushBatch, RoundStart, SnapshotRecord, Watermarks,
};

/// The store side of a sync session.
pub trait SyncStore {
    /// Marks the store generation a round starts on.
    fn fence(&self) -> Result<Fence>;
    /// Fails if the store was reset or replaced since `fence` (an account switch).
    fn check_fence(&self, fence: &Fence) -> Result<()>;
    fn watermarks(&self) -> Result<Watermarks>;
    /// What decides whether a round may begin with its pull. A store that can
    /// reads it in one transaction; this default asks piece by piece.
    fn round_start(&self) -> Result<RoundStart> {
        let watermarks = self.watermarks()?;
        Ok(RoundStart {
            pending: self.pending_count()?,
            repush_owed: self.repush_from()?.is_some(),
            snapshot_in_progress: self.snapshot_checkpoint()?.is_some(),
            acked: self.acked()?,
            pulled_at: self.pulled_at()?,
            package_version: self.package()?.map_or(0, |p| p.version),
            watermarks,
        })
    }
    /// The id and mark of the op at seq `pulled`, which the server checks its history against.
    fn pulled_at(&self) -> Result<HeldAt>;
    /// The highest seq the server gave an op this store pushed, and that op.
    fn acked(&self) -> Result<Option<(Seq, OpId)>>;
    /// Records the server's epoch; `reset`: the server lost or replaced its data,
    /// so the log is pushed again from the start and pulled again.
    fn set_epoch(&self, epoch: &str, reset: bool) -> Result<()>;

    /// Up to `limit` local ops not yet acknowledged, in log order.
    fn pending(&self, limit: usize) -> Result<Vec<PendingOp>>;
    /// How many local ops wait for the server.
    fn pending_count(&self) -> Result<u64>;
    /// The server holds every local op through log position `through`;
    /// `acked`: the seqs its answer gave, and their ops.
    fn acknowledge(&self, through: LogPos, acked: &[(Seq, OpId)]) -> Result<()>;
    /// The acknowledged seqs in `after..=through` no applied pull page has passed yet, and their ops.
    fn acks(&self, after: Seq, through: Seq) -> Result<Vec<(Seq, OpId)>>;
    /// The server gave the local ops at `positions` a seq, though they stay
    /// queued or owed to a re-push: rewriting their records must keep them.
    fn confirm(&self, positions: &[LogPos]) -> Result<()>;
    /// Refuses local ops for good; returns how many left the queue.
    fn refuse(&self, refusals: &[Refusal]) -> Result<u64>;
    /// Drops local ops whose edit the server holds in another version.
    fn supersede(&self, positions: &[LogPos]) -> Result<u64>;
    /// Writes the pending edits from `pos` on again (under a fresh actor if asked).
    fn rewrite_pending(&self, pos: LogPos, fresh_actor: bool) -> Result<u64>;

    /// Where a re-push after a server reset stands (None: none running).
    fn repush_from(&self) -> Result<Option<LogPos>>;
    fn set_repush_from(&self, from: Option<LogPos>) -> Result<()>;
    /// Log entries from `from` (position, op, whether it is local), and the last position scanned.
    fn repush_batch(&self, from: LogPos, limit: usize) -> Result<RepushBatch>;

    /// The snapshot bootstrap's checkpoint: (as-of seq, next page cursor).
    fn snapshot_checkpoint(&self) -> Result<Option<(Seq, Option<String>)>>;
    /// Applies one snapshot page; false if another process moved the bootstrap on.
    fn apply_snapshot(
        &self,
        records: &[SnapshotRecord],
        as_of: Seq,
        as_of_op: Option<OpId>,
        as_of_mark: Option<u64>,
        asked_after: Option<&str>,
        next: Option<&str>,
    ) -> Result<bool>;
    /// Applies one page of pulled ops and moves `pulled` to its end, atomically.
    fn apply_page(&self, page: &PulledPage) -> Result<ApplyReport>;

    fn package(&self) -> Result<Option<Package>>;
    /// Installs a new package; returns how many pending ops it refused.
    fn install_package(&self, package: &Package) -> Result<u64>;
    fn set_package(&self, package: Option<&Package>) -> Result<()>;
}

impl SyncStore for Replica {
    fn fence(&self) -> Result<Fence> {
        Replica::fence(self)
    }
    fn check_fence(&self, fence: &Fence) -> Result<()> {
        Replica::check_fence(self, fence)
    }
    fn watermarks(&self) -> Result<Watermarks> {
        Replica::watermarks(self)
    }
    fn round_start(&self) -> Result<RoundStart> {
        Replica::round_start(self)
    }
    fn pulled_at(&self) -> Result<HeldAt> {
        Replica::pulled_at(self)
    }
    fn acked(&self) -> Result<Option<(Seq, OpId)>> {
        Replica::acked(self)
    }
    fn set_epoch(&self, epoch: &str, reset: bool) -> Result<()> {
        Replica::set_epoch(self, epoch, reset)
    }
    fn pending(&self, limit: usize) -> Result<Vec<PendingOp>> {
        Replica::pending_ops(self, limit)
    }
    fn pending_count(&self) -> Result<u64> {
        Ok(Replica::status(self)?.pending)
    }
    fn acknowledge(&self, through: LogPos, acked: &[(Seq, OpId)]) -> Result<()> {
        Replica::ack_pushed(self, through, acked)
    }
    fn acks(&self, after: Seq, through: Seq) -> Result<Vec<(Seq, OpId)>> {
        Replica::acks(self, after, through)
    }
    fn confirm(&self, positions: &[LogPos]) -> Result<()> {
        Replica::confirm(self, positions)
    }
    fn refuse(&self, refusals: &[Refusal]) -> Result<u64> {
        Replica::refuse(self, refusals)
    }
    fn supersede(&self, positions: &[LogPos]) -> Result<u64> {
        Replica::supersede(self, positions)
    }
    fn rewrite_pending(&self, pos: LogPos, fresh_actor: bool) -> Result<u64> {
        Replica::rewrite_pending(self, pos, fresh_actor)
    }
    fn repush_from(&self) -> Result<Option<LogPos>> {
        Replica::repush_from(self)
    }
    fn set_repush_from(&self, from: Option<LogPos>) -> Result<()> {
        Replica::set_repush_from(self, from)
    }
    fn repush_batch(&self, from: LogPos, limit: usize) -> Result<RepushBatch> {
        Replica::repush_batch(self, from, limit)
    }
    fn snapshot_checkpoint(&self) -> Result<Option<(Seq, Option<String>)>> {
        Replica::snapshot_checkpoint(self)
    }
    fn apply_snapshot(
        &self,
        records: &[SnapshotRecord],
        as_of: Seq,
        as_of_op: Option<OpId>,
        as_of_mark: Option<u64>,
        asked_after: Option<&str>,
        next: Option<&str>,
    ) -> Result<bool> {
        Replica::apply_snapshot(self, records, as_of, as_of_op, as_of_mark, asked_after, next)
    }
    fn apply_page(&self, page: &PulledPage) -> Result<ApplyReport> {
        Replica::apply_pulled(self, page)
    }
    fn package(&self) -> Result<Option<Package>> {
        Replica::package(self)
    }
    fn install_package(&self, package: &Package) -> Result<u64> {
        Replica::install_package(self, package)
    }
    fn set_package(&self, package: Option<&Package>) -> Result<()> {
        Replica::set_package(self, package)
    }
}
