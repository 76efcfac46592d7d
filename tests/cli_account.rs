//! The account rule, package refresh and `sync --watch`, through the real
//! binary against real server processes.

#![cfg(feature = "cli")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ADMIN: &str = "test-admin-token-0123456789";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    c.env("TIDEMARK_ADMIN_TOKEN", ADMIN)
        .env_remove("TIDEMARK_STORE")
        .stdin(Stdio::null());
    c
}

/// A `tidemark serve` child process, killed on drop.
struct Server {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Server {
    fn start(data: &Path, listen: &str) -> Server {
        let mut child = bin()
            .args(["serve", "--data"])
            .arg(data)
            .args(["--listen", listen])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("the server printed its address").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            data: data.to_path_buf(),
        }
    }

    fn port(&self) -> String {
        self.url.rsplit(':').next().unwrap().to_string()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.stop();
        let listen = format!("127.0.0.1:{}", self.port());
        let started = Instant::now();
        loop {
            let s = Server::start(&self.data, &listen);
            if s.url.ends_with(&self.port()) {
                *self = s;
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(10));
        }
    }

    fn admin(&self, args: &[&str]) -> String {
        let out = bin()
            .args(["admin", "--server", &self.url])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Creates a space with `package` and a member; returns the member's token.
    fn space_with_user(&self, space: &str, package: &str, user: &str, dir: &Path) -> String {
        let file = dir.join(format!("{space}-package.json"));
        std::fs::write(&file, package).unwrap();
        self.admin(&["create-space", space, "--package", file.to_str().unwrap()]);
        let token = self.admin(&["add-user", user]);
        self.admin(&["grant", user, space]);
        token
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(store: &Path, args: &[&str]) -> Output {
    bin().arg("--store").arg(store).args(args).output().unwrap()
}

fn ok(store: &Path, args: &[&str]) -> String {
    let out = run(store, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn status(store: &Path) -> Value {
    serde_json::from_str(&ok(store, &["status"])).unwrap()
}

fn login(store: &Path, server: &Server, user: &str, token: &str, space: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "login",
        "--server",
        &server.url,
        "--user",
        user,
        "--token",
        token,
        "--space",
        space,
    ];
    args.extend_from_slice(extra);
    run(store, &args)
}

const PACKAGE: &str =
    r#"{"version": 1, "collections": {"contacts": {"fields": {"name": "string", "nickname": "string"}}}}"#;

#[test]
fn login_to_another_account_refuses_names_the_unsynced_count_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("srv"), "127.0.0.1:0");
    let alice = server.space_with_user("crm", PACKAGE, "alice", dir.path());
    let bob = server.admin(&["add-user", "bob"]);
    server.admin(&["grant", "bob", "crm"]);
    let store = dir.path().join("a.db");
    assert!(login(&store, &server, "alice", &alice, "crm", &[]).status.success());
    ok(&store, &["put", "contacts", "c1", "name=Ada"]);
    ok(&store, &["put", "contacts", "c2", "name=Grace"]);
    let before = status(&store);
    let out = login(&store, &server, "bob", &bob, "crm", &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 unsynced change(s)"), "{stderr}");
    assert!(stderr.contains("--yes") && stderr.contains("--sync-first"), "{stderr}");
    assert_eq!(status(&store), before, "nothing was touched");
    assert!(ok(&store, &["get", "contacts", "c1"]).contains("Ada"));
}

#[test]
fn a_new_token_for_the_same_account_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("srv"), "127.0.0.1:0");
    let first = server.space_with_user("crm", PACKAGE, "alice", dir.path());
    let store = dir.path().join("a.db");
    assert!(login(&store, &server, "alice", &first, "crm", &[]).status.success());
    ok(&store, &["put", "contacts", "c1", "name=Ada"]);
    let actor = status(&store)["actor"].clone();
    let second = server.admin(&["new-token", "alice"]);
    assert_ne!(first, second);
    assert!(login(&store, &server, "alice", &second, "crm", &[]).status.success());
    let s = status(&store);
    assert_eq!(s["actor"], actor, "same replica");
    assert_eq!(s["pending"], 0, "the re-login synced the pending edit");
    assert!(ok(&store, &["get", "contacts", "c1"]).contains("Ada"));
}

#[test]
fn the_server_url_spelled_otherwise_is_the_same_account() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("srv"), "127.0.0.1:0");
    let token = server.space_with_user("crm", PACKAGE, "alice", dir.path());
    let store = dir.path().join("a.db");
    let plain = server.url.clone();
    server.url = format!("{plain}/");
    assert!(login(&store, &server, "alice", &token, "crm", &[]).status.success());
    assert_eq!(status(&store)["server"], plain.as_str(), "stored in one spelling");
    ok(&store, &["put", "contacts", "c1", "name=Ada"]);
    let actor = status(&store)["actor"].clone();
    server.url = plain.replacen("http://", "HTTP://", 1) + "//";
    let out = login(&store, &server, "alice", &token, "crm", &[]);
    assert!(
        out.status.success(),
        "no switch, no question: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = status(&store);
    assert_eq!(s["actor"], actor, "same replica");
    assert_eq!(s["server"], plain.as_str());
    assert!(ok(&store, &["get", "contacts", "c1"]).contains("Ada"));
}

