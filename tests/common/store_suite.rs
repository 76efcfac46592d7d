//! The conformance suite of a server store: every [`ServerStore`] runs these
//! checks unchanged (`tests/server_store.rs` runs them on redb in memory and on
//! disk; a PostgreSQL store runs the same).
//!
//! `run_all(&|| fresh_store())` gives every check its own fresh store and, when
//! some fail, names all of them, so one bug does not hide the next.

use std::collections::{BTreeMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tidemark::server::store::{Role, ServerStore, StoreError, StoredDoc, StoredOp, TokenRecord};
use tidemark::{ActorId, Collection, Op, OpId, RecordId, Replica, Seq};

/// One behaviour every store must have: a sentence and a function of a fresh store.
pub type Check<S> = (&'static str, fn(&S));

fn check<S>(name: &'static str, f: fn(&S)) -> Check<S> {
    (name, f)
}

/// Every check of the suite, by name.
pub fn checks<S: ServerStore>() -> Vec<Check<S>> {
    vec![
        check("users are created once", users_are_created_once::<S>),
        check(
            "tokens round trip for existing users",
            tokens_round_trip_for_existing_users::<S>,
        ),
        check("spaces keep their package", spaces_keep_their_package::<S>),
        check("a re-grant changes the role", a_regrant_changes_the_role::<S>),
        check(
            "append assigns gap-free seqs from one",
            append_assigns_gap_free_seqs_from_one::<S>,
        ),
        check(
            "a re-pushed op keeps its first seq",
            a_repushed_op_keeps_its_first_seq::<S>,
        ),
        check(
            "an op id reused with other content is refused and nothing is stored",
            an_op_id_reused_with_other_content_is_refused_and_nothing_is_stored::<S>,
        ),
        check(
            "a duplicate id inside one batch gets the first seq",
            a_duplicate_id_inside_one_batch_gets_the_first_seq::<S>,
        ),
        check(
            "read_ops pages by since and limit",
            read_ops_pages_by_since_and_limit::<S>,
        ),
        check(
            "the ops of two spaces are independent",
            the_ops_of_two_spaces_are_independent::<S>,
        ),
        check(
            "the pushing user is kept with each op",
            the_pushing_user_is_kept_with_each_op::<S>,
        ),
        check(
            "real automerge ops round trip byte for byte",
            real_automerge_ops_round_trip_byte_for_byte::<S>,
        ),
        check(
            "a missing space is reported as missing",
            a_missing_space_is_reported_as_missing::<S>,
        ),
        check(
            "documents are stored with the materialized seq",
            documents_are_stored_with_the_materialized_seq::<S>,
        ),
        check(
            "docs_page orders by collection then record",
            docs_page_orders_by_collection_then_record::<S>,
        ),
        check(
            "concurrent appends get exactly one to n",
            concurrent_appends_get_exactly_one_to_n::<S>,
        ),
        check("random appends match a model", random_appends_match_a_model::<S>),
    ]
}

/// Runs every check, each on a store from `make`, and panics naming every failed check.
pub fn run_all<S: ServerStore>(make: &dyn Fn() -> S) {
    let all = checks::<S>();
    let mut failed = Vec::new();
    for (name, check) in &all {
        let store = make();
        eprintln!("store check: {name}");
        if catch_unwind(AssertUnwindSafe(|| check(&store))).is_err() {
            failed.push(*name);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} store checks failed (see the panics above):\n  {}",
        failed.len(),
        all.len(),
        failed.join("\n  ")
    );
}

// ---- helpers -------------------------------------------------------------

/// A distinct op on `contacts/{record}` with dummy change bytes: the store does
/// not validate changes (that is the service's job).
pub fn op(record: &str, change: &[u8]) -> Op {
    Op {
        id: OpId::new(),
        actor: ActorId([7; 16]),
        collection: Collection::new("contacts").unwrap(),
        record: RecordId::new(record).unwrap(),
        time_ms: 1_767_225_600_000,
        change: change.to_vec(),
    }
}

pub fn stored(op: &Op, user: &str) -> StoredOp {
    StoredOp {
        op: op.clone(),
        user: user.to_string(),
    }
}

/// `n` distinct ops pushed by `ada`.
pub fn new_ops(n: usize) -> Vec<StoredOp> {
    (0..n)
        .map(|i| stored(&op(&format!("c{i}"), format!("change {i}").as_bytes()), "ada"))
        .collect()
}

/// The same op id and envelope with other change bytes.
fn altered(original: &StoredOp) -> StoredOp {
    let mut changed = original.clone();
    changed.op.change.push(0xff);
    changed
}

fn schemaless_space<S: ServerStore>(store: &S, space: &str) {
    store.create_space(space, None).unwrap();
}

fn everything<S: ServerStore>(store: &S, space: &str) -> Vec<(Seq, StoredOp)> {
    store.read_ops(space, 0, usize::MAX).unwrap()
}

fn seqs_of(page: &[(Seq, StoredOp)]) -> Vec<Seq> {
    page.iter().map(|(seq, _)| *seq).collect()
}

fn doc(collection: &str, record: &str, bytes: &[u8]) -> StoredDoc {
    StoredDoc {
        collection: collection.to_string(),
        record: record.to_string(),
        doc: bytes.to_vec(),
    }
}

fn keys(page: &[StoredDoc]) -> Vec<(&str, &str)> {
    page.iter()
        .map(|d| (d.collection.as_str(), d.record.as_str()))
        .collect()
}

#[track_caller]
fn assert_missing<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str, name: &str) {
    match result {
        Err(StoreError::Missing { what: w, name: n }) if w == what && n == name => {}
        other => panic!("expected Missing {{ what: {what:?}, name: {name:?} }}, got {other:?}"),
    }
}

#[track_caller]
fn assert_already_exists<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str, name: &str) {
    match result {
        Err(StoreError::AlreadyExists { what: w, name: n }) if w == what && n == name => {}
        other => panic!("expected AlreadyExists {{ what: {what:?}, name: {name:?} }}, got {other:?}"),
    }
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, index: usize, op: &Op) {
    match result {
        Err(StoreError::OpIdConflict { index: i, id }) if i == index && id == op.id.to_string() => {}
        other => panic!(
            "expected OpIdConflict {{ index: {index}, id: {} }}, got {other:?}",
            op.id
        ),
    }
}

