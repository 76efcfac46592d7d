//! Entries of the change log, their binary layout, and the one way to append them.

use std::ops::Range;

use redb::{ReadableTable, Table, WriteTransaction};

use super::tables::{self, meta};
use super::{pending, read_u64};
use crate::error::{CorruptData, Result};
use crate::model::{Collection, Op, OpId, RecordId, Seq};

/// Appends entries at the end of the change log within one write
/// transaction: the one place that hands out log positions, indexes each op
/// by its id, and keeps the next position and the pending count in step
/// with what it wrote. Nothing else writes new log entries.
pub(crate) struct LogAppend<'t> {
    txn: &'t WriteTransaction,
    log: Table<'t, u64, &'static [u8]>,
    index: Table<'t, u128, u64>,
    first: u64,
    next: u64,
    local: u64,
}

impl<'t> LogAppend<'t> {
    /// Opens the log and its op index (no one else may hold them open until [`LogAppend::finish`]).
    pub fn open(txn: &'t WriteTransaction) -> Result<LogAppend<'t>> {
        let next = txn
            .open_table(tables::META)?
            .get(meta::NEXT_POS)?
            .map_or(1, |v| read_u64(v.value()))
            .max(1);
        Ok(LogAppend {
            txn,
            log: txn.open_table(tables::LOG)?,
            index: txn.open_table(tables::OP_INDEX)?,
            first: next,
            next,
            local: 0,
        })
    }

    /// Writes `entry` at the next position; returns that position.
    pub fn push(&mut self, entry: &LogEntry) -> Result<u64> {
        let op = match entry {
            LogEntry::Local(op) | LogEntry::Pulled(op, _) => Some(op.id),
            LogEntry::Snapshot { .. } => None,
        };
        self.push_encoded(&entry.encode(), op, matches!(entry, LogEntry::Local(_)))
    }

    /// Writes an entry encoded already (a copy of one in the log).
    pub fn push_encoded(&mut self, bytes: &[u8], op: Option<OpId>, local: bool) -> Result<u64> {
        let pos = self.next;
        self.log.insert(pos, bytes)?;
        if let Some(op) = op {
            self.index.insert(op.as_u128(), pos)?;
        }
        self.next += 1;
        self.local += u64::from(local);
        Ok(pos)
    }

    /// Writes the entry of a position [`reserve_local`] reserved in an earlier
    /// transaction (a put recorded as an intent, now made into its change). The
    /// counters moved when the position was reserved.
    pub fn fill(&mut self, pos: u64, entry: &LogEntry) -> Result<()> {
        if pos >= self.first || self.log.get(pos)?.is_some() {
            return Err(CorruptData::new(
                "change log",
                format!("position {pos} was not reserved for an intent, or is written already"),
            )
            .into());
        }
        let op = match entry {
            LogEntry::Local(op) => op.id,
            _ => {
                return Err(crate::error::Error::Internal(
                    "only a local op fills a reserved position".into(),
                ));
            }
        };
        self.log.insert(pos, entry.encode().as_slice())?;
        self.index.insert(op.as_u128(), pos)?;
        Ok(())
    }

    /// The encoded entry at `pos`, if any.
    pub fn get(&self, pos: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.log.get(pos)?.map(|v| v.value().to_vec()))
    }

    /// Closes the append: the next position moves past what was written, and
    /// the local ops written join the pending count. The positions written.
    pub fn finish(self) -> Result<Range<u64>> {
        let LogAppend {
            txn,
            log,
            index,
            first,
            next,
            local,
        } = self;
        drop((log, index));
        // One META handle for both values: an edit is a few table opens in all.
        let mut m = txn.open_table(tables::META)?;
        m.insert(meta::NEXT_POS, next.to_le_bytes().as_slice())?;
        pending::add_in(&mut m, local)?;
        Ok(first..next)
    }
}

/// Reserves the next position for a local op whose entry is written later
/// ([`LogAppend::fill`]): the next position moves past it and the pending count
/// grows, as when an entry is written.
pub(crate) fn reserve_local(txn: &WriteTransaction) -> Result<u64> {
    let mut m = txn.open_table(tables::META)?;
    let pos = m.get(meta::NEXT_POS)?.map_or(1, |v| read_u64(v.value())).max(1);
    m.insert(meta::NEXT_POS, (pos + 1).to_le_bytes().as_slice())?;
    pending::add_in(&mut m, 1)?;
    Ok(pos)
}

