//! The PostgreSQL server store: the conformance suite every store passes, and
//! what only a shared database shows (reconnecting processes, concurrent
//! start-ups, the epoch).
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use tidemark::record::ChangeHeader;
use tidemark::server::store::postgres::PgStore;
use tidemark::server::store::{NewOp, OpRefusal, ServerStore};

use common::postgres::postgres;
use common::store_suite::{self, append_ok, everything, new_op, new_ops};
use tidemark::Seq;

#[test]
fn a_postgres_store_passes_the_suite() {
    let Some(pg) = postgres("a_postgres_store_passes_the_suite") else {
        return;
    };
    store_suite::run_all(&|| PgStore::connect(&pg.database()).unwrap());
}

#[test]
fn processes_on_one_database_share_everything_and_its_epoch() {
    let Some(pg) = postgres("processes_on_one_database_share_everything_and_its_epoch") else {
        return;
    };
    let url = pg.database();
    let one = PgStore::connect(&url).unwrap();
    let two = PgStore::connect(&url).unwrap();
    assert_eq!(one.epoch().unwrap(), two.epoch().unwrap());
    one.create_space("crm", None).unwrap();
    let ops = new_ops(4);
    assert_eq!(append_ok(&one, "crm", &ops[..2]), [1, 2]);
    assert_eq!(
        append_ok(&two, "crm", &ops[1..]),
        [2, 3, 4],
        "the second process sees the first's ops"
    );
    assert_eq!(one.head("crm").unwrap(), 4);
    drop((one, two));
    let again = PgStore::connect(&url).unwrap();
    assert_eq!(again.head("crm").unwrap(), 4, "the database keeps everything");

    let other = PgStore::connect(&pg.database()).unwrap();
    assert_ne!(
        other.epoch().unwrap(),
        again.epoch().unwrap(),
        "each database has its own epoch"
    );
}