// ---- users, tokens, spaces, roles ----------------------------------------

pub fn users_are_created_once<S: ServerStore>(store: &S) {
    assert!(!store.user_exists("ada").unwrap());
    store.create_user("ada").unwrap();
    store.create_user("bob").unwrap();
    assert!(store.user_exists("ada").unwrap());
    assert!(store.user_exists("bob").unwrap());
    assert!(!store.user_exists("Ada").unwrap(), "names are case-sensitive");
    assert_already_exists(store.create_user("ada"), "user", "ada");
    assert!(store.user_exists("ada").unwrap());
}

pub fn tokens_round_trip_for_existing_users<S: ServerStore>(store: &S) {
    store.create_user("ada").unwrap();
    let first = TokenRecord {
        user: "ada".to_string(),
        secret_hash: [1; 32],
    };
    let second = TokenRecord {
        user: "ada".to_string(),
        secret_hash: [2; 32],
    };
    assert_eq!(store.token("t1").unwrap(), None);
    store.add_token("t1", &first).unwrap();
    store.add_token("t2", &second).unwrap();
    assert_eq!(store.token("t1").unwrap(), Some(first.clone()));
    assert_eq!(store.token("t2").unwrap(), Some(second));
    assert_eq!(store.token("t3").unwrap(), None);

    let other = TokenRecord {
        user: "ada".to_string(),
        secret_hash: [9; 32],
    };
    assert_already_exists(store.add_token("t1", &other), "token", "t1");
    assert_eq!(store.token("t1").unwrap(), Some(first), "a token is never overwritten");

    let stranger = TokenRecord {
        user: "nobody".to_string(),
        secret_hash: [3; 32],
    };
    assert_missing(store.add_token("t4", &stranger), "user", "nobody");
    assert_eq!(store.token("t4").unwrap(), None);
}

