//! The `push` target: sequences of pushes against the server core
//! (`Service::push`). The input is a list of choices: honest edits by three
//! actors of three records (their automerge changes, genesis changes first),
//! merges of what the server holds, edits held back and pushed later (so a
//! change can arrive before its dependency), earlier ops sent again as they
//! were or under another op's id, corrupted bytes, a wrong envelope, bad op
//! ids, and documents rewound so that an actor reuses its change numbers.
//!
//! Checked after every push against a model of what the server holds: never a
//! panic; an op id stored before gets its first seq back with identical content
//! and is refused (`op_id_conflict`) with other content; a new op is stored once,
//! at the next seq, only if its change is valid for its envelope and its
//! dependencies are in its record's history; an honest op that meets those
//! conditions is not refused; the head is the number of accepted ops; a pull
//! returns exactly the accepted ops in order. At the end, the materialized
//! records equal a document built from the accepted changes, and none is quarantined.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::json;
use tidemark::model::CollectionSchema;
use tidemark::protocol::ErrorCode;
use tidemark::protocol::message::{PushRequest, PushResponse, WireOp};
use tidemark::record::{self, ChangeHeader, GENESIS_ACTOR, RecordDoc};
use tidemark::server::Limits;
use tidemark::{ActorId, OpId, Package, Seq};

use crate::common::{BASE_TIME_MS, COLLECTION, RECORDS, fields, package};
use crate::server_fixture::{Fixture, SPACE, WRITER, space_state, v4_id};

/// The actors that write honest edits.
pub const ACTORS: [ActorId; 3] = [ActorId([0x1a; 16]), ActorId([0x2b; 16]), ActorId([0x3c; 16])];
const MAX_PUSHES: usize = 12;
const MAX_BATCH: usize = 6;
/// Choices per op kind; see `Script::next_op`.
const KINDS: usize = 14;

/// Reads choices from the input; past its end every choice is 0.
pub struct Choices<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data, at: 0 }
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    pub fn pick(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    pub fn done(&self) -> bool {
        self.at >= self.data.len()
    }
}

/// One choice of a script, as the seed writer spells it (`Script::next_ops` reads it).
/// Actors and records are indexes into ACTORS and RECORDS; an earlier op is an
/// index into the ops made so far (pushed or held back), honest ones only.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// (actor, record, edit kind 0..8 as in `Script::edit`, value)
    Edit(u8, u8, u8, u8),
    /// The actor merges what the server holds of the record.
    Merge(u8, u8),
    /// An edit made but not pushed.
    Hold(u8, u8, u8, u8),
    /// An earlier op sent again as it was.
    Resend(u16),
    /// The content of the second earlier op under the id of the first.
    Swap(u16, u16),
    /// An earlier op's change with a byte flipped (mode 0), cut (1) or appended (2) at/of `at`.
    Corrupt(u16, u8, u8),
    /// An earlier op under another actor (mode 0), record (1) or collection (2).
    Envelope(u16, u8),
    /// Save the actor's document of the record (false) or go back to the saved one (true).
    Rewind(u8, u8, bool),
    /// An honest edit under an op id that is not version 4 or 7.
    BadId(u8, u8, u8, u8),
}

impl Step {
    fn bytes(self) -> Vec<u8> {
        let earlier = |i: u16| i.to_be_bytes().to_vec();
        match self {
            Step::Edit(a, r, kind, value) => vec![a, r, 0, value, kind],
            Step::Merge(a, r) => vec![a, r, 5],
            Step::Hold(a, r, kind, value) => vec![a, r, 6, value, kind],
            Step::Resend(i) => [vec![0, 0, 7], earlier(i)].concat(),
            Step::Swap(i, j) => [vec![0, 0, 9], earlier(i), earlier(j)].concat(),
            Step::Corrupt(i, 1, at) => [vec![0, 0, 10], earlier(i), vec![at, 1]].concat(),
            Step::Corrupt(i, mode, at) => [vec![0, 0, 10], earlier(i), vec![at, mode, 0x55]].concat(),
            Step::Envelope(i, mode) => [vec![0, 0, 11], earlier(i), vec![mode]].concat(),
            Step::Rewind(a, r, back) => vec![a, r, 12, u8::from(!back)],
            Step::BadId(a, r, kind, value) => vec![a, r, 13, value, kind, 0],
        }
    }
}

