//! Forged changes pushed to a live server by a member: each is refused alone,
//! with a reason, and the space stays readable and keeps syncing.

#![cfg(all(feature = "server", feature = "http-client"))]

mod common;

use serde_json::{Value, json};
use tidemark::Replica;
use tidemark::protocol::message::{PushResponse, WireOp};
use tidemark::server::Limits;

use common::crm_package;
use common::live::*;

/// A member who forges changes (another change under a known actor and seq, a
/// change whose dependencies live in another record, a nil op id) gets each
/// refused alone; the space stays fully readable and keeps syncing.
#[tokio::test]
async fn forged_changes_are_refused_one_by_one_and_the_space_stays_readable() {
    use tidemark::record::RecordDoc;
    let s = live(Limits::default()).await;
    let author = Replica::in_memory().unwrap();
    author.set_package(Some(&crm_package())).unwrap();
    author.put("contacts", "c1", json!({"name": "Ada"})).unwrap();
    author.put("contacts", "c1", json!({"age": 36})).unwrap();
    let ops = author.pending_ops(10).unwrap();
    let wire: Vec<Value> = ops
        .iter()
        .map(|p| serde_json::to_value(WireOp::from_op(&p.op)).unwrap())
        .collect();
    let answer: PushResponse = s.push(&s.alice, &wire).await.json().await.unwrap();
    assert_eq!(answer.seqs, [Some(tidemark::Seq(1)), Some(tidemark::Seq(2))]);

    // The author's actor and change number 2 again, with other content.
    let mut doc = RecordDoc::new(ops[0].op.actor);
    doc.apply_stored(&ops[0].op.change).unwrap();
    doc.put(
        "contacts",
        json!({"age": 99}).as_object().unwrap(),
        crm_package().collections.get("contacts"),
    )
    .unwrap();
    let forged = doc.commit(0).unwrap();
    let mut reused = wire[1].clone();
    reused["id"] = json!(uuid::Uuid::new_v4().to_string());
    reused["change"] = json!(b64(&forged));
    refused_one(s.push(&s.alice, &[reused]).await, 0, "actor_reused").await;

    // A real change pushed under another record, whose history lacks its dependency.
    let mut moved = wire[1].clone();
    moved["id"] = json!(uuid::Uuid::new_v4().to_string());
    moved["record"] = json!("c9");
    let answer = refused_one(s.push(&s.alice, &[moved]).await, 0, "missing_deps").await;
    assert!(answer.refused[0].message.contains("does not hold"), "{answer:?}");

    // A nil op id, beside a valid op that is stored.
    let mut nil = real_ops(&["c5"]).remove(0);
    nil["id"] = json!(uuid::Uuid::nil().to_string());
    let fine = real_ops(&["c6"]).remove(0);
    let answer = refused_one(s.push(&s.alice, &[nil, fine]).await, 0, "invalid_op").await;
    assert_eq!(answer.seqs[1], Some(tidemark::Seq(3)));

    // Everything stored still reads and syncs.
    assert_eq!(s.head().await, 3);
    let page = s.pull(0, 100).await;
    assert_eq!(page.ops.len(), 3);
    let record = s.get(Some(&s.alice), "/v1/spaces/crm/records/contacts/c1").await;
    assert_eq!(record.status().as_u16(), 200);
    let fields: Value = record.json().await.unwrap();
    assert_eq!(fields["age"], 36, "the forged value never landed: {fields}");
    let reader = Replica::in_memory().unwrap();
    let service = s.service.clone();
    let token = s.alice.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let remote = tidemark::server::local::LocalRemote::new(service, token, SPACE);
        tidemark::sync::Round::new(&reader, Default::default())
            .run_blocking(|r| remote.call_blocking(r))
            .unwrap();
        reader
    })
    .await
    .unwrap();
    assert_eq!(reader.get("contacts", "c1").unwrap().unwrap()["age"], 36);
    assert_eq!(reader.list("contacts", None, 10).unwrap().len(), 2);
    s.assert_healthy().await;
}

/// A change whose operations name ops its record's history lacks would be
/// stored, then make the record's document unloadable for every replica
/// (automerge applies it and saves a document that no longer loads): it is
/// refused, and a change naming the op it overwrites is taken.
#[tokio::test]
async fn a_change_naming_ops_its_record_lacks_is_refused_and_the_record_still_loads() {
    use automerge::legacy::{Key, ObjectId, Op, OpId as AmOpId, OpType};
    use base64::Engine as _;
    let s = live(Limits::default()).await;
    let seed = real_ops(&["c1"]);
    let answer: PushResponse = s.push(&s.alice, &seed).await.json().await.unwrap();
    assert!(answer.refused.is_empty(), "{answer:?}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(seed[0]["change"].as_str().unwrap())
        .unwrap();
    let base = automerge::Change::from_bytes(bytes).unwrap();
    let author = base.actor_id().clone();
    let decoded = base.decode();
    let name_at = decoded
        .operations
        .iter()
        .position(|op| op.key == Key::Map("name".into()))
        .unwrap() as u64;
    let name_op = AmOpId(decoded.start_op.get() + name_at, author.clone());
    // A put of `name` by `actor`, its counters from `start`, naming `pred`.
    let forge = |actor: &automerge::ActorId, start: u64, pred: AmOpId| {
        let mut change = decoded.clone();
        change.actor_id = actor.clone();
        change.seq = 1;
        change.hash = None;
        change.start_op = std::num::NonZeroU64::new(start).unwrap();
        change.deps = vec![base.hash()];
        change.operations = vec![Op {
            action: OpType::Put(automerge::ScalarValue::Str("PWNED".into())),
            obj: ObjectId::Root,
            key: Key::Map("name".into()),
            pred: vec![pred].into(),
            insert: false,
        }];
        let mut wire = seed[0].clone();
        wire["id"] = json!(uuid::Uuid::new_v4().to_string());
        wire["actor"] = json!(hex::encode(actor.to_bytes()));
        wire["change"] = json!(b64(automerge::Change::from(change).raw_bytes()));
        wire
    };
    let mallory = automerge::ActorId::from([9u8; 16]);
    let after = base.max_op() + 1;
    for (wire, why) in [
        (
            forge(&mallory, 1000, AmOpId(999, mallory.clone())),
            "an op of its new actor before the change",
        ),
        (
            forge(&mallory, after, AmOpId(after + 5, mallory.clone())),
            "an op of its own change after the put",
        ),
        (
            forge(&mallory, after, AmOpId(base.max_op() + 3, author.clone())),
            "an op past the author's last",
        ),
        (
            forge(&mallory, after, AmOpId(1, automerge::ActorId::from([5u8; 16]))),
            "an actor the record never had",
        ),
    ] {
        let answer = refused_one(s.push(&s.alice, &[wire]).await, 0, "invalid_op").await;
        assert!(answer.refused[0].message.contains("names op"), "{why}: {answer:?}");
    }
    assert_eq!(s.head().await, 1, "nothing refused was stored");
    let answer: PushResponse = s
        .push(&s.alice, &[forge(&mallory, after, name_op)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer.seqs, [Some(tidemark::Seq(2))], "{answer:?}");
    let record = s.get(Some(&s.alice), "/v1/spaces/crm/records/contacts/c1").await;
    assert_eq!(record.status().as_u16(), 200);
    let fields: Value = record.json().await.unwrap();
    assert_eq!(fields["name"], "PWNED", "{fields}");
    s.assert_healthy().await;
}
