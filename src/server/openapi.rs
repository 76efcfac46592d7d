//! The OpenAPI document of API v1, served at `GET /v1/openapi.json`. Schemas
//! are derived from the wire types in `protocol::message`; the operations
//! below describe the routes of `http.rs` (utoipa reads their attributes only).
#![allow(dead_code)]

use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use crate::protocol::message::{
    CreateSpace, CreateUser, ErrorBody, Grant, MemberListing, PackageResponse, PullResponse, PulledOp, PushRequest,
    PushResponse, RefusedOp, SnapshotDoc, SnapshotResponse, SpaceListing, UserListing, UserToken, WireOp,
};

#[utoipa::path(get, path = "/v1/health", responses((status = 200, description = "The server is up; names its epoch")))]
fn health() {}

#[utoipa::path(post, path = "/v1/spaces/{space}/push", params(("space" = String, Path)),
    request_body = PushRequest,
    responses((status = 200, body = PushResponse, description = "the seq of each op; a refused op (invalid_op, op_too_large, op_id_conflict, missing_deps, actor_reused) has a null seq and an entry in `refused`, and costs only itself"),
        (status = 400, body = ErrorBody, description = "malformed JSON; nothing stored"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "read-only member"),
        (status = 404, body = ErrorBody, description = "no such space, or not a member (answered before the body is read, as are 401 and 403)"),
        (status = 408, body = ErrorBody, description = "request_timeout: the body did not arrive within the server's request deadline; nothing stored"),
        (status = 413, body = ErrorBody, description = "too many ops or too large a body")),
    security(("bearer" = [])))]
fn push() {}

#[utoipa::path(get, path = "/v1/spaces/{space}/pull",
    params(("space" = String, Path), ("since" = Option<u64>, Query, description = "the last seq the client holds (default 0)"),
        ("limit" = Option<u64>, Query, description = "clamped to the server's page limit; a page also stops at 4 MiB of change bytes (the first op always comes), so follow `more`"),
        ("at" = Option<String>, Query, description = "the id of the op the client holds at seq `since`; 409 history_changed if the server's differs")),
    responses((status = 200, body = PullResponse), (status = 400, body = ErrorBody, description = "a bad query parameter"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "history_changed: the server's op at `since` is not `at` (its store was restored)")),
    security(("bearer" = [])))]
fn pull() {}

#[utoipa::path(get, path = "/v1/spaces/{space}/package", params(("space" = String, Path)),
    responses((status = 200, body = PackageResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
fn package() {}

#[utoipa::path(get, path = "/v1/spaces/{space}/snapshot",
    params(("space" = String, Path), ("after" = Option<String>, Query, description = "the `next` of the previous page"),
        ("limit" = Option<u64>, Query, description = "clamped to the server's page limit; a page also stops at 4 MiB of document bytes (the first document always comes), so follow `next`")),
    responses((status = 200, body = SnapshotResponse), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
fn snapshot() {}

#[utoipa::path(get, path = "/v1/spaces/{space}/records/{collection}/{id}",
    params(("space" = String, Path), ("collection" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "the record's fields as one JSON object"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
fn record() {}

#[utoipa::path(post, path = "/v1/admin/spaces", request_body = CreateSpace,
    responses((status = 200), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)), security(("admin" = [])))]
fn admin_create_space() {}

#[utoipa::path(put, path = "/v1/admin/spaces/{space}/package", params(("space" = String, Path)),
    responses((status = 200), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("admin" = [])))]
fn admin_set_package() {}

#[utoipa::path(post, path = "/v1/admin/users", request_body = CreateUser,
    responses((status = 200, body = UserToken), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)), security(("admin" = [])))]
fn admin_add_user() {}

#[utoipa::path(post, path = "/v1/admin/users/{user}/tokens", params(("user" = String, Path)),
    responses((status = 200, body = UserToken), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("admin" = [])))]
fn admin_new_token() {}

#[utoipa::path(get, path = "/v1/admin/users",
    responses((status = 200, body = [UserListing], description = "every user with its token ids (never secrets)"),
              (status = 401, body = ErrorBody, description = "unauthorized")))]
fn admin_list_users() {}

#[utoipa::path(get, path = "/v1/admin/spaces",
    responses((status = 200, body = [SpaceListing], description = "every space with its package version and members"),
              (status = 401, body = ErrorBody, description = "unauthorized")))]
fn admin_list_spaces() {}

#[utoipa::path(delete, path = "/v1/admin/spaces/{space}/members/{user}",
    params(("space" = String, Path), ("user" = String, Path)),
    responses((status = 200, description = "the membership ended: the user's next request to the space answers 404"),
              (status = 401, body = ErrorBody, description = "unauthorized"),
              (status = 404, body = ErrorBody, description = "not_found: no such membership or space")))]
fn admin_revoke_grant() {}

#[utoipa::path(delete, path = "/v1/admin/tokens/{token}",
    params(("token" = String, Path, description = "the token's id (the middle part of tm1.ID.SECRET), or the whole token")),
    responses((status = 200, description = "the token is revoked: its next request answers 401"),
              (status = 401, body = ErrorBody, description = "unauthorized"),
              (status = 404, body = ErrorBody, description = "not_found: no such token")))]
fn admin_revoke_token() {}

#[utoipa::path(post, path = "/v1/admin/grants", request_body = Grant,
    responses((status = 200), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)), security(("admin" = [])))]
fn admin_grant() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tidemark sync server",
        version = "1",
        description = "Offline-first record sync: push ops, pull ops since a watermark, download packages and snapshots. \
Every answer carries the header `tidemark-protocol-revision` (this server's revision of protocol v1; 2 added genesis ops). \
A client may send its own in the same header: one older than the server needs gets 400 `client_too_old` on every route \
but health and this document; a request without the header is served (clients from before revisions send none)."
    ),
    paths(
        health,
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
        WireOp,
        PushRequest,
        PushResponse,
        RefusedOp,
        PulledOp,
        PullResponse,
        PackageResponse,
        SnapshotDoc,
        SnapshotResponse,
        ErrorBody,
        CreateSpace,
        CreateUser,
        UserToken,
        Grant,
        UserListing,
        MemberListing,
        SpaceListing
    ))
)]
struct ApiDoc;

/// The OpenAPI document as JSON.
pub fn document() -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    // The two bearer schemes the routes name: a member's token, and the admin token.
    let components = doc.components.get_or_insert_with(Default::default);
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
    serde_json::to_value(doc).unwrap_or_default()
}
