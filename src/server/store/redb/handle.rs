//! The open redb database behind the server store, and its recovery after an
//! I/O error.
//!
//! redb latches the first failed write, sync or read (a full disk, a failing
//! device): every later transaction of that `Database` fails with "Previous
//! I/O error" until it is closed and opened again. The handle does that by
//! itself, at most once per [`RETRY_EVERY`] while the cause lasts, so the server
//! comes back once space is freed, without a restart. Meanwhile every call
//! answers [`StoreError::Unavailable`] at once. A redb commit is atomic and
//! reopening repairs the file, so nothing committed is lost.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ::redb::Database;

use crate::server::store::{StoreError, StoreResult};

/// How often a failed store tries to reopen.
pub(super) const RETRY_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Handle {
    /// `None` only while a reopen is failing.
    db: RwLock<Option<Database>>,
    /// The file to reopen; an in-memory store has none (and no I/O to fail).
    file: Option<PathBuf>,
    failure: Mutex<Option<Failure>>,
}

struct Failure {
    cause: String,
    last_try: Instant,
}

/// redb's page cache for the store file. redb's default (1 GiB) keeps the pages
/// the server writes and reads resident, so its memory would grow with the data
/// it takes in and serves; pages outside this cache are read from the file,
/// through the OS page cache (BENCHMARKS.md, server peak RSS).
const CACHE_BYTES: usize = 64 << 20;

/// Opens (or creates) the store file, naming the file in every error.
pub(super) fn open_file(file: &Path) -> StoreResult<Database> {
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(file)
        .map_err(|e| match e {
            ::redb::DatabaseError::DatabaseAlreadyOpen | ::redb::DatabaseError::LockProtocolMismatch => {
                StoreError::Backend(format!(
                    "the server store {} is in use by another process: stop it or use another data directory",
                    file.display()
                ))
            }
            ::redb::DatabaseError::Storage(e) => match StoreError::from(e) {
                StoreError::Unavailable(cause) => {
                    StoreError::Unavailable(format!("cannot open the server store {}: {cause}", file.display()))
                }
                other => other,
            },
            other => StoreError::Backend(format!("cannot open the server store {}: {other}", file.display())),
        })
}

impl Handle {
    pub fn new(db: Database, file: Option<PathBuf>) -> Handle {
        Handle {
            db: RwLock::new(Some(db)),
            file,
            failure: Mutex::new(None),
        }
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Why the store is unusable, if it is.
    pub fn failure(&self) -> Option<String> {
        self.lock_failure().as_ref().map(|f| f.cause.clone())
    }

    /// Runs `f` on the open database (reopening it first if it failed and the
    /// retry time has come); an [`StoreError::Unavailable`] from `f` marks the
    /// store failed.
    pub fn with<T>(&self, f: impl FnOnce(&Database) -> StoreResult<T>) -> StoreResult<T> {
        self.recover_if_failed()?;
        // The read guard is released before `fail` takes the failure lock: a
        // reopen holds that lock while it waits for the write guard.
        let result = {
            let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
            db.as_ref().map(f)
        };
        // Only now, without the read guard, may the failure lock be taken.
        let result = result.unwrap_or_else(|| {
            Err(StoreError::Unavailable(
                self.failure().unwrap_or_else(|| "the store is being reopened".into()),
            ))
        });
        if let Err(StoreError::Unavailable(cause)) = &result {
            self.fail(cause);
        }
        result
    }

    fn lock_failure(&self) -> std::sync::MutexGuard<'_, Option<Failure>> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fail(&self, cause: &str) {
        let mut failure = self.lock_failure();
        if failure.is_none() {
            tracing::error!(
                store = ?self.file,
                cause,
                "the server store failed; answering 503 and reopening it every {} s until it works",
                RETRY_EVERY.as_secs()
            );
            *failure = Some(Failure {
                cause: cause.to_string(),
                last_try: Instant::now(),
            });
        }
    }

    fn recover_if_failed(&self) -> StoreResult<()> {
        let mut failure = self.lock_failure();
        let Some(current) = failure.as_mut() else {
            return Ok(());
        };
        if current.last_try.elapsed() < RETRY_EVERY {
            return Err(StoreError::Unavailable(current.cause.clone()));
        }
        current.last_try = Instant::now();
        match self.reopen() {
            Ok(()) => {
                tracing::info!(store = ?self.file, "the server store is open again");
                *failure = None;
                Ok(())
            }
            Err(cause) => {
                current.cause = cause.clone();
                Err(StoreError::Unavailable(cause))
            }
        }
    }

    /// Closes the failed database and opens its file again. The write guard
    /// waits for the calls in flight, so no transaction outlives the old one.
    fn reopen(&self) -> Result<(), String> {
        let Some(file) = &self.file else {
            return Err("the in-memory store failed and cannot be reopened".into());
        };
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        drop(db.take());
        let fresh = open_file(file).map_err(|e| match e {
            StoreError::Unavailable(cause) | StoreError::Backend(cause) => cause,
            other => other.to_string(),
        })?;
        *db = Some(fresh);
        Ok(())
    }
}
