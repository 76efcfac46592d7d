//! The record document: one automerge document per record. The only module that names automerge.
//!
//! Layout of a record document: the root map holds one key per field. Register
//! fields are scalars (nested JSON is stored as its JSON text in a bytes
//! scalar), `text` fields are automerge Text objects, `counter` fields are
//! automerge Counters. The reserved key `_deleted` is the tombstone: a delete
//! writes `true`; a put only writes `false` when the record is deleted, so a
//! delete wins over concurrent edits and a later put undeletes.
//!
//! Every decode of bytes from outside runs behind a panic boundary, because
//! automerge 0.12 panics on some malformed input (`tests/replica_merge.rs` keeps 37 such bytes).

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::error::{CorruptData, InvalidInput};
use crate::model::{ActorId, CollectionSchema, FieldType, check_field_name};

mod change;
mod genesis;
mod read;
mod rebase;
mod row;
mod tombstone;
mod values;

/// A decoded automerge change, as the replica groups them per record.
use change::{CHANGE_CHUNK, COMPRESSED_CHANGE_CHUNK, DOCUMENT_CHUNK, split_chunks};
pub use change::{
    Change, ChangeError, ChangeHeader, SavedChange, change_actor, check_author, decode_change, decode_stored_change,
    saved_changes, stored_change_header, validate_change, validate_op_change,
};
pub use genesis::GENESIS_ACTOR;
use genesis::{GenesisKind, genesis_change};
pub use rebase::{EditSummary, change_hash};
pub use row::{ROW_RULES, Row, put_onto_fields};
pub use values::{MAX_COUNTER, MAX_JSON_DEPTH, check_fields, check_value};
use values::{counter_in_range, counter_value, scalar_to_json, stored_scalar, value_kind};

/// The fields of a record as JSON, sorted by name.
pub type Fields = Map<String, Json>;

/// The reserved tombstone key.
pub(crate) const DELETED: &str = "_deleted";

/// Runs `f`, turning a panic inside automerge into a [`CorruptData`] error.
/// The context of the error a merge gives when a change it brings and one the
/// document holds share an actor and sequence number: two stores wrote as one
/// actor, and the server holds one of them (see `replica::rewrite`).
pub const COLLISION: &str = "two changes with one actor and sequence number";

fn merge_error(context: &str, e: automerge::AutomergeError) -> CorruptData {
    match e {
        automerge::AutomergeError::DuplicateSeqNumber(..) => CorruptData::new(COLLISION, e),
        e => CorruptData::new(context, e),
    }
}

pub(crate) fn guarded<T>(context: &str, f: impl FnOnce() -> T) -> Result<T, CorruptData> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the decoder panicked".to_string());
        CorruptData::new(context, format!("rejected malformed bytes ({reason})"))
    })
}

/// One competing value of a field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictValue {
    /// Hex actor id of the replica that wrote it; [`GENESIS_ACTOR`] for a counter
    /// or text that replicas created together through its genesis change.
    pub actor: String,
    pub value: Json,
}

/// A field with concurrent values that differ and that nobody has resolved yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldConflict {
    pub field: String,
    /// The value the view shows (automerge's deterministic winner) comes first;
    /// for `_deleted`, the `true` values (the record reads as deleted).
    pub values: Vec<ConflictValue>,
}

/// What a record document reads as, for the view: see [`RecordDoc::state`].
#[derive(Debug, Clone, PartialEq)]
pub struct RecordState {
    pub fields: Fields,
    /// The tombstone is set (a later put clears it).
    pub deleted: bool,
    /// Nothing was ever written: the document has no change.
    pub empty: bool,
    /// Fields with concurrent values that differ (see `conflicts`).
    pub conflicted_fields: u32,
}

/// A record's automerge document.
pub struct RecordDoc {
    /// Boxed: an `AutoCommit` is over 4 KiB inline, and documents move through
    /// vectors of a whole batch (thousands of records in a bulk import), where inline
    /// documents cost ~25 MiB of peak memory.
    doc: Box<AutoCommit>,
    /// Genesis changes applied since the last [`RecordDoc::take_genesis`].
    genesis: Vec<Vec<u8>>,
}

