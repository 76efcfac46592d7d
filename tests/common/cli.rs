//! The real binary and a real server: a `tidemark serve` child process on a
//! loopback port, admin calls, and client commands on store files.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub const ADMIN_TOKEN: &str = "cli-sync-admin-token-0123456789";

pub const CRM_PACKAGE: &str = r#"{"version": 1, "collections": {
    "contacts": {"fields": {"name": "string", "email": "string", "age": "number", "vip": "bool",
                             "born": "datetime", "tags": "json", "note": "text", "visits": "counter"}},
    "accounts": {"fields": {"name": "string"}}
}}"#;

/// A `tidemark` command with a clean environment (no inherited store, token or log filter).
pub fn tidemark() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    for var in ["TIDEMARK_STORE", "TIDEMARK_TOKEN", "TIDEMARK_ADMIN_TOKEN", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A running `tidemark serve`; killed when dropped, whatever happens to the test.
pub struct ServerChild {
    pub child: Child,
    pub url: String,
    /// Everything the server wrote to stderr after its first line.
    pub stderr: Arc<Mutex<String>>,
}

impl ServerChild {
    pub fn start(data: &Path) -> ServerChild {
        Self::start_on(data, "127.0.0.1:0")
    }

    /// A server on `listen` (`127.0.0.1:PORT` to come back where a stopped one was).
    pub fn start_on(data: &Path, listen: &str) -> ServerChild {
        Self::spawn(&["--data", data.to_str().unwrap(), "--listen", listen])
    }

    /// A server process on the PostgreSQL database at `url`, listening on `listen`.
    pub fn start_postgres(url: &str, listen: &str) -> ServerChild {
        Self::spawn(&["--postgres", url, "--listen", listen])
    }

    /// `tidemark serve` with `args`.
    pub fn spawn(args: &[&str]) -> ServerChild {
        let mut child = tidemark()
            .arg("serve")
            .args(args)
            .env("TIDEMARK_ADMIN_TOKEN", ADMIN_TOKEN)
            // Everything the server logs is checked for secrets.
            .env("RUST_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let rest = Arc::new(Mutex::new(String::new()));
        let sink = rest.clone();
        std::thread::spawn(move || {
            // The address line, after whatever the store logged while opening.
            let mut first = String::new();
            while stderr.read_line(&mut first).unwrap_or(0) > 0 {
                if first.starts_with("tidemark server listening on ") {
                    break;
                }
                sink.lock().unwrap().push_str(&first);
                first.clear();
            }
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            let mut line = String::new();
            while stderr.read_line(&mut line).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut server = ServerChild {
            child,
            url: String::new(),
            stderr: rest,
        };
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server prints its address on stderr");
        let prefix = "tidemark server listening on ";
        assert!(first.starts_with(prefix), "unexpected first line: {first:?}");
        let url = first[prefix.len()..].split_whitespace().next().unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        server.url = url.to_string();
        server
    }

    /// `127.0.0.1:PORT` of this server.
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("server stderr:\n{}", self.stderr.lock().unwrap());
        }
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs and expects exit 0; returns stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?}): {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn admin(server: &ServerChild, args: &[&str]) -> String {
    ok(tidemark()
        .args(["admin", "--server", &server.url])
        .args(args)
        .env("TIDEMARK_ADMIN_TOKEN", ADMIN_TOKEN))
}

pub fn client(store: &Path, args: &[&str]) -> Command {
    let mut cmd = tidemark();
    cmd.arg("--store").arg(store).args(args);
    cmd
}

pub fn status(store: &Path) -> Value {
    serde_json::from_str(&ok(&mut client(store, &["status"]))).unwrap()
}

pub fn login(store: &Path, url: &str, user: &str, token: &str) -> Output {
    run(&mut client(
        store,
        &[
            "login", "--server", url, "--user", user, "--token", token, "--space", "crm",
        ],
    ))
}

/// A new local store (no server) at `path`, made the way a person makes one:
/// an import, of nothing here. Other commands refuse a missing store.
pub fn new_local_store(path: &Path) {
    let out = run(&mut client(path, &["import", "contacts"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub server: ServerChild,
    pub alice: String,
    pub bob: String,
}

impl Setup {
    pub fn store(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A server with space `crm` (the CRM package), alice (read-write) and bob (read-only).
pub fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerChild::start(&dir.path().join("server-data"));
    let package = dir.path().join("crm.json");
    std::fs::write(&package, CRM_PACKAGE).unwrap();
    admin(
        &server,
        &["create-space", "crm", "--package", package.to_str().unwrap()],
    );
    let token_of = |user: &str| {
        let out = admin(&server, &["add-user", user]);
        assert_eq!(out.lines().count(), 1, "add-user prints the token on one line: {out:?}");
        let token = out.trim().to_string();
        assert!(!token.is_empty() && !token.contains(char::is_whitespace), "{out:?}");
        token
    };
    let alice = token_of("alice");
    let bob = token_of("bob");
    assert_ne!(alice, bob);
    admin(&server, &["grant", "alice", "crm"]);
    admin(&server, &["grant", "bob", "crm", "--read-only"]);
    Setup {
        dir,
        server,
        alice,
        bob,
    }
}
