//! The history check of the redb store: every change of a space's log indexed
//! by record (its hash, and each actor's latest change), so a pushed change is
//! checked with point lookups, never a document load. Keys are plain bytes, so
//! a lookup compares them with one memcmp, and a record's entries sit together.
//!
//! Pushes pass through the append transaction one at a time, so it only reads
//! the index: the entries of newly appended changes go to an in-memory
//! [`Tail`], and the materializer's next transaction writes them to the table
//! with a per-space watermark (`tables::HISTORY_THROUGH`). The index is derived
//! from the log, so opening a file indexes what the watermark does not cover
//! (what a crash took from memory).

use std::collections::{BTreeMap, HashMap};

use ::redb::{ReadableTable, WriteTransaction};

use super::{read_u64, split_stored, tables};
use crate::model::Op;
use crate::record::ChangeHeader;
use crate::server::store::{OpRefusal, StoreResult};

type Table<'t, K, V> = ::redb::Table<'t, K, V>;

/// History entries of committed appends that the table does not hold yet.
#[derive(Debug, Default)]
pub(super) struct Tail {
    entries: HashMap<Vec<u8>, Vec<u8>>,
    /// Space id → the highest seq whose entries are here.
    through: HashMap<u64, u64>,
    /// The file generation (`Handle::generation`) these entries were made against.
    pub generation: u64,
}

/// Entries past this many are written to the table by the append itself, so
/// the tail stays bounded while the materializer does not run.
pub(super) const TAIL_LIMIT: usize = 200_000;

/// The entries one append added, for [`Tail::absorb`] once it committed.
#[derive(Debug)]
pub(super) struct Added {
    space: u64,
    through: u64,
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Tail {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Takes in what a committed append added.
    pub fn absorb(&mut self, added: Added) {
        if added.entries.is_empty() {
            return;
        }
        self.entries.extend(added.entries);
        let through = self.through.entry(added.space).or_default();
        *through = (*through).max(added.through);
    }

    /// Writes every entry and the spaces' watermarks inside `txn`; the caller
    /// clears the tail once `txn` committed.
    pub fn flush_in(&self, txn: &WriteTransaction) -> StoreResult<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let mut table = txn.open_table(tables::HISTORY)?;
        for (key, value) in &self.entries {
            table.insert(key.as_slice(), value.as_slice())?;
        }
        let mut through = txn.open_table(tables::HISTORY_THROUGH)?;
        for (&space, &seq) in &self.through {
            through.insert(space, seq)?;
        }
        Ok(())
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.through.clear();
    }
}

/// The history of one space inside a write transaction. In an append, lookups
/// see this batch's entries, then the tail, then the table, and new entries
/// stay in memory; when indexing the log at open (`direct`), they go to the table.
pub(super) struct History<'t> {
    pub entries: Table<'t, &'static [u8], &'static [u8]>,
    pub quarantine: Table<'t, (u64, &'static str, &'static str), &'static [u8]>,
    pub space: u64,
    tail: Option<&'t Tail>,
    added: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Whether a change that may join a record's history is new to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    New,
    /// The identical change is stored already (a genesis change, or a copy under a new op id).
    Already,
}

/// `[space id u64 BE][collection len u8][collection][record id len u16 BE][record id]`:
/// the prefix of a record's history entries. Collection names and record ids
/// are far shorter than these lengths allow; a longer one is cut, which could
/// only make two such records share a history and refuse each other's changes.
pub(super) fn record_key(space: u64, collection: &str, record: &str) -> Vec<u8> {
    let (collection, record) = (collection.as_bytes(), record.as_bytes());
    let collection = &collection[..collection.len().min(u8::MAX as usize)];
    let record = &record[..record.len().min(u16::MAX as usize)];
    let mut key = Vec::with_capacity(8 + 1 + collection.len() + 2 + record.len() + 32);
    key.extend_from_slice(&space.to_be_bytes());
    key.push(collection.len() as u8);
    key.extend_from_slice(collection);
    key.extend_from_slice(&(record.len() as u16).to_be_bytes());
    key.extend_from_slice(record);
    key
}

/// The kinds of history entries (see `tables::HISTORY`).
const CHANGE: u8 = 1;
const ACTOR: u8 = 2;

/// `record key ++ [kind u8][len u16 BE][tail]`: an entry of one record's
/// history. A tail is a change hash or an automerge actor (a genesis actor
/// names its field: up to 273 bytes).
fn entry_key(record_key: &[u8], kind: u8, tail: &[u8]) -> Vec<u8> {
    let tail = &tail[..tail.len().min(u16::MAX as usize)];
    let mut key = Vec::with_capacity(record_key.len() + 3 + tail.len());
    key.extend_from_slice(record_key);
    key.push(kind);
    key.extend_from_slice(&(tail.len() as u16).to_be_bytes());
    key.extend_from_slice(tail);
    key
}

