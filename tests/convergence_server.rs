//! Convergence through a server that checks every change. Replicas on files
//! edit, sync, are restored from earlier copies of their store, are copied over
//! one another, lose write access and get it back, and have ops refused as too
//! large; whatever happened, once access is back and queues drain:
//!
//! - nothing is pending and no op was refused except for the two reasons the
//!   scenario provokes (a restored or copied store heals, it is never refused);
//! - every replica's log holds each op once, and every op the server holds;
//! - every replica shows the same view, equal to the view rebuilt from its log,
//!   to the server's materialized records and to a fresh replica's bootstrap;
//! - conflicts are listed the same everywhere;
//! - a counter no put touched holds exactly the increments that reached the
//!   server, each once (a model of what was delivered, restored and retried).

#![cfg(feature = "server")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::Value as Json;
use tidemark::protocol::SessionConfig;
use tidemark::protocol::message::Grant;
use tidemark::replica::{Edit, LogEntry};
use tidemark::server::Limits;
use tidemark::server::local::LocalRemote;
use tidemark::server::store::redb::RedbStore;
use tidemark::sync::Round;
use tidemark::{Replica, Status};

use common::server::{SPACE, Svc, server_on};

#[path = "convergence/edits.rs"]
mod edits;
use edits::*;

/// The server takes changes up to this size; a big put is larger.
const MAX_OP_BYTES: usize = 2048;
/// Characters of a big put's value (random letters: they do not compress below the limit).
const BIG_CHARS: usize = 4000;

#[derive(Debug, Clone)]
enum Action {
    Edit {
        replica: usize,
        edit: EditAction,
    },
    Batch {
        replica: usize,
        edits: Vec<EditAction>,
    },
    /// A put of `contacts/IDS[id].name` too large for the server.
    BigPut {
        replica: usize,
        id: usize,
        seed: u64,
    },
    Sync {
        replica: usize,
    },
    /// Copies the replica's store file aside, as a backup would.
    Backup {
        replica: usize,
    },
    /// Puts back one of the replica's earlier backups (`pick` modulo their number).
    Restore {
        replica: usize,
        pick: usize,
    },
    /// Copies `from`'s store file over `to`'s: `to` becomes a second copy of `from`.
    Copy {
        from: usize,
        to: usize,
    },
    /// Makes the user of the replica a read-only member, or a writer again.
    Access {
        replica: usize,
        read_only: bool,
    },
    /// `rejected --retry` or `--discard`.
    Resolve {
        replica: usize,
        retry: bool,
    },
}

#[derive(Debug, Clone)]
struct Scenario {
    replicas: usize,
    actions: Vec<Action>,
}

fn action(replicas: usize) -> BoxedStrategy<Action> {
    let r = 0..replicas;
    prop_oneof![
        10 => (r.clone(), edit_action(true)).prop_map(|(replica, edit)| Action::Edit { replica, edit }),
        2 => (r.clone(), prop::collection::vec(batch_edit(true), 2..5))
            .prop_map(|(replica, edits)| Action::Batch { replica, edits }),
        1 => (r.clone(), 0..IDS.len(), any::<u64>()).prop_map(|(replica, id, seed)| Action::BigPut { replica, id, seed }),
        8 => r.clone().prop_map(|replica| Action::Sync { replica }),
        2 => r.clone().prop_map(|replica| Action::Backup { replica }),
        2 => (r.clone(), any::<usize>()).prop_map(|(replica, pick)| Action::Restore { replica, pick }),
        1 => (r.clone(), r.clone()).prop_map(|(from, to)| Action::Copy { from, to }),
        1 => (r.clone(), any::<bool>()).prop_map(|(replica, read_only)| Action::Access { replica, read_only }),
        1 => (r, any::<bool>()).prop_map(|(replica, retry)| Action::Resolve { replica, retry }),
    ]
    .boxed()
}

