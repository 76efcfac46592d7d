//! Rewriting a record's local history when the server will not take it as it is.
//!
//! - A local op the server refuses for good leaves the record's document: the
//!   document is rebuilt without it, it goes to the rejected list with what it
//!   did ([`EditSummary`]), and the local edits made after it are written again
//!   as new ops on top of what the server holds, so they are delivered.
//! - A store that shares its actor with another (a restored backup, a copied
//!   file) takes a fresh actor and writes its pending edits again under it.
//!
//! - An op id names one edit, and the server's version of it wins: a rewritten
//!   op keeps its id, so when two copies of a store both write the same pending
//!   edit again, the server takes the first version and refuses the other
//!   (`op_id_conflict`); the refused version then leaves its document without a
//!   rejection ([`Replica::supersede`]) and the server's version is pulled.
//!
//! Either way the old ops leave the queue (rejected, or discarded as superseded)
//! and the replica's view never shows as synced what the server does not hold.

use std::collections::{BTreeMap, HashMap, HashSet};

use redb::{ReadableTable, WriteTransaction};

use super::log::{LogAppend, LogEntry};
use super::tables::{self, meta};
use super::view::ViewTables;
use super::{Meta, Rejection, Replica, put_meta};
use crate::error::{CorruptData, Result};
use crate::model::{ActorId, Collection, LogPos, Op, RecordId};
use crate::record::{GENESIS_ACTOR, RecordDoc, change_hash};

/// A refusal of one local op: its log position, a stable code and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub pos: LogPos,
    pub code: String,
    pub reason: String,
}

/// Why a local op leaves its record's document.
#[derive(Debug, Clone)]
pub(super) enum Leave {
    /// Refused for good: it goes to the rejected list with what it did.
    Refused { code: String, reason: String },
    /// The server holds another version of the same edit (same op id).
    Superseded,
}

/// What rewriting records did, to be written to the tables.
#[derive(Default)]
pub(super) struct Outcome {
    pub rejected: Vec<Rejection>,
    /// Positions superseded by the new ops.
    pub discarded: Vec<u64>,
    pub new_ops: Vec<Op>,
    /// Ops that left their documents (refused or superseded).
    pub left: u64,
}

impl Outcome {
    /// The edit of the local op at `pos`, just replayed into `new`, becomes a
    /// new op there; the old one leaves the queue. The same edit keeps its id:
    /// two copies of a store that both write it again cannot deliver it twice.
    pub fn written_again(&mut self, pos: u64, op: &Op, actor: ActorId, new: &mut RecordDoc) {
        self.discarded.push(pos);
        if let Some(change) = new.commit(op.time_ms) {
            self.new_ops.push(Op {
                id: op.id,
                actor,
                collection: op.collection.clone(),
                record: op.record.clone(),
                time_ms: op.time_ms,
                change,
            });
        }
    }
}

impl Replica {
    /// Refuses local ops for good. Each one leaves its record's document and goes
    /// to the rejected list with its reason and what it did; the later local edits
    /// of the same record are written again as new ops on top of what the server
    /// holds. Returns how many ops were rejected.
    pub fn refuse(&self, refusals: &[Refusal]) -> Result<u64> {
        let txn = self.write()?;
        let m = Meta::read_write(&txn)?;
        let actor = m.actor()?;
        let leaving: Vec<(u64, Leave)> = refusals
            .iter()
            .map(|r| {
                let leave = Leave::Refused {
                    code: r.code.clone(),
                    reason: r.reason.clone(),
                };
                (r.pos.get(), leave)
            })
            .collect();
        let outcome = leave_documents(&txn, actor, &leaving)?;
        let count = outcome.rejected.len() as u64;
        write_outcome(&txn, &m, outcome)?;
        txn.commit()?;
        self.doc_cache.clear();
        Ok(count)
    }

    /// Takes local ops out of their documents because the server holds another
    /// version of the same edit (`op_id_conflict`): no rejection, the later local
    /// edits of their records are written again, and the pull brings the
    /// server's version. Returns how many ops left.
    pub fn supersede(&self, positions: &[LogPos]) -> Result<u64> {
        let txn = self.write()?;
        let m = Meta::read_write(&txn)?;
        let positions: Vec<u64> = positions.iter().map(|p| p.get()).collect();
        let count = supersede_in(&txn, &m, &positions)?;
        txn.commit()?;
        self.doc_cache.clear();
        Ok(count)
    }

