//! A round with nothing to push begins with its pull: one request when nothing
//! changed, and the package, a new epoch or a restored server still noticed.

#![cfg(feature = "server")]

mod common;

use serde_json::json;
use tidemark::protocol::{Request, SessionConfig};
use tidemark::server::local::LocalRemote;
use tidemark::sync::Round;
use tidemark::{Package, Replica};

use common::crm_package;
use common::server::{SPACE, Svc, server};

/// What a request is, in a word.
fn kind(request: &Request) -> &'static str {
    match request {
        Request::Package => "package",
        Request::Push(_) => "push",
        Request::Pull { .. } => "pull",
        Request::Snapshot { .. } => "snapshot",
        _ => "other",
    }
}

/// One round of `replica` against `remote`: the requests it sent.
fn round(replica: &Replica, remote: &LocalRemote<tidemark::server::store::redb::RedbStore>) -> Vec<&'static str> {
    let mut sent = Vec::new();
    Round::new(replica, SessionConfig::default())
        .run_blocking(|request| {
            sent.push(kind(&request));
            remote.call_blocking(request)
        })
        .unwrap();
    sent
}

fn member(service: &Svc, token: &str) -> (Replica, LocalRemote<tidemark::server::store::redb::RedbStore>) {
    let replica = Replica::in_memory().unwrap();
    let remote = LocalRemote::new(service.clone(), token, SPACE);
    (replica, remote)
}

#[test]
fn a_round_with_nothing_to_do_is_one_pull() {
    let (service, tokens) = server(Some(crm_package()), &["ada", "bob"]);
    let (ada, ada_remote) = member(&service, &tokens[0]);
    let (bob, bob_remote) = member(&service, &tokens[1]);
    ada.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    assert_eq!(round(&ada, &ada_remote), ["package", "push", "pull"], "the first round");
    round(&bob, &bob_remote);

    assert_eq!(round(&ada, &ada_remote), ["pull"], "nothing to do: one request");
    assert_eq!(round(&ada, &ada_remote), ["pull"]);

    // Something new on the server: still one request, which brings it.
    bob.put("contacts", "c2", json!({"name": "Bob"})).unwrap();
    round(&bob, &bob_remote);
    assert_eq!(round(&ada, &ada_remote), ["pull"]);
    assert_eq!(ada.get("contacts", "c2").unwrap().unwrap()["name"], "Bob");

    // Something to push: the round asks for the package first, as always.
    ada.put("contacts", "c1", json!({"name": "Ada L."})).unwrap();
    assert_eq!(round(&ada, &ada_remote), ["package", "push", "pull"]);
    assert_eq!(round(&ada, &ada_remote), ["pull"]);
}

#[test]
fn a_quiet_round_fetches_a_new_package_after_its_pull() {
    let (service, tokens) = server(Some(crm_package()), &["ada", "bob"]);
    let (ada, ada_remote) = member(&service, &tokens[0]);
    let (bob, bob_remote) = member(&service, &tokens[1]);
    bob.put("contacts", "c1", json!({"name": "Bob"})).unwrap();
    round(&bob, &bob_remote);
    round(&ada, &ada_remote);
    assert_eq!(ada.package().unwrap().unwrap().version, 1);

    let mut v2 = crm_package();
    v2.version = 2;
    service.set_package(SPACE, Some(&v2)).unwrap();
    assert_eq!(round(&ada, &ada_remote), ["pull", "package", "pull"]);
    assert_eq!(ada.package().unwrap().unwrap().version, 2);
    assert_eq!(round(&ada, &ada_remote), ["pull"]);

    // Schemaless now: the version is 0, not this replica's.
    service.set_package(SPACE, None::<&Package>).unwrap();
    assert_eq!(round(&ada, &ada_remote), ["pull", "package", "pull"]);
    assert_eq!(ada.package().unwrap(), None);
    assert_eq!(round(&ada, &ada_remote), ["pull"]);
}

#[test]
fn a_quiet_round_that_meets_another_server_starts_over_with_the_package() {
    let (one, one_tokens) = server(Some(crm_package()), &["ada"]);
    let (ada, one_remote) = member(&one, &one_tokens[0]);
    ada.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    round(&ada, &one_remote);
    assert_eq!(round(&ada, &one_remote), ["pull"]);

    // The server's store was replaced: another epoch, nothing in it.
    let (two, two_tokens) = server(Some(crm_package()), &["ada"]);
    let two_remote = LocalRemote::new(two.clone(), &two_tokens[0], SPACE);
    let sent = round(&ada, &two_remote);
    assert_eq!(
        sent[..2],
        ["pull", "package"],
        "the answer of another epoch is dropped: {sent:?}"
    );
    assert!(sent.contains(&"push"), "the log is pushed again: {sent:?}");
    let (check, check_remote) = member(&two, &two_tokens[0]);
    round(&check, &check_remote);
    assert_eq!(check.get("contacts", "c1").unwrap().unwrap()["name"], "Ada");
    assert_eq!(round(&ada, &two_remote), ["pull"]);
}
