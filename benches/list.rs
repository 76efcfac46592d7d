//! Listing a 100k-record collection with `Replica::list_raw` in pages of 10k
//! (target ≥ 1M records/s), side by side with the same rows read by bare redb:
//! a separate database holding a copy of the view table, paged the same way
//! (one read transaction and one range per page, rows copied out).
//!
//! `cargo bench --bench list`

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redb::{Database, ReadableDatabase as _, TableDefinition};
use tidemark::Replica;

/// Records per run (a hundredth in quick mode, see `common::quick`).
fn records() -> usize {
    common::scaled(100_000)
}
/// Records per page (a hundredth in quick mode).
fn page() -> usize {
    common::scaled(10_000)
}

const VIEW: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("view_v1");

fn raw_page(
    db: &Database,
    collection: &str,
    after: Option<&str>,
    limit: usize,
) -> (Vec<(String, Vec<u8>)>, Option<String>) {
    let txn = db.begin_read().unwrap();
    let view = txn.open_table(VIEW).unwrap();
    let mut rows: Vec<(String, Vec<u8>)> = Vec::with_capacity(limit);
    for entry in view.range((collection, after.unwrap_or(""))..).unwrap() {
        let (key, value) = entry.unwrap();
        let (c, id) = key.value();
        if c != collection {
            break;
        }
        if after == Some(id) {
            continue;
        }
        if rows.len() == limit {
            let next = rows.last().map(|(id, _)| id.clone());
            return (rows, next);
        }
        rows.push((id.to_string(), value.value().to_vec()));
    }
    (rows, None)
}

fn bench_list(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(dir.path().join("list.db")).unwrap();
    common::import(&replica, records(), 2000);
    // Another collection after it, so the range has to stop at the collection's end.
    replica
        .put("contacts_z", "z", serde_json::json!({"name": "z"}))
        .unwrap();

    let raw = Database::create(dir.path().join("raw.db")).unwrap();
    {
        let txn = raw.begin_write().unwrap();
        {
            let mut view = txn.open_table(VIEW).unwrap();
            for (c, id, row) in replica.view_rows().unwrap() {
                view.insert((c.as_str(), id.as_str()), row.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    let mut group = c.benchmark_group("list");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(records() as u64));

    group.bench_function("replica_list_raw_100k_pages_10k", |b| {
        b.iter(|| {
            let mut after: Option<String> = None;
            let mut seen = 0;
            loop {
                let page = replica.list_raw(common::COLLECTION, after.as_deref(), page()).unwrap();
                seen += page.rows.len();
                black_box(&page.rows);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, records());
        })
    });

    group.bench_function("redb_range_100k_pages_10k", |b| {
        b.iter(|| {
            let mut after: Option<String> = None;
            let mut seen = 0;
            loop {
                let (rows, next) = raw_page(&raw, common::COLLECTION, after.as_deref(), page());
                seen += rows.len();
                black_box(&rows);
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, records());
        })
    });
    group.finish();
}

criterion_group!(benches, bench_list);
criterion_main!(benches);
