//! The local store on redb: change log, op-id index, documents, view, metadata.
//! The only client-side module that names redb.
//!
//! Every public call is one transaction. Several processes can share one store
//! file when they all open it with [`Sharing::Processes`] (redb's multi-writer
//! mode): a background sync in one process and edits in others. The only state kept between
//! calls, the documents of recently edited records and the parsed package, is
//! checked against the stored bytes before each use (`doc_cache.rs`,
//! `package_cache.rs`).

mod account;
mod apply;
mod collision;
mod doc_cache;
mod edit;
mod intent;
mod log;
mod metadata;
mod package;
mod package_cache;
mod parallel;
mod pending;
mod queue;
mod recount;
mod rejections;
mod rewrite;
mod server_state;
mod tables;
use tables::open_every_table;
mod view;

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::Serialize;

use crate::error::{CorruptData, Error, Result};
use crate::model::{ActorId, Binding, Collection, LogPos, Package, RecordId, Seq};
pub use crate::record::EditSummary;
use crate::record::{FieldConflict, Fields};
pub use account::{Fence, SwitchLoss, SwitchPolicy};
pub use apply::{ApplyReport, PulledOp, PulledPage, SnapshotRecord};
pub use edit::Edit;
pub use log::LogEntry;
pub(crate) use metadata::{Meta, put_meta, read_u64};
pub use queue::{PendingOp, RepushBatch};
pub use rejections::Rejection;
pub use rewrite::Refusal;
pub use server_state::{LastSync, RoundStart, Watermarks};
use tables::meta;

/// The storage failures redb latches (an I/O error: a full disk, a failing
/// device): every later transaction of that `Database` fails too, until the
/// file is opened again ([`Replica::reopen`]).
fn storage(e: redb::StorageError) -> Error {
    use redb::StorageError as E;
    match e {
        E::Io(_) | E::DatabaseClosed => Error::StorageFailed(e.to_string()),
        // redb's own words ask its caller to reopen, which the store does.
        E::PreviousIo => Error::StorageFailed("an earlier write failed and the store must be reopened".into()),
        other => Error::storage(other),
    }
}

impl From<redb::StorageError> for Error {
    fn from(e: redb::StorageError) -> Self {
        storage(e)
    }
}

macro_rules! storage_errors {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for Error {
            fn from(e: redb::$t) -> Self {
                match e {
                    redb::$t::Storage(e) => storage(e),
                    other => Error::storage(other),
                }
            }
        }
    )*};
}
storage_errors!(TransactionError, TableError, CommitError, CompactionError);

impl From<redb::SetDurabilityError> for Error {
    fn from(e: redb::SetDurabilityError) -> Self {
        Error::storage(e)
    }
}

/// redb's page cache for a file store (see `Replica::open`).
const CACHE_BYTES: usize = 64 << 20;

/// A replica's local store.
pub struct Replica {
    /// `None` only after a [`Replica::reopen`] that failed.
    db: RwLock<Option<Database>>,
    path: Option<PathBuf>,
    /// (device, inode) of the file when it was opened: an account switch replaces it.
    file_id: Option<(u64, u64)>,
    sharing: Sharing,
    /// Documents of recently edited records (see `doc_cache.rs`).
    doc_cache: doc_cache::DocCache,
    /// The package parsed from META, reused while META holds the same bytes.
    package_cache: package_cache::PackageCache,
    /// About how many puts wait as intents (see `intent.rs`).
    intents: intent::Backlog,
}

/// Who may have a store file open at the same time.
///
/// The choice costs latency: redb commits a file that other processes may read
/// in two phases (two `fdatasync` instead of one), so a durable edit of an
/// exclusive store is about 1.5× faster (BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// One process at a time; another one gets [`Error::StoreInUse`]. The default
    /// for applications, which hold one `Replica` and sync it in-process.
    #[default]
    Exclusive,
    /// Any number of processes read and write the file at once, e.g. a
    /// background sync beside short-lived processes that edit. Every one of them must open it
    /// this way (Linux, macOS and Windows).
    Processes,
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Local ops the server has not acknowledged yet.
    pub pending: u64,
    /// Local ops the server refused for good.
    pub rejected: u64,
    /// Records with concurrent values to look at (listed by `conflicts`).
    pub conflicted: u64,
    /// Every server op with seq ≤ pulled is applied.
    pub pulled: Seq,
    /// Every local op at or below this log position is acknowledged or rejected.
    pub pushed: LogPos,
    pub server: Option<String>,
    pub user: Option<String>,
    pub space: Option<String>,
    pub package_version: Option<u64>,
    pub actor: String,
    pub last_sync: Option<LastSync>,
    /// "unfinished" from a store's first login until a sync round has
    /// downloaded the whole snapshot: until then records the server holds may
    /// be missing here, and a put on one of them meets the server's version as
    /// a concurrent one. "done" after that; null on a store never logged in.
    pub initial_sync: Option<InitialSync>,
}

