//! The invariants a crash test checks once everything is healed: the server's
//! log (through its HTTP API) and each replica's log, status and view.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use tidemark::protocol::message::PullResponse;
use tidemark::replica::LogEntry;
use tidemark::{Replica, Seq};

use super::crash_ledger::Ledger;

/// One op as the server's log holds it.
#[derive(Debug, Clone)]
pub struct ServerOp {
    pub seq: Seq,
    pub id: u128,
    pub collection: String,
    pub record: String,
}

/// The server's HTTP API as one user sees it, read with a plain HTTP client.
pub struct ServerReader {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    token: String,
}

impl ServerReader {
    pub fn new(url: &str, space: &str, token: &str) -> ServerReader {
        // reqwest is built without a default crypto provider; plain http needs
        // none, but the builder wants one installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        ServerReader {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap(),
            base: format!("{url}/v1/spaces/{space}"),
            token: token.to_string(),
        }
    }

    fn get(&self, tail: &str) -> (u16, Vec<u8>) {
        self.runtime.block_on(async {
            let resp = self
                .client
                .get(format!("{}/{tail}", self.base))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.bytes().await.unwrap().to_vec())
        })
    }

    /// Every op of the space, in seq order (`GET pull` page by page from 0).
    pub fn ops(&self) -> (Vec<ServerOp>, Seq) {
        let mut since = Seq::ZERO;
        let mut ops = Vec::new();
        loop {
            let (status, body) = self.get(&format!("pull?since={since}&limit=1000"));
            assert_eq!(status, 200, "pull: {}", String::from_utf8_lossy(&body));
            let page: PullResponse = serde_json::from_slice(&body).unwrap();
            ops.extend(page.ops.iter().map(|p| ServerOp {
                seq: p.seq,
                id: p.op.id.as_u128(),
                collection: p.op.collection.clone(),
                record: p.op.record.clone(),
            }));
            since = page.end;
            if !page.more {
                return (ops, page.head);
            }
        }
    }

    /// The server's materialized record, or None when it answers 404.
    pub fn record(&self, collection: &str, id: &str) -> Option<Value> {
        let (status, body) = self.get(&format!("records/{collection}/{id}"));
        match status {
            200 => Some(serde_json::from_slice(&body).unwrap()),
            404 => None,
            other => panic!(
                "GET record {collection}/{id}: {other} {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
}

/// What is wrong with the server's log: a seq missing or twice, an op stored twice.
pub fn server_log_problems(ops: &[ServerOp], head: Seq) -> Vec<String> {
    let mut problems = Vec::new();
    let seqs: Vec<Seq> = ops.iter().map(|o| o.seq).collect();
    if seqs != (1..=head.get()).map(Seq).collect::<Vec<_>>() {
        problems.push(format!("the server's seqs are not 1..={head} in order"));
    }
    let mut seen = BTreeMap::new();
    for op in ops {
        if let Some(first) = seen.insert(op.id, op.seq) {
            problems.push(format!(
                "op {:x} is stored twice, at seqs {first} and {}",
                op.id, op.seq
            ));
        }
    }
    problems
}

/// What is wrong with one healed replica: something pending or refused, not
/// pulled to the head, an op logged twice, a server op it lacks, a local op
/// the server lacks.
pub fn replica_problems(name: &str, replica: &Replica, server: &[ServerOp], head: Seq) -> Vec<String> {
    let mut problems = Vec::new();
    let status = replica.status().unwrap();
    if status.pending != 0 || status.rejected != 0 || status.pulled != head {
        problems.push(format!(
            "{name}: pending {}, rejected {}, pulled {} of {head}",
            status.pending, status.rejected, status.pulled
        ));
    }
    let mut logged = BTreeSet::new();
    let mut local = Vec::new();
    let mut snapshot_as_of = Seq::ZERO;
    for (pos, entry) in replica.log_entries(tidemark::LogPos(0), usize::MAX).unwrap() {
        let op = match entry {
            LogEntry::Local(op) => {
                local.push(op.id.as_u128());
                op
            }
            LogEntry::Pulled(op, _) => op,
            LogEntry::Snapshot { as_of, .. } => {
                snapshot_as_of = snapshot_as_of.max(as_of);
                continue;
            }
        };
        if !logged.insert(op.id.as_u128()) {
            problems.push(format!("{name}: op {} is logged twice (again at {pos})", op.id));
        }
    }
    // A snapshot bootstrap stands for the ops up to its seq: they are in its documents.
    let missing: Vec<Seq> = server
        .iter()
        .filter(|o| o.seq > snapshot_as_of && !logged.contains(&o.id))
        .map(|o| o.seq)
        .collect();
    if !missing.is_empty() {
        problems.push(format!("{name}: lacks the server ops of seqs {missing:?}"));
    }
    let on_server: BTreeSet<u128> = server.iter().map(|o| o.id).collect();
    let unsent = local.iter().filter(|id| !on_server.contains(id)).count();
    if unsent > 0 {
        problems.push(format!("{name}: {unsent} local op(s) never reached the server"));
    }
    problems
}

/// A replica's view: (collection, id) → fields.
pub type View = BTreeMap<(String, String), Map<String, Value>>;

pub fn view(replica: &Replica) -> View {
    replica
        .view_rows()
        .unwrap()
        .into_iter()
        .map(|(collection, id, row)| ((collection, id), serde_json::from_slice(&row).unwrap()))
        .collect()
}

/// The records of one collection of a view, by id.
pub fn collection(view: &View, name: &str) -> BTreeMap<String, Map<String, Value>> {
    view.iter()
        .filter(|((c, _), _)| c == name)
        .map(|((_, id), fields)| (id.clone(), fields.clone()))
        .collect()
}

/// The first difference between two views, if any.
pub fn view_difference(a: &View, b: &View) -> Option<String> {
    for (key, fields) in a {
        match b.get(key) {
            None => return Some(format!("{key:?} only in the first ({fields:?})")),
            Some(other) if other != fields => return Some(format!("{key:?}: {fields:?} vs {other:?}")),
            Some(_) => {}
        }
    }
    b.keys()
        .find(|key| !a.contains_key(*key))
        .map(|key| format!("{key:?} only in the second"))
}

/// What [`healed`] found.
pub struct Healed {
    pub problems: Vec<String>,
    /// Records in the views, and the server's head.
    pub records: usize,
    pub head: Seq,
}

/// Every invariant over the healed replicas (by name) and the server: the
/// server's log, each replica's log and status, each view against its rebuild,
/// the views against each other and against the server's records, and the
/// ledger's acknowledged writes in them.
pub fn healed(reader: &ServerReader, replicas: &[(String, Replica)], ledger: &Ledger) -> Healed {
    let (ops, head) = reader.ops();
    let mut problems = server_log_problems(&ops, head);
    let mut views = Vec::new();
    for (name, replica) in replicas {
        problems.extend(replica_problems(name, replica, &ops, head));
        let before = view(replica);
        replica.rebuild_view().unwrap();
        if let Some(diff) = view_difference(&before, &view(replica)) {
            problems.push(format!("{name}: the view differs from its rebuild: {diff}"));
        }
        views.push(before);
    }
    let (first, view) = (&replicas[0].0, &views[0]);
    for ((name, _), other) in replicas.iter().zip(&views).skip(1) {
        if let Some(diff) = view_difference(view, other) {
            problems.push(format!("{first} and {name} differ: {diff}"));
        }
    }
    for ((collection, id), fields) in view {
        let on_server = reader.record(collection, id);
        if on_server.as_ref() != Some(&Value::Object(fields.clone())) {
            problems.push(format!(
                "{collection}/{id}: the server has {on_server:?}, {first} {fields:?}"
            ));
        }
    }
    // The crash loop deletes nothing: every record an op names is in the views.
    for op in &ops {
        if !view.contains_key(&(op.collection.clone(), op.record.clone())) {
            problems.push(format!(
                "{}/{}: written (seq {}) but in no view",
                op.collection, op.record, op.seq
            ));
        }
    }
    problems.extend(ledger.problems(&collection(view, "contacts")));
    Healed {
        problems,
        records: view.len(),
        head,
    }
}