#[test]
fn switching_user_with_yes_clears_every_byte_and_initializes_the_new_account() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("srv"), "127.0.0.1:0");
    let alice = server.space_with_user("alpha", PACKAGE, "alice", dir.path());
    let bob = server.space_with_user(
        "beta",
        r#"{"version": 7, "collections": {"notes": {"fields": {"title": "string"}}}}"#,
        "bob",
        dir.path(),
    );
    // Something for bob to download.
    let seed = dir.path().join("seed.db");
    assert!(login(&seed, &server, "bob", &bob, "beta", &[]).status.success());
    ok(&seed, &["put", "notes", "n1", "title=hello"]);
    ok(&seed, &["sync"]);

    let store = dir.path().join("a.db");
    assert!(login(&store, &server, "alice", &alice, "alpha", &[]).status.success());
    ok(&store, &["put", "contacts", "c1", "name=SECRET-ALICE-SYNCED"]);
    ok(&store, &["sync"]);
    ok(&store, &["put", "contacts", "c2", "name=SECRET-ALICE-PENDING"]);
    let old_actor = status(&store)["actor"].clone();

    let out = login(&store, &server, "bob", &bob, "beta", &["--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = status(&store);
    assert_eq!(s["user"], "bob");
    assert_eq!(s["space"], "beta");
    assert_eq!(s["pending"], 0);
    assert_eq!(s["rejected"], 0);
    assert_eq!(s["package_version"], 7, "the new package was downloaded");
    assert_ne!(s["actor"], old_actor, "a new actor id");
    assert!(!run(&store, &["get", "contacts", "c1"]).status.success());
    assert!(
        ok(&store, &["get", "notes", "n1"]).contains("hello"),
        "the initial sync ran"
    );
    let bytes = std::fs::read(&store).unwrap();
    for secret in ["SECRET-ALICE-SYNCED", "SECRET-ALICE-PENDING"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is still in the file"
        );
    }
    assert!(
        !std::fs::read_dir(dir.path())
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains("switching"))
    );
}

