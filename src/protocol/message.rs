//! Wire messages of protocol v1 (JSON over HTTP, or passed in-process).
//!
//! Every response names the server `epoch`: a store that was reset or
//! restored has a new one, and replicas notice.

use super::code::ErrorCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::error::{CorruptData, InvalidInput};
use crate::model::{ActorId, Collection, Op, OpId, Package, RecordId, Seq};

/// The protocol version these messages belong to (the `/v1` of the routes).
pub const PROTOCOL_VERSION: u32 = 1;

/// The revision of protocol v1 this build speaks: what a peer must understand
/// beyond the routes and message shapes of `/v1`. At revision 3 that is genesis
/// ops (`WireOp::actor` = `GENESIS_ACTOR`, see `record/genesis.rs`) in pushes,
/// pulls and snapshot documents, and push answers that refuse single ops
/// (`PushResponse::refused`, a `null` seq) with the history check's codes
/// `missing_deps` and `actor_reused`. Both sides send it in
/// [`REVISION_HEADER`] on every HTTP request and answer, and each refuses a
/// peer below [`MIN_PEER_REVISION`] before acting on anything it says: a peer
/// that took a `null` seq for an acknowledgement would lose edits.
pub const PROTOCOL_REVISION: u32 = 3;

/// The oldest peer revision this build works with.
pub const MIN_PEER_REVISION: u32 = 3;

/// The HTTP header that carries [`PROTOCOL_REVISION`].
pub const REVISION_HEADER: &str = "tidemark-protocol-revision";

/// Reads a [`REVISION_HEADER`] value: a decimal number, nothing else.
pub fn parse_revision(value: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An op on the wire: its envelope, and the automerge change as base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WireOp {
    /// UUID of the op; pushing the same id again returns its first seq.
    pub id: OpId,
    /// Hex actor id (32 hex digits) of the replica that made the edit, or
    /// `GENESIS_ACTOR` for the genesis change of a counter or text field that a
    /// first increment or splice needed (see `record/genesis.rs`).
    #[cfg_attr(feature = "server", schema(value_type = String, pattern = "^[0-9A-Fa-f]{32}$"))]
    pub actor: ActorId,
    /// A collection of the space's package (any name in a schemaless space):
    /// 1 to 256 bytes without control characters, in Unicode NFC, else the op is refused.
    pub collection: String,
    /// The record's id: 1 to 256 bytes without control characters, in Unicode NFC, else the op is refused.
    pub record: String,
    /// When the edit was made, in milliseconds since the Unix epoch (advisory).
    #[serde(deserialize_with = "crate::model::whole_u64")]
    pub time_ms: u64,
    /// The automerge change bytes, base64; an op whose change does not decode,
    /// or is over the server's per-op byte limit, is refused.
    pub change: String,
}

impl WireOp {
    pub fn from_op(op: &Op) -> WireOp {
        WireOp {
            id: op.id,
            actor: op.actor,
            collection: op.collection.to_string(),
            record: op.record.to_string(),
            time_ms: op.time_ms,
            change: B64.encode(&op.change),
        }
    }

    /// Checks names and decodes the base64; the change itself is checked by the receiver.
    pub fn to_op(&self) -> Result<Op, WireError> {
        Ok(Op {
            id: self.id,
            actor: self.actor,
            collection: Collection::exact(self.collection.as_str())?,
            record: RecordId::exact(self.record.as_str())?,
            time_ms: self.time_ms,
            change: B64
                .decode(&self.change)
                .map_err(|e| CorruptData::new("op change", format!("not base64: {e}")))?,
        })
    }
}

/// Why a wire message does not convert.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Corrupt(#[from] CorruptData),
}

/// `POST /v1/spaces/{space}/push`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    pub ops: Vec<WireOp>,
}

/// The answer to a push: the seq of each op in request order, `null` where the
/// op was refused (`refused` says why). A refusal costs only that op: the rest
/// of the batch is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct PushResponse {
    pub epoch: String,
    #[cfg_attr(feature = "server", schema(value_type = Vec<Option<u64>>))]
    pub seqs: Vec<Option<Seq>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedOp>,
    /// The space's highest seq after this push.
    #[cfg_attr(feature = "server", schema(value_type = u64))]
    pub head: Seq,
}

