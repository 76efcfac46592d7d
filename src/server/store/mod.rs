//! The server's storage: a trait with one implementation per backend.
//!
//! A store is the system of record of a server: users (token hashes only),
//! spaces with their packages, memberships, each space's op log with gap-free
//! seqs, and the materialized record documents. Every implementation passes
//! the same conformance suite (`tests/server_store.rs`).

pub(crate) mod history;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod redb;

use crate::model::{Op, Package, Seq};
use crate::record::ChangeHeader;

/// A member's rights in a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ReadWrite,
    ReadOnly,
}

/// An op as the server keeps it: with the user who pushed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOp {
    pub op: Op,
    pub user: String,
}

/// An op to append, with the header of its change for the history check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOp {
    pub stored: StoredOp,
    pub header: ChangeHeader,
}

/// Why the store refuses one op of a batch; the rest of the batch is unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpRefusal {
    /// The op id was stored before with other content.
    #[error("op {id} was pushed before with other content: give a changed op a new id")]
    OpIdConflict { id: String },
    /// Changes this one depends on are not in its record's history.
    #[error(
        "the change depends on {} change(s) this record's history does not hold ({}): push those first, or write the edit again on top of what the server holds",
        .missing.len(), .missing.join(", ")
    )]
    MissingDeps { missing: Vec<String> },
    /// The actor already wrote another change with this sequence number in this record.
    #[error(
        "actor {actor} already wrote another change number {seq} in this record: two stores share one actor (a restored backup or a copied store); the replica must take a fresh actor and write its edit again"
    )]
    ActorReused { actor: String, seq: u64 },
    /// The change's header does not continue its actor's history.
    #[error("{0}")]
    BadHeader(String),
}

/// A materialized record document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDoc {
    pub collection: String,
    pub record: String,
    pub doc: Vec<u8>,
    /// The document's row in the form of `record::Row::encode`, stored with
    /// it and replaced with it. None for a document stored without one (by an
    /// older build): its readers materialize the document themselves.
    pub row: Option<Vec<u8>>,
}

/// What the store refuses.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: &'static str, name: String },
    #[error("no {what} named {name:?}")]
    Missing { what: &'static str, name: String },
    /// The op at `index` of the batch reuses an op id with other content.
    #[error("op {id} was pushed before with other content")]
    OpIdConflict { index: usize, id: String },
    /// The storage failed underneath (disk full, I/O error): the call changed
    /// nothing, and the store recovers by itself once the cause is gone.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A fresh mark for one append (see [`ServerStore::mark`]): below 2^53, so
/// that it stays exact in every JSON reader.
pub(crate) fn new_mark() -> u64 {
    rand::random::<u64>() >> 11
}

pub(crate) fn missing_space(space: &str) -> StoreError {
    StoreError::Missing {
        what: "space",
        name: space.to_string(),
    }
}

pub(crate) fn missing_user(user: &str) -> StoreError {
    StoreError::Missing {
        what: "user",
        name: user.to_string(),
    }
}

/// One token of a user: a random id, and the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub user: String,
    pub secret_hash: [u8; 32],
}

/// How much one page read may return: at most `count` items, and after the
/// first no item that would take the page past `bytes` of change bytes (ops) or
/// document bytes. The first item always comes (a page always moves on), so a page holds
/// at most `bytes` plus one item's size; the op size limit bounds that item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    pub count: usize,
    pub bytes: usize,
}

impl PageLimit {
    /// At most `count` items, whatever their size.
    pub fn count(count: usize) -> PageLimit {
        PageLimit {
            count,
            bytes: usize::MAX,
        }
    }

    /// Whether an item of `size` bytes joins a page of `items` items and `used` bytes.
    pub fn admits(&self, items: usize, used: usize, size: usize) -> bool {
        items < self.count && (items == 0 || used.saturating_add(size) <= self.bytes)
    }
}

/// A page of documents, and whether more follow it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocsPage {
    pub docs: Vec<StoredDoc>,
    pub more: bool,
}

