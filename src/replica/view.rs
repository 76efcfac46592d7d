//! The view: what a record document materializes to (its row and conflict
//! marker), the reads of the view, and its rebuild from the log.

use std::collections::BTreeMap;

use redb::{ReadableTable, Table, WriteTransaction};

use super::log::LogEntry;
use super::parallel::run_parallel;
use super::tables::{self, CONFLICTED, DOC_TAILS, DOCS, VIEW};
use super::{ListPage, Meta, RecordConflicts, Replica};
use crate::error::{CorruptData, Error, InvalidInput, Result};
use crate::model::Collection;
use crate::record::{Fields, RecordDoc, Row};

/// The tables a materialized record touches, opened once per transaction.
pub(crate) struct ViewTables<'txn> {
    docs: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    tails: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    view: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    conflicted: Table<'txn, (&'static str, &'static str), u32>,
}

impl<'txn> ViewTables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(ViewTables {
            docs: txn.open_table(DOCS).map_err(Error::storage)?,
            tails: txn.open_table(DOC_TAILS).map_err(Error::storage)?,
            view: txn.open_table(VIEW).map_err(Error::storage)?,
            conflicted: txn.open_table(CONFLICTED).map_err(Error::storage)?,
        })
    }

    /// Reads a stored document's bytes (its tail of appended changes included).
    pub fn doc_bytes(&self, collection: &str, id: &str) -> Result<Option<Vec<u8>>> {
        tables::stored_doc(&self.docs, &self.tails, (collection, id)).map_err(Error::storage)
    }

    /// The view row of a record (its fields' JSON), None when it has none.
    pub fn row(&self, collection: &str, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .view
            .get((collection, id))
            .map_err(Error::storage)?
            .map(|v| v.value().to_vec()))
    }

    /// Stores a document whole, and its materialized row.
    pub fn store(&mut self, collection: &str, id: &str, doc: &[u8], m: &Row) -> Result<()> {
        self.docs.insert((collection, id), doc).map_err(Error::storage)?;
        self.tails.remove((collection, id)).map_err(Error::storage)?;
        self.store_row(collection, id, m)
    }

    /// Stores a document as it came from outside, not loaded here, and its
    /// row, for a record that has no document yet: the document is marked by
    /// [`tables::UNLOADED`] before its bytes (see `DOCS`). False, with nothing
    /// changed, when the record has a document. Such a record has no tail,
    /// row or conflict mark to clear: they are written only beside a document,
    /// and a document is never removed on its own (only every table at once, by
    /// a rebuild). The insert itself tells whether a document was there, so the
    /// common case (a bootstrap) costs one lookup less.
    pub fn store_if_new_unloaded(&mut self, collection: &str, id: &str, doc: &[u8], m: &Row) -> Result<bool> {
        let mut marked = Vec::with_capacity(1 + doc.len());
        marked.push(tables::UNLOADED);
        marked.extend_from_slice(doc);
        let old = self
            .docs
            .insert((collection, id), marked.as_slice())
            .map_err(Error::storage)?
            .map(|old| old.value().to_vec());
        if let Some(old) = old {
            self.docs
                .insert((collection, id), old.as_slice())
                .map_err(Error::storage)?;
            return Ok(false);
        }
        debug_assert!(self.tails.get((collection, id)).ok().flatten().is_none());
        debug_assert!(self.conflicted.get((collection, id)).ok().flatten().is_none());
        if let Some(row) = &m.fields {
            self.view
                .insert((collection, id), row.as_slice())
                .map_err(Error::storage)?;
        }
        if m.conflicts > 0 {
            self.conflicted
                .insert((collection, id), m.conflicts)
                .map_err(Error::storage)?;
        }
        Ok(true)
    }

    /// Appends change chunks to a stored document (in its tail: the document
    /// itself is not rewritten), and stores its materialized row.
    pub fn append(&mut self, collection: &str, id: &str, changes: &[&[u8]], m: &Row) -> Result<()> {
        let mut tail = self
            .tails
            .get((collection, id))
            .map_err(Error::storage)?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        for change in changes {
            tail.extend_from_slice(change);
        }
        self.tails
            .insert((collection, id), tail.as_slice())
            .map_err(Error::storage)?;
        self.store_row(collection, id, m)
    }

    /// Stores a record's row and conflict marker alone.
    pub fn store_row(&mut self, collection: &str, id: &str, m: &Row) -> Result<()> {
        match &m.fields {
            Some(row) => self
                .view
                .insert((collection, id), row.as_slice())
                .map_err(Error::storage)?,
            None => self.view.remove((collection, id)).map_err(Error::storage)?,
        };
        if m.conflicts > 0 {
            self.conflicted
                .insert((collection, id), m.conflicts)
                .map_err(Error::storage)?;
        } else {
            self.conflicted.remove((collection, id)).map_err(Error::storage)?;
        }
        Ok(())
    }
}

