//! Merge behaviours the README states that surprise a reader, each shown as it
//! is: two replicas resetting one counter at once add up their resets, and a
//! write that resolves a conflict hides edits made concurrently to the objects
//! it replaces.

mod common;

use serde_json::json;
use tidemark::Replica;

use common::{crm_package, send};

fn replica() -> Replica {
    let r = Replica::in_memory().unwrap();
    r.set_package(Some(&crm_package())).unwrap();
    r
}

fn field(r: &Replica, name: &str) -> serde_json::Value {
    r.get("contacts", "c1").unwrap().unwrap()[name].clone()
}

#[test]
fn two_replicas_resetting_a_counter_at_once_add_up_their_resets() {
    let a = replica();
    let b = replica();
    a.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    a.increment("contacts", "c1", "visits", 10).unwrap();
    send(&a, &b);
    assert_eq!(field(&b, "visits"), json!(10));

    // Each sets 0, seeing 10: each adds -10.
    a.put("contacts", "c1", json!({"visits": 0})).unwrap();
    b.put("contacts", "c1", json!({"visits": 0})).unwrap();
    // An increment made meanwhile elsewhere is kept, not overwritten.
    let c = replica();
    send(&a, &c);
    c.increment("contacts", "c1", "visits", 3).unwrap();
    send(&b, &a);
    send(&c, &a);
    send(&a, &b);
    send(&a, &c);
    for r in [&a, &b, &c] {
        assert_eq!(field(r, "visits"), json!(-7), "10 - 10 - 10 + 3");
    }
}

#[test]
fn a_write_that_resolves_a_conflict_hides_edits_made_concurrently_to_what_it_replaces() {
    let a = replica();
    let b = replica();
    // Two replicas create the same record, each with its own note: two competing texts.
    a.put("contacts", "c1", json!({"note": "alpha"})).unwrap();
    b.put("contacts", "c1", json!({"note": "beta"})).unwrap();
    send(&a, &b);
    send(&b, &a);
    let listed = a.conflicts(Some("contacts"), Some("c1")).unwrap();
    assert!(
        listed.iter().flat_map(|c| &c.fields).any(|f| f.field == "note"),
        "the competing notes are listed: {listed:?}"
    );
    let shown = field(&b, "note");
    assert_eq!(shown, field(&a, "note"), "both show the same winner");

    // A resolves by writing the note again; B, unaware, edits the note it shows.
    a.put("contacts", "c1", json!({"note": "resolved"})).unwrap();
    b.splice_text("contacts", "c1", "note", 0, 0, "X").unwrap();
    assert_eq!(field(&b, "note"), json!(format!("X{}", shown.as_str().unwrap())));
    send(&a, &b);
    send(&b, &a);
    for r in [&a, &b] {
        assert_eq!(
            field(r, "note"),
            json!("resolved"),
            "the splice into the replaced text is hidden"
        );
    }
    assert_eq!(
        a.conflicts(Some("contacts"), Some("c1")).unwrap(),
        b.conflicts(Some("contacts"), Some("c1")).unwrap(),
        "both replicas list the same conflicts"
    );
}
