//! The `wire_client` target: a client reading a server's answers.
//!
//! The input is a byte choosing the replica a session starts from, then up to
//! MAX_ANSWERS answers joined by SEPARATOR, each a status byte and a body.
//! Every body is first decoded as each answer type (push, pull, snapshot,
//! package, error body): one that decodes must encode and decode back to
//! itself. Then the answers go, in order, to sync sessions on the replica: each
//! answers the request the session makes, decoded as the HTTP remote decodes
//! it (a 200 that does not decode is a `bad_answer` error, an error body that
//! does not decode an `http` one). A round that fails is followed by a new one.
//!
//! Checked: never a panic and never an internal error; an answer the session
//! refuses changes nothing in the replica; after an answer it takes, the view
//! and the conflicts are what a rebuild from the log gives; at the end every
//! record still takes a local edit.
#![allow(dead_code)]

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tidemark::ActorId;
use tidemark::Replica;
use tidemark::protocol::message::{ErrorBody, PackageResponse, PullResponse, PushResponse, SnapshotResponse};
use tidemark::protocol::session::RemoteError;
use tidemark::protocol::{ErrorCode, Request, Response, Session, SessionConfig};
use tidemark::record::RecordDoc;
use tidemark::replica::{Edit, LogEntry};

use crate::common::{COLLECTION, RECORDS, SEPARATOR, assert_not_internal, chunks, fuzz_replica};

pub const MAX_ANSWERS: usize = 10;

/// The status of an answer, from its first byte: mostly 200, else what the session branches on.
pub const STATUSES: [u16; 8] = [200, 200, 200, 400, 403, 409, 413, 500];

/// The replicas a session can start from, from the input's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Three local edits, never pulled: a round pushes, then bootstraps from a snapshot.
    LocalOnly,
    /// The same edits and one pulled op (`common::fuzz_replica`), schemaless.
    Pulled,
    /// As `Pulled`, with the fuzz package installed.
    PulledWithPackage,
}

pub const STARTS: [Start; 3] = [Start::LocalOnly, Start::Pulled, Start::PulledWithPackage];

/// Small batches and pages, so a few answers take a round through every phase.
pub fn session_config() -> SessionConfig {
    SessionConfig {
        push_batch: 2,
        max_push_bytes: 1 << 20,
        pull_page: 4,
        snapshot_page: 2,
        max_passes: 2,
    }
}

/// One answer of the input (the seed writer's half of `decode_answer`).
pub fn answer_bytes(status: u16, body: &impl Serialize) -> Vec<u8> {
    let selector = STATUSES.iter().position(|s| *s == status).expect("a listed status");
    let mut out = vec![selector as u8];
    out.extend_from_slice(&serde_json::to_vec(body).expect("serializes"));
    out
}

/// A whole input: the start, then the answers.
pub fn input(start: Start, answers: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![STARTS.iter().position(|s| *s == start).expect("a listed start") as u8];
    out.extend_from_slice(&answers.join(SEPARATOR));
    out
}

fn start_replica(start: Start) -> Replica {
    match start {
        Start::LocalOnly => {
            let r = Replica::in_memory().expect("in-memory replica");
            r.apply_edits(vec![
                Edit::put(COLLECTION, "c1", json!({"name": "Ada", "age": 36})).expect("an object"),
                Edit::put(COLLECTION, "c2", json!({"name": "Alan", "vip": true})).expect("an object"),
                Edit::Delete {
                    collection: COLLECTION.into(),
                    id: "c2".into(),
                },
            ])
            .expect("local edits apply");
            r
        }
        Start::Pulled => fuzz_replica(false),
        Start::PulledWithPackage => fuzz_replica(true),
    }
}

/// A decoded answer must encode to JSON that decodes back to it.
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(json: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(json) else {
        return;
    };
    let text = serde_json::to_vec(&value).expect("a decoded answer encodes");
    let again: T = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("a decoded answer does not decode again ({e}): {value:?}"));
    assert_eq!(again, value, "a decoded answer changes through encoding");
}

/// What the HTTP remote makes of an answer to `request`.
fn decode_answer(request: &Request, answer: &[u8]) -> Result<Response, RemoteError> {
    let status = STATUSES[usize::from(answer.first().copied().unwrap_or(0)) % STATUSES.len()];
    let body = answer.get(1..).unwrap_or_default();
    if status != 200 {
        let body = serde_json::from_slice(body).unwrap_or_else(|_| ErrorBody {
            code: ErrorCode::Http,
            message: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            op_index: None,
        });
        return Err(RemoteError {
            status: Some(status),
            body,
        });
    }
    let decoded = match request {
        Request::Package => serde_json::from_slice(body).map(Response::Package),
        Request::Push(_) => serde_json::from_slice(body).map(Response::Push),
        Request::Pull { .. } | Request::Watch { .. } => serde_json::from_slice(body).map(Response::Pull),
        Request::Snapshot { .. } => serde_json::from_slice(body).map(Response::Snapshot),
    };
    decoded.map_err(|e| RemoteError {
        status: Some(200),
        body: ErrorBody {
            code: ErrorCode::BadAnswer,
            message: format!("the server's answer is not what tidemark expects: {e}"),
            op_index: None,
        },
    })
}

