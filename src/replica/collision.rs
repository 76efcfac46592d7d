//! Two changes with one (actor, sequence number) in a record: the server's wins.
//!
//! Two stores that write as one actor (a copied file, a restored backup) both
//! number their changes 1, 2, 3… A pending one is written again under a fresh
//! actor before it meets the other ([`super::rewrite::heal_shared_actor`]).
//! What that cannot reach is a change this replica holds from a server that
//! lost it since — pulled from the server, inside a snapshot's document, or
//! acknowledged by it — while the server now holds the other store's change
//! under the same number. Automerge cannot hold both; the server will never
//! take the one here, nor anything built on it. So the server's version wins:
//! the colliding change and every change built on it leave the document, local
//! edits among them are written again on top (under a fresh actor, each under
//! its own op id), and the log is made to agree — pulled ops among them are
//! discarded and snapshot documents saved without them — so that a rebuild of
//! the view and a re-push give the same result.

use std::collections::{HashMap, HashSet};

use redb::{ReadableTable, WriteTransaction};

use super::Meta;
use super::log::LogEntry;
use super::rewrite::{Outcome, local_ops_of, take_fresh_actor, write_outcome};
use super::tables;
use super::view::ViewTables;
use crate::error::Result;
use crate::model::{Collection, RecordId};
use crate::record::{ChangeHeader, GENESIS_ACTOR, RecordDoc, change_hash, stored_change_header};

/// Inside a merge's transaction, before `incoming` (the server's changes of one
/// record) is merged: takes out of the record's document every change that
/// collides with one of them, the changes in `replaced` (an op the server now
/// holds in another version), and what is built on those. Returns whether
/// anything left.
pub(super) fn yield_to_server(
    txn: &WriteTransaction,
    collection: &Collection,
    record: &RecordId,
    incoming: &[ChangeHeader],
    replaced: &HashSet<[u8; 32]>,
) -> Result<bool> {
    let m = Meta::read_write(txn)?;
    let mut views = ViewTables::open(txn)?;
    let Some(stored) = views.doc_bytes(collection.as_str(), record.as_str())? else {
        return Ok(false);
    };
    let mut full = RecordDoc::load_stored(&stored, m.actor()?)?;
    let headers = full.change_headers()?;
    let theirs: HashMap<(&[u8], u64), [u8; 32]> =
        incoming.iter().map(|h| ((h.actor.as_slice(), h.seq), h.hash)).collect();
    let mut drop: HashSet<[u8; 32]> = headers
        .iter()
        .filter(|h| {
            replaced.contains(&h.hash)
                || theirs
                    .get(&(h.actor.as_slice(), h.seq))
                    .is_some_and(|hash| *hash != h.hash)
        })
        .map(|h| h.hash)
        .collect();
    if drop.is_empty() {
        return Ok(false);
    }
    // Dependencies come first: one pass finds everything built on a dropped change.
    for h in &headers {
        if h.deps.iter().any(|d| drop.contains(d)) {
            drop.insert(h.hash);
        }
    }
    let mut local = Vec::new();
    for (pos, op) in local_ops_of(txn, collection, record, 1)? {
        if op.actor != GENESIS_ACTOR && drop.contains(&change_hash(&op.change)?) {
            local.push((pos, op));
        }
    }
    let actor = if local.is_empty() {
        m.actor()?
    } else {
        take_fresh_actor(txn)?
    };
    let mut new = full.keeping_all_but(&drop, actor)?;
    let mut outcome = Outcome::default();
    let mut ids = HashMap::new();
    for (pos, op) in &local {
        let header = stored_change_header(&op.change)?;
        let before = full.at(&header.deps, actor)?;
        let after = full.at(&[header.hash], actor)?;
        new.replay(&before, &after, &mut ids)?;
        outcome.written_again(*pos, op, actor, &mut new);
    }
    views.store(collection.as_str(), record.as_str(), &new.save(), &new.row())?;
    drop_from_log(txn, collection, record, &drop)?;
    write_outcome(txn, &m, outcome)?;
    Ok(true)
}

/// The changes of the pulled ops of a record that are part of its history.
pub(super) fn pulled_changes(
    txn: &WriteTransaction,
    collection: &Collection,
    record: &RecordId,
) -> Result<HashSet<[u8; 32]>> {
    let log = txn.open_table(tables::LOG)?;
    let discarded = txn.open_table(tables::DISCARDED)?;
    let mut out = HashSet::new();
    for entry in log.iter()? {
        let (k, v) = entry?;
        if v.value().first() == Some(&LogEntry::LOCAL_KIND) {
            continue;
        }
        if let LogEntry::Pulled(op, _) = LogEntry::decode(v.value())? {
            if (&op.collection, &op.record) == (collection, record) && discarded.get(k.value())?.is_none() {
                out.insert(change_hash(&op.change)?);
            }
        }
    }
    Ok(out)
}

/// Pulled ops of the record whose change is in `drop` are discarded; snapshot
/// documents of the record that hold such changes are saved without them. The
/// log then replays to the record's document (a rebuild of the view, a re-push).
pub(super) fn drop_from_log(
    txn: &WriteTransaction,
    collection: &Collection,
    record: &RecordId,
    drop: &HashSet<[u8; 32]>,
) -> Result<()> {
    let mut log = txn.open_table(tables::LOG)?;
    let mut discarded = txn.open_table(tables::DISCARDED)?;
    let mut rewritten = Vec::new();
    for entry in log.iter()? {
        let (k, v) = entry?;
        let kind = v.value().first().copied();
        if kind == Some(LogEntry::LOCAL_KIND) {
            continue;
        }
        let e = LogEntry::decode(v.value())?;
        if e.target() != (collection, record) {
            continue;
        }
        match e {
            LogEntry::Pulled(op, _) => {
                if drop.contains(&change_hash(&op.change)?) {
                    discarded.insert(k.value(), ())?;
                }
            }
            LogEntry::Snapshot {
                collection,
                record,
                as_of,
                doc,
            } => {
                let mut saved = RecordDoc::load_stored(&doc, crate::model::ActorId([0; 16]))?;
                let held: Vec<ChangeHeader> = saved.change_headers()?;
                if held.iter().any(|h| drop.contains(&h.hash)) {
                    let doc = saved.keeping_all_but(drop, crate::model::ActorId([0; 16]))?.save();
                    let entry = LogEntry::Snapshot {
                        collection,
                        record,
                        as_of,
                        doc,
                    };
                    rewritten.push((k.value(), entry.encode()));
                }
            }
            LogEntry::Local(_) => {}
        }
    }
    for (pos, bytes) in rewritten {
        log.insert(pos, bytes.as_slice())?;
    }
    Ok(())
}
