//! The client's sync session: a state machine that says which request to send
//! next and applies each answer to the store. It does no network I/O, so a
//! test can pass its requests to a server in a plain loop.
//!
//! One round: check the package (and the server epoch), push pending ops in
//! bounded batches, bootstrap from a snapshot when the replica has never
//! pulled, then pull pages from `pulled` until caught up; repeat the push if
//! edits arrived meanwhile. Every answer is committed with its watermark in
//! one replica transaction, so a round interrupted anywhere resumes cleanly.

use super::code::ErrorCode;
use super::message::{
    ErrorBody, PackageResponse, PullResponse, PushRequest, PushResponse, RefusedOp, SnapshotResponse, WireOp,
    decode_doc,
};
use super::store::SyncStore;
pub use super::summary::RoundSummary;
use crate::error::{CorruptData, Error, Result};
use crate::model::{Collection, LogPos, OpId, RecordId, Seq};
use crate::replica::{Fence, PulledOp, PulledPage, SnapshotRecord};

mod ahead;
mod batch;
mod loss;
mod quiet;
mod refusals;

use batch::{acks_of, stored_positions, wire_weight};

/// What the session asks the transport to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Package,
    Push(PushRequest),
    /// `at`: what the replica holds at seq `since`, so the server can tell
    /// when its history changed under the same epoch (a restored backup).
    Pull {
        since: Seq,
        limit: usize,
        at: crate::model::HeldAt,
    },
    Snapshot {
        after: Option<String>,
        limit: usize,
    },
    /// A live pull: answered (as a pull page of at most one op) as soon as an
    /// op after `since` is committed, or after `wait` with nothing. The
    /// background task holds one while idle; a session never sends it.
    Watch {
        since: Seq,
        wait: std::time::Duration,
    },
}

/// The server's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Package(PackageResponse),
    Push(PushResponse),
    Pull(PullResponse),
    Snapshot(SnapshotResponse),
}

/// A failed request: the HTTP status (None when the server was not reached) and the error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", .status.map(|s| format!("server answered {s}: ")).unwrap_or_default(), .body.message)]
pub struct RemoteError {
    pub status: Option<u16>,
    pub body: ErrorBody,
}

impl RemoteError {
    /// Errors that retrying cannot fix, only a person can: a token that is
    /// wrong or revoked (401), a client too old for the server. A background
    /// sync stops on them and says so instead of backing off for ever. (A 404
    /// for the space is retried: the grant may simply not be made yet.)
    pub fn needs_person(&self) -> bool {
        matches!(
            (self.status, &self.body.code),
            (Some(401), _) | (Some(400), ErrorCode::ClientTooOld)
        )
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        RemoteError {
            status: None,
            body: ErrorBody {
                code: ErrorCode::Unreachable,
                message: message.into(),
                op_index: None,
            },
        }
    }
}

/// Batch and page sizes of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    pub push_batch: usize,
    /// Approximate bytes of one push body; a batch stops growing beyond it.
    pub max_push_bytes: usize,
    pub pull_page: usize,
    /// Documents per snapshot page. Each page is one transaction on the replica,
    /// so the default is the server's default maximum: the fewest round trips
    /// and commits per bootstrap.
    pub snapshot_page: usize,
    /// Push/pull passes per round before it stops chasing concurrent edits.
    pub max_passes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            push_batch: 500,
            max_push_bytes: 4 * 1024 * 1024,
            pull_page: 1000,
            snapshot_page: 2000,
            max_passes: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Package,
    /// After a server reset: push every op of the log (the position is kept in the store).
    Repush,
    Push,
    Snapshot,
    Pull,
    Done,
}

#[derive(Debug, Clone)]
enum InFlight {
    None,
    Push {
        positions: Vec<LogPos>,
        ids: Vec<OpId>,
    },
    Repush {
        positions: Vec<LogPos>,
        ids: Vec<OpId>,
        local: Vec<bool>,
        last: LogPos,
        /// Where the re-push stands inside a snapshot's entry once this batch is acknowledged.
        within: Option<(LogPos, usize)>,
    },
    Snapshot {
        after: Option<String>,
    },
}