/// Where a store's first download stands (see [`Status::initial_sync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialSync {
    Unfinished,
    Done,
}

/// The conflicts of one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordConflicts {
    pub collection: String,
    pub id: String,
    pub fields: Vec<FieldConflict>,
}

/// One page of `list`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    /// (id, canonical JSON of the fields) in id order.
    pub rows: Vec<(String, Vec<u8>)>,
    /// Pass as `after` to get the next page; None at the end.
    pub next: Option<String>,
}

impl Replica {
    /// Opens (or creates) the store at `path` for this process alone
    /// ([`Sharing::Exclusive`]). A new file is created with mode 0600: it will
    /// hold a bearer token.
    pub fn open(path: impl AsRef<Path>) -> Result<Replica> {
        Self::open_with(path, Sharing::Exclusive)
    }

    /// Opens (or creates) the store at `path` so that several processes can use
    /// it at once ([`Sharing::Processes`]).
    pub fn open_shared(path: impl AsRef<Path>) -> Result<Replica> {
        Self::open_with(path, Sharing::Processes)
    }

    /// Opens (or creates) the store at `path` with the given sharing. Every
    /// process that has the file open at the same time must use the same one.
    pub fn open_with(path: impl AsRef<Path>, sharing: Sharing) -> Result<Replica> {
        let path = path.as_ref();
        create_store_file(path, sharing)?;
        let db = open_database(path, sharing)?;
        let replica = Replica {
            db: RwLock::new(Some(db)),
            path: Some(path.to_path_buf()),
            file_id: account::file_identity(path),
            sharing,
            doc_cache: Default::default(),
            package_cache: Default::default(),
            intents: Default::default(),
        };
        replica.init()?;
        Ok(replica)
    }

