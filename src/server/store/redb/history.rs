//! The history check of the redb store: every change of a space's log indexed
//! by record (its hash, and each actor's latest change), so a pushed change is
//! checked with point lookups, never a document load. Keys are plain bytes, so
//! a lookup compares them with one memcmp, and a record's entries sit together.

use ::redb::{ReadableTable, WriteTransaction};

use super::{read_u64, split_stored, tables};
use crate::model::Op;
use crate::record::ChangeHeader;
pub(super) use crate::server::store::history::Known;
use crate::server::store::history::{self, RecordHistory};
use crate::server::store::{OpRefusal, StoreResult};

type Table<'t, K, V> = ::redb::Table<'t, K, V>;

/// The history tables of one space inside an append's transaction.
pub(super) struct History<'t> {
    pub entries: Table<'t, &'static [u8], &'static [u8]>,
    pub quarantine: Table<'t, (u64, &'static str, &'static str), &'static [u8]>,
    pub space: u64,
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

/// One record's entries of the history table.
struct OneRecord<'a, 't> {
    entries: &'a Table<'t, &'static [u8], &'static [u8]>,
    key: Vec<u8>,
}

impl RecordHistory for OneRecord<'_, '_> {
    fn actor_last(&self, actor: &[u8]) -> StoreResult<Option<(u64, u64)>> {
        Ok(self
            .entries
            .get(entry_key(&self.key, ACTOR, actor).as_slice())?
            .map(|v| {
                let v = v.value();
                (
                    read_u64(v.get(..8).unwrap_or_default()),
                    read_u64(v.get(8..).unwrap_or_default()),
                )
            }))
    }

    fn change_max_op(&self, hash: &[u8; 32]) -> StoreResult<Option<u64>> {
        Ok(self
            .entries
            .get(entry_key(&self.key, CHANGE, hash).as_slice())?
            .map(|v| read_u64(v.value())))
    }
}

impl History<'_> {
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

    /// Whether `header` may join the history of (collection, record) (see
    /// [`history::check`]).
    pub fn check(
        &self,
        collection: &str,
        record: &str,
        header: &ChangeHeader,
    ) -> StoreResult<Result<Known, OpRefusal>> {
        let one = OneRecord {
            entries: &self.entries,
            key: record_key(self.space, collection, record),
        };
        history::check(&one, header)
    }

    /// Adds a change that [`History::check`] found new.
    pub fn record(&mut self, collection: &str, record: &str, header: &ChangeHeader) -> StoreResult<()> {
        let key = record_key(self.space, collection, record);
        let max_op = header.max_op.to_le_bytes();
        self.entries
            .insert(entry_key(&key, CHANGE, &header.hash).as_slice(), max_op.as_slice())?;
        let mut last = [0u8; 16];
        last[..8].copy_from_slice(&header.seq.to_le_bytes());
        last[8..].copy_from_slice(&max_op);
        self.entries
            .insert(entry_key(&key, ACTOR, &header.actor).as_slice(), last.as_slice())?;
        Ok(())
    }
}

/// Builds the history tables of a file of an older format from its log. A
/// change that does not decode, or that the history check refuses (it reuses an
/// (actor, seq) an earlier one holds, or misses dependencies), is left out: its
/// record will not materialize and is quarantined then.
pub(super) fn index_history(txn: &WriteTransaction) -> StoreResult<()> {
    let log = txn.open_table(tables::LOG)?;
    let mut history = History {
        entries: txn.open_table(tables::HISTORY)?,
        quarantine: txn.open_table(tables::QUARANTINE)?,
        space: 0,
    };
    for entry in log.iter()? {
        let (key, value) = entry?;
        let (space, seq) = key.value();
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
        history.space = space;
        let (collection, record) = (op.collection.as_str(), op.record.as_str());
        if let Ok(Known::New) = history.check(collection, record, &header)? {
            history.record(collection, record, &header)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ::redb::Database;

    use super::super::{RedbStore, meta, read_u64, tables};
    use crate::model::{ActorId, Collection, Op, OpId, RecordId, Seq};
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
        assert_eq!(answers[0], Ok(Seq(3)));
        assert!(
            matches!(answers[1], Err(OpRefusal::ActorReused { seq: 3, .. })),
            "{answers:?}"
        );
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
                named: Vec::new(),
            };
            new_op(vec![last], header)
        };
        let answers = store.append("crm", &[genesis(b'a'), genesis(b'b')]).unwrap();
        assert_eq!(answers, [Ok(Seq(1)), Ok(Seq(2))]);
    }
}
