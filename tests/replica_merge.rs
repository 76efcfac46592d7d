//! Merging what other replicas wrote, through the replica's public API:
//! concurrent edits, conflicts, deletes, pulled pages and the bytes they carry.

mod common;

use serde_json::json;
use tidemark::replica::{PulledOp, PulledPage};
use tidemark::{Error, Replica};

use common::{replica_with_package, send};

#[test]
fn concurrent_text_edits_merge_character_by_character() {
    let a = replica_with_package();
    a.put("contacts", "c1", json!({"note": "hello world"})).unwrap();
    let b = replica_with_package();
    send(&a, &b);
    a.splice_text("contacts", "c1", "note", 0, 5, "HELLO").unwrap();
    b.splice_text("contacts", "c1", "note", 11, 0, "!").unwrap();
    send(&a, &b);
    send(&b, &a);
    assert_eq!(a.get("contacts", "c1").unwrap().unwrap()["note"], "HELLO world!");
    assert_eq!(a.view_rows().unwrap(), b.view_rows().unwrap());
}

#[test]
fn concurrent_increments_add_up() {
    let a = replica_with_package();
    a.increment("contacts", "c1", "visits", 1).unwrap();
    let b = replica_with_package();
    send(&a, &b);
    a.increment("contacts", "c1", "visits", 2).unwrap();
    b.increment("contacts", "c1", "visits", 5).unwrap();
    b.put("contacts", "c1", json!({"visits": 10})).unwrap(); // a put on a counter adds the difference
    send(&a, &b);
    send(&b, &a);
    assert_eq!(a.get("contacts", "c1").unwrap().unwrap()["visits"], 12);
    assert_eq!(b.get("contacts", "c1").unwrap().unwrap()["visits"], 12);
}

#[test]
fn concurrent_writes_are_listed_as_conflicts_and_a_new_write_resolves_them() {
    let a = Replica::in_memory().unwrap();
    a.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    let b = Replica::in_memory().unwrap();
    send(&a, &b);
    a.put("contacts", "c1", json!({"name": "Ada Lovelace"})).unwrap();
    b.put("contacts", "c1", json!({"name": "Ada King"})).unwrap();
    send(&a, &b);
    send(&b, &a);
    let conflicts = a.conflicts(Some("contacts"), None).unwrap();
    assert_eq!(conflicts.len(), 1);
    let field = &conflicts[0].fields[0];
    assert_eq!(field.field, "name");
    let mut values: Vec<_> = field
        .values
        .iter()
        .map(|v| v.value.as_str().unwrap().to_string())
        .collect();
    values.sort();
    assert_eq!(values, ["Ada King", "Ada Lovelace"]);
    assert_eq!(
        a.get("contacts", "c1").unwrap().unwrap()["name"],
        field.values[0].value,
        "the view shows the first value"
    );
    assert_eq!(
        b.conflicts(None, None).unwrap(),
        conflicts,
        "both replicas see the same conflict"
    );
    let actors: Vec<_> = field.values.iter().map(|v| v.actor.clone()).collect();
    assert!(actors.contains(&a.actor().unwrap().to_hex()) && actors.contains(&b.actor().unwrap().to_hex()));
    assert_eq!(
        a.status().unwrap().conflicted,
        1,
        "status counts records with conflicts"
    );

    a.put("contacts", "c1", json!({"name": "Augusta Ada King"})).unwrap();
    assert!(a.conflicts(None, None).unwrap().is_empty());
    assert_eq!(a.status().unwrap().conflicted, 0);
    send(&a, &b);
    assert!(b.conflicts(None, None).unwrap().is_empty());
    assert_eq!(b.status().unwrap().conflicted, 0);
    assert_eq!(b.get("contacts", "c1").unwrap().unwrap()["name"], "Augusta Ada King");
}

/// The same file imported on two replicas: every field has two concurrent
/// values, all equal, so there is nothing to choose and nothing is listed. A
/// text whose two competing objects read alike is listed once an edit reaches
/// only one of them.
#[test]
fn equal_concurrent_values_are_not_listed_until_they_differ() {
    let (a, b) = (replica_with_package(), replica_with_package());
    for r in [&a, &b] {
        r.put(
            "contacts",
            "c1",
            json!({"name": "Ada", "age": 36, "note": "met at the fair"}),
        )
        .unwrap();
    }
    send(&a, &b);
    send(&b, &a);
    for r in [&a, &b] {
        assert_eq!(r.conflicts(None, None).unwrap(), [], "equal values are no conflict");
        assert_eq!(r.status().unwrap().conflicted, 0);
        let before = r.view_rows().unwrap();
        r.rebuild_view().unwrap();
        assert_eq!(r.view_rows().unwrap(), before);
    }
    // Each replica edits the note; only one of the two objects is the one shown.
    a.splice_text("contacts", "c1", "note", 0, 0, "A: ").unwrap();
    b.splice_text("contacts", "c1", "note", 0, 0, "B: ").unwrap();
    send(&a, &b);
    send(&b, &a);
    for r in [&a, &b] {
        assert_eq!(conflicted_fields(r), ["note"], "the texts now differ");
        assert_eq!(r.status().unwrap().conflicted, 1);
    }
    a.put("contacts", "c1", json!({"name": "Ada", "age": 37})).unwrap();
    b.put("contacts", "c1", json!({"age": 37})).unwrap();
    send(&a, &b);
    send(&b, &a);
    assert_eq!(
        conflicted_fields(&a),
        ["note"],
        "the same new age on both is no conflict either"
    );
}

