//! Sync faults: re-push after a reset, rejections, package changes,
//! body limits, discards, racing bootstraps and restored backups (more of
//! those in `server_restore.rs`). None may lose an edit.

#![cfg(all(feature = "server", feature = "http-client"))]

mod common;

use std::sync::Arc;

use serde_json::json;
use tidemark::protocol::message::{CreateSpace, Grant};
use tidemark::protocol::{Request, Session, SessionConfig};
use tidemark::remote::http::HttpRemote;
use tidemark::server::local::LocalRemote;
use tidemark::server::store::redb::RedbStore;
use tidemark::server::{Limits, Service};
use tidemark::sync::Round;
use tidemark::{Package, Replica};

use common::server::{SPACE, Svc, server_on, start_http};

fn server(package: Option<Package>, users: &[&str], limits: Limits) -> (Svc, Vec<String>) {
    server_on(RedbStore::in_memory().unwrap(), package, users, limits)
}

fn remote(service: &Svc, token: &str) -> LocalRemote<RedbStore> {
    LocalRemote::new(service.clone(), token.to_string(), SPACE)
}

fn sync(replica: &Replica, r: &LocalRemote<RedbStore>) -> tidemark::Result<tidemark::protocol::RoundSummary> {
    Round::new(replica, SessionConfig::default()).run_blocking(|req| r.call_blocking(req))
}

/// The re-push owed after an epoch change is stored, not only remembered by the
/// round: a round that stops before the re-push finishes leaves it to the next
/// one, which sees the new epoch already stored and still re-pushes everything.
#[test]
fn an_interrupted_repush_is_resumed_by_the_next_round() {
    let (old, old_tokens) = server(None, &["alice"], Limits::default());
    let replica = Replica::in_memory().unwrap();
    replica.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    sync(&replica, &remote(&old, &old_tokens[0])).unwrap();

    let (fresh, tokens) = server(None, &["alice"], Limits::default());
    let r = remote(&fresh, &tokens[0]);
    // First round: a quiet round's pull meets another history, the package
    // answer arrives (epoch change noticed), then the connection drops.
    let mut session = Session::new(SessionConfig::default());
    let request = session.next_request(&replica).unwrap().unwrap();
    assert!(matches!(request, Request::Pull { .. }), "{request:?}");
    match r.call_blocking(request) {
        Ok(answer) => session.handle_response(&replica, answer).unwrap(),
        Err(error) => session.handle_error(&replica, error).unwrap(),
    }
    let request = session.next_request(&replica).unwrap().unwrap();
    assert_eq!(request, Request::Package);
    session
        .handle_response(&replica, r.call_blocking(request).unwrap())
        .unwrap();
    let next = session.next_request(&replica).unwrap().unwrap();
    assert!(matches!(next, Request::Push(_)), "the re-push was next");
    // ... network error here: the round ends.

    // Later rounds complete fine.
    sync(&replica, &r).unwrap();
    sync(&replica, &r).unwrap();
    assert!(
        fresh.record("alice", SPACE, "contacts", "c1").unwrap().is_some(),
        "c1 never reached the restored server"
    );
}

/// A refusal during a re-push skips the refused op only: the ops in front of it
/// in the same batch are sent again, not skipped for good.
#[test]
fn a_refusal_during_the_repush_keeps_the_earlier_ops_of_the_batch() {
    let (old, old_tokens) = server(None, &["alice"], Limits::default());
    let replica = Replica::in_memory().unwrap();
    replica.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    replica.put("contacts", "c2", json!({"nickname": "x"})).unwrap();
    sync(&replica, &remote(&old, &old_tokens[0])).unwrap();

    // The server is restored into a space whose package has no `nickname` field.
    let (fresh, tokens) = server(Some(common::crm_package()), &["alice"], Limits::default());
    let summary = sync(&replica, &remote(&fresh, &tokens[0])).unwrap();
    assert!(summary.epoch_changed);
    assert!(
        fresh.record("alice", SPACE, "contacts", "c1").unwrap().is_some(),
        "c1 (index 0 of the refused batch) was skipped: {summary:?}"
    );
}

