//! `RecordDoc::state` (the one-pass read every merge materializes with) agrees with
//! the slower reads it replaces: `fields`, `conflicts`, `is_deleted`, `is_empty`.

mod common;
use serde_json::json;
use tidemark::ActorId;
use tidemark::record::{Change, RecordDoc, decode_change};

/// The edit's changes: any genesis changes it applied, then its own.
fn change(doc: &mut RecordDoc, t: u64) -> Vec<Change> {
    let own = doc.commit(t).expect("the edit changed something");
    let mut all = doc.take_genesis();
    all.push(own);
    all.iter().map(|c| decode_change(c).unwrap()).collect()
}

fn assert_agrees(doc: &RecordDoc, what: &str) {
    let state = doc.state();
    assert_eq!(state.fields, doc.fields(), "{what}: fields");
    assert_eq!(
        state.conflicted_fields as usize,
        doc.conflicts().len(),
        "{what}: conflicts"
    );
    assert_eq!(state.deleted, doc.is_deleted(), "{what}: deleted");
    assert_eq!(state.empty, doc.is_empty(), "{what}: empty");
}

#[test]
fn one_pass_state_agrees_with_the_separate_reads() {
    let pkg = common::crm_package();
    let schema = pkg.collections.get("contacts");
    let fields = |v: serde_json::Value| v.as_object().unwrap().clone();
    let (a, b) = (ActorId([1; 16]), ActorId([2; 16]));

    let empty = RecordDoc::new(a);
    assert_agrees(&empty, "a new document");
    assert!(empty.state().empty);

    let mut base = RecordDoc::new(a);
    base.put(
        "contacts",
        &fields(
            json!({"name": "Ada", "age": 36.5, "vip": true, "tags": {"k": [1, null]}, "note": "héllo", "visits": 3}),
        ),
        schema,
    )
    .unwrap();
    let first = change(&mut base, 1);
    assert_agrees(&base, "one writer");

    // Two replicas edit the same fields concurrently: conflicts on name and age,
    // concurrent text splices and counter increments merge without conflict.
    let mut other = RecordDoc::new(b);
    other.apply_changes(first).unwrap();
    base.put("contacts", &fields(json!({"name": "Ada L", "age": 37})), schema)
        .unwrap();
    base.splice("note", 0, 0, "> ").unwrap();
    base.increment("visits", 2).unwrap();
    let from_a = change(&mut base, 2);
    other
        .put(
            "contacts",
            &fields(json!({"name": "Ada Lovelace", "age": 38, "email": "ada@example.com"})),
            schema,
        )
        .unwrap();
    other.splice("note", 5, 0, "!").unwrap();
    other.increment("visits", 5).unwrap();
    let from_b = change(&mut other, 3);
    base.apply_changes(from_b.clone()).unwrap();
    other.apply_changes(from_a).unwrap();
    for doc in [&base, &other] {
        assert_agrees(doc, "after concurrent edits");
        let state = doc.state();
        assert_eq!(state.conflicted_fields, 2, "name and age conflict: {state:?}");
        assert_eq!(state.fields["visits"], json!(10));
        assert_eq!(state.fields["note"], json!("> héllo!"));
    }
    assert_eq!(base.state(), other.state(), "both replicas read the same");

    // A delete concurrent with an edit: the tombstone wins; a later put undeletes.
    base.delete();
    let deleted = change(&mut base, 4);
    other.put("contacts", &fields(json!({"vip": false})), schema).unwrap();
    let edit = change(&mut other, 5);
    base.apply_changes(edit).unwrap();
    other.apply_changes(deleted).unwrap();
    for doc in [&base, &other] {
        assert_agrees(doc, "delete and edit");
        assert!(doc.state().deleted);
    }
    base.put("contacts", &fields(json!({"name": "back"})), schema).unwrap();
    change(&mut base, 6);
    assert_agrees(&base, "undeleted");
    assert!(!base.state().deleted);
}
