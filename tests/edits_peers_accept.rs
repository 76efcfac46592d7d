//! What one replica writes, every peer accepts: edits whose ops a peer would
//! refuse must be refused locally, or the op is stuck in the queue forever. The
//! regressions of that rule that the convergence property (`convergence.rs`) found.

mod common;

use tidemark::Replica;
use tidemark::Seq;
use tidemark::replica::PulledPage;

/// Two replicas delete a record
/// concurrently, so its `_deleted` tombstone holds two concurrent `true`s; deleting
/// it again makes automerge resolve the conflict with a `Delete` of `_deleted` (it
/// keeps the winning `true`); every peer must accept that op.
#[test]
fn deleting_a_record_whose_tombstone_is_conflicted_makes_an_op_peers_accept() {
    let a = Replica::in_memory().unwrap();
    let b = Replica::in_memory().unwrap();
    a.delete("contacts", "r1").unwrap();
    b.delete("contacts", "r1").unwrap();
    common::send(&b, &a);
    a.delete("contacts", "r1").unwrap();
    b.apply_pulled(&PulledPage {
        ops: common::all_ops(&a),
        end: Seq(0),
        mark: None,
    })
    .expect("b accepts every op a made");
    assert_eq!(a.view_rows().unwrap(), b.view_rows().unwrap());
}

/// A schemaless space holds scalar registers only: peers refuse text objects and
/// counters. A replica must not accept locally an edit that its peers refuse
/// (whichever side gives way), or the op is stuck forever.
#[test]
fn a_schemaless_edit_is_accepted_locally_only_if_peers_accept_it() {
    type LocalEdit = fn(&Replica) -> tidemark::Result<Option<tidemark::OpId>>;
    let edits: [(&str, LocalEdit); 2] = [
        ("increment", |r| r.increment("contacts", "c1", "visits", 1)),
        ("splice", |r| r.splice_text("contacts", "c1", "note", 0, 0, "hi")),
    ];
    for (name, edit) in edits {
        let a = Replica::in_memory().unwrap();
        let b = Replica::in_memory().unwrap();
        // Today the local side gives way, with an error that says what to do.
        if let Err(e) = edit(&a) {
            assert!(
                e.to_string().contains("needs a package"),
                "a schemaless {name} is refused without saying why: {e}"
            );
            assert!(a.view_rows().unwrap().is_empty(), "the refused {name} wrote no record");
            assert_eq!(a.status().unwrap().pending, 0, "the refused {name} wrote no op");
            continue;
        }
        let report = b.apply_pulled(&PulledPage {
            ops: common::all_ops(&a),
            end: Seq(0),
            mark: None,
        });
        assert!(
            report.is_ok(),
            "a schemaless {name} was accepted locally but refused by a peer: {report:?}"
        );
    }
}
