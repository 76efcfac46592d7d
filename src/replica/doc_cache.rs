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

use crate::model::{ActorId, Collection, RecordId};
use crate::record::RecordDoc;

/// Edits of batches larger than this (imports) go around the cache: they would
/// only churn it.
pub(crate) const MAX_BATCH: usize = 64;

/// Documents kept at most; a small record document holds about 20 KiB.
const CAPACITY: usize = 512;

/// Estimated memory all cached documents may hold together
/// ([`RecordDoc::memory_estimate`]). A record with a long history (a note typed
/// into for months) holds megabytes in memory while its saved bytes stay small.
const MEMORY_BUDGET: usize = 64 << 20;

struct Entry {
    /// The bytes DOCS held for this record when the document was cached.
    saved: Vec<u8>,
    doc: RecordDoc,
    /// Its estimated memory, counted in `Inner::held`.
    size: usize,
    /// When it was cached (a counter): the oldest entry goes first.
    stamp: u64,
}

pub(crate) struct DocCache {
    inner: Mutex<Inner>,
    budget: usize,
}

impl Default for DocCache {
    fn default() -> Self {
        DocCache::with_budget(MEMORY_BUDGET)
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(Collection, RecordId), Entry>,
    /// Sum of the entries' `size`.
    held: usize,
    clock: u64,
}

impl Inner {
    fn remove(&mut self, key: &(Collection, RecordId)) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.held -= entry.size;
        Some(entry)
    }
}

impl DocCache {
    fn with_budget(budget: usize) -> Self {
        DocCache {
            inner: Mutex::default(),
            budget,
        }
    }

    /// Takes the cached document of a record if it matches the stored bytes and
    /// writes as `actor` (a store can take a fresh actor, in another process too).
    pub fn take(&self, collection: &Collection, id: &RecordId, stored: &[u8], actor: ActorId) -> Option<RecordDoc> {
        let entry = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.remove(&(collection.clone(), id.clone()))?
        };
        // A stale entry is freed here, outside the lock (see `put`).
        (entry.saved == stored && entry.doc.actor() == Some(actor)).then_some(entry.doc)
    }

    /// Whether a document of the record is kept, whatever its saved bytes.
    pub fn has(&self, collection: &Collection, id: &RecordId) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.entries.contains_key(&(collection.clone(), id.clone()))
    }

    /// Whether a document of the record is kept whose saved bytes are `stored`:
    /// stored bytes this process has loaded (or made), so they load.
    pub fn holds(&self, collection: &Collection, id: &RecordId, stored: &[u8]) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .entries
            .get(&(collection.clone(), id.clone()))
            .is_some_and(|entry| entry.saved == stored)
    }

    /// Keeps a document whose saved bytes were just committed to DOCS. Older entries
    /// go until the budget holds it; a document larger than the whole budget stays
    /// alone (it is the one being edited), so memory stays within the budget plus one
    /// document, plus the evicted ones that wait to be freed (at most
    /// [`FREE_BATCH`] documents or [`FREE_BATCH_BYTES`] bytes, with the last one
    /// added).
    pub fn put(&self, collection: Collection, id: RecordId, saved: Vec<u8>, doc: RecordDoc) {
        let size = doc.memory_estimate().saturating_add(saved.len());
        let mut evicted = Vec::new();
        {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let key = (collection, id);
            evicted.extend(inner.remove(&key));
            while !inner.entries.is_empty() && (inner.entries.len() >= CAPACITY || inner.held + size > self.budget) {
                // The least recently edited record goes: the one being typed into stays.
                // A scan of CAPACITY stamps costs about a microsecond.
                let oldest = inner
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.stamp)
                    .map(|(k, _)| k.clone());
                evicted.extend(oldest.and_then(|k| inner.remove(&k)));
            }
            inner.clock += 1;
            let stamp = inner.clock;
            inner.held += size;
            inner.entries.insert(
                key,
                Entry {
                    saved,
                    doc,
                    size,
                    stamp,
                },
            );
        }
        // Freeing an automerge document takes 10-20 µs (`cargo bench --bench doc_storage`):
        // not while other edits wait for the lock, nor before the edit returns.
        if !evicted.is_empty() {
            drop_elsewhere(evicted);
        }
    }

    /// Forgets everything (the store file was replaced or rewritten wholesale).
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.entries.clear();
        inner.held = 0;
    }
}

/// Evicted documents wait for the freeing thread until there are this many,
/// or this many bytes of them: waking a thread costs a system call (about
/// 10 µs here), as much as freeing one small document.
const FREE_BATCH: usize = 32;
const FREE_BATCH_BYTES: usize = 4 << 20;

