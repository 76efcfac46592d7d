//! The reference merge the convergence test compares every view with: plain
//! automerge over every op, materialized here without tidemark's code.

use std::collections::BTreeMap;

use automerge::{AutoCommit, Change, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde_json::Value as Json;
use tidemark::{Op, Replica};

use super::ops_of;

/// Merges every op of every replica's log per record with plain automerge
/// (one `apply_changes` call per record) and materializes the rows here.
pub fn reference_view(replicas: &[Replica]) -> Vec<(String, String, Vec<u8>)> {
    reference_docs(replicas)
        .into_iter()
        .filter_map(|((collection, id), doc)| reference_row(&doc).map(|row| (collection, id, row)))
        .collect()
}

/// Per record, the fields that hold more than one value (concurrent writes
/// automerge keeps side by side), by plain automerge: a field `conflicts()`
/// lists must be one of them.
pub fn multi_valued_fields(replicas: &[Replica]) -> BTreeMap<(String, String), Vec<String>> {
    reference_docs(replicas)
        .into_iter()
        .map(|(key, doc)| {
            let fields = doc
                .keys(ROOT)
                .filter(|field| doc.get_all(ROOT, field.as_str()).unwrap().len() > 1)
                .collect();
            (key, fields)
        })
        .collect()
}

/// Per visible record, the fields that hold several different scalar values
/// in plain automerge's merge: `conflicts()` must list each of them (the lower
/// bound of what it lists; equal values, texts and counters follow rules of
/// their own and are left out here).
pub fn differing_register_fields(replicas: &[Replica]) -> BTreeMap<(String, String), Vec<String>> {
    reference_docs(replicas)
        .into_iter()
        .filter(|(_, doc)| reference_row(doc).is_some())
        .map(|(key, doc)| {
            let fields = doc
                .keys(ROOT)
                .filter(|field| !field.starts_with('_'))
                .filter(|field| {
                    let values = doc.get_all(ROOT, field.as_str()).unwrap();
                    let scalars: Vec<_> = values
                        .iter()
                        .filter_map(|(v, _)| match v {
                            Value::Scalar(s) if !matches!(s.as_ref(), ScalarValue::Counter(_)) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                    scalars.len() == values.len() && scalars.len() > 1 && scalars.iter().any(|s| s != &scalars[0])
                })
                .collect();
            (key, fields)
        })
        .filter(|(_, fields): &(_, Vec<String>)| !fields.is_empty())
        .collect()
}

/// Every record's document, merged by plain automerge from every op of every log.
fn reference_docs(replicas: &[Replica]) -> BTreeMap<(String, String), AutoCommit> {
    let mut ops: BTreeMap<u128, Op> = BTreeMap::new();
    for r in replicas {
        for op in ops_of(r) {
            ops.entry(op.id.as_u128()).or_insert(op);
        }
    }
    let mut groups: BTreeMap<(String, String), Vec<Vec<u8>>> = BTreeMap::new();
    for op in ops.into_values() {
        groups
            .entry((op.collection.as_str().to_string(), op.record.as_str().to_string()))
            .or_default()
            .push(op.change);
    }
    let mut docs = BTreeMap::new();
    for ((collection, id), changes) in groups {
        let changes: Vec<Change> = changes
            .iter()
            .map(|bytes| Change::try_from(&bytes[..]).expect("logged change bytes decode"))
            .collect();
        let mut doc = AutoCommit::new();
        doc.apply_changes(changes)
            .expect("automerge applies the logged changes");
        assert!(
            doc.get_missing_deps(&[]).is_empty(),
            "{collection}/{id}: the ops of all logs are not causally complete"
        );
        docs.insert((collection, id), doc);
    }
    docs
}

fn reference_row(doc: &AutoCommit) -> Option<Vec<u8>> {
    // A record exists once anything was written to it, even if every field was removed since.
    if doc.stats().num_changes == 0 {
        return None;
    }
    let keys: Vec<String> = doc.keys(ROOT).collect();
    // A delete wins over concurrent edits, a concurrent undelete included: any
    // concurrent `true` among the tombstone's values hides the record.
    for (value, _) in doc.get_all(ROOT, "_deleted").unwrap() {
        match value {
            Value::Scalar(v) => match v.as_ref() {
                ScalarValue::Boolean(true) => return None,
                ScalarValue::Boolean(false) => {}
                other => panic!("_deleted holds {other:?}"),
            },
            other => panic!("_deleted holds {other:?}"),
        }
    }
    let mut row: BTreeMap<String, Json> = BTreeMap::new();
    for key in keys {
        if key.starts_with('_') {
            continue;
        }
        let (value, obj) = doc.get(ROOT, key.as_str()).unwrap().expect("a listed key has a value");
        let json = match value {
            Value::Object(ObjType::Text) => Json::String(doc.text(&obj).unwrap()),
            Value::Object(other) => panic!("field {key} holds a {other:?} object"),
            Value::Scalar(s) => match s.as_ref() {
                ScalarValue::Counter(c) => Json::from(i64::from(c)),
                ScalarValue::Int(i) => Json::from(*i),
                ScalarValue::Uint(u) => Json::from(*u),
                ScalarValue::F64(f) => Json::Number(serde_json::Number::from_f64(*f).expect("finite")),
                ScalarValue::Str(s) => Json::String(s.to_string()),
                ScalarValue::Boolean(b) => Json::Bool(*b),
                ScalarValue::Bytes(b) => serde_json::from_slice(b).expect("json fields hold JSON text"),
                other => panic!("field {key} holds an unexpected {other:?}"),
            },
        };
        row.insert(key, json);
    }
    Some(serde_json::to_vec(&row).unwrap())
}
