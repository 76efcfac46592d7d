//! What the client says when something goes wrong, through the real binary:
//! exactly one line on stderr that names the root cause and what to do, with
//! no log lines, no colour and no debug dump; exit 1; and nothing changed.

#![cfg(feature = "cli")]

use std::process::Output;

#[path = "common/cli.rs"]
mod cli;
use cli::*;

/// Expects exit 1, nothing on stdout, and exactly `line` (plus its newline) on stderr.
fn fails_with(out: &Output, line: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(stderr, format!("{line}\n"), "exit {:?}", out.status.code());
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", text(&out.stdout));
}

fn logged_in(s: &Setup, name: &str) -> std::path::PathBuf {
    let store = s.store(name);
    let out = login(&store, &s.server.url, "alice", &s.alice);
    assert!(out.status.success(), "{}", text(&out.stderr));
    store
}

#[test]
fn a_command_on_a_missing_store_creates_nothing_and_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no").join("such").join("store.db");
    let commands: [&[&str]; 10] = [
        &["status"],
        &["put", "contacts", "c1", "name=Ada"],
        &["get", "contacts", "c1"],
        &["list", "contacts"],
        &["delete", "contacts", "c1"],
        &["conflicts"],
        &["sync"],
        &["sync", "--watch"],
        &["rejected"],
        &["rejected", "--discard"],
    ];
    for args in commands {
        let out = run(&mut client(&missing, args));
        fails_with(
            &out,
            &format!(
                "error: no store at {}: run `tidemark login` (or `tidemark import`) to create one there, or pass --store with the path of yours",
                missing.display()
            ),
        );
    }
    assert!(
        !dir.path().join("no").exists(),
        "no directory was made for the missing store"
    );
    // An import of a file that is not there makes no store either.
    let out = run(&mut client(&missing, &["import", "contacts", "/no/such/input.jsonl"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("no").exists());
}

#[test]
fn each_kind_of_bad_import_line_names_its_line_and_what_was_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("i.db");
    let good = "{\"id\":\"a\",\"fields\":{\"n\":1}}\n{\"id\":\"b\",\"fields\":{\"n\":2}}\n\n{\"id\":\"c\",\"fields\":{\"n\":3}}\n";
    let deep = format!(
        "{{\"id\":\"d\",\"fields\":{{\"n\":{}{}}}}}",
        "[".repeat(70),
        "]".repeat(70)
    );
    let cases: [(&[u8], String); 5] = [
        (
            b"{\"id\":\"d\",\"fields\":{\"n\":\xff}}",
            "line 5: not UTF-8 (byte 25 of the line is not valid); list format is UTF-8 JSON".into(),
        ),
        (
            b"{\"id\":\"d\",\"fields\":{\"n\":}",
            "line 5, column 25: expected value; a list-format line looks like {\"id\":\"c1\",\"fields\":{\"name\":\"Ada\"}}"
                .into(),
        ),
        (
            b"{\"id\":7,\"fields\":{}}",
            "line 5, column 7: invalid type: integer `7`, expected a string; a list-format line looks like {\"id\":\"c1\",\"fields\":{\"name\":\"Ada\"}}"
                .into(),
        ),
        (
            b"{\"id\":\"\",\"fields\":{}}",
            "line 5: record id is empty: give a non-empty name".into(),
        ),
        (
            deep.as_bytes(),
            "line 5: field \"n\" holds JSON nested 70 levels deep; at most 64 are stored: flatten the value or store it as a string"
                .into(),
        ),
    ];
    for (n, (bad, why)) in cases.iter().enumerate() {
        let input = dir.path().join(format!("in{n}.jsonl"));
        let mut bytes = good.as_bytes().to_vec();
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(b"\n{\"id\":\"e\",\"fields\":{}}\n");
        std::fs::write(&input, bytes).unwrap();
        let _ = std::fs::remove_file(&store);
        // Batches of two: lines 1 and 2 are committed, line 4 waits with line 5.
        let out = run(&mut client(
            &store,
            &["import", "contacts", input.to_str().unwrap(), "--batch", "2"],
        ));
        fails_with(
            &out,
            &format!("error: {why}; lines 4–5 were not imported (2 records before them were)"),
        );
        let listed = ok(&mut client(&store, &["list", "contacts"]));
        let ids: Vec<&str> = listed.lines().map(|l| &l[7..8]).collect();
        assert_eq!(ids, ["a", "b"], "case {n}: exactly the lines said applied: {listed}");
    }
}

