//! The history check every store runs before it appends a change: the rules
//! live here once; each store only looks up what a record's history holds
//! (a change by its hash, an actor's latest change), with point lookups and no
//! document load.

use super::{OpRefusal, StoreResult};
use crate::record::ChangeHeader;

/// What a store knows of one record's history.
pub trait RecordHistory {
    /// The sequence number and last op counter of `actor`'s latest change.
    fn actor_last(&self, actor: &[u8]) -> StoreResult<Option<(u64, u64)>>;
    /// The last op counter of the change with `hash`, if the history holds it.
    fn change_max_op(&self, hash: &[u8; 32]) -> StoreResult<Option<u64>>;
}

/// Whether a change that may join a record's history is new to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    New,
    /// The identical change is stored already (a genesis change, or a copy under a new op id).
    Already,
}

/// Whether `header` may join `history`: `Ok(Err(_))` says why not. A new change
/// continues its actor's sequence, uses op counters after those of its actor
/// and of its dependencies, and depends only on changes the history holds.
pub fn check(history: &impl RecordHistory, header: &ChangeHeader) -> StoreResult<Result<Known, OpRefusal>> {
    let actor = header.actor.as_slice();
    let (last_seq, last_max_op) = history.actor_last(actor)?.unwrap_or((0, 0));
    if header.seq <= last_seq {
        // A change's hash covers its actor, seq, deps and ops: the same hash in
        // this record is the identical change.
        return Ok(if history.change_max_op(&header.hash)?.is_some() {
            Ok(Known::Already)
        } else {
            Err(OpRefusal::ActorReused {
                actor: hex::encode(actor),
                seq: header.seq,
            })
        });
    }
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
        match history.change_max_op(dep)? {
            None => missing.push(hex::encode(dep)),
            Some(max_op) if header.start_op <= max_op => {
                return Ok(Err(OpRefusal::BadHeader(format!(
                    "the change's op counters start at {}, not after those of change {} it depends on (up to {max_op})",
                    header.start_op,
                    hex::encode(dep),
                ))));
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        return Ok(Err(OpRefusal::MissingDeps { missing }));
    }
    // An op the change names must be one of the history's: each actor's ops
    // in a record end at its latest change's last counter. (An op named below
    // that counter may still be one that actor never wrote; the history keeps
    // no finer record of which counters are whose.)
    for (named, counter) in &header.named {
        let last = if named.as_slice() == actor {
            Some(last_max_op)
        } else {
            history.actor_last(named)?.map(|(_, max_op)| max_op)
        };
        if last.is_none_or(|max_op| *counter > max_op) {
            return Ok(Err(OpRefusal::BadHeader(format!(
                "it names op {counter} of actor {}, which this record's history does not hold: \
                 a change edits only values its author has seen",
                hex::encode(named)
            ))));
        }
    }
    Ok(Ok(Known::New))
}
