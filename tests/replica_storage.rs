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
    set_format(2);
    let err = Replica::open(&path).err().expect("a store of format 2 is refused");
    assert!(matches!(err, Error::StoreVersion { found: 2, expected: 1 }), "{err:?}");
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
        2u64.to_le_bytes(),
        "the refused open left the format as it was"
    );
    // Nothing was rewritten: back at format 1, everything is there.
    set_format(1);
    let r = Replica::open(&path).unwrap();
    assert_eq!(r.get("contacts", "c1").unwrap().unwrap()["name"], json!("Ada"));
    assert_eq!(r.status().unwrap().pending, 1);
}
