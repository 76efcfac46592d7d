//! A store whose creation is SIGKILLed opens afterwards. redb writes a new
//! file's header last and refuses for good a file left without it ("not a
//! redb database"), so a process killed while it creates a client store or a
//! server store must not leave such a file at the store's path.
//!
//! Each run kills a process that creates a new store at evenly spread moments
//! of its usual start-up time, then opens what it left.

#![cfg(all(unix, feature = "cli"))]

#[path = "common/cli.rs"]
mod cli;
#[path = "common/crash_procs.rs"]
mod crash_procs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crash_procs::Running;
use tidemark::Replica;
use tidemark::server::store::redb::RedbStore;

const KILLS: u32 = 60;

/// Starts `command(path)` for fresh paths, kills each at an evenly spread
/// moment of `usual` (the time an undisturbed run takes to have its store),
/// and returns the paths whose store `opens` refused, with its error.
fn kill_creations(
    dir: &Path,
    name: &str,
    command: impl Fn(&Path) -> Command,
    ready: impl Fn(&mut Running) -> bool,
    opens: impl Fn(&Path) -> Result<(), String>,
) -> Vec<String> {
    let started = Instant::now();
    let mut first = Running::spawn(&mut command(&dir.join(format!("{name}-usual"))));
    while !ready(&mut first) {
        assert!(started.elapsed() < Duration::from_secs(60), "{name} never got ready");
        std::thread::sleep(Duration::from_micros(200));
    }
    let usual = started.elapsed();
    first.kill();
    let _ = first.wait();

    let mut refused = Vec::new();
    for i in 0..KILLS {
        let path: PathBuf = dir.join(format!("{name}{i}"));
        let delay = usual.mul_f64(f64::from(i) / f64::from(KILLS));
        let mut running = Running::spawn(&mut command(&path));
        while running.elapsed() < delay && !running.has_exited() {
            std::thread::sleep(Duration::from_micros(100));
        }
        running.kill();
        let outcome = running.wait();
        assert!(!outcome.panicked(), "{name} panicked: {}", outcome.stderr);
        if let Err(e) = opens(&path) {
            refused.push(format!("killed after {delay:?}: {e}"));
        }
    }
    refused
}

#[test]
fn a_client_store_killed_while_it_is_created_opens_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let refused = kill_creations(
        dir.path(),
        "client.db",
        |path| {
            let mut cmd = cli::tidemark();
            cmd.arg("--store").arg(path).arg("status");
            cmd
        },
        |running| running.has_exited(),
        |path| match Replica::open_shared(path).and_then(|r| r.status()) {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        },
    );
    assert!(
        refused.is_empty(),
        "{} of {KILLS} killed creations:\n{}",
        refused.len(),
        refused.join("\n")
    );
}

#[test]
fn a_server_store_killed_while_it_is_created_opens_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let refused = kill_creations(
        dir.path(),
        "server-data",
        |path| {
            let mut cmd = cli::tidemark();
            cmd.args(["serve", "--data"])
                .arg(path)
                .args(["--listen", "127.0.0.1:0"])
                .env("TIDEMARK_ADMIN_TOKEN", cli::ADMIN_TOKEN);
            cmd
        },
        |running| running.stderr_so_far().contains("listening on"),
        |path| match RedbStore::open(path) {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        },
    );
    assert!(
        refused.is_empty(),
        "{} of {KILLS} killed creations:\n{}",
        refused.len(),
        refused.join("\n")
    );
}