/// A refused op leaves its record's history: the later edits of the record are
/// written again on top of what the server holds and delivered, and the
/// replica's view equals the server's once nothing is pending.
#[test]
fn later_edits_of_a_record_are_delivered_after_its_refused_edit() {
    let (service, tokens) = server(Some(common::crm_package()), &["alice", "bob"], Limits::default());
    let alice = Replica::in_memory().unwrap(); // schemaless until its first sync
    alice.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    alice
        .put("contacts", "c1", json!({"nickname": "not in the package"}))
        .unwrap();
    alice
        .put("contacts", "c1", json!({"email": "ada@example.com"}))
        .unwrap();
    alice.put("contacts", "c2", json!({"name": "Grace"})).unwrap();
    let summary = sync(&alice, &remote(&service, &tokens[0])).unwrap();
    assert_eq!(summary.rejected + summary.rejected_by_package, 1, "{summary:?}");
    assert_eq!(
        summary.pushed, 3,
        "the first edit of c1, its later edit written again, c2"
    );
    let rejected = alice.rejected().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].code, "invalid_after_package_change");
    assert_eq!(
        rejected[0].values.as_ref().unwrap().set,
        *json!({"nickname": "not in the package"}).as_object().unwrap()
    );
    assert_eq!(alice.status().unwrap().pending, 0);

    let bob = Replica::in_memory().unwrap();
    sync(&bob, &remote(&service, &tokens[1])).unwrap();
    let on_server = service.record("alice", SPACE, "contacts", "c1").unwrap().unwrap();
    assert_eq!(
        on_server,
        *json!({"name": "Ada", "email": "ada@example.com"}).as_object().unwrap()
    );
    assert_eq!(bob.get("contacts", "c1").unwrap().unwrap(), on_server, "peers agree");
    assert_eq!(
        alice.get("contacts", "c1").unwrap().unwrap(),
        on_server,
        "and so does alice"
    );
    assert_eq!(bob.get("contacts", "c2").unwrap().unwrap()["name"], "Grace");
    let view = alice.view_rows().unwrap();
    alice.rebuild_view().unwrap();
    assert_eq!(alice.view_rows().unwrap(), view, "the log rebuilds the same view");
}

