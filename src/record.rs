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
//! automerge 0.12 panics on some malformed input (see DESIGN.md, known hazards).

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, Change, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::error::{CorruptData, InvalidInput};
use crate::model::{ActorId, CollectionSchema, FieldType, check_field_name};

/// The fields of a record as JSON, sorted by name.
pub type Fields = Map<String, Json>;

/// The reserved tombstone key.
const DELETED: &str = "_deleted";

/// Runs `f`, turning a panic inside automerge into a [`CorruptData`] error.
fn guarded<T>(context: &str, f: impl FnOnce() -> T) -> Result<T, CorruptData> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the decoder panicked".to_string());
        CorruptData::new(context, format!("rejected malformed bytes ({reason})"))
    })
}

/// Decodes one automerge change from bytes that came from outside, and checks
/// what automerge's decoder does not: the header checksum belongs to the
/// change, the encoding is canonical (it re-encodes to the same hash), and
/// there are no mark ops. A change that fails any of these would be stored,
/// then make its record document unloadable (or abort automerge) later.
pub fn decode_change(bytes: &[u8]) -> Result<Change, CorruptData> {
    decode_checked(bytes).map(|(change, _)| change)
}

fn decode_checked(bytes: &[u8]) -> Result<(Change, automerge::ExpandedChange), CorruptData> {
    let bad = |reason: &str| CorruptData::new("automerge change", reason);
    check_single_change_chunk(bytes)?;
    let change = guarded("automerge change", || Change::try_from(bytes))?
        .map_err(|e| CorruptData::new("automerge change", e))?;
    if bytes.get(4..8) != Some(&change.hash().0[..4]) {
        return Err(bad("its checksum does not match its contents"));
    }
    let expanded = guarded("automerge change", || change.decode())?;
    if expanded.operations.iter().any(|op| {
        matches!(
            op.action,
            automerge::legacy::OpType::MarkBegin(_) | automerge::legacy::OpType::MarkEnd(_)
        )
    }) {
        return Err(bad("it contains text marks, which tidemark records never use"));
    }
    let reencoded = guarded("automerge change", || Change::from(expanded.clone()))?;
    if reencoded.hash() != change.hash() {
        return Err(bad("it is not canonically encoded"));
    }
    Ok((change, expanded))
}

/// Decodes a change that was checked when it entered the store (the log, the server's ops).
pub fn decode_stored_change(bytes: &[u8]) -> Result<Change, CorruptData> {
    check_single_change_chunk(bytes)?;
    guarded("stored change", || Change::try_from(bytes))?.map_err(|e| CorruptData::new("stored change", e))
}

/// Automerge parses any chunk type it is given, and some (bundles) allocate
/// whatever a count in the input says: only one change chunk gets through.
fn check_single_change_chunk(bytes: &[u8]) -> Result<(), CorruptData> {
    match split_chunks(bytes)?.as_slice() {
        [(CHANGE_CHUNK | COMPRESSED_CHANGE_CHUNK, _)] => Ok(()),
        [(kind, _)] => Err(CorruptData::new(
            "automerge change",
            format!("a chunk of type {kind}, not a change"),
        )),
        chunks => Err(CorruptData::new(
            "automerge change",
            format!("{} chunks, expected one change", chunks.len()),
        )),
    }
}

/// The magic bytes that open every automerge chunk.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const DOCUMENT_CHUNK: u8 = 0;
const CHANGE_CHUNK: u8 = 1;
const COMPRESSED_CHANGE_CHUNK: u8 = 2;

/// Splits automerge bytes into chunks `(type, whole chunk)`, checking every
/// header and length before automerge sees them (it trusts lengths from the input).
fn split_chunks(bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, CorruptData> {
    let bad = |reason: String| CorruptData::new("record document", reason);
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < 10 || rest[..4] != CHUNK_MAGIC {
            return Err(bad(format!("no automerge chunk at byte {at}")));
        }
        let kind = rest[8];
        let (mut len, mut shift, mut i) = (0u64, 0u32, 9);
        loop {
            let byte = *rest.get(i).ok_or_else(|| bad("truncated chunk length".into()))?;
            if shift > 56 {
                return Err(bad("chunk length too long".into()));
            }
            len |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| i.checked_add(l))
            .filter(|&e| e <= rest.len())
            .ok_or_else(|| bad(format!("chunk at byte {at} claims {len} bytes, more than there are")))?;
        chunks.push((kind, &rest[..end]));
        at += end;
    }
    Ok(chunks)
}
/// The automerge actor of a decoded change, if it is one of our 16-byte actors.
pub fn change_actor(change: &Change) -> Option<ActorId> {
    ActorId::from_slice(change.actor_id().to_bytes()).ok()
}

