//! How a round notices that the server lost data (a new epoch, a head
//! behind what this replica holds, an acknowledged op gone) and starts over:
//! the whole log is pushed again and everything pulled again.

use super::{InFlight, Phase, Request, Session};
use crate::error::{Error, Result};
use crate::model::Seq;
use crate::protocol::{SyncStore, Watermarks};

impl Session {
    /// The server lost data: the replica forgets what it pulled from it and
    /// owes a re-push of its whole log, which this round starts.
    pub(super) fn start_over(&mut self, store: &dyn SyncStore) -> Result<()> {
        let epoch = store.watermarks()?.epoch;
        store.set_epoch(epoch.as_deref().unwrap_or_default(), true)?;
        self.summary.epoch_changed = true;
        self.verifying = false;
        self.repush_within = None;
        self.phase = Phase::Repush;
        Ok(())
    }

    pub(super) fn check_epoch(&mut self, store: &dyn SyncStore, epoch: &str, head: Seq) -> Result<()> {
        let Watermarks {
            pulled, epoch: known, ..
        } = store.watermarks()?;
        match known {
            None => store.set_epoch(epoch, false)?,
            // A new epoch, or the same epoch behind what we pulled or what it gave
            // our ops: the server lost data.
            Some(known) if known != epoch || head < pulled || store.acked()?.is_some_and(|(seq, _)| head < seq) => {
                store.set_epoch(epoch, true)?;
                self.summary.epoch_changed = true;
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// The first push of a round (a re-push too) checks that the highest op
    /// this replica pushed that the server acknowledged and no pull has seen
    /// in its log yet (a round ended between its push and its pull) is still
    /// at its seq, before
    /// a newer acknowledgement takes its place: a server restored since
    /// answers `history_changed`, which starts the re-push again from the
    /// beginning. A restore keeps a prefix of the log, so checking the highest
    /// acknowledged op checks them all.
    pub(super) fn verify_acked(&mut self, store: &dyn SyncStore) -> Result<Option<Request>> {
        if std::mem::replace(&mut self.acked_checked, true) {
            return Ok(None);
        }
        let pulled = store.watermarks()?.pulled;
        let Some((seq, id)) = store.acked()?.filter(|&(seq, _)| seq > pulled) else {
            return Ok(None);
        };
        self.verifying = true;
        Ok(Some(Request::Pull {
            at: Some(id).into(),
            since: seq,
            limit: 1,
        }))
    }

    /// An answer whose head is behind what this replica pulled, or behind a
    /// seq the server gave one of its pushes, comes from a server that lost
    /// data since (restored from a backup while this round ran): the answer
    /// is dropped and the round re-pushes the log and pulls again, as after a
    /// new epoch. The ops the dropped answer acknowledged go out again with
    /// the re-push; the server answers their first seqs.
    pub(super) fn server_behind(&mut self, store: &dyn SyncStore, head: Seq) -> Result<bool> {
        let pulled = store.watermarks()?.pulled;
        let acked = store.acked()?.map_or(Seq::ZERO, |(seq, _)| seq);
        if head >= pulled.max(acked) {
            return Ok(false);
        }
        self.in_flight = InFlight::None;
        self.start_over(store)?;
        Ok(true)
    }

    pub(super) fn same_epoch(&self, store: &dyn SyncStore, epoch: &str) -> Result<()> {
        match store.watermarks()?.epoch {
            Some(known) if known != epoch => Err(Error::Sync(
                "the server's epoch changed during the round (store reset or restored); the next round recovers".into(),
            )),
            _ => Ok(()),
        }
    }
}
