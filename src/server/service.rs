//! The service core: authentication, membership, validation, limits, seq
//! assignment (through the store) and reads of the materialized records.
//! Synchronous and transport-free: the HTTP front and the in-process remote
//! both call it.

use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::commits::Commits;
use super::error::ServiceError;
use super::limits::Limits;
use super::materialize::Materializer;
use super::metrics::Metrics;
use super::names::check_name;
use super::store::{NewOp, OpRefusal, PageLimit, Role, ServerStore, StoredOp, TokenRecord};
use crate::model::{Package, Seq, nfc};
use crate::protocol::ErrorCode;
use crate::protocol::message::{
    CreateSpace, Grant, MemberListing, PackageResponse, PullResponse, PulledOp, PushRequest, PushResponse, RefusedOp,
    SpaceListing, UserListing, UserToken, WireOp,
};
use crate::record::{ChangeError, ChangeHeader, Fields, RecordDoc, validate_op_change};

mod snapshot;

type Result<T> = std::result::Result<T, ServiceError>;

/// The server's service core over a store.
pub struct Service<S: ServerStore> {
    store: Arc<S>,
    limits: Limits,
    epoch: String,
    admin_hash: Option<[u8; 32]>,
    materializer: Materializer<S>,
    metrics: Metrics,
    commits: Arc<Commits>,
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
        let commits = Arc::new(Commits::default());
        let announced = commits.clone();
        store.watch_commits(Arc::new(move |space| announced.announce(space)));
        Ok(Service {
            commits,
            materializer: Materializer::start(store.clone()),
            store,
            limits,
            epoch,
            admin_hash: admin_token.filter(|t| !t.is_empty()).map(|t| sha256(t.as_bytes())),
            metrics: Metrics::new(),
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A page of at most `count` items (already clamped) within the byte budget.
    fn page_limit(&self, count: usize) -> PageLimit {
        PageLimit {
            count,
            bytes: self.limits.max_page_bytes,
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The wake-ups of held live pulls.
    pub fn commits(&self) -> &Commits {
        &self.commits
    }

    /// Whether the store can serve now (readiness): `Unavailable` with the
    /// cause while its storage is failing.
    pub fn ready(&self) -> Result<()> {
        let ready = self.store.ready();
        self.metrics.set_store_up(ready.is_ok());
        Ok(ready?)
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

    /// Whether `user` may push to `space`: 404 for a non-member (as for a
    /// missing space), 403 `read_only` for a reader. The HTTP front asks before
    /// it reads a push's body, so a stranger's body costs nothing.
    pub fn check_writer(&self, user: &str, space: &str) -> Result<()> {
        if self.role(user, space)? == Role::ReadOnly {
            return Err(ServiceError::ReadOnly {
                user: user.into(),
                space: space.into(),
            });
        }
        Ok(())
    }

    /// Validates and stores a batch of ops; returns the seq of each.
    pub fn push(&self, user: &str, space: &str, request: PushRequest) -> Result<PushResponse> {
        self.check_writer(user, space)?;
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
        // Each op is checked on its own: a refusal costs that op, never the batch.
        let mut seqs = vec![None; request.ops.len()];
        let mut refused = Vec::new();
        let mut valid = Vec::with_capacity(request.ops.len());
        let mut valid_index = Vec::with_capacity(request.ops.len());
        for (index, wire) in request.ops.iter().enumerate() {
            match self.check_op(index, wire, package.as_ref()) {
                Ok((op, header)) => {
                    valid.push(NewOp {
                        stored: StoredOp {
                            op,
                            user: user.to_string(),
                        },
                        header,
                    });
                    valid_index.push(index);
                }
                Err(e) => refused.push(RefusedOp {
                    index,
                    code: e.code(),
                    message: e.to_string(),
                }),
            }
        }
        let results = self.store.append(space, &valid)?;
        if results.iter().any(|r| r.is_ok()) {
            self.commits.announce(Some(space));
        }
        for ((index, result), new) in valid_index.into_iter().zip(results).zip(&valid) {
            match result {
                Ok(seq) => seqs[index] = Some(seq),
                Err(refusal) => {
                    tracing::info!(
                        space,
                        user,
                        index,
                        record = %format!("{}/{}", new.stored.op.collection, new.stored.op.record),
                        "push refused one op: {refusal}"
                    );
                    refused.push(RefusedOp {
                        index,
                        code: refusal_code(&refusal),
                        message: format!("op {index} of the batch: {refusal}"),
                    });
                }
            }
        }
        refused.sort_by_key(|r| r.index);
        self.metrics
            .push(seqs.iter().flatten().count(), refused.iter().map(|r| r.code.as_str()));
        let head = self.store.head(space)?;
        self.materializer.nudge(space);
        Ok(PushResponse {
            epoch: self.epoch.clone(),
            seqs,
            refused,
            head,
        })
    }

    fn check_op(
        &self,
        index: usize,
        wire: &WireOp,
        package: Option<&Package>,
    ) -> Result<(crate::model::Op, ChangeHeader)> {
        let invalid = |reason: String| ServiceError::InvalidOp { index, reason };
        let op = wire.to_op().map_err(|e| invalid(e.to_string()))?;
        // Replicas file an op under its names as sent, so a name in another
        // normal form would make a second record that reads like the first.
        for (what, name, nfc) in [
            ("collection name", op.collection.as_str(), op.collection.is_nfc()),
            ("record id", op.record.as_str(), op.record.is_nfc()),
        ] {
            if !nfc {
                return Err(invalid(format!(
                    "{what} {name:?} is not in Unicode NFC (composed form): send it normalized to NFC"
                )));
            }
        }
        if op.id.0.is_nil() || !matches!(op.id.0.get_version_num(), 4 | 7) {
            return Err(invalid(format!(
                "op id {} is not a random (version 4) or time-ordered (version 7) UUID",
                op.id
            )));
        }
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
        let (_, header) =
            validate_op_change(&op.change, op.actor, op.collection.as_str(), schema).map_err(|e| match e {
                ChangeError::Corrupt(c) => invalid(format!("the change does not decode ({c})")),
                other => invalid(other.to_string()),
            })?;
        Ok((op, header))
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
        at: impl Into<crate::model::HeldAt>,
    ) -> Result<PullResponse> {
        self.role(user, space)?;
        let at = at.into();
        if let (Some(op), true) = (at.op, since > 0) {
            let found = self.store.read_ops(space, since - 1, PageLimit::count(1))?;
            if !matches!(found.first(), Some((seq, stored)) if *seq == since && stored.op.id == op) {
                return Err(ServiceError::HistoryChanged { seq: since });
            }
        }
        if let (Some(mark), true) = (at.mark, since > 0) {
            if self.store.mark(space, since)? != Some(mark) {
                return Err(ServiceError::HistoryChanged { seq: since });
            }
        }
        let limit = limit.clamp(1, self.limits.max_pull_page);
        let head = self.store.head(space)?;
        self.metrics.pull(since.get(), head.get());
        let rows = self.store.read_ops(space, since, self.page_limit(limit))?;
        let end = rows.last().map(|(seq, _)| *seq).unwrap_or(since);
        // A quarantined record's ops do not load: serving them would stop every replica's pull.
        let quarantined = self.store.quarantined(space)?;
        let ops = rows
            .into_iter()
            .filter(|(_, stored)| {
                quarantined.is_empty()
                    || !quarantined.contains_key(&(stored.op.collection.to_string(), stored.op.record.to_string()))
            })
            .map(|(seq, stored)| PulledOp {
                seq,
                user: stored.user,
                op: WireOp::from_op(&stored.op),
            })
            .collect();
        let mark = if end > since {
            self.store.mark(space, end)?
        } else {
            None
        };
        Ok(PullResponse {
            epoch: self.epoch.clone(),
            ops,
            end,
            mark,
            more: end < head.max(self.store.head(space)?),
            head,
            package_version: Some(self.store.package(space)?.flatten().map_or(0, |p| p.version)),
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

    /// The server's materialized record (None if it does not exist or is deleted).
    pub fn record(&self, user: &str, space: &str, collection: &str, id: &str) -> Result<Option<Fields>> {
        // Names are stored in NFC (pushes in another form are refused): look them up so.
        let (collection, id) = (&*nfc(collection.to_string()), &*nfc(id.to_string()));
        self.role(user, space)?;
        self.materializer.catch_up(space)?;
        let quarantined = |reason: String| ServiceError::Quarantined {
            collection: collection.to_string(),
            record: id.to_string(),
            reason,
        };
        if let Some(reason) = self
            .store
            .quarantined(space)?
            .remove(&(collection.to_string(), id.to_string()))
        {
            return Err(quarantined(reason));
        }
        let Some(bytes) = self.store.doc(space, collection, id)? else {
            return Ok(None);
        };
        let doc = match RecordDoc::load(&bytes, crate::model::ActorId([0; 16])) {
            Ok(doc) => doc,
            Err(e) => {
                let reason = format!("its stored document does not load ({e})");
                tracing::error!(space, collection, record = id, "quarantining a record: {reason}");
                self.store.quarantine(space, collection, id, &reason)?;
                return Err(quarantined(reason));
            }
        };
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
    /// The version only moves forward: replicas install a package when its
    /// version differs from theirs, so an older number would be ambiguous.
    /// Sending the current package again changes nothing.
    pub fn set_package(&self, space: &str, package: Option<&Package>) -> Result<()> {
        if let Some(p) = package {
            p.check().map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        }
        let current = self
            .store
            .package(space)?
            .ok_or_else(|| ServiceError::NotFoundOther(format!("no space {space:?}: create it first")))?;
        if let (Some(current), Some(new)) = (&current, package) {
            if current == new {
                return Ok(());
            }
            if new.version <= current.version {
                return Err(ServiceError::Conflict(format!(
                    "space {space:?} has package version {}; a new package needs a higher version than that, not {}",
                    current.version, new.version
                )));
            }
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

    /// Admin: ends a user's membership of a space; the user's next request to it answers 404.
    pub fn revoke_grant(&self, user: &str, space: &str) -> Result<()> {
        if self.store.revoke(user, space)? {
            Ok(())
        } else {
            Err(ServiceError::NotFoundOther(format!(
                "user {user:?} is not a member of space {space:?}"
            )))
        }
    }

    /// Admin: removes a token, given its id or the whole token; its holder gets
    /// 401 from the next request on.
    pub fn revoke_token(&self, token: &str) -> Result<()> {
        let id = match token.split('.').collect::<Vec<_>>()[..] {
            [TOKEN_PREFIX, id, _secret] => id,
            _ => token,
        };
        if self.store.remove_token(id)? {
            Ok(())
        } else {
            Err(ServiceError::NotFoundOther(format!("no token with id {id:?}")))
        }
    }

    /// Admin: every user with its token ids.
    pub fn list_users(&self) -> Result<Vec<UserListing>> {
        Ok(self
            .store
            .users()?
            .into_iter()
            .map(|(user, tokens)| UserListing { user, tokens })
            .collect())
    }

    /// Admin: every space with its package version and members.
    pub fn list_spaces(&self) -> Result<Vec<SpaceListing>> {
        let mut out = Vec::new();
        for space in self.store.spaces()? {
            let package_version = self.store.package(&space)?.flatten().map_or(0, |p| p.version);
            let members = self
                .store
                .members(&space)?
                .into_iter()
                .map(|(user, role)| MemberListing {
                    user,
                    read_only: role == Role::ReadOnly,
                })
                .collect();
            out.push(SpaceListing {
                space,
                package_version,
                members,
            });
        }
        Ok(out)
    }

    /// Brings the materialized documents of a space up to its head (normally done in the background).
    pub fn materialize(&self, space: &str) -> Result<()> {
        self.materializer.catch_up(space)
    }
}

fn refusal_code(refusal: &OpRefusal) -> ErrorCode {
    match refusal {
        OpRefusal::OpIdConflict { .. } => ErrorCode::OpIdConflict,
        OpRefusal::MissingDeps { .. } => ErrorCode::MissingDeps,
        OpRefusal::ActorReused { .. } => ErrorCode::ActorReused,
        OpRefusal::BadHeader(_) => ErrorCode::InvalidOp,
    }
}
