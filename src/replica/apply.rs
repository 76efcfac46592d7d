//! Foreign ops and snapshots: merged into their record documents, grouped per
//! record (one automerge call each), and the view rebuilt from the log.

use std::collections::{BTreeMap, HashSet};

use redb::ReadableTable;

use super::log::{LogAppend, LogEntry};
use super::parallel::run_parallel;
use super::tables::{self, meta};
use super::view::ViewTables;
use super::{Meta, Replica, put_meta};
use crate::error::{CorruptData, Error, InvalidInput, Result};
use crate::model::{ActorId, Collection, Op, RecordId, Seq};
use crate::record::Change;
use crate::record::{RecordDoc, Row, check_author, decode_change};

/// An op as the server delivers it: with its seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledOp {
    pub seq: Seq,
    pub op: Op,
}

/// One page of pulled ops; `end` is the seq the page covers up to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PulledPage {
    pub ops: Vec<PulledOp>,
    pub end: Seq,
    /// The server's mark of the op at `end` (see [`HeldAt`](crate::model::HeldAt)).
    pub mark: Option<u64>,
}

/// A compacted record document from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub collection: Collection,
    pub record: RecordId,
    pub doc: Vec<u8>,
    /// The row the server materialized from `doc`. With it, a record new to
    /// this replica is stored without loading `doc` (its checks run when it is
    /// next loaded, to be edited or merged).
    pub row: Option<Row>,
}

/// What applying a page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyReport {
    /// Ops merged into documents.
    pub applied: usize,
    /// Ops skipped because their op id was already known.
    pub known: usize,
}

#[derive(Clone)]
enum Incoming {
    Changes(Vec<Change>),
    Snapshot(Vec<Vec<u8>>),
}

impl Incoming {
    /// The headers of every change this brings.
    fn headers(&self) -> Result<Vec<crate::record::ChangeHeader>> {
        Ok(match self {
            Incoming::Changes(changes) => changes.iter().map(crate::record::ChangeHeader::of).collect(),
            Incoming::Snapshot(docs) => {
                let mut out = Vec::new();
                for d in docs {
                    out.extend(RecordDoc::load_stored(d, ActorId([0; 16]))?.change_headers()?);
                }
                out
            }
        })
    }
}

/// Merges one record's incoming changes or snapshot documents into its document.
fn merge_one(merge: &Merge, actor: ActorId) -> Result<(Vec<u8>, Row)> {
    match (&merge.existing, &merge.incoming) {
        // A new record from one snapshot document: load it once and keep its bytes as they are.
        (None, Incoming::Snapshot(docs)) if docs.len() == 1 => {
            let doc = RecordDoc::load(&docs[0], actor)?;
            return Ok((docs[0].clone(), doc.row()));
        }
        _ => {}
    }
    let mut doc = match &merge.existing {
        Some(bytes) => RecordDoc::load_stored(bytes, actor)?,
        None => RecordDoc::new(actor),
    };
    match &merge.incoming {
        Incoming::Changes(changes) => doc.apply_changes(changes.clone())?,
        Incoming::Snapshot(docs) => {
            for d in docs {
                doc.merge_saved(d)?;
            }
        }
    }
    let m = doc.row();
    Ok((doc.save(), m))
}

struct Merge {
    collection: Collection,
    record: RecordId,
    existing: Option<Vec<u8>>,
    incoming: Incoming,
}

