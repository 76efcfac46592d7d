//! The OpenAPI document of API v1, served at `GET /v1/openapi.json`.
//!
//! Schemas are derived from the wire types in `protocol::message` (bounds the
//! derives cannot state come from `protocol::schema`). The operations below
//! describe the routes of `http.rs`: utoipa reads their parameters, bodies and
//! success answers from these attributes. Their error answers are not written
//! here by hand: [`refusals`] lists, for each operation, the [`ServiceError`]s
//! it can answer, and the document takes each one's status and code from
//! `ServiceError::status` and `ServiceError::code`, so a code in the document
//! is one the server sends. Bounds that depend on the server's [`Limits`] are
//! filled in from the limits it runs with.
#![allow(dead_code)]

use std::collections::BTreeMap;

use utoipa::OpenApi;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};

use super::error::ServiceError;
use super::limits::Limits;
use crate::model::{CollectionSchema, FieldType, OpId, Package};
use crate::protocol::message::{
    CreateSpace, CreateUser, ErrorBody, Grant, Granted, Health, MIN_PEER_REVISION, MemberListing, PackageResponse,
    PackageSet, PullResponse, PulledOp, PushRequest, PushResponse, REVISION_HEADER, Ready, RefusedOp, Revoked,
    SnapshotDoc, SnapshotResponse, SpaceCreated, SpaceListing, UserListing, UserToken, WireOp,
};
use crate::protocol::{ErrorCode, schema};

#[utoipa::path(get, path = "/v1/health", responses((status = 200, body = Health, description = "The server is up; names its epoch")))]
fn health() {}

#[utoipa::path(get, path = "/v1/ready", responses((status = 200, body = Ready,
    description = "Readiness: the store is usable. While its storage fails (a full disk, say) the answer is 503 `store_unavailable` naming the cause; the server reopens its store by itself until it works")))]
fn ready() {}

#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", body = String,
    description = "Prometheus text format: requests and durations by route pattern and status, error answers by code, pushes, ops accepted and refused, pull lag, whether the store is up")))]
fn metrics() {}

#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, body = Object, description = "This document")))]
fn openapi() {}

#[utoipa::path(post, path = "/v1/spaces/{space}/push", params(("space" = String, Path)),
    request_body = PushRequest,
    responses((status = 200, body = PushResponse, description = "the seq of each op; a refused op (invalid_op, op_too_large, op_id_conflict, missing_deps, actor_reused) has a null seq and an entry in `refused`, and costs only itself")),
    security(("bearer" = [])))]
fn push() {}

#[utoipa::path(get, path = "/v1/spaces/{space}/pull",
    params(("space" = String, Path), ("since" = Option<u64>, Query, description = "the last seq the client holds (default 0)"),
        ("limit" = Option<u64>, Query, description = "ops in the page (default 500), clamped to 1 and to the server's page limit; a page also stops at the server's page byte budget (the first op always comes), so follow `more`"),
        ("at" = Option<OpId>, Query, description = "the id of the op the client holds at seq `since`; 409 history_changed if the server's differs"),
        ("mark" = Option<u64>, Query, description = "the `mark` of the pull page (or `as_of_mark` of the snapshot) that ended at `since`; 409 history_changed if the server's op at `since` has another mark (it was stored again after a restore)"),
        ("wait" = Option<u64>, Query, description = "live pull: seconds to hold the request while no op after `since` exists (default 0), clamped to the server's bound; answered as soon as one is committed, through any server process")),
    responses((status = 200, body = PullResponse)),
    security(("bearer" = [])))]
fn pull() {}

#[utoipa::path(get, path = "/v1/spaces/{space}/package", params(("space" = String, Path)),
    responses((status = 200, body = PackageResponse)),
    security(("bearer" = [])))]
fn package() {}

#[utoipa::path(get, path = "/v1/spaces/{space}/snapshot",
    params(("space" = String, Path),
        ("after" = Option<String>, Query, pattern = "\n", description = "the `next` of the previous page (a collection and a record id joined by a newline)"),
        ("limit" = Option<u64>, Query, description = "documents in the page (default 1000), clamped to 1 and to the server's page limit; a page also stops at the server's page byte budget (the first document always comes), so follow `next`")),
    responses((status = 200, body = SnapshotResponse)),
    security(("bearer" = [])))]
fn snapshot() {}

#[utoipa::path(get, path = "/v1/spaces/{space}/records/{collection}/{id}",
    params(("space" = String, Path), ("collection" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Object, description = "the record's fields as one JSON object")),
    security(("bearer" = [])))]
fn record() {}

#[utoipa::path(post, path = "/v1/admin/spaces", request_body = CreateSpace,
    responses((status = 200, body = SpaceCreated, description = "the space exists, empty")), security(("admin" = [])))]
