//! The `wire_server` target: requests from outside through the real axum
//! router, in process, against a server in memory whose space holds a few ops.
//!
//! The input is up to MAX_REQUESTS requests joined by SEPARATOR. A request is a
//! route byte, a byte choosing the token and the revision header, and its
//! payload: a push body, a pull or snapshot query string, a record path, a
//! package body, or a raw `METHOD /path?query` line followed by a body.
//!
//! Checked for every answer: never a panic, never a 5xx; every answer names
//! the protocol revision; an error answer is a JSON error body and changes no
//! space's head or ops, nor the users and spaces; a read changes nothing; an
//! accepted push only appends, and its answer's head and seqs match the store.
#![allow(dead_code)]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use tidemark::Op;
use tidemark::protocol::message::{
    ErrorBody, PROTOCOL_REVISION, PushRequest, PushResponse, REVISION_HEADER, WireOp, parse_revision,
};
use tidemark::server::Limits;
use tidemark::server::store::ServerStore;
use tower::ServiceExt;

use crate::common::{SEPARATOR, base_op, chunks};
use crate::server_fixture::{ADMIN_TOKEN, Fixture, OTHER_SPACE, SPACE, SpaceState, WRITER, space_state, v4_id};

pub const MAX_REQUESTS: usize = 8;

/// Limits small enough that a fuzzed body reaches each of them.
pub fn limits() -> Limits {
    Limits {
        max_ops_per_push: 8,
        max_op_bytes: 2048,
        max_body_bytes: 16 * 1024,
        max_pull_page: 4,
        max_snapshot_page: 2,
        max_page_bytes: 4096,
        // A held pull would only sleep: the wait path is tested in tests/live_pull.rs.
        max_pull_wait_secs: 0,
    }
}

/// The route of a request, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Push,
    Pull,
    Snapshot,
    Record,
    Package,
    SetPackage,
    Raw,
}

pub const ROUTES: [Route; 7] = [
    Route::Push,
    Route::Pull,
    Route::Snapshot,
    Route::Record,
    Route::Package,
    Route::SetPackage,
    Route::Raw,
];

/// Who sends a request, from the low bits of its second byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Writer,
    Reader,
    Stranger,
    Admin,
    NoToken,
    BadToken,
}

pub const SENDERS: [Sender; 6] = [
    Sender::Writer,
    Sender::Reader,
    Sender::Stranger,
    Sender::Admin,
    Sender::NoToken,
    Sender::BadToken,
];

/// The revision header a request names, from the high bits of its second byte.
pub const REVISIONS: [Option<&str>; 4] = [None, Some("3"), Some("2"), Some("three")];

/// Encodes one request of the input (the seed writer's half of `parse`).
pub fn request_bytes(route: Route, sender: Sender, revision: usize, payload: &[u8]) -> Vec<u8> {
    let route = ROUTES.iter().position(|r| *r == route).expect("a known route");
    let sender = SENDERS.iter().position(|s| *s == sender).expect("a known sender");
    let mut out = vec![route as u8, (revision * 8 + sender) as u8];
    out.extend_from_slice(payload);
    out
}

