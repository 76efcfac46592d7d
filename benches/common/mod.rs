//! Shared by the benches: the 5-field contact record and a batched import.

#![allow(dead_code)]

use serde_json::{Map, Value, json};
use tidemark::Replica;
use tidemark::replica::Edit;

pub const COLLECTION: &str = "contacts";

const CITIES: [&str; 8] = ["Lisbon", "Oslo", "Lyon", "Turin", "Gdansk", "Leeds", "Porto", "Ghent"];

/// The id of record `i`: zero-padded so id order is numeric order.
pub fn id(i: usize) -> String {
    format!("r{i:07}")
}

/// The 5 fields of record `i` (the same shape as `benches/gen_import.py`).
pub fn fields(i: usize) -> Map<String, Value> {
    match json!({
        "name": format!("Person {i}"),
        "email": format!("person{i}@example.com"),
        "n": i,
        "vip": i % 7 == 0,
        "city": CITIES[i % CITIES.len()],
    }) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// Records `0..n` as put edits, `batch` per vector.
pub fn batches(n: usize, batch: usize) -> Vec<Vec<Edit>> {
    (0..n)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&i| Edit::Put {
                    collection: COLLECTION.into(),
                    id: id(i),
                    fields: fields(i),
                })
                .collect()
        })
        .collect()
}

/// Imports records `0..n` in batches of `batch`.
pub fn import(replica: &Replica, n: usize, batch: usize) {
    for edits in batches(n, batch) {
        replica.apply_edits(edits).expect("import batch");
    }
}

/// Whether the benches run in quick mode (`TIDEMARK_BENCH_QUICK=1`, set by
/// `.ci/run` with `cargo test --benches`): every bench runs once at small
/// sizes, so that one that no longer runs fails CI. Its figures mean nothing.
pub fn quick() -> bool {
    std::env::var("TIDEMARK_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// `full`, or a hundredth of it (at least 10) in quick mode.
pub fn scaled(full: usize) -> usize {
    if quick() { (full / 100).max(10) } else { full }
}
