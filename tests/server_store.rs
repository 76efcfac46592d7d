//! The redb server store: the conformance suite in memory and on disk, and what
//! only a file can show (reopening, the epoch, file placement and mode, locking).
#![cfg(feature = "server")]
#![cfg(feature = "server")]

mod common;

use std::cell::Cell;

use tidemark::server::store::redb::RedbStore;
use tidemark::server::store::{PageLimit, Role, ServerStore, StoreError, StoredDoc, TokenRecord};

use common::store_suite::{self, append_ok, new_ops};
use tidemark::Seq;

#[test]
fn an_in_memory_store_passes_the_suite() {
    store_suite::run_all(&|| RedbStore::in_memory().unwrap());
}

#[test]
fn a_file_store_passes_the_suite() {
    let root = tempfile::tempdir().unwrap();
    let made = Cell::new(0);
    store_suite::run_all(&|| {
        made.set(made.get() + 1);
        RedbStore::open(root.path().join(format!("data{}", made.get()))).unwrap()
    });
}

#[test]
fn a_reopened_file_store_keeps_everything_and_its_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let package = common::crm_package();
    let ops = new_ops(5);
    let token = TokenRecord {
        user: "ada".to_string(),
        secret_hash: [42; 32],
    };
    let doc = StoredDoc {
        collection: "contacts".to_string(),
        record: "c1".to_string(),
        doc: b"document".to_vec(),
        row: Some(b"row".to_vec()),
    };
    let epoch = {
        let store = RedbStore::open(dir.path()).unwrap();
        store.create_user("ada").unwrap();
        store.add_token("t1", &token).unwrap();
        store.create_space("crm", Some(&package)).unwrap();
        store.create_space("notes", None).unwrap();
        store.grant("ada", "crm", Role::ReadOnly).unwrap();
        assert_eq!(append_ok(&store, "crm", &ops[..3]), [1, 2, 3]);
        assert!(
            store
                .store_docs("crm", std::slice::from_ref(&doc), Seq(0), Seq(3))
                .unwrap()
        );
        store.epoch().unwrap()
    };

    let store = RedbStore::open(dir.path()).unwrap();
    assert_eq!(
        store.epoch().unwrap(),
        epoch,
        "the epoch belongs to the file, not the process"
    );
    assert!(store.user_exists("ada").unwrap());
    assert_eq!(store.token("t1").unwrap(), Some(token));
    assert_eq!(store.package("crm").unwrap(), Some(Some(package)));
    assert_eq!(store.package("notes").unwrap(), Some(None));
    assert_eq!(store.role("ada", "crm").unwrap(), Some(Role::ReadOnly));
    assert_eq!(store.head("crm").unwrap(), 3);
    assert_eq!(store.materialized("crm").unwrap(), 3);
    assert_eq!(store.doc("crm", "contacts", "c1").unwrap(), Some(doc.doc.clone()));
    assert_eq!(store.docs_page("crm", None, PageLimit::count(10)).unwrap().docs, [doc]);
    let back: Vec<_> = store.read_ops("crm", Seq(0), PageLimit::count(10)).unwrap();
    assert_eq!(back.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(back.into_iter().map(|(_, op)| op).collect::<Vec<_>>(), ops[..3]);

    // The op-id index survived too: re-pushes keep their seqs, new ops go on from the head.
    assert_eq!(append_ok(&store, "crm", &ops), [1, 2, 3, 4, 5]);
    // And a space created after reopening gets a fresh id, not one already in use.
    store.create_space("later", None).unwrap();
    assert_eq!(store.head("later").unwrap(), 0);
    assert!(
        store
            .docs_page("later", None, PageLimit::count(10))
            .unwrap()
            .docs
            .is_empty()
    );
    assert_eq!(store.head("crm").unwrap(), 5);
}

#[test]
fn every_new_store_has_its_own_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let epochs = [
        RedbStore::in_memory().unwrap().epoch().unwrap(),
        RedbStore::in_memory().unwrap().epoch().unwrap(),
        RedbStore::open(dir.path().join("one")).unwrap().epoch().unwrap(),
        RedbStore::open(dir.path().join("two")).unwrap().epoch().unwrap(),
    ];
    for (i, epoch) in epochs.iter().enumerate() {
        let uuid = uuid::Uuid::parse_str(epoch).unwrap();
        assert_eq!(uuid.get_version_num(), 4, "a random UUID");
        assert!(!epochs[..i].contains(epoch), "epochs repeat: {epochs:?}");
    }
}

#[test]
fn a_data_directory_is_created_and_holds_a_private_store_file() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("nested").join("data");
    let store = RedbStore::open(&data).unwrap();
    let file = data.join(RedbStore::FILE_NAME);
    assert_eq!(store.path(), Some(file.as_path()));
    assert!(file.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the store holds token hashes: owner only");
    }

    // A path ending in `.redb`, or an existing file, is the store file itself.
    let named = root.path().join("elsewhere").join("mine.redb");
    assert_eq!(RedbStore::open(&named).unwrap().path(), Some(named.as_path()));
    assert!(named.is_file());
    drop(store);
    assert_eq!(RedbStore::open(&file).unwrap().path(), Some(file.as_path()));
}

#[test]
fn a_store_file_in_use_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    match RedbStore::open(dir.path()) {
        Err(StoreError::Backend(message)) => assert!(message.contains("in use"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    store.create_user("ada").unwrap();
    drop(store);
    assert!(RedbStore::open(dir.path()).unwrap().user_exists("ada").unwrap());
}
