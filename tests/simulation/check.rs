//! The end of a run: faults heal, queues drain, and the invariants hold.

use std::collections::BTreeSet;

use tidemark::Replica;
use tidemark::protocol::SessionConfig;
use tidemark::server::local::LocalRemote;
use tidemark::sync::Round;

use super::server::{SPACE, user_name};
use super::world::{World, describe, describe_request, logged_ops};

/// Codes an op may be refused with in a run: a read-only member's edits and
/// big puts. Anything else is a bug.
const PROVOKED: [&str; 2] = ["read_only", "op_too_large"];

fn readable(rows: &[(String, String, Vec<u8>)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(c, i, row)| (c.clone(), i.clone(), String::from_utf8_lossy(row).into_owned()))
        .collect()
}

/// Every user may write again, late requests arrive, then every replica syncs
/// without faults until nothing moves.
pub fn heal(world: &mut World) {
    world.log("heal".into());
    for user in 0..world.nodes.len() {
        world.server.set_access(user, false);
    }
    world.deliver_all_delayed();
    for _ in 0..4 {
        for i in 0..world.nodes.len() {
            let user = world.nodes[i].user;
            let server = &world.server;
            let mut exchanges = Vec::new();
            let outcome = Round::new(world.nodes[i].replica(), SessionConfig::default()).run_blocking(|request| {
                exchanges.extend(describe_request(&request));
                let answer = server.call(user, request);
                exchanges.push(match &answer {
                    Ok(r) => format!("  {}", describe(r)),
                    Err(e) => format!("  {e}"),
                });
                answer
            });
            world.trace.extend(exchanges);
            let summary = outcome.unwrap_or_else(|e| panic!("replica {i}: a sync without faults failed: {e}"));
            world.log(format!("replica {i}: healing round {summary:?}"));
        }
    }
}

/// The server's ops, as (seq, op id), in seq order.
fn server_ops(world: &World) -> Vec<(tidemark::Seq, u128)> {
    let service = world.server.service();
    let mut since = tidemark::Seq::ZERO;
    let mut ids = Vec::new();
    loop {
        let page = service.pull(&user_name(0), SPACE, since, 1000, None).expect("pull");
        ids.extend(page.ops.iter().map(|p| (p.seq, p.op.id.as_u128())));
        since = page.end;
        if !page.more {
            return ids;
        }
    }
}

pub fn invariants(world: &World) {
    let ops = server_ops(world);
    let on_server: BTreeSet<u128> = ops.iter().map(|(_, id)| *id).collect();
    assert_eq!(on_server.len(), ops.len(), "the server stored an op twice");
    let head = ops.len() as u64;
    let lost: Vec<_> = world.committed.difference(&on_server).collect();
    assert!(lost.is_empty(), "ops the server committed are gone: {lost:x?}");

    for (i, node) in world.nodes.iter().enumerate() {
        let r = node.replica();
        let status = r.status().expect("status");
        assert_eq!(
            r.pending_ops(usize::MAX).expect("pending ops").len() as u64,
            status.pending,
            "replica {i}: the pending count is not the queue's length"
        );
        assert_eq!(status.pending, 0, "replica {i} still has pending ops");
        assert_eq!(status.pulled, head, "replica {i} has not pulled everything");
        let rejected = r.rejected().expect("rejected");
        for rejection in &rejected {
            assert!(
                PROVOKED.contains(&rejection.code.as_str()),
                "replica {i}: an op refused for a reason the run did not provoke: {rejection:?}"
            );
        }
        let refused: BTreeSet<String> = rejected.iter().map(|r| r.op_id.clone()).collect();
        let (local, pulled, snapshot) = logged_ops(r);
        let pulled_set: BTreeSet<u128> = pulled.iter().copied().collect();
        assert_eq!(pulled_set.len(), pulled.len(), "replica {i} logged a pulled op twice");
        let discarded: BTreeSet<tidemark::LogPos> = r.discarded().expect("discarded").into_iter().collect();
        let unsent: Vec<String> = local
            .iter()
            .filter(|(pos, id)| !on_server.contains(id) && !discarded.contains(pos))
            .map(|(_, id)| uuid_text(*id))
            .filter(|id| !refused.contains(id) && !world.resolved.contains(id))
            .collect();
        assert!(
            unsent.is_empty(),
            "replica {i} holds local ops that are neither on the server, refused nor discarded: {unsent:?}"
        );
        let held: BTreeSet<u128> = local.iter().map(|(_, id)| *id).chain(pulled_set).collect();
        let missing: Vec<tidemark::Seq> = ops
            .iter()
            .filter(|(seq, id)| *seq > snapshot && !held.contains(id))
            .map(|(seq, _)| *seq)
            .collect();
        assert!(
            missing.is_empty(),
            "replica {i} misses the server ops of seqs {missing:?}"
        );
    }

    // A fresh bootstrap holds exactly the server's documents: the reference
    // every replica's view and conflicts are held to.
    let service = world.server.service();
    service.materialize(SPACE).expect("materialize");
    let fresh = Replica::in_memory().expect("in-memory replica");
    let remote = LocalRemote::new(service.clone(), world.server.tokens[0].clone(), SPACE);
    Round::new(&fresh, SessionConfig::default())
        .run_blocking(|request| remote.call_blocking(request))
        .expect("a fresh replica bootstraps");
    let view = fresh.view_rows().expect("view");
    for (collection, id, row) in &view {
        let fields = service
            .record(&user_name(0), SPACE, collection, id)
            .expect("record")
            .unwrap_or_else(|| panic!("{collection}/{id} is in a fresh bootstrap but not on the server"));
        assert_eq!(
            String::from_utf8_lossy(&serde_json::to_vec(&fields).unwrap()),
            String::from_utf8_lossy(row),
            "{collection}/{id} differs between the server and a fresh bootstrap"
        );
    }
    for (i, node) in world.nodes.iter().enumerate() {
        let r = node.replica();
        assert_eq!(
            readable(&r.view_rows().expect("view")),
            readable(&view),
            "replica {i} differs from a fresh bootstrap of the server"
        );
        r.rebuild_view().expect("rebuild");
        assert_eq!(
            readable(&r.view_rows().expect("view")),
            readable(&view),
            "replica {i}: the view rebuilt from its log differs"
        );
    }

    let conflicts = fresh.conflicts(None, None).expect("conflicts");
    for (i, node) in world.nodes.iter().enumerate() {
        assert_eq!(
            node.replica().conflicts(None, None).expect("conflicts"),
            conflicts,
            "replica {i}: conflicts differ from a fresh bootstrap's"
        );
    }
}

fn uuid_text(id: u128) -> String {
    tidemark::OpId::from_u128(id).to_string()
}
