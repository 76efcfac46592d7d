//! A full disk under a running `tidemark serve`: pushes answer 503
//! `store_unavailable` naming the cause, readiness says not ready, liveness
//! still answers; once space is freed the same process takes pushes again,
//! with everything committed before still there.
//!
//! The data directory is a small tmpfs, which takes root to mount: without root
//! the test says so and does nothing.

#![cfg(all(feature = "cli", target_os = "linux"))]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

#[path = "common/cli.rs"]
mod cli;
use cli::*;
#[path = "common/tmpfs.rs"]
mod tmpfs;
use tmpfs::{Tmpfs, fill, is_root, noise};

/// `GET path` over plain HTTP/1.1; returns (status, body).
fn get(url: &str, path: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_full_disk_answers_503_and_the_server_recovers_without_a_restart() {
    if !is_root() {
        eprintln!("SKIPPED: mounting the small tmpfs this test fills takes root; run the suite as root (CI does)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server-data");
    let _tmpfs = Tmpfs::mount(&data, "12m");
    let server = ServerChild::start(&data);
    let package = dir.path().join("crm.json");
    std::fs::write(&package, CRM_PACKAGE).unwrap();
    admin(
        &server,
        &["create-space", "crm", "--package", package.to_str().unwrap()],
    );
    let alice = admin(&server, &["add-user", "alice"]).trim().to_string();
    admin(&server, &["grant", "alice", "crm"]);

    // Committed before the disk fills: must survive.
    let store = dir.path().join("alice.db");
    let out = login(&store, &server.url, "alice", &alice);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for i in 0..5 {
        ok(&mut client(
            &store,
            &["put", "contacts", &format!("before{i}"), &format!("name=b{i}")],
        ));
    }
    ok(&mut client(&store, &["sync"]));
    assert_eq!(get(&server.url, "/v1/ready").0, 200);

    fill(&data.join("filler"));
    // Edits large enough that the store file must grow; the first push that
    // cannot fails.
    let mut refused = None;
    for i in 0..40 {
        let value = format!("name={}", noise(100 << 10, i));
        ok(&mut client(&store, &["put", "contacts", &format!("big{i}"), &value]));
        let out = run(&mut client(&store, &["sync"]));
        if !out.status.success() {
            refused = Some(text(&out.stderr));
            break;
        }
    }
    let refused = refused.expect("a push onto a full disk fails");
    assert!(
        refused.contains("storage is failing") && refused.contains("No space left on device"),
        "the client names the cause: {refused}"
    );
    let (status, body) = get(&server.url, "/v1/ready");
    assert_eq!(status, 503, "not ready while the disk is full: {body}");
    assert!(
        body.contains("store_unavailable") && body.contains("No space left"),
        "{body}"
    );
    assert_eq!(get(&server.url, "/v1/health").0, 200, "liveness still answers");
    let (status, metrics) = get(&server.url, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("tidemark_store_up 0"), "{metrics}");
    assert!(
        metrics.contains(r#"tidemark_http_errors_total{code="store_unavailable"}"#),
        "{metrics}"
    );
    let pending = status_of(&store)["pending"].as_u64().unwrap();
    assert!(pending >= 1, "the refused edit waits on the client");

    // Space freed: the same process takes the pushes again.
    std::fs::remove_file(data.join("filler")).unwrap();
    let started = Instant::now();
    loop {
        let out = run(&mut client(&store, &["sync"]));
        if out.status.success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server recovers once space is freed: {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(status_of(&store)["pending"], 0);
    assert_eq!(get(&server.url, "/v1/ready").0, 200, "ready again");

    // A fresh replica gets every record: the ones from before, and the big ones.
    let reader = dir.path().join("reader.db");
    let out = login(&reader, &server.url, "alice", &alice);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = ok(&mut client(&reader, &["list", "contacts"]));
    let mine = ok(&mut client(&store, &["list", "contacts"]));
    assert!(listed.lines().count() >= 6, "{listed}");
    assert_eq!(listed, mine, "the server holds what the client holds");
    for i in 0..5 {
        assert!(listed.contains(&format!("before{i}")), "{listed}");
    }
}

fn status_of(store: &Path) -> serde_json::Value {
    status(store)
}