/// A pulled op is not judged by the replica's current package: an op valid
/// when the server stored it and invalid under a newer package is merged, so the
/// pull goes on past it instead of failing the page every round.
#[test]
fn a_package_change_does_not_wedge_the_pull_of_older_ops() {
    let v1 = Package::from_json(
        r#"{"version": 1, "collections": {"contacts": {"fields": {"name": "string", "nickname": "string"}}}}"#,
    )
    .unwrap();
    let v2 =
        Package::from_json(r#"{"version": 2, "collections": {"contacts": {"fields": {"name": "string"}}}}"#).unwrap();
    let (service, tokens) = server(Some(v1), &["alice", "bob"], Limits::default());
    let (ra, rb) = (remote(&service, &tokens[0]), remote(&service, &tokens[1]));
    let alice = Replica::in_memory().unwrap();
    let bob = Replica::in_memory().unwrap();
    alice.put("contacts", "c0", json!({"name": "first"})).unwrap();
    sync(&alice, &ra).unwrap();
    sync(&bob, &rb).unwrap(); // bob is caught up (pulled = 1)

    alice.put("contacts", "c1", json!({"nickname": "Ada"})).unwrap();
    sync(&alice, &ra).unwrap(); // valid under v1: stored as seq 2
    service.set_package(SPACE, Some(&v2)).unwrap(); // "ops already stored stay"
    alice.put("contacts", "c2", json!({"name": "later"})).unwrap();
    sync(&alice, &ra).unwrap();

    let first = sync(&bob, &rb);
    let second = sync(&bob, &rb);
    assert!(
        first.is_ok() && second.is_ok(),
        "bob's pull is wedged: {:?} / {:?}",
        first.err().map(|e| e.to_string()),
        second.err().map(|e| e.to_string())
    );
    assert!(bob.get("contacts", "c2").unwrap().is_some());
}

/// Push batches are bounded by bytes as well as ops: a batch whose body is over
/// the server's limit (413 `too_large`, no op named) is sent again in smaller
/// batches, so the queue never wedges on one batch. (With the defaults this
/// needs 500 pending ops averaging ~50 KB: 500 x 64 KB base64 > 32 MiB.)
#[test]
fn a_push_batch_over_the_body_limit_is_split() {
    let limits = Limits {
        max_body_bytes: 256 * 1024,
        ..Limits::default()
    };
    let (service, tokens) = server(None, &["alice"], limits);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (url, _stop) = rt.block_on(start_http(service.clone()));
    let replica = Replica::in_memory().unwrap();
    for i in 0..10 {
        // ~40 KB per op: each one is far under max_op_bytes (256 KB).
        replica
            .put("contacts", &format!("c{i}"), json!({"bio": "x".repeat(40_000 + i)}))
            .unwrap();
    }
    let r = HttpRemote::new(&url, &tokens[0], SPACE).unwrap();
    let mut last = None;
    for _ in 0..3 {
        last = Some(rt.block_on(tidemark::sync::Round::new(&replica, SessionConfig::default()).run(&r)));
    }
    let last = last.unwrap();
    assert!(
        last.is_ok() && replica.status().unwrap().pending == 0,
        "still wedged after 3 rounds: {:?}, pending {}",
        last.err().map(|e| e.to_string()),
        replica.status().unwrap().pending
    );
}

/// `rejected --discard` takes the op out of the queue for good: the next round
/// does not push the op the user discarded, not even once the member may write.
#[test]
fn a_discarded_op_is_never_pushed() {
    let (service, tokens) = server(None, &["alice"], Limits::default());
    service.add_user("viewer").unwrap();
    let viewer = service.new_token("viewer").unwrap().token;
    let grant = |read_only| {
        service
            .grant(&Grant {
                user: "viewer".into(),
                space: SPACE.into(),
                read_only,
            })
            .unwrap()
    };
    grant(true);
    let _ = tokens;
    let replica = Replica::in_memory().unwrap();
    replica.put("contacts", "oops", json!({"n": 1})).unwrap();
    let r = remote(&service, &viewer);
    let summary = sync(&replica, &r).unwrap();
    assert_eq!(summary.rejected, 1);
    assert_eq!(replica.resolve_rejected(false).unwrap(), 1, "discarded for good");
    assert_eq!(replica.status().unwrap().pending, 0);
    grant(false); // later the viewer may write
    sync(&replica, &r).unwrap();
    assert!(
        service.record("viewer", SPACE, "contacts", "oops").unwrap().is_none(),
        "the discarded op reached the server"
    );
}

/// Two processes bootstrapping the same store (login's initial sync and a
/// `sync --watch`): a snapshot page answered late, after the other process
/// finished the bootstrap, is dropped unapplied; it never moves `pulled` past
/// ops of records before its cursor.
#[test]
fn a_late_snapshot_page_from_a_second_process_is_dropped() {
    let (service, tokens) = server(None, &["alice", "bob"], Limits::default());
    let (ra, rb) = (remote(&service, &tokens[0]), remote(&service, &tokens[1]));
    let alice = Replica::in_memory().unwrap();
    alice.put("contacts", "a", json!({"v": 1})).unwrap();
    alice.put("contacts", "b", json!({"v": 1})).unwrap();
    sync(&alice, &ra).unwrap();

    let bob = Replica::in_memory().unwrap();
    let config = SessionConfig {
        snapshot_page: 1,
        ..SessionConfig::default()
    };
    let drive = |s: &mut Session, stop_at_snapshot_after: Option<&str>| -> Option<Request> {
        while let Some(req) = s.next_request(&bob).unwrap() {
            if let (Request::Snapshot { after: Some(a), .. }, Some(want)) = (&req, stop_at_snapshot_after) {
                if a.ends_with(want) {
                    return Some(req);
                }
            }
            s.handle_response(&bob, rb.call_blocking(req).unwrap()).unwrap();
        }
        None
    };
    // Process 1 applies the first snapshot page; process 2 then asks for the second one,
    // but its answer is slow.
    let mut p1 = Session::new(config);
    let mut p2 = Session::new(config);
    let _ = drive(&mut p1, Some("\na"));
    let held = drive(&mut p2, Some("\na")).expect("process 2 asks for the page after a");
    // Process 1 finishes the bootstrap and the pull.
    assert!(drive(&mut p1, None).is_none());
    // Alice edits record a (before the held cursor) after that.
    alice.put("contacts", "a", json!({"v": 2})).unwrap();
    sync(&alice, &ra).unwrap();
    // Process 2's late answer arrives; it finishes its round.
    p2.handle_response(&bob, rb.call_blocking(held).unwrap()).unwrap();
    assert!(drive(&mut p2, None).is_none());
    // Any number of later rounds.
    sync(&bob, &rb).unwrap();
    assert_eq!(
        bob.get("contacts", "a").unwrap().unwrap()["v"],
        2,
        "alice's edit of a (seq 3) was skipped: pulled = {}",
        bob.status().unwrap().pulled
    );
}

/// Restoring a copy of `server.redb` (the ordinary backup) keeps the epoch, and
/// the restored server's head may grow back past a replica's `pulled`: the
/// replica still notices (the op at its watermark differs), pulls the new ops
/// that reuse its seqs, and re-pushes what it pushed after the backup.
#[test]
fn a_restored_backup_is_noticed_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup.redb");
    let open = || loop {
        match RedbStore::open(&data) {
            Ok(store) => {
                break Arc::new(Service::new(store, Limits::default(), Some("admin-token-0123456789")).unwrap());
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)), // the old materializer thread is closing
        }
    };
    let service = open();
    service
        .create_space(&CreateSpace {
            space: SPACE.into(),
            package: None,
        })
        .unwrap();
    let mut tokens = Vec::new();
    for u in ["alice", "bob", "carol"] {
        tokens.push(service.add_user(u).unwrap().token);
        service
            .grant(&Grant {
                user: u.into(),
                space: SPACE.into(),
                read_only: false,
            })
            .unwrap();
    }
    let (alice, bob, carol) = (
        Replica::in_memory().unwrap(),
        Replica::in_memory().unwrap(),
        Replica::in_memory().unwrap(),
    );
    alice.put("contacts", "c1", json!({"v": 1})).unwrap();
    sync(&alice, &remote(&service, &tokens[0])).unwrap();
    drop(service);
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::copy(data.join(RedbStore::FILE_NAME), &backup).unwrap(); // nightly backup: head 1

    let service = open();
    alice.put("contacts", "c2", json!({"v": 2})).unwrap();
    sync(&alice, &remote(&service, &tokens[0])).unwrap(); // seq 2
    sync(&bob, &remote(&service, &tokens[1])).unwrap(); // bob: pulled 2
    drop(service);
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::copy(&backup, data.join(RedbStore::FILE_NAME)).unwrap(); // restore: head 1

    let service = open();
    carol.put("contacts", "c3", json!({"v": 3})).unwrap();
    sync(&carol, &remote(&service, &tokens[2])).unwrap(); // seq 2 again, another op
    let summary_a = sync(&alice, &remote(&service, &tokens[0])).unwrap();
    sync(&bob, &remote(&service, &tokens[1])).unwrap();
    let lost = (
        service.record("alice", SPACE, "contacts", "c2").unwrap().is_none(),
        bob.get("contacts", "c3").unwrap().is_none(),
    );
    assert_eq!(
        lost,
        (false, false),
        "(alice's c2 missing on the server, carol's c3 missing on bob); alice saw epoch change: {}",
        summary_a.epoch_changed
    );
}

