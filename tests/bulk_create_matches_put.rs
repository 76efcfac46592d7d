//! `RecordDoc::create` (the bulk-import path) gives the same change and view row as put-then-read-back.

mod common;
use serde_json::json;
use tidemark::record::{RecordDoc, decode_change};
use tidemark::{ActorId, Replica};

#[test]
fn create_matches_put_then_read_back() {
    let pkg = common::crm_package();
    let schema = pkg.collections.get("contacts");
    let cases = [
        (
            json!({"name": "Ada", "email": null, "age": 36.25, "vip": true, "born": "2026-11-26T15:04:05Z",
                "tags": {"b": [1, 2.5, "x", null], "a": 0.1}, "note": "héllo wörld ✓", "visits": 42}),
            true,
        ),
        (
            json!({"age": 1e300, "tags": [0.30000000000000004, -0.0, 1e-7], "visits": -3}),
            true,
        ),
        (json!({"age": 18446744073709551615u64, "note": ""}), true),
        (
            json!({"x": 1.5, "y": 18446744073709551615u64, "z": -9, "w": [1, {"k": null}], "s": "t"}),
            false,
        ),
        (
            json!({"name": "Person 3", "email": "person3@example.com", "n": 3, "vip": false, "city": "Gdansk"}),
            false,
        ),
        (json!({"x": null}), false),
    ];
    for (fields, with_schema) in cases {
        let fields = fields.as_object().unwrap().clone();
        let s = if with_schema { schema } else { None };
        let a = ActorId([1; 16]);
        let created = RecordDoc::create(a, "contacts", &fields, s).unwrap();
        let mut old = RecordDoc::new(a);
        old.put("contacts", &fields, s).unwrap();
        let old_change = old.commit(1);
        match created {
            None => assert!(old_change.is_none()),
            Some((mut doc, view)) => {
                let change = doc.commit(1).unwrap();
                assert_eq!(view, old.fields(), "{fields:?}");
                assert_eq!(
                    serde_json::to_vec(&view).unwrap(),
                    serde_json::to_vec(&old.fields()).unwrap()
                );
                decode_change(&change).expect("a canonical change");
                let back = RecordDoc::load(&change, ActorId([2; 16])).unwrap();
                assert_eq!(back.fields(), view);
                tidemark::record::validate_change(&change, a, "contacts", s).unwrap();
            }
        }
    }
}

#[test]
fn import_then_edit_converges() {
    let r = Replica::in_memory().unwrap();
    r.set_package(Some(&common::crm_package())).unwrap();
    let mut edits: Vec<_> = (0..100)
        .map(|i| {
            tidemark::replica::Edit::put(
                "contacts",
                &format!("c{i}"),
                json!({"name": format!("n{i}"), "note": "abc", "visits": i}),
            )
            .unwrap()
        })
        .collect();
    // A record with two edits in one batch, and one whose put is all nulls.
    edits.push(tidemark::replica::Edit::put("contacts", "c1", json!({"name": "again"})).unwrap());
    edits.push(tidemark::replica::Edit::put("contacts", "empty", json!({"name": null})).unwrap());
    let ids = r.apply_edits(edits).unwrap();
    assert!(ids[101].is_none());
    assert_eq!(r.get("contacts", "c1").unwrap().unwrap()["name"], "again");
    assert!(r.get("contacts", "empty").unwrap().is_none());
    r.splice_text("contacts", "c7", "note", 1, 1, "X").unwrap();
    r.increment("contacts", "c7", "visits", 5).unwrap();
    let f = r.get("contacts", "c7").unwrap().unwrap();
    assert_eq!(f["note"], "aXc");
    assert_eq!(f["visits"], 12);
    let b = Replica::in_memory().unwrap();
    b.set_package(Some(&common::crm_package())).unwrap();
    common::send(&r, &b);
    assert_eq!(r.view_rows().unwrap(), b.view_rows().unwrap());
}
