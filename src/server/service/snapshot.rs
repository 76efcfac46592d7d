//! Snapshot pages: a space's materialized documents in (collection, record)
//! order, each with the row the materializer kept beside it.

use super::{Result, Service};
use crate::model::ActorId;
use crate::model::Seq;
use crate::protocol::message::{SnapshotDoc, SnapshotResponse, SnapshotRow, encode_bytes};
use crate::record::{RecordDoc, Row};
use crate::server::error::ServiceError;
use crate::server::store::{DocsPage, PageLimit, ServerStore, StoredDoc};

impl<S: ServerStore> Service<S> {
    /// A page of compacted documents; every op with seq ≤ `as_of` is in them.
    pub fn snapshot(&self, user: &str, space: &str, after: Option<&str>, limit: usize) -> Result<SnapshotResponse> {
        self.role(user, space)?;
        let limit = limit.clamp(1, self.limits.max_snapshot_page);
        self.materializer.catch_up(space)?;
        // Read as_of before the documents: they can only be newer, never older.
        let as_of = self.store.materialized(space)?;
        let after = match after {
            Some(cursor) => Some(cursor.split_once('\n').ok_or_else(|| {
                ServiceError::BadRequest("bad snapshot cursor: pass back the `next` of the previous page".into())
            })?),
            None => None,
        };
        let DocsPage { mut docs, more } = self.store.docs_page(space, after, self.page_limit(limit))?;
        let next = if more {
            docs.last().map(|d| format!("{}\n{}", d.collection, d.record))
        } else {
            None
        };
        let quarantined = self.store.quarantined(space)?;
        if !quarantined.is_empty() {
            docs.retain(|d| !quarantined.contains_key(&(d.collection.clone(), d.record.clone())));
        }
        self.fill_missing_rows(space, &mut docs, as_of)?;
        let as_of_op = match as_of {
            Seq::ZERO => None,
            n => self
                .store
                .read_ops(space, n - 1, PageLimit::count(1))?
                .into_iter()
                .find(|(seq, _)| *seq == n)
                .map(|(_, stored)| stored.op.id),
        };
        let as_of_mark = if as_of > 0 {
            self.store.mark(space, as_of)?
        } else {
            None
        };
        Ok(SnapshotResponse {
            epoch: self.epoch.clone(),
            as_of,
            as_of_op,
            as_of_mark,
            docs: docs
                .into_iter()
                .map(|d| SnapshotDoc {
                    row: d.row.and_then(|bytes| snapshot_row(&bytes, &d.collection, &d.record)),
                    doc: encode_bytes(&d.doc),
                    collection: d.collection,
                    record: d.record,
                })
                .collect(),
            next,
        })
    }
}

impl<S: ServerStore> Service<S> {
    /// Gives the documents of `docs` that have no row of today's rules (stored
    /// by an older build, which kept no rows, or by older rules) their row,
    /// rendered here from the document, and stores it beside the document, so
    /// a server upgraded in place serves rows from its first snapshot on and
    /// renders each only once. The rows are stored only while no
    /// materialization has moved the space past `as_of`: then the documents
    /// read are still the stored ones. A document that does not load keeps
    /// going without a row (its readers fail that record alone).
    fn fill_missing_rows(&self, space: &str, docs: &mut [StoredDoc], as_of: Seq) -> Result<()> {
        let mut filled = Vec::new();
        for d in docs.iter_mut() {
            if d.row
                .as_deref()
                .is_some_and(|bytes| matches!(Row::decode(bytes), Ok(Some(_))))
            {
                continue;
            }
            match RecordDoc::load(&d.doc, ActorId([0; 16])) {
                Ok(doc) => {
                    d.row = Some(doc.row().encode());
                    filled.push(d.clone());
                }
                Err(e) => tracing::warn!(
                    space,
                    collection = d.collection,
                    record = d.record,
                    "a stored document does not load; the snapshot sends it without a row: {e}"
                ),
            }
        }
        if !filled.is_empty() && !self.store.store_docs(space, &filled, as_of, as_of)? {
            tracing::debug!(
                space,
                "rows rendered for a snapshot page were not stored: the space moved on"
            );
        }
        Ok(())
    }
}

/// A stored row in its wire form. A row that does not read is left out (the
/// client then materializes the document itself), never served wrong.
fn snapshot_row(bytes: &[u8], collection: &str, record: &str) -> Option<SnapshotRow> {
    // A row made by an older build's rules is left out too.
    match Row::decode(bytes).and_then(|row| row.map(|row| SnapshotRow::of(&row)).transpose()) {
        Ok(row) => row,
        Err(e) => {
            tracing::warn!(
                collection,
                record,
                "a stored row does not read; the snapshot sends the document alone: {e}"
            );
            None
        }
    }
}
