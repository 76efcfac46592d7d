//! Bulk import: 100k 5-field records through `Replica::apply_edits` (2000 per batch)
//! into a durable file store, side by side with its raw parts:
//!
//! - `automerge_create_encode`: a bare automerge doc with the 5 fields, committed,
//!   its change encoded (single-threaded, naive);
//! - `redb_durable_1000_row_txn`: bare redb, durable 1000-row transactions;
//!
//! and two attribution rows:
//!
//! - `recorddoc_pipeline`: what `apply_edits` does per record without storage
//!   (RecordDoc new + put + commit + materialized JSON row), single-threaded;
//! - `redb_only_100k_tidemark_rows`: the exact rows the import writes (log, op index,
//!   docs, view), precomputed, written with redb alone in the same 50 durable transactions.
//!
//! Also prints the store size per record after a 100k import.
//!
//! `cargo bench --bench import`

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ScalarValue};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use redb::{Database, TableDefinition};
use serde_json::Value;
use tidemark::record::RecordDoc;
use tidemark::replica::LogEntry;
use tidemark::{ActorId, Collection, Op, OpId, RecordId, Replica};

/// Records per run (a hundredth in quick mode, see `common::quick`).
fn records() -> usize {
    common::scaled(100_000)
}
const BATCH: usize = 2000;
const RAW_ROWS: usize = 1000;

const RAW: TableDefinition<u64, &[u8]> = TableDefinition::new("raw");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log_v1");
const OP_INDEX: TableDefinition<u128, u64> = TableDefinition::new("op_index_v1");
const DOCS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("docs_v1");
const VIEW: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("view_v1");

/// One record as the import stores it: (id, log entry, document, view row).
type Row = (String, Vec<u8>, Vec<u8>, Vec<u8>);

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn bench_import(c: &mut Criterion) {
    let batches = common::batches(records(), BATCH);
    let mut group = c.benchmark_group("import");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));

    // The target: 100k records per iteration, a fresh durable file store each time.
    group.throughput(Throughput::Elements(records() as u64));
    let mut size_reported = false;
    group.bench_function("replica_apply_edits_100k_batch2000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("import.db");
                let mut replica = Replica::open(&path).unwrap();
                let input = batches.clone();
                let start = Instant::now();
                for edits in input {
                    replica.apply_edits(edits).unwrap();
                }
                total += start.elapsed();
                if !size_reported {
                    size_reported = true;
                    let raw = file_size(&path);
                    replica.compact().unwrap();
                    let compacted = file_size(&path);
                    eprintln!(
                        "\nstore size after {} records: {raw} bytes = {:.0} B/record \
                         (after compact(): {compacted} bytes = {:.0} B/record)",
                        records(),
                        raw as f64 / records() as f64,
                        compacted as f64 / records() as f64
                    );
                }
            }
            total
        })
    });

    // Attribution: the same rows, precomputed, through redb alone (same tables, same
    // concurrency mode as the replica, 50 durable transactions of 2000 records).
    let actor = ActorId([7; 16]);
    let collection = Collection::new(common::COLLECTION).unwrap();
    let rows: Vec<Row> = (0..records())
        .map(|i| {
            let mut doc = RecordDoc::new(actor);
            doc.put(common::COLLECTION, &common::fields(i), None).unwrap();
            let change = doc.commit(1_700_000_000_000).unwrap();
            let view = serde_json::to_vec(&doc.fields()).unwrap();
            let op = Op {
                id: OpId::new(),
                actor,
                collection: collection.clone(),
                record: RecordId::new(common::id(i)).unwrap(),
                time_ms: 1_700_000_000_000,
                change: change.clone(),
            };
            (common::id(i), LogEntry::Local(op).encode(), change, view)
        })
        .collect();
    let (log_bytes, doc_bytes, view_bytes) = rows
        .iter()
        .fold((0, 0, 0), |(l, d, v), r| (l + r.1.len(), d + r.2.len(), v + r.3.len()));
    eprintln!(
        "\nper-record payload: log entry {} B, doc {} B, view row {} B",
        log_bytes / records(),
        doc_bytes / records(),
        view_bytes / records()
    );
    group.bench_function("redb_only_100k_tidemark_rows", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let mut builder = Database::builder();
                builder.set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
                let db = builder.create(dir.path().join("raw.db")).unwrap();
                let start = Instant::now();
                for (n, chunk) in rows.chunks(BATCH).enumerate() {
                    let txn = db.begin_write().unwrap();
                    {
                        let mut log = txn.open_table(LOG).unwrap();
                        let mut index = txn.open_table(OP_INDEX).unwrap();
                        let mut docs = txn.open_table(DOCS).unwrap();
                        let mut view = txn.open_table(VIEW).unwrap();
                        for (k, (id, entry, doc, row)) in chunk.iter().enumerate() {
                            let pos = (n * BATCH + k + 1) as u64;
                            log.insert(pos, entry.as_slice()).unwrap();
                            index.insert((1u128 << 100) | u128::from(pos), pos).unwrap();
                            docs.insert((common::COLLECTION, id.as_str()), doc.as_slice()).unwrap();
                            view.insert((common::COLLECTION, id.as_str()), row.as_slice()).unwrap();
                        }
                    }
                    txn.commit().unwrap();
                }
                total += start.elapsed();
            }
            total
        })
    });
    drop(rows);

    // Raw part: automerge alone, per record: new doc, 5 puts, commit, encode the change.
    group.sampling_mode(SamplingMode::Auto);
    group.throughput(Throughput::Elements(BATCH as u64));
    let records: Vec<_> = (0..BATCH).map(common::fields).collect();
    let am_actor = automerge::ActorId::from([7u8; 16]);
    group.bench_function("automerge_create_encode", |b| {
        b.iter(|| {
            for fields in &records {
                let mut doc = AutoCommit::new().with_actor(am_actor.clone());
                for (name, value) in fields {
                    let scalar = match value {
                        Value::String(s) => ScalarValue::Str(s.as_str().into()),
                        Value::Bool(v) => ScalarValue::Boolean(*v),
                        Value::Number(n) => ScalarValue::Int(n.as_i64().unwrap()),
                        _ => unreachable!(),
                    };
                    doc.put(ROOT, name.as_str(), scalar).unwrap();
                }
                doc.commit();
                let change = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
                black_box(change);
            }
        })
    });

    // Attribution: the per-record automerge work of apply_edits, without storage.
    group.bench_function("recorddoc_pipeline", |b| {
        b.iter(|| {
            for fields in &records {
                let mut doc = RecordDoc::new(actor);
                doc.put(common::COLLECTION, fields, None).unwrap();
                let change = doc.commit(1_700_000_000_000).unwrap();
                let row = (!doc.is_deleted() && !doc.is_empty()).then(|| serde_json::to_vec(&doc.fields()).unwrap());
                black_box((change, row));
            }
        })
    });

    // Raw part: redb alone, durable transactions of 1000 rows (u64 → 256 bytes).
    group.throughput(Throughput::Elements(RAW_ROWS as u64));
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(dir.path().join("raw.db")).unwrap();
    let value = [0x5a_u8; 256];
    let mut next = 0u64;
    group.bench_function("redb_durable_1000_row_txn", |b| {
        b.iter(|| {
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(RAW).unwrap();
                for _ in 0..RAW_ROWS {
                    table.insert(next, value.as_slice()).unwrap();
                    next += 1;
                }
            }
            txn.commit().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench_import);
criterion_main!(benches);
