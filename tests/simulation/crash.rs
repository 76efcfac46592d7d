//! A replica store that crashes: after a set number of the session's store
//! calls, the next call fails before it runs and the process is considered
//! dead. Each call is one transaction, so the store is left as of the last
//! committed one, which is what a crash leaves.

use std::cell::Cell;

use tidemark::model::{OpId, Package, Seq};
use tidemark::protocol::{SyncStore, Watermarks};
use tidemark::replica::{ApplyReport, Fence, PendingOp, PulledPage, Refusal, RepushBatch, SnapshotRecord};
use tidemark::{Error, Replica, Result};

pub const CRASH: &str = "simulated crash";

pub struct Crashing<'a> {
    pub inner: &'a Replica,
    /// Calls left before the crash (None: no crash).
    pub left: Cell<Option<u32>>,
    pub crashed: Cell<bool>,
}

impl<'a> Crashing<'a> {
    pub fn new(inner: &'a Replica, after: Option<u32>) -> Self {
        Crashing {
            inner,
            left: Cell::new(after),
            crashed: Cell::new(false),
        }
    }

    fn step(&self) -> Result<&'a Replica> {
        if self.crashed.get() {
            return Err(Error::Sync(CRASH.into()));
        }
        match self.left.get() {
            Some(0) => {
                self.crashed.set(true);
                Err(Error::Sync(CRASH.into()))
            }
            Some(n) => {
                self.left.set(Some(n - 1));
                Ok(self.inner)
            }
            None => Ok(self.inner),
        }
    }
}

impl SyncStore for Crashing<'_> {
    fn fence(&self) -> Result<Fence> {
        self.step()?.fence()
    }
    fn check_fence(&self, fence: &Fence) -> Result<()> {
        self.step()?.check_fence(fence)
    }
    fn watermarks(&self) -> Result<Watermarks> {
        SyncStore::watermarks(self.step()?)
    }
    fn pulled_at(&self) -> Result<tidemark::model::HeldAt> {
        self.step()?.pulled_at()
    }
    fn acked(&self) -> Result<Option<(Seq, OpId)>> {
        self.step()?.acked()
    }
    fn set_epoch(&self, epoch: &str, reset: bool) -> Result<()> {
        self.step()?.set_epoch(epoch, reset)
    }
    fn pending(&self, limit: usize) -> Result<Vec<PendingOp>> {
        SyncStore::pending(self.step()?, limit)
    }
    fn pending_count(&self) -> Result<u64> {
        SyncStore::pending_count(self.step()?)
    }
    fn acknowledge(&self, through: tidemark::LogPos, acked: &[(Seq, OpId)]) -> Result<()> {
        SyncStore::acknowledge(self.step()?, through, acked)
    }
    fn acks(&self, after: Seq, through: Seq) -> Result<Vec<(Seq, OpId)>> {
        self.step()?.acks(after, through)
    }
    fn confirm(&self, positions: &[tidemark::LogPos]) -> Result<()> {
        self.step()?.confirm(positions)
    }
    fn refuse(&self, refusals: &[Refusal]) -> Result<u64> {
        self.step()?.refuse(refusals)
    }
    fn supersede(&self, positions: &[tidemark::LogPos]) -> Result<u64> {
        self.step()?.supersede(positions)
    }
    fn rewrite_pending(&self, pos: tidemark::LogPos, fresh_actor: bool) -> Result<u64> {
        self.step()?.rewrite_pending(pos, fresh_actor)
    }
    fn repush_from(&self) -> Result<Option<tidemark::LogPos>> {
        self.step()?.repush_from()
    }
    fn set_repush_from(&self, from: Option<tidemark::LogPos>) -> Result<()> {
        self.step()?.set_repush_from(from)
    }
    fn repush_batch(&self, from: tidemark::LogPos, limit: usize) -> Result<RepushBatch> {
        self.step()?.repush_batch(from, limit)
    }
    fn snapshot_checkpoint(&self) -> Result<Option<(Seq, Option<String>)>> {
        self.step()?.snapshot_checkpoint()
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
        self.step()?
            .apply_snapshot(records, as_of, as_of_op, as_of_mark, asked_after, next)
    }
    fn apply_page(&self, page: &PulledPage) -> Result<ApplyReport> {
        SyncStore::apply_page(self.step()?, page)
    }
    fn package(&self) -> Result<Option<Package>> {
        SyncStore::package(self.step()?)
    }
    fn install_package(&self, package: &Package) -> Result<u64> {
        self.step()?.install_package(package)
    }
    fn set_package(&self, package: Option<&Package>) -> Result<()> {
        SyncStore::set_package(self.step()?, package)
    }
}