pub fn spaces_keep_their_package<S: ServerStore>(store: &S) {
    let package = super::crm_package();
    store.create_space("crm", Some(&package)).unwrap();
    store.create_space("notes", None).unwrap();
    assert_eq!(store.package("crm").unwrap(), Some(Some(package.clone())));
    assert_eq!(store.package("notes").unwrap(), Some(None), "schemaless");
    assert_eq!(store.package("nowhere").unwrap(), None, "missing");
    assert_already_exists(store.create_space("crm", None), "space", "crm");
    assert_eq!(store.package("crm").unwrap(), Some(Some(package.clone())));

    let mut next = package.clone();
    next.version = 2;
    next.collections.remove("accounts");
    store.set_package("crm", Some(&next)).unwrap();
    assert_eq!(store.package("crm").unwrap(), Some(Some(next)));
    store.set_package("crm", None).unwrap();
    assert_eq!(store.package("crm").unwrap(), Some(None));
    store.set_package("notes", Some(&package)).unwrap();
    assert_eq!(store.package("notes").unwrap(), Some(Some(package.clone())));
    assert_missing(store.set_package("nowhere", Some(&package)), "space", "nowhere");
    assert_eq!(store.package("nowhere").unwrap(), None);
}

pub fn a_regrant_changes_the_role<S: ServerStore>(store: &S) {
    store.create_user("ada").unwrap();
    store.create_user("bob").unwrap();
    schemaless_space(store, "crm");
    schemaless_space(store, "other");
    assert_eq!(store.role("ada", "crm").unwrap(), None);
    store.grant("ada", "crm", Role::ReadWrite).unwrap();
    store.grant("bob", "crm", Role::ReadOnly).unwrap();
    assert_eq!(store.role("ada", "crm").unwrap(), Some(Role::ReadWrite));
    assert_eq!(store.role("bob", "crm").unwrap(), Some(Role::ReadOnly));
    assert_eq!(store.role("ada", "other").unwrap(), None, "a role is per space");

    store.grant("ada", "crm", Role::ReadOnly).unwrap();
    assert_eq!(store.role("ada", "crm").unwrap(), Some(Role::ReadOnly));
    store.grant("bob", "crm", Role::ReadWrite).unwrap();
    assert_eq!(store.role("bob", "crm").unwrap(), Some(Role::ReadWrite));
    assert_eq!(
        store.role("ada", "crm").unwrap(),
        Some(Role::ReadOnly),
        "others keep theirs"
    );

    assert_missing(store.grant("nobody", "crm", Role::ReadWrite), "user", "nobody");
    assert_missing(store.grant("ada", "nowhere", Role::ReadWrite), "space", "nowhere");
    assert_eq!(store.role("nobody", "crm").unwrap(), None);
    assert_eq!(store.role("ada", "nowhere").unwrap(), None);
}

// ---- the op log ------------------------------------------------------------

pub fn append_assigns_gap_free_seqs_from_one<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    assert_eq!(store.head("crm").unwrap(), 0);
    assert_eq!(store.append("crm", &[]).unwrap(), Vec::<Seq>::new());
    assert_eq!(store.head("crm").unwrap(), 0);
    let first = new_ops(3);
    assert_eq!(store.append("crm", &first).unwrap(), [1, 2, 3]);
    assert_eq!(store.head("crm").unwrap(), 3);
    let second = new_ops(2);
    assert_eq!(store.append("crm", &second).unwrap(), [4, 5]);
    assert_eq!(store.head("crm").unwrap(), 5);
    assert_eq!(store.append("crm", &[]).unwrap(), Vec::<Seq>::new());
    let all = everything(store, "crm");
    assert_eq!(seqs_of(&all), [1, 2, 3, 4, 5]);
    let ops: Vec<StoredOp> = all.into_iter().map(|(_, op)| op).collect();
    assert_eq!(ops, [first, second].concat());
}

pub fn a_repushed_op_keeps_its_first_seq<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = new_ops(3);
    assert_eq!(store.append("crm", &ops[..2]).unwrap(), [1, 2]);
    assert_eq!(
        store.append("crm", &ops[1..]).unwrap(),
        [2, 3],
        "the known op keeps 2, the new one gets 3"
    );
    assert_eq!(store.append("crm", &ops[..1]).unwrap(), [1]);
    assert_eq!(store.head("crm").unwrap(), 3, "a re-push does not move the head");
    assert_eq!(store.append("crm", &ops).unwrap(), [1, 2, 3]);

    // The same op pushed again by someone else is the same op: the first stamp stays.
    let by_bob = stored(&ops[0].op, "bob");
    assert_eq!(store.append("crm", &[by_bob]).unwrap(), [1]);
    let all = everything(store, "crm");
    assert_eq!(seqs_of(&all), [1, 2, 3]);
    assert_eq!(all[0].1, ops[0]);

    let more = new_ops(1);
    assert_eq!(store.append("crm", &[ops[2].clone(), more[0].clone()]).unwrap(), [3, 4]);
    assert_eq!(store.head("crm").unwrap(), 4);
}