/// An input of pushes, each a list of steps. A push takes as many ops as its
/// steps that make one (a merge, a held edit or a rewind makes none).
pub fn script_bytes(with_package: bool, pushes: &[&[Step]]) -> Vec<u8> {
    let mut out = vec![u8::from(with_package)];
    for steps in pushes {
        let ops = steps
            .iter()
            .filter(|s| !matches!(s, Step::Merge(..) | Step::Hold(..) | Step::Rewind(..)))
            .count();
        out.push(ops.saturating_sub(1) as u8);
        for step in *steps {
            out.extend(step.bytes());
        }
    }
    out
}

/// One op this script made, and whether it is an honest client's: an actor's
/// own change of the record its envelope names, bytes untouched.
#[derive(Clone)]
struct Made {
    wire: WireOp,
    honest: bool,
}

/// The clients' side: each actor's document of each record.
struct Script {
    package: Option<Package>,
    docs: HashMap<(usize, usize), RecordDoc>,
    /// Saved states of documents an actor can go back to (a restored backup).
    saved: HashMap<(usize, usize), Vec<u8>>,
    made: Vec<Made>,
    next_id: u64,
    clock: u64,
}

/// What the server must hold: the accepted ops, and each record's history.
#[derive(Default)]
struct Model {
    /// In seq order (seq = index + 1).
    log: Vec<WireOp>,
    seq_of: HashMap<OpId, Seq>,
    /// (collection, record) → the change hashes in its history.
    hashes: HashMap<(String, String), HashSet<[u8; 32]>>,
    /// (collection, record, automerge actor) → its latest change number.
    actor_seqs: HashMap<(String, String, Vec<u8>), u64>,
}

impl Script {
    fn new(package: Option<Package>) -> Self {
        Script {
            package,
            docs: HashMap::new(),
            saved: HashMap::new(),
            made: Vec::new(),
            next_id: 100,
            clock: BASE_TIME_MS,
        }
    }

    fn fresh_id(&mut self) -> OpId {
        self.next_id += 1;
        v4_id(self.next_id)
    }

    fn schema(&self) -> Option<&CollectionSchema> {
        self.package
            .as_ref()
            .map(|p| p.collection(COLLECTION).expect("contacts"))
    }

    fn op(&mut self, actor: ActorId, record: usize, change: Vec<u8>) -> WireOp {
        WireOp {
            id: self.fresh_id(),
            actor,
            collection: COLLECTION.into(),
            record: RECORDS[record].into(),
            time_ms: self.clock,
            change: tidemark::protocol::message::encode_bytes(&change),
        }
    }

    /// One honest edit of `record` by actor `a`: its genesis ops first, then its own.
    fn edit(&mut self, c: &mut Choices, a: usize, record: usize) -> Vec<Made> {
        let actor = ACTORS[a];
        let value = c.byte();
        let schema = self.schema().cloned();
        let doc = self.docs.entry((a, record)).or_insert_with(|| RecordDoc::new(actor));
        let field_value = |v: serde_json::Value| fields(v);
        let edited = match c.pick(8) {
            0 => put(doc, &field_value(json!({"name": format!("n{value}")})), schema.as_ref()),
            1 => put(doc, &field_value(json!({"age": value})), schema.as_ref()),
            2 => put(doc, &field_value(json!({"vip": value % 2 == 0})), schema.as_ref()),
            3 => put(doc, &field_value(json!({"tags": [value]})), schema.as_ref()),
            4 => put(doc, &field_value(json!({"name": null, "email": "e"})), schema.as_ref()),
            5 => doc.increment("visits", i64::from(value) - 128).is_ok(),
            6 => doc.splice("note", 0, 0, &format!("{value}")).is_ok(),
            _ => {
                doc.delete();
                true
            }
        };
        if !edited {
            doc.rollback();
        }
        // A genesis change applied before the edit failed stays in the document: send it anyway.
        let genesis = doc.take_genesis();
        self.clock += 1000;
        let change = if edited { doc.commit(self.clock) } else { None };
        let mut out: Vec<Made> = genesis
            .into_iter()
            .map(|g| Made {
                wire: self.op(GENESIS_ACTOR, record, g),
                honest: true,
            })
            .collect();
        let Some(change) = change else {
            return out;
        };
        out.push(Made {
            wire: self.op(actor, record, change),
            honest: true,
        });
        out
    }

