//! Stores restored from a backup or copied, and ops the server refuses, through
//! the real binary and a real server: every replica keeps syncing, later edits
//! reach everyone, and once nothing is pending every view equals the server's.

#![cfg(feature = "cli")]

use std::path::Path;

use serde_json::{Value, json};

#[path = "common/cli.rs"]
mod cli;
use cli::*;

/// `list contacts` as JSON lines, parsed.
fn contacts(store: &Path) -> Vec<Value> {
    ok(&mut client(store, &["list", "contacts"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `sync` and expects exit `code`; returns stderr.
fn sync_exits(store: &Path, code: i32) -> String {
    let out = run(&mut client(store, &["sync"]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "sync of {}: {stderr}", store.display());
    stderr
}

fn logged_in(s: &Setup, name: &str, user: &str, token: &str) -> std::path::PathBuf {
    let store = s.store(name);
    let out = login(&store, &s.server.url, user, token);
    assert!(out.status.success(), "{}", text(&out.stderr));
    store
}

/// Syncs every store twice (so each sees what the others pushed) and checks
/// that all of them hold the same records, with nothing pending or rejected.
fn assert_converged(stores: &[&Path]) -> Vec<Value> {
    for _ in 0..2 {
        for store in stores {
            sync_exits(store, 0);
        }
    }
    let first = contacts(stores[0]);
    for store in stores {
        assert_eq!(contacts(store), first, "{} differs", store.display());
        let st = status(store);
        assert_eq!(
            (st["pending"].as_u64(), st["rejected"].as_u64()),
            (Some(0), Some(0)),
            "{st}"
        );
    }
    first
}

fn fields_of(list: &[Value], id: &str) -> Value {
    list.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no record {id} in {list:?}"))["fields"]
        .clone()
}

/// c1 after one store wrote its email and another (sharing its actor) its age.
fn ada_with_email_and_age() -> Value {
    json!({"name": "Ada", "email": "ada@example.com", "age": 36})
}

#[test]
fn a_store_restored_from_a_backup_keeps_syncing_and_loses_no_edit() {
    let s = setup();
    let laptop = logged_in(&s, "laptop.db", "alice", &s.alice);
    let phone = logged_in(&s, "phone.db", "alice", &s.alice);
    ok(&mut client(&laptop, &["put", "contacts", "c1", "name=Ada"]));
    sync_exits(&laptop, 0);
    let backup = s.store("backup.db");
    std::fs::copy(&laptop, &backup).unwrap();

    // Edits after the backup reach the server, then the laptop is restored.
    ok(&mut client(
        &laptop,
        &["put", "contacts", "c1", "email=ada@example.com"],
    ));
    ok(&mut client(&laptop, &["put", "contacts", "c2", "name=Grace"]));
    sync_exits(&laptop, 0);
    std::fs::copy(&backup, &laptop).unwrap();

    // The restored store writes the same change numbers again, with other content.
    ok(&mut client(&laptop, &["put", "contacts", "c1", "age=36"]));
    ok(&mut client(&laptop, &["put", "contacts", "c2", "vip=true"]));
    ok(&mut client(&phone, &["put", "contacts", "c3", "name=Linus"]));
    let list = assert_converged(&[&laptop, &phone]);
    assert_eq!(fields_of(&list, "c1"), ada_with_email_and_age());
    assert_eq!(fields_of(&list, "c2"), json!({"name": "Grace", "vip": true}));
    assert_eq!(fields_of(&list, "c3"), json!({"name": "Linus"}));

    // A fresh login downloads the same space, and later edits everywhere still flow.
    let fresh = logged_in(&s, "fresh.db", "alice", &s.alice);
    ok(&mut client(&laptop, &["put", "contacts", "c1", "age=37"]));
    ok(&mut client(&fresh, &["put", "contacts", "c3", "vip=false"]));
    let list = assert_converged(&[&laptop, &phone, &fresh]);
    assert_eq!(fields_of(&list, "c1")["age"], 37);
    assert_eq!(fields_of(&list, "c3")["vip"], false);
}

#[test]
fn a_store_copied_to_a_second_file_keeps_syncing_on_both() {
    let s = setup();
    let first = logged_in(&s, "first.db", "alice", &s.alice);
    ok(&mut client(&first, &["put", "contacts", "c1", "name=Ada"]));
    sync_exits(&first, 0);
    let second = s.store("second.db");
    std::fs::copy(&first, &second).unwrap();

    // Both write as the same actor, on the same record and on others.
    ok(&mut client(&first, &["put", "contacts", "c1", "email=ada@example.com"]));
    ok(&mut client(&second, &["put", "contacts", "c1", "age=36"]));
    ok(&mut client(&second, &["put", "contacts", "c2", "name=Grace"]));
    ok(&mut client(&first, &["put", "contacts", "c2", "vip=true"]));
    let list = assert_converged(&[&first, &second]);
    assert_eq!(fields_of(&list, "c1"), ada_with_email_and_age());
    let c2 = fields_of(&list, "c2");
    assert_eq!((c2["name"].clone(), c2["vip"].clone()), (json!("Grace"), json!(true)));
    assert_ne!(
        status(&first)["actor"],
        status(&second)["actor"],
        "one of the two took a fresh actor"
    );
}

/// A store copied while an edit was pending: both copies must write that edit
/// again under fresh actors (another copy took their change number first), and
/// it still counts once.
#[test]
fn a_pending_edit_held_by_two_copies_counts_once() {
    let s = setup();
    let first = logged_in(&s, "first.db", "alice", &s.alice);
    ok(&mut client(&first, &["put", "contacts", "c1", "name=Ada", "visits=0"]));
    sync_exits(&first, 0);
    let twin = s.store("twin.db");
    std::fs::copy(&first, &twin).unwrap();
    ok(&mut client(&twin, &["put", "contacts", "c1", "visits=3"]));
    sync_exits(&twin, 0);

    // First adds 5 under the change number the twin used; a third copy holds it too.
    ok(&mut client(&first, &["put", "contacts", "c1", "visits=5"]));
    let third = s.store("third.db");
    std::fs::copy(&first, &third).unwrap();
    let list = assert_converged(&[&first, &third, &twin]);
    assert_eq!(fields_of(&list, "c1"), json!({"name": "Ada", "visits": 8}));
    let actors: std::collections::BTreeSet<String> = [&first, &third, &twin]
        .iter()
        .map(|store| status(store)["actor"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actors.len(), 3, "each copy writes as its own actor: {actors:?}");
}

#[test]
fn an_edit_after_an_op_refused_as_too_large_reaches_the_other_replicas() {
    let s = setup();
    let a = logged_in(&s, "a.db", "alice", &s.alice);
    let b = logged_in(&s, "b.db", "alice", &s.alice);
    ok(&mut client(&a, &["put", "contacts", "c1", "name=Ada"]));
    sync_exits(&a, 0);
    let big = s.dir.path().join("big.jsonl");
    let line = json!({"id": "c1", "fields": {"name": "x".repeat(300 * 1024)}});
    std::fs::write(&big, format!("{line}\n")).unwrap();
    ok(&mut client(&a, &["import", "contacts", big.to_str().unwrap()]));
    ok(&mut client(&a, &["put", "contacts", "c1", "email=ada@example.com"]));
    let stderr = sync_exits(&a, 2);
    assert!(stderr.contains("refused 1 change"), "{stderr}");

    // The refused op left the record: the view shows what the server holds plus the later edit.
    let c1 = json!({"name": "Ada", "email": "ada@example.com"});
    assert_eq!(fields_of(&contacts(&a), "c1"), c1);
    let st = status(&a);
    assert_eq!(
        (st["pending"].as_u64(), st["rejected"].as_u64()),
        (Some(0), Some(1)),
        "{st}"
    );
    sync_exits(&b, 0);
    assert_eq!(
        fields_of(&contacts(&b), "c1"),
        c1,
        "the later edit reached the other replica"
    );

    // The rejected list keeps what the op wrote; --discard forgets it and nothing comes back.
    let rejected = ok(&mut client(&a, &["rejected"]));
    assert!(
        rejected.contains("op_too_large") && rejected.contains("xxxxxxxx"),
        "{rejected}"
    );
    ok(&mut client(&a, &["rejected", "--discard"]));
    assert_eq!(status(&a)["rejected"], 0);
    assert_eq!(fields_of(&contacts(&a), "c1"), c1);
    assert_converged(&[&a, &b]);
}

#[test]
fn a_read_only_members_edit_is_refused_and_a_later_edit_after_a_grant_is_delivered() {
    let s = setup();
    let alice = logged_in(&s, "alice.db", "alice", &s.alice);
    let bob = logged_in(&s, "bob.db", "bob", &s.bob);
    ok(&mut client(&alice, &["put", "contacts", "c1", "name=Ada"]));
    sync_exits(&alice, 0);
    sync_exits(&bob, 0);

    ok(&mut client(&bob, &["put", "contacts", "c1", "email=bob@example.com"]));
    sync_exits(&bob, 2);
    assert_eq!(
        fields_of(&contacts(&bob), "c1"),
        json!({"name": "Ada"}),
        "the refused edit left bob's view"
    );
    admin(&s.server, &["grant", "bob", "crm"]);
    ok(&mut client(&bob, &["put", "contacts", "c1", "age=36"]));
    sync_exits(&bob, 0);
    // The refused edit comes back only when bob asks for it.
    ok(&mut client(&bob, &["rejected", "--retry"]));
    let list = assert_converged(&[&alice, &bob]);
    assert_eq!(
        fields_of(&list, "c1"),
        json!({"name": "Ada", "age": 36, "email": "bob@example.com"})
    );
}