/// One competing value of a field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictValue {
    /// Hex actor id of the replica that wrote it.
    pub actor: String,
    pub value: Json,
}

/// A field with concurrent values that nobody has resolved yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldConflict {
    pub field: String,
    /// The value the view shows (automerge's deterministic winner) comes first.
    pub values: Vec<ConflictValue>,
}

/// A record's automerge document.
pub struct RecordDoc {
    doc: AutoCommit,
}

impl RecordDoc {
    /// A new, empty record document that writes as `actor`.
    pub fn new(actor: ActorId) -> Self {
        RecordDoc {
            doc: AutoCommit::new().with_actor(automerge::ActorId::from(actor.0)),
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
        Self::check_put(collection, fields, schema)?;
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
                Some(FieldType::Counter) => {
                    let scalar = ScalarValue::counter(value.as_i64().unwrap_or_default());
                    let shown = scalar_to_json(&scalar);
                    (hydrate::Value::Scalar(scalar), shown)
                }
                Some(FieldType::Json) => {
                    let scalar = ScalarValue::Bytes(serde_json::to_vec(value).unwrap_or_default());
                    let shown = scalar_to_json(&scalar);
                    (hydrate::Value::Scalar(scalar), shown)
                }
                _ => {
                    let scalar = json_to_scalar(value);
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
                CHANGE_CHUNK | COMPRESSED_CHANGE_CHUNK => changes.push(decode_change(chunk)?),
                other => {
                    return Err(CorruptData::new(
                        "record document",
                        format!("unsupported chunk type {other}"),
                    ));
                }
            }
        }
        let mut doc = RecordDoc {
            doc: doc.unwrap_or_default().with_actor(automerge::ActorId::from(actor.0)),
        };
        if !changes.is_empty() {
            doc.apply_changes(changes)?;
        }
        Ok(doc)
    }

    /// The compacted document bytes.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Applies foreign changes in one call (grouping matters: see DESIGN.md).
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> Result<(), CorruptData> {
        guarded("applying changes", || self.doc.apply_changes(changes))?
            .map_err(|e| CorruptData::new("applying changes", e))
    }

    /// Merges a compacted document (a snapshot) into this one.
    pub fn merge_saved(&mut self, bytes: &[u8]) -> Result<(), CorruptData> {
        let mut other = RecordDoc::load(bytes, ActorId([0; 16]))?;
        guarded("snapshot document", || self.doc.merge(&mut other.doc))?
            .map(|_| ())
            .map_err(|e| CorruptData::new("snapshot document", e))
    }

    /// Closes the pending edit as one change; returns its bytes (None if nothing changed).
    pub fn commit(&mut self, time_ms: u64) -> Option<Vec<u8>> {
        let secs = (time_ms / 1000) as i64;
        self.doc.commit_with(CommitOptions::default().with_time(secs))?;
        self.doc.get_last_local_change().map(|c| c.raw_bytes().to_vec())
    }

    /// Discards uncommitted edits.
    pub fn rollback(&mut self) {
        self.doc.rollback();
    }

    pub fn is_deleted(&self) -> bool {
        matches!(
            self.doc.get(ROOT, DELETED),
            Ok(Some((Value::Scalar(v), _))) if matches!(v.as_ref(), ScalarValue::Boolean(true))
        )
    }

    /// True when the document has no fields at all (never written).
    pub fn is_empty(&self) -> bool {
        self.doc.keys(ROOT).next().is_none()
    }

    /// Checks `fields` against the schema without touching the document.
    pub fn check_put(collection: &str, fields: &Fields, schema: Option<&CollectionSchema>) -> Result<(), InvalidInput> {
        for (name, value) in fields {
            check_field_name(name)?;
            let ty = match schema {
                Some(s) => s.field(collection, name)?,
                None => FieldType::Json,
            };
            if schema.is_some() {
                check_value(name, ty, value)?;
            }
        }
        Ok(())
    }