pub fn an_op_id_reused_with_other_content_is_refused_and_nothing_is_stored<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = new_ops(4);
    assert_eq!(store.append("crm", &ops[..1]).unwrap(), [1]);

    // Other change bytes under a known id, after a new op: the whole batch is refused.
    let conflicting = altered(&ops[0]);
    assert_conflict(store.append("crm", &[ops[1].clone(), conflicting]), 1, &ops[0].op);
    assert_eq!(store.head("crm").unwrap(), 1, "nothing of the refused batch is stored");
    assert_eq!(everything(store, "crm").len(), 1);

    // Another envelope (record, time, actor, collection) under a known id is other content too.
    let mut moved = ops[0].clone();
    moved.op.record = RecordId::new("elsewhere").unwrap();
    assert_conflict(store.append("crm", &[moved]), 0, &ops[0].op);
    let mut retimed = ops[0].clone();
    retimed.op.time_ms += 1;
    assert_conflict(store.append("crm", &[retimed]), 0, &ops[0].op);
    let mut other_actor = ops[0].clone();
    other_actor.op.actor = ActorId([8; 16]);
    assert_conflict(store.append("crm", &[other_actor]), 0, &ops[0].op);
    let mut other_collection = ops[0].clone();
    other_collection.op.collection = Collection::new("accounts").unwrap();
    assert_conflict(store.append("crm", &[other_collection]), 0, &ops[0].op);

    // A conflict inside one batch refuses it too.
    let inner = altered(&ops[2]);
    assert_conflict(
        store.append("crm", &[ops[2].clone(), ops[3].clone(), inner]),
        2,
        &ops[2].op,
    );
    assert_eq!(store.head("crm").unwrap(), 1);

    // Later ops are unaffected: the refused ones were never stored and take the next seqs.
    assert_eq!(store.append("crm", &ops[1..]).unwrap(), [2, 3, 4]);
    assert_eq!(store.append("crm", &ops).unwrap(), [1, 2, 3, 4]);
    let all = everything(store, "crm");
    assert_eq!(seqs_of(&all), [1, 2, 3, 4]);
    assert_eq!(all.into_iter().map(|(_, op)| op).collect::<Vec<_>>(), ops);
}

pub fn a_duplicate_id_inside_one_batch_gets_the_first_seq<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = new_ops(3);
    let batch = [
        ops[0].clone(),
        ops[1].clone(),
        ops[0].clone(),
        ops[1].clone(),
        ops[2].clone(),
    ];
    assert_eq!(store.append("crm", &batch).unwrap(), [1, 2, 1, 2, 3]);
    assert_eq!(store.head("crm").unwrap(), 3);
    assert_eq!(seqs_of(&everything(store, "crm")), [1, 2, 3]);
}

pub fn read_ops_pages_by_since_and_limit<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = new_ops(10);
    store.append("crm", &ops).unwrap();

    let page = |since, limit| seqs_of(&store.read_ops("crm", since, limit).unwrap());
    assert_eq!(page(0, 3), [1, 2, 3]);
    assert_eq!(page(3, 3), [4, 5, 6]);
    assert_eq!(page(6, 3), [7, 8, 9]);
    assert_eq!(page(9, 3), [10]);
    assert_eq!(page(10, 3), Vec::<Seq>::new());
    // Exact multiples end with an empty page, never a repeated one.
    assert_eq!(page(0, 5), [1, 2, 3, 4, 5]);
    assert_eq!(page(5, 5), [6, 7, 8, 9, 10]);
    assert_eq!(page(10, 5), Vec::<Seq>::new());
    assert_eq!(page(0, 10), (1..=10).collect::<Vec<_>>());
    assert_eq!(page(0, 11), (1..=10).collect::<Vec<_>>());
    assert_eq!(page(4, 0), Vec::<Seq>::new());
    assert_eq!(page(11, 5), Vec::<Seq>::new());
    assert_eq!(page(1_000, 5), Vec::<Seq>::new());
    assert_eq!(page(u64::MAX, 5), Vec::<Seq>::new());

    // Walking with limit 1 meets every op once, in order, with its content.
    let mut since = 0;
    let mut walked = Vec::new();
    loop {
        let next = store.read_ops("crm", since, 1).unwrap();
        let Some((seq, op)) = next.into_iter().next() else {
            break;
        };
        assert_eq!(seq, since + 1);
        since = seq;
        walked.push(op);
    }
    assert_eq!(walked, ops);
}

