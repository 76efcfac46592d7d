//! File-system helpers shared by the client store and the server store.

use std::path::Path;

/// Creates `path` with mode 0600 (owner only) unless it exists already: store
/// files hold tokens or token hashes and everybody's records.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the store file at `path` unless it exists, so that the path never
/// holds a half-made store: redb writes a new file's header last and refuses a
/// file left without it for good, so a process killed inside `create` must
/// leave nothing at `path`. `create` makes a complete store in a private file
/// of its own next to `path`, which is then linked into place; a store that
/// another process created meanwhile is kept. A process killed before the link
/// leaves only its own `.NAME.creating-PID-N` file behind.
pub(crate) fn create_store_file<E>(
    path: &Path,
    io_error: impl Fn(&Path, std::io::Error) -> E,
    create: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    if path.exists() {
        return Ok(());
    }
    let draft = draft_path(path);
    // A leftover of a killed process that had our pid: nobody else writes this name.
    match std::fs::remove_file(&draft) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(&draft, e)),
        _ => {}
    }
    let made = create_private_file(&draft)
        .map_err(|e| io_error(&draft, e))
        .and_then(|()| create(&draft))
        .and_then(|()| {
            std::fs::File::open(&draft)
                .and_then(|f| f.sync_all())
                .and_then(|()| link_new(&draft, path))
                .map_err(|e| io_error(path, e))
        });
    let _ = std::fs::remove_file(&draft);
    made?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Make the new name itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A name next to `path` that no other creation uses, in this process or another.
fn draft_path(path: &Path) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".creating-{}-{n}", std::process::id()));
    path.with_file_name(name)
}

/// Gives `draft` the name `path` unless `path` exists (then `path` is kept).
/// A hard link never replaces a file; a file system without hard links gets a
/// rename, which could replace a store created in the instant since the check.
fn link_new(draft: &Path, path: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(draft, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) if !path.exists() => std::fs::rename(draft, path),
        Err(e) => Err(e),
    }
}
