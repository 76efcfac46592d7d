//! Several `tidemark serve` processes on one PostgreSQL database, through the
//! real binary: clients on either process converge, a process killed with
//! SIGKILL in the middle of a push loses nothing, and a live pull held by one
//! process answers a commit made through the other.
#![cfg(all(feature = "cli", feature = "postgres", unix))]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "common/cli.rs"]
mod cli;
use cli::*;

fn list(store: &Path) -> Vec<Value> {
    ok(&mut client(store, &["list", "contacts"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn token(server: &ServerChild, user: &str) -> String {
    let token = admin(server, &["add-user", user]).trim().to_string();
    admin(server, &["grant", user, "crm"]);
    token
}

/// The head of space `crm`, read from the database.
fn head(url: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
            .query_one("SELECT head FROM tidemark_spaces WHERE name = 'crm'", &[])
            .await
            .unwrap()
            .get(0)
    })
}

fn sync(store: &Path) {
    ok(&mut client(store, &["sync"]));
}

#[test]
fn two_processes_on_one_database_serve_clients_that_converge_through_a_kill() {
    let Some(pg) =
        common::postgres::postgres("two_processes_on_one_database_serve_clients_that_converge_through_a_kill")
    else {
        return;
    };
    let url = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let mut one = ServerChild::start_postgres(&url, "127.0.0.1:0");
    // As the CLI contract writes it, with --data too (not read with --postgres).
    let unused = dir.path().join("unused-data");
    let two = ServerChild::spawn(&[
        "--data",
        unused.to_str().unwrap(),
        "--postgres",
        &url,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!unused.exists(), "--data is not read with --postgres");
    admin(&one, &["create-space", "crm"]);
    // Accounts made through one process are known to the other.
    let tokens = [token(&two, "ana"), token(&one, "ben"), token(&two, "cy")];
    let via = [&one.url, &two.url, &one.url];
    let stores: Vec<_> = ["ana", "ben", "cy"]
        .iter()
        .map(|n| dir.path().join(format!("{n}.db")))
        .collect();
    for (i, user) in ["ana", "ben", "cy"].iter().enumerate() {
        let out = login(&stores[i], via[i], user, &tokens[i]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    // Turns: each client edits its own records and one shared record, then syncs.
    for round in 0..3 {
        for (i, store) in stores.iter().enumerate() {
            ok(&mut client(
                store,
                &["put", "contacts", &format!("c{i}-{round}"), &format!("name=n{i}")],
            ));
            ok(&mut client(
                store,
                &["put", "contacts", "shared", &format!("by{i}=r{round}")],
            ));
            sync(store);
        }
    }

    // A push in flight when its process is killed: the client keeps the ops and
    // pushes them again once a process answers at that address.
    let lines: String = (0..3000)
        .map(|i| format!("{{\"id\":\"bulk{i}\",\"fields\":{{\"name\":\"b{i}\"}}}}\n"))
        .collect();
    let bulk = dir.path().join("bulk.jsonl");
    std::fs::write(&bulk, lines).unwrap();
    ok(&mut client(&stores[0], &["import", "contacts", bulk.to_str().unwrap()]));
    let before = head(&url);
    let mut push = client(&stores[0], &["sync"]).spawn().unwrap();
    // Killed once the first batch has committed, while the rest are on their way.
    let started = Instant::now();
    while head(&url) == before && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let addr = one.addr();
    one.child.kill().unwrap();
    one.child.wait().unwrap();
    let interrupted = push.wait().unwrap();
    assert!(!interrupted.success(), "the sync was cut off by the kill");
    assert!(head(&url) < before + 3000, "the kill came while ops were still to push");
    let _one = ServerChild::start_postgres(&url, &addr);
    sync(&stores[0]);
    assert_eq!(status(&stores[0])["pending"], 0, "the interrupted push was completed");

    for store in &stores {
        sync(store);
    }
    let expected = list(&stores[0]);
    assert_eq!(expected.len(), 9 + 1 + 3000, "every record of every client");
    for store in &stores[1..] {
        assert_eq!(list(store), expected, "every client holds the same records");
    }
    let shared = expected.iter().find(|r| r["id"] == "shared").unwrap();
    assert_eq!(
        shared["fields"],
        serde_json::json!({"by0": "r2", "by1": "r2", "by2": "r2"})
    );
}

#[test]
fn a_live_pull_held_by_one_process_answers_a_commit_through_the_other() {
    let Some(pg) = common::postgres::postgres("a_live_pull_held_by_one_process_answers_a_commit_through_the_other")
    else {
        return;
    };
    let url = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let one = ServerChild::start_postgres(&url, "127.0.0.1:0");
    let two = ServerChild::start_postgres(&url, "127.0.0.1:0");
    admin(&one, &["create-space", "crm"]);
    let (ana, ben) = (token(&one, "ana"), token(&one, "ben"));
    let (writer, watcher) = (dir.path().join("ana.db"), dir.path().join("ben.db"));
    assert!(login(&writer, &one.url, "ana", &ana).status.success());
    assert!(login(&watcher, &two.url, "ben", &ben).status.success());

    // The default interval (30 s) is far longer than this test waits.
    let mut watch = client(&watcher, &["sync", "--watch"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    ok(&mut client(&writer, &["put", "contacts", "c1", "name=Ada"]));
    sync(&writer);
    let started = Instant::now();
    let mut seen = false;
    while started.elapsed() < Duration::from_secs(10) {
        if run(&mut client(&watcher, &["get", "contacts", "c1"])).status.success() {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen, "the edit reached the watching client through the other process");
}