/// Requests joined as one input.
pub fn input(requests: &[Vec<u8>]) -> Vec<u8> {
    requests.join(SEPARATOR)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// The ops every fuzzed server starts with: the base record, pushed by the writer.
fn seed_server(fixture: &Fixture) {
    let mut op: Op = base_op();
    op.id = v4_id(1);
    let answer = fixture
        .service
        .push(
            WRITER,
            SPACE,
            PushRequest {
                ops: vec![WireOp::from_op(&op)],
            },
        )
        .expect("the base op is pushed");
    assert_eq!(answer.seqs, vec![Some(tidemark::Seq(1))], "the base op is accepted");
}

/// Everything a refused request must leave alone.
#[derive(Debug, PartialEq)]
struct ServerState {
    spaces: Vec<(String, SpaceState)>,
    users: Vec<(String, Vec<String>)>,
}

fn observe(fixture: &Fixture) -> ServerState {
    let store = fixture.store();
    ServerState {
        spaces: store
            .spaces()
            .expect("spaces")
            .into_iter()
            .map(|s| {
                let state = space_state(store, &s);
                (s, state)
            })
            .collect(),
        users: store.users().expect("users"),
    }
}

/// The HTTP request one input chunk describes, or None when it is not a valid
/// HTTP request at all (no client could send it).
fn build(fixture: &Fixture, chunk: &[u8]) -> Option<Request<Body>> {
    let route = ROUTES[usize::from(chunk.first().copied().unwrap_or(0)) % ROUTES.len()];
    let flags = usize::from(chunk.get(1).copied().unwrap_or(0));
    let sender = SENDERS[flags % 8 % SENDERS.len()];
    let revision = REVISIONS[(flags / 8) % REVISIONS.len()];
    let payload = chunk.get(2..).unwrap_or_default();
    let text = String::from_utf8_lossy(payload);
    let (method, uri, body) = match route {
        Route::Push => (Method::POST, format!("/v1/spaces/{SPACE}/push"), payload.to_vec()),
        Route::Pull => (Method::GET, format!("/v1/spaces/{SPACE}/pull?{text}"), Vec::new()),
        Route::Snapshot => (Method::GET, format!("/v1/spaces/{SPACE}/snapshot?{text}"), Vec::new()),
        Route::Record => (Method::GET, format!("/v1/spaces/{SPACE}/records/{text}"), Vec::new()),
        Route::Package => (Method::GET, format!("/v1/spaces/{SPACE}/package"), Vec::new()),
        Route::SetPackage => (
            Method::PUT,
            format!("/v1/admin/spaces/{SPACE}/package"),
            payload.to_vec(),
        ),
        Route::Raw => {
            let (line, body) = match payload.iter().position(|&b| b == b'\n') {
                Some(at) => (&payload[..at], payload[at + 1..].to_vec()),
                None => (payload, Vec::new()),
            };
            let line = std::str::from_utf8(line).ok()?;
            let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
            let method = Method::from_bytes(method.as_bytes()).ok()?;
            let target = if target.starts_with('/') {
                target.to_string()
            } else {
                format!("/{target}")
            };
            (method, target, body)
        }
    };
    let mut request = Request::builder().method(method).uri(uri);
    let token = match sender {
        Sender::Writer => Some(fixture.writer_token.clone()),
        Sender::Reader => Some(fixture.reader_token.clone()),
        Sender::Stranger => Some(fixture.stranger_token.clone()),
        Sender::Admin => Some(ADMIN_TOKEN.to_string()),
        Sender::NoToken => None,
        Sender::BadToken => Some("tm1.0123456789abcdef.not-the-secret".to_string()),
    };
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(revision) = revision {
        request = request.header(REVISION_HEADER, revision);
    }
    request
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .ok()
}

pub fn check_wire_server(data: &[u8]) {
    let fixture = Fixture::new(data.first().is_some_and(|b| b & 0x80 != 0), limits());
    seed_server(&fixture);
    let router = tidemark::server::http::router(fixture.service.clone());
    for chunk in chunks(data).into_iter().take(MAX_REQUESTS) {
        let Some(request) = build(&fixture, chunk) else {
            continue;
        };
        let what = format!("{} {}", request.method(), request.uri());
        let is_read = request.method() == Method::GET || request.method() == Method::HEAD;
        // An answer to HEAD has no body (HTTP), whatever its status.
        let is_head = request.method() == Method::HEAD;
        let is_push = request.method() == Method::POST && request.uri().path() == format!("/v1/spaces/{SPACE}/push");
        let before = observe(&fixture);
        let (status, revision, body) = runtime().block_on(async {
            let response = router.clone().oneshot(request).await.expect("the router answers");
            let status = response.status();
            let revision = response.headers().get(REVISION_HEADER).cloned();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("the answer's body reads");
            (status, revision, body)
        });
        let text = String::from_utf8_lossy(&body);
        assert!(!status.is_server_error(), "{what} is answered {status}: {text}");
        assert_eq!(
            revision.as_ref().and_then(|v| parse_revision(v.as_bytes())),
            Some(PROTOCOL_REVISION),
            "{what} ({status}) does not name the protocol revision"
        );
        let after = observe(&fixture);
        if is_head {
            assert!(body.is_empty(), "the {status} answer to {what} has a body");
        }
        if status != StatusCode::OK {
            if let (false, Err(e)) = (is_head, serde_json::from_slice::<ErrorBody>(&body)) {
                panic!("the {status} answer to {what} is not a JSON error body ({e}): {text}");
            }
            assert!(
                before == after,
                "the {status} answer to {what} changed the store:\n{before:?}\n{after:?}"
            );
        } else if is_read {
            assert!(
                before == after,
                "the read {what} changed the store:\n{before:?}\n{after:?}"
            );
        } else if is_push {
            check_push_answer(&what, &body, &before, &after);
        }
    }
    // A push nudges the materializer's thread: finish its work inside the check.
    for space in [SPACE, OTHER_SPACE] {
        fixture
            .service
            .materialize(space)
            .unwrap_or_else(|e| panic!("materializing {space} fails: {e}"));
    }
}

/// An accepted push only appends to its space, and its answer says what the store holds.
fn check_push_answer(what: &str, body: &[u8], before: &ServerState, after: &ServerState) {
    let answer: PushResponse =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("the 200 answer to {what} is not a push answer ({e})"));
    let space = |state: &ServerState| -> SpaceState {
        let (_, s) = state.spaces.iter().find(|(name, _)| name == SPACE).expect("the space");
        s.clone()
    };
    let (old, new) = (space(before), space(after));
    assert!(new.ops.starts_with(&old.ops), "{what} changed ops stored before it");
    assert_eq!(answer.head, new.head, "{what} answers a head the store does not have");
    let mut fresh: Vec<tidemark::Seq> = answer
        .seqs
        .iter()
        .flatten()
        .copied()
        .filter(|&s| s > old.head)
        .collect();
    fresh.sort_unstable();
    fresh.dedup();
    assert_eq!(
        fresh.len() as u64,
        new.head.since(old.head),
        "{what} stored other ops than the ones it answered"
    );
    assert!(
        answer.seqs.iter().flatten().all(|&s| s >= 1 && s <= new.head),
        "{what} answers a seq outside the log"
    );
    let others = |state: &ServerState| -> Vec<String> {
        state
            .spaces
            .iter()
            .filter(|(name, _)| name != SPACE)
            .map(|(name, s)| format!("{name}:{}:{}", s.head, s.ops.len()))
            .collect()
    };
    assert_eq!(others(before), others(after), "{what} changed another space");
}
