//! One simulated world: a server, a few replicas on files, and a network
//! between them that loses, duplicates and delays requests. Every step is
//! drawn from the decision source and written to the trace.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tidemark::protocol::{Request, Response, Session, SessionConfig, SyncStore, Watermarks};
use tidemark::remote::RemoteError;
use tidemark::replica::{LogEntry, Sharing};
use tidemark::server::store::ServerStore;
use tidemark::{Binding, Error, Replica};

use super::choices::Choices;
use super::crash::{CRASH, Crashing};
use super::edits::{FIELDS, IDS, edit};
use super::server::{SPACE, Server, user_name};

/// A replica: its store file, whose user it belongs to, its running round.
pub struct Node {
    pub path: PathBuf,
    pub sharing: Sharing,
    pub replica: Option<Replica>,
    pub user: usize,
    session: Option<Session>,
    /// Earlier copies of the store file, with the user each belonged to.
    backups: Vec<(PathBuf, usize)>,
    /// The watermarks last seen, to check that they never move backwards.
    last: Option<Watermarks>,
}

impl Node {
    pub fn replica(&self) -> &Replica {
        self.replica.as_ref().expect("the replica is open")
    }

    fn open(&mut self) {
        self.replica = Some(Replica::open_with(&self.path, self.sharing).expect("the replica store opens"));
    }

    /// Closes the store (a crash, or a copy about to be made), runs `f`, opens it again.
    /// Ends the round in progress, if any.
    fn drop_session(&mut self) {
        // A round cut off after it noticed the server lost data has reset the
        // watermarks: they are not compared with those from before.
        if self.session.as_ref().is_some_and(|s| s.summary().epoch_changed) {
            self.last = None;
        }
        self.session = None;
    }

    fn with_closed(&mut self, f: impl FnOnce(&Path)) {
        self.drop_session();
        self.replica = None;
        f(&self.path);
        self.open();
    }
}

/// A request the network holds back; it reaches the server later, after its
/// sender gave up on it.
struct Delayed {
    user: usize,
    request: Request,
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub nodes: Vec<Node>,
    delayed: Vec<Delayed>,
    /// Op ids the server answered with a seq since it last lost data.
    pub committed: BTreeSet<u128>,
    /// Refused ops a person resolved (discarded, or retried as new ops).
    pub resolved: BTreeSet<String>,
    pub trace: Vec<String>,
    /// The server's head after the last step, and the op at it (history only grows).
    server_head: Option<(tidemark::Seq, Option<u128>)>,
    /// Whether faults are on (off while the world heals).
    faults: bool,
}

/// Where test files go: memory-backed storage when the machine has it.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("tidemark-sim").tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temporary directory")
}

fn binding(user: usize) -> Binding {
    Binding {
        server: "sim://server".into(),
        user: user_name(user),
        space: SPACE.into(),
    }
}

/// Whether the server may lose data in a run (restored from a backup, or
/// wiped): yes unless `TIDEMARK_SIM_SERVER_LOSS=0`.
pub fn server_loss() -> bool {
    std::env::var("TIDEMARK_SIM_SERVER_LOSS").map_or(true, |v| v != "0")
}

/// Errors a round may end with under faults; anything else fails the run.
fn expected(error: &Error) -> bool {
    match error {
        Error::Remote(e) => e.status.is_none(),
        Error::Sync(m) => m == CRASH || m.contains("epoch changed during the round"),
        _ => false,
    }
}

impl World {
    pub fn new(c: &mut dyn Choices) -> World {
        let replicas = 3 + c.index(3);
        let dir = scratch();
        let server = Server::new(dir.path(), replicas);
        let mut world = World {
            server,
            nodes: Vec::new(),
            delayed: Vec::new(),
            committed: BTreeSet::new(),
            resolved: BTreeSet::new(),
            trace: Vec::new(),
            server_head: None,
            faults: true,
            dir,
        };
        for i in 0..replicas {
            let sharing = if c.chance(50) {
                Sharing::Exclusive
            } else {
                Sharing::Processes
            };
            let mut node = Node {
                path: world.dir.path().join(format!("replica{i}.db")),
                sharing,
                replica: None,
                user: i,
                session: None,
                backups: Vec::new(),
                last: None,
            };
            node.open();
            node.replica()
                .bind(&binding(i), &world.server.tokens[i])
                .expect("bound");
            world.nodes.push(node);
            world.initial_sync(i);
        }
        world.log(format!(
            "{replicas} replicas, sharing {:?}",
            world.nodes.iter().map(|n| n.sharing).collect::<Vec<_>>()
        ));
        world
    }

    pub fn log(&mut self, line: String) {
        self.trace.push(line);
    }

