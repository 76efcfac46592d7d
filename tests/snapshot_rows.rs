//! Bootstrap from snapshot documents that come with the server's rows: the
//! replica stores each document without loading it, and ends with the view,
//! conflicts and later merges of a replica that materializes every document
//! itself. A document is loaded, with every check outside bytes get, when its
//! record is next edited or merged.

#![cfg(feature = "server")]

mod common;

use serde_json::{Value, json};
use tidemark::model::ActorId;
use tidemark::protocol::message::{SnapshotResponse, SnapshotRow, decode_doc, encode_bytes};
use tidemark::protocol::{Response, SessionConfig};
use tidemark::record::{Fields, RecordDoc};
use tidemark::remote::RemoteError;
use tidemark::server::local::LocalRemote;
use tidemark::sync::Round;
use tidemark::{Error, Replica};

use common::server::{SPACE, Svc};

fn pages() -> SessionConfig {
    SessionConfig {
        snapshot_page: 7,
        ..SessionConfig::default()
    }
}

fn sync(replica: &Replica, service: &Svc, token: &str) {
    let remote = LocalRemote::new(service.clone(), token.to_string(), SPACE);
    Round::new(replica, pages())
        .run_blocking(|r| remote.call_blocking(r))
        .unwrap();
}

/// A space of 20 records written by two members: one record in conflict, one
/// deleted, one deleted and written again. Returns the service, the writer
/// `ada`, her token and the reader's.
fn seeded() -> (Svc, Replica, String, String) {
    let (service, tokens) = common::server::server(None, &["ada", "bob", "reader"]);
    let (ada, bob) = (Replica::in_memory().unwrap(), Replica::in_memory().unwrap());
    for i in 0..20 {
        ada.put(
            "contacts",
            &format!("c{i:02}"),
            json!({"n": i, "name": format!("N{i}")}),
        )
        .unwrap();
    }
    sync(&ada, &service, &tokens[0]);
    sync(&bob, &service, &tokens[1]);
    ada.put("contacts", "c01", json!({"name": "Ada's"})).unwrap();
    bob.put("contacts", "c01", json!({"name": "Bob's"})).unwrap();
    bob.delete("contacts", "c02").unwrap();
    bob.delete("contacts", "c03").unwrap();
    bob.put("contacts", "c03", json!({"back": true})).unwrap();
    sync(&ada, &service, &tokens[0]);
    sync(&bob, &service, &tokens[1]);
    sync(&ada, &service, &tokens[0]);
    service.materialize(SPACE).unwrap();
    (service, ada, tokens[0].clone(), tokens[2].clone())
}

/// A fresh replica bootstrapped by `token`, each snapshot page passed through `tamper` first.
fn bootstrap(service: &Svc, token: &str, mut tamper: impl FnMut(&mut SnapshotResponse)) -> tidemark::Result<Replica> {
    let replica = Replica::in_memory().unwrap();
    let remote = LocalRemote::new(service.clone(), token.to_string(), SPACE);
    let call = |request| -> Result<Response, RemoteError> {
        let mut answer = remote.call_blocking(request)?;
        if let Response::Snapshot(page) = &mut answer {
            tamper(page);
        }
        Ok(answer)
    };
    Round::new(&replica, pages()).run_blocking(call)?;
    Ok(replica)
}

/// The live records of a list, in id order.
type Records = Vec<(String, Fields)>;

/// Everything a reader of the view sees: every live record and every conflict.
fn seen(replica: &Replica) -> (Records, String) {
    let list = replica.list("contacts", None, 1000).unwrap();
    let conflicts = format!("{:?}", replica.conflicts(None, None).unwrap());
    (list, conflicts)
}

fn row_of<'a>(page: &'a mut SnapshotResponse, record: &str) -> Option<&'a mut Option<SnapshotRow>> {
    page.docs.iter_mut().find(|d| d.record == record).map(|d| &mut d.row)
}

