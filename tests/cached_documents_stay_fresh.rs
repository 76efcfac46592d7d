//! What a replica keeps in memory between edits is never served stale: merges,
//! other handles on a shared file and failed batches make the cache of edited
//! documents miss, and a new package applies to the very next edit.

mod common;
use serde_json::json;
use tidemark::Replica;
use tidemark::replica::Edit;

use common::{crm_package, send};

#[test]
fn a_merge_between_two_local_edits_is_kept() {
    let (a, b) = (Replica::in_memory().unwrap(), Replica::in_memory().unwrap());
    a.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    a.put("contacts", "c1", json!({"city": "Oslo"})).unwrap(); // now cached in a
    send(&a, &b);
    b.put("contacts", "c1", json!({"email": "ada@example.com"})).unwrap();
    send(&b, &a); // merged into a's stored document, not into the cached one
    a.put("contacts", "c1", json!({"city": "Bergen"})).unwrap();
    let row = a.get("contacts", "c1").unwrap().unwrap();
    assert_eq!(row["email"], "ada@example.com", "the merged edit was lost: {row:?}");
    assert_eq!(row["city"], "Bergen");
    send(&a, &b);
    assert_eq!(a.view_rows().unwrap(), b.view_rows().unwrap());
    a.rebuild_view().unwrap();
    assert_eq!(a.view_rows().unwrap(), b.view_rows().unwrap());
}

#[test]
fn an_edit_through_another_handle_on_a_shared_file_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let first = Replica::open_shared(&path).unwrap();
    let second = Replica::open_shared(&path).unwrap();
    first.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    first.put("contacts", "c1", json!({"age": 36})).unwrap(); // cached in `first`
    second
        .put("contacts", "c1", json!({"email": "ada@example.com"}))
        .unwrap();
    first.put("contacts", "c1", json!({"age": 37})).unwrap();
    let row = second.get("contacts", "c1").unwrap().unwrap();
    assert_eq!(
        row,
        json!({"name": "Ada", "age": 37, "email": "ada@example.com"})
            .as_object()
            .unwrap()
            .clone()
    );
    assert_eq!(first.status().unwrap().pending, 4);
}

#[test]
fn a_batch_that_fails_after_editing_a_cached_document_leaves_no_trace() {
    let r = Replica::in_memory().unwrap();
    r.set_package(Some(&crm_package())).unwrap();
    r.put("contacts", "c1", json!({"name": "Ada", "note": "hi"})).unwrap();
    r.put("contacts", "c1", json!({"visits": 1})).unwrap(); // cached
    // The put edits the cached document; the splice then fails (out of range), so the batch fails.
    let batch = vec![
        Edit::put("contacts", "c1", json!({"name": "NOT COMMITTED"})).unwrap(),
        Edit::Splice {
            collection: "contacts".into(),
            id: "c1".into(),
            field: "note".into(),
            pos: 99,
            del: 0,
            text: "x".into(),
        },
    ];
    assert!(r.apply_edits(batch).is_err());
    r.put("contacts", "c1", json!({"visits": 2})).unwrap();
    let row = r.get("contacts", "c1").unwrap().unwrap();
    assert_eq!(
        row["name"], "Ada",
        "an edit of a failed batch leaked into a later one: {row:?}"
    );
    assert_eq!(row["visits"], 2);
    let before = r.view_rows().unwrap();
    r.rebuild_view().unwrap();
    assert_eq!(r.view_rows().unwrap(), before);
}

#[test]
fn an_exclusive_store_refuses_a_second_handle_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("own.db");
    let _first = Replica::open(&path).unwrap();
    let err = Replica::open(&path).err().expect("a second exclusive handle");
    assert!(matches!(err, tidemark::Error::StoreInUse { .. }), "{err}");
    let err = Replica::open_shared(&path)
        .err()
        .expect("a shared handle beside an exclusive one");
    assert!(matches!(err, tidemark::Error::StoreInUse { .. }), "{err}");
    assert!(
        err.to_string().contains("open_shared"),
        "the message names the way out: {err}"
    );
}

