//! One durable edit (`Replica::put` on an existing record of a file store) side by
//! side with one bare redb durable commit of one small row on the same disk (a
//! separate redb database in the same tempdir). Target: edit ≤ 1.3× bare commit.
//!
//! `redb_commit_1row` uses redb's default concurrency mode; `redb_commit_1row_multiwriter`
//! uses the replica's (MultiWriter), to separate the mode's cost from tidemark's.
//!
//! `cargo bench --bench edit`

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use redb::{Database, ReadableTable as _, TableDefinition};
use serde_json::json;
use tidemark::Replica;

/// Existing records the edits rotate over, so no single document's history grows long.
const RECORDS: usize = 1000;

const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("rows");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log_v1");
const OP_INDEX: TableDefinition<u128, u64> = TableDefinition::new("op_index_v1");
const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("docs_v1");
const VIEW: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("view_v1");
const CONFLICTED: TableDefinition<(&str, &str), u32> = TableDefinition::new("conflicted_v1");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta_v1");

fn bare_commit(db: &Database, key: u64) {
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(ROWS).unwrap();
        table.insert(key, [0x5a_u8; 64].as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

/// The write set of one edit, with redb alone: read the document, then write the log
/// entry, op index, document, view row, conflict marker and the two counters.
fn tidemark_rows_commit(db: &Database, pos: u64, id: &str) {
    let txn = db.begin_write().unwrap();
    {
        let mut docs = txn.open_table(DOCS).unwrap();
        let old = docs.get((common::COLLECTION, id)).unwrap().map(|v| v.value().len());
        std::hint::black_box(old);
        docs.insert((common::COLLECTION, id), [0x11_u8; 400].as_slice())
            .unwrap();
        let mut view = txn.open_table(VIEW).unwrap();
        view.insert((common::COLLECTION, id), [0x22_u8; 100].as_slice())
            .unwrap();
        let mut conflicted = txn.open_table(CONFLICTED).unwrap();
        conflicted.remove((common::COLLECTION, id)).unwrap();
        let mut log = txn.open_table(LOG).unwrap();
        log.insert(pos, [0x33_u8; 250].as_slice()).unwrap();
        let mut index = txn.open_table(OP_INDEX).unwrap();
        index.insert((7u128 << 100) | u128::from(pos), pos).unwrap();
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("next_pos", (pos + 1).to_le_bytes().as_slice()).unwrap();
        meta.insert("pending", pos.to_le_bytes().as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

fn bench_edit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(dir.path().join("replica.db")).unwrap();
    common::import(&replica, RECORDS, 500);
    let ids: Vec<String> = (0..RECORDS).map(common::id).collect();
    let bare = Database::create(dir.path().join("bare.db")).unwrap();
    let mut builder = Database::builder();
    builder.set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
    let bare_mw = builder.create(dir.path().join("bare_mw.db")).unwrap();
    let mut builder = Database::builder();
    builder.set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
    let shaped = builder.create(dir.path().join("shaped_mw.db")).unwrap();
    let mut pos = 0u64;
    for k in 0..RECORDS as u64 {
        bare_commit(&bare, k);
        bare_commit(&bare_mw, k);
        pos += 1;
        tidemark_rows_commit(&shaped, pos, &ids[k as usize]);
    }

    let mut group = c.benchmark_group("durable_edit");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    let mut n = 0usize;
    group.bench_function("replica_put_existing", |b| {
        b.iter(|| {
            n += 1;
            let id = &ids[n % RECORDS];
            replica
                .put(common::COLLECTION, id, json!({"n": n, "city": "Bergen"}))
                .unwrap()
                .expect("the edit changes the record");
        })
    });

    let mut k = 0u64;
    group.bench_function("redb_commit_1row", |b| {
        b.iter(|| {
            k += 1;
            bare_commit(&bare, k % RECORDS as u64);
        })
    });

    let mut k = 0u64;
    group.bench_function("redb_commit_1row_multiwriter", |b| {
        b.iter(|| {
            k += 1;
            bare_commit(&bare_mw, k % RECORDS as u64);
        })
    });

    // Attribution: the same write set as the edit, redb alone, in the replica's mode.
    group.bench_function("redb_commit_tidemark_rows_multiwriter", |b| {
        b.iter(|| {
            pos += 1;
            tidemark_rows_commit(&shaped, pos, &ids[pos as usize % RECORDS]);
        })
    });
    group.finish();

    // The same four operations interleaved (edit, bare, bare multiwriter, rows alone, edit, …) so
    // they share one window of disk noise; medians and their ratios.
    let rounds = 300;
    let mut times: [Vec<Duration>; 4] = Default::default();
    for r in 0..rounds {
        let t = Instant::now();
        n += 1;
        replica
            .put(common::COLLECTION, &ids[n % RECORDS], json!({"n": n, "city": "Bergen"}))
            .unwrap();
        times[0].push(t.elapsed());
        let t = Instant::now();
        bare_commit(&bare, r % RECORDS as u64);
        times[1].push(t.elapsed());
        let t = Instant::now();
        bare_commit(&bare_mw, r % RECORDS as u64);
        times[2].push(t.elapsed());
        let t = Instant::now();
        pos += 1;
        tidemark_rows_commit(&shaped, pos, &ids[pos as usize % RECORDS]);
        times[3].push(t.elapsed());
    }
    let [edit, bare, bare_mw, shaped] = times.map(|mut v| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e6
    });
    eprintln!(
        "\ninterleaved medians over {rounds} rounds: replica put {edit:.0} µs, bare commit {bare:.0} µs, \
         bare multiwriter commit {bare_mw:.0} µs, the edit's rows alone (multiwriter) {shaped:.0} µs; \
         edit/bare = {:.2}×, edit/bare multiwriter = {:.2}×, edit/its rows alone = {:.2}×",
        edit / bare,
        edit / bare_mw,
        edit / shaped
    );
}

criterion_group!(benches, bench_edit);
criterion_main!(benches);
