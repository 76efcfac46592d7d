//! The embedded server store on redb: one file (`server.redb`) with users, token
//! hashes, spaces, memberships, every space's op log and its materialized documents.
//!
//! redb has a single writer, so giving new ops `head + 1, head + 2, …` inside the
//! append transaction is gap-free in commit order with no further locking: a reader
//! never sees seq n+1 committed before seq n. The store never sees a raw token,
//! only its hash.

use std::fmt;
use std::path::{Path, PathBuf};

use ::redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};

use super::{
    DocsPage, NewOp, OpRefusal, PageLimit, Role, ServerStore, StoreError, StoreResult, StoredDoc, StoredOp,
    TokenRecord, missing_space, missing_user,
};
use crate::model::{Package, Seq};

mod tables;

use tables::meta;

/// The storage failures that end a redb `Database` until it is reopened (an
/// I/O error latches: every later transaction fails with "Previous I/O
/// error"): the store answers them as unavailable and recovers ([`Handle`]).
fn storage(e: ::redb::StorageError) -> StoreError {
    use ::redb::StorageError as E;
    match e {
        E::Io(_) | E::DatabaseClosed => StoreError::Unavailable(e.to_string()),
        // redb's own words ask its caller to reopen, which the store does.
        E::PreviousIo => StoreError::Unavailable("an earlier write failed and the store must be reopened".into()),
        other => backend(other),
    }
}

impl From<::redb::StorageError> for StoreError {
    fn from(e: ::redb::StorageError) -> Self {
        storage(e)
    }
}

impl From<::redb::TransactionError> for StoreError {
    fn from(e: ::redb::TransactionError) -> Self {
        match e {
            ::redb::TransactionError::Storage(e) => storage(e),
            other => backend(other),
        }
    }
}

impl From<::redb::TableError> for StoreError {
    fn from(e: ::redb::TableError) -> Self {
        match e {
            ::redb::TableError::Storage(e) => storage(e),
            other => backend(other),
        }
    }
}

impl From<::redb::CommitError> for StoreError {
    fn from(e: ::redb::CommitError) -> Self {
        match e {
            ::redb::CommitError::Storage(e) => storage(e),
            other => backend(other),
        }
    }
}

