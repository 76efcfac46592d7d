//! Fields a record lacks: the first increment of a counter, or the first text of a
//! note, starts from a genesis change every replica derives identically, so that
//! concurrent first edits merge instead of conflicting (see `src/record/genesis.rs`).

mod common;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, ROOT, ScalarValue};
use serde_json::json;
use tidemark::record::{GENESIS_ACTOR, validate_change};
use tidemark::replica::{Edit, PulledOp, PulledPage};
use tidemark::{Error, OpId};

use common::{all_ops, crm_package, replica_with_package, send};

#[test]
fn first_increments_and_texts_of_fields_a_record_lacks_merge_instead_of_conflicting() {
    let a = replica_with_package();
    a.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    let b = replica_with_package();
    send(&a, &b);
    a.increment("contacts", "c1", "visits", 2).unwrap();
    b.increment("contacts", "c1", "visits", 5).unwrap();
    a.splice_text("contacts", "c1", "note", 0, 0, "abc").unwrap();
    b.put("contacts", "c1", json!({"note": "xyz"})).unwrap();
    // A record neither has seen, created by an increment on both.
    a.increment("contacts", "new", "visits", 1).unwrap();
    b.increment("contacts", "new", "visits", 1).unwrap();
    send(&a, &b);
    send(&b, &a);
    for r in [&a, &b] {
        let c1 = r.get("contacts", "c1").unwrap().unwrap();
        assert_eq!(c1["visits"], 7);
        let note = c1["note"].as_str().unwrap();
        assert!(note == "abcxyz" || note == "xyzabc", "{note}");
        assert_eq!(r.get("contacts", "new").unwrap().unwrap()["visits"], 2);
        assert!(r.conflicts(None, None).unwrap().is_empty());
        let before = r.view_rows().unwrap();
        r.rebuild_view().unwrap();
        assert_eq!(r.view_rows().unwrap(), before);
    }
    assert_eq!(a.view_rows().unwrap(), b.view_rows().unwrap());
    // The genesis change travels as an op of its own, before the edit's.
    let genesis: Vec<_> = all_ops(&a)
        .into_iter()
        .filter(|o| o.op.actor == GENESIS_ACTOR)
        .collect();
    assert_eq!(genesis.len(), 6, "c1.visits, c1.note and new.visits, from each replica");
    // A put concurrent with a first increment competes with the genesis counter.
    a.put("contacts", "c2", json!({"name": "Grace"})).unwrap();
    send(&a, &b);
    a.increment("contacts", "c2", "visits", 1).unwrap();
    b.put("contacts", "c2", json!({"visits": 40})).unwrap();
    send(&a, &b);
    send(&b, &a);
    let conflicts = a.conflicts(Some("contacts"), Some("c2")).unwrap();
    let mut actors: Vec<_> = conflicts[0].fields[0].values.iter().map(|v| v.actor.clone()).collect();
    actors.sort();
    let mut expected = vec![GENESIS_ACTOR.to_hex(), b.actor().unwrap().to_hex()];
    expected.sort();
    assert_eq!(actors, expected, "{conflicts:?}");
    assert_eq!(b.conflicts(None, None).unwrap(), conflicts);
    // A null resolves the conflict by removing the field. Incremented again, the
    // counter starts over as a value of its own: its genesis change is spent.
    a.put("contacts", "c2", json!({"visits": null})).unwrap();
    assert!(!a.get("contacts", "c2").unwrap().unwrap().contains_key("visits"));
    let ops = all_ops(&a).len();
    a.increment("contacts", "c2", "visits", 3).unwrap();
    assert_eq!(all_ops(&a).len(), ops + 1, "no second genesis op");
    assert_eq!(a.get("contacts", "c2").unwrap().unwrap()["visits"], 3);
    assert!(a.conflicts(None, None).unwrap().is_empty());
}