    /// Writes the local edits of the record of the op at `pos`, from that op on,
    /// again as new ops on top of what the server holds. With `fresh_actor`, the
    /// store first takes a new actor id, when that op is by the current one: the
    /// server found another store writing as it. Returns how many ops were written.
    pub fn rewrite_pending(&self, pos: LogPos, fresh_actor: bool) -> Result<u64> {
        let pos = pos.get();
        let txn = self.write()?;
        let m = Meta::read_write(&txn)?;
        let mut actor = m.actor()?;
        if !in_play(&txn, pos)? {
            // Already written again, or refused, by an earlier answer.
            return Ok(0);
        }
        let op = {
            let log = txn.open_table(tables::LOG)?;
            let bytes = log
                .get(pos)?
                .ok_or_else(|| CorruptData::new("rewrite", format!("no log entry at {pos}")))?;
            match LogEntry::decode(bytes.value())? {
                LogEntry::Local(op) => op,
                _ => return Err(CorruptData::new("rewrite", format!("log entry {pos} is not a local op")).into()),
            }
        };
        if fresh_actor && op.actor == actor {
            actor = take_fresh_actor(&txn)?;
        }
        let mut outcome = Outcome::default();
        rewrite_record(
            &txn,
            actor,
            &op.collection,
            &op.record,
            pos,
            &BTreeMap::new(),
            &mut outcome,
        )?;
        let count = outcome.new_ops.len() as u64;
        write_outcome(&txn, &m, outcome)?;
        txn.commit()?;
        self.doc_cache.clear();
        Ok(count)
    }
}

/// [`Replica::supersede`] inside the caller's transaction (a pull that brings
/// the server's version of a pending edit).
pub(super) fn supersede_in(txn: &WriteTransaction, m: &Meta, positions: &[u64]) -> Result<u64> {
    let leaving: Vec<(u64, Leave)> = positions.iter().map(|&pos| (pos, Leave::Superseded)).collect();
    let outcome = leave_documents(txn, m.actor()?, &leaving)?;
    let count = outcome.left;
    write_outcome(txn, m, outcome)?;
    Ok(count)
}

/// Takes the local ops at `leaving` out of their records' documents, in the
/// caller's transaction, and writes the later local edits of those records again.
/// Positions no longer in play (handled by an earlier answer) are skipped.
fn leave_documents(txn: &WriteTransaction, actor: ActorId, leaving: &[(u64, Leave)]) -> Result<Outcome> {
    let mut by_record: BTreeMap<(Collection, RecordId), BTreeMap<u64, Leave>> = BTreeMap::new();
    {
        let log = txn.open_table(tables::LOG)?;
        for (pos, leave) in leaving {
            if !in_play(txn, *pos)? {
                continue;
            }
            let Some(bytes) = log.get(*pos)? else {
                return Err(CorruptData::new("rewrite", format!("no log entry at {pos}")).into());
            };
            let LogEntry::Local(op) = LogEntry::decode(bytes.value())? else {
                return Err(CorruptData::new("rewrite", format!("log entry {pos} is not a local op")).into());
            };
            by_record
                .entry((op.collection, op.record))
                .or_default()
                .insert(*pos, leave.clone());
        }
    }
    let mut outcome = Outcome::default();
    for ((collection, record), leaving) in &by_record {
        let from = *leaving.keys().next().expect("an op per entry");
        rewrite_record(txn, actor, collection, record, from, leaving, &mut outcome)?;
    }
    Ok(outcome)
}

/// Whether a local op is still in the queue's play: neither rejected nor discarded.
fn in_play(txn: &WriteTransaction, pos: u64) -> Result<bool> {
    Ok(txn.open_table(tables::REJECTED)?.get(pos)?.is_none() && txn.open_table(tables::DISCARDED)?.get(pos)?.is_none())
}

/// Gives the store a new random actor id for its edits from now on.
pub(super) fn take_fresh_actor(txn: &WriteTransaction) -> Result<ActorId> {
    let actor = ActorId::random();
    put_meta(txn, meta::ACTOR, &actor.0)?;
    tracing::warn!(
        actor = %actor,
        "another store writes as this store's actor (a restored backup or a copied file): took a fresh actor"
    );
    Ok(actor)
}

