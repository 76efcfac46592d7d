//! Crash safety: a SIGKILLed import leaves a consistent committed prefix.

#![cfg(all(unix, feature = "cli"))]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidemark::Replica;

const BATCH: usize = 500;
const TOTAL: usize = 50_000;

fn write_input(dir: &Path) -> PathBuf {
    let input = dir.join("in.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    for i in 0..TOTAL {
        writeln!(f, r#"{{"id":"r{i:06}","fields":{{"name":"name {i}","email":"n{i}@example.com","n":{i},"vip":{},"city":"Paris"}}}}"#, i % 2 == 0).unwrap();
    }
    input
}

fn import(store: &Path, input: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.arg("--store")
        .arg(store)
        .args([
            "import",
            "contacts",
            input.to_str().unwrap(),
            "--batch",
            &BATCH.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Starts the import and SIGKILLs it once at least `records` are committed, read
/// through a handle of our own (the CLI opens its store for several processes).
fn kill_import_after(store: &Path, input: &Path, records: u64) {
    let mut child = import(store, input).spawn().unwrap();
    let started = Instant::now();
    // Our handle must never be the one that creates the file: wait until the import
    // has created it and had time to write its first transaction.
    while std::fs::metadata(store).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the import never created its store"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(100));
    loop {
        std::thread::sleep(Duration::from_millis(2));
        let committed = Replica::open_shared(store)
            .and_then(|r| r.status())
            .map(|s| s.pending)
            .unwrap_or(0);
        if committed >= records || started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert!(!status.success(), "the import was killed, not finished");
}

/// The store holds exactly the first whole batches, and its view equals the rebuilt one.
fn assert_committed_prefix(store: &Path) -> usize {
    let replica = Replica::open(store).unwrap();
    let rows = replica.view_rows().unwrap();
    let n = rows.len();
    assert!(n > 0 && n < TOTAL, "killed mid-run: {n} of {TOTAL} records committed");
    assert_eq!(n % BATCH, 0, "every batch is all or nothing ({n} records)");
    // The committed records are exactly the first n lines.
    for (i, (_, id, row)) in rows.iter().enumerate() {
        assert_eq!(id, &format!("r{i:06}"));
        let fields: serde_json::Value = serde_json::from_slice(row).unwrap();
        assert_eq!(fields["n"], i as u64);
    }
    assert_eq!(replica.status().unwrap().pending, n as u64);
    assert_eq!(replica.log_entries(tidemark::LogPos(0), usize::MAX).unwrap().len(), n);
    replica.rebuild_view().unwrap();
    assert_eq!(replica.view_rows().unwrap(), rows);
    n
}

#[test]
fn a_killed_import_leaves_whole_batches_and_a_view_equal_to_the_rebuilt_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_input(dir.path());
    // Early, middle and late in the run, each on a fresh store.
    let mut committed = Vec::new();
    for (run, records) in [1u64, 10_000, 30_000].into_iter().enumerate() {
        let store = dir.path().join(format!("crash{run}.db"));
        kill_import_after(&store, &input, records);
        let n = assert_committed_prefix(&store);
        assert!(
            n as u64 >= records,
            "killed after {records} records were committed, found {n}"
        );
        committed.push(n);
    }
    assert!(
        committed.windows(2).all(|w| w[0] <= w[1]),
        "later kills commit more: {committed:?}"
    );

    // The last store keeps working: running the import again completes it.
    let store = dir.path().join("crash2.db");
    let status = import(&store, &input).status().unwrap();
    assert!(status.success(), "the import runs again on a killed store");
    let replica = Replica::open(&store).unwrap();
    let rows = replica.view_rows().unwrap();
    assert_eq!(rows.len(), TOTAL);
    assert_eq!(
        replica.status().unwrap().pending,
        TOTAL as u64,
        "re-importing the committed records changed nothing"
    );
    replica.rebuild_view().unwrap();
    assert_eq!(replica.view_rows().unwrap(), rows);
}