/// Evicted documents, freed by a thread of their own (one per process).
struct Freer {
    pile: Mutex<(Vec<Entry>, usize)>,
    full: std::sync::Condvar,
}

/// Frees `garbage` on the freeing thread, started on first use, or here when
/// that thread cannot be started.
fn drop_elsewhere(garbage: Vec<Entry>) {
    static FREER: std::sync::OnceLock<Option<&'static Freer>> = std::sync::OnceLock::new();
    let freer = FREER.get_or_init(|| {
        let freer: &'static Freer = Box::leak(Box::new(Freer {
            pile: Mutex::default(),
            full: std::sync::Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("tidemark-doc-free".into())
            .spawn(move || {
                loop {
                    let batch = {
                        let mut pile = freer.pile.lock().unwrap_or_else(|p| p.into_inner());
                        while pile.0.len() < FREE_BATCH && pile.1 < FREE_BATCH_BYTES {
                            pile = freer.full.wait(pile).unwrap_or_else(|p| p.into_inner());
                        }
                        std::mem::take(&mut *pile)
                    };
                    drop(batch);
                }
            })
            .ok()
            .map(|_| freer)
    });
    let Some(freer) = freer else { return };
    let mut pile = freer.pile.lock().unwrap_or_else(|p| p.into_inner());
    pile.1 += garbage.iter().map(|e| e.size).sum::<usize>();
    pile.0.extend(garbage);
    if pile.0.len() >= FREE_BATCH || pile.1 >= FREE_BATCH_BYTES {
        freer.full.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A record document after `edits` committed puts, and its saved bytes.
    fn doc(edits: usize) -> (RecordDoc, Vec<u8>) {
        let mut doc = RecordDoc::new(ActorId([7; 16]));
        for n in 0..edits.max(1) {
            let fields = json!({"name": "Ada", "n": n}).as_object().unwrap().clone();
            doc.put("contacts", &fields, None).unwrap();
            doc.commit(n as u64);
        }
        let saved = doc.save();
        (doc, saved)
    }

    fn key(n: usize) -> (Collection, RecordId) {
        (
            Collection::new("contacts").unwrap(),
            RecordId::new(format!("c{n}")).unwrap(),
        )
    }

    fn put(cache: &DocCache, n: usize, edits: usize) -> Vec<u8> {
        let (doc, saved) = doc(edits);
        let (c, id) = key(n);
        cache.put(c, id, saved.clone(), doc);
        saved
    }

    fn held(cache: &DocCache) -> (usize, usize) {
        let inner = cache.inner.lock().unwrap();
        assert_eq!(inner.held, inner.entries.values().map(|e| e.size).sum::<usize>());
        (inner.entries.len(), inner.held)
    }

    #[test]
    fn the_oldest_documents_go_when_the_budget_is_full() {
        let budget = 100 << 10;
        let cache = DocCache::with_budget(budget);
        let saved: Vec<Vec<u8>> = (0..20).map(|n| put(&cache, n, 1)).collect();
        let (kept, bytes) = held(&cache);
        assert!(bytes <= budget, "{bytes} bytes held over a budget of {budget}");
        assert!((3..20).contains(&kept), "{kept} documents kept");
        let (c, id) = key(19);
        assert!(
            cache.take(&c, &id, &saved[19], ActorId([7; 16])).is_some(),
            "the newest document stays"
        );
        let (c, id) = key(0);
        assert!(
            cache.take(&c, &id, &saved[0], ActorId([7; 16])).is_none(),
            "the oldest document went"
        );
    }

    #[test]
    fn a_document_larger_than_the_budget_is_kept_alone_until_the_next_edit() {
        let cache = DocCache::with_budget(100 << 10);
        for n in 0..3 {
            put(&cache, n, 1);
        }
        let big = put(&cache, 3, 1000);
        let (kept, bytes) = held(&cache);
        assert_eq!(kept, 1);
        assert!(bytes > 100 << 10, "the big document is estimated at {bytes} bytes");
        put(&cache, 4, 1);
        assert_eq!(held(&cache).0, 1, "the big document made room for the next one");
        let (c, id) = key(3);
        assert!(cache.take(&c, &id, &big, ActorId([7; 16])).is_none());
    }

    #[test]
    fn caching_a_record_again_replaces_its_entry() {
        let cache = DocCache::default();
        put(&cache, 1, 1);
        let saved = put(&cache, 1, 2);
        let (kept, bytes) = held(&cache);
        assert_eq!(kept, 1);
        let (c, id) = key(1);
        assert!(cache.take(&c, &id, &saved, ActorId([7; 16])).is_some());
        assert_eq!(held(&cache), (0, 0), "{bytes} bytes were held");
        put(&cache, 2, 1);
        cache.clear();
        assert_eq!(held(&cache), (0, 0));
    }
}
