//! Access to the replica's META table: its values read inside any
//! transaction, and the one way to write one.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use super::tables::{self, meta};
use crate::error::{CorruptData, Result};
use crate::model::{ActorId, Package};

/// Read access to the metadata table inside any transaction.
pub(crate) struct Meta {
    entries: MetaEntries,
}

enum MetaEntries {
    /// A read transaction's META, read key by key: the transaction is a
    /// snapshot already, and most reads want one key of it.
    Table(redb::ReadOnlyTable<&'static str, &'static [u8]>),
    /// A write transaction's META as it was when read: what the transaction
    /// writes after that does not show (callers read again when it must).
    Copied(std::collections::BTreeMap<String, Vec<u8>>),
}

impl Meta {
    pub fn read(txn: &ReadTransaction) -> Result<Meta> {
        Ok(Meta {
            entries: MetaEntries::Table(txn.open_table(tables::META)?),
        })
    }

    pub fn read_write(txn: &WriteTransaction) -> Result<Meta> {
        let table = txn.open_table(tables::META)?;
        let mut entries = std::collections::BTreeMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            entries.insert(k.value().to_string(), v.value().to_vec());
        }
        Ok(Meta {
            entries: MetaEntries::Copied(entries),
        })
    }

    /// A write transaction's META values of `keys` only: an edit needs two of
    /// them, and copying every value (the token, the binding, the package
    /// twice over) costs more than the rest of its reads.
    pub fn read_keys(txn: &WriteTransaction, keys: &[&str]) -> Result<Meta> {
        let table = txn.open_table(tables::META)?;
        let mut entries = std::collections::BTreeMap::new();
        for &key in keys {
            if let Some(value) = table.get(key)? {
                entries.insert(key.to_string(), value.value().to_vec());
            }
        }
        Ok(Meta {
            entries: MetaEntries::Copied(entries),
        })
    }

    pub fn bytes(&self, key: &str) -> Result<Option<std::borrow::Cow<'_, [u8]>>> {
        Ok(match &self.entries {
            MetaEntries::Table(table) => table.get(key)?.map(|v| std::borrow::Cow::Owned(v.value().to_vec())),
            MetaEntries::Copied(entries) => entries.get(key).map(|v| std::borrow::Cow::Borrowed(v.as_slice())),
        })
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        Ok(self.bytes(key)?.map_or(0, |b| read_u64(&b)))
    }

    /// Whether `key` holds a value.
    pub fn has(&self, key: &str) -> Result<bool> {
        Ok(self.bytes(key)?.is_some())
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.bytes(key)? {
            Some(b) => Ok(Some(
                serde_json::from_slice(&b).map_err(|e| CorruptData::new(format!("store metadata {key}"), e))?,
            )),
            None => Ok(None),
        }
    }

    pub fn actor(&self) -> Result<ActorId> {
        let bytes = self
            .bytes(meta::ACTOR)?
            .ok_or_else(|| CorruptData::new("store metadata", "no actor id"))?;
        Ok(ActorId::from_slice(&bytes)?)
    }

    pub fn package(&self) -> Result<Option<Package>> {
        self.json(meta::PACKAGE)
    }
}

pub(crate) fn read_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_le_bytes).unwrap_or(0)
}

pub(crate) fn put_meta(txn: &WriteTransaction, key: &str, value: &[u8]) -> Result<()> {
    txn.open_table(tables::META)?.insert(key, value)?;
    Ok(())
}