/// Everything an answer the session refuses must leave alone.
#[derive(Debug, PartialEq)]
struct ClientState {
    log: Vec<(tidemark::LogPos, Vec<u8>)>,
    view: Vec<(String, String, Vec<u8>)>,
    status: tidemark::Status,
    rejected: Vec<tidemark::replica::Rejection>,
    watermarks: tidemark::protocol::Watermarks,
    package: Option<tidemark::Package>,
    repush_from: Option<tidemark::LogPos>,
    snapshot_checkpoint: Option<(tidemark::Seq, Option<String>)>,
}

fn observe(r: &Replica) -> ClientState {
    ClientState {
        log: r
            .log_entries(tidemark::LogPos(0), usize::MAX)
            .expect("log_entries")
            .into_iter()
            .map(|(pos, entry)| (pos, entry.encode()))
            .collect(),
        view: r.view_rows().expect("view_rows"),
        status: r.status().expect("status"),
        rejected: r.rejected().expect("rejected"),
        watermarks: r.watermarks().expect("watermarks"),
        package: r.package().expect("package"),
        repush_from: r.repush_from().expect("repush_from"),
        snapshot_checkpoint: r.snapshot_checkpoint().expect("snapshot_checkpoint"),
    }
}

/// The view and the conflicts are what a rebuild from the log gives, except
/// for records known only from a snapshot page: their row came from the
/// server with the document and is taken as it is (a lying server's row
/// stands until the record is next edited or merged). A snapshot document is
/// stored unloaded, so one that does not load fails the rebuild, naming its
/// record, and nothing else may.
fn assert_rebuilds(r: &Replica, after: &str) {
    let rows = r.view_rows().expect("view_rows");
    let unloadable = unloadable_snapshot_records(r);
    let named = |c: &tidemark::error::CorruptData| {
        unloadable
            .iter()
            .any(|(col, id)| c.context.starts_with(&format!("record {col}/{id}:")))
    };
    // Listing conflicts loads the documents of the records marked conflicted
    // (the server's row may mark one): only such a document may fail it.
    let conflicts = match r.conflicts(None, None) {
        Ok(conflicts) => conflicts,
        Err(tidemark::Error::Corrupt(c)) if named(&c) => Vec::new(),
        Err(e) => panic!("conflicts fails after {after}: {e} (snapshot documents that do not load: {unloadable:?})"),
    };
    if let Err(e) = r.rebuild_view() {
        match &e {
            tidemark::Error::Corrupt(c) if named(c) => {}
            _ => panic!("rebuild_view fails after {after}: {e} (snapshot documents that do not load: {unloadable:?})"),
        }
        assert_eq!(
            r.view_rows().expect("view_rows"),
            rows,
            "a failed rebuild changed the view after {after}"
        );
        return;
    }
    let taken = snapshot_only_records(r);
    let derived = |rows: Vec<(String, String, Vec<u8>)>| -> Vec<_> {
        rows.into_iter()
            .filter(|(c, id, _)| !taken.contains(&(c.clone(), id.clone())))
            .collect()
    };
    let derived_conflicts = |all: Vec<tidemark::replica::RecordConflicts>| -> Vec<_> {
        all.into_iter()
            .filter(|rc| !taken.contains(&(rc.collection.clone(), rc.id.clone())))
            .collect()
    };
    assert_eq!(
        derived(r.view_rows().expect("view_rows")),
        derived(rows),
        "the rebuilt view differs after {after}"
    );
    assert_eq!(
        derived_conflicts(r.conflicts(None, None).expect("conflicts")),
        derived_conflicts(conflicts),
        "the rebuilt conflicts differ after {after}"
    );
}

/// The records whose log entries are snapshot documents only: their rows are the server's.
fn snapshot_only_records(r: &Replica) -> std::collections::BTreeSet<(String, String)> {
    let mut snapshot = std::collections::BTreeSet::new();
    let mut merged = std::collections::BTreeSet::new();
    for (_, entry) in r.log_entries(tidemark::LogPos::ZERO, usize::MAX).expect("log_entries") {
        let (c, id) = entry.target();
        let key = (c.to_string(), id.to_string());
        match entry {
            LogEntry::Snapshot { .. } => snapshot.insert(key),
            LogEntry::Local(_) | LogEntry::Pulled(..) => merged.insert(key),
        };
    }
    snapshot.difference(&merged).cloned().collect()
}