fn scenario(max_actions: usize) -> impl Strategy<Value = Scenario> {
    (3usize..=4).prop_flat_map(move |replicas| {
        prop::collection::vec(action(replicas), 1..max_actions).prop_map(move |actions| Scenario { replicas, actions })
    })
}

// ---------------------------------------------------------------- the model

/// One increment as the model tracks it: its identity survives copies of a
/// store (the same op pushed twice is one op), a retry is a new one.
type Inc = (u64, usize, i64);

/// What the model knows of one store: increments not yet on the server and
/// increments refused (read-only) and not yet resolved.
#[derive(Debug, Clone, Default)]
struct Queue {
    pending: Vec<Inc>,
    rejected: Vec<Inc>,
}

// ---------------------------------------------------------------- running

struct Sim {
    dir: tempfile::TempDir,
    service: Svc,
    tokens: Vec<String>,
    /// The user each replica's store belongs to (a copied store keeps its user).
    user_of: Vec<usize>,
    read_only: Vec<bool>,
    replicas: Vec<Option<Replica>>,
    queues: Vec<Queue>,
    backups: Vec<Vec<(PathBuf, Queue)>>,
    delivered: BTreeMap<u64, (usize, i64)>,
    next_inc: u64,
}

fn user(i: usize) -> String {
    format!("user{i}")
}