/// Inside `pull`'s transaction: when a pulled op is written by this store's own
/// actor but unknown here, another store holds the same actor. Takes a fresh one
/// and writes the pending edits of those records again, before the pulled ops
/// are merged (their changes would collide with the pending ones).
pub(super) fn heal_shared_actor(
    txn: &WriteTransaction,
    m: &Meta,
    records: &[(Collection, RecordId)],
) -> Result<ActorId> {
    let actor = take_fresh_actor(txn)?;
    // An op that a server which lost data acknowledged can collide too.
    let from = super::queue::unconfirmed_from(m)?;
    let mut outcome = Outcome::default();
    for (collection, record) in records {
        rewrite_record(txn, actor, collection, record, from, &BTreeMap::new(), &mut outcome)?;
    }
    write_outcome(txn, m, outcome)?;
    Ok(actor)
}

/// Inside a snapshot page's transaction: the records of the page whose
/// document holds a change by the actor of one of this store's local ops the
/// server may lack (see `queue::unconfirmed_from`),
/// with the same sequence number but other contents. Another store writes as
/// that actor (a restored backup, a copied file): those records need
/// [`heal_shared_actor`] before the page is merged.
pub(super) fn collisions_in_snapshot(
    txn: &WriteTransaction,
    m: &Meta,
    records: &[super::SnapshotRecord],
) -> Result<Vec<(Collection, RecordId)>> {
    if super::pending::count(m)? == 0 && !m.has(meta::REPUSH_FROM)? {
        return Ok(Vec::new());
    }
    // Per record: (actor, seq) → hash of each such local change.
    type Changes = HashMap<(ActorId, u64), [u8; 32]>;
    let mut pending: HashMap<(Collection, RecordId), Changes> = HashMap::new();
    {
        let log = txn.open_table(tables::LOG)?;
        for entry in log.range(super::queue::unconfirmed_from(m)?..)? {
            let (k, v) = entry?;
            if !in_play(txn, k.value())? {
                continue;
            }
            if let LogEntry::Local(op) = LogEntry::decode(v.value())? {
                if op.actor == GENESIS_ACTOR {
                    continue;
                }
                let header = crate::record::stored_change_header(&op.change)?;
                pending
                    .entry((op.collection, op.record))
                    .or_default()
                    .insert((op.actor, header.seq), header.hash);
            }
        }
    }
    let mut out = Vec::new();
    for r in records {
        let key = (r.collection.clone(), r.record.clone());
        let Some(ours) = pending.get(&key) else { continue };
        let collides = crate::record::saved_changes(&r.doc)?
            .iter()
            .any(|c| ours.get(&(c.actor, c.seq)).is_some_and(|hash| *hash != c.hash));
        if collides && !out.contains(&key) {
            out.push(key);
        }
    }
    Ok(out)
}

/// Rebuilds one record's document without its local ops from `from` on, then
/// replays them in order: one in `leaving` is left out (a refused one is
/// summarized into a rejection), a genesis op is kept as it is, any other is
/// written again as a new change by `actor`, under its own op id.
fn rewrite_record(
    txn: &WriteTransaction,
    actor: ActorId,
    collection: &Collection,
    record: &RecordId,
    from: u64,
    leaving: &BTreeMap<u64, Leave>,
    outcome: &mut Outcome,
) -> Result<()> {
    let local = local_ops_of(txn, collection, record, from)?;
    if local.is_empty() {
        return Ok(());
    }
    let mut views = ViewTables::open(txn)?;
    let stored = views.doc_bytes(collection.as_str(), record.as_str())?.ok_or_else(|| {
        CorruptData::new(
            "rewrite",
            format!("{collection}/{record} has local ops but no document"),
        )
    })?;
    let mut full = RecordDoc::load_stored(&stored, actor)?;
    let mut hashes = Vec::with_capacity(local.len());
    for (_, op) in &local {
        hashes.push(change_hash(&op.change)?);
    }
    // A local change that also came back in a pulled op (pushed again under
    // another id, from a snapshot's document) is held by the server: it stays.
    let mut pulled = super::collision::pulled_changes(txn, collection, record)?;
    // So is a local op the server gave a seq or sent back as it is.
    {
        let confirmed = txn.open_table(tables::CONFIRMED)?;
        for ((pos, _), hash) in local.iter().zip(&hashes) {
            if confirmed.get(*pos)?.is_some() {
                pulled.insert(*hash);
            }
        }
    }
    let drop: HashSet<[u8; 32]> = hashes.iter().copied().filter(|h| !pulled.contains(h)).collect();
    let (mut base, left_out) = full.without(&drop, actor)?;
    let mut old = base.fork_as(actor);
    let mut new = base.fork_as(actor);
    let mut ids = HashMap::new();
    for ((pos, op), hash) in local.iter().zip(&hashes) {
        if !left_out.contains(hash) {
            // A change someone else's change depends on: the server holds it already.
            continue;
        }
        let before = old.fork_as(actor);
        old.apply_stored(&op.change)?;
        match leaving.get(pos) {
            Some(Leave::Refused { code, reason }) => {
                outcome.left += 1;
                outcome.rejected.push(Rejection {
                    pos: LogPos(*pos),
                    op_id: op.id.to_string(),
                    collection: collection.to_string(),
                    record: record.to_string(),
                    code: code.clone(),
                    reason: reason.clone(),
                    values: Some(RecordDoc::summarize(&before, &old)),
                })
            }
            Some(Leave::Superseded) => {
                outcome.left += 1;
                outcome.discarded.push(*pos);
            }
            // The same bytes on every replica: kept as they are, still pending.
            None if op.actor == GENESIS_ACTOR => new.apply_stored(&op.change)?,
            None => {
                new.replay(&before, &old, &mut ids)?;
                outcome.written_again(*pos, op, actor, &mut new);
            }
        }
    }
    let bytes = new.save();
    views.store(collection.as_str(), record.as_str(), &bytes, &new.row())?;
    std::mem::drop(views);
    // A change that left the document may also sit in a snapshot's document
    // in the log (this replica bootstrapped after a server that lost it
    // acknowledged it): the log must replay to the same document.
    super::collision::drop_from_log(txn, collection, record, &left_out)?;
    Ok(())
}

