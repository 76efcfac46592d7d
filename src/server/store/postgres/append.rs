//! Appending ops on PostgreSQL: the op-id check, the history check and the
//! log, in one transaction, numbered under the space's row lock.
//!
//! Every write of an append happens while it holds the space row `FOR NO KEY
//! UPDATE`, so appends to one space write one after another across every
//! process: each numbers its ops from the head it finds under the lock and
//! commits before the next takes it. Seqs are therefore gap-free in commit
//! order: a reader that sees seq n+1 sees seq n. A bare sequence would not be:
//! two transactions could take 5 and 6, 6 commit first, and a reader at 6
//! would skip 5 forever.
//!
//! The reads come before the lock ([`Locking::Optimistic`]), so that the
//! lookups of one append overlap the writes of another. What they decided
//! still holds under the lock unless an append committed in between took one
//! of the same keys; the writes say so without another read: op rows insert
//! `ON CONFLICT DO NOTHING` on the op id, change rows on the hash, and each
//! actor's row moves only from the seq the reads saw. A write that falls
//! short, or a refusal decided before another append committed, rolls the
//! transaction back, and the append runs again with the lock taken first
//! ([`Locking::Locked`]).
//!
//! The batch costs a fixed number of round trips whatever its size: the
//! existing op ids and the history entries it names are read in one query
//! each, checked in memory, and written with one statement per table. The
//! reads join the batch's keys LATERAL with `LIMIT 1` (a lateral subquery
//! with a limit cannot become a hash join over the whole space), so each key
//! is one index probe whatever the planner thinks of the table's size.

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
    hash: [u8; 32],
    max_op: u64,
}

/// The rows a batch adds; an accepted op's seq is the head plus its place here.
#[derive(Default)]
struct Rows {
    op_ids: Vec<Vec<u8>>,
    users: Vec<String>,
    ops: Vec<Vec<u8>>,
    change_lens: Vec<i32>,
}

/// Where an op of the batch ends up.
#[derive(Clone, Copy)]
enum Slot {
    /// Stored already, at this seq.
    Stored(Seq),
    /// Added by this batch, as row `n` of `Rows`.
    Row(usize),
}

/// What a batch would do, decided from what the reads saw.
struct Plan {
    /// The records of the batch that were quarantined when read.
    quarantined: usize,
    slots: Vec<Result<Slot, OpRefusal>>,
    rows: Rows,
    new_changes: Vec<NewChange>,
    /// Each (record, actor) the batch writes as: its seq when read (0 if
    /// none), and its latest change after the batch.
    actors: HashMap<(RecordKey, Vec<u8>), ActorUpdate>,
}

struct ActorUpdate {
    read_seq: u64,
    seq: u64,
    max_op: u64,
}

impl Plan {
    fn refuses_any(&self) -> bool {
        self.slots.iter().any(Result::is_err)
    }

    fn results(self, head: Seq) -> Vec<Result<Seq, OpRefusal>> {
        self.slots
            .into_iter()
            .map(|slot| {
                slot.map(|slot| match slot {
                    Slot::Stored(seq) => seq,
                    Slot::Row(n) => head + n as u64 + 1,
                })
            })
            .collect()
    }
}

/// How an append meets the appends of other transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Locking {
    /// Read and check before the space lock, so that appends to one space
    /// overlap everything but their writes. The writes find out whether an
    /// append committed in between changed what was read (an op id, a change,
    /// an actor's latest change taken), and the append gives up if so.
    Optimistic,
    /// Take the space lock first: nothing changes what the append reads.
    Locked,
}