impl RecordDoc {
    /// A new, empty record document that writes as `actor`.
    pub fn new(actor: ActorId) -> Self {
        Self::wrap(AutoCommit::new(), actor)
    }

    fn wrap(doc: AutoCommit, actor: ActorId) -> Self {
        RecordDoc {
            doc: Box::new(doc.with_actor(automerge::ActorId::from(actor.0))),
            genesis: Vec::new(),
        }
    }

    /// A new record document holding `fields` (a first put), written as one batch
    /// insertion: on automerge 0.12 that is about half the cost of one `put` per
    /// field. Also returns the fields as the view shows them, computed from the
    /// values written (the same conversions `fields()` applies when reading them
    /// back), so a new record needs no read-back. None when every value is null
    /// (nothing to write): use [`RecordDoc::new`] and [`RecordDoc::put`] then.
    pub fn create(
        actor: ActorId,
        collection: &str,
        fields: &Fields,
        schema: Option<&CollectionSchema>,
    ) -> Result<Option<(Self, Fields)>, InvalidInput> {
        use automerge::hydrate;
        check_fields(collection, fields, schema)?;
        let mut doc = Self::new(actor);
        let encoding = doc.doc.text_encoding();
        let mut root = std::collections::HashMap::with_capacity(fields.len());
        let mut view = Map::new();
        for (name, value) in fields {
            if value.is_null() {
                continue;
            }
            let (stored, shown) = match schema.map(|s| s.fields[name]) {
                Some(FieldType::Text) => {
                    let text = value.as_str().unwrap_or_default();
                    (hydrate::Value::text(encoding, text), Json::String(text.to_string()))
                }
                ty => {
                    let scalar = stored_scalar(ty, value);
                    let shown = scalar_to_json(&scalar);
                    (hydrate::Value::Scalar(scalar), shown)
                }
            };
            root.insert(name.clone(), stored);
            view.insert(name.clone(), shown);
        }
        if root.is_empty() {
            return Ok(None);
        }
        doc.doc.init_root_from_hydrate(&root.into()).map_err(internal)?;
        Ok(Some((doc, view)))
    }

    /// Loads a saved document, optionally followed by changes. Malformed bytes
    /// are an error, never a panic: chunk headers are checked first, only
    /// document and change chunks are accepted, and changes go through
    /// [`decode_change`] before automerge applies them.
    pub fn load(bytes: &[u8], actor: ActorId) -> Result<Self, CorruptData> {
        Self::load_with(bytes, actor, change::decode_raw)
    }

    /// Loads bytes this program stored itself (a replica's document table): the
    /// same chunk checks, but changes skip the canonical re-encoding check that
    /// bytes from outside get, as [`decode_stored_change`] does for the log.
    pub fn load_stored(bytes: &[u8], actor: ActorId) -> Result<Self, CorruptData> {
        Self::load_with(bytes, actor, change::decode_stored_raw)
    }

    /// Checks, without loading them, that bytes from outside are one document
    /// chunk and nothing else, so that storing them as they are keeps every
    /// check for when they are loaded: [`RecordDoc::load_stored`] then checks
    /// them exactly as [`RecordDoc::load`] would (the two differ only in
    /// change chunks).
    pub fn check_document_only(bytes: &[u8]) -> Result<(), CorruptData> {
        match split_chunks(bytes)?.as_slice() {
            [(DOCUMENT_CHUNK, _)] => Ok(()),
            chunks => Err(CorruptData::new(
                "record document",
                format!("{} chunk(s) where one document chunk was expected", chunks.len()),
            )),
        }
    }

    /// How many change chunks follow the document chunk in stored bytes (local
    /// edits append their change instead of saving the whole document).
    pub fn appended_changes(bytes: &[u8]) -> Result<usize, CorruptData> {
        Ok(split_chunks(bytes)?
            .iter()
            .filter(|(kind, _)| matches!(*kind, CHANGE_CHUNK | COMPRESSED_CHANGE_CHUNK))
            .count())
    }

