//! A server answer the session refuses changes nothing in the replica: no op
//! is refused, acknowledged or rolled back on the word of an answer that does
//! not fit its request, and a package that does not check moves no epoch.

use serde_json::json;
use tidemark::Replica;
use tidemark::Seq;
use tidemark::protocol::message::{PackageResponse, PushResponse, RefusedOp};
use tidemark::protocol::{ErrorCode, Request, Response, Session, SessionConfig};

const EPOCH: &str = "epoch-1";

/// What a refused answer must leave alone.
#[derive(Debug, PartialEq)]
struct State {
    status: tidemark::Status,
    view: Vec<(String, String, Vec<u8>)>,
    watermarks: tidemark::protocol::Watermarks,
}

fn state(r: &Replica) -> State {
    State {
        status: r.status().unwrap(),
        view: r.view_rows().unwrap(),
        watermarks: r.watermarks().unwrap(),
    }
}

/// A replica with two pending edits, and a session that has taken the package
/// answer and now asks to push them.
fn at_push() -> (Replica, Session) {
    let replica = Replica::in_memory().unwrap();
    replica.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    replica.put("contacts", "c2", json!({"name": "Alan"})).unwrap();
    let mut session = Session::new(SessionConfig::default());
    assert_eq!(session.next_request(&replica).unwrap(), Some(Request::Package));
    session
        .handle_response(
            &replica,
            Response::Package(PackageResponse {
                epoch: EPOCH.into(),
                version: 0,
                package: None,
                head: Seq(0),
            }),
        )
        .unwrap();
    let Some(Request::Push(push)) = session.next_request(&replica).unwrap() else {
        panic!("the session pushes next");
    };
    assert_eq!(push.ops.len(), 2);
    (replica, session)
}

fn refused(index: usize) -> RefusedOp {
    RefusedOp {
        index,
        code: ErrorCode::InvalidOp,
        message: "refused".into(),
    }
}

fn push_answer(seqs: Vec<Option<Seq>>, refused: Vec<RefusedOp>) -> Response {
    Response::Push(PushResponse {
        epoch: EPOCH.into(),
        seqs,
        refused,
        head: Seq(1),
    })
}

#[test]
fn a_push_answer_that_does_not_fit_the_batch_refuses_no_op_and_acknowledges_none() {
    let answers = [
        // Op 0 refused, then an index outside the batch of two.
        push_answer(vec![None, Some(tidemark::Seq(1))], vec![refused(0), refused(5)]),
        // Op 0 refused twice.
        push_answer(vec![None, Some(tidemark::Seq(1))], vec![refused(0), refused(0)]),
        // Op 0 stored and refused.
        push_answer(vec![Some(tidemark::Seq(1)), Some(tidemark::Seq(2))], vec![refused(0)]),
        // Op 1 neither stored nor refused: taking it for pushed would lose it.
        push_answer(vec![Some(tidemark::Seq(1)), None], vec![]),
    ];
    for answer in answers {
        let (replica, mut session) = at_push();
        let before = state(&replica);
        let outcome = session.handle_response(&replica, answer.clone());
        assert!(
            matches!(outcome, Err(tidemark::Error::Sync(_))),
            "{answer:?} is taken: {outcome:?}"
        );
        assert_eq!(state(&replica), before, "{answer:?} changed the replica");
        assert_eq!(replica.status().unwrap().pending, 2);
        assert!(replica.rejected().unwrap().is_empty());
    }
}

#[test]
fn a_push_answer_that_fits_refuses_its_op_and_acknowledges_the_batch() {
    let (replica, mut session) = at_push();
    session
        .handle_response(
            &replica,
            push_answer(vec![None, Some(tidemark::Seq(1))], vec![refused(0)]),
        )
        .unwrap();
    let status = replica.status().unwrap();
    assert_eq!((status.pending, status.rejected), (0, 1));
    assert_eq!(replica.rejected().unwrap()[0].record, "c1");
}

#[test]
fn a_package_that_does_not_check_moves_no_epoch() {
    let replica = Replica::in_memory().unwrap();
    replica.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    let mut session = Session::new(SessionConfig::default());
    assert_eq!(session.next_request(&replica).unwrap(), Some(Request::Package));
    let package: tidemark::Package =
        serde_json::from_value(json!({"version": 2, "collections": {"bad\u{1}name": {"fields": {}}}})).unwrap();
    let before = state(&replica);
    let outcome = session.handle_response(
        &replica,
        Response::Package(PackageResponse {
            epoch: EPOCH.into(),
            version: 2,
            package: Some(package),
            head: Seq(0),
        }),
    );
    assert!(matches!(outcome, Err(tidemark::Error::Invalid(_))), "{outcome:?}");
    assert_eq!(state(&replica), before, "a refused package answer changed the replica");
    assert_eq!(replica.watermarks().unwrap().epoch, None, "the epoch moved");
}