/// Edits append their change to the stored document and save it whole every few
/// edits: a record edited many times, reopened in the middle of a run of appended
/// changes (a cold load of a saved document plus changes), edited again, reads the
/// same as its rebuilt view.
#[test]
fn a_record_edited_many_times_reloads_from_its_appended_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.db");
    let edit_a_while = |r: &Replica, from: i64, count: i64| {
        for i in from..from + count {
            r.put("contacts", "c1", json!({"age": i})).unwrap();
            r.increment("contacts", "c1", "visits", 1).unwrap();
            r.splice_text("contacts", "c1", "note", 0, 0, "x").unwrap();
        }
    };
    let mut edits = 0;
    for run in [1, 5, 21, 40] {
        let r = Replica::open(&path).unwrap();
        if edits == 0 {
            r.set_package(Some(&crm_package())).unwrap();
            r.put("contacts", "c1", json!({"name": "Ada", "note": ""})).unwrap();
        }
        edit_a_while(&r, edits, run);
        edits += run;
        let row = r.get("contacts", "c1").unwrap().unwrap();
        assert_eq!(row["age"], edits - 1);
        assert_eq!(row["visits"], edits);
        assert_eq!(row["note"], "x".repeat(edits as usize));
    }
    let r = Replica::open(&path).unwrap();
    let before = r.view_rows().unwrap();
    r.rebuild_view().unwrap();
    assert_eq!(r.view_rows().unwrap(), before);
}

fn package(age_type: &str) -> tidemark::model::Package {
    tidemark::model::Package::from_json(&format!(
        r#"{{"version": 1, "collections": {{"contacts": {{"fields": {{"name": "string", "age": "{age_type}"}}}}}}}}"#
    ))
    .unwrap()
}

#[test]
fn a_new_package_applies_to_the_next_edit() {
    let r = Replica::in_memory().unwrap();
    r.set_package(Some(&package("number"))).unwrap();
    r.put("contacts", "c1", json!({"age": 36})).unwrap(); // the parsed package is kept
    r.set_package(Some(&package("string"))).unwrap();
    let err = r.put("contacts", "c1", json!({"age": 37})).unwrap_err();
    assert!(err.to_string().contains("age"), "{err}");
    r.put("contacts", "c1", json!({"age": "37"})).unwrap();
    // Back to schemaless: any collection goes.
    r.put("notes", "n1", json!({"x": 1})).unwrap_err();
    r.set_package(None).unwrap();
    r.put("notes", "n1", json!({"x": 1})).unwrap();
    assert_eq!(r.get("contacts", "c1").unwrap().unwrap()["age"], json!("37"));
}

#[test]
fn a_package_set_through_another_handle_applies_to_the_next_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let first = Replica::open_shared(&path).unwrap();
    let second = Replica::open_shared(&path).unwrap();
    first.set_package(Some(&package("number"))).unwrap();
    first.put("contacts", "c1", json!({"age": 36})).unwrap();
    second.set_package(Some(&package("string"))).unwrap();
    first.put("contacts", "c1", json!({"age": 37})).unwrap_err();
    first.put("contacts", "c1", json!({"age": "37"})).unwrap();
    assert_eq!(second.get("contacts", "c1").unwrap().unwrap()["age"], json!("37"));
}

/// A field that became a counter (or text) in a newer package still holds the old
/// value in records written before: the error says so and how to convert it, and
/// the put it suggests works.
#[test]
fn an_increment_on_a_field_written_before_it_became_a_counter_says_how_to_convert_it() {
    let r = Replica::in_memory().unwrap();
    r.set_package(Some(&package("number"))).unwrap();
    r.put("contacts", "c1", json!({"age": 36})).unwrap();
    r.set_package(Some(&package("counter"))).unwrap();
    let err = r.increment("contacts", "c1", "age", 1).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("holds a number value"), "{msg}");
    assert!(msg.contains("put the field's value first"), "{msg}");
    assert_eq!(
        r.get("contacts", "c1").unwrap().unwrap()["age"],
        36,
        "the refused increment wrote"
    );
    r.put("contacts", "c1", json!({"age": 36})).unwrap();
    r.increment("contacts", "c1", "age", 1).unwrap();
    assert_eq!(r.get("contacts", "c1").unwrap().unwrap()["age"], 37);

    r.set_package(Some(&package("text"))).unwrap();
    let err = r.splice_text("contacts", "c1", "age", 0, 0, "x").unwrap_err();
    assert!(err.to_string().contains("holds a counter value"), "{err}");
}
