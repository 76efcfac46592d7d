//! The service core: authentication, membership, validation, limits, seq
//! assignment (through the store) and reads of the materialized records.
//! Synchronous and transport-free: the HTTP front and the in-process remote
//! both call it.

use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ServiceError;
use super::materialize::Materializer;
use super::store::{Role, ServerStore, StoredOp, TokenRecord};
use crate::model::{Package, Seq, check_field_name};
use crate::protocol::message::{
    CreateSpace, Grant, PackageResponse, PullResponse, PulledOp, PushRequest, PushResponse, SnapshotDoc,
    SnapshotResponse, UserToken, WireOp, encode_bytes,
};
use crate::record::{ChangeError, Fields, RecordDoc, validate_change};

type Result<T> = std::result::Result<T, ServiceError>;

/// Limits that keep one client from hurting the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Ops in one push.
    pub max_ops_per_push: usize,
    /// Bytes of one op's change.
    pub max_op_bytes: usize,
    /// Bytes of one request body (HTTP).
    pub max_body_bytes: usize,
    /// Ops in one pull page (a larger `limit` is clamped).
    pub max_pull_page: usize,
    /// Documents in one snapshot page (a larger `limit` is clamped).
    pub max_snapshot_page: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ops_per_push: 1000,
            max_op_bytes: 256 * 1024,
            max_body_bytes: 32 * 1024 * 1024,
            max_pull_page: 2000,
            max_snapshot_page: 2000,
        }
    }
}

