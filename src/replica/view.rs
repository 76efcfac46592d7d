//! Materialization: a record document → its view row and conflict marker.

use redb::{ReadableTable, Table, WriteTransaction};

use super::tables::{CONFLICTED, DOCS, VIEW};
use crate::error::{Error, Result};
use crate::record::RecordDoc;

/// What a record document materializes to.
pub(crate) struct Materialized {
    /// Canonical JSON of the fields; None when the record is deleted.
    pub row: Option<Vec<u8>>,
    /// Number of fields with concurrent values that differ.
    pub conflicts: u32,
}

/// Renders a document the same way on every replica: serde_json's map keeps keys sorted.
/// Conflicts are counted in the same pass, at no extra cost.
pub(crate) fn materialize(doc: &RecordDoc) -> Materialized {
    let state = doc.state();
    let row = if state.deleted || state.empty {
        None
    } else {
        Some(serde_json::to_vec(&state.fields).expect("JSON values always serialize"))
    };
    Materialized {
        row,
        conflicts: state.conflicted_fields,
    }
}

/// The three tables a materialized record touches, opened once per transaction.
pub(crate) struct ViewTables<'txn> {
    pub docs: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub view: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub conflicted: Table<'txn, (&'static str, &'static str), u32>,
}

impl<'txn> ViewTables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(ViewTables {
            docs: txn.open_table(DOCS).map_err(Error::storage)?,
            view: txn.open_table(VIEW).map_err(Error::storage)?,
            conflicted: txn.open_table(CONFLICTED).map_err(Error::storage)?,
        })
    }

    /// Reads a stored document's bytes.
    pub fn doc_bytes(&self, collection: &str, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .docs
            .get((collection, id))
            .map_err(Error::storage)?
            .map(|v| v.value().to_vec()))
    }

    /// Stores a document and its materialized row.
    pub fn store(&mut self, collection: &str, id: &str, doc: &[u8], m: &Materialized) -> Result<()> {
        self.docs.insert((collection, id), doc).map_err(Error::storage)?;
        match &m.row {
            Some(row) => self
                .view
                .insert((collection, id), row.as_slice())
                .map_err(Error::storage)?,
            None => self.view.remove((collection, id)).map_err(Error::storage)?,
        };
        if m.conflicts > 0 {
            self.conflicted
                .insert((collection, id), m.conflicts)
                .map_err(Error::storage)?;
        } else {
            self.conflicted.remove((collection, id)).map_err(Error::storage)?;
        }
        Ok(())
    }
}
