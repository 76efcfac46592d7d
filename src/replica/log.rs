//! Entries of the change log and their binary layout.

use crate::error::CorruptData;
use crate::model::{Collection, Op, RecordId, Seq};

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// An edit made on this replica.
    Local(Op),
    /// An op pulled from the server, with its seq.
    Remote(Op, Seq),
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
        let (kind, seq) = match self {
            LogEntry::Local(_) => (LOCAL, 0),
            LogEntry::Remote(_, seq) => (REMOTE, *seq),
            LogEntry::Snapshot { as_of, .. } => (SNAPSHOT, *as_of),
        };
        let mut out = vec![kind];
        out.extend_from_slice(&seq.to_le_bytes());
        match self {
            LogEntry::Local(op) | LogEntry::Remote(op, _) => out.extend_from_slice(&op.encode()),
            LogEntry::Snapshot {
                collection,
                record,
                doc,
                ..
            } => {
                for name in [collection.as_str(), record.as_str()] {
                    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
                    out.extend_from_slice(name.as_bytes());
                }
                out.extend_from_slice(doc);
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<LogEntry, CorruptData> {
        if bytes.len() < 9 {
            return Err(CorruptData::new("log entry", "truncated"));
        }
        let seq = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
        let rest = &bytes[9..];
        match bytes[0] {
            LOCAL => Ok(LogEntry::Local(Op::decode(rest)?)),
            REMOTE => Ok(LogEntry::Remote(Op::decode(rest)?, seq)),
            SNAPSHOT => {
                let mut at = 0;
                let mut names = Vec::new();
                for _ in 0..2 {
                    let len = rest
                        .get(at..at + 2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
                        .ok_or_else(|| CorruptData::new("log entry", "truncated"))?;
                    let name = rest
                        .get(at + 2..at + 2 + len)
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .ok_or_else(|| CorruptData::new("log entry", "bad name"))?;
                    names.push(name.to_string());
                    at += 2 + len;
                }
                let record =
                    RecordId::exact(names.pop().expect("two names")).map_err(|e| CorruptData::new("log entry", e))?;
                let collection =
                    Collection::exact(names.pop().expect("two names")).map_err(|e| CorruptData::new("log entry", e))?;
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
            LogEntry::Local(op) | LogEntry::Remote(op, _) => (&op.collection, &op.record),
            LogEntry::Snapshot { collection, record, .. } => (collection, record),
        }
    }
}
