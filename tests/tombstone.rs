//! A delete that wins over a concurrent undelete: the record reads as deleted,
//! the lost undelete is listed as a conflict of field `_deleted`, a put brings
//! the record back and a delete confirms it, on replicas and through a server.

#![cfg(feature = "server")]

mod common;

use serde_json::json;
use tidemark::Replica;
use tidemark::protocol::SessionConfig;
use tidemark::replica::PulledPage;
use tidemark::server::local::LocalRemote;
use tidemark::sync::Round;

use common::send;
use common::server::{SPACE, server};

/// Two replicas where `a` deleted c1 and put it back while `b`, unaware of it,
/// deleted it too; both have exchanged everything. On odd rounds `b` edits the
/// record a few times first, so that its delete is automerge's winner (a higher
/// counter) rather than `a`'s undelete.
fn delete_and_concurrent_undelete(round: usize) -> (Replica, Replica) {
    let a = Replica::in_memory().unwrap();
    a.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    let b = Replica::in_memory().unwrap();
    send(&a, &b);
    for n in 0..(round % 2) * 3 {
        b.put("contacts", "c1", json!({ "n": n })).unwrap();
    }
    b.delete("contacts", "c1").unwrap();
    a.delete("contacts", "c1").unwrap();
    a.put("contacts", "c1", json!({"age": 36})).unwrap();
    send(&a, &b);
    send(&b, &a);
    (a, b)
}

fn listed_fields(r: &Replica) -> Vec<(String, Vec<serde_json::Value>)> {
    r.conflicts(Some("contacts"), Some("c1"))
        .unwrap()
        .into_iter()
        .flat_map(|c| c.fields)
        .map(|f| (f.field, f.values.into_iter().map(|v| v.value).collect()))
        .collect()
}

/// One replica deletes; another deletes and puts the record back, unaware of the
/// first delete. Whatever the actors (which decide automerge's winner), the delete
/// wins over the concurrent undelete, the lost undelete is listed as a conflict of
/// field `_deleted`, and a later put brings the record back.
#[test]
fn a_delete_wins_over_a_concurrent_undelete_and_says_so() {
    for round in 0..8 {
        let (a, b) = delete_and_concurrent_undelete(round);
        for r in [&a, &b] {
            assert_eq!(r.get("contacts", "c1").unwrap(), None, "round {round}");
            assert!(r.is_deleted("contacts", "c1").unwrap());
            assert_eq!(
                listed_fields(r),
                [("_deleted".to_string(), vec![json!(true), json!(false)])],
                "round {round}: the deletes first, as the view shows them"
            );
            let before = r.view_rows().unwrap();
            r.rebuild_view().unwrap();
            assert_eq!(r.view_rows().unwrap(), before);
        }
        b.put("contacts", "c1", json!({"email": "ada@example.com"})).unwrap();
        send(&b, &a);
        for r in [&a, &b] {
            let back = r.get("contacts", "c1").unwrap().unwrap();
            assert_eq!((&back["age"], &back["email"]), (&json!(36), &json!("ada@example.com")));
            assert!(
                listed_fields(r).is_empty(),
                "round {round}: the put settled it: {:?}",
                listed_fields(r)
            );
        }
    }
}