fn backend(e: impl fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn corrupt(what: impl fmt::Display, reason: impl fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt server store: {what}: {reason}"))
}

mod accounts;
mod append;
mod codec;
mod docs;
mod handle;
mod history;

use handle::Handle;

use codec::{decode_stored, encode_package, encode_stored, read_u64, role_byte, split_stored};
use history::index_history;

/// The server store on redb.
pub struct RedbStore {
    handle: Handle,
    /// Read once at open: the epoch never changes for the life of the file.
    epoch: String,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.handle.file())
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl RedbStore {
    /// The file name of the store inside a data directory.
    pub const FILE_NAME: &str = "server.redb";

    /// Opens (or creates) a store. `path` is a data directory (created if needed;
    /// the store is its `server.redb`) or, if it is an existing file or a path
    /// ending in `.redb`, the store file itself. A new file gets mode 0600 and a
    /// new epoch.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<RedbStore> {
        let file = store_file(path.as_ref())?;
        create_store_file(&file)?;
        let db = handle::open_file(&file)?;
        Self::init(db, Some(file))
    }

    /// A store in memory (tests, the demo, embedding).
    pub fn in_memory() -> StoreResult<RedbStore> {
        let db = Database::builder()
            .create_with_backend(::redb::backends::InMemoryBackend::new())
            .map_err(backend)?;
        Self::init(db, None)
    }

    /// The file behind this store, if any.
    pub fn path(&self) -> Option<&Path> {
        self.handle.file()
    }

    /// Why the store cannot be used right now (an I/O error it is recovering
    /// from), or `None`.
    pub fn failure(&self) -> Option<String> {
        self.handle.failure()
    }

    /// Checks the format of an existing file, or writes the metadata of a new
    /// one, and creates every table so readers never meet a missing one.
    fn init(db: Database, path: Option<PathBuf>) -> StoreResult<RedbStore> {
        let txn = db.begin_write()?;
        let epoch = {
            let mut m = txn.open_table(tables::META)?;
            let format = m.get(meta::FORMAT)?.map(|v| read_u64(v.value()));
            match format {
                Some(1..=3) => {
                    let epoch = m
                        .get(meta::EPOCH)?
                        .ok_or_else(|| corrupt("metadata", "no epoch"))?
                        .value()
                        .to_vec();
                    let epoch = String::from_utf8(epoch).map_err(|e| corrupt("epoch", e))?;
                    m.insert(meta::FORMAT, tables::FORMAT_VERSION.to_le_bytes().as_slice())?;
                    for old in [tables::OLD_CHANGES, tables::OLD_ACTOR_SEQS, tables::OLD_HISTORY] {
                        txn.delete_table(old)?;
                    }
                    index_history(&txn)?;
                    epoch
                }
                Some(found) if found != tables::FORMAT_VERSION => {
                    return Err(StoreError::Backend(format!(
                        "the server store has format version {found}; this build understands version {}",
                        tables::FORMAT_VERSION
                    )));
                }
                Some(_) => {
                    let epoch = m.get(meta::EPOCH)?.ok_or_else(|| corrupt("metadata", "no epoch"))?;
                    String::from_utf8(epoch.value().to_vec()).map_err(|e| corrupt("epoch", e))?
                }
                None => {
                    let epoch = crate::model::random_uuid().to_string();
                    m.insert(meta::FORMAT, tables::FORMAT_VERSION.to_le_bytes().as_slice())?;
                    m.insert(meta::EPOCH, epoch.as_bytes())?;
                    m.insert(meta::NEXT_SPACE_ID, 1u64.to_le_bytes().as_slice())?;
                    epoch
                }
            }
        };
        txn.open_table(tables::USERS)?;
        txn.open_table(tables::TOKENS)?;
        txn.open_table(tables::SPACES)?;
        txn.open_table(tables::PACKAGES)?;
        txn.open_table(tables::HEADS)?;
        txn.open_table(tables::MATERIALIZED)?;
        txn.open_table(tables::MEMBERS)?;
        txn.open_table(tables::LOG)?;
        txn.open_table(tables::OP_INDEX)?;
        txn.open_table(tables::MARKS)?;
        txn.open_table(tables::DOCS)?;
        txn.open_table(tables::DOC_ROWS)?;
        txn.open_table(tables::HISTORY)?;
        txn.open_table(tables::QUARANTINE)?;
        txn.commit()?;
        Ok(RedbStore {
            handle: Handle::new(db, path),
            epoch,
        })
    }

    /// Runs `f` in one read transaction.
    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> StoreResult<T>) -> StoreResult<T> {
        self.handle.with(|db| f(&db.begin_read()?))
    }

    /// Runs `f` in one write transaction: commits if it succeeds, aborts (nothing
    /// stored) if it fails.
    fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> StoreResult<T>) -> StoreResult<T> {
        self.handle.with(|db| write_in(db, f))
    }

    /// The id of `space` as seen by `txn`'s snapshot, if it exists.
    fn space_id<T: ReadableTable<&'static str, u64>>(spaces: &T, space: &str) -> StoreResult<Option<u64>> {
        Ok(spaces.get(space)?.map(|v| v.value()))
    }

    fn read_space(txn: &ReadTransaction, space: &str) -> StoreResult<u64> {
        Self::space_id(&txn.open_table(tables::SPACES)?, space)?.ok_or_else(|| missing_space(space))
    }

    fn write_space(txn: &WriteTransaction, space: &str) -> StoreResult<u64> {
        Self::space_id(&txn.open_table(tables::SPACES)?, space)?.ok_or_else(|| missing_space(space))
    }
}

