//! Local edits: each call turns edits into automerge changes and commits log,
//! op index, documents and view in one write transaction.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value as Json;

use super::doc_cache;
use super::log::{LogAppend, LogEntry};
use super::parallel::run_parallel;
use super::tables::meta;
use super::view::ViewTables;
use super::{Meta, Replica};
use crate::error::{InvalidInput, Result};
use crate::model::{ActorId, Collection, FieldType, Op, OpId, Package, RecordId, check_field_name, now_ms};
use crate::record::{Fields, GENESIS_ACTOR, RecordDoc, Row};

/// One local edit of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Upsert fields (undeletes a deleted record); a `null` value removes a field,
    /// or clears a counter (to 0) or text (to empty) in place, so that increments
    /// and splices made concurrently elsewhere are kept. A value (or null) put on a
    /// counter adds the difference from the value this replica sees: two replicas
    /// that both set or clear it at once add up their differences, so use puts on a
    /// counter for corrections, not as a reset two people may do at once.
    Put {
        collection: String,
        id: String,
        fields: Fields,
    },
    /// Tombstone the record (or confirm a delete that won over a concurrent undelete).
    Delete { collection: String, id: String },
    /// Edit a `text` field in place: delete `del` characters at `pos`, insert `text`.
    Splice {
        collection: String,
        id: String,
        field: String,
        pos: usize,
        del: usize,
        text: String,
    },
    /// Add `by` to a `counter` field.
    Increment {
        collection: String,
        id: String,
        field: String,
        by: i64,
    },
}

impl Edit {
    /// A put from a JSON value, which must be an object of fields.
    pub fn put(collection: &str, id: &str, fields: Json) -> Result<Edit> {
        match fields {
            Json::Object(fields) => Ok(Edit::Put {
                collection: collection.into(),
                id: id.into(),
                fields,
            }),
            other => Err(InvalidInput::Other(format!(
                "a record's fields must be a JSON object like {{\"name\": \"Ada\"}}, not {other}"
            ))
            .into()),
        }
    }

    /// The edit with its collection name and record id in Unicode NFC, the form
    /// the store files records under (see [`RecordId::new`]).
    fn into_nfc(self) -> Edit {
        use crate::model::nfc;
        match self {
            Edit::Put { collection, id, fields } => Edit::Put {
                collection: nfc(collection),
                id: nfc(id),
                fields,
            },
            Edit::Delete { collection, id } => Edit::Delete {
                collection: nfc(collection),
                id: nfc(id),
            },
            Edit::Splice {
                collection,
                id,
                field,
                pos,
                del,
                text,
            } => Edit::Splice {
                collection: nfc(collection),
                id: nfc(id),
                field,
                pos,
                del,
                text,
            },
            Edit::Increment {
                collection,
                id,
                field,
                by,
            } => Edit::Increment {
                collection: nfc(collection),
                id: nfc(id),
                field,
                by,
            },
        }
    }

    fn target(&self) -> (&str, &str) {
        match self {
            Edit::Put { collection, id, .. }
            | Edit::Delete { collection, id }
            | Edit::Splice { collection, id, .. }
            | Edit::Increment { collection, id, .. } => (collection, id),
        }
    }

    /// Checks names and types against the package without touching any document.
    pub(super) fn check(&self, package: Option<&Package>) -> Result<(Collection, RecordId), InvalidInput> {
        let (c, i) = self.target();
        let collection = Collection::new(c)?;
        let id = RecordId::new(i)?;
        let schema = package.map(|p| p.collection(c)).transpose()?;
        let needs = |field: &str, want: FieldType, operation: &'static str| -> Result<(), InvalidInput> {
            check_field_name(field)?;
            // Peers refuse text objects and counters in a schemaless space: refuse them here too.
            let Some(s) = schema else {
                return Err(InvalidInput::Other(format!(
                    "{operation} needs a package that declares field {field:?} as {}: without a package every field is a plain value (use put)",
                    want.name()
                )));
            };
            {
                let ty = s.field(c, field)?;
                if ty != want {
                    return Err(InvalidInput::WrongOperation {
                        field: field.into(),
                        actual: ty.name(),
                        operation,
                        needed: want.name(),
                    });
                }
            }
            Ok(())
        };
        match self {
            Edit::Put { fields, .. } => crate::record::check_fields(c, fields, schema)?,
            Edit::Delete { .. } => {}
            Edit::Splice { field, .. } => needs(field, FieldType::Text, "a text splice")?,
            Edit::Increment { field, .. } => needs(field, FieldType::Counter, "an increment")?,
        }
        Ok((collection, id))
    }
}

