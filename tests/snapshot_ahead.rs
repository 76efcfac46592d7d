//! A snapshot bootstrap asks for the next page while it commits the previous
//! one (`Session::request_after`, driven by `Round::run` on a multi-threaded
//! runtime). The early answer is used only for the request the session goes
//! on to make; a page that fails to apply, or an early request that fails,
//! leaves a bootstrap the next round resumes.

#![cfg(feature = "server")]

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tidemark::Replica;
use tidemark::protocol::ErrorCode;
use tidemark::protocol::message::{ErrorBody, encode_bytes};
use tidemark::protocol::{Request, Response, RoundSummary, SessionConfig};
use tidemark::remote::{Remote, RemoteError};
use tidemark::server::local::LocalRemote;
use tidemark::sync::Round;

use common::server::{SPACE, Svc};

const RECORDS: usize = 30;

fn config() -> SessionConfig {
    SessionConfig {
        snapshot_page: 7,
        ..SessionConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A space of RECORDS records, materialized so that new replicas bootstrap from
/// snapshot pages; the writer and a reader's token.
fn seeded() -> (Svc, Replica, String) {
    let (service, tokens) = common::server::server(None, &["ada", "reader"]);
    let ada = Replica::in_memory().unwrap();
    for i in 0..RECORDS {
        ada.put("contacts", &format!("c{i:02}"), json!({"n": i})).unwrap();
    }
    let remote = LocalRemote::new(service.clone(), tokens[0].clone(), SPACE);
    Round::new(&ada, config())
        .run_blocking(|r| remote.call_blocking(r))
        .unwrap();
    service.materialize(SPACE).unwrap();
    (service, ada, tokens[1].clone())
}

type Hook = Box<dyn Fn(usize, &mut Result<Response, RemoteError>) + Send + Sync>;

/// The server, with every request logged and the snapshot requests counted;
/// `hook` may change the answer to snapshot request `n` (numbered from 1).
struct Counting {
    inner: LocalRemote<tidemark::server::store::redb::RedbStore>,
    snapshots: AtomicUsize,
    hook: Hook,
    log: Mutex<Vec<Request>>,
}

impl Counting {
    fn new(
        service: &Svc,
        token: &str,
        hook: impl Fn(usize, &mut Result<Response, RemoteError>) + Send + Sync + 'static,
    ) -> Self {
        Counting {
            inner: LocalRemote::new(service.clone(), token.to_string(), SPACE),
            snapshots: AtomicUsize::new(0),
            hook: Box::new(hook),
            log: Mutex::new(Vec::new()),
        }
    }

    fn healthy(service: &Svc, token: &str) -> Self {
        Counting::new(service, token, |_, _| {})
    }

    fn snapshot_requests(&self) -> Vec<Request> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|r| matches!(r, Request::Snapshot { .. }))
            .cloned()
            .collect()
    }
}

impl Remote for Counting {
    async fn call(&self, request: Request) -> Result<Response, RemoteError> {
        self.log.lock().unwrap().push(request.clone());
        let snapshot = matches!(request, Request::Snapshot { .. });
        let n = if snapshot {
            self.snapshots.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            0
        };
        let mut answer = self.inner.call(request).await;
        if snapshot {
            (self.hook)(n, &mut answer);
        }
        answer
    }
}

fn rows(r: &Replica) -> Vec<(String, serde_json::Value)> {
    r.list("contacts", None, 1000)
        .unwrap()
        .into_iter()
        .map(|(id, fields)| (id, serde_json::Value::Object(fields)))
        .collect()
}

