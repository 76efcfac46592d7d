//! The demo runs on the embedded default and says the replicas converged.

#![cfg(feature = "cli")]

#[test]
fn the_demo_runs_and_says_converged() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("demo")
        .current_dir(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("converged"), "{stdout}");
    assert!(stdout.contains("conflict kept on contacts/c1 field email"), "{stdout}");
    assert!(stdout.contains("loses 1 unsynced change(s)"), "{stdout}");
}
