//! A server restored from a backup: what it lost comes back from the members
//! that hold it (their own ops, ops they pulled, changes inside snapshot
//! documents), and a change it lost gives way to the one that took its place.

#![cfg(feature = "server")]

use std::sync::Arc;

use serde_json::json;
use tidemark::Replica;
use tidemark::protocol::message::{CreateSpace, Grant};
use tidemark::protocol::{Request, SessionConfig};
use tidemark::server::local::LocalRemote;
use tidemark::server::store::redb::RedbStore;
use tidemark::server::{Limits, Service};
use tidemark::sync::Round;

const SPACE: &str = "crm";

fn remote(service: &Arc<Service<RedbStore>>, token: &str) -> LocalRemote<RedbStore> {
    LocalRemote::new(service.clone(), token.to_string(), SPACE)
}

fn sync(replica: &Replica, r: &LocalRemote<RedbStore>) -> tidemark::Result<tidemark::protocol::RoundSummary> {
    Round::new(replica, SessionConfig::default()).run_blocking(|req| r.call_blocking(req))
}

/// A push the server answered, whose round then failed before pulling it back;
/// the server is restored from a backup taken before it, and another member
/// pushes enough since that the server's head is past that op's seq again. The
/// replica notices another op at the seq its own got, and re-pushes it.
#[test]
fn an_acknowledged_op_lost_by_a_restore_is_pushed_again_after_others_refill_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup.redb");
    let open = || open_service(&data);
    let (service, tokens) = space_on_disk(&data);
    let (alice, bob) = (Replica::in_memory().unwrap(), Replica::in_memory().unwrap());
    alice.put("contacts", "a1", json!({"v": 1})).unwrap();
    sync(&alice, &remote(&service, &tokens[0])).unwrap(); // seq 1, pulled 1
    drop(service);
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::copy(data.join(RedbStore::FILE_NAME), &backup).unwrap(); // backup: head 1

    let service = open();
    alice.put("contacts", "a2", json!({"v": 2})).unwrap();
    let r = remote(&service, &tokens[0]);
    let failed = Round::new(&alice, SessionConfig::default()).run_blocking(|request| match request {
        Request::Pull { .. } => Err(tidemark::remote::RemoteError::unreachable("the network failed")),
        other => r.call_blocking(other),
    });
    drop(r);
    assert!(failed.is_err(), "the round fails at its pull");
    assert_eq!(alice.status().unwrap().pending, 0, "a2 is acknowledged (seq 2)");
    drop(service);
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::copy(&backup, data.join(RedbStore::FILE_NAME)).unwrap(); // restore: head 1

    let service = open();
    bob.put("contacts", "b1", json!({"v": 3})).unwrap();
    bob.put("contacts", "b2", json!({"v": 4})).unwrap();
    sync(&bob, &remote(&service, &tokens[1])).unwrap(); // seqs 2 and 3: past a2's seq
    let summary = sync(&alice, &remote(&service, &tokens[0])).unwrap();
    assert!(summary.epoch_changed, "alice noticed the restore: {summary:?}");
    sync(&bob, &remote(&service, &tokens[1])).unwrap();
    assert!(
        service.record("alice", SPACE, "contacts", "a2").unwrap().is_some(),
        "a2 is back on the server"
    );
    assert_eq!(bob.get("contacts", "a2").unwrap().unwrap()["v"], json!(2));
}

