//! Puts recorded as intents: the durable part of an edit without automerge.
//!
//! A put of plain fields on a live record without conflicts changes its row in
//! a way the row alone tells (`record::put_onto_fields`). Such a put commits
//! its new row, a reserved log position, its op id and the put itself (the
//! intent, in `INTENTS`), and returns: automerge's change is made later, by
//! the next write transaction ([`Replica::write`]) or by a read of documents
//! or the log ([`Replica::read`]), which fills the reserved position with the
//! change, stores the document, and drops the intent. So an edit that returns
//! is durable, and everything that reads documents or the log sees every edit
//! as a change, as if it had been made at once.
//!
//! Why: automerge's change costs as much as a fifth of the durable commit when
//! made right after the previous one (its code and data left the caches while
//! the thread slept in `fdatasync`); made in a batch, it costs a fraction.
//!
//! A put the row cannot settle (text and counter fields, a record with
//! conflicts, a deleted record, a value it already holds), and a put on a
//! record whose document is not known to load (a snapshot's document stored as
//! it came and never loaded since), take the path of every other edit, whose
//! write transaction makes the waiting changes first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, TableError, WriteTransaction};

use super::edit::{Edit, RecordWork, apply_record_edits};
use super::log::{self, LogAppend, LogEntry};
use super::tables::{self, meta};
use super::view::ViewTables;
use super::{Meta, Replica, in_record};
use crate::error::{CorruptData, Error, Result};
use crate::model::{Collection, Op, OpId, RecordId, now_ms};
use crate::record::{Fields, put_onto_fields};

/// Puts kept as intents before a put makes their changes itself: bounds the
/// work a later transaction finds waiting.
const MAX_INTENTS: usize = 256;

/// About how many intents wait (this process's count; the table is the truth).
#[derive(Debug, Default)]
pub(crate) struct Backlog(AtomicUsize);

/// A put whose change is not made yet, as `INTENTS` holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Intent {
    pub op: OpId,
    pub time_ms: u64,
    pub collection: Collection,
    pub record: RecordId,
    pub fields: Fields,
}

impl Intent {
    /// `[op id u128 LE][time_ms u64 LE][collection len u16 LE][collection][id len u16 LE][id][fields JSON]`.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.op.as_u128().to_le_bytes());
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        log::encode_target(&mut out, &self.collection, &self.record);
        serde_json::to_writer(&mut out, &self.fields).expect("JSON values always serialize");
        out
    }

    fn decode(bytes: &[u8]) -> Result<Intent, CorruptData> {
        let bad = |reason: &str| CorruptData::new("intent", reason.to_string());
        let op = bytes.get(..16).ok_or_else(|| bad("truncated"))?;
        let time = bytes.get(16..24).ok_or_else(|| bad("truncated"))?;
        let rest = &bytes[24..];
        let (collection, record, at) = log::decode_target(rest, "intent")?;
        Ok(Intent {
            op: OpId::from_u128(u128::from_le_bytes(op.try_into().expect("16 bytes"))),
            time_ms: u64::from_le_bytes(time.try_into().expect("8 bytes")),
            collection,
            record,
            fields: serde_json::from_slice(&rest[at..]).map_err(|e| CorruptData::new("intent", e))?,
        })
    }
}

