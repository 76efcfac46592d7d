//! Sync end to end: one suite run over the in-process remote and over HTTP,
//! plus fault and boundary tests driven through the sans-IO session by hand.

#![cfg(all(feature = "server", feature = "http-client"))]

mod common;

use std::sync::Arc;

use serde_json::json;
use tidemark::protocol::{Request, Response, Session, SessionConfig};
use tidemark::remote::Remote;
use tidemark::remote::http::HttpRemote;
use tidemark::server::local::LocalRemote;
use tidemark::server::store::redb::RedbStore;

use tidemark::sync::Round;
use tidemark::{Binding, InitialSync, Package, Replica};

use common::server::{SPACE, Svc, start_http};

/// A server with one space and `users` users who are members of it; returns their tokens.
fn server_with(package: Option<Package>, users: &[&str]) -> (Svc, Vec<String>) {
    common::server::server(package, users)
}

fn small_pages() -> SessionConfig {
    SessionConfig {
        push_batch: 3,
        max_push_bytes: 1 << 20,
        pull_page: 4,
        snapshot_page: 5,
        max_passes: 4,
    }
}

/// Three replicas edit the same records offline, sync in a scrambled order,
/// and end with identical views equal to the server's materialized records.
async fn three_replicas_converge<R: Remote>(service: &Svc, remotes: [R; 3]) {
    let replicas: Vec<Replica> = (0..3).map(|_| Replica::in_memory().unwrap()).collect();
    for (r, remote) in replicas.iter().zip(&remotes) {
        Round::new(r, small_pages()).run(remote).await.unwrap(); // downloads the package
    }
    replicas[0]
        .put("contacts", "c1", json!({"name": "Ada", "note": "hello", "visits": 0}))
        .unwrap();
    for i in 0..10 {
        replicas[0]
            .put("contacts", &format!("bulk{i}"), json!({"name": format!("n{i}")}))
            .unwrap();
    }
    replicas[0].put("contacts", "c2", json!({"name": "Grace"})).unwrap();
    Round::new(&replicas[0], small_pages()).run(&remotes[0]).await.unwrap();
    for (r, remote) in replicas.iter().zip(&remotes).skip(1) {
        Round::new(r, small_pages()).run(remote).await.unwrap();
    }
    // Offline edits on all three; each also writes the first counter value and
    // the first text of c2, which has neither field yet.
    for (i, r) in replicas.iter().enumerate() {
        r.increment("contacts", "c2", "visits", 1 << i).unwrap();
        r.splice_text("contacts", "c2", "note", 0, 0, ["x", "y", "z"][i])
            .unwrap();
    }
    replicas[0]
        .put("contacts", "c1", json!({"name": "Ada Lovelace"}))
        .unwrap();
    replicas[0].splice_text("contacts", "c1", "note", 0, 0, ">> ").unwrap();
    replicas[0].increment("contacts", "c1", "visits", 2).unwrap();
    replicas[1].put("contacts", "c1", json!({"name": "Ada King"})).unwrap();
    replicas[1]
        .splice_text("contacts", "c1", "note", 5, 0, " world")
        .unwrap();
    replicas[1].increment("contacts", "c1", "visits", 3).unwrap();
    replicas[1].delete("contacts", "bulk3").unwrap();
    replicas[2]
        .put("contacts", "bulk3", json!({"name": "edited while deleted"}))
        .unwrap();
    replicas[2]
        .put("accounts", "a1", json!({"name": "Analytical Engines"}))
        .unwrap();
    replicas[2].increment("contacts", "c1", "visits", 5).unwrap();
    for order in [[2, 0, 1], [1, 2, 0], [0, 1, 2]] {
        for i in order {
            Round::new(&replicas[i], small_pages()).run(&remotes[i]).await.unwrap();
        }
    }
    let view = replicas[0].view_rows().unwrap();
    assert_eq!(replicas[1].view_rows().unwrap(), view);
    assert_eq!(replicas[2].view_rows().unwrap(), view);
    let c1 = replicas[0].get("contacts", "c1").unwrap().unwrap();
    assert_eq!(c1["visits"], 10, "concurrent increments add up");
    assert_eq!(c1["note"], ">> hello world", "text edits merge character by character");
    let c2 = replicas[0].get("contacts", "c2").unwrap().unwrap();
    assert_eq!(c2["visits"], 7, "first increments of a missing counter add up");
    let mut note: Vec<char> = c2["note"].as_str().unwrap().chars().collect();
    note.sort();
    assert_eq!(note, ['x', 'y', 'z'], "first texts of a missing note merge");
    assert!(replicas[0].conflicts(Some("contacts"), Some("c2")).unwrap().is_empty());
    assert!(
        replicas[0].get("contacts", "bulk3").unwrap().is_none(),
        "delete wins over the concurrent edit"
    );
    assert_eq!(
        replicas[2].conflicts(Some("contacts"), Some("c1")).unwrap().len(),
        1,
        "the name conflict is kept"
    );
    // The server's materialized records equal the replicas' views.
    for (collection, id, row) in &view {
        let fields = service.record("alice", SPACE, collection, id).unwrap().unwrap();
        assert_eq!(&serde_json::to_vec(&fields).unwrap(), row, "{collection}/{id}");
    }
    assert!(service.record("alice", SPACE, "contacts", "bulk3").unwrap().is_none());
    for r in &replicas {
        let s = r.status().unwrap();
        assert_eq!(s.pending, 0);
        assert_eq!(s.pulled, service.store().head_of(SPACE));
    }
}

