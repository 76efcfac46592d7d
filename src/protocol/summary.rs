//! What one sync round did, counted as it goes and told in one line.

use serde::{Deserialize, Serialize};

use crate::model::Seq;

/// What one round did. Its `Display` is the one-line account a person reads
/// (also kept as `last_sync` in the replica's status).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoundSummary {
    pub pushed: u64,
    pub pulled: u64,
    pub rejected: u64,
    /// Documents received from a snapshot.
    pub snapshot_docs: u64,
    pub head: Seq,
    /// Package version after the round (0 = schemaless).
    pub package_version: u64,
    /// Pending ops that a new package refused.
    pub rejected_by_package: u64,
    /// The server's store was reset or restored: the replica re-pushed its log and re-pulled.
    pub epoch_changed: bool,
    /// Ops re-pushed after an epoch change.
    pub repushed: u64,
    /// Local edits written again as new ops: after a refused op of the same
    /// record, or under a fresh actor when another store shared this one's.
    pub rewritten: u64,
    /// Local ops dropped because the server holds another version of the same
    /// edit, delivered by another copy of this store (it arrives by the pull).
    pub superseded: u64,
    /// After the server lost data: local ops it could not take yet because
    /// changes they build on are not back on it (another member re-pushes
    /// them). They are kept and re-pushed by later rounds.
    pub waiting: u64,
}

impl RoundSummary {
    /// Local ops the server refused for good this round (by the server, or by a new package).
    pub fn refused(&self) -> u64 {
        self.rejected + self.rejected_by_package
    }
}

/// `pushed 1, pulled 2, downloaded 3 record(s) by snapshot, re-pushed 4 after
/// a server reset, refused 0; head 9`: the snapshot, re-push and waiting parts
/// only when the round had any.
impl std::fmt::Display for RoundSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pushed {}, pulled {}", self.pushed, self.pulled)?;
        if self.snapshot_docs > 0 {
            write!(f, ", downloaded {} record(s) by snapshot", self.snapshot_docs)?;
        }
        if self.epoch_changed || self.repushed > 0 {
            write!(f, ", re-pushed {} after a server reset", self.repushed)?;
        }
        if self.waiting > 0 {
            write!(
                f,
                ", {} kept until another member re-pushes what they build on",
                self.waiting
            )?;
        }
        write!(f, ", refused {}; head {}", self.refused(), self.head)
    }
}