    /// A store in memory (tests, simulations).
    pub fn in_memory() -> Result<Replica> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(Error::storage)?;
        let replica = Replica {
            db: RwLock::new(Some(db)),
            path: None,
            file_id: None,
            sharing: Sharing::Exclusive,
            doc_cache: Default::default(),
            package_cache: Default::default(),
            intents: Default::default(),
        };
        replica.init()?;
        Ok(replica)
    }

    /// How this handle shares its file with other processes.
    pub fn sharing(&self) -> Sharing {
        self.sharing
    }

    /// The file behind this store, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Closes the store file and opens it again. After a storage I/O error
    /// ([`Error::StorageFailed`]: a full disk, say) redb refuses every later
    /// transaction of the open file, so a long-running process (the background
    /// sync) calls this once the cause may be gone. Commits are atomic and
    /// opening repairs the file, so nothing committed is lost. A store in
    /// memory cannot be reopened.
    pub fn reopen(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Err(Error::storage("a store in memory cannot be reopened"));
        };
        let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // The old handle holds the file lock: it goes before the new one opens.
        drop(db.take());
        *db = Some(open_database(path, self.sharing)?);
        drop(db);
        self.doc_cache.clear();
        tracing::info!(store = %path.display(), "reopened the store");
        Ok(())
    }

    fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match db.as_ref() {
            Some(db) => f(db),
            None => Err(Error::StorageFailed(
                "the store could not be opened again after a storage error".into(),
            )),
        }
    }

    fn init(&self) -> Result<()> {
        // Most opens find the store ready: a read says so without a write
        // transaction, whose commit would cost two syncs of the file.
        if self.is_ready() {
            return Ok(());
        }
        let txn = self.write_raw()?;
        {
            let mut m = txn.open_table(tables::META)?;
            let format = m.get(meta::FORMAT)?.map(|v| read_u64(v.value()));
            match format {
                // Formats 1 and 2 lack DOC_TAILS or INTENTS only, created with every table below.
                Some(1 | 2) => {
                    m.insert(meta::FORMAT, tables::FORMAT_VERSION.to_le_bytes().as_slice())?;
                    m.insert(meta::UNMARKED_DOCS, [].as_slice())?;
                }
                Some(found) if found != tables::FORMAT_VERSION => {
                    return Err(Error::StoreVersion {
                        found,
                        expected: tables::FORMAT_VERSION,
                    });
                }
                Some(_) => {}
                None => {
                    m.insert(meta::FORMAT, tables::FORMAT_VERSION.to_le_bytes().as_slice())?;
                    m.insert(meta::ACTOR, ActorId::random().0.as_slice())?;
                    m.insert(meta::NEXT_POS, 1u64.to_le_bytes().as_slice())?;
                    m.insert(meta::CONFLICT_RULES, recount::CONFLICT_RULES.to_le_bytes().as_slice())?;
                }
            }
            // Create every table so readers never meet a missing one.
            open_every_table!(txn);
            recount::upgrade(&txn, &mut m)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Whether the store is of this format, its conflict marks counted by
    /// today's rules, and every table there. Any doubt (a read that fails
    /// included) leaves the answer to `init`'s write transaction.
    fn is_ready(&self) -> bool {
        let ready = || -> Result<bool> {
            let txn = self.read_view()?;
            let m = Meta::read(&txn)?;
            if m.bytes(meta::FORMAT)?.map(|b| read_u64(&b)) != Some(tables::FORMAT_VERSION)
                || m.u64(meta::CONFLICT_RULES)? < recount::CONFLICT_RULES
            {
                return Ok(false);
            }
            open_every_table!(txn);
            Ok(true)
        };
        ready().unwrap_or(false)
    }

    /// A read transaction in which every put recorded as an intent has its
    /// change: documents and the log are whole (see `intent.rs`). While
    /// intents wait, it makes them in a write transaction first, so it may wait
    /// for another writer; never call it while holding one.
    pub(crate) fn read(&self) -> Result<ReadTransaction> {
        loop {
            let txn = self.read_view()?;
            if !intent::any(&txn)? {
                return Ok(txn);
            }
            drop(txn);
            // Makes the changes and commits them; a put recorded since is made
            // by the next turn.
            self.write()?.commit()?;
        }
    }

    /// A read transaction for the view and META alone, which intents keep
    /// current: puts recorded as intents may still lack their changes.
    pub(crate) fn read_view(&self) -> Result<ReadTransaction> {
        self.with_db(|db| Ok(db.begin_read()?))
    }

    /// A write transaction in which every put recorded as an intent has its
    /// change, made in this transaction (see `intent.rs`).
    pub(crate) fn write(&self) -> Result<WriteTransaction> {
        let txn = self.write_raw()?;
        self.make_intent_changes(&txn)?;
        Ok(txn)
    }

    /// A write transaction as redb begins it: intents may lack their changes.
    pub(crate) fn write_raw(&self) -> Result<WriteTransaction> {
        self.with_db(|db| Ok(db.begin_write()?))
    }

    /// This replica's actor id.
    pub fn actor(&self) -> Result<ActorId> {
        let txn = self.read_view()?;
        Meta::read(&txn)?.actor()
    }

    /// The package edits are validated against (None = schemaless).
    pub fn package(&self) -> Result<Option<Package>> {
        let txn = self.read_view()?;
        Meta::read(&txn)?.package()
    }

    /// The account this store is bound to.
    pub fn binding(&self) -> Result<Option<Binding>> {
        let txn = self.read_view()?;
        Meta::read(&txn)?.json(meta::BINDING)
    }

    /// The fields of a live record, or None if it does not exist or is deleted.
    pub fn get(&self, collection: &str, id: &str) -> Result<Option<Fields>> {
        let collection = Collection::new(collection)?;
        let id = RecordId::new(id)?;
        let txn = self.read_view()?;
        let view = txn.open_table(tables::VIEW)?;
        match view.get((collection.as_str(), id.as_str()))? {
            Some(row) => Ok(Some(
                serde_json::from_slice(row.value()).map_err(|e| CorruptData::new("view row", e))?,
            )),
            None => Ok(None),
        }
    }

    /// Whether the record was deleted: the store holds its document but no live
    /// row. False for a live record and for one this replica never had.
    pub fn is_deleted(&self, collection: &str, id: &str) -> Result<bool> {
        let collection = Collection::new(collection)?;
        let id = RecordId::new(id)?;
        let key = (collection.as_str(), id.as_str());
        let txn = self.read_view()?;
        Ok(txn.open_table(tables::VIEW)?.get(key)?.is_none() && txn.open_table(tables::DOCS)?.get(key)?.is_some())
    }

    /// Counts and watermarks.
    pub fn status(&self) -> Result<Status> {
        let txn = self.read_view()?;
        let m = Meta::read(&txn)?;
        let binding: Option<Binding> = m.json(meta::BINDING)?;
        let rejected = txn.open_table(tables::REJECTED)?.len()?;
        Ok(Status {
            pending: pending::count(&m)?,
            rejected,
            conflicted: txn.open_table(tables::CONFLICTED)?.len()?,
            pulled: Seq(m.u64(meta::PULLED)?),
            pushed: LogPos(m.u64(meta::PUSHED)?),
            server: binding.as_ref().map(|b| b.server.clone()),
            user: binding.as_ref().map(|b| b.user.clone()),
            space: binding.as_ref().map(|b| b.space.clone()),
            package_version: m.package()?.map(|p| p.version),
            actor: m.actor()?.to_hex(),
            last_sync: m.json(meta::LAST_SYNC)?,
            initial_sync: initial_sync_in(&m, binding.is_some())?,
        })
    }

    /// Whether this store's first download is still to finish: a snapshot is
    /// part way, or the first login's round has not completed yet.
    pub fn initial_sync_unfinished(&self) -> Result<bool> {
        let txn = self.read_view()?;
        let m = Meta::read(&txn)?;
        Ok(initial_sync_in(&m, true)? == Some(InitialSync::Unfinished))
    }

    /// Every view row, in key order: (collection, id, canonical JSON). For comparisons in tests and tools.
    pub fn view_rows(&self) -> Result<Vec<(String, String, Vec<u8>)>> {
        let txn = self.read_view()?;
        let view = txn.open_table(tables::VIEW)?;
        let mut out = Vec::new();
        for entry in view.iter()? {
            let (k, v) = entry?;
            let (c, i) = k.value();
            out.push((c.to_string(), i.to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Every log entry in order (tools, tests, export).
    pub fn log_entries(&self, after: LogPos, limit: usize) -> Result<Vec<(LogPos, LogEntry)>> {
        let txn = self.read()?;
        let log = txn.open_table(tables::LOG)?;
        let mut out = Vec::new();
        for entry in log.range(after.0.saturating_add(1)..)?.take(limit) {
            let (k, v) = entry?;
            out.push((LogPos(k.value()), LogEntry::decode(v.value())?));
        }
        Ok(out)
    }

    /// Sets (or clears) the package that edits are validated against.
    pub fn set_package(&self, package: Option<&Package>) -> Result<()> {
        if let Some(p) = package {
            p.check()?;
        }
        let txn = self.write()?;
        {
            let mut m = txn.open_table(tables::META)?;
            match package {
                Some(p) => m.insert(
                    meta::PACKAGE,
                    serde_json::to_vec(p).expect("package serializes").as_slice(),
                )?,
                None => m.remove(meta::PACKAGE)?,
            };
        }
        txn.commit()?;
        Ok(())
    }

    /// Compacts the file, releasing free pages (used after clearing an account).
    pub fn compact(&mut self) -> Result<()> {
        let db = self.db.get_mut().unwrap_or_else(PoisonError::into_inner);
        let db = db
            .as_mut()
            .ok_or_else(|| Error::StorageFailed("the store is closed after a storage error".into()))?;
        while db.compact()? {}
        Ok(())
    }
}

/// Opens (or creates) a store file with the settings of `sharing`.
fn open_database(path: &Path, sharing: Sharing) -> Result<Database> {
    let mut builder = Database::builder();
    // redb caches up to 1 GiB by default and a bulk import fills it (540 MiB RSS
    // importing 1M records). With 64 MiB that import peaks at 81 MiB and runs
    // within ~3% of its speed with the default cache (BENCHMARKS.md).
    builder.set_cache_size(CACHE_BYTES);
    // redb's multi-process locking exists on these platforms; elsewhere the file stays exclusive.
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    if sharing == Sharing::Processes {
        builder.set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
    }
    builder.create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::StoreInUse {
            path: path.display().to_string(),
        },
        redb::DatabaseError::LockProtocolMismatch => Error::storage(format!(
            "cannot open {}: a process built with another version of redb has it open; stop it first",
            path.display()
        )),
        redb::DatabaseError::Storage(e) => match storage(e) {
            Error::StorageFailed(cause) => Error::StorageFailed(format!("cannot open {}: {cause}", path.display())),
            other => other,
        },
        other => Error::storage(format!("cannot open {}: {other}", path.display())),
    })
}

/// Names the record whose document or changes would not load, so that the
/// error says which record to look at.
pub(crate) fn in_record(e: Error, collection: &str, record: &str) -> Error {
    match e {
        Error::Corrupt(c) => Error::Corrupt(CorruptData::new(
            format!("record {collection}/{record}: {}", c.context),
            c.reason,
        )),
        other => other,
    }
}

/// Creates the store file with mode 0600 if it does not exist yet.
fn create_store_file(path: &Path, sharing: Sharing) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::storage(format!("cannot create {}: {e}", parent.display())))?;
    }
    crate::fsutil::create_store_file(
        path,
        |file, e| Error::storage(format!("cannot create {}: {e}", file.display())),
        |draft| open_database(draft, sharing).map(drop),
    )
}

fn initial_sync_in(m: &Meta, bound: bool) -> Result<Option<InitialSync>> {
    Ok(if m.has(meta::SNAPSHOT)? || m.has(meta::FIRST_SYNC)? {
        Some(InitialSync::Unfinished)
    } else if bound {
        Some(InitialSync::Done)
    } else {
        None
    })
}