/// Called when ops are committed to a space by another process sharing the
/// store: `Some(space)`, or `None` when commits may have been missed (every
/// space may have changed).
pub type CommitHook = std::sync::Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// Storage of a tidemark server. Every method is one transaction.
pub trait ServerStore: Send + Sync + 'static {
    /// The random id of this store generation (created with the store, never changed).
    fn epoch(&self) -> StoreResult<String>;
    /// Whether the store can serve now: `Unavailable` with the cause while its
    /// storage is failing (after trying to recover).
    fn ready(&self) -> StoreResult<()>;

    /// Creates a user; `AlreadyExists` if the name is taken.
    fn create_user(&self, user: &str) -> StoreResult<()>;
    fn user_exists(&self, user: &str) -> StoreResult<bool>;
    /// Stores a token (id → user + secret hash) for an existing user.
    fn add_token(&self, token_id: &str, record: &TokenRecord) -> StoreResult<()>;
    fn token(&self, token_id: &str) -> StoreResult<Option<TokenRecord>>;

    /// Creates a space; `AlreadyExists` if the name is taken.
    fn create_space(&self, space: &str, package: Option<&Package>) -> StoreResult<()>;
    /// `None` if the space does not exist; `Some(None)` if it is schemaless.
    fn package(&self, space: &str) -> StoreResult<Option<Option<Package>>>;
    /// Replaces a space's package (`Missing` if the space does not exist).
    fn set_package(&self, space: &str, package: Option<&Package>) -> StoreResult<()>;
    /// Grants (or changes) a user's role in a space.
    fn grant(&self, user: &str, space: &str, role: Role) -> StoreResult<()>;
    fn role(&self, user: &str, space: &str) -> StoreResult<Option<Role>>;
    /// Ends a user's membership of a space; false if it had none (`Missing` if
    /// the space does not exist).
    fn revoke(&self, user: &str, space: &str) -> StoreResult<bool>;
    /// Removes a token; false if there was none. Its holder is refused from the next request on.
    fn remove_token(&self, token_id: &str) -> StoreResult<bool>;
    /// Every user with the ids of its tokens (never their secrets), by name.
    fn users(&self) -> StoreResult<Vec<(String, Vec<String>)>>;
    /// Every space, by name.
    fn spaces(&self) -> StoreResult<Vec<String>>;
    /// The members of a space with their roles, by user (`Missing` if the space does not exist).
    fn members(&self, space: &str) -> StoreResult<Vec<(String, Role)>>;

    /// Appends ops in one transaction and returns, for each in order, its seq or
    /// why it was refused. An op id seen before (in this space, or earlier in the
    /// batch) gets its existing seq back if its content is identical, else
    /// `OpIdConflict`. A new op's change is checked against its record's history
    /// (earlier ops of the batch included): every dependency present, its
    /// (actor, seq) new and next for that actor, or the identical change stored
    /// already; its op counters after those of its actor and its dependencies.
    /// A refusal costs only that op. New ops get head+1, head+2, …: gap-free in
    /// commit order.
    fn append(&self, space: &str, ops: &[NewOp]) -> StoreResult<Vec<Result<Seq, OpRefusal>>>;
    /// Ops with seq > `since`, in seq order, within `limit` (counting change bytes).
    fn read_ops(&self, space: &str, since: Seq, limit: PageLimit) -> StoreResult<Vec<(Seq, StoredOp)>>;
    /// The highest seq of the space (0 when empty).
    fn head(&self, space: &str) -> StoreResult<Seq>;
    /// The mark of the op at `seq`: a random number below 2^53 drawn by the
    /// append that stored it (0 for ops stored before marks existed), or None
    /// when the space has no op at `seq`. A store restored from a backup and
    /// grown again gives a seq a new mark even when the same op came back to
    /// it, so a client that remembers the mark at its watermark notices that
    /// the history under it changed.
    fn mark(&self, space: &str, seq: Seq) -> StoreResult<Option<u64>>;

    /// The seq up to which documents are materialized.
    fn materialized(&self, space: &str) -> StoreResult<Seq>;
    /// Stores documents and advances the materialized seq from `from` to
    /// `through`, atomically, if it is still `from`: false (nothing stored) when
    /// another writer moved it first, so two processes materializing one space
    /// never put older documents over newer ones.
    fn store_docs(&self, space: &str, docs: &[StoredDoc], from: Seq, through: Seq) -> StoreResult<bool>;
    fn doc(&self, space: &str, collection: &str, record: &str) -> StoreResult<Option<Vec<u8>>>;
    /// The documents of `records` (collection, record), in their order: `None`
    /// where there is none. A store that reads over the network reads them in
    /// one request.
    fn docs_of(&self, space: &str, records: &[(String, String)]) -> StoreResult<Vec<Option<Vec<u8>>>> {
        records.iter().map(|(c, r)| self.doc(space, c, r)).collect()
    }
    /// Takes a record out of materialization and snapshots: its ops no longer
    /// load (which the history check should make impossible). Reads of it name
    /// `reason`; the rest of the space is unaffected.
    fn quarantine(&self, space: &str, collection: &str, record: &str, reason: &str) -> StoreResult<()>;
    /// The quarantined records of a space, with why: (collection, record) → reason.
    fn quarantined(&self, space: &str) -> StoreResult<std::collections::BTreeMap<(String, String), String>>;
    /// Documents in (collection, record) order after `after`, within `limit`
    /// (counting document bytes), and whether more follow.
    fn docs_page(&self, space: &str, after: Option<(&str, &str)>, limit: PageLimit) -> StoreResult<DocsPage>;

    /// Calls `hook` for commits made by other processes sharing this store, so
    /// the live pulls this process holds answer at once. A store that only one
    /// process writes has nothing to report (this process announces its own).
    fn watch_commits(&self, hook: CommitHook) {
        let _ = hook;
    }
}