#[test]
fn rows_give_the_view_a_replica_would_materialize_itself() {
    let (service, ada, ada_token, reader) = seeded();
    let mut rows = 0;
    let with_rows = bootstrap(&service, &reader, |page| {
        rows += page.docs.iter().filter(|d| d.row.is_some()).count();
    })
    .unwrap();
    assert_eq!(rows, 20, "every document came with its row");
    let without = bootstrap(&service, &reader, |page| {
        page.docs.iter_mut().for_each(|d| d.row = None)
    })
    .unwrap();

    let expected = seen(&ada);
    assert_eq!(expected.0.len(), 19, "c02 is deleted");
    assert!(expected.1.contains("c01"), "c01 is in conflict: {}", expected.1);
    assert_eq!(seen(&with_rows), expected);
    assert_eq!(seen(&without), expected);

    // Later merges into the unloaded documents agree too.
    ada.put("contacts", "c05", json!({"n": 50})).unwrap();
    ada.put("contacts", "c03", json!({"back": "again"})).unwrap();
    sync(&ada, &service, &ada_token);
    sync(&with_rows, &service, &reader);
    sync(&without, &service, &reader);
    let expected = seen(&ada);
    assert_eq!(expected.0.iter().find(|(id, _)| id == "c05").unwrap().1["n"], json!(50));
    assert_eq!(seen(&with_rows), expected);
    assert_eq!(seen(&without), expected);
}

#[test]
fn a_record_is_materialized_from_its_document_when_next_merged_or_edited() {
    let (service, ada, ada_token, reader) = seeded();
    // Rows the documents do not say: shown as they are, which proves the
    // documents were not loaded at bootstrap...
    let replica = bootstrap(&service, &reader, |page| {
        for record in ["c05", "c06"] {
            if let Some(row) = row_of(page, record) {
                let fields = serde_json::value::to_raw_value(&json!({"n": 999})).unwrap();
                row.as_mut().unwrap().fields = Some(fields);
            }
        }
    })
    .unwrap();
    assert_eq!(replica.get("contacts", "c05").unwrap().unwrap()["n"], json!(999));

    // ...and gone once the record is merged (c05) or edited here (c06).
    ada.put("contacts", "c05", json!({"extra": 1})).unwrap();
    sync(&ada, &service, &ada_token);
    sync(&replica, &service, &reader);
    replica.put("contacts", "c06", json!({"extra": 2})).unwrap();
    assert_eq!(
        Value::Object(replica.get("contacts", "c05").unwrap().unwrap()),
        json!({"n": 5, "name": "N5", "extra": 1})
    );
    assert_eq!(
        Value::Object(replica.get("contacts", "c06").unwrap().unwrap()),
        json!({"n": 6, "name": "N6", "extra": 2})
    );
}

#[test]
fn a_row_rendered_by_other_rules_is_materialized_here() {
    let (service, ada, _, reader) = seeded();
    let replica = bootstrap(&service, &reader, |page| {
        if let Some(Some(row)) = row_of(page, "c04") {
            row.rules += 1;
            row.fields = Some(serde_json::value::to_raw_value(&json!({"n": 999})).unwrap());
        }
    })
    .unwrap();
    assert_eq!(seen(&replica), seen(&ada), "the row of other rules is not taken");
}

#[test]
fn a_row_that_does_not_check_or_a_document_of_several_chunks_is_materialized_here() {
    let (service, ada, _, reader) = seeded();
    let replica = bootstrap(&service, &reader, |page| {
        // Not an object: the row is ignored.
        if let Some(row) = row_of(page, "c07") {
            row.as_mut().unwrap().fields = Some(serde_json::value::to_raw_value(&json!([1, 2])).unwrap());
        }
        // A document followed by a change chunk: `load_stored` would not check
        // the change as outside bytes, so the row is set aside and the bytes loaded here.
        if let Some(d) = page.docs.iter_mut().find(|d| d.record == "c08") {
            let mut doc = decode_doc(&d.doc).unwrap();
            let mut extra = RecordDoc::load(&doc, ActorId([7; 16])).unwrap();
            let late = json!({"late": true}).as_object().unwrap().clone();
            extra.put("contacts", &late, None).unwrap();
            doc.extend_from_slice(&extra.commit(0).unwrap());
            d.doc = encode_bytes(&doc);
        }
    })
    .unwrap();
    let expected = seen(&ada);
    let (list, _) = seen(&replica);
    let find = |list: &[(String, Fields)], id: &str| list.iter().find(|(r, _)| r == id).unwrap().1.clone();
    assert_eq!(find(&list, "c07"), find(&expected.0, "c07"));
    assert_eq!(
        find(&list, "c08")["late"],
        json!(true),
        "the appended change is in the view"
    );
}

