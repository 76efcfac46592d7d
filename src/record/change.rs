//! Changes from outside: decoded only after their chunk headers are checked,
//! refused unless canonical, and validated against a record's schema.

use std::collections::BTreeMap;

use automerge::{Change as RawChange, ObjType, ScalarValue};

use super::genesis::{GENESIS_ACTOR, is_genesis};
use super::values::{MAX_COUNTER, MAX_JSON_DEPTH, counter_in_range, is_rfc3339, json_depth};
use super::{DELETED, guarded};
use crate::error::{CorruptData, InvalidInput};
use crate::model::{ActorId, CollectionSchema, FieldType, check_field_name};

/// A change decoded and checked by this module, ready to merge into a record
/// document ([`RecordDoc::apply_changes`](super::RecordDoc::apply_changes)).
/// Opaque, so that no module but `record` names automerge.
#[derive(Debug, Clone)]
pub struct Change(pub(super) RawChange);

impl Change {
    /// The change's hash, which names it in every history that holds it.
    pub fn hash(&self) -> [u8; 32] {
        self.0.hash().0
    }
}

/// Decodes one automerge change from bytes that came from outside, and checks
/// what automerge's decoder does not: the header checksum belongs to the
/// change, the encoding is canonical (it re-encodes to the same hash), and
/// there are no mark ops. A change that fails any of these would be stored,
/// then make its record document unloadable (or abort automerge) later.
pub fn decode_change(bytes: &[u8]) -> Result<Change, CorruptData> {
    decode_raw(bytes).map(Change)
}

/// [`decode_change`], for this module's own use.
pub(super) fn decode_raw(bytes: &[u8]) -> Result<RawChange, CorruptData> {
    decode_checked(bytes).map(|(change, _)| change)
}

fn decode_checked(bytes: &[u8]) -> Result<(RawChange, automerge::ExpandedChange), CorruptData> {
    let bad = |reason: &str| CorruptData::new("automerge change", reason);
    check_single_change_chunk(bytes)?;
    let change = guarded("automerge change", || RawChange::try_from(bytes))?
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
    let reencoded = guarded("automerge change", || RawChange::from(expanded.clone()))?;
    if reencoded.hash() != change.hash() {
        return Err(bad("it is not canonically encoded"));
    }
    Ok((change, expanded))
}

/// Decodes a change that was checked when it entered the store (the log, the server's ops).
pub fn decode_stored_change(bytes: &[u8]) -> Result<Change, CorruptData> {
    decode_stored_raw(bytes).map(Change)
}

/// [`decode_stored_change`], for this module's own use.
pub(super) fn decode_stored_raw(bytes: &[u8]) -> Result<RawChange, CorruptData> {
    check_single_change_chunk(bytes)?;
    guarded("stored change", || RawChange::try_from(bytes))?.map_err(|e| CorruptData::new("stored change", e))
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
pub(super) const DOCUMENT_CHUNK: u8 = 0;
pub(super) const CHANGE_CHUNK: u8 = 1;
pub(super) const COMPRESSED_CHANGE_CHUNK: u8 = 2;

/// Splits automerge bytes into chunks `(type, whole chunk)`, checking every
/// header and length before automerge sees them (it trusts lengths from the input).
pub(super) fn split_chunks(bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, CorruptData> {
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
/// The op actor a decoded change travels under: its automerge actor when that is
/// one of our 16-byte replica actors, [`GENESIS_ACTOR`] for a genesis change.
pub fn change_actor(change: &Change) -> Option<ActorId> {
    raw_change_actor(&change.0)
}

fn raw_change_actor(change: &RawChange) -> Option<ActorId> {
    if is_genesis(change) {
        return Some(GENESIS_ACTOR);
    }
    ActorId::from_slice(change.actor_id().to_bytes()).ok()
}

/// One change of a document this program stored, as it would travel in an op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedChange {
    /// The op actor (see [`change_actor`]).
    pub actor: ActorId,
    /// The change's sequence number among its actor's changes in this document.
    pub seq: u64,
    /// The change's own time, in milliseconds (automerge keeps seconds).
    pub time_ms: u64,
    pub hash: [u8; 32],
    pub bytes: Vec<u8>,
}

/// Every change of a document this program stored (a snapshot's compacted
/// document), dependencies first. A change that could not travel as an op
/// (an actor that is neither a replica's nor a genesis actor) is left out: a
/// server never hands one out.
pub fn saved_changes(doc: &[u8]) -> Result<Vec<SavedChange>, CorruptData> {
    let mut doc = super::RecordDoc::load_stored(doc, ActorId([0; 16]))?;
    let changes = guarded("reading changes", || doc.doc.get_changes(&[]))?;
    Ok(changes
        .iter()
        .filter_map(|change| {
            Some(SavedChange {
                actor: raw_change_actor(change)?,
                seq: change.seq(),
                time_ms: u64::try_from(change.timestamp())
                    .unwrap_or(0)
                    .saturating_mul(1000)
                    .min(crate::model::MAX_TIME_MS),
                hash: change.hash().0,
                bytes: change.raw_bytes().to_vec(),
            })
        })
        .collect())
}

/// What the server's history check needs of a change: read from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeHeader {
    pub hash: [u8; 32],
    /// The automerge actor: 16 bytes for a replica, longer for a genesis change.
    pub actor: Vec<u8>,
    /// The actor's sequence number in this record's history (1, 2, 3…).
    pub seq: u64,
    /// The first and last op counters the change uses.
    pub start_op: u64,
    pub max_op: u64,
    pub deps: Vec<[u8; 32]>,
    /// The ops of other changes that its operations name (as predecessors, as
    /// the text they edit, as the character they insert after): per actor, the
    /// highest counter named. Read only from a change checked as it enters
    /// ([`validate_op_change`]); empty otherwise.
    pub named: Vec<(Vec<u8>, u64)>,
}

impl ChangeHeader {
    pub fn of(change: &Change) -> ChangeHeader {
        ChangeHeader::of_raw(&change.0)
    }

    pub(super) fn of_raw(change: &RawChange) -> ChangeHeader {
        ChangeHeader {
            hash: change.hash().0,
            actor: change.actor_id().to_bytes().to_vec(),
            seq: change.seq(),
            start_op: change.start_op().get(),
            max_op: change.max_op(),
            deps: change.deps().iter().map(|d| d.0).collect(),
            named: Vec::new(),
        }
    }
}

/// The header of a change that was checked when it entered the store.
pub fn stored_change_header(bytes: &[u8]) -> Result<ChangeHeader, CorruptData> {
    Ok(ChangeHeader::of_raw(&decode_stored_raw(bytes)?))
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
    #[error(
        "an op by the genesis actor must hold exactly the genesis change tidemark derives for one counter or text field"
    )]
    NotGenesis,
}

