//! The server half of the CLI contract, through the real binary: `serve`,
//! `admin`, `login`, `sync`, `status`, with a server child process on a
//! loopback port.

#![cfg(feature = "cli")]

use std::path::PathBuf;

use serde_json::{Value, json};

#[path = "common/closed_stdout.rs"]
mod closed_stdout;
use closed_stdout::with_stdout_closed;

#[path = "common/cli.rs"]
mod cli;
use cli::*;

#[test]
fn serve_admin_login_sync_and_the_exit_codes_of_sync_through_the_binary() {
    let mut s = setup();
    let url = s.server.url.clone();
    let a = s.store("a.db");
    let b = s.store("b.db");
    let bob_store = s.store("bob.db");

    // alice on store a: login (initial sync, package downloaded), put, sync → 0, "pushed 1".
    let out = login(&a, &url, "alice", &s.alice);
    assert!(out.status.success(), "login a: {}", text(&out.stderr));
    let st = status(&a);
    assert_eq!(st["user"], "alice");
    assert_eq!(st["space"], "crm");
    assert_eq!(st["package_version"], 1, "login downloaded the package: {st}");
    ok(&mut client(&a, &["put", "contacts", "c1", "name=Ada", "age=36"]));
    assert_eq!(status(&a)["pending"], 1);
    let out = run(&mut client(&a, &["sync"]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "sync a: {} / {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("pushed 1")),
        "sync reports what it pushed: {stdout:?}"
    );
    let st = status(&a);
    assert_eq!(st["pending"], 0, "{st}");
    assert_eq!(st["rejected"], 0, "{st}");

    // alice on store b: login downloads the record.
    let out = login(&b, &url, "alice", &s.alice);
    assert!(out.status.success(), "login b: {}", text(&out.stderr));
    let got: Value = serde_json::from_str(&ok(&mut client(&b, &["get", "contacts", "c1"]))).unwrap();
    assert_eq!(got, json!({"name": "Ada", "age": 36}));

    // bob (read-only): login works and reads, a put is refused by the server → exit 2.
    let out = login(&bob_store, &url, "bob", &s.bob);
    assert!(out.status.success(), "login bob: {}", text(&out.stderr));
    let got: Value = serde_json::from_str(&ok(&mut client(&bob_store, &["get", "contacts", "c1"]))).unwrap();
    assert_eq!(got["name"], "Ada");
    ok(&mut client(&bob_store, &["put", "contacts", "c2", "name=Bob's"]));
    let out = run(&mut client(&bob_store, &["sync"]));
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a refused push exits 2: {} / {stderr}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains("refused") && stderr.contains("read-only"),
        "stderr names the refusal and why: {stderr:?}"
    );
    let st = status(&bob_store);
    assert_eq!(st["rejected"], 1, "{st}");
    assert_eq!(st["pending"], 0, "a rejected op does not block the queue: {st}");
    let compact = serde_json::to_string(&st).unwrap();
    assert!(compact.contains("\"rejected\":1"), "{compact}");
    // The refused record never reached alice.
    ok(&mut client(&b, &["sync"]));
    let out = run(&mut client(&b, &["get", "contacts", "c2"]));
    assert!(!out.status.success(), "bob's refused put did not reach the server");

    // The server goes away: sync on a fails with exit 1, a message, nothing lost.
    ok(&mut client(&a, &["put", "contacts", "c3", "name=Offline"]));
    let pending = status(&a)["pending"].clone();
    assert_eq!(pending, 1);
    s.server.stop();
    let out = run(&mut client(&a, &["sync"]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "an unreachable server exits 1: {stderr}");
    assert!(!stderr.trim().is_empty(), "sync says why it failed");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one error line, no log lines: {stderr:?}"
    );
    assert!(
        stderr.starts_with("error: ") && !stderr.contains("RoundSummary") && !stderr.contains('\x1b'),
        "no debug dump, no colour: {stderr:?}"
    );
    assert!(out.stdout.is_empty(), "errors go to stderr: {:?}", text(&out.stdout));
    assert_eq!(status(&a)["pending"], pending, "the pending change is kept");
    assert!(!stderr.contains(&s.alice), "the token is not printed: {stderr:?}");
    let server_log = s.server.stderr.lock().unwrap().clone();
    for secret in [s.alice.as_str(), s.bob.as_str(), ADMIN_TOKEN] {
        assert!(!server_log.contains(secret), "the server's log holds a token");
    }
    let got: Value = serde_json::from_str(&ok(&mut client(&a, &["get", "contacts", "c3"]))).unwrap();
    assert_eq!(got["name"], "Offline");

    // login on a as another user without --yes refuses and names the unsynced changes.
    let out = login(&a, &url, "bob", &s.bob);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "switching users without --yes refuses");
    assert!(
        stderr.contains("1 unsynced change"),
        "stderr names the number of unsynced changes: {stderr:?}"
    );
    let st = status(&a);
    assert_eq!(st["user"], "alice", "the store is still alice's: {st}");
    assert_eq!(st["pending"], 1, "{st}");
    let got: Value = serde_json::from_str(&ok(&mut client(&a, &["get", "contacts", "c1"]))).unwrap();
    assert_eq!(got["name"], "Ada", "the downloaded data is kept");
}