pub fn the_ops_of_two_spaces_are_independent<S: ServerStore>(store: &S) {
    schemaless_space(store, "a");
    schemaless_space(store, "b");
    let ops = new_ops(3);
    assert_eq!(store.append("a", &ops[..2]).unwrap(), [1, 2]);
    assert_eq!(
        store.append("b", &ops[2..]).unwrap(),
        [1],
        "every space starts at seq 1"
    );
    // An op id is deduplicated per space: the same op in another space is new there.
    assert_eq!(store.append("b", &ops[..1]).unwrap(), [2]);
    assert_eq!(store.append("a", &ops[2..]).unwrap(), [3]);
    // And other content under that id in another space is no conflict with the first.
    assert_eq!(store.append("b", &[altered(&ops[1])]).unwrap(), [3]);
    assert_eq!(store.head("a").unwrap(), 3);
    assert_eq!(store.head("b").unwrap(), 3);

    let a: Vec<StoredOp> = everything(store, "a").into_iter().map(|(_, op)| op).collect();
    let b: Vec<StoredOp> = everything(store, "b").into_iter().map(|(_, op)| op).collect();
    assert_eq!(a, [ops[0].clone(), ops[1].clone(), ops[2].clone()]);
    assert_eq!(b, [ops[2].clone(), ops[0].clone(), altered(&ops[1])]);

    // A space created later starts empty, whatever the others hold.
    schemaless_space(store, "c");
    assert_eq!(store.head("c").unwrap(), 0);
    assert!(everything(store, "c").is_empty());
    assert_eq!(store.append("c", &ops[..1]).unwrap(), [1]);
}

pub fn the_pushing_user_is_kept_with_each_op<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = [op("c1", b"one"), op("c2", b"two"), op("c3", b"three")];
    let batch = [
        stored(&ops[0], "ada"),
        stored(&ops[1], "bob"),
        stored(&ops[2], "ünïcode user"),
    ];
    store.append("crm", &batch).unwrap();
    let all = everything(store, "crm");
    let users: Vec<&str> = all.iter().map(|(_, s)| s.user.as_str()).collect();
    assert_eq!(users, ["ada", "bob", "ünïcode user"]);
    assert_eq!(all.into_iter().map(|(_, s)| s).collect::<Vec<_>>(), batch);
}

pub fn real_automerge_ops_round_trip_byte_for_byte<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let replica = Replica::in_memory().unwrap();
    replica
        .put("contacts", "c1", json!({"name": "Ada", "visits": 1}))
        .unwrap();
    replica.put("contacts", "c2", json!({"name": "Bob"})).unwrap();
    replica
        .put("contacts", "c1", json!({"email": "ada@example.com"}))
        .unwrap();
    replica.delete("contacts", "c2").unwrap();
    replica
        .put("accounts", "a1", json!({"name": "Analytical Engines"}))
        .unwrap();
    let ops: Vec<StoredOp> = super::all_ops(&replica)
        .into_iter()
        .map(|remote| stored(&remote.op, "ada"))
        .collect();
    assert_eq!(ops.len(), 5);
    assert_eq!(store.append("crm", &ops).unwrap(), [1, 2, 3, 4, 5]);
    assert_eq!(store.append("crm", &ops).unwrap(), [1, 2, 3, 4, 5]);
    let back: Vec<StoredOp> = everything(store, "crm").into_iter().map(|(_, op)| op).collect();
    assert_eq!(back, ops);
}

pub fn a_missing_space_is_reported_as_missing<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    let ops = new_ops(1);
    assert_missing(store.append("nowhere", &ops), "space", "nowhere");
    assert_missing(store.append("nowhere", &[]), "space", "nowhere");
    assert_missing(store.read_ops("nowhere", 0, 10), "space", "nowhere");
    assert_missing(store.head("nowhere"), "space", "nowhere");
    assert_missing(store.materialized("nowhere"), "space", "nowhere");
    assert_missing(
        store.store_docs("nowhere", &[doc("contacts", "c1", b"doc")], 1),
        "space",
        "nowhere",
    );
    assert_missing(store.doc("nowhere", "contacts", "c1"), "space", "nowhere");
    assert_missing(store.docs_page("nowhere", None, 10), "space", "nowhere");
    assert_missing(store.set_package("nowhere", None), "space", "nowhere");
    assert_eq!(store.package("nowhere").unwrap(), None);
    // Nothing leaked into the space that exists.
    assert_eq!(store.head("crm").unwrap(), 0);
    assert!(store.docs_page("crm", None, 10).unwrap().is_empty());
}

