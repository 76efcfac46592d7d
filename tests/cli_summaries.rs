//! What `sync` and `login` say a round did, through the real binary: records
//! downloaded by snapshot, ops pushed, pulled, re-pushed after a server reset
//! and refused, the same words in `status`'s `last_sync`.

#![cfg(feature = "cli")]

use std::path::Path;

use serde_json::Value;

#[path = "common/cli.rs"]
mod cli;
use cli::*;

/// Runs `sync`, expects exit 0, returns stdout.
fn synced(store: &Path) -> String {
    let out = run(&mut client(store, &["sync"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn last_sync(store: &Path) -> Value {
    status(store)["last_sync"].clone()
}

#[test]
fn a_sync_after_a_snapshot_bootstrap_reports_the_records_it_downloaded() {
    let s = setup();
    let url = s.server.url.clone();
    // Logged in while the space was empty: the first sync that finds records
    // downloads them by snapshot.
    let (reader, writer) = (s.store("reader.db"), s.store("writer.db"));
    for store in [&reader, &writer] {
        let out = login(store, &url, "alice", &s.alice);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "pushed 0, pulled 0, refused 0; head 0\n",
            "login tells its initial sync"
        );
    }
    for id in ["c1", "c2", "c3"] {
        ok(&mut client(&writer, &["put", "contacts", id, "name=Ada"]));
    }
    // Its own records come back by the pull: nothing to download.
    assert_eq!(synced(&writer), "pushed 3, pulled 0, refused 0; head 3\n");

    let said = "pushed 0, pulled 0, downloaded 3 record(s) by snapshot, refused 0; head 3";
    assert_eq!(synced(&reader), format!("{said}\n"));
    let last = last_sync(&reader);
    assert_eq!(last["ok"], true, "{last}");
    assert_eq!(last["message"], said, "{last}");
    assert_eq!(last["summary"]["snapshot_docs"], 3, "{last}");
    assert_eq!(ok(&mut client(&reader, &["list", "contacts"])).lines().count(), 3);

    // Then ordinary pulls; a login on a new store downloads by snapshot too.
    ok(&mut client(&writer, &["put", "contacts", "c4", "name=Grace"]));
    synced(&writer);
    assert_eq!(synced(&reader), "pushed 0, pulled 1, refused 0; head 4\n");
    let out = login(&s.store("late.db"), &url, "alice", &s.alice);
    assert_eq!(
        text(&out.stdout),
        "pushed 0, pulled 0, downloaded 4 record(s) by snapshot, refused 0; head 4\n",
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_sync_after_the_server_was_restored_from_a_backup_reports_the_re_pushed_ops() {
    let mut s = setup();
    let store = s.store("a.db");
    let out = login(&store, &s.server.url, "alice", &s.alice);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A backup of the server before alice's edits reach it.
    let data = s.dir.path().join("server-data");
    let backup = s.dir.path().join("backup");
    let addr = s.server.addr();
    s.server.stop();
    copy_dir(&data, &backup);
    s.server = ServerChild::start_on(&data, &addr);
    ok(&mut client(&store, &["put", "contacts", "c1", "name=Ada"]));
    ok(&mut client(&store, &["put", "contacts", "c2", "name=Grace"]));
    let said = synced(&store);
    assert!(said.starts_with("pushed 2, pulled 0, "), "{said}");

    // The server comes back from the backup, without alice's ops.
    s.server.stop();
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&backup, &data);
    s.server = ServerChild::start_on(&data, &addr);
    let said = "pushed 0, pulled 0, re-pushed 2 after a server reset, refused 0; head 2";
    assert_eq!(synced(&store), format!("{said}\n"));
    assert_eq!(last_sync(&store)["message"], said);
    assert_eq!(last_sync(&store)["summary"]["repushed"], 2);
    // The server has them again: a new replica gets both.
    let check = s.store("check.db");
    let out = login(&check, &s.server.url, "alice", &s.alice);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(ok(&mut client(&check, &["list", "contacts"])).lines().count(), 2);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
