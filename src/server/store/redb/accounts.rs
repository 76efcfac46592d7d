//! Reading users, spaces and memberships for the admin listings.

use ::redb::{ReadTransaction, ReadableTable};

use super::{corrupt, tables};
use crate::server::store::{Role, StoreResult};

/// A role byte of [`tables::MEMBERS`].
pub(super) fn role_of(byte: u8, user: &str, space: &str) -> StoreResult<Role> {
    match byte {
        1 => Ok(Role::ReadWrite),
        2 => Ok(Role::ReadOnly),
        other => Err(corrupt(
            format!("role of {user:?} in {space:?}"),
            format!("unknown role {other}"),
        )),
    }
}

/// Every user with the ids of its tokens, by name.
pub(super) fn users(txn: &ReadTransaction) -> StoreResult<Vec<(String, Vec<String>)>> {
    let mut users: Vec<(String, Vec<String>)> = Vec::new();
    for entry in txn.open_table(tables::USERS)?.iter()? {
        users.push((entry?.0.value().to_string(), Vec::new()));
    }
    for entry in txn.open_table(tables::TOKENS)?.iter()? {
        let (id, value) = entry?;
        let owner = value.value().get(32..).unwrap_or_default();
        if let Ok(at) = users.binary_search_by(|(user, _)| user.as_bytes().cmp(owner)) {
            users[at].1.push(id.value().to_string());
        }
    }
    Ok(users)
}

/// Every space, by name.
pub(super) fn spaces(txn: &ReadTransaction) -> StoreResult<Vec<String>> {
    let mut spaces = Vec::new();
    for entry in txn.open_table(tables::SPACES)?.iter()? {
        spaces.push(entry?.0.value().to_string());
    }
    Ok(spaces)
}

/// The members of space `id` with their roles, by user.
pub(super) fn members(txn: &ReadTransaction, id: u64, space: &str) -> StoreResult<Vec<(String, Role)>> {
    let mut members = Vec::new();
    for entry in txn.open_table(tables::MEMBERS)?.range((id, "")..(id + 1, ""))? {
        let (key, role) = entry?;
        let user = key.value().1.to_string();
        let role = role_of(role.value(), &user, space)?;
        members.push((user, role));
    }
    Ok(members)
}