    /// One step drawn from `c`.
    pub fn step(&mut self, c: &mut dyn Choices) {
        let n = self.nodes.len();
        let i = c.index(n);
        let loss = u64::from(server_loss());
        match c.weighted(&[12, 14, 3, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, loss, 1]) {
            0 => self.edit(c, i),
            1 => {
                let exchanges = 1 + c.below(8);
                self.log(format!("replica {i}: {exchanges} exchanges"));
                for _ in 0..exchanges {
                    if !self.exchange(c, i) {
                        break;
                    }
                }
            }
            2 => self.deliver_delayed(c),
            3 => self.crash(i),
            4 => self.backup(i),
            5 => self.restore(i, c.index(8)),
            6 => self.copy(c.index(n), i),
            7 => self.big_put(c, i),
            8 => {
                let read_only = c.chance(50);
                let user = self.nodes[i].user;
                self.log(format!("user {user} read-only: {read_only}"));
                self.server.set_access(user, read_only);
            }
            9 => {
                let retry = c.chance(50);
                self.log(format!("replica {i}: resolve rejected, retry {retry}"));
                let r = self.nodes[i].replica();
                // Resolved ops stay in the log, never reaching the server (a retry writes new ones).
                self.resolved
                    .extend(r.rejected().expect("rejected").into_iter().map(|x| x.op_id));
                r.resolve_rejected(retry).expect("resolve");
            }
            10 => self.switch_account(i, c.index(n)),
            11 => {
                self.log("server restarts".into());
                self.server.restart();
            }
            12 => {
                self.log("server backup".into());
                self.server.backup();
            }
            13 => {
                let pick = c.index(8);
                if self.server.restore(pick) {
                    self.log(format!("server restored from backup {pick}"));
                    self.server_lost_data();
                }
            }
            _ => {
                if server_loss() && c.chance(30) {
                    self.log("server wiped: a new epoch".into());
                    self.server.wipe();
                    self.server_lost_data();
                } else {
                    self.log(format!("package {}", self.server.package + 1));
                    self.server.change_package();
                }
            }
        }
        self.check_step();
    }

    fn edit(&mut self, c: &mut dyn Choices, i: usize) {
        let count = 1 + c.below(3);
        for _ in 0..count {
            let e = edit(c, self.nodes[i].replica());
            // A refused edit (a delete of a missing record) writes nothing: fine.
            let ids = self.nodes[i].replica().apply_edits(vec![e.clone()]);
            self.log(format!("replica {i}: {e:?} -> {ids:?}"));
        }
    }