/// Appends `ops` to `space` inside `txn` (see `ServerStore::append`), or
/// `None` when an optimistic append met a conflicting one: the caller rolls
/// `txn` back and appends again, [`Locking::Locked`].
pub(super) async fn append(
    txn: &Db<'_, Transaction<'_>>,
    space: &str,
    ops: &[NewOp],
    locking: Locking,
    after_reads: impl AsyncFnOnce(),
) -> StoreResult<Option<Vec<Result<Seq, OpRefusal>>>> {
    let (id, read_head) = match locking {
        Locking::Locked => lock_space(txn, space).await?,
        Locking::Optimistic => {
            let row = txn
                .query_opt("SELECT id, head FROM tidemark_spaces WHERE name = $1", &[&space])
                .await?
                .ok_or_else(|| missing_space(space))?;
            (row.get::<_, i64>(0), row.get::<_, i64>(1))
        }
    };
    if ops.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let plan = plan(txn, id, ops).await?;
    if locking == Locking::Optimistic {
        after_reads().await;
    }
    let head = match locking {
        Locking::Locked => read_head,
        Locking::Optimistic if plan.rows.op_ids.is_empty() => {
            // Nothing to write: ops stored already stay stored; a refusal is
            // current only if no append committed since the reads.
            if plan.refuses_any() && head_of(txn, id).await? != read_head {
                return Ok(None);
            }
            return Ok(Some(plan.results(Seq(read_head as u64))));
        }
        Locking::Optimistic => {
            let (_, head) = lock_space(txn, space).await?;
            if head != read_head && plan.refuses_any() {
                return Ok(None);
            }
            // A quarantine does not move the head: look again under the lock.
            if quarantined_among(txn, id, ops).await?.len() != plan.quarantined {
                return Ok(None);
            }
            head
        }
    };
    if plan.rows.op_ids.is_empty() {
        return Ok(Some(plan.results(Seq(head as u64))));
    }
    let wrote = write_rows(txn, id, head, &plan.rows).await?
        && write_changes(txn, id, &plan.new_changes).await?
        && write_actors(txn, id, &plan.actors).await?;
    if !wrote {
        return match locking {
            Locking::Optimistic => Ok(None),
            Locking::Locked => Err(StoreError::Backend(format!(
                "space {space}: the op log and its history index disagree (a write under the space lock met a row its reads did not see)"
            ))),
        };
    }
    let new_head = to_i64(Seq(head as u64) + plan.rows.op_ids.len() as u64)?;
    txn.execute("UPDATE tidemark_spaces SET head = $2 WHERE id = $1", &[&id, &new_head])
        .await?;
    // Delivered to every listening process when (and only if) the transaction commits.
    txn.execute(
        "SELECT pg_notify($1, $2)",
        &[&NOTIFY_CHANNEL, &format!("{new_head} {space}")],
    )
    .await?;
    Ok(Some(plan.results(Seq(head as u64))))
}

/// Takes the space's row lock: its id and head.
async fn lock_space(txn: &Db<'_, Transaction<'_>>, space: &str) -> StoreResult<(i64, i64)> {
    // NO KEY: the lock serializes appends without blocking the key-share locks
    // that foreign keys to the space take (storing documents, granting).
    let row = txn
        .query_opt(
            "SELECT id, head FROM tidemark_spaces WHERE name = $1 FOR NO KEY UPDATE",
            &[&space],
        )
        .await?
        .ok_or_else(|| missing_space(space))?;
    Ok((row.get(0), row.get(1)))
}

async fn head_of(txn: &Db<'_, Transaction<'_>>, id: i64) -> StoreResult<i64> {
    Ok(txn
        .query_opt("SELECT head FROM tidemark_spaces WHERE id = $1", &[&id])
        .await?
        .map_or(0, |row| row.get(0)))
}

