//! Every redb table of the replica, with its key/value layout. A layout change
//! means a new version suffix in the table name and a migration.

use redb::{ReadableTable, TableDefinition};

/// The change log: local position (1, 2, 3…) → [`LogEntry`](super::log::LogEntry) bytes.
/// Holds every op the replica knows (local and pulled) and snapshot bases:
/// replaying it from position 1 rebuilds every document and the whole view.
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log_v1");

/// Op-id index: op id (UUID as u128) → local position in [`LOG`].
pub const OP_INDEX: TableDefinition<u128, u64> = TableDefinition::new("op_index_v1");

/// Record documents: (collection, record id) → automerge bytes (a saved document,
/// possibly followed by change chunks: a store of format 1 appended local
/// edits here). A record's stored document is this value followed by its
/// [`DOC_TAILS`] value: read both through `ViewTables::doc_bytes` or [`stored_doc`].
/// A value that starts with [`UNLOADED`] holds a document stored as a snapshot
/// brought it and never loaded here (automerge's chunks start with 0x85);
/// `stored_doc` leaves the mark out. Only a document known to load takes a put
/// as an intent (`intent.rs`).
pub const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("docs_v1");

/// The change chunks local edits appended to a record's document since it was
/// last stored whole: (collection, record id) → the chunks, concatenated. An
/// edit of a document kept in memory writes its change here rather than
/// rewriting the whole document, which grows with the record's history (see
/// `edit.rs`). Writing a record's DOCS value removes its tail.
pub const DOC_TAILS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("doc_tails_v1");

/// The materialized view: (collection, record id) → the live record's fields as
/// canonical JSON (keys sorted). Deleted records have no row.
pub const VIEW: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("view_v1");

/// Records with unresolved conflicts: (collection, record id) → number of conflicting fields.
pub const CONFLICTED: TableDefinition<(&str, &str), u32> = TableDefinition::new("conflicted_v1");

/// Local ops the server refused for good: local position → [`Rejection`](super::Rejection) JSON.
pub const REJECTED: TableDefinition<u64, &[u8]> = TableDefinition::new("rejected_v1");

/// Local ops taken out of the queue for good (discarded, or superseded by a retried
/// copy at a later position): local position → (). Skipped by every push.
pub const DISCARDED: TableDefinition<u64, ()> = TableDefinition::new("discarded_v1");

/// Local ops the current server is known to hold exactly as they are, though
/// they lie where the queue counts ops as unconfirmed (an owed re-push that
/// waits at an earlier op, or an op pulled back while still pending): local
/// position → (). Rewriting a record keeps them, because the server would
/// refuse a new version of an edit it holds and its version is already
/// pulled. Emptied when the server loses data; entries the `pushed`
/// watermark passes are dropped.
pub const CONFIRMED: TableDefinition<u64, ()> = TableDefinition::new("confirmed_v1");

/// The seqs the server gave this replica's pushes that no applied pull page
/// has passed yet: seq → op id (u128). A page holding another op at one of
/// them comes from a server that lost data since, even when a later push was
/// acknowledged above it. Emptied when the server loses data.
pub const ACKS: TableDefinition<u64, u128> = TableDefinition::new("acks_v1");

/// Local puts recorded before their automerge change is made (see `intent.rs`):
/// the log position each holds → [`Intent`](super::intent::Intent) bytes. Their
/// [`LOG`] entries are written when the changes are made, before any other
/// transaction reads or writes documents or the log.
pub const INTENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("intents_v1");

/// Metadata: key → value bytes. Keys are the constants in [`meta`].
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_v1");