/// All edits of one record within a batch, worked on together.
pub(super) struct RecordWork {
    pub collection: Collection,
    pub id: RecordId,
    pub existing: Option<Vec<u8>>,
    /// The document from the edit cache, when it matches `existing`.
    pub cached: Mutex<Option<RecordDoc>>,
    pub edits: Vec<usize>,
}

/// What the automerge phase produced for one record.
pub(super) struct RecordResult {
    /// (edit index, op actor, change bytes) for every change the edits made, in
    /// order: a genesis change (by [`GENESIS_ACTOR`]) comes before the edit's own.
    pub changes: Vec<(usize, ActorId, Vec<u8>)>,
    /// The stored document's bytes after the edits.
    pub doc: Vec<u8>,
    /// Whether `doc` is the stored bytes with `changes` appended (written as
    /// the document's tail), rather than a document saved whole.
    pub appended: bool,
    pub materialized: Row,
    /// The edited document, to cache once the transaction has committed.
    pub keep: Option<RecordDoc>,
}

/// Local changes stored after a record's saved document before it is saved whole again.
const MAX_APPENDED_CHANGES: usize = 16;

impl Replica {
    /// Upserts fields of a record; `fields` is a JSON object. Returns the op id
    /// (None when nothing changed, e.g. removing a field that is not there).
    pub fn put(&self, collection: &str, id: &str, fields: Json) -> Result<Option<OpId>> {
        Ok(self
            .apply_edits(vec![Edit::put(collection, id, fields)?])?
            .pop()
            .flatten())
    }

    /// Deletes a record (a tombstone that merges with concurrent edits). An id this
    /// replica has never seen gets a tombstone too, so a record known from elsewhere
    /// can be deleted before it is pulled (an application that takes ids from a
    /// person may check [`Replica::get`] first, where a typo is the likelier
    /// cause). A record that already reads as deleted gets no op
    /// (`None`), unless its delete won over a concurrent undelete (listed by
    /// `conflicts` as field `_deleted`): then this confirms the delete.
    pub fn delete(&self, collection: &str, id: &str) -> Result<Option<OpId>> {
        let edit = Edit::Delete {
            collection: collection.into(),
            id: id.into(),
        };
        Ok(self.apply_edits(vec![edit])?.pop().flatten())
    }

    /// Splices a `text` field.
    pub fn splice_text(
        &self,
        collection: &str,
        id: &str,
        field: &str,
        pos: usize,
        del: usize,
        text: &str,
    ) -> Result<Option<OpId>> {
        let edit = Edit::Splice {
            collection: collection.into(),
            id: id.into(),
            field: field.into(),
            pos,
            del,
            text: text.into(),
        };
        Ok(self.apply_edits(vec![edit])?.pop().flatten())
    }

    /// Increments a `counter` field.
    pub fn increment(&self, collection: &str, id: &str, field: &str, by: i64) -> Result<Option<OpId>> {
        let edit = Edit::Increment {
            collection: collection.into(),
            id: id.into(),
            field: field.into(),
            by,
        };
        Ok(self.apply_edits(vec![edit])?.pop().flatten())
    }