#[test]
fn serve_refuses_a_short_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(tidemark()
        .args(["serve", "--data"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("TIDEMARK_ADMIN_TOKEN", "short"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("TIDEMARK_ADMIN_TOKEN"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn admin_with_a_wrong_admin_token_fails_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerChild::start(&dir.path().join("data"));
    let out = run(tidemark()
        .args(["admin", "--server", &server.url, "add-user", "carol"])
        .env("TIDEMARK_ADMIN_TOKEN", "not-the-admin-token-at-all"));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no token printed: {:?}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("admin"), "{stderr:?}");
}

#[test]
fn login_with_a_wrong_token_fails_and_sync_without_login_says_what_to_do() {
    let s = setup();
    let store = s.store("c.db");
    let out = run(&mut client(&store, &["sync"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("login"), "{}", text(&out.stderr));

    let bad = format!("{}x", s.alice);
    let out = login(&store, &s.server.url, "alice", &bad);
    assert!(!out.status.success(), "a wrong token does not log in");
    let stderr = text(&out.stderr);
    assert!(
        stderr.to_lowercase().contains("token"),
        "stderr says the token is the problem: {stderr:?}"
    );
}

#[test]
fn login_with_a_new_token_for_the_same_user_keeps_the_data() {
    let s = setup();
    let a = s.store("a.db");
    let out = login(&a, &s.server.url, "alice", &s.alice);
    assert!(out.status.success(), "{}", text(&out.stderr));
    ok(&mut client(&a, &["put", "contacts", "c1", "name=Ada"]));
    ok(&mut client(&a, &["sync"]));
    ok(&mut client(&a, &["put", "contacts", "c2", "name=Unsynced"]));

    let new_token = admin(&s.server, &["new-token", "alice"]).trim().to_string();
    assert_ne!(new_token, s.alice);
    let out = login(&a, &s.server.url, "alice", &new_token);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let st = status(&a);
    assert_eq!(st["user"], "alice");
    assert_eq!(st["pending"], 0, "the initial sync pushed the unsynced change: {st}");
    for id in ["c1", "c2"] {
        ok(&mut client(&a, &["get", "contacts", id]));
    }
    let out = run(&mut client(&a, &["sync"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// The CLI contract: "with `--yes` ... it clears the downloaded data and the
/// package, binds the new account, downloads the package and runs the
/// initial sync."
#[test]
fn login_as_another_user_with_yes_clears_the_data_and_binds_the_new_account() {
    let s = setup();
    let a = s.store("a.db");
    let out = login(&a, &s.server.url, "alice", &s.alice);
    assert!(out.status.success(), "{}", text(&out.stderr));
    ok(&mut client(&a, &["put", "contacts", "c1", "name=Ada"]));
    ok(&mut client(&a, &["sync"]));
    ok(&mut client(&a, &["put", "contacts", "c9", "name=Lost on purpose"]));

    let out = run(&mut client(
        &a,
        &[
            "login",
            "--server",
            &s.server.url,
            "--user",
            "bob",
            "--token",
            &s.bob,
            "--space",
            "crm",
            "--yes",
        ],
    ));
    assert!(
        out.status.success(),
        "login --yes as another user switches accounts: {}",
        text(&out.stderr)
    );
    let st = status(&a);
    assert_eq!(st["user"], "bob", "{st}");
    assert_eq!(st["pending"], 0, "{st}");
    assert_eq!(st["rejected"], 0, "{st}");
    assert_eq!(st["package_version"], 1, "the package is downloaded again: {st}");
    let got: Value = serde_json::from_str(&ok(&mut client(&a, &["get", "contacts", "c1"]))).unwrap();
    assert_eq!(got["name"], "Ada", "the server's data is downloaded again");
    let out = run(&mut client(&a, &["get", "contacts", "c9"]));
    assert!(!out.status.success(), "alice's unsynced change was cleared");
    let out = run(&mut client(&a, &["sync"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// A record edit larger than the server's per-op limit (256 KiB by default)
/// is refused for good: `sync` exits 2 and moves it to the rejected list, and
/// later edits still sync (rejected ops are "never blocking the
/// queue"; `sync` exits 2 "when the round completed but the server refused
/// some ops").
#[test]
fn an_edit_over_the_servers_op_limit_is_rejected_and_does_not_block_the_queue() {
    let s = setup();
    let a = s.store("a.db");
    let out = login(&a, &s.server.url, "alice", &s.alice);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let big = s.dir.path().join("big.jsonl");
    let line = json!({"id": "huge", "fields": {"name": "x".repeat(300 * 1024)}});
    std::fs::write(&big, format!("{line}\n")).unwrap();
    ok(&mut client(&a, &["import", "contacts", big.to_str().unwrap()]));

    // Run with its stdout already closed (`tidemark sync | head -0`): the refusal is
    // still reported on stderr and in the exit code.
    let out = with_stdout_closed(&mut client(&a, &["sync"]));
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the server refused the op for good: {stderr}"
    );
    assert!(stderr.contains("refused 1 change"), "{stderr}");
    assert_eq!(status(&a)["rejected"], 1);

    ok(&mut client(&a, &["put", "contacts", "c1", "name=Ada"]));
    let out = run(&mut client(&a, &["sync"]));
    assert_eq!(out.status.code(), Some(0), "later edits sync: {}", text(&out.stderr));
    assert_eq!(status(&a)["pending"], 0);
}

/// A server and two stores logged in as alice, on a laptop and a phone. Keep the
/// setup alive: it owns the server and the stores' directory.
fn two_devices_of_alice() -> (Setup, PathBuf, PathBuf) {
    let s = setup();
    let url = s.server.url.clone();
    let (laptop, phone) = (s.store("laptop.db"), s.store("phone.db"));
    for store in [&laptop, &phone] {
        let out = login(store, &url, "alice", &s.alice);
        assert!(out.status.success(), "login: {}", text(&out.stderr));
    }
    (s, laptop, phone)
}

#[test]
fn conflicting_edits_from_two_devices_are_listed_then_resolved_by_a_new_put() {
    let (_s, laptop, phone) = two_devices_of_alice();
    ok(&mut client(
        &laptop,
        &["put", "contacts", "c1", "name=Ada", "email=ada@laptop.example"],
    ));
    ok(&mut client(&laptop, &["sync"]));
    ok(&mut client(&phone, &["sync"]));
    // Offline on both: the same field changed twice.
    ok(&mut client(
        &laptop,
        &["put", "contacts", "c1", "email=ada@work.example"],
    ));
    ok(&mut client(
        &phone,
        &["put", "contacts", "c1", "email=ada@home.example"],
    ));
    for store in [&laptop, &phone] {
        ok(&mut client(store, &["sync"]));
    }
    let out = run(&mut client(&laptop, &["sync"]));
    assert_eq!(out.status.code(), Some(0), "a conflict is not a failure");
    let said = text(&out.stderr);
    assert!(
        said.contains("1 record(s) hold conflicting values; see `tidemark conflicts`"),
        "{said}"
    );
    let listed = ok(&mut client(&laptop, &["conflicts", "contacts", "c1"]));
    let records: Vec<Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 1, "{listed}");
    assert_eq!(records[0]["collection"], "contacts");
    assert_eq!(records[0]["id"], "c1");
    let fields = records[0]["fields"].as_array().unwrap();
    assert_eq!(fields.len(), 1, "only the email is in conflict: {listed}");
    assert_eq!(fields[0]["field"], "email");
    let mut values: Vec<&str> = fields[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    // The first value is the one the view shows.
    let shown: Value = serde_json::from_str(&ok(&mut client(&laptop, &["get", "contacts", "c1"]))).unwrap();
    assert_eq!(shown["email"], values[0]);
    values.sort();
    assert_eq!(values, ["ada@home.example", "ada@work.example"]);
    // The same conflict on the other device, with the same winner.
    assert_eq!(ok(&mut client(&phone, &["conflicts"])), listed);
    assert_eq!(
        status(&phone)["conflicted"],
        1,
        "status says there is something to look at"
    );

    ok(&mut client(
        &laptop,
        &["put", "contacts", "c1", "email=ada@example.com"],
    ));
    assert_eq!(ok(&mut client(&laptop, &["conflicts"])), "", "a new write resolves it");
    ok(&mut client(&laptop, &["sync"]));
    ok(&mut client(&phone, &["sync"]));
    assert_eq!(ok(&mut client(&phone, &["conflicts"])), "");
    assert_eq!(status(&phone)["conflicted"], 0);
    let got: Value = serde_json::from_str(&ok(&mut client(&phone, &["get", "contacts", "c1"]))).unwrap();
    assert_eq!(got, json!({"name": "Ada", "email": "ada@example.com"}));
}

/// The phone brings back a record the laptop deletes at the same time: the
/// delete wins, and the phone's user is told why the record went away.
#[test]
fn an_undelete_that_lost_to_a_delete_is_listed_and_a_put_brings_the_record_back() {
    let (_s, laptop, phone) = two_devices_of_alice();
    ok(&mut client(&laptop, &["put", "contacts", "c1", "name=Ada"]));
    ok(&mut client(&laptop, &["sync"]));
    ok(&mut client(&phone, &["sync"]));
    ok(&mut client(&phone, &["delete", "contacts", "c1"]));
    ok(&mut client(&phone, &["put", "contacts", "c1", "email=ada@example.com"]));
    ok(&mut client(&laptop, &["delete", "contacts", "c1"]));
    for store in [&laptop, &phone, &laptop] {
        ok(&mut client(store, &["sync"]));
    }
    let out = run(&mut client(&phone, &["get", "contacts", "c1"]));
    assert!(
        text(&out.stderr).contains("record contacts/c1 is deleted"),
        "{}",
        text(&out.stderr)
    );
    let listed: Value = serde_json::from_str(ok(&mut client(&phone, &["conflicts"])).trim()).unwrap();
    assert_eq!(listed["fields"][0]["field"], "_deleted", "{listed}");
    let values: Vec<&Value> = listed["fields"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["value"])
        .collect();
    assert_eq!(values, [&json!(true), &json!(false)], "{listed}");
    assert_eq!(status(&laptop)["conflicted"], 1);

    ok(&mut client(&phone, &["put", "contacts", "c1", "vip=true"]));
    ok(&mut client(&phone, &["sync"]));
    ok(&mut client(&laptop, &["sync"]));
    let got: Value = serde_json::from_str(&ok(&mut client(&laptop, &["get", "contacts", "c1"]))).unwrap();
    assert_eq!(got, json!({"name": "Ada", "email": "ada@example.com", "vip": true}));
    assert_eq!(ok(&mut client(&laptop, &["conflicts"])), "");
}

#[test]
fn a_new_token_that_cannot_be_printed_is_an_error_that_says_what_to_do() {
    let s = setup();
    // The reader is gone before the token is printed: its only copy is lost.
    let out = with_stdout_closed(
        tidemark()
            .args(["admin", "--server", &s.server.url, "add-user", "carol"])
            .env("TIDEMARK_ADMIN_TOKEN", ADMIN_TOKEN),
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a lost token is not a quiet success");
    assert!(stderr.contains("admin new-token carol"), "{stderr}");
    // And that advice works: the user exists and gets a token.
    let token = admin(&s.server, &["new-token", "carol"]);
    assert!(!token.trim().is_empty());
}
