//! One durable edit (`Replica::put` on an existing record of a file store) side by
//! side with one bare redb durable commit of one small row on the same disk (a
//! separate redb database in the same tempdir). Target: edit ≤ 1.3× bare commit.
//!
//! - `replica_put_existing`: the edits rotate over 1000 records, each edited once per
//!   1000 edits, so the in-memory document cache misses and every edit loads its
//!   document (the worst case).
//! - `replica_put_same_record`: one record edited again and again (a person typing
//!   into a form): the cached document is reused.
//! - `replica_put_shared`: as the first, on a store opened with `Sharing::Processes`
//!   (the CLI's mode), against `redb_commit_1row_multiwriter`, redb's cost of that mode.
//! - `replica_put_with_package`: as the first, on a store with a CRM-sized package
//!   (8 collections of 12 typed fields) that every edit is validated against.
//! - `redb_commit_tidemark_rows`: the rows one edit writes, by redb alone (attribution).
//! - `intent_rows_commit` (interleaved part only): the rows a put recorded as an
//!   intent writes (view row, intent, counters), by redb alone: what a put, which
//!   waits as an intent, is measured against.
//! - `redb_commit_four_tables`: one row in each of the four tables the issue asks every
//!   edit to cover (log, op index, document, view), by redb alone: the floor of that layout.
//!
//! - The parts alone: automerge making the same change on a document with the
//!   same history (`automerge_put`), then redb alone writing the edit's rows. The
//!   limit an edit built from these parts can reach, measured in the same loop.
//!
//! - After criterion, all of these interleaved in one loop, on the disk as it is and
//!   then with another writer keeping the disk busy (see `busy_disk`).
//!
//! `cargo bench --bench edit`

mod common;

use std::time::{Duration, Instant};