/// Writes a record's names as `[collection len u16 LE][collection][id len u16 LE][id]`.
pub(super) fn encode_target(out: &mut Vec<u8>, collection: &Collection, record: &RecordId) {
    for name in [collection.as_str(), record.as_str()] {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
}

/// Reads [`encode_target`]'s form at the start of `bytes`; also returns where it ends.
pub(super) fn decode_target(bytes: &[u8], what: &str) -> Result<(Collection, RecordId, usize), CorruptData> {
    let mut at = 0;
    let mut names = Vec::with_capacity(2);
    for _ in 0..2 {
        let len = bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| CorruptData::new(what, "truncated"))?;
        let name = bytes
            .get(at + 2..at + 2 + len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| CorruptData::new(what, "bad name"))?;
        names.push(name.to_string());
        at += 2 + len;
    }
    let record = RecordId::exact(names.pop().expect("two names")).map_err(|e| CorruptData::new(what, e))?;
    let collection = Collection::exact(names.pop().expect("two names")).map_err(|e| CorruptData::new(what, e))?;
    Ok((collection, record, at))
}

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// An edit made on this replica.
    Local(Op),
    /// An op pulled from the server, with its seq.
    Pulled(Op, Seq),
    /// A compacted document downloaded by a snapshot bootstrap, as of server seq `as_of`.
    Snapshot {
        collection: Collection,
        record: RecordId,
        as_of: Seq,
        doc: Vec<u8>,
    },
}

const LOCAL: u8 = 1;
const REMOTE: u8 = 2;
const SNAPSHOT: u8 = 3;

impl LogEntry {
    /// The first byte of an encoded local op.
    pub(crate) const LOCAL_KIND: u8 = LOCAL;

    /// Layout: `[kind u8][seq u64 LE][payload]`; the payload of an op is
    /// [`Op::encode`], of a snapshot `[coll len u16][coll][id len u16][id][doc…]`.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, seq, op) = match self {
            LogEntry::Local(op) => (LOCAL, Seq::ZERO, op),
            LogEntry::Pulled(op, seq) => (REMOTE, *seq, op),
            LogEntry::Snapshot {
                collection,
                record,
                as_of,
                doc,
            } => return Self::encode_snapshot(collection, record, *as_of, doc),
        };
        let mut out = vec![kind];
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&op.encode());
        out
    }

    /// The encoding of a [`LogEntry::Snapshot`] made from borrowed parts (a
    /// bootstrap writes 100,000s: no copies of their names and documents).
    pub fn encode_snapshot(collection: &Collection, record: &RecordId, as_of: Seq, doc: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + 4 + collection.as_str().len() + record.as_str().len() + doc.len());
        out.push(SNAPSHOT);
        out.extend_from_slice(&as_of.to_le_bytes());
        encode_target(&mut out, collection, record);
        out.extend_from_slice(doc);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<LogEntry, CorruptData> {
        if bytes.len() < 9 {
            return Err(CorruptData::new("log entry", "truncated"));
        }
        let seq = Seq::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
        let rest = &bytes[9..];
        match bytes[0] {
            LOCAL => Ok(LogEntry::Local(Op::decode(rest)?)),
            REMOTE => Ok(LogEntry::Pulled(Op::decode(rest)?, seq)),
            SNAPSHOT => {
                let (collection, record, at) = decode_target(rest, "log entry")?;
                Ok(LogEntry::Snapshot {
                    collection,
                    record,
                    as_of: seq,
                    doc: rest[at..].to_vec(),
                })
            }
            other => Err(CorruptData::new("log entry", format!("unknown kind {other}"))),
        }
    }

    pub fn target(&self) -> (&Collection, &RecordId) {
        match self {
            LogEntry::Local(op) | LogEntry::Pulled(op, _) => (&op.collection, &op.record),
            LogEntry::Snapshot { collection, record, .. } => (collection, record),
        }
    }
}
