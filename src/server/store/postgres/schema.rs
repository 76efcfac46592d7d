//! The PostgreSQL schema: versioned migrations embedded in the binary, applied
//! at start-up under an advisory lock, so several processes starting at once
//! apply each migration exactly once and none serves a half-made schema.

use tokio_postgres::Client;

use super::pg;
use crate::server::store::{StoreError, StoreResult};

/// The key of the advisory lock that serializes migrations (any fixed number
/// that other applications of the database are unlikely to use).
const MIGRATION_LOCK: i64 = 0x7469_6465_6d61_726b; // "tidemark"

/// Migration `n` is `MIGRATIONS[n - 1]`. Append only: a released migration never changes.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, spaces, the op log, the history index, documents.
    // Names and ids compare in byte order (COLLATE "C"), as in the redb store,
    // so snapshot pages come in the same order from either store.
    r#"
    CREATE TABLE tidemark_meta (
        key text COLLATE "C" PRIMARY KEY,
        value text NOT NULL
    );
    CREATE TABLE tidemark_users (
        name text COLLATE "C" PRIMARY KEY
    );
    CREATE TABLE tidemark_tokens (
        id text COLLATE "C" PRIMARY KEY,
        user_name text COLLATE "C" NOT NULL REFERENCES tidemark_users (name),
        secret_hash bytea NOT NULL
    );
    CREATE TABLE tidemark_spaces (
        id bigserial PRIMARY KEY,
        name text COLLATE "C" NOT NULL UNIQUE,
        package bytea NOT NULL,
        -- The highest seq; taken under this row's lock by every append.
        head bigint NOT NULL DEFAULT 0
    );
    -- Apart from the space row, so that storing documents never waits for an
    -- append's lock, nor holds one up.
    CREATE TABLE tidemark_materialized (
        space_id bigint PRIMARY KEY REFERENCES tidemark_spaces (id),
        seq bigint NOT NULL
    );
    CREATE TABLE tidemark_members (
        space_id bigint NOT NULL REFERENCES tidemark_spaces (id),
        user_name text COLLATE "C" NOT NULL REFERENCES tidemark_users (name),
        role smallint NOT NULL,
        PRIMARY KEY (space_id, user_name)
    );
    -- No foreign key: its check would cost every inserted op a lookup (spaces
    -- are never deleted).
    CREATE TABLE tidemark_ops (
        space_id bigint NOT NULL,
        seq bigint NOT NULL,
        op_id bytea NOT NULL,
        user_name text NOT NULL,
        op bytea NOT NULL,
        change_len integer NOT NULL,
        PRIMARY KEY (space_id, seq),
        UNIQUE (space_id, op_id)
    );
    CREATE TABLE tidemark_changes (
        space_id bigint NOT NULL,
        collection text COLLATE "C" NOT NULL,
        record text COLLATE "C" NOT NULL,
        hash bytea NOT NULL,
        max_op bigint NOT NULL,
        PRIMARY KEY (space_id, collection, record, hash)
    );
    CREATE TABLE tidemark_actors (
        space_id bigint NOT NULL,
        collection text COLLATE "C" NOT NULL,
        record text COLLATE "C" NOT NULL,
        actor bytea NOT NULL,
        seq bigint NOT NULL,
        max_op bigint NOT NULL,
        PRIMARY KEY (space_id, collection, record, actor)
    );
    CREATE TABLE tidemark_docs (
        space_id bigint NOT NULL,
        collection text COLLATE "C" NOT NULL,
        record text COLLATE "C" NOT NULL,
        doc bytea NOT NULL,
        PRIMARY KEY (space_id, collection, record)
    );
    CREATE TABLE tidemark_quarantine (
        space_id bigint NOT NULL,
        collection text COLLATE "C" NOT NULL,
        record text COLLATE "C" NOT NULL,
        reason text NOT NULL,
        PRIMARY KEY (space_id, collection, record)
    );
    "#,
    // 2: the mark of each op (see `ServerStore::mark`); ops stored before have 0.
    r#"
    ALTER TABLE tidemark_ops ADD COLUMN mark bigint NOT NULL DEFAULT 0;
    "#,
    // 3: each document's row (`Row::encode`), stored with it; null for a
    // document stored before, whose readers materialize it themselves.
    r#"
    ALTER TABLE tidemark_docs ADD COLUMN row_bytes bytea;
    "#,
];

/// Brings the schema to this build's version and returns the store's epoch.
pub(super) async fn migrate(client: &mut Client) -> StoreResult<String> {
    let txn = client.transaction().await.map_err(pg)?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    txn.batch_execute("CREATE TABLE IF NOT EXISTS tidemark_schema (version integer PRIMARY KEY)")
        .await
        .map_err(pg)?;
    let current: i32 = txn
        .query_one("SELECT coalesce(max(version), 0) FROM tidemark_schema", &[])
        .await
        .map_err(pg)?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    if current > known {
        return Err(StoreError::Backend(format!(
            "the database has tidemark schema version {current}; this build understands up to version {known}: run a newer tidemark"
        )));
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(current as usize) {
        txn.batch_execute(sql).await.map_err(pg)?;
        txn.execute("INSERT INTO tidemark_schema (version) VALUES ($1)", &[&version])
            .await
            .map_err(pg)?;
        tracing::info!(version, "applied a PostgreSQL schema migration");
    }
    let fresh = crate::model::random_uuid().to_string();
    txn.execute(
        "INSERT INTO tidemark_meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING",
        &[&fresh],
    )
    .await
    .map_err(pg)?;
    let epoch: String = txn
        .query_one("SELECT value FROM tidemark_meta WHERE key = 'epoch'", &[])
        .await
        .map_err(pg)?
        .get(0);
    txn.commit().await.map_err(pg)?;
    Ok(epoch)
}