/// A restore followed by re-pushes can bring the very op a replica pulled up
/// to back to the same seq, over another history: here a2 returns to seq 3
/// while seq 2 now holds another op. The op id at the watermark matches; its
/// mark (a new append's) does not, so carol pulls again and gets x1.
#[test]
fn the_same_op_back_at_the_same_seq_over_another_history_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup.redb");
    let (service, tokens) = space_on_disk(&data);
    let [alice, bob, carol, dave] = std::array::from_fn(|_| Replica::in_memory().unwrap());
    alice.put("contacts", "a1", json!({"v": 1})).unwrap();
    sync(&alice, &remote(&service, &tokens[0])).unwrap(); // seq 1
    drop(service);
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::copy(data.join(RedbStore::FILE_NAME), &backup).unwrap(); // backup: head 1

    let service = open_service(&data);
    bob.put("contacts", "b1", json!({"v": 2})).unwrap();
    sync(&bob, &remote(&service, &tokens[1])).unwrap(); // seq 2
    alice.put("contacts", "a2", json!({"v": 3})).unwrap();
    sync(&alice, &remote(&service, &tokens[0])).unwrap(); // a2 at seq 3, then b1 pulled
    sync(&carol, &remote(&service, &tokens[1])).unwrap();
    assert_eq!(carol.status().unwrap().pulled, 3);
    drop(service);
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::copy(&backup, data.join(RedbStore::FILE_NAME)).unwrap(); // restore: head 1

    let service = open_service(&data);
    dave.put("contacts", "x1", json!({"v": 4})).unwrap();
    sync(&dave, &remote(&service, &tokens[1])).unwrap(); // x1 at seq 2
    let summary = sync(&alice, &remote(&service, &tokens[0])).unwrap();
    assert!(summary.epoch_changed, "alice noticed the restore: {summary:?}");
    let pull = service.pull("bob", SPACE, tidemark::Seq(2), 1, None).unwrap();
    assert_eq!(
        pull.ops[0].op.id,
        alice
            .log_entries(tidemark::LogPos(0), 10)
            .unwrap()
            .iter()
            .find_map(|(_, e)| match e {
                tidemark::replica::LogEntry::Local(op) if op.record.as_str() == "a2" => Some(op.id),
                _ => None,
            })
            .unwrap(),
        "a2 is back at seq 3, the seq carol pulled up to"
    );

    let summary = sync(&carol, &remote(&service, &tokens[1])).unwrap();
    assert!(summary.epoch_changed, "carol noticed the other history: {summary:?}");
    assert_eq!(carol.get("contacts", "x1").unwrap().unwrap()["v"], json!(4));
    for (r, token) in [(&alice, 0), (&bob, 1), (&carol, 1), (&dave, 1), (&alice, 0)] {
        sync(r, &remote(&service, &tokens[token])).unwrap();
    }
    let rows = alice.view_rows().unwrap();
    for r in [&bob, &carol, &dave] {
        assert_eq!(r.view_rows().unwrap(), rows);
    }
}

/// A server on a store directory (so that it can be backed up and restored)
/// with the space and the writers alice and bob: the service and their tokens.
fn space_on_disk(data: &std::path::Path) -> (Arc<Service<RedbStore>>, Vec<String>) {
    let service = open_service(data);
    service
        .create_space(&CreateSpace {
            space: SPACE.into(),
            package: None,
        })
        .unwrap();
    let mut tokens = Vec::new();
    for u in ["alice", "bob"] {
        tokens.push(service.add_user(u).unwrap().token);
        service
            .grant(&Grant {
                user: u.into(),
                space: SPACE.into(),
                read_only: false,
            })
            .unwrap();
    }
    (service, tokens)
}

