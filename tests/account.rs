//! Switching a store to another account, through the library: the fence and crash safety.

#![cfg(feature = "server")]

mod common;

use serde_json::json;
use tidemark::protocol::{Session, SessionConfig};
use tidemark::remote::local::LocalRemote;
use tidemark::replica::Sharing;
use tidemark::{Binding, Error, Replica};

fn binding(user: &str) -> Binding {
    Binding {
        server: "http://example.test".into(),
        user: user.into(),
        space: "crm".into(),
    }
}

#[test]
fn a_switch_replaces_the_file_with_a_fresh_store_for_the_new_account() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let old_actor;
    {
        let r = Replica::open(&path).unwrap();
        r.bind(&binding("alice"), "token-a").unwrap();
        r.put("contacts", "c1", json!({"name": "OLD-ACCOUNT-VALUE"})).unwrap();
        old_actor = r.actor().unwrap();
        assert_eq!(r.generation().unwrap(), 0);
    }
    Replica::reset_file(&path, Sharing::Exclusive, &binding("bob"), "token-b").unwrap();
    let r = Replica::open(&path).unwrap();
    assert_eq!(r.binding().unwrap(), Some(binding("bob")));
    assert_eq!(r.token().unwrap().as_deref(), Some("token-b"));
    assert_eq!(r.generation().unwrap(), 1);
    assert_ne!(r.actor().unwrap(), old_actor);
    let s = r.status().unwrap();
    assert_eq!((s.pending, s.pulled, s.rejected, s.package_version), (0, 0, 0, None));
    assert!(r.view_rows().unwrap().is_empty());
    let bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.windows(17).any(|w| w == b"OLD-ACCOUNT-VALUE"));
}

#[test]
fn a_crash_before_the_rename_leaves_the_old_account_intact_and_the_next_switch_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let r = Replica::open(&path).unwrap();
        r.bind(&binding("alice"), "t").unwrap();
        r.put("contacts", "c1", json!({"name": "kept"})).unwrap();
    }
    // What a switch killed before its rename leaves behind: a half-written fresh store.
    let leftover = dir.path().join("store.db.switching");
    std::fs::write(&leftover, b"half written").unwrap();
    let r = Replica::open(&path).unwrap();
    assert_eq!(r.binding().unwrap(), Some(binding("alice")));
    assert_eq!(r.get("contacts", "c1").unwrap().unwrap()["name"], "kept");
    drop(r);
    Replica::reset_file(&path, Sharing::Exclusive, &binding("bob"), "t").unwrap();
    assert!(!leftover.exists());
    assert_eq!(Replica::open(&path).unwrap().binding().unwrap(), Some(binding("bob")));
}

#[test]
fn a_sync_in_flight_for_the_old_account_cannot_write_into_the_new_one() {
    let (service, tokens) = common::server::server(None, &["alice"]);
    let token = tokens[0].clone();
    let writer = Replica::in_memory().unwrap();
    writer
        .put("contacts", "c1", json!({"name": "from the old account"}))
        .unwrap();
    let remote = LocalRemote::new(service.clone(), token, "crm");
    tidemark::sync::sync_once_blocking(&writer, |r| remote.call_blocking(r), SessionConfig::default()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    // Another process can only switch the file under this handle when they share it.
    let old = Replica::open_shared(&path).unwrap();
    old.bind(&binding("alice"), "t").unwrap();
    let mut session = Session::new(SessionConfig::default());
    let request = session.next_request(&old).unwrap().unwrap();
    let answer = remote.call_blocking(request).unwrap();
    // Another process switches the store while the answer is on its way.
    Replica::reset_file(&path, Sharing::Processes, &binding("bob"), "t").unwrap();
    let err = session.handle_response(&old, answer).unwrap_err();
    assert!(
        matches!(err, Error::Sync(ref m) if m.contains("switched accounts")),
        "{err:?}"
    );
    assert!(old.is_replaced());
    drop(old);
    let new = Replica::open(&path).unwrap();
    assert_eq!(new.binding().unwrap(), Some(binding("bob")));
    assert!(new.view_rows().unwrap().is_empty());
    assert_eq!(new.status().unwrap().package_version, None);
}
