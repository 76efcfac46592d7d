//! Values tidemark could store but not give back intact are refused with a message
//! that says what to do, locally and by the server's check of pushed changes:
//! counters beyond 2^53 - 1, JSON nested deeper than 64 levels. And a record whose
//! register fields were all removed still exists, as `{}`.

mod common;

use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, ROOT, ScalarValue};
use serde_json::{Value, json};
use tidemark::model::{ActorId, Collection, Op, OpId, RecordId};
use tidemark::record::{MAX_COUNTER, MAX_JSON_DEPTH, validate_change};
use tidemark::replica::{PulledOp, PulledPage};
use tidemark::{Error, InvalidInput, Replica};

use common::crm_package;

fn crm() -> Replica {
    let r = Replica::in_memory().unwrap();
    r.set_package(Some(&crm_package())).unwrap();
    r
}

/// Two replicas whose shared counter is 2 × MAX_COUNTER after each added the limit.
fn counter_merged_beyond_range() -> (Replica, Replica) {
    let (a, b) = (crm(), crm());
    a.put("contacts", "c1", json!({"visits": 0})).unwrap();
    common::send(&a, &b);
    a.increment("contacts", "c1", "visits", MAX_COUNTER).unwrap();
    b.increment("contacts", "c1", "visits", MAX_COUNTER).unwrap();
    common::send(&a, &b);
    common::send(&b, &a);
    (a, b)
}

/// One change made with automerge directly, as `actor`: what a peer that skips
/// tidemark's checks could send.
fn foreign_change(actor: ActorId, edit: impl FnOnce(&mut AutoCommit)) -> Vec<u8> {
    let mut doc = AutoCommit::new().with_actor(automerge::ActorId::from(actor.0));
    edit(&mut doc);
    doc.commit();
    doc.get_last_local_change().unwrap().raw_bytes().to_vec()
}

fn visits(r: &Replica) -> Value {
    r.get("contacts", "c1").unwrap().unwrap()["visits"].clone()
}

#[test]
fn an_increment_that_would_leave_the_counter_range_is_refused_and_writes_nothing() {
    let r = crm();
    r.increment("contacts", "c1", "visits", MAX_COUNTER - 1).unwrap();
    let pending = r.status().unwrap().pending;
    for by in [2, i64::MAX, MAX_COUNTER + 1] {
        let err = r.increment("contacts", "c1", "visits", by).unwrap_err();
        assert!(
            matches!(err, Error::Invalid(InvalidInput::CounterRange { .. })),
            "{by}: {err}"
        );
        assert!(err.to_string().contains("9007199254740991"), "{err}");
        assert_eq!(visits(&r), MAX_COUNTER - 1, "the refused increment changed the value");
    }
    r.increment("contacts", "c1", "visits", 1).unwrap();
    assert_eq!(visits(&r), MAX_COUNTER);
    let err = r.increment("contacts", "c2", "visits", i64::MIN).unwrap_err();
    assert!(err.to_string().contains("counter \"visits\""), "{err}");
    assert!(
        r.get("contacts", "c2").unwrap().is_none(),
        "a refused first increment created the record"
    );
    assert_eq!(r.status().unwrap().pending, pending + 1);
}

#[test]
fn a_counter_put_outside_the_range_is_refused() {
    let r = crm();
    for value in [MAX_COUNTER + 1, -MAX_COUNTER - 1, i64::MAX, i64::MIN] {
        let err = r.put("contacts", "c1", json!({"visits": value})).unwrap_err();
        assert!(matches!(err, Error::Invalid(InvalidInput::WrongType { .. })), "{err}");
        assert!(err.to_string().contains("9007199254740991"), "{err}");
    }
    assert!(r.get("contacts", "c1").unwrap().is_none());
    r.put("contacts", "c1", json!({"visits": -MAX_COUNTER})).unwrap();
    r.put("contacts", "c1", json!({"visits": MAX_COUNTER})).unwrap();
    assert_eq!(visits(&r), MAX_COUNTER);
}

#[test]
fn concurrent_increments_up_to_the_limit_merge_exactly() {
    let (a, b) = counter_merged_beyond_range();
    // Above the range (nobody could write it alone), but exact: no wrap, no panic.
    assert_eq!(visits(&a), 2 * MAX_COUNTER);
    assert_eq!(a.view_rows().unwrap(), b.view_rows().unwrap());
    // Moving a merged value back into the range is allowed; further out is not.
    a.increment("contacts", "c1", "visits", -MAX_COUNTER).unwrap();
    assert_eq!(visits(&a), MAX_COUNTER);
    b.rebuild_view().unwrap();
    let err = b.increment("contacts", "c1", "visits", 1).unwrap_err();
    assert!(
        matches!(err, Error::Invalid(InvalidInput::CounterRange { .. })),
        "{err}"
    );
}