/// The fields `conflicts` lists, over every record.
fn conflicted_fields(r: &Replica) -> Vec<String> {
    let listed = r.conflicts(None, None).unwrap();
    listed.into_iter().flat_map(|c| c.fields).map(|f| f.field).collect()
}

/// Two counters created apart (the same record created on two replicas) that
/// reach equal totals are still listed: each replica's increment went to its
/// own counter, and the view shows only one of them.
#[test]
fn competing_counters_are_listed_even_when_their_totals_are_equal() {
    let (a, b) = (replica_with_package(), replica_with_package());
    for r in [&a, &b] {
        r.put("contacts", "c1", json!({"name": "Ada", "visits": 3})).unwrap();
        r.increment("contacts", "c1", "visits", 1).unwrap();
    }
    send(&a, &b);
    send(&b, &a);
    for r in [&a, &b] {
        assert_eq!(conflicted_fields(r), ["visits"]);
        assert_eq!(r.status().unwrap().conflicted, 1);
    }
}

#[test]
fn delete_wins_over_a_concurrent_edit_and_a_later_put_undeletes() {
    let a = Replica::in_memory().unwrap();
    a.put("contacts", "c1", json!({"name": "Ada", "age": 36})).unwrap();
    let b = Replica::in_memory().unwrap();
    send(&a, &b);
    a.delete("contacts", "c1").unwrap();
    b.put("contacts", "c1", json!({"age": 37})).unwrap();
    send(&a, &b);
    send(&b, &a);
    assert_eq!(a.get("contacts", "c1").unwrap(), None);
    assert_eq!(b.get("contacts", "c1").unwrap(), None);
    b.put("contacts", "c1", json!({"email": "ada@example.com"})).unwrap();
    send(&b, &a);
    let back = a.get("contacts", "c1").unwrap().unwrap();
    assert_eq!(back["age"], 37, "the concurrent edit was kept");
    assert_eq!(back["email"], "ada@example.com");
}

#[test]
fn a_record_can_be_deleted_before_it_is_pulled() {
    let a = Replica::in_memory().unwrap();
    let b = Replica::in_memory().unwrap();
    assert!(b.delete("contacts", "c1").unwrap().is_some(), "the tombstone is an op");
    assert_eq!(b.status().unwrap().pending, 1);
    assert!(b.view_rows().unwrap().is_empty());
    a.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    send(&a, &b);
    send(&b, &a);
    assert_eq!(a.get("contacts", "c1").unwrap(), None, "the tombstone reached a");
    assert_eq!(b.get("contacts", "c1").unwrap(), None);
    a.put("contacts", "c1", json!({"name": "Ada again"})).unwrap();
    send(&a, &b);
    assert_eq!(b.get("contacts", "c1").unwrap().unwrap()["name"], "Ada again");
}

/// The 37 bytes that make automerge 0.12's decoder panic (a known hazard of that version).
const PANICKING_BYTES: &str = "856f4a83fc030a0a030a0000000123030083fc030a0a030a00000a000000011500030a8500";

