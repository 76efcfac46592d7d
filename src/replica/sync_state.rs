//! The replica's side of sync: pending ops, acknowledgements, rejections,
//! watermarks and the account binding. Used by the sync layer.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::log::LogEntry;
use super::tables::{self, meta};
use super::{Meta, Replica, put_meta};
use crate::error::{CorruptData, Result};
use crate::model::{ActorId, Binding, Op, Package, Seq};

/// Ops to re-push: `(log position, op, is local)`, and the last position
/// scanned. A snapshot's entry gives several ops at one position.
pub type RepushBatch = (Vec<(u64, Op, bool)>, Option<u64>);

/// A local op waiting for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOp {
    /// Its position in the local log.
    pub pos: u64,
    pub op: Op,
}

/// A local op the server refused for good, kept with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub pos: u64,
    pub op_id: String,
    pub collection: String,
    pub record: String,
    /// A stable machine-readable code (`read_only`, `invalid_op`, …).
    pub code: String,
    /// The server's reason, for a person.
    pub reason: String,
    /// What the op did (absent for ops refused by builds before rollback):
    /// `tidemark rejected --retry` writes these values again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<crate::record::EditSummary>,
}

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

pub(crate) fn pending_count(_txn: &ReadTransaction, m: &Meta) -> Result<u64> {
    m.u64(meta::PENDING)
}

pub(crate) fn add_pending(txn: &WriteTransaction, m: &Meta, added: u64) -> Result<()> {
    if added > 0 {
        let n = m.u64(meta::PENDING)? + added;
        put_meta(txn, meta::PENDING, &n.to_le_bytes())?;
    }
    Ok(())
}