impl ServerStore for RedbStore {
    fn epoch(&self) -> StoreResult<String> {
        Ok(self.epoch.clone())
    }

    fn ready(&self) -> StoreResult<()> {
        self.read(|txn| {
            txn.open_table(tables::META)?.get(meta::FORMAT)?;
            Ok(())
        })
    }

    fn create_user(&self, user: &str) -> StoreResult<()> {
        self.write(|txn| {
            let mut users = txn.open_table(tables::USERS)?;
            if users.get(user)?.is_some() {
                return Err(StoreError::AlreadyExists {
                    what: "user",
                    name: user.to_string(),
                });
            }
            users.insert(user, ())?;
            Ok(())
        })
    }

    fn user_exists(&self, user: &str) -> StoreResult<bool> {
        self.read(|txn| Ok(txn.open_table(tables::USERS)?.get(user)?.is_some()))
    }

    fn add_token(&self, token_id: &str, record: &TokenRecord) -> StoreResult<()> {
        self.write(|txn| {
            if txn.open_table(tables::USERS)?.get(record.user.as_str())?.is_none() {
                return Err(missing_user(&record.user));
            }
            let mut tokens = txn.open_table(tables::TOKENS)?;
            if tokens.get(token_id)?.is_some() {
                return Err(StoreError::AlreadyExists {
                    what: "token",
                    name: token_id.to_string(),
                });
            }
            let mut value = Vec::with_capacity(32 + record.user.len());
            value.extend_from_slice(&record.secret_hash);
            value.extend_from_slice(record.user.as_bytes());
            tokens.insert(token_id, value.as_slice())?;
            Ok(())
        })
    }

    fn token(&self, token_id: &str) -> StoreResult<Option<TokenRecord>> {
        self.read(|txn| {
            let tokens = txn.open_table(tables::TOKENS)?;
            let Some(value) = tokens.get(token_id)? else {
                return Ok(None);
            };
            let bytes = value.value();
            if bytes.len() < 32 {
                return Err(corrupt(format!("token {token_id:?}"), "shorter than its hash"));
            }
            let (hash, user) = bytes.split_at(32);
            Ok(Some(TokenRecord {
                user: String::from_utf8(user.to_vec()).map_err(|e| corrupt(format!("token {token_id:?}"), e))?,
                secret_hash: hash.try_into().expect("32 bytes"),
            }))
        })
    }

    fn create_space(&self, space: &str, package: Option<&Package>) -> StoreResult<()> {
        let package = encode_package(package)?;
        self.write(|txn| {
            let mut spaces = txn.open_table(tables::SPACES)?;
            if spaces.get(space)?.is_some() {
                return Err(StoreError::AlreadyExists {
                    what: "space",
                    name: space.to_string(),
                });
            }
            let mut m = txn.open_table(tables::META)?;
            let id = m
                .get(meta::NEXT_SPACE_ID)?
                .map(|v| read_u64(v.value()))
                .ok_or_else(|| corrupt("metadata", "no next space id"))?;
            m.insert(meta::NEXT_SPACE_ID, (id + 1).to_le_bytes().as_slice())?;
            spaces.insert(space, id)?;
            txn.open_table(tables::PACKAGES)?.insert(id, package.as_slice())?;
            txn.open_table(tables::HEADS)?.insert(id, 0)?;
            txn.open_table(tables::MATERIALIZED)?.insert(id, 0)?;
            Ok(())
        })
    }

    fn package(&self, space: &str) -> StoreResult<Option<Option<Package>>> {
        self.read(|txn| {
            let Some(id) = Self::space_id(&txn.open_table(tables::SPACES)?, space)? else {
                return Ok(None);
            };
            let packages = txn.open_table(tables::PACKAGES)?;
            let value = packages
                .get(id)?
                .ok_or_else(|| corrupt(format!("space {space:?}"), "no package row"))?;
            let package: Option<Package> =
                serde_json::from_slice(value.value()).map_err(|e| corrupt(format!("package of space {space:?}"), e))?;
            Ok(Some(package))
        })
    }