/// Whether `txn` sees intents whose changes are not made.
pub(super) fn any(txn: &ReadTransaction) -> Result<bool> {
    match txn.open_table(tables::INTENTS) {
        Ok(t) => Ok(!t.is_empty()?),
        // A store of an older format, not yet opened by this build for writing.
        Err(TableError::TableDoesNotExist(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl Replica {
    /// Records `edit` as an intent in `txn` when it is a put its row settles,
    /// for the caller to commit. None when it is not (nothing was written: the
    /// edit takes the path of all edits); otherwise what that path would
    /// return: the op id.
    pub(super) fn put_as_intent(&self, txn: &WriteTransaction, edit: &Edit) -> Result<Option<OpId>> {
        let Edit::Put { fields, .. } = edit else {
            return Ok(None);
        };
        if self.intents.0.load(Ordering::Relaxed) >= MAX_INTENTS {
            return Ok(None);
        }
        let m = Meta::read_keys(txn, &[meta::PACKAGE, meta::UNMARKED_DOCS])?;
        let package = self.package_cache.get(&m)?;
        let (collection, record) = edit.check(package.as_deref())?;
        let schema = package.as_deref().and_then(|p| p.collections.get(collection.as_str()));
        let key = (collection.as_str(), record.as_str());
        let mut view = txn.open_table(tables::VIEW)?;
        let Some(row) = view.get(key)?.map(|v| v.value().to_vec()) else {
            return Ok(None);
        };
        if txn.open_table(tables::CONFLICTED)?.get(key)?.is_some() {
            return Ok(None);
        }
        // The change of an intent must never fail to be made: only a document
        // known to load takes one. One this replica stored from a document it
        // loaded or made does (a snapshot's, stored as it came, is marked); in a
        // store from before that mark, only one this process holds in its cache.
        let loads = {
            let docs = txn.open_table(tables::DOCS)?;
            let tails = txn.open_table(tables::DOC_TAILS)?;
            let stored_here = m.bytes(meta::UNMARKED_DOCS)?.is_none()
                && docs.get(key)?.is_some_and(|v| tables::loaded_here(v.value()));
            stored_here
                || (self.doc_cache.has(&collection, &record)
                    && tables::stored_doc(&docs, &tails, key)?
                        .is_some_and(|stored| self.doc_cache.holds(&collection, &record, &stored)))
        };
        if !loads {
            return Ok(None);
        }
        let mut row: Fields = serde_json::from_slice(&row).map_err(|e| CorruptData::new("view row", e))?;
        if put_onto_fields(&mut row, fields, schema).is_none() {
            return Ok(None);
        }
        let pos = log::reserve_local(txn)?;
        let intent = Intent {
            op: OpId::new(),
            time_ms: now_ms(),
            collection: collection.clone(),
            record: record.clone(),
            fields: fields.clone(),
        };
        view.insert(
            key,
            serde_json::to_vec(&row)
                .expect("JSON values always serialize")
                .as_slice(),
        )?;
        drop(view);
        txn.open_table(tables::INTENTS)?
            .insert(pos, intent.encode().as_slice())?;
        // Counted before the commit: an extra count only makes the next put take
        // the common path sooner.
        self.intents.0.fetch_add(1, Ordering::Relaxed);
        Ok(Some(intent.op))
    }

    /// Makes the change of every intent in `txn`, in log order: the document
    /// and the reserved log position get it, the intent goes.
    pub(super) fn make_intent_changes(&self, txn: &WriteTransaction) -> Result<()> {
        let waiting = {
            let table = txn.open_table(tables::INTENTS)?;
            if table.is_empty()? {
                return Ok(());
            }
            let mut waiting = Vec::new();
            for entry in table.iter()? {
                let (pos, bytes) = entry?;
                waiting.push((pos.value(), Intent::decode(bytes.value())?));
            }
            waiting
        };
        let m = Meta::read_keys(txn, &[meta::ACTOR, meta::PACKAGE])?;
        let actor = m.actor()?;
        let package = self.package_cache.get(&m)?;
        let mut views = ViewTables::open(txn)?;
        let mut log = LogAppend::open(txn)?;
        // The row holds the record's last put: the document matches it after that
        // one. Read before the record's first change is stored, which writes the row.
        let last: HashMap<(&str, &str), u64> = waiting
            .iter()
            .map(|(pos, intent)| ((intent.collection.as_str(), intent.record.as_str()), *pos))
            .collect();
        let mut rows: HashMap<(&str, &str), Option<Vec<u8>>> = HashMap::new();
        for (pos, intent) in &waiting {
            let (c, i) = (intent.collection.as_str(), intent.record.as_str());
            let edit = Edit::Put {
                collection: c.to_string(),
                id: i.to_string(),
                fields: intent.fields.clone(),
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = rows.entry((c, i)) {
                slot.insert(views.row(c, i)?);
            }
            let existing = views.doc_bytes(c, i)?;
            let cached = existing
                .as_ref()
                .and_then(|stored| self.doc_cache.take(&intent.collection, &intent.record, stored, actor));
            let work = RecordWork {
                collection: intent.collection.clone(),
                id: intent.record.clone(),
                existing,
                cached: Mutex::new(cached),
                edits: vec![0],
            };
            let result = apply_record_edits(
                &work,
                std::slice::from_ref(&edit),
                actor,
                package.as_deref(),
                intent.time_ms,
                true,
            )
            .map_err(|e| in_record(e, c, i))?;
            let change = match result.changes.as_slice() {
                [(_, by, change)] if *by == actor => Some(change.clone()),
                // The row said the put changes the record and the document says it
                // does not: the document is the truth. The position stays empty
                // (readers of the log step over it) and leaves the pending count.
                [] => {
                    tracing::warn!(
                        collection = c,
                        record = i,
                        pos,
                        "a put recorded as an intent changed nothing"
                    );
                    super::pending::remove(txn, 1)?;
                    None
                }
                other => {
                    return Err(Error::Internal(format!(
                        "the put recorded for {c}/{i} at log position {pos} made {} changes, where a plain put makes one",
                        other.len(),
                    )));
                }
            };
            let row = &rows[&(c, i)];
            if last[&(c, i)] == *pos
                && (row.as_deref() != result.materialized.fields.as_deref() || result.materialized.conflicts != 0)
            {
                // The document is the truth: its row is stored below.
                tracing::error!(
                    collection = c,
                    record = i,
                    "a put recorded as an intent rendered another row"
                );
                debug_assert!(
                    false,
                    "the row of an intent differs from its document's for {c}/{i}: {:?} against {:?} ({} conflicts)",
                    row.as_deref().map(String::from_utf8_lossy),
                    result.materialized.fields.as_deref().map(String::from_utf8_lossy),
                    result.materialized.conflicts
                );
            }
            let Some(change) = change else {
                views.store_row(c, i, &result.materialized)?;
                continue;
            };
            if result.appended {
                views.append(c, i, &[change.as_slice()], &result.materialized)?;
            } else {
                views.store(c, i, &result.doc, &result.materialized)?;
            }
            let op = Op {
                id: intent.op,
                actor,
                collection: intent.collection.clone(),
                record: intent.record.clone(),
                time_ms: intent.time_ms,
                change,
            };
            log.fill(*pos, &LogEntry::Local(op))?;
            // Kept at once, so that the record's next intent takes it rather
            // than loading the document again. Safe before the commit: the cache
            // hands a document out only while the stored bytes are the ones it
            // was saved as.
            if let Some(doc) = result.keep {
                self.doc_cache
                    .put(intent.collection.clone(), intent.record.clone(), result.doc, doc);
            }
        }
        drop((views, log));
        let mut table = txn.open_table(tables::INTENTS)?;
        for (pos, _) in &waiting {
            table.remove(pos)?;
        }
        self.intents.0.store(0, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_reads_back_as_written() {
        let mut fields = Fields::new();
        fields.insert("name".into(), serde_json::json!("Ada"));
        fields.insert("gone".into(), serde_json::Value::Null);
        let intent = Intent {
            op: OpId::new(),
            time_ms: 1_700_000_000_123,
            collection: Collection::new("contacts").unwrap(),
            record: RecordId::new("c-1").unwrap(),
            fields,
        };
        assert_eq!(Intent::decode(&intent.encode()).unwrap(), intent);
        let bytes = intent.encode();
        for cut in 0..bytes.len() {
            assert!(Intent::decode(&bytes[..cut]).is_err(), "cut at {cut} must not decode");
        }
    }
}