/// Where the local ops the current server does not hold begin: above
/// `pushed`, or from where an owed re-push stands (the server lost data).
pub(crate) fn unconfirmed_from(m: &Meta) -> Result<u64> {
    let from = m.u64(meta::PUSHED)? + 1;
    Ok(match m.bytes(meta::REPUSH_FROM).map(super::read_u64) {
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

/// Moves `pushed` over log entries `first..next` that a pull or snapshot just
/// appended, when it already covered everything before them. Those entries are
/// not local ops, so the invariant holds; without this, a replica that only
/// pulls would scan its whole log for pending ops in every round.
pub(crate) fn pushed_past_remote(txn: &WriteTransaction, m: &Meta, first: u64, next: u64) -> Result<()> {
    if next > first && m.u64(meta::PUSHED)? + 1 == first {
        put_meta(txn, meta::PUSHED, &(next - 1).to_le_bytes())?;
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
                    out.push(PendingOp { pos: k.value(), op });
                }
            }
        }
        Ok(out)
    }

    /// The server acknowledged every pending op at or below `through_pos`;
    /// `acked`: the seqs it gave the ops of the answer, and those ops.
    pub fn ack_pushed(&self, through_pos: u64, acked: &[(Seq, crate::model::OpId)]) -> Result<()> {
        let txn = self.write()?;
        let m = Meta::read_write(&txn)?;
        let pulled = m.u64(meta::PULLED)?;
        {
            let mut acks = txn.open_table(tables::ACKS)?;
            for &(seq, op) in acked.iter().filter(|(seq, _)| *seq > pulled) {
                acks.insert(seq, op.as_u128())?;
            }
        }
        if let Some(&(seq, op)) = acked.iter().max_by_key(|(seq, _)| *seq) {
            let known = m.bytes(meta::ACKED).and_then(decode_acked).map(|(s, _)| s);
            if known.is_none_or(|known| seq > known) {
                let mut value = seq.to_le_bytes().to_vec();
                value.extend_from_slice(&op.as_u128().to_le_bytes());
                put_meta(&txn, meta::ACKED, &value)?;
            }
        }
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
            let left = m.u64(meta::PENDING)?.saturating_sub(acked);
            put_meta(&txn, meta::PENDING, &left.to_le_bytes())?;
            let repush = m.bytes(meta::REPUSH_FROM).map(super::read_u64);
            forget_confirmed_below(&txn, repush.unwrap_or(u64::MAX).min(new_pushed + 1))?;
        }
        txn.commit()?;
        Ok(())
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
        Ok(Meta::read(&txn)?.bytes(meta::ACKED).and_then(decode_acked))
    }

    /// The seqs in `after..=through` the server gave this replica's pushes, and
    /// their ops, that no applied pull page has passed yet.
    pub fn acks(&self, after: Seq, through: Seq) -> Result<Vec<(Seq, crate::model::OpId)>> {
        let txn = self.read()?;
        let acks = txn.open_table(tables::ACKS)?;
        let mut out = Vec::new();
        if after < through {
            for entry in acks.range(after + 1..=through)? {
                let (seq, op) = entry?;
                out.push((seq.value(), crate::model::OpId::from_u128(op.value())));
            }
        }
        Ok(out)
    }

    /// What this replica knows of the op at seq `pulled`: its id and mark.
    pub fn pulled_at(&self) -> Result<crate::model::HeldAt> {
        let txn = self.read()?;
        let m = Meta::read(&txn)?;
        Ok(crate::model::HeldAt {
            op: m
                .bytes(meta::PULLED_OP)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(|b| crate::model::OpId::from_u128(u128::from_le_bytes(b))),
            mark: m.bytes(meta::PULLED_MARK).map(super::read_u64),
        })
    }

    /// Where an owed re-push (after a server reset) stands; None when none is owed.
    pub fn repush_from(&self) -> Result<Option<u64>> {
        let txn = self.read()?;
        Ok(Meta::read(&txn)?.bytes(meta::REPUSH_FROM).map(super::read_u64))
    }

    /// Records re-push progress; None when the re-push is complete.
    pub fn set_repush_from(&self, from: Option<u64>) -> Result<()> {
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
    pub fn confirm(&self, positions: &[u64]) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        let txn = self.write()?;
        let from = unconfirmed_from(&Meta::read_write(&txn)?)?;
        {
            let mut confirmed = txn.open_table(tables::CONFIRMED)?;
            for &pos in positions.iter().filter(|&&p| p >= from) {
                confirmed.insert(pos, ())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Up to `limit` ops of the log from position `from` for a re-push: local
    /// ops still in play (not rejected or discarded) and ops pulled from
    /// others, with whether each is local. Also returns the last position scanned.
    pub fn repush_batch(&self, from: u64, limit: usize) -> Result<RepushBatch> {
        let txn = self.read()?;
        let log = txn.open_table(tables::LOG)?;
        let rejected = txn.open_table(tables::REJECTED)?;
        let discarded = txn.open_table(tables::DISCARDED)?;
        let mut out = Vec::new();
        let mut last = None;
        for entry in log.range(from.max(1)..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            let pos = k.value();
            last = Some(pos);
            match LogEntry::decode(v.value())? {
                LogEntry::Local(op) => {
                    if rejected.get(pos)?.is_none() && discarded.get(pos)?.is_none() {
                        out.push((pos, op, true));
                    }
                }
                LogEntry::Remote(op, _) => {
                    if discarded.get(pos)?.is_none() {
                        out.push((pos, op, false));
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
                        out.push((pos, op, false));
                    }
                }
            }
        }
        Ok((out, last))
    }

    /// A snapshot bootstrap in progress: `(as_of, next cursor)`.
    pub fn snapshot_checkpoint(&self) -> Result<Option<(u64, Option<String>)>> {
        let txn = self.read()?;
        Meta::read(&txn)?.json(meta::SNAPSHOT)
    }

    /// Refuses one local op for good (see [`Replica::refuse`]).
    pub fn reject(&self, pos: u64, code: &str, reason: &str) -> Result<u64> {
        self.refuse(&[super::Refusal {
            pos,
            code: code.to_string(),
            reason: reason.to_string(),
        }])
    }

    /// The rejected ops, oldest first.
    pub fn rejected(&self) -> Result<Vec<Rejection>> {
        let txn = self.read()?;
        let table = txn.open_table(tables::REJECTED)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| CorruptData::new("rejected entry", e))?);
        }
        Ok(out)
    }

    /// Log positions of local ops that left the queue without reaching the
    /// server and without a rejection: written again as a new op (the same
    /// edit on top of what the server holds, or nothing when it changes
    /// nothing there), or superseded by the server's version of the same edit.
    /// Also pulled ops whose change the server no longer holds (another
    /// version won, see `collision`): they are no longer part of the history.
    pub fn discarded(&self) -> Result<Vec<u64>> {
        let txn = self.read()?;
        let table = txn.open_table(tables::DISCARDED)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            out.push(entry?.0.value());
        }
        Ok(out)
    }

    /// The ops of the rejected list, oldest first.
    pub fn rejected_ops(&self) -> Result<Vec<PendingOp>> {
        let txn = self.read()?;
        let table = txn.open_table(tables::REJECTED)?;
        let log = txn.open_table(tables::LOG)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, _) = entry?;
            if let Some(bytes) = log.get(k.value())? {
                if let LogEntry::Local(op) = LogEntry::decode(bytes.value())? {
                    out.push(PendingOp { pos: k.value(), op });
                }
            }
        }
        Ok(out)
    }

    /// Writes the values of the rejected ops again as new edits (`retry`: they
    /// are checked against the package as any edit), or forgets them. Either way
    /// they leave the rejected list, in the same transaction. Returns how many.
    /// An op refused by a build before rollback has no values: a retry sends it
    /// again as it was (its change never left the document).
    pub fn resolve_rejected(&self, retry: bool) -> Result<u64> {
        let txn = self.read()?;
        let table = txn.open_table(tables::REJECTED)?;
        let mut entries = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let rejection: Rejection =
                serde_json::from_slice(v.value()).map_err(|e| CorruptData::new("rejected entry", e))?;
            entries.push((k.value(), rejection));
        }
        drop(table);
        drop(txn);
        let edits = if retry {
            entries
                .iter()
                .flat_map(|(_, r)| super::rewrite::retry_edits(r))
                .collect()
        } else {
            Vec::new()
        };
        let handled = entries.len() as u64;
        self.apply_edits_then(edits, |txn| {
            let mut rejected = txn.open_table(tables::REJECTED)?;
            let mut discarded = txn.open_table(tables::DISCARDED)?;
            let mut log = txn.open_table(tables::LOG)?;
            let mut index = txn.open_table(tables::OP_INDEX)?;
            let m = Meta::read_write(txn)?;
            let mut pos = m.u64(meta::NEXT_POS)?.max(1);
            let mut requeued = 0;
            for (old, rejection) in &entries {
                rejected.remove(*old)?;
                discarded.insert(*old, ())?;
                if retry && rejection.values.is_none() {
                    let bytes = log.get(*old)?.map(|v| v.value().to_vec());
                    if let Some(bytes) = bytes {
                        if let LogEntry::Local(op) = LogEntry::decode(&bytes)? {
                            log.insert(pos, bytes.as_slice())?;
                            index.insert(op.id.as_u128(), pos)?;
                            pos += 1;
                            requeued += 1;
                        }
                    }
                }
            }
            drop((rejected, discarded, log, index));
            put_meta(txn, meta::NEXT_POS, &pos.to_le_bytes())?;
            add_pending(txn, &m, requeued)
        })?;
        Ok(handled)
    }

    /// The watermarks `(pushed, pulled)` and the server epoch they refer to.
    pub fn watermarks(&self) -> Result<(u64, u64, Option<String>)> {
        let txn = self.read()?;
        let m = Meta::read(&txn)?;
        let epoch = m.bytes(meta::EPOCH).map(|b| String::from_utf8_lossy(b).into_owned());
        Ok((m.u64(meta::PUSHED)?, m.u64(meta::PULLED)?, epoch))
    }

    /// Binds a fresh store to an account (the first login).
    pub fn bind(&self, binding: &Binding, token: &str) -> Result<()> {
        let txn = self.write()?;
        put_meta(
            &txn,
            meta::BINDING,
            &serde_json::to_vec(binding).expect("binding serializes"),
        )?;
        put_meta(&txn, meta::TOKEN, token.as_bytes())?;
        txn.commit()?;
        Ok(())
    }

    /// The bearer token of the bound account.
    pub fn token(&self) -> Result<Option<String>> {
        let txn = self.read()?;
        let m = Meta::read(&txn)?;
        Ok(m.bytes(meta::TOKEN).map(|b| String::from_utf8_lossy(b).into_owned()))
    }

    /// Records the outcome of a sync round.
    pub fn set_last_sync(&self, last: &LastSync) -> Result<()> {
        let txn = self.write()?;
        put_meta(&txn, meta::LAST_SYNC, &serde_json::to_vec(last).expect("serializes"))?;
        txn.commit()?;
        Ok(())
    }

    /// Installs a package downloaded from the server. Pending ops that no longer
    /// validate move to the rejected list; returns how many did.
    pub fn install_package(&self, package: &Package) -> Result<u64> {
        package.check()?;
        let pending = self.pending_ops(usize::MAX)?;
        let mut refused = Vec::new();
        for p in &pending {
            let schema = match package.collection(p.op.collection.as_str()) {
                Ok(s) => s,
                Err(e) => {
                    refused.push((p.pos, e.to_string()));
                    continue;
                }
            };
            if let Err(e) =
                crate::record::validate_change(&p.op.change, p.op.actor, p.op.collection.as_str(), Some(schema))
            {
                refused.push((p.pos, e.to_string()));
            }
        }
        self.set_package(Some(package))?;
        let refusals: Vec<_> = refused
            .into_iter()
            .map(|(pos, reason)| super::Refusal {
                pos,
                code: crate::protocol::ErrorCode::InvalidAfterPackageChange.to_string(),
                reason: format!("package version {}: {reason}", package.version),
            })
            .collect();
        if refusals.is_empty() {
            return Ok(0);
        }
        self.refuse(&refusals)
    }
}

fn decode_acked(bytes: &[u8]) -> Option<(Seq, crate::model::OpId)> {
    let seq = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let id = u128::from_le_bytes(bytes.get(8..24)?.try_into().ok()?);
    Some((seq, crate::model::OpId::from_u128(id)))
}
