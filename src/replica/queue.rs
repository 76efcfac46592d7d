//! The queue of local ops waiting for the server: which are pending, what an
//! acknowledgement takes off, which the server holds as they are, and the
//! re-push owed after the server lost data. Used by the sync layer.

use redb::{ReadableTable, WriteTransaction};

use super::log::LogEntry;
use super::tables::{self, meta};
use super::{Meta, Replica, put_meta};
use crate::error::Result;
use crate::model::{ActorId, LogPos, Op, Seq};

/// Ops to re-push: `(log position, op, is local)`, and the last position
/// scanned. A snapshot's entry gives several ops at one position.
pub type RepushBatch = (Vec<(LogPos, Op, bool)>, Option<LogPos>);

/// A local op waiting for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOp {
    /// Its position in the local log.
    pub pos: LogPos,
    pub op: Op,
}

/// Where the local ops the current server does not hold begin: above
/// `pushed`, or from where an owed re-push stands (the server lost data).
pub(crate) fn unconfirmed_from(m: &Meta) -> Result<u64> {
    let from = m.u64(meta::PUSHED)? + 1;
    Ok(match m.bytes(meta::REPUSH_FROM)?.map(|b| super::read_u64(&b)) {
        Some(repush) => from.min(repush),
        None => from,
    })
}

/// Drops the confirmations of ops below `below`, which the queue no longer counts unconfirmed.
pub(crate) fn forget_confirmed_below(txn: &WriteTransaction, below: u64) -> Result<()> {
    let mut confirmed = txn.open_table(tables::CONFIRMED)?;
    if confirmed.first()?.is_some() {
        confirmed.retain_in(..below, |_, _| false)?;
    }
    Ok(())
}

/// The actors of the local ops the current server does not hold (see
/// [`unconfirmed_from`]; a store that took a fresh actor keeps the old one on
/// the ops it wrote before). Genesis ops, which every replica writes alike,
/// are left out.
pub(crate) fn pending_actors(txn: &WriteTransaction, m: &Meta) -> Result<std::collections::HashSet<ActorId>> {
    let log = txn.open_table(tables::LOG)?;
    let rejected = txn.open_table(tables::REJECTED)?;
    let discarded = txn.open_table(tables::DISCARDED)?;
    let mut actors = std::collections::HashSet::new();
    for entry in log.range(unconfirmed_from(m)?..)? {
        let (k, v) = entry?;
        if v.value().first() != Some(&LogEntry::LOCAL_KIND) {
            continue;
        }
        if let LogEntry::Local(op) = LogEntry::decode(v.value())? {
            if op.actor != crate::record::GENESIS_ACTOR
                && rejected.get(k.value())?.is_none()
                && discarded.get(k.value())?.is_none()
            {
                actors.insert(op.actor);
            }
        }
    }
    Ok(actors)
}

/// Moves `pushed` over the log entries a pull or snapshot just appended (at
/// positions `written`), when it already covered everything before them.
/// Those entries are not local ops, so the invariant holds; without this, a
/// replica that only pulls would scan its whole log for pending ops in every round.
pub(crate) fn pushed_past_pulled(txn: &WriteTransaction, m: &Meta, written: std::ops::Range<u64>) -> Result<()> {
    if !written.is_empty() && m.u64(meta::PUSHED)? + 1 == written.start {
        put_meta(txn, meta::PUSHED, &(written.end - 1).to_le_bytes())?;
    }
    Ok(())
}

