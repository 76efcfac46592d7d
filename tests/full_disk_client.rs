//! A full disk under a replica that a background sync keeps in step: the round
//! fails naming the cause, the task reopens the store (redb refuses every
//! transaction after an I/O error until then), reports the true pending count
//! meanwhile, and catches up by itself once space is freed.
//!
//! The store lives on a small tmpfs, which takes root to mount: without root
//! the test says so and does nothing.

#![cfg(all(feature = "server", feature = "background", target_os = "linux"))]

mod common;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::sync::Arc;

use common::background::{config, wait_for};
use serde_json::json;
use tidemark::Replica;
use tidemark::server::local::LocalRemote;
use tidemark::sync::{BackgroundSync, Round};
use tmpfs::{Tmpfs, fill, is_root, noise};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_sync_on_a_full_disk_reopens_the_store_and_catches_up_once_space_is_freed() {
    if !is_root() {
        eprintln!("SKIPPED: mounting the small tmpfs this test fills takes root; run the suite as root (CI does)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    let _tmpfs = Tmpfs::mount(&disk, "64m");
    let (service, tokens) = common::server::server(None, &["alice", "bob"]);
    let alice = Arc::new(Replica::open(disk.join("alice.db")).unwrap());
    let remote = || LocalRemote::new(service.clone(), tokens[0].clone(), "crm");
    alice.put("contacts", "mine", json!({"name": "Ada"})).unwrap();
    Round::new(&alice, Default::default()).run(&remote()).await.unwrap();

    // Bob writes more than the disk has room for; alice has one edit pending.
    let bob = Replica::in_memory().unwrap();
    for i in 0..24 {
        bob.put("contacts", &format!("big{i}"), json!({"name": noise(200 << 10, i)}))
            .unwrap();
    }
    let bob_remote = LocalRemote::new(service.clone(), tokens[1].clone(), "crm");
    Round::new(&bob, Default::default()).run(&bob_remote).await.unwrap();
    alice.put("contacts", "mine", json!({"name": "Ada L."})).unwrap();
    fill(&disk.join("filler"));

    let sync = BackgroundSync::start(alice.clone(), remote(), config());
    let failing = wait_for(&sync, "a round to fail on the full disk", |s| s.failures_in_a_row >= 2).await;
    let error = failing.last_error.clone().unwrap();
    assert!(
        error.contains("disk failed") && error.contains("No space left on device"),
        "the round names the cause: {error}"
    );
    // Reopened: the store reads again, and the task's count is the store's.
    let truth = alice.status().expect("the reopened store reads").pending;
    let reported = sync.status().pending;
    assert_eq!(reported, truth, "{:?}", sync.status());

    std::fs::remove_file(disk.join("filler")).unwrap();
    let done = wait_for(&sync, "the catch-up once space is freed", |s| {
        s.last_error.is_none() && s.last_success_ms.is_some() && s.pending == 0
    })
    .await;
    sync.stop().await;
    assert_eq!(done.failures_in_a_row, 0);
    let mut listed: Vec<String> = alice
        .list_raw("contacts", None, usize::MAX)
        .unwrap()
        .rows
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    listed.sort();
    assert_eq!(listed.len(), 25, "every record of bob, and alice's own: {listed:?}");
    assert_eq!(
        alice.get("contacts", "mine").unwrap().unwrap()["name"],
        json!("Ada L."),
        "the edit made before the disk filled is kept"
    );
    let server_view = service.record("alice", "crm", "contacts", "mine").unwrap().unwrap();
    assert_eq!(server_view["name"], json!("Ada L."), "and reached the server");
}