    fn load_with(
        bytes: &[u8],
        actor: ActorId,
        decode: fn(&[u8]) -> Result<automerge::Change, CorruptData>,
    ) -> Result<Self, CorruptData> {
        let mut doc: Option<AutoCommit> = None;
        let mut changes = Vec::new();
        for (kind, chunk) in split_chunks(bytes)? {
            match kind {
                DOCUMENT_CHUNK if doc.is_none() && changes.is_empty() => {
                    doc = Some(
                        guarded("record document", || AutoCommit::load(chunk))?
                            .map_err(|e| CorruptData::new("record document", e))?,
                    );
                }
                DOCUMENT_CHUNK => {
                    return Err(CorruptData::new("record document", "a document chunk must come first"));
                }
                CHANGE_CHUNK | COMPRESSED_CHANGE_CHUNK => changes.push(decode(chunk)?),
                other => {
                    return Err(CorruptData::new(
                        "record document",
                        format!("unsupported chunk type {other}"),
                    ));
                }
            }
        }
        let mut doc = Self::wrap(doc.unwrap_or_default(), actor);
        if !changes.is_empty() {
            doc.apply_raw(changes)?;
        }
        Ok(doc)
    }

    /// The compacted document bytes.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// A rough estimate of the heap this document holds, for bounding caches.
    /// Measured on automerge 0.12: about 18 KiB for a small record, plus about 150
    /// bytes per change and 5 per op (a 100,000-character note typed in 10,000
    /// changes holds 2 MiB; its saved bytes can be a few hundred).
    pub fn memory_estimate(&self) -> usize {
        let stats = self.doc.stats();
        let (changes, ops) = (stats.num_changes as usize, stats.num_ops as usize);
        (18 << 10) + changes.saturating_mul(150) + ops.saturating_mul(5)
    }

    /// Applies foreign changes in one call: applying them one at a time slows
    /// down as a document's history grows.
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> Result<(), CorruptData> {
        self.apply_raw(changes.into_iter().map(|c| c.0).collect())
    }

    pub(super) fn apply_raw(&mut self, changes: Vec<automerge::Change>) -> Result<(), CorruptData> {
        guarded("applying changes", || self.doc.apply_changes(changes))?.map_err(|e| merge_error("applying changes", e))
    }

    /// Merges a compacted document (a snapshot) into this one.
    pub fn merge_saved(&mut self, bytes: &[u8]) -> Result<(), CorruptData> {
        let mut other = RecordDoc::load(bytes, ActorId([0; 16]))?;
        guarded("snapshot document", || self.doc.merge(&mut other.doc))?
            .map(|_| ())
            .map_err(|e| merge_error("snapshot document", e))
    }

    /// Closes the pending edit as one change; returns its bytes (None if nothing changed).
    /// The first increment, splice or text put of a field the record lacks also
    /// applied a genesis change: [`RecordDoc::take_genesis`] hands it over, to be
    /// sent before this change, which depends on it.
    pub fn commit(&mut self, time_ms: u64) -> Option<Vec<u8>> {
        let secs = (time_ms / 1000) as i64;
        self.doc.commit_with(CommitOptions::default().with_time(secs))?;
        self.doc.get_last_local_change().map(|c| c.raw_bytes().to_vec())
    }

    /// Discards uncommitted edits.
    pub fn rollback(&mut self) {
        self.doc.rollback();
    }