impl<'t> History<'t> {
    /// The history of `space` for an append: new entries are kept for the tail.
    pub fn for_append(txn: &'t WriteTransaction, space: u64, tail: &'t Tail) -> StoreResult<History<'t>> {
        Ok(History {
            entries: txn.open_table(tables::HISTORY)?,
            quarantine: txn.open_table(tables::QUARANTINE)?,
            space,
            tail: Some(tail),
            added: BTreeMap::new(),
        })
    }

    /// The history for indexing the log: new entries go to the table at once.
    fn direct(txn: &'t WriteTransaction) -> StoreResult<History<'t>> {
        Ok(History {
            entries: txn.open_table(tables::HISTORY)?,
            quarantine: txn.open_table(tables::QUARANTINE)?,
            space: 0,
            tail: None,
            added: BTreeMap::new(),
        })
    }

    /// What an append added, through its last seq `through`.
    pub fn into_added(self, through: u64) -> Added {
        Added {
            space: self.space,
            through,
            entries: self.added,
        }
    }

    fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        if let Some(value) = self.added.get(key) {
            return Ok(Some(value.clone()));
        }
        if let Some(value) = self.tail.and_then(|tail| tail.entries.get(key)) {
            return Ok(Some(value.clone()));
        }
        Ok(self.entries.get(key)?.map(|v| v.value().to_vec()))
    }

    fn put(&mut self, key: Vec<u8>, value: &[u8]) -> StoreResult<()> {
        if self.tail.is_some() {
            self.added.insert(key, value.to_vec());
        } else {
            self.entries.insert(key.as_slice(), value)?;
        }
        Ok(())
    }

    pub fn any_quarantined(&self) -> StoreResult<bool> {
        let id = self.space;
        Ok(self.quarantine.range((id, "", "")..(id + 1, "", ""))?.next().is_some())
    }

    pub fn quarantined(&self, collection: &str, record: &str) -> StoreResult<Option<String>> {
        Ok(self
            .quarantine
            .get((self.space, collection, record))?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// Whether `header` may join the history of (collection, record): `Ok(Err(_))`
    /// says why not. Point lookups only; no document is loaded.
    pub fn check(
        &self,
        collection: &str,
        record: &str,
        header: &ChangeHeader,
    ) -> StoreResult<Result<Known, OpRefusal>> {
        let key = record_key(self.space, collection, record);
        let actor = header.actor.as_slice();
        let (last_seq, last_max_op) = match self.get(&entry_key(&key, ACTOR, actor))? {
            Some(v) => (
                read_u64(v.get(..8).unwrap_or_default()),
                read_u64(v.get(8..).unwrap_or_default()),
            ),
            None => (0, 0),
        };
        if header.seq <= last_seq {
            // A change's hash covers its actor, seq, deps and ops: the same hash
            // in this record is the identical change.
            return Ok(if self.get(&entry_key(&key, CHANGE, &header.hash))?.is_some() {
                Ok(Known::Already)
            } else {
                Err(OpRefusal::ActorReused {
                    actor: hex::encode(actor),
                    seq: header.seq,
                })
            });
        }
        if header.seq != last_seq + 1 {
            return Ok(Err(OpRefusal::MissingDeps {
                missing: vec![format!(
                    "changes {}..{} of actor {}",
                    last_seq + 1,
                    header.seq.saturating_sub(1),
                    hex::encode(actor)
                )],
            }));
        }
        if header.start_op <= last_max_op {
            return Ok(Err(OpRefusal::BadHeader(format!(
                "the change's op counters start at {}, within those of its actor's earlier changes (up to {last_max_op})",
                header.start_op
            ))));
        }
        let mut missing = Vec::new();
        for dep in &header.deps {
            let dep_max_op = self.get(&entry_key(&key, CHANGE, dep))?.map(|v| read_u64(&v));
            match dep_max_op {
                None => missing.push(hex::encode(dep)),
                Some(max_op) if header.start_op <= max_op => {
                    return Ok(Err(OpRefusal::BadHeader(format!(
                        "the change's op counters start at {}, not after those of change {} it depends on (up to {max_op})",
                        header.start_op,
                        hex::encode(dep),
                    ))));
                }
                Some(_) => {}
            }
        }
        if !missing.is_empty() {
            return Ok(Err(OpRefusal::MissingDeps { missing }));
        }
        Ok(Ok(Known::New))
    }

    /// Adds a change that [`History::check`] found new.
    pub fn record(&mut self, collection: &str, record: &str, header: &ChangeHeader) -> StoreResult<()> {
        let key = record_key(self.space, collection, record);
        let max_op = header.max_op.to_le_bytes();
        self.put(entry_key(&key, CHANGE, &header.hash), max_op.as_slice())?;
        let mut last = [0u8; 16];
        last[..8].copy_from_slice(&header.seq.to_le_bytes());
        last[8..].copy_from_slice(&max_op);
        self.put(entry_key(&key, ACTOR, &header.actor), last.as_slice())
    }
}

/// Indexes the log of every space after its history watermark (all of it
/// where there is none: a file of an older format) and moves the watermarks to
/// the heads. A change that does not decode, or that the history check refuses
/// (it reuses an (actor, seq) an earlier one holds, or misses dependencies), is
/// left out: its record will not materialize and is quarantined then.
pub(super) fn index_log(txn: &WriteTransaction) -> StoreResult<()> {
    let heads: Vec<(u64, u64)> = txn
        .open_table(tables::HEADS)?
        .iter()?
        .map(|entry| entry.map(|(space, head)| (space.value(), head.value())))
        .collect::<Result<_, _>>()?;
    let log = txn.open_table(tables::LOG)?;
    let mut through = txn.open_table(tables::HISTORY_THROUGH)?;
    let mut history = History::direct(txn)?;
    for (space, head) in heads {
        let from = through.get(space)?.map(|v| v.value()).unwrap_or(0);
        if from >= head {
            continue;
        }
        history.space = space;
        for entry in log.range((space, from + 1)..=(space, head))? {
            let (key, value) = entry?;
            let seq = key.value().1;
            let Some((_, op)) = split_stored(value.value()) else {
                continue;
            };
            let Ok(op) = Op::decode(op) else { continue };
            let Ok(header) = crate::record::stored_change_header(&op.change) else {
                tracing::warn!(
                    space,
                    seq,
                    "a stored op's change does not decode; left out of the history index"
                );
                continue;
            };
            let (collection, record) = (op.collection.as_str(), op.record.as_str());
            if let Ok(Known::New) = history.check(collection, record, &header)? {
                history.record(collection, record, &header)?;
            }
        }
        through.insert(space, head)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ::redb::{Database, ReadableTableMetadata};

    use super::super::{RedbStore, meta, read_u64, tables};
    use crate::model::{ActorId, Collection, Op, OpId, RecordId};
    use crate::record::{ChangeHeader, Fields, RecordDoc, stored_change_header};
    use crate::server::store::{NewOp, OpRefusal, ServerStore, StoredOp};

    /// An op of contacts/c1 holding `change`, with `header` for the history check.
    fn new_op(change: Vec<u8>, header: ChangeHeader) -> NewOp {
        let op = Op {
            id: OpId::new(),
            actor: ActorId([9; 16]),
            collection: Collection::new("contacts").unwrap(),
            record: RecordId::new("c1").unwrap(),
            time_ms: 1,
            change,
        };
        NewOp {
            stored: StoredOp { op, user: "ada".into() },
            header,
        }
    }

    /// An op of a real change, with the header read from it.
    fn op_of(change: Vec<u8>) -> NewOp {
        let header = stored_change_header(&change).unwrap();
        new_op(change, header)
    }

    fn put(doc: &mut RecordDoc, name: &str) -> Vec<u8> {
        let fields: Fields = serde_json::from_value(serde_json::json!({ "name": name })).unwrap();
        doc.put("contacts", &fields, None).unwrap();
        doc.commit(1).unwrap()
    }

    /// A file of format 2 keeps its history in other tables: opening it drops
    /// them and builds the history from the log, which then checks as before.
    #[test]
    fn an_older_file_gets_its_history_rebuilt_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut doc = RecordDoc::new(ActorId([9; 16]));
        let first = put(&mut doc, "Ada");
        let second = put(&mut doc, "Ada L");
        let mut twin = doc.fork_as(ActorId([9; 16]));
        let third = put(&mut doc, "Ada Lovelace");
        let file = {
            let store = RedbStore::open(dir.path()).unwrap();
            store.create_space("crm", None).unwrap();
            let stored = store.append("crm", &[op_of(first), op_of(second)]).unwrap();
            assert!(stored.iter().all(Result::is_ok), "{stored:?}");
            store.path().unwrap().to_path_buf()
        };
        {
            let db = Database::open(&file).unwrap();
            let txn = db.begin_write().unwrap();
            txn.delete_table(tables::HISTORY).unwrap();
            txn.open_table(tables::OLD_CHANGES)
                .unwrap()
                .insert(b"junk".as_slice(), b"".as_slice())
                .unwrap();
            txn.open_table(tables::META)
                .unwrap()
                .insert(meta::FORMAT, 2u64.to_le_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = RedbStore::open(dir.path()).unwrap();
        store
            .read(|txn| {
                let format = txn
                    .open_table(tables::META)
                    .unwrap()
                    .get(meta::FORMAT)
                    .unwrap()
                    .unwrap();
                assert_eq!(read_u64(format.value()), tables::FORMAT_VERSION);
                assert!(txn.open_table(tables::OLD_CHANGES).is_err(), "the old table is gone");
                Ok(())
            })
            .unwrap();
        // The next change of the actor is taken; another third change by the
        // same actor (a copied store) is refused as a reused change number.
        let other = put(&mut twin, "Augusta");
        let answers = store.append("crm", &[op_of(third), op_of(other)]).unwrap();
        assert_eq!(answers[0], Ok(3));
        assert!(
            matches!(answers[1], Err(OpRefusal::ActorReused { seq: 3, .. })),
            "{answers:?}"
        );
    }

    fn history_through(store: &RedbStore) -> (u64, usize) {
        store
            .read(|txn| {
                let through = txn
                    .open_table(tables::HISTORY_THROUGH)?
                    .get(1)?
                    .map(|v| v.value())
                    .unwrap_or(0);
                Ok((through, txn.open_table(tables::HISTORY)?.len()? as usize))
            })
            .unwrap()
    }

    /// Appends keep new history entries in memory; a process that ends before
    /// they reach the table loses nothing: opening the file indexes the log
    /// after the watermark, and the checks hold as before.
    #[test]
    fn history_kept_in_memory_is_rebuilt_from_the_log_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let mut doc = RecordDoc::new(ActorId([9; 16]));
        let first = put(&mut doc, "Ada");
        let mut twin = doc.fork_as(ActorId([9; 16]));
        let second = put(&mut doc, "Ada L");
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store.create_space("crm", None).unwrap();
            let stored = store.append("crm", &[op_of(first), op_of(second)]).unwrap();
            assert_eq!(stored, [Ok(1), Ok(2)]);
            assert_eq!(history_through(&store), (0, 0), "the entries are in memory only");
            // Dropped without a flush: what a crash leaves.
        }
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(history_through(&store).0, 2, "indexed at open");
        let reused = put(&mut twin, "Augusta");
        let answers = store.append("crm", &[op_of(reused)]).unwrap();
        assert!(
            matches!(answers[0], Err(OpRefusal::ActorReused { seq: 2, .. })),
            "{answers:?}"
        );
        let third = put(&mut doc, "Ada Lovelace");
        assert_eq!(store.append("crm", &[op_of(third)]).unwrap(), [Ok(3)]);
    }

    /// The materializer's transaction writes the tail and moves the watermark;
    /// checks then read the table.
    #[test]
    fn storing_documents_writes_the_history_tail_with_its_watermark() {
        let store = RedbStore::in_memory().unwrap();
        store.create_space("crm", None).unwrap();
        let mut doc = RecordDoc::new(ActorId([9; 16]));
        let first = put(&mut doc, "Ada");
        let mut twin = doc.fork_as(ActorId([9; 16]));
        assert_eq!(store.append("crm", &[op_of(first)]).unwrap(), [Ok(1)]);
        assert!(store.tail.lock().unwrap().len() > 0);
        store.store_docs("crm", &[], 1).unwrap();
        assert_eq!(store.tail.lock().unwrap().len(), 0);
        let (through, entries) = history_through(&store);
        assert_eq!(through, 1);
        assert!(entries >= 2, "a change entry and an actor entry");
        let second = put(&mut doc, "Ada L");
        let reused = put(&mut twin, "Augusta");
        let answers = store.append("crm", &[op_of(second), op_of(reused)]).unwrap();
        assert_eq!(answers[0], Ok(2));
        assert!(matches!(answers[1], Err(OpRefusal::ActorReused { .. })), "{answers:?}");
    }

    /// Genesis actors name their field (up to 273 bytes): two long field names
    /// that share a long prefix are two actors, not one reused.
    #[test]
    fn long_genesis_actors_that_share_a_prefix_are_distinct() {
        let store = RedbStore::in_memory().unwrap();
        store.create_space("crm", None).unwrap();
        let genesis = |last: u8| {
            let mut actor = b"tidemark-genesis".to_vec();
            actor.push(1);
            actor.extend(std::iter::repeat_n(b'f', 255));
            actor.push(last);
            let header = ChangeHeader {
                hash: [last; 32],
                actor,
                seq: 1,
                start_op: 1,
                max_op: 1,
                deps: Vec::new(),
            };
            new_op(vec![last], header)
        };
        let answers = store.append("crm", &[genesis(b'a'), genesis(b'b')]).unwrap();
        assert_eq!(answers, [Ok(1), Ok(2)]);
    }
}
