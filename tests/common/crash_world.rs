//! The processes of the crash loop and one step of its workload: a command on
//! a client's store, with a kill of the command, the server, the client's
//! `sync --watch` or the library child somewhere inside it.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::Rng;
use rand::seq::IndexedRandom;

use super::cli::{CRM_PACKAGE, ok, tidemark};
use super::crash_check::{self, ServerReader};
use super::crash_ledger::{Ledger, fields};
use super::crash_library::{self, LibraryChild};
use super::crash_procs::{Outcome, RestartingServer, Running};

pub const SPACE: &str = crash_library::SPACE;
const ADMIN_TOKEN: &str = "crash-loop-admin-token-0123456789";
const USERS: [&str; 3] = ["alice", "bob", "carol"];
/// Records each client puts over and over, beside its imported ones.
const PUT_RECORDS: u64 = 15;
const IMPORT_RECORDS: u64 = 300;
/// Records per import transaction: an import is several transactions to land in.
const IMPORT_BATCH: u64 = 50;
/// Fresh stores kept to the end: those whose first login was killed (the
/// heal must finish them), and this many of those whose login completed.
const MAX_FRESH: usize = 8;
const KEPT_COMPLETE_LOGINS: usize = 2;
/// Longer than any command of this workload should take.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// What a step kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    /// The step's own CLI command.
    Command,
    Server,
    /// The `sync --watch` of the step's client.
    Watch,
    Library,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Put,
    Import,
    Sync,
    Status,
    FreshLogin,
}

const ACTIONS: [(Action, u32); 5] = [
    (Action::Put, 35),
    (Action::Import, 20),
    (Action::Sync, 25),
    (Action::Status, 10),
    (Action::FreshLogin, 10),
];

/// Kills done so far, by victim (commands by action).
#[derive(Debug, Default)]
pub struct Kills {
    pub command: usize,
    pub commands: std::collections::BTreeMap<String, usize>,
    pub server: usize,
    pub watch: usize,
    pub library: usize,
}

struct Client {
    name: String,
    user: &'static str,
    token: String,
    store: PathBuf,
    /// The next write number of this client.
    next: u64,
    watch: Option<Running>,
}

pub struct World {
    dir: tempfile::TempDir,
    seed: u64,
    server: RestartingServer,
    clients: Vec<Client>,
    /// Stores bootstrapped by a login during the loop, with their client.
    fresh: Vec<(PathBuf, usize)>,
    fresh_logins: usize,
    kept_complete_logins: usize,
    library: LibraryChild,
    library_token: String,
    ledger: Ledger,
    pub kills: Kills,
    /// Usual run time of each action (undisturbed runs), which kill delays fall in.
    usual: Vec<(Action, Duration)>,
}

fn client_cmd(store: &Path, args: &[&str]) -> Command {
    let mut cmd = tidemark();
    cmd.arg("--store").arg(store).args(args);
    cmd
}

fn login_cmd(store: &Path, url: &str, user: &str, token: &str) -> Command {
    let mut cmd = client_cmd(store, &["login", "--server", url, "--user", user, "--space", SPACE]);
    cmd.env("TIDEMARK_TOKEN", token);
    cmd
}

fn start_watch(store: &Path) -> Running {
    Running::spawn(&mut client_cmd(store, &["sync", "--watch", "--interval", "1"]))
}

impl World {
    pub fn new(library_test: &'static str, seed: u64) -> World {
        let dir = tempfile::tempdir().unwrap();
        let server = RestartingServer::start(&dir.path().join("server-data"), ADMIN_TOKEN);
        let admin = |args: &[&str]| {
            ok(tidemark()
                .args(["admin", "--server", &server.url])
                .args(args)
                .env("TIDEMARK_ADMIN_TOKEN", ADMIN_TOKEN))
        };
        let package = dir.path().join("crm.json");
        std::fs::write(&package, CRM_PACKAGE).unwrap();
        admin(&["create-space", SPACE, "--package", package.to_str().unwrap()]);
        let add_user = |user: &str| {
            let token = admin(&["add-user", user]).trim().to_string();
            admin(&["grant", user, SPACE]);
            token
        };
        let mut clients = Vec::new();
        for (k, user) in USERS.into_iter().enumerate() {
            let token = add_user(user);
            let store = dir.path().join(format!("c{k}.db"));
            ok(&mut login_cmd(&store, &server.url, user, &token));
            clients.push(Client {
                name: format!("c{k}"),
                user,
                token,
                store,
                next: 1,
                watch: None,
            });
        }
        let library_token = add_user(crash_library::USER);
        let library_store = dir.path().join("library.db");
        crash_library::prepare(&library_store, &server.url, &library_token);
        let mut library = LibraryChild::new(&library_store, &server.url, &library_token, library_test);
        library.start();
        for client in &mut clients {
            client.watch = Some(start_watch(&client.store));
        }
        World {
            dir,
            seed,
            server,
            clients,
            fresh: Vec::new(),
            fresh_logins: 0,
            kept_complete_logins: 0,
            library,
            library_token,
            ledger: Ledger::default(),
            kills: Kills::default(),
            usual: vec![
                (Action::Put, Duration::from_millis(20)),
                (Action::Import, Duration::from_millis(150)),
                (Action::Sync, Duration::from_millis(150)),
                (Action::Status, Duration::from_millis(15)),
                (Action::FreshLogin, Duration::from_millis(150)),
            ],
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "seed {}: {what}\nserver log:\n{}",
            self.seed,
            tail(&self.server.log(), 4000)
        )
    }