/// Opens the service on a store directory, waiting for a service just dropped
/// to let go of its file (its materializer thread closes it).
fn open_service(data: &std::path::Path) -> Arc<Service<RedbStore>> {
    loop {
        match RedbStore::open(data) {
            Ok(store) => {
                return Arc::new(Service::new(store, Limits::default(), Some("admin-token-0123456789")).unwrap());
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// A store copied before its first edit writes as the same actor as the
/// original. The original's change is acknowledged, pulled by bob, then lost
/// by a restore; the copy's different change takes its (actor, seq) on the
/// server. Bob's document cannot hold both: the server's version wins, and
/// everyone converges, the original's edit written again under a fresh actor.
#[test]
fn a_change_the_server_lost_gives_way_to_the_one_that_took_its_actor_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup.redb");
    let (service, tokens) = space_on_disk(&data);
    let (a_path, twin_path) = (dir.path().join("a.db"), dir.path().join("twin.db"));
    let a = Replica::open(&a_path).unwrap();
    sync(&a, &remote(&service, &tokens[0])).unwrap();
    drop(a);
    std::fs::copy(&a_path, &twin_path).unwrap(); // the same actor
    let (a, twin, bob) = (
        Replica::open(&a_path).unwrap(),
        Replica::open(&twin_path).unwrap(),
        Replica::in_memory().unwrap(),
    );
    drop(service);
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::copy(data.join(RedbStore::FILE_NAME), &backup).unwrap(); // backup: head 0

    let service = open_service(&data);
    a.put("contacts", "c1", json!({"name": "from a"})).unwrap();
    sync(&a, &remote(&service, &tokens[0])).unwrap(); // seq 1: (actor, 1)
    sync(&bob, &remote(&service, &tokens[1])).unwrap(); // bob holds it
    assert_eq!(bob.get("contacts", "c1").unwrap().unwrap()["name"], json!("from a"));
    drop(service);
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::copy(&backup, data.join(RedbStore::FILE_NAME)).unwrap(); // restore: head 0

    let service = open_service(&data);
    twin.put("contacts", "c1", json!({"email": "from the twin"})).unwrap();
    sync(&twin, &remote(&service, &tokens[0])).unwrap(); // seq 1: (actor, 1) again, other contents
    let summary = sync(&bob, &remote(&service, &tokens[1])).expect("bob's sync meets the collision and resolves it");
    assert!(summary.epoch_changed, "bob noticed the restore: {summary:?}");
    let c1 = bob.get("contacts", "c1").unwrap().unwrap();
    assert_eq!(
        c1["email"],
        json!("from the twin"),
        "the server's version is merged: {c1:?}"
    );
    assert!(
        c1.get("name").is_none(),
        "the change the server lost left bob's document: {c1:?}"
    );

    // Alice's store notices too and writes its edit again; then all agree.
    for _ in 0..2 {
        for (r, token) in [(&a, &tokens[0]), (&twin, &tokens[0]), (&bob, &tokens[1])] {
            sync(r, &remote(&service, token)).unwrap();
        }
    }
    let expected = service
        .record("alice", SPACE, "contacts", "c1")
        .unwrap()
        .expect("c1 on the server");
    assert_eq!(
        expected["name"],
        json!("from a"),
        "alice's edit was written again: {expected:?}"
    );
    assert_eq!(expected["email"], json!("from the twin"));
    for r in [&a, &twin, &bob] {
        assert_eq!(r.get("contacts", "c1").unwrap().unwrap(), expected);
        assert_eq!(r.status().unwrap().pending, 0);
        let before = r.list("contacts", None, 100).unwrap();
        r.rebuild_view().unwrap();
        assert_eq!(
            r.list("contacts", None, 100).unwrap(),
            before,
            "the log replays to the same view"
        );
    }
}

/// A replica that bootstrapped from a snapshot holds the changes before it only
/// inside the snapshot's documents. When the server loses them and their author
/// is gone, that replica pushes them again, as ops of their own, so that its
/// later edit (which builds on them) is taken.
#[test]
fn changes_known_only_from_a_snapshot_are_pushed_again_after_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup.redb");
    let (service, tokens) = space_on_disk(&data);
    drop(service);
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::copy(data.join(RedbStore::FILE_NAME), &backup).unwrap(); // backup: head 0

    let service = open_service(&data);
    let alice = Replica::in_memory().unwrap();
    alice
        .put("contacts", "c1", json!({"name": "Ada", "visits": 1}))
        .unwrap();
    sync(&alice, &remote(&service, &tokens[0])).unwrap();
    drop(alice); // its author is gone
    let bob = Replica::in_memory().unwrap();
    let first = sync(&bob, &remote(&service, &tokens[1])).unwrap();
    assert!(first.snapshot_docs > 0, "bob bootstraps by snapshot: {first:?}");
    drop(service);
    std::thread::sleep(std::time::Duration::from_millis(100));
    std::fs::copy(&backup, data.join(RedbStore::FILE_NAME)).unwrap(); // restore: head 0

    let service = open_service(&data);
    bob.put("contacts", "c1", json!({"email": "ada@example.com"})).unwrap();
    let summary = sync(&bob, &remote(&service, &tokens[1])).unwrap();
    assert!(summary.epoch_changed && summary.repushed > 0, "{summary:?}");
    assert_eq!(bob.status().unwrap().pending, 0, "bob's edit was taken: {summary:?}");
    let c1 = service
        .record("bob", SPACE, "contacts", "c1")
        .unwrap()
        .expect("c1 is back");
    assert_eq!(c1["name"], json!("Ada"), "{c1:?}");
    assert_eq!(c1["email"], json!("ada@example.com"), "{c1:?}");

    // Another replica bootstrapping now gets it all, and pushing the snapshot's
    // changes again under the same ids stores nothing twice.
    let carol = Replica::in_memory().unwrap();
    sync(&carol, &remote(&service, &tokens[0])).unwrap();
    assert_eq!(carol.get("contacts", "c1").unwrap().unwrap(), c1);
    let head = service.pull("bob", SPACE, tidemark::Seq(0), 1000, None).unwrap().end;
    sync(&bob, &remote(&service, &tokens[1])).unwrap();
    assert_eq!(
        service.pull("bob", SPACE, tidemark::Seq(0), 1000, None).unwrap().end,
        head
    );
}
