//! Puts recorded as intents (the durable edit without automerge): their
//! changes are made before anything reads documents or the log, survive a
//! process that stops before making them, and give the rows the changes give.

mod common;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::json;
use tidemark::replica::LogEntry;
use tidemark::{LogPos, Replica};

const INTENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("intents_v1");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log_v1");

/// The positions waiting as intents and the positions the log holds, read
/// from the file with the store closed.
fn intents_and_log(path: &std::path::Path) -> (Vec<u64>, Vec<u64>) {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_read().unwrap();
    let keys =
        |t: redb::ReadOnlyTable<u64, &[u8]>| -> Vec<u64> { t.iter().unwrap().map(|e| e.unwrap().0.value()).collect() };
    (
        keys(txn.open_table(INTENTS).unwrap()),
        keys(txn.open_table(LOG).unwrap()),
    )
}

#[test]
fn a_put_left_as_an_intent_by_a_stopped_process_is_made_and_sent_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let (first, second, third) = {
        let r = Replica::open(&path).unwrap();
        let first = r
            .put("contacts", "c1", json!({"name": "Ada", "n": 1}))
            .unwrap()
            .unwrap();
        let second = r
            .put("contacts", "c1", json!({"n": 2, "city": "Oslo"}))
            .unwrap()
            .unwrap();
        let third = r.put("contacts", "c1", json!({"city": null})).unwrap().unwrap();
        assert_eq!(
            r.get("contacts", "c1").unwrap().unwrap(),
            *json!({"name": "Ada", "n": 2}).as_object().unwrap(),
            "the view shows the puts at once"
        );
        assert_eq!(r.status().unwrap().pending, 3);
        (first, second, third)
        // Dropped without a read of the log: nothing makes the changes.
    };
    let (intents, log) = intents_and_log(&path);
    assert_eq!(intents, vec![2, 3], "the later puts wait as intents");
    assert_eq!(log, vec![1], "their positions are reserved, not written");

    let r = Replica::open(&path).unwrap();
    let ops: Vec<_> = r
        .log_entries(LogPos::ZERO, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(pos, entry)| match entry {
            LogEntry::Local(op) => (pos.get(), op.id),
            other => panic!("only local ops were made: {other:?}"),
        })
        .collect();
    assert_eq!(
        ops,
        vec![(1, first), (2, second), (3, third)],
        "each op keeps its position and id"
    );
    assert_eq!(r.pending_ops(usize::MAX).unwrap().len(), 3);
    assert_eq!(r.status().unwrap().pending, 3);

    // Another replica that gets the ops shows the same record.
    let b = Replica::in_memory().unwrap();
    common::send(&r, &b);
    assert_eq!(b.view_rows().unwrap(), r.view_rows().unwrap());
    let rows = r.view_rows().unwrap();
    r.rebuild_view().unwrap();
    assert_eq!(r.view_rows().unwrap(), rows, "the documents agree with the view");
    drop(r);
    assert_eq!(intents_and_log(&path), (vec![], vec![1, 2, 3]));
}

#[test]
fn a_put_the_row_cannot_settle_takes_the_common_path_and_answers_as_before() {
    let r = common::replica_with_package();
    r.put("contacts", "c1", json!({"name": "Ada", "visits": 1})).unwrap();
    r.put("contacts", "c1", json!({"name": "Ada B"})).unwrap();
    // The same value again, a null for a missing field, no fields: no op, as before.
    assert_eq!(r.put("contacts", "c1", json!({"name": "Ada B"})).unwrap(), None);
    assert_eq!(r.put("contacts", "c1", json!({"email": null})).unwrap(), None);
    assert_eq!(r.put("contacts", "c1", json!({})).unwrap(), None);
    // A counter moves by increments, a refused value is refused.
    r.put("contacts", "c1", json!({"visits": 5})).unwrap().unwrap();
    assert!(r.put("contacts", "c1", json!({"visits": "many"})).is_err());
    // A deleted record comes back.
    r.delete("contacts", "c1").unwrap().unwrap();
    r.put("contacts", "c1", json!({"email": "ada@example.com"}))
        .unwrap()
        .unwrap();
    assert_eq!(
        r.get("contacts", "c1").unwrap().unwrap(),
        *json!({"name": "Ada B", "visits": 5, "email": "ada@example.com"})
            .as_object()
            .unwrap()
    );
    assert_eq!(
        r.status().unwrap().pending,
        r.pending_ops(usize::MAX).unwrap().len() as u64
    );
}