#[test]
fn a_document_that_does_not_load_fails_its_record_when_it_is_next_loaded() {
    let (service, _, _, reader) = seeded();
    let replica = bootstrap(&service, &reader, |page| {
        if let Some(d) = page.docs.iter_mut().find(|d| d.record == "c09") {
            let mut doc = decode_doc(&d.doc).unwrap();
            // Past the header: the chunk still parses as one document chunk.
            let last = doc.len() - 1;
            doc[last] ^= 0xff;
            doc[last - 3] ^= 0x55;
            d.doc = encode_bytes(&doc);
            // Its row says it holds a conflict, so listing conflicts loads it.
            d.row.as_mut().unwrap().conflicts = 1;
        }
    })
    .unwrap();
    assert_eq!(replica.list("contacts", None, 100).unwrap().len(), 19);
    match replica.conflicts(None, None) {
        Err(Error::Corrupt(e)) => assert!(e.to_string().contains("record contacts/c09"), "{e}"),
        other => panic!("listing conflicts over a document that does not load: {other:?}"),
    }
    match replica.put("contacts", "c09", json!({"n": 1})) {
        Err(Error::Corrupt(e)) => {
            let said = e.to_string();
            assert!(
                said.contains("record contacts/c09") && said.contains("record document"),
                "{said}"
            );
        }
        other => panic!("editing a record whose document does not load: {other:?}"),
    }
    // The others are edited as usual.
    replica.put("contacts", "c10", json!({"n": 1})).unwrap();
    assert_eq!(replica.get("contacts", "c10").unwrap().unwrap()["n"], json!(1));
}

/// A server store written before rows existed holds documents alone. Its first
/// snapshot renders their rows, serves them, and stores them beside the
/// documents, as the materializer would have.
#[test]
fn a_store_without_rows_gets_them_at_its_first_snapshot() {
    use tidemark::server::store::{PageLimit, ServerStore, StoredDoc};
    let (service, ada, _, reader) = seeded();
    let store = service.store();
    let all = || -> Vec<StoredDoc> { store.docs_page(SPACE, None, PageLimit::count(1000)).unwrap().docs };
    let rendered = all();
    assert!(rendered.iter().all(|d| d.row.is_some()));
    let as_of = store.materialized(SPACE).unwrap();
    let older: Vec<StoredDoc> = rendered.iter().map(|d| StoredDoc { row: None, ..d.clone() }).collect();
    assert!(store.store_docs(SPACE, &older, as_of, as_of).unwrap());
    assert!(all().iter().all(|d| d.row.is_none()), "the store holds documents alone");

    let mut served = 0;
    let replica = bootstrap(&service, &reader, |page| {
        served += page.docs.iter().filter(|d| d.row.is_some()).count();
    })
    .unwrap();
    assert_eq!(served, rendered.len(), "every document went out with its row");
    assert_eq!(all(), rendered, "the rows are stored as the materializer stores them");
    assert_eq!(seen(&replica), seen(&ada));
}

#[test]
fn a_record_held_here_already_is_merged_and_a_page_in_any_order_gives_the_same_view() {
    let (service, ada, ada_token, _) = seeded();
    // Edited here before the first sync: c04 has a document the snapshot's must merge into.
    let replica = Replica::in_memory().unwrap();
    replica.put("contacts", "c04", json!({"mine": true})).unwrap();
    let remote = LocalRemote::new(service.clone(), ada_token.clone(), SPACE);
    let mut pages_seen = 0;
    let call = |request| -> Result<Response, RemoteError> {
        let mut answer = remote.call_blocking(request)?;
        if let Response::Snapshot(page) = &mut answer {
            // A row the documents do not say: shown only if c04's document were
            // stored as it came, over the one held here.
            if let Some(row) = row_of(page, "c04") {
                let fields = serde_json::value::to_raw_value(&json!({"n": 999})).unwrap();
                row.as_mut().unwrap().fields = Some(fields);
            }
            // Out of order, and the first record twice.
            pages_seen += 1;
            page.docs.reverse();
            let first = page.docs[0].clone();
            page.docs.push(first);
        }
        Ok(answer)
    };
    Round::new(&replica, pages()).run_blocking(call).unwrap();
    assert!(pages_seen >= 3, "{pages_seen} pages");
    assert_eq!(
        Value::Object(replica.get("contacts", "c04").unwrap().unwrap()),
        json!({"n": 4, "name": "N4", "mine": true})
    );
    // The local edit reached the server; ada and this replica now see the same.
    sync(&ada, &service, &ada_token);
    sync(&replica, &service, &ada_token);
    assert_eq!(seen(&replica), seen(&ada));
    assert_eq!(ada.get("contacts", "c04").unwrap().unwrap()["mine"], json!(true));
}