    fn usual(&self, action: Action) -> Duration {
        self.usual.iter().find(|(a, _)| *a == action).unwrap().1
    }

    fn learn(&mut self, action: Action, took: Duration) {
        let usual = &mut self.usual.iter_mut().find(|(a, _)| *a == action).unwrap().1;
        *usual = usual.mul_f64(0.8) + took.mul_f64(0.2);
    }

    /// The command of `action` on client `k`, entering its writes in the
    /// ledger as attempted; returns them (record ids and the write number).
    fn command(&mut self, action: Action, k: usize, rng: &mut impl Rng) -> (Command, Vec<String>, u64) {
        let url = self.server.url.clone();
        let client = &mut self.clients[k];
        let n = client.next;
        match action {
            Action::Put => {
                client.next += 1;
                let id = format!("{}-{}", client.name, rng.random_range(0..PUT_RECORDS));
                self.ledger.attempt(&client.name, &id, n);
                let name = format!("name={}-{n}", client.name);
                let age = format!("age={n}");
                let cmd = client_cmd(&client.store, &["put", "contacts", &id, &name, &age]);
                (cmd, vec![id], n)
            }
            Action::Import => {
                client.next += 1;
                let file = self.dir.path().join(format!("{}-import.jsonl", client.name));
                let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
                let mut ids = Vec::new();
                for j in 0..IMPORT_RECORDS {
                    let id = format!("imp{}-{j}", client.name);
                    self.ledger.attempt(&client.name, &id, n);
                    let line = serde_json::json!({"id": id, "fields": fields(&client.name, n)});
                    writeln!(out, "{line}").unwrap();
                    ids.push(id);
                }
                out.flush().unwrap();
                let batch = IMPORT_BATCH.to_string();
                let cmd = client_cmd(
                    &client.store,
                    &["import", "contacts", file.to_str().unwrap(), "--batch", &batch],
                );
                (cmd, ids, n)
            }
            Action::Sync => (client_cmd(&client.store, &["sync"]), vec![], n),
            Action::Status => (client_cmd(&client.store, &["status"]), vec![], n),
            Action::FreshLogin => {
                let store = self.dir.path().join(format!("fresh{}.db", self.fresh_logins));
                self.fresh_logins += 1;
                self.fresh.push((store.clone(), k));
                (login_cmd(&store, &url, client.user, &client.token), vec![], n)
            }
        }
    }