impl Replica {
    /// Live records of a collection in id order, after `after`, at most `limit`
    /// (at least 1). Reads the view only: no automerge on this path.
    pub fn list_raw(&self, collection: &str, after: Option<&str>, limit: usize) -> Result<ListPage> {
        let collection = Collection::new(collection)?;
        if limit == 0 {
            // An empty page with no `next` would read as the end of the collection.
            return Err(InvalidInput::Other("a list page needs a limit of at least 1".into()).into());
        }
        let txn = self.read_view()?;
        let view = txn.open_table(tables::VIEW)?;
        let c = collection.as_str();
        let range = match after {
            Some(after) => view.range((c, after)..)?,
            None => view.range((c, "")..)?,
        };
        let mut rows = Vec::with_capacity(limit.min(4096));
        let mut next = None;
        for entry in range {
            let (key, value) = entry?;
            let (kc, kid) = key.value();
            if kc != c {
                break;
            }
            if after == Some(kid) {
                continue;
            }
            if rows.len() == limit {
                next = rows.last().map(|(id, _): &(String, Vec<u8>)| id.clone());
                break;
            }
            rows.push((kid.to_string(), value.value().to_vec()));
        }
        Ok(ListPage { rows, next })
    }

    /// Like [`Replica::list_raw`], with the fields parsed.
    pub fn list(&self, collection: &str, after: Option<&str>, limit: usize) -> Result<Vec<(String, Fields)>> {
        let page = self.list_raw(collection, after, limit)?;
        page.rows
            .into_iter()
            .map(|(id, row)| {
                let fields = serde_json::from_slice(&row).map_err(|e| CorruptData::new("view row", e))?;
                Ok((id, fields))
            })
            .collect()
    }

    /// Conflicts of one record, of one collection, or of the whole store.
    pub fn conflicts(&self, collection: Option<&str>, id: Option<&str>) -> Result<Vec<RecordConflicts>> {
        let collection = collection.map(|c| crate::model::nfc(c.to_string()));
        let id = id.map(|i| crate::model::nfc(i.to_string()));
        let (collection, id) = (collection.as_deref(), id.as_deref());
        let txn = self.read()?;
        let actor = Meta::read(&txn)?.actor()?;
        let conflicted = txn.open_table(tables::CONFLICTED)?;
        let docs = txn.open_table(tables::DOCS)?;
        let tails = txn.open_table(tables::DOC_TAILS)?;
        let mut keys = Vec::new();
        for entry in conflicted.iter()? {
            let (key, _) = entry?;
            let (c, i) = key.value();
            if collection.is_some_and(|want| want != c) || id.is_some_and(|want| want != i) {
                continue;
            }
            keys.push((c.to_string(), i.to_string()));
        }
        let mut out = Vec::new();
        for (c, i) in keys {
            let Some(bytes) = tables::stored_doc(&docs, &tails, (c.as_str(), i.as_str()))? else {
                continue;
            };
            let doc = RecordDoc::load_stored(&bytes, actor).map_err(|e| super::in_record(e.into(), &c, &i))?;
            let fields = doc.conflicts();
            if !fields.is_empty() {
                out.push(RecordConflicts {
                    collection: c,
                    id: i,
                    fields,
                });
            }
        }
        Ok(out)
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
            // Refused ops left their records' documents, and superseded ones were
            // written again elsewhere in the log: neither is part of the history.
            let rejected = txn.open_table(tables::REJECTED)?;
            let discarded = txn.open_table(tables::DISCARDED)?;
            for entry in log.iter()? {
                let (k, v) = entry?;
                let local = v.value().first() == Some(&LogEntry::LOCAL_KIND);
                if discarded.get(k.value())?.is_some() || (local && rejected.get(k.value())?.is_some()) {
                    continue;
                }
                let e = LogEntry::decode(v.value())?;
                let (c, r) = e.target();
                positions
                    .entry((c.to_string(), r.to_string()))
                    .or_default()
                    .push(k.value());
            }
        }
        txn.delete_table(tables::DOCS)?;
        txn.delete_table(tables::DOC_TAILS)?;
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
                        LogEntry::Local(op) | LogEntry::Pulled(op, _) => changes.push(op.change),
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
                let m = doc.row();
                Ok((doc.save(), m))
            })?;
            for ((c, r, _, _), result) in merges.iter().zip(results) {
                let (bytes, m) = result.map_err(|e| super::in_record(e, c, r))?;
                views.store(c, r, &bytes, &m)?;
            }
        }
        drop(views);
        drop(log);
        txn.commit()?;
        // Every document was rewritten: cached ones could only miss from now on.
        self.doc_cache.clear();
        Ok(())
    }
}