impl Sim {
    fn new(replicas: usize) -> Sim {
        let users: Vec<String> = (0..replicas).map(user).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let limits = Limits {
            max_op_bytes: MAX_OP_BYTES,
            ..Limits::default()
        };
        let (service, tokens) = server_on(
            RedbStore::in_memory().unwrap(),
            Some(common::crm_package()),
            &users,
            limits,
        );
        let dir = tempfile::tempdir().unwrap();
        let mut sim = Sim {
            dir,
            service,
            tokens,
            user_of: (0..replicas).collect(),
            read_only: vec![false; replicas],
            replicas: Vec::new(),
            queues: vec![Queue::default(); replicas],
            backups: vec![Vec::new(); replicas],
            delivered: BTreeMap::new(),
            next_inc: 0,
        };
        for i in 0..replicas {
            let replica = Replica::open(sim.path(i)).unwrap();
            sim.replicas.push(Some(replica));
            sim.sync(i); // downloads the package
        }
        sim
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("replica{i}.db"))
    }

    fn replica(&self, i: usize) -> &Replica {
        self.replicas[i].as_ref().expect("open")
    }

    fn status(&self, i: usize) -> Status {
        self.replica(i).status().unwrap()
    }

    /// Closes replica `i`, runs `f` on its file, opens it again.
    fn with_closed(&mut self, i: usize, f: impl FnOnce(&Path)) {
        self.replicas[i] = None;
        f(&self.path(i));
        self.replicas[i] = Some(Replica::open(self.path(i)).unwrap());
    }

    fn edit(&mut self, i: usize, edits: &[EditAction]) {
        let r = self.replica(i);
        let tidemark_edits: Vec<Edit> = edits.iter().map(|e| to_edit(r, e)).collect();
        r.apply_edits(tidemark_edits.clone())
            .unwrap_or_else(|e| panic!("replica {i} refused {tidemark_edits:?}: {e}"));
        for edit in edits {
            if let EditAction::Increment { id, by } = edit {
                let inc = (self.next_inc, *id, *by);
                self.next_inc += 1;
                self.queues[i].pending.push(inc);
            }
        }
    }

    fn big_put(&mut self, i: usize, id: usize, seed: u64) {
        let mut rng = Mix(seed);
        let name: String = (0..BIG_CHARS).map(|_| (b'a' + rng.below(26) as u8) as char).collect();
        let edit = Edit::put("contacts", IDS[id], serde_json::json!({ "name": name })).unwrap();
        self.replica(i).apply_edits(vec![edit]).unwrap();
    }

    fn sync(&mut self, i: usize) {
        let user = self.user_of[i];
        let remote = LocalRemote::new(self.service.clone(), self.tokens[user].clone(), SPACE);
        let summary = Round::new(self.replica(i), SessionConfig::default())
            .run_blocking(|req| remote.call_blocking(req))
            .unwrap_or_else(|e| panic!("replica {i}: sync failed: {e}"));
        let queue = &mut self.queues[i];
        if self.read_only[user] {
            queue.rejected.append(&mut queue.pending);
        } else {
            for (inc, id, by) in queue.pending.drain(..) {
                self.delivered.insert(inc, (id, by));
            }
        }
        // The round pulled everything: a refused op that another copy of the
        // store delivered meanwhile is settled (see `apply_pulled`).
        queue.rejected.retain(|(inc, _, _)| !self.delivered.contains_key(inc));
        let status = self.status(i);
        assert_eq!(status.pending, 0, "replica {i} has ops left after a sync: {summary:?}");
    }

    fn backup(&mut self, i: usize) {
        let copy = self.dir.path().join(format!("backup{i}-{}.db", self.backups[i].len()));
        self.with_closed(i, |path| {
            std::fs::copy(path, &copy).unwrap();
        });
        self.backups[i].push((copy, self.queues[i].clone()));
    }

    fn restore(&mut self, i: usize, pick: usize) {
        if self.backups[i].is_empty() {
            return;
        }
        let (copy, queue) = self.backups[i][pick % self.backups[i].len()].clone();
        self.with_closed(i, |path| {
            std::fs::copy(&copy, path).unwrap();
        });
        self.queues[i] = queue;
    }

    fn copy(&mut self, from: usize, to: usize) {
        if from == to {
            return;
        }
        let source = self.path(from);
        self.replicas[from] = None;
        self.with_closed(to, |path| {
            std::fs::copy(&source, path).unwrap();
        });
        self.replicas[from] = Some(Replica::open(&source).unwrap());
        self.user_of[to] = self.user_of[from];
        self.queues[to] = self.queues[from].clone();
    }

    fn access(&mut self, i: usize, read_only: bool) {
        let user = self.user_of[i];
        self.service
            .grant(&Grant {
                user: self::user(user),
                space: SPACE.into(),
                read_only,
            })
            .unwrap();
        self.read_only[user] = read_only;
    }

    fn resolve(&mut self, i: usize, retry: bool) {
        self.replica(i).resolve_rejected(retry).unwrap();
        let refused = std::mem::take(&mut self.queues[i].rejected);
        if retry {
            for (_, id, by) in refused {
                let inc = (self.next_inc, id, by);
                self.next_inc += 1;
                self.queues[i].pending.push(inc);
            }
        }
    }

    fn run(&mut self, action: &Action) {
        match action {
            Action::Edit { replica, edit } => self.edit(*replica, std::slice::from_ref(edit)),
            Action::Batch { replica, edits } => self.edit(*replica, edits),
            Action::BigPut { replica, id, seed } => self.big_put(*replica, *id, *seed),
            Action::Sync { replica } => self.sync(*replica),
            Action::Backup { replica } => self.backup(*replica),
            Action::Restore { replica, pick } => self.restore(*replica, *pick),
            Action::Copy { from, to } => self.copy(*from, *to),
            Action::Access { replica, read_only } => self.access(*replica, *read_only),
            Action::Resolve { replica, retry } => self.resolve(*replica, *retry),
        }
    }

    /// Every op the server holds, as (seq, op id), in seq order.
    fn server_ops(&self) -> Vec<(tidemark::Seq, u128)> {
        let mut since = tidemark::Seq::ZERO;
        let mut ids = Vec::new();
        loop {
            let page = self.service.pull(&user(0), SPACE, since, 1000, None).unwrap();
            ids.extend(page.ops.iter().map(|p| (p.seq, p.op.id.as_u128())));
            since = page.end;
            if !page.more {
                return ids;
            }
        }
    }
}

