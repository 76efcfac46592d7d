//! Lookups every call of the PostgreSQL store starts with. Spaces and users are
//! never deleted, so a read may look its space up and then read outside one
//! transaction.

use tokio_postgres::GenericClient;

use super::db::Db;
use crate::model::Seq;
use crate::server::store::{StoreResult, missing_space, missing_user};

/// The id of `space`, if it exists.
pub(super) async fn space_id<C: GenericClient + Sync>(client: &Db<'_, C>, space: &str) -> StoreResult<Option<i64>> {
    Ok(client
        .query_opt("SELECT id FROM tidemark_spaces WHERE name = $1", &[&space])
        .await?
        .map(|row| row.get(0)))
}

pub(super) async fn existing_space<C: GenericClient + Sync>(client: &Db<'_, C>, space: &str) -> StoreResult<i64> {
    space_id(client, space).await?.ok_or_else(|| missing_space(space))
}

pub(super) async fn user_exists<C: GenericClient + Sync>(client: &Db<'_, C>, user: &str) -> StoreResult<bool> {
    Ok(client
        .query_opt("SELECT 1 FROM tidemark_users WHERE name = $1", &[&user])
        .await?
        .is_some())
}

pub(super) fn seq_of(value: i64) -> Seq {
    Seq(value.max(0) as u64)
}

/// `Missing` unless `user` exists.
pub(super) async fn existing_user<C: GenericClient + Sync>(client: &Db<'_, C>, user: &str) -> StoreResult<()> {
    if user_exists(client, user).await? {
        Ok(())
    } else {
        Err(missing_user(user))
    }
}
