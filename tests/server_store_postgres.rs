//! The PostgreSQL server store: the conformance suite every store passes, and
//! what only a shared database shows (reconnecting processes, concurrent
//! start-ups, the epoch).
#![cfg(feature = "postgres")]

mod common;

use tidemark::server::store::ServerStore;
use tidemark::server::store::postgres::PgStore;

use common::postgres::postgres;
use common::store_suite::{self, append_ok, new_ops};

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
        let answers: Vec<Vec<u64>> = std::thread::scope(|s| {
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
