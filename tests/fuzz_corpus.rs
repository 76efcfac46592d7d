//! The fuzz corpora as a regression net: every file under `fuzz/corpus/<target>/`
//! and `fuzz/artifacts/<target>/` goes through the same checks as the fuzz
//! targets (shared in `fuzz/fuzz_targets/common.rs`). This is not a search:
//! `.ci/fuzz-smoke.sh` runs the real fuzzers.
//!
//! Each input runs in a child process (this test binary again, with a memory
//! limit and a time limit): an allocation failure or a stack overflow aborts
//! the process, which no panic boundary catches, and must fail one input, not
//! the whole run.
//!
//! The seed files are written by `cargo test --test fuzz_corpus -- --ignored`.

// The check modules name each other as the fuzz targets do (`crate::common`, ...).
#[path = "../fuzz/fuzz_targets/common.rs"]
mod common;
#[cfg(feature = "server")]
#[path = "../fuzz/fuzz_targets/checks/push.rs"]
mod push_check;
#[cfg(feature = "server")]
#[path = "../fuzz/fuzz_targets/checks/server_fixture.rs"]
mod server_fixture;
#[path = "fuzz_corpus/server_seeds.rs"]
mod server_seeds;
#[cfg(feature = "server")]
#[path = "../fuzz/fuzz_targets/checks/simulation.rs"]
mod simulation_check;
#[path = "../fuzz/fuzz_targets/checks/wire_client.rs"]
mod wire_client_check;
#[cfg(feature = "server")]
#[path = "../fuzz/fuzz_targets/checks/wire_server.rs"]
mod wire_server_check;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tidemark::record::{GENESIS_ACTOR, RecordDoc};
use tidemark::{ActorId, Collection, Op, OpId, RecordId};

use common::{BASE_ACTOR, BASE_TIME_MS, COLLECTION, SEPARATOR, base_change, fields, package};

