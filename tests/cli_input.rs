//! What the client takes in, through the real binary: ids in one Unicode
//! normal form, tokens kept off the command line, options only where they apply.

#![cfg(feature = "cli")]

use std::io::Write;
use std::process::Stdio;

use serde_json::{Value, json};

#[path = "common/cli.rs"]
mod cli;
use cli::*;

const NFD: &str = "rene\u{301}";
const NFC: &str = "ren\u{e9}";

#[test]
fn ids_that_differ_only_in_unicode_normal_form_are_one_record_on_every_replica() {
    let s = setup();
    let (a, b) = (s.store("a.db"), s.store("b.db"));
    for store in [&a, &b] {
        let out = login(store, &s.server.url, "alice", &s.alice);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    ok(&mut client(&a, &["put", "contacts", NFD, "name=René"]));
    ok(&mut client(&a, &["put", "contacts", NFC, "email=rene@example.com"]));
    let listed = ok(&mut client(&a, &["list", "contacts"]));
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let line: Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(line["id"], NFC, "stored in NFC");
    let got: Value = serde_json::from_str(&ok(&mut client(&a, &["get", "contacts", NFD]))).unwrap();
    assert_eq!(got, json!({"name": "René", "email": "rene@example.com"}));

    // Typed the other way on another replica: the same record after a sync.
    ok(&mut client(&b, &["put", "contacts", NFD, "age=40"]));
    for store in [&a, &b, &a] {
        let out = run(&mut client(store, &["sync"]));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let on_a = ok(&mut client(&a, &["list", "contacts"]));
    assert_eq!(on_a, ok(&mut client(&b, &["list", "contacts"])), "the replicas agree");
    let line: Value = serde_json::from_str(on_a.trim()).unwrap();
    assert_eq!(
        line,
        json!({"id": NFC, "fields": {"name": "René", "email": "rene@example.com", "age": 40}})
    );
}

#[test]
fn login_takes_the_token_from_the_environment_or_standard_input_and_asks_for_one_otherwise() {
    let s = setup();
    let args = |store: &std::path::Path| {
        let mut cmd = client(
            store,
            &["login", "--server", &s.server.url, "--user", "alice", "--space", "crm"],
        );
        cmd.stdout(Stdio::null());
        cmd
    };

    let from_env = s.store("env.db");
    let out = run(args(&from_env).env("TIDEMARK_TOKEN", &s.alice));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(status(&from_env)["user"], "alice");

    let from_stdin = s.store("stdin.db");
    let mut child = args(&from_stdin)
        .arg("--token-stdin")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", s.alice).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    ok(&mut client(&from_stdin, &["sync"]));

    // No token, and no terminal to ask on.
    let none = s.store("none.db");
    let out = run(&mut args(&none));
    assert_eq!(
        text(&out.stderr),
        "error: no token: set TIDEMARK_TOKEN, or pass --token-stdin with the token on standard input (a terminal is asked for it)\n"
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!none.exists(), "nothing was created");
}

#[test]
fn serve_and_admin_do_not_show_the_client_store_option_and_client_commands_do() {
    let help = |args: &[&str]| ok(tidemark().args(args).arg("--help"));
    for server_side in [&["serve"][..], &["admin"], &["admin", "add-user"]] {
        let shown = help(server_side);
        assert!(!shown.contains("--store"), "{server_side:?}:\n{shown}");
    }
    for client_side in [
        &["put"][..],
        &["get"],
        &["list"],
        &["delete"],
        &["import"],
        &["conflicts"],
        &["status"],
        &["login"],
        &["sync"],
        &["rejected"],
    ] {
        let shown = help(client_side);
        assert!(shown.contains("--store <PATH>"), "{client_side:?}:\n{shown}");
    }
    assert!(help(&[]).contains("--store <PATH>"));
    assert!(help(&["login"]).contains("--token-stdin"));
    // A command line that does not parse is a failure (1); 2 says the server refused changes.
    let out = run(tidemark().args(["sync", "--no-such-option"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}