/// Checks that `change` may travel as an op by `actor`: a replica's op holds a
/// change written by that replica, a genesis op exactly a genesis change.
pub fn check_author(change: &Change, actor: ActorId) -> Result<(), ChangeError> {
    check_raw_author(&change.0, actor)
}

fn check_raw_author(change: &RawChange, actor: ActorId) -> Result<(), ChangeError> {
    if actor == GENESIS_ACTOR {
        return if is_genesis(change) {
            Ok(())
        } else {
            Err(ChangeError::NotGenesis)
        };
    }
    if change.actor_id().to_bytes() != actor.0 {
        return Err(ChangeError::ActorMismatch {
            expected: actor.to_hex(),
            found: change.actor_id().to_hex_string(),
        });
    }
    Ok(())
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
    validate_op_change(bytes, actor, collection, schema).map(|(change, _)| change)
}

/// [`validate_change`], with the change's header and the ops of other changes
/// it names ([`ChangeHeader::named`]), which the server checks against the
/// record's history before it stores the change.
pub fn validate_op_change(
    bytes: &[u8],
    actor: ActorId,
    collection: &str,
    schema: Option<&CollectionSchema>,
) -> Result<(Change, ChangeHeader), ChangeError> {
    use automerge::legacy::{Key, ObjectId, OpType};
    let (change, expanded) = decode_checked(bytes)?;
    check_raw_author(&change, actor)?;
    if expanded.operations.is_empty() {
        // tidemark never writes one, and it would bring a record into existence as {}.
        return Err(ChangeError::Invalid(InvalidInput::Other(
            "a change with no operations: leave it out".into(),
        )));
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
                if let Some(reason) = value_problem(&op.action) {
                    return Err(bad(format!("field {key:?}: {reason}")));
                }
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
    let mut header = ChangeHeader::of_raw(&change);
    header.named = named_ops(&expanded)?;
    Ok((Change(change), header))
}

/// Every op of another change that `change`'s operations name, as the highest
/// counter per actor; an op named within the change must come before the
/// operation that names it. Automerge applies a change that names an op its
/// document lacks, and then saves a document that no longer loads.
fn named_ops(change: &automerge::ExpandedChange) -> Result<Vec<(Vec<u8>, u64)>, ChangeError> {
    use automerge::legacy::{ElementId, Key, ObjectId};
    let own = change.actor_id.to_bytes();
    let start = change.start_op.get();
    let mut highest: BTreeMap<&[u8], u64> = BTreeMap::new();
    for (index, op) in change.operations.iter().enumerate() {
        let counter = start.saturating_add(index as u64);
        let object = match &op.obj {
            ObjectId::Id(id) => Some(id),
            ObjectId::Root => None,
        };
        let after = match &op.key {
            Key::Seq(ElementId::Id(id)) => Some(id),
            _ => None,
        };
        for named in op.pred.iter().chain(object).chain(after) {
            let actor = named.1.to_bytes();
            if actor == own && named.0 >= start {
                if named.0 >= counter {
                    return Err(ChangeError::Invalid(InvalidInput::Other(format!(
                        "operation {index} names op {} of its own change, which does not come before it",
                        named.0
                    ))));
                }
                continue;
            }
            let top = highest.entry(actor).or_insert(0);
            *top = (*top).max(named.0);
        }
    }
    Ok(highest
        .into_iter()
        .map(|(actor, counter)| (actor.to_vec(), counter))
        .collect())
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

/// A value no field may hold, whatever its type: a counter outside the range every
/// replica can add up and every JSON reader can hold, or a nested value that is not
/// JSON text a view row can carry.
fn value_problem(action: &automerge::legacy::OpType) -> Option<String> {
    use automerge::legacy::OpType;
    match action {
        OpType::Put(ScalarValue::Counter(c)) if !counter_in_range(i64::from(c)) => Some(format!(
            "counter value {} is outside -{MAX_COUNTER}..={MAX_COUNTER}",
            i64::from(c)
        )),
        OpType::Increment(by) if !counter_in_range(*by) => {
            Some(format!("increment {by} is outside -{MAX_COUNTER}..={MAX_COUNTER}"))
        }
        OpType::Put(ScalarValue::Bytes(bytes)) => match serde_json::from_slice::<serde_json::Value>(bytes) {
            Err(e) => Some(format!("a nested value must be JSON text ({e})")),
            Ok(v) if json_depth(&v) > MAX_JSON_DEPTH => {
                Some(format!("nested JSON deeper than {MAX_JSON_DEPTH} levels"))
            }
            Ok(_) => None,
        },
        _ => None,
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
