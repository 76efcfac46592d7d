//! Crash safety: a SIGKILLed import leaves a consistent committed prefix.

#![cfg(all(unix, feature = "cli"))]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tidemark::Replica;

#[test]
fn a_killed_import_leaves_whole_batches_and_a_view_equal_to_the_rebuilt_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("crash.db");
    let input = dir.path().join("in.jsonl");
    let batch = 500;
    let total = 50_000;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..total {
            writeln!(f, r#"{{"id":"r{i:06}","fields":{{"name":"name {i}","email":"n{i}@example.com","n":{i},"vip":{},"city":"Paris"}}}}"#, i % 2 == 0).unwrap();
        }
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--store")
        .arg(&store)
        .args([
            "import",
            "contacts",
            input.to_str().unwrap(),
            "--batch",
            &batch.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some batches are committed, well before the end.
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let size = std::fs::metadata(&store).map(|m| m.len()).unwrap_or(0);
        if size > 2_000_000 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert!(!status.success(), "the import was killed, not finished");

    let replica = Replica::open(&store).unwrap();
    let rows = replica.view_rows().unwrap();
    let n = rows.len();
    assert!(n > 0 && n < total, "killed mid-run: {n} of {total} records committed");
    assert_eq!(n % batch, 0, "every batch is all or nothing");
    // The committed records are exactly the first n lines.
    for (i, (_, id, row)) in rows.iter().enumerate() {
        assert_eq!(id, &format!("r{i:06}"));
        let fields: serde_json::Value = serde_json::from_slice(row).unwrap();
        assert_eq!(fields["n"], i as u64);
    }
    assert_eq!(replica.status().unwrap().pending, n as u64);
    assert_eq!(replica.log_entries(0, usize::MAX).unwrap().len(), n);
    replica.rebuild_view().unwrap();
    assert_eq!(replica.view_rows().unwrap(), rows);
    // And the store keeps working.
    replica
        .put("contacts", "after", serde_json::json!({"name": "x"}))
        .unwrap();
}