    fn set_package(&self, space: &str, package: Option<&Package>) -> StoreResult<()> {
        let package = encode_package(package)?;
        self.write(|txn| {
            let id = Self::write_space(txn, space)?;
            txn.open_table(tables::PACKAGES)?.insert(id, package.as_slice())?;
            Ok(())
        })
    }

    fn grant(&self, user: &str, space: &str, role: Role) -> StoreResult<()> {
        self.write(|txn| {
            if txn.open_table(tables::USERS)?.get(user)?.is_none() {
                return Err(missing_user(user));
            }
            let id = Self::write_space(txn, space)?;
            txn.open_table(tables::MEMBERS)?.insert((id, user), role_byte(role))?;
            Ok(())
        })
    }

    fn revoke(&self, user: &str, space: &str) -> StoreResult<bool> {
        self.write(|txn| {
            let id = Self::write_space(txn, space)?;
            Ok(txn.open_table(tables::MEMBERS)?.remove((id, user))?.is_some())
        })
    }

    fn remove_token(&self, token_id: &str) -> StoreResult<bool> {
        self.write(|txn| Ok(txn.open_table(tables::TOKENS)?.remove(token_id)?.is_some()))
    }

    fn users(&self) -> StoreResult<Vec<(String, Vec<String>)>> {
        self.read(accounts::users)
    }

    fn spaces(&self) -> StoreResult<Vec<String>> {
        self.read(accounts::spaces)
    }

    fn members(&self, space: &str) -> StoreResult<Vec<(String, Role)>> {
        self.read(|txn| {
            let id = Self::read_space(txn, space)?;
            accounts::members(txn, id, space)
        })
    }

    fn role(&self, user: &str, space: &str) -> StoreResult<Option<Role>> {
        self.read(|txn| {
            let Some(id) = Self::space_id(&txn.open_table(tables::SPACES)?, space)? else {
                return Ok(None);
            };
            let members = txn.open_table(tables::MEMBERS)?;
            let Some(value) = members.get((id, user))? else {
                return Ok(None);
            };
            accounts::role_of(value.value(), user, space).map(Some)
        })
    }

    fn append(&self, space: &str, ops: &[NewOp]) -> StoreResult<Vec<Result<Seq, OpRefusal>>> {
        if ops.is_empty() {
            // Nothing to write: spare the commit (and its fsync).
            return self.read(|txn| Self::read_space(txn, space).map(|_| Vec::new()));
        }
        self.write(|txn| append::append_in(txn, space, ops))
    }

    fn read_ops(&self, space: &str, since: Seq, limit: PageLimit) -> StoreResult<Vec<(Seq, StoredOp)>> {
        self.read(|txn| {
            let id = Self::read_space(txn, space)?;
            let Some(start) = since.0.checked_add(1) else {
                return Ok(Vec::new());
            };
            let log = txn.open_table(tables::LOG)?;
            let mut out = Vec::with_capacity(limit.count.min(1024));
            let mut used = 0usize;
            for entry in log.range((id, start)..=(id, u64::MAX))? {
                let (key, value) = entry?;
                let seq = key.value().1;
                let stored = decode_stored(value.value(), space, Seq(seq))?;
                let size = stored.op.change.len();
                if !limit.admits(out.len(), used, size) {
                    break;
                }
                used += size;
                out.push((Seq(seq), stored));
            }
            Ok(out)
        })
    }

    fn head(&self, space: &str) -> StoreResult<Seq> {
        self.read(|txn| {
            let id = Self::read_space(txn, space)?;
            Ok(Seq(txn
                .open_table(tables::HEADS)?
                .get(id)?
                .map(|v| v.value())
                .unwrap_or(0)))
        })
    }