    /// A put too large for the server: refused when pushed.
    fn big_put(&mut self, c: &mut dyn Choices, i: usize) {
        let id = IDS[c.index(IDS.len())];
        let mut x = c.below(u64::MAX);
        let name: String = (0..4000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (b'a' + (x % 26) as u8) as char
            })
            .collect();
        self.log(format!("replica {i}: big put of contacts/{id}"));
        let edit = tidemark::replica::Edit::put("contacts", id, serde_json::json!({ FIELDS[0]: name })).unwrap();
        self.nodes[i]
            .replica()
            .apply_edits(vec![edit])
            .expect("a big put is valid locally");
    }

    /// Sends one request of replica `i`'s round over the network; false when the round ended.
    fn exchange(&mut self, c: &mut dyn Choices, i: usize) -> bool {
        let config = SessionConfig {
            push_batch: 1 + c.index(4),
            max_push_bytes: 4 * 1024 * 1024,
            pull_page: 1 + c.index(7),
            snapshot_page: 1 + c.index(3),
            max_passes: 4,
        };
        let crash_after = (self.faults && c.chance(3)).then(|| c.below(6) as u32);
        let user = self.nodes[i].user;
        let mut session = self.nodes[i].session.take().unwrap_or_else(|| Session::new(config));
        // The replica leaves its node for the exchange, so the network can borrow the world.
        let replica = self.nodes[i].replica.take().expect("the replica is open");
        let outcome = {
            let store = Crashing::new(&replica, crash_after);
            let outcome = self.round_trip(c, &mut session, &store, user);
            (outcome, store.crashed.get())
        };
        self.nodes[i].replica = Some(replica);
        match outcome {
            (Ok(true), _) => {
                self.nodes[i].session = Some(session);
                true
            }
            (Ok(false), _) => {
                self.log(format!("replica {i}: round done {:?}", session.summary()));
                self.watch_watermarks(i, session.summary().epoch_changed);
                false
            }
            (Err(e), crashed) => {
                assert!(expected(&e), "replica {i}: the round failed unexpectedly: {e}");
                self.log(format!("replica {i}: round ended: {e}"));
                self.watch_watermarks(i, session.summary().epoch_changed);
                if crashed {
                    self.crash(i);
                }
                false
            }
        }
    }

    /// One request and its answer, through the faulty network. Ok(false): nothing left to send.
    fn round_trip(
        &mut self,
        c: &mut dyn Choices,
        session: &mut Session,
        store: &dyn SyncStore,
        user: usize,
    ) -> tidemark::Result<bool> {
        let Some(request) = session.next_request(store)? else {
            return Ok(false);
        };
        let lost = || RemoteError::unreachable("simulated network fault");
        let fault = if self.faults { c.weighted(&[80, 5, 5, 5, 5]) } else { 0 };
        if let Some(line) = describe_request(&request) {
            self.trace.push(line);
        }
        let answer = match fault {
            0 => self.call(user, request),
            1 => Err(lost()),
            2 => {
                let _ = self.call(user, request);
                Err(lost())
            }
            3 => {
                let first = self.call(user, request.clone());
                let second = self.call(user, request);
                if c.chance(50) { first } else { second }
            }
            _ => {
                self.delayed.push(Delayed { user, request });
                Err(lost())
            }
        };
        self.trace.push(format!(
            "  fault {fault}: {}",
            match &answer {
                Ok(r) => describe(r),
                Err(e) => e.to_string(),
            }
        ));
        match answer {
            Ok(response) => session.handle_response(store, response)?,
            Err(error) => session.handle_error(store, error)?,
        }
        Ok(!session.is_done())
    }

    /// A request reaching the server; remembers what it committed. A 5xx fails the run.
    fn call(&mut self, user: usize, request: Request) -> Result<Response, RemoteError> {
        let ids: Vec<u128> = match &request {
            Request::Push(p) => p.ops.iter().map(|o| o.id.as_u128()).collect(),
            _ => Vec::new(),
        };
        let answer = self.server.call(user, request);
        match &answer {
            Ok(Response::Push(r)) => {
                for (id, seq) in ids.iter().zip(&r.seqs) {
                    if seq.is_some() {
                        self.committed.insert(*id);
                    }
                }
            }
            Err(e) => assert!(e.status.is_none_or(|s| s < 500), "the server answered {e:?}"),
            Ok(_) => {}
        }
        answer
    }

    fn deliver_delayed(&mut self, c: &mut dyn Choices) {
        if self.delayed.is_empty() {
            return;
        }
        let late = self.delayed.remove(c.index(self.delayed.len()));
        let answer = self.call(late.user, late.request);
        self.log(format!(
            "a late request of user {} arrives: {}",
            late.user,
            match &answer {
                Ok(r) => describe(r),
                Err(e) => e.to_string(),
            }
        ));
    }

    /// Every request the network still holds arrives.
    pub fn deliver_all_delayed(&mut self) {
        while let Some(late) = self.delayed.pop() {
            let _ = self.call(late.user, late.request);
        }
    }

    fn crash(&mut self, i: usize) {
        self.log(format!("replica {i} crashes and restarts"));
        self.nodes[i].with_closed(|_| {});
    }

    fn backup(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let copy = node.path.with_file_name(format!("backup{i}-{}.db", node.backups.len()));
        node.with_closed(|path| {
            std::fs::copy(path, &copy).expect("backup copied");
        });
        let user = node.user;
        node.backups.push((copy, user));
        self.log(format!("replica {i}: backup"));
    }

    fn restore(&mut self, i: usize, pick: usize) {
        let node = &mut self.nodes[i];
        if node.backups.is_empty() {
            return;
        }
        let (copy, user) = node.backups[pick % node.backups.len()].clone();
        node.with_closed(|path| {
            std::fs::copy(&copy, path).expect("backup restored");
        });
        node.user = user;
        node.last = None;
        self.log(format!("replica {i}: restored from backup {pick}"));
    }

    /// `from`'s store copied over `to`'s: two stores with one actor.
    fn copy(&mut self, from: usize, to: usize) {
        if from == to {
            return;
        }
        let source = self.nodes[from].path.clone();
        self.nodes[from].drop_session();
        self.nodes[from].replica = None;
        self.nodes[to].with_closed(|path| {
            std::fs::copy(&source, path).expect("store copied");
        });
        self.nodes[from].open();
        self.nodes[to].user = self.nodes[from].user;
        self.nodes[to].last = None;
        self.log(format!("replica {from} copied over replica {to}"));
    }

    /// The store is cleared and bound to another user, as `login` does after its warning.
    fn switch_account(&mut self, i: usize, user: usize) {
        if self.nodes[i].user == user {
            return;
        }
        let token = self.server.tokens[user].clone();
        let node = &mut self.nodes[i];
        let sharing = node.sharing;
        node.with_closed(|path| {
            Replica::reset_file(path, sharing, &binding(user), &token).expect("account switched");
        });
        node.user = user;
        node.last = None;
        self.log(format!("replica {i} switches to user {user}"));
        self.initial_sync(i);
    }

    /// The round `login` runs after binding a store: it brings the package
    /// before the person edits. It may fail under faults, as a login can.
    fn initial_sync(&mut self, i: usize) {
        let user = self.nodes[i].user;
        let server = &self.server;
        let outcome = tidemark::sync::Round::new(self.nodes[i].replica(), SessionConfig::default())
            .run_blocking(|request| server.call(user, request));
        self.log(format!("replica {i}: initial sync {outcome:?}"));
        outcome.expect("the initial sync");
    }

    fn server_lost_data(&mut self) {
        self.committed.clear();
        self.server_head = None;
    }

    /// Watermarks only move forward, unless the server lost data (an epoch change).
    fn watch_watermarks(&mut self, i: usize, epoch_changed: bool) {
        let now = SyncStore::watermarks(self.nodes[i].replica()).expect("watermarks");
        if let Some(last) = &self.nodes[i].last {
            if !epoch_changed && last.epoch == now.epoch {
                assert!(
                    now.pushed >= last.pushed && now.pulled >= last.pulled,
                    "replica {i}: watermarks moved backwards: {last:?} then {now:?}"
                );
            }
        }
        self.nodes[i].last = Some(now);
    }

    /// Checks after every step: the pending count is the queue's length, the
    /// pulled watermark never passes an op the replica does not hold, and the
    /// server's history only grows.
    fn check_step(&mut self) {
        for (i, node) in self.nodes.iter().enumerate() {
            let r = node.replica();
            let status = r.status().expect("status");
            let queue = r.pending_ops(usize::MAX).expect("pending ops").len() as u64;
            assert_eq!(
                status.pending, queue,
                "replica {i}: pending count differs from its queue"
            );
        }
        let service = self.server.service();
        let head = service.store().head(SPACE).expect("head");
        let at_head = (head > 0).then(|| {
            let page = service.pull(&user_name(0), SPACE, head - 1, 1, None).expect("pull");
            page.ops[0].op.id.as_u128()
        });
        if let Some((last_head, last_at)) = self.server_head {
            assert!(
                head >= last_head,
                "the server's head moved back from {last_head} to {head}"
            );
            if head == last_head {
                assert_eq!(at_head, last_at, "the server's op at its head changed");
            }
        }
        self.server_head = Some((head, at_head));
    }
}