/// Deleting a record whose delete won over an undelete confirms the delete:
/// the conflict goes, and an undelete made concurrently with the confirmation
/// loses to it as to any delete, whatever the op order.
#[test]
fn deleting_again_confirms_a_delete_that_won_over_an_undelete() {
    for round in 0..8 {
        let (a, b) = delete_and_concurrent_undelete(round);
        assert!(
            a.delete("contacts", "c1").unwrap().is_some(),
            "round {round}: the confirmation is an op"
        );
        send(&a, &b);
        for r in [&a, &b] {
            assert_eq!(r.get("contacts", "c1").unwrap(), None, "round {round}");
            assert!(listed_fields(r).is_empty(), "round {round}: confirmed");
        }
        assert_eq!(a.delete("contacts", "c1").unwrap(), None, "nothing left to confirm");

        let (a, b) = delete_and_concurrent_undelete(round);
        a.delete("contacts", "c1").unwrap();
        b.put("contacts", "c1", json!({"email": "ada@example.com"})).unwrap();
        send(&a, &b);
        send(&b, &a);
        for r in [&a, &b] {
            assert_eq!(r.get("contacts", "c1").unwrap(), None, "round {round}: the delete wins");
            assert_eq!(
                listed_fields(r),
                [("_deleted".to_string(), vec![json!(true), json!(false)])],
                "round {round}: and the lost undelete is listed"
            );
        }
        b.put("contacts", "c1", json!({"vip": true})).unwrap();
        send(&b, &a);
        assert_eq!(a.get("contacts", "c1").unwrap().unwrap()["email"], "ada@example.com");
    }
}

/// A put that settles a listed `_deleted` conflict is a fresh undelete: a delete
/// made concurrently with it (by a replica that saw the record live) wins, and
/// the lost undelete is listed again, whatever automerge's winner was.
#[test]
fn a_delete_concurrent_with_the_settling_put_wins_and_is_listed() {
    for round in 0..8 {
        let (a, b) = delete_and_concurrent_undelete(round);
        // c saw a's own ops only (the creation, a's delete and a's undelete), so
        // its delete supersedes a's undelete but not b's delete.
        let c = Replica::in_memory().unwrap();
        let actor = a.actor().unwrap();
        let own = common::all_ops(&a)
            .into_iter()
            .filter(|o| o.op.actor == actor)
            .collect();
        c.apply_pulled(&PulledPage {
            ops: own,
            end: tidemark::Seq(0),
            mark: None,
        })
        .unwrap();
        assert!(c.get("contacts", "c1").unwrap().is_some());
        b.put("contacts", "c1", json!({"email": "ada@example.com"})).unwrap();
        c.delete("contacts", "c1").unwrap();
        for (from, to) in [(&b, &a), (&c, &a), (&a, &b), (&a, &c)] {
            send(from, to);
        }
        for r in [&a, &b, &c] {
            assert_eq!(r.get("contacts", "c1").unwrap(), None, "round {round}: the delete wins");
            assert_eq!(
                listed_fields(r),
                [("_deleted".to_string(), vec![json!(true), json!(false)])],
                "round {round}: the lost undelete is listed"
            );
        }
    }
}

/// The confirming change (a false, then a true, over both values) and the
/// settling put pass the server's validation and reach every replica.
#[test]
fn the_settling_changes_pass_through_a_server() {
    for round in 0..4 {
        let (service, tokens) = server(None, &["ann", "bob"]);
        let remotes: Vec<LocalRemote<_>> = tokens
            .iter()
            .map(|t| LocalRemote::new(service.clone(), t.clone(), SPACE))
            .collect();
        let sync = |r: &Replica, i: usize| {
            let summary = Round::new(r, SessionConfig::default())
                .run_blocking(|q| remotes[i].call_blocking(q))
                .unwrap();
            assert_eq!(summary.rejected, 0, "round {round}: {summary:?}");
        };
        let (a, b) = delete_and_concurrent_undelete(round);
        sync(&a, 0);
        sync(&b, 1);
        a.delete("contacts", "c1").unwrap();
        sync(&a, 0);
        sync(&b, 1);
        assert_eq!(service.record("ann", SPACE, "contacts", "c1").unwrap(), None);
        assert!(listed_fields(&b).is_empty(), "round {round}");
        b.put("contacts", "c1", json!({"vip": true})).unwrap();
        sync(&b, 1);
        sync(&a, 0);
        let back = service.record("ann", SPACE, "contacts", "c1").unwrap().unwrap();
        assert_eq!(
            (&back["age"], &back["vip"]),
            (&json!(36), &json!(true)),
            "round {round}"
        );
        assert_eq!(a.get("contacts", "c1").unwrap(), Some(back));
    }
}