/// The check a fuzz target runs on one input.
type Check = fn(&[u8]);
/// Every fuzz target of fuzz/Cargo.toml, each with its check.
const TARGETS: &[(&str, Check)] = &[
    ("apply_pulled", common::check_apply_pulled),
    ("record_doc", common::check_record_doc),
    ("wire_client", wire_client_check::check_wire_client),
    #[cfg(feature = "server")]
    ("wire_server", wire_server_check::check_wire_server),
    #[cfg(feature = "server")]
    ("push", push_check::check_push),
    #[cfg(feature = "server")]
    ("simulation", simulation_check::check_simulation),
];
/// The targets whose corpus keeps the known panicking input.
const HAZARD_TARGETS: [&str; 2] = ["apply_pulled", "record_doc"];
const HAZARD_FILE: &str = "design-hazard-37-bytes";
/// Names the input (and its target) a child process replays.
const INPUT_ENV: &str = "TIDEMARK_FUZZ_REPLAY_INPUT";
const TARGET_ENV: &str = "TIDEMARK_FUZZ_REPLAY_TARGET";
const CHILD_TEST: &str = "one_input_named_by_the_environment_passes_its_check";
const MEMORY_LIMIT_BYTES: u64 = 4 << 30;
const TIME_LIMIT: Duration = Duration::from_secs(120);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every input of a target, corpus first, then any crash artifacts, in name order.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .map(|e| e.expect("readable directory entry").path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// Replays one input in a child process; Err is what went wrong.
fn replay_in_child(target: &str, file: &Path) -> Result<(), String> {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(INPUT_ENV, file)
        .env(TARGET_ENV, target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test binary starts");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout_reader = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let reader = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("child status") {
            break Some(status);
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().unwrap_or_default();
    let stdout = stdout_reader.join().unwrap_or_default();
    match status {
        // A filter that matched no test also exits with success: make sure the input ran.
        Some(status) if status.success() && stdout.contains("1 passed") => Ok(()),
        Some(status) if status.success() => Err(format!("the child ran no replay test:\n{}", stdout.trim_end())),
        Some(status) => Err(format!("{status}\n{}", stderr.trim_end())),
        None => Err(format!("no result within {TIME_LIMIT:?}\n{}", stderr.trim_end())),
    }
}

fn replay(target: &str) {
    let files = inputs(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target}/ has no inputs");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|file| {
            replay_in_child(target, file)
                .err()
                .map(|e| format!("--- {}: {e}", file.display()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} {target} inputs fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// Caps this process's address space, so an input that allocates without bound aborts quickly.
fn limit_memory() {
    #[cfg(unix)]
    {
        let limit = libc::rlimit {
            rlim_cur: MEMORY_LIMIT_BYTES as libc::rlim_t,
            rlim_max: MEMORY_LIMIT_BYTES as libc::rlim_t,
        };
        // SAFETY: setrlimit reads a valid rlimit and changes only this process.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
        assert_eq!(rc, 0, "setrlimit(RLIMIT_AS) fails");
    }
}

#[test]
#[ignore = "the child half of the replay tests: replays the input they name, in its own process"]
fn one_input_named_by_the_environment_passes_its_check() {
    let (Some(file), Ok(target)) = (std::env::var_os(INPUT_ENV), std::env::var(TARGET_ENV)) else {
        return;
    };
    let data = std::fs::read(&file).expect("readable input");
    let Some(&(_, check)) = TARGETS.iter().find(|(name, _)| *name == target) else {
        panic!("unknown fuzz target {target}");
    };
    limit_memory();
    common::install_panic_recorder();
    if let Err(report) = common::run(|| check(&data)) {
        panic!("{report}");
    }
}

fn hazard_bytes() -> Vec<u8> {
    hex::decode(common::DESIGN_HAZARD_HEX).expect("valid hex")
}

#[test]
fn every_apply_pulled_input_is_refused_cleanly_or_applied_as_a_rebuild_would() {
    replay("apply_pulled");
}

#[test]
fn every_record_doc_input_loads_reads_and_saves_without_a_panic() {
    replay("record_doc");
}

#[test]
fn every_wire_client_input_is_refused_without_a_change_or_taken_as_a_rebuild_would() {
    replay("wire_client");
}

#[cfg(feature = "server")]
#[test]
fn every_wire_server_input_is_answered_below_500_and_a_refusal_changes_nothing() {
    replay("wire_server");
}

#[cfg(feature = "server")]
#[test]
fn every_push_input_stores_exactly_the_accepted_ops_once_in_order() {
    replay("push");
}

/// The `[[bin]]` names of fuzz/Cargo.toml.
fn fuzz_targets_of_the_manifest() -> Vec<String> {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut names: Vec<String> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|bin| {
            bin.lines()
                .find_map(|line| line.trim().strip_prefix("name = "))
                .map(|name| name.trim_matches('"').to_string())
        })
        .collect();
    names.sort();
    names
}

#[cfg(feature = "server")]
#[test]
fn every_fuzz_target_has_its_corpus_replayed() {
    let mut replayed: Vec<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
    replayed.sort();
    assert_eq!(fuzz_targets_of_the_manifest(), replayed);
}

const CAUGHT_PANIC_CHILD: &str = "a_check_that_caught_panics_fails_child";
const CAUGHT_PANIC_ENV: &str = "TIDEMARK_FUZZ_CAUGHT_PANIC_CHILD";

#[test]
#[ignore = "the child half of a_panic_caught_inside_a_check_fails_it"]
fn a_check_that_caught_panics_fails_child() {
    if std::env::var_os(CAUGHT_PANIC_ENV).is_none() {
        return;
    }
    common::install_panic_recorder();
    assert_eq!(common::run(|| ()), Ok(()), "a check without a panic passes");
    let caught = common::run(|| {
        let _ = std::panic::catch_unwind(|| panic!("caught on purpose"));
    });
    assert!(
        caught.as_ref().is_err_and(|e| e.contains("caught on purpose")),
        "a panic caught inside the check does not fail it: {caught:?}"
    );
    let on_a_thread = common::run(|| {
        let _ = std::thread::spawn(|| panic!("a worker panics")).join();
    });
    assert!(
        on_a_thread.as_ref().is_err_and(|e| e.contains("a worker panics")),
        "a panic of another thread does not fail the check: {on_a_thread:?}"
    );
    let escaped = common::run(|| panic!("escapes"));
    assert!(escaped.as_ref().is_err_and(|e| e.contains("escapes")), "{escaped:?}");
    assert_eq!(common::run(|| ()), Ok(()), "a failed check leaves nothing behind");
}

/// A panic that tidemark's panic boundary catches is a bug the search reports,
/// not an expected error (runs in a child: the panic hook is the process's).
#[test]
fn a_panic_caught_inside_a_check_fails_it() {
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            CAUGHT_PANIC_CHILD,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CAUGHT_PANIC_ENV, "1")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_design_hazard_input_is_kept_in_both_corpora() {
    for target in HAZARD_TARGETS {
        let path = fuzz_dir().join("corpus").join(target).join(HAZARD_FILE);
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            data,
            hazard_bytes(),
            "{} is not the known panicking input",
            path.display()
        );
    }
}

#[test]
fn the_design_hazard_input_is_a_typed_error_not_a_panic() {
    let data = hazard_bytes();
    assert!(RecordDoc::load(&data, BASE_ACTOR).is_err());
    assert!(tidemark::record::decode_change(&data).is_err());
}

// ---- seed generation -------------------------------------------------------

const PEER: ActorId = ActorId([0xc3; 16]);
const OTHER: ActorId = ActorId([0xd4; 16]);

fn op(id: u128, actor: ActorId, collection: &str, record: &str, change: Vec<u8>) -> Op {
    Op {
        id: OpId::from_u128(id),
        actor,
        collection: Collection::new(collection).unwrap(),
        record: RecordId::new(record).unwrap(),
        time_ms: BASE_TIME_MS,
        change,
    }
}

/// Payloads joined by the separator; `None` is an empty payload, which only moves the index on.
fn payloads(parts: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(SEPARATOR);
        }
        out.extend_from_slice(part.unwrap_or_default());
    }
    out
}

