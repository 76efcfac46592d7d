//! Live pull: `pull?wait=SECS` held until a commit, bounded by the server,
//! answered as the server stops; the background task holding one while idle,
//! so another replica's edit arrives without waiting for the interval.
#![cfg(all(feature = "server", feature = "http-client"))]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::background::{config, wait_for};
use serde_json::json;
use tidemark::Replica;
use tidemark::Seq;
use tidemark::protocol::message::PullResponse;
use tidemark::remote::http::HttpRemote;
use tidemark::server::local::LocalRemote;
use tidemark::server::store::redb::RedbStore;
use tidemark::server::{Limits, ServeConfig};
use tidemark::sync::{BackgroundConfig, BackgroundSync, Round};

/// An HTTP server with alice and bob, and a replica of alice's holding one synced edit.
async fn setup(limits: Limits) -> (String, Vec<String>, tokio::sync::oneshot::Sender<()>) {
    let (service, tokens) = common::server::server_on(RedbStore::in_memory().unwrap(), None, &["alice", "bob"], limits);
    let (url, stop) = common::server::start_http_with(service, ServeConfig::default()).await;
    (url, tokens, stop)
}

async fn pull(url: &str, token: &str, query: &str) -> (PullResponse, Duration) {
    let started = Instant::now();
    let answer = common::live::client()
        .get(format!("{url}/v1/spaces/crm/pull?{query}"))
        .bearer_auth(token)
        .header(
            "tidemark-protocol-revision",
            tidemark::protocol::message::PROTOCOL_REVISION.to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    (answer.json().await.unwrap(), started.elapsed())
}

async fn edit_and_sync(url: &str, token: &str, replica: &Replica, id: &str) {
    replica.put("contacts", id, json!({"name": id})).unwrap();
    let remote = HttpRemote::new(url, token, "crm").unwrap();
    Round::new(replica, Default::default()).run(&remote).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_pull_answers_as_soon_as_another_member_pushes() {
    let (url, tokens, _stop) = setup(Limits::default()).await;
    let held = tokio::spawn({
        let (url, token) = (url.clone(), tokens[1].clone());
        async move { pull(&url, &token, "since=0&wait=25").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "nothing to answer yet: the pull is held");
    edit_and_sync(&url, &tokens[0], &Replica::in_memory().unwrap(), "c1").await;
    let (page, took) = held.await.unwrap();
    assert_eq!(page.ops.len(), 1);
    assert_eq!(page.end, 1);
    assert!(
        took < Duration::from_secs(20),
        "answered at the commit, not at the end of the wait: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_with_ops_after_since_answers_at_once_and_one_with_nothing_at_the_end_of_its_wait() {
    let (url, tokens, _stop) = setup(Limits::default()).await;
    edit_and_sync(&url, &tokens[0], &Replica::in_memory().unwrap(), "c1").await;
    let (page, took) = pull(&url, &tokens[1], "since=0&wait=25").await;
    assert_eq!((page.ops.len(), page.end), (1, Seq(1)));
    assert!(took < Duration::from_secs(20), "{took:?}");

    let (page, took) = pull(&url, &tokens[1], "since=1&wait=1").await;
    assert!(page.ops.is_empty());
    assert_eq!((page.end, page.head, page.more), (Seq(1), Seq(1), false));
    assert!(took >= Duration::from_secs(1), "held for its wait: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_bounds_the_wait() {
    let limits = Limits {
        max_pull_wait_secs: 1,
        ..Limits::default()
    };
    let (url, tokens, _stop) = setup(limits).await;
    let (page, took) = pull(&url, &tokens[0], "since=0&wait=3600").await;
    assert!(page.ops.is_empty());
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(30),
        "held for the server's bound: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_answers_its_held_pulls() {
    let (url, tokens, stop) = setup(Limits::default()).await;
    let held = tokio::spawn({
        let (url, token) = (url.clone(), tokens[0].clone());
        async move { pull(&url, &token, "since=0&wait=25").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).unwrap();
    let (page, took) = held.await.unwrap();
    assert!(page.ops.is_empty());
    assert!(took < Duration::from_secs(20), "answered at the stop: {took:?}");
}

/// Two replicas with background sync on an interval of an hour: bob learns of
/// alice's edit through his held pull (or, with live pulls off, not at all
/// within the test's patience).
async fn background_pair<R, F>(remote: F, live: bool, id: &str) -> Option<Duration>
where
    R: tidemark::remote::Remote + 'static,
    F: Fn(usize) -> R,
{
    let (alice, bob) = (
        Arc::new(Replica::in_memory().unwrap()),
        Arc::new(Replica::in_memory().unwrap()),
    );
    let config = BackgroundConfig {
        live_wait: live.then_some(Duration::from_secs(25)),
        ..config()
    };
    let (a, b) = (
        BackgroundSync::start(alice.clone(), remote(0), config),
        BackgroundSync::start(bob.clone(), remote(1), config),
    );
    wait_for(&a, "alice's first round", |s| s.rounds >= 1).await;
    wait_for(&b, "bob's first round", |s| s.rounds >= 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    alice.put("contacts", id, json!({"name": "Ada"})).unwrap();
    a.nudge();
    let mut seen = None;
    while started.elapsed() < Duration::from_secs(if live { 15 } else { 3 }) {
        if bob.get("contacts", id).unwrap().is_some() {
            seen = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.stop().await;
    b.stop().await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_replica_receives_another_replicas_edit_without_waiting_for_its_interval() {
    let (url, tokens, _stop) = setup(Limits::default()).await;
    let remote = |i: usize| HttpRemote::new(&url, &tokens[i], "crm").unwrap();
    assert!(
        background_pair(remote, true, "c1").await.is_some(),
        "the held pull brings the edit long before the hour's interval"
    );
    assert_eq!(
        background_pair(remote, false, "c2").await,
        None,
        "the control: without live pulls the edit waits for the interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_remote_holds_live_pulls_too() {
    let (service, tokens) = common::server::server(None, &["alice", "bob"]);
    let remote = |i: usize| LocalRemote::new(service.clone(), tokens[i].clone(), "crm");
    assert!(background_pair(remote, true, "c1").await.is_some());
}
