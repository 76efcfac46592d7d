//! What an incremental sync is made of, done by its parts alone: the same pull
//! request over HTTP, automerge merging each pulled change into its record's
//! stored document, on as many threads as the replica uses, and redb writing
//! the merged documents, a row per record and the pulled changes in one durable
//! commit. No validation, no op index, no queue or watermark bookkeeping: the
//! floor that `incremental_100` is measured against in the same rounds.
//!
//! Included by `benches/sync.rs`.

use std::collections::BTreeMap;

use automerge::{AutoCommit, ROOT, ReadDoc as _, ScalarValue, Value};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use redb::{Database, ReadableTable as _, TableDefinition};
use tidemark::model::{HeldAt, Seq};
use tidemark::protocol::{Request, Response};
use tidemark::remote::Remote;

const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("docs");
const ROWS: TableDefinition<&str, &[u8]> = TableDefinition::new("rows");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

/// One record's merge: its key, its stored document, the changes pulled for it.
type Work = (String, Option<Vec<u8>>, Vec<Vec<u8>>);

/// Documents per snapshot page: the replica's default.
const SNAPSHOT_PAGE: usize = 2000;

/// A bare copy of a space: its documents as the snapshot gave them, then merged
/// page by page.
pub struct MergeAlone {
    db: Database,
    since: Seq,
    /// The last log position written.
    at: u64,
}

impl MergeAlone {
    /// Downloads the space's snapshot into a new database at `path`, as the
    /// replica's bootstrap does but by the parts alone: each page's documents,
    /// rows (the server's, as sent) and a log entry per document are written by
    /// redb in one durable commit per page, while the next page downloads.
    pub fn bootstrap(path: &std::path::Path, rt: &tokio::runtime::Runtime, remote: &impl Remote) -> MergeAlone {
        let db = Database::create(path).unwrap();
        let ask = |after| match rt.block_on(remote.call(Request::Snapshot {
            after,
            limit: SNAPSHOT_PAGE,
        })) {
            Ok(Response::Snapshot(page)) => page,
            other => panic!("the snapshot page did not come: {other:?}"),
        };
        let mut page = ask(None);
        let since = page.as_of;
        let mut at = 0u64;
        loop {
            let next = std::thread::scope(|scope| {
                let fetch = page.next.clone().map(|after| scope.spawn(move || ask(Some(after))));
                let txn = db.begin_write().unwrap();
                {
                    let mut docs = txn.open_table(DOCS).unwrap();
                    let mut rows = txn.open_table(ROWS).unwrap();
                    let mut log = txn.open_table(LOG).unwrap();
                    for d in &page.docs {
                        let k = key(&d.collection, &d.record);
                        let bytes = B64.decode(&d.doc).unwrap();
                        docs.insert(k.as_str(), bytes.as_slice()).unwrap();
                        let row = d
                            .row
                            .as_ref()
                            .and_then(|r| r.fields.as_ref())
                            .map(|f| f.get())
                            .unwrap_or("null");
                        rows.insert(k.as_str(), row.as_bytes()).unwrap();
                        at += 1;
                        log.insert(at, bytes.as_slice()).unwrap();
                    }
                }
                txn.commit().unwrap();
                fetch.map(|f| f.join().unwrap())
            });
            match next {
                Some(next) => page = next,
                None => break,
            }
        }
        MergeAlone { db, since, at }
    }

    /// Documents held.
    pub fn len(&self) -> u64 {
        use redb::{ReadableDatabase as _, ReadableTableMetadata as _};
        self.db.begin_read().unwrap().open_table(DOCS).unwrap().len().unwrap()
    }

    /// Pulls what is new and merges it; returns how many changes came.
    pub async fn pull(&mut self, remote: &impl Remote) -> usize {
        let request = Request::Pull {
            since: self.since,
            limit: 1000,
            at: HeldAt::default(),
        };
        let Ok(Response::Pull(page)) = remote.call(request).await else {
            panic!("the pull page did not come");
        };
        let changes: Vec<Vec<u8>> = page.ops.iter().map(|p| B64.decode(&p.op.change).unwrap()).collect();
        let mut groups: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for (pulled, change) in page.ops.iter().zip(&changes) {
            groups
                .entry(key(&pulled.op.collection, &pulled.op.record))
                .or_default()
                .push(change.clone());
        }
        let txn = self.db.begin_write().unwrap();
        {
            let mut docs = txn.open_table(DOCS).unwrap();
            let work: Vec<Work> = groups
                .into_iter()
                .map(|(k, changes)| {
                    let stored = docs.get(k.as_str()).unwrap().map(|v| v.value().to_vec());
                    (k, stored, changes)
                })
                .collect();
            let merged = on_cores(&work, |(_, stored, changes)| merge(stored.as_deref(), changes));
            let mut rows = txn.open_table(ROWS).unwrap();
            for ((k, _, _), (doc, row)) in work.iter().zip(merged) {
                docs.insert(k.as_str(), doc.as_slice()).unwrap();
                rows.insert(k.as_str(), row.as_slice()).unwrap();
            }
            let mut log = txn.open_table(LOG).unwrap();
            for change in &changes {
                self.at += 1;
                log.insert(self.at, change.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        self.since = page.end;
        page.ops.len()
    }
}

fn key(collection: &str, record: &str) -> String {
    format!("{collection}/{record}")
}

/// Loads a document, applies the changes, and returns its saved bytes and its
/// top-level fields as JSON.
fn merge(stored: Option<&[u8]>, changes: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
    let mut doc = stored.map(|b| AutoCommit::load(b).unwrap()).unwrap_or_default();
    let changes = changes
        .iter()
        .map(|c| automerge::Change::from_bytes(c.clone()).unwrap())
        .collect::<Vec<_>>();
    doc.apply_changes(changes).unwrap();
    let mut row = serde_json::Map::new();
    for field in doc.keys(ROOT) {
        let value = match doc.get(ROOT, &field).unwrap() {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(s) => serde_json::Value::from(s.to_string()),
                ScalarValue::Int(i) => serde_json::Value::from(*i),
                ScalarValue::Uint(u) => serde_json::Value::from(*u),
                ScalarValue::F64(f) => serde_json::Value::from(*f),
                ScalarValue::Boolean(b) => serde_json::Value::from(*b),
                _ => serde_json::Value::Null,
            },
            _ => serde_json::Value::Null,
        };
        row.insert(field, value);
    }
    (doc.save(), serde_json::to_vec(&row).unwrap())
}

/// `f` over `items` split in equal parts, one thread per core, as the replica
/// splits a page's merges.
fn on_cores<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let half = items.len().div_ceil(cores).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(half)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}