#[test]
fn an_unreachable_server_and_a_revoked_token_are_named_as_such() {
    let mut s = setup();
    let store = logged_in(&s, "a.db");
    ok(&mut client(&store, &["put", "contacts", "c1", "name=Ada"]));

    let token_id = s.alice.split('.').nth(1).unwrap().to_string();
    admin(&s.server, &["revoke-token", &token_id]);
    let out = run(&mut client(&store, &["sync"]));
    fails_with(
        &out,
        &format!(
            "error: sync failed: the server at {} refused this store's token (401: revoked or replaced): `tidemark login` with a new token for \"alice\" (the data is kept); 1 change(s) still pending, nothing lost",
            s.server.url
        ),
    );

    s.server.stop();
    let out = run(&mut client(&store, &["sync"]));
    fails_with(
        &out,
        &format!(
            "error: sync failed: cannot reach the server at {}: Connection refused (os error 111); 1 change(s) still pending, nothing lost",
            s.server.url
        ),
    );
    // The same with logs asked for: they come, and the error line is still said once.
    let out = run(client(&store, &["sync"]).env("RUST_LOG", "info"));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.matches("error: sync failed: cannot reach").count(),
        1,
        "{stderr}"
    );
}

/// A wrong token, a wrong space, or a server that cannot be reached: `login`
/// says which, and the store is byte for byte what it was.
#[test]
fn a_login_that_the_server_refuses_changes_nothing_and_says_what_was_wrong() {
    let s = setup();
    let store = logged_in(&s, "a.db");
    ok(&mut client(&store, &["put", "contacts", "c1", "name=Ada"]));
    let before = std::fs::read(&store).unwrap();
    let url = s.server.url.as_str();
    let login_with = |token: &str, space: &str, server: &str| {
        run(&mut client(
            &store,
            &[
                "login", "--server", server, "--user", "alice", "--token", token, "--space", space, "--yes",
            ],
        ))
    };

    let out = login_with(&format!("{}x", s.alice), "crm", url);
    fails_with(
        &out,
        &format!(
            "error: the server at {url} refused the token (401: wrong or revoked): check it, or ask the server's admin for a new one (`tidemark admin new-token alice`); nothing was changed"
        ),
    );
    assert!(
        std::fs::read(&store).unwrap() == before,
        "a wrong token changed the store"
    );

    let out = login_with(&s.alice, "crmx", url);
    fails_with(
        &out,
        &format!(
            "error: the server at {url} has no space \"crmx\" that the token's user may use (404): check the space name (--space), or ask the server's admin to grant it; nothing was changed"
        ),
    );
    assert!(
        std::fs::read(&store).unwrap() == before,
        "a wrong space changed the store"
    );

    let gone = unused_url();
    let out = login_with(&s.alice, "crm", &gone);
    fails_with(
        &out,
        &format!(
            "error: cannot reach the server at {gone}: Connection refused (os error 111): check the server URL (--server) and that the server runs; nothing was changed"
        ),
    );
    assert!(
        std::fs::read(&store).unwrap() == before,
        "an unreachable server changed the store"
    );

    // Another account without --yes: refused before the server is asked (the
    // store is opened to read its account, which commits an empty transaction).
    let out = login(&store, &gone, "bob", &s.bob);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("loses 1 unsynced change(s)"),
        "{}",
        text(&out.stderr)
    );
    let st = status(&store);
    assert_eq!(
        (st["user"].as_str(), st["pending"].as_u64()),
        (Some("alice"), Some(1)),
        "{st}"
    );

    // The store still works with its own account.
    let out = run(&mut client(&store, &["sync"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // And a refused login on a new path creates no store.
    let fresh = s.store("fresh.db");
    let out = login(&fresh, url, "alice", "tm1.nope.nope");
    assert_eq!(out.status.code(), Some(1));
    assert!(!fresh.exists());
}

/// A loopback URL where nothing listens: a port just freed.
fn unused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// The client's own disk fills during a sync: the line names the disk and
/// its error, not redb's later "Previous I/O error". Mounting the small tmpfs
/// takes root: without it the test says so and does nothing.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_under_the_store_is_named_in_the_sync_error() {
    #[path = "common/tmpfs.rs"]
    mod tmpfs;
    use tmpfs::{Tmpfs, fill, is_root, noise};
    if !is_root() {
        eprintln!("SKIPPED: mounting the small tmpfs this test fills takes root; run the suite as root (CI does)");
        return;
    }
    let s = setup();
    let disk = s.dir.path().join("disk");
    let _tmpfs = Tmpfs::mount(&disk, "8m");
    let store = disk.join("a.db");
    let out = login(&store, &s.server.url, "alice", &s.alice);
    assert!(out.status.success(), "{}", text(&out.stderr));
    ok(&mut client(&store, &["put", "contacts", "mine", "name=Ada"]));
    // Another device writes more than the full disk can take in.
    let writer = logged_in(&s, "writer.db");
    for i in 0..6 {
        let value = format!("name={}", noise(100 << 10, i));
        ok(&mut client(&writer, &["put", "contacts", &format!("big{i}"), &value]));
    }
    ok(&mut client(&writer, &["sync"]));
    fill(&disk.join("filler"));

    let out = run(&mut client(&store, &["sync"]));
    fails_with(
        &out,
        "error: sync failed: the store's disk failed (I/O error: No space left on device (os error 28)): free disk space (or fix the device) and sync again; nothing lost",
    );
    std::fs::remove_file(disk.join("filler")).unwrap();
    let out = run(&mut client(&store, &["sync"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(status(&store)["pending"], 0);
    assert_eq!(ok(&mut client(&store, &["list", "contacts"])).lines().count(), 7);
}

#[test]
fn a_store_whose_first_download_is_unfinished_says_so_where_records_may_be_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.db");
    new_local_store(&store);
    ok(&mut client(&store, &["put", "contacts", "c1", "name=Ada"]));
    assert_eq!(
        status(&store)["initial_sync"],
        serde_json::Value::Null,
        "never logged in"
    );
    // A login whose first round has not run (the process was killed, the
    // server went away): the store is bound and holds only what was here.
    tidemark::Replica::open_shared(&store)
        .unwrap()
        .bind(&tidemark::Binding::new("http://127.0.0.1:9", "alice", "crm"), "tm1.a.b")
        .unwrap();
    assert_eq!(status(&store)["initial_sync"], "unfinished");

    let unfinished = "this store's first download from the server is unfinished: `tidemark sync` finishes it";
    fails_with(
        &run(&mut client(&store, &["get", "contacts", "c2"])),
        &format!("error: record contacts/c2 does not exist here yet; {unfinished}"),
    );
    fails_with(
        &run(&mut client(&store, &["delete", "contacts", "c2"])),
        &format!("error: record contacts/c2 does not exist here yet; {unfinished}"),
    );
    let out = run(&mut client(&store, &["put", "contacts", "c2", "name=Grace"]));
    assert!(out.status.success());
    assert_eq!(
        text(&out.stderr),
        format!(
            "warning: contacts/c2 is new to this store, and {unfinished}. If the server holds this record, \
             its values and these meet as concurrent ones (`tidemark conflicts` lists them)\n"
        )
    );
    // A record held here is edited without a word.
    let out = run(&mut client(&store, &["put", "contacts", "c1", "name=Ada L."]));
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "");
    let out = run(&mut client(&store, &["list", "contacts"]));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).lines().count(), 2);
    assert_eq!(
        text(&out.stderr),
        format!("note: records not downloaded yet are not listed: {unfinished}\n")
    );
}