    /// Applies many edits in one write transaction: all of them, or (on any
    /// error) none. Returns one op id per edit, None where the edit changed nothing.
    pub fn apply_edits(&self, edits: Vec<Edit>) -> Result<Vec<Option<OpId>>> {
        if edits.is_empty() {
            return Ok(Vec::new());
        }
        let edits: Vec<Edit> = edits.into_iter().map(Edit::into_nfc).collect();
        // One transaction whichever way the edit goes: a put its row settles
        // commits as an intent; any other edit first makes the waiting changes.
        let txn = self.write_raw()?;
        if let [edit] = edits.as_slice() {
            if let Some(op) = self.put_as_intent(&txn, edit)? {
                txn.commit()?;
                return Ok(vec![Some(op)]);
            }
        }
        self.make_intent_changes(&txn)?;
        self.apply_edits_in(txn, edits, |_| Ok(()))
    }

    /// [`Replica::apply_edits`], with `finish` run in the same transaction after the
    /// edits are written (it sees them): all of it commits, or none.
    pub(crate) fn apply_edits_then(
        &self,
        edits: Vec<Edit>,
        finish: impl FnOnce(&redb::WriteTransaction) -> Result<()>,
    ) -> Result<Vec<Option<OpId>>> {
        let edits: Vec<Edit> = edits.into_iter().map(Edit::into_nfc).collect();
        let txn = self.write()?;
        self.apply_edits_in(txn, edits, finish)
    }

    /// [`Replica::apply_edits_then`] in `txn`, where no intent waits.
    fn apply_edits_in(
        &self,
        txn: redb::WriteTransaction,
        edits: Vec<Edit>,
        finish: impl FnOnce(&redb::WriteTransaction) -> Result<()>,
    ) -> Result<Vec<Option<OpId>>> {
        if edits.is_empty() {
            finish(&txn)?;
            txn.commit()?;
            return Ok(Vec::new());
        }
        let m = Meta::read_keys(&txn, &[meta::ACTOR, meta::PACKAGE])?;
        let actor = m.actor()?;
        let package = self.package_cache.get(&m)?;
        let time_ms = now_ms();

        // Check everything first: a bad edit anywhere writes nothing.
        let mut works: Vec<RecordWork> = Vec::new();
        let mut by_record: HashMap<(Collection, RecordId), usize> = HashMap::new();
        for (index, edit) in edits.iter().enumerate() {
            let (collection, id) = edit.check(package.as_deref()).map_err(|e| {
                if edits.len() > 1 {
                    InvalidInput::InBatch {
                        edit: index + 1,
                        error: Box::new(e),
                    }
                } else {
                    e
                }
            })?;
            let slot = *by_record.entry((collection.clone(), id.clone())).or_insert_with(|| {
                works.push(RecordWork {
                    collection,
                    id,
                    existing: None,
                    cached: Mutex::new(None),
                    edits: Vec::new(),
                });
                works.len() - 1
            });
            works[slot].edits.push(index);
        }

        let use_cache = works.len() <= doc_cache::MAX_BATCH;
        let mut views = ViewTables::open(&txn)?;
        for work in &mut works {
            let key = (work.collection.as_str(), work.id.as_str());
            work.existing = views.doc_bytes(key.0, key.1)?;
            if let (true, Some(stored)) = (use_cache, &work.existing) {
                *work.cached.get_mut().unwrap_or_else(|p| p.into_inner()) =
                    self.doc_cache.take(&work.collection, &work.id, stored, actor);
            }
        }

        let results = run_parallel(&works, |work| {
            apply_record_edits(work, &edits, actor, package.as_deref(), time_ms, use_cache)
        })?;

        // Log order follows edit order, so replaying the log replays the edits.
        let mut changes: Vec<Vec<(ActorId, Vec<u8>)>> = vec![Vec::new(); edits.len()];
        let mut keep = Vec::new();
        for (work, result) in works.iter().zip(results) {
            let result = result.map_err(|e| super::in_record(e, work.collection.as_str(), work.id.as_str()))?;
            if result.changes.is_empty() {
                // Nothing changed: the stored bytes are still the ones the document matches.
                if let (Some(doc), Some(stored)) = (result.keep, &work.existing) {
                    keep.push((work, stored.clone(), doc));
                }
                continue;
            }
            let (c, i) = (work.collection.as_str(), work.id.as_str());
            if result.appended {
                let new: Vec<&[u8]> = result.changes.iter().map(|(_, _, change)| change.as_slice()).collect();
                views.append(c, i, &new, &result.materialized)?;
            } else {
                views.store(c, i, &result.doc, &result.materialized)?;
            }
            for (index, by, change) in result.changes {
                changes[index].push((by, change));
            }
            if let Some(doc) = result.keep {
                keep.push((work, result.doc, doc));
            }
        }
        drop(views);

        let mut ids = Vec::with_capacity(edits.len());
        {
            let mut log = LogAppend::open(&txn)?;
            for (edit, changes) in edits.iter().zip(changes) {
                let (c, i) = edit.target();
                let mut last = None;
                for (actor, change) in changes {
                    let op = Op {
                        id: OpId::new(),
                        actor,
                        collection: Collection::new(c)?,
                        record: RecordId::new(i)?,
                        time_ms,
                        change,
                    };
                    last = Some(op.id);
                    log.push(&LogEntry::Local(op))?;
                }
                // The edit's own change is its last op.
                ids.push(last);
            }
            log.finish()?;
        }
        finish(&txn)?;
        txn.commit()?;
        for (work, saved, doc) in keep {
            self.doc_cache.put(work.collection.clone(), work.id.clone(), saved, doc);
        }
        Ok(ids)
    }
}