trait Head {
    fn head_of(&self, space: &str) -> tidemark::Seq;
}
impl Head for RedbStore {
    fn head_of(&self, space: &str) -> tidemark::Seq {
        tidemark::server::store::ServerStore::head(self, space).unwrap()
    }
}

#[tokio::test]
async fn three_replicas_converge_in_process() {
    let (service, tokens) = server_with(Some(common::crm_package()), &["alice", "bob", "carol"]);
    let remotes = [0, 1, 2].map(|i| LocalRemote::new(service.clone(), tokens[i].clone(), SPACE));
    three_replicas_converge(&service, remotes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_converge_over_http() {
    let (service, tokens) = server_with(Some(common::crm_package()), &["alice", "bob", "carol"]);
    let (url, _stop) = start_http(service.clone()).await;
    let remotes = [0, 1, 2].map(|i| HttpRemote::new(&url, &tokens[i], SPACE).unwrap());
    three_replicas_converge(&service, remotes).await;
}

/// A push whose answer was lost (server killed after commit) is re-pushed and gets the same seqs.
fn a_lost_push_answer_is_repushed_without_duplicates(via: Via) {
    let net = Net::new(via);
    let (service, tokens) = server_with(None, &["alice"]);
    let remote = net.remote(&service, &tokens[0]);
    let replica = Replica::in_memory().unwrap();
    for i in 0..5 {
        replica.put("contacts", &format!("c{i}"), json!({"n": i})).unwrap();
    }
    // Drive the session by hand and drop the push answer on the floor.
    let mut session = Session::new(SessionConfig::default());
    let mut lost = None;
    while let Some(request) = session.next_request(&replica).unwrap() {
        let response = remote.call(request).unwrap();
        if let Response::Push(p) = &response {
            lost = Some(p.seqs.clone());
            break;
        }
        session.handle_response(&replica, response).unwrap();
    }
    assert_eq!(lost, Some((1..=5).map(|n| Some(tidemark::Seq(n))).collect()));
    assert_eq!(replica.status().unwrap().pending, 5, "the answer never arrived");
    let summary = Round::new(&replica, SessionConfig::default())
        .run_blocking(|r| remote.call(r))
        .unwrap();
    assert_eq!(summary.pushed, 5);
    assert_eq!(summary.head, 5, "the re-push got the same seqs: no duplicates");
    assert_eq!(replica.status().unwrap().pending, 0);
    assert_eq!(service.store().head_of(SPACE), 5);
}

fn seed_space(net: &Net, service: &Svc, token: &str, records: usize) {
    let writer = Replica::in_memory().unwrap();
    for i in 0..records {
        writer.put("contacts", &format!("c{i:03}"), json!({"n": i})).unwrap();
    }
    let remote = net.remote(service, token);
    Round::new(&writer, SessionConfig::default())
        .run_blocking(|r| remote.call(r))
        .unwrap();
}

/// A client that stops mid-pull resumes from the last committed page: the
/// next round asks from exactly there and pulls only the rest.
fn an_interrupted_pull_resumes_from_the_last_committed_page(via: Via) {
    let net = Net::new(via);
    let (service, tokens) = server_with(None, &["alice", "bob"]);
    let remote = net.remote(&service, &tokens[1]);
    let config = SessionConfig {
        push_batch: 100,
        max_push_bytes: 1 << 20,
        pull_page: 1,
        snapshot_page: 100,
        max_passes: 1,
    };
    // The reader has pulled once (seq 1), so the ops after it come by the pull path.
    let writer = Replica::in_memory().unwrap();
    let writer_remote = net.remote(&service, &tokens[0]);
    writer.put("contacts", "c000", json!({"n": 0})).unwrap();
    Round::new(&writer, config)
        .run_blocking(|r| writer_remote.call(r))
        .unwrap();
    let reader = Replica::in_memory().unwrap();
    Round::new(&reader, config).run_blocking(|r| remote.call(r)).unwrap();
    assert_eq!(reader.watermarks().unwrap().pulled, 1);
    for i in 1..=10 {
        writer.put("contacts", &format!("c{i:03}"), json!({"n": i})).unwrap();
    }
    Round::new(&writer, config)
        .run_blocking(|r| writer_remote.call(r))
        .unwrap();

    // Three pull pages answered and committed, then the process "crashes"
    // with the fourth in flight.
    let mut session = Session::new(config);
    let mut pulls = 0;
    while let Some(request) = session.next_request(&reader).unwrap() {
        assert!(
            !matches!(request, Request::Snapshot { .. }),
            "the pull path, not a snapshot"
        );
        if matches!(request, Request::Pull { .. }) {
            pulls += 1;
            if pulls == 4 {
                break;
            }
        }
        let response = remote.call(request).unwrap();
        session.handle_response(&reader, response).unwrap();
    }
    assert_eq!(
        reader.watermarks().unwrap().pulled,
        4,
        "three pages of one op each were committed"
    );

    let mut asked = Vec::new();
    let summary = Round::new(&reader, config)
        .run_blocking(|r| {
            asked.push(r.clone());
            remote.call(r)
        })
        .unwrap();
    let first_pull = asked.iter().find_map(|r| match r {
        Request::Pull { since, .. } => Some(*since),
        _ => None,
    });
    assert_eq!(
        first_pull,
        Some(tidemark::Seq(4)),
        "the next round asks from the last committed page: {asked:?}"
    );
    assert_eq!(summary.pulled, 7, "and pulls only the rest: {summary:?}");
    assert_eq!(summary.snapshot_docs, 0);
    assert_eq!(reader.list("contacts", None, 100).unwrap().len(), 11);
    assert_eq!(reader.status().unwrap().pulled, 11);
}

/// Page size 1, exact multiples of the page size, and ops committed while paging.
fn page_boundaries_lose_nothing(via: Via) {
    let net = Net::new(via);
    for (records, page) in [(8, 1), (8, 4), (8, 8), (9, 4), (0, 3)] {
        let (service, tokens) = server_with(None, &["alice", "bob"]);
        seed_space(&net, &service, &tokens[0], records);
        let reader = Replica::in_memory().unwrap();
        let config = SessionConfig {
            push_batch: page,
            max_push_bytes: 1 << 20,
            pull_page: page,
            snapshot_page: page,
            max_passes: 2,
        };
        let remote = net.remote(&service, &tokens[1]);
        let writer = Replica::in_memory().unwrap();
        let writer_remote = net.remote(&service, &tokens[0]);
        let mut extra = 0;
        // Every request of the reader lets the writer commit one more op first.
        Round::new(&reader, config)
            .run_blocking(|r| {
                if extra < 3 {
                    writer
                        .put("contacts", &format!("late{extra}"), json!({"n": extra}))
                        .unwrap();
                    Round::new(&writer, SessionConfig::default())
                        .run_blocking(|w| writer_remote.call(w))
                        .unwrap();
                    extra += 1;
                }
                remote.call(r)
            })
            .unwrap();
        Round::new(&reader, config).run_blocking(|r| remote.call(r)).unwrap();
        let got = reader.list("contacts", None, 1000).unwrap().len();
        assert_eq!(got, records + 3, "records {records}, page {page}");
        assert_eq!(reader.status().unwrap().pulled, service.store().head_of(SPACE));
    }
}

/// A fresh replica bootstraps from snapshot pages, then pulls the ops after
/// the snapshot; its status says the first download is unfinished until then.
fn a_fresh_replica_bootstraps_from_a_snapshot_and_resumes_a_broken_one(via: Via) {
    let net = Net::new(via);
    let (service, tokens) = server_with(None, &["alice", "bob"]);
    seed_space(&net, &service, &tokens[0], 23);
    let remote = net.remote(&service, &tokens[1]);
    let reader = Replica::in_memory().unwrap();
    assert_eq!(reader.status().unwrap().initial_sync, None, "never logged in");
    reader
        .bind(&Binding::new("http://server", "bob", SPACE), &tokens[1])
        .unwrap();
    assert_eq!(reader.status().unwrap().initial_sync, Some(InitialSync::Unfinished));
    assert!(reader.initial_sync_unfinished().unwrap());
    let config = SessionConfig {
        push_batch: 10,
        max_push_bytes: 1 << 20,
        pull_page: 10,
        snapshot_page: 5,
        max_passes: 2,
    };
    let mut session = Session::new(config);
    let mut snapshot_pages = 0;
    while let Some(request) = session.next_request(&reader).unwrap() {
        if matches!(request, Request::Snapshot { .. }) {
            snapshot_pages += 1;
            if snapshot_pages == 3 {
                break; // the connection dies during the bootstrap
            }
        }
        session.handle_response(&reader, remote.call(request).unwrap()).unwrap();
    }
    assert_eq!(
        reader.list("contacts", None, 100).unwrap().len(),
        10,
        "two pages of five committed"
    );
    assert!(reader.snapshot_checkpoint().unwrap().is_some());
    assert_eq!(reader.status().unwrap().initial_sync, Some(InitialSync::Unfinished));
    // Progress is reported after every answer: the round's first answer, the
    // three pages left, then the pull after them.
    let mut seen = Vec::new();
    let mut observe = |s: &tidemark::protocol::RoundSummary| seen.push(s.snapshot_docs);
    let summary = Round::new(&reader, config)
        .observed(&mut observe)
        .run_blocking(|r| remote.call(r))
        .unwrap();
    assert_eq!(seen, [0, 5, 10, 13, 13]);
    assert_eq!(summary.snapshot_docs, 13, "resumed after the committed pages");
    assert_eq!(summary.pulled, 0, "the snapshot covered every op");
    assert_eq!(reader.list("contacts", None, 100).unwrap().len(), 23);
    assert_eq!(reader.status().unwrap().pulled, 23);
    assert!(reader.snapshot_checkpoint().unwrap().is_none());
    assert_eq!(reader.status().unwrap().initial_sync, Some(InitialSync::Done));
    assert!(!reader.initial_sync_unfinished().unwrap());
    // Logging in again as the same account does not make it unfinished again.
    reader
        .bind(&Binding::new("http://server", "bob", SPACE), &tokens[1])
        .unwrap();
    assert_eq!(reader.status().unwrap().initial_sync, Some(InitialSync::Done));
    // The log replays to the same view.
    let rows = reader.view_rows().unwrap();
    reader.rebuild_view().unwrap();
    assert_eq!(reader.view_rows().unwrap(), rows);
}

/// A server store reset (new epoch): the replica re-pushes what the server lacks and says so.
fn after_a_server_reset_the_replicas_ops_reappear(via: Via) {
    let net = Net::new(via);
    let (old, old_tokens) = server_with(None, &["alice"]);
    let replica = Replica::in_memory().unwrap();
    replica.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    replica.put("contacts", "c2", json!({"name": "Grace"})).unwrap();
    let remote = net.remote(&old, &old_tokens[0]);
    Round::new(&replica, SessionConfig::default())
        .run_blocking(|r| remote.call(r))
        .unwrap();
    drop(remote);

    let (fresh, tokens) = server_with(None, &["alice"]);
    assert_ne!(fresh.epoch(), old.epoch());
    let remote = net.remote(&fresh, &tokens[0]);
    let summary = Round::new(&replica, SessionConfig::default())
        .run_blocking(|r| remote.call(r))
        .unwrap();
    assert!(summary.epoch_changed);
    assert_eq!(summary.repushed, 2);
    assert_eq!(
        fresh.record("alice", SPACE, "contacts", "c2").unwrap().unwrap()["name"],
        "Grace"
    );
    let again = Round::new(&replica, SessionConfig::default())
        .run_blocking(|r| remote.call(r))
        .unwrap();
    assert!(!again.epoch_changed);
    assert_eq!(replica.status().unwrap().pulled, 2);
}

/// A read-only member's ops move to the rejected list; the queue does not wedge.
fn a_read_only_members_ops_are_rejected_and_the_round_goes_on(via: Via) {
    let net = Net::new(via);
    let (service, tokens) = server_with(None, &["alice"]);
    let viewer = service.add_user("viewer").unwrap().token;
    service
        .grant(&tidemark::protocol::message::Grant {
            user: "viewer".into(),
            space: SPACE.into(),
            read_only: true,
        })
        .unwrap();
    seed_space(&net, &service, &tokens[0], 3);
    let replica = Replica::in_memory().unwrap();
    replica.put("contacts", "mine", json!({"n": 1})).unwrap();
    let remote = net.remote(&service, &viewer);
    let summary = Round::new(&replica, SessionConfig::default())
        .run_blocking(|r| remote.call(r))
        .unwrap();
    assert_eq!(summary.rejected, 1);
    let status = replica.status().unwrap();
    assert_eq!((status.pending, status.rejected), (0, 1));
    let rejection = &replica.rejected().unwrap()[0];
    assert_eq!(rejection.code, "read_only");
    assert_eq!(
        rejection.values.as_ref().unwrap().set,
        *json!({"n": 1}).as_object().unwrap(),
        "the rejected list keeps what the op wrote"
    );
    assert_eq!(
        replica.list("contacts", None, 10).unwrap().len(),
        3,
        "it still pulled the space, and the refused record left the view"
    );
    assert_eq!(replica.get("contacts", "mine").unwrap(), None);
    assert_eq!(service.store().head_of(SPACE), 3, "nothing of the viewer was stored");
}

/// An op that the server's package refuses is rejected with the reason; the rest get through.
fn an_invalid_op_is_rejected_and_the_rest_of_the_batch_is_pushed(via: Via) {
    let net = Net::new(via);
    let package = common::crm_package();
    let (service, tokens) = server_with(Some(package), &["alice"]);
    let replica = Replica::in_memory().unwrap(); // schemaless until its first sync
    replica.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    replica
        .put("contacts", "c2", json!({"nickname": "not in the package"}))
        .unwrap();
    replica.put("contacts", "c3", json!({"name": "Grace"})).unwrap();
    let remote = net.remote(&service, &tokens[0]);
    let summary = Round::new(&replica, SessionConfig::default())
        .run_blocking(|r| remote.call(r))
        .unwrap();
    assert_eq!(summary.rejected_by_package + summary.rejected, 1);
    assert_eq!(summary.pushed, 2);
    let rejected = replica.rejected().unwrap();
    assert_eq!(rejected[0].record, "c2");
    assert!(rejected[0].reason.contains("nickname"), "{}", rejected[0].reason);
    assert_eq!(
        replica.package().unwrap().unwrap().version,
        1,
        "the package was downloaded"
    );
}

/// Which remote a test runs over: every fault test runs over both.
#[derive(Clone, Copy, Debug)]
enum Via {
    Local,
    Http,
}

/// The remotes of one test: in-process, or HTTP to servers started on demand.
struct Net {
    via: Via,
    rt: tokio::runtime::Runtime,
    servers: std::sync::Mutex<Vec<(Svc, String, tokio::sync::oneshot::Sender<()>)>>,
}

/// A blocking transport over either remote, for driving sessions by hand.
enum Transport<'a> {
    Local(LocalRemote<RedbStore>),
    Http(HttpRemote, &'a tokio::runtime::Runtime),
}

impl Transport<'_> {
    fn call(&self, request: Request) -> Result<Response, tidemark::remote::RemoteError> {
        match self {
            Transport::Local(l) => l.call_blocking(request),
            Transport::Http(h, rt) => rt.block_on(h.call(request)),
        }
    }
}

impl Net {
    fn new(via: Via) -> Net {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Net {
            via,
            rt,
            servers: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn remote(&self, service: &Svc, token: &str) -> Transport<'_> {
        match self.via {
            Via::Local => Transport::Local(LocalRemote::new(service.clone(), token.to_string(), SPACE)),
            Via::Http => {
                let mut servers = self.servers.lock().unwrap();
                let url = match servers.iter().find(|(s, _, _)| Arc::ptr_eq(s, service)) {
                    Some((_, url, _)) => url.clone(),
                    None => {
                        let (url, stop) = self.rt.block_on(start_http(service.clone()));
                        servers.push((service.clone(), url.clone(), stop));
                        url
                    }
                };
                Transport::Http(HttpRemote::new(&url, token, SPACE).unwrap(), &self.rt)
            }
        }
    }
}

/// Runs a test body over the in-process remote and over HTTP.
macro_rules! over_both_remotes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn in_process() {
                super::$name(super::Via::Local)
            }
            #[test]
            fn over_http() {
                super::$name(super::Via::Http)
            }
        }
    )*};
}

over_both_remotes!(
    a_lost_push_answer_is_repushed_without_duplicates,
    an_interrupted_pull_resumes_from_the_last_committed_page,
    page_boundaries_lose_nothing,
    a_fresh_replica_bootstraps_from_a_snapshot_and_resumes_a_broken_one,
    after_a_server_reset_the_replicas_ops_reappear,
    a_read_only_members_ops_are_rejected_and_the_round_goes_on,
    an_invalid_op_is_rejected_and_the_rest_of_the_batch_is_pushed,
);