// ---- materialized documents ------------------------------------------------

pub fn documents_are_stored_with_the_materialized_seq<S: ServerStore>(store: &S) {
    schemaless_space(store, "crm");
    schemaless_space(store, "other");
    assert_eq!(store.materialized("crm").unwrap(), 0);
    assert_eq!(store.doc("crm", "contacts", "c1").unwrap(), None);

    store
        .store_docs(
            "crm",
            &[doc("contacts", "c1", b"one"), doc("contacts", "c2", b"two")],
            2,
        )
        .unwrap();
    assert_eq!(store.materialized("crm").unwrap(), 2);
    assert_eq!(store.doc("crm", "contacts", "c1").unwrap(), Some(b"one".to_vec()));
    assert_eq!(store.doc("crm", "contacts", "c2").unwrap(), Some(b"two".to_vec()));
    assert_eq!(store.doc("crm", "contacts", "c3").unwrap(), None);
    assert_eq!(store.doc("crm", "accounts", "c1").unwrap(), None);

    store
        .store_docs("crm", &[doc("contacts", "c1", b"one, later")], 5)
        .unwrap();
    assert_eq!(store.materialized("crm").unwrap(), 5);
    assert_eq!(
        store.doc("crm", "contacts", "c1").unwrap(),
        Some(b"one, later".to_vec())
    );
    assert_eq!(store.doc("crm", "contacts", "c2").unwrap(), Some(b"two".to_vec()));

    // Advancing without documents (ops that changed nothing new) moves the seq alone.
    store.store_docs("crm", &[], 7).unwrap();
    assert_eq!(store.materialized("crm").unwrap(), 7);

    assert_eq!(store.materialized("other").unwrap(), 0, "per space");
    assert_eq!(store.doc("other", "contacts", "c1").unwrap(), None);
    store
        .store_docs("other", &[doc("contacts", "c1", b"theirs")], 1)
        .unwrap();
    assert_eq!(store.doc("other", "contacts", "c1").unwrap(), Some(b"theirs".to_vec()));
    assert_eq!(
        store.doc("crm", "contacts", "c1").unwrap(),
        Some(b"one, later".to_vec())
    );
    assert_eq!(store.materialized("crm").unwrap(), 7);
}

pub fn docs_page_orders_by_collection_then_record<S: ServerStore>(store: &S) {
    // Spaces on both sides, so a page that leaks across spaces shows.
    schemaless_space(store, "before");
    schemaless_space(store, "crm");
    schemaless_space(store, "after");
    store.store_docs("before", &[doc("zzz", "z", b"x")], 1).unwrap();
    store.store_docs("after", &[doc("aaa", "a", b"x")], 1).unwrap();
    assert!(store.docs_page("crm", None, 10).unwrap().is_empty());

    let docs = [
        doc("contacts", "c2", b"2"),
        doc("accounts", "b", b"b"),
        doc("contacts", "c10", b"10"),
        doc("contacts", "c1", b"1"),
        doc("accounts", "a", b"a"),
        doc("notes", "n1", b"n"),
    ];
    store.store_docs("crm", &docs[..3], 3).unwrap();
    store.store_docs("crm", &docs[3..], 6).unwrap();
    let expected = [
        ("accounts", "a"),
        ("accounts", "b"),
        ("contacts", "c1"),
        ("contacts", "c10"),
        ("contacts", "c2"),
        ("notes", "n1"),
    ];
    let all = store.docs_page("crm", None, 100).unwrap();
    assert_eq!(keys(&all), expected, "byte order of collection, then record");
    assert_eq!(all[3].doc, b"10");

    // Pages of 2 (an exact multiple) end with an empty page.
    let first = store.docs_page("crm", None, 2).unwrap();
    assert_eq!(keys(&first), expected[..2]);
    let second = store.docs_page("crm", Some(("accounts", "b")), 2).unwrap();
    assert_eq!(keys(&second), expected[2..4]);
    let third = store.docs_page("crm", Some(("contacts", "c10")), 2).unwrap();
    assert_eq!(keys(&third), expected[4..]);
    assert!(store.docs_page("crm", Some(("notes", "n1")), 2).unwrap().is_empty());

    // Pages of 1, each after the previous key, meet every document once.
    let mut after: Option<(String, String)> = None;
    let mut walked = Vec::new();
    loop {
        let page = store
            .docs_page("crm", after.as_ref().map(|(c, r)| (c.as_str(), r.as_str())), 1)
            .unwrap();
        let Some(d) = page.into_iter().next() else { break };
        walked.push((d.collection.clone(), d.record.clone()));
        after = Some((d.collection, d.record));
    }
    let walked: Vec<(&str, &str)> = walked.iter().map(|(c, r)| (c.as_str(), r.as_str())).collect();
    assert_eq!(walked, expected);

    // `after` need not be a stored key.
    let from_gap = store.docs_page("crm", Some(("b", "")), 10).unwrap();
    assert_eq!(keys(&from_gap), expected[2..]);
    let mid_collection = store.docs_page("crm", Some(("contacts", "c11")), 10).unwrap();
    assert_eq!(keys(&mid_collection), expected[4..]);
    assert!(store.docs_page("crm", None, 0).unwrap().is_empty());
}