/// A new document by `actor` with `value`; returns (doc, change).
fn new_record(actor: ActorId, value: serde_json::Value, with_schema: bool) -> (RecordDoc, Vec<u8>) {
    let package = package();
    let schema = with_schema.then(|| package.collection(COLLECTION).unwrap());
    // Created as the replica creates records: one change, with no genesis change
    // for its text field (a put into an existing document would apply one).
    let (mut doc, _) = RecordDoc::create(actor, COLLECTION, &fields(value), schema)
        .unwrap()
        .unwrap();
    let change = doc.commit(BASE_TIME_MS).unwrap();
    assert!(doc.take_genesis().is_empty());
    (doc, change)
}

/// `actor`'s copy of the base record `contacts/c3`.
fn base_copy(actor: ActorId) -> RecordDoc {
    RecordDoc::load(&base_change(), actor).unwrap()
}

fn edit(doc: &mut RecordDoc, value: serde_json::Value) -> Vec<u8> {
    doc.put(COLLECTION, &fields(value), None).unwrap();
    doc.commit(BASE_TIME_MS + 1000).unwrap()
}

fn apply_pulled_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let (_, new_c9) = new_record(PEER, json!({"name": "Edsger", "email": "ew@example.com"}), false);
    let (_, new_account) = new_record(OTHER, json!({"name": "Initech"}), false);

    let mut peer_c3 = base_copy(PEER);
    let edit_c3 = edit(&mut peer_c3, json!({"age": 86, "email": "grace@example.com"}));
    peer_c3.delete();
    let delete_c3 = peer_c3.commit(BASE_TIME_MS + 2000).unwrap();
    let undelete_c3 = edit(&mut peer_c3, json!({"vip": true}));

    let mut other_c3 = base_copy(OTHER);
    let concurrent_c3 = edit(&mut other_c3, json!({"name": "Rear Admiral Hopper"}));
    let mut peer_c3b = base_copy(PEER);
    let concurrent_c3b = edit(&mut peer_c3b, json!({"name": "Amazing Grace", "age": null}));

    let (mut peer_c1, first) = new_record(PEER, json!({"name": "Ada Lovelace"}), false);
    let second = edit(&mut peer_c1, json!({"email": "ada@example.com"}));

    let (mut typed, typed_first) = new_record(
        OTHER,
        json!({"note": "hello", "visits": 3, "tags": ["a", {"b": 1}], "born": "1815-12-10T00:00:00Z"}),
        true,
    );
    typed.splice("note", 5, 0, " world").unwrap();
    typed.increment("visits", -1).unwrap();
    let typed_second = typed.commit(BASE_TIME_MS + 1000).unwrap();

    // The first increment of a counter the record lacks: a genesis op, then the increment.
    let (mut counted, counted_first) = new_record(OTHER, json!({"name": "Ada"}), true);
    counted.increment("visits", 2).unwrap();
    let increment = counted.commit(BASE_TIME_MS + 1000).unwrap();
    let genesis = counted
        .take_genesis()
        .pop()
        .expect("the first increment applied a genesis change");

    vec![
        ("op-put-new-record", op(10, PEER, COLLECTION, "c9", new_c9).encode()),
        (
            "op-genesis-then-first-increment",
            payloads(&[
                Some(&op(13, OTHER, COLLECTION, "c7", counted_first).encode()),
                Some(&op(14, GENESIS_ACTOR, COLLECTION, "c7", genesis).encode()),
                Some(&op(15, OTHER, COLLECTION, "c7", increment).encode()),
            ]),
        ),
        (
            "op-two-records-one-page",
            payloads(&[
                Some(&op(11, OTHER, "accounts", "a1", new_account).encode()),
                Some(&op(12, PEER, COLLECTION, "c3", edit_c3.clone()).encode()),
            ]),
        ),
        ("change-edit-pulled-record", payloads(&[None, None, Some(&edit_c3)])),
        (
            "change-delete-then-undelete-pulled-record",
            payloads(&[
                None,
                None,
                Some(&edit_c3),
                None,
                None,
                Some(&delete_c3),
                None,
                Some(&undelete_c3),
            ]),
        ),
        (
            "change-concurrent-edits-of-pulled-record",
            payloads(&[None, None, Some(&concurrent_c3), None, None, Some(&concurrent_c3b)]),
        ),
        (
            "change-dependency-arrives-second",
            payloads(&[Some(&second), None, None, Some(&first)]),
        ),
        (
            "change-text-counter-json",
            payloads(&[Some(&typed_first), None, None, Some(&typed_second)]),
        ),
    ]
}

