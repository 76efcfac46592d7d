//! What the replica knows of the server: its epoch, how far pulls and
//! acknowledgements reached (and the ops at those seqs, to notice a server
//! that lost data), a snapshot in progress, and the last round's outcome.
use serde::{Deserialize, Serialize};

use super::queue::{decode_acked, forget_confirmed_below};
use super::tables::{self, meta};
use super::{Meta, Replica, put_meta};
use crate::error::Result;
use crate::model::{LogPos, Seq};

/// The outcome of the last sync round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSync {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub ok: bool,
    /// The round's summary in words, or why it failed.
    pub message: String,
    /// What the round did (up to its failure). None in a store whose last round
    /// was recorded before summaries were kept.
    #[serde(default)]
    pub summary: Option<crate::protocol::RoundSummary>,
}

/// Where a store stands with its server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermarks {
    /// Log position through which local ops are acknowledged by the server.
    pub pushed: LogPos,
    /// The server seq through which ops are pulled and applied (0: never pulled).
    pub pulled: Seq,
    /// The server epoch the watermarks belong to (None before the first answer).
    pub epoch: Option<String>,
}

/// What a sync round reads before its first request, in one read
/// transaction: whether it may begin with its pull (see `protocol::Session`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundStart {
    pub watermarks: Watermarks,
    /// Local ops waiting for the server.
    pub pending: u64,
    /// A re-push is owed (the server lost data).
    pub repush_owed: bool,
    /// A snapshot bootstrap is under way.
    pub snapshot_in_progress: bool,
    /// The highest seq the server gave one of this replica's ops, and that op.
    pub acked: Option<(Seq, crate::model::OpId)>,
    /// The op (and its mark) at seq `pulled`.
    pub pulled_at: crate::model::HeldAt,
    /// The version of the package this replica holds (0: none).
    pub package_version: u64,
}

fn watermarks_in(m: &Meta) -> Result<Watermarks> {
    Ok(Watermarks {
        pushed: LogPos(m.u64(meta::PUSHED)?),
        pulled: Seq(m.u64(meta::PULLED)?),
        epoch: m.bytes(meta::EPOCH)?.map(|b| String::from_utf8_lossy(&b).into_owned()),
    })
}

fn pulled_at_in(m: &Meta) -> Result<crate::model::HeldAt> {
    Ok(crate::model::HeldAt {
        op: m
            .bytes(meta::PULLED_OP)?
            .and_then(|b| <[u8; 16]>::try_from(&*b).ok())
            .map(|b| crate::model::OpId::from_u128(u128::from_le_bytes(b))),
        mark: m.bytes(meta::PULLED_MARK)?.map(|b| super::read_u64(&b)),
    })
}

impl Replica {
    /// Everything [`RoundStart`] holds, from one read transaction.
    pub fn round_start(&self) -> Result<RoundStart> {
        let txn = self.read()?;
        let m = Meta::read(&txn)?;
        Ok(RoundStart {
            watermarks: watermarks_in(&m)?,
            pending: super::pending::count(&m)?,
            repush_owed: m.has(meta::REPUSH_FROM)?,
            snapshot_in_progress: m.has(meta::SNAPSHOT)?,
            acked: m.bytes(meta::ACKED)?.and_then(|b| decode_acked(&b)),
            pulled_at: pulled_at_in(&m)?,
            package_version: self.package_cache.get(&m)?.map_or(0, |p| p.version),
        })
    }

    /// Records the server epoch. With `reset`, the server lost data: pull
    /// everything again (known ops are skipped) and forget a snapshot in progress.
    pub fn set_epoch(&self, epoch: &str, reset: bool) -> Result<()> {
        let txn = self.write()?;
        put_meta(&txn, meta::EPOCH, epoch.as_bytes())?;
        if reset {
            put_meta(&txn, meta::PULLED, &0u64.to_le_bytes())?;
            txn.open_table(tables::META)?.remove(meta::ACKED)?;
            txn.open_table(tables::META)?.remove(meta::SNAPSHOT)?;
            txn.open_table(tables::META)?.remove(meta::PULLED_OP)?;
            txn.open_table(tables::META)?.remove(meta::PULLED_MARK)?;
            txn.open_table(tables::ACKS)?.retain(|_, _| false)?;
            forget_confirmed_below(&txn, u64::MAX)?;
            // The re-push is owed until it completes, across crashes and rounds.
            put_meta(&txn, meta::REPUSH_FROM, &1u64.to_le_bytes())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The highest seq the server gave an op this replica pushed, and that op.
    pub fn acked(&self) -> Result<Option<(Seq, crate::model::OpId)>> {
        let txn = self.read()?;
        Ok(Meta::read(&txn)?.bytes(meta::ACKED)?.and_then(|b| decode_acked(&b)))
    }

    /// The seqs in `after..=through` the server gave this replica's pushes, and
    /// their ops, that no applied pull page has passed yet.
    pub fn acks(&self, after: Seq, through: Seq) -> Result<Vec<(Seq, crate::model::OpId)>> {
        let txn = self.read()?;
        let acks = txn.open_table(tables::ACKS)?;
        let mut out = Vec::new();
        if after < through {
            for entry in acks.range(after.0 + 1..=through.0)? {
                let (seq, op) = entry?;
                out.push((Seq(seq.value()), crate::model::OpId::from_u128(op.value())));
            }
        }
        Ok(out)
    }

    /// What this replica knows of the op at seq `pulled`: its id and mark.
    pub fn pulled_at(&self) -> Result<crate::model::HeldAt> {
        let txn = self.read()?;
        pulled_at_in(&Meta::read(&txn)?)
    }

    /// A snapshot bootstrap in progress: `(as_of, next cursor)`.
    pub fn snapshot_checkpoint(&self) -> Result<Option<(Seq, Option<String>)>> {
        let txn = self.read()?;
        Meta::read(&txn)?.json(meta::SNAPSHOT)
    }

    /// How far pushes and pulls reached, and the server epoch they refer to.
    pub fn watermarks(&self) -> Result<Watermarks> {
        let txn = self.read()?;
        watermarks_in(&Meta::read(&txn)?)
    }

    /// Records the outcome of a sync round.
    pub fn set_last_sync(&self, last: &LastSync) -> Result<()> {
        let txn = self.write()?;
        put_meta(&txn, meta::LAST_SYNC, &serde_json::to_vec(last).expect("serializes"))?;
        if last.ok && !Meta::read_write(&txn)?.has(meta::SNAPSHOT)? {
            txn.open_table(tables::META)?.remove(meta::FIRST_SYNC)?;
        }
        txn.commit()?;
        Ok(())
    }
}
