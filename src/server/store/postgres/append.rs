//! Appending ops on PostgreSQL: the space's row lock, the op-id check, the
//! history check and the log, in one transaction.
//!
//! The append takes the space row `FOR NO KEY UPDATE` before anything else, so
//! appends to one space run one after another across every process: each
//! sees the previous one's ops committed, numbers its own from the head it
//! read, and commits before the next takes the lock. Seqs are therefore
//! gap-free in commit order: a reader that sees seq n+1 sees seq n. A bare
//! sequence would not be: two transactions could take 5 and 6, 6 commit first,
//! and a reader at 6 would skip 5 forever.
//!
//! The batch costs a fixed number of round trips whatever its size: the
//! existing op ids and the history entries it names are read in one query
//! each, checked in memory, and written with one insert per table. The reads
//! join the batch's keys LATERAL, so each key is one index probe whatever the
//! planner thinks of the table's size.

use std::collections::{HashMap, HashSet};

use tokio_postgres::Transaction;

use super::NOTIFY_CHANNEL;
use super::db::Db;
use crate::model::{Op, Seq};
use crate::server::store::history::{self, Known, RecordHistory};
use crate::server::store::missing_space;
use crate::server::store::{NewOp, OpRefusal, StoreError, StoreResult};

type RecordKey = (String, String);

/// The history entries of the records a batch names, with the batch's own
/// changes added as they are accepted.
#[derive(Default)]
struct Histories {
    actors: HashMap<(RecordKey, Vec<u8>), (u64, u64)>,
    changes: HashMap<(RecordKey, [u8; 32]), u64>,
}

struct OneRecord<'a> {
    histories: &'a Histories,
    key: RecordKey,
}

impl RecordHistory for OneRecord<'_> {
    fn actor_last(&self, actor: &[u8]) -> StoreResult<Option<(u64, u64)>> {
        Ok(self.histories.actors.get(&(self.key.clone(), actor.to_vec())).copied())
    }

    fn change_max_op(&self, hash: &[u8; 32]) -> StoreResult<Option<u64>> {
        Ok(self.histories.changes.get(&(self.key.clone(), *hash)).copied())
    }
}

/// A change that joins its record's history.
struct NewChange {
    key: RecordKey,
    actor: Vec<u8>,
    hash: [u8; 32],
    max_op: u64,
}

/// The rows a batch adds.
#[derive(Default)]
struct Rows {
    seqs: Vec<i64>,
    op_ids: Vec<Vec<u8>>,
    users: Vec<String>,
    ops: Vec<Vec<u8>>,
    change_lens: Vec<i32>,
}