/// The op ids of a replica's local and of its pulled log entries, and the
/// server seq its snapshot bootstrap covered (0 without one). A local edit
/// written again keeps its op id (so it is in `local` more than once), and one
/// that reached the server through another copy of the store is in both lists.
fn logged_ops(replica: &Replica) -> (Vec<u128>, Vec<u128>, tidemark::Seq) {
    let (mut local, mut pulled) = (Vec::new(), Vec::new());
    let mut snapshot = tidemark::Seq::ZERO;
    for (_, entry) in replica.log_entries(tidemark::LogPos(0), usize::MAX).unwrap() {
        match entry {
            LogEntry::Local(op) => local.push(op.id.as_u128()),
            LogEntry::Pulled(op, _) => pulled.push(op.id.as_u128()),
            LogEntry::Snapshot { as_of, .. } => snapshot = snapshot.max(as_of),
        }
    }
    (local, pulled, snapshot)
}

fn unique(ids: &[u128]) -> BTreeSet<u128> {
    ids.iter().copied().collect()
}

fn run(s: &Scenario) {
    let mut sim = Sim::new(s.replicas);
    for action in &s.actions {
        sim.run(action);
    }

    // Heal: every user may write again; everyone syncs until nothing moves.
    for i in 0..s.replicas {
        sim.access(i, false);
    }
    for _ in 0..3 {
        for i in 0..s.replicas {
            sim.sync(i);
        }
    }

    let server_ops = sim.server_ops();
    let ids: Vec<u128> = server_ops.iter().map(|(_, id)| *id).collect();
    assert_eq!(unique(&ids).len(), ids.len(), "the server stored an op twice");
    let head = server_ops.len() as u64;

    for i in 0..s.replicas {
        let r = sim.replica(i);
        let status = r.status().unwrap();
        assert_eq!(status.pending, 0, "replica {i}");
        assert_eq!(status.pulled, head, "replica {i} has not pulled everything");
        for rejection in r.rejected().unwrap() {
            assert!(
                matches!(rejection.code.as_str(), "op_too_large" | "read_only"),
                "replica {i}: an op refused for an unexpected reason: {rejection:?}"
            );
        }
        let (local, pulled, snapshot) = logged_ops(r);
        let pulled_set = unique(&pulled);
        assert_eq!(pulled_set.len(), pulled.len(), "replica {i} logged a pulled op twice");
        let set: BTreeSet<u128> = unique(&local).union(&pulled_set).copied().collect();
        let missing: Vec<_> = server_ops
            .iter()
            .filter(|(seq, id)| *seq > snapshot && !set.contains(id))
            .map(|(seq, _)| seq)
            .collect();
        assert!(
            missing.is_empty(),
            "replica {i} misses the server ops of seqs {missing:?}"
        );
    }

    // One view everywhere, equal to the rebuilt view and to the server's records.
    let view = sim.replica(0).view_rows().unwrap();
    for i in 0..s.replicas {
        let r = sim.replica(i);
        assert_eq!(
            readable(&r.view_rows().unwrap()),
            readable(&view),
            "replica {i} differs from replica 0"
        );
        r.rebuild_view().unwrap();
        assert_eq!(
            readable(&r.view_rows().unwrap()),
            readable(&view),
            "replica {i}: rebuilt view differs"
        );
    }
    for (collection, id, row) in &view {
        let fields = sim.service.record(&user(0), SPACE, collection, id).unwrap();
        let fields = fields.unwrap_or_else(|| panic!("{collection}/{id} is in the views but not on the server"));
        assert_eq!(
            &serde_json::to_vec(&fields).unwrap(),
            row,
            "{collection}/{id} differs on the server"
        );
    }
    let fresh = Replica::in_memory().unwrap();
    let remote = LocalRemote::new(sim.service.clone(), sim.tokens[0].clone(), SPACE);
    Round::new(&fresh, SessionConfig::default())
        .run_blocking(|req| remote.call_blocking(req))
        .unwrap();
    assert_eq!(
        readable(&fresh.view_rows().unwrap()),
        readable(&view),
        "a fresh replica's bootstrap differs"
    );

    let conflicts = sim.replica(0).conflicts(None, None).unwrap();
    for i in 1..s.replicas {
        assert_eq!(sim.replica(i).conflicts(None, None).unwrap(), conflicts, "replica {i}");
    }

    assert_counters_hold_the_delivered_increments(s, &sim);
}