fn admin_create_space() {}

#[utoipa::path(put, path = "/v1/admin/spaces/{space}/package", params(("space" = String, Path)), request_body = Package,
    responses((status = 200, body = PackageSet, description = "the space has this package (sending its current package again changes nothing)")),
    security(("admin" = [])))]
fn admin_set_package() {}

#[utoipa::path(post, path = "/v1/admin/users", request_body = CreateUser,
    responses((status = 200, body = UserToken, description = "the user and its first token, shown this once")), security(("admin" = [])))]
fn admin_add_user() {}

#[utoipa::path(post, path = "/v1/admin/users/{user}/tokens", params(("user" = String, Path)),
    responses((status = 200, body = UserToken, description = "another token of the user, shown this once; its other tokens keep working")),
    security(("admin" = [])))]
fn admin_new_token() {}

#[utoipa::path(get, path = "/v1/admin/users",
    responses((status = 200, body = [UserListing], description = "every user with its token ids (never secrets)")),
    security(("admin" = [])))]
fn admin_list_users() {}

#[utoipa::path(get, path = "/v1/admin/spaces",
    responses((status = 200, body = [SpaceListing], description = "every space with its package version and members")),
    security(("admin" = [])))]
fn admin_list_spaces() {}

#[utoipa::path(delete, path = "/v1/admin/spaces/{space}/members/{user}",
    params(("space" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = Revoked, description = "the membership ended: the user's next request to the space answers 404")),
    security(("admin" = [])))]
fn admin_revoke_grant() {}

#[utoipa::path(delete, path = "/v1/admin/tokens/{token}",
    params(("token" = String, Path, description = "the token's id (the middle part of tm1.ID.SECRET), or the whole token")),
    responses((status = 200, body = Revoked, description = "the token is revoked: its next request answers 401")),
    security(("admin" = [])))]
fn admin_revoke_token() {}

#[utoipa::path(post, path = "/v1/admin/grants", request_body = Grant,
    responses((status = 200, body = Granted, description = "the user is a member of the space (a grant again replaces its role)")),
    security(("admin" = [])))]
fn admin_grant() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tidemark sync server",
        version = "1",
        description = "Offline-first record sync: push ops, pull ops since a watermark, download packages and snapshots. \
Every answer carries the header `tidemark-protocol-revision` (this server's revision of protocol v1). \
A client may send its own in the same header: one older than the server needs gets 400 `client_too_old` on every route \
but health and this document; a request without the header is served. \
Every error answer is JSON (`ErrorBody`): a stable `code` and a message that says what to fix."
    ),
    paths(
        health,
        ready,
        metrics,
        openapi,
        push,
        pull,
        package,
        snapshot,
        record,
        admin_create_space,
        admin_set_package,
        admin_add_user,
        admin_new_token,
        admin_grant,
        admin_list_users,
        admin_list_spaces,
        admin_revoke_grant,
        admin_revoke_token
    ),
    components(schemas(
        OpId,
        WireOp,
        PushRequest,
        PushResponse,
        RefusedOp,
        PulledOp,
        PullResponse,
        PackageResponse,
        Package,
        CollectionSchema,
        FieldType,
        SnapshotDoc,
        SnapshotResponse,
        Health,
        ErrorBody,
        CreateSpace,
        SpaceCreated,
        PackageSet,
        CreateUser,
        UserToken,
        Grant,
        Granted,
        Revoked,
        UserListing,
        MemberListing,
        SpaceListing
    ))
)]
struct ApiDoc;

/// One error an operation can answer, and when.
type Refusal = (ServiceError, String);