/// The server's service core over a store.
pub struct Service<S: ServerStore> {
    store: Arc<S>,
    limits: Limits,
    epoch: String,
    admin_hash: Option<[u8; 32]>,
    materializer: Materializer<S>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Tokens look like `tm1.<id>.<secret>`: the id finds the record, the secret
/// (256 random bits) is compared by hash in constant time.
const TOKEN_PREFIX: &str = "tm1";

impl<S: ServerStore> Service<S> {
    /// A service over `store`; admin routes accept `admin_token` (none = admin disabled).
    pub fn new(store: S, limits: Limits, admin_token: Option<&str>) -> Result<Self> {
        let store = Arc::new(store);
        let epoch = store.epoch()?;
        Ok(Service {
            materializer: Materializer::start(store.clone()),
            store,
            limits,
            epoch,
            admin_hash: admin_token.filter(|t| !t.is_empty()).map(|t| sha256(t.as_bytes())),
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The user a bearer token belongs to.
    pub fn authenticate(&self, token: Option<&str>) -> Result<String> {
        let token = token.ok_or(ServiceError::Unauthorized)?;
        let mut parts = token.splitn(3, '.');
        let (Some(TOKEN_PREFIX), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ServiceError::Unauthorized);
        };
        let record = self.store.token(id)?.ok_or(ServiceError::Unauthorized)?;
        if bool::from(sha256(secret.as_bytes()).ct_eq(&record.secret_hash)) {
            Ok(record.user)
        } else {
            Err(ServiceError::Unauthorized)
        }
    }

    /// Checks the admin token.
    pub fn check_admin(&self, token: Option<&str>) -> Result<()> {
        match (&self.admin_hash, token) {
            (Some(hash), Some(t)) if bool::from(sha256(t.as_bytes()).ct_eq(hash)) => Ok(()),
            _ => Err(ServiceError::AdminOnly),
        }
    }

    fn role(&self, user: &str, space: &str) -> Result<Role> {
        self.store
            .role(user, space)?
            .ok_or_else(|| ServiceError::NotFound(space.to_string()))
    }

    /// Validates and stores a batch of ops; returns the seq of each.
    pub fn push(&self, user: &str, space: &str, request: PushRequest) -> Result<PushResponse> {
        if self.role(user, space)? == Role::ReadOnly {
            return Err(ServiceError::ReadOnly {
                user: user.into(),
                space: space.into(),
            });
        }
        if request.ops.len() > self.limits.max_ops_per_push {
            return Err(ServiceError::TooLarge(format!(
                "{} ops in one push; the limit is {}: push in smaller batches",
                request.ops.len(),
                self.limits.max_ops_per_push
            )));
        }
        let package = self
            .store
            .package(space)?
            .ok_or_else(|| ServiceError::NotFound(space.to_string()))?;
        let mut ops = Vec::with_capacity(request.ops.len());
        for (index, wire) in request.ops.iter().enumerate() {
            ops.push(StoredOp {
                op: self.check_op(index, wire, package.as_ref())?,
                user: user.to_string(),
            });
        }
        let seqs = self.store.append(space, &ops)?;
        let head = self.store.head(space)?;
        self.materializer.nudge(space);
        Ok(PushResponse {
            epoch: self.epoch.clone(),
            seqs,
            head,
        })
    }

    fn check_op(&self, index: usize, wire: &WireOp, package: Option<&Package>) -> Result<crate::model::Op> {
        let invalid = |reason: String| ServiceError::InvalidOp { index, reason };
        let op = wire.to_op().map_err(|e| invalid(e.to_string()))?;
        if op.change.len() > self.limits.max_op_bytes {
            return Err(ServiceError::OpTooLarge {
                index,
                bytes: op.change.len(),
                max: self.limits.max_op_bytes,
            });
        }
        let schema = match package {
            Some(p) => Some(
                p.collection(op.collection.as_str())
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            None => None,
        };
        validate_change(&op.change, op.actor, op.collection.as_str(), schema).map_err(|e| match e {
            ChangeError::Corrupt(c) => invalid(format!("the change does not decode ({c})")),
            other => invalid(other.to_string()),
        })?;
        Ok(op)
    }

    /// Ops after `since`, at most `limit` (clamped to the page limit). With `at`,
    /// the op at seq `since` must be that op, or the history changed under the
    /// client (a store restored from a backup keeps its epoch).
    pub fn pull(
        &self,
        user: &str,
        space: &str,
        since: Seq,
        limit: usize,
        at: Option<crate::model::OpId>,
    ) -> Result<PullResponse> {
        self.role(user, space)?;
        if let (Some(at), true) = (at, since > 0) {
            let found = self.store.read_ops(space, since - 1, 1)?;
            if !matches!(found.first(), Some((seq, stored)) if *seq == since && stored.op.id == at) {
                return Err(ServiceError::HistoryChanged { seq: since });
            }
        }
        let limit = limit.clamp(1, self.limits.max_pull_page);
        let head = self.store.head(space)?;
        let rows = self.store.read_ops(space, since, limit)?;
        let end = rows.last().map(|(seq, _)| *seq).unwrap_or(since);
        let ops = rows
            .into_iter()
            .map(|(seq, stored)| PulledOp {
                seq,
                user: stored.user,
                op: WireOp::from_op(&stored.op),
            })
            .collect();
        Ok(PullResponse {
            epoch: self.epoch.clone(),
            ops,
            end,
            more: end < head.max(self.store.head(space)?),
            head,
        })
    }

    /// The space's package and its version (0 = schemaless).
    pub fn package(&self, user: &str, space: &str) -> Result<PackageResponse> {
        self.role(user, space)?;
        let package = self
            .store
            .package(space)?
            .ok_or_else(|| ServiceError::NotFound(space.to_string()))?;
        Ok(PackageResponse {
            epoch: self.epoch.clone(),
            version: package.as_ref().map(|p| p.version).unwrap_or(0),
            package,
            head: self.store.head(space)?,
        })
    }

    /// A page of compacted documents; every op with seq ≤ `as_of` is in them.
    pub fn snapshot(&self, user: &str, space: &str, after: Option<&str>, limit: usize) -> Result<SnapshotResponse> {
        self.role(user, space)?;
        let limit = limit.clamp(1, self.limits.max_snapshot_page);
        self.materializer.catch_up(space)?;
        // Read as_of before the documents: they can only be newer, never older.
        let as_of = self.store.materialized(space)?;
        let after = match after {
            Some(cursor) => Some(cursor.split_once('\n').ok_or_else(|| {
                ServiceError::BadRequest("bad snapshot cursor: pass back the `next` of the previous page".into())
            })?),
            None => None,
        };
        let docs = self.store.docs_page(space, after, limit)?;
        let next = if docs.len() == limit {
            docs.last().map(|d| format!("{}\n{}", d.collection, d.record))
        } else {
            None
        };
        let as_of_op = match as_of {
            0 => None,
            n => self
                .store
                .read_ops(space, n - 1, 1)?
                .into_iter()
                .find(|(seq, _)| *seq == n)
                .map(|(_, stored)| stored.op.id),
        };
        Ok(SnapshotResponse {
            epoch: self.epoch.clone(),
            as_of,
            as_of_op,
            docs: docs
                .into_iter()
                .map(|d| SnapshotDoc {
                    collection: d.collection,
                    record: d.record,
                    doc: encode_bytes(&d.doc),
                })
                .collect(),
            next,
        })
    }

    /// The server's materialized record (None if it does not exist or is deleted).
    pub fn record(&self, user: &str, space: &str, collection: &str, id: &str) -> Result<Option<Fields>> {
        self.role(user, space)?;
        self.materializer.catch_up(space)?;
        let Some(bytes) = self.store.doc(space, collection, id)? else {
            return Ok(None);
        };
        let doc = RecordDoc::load(&bytes, crate::model::ActorId([0; 16]))
            .map_err(|e| ServiceError::Internal(format!("stored document {collection}/{id}: {e}")))?;
        Ok((!doc.is_deleted() && !doc.is_empty()).then(|| doc.fields()))
    }

    /// Admin: creates a space with an optional package.
    pub fn create_space(&self, request: &CreateSpace) -> Result<()> {
        check_name("space", &request.space)?;
        if let Some(p) = &request.package {
            p.check().map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        }
        self.store.create_space(&request.space, request.package.as_ref())?;
        Ok(())
    }

    /// Admin: replaces a space's package. Ops already stored stay; new pushes validate against it.
    pub fn set_package(&self, space: &str, package: Option<&Package>) -> Result<()> {
        if let Some(p) = package {
            p.check().map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        }
        self.store.set_package(space, package)?;
        Ok(())
    }

    /// Admin: creates a user and returns its first token (the only time it is shown).
    pub fn add_user(&self, user: &str) -> Result<UserToken> {
        check_name("user", user)?;
        self.store.create_user(user)?;
        self.new_token(user)
    }

    /// Admin: issues another token for an existing user (the old ones keep working).
    pub fn new_token(&self, user: &str) -> Result<UserToken> {
        if !self.store.user_exists(user)? {
            return Err(ServiceError::NotFoundOther(format!("no user {user:?}: add it first")));
        }
        let id = random_hex(8);
        let secret = random_hex(32);
        self.store.add_token(
            &id,
            &TokenRecord {
                user: user.to_string(),
                secret_hash: sha256(secret.as_bytes()),
            },
        )?;
        Ok(UserToken {
            user: user.to_string(),
            token: format!("{TOKEN_PREFIX}.{id}.{secret}"),
        })
    }

    /// Admin: grants a user a space.
    pub fn grant(&self, grant: &Grant) -> Result<()> {
        if !self.store.user_exists(&grant.user)? {
            return Err(ServiceError::NotFoundOther(format!(
                "no user {:?}: add it first",
                grant.user
            )));
        }
        if self.store.package(&grant.space)?.is_none() {
            return Err(ServiceError::NotFoundOther(format!(
                "no space {:?}: create it first",
                grant.space
            )));
        }
        let role = if grant.read_only {
            Role::ReadOnly
        } else {
            Role::ReadWrite
        };
        self.store.grant(&grant.user, &grant.space, role)?;
        Ok(())
    }

    /// Brings the materialized documents of a space up to its head (normally done in the background).
    pub fn materialize(&self, space: &str) -> Result<()> {
        self.materializer.catch_up(space)
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    check_field_name(name).map_err(|e| ServiceError::BadRequest(format!("bad {what} name: {e}")))
}
