//! Runs a command whose standard output is closed before it writes anything, as in
//! `tidemark … | head -0`. Shared by the CLI tests (`#[path]`-included: they do not
//! pull in the rest of `common`).

use std::process::{Command, Output, Stdio};

/// Spawns `cmd`, closes the reading end of its stdout at once, and waits for it.
/// Every command under test opens a store or a connection first, so the pipe is
/// closed before its first write.
pub fn with_stdout_closed(cmd: &mut Command) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}