/// Keys of [`META`] and the layout of their values.
pub mod meta {
    /// u64 LE: the store format this file was written with.
    pub const FORMAT: &str = "format";
    /// 16 bytes: this replica's automerge actor.
    pub const ACTOR: &str = "actor";
    /// JSON `Binding`: (server URL, user, space); absent on an unbound store.
    pub const BINDING: &str = "binding";
    /// UTF-8: the bearer token of the binding's user.
    pub const TOKEN: &str = "token";
    /// JSON `Package`; absent = schemaless.
    pub const PACKAGE: &str = "package";
    /// u64 LE: the next free log position.
    pub const NEXT_POS: &str = "next_pos";
    /// u64 LE: the server has acknowledged every local op at or below this position.
    pub const PUSHED: &str = "pushed";
    /// u64 LE: every server op with seq ≤ pulled is applied.
    pub const PULLED: &str = "pulled";
    /// 16 bytes: the id of the op at seq `pulled`, when known; the server checks it
    /// so a store restored from a backup (same epoch, other history) is noticed.
    pub const PULLED_OP: &str = "pulled_op";
    /// u64 LE: the server's mark of the op at seq `pulled`, when known (see
    /// `protocol::HeldAt`): unlike the op id, it changes when a restored
    /// server stores the same op at the same seq again over another history.
    pub const PULLED_MARK: &str = "pulled_mark";
    /// u64 LE: during a snapshot bootstrap, the mark of the op at its `as_of` seq.
    pub const SNAPSHOT_MARK: &str = "snapshot_mark";
    /// 16 bytes: during a snapshot bootstrap, the id of the op at its `as_of` seq.
    pub const SNAPSHOT_OP: &str = "snapshot_op";
    /// u64 LE: local ops above `pushed` that are neither acknowledged nor rejected.
    pub const PENDING: &str = "pending";
    /// UTF-8: the server epoch the watermarks refer to.
    pub const EPOCH: &str = "epoch";
    /// JSON `[as_of, next cursor]`: a snapshot bootstrap in progress.
    pub const SNAPSHOT: &str = "snapshot";
    /// u64 LE: after a server reset, the log position the re-push has reached
    /// (absent when no re-push is owed).
    pub const REPUSH_FROM: &str = "repush_from";
    /// u64 LE seq ++ u128 LE op id: the highest seq the server gave an op
    /// this replica pushed (its own, or another's in a re-push), and that op
    /// (absent before the first, and after a reset). A server behind it, or
    /// holding another op there, lost data.
    pub const ACKED: &str = "acked";
    /// u64 LE: bumped by every account switch (see `account.rs`).
    pub const GENERATION: &str = "generation";
    /// JSON `LastSync`.
    pub const LAST_SYNC: &str = "last_sync";
    /// Present (empty) from the first login of a store until a sync round
    /// completes with the snapshot downloaded: until then the store may lack
    /// records the server holds (see `Status::initial_sync`).
    pub const FIRST_SYNC: &str = "first_sync";
    /// u64 LE: the rules the CONFLICTED table was counted by (see `recount.rs`);
    /// absent on stores written before rules were numbered.
    pub const CONFLICT_RULES: &str = "conflict_rules";
    /// Present (empty) on a store brought from a format before 3, whose
    /// documents stored unloaded lack the [`UNLOADED`](super::UNLOADED) mark:
    /// there only documents in the cache take puts as intents.
    pub const UNMARKED_DOCS: &str = "unmarked_docs";
}

/// The store format version this build writes and reads. Format 2 added
/// [`DOC_TAILS`], format 3 [`INTENTS`]. An older store is brought to 3 when
/// opened (the tables are created, nothing is rewritten), and an older build
/// refuses the result, which it would read without documents' tails or
/// without the puts still waiting as intents.
pub const FORMAT_VERSION: u64 = 3;

/// The first byte of a [`DOCS`] value that holds a document never loaded here.
pub const UNLOADED: u8 = 0;

/// Whether a [`DOCS`] value holds a document this replica loaded or made.
pub(crate) fn loaded_here(value: &[u8]) -> bool {
    value.first() != Some(&UNLOADED)
}

/// The bytes of a record's stored document: its [`DOCS`] value (without the
/// [`UNLOADED`] mark) followed by its [`DOC_TAILS`] value. None when the
/// record has no document.
pub(crate) fn stored_doc(
    docs: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    tails: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    key: (&str, &str),
) -> Result<Option<Vec<u8>>, redb::StorageError> {
    let Some(doc) = docs.get(key)? else {
        return Ok(None);
    };
    let value = doc.value();
    let mut bytes = value.strip_prefix(&[UNLOADED]).unwrap_or(value).to_vec();
    if let Some(tail) = tails.get(key)? {
        bytes.extend_from_slice(tail.value());
    }
    Ok(Some(bytes))
}

/// Opens every table of the store in `txn` (all but META), which creates the
/// missing ones in a write transaction and fails on a missing one in a read
/// transaction: the one list that creating a store and checking that it is
/// ready share.
macro_rules! open_every_table {
    ($txn:expr) => {{
        use $crate::replica::tables as t;
        $txn.open_table(t::LOG)?;
        $txn.open_table(t::OP_INDEX)?;
        $txn.open_table(t::DOCS)?;
        $txn.open_table(t::DOC_TAILS)?;
        $txn.open_table(t::VIEW)?;
        $txn.open_table(t::CONFLICTED)?;
        $txn.open_table(t::REJECTED)?;
        $txn.open_table(t::DISCARDED)?;
        $txn.open_table(t::CONFIRMED)?;
        $txn.open_table(t::ACKS)?;
        $txn.open_table(t::INTENTS)?;
    }};
}
pub(crate) use open_every_table;
