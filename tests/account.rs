//! Logging a store in and switching it to another account, through the
//! library: one spelling of a server URL, what a switch would lose and the
//! policy that allows it, the fence and crash safety.

#![cfg(feature = "server")]

mod common;

use serde_json::json;
use tidemark::protocol::{Session, SessionConfig};
use tidemark::replica::{Sharing, SwitchPolicy};
use tidemark::server::local::LocalRemote;
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
    assert_eq!(
        (s.pending, s.pulled, s.rejected, s.package_version),
        (0, tidemark::Seq::ZERO, 0, None)
    );
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
    tidemark::sync::Round::new(&writer, SessionConfig::default())
        .run_blocking(|r| remote.call_blocking(r))
        .unwrap();

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

#[test]
fn a_server_url_has_one_spelling() {
    let one = Binding::new("HTTP://Sync.Example.COM:80/tidemark/", "alice", "crm");
    assert_eq!(one.server, "http://sync.example.com/tidemark");
    for other in [
        "http://sync.example.com/tidemark",
        " http://SYNC.example.com/tidemark// ",
        "http://sync.example.com:80/tidemark",
    ] {
        assert_eq!(Binding::new(other, "alice", "crm"), one, "{other:?}");
    }
    assert_eq!(Binding::normalize_server("https://h.test:443/"), "https://h.test");
    assert_eq!(Binding::normalize_server("https://H.test:8443"), "https://h.test:8443");
    assert_eq!(
        Binding::normalize_server("http://Ada:Secret@H.test/Path/"),
        "http://Ada:Secret@h.test/Path",
        "credentials and paths keep their case"
    );
    assert_ne!(
        Binding::new("http://h.test/Path", "alice", "crm"),
        Binding::new("http://h.test/path", "alice", "crm")
    );
    assert_ne!(
        Binding::new("http://h.test:8080", "alice", "crm"),
        Binding::new("http://h.test", "alice", "crm")
    );
    // A binding stored in another spelling (by a build or an app that did not
    // normalise) still names the same account.
    let stored = Binding {
        server: "http://H.TEST/".into(),
        user: "alice".into(),
        space: "crm".into(),
    };
    assert!(stored.same_account(&Binding::new("http://h.test", "alice", "crm")));
    assert!(!stored.same_account(&Binding::new("http://h.test", "bob", "crm")));
    assert!(!stored.same_account(&Binding::new("http://h.test", "alice", "sales")));
}

#[test]
fn a_login_with_the_url_spelled_otherwise_keeps_the_data_and_takes_the_new_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let first = Binding::new("http://Sync.Example.test:8080", "alice", "crm");
    assert_eq!(
        Replica::switch_account(&path, Sharing::Exclusive, &first, "t1", SwitchPolicy::KeepChanges).unwrap(),
        None,
        "a new store is bound"
    );
    {
        let r = Replica::open(&path).unwrap();
        r.put("contacts", "c1", json!({"name": "unsynced"})).unwrap();
    }
    for spelling in [
        "http://sync.example.test:8080/",
        "HTTP://SYNC.EXAMPLE.TEST:8080",
        "http://sync.example.test:8080//",
    ] {
        let again = Binding {
            server: spelling.into(),
            user: "alice".into(),
            space: "crm".into(),
        };
        let r = Replica::open(&path).unwrap();
        assert_eq!(r.switch_loss(&again).unwrap(), None, "{spelling:?}");
        drop(r);
        // Even the policy that may discard changes keeps them: nothing is switched.
        let cleared =
            Replica::switch_account(&path, Sharing::Exclusive, &again, "t2", SwitchPolicy::DiscardChanges).unwrap();
        assert_eq!(cleared, None, "{spelling:?} is the same account");
        let r = Replica::open(&path).unwrap();
        assert_eq!(r.get("contacts", "c1").unwrap().unwrap()["name"], "unsynced");
        assert_eq!(r.status().unwrap().pending, 1);
        assert_eq!(r.token().unwrap().as_deref(), Some("t2"));
        assert_eq!(r.binding().unwrap().unwrap().server, "http://sync.example.test:8080");
        assert_eq!(r.generation().unwrap(), 0);
    }
}

#[test]
fn a_switch_to_another_account_names_its_loss_and_clears_only_as_the_policy_allows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let alice = Binding::new("http://h.test/", "alice", "crm");
    let bob = Binding::new("http://h.test", "bob", "crm");
    Replica::switch_account(&path, Sharing::Exclusive, &alice, "ta", SwitchPolicy::KeepChanges).unwrap();
    {
        let r = Replica::open(&path).unwrap();
        r.put("contacts", "c1", json!({"name": "A"})).unwrap();
        r.put("contacts", "c2", json!({"name": "B"})).unwrap();
        let loss = r.switch_loss(&bob).unwrap().expect("another user is another account");
        assert_eq!((loss.pending, loss.rejected), (2, 0));
        assert_eq!(
            (loss.current.user.as_str(), loss.wanted.user.as_str()),
            ("alice", "bob")
        );
        assert!(loss.loses_changes());
        let words = loss.to_string();
        assert!(words.contains("loses 2 unsynced change(s)"), "{words}");
    }
    let err = Replica::switch_account(&path, Sharing::Exclusive, &bob, "tb", SwitchPolicy::KeepChanges).unwrap_err();
    match &err {
        Error::SwitchRefused(loss) => assert_eq!(loss.pending, 2),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    {
        let r = Replica::open(&path).unwrap();
        assert_eq!(r.binding().unwrap(), Some(alice.clone()), "refused: still alice's");
        assert_eq!(r.status().unwrap().pending, 2);
        assert_eq!(r.token().unwrap().as_deref(), Some("ta"));
    }
    let cleared = Replica::switch_account(&path, Sharing::Exclusive, &bob, "tb", SwitchPolicy::DiscardChanges)
        .unwrap()
        .expect("cleared");
    assert_eq!(cleared.pending, 2);
    let r = Replica::open(&path).unwrap();
    assert_eq!(r.binding().unwrap(), Some(bob.clone()));
    assert_eq!(r.token().unwrap().as_deref(), Some("tb"));
    assert!(r.view_rows().unwrap().is_empty());
    assert_eq!(r.status().unwrap().pending, 0);
    drop(r);

    // Nothing of bob's made here: the cautious policy clears downloaded data alone.
    let carol = Binding::new("http://h.test", "carol", "crm");
    let cleared = Replica::switch_account(&path, Sharing::Exclusive, &carol, "tc", SwitchPolicy::KeepChanges)
        .unwrap()
        .expect("another account");
    assert!(!cleared.loses_changes());
    assert_eq!(Replica::open(&path).unwrap().binding().unwrap(), Some(carol));
}