/// The local ops of one record at or after `from` that are still in play
/// (neither rejected nor discarded), in log order.
pub(super) fn local_ops_of(
    txn: &WriteTransaction,
    collection: &Collection,
    record: &RecordId,
    from: u64,
) -> Result<Vec<(u64, Op)>> {
    let log = txn.open_table(tables::LOG)?;
    let rejected = txn.open_table(tables::REJECTED)?;
    let discarded = txn.open_table(tables::DISCARDED)?;
    let mut out = Vec::new();
    for entry in log.range(from.max(1)..)? {
        let (k, v) = entry?;
        if v.value().first() != Some(&LogEntry::LOCAL_KIND) {
            continue;
        }
        let pos = k.value();
        if let LogEntry::Local(op) = LogEntry::decode(v.value())? {
            if &op.collection == collection
                && &op.record == record
                && rejected.get(pos)?.is_none()
                && discarded.get(pos)?.is_none()
            {
                out.push((pos, op));
            }
        }
    }
    Ok(out)
}

/// Writes what rewriting did: rejections, superseded positions, the new ops at
/// the end of the log, and the pending count.
pub(super) fn write_outcome(txn: &WriteTransaction, m: &Meta, outcome: Outcome) -> Result<()> {
    let pushed = m.u64(meta::PUSHED)?;
    let mut left_queue = 0u64;
    {
        let mut rejected = txn.open_table(tables::REJECTED)?;
        for r in &outcome.rejected {
            rejected.insert(
                r.pos.get(),
                serde_json::to_vec(r).expect("rejection serializes").as_slice(),
            )?;
            left_queue += u64::from(r.pos > pushed);
        }
        let mut discarded = txn.open_table(tables::DISCARDED)?;
        for &p in &outcome.discarded {
            discarded.insert(p, ())?;
            left_queue += u64::from(p > pushed);
        }
    }
    super::pending::remove(txn, left_queue)?;
    let mut log = LogAppend::open(txn)?;
    for op in outcome.new_ops {
        log.push(&LogEntry::Local(op))?;
    }
    log.finish()?;
    Ok(())
}

/// The edits that write a rejected op's values again.
pub(super) fn retry_edits(rejection: &Rejection) -> Vec<super::Edit> {
    use super::Edit;
    let Some(values) = &rejection.values else {
        return Vec::new();
    };
    let (collection, id) = (rejection.collection.clone(), rejection.record.clone());
    let mut edits = Vec::new();
    if !values.set.is_empty() || values.deleted == Some(false) {
        edits.push(Edit::Put {
            collection: collection.clone(),
            id: id.clone(),
            fields: values.set.clone(),
        });
    }
    // An increment by 0 is kept: it may be what created the counter.
    for (field, by) in &values.increments {
        edits.push(Edit::Increment {
            collection: collection.clone(),
            id: id.clone(),
            field: field.clone(),
            by: *by,
        });
    }
    if values.deleted == Some(true) {
        edits.push(Edit::Delete { collection, id });
    }
    edits
}