    fn mark(&self, space: &str, seq: Seq) -> StoreResult<Option<u64>> {
        self.read(|txn| {
            let id = Self::read_space(txn, space)?;
            let head = txn.open_table(tables::HEADS)?.get(id)?.map(|v| v.value()).unwrap_or(0);
            if seq == 0 || seq > head {
                return Ok(None);
            }
            let marks = txn.open_table(tables::MARKS)?;
            let found = marks.range((id, 0)..=(id, seq.0))?.next_back().transpose()?;
            Ok(Some(found.map_or(0, |(_, mark)| mark.value())))
        })
    }

    fn materialized(&self, space: &str) -> StoreResult<Seq> {
        self.read(|txn| {
            let id = Self::read_space(txn, space)?;
            Ok(Seq(txn
                .open_table(tables::MATERIALIZED)?
                .get(id)?
                .map(|v| v.value())
                .unwrap_or(0)))
        })
    }

    fn store_docs(&self, space: &str, docs: &[StoredDoc], from: Seq, through: Seq) -> StoreResult<bool> {
        self.write(|txn| docs::store_docs_in(txn, space, docs, from, through))
    }

    fn doc(&self, space: &str, collection: &str, record: &str) -> StoreResult<Option<Vec<u8>>> {
        self.read(|txn| {
            let id = Self::read_space(txn, space)?;
            let docs = txn.open_table(tables::DOCS)?;
            Ok(docs.get((id, collection, record))?.map(|v| v.value().to_vec()))
        })
    }

    fn quarantine(&self, space: &str, collection: &str, record: &str, reason: &str) -> StoreResult<()> {
        self.write(|txn| {
            let id = Self::write_space(txn, space)?;
            txn.open_table(tables::QUARANTINE)?
                .insert((id, collection, record), reason.as_bytes())?;
            Ok(())
        })
    }

    fn quarantined(&self, space: &str) -> StoreResult<std::collections::BTreeMap<(String, String), String>> {
        self.read(|txn| {
            let id = Self::read_space(txn, space)?;
            let table = txn.open_table(tables::QUARANTINE)?;
            let mut out = std::collections::BTreeMap::new();
            for entry in table.range((id, "", "")..(id + 1, "", ""))? {
                let (key, value) = entry?;
                let (_, collection, record) = key.value();
                out.insert(
                    (collection.to_string(), record.to_string()),
                    String::from_utf8_lossy(value.value()).into_owned(),
                );
            }
            Ok(out)
        })
    }

    fn docs_page(&self, space: &str, after: Option<(&str, &str)>, limit: PageLimit) -> StoreResult<DocsPage> {
        self.read(|txn| docs::docs_page_in(txn, space, after, limit))
    }
}

/// Runs `f` in one write transaction of `db`: commits if it succeeds, aborts
/// (nothing stored) if it fails.
fn write_in<T>(db: &Database, f: impl FnOnce(&WriteTransaction) -> StoreResult<T>) -> StoreResult<T> {
    let txn = db.begin_write()?;
    match f(&txn) {
        Ok(value) => {
            txn.commit()?;
            Ok(value)
        }
        Err(e) => {
            if let Err(abort) = txn.abort() {
                tracing::warn!("aborting a server store transaction failed: {abort}");
            }
            Err(e)
        }
    }
}

/// Where the store file of `path` is: inside it if it is (or will be) a directory.
fn store_file(path: &Path) -> StoreResult<PathBuf> {
    let is_file = if path.exists() {
        !path.is_dir()
    } else {
        path.extension().is_some_and(|ext| ext == "redb")
    };
    let (dir, file) = if is_file {
        (path.parent().filter(|p| !p.as_os_str().is_empty()), path.to_path_buf())
    } else {
        (Some(path), path.join(RedbStore::FILE_NAME))
    };
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
    }
    Ok(file)
}

fn create_store_file(path: &Path) -> StoreResult<()> {
    crate::fsutil::create_store_file(
        path,
        |file, e| StoreError::Backend(format!("cannot create {}: {e}", file.display())),
        |draft| handle::open_file(draft).map(drop),
    )
}