/// A push's op ids (their last 12 digits) for the trace; other requests show in their answers.
pub fn describe_request(request: &Request) -> Option<String> {
    let Request::Push(p) = request else { return None };
    let ids: Vec<String> = p.ops.iter().map(|o| o.id.to_string()[24..].to_string()).collect();
    Some(format!("  push {ids:?}"))
}

pub fn describe(response: &Response) -> String {
    match response {
        Response::Package(p) => format!("package v{} head {}", p.version, p.head),
        Response::Push(p) => format!(
            "push seqs {:?} refused {:?}",
            p.seqs,
            p.refused
                .iter()
                .map(|r| (r.index, r.code.as_str(), r.message.as_str()))
                .collect::<Vec<_>>()
        ),
        Response::Pull(p) => format!("pull {} ops to {} more {}", p.ops.len(), p.end, p.more),
        Response::Snapshot(s) => format!("snapshot {} docs next {:?}", s.docs.len(), s.next),
    }
}

/// The ops of a log: local ones with their positions (a rewritten edit keeps
/// its id, so an id can be there twice), pulled ones, and the seq a snapshot
/// bootstrap covered.
pub fn logged_ops(replica: &Replica) -> (Vec<(tidemark::LogPos, u128)>, Vec<u128>, tidemark::Seq) {
    let (mut local, mut pulled) = (Vec::new(), Vec::new());
    let mut snapshot = tidemark::Seq::ZERO;
    let discarded: std::collections::BTreeSet<tidemark::LogPos> =
        replica.discarded().expect("discarded").into_iter().collect();
    for (pos, entry) in replica.log_entries(tidemark::LogPos(0), usize::MAX).expect("log") {
        match entry {
            LogEntry::Local(op) => local.push((pos, op.id.as_u128())),
            // A pulled op that left the history for another version of it.
            LogEntry::Pulled(_, _) if discarded.contains(&pos) => {}
            LogEntry::Pulled(op, _) => pulled.push(op.id.as_u128()),
            LogEntry::Snapshot { as_of, .. } => snapshot = snapshot.max(as_of),
        }
    }
    (local, pulled, snapshot)
}