#[test]
fn a_conflicted_record_is_settled_by_its_document_not_by_its_row() {
    let a = Replica::in_memory().unwrap();
    let b = Replica::in_memory().unwrap();
    a.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    common::send(&a, &b);
    a.put("contacts", "c1", json!({"name": "A"})).unwrap();
    b.put("contacts", "c1", json!({"name": "B"})).unwrap();
    common::send(&a, &b);
    common::send(&b, &a);
    assert_eq!(a.view_rows().unwrap(), b.view_rows().unwrap());
    assert_eq!(a.conflicts(None, None).unwrap().len(), 1);
    // A put of the value shown settles the conflict: only the document knows.
    let shown = a.get("contacts", "c1").unwrap().unwrap()["name"].clone();
    a.put("contacts", "c1", json!({"name": shown})).unwrap().unwrap();
    assert!(a.conflicts(None, None).unwrap().is_empty());
    a.put("contacts", "c1", json!({"name": "Settled", "n": 1}))
        .unwrap()
        .unwrap();
    common::send(&a, &b);
    assert_eq!(a.view_rows().unwrap(), b.view_rows().unwrap());
    assert!(b.conflicts(None, None).unwrap().is_empty());
}

#[test]
fn many_puts_give_the_rows_their_changes_give() {
    // Puts on a few records, interleaved with reads and edits that make the
    // waiting changes, against a replica that only receives the ops.
    let dir = tempfile::tempdir().unwrap();
    let r = Replica::open(dir.path().join("r.db")).unwrap();
    let values = [
        json!("x"),
        json!(1),
        json!(1.5),
        json!(null),
        json!({"a": [1, 2]}),
        json!(true),
        json!(-7),
    ];
    for n in 0..600usize {
        let id = format!("c{}", n % 5);
        let field = ["name", "n", "city"][n % 3];
        let value = values[(n * 7 + n / 3) % values.len()].clone();
        let _ = r.put("contacts", &id, json!({ field: value, "k": n })).unwrap();
        match n % 97 {
            13 => r.delete("contacts", &id).map(|_| ()).unwrap(),
            29 => drop(r.pending_ops(10).unwrap()),
            71 => r.reopen().unwrap(),
            _ => {}
        }
    }
    let b = Replica::in_memory().unwrap();
    common::send(&r, &b);
    assert_eq!(b.view_rows().unwrap(), r.view_rows().unwrap());
    let rows = r.view_rows().unwrap();
    r.rebuild_view().unwrap();
    assert_eq!(r.view_rows().unwrap(), rows);
    assert_eq!(
        r.status().unwrap().pending,
        r.pending_ops(usize::MAX).unwrap().len() as u64
    );
}

#[test]
fn a_put_on_a_record_not_in_memory_waits_as_an_intent_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    {
        let r = Replica::open(&path).unwrap();
        for i in 0..3 {
            r.put("contacts", &format!("c{i}"), json!({"name": "Ada", "n": i}))
                .unwrap();
        }
    }
    // A new process: no document is in memory.
    let op = {
        let r = Replica::open(&path).unwrap();
        r.put("contacts", "c1", json!({"n": 10})).unwrap().unwrap()
    };
    assert_eq!(intents_and_log(&path), (vec![4], vec![1, 2, 3]));
    let r = Replica::open(&path).unwrap();
    let ops = r.pending_ops(usize::MAX).unwrap();
    assert_eq!(ops.last().map(|p| (p.pos.get(), p.op.id)), Some((4, op)));
    let b = Replica::in_memory().unwrap();
    common::send(&r, &b);
    assert_eq!(
        b.get("contacts", "c1").unwrap().unwrap(),
        *json!({"name": "Ada", "n": 10}).as_object().unwrap()
    );
}
