//! Keeps the server's materialized record documents up to date, off the push
//! path: a background thread catches up after pushes, and readers that need
//! fresh documents (snapshot, record) catch up first themselves.

use std::collections::BTreeMap;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

use super::error::ServiceError;
use super::store::{PageLimit, ServerStore, StoredDoc};
use crate::model::ActorId;
use crate::record::{RecordDoc, Row, decode_stored_change};

/// Ops materialized per transaction.
const CHUNK: usize = 2000;
/// Change bytes read per catch-up step: memory stays bounded whatever the op sizes.
const CHUNK_BYTES: usize = 16 << 20;

pub(crate) struct Materializer<S: ServerStore> {
    store: Arc<S>,
    /// One catch-up at a time: two would apply the same ops twice and race on `materialized`.
    lock: Arc<Mutex<()>>,
    wake: Mutex<Sender<String>>,
}

impl<S: ServerStore> Materializer<S> {
    pub fn start(store: Arc<S>) -> Self {
        let (tx, rx) = channel::<String>();
        let lock = Arc::new(Mutex::new(()));
        let (bg_store, bg_lock) = (store.clone(), lock.clone());
        std::thread::Builder::new()
            .name("tidemark-materialize".into())
            .spawn(move || {
                // Ends when the service (the sender) is dropped.
                while let Ok(space) = rx.recv() {
                    if let Err(e) = catch_up(&*bg_store, &bg_lock, &space) {
                        tracing::warn!(space, error = %e, "materializing failed; readers will retry");
                    }
                }
            })
            .expect("spawning the materializer thread");
        Materializer {
            store,
            lock,
            wake: Mutex::new(tx),
        }
    }

    pub fn nudge(&self, space: &str) {
        if let Ok(tx) = self.wake.lock() {
            let _ = tx.send(space.to_string());
        }
    }

    pub fn catch_up(&self, space: &str) -> Result<(), ServiceError> {
        catch_up(&*self.store, &self.lock, space)
    }
}

fn catch_up<S: ServerStore>(store: &S, lock: &Mutex<()>, space: &str) -> Result<(), ServiceError> {
    let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let since = store.materialized(space)?;
        let ops = store.read_ops(
            space,
            since,
            PageLimit {
                count: CHUNK,
                bytes: CHUNK_BYTES,
            },
        )?;
        let Some(&(through, _)) = ops.last() else {
            return Ok(());
        };
        // One apply call per record: applying changes one by one slows down as history grows.
        let mut by_record: BTreeMap<(String, String), Vec<Vec<u8>>> = BTreeMap::new();
        for (_, stored) in ops {
            by_record
                .entry((stored.op.collection.to_string(), stored.op.record.to_string()))
                .or_default()
                .push(stored.op.change);
        }
        let quarantined = store.quarantined(space)?;
        by_record.retain(|key, _| !quarantined.contains_key(key));
        let keys: Vec<(String, String)> = by_record.keys().cloned().collect();
        let stored_docs = store.docs_of(space, &keys)?;
        let mut docs = Vec::with_capacity(by_record.len());
        for (((collection, record), changes), stored) in by_record.into_iter().zip(stored_docs) {
            match merged(stored.as_deref(), &changes) {
                Ok((doc, row)) => docs.push(StoredDoc {
                    collection,
                    record,
                    doc,
                    row: Some(row.encode()),
                }),
                // One record that does not load costs that record, never the space:
                // it is set aside, named in the log, and the rest goes on.
                Err(reason) => {
                    tracing::error!(space, collection, record, "quarantining a record: {reason}");
                    store.quarantine(space, &collection, &record, &reason)?;
                }
            }
        }
        // False when another process materialized these ops first: read again from its seq.
        store.store_docs(space, &docs, since, through)?;
    }
}

/// A record's stored document (if any) with `changes` applied, saved, and its
/// row; or why it failed.
fn merged(stored: Option<&[u8]>, changes: &[Vec<u8>]) -> Result<(Vec<u8>, Row), String> {
    let mut doc = match stored {
        Some(bytes) => {
            RecordDoc::load(bytes, ActorId([0; 16])).map_err(|e| format!("its stored document does not load ({e})"))?
        }
        None => RecordDoc::new(ActorId([0; 16])),
    };
    let decoded = changes
        .iter()
        .map(|c| decode_stored_change(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("a stored change does not decode ({e})"))?;
    doc.apply_changes(decoded)
        .map_err(|e| format!("its changes do not apply ({e})"))?;
    if doc.has_missing_deps() {
        return Err("its changes depend on changes it does not hold".into());
    }
    Ok((doc.save(), doc.row()))
}