    /// The next op(s) to push, or none (a choice that only changes a client).
    fn next_ops(&mut self, c: &mut Choices, model: &Model) -> Vec<Made> {
        let (a, record) = (c.pick(ACTORS.len()), c.pick(RECORDS.len()));
        match c.pick(KINDS) {
            0..=4 => self.edit(c, a, record),
            5 => {
                // The actor merges what the server holds of the record.
                let changes: Vec<_> = model
                    .log
                    .iter()
                    .filter(|w| w.collection == COLLECTION && w.record == RECORDS[record])
                    .filter_map(|w| record::decode_change(&change_bytes(w)).ok())
                    .collect();
                let actor = ACTORS[a];
                let doc = self.docs.entry((a, record)).or_insert_with(|| RecordDoc::new(actor));
                if doc.apply_changes(changes.clone()).is_err() {
                    // The actor's copy went its own way (a rewound document reusing
                    // change numbers the server holds): it starts again from the
                    // server's history, which must always apply.
                    let mut fresh = RecordDoc::new(actor);
                    fresh
                        .apply_changes(changes)
                        .unwrap_or_else(|e| panic!("changes the server accepted do not apply: {e}"));
                    *doc = fresh;
                }
                Vec::new()
            }
            6 => {
                // An edit held back: a later choice can push it.
                let held = self.edit(c, a, record);
                self.made.extend(held);
                Vec::new()
            }
            7 | 8 => self.earlier(c).into_iter().collect(),
            9 => {
                // An earlier op's content under another earlier op's id.
                let (Some(first), Some(mut second)) = (self.earlier(c), self.earlier(c)) else {
                    return Vec::new();
                };
                second.wire.id = first.wire.id;
                second.honest = false;
                vec![second]
            }
            10 => {
                let Some(mut made) = self.earlier(c) else {
                    return Vec::new();
                };
                let mut bytes = change_bytes(&made.wire);
                let at = usize::from(c.byte());
                match c.pick(3) {
                    0 if !bytes.is_empty() => {
                        let i = at % bytes.len();
                        bytes[i] ^= c.byte() | 1;
                    }
                    1 => bytes.truncate(at % (bytes.len() + 1)),
                    _ => bytes.push(c.byte()),
                }
                made.wire.change = tidemark::protocol::message::encode_bytes(&bytes);
                made.wire.id = self.fresh_id();
                made.honest = false;
                vec![made]
            }
            11 => {
                // A wrong envelope: another actor, record or collection.
                let Some(mut made) = self.earlier(c) else {
                    return Vec::new();
                };
                match c.pick(3) {
                    0 => made.wire.actor = ACTORS[(a + 1) % ACTORS.len()],
                    1 => made.wire.record = RECORDS[(record + 1) % RECORDS.len()].into(),
                    _ => made.wire.collection = "accounts".into(),
                }
                made.wire.id = self.fresh_id();
                made.honest = false;
                vec![made]
            }
            12 => {
                // The actor's document goes back to a saved state (or is saved now).
                let actor = ACTORS[a];
                match (c.pick(2), self.saved.get(&(a, record))) {
                    (0, Some(bytes)) => {
                        let doc = RecordDoc::load(bytes, actor)
                            .unwrap_or_else(|e| panic!("a saved document does not load: {e}"));
                        self.docs.insert((a, record), doc);
                    }
                    _ => {
                        let doc = self.docs.entry((a, record)).or_insert_with(|| RecordDoc::new(actor));
                        let bytes = doc.save();
                        self.saved.insert((a, record), bytes);
                    }
                }
                Vec::new()
            }
            _ => {
                // An honest edit under an op id the server refuses (nil, or not version 4 or 7).
                let mut ops = self.edit(c, a, record);
                if let Some(last) = ops.last_mut() {
                    last.wire.id = OpId::from_u128(u128::from(c.byte()) << 64);
                    last.honest = false;
                }
                ops
            }
        }
    }

    fn earlier(&mut self, c: &mut Choices) -> Option<Made> {
        if self.made.is_empty() {
            return None;
        }
        let i = (usize::from(c.byte()) << 8 | usize::from(c.byte())) % self.made.len();
        Some(self.made[i].clone())
    }
}

fn put(doc: &mut RecordDoc, fields: &tidemark::Fields, schema: Option<&CollectionSchema>) -> bool {
    tidemark::record::check_fields(COLLECTION, fields, schema).is_ok() && doc.put(COLLECTION, fields, schema).is_ok()
}

fn change_bytes(wire: &WireOp) -> Vec<u8> {
    wire.to_op().map(|op| op.change).unwrap_or_default()
}

fn record_key(wire: &WireOp) -> (String, String) {
    (wire.collection.clone(), wire.record.clone())
}

