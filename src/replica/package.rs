//! Installing a package downloaded from the server.

use super::Replica;
use crate::error::Result;
use crate::model::Package;

impl Replica {
    /// Installs a package downloaded from the server. Pending ops that no longer
    /// validate move to the rejected list; returns how many did.
    pub fn install_package(&self, package: &Package) -> Result<u64> {
        package.check()?;
        let pending = self.pending_ops(usize::MAX)?;
        let mut refused = Vec::new();
        for p in &pending {
            let schema = match package.collection(p.op.collection.as_str()) {
                Ok(s) => s,
                Err(e) => {
                    refused.push((p.pos, e.to_string()));
                    continue;
                }
            };
            if let Err(e) =
                crate::record::validate_change(&p.op.change, p.op.actor, p.op.collection.as_str(), Some(schema))
            {
                refused.push((p.pos, e.to_string()));
            }
        }
        self.set_package(Some(package))?;
        let refusals: Vec<_> = refused
            .into_iter()
            .map(|(pos, reason)| super::Refusal {
                pos,
                code: crate::protocol::ErrorCode::InvalidAfterPackageChange.to_string(),
                reason: format!("package version {}: {reason}", package.version),
            })
            .collect();
        if refusals.is_empty() {
            return Ok(0);
        }
        self.refuse(&refusals)
    }
}