impl Replica {
    /// Up to `limit` pending local ops in log order.
    /// Scans from `pushed`, so the cost follows the changes since the watermark.
    pub fn pending_ops(&self, limit: usize) -> Result<Vec<PendingOp>> {
        let txn = self.read()?;
        let m = Meta::read(&txn)?;
        let pushed = m.u64(meta::PUSHED)?;
        let log = txn.open_table(tables::LOG)?;
        let rejected = txn.open_table(tables::REJECTED)?;
        let discarded = txn.open_table(tables::DISCARDED)?;
        let mut out = Vec::new();
        for entry in log.range(pushed + 1..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            if let LogEntry::Local(op) = LogEntry::decode(v.value())? {
                if rejected.get(k.value())?.is_none() && discarded.get(k.value())?.is_none() {
                    out.push(PendingOp {
                        pos: LogPos(k.value()),
                        op,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The server acknowledged every pending op at or below `through_pos`;
    /// `acked`: the seqs it gave the ops of the answer, and those ops.
    pub fn ack_pushed(&self, through_pos: LogPos, acked: &[(Seq, crate::model::OpId)]) -> Result<()> {
        let txn = self.write()?;
        let m = Meta::read_write(&txn)?;
        let pulled = m.u64(meta::PULLED)?;
        {
            let mut acks = txn.open_table(tables::ACKS)?;
            for &(seq, op) in acked.iter().filter(|(seq, _)| *seq > pulled) {
                acks.insert(seq.0, op.as_u128())?;
            }
        }
        if let Some(&(seq, op)) = acked.iter().max_by_key(|(seq, _)| *seq) {
            let known = m.bytes(meta::ACKED)?.and_then(|b| decode_acked(&b)).map(|(s, _)| s);
            if known.is_none_or(|known| seq > known) {
                let mut value = seq.to_le_bytes().to_vec();
                value.extend_from_slice(&op.as_u128().to_le_bytes());
                put_meta(&txn, meta::ACKED, &value)?;
            }
        }
        let through_pos = through_pos.get();
        let pushed = m.u64(meta::PUSHED)?;
        if through_pos > pushed {
            // Count what leaves the queue: local ops in (pushed, through] not already rejected.
            let mut acked = 0u64;
            let mut new_pushed = through_pos;
            {
                let log = txn.open_table(tables::LOG)?;
                let rejected = txn.open_table(tables::REJECTED)?;
                let discarded = txn.open_table(tables::DISCARDED)?;
                for entry in log.range(pushed + 1..=through_pos)? {
                    let (k, v) = entry?;
                    let pos = k.value();
                    if v.value().first() == Some(&LogEntry::LOCAL_KIND)
                        && rejected.get(pos)?.is_none()
                        && discarded.get(pos)?.is_none()
                    {
                        acked += 1;
                    }
                }
                // Pulled entries right after the acknowledged ops need no push either:
                // step over them up to the next local op, so that the next search for
                // pending ops starts there (the scan covers what was pulled since).
                for entry in log.range(through_pos + 1..)? {
                    let (k, v) = entry?;
                    if v.value().first() == Some(&LogEntry::LOCAL_KIND) {
                        break;
                    }
                    new_pushed = k.value();
                }
            }
            put_meta(&txn, meta::PUSHED, &new_pushed.to_le_bytes())?;
            super::pending::remove(&txn, acked)?;
            let repush = m.bytes(meta::REPUSH_FROM)?.map(|b| super::read_u64(&b));
            forget_confirmed_below(&txn, repush.unwrap_or(u64::MAX).min(new_pushed + 1))?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Where an owed re-push (after a server reset) stands; None when none is owed.
    pub fn repush_from(&self) -> Result<Option<LogPos>> {
        let txn = self.read()?;
        Ok(Meta::read(&txn)?
            .bytes(meta::REPUSH_FROM)?
            .map(|b| LogPos(super::read_u64(&b))))
    }

    /// Records re-push progress; None when the re-push is complete.
    pub fn set_repush_from(&self, from: Option<LogPos>) -> Result<()> {
        let txn = self.write()?;
        match from {
            Some(pos) => put_meta(&txn, meta::REPUSH_FROM, &pos.to_le_bytes())?,
            None => {
                txn.open_table(tables::META)?.remove(meta::REPUSH_FROM)?;
                let pushed = Meta::read_write(&txn)?.u64(meta::PUSHED)?;
                forget_confirmed_below(&txn, pushed + 1)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The server holds the local ops at `positions` as they are (it gave them
    /// a seq), though the queue still counts them unconfirmed: rewriting their
    /// records keeps them (see the `CONFIRMED` table).
    pub fn confirm(&self, positions: &[LogPos]) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        let txn = self.write()?;
        let from = unconfirmed_from(&Meta::read_write(&txn)?)?;
        {
            let mut confirmed = txn.open_table(tables::CONFIRMED)?;
            for &pos in positions.iter().filter(|&&p| p >= from) {
                confirmed.insert(pos.get(), ())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Up to `limit` ops of the log from position `from` for a re-push: local
    /// ops still in play (not rejected or discarded) and ops pulled from
    /// others, with whether each is local. Also returns the last position scanned.
    pub fn repush_batch(&self, from: LogPos, limit: usize) -> Result<RepushBatch> {
        let txn = self.read()?;
        let log = txn.open_table(tables::LOG)?;
        let rejected = txn.open_table(tables::REJECTED)?;
        let discarded = txn.open_table(tables::DISCARDED)?;
        let mut out = Vec::new();
        let mut last = None;
        for entry in log.range(from.get().max(1)..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            let pos = k.value();
            last = Some(LogPos(pos));
            match LogEntry::decode(v.value())? {
                LogEntry::Local(op) => {
                    if rejected.get(pos)?.is_none() && discarded.get(pos)?.is_none() {
                        out.push((LogPos(pos), op, true));
                    }
                }
                LogEntry::Pulled(op, _) => {
                    if discarded.get(pos)?.is_none() {
                        out.push((LogPos(pos), op, false));
                    }
                }
                // The ops behind a snapshot's document are not in this log: its
                // changes go out as ops of their own, or a server that lost them
                // could get them from nobody.
                LogEntry::Snapshot {
                    collection,
                    record,
                    doc,
                    ..
                } => {
                    for change in crate::record::saved_changes(&doc)? {
                        let op = Op {
                            id: crate::model::OpId::of_change(&collection, &record, &change.hash),
                            actor: change.actor,
                            collection: collection.clone(),
                            record: record.clone(),
                            time_ms: change.time_ms,
                            change: change.bytes,
                        };
                        out.push((LogPos(pos), op, false));
                    }
                }
            }
        }
        Ok((out, last))
    }
}

pub(crate) fn decode_acked(bytes: &[u8]) -> Option<(Seq, crate::model::OpId)> {
    let seq = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let id = u128::from_le_bytes(bytes.get(8..24)?.try_into().ok()?);
    Some((Seq(seq), crate::model::OpId::from_u128(id)))
}
