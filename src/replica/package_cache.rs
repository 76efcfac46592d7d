//! The parsed package, kept between calls. Every edit validates against the
//! package, and parsing a CRM-sized one (8 collections of 12 fields) from its
//! stored JSON cost more per edit than automerge's part of the edit did.
//!
//! The parsed copy is used only while META holds exactly the bytes it was parsed
//! from, so a package installed by a sync, by `set_package` or by another process
//! sharing the file is picked up by the next call.

use std::sync::{Arc, Mutex};

use super::Meta;
use super::tables::meta;
use crate::error::Result;
use crate::model::Package;

#[derive(Default)]
pub(crate) struct PackageCache {
    /// (the stored bytes, the package parsed from them)
    parsed: Mutex<Option<(Vec<u8>, Arc<Package>)>>,
}

impl PackageCache {
    /// The package `m` holds (None = schemaless), parsed at most once per stored version.
    pub fn get(&self, m: &Meta) -> Result<Option<Arc<Package>>> {
        let Some(stored) = m.bytes(meta::PACKAGE)? else {
            return Ok(None);
        };
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((bytes, package)) = parsed.as_ref()
            && bytes.as_slice() == &*stored
        {
            return Ok(Some(package.clone()));
        }
        // Parsed (and its errors worded) the one way META values are.
        let Some(package) = m.package()?.map(Arc::new) else {
            return Ok(None);
        };
        *parsed = Some((stored.to_vec(), package.clone()));
        Ok(Some(package))
    }
}
