//! Every table of the server store, with its key/value layout. A layout change
//! means a new version suffix in the table name and a migration.

use ::redb::TableDefinition;

/// Metadata: key → value bytes. Keys are the constants in [`meta`].
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_v1");

/// Users: user name → nothing (the row is the user).
pub const USERS: TableDefinition<&str, ()> = TableDefinition::new("users_v1");

/// Tokens: token id → `[SHA-256 of the secret, 32 bytes][user name, UTF-8]`.
/// The secret itself is never stored.
pub const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens_v1");

/// Spaces: space name → space id (1, 2, 3… in creation order, never reused).
/// Every per-space table below is keyed by the id, so a log key is 16 fixed bytes.
pub const SPACES: TableDefinition<&str, u64> = TableDefinition::new("spaces_v1");

/// Packages: space id → JSON of the `Package`, or `null` for a schemaless space.
pub const PACKAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("packages_v1");

/// Heads: space id → the highest seq of the space's log (0 while empty).
pub const HEADS: TableDefinition<u64, u64> = TableDefinition::new("heads_v1");

/// Materialized: space id → the seq up to which [`DOCS`] reflects the log (0 at creation).
pub const MATERIALIZED: TableDefinition<u64, u64> = TableDefinition::new("materialized_v1");

/// Memberships: (space id, user name) → role: 1 = read-write, 2 = read-only.
pub const MEMBERS: TableDefinition<(u64, &str), u8> = TableDefinition::new("members_v1");

/// Op logs: (space id, seq) → `[user len u16 LE][user, UTF-8][Op::encode() bytes]`.
pub const LOG: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("log_v1");

/// Marks (see `ServerStore::mark`): (space id, first seq of an append) → the
/// append's mark. The mark of seq N is the entry at or before (space, N); a
/// log written before marks existed has none (mark 0).
pub const MARKS: TableDefinition<(u64, u64), u64> = TableDefinition::new("marks_v1");

/// Op-id index: (space id, op id as u128) → the op's seq in [`LOG`].
pub const OP_INDEX: TableDefinition<(u64, u128), u64> = TableDefinition::new("op_index_v1");

/// Materialized documents: (space id, collection, record id) → a saved automerge document.
pub const DOCS: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("docs_v1");

/// The rows of [`DOCS`]: same key → `Row::encode()` of that document, written and
/// removed with it. A document stored before rows existed has none.
pub const DOC_ROWS: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("doc_rows_v1");

/// Change history per record, in one table so that a record's entries sit
/// together: `record key ++ [kind u8][len u16 BE][bytes]` where the record key is
/// `[space id u64 BE][collection len u8][collection][record id len u16 BE][record id]`
/// (see `history::record_key`). Kind 1: a change hash → `[last op counter u64 LE]`;
/// every change of the log has one. Kind 2: an automerge actor → `[seq u64 LE]
/// [last op counter u64 LE]` of that actor's latest change in the record.
pub const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history_v2");

/// The history tables of formats 2 and 3, replaced by [`HISTORY`]: only named
/// here to be dropped, so their types do not matter.
pub const OLD_CHANGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("changes_v1");
pub const OLD_ACTOR_SEQS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("actor_seqs_v1");
pub const OLD_HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history_v1");

/// Quarantined records: (space id, collection, record id) → why, UTF-8.
pub const QUARANTINE: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("quarantine_v1");

/// Keys of [`META`] and the layout of their values.
pub mod meta {
    /// u64 LE: the layout version of the file ([`FORMAT_VERSION`](super::FORMAT_VERSION)).
    pub const FORMAT: &str = "format";
    /// UTF-8: a random UUID v4 made when the file is created; never changed.
    pub const EPOCH: &str = "epoch";
    /// u64 LE: the id the next created space gets.
    pub const NEXT_SPACE_ID: &str = "next_space_id";
}

/// The layout version this build writes and reads. Version 1 had no history
/// index, versions 2 and 3 other ones (3 cut long actors); opening such a file
/// builds [`HISTORY`] from the log.
pub const FORMAT_VERSION: u64 = 4;
