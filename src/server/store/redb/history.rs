//! The history check of the redb store: every change of a space's log indexed
//! by record, so a pushed change is checked with index lookups, never a
//! document load.

use ::redb::{ReadableTable, WriteTransaction};

use super::{read_u64, split_stored, tables};
use crate::model::Op;
use crate::record::ChangeHeader;
use crate::server::store::{OpRefusal, StoreResult};

type Table<'t, K, V> = ::redb::Table<'t, K, V>;

/// The history tables of one space inside an append's transaction.
pub(super) struct History<'t> {
    pub changes: Table<'t, (u64, &'static str, &'static str, &'static [u8]), u64>,
    pub actor_seqs: Table<'t, tables::ActorSeqKey, &'static [u8]>,
    pub quarantine: Table<'t, (u64, &'static str, &'static str), &'static [u8]>,
    pub space: u64,
}

impl History<'_> {
    pub fn any_quarantined(&self) -> StoreResult<bool> {
        let id = self.space;
        Ok(self.quarantine.range((id, "", "")..(id + 1, "", ""))?.next().is_some())
    }

    pub fn quarantined(&self, collection: &str, record: &str) -> StoreResult<Option<String>> {
        Ok(self
            .quarantine
            .get((self.space, collection, record))?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    /// Whether `header` may join the history of (collection, record): `Ok(Err(_))`
    /// says why not. Index lookups only; no document is loaded.
    pub fn check(&self, collection: &str, record: &str, header: &ChangeHeader) -> StoreResult<Result<(), OpRefusal>> {
        let id = self.space;
        let actor = header.actor.as_slice();
        if let Some(existing) = self.actor_seqs.get((id, collection, record, actor, header.seq))? {
            return Ok(if existing.value().get(..32) == Some(header.hash.as_slice()) {
                // The identical change (a genesis change, or a copy under a new op id).
                Ok(())
            } else {
                Err(OpRefusal::ActorReused {
                    actor: hex::encode(actor),
                    seq: header.seq,
                })
            });
        }
        let last = self
            .actor_seqs
            .range((id, collection, record, actor, 0)..=(id, collection, record, actor, u64::MAX))?
            .next_back()
            .transpose()?
            .map(|(k, v)| (k.value().4, read_u64(v.value().get(32..).unwrap_or_default())));
        let (last_seq, last_max_op) = last.unwrap_or((0, 0));
        if header.seq != last_seq + 1 {
            return Ok(Err(OpRefusal::MissingDeps {
                missing: vec![format!(
                    "changes {}..{} of actor {}",
                    last_seq + 1,
                    header.seq.saturating_sub(1),
                    hex::encode(actor)
                )],
            }));
        }
        if header.start_op <= last_max_op {
            return Ok(Err(OpRefusal::BadHeader(format!(
                "the change's op counters start at {}, within those of its actor's earlier changes (up to {last_max_op})",
                header.start_op
            ))));
        }
        let mut missing = Vec::new();
        for dep in &header.deps {
            match self.changes.get((id, collection, record, dep.as_slice()))? {
                None => missing.push(hex::encode(dep)),
                Some(max_op) if header.start_op <= max_op.value() => {
                    return Ok(Err(OpRefusal::BadHeader(format!(
                        "the change's op counters start at {}, not after those of change {} it depends on (up to {})",
                        header.start_op,
                        hex::encode(dep),
                        max_op.value()
                    ))));
                }
                Some(_) => {}
            }
        }
        if !missing.is_empty() {
            return Ok(Err(OpRefusal::MissingDeps { missing }));
        }
        Ok(Ok(()))
    }

    pub fn record(&mut self, collection: &str, record: &str, header: &ChangeHeader) -> StoreResult<()> {
        let id = self.space;
        self.changes
            .insert((id, collection, record, header.hash.as_slice()), header.max_op)?;
        let mut value = [0u8; 40];
        value[..32].copy_from_slice(&header.hash);
        value[32..].copy_from_slice(&header.max_op.to_le_bytes());
        self.actor_seqs.insert(
            (id, collection, record, header.actor.as_slice(), header.seq),
            value.as_slice(),
        )?;
        Ok(())
    }
}

/// Builds the history tables of a format-1 file from its log. A change that does
/// not decode, or that reuses an (actor, seq) an earlier one holds, is left out:
/// its record will not materialize and is quarantined then.
pub(super) fn index_history(txn: &WriteTransaction) -> StoreResult<()> {
    let log = txn.open_table(tables::LOG)?;
    let mut history = History {
        changes: txn.open_table(tables::CHANGES)?,
        actor_seqs: txn.open_table(tables::ACTOR_SEQS)?,
        quarantine: txn.open_table(tables::QUARANTINE)?,
        space: 0,
    };
    for entry in log.iter()? {
        let (key, value) = entry?;
        let (space, seq) = key.value();
        let Some((_, op)) = split_stored(value.value()) else {
            continue;
        };
        let Ok(op) = Op::decode(op) else { continue };
        let Ok(header) = crate::record::stored_change_header(&op.change) else {
            tracing::warn!(
                space,
                seq,
                "a stored op's change does not decode; left out of the history index"
            );
            continue;
        };
        history.space = space;
        let (collection, record) = (op.collection.as_str(), op.record.as_str());
        let taken = history
            .actor_seqs
            .get((space, collection, record, header.actor.as_slice(), header.seq))?
            .is_some();
        if !taken {
            history.record(collection, record, &header)?;
        }
    }
    Ok(())
}