impl PushResponse {
    /// Checks that this answers a push of `batch` ops: a seq slot per op, and
    /// every op either stored (a seq) or refused once (an index in the batch and
    /// a reason), never both and never neither. A client acts on no part of an
    /// answer that fails this: a refusal taken from it is for good.
    pub fn check_fits(&self, batch: usize) -> Result<(), String> {
        if self.seqs.len() != batch {
            return Err(format!("the server acknowledged {} of {batch} ops", self.seqs.len()));
        }
        let mut refused = vec![false; batch];
        for op in &self.refused {
            match refused.get_mut(op.index) {
                Some(seen) if !*seen => *seen = true,
                Some(_) => return Err(format!("the server refused op {} twice", op.index)),
                None => return Err(format!("the server refused op {} of a batch of {batch}", op.index)),
            }
        }
        match (0..batch).find(|&i| self.seqs[i].is_some() == refused[i]) {
            Some(i) if refused[i] => Err(format!("the server both stored and refused op {i}")),
            Some(i) => Err(format!("the server neither stored nor refused op {i}")),
            None => Ok(()),
        }
    }
}

/// One op of a push the server refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct RefusedOp {
    /// The op's index in the pushed batch.
    pub index: usize,
    /// `invalid_op`, `op_too_large`, `op_id_conflict`, `missing_deps` or `actor_reused`.
    pub code: ErrorCode,
    pub message: String,
}

/// An op as stored by the server: its seq and the user who pushed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct PulledOp {
    #[cfg_attr(feature = "server", schema(value_type = u64))]
    pub seq: Seq,
    pub user: String,
    pub op: WireOp,
}

/// `GET /v1/spaces/{space}/pull?since=N&limit=L`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct PullResponse {
    pub epoch: String,
    pub ops: Vec<PulledOp>,
    /// The page covers every seq up to `end`; ask again with `since=end`.
    #[cfg_attr(feature = "server", schema(value_type = u64))]
    pub end: Seq,
    /// Whether ops after `end` exist.
    pub more: bool,
    /// The mark of the op at `end` when the page moves past `since` (see
    /// `ServerStore::mark`): pass it back as `mark` with `since=end`.
    #[serde(default)]
    pub mark: Option<u64>,
    #[cfg_attr(feature = "server", schema(value_type = u64))]
    pub head: Seq,
    /// The version of the space's package (0: schemaless), so that a round
    /// with nothing to push can begin with its pull and ask for the package
    /// only when it changed. Absent from a server that does not say.
    #[serde(default)]
    pub package_version: Option<u64>,
}

/// `GET /v1/spaces/{space}/package`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct PackageResponse {
    pub epoch: String,
    /// 0 for a schemaless space.
    pub version: u64,
    /// `null` for a schemaless space.
    pub package: Option<Package>,
    #[cfg_attr(feature = "server", schema(value_type = u64))]
    pub head: Seq,
}

/// One compacted record document of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SnapshotDoc {
    pub collection: String,
    pub record: String,
    /// A saved automerge document, base64.
    pub doc: String,
    /// The record's row as the server materialized it from `doc`, so that a
    /// client need not load the document to show the record. Absent when the
    /// server has none; the client then materializes `doc` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<SnapshotRow>,
}

/// A record's row in a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SnapshotRow {
    /// The record's fields as one JSON object; `null` for a deleted record.
    #[cfg_attr(feature = "server", schema(value_type = Option<Object>))]
    pub fields: Option<Box<serde_json::value::RawValue>>,
    /// How many fields hold concurrent values that differ.
    pub conflicts: u32,
    /// The rules the server rendered the row by; a client takes only a row
    /// made by its own (others differ in what they count or show). Absent: 0,
    /// which no build renders by.
    #[serde(default)]
    pub rules: u32,
}

/// Rows compare by their JSON text (a raw JSON value has no equality of its own).
impl PartialEq for SnapshotRow {
    fn eq(&self, other: &Self) -> bool {
        self.conflicts == other.conflicts
            && self.rules == other.rules
            && self.fields.as_ref().map(|f| f.get()) == other.fields.as_ref().map(|f| f.get())
    }
}

impl Eq for SnapshotRow {}

impl SnapshotRow {
    /// The wire form of a row this program materialized: its fields are JSON
    /// that serde_json wrote, so they are valid as they are.
    pub fn of(row: &crate::record::Row) -> Result<Self, CorruptData> {
        let fields = match &row.fields {
            Some(json) => {
                let text = String::from_utf8(json.clone())
                    .map_err(|_| CorruptData::new("stored row", "its fields are not UTF-8"))?;
                Some(
                    serde_json::value::RawValue::from_string(text)
                        .map_err(|e| CorruptData::new("stored row", format!("its fields are not JSON: {e}")))?,
                )
            }
            None => None,
        };
        Ok(SnapshotRow {
            fields,
            conflicts: row.conflicts,
            rules: crate::record::ROW_RULES,
        })
    }