/// One sync round's state.
pub struct Session {
    config: SessionConfig,
    phase: Phase,
    in_flight: InFlight,
    passes: usize,
    summary: RoundSummary,
    /// Taken at the first request: answers are only applied to the same store generation.
    fence: Option<Fence>,
    /// Ops per push; halved when the server finds a batch too large.
    batch: usize,
    /// Positions of other replicas' ops the server refused during a re-push (their authors re-push them).
    skip: std::collections::HashSet<LogPos>,
    /// The re-push stopped at an own op whose dependencies the server lacks:
    /// this round only pulls; the next one re-pushes from that op.
    repush_waits: bool,
    /// A push met missing dependencies once this round (see `on_push`).
    deps_checked: bool,
    /// The server's head in its package answer, before this round pushed anything.
    head_before_push: Seq,
    /// A snapshot's entry gives many ops at one log position, more than one
    /// batch may carry: `(position, ops of it already re-pushed)`.
    repush_within: Option<(LogPos, usize)>,
    /// Whether this round checked that its highest acknowledged op is still
    /// at its seq (see the push phase); `verifying` while that check is asked.
    acked_checked: bool,
    verifying: bool,
    /// Where this round's re-push began (an owed one resumes where the last stopped).
    repush_first: Option<LogPos>,
    /// Whether this round began with its pull (see `quiet.rs`): None until decided.
    quiet: Option<bool>,
    /// The first answer of a quiet round is still to come.
    quiet_unchecked: bool,
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        let config = SessionConfig {
            push_batch: config.push_batch.max(1),
            ..config
        };
        Session {
            config,
            phase: Phase::Package,
            in_flight: InFlight::None,
            passes: 0,
            summary: RoundSummary::default(),
            fence: None,
            batch: config.push_batch.max(1),
            skip: std::collections::HashSet::new(),
            repush_waits: false,
            deps_checked: false,
            head_before_push: Seq::ZERO,
            repush_within: None,
            acked_checked: false,
            verifying: false,
            repush_first: None,
            quiet: None,
            quiet_unchecked: false,
        }
    }

    pub fn summary(&self) -> &RoundSummary {
        &self.summary
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The next request to send, or None when the round is complete.
    pub fn next_request(&mut self, store: &dyn SyncStore) -> Result<Option<Request>> {
        match &self.fence {
            None => self.fence = Some(store.fence()?),
            Some(fence) => store.check_fence(fence)?,
        }
        loop {
            match &self.phase {
                Phase::Done => return Ok(None),
                Phase::Package => {
                    if let Some(pull) = self.quiet_start(store)? {
                        return Ok(Some(pull));
                    }
                    return Ok(Some(Request::Package));
                }
                Phase::Repush => {
                    if let Some(check) = self.verify_acked(store)? {
                        return Ok(Some(check));
                    }
                    let Some(from) = store.repush_from()? else {
                        self.phase = Phase::Push;
                        continue;
                    };
                    self.repush_first.get_or_insert(from);
                    let (entries, last) = store.repush_batch(from, self.batch)?;
                    let Some(last) = last else {
                        store.set_repush_from(None)?;
                        self.phase = Phase::Push;
                        continue;
                    };
                    let mut ops = Vec::new();
                    let mut positions = Vec::new();
                    let mut local = Vec::new();
                    let mut bytes = 0;
                    let mut scanned = last;
                    let mut within = None;
                    let (mut at, mut nth) = (LogPos::ZERO, 0);
                    for (pos, op, is_local) in entries {
                        (at, nth) = if pos == at { (at, nth + 1) } else { (pos, 0) };
                        let done = self.repush_within.filter(|&(p, _)| p == pos).map_or(0, |(_, n)| n);
                        if self.skip.contains(&pos) || nth < done {
                            continue;
                        }
                        bytes += wire_weight(&op);
                        if !ops.is_empty() && (bytes > self.config.max_push_bytes || ops.len() >= self.batch) {
                            scanned = pos - 1;
                            if nth > 0 {
                                within = Some((pos, nth));
                            }
                            break;
                        }
                        local.push(is_local);
                        ops.push(WireOp::from_op(&op));
                        positions.push(pos);
                    }
                    if ops.is_empty() {
                        store.set_repush_from(Some(scanned + 1))?;
                        continue;
                    }
                    self.in_flight = InFlight::Repush {
                        positions,
                        ids: ops.iter().map(|o| o.id).collect(),
                        local,
                        last: scanned,
                        within,
                    };
                    return Ok(Some(Request::Push(PushRequest { ops })));
                }
                Phase::Push => {
                    if let Some(check) = self.verify_acked(store)? {
                        return Ok(Some(check));
                    }
                    let mut pending = store.pending(self.batch)?;
                    if pending.is_empty() {
                        let pulled = store.watermarks()?.pulled;
                        // A snapshot bootstraps a replica into a space that held
                        // records before this round; the ops it just pushed alone
                        // come back by the pull.
                        self.phase = if pulled == 0 && self.head_before_push > 0 && !self.summary.epoch_changed {
                            Phase::Snapshot
                        } else {
                            Phase::Pull
                        };
                        continue;
                    }
                    let mut bytes = 0;
                    let keep = pending
                        .iter()
                        .position(|p| {
                            bytes += wire_weight(&p.op);
                            bytes > self.config.max_push_bytes
                        })
                        .unwrap_or(pending.len())
                        .max(1);
                    pending.truncate(keep);
                    let ops = pending.iter().map(|p| WireOp::from_op(&p.op)).collect();
                    self.in_flight = InFlight::Push {
                        positions: pending.iter().map(|p| p.pos).collect(),
                        ids: pending.iter().map(|p| p.op.id).collect(),
                    };
                    return Ok(Some(Request::Push(PushRequest { ops })));
                }
                Phase::Snapshot => {
                    let pulled = store.watermarks()?.pulled;
                    let checkpoint = store.snapshot_checkpoint()?;
                    if pulled > 0 && checkpoint.is_none() {
                        // Another process finished the bootstrap.
                        self.phase = Phase::Pull;
                        continue;
                    }
                    let after = checkpoint.and_then(|(_, next)| next);
                    self.in_flight = InFlight::Snapshot { after: after.clone() };
                    return Ok(Some(Request::Snapshot {
                        after,
                        limit: self.config.snapshot_page,
                    }));
                }
                Phase::Pull => {
                    let pulled = store.watermarks()?.pulled;
                    return Ok(Some(Request::Pull {
                        at: if pulled > 0 {
                            store.pulled_at()?
                        } else {
                            Default::default()
                        },
                        since: pulled,
                        limit: self.config.pull_page,
                    }));
                }
            }
        }
    }

    /// Applies the server's answer to the store.
    pub fn handle_response(&mut self, store: &dyn SyncStore, response: Response) -> Result<()> {
        self.check_fence(store)?;
        match response {
            Response::Package(r) => self.on_package(store, r),
            Response::Push(r) => self.on_push(store, r),
            Response::Snapshot(r) => self.on_snapshot(store, r),
            Response::Pull(r) => self.on_pull(store, r),
        }
    }

    fn check_fence(&self, store: &dyn SyncStore) -> Result<()> {
        match &self.fence {
            Some(fence) => store.check_fence(fence),
            None => Err(Error::Sync("an answer arrived before any request".into())),
        }
    }

    fn on_package(&mut self, store: &dyn SyncStore, r: PackageResponse) -> Result<()> {
        // A package that does not check is refused before the epoch moves: a bad answer changes nothing.
        if let Some(p) = &r.package {
            p.check()?;
        }
        self.check_epoch(store, &r.epoch, r.head)?;
        self.summary.head = r.head;
        self.head_before_push = r.head;
        let local = store.package()?.map(|p| p.version).unwrap_or(0);
        if local != r.version || store.package()?.is_some() != r.package.is_some() {
            match &r.package {
                Some(p) => self.summary.rejected_by_package += store.install_package(p)?,
                None => store.set_package(None)?,
            }
        }
        self.summary.package_version = r.version;
        self.phase = if store.repush_from()?.is_some() {
            Phase::Repush
        } else {
            Phase::Push
        };
        Ok(())
    }

    fn on_push(&mut self, store: &dyn SyncStore, r: PushResponse) -> Result<()> {
        self.same_epoch(store, &r.epoch)?;
        if self.server_behind(store, r.head)? {
            return Ok(());
        }
        self.summary.head = self.summary.head.max(r.head);
        match std::mem::replace(&mut self.in_flight, InFlight::None) {
            InFlight::Push { positions, ids } => {
                r.check_fits(positions.len()).map_err(Error::Sync)?;
                // Ops whose dependencies the server lacks: every change a local op
                // builds on came from this replica's earlier pushes, a pull or a
                // snapshot, so either an op refused before it in this batch
                // explains it (that refusal writes the later edits of its record
                // again) or the server lost what it once held. The pull checks
                // the server's history first (a loss it notices turns into a
                // re-push); if it notices none, the loss is behind what was
                // pulled: the round re-pushes anyway. Such ops are refused only
                // if the server still lacks their dependencies after a re-push.
                let missing = r
                    .refused
                    .iter()
                    .filter(|f| f.code == ErrorCode::MissingDeps)
                    .map(|f| f.index)
                    .min()
                    .filter(|_| !(self.deps_checked && self.summary.epoch_changed));
                let upto = missing.unwrap_or(positions.len());
                // Ops after a missing dependency that the server stored anyway stay queued.
                store.confirm(&stored_positions(&positions[upto..], &r.seqs[upto..], None))?;
                let refused: Vec<RefusedOp> = r.refused.iter().filter(|f| f.index < upto).cloned().collect();
                self.on_refused(store, &positions, &[], &refused)?;
                if upto > 0 {
                    store.acknowledge(positions[upto - 1], &acks_of(&r.seqs[..upto], &ids))?;
                }
                self.summary.pushed += r.seqs[..upto].iter().filter(|s| s.is_some()).count() as u64;
                if missing.is_some() && !self.deps_checked {
                    self.deps_checked = true;
                    self.phase = Phase::Pull;
                } else if missing.is_some() {
                    self.start_over(store)?;
                }
            }
            InFlight::Repush {
                positions,
                ids,
                local,
                last,
                within,
            } => {
                r.check_fits(positions.len()).map_err(Error::Sync)?;
                self.summary.repushed += r.seqs.iter().filter(|s| s.is_some()).count() as u64;
                // Own ops the server stored, before any refusal below rewrites their records.
                store.confirm(&stored_positions(&positions, &r.seqs, Some(&local)))?;
                // An own op whose dependencies the server lacks is not refused: the
                // changes it builds on may be only in a snapshot here, and another
                // member re-pushes them. The re-push waits at it for a later round.
                let waiting = r
                    .refused
                    .iter()
                    .filter(|f| f.code == ErrorCode::MissingDeps && local.get(f.index).copied().unwrap_or(false))
                    .map(|f| f.index)
                    .min();
                if waiting.is_some() && self.repush_first.is_some_and(|first| first > 1) {
                    // A re-push that resumed where an earlier round stopped meets
                    // an own op whose dependencies the server lacks: the server
                    // may have lost what the earlier rounds re-pushed. Once per
                    // round, the re-push starts again from the beginning.
                    self.repush_first = Some(LogPos(1));
                    self.repush_within = None;
                    store.set_repush_from(Some(LogPos(1)))?;
                    self.phase = Phase::Repush;
                    return Ok(());
                }
                if let Some(index) = waiting {
                    // Refusals for good take effect wherever they are in the batch:
                    // writing the later edits of a refused op's record again may be
                    // what the waiting op needs.
                    let settled: Vec<RefusedOp> = r
                        .refused
                        .iter()
                        .filter(|f| f.index < index || f.code != ErrorCode::MissingDeps)
                        .cloned()
                        .collect();
                    self.on_refused(store, &positions, &local, &settled)?;
                    let pos = positions[index];
                    store.acknowledge(pos - 1, &acks_of(&r.seqs[..index], &ids))?;
                    store.set_repush_from(Some(pos))?;
                    self.summary.waiting = local[index..].iter().filter(|&&l| l).count() as u64;
                    self.repush_waits = true;
                    self.phase = Phase::Pull;
                    return Ok(());
                }
                self.on_refused(store, &positions, &local, &r.refused)?;
                store.acknowledge(last, &acks_of(&r.seqs, &ids))?;
                store.set_repush_from(Some(last + 1))?;
                self.repush_within = within;
                self.phase = Phase::Repush;
            }
            _ => return Err(Error::Sync("a push answer arrived without a push".into())),
        }
        Ok(())
    }

    fn on_snapshot(&mut self, store: &dyn SyncStore, r: SnapshotResponse) -> Result<()> {
        self.same_epoch(store, &r.epoch)?;
        let mut records = Vec::with_capacity(r.docs.len());
        for d in &r.docs {
            records.push(SnapshotRecord {
                collection: Collection::exact(d.collection.as_str()).map_err(|e| CorruptData::new("snapshot", e))?,
                record: RecordId::exact(d.record.as_str()).map_err(|e| CorruptData::new("snapshot", e))?,
                doc: decode_doc(&d.doc)?,
                // A row that does not read costs only speed: the document is materialized here instead.
                row: d.row.as_ref().and_then(|row| {
                    row.to_row()
                        .map_err(|e| tracing::warn!(record = d.record, "ignoring the snapshot's row: {e}"))
                        .ok()
                        .flatten()
                }),
            });
        }
        let InFlight::Snapshot { after } = std::mem::replace(&mut self.in_flight, InFlight::None) else {
            return Err(Error::Sync(
                "a snapshot answer arrived without a snapshot request".into(),
            ));
        };
        if store.apply_snapshot(
            &records,
            r.as_of,
            r.as_of_op,
            r.as_of_mark,
            after.as_deref(),
            r.next.as_deref(),
        )? {
            self.summary.snapshot_docs += records.len() as u64;
            if r.next.is_none() {
                self.phase = Phase::Pull;
            }
        }
        // Else another process moved the bootstrap on: the next request follows its checkpoint.
        Ok(())
    }

    fn on_pull(&mut self, store: &dyn SyncStore, r: PullResponse) -> Result<()> {
        let quiet_first = std::mem::take(&mut self.quiet_unchecked);
        if quiet_first && !self.quiet_answer_holds(store, &r)? {
            return Ok(());
        }
        self.same_epoch(store, &r.epoch)?;
        if self.server_behind(store, r.head)? {
            return Ok(());
        }
        if std::mem::take(&mut self.verifying) {
            // The acknowledged op is where the server put it: its page is not
            // applied (it starts above what was pulled); the push goes on.
            return Ok(());
        }
        let mut ops = Vec::with_capacity(r.ops.len());
        for pulled in &r.ops {
            let op = pulled
                .op
                .to_op()
                .map_err(|e| CorruptData::new(format!("pulled op seq {}", pulled.seq), e))?;
            ops.push(PulledOp { seq: pulled.seq, op });
        }
        let since = store.watermarks()?.pulled;
        let acks = store.acks(since, r.end)?;
        if !acks.is_empty() {
            let at: std::collections::HashMap<Seq, OpId> = ops.iter().map(|o| (o.seq, o.op.id)).collect();
            if acks
                .iter()
                .any(|(seq, id)| at.get(seq).is_some_and(|found| found != id))
            {
                // The server holds another op where it put one this replica
                // pushed: it was restored from a backup and others pushed
                // since. Re-push, pull again.
                return self.start_over(store);
            }
        }
        // An answer with nothing after `since` changes nothing: no write transaction.
        if !ops.is_empty() || r.end > since {
            let report = store.apply_page(&PulledPage {
                ops,
                end: r.end,
                mark: r.mark,
            })?;
            self.summary.pulled += report.applied as u64;
        }
        self.summary.head = self.summary.head.max(r.head);
        if !r.more {
            self.passes += 1;
            let pending = store.pending_count()?;
            self.phase = if pending > 0 && self.passes < self.config.max_passes && !self.repush_waits {
                Phase::Push
            } else {
                Phase::Done
            };
        }
        if quiet_first {
            self.quiet_package(store, &r)?;
        }
        Ok(())
    }
}
