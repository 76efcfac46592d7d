//! Counting conflicts again after the rules of what counts changed: the
//! CONFLICTED table is written when a record is materialized, so a store written
//! by an older build keeps the old counts until each record is written again.
//! `status` and `sync` report that table, and must agree with `conflicts`.
//!
//! Rules (the META key `conflict_rules`):
//! - 1 (no key): every field with concurrent values, the tombstone left out.
//! - 2: a delete that won over an undelete counts (field `_deleted`); equal
//!   register values and equal texts do not (see `RecordDoc::conflicts`).

use redb::{ReadableTable, Table, WriteTransaction};

use super::read_u64;
use super::tables::{self, meta};
use crate::error::Result;
use crate::model::ActorId;
use crate::record::RecordDoc;

/// The rules this build counts by: those it renders rows by.
pub(crate) const CONFLICT_RULES: u64 = crate::record::ROW_RULES as u64;

/// Brings the CONFLICTED table to [`CONFLICT_RULES`] if the store was counted by
/// older ones: every document is loaded once and its mark rewritten, a one-time
/// cost in proportion to the store (not measured by a bench). A document that
/// does not load keeps its mark: `conflicts` names it, and a store must open
/// even with one bad record.
pub(crate) fn upgrade(txn: &WriteTransaction, m: &mut Table<&str, &[u8]>) -> Result<()> {
    let counted_by = m.get(meta::CONFLICT_RULES)?.map(|v| read_u64(v.value())).unwrap_or(1);
    if counted_by >= CONFLICT_RULES {
        return Ok(());
    }
    let docs = txn.open_table(tables::DOCS)?;
    let tails = txn.open_table(tables::DOC_TAILS)?;
    let mut conflicted = txn.open_table(tables::CONFLICTED)?;
    for entry in docs.iter()? {
        let (k, _) = entry?;
        let key = k.value();
        let Some(bytes) = tables::stored_doc(&docs, &tails, key)? else {
            continue;
        };
        // Read only: the actor new changes would carry does not matter.
        let Ok(doc) = RecordDoc::load_stored(&bytes, ActorId([0; 16])) else {
            continue;
        };
        match doc.row().conflicts {
            0 => conflicted.remove(key)?,
            n => conflicted.insert(key, n)?,
        };
    }
    // Marks of records that have no document at all.
    let mut orphans = Vec::new();
    for entry in conflicted.iter()? {
        let (k, _) = entry?;
        let (c, i) = k.value();
        if docs.get((c, i))?.is_none() {
            orphans.push((c.to_string(), i.to_string()));
        }
    }
    for (c, i) in orphans {
        conflicted.remove((c.as_str(), i.as_str()))?;
    }
    m.insert(meta::CONFLICT_RULES, CONFLICT_RULES.to_le_bytes().as_slice())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tables::{self, meta};
    use super::super::{LogEntry, PulledOp, PulledPage, Replica};
    use crate::model::Seq;

    fn send(from: &Replica, to: &Replica) {
        let ops = from
            .log_entries(crate::model::LogPos(0), usize::MAX)
            .unwrap()
            .into_iter()
            .filter_map(|(_, e)| match e {
                LogEntry::Local(op) | LogEntry::Pulled(op, _) => Some(PulledOp { seq: Seq::ZERO, op }),
                LogEntry::Snapshot { .. } => None,
            })
            .collect();
        to.apply_pulled(&PulledPage {
            ops,
            end: Seq::ZERO,
            mark: None,
        })
        .unwrap();
    }

    fn listed(r: &Replica) -> Vec<(String, Vec<String>)> {
        let records = r.conflicts(None, None).unwrap();
        records
            .into_iter()
            .map(|c| (c.id, c.fields.into_iter().map(|f| f.field).collect()))
            .collect()
    }

    /// A store counted by older rules: c1's equal values marked, c2's lost
    /// undelete and c3's competing counters not, a mark for a record that does
    /// not exist, and a document that does not load. Opening it with this build
    /// counts again, once, and the bad document does not keep the store shut.
    #[test]
    fn a_store_counted_by_older_rules_is_counted_again_once_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let a = Replica::open(&path).unwrap();
        let b = Replica::in_memory().unwrap();
        let package = crate::model::Package::from_json(
            r#"{"version": 1, "collections": {"contacts": {"fields": {"name": "string", "age": "number", "visits": "counter"}}}}"#,
        )
        .unwrap();
        for r in [&a, &b] {
            r.set_package(Some(&package)).unwrap();
            r.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
            r.put("contacts", "c3", json!({"visits": 3})).unwrap();
            r.increment("contacts", "c3", "visits", 1).unwrap();
        }
        a.put("contacts", "c2", json!({"name": "Grace"})).unwrap();
        send(&a, &b);
        b.delete("contacts", "c2").unwrap();
        a.delete("contacts", "c2").unwrap();
        a.put("contacts", "c2", json!({"age": 36})).unwrap();
        send(&a, &b);
        send(&b, &a);
        let expected = vec![
            ("c2".to_string(), vec!["_deleted".to_string()]),
            ("c3".to_string(), vec!["visits".to_string()]),
        ];
        assert_eq!(listed(&a), expected);
        assert_eq!(a.status().unwrap().conflicted, 2);

        // What an older build left behind.
        let old_build = |a: &Replica, rules: bool| {
            let txn = a.write().unwrap();
            {
                let mut conflicted = txn.open_table(tables::CONFLICTED).unwrap();
                conflicted.insert(("contacts", "c1"), 1).unwrap();
                conflicted.insert(("contacts", "gone"), 1).unwrap();
                conflicted.remove(("contacts", "c2")).unwrap();
                conflicted.remove(("contacts", "c3")).unwrap();
                txn.open_table(tables::DOCS)
                    .unwrap()
                    .insert(("contacts", "bad"), b"garbage".as_slice())
                    .unwrap();
                if !rules {
                    txn.open_table(tables::META)
                        .unwrap()
                        .remove(meta::CONFLICT_RULES)
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        };
        old_build(&a, false);
        assert_eq!(listed(&a), [], "nothing right is marked");
        assert_eq!(a.status().unwrap().conflicted, 2, "the stale marks of c1 and gone");
        drop(a);

        let a = Replica::open(&path).unwrap();
        assert_eq!(listed(&a), expected);
        assert_eq!(a.status().unwrap().conflicted, 2);
        let rows = a.view_rows().unwrap();
        // Counted once: a stale mark written now stays (the rules are stored).
        old_build(&a, true);
        drop(a);
        let a = Replica::open(&path).unwrap();
        assert_eq!(a.view_rows().unwrap(), rows, "the view is untouched");
        assert_eq!(listed(&a), [], "not counted again");
    }
}