/// The errors each operation can answer besides its success, by operation id;
/// `None` for an id this table does not know. Every operation also gets
/// [`deadline`]'s, and every one but health, readiness, metrics and this document [`gate`]'s.
fn refusals(operation: &str, limits: &Limits) -> Option<Vec<Refusal>> {
    use ServiceError as E;
    let text = String::new;
    let r = |e: ServiceError, when: &str| (e, when.to_string());
    let path = || {
        r(
            E::BadRequest(text()),
            "a path segment that is not UTF-8 once percent-decoded",
        )
    };
    let member = || {
        vec![
            r(E::Unauthorized, "no bearer token, or not a valid one"),
            r(
                E::NotFound(text()),
                "no such space, or the user is not a member of it (the two read alike, so that names do not leak)",
            ),
            path(),
        ]
    };
    let admin = || r(E::AdminOnly, "no admin token, or not the admin token");
    let body = || {
        [
            r(E::BadRequest(text()), "a body that is not JSON of the request's schema"),
            (
                E::TooLarge(text()),
                format!("a body over the server's limit of {} bytes", limits.max_body_bytes),
            ),
        ]
    };
    let storage = || {
        [
            r(
                E::Internal(text()),
                "the server failed (a corrupt store, or a worker); the server log says why",
            ),
            r(
                E::Unavailable(text()),
                "the server's storage is failing (a full disk, say): the request changed nothing; retry after `Retry-After` seconds",
            ),
        ]
    };
    let mut out = match operation {
        "health" | "openapi" | "metrics" => return Some(Vec::new()),
        "ready" => {
            return Some(vec![r(
                E::Unavailable(text()),
                "the store's storage is failing; the message names the cause",
            )]);
        }
        "push" => {
            let mut out = member();
            out.push(r(
                E::ReadOnly {
                    user: text(),
                    space: text(),
                },
                "the user is a read-only member of the space",
            ));
            out.extend(body());
            out.push((
                E::TooLarge(text()),
                format!(
                    "more than {} ops in one push: push in smaller batches",
                    limits.max_ops_per_push
                ),
            ));
            out
        }
        "pull" => {
            let mut out = member();
            out.push(r(
                E::BadRequest(text()),
                "`since`, `limit` or `wait` not a decimal integer from 0 to 2^64 - 1, or `at` not a UUID",
            ));
            out.push(r(
                E::HistoryChanged { seq: crate::model::Seq::ZERO },
                "the server's op at `since` is not `at` (its store was restored from a backup): push again and pull from 0",
            ));
            out
        }
        "package" => member(),
        "snapshot" => {
            let mut out = member();
            out.push(r(
                E::BadRequest(text()),
                "`limit` not a decimal integer from 0 to 2^64 - 1, or `after` not a cursor from a previous page",
            ));
            out
        }
        "record" => {
            let mut out = member();
            out.push(r(E::NotFoundOther(text()), "no such record, or it is deleted"));
            out.push(r(
                E::Quarantined {
                    collection: text(),
                    record: text(),
                    reason: text(),
                },
                "the record's stored history does not load; the rest of the space works",
            ));
            out
        }
        "admin_create_space" => {
            let mut out = vec![admin()];
            out.extend(body());
            out.push(r(
                E::BadRequest(text()),
                "a space name against the rule, or a package with a bad collection or field name",
            ));
            out.push(r(E::Conflict(text()), "a space of that name exists"));
            out
        }
        "admin_set_package" => {
            let mut out = vec![admin(), path()];
            out.extend(body());
            out.push(r(
                E::BadRequest(text()),
                "a package with a bad collection or field name",
            ));
            out.push(r(E::NotFoundOther(text()), "no such space"));
            out.push(r(
                E::Conflict(text()),
                "a different package whose version is not above the space's current one",
            ));
            out
        }
        "admin_add_user" => {
            let mut out = vec![admin()];
            out.extend(body());
            out.push(r(E::BadRequest(text()), "a user name against the rule"));
            out.push(r(E::Conflict(text()), "a user of that name exists"));
            out
        }
        "admin_new_token" => vec![admin(), path(), r(E::NotFoundOther(text()), "no such user")],
        "admin_grant" => {
            let mut out = vec![admin()];
            out.extend(body());
            out.push(r(E::NotFoundOther(text()), "no such user, or no such space"));
            out
        }
        "admin_list_users" | "admin_list_spaces" => vec![admin()],
        "admin_revoke_grant" => vec![
            admin(),
            path(),
            r(E::NotFoundOther(text()), "the user is not a member of the space"),
        ],
        "admin_revoke_token" => vec![admin(), path(), r(E::NotFoundOther(text()), "no token with that id")],
        _ => return None,
    };
    out.extend(storage());
    Some(out)
}

/// What every operation but health, readiness, metrics and this document can answer before its
/// route runs: the protocol revision check.
fn gate() -> Vec<Refusal> {
    vec![
        (
            ServiceError::BadRequest(String::new()),
            format!("a `{REVISION_HEADER}` header that is not a decimal revision number"),
        ),
        (
            ServiceError::ClientTooOld {
                client: 0,
                server: 0,
                min: 0,
            },
            format!("a `{REVISION_HEADER}` header below {MIN_PEER_REVISION}: upgrade the client"),
        ),
    ]
}

/// The request deadline runs around every route.
fn deadline() -> Refusal {
    (
        ServiceError::RequestTimeout(String::new()),
        "the request, its body included, took longer than the server's request deadline: send it again \
         (a push stored meanwhile answers the same seqs again)"
            .into(),
    )
}

