//! What the session does when the server says no: a failed request, or ops
//! of a push refused one by one. Refusals for good move ops to the rejected
//! list and the round goes on; anything else ends the round with an error.

use super::RemoteError;
use super::{InFlight, Phase, Session};
use crate::error::{Error, Result};
use crate::model::LogPos;
use crate::protocol::code::ErrorCode;
use crate::protocol::message::RefusedOp;
use crate::protocol::store::SyncStore;
use crate::replica::Refusal;

impl Session {
    /// Handles a failed request: ops the server refuses for good move to the
    /// rejected list and the round goes on; anything else ends the round with an error.
    pub fn handle_error(&mut self, store: &dyn SyncStore, error: RemoteError) -> Result<()> {
        self.check_fence(store)?;
        let in_flight = std::mem::replace(&mut self.in_flight, InFlight::None);
        self.verifying = false;
        let code = error.body.code.clone();
        let message = error.body.message.clone();
        let named = |positions: &[LogPos]| {
            error
                .body
                .op_index
                .filter(|&i| i < positions.len())
                .ok_or_else(|| Error::Sync(format!("the server refused a push without naming the op: {message}")))
        };
        let op_refused = matches!(
            (error.status, &code),
            (
                Some(400 | 409 | 413),
                ErrorCode::InvalidOp | ErrorCode::OpIdConflict | ErrorCode::OpTooLarge
            )
        );
        let too_large = matches!((error.status, &code), (Some(413), ErrorCode::TooLarge));
        match in_flight {
            InFlight::Push { positions, .. } if op_refused && code == ErrorCode::OpIdConflict => {
                let pos = positions[named(&positions)?];
                self.summary.superseded += store.supersede(&[pos])?;
                Ok(())
            }
            InFlight::Push { positions, .. } if op_refused => {
                let pos = positions[named(&positions)?];
                self.refuse(store, &[(pos, code.as_str(), &message)])
            }
            InFlight::Push { positions, .. } if error.status == Some(403) && code == ErrorCode::ReadOnly => {
                let all: Vec<_> = positions
                    .iter()
                    .map(|&pos| (pos, code.as_str(), message.as_str()))
                    .collect();
                self.refuse(store, &all)
            }
            InFlight::Repush { positions, local, .. } if error.status == Some(403) && code == ErrorCode::ReadOnly => {
                // A read-only member cannot re-push: its own ops are refused (a
                // retry once it may write again sends them). The others' may
                // exist nowhere else any more (their authors' stores reset or
                // restored): the re-push stays owed from this batch, and each
                // later round tries it again until the member may write. This
                // round goes on to pull.
                let own: Vec<_> = positions
                    .iter()
                    .zip(&local)
                    .filter(|&(_, &is_local)| is_local)
                    .map(|(&pos, _)| (pos, code.as_str(), message.as_str()))
                    .collect();
                self.refuse(store, &own)?;
                self.repush_waits = true;
                self.phase = Phase::Pull;
                Ok(())
            }
            InFlight::Push { positions, .. } | InFlight::Repush { positions, .. }
                if too_large && positions.len() > 1 =>
            {
                // The batch as a whole is over the server's body limit: send less at a time.
                self.batch = (positions.len() / 2).max(1);
                Ok(())
            }
            InFlight::Push { positions, .. } if too_large => {
                self.refuse(store, &[(positions[0], ErrorCode::OpTooLarge.as_str(), &message)])
            }
            InFlight::Repush { positions, local, .. } if op_refused || too_large => {
                let index = if too_large { 0 } else { named(&positions)? };
                if local[index] {
                    self.refuse(store, &[(positions[index], code.as_str(), &message)])?;
                } else {
                    self.skip.insert(positions[index]);
                }
                // Nothing of the batch was stored: send it again without the refused op.
                self.phase = Phase::Repush;
                Ok(())
            }
            InFlight::None if error.status == Some(409) && code == ErrorCode::HistoryChanged => {
                if std::mem::take(&mut self.quiet_unchecked) {
                    // The pull that began a quiet round: the server may have
                    // another epoch too, which only its package answer tells.
                    self.phase = Phase::Package;
                    return Ok(());
                }
                // A restored backup under the same epoch: treat it as a reset.
                self.start_over(store)
            }
            _ => Err(Error::Remote(error)),
        }
    }

    /// Refuses local ops for good: each leaves its record, later edits are written again.
    pub(super) fn refuse(&mut self, store: &dyn SyncStore, refused: &[(LogPos, &str, &str)]) -> Result<()> {
        let refusals: Vec<Refusal> = refused
            .iter()
            .map(|&(pos, code, reason)| Refusal {
                pos,
                code: code.to_string(),
                reason: reason.to_string(),
            })
            .collect();
        self.summary.rejected += store.refuse(&refusals)?;
        Ok(())
    }

    /// Handles the ops a push answer refused, in batch order. `local` says which
    /// positions are this replica's own ops (a re-push also carries others').
    pub(super) fn on_refused(
        &mut self,
        store: &dyn SyncStore,
        positions: &[LogPos],
        local: &[bool],
        refused: &[RefusedOp],
    ) -> Result<()> {
        let mut refused = refused.to_vec();
        refused.sort_by_key(|r| r.index);
        for r in &refused {
            let Some(&pos) = positions.get(r.index) else {
                return Err(Error::Sync(format!(
                    "the server refused op {} of a batch of {}",
                    r.index,
                    positions.len()
                )));
            };
            if !local.get(r.index).copied().unwrap_or(true) {
                // Another replica's op: its author pushes it.
                continue;
            }
            match r.code {
                // Another store writes as this one's actor: a fresh actor, and the edits again.
                ErrorCode::ActorReused => self.summary.rewritten += store.rewrite_pending(pos, true)?,
                // Another copy of this store delivered its own version of the edit.
                ErrorCode::OpIdConflict => self.summary.superseded += store.supersede(&[pos])?,
                _ => self.refuse(store, &[(pos, r.code.as_str(), r.message.as_str())])?,
            }
        }
        Ok(())
    }
}