/// Appends `ops` to `space` inside `txn` (see `ServerStore::append`).
pub(super) async fn append(
    txn: &Db<'_, Transaction<'_>>,
    space: &str,
    ops: &[NewOp],
) -> StoreResult<Vec<Result<Seq, OpRefusal>>> {
    // NO KEY: the lock serializes appends without blocking the key-share locks
    // that foreign keys to the space take (storing documents, granting).
    let row = txn
        .query_opt(
            "SELECT id, head FROM tidemark_spaces WHERE name = $1 FOR NO KEY UPDATE",
            &[&space],
        )
        .await?
        .ok_or_else(|| missing_space(space))?;
    let (id, first_head): (i64, i64) = (row.get(0), row.get(1));
    if ops.is_empty() {
        return Ok(Vec::new());
    }

    let encoded: Vec<Vec<u8>> = ops.iter().map(|new| new.stored.op.encode()).collect();
    let op_ids: Vec<Vec<u8>> = ops
        .iter()
        .map(|new| new.stored.op.id.as_u128().to_be_bytes().to_vec())
        .collect();
    let mut known_ids: HashMap<Vec<u8>, (Seq, Vec<u8>)> = HashMap::new();
    for row in txn
        .query(
            "SELECT k.id, o.seq, o.op FROM unnest($2::bytea[]) AS k (id)
             JOIN LATERAL (SELECT seq, op FROM tidemark_ops WHERE space_id = $1 AND op_id = k.id) o ON true",
            &[&id, &op_ids],
        )
        .await?
    {
        let seq: i64 = row.get(1);
        known_ids.insert(row.get(0), (seq as Seq, row.get(2)));
    }

    let quarantine = quarantined_among(txn, id, ops).await?;
    let mut histories = read_histories(txn, id, ops).await?;

    let mut head = first_head as Seq;
    let mut rows = Rows::default();
    let mut new_changes: Vec<NewChange> = Vec::new();
    let mut results = Vec::with_capacity(ops.len());
    for ((new, op_bytes), op_id) in ops.iter().zip(&encoded).zip(&op_ids) {
        // Earlier ops of this batch are in `known_ids` too.
        if let Some((seq, existing)) = known_ids.get(op_id) {
            results.push(if existing == op_bytes {
                Ok(*seq)
            } else {
                Err(OpRefusal::OpIdConflict {
                    id: new.stored.op.id.to_string(),
                })
            });
            continue;
        }
        let op: &Op = &new.stored.op;
        let key: RecordKey = (op.collection.to_string(), op.record.to_string());
        if let Some(reason) = quarantine.get(&key) {
            results.push(Err(OpRefusal::BadHeader(format!(
                "record {}/{} is quarantined ({reason}): an operator must repair it first",
                key.0, key.1
            ))));
            continue;
        }
        let one = OneRecord {
            histories: &histories,
            key: key.clone(),
        };
        let known = match history::check(&one, &new.header)? {
            Ok(known) => known,
            Err(refusal) => {
                results.push(Err(refusal));
                continue;
            }
        };
        head += 1;
        if known == Known::New {
            let header = &new.header;
            histories
                .actors
                .insert((key.clone(), header.actor.clone()), (header.seq, header.max_op));
            histories.changes.insert((key.clone(), header.hash), header.max_op);
            new_changes.push(NewChange {
                key,
                actor: header.actor.clone(),
                hash: header.hash,
                max_op: header.max_op,
            });
        }
        known_ids.insert(op_id.clone(), (head, op_bytes.clone()));
        rows.seqs.push(to_i64(head)?);
        rows.op_ids.push(op_id.clone());
        rows.users.push(new.stored.user.clone());
        rows.ops.push(op_bytes.clone());
        rows.change_lens
            .push(i32::try_from(op.change.len()).unwrap_or(i32::MAX));
        results.push(Ok(head));
    }
    if rows.seqs.is_empty() {
        return Ok(results);
    }
    write_rows(txn, id, &rows).await?;
    write_history(txn, id, &histories, &new_changes).await?;
    let head = to_i64(head)?;
    txn.execute("UPDATE tidemark_spaces SET head = $2 WHERE id = $1", &[&id, &head])
        .await?;
    // Delivered to every listening process when (and only if) the transaction commits.
    txn.execute(
        "SELECT pg_notify($1, $2)",
        &[&NOTIFY_CHANNEL, &format!("{head} {space}")],
    )
    .await?;
    Ok(results)
}

pub(super) fn to_i64(seq: Seq) -> StoreResult<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Backend(format!("seq {seq} does not fit PostgreSQL's bigint")))
}

/// The quarantined records among those `ops` name.
async fn quarantined_among(
    txn: &Db<'_, Transaction<'_>>,
    id: i64,
    ops: &[NewOp],
) -> StoreResult<HashMap<RecordKey, String>> {
    let rows = txn
        .query(
            "SELECT collection, record, reason FROM tidemark_quarantine WHERE space_id = $1",
            &[&id],
        )
        .await?;
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let named: HashSet<RecordKey> = ops
        .iter()
        .map(|new| (new.stored.op.collection.to_string(), new.stored.op.record.to_string()))
        .collect();
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                (row.get::<_, String>(0), row.get::<_, String>(1)),
                row.get::<_, String>(2),
            )
        })
        .filter(|(key, _)| named.contains(key))
        .collect())
}