/// The records whose snapshot document in the log does not load.
fn unloadable_snapshot_records(r: &Replica) -> Vec<(String, String)> {
    r.log_entries(tidemark::LogPos::ZERO, usize::MAX)
        .expect("log_entries")
        .into_iter()
        .filter_map(|(_, entry)| match entry {
            LogEntry::Snapshot {
                collection,
                record,
                doc,
                ..
            } if RecordDoc::load(&doc, ActorId([0; 16])).is_err() => Some((collection.to_string(), record.to_string())),
            _ => None,
        })
        .collect()
}

fn put_after(collection: &str, id: &str) -> Edit {
    Edit::put(collection, id, json!({"name": "edited after the answers"})).expect("an object")
}

pub fn check_wire_client(data: &[u8]) {
    let (start, rest) = data.split_first().unwrap_or((&0, &[]));
    let answers: Vec<&[u8]> = chunks(rest).into_iter().take(MAX_ANSWERS).collect();
    for answer in &answers {
        let body = answer.get(1..).unwrap_or_default();
        round_trips::<PushResponse>(body);
        round_trips::<PullResponse>(body);
        round_trips::<SnapshotResponse>(body);
        round_trips::<PackageResponse>(body);
        round_trips::<ErrorBody>(body);
    }
    let start = STARTS[usize::from(*start) % STARTS.len()];
    let r = start_replica(start);
    let mut session = Session::new(session_config());
    for (n, answer) in answers.iter().enumerate() {
        let request = match session.next_request(&r) {
            Ok(Some(request)) => request,
            Ok(None) => {
                // The round is complete: the next answers go to a new one.
                session = Session::new(session_config());
                match session.next_request(&r) {
                    Ok(Some(request)) => request,
                    Ok(None) => break,
                    Err(e) => {
                        assert_not_internal("a new round's first request", &e);
                        break;
                    }
                }
            }
            Err(e) => {
                assert_not_internal("the next request", &e);
                break;
            }
        };
        let kind = match &request {
            Request::Package => "package",
            Request::Push(_) => "push",
            Request::Pull { .. } | Request::Watch { .. } => "pull",
            Request::Snapshot { .. } => "snapshot",
        };
        let before = observe(&r);
        let outcome = match decode_answer(&request, answer) {
            Ok(response) => session.handle_response(&r, response),
            Err(error) => session.handle_error(&r, error),
        };
        match outcome {
            Ok(()) => assert_rebuilds(&r, &format!("answer {n} (to a {kind} request)")),
            Err(e) => {
                assert_not_internal(&format!("answer {n} (to a {kind} request)"), &e);
                let after = observe(&r);
                assert!(
                    before == after,
                    "answer {n} (to a {kind} request) is refused ({e}) but changed the replica:\nbefore {before:?}\nafter {after:?}"
                );
                // The round ends on an error; the next answers go to a new one.
                session = Session::new(session_config());
            }
        }
    }
    let mut keys: Vec<(String, String)> = r
        .view_rows()
        .expect("view_rows")
        .into_iter()
        .map(|(c, id, _)| (c, id))
        .chain(RECORDS.iter().map(|id| (COLLECTION.to_string(), id.to_string())))
        .collect();
    keys.dedup();
    // A snapshot document is stored unloaded: one that does not load refuses
    // edits of its own record, with an error naming it, and of no other.
    let unloadable = unloadable_snapshot_records(&r);
    let (poisoned, edits): (Vec<_>, Vec<_>) = keys.into_iter().partition(|key| unloadable.contains(key));
    let edits: Vec<Edit> = edits.iter().map(|(c, id)| put_after(c, id)).collect();
    if let Err(e @ (tidemark::Error::Corrupt(_) | tidemark::Error::Internal(_))) = r.apply_edits(edits) {
        panic!("a record no longer takes a local edit: {e}");
    }
    for (c, id) in poisoned {
        let named = format!("record {c}/{id}:");
        match r.apply_edits(vec![put_after(&c, &id)]) {
            Err(tidemark::Error::Corrupt(e)) if e.context.starts_with(&named) => {}
            Ok(_) => {}
            Err(e) => panic!("an edit of {named} whose snapshot document does not load: {e}"),
        }
    }
    assert_rebuilds(&r, "local edits");
}
