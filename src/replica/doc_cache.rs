//! Record documents kept in memory after a local edit, so that the next edit of
//! the same record skips loading it. Loading is the largest part of a small edit
//! and grows with the record's history (automerge keeps every change).
//!
//! An entry is used only when the bytes stored in DOCS are exactly the bytes the
//! cached document was saved as: any other writer (a merge, a rebuild, another
//! process sharing the file, a rolled-back transaction) makes the entry stale,
//! and a stale entry is never used. Entries are taken out while an edit works on
//! them and put back only after its transaction committed.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::model::{Collection, RecordId};
use crate::record::RecordDoc;

/// Edits of batches larger than this (imports) go around the cache: they would
/// only churn it.
pub(crate) const MAX_BATCH: usize = 64;

/// Documents kept; a small record document takes a few KiB in memory.
const CAPACITY: usize = 512;

struct Entry {
    /// The bytes DOCS held for this record when the document was cached.
    saved: Vec<u8>,
    doc: RecordDoc,
    /// When it was cached (a counter): the oldest entry goes first.
    stamp: u64,
}

#[derive(Default)]
pub(crate) struct DocCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(Collection, RecordId), Entry>,
    clock: u64,
}

impl DocCache {
    /// Takes the cached document of a record if it matches the stored bytes.
    pub fn take(&self, collection: &Collection, id: &RecordId, stored: &[u8]) -> Option<RecordDoc> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = inner.entries.remove(&(collection.clone(), id.clone()))?;
        (entry.saved == stored).then_some(entry.doc)
    }

    /// Keeps a document whose saved bytes were just committed to DOCS.
    pub fn put(&self, collection: Collection, id: RecordId, saved: Vec<u8>, doc: RecordDoc) {
        let evicted = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let mut evicted = None;
            if inner.entries.len() >= CAPACITY {
                // The least recently edited record goes: the one being typed into stays.
                // A scan of CAPACITY stamps costs about a microsecond, only when full.
                let oldest = inner
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.stamp)
                    .map(|(k, _)| k.clone());
                evicted = oldest.and_then(|k| inner.entries.remove(&k));
            }
            inner.clock += 1;
            let stamp = inner.clock;
            inner.entries.insert((collection, id), Entry { saved, doc, stamp });
            evicted
        };
        // Freeing an automerge document takes 10–20 µs: not while other edits wait for the lock.
        drop(evicted);
    }

    /// Forgets everything (the store file was replaced or rewritten wholesale).
    pub fn clear(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).entries.clear();
    }
}
