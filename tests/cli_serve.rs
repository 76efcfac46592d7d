//! `tidemark serve` as an operator runs it: SIGTERM (what systemd, Docker and
//! Kubernetes send) drains the request in flight, loses nothing and exits 0.

#![cfg(all(feature = "cli", unix))]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidemark::Replica;
use tidemark::protocol::message::WireOp;

#[path = "common/cli.rs"]
mod cli;
use cli::*;

/// A push body of `n` real ops, as bytes.
fn push_body(n: usize) -> Vec<u8> {
    let replica = Replica::in_memory().unwrap();
    for i in 0..n {
        replica
            .put("contacts", &format!("c{i}"), json!({"name": format!("n{i}")}))
            .unwrap();
    }
    let ops: Vec<WireOp> = replica
        .pending_ops(usize::MAX)
        .unwrap()
        .iter()
        .map(|p| WireOp::from_op(&p.op))
        .collect();
    serde_json::to_vec(&json!({ "ops": ops })).unwrap()
}

/// A connection to the server at `addr` that has sent the headers of a push
/// of `len` bytes by `token`, and none of its body.
fn push_headers(addr: &str, token: &str, len: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /v1/spaces/crm/push HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    stream
}

fn signal(server: &ServerChild, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the server process to exit; returns its exit code.
fn exit_code(server: &mut ServerChild, within: Duration) -> Option<i32> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the server did not exit within {within:?}");
}

#[test]
fn sigterm_mid_push_finishes_the_push_loses_nothing_and_exits_0() {
    let s = setup();
    let mut server = s.server;
    let body = push_body(50);
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut stream = push_headers(&addr, &s.alice, body.len());
    let half = body.len() / 2;
    stream.write_all(&body[..half]).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    signal(&server, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server waits for the push in flight"
    );
    stream.write_all(&body[half..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["seqs"].as_array().unwrap().len(), 50, "{json}");
    assert!(json["refused"].as_array().is_none_or(Vec::is_empty), "{json}");

    assert_eq!(exit_code(&mut server, Duration::from_secs(10)), Some(0));
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("TRACE"), "the server logs at RUST_LOG=trace: {log}");
    assert!(
        !log.contains('\x1b'),
        "no colour codes in logs that go to a pipe: {log:?}"
    );

    // Started again on the same data, the server holds all 50.
    let again = ServerChild::start(&s.dir.path().join("server-data"));
    let store = s.dir.path().join("reader.db");
    let out = login(&store, &again.url, "alice", &s.alice);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = ok(&mut client(&store, &["list", "contacts"]));
    assert_eq!(listed.lines().count(), 50, "{listed}");
}

#[test]
fn sigint_stops_an_idle_server_at_once_with_exit_0() {
    let s = setup();
    let mut server = s.server;
    let started = Instant::now();
    signal(&server, "INT");
    assert_eq!(exit_code(&mut server, Duration::from_secs(5)), Some(0));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

/// A change whose operation names a predecessor by actor index 7 of a table
/// that holds one actor: it passes the chunk checks, then automerge 0.12
/// panics expanding it (an `unwrap` on the missing actor).
const PANICKING_EXPANSION_HEX: &str = "856f4a838b8ab5f0013e001009090909090909090909090909090909010101000008150634014202560257057002710273027f046e616d65017f017f5650574e45447f017f077f01";

/// Bytes that make automerge panic are refused as an invalid op; the
/// operator's log has one warning for them, not a panic and a backtrace.
#[test]
fn a_change_that_makes_automerge_panic_is_one_warning_in_the_log() {
    let s = setup();
    let mut body: Value = serde_json::from_slice(&push_body(1)).unwrap();
    let bad = hex::decode(PANICKING_EXPANSION_HEX).unwrap();
    use base64::Engine as _;
    body["ops"][0]["change"] = json!(base64::engine::general_purpose::STANDARD.encode(bad));
    body["ops"][0]["actor"] = json!("09".repeat(16));
    let body = serde_json::to_vec(&body).unwrap();
    let addr = s.server.addr();
    let mut stream = push_headers(&addr, &s.alice, body.len());
    stream.write_all(&body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["refused"][0]["code"], "invalid_op", "{json}");
    let reason = json["refused"][0]["message"].as_str().unwrap();
    assert!(
        reason.contains("rejected malformed bytes"),
        "automerge panicked and was caught: {reason}"
    );
    // The log reaches us through a pipe and a reader thread.
    let started = Instant::now();
    let log = loop {
        let log = s.server.stderr.lock().unwrap().clone();
        if log.contains("automerge failed on bytes it could not decode") || started.elapsed() > Duration::from_secs(10)
        {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(log.contains("automerge failed on bytes it could not decode"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("stack backtrace"), "{log}");
}