#[test]
fn switching_server_clears_and_initializes_from_the_new_server() {
    let dir = tempfile::tempdir().unwrap();
    let one = Server::start(&dir.path().join("one"), "127.0.0.1:0");
    let two = Server::start(&dir.path().join("two"), "127.0.0.1:0");
    let t1 = one.space_with_user("crm", PACKAGE, "alice", dir.path());
    let t2 = two.space_with_user("crm", PACKAGE, "alice", dir.path());
    let store = dir.path().join("a.db");
    assert!(login(&store, &one, "alice", &t1, "crm", &[]).status.success());
    ok(&store, &["put", "contacts", "c1", "name=on-server-one"]);
    let refused = login(&store, &two, "alice", &t2, "crm", &[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("1 unsynced change(s)"));
    assert!(login(&store, &two, "alice", &t2, "crm", &["--yes"]).status.success());
    assert_eq!(status(&store)["server"], two.url.as_str());
    assert!(ok(&store, &["list", "contacts"]).is_empty());
}

#[test]
fn sync_first_pushes_to_the_old_server_before_switching_and_refuses_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let mut one = Server::start(&dir.path().join("one"), "127.0.0.1:0");
    let two = Server::start(&dir.path().join("two"), "127.0.0.1:0");
    let t1 = one.space_with_user("crm", PACKAGE, "alice", dir.path());
    let t2 = two.space_with_user("crm", PACKAGE, "alice", dir.path());
    let store = dir.path().join("a.db");
    assert!(login(&store, &one, "alice", &t1, "crm", &[]).status.success());
    ok(&store, &["put", "contacts", "c1", "name=kept"]);
    let out = login(&store, &two, "alice", &t2, "crm", &["--sync-first", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The edit reached server one before the switch.
    let check = dir.path().join("check.db");
    assert!(login(&check, &one, "alice", &t1, "crm", &[]).status.success());
    assert!(ok(&check, &["get", "contacts", "c1"]).contains("kept"));

    // Back to server one with an edit, then server one goes away: no switch.
    assert!(login(&store, &one, "alice", &t1, "crm", &["--yes"]).status.success());
    ok(&store, &["put", "contacts", "c2", "name=not lost"]);
    one.stop();
    let out = login(&store, &two, "alice", &t2, "crm", &["--sync-first", "--yes"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not switching"));
    assert_eq!(status(&store)["server"], one.url.as_str());
    assert!(ok(&store, &["get", "contacts", "c2"]).contains("not lost"));
}

#[test]
fn export_unsynced_writes_the_changes_out_before_clearing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("srv"), "127.0.0.1:0");
    let alice = server.space_with_user("crm", PACKAGE, "alice", dir.path());
    let bob = server.space_with_user("other", PACKAGE, "bob", dir.path());
    let store = dir.path().join("a.db");
    assert!(login(&store, &server, "alice", &alice, "crm", &[]).status.success());
    ok(&store, &["put", "contacts", "c1", "name=Ada", "nickname=Countess"]);
    ok(&store, &["put", "contacts", "c1", "name=Ada Lovelace"]);
    let export = dir.path().join("unsynced.jsonl");
    let out = login(
        &store,
        &server,
        "bob",
        &bob,
        "other",
        &["--export-unsynced", export.to_str().unwrap(), "--yes"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["collection"], "contacts");
    assert_eq!(lines[0]["fields"]["name"], "Ada Lovelace");
    let ops = std::fs::read_to_string(format!("{}.ops", export.display())).unwrap();
    assert_eq!(ops.lines().count(), 2, "both raw ops");
    assert!(ops.contains("\"state\":\"pending\""));
}

#[test]
fn a_package_change_moves_ops_that_no_longer_validate_to_the_rejected_list() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("srv"), "127.0.0.1:0");
    let alice = server.space_with_user("crm", PACKAGE, "alice", dir.path());
    let store = dir.path().join("a.db");
    assert!(login(&store, &server, "alice", &alice, "crm", &[]).status.success());
    ok(&store, &["put", "contacts", "c1", "nickname=Countess"]);
    ok(&store, &["put", "contacts", "c2", "name=Grace"]);
    let v2 = dir.path().join("v2.json");
    std::fs::write(
        &v2,
        r#"{"version": 2, "collections": {"contacts": {"fields": {"name": "string"}}}}"#,
    )
    .unwrap();
    server.admin(&["set-package", "crm", v2.to_str().unwrap()]);
    let out = run(&store, &["sync"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nickname"));
    let s = status(&store);
    assert_eq!(
        (
            s["pending"].as_u64(),
            s["rejected"].as_u64(),
            s["package_version"].as_u64()
        ),
        (Some(0), Some(1), Some(2))
    );
    let rejected: Value = serde_json::from_str(ok(&store, &["rejected"]).lines().next().unwrap()).unwrap();
    assert_eq!(rejected["record"], "c1");
    assert_eq!(rejected["code"], "invalid_after_package_change");
    // The valid edit still reached the server.
    let check = dir.path().join("check.db");
    assert!(login(&check, &server, "alice", &alice, "crm", &[]).status.success());
    assert!(ok(&check, &["get", "contacts", "c2"]).contains("Grace"));
    // Discarding clears the list for good.
    ok(&store, &["rejected", "--discard"]);
    assert_eq!(status(&store)["rejected"], 0);
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `sync --watch` on `store`, every second, its stderr piped.
fn spawn_watch(store: &Path) -> std::process::Child {
    bin()
        .arg("--store")
        .arg(store)
        .args(["sync", "--watch", "--interval", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[cfg(unix)]
#[test]
fn sync_watch_picks_up_edits_and_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("srv"), "127.0.0.1:0");
    let alice = server.space_with_user("crm", PACKAGE, "alice", dir.path());
    let store = dir.path().join("a.db");
    let other = dir.path().join("b.db");
    assert!(login(&store, &server, "alice", &alice, "crm", &[]).status.success());
    assert!(login(&other, &server, "alice", &alice, "crm", &[]).status.success());
    let mut watch = spawn_watch(&store);
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    let stderr = watch.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    // An edit made through the CLI while the watcher runs on the same store.
    ok(&store, &["put", "contacts", "c1", "name=while watching"]);
    let seen = |id: &str| {
        run(&other, &["sync"]);
        run(&other, &["get", "contacts", id]).status.success()
    };
    wait_until("the first edit to reach the server", Duration::from_secs(30), || {
        seen("c1")
    });

    server.stop();
    ok(&store, &["put", "contacts", "c2", "name=while the server is down"]);
    wait_until("a failed round", Duration::from_secs(30), || {
        log.lock().unwrap().contains("sync failed")
    });
    server.restart();
    wait_until("the edit made during the outage", Duration::from_secs(60), || {
        seen("c2")
    });
    assert_eq!(status(&store)["pending"], 0);

    unsafe { libc::kill(watch.id() as i32, libc::SIGINT) };
    let code = watch.wait().unwrap();
    assert!(code.success(), "Ctrl-C stops cleanly: {}", log.lock().unwrap());
    assert!(log.lock().unwrap().contains("finishing the round in hand"));
}

#[cfg(unix)]
#[test]
fn sync_watch_stops_with_exit_1_when_its_token_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("srv"), "127.0.0.1:0");
    let alice = server.space_with_user("crm", PACKAGE, "alice", dir.path());
    let store = dir.path().join("a.db");
    assert!(login(&store, &server, "alice", &alice, "crm", &[]).status.success());
    let mut watch = spawn_watch(&store);
    let token_id = alice.split('.').nth(1).unwrap();
    server.admin(&["revoke-token", token_id]);
    ok(&store, &["put", "contacts", "c1", "name=after the revoke"]);
    let started = std::time::Instant::now();
    let code = loop {
        if let Some(code) = watch.try_wait().unwrap() {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the watcher stops by itself"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(code.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("log in again") && stderr.contains("kept in the store"),
        "{stderr}"
    );
    assert_eq!(status(&store)["pending"], 1, "the edit is kept");
}