impl Model {
    /// Whether the server must take `made` as a new op: an honest change, valid
    /// for its envelope, whose dependencies the record's history holds, and that
    /// is either stored already (a copy) or its actor's next change.
    fn must_accept(&self, made: &Made, package: Option<&Package>) -> bool {
        let wire = &made.wire;
        if !made.honest || self.seq_of.contains_key(&wire.id) {
            return false;
        }
        let Ok(op) = wire.to_op() else { return false };
        let schema = match package {
            Some(p) => match p.collection(&wire.collection) {
                Ok(s) => Some(s),
                Err(_) => return false,
            },
            None => None,
        };
        if record::validate_change(&op.change, op.actor, &wire.collection, schema).is_err() {
            return false;
        }
        let header = record::stored_change_header(&op.change).expect("a valid change has a header");
        let key = record_key(wire);
        let known = self.hashes.get(&key);
        if known.is_some_and(|h| h.contains(&header.hash)) {
            return true;
        }
        header.deps.iter().all(|d| known.is_some_and(|h| h.contains(d))) && header.seq == self.next_seq(&key, &header)
    }

    fn next_seq(&self, key: &(String, String), header: &ChangeHeader) -> u64 {
        let actor_key = (key.0.clone(), key.1.clone(), header.actor.clone());
        self.actor_seqs.get(&actor_key).copied().unwrap_or(0) + 1
    }

    /// Takes a new op the server accepted, checking the server's promises about it.
    fn accept(&mut self, wire: &WireOp, seq: Seq, package: Option<&Package>) {
        let op = wire
            .to_op()
            .unwrap_or_else(|e| panic!("the server accepted an op whose envelope does not convert: {e}"));
        assert!(
            matches!(op.id.0.get_version_num(), 4 | 7),
            "the server accepted op id {}, which is not version 4 or 7",
            op.id
        );
        let schema = package.map(|p| {
            p.collection(&wire.collection)
                .unwrap_or_else(|e| panic!("the server accepted an op of a collection outside the package: {e}"))
        });
        if let Err(e) = record::validate_change(&op.change, op.actor, &wire.collection, schema) {
            panic!("the server accepted an invalid change: {e}");
        }
        let header = record::stored_change_header(&op.change).expect("a valid change has a header");
        let key = record_key(wire);
        let hashes = self.hashes.entry(key.clone()).or_default();
        if !hashes.contains(&header.hash) {
            let missing = header.deps.iter().filter(|d| !hashes.contains(*d)).count();
            assert_eq!(
                missing, 0,
                "the server accepted a change whose dependencies its record lacks"
            );
            let next = self.next_seq(&key, &header);
            assert_eq!(
                header.seq, next,
                "the server accepted change number {} of an actor whose next is {next}",
                header.seq
            );
            self.hashes.get_mut(&key).expect("just made").insert(header.hash);
            self.actor_seqs.insert((key.0, key.1, header.actor), header.seq);
        }
        assert_eq!(
            seq,
            Seq(self.log.len() as u64) + 1,
            "a new op's seq is not the next one"
        );
        self.seq_of.insert(wire.id, seq);
        self.log.push(wire.clone());
    }
}

pub fn check_push(data: &[u8]) {
    let mut c = Choices::new(data);
    let with_package = c.pick(2) == 1;
    let fixture = Fixture::new(with_package, Limits::default());
    let service = &fixture.service;
    let package = with_package.then(package);
    let mut script = Script::new(package.clone());
    let mut model = Model::default();
    for _ in 0..MAX_PUSHES {
        if c.done() {
            break;
        }
        let len = 1 + c.pick(MAX_BATCH);
        let mut batch: Vec<Made> = Vec::new();
        while batch.len() < len && !c.done() {
            let ops = script.next_ops(&mut c, &model);
            script.made.extend(ops.iter().filter(|m| m.honest).cloned());
            batch.extend(ops);
        }
        if batch.is_empty() {
            continue;
        }
        let request = PushRequest {
            ops: batch.iter().map(|m| m.wire.clone()).collect(),
        };
        let answer = service
            .push(WRITER, SPACE, request)
            .unwrap_or_else(|e| panic!("a push of {} ops fails as a whole: {e}", batch.len()));
        check_answer(&batch, &answer, &mut model, package.as_ref());
        let state = space_state(fixture.store(), SPACE);
        assert_eq!(
            state.head,
            Seq(model.log.len() as u64),
            "the store's head is not the number of accepted ops"
        );
        let stored: Vec<(Seq, WireOp)> = state
            .ops
            .iter()
            .map(|(seq, s)| (*seq, WireOp::from_op(&s.op)))
            .collect();
        let expected: Vec<(Seq, WireOp)> = model
            .log
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, w)| (Seq(i as u64) + 1, w))
            .collect();
        assert!(stored == expected, "the stored ops are not the accepted ones, in order");
    }
    let pulled = service
        .pull(WRITER, SPACE, tidemark::Seq(0), usize::MAX, None)
        .unwrap_or_else(|e| panic!("a pull fails: {e}"));
    let pulled_ops: Vec<WireOp> = pulled.ops.iter().map(|p| p.op.clone()).collect();
    assert!(
        pulled_ops == model.log,
        "a pull does not return exactly the accepted ops in order"
    );
    assert!(
        !pulled.more && pulled.head == Seq(model.log.len() as u64),
        "a pull of everything says more remain"
    );
    check_materialized(&fixture, &model);
}

