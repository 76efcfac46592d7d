//! The document against the service's errors: every operation lists its
//! refusals, every error is placed.

use super::*;

fn operations(doc: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            out.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    out
}

#[test]
fn every_operation_has_its_refusals_listed() {
    let limits = Limits::default();
    let doc = document(&limits);
    let ops = operations(&doc);
    assert_eq!(ops.len(), 18, "{:?}", ops.iter().map(|o| &o.1).collect::<Vec<_>>());
    for (method, path, operation) in ops {
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(
            refusals(id, &limits).is_some(),
            "{method} {path}: operation {id:?} has no entry in `refusals`"
        );
        let responses = operation["responses"].as_object().unwrap();
        assert!(responses.contains_key("200"), "{method} {path}");
        assert!(
            responses.contains_key("408"),
            "{method} {path}: the deadline runs around every route"
        );
        for (status, response) in responses {
            if status == "200" {
                continue;
            }
            let codes = &response["content"]["application/json"]["schema"]["allOf"][1]["properties"]["code"]["enum"];
            assert!(
                codes.as_array().is_some_and(|c| !c.is_empty()),
                "{method} {path} {status}: {response}"
            );
        }
    }
}

/// Where each error reaches a client. A new variant does not compile here
/// until it is placed: in the document (the operations that answer it), in
/// a push's `refused` list, or in the router's fallbacks.
#[test]
fn every_service_error_is_placed() {
    use ServiceError as E;
    let doc = document(&Limits::default());
    let text = String::new;
    let samples = [
        E::Unauthorized,
        E::NotFound(text()),
        E::NotFoundOther(text()),
        E::ReadOnly {
            user: text(),
            space: text(),
        },
        E::InvalidOp {
            index: 0,
            reason: text(),
        },
        E::OpIdConflict { index: 0, id: text() },
        E::BadRequest(text()),
        E::TooLarge(text()),
        E::OpTooLarge {
            index: 0,
            bytes: 0,
            max: 0,
        },
        E::MethodNotAllowed(text()),
        E::HistoryChanged {
            seq: crate::model::Seq::ZERO,
        },
        E::Conflict(text()),
        E::AdminOnly,
        E::ClientTooOld {
            client: 0,
            server: 0,
            min: 0,
        },
        E::Quarantined {
            collection: text(),
            record: text(),
            reason: text(),
        },
        E::RequestTimeout(text()),
        E::Unavailable(text()),
        E::Internal(text()),
    ];
    for error in samples {
        let in_document = match error {
            E::Unauthorized
            | E::NotFound(_)
            | E::NotFoundOther(_)
            | E::ReadOnly { .. }
            | E::BadRequest(_)
            | E::TooLarge(_)
            | E::HistoryChanged { .. }
            | E::Conflict(_)
            | E::AdminOnly
            | E::ClientTooOld { .. }
            | E::Quarantined { .. }
            | E::RequestTimeout(_)
            | E::Unavailable(_)
            | E::Internal(_) => true,
            // A push refuses a single op inside its 200, in `refused`.
            E::InvalidOp { .. } | E::OpIdConflict { .. } | E::OpTooLarge { .. } => false,
            // Only the router's fallback for a method no route takes.
            E::MethodNotAllowed(_) => false,
        };
        let listed = operations(&doc).iter().any(|(_, _, operation)| {
            operation["responses"][error.status().to_string()]["content"]["application/json"]["schema"]["allOf"][1]
                ["properties"]["code"]["enum"]
                .as_array()
                .is_some_and(|codes| codes.iter().any(|c| c == error.code().as_str()))
        });
        assert_eq!(listed, in_document, "{}: {error:?}", error.code());
    }
}