/// A `visits` counter that no put touched holds the sum of the increments the
/// model says reached the server: none lost, none twice.
fn assert_counters_hold_the_delivered_increments(s: &Scenario, sim: &Sim) {
    let mut put_visits = [false; IDS.len()];
    for action in &s.actions {
        let edits = match action {
            Action::Edit { edit, .. } => std::slice::from_ref(edit),
            Action::Batch { edits, .. } => edits.as_slice(),
            _ => &[],
        };
        for edit in edits {
            if let EditAction::Put {
                accounts: false,
                id,
                fields,
            } = edit
            {
                put_visits[*id] |= fields.iter().any(|(f, _)| FIELDS[*f] == "visits");
            }
        }
    }
    let mut sum = [None::<i64>; IDS.len()];
    for (id, by) in sim.delivered.values() {
        *sum[*id].get_or_insert(0) += by;
    }
    for (i, id) in IDS.iter().enumerate() {
        if put_visits[i] {
            continue;
        }
        if let Some(row) = sim.replica(0).get("contacts", id).unwrap() {
            assert_eq!(
                row.get("visits"),
                sum[i].map(Json::from).as_ref(),
                "contacts/{id}: the counter is not the sum of the delivered increments"
            );
        }
    }
}

proptest! {
    // CONVERGENCE_CASES=500 cargo test --test convergence_server: a longer soak.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("CONVERGENCE_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(32)
    ))]

    #[test]
    fn replicas_converge_through_restores_copies_and_refusals(s in scenario(50)) {
        run(&s);
    }
}

/// Cases the property found, kept as they were shrunk.
mod found {
    use super::{Action, EditAction, Json, Scenario, run};

    /// A copy delivers an edit its twin had refused (read-only): the twin merges
    /// it when pulled and settles the rejection.
    #[test]
    fn an_edit_refused_on_one_copy_and_delivered_by_the_other() {
        let put = |replica, name: &str| Action::Edit {
            replica,
            edit: EditAction::Put {
                accounts: false,
                id: 0,
                fields: vec![(0, Json::from(name))],
            },
        };
        run(&Scenario {
            replicas: 3,
            actions: vec![
                put(1, ""),
                Action::Sync { replica: 1 },
                put(2, "a"),
                Action::Copy { from: 2, to: 0 },
                Action::Access {
                    replica: 0,
                    read_only: true,
                },
                Action::Sync { replica: 2 },
                put(0, "a"),
            ],
        });
    }

    /// Two copies hold the same pending increment and both must write it again
    /// under a fresh actor: it counts once.
    #[test]
    fn a_pending_increment_held_by_two_copies_counts_once() {
        let inc = |replica, by| Action::Edit {
            replica,
            edit: EditAction::Increment { id: 1, by },
        };
        run(&Scenario {
            replicas: 4,
            actions: vec![
                Action::Copy { from: 1, to: 0 },
                inc(0, 1),
                Action::Sync { replica: 1 },
                inc(1, 0),
                Action::Sync { replica: 1 },
                Action::Copy { from: 0, to: 1 },
            ],
        });
    }

    /// A refused increment by 0 created its counter; the retry creates it again.
    #[test]
    fn a_retried_increment_by_zero_creates_its_counter() {
        run(&Scenario {
            replicas: 4,
            actions: vec![
                Action::Edit {
                    replica: 3,
                    edit: EditAction::Increment { id: 0, by: 0 },
                },
                Action::Access {
                    replica: 3,
                    read_only: true,
                },
                Action::Sync { replica: 3 },
                Action::Resolve {
                    replica: 3,
                    retry: true,
                },
                Action::Edit {
                    replica: 0,
                    edit: EditAction::Splice {
                        id: 0,
                        pos: 0,
                        del: 0,
                        text: String::new(),
                    },
                },
            ],
        });
    }
}