    /// The genesis changes the edits since the last call applied (see
    /// `genesis.rs`), oldest first. They must be logged and sent before the
    /// edit's own change, which depends on them.
    pub fn take_genesis(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.genesis)
    }

    /// Brings the missing `field` into existence through its genesis change, so
    /// that replicas creating it concurrently create the same object. False when
    /// this document already holds that change (the field was removed since): the
    /// caller then creates the field itself. Runs before any local operation of
    /// an edit, because applying a change closes the edit's pending operations
    /// into a change of their own.
    fn start_from_genesis(&mut self, field: &str, kind: GenesisKind) -> Result<bool, InvalidInput> {
        if self.doc.pending_ops() > 0 {
            return Err(InvalidInput::Other(format!(
                "field {field:?}: a genesis change after local operations would split the edit"
            )));
        }
        let Some(change) = genesis_change(field, kind) else {
            return Ok(false);
        };
        if self.doc.get_change_by_hash(&change.hash()).is_some() {
            return Ok(false);
        }
        let bytes = change.raw_bytes().to_vec();
        self.apply_raw(vec![change])
            .map_err(|e| InvalidInput::Other(format!("the genesis of field {field:?}: {e}")))?;
        self.genesis.push(bytes);
        Ok(true)
    }

    /// True when nothing was ever written: the document has no change. A record
    /// whose fields were all removed (put with nulls) still exists, as `{}` (or
    /// with its counters at 0 and its texts empty: those are cleared in place).
    pub fn is_empty(&self) -> bool {
        self.doc.stats().num_changes == 0
    }

    /// Upserts `fields` (undeleting the record if it was deleted). `null` removes a
    /// field; a counter or text field is cleared in place instead (to 0, to empty),
    /// so edits made concurrently elsewhere stay visible.
    /// Checks `fields` first ([`check_fields`]): a refused put changes nothing.
    pub fn put(
        &mut self,
        collection: &str,
        fields: &Fields,
        schema: Option<&CollectionSchema>,
    ) -> Result<(), InvalidInput> {
        check_fields(collection, fields, schema)?;
        // A text field this record lacks starts from its genesis, so two replicas
        // writing the first text of a note merge it instead of competing.
        for (name, value) in fields {
            let missing = || self.doc.get(ROOT, name.as_str()).map(|v| v.is_none());
            if schema.map(|s| s.fields[name]) == Some(FieldType::Text)
                && !value.is_null()
                && missing().map_err(internal)?
            {
                self.start_from_genesis(name, GenesisKind::Text)?;
            }
        }
        self.undelete().map_err(internal)?;
        for (name, value) in fields {
            let ty = schema.map(|s| s.fields[name]);
            self.put_field(name, ty, value).map_err(internal)?;
        }
        Ok(())
    }

    fn put_field(&mut self, name: &str, ty: Option<FieldType>, value: &Json) -> Result<(), automerge::AutomergeError> {
        if value.is_null() {
            let all = self.doc.get_all(ROOT, name)?;
            match all.as_slice() {
                [] => {}
                // A lone counter or text is cleared in place, not removed: an increment
                // or splice made concurrently elsewhere (a first one too, which shares
                // this object through its genesis change) lands in this object, and
                // removing it would hide that edit without a conflict to show for it.
                // Only while the package still says so: peers refuse increments and
                // splices on a field of another type, and a delete fits any type.
                [(Value::Scalar(v), _)]
                    if ty == Some(FieldType::Counter) && matches!(v.as_ref(), ScalarValue::Counter(_)) =>
                {
                    let current = counter_value(v).unwrap_or(0);
                    self.step_counter(name, current, 0)?;
                }
                [(Value::Object(ObjType::Text), id)] if ty == Some(FieldType::Text) => {
                    let id = id.clone();
                    let len = self.doc.length(&id);
                    if len > 0 {
                        self.doc.splice_text(&id, 0, len as isize, "")?;
                    }
                }
                _ => self.doc.delete(ROOT, name)?,
            }
            return Ok(());
        }
        match ty {
            Some(FieldType::Text) => {
                let text = value.as_str().unwrap_or_default();
                let all = self.doc.get_all(ROOT, name)?;
                match all.as_slice() {
                    [(Value::Object(ObjType::Text), id)] => {
                        let id = id.clone();
                        self.doc.update_text(&id, text)?;
                    }
                    _ => {
                        let id = self.doc.put_object(ROOT, name, ObjType::Text)?;
                        self.doc.splice_text(&id, 0, 0, text)?;
                    }
                }
            }
            Some(FieldType::Counter) => {
                let target = value.as_i64().unwrap_or_default();
                let all = self.doc.get_all(ROOT, name)?;
                match all.as_slice() {
                    [(Value::Scalar(v), _)] if matches!(v.as_ref(), ScalarValue::Counter(_)) => {
                        // The difference as increments keeps concurrent increments.
                        let current = counter_value(v).unwrap_or(0);
                        self.step_counter(name, current, target)?;
                    }
                    _ => self.doc.put(ROOT, name, stored_scalar(ty, value))?,
                }
            }
            _ => self.doc.put(ROOT, name, stored_scalar(ty, value))?,
        }
        Ok(())
    }

    /// Moves the counter `name` from `current` to `target` by increments, so that
    /// increments made concurrently elsewhere still add up. Each increment stays in
    /// the range the server takes: a merged value far outside it (see `values.rs`)
    /// takes several.
    fn step_counter(&mut self, name: &str, current: i64, target: i64) -> Result<(), automerge::AutomergeError> {
        let mut left = i128::from(target) - i128::from(current);
        let max = i128::from(MAX_COUNTER);
        while left != 0 {
            let step = left.clamp(-max, max);
            self.doc.increment(ROOT, name, step as i64)?;
            left -= step;
        }
        Ok(())
    }

    /// Edits a `text` field in place: delete `del` characters at `pos`, insert `text`.
    pub fn splice(&mut self, field: &str, pos: usize, del: usize, text: &str) -> Result<(), InvalidInput> {
        check_field_name(field)?;
        let missing = self.doc.get(ROOT, field).map_err(internal)?.is_none();
        if missing && (pos > 0 || del > 0) {
            return Err(InvalidInput::TextRange {
                field: field.into(),
                pos,
                del,
                len: 0,
            });
        }
        if missing && !self.start_from_genesis(field, GenesisKind::Text)? {
            self.doc.put_object(ROOT, field, ObjType::Text).map_err(internal)?;
        }
        let id = match self.doc.get(ROOT, field).map_err(internal)? {
            Some((Value::Object(ObjType::Text), id)) => id,
            None => return Err(InvalidInput::Other(format!("field {field:?}: no text was created"))),
            Some((v, _)) => {
                return Err(InvalidInput::StoredKind {
                    field: field.into(),
                    stored: value_kind(&v),
                    operation: "a text splice",
                    needed: "text",
                });
            }
        };
        let len = self.doc.length(&id);
        if pos > len || del > len - pos {
            return Err(InvalidInput::TextRange {
                field: field.into(),
                pos,
                del,
                len,
            });
        }
        self.doc.splice_text(&id, pos, del as isize, text).map_err(internal)?;
        self.undelete().map_err(internal)?;
        Ok(())
    }

    /// Adds `by` to a `counter` field (creating it at `by`).
    pub fn increment(&mut self, field: &str, by: i64) -> Result<(), InvalidInput> {
        check_field_name(field)?;
        let out_of_range = |current: i64| InvalidInput::CounterRange {
            field: field.into(),
            current,
            by,
            max: MAX_COUNTER,
        };
        if counter_in_range(by) && self.doc.get(ROOT, field).map_err(internal)?.is_none() {
            // Then the branch below increments the counter the genesis made.
            self.start_from_genesis(field, GenesisKind::Counter)?;
        }
        match self.doc.get(ROOT, field).map_err(internal)? {
            Some((Value::Scalar(v), _)) if matches!(v.as_ref(), ScalarValue::Counter(_)) => {
                let current = counter_value(&v).unwrap_or(0);
                // A merged value may already be outside the range: moving it back in is allowed.
                if !counter_in_range(by) || !current.checked_add(by).is_some_and(counter_in_range) {
                    return Err(out_of_range(current));
                }
                self.doc.increment(ROOT, field, by).map_err(internal)?
            }
            None if !counter_in_range(by) => return Err(out_of_range(0)),
            None => self.doc.put(ROOT, field, ScalarValue::counter(by)).map_err(internal)?,
            Some((v, _)) => {
                return Err(InvalidInput::StoredKind {
                    field: field.into(),
                    stored: value_kind(&v),
                    operation: "an increment",
                    needed: "counter",
                });
            }
        }
        self.undelete().map_err(internal)?;
        Ok(())
    }

    /// Whether the document is waiting for changes it depends on (a change
    /// applied before one of its dependencies).
    pub fn has_missing_deps(&mut self) -> bool {
        !self.doc.get_missing_deps(&[]).is_empty()
    }
}

fn internal(e: automerge::AutomergeError) -> InvalidInput {
    InvalidInput::Other(format!("the record document refused the edit: {e}"))
}
