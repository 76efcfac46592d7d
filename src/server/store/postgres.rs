//! The server store on PostgreSQL, for several server processes in front of
//! one database: each process is stateless, the database holds everything
//! the redb store holds (users and token hashes, spaces and packages,
//! memberships, each space's op log with its history index, materialized
//! documents), in the tables of `schema.rs`.
//!
//! What several processes need beyond one: seqs stay gap-free in commit order
//! (`append.rs` takes the space's row lock), documents are stored with a
//! compare-and-set on the materialized seq, the schema migrates under an
//! advisory lock, and a commit in one process wakes the live pulls held by
//! the others (`LISTEN`/`NOTIFY` on [`NOTIFY_CHANNEL`]).

mod append;
mod db;
mod error;
mod listen;
mod lookup;
mod open;
mod pool;
mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{
    CommitHook, DocsPage, NewOp, OpRefusal, PageLimit, Role, ServerStore, StoreError, StoreResult, StoredDoc, StoredOp,
    TokenRecord, missing_space,
};
use crate::model::{Op, Package, Seq};
use append::{Locking, to_i64};
use error::corrupt;
pub(crate) use error::pg;
use lookup::{existing_space, existing_user, seq_of, user_exists};
use open::sleep_up_to;
use pool::Pool;

/// The channel on which every append announces `"{head} {space}"` at commit.
pub const NOTIFY_CHANNEL: &str = "tidemark_commits";

/// Connections a process opens at most, unless told otherwise.
pub const DEFAULT_CONNECTIONS: usize = 16;

/// The server store on PostgreSQL.
pub struct PgStore {
    pool: Pool,
    epoch: String,
    /// Microseconds an append may sleep between numbering its ops and committing.
    commit_delay_us: AtomicU64,
    /// Microseconds an optimistic append sleeps after its reads.
    read_delay_us: AtomicU64,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.pool.config();
        f.debug_struct("PgStore")
            .field("hosts", &config.get_hosts())
            .field("dbname", &config.get_dbname())
            .field("epoch", &self.epoch)
            .finish()
    }
}

fn role_number(role: Role) -> i16 {
    match role {
        Role::ReadWrite => 1,
        Role::ReadOnly => 2,
    }
}

fn role_of(number: i16, user: &str) -> StoreResult<Role> {
    match number {
        1 => Ok(Role::ReadWrite),
        2 => Ok(Role::ReadOnly),
        other => Err(corrupt(format!("role of {user:?}"), format!("unknown role {other}"))),
    }
}

fn encode_package(package: Option<&Package>) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(&package).map_err(|e| StoreError::Backend(format!("cannot encode the package: {e}")))
}

impl ServerStore for PgStore {
    fn epoch(&self) -> StoreResult<String> {
        Ok(self.epoch.clone())
    }

    fn ready(&self) -> StoreResult<()> {
        self.with(async |c| c.execute("SELECT 1", &[]).await.map(drop))
    }

    fn create_user(&self, user: &str) -> StoreResult<()> {
        self.with(async |c| {
            let added = c
                .execute(
                    "INSERT INTO tidemark_users (name) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&user],
                )
                .await?;
            if added == 0 {
                return Err(StoreError::AlreadyExists {
                    what: "user",
                    name: user.to_string(),
                });
            }
            Ok(())
        })
    }

    fn user_exists(&self, user: &str) -> StoreResult<bool> {
        self.with(async |c| user_exists(c, user).await)
    }

    fn add_token(&self, token_id: &str, record: &TokenRecord) -> StoreResult<()> {
        self.write(async |txn| {
            existing_user(txn, &record.user).await?;
            let added = txn
                .execute(
                    "INSERT INTO tidemark_tokens (id, user_name, secret_hash) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&token_id, &record.user, &record.secret_hash.as_slice()],
                )
                .await?;
            if added == 0 {
                return Err(StoreError::AlreadyExists {
                    what: "token",
                    name: token_id.to_string(),
                });
            }
            Ok(())
        })
    }