#[test]
fn processes_starting_at_once_migrate_the_schema_once() {
    let Some(pg) = postgres("processes_starting_at_once_migrate_the_schema_once") else {
        return;
    };
    let url = pg.database();
    let epochs: Vec<String> = std::thread::scope(|s| {
        let starts: Vec<_> = (0..6)
            .map(|_| s.spawn(|| PgStore::connect(&url).unwrap().epoch().unwrap()))
            .collect();
        starts.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(epochs.windows(2).all(|w| w[0] == w[1]), "one epoch: {epochs:?}");
}

#[test]
fn a_bad_url_or_an_absent_server_is_a_clear_error() {
    let err = PgStore::connect("postgres://nobody@127.0.0.1:1/none")
        .unwrap_err()
        .to_string();
    assert!(err.contains("PostgreSQL"), "{err}");
    let err = PgStore::connect("postgres://127.0.0.1:notaport/db")
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not parse"), "{err}");
}

#[test]
fn the_same_ops_pushed_through_two_processes_at_once_are_stored_once() {
    let Some(pg) = postgres("the_same_ops_pushed_through_two_processes_at_once_are_stored_once") else {
        return;
    };
    let url = pg.database();
    let stores = [PgStore::connect(&url).unwrap(), PgStore::connect(&url).unwrap()];
    stores[0].create_space("crm", None).unwrap();
    for round in 0..20 {
        let ops = new_ops(5);
        let answers: Vec<Vec<Seq>> = std::thread::scope(|s| {
            let pushes: Vec<_> = stores
                .iter()
                .map(|store| s.spawn(|| append_ok(store, "crm", &ops)))
                .collect();
            pushes.into_iter().map(|p| p.join().unwrap()).collect()
        });
        assert_eq!(answers[0], answers[1], "round {round}: both get the same seqs back");
        let first = round * 5 + 1;
        assert_eq!(
            answers[0],
            (first..first + 5).collect::<Vec<u64>>(),
            "round {round}: stored once"
        );
    }
    assert_eq!(stores[1].head("crm").unwrap(), 100);
}

/// An op on `contacts/shared` as change `seq` of actor `[1; 16]`, its hash
/// made of `tag` and its one op counted `tag`, depending on the changes hashed
/// `deps` (tags grow with each change, so op counters do too).
fn change_of_shared(seq: u64, tag: u8, deps: &[u8]) -> NewOp {
    let mut stored = new_ops(1).remove(0);
    stored.op.record = tidemark::RecordId::new("shared").unwrap();
    NewOp {
        stored,
        header: ChangeHeader {
            hash: [tag; 32],
            actor: vec![1; 16],
            seq,
            start_op: u64::from(tag),
            max_op: u64::from(tag),
            deps: deps.iter().map(|tag| [*tag; 32]).collect(),
            named: Vec::new(),
        },
    }
}

/// Appends `slow` through a process that reads, then waits before it takes
/// the space lock while `fast` appends through another; both answers.
type Answer = Vec<Result<Seq, OpRefusal>>;
fn race(url: &str, slow: &[NewOp], fast: &[NewOp]) -> (Answer, Answer) {
    let stores = [PgStore::connect(url).unwrap(), PgStore::connect(url).unwrap()];
    for store in &stores {
        // Connected and warm, so that the slow one reads well within the head start.
        store.head("crm").unwrap();
    }
    stores[0].delay_after_reads(Duration::from_millis(400));
    std::thread::scope(|s| {
        let slow = s.spawn(|| stores[0].append("crm", slow).unwrap());
        std::thread::sleep(Duration::from_millis(100));
        let fast = stores[1].append("crm", fast).unwrap();
        (slow.join().unwrap(), fast)
    })
}

#[test]
fn an_append_that_read_before_another_committed_is_checked_again() {
    let Some(pg) = postgres("an_append_that_read_before_another_committed_is_checked_again") else {
        return;
    };
    let url = pg.database();
    PgStore::connect(&url).unwrap().create_space("crm", None).unwrap();

    // Two stores sharing an actor write change 1 of one record: one is taken.
    let (slow, fast) = race(
        &url,
        &[change_of_shared(1, 0xa1, &[])],
        &[change_of_shared(1, 0xb1, &[])],
    );
    assert!(matches!(fast[..], [Ok(Seq(1))]), "{fast:?}");
    assert!(
        matches!(&slow[..], [Err(OpRefusal::ActorReused { seq: 1, .. })]),
        "the other copy of change 1 is refused, not stored beside it: {slow:?}"
    );

    // Two stores sharing an actor write change 2 of it: the actor's row moves
    // once; the other copy is refused.
    let (slow, fast) = race(
        &url,
        &[change_of_shared(2, 0xba, &[0xb1])],
        &[change_of_shared(2, 0xb2, &[0xb1])],
    );
    assert!(matches!(fast[..], [Ok(Seq(2))]), "{fast:?}");
    assert!(
        matches!(&slow[..], [Err(OpRefusal::ActorReused { seq: 2, .. })]),
        "the other copy of change 2 is refused: {slow:?}"
    );

    // The same op through both: stored once, both answered with its seq.
    let same = change_of_shared(3, 0xb3, &[0xb2]);
    let (slow, fast) = race(&url, std::slice::from_ref(&same), std::slice::from_ref(&same));
    assert!(matches!(fast[..], [Ok(Seq(3))]), "{fast:?}");
    assert!(matches!(slow[..], [Ok(Seq(3))]), "{slow:?}");

    // A change whose dependency another process commits meanwhile is taken,
    // alone and beside a fresh op.
    let other_actor = |seq, tag, deps: &[u8]| {
        let mut op = change_of_shared(seq, tag, deps);
        op.header.actor = vec![2; 16];
        op
    };
    let (slow, fast) = race(
        &url,
        &[other_actor(1, 0xc1, &[0xb4])],
        &[change_of_shared(4, 0xb4, &[0xb3])],
    );
    assert!(matches!(fast[..], [Ok(Seq(4))]), "{fast:?}");
    assert!(
        matches!(slow[..], [Ok(Seq(5))]),
        "the dependency committed before the lock: {slow:?}"
    );
    let fresh = new_op(&new_ops(1)[0]);
    let (slow, fast) = race(
        &url,
        &[fresh, other_actor(2, 0xc2, &[0xb5])],
        &[change_of_shared(5, 0xb5, &[0xb4])],
    );
    assert!(matches!(fast[..], [Ok(Seq(6))]), "{fast:?}");
    assert!(matches!(slow[..], [Ok(Seq(7)), Ok(Seq(8))]), "{slow:?}");

    let store = PgStore::connect(&url).unwrap();
    assert_eq!(store.head("crm").unwrap(), 8, "gap-free, nothing stored twice");
    assert_eq!(everything(&store, "crm").len(), 8);
}
