//! The pending count: how many local ops in the log wait for the server
//! (above `pushed`, neither rejected nor discarded). It lives in META so that
//! `status` is one read; these are the only functions that change it.

use redb::{ReadableTable, Table, WriteTransaction};

use super::tables::{self, meta};
use super::{Meta, put_meta, read_u64};
use crate::error::Result;

/// The pending count as `m` read it.
pub(crate) fn count(m: &Meta) -> Result<u64> {
    m.u64(meta::PENDING)
}

fn current(txn: &WriteTransaction) -> Result<u64> {
    Ok(txn
        .open_table(tables::META)?
        .get(meta::PENDING)?
        .map_or(0, |v| read_u64(v.value())))
}

/// `n` more local ops wait for the server (`m`: the transaction's META, held
/// open by the caller, which appends to the log).
pub(crate) fn add_in(m: &mut Table<&str, &[u8]>, n: u64) -> Result<()> {
    if n > 0 {
        let current = m.get(meta::PENDING)?.map_or(0, |v| read_u64(v.value()));
        m.insert(meta::PENDING, (current + n).to_le_bytes().as_slice())?;
    }
    Ok(())
}

/// `n` pending ops left the queue (acknowledged, rejected or discarded).
pub(crate) fn remove(txn: &WriteTransaction, n: u64) -> Result<()> {
    if n > 0 {
        put_meta(txn, meta::PENDING, &current(txn)?.saturating_sub(n).to_le_bytes())?;
    }
    Ok(())
}
