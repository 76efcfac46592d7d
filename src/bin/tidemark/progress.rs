//! Progress bars on a terminal, silence otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use tidemark::protocol::RoundSummary;

/// A bar of `total` units, or a counter when the total is unknown; hidden unless stderr is a terminal.
pub fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {percent}% {elapsed} (eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.set_message(what.to_string());
    bar
}

/// Shows a sync round's running totals.
pub fn sync_spinner() -> (ProgressBar, impl FnMut(&RoundSummary) + Send) {
    let bar = bar(None, "syncing");
    let shown = bar.clone();
    let observe = move |s: &RoundSummary| {
        shown.set_message(format!(
            "syncing: pushed {} pulled {} snapshot {} head {}",
            s.pushed, s.pulled, s.snapshot_docs, s.head
        ));
        shown.tick();
    };
    (bar, observe)
}