#[test]
fn malformed_or_foreign_change_bytes_are_refused_without_writing() {
    let a = Replica::in_memory().unwrap();
    a.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    let good = common::all_ops(&a).remove(0);
    let b = Replica::in_memory().unwrap();
    b.put("contacts", "mine", json!({"name": "kept"})).unwrap();
    let before = b.view_rows().unwrap();

    let mut cases = Vec::new();
    for bytes in [
        hex::decode(PANICKING_BYTES).unwrap(),
        vec![],
        vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
        good.op.change[..good.op.change.len() / 2].to_vec(),
    ] {
        let mut op = good.op.clone();
        op.change = bytes;
        cases.push(op);
    }
    // A change that claims another actor than the one that wrote it.
    let mut foreign = good.op.clone();
    foreign.actor = tidemark::ActorId::random();
    cases.push(foreign);
    // A whole saved document is not a change.
    let mut doc = good.op.clone();
    doc.change = {
        let mut d = tidemark::record::RecordDoc::new(good.op.actor);
        d.put("contacts", json!({"x": 1}).as_object().unwrap(), None).unwrap();
        d.commit(0);
        d.save()
    };
    cases.push(doc);

    for mut op in cases {
        op.id = tidemark::OpId::new();
        let page = PulledPage {
            ops: vec![
                good.clone(),
                PulledOp {
                    seq: tidemark::Seq(2),
                    op,
                },
            ],
            end: tidemark::Seq(2),
            mark: None,
        };
        let err = b.apply_pulled(&page).unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
        assert_eq!(b.view_rows().unwrap(), before);
        assert_eq!(b.status().unwrap().pulled, 0);
    }
    b.apply_pulled(&PulledPage {
        ops: vec![good],
        end: tidemark::Seq(1),
        mark: None,
    })
    .unwrap();
    assert_eq!(b.get("contacts", "c1").unwrap().unwrap()["name"], "Ada");
}

/// The server accepted pulled ops under the package of their day; refusing them
/// under today's package would wedge every pull after them.
#[test]
fn pulled_ops_are_not_judged_by_the_current_package() {
    let a = Replica::in_memory().unwrap();
    a.put("contacts", "c1", json!({"nick": "accepted under an older package"}))
        .unwrap();
    let b = replica_with_package();
    b.apply_pulled(&PulledPage {
        ops: common::all_ops(&a),
        end: tidemark::Seq(1),
        mark: None,
    })
    .unwrap();
    assert_eq!(
        b.get("contacts", "c1").unwrap().unwrap()["nick"],
        "accepted under an older package"
    );
    assert_eq!(b.status().unwrap().pulled, 1);
}

#[test]
fn known_op_ids_are_skipped() {
    let a = Replica::in_memory().unwrap();
    a.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    let b = Replica::in_memory().unwrap();
    let ops = common::all_ops(&a);
    let twice: Vec<_> = ops.iter().chain(ops.iter()).cloned().collect();
    let report = b
        .apply_pulled(&PulledPage {
            ops: twice,
            end: tidemark::Seq(5),
            mark: None,
        })
        .unwrap();
    assert_eq!((report.applied, report.known), (1, 1));
    let report = b
        .apply_pulled(&PulledPage {
            ops,
            end: tidemark::Seq(6),
            mark: None,
        })
        .unwrap();
    assert_eq!((report.applied, report.known), (0, 1));
    assert_eq!(b.status().unwrap().pulled, 6);
    assert_eq!(b.status().unwrap().pending, 0, "pulled ops are not pending");
    let own = a
        .apply_pulled(&PulledPage {
            ops: common::all_ops(&a),
            end: tidemark::Seq(1),
            mark: None,
        })
        .unwrap();
    assert_eq!(own.known, 1, "a replica's own op coming back is skipped");
}

/// `pushed` steps over pulled entries whenever no local op waits before them, so the
/// search for pending ops never rescans a log that only grew by pulls.
#[test]
fn the_push_watermark_moves_over_pulled_entries_but_never_over_a_pending_op() {
    let (other, r) = (Replica::in_memory().unwrap(), Replica::in_memory().unwrap());
    for i in 0..5 {
        other.put("contacts", &format!("o{i}"), json!({"n": i})).unwrap();
    }
    let page = |from: usize, to: usize| PulledPage {
        ops: common::all_ops(&other)[from..to].to_vec(),
        end: tidemark::Seq(0),
        mark: None,
    };
    r.apply_pulled(&page(0, 2)).unwrap();
    assert_eq!(r.status().unwrap().pushed, 2, "only pulled entries so far");
    r.put("contacts", "mine", json!({"n": 1})).unwrap(); // log position 3
    r.apply_pulled(&page(2, 4)).unwrap(); // positions 4 and 5
    let status = r.status().unwrap();
    assert_eq!(
        (status.pushed, status.pending),
        (tidemark::LogPos(2), 1),
        "a pending op holds the watermark"
    );
    let pending = r.pending_ops(10).unwrap();
    assert_eq!(pending.iter().map(|p| p.pos).collect::<Vec<_>>(), vec![3]);
    r.ack_pushed(tidemark::LogPos(3), &[]).unwrap();
    let status = r.status().unwrap();
    assert_eq!(
        (status.pushed, status.pending),
        (tidemark::LogPos(5), 0),
        "the ack steps over the pulls after it"
    );
    r.apply_pulled(&page(4, 5)).unwrap();
    assert_eq!(r.status().unwrap().pushed, 6);
    assert!(r.pending_ops(10).unwrap().is_empty());
}
