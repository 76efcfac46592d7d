//! Foreign ops and snapshots: merged into their record documents, grouped per
//! record (one automerge call each), and the view rebuilt from the log.

use std::collections::{BTreeMap, HashSet};

use automerge::Change;
use redb::ReadableTable;

use super::edit::run_parallel;
use super::log::LogEntry;
use super::tables::{self, meta};
use super::view::{ViewTables, materialize};
use super::{Meta, Replica, put_meta};
use crate::error::{CorruptData, Error, InvalidInput, Result};
use crate::model::{ActorId, Collection, Op, Package, RecordId, Seq};
use crate::record::{RecordDoc, validate_change};

/// An op as the server delivers it: with its seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOp {
    pub seq: Seq,
    pub op: Op,
}

/// One page of pulled ops; `end` is the seq the page covers up to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotePage {
    pub ops: Vec<RemoteOp>,
    pub end: Seq,
}

/// A compacted record document from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub collection: Collection,
    pub record: RecordId,
    pub doc: Vec<u8>,
}

/// What applying a page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyReport {
    /// Ops merged into documents.
    pub applied: usize,
    /// Ops skipped because their op id was already known.
    pub known: usize,
}

enum Incoming {
    Changes(Vec<Change>),
    Snapshot(Vec<Vec<u8>>),
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
    pub fn apply_remote(&self, page: &RemotePage) -> Result<ApplyReport> {
        let txn = self.write()?;
        let m = Meta::read_write(&txn)?;
        let actor = m.actor()?;
        let package = m.package()?;
        let mut report = ApplyReport::default();

        let mut fresh: Vec<&RemoteOp> = Vec::new();
        {
            let index = txn.open_table(tables::OP_INDEX)?;
            let mut seen = HashSet::new();
            for remote in &page.ops {
                if index.get(remote.op.id.as_u128())?.is_some() || !seen.insert(remote.op.id) {
                    report.known += 1;
                } else {
                    fresh.push(remote);
                }
            }
        }

        let mut groups: BTreeMap<(Collection, RecordId), Vec<Change>> = BTreeMap::new();
        for (n, remote) in fresh.iter().enumerate() {
            let change = check_remote(&remote.op, package.as_ref()).map_err(|e| {
                with_context(
                    e,
                    format!("op {} ({} of the page, seq {})", remote.op.id, n + 1, remote.seq),
                )
            })?;
            groups
                .entry((remote.op.collection.clone(), remote.op.record.clone()))
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

        let mut pos = m.u64(meta::NEXT_POS)?.max(1);
        {
            let mut log = txn.open_table(tables::LOG)?;
            let mut index = txn.open_table(tables::OP_INDEX)?;
            for remote in &fresh {
                log.insert(pos, LogEntry::Remote(remote.op.clone(), remote.seq).encode().as_slice())?;
                index.insert(remote.op.id.as_u128(), pos)?;
                pos += 1;
                report.applied += 1;
            }
        }
        put_meta(&txn, meta::NEXT_POS, &pos.to_le_bytes())?;
        if page.end > m.u64(meta::PULLED)? {
            put_meta(&txn, meta::PULLED, &page.end.to_le_bytes())?;
        }
        txn.commit()?;
        Ok(report)
    }

    /// Merges one snapshot page in one transaction, logs its documents and
    /// checkpoints the bootstrap: `next` is the cursor of the following page;
    /// on the last page (`next` None) `pulled` moves to the `as_of` of the
    /// first page, so the pull that follows misses nothing.
    pub fn apply_snapshot(&self, records: &[SnapshotRecord], as_of: Seq, next: Option<&str>) -> Result<()> {
        let txn = self.write()?;
        let m = Meta::read_write(&txn)?;
        let actor = m.actor()?;
        // A document that does not load fails merge_into, and the transaction with it: nothing is written.
        let mut groups: BTreeMap<(Collection, RecordId), Vec<Vec<u8>>> = BTreeMap::new();
        for r in records {
            groups
                .entry((r.collection.clone(), r.record.clone()))
                .or_default()
                .push(r.doc.clone());
        }
        let merges = groups
            .into_iter()
            .map(|((collection, record), docs)| Merge {
                collection,
                record,
                existing: None,
                incoming: Incoming::Snapshot(docs),
            })
            .collect();
        self.merge_into(&txn, actor, merges)?;
        let mut pos = m.u64(meta::NEXT_POS)?.max(1);
        {
            let mut log = txn.open_table(tables::LOG)?;
            for r in records {
                let entry = LogEntry::Snapshot {
                    collection: r.collection.clone(),
                    record: r.record.clone(),
                    as_of,
                    doc: r.doc.clone(),
                };
                log.insert(pos, entry.encode().as_slice())?;
                pos += 1;
            }
        }
        put_meta(&txn, meta::NEXT_POS, &pos.to_le_bytes())?;
        // The first page's as_of is the bound: later pages can only be newer.
        let first_as_of = m
            .json::<(Seq, Option<String>)>(meta::SNAPSHOT)?
            .map(|(a, _)| a)
            .unwrap_or(as_of);
        match next {
            Some(next) => put_meta(
                &txn,
                meta::SNAPSHOT,
                &serde_json::to_vec(&(first_as_of, next)).expect("serializes"),
            )?,
            None => {
                txn.open_table(tables::META)?.remove(meta::SNAPSHOT)?;
                if first_as_of > m.u64(meta::PULLED)? {
                    put_meta(&txn, meta::PULLED, &first_as_of.to_le_bytes())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn merge_into(&self, txn: &redb::WriteTransaction, actor: ActorId, mut merges: Vec<Merge>) -> Result<()> {
        let mut views = ViewTables::open(txn)?;
        for merge in &mut merges {
            merge.existing = views.doc_bytes(merge.collection.as_str(), merge.record.as_str())?;
        }
        let results = run_parallel(&merges, |merge| -> Result<(Vec<u8>, super::view::Materialized)> {
            // A new record from one snapshot document: load it once and keep its bytes as they are.
            if let (None, Incoming::Snapshot(docs)) = (&merge.existing, &merge.incoming) {
                if let [only] = docs.as_slice() {
                    let doc = RecordDoc::load(only, actor)?;
                    return Ok((only.clone(), materialize(&doc, true)));
                }
            }
            let mut doc = match &merge.existing {
                Some(bytes) => RecordDoc::load(bytes, actor)?,
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
            let m = materialize(&doc, true);
            Ok((doc.save(), m))
        })?;
        for (merge, result) in merges.iter().zip(results) {
            let (bytes, m) = result?;
            views.store(merge.collection.as_str(), merge.record.as_str(), &bytes, &m)?;
        }
        Ok(())
    }

    /// Rebuilds every document and the whole view by replaying the log from
    /// position 1. The log is the source of truth: the result must equal the
    /// incrementally maintained view byte for byte.
    pub fn rebuild_view(&self) -> Result<()> {
        let txn = self.write()?;
        let m = Meta::read_write(&txn)?;
        let actor = m.actor()?;
        // Positions per record keep memory small; entries are read again per record.
        let mut positions: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
        {
            let log = txn.open_table(tables::LOG)?;
            for entry in log.iter()? {
                let (k, v) = entry?;
                let e = LogEntry::decode(v.value())?;
                let (c, r) = e.target();
                positions
                    .entry((c.to_string(), r.to_string()))
                    .or_default()
                    .push(k.value());
            }
        }
        txn.delete_table(tables::DOCS)?;
        txn.delete_table(tables::VIEW)?;
        txn.delete_table(tables::CONFLICTED)?;
        let log = txn.open_table(tables::LOG)?;
        let mut views = ViewTables::open(&txn)?;
        let keys: Vec<_> = positions.into_iter().collect();
        for chunk in keys.chunks(2048) {
            let mut merges = Vec::with_capacity(chunk.len());
            for ((c, r), list) in chunk {
                let mut changes = Vec::new();
                let mut snapshots = Vec::new();
                for pos in list {
                    let bytes = log
                        .get(*pos)?
                        .ok_or_else(|| CorruptData::new("log", format!("entry {pos} vanished")))?;
                    match LogEntry::decode(bytes.value())? {
                        LogEntry::Local(op) | LogEntry::Remote(op, _) => changes.push(op.change),
                        LogEntry::Snapshot { doc, .. } => snapshots.push(doc),
                    }
                }
                merges.push((c.clone(), r.clone(), snapshots, changes));
            }
            let results = run_parallel(&merges, |(_, _, snapshots, changes)| -> Result<_> {
                let mut doc = RecordDoc::new(actor);
                for s in snapshots {
                    doc.merge_saved(s)?;
                }
                let decoded = changes
                    .iter()
                    .map(|c| crate::record::decode_stored_change(c))
                    .collect::<Result<Vec<_>, _>>()?;
                doc.apply_changes(decoded)?;
                let m = materialize(&doc, true);
                Ok((doc.save(), m))
            })?;
            for ((c, r, _, _), result) in merges.iter().zip(results) {
                let (bytes, m) = result?;
                views.store(c, r, &bytes, &m)?;
            }
        }
        drop(views);
        drop(log);
        txn.commit()?;
        Ok(())
    }
}

/// Validates a foreign op: its change decodes, is written by the op's actor,
/// and only edits fields the package allows.
fn check_remote(op: &Op, package: Option<&Package>) -> Result<Change> {
    let schema = match package {
        Some(p) => Some(p.collection(op.collection.as_str())?),
        None => None,
    };
    validate_change(&op.change, op.actor, op.collection.as_str(), schema).map_err(|e| match e {
        crate::record::ChangeError::Corrupt(c) => Error::Corrupt(c),
        crate::record::ChangeError::Invalid(i) => Error::Invalid(i),
        other => Error::Corrupt(CorruptData::new("foreign op", other)),
    })
}

fn with_context(e: Error, context: String) -> Error {
    match e {
        Error::Corrupt(c) => Error::Corrupt(CorruptData::new(format!("{context}: {}", c.context), c.reason)),
        Error::Invalid(i) => Error::Invalid(InvalidInput::Other(format!("{context}: {i}"))),
        other => other,
    }
}
