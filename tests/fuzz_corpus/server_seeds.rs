//! Seed inputs of the wire and push targets: a sync round's answers, requests
//! to the router, and push scripts, each the same bytes on every run.

use serde_json::json;
use tidemark::protocol::ErrorCode;
use tidemark::protocol::message::{
    ErrorBody, PackageResponse, PullResponse, PulledOp, PushRequest, PushResponse, RefusedOp, SnapshotDoc,
    SnapshotResponse, SnapshotRow, WireOp, encode_bytes,
};
use tidemark::record::RecordDoc;
use tidemark::{ActorId, Op};

use crate::common::{BASE_ACTOR, COLLECTION, base_change, base_op, fields, package};
use crate::wire_client_check::{Start, answer_bytes, input as client_input};

const EPOCH: &str = "0b7e5a52-fuzz-epoch";
const OTHER_EPOCH: &str = "9c1d2e3f-fuzz-epoch";

/// An op with a version 4 id, as a server accepts it.
fn v4_op(n: u64, mut op: Op) -> Op {
    const V4: u128 = 0x0000_0000_0000_4000_8000_0000_0000_0000;
    op.id = tidemark::OpId::from_u128(V4 | u128::from(n));
    op
}

fn new_record_op(n: u64, actor: ActorId, record: &str, value: serde_json::Value) -> Op {
    let mut doc = RecordDoc::new(actor);
    doc.put(COLLECTION, &fields(value), None).unwrap();
    let change = doc.commit(crate::common::BASE_TIME_MS + n * 1000).unwrap();
    let mut op = base_op();
    op.actor = actor;
    op.record = tidemark::RecordId::new(record).unwrap();
    op.change = change;
    v4_op(n, op)
}

/// An edit of the base record `contacts/c3` by `actor`.
fn base_edit_op(n: u64, actor: ActorId, value: serde_json::Value) -> Op {
    let mut doc = RecordDoc::load(&base_change(), actor).unwrap();
    doc.put(COLLECTION, &fields(value), None).unwrap();
    let change = doc.commit(crate::common::BASE_TIME_MS + n * 1000).unwrap();
    let mut op = base_op();
    op.actor = actor;
    op.change = change;
    v4_op(n, op)
}

fn pulled(seq: u64, op: &Op) -> PulledOp {
    PulledOp {
        seq: tidemark::Seq(seq),
        user: "ada".into(),
        op: WireOp::from_op(op),
    }
}

fn package_answer(head: u64, with_package: bool) -> Vec<u8> {
    answer_bytes(
        200,
        &PackageResponse {
            epoch: EPOCH.into(),
            version: u64::from(with_package),
            package: with_package.then(package),
            head: tidemark::Seq(head),
        },
    )
}

fn push_answer(seqs: Vec<Option<tidemark::Seq>>, refused: Vec<RefusedOp>, head: u64) -> Vec<u8> {
    answer_bytes(
        200,
        &PushResponse {
            epoch: EPOCH.into(),
            seqs,
            refused,
            head: tidemark::Seq(head),
        },
    )
}

fn pull_answer(epoch: &str, ops: Vec<PulledOp>, end: u64, more: bool, head: u64) -> Vec<u8> {
    answer_bytes(
        200,
        &PullResponse {
            epoch: epoch.into(),
            ops,
            end: tidemark::Seq(end),
            more,
            head: tidemark::Seq(head),
            mark: Some(end),
            package_version: None,
        },
    )
}

fn error_answer(status: u16, code: ErrorCode, op_index: Option<usize>) -> Vec<u8> {
    answer_bytes(
        status,
        &ErrorBody {
            code,
            message: "refused by the seed".into(),
            op_index,
        },
    )
}