    /// Upserts `fields` (undeleting the record if it was deleted). `null` removes a field.
    /// Call [`RecordDoc::check_put`] first: this assumes valid input.
    pub fn put(
        &mut self,
        collection: &str,
        fields: &Fields,
        schema: Option<&CollectionSchema>,
    ) -> Result<(), InvalidInput> {
        Self::check_put(collection, fields, schema)?;
        if self.is_deleted() {
            self.doc.put(ROOT, DELETED, false).map_err(internal)?;
        }
        for (name, value) in fields {
            let ty = schema.map(|s| s.fields[name]);
            self.put_field(name, ty, value).map_err(internal)?;
        }
        Ok(())
    }

    fn put_field(&mut self, name: &str, ty: Option<FieldType>, value: &Json) -> Result<(), automerge::AutomergeError> {
        if value.is_null() {
            if self.doc.get(ROOT, name)?.is_some() {
                self.doc.delete(ROOT, name)?;
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
                        let current = counter_value(v).unwrap_or(0);
                        if target != current {
                            self.doc.increment(ROOT, name, target.wrapping_sub(current))?;
                        }
                    }
                    _ => self.doc.put(ROOT, name, ScalarValue::counter(target))?,
                }
            }
            Some(FieldType::Json) => {
                let text = serde_json::to_vec(value).unwrap_or_default();
                self.doc.put(ROOT, name, ScalarValue::Bytes(text))?;
            }
            _ => self.doc.put(ROOT, name, json_to_scalar(value))?,
        }
        Ok(())
    }

    /// Marks the record deleted (a tombstone; the fields stay for a later undelete).
    pub fn delete(&mut self) {
        self.doc.put(ROOT, DELETED, true).expect("root map put cannot fail");
    }

    /// Edits a `text` field in place: delete `del` characters at `pos`, insert `text`.
    pub fn splice(&mut self, field: &str, pos: usize, del: usize, text: &str) -> Result<(), InvalidInput> {
        check_field_name(field)?;
        let id = match self.doc.get(ROOT, field).map_err(internal)? {
            Some((Value::Object(ObjType::Text), id)) => id,
            None => self.doc.put_object(ROOT, field, ObjType::Text).map_err(internal)?,
            Some((v, _)) => {
                return Err(InvalidInput::WrongOperation {
                    field: field.into(),
                    actual: value_kind(&v),
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
        if self.is_deleted() {
            self.doc.put(ROOT, DELETED, false).map_err(internal)?;
        }
        Ok(())
    }

    /// Adds `by` to a `counter` field (creating it at `by`).
    pub fn increment(&mut self, field: &str, by: i64) -> Result<(), InvalidInput> {
        check_field_name(field)?;
        match self.doc.get(ROOT, field).map_err(internal)? {
            Some((Value::Scalar(v), _)) if matches!(v.as_ref(), ScalarValue::Counter(_)) => {
                self.doc.increment(ROOT, field, by).map_err(internal)?
            }
            None => self.doc.put(ROOT, field, ScalarValue::counter(by)).map_err(internal)?,
            Some((v, _)) => {
                return Err(InvalidInput::WrongOperation {
                    field: field.into(),
                    actual: value_kind(&v),
                    operation: "an increment",
                    needed: "counter",
                });
            }
        }
        if self.is_deleted() {
            self.doc.put(ROOT, DELETED, false).map_err(internal)?;
        }
        Ok(())
    }

    /// The record's fields as JSON (reserved keys left out).
    pub fn fields(&self) -> Fields {
        let mut out = Map::new();
        for key in self.doc.keys(ROOT) {
            if key.starts_with('_') {
                continue;
            }
            if let Ok(Some((value, id))) = self.doc.get(ROOT, key.as_str()) {
                out.insert(key, self.to_json(&value, &id));
            }
        }
        out
    }

    /// Every field with more than one concurrent value.
    pub fn conflicts(&self) -> Vec<FieldConflict> {
        let mut out = Vec::new();
        for key in self.doc.keys(ROOT).filter(|k| !k.starts_with('_')) {
            let all = match self.doc.get_all(ROOT, key.as_str()) {
                Ok(all) if all.len() > 1 => all,
                _ => continue,
            };
            // get() returns the winner; list it first so people see what the view shows.
            let winner = self.doc.get(ROOT, key.as_str()).ok().flatten().map(|(_, id)| id);
            let mut values: Vec<ConflictValue> = Vec::new();
            let mut rest = Vec::new();
            for (value, id) in &all {
                let entry = ConflictValue {
                    actor: match id {
                        ObjId::Id(_, actor, _) => actor.to_hex_string(),
                        ObjId::Root => String::new(),
                    },
                    value: self.to_json(value, id),
                };
                if Some(id) == winner.as_ref() {
                    values.push(entry);
                } else {
                    rest.push(entry);
                }
            }
            values.extend(rest);
            out.push(FieldConflict { field: key, values });
        }
        out
    }

    fn to_json(&self, value: &Value<'_>, id: &ObjId) -> Json {
        match value {
            Value::Object(ObjType::Text) => Json::String(self.doc.text(id).unwrap_or_default()),
            // Validation only lets text objects in; anything else shows as null.
            Value::Object(_) => Json::Null,
            Value::Scalar(s) => scalar_to_json(s),
        }
    }

    /// Read access for validation of foreign documents in tests and tools.
    pub fn heads_count(&mut self) -> usize {
        self.doc.get_heads().len()
    }

    /// Whether the document is waiting for changes it depends on.
    pub fn has_missing_deps(&mut self) -> bool {
        !self.doc.get_missing_deps(&[]).is_empty()
    }
}

fn internal(e: automerge::AutomergeError) -> InvalidInput {
    InvalidInput::Other(format!("the record document refused the edit: {e}"))
}

fn value_kind(v: &Value<'_>) -> &'static str {
    match v {
        Value::Object(ObjType::Text) => "text",
        Value::Object(_) => "object",
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Counter(_) => "counter",
            ScalarValue::Str(_) => "string",
            ScalarValue::Boolean(_) => "bool",
            ScalarValue::Int(_) | ScalarValue::Uint(_) | ScalarValue::F64(_) => "number",
            _ => "scalar",
        },
    }
}

fn counter_value(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Counter(c) => Some(i64::from(c)),
        _ => None,
    }
}

fn json_to_scalar(value: &Json) -> ScalarValue {
    match value {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else {
                ScalarValue::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        // Nested JSON is one register: stored as its JSON text in a bytes scalar.
        Json::Array(_) | Json::Object(_) => ScalarValue::Bytes(serde_json::to_vec(value).unwrap_or_default()),
    }
}

fn scalar_to_json(s: &ScalarValue) -> Json {
    match s {
        ScalarValue::Null => Json::Null,
        ScalarValue::Boolean(b) => Json::Bool(*b),
        ScalarValue::Int(i) => Json::from(*i),
        ScalarValue::Uint(u) => Json::from(*u),
        ScalarValue::F64(f) => serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
        ScalarValue::Counter(c) => Json::from(i64::from(c)),
        ScalarValue::Timestamp(t) => Json::from(*t),
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Bytes(b) => serde_json::from_slice(b).unwrap_or(Json::Null),
        ScalarValue::Unknown { .. } => Json::Null,
    }
}

/// Checks a JSON value against a field type.
pub fn check_value(field: &str, ty: FieldType, value: &Json) -> Result<(), InvalidInput> {
    let wrong = |hint: &'static str| InvalidInput::WrongType {
        field: field.to_string(),
        expected: ty.name(),
        value: truncate_json(value),
        hint,
    };
    if value.is_null() {
        return Ok(());
    }
    match ty {
        FieldType::String | FieldType::Text if !value.is_string() => Err(wrong("give a JSON string")),
        FieldType::Number if !value.is_number() => Err(wrong("give a JSON number")),
        FieldType::Bool if !value.is_boolean() => Err(wrong("give true or false")),
        FieldType::Counter if value.as_i64().is_none() => Err(wrong("give a whole number")),
        FieldType::Datetime => match value.as_str() {
            Some(s) if is_rfc3339(s) => Ok(()),
            _ => Err(wrong("give an RFC 3339 date-time such as \"2026-11-26T15:04:05Z\"")),
        },
        _ => Ok(()),
    }
}

fn truncate_json(value: &Json) -> String {
    let s = value.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.char_indices().nth(60).map(|(i, _)| i).unwrap_or(s.len())])
    } else {
        s
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` with plausible ranges.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r.clone()).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(99);
    if b.len() < 20 || !digits(0..4) || b[4] != b'-' || !digits(5..7) || b[7] != b'-' || !digits(8..10) {
        return false;
    }
    if !matches!(b[10], b'T' | b't' | b' ')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    if !(1..=12).contains(&num(5..7))
        || !(1..=31).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] => b.len() == i + 6 && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_are_checked() {
        assert!(is_rfc3339("2026-11-26T15:04:05Z"));
        assert!(is_rfc3339("2026-11-26T15:04:05.123+01:00"));
        assert!(!is_rfc3339("2026-13-26T15:04:05Z"));
        assert!(!is_rfc3339("yesterday"));
        assert!(!is_rfc3339("2026-11-26T15:04:05"));
    }
}

/// Why a foreign change is refused for a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Corrupt(#[from] CorruptData),
    #[error("{0}")]
    Invalid(#[from] InvalidInput),
    #[error("the change is written by actor {found}, but the op says {expected}")]
    ActorMismatch { expected: String, found: String },
}

/// Decodes `bytes` as one automerge change by `actor` and checks that every
/// operation is a legal edit of a record of `collection` under `schema`
/// (schemaless when `None`). Shared by the replica and the server, so both
/// refuse exactly the same things.
pub fn validate_change(
    bytes: &[u8],
    actor: ActorId,
    collection: &str,
    schema: Option<&CollectionSchema>,
) -> Result<Change, ChangeError> {
    use automerge::legacy::{Key, ObjectId, OpType};
    let (change, expanded) = decode_checked(bytes)?;
    if change.actor_id().to_bytes() != actor.0 {
        return Err(ChangeError::ActorMismatch {
            expected: actor.to_hex(),
            found: change.actor_id().to_hex_string(),
        });
    }
    for op in &expanded.operations {
        let bad = |msg: String| ChangeError::Invalid(InvalidInput::Other(msg));
        match (&op.obj, &op.key) {
            (ObjectId::Root, Key::Map(key)) => {
                let key = key.as_str();
                if key == DELETED {
                    // A Delete shows up when automerge resolves a conflicted tombstone.
                    if !matches!(op.action, OpType::Put(ScalarValue::Boolean(_)) | OpType::Delete) {
                        return Err(bad("the tombstone field _deleted only takes true or false".into()));
                    }
                    continue;
                }
                check_field_name(key)?;
                let ty = match schema {
                    Some(s) => Some(s.field(collection, key)?),
                    None => None,
                };
                let ok = match (&op.action, ty) {
                    (OpType::Delete, _) => true,
                    (OpType::Make(ObjType::Text), Some(FieldType::Text)) => true,
                    (OpType::Put(ScalarValue::Counter(_)) | OpType::Increment(_), Some(FieldType::Counter)) => true,
                    (OpType::Put(v), Some(t)) => scalar_fits(v, t),
                    // Schemaless spaces hold scalar registers only.
                    (OpType::Put(v), None) => !matches!(v, ScalarValue::Counter(_)),
                    _ => false,
                };
                if !ok {
                    return Err(bad(format!(
                        "field {key:?} ({}) cannot take a {:?} operation",
                        ty.map(FieldType::name).unwrap_or("schemaless register"),
                        op_kind(&op.action)
                    )));
                }
            }
            (ObjectId::Root, Key::Seq(_)) => return Err(bad("the record root is a map, not a list".into())),
            // Inside a text object: character inserts, deletes and marks-free edits only.
            (ObjectId::Id(_), _) => {
                if !matches!(op.action, OpType::Put(ScalarValue::Str(_)) | OpType::Delete) {
                    return Err(bad(format!(
                        "a text field cannot take a {:?} operation",
                        op_kind(&op.action)
                    )));
                }
            }
        }
    }
    Ok(change)
}

fn op_kind(op: &automerge::legacy::OpType) -> &'static str {
    use automerge::legacy::OpType;
    match op {
        OpType::Make(_) => "make-object",
        OpType::Delete => "delete",
        OpType::Increment(_) => "increment",
        OpType::Put(_) => "put",
        OpType::MarkBegin(_) | OpType::MarkEnd(_) => "mark",
    }
}

fn scalar_fits(v: &ScalarValue, ty: FieldType) -> bool {
    match (v, ty) {
        (ScalarValue::Null, FieldType::Text | FieldType::Counter) => false,
        (ScalarValue::Null, _) => true,
        (ScalarValue::Str(_), FieldType::String) => true,
        (ScalarValue::Str(s), FieldType::Datetime) => is_rfc3339(s),
        (ScalarValue::Int(_) | ScalarValue::Uint(_) | ScalarValue::F64(_), FieldType::Number) => true,
        (ScalarValue::Boolean(_), FieldType::Bool) => true,
        (ScalarValue::Bytes(_), FieldType::Json) => true,
        _ => false,
    }
}
