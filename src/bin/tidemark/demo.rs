//! `tidemark demo`: the main job on the embedded default, nothing to set up.
//! An in-process server on a temporary redb store, two people, two replicas,
//! offline edits on both sides, a sync, and the merged result.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tidemark::protocol::SessionConfig;
use tidemark::protocol::message::{CreateSpace, Grant};
use tidemark::replica::{Sharing, SwitchPolicy};
use tidemark::server::local::LocalRemote;
use tidemark::server::store::redb::RedbStore;
use tidemark::server::{Limits, Service};
use tidemark::sync::Round;
use tidemark::{Binding, Package, Replica};

const PACKAGE: &str = r#"{"version": 1, "collections": {
    "contacts": {"fields": {"name": "string", "email": "string", "phone": "string", "notes": "text", "calls": "counter"}},
    "accounts": {"fields": {"name": "string", "industry": "string"}}
}}"#;

fn show(who: &str, replica: &Replica) -> Result<()> {
    out!("  {who}'s view:")?;
    for collection in ["accounts", "contacts"] {
        for (id, fields) in replica.list(collection, None, 100)? {
            out!("    {collection}/{id} {}", serde_json::Value::Object(fields))?;
        }
    }
    Ok(())
}

pub fn run() -> Result<ExitCode> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let store = RedbStore::open(dir.path().join("server")).context("opening the demo server store")?;
    let service = Arc::new(Service::new(store, Limits::default(), None)?);
    let package = Package::from_json(PACKAGE)?;
    service.create_space(&CreateSpace {
        space: "sales".into(),
        package: Some(package),
    })?;
    let mut tokens = Vec::new();
    for user in ["alice", "bob"] {
        tokens.push(service.add_user(user)?.token);
        service.grant(&Grant {
            user: user.into(),
            space: "sales".into(),
            read_only: false,
        })?;
    }
    out!("1. An embedded server with space \"sales\" (package v1), users alice and bob.")?;

    let alice = Replica::open(dir.path().join("alice.db"))?;
    let bob = Replica::open(dir.path().join("bob.db"))?;
    let remote_a = LocalRemote::new(service.clone(), tokens[0].clone(), "sales");
    let remote_b = LocalRemote::new(service.clone(), tokens[1].clone(), "sales");
    for (replica, user) in [(&alice, "alice"), (&bob, "bob")] {
        replica.bind(
            &Binding {
                server: "embedded://demo".into(),
                user: user.into(),
                space: "sales".into(),
            },
            "",
        )?;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cfg = SessionConfig::default;

    // Both log in and download the package; alice seeds some records.
    rt.block_on(Round::new(&alice, cfg()).run(&remote_a))?;
    alice.put(
        "accounts",
        "acme",
        json!({"name": "Acme Corp", "industry": "Manufacturing"}),
    )?;
    alice.put(
        "contacts",
        "c1",
        json!({"name": "Ada Lovelace", "email": "ada@acme.test", "notes": "Met at the fair.", "calls": 0}),
    )?;
    alice.put(
        "contacts",
        "c2",
        json!({"name": "Charles Babbage", "email": "cb@acme.test"}),
    )?;
    rt.block_on(Round::new(&alice, cfg()).run(&remote_a))?;
    rt.block_on(Round::new(&bob, cfg()).run(&remote_b))?;
    out!("2. alice created an account and two contacts; both replicas synced.")?;

    // Offline on both sides.
    alice.put("contacts", "c1", json!({"phone": "+44 20 7946 0001"}))?;
    alice.put("contacts", "c1", json!({"email": "ada@engines.test"}))?;
    alice.splice_text("contacts", "c1", "notes", 0, 0, "VIP. ")?;
    alice.increment("contacts", "c1", "calls", 2)?;
    alice.delete("contacts", "c2")?;
    bob.put("contacts", "c1", json!({"email": "countess@lovelace.test"}))?;
    bob.splice_text("contacts", "c1", "notes", 16, 0, " Wants a demo.")?;
    bob.increment("contacts", "c1", "calls", 1)?;
    bob.put(
        "contacts",
        "c3",
        json!({"name": "Grace Hopper", "email": "grace@navy.test"}),
    )?;
    out!("3. Offline: alice adds a phone, changes the email, edits the notes, logs 2 calls, deletes c2;")?;
    out!("   bob changes the same email, edits the same notes, logs 1 call, adds c3.")?;
    out!(
        "   pending: alice {}, bob {}",
        alice.status()?.pending,
        bob.status()?.pending
    )?;

    for (replica, remote) in [(&alice, &remote_a), (&bob, &remote_b), (&alice, &remote_a)] {
        let s = rt.block_on(Round::new(replica, cfg()).run(remote))?;
        out!("   sync: {s}")?;
    }
    out!("4. After syncing:")?;
    show("alice", &alice)?;
    show("bob", &bob)?;
    for c in alice.conflicts(None, None)? {
        for f in &c.fields {
            let values: Vec<String> = f
                .values
                .iter()
                .map(|v| format!("{} (by {}…)", v.value, &v.actor[..8]))
                .collect();
            out!(
                "  conflict kept on {}/{} field {}: {}",
                c.collection,
                c.id,
                f.field,
                values.join(" vs ")
            )?;
        }
    }
    if alice.view_rows()? != bob.view_rows()? {
        bail!("the replicas did not converge");
    }
    out!("5. Both views are byte-for-byte identical: converged.")?;

    alice.put("contacts", "c3", json!({"phone": "+1 555 0100"}))?;
    let wanted = Binding::new("embedded://demo", "carol", "sales");
    out!("6. alice edits offline again, then someone tries to log this store in as carol:")?;
    drop(alice);
    let alice_path = dir.path().join("alice.db");
    match Replica::switch_account(&alice_path, Sharing::Exclusive, &wanted, "", SwitchPolicy::KeepChanges) {
        Err(tidemark::Error::SwitchRefused(loss)) => out!("   tidemark refuses: {loss}.")?,
        other => bail!("logging alice's store in as carol should be refused: {other:?}"),
    }
    drop((bob, remote_a, remote_b, service));
    dir.close().context("removing the demo's temporary files")?;
    out!("Done; nothing left behind.")?;
    Ok(ExitCode::SUCCESS)
}
