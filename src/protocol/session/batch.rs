//! What a push batch weighs and what its answer acknowledged.

use crate::model::{LogPos, OpId, Seq};

/// The seqs a push answer gave, and their ops. A re-push counts others' ops
/// too: the server said it holds them there, and a replica with no op of its
/// own must still notice when the server loses what it re-pushed.
pub(super) fn acks_of(seqs: &[Option<Seq>], ids: &[OpId]) -> Vec<(Seq, OpId)> {
    seqs.iter()
        .zip(ids)
        .filter_map(|(seq, id)| seq.map(|s| (s, *id)))
        .collect()
}

/// The positions of a batch's own ops (`local`: which are; None: all) that the server gave a seq.
pub(super) fn stored_positions(positions: &[LogPos], seqs: &[Option<Seq>], local: Option<&[bool]>) -> Vec<LogPos> {
    positions
        .iter()
        .zip(seqs)
        .enumerate()
        .filter(|(i, (_, seq))| seq.is_some() && local.is_none_or(|l| l.get(*i).copied().unwrap_or(false)))
        .map(|(_, (pos, _))| *pos)
        .collect()
}

/// Roughly what an op weighs in a JSON push body (base64 plus the envelope).
pub(super) fn wire_weight(op: &crate::model::Op) -> usize {
    op.change.len().div_ceil(3) * 4 + op.collection.as_str().len() + op.record.as_str().len() + 160
}
