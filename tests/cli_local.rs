//! The local half of the CLI contract, through the real binary.

#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

#[path = "common/closed_stdout.rs"]
mod closed_stdout;
use closed_stdout::with_stdout_closed;

fn tidemark(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn ok(store: &Path, args: &[&str]) -> String {
    let out = tidemark(store, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A new local store at `dir/name`, made the way a person makes one without a
/// server: an import (of nothing here). Other commands refuse a missing store.
fn new_store(dir: &Path, name: &str) -> PathBuf {
    let store = dir.join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--store")
        .arg(&store)
        .args(["import", "contacts"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"imported":0}"#);
    store
}

fn fails(store: &Path, args: &[&str]) -> String {
    let out = tidemark(store, args);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(out.stdout.is_empty(), "errors go to stderr only");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn put_get_list_delete_and_status_speak_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "a.db");
    ok(
        &store,
        &[
            "put",
            "contacts",
            "c2",
            "name=Grace",
            "age=85",
            "vip=true",
            "tags=[\"navy\"]",
        ],
    );
    ok(&store, &["put", "contacts", "c1", "name=Ada Lovelace", "note=\"36\""]);
    let got: Value = serde_json::from_str(&ok(&store, &["get", "contacts", "c2"])).unwrap();
    assert_eq!(got, json!({"name": "Grace", "age": 85, "vip": true, "tags": ["navy"]}));
    let lines: Vec<Value> = ok(&store, &["list", "contacts"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        json!({"id": "c1", "fields": {"name": "Ada Lovelace", "note": "36"}})
    );
    assert_eq!(lines[1]["id"], "c2");
    ok(&store, &["delete", "contacts", "c1"]);
    assert_eq!(ok(&store, &["list", "contacts"]).lines().count(), 1);
    let status: Value = serde_json::from_str(&ok(&store, &["status"])).unwrap();
    assert_eq!(status["pending"], 3);
    assert_eq!(status["pulled"], 0);
    assert_eq!(status["rejected"], 0);
    assert!(status["server"].is_null());
}

#[test]
fn the_store_option_may_follow_the_subcommand_or_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "env.db");
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["put", "notes", "n1", "title=hi"])
        .env("TIDEMARK_STORE", &store)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["get", "notes", "n1", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), r#"{"title":"hi"}"#);
}

#[test]
fn import_reads_list_format_from_a_file_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("i.db");
    let file = dir.path().join("in.jsonl");
    std::fs::write(
        &file,
        "{\"id\":\"a\",\"fields\":{\"n\":1}}\n\n{\"id\":\"b\",\"fields\":{\"n\":2}}\n",
    )
    .unwrap();
    assert_eq!(
        ok(&store, &["import", "things", file.to_str().unwrap(), "--batch", "1"]).trim(),
        r#"{"imported":2}"#
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--store")
        .arg(&store)
        .args(["import", "things"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"id\":\"c\",\"fields\":{\"n\":3}}\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let exported = ok(&store, &["list", "things"]);
    assert_eq!(exported.lines().count(), 3);
    // list output is import input: a round trip gives the same lines.
    let copy = dir.path().join("copy.db");
    let listed = dir.path().join("listed.jsonl");
    std::fs::write(&listed, &exported).unwrap();
    ok(&copy, &["import", "things", listed.to_str().unwrap()]);
    assert_eq!(ok(&copy, &["list", "things"]), exported);
    // A record on two lines is upserted twice, and counted as two lines applied.
    std::fs::write(
        &file,
        "{\"id\":\"a\",\"fields\":{\"n\":5}}\n{\"id\":\"a\",\"fields\":{\"m\":6}}\n",
    )
    .unwrap();
    assert_eq!(
        ok(&store, &["import", "things", file.to_str().unwrap()]).trim(),
        r#"{"imported":2}"#
    );
    assert_eq!(ok(&store, &["get", "things", "a"]).trim(), r#"{"m":6,"n":5}"#);
}

#[test]
fn bad_input_is_refused_with_a_message_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "bad.db");
    ok(&store, &["put", "contacts", "c1", "name=Ada"]);
    assert!(fails(&store, &["put", "contacts", "c1", "name"]).contains("FIELD=VALUE"));
    assert!(fails(&store, &["put", "contacts", "c1", "_deleted=true"]).contains("reserves"));
    assert!(fails(&store, &["put", "contacts", "", "name=x"]).contains("empty"));
    assert!(fails(&store, &["get", "contacts", "nope"]).contains("does not exist"));
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\":\"c9\",\"fields\":{\"n\":1}}\n{\"id\": \"c10\", fields\n").unwrap();
    let msg = fails(&store, &["import", "contacts", bad.to_str().unwrap()]);
    assert!(msg.contains("line 2"), "{msg}");
    assert!(
        fails(&store, &["get", "contacts", "c9"]).contains("does not exist"),
        "the failed batch wrote nothing"
    );
    let status: Value = serde_json::from_str(&ok(&store, &["status"])).unwrap();
    assert_eq!(status["pending"], 1);
    assert!(fails(&store, &["list", "bad\u{1}name"]).contains("control character"));
    let msg = fails(&store, &["put", "contacts", "c1", "big=1e400"]);
    assert!(msg.contains("out of range") && msg.contains("quote it"), "{msg}");
    ok(&store, &["put", "contacts", "c1", "big=\"1e400\""]);
    let got: Value = serde_json::from_str(&ok(&store, &["get", "contacts", "c1"])).unwrap();
    assert_eq!(got["big"], "1e400");
}

#[test]
fn an_import_error_names_the_line_of_the_file_it_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "lines.db");
    let file = dir.path().join("in.jsonl");
    // Blank lines, a full first batch, then a refused field name on line 7.
    let input = "{\"id\":\"a1\",\"fields\":{\"n\":1}}\n{\"id\":\"a2\",\"fields\":{\"n\":2}}\n\n\n\
                 {\"id\":\"a3\",\"fields\":{\"n\":3}}\n{\"id\":\"a4\",\"fields\":{\"n\":4}}\n\
                 {\"id\":\"a5\",\"fields\":{\"_x\":5}}\n";
    std::fs::write(&file, input).unwrap();
    let msg = fails(&store, &["import", "contacts", file.to_str().unwrap(), "--batch", "3"]);
    assert!(msg.contains("line 7: field name \"_x\""), "{msg}");
    assert!(
        msg.contains("lines 6–7 were not imported (3 records before them were)"),
        "{msg}"
    );
    assert!(
        !msg.contains("edit "),
        "the batch position leaks into the message: {msg}"
    );
    let listed = ok(&store, &["list", "contacts"]);
    assert_eq!(listed.lines().count(), 3, "only the first batch was imported: {listed}");
    // The refused line alone in its batch.
    let msg = fails(&store, &["import", "contacts", file.to_str().unwrap(), "--batch", "1"]);
    assert!(msg.starts_with("error: line 7: field name \"_x\""), "{msg}");
    assert!(
        msg.contains("line 7 was not imported (4 records before it were)"),
        "{msg}"
    );

    // A line that is not list format: its own line and column, not serde's "line 1".
    std::fs::write(&file, "\n{\"id\":\"b1\",\"fields\":{},\"extra\":1}\n").unwrap();
    let msg = fails(&store, &["import", "contacts", file.to_str().unwrap()]);
    assert!(msg.contains("line 2, column"), "{msg}");
    assert!(msg.contains("unknown field `extra`"), "{msg}");
    assert!(!msg.contains("at line 1"), "{msg}");
}

