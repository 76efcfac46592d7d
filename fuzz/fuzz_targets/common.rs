//! The checks behind the fuzz targets, shared with `tests/fuzz_corpus.rs`
//! (which includes this file with `#[path]`), so a corpus replay under
//! `cargo test` runs exactly what the fuzzer runs.
//!
//! Only the public tidemark API is used here, plus serde_json.
#![allow(dead_code)]

use std::backtrace::BacktraceStatus;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value as Json, json};
use tidemark::record::{self, RecordDoc};
use tidemark::replica::{Edit, PulledOp, PulledPage};
use tidemark::{ActorId, Collection, Error, Fields, Op, OpId, Package, RecordId, Replica};

/// Separates op payloads inside one `apply_pulled` input.
pub const SEPARATOR: &[u8] = b"-tide-";
/// At most this many payloads are taken from one input (the rest stays in the last one).
pub const MAX_CHUNKS: usize = 8;
/// Writes the base record `contacts/c3` that every fuzz replica starts with.
pub const BASE_ACTOR: ActorId = ActorId([0xa1; 16]);
/// The actor of wrapped payloads that are not a decodable change, and of `record_doc` loads.
pub const PEER_ACTOR: ActorId = ActorId([0xb2; 16]);
pub const BASE_TIME_MS: u64 = 1_790_000_000_000;
/// Wrapped payload `i` edits `contacts/RECORDS[i % 3]`: two local records, one remote.
pub const RECORDS: [&str; 3] = ["c1", "c2", "c3"];
pub const COLLECTION: &str = "contacts";

/// The 37 bytes on which automerge 0.12's loader panics (a known hazard of that version).
pub const DESIGN_HAZARD_HEX: &str = "856f4a83fc030a0a030a0000000123030083fc030a0a030a00000a000000011500030a8500";

pub fn package() -> Package {
    Package::from_json(
        r#"{"version": 1, "collections": {
            "contacts": {"fields": {"name": "string", "email": "string", "age": "number", "vip": "bool",
                                     "born": "datetime", "tags": "json", "note": "text", "visits": "counter"}},
            "accounts": {"fields": {"name": "string"}}
        }}"#,
    )
    .expect("the fuzz package parses")
}

pub fn fields(value: Json) -> Fields {
    value.as_object().expect("a JSON object").clone()
}

/// The change that creates `contacts/c3` as BASE_ACTOR (deterministic bytes, valid with or without the package).
pub fn base_change() -> Vec<u8> {
    let mut doc = RecordDoc::new(BASE_ACTOR);
    doc.put(COLLECTION, &fields(json!({"name": "Grace", "age": 85})), None)
        .expect("base fields are valid");
    doc.commit(BASE_TIME_MS).expect("the base edit changes the document")
}

pub fn base_op() -> Op {
    Op {
        id: OpId::from_u128(1),
        actor: BASE_ACTOR,
        collection: Collection::new(COLLECTION).expect("valid name"),
        record: RecordId::new("c3").expect("valid id"),
        time_ms: BASE_TIME_MS,
        change: base_change(),
    }
}

/// An in-memory replica with two local records (one deleted) and one pulled record.
pub fn fuzz_replica(with_package: bool) -> Replica {
    let r = Replica::in_memory().expect("in-memory replica");
    if with_package {
        r.set_package(Some(&package())).expect("package installs");
    }
    // One transaction: the setup is most of the cost of an input.
    r.apply_edits(vec![
        Edit::put(COLLECTION, "c1", json!({"name": "Ada", "age": 36})).expect("an object"),
        Edit::put(COLLECTION, "c2", json!({"name": "Alan", "vip": true})).expect("an object"),
        Edit::Delete {
            collection: COLLECTION.into(),
            id: "c2".into(),
        },
    ])
    .expect("local edits apply");
    let page = PulledPage {
        ops: vec![PulledOp {
            seq: tidemark::Seq(1),
            op: base_op(),
        }],
        end: tidemark::Seq(1),
        mark: None,
    };
    r.apply_pulled(&page).expect("the base op applies");
    r
}

