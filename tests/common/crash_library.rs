//! The library half of the crash loop: a workload on a store opened with
//! `Replica::open` (exclusive, one fsync per commit) in a process of its own,
//! the crash test binary run again, so that it can be SIGKILLed like the CLI.
//!
//! The child says on stdout what it does: `attempt ID N` before a put and
//! `acked ID N` once the put returned, which is when the write is acknowledged.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tidemark::protocol::SessionConfig;
use tidemark::remote::http::HttpRemote;
use tidemark::sync::Round;
use tidemark::{Binding, Replica};

use super::crash_ledger::{Ledger, fields};
use super::crash_procs::{Outcome, Running};

/// Names the child's store; the other settings come beside it.
pub const STORE_ENV: &str = "TIDEMARK_CRASH_LOOP_LIBRARY_STORE";
const URL_ENV: &str = "TIDEMARK_CRASH_LOOP_LIBRARY_URL";
const TOKEN_ENV: &str = "TIDEMARK_CRASH_LOOP_LIBRARY_TOKEN";
const START_ENV: &str = "TIDEMARK_CRASH_LOOP_LIBRARY_START";
/// The writer name of the library's records in the ledger.
pub const WRITER: &str = "lib";
/// The records the library writes over and over.
const RECORDS: u64 = 40;
/// Puts between two sync rounds.
const PUTS_PER_ROUND: u64 = 4;
/// Exit code of a child whose store failed it (not a kill, not a panic).
const STORE_FAILED: i32 = 3;

pub const SPACE: &str = "crm";
pub const USER: &str = "libby";

/// Binds a fresh store and downloads the package, in this process, so that the
/// child's first edits already validate against it.
pub fn prepare(store: &Path, url: &str, token: &str) {
    let replica = Replica::open(store).unwrap();
    replica
        .bind(
            &Binding {
                server: url.to_string(),
                user: USER.to_string(),
                space: SPACE.to_string(),
            },
            token,
        )
        .unwrap();
    sync(&replica, url, token).unwrap();
}

/// One sync round of an exclusive store, as the child and the heal run it.
pub fn sync(replica: &Replica, url: &str, token: &str) -> tidemark::Result<()> {
    let remote = HttpRemote::new(url, token, SPACE).map_err(tidemark::Error::Remote)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(Round::new(replica, SessionConfig::default()).run(&remote))?;
    Ok(())
}

/// The child's body: puts and sync rounds until it is killed. A put that fails
/// ends it with [`STORE_FAILED`]; a failed round (the server is down) does not.
pub fn run_child() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let (store, url, token) = (var(STORE_ENV), var(URL_ENV), var(TOKEN_ENV));
    let mut n: u64 = var(START_ENV).parse().unwrap();
    let replica = Replica::open(&store).unwrap_or_else(|e| {
        eprintln!("library workload: the store does not open: {e}");
        std::process::exit(STORE_FAILED)
    });
    // The test harness has written "test NAME ... " without a newline: end that line.
    println!();
    loop {
        for _ in 0..PUTS_PER_ROUND {
            let id = format!("{WRITER}-{}", n % RECORDS);
            println!("attempt {id} {n}");
            if let Err(e) = replica.put("contacts", &id, fields(WRITER, n)) {
                eprintln!("library workload: put {id} failed: {e}");
                std::process::exit(STORE_FAILED);
            }
            println!("acked {id} {n}");
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Err(e) = sync(&replica, &url, &token) {
            eprintln!("library workload: sync round failed: {e}");
        }
    }
}

/// The parent's handle on the child: started, killed, and started again.
pub struct LibraryChild {
    store: PathBuf,
    url: String,
    token: String,
    test_name: &'static str,
    running: Option<Running>,
    /// The next write number: above every one attempted so far.
    next: u64,
    pub runs: usize,
    pub acknowledged: usize,
}

impl LibraryChild {
    /// `test_name` is the ignored test of this binary that calls [`run_child`].
    pub fn new(store: &Path, url: &str, token: &str, test_name: &'static str) -> LibraryChild {
        LibraryChild {
            store: store.to_path_buf(),
            url: url.to_string(),
            token: token.to_string(),
            test_name,
            running: None,
            next: 1,
            runs: 0,
            acknowledged: 0,
        }
    }

    pub fn store(&self) -> &Path {
        &self.store
    }

    pub fn start(&mut self) {
        assert!(self.running.is_none());
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            self.test_name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(STORE_ENV, &self.store)
        .env(URL_ENV, &self.url)
        .env(TOKEN_ENV, &self.token)
        .env(START_ENV, self.next.to_string());
        self.running = Some(Running::spawn(&mut cmd));
        self.runs += 1;
    }

    /// Err with its output when the child ended by itself (a failed store or a panic).
    pub fn check_alive(&mut self) -> Result<(), String> {
        if !self.running.as_mut().is_some_and(|r| r.has_exited()) {
            return Ok(());
        }
        let outcome = self.running.take().unwrap().wait();
        Err(format!(
            "the library workload ended by itself ({:?}):\n{}",
            outcome.status, outcome.stderr
        ))
    }

    /// SIGKILLs the child and enters what it wrote in `ledger`; Err when it had
    /// panicked or ended by itself before.
    pub fn kill(&mut self, ledger: &mut Ledger) -> Result<(), String> {
        let mut running = self.running.take().expect("a running library workload");
        running.kill();
        let outcome = running.wait();
        self.record(&outcome, ledger);
        if outcome.panicked() || !outcome.killed() {
            return Err(format!(
                "the library workload ended with {:?} before the kill:\n{}",
                outcome.status, outcome.stderr
            ));
        }
        Ok(())
    }

    fn record(&mut self, outcome: &Outcome, ledger: &mut Ledger) {
        // A line cut short by the kill has no newline: not acknowledged.
        for line in outcome.stdout.split_inclusive('\n') {
            let Some(line) = line.strip_suffix('\n') else { continue };
            let mut words = line.split(' ');
            let (Some(what), Some(id), Some(n), None) = (words.next(), words.next(), words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "attempt" => {
                    ledger.attempt(WRITER, id, n);
                    self.next = self.next.max(n + 1);
                }
                "acked" => {
                    ledger.acknowledge(id, n);
                    self.acknowledged += 1;
                }
                _ => {}
            }
        }
    }
}