fn record_doc_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let base = base_change();
    let mut peer = base_copy(PEER);
    let edit_c3 = edit(&mut peer, json!({"age": 86, "tags": [1, 2]}));
    let mut other = base_copy(OTHER);
    edit(&mut other, json!({"age": 87}));
    let mut conflicted = base_copy(PEER);
    conflicted.merge_saved(&peer.save()).unwrap();
    conflicted.merge_saved(&other.save()).unwrap();
    let mut deleted = base_copy(OTHER);
    deleted.delete();
    deleted.commit(BASE_TIME_MS + 1000).unwrap();
    let (mut typed, _) = new_record(OTHER, json!({"note": "hello", "visits": 3}), true);
    typed.splice("note", 0, 1, "J").unwrap();
    typed.commit(BASE_TIME_MS + 1000).unwrap();
    // A delete that won over a concurrent undelete: the tombstone holds both values.
    let mut undeleted = base_copy(PEER);
    undeleted.delete();
    undeleted.commit(BASE_TIME_MS + 1000).unwrap();
    edit(&mut undeleted, json!({"age": 36}));
    let mut tombstone = base_copy(OTHER);
    tombstone.merge_saved(&deleted.save()).unwrap();
    tombstone.merge_saved(&undeleted.save()).unwrap();
    assert_eq!(
        tombstone.conflicts()[0].field,
        "_deleted",
        "the seed holds a listed tombstone conflict"
    );

    vec![
        ("change-single", base.clone()),
        ("changes-concatenated", [base.as_slice(), edit_c3.as_slice()].concat()),
        ("document-with-conflict", conflicted.save()),
        ("document-deleted", deleted.save()),
        ("document-text-and-counter", typed.save()),
        ("document-tombstone-conflict", tombstone.save()),
    ]
}

/// Decision lists for the simulation target: pseudo-random bytes (any bytes
/// are a valid run), short ones and longer ones.
#[cfg(feature = "server")]
fn simulation_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let bytes = |seed: u64, len: usize| {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x >> 56) as u8
            })
            .collect::<Vec<u8>>()
    };
    vec![
        ("run-short", bytes(1, 64)),
        ("run-medium", bytes(2, 400)),
        ("run-long", bytes(3, 1500)),
        ("run-long-2", bytes(4, 1500)),
    ]
}

#[test]
#[ignore = "writes the seed files under fuzz/corpus/; run with --ignored to regenerate them"]
fn the_seed_corpora_are_written_on_request() {
    let hazard = hazard_bytes();
    let mut corpora = vec![
        ("apply_pulled", apply_pulled_seeds()),
        ("record_doc", record_doc_seeds()),
        ("wire_client", server_seeds::wire_client_seeds()),
    ];
    #[cfg(feature = "server")]
    corpora.extend([
        ("wire_server", server_seeds::wire_server_seeds()),
        ("push", server_seeds::push_seeds()),
        ("simulation", simulation_seeds()),
    ]);
    for (target, mut seeds) in corpora {
        if HAZARD_TARGETS.contains(&target) {
            seeds.push((HAZARD_FILE, hazard.clone()));
        }
        assert!(seeds.len() <= 10, "keep at most 10 seeds per target");
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            assert!(bytes.len() < 4096, "seed {name} is {} bytes", bytes.len());
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