    /// One command on a random client, with the next kill of `schedule` inside
    /// it (or no kill); checks how the command ended and that nothing else died.
    pub fn step(&mut self, rng: &mut impl Rng, schedule: &mut Vec<Victim>) {
        let k = rng.random_range(0..self.clients.len());
        let mut action = ACTIONS.choose_weighted(rng, |(_, w)| *w).unwrap().0;
        if action == Action::FreshLogin && self.fresh.len() >= MAX_FRESH {
            action = Action::Sync;
        }
        let victim = if rng.random_bool(0.75) {
            schedule.last().copied()
        } else {
            None
        };
        // Inside the command's usual run time (a kill of the command itself a
        // little earlier, so that fewer of them miss a command that ended).
        let window = self
            .usual(action)
            .mul_f64(if victim == Some(Victim::Command) { 0.9 } else { 1.3 });
        let delay = window.mul_f64(rng.random_range(0.0..1.0));
        let (mut cmd, ids, n) = self.command(action, k, rng);
        let what = format!("{action:?} on {} ({cmd:?})", self.clients[k].name);

        let mut running = Running::spawn(&mut cmd);
        while running.elapsed() < delay && !running.has_exited() {
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut server_killed = false;
        match victim {
            None => {}
            // A command that already ended is not a kill: the victim stays next.
            Some(Victim::Command) if running.has_exited() => {}
            Some(Victim::Command) => {
                running.kill();
                self.kills.command += 1;
                *self.kills.commands.entry(format!("{action:?}")).or_default() += 1;
                schedule.pop();
            }
            Some(Victim::Server) => {
                self.kill_server();
                server_killed = true;
                schedule.pop();
            }
            Some(Victim::Watch) => {
                self.kill_watch(k);
                schedule.pop();
            }
            Some(Victim::Library) => {
                if let Err(e) = self.library.kill(&mut self.ledger) {
                    self.fail(&e);
                }
                self.library.start();
                self.kills.library += 1;
                schedule.pop();
            }
        }

        let outcome = running
            .wait_at_most(COMMAND_LIMIT)
            .unwrap_or_else(|e| self.fail(&format!("{what} {e}")));
        self.judge(action, &what, &outcome, server_killed);
        if action == Action::FreshLogin && outcome.code() == Some(0) {
            self.forget_complete_login();
        }
        if outcome.code() == Some(0) {
            for id in &ids {
                self.ledger.acknowledge(id, n);
            }
            if victim.is_none() {
                self.learn(action, outcome.took);
            }
        }
        self.check_alive();
    }

    /// Keeps the store of a completed first login to the end only while few
    /// are kept: each costs the heal a sync, and the login's own result was checked.
    fn forget_complete_login(&mut self) {
        if self.kept_complete_logins < KEPT_COMPLETE_LOGINS {
            self.kept_complete_logins += 1;
            return;
        }
        let (store, _) = self.fresh.pop().unwrap();
        std::fs::remove_file(&store).unwrap();
    }

    /// A command that was not killed must have done its job; none may panic.
    fn judge(&self, action: Action, what: &str, outcome: &Outcome, server_killed: bool) {
        if outcome.panicked() {
            self.fail(&format!("{what} panicked:\n{}", outcome.stderr));
        }
        if outcome.killed() {
            return;
        }
        let code = outcome.code();
        let fine = match action {
            Action::Put | Action::Import | Action::Status => code == Some(0),
            // A round that lost its server may fail (exit 1), with nothing lost.
            Action::Sync | Action::FreshLogin => code == Some(0) || (server_killed && code == Some(1)),
        };
        if !fine {
            self.fail(&format!(
                "{what} ended with {:?} (server killed: {server_killed}):\n{}",
                outcome.status, outcome.stderr
            ));
        }
    }

    fn kill_server(&mut self) {
        let outcome = self.server.kill();
        if outcome.panicked() || !outcome.killed() {
            self.fail(&format!("the server ended with {:?} before its kill", outcome.status));
        }
        self.kills.server += 1;
        self.server.restart();
    }

    fn kill_watch(&mut self, k: usize) {
        let mut running = self.clients[k].watch.take().unwrap();
        running.kill();
        let outcome = running.wait();
        if outcome.panicked() || !outcome.killed() {
            self.fail(&format!(
                "sync --watch of {} ended with {:?} before its kill:\n{}",
                self.clients[k].name, outcome.status, outcome.stderr
            ));
        }
        self.kills.watch += 1;
        self.clients[k].watch = Some(start_watch(&self.clients[k].store));
    }

    /// The server, the watches and the library child run until told otherwise.
    fn check_alive(&mut self) {
        if self.server.has_exited() {
            self.fail("the server ended by itself");
        }
        for k in 0..self.clients.len() {
            let watch = self.clients[k].watch.as_mut().unwrap();
            if watch.has_exited() {
                let outcome = self.clients[k].watch.take().unwrap().wait();
                self.fail(&format!(
                    "sync --watch of {} ended by itself ({:?}):\n{}",
                    self.clients[k].name, outcome.status, outcome.stderr
                ));
            }
        }
        if let Err(e) = self.library.check_alive() {
            self.fail(&e);
        }
    }

    /// Stores of the CLI (clients and fresh ones), with the user and token that log them in.
    fn cli_stores(&self) -> Vec<(PathBuf, &'static str, String)> {
        let mut stores: Vec<_> = self
            .clients
            .iter()
            .map(|c| (c.store.clone(), c.user, c.token.clone()))
            .collect();
        for (store, k) in &self.fresh {
            let c = &self.clients[*k];
            stores.push((store.clone(), c.user, c.token.clone()));
        }
        stores
    }

    /// Stops the watches (Ctrl-C: they must stop cleanly) and the library
    /// child, then syncs every store until every one has nothing pending and
    /// has pulled the server's head.
    pub fn heal(&mut self) {
        for k in 0..self.clients.len() {
            let mut watch = self.clients[k].watch.take().unwrap();
            // A watch restarted a moment ago may not have set up its Ctrl-C
            // handling yet (before that, SIGINT ends it as it ends any process,
            // with nothing opened): wait until it says it is syncing.
            let started = std::time::Instant::now();
            while !watch.stderr_so_far().contains("Ctrl-C stops") && started.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            watch.signal(libc::SIGINT);
            let outcome = watch
                .wait_at_most(Duration::from_secs(30))
                .unwrap_or_else(|e| self.fail(&format!("sync --watch of c{k} {e}")));
            if outcome.panicked() || outcome.code() != Some(0) {
                self.fail(&format!(
                    "sync --watch of c{k} ended with {:?} on Ctrl-C:\n{}",
                    outcome.status, outcome.stderr
                ));
            }
        }
        if let Err(e) = self.library.kill(&mut self.ledger) {
            self.fail(&e);
        }
        let url = self.server.url.clone();
        for round in 0..5 {
            for (store, user, token) in self.cli_stores() {
                // A login killed before it bound the store leaves it unbound: log in again.
                let bound = tidemark::Replica::open_shared(&store)
                    .unwrap_or_else(|e| self.fail(&format!("{} does not open after the kills: {e}", store.display())))
                    .binding()
                    .unwrap()
                    .is_some();
                let mut cmd = if bound {
                    client_cmd(&store, &["sync"])
                } else {
                    login_cmd(&store, &url, user, &token)
                };
                let outcome = Running::spawn(&mut cmd)
                    .wait_at_most(COMMAND_LIMIT)
                    .unwrap_or_else(|e| self.fail(&e));
                if outcome.panicked() || outcome.code() != Some(0) {
                    self.fail(&format!(
                        "healing round {round}: {cmd:?} ended with {:?}:\n{}",
                        outcome.status, outcome.stderr
                    ));
                }
            }
            let library = tidemark::Replica::open(self.library.store())
                .unwrap_or_else(|e| self.fail(&format!("the library store does not open after the kills: {e}")));
            if let Err(e) = crash_library::sync(&library, &url, &self.library_token) {
                self.fail(&format!("healing round {round}: the library store's sync failed: {e}"));
            }
            drop(library);
            if self.settled() {
                return;
            }
        }
        self.fail("five healing rounds left a store with pending ops or behind the head");
    }

    fn settled(&self) -> bool {
        let reader = ServerReader::new(&self.server.url, SPACE, &self.clients[0].token);
        let (_, head) = reader.ops();
        let mut statuses = Vec::new();
        for (store, _, _) in self.cli_stores() {
            statuses.push(tidemark::Replica::open_shared(&store).unwrap().status().unwrap());
        }
        statuses.push(tidemark::Replica::open(self.library.store()).unwrap().status().unwrap());
        statuses.iter().all(|s| s.pending == 0 && s.pulled == head)
    }
}

impl World {
    /// The invariants once healed (everything stopped but the server); returns
    /// a summary of what was checked.
    pub fn check(&mut self) -> String {
        let reader = ServerReader::new(&self.server.url, SPACE, &self.clients[0].token);
        let mut replicas = Vec::new();
        for (store, _, _) in self.cli_stores() {
            let name = store.file_name().unwrap().to_string_lossy().into_owned();
            replicas.push((name, tidemark::Replica::open_shared(&store).unwrap()));
        }
        let library = tidemark::Replica::open(self.library.store()).unwrap();
        replicas.push(("library.db".into(), library));
        let healed = crash_check::healed(&reader, &replicas, &self.ledger);
        let mut problems = healed.problems;

        if self.server.log().contains("panicked") {
            problems.push("the server panicked (see its log)".into());
        }
        let stopped = self.server.stop(libc::SIGTERM);
        if stopped.code() != Some(0) {
            problems.push(format!("the server ended with {:?} on SIGTERM", stopped.status));
        }
        if !problems.is_empty() {
            let shown = problems.len().min(40);
            self.fail(&format!(
                "{} problem(s) after healing:\n{}",
                problems.len(),
                problems[..shown].join("\n")
            ));
        }
        format!(
            "{} replicas equal to the server's {} records and {} ops, {} acknowledged writes kept ({} by {} library runs), server started {} times; usual run times {:?}",
            replicas.len(),
            healed.records,
            healed.head,
            self.ledger.acknowledged(),
            self.library.acknowledged,
            self.library.runs,
            self.server.starts,
            self.usual
        )
    }
}

/// The last `max` bytes of `text` (on a character boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