#[test]
fn the_next_page_is_requested_while_the_previous_one_commits() {
    let (service, ada, token) = seeded();
    let remote = Counting::healthy(&service, &token);
    let reader = Replica::in_memory().unwrap();
    let pages = RECORDS.div_ceil(config().snapshot_page);
    // After each applied page but the last, the request for the next one must
    // be under way already: the observer runs on the thread that applied the
    // page, and waits for it. Without asking ahead, the request would only
    // come after the observer returns, and every wait would time out.
    let mut seen_before = Vec::new();
    let mut applied = 0;
    let mut observe = |summary: &RoundSummary| {
        let pages_applied = summary.snapshot_docs.div_ceil(7) as usize;
        if pages_applied > applied {
            applied = pages_applied;
            if applied < pages {
                let deadline = Instant::now() + Duration::from_secs(10);
                while remote.snapshots.load(Ordering::SeqCst) <= applied && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                seen_before.push(remote.snapshots.load(Ordering::SeqCst) > applied);
            }
        }
    };
    let summary = runtime()
        .block_on(Round::new(&reader, config()).observed(&mut observe).run(&remote))
        .unwrap();
    assert_eq!(summary.snapshot_docs, RECORDS as u64);
    assert_eq!(
        seen_before,
        vec![true; pages - 1],
        "the next page was asked for during each commit"
    );
    assert_eq!(
        remote.snapshots.load(Ordering::SeqCst),
        pages,
        "each page was asked for once: every early answer was used"
    );
    assert_eq!(rows(&reader), rows(&ada));
    assert_eq!(reader.status().unwrap().pulled, ada.status().unwrap().pulled);
}

#[test]
fn an_early_request_that_fails_fails_the_round_and_the_next_round_resumes() {
    let (service, ada, token) = seeded();
    let reader = Replica::in_memory().unwrap();
    // The second page is asked for ahead, while the first commits, and fails.
    let failing = Counting::new(&service, &token, |n, answer| {
        if n == 2 {
            *answer = Err(RemoteError {
                status: Some(503),
                body: ErrorBody {
                    code: ErrorCode::StoreUnavailable,
                    message: "try again later".into(),
                    op_index: None,
                },
            });
        }
    });
    let rt = runtime();
    let error = rt
        .block_on(Round::new(&reader, config()).run(&failing))
        .expect_err("the failed page fails the round");
    assert!(error.to_string().contains("try again later"), "{error}");
    assert_eq!(reader.status().unwrap().pulled, 0, "the bootstrap is not finished");
    assert_eq!(rows(&reader).len(), 7, "the first page stays applied");

    let healthy = Counting::healthy(&service, &token);
    rt.block_on(Round::new(&reader, config()).run(&healthy)).unwrap();
    let asked = healthy.snapshot_requests();
    assert!(
        matches!(&asked[0], Request::Snapshot { after: Some(_), .. }),
        "the next round resumes after the first page: {asked:?}"
    );
    assert_eq!(asked.len(), RECORDS.div_ceil(7) - 1);
    assert_eq!(rows(&reader), rows(&ada));
}

#[test]
fn a_page_that_fails_to_apply_leaves_the_early_answer_unused() {
    let (service, ada, token) = seeded();
    let reader = Replica::in_memory().unwrap();
    // The second page holds a document that does not load (and no row, so
    // the replica loads it while applying the page): the page fails while
    // the third is already asked for.
    let bad = Counting::new(&service, &token, |n, answer| {
        if let (2, Ok(Response::Snapshot(page))) = (n, answer) {
            page.docs[3].doc = encode_bytes(b"not an automerge document");
            page.docs[3].row = None;
        }
    });
    let rt = runtime();
    let error = rt
        .block_on(Round::new(&reader, config()).run(&bad))
        .expect_err("the bad page fails the round");
    assert!(error.to_string().contains("record document"), "{error}");
    assert_eq!(rows(&reader).len(), 7, "only the first page is applied");
    assert_eq!(bad.snapshot_requests().len(), 3, "the third page was asked for ahead");

    let healthy = Counting::healthy(&service, &token);
    rt.block_on(Round::new(&reader, config()).run(&healthy)).unwrap();
    let asked = healthy.snapshot_requests();
    assert_eq!(
        asked[0],
        bad.snapshot_requests()[1],
        "the next round asks for the page that failed again"
    );
    assert_eq!(asked.len(), RECORDS.div_ceil(7) - 1);
    assert_eq!(rows(&reader), rows(&ada));
}