/// The last op `r` wrote, checked as the server checks a push.
fn server_accepts_last_op(r: &Replica) -> Result<(), String> {
    let (_, entry) = r.log_entries(tidemark::LogPos(0), usize::MAX).unwrap().pop().unwrap();
    let tidemark::replica::LogEntry::Local(op) = entry else {
        panic!("the last entry is not a local op")
    };
    let schema = crm_package();
    validate_change(&op.change, op.actor, "contacts", schema.collections.get("contacts"))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A put on a counter writes the difference as an increment (keeping concurrent
/// increments), unless that difference is outside the range the server takes.
#[test]
fn a_counter_put_far_from_the_current_value_writes_an_op_the_server_accepts() {
    let r = crm();
    r.put("contacts", "c1", json!({"visits": -MAX_COUNTER})).unwrap();
    r.put("contacts", "c1", json!({"visits": MAX_COUNTER})).unwrap();
    assert_eq!(visits(&r), MAX_COUNTER);
    server_accepts_last_op(&r).unwrap();
    r.put("contacts", "c1", json!({"visits": 5})).unwrap();
    assert_eq!(visits(&r), 5);
    server_accepts_last_op(&r).unwrap();

    // A merged value beyond the range, reset by a put.
    let (a, _) = counter_merged_beyond_range();
    a.put("contacts", "c1", json!({"visits": 0})).unwrap();
    assert_eq!(visits(&a), 0);
    server_accepts_last_op(&a).unwrap();
}

#[test]
fn the_server_refuses_a_change_with_no_operations() {
    let actor = ActorId([4; 16]);
    let change = foreign_change(actor, |doc| {
        doc.empty_change(Default::default());
    });
    let err = validate_change(&change, actor, "contacts", None).unwrap_err();
    assert!(err.to_string().contains("no operations"), "{err}");
}

/// An op built with automerge directly (what a peer that skips tidemark's checks
/// could send): the server refuses it, and a replica that pulls such an op anyway
/// (from a server that did not check) merges it without panicking, identically
/// on every replica.
#[test]
fn an_overflowing_counter_from_a_peer_is_refused_by_the_server_and_cannot_crash_a_replica() {
    let actor = ActorId([9; 16]);
    let change = foreign_change(actor, |doc| {
        doc.put(ROOT, "visits", ScalarValue::counter(i64::MAX)).unwrap();
        doc.increment(ROOT, "visits", i64::MAX).unwrap();
    });

    let schema = crm_package();
    let err = validate_change(&change, actor, "contacts", schema.collections.get("contacts")).unwrap_err();
    assert!(err.to_string().contains("9007199254740991"), "{err}");

    let op = Op {
        id: OpId::new(),
        actor,
        collection: Collection::new("contacts").unwrap(),
        record: RecordId::new("c1").unwrap(),
        time_ms: 0,
        change,
    };
    let page = PulledPage {
        ops: vec![PulledOp {
            seq: tidemark::Seq(1),
            op,
        }],
        end: tidemark::Seq(1),
        mark: None,
    };
    let (a, b) = (crm(), crm());
    a.apply_pulled(&page).unwrap();
    b.apply_pulled(&page).unwrap();
    assert_eq!(a.view_rows().unwrap(), b.view_rows().unwrap());
    let before = a.view_rows().unwrap();
    a.rebuild_view().unwrap();
    assert_eq!(a.view_rows().unwrap(), before);
}

/// `[[…[1]…]]` nested `depth` levels deep.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| Value::Array(vec![inner]))
}

#[test]
fn json_nested_deeper_than_the_limit_is_refused_and_the_limit_reads_back() {
    let schemaless = Replica::in_memory().unwrap();
    let typed = crm();
    for (r, field) in [(&schemaless, "deep"), (&typed, "tags")] {
        let deepest = nested(MAX_JSON_DEPTH);
        r.put("contacts", "c1", json!({ field: deepest.clone() })).unwrap();
        assert_eq!(r.get("contacts", "c1").unwrap().unwrap()[field], deepest);
        assert_eq!(r.list("contacts", None, 10).unwrap().len(), 1);

        let err = r
            .put("contacts", "c1", json!({ field: nested(MAX_JSON_DEPTH + 1) }))
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(err.to_string().contains("nested 65 levels deep"), "{err}");
        assert_eq!(
            r.get("contacts", "c1").unwrap().unwrap()[field],
            deepest,
            "the refused put changed the record"
        );
    }
    // Far beyond what serde_json parses (128): the check itself does not recurse.
    let err = schemaless
        .put("contacts", "c2", json!({ "deep": nested(1000) }))
        .unwrap_err();
    assert!(err.to_string().contains("nested 1000 levels deep"), "{err}");
}

#[test]
fn the_server_refuses_nested_values_that_are_not_shallow_json_text() {
    let actor = ActorId([3; 16]);
    let cases: [(&str, Vec<u8>); 2] = [
        ("not JSON", b"\xff\x00binary".to_vec()),
        ("too deep", serde_json::to_vec(&nested(MAX_JSON_DEPTH + 1)).unwrap()),
    ];
    for (what, bytes) in cases {
        let change = foreign_change(actor, |doc| doc.put(ROOT, "deep", ScalarValue::Bytes(bytes)).unwrap());
        let err = validate_change(&change, actor, "contacts", None).unwrap_err();
        assert!(err.to_string().contains("field \"deep\""), "{what}: {err}");
    }
}

#[test]
fn a_record_whose_fields_were_all_removed_still_exists() {
    let r = Replica::in_memory().unwrap();
    r.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    r.put("contacts", "c1", json!({"name": null})).unwrap();
    assert_eq!(r.get("contacts", "c1").unwrap(), Some(serde_json::Map::new()));
    assert_eq!(r.list("contacts", None, 10).unwrap().len(), 1);
    let before = r.view_rows().unwrap();
    r.rebuild_view().unwrap();
    assert_eq!(r.view_rows().unwrap(), before);
    r.delete("contacts", "c1").unwrap();
    assert_eq!(r.get("contacts", "c1").unwrap(), None);
    // A put of nothing but nulls on a new record writes nothing at all.
    assert_eq!(r.put("contacts", "c2", json!({"name": null})).unwrap(), None);
    assert_eq!(r.get("contacts", "c2").unwrap(), None);
}

#[test]
fn a_control_character_is_shown_escaped_once() {
    let r = Replica::in_memory().unwrap();
    let err = r.put("contacts", "x\ny", json!({"name": "Ada"})).unwrap_err();
    assert!(err.to_string().contains(r#""x\ny""#), "{err}");
}
