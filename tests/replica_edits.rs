//! Local edits through the replica's public API: puts, deletes and undeletes,
//! listing, batches as one transaction, and bad input refused with nothing written.

mod common;

use serde_json::json;
use tidemark::{Error, InvalidInput, Replica};

use common::replica_with_package;

#[test]
fn insert_update_delete_and_undelete() {
    let r = Replica::in_memory().unwrap();
    r.put("contacts", "c1", json!({"name": "Ada", "age": 36})).unwrap();
    r.put("contacts", "c1", json!({"age": 37, "email": "ada@example.com"}))
        .unwrap();
    assert_eq!(
        r.get("contacts", "c1").unwrap().unwrap(),
        json!({"name": "Ada", "age": 37, "email": "ada@example.com"})
            .as_object()
            .unwrap()
            .clone()
    );
    r.delete("contacts", "c1").unwrap();
    assert_eq!(r.get("contacts", "c1").unwrap(), None);
    assert!(r.list("contacts", None, 10).unwrap().is_empty());
    r.put("contacts", "c1", json!({"vip": true})).unwrap();
    let back = r.get("contacts", "c1").unwrap().unwrap();
    assert_eq!(back["name"], "Ada", "undelete brings the latest fields back");
    assert_eq!(back["vip"], true);
    assert_eq!(r.status().unwrap().pending, 4);
}

#[test]
fn null_removes_a_field() {
    let r = Replica::in_memory().unwrap();
    r.put("contacts", "c1", json!({"name": "Ada", "email": "a@x"})).unwrap();
    r.put("contacts", "c1", json!({"email": null})).unwrap();
    assert_eq!(
        r.get("contacts", "c1").unwrap().unwrap(),
        *json!({"name": "Ada"}).as_object().unwrap()
    );
}

#[test]
fn list_pages_in_id_order() {
    let r = Replica::in_memory().unwrap();
    for id in ["b", "a", "d", "c", "e"] {
        r.put("contacts", id, json!({"name": id})).unwrap();
    }
    r.put("accounts", "a", json!({"name": "other collection"})).unwrap();
    let first = r.list_raw("contacts", None, 2).unwrap();
    assert_eq!(
        first.rows.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let second = r.list_raw("contacts", first.next.as_deref(), 2).unwrap();
    assert_eq!(
        second.rows.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["c", "d"]
    );
    let third = r.list_raw("contacts", second.next.as_deref(), 2).unwrap();
    assert_eq!(third.rows.len(), 1);
    assert_eq!(third.next, None);
}

#[test]
fn a_list_page_of_zero_is_refused_rather_than_read_as_the_end() {
    let r = Replica::in_memory().unwrap();
    r.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    let err = r.list_raw("contacts", None, 0).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("at least 1"), "{err}");
    assert_eq!(r.list_raw("contacts", None, 1).unwrap().rows.len(), 1);
}

#[test]
fn a_batch_is_one_transaction() {
    use tidemark::replica::Edit;
    let r = replica_with_package();
    let good = Edit::put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    let bad = Edit::put("contacts", "c2", json!({"age": "old"})).unwrap();
    let err = r.apply_edits(vec![good.clone(), bad]).unwrap_err();
    assert!(err.to_string().contains("edit 2"), "{err}");
    assert_eq!(
        r.get("contacts", "c1").unwrap(),
        None,
        "nothing of a failed batch is written"
    );
    assert_eq!(r.status().unwrap().pending, 0);
    assert_eq!(r.apply_edits(vec![good]).unwrap().len(), 1);
}

fn assert_invalid(result: tidemark::Result<Option<tidemark::OpId>>, needle: &str) {
    match result {
        Err(Error::Invalid(e)) => assert!(e.to_string().contains(needle), "message {e:?} lacks {needle:?}"),
        other => panic!("expected an invalid-input error, got {other:?}"),
    }
}

#[test]
fn bad_input_gets_a_typed_error_and_writes_nothing() {
    let r = replica_with_package();
    assert_invalid(r.put("people", "c1", json!({"name": "x"})), "not in the package");
    assert_invalid(r.put("contacts", "c1", json!({"nick": "x"})), "known fields");
    assert_invalid(r.put("contacts", "c1", json!({"age": "x"})), "number");
    assert_invalid(r.put("contacts", "c1", json!({"born": "yesterday"})), "RFC 3339");
    assert_invalid(r.put("contacts", "c1", json!({"visits": 1.5})), "whole number");
    assert_invalid(r.put("contacts", "", json!({"name": "x"})), "empty");
    assert_invalid(r.put("contacts", &"x".repeat(257), json!({"name": "x"})), "257 bytes");
    assert_invalid(r.put("contacts", "a\u{7}b", json!({"name": "x"})), "control character");
    assert_invalid(r.put("contacts", "c1", json!(["not", "an", "object"])), "JSON object");
    assert_invalid(r.increment("contacts", "c1", "name", 1), "counter");
    assert_invalid(r.splice_text("contacts", "c1", "age", 0, 0, "x"), "text");
    let schemaless = Replica::in_memory().unwrap();
    assert_invalid(schemaless.put("contacts", "c1", json!({"_deleted": false})), "reserves");
    schemaless.put("contacts", "c1", json!({"note": "abc"})).unwrap();
    assert_invalid(schemaless.increment("contacts", "c2", "n", 1), "needs a package");
    assert_invalid(
        schemaless.splice_text("contacts", "c1", "note", 0, 0, "x"),
        "needs a package",
    );
    assert!(matches!(
        schemaless.splice_text("contacts", "c1", "note", 0, 0, "x"),
        Err(Error::Invalid(InvalidInput::Other(_)))
    ));
    assert!(r.view_rows().unwrap().is_empty());
    assert_eq!(r.status().unwrap().pending, 0);
    assert!(r.log_entries(tidemark::LogPos(0), 10).unwrap().is_empty());
}

#[test]
fn out_of_range_text_splice_is_refused() {
    let r = replica_with_package();
    r.put("contacts", "c1", json!({"note": "abc"})).unwrap();
    assert_invalid(r.splice_text("contacts", "c1", "note", 2, 5, ""), "outside");
    assert_invalid(r.splice_text("contacts", "c1", "note", 9, 0, "x"), "outside");
    assert_eq!(r.get("contacts", "c1").unwrap().unwrap()["note"], "abc");
}