pub fn wire_client_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let peer = ActorId([0xc3; 16]);
    let base = v4_op(1, base_op());
    let c9 = new_record_op(4, peer, "c9", json!({"name": "Edsger"}));
    let c3_edit = base_edit_op(5, peer, json!({"age": 86}));
    let mut base_doc = RecordDoc::load(&base_change(), BASE_ACTOR).unwrap();
    let snapshot = answer_bytes(
        200,
        &SnapshotResponse {
            epoch: EPOCH.into(),
            as_of: tidemark::Seq(1),
            as_of_op: Some(base.id),
            as_of_mark: Some(1),
            docs: vec![SnapshotDoc {
                collection: COLLECTION.into(),
                record: "c3".into(),
                row: Some(SnapshotRow::of(&base_doc.row()).unwrap()),
                doc: encode_bytes(&base_doc.save()),
            }],
            next: None,
        },
    );
    // The three local ops of every start go out as a push of two and a push of one.
    let pushes = [
        push_answer(vec![Some(tidemark::Seq(2)), Some(tidemark::Seq(3))], vec![], 3),
        push_answer(vec![Some(tidemark::Seq(4))], vec![], 4),
    ];
    let refused = RefusedOp {
        index: 1,
        code: ErrorCode::InvalidOp,
        message: "refused by the seed".into(),
    };
    vec![
        (
            "round-push-snapshot-pull",
            client_input(
                Start::LocalOnly,
                &[
                    package_answer(1, false),
                    pushes[0].clone(),
                    pushes[1].clone(),
                    snapshot,
                    pull_answer(EPOCH, vec![pulled(5, &c9), pulled(6, &c3_edit)], 6, false, 6),
                ],
            ),
        ),
        (
            "round-push-pull-with-package",
            client_input(
                Start::PulledWithPackage,
                &[
                    package_answer(1, true),
                    pushes[0].clone(),
                    pushes[1].clone(),
                    pull_answer(EPOCH, vec![pulled(5, &c9)], 5, true, 6),
                    pull_answer(EPOCH, vec![pulled(6, &c3_edit)], 6, false, 6),
                ],
            ),
        ),
        (
            "round-refused-ops",
            client_input(
                Start::Pulled,
                &[
                    package_answer(1, false),
                    push_answer(vec![Some(tidemark::Seq(2)), None], vec![refused], 2),
                    error_answer(409, ErrorCode::OpIdConflict, Some(0)),
                    error_answer(403, ErrorCode::ReadOnly, None),
                    error_answer(413, ErrorCode::TooLarge, None),
                ],
            ),
        ),
        (
            "round-epoch-change-and-history",
            client_input(
                Start::Pulled,
                &[
                    package_answer(1, false),
                    pushes[0].clone(),
                    pushes[1].clone(),
                    error_answer(409, ErrorCode::HistoryChanged, None),
                    pull_answer(OTHER_EPOCH, vec![pulled(1, &c9)], 1, false, 1),
                    error_answer(500, ErrorCode::Internal, None),
                ],
            ),
        ),
    ]
}

