//! The replica's store file: reopened, rebuilt from its log, or written by
//! another format version.

mod common;

use serde_json::json;
use tidemark::{Error, Replica};

use common::{crm_package, replica_with_package, send};

#[test]
fn reopening_the_store_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let actor;
    {
        let r = Replica::open(&path).unwrap();
        r.set_package(Some(&crm_package())).unwrap();
        r.put("contacts", "c1", json!({"name": "Ada", "note": "hi"})).unwrap();
        r.increment("contacts", "c1", "visits", 3).unwrap();
        actor = r.actor().unwrap();
    }
    let r = Replica::open(&path).unwrap();
    assert_eq!(r.actor().unwrap(), actor);
    assert_eq!(r.package().unwrap(), Some(crm_package()));
    assert_eq!(
        r.get("contacts", "c1").unwrap().unwrap(),
        *json!({"name": "Ada", "note": "hi", "visits": 3}).as_object().unwrap()
    );
    // The put, the first increment's genesis op and the increment.
    assert_eq!(r.status().unwrap().pending, 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn rebuilt_view_equals_the_incremental_view() {
    let a = replica_with_package();
    let b = replica_with_package();
    for i in 0..30 {
        a.put(
            "contacts",
            &format!("c{i}"),
            json!({"name": format!("A{i}"), "note": "abc"}),
        )
        .unwrap();
    }
    send(&a, &b);
    for i in 0..30 {
        match i % 4 {
            0 => b.delete("contacts", &format!("c{i}")).map(|_| ()).unwrap(),
            1 => b
                .splice_text("contacts", &format!("c{i}"), "note", 1, 1, "XY")
                .map(|_| ())
                .unwrap(),
            2 => b
                .increment("contacts", &format!("c{i}"), "visits", i)
                .map(|_| ())
                .unwrap(),
            _ => b
                .put("contacts", &format!("c{i}"), json!({"name": "B"}))
                .map(|_| ())
                .unwrap(),
        }
        a.put("contacts", &format!("c{i}"), json!({"name": "A again"})).unwrap();
    }
    send(&b, &a);
    let before = a.view_rows().unwrap();
    let conflicts_before = a.conflicts(None, None).unwrap();
    assert!(!conflicts_before.is_empty());
    a.rebuild_view().unwrap();
    assert_eq!(a.view_rows().unwrap(), before);
    assert_eq!(a.conflicts(None, None).unwrap(), conflicts_before);
}

#[test]
fn a_store_of_another_format_version_is_refused_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    Replica::open(&path)
        .unwrap()
        .put("contacts", "c1", json!({"name": "Ada"}))
        .unwrap();
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta_v1");
    let set_format = |version: u64| {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(meta)
            .unwrap()
            .insert("format", version.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    };
    // What a later tidemark with another store format would leave behind.
    set_format(4);
    let err = Replica::open(&path).err().expect("a store of format 4 is refused");
    assert!(matches!(err, Error::StoreVersion { found: 4, expected: 3 }), "{err:?}");
    assert!(
        err.to_string().contains("open it with the tidemark that wrote it"),
        "{err}"
    );
    let format_now = {
        let db = redb::Database::open(&path).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let table = txn.open_table(meta).unwrap();
        table.get("format").unwrap().unwrap().value().to_vec()
    };
    assert_eq!(
        format_now,
        4u64.to_le_bytes(),
        "the refused open left the format as it was"
    );
    // Nothing was rewritten: back at format 3, everything is there.
    set_format(3);
    let r = Replica::open(&path).unwrap();
    assert_eq!(r.get("contacts", "c1").unwrap().unwrap()["name"], json!("Ada"));
    assert_eq!(r.status().unwrap().pending, 1);
}

/// Format 1 kept the changes local edits append in the document's own value;
/// format 2 keeps them in a table of their own (`doc_tails_v1`), format 3 adds
/// the puts waiting as intents (`intents_v1`). A store of format 1 opens as
/// format 3 with its documents as they are, and edits, merges and a rebuild
/// agree with the log.
#[test]
fn a_store_of_format_1_is_brought_to_format_3_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let docs: redb::TableDefinition<(&str, &str), &[u8]> = redb::TableDefinition::new("docs_v1");
    let tails: redb::TableDefinition<(&str, &str), &[u8]> = redb::TableDefinition::new("doc_tails_v1");
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta_v1");
    {
        let r = Replica::open(&path).unwrap();
        for n in 0..5 {
            r.put("contacts", "c1", json!({"name": "Ada", "n": n})).unwrap();
        }
        r.put("contacts", "c2", json!({"name": "Bob"})).unwrap();
        // Format 1 had no intents: a read of the log makes their changes.
        r.log_entries(tidemark::LogPos::ZERO, usize::MAX).unwrap();
    }
    // The layout format 1 wrote: each tail inside its document's value, no tail table.
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut docs = txn.open_table(docs).unwrap();
            let tails = txn.open_table(tails).unwrap();
            let mut moved = 0;
            for entry in redb::ReadableTable::iter(&tails).unwrap() {
                let (key, tail) = entry.unwrap();
                let (c, i) = key.value();
                let mut bytes = redb::ReadableTable::get(&docs, (c, i))
                    .unwrap()
                    .unwrap()
                    .value()
                    .to_vec();
                bytes.extend_from_slice(tail.value());
                docs.insert((c, i), bytes.as_slice()).unwrap();
                moved += 1;
            }
            assert!(moved > 0, "the edits of c1 left a tail");
        }
        assert!(txn.delete_table(tails).unwrap());
        let intents: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("intents_v1");
        assert!(txn.delete_table(intents).unwrap());
        txn.open_table(meta)
            .unwrap()
            .insert("format", 1u64.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let r = Replica::open(&path).unwrap();
    assert_eq!(
        r.get("contacts", "c1").unwrap().unwrap(),
        *json!({"name": "Ada", "n": 4}).as_object().unwrap()
    );
    for n in 5..40 {
        r.put("contacts", "c1", json!({"n": n})).unwrap();
    }
    r.put("contacts", "c2", json!({"city": "Oslo"})).unwrap();
    let rows = r.view_rows().unwrap();
    r.rebuild_view().unwrap();
    assert_eq!(r.view_rows().unwrap(), rows, "the documents agree with the log");
    assert_eq!(
        r.get("contacts", "c1").unwrap().unwrap(),
        *json!({"name": "Ada", "n": 39}).as_object().unwrap()
    );
    assert_eq!(r.status().unwrap().pending, 42);
    drop(r);
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let format = txn
        .open_table(meta)
        .unwrap()
        .get("format")
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(format, 3u64.to_le_bytes());
}
