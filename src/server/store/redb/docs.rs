//! Materialized documents and their rows: stored together, read back together
//! in (collection, record) order.

use ::redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::{RedbStore, tables};
use crate::model::Seq;
use crate::server::store::{DocsPage, PageLimit, StoreResult, StoredDoc};

/// Stores `docs` and their rows if the space is materialized through `from`
/// (see `ServerStore::store_docs`).
pub(super) fn store_docs_in(
    txn: &WriteTransaction,
    space: &str,
    docs: &[StoredDoc],
    from: Seq,
    through: Seq,
) -> StoreResult<bool> {
    let id = RedbStore::write_space(txn, space)?;
    let mut materialized = txn.open_table(tables::MATERIALIZED)?;
    if materialized.get(id)?.map(|v| v.value()).unwrap_or(0) != from {
        return Ok(false);
    }
    materialized.insert(id, through.0)?;
    let mut table = txn.open_table(tables::DOCS)?;
    let mut rows = txn.open_table(tables::DOC_ROWS)?;
    for doc in docs {
        let key = (id, doc.collection.as_str(), doc.record.as_str());
        table.insert(key, doc.doc.as_slice())?;
        match &doc.row {
            Some(row) => rows.insert(key, row.as_slice())?,
            None => rows.remove(key)?,
        };
    }
    Ok(true)
}

/// A page of documents after `after` (see `ServerStore::docs_page`).
pub(super) fn docs_page_in(
    txn: &ReadTransaction,
    space: &str,
    after: Option<(&str, &str)>,
    limit: PageLimit,
) -> StoreResult<DocsPage> {
    use std::ops::Bound;
    let id = RedbStore::read_space(txn, space)?;
    let docs = txn.open_table(tables::DOCS)?;
    let start = match after {
        Some((collection, record)) => Bound::Excluded((id, collection, record)),
        None => Bound::Included((id, "", "")),
    };
    // Space ids are u64s handed out from 1, so `id + 1` cannot overflow in practice;
    // checked anyway so a corrupt id cannot panic.
    let end = match id.checked_add(1) {
        Some(next) => Bound::Excluded((next, "", "")),
        None => Bound::Unbounded,
    };
    let mut page = DocsPage {
        docs: Vec::with_capacity(limit.count.min(1024)),
        more: false,
    };
    let mut used = 0usize;
    // Rows share the documents' keys: walk both ranges side by side.
    let mut rows = txn
        .open_table(tables::DOC_ROWS)?
        .range::<(u64, &str, &str)>((start, end))?;
    let mut next_row = rows.next().transpose()?;
    for entry in docs.range::<(u64, &str, &str)>((start, end))? {
        let (key, value) = entry?;
        let key = key.value();
        while next_row.as_ref().is_some_and(|(k, _)| k.value() < key) {
            next_row = rows.next().transpose()?;
        }
        let row = match &next_row {
            Some((k, v)) if k.value() == key => Some(v.value().to_vec()),
            _ => None,
        };
        // The row travels with the document: the page's byte bound counts both.
        let size = value.value().len() + row.as_ref().map_or(0, Vec::len);
        if !limit.admits(page.docs.len(), used, size) {
            page.more = true;
            break;
        }
        used += size;
        let (_, collection, record) = key;
        page.docs.push(StoredDoc {
            collection: collection.to_string(),
            record: record.to_string(),
            doc: value.value().to_vec(),
            row,
        });
    }
    Ok(page)
}