/// A member who may only read when the server lost its data cannot re-push its
/// log: its own edits go to the rejected list (a retry sends them once it may
/// write again), the others' are left to their authors, and it keeps pulling.
#[test]
fn a_read_only_member_keeps_pulling_after_a_server_reset() {
    let (old, tokens) = server(None, &["alice", "bob"], Limits::default());
    let (alice, bob) = (Replica::in_memory().unwrap(), Replica::in_memory().unwrap());
    alice.put("contacts", "a1", json!({"v": 1})).unwrap();
    sync(&alice, &remote(&old, &tokens[0])).unwrap();
    bob.put("contacts", "b1", json!({"v": 2})).unwrap();
    sync(&bob, &remote(&old, &tokens[1])).unwrap();

    // A new server (a new epoch) where bob may only read.
    let (new, tokens) = server(None, &["alice", "bob"], Limits::default());
    new.grant(&Grant {
        user: "bob".into(),
        space: SPACE.into(),
        read_only: true,
    })
    .unwrap();
    alice.put("contacts", "a2", json!({"v": 3})).unwrap();
    sync(&alice, &remote(&new, &tokens[0])).unwrap();
    let summary = sync(&bob, &remote(&new, &tokens[1])).expect("a read-only member's round completes");
    assert!(summary.epoch_changed);
    let rejected: Vec<_> = bob
        .rejected()
        .unwrap()
        .into_iter()
        .map(|r| (r.record, r.code))
        .collect();
    assert_eq!(rejected, [("b1".to_string(), "read_only".to_string())]);
    assert!(
        bob.get("contacts", "a2").unwrap().is_some(),
        "bob pulled alice's new edit"
    );
    assert_eq!(bob.status().unwrap().pending, 0);

    // Write access back: the retried edit reaches the server and alice.
    new.grant(&Grant {
        user: "bob".into(),
        space: SPACE.into(),
        read_only: false,
    })
    .unwrap();
    bob.resolve_rejected(true).unwrap();
    sync(&bob, &remote(&new, &tokens[1])).unwrap();
    sync(&alice, &remote(&new, &tokens[0])).unwrap();
    assert_eq!(alice.get("contacts", "b1").unwrap().unwrap()["v"], json!(2));
}