/// Splits an `apply_pulled` input into at most MAX_CHUNKS payloads.
pub fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < MAX_CHUNKS {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

/// Wraps raw bytes as the change of an otherwise valid op. The envelope's actor
/// is the change's own actor when the bytes decode, so validation can pass.
pub fn wrap(change: &[u8], index: usize) -> Op {
    let actor = record::decode_change(change)
        .ok()
        .and_then(|c| record::change_actor(&c))
        .unwrap_or(PEER_ACTOR);
    Op {
        id: OpId::new(),
        actor,
        collection: Collection::new(COLLECTION).expect("valid name"),
        record: RecordId::new(RECORDS[index % RECORDS.len()]).expect("valid id"),
        time_ms: BASE_TIME_MS,
        change: change.to_vec(),
    }
}

/// An error the library meant as a refusal: anything but an internal error,
/// which says tidemark broke its own rules (a caught panic of a worker, say).
pub fn assert_not_internal(context: &str, e: &Error) {
    if let Error::Internal(_) = e {
        panic!("{context} fails with an internal error: {e}");
    }
}

/// Everything a refused page must leave alone.
#[derive(Debug, PartialEq)]
struct Observed {
    rows: Vec<(String, String, Vec<u8>)>,
    log_len: usize,
    pulled: tidemark::Seq,
}

fn observe(r: &Replica) -> Observed {
    Observed {
        rows: r.view_rows().expect("view_rows"),
        log_len: r
            .log_entries(tidemark::LogPos(0), usize::MAX)
            .expect("log_entries")
            .len(),
        pulled: r.status().expect("status").pulled,
    }
}

/// Applies one page: a refusal writes nothing; an accepted page leaves a view
/// (and conflict list) that a rebuild from the log reproduces exactly.
fn apply_checked(r: &Replica, ops: Vec<Op>, seq: &mut u64) {
    let ops: Vec<PulledOp> = ops
        .into_iter()
        .map(|op| {
            *seq += 1;
            PulledOp {
                seq: tidemark::Seq(*seq),
                op,
            }
        })
        .collect();
    let page = PulledPage {
        ops,
        end: tidemark::Seq(*seq),
        mark: None,
    };
    let before = observe(r);
    match r.apply_pulled(&page) {
        Err(e) => {
            assert_not_internal("apply_pulled", &e);
            let after = observe(r);
            assert!(
                before == after,
                "a refused page ({e}) changed the replica:\nbefore {before:?}\nafter {after:?}"
            );
        }
        Ok(_) => {
            let rows = r.view_rows().expect("view_rows");
            let conflicts = r.conflicts(None, None).expect("conflicts after an accepted page");
            r.rebuild_view()
                .unwrap_or_else(|e| panic!("rebuild_view fails after an accepted page: {e}"));
            assert_eq!(
                r.view_rows().expect("view_rows"),
                rows,
                "the rebuilt view differs from the applied one"
            );
            let rebuilt = r.conflicts(None, None).expect("conflicts after a rebuild");
            assert_eq!(rebuilt, conflicts, "the rebuilt conflicts differ from the applied ones");
        }
    }
}

/// The `apply_pulled` target: every payload as an encoded op and as raw change
/// bytes, together in one page and one page per payload, on a schemaless replica
/// and on one with a package.
pub fn check_apply_pulled(data: &[u8]) {
    let chunks = chunks(data);
    for with_package in [false, true] {
        let r = fuzz_replica(with_package);
        let mut seq = 1;
        let decoded: Vec<Op> = chunks.iter().filter_map(|c| Op::decode(c).ok()).collect();
        if !decoded.is_empty() {
            apply_checked(&r, decoded.clone(), &mut seq);
        }
        // Empty payloads are skipped but still count, so `a-tide--tide--tide-b` sends a and b to c1.
        let payloads: Vec<(usize, &[u8])> = chunks
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, c)| !c.is_empty())
            .collect();
        if payloads.len() > 1 {
            apply_checked(&r, payloads.iter().map(|&(i, c)| wrap(c, i)).collect(), &mut seq);
        }
        // One payload per page, in input order: a change can arrive before its dependency.
        for &(i, c) in &payloads {
            apply_checked(&r, vec![wrap(c, i)], &mut seq);
        }
        // Whatever was accepted, every record still takes a local edit.
        let package = package();
        let mut edits: Vec<Edit> = RECORDS
            .iter()
            .map(|id| (COLLECTION, *id))
            .chain(decoded.iter().map(|op| (op.collection.as_str(), op.record.as_str())))
            .filter(|(c, _)| !with_package || package.collections.contains_key(*c))
            .map(|(c, id)| Edit::put(c, id, json!({"name": "edited after the pages"})).expect("an object"))
            .collect();
        edits.dedup();
        if let Err(e @ (Error::Corrupt(_) | Error::Internal(_))) = r.apply_edits(edits) {
            panic!("a record no longer takes a local edit: {e}");
        }
        let rows = r.view_rows().expect("view_rows");
        r.rebuild_view()
            .unwrap_or_else(|e| panic!("rebuild_view fails after local edits: {e}"));
        assert_eq!(
            r.view_rows().expect("view_rows"),
            rows,
            "the rebuilt view differs after local edits"
        );
    }
}