    /// The row a client keeps, checked as outside input; None when it was
    /// rendered by other rules than this build's.
    pub fn to_row(&self) -> Result<Option<crate::record::Row>, CorruptData> {
        if self.rules != crate::record::ROW_RULES {
            return Ok(None);
        }
        crate::record::Row::from_outside(self.fields.as_deref(), self.conflicts).map(Some)
    }
}

/// `GET /v1/spaces/{space}/snapshot?after=CURSOR&limit=L`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SnapshotResponse {
    pub epoch: String,
    /// Every op with seq ≤ `as_of` is contained in the documents of this page.
    #[cfg_attr(feature = "server", schema(value_type = u64))]
    pub as_of: Seq,
    /// The id of the op at seq `as_of` (for the history check of later pulls).
    #[serde(default)]
    pub as_of_op: Option<OpId>,
    /// The mark of the op at seq `as_of` (for the same check).
    #[serde(default)]
    pub as_of_mark: Option<u64>,
    pub docs: Vec<SnapshotDoc>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next: Option<String>,
}

/// `GET /v1/health`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Health {
    pub ok: bool,
    pub epoch: String,
    /// The protocol version: 1, the `/v1` of the routes.
    pub protocol: u32,
    /// This server's revision of protocol v1.
    pub revision: u32,
}

/// `GET /v1/ready`: the store is usable (a failing one answers 503 `store_unavailable`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Ready {
    pub ready: bool,
}

/// Every error answer: a stable code and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The stable code a client branches on (each answer of the API document lists its codes).
    pub code: ErrorCode,
    pub message: String,
    /// For op-level errors: the index of the offending op in the pushed batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_index: Option<usize>,
}

/// Admin: `POST /v1/admin/spaces`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateSpace {
    #[cfg_attr(feature = "server", schema(schema_with = crate::protocol::schema::account_name))]
    pub space: String,
    /// Absent or `null` for a schemaless space.
    #[serde(default)]
    pub package: Option<Package>,
}

/// Admin: the answer to `POST /v1/admin/spaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SpaceCreated {
    /// The new space's name.
    pub created: String,
}

/// Admin: the answer to `PUT /v1/admin/spaces/{space}/package`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct PackageSet {
    /// The space's package version now.
    pub version: u64,
}

/// Admin: the answer to `POST /v1/admin/grants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Granted {
    /// Always `true`.
    pub granted: bool,
}

/// Admin: the answer to revoking a grant or a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Revoked {
    /// Always `true`.
    pub revoked: bool,
}

/// Admin: `POST /v1/admin/users`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[cfg_attr(feature = "server", schema(schema_with = crate::protocol::schema::account_name))]
    pub user: String,
}

/// Admin: the token of a new user (shown once, stored only as a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct UserToken {
    pub user: String,
    pub token: String,
}

/// Admin: `POST /v1/admin/grants`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[cfg_attr(feature = "server", schema(schema_with = crate::protocol::schema::account_name))]
    pub user: String,
    #[cfg_attr(feature = "server", schema(schema_with = crate::protocol::schema::account_name))]
    pub space: String,
    #[serde(default)]
    pub read_only: bool,
}

/// Admin: one entry of `GET /v1/admin/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct UserListing {
    pub user: String,
    /// The ids of the user's tokens (the middle part of `tm1.ID.SECRET`); never secrets.
    pub tokens: Vec<String>,
}

/// Admin: one member in a [`SpaceListing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct MemberListing {
    pub user: String,
    pub read_only: bool,
}

/// Admin: one entry of `GET /v1/admin/spaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SpaceListing {
    pub space: String,
    /// 0 for a schemaless space.
    pub package_version: u64,
    pub members: Vec<MemberListing>,
}

/// Decodes a snapshot document's base64.
pub fn decode_doc(doc: &str) -> Result<Vec<u8>, CorruptData> {
    B64.decode(doc)
        .map_err(|e| CorruptData::new("snapshot document", format!("not base64: {e}")))
}

/// Encodes bytes as the wire's base64.
pub fn encode_bytes(bytes: &[u8]) -> String {
    B64.encode(bytes)
}