/// Clearing a counter or a text (a put of null) while another replica edits it,
/// perhaps for the first time, keeps that edit: the field is cleared in place, and
/// the concurrent edit lands in the same object.
#[test]
fn clearing_a_field_keeps_the_edits_made_concurrently_elsewhere() {
    let a = replica_with_package();
    a.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    a.put("contacts", "c2", json!({"name": "Grace", "visits": 10, "note": "old"}))
        .unwrap();
    let b = replica_with_package();
    send(&a, &b);
    // c1: a writes the first value and text, then clears them; b writes its first.
    a.increment("contacts", "c1", "visits", 2).unwrap();
    a.splice_text("contacts", "c1", "note", 0, 0, "hello").unwrap();
    a.put("contacts", "c1", json!({"visits": null, "note": null})).unwrap();
    b.increment("contacts", "c1", "visits", 5).unwrap();
    b.put("contacts", "c1", json!({"note": "important"})).unwrap();
    // c2: fields both have; a clears them, b edits them.
    a.put("contacts", "c2", json!({"visits": null, "note": null})).unwrap();
    b.increment("contacts", "c2", "visits", 3).unwrap();
    b.splice_text("contacts", "c2", "note", 3, 0, " but kept").unwrap();
    // One batch that increments, clears and increments again, against b's +7.
    a.apply_edits(vec![
        Edit::Increment {
            collection: "contacts".into(),
            id: "c3".into(),
            field: "visits".into(),
            by: 1,
        },
        Edit::put("contacts", "c3", json!({"visits": null})).unwrap(),
        Edit::Increment {
            collection: "contacts".into(),
            id: "c3".into(),
            field: "visits".into(),
            by: 4,
        },
    ])
    .unwrap();
    b.increment("contacts", "c3", "visits", 7).unwrap();
    send(&a, &b);
    send(&b, &a);
    for r in [&a, &b] {
        let c1 = r.get("contacts", "c1").unwrap().unwrap();
        assert_eq!((&c1["visits"], &c1["note"]), (&json!(5), &json!("important")));
        let c2 = r.get("contacts", "c2").unwrap().unwrap();
        assert_eq!((&c2["visits"], &c2["note"]), (&json!(3), &json!(" but kept")));
        assert_eq!(r.get("contacts", "c3").unwrap().unwrap()["visits"], 11);
        assert!(r.conflicts(None, None).unwrap().is_empty());
    }
    assert_eq!(a.view_rows().unwrap(), b.view_rows().unwrap());
    // Cleared alone, a counter shows 0 and a text is empty.
    a.put("contacts", "c2", json!({"visits": null, "note": null})).unwrap();
    let c2 = a.get("contacts", "c2").unwrap().unwrap();
    assert_eq!((&c2["visits"], &c2["note"]), (&json!(0), &json!("")));
}

/// Once the package says a field is no longer a counter or text, a null removes it
/// (a delete fits any type) rather than writing increments or splices that peers
/// would refuse under that package.
#[test]
fn a_null_on_a_field_whose_type_changed_removes_it_with_an_op_peers_accept() {
    let r = replica_with_package();
    r.increment("contacts", "c1", "visits", 4).unwrap();
    r.splice_text("contacts", "c1", "note", 0, 0, "hi").unwrap();
    let retyped = tidemark::Package::from_json(
        r#"{"version": 2, "collections": {"contacts": {"fields": {"visits": "number", "note": "string"}}}}"#,
    )
    .unwrap();
    r.set_package(Some(&retyped)).unwrap();
    r.put("contacts", "c1", json!({"visits": null, "note": null})).unwrap();
    assert_eq!(r.get("contacts", "c1").unwrap().unwrap(), serde_json::Map::new());
    let last = all_ops(&r).pop().unwrap().op;
    validate_change(
        &last.change,
        last.actor,
        "contacts",
        retyped.collections.get("contacts"),
    )
    .unwrap();
}

/// A change under the genesis automerge actor, but not the genesis change.
fn forged_genesis() -> Vec<u8> {
    let mut actor = GENESIS_ACTOR.0.to_vec();
    actor.extend_from_slice(b"cvisits");
    let mut doc = AutoCommit::new().with_actor(automerge::ActorId::from(actor));
    doc.put(ROOT, "visits", ScalarValue::counter(1000)).unwrap();
    doc.commit_with(CommitOptions::default().with_time(0));
    doc.get_last_local_change().unwrap().raw_bytes().to_vec()
}

#[test]
fn a_genesis_op_must_hold_exactly_the_genesis_change() {
    let a = replica_with_package();
    a.increment("contacts", "c1", "visits", 1).unwrap();
    let ops = all_ops(&a);
    let (genesis, own) = (&ops[0].op, &ops[1].op);
    assert_eq!(genesis.actor, GENESIS_ACTOR);
    let contacts = crm_package();
    let schema = contacts.collections.get("contacts");
    validate_change(&genesis.change, genesis.actor, "contacts", schema).unwrap();
    // The same change where the package declares the field as something else.
    let err = validate_change(
        &genesis.change,
        genesis.actor,
        "accounts",
        crm_package().collections.get("accounts"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("visits"), "{err}");
    for (change, why) in [
        (forged_genesis(), "other content under the genesis actor"),
        (own.change.clone(), "a replica's change claiming the genesis actor"),
    ] {
        let err = validate_change(&change, GENESIS_ACTOR, "contacts", schema).unwrap_err();
        assert!(err.to_string().contains("genesis"), "{why}: {err}");
    }

    // A replica refuses the same forgeries when they are pulled, and writes nothing.
    let b = replica_with_package();
    for change in [forged_genesis(), own.change.clone()] {
        let mut op = genesis.clone();
        op.id = OpId::new();
        op.change = change;
        let err = b
            .apply_pulled(&PulledPage {
                ops: vec![PulledOp {
                    seq: tidemark::Seq(1),
                    op,
                }],
                end: tidemark::Seq(1),
                mark: None,
            })
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
        assert!(b.view_rows().unwrap().is_empty());
        assert_eq!(b.status().unwrap().pulled, 0);
    }
    send(&a, &b);
    assert_eq!(b.get("contacts", "c1").unwrap().unwrap()["visits"], 1);
}
