//! How the redb store lays out values that are more than one number: a log
//! entry (the pushing user and the op), a package, a role.

use super::{StoreError, StoreResult, corrupt};
use crate::model::{Op, Package, Seq};
use crate::server::store::{Role, StoredOp};

/// Writes `[user len u16 LE][user][Op::encode()]` into `out` (cleared first) and
/// returns where the op bytes start.
pub(super) fn encode_stored(out: &mut Vec<u8>, stored: &StoredOp) -> StoreResult<usize> {
    let user = stored.user.as_bytes();
    let len = u16::try_from(user.len()).map_err(|_| {
        StoreError::Backend(format!(
            "user name of {} bytes is too long to store (the limit is {})",
            user.len(),
            u16::MAX
        ))
    })?;
    out.clear();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(user);
    let op_start = out.len();
    out.extend_from_slice(&stored.op.encode());
    Ok(op_start)
}

/// Splits a [`tables::LOG`] value into (user bytes, op bytes).
pub(super) fn split_stored(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
    let user = bytes.get(2..2 + len)?;
    Some((user, &bytes[2 + len..]))
}

pub(super) fn decode_stored(bytes: &[u8], space: &str, seq: Seq) -> StoreResult<StoredOp> {
    let what = || format!("op at seq {seq} of space {space:?}");
    let (user, op) = split_stored(bytes).ok_or_else(|| corrupt(what(), "truncated"))?;
    Ok(StoredOp {
        op: Op::decode(op).map_err(|e| corrupt(what(), e))?,
        user: String::from_utf8(user.to_vec()).map_err(|e| corrupt(what(), e))?,
    })
}

pub(super) fn encode_package(package: Option<&Package>) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(&package).map_err(|e| StoreError::Backend(format!("cannot encode the package: {e}")))
}

pub(super) fn role_byte(role: Role) -> u8 {
    match role {
        Role::ReadWrite => 1,
        Role::ReadOnly => 2,
    }
}

pub(super) fn read_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_le_bytes).unwrap_or(0)
}