pub(super) fn apply_record_edits(
    work: &RecordWork,
    edits: &[Edit],
    actor: ActorId,
    package: Option<&Package>,
    time_ms: u64,
    keep: bool,
) -> Result<RecordResult> {
    let schema = package.and_then(|p| p.collections.get(work.collection.as_str()));
    let mut changes = Vec::with_capacity(work.edits.len());
    // A new record whose first edit is a put (every record of a bulk import) is
    // written in one batch insertion, and its view row comes from the values written
    // rather than from reading the document back.
    let mut created_view = None;
    let mut rest = work.edits.as_slice();
    let cached = work.cached.lock().unwrap_or_else(|p| p.into_inner()).take();
    let loaded = work.existing.is_some() && cached.is_none();
    let mut doc = match (&work.existing, rest.split_first()) {
        // A cached document is only ever taken for a record that has stored bytes.
        (Some(bytes), _) => match cached {
            Some(doc) => doc,
            None => RecordDoc::load_stored(bytes, actor)?,
        },
        (None, Some((&first, tail))) => match &edits[first] {
            Edit::Put { fields, .. } => match RecordDoc::create(actor, work.collection.as_str(), fields, schema)? {
                Some((mut doc, view)) => {
                    if let Some(change) = doc.commit(time_ms) {
                        changes.push((first, actor, change));
                    }
                    created_view = Some(view);
                    rest = tail;
                    doc
                }
                None => RecordDoc::new(actor),
            },
            _ => RecordDoc::new(actor),
        },
        (None, None) => RecordDoc::new(actor),
    };
    if !rest.is_empty() {
        // More edits follow: materialize from the document as before.
        created_view = None;
    }
    for &index in rest {
        match &edits[index] {
            Edit::Put { fields, .. } => doc.put(work.collection.as_str(), fields, schema)?,
            Edit::Delete { .. } => doc.delete(),
            Edit::Splice {
                field, pos, del, text, ..
            } => doc.splice(field, *pos, *del, text)?,
            Edit::Increment { field, by, .. } => doc.increment(field, *by)?,
        }
        for genesis in doc.take_genesis() {
            changes.push((index, GENESIS_ACTOR, genesis));
        }
        if let Some(change) = doc.commit(time_ms) {
            changes.push((index, actor, change));
        }
    }
    // How the document is stored (automerge loads a saved document followed by change
    // chunks, or change chunks alone):
    // - a document just loaded from its bytes is saved whole: the load already paid for
    //   the whole history, saving costs a small share of it, and the next load of a
    //   saved document is much faster and its bytes much smaller (`cargo bench --bench
    //   doc_storage` measures both);
    // - a document kept in memory since the last edit (someone typing into a record)
    //   appends its change to the document's tail (DOC_TAILS), saving nothing and
    //   leaving the saved document as it is, and is saved whole every
    //   MAX_APPENDED_CHANGES edits, which bounds the work of the next cold load.
    let (doc_bytes, appended) = match (&work.existing, changes.as_slice()) {
        // Nothing changed: nothing is stored.
        (_, []) => (Vec::new(), false),
        (None, [(_, _, only)]) => (only.clone(), false),
        (Some(existing), new)
            if !loaded && RecordDoc::appended_changes(existing)? + new.len() <= MAX_APPENDED_CHANGES =>
        {
            let mut bytes = existing.clone();
            for (_, _, change) in new {
                bytes.extend_from_slice(change);
            }
            (bytes, true)
        }
        _ => (doc.save(), false),
    };
    let materialized = match created_view {
        Some(view) => Row {
            fields: Some(serde_json::to_vec(&view).expect("JSON values always serialize")),
            conflicts: 0,
        },
        None => doc.row(),
    };
    Ok(RecordResult {
        changes,
        doc: doc_bytes,
        appended,
        materialized,
        keep: keep.then_some(doc),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tables;
    use super::*;

    /// Change chunks stored after the record's saved document (or alone), and
    /// how many of them are in its tail.
    fn appended(r: &Replica, id: &str) -> usize {
        let txn = r.read().unwrap();
        let docs = txn.open_table(tables::DOCS).unwrap();
        let tails = txn.open_table(tables::DOC_TAILS).unwrap();
        let bytes = tables::stored_doc(&docs, &tails, ("contacts", id)).unwrap().unwrap();
        let doc = docs.get(("contacts", id)).unwrap().unwrap().value().to_vec();
        let whole = RecordDoc::appended_changes(&bytes).unwrap();
        assert_eq!(
            RecordDoc::appended_changes(&doc).unwrap(),
            whole.min(usize::from(RecordDoc::check_document_only(&doc).is_err())),
            "appended changes live in the tail; the document value is a saved document or a first change"
        );
        whole
    }

    #[test]
    fn a_cold_edit_saves_the_document_whole_and_a_warm_one_appends() {
        let r = Replica::in_memory().unwrap();
        r.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
        assert_eq!(appended(&r, "c1"), 1, "a new record is stored as its first change");
        r.put("contacts", "c1", json!({"age": 1})).unwrap();
        assert_eq!(appended(&r, "c1"), 2, "the new record's document stays cached");
        r.doc_cache.clear();
        r.put("contacts", "c1", json!({"age": 2})).unwrap();
        assert_eq!(appended(&r, "c1"), 0, "a cold load is followed by a whole save");
        for n in 1..=MAX_APPENDED_CHANGES {
            r.put("contacts", "c1", json!({"age": 2 + n})).unwrap();
            assert_eq!(appended(&r, "c1"), n, "a cached document appends its change");
        }
        r.put("contacts", "c1", json!({"city": "Oslo"})).unwrap();
        assert_eq!(appended(&r, "c1"), 0, "saved whole after MAX_APPENDED_CHANGES");
        r.put("contacts", "c1", json!({"age": 40})).unwrap();
        assert_eq!(appended(&r, "c1"), 1);
        r.doc_cache.clear();
        r.put("contacts", "c1", json!({"age": 41})).unwrap();
        assert_eq!(appended(&r, "c1"), 0);
        let row = r.get("contacts", "c1").unwrap().unwrap();
        assert_eq!(
            row,
            *json!({"name": "Ada", "age": 41, "city": "Oslo"}).as_object().unwrap()
        );
        let before = r.view_rows().unwrap();
        r.rebuild_view().unwrap();
        assert_eq!(r.view_rows().unwrap(), before);
    }
}
