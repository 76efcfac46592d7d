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
use tidemark::record::ChangeHeader;
use tidemark::server::store::{
    NewOp, OpRefusal, PageLimit, Role, ServerStore, StoreError, StoredDoc, StoredOp, TokenRecord,
};
use tidemark::{ActorId, Collection, Op, OpId, RecordId, Replica, Seq};

mod concurrency;
mod docs;
mod ops;

use concurrency::*;
use docs::*;
use ops::*;

/// One behaviour every store must have: a sentence and a function of a fresh store.
pub type Check<S> = (&'static str, fn(&S));

fn check<S>(name: &'static str, f: fn(&S)) -> Check<S> {
    (name, f)
}

/// Every check of the suite, by name.
pub fn checks<S: ServerStore>() -> Vec<Check<S>> {
    vec![
        check("a working store is ready", a_working_store_is_ready::<S>),
        check("users are created once", users_are_created_once::<S>),
        check(
            "tokens round trip for existing users",
            tokens_round_trip_for_existing_users::<S>,
        ),
        check("spaces keep their package", spaces_keep_their_package::<S>),
        check("a re-grant changes the role", a_regrant_changes_the_role::<S>),
        check(
            "revokes take effect and listings follow them",
            revokes_take_effect_and_listings_follow_them::<S>,
        ),
        check(
            "append assigns gap-free seqs from one",
            append_assigns_gap_free_seqs_from_one::<S>,
        ),
        check(
            "a re-pushed op keeps its first seq",
            a_repushed_op_keeps_its_first_seq::<S>,
        ),
        check(
            "each append marks its ops, a re-push keeps the first mark",
            each_append_marks_its_ops::<S>,
        ),
        check(
            "an op id reused with other content is refused alone",
            an_op_id_reused_with_other_content_is_refused_alone::<S>,
        ),
        check(
            "an op naming ops its record lacks is refused alone",
            an_op_naming_ops_its_record_lacks_is_refused_alone::<S>,
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
        check("pages keep to their byte budget", pages_keep_to_their_byte_budget::<S>),
        check(
            "rows travel with their documents",
            rows_travel_with_their_documents::<S>,
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

/// The op with a history header of its own: an actor made of its op id, change
/// number 1, no dependencies. Independent ops pass the store's history check.
pub fn new_op(stored: &StoredOp) -> NewOp {
    let mut hash = [0u8; 32];
    hash[..16].copy_from_slice(stored.op.id.0.as_bytes());
    for (i, b) in stored.op.change.iter().enumerate() {
        hash[16 + i % 16] ^= b.wrapping_add(i as u8);
    }
    NewOp {
        stored: stored.clone(),
        header: ChangeHeader {
            hash,
            actor: stored.op.id.0.as_bytes().to_vec(),
            seq: 1,
            start_op: 1,
            max_op: 1,
            deps: Vec::new(),
            named: Vec::new(),
        },
    }
}

/// Appends test ops (see [`new_op`]): the seq of each, or why it was refused.
pub fn append<S: ServerStore>(
    store: &S,
    space: &str,
    ops: &[StoredOp],
) -> Result<Vec<Result<Seq, OpRefusal>>, StoreError> {
    let ops: Vec<NewOp> = ops.iter().map(new_op).collect();
    store.append(space, &ops)
}

/// Appends test ops that must all be taken; their seqs.
#[track_caller]
pub fn append_ok<S: ServerStore>(store: &S, space: &str, ops: &[StoredOp]) -> Vec<Seq> {
    append(store, space, ops)
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("an op was refused: {e}")))
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

pub fn everything<S: ServerStore>(store: &S, space: &str) -> Vec<(Seq, StoredOp)> {
    store.read_ops(space, Seq(0), PageLimit::count(usize::MAX)).unwrap()
}

fn seqs_of(page: &[(Seq, StoredOp)]) -> Vec<Seq> {
    page.iter().map(|(seq, _)| *seq).collect()
}

fn doc(collection: &str, record: &str, bytes: &[u8]) -> StoredDoc {
    StoredDoc {
        collection: collection.to_string(),
        record: record.to_string(),
        doc: bytes.to_vec(),
        row: None,
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

/// Asserts that the op at `index` was refused as reusing `op`'s id, and returns the others' results.
#[track_caller]
fn assert_conflict(
    result: Result<Vec<Result<Seq, OpRefusal>>, StoreError>,
    index: usize,
    op: &Op,
) -> Vec<Result<Seq, OpRefusal>> {
    let results = result.unwrap();
    match &results[index] {
        Err(OpRefusal::OpIdConflict { id }) if *id == op.id.to_string() => {}
        other => panic!("expected OpIdConflict {{ id: {} }} at {index}, got {other:?}", op.id),
    }
    results
}

// ---- users, tokens, spaces, roles ----------------------------------------

pub fn a_working_store_is_ready<S: ServerStore>(store: &S) {
    store.ready().unwrap();
    store.create_user("ada").unwrap();
    store.ready().unwrap();
    assert!(store.user_exists("ada").unwrap());
}

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

pub fn revokes_take_effect_and_listings_follow_them<S: ServerStore>(store: &S) {
    store.create_user("bob").unwrap();
    store.create_user("ada").unwrap();
    schemaless_space(store, "crm");
    schemaless_space(store, "alpha");
    for (id, user) in [("t2", "ada"), ("t1", "ada"), ("t3", "bob")] {
        let record = TokenRecord {
            user: user.into(),
            secret_hash: [1; 32],
        };
        store.add_token(id, &record).unwrap();
    }
    store.grant("ada", "crm", Role::ReadWrite).unwrap();
    store.grant("bob", "crm", Role::ReadOnly).unwrap();
    assert_eq!(
        store.users().unwrap(),
        [
            ("ada".to_string(), vec!["t1".to_string(), "t2".to_string()]),
            ("bob".to_string(), vec!["t3".to_string()])
        ]
    );
    assert_eq!(store.spaces().unwrap(), ["alpha", "crm"]);
    assert_eq!(
        store.members("crm").unwrap(),
        [
            ("ada".to_string(), Role::ReadWrite),
            ("bob".to_string(), Role::ReadOnly)
        ]
    );
    assert!(store.members("alpha").unwrap().is_empty());

    assert!(store.revoke("bob", "crm").unwrap());
    assert!(!store.revoke("bob", "crm").unwrap(), "a second revoke finds nothing");
    assert_eq!(store.role("bob", "crm").unwrap(), None);
    assert_eq!(store.role("ada", "crm").unwrap(), Some(Role::ReadWrite));
    assert!(store.remove_token("t1").unwrap());
    assert!(!store.remove_token("t1").unwrap());
    assert!(store.token("t1").unwrap().is_none());
    assert!(store.token("t2").unwrap().is_some());
    assert_eq!(store.users().unwrap()[0].1, ["t2"]);
    assert!(matches!(store.members("nowhere"), Err(StoreError::Missing { .. })));
    assert!(matches!(
        store.revoke("ada", "nowhere"),
        Err(StoreError::Missing { .. })
    ));
}
