//! Local ops the server refused for good: the rejected list, the positions
//! discarded from the history, and a person's retry or discard.
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::log::{LogAppend, LogEntry};
use super::tables;
use super::{PendingOp, Replica};
use crate::error::{CorruptData, Result};
use crate::model::LogPos;

/// A local op the server refused for good, kept with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub pos: LogPos,
    pub op_id: String,
    pub collection: String,
    pub record: String,
    /// A stable machine-readable code (`read_only`, `invalid_op`, …).
    pub code: String,
    /// The server's reason, for a person.
    pub reason: String,
    /// What the op did (absent in a rejection stored without it):
    /// [`Replica::resolve_rejected`] with `retry` writes these values again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<crate::record::EditSummary>,
}

impl Replica {
    /// Refuses one local op for good (see [`Replica::refuse`]).
    pub fn reject(&self, pos: LogPos, code: &str, reason: &str) -> Result<u64> {
        self.refuse(&[super::Refusal {
            pos,
            code: code.to_string(),
            reason: reason.to_string(),
        }])
    }

    /// The rejected ops, oldest first.
    pub fn rejected(&self) -> Result<Vec<Rejection>> {
        let txn = self.read()?;
        let table = txn.open_table(tables::REJECTED)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(serde_json::from_slice(v.value()).map_err(|e| CorruptData::new("rejected entry", e))?);
        }
        Ok(out)
    }

    /// Log positions of local ops that left the queue without reaching the
    /// server and without a rejection: written again as a new op (the same
    /// edit on top of what the server holds, or nothing when it changes
    /// nothing there), or superseded by the server's version of the same edit.
    /// Also pulled ops whose change the server no longer holds (another
    /// version won, see `collision`): they are no longer part of the history.
    pub fn discarded(&self) -> Result<Vec<LogPos>> {
        let txn = self.read()?;
        let table = txn.open_table(tables::DISCARDED)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            out.push(LogPos(entry?.0.value()));
        }
        Ok(out)
    }

    /// The ops of the rejected list, oldest first.
    pub fn rejected_ops(&self) -> Result<Vec<PendingOp>> {
        let txn = self.read()?;
        let table = txn.open_table(tables::REJECTED)?;
        let log = txn.open_table(tables::LOG)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, _) = entry?;
            if let Some(bytes) = log.get(k.value())? {
                if let LogEntry::Local(op) = LogEntry::decode(bytes.value())? {
                    out.push(PendingOp {
                        pos: LogPos(k.value()),
                        op,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Writes the values of the rejected ops again as new edits (`retry`: they
    /// are checked against the package as any edit), or forgets them. Either way
    /// they leave the rejected list, in the same transaction. Returns how many.
    /// An op refused by a build before rollback has no values: a retry sends it
    /// again as it was (its change never left the document).
    pub fn resolve_rejected(&self, retry: bool) -> Result<u64> {
        let txn = self.read()?;
        let table = txn.open_table(tables::REJECTED)?;
        let mut entries = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let rejection: Rejection =
                serde_json::from_slice(v.value()).map_err(|e| CorruptData::new("rejected entry", e))?;
            entries.push((k.value(), rejection));
        }
        drop(table);
        drop(txn);
        let edits = if retry {
            entries
                .iter()
                .flat_map(|(_, r)| super::rewrite::retry_edits(r))
                .collect()
        } else {
            Vec::new()
        };
        let handled = entries.len() as u64;
        self.apply_edits_then(edits, |txn| {
            let mut rejected = txn.open_table(tables::REJECTED)?;
            let mut discarded = txn.open_table(tables::DISCARDED)?;
            let mut log = LogAppend::open(txn)?;
            for (old, rejection) in &entries {
                rejected.remove(*old)?;
                discarded.insert(*old, ())?;
                if retry && rejection.values.is_none() {
                    if let Some(bytes) = log.get(*old)? {
                        if let LogEntry::Local(op) = LogEntry::decode(&bytes)? {
                            log.push_encoded(&bytes, Some(op.id), true)?;
                        }
                    }
                }
            }
            log.finish().map(drop)
        })?;
        Ok(handled)
    }
}
