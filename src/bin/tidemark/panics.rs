//! What the binary does with panics it can explain.
//!
//! A client command on a damaged store file ends with an error that says what
//! to do, not with a panic and a backtrace.
//!
//! redb panics on some files whose pages do not belong together: a store
//! copied (`cp`, a sync tool, a backup) while a tidemark process was writing
//! it holds pages from different commits, and redb may open it and then fail
//! deep inside a read or a commit. Checking every page at every open would
//! cost each command a read of the whole file, so the command runs, and a panic
//! on the thread that runs it is caught here and told as what it is.

use std::cell::RefCell;
use std::path::Path;
use std::process::ExitCode;

thread_local! {
    /// The message and place of the last panic on this thread.
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Runs a client command on `store`; a panic ends it with one error line.
pub fn run_guarded(store: &Path, command: impl FnOnce() -> ExitCode) -> ExitCode {
    match catch(command) {
        Ok(code) => code,
        Err((message, place)) => {
            eprintln!("{}", explain(store, &message, &place));
            ExitCode::from(if in_storage_engine(&place) { 1 } else { 101 })
        }
    }
}

/// Runs `command`, returning the message and place of a panic on this
/// thread, which is kept quiet while it unwinds (the caller tells it once).
/// Panics on other threads are printed as usual: nothing here catches them.
fn catch<T>(command: impl FnOnce() -> T) -> Result<T, (String, String)> {
    let default_hook = std::panic::take_hook();
    let owner = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != owner {
            return default_hook(info);
        }
        let place = info.location().map(|l| l.to_string()).unwrap_or_default();
        LAST_PANIC.with(|last| *last.borrow_mut() = Some((message_of(info), place)));
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(command));
    let _ = std::panic::take_hook();
    outcome.map_err(|_| {
        LAST_PANIC
            .with(|last| last.borrow_mut().take())
            .unwrap_or_else(|| ("no message".into(), String::new()))
    })
}

/// automerge panics on some malformed bytes. tidemark catches those panics
/// and refuses the bytes with an error the client reads (`invalid_op`), so
/// the server goes on; but the default hook would print each one with
/// "panicked" and a backtrace, which reads as a crash in the operator's log.
/// A panic inside automerge is logged as one warning instead; any other
/// panic is printed as usual.
pub fn log_automerge_panics_as_warnings() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let Some(place) = info.location().filter(|l| l.file().contains("automerge-")) else {
            return default_hook(info);
        };
        tracing::warn!(
            "automerge failed on bytes it could not decode ({} at {place}); \
             the request that brought them gets an error, the server goes on",
            message_of(info)
        );
    }));
}

/// A panic's message, when it has one in text.
fn message_of(info: &std::panic::PanicHookInfo) -> String {
    info.payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}

/// Whether a panic happened inside redb, the only code that reads the store
/// file's pages.
fn in_storage_engine(place: &str) -> bool {
    place.contains("/redb-") || place.contains("\\redb-")
}

fn explain(store: &Path, message: &str, place: &str) -> String {
    if in_storage_engine(place) {
        format!(
            "error: the store file {} is damaged: its pages do not belong together ({message}). \
             A store copied while a tidemark process was writing it is torn like this. \
             Copy it again while no tidemark process uses it, restore a backup taken that way, \
             or log in into a new store file; changes this file had not synced are in the file \
             it was copied from, if that file is still there",
            store.display()
        )
    } else {
        format!(
            "error: tidemark failed unexpectedly on the store file {} ({message} at {place}). \
             This is a bug: please report it with the command that caused it",
            store.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_of_the_command_is_caught_with_its_message_and_place() {
        let (message, place) = catch(|| panic!("slice index starts at {}", 364)).unwrap_err();
        assert_eq!(message, "slice index starts at 364");
        assert!(place.contains("panics.rs"), "{place}");
        assert_eq!(catch(|| 2).unwrap(), 2);
        let code = run_guarded(Path::new("s.db"), || panic!("a bug"));
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(101)));
    }

    #[test]
    fn a_panic_in_redb_is_a_damaged_store_and_any_other_a_bug() {
        let store = Path::new("/data/crm.db");
        let redb = "/home/u/.cargo/registry/src/x/redb-4.6.0/src/tree_store/btree_base.rs:691:31";
        let said = explain(store, "slice index starts at 364 but ends at 165", redb);
        assert!(said.contains("/data/crm.db is damaged"), "{said}");
        assert!(
            said.contains("Copy it again while no tidemark process uses it"),
            "{said}"
        );
        let said = explain(store, "oops", "src/replica/apply.rs:10:5");
        assert!(said.contains("This is a bug"), "{said}");
        assert!(said.contains("oops at src/replica/apply.rs:10:5"), "{said}");
    }
}
