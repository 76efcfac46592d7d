//! Appending ops: the op-id check, the history check and the log, in one write
//! transaction.

use ::redb::{ReadableTable, WriteTransaction};

use super::history::{History, Known};
use super::{RedbStore, corrupt, encode_stored, split_stored, tables};
use crate::model::Seq;
use crate::server::store::{NewOp, OpRefusal, StoreResult};

/// Appends `ops` to `space` inside `txn` (see `ServerStore::append`).
pub(super) fn append_in(
    txn: &WriteTransaction,
    space: &str,
    ops: &[NewOp],
) -> StoreResult<Vec<Result<Seq, OpRefusal>>> {
    let id = RedbStore::write_space(txn, space)?;
    let mut heads = txn.open_table(tables::HEADS)?;
    let mut log = txn.open_table(tables::LOG)?;
    let mut index = txn.open_table(tables::OP_INDEX)?;
    let mut history = History {
        entries: txn.open_table(tables::HISTORY)?,
        quarantine: txn.open_table(tables::QUARANTINE)?,
        space: id,
    };
    let any_quarantined = history.any_quarantined()?;
    let first_head = heads.get(id)?.map(|v| v.value()).unwrap_or(0);
    let mut head = first_head;
    let mut results = Vec::with_capacity(ops.len());
    let mut value = Vec::new();
    for new in ops {
        let stored = &new.stored;
        let op_start = encode_stored(&mut value, stored)?;
        let op_id = stored.op.id.as_u128();
        // The index also holds this batch's earlier ops: the transaction reads its own writes.
        if let Some(seq) = index.get((id, op_id))?.map(|v| v.value()) {
            let existing = log.get((id, seq))?.ok_or_else(|| {
                corrupt(
                    format!("space {space:?}"),
                    format!("op index points at missing seq {seq}"),
                )
            })?;
            let (_, existing_op) = split_stored(existing.value())
                .ok_or_else(|| corrupt(format!("op at seq {seq} of space {space:?}"), "truncated"))?;
            results.push(if existing_op == &value[op_start..] {
                Ok(Seq(seq))
            } else {
                Err(OpRefusal::OpIdConflict {
                    id: stored.op.id.to_string(),
                })
            });
            continue;
        }
        let (collection, record) = (stored.op.collection.as_str(), stored.op.record.as_str());
        if any_quarantined {
            if let Some(reason) = history.quarantined(collection, record)? {
                results.push(Err(OpRefusal::BadHeader(format!(
                    "record {collection}/{record} is quarantined ({reason}): an operator must repair it first"
                ))));
                continue;
            }
        }
        let known = match history.check(collection, record, &new.header)? {
            Ok(known) => known,
            Err(refusal) => {
                results.push(Err(refusal));
                continue;
            }
        };
        head += 1;
        log.insert((id, head), value.as_slice())?;
        index.insert((id, op_id), head)?;
        if known == Known::New {
            history.record(collection, record, &new.header)?;
        }
        results.push(Ok(Seq(head)));
    }
    if head != first_head {
        heads.insert(id, head)?;
        txn.open_table(tables::MARKS)?
            .insert((id, first_head + 1), crate::server::store::new_mark())?;
    }
    Ok(results)
}