/// Adds an operation's error answers, one per status: `ErrorBody` whose `code`
/// is one of the codes listed for that status, each with when it is sent.
fn add_refusals(operation: &mut Operation, refusals: Vec<Refusal>) {
    let mut by_status: BTreeMap<u16, Vec<(ErrorCode, String)>> = BTreeMap::new();
    for (error, when) in refusals {
        let codes = by_status.entry(error.status()).or_default();
        match codes.iter_mut().find(|(code, _)| *code == error.code()) {
            Some((_, known)) => {
                known.push_str("; ");
                known.push_str(&when);
            }
            None => codes.push((error.code(), when)),
        }
    }
    for (status, codes) in by_status {
        let description = codes
            .iter()
            .map(|(code, when)| format!("`{code}`: {when}"))
            .collect::<Vec<_>>()
            .join(". ");
        let code = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes.iter().map(|(code, _)| code.as_str())));
        let body = AllOfBuilder::new()
            .item(Ref::from_schema_name("ErrorBody"))
            .item(ObjectBuilder::new().property("code", code).required("code"))
            .build();
        let response = ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(Schema::AllOf(body))).build(),
            )
            .build();
        operation
            .responses
            .responses
            .insert(status.to_string(), RefOr::T(response));
    }
}

/// The request header a client names its protocol revision in.
fn revision_parameter() -> Parameter {
    let revision = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(MIN_PEER_REVISION))
        .maximum(Some(u32::MAX))
        .build();
    ParameterBuilder::new()
        .name(REVISION_HEADER)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "the client's protocol revision; one below the server's minimum is refused (400 client_too_old), \
             no header is served",
        ))
        .schema(Some(revision))
        .build()
}

/// The OpenAPI document of a server that runs with `limits`, as JSON.
pub fn document(limits: &Limits) -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    if let Some(info) = doc.info.description.as_mut() {
        info.push_str(&format!(
            " This server's limits: {} ops and {} bytes of body in one push, {} bytes of change in one op \
             (a larger op is refused alone), {} ops in a pull page, {} documents in a snapshot page, \
             and about {} bytes of ops or documents in either (the first always comes).",
            limits.max_ops_per_push,
            limits.max_body_bytes,
            limits.max_op_bytes,
            limits.max_pull_page,
            limits.max_snapshot_page,
            limits.max_page_bytes
        ));
    }
    let mut revision_header = Header::new(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)));
    revision_header.description = Some("this server's revision of protocol v1".into());
    for item in doc.paths.paths.values_mut() {
        let operations = [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
        ];
        for operation in operations.into_iter().flatten() {
            let id = operation.operation_id.clone().unwrap_or_default();
            let mut refusals = refusals(&id, limits).unwrap_or_default();
            let gated = !matches!(id.as_str(), "health" | "ready" | "metrics" | "openapi");
            if gated {
                refusals.extend(gate());
            }
            refusals.push(deadline());
            add_refusals(operation, refusals);
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            for parameter in parameters.iter_mut() {
                // Space and user names in paths follow the account name rule.
                if parameter.parameter_in == ParameterIn::Path && matches!(parameter.name.as_str(), "space" | "user") {
                    parameter.schema = Some(schema::account_name().into());
                }
            }
            if gated {
                parameters.push(revision_parameter());
            }
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response
                        .headers
                        .insert(REVISION_HEADER.to_string(), revision_header.clone());
                }
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    // The two bearer schemes the routes name: a member's token, and the admin token.
    for (name, what) in [
        (
            "bearer",
            "a user's token, from `tidemark admin add-user` or `new-token`",
        ),
        ("admin", "the server's admin token (TIDEMARK_ADMIN_TOKEN)"),
    ] {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(what.to_string());
        components.add_security_scheme(name, SecurityScheme::Http(scheme));
    }
    // A push takes at most this many ops (more is 413 too_large).
    if let Some(RefOr::T(Schema::Object(push))) = components.schemas.get_mut("PushRequest") {
        if let Some(RefOr::T(Schema::Array(ops))) = push.properties.get_mut("ops") {
            ops.max_items = Some(limits.max_ops_per_push);
        }
    }
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    whole_u64_range(&mut doc);
    doc
}

/// utoipa writes a `u64` as `format: int64, minimum: 0`, and a reader of
/// `int64` takes it to end at 2^63 - 1; the server's JSON and query parsers take
/// every value up to 2^64 - 1. Says so wherever utoipa wrote a `u64`.
fn whole_u64_range(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            if object.get("format").and_then(|f| f.as_str()) == Some("int64")
                && object.get("minimum").and_then(|m| m.as_u64()) == Some(0)
            {
                object.remove("format");
                object.insert("maximum".into(), u64::MAX.into());
            }
            object.values_mut().for_each(whole_u64_range);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_u64_range),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