impl Replica {
    /// Merges a page of foreign ops in one transaction: ops whose id is known are
    /// skipped, the rest are validated (all of them before anything is written),
    /// merged per record, materialized, logged, and `pulled` advances to `page.end`.
    pub fn apply_pulled(&self, page: &PulledPage) -> Result<ApplyReport> {
        let txn = self.write()?;
        let mut m = Meta::read_write(&txn)?;
        let mut actor = m.actor()?;
        let mut report = ApplyReport::default();

        let mut fresh: Vec<&PulledOp> = Vec::new();
        let mut superseded = Vec::new();
        let mut replaced = Vec::new();
        {
            let index = txn.open_table(tables::OP_INDEX)?;
            let mut rejected = txn.open_table(tables::REJECTED)?;
            let mut discarded = txn.open_table(tables::DISCARDED)?;
            let log = txn.open_table(tables::LOG)?;
            let mut confirmed = txn.open_table(tables::CONFIRMED)?;
            let unconfirmed = super::queue::unconfirmed_from(&m)?;
            let mut seen = HashSet::new();
            for pulled in &page.ops {
                if !seen.insert(pulled.op.id) {
                    report.known += 1;
                    continue;
                }
                let Some(pos) = index.get(pulled.op.id.as_u128())?.map(|p| p.value()) else {
                    fresh.push(pulled);
                    continue;
                };
                // An op id names one edit and the server's version of it wins
                // (another copy of this store may have delivered it): a local op
                // that left its document (refused, or written again) is merged as
                // pulled, and its rejection settled, for a retry would double it;
                // a pending local version that differs leaves for the server's.
                if rejected.remove(pos)?.is_some() {
                    discarded.insert(pos, ())?;
                    fresh.push(pulled);
                } else if discarded.get(pos)?.is_some() {
                    fresh.push(pulled);
                } else if differs_locally(&log, pos, &pulled.op)? {
                    superseded.push(pos);
                    fresh.push(pulled);
                } else if let Some(old) = replaced_pulled(&log, pos, &pulled.op)? {
                    // Pulled before in another version: its author wrote it again
                    // after a server lost the first one.
                    replaced.push((pulled.op.collection.clone(), pulled.op.record.clone(), old));
                    fresh.push(pulled);
                } else {
                    if pos >= unconfirmed {
                        // A local op the queue still counts unconfirmed came back as it is.
                        confirmed.insert(pos, ())?;
                    }
                    report.known += 1;
                }
            }
        }
        for (collection, record, old) in &replaced {
            super::collision::yield_to_server(&txn, collection, record, &[], &HashSet::from([*old]))?;
            m = Meta::read_write(&txn)?;
            actor = m.actor()?;
            self.doc_cache.clear();
        }
        if !superseded.is_empty() {
            super::rewrite::supersede_in(&txn, &m, &superseded)?;
            m = Meta::read_write(&txn)?;
            self.doc_cache.clear();
        }

        // An op this store's actor wrote, yet unknown here: another store writes as
        // this actor (a restored backup, a copied file). Take a fresh actor before
        // merging, or its changes would collide with this store's pending ones.
        // Pending ops may still be written by an actor the store has left (their
        // record had no collision then): those count as this store's too.
        let mut ours = std::collections::HashSet::from([actor]);
        if !fresh.is_empty() && (super::pending::count(&m)? > 0 || m.has(meta::REPUSH_FROM)?) {
            ours.extend(super::queue::pending_actors(&txn, &m)?);
        }
        let shared: std::collections::BTreeSet<(Collection, RecordId)> = fresh
            .iter()
            .filter(|r| ours.contains(&r.op.actor))
            .map(|r| (r.op.collection.clone(), r.op.record.clone()))
            .collect();
        if !shared.is_empty() {
            let records: Vec<_> = shared.into_iter().collect();
            actor = super::rewrite::heal_shared_actor(&txn, &m, &records)?;
            self.doc_cache.clear();
        }

        // Each change is decoded and re-encoded to check it: spread over the cores.
        let checked = run_parallel(&fresh, |pulled| check_pulled(&pulled.op))?;
        let mut groups: BTreeMap<(Collection, RecordId), Vec<Change>> = BTreeMap::new();
        for (n, (pulled, change)) in fresh.iter().zip(checked).enumerate() {
            let change = change.map_err(|e| {
                with_context(
                    e,
                    format!("op {} ({} of the page, seq {})", pulled.op.id, n + 1, pulled.seq),
                )
            })?;
            groups
                .entry((pulled.op.collection.clone(), pulled.op.record.clone()))
                .or_default()
                .push(change);
        }

        let merges = groups
            .into_iter()
            .map(|((collection, record), changes)| Merge {
                collection,
                record,
                existing: None,
                incoming: Incoming::Changes(changes),
            })
            .collect();
        self.merge_into(&txn, actor, merges)?;
        // A collision may have written local edits again (see `collision`).
        m = Meta::read_write(&txn)?;

        let mut log = LogAppend::open(&txn)?;
        for pulled in &fresh {
            log.push(&LogEntry::Pulled(pulled.op.clone(), pulled.seq))?;
            report.applied += 1;
        }
        let written = log.finish()?;
        super::queue::pushed_past_pulled(&txn, &m, written)?;
        if page.end > m.u64(meta::PULLED)? {
            put_meta(&txn, meta::PULLED, &page.end.to_le_bytes())?;
            let mut acks = txn.open_table(tables::ACKS)?;
            if acks.first()?.is_some() {
                acks.retain_in(..=page.end.0, |_, _| false)?;
            }
            drop(acks);
            match page.ops.last() {
                Some(last) if last.seq == page.end => {
                    put_meta(&txn, meta::PULLED_OP, &last.op.id.as_u128().to_le_bytes())?
                }
                _ => {
                    txn.open_table(tables::META)?.remove(meta::PULLED_OP)?;
                }
            }
            match page.mark {
                Some(mark) => put_meta(&txn, meta::PULLED_MARK, &mark.to_le_bytes())?,
                None => {
                    txn.open_table(tables::META)?.remove(meta::PULLED_MARK)?;
                }
            }
        }
        txn.commit()?;
        Ok(report)
    }

