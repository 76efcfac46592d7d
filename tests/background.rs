//! The background sync task: syncs after edits, backs off while the server
//! refuses, recovers, reports status, stops cleanly.

#![cfg(all(feature = "server", feature = "background"))]

mod common;

use common::background::{config, wait_for};

use std::sync::Arc;

use serde_json::json;
use tidemark::Replica;
use tidemark::protocol::message::{CreateSpace, Grant};
use tidemark::server::local::LocalRemote;
use tidemark::server::store::redb::RedbStore;
use tidemark::server::{Limits, Service};
use tidemark::sync::BackgroundSync;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_are_synced_soon_after_they_are_made_and_stop_is_clean() {
    let (service, tokens) = common::server::server(None, &["alice"]);
    let token = tokens[0].clone();
    let replica = Arc::new(Replica::in_memory().unwrap());
    let sync = BackgroundSync::start(
        replica.clone(),
        LocalRemote::new(service.clone(), token, "crm"),
        config(),
    );
    wait_for(&sync, "the first round", |s| s.rounds >= 1).await;

    replica.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    sync.nudge();
    let s = wait_for(&sync, "the edit to be pushed", |s| {
        s.last_summary.as_ref().is_some_and(|r| r.pushed == 1)
    })
    .await;
    assert_eq!(s.pending, 0);
    assert!(s.last_success_ms.is_some() && s.last_error.is_none());
    // An edit without a nudge (as from another process) is found by polling.
    replica.put("contacts", "c2", json!({"name": "Grace"})).unwrap();
    wait_for(&sync, "the polled edit", |s| s.pending == 0 && s.rounds >= 3).await;
    assert!(service.record("alice", "crm", "contacts", "c2").unwrap().is_some());
    sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_rounds_back_off_and_the_task_recovers_when_the_server_does() {
    let service = Arc::new(Service::new(RedbStore::in_memory().unwrap(), Limits::default(), None).unwrap());
    service
        .create_space(&CreateSpace {
            space: "crm".into(),
            package: None,
        })
        .unwrap();
    let token = service.add_user("alice").unwrap().token;
    // Not a member yet: every round fails with 404 until the grant below.
    let replica = Arc::new(Replica::in_memory().unwrap());
    replica.put("contacts", "c1", json!({"name": "offline edit"})).unwrap();
    let sync = BackgroundSync::start(
        replica.clone(),
        LocalRemote::new(service.clone(), token, "crm"),
        config(),
    );
    let failing = wait_for(&sync, "three failures", |s| s.failures_in_a_row >= 3).await;
    assert!(failing.last_error.as_deref().unwrap().contains("404"), "{failing:?}");
    assert_eq!(failing.pending, 1, "nothing is lost while failing");
    assert!(failing.next_attempt_ms.is_some());
    replica
        .put("contacts", "c2", json!({"name": "still works offline"}))
        .unwrap();

    service
        .grant(&Grant {
            user: "alice".into(),
            space: "crm".into(),
            read_only: false,
        })
        .unwrap();
    let ok = wait_for(&sync, "recovery", |s| s.last_error.is_none() && s.pending == 0).await;
    assert_eq!(ok.failures_in_a_row, 0);
    assert!(service.record("alice", "crm", "contacts", "c2").unwrap().is_some());
    sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_stops_the_task_and_says_so_instead_of_backing_off() {
    let (service, tokens) = common::server::server(None, &["alice"]);
    let replica = Arc::new(Replica::in_memory().unwrap());
    let sync = BackgroundSync::start(
        replica.clone(),
        LocalRemote::new(service.clone(), tokens[0].clone(), "crm"),
        config(),
    );
    wait_for(&sync, "the first round", |s| s.rounds >= 1 && s.last_error.is_none()).await;
    service.revoke_token(&tokens[0]).unwrap();
    replica
        .put("contacts", "c1", json!({"name": "after the revoke"}))
        .unwrap();
    sync.nudge();
    let stopped = wait_for(&sync, "the task to stop", |s| s.stopped.is_some()).await;
    let why = stopped.stopped.as_deref().unwrap();
    assert!(why.contains("401") && why.contains("log in again"), "{why}");
    assert_eq!(stopped.pending, 1, "the edit is kept");
    assert_eq!(stopped.next_attempt_ms, None, "no retry is planned");
    let rounds = stopped.rounds;
    replica.put("contacts", "c2", json!({"name": "another"})).unwrap();
    sync.nudge();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sync.status().rounds, rounds, "the task has ended: no more rounds");
    sync.stop().await;
}