// ---- concurrency and a model ----------------------------------------------

/// Four writers push batches (each with a few re-pushed ops) into one space while a
/// reader pulls: the new ops get exactly 1..=N, each batch's new ops a contiguous run,
/// and the reader never sees a gap (it would skip an op forever).
pub fn concurrent_appends_get_exactly_one_to_n<S: ServerStore>(store: &S) {
    const WRITERS: usize = 4;
    const BATCHES: usize = 10;
    const BATCH: usize = 50;
    const REPUSHED: usize = 5;
    const N: u64 = (WRITERS * BATCHES * BATCH) as u64;
    schemaless_space(store, "crm");
    let writing = AtomicBool::new(true);

    let (assigned, pulled) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut pulled: Vec<(Seq, OpId)> = Vec::new();
            loop {
                let done = !writing.load(Ordering::SeqCst);
                let since = pulled.last().map_or(0, |(seq, _)| *seq);
                let page = store.read_ops("crm", since, 97).unwrap();
                for (i, (seq, op)) in page.iter().enumerate() {
                    assert_eq!(*seq, since + 1 + i as u64, "a reader saw a gap after seq {since}");
                    pulled.push((*seq, op.op.id));
                }
                if page.is_empty() {
                    if done {
                        return pulled;
                    }
                    std::thread::yield_now();
                }
            }
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                scope.spawn(move || {
                    let mut assigned: Vec<(OpId, Seq)> = Vec::new();
                    let mut previous: Vec<StoredOp> = Vec::new();
                    for _ in 0..BATCHES {
                        let fresh: Vec<StoredOp> = (0..BATCH)
                            .map(|i| stored(&op(&format!("w{w}-{i}"), &[w as u8, i as u8]), &format!("user{w}")))
                            .collect();
                        let repushed: Vec<StoredOp> = previous.iter().take(REPUSHED).cloned().collect();
                        let batch = [repushed.clone(), fresh.clone()].concat();
                        let seqs = store.append("crm", &batch).unwrap();
                        assert_eq!(seqs.len(), batch.len());
                        for (old, seq) in repushed.iter().zip(&seqs) {
                            let first = assigned.iter().find(|(id, _)| *id == old.op.id).unwrap().1;
                            assert_eq!(*seq, first, "a re-pushed op keeps its first seq");
                        }
                        let new_seqs = &seqs[REPUSHED.min(repushed.len())..];
                        for pair in new_seqs.windows(2) {
                            assert_eq!(pair[1], pair[0] + 1, "one batch's new ops get a contiguous run");
                        }
                        assigned.extend(fresh.iter().map(|s| s.op.id).zip(new_seqs.iter().copied()));
                        previous = fresh;
                    }
                    assigned
                })
            })
            .collect();
        // Stop the reader before judging the writers, so a failed writer cannot hang the suite.
        let results: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        writing.store(false, Ordering::SeqCst);
        let pulled = reader.join().unwrap();
        let assigned: Vec<(OpId, Seq)> = results.into_iter().flat_map(|r| r.unwrap()).collect();
        (assigned, pulled)
    });

    let mut seqs: Vec<Seq> = assigned.iter().map(|(_, seq)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>(), "exactly 1..=N, no gap, no duplicate");
    assert_eq!(store.head("crm").unwrap(), N);

    let by_id: BTreeMap<OpId, Seq> = assigned.into_iter().collect();
    assert_eq!(by_id.len() as u64, N, "every op id once");
    assert_eq!(pulled.len() as u64, N, "the reader met every op once");
    for (seq, id) in &pulled {
        assert_eq!(
            by_id[id], *seq,
            "the reader sees each op at the seq its writer was given"
        );
    }
    let all = everything(store, "crm");
    assert_eq!(seqs_of(&all), (1..=N).collect::<Vec<_>>());
    let ids: HashSet<OpId> = all.iter().map(|(_, s)| s.op.id).collect();
    assert_eq!(ids.len() as u64, N);
}

