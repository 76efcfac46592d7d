//! Checks of the materialized documents and their pages.

use super::*;

pub fn documents_are_stored_with_the_materialized_seq<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    schemaless_space(store, "other");
    assert_eq!(store.materialized("crm").unwrap(), 0);
    assert_eq!(store.doc("crm", "contacts", "c1").unwrap(), None);

    assert!(
        store
            .store_docs(
                "crm",
                &[doc("contacts", "c1", b"one"), doc("contacts", "c2", b"two")],
                Seq(0),
                Seq(2),
            )
            .unwrap()
    );
    assert_eq!(store.materialized("crm").unwrap(), 2);
    assert_eq!(store.doc("crm", "contacts", "c1").unwrap(), Some(b"one".to_vec()));
    assert_eq!(store.doc("crm", "contacts", "c2").unwrap(), Some(b"two".to_vec()));
    assert_eq!(store.doc("crm", "contacts", "c3").unwrap(), None);
    assert_eq!(store.doc("crm", "accounts", "c1").unwrap(), None);

    assert!(
        store
            .store_docs("crm", &[doc("contacts", "c1", b"one, later")], Seq(2), Seq(5))
            .unwrap()
    );
    assert_eq!(store.materialized("crm").unwrap(), 5);
    assert_eq!(
        store.doc("crm", "contacts", "c1").unwrap(),
        Some(b"one, later".to_vec())
    );
    assert_eq!(store.doc("crm", "contacts", "c2").unwrap(), Some(b"two".to_vec()));

    // Advancing without documents (ops that changed nothing new) moves the seq alone.
    assert!(store.store_docs("crm", &[], Seq(5), Seq(7)).unwrap());

    // A writer that read an older materialized seq stores nothing: another got there first.
    assert!(
        !store
            .store_docs("crm", &[doc("contacts", "c1", b"stale")], Seq(5), Seq(6))
            .unwrap()
    );
    assert!(
        !store
            .store_docs("crm", &[doc("contacts", "c9", b"stale")], Seq(0), Seq(9))
            .unwrap()
    );
    assert_eq!(store.doc("crm", "contacts", "c9").unwrap(), None);
    assert_eq!(store.materialized("crm").unwrap(), 7);

    assert_eq!(store.materialized("other").unwrap(), 0, "per space");
    assert_eq!(store.doc("other", "contacts", "c1").unwrap(), None);
    assert!(
        store
            .store_docs("other", &[doc("contacts", "c1", b"theirs")], Seq(0), Seq(1))
            .unwrap()
    );
    assert_eq!(store.doc("other", "contacts", "c1").unwrap(), Some(b"theirs".to_vec()));
    assert_eq!(
        store.doc("crm", "contacts", "c1").unwrap(),
        Some(b"one, later".to_vec())
    );
    assert_eq!(store.materialized("crm").unwrap(), 7);
    let keys = |ids: &[&str]| -> Vec<(String, String)> {
        ids.iter().map(|id| ("contacts".to_string(), id.to_string())).collect()
    };
    assert_eq!(
        store.docs_of("crm", &keys(&["c2", "none", "c1"])).unwrap(),
        [Some(b"two".to_vec()), None, Some(b"one, later".to_vec())],
        "in the order asked, None where there is none"
    );
    assert_eq!(store.docs_of("crm", &[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
    assert_missing(store.docs_of("nowhere", &keys(&["c1"])), "space", "nowhere");
}

pub fn docs_page_orders_by_collection_then_record<S: ServerStore>(store: &S) {
    // Spaces on both sides, so a page that leaks across spaces shows.
    schemaless_space(store, "before");
    schemaless_space(store, "crm");
    schemaless_space(store, "after");
    assert!(
        store
            .store_docs("before", &[doc("zzz", "z", b"x")], Seq(0), Seq(1))
            .unwrap()
    );
    assert!(
        store
            .store_docs("after", &[doc("aaa", "a", b"x")], Seq(0), Seq(1))
            .unwrap()
    );
    assert!(
        store
            .docs_page("crm", None, PageLimit::count(10))
            .unwrap()
            .docs
            .is_empty()
    );

    let docs = [
        doc("contacts", "c2", b"2"),
        doc("accounts", "b", b"b"),
        doc("contacts", "c10", b"10"),
        doc("contacts", "c1", b"1"),
        doc("accounts", "a", b"a"),
        doc("notes", "n1", b"n"),
    ];
    assert!(store.store_docs("crm", &docs[..3], Seq(0), Seq(3)).unwrap());
    assert!(store.store_docs("crm", &docs[3..], Seq(3), Seq(6)).unwrap());
    let expected = [
        ("accounts", "a"),
        ("accounts", "b"),
        ("contacts", "c1"),
        ("contacts", "c10"),
        ("contacts", "c2"),
        ("notes", "n1"),
    ];
    let all = store.docs_page("crm", None, PageLimit::count(100)).unwrap().docs;
    assert_eq!(keys(&all), expected, "byte order of collection, then record");
    assert_eq!(all[3].doc, b"10");

    // Pages of 2 (an exact multiple) end with an empty page.
    let first = store.docs_page("crm", None, PageLimit::count(2)).unwrap().docs;
    assert_eq!(keys(&first), expected[..2]);
    let second = store
        .docs_page("crm", Some(("accounts", "b")), PageLimit::count(2))
        .unwrap()
        .docs;
    assert_eq!(keys(&second), expected[2..4]);
    let third = store
        .docs_page("crm", Some(("contacts", "c10")), PageLimit::count(2))
        .unwrap()
        .docs;
    assert_eq!(keys(&third), expected[4..]);
    assert!(
        store
            .docs_page("crm", Some(("notes", "n1")), PageLimit::count(2))
            .unwrap()
            .docs
            .is_empty()
    );

    // Pages of 1, each after the previous key, meet every document once, and
    // say that more follow on every page but the last.
    let mut after: Option<(String, String)> = None;
    let mut walked = Vec::new();
    loop {
        let page = store
            .docs_page(
                "crm",
                after.as_ref().map(|(c, r)| (c.as_str(), r.as_str())),
                PageLimit::count(1),
            )
            .unwrap();
        let more = page.more;
        let Some(d) = page.docs.into_iter().next() else {
            panic!("a page after {after:?} is empty although the one before said more follow")
        };
        walked.push((d.collection.clone(), d.record.clone()));
        after = Some((d.collection, d.record));
        if !more {
            break;
        }
    }
    let walked: Vec<(&str, &str)> = walked.iter().map(|(c, r)| (c.as_str(), r.as_str())).collect();
    assert_eq!(walked, expected);

    // `after` need not be a stored key.
    let from_gap = store
        .docs_page("crm", Some(("b", "")), PageLimit::count(10))
        .unwrap()
        .docs;
    assert_eq!(keys(&from_gap), expected[2..]);
    let mid_collection = store
        .docs_page("crm", Some(("contacts", "c11")), PageLimit::count(10))
        .unwrap()
        .docs;
    assert_eq!(keys(&mid_collection), expected[4..]);
    assert!(
        store
            .docs_page("crm", None, PageLimit::count(0))
            .unwrap()
            .docs
            .is_empty()
    );
}

/// A page stops before the item that would take it past its byte budget, but
/// always holds one item, so readers move on whatever the sizes.
pub fn pages_keep_to_their_byte_budget<S: ServerStore>(store: &S) {
    store.create_space("crm", None).unwrap();
    let sizes = [300usize, 300, 5000, 10, 10];
    let docs: Vec<StoredDoc> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| StoredDoc {
            collection: "contacts".into(),
            record: format!("c{i}"),
            doc: vec![7u8; size],
            row: None,
        })
        .collect();
    assert!(store.store_docs("crm", &docs, Seq(0), Seq(0)).unwrap());
    let page = |after: Option<&str>, bytes| {
        let limit = PageLimit { count: 100, bytes };
        let page = store.docs_page("crm", after.map(|r| ("contacts", r)), limit).unwrap();
        let records: Vec<String> = page.docs.iter().map(|d| d.record.clone()).collect();
        (records, page.more)
    };
    assert_eq!(page(None, 600), (vec!["c0".into(), "c1".into()], true));
    assert_eq!(page(None, 599), (vec!["c0".into()], true));
    assert_eq!(
        page(Some("c1"), 100),
        (vec!["c2".into()], true),
        "one item over the budget still comes"
    );
    assert_eq!(page(Some("c2"), 100), (vec!["c3".into(), "c4".into()], false));
    assert_eq!(page(None, 0), (vec!["c0".into()], true));

    append_ok(store, "crm", &new_ops(4));
    let sizes: Vec<usize> = everything(store, "crm")
        .iter()
        .map(|(_, s)| s.op.change.len())
        .collect();
    let seqs = |since, bytes| {
        let limit = PageLimit { count: 100, bytes };
        let rows = store.read_ops("crm", since, limit).unwrap();
        rows.iter().map(|(seq, _)| *seq).collect::<Vec<Seq>>()
    };
    assert_eq!(seqs(Seq(0), sizes[0] + sizes[1]), [1, 2]);
    assert_eq!(seqs(Seq(0), sizes[0] + sizes[1] - 1), [1]);
    assert_eq!(seqs(Seq(1), 0), [2], "one op over the budget still comes");
    assert_eq!(seqs(Seq(0), usize::MAX), [1, 2, 3, 4]);
}

/// A document's row comes back with it, is replaced or removed with it, and
/// counts toward a page's bytes. A document stored without one (by an older
/// build) comes back without one, wherever it stands among those that have one.
pub fn rows_travel_with_their_documents<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    schemaless_space(store, "after");
    let with_row = |record: &str, row: &[u8]| StoredDoc {
        row: Some(row.to_vec()),
        ..doc("contacts", record, b"doc")
    };
    assert!(
        store
            .store_docs("after", &[with_row("c0", b"other space")], Seq(0), Seq(1))
            .unwrap()
    );
    let first = [
        with_row("c1", b"r1"),
        doc("contacts", "c2", b"doc"),
        with_row("c3", b"r3"),
        doc("contacts", "c4", b"doc"),
    ];
    assert!(store.store_docs("crm", &first, Seq(0), Seq(4)).unwrap());
    let rows = |after: Option<&str>, limit: PageLimit| -> Vec<(String, Option<Vec<u8>>)> {
        store
            .docs_page("crm", after.map(|r| ("contacts", r)), limit)
            .unwrap()
            .docs
            .into_iter()
            .map(|d| (d.record, d.row))
            .collect()
    };
    let row = |record: &str, row: Option<&[u8]>| (record.to_string(), row.map(<[u8]>::to_vec));
    assert_eq!(
        rows(None, PageLimit::count(10)),
        [
            row("c1", Some(b"r1")),
            row("c2", None),
            row("c3", Some(b"r3")),
            row("c4", None)
        ]
    );
    // A page that starts mid-way still pairs each row with its own document.
    assert_eq!(rows(Some("c1"), PageLimit::count(1)), [row("c2", None)]);
    assert_eq!(
        rows(Some("c2"), PageLimit::count(10)),
        [row("c3", Some(b"r3")), row("c4", None)]
    );

    // Stored again: a new row replaces the old, and a document without one loses it.
    assert!(
        store
            .store_docs(
                "crm",
                &[with_row("c2", b"r2"), doc("contacts", "c3", b"new")],
                Seq(4),
                Seq(5)
            )
            .unwrap()
    );
    assert_eq!(
        rows(None, PageLimit::count(10)),
        [
            row("c1", Some(b"r1")),
            row("c2", Some(b"r2")),
            row("c3", None),
            row("c4", None)
        ]
    );

    // Budget: c1 and c2 are 3 + 2 bytes each.
    let limit = |bytes| PageLimit { count: 10, bytes };
    assert_eq!(rows(None, limit(10)).len(), 2);
    assert_eq!(rows(None, limit(9)).len(), 1, "the row's bytes count toward the budget");

    // Rows filled in where the space stands (from = through, as a snapshot
    // does): stored while it is still there, refused once it moved on.
    assert!(
        store
            .store_docs("crm", &[with_row("c4", b"r4")], Seq(5), Seq(5))
            .unwrap()
    );
    assert_eq!(store.materialized("crm").unwrap(), Seq(5));
    assert!(
        !store
            .store_docs("crm", &[with_row("c1", b"stale")], Seq(4), Seq(4))
            .unwrap()
    );
    assert_eq!(
        rows(None, PageLimit::count(10)),
        [
            row("c1", Some(b"r1")),
            row("c2", Some(b"r2")),
            row("c3", None),
            row("c4", Some(b"r4"))
        ]
    );
}