    fn token(&self, token_id: &str) -> StoreResult<Option<TokenRecord>> {
        self.with(async |c| {
            let Some(row) = c
                .query_opt(
                    "SELECT user_name, secret_hash FROM tidemark_tokens WHERE id = $1",
                    &[&token_id],
                )
                .await?
            else {
                return Ok(None);
            };
            let hash: Vec<u8> = row.get(1);
            Ok(Some(TokenRecord {
                user: row.get(0),
                secret_hash: hash
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt(format!("token {token_id:?}"), "its hash is not 32 bytes"))?,
            }))
        })
    }

    fn create_space(&self, space: &str, package: Option<&Package>) -> StoreResult<()> {
        let package = encode_package(package)?;
        self.write(async |txn| {
            let Some(row) = txn
                .query_opt(
                    "INSERT INTO tidemark_spaces (name, package) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING id",
                    &[&space, &package],
                )
                .await?
            else {
                return Err(StoreError::AlreadyExists {
                    what: "space",
                    name: space.to_string(),
                });
            };
            let id: i64 = row.get(0);
            txn.execute(
                "INSERT INTO tidemark_materialized (space_id, seq) VALUES ($1, 0)",
                &[&id],
            )
            .await?;
            Ok(())
        })
    }

    fn package(&self, space: &str) -> StoreResult<Option<Option<Package>>> {
        self.with(async |c| {
            let Some(row) = c
                .query_opt("SELECT package FROM tidemark_spaces WHERE name = $1", &[&space])
                .await?
            else {
                return Ok(None);
            };
            let bytes: Vec<u8> = row.get(0);
            let package: Option<Package> =
                serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("package of space {space:?}"), e))?;
            Ok(Some(package))
        })
    }

    fn set_package(&self, space: &str, package: Option<&Package>) -> StoreResult<()> {
        let package = encode_package(package)?;
        self.with(async |c| {
            let changed = c
                .execute(
                    "UPDATE tidemark_spaces SET package = $2 WHERE name = $1",
                    &[&space, &package],
                )
                .await?;
            if changed == 0 {
                return Err(missing_space(space));
            }
            Ok(())
        })
    }

    fn grant(&self, user: &str, space: &str, role: Role) -> StoreResult<()> {
        self.write(async |txn| {
            existing_user(txn, user).await?;
            let id = existing_space(txn, space).await?;
            txn.execute(
                "INSERT INTO tidemark_members (space_id, user_name, role) VALUES ($1, $2, $3)
                 ON CONFLICT (space_id, user_name) DO UPDATE SET role = excluded.role",
                &[&id, &user, &role_number(role)],
            )
            .await?;
            Ok(())
        })
    }

    fn role(&self, user: &str, space: &str) -> StoreResult<Option<Role>> {
        self.with(async |c| {
            let row = c
                .query_opt(
                    "SELECT m.role FROM tidemark_members m JOIN tidemark_spaces s ON s.id = m.space_id
                     WHERE s.name = $1 AND m.user_name = $2",
                    &[&space, &user],
                )
                .await?;
            row.map(|row| role_of(row.get(0), user)).transpose()
        })
    }

    fn revoke(&self, user: &str, space: &str) -> StoreResult<bool> {
        self.write(async |txn| {
            let id = existing_space(txn, space).await?;
            let removed = txn
                .execute(
                    "DELETE FROM tidemark_members WHERE space_id = $1 AND user_name = $2",
                    &[&id, &user],
                )
                .await?;
            Ok(removed > 0)
        })
    }

    fn remove_token(&self, token_id: &str) -> StoreResult<bool> {
        self.with(async |c| {
            let removed = c
                .execute("DELETE FROM tidemark_tokens WHERE id = $1", &[&token_id])
                .await?;
            Ok(removed > 0)
        })
    }

    fn users(&self) -> StoreResult<Vec<(String, Vec<String>)>> {
        self.with(async |c| {
            let rows = c
                .query(
                    "SELECT u.name, t.id FROM tidemark_users u
                     LEFT JOIN tidemark_tokens t ON t.user_name = u.name
                     ORDER BY u.name, t.id",
                    &[],
                )
                .await?;
            let mut users: Vec<(String, Vec<String>)> = Vec::new();
            for row in rows {
                let (user, token): (String, Option<String>) = (row.get(0), row.get(1));
                if users.last().is_none_or(|(last, _)| *last != user) {
                    users.push((user, Vec::new()));
                }
                if let (Some(token), Some((_, tokens))) = (token, users.last_mut()) {
                    tokens.push(token);
                }
            }
            Ok(users)
        })
    }

    fn spaces(&self) -> StoreResult<Vec<String>> {
        self.with(async |c| {
            let rows = c.query("SELECT name FROM tidemark_spaces ORDER BY name", &[]).await?;
            Ok(rows.into_iter().map(|row| row.get(0)).collect())
        })
    }

    fn members(&self, space: &str) -> StoreResult<Vec<(String, Role)>> {
        self.with(async |c| {
            let id = existing_space(c, space).await?;
            let rows = c
                .query(
                    "SELECT user_name, role FROM tidemark_members WHERE space_id = $1 ORDER BY user_name",
                    &[&id],
                )
                .await?;
            rows.into_iter()
                .map(|row| {
                    let user: String = row.get(0);
                    let role = role_of(row.get(1), &user)?;
                    Ok((user, role))
                })
                .collect()
        })
    }

    fn append(&self, space: &str, ops: &[NewOp]) -> StoreResult<Vec<Result<Seq, OpRefusal>>> {
        let commit_delay = Duration::from_micros(self.commit_delay_us.load(Ordering::Relaxed));
        let read_delay = Duration::from_micros(self.read_delay_us.load(Ordering::Relaxed));
        // Optimistic first; a conflict with another append rolls it back and
        // the append runs again holding the lock from the start, where no
        // other append can change what it reads.
        for locking in [Locking::Optimistic, Locking::Locked] {
            let results = self.attempt(async |txn| {
                let after_reads = async || std::thread::sleep(read_delay);
                let results = append::append(txn, space, ops, locking, after_reads).await?;
                if results.is_some() {
                    sleep_up_to(commit_delay);
                }
                Ok(results)
            })?;
            if let Some(results) = results {
                return Ok(results);
            }
        }
        Err(StoreError::Backend(format!(
            "space {space}: an append under the space lock reported a conflict"
        )))
    }

    fn read_ops(&self, space: &str, since: Seq, limit: PageLimit) -> StoreResult<Vec<(Seq, StoredOp)>> {
        self.with(async |c| {
            let id = existing_space(c, space).await?;
            let Ok(since) = i64::try_from(since.0) else {
                return Ok(Vec::new());
            };
            let count = i64::try_from(limit.count).unwrap_or(i64::MAX);
            let rows = c
                .query(
                    "SELECT seq, user_name, op FROM tidemark_ops
                     WHERE space_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[&id, &since, &count],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            let mut used = 0usize;
            for row in rows {
                let seq = seq_of(row.get(0));
                let bytes: Vec<u8> = row.get(2);
                let op = Op::decode(&bytes).map_err(|e| corrupt(format!("op at seq {seq} of space {space:?}"), e))?;
                let size = op.change.len();
                if !limit.admits(out.len(), used, size) {
                    break;
                }
                used += size;
                out.push((seq, StoredOp { op, user: row.get(1) }));
            }
            Ok(out)
        })
    }

    fn head(&self, space: &str) -> StoreResult<Seq> {
        self.with(async |c| {
            let row = c
                .query_opt("SELECT head FROM tidemark_spaces WHERE name = $1", &[&space])
                .await?
                .ok_or_else(|| missing_space(space))?;
            Ok(seq_of(row.get(0)))
        })
    }

    fn mark(&self, space: &str, seq: Seq) -> StoreResult<Option<u64>> {
        self.with(async |c| {
            let id = existing_space(c, space).await?;
            let Ok(seq) = i64::try_from(seq.0) else {
                return Ok(None);
            };
            let row = c
                .query_opt(
                    "SELECT mark FROM tidemark_ops WHERE space_id = $1 AND seq = $2",
                    &[&id, &seq],
                )
                .await?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    fn materialized(&self, space: &str) -> StoreResult<Seq> {
        self.with(async |c| {
            let row = c
                .query_opt(
                    "SELECT m.seq FROM tidemark_materialized m JOIN tidemark_spaces s ON s.id = m.space_id
                     WHERE s.name = $1",
                    &[&space],
                )
                .await?
                .ok_or_else(|| missing_space(space))?;
            Ok(seq_of(row.get(0)))
        })
    }

    fn store_docs(&self, space: &str, docs: &[StoredDoc], from: Seq, through: Seq) -> StoreResult<bool> {
        let (from, through) = (to_i64(from)?, to_i64(through)?);
        self.write(async |txn| {
            let id = existing_space(txn, space).await?;
            let moved = txn
                .execute(
                    "UPDATE tidemark_materialized SET seq = $3 WHERE space_id = $1 AND seq = $2",
                    &[&id, &from, &through],
                )
                .await?;
            if moved == 0 {
                return Ok(false);
            }
            let collections: Vec<&str> = docs.iter().map(|d| d.collection.as_str()).collect();
            let records: Vec<&str> = docs.iter().map(|d| d.record.as_str()).collect();
            let bytes: Vec<&[u8]> = docs.iter().map(|d| d.doc.as_slice()).collect();
            let rows: Vec<Option<&[u8]>> = docs.iter().map(|d| d.row.as_deref()).collect();
            txn.execute(
                "INSERT INTO tidemark_docs (space_id, collection, record, doc, row_bytes)
                 SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bytea[])
                 ON CONFLICT (space_id, collection, record)
                 DO UPDATE SET doc = excluded.doc, row_bytes = excluded.row_bytes",
                &[&id, &collections, &records, &bytes, &rows],
            )
            .await?;
            Ok(true)
        })
    }

    fn doc(&self, space: &str, collection: &str, record: &str) -> StoreResult<Option<Vec<u8>>> {
        self.with(async |c| {
            let id = existing_space(c, space).await?;
            Ok(c.query_opt(
                "SELECT doc FROM tidemark_docs WHERE space_id = $1 AND collection = $2 AND record = $3",
                &[&id, &collection, &record],
            )
            .await?
            .map(|row| row.get(0)))
        })
    }

    fn docs_of(&self, space: &str, records: &[(String, String)]) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let collections: Vec<&str> = records.iter().map(|(c, _)| c.as_str()).collect();
        let ids: Vec<&str> = records.iter().map(|(_, r)| r.as_str()).collect();
        self.with(async |c| {
            let id = existing_space(c, space).await?;
            let rows = c
                .query(
                    "SELECT d.doc FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS k (collection, record, n)
                     LEFT JOIN LATERAL (SELECT doc FROM tidemark_docs
                                        WHERE space_id = $1 AND collection = k.collection AND record = k.record LIMIT 1) d
                       ON true
                     ORDER BY k.n",
                    &[&id, &collections, &ids],
                )
                .await?;
            Ok(rows.into_iter().map(|row| row.get(0)).collect())
        })
    }

    fn quarantine(&self, space: &str, collection: &str, record: &str, reason: &str) -> StoreResult<()> {
        self.write(async |txn| {
            let id = existing_space(txn, space).await?;
            txn.execute(
                "INSERT INTO tidemark_quarantine (space_id, collection, record, reason) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (space_id, collection, record) DO UPDATE SET reason = excluded.reason",
                &[&id, &collection, &record, &reason],
            )
            .await?;
            Ok(())
        })
    }

    fn quarantined(&self, space: &str) -> StoreResult<BTreeMap<(String, String), String>> {
        self.with(async |c| {
            let id = existing_space(c, space).await?;
            let rows = c
                .query(
                    "SELECT collection, record, reason FROM tidemark_quarantine WHERE space_id = $1",
                    &[&id],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|row| ((row.get(0), row.get(1)), row.get(2)))
                .collect())
        })
    }

    fn docs_page(&self, space: &str, after: Option<(&str, &str)>, limit: PageLimit) -> StoreResult<DocsPage> {
        self.with(async |c| {
            let id = existing_space(c, space).await?;
            // One row more than the page holds tells whether more follow.
            let count = i64::try_from(limit.count).unwrap_or(i64::MAX - 1).saturating_add(1);
            let rows = match after {
                Some((collection, record)) => {
                    c.query(
                        "SELECT collection, record, doc, row_bytes FROM tidemark_docs
                         WHERE space_id = $1 AND (collection, record) > ($2, $3)
                         ORDER BY collection, record LIMIT $4",
                        &[&id, &collection, &record, &count],
                    )
                    .await?
                }
                None => {
                    c.query(
                        "SELECT collection, record, doc, row_bytes FROM tidemark_docs
                         WHERE space_id = $1 ORDER BY collection, record LIMIT $2",
                        &[&id, &count],
                    )
                    .await?
                }
            };
            let mut page = DocsPage::default();
            let mut used = 0usize;
            for row in rows {
                let doc: Vec<u8> = row.get(2);
                let stored_row: Option<Vec<u8>> = row.get(3);
                // The row travels with the document: the page's byte bound counts both.
                let size = doc.len() + stored_row.as_ref().map_or(0, Vec::len);
                if !limit.admits(page.docs.len(), used, size) {
                    page.more = true;
                    break;
                }
                used += size;
                page.docs.push(StoredDoc {
                    collection: row.get(0),
                    record: row.get(1),
                    doc,
                    row: stored_row,
                });
            }
            Ok(page)
        })
    }

    fn watch_commits(&self, hook: CommitHook) {
        self.pool.spawn(listen::listen(self.pool.config().clone(), hook));
    }
}