/// The history entries a batch's checks look up: the latest change of each
/// (record, actor) the batch writes as, and the changes it is or depends on.
async fn read_histories(txn: &Db<'_, Transaction<'_>>, id: i64, ops: &[NewOp]) -> StoreResult<Histories> {
    let mut actors: (Vec<String>, Vec<String>, Vec<Vec<u8>>) = Default::default();
    let mut seen = HashSet::new();
    let mut hashes: (Vec<String>, Vec<String>, Vec<Vec<u8>>) = Default::default();
    for new in ops {
        let (collection, record) = (new.stored.op.collection.to_string(), new.stored.op.record.to_string());
        if seen.insert((collection.clone(), record.clone(), new.header.actor.clone())) {
            actors.0.push(collection.clone());
            actors.1.push(record.clone());
            actors.2.push(new.header.actor.clone());
        }
        for hash in std::iter::once(&new.header.hash).chain(&new.header.deps) {
            hashes.0.push(collection.clone());
            hashes.1.push(record.clone());
            hashes.2.push(hash.to_vec());
        }
    }
    let mut histories = Histories::default();
    for row in txn
        .query(
            "SELECT r.collection, r.record, r.actor, a.seq, a.max_op
             FROM unnest($2::text[], $3::text[], $4::bytea[]) AS r (collection, record, actor)
             JOIN LATERAL (SELECT seq, max_op FROM tidemark_actors
                           WHERE space_id = $1 AND collection = r.collection AND record = r.record
                             AND actor = r.actor) a ON true",
            &[&id, &actors.0, &actors.1, &actors.2],
        )
        .await?
    {
        let (seq, max_op): (i64, i64) = (row.get(3), row.get(4));
        histories
            .actors
            .insert(((row.get(0), row.get(1)), row.get(2)), (seq as u64, max_op as u64));
    }
    for row in txn
        .query(
            "SELECT h.collection, h.record, h.hash, c.max_op
             FROM unnest($2::text[], $3::text[], $4::bytea[]) AS h (collection, record, hash)
             JOIN LATERAL (SELECT max_op FROM tidemark_changes
                           WHERE space_id = $1 AND collection = h.collection AND record = h.record
                             AND hash = h.hash) c ON true",
            &[&id, &hashes.0, &hashes.1, &hashes.2],
        )
        .await?
    {
        let hash: Vec<u8> = row.get(2);
        let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
            continue;
        };
        let max_op: i64 = row.get(3);
        histories
            .changes
            .insert(((row.get(0), row.get(1)), hash), max_op as u64);
    }
    Ok(histories)
}

async fn write_rows(txn: &Db<'_, Transaction<'_>>, id: i64, rows: &Rows) -> StoreResult<()> {
    txn.execute(
        "INSERT INTO tidemark_ops (space_id, seq, op_id, user_name, op, change_len, mark)
         SELECT $1, *, $7 FROM unnest($2::bigint[], $3::bytea[], $4::text[], $5::bytea[], $6::integer[])",
        &[
            &id,
            &rows.seqs,
            &rows.op_ids,
            &rows.users,
            &rows.ops,
            &rows.change_lens,
            &(crate::server::store::new_mark() as i64),
        ],
    )
    .await?;
    Ok(())
}

/// Writes the new changes, and each touched actor's latest change.
async fn write_history(
    txn: &Db<'_, Transaction<'_>>,
    id: i64,
    histories: &Histories,
    new_changes: &[NewChange],
) -> StoreResult<()> {
    if new_changes.is_empty() {
        return Ok(());
    }
    let collections: Vec<&str> = new_changes.iter().map(|c| c.key.0.as_str()).collect();
    let records: Vec<&str> = new_changes.iter().map(|c| c.key.1.as_str()).collect();
    let hashes: Vec<&[u8]> = new_changes.iter().map(|c| c.hash.as_slice()).collect();
    let max_ops: Vec<i64> = new_changes.iter().map(|c| c.max_op as i64).collect();
    txn.execute(
        "INSERT INTO tidemark_changes (space_id, collection, record, hash, max_op)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bigint[])
         ON CONFLICT DO NOTHING",
        &[&id, &collections, &records, &hashes, &max_ops],
    )
    .await?;
    // Each actor the batch wrote, once, with its latest change (kept in `histories`).
    let touched: HashSet<(&RecordKey, &Vec<u8>)> = new_changes.iter().map(|c| (&c.key, &c.actor)).collect();
    let latest: Vec<(&RecordKey, &Vec<u8>, (u64, u64))> = touched
        .into_iter()
        .filter_map(|(key, actor)| Some((key, actor, *histories.actors.get(&(key.clone(), actor.clone()))?)))
        .collect();
    let collections: Vec<&str> = latest.iter().map(|(key, _, _)| key.0.as_str()).collect();
    let records: Vec<&str> = latest.iter().map(|(key, _, _)| key.1.as_str()).collect();
    let actors: Vec<&[u8]> = latest.iter().map(|(_, actor, _)| actor.as_slice()).collect();
    let seqs: Vec<i64> = latest.iter().map(|(_, _, (seq, _))| *seq as i64).collect();
    let max_ops: Vec<i64> = latest.iter().map(|(_, _, (_, max_op))| *max_op as i64).collect();
    txn.execute(
        "INSERT INTO tidemark_actors (space_id, collection, record, actor, seq, max_op)
         SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bigint[], $6::bigint[])
         ON CONFLICT (space_id, collection, record, actor)
         DO UPDATE SET seq = excluded.seq, max_op = excluded.max_op",
        &[&id, &collections, &records, &actors, &seqs, &max_ops],
    )
    .await?;
    Ok(())
}