    /// Merges one snapshot page in one transaction, logs its documents and
    /// checkpoints the bootstrap: `next` is the cursor of the following page;
    /// on the last page (`next` None) `pulled` moves to the `as_of` of the
    /// first page, so the pull that follows misses nothing.
    ///
    /// `asked_after` is the cursor the page was asked with: a page that no longer
    /// continues the stored checkpoint (another process moved the bootstrap on,
    /// or finished it) is dropped unapplied and `false` returned.
    pub fn apply_snapshot(
        &self,
        records: &[SnapshotRecord],
        as_of: Seq,
        as_of_op: Option<crate::model::OpId>,
        as_of_mark: Option<u64>,
        asked_after: Option<&str>,
        next: Option<&str>,
    ) -> Result<bool> {
        let txn = self.write()?;
        let mut m = Meta::read_write(&txn)?;
        let mut actor = m.actor()?;
        let checkpoint = m.json::<(Seq, Option<String>)>(meta::SNAPSHOT)?;
        let continues = match (&checkpoint, asked_after) {
            (Some((_, Some(stored))), Some(asked)) => stored == asked,
            (None, None) => m.u64(meta::PULLED)? == 0,
            _ => false,
        };
        if !continues {
            return Ok(false);
        }
        let shared = super::rewrite::collisions_in_snapshot(&txn, &m, records)?;
        if !shared.is_empty() {
            actor = super::rewrite::heal_shared_actor(&txn, &m, &shared)?;
            self.doc_cache.clear();
        }
        // A document that does not load fails merge_into, and the transaction with it: nothing is written.
        // Grouped per record (a page comes sorted: the sort only checks it).
        fn key(r: &SnapshotRecord) -> (&str, &str) {
            (r.collection.as_str(), r.record.as_str())
        }
        let mut sorted: Vec<&SnapshotRecord> = records.iter().collect();
        sorted.sort_by(|a, b| key(a).cmp(&key(b)));
        // A record new to this replica, sent as one document and its row, is
        // stored as it came: no automerge, no copy. The rest are merged (a
        // merged document gives its own row).
        let mut merges = Vec::new();
        let mut views = ViewTables::open(&txn)?;
        for docs in sorted.chunk_by(|a, b| key(a) == key(b)) {
            let (collection, record) = key(docs[0]);
            if let [
                SnapshotRecord {
                    doc, row: Some(row), ..
                },
            ] = docs
                && RecordDoc::check_document_only(doc).is_ok()
                && views.store_if_new_unloaded(collection, record, doc, row)?
            {
                continue;
            }
            merges.push(Merge {
                collection: docs[0].collection.clone(),
                record: docs[0].record.clone(),
                existing: None,
                incoming: Incoming::Snapshot(docs.iter().map(|r| r.doc.clone()).collect()),
            });
        }
        drop(views);
        self.merge_into(&txn, actor, merges)?;
        // A collision may have written local edits again (see `collision`).
        m = Meta::read_write(&txn)?;
        let mut log = LogAppend::open(&txn)?;
        for r in records {
            log.push_encoded(
                &LogEntry::encode_snapshot(&r.collection, &r.record, as_of, &r.doc),
                None,
                false,
            )?;
        }
        let written = log.finish()?;
        super::queue::pushed_past_pulled(&txn, &m, written)?;
        // The first page's as_of is the bound: later pages can only be newer.
        let first_as_of = checkpoint.as_ref().map(|(a, _)| *a).unwrap_or(as_of);
        if checkpoint.is_none() {
            // Remember which op the bound is, for the history check of later pulls.
            match as_of_op {
                Some(op) => put_meta(&txn, meta::SNAPSHOT_OP, &op.as_u128().to_le_bytes())?,
                None => {
                    txn.open_table(tables::META)?.remove(meta::SNAPSHOT_OP)?;
                }
            }
            match as_of_mark {
                Some(mark) => put_meta(&txn, meta::SNAPSHOT_MARK, &mark.to_le_bytes())?,
                None => {
                    txn.open_table(tables::META)?.remove(meta::SNAPSHOT_MARK)?;
                }
            }
        }
        match next {
            Some(next) => put_meta(
                &txn,
                meta::SNAPSHOT,
                &serde_json::to_vec(&(first_as_of, next)).expect("serializes"),
            )?,
            None => {
                let mut meta_table = txn.open_table(tables::META)?;
                meta_table.remove(meta::SNAPSHOT)?;
                let bound_op = meta_table.remove(meta::SNAPSHOT_OP)?.map(|v| v.value().to_vec());
                let bound_mark = meta_table.remove(meta::SNAPSHOT_MARK)?.map(|v| v.value().to_vec());
                if first_as_of > m.u64(meta::PULLED)? {
                    meta_table.insert(meta::PULLED, first_as_of.to_le_bytes().as_slice())?;
                    match bound_op {
                        Some(op) => meta_table.insert(meta::PULLED_OP, op.as_slice())?,
                        None => meta_table.remove(meta::PULLED_OP)?,
                    };
                    match bound_mark {
                        Some(mark) => meta_table.insert(meta::PULLED_MARK, mark.as_slice())?,
                        None => meta_table.remove(meta::PULLED_MARK)?,
                    };
                }
            }
        }
        txn.commit()?;
        Ok(true)
    }

