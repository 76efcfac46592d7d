//! How a record's document is best stored, with automerge alone: loading it saved
//! whole against loading the same changes appended one after another, and what
//! saving it whole and freeing it cost, for histories from a few edits to
//! thousands. The edit path (`src/replica/edit.rs`) saves a document whole after
//! loading it from disk and appends changes while it stays cached, and the edit
//! cache (`src/replica/doc_cache.rs`) frees evicted documents outside its lock;
//! these figures are why.
//!
//! `cargo bench --bench doc_storage`

use std::hint::black_box;
use std::time::Duration;

use automerge::transaction::{CommitOptions, Transactable as _};
use automerge::{AutoCommit, ObjType, ROOT};
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};

/// A 5-field record after `edits` edits of two fields (`text`: one-character splices
/// into a note), with its changes appended one after another and saved whole.
fn record(edits: usize, text: bool) -> (Vec<u8>, Vec<u8>, AutoCommit) {
    let mut doc = AutoCommit::new();
    for (i, field) in ["name", "email", "city", "phone"].iter().enumerate() {
        doc.put(ROOT, *field, format!("value {i} of {field}")).unwrap();
    }
    let note = doc.put_object(ROOT, "note", ObjType::Text).unwrap();
    doc.commit();
    let mut appended = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
    for n in 0..edits {
        if text {
            doc.splice_text(&note, n, 0, "x").unwrap();
        } else {
            doc.put(ROOT, "n", n as i64).unwrap();
            doc.put(ROOT, "city", format!("city {n}")).unwrap();
        }
        doc.commit_with(CommitOptions::default().with_time(n as i64));
        appended.extend_from_slice(doc.get_last_local_change().unwrap().raw_bytes());
    }
    let saved = doc.save();
    (appended, saved, doc)
}

fn bench_doc_storage(c: &mut Criterion) {
    let mut group = c.benchmark_group("doc_storage");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (edits, text) in [(16, false), (1000, false), (1000, true)] {
        let label = format!("{edits}_{}", if text { "splices" } else { "edits" });
        let (appended, saved, doc) = record(edits, text);
        // Appended changes only up to 16: the edit path saves whole after that.
        if edits <= 16 {
            group.bench_with_input(BenchmarkId::new("load_appended", &label), &appended, |b, bytes| {
                b.iter(|| AutoCommit::load(black_box(bytes)).unwrap())
            });
        }
        group.bench_with_input(BenchmarkId::new("load_saved", &label), &saved, |b, bytes| {
            b.iter(|| AutoCommit::load(black_box(bytes)).unwrap())
        });
        // Freeing a loaded document (what evicting it from the edit cache costs).
        group.bench_with_input(BenchmarkId::new("free", &label), &saved, |b, bytes| {
            b.iter_batched(|| AutoCommit::load(bytes).unwrap(), drop, BatchSize::SmallInput)
        });
        // Each save after a fresh edit (a document may keep its last save).
        group.bench_function(BenchmarkId::new("save", &label), |b| {
            b.iter_batched(
                || {
                    let mut edited = doc.clone();
                    edited.put(ROOT, "n", -2).unwrap();
                    edited.commit();
                    edited
                },
                |mut edited| black_box(edited.save()),
                BatchSize::SmallInput,
            )
        });
        eprintln!(
            "{label}: {} bytes appended, {} bytes saved whole",
            appended.len(),
            saved.len()
        );
    }
    group.finish();
}

criterion_group!(benches, bench_doc_storage);
criterion_main!(benches);