use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, ROOT, ScalarValue};
use criterion::{Criterion, criterion_group, criterion_main};
use redb::{Database, ReadableTable as _, TableDefinition};
use serde_json::json;
use tidemark::Replica;
use tidemark::model::Package;

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
/// entry, op index, document, view row, conflict marker and the two counters. With
/// `minimal`, only the four tables the issue asks every edit to cover (log, index,
/// document, view): the floor of any design on that table layout.
fn tidemark_rows_commit(db: &Database, pos: u64, id: &str, minimal: bool) {
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
        let mut log = txn.open_table(LOG).unwrap();
        log.insert(pos, [0x33_u8; 250].as_slice()).unwrap();
        let mut index = txn.open_table(OP_INDEX).unwrap();
        index.insert((7u128 << 100) | u128::from(pos), pos).unwrap();
        if !minimal {
            let mut conflicted = txn.open_table(CONFLICTED).unwrap();
            conflicted.remove((common::COLLECTION, id)).unwrap();
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("next_pos", (pos + 1).to_le_bytes().as_slice()).unwrap();
            meta.insert("pending", pos.to_le_bytes().as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
}

const INTENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("intents_v1");
const DOC_TAILS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("doc_tails_v1");

/// The write set of a put recorded as an intent, with redb alone: read the
/// view row, conflict marker and stored document (as the put does), then write
/// the view row, the intent and the two counters.
fn intent_rows_commit(db: &Database, pos: u64, id: &str) {
    let txn = db.begin_write().unwrap();
    {
        let key = (common::COLLECTION, id);
        let mut view = txn.open_table(VIEW).unwrap();
        std::hint::black_box(view.get(key).unwrap().map(|v| v.value().len()));
        std::hint::black_box(txn.open_table(CONFLICTED).unwrap().get(key).unwrap().is_some());
        std::hint::black_box(txn.open_table(DOCS).unwrap().get(key).unwrap().map(|v| v.value().len()));
        std::hint::black_box(
            txn.open_table(DOC_TAILS)
                .unwrap()
                .get(key)
                .unwrap()
                .map(|v| v.value().len()),
        );
        view.insert(key, [0x22_u8; 100].as_slice()).unwrap();
        let mut meta = txn.open_table(META).unwrap();
        meta.insert("next_pos", (pos + 1).to_le_bytes().as_slice()).unwrap();
        meta.insert("pending", pos.to_le_bytes().as_slice()).unwrap();
        txn.open_table(INTENTS)
            .unwrap()
            .insert(pos, [0x44_u8; 80].as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

/// The documents of the replica's records, rebuilt with automerge alone from
/// its log: the same histories the replica's edits work on.
fn documents_from_log(replica: &Replica) -> std::collections::HashMap<String, AutoCommit> {
    use tidemark::replica::LogEntry;
    let mut changes: std::collections::HashMap<String, Vec<automerge::Change>> = Default::default();
    let mut after = tidemark::model::LogPos::ZERO;
    loop {
        let page = replica.log_entries(after, 10_000).unwrap();
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, entry) in page {
            if let LogEntry::Local(op) | LogEntry::Pulled(op, _) = entry {
                let change = automerge::Change::try_from(op.change.as_slice()).unwrap();
                changes.entry(op.record.as_str().to_string()).or_default().push(change);
            }
        }
    }
    changes
        .into_iter()
        .map(|(id, changes)| {
            let mut doc = AutoCommit::new().with_actor(automerge::ActorId::from([9u8; 16]));
            doc.apply_changes(changes).unwrap();
            (id, doc)
        })
        .collect()
}

/// What automerge alone does for one put of `fields` on `doc`: the ops, the
/// commit, and the change's bytes (which the log stores).
fn automerge_put(doc: &mut AutoCommit, fields: &[(&str, ScalarValue)]) -> Vec<u8> {
    for (name, value) in fields {
        doc.put(ROOT, *name, value.clone()).unwrap();
    }
    doc.commit_with(automerge::transaction::CommitOptions::default().with_time(1));
    doc.get_last_local_change().unwrap().raw_bytes().to_vec()
}

/// A CRM-sized package: 8 collections of 12 fields of every type.
fn crm_package() -> Package {
    let fields = json!({
        "name": "string", "email": "string", "n": "number", "vip": "bool", "city": "string",
        "phone": "string", "notes": "text", "created": "datetime", "owner": "string",
        "stage": "string", "score": "counter", "extra": "json"
    });
    let collections: serde_json::Map<String, serde_json::Value> = [
        "contacts",
        "accounts",
        "activities",
        "notes",
        "deals",
        "tasks",
        "leads",
        "products",
    ]
    .iter()
    .map(|c| (c.to_string(), json!({ "fields": fields })))
    .collect();
    Package::from_json(&json!({"version": 1, "collections": collections}).to_string()).unwrap()
}

fn bench_edit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(dir.path().join("replica.db")).unwrap();
    common::import(&replica, RECORDS, 500);
    let packaged = Replica::open(dir.path().join("packaged.db")).unwrap();
    packaged.set_package(Some(&crm_package())).unwrap();
    common::import(&packaged, RECORDS, 500);

    let shared = Replica::open_shared(dir.path().join("shared.db")).unwrap();
    common::import(&shared, RECORDS, 500);
    let ids: Vec<String> = (0..RECORDS).map(common::id).collect();
    let bare = Database::create(dir.path().join("bare.db")).unwrap();
    let mut builder = Database::builder();
    builder.set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
    let bare_mw = builder.create(dir.path().join("bare_mw.db")).unwrap();
    let shaped = Database::create(dir.path().join("shaped.db")).unwrap();
    let minimal = Database::create(dir.path().join("minimal.db")).unwrap();
    let mut pos = 0u64;
    for k in 0..RECORDS as u64 {
        bare_commit(&bare, k);
        bare_commit(&bare_mw, k);
        pos += 1;
        tidemark_rows_commit(&shaped, pos, &ids[k as usize], false);
        tidemark_rows_commit(&minimal, pos, &ids[k as usize], true);
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

    group.bench_function("replica_put_with_package", |b| {
        b.iter(|| {
            n += 1;
            packaged
                .put(common::COLLECTION, &ids[n % RECORDS], json!({"n": n, "city": "Bergen"}))
                .unwrap()
                .expect("the edit changes the record");
        })
    });

    group.bench_function("replica_put_same_record", |b| {
        b.iter(|| {
            n += 1;
            replica
                .put(common::COLLECTION, &ids[7], json!({"n": n}))
                .unwrap()
                .expect("the edit changes the record");
        })
    });

    group.bench_function("replica_put_shared", |b| {
        b.iter(|| {
            n += 1;
            shared
                .put(common::COLLECTION, &ids[n % RECORDS], json!({"n": n, "city": "Bergen"}))
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
    group.bench_function("redb_commit_tidemark_rows", |b| {
        b.iter(|| {
            pos += 1;
            tidemark_rows_commit(&shaped, pos, &ids[pos as usize % RECORDS], false);
        })
    });
    group.bench_function("redb_commit_four_tables", |b| {
        b.iter(|| {
            pos += 1;
            tidemark_rows_commit(&minimal, pos, &ids[pos as usize % RECORDS], true);
        })
    });
    group.finish();

    // The parts alone, for the limit they set: automerge making the same change
    // on a document with the same history (the cached record's, kept in memory;
    // the rotating records', saved and loaded again as the replica does), then
    // redb alone writing the edit's rows. Both run in the same loop.
    let mut documents = documents_from_log(&replica);
    let mut saved: Vec<Vec<u8>> = ids.iter().map(|id| documents.get_mut(id).unwrap().save()).collect();
    let mut cached_doc = documents.remove(&ids[7]).unwrap();
    drop(documents);
    let parts_db = Database::create(dir.path().join("parts.db")).unwrap();
    // The operations interleaved (edit, bare, …, edit, …) so they share one window of
    // disk noise; medians and their ratios. Beside the wall time, the time the thread
    // spent on a CPU: the rest of an operation is waiting for the disk. Twice: on the
    // disk as it is, then with another writer keeping it busy (1 MiB writes, each
    // followed by fdatasync, in the same directory), which is where a durable commit
    // costs the 2–4 ms measured earlier on this kind of machine.
    let mut interleaved = |disk: &str| {
        let rounds = if common::quick() { 30 } else { 300 };
        let mut times: [Vec<Duration>; 12] = Default::default();
        let mut on_cpu = [Duration::ZERO; 12];
        let mut timed = |slot: usize, f: &mut dyn FnMut()| {
            let cpu = thread_cpu_time();
            let t = Instant::now();
            f();
            times[slot].push(t.elapsed());
            on_cpu[slot] += thread_cpu_time().saturating_sub(cpu);
        };
        for r in 0..rounds as u64 {
            n += 1;
            let [put, same, put_shared, bare_t, bare_mw_t, rows, put_pkg, four] = [0, 1, 2, 3, 4, 5, 6, 7];
            timed(put, &mut || {
                replica
                    .put(common::COLLECTION, &ids[n % RECORDS], json!({"n": n, "city": "Bergen"}))
                    .unwrap();
            });
            timed(put_pkg, &mut || {
                packaged
                    .put(common::COLLECTION, &ids[n % RECORDS], json!({"n": n, "city": "Bergen"}))
                    .unwrap();
            });
            drop(packaged.pending_ops(1).unwrap());
            timed(same, &mut || {
                replica.put(common::COLLECTION, &ids[7], json!({"n": n})).unwrap();
            });
            // Both puts on `replica` wait as intents: their changes are made by
            // the next read of the log, timed apart (the two changes, one of a
            // document loaded from the store, and a durable commit of their own),
            // so that the next round's puts do not pay for them.
            let (intent_rows, later) = (10, 11);
            timed(later, &mut || drop(replica.pending_ops(1).unwrap()));
            timed(intent_rows, &mut || intent_rows_commit(&shaped, pos + 1, &ids[7]));
            timed(put_shared, &mut || {
                shared
                    .put(common::COLLECTION, &ids[n % RECORDS], json!({"n": n, "city": "Bergen"}))
                    .unwrap();
            });
            timed(bare_t, &mut || bare_commit(&bare, r % RECORDS as u64));
            timed(bare_mw_t, &mut || bare_commit(&bare_mw, r % RECORDS as u64));
            pos += 1;
            timed(rows, &mut || {
                tidemark_rows_commit(&shaped, pos, &ids[pos as usize % RECORDS], false)
            });
            timed(four, &mut || {
                tidemark_rows_commit(&minimal, pos, &ids[pos as usize % RECORDS], true)
            });
            let (parts_cached, parts_uncached) = (8, 9);
            timed(parts_cached, &mut || {
                std::hint::black_box(automerge_put(&mut cached_doc, &[("n", ScalarValue::Int(n as i64))]));
                tidemark_rows_commit(&parts_db, pos, &ids[7], false);
            });
            timed(parts_uncached, &mut || {
                let slot = n % RECORDS;
                let mut doc = AutoCommit::load(&saved[slot])
                    .unwrap()
                    .with_actor(automerge::ActorId::from([9u8; 16]));
                let fields = [
                    ("n", ScalarValue::Int(n as i64)),
                    ("city", ScalarValue::Str("Bergen".into())),
                ];
                std::hint::black_box(automerge_put(&mut doc, &fields));
                saved[slot] = doc.save();
                tidemark_rows_commit(&parts_db, pos, &ids[slot], false);
            });
        }
        let [cpu_put, _, _, cpu_bare, _, cpu_rows, _, _, _, _, _, _] =
            on_cpu.map(|d| d.as_secs_f64() * 1e6 / rounds as f64);
        let [
            put,
            same,
            put_shared,
            bare,
            bare_mw,
            rows,
            put_pkg,
            four,
            parts_same,
            parts_put,
            intent_rows,
            later,
        ] = times.map(|mut v| {
            v.sort();
            v[v.len() / 2].as_secs_f64() * 1e6
        });
        eprintln!(
            "\n{disk}: interleaved medians over {rounds} rounds: put {put:.0} µs ({:.2}× bare commit {bare:.0} µs), \
             put of the same record {same:.0} µs ({:.2}×), put under a package {put_pkg:.0} µs ({:.2}×), \
             the edit's rows by redb alone {rows:.0} µs ({:.2}×), one row in each of log, index, document \
             and view by redb alone {four:.0} µs ({:.2}×); \
             shared store: put {put_shared:.0} µs ({:.2}× bare multiwriter commit {bare_mw:.0} µs, {:.2}× bare commit)",
            put / bare,
            same / bare,
            put_pkg / bare,
            rows / bare,
            four / bare,
            put_shared / bare_mw,
            put_shared / bare,
        );
        eprintln!(
            "{disk}: mean time on a CPU: put {cpu_put:.0} µs, bare commit {cpu_bare:.0} µs, the edit's rows by redb alone {cpu_rows:.0} µs"
        );
        // The restated target, in the form `benches/report` collects: each edit
        // against the rows it writes in its durable transaction, by redb alone.
        let disk_id = if disk.contains("busy") {
            "disk_busy"
        } else {
            "disk_as_is"
        };
        println!(
            "edit_durable/{disk_id}: cached {same:.0} µs = {:.2}× its rows by redb alone ({intent_rows:.0} µs: a put \
             recorded as an intent), uncached {put:.0} µs = {:.2}× the same rows ({intent_rows:.0} µs) and {:.2}× the rows \
             of an edit that makes its change ({rows:.0} µs: log entry, op index, document, view row, counters); both puts' changes made later {later:.0} µs \
             (a read of the log that makes them and commits), interleaved medians of {rounds} rounds",
            same / intent_rows,
            put / intent_rows,
            put / rows,
        );
        println!(
            "edit_parts/{disk_id}: cached {same:.0} µs = {:.2}× and uncached {put:.0} µs = {:.2}× an edit made of \
             its parts at once (automerge making the same change on a document with the same history, kept in \
             memory or loaded, then redb alone writing the edit's rows: {parts_same:.0} µs and {parts_put:.0} µs), \
             interleaved medians of {rounds} rounds",
            same / parts_same,
            put / parts_put,
        );
    };
    interleaved("disk as it is");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = busy_disk(dir.path().join("busy.bin"), stop.clone());
    interleaved("disk kept busy by another writer");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}

/// Another program writing to the same disk: 1 MiB at a time, each made durable,
/// over a 64 MiB file, until `stop`.
fn busy_disk(
    path: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use std::io::{Seek as _, Write as _};
    std::thread::spawn(move || {
        let mut file = std::fs::File::create(path).unwrap();
        let chunk = vec![0xa5_u8; 1 << 20];
        let mut written = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            file.write_all(&chunk).unwrap();
            file.sync_data().unwrap();
            written += 1;
            if written == 64 {
                file.rewind().unwrap();
                written = 0;
            }
        }
    })
}

/// CPU time of this thread so far (Linux; zero elsewhere, which only blanks the figure).
fn thread_cpu_time() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

criterion_group!(benches, bench_edit);
criterion_main!(benches);