    fn merge_into(&self, txn: &redb::WriteTransaction, actor: ActorId, mut merges: Vec<Merge>) -> Result<()> {
        let mut views = ViewTables::open(txn)?;
        for merge in &mut merges {
            merge.existing = views.doc_bytes(merge.collection.as_str(), merge.record.as_str())?;
        }
        let results = run_parallel(&merges, |merge| merge_one(merge, actor))?;
        let mut collided = Vec::new();
        for (merge, result) in merges.iter().zip(results) {
            match result {
                Ok((bytes, m)) => views.store(merge.collection.as_str(), merge.record.as_str(), &bytes, &m)?,
                Err(Error::Corrupt(e)) if e.context == crate::record::COLLISION => collided.push(merge),
                Err(e) => return Err(super::in_record(e, merge.collection.as_str(), merge.record.as_str())),
            }
        }
        drop(views);
        // The server's changes meet others with the same actor and number here:
        // its version wins (see `collision`), and the record is merged again.
        for merge in collided {
            let incoming = merge.incoming.headers()?;
            super::collision::yield_to_server(txn, &merge.collection, &merge.record, &incoming, &HashSet::new())?;
            let mut views = ViewTables::open(txn)?;
            let existing = views.doc_bytes(merge.collection.as_str(), merge.record.as_str())?;
            let again = Merge {
                collection: merge.collection.clone(),
                record: merge.record.clone(),
                existing,
                incoming: merge.incoming.clone(),
            };
            let (bytes, m) = merge_one(&again, Meta::read_write(txn)?.actor()?)?;
            views.store(merge.collection.as_str(), merge.record.as_str(), &bytes, &m)?;
            self.doc_cache.clear();
        }
        Ok(())
    }
}

/// Validates a foreign op: its change decodes (canonically, with a matching
/// checksum) and is written by the op's actor. It is not checked against the
/// current package: the server accepted it under the package of its day, and
/// refusing it now would wedge every pull after it.
fn check_pulled(op: &Op) -> Result<Change> {
    let change = decode_change(&op.change)?;
    check_author(&change, op.actor).map_err(|e| CorruptData::new("foreign op", e))?;
    Ok(change)
}

fn with_context(e: Error, context: String) -> Error {
    match e {
        Error::Corrupt(c) => Error::Corrupt(CorruptData::new(format!("{context}: {}", c.context), c.reason)),
        Error::Invalid(i) => Error::Invalid(InvalidInput::Other(format!("{context}: {i}"))),
        other => other,
    }
}

/// The hash of the change a pulled op at `pos` held, when the server now
/// serves another version of it.
fn replaced_pulled(log: &redb::Table<u64, &[u8]>, pos: u64, pulled: &Op) -> Result<Option<[u8; 32]>> {
    let Some(bytes) = log.get(pos)? else {
        return Ok(None);
    };
    Ok(match LogEntry::decode(bytes.value())? {
        LogEntry::Pulled(old, _) if old.change != pulled.change => Some(crate::record::change_hash(&old.change)?),
        _ => None,
    })
}

/// Whether the log holds a local op at `pos` whose change differs from `pulled`'s
/// (the same edit in another version).
fn differs_locally(log: &redb::Table<u64, &[u8]>, pos: u64, pulled: &Op) -> Result<bool> {
    let Some(bytes) = log.get(pos)? else {
        return Ok(false);
    };
    Ok(match LogEntry::decode(bytes.value())? {
        LogEntry::Local(local) => local.change != pulled.change,
        _ => false,
    })
}