/// Reads what the batch's checks need and decides each op.
async fn plan(txn: &Db<'_, Transaction<'_>>, id: i64, ops: &[NewOp]) -> StoreResult<Plan> {
    let encoded: Vec<Vec<u8>> = ops.iter().map(|new| new.stored.op.encode()).collect();
    let op_ids: Vec<Vec<u8>> = ops
        .iter()
        .map(|new| new.stored.op.id.as_u128().to_be_bytes().to_vec())
        .collect();
    let mut known_ids: HashMap<Vec<u8>, (Slot, Vec<u8>)> = HashMap::new();
    for row in txn
        .query(
            "SELECT k.id, o.seq, o.op FROM unnest($2::bytea[]) AS k (id)
             JOIN LATERAL (SELECT seq, op FROM tidemark_ops WHERE space_id = $1 AND op_id = k.id LIMIT 1) o ON true",
            &[&id, &op_ids],
        )
        .await?
    {
        let seq: i64 = row.get(1);
        known_ids.insert(row.get(0), (Slot::Stored(Seq(seq as u64)), row.get(2)));
    }
    let quarantine = quarantined_among(txn, id, ops).await?;
    let mut histories = read_histories(txn, id, ops).await?;

    let mut plan = Plan {
        quarantined: quarantine.len(),
        slots: Vec::with_capacity(ops.len()),
        rows: Rows::default(),
        new_changes: Vec::new(),
        actors: HashMap::new(),
    };
    for (new, (op_bytes, op_id)) in ops.iter().zip(encoded.into_iter().zip(op_ids)) {
        // Earlier ops of this batch are in `known_ids` too.
        if let Some((slot, existing)) = known_ids.get(&op_id) {
            plan.slots.push(if *existing == op_bytes {
                Ok(*slot)
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
            plan.slots.push(Err(OpRefusal::BadHeader(format!(
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
                plan.slots.push(Err(refusal));
                continue;
            }
        };
        if known == Known::New {
            let header = &new.header;
            let actor_key = (key.clone(), header.actor.clone());
            let read_seq = histories.actors.get(&actor_key).map_or(0, |(seq, _)| *seq);
            plan.actors
                .entry(actor_key.clone())
                .or_insert(ActorUpdate {
                    read_seq,
                    seq: 0,
                    max_op: 0,
                })
                .update(header.seq, header.max_op);
            histories.actors.insert(actor_key, (header.seq, header.max_op));
            histories.changes.insert((key.clone(), header.hash), header.max_op);
            plan.new_changes.push(NewChange {
                key,
                hash: header.hash,
                max_op: header.max_op,
            });
        }
        let row = plan.rows.op_ids.len();
        known_ids.insert(op_id.clone(), (Slot::Row(row), op_bytes.clone()));
        plan.rows.op_ids.push(op_id);
        plan.rows.users.push(new.stored.user.clone());
        plan.rows
            .change_lens
            .push(i32::try_from(op.change.len()).unwrap_or(i32::MAX));
        plan.rows.ops.push(op_bytes);
        plan.slots.push(Ok(Slot::Row(row)));
    }
    Ok(plan)
}

impl ActorUpdate {
    fn update(&mut self, seq: u64, max_op: u64) {
        self.seq = seq;
        self.max_op = max_op;
    }
}

pub(super) fn to_i64(seq: Seq) -> StoreResult<i64> {
    i64::try_from(seq.0).map_err(|_| StoreError::Backend(format!("seq {seq} does not fit PostgreSQL's bigint")))
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
/// (record, actor) the batch writes as or names ops of, and the changes it is
/// or depends on.
async fn read_histories(txn: &Db<'_, Transaction<'_>>, id: i64, ops: &[NewOp]) -> StoreResult<Histories> {
    let mut actors: (Vec<String>, Vec<String>, Vec<Vec<u8>>) = Default::default();
    let mut seen = HashSet::new();
    let mut hashes: (Vec<String>, Vec<String>, Vec<Vec<u8>>) = Default::default();
    for new in ops {
        let (collection, record) = (new.stored.op.collection.to_string(), new.stored.op.record.to_string());
        let named = new.header.named.iter().map(|(actor, _)| actor);
        for actor in std::iter::once(&new.header.actor).chain(named) {
            if seen.insert((collection.clone(), record.clone(), actor.clone())) {
                actors.0.push(collection.clone());
                actors.1.push(record.clone());
                actors.2.push(actor.clone());
            }
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
                             AND actor = r.actor LIMIT 1) a ON true",
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
                             AND hash = h.hash LIMIT 1) c ON true",
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

/// Inserts the op rows, numbered from `head`; false if an op id is stored already.
async fn write_rows(txn: &Db<'_, Transaction<'_>>, id: i64, head: i64, rows: &Rows) -> StoreResult<bool> {
    let written = txn
        .execute(
            "INSERT INTO tidemark_ops (space_id, seq, op_id, user_name, op, change_len, mark)
             SELECT $1, $2 + n, id, u, op, len, $7
             FROM unnest($3::bytea[], $4::text[], $5::bytea[], $6::integer[]) WITH ORDINALITY AS r (id, u, op, len, n)
             ON CONFLICT (space_id, op_id) DO NOTHING",
            &[
                &id,
                &head,
                &rows.op_ids,
                &rows.users,
                &rows.ops,
                &rows.change_lens,
                &(crate::server::store::new_mark() as i64),
            ],
        )
        .await?;
    Ok(written == rows.op_ids.len() as u64)
}

/// Inserts the new changes; false if one is stored already.
async fn write_changes(txn: &Db<'_, Transaction<'_>>, id: i64, new_changes: &[NewChange]) -> StoreResult<bool> {
    if new_changes.is_empty() {
        return Ok(true);
    }
    let collections: Vec<&str> = new_changes.iter().map(|c| c.key.0.as_str()).collect();
    let records: Vec<&str> = new_changes.iter().map(|c| c.key.1.as_str()).collect();
    let hashes: Vec<&[u8]> = new_changes.iter().map(|c| c.hash.as_slice()).collect();
    let max_ops: Vec<i64> = new_changes.iter().map(|c| c.max_op as i64).collect();
    let written = txn
        .execute(
            "INSERT INTO tidemark_changes (space_id, collection, record, hash, max_op)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bigint[])
             ON CONFLICT DO NOTHING",
            &[&id, &collections, &records, &hashes, &max_ops],
        )
        .await?;
    Ok(written == new_changes.len() as u64)
}

/// Moves each actor the batch wrote to its latest change, only where the
/// actor's row still holds what the reads saw (no row when they saw none);
/// false if any other append moved one first.
async fn write_actors(
    txn: &Db<'_, Transaction<'_>>,
    id: i64,
    actors: &HashMap<(RecordKey, Vec<u8>), ActorUpdate>,
) -> StoreResult<bool> {
    if actors.is_empty() {
        return Ok(true);
    }
    let collections: Vec<&str> = actors.keys().map(|(key, _)| key.0.as_str()).collect();
    let records: Vec<&str> = actors.keys().map(|(key, _)| key.1.as_str()).collect();
    let actor_ids: Vec<&[u8]> = actors.keys().map(|(_, actor)| actor.as_slice()).collect();
    let read_seqs: Vec<i64> = actors.values().map(|a| a.read_seq as i64).collect();
    let seqs: Vec<i64> = actors.values().map(|a| a.seq as i64).collect();
    let max_ops: Vec<i64> = actors.values().map(|a| a.max_op as i64).collect();
    // Actor seqs start at 1: a read seq of 0 means no row.
    let written: i64 = txn
        .query_opt(
            "WITH input AS (
                 SELECT * FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bigint[])
                   AS i (collection, record, actor, read_seq, seq, max_op)
             ), inserted AS (
                 INSERT INTO tidemark_actors (space_id, collection, record, actor, seq, max_op)
                 SELECT $1, collection, record, actor, seq, max_op FROM input WHERE read_seq = 0
                 ON CONFLICT DO NOTHING
                 RETURNING 1
             ), updated AS (
                 UPDATE tidemark_actors a SET seq = i.seq, max_op = i.max_op
                 FROM input i
                 WHERE i.read_seq > 0 AND a.space_id = $1 AND a.collection = i.collection
                   AND a.record = i.record AND a.actor = i.actor AND a.seq = i.read_seq
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM inserted) + (SELECT count(*) FROM updated)",
            &[&id, &collections, &records, &actor_ids, &read_seqs, &seqs, &max_ops],
        )
        .await?
        .map_or(0, |row| row.get(0));
    Ok(written == actors.len() as i64)
}