/// Random batches (new ops, re-pushes, duplicates inside a batch, conflicting
/// content) into two spaces, compared after every step with a plain model.
pub fn random_appends_match_a_model<S: ServerStore>(store: &S) {
    #[derive(Default)]
    struct Model {
        log: Vec<StoredOp>,
        seq_of: BTreeMap<OpId, Seq>,
    }
    impl Model {
        /// What `append` must answer; the model changes only if it succeeds.
        fn append(&mut self, batch: &[StoredOp]) -> Result<Vec<Seq>, (usize, OpId)> {
            let mut log = self.log.clone();
            let mut seq_of = self.seq_of.clone();
            let mut seqs = Vec::new();
            for (i, s) in batch.iter().enumerate() {
                match seq_of.get(&s.op.id) {
                    Some(&seq) if log[seq as usize - 1].op == s.op => seqs.push(seq),
                    Some(_) => return Err((i, s.op.id)),
                    None => {
                        log.push(s.clone());
                        seq_of.insert(s.op.id, log.len() as Seq);
                        seqs.push(log.len() as Seq);
                    }
                }
            }
            self.log = log;
            self.seq_of = seq_of;
            Ok(seqs)
        }
    }

    let mut rng = StdRng::seed_from_u64(0x71de_3a4c);
    let spaces = ["a", "b"];
    let mut models = [Model::default(), Model::default()];
    for space in spaces {
        schemaless_space(store, space);
    }
    for step in 0..150 {
        let which = rng.random_range(0..2);
        let (space, model) = (spaces[which], &mut models[which]);
        let mut batch: Vec<StoredOp> = Vec::new();
        for _ in 0..rng.random_range(1..8) {
            let roll = rng.random_range(0..100);
            let next = if roll < 55 || model.log.is_empty() {
                stored(
                    &op(&format!("r{}", rng.random_range(0..20)), &[step as u8, roll as u8]),
                    "ada",
                )
            } else if roll < 80 {
                let known = &model.log[rng.random_range(0..model.log.len())];
                stored(&known.op, if rng.random_bool(0.5) { "ada" } else { "bob" })
            } else if roll < 95 && !batch.is_empty() {
                batch[rng.random_range(0..batch.len())].clone()
            } else {
                altered(&model.log[rng.random_range(0..model.log.len())])
            };
            batch.push(next);
        }
        let expected = model.append(&batch);
        let actual = store.append(space, &batch);
        match (&expected, actual) {
            (Ok(seqs), Ok(got)) => assert_eq!(&got, seqs, "step {step}"),
            (Err((index, id)), Err(StoreError::OpIdConflict { index: i, id: got })) => {
                assert_eq!((i, got), (*index, id.to_string()), "step {step}")
            }
            (expected, actual) => panic!("step {step}: expected {expected:?}, got {actual:?}"),
        }
        assert_eq!(store.head(space).unwrap(), model.log.len() as Seq, "step {step}");
        if step % 10 == 0 {
            let since = rng.random_range(0..=model.log.len());
            let limit = rng.random_range(1..10);
            let page = store.read_ops(space, since as Seq, limit).unwrap();
            let want: Vec<(Seq, StoredOp)> = model
                .log
                .iter()
                .enumerate()
                .skip(since)
                .take(limit)
                .map(|(i, s)| (i as Seq + 1, s.clone()))
                .collect();
            assert_eq!(page, want, "step {step}");
        }
    }
    for (space, model) in spaces.iter().zip(&models) {
        let all: Vec<StoredOp> = everything(store, space).into_iter().map(|(_, s)| s).collect();
        assert_eq!(all, model.log);
    }
}