#[cfg(feature = "server")]
pub fn wire_server_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use crate::wire_server_check::{Route, Sender, input, request_bytes};
    let peer = ActorId([0xc3; 16]);
    let push_body = |ops: &[Op]| {
        serde_json::to_vec(&PushRequest {
            ops: ops.iter().map(WireOp::from_op).collect(),
        })
        .unwrap()
    };
    let c9 = new_record_op(4, peer, "c9", json!({"name": "Edsger"}));
    let c3_edit = base_edit_op(5, peer, json!({"age": 86}));
    // Nine ops are one over the fuzzed server's batch limit.
    let empty = Op {
        change: Vec::new(),
        ..c9.clone()
    };
    let mut conflicting = c3_edit.clone();
    conflicting.time_ms += 1;
    let writer = |route, payload: &[u8]| request_bytes(route, Sender::Writer, 1, payload);
    let package_v2 = serde_json::to_vec(&tidemark::Package {
        version: 2,
        ..package()
    })
    .unwrap();
    vec![
        (
            "push-then-read",
            input(&[
                writer(Route::Push, &push_body(&[c9.clone(), c3_edit.clone()])),
                writer(Route::Pull, b"since=0&limit=10"),
                writer(Route::Snapshot, b"limit=1"),
                writer(Route::Record, b"contacts/c3"),
                writer(Route::Package, b""),
            ]),
        ),
        (
            "push-refused",
            input(&[
                request_bytes(Route::Push, Sender::Reader, 1, &push_body(std::slice::from_ref(&c9))),
                request_bytes(Route::Push, Sender::Stranger, 1, &push_body(std::slice::from_ref(&c9))),
                request_bytes(Route::Push, Sender::NoToken, 0, &push_body(std::slice::from_ref(&c9))),
                writer(Route::Push, b"{\"ops\": [{\"id\": 1}]}"),
                writer(Route::Push, &push_body(&vec![empty; 9])),
                writer(Route::Push, &push_body(&[c3_edit.clone(), conflicting])),
            ]),
        ),
        (
            "queries",
            input(&[
                writer(Route::Pull, format!("since=1&at={}", v4_op(1, base_op()).id).as_bytes()),
                writer(Route::Pull, b"since=abc&limit=%zz"),
                writer(Route::Snapshot, b"after=contacts%0Ac3&limit=1"),
                request_bytes(Route::Pull, Sender::Writer, 2, b"since=0"),
                writer(Route::Record, b"contacts/missing"),
            ]),
        ),
        (
            "admin",
            input(&[
                request_bytes(Route::SetPackage, Sender::Admin, 1, &package_v2),
                request_bytes(Route::Raw, Sender::Admin, 0, b"GET /v1/admin/spaces"),
                request_bytes(
                    Route::Raw,
                    Sender::Admin,
                    0,
                    b"POST /v1/admin/users\n{\"user\": \"zed\"}",
                ),
                request_bytes(Route::Raw, Sender::Admin, 0, b"DELETE /v1/admin/spaces/crm/members/ada"),
                writer(Route::Push, &push_body(&[c9])),
            ]),
        ),
    ]
}

#[cfg(feature = "server")]
pub fn push_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use crate::push_check::{Step, script_bytes};
    vec![
        (
            "edits-merges-and-resends",
            script_bytes(
                true,
                &[
                    &[Step::Edit(0, 0, 0, 7), Step::Edit(1, 0, 1, 30)],
                    &[Step::Merge(1, 0), Step::Edit(1, 0, 2, 1), Step::Resend(0)],
                    &[Step::Edit(2, 1, 5, 140), Step::Edit(0, 1, 6, 9)],
                ],
            ),
        ),
        (
            "dependency-held-back",
            script_bytes(
                false,
                &[
                    &[Step::Edit(0, 2, 0, 1)],
                    &[Step::Hold(0, 2, 1, 2), Step::Edit(0, 2, 3, 4)],
                    &[Step::Resend(1), Step::Resend(2)],
                ],
            ),
        ),
        (
            "hostile-ops",
            script_bytes(
                true,
                &[
                    &[Step::Edit(0, 0, 0, 1), Step::Edit(1, 1, 7, 0)],
                    &[Step::Swap(0, 1), Step::Corrupt(0, 0, 20), Step::Corrupt(1, 1, 30)],
                    &[Step::Envelope(0, 0), Step::Envelope(0, 1), Step::Envelope(1, 2)],
                    &[Step::BadId(2, 2, 0, 5), Step::Corrupt(0, 2, 0)],
                ],
            ),
        ),
        (
            "actor-reused",
            script_bytes(
                false,
                &[
                    &[Step::Rewind(0, 0, false), Step::Edit(0, 0, 0, 1)],
                    &[Step::Rewind(0, 0, true), Step::Edit(0, 0, 0, 2), Step::Edit(0, 0, 1, 3)],
                ],
            ),
        ),
    ]
}