/// The `record_doc` target: loading, reading and saving a document and
/// decoding or validating a change never panic; a loaded document saves to
/// bytes that load back to the same record.
pub fn check_record_doc(data: &[u8]) {
    check_load(data);
    let _ = record::validate_change(data, PEER_ACTOR, COLLECTION, None);
    let Ok(change) = record::decode_change(data) else {
        return;
    };
    // Anyone can give bytes a valid checksum: a change chunk loads once more
    // with its checksum corrected, so the search gets past that check.
    let mut fixed = data.to_vec();
    fixed[4..8].copy_from_slice(&change.hash()[..4]);
    if fixed != data {
        check_load(&fixed);
    }
    if let Some(actor) = record::change_actor(&change) {
        let _ = record::validate_change(data, actor, COLLECTION, None);
        let package = package();
        let schema = package.collection(COLLECTION).expect("contacts is in the package");
        let _ = record::validate_change(data, actor, COLLECTION, Some(schema));
    }
}

fn check_load(data: &[u8]) {
    if let Ok(mut doc) = RecordDoc::load(data, PEER_ACTOR) {
        let fields = doc.fields();
        let _ = doc.conflicts();
        let deleted = doc.is_deleted();
        let saved = doc.save();
        let again =
            RecordDoc::load(&saved, PEER_ACTOR).unwrap_or_else(|e| panic!("a saved document does not load back: {e}"));
        assert_eq!(again.fields(), fields, "a saved document loads back with other fields");
        assert_eq!(
            again.is_deleted(),
            deleted,
            "a saved document loads back with another tombstone"
        );
        assert_eq!(
            again.state().conflicted_fields as usize,
            again.conflicts().len(),
            "the view's conflict count and the conflict listing disagree"
        );
        let mut gone = again;
        gone.delete();
        assert!(gone.is_deleted(), "a document still reads as live after a delete");
    }
}

/// Whether a check is running (in this process: the fuzzer and the replay child run one at a time).
static IN_CHECK: AtomicBool = AtomicBool::new(false);
/// The panics of the running check, from any thread, oldest first (at most MAX_KEPT).
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// How many panics the running check met, kept or not.
static PANIC_COUNT: AtomicUsize = AtomicUsize::new(0);
const MAX_KEPT: usize = 4;

fn panics() -> std::sync::MutexGuard<'static, Vec<String>> {
    PANICS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Replaces the panic hook: libfuzzer-sys's aborts on every panic, even one
/// that tidemark's panic boundary catches. While [`run`] runs a check, a panic
/// on any thread (a server worker's too) is only recorded (message, location
/// and, with RUST_BACKTRACE=1, the backtrace), and [`run`] fails the check on
/// it afterwards; elsewhere the previous hook runs. A panic that cannot unwind
/// (one in a destructor during unwinding) aborts the process, which no panic
/// boundary stops: the recorded panics are printed first.
pub fn install_panic_recorder() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_CHECK.load(Ordering::SeqCst) {
            return previous(info);
        }
        let backtrace = std::backtrace::Backtrace::capture();
        let thread = std::thread::current();
        let report = match backtrace.status() {
            BacktraceStatus::Captured => format!("thread {:?}: {info}\n{backtrace}", thread.name()),
            _ => format!("thread {:?}: {info}", thread.name()),
        };
        let aborts = report.contains("panic in a destructor during cleanup") || report.contains("cannot unwind");
        PANIC_COUNT.fetch_add(1, Ordering::SeqCst);
        let mut panics = panics();
        if panics.len() == MAX_KEPT {
            panics.remove(0);
        }
        panics.push(report);
        if aborts {
            eprintln!("tidemark fuzz check aborts on a panic that cannot unwind; its latest panics:");
            for (n, report) in panics.iter().enumerate() {
                eprintln!("--- panic {}: {report}", n + 1);
            }
        }
    }));
}

/// Runs a check. Err is the report of a panic that escaped it, or of the panics
/// that happened inside it and were caught: tidemark's panic boundary turns a
/// panic of automerge (or of a worker thread) into an error, which keeps a
/// process alive but is still a bug the search must report. An input that is
/// merely malformed is refused without any panic.
pub fn run(check: impl FnOnce()) -> Result<(), String> {
    panics().clear();
    PANIC_COUNT.store(0, Ordering::SeqCst);
    IN_CHECK.store(true, Ordering::SeqCst);
    let result = catch_unwind(AssertUnwindSafe(check));
    IN_CHECK.store(false, Ordering::SeqCst);
    let count = PANIC_COUNT.load(Ordering::SeqCst);
    let reports = std::mem::take(&mut *panics());
    match result {
        Err(_) => Err(reports
            .last()
            .cloned()
            .unwrap_or_else(|| "a panic without a report".to_string())),
        Ok(()) if count > 0 => Err(format!(
            "{count} panic(s) inside tidemark were caught and turned into errors; the latest:\n{}",
            reports.join("\n---\n")
        )),
        Ok(()) => Ok(()),
    }
}

/// The fuzz target body: a check that fails (a panic, caught or not) is a crash.
pub fn fuzz(check: impl FnOnce()) {
    if let Err(report) = run(check) {
        eprintln!("tidemark fuzz check failed: {report}");
        std::process::abort();
    }
}