/// Checks one push answer op by op, in batch order, and moves the model on.
fn check_answer(batch: &[Made], answer: &PushResponse, model: &mut Model, package: Option<&Package>) {
    assert_eq!(answer.seqs.len(), batch.len(), "a push answer has a seq slot per op");
    let refused: BTreeMap<usize, &ErrorCode> = answer.refused.iter().map(|r| (r.index, &r.code)).collect();
    assert_eq!(
        refused.len(),
        answer.refused.len(),
        "an op is refused twice in one answer"
    );
    for (index, (made, seq)) in batch.iter().zip(&answer.seqs).enumerate() {
        let wire = &made.wire;
        match (seq, refused.get(&index)) {
            (Some(_), Some(code)) => panic!("op {index} is both accepted and refused ({code})"),
            (None, None) => panic!("op {index} is neither accepted nor refused"),
            _ => {}
        }
        let stored = model.seq_of.get(&wire.id).map(|&s| (s, &model.log[s.0 as usize - 1]));
        match (stored, seq, refused.get(&index)) {
            (Some((first, content)), _, _) if content == wire => assert_eq!(
                *seq,
                Some(first),
                "op {index}, pushed again as it was, does not get its first seq back"
            ),
            // Refused as a conflict, or for being invalid before its id is looked up.
            (Some(_), _, code) => assert!(
                matches!(code, Some(ErrorCode::OpIdConflict | ErrorCode::InvalidOp)),
                "op {index} reuses a stored op id with other content and is answered {seq:?} ({code:?})"
            ),
            (None, Some(seq), _) => model.accept(wire, *seq, package),
            (None, None, Some(code)) => {
                assert!(
                    !model.must_accept(made, package),
                    "honest op {index} ({}/{}) is refused ({code}): {:?}",
                    wire.collection,
                    wire.record,
                    answer.refused.iter().find(|r| r.index == index).map(|r| &r.message)
                );
                assert!(
                    matches!(
                        code,
                        ErrorCode::InvalidOp
                            | ErrorCode::OpTooLarge
                            | ErrorCode::OpIdConflict
                            | ErrorCode::MissingDeps
                            | ErrorCode::ActorReused
                    ),
                    "op {index} is refused with code {code}, which a push answer does not use"
                );
            }
            (None, None, None) => unreachable!("checked above"),
        }
    }
    assert_eq!(
        answer.head,
        Seq(model.log.len() as u64),
        "the answer's head is not the number of accepted ops"
    );
}

/// The server's materialized records equal the accepted changes merged, and none is quarantined.
fn check_materialized(fixture: &Fixture, model: &Model) {
    use tidemark::server::store::ServerStore;
    let service = &fixture.service;
    service
        .materialize(SPACE)
        .unwrap_or_else(|e| panic!("materializing fails: {e}"));
    let quarantined = fixture.store().quarantined(SPACE).expect("quarantined");
    assert!(quarantined.is_empty(), "records are quarantined: {quarantined:?}");
    let mut by_record: BTreeMap<(String, String), Vec<Vec<u8>>> = BTreeMap::new();
    for wire in &model.log {
        by_record.entry(record_key(wire)).or_default().push(change_bytes(wire));
    }
    for ((collection, id), changes) in by_record {
        let mut expected = RecordDoc::new(ActorId([0; 16]));
        let decoded = changes
            .iter()
            .map(|c| record::decode_stored_change(c).expect("an accepted change decodes"))
            .collect();
        expected
            .apply_changes(decoded)
            .unwrap_or_else(|e| panic!("the accepted changes of {collection}/{id} do not apply: {e}"));
        assert!(
            !expected.has_missing_deps(),
            "accepted changes of {collection}/{id} lack a dependency"
        );
        let expected = (!expected.is_deleted() && !expected.is_empty()).then(|| expected.fields());
        let served = service
            .record(WRITER, SPACE, &collection, &id)
            .unwrap_or_else(|e| panic!("reading {collection}/{id} fails: {e}"));
        assert_eq!(
            served, expected,
            "the server's {collection}/{id} is not its accepted changes merged"
        );
    }
}