#[test]
fn a_record_with_every_field_removed_is_still_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "empty.db");
    ok(&store, &["put", "contacts", "c1", "name=Ada"]);
    ok(&store, &["put", "contacts", "c1", "name=null"]);
    assert_eq!(ok(&store, &["get", "contacts", "c1"]).trim(), "{}");
    ok(&store, &["delete", "contacts", "c1"]);
    let msg = fails(&store, &["get", "contacts", "c1"]);
    assert!(
        msg.contains("record contacts/c1 is deleted: a put brings it back"),
        "{msg}"
    );
}

#[test]
fn conflicts_prints_nothing_on_a_store_without_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "c.db");
    ok(&store, &["put", "contacts", "c1", "name=Ada"]);
    assert_eq!(ok(&store, &["conflicts"]), "");
    assert_eq!(ok(&store, &["conflicts", "contacts", "c1"]), "");
}

#[test]
fn a_deleted_record_comes_back_with_a_put_and_the_store_file_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), "u.db");
    ok(&store, &["put", "contacts", "c1", "name=Ada", "age=36"]);
    ok(&store, &["delete", "contacts", "c1"]);
    assert!(fails(&store, &["get", "contacts", "c1"]).contains("is deleted"));
    // Deleting it again succeeds and changes nothing: nothing new to push.
    let pending = |store| -> u64 {
        let status: Value = serde_json::from_str(&ok(store, &["status"])).unwrap();
        status["pending"].as_u64().unwrap()
    };
    let before = pending(&store);
    ok(&store, &["delete", "contacts", "c1"]);
    assert_eq!(pending(&store), before);
    assert!(fails(&store, &["delete", "contacts", "never"]).contains("record contacts/never does not exist"));
    ok(&store, &["put", "contacts", "c1", "age=37"]);
    let got: Value = serde_json::from_str(&ok(&store, &["get", "contacts", "c1"])).unwrap();
    assert_eq!(
        got,
        json!({"name": "Ada", "age": 37}),
        "the undelete keeps the earlier fields"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the store will hold a token: owner only");
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("p.db");
    // More list output than a pipe and the output buffer hold together.
    let input = dir.path().join("many.jsonl");
    let lines: Vec<String> = (0..3000)
        .map(|i| format!(r#"{{"id":"c{i:05}","fields":{{"name":"Person number {i}"}}}}"#))
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    ok(&store, &["import", "contacts", input.to_str().unwrap()]);
    assert!(ok(&store, &["list", "contacts"]).len() > 150_000);
    for args in [&["get", "contacts", "c00001"][..], &["status"], &["list", "contacts"]] {
        let out = with_stdout_closed(
            Command::new(env!("CARGO_BIN_EXE_tidemark"))
                .arg("--store")
                .arg(&store)
                .args(args),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?} says nothing on a closed pipe: {stderr}");
    }
}
